//! `/launch`: the form that queues one fine-tuning run.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use protocol::spec::{Retention, Window};
use protocol::{Arch, Augment, Device, LaunchOutcome, Measure, Optimizer, Schedule};

use std::collections::HashMap;

use leptos_router::hooks::use_query_map;

use crate::components::form::ActionForm;
use crate::functions::{LaunchRun, get_run, list_datasets, list_runs};

/// A labelled text input with its hint and its error: a number field says at once when what
/// is typed is not a number; after a refused submission, the server's message per field.
#[component]
fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(optional, into)] value: String,
    #[prop(optional, into)] hint: String,
    error: Signal<Option<String>>,
    /// A number (the decimal keyboard on phones, checked while typed); false for text.
    #[prop(default = true)]
    numeric: bool,
    /// Suggestions offered while typing (a `<datalist>` by this id).
    #[prop(optional)]
    list: Option<&'static str>,
    /// Shown only while this holds (a field of another sample selection is hidden).
    #[prop(optional)]
    visible: Option<Signal<bool>>,
) -> impl IntoView {
    let typed = RwSignal::new(None::<String>);
    let check = move |ev: leptos::ev::Event| {
        if numeric {
            let text = event_target_value(&ev);
            let text = text.trim();
            typed.set((!text.is_empty() && text.parse::<f64>().is_err()).then(|| format!("{label} must be a number, got {text:?}")));
        }
    };
    let shown = Signal::derive(move || typed.get().or_else(|| error.get()));
    let hint_id = format!("{name}-hint");
    let error_id = format!("{name}-error");
    view! {
        <label class="field" class:invalid=move || shown.get().is_some() hidden=move || visible.is_some_and(|v| !v.get())>
            <span class="field-label">{label}</span>
            <input type="text" name=name id=name value=value inputmode=numeric.then_some("decimal") autocomplete="off" list=list on:input=check
                aria-describedby=format!("{hint_id} {error_id}") aria-invalid=move || if shown.get().is_some() { "true" } else { "false" } />
            <span class="hint" id=hint_id>{hint}</span>
            <span class="field-error" data-field=name id=error_id>{move || shown.get()}</span>
        </label>
    }
}

/// A labelled drop-down of fixed choices.
#[component]
fn Choice(
    label: &'static str,
    name: &'static str,
    options: Vec<(String, String, bool)>,
    /// The option chosen at first (none: the first).
    #[prop(optional, into)]
    selected: String,
    error: Signal<Option<String>>,
    /// Shown only while this holds.
    #[prop(optional)]
    visible: Option<Signal<bool>>,
    /// Set to the chosen value whenever the choice changes.
    #[prop(optional)]
    picked: Option<RwSignal<String>>,
) -> impl IntoView {
    let pick = move |ev: leptos::ev::Event| {
        if let Some(picked) = picked {
            picked.set(event_target_value(&ev));
        }
    };
    view! {
        <label class="field" class:invalid=move || error.get().is_some() hidden=move || visible.is_some_and(|v| !v.get())>
            <span class="field-label">{label}</span>
            <select name=name id=name on:change=pick aria-describedby=format!("{name}-error") aria-invalid=move || if error.get().is_some() { "true" } else { "false" }>
                {options.into_iter().map(|(value, text, enabled)| {
                    let chosen = value == selected;
                    view! { <option value=value disabled={!enabled} selected=chosen>{text}</option> }
                }).collect_view()}
            </select>
            <span class="field-error" data-field=name id=format!("{name}-error")>{move || error.get()}</span>
        </label>
    }
}

