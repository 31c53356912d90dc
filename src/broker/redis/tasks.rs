//! The Redis broker's tasks.
//!
//! - commands: drains the command queue in batches and sends each batch as
//!   one pipeline (one round trip however busy the room), so a publish
//!   costs no round trip per recipient and no wait on the hot path.
//! - pub/sub: delivers what Redis publishes, in order; on losing Redis it
//!   tells clients and retries with backoff; on getting it back it
//!   re-registers presence, fetches what it missed, and tells clients.
//! - heartbeat: keeps this node alive in `wshub:nodes` and removes members
//!   of nodes that stopped beating.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use redis::{Client, RedisResult};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Carried, WireMessage, WirePresence};
use super::{Command, RedisBroker};
use crate::broker::{
    ClusterCounts, Deliver, Delivery, ListedMember, LocalRoom, MemberInfo, PresenceChange, Replayed, Span,
};
use crate::history::Entry;

/// How often a node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// A node silent this long is dead: its members are removed.
const DEAD_AFTER: Duration = Duration::from_secs(6);

/// Garbage collection of presence keys of nodes that vanished for good.
const PRESENCE_KEY_TTL_SECS: i64 = 60;

/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Commands sent in one pipeline at most.
const BATCH: usize = 512;

pub(super) fn spawn(
    client: Client,
    broker: RedisBroker,
    commands: mpsc::Receiver<Command>,
    hub: Arc<dyn Deliver>,
    stop: CancellationToken,
) {
    tokio::spawn(command_loop(
        client.clone(),
        broker.clone(),
        commands,
        hub.clone(),
        stop.clone(),
    ));
    tokio::spawn(pubsub_loop(client.clone(), broker.clone(), hub.clone(), stop.clone()));
    tokio::spawn(heartbeat_loop(client, broker, hub, stop));
}

fn now_ms() -> i64 {
    crate::history::clock::unix_millis()
}

async fn manager(client: &Client) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    client.get_connection_manager_with_config(config).await
}

async fn command_loop(
    client: Client,
    broker: RedisBroker,
    mut commands: mpsc::Receiver<Command>,
    hub: Arc<dyn Deliver>,
    stop: CancellationToken,
) {
    let mut connection: Option<(u64, ConnectionManager)> = None;
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            command = commands.recv() => match command {
                Some(command) => command,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let _held = broker.held(&batch);
        let generation = broker.shared.generation.load(Ordering::Acquire);
        if connection.as_ref().is_some_and(|(seen, _)| *seen != generation) {
            // Redis came back since this connection was made: it is stale.
            connection = None;
        }
        if connection.is_none() && broker.is_up() {
            connection = manager(&client).await.ok().map(|c| (generation, c));
        }
        let Some((_, con)) = connection.as_mut() else {
            fail(batch, &broker, &*hub);
            continue;
        };
        // A registration runs alone, in its place: what was queued before
        // it is sent first, what after it waits for it.
        let mut batch = batch.into_iter();
        loop {
            let mut part = Vec::new();
            let mut registration = None;
            for command in batch.by_ref() {
                match command {
                    Command::Register { then } => {
                        registration = Some(then);
                        break;
                    }
                    other => part.push(other),
                }
            }
            send_batch(con, part, &broker, &*hub).await;
            let Some(then) = registration else { break };
            then(register(con, &broker, &hub.local_rooms()).await);
        }
    }
}

/// Questions (replays, member lists, histories, room lists) being answered
/// at once, each its own task waiting on Redis. Beyond, a question is
/// answered as when Redis is away (history unavailable, this node's
/// members): without a bound, a flood of `members` or `history` requests
/// faster than Redis answers them would pile up tasks, and their replies,
/// without end. A reconnect storm of thousands of joins needs far fewer:
/// each is in flight for a round trip.
pub(super) const MAX_QUESTIONS: usize = 4096;

