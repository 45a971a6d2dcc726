//! `/runs/{id}`: one run's configuration, learning curves, forgetting histogram and its most
//! forgotten samples.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use protocol::{LinkedRun, Phase, Progress, RunDetail, RunStatus, SampleQuery};

use crate::components::charts::{GridChart, Heatmap, Histogram, LineChart, Series};
use crate::components::form::ActionForm;
use crate::components::live::subscribe;
use crate::components::progress::{ProgressBar, fraction_done, progress_detail};
use crate::components::time::Time;
use crate::components::{CsrfField, StatusBadge, arch_label, duration, elapsed_seconds, flatten_spec, number, percent};
use crate::functions::{UpdateRun, get_data_map, get_run, get_run_classes, get_run_log, list_samples};

/// How many lines of the job's log the run page shows.
const LOG_TAIL: u32 = 40;

/// How many of the most forgotten samples the run page shows.
const MOST_FORGOTTEN: u32 = 20;

/// "epochs 2: 50.0%, 3: 31.0% (mean 40.5%)", the training data each fine-tuning epoch of a
/// subset schedule used; `None` for a run that trained on every sample.
fn data_fraction_text(epochs: &[protocol::EpochFraction]) -> Option<String> {
    if epochs.is_empty() {
        return None;
    }
    let each: Vec<String> = epochs.iter().map(|e| format!("{}: {}", e.epoch, percent(e.fraction))).collect();
    let mean = epochs.iter().map(|e| e.fraction).sum::<f64>() / epochs.len() as f64;
    Some(format!("epochs {} (mean {})", each.join(", "), percent(mean)))
}

