//! Worker threads (`--workers`): each runs a current-thread runtime of its
//! own and serves the sockets the accept loop hands it, from the TLS
//! handshake through HTTP and the upgrade to the connection's end. A
//! connection never leaves its worker, so its task, its socket's
//! registration and everything its handshake allocates stay on one thread
//! (and one allocator heap).
//!
//! Why one accept loop that hands sockets over, rather than a listener per
//! worker with `SO_REUSEPORT`: with the port shared, a second wshub started
//! on the same port would silently take part of the traffic; an accept is
//! cheap next to a handshake, which is what is spread (measured in
//! docs/architecture.md, "Workers").

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Http, ServerError};
use crate::http::placement::{self, WorkerLoad};
use crate::hub::Hub;

/// A future the embedder runs on every worker, for as long as the worker
/// lives (the binary gives each thread's freed memory back to the system
/// this way): see [`Server::with_worker_task`](super::Server::with_worker_task).
pub type WorkerTask = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long a stopping worker waits for blocking work its runtime started.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// A socket on its way to a worker, still registered with no reactor.
type Handoff = (std::net::TcpStream, SocketAddr);

/// The running worker threads, and the way sockets reach them.
#[derive(Debug)]
pub(crate) struct Workers {
    handoffs: Vec<mpsc::UnboundedSender<Handoff>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    loads: Arc<[Arc<WorkerLoad>]>,
    /// Where the search for the least loaded worker starts: ties go round
    /// the workers instead of all to the first.
    cursor: usize,
}

impl Workers {
    /// Starts one thread per entry of `loads`, named `wshub-worker-{i}`,
    /// each with a current-thread runtime that first marks the thread as
    /// the hub's worker `i`, spawns the hub's worker tasks and `task`, then
    /// serves what it is handed through `http`.
    pub(crate) fn start(
        hub: &Hub,
        http: &Http,
        loads: Arc<[Arc<WorkerLoad>]>,
        task: Option<WorkerTask>,
    ) -> Result<Workers, ServerError> {
        let mut workers = Workers {
            handoffs: Vec::with_capacity(loads.len()),
            threads: Vec::with_capacity(loads.len()),
            loads: loads.clone(),
            cursor: 0,
        };
        for (index, load) in loads.iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| ServerError::Workers { index, source })?;
            let (handoff, sockets) = mpsc::unbounded_channel();
            let (hub, http, load) = (hub.clone(), http.clone(), load.clone());
            let thread = std::thread::Builder::new()
                .name(format!("wshub-worker-{index}"))
                .spawn(move || {
                    hub.enter_worker(index);
                    debug_assert_eq!(hub.current_worker(), Some(index));
                    placement::enter(load);
                    runtime.block_on(serve(&hub, index, &http, task, sockets));
                    // Tasks still there (connections aborted at the shutdown
                    // timeout) are dropped here, on their own thread.
                    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
                    placement::leave();
                })
                .map_err(|source| ServerError::Workers { index, source })?;
            workers.handoffs.push(handoff);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Hands an accepted socket to the least loaded worker.
    pub(crate) fn hand_over(&mut self, stream: std::net::TcpStream, peer: SocketAddr) {
        let index = self.least_loaded();
        // Its thread only ends after the senders are gone: a send cannot fail.
        let _ = self.handoffs[index].send((stream, peer));
    }

    fn least_loaded(&mut self) -> usize {
        let count = self.loads.len();
        let start = self.cursor;
        self.cursor = (self.cursor + 1) % count;
        (0..count)
            .map(|offset| (start + offset) % count)
            .min_by_key(|&index| self.loads[index].weight())
            .unwrap_or(0)
    }

    /// Lets every worker finish what it has and end, and waits for the
    /// threads (called once the connections are closed).
    pub(crate) async fn stop(self) {
        let Workers { handoffs, threads, .. } = self;
        drop(handoffs);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a worker thread panicked");
                }
            }
        });
        let _ = joined.await;
    }
}

/// A worker's runtime: the hub's worker tasks and the embedder's beside
/// it, and the sockets it is handed, until the accept loop lets go.
async fn serve(
    hub: &Hub,
    index: usize,
    http: &Http,
    task: Option<WorkerTask>,
    mut sockets: mpsc::UnboundedReceiver<Handoff>,
) {
    tokio::spawn(hub.worker_tasks(index));
    if let Some(task) = task {
        tokio::spawn(task());
    }
    while let Some((stream, peer)) = sockets.recv().await {
        // Registered with this worker's reactor: from here on, TLS, HTTP,
        // the upgrade and the connection all run on this thread.
        match TcpStream::from_std(stream) {
            Ok(stream) => http.serve(stream, peer),
            Err(e) => tracing::debug!(%peer, "cannot register the socket on worker {index}: {e}"),
        }
    }
}
