//! The OpenAPI 3.1 document of the admin API, generated from the handlers' annotations
//! (the node's and those each frontend contributes) and served at `/api/v1/openapi.json`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata admin API",
        description = "Node status and configuration, streams and partitions, users and \
            ACLs, the log level, and what each frontend adds under `/api/v1/<frontend>` (MQTT \
            clients, sessions, subscriptions and retained messages; Kafka consumer groups). \
            Errors are JSON objects with a `code` and a `message`. When the node sets \
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
        super::auth::users,
        super::auth::put_user,
        super::auth::delete_user,
        super::auth::acl,
        super::auth::set_acl,
        super::auth::bans,
        super::auth::add_ban,
        super::auth::remove_ban,
        super::auth::tokens,
        super::auth::create_token,
        super::auth::revoke_token,
        super::cluster::nodes,
        super::cluster::add_node,
        super::cluster::remove_node,
        super::cluster::leaders,
        super::cluster::replicas,
        super::cluster::rebalance,
        super::cluster::move_replicas,
        super::log::state,
        super::log::set_level,
        super::log::add_override,
        super::log::remove_override,
        document,
    ),
    tags(
        (name = "node", description = "The node"),
        (name = "streams", description = "Journal streams and partitions"),
        (name = "log", description = "Logging at runtime"),
        (name = "auth", description = "Users, ACL rules and bans"),
        (name = "cluster", description = "The cluster's nodes and its meta service"),
    )
)]
struct AdminApi;

/// The document: the node's operations and those of every frontend.
pub fn spec(
    frontends: impl IntoIterator<Item = utoipa::openapi::OpenApi>,
) -> utoipa::openapi::OpenApi {
    let mut spec = AdminApi::openapi();
    for doc in frontends {
        spec.merge(doc);
    }
    spec.info.version = super::VERSION.to_owned();
    with_token_answers(&mut spec);
    spec
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "node",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn document(State(doc): State<Bytes>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc)
}

/// The document as served: serialized once.
pub fn serialized(spec: &utoipa::openapi::OpenApi) -> Bytes {
    match serde_json::to_vec(spec) {
        Ok(json) => Bytes::from(json),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the OpenAPI document");
            Bytes::from_static(b"{}")
        }
    }
}

/// Every `/api/v1` operation may answer 401 (a token is needed and none or a wrong one was
/// given) and 403 (a viewer's token for a change): added to each, once.
fn with_token_answers(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let answer = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in spec.paths.paths.iter_mut() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            let responses = &mut op.responses.responses;
            responses
                .entry("401".into())
                .or_insert_with(|| answer("A token is needed (`Authorization: Bearer <token>`)"));
            responses
                .entry("403".into())
                .or_insert_with(|| answer("The token is a viewer's and this is not a read"));
        }
    }
}