/// Sends `batch` as one pipeline; questions are answered off it.
async fn send_batch(con: &mut ConnectionManager, batch: Vec<Command>, broker: &RedisBroker, hub: &dyn Deliver) {
    let mut pipe = redis::pipe();
    let mut sent = Vec::new();
    for command in batch {
        match command {
            Command::Replay { .. } | Command::Members { .. } | Command::History { .. } | Command::Rooms { .. } => {
                match broker.shared.questions.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (con, broker) = (con.clone(), broker.clone());
                        tokio::spawn(async move {
                            answer(con, broker, command).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::debug!(
                            "{MAX_QUESTIONS} questions to Redis under way: one more answered as unavailable"
                        );
                        fail(vec![command], broker, hub);
                    }
                }
            }
            other => {
                add_to_pipeline(&mut pipe, &other, broker);
                sent.push(other);
            }
        }
    }
    if sent.is_empty() {
        return;
    }
    // One answer per command: Redis runs every command of a pipeline,
    // so a refusal of one (a script out of memory) says nothing of the
    // others, which must not be delivered here a second time.
    match pipe
        .ignore_errors()
        .query_async::<Vec<RedisResult<redis::Value>>>(con)
        .await
    {
        Ok(answers) if answers.len() == sent.len() => {
            let refused: Vec<Command> = sent
                .into_iter()
                .zip(answers)
                .filter_map(|(command, answer)| {
                    let e = answer.err()?;
                    tracing::warn!("Redis refused the command {command:?}: {e}");
                    Some(command)
                })
                .collect();
            fail(refused, broker, hub);
        }
        Ok(answers) => {
            tracing::warn!(
                "Redis answered {} of a pipeline of {} commands; delivering locally",
                answers.len(),
                sent.len()
            );
            fail(sent, broker, hub);
        }
        Err(e) => {
            tracing::warn!(
                "Redis pipeline of {} commands failed: {e}; delivering locally",
                sent.len()
            );
            fail(sent, broker, hub);
        }
    }
}

/// Adds `command` to `pipe`, its last part answered (the others ignored),
/// so that the pipeline's answers are the commands'.
fn add_to_pipeline(pipe: &mut redis::Pipeline, command: &Command, broker: &RedisBroker) {
    let node = broker.node();
    match command {
        Command::Publish { room, message } => {
            pipe.cmd("EVAL")
                .arg(wire::PUBLISH_SCRIPT)
                .arg(2)
                .arg(wire::seq_key(room))
                .arg(wire::log_key(room))
                .arg(broker.shared.max_messages)
                .arg(now_ms().to_string())
                .arg(&*message.nick)
                .arg(&*message.text)
                .arg(broker.shared.channels.of(Carried::Message, room))
                .arg(message.client_ref.as_deref().unwrap_or(""))
                .arg(message.user.as_deref().unwrap_or(""))
                .arg(message.event.as_deref().unwrap_or(""))
                .arg(if message.except == 0 {
                    String::new()
                } else {
                    message.except.to_string()
                });
        }
        Command::PublishBinary { room, payload } => {
            pipe.cmd("PUBLISH")
                .arg(broker.shared.channels.of(Carried::Binary, room))
                .arg(&payload[..]);
        }
        Command::PublishSignal { room, payload, except } => {
            pipe.cmd("PUBLISH")
                .arg(broker.shared.channels.of(Carried::Signal, room))
                .arg(wire::signal_message(*except, payload));
        }
        Command::Joined { room, member } | Command::Left { room, member } => {
            let joined = matches!(command, Command::Joined { .. });
            if joined {
                pipe.cmd("SADD").arg(wire::node_rooms_key(node)).arg(&**room).ignore();
            }
            record_presence(pipe, broker, room, node, member_value(member), member.conn, joined);
        }
        Command::Terminate { key } => {
            pipe.cmd("PUBLISH")
                .arg(broker.shared.channels.of(Carried::Terminate, key))
                .arg("");
        }
        Command::Replay { .. }
        | Command::Members { .. }
        | Command::History { .. }
        | Command::Rooms { .. }
        | Command::Register { .. } => {}
    }
}

/// How the presence hashes keep `member`.
fn member_value(member: &MemberInfo) -> wire::MemberValue<'_> {
    wire::MemberValue {
        nick: &member.nick,
        user: member.user.as_deref(),
        presence: member.presence,
    }
}

