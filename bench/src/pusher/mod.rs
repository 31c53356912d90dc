//! Pusher Channels modes (protocol 7), for wshub's `/app/{key}` and the Pusher servers it is
//! compared with (soketi, sockudo): the same client, the same signed HTTP API calls.
//!
//! - [`fanout`]: `pusher-fanout-api` and `pusher-fanout-client`, one event to N subscribers of
//!   one channel, published through the HTTP API or as a client event, in a closed loop.
//! - [`api`]: `pusher-api`, signed HTTP API publishes per second over K keep-alive connections.
//! - [`idle`]: `pusher-idle`, C subscribed idle connections and the server's RSS per connection.
//! - [`sign`]: channel auth and HTTP API signatures; [`http`]: the keep-alive HTTP client.
//!
//! Every event's `data` is a string `wsb~SEQ~NANOS~xxx…` of `--size` bytes: a subscriber finds
//! it without parsing the JSON around it (the generator must outrun the servers), reads the
//! send time for the latency, and checks the length, so a mangled event is counted.

pub mod api;
pub mod fanout;
pub mod http;
pub mod idle;
pub mod sign;

use std::time::Duration;

use serde::Deserialize;

use crate::client::{Incoming, MessageKind, WsConn};
use crate::target::Target;

/// The app the bench talks to; the peers' `run.sh` and `scripts/bench` all serve this one.
#[derive(Debug, Clone)]
pub struct AppCreds {
    /// `/apps/{id}/…` of the HTTP API.
    pub id: String,
    /// `/app/{key}` of the WebSocket endpoint, and the HTTP API's `auth_key`.
    pub key: String,
    /// Signs channel auth and HTTP API requests.
    pub secret: String,
}

impl Default for AppCreds {
    fn default() -> Self {
        Self {
            id: "app-id".into(),
            key: "app-key".into(),
            secret: "app-secret".into(),
        }
    }
}

/// How long a connection has for `connection_established` and a subscription's answer.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Marker at the start of every benchmark event's data.
const MARK: &[u8] = b"wsb~";

/// The WebSocket endpoint (`ws://host:port/app/KEY?protocol=7…`) and the HTTP API's target for a
/// server at `url` (`ws://host:port`; a path there is ignored).
///
/// # Errors
/// As [`Target::resolve`].
pub async fn targets(url: &str, allow_remote: bool, app: &AppCreds) -> anyhow::Result<(Target, Target)> {
    let base = Target::resolve(url, allow_remote).await?;
    let mut ws = base.clone();
    ws.path = format!("/app/{}?protocol=7&client=wshub-bench&version=0.1.0", app.key);
    let mut http = base;
    http.path = format!("/apps/{}/events", app.id);
    Ok((ws, http))
}

/// The data string of event `seq` sent at `nanos`, `size` bytes (at least the header).
pub fn event_data(seq: u64, nanos: u64, size: usize) -> String {
    let mut data = format!("wsb~{seq}~{nanos}~");
    while data.len() < size {
        data.push('x');
    }
    data
}

/// What a received frame carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A benchmark event: its sequence number and send time; `intact` when its data has the
    /// expected length.
    Event {
        /// Sequence number.
        seq: u64,
        /// Send time ([`crate::latency::Clock`] nanoseconds).
        nanos: u64,
        /// The data is `size` bytes.
        intact: bool,
    },
    /// Anything else (pings, protocol messages).
    Other,
}

/// Finds the benchmark event in a frame, without parsing its JSON.
pub fn parse_event(frame: &[u8], size: usize) -> Received {
    let Some(start) = memchr::memmem::find(frame, MARK) else {
        return Received::Other;
    };
    let rest = &frame[start + MARK.len()..];
    let mut fields = rest.splitn(3, |&b| b == b'~');
    let number = |f: Option<&[u8]>| -> Option<u64> { std::str::from_utf8(f?).ok()?.parse().ok() };
    let (Some(seq), Some(nanos)) = (number(fields.next()), number(fields.next())) else {
        return Received::Other;
    };
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\').unwrap_or(rest.len());
    Received::Event {
        seq,
        nanos,
        intact: MARK.len() + end == size,
    }
}

