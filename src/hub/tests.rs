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
        room_events: Arc::new(super::Unheard),
    })
}

/// A current-thread runtime on this thread, which is now `worker`'s.
fn worker_runtime(hub: &Hub, worker: usize) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    hub.enter_worker(worker);
    runtime
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
                let runtime = worker_runtime(&hub, worker);
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
    let runtime = worker_runtime(&hub, 1);
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
            let runtime = worker_runtime(&hub, 0);
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
    let runtime = worker_runtime(&hub, 1);
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

/// The JSON text of each frame queued in `outbox` now.
fn texts(outbox: &Outbox) -> Vec<serde_json::Value> {
    let mut frames = Vec::new();
    take(outbox, &mut frames);
    frames
        .iter()
        .map(|frame| {
            let start = if frame[1] & 0x7f == 126 { 4 } else { 2 };
            serde_json::from_slice(&frame[start..])
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&frame[start..]).into_owned()))
        })
        .collect()
}

fn events(outbox: &Outbox) -> Vec<String> {
    texts(outbox)
        .iter()
        .map(|v| v["event"].as_str().or(v["type"].as_str()).unwrap_or("raw").to_owned())
        .collect()
}

fn presence(user: &str, info: &str) -> Option<(Arc<str>, Arc<str>)> {
    Some((Arc::from(user), Arc::from(info)))
}