/// Adds to `pipe` the recording of a member of `node` joining or leaving
/// `room`, counted and published by [`wire::PRESENCE_SCRIPT`]; `by` is the
/// node that records it.
fn record_presence(
    pipe: &mut redis::Pipeline,
    broker: &RedisBroker,
    room: &str,
    node: &str,
    member: wire::MemberValue<'_>,
    conn: u64,
    joined: bool,
) {
    let event = WirePresence {
        kind: if joined { "joined" } else { "left" }.to_owned(),
        nick: member.nick.to_owned(),
        user: member.user.map(str::to_owned),
        node: node.to_owned(),
        by: Some(broker.node().to_owned()),
        conn: Some(conn.to_string()),
        presence: member.presence,
        subscriptions: None,
        connections: None,
    };
    let presence_user = member.user.filter(|_| member.presence).unwrap_or("");
    pipe.cmd("EVAL")
        .arg(wire::PRESENCE_SCRIPT)
        .arg(3)
        .arg(wire::members_key(room, node))
        .arg(wire::subscriptions_key(room))
        .arg(wire::users_key(room))
        .arg(if joined { "1" } else { "0" })
        .arg(conn)
        .arg(member.encode())
        .arg(presence_user)
        .arg(PRESENCE_KEY_TTL_SECS)
        .arg(broker.shared.channels.of(Carried::Presence, room))
        .arg(event.head());
}

/// Acts locally for commands Redis did not take: messages are delivered
/// on this node only, questions answered with "unavailable", and a lost
/// join or leave is mended by the next heartbeat.
fn fail(commands: Vec<Command>, broker: &RedisBroker, hub: &dyn Deliver) {
    for command in commands {
        match command {
            Command::Publish { room, message } => hub.deliver(&room, Delivery::LocalText(message)),
            Command::PublishBinary { room, payload } => hub.deliver(&room, Delivery::Binary(payload)),
            Command::PublishSignal { room, payload, except } => {
                hub.deliver(&room, Delivery::Signal { payload, except })
            }
            Command::Replay { then, span, .. } | Command::History { then, span, .. } => {
                then(Replayed::unavailable(span))
            }
            Command::Members { then, .. } => then(None),
            Command::Rooms { then, .. } => then(None),
            Command::Joined { .. } | Command::Left { .. } => {
                broker.shared.presence_stale.store(true, Ordering::Release);
            }
            Command::Terminate { key } => {
                tracing::warn!(user = %key, "the other nodes could not be told to close this user's connections");
            }
            Command::Register { then } => then(Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "no connection to Redis",
            )))),
        }
    }
}

/// Replays and member lists: several round trips, off the pipeline.
async fn answer(mut con: ConnectionManager, broker: RedisBroker, command: Command) {
    let max = broker.shared.max_messages;
    match command {
        Command::Replay { room, span, then } => {
            let history = fetch_history(&mut con, &room, span, max).await;
            let members = fetch_members(&mut con, &room).await.ok();
            let mut replayed = or_unavailable(history, &room, span);
            replayed.members = members;
            then(replayed);
        }
        Command::Members { room, then } => then(fetch_members(&mut con, &room).await.ok()),
        Command::Rooms { prefix, then } => then(fetch_rooms(&mut con, &prefix).await.ok()),
        Command::History { room, span, then } => {
            let history = fetch_history(&mut con, &room, span, max).await;
            then(or_unavailable(history, &room, span))
        }
        _ => {}
    }
}

/// The history read, or (logged) the answer that says it could not be.
fn or_unavailable(history: RedisResult<Replayed>, room: &str, span: Span) -> Replayed {
    history.unwrap_or_else(|e| {
        tracing::warn!(room, "history from Redis failed: {e}");
        Replayed::unavailable(span)
    })
}

fn parse_entries(reply: StreamRangeReply) -> Vec<Entry> {
    reply
        .ids
        .into_iter()
        .filter_map(|item| {
            let id = item.id.split('-').next()?.parse().ok()?;
            let ts = item.get::<String>("ts")?.parse().ok()?;
            let nick: String = item.get("nick")?;
            let user: Option<String> = item.get("user");
            let text: String = item.get("text")?;
            let event: Option<String> = item.get("event");
            Some(Entry {
                id,
                ts,
                nick: Arc::from(nick),
                user: user.map(Arc::from),
                text: Arc::from(text),
                event: event.map(Arc::from),
            })
        })
        .collect()
}

