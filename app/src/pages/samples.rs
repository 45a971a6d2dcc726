//! `/runs/{id}/samples`: every training sample of a run as thumbnails, sorted and filtered by
//! any per-sample statistic (the filters live in the URL); and `/runs/{id}/samples/{key}`:
//! one sample's history in this run, overlaid with every other run over its dataset.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use protocol::{SampleQuery, SampleStats, Trajectory};

use crate::components::charts::{LineChart, Series, arch_class, dashes_by_seed};
use crate::components::{Pager, arch_label, number, query_string};
use crate::functions::{get_run, get_sample_history, list_samples};

/// Samples per page of the browser.
const PAGE: u32 = 60;

/// Sortable statistics: (API name, label): every stored score (`dynamics::Score`), and the
/// dataset index.
fn sorts() -> impl Iterator<Item = (&'static str, &'static str)> {
    protocol::SampleScore::ALL.iter().filter(|s| s.stored()).map(|s| (s.as_str(), s.label())).chain([("dataset_index", "dataset index")])
}

/// Range filters: (statistic, label, whole numbers?).
const RANGES: [(&str, &str, bool); 6] = [
    ("forgetting_events", "Forgetting events", true),
    ("first_learned_epoch", "First learned epoch", true),
    ("confidence", "Confidence", false),
    ("variability", "Variability", false),
    ("tau", "tau", false),
    ("r2", "R²", false),
];

/// Every URL parameter of the browser.
fn parameter_names() -> Vec<String> {
    let mut names: Vec<String> = ["sort", "label", "never_learned", "unforgettable"].map(String::from).to_vec();
    for (stat, _, _) in RANGES {
        names.push(format!("min_{stat}"));
        names.push(format!("max_{stat}"));
    }
    names
}

/// The browser's filters and sort as the URL has them (empty ones left out by `query_string`).
fn filters(get: impl Fn(&str) -> String) -> Vec<(String, String)> {
    parameter_names()
        .into_iter()
        .map(|name| {
            let value = get(&name);
            (name, value)
        })
        .collect()
}

/// A sample's page, reached as the `at`-th (0-based) sample of the browser's filtered order:
/// its previous and next links keep the filters.
fn sample_href(run: i64, key: &str, filters: &[(String, String)], at: u64) -> String {
    let mut pairs: Vec<(&str, String)> = filters.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    pairs.push(("at", at.to_string()));
    format!("/runs/{run}/samples/{key}{}", query_string(&pairs))
}

/// The browser's page holding the `at`-th sample, with the same filters.
fn grid_href(run: i64, filters: &[(String, String)], at: u64) -> String {
    let mut pairs: Vec<(&str, String)> = filters.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let offset = at / u64::from(PAGE) * u64::from(PAGE);
    pairs.push(("offset", if offset == 0 { String::new() } else { offset.to_string() }));
    format!("/runs/{run}/samples{}", query_string(&pairs))
}

/// The query the URL asks for, or a message naming the parameter that is not a number.
fn sample_query(get: impl Fn(&str) -> String) -> Result<SampleQuery, String> {
    fn parse<T: std::str::FromStr>(name: &str, text: String) -> Result<Option<T>, String> {
        let text = text.trim().to_owned();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| format!("{} must be a number, got {text:?}", name.replace('_', " ")))
    }
    let flag = |name: &str| match get(name).as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    Ok(SampleQuery {
        sort: Some(get("sort")).filter(|s| !s.is_empty()),
        label: parse("label", get("label"))?,
        limit: Some(PAGE),
        offset: parse("offset", get("offset"))?,
        never_learned: flag("never_learned"),
        unforgettable: flag("unforgettable"),
        min_forgetting_events: parse("min_forgetting_events", get("min_forgetting_events"))?,
        max_forgetting_events: parse("max_forgetting_events", get("max_forgetting_events"))?,
        min_first_learned_epoch: parse("min_first_learned_epoch", get("min_first_learned_epoch"))?,
        max_first_learned_epoch: parse("max_first_learned_epoch", get("max_first_learned_epoch"))?,
        min_confidence: parse("min_confidence", get("min_confidence"))?,
        max_confidence: parse("max_confidence", get("max_confidence"))?,
        min_variability: parse("min_variability", get("min_variability"))?,
        max_variability: parse("max_variability", get("max_variability"))?,
        min_tau: parse("min_tau", get("min_tau"))?,
        max_tau: parse("max_tau", get("max_tau"))?,
        min_r2: parse("min_r2", get("min_r2"))?,
        max_r2: parse("max_r2", get("max_r2"))?,
    })
}

