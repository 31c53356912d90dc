//! CPU time and memory of the generator and of the server under test, from the kernel.
//!
//! A throughput number means little without the CPU it took: on a 2-core machine the generator
//! may be the bottleneck, and messages per server CPU-second compares servers fairly.

use std::time::Instant;

use serde::Serialize;

/// CPU seconds (user + system) used so far by this process, all threads.
pub fn own_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds (utime + stime, all threads) used so far by process `pid`.
///
/// # Errors
/// The process does not exist or its `stat` cannot be parsed.
pub fn process_cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: count fields after its closing parenthesis.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let ticks: u64 = fields
        .get(11..13)
        .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

/// A `Vm*:` value of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, …).
///
/// # Errors
/// The process does not exist or has no such field.
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

/// Wall and CPU time of the generator and (optionally) the server over a measured window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// Length of the window.
    pub wall_secs: f64,
    /// CPU the generator used in it.
    pub generator_cpu_secs: f64,
    /// The same as a percentage of one core.
    pub generator_cpu_pct: f64,
    /// The server's process id, when given.
    pub server_pid: Option<u32>,
    /// CPU the server used in the window.
    pub server_cpu_secs: Option<f64>,
    /// The same as a percentage of one core.
    pub server_cpu_pct: Option<f64>,
    /// The server's resident memory at the end of the window, KiB.
    pub server_rss_kib: Option<u64>,
    /// The server's peak resident memory so far (`VmHWM`), KiB.
    pub server_peak_rss_kib: Option<u64>,
}

/// Starts measuring at [`CpuMeter::start`], reports at [`CpuMeter::finish`].
#[derive(Debug)]
pub struct CpuMeter {
    wall: Instant,
    own: f64,
    server: Option<(u32, f64)>,
}

impl CpuMeter {
    /// Reads the counters now. A server pid that cannot be read is ignored (it is reported as
    /// missing rather than failing the run).
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            wall: Instant::now(),
            own: own_cpu_secs(),
            server: server_pid.and_then(|pid| Some((pid, process_cpu_secs(pid).ok()?))),
        }
    }

    /// The report for the window since `start`.
    pub fn finish(&self) -> CpuReport {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let generator = own_cpu_secs() - self.own;
        let server = self
            .server
            .and_then(|(pid, before)| Some(process_cpu_secs(pid).ok()? - before));
        let pid = self.server.map(|(pid, _)| pid);
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        CpuReport {
            wall_secs: round(wall),
            generator_cpu_secs: round(generator),
            generator_cpu_pct: (generator / wall * 1000.0).round() / 10.0,
            server_pid: pid,
            server_cpu_secs: server.map(round),
            server_cpu_pct: server.map(|s| (s / wall * 1000.0).round() / 10.0),
            server_rss_kib: pid.and_then(|p| status_kib(p, "VmRSS").ok()),
            server_peak_rss_kib: pid.and_then(|p| status_kib(p, "VmHWM").ok()),
        }
    }
}

impl CpuReport {
    /// One line for the human-readable summary.
    pub fn human(&self) -> String {
        let mut line = format!(
            "generator CPU {:.2} s ({:.0} % of a core)",
            self.generator_cpu_secs, self.generator_cpu_pct
        );
        if let (Some(s), Some(p)) = (self.server_cpu_secs, self.server_cpu_pct) {
            line.push_str(&format!(", server CPU {s:.2} s ({p:.0} %)"));
        }
        if let Some(rss) = self.server_rss_kib {
            line.push_str(&format!(", server RSS {:.1} MiB", rss as f64 / 1024.0));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(process_cpu_secs(pid).unwrap() >= 0.0);
        assert!(status_kib(pid, "VmRSS").unwrap() > 0);
        let meter = CpuMeter::start(Some(pid));
        let report = meter.finish();
        assert_eq!(report.server_pid, Some(pid));
        assert!(report.server_cpu_secs.is_some());
    }
}
