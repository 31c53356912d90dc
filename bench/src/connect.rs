//! Opening many connections at once, with bounded concurrency and a per-connection timeout.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{self, ConnectOptions, WsConn};
use crate::latency::{Clock, Latencies};
use crate::progress::Progress;
use crate::target::Target;
use crate::threads::GeneratorThreads;

/// Upgrades in flight at once by default: enough to keep a server's accept loop busy without
/// overflowing its listen backlog.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// Time allowed for one TCP connect plus upgrade.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections that opened, indexed as requested, and what happened to the rest.
#[derive(Debug, Default)]
pub struct Opened {
    /// `(index, connection)`, sorted by index.
    pub conns: Vec<(usize, WsConn)>,
    /// How many failed.
    pub failed: usize,
    /// Failure messages and how often each occurred.
    pub errors: BTreeMap<String, usize>,
    /// Time to open them all.
    pub elapsed: Duration,
    /// Time from socket creation to a checked `101`, per connection.
    pub handshake: Latencies,
}

/// Opens connections `first..first + count` to `target`, `concurrency` at a time.
///
/// `options(i)` gives connection `i`'s options (its source address, buffer sizes). Connection
/// `i` is opened on `threads.for_connection(i)`, and its task must run there too: its socket
/// belongs to that thread's reactor. Failures are counted, not returned: a load test reports
/// how many connections the server refused.
pub async fn open_many(
    target: &Arc<Target>,
    first: usize,
    count: usize,
    concurrency: usize,
    options: impl Fn(usize) -> ConnectOptions,
    threads: &GeneratorThreads,
    progress: &Arc<Progress>,
) -> Opened {
    open_spread(
        |_| target.clone(),
        first,
        count,
        concurrency,
        options,
        threads,
        progress,
    )
    .await
}

/// Like [`open_many`], with connection `i` going to `target_of(i)` (clients spread over the
/// nodes of a cluster).
pub async fn open_spread(
    target_of: impl Fn(usize) -> Arc<Target>,
    first: usize,
    count: usize,
    concurrency: usize,
    options: impl Fn(usize) -> ConnectOptions,
    threads: &GeneratorThreads,
    progress: &Arc<Progress>,
) -> Opened {
    let started = Instant::now();
    let clock = Clock::start();
    let mut opened = Opened::default();
    let mut set = JoinSet::new();
    let mut next = first;
    let end = first + count;
    let mut handshake = opened.handshake.recorder();
    loop {
        while next < end && set.len() < concurrency.max(1) {
            let (target, opts, i) = (target_of(next), options(next), next);
            let connect = async move {
                let t0 = clock.now_ns();
                let result = tokio::time::timeout(CONNECT_TIMEOUT, client::connect(&target, &opts, i as u64))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("connect timed out")));
                (i, result, clock.now_ns() - t0)
            };
            set.spawn_on(connect, threads.for_connection(i));
            next += 1;
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        match joined {
            Ok((i, Ok(conn), nanos)) => {
                handshake.record(nanos);
                progress.connected.fetch_add(1, Relaxed);
                opened.conns.push((i, conn));
            }
            Ok((_, Err(e), _)) => {
                progress.failed.fetch_add(1, Relaxed);
                opened.failed += 1;
                *opened.errors.entry(error_kind(&e)).or_default() += 1;
            }
            Err(e) => {
                opened.failed += 1;
                *opened.errors.entry(format!("task: {e}")).or_default() += 1;
            }
        }
    }
    drop(handshake);
    opened.conns.sort_unstable_by_key(|(i, _)| *i);
    opened.elapsed = started.elapsed();
    opened
}

/// An error message without the parts that differ per connection (os error numbers stay).
fn error_kind(e: &anyhow::Error) -> String {
    let text = e.to_string();
    text.chars().take(120).collect()
}
