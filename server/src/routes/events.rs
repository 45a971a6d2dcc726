//! Server-sent events of job progress. Each stream starts with the current state, so a client
//! that reconnects catches up, then follows every heartbeat and status change, until the
//! credential it was opened with ends (sign-out, expiry, a revoked token).

use std::convert::Infallible;

use axum::Extension;
use axum::extract::State;
// Path parameters whose refusals are JSON, like every API answer.
use super::PathParams as Path;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use protocol::Progress;
use tokio_stream::wrappers::BroadcastStream;

use super::{ApiResult, AppState, parse_id};
use crate::auth::Credential;

fn event(progress: &Progress) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(progress).unwrap_or_default()))
}

async fn stream_for(state: AppState, credential: Option<Credential>, run_id: Option<i64>) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    // Subscribe before reading the snapshot so nothing falls between the two.
    let live = state.service.hub.subscribe();
    let snapshot = state.service.active_progress(run_id).await?;
    let initial = stream::iter(snapshot.iter().map(event).collect::<Vec<_>>());
    let updates = BroadcastStream::new(live).filter_map(move |item| async move {
        match item {
            Ok(progress) if run_id.is_none_or(|id| id == progress.run_id) => Some(event(&progress)),
            _ => None,
        }
    });
    let auth = state.auth.clone();
    let ended = async move {
        match credential {
            Some(credential) => auth.signed_out(credential).await,
            None => std::future::pending().await,
        }
    };
    Ok(Sse::new(initial.chain(updates).take_until(Box::pin(ended))).keep_alive(KeepAlive::default()))
}

pub async fn all_events(
    State(state): State<AppState>,
    credential: Option<Extension<Credential>>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    stream_for(state, credential.map(|c| c.0), None).await
}

pub async fn run_events(
    State(state): State<AppState>,
    credential: Option<Extension<Credential>>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let id = parse_id("run", &id)?;
    state.service.run(id).await?;
    stream_for(state, credential.map(|c| c.0), Some(id)).await
}
