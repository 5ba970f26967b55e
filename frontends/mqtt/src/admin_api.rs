//! `/api/v1/mqtt/...`, the MQTT frontend's part of the node's admin API: clients,
//! sessions, subscriptions and retained messages.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use strata_frontend::admin::extract::{ApiPath, ApiQuery};
use strata_frontend::admin::http::{AdminApi, ApiError, ApiResult, ErrorBody, audit};
use strata_frontend::seams::Storage;
use utoipa::OpenApi;

use crate::admin::{
    ClientQuery, MqttAdmin, RetainedDetail, RetainedPage, RetainedQuery, SessionDetail,
    SessionPage, SessionQuery, SubscriptionPage, SubscriptionQuery,
};

/// What the routes act on.
#[derive(Clone)]
struct Api {
    admin: MqttAdmin,
    storage: Storage,
}

#[derive(OpenApi)]
#[openapi(
    paths(
        clients,
        client,
        disconnect,
        sessions,
        session,
        discard_session,
        subscriptions,
        retained,
        retained_message,
        delete_retained,
    ),
    tags((name = "mqtt", description = "The MQTT frontend"))
)]
struct Doc;

/// The routes under `/api/v1/mqtt` and their document.
pub(crate) fn api(admin: MqttAdmin, storage: Storage) -> AdminApi {
    let router = Router::new()
        .route("/clients", get(clients))
        .route("/clients/{client_id}", get(client))
        .route("/clients/{client_id}/disconnect", post(disconnect))
        .route("/sessions", get(sessions))
        .route(
            "/sessions/{client_id}",
            get(session).delete(discard_session),
        )
        .route("/subscriptions", get(subscriptions))
        .route("/retained", get(retained))
        .route(
            "/retained/{topic}",
            get(retained_message).delete(delete_retained),
        )
        .with_state(Api { admin, storage });
    AdminApi {
        router,
        openapi: Doc::openapi(),
    }
}

