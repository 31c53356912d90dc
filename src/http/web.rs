//! The web page, embedded in the binary at build time.
//!
//! `build.rs` builds `web/` with Vite (or, when it cannot, writes a page
//! that says what is missing) into `$OUT_DIR/web`, and this module serves
//! those files: Vite's hashed assets cached for a year, `index.html` always
//! revalidated (by its ETag). An unknown path without a file extension gets
//! `index.html` only when a browser navigates to it (a GET that accepts
//! `text/html`), so client-side routes survive a reload; anything else
//! there gets 404 with what is served, and so does a WebSocket upgrade to
//! any path that is not a WebSocket endpoint (a client then reports
//! "404", not "Handshake status 200 OK").

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::http::access::{refuse, Refusal};
use crate::http::Shared;

#[derive(RustEmbed)]
#[folder = "$OUT_DIR/web"]
struct Assets;

/// The body of a 404 for a path that is neither a file nor a page route.
const NOT_FOUND: &str = "not found: wshub serves its page at /, WebSocket on /echo, /ws and /ws/{room}, \
                         and GET /healthz and /metrics\n";

/// Serves an embedded file for any GET that no other route took.
pub async fn serve(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if headers.contains_key(header::UPGRADE) {
        return refuse(&shared, peer, &uri, &headers, Refusal::NotFound);
    }
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let is_page_route = !path.rsplit('/').next().unwrap_or("").contains('.');
    let (path, file) = match Assets::get(path) {
        Some(file) => (path, file),
        None if is_page_route && accepts_html(&headers) => match Assets::get("index.html") {
            Some(file) => ("index.html", file),
            None => return (StatusCode::NOT_FOUND, NOT_FOUND).into_response(),
        },
        None => return (StatusCode::NOT_FOUND, NOT_FOUND).into_response(),
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.data.into_owned()))
    };
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Whether `Accept` names `text/html` (as a browser's navigation does; a
/// `fetch`, curl or a WebSocket library does not).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let html = parts.next().is_some_and(|t| t.eq_ignore_ascii_case("text/html"));
            let refused =
                parts.any(|p| matches!(p.strip_prefix("q="), Some(q) if q.parse::<f32>().is_ok_and(|q| q == 0.0)));
            html && !refused
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_navigations_accept_html() {
        let chromium = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        assert!(accepts_html(&accept(chromium)));
        assert!(accepts_html(&accept("TEXT/HTML")));
        assert!(!accepts_html(&accept("*/*")));
        assert!(!accepts_html(&accept("application/json")));
        assert!(!accepts_html(&accept("text/html;q=0, */*")));
        assert!(!accepts_html(&HeaderMap::new()));
    }
}
