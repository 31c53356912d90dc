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

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Http, ServerError};
use crate::hub::Hub;

/// A future the embedder runs on every worker, for as long as the worker
/// lives (the binary gives each thread's freed memory back to the system
/// this way): see [`Server::with_worker_task`](super::Server::with_worker_task).
pub type WorkerTask = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long a stopping worker waits for blocking work its runtime started.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// What one worker carries, to place the next socket: counted without a
/// lock, as the accept loop reads it for every socket (what `/healthz` and
/// `/metrics` show comes from the hub's registry instead).
#[derive(Debug, Default)]
pub(crate) struct WorkerLoad {
    /// WebSocket connections whose task runs on the worker.
    connections: AtomicUsize,
    /// Sockets handed to the worker and still speaking TLS or HTTP (a
    /// handshake under way): counted for placement, so that a burst of
    /// connects is spread before any of them has upgraded.
    http: AtomicUsize,
}

impl WorkerLoad {
    fn weight(&self) -> usize {
        self.connections.load(Ordering::Relaxed) + self.http.load(Ordering::Relaxed)
    }
}

/// Counts a socket speaking TLS or HTTP on this thread's worker until the
/// guard drops; `None` off the workers.
pub(crate) fn serving_http() -> Option<HttpGuard> {
    let load = current_load()?;
    load.http.fetch_add(1, Ordering::Relaxed);
    Some(HttpGuard(load))
}

/// A socket still speaking TLS or HTTP on its worker.
#[derive(Debug)]
pub(crate) struct HttpGuard(Arc<WorkerLoad>);

impl Drop for HttpGuard {
    fn drop(&mut self) {
        self.0.http.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// The load of the worker this thread is, if it is one of ours.
    static CURRENT: RefCell<Option<Arc<WorkerLoad>>> = const { RefCell::new(None) };
}

fn current_load() -> Option<Arc<WorkerLoad>> {
    CURRENT.try_with(|current| current.borrow().clone()).ok().flatten()
}

/// A connection's task, counted on the worker it runs on while it lives
/// (for placement).
///
/// It adds no bytes to the task (the count is reached through the thread,
/// and a task never leaves its current-thread runtime, where it is also
/// dropped): a connection's task size is its idle memory.
#[derive(Debug)]
pub(crate) struct Counted<F>(F);

impl<F> Counted<F> {
    /// Counts `task` on this thread's worker; `None` on a thread that is
    /// not one (with one worker, everything runs on the caller's runtime
    /// and the hub's own count is the worker's).
    pub(crate) fn on_this_worker(task: F) -> Result<Self, F> {
        match current_load() {
            Some(load) => {
                load.connections.fetch_add(1, Ordering::Relaxed);
                Ok(Counted(task))
            }
            None => Err(task),
        }
    }
}

impl<F: Future + Unpin> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<F> Drop for Counted<F> {
    fn drop(&mut self) {
        if let Some(load) = current_load() {
            load.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

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
                    CURRENT.with(|current| *current.borrow_mut() = Some(load));
                    runtime.block_on(serve(&hub, index, &http, task, sockets));
                    // Tasks still there (connections aborted at the shutdown
                    // timeout) are dropped here, on their own thread.
                    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
                    CURRENT.with(|current| current.borrow_mut().take());
                })
                .map_err(|source| ServerError::Workers { index, source })?;
            workers.handoffs.push(handoff);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Hands an accepted socket to the least loaded worker.
    pub(crate) fn hand_over(&mut self, stream: TcpStream, peer: SocketAddr) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => return tracing::debug!(%peer, "cannot hand the socket to a worker: {e}"),
        };
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
