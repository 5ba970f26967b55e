//! `/api/v1/kafka/...`: consumer groups with their members, assignments and lag.

use axum::Json;
use axum::extract::State;
use strata_kafka::KafkaAdmin;
use strata_kafka::admin::{GroupDetail, GroupView};

use super::extract::ApiPath;
use super::{AdminState, ApiError, ApiResult, ErrorBody};

fn kafka(s: &AdminState) -> Result<&KafkaAdmin, ApiError> {
    s.kafka.as_ref().ok_or_else(|| ApiError::disabled("Kafka"))
}

/// Every consumer group with members or committed offsets, by group id.
#[utoipa::path(get, path = "/api/v1/kafka/groups", tag = "kafka",
    responses(
        (status = 200, description = "The groups", body = Vec<GroupView>),
        (status = 404, description = "Kafka is not enabled", body = ErrorBody),
        (status = 503, description = "Kafka is still starting", body = ErrorBody)))]
pub async fn groups(State(s): State<AdminState>) -> ApiResult<Vec<GroupView>> {
    Ok(Json(kafka(&s)?.groups()?))
}

/// One group: members with their assigned partitions, committed offsets and lag.
#[utoipa::path(get, path = "/api/v1/kafka/groups/{group_id}", tag = "kafka",
    params(("group_id" = String, Path, description = "Group id")),
    responses(
        (status = 200, description = "The group", body = GroupDetail),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 503, description = "Kafka is still starting", body = ErrorBody)))]
pub async fn group(
    State(s): State<AdminState>,
    ApiPath(group_id): ApiPath<String>,
) -> ApiResult<GroupDetail> {
    Ok(Json(kafka(&s)?.group(&group_id)?))
}