/// The room's history from Redis: the latest messages (at most the
/// `max` Redis keeps), or everything after an id (a catch-up: the stream
/// itself is bounded by retention), and where history starts if retention
/// already dropped part of what was asked.
async fn fetch_history(con: &mut ConnectionManager, room: &str, span: Span, max: usize) -> RedisResult<Replayed> {
    let (since, limit) = match span {
        Span::Latest(n) => (None, n.min(max)),
        Span::After(id, limit) => (Some(id), limit),
    };
    let log = wire::log_key(room);
    let Some(since) = since else {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&log)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(con)
            .await?;
        let mut entries = parse_entries(reply);
        entries.reverse();
        return Ok(Replayed {
            entries,
            ..Replayed::default()
        });
    };
    let start = format!("{}-0", since.saturating_add(1));
    let mut range = redis::cmd("XRANGE");
    range.arg(&log).arg(&start).arg("+");
    if limit < usize::MAX {
        range.arg("COUNT").arg(limit);
    }
    let reply: StreamRangeReply = range.query_async(con).await?;
    let entries = parse_entries(reply);
    let first: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&log)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(con)
        .await?;
    let first_kept = parse_entries(first).first().map(|e| e.id);
    let truncated = match first_kept {
        Some(first) if first > since.saturating_add(1) => Some(first),
        Some(_) => None,
        None => {
            let last: Option<u64> = redis::cmd("GET").arg(wire::seq_key(room)).query_async(con).await?;
            last.filter(|&last| last > since).map(|last| last.saturating_add(1))
        }
    };
    Ok(Replayed {
        entries,
        truncated,
        ..Replayed::default()
    })
}

/// Live nodes, as their heartbeats say.
async fn live_nodes(con: &mut ConnectionManager) -> RedisResult<Vec<String>> {
    let alive_since = now_ms() - DEAD_AFTER.as_millis() as i64;
    redis::cmd("ZRANGEBYSCORE")
        .arg(wire::NODES)
        .arg(alive_since)
        .arg("+inf")
        .query_async(con)
        .await
}

/// Rooms named `prefix...` with members on a live node: those the nodes
/// have joined (each node's set, which keeps rooms it has left too), less
/// those the cluster counts no member of.
async fn fetch_rooms(con: &mut ConnectionManager, prefix: &str) -> RedisResult<Vec<crate::broker::RoomName>> {
    let nodes = live_nodes(con).await?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for node in &nodes {
        pipe.cmd("SMEMBERS").arg(wire::node_rooms_key(node));
    }
    let sets: Vec<Vec<String>> = pipe.query_async(con).await?;
    let names: std::collections::BTreeSet<String> = sets
        .into_iter()
        .flatten()
        .filter(|name| name.starts_with(prefix))
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for name in &names {
        pipe.cmd("EXISTS").arg(wire::subscriptions_key(name));
    }
    let occupied: Vec<bool> = pipe.query_async(con).await?;
    Ok(names
        .into_iter()
        .zip(occupied)
        .filter(|(_, occupied)| *occupied)
        .map(|(name, _)| crate::broker::RoomName::from(name))
        .collect())
}

/// Members of `room` on every live node, one entry per nickname and user
/// (as a single node counts them).
async fn fetch_members(con: &mut ConnectionManager, room: &str) -> RedisResult<Vec<ListedMember>> {
    let nodes = live_nodes(con).await?;
    let mut pipe = redis::pipe();
    for node in &nodes {
        pipe.cmd("HGETALL").arg(wire::members_key(room, node));
    }
    let maps: Vec<HashMap<String, String>> = if nodes.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(con).await?
    };
    let mut nicks: std::collections::BTreeMap<(String, Option<String>), usize> = Default::default();
    for value in maps.iter().flat_map(|m| m.values()) {
        let member = wire::MemberValue::parse(value);
        *nicks
            .entry((member.nick.to_owned(), member.user.map(str::to_owned)))
            .or_default() += 1;
    }
    Ok(nicks
        .into_iter()
        .map(|((nick, user), connections)| ListedMember {
            nick,
            user,
            connections,
        })
        .collect())
}

