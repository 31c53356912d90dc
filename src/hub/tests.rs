//! The hub with several workers, each a real thread with its own
//! current-thread runtime, as the server runs them.

use std::collections::VecDeque;
use std::sync::{Arc, Barrier};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;

use super::{Hub, HubConfig, Member, Mode, Replay};
use super::{Outbox, Timeouts};
use crate::broker::LocalBroker;
use crate::history::{Backend, History, HistoryConfig};

const WORKERS: usize = 4;
const MEMBERS_PER_WORKER: usize = 5;
const MESSAGES_PER_SENDER: usize = 200;

fn hub(workers: usize) -> Hub {
    hub_with_history(workers, 0)
}

fn hub_with_history(workers: usize, join_history: usize) -> Hub {
    let history = History::open(HistoryConfig {
        backend: Backend::Memory,
        ..Default::default()
    })
    .expect("memory history");
    Hub::new(HubConfig {
        max_connections: 1_000,
        history: history.clone(),
        join_history,
        timeouts: Timeouts {
            ping_interval: Duration::from_secs(54),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            rate: crate::ratelimit::RateLimits::UNLIMITED,
        },
        max_incomplete_bytes: 1 << 20,
        workers,
        broker: Arc::new(LocalBroker::new(history)),
    })
}

/// Whatever is queued in `outbox` now.
fn take(outbox: &Outbox, into: &mut Vec<Bytes>) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut batch = VecDeque::new();
    if outbox.poll_take(&mut cx, &mut batch).is_ready() {
        into.extend(batch);
    }
}

/// Every member, on every worker, sees the room's messages in one order,
/// while every worker publishes into it at once; and a message crosses to
/// another worker once per worker, not once per member.
#[test]
fn members_on_four_workers_see_one_order_while_all_of_them_publish() {
    let hub = hub(WORKERS);
    let joined = Arc::new(Barrier::new(WORKERS));
    let published = Arc::new(Barrier::new(WORKERS));
    let total = WORKERS * MESSAGES_PER_SENDER;
    let threads: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (hub, joined, published) = (hub.clone(), joined.clone(), published.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                hub.enter_worker(worker);
                runtime.block_on(async move {
                    tokio::spawn(hub.worker_tasks(worker));
                    let outboxes: Vec<_> = (0..MEMBERS_PER_WORKER)
                        .map(|_| Arc::new(Outbox::new(100_000, 1 << 30)))
                        .collect();
                    let memberships: Vec<_> = outboxes
                        .iter()
                        .enumerate()
                        .map(|(i, outbox)| {
                            let member = Member::guest(outbox.clone(), (worker * 100 + i) as u64);
                            hub.join("room", member, Replay::Nothing)
                        })
                        .collect();
                    joined.wait();
                    let nick: Arc<str> = Arc::from(format!("sender-{worker}"));
                    for n in 0..MESSAGES_PER_SENDER {
                        let text = format!("{worker}:{n}");
                        memberships[0].publish_text(&nick, None, &text, None);
                        if n % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    published.wait();
                    let mut seen: Vec<Vec<Bytes>> = vec![Vec::new(); MEMBERS_PER_WORKER];
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                    while seen.iter().any(|frames| frames.len() < total) {
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "worker {worker} got {:?}",
                            seen.iter().map(Vec::len).collect::<Vec<_>>()
                        );
                        for (outbox, frames) in outboxes.iter().zip(&mut seen) {
                            take(outbox, frames);
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    drop(memberships);
                    seen
                })
            })
        })
        .collect();
    let seen: Vec<Vec<Bytes>> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("worker thread"))
        .collect();
    assert_eq!(seen.len(), WORKERS * MEMBERS_PER_WORKER);
    let first = &seen[0];
    assert_eq!(first.len(), total);
    for (i, frames) in seen.iter().enumerate() {
        assert!(frames == first, "member {i} saw another order");
    }
    // Each sender's messages in the order sent.
    let texts: Vec<String> = first
        .iter()
        .map(|frame| String::from_utf8_lossy(&frame[2..]).into_owned())
        .collect();
    for worker in 0..WORKERS {
        let own: Vec<usize> = texts
            .iter()
            .filter_map(|t| t.strip_prefix(&format!("{worker}:")))
            .map(|n| n.parse().expect("a number"))
            .collect();
        assert_eq!(own, (0..MESSAGES_PER_SENDER).collect::<Vec<_>>(), "sender {worker}");
    }
    let parcels = hub.stats().parcels.load(std::sync::atomic::Ordering::Relaxed);
    // At most one per worker with members (the publisher's own worker too,
    // when the room already waits in its inbox), never one per member.
    let most = (total * WORKERS) as u64;
    assert!(
        parcels <= most,
        "{parcels} parcels for {total} messages: more than one per worker"
    );
    assert!(parcels > 0, "messages crossed between workers");
    let delivered = hub.stats().delivered.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(delivered, (total * WORKERS * MEMBERS_PER_WORKER) as u64);
}