/// The launch form's values that make the same run as `spec` (the clone of a run): every
/// field of the spec, tags included; the form's names are [`crate::functions::form_request`]'s.
pub fn clone_values(spec: &protocol::ExperimentSpec, tags: &[String]) -> HashMap<&'static str, String> {
    use protocol::Plan;
    let h = &spec.hyper;
    let (mut source_run, mut score, mut keep, mut decks, mut nu) = (String::new(), String::new(), String::new(), String::new(), String::new());
    let (mut kernel, mut due_only) = (String::new(), String::new());
    match &spec.sampling.plan {
        Plan::Prune { source_run: runs, score: s, keep: k } => (source_run, score, keep) = (ids(&runs.0), s.as_str().to_owned(), k.as_str().to_owned()),
        Plan::SpacedRepetition { source_run: runs } => source_run = ids(&runs.0),
        Plan::Leitner { decks: d } => decks = d.to_string(),
        Plan::Rbf { nu: n, kernel: k, due_only: d } => (nu, kernel, due_only) = (n.to_string(), k.as_str().to_owned(), d.to_string()),
        Plan::Full | Plan::Random | Plan::EasyToHard | Plan::HardToEasy => {}
    }
    let full = matches!(spec.sampling.plan, Plan::Full);
    let flag = |b: bool| if b { "true" } else { "false" }.to_owned();
    HashMap::from([
        ("dataset", spec.dataset.clone()),
        ("arch", spec.arch.as_str().to_owned()),
        ("epochs", spec.epochs.to_string()),
        ("warmup_epochs", spec.warmup_epochs.to_string()),
        ("warmup_backbone", spec.warmup_backbone.as_str().to_owned()),
        ("batch_size", spec.batch_size.to_string()),
        ("lr", spec.lr.to_string()),
        ("optimizer", spec.optimizer.as_str().to_owned()),
        ("seed", spec.seed.to_string()),
        ("train_subset", spec.train_subset.map_or(String::new(), |n| n.to_string())),
        ("val_subset", spec.val_subset.map_or(String::new(), |n| n.to_string())),
        ("image_size", spec.image_size.to_string()),
        ("preprocess", spec.preprocess.as_str().to_owned()),
        ("measure", spec.measure.as_str().to_owned()),
        ("weights", spec.weights.clone().unwrap_or_default()),
        ("device", spec.device.as_str().to_owned()),
        ("momentum", h.momentum.to_string()),
        ("nesterov", flag(h.nesterov)),
        ("weight_decay", h.weight_decay.to_string()),
        ("schedule", h.schedule.as_str().to_owned()),
        ("lr_warmup_epochs", h.lr_warmup_epochs.to_string()),
        ("step_epochs", h.step_epochs.to_string()),
        ("step_gamma", h.step_gamma.to_string()),
        ("label_smoothing", h.label_smoothing.to_string()),
        ("drop_path", h.drop_path.to_string()),
        ("augment", h.augment.as_str().to_owned()),
        ("mixed_precision", flag(h.mixed_precision)),
        ("sampling", spec.sampling.plan.kind().to_owned()),
        ("sampling_budget", if full { String::new() } else { spec.sampling.budget.to_string() }),
        ("source_run", source_run),
        ("score", score),
        ("keep", keep),
        ("decks", decks),
        ("nu", nu),
        ("kernel", kernel),
        ("due_only", due_only),
        ("window", spec.window.as_str().to_owned()),
        ("retention", spec.retention.as_str().to_owned()),
        ("never_learned", spec.never_learned.as_str().to_owned()),
        ("el2n_epoch", spec.el2n_epoch.map_or(String::new(), |e| e.to_string())),
        ("tags", tags.join(",")),
    ])
}

/// What the launch form would queue, in a sentence, from its fields.
pub fn launch_summary(get: impl Fn(&str) -> String) -> String {
    let field = |name: &str| get(name).trim().to_owned();
    let arch = crate::components::arch_label(&field("arch"));
    let samples = match field("train_subset").as_str() {
        "" => "every training sample".to_owned(),
        n => format!("{n} training samples"),
    };
    let warmup = match field("warmup_epochs").as_str() {
        "" | "0" => String::new(),
        n => format!(" after {n} head-warmup epoch(s)"),
    };
    let selection = match field("sampling").as_str() {
        "" | "full" => "every sample each epoch".to_owned(),
        kind => format!("{} selection at budget {}", kind.replace('_', " "), field("sampling_budget")),
    };
    let device = match field("device").as_str() {
        "" => "auto".to_owned(),
        d => d.to_owned(),
    };
    format!(
        "1 run: {arch} on {}, {samples}, {} fine-tuning epoch(s){warmup}, {selection}, seed {}, device {device}.",
        field("dataset"),
        field("epochs"),
        field("seed")
    )
}

