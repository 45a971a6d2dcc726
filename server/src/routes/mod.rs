//! HTTP routes: the public JSON API (`/api/v1`, docs/design.md), the worker protocol
//! (`/api/v1/worker`), and event streams. Handlers are thin: they parse, call the service
//! or the queue, and answer; every refusal is JSON with a message (and one per field).

mod accounts;
mod api;
mod events;
pub mod ops;
mod weights;
mod worker;

pub use accounts::Caller;
pub use weights::weights_dir;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, FromRequestParts, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use leptos::prelude::LeptosOptions;
use protocol::{ApiError, Failure};
use tower_http::timeout::TimeoutLayer;

use crate::auth::Auth;
use crate::queue::Queue;
use crate::service::Service;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub service: Arc<Service>,
    pub queue: Arc<Queue>,
    pub auth: Arc<Auth>,
    pub settings: Arc<Settings>,
}

/// The settings routes need beyond the services.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `FORGETLAB_DATA_DIR`: uploaded weights go to its `datasets/weights/`.
    pub data_dir: std::path::PathBuf,
    /// `FORGETLAB_MAX_UPLOAD_MB`, in bytes.
    pub max_upload_bytes: u64,
    /// `FORGETLAB_WORKER_BODY_SECONDS`: how long a worker may take to send a body.
    pub worker_body_timeout: std::time::Duration,
}

/// A [`Failure`] as an HTTP answer.
pub struct Refusal(pub Failure);

impl From<Failure> for Refusal {
    fn from(failure: Failure) -> Self {
        Self(failure)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.body)).into_response()
    }
}

impl From<JsonRejection> for Refusal {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status().as_u16();
        Self(Failure { status, body: ApiError { message: format!("the request body was refused: {}", rejection.body_text()), errors: Default::default() } })
    }
}

impl From<QueryRejection> for Refusal {
    fn from(rejection: QueryRejection) -> Self {
        Self(Failure::bad_request(format!("the query string was refused: {}", rejection.body_text())))
    }
}

impl From<PathRejection> for Refusal {
    fn from(rejection: PathRejection) -> Self {
        Self(Failure::bad_request(format!("the path was refused: {}", rejection.body_text())))
    }
}

/// `axum::extract::Path`, with refusals in the API's JSON error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Refusal))]
pub struct PathParams<T>(pub T);

/// `axum::Json`, with refusals in the API's JSON error shape, that takes only a JSON object:
/// serde would also read a struct from an array of its fields in order (schemathesis found
/// `PATCH /users/{name}` taking `[null, null]`).
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Refusal;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        // The body within the route's limit (413 past it), then axum's own reading of it:
        // 415 without a JSON content type, 400 for broken JSON, 422 for the wrong shape.
        let bytes = axum::body::Bytes::from_request(axum::extract::Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|rejection| Refusal(Failure::new(rejection.status().as_u16(), format!("the request body was refused: {}", rejection.body_text()))))?;
        let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Ok(Self(value)),
            _ => Err(Refusal(Failure::new(422, "the request body was refused: it must be a JSON object, {\"field\": value, ...}"))),
        }
    }
}

/// `axum::extract::Query`, with refusals in the API's JSON error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Refusal))]
pub struct QueryParams<T>(pub T);

pub type ApiResult<T> = Result<T, Refusal>;

/// Parses a numeric id from a path segment.
pub fn parse_id(what: &str, text: &str) -> Result<i64, Refusal> {
    text.parse().map_err(|_| Refusal(Failure::bad_request(format!("{what} id must be a whole number, got {text:?}"))))
}

/// The largest body the public API takes (a launch, a study, a token request). Workers'
/// uploads have their own, larger limit.
pub const API_BODY_LIMIT: usize = 1024 * 1024;
/// Largest worker upload: an epoch of 10^5 samples is about 6 MB of JSON, a manifest of
/// 10^6 samples about 80 MB. Only the epoch and manifest routes take this much
/// ([`worker_body_limit`]).
pub const WORKER_BODY_LIMIT: usize = 256 * 1024 * 1024;
/// What each worker route's body may hold: a lease or heartbeat is a few hundred bytes, a
/// log batch or a finish (with class-mean embeddings) a few MB, an epoch or manifest the most.
fn worker_body_limit(path: &str) -> usize {
    let last = path.rsplit('/').nth(1).unwrap_or_default();
    if path.ends_with("/samples") || last == "epochs" {
        WORKER_BODY_LIMIT
    } else if path.ends_with("/log") || path.ends_with("/finish") {
        16 * 1024 * 1024
    } else {
        64 * 1024
    }
}