#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0));
    let reloads = RwSignal::new(0u32);
    let run = crate::components::resource::resource(move || (id.get(), reloads.get()), |(id, _)| get_run(id));
    let live = RwSignal::new(None::<Progress>);

    // Follow a run's progress while it can still change; a finished run needs no stream.
    Effect::new(move |_| {
        let id = id.get();
        if run.get().and_then(|r| r.ok()).is_some_and(|r| r.status.is_finished()) {
            return;
        }
        subscribe(&format!("/api/v1/runs/{id}/events"), move |progress: Progress| {
            let status = run.get_untracked().and_then(|r| r.ok()).map(|r| r.status);
            if status != Some(progress.status) {
                reloads.update(|n| *n += 1);
            }
            live.set(Some(progress));
        });
    });

    view! {
        // Also when the run cannot be loaded (a missing run's 404 page has a title too); not
        // reactive: a title reading the route's memo panicked when a link left the page.
        <Title text=format!("Run #{}", id.get_untracked()) />
        <Transition fallback=|| view! { <p class="loading">"Loading the run…"</p> }>
            {move || Suspend::new(async move {
                match run.await {
                    Err(error) => super::load_error("this run", error),
                    Ok(detail) => view! { <RunView detail live /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn RunView(detail: RunDetail, live: RwSignal<Option<Progress>>) -> impl IntoView {
    let id = detail.id;
    let spec = detail.spec.clone();
    let status = detail.status;
    let rendered = detail.progress.clone();
    let progress = Signal::derive(move || live.get().or_else(|| rendered.clone()));
    let fraction = Signal::derive(move || fraction_done(progress.get().as_ref(), status));
    let warmup_until = (spec.warmup_epochs > 0).then_some(f64::from(spec.warmup_epochs) + 0.5);
    let curve = |pick: fn(&protocol::EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        detail.epochs.iter().filter_map(|e| pick(e).map(|y| (f64::from(e.epoch), y))).collect()
    };
    let accuracy = vec![Series::new("train", "series-0", curve(|e| Some(e.train_accuracy))), Series::new("validation", "series-1", curve(|e| e.val_accuracy))];
    let loss = vec![Series::new("train", "series-0", curve(|e| Some(e.train_loss))), Series::new("validation", "series-1", curve(|e| e.val_loss))];
    let hyper = &spec.hyper;
    let schedule = match hyper.schedule {
        protocol::Schedule::Step => format!("step (× {} every {} epochs)", hyper.step_gamma, hyper.step_epochs),
        other => other.to_string(),
    };
    let optimizer = match spec.optimizer {
        protocol::Optimizer::Sgd => {
            format!("SGD (momentum {}{}, weight decay {})", hyper.momentum, if hyper.nesterov { ", Nesterov" } else { "" }, hyper.weight_decay)
        }
        protocol::Optimizer::Adamw => format!("AdamW (betas 0.9, 0.999; decoupled weight decay {})", hyper.weight_decay),
    };
    // The device the worker reported using, beside the one asked for.
    let used = detail.progress.as_ref().and_then(|p| p.heartbeat.device.clone());
    let device = match used {
        Some(used) => format!("{used} (requested {})", spec.device),
        None => format!("{} requested (none used yet)", spec.device),
    };
    let config = [
        ("Dataset", spec.dataset.clone()),
        ("Architecture", spec.arch.label().to_owned()),
        ("Pretrained weights", spec.weights.clone().unwrap_or_else(|| "none (random initialisation)".into())),
        ("Epochs", format!("{} warmup + {} fine-tuning", spec.warmup_epochs, spec.epochs)),
        ("Frozen backbone during warmup", spec.warmup_backbone.label().to_owned()),
        ("Batch size", spec.batch_size.to_string()),
        ("Learning rate", spec.lr.to_string()),
        (
            "Learning-rate schedule",
            if hyper.lr_warmup_epochs > 0 { format!("{schedule}, after {} epochs of linear warm-up", hyper.lr_warmup_epochs) } else { schedule },
        ),
        ("Optimizer", optimizer),
        ("Label smoothing / drop path", format!("{} / {}", hyper.label_smoothing, hyper.drop_path)),
        ("Augmentation", hyper.augment.to_string()),
        ("Mixed precision", if hyper.mixed_precision { "on (CUDA only; the CPU trains in float32)".to_owned() } else { "off".to_owned() }),
        ("Seed", spec.seed.to_string()),
        ("Training samples", spec.train_subset.map_or("all".to_owned(), |n| n.to_string())),
        ("Validation samples", spec.val_subset.map_or("all".to_owned(), |n| n.to_string())),
        ("Image size", format!("{0} × {0}", spec.image_size)),
        ("Preprocessing", spec.preprocess.label().to_owned()),
        ("Measurement", spec.measure.to_string()),
        (
            "Never-learned samples in rankings",
            match spec.never_learned {
                protocol::spec::NeverLearnedPolicy::Max => "the most forgotten (max, Toneva et al.)".to_owned(),
                protocol::spec::NeverLearnedPolicy::Exclude => "left out (exclude)".to_owned(),
            },
        ),
        ("Epoch window of the statistics", spec.window.label().to_owned()),
        ("Retention definition", spec.retention.label().to_owned()),
        ("Device", device),
        ("Owner", detail.owner.clone().unwrap_or_else(|| "–".into())),
        ("Tags", if detail.tags.is_empty() { "–".to_owned() } else { detail.tags.join(", ") }),
    ];
    let times = [("Created", Some(detail.created_at.clone())), ("Started", detail.started_at.clone()), ("Finished", detail.finished_at.clone())];
    let took = elapsed_seconds(detail.started_at.as_deref(), detail.finished_at.as_deref()).map_or_else(|| "–".to_owned(), |s| duration(s as f64));
    let parameters = flatten_spec(&serde_json::to_value(&spec).unwrap_or_default());
    let sampling_kind = spec.sampling.plan.kind();
    let sampling = spec.sampling.to_string();
    let data_fraction = data_fraction_text(&detail.data_fraction);
    let study = detail.study.clone();
    let (sources, derived) = (detail.source_runs.clone(), detail.derived_runs.clone());
    let last = detail.epochs.last().cloned();
    view! {
        <Title text=format!("Run #{id}") />
        <div class="page-head">
            <h1>{format!("Run #{id}")} " " <span class="run-name">{detail.name.clone()}</span> " " <StatusBadge status /></h1>
            <span class="muted">"created " <Time at=detail.created_at.clone() /></span>
            {crate::components::me().is_some_and(|who| who.role.can_launch()).then(|| view! {
                <a class="button clone" href=format!("/launch?from={id}") title="Open the launch form filled from this run">"Clone"</a>
            })}
        </div>
        {(!detail.notes.is_empty()).then(|| view! { <p class="run-notes">{detail.notes.clone()}</p> })}
        {crate::components::me().is_some_and(|who| who.may_change(detail.owner.as_deref())).then(|| view! {
            <RunEdit id name=detail.name.clone() tags=detail.tags.join(", ") notes=detail.notes.clone() />
        })}
        {detail.error.clone().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {(!status.is_finished() || status == RunStatus::Succeeded).then(|| view! {
            <div class="run-progress">
                <ProgressBar fraction label=format!("progress of run #{id}") />
                <span class="progress-detail">{move || progress.get().map(|p| progress_detail(&p)).unwrap_or_default()}</span>
            </div>
        })}
        <div class="run-grid">
            <section class="card">
                <h2>"Configuration"</h2>
                <dl class="config">
                    {config.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd data-field=k>{v}</dd> }).collect_view()}
                    {times.into_iter().map(|(k, at)| view! { <dt>{k}</dt><dd data-field=k>{match at {
                        Some(at) => view! { <Time at /> }.into_any(),
                        None => "not yet".into_any(),
                    }}</dd> }).collect_view()}
                    <dt>"Duration"</dt><dd data-field="Duration">{took}</dd>
                    <dt>"Study"</dt><dd data-field="Study">{match study {
                        Some(s) => view! { <a href=format!("/studies/{}", s.id)>{format!("#{} {}", s.id, s.name)}</a> }.into_any(),
                        None => "–".into_any(),
                    }}</dd>
                    <dt>"Sample selection"</dt><dd data-field="Sample selection" data-sampling=sampling_kind>{sampling}</dd>
                    {data_fraction.map(|text| view! { <dt>"Data per fine-tuning epoch"</dt><dd data-field="Data per fine-tuning epoch">{text}</dd> })}
                </dl>
                <Lineage sources derived />
                <details class="all-parameters">
                    <summary>{format!("All parameters ({})", parameters.len())}</summary>
                    <table class="data parameters">
                        <thead><tr><th>"Parameter"</th><th>"Value"</th></tr></thead>
                        <tbody>{parameters.into_iter().map(|(name, value)| {
                            let key = name.clone();
                            view! { <tr data-parameter=key><td class="mono">{name}</td><td class="mono">{value}</td></tr> }
                        }).collect_view()}</tbody>
                    </table>
                </details>
                {(status == RunStatus::Succeeded).then(|| view! {
                    <p class="exports">"Export: "
                        {["records.parquet", "records.csv", "samples.parquet", "samples.csv"].map(|f| view! { <a href=format!("/api/v1/runs/{id}/{f}") download="">{f}</a>" " })}
                    </p>
                })}
                {last.map(|e| view! {
                    <p class="summary">
                        {format!("Epoch {}: train accuracy {}, validation accuracy {}, {} samples recorded.",
                            e.epoch, percent(e.train_accuracy), e.val_accuracy.map(percent).unwrap_or("–".into()), detail.sample_count)}
                    </p>
                })}
            </section>
            <section class="card">
                <LineChart title="Accuracy per epoch".into() x_label="epoch".into() y_label="accuracy".into()
                    series=accuracy warmup_until=warmup_until y_range=Some((0.0, 1.0)) />
            </section>
            <section class="card">
                <LineChart title="Loss per epoch".into() x_label="epoch".into() y_label="cross-entropy".into()
                    series=loss warmup_until=warmup_until />
            </section>
            <section class="card">
                {if detail.forgetting_histogram.is_empty() {
                    view! { <p class="empty">"The forgetting histogram appears when the run finishes."</p> }.into_any()
                } else {
                    view! {
                        <Histogram title="Forgetting events per sample".into() x_label="forgetting events".into()
                            y_label="samples".into() counts=detail.forgetting_histogram.clone() />
                    }.into_any()
                }}
            </section>
        </div>
        {(status == RunStatus::Succeeded).then(|| view! {
            <div class="run-grid">
                <DataMapCard run_id=id />
                {detail.val_confusion.clone().map(|matrix| view! { <ConfusionCard matrix class_names=detail.class_names.clone() /> })}
            </div>
        }.into_any())}
        <div class="run-grid">
            {detail.analysis.clone().map(|analysis| view! { <DecayCard analysis /> })}
            {(status == RunStatus::Succeeded).then(|| view! { <ClassTable run_id=id /> })}
        </div>
        {(status == RunStatus::Succeeded).then(|| view! { <MostForgotten run_id=id dataset=spec.dataset.clone() class_names=detail.class_names.clone() /> })}
        <JobLogTail run_id=id reloads=detail.epochs.len() />
        <p class="muted">{format!("Per-epoch metrics of {} epochs; phases: ", detail.epochs.len())}
            {format!("{} warmup, {} fine-tuning.",
                detail.epochs.iter().filter(|e| e.phase == Phase::Warmup).count(),
                detail.epochs.iter().filter(|e| e.phase == Phase::Finetune).count())}
        </p>
    }
}

/// Where the run's samples came from and where its statistics went: the runs whose
/// statistics its sample selection reads, and the runs whose selection reads its own.
#[component]
fn Lineage(sources: Vec<LinkedRun>, derived: Vec<LinkedRun>) -> impl IntoView {
    let item = |r: LinkedRun| {
        let arch = arch_label(&r.arch);
        view! {
            <li data-run=r.id><a href=format!("/runs/{}", r.id)>{format!("#{}", r.id)}</a>
                {format!(" {arch}, seed {}, {} selection, ", r.seed, r.sampling)}<StatusBadge status=r.status /></li>
        }
    };
    view! {
        <div class="lineage">
            <h3>"Lineage"</h3>
            <div class="small">"Reads the statistics of: "
                {if sources.is_empty() { view! { <span class="muted">"no earlier run"</span> }.into_any() } else {
                    view! { <ul class="lineage-sources">{sources.into_iter().map(item).collect_view()}</ul> }.into_any()
                }}</div>
            <div class="small">"Runs that select samples by this run's statistics: "
                {if derived.is_empty() { view! { <span class="muted">"none yet"</span> }.into_any() } else {
                    view! { <ul class="lineage-derived">{derived.into_iter().map(item).collect_view()}</ul> }.into_any()
                }}</div>
        </div>
    }
}

/// Variability against confidence of every training sample, binned, coloured by correctness.
#[component]
fn DataMapCard(run_id: i64) -> impl IntoView {
    let map = crate::components::resource::resource(move || run_id, get_data_map);
    view! {
        <section class="card data-map">
            <Suspense fallback=|| view! { <p class="loading">"Loading the data map…"</p> }>
                {move || Suspend::new(async move {
                    match map.await {
                        Err(error) => super::load_error("the data map", error),
                        Ok(map) => {
                            let points = map.grid.points;
                            view! {
                                <GridChart title="Data map (Swayamdipta et al. 2020)".into() x_label="variability".into() y_label="confidence".into()
                                    grid=map.grid colour_label="correctness".into() />
                                <p class="muted small">{format!("{points} samples in 40 × 40 cells. Top left: easy to learn; bottom left: hard to learn; right: ambiguous.")}</p>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The last validation confusion matrix, each row as shares of the true class.
#[component]
fn ConfusionCard(matrix: Vec<Vec<u32>>, class_names: Vec<String>) -> impl IntoView {
    let shares: Vec<Vec<Option<f64>>> = matrix
        .iter()
        .map(|row| {
            let total: u64 = row.iter().map(|&n| u64::from(n)).sum();
            row.iter().map(|&n| (total > 0).then(|| f64::from(n) / total as f64)).collect()
        })
        .collect();
    let names: Vec<String> = (0..matrix.len()).map(|c| class_names.get(c).cloned().unwrap_or_else(|| format!("class {c}"))).collect();
    let short: Vec<String> = (0..matrix.len()).map(|c| c.to_string()).collect();
    let rows: Vec<String> = names.iter().enumerate().map(|(c, n)| format!("{n} ({c})")).collect();
    view! {
        <section class="card confusion">
            <Heatmap title="Validation confusion (share of each true class), last epoch".into() row_labels=rows column_labels=short
                values=shares range=(0.0, 1.0) digits=2 axes=("true class".into(), "predicted class".into()) />
        </section>
    }
}

/// The decay fits of the run under its retention definition and epoch window, and whether the
/// loss after head warmup predicts them.
#[component]
fn DecayCard(analysis: protocol::RunAnalysis) -> impl IntoView {
    let settings = analysis.settings;
    let covered = analysis.window_epochs.map_or(String::new(), |[a, b]| format!(", epochs {a}–{b}"));
    let d = analysis.decay;
    let excluded = d.never_learned + d.too_few_points + d.constant;
    let predictability = match analysis.warmup_predictability {
        None => "no head warmup, so no warmup-loss predictability".to_owned(),
        Some(tau) => {
            format!(
                "Loss after head warm-up against the decay fitted on the fine-tuning epochs only, over every sample with a defined decay: \
                 Spearman(loss, rate 1/τ) = {}, Spearman(loss, τ) = {}",
                correlation_text(analysis.warmup_vs_rate),
                correlation_text(Some(tau))
            )
        }
    };
    view! {
        <section class="card decay-card">
            <Histogram title=format!("R² of the retention-decay fits ({})", settings.retention.label()) x_label="R²".into() y_label="samples".into()
                counts=d.r2_histogram.clone() bin_width=0.05 underflow=("< 0".to_owned(), d.r2_below_zero) />
            <p class="settings" data-window=settings.window.as_str() data-retention=settings.retention.as_str() data-never-learned=settings.never_learned.as_str()>
                {format!("Computed over {}{covered}; retention {}; never-learned samples {} in rankings and class means.",
                    settings.window.label(), settings.retention.label(),
                    if settings.never_learned == protocol::spec::NeverLearnedPolicy::Max { "count as the most forgotten" } else { "are left out" })}
            </p>
            <p class="summary" data-fitted=d.fitted data-excluded=excluded data-mean-r2=d.mean_r2.map(|r| r.to_string()) data-median-r2=d.median_r2.map(|r| r.to_string())>
                {format!("{} fitted, {} excluded ({} never correct, {} too few points, {} constant); {} with R² below 0. Mean R² {}, median R² {}. \
                    The exponential beats the power law (AIC) in {} of the {} fits, the power law in {}. {predictability}.",
                    d.fitted, excluded, d.never_learned, d.too_few_points, d.constant, d.r2_below_zero,
                    d.mean_r2.map_or("–".into(), |r| format!("{r:.3}")), d.median_r2.map_or("–".into(), |r| format!("{r:.3}")),
                    d.exponential_preferred, d.fitted, d.fitted - d.exponential_preferred)}
            </p>
        </section>
    }
}

/// A correlation as "r (p = …, n = …)", or "–" when there is none.
fn correlation_text(c: Option<protocol::CorrelationView>) -> String {
    c.map_or("–".into(), |c| {
        format!("{} (p = {}, n = {})", c.r.map_or("undefined".into(), |r| format!("{r:.3}")), c.p_value.map_or("–".into(), |p| format!("{p:.2e}")), c.n)
    })
}

/// Per-class forgetting and the last epoch's validation accuracy.
#[component]
fn ClassTable(run_id: i64) -> impl IntoView {
    let report = crate::components::resource::resource(move || run_id, get_run_classes);
    view! {
        <section class="card class-table">
            <h2>"Classes"</h2>
            <Suspense fallback=|| view! { <p class="loading">"Loading classes…"</p> }>
                {move || Suspend::new(async move {
                    match report.await {
                        Err(error) => super::load_error("the classes", error),
                        Ok(report) => {
                            let last = report.val_accuracy.last().map(|a| a.accuracy.clone()).unwrap_or_default();
                            view! {
                                <table class="data">
                                    <thead><tr><th>"Class"</th><th>"Samples"</th><th>"Never learned"</th><th title="never-learned samples as the run's policy says (max: forgotten at every epoch of the window)">"Forgetting events"</th><th title="per sample of the class counted: normalised by the class's size">"Mean forgetting events per sample"</th><th>"Validation accuracy"</th></tr></thead>
                                    <tbody>{(0..report.forgetting.samples.len()).map(|c| {
                                        let name = report.class_names.get(c).cloned().unwrap_or_else(|| format!("class {c}"));
                                        let mean = report.forgetting.forgetting_mean[c];
                                        view! {
                                            <tr class="class-row" data-class=c data-mean=mean.map(|m| m.to_string()).unwrap_or_default()>
                                                <td>{name}</td>
                                                <td>{report.forgetting.samples[c]}</td>
                                                <td>{report.forgetting.never_learned[c]}</td>
                                                <td>{report.forgetting.forgetting_total.get(c).map_or("–".into(), |t| t.to_string())}</td>
                                                <td>{number(mean, 3)}</td>
                                                <td>{last.get(c).copied().flatten().map(percent).unwrap_or("–".into())}</td>
                                            </tr>
                                        }
                                    }).collect_view()}</tbody>
                                </table>
                                <p class="muted small similar-classes">{format!(
                                    "Similar classes forgotten most? Spearman over classes between mean forgetting and the class's greatest similarity to another class: \
                                     by validation confusion {}; by class-mean embeddings {}. Pairs of classes: forgotten-into counts against confusion {}.",
                                    correlation_text(report.similar_forgotten_confusion), correlation_text(report.similar_forgotten_embedding),
                                    correlation_text(report.forgetting_follows_confusion))}</p>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The newest lines of the job's log: the worker's own lines and the server's notes (leased,
/// re-queued, cancelled, finished), with the full log at `/api/v1/runs/{id}/log`.
#[component]
fn JobLogTail(run_id: i64, reloads: usize) -> impl IntoView {
    let log = crate::components::resource::resource(move || (run_id, reloads), |(run_id, _)| get_run_log(run_id, LOG_TAIL));
    view! {
        <section class="card job-log">
            <h2>"Job log " <a class="muted small-link" href=format!("/api/v1/runs/{run_id}/log?tail=2000")>"(full log)"</a></h2>
            <Suspense fallback=|| view! { <p class="loading">"Loading the log…"</p> }>
                {move || Suspend::new(async move {
                    match log.await {
                        Err(error) => super::load_error("the log", error),
                        Ok(log) if log.lines.is_empty() => view! { <p class="empty">"Nothing logged yet: the job has not been picked up by a worker."</p> }.into_any(),
                        Ok(log) => view! {
                            <pre class="log-lines" tabindex="0" aria-label="the job's log, scrollable">{log.lines.into_iter().map(|l| view! {
                                <span class=format!("log-line log-{}", l.source)>{format!("{} #{} {:>6}  {}\n", l.at, l.attempt, l.source, l.line)}</span>
                            }).collect_view()}</pre>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The samples with the most forgetting events, as thumbnails with their counts and labels.
#[component]
fn MostForgotten(run_id: i64, dataset: String, class_names: Vec<String>) -> impl IntoView {
    let samples = crate::components::resource::resource(
        move || run_id,
        |run_id| list_samples(run_id, SampleQuery { sort: Some("-forgetting_events".into()), limit: Some(MOST_FORGOTTEN), ..Default::default() }),
    );
    view! {
        <section class="card most-forgotten">
            <h2>{format!("The {MOST_FORGOTTEN} most forgotten training samples")} " "
                <a class="small-link" href=format!("/runs/{run_id}/samples")>"Browse every sample →"</a></h2>
            <Suspense fallback=|| view! { <p class="loading">"Loading samples…"</p> }>
                {move || {
                    let dataset = dataset.clone();
                    let class_names = class_names.clone();
                    Suspend::new(async move {
                        match samples.await {
                            Err(error) => super::load_error("the samples", error),
                            Ok(page) => view! {
                                <ul class="thumbs">
                                    {page.samples.into_iter().map(|s| {
                                        let label = class_names.get(s.label as usize).cloned().unwrap_or_else(|| format!("class {}", s.label));
                                        view! {
                                            <li class="thumb" data-sample-key=s.sample_key.clone()>
                                                <a href=format!("/runs/{run_id}/samples/{}", s.sample_key)><img src=format!("/api/v1/datasets/{}/train/{}.png", dataset, s.dataset_index)
                                                    alt=format!("training sample {} ({label})", s.dataset_index) width="84" height="84" loading="lazy" /></a>
                                                <span class="thumb-count" title="forgetting events: correct, then wrong at the next epoch" data-count=s.forgetting_events>{crate::components::forgotten_label(s.forgetting_events)}</span>
                                                <span class="thumb-label">{label}</span>
                                                <span class="thumb-meta muted">{format!("conf. {}", number(s.confidence, 2))}</span>
                                            </li>
                                        }
                                    }).collect_view()}
                                </ul>
                            }.into_any(),
                        }
                    })
                }}
            </Suspense>
        </section>
    }
}

/// The run's name, tags and notes, changed in place (its owner or an administrator).
#[component]
fn RunEdit(id: i64, name: String, tags: String, notes: String) -> impl IntoView {
    let update = ServerAction::<UpdateRun>::new();
    let outcome = update.value();
    // Saved: the page shows the new values (its heading, tags and notes) after a reload.
    Effect::new(move |_| {
        if let Some(Ok(_)) = outcome.get() {
            #[cfg(feature = "hydrate")]
            let _ = window().location().reload();
        }
    });
    view! {
        <details class="run-edit">
            <summary>"Edit name, tags and notes"</summary>
            <ActionForm action=update attr:class="launch-form run-edit-form">
                <CsrfField />
                <input type="hidden" name="run_id" value=id />
                <label class="field"><span class="field-label">"Name"</span>
                    <input type="text" name="name" value=name maxlength="80" autocomplete="off" aria-describedby="edit-name-hint" />
                    <span class="hint" id="edit-name-hint">"empty = the default (architecture-dataset-seed)"</span>
                </label>
                <label class="field"><span class="field-label">"Tags"</span>
                    <input type="text" name="tags" value=tags autocomplete="off" aria-describedby="edit-tags-hint" />
                    <span class="hint" id="edit-tags-hint">"separated by commas"</span>
                </label>
                <label class="field"><span class="field-label">"Notes"</span>
                    <textarea name="notes" rows="3" maxlength="4000">{notes}</textarea>
                </label>
                <button type="submit" class="button" disabled=move || update.pending().get()>"Save"</button>
                {move || outcome.get().map(|result| match result {
                    Ok(_) => view! { <p class="saved" role="status">"Saved."</p> }.into_any(),
                    Err(error) => view! { <p class="error" role="alert">{super::form_error("nothing was changed", error)}</p> }.into_any(),
                })}
            </ActionForm>
        </details>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_field_of_a_spec_is_a_parameter() {
        let spec = serde_json::json!({"lr": 0.05, "arch": "resnet18", "weights": null, "sampling": {"budget": 0.5, "kind": "prune", "source_run": [3, 4]}});
        let flat = flatten_spec(&spec);
        let names: Vec<&str> = flat.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["arch", "lr", "sampling.budget", "sampling.kind", "sampling.source_run", "weights"]);
        assert_eq!(flat[0].1, "resnet18");
        assert_eq!(flat[1].1, "0.05");
        assert_eq!(flat[4].1, "[3,4]");
        assert_eq!(flat[5].1, "null");
    }
}
