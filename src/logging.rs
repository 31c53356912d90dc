//! The binary's log output: a slow reader never stalls the server.
//!
//! Log lines are formatted where they happen (a connection's thread, the
//! accept loop) and handed to a writer thread through a bounded queue
//! (`tracing-appender` in lossy mode). When whatever reads the process's
//! stderr falls behind (a supervisor under load, a paused terminal, a pipe
//! nobody reads), the writer thread blocks, the queue fills, and further
//! lines are **dropped and counted** instead of blocking the thread that
//! logs: connections keep being served. The count is exported as
//! `wshub_log_lines_dropped_total`, and a warning says how many were lost
//! once lines get through again.
//!
//! Library users and tests that install no writer read 0 dropped lines.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How often the count of dropped lines is looked at (and, when it grew,
/// reported): rare enough that the warning cannot flood a slow output.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The longest exit waits for queued lines to be written: a log output
/// that stays blocked must not keep the process from exiting.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The writer's drop counter, once [`init`] installed it.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped since the process started because the log output did
/// not keep up (0 when no writer is installed).
pub fn lines_dropped() -> u64 {
    DROPPED.get().map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Why logging could not be set up.
#[derive(Debug, Error)]
pub enum LoggingError {
    /// The filter is not a valid `EnvFilter` directive list.
    #[error("invalid log filter '{filter}': {source}")]
    Filter {
        /// The filter given.
        filter: String,
        /// What the parser said.
        source: tracing_subscriber::filter::ParseError,
    },
    /// Another subscriber is already installed in this process.
    #[error("cannot install the logger: {0}")]
    Install(Box<dyn std::error::Error + Send + Sync>),
}

/// Keeps the writer thread alive; dropping it writes out what is queued
/// (the worker flushes its buffer whenever the queue is empty; dropping
/// waits at most a couple of seconds), so the shutdown lines are not lost.
/// Hold it for the whole process.
#[derive(Debug)]
pub struct LogGuard {
    worker: Option<WorkerGuard>,
}

impl LogGuard {
    /// Writes out the queued lines, waiting at most `FLUSH_LIMIT` (call
    /// before `std::process::exit`, which runs no destructors).
    pub fn flush(mut self) {
        self.flush_within(FLUSH_LIMIT);
    }

    fn flush_within(&mut self, limit: Duration) {
        let Some(worker) = self.worker.take() else { return };
        // `WorkerGuard`'s drop waits for the writer thread, which may be
        // blocked on a full pipe: wait on another thread, for a bounded time.
        let (done, finished) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("wshub-log-flush".into())
            .spawn(move || {
                drop(worker);
                let _ = done.send(());
            });
        if spawned.is_ok() {
            let _ = finished.recv_timeout(limit);
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.flush_within(FLUSH_LIMIT);
    }
}

/// The bounded, lossy queue in front of `sink`, and its guard.
fn lossy_writer<W: std::io::Write + Send + 'static>(
    sink: W,
    buffer_lines: usize,
) -> (tracing_appender::non_blocking::NonBlocking, LogGuard) {
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(buffer_lines.max(1))
        .thread_name("wshub-log")
        .finish(sink);
    (writer, LogGuard { worker: Some(worker) })
}

/// Installs the process's logger: `filter` (an `EnvFilter` directive list
/// such as `info` or `wshub=debug,info`), `format`, at most `buffer_lines`
/// lines waiting for the output, ANSI colours only when stderr is a terminal
/// (and `NO_COLOR` is not set). Starts the thread that reports drops.
///
/// # Errors
/// [`LoggingError`] for a bad filter or a second installation.
pub fn init(filter: &str, format: LogFormat, buffer_lines: usize) -> Result<LogGuard, LoggingError> {
    let env_filter = EnvFilter::builder()
        .parse(filter)
        .map_err(|source| LoggingError::Filter {
            filter: filter.to_owned(),
            source,
        })?;
    // Buffered: the writer thread flushes whenever its queue is empty.
    let (writer, guard) = lossy_writer(std::io::BufWriter::new(std::io::stderr()), buffer_lines);
    let counter = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(use_colours())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(LoggingError::Install)?;
    let _ = DROPPED.set(counter);
    let _ = std::thread::Builder::new()
        .name("wshub-log-watch".into())
        .spawn(report_drops);
    Ok(guard)
}

fn use_colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Every [`REPORT_EVERY`], warns about lines dropped since the last report
/// that got out.
fn report_drops() {
    let mut reporter = Reporter::new(Instant::now());
    loop {
        std::thread::sleep(REPORT_EVERY);
        let before = lines_dropped();
        let now = Instant::now();
        let Some((lost, over)) = reporter.due(before, now) else {
            continue;
        };
        tracing::warn!(
            dropped = lost,
            dropped_total = before,
            "{lost} log lines dropped in the last {}: the log output is not read fast enough",
            humantime::format_duration(Duration::from_secs(over.as_secs().max(1)))
        );
        reporter.sent(before, lines_dropped(), now);
    }
}

/// What the drop warnings have said so far.
///
/// The warning itself goes through the same queue, so it is lost too while
/// the output is blocked; whether it got in shows in the counter (a warning
/// that was dropped raised it). Lines are reported until a warning about
/// them gets in, and the warnings' own losses are not counted as news.
#[derive(Debug)]
struct Reporter {
    /// Drops (not counting our own lost warnings) already reported.
    reported: u64,
    /// Our warnings that were dropped.
    own_lost: u64,
    /// Since when the unreported drops may have happened: the last look
    /// that found nothing new, or the last report that got out.
    since: Instant,
}

impl Reporter {
    fn new(now: Instant) -> Reporter {
        Reporter {
            reported: 0,
            own_lost: 0,
            since: now,
        }
    }

    /// With the counter at `total`: how many lines to report, over how long.
    fn due(&mut self, total: u64, now: Instant) -> Option<(u64, Duration)> {
        let lost = total.saturating_sub(self.own_lost).saturating_sub(self.reported);
        if lost == 0 {
            self.since = now;
            return None;
        }
        Some((lost, now.saturating_duration_since(self.since)))
    }

    /// A warning was emitted while the counter went from `before` to `after`.
    fn sent(&mut self, before: u64, after: u64, now: Instant) {
        if after == before {
            self.reported = before.saturating_sub(self.own_lost);
            self.since = now;
        } else {
            self.own_lost += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_dropped_says_nothing_and_moves_the_window() {
        let start = Instant::now();
        let mut r = Reporter::new(start);
        assert_eq!(r.due(0, start + Duration::from_secs(5)), None);
        // Drops that start later are dated from the last quiet look.
        let (lost, over) = r.due(7, start + Duration::from_secs(10)).unwrap();
        assert_eq!((lost, over), (7, Duration::from_secs(5)));
    }

    #[test]
    fn a_warning_that_got_out_resets_the_count() {
        let start = Instant::now();
        let mut r = Reporter::new(start);
        let at = start + Duration::from_secs(5);
        assert_eq!(r.due(3, at).map(|d| d.0), Some(3));
        r.sent(3, 3, at);
        assert_eq!(r.due(3, at + Duration::from_secs(5)), None);
        assert_eq!(r.due(5, at + Duration::from_secs(10)).map(|d| d.0), Some(2));
    }

    #[test]
    fn a_lost_warning_is_repeated_with_the_whole_window_and_is_not_news_itself() {
        let start = Instant::now();
        let mut r = Reporter::new(start);
        let first = start + Duration::from_secs(5);
        assert_eq!(r.due(10, first).map(|d| d.0), Some(10));
        // The output is still blocked: the warning was dropped too (11).
        r.sent(10, 11, first);
        let (lost, over) = r.due(11, first + Duration::from_secs(5)).unwrap();
        assert_eq!((lost, over), (10, Duration::from_secs(10)));
        r.sent(11, 11, first + Duration::from_secs(5));
        assert_eq!(r.due(11, first + Duration::from_secs(10)), None);
    }

    /// A log output that takes `delay` for each write, into `lines`.
    struct SlowSink {
        delay: Duration,
        written: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl std::io::Write for SlowSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.delay);
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_beyond_the_queue_are_dropped_and_counted_and_flush_writes_the_rest() {
        use std::io::Write;
        let written = std::sync::Arc::default();
        let sink = SlowSink {
            delay: Duration::from_millis(2),
            written: std::sync::Arc::clone(&written),
        };
        let (mut writer, guard) = lossy_writer(sink, 10);
        let counter = writer.error_counter();
        for i in 0..100 {
            // Never blocks, however slow the sink.
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        let dropped = counter.dropped_lines();
        assert!(dropped >= 80, "{dropped} dropped");
        guard.flush();
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.lines().count() + dropped,
            100,
            "everything queued was written: {text}"
        );
        assert!(text.starts_with("line 0\n"), "{text}");
    }

    #[test]
    fn exit_does_not_wait_for_an_output_that_never_drains() {
        use std::io::Write;
        struct Stuck;
        impl std::io::Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                loop {
                    std::thread::park();
                }
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (mut writer, mut guard) = lossy_writer(Stuck, 4);
        for _ in 0..10 {
            writer.write_all(b"line\n").unwrap();
        }
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            guard.flush_within(Duration::from_millis(100));
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(30)).is_ok(),
            "flush gave up on the blocked output"
        );
    }

    #[test]
    fn no_writer_means_nothing_dropped() {
        assert_eq!(lines_dropped(), 0);
    }
}