/// Connected MQTT clients, filtered and paged by client id.
#[utoipa::path(get, path = "/api/v1/mqtt/clients", tag = "mqtt", params(ClientQuery),
    responses(
        (status = 200, description = "A page of connected clients", body = SessionPage),
        (status = 400, description = "Bad filter, cursor or limit", body = ErrorBody),
        (status = 404, description = "MQTT is not enabled", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
async fn clients(
    State(s): State<Api>,
    ApiQuery(q): ApiQuery<ClientQuery>,
) -> ApiResult<SessionPage> {
    Ok(Json(s.admin.clients(&q)?))
}

/// One client's session, connection and subscriptions (connected or not).
#[utoipa::path(get, path = "/api/v1/mqtt/clients/{client_id}", tag = "mqtt",
    params(("client_id" = String, Path, description = "Client identifier")),
    responses(
        (status = 200, description = "The client", body = SessionDetail),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
async fn client(
    State(s): State<Api>,
    ApiPath(client_id): ApiPath<String>,
) -> ApiResult<SessionDetail> {
    Ok(Json(s.admin.session(&client_id)?))
}

/// Closes a client's connection (MQTT 5: DISCONNECT 0x98, administrative action). Its
/// session stays and its will, if any, is published.
#[utoipa::path(post, path = "/api/v1/mqtt/clients/{client_id}/disconnect", tag = "mqtt",
    params(("client_id" = String, Path, description = "Client identifier")),
    responses(
        (status = 204, description = "The connection is being closed"),
        (status = 404, description = "No such connected client", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
async fn disconnect(
    State(s): State<Api>,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.admin.disconnect(&client_id)?;
    audit(&s.storage, "mqtt.client.disconnect", &client_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Sessions, connected or not, filtered and paged by client id.
#[utoipa::path(get, path = "/api/v1/mqtt/sessions", tag = "mqtt", params(SessionQuery),
    responses(
        (status = 200, description = "A page of sessions", body = SessionPage),
        (status = 400, description = "Bad filter, cursor or limit", body = ErrorBody),
        (status = 404, description = "MQTT is not enabled", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
async fn sessions(
    State(s): State<Api>,
    ApiQuery(q): ApiQuery<SessionQuery>,
) -> ApiResult<SessionPage> {
    Ok(Json(s.admin.sessions(&q)?))
}

/// One session with its subscriptions.
#[utoipa::path(get, path = "/api/v1/mqtt/sessions/{client_id}", tag = "mqtt",
    params(("client_id" = String, Path, description = "Client identifier")),
    responses(
        (status = 200, description = "The session", body = SessionDetail),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
async fn session(
    State(s): State<Api>,
    ApiPath(client_id): ApiPath<String>,
) -> ApiResult<SessionDetail> {
    Ok(Json(s.admin.session(&client_id)?))
}

/// Discards a session before answering: it leaves routing, its connection is closed
/// without its will, a pending will is dropped, and its subscriptions, queue and stored
/// state are deleted.
#[utoipa::path(delete, path = "/api/v1/mqtt/sessions/{client_id}", tag = "mqtt",
    params(("client_id" = String, Path, description = "Client identifier")),
    responses(
        (status = 204, description = "The session is discarded"),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "MQTT is still starting, or the store write failed", body = ErrorBody)))]
async fn discard_session(
    State(s): State<Api>,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.admin.discard_session(&client_id)?;
    audit(&s.storage, "mqtt.session.discard", &client_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Subscriptions, by client or by a topic they match, paged.
#[utoipa::path(get, path = "/api/v1/mqtt/subscriptions", tag = "mqtt",
    params(SubscriptionQuery),
    responses(
        (status = 200, description = "A page of subscriptions", body = SubscriptionPage),
        (status = 400, description = "Bad cursor or limit", body = ErrorBody),
        (status = 404, description = "MQTT is not enabled", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
async fn subscriptions(
    State(s): State<Api>,
    ApiQuery(q): ApiQuery<SubscriptionQuery>,
) -> ApiResult<SubscriptionPage> {
    Ok(Json(s.admin.subscriptions(&q)?))
}

/// Retained messages whose topic matches a filter, paged.
#[utoipa::path(get, path = "/api/v1/mqtt/retained", tag = "mqtt", params(RetainedQuery),
    responses(
        (status = 200, description = "A page of retained messages", body = RetainedPage),
        (status = 400, description = "Bad filter, cursor or limit", body = ErrorBody),
        (status = 404, description = "MQTT is not enabled", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
async fn retained(
    State(s): State<Api>,
    ApiQuery(q): ApiQuery<RetainedQuery>,
) -> ApiResult<RetainedPage> {
    Ok(Json(s.admin.retained(&q)?))
}

/// The retained message of a topic, with its payload.
#[utoipa::path(get, path = "/api/v1/mqtt/retained/{topic}", tag = "mqtt",
    params(("topic" = String, Path, description = "Topic name, percent-encoded (`/` as `%2F`)")),
    responses(
        (status = 200, description = "The retained message", body = RetainedDetail),
        (status = 404, description = "No retained message on that topic", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
async fn retained_message(
    State(s): State<Api>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<RetainedDetail> {
    Ok(Json(s.admin.retained_message(&topic)?))
}

/// Deletes a topic's retained message, without publishing anything.
#[utoipa::path(delete, path = "/api/v1/mqtt/retained/{topic}", tag = "mqtt",
    params(("topic" = String, Path, description = "Topic name, percent-encoded (`/` as `%2F`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No retained message on that topic", body = ErrorBody),
        (status = 503, description = "MQTT is still starting or the store failed", body = ErrorBody)))]
async fn delete_retained(
    State(s): State<Api>,
    ApiPath(topic): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.admin.delete_retained(&topic)?;
    audit(&s.storage, "mqtt.retained.delete", &topic).await;
    Ok(StatusCode::NO_CONTENT)
}
