//! Server functions: how pages read and change data. Each one calls the server's
//! [`crate::backend::Backend`], the service behind the JSON API too.

use leptos::prelude::*;
use protocol::{DatasetInfo, LaunchOutcome, RunDetail, RunQuery, RunStatus, SamplePage, SampleQuery};

#[cfg(feature = "ssr")]
fn backend() -> Result<crate::backend::SharedBackend, ServerFnError> {
    use_context::<crate::backend::SharedBackend>().ok_or_else(|| ServerFnError::new("the server did not provide its backend"))
}

#[cfg(feature = "ssr")]
fn failed(failure: protocol::Failure) -> ServerFnError {
    ServerFnError::new(failure.body.message)
}

#[server(prefix = "/sf")]
pub async fn list_datasets() -> Result<Vec<DatasetInfo>, ServerFnError> {
    backend()?.datasets().await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn list_runs(query: RunQuery) -> Result<protocol::RunList, ServerFnError> {
    backend()?.runs(query).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn list_studies() -> Result<Vec<protocol::study::StudySummary>, ServerFnError> {
    backend()?.studies().await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn get_study(id: i64) -> Result<protocol::study::StudyDetail, ServerFnError> {
    backend()?.study(id).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn cancel_study(id: i64) -> Result<u64, ServerFnError> {
    backend()?.cancel_study(id).await.map_err(failed)
}

/// The study form: lists as comma-separated text; empty fields take the preset's values.
#[allow(clippy::too_many_arguments)]
#[server(prefix = "/sf")]
pub async fn launch_study(
    preset: String,
    name: String,
    dataset: String,
    archs: String,
    seeds: String,
    arms: String,
    budget: String,
    train_subset: String,
    val_subset: String,
    image_size: String,
    warmup_epochs: String,
    epochs: String,
    batch_size: String,
    lr: String,
    device: String,
) -> Result<LaunchOutcome, ServerFnError> {
    use serde_json::{json, Map, Value};
    let text = |s: &str| (!s.trim().is_empty()).then(|| Value::String(s.trim().to_owned()));
    let mut base = Map::new();
    for (key, value) in [("dataset", &dataset), ("train_subset", &train_subset), ("val_subset", &val_subset), ("image_size", &image_size),
        ("warmup_epochs", &warmup_epochs), ("epochs", &epochs), ("batch_size", &batch_size), ("lr", &lr), ("device", &device)] {
        if let Some(v) = text(value) {
            base.insert(key.into(), v);
        }
    }
    // Every arm but `full` trains on `budget` of the samples each epoch.
    let budget = text(&budget).unwrap_or(json!("1"));
    let arms: Option<Value> = text(&arms).map(|list| {
        Value::Array(list.as_str().unwrap_or_default().split(',').map(str::trim).filter(|k| !k.is_empty())
            .map(|kind| if kind == "full" { json!("full") } else { json!({"kind": kind, "budget": budget.clone()}) }).collect())
    });
    let request = protocol::study::StudyRequest { preset: text(&preset), name: text(&name), base: Some(Value::Object(base)), archs: text(&archs), seeds: text(&seeds), arms };
    match backend()?.launch_study(request).await {
        Ok(launched) => Ok(LaunchOutcome { run_id: Some(launched.id), message: None, errors: Default::default() }),
        Err(failure) if failure.status < 500 => Ok(LaunchOutcome { run_id: None, message: Some(failure.body.message), errors: failure.body.errors }),
        Err(failure) => Err(failed(failure)),
    }
}

#[server(prefix = "/sf")]
pub async fn get_data_map(run_id: i64) -> Result<protocol::DataMap, ServerFnError> {
    backend()?.data_map(run_id).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn compare_runs(query: protocol::CompareQuery) -> Result<protocol::Comparison, ServerFnError> {
    backend()?.compare(query).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn get_sample_history(run_id: i64, key: String) -> Result<protocol::SampleHistory, ServerFnError> {
    backend()?.sample_history(run_id, key).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn get_run(id: i64) -> Result<RunDetail, ServerFnError> {
    backend()?.run(id).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn list_samples(run_id: i64, query: SampleQuery) -> Result<SamplePage, ServerFnError> {
    backend()?.samples(run_id, query).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn get_run_classes(run_id: i64) -> Result<protocol::ClassReport, ServerFnError> {
    backend()?.classes(run_id).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn get_run_log(run_id: i64, tail: u32) -> Result<protocol::JobLog, ServerFnError> {
    backend()?.log(run_id, tail).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn cancel_run(run_id: i64) -> Result<RunStatus, ServerFnError> {
    backend()?.cancel(run_id).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn retry_run(run_id: i64) -> Result<RunStatus, ServerFnError> {
    backend()?.retry(run_id).await.map_err(failed)
}

/// The launch form. Every field arrives as the text the user typed; the spec parser decides
/// (the same one `POST /api/v1/runs` uses) and answers one message per invalid field.
#[allow(clippy::too_many_arguments)]
#[server(prefix = "/sf")]
pub async fn launch_run(
    dataset: String,
    arch: String,
    epochs: String,
    warmup_epochs: String,
    batch_size: String,
    lr: String,
    optimizer: String,
    seed: String,
    train_subset: String,
    val_subset: String,
    image_size: String,
    measure: String,
    device: String,
    weights: String,
    schedule: String,
    lr_warmup_epochs: String,
    augment: String,
) -> Result<LaunchOutcome, ServerFnError> {
    use serde_json::Value;
    let text = |s: String| Some(Value::String(s));
    let request = protocol::RunRequest {
        dataset: text(dataset),
        arch: text(arch),
        epochs: text(epochs),
        warmup_epochs: text(warmup_epochs),
        batch_size: text(batch_size),
        lr: text(lr),
        optimizer: text(optimizer),
        seed: text(seed),
        train_subset: text(train_subset),
        val_subset: text(val_subset),
        image_size: text(image_size),
        measure: text(measure),
        weights: text(weights),
        device: text(device),
        schedule: text(schedule),
        lr_warmup_epochs: text(lr_warmup_epochs),
        augment: text(augment),
        ..Default::default()
    };
    match backend()?.launch(request).await {
        Ok(launched) => Ok(LaunchOutcome { run_id: Some(launched.id), message: None, errors: Default::default() }),
        Err(failure) if failure.status < 500 => {
            Ok(LaunchOutcome { run_id: None, message: Some(failure.body.message), errors: failure.body.errors })
        }
        Err(failure) => Err(failed(failure)),
    }
}
