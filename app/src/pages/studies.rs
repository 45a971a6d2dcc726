//! `/studies`: every study and the form that launches one (from a preset or field by field);
//! `/studies/{id}`: a study's grid of runs filling live, and its report: the findings in the
//! form of the study of docs/design.md, beside the paper's numbers, and the sample-selection arms.

use std::collections::HashSet;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map};
use protocol::study::{ArmCurve, Finding, Interval, StudyDetail, finding_name, presets};
use protocol::{LaunchOutcome, Progress, RunStatus};

use crate::components::CsrfField;
use crate::components::arch_label;
use crate::components::charts::{Band, DASHES, LineChart, Series, arch_class};
use crate::components::form::ActionForm;
use crate::components::live::subscribe;
use crate::components::time::Time;
use crate::components::{StatusBadge, number, percent};
use crate::functions::{CancelStudy, LaunchStudy, get_study, list_datasets, list_studies};

/// `0.8123 ± 0.0412 (n = 3)`, as a percentage when `as_percent`.
fn interval_text(interval: Option<Interval>, as_percent: bool) -> String {
    let Some(i) = interval else { return "–".into() };
    let show = |v: f64| if as_percent { percent(v) } else { format!("{v:.4}") };
    match i.half_width {
        Some(h) => format!("{} ± {} (n = {})", show(i.mean), if as_percent { format!("{:.1} pts", h * 100.0) } else { format!("{h:.4}") }, i.n),
        None => format!("{} (n = {})", show(i.mean), i.n),
    }
}

