//! `/api/v1/log/...`: the log level, and overrides that raise it for one client id or one
//! topic, all without restarting.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AdminState, ApiError, ApiResult, ErrorBody};
use strata_frontend::admin::extract::{ApiJson, ApiPath};
use tracing::level_filters::LevelFilter;

use crate::serve::log_filter::{Override, Selector};

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

/// One level word or `target=level`, comma-separated, no spaces: what the runtime level
/// takes (the `[log] level` key also takes `EnvFilter`'s span directives).
const DIRECTIVES_PATTERN: &str = r"^(off|error|warn|info|debug|trace|[A-Za-z_][A-Za-z0-9_:]*=(off|error|warn|info|debug|trace))(,(off|error|warn|info|debug|trace|[A-Za-z_][A-Za-z0-9_:]*=(off|error|warn|info|debug|trace)))*$";

/// Body of `PUT /api/v1/log/level`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLevel {
    /// Directives: `info`, `warn,strata_journal=debug`, ...
    #[schema(
        pattern = r"^(off|error|warn|info|debug|trace|[A-Za-z_][A-Za-z0-9_:]*=(off|error|warn|info|debug|trace))(,(off|error|warn|info|debug|trace|[A-Za-z_][A-Za-z0-9_:]*=(off|error|warn|info|debug|trace)))*$"
    )]
    pub level: String,
}

/// A level word.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<Level> for LevelFilter {
    fn from(l: Level) -> Self {
        match l {
            Level::Error => LevelFilter::ERROR,
            Level::Warn => LevelFilter::WARN,
            Level::Info => LevelFilter::INFO,
            Level::Debug => LevelFilter::DEBUG,
            Level::Trace => LevelFilter::TRACE,
        }
    }
}

/// Body of `POST /api/v1/log/overrides`: a `client_id` or a `topic`, and a level.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum NewOverride {
    /// The events of one client id.
    Client(ClientOverride),
    /// The events about one topic.
    Topic(TopicOverride),
}

/// Log the events of one client id (MQTT or Kafka) up to `level`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientOverride {
    /// Select the events of this client id.
    client_id: String,
    /// Most verbose level logged for them.
    level: Level,
    /// Lapse after this many seconds (default: never).
    #[schema(minimum = 1, maximum = 604800)]
    #[serde(default, deserialize_with = "strata_frontend::admin::whole_number")]
    ttl_secs: Option<u64>,
}

/// Log the events about one topic (MQTT topic or Kafka topic) up to `level`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicOverride {
    /// Select the events about this topic.
    topic: String,
    /// Most verbose level logged for them.
    level: Level,
    /// Lapse after this many seconds (default: never).
    #[schema(minimum = 1, maximum = 604800)]
    #[serde(default, deserialize_with = "strata_frontend::admin::whole_number")]
    ttl_secs: Option<u64>,
}

/// Whether `s` matches [`DIRECTIVES_PATTERN`].
fn runtime_directives(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    s.split(',').all(|d| match d.split_once('=') {
        None => LEVELS.contains(&d),
        Some((target, level)) => {
            let mut chars = target.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && LEVELS.contains(&level)
        }
    })
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
    if !runtime_directives(&body.level) {
        return Err(ApiError::bad_request(format!(
            "level `{}` does not match {DIRECTIVES_PATTERN}",
            body.level
        )));
    }
    s.log
        .set_level(&body.level)
        .map_err(ApiError::bad_request)?;
    tracing::info!(level = %body.level, "log level changed by the admin API");
    s.audit("log.level.set", &body.level).await;
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
    let (selector, level, ttl) = match body {
        NewOverride::Client(c) => (Selector::ClientId(c.client_id), c.level, c.ttl_secs),
        NewOverride::Topic(t) => (Selector::Topic(t.topic), t.level, t.ttl_secs),
    };
    let ttl = match ttl {
        Some(0) => return Err(ApiError::bad_request("ttl_secs must be at least 1")),
        Some(t) if t > 604_800 => {
            return Err(ApiError::bad_request("ttl_secs must be at most 604800"));
        }
        t => t.map(Duration::from_secs),
    };
    let o = s.log.add_override(selector, level.into(), ttl);
    tracing::info!(id = o.id, "log override added by the admin API");
    s.audit("log.override.add", &o.id.to_string()).await;
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
        s.audit("log.override.remove", &id.to_string()).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no log override {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_directives_follow_the_documented_pattern() {
        for ok in ["info", "warn,strata_journal=debug", "a::b=trace,off"] {
            assert!(runtime_directives(ok), "{ok}");
        }
        for bad in [
            "",
            "0",
            "inof",
            "info, debug",
            "=debug",
            "1a=info",
            "a=loud",
            "info,",
        ] {
            assert!(!runtime_directives(bad), "{bad}");
        }
    }
}