/// In front of the worker routes: the bearer token is checked before any body is read, then
/// the body is read within the route's limit and [`Settings::worker_body_timeout`] (a slow or
/// stalled sender is answered 408 and holds nothing after; issue 19, item 2).
async fn worker_gate(State(state): State<AppState>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path().to_owned();
    let job = path.split("/worker/jobs/").nth(1).and_then(|rest| rest.split('/').next()).map(str::to_owned);
    let token = match worker::bearer(request.headers()) {
        Ok(token) => token.to_owned(),
        Err(refusal) => return refusal.into_response(),
    };
    let job_id = match job.as_deref().map(|id| parse_id("job", id)).transpose() {
        Ok(job_id) => job_id,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(failure) = state.queue.admits(job_id, &token).await {
        return Refusal(failure).into_response();
    }
    let limit = worker_body_limit(&path);
    // Records and manifests fill the database: refused while the volume is nearly full (the
    // worker fails the job with this message; retrying it resumes from its checkpoint).
    if request.method() == axum::http::Method::PUT {
        if let Err(failure) = state.service.disk.admit("this upload of records", content_length(request.headers())) {
            return Refusal(failure).into_response();
        }
    }
    let (parts, body) = request.into_parts();
    let timeout = state.settings.worker_body_timeout;
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return Refusal(Failure::new(413, format!("the body is larger than this route takes ({} KiB) or broke off", limit / 1024))).into_response();
        }
        Err(_) => {
            return Refusal(Failure::new(408, format!("the body did not arrive within {} s (FORGETLAB_WORKER_BODY_SECONDS)", timeout.as_secs())))
                .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// A request's declared body size (0 when it declares none).
pub(crate) fn content_length(headers: &axum::http::HeaderMap) -> u64 {
    headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn method_not_allowed() -> Refusal {
    Refusal(Failure::new(405, "this route does not take that method; see /api/v1/openapi.json for the routes"))
}

/// A public API request whose answer takes longer is answered 408 (event streams are not
/// affected: their answer starts at once). Workers' bodies have their own deadline
/// ([`Settings::worker_body_timeout`]); weights uploads are given up when idle for a minute.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

pub fn api_router(state: &AppState) -> Router<AppState> {
    public_api()
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .merge(worker_api().route_layer(axum::middleware::from_fn_with_state(state.clone(), worker_gate)).layer(DefaultBodyLimit::max(WORKER_BODY_LIMIT)))
        // Streamed to disk with its own bound (FORGETLAB_MAX_UPLOAD_MB).
        .route("/weights/{file}", put(weights::upload))
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .fallback(|| async { Refusal(Failure::not_found("no such API route; see /api/v1/openapi.json for the routes")) })
}

fn public_api() -> Router<AppState> {
    Router::new()
        .route("/health", get(api::health))
        .route("/openapi.json", get(api::openapi))
        .route("/me", get(accounts::me))
        .route("/me/sessions/revoke", post(accounts::sign_out_everywhere))
        .route("/tokens", get(accounts::list_tokens).post(accounts::create_token))
        .route("/tokens/{id}", delete(accounts::revoke_token))
        .route("/users", get(accounts::list_users).post(accounts::create_user))
        .route("/users/{name}", patch(accounts::update_user))
        .route("/users/{name}/password", post(accounts::reset_password))
        .route("/datasets", get(api::list_datasets).post(api::register_dataset))
        .route("/datasets/{name}/{split}/{file}", get(api::dataset_image))
        .route("/runs", get(api::list_runs).post(api::launch_run))
        .route("/workers", get(api::list_workers))
        .route("/runs/{id}", get(api::get_run).patch(api::update_run))
        .route("/runs/{id}/samples", get(api::run_samples))
        .route("/runs/{id}/classes", get(api::run_classes))
        .route("/runs/{id}/log", get(api::run_log))
        .route("/runs/{id}/datamap", get(api::data_map))
        .route("/runs/{id}/shown", get(api::run_shown))
        .route("/runs/{id}/samples/{key}", get(api::sample_history))
        .route("/runs/{id}/{file}", get(api::run_export))
        .route("/studies", get(api::list_studies).post(api::launch_study))
        .route("/studies/{id}", get(api::get_study))
        .route("/studies/{id}/report.html", get(api::study_report_file))
        .route("/studies/{id}/cancel", post(api::cancel_study))
        .route("/studies/{id}/seeds", post(api::extend_study))
        .route("/compare", get(api::compare))
        .route("/compare/{file}", get(api::compare_export))
        .route("/weights", get(weights::list))
        .route("/runs/{id}/cancel", post(api::cancel_run))
        .route("/runs/{id}/retry", post(api::retry_run))
        .route("/runs/{id}/events", get(events::run_events))
        .route("/events", get(events::all_events))
}

fn worker_api() -> Router<AppState> {
    Router::new()
        .route("/worker/lease", post(worker::lease))
        .route("/worker/jobs/{job}/heartbeat", post(worker::heartbeat))
        .route("/worker/jobs/{job}/samples", put(worker::manifest))
        .route("/worker/jobs/{job}/log", post(worker::log))
        .route("/worker/jobs/{job}/epochs/{epoch}", put(worker::epoch))
        .route("/worker/jobs/{job}/finish", post(worker::finish))
}
