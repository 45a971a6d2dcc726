//! `/`: every run, newest first.

use leptos::prelude::*;
use leptos_meta::Title;
use protocol::RunQuery;

use crate::components::{percent, StatusBadge};
use crate::functions::list_runs;

#[component]
pub fn RunsPage() -> impl IntoView {
    let runs = Resource::new(|| (), |_| list_runs(RunQuery::default()));
    view! {
        <Title text="Runs" />
        <div class="page-head">
            <h1>"Runs"</h1>
            <a class="button" href="/launch">"Launch a run"</a>
        </div>
        <Suspense fallback=|| view! { <p class="loading">"Loading runs…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Err(error) => super::load_error("the runs", error),
                    Ok(runs) if runs.is_empty() => view! {
                        <p class="empty">"No runs yet. " <a href="/launch">"Launch the first one"</a> "."</p>
                    }.into_any(),
                    Ok(runs) => view! {
                        <table class="data runs-table">
                            <thead><tr>
                                <th>"Run"</th><th>"Dataset"</th><th>"Architecture"</th><th class="num">"Seed"</th>
                                <th class="num">"Epochs"</th><th>"Status"</th><th class="num">"Val. accuracy"</th><th>"Created"</th>
                            </tr></thead>
                            <tbody>
                                {runs.into_iter().map(|run| view! {
                                    <tr>
                                        <td><a href=format!("/runs/{}", run.id)>{format!("#{}", run.id)}</a></td>
                                        <td>{run.dataset}</td>
                                        <td>{run.arch}</td>
                                        <td class="num">{run.seed}</td>
                                        <td class="num">{run.epochs}</td>
                                        <td><StatusBadge status=run.status /></td>
                                        <td class="num">{run.final_val_accuracy.map(percent).unwrap_or_default()}</td>
                                        <td class="muted">{run.created_at}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}
