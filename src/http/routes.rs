//! The HTTP routes: the two WebSocket services (and `?check` on their
//! paths), health, metrics, and the page.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::http::access::{admit, Asked};
use crate::http::upgrade::{offers_subprotocol, upgrade, Target};
use crate::http::{pusher_api, Shared};
use crate::protocol::v1::SUBPROTOCOL;

/// The room behind `/ws`.
pub const LOBBY: &str = "lobby";
use crate::http::web;

/// Builds the router over the server's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    let policy = shared.origins.clone();
    let cors = CorsLayer::new()
        .allow_methods([Method::GET, Method::HEAD])
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, parts| {
            let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok());
            origin.to_str().is_ok_and(|o| policy.allows(Some(o), host))
        }));
    let pusher = !shared.apps.is_empty();
    let router = Router::new()
        .route("/healthz", get(healthz))
        .fallback(get(web::serve))
        .layer(cors)
        // Added after the CORS layer, so it sends no CORS headers: a
        // scraper is not a browser, and no other site's page may read it.
        .route("/metrics", get(metrics))
        // The WebSocket paths answer CORS themselves: an upgrade needs none,
        // and `?check` is readable by any page (a page whose origin is
        // refused learns only that).
        .route("/echo", get(echo).options(check_preflight))
        .route("/ws", get(lobby).options(check_preflight))
        .route("/ws/{room}", get(room).options(check_preflight));
    // With no app configured, no Pusher path exists (a 404, as before).
    let router = if pusher {
        router.route("/app/{key}", get(pusher_app)).merge(
            pusher_api::routes()
                .layer(axum::extract::DefaultBodyLimit::max(pusher_api::MAX_BODY_BYTES))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    pusher_api::REQUEST_TIMEOUT,
                )),
        )
    } else {
        router
    };
    router.with_state(shared)
}

/// A WebSocket path: the upgrade, or, for `?check` without `Upgrade`,
/// what the upgrade would answer.
fn websocket(shared: &Arc<Shared>, peer: SocketAddr, request: Request, target: Target) -> Response {
    let wants_check = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "check" || pair.starts_with("check=")));
    if wants_check && !request.headers().contains_key(header::UPGRADE) {
        return check(shared, peer, &request, &target);
    }
    upgrade(shared, peer, request, target)
}

/// `GET <WebSocket path>?check`: runs the upgrade's own access checks for
/// this path, origin and token, keeps nothing, and answers `200` with JSON
/// (`status`, `reason`, `message`, `retry`): a browser cannot read a
/// refused handshake's status (docs/protocol.md, "Why a connection is
/// refused"). What a browser's `fetch` cannot send comes as parameters:
/// `protocol=wshub.v1` for the subprotocol, `origin=` for the Origin a
/// same-origin request omits, and the token as `Authorization: Bearer`.
fn check(shared: &Shared, peer: SocketAddr, request: &Request, target: &Target) -> Response {
    let params: Vec<(Cow<'_, str>, Cow<'_, str>)> =
        url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()).collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref());
    let headers = request.headers();
    let protocol = offers_subprotocol(headers) || param("protocol") == Some(SUBPROTOCOL);
    let endpoint = target.endpoint(protocol);
    let mut asked = Asked::from_handshake(target, endpoint, request.uri(), headers);
    asked.origin = asked.origin.or_else(|| param("origin"));
    asked.token = asked.token.or_else(|| bearer(headers));
    let body = match admit(shared, peer, &asked) {
        // The slots taken are given back here: a check holds nothing.
        Ok(_admitted) => serde_json::json!({
            "status": 101,
            "reason": "ok",
            "message": "the upgrade would be accepted now",
            "retry": true,
        }),
        Err(refusal) => {
            tracing::debug!(%peer, path = request.uri().path(), "handshake check: {refusal}");
            serde_json::json!({
                "status": refusal.status().as_u16(),
                "reason": refusal.label(),
                "message": refusal.to_string(),
                "retry": refusal.may_pass_later(),
            })
        }
    };
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The token of an `Authorization: Bearer` header (how a page's `fetch`
/// sends it to `?check`).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The CORS preflight of a cross-origin `?check` with a token.
async fn check_preflight() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization"),
            (header::ACCESS_CONTROL_MAX_AGE, "600"),
        ],
    )
}

