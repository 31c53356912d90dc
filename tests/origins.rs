//! The Origin allow-list, checked before the upgrade (HTTP 403, no socket),
//! and CORS for the HTTP routes from the same list; origins parsed as URLs
//! (no user-info or IPv6 tricks), and a same-origin page trusted only on a
//! Host this server is known by (no DNS rebinding).

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
    let get = |origin| async move { common::http(server.addr, "GET", "/healthz", &[("Origin", origin)], "").await };
    let allowed = get("http://localhost:5173").await;
    assert!(
        allowed
            .head
            .contains("access-control-allow-origin: http://localhost:5173"),
        "{allowed:?}"
    );
    let refused = get("https://evil.example").await;
    assert!(!refused.head.contains("access-control-allow-origin"), "{refused:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn origins_that_only_look_local_are_refused() {
    let server = start_server().await;
    for origin in [
        "http://localhost:80@evil.com",
        "http://127.0.0.1@evil.com",
        "http://[::1].evil.com",
        "http://[::1]:80.evil.com",
    ] {
        assert_eq!(
            connect_with_origin(&server.url("/ws"), origin).await.err(),
            Some(403),
            "{origin}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_dns_rebinding_page_is_refused_before_the_upgrade() {
    let server = start_server().await;
    // evil.com resolved to 127.0.0.1: the browser sends the page's own
    // name as both Host and Origin.
    let rebinding = [("Host", "evil.com:8080"), ("Origin", "http://evil.com:8080")];
    let response = handshake(server.addr, "/ws", &rebinding).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("--allowed-origin"),
        "the body says what to do: {response}"
    );
    assert_eq!(server.hub.snapshot().connections, 0);
    // A client without Origin, whatever its Host, is no browser page.
    let native = handshake(server.addr, "/echo", &[("Host", "evil.com:8080")]).await;
    assert!(native.starts_with("HTTP/1.1 101"), "{native}");
    // A page served by wshub on an address (a LAN IP, loopback) is same-origin.
    let lan = [("Host", "192.168.1.5:8080"), ("Origin", "http://192.168.1.5:8080")];
    assert!(handshake(server.addr, "/echo", &lan).await.starts_with("HTTP/1.1 101"));
    server.shutdown().await;
}

#[tokio::test]
async fn an_allowed_origins_host_is_known_for_same_origin_pages() {
    let mut config = test_config();
    config.allowed_origins = vec!["https://chat.example".into()];
    let server = start_server_with(config).await;
    let proxied = [("Host", "chat.example"), ("Origin", "https://chat.example")];
    assert!(handshake(server.addr, "/ws", &proxied)
        .await
        .starts_with("HTTP/1.1 101"));
    let other_port = [("Host", "chat.example:8080"), ("Origin", "http://chat.example:8080")];
    assert!(handshake(server.addr, "/ws", &other_port)
        .await
        .starts_with("HTTP/1.1 101"));
    let unknown = [("Host", "evil.example"), ("Origin", "https://evil.example")];
    assert!(handshake(server.addr, "/ws", &unknown)
        .await
        .starts_with("HTTP/1.1 403"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_second_origin_header_is_refused_whatever_the_first() {
    let server = start_server().await;
    let host = ("Host", "127.0.0.1:8080");
    let two = [
        host,
        ("Origin", "http://localhost:8080"),
        ("Origin", "https://evil.example"),
    ];
    let response = handshake(server.addr, "/ws", &two).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    let one = [host, ("Origin", "http://localhost:8080")];
    assert!(handshake(server.addr, "/ws", &one).await.starts_with("HTTP/1.1 101"));
    server.shutdown().await;
}

/// Sends a WebSocket handshake with `headers` (Host included) and returns
/// the response's head and body, as read until the server's answer ends.
async fn handshake(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    // A 101 leaves the socket open: stop at the end of its head. A refusal
    // has a body: read until its Content-Length is in.
    loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        response.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if n == 0 || response.len() >= end + 4 + length {
                return text.into_owned();
            }
        } else if n == 0 {
            return text.into_owned();
        }
    }
}