/// How long the form's run would take, in a sentence naming the run it is timed by: the newest
/// succeeded run of the same architecture and dataset (on the same kind of device when the
/// form names `cpu` or `cuda`). Its worker reported images per second over the run's whole
/// wall time, validation and measurement included (`trainer::train` `Beats::beat`); the new
/// run trains on its training samples once per head-warmup epoch and, at the selection's
/// budget, once per fine-tuning epoch. Image size, batch size and the validation subset change
/// the time too, so this is a guide, not a promise.
pub fn launch_estimate(get: impl Fn(&str) -> String, runs: &[protocol::RunSummary], datasets: &[protocol::DatasetInfo]) -> String {
    let field = |name: &str| get(name).trim().to_owned();
    let (arch, dataset, device) = (field("arch"), field("dataset"), field("device"));
    let on_device = |run: &protocol::RunSummary| match device.as_str() {
        "cpu" | "cuda" => run.progress.as_ref().and_then(|p| p.heartbeat.device.as_deref()).is_some_and(|d| d.starts_with(device.as_str())),
        _ => true,
    };
    let rate = |run: &protocol::RunSummary| run.progress.as_ref().and_then(|p| p.heartbeat.images_per_sec).filter(|r| r.is_finite() && *r > 0.0);
    let timed = runs
        .iter()
        .filter(|r| r.status == protocol::RunStatus::Succeeded && r.arch == arch && r.dataset == dataset && on_device(r))
        .filter_map(|r| Some((r.id, rate(r)?)))
        .max_by_key(|&(id, _)| id);
    let Some((timed, rate)) = timed else {
        let on = if matches!(device.as_str(), "cpu" | "cuda") { format!(" on {device}") } else { String::new() };
        return format!("No time estimate yet: no succeeded {} run over {dataset}{on} to time it by.", crate::components::arch_label(&arch));
    };
    let whole = datasets.iter().find(|d| d.name == dataset).map(|d| d.train_size);
    let samples = match field("train_subset").as_str() {
        "" => whole,
        n => n.parse::<u64>().ok().map(|n| whole.map_or(n, |w| n.min(w))),
    };
    let number = |name: &str| field(name).parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0);
    let budget =
        if protocol::sampling::takes(&field("sampling"), "budget") && !field("sampling_budget").is_empty() { number("sampling_budget") } else { Some(1.0) };
    let warmup = number("warmup_epochs").unwrap_or(0.0);
    let (Some(samples), Some(epochs), Some(budget)) = (samples, number("epochs"), budget) else {
        return "No time estimate: fix the numbers above first.".to_owned();
    };
    let seconds = samples as f64 * (warmup + epochs * budget.min(1.0)) / rate;
    format!("{}, timed by run #{timed} ({rate:.0} images/s).", duration_text(seconds))
}

/// "About 12 minutes", rounded as a person would say it: an estimate, so not
/// [`crate::components::duration`]'s exact "12 min 05 s".
fn duration_text(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => "Under a minute".to_owned(),
        s if s < 90.0 => "About a minute".to_owned(),
        s if s < 90.0 * 60.0 => format!("About {:.0} minutes", s / 60.0),
        s if s < 48.0 * 3600.0 => format!("About {:.1} hours", s / 3600.0),
        s => format!("About {:.0} days", s / 86400.0),
    }
}

fn ids(runs: &[i64]) -> String {
    runs.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",")
}

