//! CPU time and memory of the generator and of the server under test, from the kernel.
//!
//! A throughput number means little without the CPU it took: on a 2-core machine the generator
//! may be the bottleneck, and messages per server CPU-second compares servers fairly.

use std::collections::HashMap;
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
    let (_, ticks) = parse_stat(&stat).ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat"))?;
    Ok(ticks as f64 / clock_ticks_per_sec())
}

/// `USER_HZ`: the unit of the times in `/proc/*/stat`.
fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// The name (field 2, `comm`) and utime + stime in ticks of a `/proc/.../stat` line.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    // The name may contain spaces and parentheses: it ends at the last ')'.
    let (head, after) = stat.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name.to_string(), utime + stime))
}

/// One thread's CPU counter at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadTicks {
    /// Thread id.
    pub tid: u32,
    /// Thread name (`comm`, at most 15 bytes), e.g. `wshub-worker-0`.
    pub name: String,
    /// utime + stime so far, in clock ticks.
    pub ticks: u64,
}

/// The threads of process `pid` now (`/proc/PID/task/*/stat`); empty when it cannot be read.
/// A thread that ends while the directory is read is left out.
pub fn thread_ticks(pid: u32) -> Vec<ThreadTicks> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let (name, ticks) = parse_stat(&stat)?;
        Some(ThreadTicks { tid, name, ticks })
    })
    .collect()
}

/// CPU one thread used in a measured window.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ThreadCpu {
    /// Thread name.
    pub name: String,
    /// Thread id.
    pub tid: u32,
    /// CPU seconds in the window.
    pub cpu_secs: f64,
    /// The same as a percentage of one core.
    pub cpu_pct: f64,
}

/// Per-thread CPU between two [`thread_ticks`] readings `wall_secs` apart, busiest first.
///
/// Threads are matched by id. One that started in the window counts from zero; one that ended
/// in it is missing (its time is still in the process total). Threads that used no measurable
/// CPU (less than a tick) are left out.
pub fn thread_usage(before: &[ThreadTicks], after: &[ThreadTicks], wall_secs: f64, hz: f64) -> Vec<ThreadCpu> {
    let earlier: HashMap<u32, u64> = before.iter().map(|t| (t.tid, t.ticks)).collect();
    let mut used: Vec<ThreadCpu> = after
        .iter()
        .filter_map(|t| {
            let ticks = t.ticks.saturating_sub(earlier.get(&t.tid).copied().unwrap_or(0));
            (ticks > 0).then(|| {
                let secs = ticks as f64 / hz;
                ThreadCpu {
                    name: t.name.clone(),
                    tid: t.tid,
                    cpu_secs: (secs * 1000.0).round() / 1000.0,
                    cpu_pct: (secs / wall_secs.max(1e-9) * 1000.0).round() / 10.0,
                }
            })
        })
        .collect();
    used.sort_by(|a, b| b.cpu_secs.total_cmp(&a.cpu_secs).then(a.tid.cmp(&b.tid)));
    used
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
    /// The server's threads in the window, busiest first (`/proc/PID/task/*/stat`): whether a
    /// multi-threaded server used its cores, and which threads did the work.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_threads: Vec<ThreadCpu>,
    /// The generator's threads, busiest first: one near 100 % means the generator, not the
    /// server, may be the limit.
    pub generator_threads: Vec<ThreadCpu>,
    /// The busiest generator thread's CPU, % of one core (for scripts: near 100 is a warning).
    pub generator_busiest_thread_pct: f64,
}

/// Starts measuring at [`CpuMeter::start`], reports at [`CpuMeter::finish`].
#[derive(Debug)]
pub struct CpuMeter {
    wall: Instant,
    own: f64,
    own_threads: Vec<ThreadTicks>,
    server: Option<(u32, f64)>,
    server_threads: Vec<ThreadTicks>,
}

