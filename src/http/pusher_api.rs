//! The Pusher HTTP API (`/apps/{app_id}/...`): how an application's
//! backend publishes into channels and asks about them, with the `pusher`
//! server SDKs of every language, unchanged.
//!
//! Every request is signed with the app's secret (`auth_key`,
//! `auth_timestamp`, `auth_version`, `body_md5`, `auth_signature`); one
//! that is not, or whose timestamp is more than 600 s away, is refused with
//! the status and JSON reason Pusher gives, before anything is published.
//! An event is published into the hub room of each of its channels, so
//! Pusher subscribers, `wshub.v1` members and raw clients of that room all
//! get it, in the room's one order.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::apps::request::QueryParams;
use crate::apps::{ApiRequest, App};
use crate::http::Shared;
use crate::hub::ChannelInfo;
use crate::protocol::pusher::{check_channel, check_event, ChannelType, SocketId};
use crate::service::pusher::{excluded_socket, Tenant};

/// Events in one `batch_events` request (Pusher's limit).
const MAX_BATCH: usize = 10;

/// Largest request body read, in bytes: a batch of the largest events.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Time a request gets from its head to its answer, the body's reading
/// included: beyond it, 408 and the connection closes. The head has its
/// own bound (`HANDSHAKE_TIMEOUT`); without this one a client that
/// announces a body and never sends it would hold its socket and up to
/// [`MAX_BODY_BYTES`] of buffer forever. 10 s carries the largest body
/// at 1 Mbit/s, and the slowest answer (one that waits on Redis, 2 s).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The API's routes, to be merged into the server's router.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/apps/{app_id}/events", post(events))
        .route("/apps/{app_id}/batch_events", post(batch_events))
        .route("/apps/{app_id}/channels", get(channels))
        .route("/apps/{app_id}/channels/{channel}", get(channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(users))
        .route("/apps/{app_id}/users/{user}/events", post(user_events))
        .route(
            "/apps/{app_id}/users/{user}/terminate_connections",
            post(terminate_connections),
        )
}

/// A refused API request: its status and the reason the body gives.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(reason: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, reason.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.1, "code": self.0.as_u16() });
        (self.0, Json(body)).into_response()
    }
}

/// Checks the request's signature: its app, and its query parameters.
fn authenticate(
    shared: &Shared,
    app_id: &str,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<(Tenant, QueryParams), ApiError> {
    let Some(tenant) = shared.pusher.tenants.by_id(app_id) else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("Unknown app {app_id}")));
    };
    let app = &tenant.app;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let request = ApiRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        body,
    };
    match app.credentials().verify_request(&request, now) {
        Ok(params) => Ok((tenant.clone(), params)),
        Err(e) => {
            tracing::debug!(app = app_id, path = uri.path(), "HTTP API request refused: {e}");
            Err(ApiError(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED),
                e.to_string(),
            ))
        }
    }
}

/// One event, as `events` takes it and `batch_events` lists them.
#[derive(Debug, Deserialize)]
struct Event {
    name: String,
    data: String,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    /// Attributes to return per channel (`subscription_count`,
    /// `user_count`), comma-separated.
    #[serde(default)]
    info: Option<String>,
}

impl Event {
    /// Checks the event against the app's limits; its channels.
    fn validate(&self, app: &App) -> Result<Vec<&str>, ApiError> {
        let channels: Vec<&str> = match (&self.channels, &self.channel) {
            (Some(channels), _) => channels.iter().map(String::as_str).collect(),
            (None, Some(channel)) => vec![channel.as_str()],
            (None, None) => return Err(ApiError::bad("Missing channels")),
        };
        if channels.is_empty() {
            return Err(ApiError::bad("Missing channels"));
        }
        if channels.len() > app.max_channels_per_event {
            let reason = format!(
                "An event can be published to at most {} channels",
                app.max_channels_per_event
            );
            return Err(ApiError::bad(reason));
        }
        for channel in &channels {
            // A user's channel too: the server SDKs' sendToUser publishes
            // there through this very endpoint.
            check_channel(channel).map_err(|e| ApiError::bad(e.to_string()))?;
        }
        check_name_and_data(app, &self.name, &self.data)?;
        if let Some(id) = &self.socket_id {
            id.parse::<SocketId>().map_err(|e| ApiError::bad(e.to_string()))?;
        }
        Ok(channels)
    }

