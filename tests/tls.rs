//! TLS: wss with a generated certificate works; unusable certificate or
//! key files stop start-up with a message naming the file and the problem.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use wshub::{Server, TlsSource};

struct Pem {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn write_cert(dir: &Path, name: &str) -> Pem {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    Pem {
        cert,
        key,
        der: certified.cert.der().clone(),
    }
}

fn tls_config(cert: &Path, key: &Path) -> wshub::Config {
    let mut config = test_config();
    config.tls = Some(TlsSource::Files {
        cert: cert.to_owned(),
        key: key.to_owned(),
    });
    config
}

async fn connect_tls(addr: std::net::SocketAddr, trusted: CertificateDer<'static>, tls12_only: bool) -> Client2 {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = if tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12]).unwrap()
    } else {
        builder.with_safe_default_protocol_versions().unwrap()
    };
    let config = builder.with_root_certificates(roots).with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let url = format!("wss://localhost:{}/echo", addr.port());
    tokio_tungstenite::client_async(url, tls).await.expect("wss upgrade").0
}

type Client2 = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

#[tokio::test]
async fn wss_echo_works_with_tls_1_3_and_1_2() {
    let dir = tempfile::tempdir().unwrap();
    let pem = write_cert(dir.path(), "server");
    let server = start_server_with(tls_config(&pem.cert, &pem.key)).await;
    for tls12_only in [false, true] {
        let mut client = connect_tls(server.addr, pem.der.clone(), tls12_only).await;
        client.send(Message::text("over tls")).await.unwrap();
        let reply = client.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text("over tls"));
    }
    // Plain ws on the TLS port gets nowhere.
    let plain = tokio_tungstenite::connect_async(format!("ws://{}/echo", server.addr)).await;
    assert!(plain.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn self_signed_mode_serves_wss() {
    let mut config = test_config();
    config.tls = Some(TlsSource::SelfSigned);
    let server = Server::bind(config).await.expect("self-signed TLS starts");
    drop(server);
}

#[tokio::test]
async fn a_missing_certificate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pem = write_cert(dir.path(), "server");
    let missing = dir.path().join("nope.crt");
    let err = Server::bind(tls_config(&missing, &pem.key))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.crt") && err.contains("certificate"), "{err}");
    let missing_key = dir.path().join("nope.key");
    let err = Server::bind(tls_config(&pem.cert, &missing_key))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.key") && err.contains("private key"), "{err}");
}

#[tokio::test]
async fn garbage_pem_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pem = write_cert(dir.path(), "server");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let err = Server::bind(tls_config(&garbage, &pem.key))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("garbage.pem") && err.contains("not valid"), "{err}");
    let err = Server::bind(tls_config(&pem.cert, &garbage))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("garbage.pem") && err.contains("PRIVATE KEY"), "{err}");
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_cert(dir.path(), "a");
    let b = write_cert(dir.path(), "b");
    let err = Server::bind(tls_config(&a.cert, &b.key)).await.unwrap_err().to_string();
    assert!(err.contains("a.crt") && err.contains("b.key"), "{err}");
}
