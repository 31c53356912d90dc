//! One POST to a backend, and what its answer means for the batch:
//! delivered, worth retrying, or refused for good.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;

use super::WebhookError;

/// The HTTP/1.1 client every target shares: one connection pool, kept
/// alive between batches, plain http or https by the URL.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A response body is read (so that the connection can be reused) up to
/// this much; a reason quoted in a log line is shorter still.
const MAX_RESPONSE_BYTES: usize = 16 * 1024;
const MAX_QUOTED_BYTES: usize = 200;

const AGENT: &str = concat!("wshub/", env!("CARGO_PKG_VERSION"));

/// Builds the client. The system's trust store is read only when some
/// target is https (`tls`); `extra_roots` are trusted besides it (a
/// private CA; the tests' self-signed receiver).
pub(crate) fn build(
    tls: bool,
    extra_roots: &[CertificateDer<'static>],
    connect_timeout: Duration,
) -> Result<HttpClient, WebhookError> {
    let mut roots = rustls::RootCertStore::empty();
    if tls {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "webhooks: a system root certificate could not be read");
        }
        roots.add_parsable_certificates(native.certs);
    }
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    if tls && roots.is_empty() {
        tracing::warn!("webhooks: no trusted root certificate found; https webhooks will fail to connect");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx: the backend has the batch.
    Delivered,
    /// Worth another try: a 5xx, a 429, no connection, no answer in time.
    Retry(String),
    /// The backend refused the batch for good (a 4xx other than 429, or a
    /// redirect, which is not followed): retrying would get the same.
    Reject(String),
}

/// POSTs `body` with the Pusher headers and waits at most `timeout` for
/// the whole exchange.
pub(crate) async fn post(
    client: &HttpClient,
    uri: &Uri,
    key: &HeaderValue,
    signature: &str,
    body: Bytes,
    timeout: Duration,
) -> Outcome {
    let request = Request::post(uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, AGENT)
        .header("X-Pusher-Key", key.clone())
        .header("X-Pusher-Signature", signature)
        .body(Full::new(body));
    let request = match request {
        Ok(request) => request,
        // The URI and headers were checked when the target was made.
        Err(e) => return Outcome::Reject(format!("request not built: {e}")),
    };
    let exchange = async {
        let response = match client.request(request).await {
            Ok(response) => response,
            Err(e) => return Outcome::Retry(describe(&e)),
        };
        let status = response.status();
        // Read what the backend says (bounded) so that the connection goes
        // back to the pool; a body that will not end is the timeout's.
        let text = match Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await {
            Ok(collected) => quote(&collected.to_bytes()),
            Err(_) => String::new(),
        };
        classify(status, &text)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Retry(format!("no response within {timeout:?}")),
    }
}

/// What a status means for the batch; `text`, the start of the body, goes
/// into the reason.
pub(crate) fn classify(status: StatusCode, text: &str) -> Outcome {
    let reason = if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    };
    if status.is_success() {
        Outcome::Delivered
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Outcome::Retry(reason)
    } else if status.is_redirection() {
        Outcome::Reject(format!("{reason} (redirects are not followed)"))
    } else {
        Outcome::Reject(reason)
    }
}

/// A client error with its causes: hyper-util's own message is only
/// "client error (Connect)".
fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn quote(body: &[u8]) -> String {
    let end = body.len().min(MAX_QUOTED_BYTES);
    let mut text = String::from_utf8_lossy(&body[..end]).trim().replace(['\r', '\n'], " ");
    if body.len() > end {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_delivered_retry_or_reject() {
        assert_eq!(classify(StatusCode::OK, ""), Outcome::Delivered);
        assert_eq!(classify(StatusCode::NO_CONTENT, ""), Outcome::Delivered);
        for retried in [500, 502, 503, 504, 429] {
            let status = StatusCode::from_u16(retried).unwrap();
            assert!(matches!(classify(status, ""), Outcome::Retry(_)), "{status}");
        }
        for refused in [400, 401, 403, 404, 410, 413, 301, 302] {
            let status = StatusCode::from_u16(refused).unwrap();
            assert!(matches!(classify(status, ""), Outcome::Reject(_)), "{status}");
        }
    }

    #[test]
    fn a_reason_quotes_the_start_of_the_body_on_one_line() {
        let Outcome::Reject(reason) = classify(StatusCode::BAD_REQUEST, &quote(b"bad\r\nsignature\n")) else {
            panic!("a 400 is refused")
        };
        assert_eq!(reason, "HTTP 400 Bad Request: bad  signature");
        let long = quote(&[b'x'; 1000]);
        assert_eq!(long.len(), MAX_QUOTED_BYTES + 3);
    }
}