impl CpuMeter {
    /// Reads the counters now. A server pid that cannot be read is ignored (it is reported as
    /// missing rather than failing the run).
    pub fn start(server_pid: Option<u32>) -> Self {
        let server = server_pid.and_then(|pid| Some((pid, process_cpu_secs(pid).ok()?)));
        Self {
            wall: Instant::now(),
            own: own_cpu_secs(),
            own_threads: thread_ticks(std::process::id()),
            server_threads: server.map(|(pid, _)| thread_ticks(pid)).unwrap_or_default(),
            server,
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
        let hz = clock_ticks_per_sec();
        let own_threads = thread_usage(&self.own_threads, &thread_ticks(std::process::id()), wall, hz);
        let server_threads = pid
            .map(|p| thread_usage(&self.server_threads, &thread_ticks(p), wall, hz))
            .unwrap_or_default();
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
            server_threads,
            generator_busiest_thread_pct: own_threads.first().map_or(0.0, |t| t.cpu_pct),
            generator_threads: own_threads,
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
        if self.generator_threads.len() > 1 {
            line.push_str(&format!(
                "\ngenerator threads: {}",
                threads_human(&self.generator_threads)
            ));
        }
        if !self.server_threads.is_empty() {
            line.push_str(&format!("\nserver threads: {}", threads_human(&self.server_threads)));
        }
        line
    }
}

/// `name 97 %, name 3 %`, the busiest eight threads (threads below 1 % left out).
pub fn threads_human(threads: &[ThreadCpu]) -> String {
    let shown: Vec<String> = threads
        .iter()
        .filter(|t| t.cpu_pct >= 1.0)
        .take(8)
        .map(|t| format!("{} {:.0} %", t.name, t.cpu_pct))
        .collect();
    if shown.is_empty() {
        "none above 1 %".to_string()
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        // A name with a space and a parenthesis; utime 1500 and stime 250 (fields 14 and 15).
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1500 250 0 0 20 0 3 0";
        assert_eq!(parse_stat(stat), Some(("my (odd) name".to_string(), 1750)));
        assert_eq!(parse_stat("4242 (short) S 1 2"), None);
    }

    #[test]
    fn thread_usage_matches_threads_by_id() {
        let at = |tid: u32, name: &str, ticks: u64| ThreadTicks {
            tid,
            name: name.to_string(),
            ticks,
        };
        let before = [at(1, "main", 100), at(2, "wshub-worker-0", 500), at(3, "gone", 7)];
        // Over 2 s at 100 ticks/s: worker-0 used 1.8 s, a thread that started in the window
        // 0.5 s, main nothing (left out); "gone" ended (left out).
        let after = [
            at(1, "main", 100),
            at(2, "wshub-worker-0", 680),
            at(9, "wshub-worker-1", 50),
        ];
        let used = thread_usage(&before, &after, 2.0, 100.0);
        assert_eq!(
            used,
            [
                ThreadCpu {
                    name: "wshub-worker-0".into(),
                    tid: 2,
                    cpu_secs: 1.8,
                    cpu_pct: 90.0
                },
                ThreadCpu {
                    name: "wshub-worker-1".into(),
                    tid: 9,
                    cpu_secs: 0.5,
                    cpu_pct: 25.0
                },
            ]
        );
        assert_eq!(threads_human(&used), "wshub-worker-0 90 %, wshub-worker-1 25 %");
    }

    #[test]
    fn a_busy_thread_shows_under_its_name() {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        let meter = CpuMeter::start(Some(std::process::id()));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let spin = std::thread::Builder::new()
            .name("busy-probe".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Relaxed) {
                        std::hint::spin_loop();
                    }
                }
            })
            .unwrap();
        // Until the kernel has charged it a few ticks (a busy machine may take a while).
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while Instant::now() < deadline
            && !thread_ticks(std::process::id())
                .iter()
                .any(|t| t.name == "busy-probe" && t.ticks >= 3)
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let report = meter.finish();
        stop.store(true, Relaxed);
        spin.join().unwrap();
        for threads in [&report.generator_threads, &report.server_threads] {
            let busy = threads.iter().find(|t| t.name == "busy-probe");
            assert!(busy.is_some_and(|t| t.cpu_secs > 0.0), "{threads:?}");
        }
    }

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
