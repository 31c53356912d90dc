//! `--workers 4` (on whatever cores the machine has): connections, plain
//! and TLS, are spread over worker threads and served there; rooms reach
//! members on every worker; shutdown closes every worker's clients with
//! 1001 and stops the threads before `run` returns; `/healthz` and
//! `/metrics` count the whole process, worker by worker.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use wshub::{Server, TlsSource};

const WORKERS: usize = 4;

fn workers_config() -> wshub::Config {
    let mut config = test_config();
    config.workers = WORKERS;
    config
}

async fn healthz(addr: SocketAddr) -> serde_json::Value {
    common::http_get(addr, "/healthz").await.json()
}

/// `/healthz`'s connections per worker, once they add up to `total` (a
/// worker counts a connection when its task starts, just after the 101).
async fn connections_per_worker(addr: SocketAddr, total: usize) -> Vec<usize> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let health = healthz(addr).await;
            let per_worker: Vec<usize> = serde_json::from_value(health["workers"].clone()).unwrap();
            if per_worker.iter().sum::<usize>() == total {
                assert_eq!(health["connections"]["total"], total, "{health}");
                return per_worker;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("workers never added up to {total}"))
}

#[tokio::test]
async fn echo_clients_are_spread_over_every_worker_and_all_echoed() {
    let server = start_server_with(workers_config()).await;
    let mut clients = Vec::new();
    for _ in 0..4 * WORKERS {
        clients.push(connect(&server.url("/echo")).await);
    }
    let per_worker = connections_per_worker(server.addr, clients.len()).await;
    assert_eq!(per_worker.len(), WORKERS);
    assert!(
        per_worker.iter().all(|&n| n >= 2),
        "every worker serves some: {per_worker:?}"
    );
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(Message::text(format!("hello {i}"))).await.unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(next_message(client).await, Message::text(format!("hello {i}")));
    }
    drop(clients);
    wait_for_connections(&server.hub, 0).await;
    assert_eq!(connections_per_worker(server.addr, 0).await, vec![0; WORKERS]);
    server.shutdown().await;
}

type TlsClient = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

async fn connect_tls(addr: SocketAddr, connector: &TlsConnector) -> TlsClient {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let url = format!("wss://localhost:{}/echo", addr.port());
    tokio_tungstenite::client_async(url, tls).await.expect("wss upgrade").0
}

#[tokio::test]
async fn tls_is_served_by_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let mut config = workers_config();
    config.tls = Some(TlsSource::Files { cert, key });
    let server = start_server_with(config).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client_config));
    let mut clients = Vec::new();
    for _ in 0..2 * WORKERS {
        clients.push(connect_tls(server.addr, &connector).await);
    }
    wait_for_connections(&server.hub, clients.len()).await;
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(Message::text(format!("over tls {i}"))).await.unwrap();
        let reply = tokio::time::timeout(PATIENCE, client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply, Message::text(format!("over tls {i}")));
    }
    // Counted where they run: not all on one thread.
    let mut scrape = String::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            scrape = http_get_tls(server.addr, &connector, "/metrics").await;
            let busy = worker_series(&scrape).iter().filter(|&&n| n > 0).count();
            if busy >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("TLS connections all on one worker:\n{scrape}"));
    drop(clients);
    server.shutdown().await;
}

async fn http_get_tls(addr: SocketAddr, connector: &TlsConnector, path: &str) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // rustls reports a peer that closes without close_notify as an error
    // once everything has been read: what was read is the response.
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// The `wshub_worker_connections` samples, in worker order.
fn worker_series(scrape: &str) -> Vec<usize> {
    (0..WORKERS)
        .map(|worker| {
            let series = format!("wshub_worker_connections{{worker=\"{worker}\"}} ");
            let line = scrape
                .lines()
                .find(|line| line.starts_with(&series))
                .unwrap_or_else(|| panic!("no {series} in\n{scrape}"));
            line[series.len()..].trim().parse().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_room_reaches_its_members_on_every_worker() {
    let server = start_server_with(workers_config()).await;
    let mut members = Vec::new();
    for _ in 0..2 * WORKERS {
        members.push(connect(&server.url("/ws/hall")).await);
    }
    let per_worker = connections_per_worker(server.addr, members.len()).await;
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
    for sender in 0..members.len() {
        let text = format!("from {sender}");
        members[sender].send(Message::text(text.clone())).await.unwrap();
        for member in &mut members {
            assert_eq!(next_message(member).await, Message::text(text.clone()));
        }
    }
    drop(members);
    server.shutdown().await;
}

/// Worker tasks running now, and the threads they started on.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static THREADS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

fn worker_task() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        let _running = Running;
        let name = std::thread::current().name().unwrap_or_default().to_owned();
        THREADS.lock().unwrap().push(name);
        std::future::pending::<()>().await;
    })
}

#[tokio::test]
async fn shutdown_closes_every_workers_clients_with_1001_and_stops_the_workers() {
    let server = Server::bind(workers_config()).await.expect("bind");
    let server = start(server.with_worker_task(worker_task));
    let mut clients = Vec::new();
    for i in 0..2 * WORKERS {
        clients.push(connect(&server.url(if i % 2 == 0 { "/echo" } else { "/ws" })).await);
    }
    let per_worker = connections_per_worker(server.addr, clients.len()).await;
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
    assert_eq!(RUNNING.load(Ordering::SeqCst), WORKERS, "the task runs on every worker");
    let mut threads = THREADS.lock().unwrap().clone();
    threads.sort();
    let expected: Vec<String> = (0..WORKERS).map(|i| format!("wshub-worker-{i}")).collect();
    assert_eq!(threads, expected);

    let waiting = tokio::spawn(async move {
        let mut codes = Vec::new();
        for client in &mut clients {
            codes.push(expect_close(client).await);
        }
        for client in &mut clients {
            let _ = client.next().await;
        }
        codes
    });
    let hub = server.hub.clone();
    let addr = server.addr;
    server.shutdown().await;
    assert_eq!(
        RUNNING.load(Ordering::SeqCst),
        0,
        "the workers' runtimes are gone when run returns"
    );
    assert_eq!(hub.connection_count(), 0);
    assert_eq!(waiting.await.unwrap(), vec![1001; 2 * WORKERS]);
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn healthz_and_metrics_count_the_whole_process() {
    let server = start_server_with(workers_config()).await;
    let mut clients = Vec::new();
    for i in 0..3 * WORKERS {
        clients.push(connect(&server.url(if i % 3 == 0 { "/echo" } else { "/ws/counted" })).await);
    }
    let total = clients.len();
    let per_worker = connections_per_worker(server.addr, total).await;
    let health = healthz(server.addr).await;
    assert_eq!(health["connections"]["echo"], WORKERS, "{health}");
    assert_eq!(health["connections"]["chat"], 2 * WORKERS, "{health}");
    assert_eq!(health["rooms"], 1, "one room, whichever workers its members are on");

    let scrape = common::http_get(server.addr, "/metrics").await.body;
    assert_eq!(worker_series(&scrape), per_worker);
    let sample = |series: &str| -> f64 {
        let line = scrape
            .lines()
            .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{scrape}"));
        line[series.len()..].trim().parse().unwrap()
    };
    assert_eq!(sample(r#"wshub_connections{endpoint="echo"}"#), WORKERS as f64);
    assert_eq!(sample(r#"wshub_connections{endpoint="chat"}"#), (2 * WORKERS) as f64);
    assert!(scrape.contains("# TYPE wshub_worker_connections gauge"), "{scrape}");
    drop(clients);
    server.shutdown().await;
}
