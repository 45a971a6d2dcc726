//! The account API: `GET /api/v1/me`, `POST /api/v1/me/sessions/revoke`, `/api/v1/tokens`
//! (a member's own API tokens) and `/api/v1/users` (administrators). Who may reach which is
//! decided by the middleware (`auth::http`); the rules on accounts are `auth::Auth`'s.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::{StatusCode, request::Parts};
use protocol::Failure;
use protocol::auth::{Account, Identity, NewToken, Role, TokenInfo};
use serde::Deserialize;

use super::{ApiResult, AppState, JsonBody, PathParams as Path, Refusal, parse_id};

/// The signed-in account of a request (the middleware put it there).
pub struct Caller(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Identity>().cloned().map(Caller).ok_or_else(|| Refusal(Failure::unauthorized("sign in first")))
    }
}

/// `GET /api/v1/me`: who the request is signed in as.
pub async fn me(Caller(who): Caller) -> Json<Identity> {
    Json(Identity { csrf: None, ..who })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    name: String,
}

/// `POST /api/v1/tokens {"name": "..."}`: a new personal token, its secret shown this once.
pub async fn create_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<TokenRequest>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    Ok((StatusCode::CREATED, Json(state.auth.create_token(&who, &body.name).await?)))
}

pub async fn list_tokens(State(state): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Vec<TokenInfo>>> {
    Ok(Json(state.auth.tokens(&who).await?))
}

pub async fn revoke_token(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.auth.revoke_token(&who, parse_id("token", &id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_users(State(state): State<AppState>) -> ApiResult<Json<Vec<Account>>> {
    Ok(Json(state.auth.accounts().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    password: String,
    role: Role,
}

/// `POST /api/v1/users` (administrators): a new account.
pub async fn create_user(State(state): State<AppState>, JsonBody(body): JsonBody<NewUser>) -> ApiResult<(StatusCode, Json<Account>)> {
    Ok((StatusCode::CREATED, Json(state.auth.create_user(&body.name, &body.password, body.role).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    role: Option<Role>,
    disabled: Option<bool>,
}

/// `PATCH /api/v1/users/{name}` (administrators): role and disabled flag, of another account.
pub async fn update_user(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<UserChange>,
) -> ApiResult<Json<Account>> {
    Ok(Json(state.auth.update_user(Some(&who), &name, body.role, body.disabled).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    password: String,
    #[serde(default)]
    revoke_tokens: bool,
}

/// `POST /api/v1/users/{name}/password` (administrators): a new password for another account;
/// its sessions end, and its API tokens are revoked when asked.
pub async fn reset_password(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PasswordReset>,
) -> ApiResult<Json<serde_json::Value>> {
    let done = state.auth.reset_password(Some(&who), &name, &body.password, body.revoke_tokens).await?;
    Ok(Json(serde_json::json!({ "sessions_ended": done.sessions_ended, "tokens_revoked": done.tokens_revoked })))
}

/// `POST /api/v1/me/sessions/revoke`: signs the account out of every browser.
pub async fn sign_out_everywhere(State(state): State<AppState>, Caller(who): Caller) -> ApiResult<Json<serde_json::Value>> {
    let ended = state.auth.close_all_sessions(&who).await?;
    Ok(Json(serde_json::json!({ "sessions_ended": ended })))
}