async fn echo(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    websocket(&shared, peer, request, Target::Echo)
}

/// `/ws` is the room `lobby`, as the seed's single chat.
async fn lobby(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    websocket(&shared, peer, request, Target::Chat(LOBBY.to_owned()))
}

async fn room(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    request: Request,
) -> Response {
    websocket(&shared, peer, request, Target::Chat(room))
}

/// `GET /app/{key}?protocol=7`: a Pusher client. An unknown key or version
/// still gets its WebSocket, to be told why in Pusher's terms (`pusher:error`
/// and a 4xxx close code that says whether to reconnect).
async fn pusher_app(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    request: Request,
) -> Response {
    let version = url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .find(|(name, _)| name == "protocol")
        .map(|(_, value)| value.into_owned());
    websocket(&shared, peer, request, Target::Pusher { key, version })
}

/// `GET /healthz`: live counts, where history is, and a status a load
/// balancer can act on (docs/operations.md, "Health checks"):
/// - `ok` (200): serving, and with `--redis`, delivering across nodes;
/// - `degraded` (200): serving its own clients, but Redis is away, so
///   messages reach this node's members only. Still 200: taking the node
///   out would drop its clients, and when Redis is down for every node,
///   every node would go out at once. A balancer that should drain such a
///   node matches the body's `status` instead;
/// - `shutting_down` (503): closing its connections; send no new ones.
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let snapshot = shared.hub.snapshot();
    let cluster = shared.hub.broker().cluster();
    let (status, code) = if shared.is_shutting_down() {
        ("shutting_down", StatusCode::SERVICE_UNAVAILABLE)
    } else if cluster.as_ref().is_some_and(|cluster| !cluster.up) {
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    let mut body = serde_json::json!({
        "status": status,
        "connections": {
            "total": snapshot.connections,
            "echo": snapshot.echo,
            "chat": snapshot.chat,
            "v1": snapshot.v1,
            "pusher": snapshot.pusher,
        },
        // With Redis, rooms' history is its streams: the local store is
        // not used for them.
        "history": if cluster.is_some() { "redis" } else { shared.hub.history().backend_name() },
        "rooms": snapshot.rooms,
        "evictions": snapshot.evictions,
        // WebSocket connections on each worker thread (`--workers`).
        "workers": shared.hub.connections_per_worker(),
    });
    if let Some(cluster) = cluster {
        let down_since = cluster.down_since;
        body["redis"] = serde_json::json!({
            "connected": cluster.up,
            "node": &*cluster.node,
            "down_since": down_since.map(|at| humantime::format_rfc3339_seconds(at).to_string()),
            "down_for_seconds": down_since.map(|at| at.elapsed().map_or(0, |d| d.as_secs())),
        });
    }
    (code, Json(body)).into_response()
}

/// `GET /metrics`: every counter and gauge in the Prometheus text format
/// (see `docs/operations.md`, "Metrics").
async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let hub = &shared.hub;
    let mut text = hub.metrics().render(&crate::metrics::Scrape {
        log_lines_dropped: crate::logging::lines_dropped(),
        webhooks: shared.pusher.webhooks.stats(),
        ..hub.scrape()
    });
    append_worker_connections(&mut text, &shared.hub.connections_per_worker());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        text,
    )
}

/// `wshub_worker_connections{worker="i"}`: how the connections are spread
/// over the workers (they add up to `wshub_connections`). Written here, not
/// in the recorder: the server, not the hub, knows its workers.
fn append_worker_connections(text: &mut String, per_worker: &[usize]) {
    use std::fmt::Write;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# HELP wshub_worker_connections WebSocket connections served by each worker thread.\n");
    text.push_str("# TYPE wshub_worker_connections gauge\n");
    for (worker, connections) in per_worker.iter().enumerate() {
        let _ = writeln!(text, "wshub_worker_connections{{worker=\"{worker}\"}} {connections}");
    }
}