    /// Publishes the event into each of `channels`.
    fn publish(&self, shared: &Shared, tenant: &Tenant, channels: &[&str]) {
        // Any node's socket id: the node that made it leaves it out.
        let except = self.socket_id.as_deref().map_or(0, excluded_socket);
        let sender: Arc<str> = Arc::from(tenant.app.id.as_str());
        let name: Arc<str> = Arc::from(self.name.as_str());
        for channel in channels {
            shared
                .hub
                .publish_event(&tenant.room(channel), &sender, &name, &self.data, except);
        }
    }

    /// The `info` attributes asked for, per channel.
    async fn info(&self, shared: &Shared, tenant: &Tenant, channels: &[&str]) -> Option<serde_json::Value> {
        let attributes = Attributes::parse(self.info.as_deref()?);
        let mut described = serde_json::Map::new();
        for channel in channels {
            let info = describe(shared, tenant, channel, attributes).await;
            described.insert((*channel).to_owned(), info);
        }
        Some(serde_json::Value::Object(described))
    }
}

/// Which attributes a request asks about a channel.
#[derive(Debug, Clone, Copy, Default)]
struct Attributes {
    user_count: bool,
    subscription_count: bool,
}

impl Attributes {
    fn parse(info: &str) -> Self {
        let mut attributes = Attributes::default();
        for attribute in info.split(',').map(str::trim) {
            match attribute {
                "user_count" => attributes.user_count = true,
                "subscription_count" => attributes.subscription_count = true,
                _ => {}
            }
        }
        attributes
    }
}

/// A channel's attributes (this node's counts).
async fn describe(shared: &Shared, tenant: &Tenant, channel: &str, attributes: Attributes) -> serde_json::Value {
    describe_info(
        shared.hub.cluster_channel_info(&tenant.room(channel)).await,
        channel,
        attributes,
    )
}

/// The attributes asked for of a channel whose counts are `info`.
fn describe_info(info: ChannelInfo, channel: &str, attributes: Attributes) -> serde_json::Value {
    let mut described = serde_json::Map::new();
    if attributes.user_count && ChannelType::of(channel).is_presence() {
        described.insert("user_count".into(), info.users.into());
    }
    if attributes.subscription_count {
        described.insert("subscription_count".into(), info.subscriptions.into());
    }
    serde_json::Value::Object(described)
}

/// An event's name (400 when it breaks the rules) and data (413 over the
/// app's `max_event_bytes`), for channels and users alike.
fn check_name_and_data(app: &App, name: &str, data: &str) -> Result<(), ApiError> {
    check_event(name).map_err(|e| ApiError::bad(e.to_string()))?;
    if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
        // The protocol's own: a client would take it for the server's.
        return Err(ApiError::bad(format!(
            "event name {name} is reserved (pusher: and pusher_internal:)"
        )));
    }
    if data.len() > app.max_event_bytes {
        let reason = format!("Event data over {} bytes", app.max_event_bytes);
        return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, reason));
    }
    Ok(())
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("Invalid JSON body: {e}")))
}

/// `POST /apps/{app_id}/events`.
async fn events(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (tenant, _) = authenticate(&shared, &app_id, &Method::POST, &uri, &body)?;
    let event: Event = parse_json(&body)?;
    let channels = event.validate(&tenant.app)?;
    event.publish(&shared, &tenant, &channels);
    let body = match event.info(&shared, &tenant, &channels).await {
        Some(info) => serde_json::json!({ "channels": info }),
        None => serde_json::json!({}),
    };
    Ok(Json(body).into_response())
}

/// `POST /apps/{app_id}/batch_events`: up to ten events, each validated
/// before any is published.
async fn batch_events(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    struct Batch {
        batch: Vec<Event>,
    }
    let (tenant, _) = authenticate(&shared, &app_id, &Method::POST, &uri, &body)?;
    let Batch { batch } = parse_json(&body)?;
    if batch.len() > MAX_BATCH {
        return Err(ApiError::bad(format!("Batch too large: at most {MAX_BATCH} events")));
    }
    let mut checked = Vec::with_capacity(batch.len());
    for event in &batch {
        if event.channels.is_some() {
            return Err(ApiError::bad("A batched event has one channel"));
        }
        checked.push(event.validate(&tenant.app)?);
    }
    let mut infos = Vec::new();
    let mut any_info = false;
    for (event, channels) in batch.iter().zip(&checked) {
        event.publish(&shared, &tenant, channels);
        let info = event
            .info(&shared, &tenant, channels)
            .await
            .and_then(|info| info.get(channels[0]).cloned());
        any_info |= info.is_some();
        infos.push(info.unwrap_or_else(|| serde_json::json!({})));
    }
    let body = if any_info {
        serde_json::json!({ "batch": infos })
    } else {
        serde_json::json!({})
    };
    Ok(Json(body).into_response())
}

