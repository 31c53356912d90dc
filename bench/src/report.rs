//! Pieces every report shares, and the human-readable summaries.
//!
//! Reports are plain `Serialize` structs (printed with `--json`, read back by `summarize`); the
//! text forms here are for a person at a terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::broadcast::BroadcastReport;
use crate::connect::Opened;
use crate::conns::ConnsReport;
use crate::echo::EchoReport;
use crate::slow::SlowReport;
use crate::target::Target;

/// How many connections were wanted, opened and refused.
#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    /// Asked for.
    pub wanted: usize,
    /// Opened and upgraded.
    pub opened: usize,
    /// Failed to open or upgrade.
    pub failed: usize,
    /// Time to open them all, seconds.
    pub open_secs: f64,
    /// Failure messages and how often each occurred (at most the 10 most frequent).
    pub errors: BTreeMap<String, usize>,
}

impl Connections {
    /// Summarises an [`Opened`] batch of `wanted` connections.
    pub fn of(wanted: usize, opened: &Opened) -> Self {
        let mut errors: Vec<(String, usize)> = opened.errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
        errors.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        Self {
            wanted,
            opened: opened.conns.len(),
            failed: opened.failed,
            open_secs: (opened.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            errors: errors.into_iter().take(10).collect(),
        }
    }

    fn human(&self) -> String {
        let mut line = format!(
            "connections: {} of {} opened in {:.2} s",
            self.opened, self.wanted, self.open_secs
        );
        if self.failed > 0 {
            let _ = write!(line, ", {} failed", self.failed);
            for (error, n) in &self.errors {
                let _ = write!(line, "\n  {n} × {error}");
            }
        }
        line
    }
}

/// Fails the run when not a single connection opened: nothing could be measured.
///
/// # Errors
/// Names the most frequent failure, so that a wrong URL or a stopped server is obvious.
pub fn ensure_some_opened(opened: &Opened, target: &Target) -> anyhow::Result<()> {
    if opened.conns.is_empty() {
        let first = opened
            .errors
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(e, _)| e.as_str())
            .unwrap_or("no connection attempted");
        anyhow::bail!("no connection to {} opened: {first}", target.url);
    }
    Ok(())
}

/// Rounds to one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `count` per second of server CPU, when that CPU time is known and not zero.
pub fn per_cpu_sec(count: u64, cpu_secs: Option<f64>) -> Option<f64> {
    cpu_secs.filter(|s| *s > 0.0).map(|s| round1(count as f64 / s))
}

/// `1234567.0` → `1,234,567`.
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn header(mode: &str, label: &Option<String>, url: &str) -> String {
    match label {
        Some(label) => format!("{mode} against {label} ({url})"),
        None => format!("{mode} against {url}"),
    }
}

impl EchoReport {
    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut out = header("echo", &self.label, &self.url);
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", self.connections.human());
        let _ = writeln!(
            out,
            "{} messages of {} B ({:?}, {} in flight per connection) in {:.2} s",
            thousands(self.messages as f64),
            self.size,
            self.format,
            self.pipeline,
            self.duration_secs
        );
        let _ = writeln!(
            out,
            "throughput: {} msgs/s, {:.2} MB/s each way",
            thousands(self.messages_per_sec),
            self.bytes_per_sec / 1e6
        );
        if let Some(per_cpu) = self.messages_per_server_cpu_sec {
            let _ = writeln!(out, "per server CPU-second: {} msgs", thousands(per_cpu));
        }
        let _ = writeln!(out, "latency: {}", self.latency.human());
        let _ = writeln!(
            out,
            "checks: {} mismatched, {} unexpected, {} disconnected",
            self.mismatches, self.unexpected, self.disconnects
        );
        for (error, n) in &self.errors {
            let _ = writeln!(out, "  {n} × {error}");
        }
        let _ = write!(out, "{}", self.cpu.human());
        out
    }
}

impl BroadcastReport {
    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut out = header("broadcast", &self.label, &self.url);
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", self.connections.human());
        let _ = writeln!(out, "{}", self.room.human());
        let _ = write!(out, "{}", self.cpu.human());
        out
    }
}

impl SlowReport {
    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut out = header("slow", &self.label, &self.url);
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", self.connections.human());
        let _ = writeln!(
            out,
            "stalled readers: {}, evicted by the server: {} ({})",
            self.stalled,
            self.evicted,
            self.eviction
                .iter()
                .map(|(how, n)| format!("{n} × {how}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(out, "healthy clients: {}", self.healthy.human());
        let _ = write!(out, "{}", self.cpu.human());
        out
    }
}

impl ConnsReport {
    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut out = header("conns", &self.label, &self.url);
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", self.connections.human());
        let _ = writeln!(
            out,
            "connect rate: {} conns/s; handshake {}",
            thousands(self.connects_per_sec),
            self.handshake.human()
        );
        let _ = writeln!(
            out,
            "held {:.1} s: {} dropped by the server while idle",
            self.hold_secs, self.dropped
        );
        if let (Some(before), Some(after)) = (self.server_rss_before_kib, self.server_rss_after_kib) {
            let _ = writeln!(
                out,
                "server RSS: {:.1} MiB before, {:.1} MiB with the connections open: {} B per connection",
                before as f64 / 1024.0,
                after as f64 / 1024.0,
                self.server_rss_per_conn_bytes
                    .map_or_else(|| "?".to_string(), thousands)
            );
        }
        let _ = write!(out, "generator CPU {:.2} s", self.generator_cpu_secs);
        out
    }
}
