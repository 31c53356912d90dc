//! How busy each worker is, for placing the next socket: counted on the
//! worker's own thread as sockets speak HTTP and connections live.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

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
    pub(crate) fn weight(&self) -> usize {
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

/// Marks this thread as the worker that carries `load`.
pub(crate) fn enter(load: Arc<WorkerLoad>) {
    CURRENT.with(|current| *current.borrow_mut() = Some(load));
}

/// This thread is a worker no more.
pub(crate) fn leave() {
    CURRENT.with(|current| current.borrow_mut().take());
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
