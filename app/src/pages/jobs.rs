//! `/jobs`: what is queued, running and finished, with live progress.

use std::collections::HashMap;

use leptos::prelude::*;
use leptos_meta::Title;
use protocol::{Progress, RunQuery, RunStatus, RunSummary};

use crate::components::live::subscribe;
use crate::components::progress::{fraction_done, progress_detail, ProgressBar};
use crate::components::form::ActionForm;
use crate::components::{me, CsrfField, StatusBadge};
use crate::functions::{disk_space, list_runs, CancelRun, RetryRun};

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
    let runs = crate::components::resource::resource(move || reloads.get(), |_| async { list_runs(RunQuery { limit: Some(200), ..Default::default() }).await.map(|list| list.runs) });
    let disk = crate::components::resource::resource(move || reloads.get(), |_| disk_space());

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
        <Transition fallback=|| view! { <p class="loading">"Loading jobs…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Err(error) => super::load_error("the jobs", error),
                    Ok(list) if list.is_empty() => view! {
                        <p class="empty">"Nothing queued. Runs launched from the Launch page (or POST /api/v1/runs) appear here."</p>
                    }.into_any(),
                    Ok(list) => GROUPS.iter().map(|&(status, heading)| {
                        let rows: Vec<RunSummary> = list.iter().filter(|r| r.status == status).cloned().collect();
                        (!rows.is_empty()).then(|| view! {
                            <section class="job-group" data-status=status.as_str()>
                                <h2>{heading} " " <span class="count">{rows.len()}</span></h2>
                                <table class="data jobs-table">
                                    <tbody>{rows.into_iter().map(|run| view! { <JobRow run live /> }).collect_view()}</tbody>
                                </table>
                            </section>
                        })
                    }).collect_view().into_any(),
                }
            })}
        </Transition>
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
            <td>{run.arch.clone()}</td>
            <td class="muted">{format!("seed {}", run.seed)}</td>
            <td class="muted">{run.owner.clone().unwrap_or_default()}{(run.priority != 0).then(|| format!(" · priority {}", run.priority))}</td>
            // The Slurm job of the latest submission, for `squeue`/`sacct` on the cluster.
            <td class="muted slurm-job">{run.slurm_job_id.map(|slurm| format!("Slurm job {slurm}"))}</td>
            <td><StatusBadge status /></td>
            <td class="progress-cell">
                <ProgressBar fraction />
                <span class="progress-detail">{move || progress.get().map(|p| progress_detail(&p)).unwrap_or_default()}</span>
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
