//! `/api/v1/kafka/...`, the Kafka frontend's part of the node's admin API: consumer
//! groups with their members, assignments and lag.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use strata_frontend::admin::extract::ApiPath;
use strata_frontend::admin::http::{AdminApi, ApiResult, ErrorBody};
use utoipa::OpenApi;

use crate::admin::{GroupDetail, GroupView, KafkaAdmin};

#[derive(OpenApi)]
#[openapi(
    paths(groups, group),
    tags((name = "kafka", description = "The Kafka frontend"))
)]
struct Doc;

/// The routes under `/api/v1/kafka` and their document.
pub(crate) fn api(admin: KafkaAdmin) -> AdminApi {
    let router = Router::new()
        .route("/groups", get(groups))
        .route("/groups/{group_id}", get(group))
        .with_state(admin);
    AdminApi {
        router,
        openapi: Doc::openapi(),
    }
}

/// Every consumer group with members or committed offsets, by group id.
#[utoipa::path(get, path = "/api/v1/kafka/groups", tag = "kafka",
    responses(
        (status = 200, description = "The groups", body = Vec<GroupView>),
        (status = 404, description = "Kafka is not enabled", body = ErrorBody),
        (status = 503, description = "Kafka is still starting", body = ErrorBody)))]
async fn groups(State(s): State<KafkaAdmin>) -> ApiResult<Vec<GroupView>> {
    Ok(Json(s.groups()?))
}

/// One group: members with their assigned partitions, committed offsets and lag.
#[utoipa::path(get, path = "/api/v1/kafka/groups/{group_id}", tag = "kafka",
    params(("group_id" = String, Path, description = "Group id")),
    responses(
        (status = 200, description = "The group", body = GroupDetail),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 503, description = "Kafka is still starting", body = ErrorBody)))]
async fn group(
    State(s): State<KafkaAdmin>,
    ApiPath(group_id): ApiPath<String>,
) -> ApiResult<GroupDetail> {
    Ok(Json(s.group(&group_id)?))
}
