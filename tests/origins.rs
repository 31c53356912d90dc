//! The Origin allow-list, checked before the upgrade (HTTP 403, no socket),
//! and CORS for the HTTP routes from the same list.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn by_default_native_clients_and_local_pages_are_allowed() {
    let server = start_server().await;
    connect(&server.url("/echo")).await;
    for origin in ["http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000"] {
        assert!(
            connect_with_origin(&server.url("/echo"), origin).await.is_ok(),
            "{origin}"
        );
    }
    for origin in ["https://evil.example", "http://localhost.evil.example", "null"] {
        assert_eq!(
            connect_with_origin(&server.url("/ws"), origin).await.err(),
            Some(403),
            "{origin}"
        );
    }
    wait_for_connections(&server.hub, 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_explicit_list_replaces_the_default() {
    let mut config = test_config();
    config.allowed_origins = vec!["https://chat.example".into()];
    let server = start_server_with(config).await;
    assert!(connect_with_origin(&server.url("/ws"), "https://chat.example")
        .await
        .is_ok());
    assert_eq!(
        connect_with_origin(&server.url("/ws"), "http://localhost:5173")
            .await
            .err(),
        Some(403)
    );
    // A page served by wshub itself (same origin) is always allowed.
    let same = format!("http://{}", server.addr);
    assert!(connect_with_origin(&server.url("/ws"), &same).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn a_star_allows_any_origin() {
    let mut config = test_config();
    config.allowed_origins = vec!["*".into()];
    let server = start_server_with(config).await;
    assert!(connect_with_origin(&server.url("/echo"), "https://anything.example")
        .await
        .is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn cors_follows_the_same_list() {
    let server = start_server().await;
    let allowed = http_get_with_origin(server.addr, "/healthz", "http://localhost:5173").await;
    assert!(
        allowed
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: http://localhost:5173"),
        "{allowed}"
    );
    let refused = http_get_with_origin(server.addr, "/healthz", "https://evil.example").await;
    assert!(
        !refused.to_ascii_lowercase().contains("access-control-allow-origin"),
        "{refused}"
    );
    server.shutdown().await;
}

async fn http_get_with_origin(addr: std::net::SocketAddr, path: &str, origin: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
