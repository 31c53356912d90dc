//! The run's clock and latency histograms.
//!
//! Tasks record into a small local buffer and merge it into one shared [`Histogram`] every few
//! hundred samples: one histogram per connection would cost hundreds of KiB each at 1,000
//! clients, and a lock per sample would serialise the threads of a multi-threaded run.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Nanoseconds since the start of the run; shared by all tasks so that a send time written into
/// a message by one client can be compared with the receive time at another.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Starts the clock now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Nanoseconds since [`start`](Self::start).
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// A histogram of latencies in nanoseconds (1 ns to 1 h, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Latencies(Arc<Mutex<Histogram<u64>>>);

/// Samples kept locally before they are merged into the shared histogram.
const BATCH: usize = 256;

impl Default for Latencies {
    fn default() -> Self {
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds");
        Self(Arc::new(Mutex::new(histogram)))
    }
}

impl Latencies {
    /// A recorder for one task.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            shared: self.0.clone(),
            local: Vec::with_capacity(BATCH),
        }
    }

    /// Percentiles of everything recorded so far (recorders merge when dropped).
    pub fn summary(&self) -> LatencySummary {
        let h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        LatencySummary::of(&h)
    }
}

/// Records latencies for one task; merges into the shared histogram in batches and on drop.
#[derive(Debug)]
pub struct Recorder {
    shared: Arc<Mutex<Histogram<u64>>>,
    local: Vec<u64>,
}

impl Recorder {
    /// Records one latency.
    pub fn record(&mut self, nanos: u64) {
        self.local.push(nanos.max(1));
        if self.local.len() >= BATCH {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let mut h = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for &v in &self.local {
            h.saturating_record(v);
        }
        self.local.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.local.is_empty() {
            self.merge();
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

impl LatencySummary {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        Self {
            count: h.len(),
            mean_us: (h.mean() / 100.0).round() / 10.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }

    /// `p50 … p99 … p99.9 … max` in milliseconds, for the human-readable summary.
    pub fn human(&self) -> String {
        if self.count == 0 {
            return "no samples".to_string();
        }
        format!(
            "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
            self.p50_us / 1e3,
            self.p99_us / 1e3,
            self.p999_us / 1e3,
            self.max_us / 1e3
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_merge_on_drop() {
        let latencies = Latencies::default();
        {
            let mut a = latencies.recorder();
            let mut b = latencies.recorder();
            for i in 1..=1000u64 {
                a.record(i * 1000);
                b.record(i * 1000);
            }
        }
        let s = latencies.summary();
        assert_eq!(s.count, 2000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
    }
}
