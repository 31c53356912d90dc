//! Live progress on stderr, once a second, when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters the modes bump as they go; read once a second by the reporter.
#[derive(Debug, Default)]
pub struct Progress {
    /// Connections wanted.
    pub wanted: AtomicU64,
    /// Connections open.
    pub connected: AtomicU64,
    /// Connections that failed to open.
    pub failed: AtomicU64,
    /// Messages (echoes or deliveries) received so far.
    pub messages: AtomicU64,
}

/// Prints progress until dropped.
#[derive(Debug)]
pub struct Reporter {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reporter {
    /// Starts printing `progress` for `mode` when `enabled` and stderr is a terminal.
    pub fn start(mode: &'static str, progress: Arc<Progress>, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self { task: None };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last = 0u64;
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let messages = progress.messages.load(Relaxed);
                let line = format!(
                    "\r\x1b[K{mode} {:>4.0}s  conns {}/{} ({} failed)  {} msgs/s  ({} total)",
                    start.elapsed().as_secs_f64(),
                    progress.connected.load(Relaxed),
                    progress.wanted.load(Relaxed),
                    progress.failed.load(Relaxed),
                    messages - last,
                    messages
                );
                last = messages;
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        });
        Self { task: Some(task) }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = std::io::stderr().write_all(b"\r\x1b[K");
        }
    }
}
