//! `/`: the runs table. Filters, sorts and pages live in the URL (`?arch=resnet18&sort=-seed`),
//! so every view of the table can be linked, reloaded and used without JavaScript; the
//! server pages through the runs (an index per filter keeps 10^4 runs fast).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use protocol::{Arch, RunQuery, RunStatus};

use crate::components::{percent, query_string, Pager, StatusBadge};
use crate::functions::{list_datasets, list_runs};

/// Runs per page.
const PAGE: u32 = 50;

/// The URL parameters the table keeps: its filters, then its sort.
const FILTERS: [&str; 8] = ["dataset", "arch", "status", "owner", "tag", "study", "created_from", "created_to"];

#[component]
pub fn RunsPage() -> impl IntoView {
    let params = use_query_map();
    let param = move |name: &str| params.read().get(name).unwrap_or_default();
    let query = Memo::new(move |_| RunQuery {
        dataset: Some(param("dataset")),
        arch: Some(param("arch")),
        status: Some(param("status")),
        owner: Some(param("owner")),
        tag: Some(param("tag")),
        study: param("study").parse().ok(),
        created_from: Some(param("created_from")),
        created_to: Some(param("created_to")),
        sort: Some(param("sort")),
        limit: Some(PAGE),
        offset: param("offset").parse().ok(),
    });
    let runs = crate::components::resource::resource(move || query.get(), list_runs);
    let datasets = crate::components::resource::resource(|| (), |_| list_datasets());
    // The current filters and sort with some replaced: for sort and page links.
    let link = move |changes: &[(&str, String)]| {
        let mut pairs: Vec<(&str, String)> = FILTERS.iter().chain(&["sort"]).map(|&k| (k, param(k))).collect();
        for (key, value) in changes {
            pairs.retain(|(k, _)| k != key);
            pairs.push((key, value.clone()));
        }
        format!("/{}", query_string(&pairs))
    };
    let header = move |name: &'static str, label: &'static str, numeric: bool| {
        let sort = param("sort");
        let (next, mark) = match sort.strip_prefix('-') {
            Some(n) if n == name => (name.to_owned(), " ↓"),
            _ if sort == name => (format!("-{name}"), " ↑"),
            _ => (name.to_owned(), ""),
        };
        let aria = match mark {
            " ↑" => "ascending",
            " ↓" => "descending",
            _ => "none",
        };
        view! { <th class:num=numeric aria-sort=aria><a href=link(&[("sort", next), ("offset", String::new())])>{label}{mark}</a></th> }
    };
    view! {
        <Title text="Runs" />
        <div class="page-head">
            <h1>"Runs"</h1>
            {crate::components::me().is_some_and(|who| who.role.can_launch()).then(|| view! { <a class="button" href="/launch">"Launch a run"</a> })}
        </div>
        <form class="filters" method="get" action="/" aria-label="filter runs">
            <label>"Dataset"
                <select name="dataset">
                    <option value="">"any"</option>
                    <Suspense>{move || Suspend::new(async move {
                        datasets.await.unwrap_or_default().into_iter().map(|d| {
                            let selected = d.name == param("dataset");
                            view! { <option value=d.name.clone() selected=selected>{d.name.clone()}</option> }
                        }).collect_view()
                    })}</Suspense>
                </select>
            </label>
            <label>"Architecture"
                <select name="arch">
                    <option value="">"any"</option>
                    {Arch::ALL.iter().map(|a| view! { <option value=a.as_str() selected=move || param("arch") == a.as_str()>{a.label()}</option> }).collect_view()}
                </select>
            </label>
            <label>"Status"
                <select name="status">
                    <option value="">"any"</option>
                    {RunStatus::ALL.iter().map(|s| view! { <option value=s.as_str() selected=move || param("status") == s.as_str()>{s.as_str()}</option> }).collect_view()}
                </select>
            </label>
            <label>"Owner" <input name="owner" size="10" value=move || param("owner") /></label>
            <label>"Tag" <input name="tag" size="10" value=move || param("tag") /></label>
            <label>"From" <input type="date" name="created_from" value=move || param("created_from") /></label>
            <label>"To" <input type="date" name="created_to" value=move || param("created_to") /></label>
            <input type="hidden" name="sort" value=move || param("sort") />
            <button class="button" type="submit">"Filter"</button>
            <a class="small-link" href="/">"clear"</a>
        </form>
        <Transition fallback=|| view! { <p class="loading">"Loading runs…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Err(error) => super::load_error("the runs", error),
                    Ok(list) if list.total == 0 && FILTERS.iter().all(|f| param(f).is_empty()) => view! {
                        <p class="empty">"No runs yet."</p>
                    }.into_any(),
                    Ok(list) if list.runs.is_empty() => view! {
                        <p class="empty">"No run matches these filters. " <a href="/">"Show every run"</a> "."</p>
                    }.into_any(),
                    Ok(list) => view! {
                        <form method="get" action="/compare" class="compare-form">
                            <div class="table-actions">
                                <button class="button" type="submit">"Compare selected runs"</button>
                                <span class="muted">"Tick two or more finished runs over one dataset."</span>
                                <Pager total=list.total offset=list.offset limit=list.limit
                                    href=move |offset| link(&[("offset", if offset == 0 { String::new() } else { offset.to_string() })]) />
                            </div>
                            <table class="data runs-table" data-total=list.total>
                                <thead><tr>
                                    <th><span class="visually-hidden">"Select"</span></th>
                                    {header("id", "Run", false)}{header("dataset", "Dataset", false)}{header("arch", "Architecture", false)}
                                    {header("seed", "Seed", true)}{header("epochs", "Epochs", true)}{header("status", "Status", false)}
                                    {header("val_accuracy", "Val. accuracy", true)}{header("owner", "Owner", false)}{header("tags", "Tags", false)}{header("created_at", "Created", false)}
                                </tr></thead>
                                <tbody>
                                    {list.runs.into_iter().map(|run| view! {
                                        <tr data-run=run.id>
                                            <td><input type="checkbox" name="run" value=run.id aria-label=format!("select run #{}", run.id)
                                                disabled=run.status != RunStatus::Succeeded /></td>
                                            <td><a href=format!("/runs/{}", run.id)>{format!("#{}", run.id)}</a></td>
                                            <td>{run.dataset}</td>
                                            <td>{run.arch}</td>
                                            <td class="num">{run.seed}</td>
                                            <td class="num">{run.epochs}</td>
                                            <td><StatusBadge status=run.status /></td>
                                            <td class="num">{run.final_val_accuracy.map(percent).unwrap_or_default()}</td>
                                            <td>{run.owner.unwrap_or_default()}</td>
                                            <td>{run.tags.into_iter().map(|t| view! { <a class="tag" href=format!("/?tag={t}")>{t.clone()}</a> }).collect_view()}</td>
                                            <td class="muted">{run.created_at}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </form>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}
