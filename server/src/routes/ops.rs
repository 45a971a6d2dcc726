//! What a lab's monitoring reads (issue 23, item 6): `GET /healthz`, the server's own view of
//! its health as JSON (database reachable, queue state, workers heard from), and `GET
//! /metrics` in Prometheus' text format (jobs by status, epochs stored, each running job's
//! heartbeat age, free disk, request latencies), for an existing Grafana. Both are for administrators:
//! a scraper sends an administrator's API token (`Authorization: Bearer flk_...`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sqlx::Row;

use super::AppState;
use crate::db::unix_now;
use protocol::RunStatus;

/// Upper bounds of the request-latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Request latencies since the start: counts per bucket (not cumulative), sum, count.
struct Latencies {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

static LATENCIES: Latencies = Latencies { buckets: [const { AtomicU64::new(0) }; BUCKETS.len()], sum_micros: AtomicU64::new(0), count: AtomicU64::new(0) };

/// The middleware that times every request until its answer's head (an event stream counts
/// until it starts).
pub async fn timed(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(bucket) = BUCKETS.iter().position(|&le| seconds <= le) {
        LATENCIES.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }
    LATENCIES.sum_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    LATENCIES.count.fetch_add(1, Ordering::Relaxed);
    response
}

/// Jobs by status, and the running jobs' heartbeat ages in seconds (from their lease, renewed
/// at each heartbeat).
async fn queue_state(state: &AppState) -> Result<(Vec<(String, i64)>, Vec<(i64, String, f64)>), sqlx::Error> {
    let pool = &state.service.pool;
    let counts = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status ORDER BY status").fetch_all(pool).await?;
    let counts = counts.iter().map(|r| (r.get::<String, _>("status"), r.get::<i64, _>("n"))).collect();
    let lease = state.queue.lease_seconds() as i64;
    let running =
        sqlx::query("SELECT id, COALESCE(worker, '') AS worker, lease_expires_at FROM jobs WHERE status = 'running' ORDER BY id").fetch_all(pool).await?;
    let now = unix_now();
    let ages = running
        .iter()
        .map(|r| {
            let expires: Option<i64> = r.get("lease_expires_at");
            (r.get::<i64, _>("id"), r.get::<String, _>("worker"), expires.map_or(f64::NAN, |e| (now - (e - lease)).max(0) as f64))
        })
        .collect();
    Ok((counts, ages))
}

/// `GET /healthz`: 200 with what was checked, or 503 when the database does not answer.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match queue_state(&state).await {
        Ok((counts, ages)) => {
            let lease = state.queue.lease_seconds() as f64;
            let stale = ages.iter().filter(|(_, _, age)| !(*age <= lease)).count();
            let jobs: serde_json::Map<String, serde_json::Value> = counts.into_iter().map(|(status, n)| (status, json!(n))).collect();
            let disk = state.service.disk.now();
            Json(json!({
                "status": if stale == 0 && disk.level == protocol::DiskLevel::Ok { "ok" } else { "degraded" },
                "database": "ok",
                "jobs": jobs,
                "running_jobs_heard_from": ages.len() - stale,
                "running_jobs_silent": stale,
                "disk": disk,
            }))
            .into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "down", "database": error.to_string()}))).into_response(),
    }
}

/// `GET /metrics`: Prometheus text format 0.0.4.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let (counts, ages) = match queue_state(&state).await {
        Ok(found) => found,
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, format!("# the database did not answer: {error}\n")).into_response(),
    };
    let epochs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM epoch_metrics").fetch_one(&state.service.pool).await.unwrap_or(-1);
    let mut out = String::new();
    let _ = writeln!(out, "# HELP forgetlab_jobs Jobs by status.\n# TYPE forgetlab_jobs gauge");
    for status in RunStatus::ALL.map(RunStatus::as_str) {
        let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "forgetlab_jobs{{status=\"{status}\"}} {n}");
    }
    let _ =
        writeln!(out, "# HELP forgetlab_epochs_stored Epochs stored, over every run.\n# TYPE forgetlab_epochs_stored gauge\nforgetlab_epochs_stored {epochs}");
    let _ = writeln!(
        out,
        "# HELP forgetlab_worker_heartbeat_age_seconds Seconds since each running job's worker was last heard from.\n# TYPE forgetlab_worker_heartbeat_age_seconds gauge"
    );
    for (job, worker, age) in &ages {
        let worker = worker.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " ");
        let _ = writeln!(out, "forgetlab_worker_heartbeat_age_seconds{{job=\"{job}\",worker=\"{worker}\"}} {age}");
    }
    let disk = state.service.disk.now();
    let _ = writeln!(
        out,
        "# HELP forgetlab_disk_free_bytes Bytes free on the data directory's volume.\n# TYPE forgetlab_disk_free_bytes gauge\nforgetlab_disk_free_bytes {}",
        disk.free_bytes
    );
    let _ = writeln!(
        out,
        "# HELP forgetlab_disk_reserve_bytes Free bytes under which uploads are refused (FORGETLAB_DISK_MIN_FREE_MB).\n# TYPE forgetlab_disk_reserve_bytes gauge\nforgetlab_disk_reserve_bytes {}",
        disk.refuse_bytes
    );
    let _ = writeln!(
        out,
        "# HELP forgetlab_thumbnail_splits_decoded_total Dataset splits decoded for thumbnails since the start.\n# TYPE forgetlab_thumbnail_splits_decoded_total counter\nforgetlab_thumbnail_splits_decoded_total {}",
        state.service.registry.decoded_splits()
    );
    let _ = writeln!(
        out,
        "# HELP forgetlab_http_request_duration_seconds Time to answer a request (to the start of its answer).\n# TYPE forgetlab_http_request_duration_seconds histogram"
    );
    let mut cumulative = 0;
    for (le, bucket) in BUCKETS.iter().zip(&LATENCIES.buckets) {
        cumulative += bucket.load(Ordering::Relaxed);
        let _ = writeln!(out, "forgetlab_http_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let count = LATENCIES.count.load(Ordering::Relaxed);
    let _ = writeln!(out, "forgetlab_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "forgetlab_http_request_duration_seconds_sum {}", LATENCIES.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
    let _ = writeln!(out, "forgetlab_http_request_duration_seconds_count {count}");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}