/// A room on one worker delivers without its inbox: a worker publishing
/// to its own members pushes straight into their outboxes.
#[test]
fn a_room_on_one_worker_delivers_without_parcels() {
    let hub = hub(2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    hub.enter_worker(1);
    let outbox = Arc::new(Outbox::new(100, 1 << 20));
    let member = hub.join(
        "solo",
        Member::new(outbox.clone(), Mode::Raw, Arc::from("ann")),
        Replay::Nothing,
    );
    runtime.block_on(async {
        member.publish_text(&Arc::from("ann"), None, "hello", None);
    });
    let mut frames = Vec::new();
    take(&outbox, &mut frames);
    assert_eq!(frames.len(), 1);
    assert_eq!(&frames[0][2..], b"hello");
    assert_eq!(hub.stats().parcels.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// A `wshub.v1` member joining on one worker while another worker
/// publishes gets every message once, in order: the replay, then the live
/// stream, with no gap and no duplicate where they meet.
#[test]
fn a_joiner_on_another_worker_gets_replay_then_live_without_gap_or_duplicate() {
    const MESSAGES: u64 = 3_000;
    let hub = hub_with_history(2, 100_000);
    let ready = Arc::new(Barrier::new(2));
    let started = Arc::new(Barrier::new(2));
    let publisher = {
        let (hub, ready, started) = (hub.clone(), ready.clone(), started.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            hub.enter_worker(0);
            runtime.block_on(async move {
                tokio::spawn(hub.worker_tasks(0));
                let outbox = Arc::new(Outbox::new(1_000_000, 1 << 30));
                let sender = hub.join(
                    "live",
                    Member::new(outbox, Mode::Raw, Arc::from("pub")),
                    Replay::Nothing,
                );
                let nick: Arc<str> = Arc::from("pub");
                ready.wait();
                for n in 1..=MESSAGES {
                    sender.publish_text(&nick, None, &n.to_string(), None);
                    if n == MESSAGES / 30 {
                        started.wait();
                    }
                    if n % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    hub.enter_worker(1);
    let ids = runtime.block_on(async {
        tokio::spawn(hub.worker_tasks(1));
        // A member already on this worker: the room's messages come here as
        // parcels, and (this thread blocked meanwhile) wait in its inbox
        // when the joiner arrives, its replay small enough to go out at once.
        let watcher = Arc::new(Outbox::new(1_000_000, 1 << 30));
        let _watching = hub.join("live", Member::new(watcher, Mode::Raw, Arc::from("w")), Replay::Nothing);
        ready.wait();
        started.wait();
        let outbox = Arc::new(Outbox::new(1_000_000, 1 << 30));
        let member = hub.join(
            "live",
            Member::new(outbox.clone(), Mode::Json, Arc::from("late")),
            Replay::Recent,
        );
        let mut ids = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while ids.last() != Some(&MESSAGES) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "got {} ids, last {:?}",
                ids.len(),
                ids.last()
            );
            let mut frames = Vec::new();
            take(&outbox, &mut frames);
            for frame in frames {
                ids.extend(message_ids(&frame));
            }
            while member.continue_replay() {
                let mut frames = Vec::new();
                take(&outbox, &mut frames);
                for frame in frames {
                    ids.extend(message_ids(&frame));
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ids
    });
    publisher.join().expect("publisher");
    assert_eq!(ids, (1..=MESSAGES).collect::<Vec<_>>());
}

/// The ids of the messages in a `history` or `message` frame.
fn message_ids(frame: &Bytes) -> Vec<u64> {
    let (header, len) = match frame[1] & 0x7f {
        126 => (4, usize::from(u16::from_be_bytes([frame[2], frame[3]]))),
        127 => (
            10,
            usize::try_from(u64::from_be_bytes(frame[2..10].try_into().expect("8 bytes"))).expect("fits"),
        ),
        n => (2, usize::from(n)),
    };
    let json: serde_json::Value = serde_json::from_slice(&frame[header..header + len]).expect("JSON");
    match json["type"].as_str() {
        Some("history") => json["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["id"].as_u64().expect("id"))
            .collect(),
        Some("message") => vec![json["id"].as_u64().expect("id")],
        _ => Vec::new(),
    }
}