async fn pubsub_loop(client: Client, broker: RedisBroker, hub: Arc<dyn Deliver>, stop: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    let mut ever_up = false;
    let mut told_down = false;
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            result = subscribe(&client, &broker.shared.channels) => result,
        };
        let pubsub = match subscribed {
            Ok(pubsub) => pubsub,
            Err(e) => {
                broker.shared.attempted.notify_waiters();
                if !ever_up && backoff == BACKOFF_MIN {
                    tracing::warn!("Redis unreachable at start-up ({e}); serving this node alone and retrying");
                } else {
                    tracing::debug!("Redis still unreachable: {e}");
                }
                if !back_off(&stop, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        // Restore before going up, so that no publish can slip in first;
        // connections made before are stale now. A node whose members are
        // not recorded, or that has not fetched what it missed, is not up:
        // it tries again, as after a failed connection.
        if let Err(e) = restore(&client, &broker, &*hub).await {
            broker.shared.attempted.notify_waiters();
            tracing::warn!("re-registering with Redis failed: {e}; cross-node delivery stays off, retrying");
            drop(pubsub);
            if !back_off(&stop, &mut backoff).await {
                return;
            }
            continue;
        }
        backoff = BACKOFF_MIN;
        broker.shared.generation.fetch_add(1, Ordering::AcqRel);
        broker.shared.set_up(true);
        broker.shared.attempted.notify_waiters();
        tracing::info!(node = %broker.node(), "Redis connected: cross-node delivery on");
        if told_down {
            hub.cluster_changed(true);
        }
        ever_up = true;
        let mut messages = pubsub.into_on_message();
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return,
                message = messages.next() => message,
            };
            let Some(message) = message else { break };
            dispatch(&broker, &*hub, message.get_channel_name(), message.get_payload_bytes());
        }
        broker.shared.set_up(false);
        tracing::warn!("lost Redis: delivering within this node only; reconnecting");
        hub.cluster_changed(false);
        told_down = true;
    }
}

/// Waits `backoff` before the next attempt to reach Redis, and doubles it
/// (up to [`BACKOFF_MAX`]); false when the node stops meanwhile.
async fn back_off(stop: &CancellationToken, backoff: &mut Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => return false,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    true
}

async fn subscribe(client: &Client, channels: &wire::Channels) -> RedisResult<redis::aio::PubSub> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        for pattern in channels.patterns() {
            pubsub.psubscribe(pattern).await?;
        }
        Ok(pubsub)
    };
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        ))),
    }
}

fn dispatch(broker: &RedisBroker, hub: &dyn Deliver, channel: &str, payload: &[u8]) {
    let Some((carried, room)) = broker.shared.channels.parse(channel) else {
        return;
    };
    match carried {
        Carried::Message => match serde_json::from_slice::<WireMessage>(payload) {
            Ok(message) => {
                let (Ok(id), Ok(ts)) = (message.id.parse(), message.ts.parse()) else {
                    return;
                };
                let entry = Entry {
                    id,
                    ts,
                    nick: Arc::from(message.nick),
                    user: message.user.map(Arc::from),
                    text: Arc::from(message.text),
                    event: message.event.map(Arc::from),
                };
                let client_ref = message.client_ref;
                let except = message.except.and_then(|e| e.parse().ok()).unwrap_or(0);
                hub.deliver(
                    room,
                    Delivery::Text {
                        entry,
                        client_ref,
                        except,
                    },
                );
            }
            Err(e) => tracing::warn!(channel, "unreadable message from Redis: {e}"),
        },
        Carried::Binary => hub.deliver(room, Delivery::Binary(bytes::Bytes::copy_from_slice(payload))),
        Carried::Signal => match wire::parse_signal(payload) {
            Some((except, payload)) => hub.deliver(
                room,
                Delivery::Signal {
                    payload: bytes::Bytes::copy_from_slice(payload),
                    except,
                },
            ),
            None => tracing::warn!(channel, "unreadable signal from Redis"),
        },
        Carried::Terminate => hub.terminate(room),
        Carried::Presence => match serde_json::from_slice::<WirePresence>(payload) {
            Ok(event) => hub.presence_changed(room, presence_change(broker.node(), event)),
            Err(e) => tracing::warn!(channel, "unreadable presence event from Redis: {e}"),
        },
    }
}

/// A published presence event as this node sees it.
fn presence_change(me: &str, event: WirePresence) -> PresenceChange {
    let counts = match (event.subscriptions, event.connections) {
        (Some(subscriptions), Some(connections)) => Some(ClusterCounts {
            subscriptions: usize::try_from(subscriptions).unwrap_or(usize::MAX),
            user_connections: usize::try_from(connections).unwrap_or(usize::MAX),
            recorded_here: event.by.as_deref() == Some(me),
        }),
        _ => None,
    };
    PresenceChange {
        joined: event.kind == "joined",
        local: event.node == me,
        conn: event.conn.and_then(|c| c.parse().ok()).unwrap_or(0),
        presence: event.presence,
        nick: event.nick,
        user: event.user,
        counts,
    }
}

