//! Webhooks against a real HTTP receiver (axum on 127.0.0.1:0, recording
//! every request): Pusher's body and headers, a signature that verifies
//! with the app secret, batching, filtering per target, retries with
//! backoff (under tokio's paused clock, which the receiver's real sockets
//! share), giving up, refusals, the queue bound, shutdown's flush, https.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wshub::webhooks::{self, Event, EventKind, Target, WebhookStats, Webhooks, WebhooksConfig};

const KEY: &str = "app-key";
const SECRET: &str = "app-secret";

/// Long enough for anything that should happen (on the paused clock, the
/// longest backoff is 8 s); only there so that a broken sender fails the
/// test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

/// What the receiver answers a request with.
enum Reply {
    Status(u16),
    /// Never answers.
    Hang,
    /// Answers 200 once the test says so.
    After(oneshot::Receiver<()>),
}

/// One request as the receiver saw it.
#[derive(Debug)]
struct Post {
    at: Instant,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Post {
    /// Checks the headers and the signature (with the HMAC crates directly,
    /// not wshub's code), and returns the body as JSON.
    fn verified(&self) -> Value {
        assert_eq!(self.headers["content-type"], "application/json");
        assert_eq!(self.headers["x-pusher-key"], KEY);
        let signature = self.headers["x-pusher-signature"].to_str().unwrap();
        assert!(
            verifies(SECRET, &self.body, signature),
            "the signature verifies with the app secret"
        );
        assert!(
            !verifies("another-secret", &self.body, signature),
            "and with no other secret"
        );
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn events(&self) -> Vec<Value> {
        self.verified()["events"].as_array().expect("an events array").clone()
    }
}

fn verifies(secret: &str, body: &[u8], signature: &str) -> bool {
    // Lowercase, as Pusher's SDKs compare the hex text.
    if signature.bytes().any(|b| b.is_ascii_uppercase()) {
        return false;
    }
    let Ok(bytes) = hex::decode(signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

#[derive(Clone)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    otherwise: u16,
    posts: mpsc::UnboundedSender<Post>,
}

async fn hook(State(script): State<Script>, uri: Uri, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let post = Post {
        at: Instant::now(),
        path: uri.path().to_owned(),
        headers,
        body,
    };
    let _ = script.posts.send(post);
    let reply = script.replies.lock().unwrap().pop_front();
    let status = match reply {
        None => script.otherwise,
        Some(Reply::Status(status)) => status,
        Some(Reply::Hang) => std::future::pending().await,
        Some(Reply::After(go)) => {
            let _ = go.await;
            200
        }
    };
    StatusCode::from_u16(status).unwrap()
}

/// The test's backend: answers with `replies` in order, then `otherwise`.
struct Receiver {
    addr: SocketAddr,
    posts: mpsc::UnboundedReceiver<Post>,
}

impl Receiver {
    async fn start(replies: Vec<Reply>, otherwise: u16) -> Receiver {
        let (app, posts) = router(replies, otherwise);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, posts }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn next(&mut self) -> Post {
        tokio::time::timeout(PATIENCE, self.posts.recv())
            .await
            .expect("a POST in time")
            .expect("the receiver runs")
    }

    /// What came that the test has not read yet (call after the webhooks
    /// have stopped: nothing more can come).
    fn rest(&mut self) -> Vec<Post> {
        std::iter::from_fn(|| self.posts.try_recv().ok()).collect()
    }
}

fn router(replies: Vec<Reply>, otherwise: u16) -> (Router, mpsc::UnboundedReceiver<Post>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Script {
        replies: Arc::new(Mutex::new(replies.into())),
        otherwise,
        posts: tx,
    };
    (Router::new().fallback(hook).with_state(script), rx)
}

fn target(app_id: &str, url: String, event_types: Vec<EventKind>) -> Target {
    Target {
        app_id: app_id.into(),
        key: KEY.into(),
        secret: SECRET.into(),
        url,
        event_types,
    }
}

/// Webhooks started, and the means to stop them.
struct Running {
    webhooks: Webhooks,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(config: WebhooksConfig, targets: Vec<Target>) -> Running {
        let stop = CancellationToken::new();
        let (webhooks, task) = webhooks::start(config, targets, stop.clone()).expect("targets are valid");
        Running { webhooks, stop, task }
    }

    /// Stops, waits for the flush, and returns the counters.
    async fn stop(self) -> WebhookStats {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("stops in time")
            .unwrap();
        self.webhooks.stats()
    }
}

/// Every log line of this test binary. One global subscriber, not one per
/// test: tracing caches per call site whether anyone listens, and a
/// thread-local subscriber set while another test's thread decides that can
/// miss lines. Tests pick their own lines out by their receiver's URL.
fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The warnings logged about the target at `url`, one a line.
fn warnings_about(url: &str) -> Vec<String> {
    let text = String::from_utf8(captured_logs().lock().unwrap().clone()).unwrap();
    let url = format!("url={url} ");
    text.lines()
        .filter(|l| l.contains(" WARN ") && l.contains(&url))
        .map(str::to_owned)
        .collect()
}

fn occupied(channel: &str) -> Event {
    Event::ChannelOccupied {
        channel: channel.into(),
    }
}

fn between(gap: Duration, low: Duration, high: Duration) -> bool {
    gap >= low && gap <= high
}

/// A few milliseconds for the POST itself, on top of a backoff wait.
const SLACK: Duration = Duration::from_millis(50);

#[tokio::test]
async fn a_webhook_is_a_signed_post_in_pushers_shape() {
    let mut receiver = Receiver::start(vec![], 200).await;
    let running = Running::start(
        WebhooksConfig::default(),
        vec![target("app-id", receiver.url("/hook"), vec![])],
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    running.webhooks.send(
        "app-id",
        Event::client_event("private-a", "client-typing", r#"{"who":"ann"}"#, "1.2", None),
    );

    let post = receiver.next().await;
    assert_eq!(post.path, "/hook");
    let body = post.verified();
    let time_ms = body["time_ms"].as_u64().expect("time_ms in milliseconds");
    assert!(time_ms >= before && time_ms < before + 10_000, "{time_ms} vs {before}");
    assert_eq!(
        body,
        json!({"time_ms": time_ms, "events": [{
            "name": "client_event", "channel": "private-a", "event": "client-typing",
            "data": "{\"who\":\"ann\"}", "socket_id": "1.2",
        }]})
    );
    let stats = running.stop().await;
    assert_eq!(
        (stats.delivered, stats.dropped, stats.failed, stats.retries),
        (1, 0, 0, 0)
    );
}

#[tokio::test]
async fn events_sent_together_share_posts_of_at_most_the_batch_size_in_order() {
    let mut receiver = Receiver::start(vec![], 200).await;
    let mut config = WebhooksConfig::default();
    config.max_batch_events = 3;
    let running = Running::start(config, vec![target("app-id", receiver.url("/"), vec![])]);
    for i in 0..7 {
        running.webhooks.send("app-id", occupied(&format!("c{i}")));
    }
    let mut sizes = Vec::new();
    let mut channels = Vec::new();
    while channels.len() < 7 {
        let events = receiver.next().await.events();
        sizes.push(events.len());
        channels.extend(events.iter().map(|e| e["channel"].as_str().unwrap().to_owned()));
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(channels, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
    running.stop().await;
    assert!(receiver.rest().is_empty());
}

#[tokio::test(start_paused = true)]
async fn events_within_the_batch_window_share_a_post_and_later_ones_do_not() {
    let mut receiver = Receiver::start(vec![], 200).await;
    let running = Running::start(
        WebhooksConfig::default(),
        vec![target("app-id", receiver.url("/"), vec![])],
    );
    running.webhooks.send("app-id", occupied("a"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    running.webhooks.send("app-id", occupied("b"));
    assert_eq!(
        receiver.next().await.events().len(),
        2,
        "b came within a's 50 ms window"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.webhooks.send("app-id", occupied("c"));
    let events = receiver.next().await.events();
    assert_eq!(events, [json!({"name": "channel_occupied", "channel": "c"})]);
    running.stop().await;
}

#[tokio::test]
async fn each_target_gets_the_kinds_it_asks_for_and_only_its_apps_events() {
    let mut receiver = Receiver::start(vec![], 200).await;
    let running = Running::start(
        WebhooksConfig::default(),
        vec![
            target("a", receiver.url("/all"), vec![]),
            target(
                "a",
                receiver.url("/members"),
                vec![EventKind::MemberAdded, EventKind::MemberRemoved],
            ),
            target("b", receiver.url("/b"), vec![EventKind::ChannelOccupied]),
        ],
    );
    let hooks = &running.webhooks;
    assert!(hooks.wants("a", EventKind::ClientEvent) && hooks.wants("a", EventKind::MemberRemoved));
    assert!(hooks.wants("b", EventKind::ChannelOccupied) && !hooks.wants("b", EventKind::MemberAdded));
    assert!(!hooks.wants("nobody", EventKind::ChannelOccupied));

    hooks.send("a", occupied("presence-x"));
    hooks.send(
        "a",
        Event::MemberAdded {
            channel: "presence-x".into(),
            user_id: "7".into(),
        },
    );
    hooks.send(
        "a",
        Event::SubscriptionCount {
            channel: "presence-x".into(),
            subscription_count: 1,
        },
    );
    hooks.send(
        "b",
        Event::CacheMiss {
            channel: "cache-y".into(),
        },
    );
    hooks.send("nobody", occupied("z"));
    let stats = running.stop().await;

    let mut names: Vec<(String, String)> = Vec::new();
    for post in receiver.rest() {
        for event in post.events() {
            names.push((post.path.clone(), event["name"].as_str().unwrap().to_owned()));
        }
    }
    names.sort();
    // `subscription_count` only for a target that names it (as Pusher's
    // subscription counting is asked for): "/all" lists none.
    let expected = [
        ("/all", "channel_occupied"),
        ("/all", "member_added"),
        ("/members", "member_added"),
    ];
    assert_eq!(names, expected.map(|(p, n)| (p.to_owned(), n.to_owned())));
    assert_eq!((stats.delivered, stats.dropped, stats.failed), (3, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_500_or_a_429_is_retried_after_the_backoff_and_not_sent_again_once_delivered() {
    for status in [500, 429] {
        let mut receiver = Receiver::start(vec![Reply::Status(status)], 200).await;
        let running = Running::start(
            WebhooksConfig::default(),
            vec![target("app-id", receiver.url("/"), vec![])],
        );
        running.webhooks.send("app-id", occupied("a"));
        let first = receiver.next().await;
        let second = receiver.next().await;
        let gap = second.at - first.at;
        assert!(
            between(gap, Duration::from_millis(250), Duration::from_millis(500) + SLACK),
            "{status}: {gap:?}"
        );
        assert_eq!(first.body, second.body, "the same webhook, time_ms and all");
        assert_eq!(
            first.headers["x-pusher-signature"],
            second.headers["x-pusher-signature"]
        );
        second.verified();

        let stats = running.stop().await;
        assert!(receiver.rest().is_empty(), "{status}: nothing sent again after the 200");
        assert_eq!((stats.delivered, stats.retries, stats.failed), (1, 1, 0), "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_keeps_failing_is_given_up_after_the_last_retry_counted_and_logged() {
    captured_logs();
    let mut receiver = Receiver::start(vec![], 503).await;
    let running = Running::start(
        WebhooksConfig::default(),
        vec![target("app-id", receiver.url("/"), vec![])],
    );
    running.webhooks.send("app-id", occupied("a"));
    running.webhooks.send("app-id", occupied("b"));
    let mut posts = Vec::new();
    for _ in 0..6 {
        posts.push(receiver.next().await);
    }
    for (retry, pair) in posts.windows(2).enumerate() {
        let nominal = Duration::from_millis(500) * (1 << retry);
        let gap = pair[1].at - pair[0].at;
        assert!(
            between(gap, nominal / 2, nominal + SLACK),
            "retry {retry}: {gap:?} for {nominal:?}"
        );
        assert_eq!(pair[1].events().len(), 2);
    }
    let stats = running.stop().await;
    assert!(receiver.rest().is_empty(), "five retries, then no more");
    assert_eq!(
        (stats.delivered, stats.retries, stats.failed, stats.dropped),
        (0, 5, 2, 0)
    );
    let warned = warnings_about(&receiver.url("/"));
    assert_eq!(warned.len(), 1, "one line for the batch given up: {warned:?}");
    for part in ["app_id=app-id", "HTTP 503", "events=2", "attempts=6", "given up"] {
        assert!(warned[0].contains(part), "{part} in {}", warned[0]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_retried_then_given_up() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let mut config = WebhooksConfig::default();
    config.flush_timeout = Duration::from_secs(3600);
    let running = Running::start(config, vec![target("app-id", url, vec![])]);
    running.webhooks.send("app-id", occupied("a"));
    let start = Instant::now();
    // Stopped at once: the flush still retries on schedule, within its hour.
    let stats = running.stop().await;
    assert_eq!((stats.delivered, stats.retries, stats.failed), (0, 5, 1));
    let waited = start.elapsed();
    assert!(
        between(
            waited,
            Duration::from_millis(7750),
            Duration::from_millis(15500) + SLACK
        ),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_does_not_answer_in_time_is_retried() {
    let mut receiver = Receiver::start(vec![Reply::Hang], 200).await;
    let running = Running::start(
        WebhooksConfig::default(),
        vec![target("app-id", receiver.url("/"), vec![])],
    );
    running.webhooks.send("app-id", occupied("a"));
    let first = receiver.next().await;
    let second = receiver.next().await;
    let gap = second.at - first.at;
    let low = Duration::from_secs(5) + Duration::from_millis(250);
    assert!(
        between(gap, low, Duration::from_millis(5500) + SLACK),
        "the 5 s request timeout, then the backoff: {gap:?}"
    );
    let stats = running.stop().await;
    assert_eq!((stats.delivered, stats.retries, stats.failed), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_4xx_is_refused_for_good_without_retries_and_logged() {
    captured_logs();
    let mut receiver = Receiver::start(vec![], 400).await;
    let running = Running::start(
        WebhooksConfig::default(),
        vec![target("app-id", receiver.url("/"), vec![])],
    );
    running.webhooks.send("app-id", occupied("a"));
    receiver.next().await;
    // A retry would come within the stop's 5 s flush: none does.
    let stats = running.stop().await;
    assert!(receiver.rest().is_empty(), "one POST only");
    assert_eq!((stats.delivered, stats.retries, stats.failed), (0, 0, 1));
    let warned = warnings_about(&receiver.url("/"));
    assert_eq!(warned.len(), 1, "{warned:?}");
    let url = format!("url={}", receiver.url("/"));
    for part in ["app_id=app-id", &url, "HTTP 400", "events=1"] {
        assert!(warned[0].contains(part), "{part} in {}", warned[0]);
    }
}

#[tokio::test]
async fn a_full_queue_drops_counts_and_logs_without_blocking_the_sender() {
    captured_logs();
    let (go, wait) = oneshot::channel();
    let mut receiver = Receiver::start(vec![Reply::After(wait)], 200).await;
    let mut config = WebhooksConfig::default();
    config.queue_capacity = 4;
    let running = Running::start(config, vec![target("app-id", receiver.url("/"), vec![])]);
    running.webhooks.send("app-id", occupied("c0"));
    // c0 is in flight and the receiver holds it: nothing leaves the queue.
    receiver.next().await;
    let start = std::time::Instant::now();
    for i in 1..=10 {
        running.webhooks.send("app-id", occupied(&format!("c{i}")));
    }
    assert!(start.elapsed() < Duration::from_secs(1), "send never waits");
    let stats = running.webhooks.stats();
    assert_eq!(
        (stats.queued, stats.dropped),
        (4, 6),
        "four queued, the other six dropped"
    );
    let warned = warnings_about(&receiver.url("/"));
    assert_eq!(warned.len(), 1, "a burst of drops is one line: {warned:?}");
    for part in ["app_id=app-id", "queue is full", "dropped_so_far=1"] {
        assert!(warned[0].contains(part), "{part} in {}", warned[0]);
    }

    go.send(()).unwrap();
    let events = receiver.next().await.events();
    let channels: Vec<_> = events.iter().map(|e| e["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["c1", "c2", "c3", "c4"], "the queued ones, in order");
    let stats = running.stop().await;
    assert!(receiver.rest().is_empty());
    assert_eq!(
        (stats.delivered, stats.dropped, stats.failed, stats.queued),
        (5, 6, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_byte_budget_bounds_what_a_target_holds_and_each_batch_gives_its_bytes_back() {
    let (go, wait) = oneshot::channel();
    let replies = vec![
        Reply::Status(200),
        Reply::Status(200),
        Reply::Status(200),
        Reply::After(wait),
    ];
    let mut receiver = Receiver::start(replies, 200).await;
    let size = serde_json::to_vec(&occupied("c0")).unwrap().len();
    let mut config = WebhooksConfig::default();
    config.max_queued_bytes = 2 * size + size / 2;
    let running = Running::start(config, vec![target("app-id", receiver.url("/"), vec![])]);
    // Three events one after the other: each fits only if the one before
    // gave its bytes back once delivered.
    for i in 0..3 {
        running.webhooks.send("app-id", occupied(&format!("c{i}")));
        receiver.next().await;
        // On the paused clock: returns once the target's task is idle again.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(running.webhooks.stats().dropped, 0);

    running.webhooks.send("app-id", occupied("h0"));
    receiver.next().await;
    // h0 is in hand (the receiver holds it): room for one more.
    running.webhooks.send("app-id", occupied("h1"));
    running.webhooks.send("app-id", occupied("h2"));
    assert_eq!(running.webhooks.stats().dropped, 1, "h2 is over the budget");
    go.send(()).unwrap();
    let channels: Vec<_> = receiver
        .next()
        .await
        .events()
        .iter()
        .map(|e| e["channel"].clone())
        .collect();
    assert_eq!(channels, ["h1"]);
    let stats = running.stop().await;
    assert_eq!((stats.delivered, stats.dropped), (5, 1));
}

#[tokio::test(start_paused = true)]
async fn stop_flushes_the_queue_at_once_and_later_events_are_counted_as_dropped() {
    let mut receiver = Receiver::start(vec![], 200).await;
    let mut config = WebhooksConfig::default();
    // Without the stop, these would wait an hour for their batch to fill.
    config.batch_window = Duration::from_secs(3600);
    let running = Running::start(config, vec![target("app-id", receiver.url("/"), vec![])]);
    for channel in ["a", "b", "c"] {
        running.webhooks.send("app-id", occupied(channel));
    }
    // On the paused clock this returns once every task is idle: the
    // target's task is inside its batch window.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let webhooks = running.webhooks.clone();
    let start = Instant::now();
    let stats = running.stop().await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "sent at the stop, not after the window: {:?}",
        start.elapsed()
    );
    assert_eq!(receiver.next().await.events().len(), 3);
    assert_eq!((stats.delivered, stats.dropped), (3, 0));
    webhooks.send("app-id", occupied("late"));
    assert_eq!(
        webhooks.stats().dropped,
        1,
        "after the stop: counted, not lost silently"
    );
}

#[tokio::test(start_paused = true)]
async fn the_flush_timeout_bounds_the_stop_and_what_is_left_is_counted() {
    let mut receiver = Receiver::start(vec![], 500).await;
    let mut config = WebhooksConfig::default();
    config.flush_timeout = Duration::from_secs(2);
    let running = Running::start(config, vec![target("app-id", receiver.url("/"), vec![])]);
    running.webhooks.send("app-id", occupied("a"));
    receiver.next().await;
    let start = Instant::now();
    let stats = running.stop().await;
    let waited = start.elapsed();
    assert!(
        between(waited, Duration::from_secs(2), Duration::from_secs(2) + SLACK),
        "{waited:?}"
    );
    assert_eq!((stats.delivered, stats.failed), (0, 1));
}

#[tokio::test]
async fn an_https_backend_gets_the_same_post_and_an_untrusted_one_nothing() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (app, mut posts) = router(vec![], 200);
    let addr = serve_tls(app, &certified).await;
    let url = format!("https://localhost:{}/secure", addr.port());

    let mut untrusted = WebhooksConfig::default();
    untrusted.backoff.retries = 0;
    let running = Running::start(untrusted, vec![target("app-id", url.clone(), vec![])]);
    running.webhooks.send("app-id", occupied("a"));
    let stats = running.stop().await;
    assert_eq!(
        (stats.delivered, stats.failed),
        (0, 1),
        "a certificate nobody trusts is refused"
    );
    assert!(posts.try_recv().is_err());

    let mut config = WebhooksConfig::default();
    config.extra_root_certificates = vec![certified.cert.der().clone()];
    let running = Running::start(config, vec![target("app-id", url, vec![])]);
    running.webhooks.send("app-id", occupied("a"));
    let post = tokio::time::timeout(PATIENCE, posts.recv()).await.unwrap().unwrap();
    assert_eq!(post.path, "/secure");
    assert_eq!(post.events(), [json!({"name": "channel_occupied", "channel": "a"})]);
    assert_eq!(running.stop().await.delivered, 1);
}

/// The receiver behind TLS, with the self-signed certificate.
async fn serve_tls(app: Router, certified: &rcgen::CertifiedKey) -> SocketAddr {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}
