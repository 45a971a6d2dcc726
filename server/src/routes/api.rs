//! The public JSON API for pages and scripts.

use std::path::PathBuf;

use axum::extract::State;
// Path parameters whose refusals are JSON, like every API answer.
use super::PathParams as Path;
use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use protocol::{
    CompareQuery, Comparison, DatasetInfo, Failure, Launched, RunDetail, RunQuery, RunRequest, RunStatus, RunSummary, SampleHistory, SamplePage, SampleQuery,
};

use crate::analysis;
use serde::{Deserialize, Serialize};

use super::Caller;

use super::{ApiResult, AppState, JsonBody, QueryParams, Refusal, parse_id};

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The OpenAPI 3.1 document of this API, `server/openapi.json`: every route of
/// [`super::api_router`] with its parameters, bodies and answers (`tests/openapi.rs` fails when
/// the router and the document disagree). Public, like `/health` (see `auth::http::is_public`):
/// it describes the routes and reveals no data, and a client reads it before it has a token.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn list_datasets(State(state): State<AppState>) -> ApiResult<Json<Vec<DatasetInfo>>> {
    Ok(Json(state.service.datasets().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDataset {
    name: String,
    path: PathBuf,
    #[serde(default = "idx")]
    format: String,
    #[serde(default)]
    options: protocol::DatasetOptions,
}

fn idx() -> String {
    "idx".into()
}

pub async fn register_dataset(
    State(state): State<AppState>,
    Caller(_who): Caller,
    JsonBody(body): JsonBody<RegisterDataset>,
) -> ApiResult<(StatusCode, Json<DatasetInfo>)> {
    let format = datasets::Format::parse(&body.format).map_err(|e| Failure::bad_request(e.to_string()))?;
    let info = state.service.registry.register(&body.name, format, &body.path, body.options).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /datasets/{name}/{train|val}/{index}.png`: one image, for thumbnails.
pub async fn dataset_image(State(state): State<AppState>, Path((name, split, file)): Path<(String, String, String)>) -> ApiResult<impl IntoResponse> {
    let train = match split.as_str() {
        "train" => true,
        "val" => false,
        other => return Err(Failure::not_found(format!("split {other:?} does not exist; use train or val")).into()),
    };
    let index = file
        .strip_suffix(".png")
        .and_then(|i| i.parse::<usize>().ok())
        .ok_or_else(|| Refusal(Failure::not_found(format!("{file:?} is not an image name like 123.png"))))?;
    let png = state.service.registry.image_png(&name, train, index).await?;
    // Behind a sign-in: a shared cache must not keep it (issue 19, item 13).
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=3600")], png))
}

pub async fn launch_run(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(request): JsonBody<RunRequest>,
) -> ApiResult<(StatusCode, Json<Launched>)> {
    Ok((StatusCode::CREATED, Json(state.service.launch(request, &who).await?)))
}

/// The runs as a list (the API's contract); how many match the filters in all is in the
/// `X-Total-Count` header.
pub async fn list_runs(State(state): State<AppState>, QueryParams(query): QueryParams<RunQuery>) -> ApiResult<impl IntoResponse> {
    let list = state.service.runs(query).await?;
    Ok(([("x-total-count", list.total.to_string())], Json::<Vec<RunSummary>>(list.runs)))
}

/// `GET /workers`: the workers heard from within the lease time, with their devices and jobs.
pub async fn list_workers(State(state): State<AppState>) -> Json<Vec<protocol::WorkerView>> {
    Json(state.queue.workers.online())
}

pub async fn list_studies(State(state): State<AppState>) -> ApiResult<Json<Vec<protocol::study::StudySummary>>> {
    Ok(Json(state.service.studies().await?))
}

/// `POST /studies`: the grid expanded, every run checked, then all queued (201).
pub async fn launch_study(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(request): JsonBody<protocol::study::StudyRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(state.service.launch_study(request, &who).await?)))
}

pub async fn get_study(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<protocol::study::StudyDetail>> {
    Ok(Json(state.service.study(parse_id("study", &id)?).await?))
}

/// `GET /studies/{id}/report.html`: the report as one self-contained HTML file (stylesheet
/// inlined, figures as inline SVG, no script), to keep or send; its links lead back here.
pub async fn study_report_file(State(state): State<AppState>, headers: axum::http::HeaderMap, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let id = parse_id("study", &id)?;
    let detail = state.service.study(id).await?;
    let scheme = if headers.get("x-forwarded-proto").is_some_and(|p| p == "https") { "https" } else { "http" };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let generated: String =
        sqlx::query_scalar("SELECT strftime('%Y-%m-%d %H:%M UTC', 'now')").fetch_one(&state.service.pool).await.map_err(crate::db::internal)?;
    let html = app::pages::studies::report_document(detail, &format!("{scheme}://{host}"), &generated);
    let disposition = format!("attachment; filename=\"study-{id}-report.html\"");
    // The file's own policy: its inline stylesheet, nothing fetched, no script.
    let policy = format!("{}; base-uri 'self'; frame-ancestors 'none'", app::pages::studies::REPORT_POLICY);
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition), (header::CONTENT_SECURITY_POLICY, policy)],
        html,
    ))
}

/// `POST /studies/{id}/cancel`: cancels every run of the study that has not finished.
pub async fn cancel_study(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    let id = parse_id("study", &id)?;
    let runs = crate::studies::cancel_study(&state.service, &state.queue, id, &who).await?;
    Ok(Json(serde_json::json!({ "id": id, "cancelled": runs })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoreSeeds {
    seeds: Vec<u64>,
}

/// `POST /studies/{id}/seeds` `{"seeds": [4]}`: every architecture and arm for the new seeds.
pub async fn extend_study(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MoreSeeds>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(state.service.extend_study(parse_id("study", &id)?, body.seeds, &who).await?)))
}

/// `GET /runs/{id}/datamap`: the data map, binned.
pub async fn data_map(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<protocol::DataMap>> {
    Ok(Json(analysis::data_map(&state.service.pool, parse_id("run", &id)?).await?))
}

pub async fn get_run(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<RunDetail>> {
    Ok(Json(state.service.run(parse_id("run", &id)?).await?))
}

/// `PATCH /runs/{id}`: a run's name, notes or tags (its owner or an administrator).
pub async fn update_run(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(change): JsonBody<protocol::RunChange>,
) -> ApiResult<Json<RunDetail>> {
    let id = parse_id("run", &id)?;
    Ok(Json(state.service.update_run(id, change, &who).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    tail: Option<u32>,
}

pub async fn run_log(State(state): State<AppState>, Path(id): Path<String>, QueryParams(query): QueryParams<LogQuery>) -> ApiResult<Json<protocol::JobLog>> {
    Ok(Json(state.queue.log_tail(parse_id("run", &id)?, query.tail.unwrap_or(200)).await?))
}

/// `GET /runs/{id}/shown`: the run's training schedule and the samples each epoch showed.
pub async fn run_shown(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<protocol::sampling::ShownSamples>> {
    Ok(Json(state.service.shown(parse_id("run", &id)?).await?))
}

pub async fn run_classes(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<protocol::ClassReport>> {
    Ok(Json(state.service.classes(parse_id("run", &id)?).await?))
}

pub async fn run_samples(State(state): State<AppState>, Path(id): Path<String>, QueryParams(query): QueryParams<SampleQuery>) -> ApiResult<Json<SamplePage>> {
    Ok(Json(state.service.samples(parse_id("run", &id)?, query).await?))
}

/// `records.parquet`, `records.csv`, `samples.parquet`, `samples.csv` of a run.
pub async fn run_export(State(state): State<AppState>, Path((id, file)): Path<(String, String)>) -> ApiResult<impl IntoResponse> {
    let run_id = parse_id("run", &id)?;
    let (what, format) = match file.as_str() {
        "records.parquet" => ("records", analysis::Format::Parquet),
        "records.csv" => ("records", analysis::Format::Csv),
        "samples.parquet" => ("samples", analysis::Format::Parquet),
        "samples.csv" => ("samples", analysis::Format::Csv),
        _ => return Err(Failure::not_found(format!("no export {file:?}; use records.parquet, records.csv, samples.parquet or samples.csv")).into()),
    };
    let pool = &state.service.pool;
    let body = if what == "records" {
        state.service.run(run_id).await?;
        analysis::records(pool, run_id, format).await?
    } else {
        analysis::samples(run_id, state.service.all_samples(run_id).await?, format).await?
    };
    let disposition = format!("attachment; filename=\"run-{run_id}-{file}\"");
    Ok(([(header::CONTENT_TYPE, format.content_type().to_owned()), (header::CONTENT_DISPOSITION, disposition)], body))
}

/// `GET /compare/samples.parquet?runs=1,2` (or `.csv`): the compared runs' per-sample
/// statistics in one file, one row per run and shared sample (the `run` column tells them
/// apart), in the first run's sample order.
pub async fn compare_export(
    State(state): State<AppState>,
    Path(file): Path<String>,
    QueryParams(query): QueryParams<CompareQuery>,
) -> ApiResult<impl IntoResponse> {
    let format = match file.as_str() {
        "samples.parquet" => analysis::Format::Parquet,
        "samples.csv" => analysis::Format::Csv,
        _ => return Err(Failure::not_found(format!("no export {file:?}; use samples.parquet or samples.csv")).into()),
    };
    let ids = analysis::parse_ids(&query.runs)?;
    let mut runs = Vec::new();
    for id in ids {
        let status = state.service.run(id).await?.status;
        if status != RunStatus::Succeeded {
            return Err(Failure::conflict(format!("run #{id} is {}; only finished runs (succeeded) have statistics to export", status.as_str())).into());
        }
        runs.push((id, state.service.all_samples(id).await?));
    }
    let body = analysis::comparison_samples(runs, query.intersect.unwrap_or(false), format).await?;
    let disposition = format!("attachment; filename=\"compare-{}-{file}\"", query.runs.replace(',', "-"));
    Ok(([(header::CONTENT_TYPE, format.content_type().to_owned()), (header::CONTENT_DISPOSITION, disposition)], body))
}

/// One sample's trajectory in a run and in the other runs over its dataset.
pub async fn sample_history(State(state): State<AppState>, Path((id, key)): Path<(String, String)>) -> ApiResult<Json<SampleHistory>> {
    let run_id = parse_id("run", &id)?;
    Ok(Json(state.service.sample_history(run_id, &key).await?))
}

/// `GET /compare?runs=1,2&q=0.1&score=forgetting_events`.
pub async fn compare(State(state): State<AppState>, QueryParams(query): QueryParams<CompareQuery>) -> ApiResult<Json<Comparison>> {
    Ok(Json(state.service.compare(query).await?))
}

#[derive(Serialize)]
pub struct StatusAnswer {
    id: i64,
    status: RunStatus,
}

pub async fn cancel_run(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult<Json<StatusAnswer>> {
    let id = parse_id("run", &id)?;
    Ok(Json(StatusAnswer { id, status: state.queue.cancel_as(id, &who).await? }))
}

pub async fn retry_run(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult<Json<StatusAnswer>> {
    let id = parse_id("run", &id)?;
    Ok(Json(StatusAnswer { id, status: state.queue.retry_as(id, &who).await? }))
}
