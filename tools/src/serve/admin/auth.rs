//! `/api/v1/auth/...`: users (passwords hashed with argon2id on arrival, never returned),
//! the ACL rules and the ban list. Changes apply at once to every frontend and are kept in
//! the node's key-value store; entries from the configuration can only be read here.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use strata_frontend::security::UserView;
use strata_frontend::security::acl::AclRule;
use strata_frontend::security::bans::{Ban, BanKind, BanRequest};
use strata_frontend::security::tokens::{Role, TokenView};
use utoipa::ToSchema;

use super::{AdminState, ApiError, ApiResult, ErrorBody};
use strata_frontend::admin::extract::{ApiJson, ApiPath};

/// Every user (names and where they are defined; never a password or hash).
#[utoipa::path(get, path = "/api/v1/auth/users", tag = "auth",
    responses((status = 200, description = "The users", body = [UserView])))]
pub async fn users(State(s): State<AdminState>) -> Json<Vec<UserView>> {
    Json(s.security.users())
}

/// A user's new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// 8 to 1024 characters; stored as an argon2id hash only.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
}

/// Creates a user or changes its password.
#[utoipa::path(put, path = "/api/v1/auth/users/{name}", tag = "auth",
    params(("name" = String, Path, description = "Username: 1 to 256 characters, no control character",
        pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")),
    request_body = SetPassword,
    responses(
        (status = 201, description = "Created"),
        (status = 204, description = "Password changed"),
        (status = 400, description = "Bad name or password", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 409, description = "Defined in the configuration", body = ErrorBody)))]
pub async fn put_user(
    State(s): State<AdminState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SetPassword>,
) -> Result<StatusCode, ApiError> {
    let created = s.security.put_user(&name, &body.password).await?;
    s.audit("auth.user.put", &name).await;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Removes a user.
#[utoipa::path(delete, path = "/api/v1/auth/users/{name}", tag = "auth",
    params(("name" = String, Path, description = "Username")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "Defined in the configuration", body = ErrorBody)))]
pub async fn delete_user(
    State(s): State<AdminState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.security.delete_user(&name)?;
    s.audit("auth.user.delete", &name).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The ACL: the configured rules, then the admin API's, first match wins.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AclView {
    /// Rules from the configuration (`[[auth.acl]]`), checked first; read-only here.
    #[serde(default)]
    pub configured: Vec<AclRule>,
    /// Rules set through this API, checked after those.
    pub rules: Vec<AclRule>,
}

/// The ACL rules.
#[utoipa::path(get, path = "/api/v1/auth/acl", tag = "auth",
    responses((status = 200, description = "The rules", body = AclView)))]
pub async fn acl(State(s): State<AdminState>) -> Json<AclView> {
    let (configured, rules) = s.security.acl_rules();
    Json(AclView { configured, rules })
}

/// The admin API's rules, replaced whole.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAcl {
    /// The new list, in order.
    #[schema(max_items = 100000)]
    pub rules: Vec<AclRule>,
}

/// Replaces the admin API's ACL rules; every connection sees them at its next check.
#[utoipa::path(put, path = "/api/v1/auth/acl", tag = "auth", request_body = SetAcl,
    responses(
        (status = 200, description = "The rules now in force", body = AclView),
        (status = 400, description = "Bad rules", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody)))]
pub async fn set_acl(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<SetAcl>,
) -> ApiResult<AclView> {
    let count = body.rules.len();
    s.security.set_acl_rules(body.rules)?;
    s.audit("auth.acl.set", &format!("{count} rules")).await;
    let (configured, rules) = s.security.acl_rules();
    Ok(Json(AclView { configured, rules }))
}

/// Bans in force.
#[utoipa::path(get, path = "/api/v1/auth/bans", tag = "auth",
    responses((status = 200, description = "The bans", body = [Ban])))]
pub async fn bans(State(s): State<AdminState>) -> Json<Vec<Ban>> {
    Json(s.security.bans())
}

/// Adds or replaces a ban; connections of what it names are refused from now on.
#[utoipa::path(post, path = "/api/v1/auth/bans", tag = "auth", request_body = BanRequest,
    responses(
        (status = 204, description = "In force"),
        (status = 400, description = "Bad ban", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody)))]
pub async fn add_ban(
    State(s): State<AdminState>,
    ApiJson(ban): ApiJson<BanRequest>,
) -> Result<StatusCode, ApiError> {
    let ban = Ban::try_from(ban).map_err(ApiError::bad_request)?;
    let what = format!("{:?} {}", ban.kind, ban.value);
    s.security.add_ban(ban)?;
    s.audit("auth.ban.add", &what).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a ban.
#[utoipa::path(delete, path = "/api/v1/auth/bans/{kind}/{value}", tag = "auth",
    params(
        ("kind" = BanKind, Path, description = "client_id, username or ip"),
        ("value" = String, Path, description = "What is banned")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 400, description = "Not a kind of ban", body = ErrorBody),
        (status = 404, description = "No such ban", body = ErrorBody)))]
pub async fn remove_ban(
    State(s): State<AdminState>,
    ApiPath((kind, value)): ApiPath<(BanKind, String)>,
) -> Result<StatusCode, ApiError> {
    s.security.remove_ban(kind, &value)?;
    s.audit("auth.ban.remove", &value).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Admin API tokens (names and roles; never a secret).
#[utoipa::path(get, path = "/api/v1/auth/tokens", tag = "auth",
    responses((status = 200, description = "The tokens", body = [TokenView])))]
pub async fn tokens(State(s): State<AdminState>) -> Json<Vec<TokenView>> {
    Json(s.security.tokens())
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Its name: 1 to 128 characters, no control character.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub name: String,
    /// `viewer` (reads only) or `administrator`.
    pub role: Role,
}

/// A created token: its secret is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The secret to send as `Authorization: Bearer <token>`; kept only as a hash.
    pub token: String,
}

/// Creates (or replaces, by name) a token. Once any token exists, every `/api/v1` request
/// needs one.
#[utoipa::path(post, path = "/api/v1/auth/tokens", tag = "auth", request_body = NewToken,
    responses(
        (status = 201, description = "Created; the secret is in the answer only", body = CreatedToken),
        (status = 400, description = "Bad name or role", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody)))]
pub async fn create_token(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let token = s.security.create_token(&body.name, body.role)?;
    s.audit("auth.token.create", &body.name).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: body.name,
            role: body.role,
            token,
        }),
    ))
}

/// Revokes a token.
#[utoipa::path(delete, path = "/api/v1/auth/tokens/{name}", tag = "auth",
    params(("name" = String, Path, description = "Token name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = ErrorBody)))]
pub async fn revoke_token(
    State(s): State<AdminState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.security.revoke_token(&name)?;
    s.audit("auth.token.revoke", &name).await;
    Ok(StatusCode::NO_CONTENT)
}
