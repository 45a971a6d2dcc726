//! `/`: the runs table. Filters, sorts and pages live in the URL (`?arch=resnet18&sort=-seed`),
//! so every view of the table can be linked, reloaded and used without JavaScript; the
//! server pages through the runs (an index per filter keeps 10^4 runs fast).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use protocol::{Arch, RunQuery, RunStatus, RunSummary};

use crate::components::{Pager, StatusBadge, arch_index, arch_label, percent, query_string};
use crate::functions::{list_datasets, list_runs};

/// Runs per page.
const PAGE: u32 = 50;

/// The URL parameters the table keeps: its filters, then its sort.
const FILTERS: [&str; 8] = ["dataset", "arch", "status", "owner", "tag", "study", "created_from", "created_to"];

/// The options of a filter chosen from known values (every owner, every tag), with the
/// chosen one kept when no run has it any more, so the filter in the URL still shows.
fn known_options(mut values: Vec<String>, chosen: String) -> impl IntoView {
    if !chosen.is_empty() && !values.contains(&chosen) {
        values.insert(0, chosen.clone());
    }
    values.into_iter().map(|v| view! { <option value=v.clone() selected=v == chosen>{v.clone()}</option> }).collect_view()
}

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
    // Compare needs two ticked runs; the button says so once the page runs JavaScript
    // (without it, the form still submits and the compare page explains).
    let ticked = RwSignal::new(std::collections::BTreeSet::<i64>::new());
    let live = RwSignal::new(false);
    Effect::new(move |_| live.set(true));
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
            <label>"Owner"
                <select name="owner">
                    <option value="">"any"</option>
                    <Suspense>{move || Suspend::new(async move { known_options(runs.await.map(|l| l.owners).unwrap_or_default(), param("owner")) })}</Suspense>
                </select>
            </label>
            <label>"Tag"
                <select name="tag">
                    <option value="">"any"</option>
                    <Suspense>{move || Suspend::new(async move { known_options(runs.await.map(|l| l.tags).unwrap_or_default(), param("tag")) })}</Suspense>
                </select>
            </label>
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
                        <ArchSummary runs=list.runs.clone() />
                        <form method="get" action="/compare" class="compare-form">
                            <div class="table-actions">
                                <button class="button" type="submit" data-ticked=move || ticked.with(|t| t.len())
                                    disabled=move || live.get() && ticked.with(|t| t.len() < 2)>"Compare selected runs"</button>
                                <span class="muted">{move || match ticked.with(|t| t.len()) {
                                    0 => "Tick two or more finished runs over one dataset.".to_owned(),
                                    1 => "1 run ticked: tick one more.".to_owned(),
                                    n => format!("{n} runs ticked."),
                                }}</span>
                                <Pager total=list.total offset=list.offset limit=list.limit
                                    href=move |offset| link(&[("offset", if offset == 0 { String::new() } else { offset.to_string() })]) />
                            </div>
                            <table class="data runs-table" data-total=list.total>
                                <thead><tr>
                                    <th><span class="visually-hidden">"Select"</span></th>
                                    {header("id", "Run", false)}{header("name", "Name", false)}{header("dataset", "Dataset", false)}{header("arch", "Architecture", false)}
                                    {header("seed", "Seed", true)}{header("epochs", "Epochs", true)}{header("status", "Status", false)}
                                    {header("val_accuracy", "Val. accuracy", true)}<th>"Study"</th>{header("owner", "Owner", false)}{header("tags", "Tags", false)}{header("created_at", "Created", false)}
                                </tr></thead>
                                <tbody>
                                    {list.runs.into_iter().map(|run| {
                                        let id = run.id;
                                        let tick = move |ev: leptos::ev::Event| {
                                            let on = event_target_checked(&ev);
                                            ticked.update(|t| if on { t.insert(id); } else { t.remove(&id); });
                                        };
                                        view! {
                                        <tr data-run=run.id>
                                            <td><input type="checkbox" name="run" value=run.id aria-label=format!("select run #{}", run.id)
                                                disabled=run.status != RunStatus::Succeeded on:change=tick /></td>
                                            <td><a href=format!("/runs/{}", run.id)>{format!("#{}", run.id)}</a></td>
                                            <td class="run-name">{run.name}</td>
                                            <td>{run.dataset}</td>
                                            <td data-arch=run.arch.clone()>{arch_label(&run.arch)}</td>
                                            <td class="num">{run.seed}</td>
                                            <td class="num">{run.epochs}</td>
                                            <td><StatusBadge status=run.status /></td>
                                            <td class="num">{run.final_val_accuracy.map(percent).unwrap_or_default()}</td>
                                            <td class="study">{run.study.map(|st| view! { <a href=format!("/studies/{}", st.id)>{st.name}</a> })}</td>
                                            <td>{run.owner.unwrap_or_default()}</td>
                                            <td>{run.tags.into_iter().map(|t| view! { <a class="tag" href=format!("/?tag={t}")>{t.clone()}</a> }).collect_view()}</td>
                                            <td class="muted created"><crate::components::time::Time at=run.created_at /></td>
                                        </tr>
                                    }}).collect_view()}
                                </tbody>
                            </table>
                        </form>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