#[component]
pub fn SampleBrowser() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0));
    let url = use_query_map();
    let param = move |name: &str| url.read().get(name).unwrap_or_default();
    let query = Memo::new(move |_| sample_query(param));
    let run = crate::components::resource::resource(move || id.get(), get_run);
    let samples = crate::components::resource::resource(
        move || (id.get(), query.get()),
        |(id, query)| async move {
            match query {
                Ok(query) => list_samples(id, query).await.map_err(super::error_message),
                Err(message) => Err(message),
            }
        },
    );
    let page_link = move |offset: u64| {
        let mut pairs: Vec<(String, String)> = parameter_names()
            .into_iter()
            .map(|k| {
                let v = param(&k);
                (k, v)
            })
            .collect();
        pairs.push(("offset".into(), if offset == 0 { String::new() } else { offset.to_string() }));
        let pairs: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        format!("/runs/{}/samples{}", id.get_untracked(), query_string(&pairs))
    };
    view! {
        <Title text=move || format!("Samples of run #{}", id.get()) />
        <div class="page-head">
            <h1>{move || format!("Samples of run #{}", id.get())}</h1>
            <a href=move || format!("/runs/{}", id.get())>"← back to the run"</a>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading the run…"</p> }>
            {move || Suspend::new(async move {
                match run.await {
                    Err(error) => super::load_error("this run", error),
                    Ok(detail) => {
                        let class_names = detail.class_names.clone();
                        let dataset = detail.spec.dataset.clone();
                        view! {
                            <form class="filters sample-filters" method="get" action=format!("/runs/{}/samples", detail.id) aria-label="filter samples">
                                <label>"Sort by"
                                    <select name="sort">
                                        {sorts().flat_map(|(name, label)| [(format!("-{name}"), format!("{label}, highest first")), (name.to_owned(), format!("{label}, lowest first"))])
                                            .map(|(value, label)| { let chosen = value.clone();
                                                let selected = move || param("sort") == chosen || (param("sort").is_empty() && chosen == "-forgetting_events");
                                                view! { <option value=value selected=selected>{label}</option> } }).collect_view()}
                                    </select>
                                </label>
                                <label>"Class"
                                    <select name="label">
                                        <option value="">"any"</option>
                                        {class_names.iter().enumerate().map(|(c, n)| view! { <option value=c.to_string() selected=move || param("label") == c.to_string()>{n.clone()}</option> }).collect_view()}
                                    </select>
                                </label>
                                {[("never_learned", "Never learned"), ("unforgettable", "Unforgettable")].map(|(name, label)| view! {
                                    <label>{label}
                                        <select name=name>
                                            <option value="">"any"</option>
                                            <option value="true" selected=move || param(name) == "true">"yes"</option>
                                            <option value="false" selected=move || param(name) == "false">"no"</option>
                                        </select>
                                    </label>
                                })}
                                {RANGES.iter().map(|&(stat, label, whole)| {
                                    let step = if whole { "1" } else { "any" };
                                    view! {
                                        <fieldset class="range">
                                            <legend>{label}</legend>
                                            <input type="number" step=step name=format!("min_{stat}") placeholder="min" aria-label=format!("{label} at least") value=move || param(&format!("min_{stat}")) />
                                            <input type="number" step=step name=format!("max_{stat}") placeholder="max" aria-label=format!("{label} at most") value=move || param(&format!("max_{stat}")) />
                                        </fieldset>
                                    }
                                }).collect_view()}
                                <button class="button" type="submit">"Apply"</button>
                                <a class="small-link" href=format!("/runs/{}/samples", detail.id)>"clear"</a>
                            </form>
                            <Transition fallback=|| view! { <p class="loading">"Loading samples…"</p> }>
                                {
                                    let class_names = class_names.clone();
                                    let dataset = dataset.clone();
                                    move || {
                                        let class_names = class_names.clone();
                                        let dataset = dataset.clone();
                                        Suspend::new(async move {
                                            match samples.await {
                                                Err(message) => view! { <p class="error" role="alert">{message}</p> }.into_any(),
                                                Ok(page) if page.samples.is_empty() => view! {
                                                    <p class="empty">"No sample matches these filters. Widen a range or " <a href=format!("/runs/{}/samples", id.get_untracked())>"clear them"</a> "."</p>
                                                }.into_any(),
                                                Ok(page) => view! {
                                                    <Pager total=page.total offset=page.offset limit=page.limit href=page_link />
                                                    <ul class="thumbs sample-grid" data-total=page.total>
                                                        {page.samples.into_iter().enumerate().map(|(i, s)| {
                                                            let href = sample_href(id.get_untracked(), &s.sample_key, &filters(param), page.offset + i as u64);
                                                            view! { <SampleThumb sample=s dataset=dataset.clone() class_names=class_names.clone() href /> }
                                                        }).collect_view()}
                                                    </ul>
                                                }.into_any(),
                                            }
                                        })
                                    }
                                }
                            </Transition>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// One sample of the browser: its image, label and statistics; a link to its history.
#[component]
fn SampleThumb(sample: SampleStats, dataset: String, class_names: Vec<String>, href: String) -> impl IntoView {
    let label = class_names.get(sample.label as usize).cloned().unwrap_or_else(|| format!("class {}", sample.label));
    let learned =
        if sample.never_learned { "never learned".to_owned() } else { sample.first_learned_epoch.map_or("–".into(), |e| format!("learned at {e}")) };
    view! {
        <li class="thumb" data-sample-key=sample.sample_key.clone() data-forgetting=sample.forgetting_events>
            <a href=href>
                <img src=format!("/api/v1/datasets/{dataset}/train/{}.png", sample.dataset_index)
                    alt=format!("training sample {} ({label})", sample.dataset_index) width="84" height="84" loading="lazy" />
            </a>
            <span class="thumb-count" title="forgetting events: correct, then wrong at the next epoch" data-count=sample.forgetting_events>{crate::components::forgotten_label(sample.forgetting_events)}</span>
            <span class="thumb-label">{label}</span>
            // What the run predicted at its last epoch (runs analysed before it was stored: not shown).
            {sample.last_predicted.map(|p| view! {
                <span class="thumb-predicted" class:wrong=p != sample.label data-predicted=p>{format!("predicted {}", prediction_text(p, sample.label, &class_names))}</span>
            })}
            <span class="thumb-meta muted">{learned}</span>
            <span class="thumb-meta muted">{format!("conf. {} · τ {}", number(sample.confidence, 2), number(sample.tau, 1))}</span>
        </li>
    }
}

/// One line per run of a sample's history chart, every run drawn: colour by architecture,
/// dash by seed, this run (the first) thicker.
fn history_series(runs: &[&Trajectory], pick: fn(&Trajectory) -> Vec<f64>) -> Vec<Series> {
    let dash_of = dashes_by_seed(runs.iter().map(|t| t.seed));
    runs.iter()
        .enumerate()
        .map(|(i, t)| {
            let dash = dash_of(t.seed);
            let this = if i == 0 { " (this run)" } else { "" };
            let points = pick(t).into_iter().enumerate().map(|(e, y)| ((e + 1) as f64, y)).collect();
            Series::new(format!("#{} {} seed {}{this}", t.run_id, arch_label(&t.arch), t.seed), arch_class(&t.arch), points).styled(if i == 0 {
                format!("{dash} this-run")
            } else {
                dash.to_owned()
            })
        })
        .collect()
}

/// The class a run predicted for the sample at its last epoch, by name, and whether it is right.
fn last_prediction(t: &Trajectory, names: &[String]) -> String {
    t.predicted.last().map_or_else(|| "–".into(), |&p| prediction_text(u32::from(p), t.stats.label, names))
}

/// A predicted class by name, and whether it is the sample's `label`: `Shirt (wrong)`.
fn prediction_text(predicted: u32, label: u32, names: &[String]) -> String {
    let name = names.get(predicted as usize).cloned().unwrap_or_else(|| format!("class {predicted}"));
    if predicted == label { format!("{name} (right)") } else { format!("{name} (wrong)") }
}

#[component]
pub fn SampleDetail() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0));
    let key = Memo::new(move |_| params.read().get("key").unwrap_or_default());
    let run = crate::components::resource::resource(move || id.get(), get_run);
    let history = crate::components::resource::resource(move || (id.get(), key.get()), |(id, key)| get_sample_history(id, key));
    // Reached from the browser: its place in the filtered order, and the samples beside it.
    let url = use_query_map();
    let param = move |name: &str| url.read().get(name).unwrap_or_default();
    let at = Memo::new(move |_| param("at").parse::<u64>().ok());
    let neighbours = crate::components::resource::resource(
        move || (id.get(), at.get(), sample_query(param).ok()),
        |(id, at, query)| async move {
            let (Some(at), Some(mut query)) = (at, query) else { return Ok(None) };
            query.offset = Some(at.saturating_sub(1) as u32);
            query.limit = Some(if at == 0 { 2 } else { 3 });
            list_samples(id, query).await.map(|page| Some((at, page)))
        },
    );
    let nav = move || {
        Suspend::new(async move {
            let (at, page) = neighbours.await.ok().flatten()?;
            let run = id.get_untracked();
            let filters = filters(param);
            let here = (at - page.offset) as usize;
            let prev = here.checked_sub(1).and_then(|i| page.samples.get(i)).map(|s| sample_href(run, &s.sample_key, &filters, at - 1));
            let next = page.samples.get(here + 1).map(|s| sample_href(run, &s.sample_key, &filters, at + 1));
            Some(view! {
                <nav class="sample-nav" aria-label="samples in the browser's order" data-at=at data-total=page.total>
                    {prev.map(|href| view! { <a rel="prev" href=href>"← previous"</a> })}
                    <span class="muted">{format!("sample {} of {} in the browser's order", at + 1, page.total)}</span>
                    {next.map(|href| view! { <a rel="next" href=href>"next →"</a> })}
                    <a class="small-link" href=grid_href(run, &filters, at)>"back to the grid"</a>
                </nav>
            })
        })
    };
    view! {
        <Title text=move || format!("Sample of run #{}", id.get()) />
        <Transition fallback=|| ()>{nav}</Transition>
        <Transition fallback=|| view! { <p class="loading">"Loading the sample…"</p> }>
            {move || Suspend::new(async move {
                match (run.await, history.await) {
                    (Err(error), _) => super::load_error("this run", error),
                    (_, Err(error)) => super::load_error("this sample", error),
                    (Ok(detail), Ok(history)) => {
                        let this = &history.this_run;
                        let s = &this.stats;
                        let label = detail.class_names.get(s.label as usize).cloned().unwrap_or_else(|| format!("class {}", s.label));
                        let mut runs: Vec<&Trajectory> = vec![this];
                        runs.extend(history.other_runs.iter());
                        let warmup_until = (detail.spec.warmup_epochs > 0).then_some(f64::from(detail.spec.warmup_epochs) + 0.5);
                        let p_true = history_series(&runs, |t| t.p_true.iter().map(|&p| f64::from(p)).collect());
                        let loss = history_series(&runs, |t| t.loss.iter().map(|&l| f64::from(l)).collect());
                        let names = detail.class_names.clone();
                        view! {
                            <div class="page-head">
                                <h1>{format!("Training sample {} of run #{}", s.dataset_index, detail.id)}</h1>
                                <a href=format!("/runs/{}/samples", detail.id)>"← all samples"</a>
                            </div>
                            <div class="sample-head card">
                                <img class="sample-image" src=format!("/api/v1/datasets/{}/train/{}.png", detail.spec.dataset, s.dataset_index)
                                    alt=format!("training sample {} ({label})", s.dataset_index) width="168" height="168" />
                                <dl class="config">
                                    <dt>"Class"</dt><dd>{label.clone()}</dd>
                                    <dt>"Content key"</dt><dd class="mono">{history.sample_key.clone()}</dd>
                                    <dt>"Predicted at the last epoch"</dt><dd data-stat="last_prediction">{last_prediction(this, &detail.class_names)}</dd>
                                    <dt>"Forgetting events"</dt><dd data-stat="forgetting_events">{s.forgetting_events}</dd>
                                    <dt>"Learning events"</dt><dd>{s.learning_events}</dd>
                                    <dt>"First learned"</dt><dd>{if s.never_learned { "never".to_owned() } else { s.first_learned_epoch.map_or("–".into(), |e| format!("epoch {e}")) }}</dd>
                                    <dt>"Confidence / variability"</dt><dd>{format!("{} / {}", number(s.confidence, 3), number(s.variability, 3))}</dd>
                                    <dt>"Decay tau (R²)"</dt><dd>{format!("{} ({})", number(s.tau, 2), number(s.r2, 3))}</dd>
                                    <dt>"Loss after warmup"</dt><dd>{number(s.warmup_loss, 3)}</dd>
                                </dl>
                            </div>
                            <p class="history-note muted" data-runs=runs.len()>
                                {format!("{} drawn: colour by architecture, dash by seed, this run thicker. Click a name under a chart to hide or show its line.",
                                    if runs.len() == 1 { "1 run".to_owned() } else { format!("All {} runs that hold this sample", runs.len()) })}
                            </p>
                            <div class="run-grid">
                                <section class="card">
                                    <LineChart title="Probability of the true class per epoch".into() x_label="epoch".into() y_label="p(true class)".into()
                                        series=p_true warmup_until y_range=Some((0.0, 1.0)) />
                                </section>
                                <section class="card">
                                    <LineChart title="Loss per epoch".into() x_label="epoch".into() y_label="cross-entropy".into() series=loss warmup_until />
                                </section>
                            </div>
                            <section class="card">
                                <h2>"Correct at each epoch, in every run over this dataset"</h2>
                                <table class="data history-table">
                                    <thead><tr><th>"Run"</th><th>"Architecture"</th><th class="num">"Seed"</th><th class="num">"Forgetting events"</th><th>"Last prediction"</th><th>"Epochs (■ correct, □ wrong: predicted class)"</th></tr></thead>
                                    <tbody>{runs.iter().map(|t| view! {
                                        <tr data-run=t.run_id>
                                            <td><a href=format!("/runs/{}/samples/{}", t.run_id, history.sample_key)>{format!("#{}", t.run_id)}</a></td>
                                            <td data-arch=t.arch.clone()>{arch_label(&t.arch)}</td>
                                            <td class="num">{t.seed}</td>
                                            <td class="num">{t.stats.forgetting_events}</td>
                                            <td class="last-prediction">{last_prediction(t, &names)}</td>
                                            <td class="strip">{t.correct.iter().zip(&t.predicted).enumerate().map(|(e, (&c, &p))| {
                                                let predicted = names.get(p as usize).cloned().unwrap_or_else(|| p.to_string());
                                                view! { <span class=if c == 1 { "tick-correct" } else { "tick-wrong" }
                                                    title=format!("epoch {}: {}", e + 1, if c == 1 { "correct".to_owned() } else { format!("predicted {predicted}") })>
                                                    {if c == 1 { "■" } else { "□" }}</span> }
                                            }).collect_view()}</td>
                                        </tr>
                                    }).collect_view()}</tbody>
                                </table>
                                {(history.other_runs.is_empty()).then(|| view! { <p class="muted">"No other finished run over this dataset holds this sample yet."</p> })}
                            </section>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trajectory(run_id: i64, arch: &str, seed: u64) -> Trajectory {
        Trajectory { run_id, arch: arch.into(), seed, stats: serde_json::from_value(serde_json::json!({"sample_key": "k", "sample_index": 0, "dataset_index": 0, "label": 3, "forgetting_events": 1, "learning_events": 1, "first_learned_epoch": 1, "never_learned": false, "unforgettable": false, "confidence": null, "variability": null, "correctness": null, "tau": null, "r2": null, "warmup_loss": null})).unwrap(), correct: vec![1, 0], p_true: vec![0.9, 0.2], loss: vec![0.1, 1.6], predicted: vec![3, 4] }
    }

    #[test]
    fn every_run_is_drawn_coloured_by_architecture_and_dashed_by_seed() {
        let all: Vec<Trajectory> = (0..11).map(|i| trajectory(i + 1, ["resnet18", "deit_small", "small_cnn"][i as usize % 3], 1 + i as u64 % 4)).collect();
        let runs: Vec<&Trajectory> = all.iter().collect();
        let series = history_series(&runs, |t| t.loss.iter().map(|&l| f64::from(l)).collect());
        assert_eq!(series.len(), 11);
        assert_eq!(series[0].name, "#1 ResNet-18 seed 1 (this run)");
        assert_eq!(series[0].style, " this-run");
        assert_eq!((series[1].class, series[1].style.as_str()), ("series-2", "dash-1"));
        assert_eq!(series[3].class, series[0].class, "one architecture, one colour");
        assert_eq!((series[3].style.as_str(), series[4].style.as_str()), ("dash-3", ""), "seeds 4, then 1 again (not this run)");
        assert_eq!(series[10].points, vec![(1.0, 0.1f32 as f64), (2.0, 1.6f32 as f64)]);
    }

    #[test]
    fn the_url_becomes_a_sample_query_or_a_message() {
        let url = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()).unwrap_or_default()
        };
        let query = sample_query(url(&[("sort", "-tau"), ("label", "3"), ("never_learned", "false"), ("min_confidence", "0.5"), ("offset", "60")])).unwrap();
        assert_eq!(query.sort.as_deref(), Some("-tau"));
        assert_eq!(query.label, Some(3));
        assert_eq!(query.never_learned, Some(false));
        assert_eq!(query.min_confidence, Some(0.5));
        assert_eq!(query.offset, Some(60));
        assert_eq!(query.unforgettable, None);
        assert_eq!(sample_query(url(&[("min_tau", "abc")])).unwrap_err(), "min tau must be a number, got \"abc\"");
    }
}
