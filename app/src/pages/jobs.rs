//! `/jobs`: what is queued, running and finished, with live progress.

use std::collections::HashMap;

use leptos::prelude::*;
use leptos_meta::Title;
use protocol::{Progress, RunQuery, RunStatus, RunSummary, WorkerView};

use crate::components::form::ActionForm;
use crate::components::live::subscribe;
use crate::components::progress::{ProgressBar, fraction_done, progress_detail};
use crate::components::time::Time;
use crate::components::{CsrfField, StatusBadge, arch_label, duration, elapsed_seconds, me};
use crate::functions::{CancelRun, RetryRun, disk_space, list_runs, list_workers};

const GROUPS: [(RunStatus, &str); 6] = [
    (RunStatus::Running, "Running"),
    (RunStatus::Analysing, "Analysing"),
    (RunStatus::Queued, "Queued"),
    (RunStatus::Succeeded, "Finished"),
    (RunStatus::Failed, "Failed"),
    (RunStatus::Cancelled, "Cancelled"),
];

#[component]
pub fn JobsPage() -> impl IntoView {
    // Progress events by run id; they override what the page was rendered with.
    let live = RwSignal::new(HashMap::<i64, Progress>::new());
    let reloads = RwSignal::new(0u32);
    let runs = crate::components::resource::resource(
        move || reloads.get(),
        |_| async { list_runs(RunQuery { limit: Some(200), ..Default::default() }).await.map(|list| list.runs) },
    );
    let disk = crate::components::resource::resource(move || reloads.get(), |_| disk_space());
    let workers = crate::components::resource::resource(move || reloads.get(), |_| list_workers());

    subscribe("/api/v1/events", move |progress: Progress| {
        let known = runs.get_untracked().and_then(|r| r.ok()).and_then(|list| list.into_iter().find(|r| r.id == progress.run_id));
        let changed = known.as_ref().is_none_or(|run| run.status != progress.status);
        live.update(|map| {
            map.insert(progress.run_id, progress);
        });
        if changed {
            reloads.update(|n| *n += 1);
        }
    });

    view! {
        <Title text="Jobs" />
        <h1>"Jobs"</h1>
        // The data volume nearly full: said before a launch or an upload is refused for it.
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                disk.await.ok().and_then(|space| {
                    let level = space.level.as_str();
                    space.message.map(|message| view! { <p class="disk-warning" role="alert" data-level=level>{message}</p> })
                })
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                workers.await.map(|list| view! { <WorkersTable list /> })
            })}
        </Transition>
        <Transition fallback=|| view! { <p class="loading">"Loading jobs…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Err(error) => super::load_error("the jobs", error),
                    // Running and queued are always shown, empty or not: "nothing queued" is news.
                    Ok(list) => GROUPS.iter().map(|&(status, heading)| {
                        let rows: Vec<RunSummary> = list.iter().filter(|r| r.status == status).cloned().collect();
                        let always = matches!(status, RunStatus::Running | RunStatus::Queued);
                        let count = rows.len();
                        (always || count > 0).then(|| view! {
                            <section class="job-group" data-status=status.as_str() data-count=count>
                                <h2>{heading} " " <span class="count">{count}</span></h2>
                                {if rows.is_empty() {
                                    view! { <p class="empty">{match status {
                                        RunStatus::Running => "Nothing running: a worker takes the next queued run within a few seconds.",
                                        _ => "Nothing queued. Runs launched from the Launch page (or POST /api/v1/runs) wait here for a worker.",
                                    }}</p> }.into_any()
                                } else {
                                    view! {
                                        <table class="data jobs-table">
                                            <tbody>{rows.into_iter().map(|run| view! { <JobRow run live /> }).collect_view()}</tbody>
                                        </table>
                                    }.into_any()
                                }}
                            </section>
                        })
                    }).collect_view().into_any(),
                }
            })}
        </Transition>
    }
}