/// Per architecture, over the succeeded runs listed: how many, and their final validation
/// accuracy as mean ± sample standard deviation and range.
fn by_arch(runs: &[RunSummary]) -> Vec<(String, usize, f64, Option<f64>, f64, f64)> {
    let mut archs: Vec<&str> = runs.iter().map(|r| r.arch.as_str()).collect();
    archs.sort_by_key(|a| arch_index(a).unwrap_or(usize::MAX));
    archs.dedup();
    archs
        .into_iter()
        .filter_map(|arch| {
            let values: Vec<f64> = runs.iter().filter(|r| r.arch == arch && r.status == RunStatus::Succeeded).filter_map(|r| r.final_val_accuracy).collect();
            let n = values.len();
            (n > 0).then(|| {
                let mean = values.iter().sum::<f64>() / n as f64;
                let sd = (n > 1).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
                let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                (arch.to_owned(), n, mean, sd, lo, hi)
            })
        })
        .collect()
}

/// The listed runs grouped by architecture.
#[component]
fn ArchSummary(runs: Vec<RunSummary>) -> impl IntoView {
    let groups = by_arch(&runs);
    (!groups.is_empty()).then(|| {
        view! {
            <table class="data arch-summary">
                <caption class="muted small">"Succeeded runs on this page, by architecture: final validation accuracy"</caption>
                <thead><tr><th>"Architecture"</th><th class="num">"Runs"</th><th class="num">"Mean ± sd"</th><th class="num">"Range"</th></tr></thead>
                <tbody>{groups.into_iter().map(|(arch, n, mean, sd, lo, hi)| view! {
                    <tr data-arch=arch.clone() data-runs=n data-mean=mean.to_string()>
                        <td>{arch_label(&arch)}</td><td class="num">{n}</td>
                        <td class="num">{match sd { Some(sd) => format!("{} ± {:.1} pts", percent(mean), sd * 100.0), None => percent(mean) }}</td>
                        <td class="num">{format!("{} – {}", percent(lo), percent(hi))}</td>
                    </tr>
                }).collect_view()}</tbody>
            </table>
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_by_architecture_with_mean_and_spread() {
        let run = |id: i64, arch: &str, status: &str, acc: Option<f64>| -> RunSummary {
            serde_json::from_value(serde_json::json!({"id": id, "dataset": "d", "arch": arch, "seed": id, "epochs": 1, "status": status,
                "created_at": "2026-12-04T00:00:00Z", "finished_at": null, "error": null, "progress": null, "final_val_accuracy": acc}))
            .unwrap()
        };
        let runs = [
            run(1, "resnet18", "succeeded", Some(0.8)),
            run(2, "resnet18", "succeeded", Some(0.9)),
            run(3, "small_cnn", "succeeded", Some(0.5)),
            run(4, "resnet18", "failed", Some(0.1)),
            run(5, "deit_small", "running", Some(0.3)),
        ];
        let groups = by_arch(&runs);
        assert_eq!(groups.iter().map(|g| (g.0.as_str(), g.1)).collect::<Vec<_>>(), vec![("small_cnn", 1), ("resnet18", 2)]);
        let (_, _, mean, sd, lo, hi) = groups[1].clone();
        assert!((mean - 0.85).abs() < 1e-12 && (sd.unwrap() - 0.0707106781186548).abs() < 1e-12 && (lo, hi) == (0.8, 0.9));
        assert_eq!(groups[0].3, None, "one run: no spread");
    }
}
