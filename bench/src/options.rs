//! Options every mode shares, the hard caps, and duration parsing.

use std::time::Duration;

/// Longest run any mode accepts: every run must end by itself.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// Most connections a busy mode (echo, broadcast, slow) opens.
pub const MAX_BUSY_CONNECTIONS: usize = 20_000;

/// Most idle connections `conns` opens (several generator processes are needed past ~15k here,
/// where one process may hold 20,000 files).
pub const MAX_IDLE_CONNECTIONS: usize = 100_000;

/// Largest message size (the payload of one benchmark message).
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// Where to aim and what to observe, shared by all modes.
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// `ws://host:port/path` of the endpoint under test.
    pub url: String,
    /// Permit a target outside 127.0.0.0/8 and ::1.
    pub allow_remote: bool,
    /// `Origin` header to send with each upgrade, if any.
    pub origin: Option<String>,
    /// The server's process id: its CPU time and RSS go into the report.
    pub server_pid: Option<u32>,
    /// Print progress to stderr once a second.
    pub progress: bool,
    /// A name for the server under test, copied into the report (e.g. `wshub`, `uws`).
    pub label: Option<String>,
    /// Generator threads the connections are spread over ([`crate::threads`]); 0 and 1 both
    /// mean the caller's runtime.
    pub threads: usize,
}

impl Common {
    /// Options for `url` with everything else off.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

/// Fails unless `duration` is positive and within [`MAX_DURATION`].
pub fn check_duration(what: &str, duration: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(
        !duration.is_zero() && duration <= MAX_DURATION,
        "{what} must be between 1 ms and {} s",
        MAX_DURATION.as_secs()
    );
    Ok(())
}

/// Fails unless `1 <= count <= max`.
pub fn check_count(what: &str, count: usize, max: usize) -> anyhow::Result<()> {
    anyhow::ensure!((1..=max).contains(&count), "{what} must be between 1 and {max}");
    Ok(())
}

/// Parses `500ms`, `10s`, `2m` or a plain number of seconds (`1.5`).
///
/// # Errors
/// Anything else.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 500ms, 10s, 2m)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