/// After (re)connecting: this node's members again, and what it missed.
async fn restore(client: &Client, broker: &RedisBroker, hub: &dyn Deliver) -> RedisResult<()> {
    let mut con = manager(client).await?;
    let rooms = hub.local_rooms();
    register(&mut con, broker, &rooms).await?;
    catch_up(&mut con, broker, hub, rooms).await
}

/// Has the command task record this node's members again, in the queue's
/// order: a registration beside the queue could undo a join sent after
/// its list of members was taken, or record again a member whose leave
/// had already been sent.
async fn register_in_turn(broker: &RedisBroker) -> RedisResult<()> {
    let (done, answer) = tokio::sync::oneshot::channel();
    let then = Box::new(move |result| drop(done.send(result)));
    if broker.send_always(Command::Register { then }).is_err() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the command queue is full",
        )));
    }
    answer.await.unwrap_or_else(|_| {
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the command task stopped",
        )))
    })
}

/// Records this node and its members in Redis again, as they are now.
async fn register(con: &mut ConnectionManager, broker: &RedisBroker, rooms: &[LocalRoom]) -> RedisResult<()> {
    let node = broker.node();
    // What Redis still holds of this node: members that left meanwhile are
    // removed (and counted out), the others recorded again (counted only
    // when Redis lost them).
    let mut names: std::collections::BTreeSet<String> = redis::cmd("SMEMBERS")
        .arg(wire::node_rooms_key(node))
        .query_async(con)
        .await?;
    names.extend(rooms.iter().map(|room| room.name.to_string()));
    let mut pipe = redis::pipe();
    for name in &names {
        pipe.cmd("HGETALL").arg(wire::members_key(name, node));
    }
    let held: Vec<HashMap<u64, String>> = if names.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(con).await?
    };
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD").arg(wire::NODES).arg(now_ms()).arg(node).ignore();
    for (name, held) in names.iter().zip(&held) {
        let local = rooms.iter().find(|room| *room.name == **name);
        let members = local.map_or(&[][..], |room| &room.members[..]);
        for (conn, value) in held {
            if !members.iter().any(|member| member.conn == *conn) {
                record_presence(
                    &mut pipe,
                    broker,
                    name,
                    node,
                    wire::MemberValue::parse(value),
                    *conn,
                    false,
                );
            }
        }
        for member in members {
            record_presence(&mut pipe, broker, name, node, member_value(member), member.conn, true);
        }
        if local.is_some() {
            pipe.cmd("SADD").arg(wire::node_rooms_key(node)).arg(name).ignore();
        } else {
            pipe.cmd("SREM").arg(wire::node_rooms_key(node)).arg(name).ignore();
        }
    }
    pipe.query_async::<redis::Value>(con).await.map(drop)
}

/// Delivers what each room missed while the link was down: what Redis
/// holds after the newest id this node's members have.
async fn catch_up(
    con: &mut ConnectionManager,
    broker: &RedisBroker,
    hub: &dyn Deliver,
    rooms: Vec<LocalRoom>,
) -> RedisResult<()> {
    for room in rooms {
        let last = room.last_seen;
        if last == 0 {
            continue;
        }
        // A Redis that came back empty would count from 1 again: ids must
        // never be reused, and this node would drop them as repeats.
        redis::cmd("EVAL")
            .arg(wire::RAISE_SEQ_SCRIPT)
            .arg(1)
            .arg(wire::seq_key(&room.name))
            .arg(last)
            .query_async::<redis::Value>(con)
            .await?;
        // All that the stream holds after it (about `max_messages`).
        let max = broker.shared.max_messages;
        let missed = fetch_history(con, &room.name, Span::After(last, usize::MAX), max).await?;
        if let Some(first_available) = missed.truncated {
            tracing::warn!(
                room = %room.name,
                last_seen = last,
                first_available,
                "Redis no longer holds all that this node missed: its members are told where history starts"
            );
            hub.deliver(&room.name, Delivery::Gap { first_available });
        }
        for entry in missed.entries {
            hub.deliver(
                &room.name,
                Delivery::Text {
                    entry,
                    client_ref: None,
                    except: 0,
                },
            );
        }
    }
    Ok(())
}

