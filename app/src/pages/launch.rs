//! `/launch`: the form that queues one fine-tuning run.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use protocol::spec::{Retention, Window};
use protocol::{Arch, Augment, Device, LaunchOutcome, Measure, Optimizer, Schedule};

use crate::components::form::ActionForm;
use crate::functions::{list_datasets, LaunchRun};

/// A labelled text input with its hint and, after a refused submission, its error.
#[component]
fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(optional)] value: &'static str,
    #[prop(optional, into)] hint: String,
    error: Signal<Option<String>>,
) -> impl IntoView {
    view! {
        <label class="field" class:invalid=move || error.get().is_some()>
            <span class="field-label">{label}</span>
            <input type="text" name=name id=name value=value inputmode="decimal" autocomplete="off"
                aria-invalid=move || if error.get().is_some() { "true" } else { "false" } />
            <span class="hint">{hint}</span>
            <span class="field-error" data-field=name>{move || error.get()}</span>
        </label>
    }
}

/// A labelled drop-down of fixed choices.
#[component]
fn Choice(
    label: &'static str,
    name: &'static str,
    options: Vec<(String, String, bool)>,
    error: Signal<Option<String>>,
) -> impl IntoView {
    view! {
        <label class="field" class:invalid=move || error.get().is_some()>
            <span class="field-label">{label}</span>
            <select name=name id=name>
                {options.into_iter().map(|(value, text, enabled)| view! {
                    <option value=value disabled={!enabled}>{text}</option>
                }).collect_view()}
            </select>
            <span class="field-error" data-field=name>{move || error.get()}</span>
        </label>
    }
}