/// `GET /apps/{app_id}/channels`: occupied channels, by prefix.
async fn channels(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (tenant, params) = authenticate(&shared, &app_id, &Method::GET, &uri, &[])?;
    let prefix = params.get("filter_by_prefix").unwrap_or("");
    let attributes = Attributes::parse(params.get("info").unwrap_or(""));
    if attributes.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::bad(
            "user_count may only be asked with filter_by_prefix=presence-",
        ));
    }
    let mut listed = serde_json::Map::new();
    for room in shared.hub.cluster_rooms(&tenant.room(prefix)).await {
        // Rooms that are no channel of this app's: another app's, and
        // those of `wshub.v1` names that are no channel name.
        let Some(channel) = tenant.channel(&room).filter(|c| check_channel(c).is_ok()) else {
            continue;
        };
        if ChannelType::of(channel).kind == crate::protocol::pusher::ChannelKind::User {
            continue;
        }
        let info = describe(&shared, &tenant, channel, attributes).await;
        listed.insert(channel.to_owned(), info);
    }
    Ok(Json(serde_json::json!({ "channels": listed })).into_response())
}

/// `GET /apps/{app_id}/channels/{channel}`.
async fn channel(
    State(shared): State<Arc<Shared>>,
    Path((app_id, channel)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (tenant, params) = authenticate(&shared, &app_id, &Method::GET, &uri, &[])?;
    let kind = check_channel(&channel).map_err(|e| ApiError::bad(e.to_string()))?;
    let attributes = Attributes::parse(params.get("info").unwrap_or(""));
    if attributes.user_count && !kind.is_presence() {
        return Err(ApiError::bad("user_count is only for presence channels"));
    }
    let info = shared.hub.cluster_channel_info(&tenant.room(&channel)).await;
    let occupied = info.subscriptions > 0;
    let mut body = describe_info(info, &channel, attributes);
    body["occupied"] = occupied.into();
    Ok(Json(body).into_response())
}

/// `GET /apps/{app_id}/channels/{channel}/users`: a presence channel's
/// users.
async fn users(
    State(shared): State<Arc<Shared>>,
    Path((app_id, channel)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (tenant, _) = authenticate(&shared, &app_id, &Method::GET, &uri, &[])?;
    let presence = check_channel(&channel).is_ok_and(ChannelType::is_presence);
    if !presence {
        return Err(ApiError::bad("Users are listed for presence channels only"));
    }
    let ids = shared.hub.cluster_user_ids(&tenant.room(&channel)).await;
    let users: Vec<serde_json::Value> = ids.iter().map(|id| serde_json::json!({ "id": &**id })).collect();
    Ok(Json(serde_json::json!({ "users": users })).into_response())
}

/// `POST /apps/{app_id}/users/{user}/events`: an event to every signed-in
/// connection of a user (its `#server-to-user-{id}` channel).
async fn user_events(
    State(shared): State<Arc<Shared>>,
    Path((app_id, user)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    struct UserEvent {
        name: String,
        data: String,
    }
    let (tenant, _) = authenticate(&shared, &app_id, &Method::POST, &uri, &body)?;
    let event: UserEvent = parse_json(&body)?;
    check_name_and_data(&tenant.app, &event.name, &event.data)?;
    let (sender, name): (Arc<str>, Arc<str>) = (Arc::from(tenant.app.id.as_str()), Arc::from(event.name.as_str()));
    shared
        .hub
        .publish_event(&tenant.user_room(&user), &sender, &name, &event.data, 0);
    Ok(Json(serde_json::json!({})).into_response())
}

/// `POST /apps/{app_id}/users/{user}/terminate_connections`: closes every
/// signed-in connection of a user, with 4009 (they do not reconnect).
async fn terminate_connections(
    State(shared): State<Arc<Shared>>,
    Path((app_id, user)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (tenant, _) = authenticate(&shared, &app_id, &Method::POST, &uri, &body)?;
    let closed = shared.hub.terminate_user(&tenant.user_room(&user));
    tracing::info!(app = %tenant.app.id, user, closed, "user's connections terminated (this node's; the others are told)");
    Ok(Json(serde_json::json!({})).into_response())
}