async fn heartbeat_loop(client: Client, broker: RedisBroker, hub: Arc<dyn Deliver>, stop: CancellationToken) {
    let mut connection: Option<(u64, ConnectionManager)> = None;
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                if let Some((_, con)) = connection.as_mut() {
                    // Leave at once rather than after DEAD_AFTER.
                    let _ = redis::cmd("ZADD").arg(wire::NODES).arg(0).arg(broker.node()).query_async::<redis::Value>(con).await;
                }
                return;
            }
            _ = tick.tick() => {}
        }
        if !broker.is_up() {
            continue;
        }
        let generation = broker.shared.generation.load(Ordering::Acquire);
        if connection.as_ref().is_some_and(|(seen, _)| *seen != generation) {
            connection = None;
        }
        if connection.is_none() {
            connection = manager(&client).await.ok().map(|c| (generation, c));
        }
        let Some((_, con)) = connection.as_mut() else { continue };
        if let Err(e) = beat(con, &broker, &*hub).await {
            tracing::debug!("heartbeat failed: {e}");
        }
    }
}

async fn beat(con: &mut ConnectionManager, broker: &RedisBroker, hub: &dyn Deliver) -> RedisResult<()> {
    let node = broker.node();
    let now = now_ms();
    // Before the rooms are listed: a join or leave lost after this is in
    // the list, or marks the next beat.
    let stale = broker.shared.presence_stale.swap(false, Ordering::AcqRel);
    let rooms = hub.local_rooms();
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD").arg(wire::NODES).arg(now).arg(node);
    for room in &rooms {
        // The counts are the cluster's: any node with members keeps them.
        for key in [
            wire::members_key(&room.name, node),
            wire::subscriptions_key(&room.name),
            wire::users_key(&room.name),
        ] {
            pipe.cmd("EXPIRE").arg(key).arg(PRESENCE_KEY_TTL_SECS).ignore();
        }
    }
    pipe.cmd("EXPIRE")
        .arg(wire::node_rooms_key(node))
        .arg(PRESENCE_KEY_TTL_SECS)
        .ignore();
    let answer: RedisResult<(i64,)> = pipe.query_async(con).await;
    let Ok((added,)) = answer else {
        // Kept for the next beat.
        broker.shared.presence_stale.fetch_or(stale, Ordering::AcqRel);
        return answer.map(drop);
    };
    if added == 1 {
        // Another node took this one for dead (it missed beats: paused,
        // its clock stepped) and removed its members, while its pub/sub
        // link lived on, so nothing else would record them again.
        tracing::warn!(node, "this node had been taken for dead: recording its members again");
    } else if stale {
        tracing::warn!(
            node,
            "a join or leave did not reach Redis: recording this node's members again"
        );
    }
    if added == 1 || stale {
        if let Err(e) = register_in_turn(broker).await {
            broker.shared.presence_stale.store(true, Ordering::Release);
            return Err(e);
        }
    }

    let dead_before = now - DEAD_AFTER.as_millis() as i64;
    let dead: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(wire::NODES)
        .arg("-inf")
        .arg(dead_before)
        .query_async(con)
        .await?;
    for node in dead {
        // Exactly one surviving node wins the ZREM and announces the leaves.
        let removed: i64 = redis::cmd("ZREM").arg(wire::NODES).arg(&node).query_async(con).await?;
        if removed != 1 {
            continue;
        }
        tracing::warn!(dead = %node, "node stopped beating: removing its members");
        let rooms: Vec<String> = redis::cmd("SMEMBERS")
            .arg(wire::node_rooms_key(&node))
            .query_async(con)
            .await?;
        for room in rooms {
            let key = wire::members_key(&room, &node);
            let members: HashMap<u64, String> = redis::cmd("HGETALL").arg(&key).query_async(con).await?;
            let mut pipe = redis::pipe();
            for (conn, value) in &members {
                let member = wire::MemberValue::parse(value);
                record_presence(&mut pipe, broker, &room, &node, member, *conn, false);
            }
            pipe.cmd("DEL").arg(&key).ignore();
            pipe.query_async::<redis::Value>(con).await?;
        }
        redis::cmd("DEL")
            .arg(wire::node_rooms_key(&node))
            .query_async::<redis::Value>(con)
            .await?;
    }
    Ok(())
}
