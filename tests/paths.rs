//! Paths that serve no WebSocket: an upgrade there, or a request that is
//! not a browser's navigation, gets 404 with a body saying what is served
//! (a client reports "404", not "Handshake status 200 OK"); a navigation
//! gets the page, and the page's own files keep being served.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A browser's Accept on a navigation (Chromium's).
const NAVIGATION: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// The handshake of a real client library on `path`: its HTTP status.
async fn upgrade_status(server: &TestServer, path: &str) -> u16 {
    let request = server.url(path).into_client_request().unwrap();
    match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
        .await
        .expect("an answer in time")
    {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            assert!(
                body.contains("/echo, /ws and /ws/{room}"),
                "{path}: the body names the endpoints: {body}"
            );
            response.status().as_u16()
        }
        Err(e) => panic!("{path}: unexpected error {e}"),
    }
}

/// A plain `GET path` with `headers`; the status line and the body.
async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let response = common::http(server.addr, "GET", path, headers, "").await;
    let status_line = response.head.lines().next().unwrap_or("").to_owned();
    (status_line, response.body)
}

#[tokio::test]
async fn an_upgrade_to_an_unknown_path_gets_404() {
    let server = start_server().await;
    for path in [
        "/ws/",
        "/chat",
        "/socket.io/?EIO=4&transport=websocket",
        "/",
        "/index.html",
        "/ws/a/b",
    ] {
        assert_eq!(upgrade_status(&server, path).await, 404, "{path}");
    }
    // The WebSocket endpoints still upgrade.
    for path in ["/echo", "/ws", "/ws/kitchen"] {
        assert_eq!(upgrade_status(&server, path).await, 101, "{path}");
    }
    let metrics = get(&server, "/metrics", &[]).await.1;
    assert!(
        metrics.contains(r#"wshub_upgrades_refused_total{reason="not_found"} 6"#),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn only_a_navigation_gets_the_page_at_an_unknown_path() {
    let server = start_server().await;
    let (status, page) = get(&server, "/some/client/route", &[("Accept", NAVIGATION)]).await;
    assert!(status.contains("200"), "{status}");
    assert!(page.contains("<html") || page.contains("<!doctype"), "{page}");
    for accept in [None, Some("*/*"), Some("application/json")] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let (status, body) = get(&server, "/chat", &headers).await;
        assert!(status.contains("404"), "Accept {accept:?}: {status}");
        assert!(body.contains("/echo, /ws and /ws/{room}"), "{body}");
    }
    // The page itself, for anyone.
    for headers in [vec![], vec![("Accept", NAVIGATION)]] {
        let (status, page) = get(&server, "/", &headers).await;
        assert!(status.contains("200"), "{status}");
        assert!(page.contains("<html") || page.contains("<!doctype"), "{page}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_pages_own_files_are_served() {
    let server = start_server().await;
    let (_, page) = get(&server, "/", &[]).await;
    // Every file the page names (scripts, styles, icons), however asked for.
    let names: Vec<String> = page
        .split(['"', '\''])
        .filter(|s| s.starts_with('/') && s.contains('.') && !s.starts_with("//"))
        .map(str::to_owned)
        .collect();
    // The placeholder page (a build without npm) names no files.
    assert!(
        !names.is_empty() || page.contains("built without its web page"),
        "no files named in {page}"
    );
    for name in &names {
        for headers in [vec![], vec![("Accept", "*/*")]] {
            let (status, _) = get(&server, name, &headers).await;
            assert!(status.contains("200"), "{name}: {status}");
        }
    }
    let (status, _) = get(&server, "/assets/missing-0000.js", &[("Accept", NAVIGATION)]).await;
    assert!(status.contains("404"), "{status}");
    server.shutdown().await;
}