#[component]
pub fn LaunchPage() -> impl IntoView {
    // `?from=N`: the form filled from run N (its clone).
    let url = use_query_map();
    let from = Memo::new(move |_| url.read().get("from").and_then(|s| s.trim().parse::<i64>().ok()));
    let source = crate::components::resource::resource(
        move || from.get(),
        |from| async move {
            match from {
                Some(id) => get_run(id).await.map(Some),
                None => Ok(None),
            }
        },
    );
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the run to clone…"</p> }>
            {move || Suspend::new(async move {
                match source.await {
                    Err(error) => super::load_error("the run to clone", error),
                    Ok(run) => {
                        let values = run.as_ref().map(|r| clone_values(&r.spec, &r.tags)).unwrap_or_default();
                        view! { <LaunchForm values cloned=run.map(|r| r.id) /> }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// The form, its fields filled from `values` where given (else each field's default).
#[component]
fn LaunchForm(values: HashMap<&'static str, String>, cloned: Option<i64>) -> impl IntoView {
    let v = move |name: &str, default: &str| values.get(name).cloned().unwrap_or_else(|| default.to_owned());
    let launch = ServerAction::<LaunchRun>::new();
    let outcome = launch.value();
    let live = RwSignal::new(false);
    Effect::new(move |_| live.set(true));
    let datasets = crate::components::resource::resource(|| (), |_| list_datasets());
    // Runs a selection can read (spaced repetition, prune), offered while typing the source
    // run; the newest of the same architecture times the summary's estimate.
    let succeeded = crate::components::resource::resource(
        || (),
        |_| list_runs(protocol::RunQuery { status: Some("succeeded".into()), limit: Some(200), ..Default::default() }),
    );
    // Once hydrated, the form shows only the fields of the chosen sample selection and
    // learning-rate schedule (the server ignores the others: `protocol::sampling::from_form`).
    let kind = RwSignal::new(v("sampling", "full"));
    let schedule = RwSignal::new(v("schedule", Schedule::ALL[0].as_str()));
    let takes = move |key: &'static str| Signal::derive(move || !live.get() || protocol::sampling::takes(&kind.get(), key));
    let stepped = Signal::derive(move || !live.get() || schedule.get() == Schedule::Step.as_str());
    // The summary of what Launch would queue, read from the form when Launch is pressed.
    let review = RwSignal::new(None::<(String, String)>);
    let open_review = move |ev: leptos::ev::MouseEvent| {
        if !live.get_untracked() {
            return;
        }
        #[cfg(feature = "hydrate")]
        {
            use leptos::wasm_bindgen::JsCast;
            let form = ev
                .target()
                .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
                .and_then(|e| e.closest("form").ok().flatten())
                .and_then(|f| f.dyn_into::<leptos::web_sys::HtmlFormElement>().ok());
            if let Some(data) = form.and_then(|f| leptos::web_sys::FormData::new_with_form(&f).ok()) {
                let get = |name: &str| data.get(name).as_string().unwrap_or_default();
                let runs = succeeded.get_untracked().and_then(|r| r.ok()).map(|list| list.runs).unwrap_or_default();
                let known = datasets.get_untracked().and_then(|r| r.ok()).unwrap_or_default();
                review.set(Some((launch_summary(get), launch_estimate(get, &runs, &known))));
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    let error = move |field: &'static str| Signal::derive(move || outcome.get().and_then(|r| r.ok()).and_then(|o| o.errors.get(field).map(str::to_owned)));

    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(LaunchOutcome { run_id: Some(id), .. })) = outcome.get() {
            navigate(&format!("/jobs?launched={id}"), Default::default());
        }
    });

    let archs = Arch::ALL.iter().map(|a| (a.as_str().to_owned(), a.label().to_owned(), true)).collect::<Vec<_>>();
    let optimizers = Optimizer::ALL.iter().map(|o| (o.as_str().to_owned(), o.as_str().to_uppercase(), true)).collect::<Vec<_>>();
    let measures = vec![
        (Measure::InBatch.as_str().to_owned(), "in_batch (training pass)".to_owned(), true),
        (Measure::FullPass.as_str().to_owned(), "full_pass (eval pass)".to_owned(), true),
    ];
    let windows = Window::ALL.iter().map(|w| (w.as_str().to_owned(), w.label().to_owned(), true)).collect::<Vec<_>>();
    let retentions = Retention::ALL.iter().map(|r| (r.as_str().to_owned(), r.label().to_owned(), true)).collect::<Vec<_>>();
    let never_learned =
        vec![("max".to_owned(), "the most forgotten (max, Toneva et al.)".to_owned(), true), ("exclude".to_owned(), "left out (exclude)".to_owned(), true)];
    // The selection's score and end, as choices ("" leaves them to the selection's default).
    let scores = std::iter::once((String::new(), "– choose a score".to_owned(), true))
        .chain(protocol::SampleScore::ALL.iter().map(|s| (s.as_str().to_owned(), s.label().to_owned(), true)))
        .collect::<Vec<_>>();
    let kernels = std::iter::once((String::new(), "– default (gaussian)".to_owned(), true))
        .chain(protocol::RbfKernel::ALL.iter().map(|k| (k.as_str().to_owned(), k.as_str().to_owned(), true)))
        .collect::<Vec<_>>();
    let due_choices = vec![
        (String::new(), "– default (no)".to_owned(), true),
        ("false".to_owned(), "no: fill the budget with those due soonest".to_owned(), true),
        ("true".to_owned(), "yes: only the due samples (Amiri et al.)".to_owned(), true),
    ];
    let keeps = vec![
        (String::new(), "– default (top)".to_owned(), true),
        ("top".to_owned(), "top of the score".to_owned(), true),
        ("bottom".to_owned(), "bottom of the score".to_owned(), true),
    ];
    let dataset = v("dataset", "");
    let no_yes = vec![("false".to_owned(), "no".to_owned(), true), ("true".to_owned(), "yes".to_owned(), true)];
    let yes_no = vec![("true".to_owned(), "yes (CUDA only)".to_owned(), true), ("false".to_owned(), "no".to_owned(), true)];
    let devices = Device::ALL.iter().map(|d| (d.as_str().to_owned(), d.as_str().to_owned(), true)).collect::<Vec<_>>();
    let schedules = Schedule::ALL.iter().map(|s| (s.as_str().to_owned(), s.as_str().to_owned(), true)).collect::<Vec<_>>();
    let kinds = protocol::sampling::KINDS.iter().map(|k| (k.to_string(), k.replace('_', " "), true)).collect::<Vec<_>>();
    let warmup_backbones = protocol::WarmupBackbone::ALL.iter().map(|w| (w.as_str().to_owned(), w.label().to_owned(), true)).collect::<Vec<_>>();
    // The default (flip) first, so the form sends it unless changed.
    let preprocesses = protocol::Preprocess::ALL.iter().map(|p| (p.as_str().to_owned(), p.label().to_owned(), true)).collect::<Vec<_>>();
    let augments =
        [Augment::Flip, Augment::CropFlip, Augment::None].iter().map(|a| (a.as_str().to_owned(), a.as_str().replace('_', " + "), true)).collect::<Vec<_>>();

    if !crate::components::me().is_some_and(|who| who.role.can_launch()) {
        return view! {
            <Title text="Launch" />
            <h1>"Launch a run"</h1>
            <p class="empty">"Viewers browse runs but cannot launch them; ask an administrator for the member role."</p>
        }
        .into_any();
    }
    view! {
        <Title text="Launch" />
        <h1>"Launch a run"</h1>
        <p class="lede">"Fine-tune one model and record every training sample's correctness, loss and confidence at every epoch."</p>
        {cloned.map(|id| view! {
            <p class="notice clone-note" data-from=id>{format!("Filled from run #{id}: change what the new run should do differently.")}
                " " <a href=format!("/runs/{id}")>{format!("run #{id}")}</a></p>
        })}
        <ActionForm action=launch attr:class="launch-form">
            <crate::components::CsrfField />
            <fieldset>
                <legend>"Data and model"</legend>
                <Transition fallback=|| view! { <p class="loading">"Loading datasets…"</p> }>
                    {move || {
                        let selected = dataset.clone();
                        Suspend::new(async move {
                            let options = match datasets.await {
                                Ok(list) => list.into_iter().map(|d| {
                                    let text = format!("{} ({} train / {} val, {} classes)", d.name, d.train_size, d.val_size, d.num_classes);
                                    (d.name, text, true)
                                }).collect(),
                                Err(_) => vec![],
                            };
                            view! { <Choice label="Dataset" name="dataset" options selected error=error("dataset") /> }
                        })
                    }}
                </Transition>
                <Choice label="Architecture" name="arch" options=archs selected=v("arch", "") error=error("arch") />
                <Field label="Training subset" name="train_subset" value=v("train_subset", "1000") hint="samples; empty = the whole training split" error=error("train_subset") />
                <Field label="Validation subset" name="val_subset" value=v("val_subset", "1000") hint="samples evaluated each epoch; empty = all" error=error("val_subset") />
                <Field label="Image size" name="image_size" value=v("image_size", "") hint="pixels per side; empty = the dataset's own" error=error("image_size") />
                <Field label="Pretrained weights" name="weights" numeric=false value=v("weights", "") hint=".safetensors under a data root; empty = random initialisation" error=error("weights") />
            </fieldset>
            <fieldset>
                <legend>"Training"</legend>
                <Field label="Epochs" name="epochs" value=v("epochs", "5") hint="fine-tuning epochs" error=error("epochs") />
                <Field label="Head-warmup epochs" name="warmup_epochs" value=v("warmup_epochs", "0") hint="backbone frozen, before fine-tuning" error=error("warmup_epochs") />
                <Choice label="Frozen backbone during warmup" name="warmup_backbone" options=warmup_backbones selected=v("warmup_backbone", "") error=error("warmup_backbone") />
                <Field label="Batch size" name="batch_size" value=v("batch_size", "128") error=error("batch_size") />
                <Field label="Learning rate" name="lr" value=v("lr", "0.01") error=error("lr") />
                <Choice label="Learning-rate schedule" name="schedule" options=schedules selected=v("schedule", "") error=error("schedule") picked=schedule />
                <Field label="Learning-rate warmup epochs" name="lr_warmup_epochs" value=v("lr_warmup_epochs", "0") hint="linear, at the start of fine-tuning" error=error("lr_warmup_epochs") />
                <Field label="Step epochs" name="step_epochs" value=v("step_epochs", "") hint="step schedule: epochs between decays (default 30)" error=error("step_epochs") visible=stepped />
                <Field label="Step factor" name="step_gamma" value=v("step_gamma", "") hint="step schedule: the rate is multiplied by this (default 0.1)" error=error("step_gamma") visible=stepped />
                <Choice label="Augmentation" name="augment" options=augments selected=v("augment", "") error=error("augment") />
                <Choice label="Preprocessing" name="preprocess" options=preprocesses selected=v("preprocess", "") error=error("preprocess") />
                <Field label="Seed" name="seed" value=v("seed", "0") error=error("seed") />
            </fieldset>
            <fieldset>
                <legend>"Optimizer and regularisation"</legend>
                <Choice label="Optimizer" name="optimizer" options=optimizers selected=v("optimizer", "") error=error("optimizer") />
                <Field label="Momentum" name="momentum" value=v("momentum", "") hint="SGD; default 0.9 (AdamW uses betas 0.9, 0.999)" error=error("momentum") />
                <Choice label="Nesterov momentum" name="nesterov" options=no_yes.clone() selected=v("nesterov", "false") error=error("nesterov") />
                <Field label="Weight decay" name="weight_decay" value=v("weight_decay", "") hint="empty = 0.0005 for SGD, 0.05 for AdamW (decoupled)" error=error("weight_decay") />
                <Field label="Label smoothing" name="label_smoothing" value=v("label_smoothing", "") hint="of the training loss; default 0" error=error("label_smoothing") />
                <Field label="Drop path" name="drop_path" value=v("drop_path", "") hint="DeiT's stochastic depth; empty = 0.1 for DeiT-Small, else 0" error=error("drop_path") />
                <Choice label="Mixed precision" name="mixed_precision" options=yes_no selected=v("mixed_precision", "true") error=error("mixed_precision") />
            </fieldset>
            <fieldset>
                <legend>"Sample selection"</legend>
                <Choice label="Sample selection" name="sampling" options=kinds selected=v("sampling", "") error=error("sampling") picked=kind />
                <Field label="Budget" name="sampling_budget" value=v("sampling_budget", "") hint="share of the training set each fine-tuning epoch, in (0, 1]; not for full" error=error("sampling.budget") visible=takes("budget") />
                <Field label="Source run" name="source_run" numeric=false list="succeeded-runs" value=v("source_run", "") hint="spaced_repetition and prune: an earlier succeeded run over the same samples, or several (one per seed, separated by commas) combined as Toneva et al. and Paul et al. combine seeds" error=error("sampling.source_run") visible=takes("source_run") />
                <Choice label="Score" name="score" options=scores selected=v("score", "") error=error("sampling.score") visible=takes("score") />
                <Choice label="Keep" name="keep" options=keeps selected=v("keep", "") error=error("sampling.keep") visible=takes("keep") />
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        let runs = succeeded.await.map(|list| list.runs).unwrap_or_default();
                        view! {
                            <datalist id="succeeded-runs">{runs.into_iter().map(|r| {
                                let label = format!("#{} · {} · seed {} · {}", r.id, crate::components::arch_label(&r.arch), r.seed, r.dataset);
                                view! { <option value=r.id.to_string() label=label /> }
                            }).collect_view()}</datalist>
                        }
                    })}
                </Transition>
                <Field label="Decks" name="decks" value=v("decks", "") hint="leitner: deck k is reviewed every 2^k epochs (default 5)" error=error("sampling.decks") visible=takes("decks") />
                <Field label="Recall threshold ν" name="nu" value=v("nu", "") hint="rbf: in (0, 1), default 0.9" error=error("sampling.nu") visible=takes("nu") />
                <Choice label="Recall kernel" name="kernel" options=kernels selected=v("kernel", "") error=error("sampling.kernel") visible=takes("kernel") />
                <Choice label="Due samples only" name="due_only" options=due_choices selected=v("due_only", "") error=error("sampling.due_only") visible=takes("due_only") />
            </fieldset>
            <fieldset>
                <legend>"Analysis"</legend>
                <Choice label="Epoch window" name="window" options=windows selected=v("window", "") error=error("window") />
                <Choice label="Retention definition" name="retention" options=retentions selected=v("retention", "") error=error("retention") />
                <Choice label="Never-learned samples" name="never_learned" options=never_learned selected=v("never_learned", "") error=error("never_learned") />
                <Field label="EL2N epoch" name="el2n_epoch" value=v("el2n_epoch", "") hint="the epoch whose EL2N is the run's el2n score; empty = 10 % into the window" error=error("el2n_epoch") />
                <p class="hint">"Recorded with the run's statistics and shown beside them. The window and definition decide forgetting events, cartography and the decay fits; the policy decides how never-learned samples rank and count in class means."</p>
            </fieldset>
            <fieldset>
                <legend>"Recording"</legend>
                <Choice label="Measurement" name="measure" options=measures selected=v("measure", "") error=error("measure") />
                <Choice label="Device" name="device" options=devices selected=v("device", "") error=error("device") />
                <Field label="Tags" name="tags" numeric=false value=v("tags", "") hint="labels for the runs table, separated by commas" error=error("tags") />
                <Field label="Name" name="name" numeric=false value=v("name", "") hint="to find the run by; empty = architecture-dataset-seed, e.g. resnet18-fashion-mnist-s3" error=error("name") />
                <label class="field">
                    <span class="field-label">"Notes"</span>
                    <textarea name="notes" id="notes" rows="3" maxlength="4000" aria-describedby="notes-hint notes-error"
                        aria-invalid=move || if error("notes").get().is_some() { "true" } else { "false" }>{v("notes", "")}</textarea>
                    <span class="hint" id="notes-hint">"what this run is for; shown on its page, editable there"</span>
                    <span class="field-error" data-field="notes" id="notes-error">{move || error("notes").get()}</span>
                </label>
            </fieldset>
            <div class="form-actions">
                // With JavaScript, Launch (or Enter in a field) first shows what will be queued;
                // "Queue it" queues it. Without, Launch submits at once.
                <button type=move || if live.get() { "button" } else { "submit" } class="button primary launch-review-button"
                    on:click=open_review disabled=move || launch.pending().get()>
                    {move || if launch.pending().get() { "Launching…" } else { "Launch…" }}
                </button>
                {move || review.get().map(|(summary, estimate)| view! {
                    <div class="launch-review" role="status">
                        <p class="launch-summary">{summary}</p>
                        <p class="launch-estimate">{estimate}</p>
                        <button type="submit" class="button primary queue-it" disabled=move || launch.pending().get()>"Queue it"</button>
                        <button type="button" class="button" on:click=move |_| review.set(None)>"Change something"</button>
                    </div>
                })}
                {move || outcome.get().map(|result| match result {
                    Ok(LaunchOutcome { run_id: Some(id), .. }) => view! {
                        <p class="notice" role="status">{format!("Run #{id} queued.")}</p>
                    }.into_any(),
                    Ok(LaunchOutcome { message, .. }) => view! {
                        <p class="error" role="alert">{message.unwrap_or_else(|| "The run was not queued.".into())}</p>
                    }.into_any(),
                    Err(error) => view! { <p class="error" role="alert">{super::form_error("your run was not queued", error)}</p> }.into_any(),
                })}
            </div>
        </ActionForm>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{DatasetInfo, ExperimentSpec, RunRequest};

    fn fashion() -> Vec<DatasetInfo> {
        vec![
            serde_json::from_value(serde_json::json!({
                "name": "fashion-mnist", "format": "idx", "path": "/usr/share/datasets/fashion-mnist", "num_classes": 10, "class_names": [],
                "train_size": 60000, "val_size": 10000, "image_height": 28, "image_width": 28, "channels": 1
            }))
            .unwrap(),
        ]
    }

    /// A spec with every field away from its default, read as the API reads a request.
    fn spec(json: serde_json::Value) -> ExperimentSpec {
        ExperimentSpec::parse(&serde_json::from_value::<RunRequest>(json).unwrap(), &fashion()).unwrap()
    }

    #[test]
    fn the_summary_says_what_will_be_queued() {
        let fields = HashMap::from([
            ("arch", "resnet18"),
            ("dataset", "fashion-mnist"),
            ("train_subset", "1024"),
            ("epochs", "4"),
            ("warmup_epochs", "1"),
            ("sampling", "prune"),
            ("sampling_budget", "0.5"),
            ("seed", "7"),
            ("device", "cpu"),
        ]);
        let summary = launch_summary(|name| fields.get(name).map(|v| v.to_string()).unwrap_or_default());
        assert_eq!(
            summary,
            "1 run: ResNet-18 on fashion-mnist, 1024 training samples, 4 fine-tuning epoch(s) after 1 head-warmup epoch(s), prune selection at budget 0.5, seed 7, device cpu."
        );
        let plain = launch_summary(|name| if name == "arch" { "small_cnn".into() } else { String::new() });
        assert!(
            plain.contains("Small CNN")
                && plain.contains("every training sample")
                && plain.contains("every sample each epoch")
                && plain.contains("device auto"),
            "{plain}"
        );
    }

    fn run(id: i64, arch: &str, device: &str, images_per_sec: Option<f64>) -> protocol::RunSummary {
        serde_json::from_value(serde_json::json!({
            "id": id, "dataset": "fashion-mnist", "arch": arch, "seed": 0, "epochs": 4, "status": "succeeded", "created_at": "2026-12-07T10:00:00Z",
            "progress": {"job_id": id, "run_id": id, "status": "succeeded", "epochs": 4, "fraction": 1.0, "phase": "succeeded", "epoch": 4, "step": 8, "steps": 8,
                "images_per_sec": images_per_sec, "device": device}
        }))
        .unwrap()
    }

    #[test]
    fn the_estimate_is_timed_by_the_newest_matching_run() {
        let runs = [
            run(3, "resnet18", "cpu (the CPU build)", Some(100.0)),
            run(5, "resnet18", "cuda:0 (1 of 1 GPUs)", Some(2000.0)),
            run(4, "resnet18", "cpu", Some(50.0)),
            run(6, "small_cnn", "cpu", Some(9000.0)),
            run(7, "resnet18", "cpu", None),
        ];
        let form = |pairs: &[(&'static str, &'static str)]| {
            let mut fields =
                HashMap::from([("arch", "resnet18"), ("dataset", "fashion-mnist"), ("train_subset", "1000"), ("epochs", "5"), ("warmup_epochs", "1")]);
            fields.extend(pairs.iter().copied());
            move |name: &str| fields.get(name).map(|v| v.to_string()).unwrap_or_default()
        };
        // auto: the newest ResNet-18 run with a rate, #5; 1000 x (1 + 5) images at 2000/s.
        assert_eq!(launch_estimate(form(&[]), &runs, &fashion()), "Under a minute, timed by run #5 (2000 images/s).");
        // cpu: #4 (newer than #3); 6000 images at 50/s = 2 minutes.
        assert_eq!(launch_estimate(form(&[("device", "cpu")]), &runs, &fashion()), "About 2 minutes, timed by run #4 (50 images/s).");
        // A selection at budget 0.5 trains on half the samples each fine-tuning epoch:
        // 60000 x (1 + 5 x 0.5) = 210000 images at 50/s = 70 minutes.
        let half = form(&[("device", "cpu"), ("train_subset", ""), ("sampling", "random"), ("sampling_budget", "0.5")]);
        assert_eq!(launch_estimate(half, &runs, &fashion()), "About 70 minutes, timed by run #4 (50 images/s).");
        // full ignores a budget left in its hidden field; hours beyond 90 minutes.
        let full = form(&[("device", "cpu"), ("train_subset", ""), ("sampling", "full"), ("sampling_budget", "0.5")]);
        assert_eq!(launch_estimate(full, &runs, &fashion()), "About 2.0 hours, timed by run #4 (50 images/s).");
        assert_eq!(
            launch_estimate(form(&[("arch", "deit_small")]), &runs, &fashion()),
            "No time estimate yet: no succeeded DeiT-Small run over fashion-mnist to time it by."
        );
        assert_eq!(
            launch_estimate(form(&[("arch", "small_cnn"), ("device", "cuda")]), &runs, &fashion()),
            "No time estimate yet: no succeeded Small CNN run over fashion-mnist on cuda to time it by."
        );
        assert_eq!(launch_estimate(form(&[("epochs", "many")]), &runs, &fashion()), "No time estimate: fix the numbers above first.");
    }

    #[test]
    fn a_clone_of_a_run_launches_the_same_spec() {
        let specs = [
            spec(serde_json::json!({
                "dataset": "fashion-mnist", "arch": "deit_small", "epochs": 7, "warmup_epochs": 2, "warmup_backbone": "train", "batch_size": 48,
                "lr": 0.0003, "optimizer": "adamw", "seed": 11, "train_subset": 512, "val_subset": 128, "image_size": 32, "preprocess": "imagenet", "measure": "full_pass",
                "weights": "w/deit.safetensors", "device": "cpu", "momentum": 0.8, "nesterov": true, "weight_decay": 0.02, "schedule": "step",
                "lr_warmup_epochs": 1, "step_epochs": 3, "step_gamma": 0.5, "label_smoothing": 0.1, "drop_path": 0.05, "augment": "crop_flip",
                "mixed_precision": false, "window": "all", "retention": "a_floor", "never_learned": "exclude", "el2n_epoch": 3,
                "sampling": {"kind": "prune", "budget": 0.25, "source_run": [3, 4], "score": "tau", "keep": "bottom"}
            })),
            spec(
                serde_json::json!({"dataset": "fashion-mnist", "arch": "resnet18", "epochs": 4, "sampling": {"kind": "rbf", "budget": 0.5, "nu": 0.8, "kernel": "laplace", "due_only": true}}),
            ),
            spec(serde_json::json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 4, "sampling": {"kind": "leitner", "budget": 0.5, "decks": 3}})),
            spec(serde_json::json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 4})),
        ];
        for original in specs {
            let values = clone_values(&original, &["a".into(), "b".into()]);
            let request = crate::functions::form_request(|name| values.get(name).cloned().unwrap_or_default());
            assert_eq!(request.tags, Some(serde_json::json!("a,b")));
            assert_eq!(ExperimentSpec::parse(&request, &fashion()).unwrap(), original);
        }
    }
}