/// Pusher presence: a user with two connections is one member, announced
/// for its first connection and removed with its last; the others are
/// told, the connection itself is not.
#[test]
fn a_presence_user_is_one_member_however_many_connections() {
    let hub = hub(1);
    let outbox = || Arc::new(Outbox::new(100, 1 << 20));
    let (ann1, ann2, bo) = (outbox(), outbox(), outbox());
    let a1 = hub.join(
        "presence-x",
        Member::pusher(ann1.clone(), 1, presence("ann", r#"{"n":"Ann"}"#)),
        Replay::Nothing,
    );
    assert_eq!(events(&ann1), ["pusher_internal:subscription_succeeded"]);
    let b = hub.join(
        "presence-x",
        Member::pusher(bo.clone(), 2, presence("bo", "null")),
        Replay::Nothing,
    );
    let bo_frames = texts(&bo);
    let data: serde_json::Value = serde_json::from_str(bo_frames[0]["data"].as_str().expect("data")).expect("JSON");
    assert_eq!(data["presence"]["ids"], serde_json::json!(["ann", "bo"]));
    assert_eq!(data["presence"]["hash"]["ann"], serde_json::json!({"n": "Ann"}));
    assert_eq!(events(&ann1), ["pusher_internal:member_added"]);
    let a2 = hub.join(
        "presence-x",
        Member::pusher(ann2.clone(), 3, presence("ann", r#"{"n":"Ann"}"#)),
        Replay::Nothing,
    );
    assert_eq!(events(&ann2), ["pusher_internal:subscription_succeeded"]);
    assert!(events(&bo).is_empty(), "a second connection of ann is no new member");
    assert_eq!(hub.room("presence-x").expect("room").channel_info().users, 2);
    assert_eq!(hub.room("presence-x").expect("room").channel_info().subscriptions, 3);
    drop(a1);
    assert!(
        events(&bo).is_empty(),
        "ann is still there through her second connection"
    );
    drop(a2);
    let removed = texts(&bo);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["event"], "pusher_internal:member_removed");
    assert_eq!(removed[0]["data"], r#"{"user_id":"ann"}"#);
    drop(b);
    assert!(hub.room("presence-x").is_none());
}

/// A client event reaches the channel's other Pusher members, not its
/// sender; an HTTP API event reaches every member in its own form, but the
/// excluded connection, and is stored.
#[test]
fn events_reach_each_protocol_in_its_form_and_client_events_skip_the_sender() {
    let hub = hub(1);
    let outbox = || Arc::new(Outbox::new(100, 1 << 20));
    let (p1, p2, raw, json) = (outbox(), outbox(), outbox(), outbox());
    let m1 = hub.join("lobby", Member::pusher(p1.clone(), 1, None), Replay::Nothing);
    let _m2 = hub.join("lobby", Member::pusher(p2.clone(), 2, None), Replay::Nothing);
    let _r = hub.join("lobby", Member::guest(raw.clone(), 3), Replay::Nothing);
    let _j = hub.join(
        "lobby",
        Member::new(json.clone(), Mode::Json, Arc::from("jo")),
        Replay::Nothing,
    );
    for o in [&p1, &p2, &raw, &json] {
        texts(o);
    }
    m1.relay(&crate::protocol::pusher::server::event(
        "lobby",
        "client-typing",
        "{}",
        None,
    ));
    assert!(events(&p1).is_empty(), "not echoed to its sender");
    assert_eq!(events(&p2), ["client-typing"]);
    assert!(
        texts(&raw).is_empty() && texts(&json).is_empty(),
        "client events are Pusher's"
    );

    let (app, greet) = (Arc::from("app-id"), Arc::from("greet"));
    hub.publish_event(
        "lobby",
        &app,
        &greet,
        r#"{"hi":1}"#,
        super::sealed::seal(super::member::outbox_id(&p2)),
    );
    assert_eq!(
        texts(&p1),
        [serde_json::json!({"event": "greet", "channel": "lobby", "data": "{\"hi\":1}", "id": 1})]
    );
    assert!(texts(&p2).is_empty(), "the excluded socket");
    assert_eq!(texts(&raw), [serde_json::json!({"hi": 1})]);
    let v1 = texts(&json);
    assert_eq!(v1[0]["type"], "message");
    assert_eq!(v1[0]["event"], "greet");
    assert_eq!(v1[0]["text"], r#"{"hi":1}"#);
    assert_eq!(hub.history().recent("lobby", 10).len(), 1, "stored, numbered");

    // A chat message reaches Pusher members as the event `message`.
    hub.room("lobby")
        .expect("room")
        .publish_text(&hub, &Arc::from("jo"), None, "hello", None);
    let chat = texts(&p1);
    assert_eq!(chat[0]["event"], super::pusher::CHAT_EVENT);
    let data: serde_json::Value = serde_json::from_str(chat[0]["data"].as_str().expect("data")).expect("JSON");
    assert_eq!(
        (data["nick"].as_str(), data["text"].as_str(), data["id"].as_u64()),
        (Some("jo"), Some("hello"), Some(2))
    );
}

/// An event for a room without members here is stored (for catch-up) and
/// leaves no room behind.
#[test]
fn an_event_for_an_empty_room_is_stored_and_leaves_no_room() {
    let hub = hub(1);
    hub.publish_event("quiet", &Arc::from("app"), &Arc::from("e"), "d", 0);
    assert!(hub.room("quiet").is_none());
    assert!(hub.channels("").is_empty());
    let stored = hub.history().recent("quiet", 10);
    assert_eq!((stored.len(), stored[0].event.as_deref()), (1, Some("e")));
}

/// An HTTP API event that found the room just before its last member
/// left is not lost in that closed room: it goes to the room that
/// replaced it, whose new member would otherwise never see it live.
#[test]
fn an_event_for_a_room_closed_meanwhile_goes_to_the_room_that_replaced_it() {
    let hub = hub(1);
    let outbox = || Arc::new(Outbox::new(100, 1 << 20));
    let first = hub.join("r", Member::pusher(outbox(), 1, None), Replay::Nothing);
    let held = hub.room("r").expect("room");
    drop(first);
    let later = outbox();
    let _second = hub.join("r", Member::pusher(later.clone(), 2, None), Replay::Nothing);
    texts(&later);
    let (app, name) = (Arc::from("app"), Arc::from("e"));
    assert!(
        !held.publish_event(&hub, &app, &name, "{}", 0),
        "a closed room publishes nothing"
    );
    assert_eq!(hub.history().last_id("r"), 0, "nor numbers it");
    hub.publish_event("r", &app, &name, "{}", 0);
    assert_eq!(events(&later), ["e"]);
}

/// A long catch-up, with live messages and a join arriving while it is
/// paced out: the live messages follow the history paced too (queued at
/// once, more of them than the outbox's count bound evicted a member that
/// read all along), and the join is in the member list, not after it.
#[test]
fn a_catch_up_backlog_is_paced_and_its_events_are_not_repeated_after_the_list() {
    const STORED: u64 = 600;
    const LIVE: u64 = 40;
    let hub = hub_with_history(1, 0);
    let runtime = worker_runtime(&hub, 0);
    runtime.block_on(async {
        let sink = Arc::new(Outbox::new(1_000_000, 1 << 30));
        let sender = hub.join("long", Member::new(sink, Mode::Raw, Arc::from("pub")), Replay::Nothing);
        let nick: Arc<str> = Arc::from("pub");
        let text = "x".repeat(1000);
        for _ in 0..STORED {
            sender.publish_text(&nick, None, &text, None);
        }
        // Bounds of 16 frames and 1 MiB: the 600 KB of history go out a few
        // chunks at a time.
        let outbox = Arc::new(Outbox::new(16, 1 << 20));
        let member = hub.join(
            "long",
            Member::new(outbox.clone(), Mode::Json, Arc::from("ann")),
            Replay::Since(0),
        );
        let carol = Arc::new(Outbox::new(1_000, 1 << 20));
        let _carol = hub.join(
            "long",
            Member::new(carol, Mode::Json, Arc::from("carol")),
            Replay::Nothing,
        );
        for n in 0..LIVE {
            sender.publish_text(&nick, None, &format!("live {n}"), None);
        }
        let mut frames = Vec::new();
        take(&outbox, &mut frames);
        while member.continue_replay() {
            take(&outbox, &mut frames);
        }
        take(&outbox, &mut frames);
        assert!(outbox.close_requested().is_none(), "the member was not evicted");
        let kinds: Vec<(String, Vec<u64>)> = frames
            .iter()
            .map(|frame| {
                let start = match frame[1] & 0x7f {
                    126 => 4,
                    127 => 10,
                    _ => 2,
                };
                let json: serde_json::Value = serde_json::from_slice(&frame[start..]).expect("JSON");
                let kind = json["type"].as_str().unwrap_or("").to_owned();
                (kind, message_ids(frame))
            })
            .collect();
        let presence_at = kinds.iter().position(|(k, _)| k == "presence").expect("a member list");
        let listed = String::from_utf8_lossy(&frames[presence_at]).into_owned();
        assert!(listed.contains("\"carol\""), "carol is listed: {listed}");
        let history: Vec<u64> = kinds[..presence_at].iter().flat_map(|(_, ids)| ids.clone()).collect();
        assert_eq!(history, (1..=STORED).collect::<Vec<_>>());
        assert!(kinds[..presence_at].iter().all(|(k, _)| k == "history"), "{kinds:?}");
        let after: Vec<&(String, Vec<u64>)> = kinds[presence_at + 1..].iter().collect();
        assert!(
            after.iter().all(|(k, _)| k == "message"),
            "only the live messages after the list (carol's join is in it): {after:?}"
        );
        let live: Vec<u64> = after.iter().flat_map(|(_, ids)| ids.clone()).collect();
        assert_eq!(live, (STORED + 1..=STORED + LIVE).collect::<Vec<_>>());
    });
}

/// A worker that does not get to its inbox while another publishes more
/// than the inbox holds: what does not fit is not kept, and the room's
/// members there are evicted as slow consumers (they would miss it), not
/// left with a gap.
#[test]
fn a_worker_far_behind_evicts_its_members_instead_of_holding_every_message() {
    const MESSAGES: usize = 80;
    let hub = hub_with_history(2, 0);
    let joined = Arc::new(Barrier::new(2));
    let published = Arc::new(Barrier::new(2));
    let behind = {
        let (hub, joined, published) = (hub.clone(), joined.clone(), published.clone());
        std::thread::spawn(move || {
            let runtime = worker_runtime(&hub, 1);
            runtime.block_on(async move {
                // No inbox task: this worker is busy elsewhere.
                let outbox = Arc::new(Outbox::new(1_000_000, 1 << 30));
                let _member = hub.join(
                    "far",
                    Member::new(outbox.clone(), Mode::Json, Arc::from("slow")),
                    Replay::Nothing,
                );
                joined.wait();
                published.wait();
                hub.inbox(1).drain(&hub, 1);
                outbox.close_requested()
            })
        })
    };
    let runtime = worker_runtime(&hub, 0);
    let own = runtime.block_on(async {
        let outbox = Arc::new(Outbox::new(1_000_000, 1 << 30));
        let sender = hub.join(
            "far",
            Member::new(outbox.clone(), Mode::Json, Arc::from("pub")),
            Replay::Nothing,
        );
        joined.wait();
        // The other member's arrival, announced from its worker.
        hub.inbox(0).drain(&hub, 0);
        let nick: Arc<str> = Arc::from("pub");
        let text = "x".repeat(1 << 20);
        for _ in 0..MESSAGES {
            sender.publish_text(&nick, None, &text, None);
        }
        published.wait();
        let mut frames = Vec::new();
        take(&outbox, &mut frames);
        let messages: Vec<&Bytes> = frames.iter().filter(|f| !message_ids(f).is_empty()).collect();
        (messages.len(), messages.last().map_or(0, |f| f.len()))
    });
    let close = behind.join().expect("worker 1");
    let (own, frame_len) = own;
    assert_eq!(own, MESSAGES, "the publisher's worker delivers everything");
    // One form (JSON) in each parcel: fewer fit the inbox than were sent.
    assert!(super::inbox::MAX_INBOX_BYTES / frame_len < MESSAGES);
    assert!(
        matches!(close, Some(super::CloseRequest::Evicted(..))),
        "then evicted: {close:?}"
    );
}

/// The member list is encoded once while the members stay as they are
/// (asked again, it is the same bytes), and anew after each join, rename
/// and leave, each of which it shows.
#[test]
fn the_member_list_is_encoded_once_until_the_members_change() {
    let hub = hub(1);
    let outbox = || Arc::new(Outbox::new(100, 1 << 20));
    let nicks = |frame: &Bytes| -> Vec<String> {
        // A small text frame: two bytes of header, then the JSON.
        let json: serde_json::Value = serde_json::from_slice(&frame[2..]).expect("JSON");
        let members = json["members"].as_array().expect("members");
        members
            .iter()
            .map(|m| m["nick"].as_str().expect("nick").to_owned())
            .collect()
    };
    let ann = hub.join(
        "lobby",
        Member::new(outbox(), Mode::Json, Arc::from("ann")),
        Replay::Nothing,
    );
    let room = ann.room().clone();
    let first = room.presence_frame();
    assert_eq!(nicks(&first), ["ann"]);
    assert_eq!(
        room.presence_frame().as_ptr(),
        first.as_ptr(),
        "asked again: the same bytes"
    );

    let bo = hub.join(
        "lobby",
        Member::new(outbox(), Mode::Json, Arc::from("bo")),
        Replay::Nothing,
    );
    let joined = room.presence_frame();
    assert_eq!(nicks(&joined), ["ann", "bo"]);
    bo.rename(Arc::from("cy"));
    assert_eq!(nicks(&room.presence_frame()), ["ann", "cy"]);
    drop(ann);
    let left = room.presence_frame();
    assert_eq!(nicks(&left), ["cy"]);
    assert_eq!(room.presence_frame().as_ptr(), left.as_ptr());
    drop(bo);
}
