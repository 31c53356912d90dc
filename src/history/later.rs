//! Reads that need the database run on a thread of their own, with their
//! own connection.
//!
//! A catch-up that memory cannot answer reads SQLite, and first waits for
//! the writer to commit what already left the cache: milliseconds for a
//! deep room, and as long as the disk or another process holds the writer
//! up (`busy_timeout` allows about 50 s). The hub asks under a room's
//! order lock, on the worker thread that runs its connections, so such a
//! read on the spot would stall every connection of that worker and every
//! join of the room. Here the caller gets a [`Deferred`] instead, and the
//! answer comes to a callback, as a Redis broker's does. The queue of
//! waiting reads is bounded ([`CAPACITY`]): past it the caller gets its
//! callback back and says the history is unavailable.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Weak};

use super::sqlite::Reader;
use super::{Disk, History, HistoryError, Inner};

/// The most reads that may wait for the reader thread.
pub const CAPACITY: usize = 1_024;

/// A read, run on the history it was asked of with the thread's connection.
type Read<T> = Box<dyn FnOnce(&History, Disk<'_>) -> T + Send>;

/// A read waiting for the thread: it runs unless its history is gone by then.
struct Job {
    history: Weak<Inner>,
    run: Read<()>,
}

/// The way to the reader thread.
pub(super) struct Reads {
    tx: Sender<Job>,
    queued: Arc<AtomicUsize>,
}

impl Reads {
    /// Opens the thread's connection to `path` and starts the thread, which
    /// stops when the history (and with it this handle) is dropped.
    pub(super) fn start(path: &Path) -> Result<Reads, HistoryError> {
        let reader = Reader::open(path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = Arc::clone(&queued);
        std::thread::Builder::new()
            .name("wshub-history-reads".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    taken.fetch_sub(1, Ordering::AcqRel);
                    let Some(inner) = job.history.upgrade() else { continue };
                    let history = History { inner };
                    // A callback that panics loses its own answer, not the
                    // thread every later read needs.
                    let run = AssertUnwindSafe(|| (job.run)(&history, Disk::Own(&reader)));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!("a history read's callback panicked");
                    }
                }
            })
            .map_err(HistoryError::Spawn)?;
        Ok(Reads { tx, queued })
    }
}

/// What a read finds: at once, from memory, or later, from the database.
#[derive(Debug)]
pub enum Answer<T> {
    /// Memory had it all.
    Now(T),
    /// It needs the database: give it a callback.
    Later(Deferred<T>),
}

impl<T: 'static> Answer<T> {
    /// The answer in another shape, now or when it comes.
    pub fn map<U: 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Answer<U> {
        match self {
            Answer::Now(found) => Answer::Now(f(found)),
            Answer::Later(deferred) => Answer::Later(deferred.map(f)),
        }
    }
}

/// A read for the reader thread, not queued until it has its callback.
pub struct Deferred<T> {
    history: History,
    read: Read<T>,
}

impl<T> std::fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred").finish_non_exhaustive()
    }
}

impl<T: 'static> Deferred<T> {
    pub(super) fn new(history: &History, read: impl FnOnce(&History, Disk<'_>) -> T + Send + 'static) -> Self {
        Deferred {
            history: history.clone(),
            read: Box::new(read),
        }
    }

    fn map<U: 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Deferred<U> {
        let read = self.read;
        Deferred {
            history: self.history,
            read: Box::new(move |history, disk| f(read(history, disk))),
        }
    }

    /// Queues the read; `then` gets its answer on the reader thread. When
    /// [`CAPACITY`] reads already wait, `then` comes back unused.
    pub fn then<F: FnOnce(T) + Send + 'static>(self, then: F) -> Result<(), F> {
        let Some(reads) = self.history.inner.reads.as_ref() else {
            // No database, so nothing to wait for: answered here.
            then((self.read)(&self.history, Disk::Quick));
            return Ok(());
        };
        if reads.queued.fetch_add(1, Ordering::AcqRel) >= CAPACITY {
            reads.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("{CAPACITY} history reads are waiting for the database: this one is refused");
            return Err(then);
        }
        let read = self.read;
        let job = Job {
            history: Arc::downgrade(&self.history.inner),
            run: Box::new(move |history, disk| then(read(history, disk))),
        };
        // The thread outlives the sender (it stops when the sender is
        // dropped, and a callback's panic does not end it): not expected.
        if reads.tx.send(job).is_err() {
            reads.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("the history reader thread is gone: a read is lost");
        }
        Ok(())
    }
}
