//! `/compare?runs=1,2,3`: how much finished runs agree on which samples they forget, in the
//! form of the study's findings (docs/design.md): Jaccard of the top-q forgotten sets against
//! chance, rank correlations, a pair of runs side by side, and class-level forgetting.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use protocol::study::finding_name;
use protocol::{CompareQuery, Comparison, SampleSet};

use crate::components::charts::{GridChart, Heatmap, LineChart, Series, arch_class, dashes_by_seed};
use crate::components::{arch_label, number, query_string};
use crate::functions::{compare_runs, get_run};

/// The q values of the Jaccard-vs-q curve.
const CURVE: &str = "0.01,0.02,0.05,0.1,0.2,0.3,0.5,0.7";

/// The run ids of the URL: `runs=1,2` or, from the runs table's form, `run=1&run=2`.
fn run_ids(runs: Option<String>, run: Option<Vec<String>>) -> String {
    let mut ids: Vec<String> = runs.unwrap_or_default().split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    ids.extend(run.unwrap_or_default().into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()));
    ids.dedup();
    ids.join(",")
}

#[component]
pub fn ComparePage() -> impl IntoView {
    let url = use_query_map();
    let param = move |name: &str| url.read().get(name).unwrap_or_default();
    let runs = Memo::new(move |_| run_ids(url.read().get("runs"), url.read().get_all("run")));
    let query = Memo::new(move |_| CompareQuery {
        runs: runs.get(),
        q: param("q").parse().ok(),
        score: Some(param("score")).filter(|s| !s.is_empty()),
        never_learned: Some(param("never_learned")).filter(|s| !s.is_empty()),
        intersect: (param("intersect") == "true").then_some(true),
        curve: Some(CURVE.to_owned()),
        // Without a choice, the server picks the first two runs of different architectures.
        pair: Some(param("pair")).filter(|s| !s.is_empty()).or_else(|| Some("auto".to_owned())),
    });
    let comparison = crate::components::resource::resource(
        move || query.get(),
        |query| async move {
            if query.runs.split(',').filter(|s| !s.is_empty()).count() < 2 {
                return Ok(None);
            }
            // The runs' own pages are loaded here too, not by a resource of the side-by-side
            // part: a resource made inside another's Suspend made the page's hydration panic
            // now and then (its place among the page's resources depended on timing).
            let comparison = compare_runs(query).await?;
            let mut details = Vec::new();
            for &id in comparison.runs.iter().take(SIDE_BY_SIDE) {
                details.push(get_run(id).await?);
            }
            Ok::<_, ServerFnError>(Some((comparison, details)))
        },
    );
    view! {
        <Title text="Compare runs" />
        <h1>"Compare runs"</h1>
        <form class="filters compare-controls" method="get" action="/compare" aria-label="comparison settings">
            <label>"Runs" <input name="runs" size="16" placeholder="e.g. 3,4,7" value=move || runs.get() /></label>
            <label>"Top fraction q" <input name="q" type="number" min="0.001" max="1" step="any" size="5" value=move || { let q = param("q"); if q.is_empty() { "0.1".to_owned() } else { q } } /></label>
            <label>"Score"
                <select name="score">
                    {protocol::SampleScore::ALL.iter().map(|&score| {
                        let name = score.as_str();
                        let direction = match score.direction() { protocol::Direction::Higher => "higher", protocol::Direction::Lower => "lower" };
                        view! { <option value=name selected=move || param("score") == name>{format!("{} ({direction} is more forgotten)", score.label())}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label>"Never learned"
                <select name="never_learned">
                    <option value="max" selected=move || param("never_learned") != "exclude">"ranked most forgotten"</option>
                    <option value="exclude" selected=move || param("never_learned") == "exclude">"left out"</option>
                </select>
            </label>
            <label>"Pair (a,b)" <input name="pair" size="8" placeholder="first two" value=move || param("pair") /></label>
            <label class="check"><input type="checkbox" name="intersect" value="true" checked=move || param("intersect") == "true" />" shared samples only"</label>
            <button class="button" type="submit">"Compare"</button>
        </form>
        <Transition fallback=|| view! { <p class="loading">"Comparing…"</p> }>
            {move || Suspend::new(async move {
                match comparison.await {
                    Err(error) => view! { <p class="error" role="alert">{format!("Could not compare: {error}")}</p> }.into_any(),
                    Ok(None) => view! {
                        <p class="empty">"Choose two or more finished runs: tick them in the " <a href="/">"runs table"</a>
                            " and press “Compare selected runs”, or type their numbers above."</p>
                    }.into_any(),
                    Ok(Some((comparison, details))) => view! { <ComparisonView comparison details /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ComparisonView(comparison: Comparison, details: Vec<protocol::RunDetail>) -> impl IntoView {
    let labels: Vec<String> = comparison.members.iter().map(|m| format!("#{} {} seed {}", m.id, arch_label(&m.arch), m.seed)).collect();
    let short: Vec<String> = comparison.members.iter().map(|m| format!("#{}", m.id)).collect();
    let dataset = comparison.members.first().map(|m| m.dataset.clone()).unwrap_or_default();
    let q = comparison.q;
    let score = comparison.score.clone();
    let curve = vec![
        Series::new("mean Jaccard", "series-0", comparison.jaccard_curve.iter().filter_map(|p| Some((p.q, p.jaccard?))).collect()),
        Series::new("chance q/(2-q)", "series-1", comparison.jaccard_curve.iter().map(|p| (p.q, p.chance)).collect()),
    ];
    let runs = comparison.runs.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",");
    let api = format!(
        "/api/v1/compare{}",
        query_string(&[("runs", comparison.runs.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",")), ("q", q.to_string()), ("score", score.clone())])
    );
    view! {
        <p class="lede" data-direction=comparison.direction.clone()>{format!(
                "{} runs over {} shared samples, ranked by {score} ({}). Each top-q forgotten set (q = {q}) takes the {} values: {} is more forgotten; never-learned samples {}. Chance Jaccard {:.4}. ",
                comparison.runs.len(), comparison.samples, comparison.score_meaning, comparison.direction, comparison.direction,
                if comparison.never_learned == "exclude" { "are left out" } else { "rank as the most forgotten (Toneva et al.)" }, comparison.chance)}
            "Export: " <a href=api>"JSON"</a> " "
            <a href=format!("/api/v1/compare/samples.csv?runs={runs}") download="">"samples.csv"</a> " "
            <a href=format!("/api/v1/compare/samples.parquet?runs={runs}") download="">"samples.parquet"</a></p>
        {comparison.summary.clone().map(|s| view! {
            <section class="card findings">
                <h2>"Findings"</h2>
                <ul class="finding-list">
                    <li data-finding="cross-arch" data-statistic="cross_arch_jaccard_all_pairs" data-value=s.cross_arch_jaccard.map(|v| v.to_string()).unwrap_or_default()>
                        <span class="finding-name">{finding_name("cross_arch_jaccard_all_pairs")}</span>
                        {format!(": {} over {} pairs of any seeds (chance {:.4}). A study's report gives its interval, and the same-seed pairing the paper uses.",
                            number(s.cross_arch_jaccard, 4), s.cross_arch_pairs, s.chance)}</li>
                    <li data-finding="cross-seed" data-statistic="cross_seed_jaccard_pooled" data-value=s.cross_seed_jaccard.map(|v| v.to_string()).unwrap_or_default()>
                        <span class="finding-name">{finding_name("cross_seed_jaccard_pooled")}</span>
                        {format!(": {} over {} pairs.", number(s.cross_seed_jaccard, 4), s.cross_seed_pairs)}</li>
                    <li data-finding="cross-seed-spearman" data-statistic="cross_seed_spearman_pooled" data-value=s.cross_seed_spearman.map(|v| v.to_string()).unwrap_or_default()>
                        <span class="finding-name">{finding_name("cross_seed_spearman_pooled")}</span>
                        {format!(": {} over the same {} pairs.", number(s.cross_seed_spearman, 4), s.cross_seed_pairs)}</li>
                    <li>{format!("Spearman-Brown reliability of the mean score over all {} runs: {}.", comparison.runs.len(), number(comparison.reliability, 4))}</li>
                </ul>
                <table class="data per-arch">
                    <thead><tr><th>"Architecture"</th><th class="num">"Runs"</th><th class="num">"Mean R² of decay fits"</th>
                        <th class="num">"Cross-seed Spearman"</th><th class="num">"Spearman-Brown"</th><th class="num">"Spearman(warmup loss, τ)"</th></tr></thead>
                    <tbody>{s.per_arch.into_iter().map(|a| view! {
                        <tr data-arch=a.arch.clone()>
                            <td>{a.arch.clone()}</td><td class="num">{a.runs}</td><td class="num">{number(a.mean_r2, 3)}</td>
                            <td class="num">{number(a.cross_seed_spearman, 3)}</td><td class="num">{number(a.reliability, 3)}</td><td class="num">{number(a.warmup_spearman, 3)}</td>
                        </tr>
                    }).collect_view()}</tbody>
                </table>
            </section>
        }.into_any())}
        {comparison.seeds_combined.clone().map(|c| view! {
            <section class="card seeds-combined">
                <h2>"Architectures on their seeds combined"</h2>
                <p class="muted small">{format!("Each architecture's runs combined per sample ({} {}), then top-{q} sets compared across architectures (chance {:.3}).",
                    score, c.combination, comparison.chance)}</p>
                <table class="data">
                    <thead><tr><th>"Architecture"</th><th>"Runs"</th><th class="num">"Set size"</th>
                        {c.archs.iter().map(|a| view! { <th class="num">{format!("Jaccard / Spearman with {a}")}</th> }).collect_view()}</tr></thead>
                    <tbody>{(0..c.archs.len()).map(|i| view! {
                        <tr data-arch=c.archs[i].clone() data-jaccard={c.jaccard[i].iter().map(|v| v.map_or(String::new(), |x| x.to_string())).collect::<Vec<_>>().join(",")}>
                            <td>{c.archs[i].clone()}</td>
                            <td>{c.runs[i].iter().map(|r| format!("#{r}")).collect::<Vec<_>>().join(", ")}</td>
                            <td class="num">{c.set_sizes[i]}</td>
                            {(0..c.archs.len()).map(|j| view! { <td class="num">{format!("{} / {}", number(c.jaccard[i][j], 3), number(c.spearman[i][j], 3))}</td> }).collect_view()}
                        </tr>
                    }).collect_view()}</tbody>
                </table>
            </section>
        })}
        <div class="run-grid">
            <section class="card">
                <Heatmap title=format!("Jaccard of the top-{q} sets (chance {:.3})", comparison.chance) row_labels=labels.clone() column_labels=short.clone()
                    values=comparison.jaccard.clone() range=(0.0, 1.0) digits=3 />
            </section>
            <section class="card">
                <Heatmap title="Spearman rank correlation".into() row_labels=labels.clone() column_labels=short.clone()
                    values=comparison.spearman.clone() range=(-1.0, 1.0) digits=3 />
            </section>
            <section class="card">
                <LineChart title="Mean pairwise Jaccard against q".into() x_label="q (fraction in each top set)".into() y_label="Jaccard".into()
                    series=curve y_range=Some((0.0, 1.0)) whole_x=false />
            </section>
        </div>
        {side_by_side(&comparison, &labels, &details)}
        {comparison.pair.clone().map(|pair| {
            let name = |id: i64| labels[comparison.runs.iter().position(|&r| r == id).unwrap_or(0)].clone();
            let (a, b) = (name(pair.a), name(pair.b));
            // Any two of the runs, picked (the form keeps the other settings).
            let choices: Vec<(String, String)> = (0..comparison.runs.len())
                .flat_map(|i| (i + 1..comparison.runs.len()).map(move |j| (i, j)))
                .map(|(i, j)| (format!("{},{}", comparison.runs[i], comparison.runs[j]), format!("{} × {}", labels[i], labels[j])))
                .collect();
            let current = format!("{},{}", pair.a, pair.b);
            view! {
                <section class="card pair" data-pair=current.clone()>
                    <h2>{format!("{a} against {b}")}</h2>
                    <form class="filters pair-picker" method="get" action="/compare" aria-label="the pair shown">
                        <input type="hidden" name="runs" value=runs.clone() />
                        <input type="hidden" name="q" value=q.to_string() />
                        <input type="hidden" name="score" value=score.clone() />
                        <input type="hidden" name="never_learned" value=comparison.never_learned.clone() />
                        <label>"Pair" <select name="pair">{choices.into_iter().map(|(value, text)| {
                            let selected = value == current;
                            view! { <option value=value selected=selected>{text}</option> }
                        }).collect_view()}</select></label>
                        <button type="submit" class="button small">"Show this pair"</button>
                    </form>
                    <div class="run-grid">
                        <GridChart title=format!("{score}: {a} (x) against {b} (y)") x_label=a.clone() y_label=b.clone() grid=pair.scatter.clone() />
                        <div class="set-algebra">
                            <SetThumbs title=format!("In both top-{q} sets") set=pair.both.clone() dataset=dataset.clone() run=pair.a />
                            <SetThumbs title=format!("Only in {a}") set=pair.only_a.clone() dataset=dataset.clone() run=pair.a />
                            <SetThumbs title=format!("Only in {b}") set=pair.only_b.clone() dataset=dataset.clone() run=pair.b />
                        </div>
                    </div>
                </section>
            }
            .into_any()
        })}
    }
    .into_any()
}

/// The parameters whose values differ between runs (each run's spec flattened as the run
/// page lists it): `(name, one value per run)`, a parameter a run lacks as "–".
fn differing_parameters(specs: &[Vec<(String, String)>]) -> Vec<(String, Vec<String>)> {
    let mut names: Vec<&String> = specs.iter().flat_map(|s| s.iter().map(|(n, _)| n)).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let values: Vec<String> = specs.iter().map(|s| s.iter().find(|(n, _)| n == name).map_or("–".to_owned(), |(_, v)| v.clone())).collect();
            values.iter().any(|v| *v != values[0]).then(|| (name.clone(), values))
        })
        .collect()
}

/// How many runs the side-by-side part loads in full (parameters, curves).
const SIDE_BY_SIDE: usize = 12;

/// What the runs' own pages hold, side by side: the parameters that differ, validation
/// curves overlaid (colour by architecture, dash by seed), and forgetting per class by name.
fn side_by_side(comparison: &Comparison, labels: &[String], details: &[protocol::RunDetail]) -> impl IntoView {
    let specs: Vec<Vec<(String, String)>> =
        details.iter().map(|d| crate::components::flatten_spec(&serde_json::to_value(&d.spec).unwrap_or_default())).collect();
    let differing = differing_parameters(&specs);
    let shown = &labels[..details.len()];
    let dash_of = dashes_by_seed(details.iter().map(|d| d.spec.seed));
    let curve = |pick: fn(&protocol::EpochMetrics) -> Option<f64>| -> Vec<Series> {
        details
            .iter()
            .zip(shown)
            .map(|(d, label)| {
                Series::new(label.clone(), arch_class(d.spec.arch.as_str()), d.epochs.iter().filter_map(|e| Some((f64::from(e.epoch), pick(e)?))).collect())
                    .styled(dash_of(d.spec.seed))
            })
            .collect()
    };
    let names = details.first().map(|d| d.class_names.clone()).unwrap_or_default();
    let classes = comparison.class_forgetting.iter().map(Vec::len).max().unwrap_or(0);
    view! {
        <section class="card parameters-differ">
            <h2>"Parameters that differ"</h2>
            {if differing.is_empty() {
                view! { <p class="empty">{format!("The {} runs share every parameter.", details.len())}</p> }.into_any()
            } else {
                view! {
                    <table class="data differ-table">
                        <thead><tr><th>"Parameter"</th>{shown.iter().map(|l| view! { <th>{l.clone()}</th> }).collect_view()}</tr></thead>
                        <tbody>{differing.into_iter().map(|(name, values)| {
                            let key = name.clone();
                            view! { <tr data-parameter=key><td class="mono">{name}</td>{values.into_iter().map(|v| view! { <td class="mono">{v}</td> }).collect_view()}</tr> }
                        }).collect_view()}</tbody>
                    </table>
                    <p class="muted small">"Every other parameter is the same in all of them."</p>
                }.into_any()
            }}
            {(comparison.runs.len() > details.len()).then(|| view! { <p class="muted small">{format!("The first {} runs of {}.", details.len(), comparison.runs.len())}</p> })}
        </section>
        <div class="run-grid">
            <section class="card">
                <LineChart title="Validation accuracy per epoch".into() x_label="epoch".into() y_label="accuracy".into()
                    series=curve(|e| e.val_accuracy) y_range=Some((0.0, 1.0)) />
            </section>
            <section class="card">
                <LineChart title="Validation loss per epoch".into() x_label="epoch".into() y_label="cross-entropy".into() series=curve(|e| e.val_loss) />
            </section>
            {(classes > 0).then(|| view! {
                <section class="card">
                    <h2>"Mean forgetting events per class"</h2>
                    <table class="data class-forgetting">
                        <thead><tr><th>"Class"</th>{labels.iter().map(|s| view! { <th class="num">{s.clone()}</th> }).collect_view()}</tr></thead>
                        <tbody>{(0..classes).map(|c| view! {
                            <tr data-class=c><td>{names.get(c).cloned().unwrap_or_else(|| format!("class {c}"))}</td>
                                {comparison.class_forgetting.iter().map(|run| view! { <td class="num">{number(run.get(c).copied().flatten(), 2)}</td> }).collect_view()}</tr>
                        }).collect_view()}</tbody>
                    </table>
                </section>
            })}
        </div>
    }
}

/// One part of a pair's set algebra: its size and its highest-scoring samples.
#[component]
fn SetThumbs(title: String, set: SampleSet, dataset: String, run: i64) -> impl IntoView {
    view! {
        <div class="sample-set">
            <h3>{title} " " <span class="count" data-count=set.count>{set.count}</span></h3>
            <ul class="thumbs small">
                {set.examples.into_iter().map(|s| view! {
                    <li class="thumb" data-sample-key=s.sample_key.clone()>
                        <a href=format!("/runs/{run}/samples/{}", s.sample_key)>
                            <img src=format!("/api/v1/datasets/{dataset}/train/{}.png", s.dataset_index) alt=format!("training sample {}", s.dataset_index) width="56" height="56" loading="lazy" />
                        </a>
                    </li>
                }).collect_view()}
            </ul>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_parameters_that_differ_are_listed() {
        let spec = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        let a = spec(&[("arch", "resnet18"), ("lr", "0.1"), ("seed", "1")]);
        let b = spec(&[("arch", "deit_small"), ("lr", "0.1"), ("seed", "1"), ("sampling.source_run", "3")]);
        let rows = differing_parameters(&[a.clone(), b]);
        assert_eq!(
            rows,
            vec![
                ("arch".to_owned(), vec!["resnet18".to_owned(), "deit_small".to_owned()]),
                ("sampling.source_run".to_owned(), vec!["–".to_owned(), "3".to_owned()])
            ]
        );
        assert!(differing_parameters(&[a.clone(), a]).is_empty());
    }

    #[test]
    fn run_ids_come_from_either_form() {
        assert_eq!(run_ids(Some("3, 4".into()), None), "3,4");
        assert_eq!(run_ids(None, Some(vec!["5".into(), "6".into()])), "5,6");
        assert_eq!(run_ids(None, None), "");
    }
}
