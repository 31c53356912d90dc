//! The generator's threads (`--threads N`): connections spread over N threads, each running its
//! own `current_thread` runtime.
//!
//! One current-thread runtime per thread, rather than one multi-thread runtime, because a
//! connection then stays on the thread whose reactor owns its socket: no work stealing, no
//! cross-thread wake-ups, and the per-message cost of the single-threaded generator on every
//! thread. The run's coordinator (phases, timers, the progress line) stays on the caller's
//! runtime; the counters and histograms the connections fill are shared (atomics, and
//! [`Latencies`](crate::latency::Latencies) batches), so one report covers all threads.
//!
//! With one thread nothing is started: connections run on the caller's runtime, as before
//! `--threads` existed.

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Most generator threads.
pub const MAX_THREADS: usize = 64;

/// Handles of the generator's runtimes; stopping them (on drop) ends every task still on them.
///
/// Keep it alive as long as any connection opened through it is used: a socket belongs to the
/// reactor of the thread it was opened on.
#[derive(Debug)]
pub struct GeneratorThreads {
    handles: Vec<Handle>,
    /// Dropping a sender ends its thread's runtime.
    stops: Vec<oneshot::Sender<()>>,
    joins: Vec<std::thread::JoinHandle<()>>,
}

impl GeneratorThreads {
    /// Starts `threads` threads named `wshub-bench-N` (none for 0 or 1: the caller's runtime is
    /// used).
    ///
    /// # Errors
    /// More than [`MAX_THREADS`], a runtime that cannot be built or a thread that cannot be
    /// spawned; or, for one thread, no tokio runtime around the caller.
    pub fn start(threads: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(threads <= MAX_THREADS, "--threads must be 1 to {MAX_THREADS}");
        if threads <= 1 {
            return Ok(Self {
                handles: vec![Handle::try_current()?],
                stops: Vec::new(),
                joins: Vec::new(),
            });
        }
        let mut started = Self {
            handles: Vec::with_capacity(threads),
            stops: Vec::with_capacity(threads),
            joins: Vec::with_capacity(threads),
        };
        for n in 0..threads {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            started.handles.push(runtime.handle().clone());
            let join = std::thread::Builder::new()
                .name(format!("wshub-bench-{n}"))
                .spawn(move || {
                    // The runtime only runs its spawned tasks while it blocks on something.
                    let _ = runtime.block_on(stop_rx);
                })?;
            started.stops.push(stop_tx);
            started.joins.push(join);
        }
        Ok(started)
    }

    /// Number of runtimes connections are spread over.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least the caller's runtime.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The runtime of connection `index`: round robin, so that the first connections (a room's
    /// senders) are spread over all threads.
    pub fn for_connection(&self, index: usize) -> &Handle {
        &self.handles[index % self.handles.len()]
    }
}

impl Drop for GeneratorThreads {
    fn drop(&mut self) {
        self.stops.clear();
        for join in self.joins.drain(..) {
            let _ = join.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn connections_go_round_robin_over_named_threads() {
        let threads = GeneratorThreads::start(3).unwrap();
        assert_eq!(threads.len(), 3);
        let mut names = Vec::new();
        for index in 0..6 {
            let name = threads
                .for_connection(index)
                .spawn(async { thread_name() })
                .await
                .unwrap();
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "wshub-bench-0",
                "wshub-bench-1",
                "wshub-bench-2",
                "wshub-bench-0",
                "wshub-bench-1",
                "wshub-bench-2"
            ]
        );
    }

    #[tokio::test]
    async fn one_thread_is_the_callers_runtime() {
        let here = thread_name();
        let threads = GeneratorThreads::start(1).unwrap();
        assert_eq!(threads.len(), 1);
        let there = threads.for_connection(5).spawn(async { thread_name() }).await.unwrap();
        assert_eq!(here, there);
    }

    #[tokio::test]
    async fn stopping_ends_the_tasks_left_on_the_threads() {
        let threads = GeneratorThreads::start(2).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        // A task that never finishes by itself; it holds `tx` until its runtime drops it.
        threads.for_connection(1).spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(threads);
        assert!(
            rx.await.is_err(),
            "the task (and its sender) was dropped with its runtime"
        );
    }

    #[test]
    fn too_many_threads_are_refused() {
        assert!(GeneratorThreads::start(MAX_THREADS + 1).is_err());
    }
}
