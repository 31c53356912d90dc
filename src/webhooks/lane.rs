//! One target's task: takes its events off its queue in batches, POSTs
//! each batch, retries it on the backoff schedule, and flushes on stop.
//!
//! One batch is in flight per target at a time, so that a backend sees its
//! events in the order they happened (occupied before vacated, added before
//! removed) even across retries; throughput comes from the batch, up to
//! `max_batch_events` events a POST.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::HeaderValue;
use http::Uri;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::client::{self, HttpClient, Outcome};
use super::signature::Signer;
use super::stats::Counters;

/// What every lane is told at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) max_batch_events: usize,
    pub(crate) batch_window: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) backoff: Backoff,
}

/// The task's side of one target.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) rx: mpsc::Receiver<Bytes>,
    /// Bytes of events queued or in hand (see `Queue::offer`).
    pub(crate) held: Arc<AtomicUsize>,
    pub(crate) client: HttpClient,
    pub(crate) uri: Uri,
    pub(crate) key: HeaderValue,
    pub(crate) signer: Signer,
    pub(crate) app_id: Arc<str>,
    pub(crate) url: Arc<str>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) counters: Arc<Counters>,
    /// Stop: send what is queued without waiting for batch windows, then end.
    pub(crate) stop: CancellationToken,
    /// The flush timeout ran out: give up what is left, now.
    pub(crate) expired: CancellationToken,
}

/// The flush timeout ran out with a batch unsent.
struct Expired;

impl Lane {
    pub(crate) async fn run(mut self) {
        while let Some(first) = self.next().await {
            let batch = self.collect(first).await;
            let outcome = self.deliver(&batch).await;
            self.release(&batch);
            if outcome.is_err() {
                break;
            }
        }
        self.rx.close();
        let mut left = 0u64;
        while let Ok(event) = self.rx.try_recv() {
            self.release(std::slice::from_ref(&event));
            left += 1;
        }
        if left > 0 {
            Counters::add(&self.counters.failed, left);
            tracing::warn!(
                app_id = %self.app_id, url = %self.url, events = left,
                "webhook events given up: still queued when the shutdown's flush timeout ran out"
            );
        }
    }

    /// Gives the bytes of events done with back to the queue's budget.
    fn release(&self, events: &[Bytes]) {
        self.held.fetch_sub(events.iter().map(Bytes::len).sum(), Relaxed);
    }

    /// The next event to send; once stopped, only what is already queued.
    async fn next(&mut self) -> Option<Bytes> {
        if !self.stop.is_cancelled() {
            tokio::select! {
                biased;
                event = self.rx.recv() => return event,
                _ = self.stop.cancelled() => {}
            }
        }
        // From now on `send` counts what it cannot queue as dropped.
        self.rx.close();
        self.rx.try_recv().ok()
    }

    /// A batch: `first`, whatever is queued behind it, and what arrives
    /// within the batch window, up to the batch size.
    async fn collect(&mut self, first: Bytes) -> Vec<Bytes> {
        let max = self.settings.max_batch_events;
        let until = Instant::now() + self.settings.batch_window;
        let mut batch = vec![first];
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(event) => {
                    batch.push(event);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if self.stop.is_cancelled() {
                break;
            }
            tokio::select! {
                biased;
                event = self.rx.recv() => match event {
                    Some(event) => batch.push(event),
                    None => break,
                },
                _ = sleep_until(until) => break,
                _ = self.stop.cancelled() => {}
            }
        }
        batch
    }

    /// POSTs the batch until it is delivered, refused or given up. The
    /// body, its `time_ms` and its signature stay the same across retries:
    /// `time_ms` is when the webhook was made, as Pusher's is, and a backend
    /// that saw a retried POST twice can tell by the signature.
    async fn deliver(&self, batch: &[Bytes]) -> Result<(), Expired> {
        let events = batch.len() as u64;
        let body = payload(now_ms(), batch);
        let signature = self.signer.sign(&body);
        let backoff = self.settings.backoff;
        let mut retry = 0;
        loop {
            let outcome = tokio::select! {
                biased;
                _ = self.expired.cancelled() => return self.expire(events),
                outcome = client::post(&self.client, &self.uri, &self.key, &signature, body.clone(), self.settings.request_timeout) => outcome,
            };
            let reason = match outcome {
                Outcome::Delivered => {
                    Counters::add(&self.counters.delivered, events);
                    return Ok(());
                }
                Outcome::Reject(reason) => {
                    Counters::add(&self.counters.failed, events);
                    tracing::warn!(
                        app_id = %self.app_id, url = %self.url, events, %reason,
                        "webhook refused by the backend, not retried"
                    );
                    return Ok(());
                }
                Outcome::Retry(reason) => reason,
            };
            if retry >= backoff.retries {
                Counters::add(&self.counters.failed, events);
                tracing::warn!(
                    app_id = %self.app_id, url = %self.url, events, %reason, attempts = retry + 1,
                    "webhook given up after its last retry"
                );
                return Ok(());
            }
            let delay = backoff.delay(retry);
            retry += 1;
            Counters::add(&self.counters.retries, 1);
            tracing::debug!(app_id = %self.app_id, url = %self.url, events, %reason, ?delay, retry, "webhook will be retried");
            tokio::select! {
                biased;
                _ = self.expired.cancelled() => return self.expire(events),
                _ = sleep(delay) => {}
            }
        }
    }

    fn expire(&self, events: u64) -> Result<(), Expired> {
        Counters::add(&self.counters.failed, events);
        tracing::warn!(
            app_id = %self.app_id, url = %self.url, events,
            "webhook given up: not delivered when the shutdown's flush timeout ran out"
        );
        Err(Expired)
    }
}

/// `{"time_ms":N,"events":[...]}` around events already serialized (each
/// once, whatever the number of targets it goes to).
pub(crate) fn payload(time_ms: u64, events: &[Bytes]) -> Bytes {
    let size = 32 + events.iter().map(|e| e.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(b"{\"time_ms\":");
    body.extend_from_slice(time_ms.to_string().as_bytes());
    body.extend_from_slice(b",\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::Event;
    use serde_json::{json, Value};

    #[test]
    fn the_payload_is_pushers_shape_around_the_events() {
        let events: Vec<Bytes> = [
            Event::ChannelOccupied { channel: "a".into() },
            Event::MemberAdded {
                channel: "presence-b".into(),
                user_id: "1".into(),
            },
        ]
        .iter()
        .map(|e| Bytes::from(e.to_json()))
        .collect();
        let body: Value = serde_json::from_slice(&payload(1327078148132, &events)).unwrap();
        assert_eq!(
            body,
            json!({"time_ms": 1327078148132u64, "events": [
                {"name": "channel_occupied", "channel": "a"},
                {"name": "member_added", "channel": "presence-b", "user_id": "1"},
            ]})
        );
    }

    #[test]
    fn the_clock_is_in_milliseconds_since_the_epoch() {
        let ms = now_ms();
        assert!(ms > 1_600_000_000_000 && ms < 10_000_000_000_000, "{ms}");
    }
}