#[derive(Deserialize)]
struct Envelope {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// Answers a protocol message that needs an answer (`pusher:ping`); the pong is queued.
/// Returns the event name of a frame that is not a benchmark event.
pub fn on_control(conn: &mut WsConn, frame: &[u8]) -> Option<String> {
    let envelope: Envelope = serde_json::from_slice(frame).ok()?;
    if envelope.event == "pusher:ping" {
        conn.queue(MessageKind::Text, br#"{"event":"pusher:pong","data":{}}"#);
    }
    Some(envelope.event)
}

/// Waits for `pusher:connection_established`; returns the socket id.
///
/// # Errors
/// Another first event (`pusher:error`, e.g. an unknown app key), a close, or a timeout.
pub async fn established(conn: &mut WsConn) -> anyhow::Result<String> {
    let envelope = next_envelope(conn).await?;
    anyhow::ensure!(
        envelope.event == "pusher:connection_established",
        "first event is {} ({:?})",
        envelope.event,
        envelope.data
    );
    let data = match envelope.data {
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text)?,
        Some(value) => value,
        None => anyhow::bail!("connection_established without data"),
    };
    data["socket_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("connection_established without a socket_id"))
}

/// Subscribes to `channel` (with `auth` for a private one) and waits for
/// `pusher_internal:subscription_succeeded`.
///
/// # Errors
/// `pusher:subscription_error`, `pusher:error`, a close, or a timeout.
pub async fn subscribe(conn: &mut WsConn, channel: &str, auth: Option<&str>) -> anyhow::Result<()> {
    let mut data = serde_json::json!({ "channel": channel });
    if let Some(auth) = auth {
        data["auth"] = auth.into();
    }
    let message = serde_json::json!({ "event": "pusher:subscribe", "data": data }).to_string();
    conn.queue(MessageKind::Text, message.as_bytes());
    conn.flush().await?;
    loop {
        let envelope = next_envelope(conn).await?;
        match envelope.event.as_str() {
            "pusher_internal:subscription_succeeded" if envelope.channel.as_deref() == Some(channel) => return Ok(()),
            "pusher:subscription_error" | "pusher:error" => {
                anyhow::bail!("{} ({:?})", envelope.event, envelope.data)
            }
            _ => {}
        }
    }
}

/// The next protocol message, pings answered on the way.
async fn next_envelope(conn: &mut WsConn) -> anyhow::Result<Envelope> {
    loop {
        let event = tokio::time::timeout(SETUP_TIMEOUT, conn.read_event())
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {} s", SETUP_TIMEOUT.as_secs()))??;
        match event {
            Incoming::Message(message) => {
                let envelope: Envelope =
                    serde_json::from_slice(&message.data).map_err(|e| anyhow::anyhow!("not a Pusher message: {e}"))?;
                if envelope.event == "pusher:ping" {
                    conn.queue(MessageKind::Text, br#"{"event":"pusher:pong","data":{}}"#);
                    conn.flush().await?;
                    continue;
                }
                return Ok(envelope);
            }
            Incoming::Closed(code) => anyhow::bail!("closed by the server ({code:?})"),
            Incoming::Eof => anyhow::bail!("connection ended"),
        }
    }
}

/// A channel name of this run, so that runs against one server do not meet.
pub fn run_channel(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}wsb-{}-{nanos}", std::process::id())
}

/// Seconds since 1970, for `auth_timestamp`.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_found_in_any_envelope() {
        let data = event_data(42, 123_456, 40);
        assert_eq!(data.len(), 40);
        let frame = format!(r#"{{"event":"wsb","channel":"c","data":"{data}"}}"#);
        assert_eq!(
            parse_event(frame.as_bytes(), 40),
            Received::Event {
                seq: 42,
                nanos: 123_456,
                intact: true
            }
        );
        assert_eq!(
            parse_event(frame.as_bytes(), 41),
            Received::Event {
                seq: 42,
                nanos: 123_456,
                intact: false
            }
        );
        let reordered = format!(r#"{{"data":"{data}","event":"wsb","channel":"c"}}"#);
        assert!(matches!(
            parse_event(reordered.as_bytes(), 40),
            Received::Event { intact: true, .. }
        ));
        assert_eq!(
            parse_event(br#"{"event":"pusher:ping","data":{}}"#, 40),
            Received::Other
        );
    }
}