/// The score field's hint: every score `dynamics` knows.
fn score_hint() -> String {
    format!("prune: {}", protocol::SampleScore::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
}

#[component]
pub fn LaunchPage() -> impl IntoView {
    let launch = ServerAction::<LaunchRun>::new();
    let outcome = launch.value();
    let datasets = crate::components::resource::resource(|| (), |_| list_datasets());
    let error = move |field: &'static str| {
        Signal::derive(move || outcome.get().and_then(|r| r.ok()).and_then(|o| o.errors.get(field).map(str::to_owned)))
    };

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
    let never_learned = vec![
        ("max".to_owned(), "the most forgotten (max, Toneva et al.)".to_owned(), true),
        ("exclude".to_owned(), "left out (exclude)".to_owned(), true),
    ];
    let devices = Device::ALL.iter().map(|d| (d.as_str().to_owned(), d.as_str().to_owned(), true)).collect::<Vec<_>>();
    let schedules = Schedule::ALL.iter().map(|s| (s.as_str().to_owned(), s.as_str().to_owned(), true)).collect::<Vec<_>>();
    let kinds = protocol::sampling::KINDS.iter().map(|k| (k.to_string(), k.replace('_', " "), true)).collect::<Vec<_>>();
    let warmup_backbones = protocol::WarmupBackbone::ALL.iter().map(|w| (w.as_str().to_owned(), w.label().to_owned(), true)).collect::<Vec<_>>();
    // The default (flip) first, so the form sends it unless changed.
    let augments = [Augment::Flip, Augment::CropFlip, Augment::None]
        .iter()
        .map(|a| (a.as_str().to_owned(), a.as_str().replace('_', " + "), true))
        .collect::<Vec<_>>();

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
        <ActionForm action=launch attr:class="launch-form">
            <crate::components::CsrfField />
            <fieldset>
                <legend>"Data and model"</legend>
                <Transition fallback=|| view! { <p class="loading">"Loading datasets…"</p> }>
                    {move || Suspend::new(async move {
                        let options = match datasets.await {
                            Ok(list) => list.into_iter().map(|d| {
                                let text = format!("{} ({} train / {} val, {} classes)", d.name, d.train_size, d.val_size, d.num_classes);
                                (d.name, text, true)
                            }).collect(),
                            Err(_) => vec![],
                        };
                        view! { <Choice label="Dataset" name="dataset" options error=error("dataset") /> }
                    })}
                </Transition>
                <Choice label="Architecture" name="arch" options=archs error=error("arch") />
                <Field label="Training subset" name="train_subset" value="1000" hint="samples; empty = the whole training split" error=error("train_subset") />
                <Field label="Validation subset" name="val_subset" value="1000" hint="samples evaluated each epoch; empty = all" error=error("val_subset") />
                <Field label="Image size" name="image_size" hint="pixels per side; empty = the dataset's own" error=error("image_size") />
                <Field label="Pretrained weights" name="weights" hint=".safetensors under a data root; empty = random initialisation" error=error("weights") />
            </fieldset>
            <fieldset>
                <legend>"Schedule"</legend>
                <Field label="Epochs" name="epochs" value="5" hint="fine-tuning epochs" error=error("epochs") />
                <Field label="Head-warmup epochs" name="warmup_epochs" value="0" hint="backbone frozen, before fine-tuning" error=error("warmup_epochs") />
                <Choice label="Frozen backbone during warmup" name="warmup_backbone" options=warmup_backbones error=error("warmup_backbone") />
                <Field label="Batch size" name="batch_size" value="128" error=error("batch_size") />
                <Field label="Learning rate" name="lr" value="0.01" error=error("lr") />
                <Choice label="Optimizer" name="optimizer" options=optimizers error=error("optimizer") />
                <Choice label="Learning-rate schedule" name="schedule" options=schedules error=error("schedule") />
                <Field label="Learning-rate warmup epochs" name="lr_warmup_epochs" value="0" hint="linear, at the start of fine-tuning" error=error("lr_warmup_epochs") />
                <Choice label="Augmentation" name="augment" options=augments error=error("augment") />
                <Field label="Seed" name="seed" value="0" error=error("seed") />
            </fieldset>
            <fieldset>
                <legend>"Training schedule"</legend>
                <Choice label="Schedule" name="sampling" options=kinds error=error("sampling") />
                <Field label="Budget" name="sampling_budget" hint="share of the training set each fine-tuning epoch, in (0, 1]; not for full" error=error("sampling.budget") />
                <Field label="Source run" name="source_run" hint="spaced_repetition and prune: an earlier succeeded run over the same samples, or several (one per seed, separated by commas) combined as Toneva et al. and Paul et al. combine seeds" error=error("sampling.source_run") />
                <Field label="Score" name="score" hint=score_hint() error=error("sampling.score") />
                <Field label="Keep" name="keep" hint="prune: top or bottom of the score" error=error("sampling.keep") />
                <Field label="Decks" name="decks" hint="leitner: deck k is reviewed every 2^k epochs (default 5)" error=error("sampling.decks") />
                <Field label="Recall threshold ν" name="nu" hint="rbf: in (0, 1), default 0.9" error=error("sampling.nu") />
            </fieldset>
            <fieldset>
                <legend>"Analysis"</legend>
                <Choice label="Epoch window" name="window" options=windows error=error("window") />
                <Choice label="Retention definition" name="retention" options=retentions error=error("retention") />
                <Choice label="Never-learned samples" name="never_learned" options=never_learned error=error("never_learned") />
                <p class="hint">"Recorded with the run's statistics and shown beside them. The window and definition decide forgetting events, cartography and the decay fits; the policy decides how never-learned samples rank and count in class means."</p>
            </fieldset>
            <fieldset>
                <legend>"Recording"</legend>
                <Choice label="Measurement" name="measure" options=measures error=error("measure") />
                <Choice label="Device" name="device" options=devices error=error("device") />
            </fieldset>
            <div class="form-actions">
                <button type="submit" class="button primary" disabled=move || launch.pending().get()>
                    {move || if launch.pending().get() { "Launching…" } else { "Launch" }}
                </button>
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
