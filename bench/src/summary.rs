//! Combines the JSON reports of several runs (one file per server and mode, as written by
//! `scripts/bench`) into one results file, a markdown table and an SVG chart.
//!
//! Reports are read back as plain JSON values: the summary only needs a few fields of each, and
//! reading them by path keeps it working with reports from older versions of the generator.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::chart::{self, Panel};
use crate::report::thousands;

/// One column of the table: where its value is in which mode's report, and how to show it.
struct Metric {
    title: &'static str,
    mode: &'static str,
    path: &'static [&'static str],
    /// Shown as value / scale with this many decimals.
    scale: f64,
    decimals: usize,
    unit: &'static str,
    /// Show the ratio to the baseline server.
    ratio: bool,
    /// Also drawn in the chart, under this title.
    chart: Option<&'static str>,
}

const METRICS: &[Metric] = &[
    Metric {
        title: "echo msgs/s",
        mode: "echo",
        path: &["messages_per_sec"],
        scale: 1e3,
        decimals: 1,
        unit: "k",
        ratio: true,
        chart: Some("echo: messages/s (thousands, higher is better)"),
    },
    Metric {
        title: "echo p99 ms",
        mode: "echo",
        path: &["latency", "p99_us"],
        scale: 1e3,
        decimals: 2,
        unit: "",
        ratio: false,
        chart: None,
    },
    Metric {
        title: "echo msgs per server CPU-s",
        mode: "echo",
        path: &["messages_per_server_cpu_sec"],
        scale: 1e3,
        decimals: 1,
        unit: "k",
        ratio: true,
        chart: Some("echo: messages per server CPU-second (thousands)"),
    },
    Metric {
        title: "echo server / generator CPU %",
        mode: "echo",
        path: &["cpu", "server_cpu_pct"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: false,
        chart: None,
    },
    Metric {
        title: "fan-out deliveries/s",
        mode: "broadcast",
        path: &["deliveries_per_sec"],
        scale: 1e3,
        decimals: 0,
        unit: "k",
        ratio: true,
        chart: Some("broadcast: deliveries/s (thousands, higher is better)"),
    },
    Metric {
        title: "fan-out p99 ms",
        mode: "broadcast",
        path: &["latency", "p99_us"],
        scale: 1e3,
        decimals: 1,
        unit: "",
        ratio: true,
        chart: Some("broadcast: p99 fan-out latency, ms (lower is better)"),
    },
    Metric {
        title: "fan-out loss",
        mode: "broadcast",
        path: &["loss"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: false,
        chart: None,
    },
    Metric {
        title: "idle B/conn",
        mode: "conns",
        path: &["server_rss_per_conn_bytes"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: true,
        chart: Some("idle connections: server RSS per connection, bytes (lower is better)"),
    },
    Metric {
        title: "idle conns open",
        mode: "conns",
        path: &["connections", "opened"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: false,
        chart: None,
    },
    Metric {
        title: "slow: healthy p99 ms",
        mode: "slow",
        path: &["healthy", "latency", "p99_us"],
        scale: 1e3,
        decimals: 1,
        unit: "",
        ratio: true,
        chart: Some("slow consumers: healthy clients' p99 latency, ms (lower is better)"),
    },
    Metric {
        title: "slow: p99 ×no-stall",
        mode: SLOW_VS_BASE,
        path: &["healthy", "latency", "p99_us"],
        scale: 1.0,
        decimals: 2,
        unit: "",
        ratio: false,
        chart: None,
    },
    Metric {
        title: "slow: healthy loss",
        mode: "slow",
        path: &["healthy", "loss"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: false,
        chart: None,
    },
    Metric {
        title: "slow: evicted",
        mode: "slow",
        path: &["evicted"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: false,
        chart: None,
    },
];

/// Not a report's mode: the metric is the `slow` run's value divided by the `slow-base` run's
/// (the same room and traffic without stalled readers).
const SLOW_VS_BASE: &str = "slow ÷ slow-base";

/// Reads every `*.json` report in `runs`, writes the combined results to `json_out` and the chart
/// to `svg` (when given), and returns the markdown table, servers in the order baseline first,
/// then by name.
///
/// # Errors
/// An unreadable directory or file, or a file that is not a report.
pub fn summarize(runs: &Path, json_out: Option<&Path>, svg: Option<&Path>, baseline: &str) -> anyhow::Result<String> {
    let mut reports: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut all = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(runs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        let value: Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mode = value["mode"].as_str().unwrap_or_default().to_string();
        let label = value["label"].as_str().unwrap_or("unlabelled").to_string();
        anyhow::ensure!(!mode.is_empty(), "{}: not a report", path.display());
        reports.entry(label).or_default().insert(mode, value.clone());
        all.push(value);
    }
    let mut servers: Vec<&String> = reports.keys().collect();
    servers.sort_by_key(|s| (s.as_str() != baseline, s.as_str()));

    let lookup = |server: &str, mode: &str, path: &[&str]| -> Option<f64> {
        let mut v = reports.get(server)?.get(mode)?;
        for key in path {
            v = v.get(key)?;
        }
        v.as_f64()
    };
    let value_of = |server: &str, metric: &Metric| -> Option<f64> {
        if metric.mode == SLOW_VS_BASE {
            let base = lookup(server, "slow-base", metric.path).filter(|b| *b > 0.0)?;
            return Some(lookup(server, "slow", metric.path)? / base);
        }
        lookup(server, metric.mode, metric.path)
    };

    let mut table = String::new();
    let _ = write!(table, "| server |");
    for metric in METRICS {
        let _ = write!(table, " {} |", metric.title);
    }
    let _ = write!(table, "\n|---|");
    for _ in METRICS {
        let _ = write!(table, "---:|");
    }
    table.push('\n');
    let mut rows = Vec::new();
    for server in &servers {
        let _ = write!(table, "| {server} |");
        let mut row = serde_json::Map::new();
        row.insert("server".into(), json!(server));
        for metric in METRICS {
            let value = value_of(server, metric);
            let base = value_of(baseline, metric);
            let mut cell = match value {
                Some(v) => format_value(v, metric),
                None => "–".to_string(),
            };
            if metric.title == "echo server / generator CPU %" {
                let generator = reports
                    .get(*server)
                    .and_then(|r| r.get("echo"))
                    .and_then(|r| r["cpu"]["generator_cpu_pct"].as_f64());
                if let Some(g) = generator {
                    cell = format!("{cell} / {g:.0}");
                }
            }
            if metric.title == "slow: evicted" {
                if let Some(stalled) = reports
                    .get(*server)
                    .and_then(|r| r.get("slow"))
                    .and_then(|r| r["stalled"].as_u64())
                {
                    cell = format!("{cell} of {stalled}");
                }
            }
            let ratio = match (value, base) {
                (Some(v), Some(b)) if metric.ratio && b > 0.0 => Some(v / b),
                _ => None,
            };
            if let Some(r) = ratio {
                if server.as_str() != baseline {
                    let _ = write!(cell, " (×{r:.2})");
                }
            }
            let _ = write!(table, " {cell} |");
            row.insert(
                metric.title.into(),
                json!({ "value": value, "ratio_to_baseline": ratio }),
            );
        }
        table.push('\n');
        rows.push(Value::Object(row));
    }

    if let Some(path) = json_out {
        let results = json!({
            "baseline": baseline,
            "table": rows,
            "runs": all,
        });
        std::fs::write(path, serde_json::to_string_pretty(&results)? + "\n")?;
    }
    if let Some(path) = svg {
        let panels: Vec<Panel> = METRICS
            .iter()
            .filter_map(|metric| {
                let title = metric.chart?;
                let bars = servers
                    .iter()
                    .map(|s| ((*s).clone(), value_of(s, metric).map(|v| v / metric.scale)))
                    .collect();
                Some(Panel {
                    title: title.to_string(),
                    bars,
                    decimals: metric.decimals,
                })
            })
            .collect();
        std::fs::write(path, chart::render(&panels, baseline))?;
    }
    Ok(table)
}

fn format_value(v: f64, metric: &Metric) -> String {
    let scaled = v / metric.scale;
    if metric.decimals == 0 && metric.unit.is_empty() {
        return thousands(scaled);
    }
    format!("{scaled:.*}{}", metric.decimals, metric.unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow_report(mode: &str, p99_us: u64) -> Value {
        json!({
            "mode": mode,
            "label": "wshub",
            "stalled": 10,
            "evicted": 10,
            "healthy": { "loss": 0, "latency": { "p99_us": p99_us } },
        })
    }

    #[test]
    fn the_stalled_run_is_compared_with_the_run_without_stalled_readers() {
        let runs = std::env::temp_dir().join(format!("wshub-summary-test-{}", std::process::id()));
        std::fs::create_dir_all(&runs).unwrap();
        std::fs::write(runs.join("wshub-slow.json"), slow_report("slow", 6_000).to_string()).unwrap();
        std::fs::write(
            runs.join("wshub-slow-base.json"),
            slow_report("slow-base", 4_000).to_string(),
        )
        .unwrap();
        let table = summarize(&runs, None, None, "wshub").unwrap();
        std::fs::remove_dir_all(&runs).unwrap();
        let row = table.lines().find(|l| l.starts_with("| wshub |")).expect("a wshub row");
        assert!(row.contains("| 6.0 | 1.50 |"), "{row}");
        assert!(row.contains("10 of 10"), "{row}");
    }
}
