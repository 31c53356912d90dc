//! The HTTP routes: the two WebSocket services, health, metrics, and the page.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::server::Shared;
use crate::upgrade::{upgrade, Target};

/// The room behind `/ws`.
pub const LOBBY: &str = "lobby";
use crate::web;

/// Builds the router over the server's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    let policy = shared.origins.clone();
    let cors = CorsLayer::new()
        .allow_methods([Method::GET, Method::HEAD])
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, parts| {
            let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok());
            origin.to_str().is_ok_and(|o| policy.allows(Some(o), host))
        }));
    Router::new()
        .route("/echo", get(echo))
        .route("/ws", get(lobby))
        .route("/ws/{room}", get(room))
        .route("/healthz", get(healthz))
        .fallback(get(web::serve))
        .layer(cors)
        // Added after the CORS layer, so it sends no CORS headers: a
        // scraper is not a browser, and no other site's page may read it.
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn echo(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    upgrade(&shared, peer, request, Target::Echo)
}

/// `/ws` is the room `lobby`, as the seed's single chat.
async fn lobby(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    upgrade(&shared, peer, request, Target::Chat(LOBBY.to_owned()))
}

async fn room(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    request: Request,
) -> Response {
    upgrade(&shared, peer, request, Target::Chat(room))
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
    let broker = shared.hub.broker();
    let (status, code) = if shared.is_shutting_down() {
        ("shutting_down", StatusCode::SERVICE_UNAVAILABLE)
    } else if broker.is_some_and(|broker| !broker.is_up()) {
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
            "protocol": snapshot.protocol,
        },
        // With Redis, rooms' history is its streams: the local store is
        // not used for them.
        "history": if broker.is_some() { "redis" } else { shared.hub.history().backend_name() },
        "rooms": snapshot.rooms,
        "evictions": snapshot.evictions,
    });
    if let Some(broker) = broker {
        let down_since = broker.down_since();
        body["redis"] = serde_json::json!({
            "connected": broker.is_up(),
            "node": broker.node(),
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
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        hub.metrics().render(hub),
    )
}