#[component]
pub fn StudiesPage() -> impl IntoView {
    let studies = crate::components::resource::resource(|| (), |_| list_studies());
    let datasets = crate::components::resource::resource(|| (), |_| list_datasets());
    let launch = ServerAction::<LaunchStudy>::new();
    let outcome = launch.value();
    let can_launch = crate::components::me().is_some_and(|who| who.role.can_launch());
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(LaunchOutcome { run_id: Some(id), .. })) = outcome.get() {
            navigate(&format!("/studies/{id}"), Default::default());
        }
    });
    // A field's message: its own, or its entries' (`arms[1]` under `arms`).
    let error = move |field: &'static str| {
        move || {
            outcome
                .get()
                .and_then(|r| r.ok())
                .and_then(|o| o.errors.0.iter().find(|(k, _)| k.as_str() == field || k.starts_with(&format!("{field}["))).map(|(_, m)| m.clone()))
        }
    };
    view! {
        <Title text="Studies" />
        <h1>"Studies"</h1>
        <p class="lede">"A study is a grid of runs — architectures × seeds × sample selections on one dataset — launched together and reported as one."</p>
        <Suspense fallback=|| view! { <p class="loading">"Loading studies…"</p> }>
            {move || Suspend::new(async move {
                match studies.await {
                    Err(error) => super::load_error("the studies", error),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No study yet: launch one below."</p> }.into_any(),
                    Ok(list) => view! {
                        <table class="data studies-table">
                            <thead><tr><th>"Study"</th><th>"Name"</th><th class="num">"Runs"</th><th class="num">"Succeeded"</th><th class="num">"Queued or running"</th><th class="num">"Failed or cancelled"</th><th>"Created"</th></tr></thead>
                            <tbody>{list.into_iter().map(|s| view! {
                                <tr data-study=s.id>
                                    <td><a href=format!("/studies/{}", s.id)>{format!("#{}", s.id)}</a></td><td>{s.name}</td>
                                    <td class="num">{s.runs}</td><td class="num">{s.succeeded}</td><td class="num">{s.active}</td><td class="num">{s.failed}</td>
                                    <td class="muted"><Time at=s.created_at /></td>
                                </tr>
                            }).collect_view()}</tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Suspense>
        <h2 class="section">"Launch a study"</h2>
        {(!can_launch).then(|| view! { <p class="empty">"Viewers browse studies but cannot launch them; ask an administrator for the member role."</p> })}
        <ActionForm action=launch attr:class="launch-form study-form" attr:hidden=!can_launch>
            <CsrfField />
            <fieldset>
                <legend>"Grid"</legend>
                <label class="field"><span class="field-label">"Preset"</span>
                    <select name="preset">
                        <option value="">"none: fill every field"</option>
                        {presets().into_iter().map(|(name, about, _)| view! { <option value=name title=about>{name}</option> }).collect_view()}
                    </select>
                    <span class="hint">"Fields left empty take the preset's values."</span>
                </label>
                <StudyField label="Name" name="name" hint="empty: the preset's name" error=error("name") />
                <label class="field"><span class="field-label">"Dataset"</span>
                    <select name="dataset">
                        <option value="">"the preset's"</option>
                        <Suspense>{move || Suspend::new(async move {
                            datasets.await.unwrap_or_default().into_iter().map(|d| view! { <option value=d.name.clone()>{d.name.clone()}</option> }).collect_view()
                        })}</Suspense>
                    </select>
                    <span class="field-error" data-field="base.dataset">{error("base.dataset")}</span>
                </label>
                <StudyField label="Architectures" name="archs" hint="comma-separated: resnet18, deit_small, small_cnn" error=error("archs") />
                <StudyField label="Seeds" name="seeds" hint="comma-separated, e.g. 1,2,3" error=error("seeds") />
                <StudyField label="Arms" name="arms" value="full" hint="sample selections, comma-separated: full, random, easy_to_hard, hard_to_easy, spaced_repetition, leitner, rbf" error=error("arms") />
                <StudyField label="Budget" name="budget" value="0.5" hint="share of the training set each epoch, for every arm but full" error=error("budget") />
                <StudyField label="Source run" name="source_run" hint="spaced_repetition and prune arms: the earlier run whose τ or scores they read, or several (one per seed, separated by commas)" error=error("source_run") />
            </fieldset>
            <fieldset>
                <legend>"Shared settings"</legend>
                <StudyField label="Training subset" name="train_subset" hint="samples" error=error("base.train_subset") />
                <StudyField label="Validation subset" name="val_subset" error=error("base.val_subset") />
                <StudyField label="Image size" name="image_size" error=error("base.image_size") />
                <StudyField label="Head-warmup epochs" name="warmup_epochs" error=error("base.warmup_epochs") />
                <StudyField label="Epochs" name="epochs" hint="fine-tuning" error=error("base.epochs") />
                <StudyField label="Batch size" name="batch_size" error=error("base.batch_size") />
                <StudyField label="Learning rate" name="lr" error=error("base.lr") />
                <StudyField label="Device" name="device" hint="auto, cpu or cuda" error=error("base.device") />
            </fieldset>
            <fieldset>
                <legend>"Analysis"</legend>
                <StudyChoice label="Epoch window" name="window" error=error("base.window")
                    options=protocol::spec::Window::ALL.iter().map(|w| (w.as_str(), w.label())).collect() />
                <StudyChoice label="Retention definition" name="retention" error=error("base.retention")
                    options=protocol::spec::Retention::ALL.iter().map(|r| (r.as_str(), r.label())).collect() />
                <StudyChoice label="Never-learned samples" name="never_learned" error=error("base.never_learned")
                    options=vec![("max", "the most forgotten (max, Toneva et al.)"), ("exclude", "left out (exclude)")] />
                <p class="hint">"Every run of the study is analysed so; each finding of the report names its window and definition."</p>
            </fieldset>
            <div class="form-actions">
                <button type="submit" class="button primary" disabled=move || launch.pending().get()>
                    {move || if launch.pending().get() { "Launching…" } else { "Launch the study" }}
                </button>
                {move || outcome.get().map(|result| match result {
                    Ok(LaunchOutcome { run_id: Some(id), .. }) => view! { <p class="notice" role="status">{format!("Study #{id} queued.")}</p> }.into_any(),
                    Ok(LaunchOutcome { message, errors, .. }) => view! {
                        <div class="error" role="alert">
                            <p>{message.unwrap_or_else(|| "The study was not queued.".into())}</p>
                            <ul>{errors.0.into_iter().map(|(field, message)| view! { <li><code>{field}</code>": "{message}</li> }).collect_view()}</ul>
                        </div>
                    }.into_any(),
                    Err(error) => view! { <p class="error" role="alert">{super::form_error("the study was not launched", error)}</p> }.into_any(),
                })}
            </div>
        </ActionForm>
    }
}

#[component]
fn StudyField(
    label: &'static str,
    name: &'static str,
    #[prop(optional)] value: &'static str,
    #[prop(optional)] hint: &'static str,
    error: impl Fn() -> Option<String> + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <label class="field">
            <span class="field-label">{label}</span>
            <input type="text" name=name value=value autocomplete="off" />
            <span class="hint">{hint}</span>
            <span class="field-error" data-field=name>{error}</span>
        </label>
    }
}

/// A drop-down of fixed choices whose first entry leaves the choice to the preset (or the
/// default).
#[component]
fn StudyChoice(
    label: &'static str,
    name: &'static str,
    options: Vec<(&'static str, &'static str)>,
    error: impl Fn() -> Option<String> + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <label class="field">
            <span class="field-label">{label}</span>
            <select name=name>
                <option value="">"the preset's (or the default)"</option>
                {options.into_iter().map(|(value, text)| view! { <option value=value>{text}</option> }).collect_view()}
            </select>
            <span class="field-error" data-field=name>{error}</span>
        </label>
    }
}

#[component]
pub fn StudyPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0));
    let reloads = RwSignal::new(0u32);
    let study = crate::components::resource::resource(move || (id.get(), reloads.get()), |(id, _)| get_study(id));
    let cancel = ServerAction::<CancelStudy>::new();
    Effect::new(move |_| {
        if cancel.value().get().is_some() {
            reloads.update(|n| *n += 1);
        }
    });
    // A run of this study changing status redraws the grid and the report.
    subscribe("/api/v1/events", move |progress: Progress| {
        let known = study.get_untracked().and_then(|s| s.ok()).and_then(|s| s.runs.iter().find(|r| r.run.id == progress.run_id).map(|r| r.run.status));
        if known.is_some_and(|status| status != progress.status) {
            reloads.update(|n| *n += 1);
        }
    });
    view! {
        <Title text=format!("Study #{}", id.get_untracked()) />
        <Transition fallback=|| view! { <p class="loading">"Loading the study…"</p> }>
            {move || Suspend::new(async move {
                match study.await {
                    Err(error) => super::load_error("this study", error),
                    Ok(detail) => view! { <StudyView detail cancel /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn StudyView(detail: StudyDetail, cancel: ServerAction<CancelStudy>) -> impl IntoView {
    let total = detail.runs.len();
    let succeeded = detail.runs.iter().filter(|r| r.run.status == RunStatus::Succeeded).count();
    let active = detail.runs.iter().filter(|r| !r.run.status.is_finished()).count();
    let id = detail.id;
    view! {
        <Title text=format!("Study #{id}") />
        <div class="page-head">
            <h1>{format!("Study #{id}: {}", detail.name)}</h1>
            <span class="muted">{format!("{} · created ", detail.dataset)}<Time at=detail.created_at.clone() /></span>
        </div>
        <p class="lede study-progress" data-succeeded=succeeded data-total=total>
            {format!("{succeeded} of {total} runs succeeded, {active} queued or running. ")}
            <a href=format!("/?tag=study-{id}")>"These runs in the runs table"</a>" · "
            <a class="report-download" href=format!("/api/v1/studies/{id}/report.html") download=format!("study-{id}-report.html")>"Download the report (one HTML file with its figures)"</a>
        </p>
        {(active > 0 && crate::components::me().is_some_and(|who| who.role.can_launch())).then(|| view! {
            <ActionForm action=cancel attr:class="inline-form">
                <CsrfField />
                <input type="hidden" name="id" value=id />
                <button class="button small" type="submit">"Cancel the study's unfinished runs"</button>
            </ActionForm>
        })}
        <StudyGrid detail=detail.clone() />
        <Report detail=detail.clone() />
    }
    .into_any()
}

/// The study's architectures, each once, in the order of the plan.
fn distinct_archs(detail: &StudyDetail) -> Vec<String> {
    let mut archs: Vec<String> = detail.archs.iter().cloned().collect::<HashSet<_>>().into_iter().collect();
    archs.sort_by_key(|a| detail.archs.iter().position(|b| b == a));
    archs
}

/// One table per arm: architectures by seeds, each cell a run and its status.
#[component]
fn StudyGrid(detail: StudyDetail) -> impl IntoView {
    let archs = distinct_archs(&detail);
    view! {
        {detail.arms.iter().enumerate().map(|(arm, arm_name)| view! {
            <section class="card study-grid">
                <h2>{format!("Arm {}: {arm_name}", arm + 1)}</h2>
                <table class="data grid-table">
                    <thead><tr><th>"Architecture"</th>{detail.seeds.iter().map(|s| view! { <th>{format!("seed {s}")}</th> }).collect_view()}</tr></thead>
                    <tbody>{archs.iter().map(|arch| view! {
                        <tr>
                            <td>{arch.clone()}</td>
                            {detail.seeds.iter().map(|&seed| {
                                let run = detail.runs.iter().find(|r| r.arm == arm && &r.arch == arch && r.seed == seed);
                                match run {
                                    Some(r) => view! { <td class="grid-cell" data-run=r.run.id data-status=r.run.status.as_str()>
                                        <a href=format!("/runs/{}", r.run.id)>{format!("#{}", r.run.id)}</a>" "<StatusBadge status=r.run.status />
                                    </td> }.into_any(),
                                    None => view! { <td class="muted">"–"</td> }.into_any(),
                                }
                            }).collect_view()}
                        </tr>
                    }).collect_view()}</tbody>
                </table>
            </section>
        }).collect_view()}
    }
    .into_any()
}

/// A finding's window or definition (`+`-joined when its runs differ) in words; "–" for none.
fn settings_text(names: &str, label: fn(&str) -> Option<&'static str>) -> String {
    if names.is_empty() {
        return "–".into();
    }
    names.split('+').map(|n| label(n).unwrap_or("?").to_owned()).collect::<Vec<_>>().join(" and ")
}

#[component]
fn FindingsTable(findings: Vec<Finding>, published: Vec<protocol::study::Published>) -> impl IntoView {
    view! {
        <table class="data intervals-table">
            <thead><tr><th>"Finding"</th><th>"Architecture"</th><th>"Mean ± 95 % interval"</th><th>"n"</th><th>"Interval"</th><th>"Epochs"</th><th>"Retention"</th><th>"One value is"</th><th>"Beside it"</th><th>"The paper"</th></tr></thead>
            <tbody>{findings.into_iter().map(|f| {
                let paper = f.published.and_then(|i| published.get(i)).map(|p| p.paper.clone()).unwrap_or_default();
                view! {
                    <tr data-key=f.key.clone() data-arch=f.arch.clone().unwrap_or_default() data-name=finding_name(&f.key)
                        data-mean=f.value.map(|i| i.mean.to_string()).unwrap_or_default() data-n=f.value.map(|i| i.n.to_string()).unwrap_or_default()
                        data-window=f.window.clone() data-retention=f.retention.clone()>
                        <td class="finding-name">{finding_name(&f.key)}</td><td>{f.arch.clone().unwrap_or_else(|| "all".into())}</td>
                        <td class="num">{interval_text(f.value, false)}</td><td class="num">{f.value.map_or("–".into(), |i| i.n.to_string())}</td>
                        <td class="muted small method">{f.method.clone()}</td>
                        <td class="small window">{settings_text(&f.window, |w| protocol::spec::Window::parse(w).map(|w| if w == protocol::spec::Window::FineTuning { "fine-tuning" } else { "all (warm-up included)" }))}</td>
                        <td class="small retention">{settings_text(&f.retention, |r| protocol::spec::Retention::parse(r).map(protocol::spec::Retention::label))}</td><td class="muted small">{f.over.clone()}</td>
                        <td class="muted small">{f.note.clone().unwrap_or_default()}</td><td class="small">{paper}</td>
                    </tr>
                }
            }).collect_view()}</tbody>
        </table>
    }
    .into_any()
}

/// One chart per metric and x axis (validation accuracy and macro-F1, against epochs and
/// against training samples seen), each with a line and a 95 % band over seeds per
/// architecture and sample selection: coloured by architecture (the colours of every other
/// chart), dashed by sample selection, named "ResNet-18 · random" in the legend.
#[component]
fn ArmCurves(curves: Vec<ArmCurve>) -> impl IntoView {
    let arms = {
        let mut arms: Vec<String> = Vec::new();
        for c in &curves {
            if !arms.contains(&c.arm) {
                arms.push(c.arm.clone());
            }
        }
        arms
    };
    let dash = move |arm: &str| DASHES[arms.iter().position(|a| a == arm).unwrap_or(0) % DASHES.len()];
    let warmup = curves
        .iter()
        .flat_map(|c| c.points.iter())
        .filter(|p| p.phase == protocol::Phase::Warmup)
        .map(|p| p.epoch as f64)
        .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))));
    let chart = |metric: &'static str, by_samples: bool| {
        let value = move |p: &protocol::study::CurvePoint| if metric == "accuracy" { p.accuracy } else { p.macro_f1 };
        let x = move |p: &protocol::study::CurvePoint| if by_samples { p.samples_seen } else { p.epoch as f64 };
        let series = curves
            .iter()
            .map(|c| {
                let points = c.points.iter().filter_map(|p| Some((x(p), value(p)?.mean))).collect();
                Series::new(format!("{} · {}", arch_label(&c.arch), c.arm), arch_class(&c.arch), points).styled(dash(&c.arm))
            })
            .collect::<Vec<_>>();
        let bands = curves
            .iter()
            .map(|c| Band {
                class: arch_class(&c.arch),
                points: c
                    .points
                    .iter()
                    .filter_map(|p| {
                        let v = value(p)?;
                        let h = v.half_width?;
                        Some((x(p), v.mean - h, v.mean + h))
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        let name = if metric == "accuracy" { "Validation accuracy" } else { "Validation macro-F1" };
        let (x_label, title) =
            if by_samples { ("training samples seen", format!("{name} against samples seen")) } else { ("epoch", format!("{name} per epoch")) };
        let warmup_until = if by_samples { None } else { warmup };
        let whole_x = !by_samples;
        view! {
            <div class="arm-curves" data-metric=metric data-x=if by_samples { "samples" } else { "epoch" }>
                <LineChart title x_label=x_label.to_string() y_label=name.to_string() series bands warmup_until y_range=Some((0.0, 1.0)) whole_x />
            </div>
        }
    };
    view! { <div class="charts">{chart("accuracy", false)}{chart("accuracy", true)}{chart("macro_f1", false)}{chart("macro_f1", true)}</div> }.into_any()
}

#[component]
fn Report(detail: StudyDetail) -> impl IntoView {
    let archs = distinct_archs(&detail);
    let report = detail.report;
    let published = report.published.clone();
    let paper = move |i: usize| published.get(i).map(|p| p.paper.clone()).unwrap_or_default();
    let compare_link = report.comparison.as_ref().map(|c| format!("/compare?runs={}", c.runs.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",")));
    view! {
        <section class="card findings study-report">
            <h2>{format!("Findings: the study's first arm ({}), top 10 % by forgetting events", detail.arms.first().cloned().unwrap_or_default())}</h2>
            {match report.comparison.clone() {
                None => view! { <p class="empty">{report.comparison_note.clone().unwrap_or_default()}</p> }.into_any(),
                Some(c) => {
                    let s = c.summary.clone().unwrap_or_else(|| protocol::CompareSummary { cross_arch_jaccard: None, cross_arch_pairs: 0, cross_seed_jaccard: None, cross_seed_spearman: None, cross_seed_pairs: 0, chance: c.chance, per_arch: vec![] });
                    // One row per finding, one column per architecture; a finding across
                    // architectures spans them. The headline numbers are the findings' own,
                    // with their intervals and n.
                    let columns = archs.len().max(1);
                    let per_arch = |cell: &dyn Fn(&str) -> String| archs.iter().map(|arch| view! { <td data-arch=arch.clone()>{cell(arch)}</td> }).collect_view();
                    let summary_of = |arch: &str| s.per_arch.iter().find(|a| a.arch == arch).cloned();
                    let r2 = per_arch(&|arch| summary_of(arch).map_or("–".into(), |a| {
                        let [never, few, constant] = a.excluded_by_reason;
                        format!("mean {}, median {} over {} fits; excluded {} ({never} never learned, {few} too few points, {constant} constant); exponential beats the power law (AIC) in {} of {}",
                            number(a.mean_r2, 3), number(a.median_r2, 3), a.fitted, a.excluded, a.exponential_preferred, a.fitted)
                    }));
                    let spearman = per_arch(&|arch| summary_of(arch).map_or("–".into(), |a| format!("{} (Spearman-Brown {})", number(a.cross_seed_spearman, 4), number(a.reliability, 3))));
                    let warmup = per_arch(&|arch| summary_of(arch).map_or("–".into(), |a| number(a.warmup_spearman, 3)));
                    let found = |key: &str, arch: Option<&str>| report.findings.iter().find(|f| f.key == key && f.arch.as_deref() == arch).and_then(|f| f.value);
                    let cross_seed = per_arch(&|arch| interval_text(found("cross_seed_jaccard", Some(arch)), false));
                    let (same_seed, all_pairs) = (found("cross_arch_jaccard", None), found("cross_arch_jaccard_all_pairs", None));
                    let mean = |i: Option<Interval>| i.map(|i| i.mean.to_string()).unwrap_or_default();
                    view! {
                        <table class="data findings-table">
                            <thead><tr><th>"Finding"</th>
                                {archs.iter().map(|a| view! { <th data-arch=a.clone()>{crate::components::arch_label(a)}</th> }).collect_view()}
                                <th>{format!("The paper ({})", protocol::study::PAPER_SHORT)}</th></tr></thead>
                            <tbody>
                                <tr data-finding="cross-arch" data-statistic="cross_arch_jaccard" data-value=mean(same_seed)>
                                    <td class="finding-name">{finding_name("cross_arch_jaccard")}</td>
                                    <td colspan=columns>{format!("{} over seeds (pairs of architectures with one seed); chance {:.4}", interval_text(same_seed, false), s.chance)}</td><td>{paper(0)}</td></tr>
                                <tr data-finding="cross-arch-all-pairs" data-statistic="cross_arch_jaccard_all_pairs" data-value=mean(all_pairs)>
                                    <td class="finding-name">{finding_name("cross_arch_jaccard_all_pairs")}</td>
                                    <td colspan=columns>{format!("{} over {} pairs of any seeds (jackknife over seeds)", interval_text(all_pairs, false), s.cross_arch_pairs)}</td><td>"not reported"</td></tr>
                                <tr data-finding="cross-seed-jaccard" data-statistic="cross_seed_jaccard">
                                    <td class="finding-name">{finding_name("cross_seed_jaccard")}</td>{cross_seed}<td>"not reported"</td></tr>
                                <tr data-finding="r2"><td class="finding-name">{finding_name("mean_r2")}</td>{r2}<td>{paper(1)}</td></tr>
                                <tr data-finding="cross-seed" data-statistic="cross_seed_spearman"><td class="finding-name">{finding_name("cross_seed_spearman")}</td>{spearman}<td>{paper(2)}</td></tr>
                                <tr data-finding="warmup"><td class="finding-name">{finding_name("warmup_spearman")}</td>{warmup}<td>{paper(3)}</td></tr>
                            </tbody>
                        </table>
                        <p class="muted small paper-cited">{format!("The paper: {}.", protocol::study::PAPER)}</p>
                    }.into_any()
                }
            }}
            {compare_link.map(|href| view! { <p class="no-print"><a href=href>"Open the full comparison (heatmaps, pairs, classes) →"</a></p> })}
        </section>
        <section class="card study-intervals">
            <h2>"Findings with 95 % intervals"</h2>
            {if report.findings.is_empty() {
                view! { <p class="empty">{report.comparison_note.clone().unwrap_or_else(|| "No findings yet.".into())}</p> }.into_any()
            } else {
                view! { <FindingsTable findings=report.findings.clone() published=report.published.clone() /> }.into_any()
            }}
        </section>
        <section class="card study-arms">
            <h2>"Arms: final validation accuracy and macro-F1 over seeds (95 % t intervals)"</h2>
            <p class="muted reference-arm" data-reference=report.reference_arm.clone().unwrap_or_default()>{match &report.reference_arm {
                Some(reference) => format!("Differences are against the reference arm, {reference}, paired by seed; only arms at its budget are paired (the full arm trains on every sample)."),
                None => "No random arm: no paired differences.".to_owned(),
            }}</p>
            <table class="data arms-table">
                <thead><tr><th>"Arm"</th><th>"Architecture"</th><th class="num">"Samples per epoch"</th><th>"Data per fine-tuning epoch"</th><th>"Accuracy"</th><th>"Macro-F1"</th><th>"Accuracy − random (paired by seed)"</th><th>"Macro-F1 − random"</th></tr></thead>
                <tbody>{report.arms.into_iter().map(|a| view! {
                    <tr data-arm=a.arm.clone() data-arch=a.arch.clone() data-accuracy=a.accuracy.map(|i| i.mean.to_string()).unwrap_or_default()>
                        <td>{a.arm.clone()}</td><td>{a.arch.clone()}</td>
                        <td class="num">{a.samples_per_epoch.map(|n| n.to_string()).unwrap_or("–".into())}</td>
                        <td class="data-fraction">{interval_text(a.data_fraction, true)}</td>
                        <td>{interval_text(a.accuracy, true)}</td><td>{interval_text(a.macro_f1, false)}</td><td>{interval_text(a.accuracy_vs_random, true)}</td><td>{interval_text(a.macro_f1_vs_random, false)}</td>
                    </tr>
                }).collect_view()}</tbody>
            </table>
            <p class="muted small">{format!("The paper on sample selections: {}.", report.published.get(4).map(|p| p.paper.clone()).unwrap_or_default())}</p>
        </section>
        <section class="card study-curves">
            <h2>"Over training: validation accuracy and macro-F1 by architecture (mean over seeds, 95 % band)"</h2>
            <p class="muted small">"One chart per metric; colour is the architecture, the dash is the sample selection (arm); each band is a 95 % t interval over the seeds."</p>
            {if report.curves.is_empty() {
                view! { <p class="empty">"The curves appear when a run of the study has succeeded."</p> }.into_any()
            } else {
                view! { <ArmCurves curves=report.curves.clone() /> }.into_any()
            }}
        </section>
    }
    .into_any()
}

/// What the report file adds to the site's stylesheet: no controls, and print-friendly.
#[cfg(feature = "ssr")]
const DOCUMENT_CSS: &str = "main.report-document { max-width: 1180px; margin: 0 auto; padding: 24px; }
.svg-button, .no-print { display: none; }
@media print { .card { break-inside: avoid; box-shadow: none; } main.report-document { padding: 0; } }";

/// The study's report as one self-contained HTML file: the site's stylesheet inlined, every
/// figure as inline SVG, no script. `site` (the server's address, e.g. `https://lab.example`)
/// becomes the file's base URL, so its links to runs lead back to the site; `generated` is
/// when it was made.
/// The report file's Content-Security-Policy, in a `<meta>` of its own so it holds wherever
/// the file is opened (a saved file has no headers): its inline stylesheet and data images,
/// nothing fetched, no script, no form.
pub const REPORT_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'";

#[cfg(feature = "ssr")]
pub fn report_document(detail: StudyDetail, site: &str, generated: &str) -> String {
    use leptos::tachys::view::RenderHtml;
    let escape = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let title = format!("Study #{}: {}", detail.id, detail.name);
    let about = format!("{} · created {} · report generated {generated} from {site}", detail.dataset, detail.created_at);
    let body = Owner::new().with(|| {
        view! {
            <h1>{title.clone()}</h1>
            <p class="muted">{about}</p>
            <StudyGrid detail=detail.clone() />
            <Report detail />
        }
        .to_html()
    });
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"{REPORT_POLICY}\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <base href=\"{}/\"><title>{}</title><style>{}\n{DOCUMENT_CSS}</style></head>\n<body><main class=\"report-document\">{body}</main></body></html>\n",
        escape(site.trim_end_matches('/')),
        escape(&title),
        include_str!("../../../style/main.css"),
    )
}
