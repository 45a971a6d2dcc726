//! Server functions: how pages read and change data. Each one calls the server's
//! [`crate::backend::Backend`], the service behind the JSON API too.
//!
//! Reads are `GET`s. Every change is a `POST` with a `csrf` argument: the form's hidden
//! [`crate::components::CsrfField`], which the server's middleware checks against the
//! session before the function runs (so it also survives hydrated forms, which send only the
//! function's arguments). Account functions live under `/sf/account` (open to every role),
//! administration under `/sf/admin` (administrators only).

use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;
use protocol::auth::{Account, NewToken, TokenInfo};
use protocol::{DatasetInfo, LaunchOutcome, RunDetail, RunQuery, RunStatus, SamplePage, SampleQuery};

#[cfg(feature = "ssr")]
fn backend() -> Result<crate::backend::SharedBackend, ServerFnError> {
    use_context::<crate::backend::SharedBackend>().ok_or_else(|| ServerFnError::new("the server did not provide its backend"))
}

/// The signed-in account (the server's middleware put it into the request).
#[cfg(feature = "ssr")]
fn caller() -> Result<protocol::auth::Identity, ServerFnError> {
    use_context::<protocol::auth::Identity>().ok_or_else(|| ServerFnError::new("sign in first"))
}

/// A refusal of the backend as a server function's error. While a page renders on the server,
/// a missing run, study or sample also makes the page's answer a 404 (issue 21, item 14):
/// a link to it that no longer leads anywhere says so to browsers, crawlers and scripts.
#[cfg(feature = "ssr")]
fn failed(failure: protocol::Failure) -> ServerFnError {
    let rendering_a_page = use_context::<http::request::Parts>().is_some_and(|parts| !parts.uri.path().starts_with("/sf/"));
    if failure.status == 404 && rendering_a_page {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    ServerFnError::new(failure.body.message)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn list_datasets() -> Result<Vec<DatasetInfo>, ServerFnError> {
    backend()?.datasets().await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn list_runs(query: RunQuery) -> Result<protocol::RunList, ServerFnError> {
    backend()?.runs(query).await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn list_workers() -> Result<Vec<protocol::WorkerView>, ServerFnError> {
    backend()?.workers().await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn disk_space() -> Result<protocol::DiskSpace, ServerFnError> {
    backend()?.disk_space().await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn list_studies() -> Result<Vec<protocol::study::StudySummary>, ServerFnError> {
    backend()?.studies().await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn get_study(id: i64) -> Result<protocol::study::StudyDetail, ServerFnError> {
    backend()?.study(id).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn cancel_study(id: i64, csrf: String) -> Result<u64, ServerFnError> {
    let _ = csrf;
    backend()?.cancel_study(id, &caller()?).await.map_err(failed)
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
    source_run: String,
    train_subset: String,
    val_subset: String,
    image_size: String,
    warmup_epochs: String,
    epochs: String,
    batch_size: String,
    lr: String,
    device: String,
    window: String,
    retention: String,
    never_learned: String,
    csrf: String,
) -> Result<LaunchOutcome, ServerFnError> {
    use serde_json::{Map, Value};
    let _ = csrf;
    let text = |s: &str| (!s.trim().is_empty()).then(|| Value::String(s.trim().to_owned()));
    let mut base = Map::new();
    for (key, value) in [
        ("dataset", &dataset),
        ("train_subset", &train_subset),
        ("val_subset", &val_subset),
        ("image_size", &image_size),
        ("warmup_epochs", &warmup_epochs),
        ("epochs", &epochs),
        ("batch_size", &batch_size),
        ("lr", &lr),
        ("device", &device),
        ("window", &window),
        ("retention", &retention),
        ("never_learned", &never_learned),
    ] {
        if let Some(v) = text(value) {
            base.insert(key.into(), v);
        }
    }
    // Every arm but `full` trains on `budget` of the samples each epoch; spaced repetition
    // and pruning read the earlier run `source_run`.
    let arms: Option<Value> = text(&arms).map(|list| {
        Value::Array(
            list.as_str()
                .unwrap_or_default()
                .split(',')
                .filter_map(|kind| protocol::sampling::from_form(kind, &[("budget", &budget), ("source_run", &source_run)]))
                .collect(),
        )
    });
    let request = protocol::study::StudyRequest {
        preset: text(&preset),
        name: text(&name),
        base: Some(Value::Object(base)),
        archs: text(&archs),
        seeds: text(&seeds),
        arms,
    };
    match backend()?.launch_study(request, &caller()?).await {
        Ok(launched) => Ok(LaunchOutcome { run_id: Some(launched.id), message: None, errors: Default::default() }),
        Err(failure) if failure.status < 500 => Ok(LaunchOutcome { run_id: None, message: Some(failure.body.message), errors: failure.body.errors }),
        Err(failure) => Err(failed(failure)),
    }
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn get_data_map(run_id: i64) -> Result<protocol::DataMap, ServerFnError> {
    backend()?.data_map(run_id).await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn compare_runs(query: protocol::CompareQuery) -> Result<protocol::Comparison, ServerFnError> {
    backend()?.compare(query).await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn get_sample_history(run_id: i64, key: String) -> Result<protocol::SampleHistory, ServerFnError> {
    backend()?.sample_history(run_id, key).await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn get_run(id: i64) -> Result<RunDetail, ServerFnError> {
    backend()?.run(id).await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn list_samples(run_id: i64, query: SampleQuery) -> Result<SamplePage, ServerFnError> {
    backend()?.samples(run_id, query).await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn get_run_classes(run_id: i64) -> Result<protocol::ClassReport, ServerFnError> {
    backend()?.classes(run_id).await.map_err(failed)
}

#[server(prefix = "/sf", input = GetUrl)]
pub async fn get_run_log(run_id: i64, tail: u32) -> Result<protocol::JobLog, ServerFnError> {
    backend()?.log(run_id, tail).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn cancel_run(run_id: i64, csrf: String) -> Result<RunStatus, ServerFnError> {
    let _ = csrf;
    backend()?.cancel(run_id, &caller()?).await.map_err(failed)
}

#[server(prefix = "/sf")]
pub async fn retry_run(run_id: i64, csrf: String) -> Result<RunStatus, ServerFnError> {
    let _ = csrf;
    backend()?.retry(run_id, &caller()?).await.map_err(failed)
}

/// The run page's form: a run's name, tags and notes (`PATCH /api/v1/runs/{id}`).
#[server(prefix = "/sf")]
pub async fn update_run(run_id: i64, name: String, tags: String, notes: String, csrf: String) -> Result<RunDetail, ServerFnError> {
    let _ = csrf;
    let change = protocol::RunChange { name: Some(name), notes: Some(notes), tags: Some(serde_json::Value::String(tags)) };
    backend()?.update_run(run_id, change, &caller()?).await.map_err(failed)
}

#[cfg(any(feature = "ssr", test))]
/// The launch form's fields as a run request: every field as the text typed, a blank one
/// meaning the default (the spec parser decides, the same one `POST /api/v1/runs` uses).
pub fn form_request(get: impl Fn(&str) -> String) -> protocol::RunRequest {
    use serde_json::Value;
    let text = |name: &str| Some(Value::String(get(name)));
    let sampling = protocol::sampling::from_form(
        &get("sampling"),
        &[
            ("budget", &get("sampling_budget")),
            ("source_run", &get("source_run")),
            ("score", &get("score")),
            ("keep", &get("keep")),
            ("decks", &get("decks")),
            ("nu", &get("nu")),
            ("kernel", &get("kernel")),
            ("due_only", &get("due_only")),
        ],
    );
    protocol::RunRequest {
        dataset: text("dataset"),
        arch: text("arch"),
        epochs: text("epochs"),
        warmup_epochs: text("warmup_epochs"),
        warmup_backbone: text("warmup_backbone"),
        batch_size: text("batch_size"),
        lr: text("lr"),
        optimizer: text("optimizer"),
        seed: text("seed"),
        train_subset: text("train_subset"),
        val_subset: text("val_subset"),
        image_size: text("image_size"),
        preprocess: text("preprocess"),
        measure: text("measure"),
        weights: text("weights"),
        device: text("device"),
        momentum: text("momentum"),
        nesterov: text("nesterov"),
        weight_decay: text("weight_decay"),
        schedule: text("schedule"),
        lr_warmup_epochs: text("lr_warmup_epochs"),
        step_epochs: text("step_epochs"),
        step_gamma: text("step_gamma"),
        label_smoothing: text("label_smoothing"),
        drop_path: text("drop_path"),
        augment: text("augment"),
        mixed_precision: text("mixed_precision"),
        sampling,
        window: text("window"),
        retention: text("retention"),
        never_learned: text("never_learned"),
        el2n_epoch: text("el2n_epoch"),
        tags: text("tags"),
        name: text("name"),
        notes: text("notes"),
        ..Default::default()
    }
}

/// The launch form (its fields: [`form_request`]). Fields added after the first form are
/// optional, so a page from before them still launches.
#[allow(clippy::too_many_arguments)]
#[server(prefix = "/sf")]
pub async fn launch_run(
    dataset: String,
    arch: String,
    epochs: String,
    warmup_epochs: String,
    warmup_backbone: String,
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
    sampling: String,
    sampling_budget: String,
    source_run: String,
    score: String,
    keep: String,
    decks: String,
    nu: String,
    window: String,
    retention: String,
    never_learned: String,
    momentum: Option<String>,
    nesterov: Option<String>,
    weight_decay: Option<String>,
    step_epochs: Option<String>,
    step_gamma: Option<String>,
    label_smoothing: Option<String>,
    drop_path: Option<String>,
    mixed_precision: Option<String>,
    el2n_epoch: Option<String>,
    kernel: Option<String>,
    due_only: Option<String>,
    preprocess: Option<String>,
    tags: Option<String>,
    name: Option<String>,
    notes: Option<String>,
    csrf: String,
) -> Result<LaunchOutcome, ServerFnError> {
    let _ = csrf;
    let fields: std::collections::HashMap<&str, String> = [
        ("dataset", dataset),
        ("arch", arch),
        ("epochs", epochs),
        ("warmup_epochs", warmup_epochs),
        ("warmup_backbone", warmup_backbone),
        ("batch_size", batch_size),
        ("lr", lr),
        ("optimizer", optimizer),
        ("seed", seed),
        ("train_subset", train_subset),
        ("val_subset", val_subset),
        ("image_size", image_size),
        ("measure", measure),
        ("device", device),
        ("weights", weights),
        ("schedule", schedule),
        ("lr_warmup_epochs", lr_warmup_epochs),
        ("augment", augment),
        ("sampling", sampling),
        ("sampling_budget", sampling_budget),
        ("source_run", source_run),
        ("score", score),
        ("keep", keep),
        ("decks", decks),
        ("nu", nu),
        ("window", window),
        ("retention", retention),
        ("never_learned", never_learned),
    ]
    .into_iter()
    .chain(
        [
            ("momentum", momentum),
            ("nesterov", nesterov),
            ("weight_decay", weight_decay),
            ("step_epochs", step_epochs),
            ("step_gamma", step_gamma),
            ("label_smoothing", label_smoothing),
            ("preprocess", preprocess),
            ("drop_path", drop_path),
            ("mixed_precision", mixed_precision),
            ("el2n_epoch", el2n_epoch),
            ("kernel", kernel),
            ("due_only", due_only),
            ("tags", tags),
            ("name", name),
            ("notes", notes),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default())),
    )
    .collect();
    let request = form_request(|name| fields.get(name).cloned().unwrap_or_default());
    match backend()?.launch(request, &caller()?).await {
        Ok(launched) => Ok(LaunchOutcome { run_id: Some(launched.id), message: None, errors: Default::default() }),
        Err(failure) if failure.status < 500 => Ok(LaunchOutcome { run_id: None, message: Some(failure.body.message), errors: failure.body.errors }),
        Err(failure) => Err(failed(failure)),
    }
}

/// What an account form's action tells the page: done (with a message), or why not.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FormOutcome {
    pub ok: bool,
    pub message: String,
}

#[cfg(feature = "ssr")]
fn outcome(result: Result<String, protocol::Failure>) -> Result<FormOutcome, ServerFnError> {
    match result {
        Ok(message) => Ok(FormOutcome { ok: true, message }),
        Err(failure) if failure.status < 500 => {
            let fields: String = failure.body.errors.0.iter().map(|(field, message)| format!("; {field}: {message}")).collect();
            Ok(FormOutcome { ok: false, message: format!("{}{fields}", failure.body.message) })
        }
        Err(failure) => Err(failed(failure)),
    }
}

#[server(prefix = "/sf/account", input = GetUrl)]
pub async fn my_tokens() -> Result<Vec<TokenInfo>, ServerFnError> {
    backend()?.tokens(&caller()?).await.map_err(failed)
}

/// A new personal API token; the page shows its secret once.
#[server(prefix = "/sf/account")]
pub async fn create_token(name: String, csrf: String) -> Result<Result<NewToken, String>, ServerFnError> {
    let _ = csrf;
    match backend()?.create_token(&caller()?, name).await {
        Ok(token) => Ok(Ok(token)),
        Err(failure) if failure.status < 500 => Ok(Err(failure.body.errors.0.into_values().next().unwrap_or(failure.body.message))),
        Err(failure) => Err(failed(failure)),
    }
}

#[server(prefix = "/sf/account")]
pub async fn revoke_token(id: i64, csrf: String) -> Result<FormOutcome, ServerFnError> {
    let _ = csrf;
    outcome(backend()?.revoke_token(&caller()?, id).await.map(|()| format!("token #{id} revoked")))
}

#[server(prefix = "/sf/account")]
pub async fn change_password(
    old_password: String,
    new_password: String,
    confirm: String,
    revoke_tokens: Option<String>,
    csrf: String,
) -> Result<FormOutcome, ServerFnError> {
    let _ = csrf;
    if new_password != confirm {
        return Ok(FormOutcome { ok: false, message: "the two new passwords differ".into() });
    }
    outcome(backend()?.change_password(&caller()?, old_password, new_password, revoke_tokens.is_some()).await)
}

#[server(prefix = "/sf/account")]
pub async fn sign_out_everywhere(csrf: String) -> Result<FormOutcome, ServerFnError> {
    let _ = csrf;
    outcome(backend()?.sign_out_everywhere(&caller()?).await.map(|n| format!("{n} session(s) ended; sign in again")))
}

#[server(prefix = "/sf/admin", input = GetUrl)]
pub async fn list_accounts() -> Result<Vec<Account>, ServerFnError> {
    backend()?.accounts().await.map_err(failed)
}

#[server(prefix = "/sf/admin")]
pub async fn create_account(name: String, password: String, role: String, csrf: String) -> Result<FormOutcome, ServerFnError> {
    let _ = csrf;
    let role = match protocol::auth::Role::parse(&role) {
        Ok(role) => role,
        Err(message) => return Ok(FormOutcome { ok: false, message }),
    };
    let name = name.trim().to_owned();
    outcome(backend()?.create_account(name.clone(), password, role).await.map(|a| format!("account {} created ({})", a.name, a.role.as_str())))
}

/// Changes an account's role (`role` non-empty) or enables/disables it (`disabled` "true"/"false").
#[server(prefix = "/sf/admin")]
pub async fn update_account(name: String, role: String, disabled: String, csrf: String) -> Result<FormOutcome, ServerFnError> {
    let _ = csrf;
    let role = match role.trim() {
        "" => None,
        text => match protocol::auth::Role::parse(text) {
            Ok(role) => Some(role),
            Err(message) => return Ok(FormOutcome { ok: false, message }),
        },
    };
    let disabled = match disabled.trim() {
        "" => None,
        text => Some(text == "true"),
    };
    outcome(
        backend()?
            .update_account(&caller()?, name, role, disabled)
            .await
            .map(|a| format!("{}: {}{}", a.name, a.role.as_str(), if a.disabled { ", disabled" } else { "" })),
    )
}

/// Sets a new password for another account (`revoke_tokens` "on" also revokes its tokens).
#[server(prefix = "/sf/admin")]
pub async fn reset_password(name: String, password: String, revoke_tokens: Option<String>, csrf: String) -> Result<FormOutcome, ServerFnError> {
    let _ = csrf;
    outcome(backend()?.reset_password(&caller()?, name, password, revoke_tokens.is_some()).await)
}
