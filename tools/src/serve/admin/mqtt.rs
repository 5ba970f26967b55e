//! `/api/v1/mqtt/...`: clients, sessions, subscriptions and retained messages.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use strata_mqtt::MqttAdmin;
use strata_mqtt::admin::{
    ClientQuery, RetainedDetail, RetainedPage, RetainedQuery, SessionDetail, SessionPage,
    SessionQuery, SubscriptionPage, SubscriptionQuery,
};

use super::extract::{ApiPath, ApiQuery};
use super::{AdminState, ApiError, ApiResult, ErrorBody};

fn mqtt(s: &AdminState) -> Result<&MqttAdmin, ApiError> {
    s.mqtt.as_ref().ok_or_else(|| ApiError::disabled("MQTT"))
}

/// Connected MQTT clients, filtered and paged by client id.
#[utoipa::path(get, path = "/api/v1/mqtt/clients", tag = "mqtt", params(ClientQuery),
    responses(
        (status = 200, description = "A page of connected clients", body = SessionPage),
        (status = 400, description = "Bad filter, cursor or limit", body = ErrorBody),
        (status = 404, description = "MQTT is not enabled", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
pub async fn clients(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<ClientQuery>,
) -> ApiResult<SessionPage> {
    Ok(Json(mqtt(&s)?.clients(&q)?))
}

/// One client's session, connection and subscriptions (connected or not).
#[utoipa::path(get, path = "/api/v1/mqtt/clients/{client_id}", tag = "mqtt",
    params(("client_id" = String, Path, description = "Client identifier")),
    responses(
        (status = 200, description = "The client", body = SessionDetail),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
pub async fn client(
    State(s): State<AdminState>,
    ApiPath(client_id): ApiPath<String>,
) -> ApiResult<SessionDetail> {
    Ok(Json(mqtt(&s)?.session(&client_id)?))
}

/// Closes a client's connection (MQTT 5: DISCONNECT 0x98, administrative action). Its
/// session stays and its will, if any, is published.
#[utoipa::path(post, path = "/api/v1/mqtt/clients/{client_id}/disconnect", tag = "mqtt",
    params(("client_id" = String, Path, description = "Client identifier")),
    responses(
        (status = 204, description = "The connection is being closed"),
        (status = 404, description = "No such connected client", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
pub async fn disconnect(
    State(s): State<AdminState>,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    mqtt(&s)?.disconnect(&client_id)?;
    s.audit("mqtt.client.disconnect", &client_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Sessions, connected or not, filtered and paged by client id.
#[utoipa::path(get, path = "/api/v1/mqtt/sessions", tag = "mqtt", params(SessionQuery),
    responses(
        (status = 200, description = "A page of sessions", body = SessionPage),
        (status = 400, description = "Bad filter, cursor or limit", body = ErrorBody),
        (status = 404, description = "MQTT is not enabled", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
pub async fn sessions(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<SessionQuery>,
) -> ApiResult<SessionPage> {
    Ok(Json(mqtt(&s)?.sessions(&q)?))
}

/// One session with its subscriptions.
#[utoipa::path(get, path = "/api/v1/mqtt/sessions/{client_id}", tag = "mqtt",
    params(("client_id" = String, Path, description = "Client identifier")),
    responses(
        (status = 200, description = "The session", body = SessionDetail),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
pub async fn session(
    State(s): State<AdminState>,
    ApiPath(client_id): ApiPath<String>,
) -> ApiResult<SessionDetail> {
    Ok(Json(mqtt(&s)?.session(&client_id)?))
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
pub async fn discard_session(
    State(s): State<AdminState>,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    mqtt(&s)?.discard_session(&client_id)?;
    s.audit("mqtt.session.discard", &client_id).await;
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
pub async fn subscriptions(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<SubscriptionQuery>,
) -> ApiResult<SubscriptionPage> {
    Ok(Json(mqtt(&s)?.subscriptions(&q)?))
}

/// Retained messages whose topic matches a filter, paged.
#[utoipa::path(get, path = "/api/v1/mqtt/retained", tag = "mqtt", params(RetainedQuery),
    responses(
        (status = 200, description = "A page of retained messages", body = RetainedPage),
        (status = 400, description = "Bad filter, cursor or limit", body = ErrorBody),
        (status = 404, description = "MQTT is not enabled", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
pub async fn retained(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<RetainedQuery>,
) -> ApiResult<RetainedPage> {
    Ok(Json(mqtt(&s)?.retained(&q)?))
}

/// The retained message of a topic, with its payload.
#[utoipa::path(get, path = "/api/v1/mqtt/retained/{topic}", tag = "mqtt",
    params(("topic" = String, Path, description = "Topic name, percent-encoded (`/` as `%2F`)")),
    responses(
        (status = 200, description = "The retained message", body = RetainedDetail),
        (status = 404, description = "No retained message on that topic", body = ErrorBody),
        (status = 503, description = "MQTT is still starting", body = ErrorBody)))]
pub async fn retained_message(
    State(s): State<AdminState>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<RetainedDetail> {
    Ok(Json(mqtt(&s)?.retained_message(&topic)?))
}

/// Deletes a topic's retained message, without publishing anything.
#[utoipa::path(delete, path = "/api/v1/mqtt/retained/{topic}", tag = "mqtt",
    params(("topic" = String, Path, description = "Topic name, percent-encoded (`/` as `%2F`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No retained message on that topic", body = ErrorBody),
        (status = 503, description = "MQTT is still starting or the store failed", body = ErrorBody)))]
pub async fn delete_retained(
    State(s): State<AdminState>,
    ApiPath(topic): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    mqtt(&s)?.delete_retained(&topic)?;
    s.audit("mqtt.retained.delete", &topic).await;
    Ok(StatusCode::NO_CONTENT)
}
