//! `/api/v1/log/...`: the log level, and overrides that raise it for one client id or one
//! topic, all without restarting.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath};
use super::{AdminState, ApiError, ApiResult, ErrorBody};
use crate::serve::log_filter::{Override, Selector, parse_level};

/// The log filter in effect.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogState {
    /// Base directives (`info`, `warn,strata_journal=debug`, ...).
    pub level: String,
    /// Overrides in effect, oldest first.
    pub overrides: Vec<LogOverride>,
}

/// An override: events of one client id or one topic logged up to `level`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogOverride {
    /// Its id, for `DELETE /api/v1/log/overrides/{id}`.
    pub id: u64,
    /// The client id it selects (MQTT or Kafka), if it selects one.
    pub client_id: Option<String>,
    /// The topic it selects (MQTT topic or Kafka topic), if it selects one.
    pub topic: Option<String>,
    /// Most verbose level logged for them.
    pub level: String,
    /// Seconds until it lapses, if it does.
    pub expires_in_secs: Option<u64>,
}

/// Body of `PUT /api/v1/log/level`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLevel {
    /// Directives as `[log] level` takes them: `info`, `warn,strata_journal=debug`, ...
    pub level: String,
}

/// Body of `POST /api/v1/log/overrides`: exactly one of `client_id` and `topic`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOverride {
    /// Select the events of this client id.
    pub client_id: Option<String>,
    /// Select the events about this topic.
    pub topic: Option<String>,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// Lapse after this many seconds (default: never).
    #[schema(minimum = 1, maximum = 604800)]
    pub ttl_secs: Option<u64>,
}

fn view(o: &Override) -> LogOverride {
    let (client_id, topic) = match &o.selector {
        Selector::ClientId(c) => (Some(c.clone()), None),
        Selector::Topic(t) => (None, Some(t.clone())),
    };
    LogOverride {
        id: o.id,
        client_id,
        topic,
        level: o.level.to_string().to_lowercase(),
        expires_in_secs: o
            .expires_at
            .map(|t| t.saturating_duration_since(Instant::now()).as_secs()),
    }
}

fn current(s: &AdminState) -> LogState {
    LogState {
        level: s.log.level(),
        overrides: s.log.overrides().iter().map(view).collect(),
    }
}

/// The base log level and the overrides in effect.
#[utoipa::path(get, path = "/api/v1/log", tag = "log",
    responses((status = 200, description = "The log filter", body = LogState)))]
pub async fn state(State(s): State<AdminState>) -> Json<LogState> {
    Json(current(&s))
}

/// Replaces the base log level.
#[utoipa::path(put, path = "/api/v1/log/level", tag = "log", request_body = SetLevel,
    responses(
        (status = 200, description = "The new log filter", body = LogState),
        (status = 400, description = "Not a valid level", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody)))]
pub async fn set_level(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<SetLevel>,
) -> ApiResult<LogState> {
    if body.level.trim().is_empty() {
        return Err(ApiError::bad_request("level must not be empty"));
    }
    s.log
        .set_level(&body.level)
        .map_err(ApiError::bad_request)?;
    tracing::info!(level = %body.level, "log level changed by the admin API");
    Ok(Json(current(&s)))
}

/// Raises the level for the events of one client id or one topic.
#[utoipa::path(post, path = "/api/v1/log/overrides", tag = "log", request_body = NewOverride,
    responses(
        (status = 201, description = "The override", body = LogOverride),
        (status = 400, description = "Bad selector, level or ttl", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody)))]
pub async fn add_override(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<NewOverride>,
) -> Result<(StatusCode, Json<LogOverride>), ApiError> {
    let selector = match (body.client_id, body.topic) {
        (Some(c), None) => Selector::ClientId(c),
        (None, Some(t)) => Selector::Topic(t),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of client_id and topic",
            ));
        }
    };
    let level = parse_level(&body.level).map_err(ApiError::bad_request)?;
    let ttl = match body.ttl_secs {
        Some(0) => return Err(ApiError::bad_request("ttl_secs must be at least 1")),
        Some(t) if t > 604_800 => {
            return Err(ApiError::bad_request("ttl_secs must be at most 604800"));
        }
        t => t.map(Duration::from_secs),
    };
    let o = s.log.add_override(selector, level, ttl);
    tracing::info!(id = o.id, "log override added by the admin API");
    Ok((StatusCode::CREATED, Json(view(&o))))
}

/// Removes an override.
#[utoipa::path(delete, path = "/api/v1/log/overrides/{id}", tag = "log",
    params(("id" = u64, Path, description = "Override id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not an override id", body = ErrorBody),
        (status = 404, description = "No such override", body = ErrorBody)))]
pub async fn remove_override(
    State(s): State<AdminState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<StatusCode, ApiError> {
    if s.log.remove_override(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no log override {id}")))
    }
}
