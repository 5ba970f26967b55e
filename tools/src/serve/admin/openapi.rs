//! The OpenAPI 3.1 document of the admin API, generated from the handlers' annotations and
//! served at `/api/v1/openapi.json`.

use std::sync::OnceLock;

use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata admin API",
        description = "Node status and configuration, streams and partitions, MQTT clients, \
            sessions, subscriptions and retained messages, Kafka consumer groups, and the log \
            level. Errors are JSON objects with a `code` and a `message`. When the node sets \
            `[admin] token`, every `/api/v1` request needs `Authorization: Bearer <token>` \
            and gets 401 `unauthorized` without it."
    ),
    paths(
        super::health,
        super::metrics_text,
        super::node::status,
        super::node::config,
        super::node::streams,
        super::node::stream,
        super::node::partition,
        super::mqtt::clients,
        super::mqtt::client,
        super::mqtt::disconnect,
        super::mqtt::sessions,
        super::mqtt::session,
        super::mqtt::discard_session,
        super::mqtt::subscriptions,
        super::mqtt::retained,
        super::mqtt::retained_message,
        super::mqtt::delete_retained,
        super::auth::users,
        super::auth::put_user,
        super::auth::delete_user,
        super::auth::acl,
        super::auth::set_acl,
        super::auth::bans,
        super::auth::add_ban,
        super::auth::remove_ban,
        super::kafka::groups,
        super::kafka::group,
        super::log::state,
        super::log::set_level,
        super::log::add_override,
        super::log::remove_override,
        document,
    ),
    tags(
        (name = "node", description = "The node"),
        (name = "streams", description = "Journal streams and partitions"),
        (name = "mqtt", description = "The MQTT frontend"),
        (name = "kafka", description = "The Kafka frontend"),
        (name = "log", description = "Logging at runtime"),
        (name = "auth", description = "Users, ACL rules and bans"),
    )
)]
struct AdminApi;

/// The document, built once.
pub fn spec() -> &'static utoipa::openapi::OpenApi {
    static SPEC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    SPEC.get_or_init(|| {
        let mut spec = AdminApi::openapi();
        spec.info.version = super::VERSION.to_owned();
        spec
    })
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "node",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn document() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(spec())
}