/// The workers online: what each trains on, and its job's memory and throughput.
#[component]
fn WorkersTable(list: Vec<WorkerView>) -> impl IntoView {
    let count = list.len();
    view! {
        <section class="job-group workers" data-count=count>
            <h2>"Workers online " <span class="count">{count}</span></h2>
            {if list.is_empty() {
                view! { <p class="empty">"No worker has asked for a job lately: runs stay queued until one does (README: \"Configuration\" starts local workers; \"Slurm\" runs them on a cluster)."</p> }.into_any()
            } else {
                view! {
                    <table class="data workers-table">
                        <thead><tr><th>"Worker"</th><th>"Device"</th><th>"Job"</th><th class="num">"Memory"</th><th class="num">"Throughput"</th><th class="num">"Last heard"</th></tr></thead>
                        <tbody>{list.into_iter().map(|w| {
                            let device = w.device.clone().unwrap_or_else(|| "not reported".into());
                            // The device without the reason behind `cpu`, which its title keeps.
                            let short = device.split(" (").next().unwrap_or(&device).to_owned();
                            let title = device.clone();
                            view! {
                                <tr data-worker=w.name.clone() data-device=device>
                                    <td class="mono">{w.name.clone()}</td>
                                    <td title=title>{short}</td>
                                    <td>{match w.run_id {
                                        Some(run) => view! { <a href=format!("/runs/{run}")>{format!("run #{run}")}</a> }.into_any(),
                                        None => view! { <span class="muted">"idle"</span> }.into_any(),
                                    }}</td>
                                    <td class="num">{w.memory_bytes.map(|b| format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30))).unwrap_or_else(|| "–".into())}</td>
                                    <td class="num">{w.images_per_sec.map(|r| format!("{r:.0} img/s")).unwrap_or_else(|| "–".into())}</td>
                                    <td class="num muted">{format!("{} ago", duration(w.seconds_since_seen))}</td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

#[component]
fn JobRow(run: RunSummary, live: RwSignal<HashMap<i64, Progress>>) -> impl IntoView {
    let id = run.id;
    let rendered = run.progress.clone();
    let progress = Signal::derive(move || live.with(|map| map.get(&id).cloned()).or_else(|| rendered.clone()));
    let status = run.status;
    let fraction = Signal::derive(move || fraction_done(progress.get().as_ref(), status));
    view! {
        <tr class="job" data-run=id data-status=status.as_str()>
            <td><a href=format!("/runs/{id}")>{format!("Run #{id}")}</a></td>
            <td>{run.dataset.clone()}</td>
            <td data-arch=run.arch.clone()>{arch_label(&run.arch)}</td>
            <td class="muted">{format!("seed {}", run.seed)}</td>
            <td class="muted">{run.owner.clone().unwrap_or_default()}{(run.priority != 0).then(|| format!(" · priority {}", run.priority))}</td>
            // The Slurm job of the latest submission, for `squeue`/`sacct` on the cluster.
            <td class="muted slurm-job">{run.slurm_job_id.map(|slurm| format!("Slurm job {slurm}"))}</td>
            <td><StatusBadge status /></td>
            <td class="progress-cell">
                // A finished job says when it ended and how long it took, not a full bar.
                {if status.is_finished() {
                    let took = elapsed_seconds(run.started_at.as_deref(), run.finished_at.as_deref());
                    view! {
                        <span class="finished-at" data-seconds=took.map(|t| t.to_string()).unwrap_or_default()>
                            "finished "{match run.finished_at.clone() { Some(at) => view! { <Time at /> }.into_any(), None => "–".into_any() }}
                            {took.map(|t| format!(" · took {}", duration(t as f64)))}
                        </span>
                    }.into_any()
                } else {
                    view! {
                        <ProgressBar fraction label=format!("progress of run #{id}") />
                        <span class="progress-detail">{move || progress.get().map(|p| progress_detail(&p)).unwrap_or_default()}</span>
                    }.into_any()
                }}
                {run.error.clone().map(|e| view! { <span class="error job-error">{e}</span> })}
            </td>
            <td class="actions"><JobActions id status owner=run.owner.clone() /></td>
        </tr>
    }
}

/// Cancel (queued or running) or retry (failed or cancelled). Plain forms: they work without
/// JavaScript too (the server function answers with a redirect back).
#[component]
fn JobActions(id: i64, status: RunStatus, owner: Option<String>) -> impl IntoView {
    // Members act on their own runs, administrators on any (the server checks it too).
    let mine = me().is_some_and(|who| who.may_change(owner.as_deref()));
    let cancel = ServerAction::<CancelRun>::new();
    let retry = ServerAction::<RetryRun>::new();
    let outcome = move || {
        let answer = cancel.value().get().or_else(|| retry.value().get())?;
        Some(match answer {
            Ok(RunStatus::Running) => view! { <span class="muted action-note">"Stopping at the next heartbeat…"</span> }.into_any(),
            Ok(now) => view! { <span class="muted action-note">{now.as_str().to_owned()}</span> }.into_any(),
            Err(error) => view! { <span class="error action-note">{super::form_error("nothing was changed", error)}</span> }.into_any(),
        })
    };
    view! {
        {(mine && matches!(status, RunStatus::Queued | RunStatus::Running)).then(|| view! {
            <ActionForm action=cancel attr:class="inline-form">
                <CsrfField />
                <input type="hidden" name="run_id" value=id />
                <button type="submit" class="button small" aria-label=format!("Cancel run #{id}")>"Cancel"</button>
            </ActionForm>
        })}
        {(mine && matches!(status, RunStatus::Failed | RunStatus::Cancelled)).then(|| view! {
            <ActionForm action=retry attr:class="inline-form">
                <CsrfField />
                <input type="hidden" name="run_id" value=id />
                <button type="submit" class="button small" aria-label=format!("Retry run #{id}")>"Retry"</button>
            </ActionForm>
        })}
        {outcome}
    }
}
