//! The server side of the worker protocol; see `protocol::worker` for the conversation.

use axum::extract::State;
// Path parameters whose refusals are JSON, like every API answer.
use super::PathParams as Path;
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::Failure;
use protocol::worker::{EpochUpload, Finish, Heartbeat, HeartbeatReply, LeaseRequest, SampleManifest};
use serde_json::json;

use super::{ApiResult, AppState, JsonBody, Refusal, parse_id};

pub(super) fn bearer(headers: &HeaderMap) -> Result<&str, Refusal> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Refusal(Failure::unauthorized("send the token as 'Authorization: Bearer <token>'")))
}

pub async fn lease(State(state): State<AppState>, headers: HeaderMap, JsonBody(request): JsonBody<LeaseRequest>) -> ApiResult<Response> {
    let device = request.device.as_deref();
    if let Some(job_id) = request.job_id {
        // One job: a worker started by Slurm for it, with its submission's token.
        let lease = state.queue.lease_job(job_id, bearer(&headers)?, &request.worker).await?;
        state.queue.workers.polled(&request.worker, device, Some((lease.job_id, lease.run_id)));
        return Ok(Json(lease).into_response());
    }
    state.queue.check_worker_token(bearer(&headers)?)?;
    let lease = state.queue.lease(&request.worker).await?;
    state.queue.workers.polled(&request.worker, device, lease.as_ref().map(|l| (l.job_id, l.run_id)));
    Ok(match lease {
        Some(lease) => Json(lease).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

pub async fn heartbeat(
    State(state): State<AppState>,
    Path(job): Path<String>,
    headers: HeaderMap,
    JsonBody(beat): JsonBody<Heartbeat>,
) -> ApiResult<Json<HeartbeatReply>> {
    Ok(Json(state.queue.heartbeat(parse_id("job", &job)?, bearer(&headers)?, &beat).await?))
}

pub async fn log(
    State(state): State<AppState>,
    Path(job): Path<String>,
    headers: HeaderMap,
    JsonBody(lines): JsonBody<protocol::worker::LogLines>,
) -> ApiResult<Json<serde_json::Value>> {
    state.queue.put_log(parse_id("job", &job)?, bearer(&headers)?, &lines).await?;
    Ok(Json(json!({ "lines": lines.lines.len() })))
}

pub async fn manifest(
    State(state): State<AppState>,
    Path(job): Path<String>,
    headers: HeaderMap,
    JsonBody(manifest): JsonBody<SampleManifest>,
) -> ApiResult<Json<serde_json::Value>> {
    state.queue.put_manifest(parse_id("job", &job)?, bearer(&headers)?, &manifest).await?;
    Ok(Json(json!({ "samples": manifest.samples.len() })))
}

/// An epoch upload in either form: the binary one the worker sends
/// (`protocol::wire::EPOCH_CONTENT_TYPE`) or JSON.
pub struct EpochBody(EpochUpload);

impl<S: Send + Sync> axum::extract::FromRequest<S> for EpochBody {
    type Rejection = Refusal;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let binary = request.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == protocol::wire::EPOCH_CONTENT_TYPE.as_bytes());
        if !binary {
            return JsonBody::from_request(request, state).await.map(|JsonBody(upload)| Self(upload));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| Refusal(Failure::new(rejection.status().as_u16(), format!("the request body was refused: {}", rejection.body_text()))))?;
        protocol::wire::decode_epoch(&bytes).map(Self).map_err(|e| Refusal(Failure::new(422, format!("the binary epoch upload was refused: {e}"))))
    }
}

pub async fn epoch(
    State(state): State<AppState>,
    Path((job, epoch)): Path<(String, String)>,
    headers: HeaderMap,
    EpochBody(upload): EpochBody,
) -> ApiResult<Json<serde_json::Value>> {
    let epoch: u32 = epoch.parse().map_err(|_| Refusal(Failure::bad_request(format!("epoch must be a whole number, got {epoch:?}"))))?;
    state.queue.put_epoch(parse_id("job", &job)?, bearer(&headers)?, epoch, &upload).await?;
    Ok(Json(json!({ "epoch": epoch, "samples": upload.columns.correct.len() })))
}

pub async fn finish(
    State(state): State<AppState>,
    Path(job): Path<String>,
    headers: HeaderMap,
    JsonBody(finish): JsonBody<Finish>,
) -> ApiResult<Json<serde_json::Value>> {
    // A succeeded run's statistics are computed in the background; the worker is answered now.
    state.queue.finish(parse_id("job", &job)?, bearer(&headers)?, &finish).await?;
    Ok(Json(json!({ "ok": true })))
}
