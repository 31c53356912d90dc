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
use crate::procfs::{threads_human, ThreadCpu};
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
    /// What the cell shows.
    show: Show,
}

/// How a metric's value is shown.
#[derive(Clone, Copy, PartialEq)]
enum Show {
    /// The number at `path`.
    Number,
    /// The list of threads at `path` (`cpu.server_threads`): the busiest ones' CPU %.
    Threads,
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
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
    },
    Metric {
        title: "fan-out per server CPU-s",
        mode: "broadcast",
        path: &["deliveries_per_server_cpu_sec"],
        scale: 1e3,
        decimals: 0,
        unit: "k",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "fan-out server threads, CPU %",
        mode: "broadcast",
        path: &["cpu", "server_threads"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: false,
        chart: None,
        show: Show::Threads,
    },
    Metric {
        title: "1-sender fan-out deliveries/s",
        mode: ONE_SENDER,
        path: &["deliveries_per_sec"],
        scale: 1e3,
        decimals: 0,
        unit: "k",
        ratio: true,
        chart: Some("broadcast, one sender in a closed loop: deliveries/s (thousands, higher is better)"),
        show: Show::Number,
    },
    Metric {
        title: "1-sender fan-out p99 ms",
        mode: ONE_SENDER,
        path: &["latency", "p99_us"],
        scale: 1e3,
        decimals: 2,
        unit: "",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "1-sender per server CPU-s",
        mode: ONE_SENDER,
        path: &["deliveries_per_server_cpu_sec"],
        scale: 1e3,
        decimals: 0,
        unit: "k",
        ratio: true,
        chart: None,
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
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
        show: Show::Number,
    },
    Metric {
        title: "API fan-out deliveries/s",
        mode: "pusher-fanout-api",
        path: &["deliveries_per_sec"],
        scale: 1e3,
        decimals: 0,
        unit: "k",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "API fan-out p99 ms",
        mode: "pusher-fanout-api",
        path: &["latency", "p99_us"],
        scale: 1e3,
        decimals: 2,
        unit: "",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "API fan-out loss",
        mode: "pusher-fanout-api",
        path: &["loss"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: false,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "API fan-out per server CPU-s",
        mode: "pusher-fanout-api",
        path: &["deliveries_per_server_cpu_sec"],
        scale: 1e3,
        decimals: 0,
        unit: "k",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "client fan-out deliveries/s",
        mode: "pusher-fanout-client",
        path: &["deliveries_per_sec"],
        scale: 1e3,
        decimals: 0,
        unit: "k",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "client fan-out p99 ms",
        mode: "pusher-fanout-client",
        path: &["latency", "p99_us"],
        scale: 1e3,
        decimals: 2,
        unit: "",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "client fan-out loss",
        mode: "pusher-fanout-client",
        path: &["loss"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: false,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "API fan-out ×16 deliveries/s",
        mode: API_FANOUT_16,
        path: &["deliveries_per_sec"],
        scale: 1e3,
        decimals: 0,
        unit: "k",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "API fan-out ×16 p99 ms",
        mode: API_FANOUT_16,
        path: &["latency", "p99_us"],
        scale: 1e3,
        decimals: 2,
        unit: "",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "client fan-out ×16 deliveries/s",
        mode: CLIENT_FANOUT_16,
        path: &["deliveries_per_sec"],
        scale: 1e3,
        decimals: 0,
        unit: "k",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "client fan-out ×16 p99 ms",
        mode: CLIENT_FANOUT_16,
        path: &["latency", "p99_us"],
        scale: 1e3,
        decimals: 2,
        unit: "",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "API publishes/s",
        mode: "pusher-api",
        path: &["publishes_per_sec"],
        scale: 1e3,
        decimals: 1,
        unit: "k",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "API p99 ms",
        mode: "pusher-api",
        path: &["latency", "p99_us"],
        scale: 1e3,
        decimals: 2,
        unit: "",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "API publishes per server CPU-s",
        mode: "pusher-api",
        path: &["publishes_per_server_cpu_sec"],
        scale: 1e3,
        decimals: 1,
        unit: "k",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "Pusher idle B/conn",
        mode: "pusher-idle",
        path: &["server_rss_per_conn_bytes"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: true,
        chart: None,
        show: Show::Number,
    },
    Metric {
        title: "Pusher idle subscribed",
        mode: "pusher-idle",
        path: &["subscribed"],
        scale: 1.0,
        decimals: 0,
        unit: "",
        ratio: false,
        chart: None,
        show: Show::Number,
    },
];

/// The Pusher fan-out runs with 16 events in flight (`--window 16`) instead of one: the
/// throughput case, where a server can carry several events in one write to each subscriber.
/// `scripts/bench` files them under these modes next to the one-at-a-time runs.
pub const API_FANOUT_16: &str = "pusher-fanout-api-16";
/// See [`API_FANOUT_16`].
pub const CLIENT_FANOUT_16: &str = "pusher-fanout-client-16";

/// The broadcast run with one sender in a closed loop (the latency-bound case), filed by
/// `scripts/bench` under this mode next to the ten-sender `broadcast`.
pub const ONE_SENDER: &str = "broadcast-1";

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
    let threads_of = |server: &str, metric: &Metric| -> Option<Vec<ThreadCpu>> {
        let mut v = reports.get(server)?.get(metric.mode)?;
        for key in metric.path {
            v = v.get(key)?;
        }
        serde_json::from_value::<Vec<ThreadCpu>>(v.clone())
            .ok()
            .filter(|threads| !threads.is_empty())
    };
    let has_value = |server: &str, metric: &Metric| match metric.show {
        Show::Number => value_of(server, metric).is_some(),
        Show::Threads => threads_of(server, metric).is_some(),
    };
    // A column no server has a value for (a mode that was not run) is left out.
    let shown: Vec<&Metric> = METRICS
        .iter()
        .filter(|metric| servers.iter().any(|server| has_value(server, metric)))
        .collect();

    let mut table = String::new();
    let _ = write!(table, "| server |");
    for metric in &shown {
        let _ = write!(table, " {} |", metric.title);
    }
    let _ = write!(table, "\n|---|");
    for _ in &shown {
        let _ = write!(table, "---:|");
    }
    table.push('\n');
    let mut rows = Vec::new();
    for server in &servers {
        let _ = write!(table, "| {server} |");
        let mut row = serde_json::Map::new();
        row.insert("server".into(), json!(server));
        for metric in &shown {
            if metric.show == Show::Threads {
                let threads = threads_of(server, metric);
                let cell = threads.as_deref().map_or_else(|| "–".to_string(), threads_human);
                let _ = write!(table, " {cell} |");
                row.insert(metric.title.into(), json!({ "threads": threads }));
                continue;
            }
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
        let panels: Vec<Panel> = shown
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

    fn thread(name: &str, tid: u32, cpu_pct: f64) -> Value {
        json!({ "name": name, "tid": tid, "cpu_secs": cpu_pct / 10.0, "cpu_pct": cpu_pct })
    }

    #[test]
    fn worker_rows_compare_per_cpu_second_and_show_their_threads() {
        let runs = std::env::temp_dir().join(format!("wshub-summary-workers-{}", std::process::id()));
        std::fs::create_dir_all(&runs).unwrap();
        let broadcast = |label: &str, mode: &str, per_cpu: f64, threads: Vec<Value>| {
            json!({
                "mode": mode,
                "label": label,
                "deliveries_per_sec": per_cpu,
                "deliveries_per_server_cpu_sec": per_cpu,
                "loss": 0,
                "latency": { "p99_us": 2_000.0 },
                "cpu": { "server_threads": threads },
            })
        };
        let files = [
            (
                "wshub-broadcast",
                broadcast(
                    "wshub",
                    "broadcast",
                    2_000_000.0,
                    vec![thread("wshub-worker-0", 7, 99.0)],
                ),
            ),
            ("wshub-broadcast-1", broadcast("wshub", ONE_SENDER, 1_000_000.0, vec![])),
            (
                "wshub-2w-broadcast",
                broadcast(
                    "wshub-2w",
                    "broadcast",
                    1_900_000.0,
                    vec![
                        thread("wshub-worker-1", 9, 90.0),
                        thread("wshub-worker-0", 8, 97.0),
                        thread("tokio", 3, 0.4),
                    ],
                ),
            ),
        ];
        for (name, report) in files {
            std::fs::write(runs.join(format!("{name}.json")), report.to_string()).unwrap();
        }
        let table = summarize(&runs, None, None, "wshub").unwrap();
        std::fs::remove_dir_all(&runs).unwrap();
        let header = table.lines().next().unwrap();
        assert!(
            !header.contains("echo"),
            "modes that were not run have no column: {header}"
        );
        assert!(header.contains("1-sender fan-out deliveries/s"), "{header}");
        let row = table
            .lines()
            .find(|l| l.starts_with("| wshub-2w |"))
            .expect("a wshub-2w row");
        assert!(
            row.contains("| 1900k (×0.95) |"),
            "per server CPU-second against one worker: {row}"
        );
        assert!(row.contains("| wshub-worker-1 90 %, wshub-worker-0 97 % |"), "{row}");
        let row = table.lines().find(|l| l.starts_with("| wshub |")).expect("a wshub row");
        assert!(
            row.contains("| 1000k |"),
            "the one-sender run is in its own columns: {row}"
        );
    }

    #[test]
    fn pusher_runs_make_a_table_of_their_own() {
        let runs = std::env::temp_dir().join(format!("wshub-summary-pusher-{}", std::process::id()));
        std::fs::create_dir_all(&runs).unwrap();
        for (label, per_sec) in [("wshub", 300_000.0), ("soketi", 100_000.0)] {
            let report = json!({
                "mode": "pusher-fanout-api",
                "label": label,
                "deliveries_per_sec": per_sec,
                "loss": 0,
                "latency": { "p99_us": 2_000.0 },
            });
            std::fs::write(runs.join(format!("{label}-pusher-fanout-api.json")), report.to_string()).unwrap();
        }
        let wide = json!({
            "mode": API_FANOUT_16,
            "label": "wshub",
            "deliveries_per_sec": 900_000.0,
            "latency": { "p99_us": 9_000.0 },
        });
        std::fs::write(runs.join("wshub-pusher-fanout-api-16.json"), wide.to_string()).unwrap();
        let table = summarize(&runs, None, None, "wshub").unwrap();
        std::fs::remove_dir_all(&runs).unwrap();
        let header = table.lines().next().unwrap();
        assert!(header.contains("API fan-out deliveries/s"), "{header}");
        assert!(
            !header.contains("echo") && !header.contains("client fan-out"),
            "{header}"
        );
        assert!(header.contains("API fan-out ×16 deliveries/s"), "{header}");
        let wshub = table.lines().find(|l| l.starts_with("| wshub |")).expect("a wshub row");
        assert!(
            wshub.contains("| 900k | 9.00 |"),
            "the ×16 run is in its own columns: {wshub}"
        );
        let row = table
            .lines()
            .find(|l| l.starts_with("| soketi |"))
            .expect("a soketi row");
        assert!(row.contains("| 100k (×0.33) |"), "{row}");
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
