//! Exports and comparisons on a real database with runs trained by a real worker.

mod common;

use std::time::Duration;

use common::{TestServer, launch, wait_for_run};
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::{Value, json};

fn parquet_rows(bytes: Vec<u8>) -> (i64, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.parquet");
    std::fs::write(&path, bytes).unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr();
    let names = (0..schema.num_columns()).map(|i| schema.column(i).name().to_owned()).collect();
    (reader.metadata().file_metadata().num_rows(), names)
}

#[test]
fn exports_read_back_and_comparisons_join_runs_on_sample_keys() {
    let server = TestServer::start(1);
    let client = server.client();
    for (name, seed) in [("shapes", 1), ("other-shapes", 2)] {
        let spec = format!("classes=4,train_per_class=50,val_per_class=10,size=12,channels=1,seed={seed}");
        let response = client.post(server.api("/datasets")).json(&json!({"name": name, "format": "synthetic", "path": spec})).send().unwrap();
        assert_eq!(response.status(), 201);
    }
    let spec =
        |dataset: &str, seed: u32| json!({"dataset": dataset, "arch": "small_cnn", "epochs": 5, "batch_size": 16, "lr": 0.05, "seed": seed, "device": "cpu"});
    let ids: Vec<i64> = [("shapes", 1), ("shapes", 2), ("other-shapes", 1)].iter().map(|(d, s)| launch(&server, spec(d, *s))).collect();
    for &id in &ids {
        let run = wait_for_run(&server, id, Duration::from_secs(300));
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let (a, b, other) = (ids[0], ids[1], ids[2]);

    // Records: 200 samples x 5 epochs, the record columns of docs/design.md, in Parquet and CSV.
    let get = |path: &str| client.get(server.api(path)).send().unwrap();
    let response = get(&format!("/runs/{a}/records.parquet"));
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains(&format!("run-{a}-records.parquet")));
    let (rows, names) = parquet_rows(response.bytes().unwrap().to_vec());
    assert_eq!(rows, 1000);
    assert_eq!(names, ["run", "epoch", "phase", "sample_key", "sample_index", "label", "correct", "loss", "p_true", "margin", "predicted", "el2n", "shown"]);
    let csv = get(&format!("/runs/{a}/records.csv")).text().unwrap();
    assert_eq!(csv.lines().count(), 1001);
    let (rows, names) = parquet_rows(get(&format!("/runs/{a}/samples.parquet")).bytes().unwrap().to_vec());
    assert_eq!(rows, 200);
    assert!(names.contains(&"forgetting_events".to_owned()) && names.contains(&"tau".to_owned()));
    assert_eq!(get(&format!("/runs/{a}/samples.csv")).text().unwrap().lines().count(), 201);
    assert_eq!(get(&format!("/runs/{a}/records.json")).status(), 404);

    // One sample's trajectory: its records at every epoch (as in records.csv), and the same
    // sample in the other run over this dataset, not in the run over another dataset.
    let line = csv.lines().nth(1 + 3 * 200 + 17).unwrap().to_owned(); // epoch 4, sample 17
    let fields: Vec<&str> = line.split(',').collect();
    let key = fields[3];
    let history: Value = get(&format!("/runs/{a}/samples/{key}")).json().unwrap();
    assert_eq!(history["this_run"]["run_id"], a);
    assert_eq!(history["this_run"]["correct"].as_array().unwrap().len(), 5);
    assert_eq!(history["this_run"]["correct"][3].as_u64().unwrap().to_string(), fields[6]);
    assert_eq!(history["this_run"]["loss"][3].as_f64().unwrap() as f32, fields[7].parse::<f32>().unwrap());
    assert_eq!(history["this_run"]["stats"]["sample_key"], key);
    let others: Vec<i64> = history["other_runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_i64().unwrap()).collect();
    assert_eq!(others, vec![b]);
    let missing = get(&format!("/runs/{a}/samples/0123456789abcdef0123456789abcdef"));
    assert_eq!(missing.status(), 404);
    assert!(missing.text().unwrap().contains("no finished statistics"));

    // Compare: the matrices agree with the statistics computed here from the API's samples.
    let response = get(&format!("/compare?runs={a},{b}&q=0.1"));
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    let comparison: Value = response.json().unwrap();
    assert_eq!(comparison["runs"], json!([a, b]));
    assert_eq!(comparison["samples"], 200);
    assert_eq!(comparison["set_sizes"], json!([20, 20]));
    assert_eq!(comparison["jaccard"][0][0], 1.0);
    assert_eq!(comparison["jaccard"][0][1], comparison["jaccard"][1][0]);
    assert!((comparison["chance"].as_f64().unwrap() - 0.1 / 1.9).abs() < 1e-15);
    let scores = |id: i64| -> std::collections::BTreeMap<String, (f64, bool)> {
        let page: Value = get(&format!("/runs/{id}/samples?limit=1000")).json().unwrap();
        page["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["sample_key"].as_str().unwrap().to_owned(), (s["forgetting_events"].as_f64().unwrap(), s["never_learned"].as_bool().unwrap())))
            .collect()
    };
    let (sa, sb) = (scores(a), scores(b));
    let samples_of = |id: i64| -> Vec<Value> {
        let page: Value = get(&format!("/runs/{id}/samples?limit=1000")).json().unwrap();
        page["samples"].as_array().unwrap().clone()
    };
    // Never-learned samples rank above every forgotten one (Toneva et al.).
    let ranked = |s: &std::collections::BTreeMap<String, (f64, bool)>| -> Vec<f64> {
        let top = s.values().map(|v| v.0).fold(0.0, f64::max) + 1.0;
        s.values().map(|&(v, never)| if never { top } else { v }).collect()
    };
    let expected = dynamics::spearman(&ranked(&sa), &ranked(&sb)).r;
    let got = comparison["spearman"][0][1].as_f64();
    if expected.is_finite() {
        assert!((got.unwrap() - expected).abs() < 1e-12, "spearman {got:?} vs {expected}");
    } else {
        assert_eq!(got, None);
    }

    // "Forgotten at least once" subsets, in both runs and in either (the union).
    let keys: Vec<&String> = sa.keys().collect();
    let forgotten_in = |s: &std::collections::BTreeMap<String, (f64, bool)>, k: &String| s[k].0 > 0.0;
    for (field, count_field, union) in [("spearman_forgotten", "forgotten_pairs", false), ("spearman_forgotten_either", "forgotten_either", true)] {
        let chosen: Vec<&String> = keys
            .iter()
            .copied()
            .filter(|k| if union { forgotten_in(&sa, k) || forgotten_in(&sb, k) } else { forgotten_in(&sa, k) && forgotten_in(&sb, k) })
            .collect();
        assert_eq!(comparison[count_field][0][1].as_u64().unwrap(), chosen.len() as u64, "{field}");
        let (x, y): (Vec<f64>, Vec<f64>) = chosen.iter().map(|k| (sa[*k].0, sb[*k].0)).unzip();
        let r = dynamics::spearman(&x, &y).r;
        match comparison[field][0][1].as_f64() {
            Some(got) => assert!((got - r).abs() < 1e-12, "{field}: {got} vs {r}"),
            None => assert!(!r.is_finite(), "{field}"),
        }
    }
    let p = comparison["spearman_p"][0][1].as_f64();
    assert_eq!(p.is_some(), expected.is_finite(), "a p-value with every defined coefficient");
    assert_eq!(comparison["spearman_p"][0][0], Value::Null, "none for a run against itself");
    assert_eq!(comparison["kendall"][0][1], comparison["kendall"][1][0]);

    // Comparison extras: reliability of the 2-run average, per-class forgetting, the curve.
    let reliability = comparison["reliability"].as_f64();
    assert_eq!(reliability.is_some(), expected.is_finite());
    if let Some(reliability) = reliability {
        assert!((reliability - dynamics::spearman_brown(expected, 2.0)).abs() < 1e-12);
    }
    let curved: Value = get(&format!("/compare?runs={a},{b}&curve=0.05,0.5")).json().unwrap();
    let points = curved["jaccard_curve"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(points[1]["q"], 0.5);
    assert!((points[1]["chance"].as_f64().unwrap() - 0.5 / 1.5).abs() < 1e-15);
    let bad = get(&format!("/compare?runs={a},{b}&curve=0.1,2"));
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("curve must be"));

    // A pair: the set algebra of the two top-q sets adds up to their sizes and their Jaccard,
    // the scatter holds every compared sample, and the examples are named by content key.
    let paired: Value = get(&format!("/compare?runs={a},{b}&q=0.1&pair={b},{a}")).json().unwrap();
    let pair = &paired["pair"];
    assert_eq!((pair["a"].as_i64(), pair["b"].as_i64()), (Some(b), Some(a)));
    let size = |set: &str| pair[set]["count"].as_u64().unwrap();
    assert_eq!(size("both") + size("only_a"), 20);
    assert_eq!(size("both") + size("only_b"), 20);
    let jaccard = size("both") as f64 / (size("both") + size("only_a") + size("only_b")) as f64;
    assert!((jaccard - paired["jaccard"][0][1].as_f64().unwrap()).abs() < 1e-15, "{jaccard} vs {}", paired["jaccard"]);
    assert_eq!(pair["scatter"]["points"], 200);
    assert_eq!(pair["scatter"]["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum::<u64>(), 200);
    for example in pair["only_a"]["examples"].as_array().unwrap() {
        let key = example["sample_key"].as_str().unwrap();
        assert!(sb.contains_key(key), "examples are samples of the runs");
    }
    let refused = get(&format!("/compare?runs={a},{b}&pair={a},{a}"));
    assert_eq!(refused.status(), 400);
    assert!(refused.text().unwrap().contains("pair must be two different runs"));
    // Two runs of one architecture with different seeds: one cross-seed pair, none across
    // architectures; the summary repeats the matrices' values.
    let summary = &paired["summary"];
    assert_eq!((summary["cross_seed_pairs"].as_u64(), summary["cross_arch_pairs"].as_u64()), (Some(1), Some(0)));
    assert_eq!(summary["cross_seed_jaccard"], paired["jaccard"][0][1]);
    assert_eq!(summary["cross_seed_spearman"], paired["spearman"][0][1]);
    assert_eq!(summary["per_arch"][0]["arch"], "small_cnn");
    assert_eq!(paired["members"][1]["seed"], 2);

    // The comparison's per-sample statistics in one file: every run's rows, by run.
    let csv = get(&format!("/compare/samples.csv?runs={a},{b}")).text().unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 200);
    assert_eq!(csv.lines().filter(|l| l.ends_with(&format!(",{b}"))).count(), 200);
    let (rows, names) = parquet_rows(get(&format!("/compare/samples.parquet?runs={a},{b}")).bytes().unwrap().to_vec());
    assert_eq!(rows, 400);
    assert_eq!(names.last().map(String::as_str), Some("run"));
    let refused = get(&format!("/compare/samples.csv?runs={a},{other}"));
    assert_eq!(refused.status(), 409);
    assert!(refused.text().unwrap().contains("add intersect=true"));
    assert_eq!(get(&format!("/compare/samples.csv?runs={a},{other}&intersect=true")).text().unwrap().lines().count(), 1, "no shared samples");

    // The data map: the cells count the samples the API lists, cell by cell, and colour
    // them by mean correctness.
    let map: Value = get(&format!("/runs/{a}/datamap")).json().unwrap();
    let grid = &map["grid"];
    let (bins, counts) = (grid["x_bins"].as_u64().unwrap() as usize, grid["counts"].as_array().unwrap());
    let mut expected = vec![0u64; counts.len()];
    let mut sums = vec![0f64; counts.len()];
    for s in samples_of(a) {
        let (v, c, k) = (s["variability"].as_f64().unwrap(), s["confidence"].as_f64().unwrap(), s["correctness"].as_f64().unwrap());
        let cell = |x: f64, max: f64| ((x / max * bins as f64) as usize).min(bins - 1);
        expected[cell(c, 1.0) * bins + cell(v, 0.5)] += 1;
        sums[cell(c, 1.0) * bins + cell(v, 0.5)] += k;
    }
    assert_eq!(counts.iter().map(|c| c.as_u64().unwrap()).collect::<Vec<_>>(), expected);
    for (cell, mean) in grid["means"].as_array().unwrap().iter().enumerate() {
        match mean.as_f64() {
            Some(m) => assert!((m - sums[cell] / expected[cell] as f64).abs() < 1e-12),
            None => assert_eq!(expected[cell], 0),
        }
    }
    assert_eq!(get("/runs/999/datamap").status(), 404);

    // The run's analysis: every sample's decay fit counted once; per-class forgetting and the
    // forgotten-into matrix agree with the per-sample statistics.
    let run: Value = get(&format!("/runs/{a}")).json().unwrap();
    let decay = &run["analysis"]["decay"];
    let count = |v: &Value| v.as_u64().unwrap();
    assert_eq!(count(&decay["fitted"]) + count(&decay["never_learned"]) + count(&decay["too_few_points"]) + count(&decay["constant"]), 200, "{decay}");
    let histogram: u64 = decay["r2_histogram"].as_array().unwrap().iter().map(count).sum();
    assert_eq!(histogram + count(&decay["r2_below_zero"]), count(&decay["fitted"]));
    let page: Value = get(&format!("/runs/{a}/samples?limit=1000")).json().unwrap();
    let samples = page["samples"].as_array().unwrap();
    let with_tau = samples.iter().filter(|s| !s["tau"].is_null()).count();
    assert!(with_tau as u64 <= count(&decay["fitted"]));
    assert_eq!(run["spec"]["warmup_epochs"], 0);
    assert_eq!(run["analysis"]["warmup_predictability"], Value::Null, "no head warm-up, no predictability");
    // Issue 17, item 4: the top-q "forgotten" set of a lower-is-forgotten score (confidence)
    // takes the lowest values; it used to take the highest, the least-forgotten end.
    let by_confidence: Value = get(&format!("/compare?runs={a},{b}&q=0.1&score=confidence&pair={a},{b}")).json().unwrap();
    assert_eq!(by_confidence["direction"], "lower");
    assert!(by_confidence["score_meaning"].as_str().unwrap().contains("true class"));
    let confidence_of: std::collections::HashMap<String, f64> =
        samples.iter().map(|s| (s["sample_key"].as_str().unwrap().to_owned(), s["confidence"].as_f64().unwrap())).collect();
    let mut ascending: Vec<f64> = confidence_of.values().copied().collect();
    ascending.sort_by(f64::total_cmp);
    let size = by_confidence["set_sizes"][0].as_u64().unwrap() as usize;
    let pair = &by_confidence["pair"];
    let members_of_a: Vec<f64> =
        ["only_a", "both"].iter().flat_map(|set| pair[set]["examples"].as_array().unwrap()).map(|e| confidence_of[e["sample_key"].as_str().unwrap()]).collect();
    assert!(!members_of_a.is_empty());
    assert!(
        members_of_a.iter().all(|&c| c <= ascending[size - 1]),
        "run {a}'s top set holds its {size} least confident samples: {members_of_a:?} vs {}",
        ascending[size - 1]
    );

    // Issue 17, item 3: warm-up predictability against the decay rate and tau, the decay
    // fitted on the fine-tuning epochs only, over every sample with a defined decay, with n
    // and p; recomputed here from the run's exported records, to the last digit.
    let warm = launch(
        &server,
        json!({"dataset": "shapes", "arch": "small_cnn", "warmup_epochs": 1, "epochs": 6, "batch_size": 16, "lr": 0.05, "seed": 3, "device": "cpu"}),
    );
    assert_eq!(wait_for_run(&server, warm, Duration::from_secs(300))["status"], "succeeded");
    let warm_run: Value = get(&format!("/runs/{warm}")).json().unwrap();
    // Issue 17: the settings are recorded with the statistics; the default window is the
    // fine-tuning epochs (2..=7 after one warm-up epoch).
    assert_eq!(warm_run["analysis"]["settings"], json!({"window": "fine_tuning", "retention": "a", "never_learned": "max", "el2n_epoch": null}));
    assert_eq!(warm_run["analysis"]["window_epochs"], json!([2, 7]));
    let warm_records = records_of(&get(&format!("/runs/{warm}/records.csv")).text().unwrap(), 7, 200);
    let columns: Vec<dynamics::TraceColumns> = warm_records.iter().skip(1).map(EpochCsv::trace).collect();
    let fine_tuning: Vec<dynamics::SampleValues> =
        dynamics::summarize_samples(&columns, 0, None, dynamics::AnalysisSettings::default()).iter().map(dynamics::SampleValues::of).collect();
    let warm_samples: Value = get(&format!("/runs/{warm}/samples?limit=1000")).json().unwrap();
    let mut loss = vec![None; 200];
    for s in warm_samples["samples"].as_array().unwrap() {
        loss[s["sample_index"].as_u64().unwrap() as usize] = s["warmup_loss"].as_f64();
    }
    let expected = dynamics::warmup::predictability(&fine_tuning, &loss);
    let analysis = &warm_run["analysis"];
    for (field, c) in [("warmup_vs_rate", expected.rate), ("warmup_predictability", expected.tau)] {
        assert_eq!(analysis[field]["n"].as_u64().unwrap(), c.n as u64, "{field}: {}", analysis[field]);
        assert_eq!(analysis[field]["r"].as_f64(), Some(c.r).filter(|r| r.is_finite()), "{field}");
        assert_eq!(analysis[field]["p_value"].as_f64(), c.p_value, "{field}");
    }
    // Every fitted sample and every unforgettable one (rate 0) has a value: none is dropped
    // for want of a finite tau, as the old Spearman(loss, tau) over fitted taus did.
    let defined = fine_tuning.iter().filter(|v| v.r2.is_some() || v.unforgettable).count();
    assert_eq!(expected.rate.n, defined);
    // The served per-sample statistics are those of the fine-tuning epochs of the run's own
    // records, to the last digit (first-learned epochs in the run's numbering).
    let full: Vec<dynamics::TraceColumns> = warm_records.iter().map(EpochCsv::trace).collect();
    let recomputed = dynamics::summarize_samples(&full, 1, None, dynamics::AnalysisSettings::default());
    same_statistics(&warm_samples, &recomputed);

    // The other settings, chosen at launch: every epoch, definition B (p_true anchored at
    // its observed start), never-learned samples excluded from the class means.
    let chosen = launch(
        &server,
        json!({"dataset": "shapes", "arch": "small_cnn", "warmup_epochs": 1, "epochs": 6, "batch_size": 16, "lr": 0.05, "seed": 3, "device": "cpu",
               "window": "all", "retention": "b", "never_learned": "exclude"}),
    );
    assert_eq!(wait_for_run(&server, chosen, Duration::from_secs(300))["status"], "succeeded");
    let chosen_run: Value = get(&format!("/runs/{chosen}")).json().unwrap();
    assert_eq!(chosen_run["analysis"]["settings"], json!({"window": "all", "retention": "b", "never_learned": "exclude", "el2n_epoch": null}));
    assert_eq!(chosen_run["analysis"]["window_epochs"], json!([1, 7]));
    let chosen_records = records_of(&get(&format!("/runs/{chosen}/records.csv")).text().unwrap(), 7, 200);
    let full: Vec<dynamics::TraceColumns> = chosen_records.iter().map(EpochCsv::trace).collect();
    let settings = dynamics::AnalysisSettings {
        window: dynamics::Window::All,
        retention: dynamics::Retention::B,
        never_learned: dynamics::NeverLearnedPolicy::Exclude,
        el2n_epoch: None,
    };
    let recomputed = dynamics::summarize_samples(&full, 1, None, settings);
    let chosen_samples: Value = get(&format!("/runs/{chosen}/samples?limit=1000")).json().unwrap();
    same_statistics(&chosen_samples, &recomputed);
    let decay = &chosen_run["analysis"]["decay"];
    let fits: Vec<dynamics::Decay> = recomputed.iter().map(|s| s.decay).collect();
    let counted = dynamics::decay::summarize_fits(&fits);
    assert_eq!(
        (decay["fitted"].as_u64(), decay["mean_r2"].as_f64(), decay["median_r2"].as_f64()),
        (Some(counted.fitted as u64), counted.mean_r2, counted.median_r2)
    );
    // Under B an unforgettable sample's p_true still moves, so it is fitted (under A its lag
    // retention is constant at 1: excluded).
    assert!(recomputed.iter().any(|s| s.events.unforgettable && s.decay.fitted().is_some()), "{decay}");

    // Filters: each bound leaves exactly the samples the statistics satisfy.
    let total = |query: &str| count(&get(&format!("/runs/{a}/samples?limit=1&{query}")).json::<Value>().unwrap()["total"]);
    let matching = |f: &dyn Fn(&Value) -> bool| samples.iter().filter(|s| f(s)).count() as u64;
    assert_eq!(total("never_learned=true"), matching(&|s| s["never_learned"] == true));
    assert_eq!(total("unforgettable=false&label=2"), matching(&|s| s["unforgettable"] == false && s["label"] == 2));
    assert_eq!(total("min_forgetting_events=1&max_forgetting_events=2"), matching(&|s| (1..=2).contains(&count(&s["forgetting_events"]))));
    assert_eq!(
        total("min_confidence=0.5&max_variability=0.3"),
        matching(&|s| s["confidence"].as_f64().is_some_and(|c| c >= 0.5) && s["variability"].as_f64().is_some_and(|v| v <= 0.3))
    );
    assert_eq!(total("min_tau=0"), with_tau as u64, "a bound on tau leaves out samples without one");
    let sorted: Value = get(&format!("/runs/{a}/samples?sort=-confidence&min_r2=0.1&limit=500")).json().unwrap();
    let confidences: Vec<f64> = sorted["samples"].as_array().unwrap().iter().map(|s| s["confidence"].as_f64().unwrap()).collect();
    assert!(confidences.windows(2).all(|w| w[0] >= w[1]), "sorted by confidence, descending");
    assert!(sorted["samples"].as_array().unwrap().iter().all(|s| s["r2"].as_f64().unwrap() >= 0.1));
    let bad = get(&format!("/runs/{a}/samples?min_tau=NaN"));
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("the bound on tau must be a finite number"));

    let classes: Value = get(&format!("/runs/{a}/classes")).json().unwrap();
    assert_eq!(classes["samples"], json!([50, 50, 50, 50]));
    for c in 0..4u64 {
        let learned: Vec<f64> =
            samples.iter().filter(|s| s["label"] == c && s["never_learned"] == false).map(|s| s["forgetting_events"].as_f64().unwrap()).collect();
        let never = samples.iter().filter(|s| s["label"] == c && s["never_learned"] == true).count() as u64;
        assert_eq!(count(&classes["never_learned"][c as usize]), never);
        // Issue 17: never-learned samples count as forgotten at all 5 epochs (the default
        // policy, max), so a class that is rarely learned does not look unforgotten.
        let mean = classes["forgetting_mean"][c as usize].as_f64().unwrap();
        assert!((mean - (learned.iter().sum::<f64>() + 5.0 * never as f64) / (learned.len() as f64 + never as f64)).abs() < 1e-12);
    }
    let events: u64 = samples.iter().map(|s| count(&s["forgetting_events"])).sum();
    let into: u64 = classes["forgotten_into"].as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().iter().map(count)).sum();
    assert_eq!(into, events, "one forgotten-into entry per forgetting event");
    let accuracy = classes["val_accuracy"].as_array().unwrap();
    assert_eq!(accuracy.len(), 5, "one entry per epoch");
    let confusion = &classes["val_confusion"];
    for c in 0..4 {
        let row: Vec<u64> = confusion[c].as_array().unwrap().iter().map(count).collect();
        let share = row[c] as f64 / row.iter().sum::<u64>() as f64;
        assert!((accuracy[4]["accuracy"][c].as_f64().unwrap() - share).abs() < 1e-12);
    }
    assert!((classes["embedding_similarity"][2][2].as_f64().unwrap() - 1.0).abs() < 1e-12, "cosine of a class mean with itself");
    assert_eq!(count(&classes["similarity_agreement"]["n"]), 6, "the 6 pairs of 4 classes");
    assert_eq!(comparison["class_forgetting"][0], classes["forgetting_mean"]);
    assert_eq!(get("/runs/999/classes").status(), 404);

    // Runs with the same sample list are compared from packed columns without a join; the
    // join on content keys (runs over different lists) gives the same answer.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = runtime.block_on(sqlx::SqlitePool::connect(&format!("sqlite://{}", server.database().display()))).unwrap();
    let sql = |statement: &str, run: i64| {
        runtime.block_on(sqlx::query(statement).bind(run).execute(&pool)).unwrap();
    };
    let query = protocol::CompareQuery { runs: format!("{a},{b}"), q: Some(0.1), ..Default::default() };
    let packed = runtime.block_on(server::analysis::compare(&pool, query.clone())).unwrap();
    sql("UPDATE runs SET manifest_digest = NULL WHERE id = ?", a);
    let joined = runtime.block_on(server::analysis::compare(&pool, query)).unwrap();
    assert_eq!(serde_json::to_value(&packed).unwrap(), serde_json::to_value(&joined).unwrap());
    assert_eq!(serde_json::to_value(&packed).unwrap(), comparison);

    // The route's cache answers while the runs are unchanged, and forgets a comparison when
    // one of its runs changes.
    sql("DELETE FROM run_columns WHERE run_id = ?", b);
    sql("DELETE FROM sample_stats WHERE run_id = ?", b);
    let cached: Value = get(&format!("/compare?runs={a},{b}&q=0.1")).json().unwrap();
    assert_eq!(cached, comparison, "served from the cache");
    sql("UPDATE jobs SET finished_at = '2099-01-01T00:00:00Z' WHERE run_id = ?", b);
    let recomputed = get(&format!("/compare?runs={a},{b}&q=0.1"));
    assert_eq!(recomputed.status(), 409, "computed again from the changed run");
    assert!(recomputed.text().unwrap().contains("the runs hold different samples"));

    // Different datasets are refused, and say how to compare anyway; they share no samples.
    let refused = get(&format!("/compare?runs={a},{other}"));
    assert_eq!(refused.status(), 409);
    assert!(refused.text().unwrap().contains("different datasets (shapes and other-shapes); add intersect=true"));
    let refused = get(&format!("/compare?runs={a},{other}&intersect=true"));
    assert_eq!(refused.status(), 409);
    assert!(refused.text().unwrap().contains("only 0 samples are left"));
    // Bad input says what to fix.
    for (query, message) in [
        ("runs=1", "compare 2 to 50 runs"),
        (&format!("runs={a},{b}&q=0") as &str, "q must be"),
        (&format!("runs={a},{b}&score=luck"), "unknown score"),
        ("runs=1,x", "run ids separated by commas"),
    ] {
        let response = get(&format!("/compare?{query}"));
        assert_eq!(response.status(), 400, "{query}");
        assert!(response.text().unwrap().contains(message), "{query}");
    }
}

/// One epoch of a run's records.csv: correct, p_true, loss, margin, EL2N per sample.
#[derive(Clone)]
struct EpochCsv {
    correct: Vec<u8>,
    p_true: Vec<f32>,
    loss: Vec<f32>,
    margin: Vec<f32>,
    el2n: Vec<f32>,
}

impl EpochCsv {
    fn trace(&self) -> dynamics::TraceColumns<'_> {
        dynamics::TraceColumns { correct: &self.correct, p_true: &self.p_true, loss: &self.loss, margin: Some(&self.margin), el2n: Some(&self.el2n) }
    }
}

/// A run's records.csv as per-epoch columns of `samples` samples.
fn records_of(csv: &str, epochs: usize, samples: usize) -> Vec<EpochCsv> {
    let zeros = vec![0f32; samples];
    let mut out = vec![EpochCsv { correct: vec![0u8; samples], p_true: zeros.clone(), loss: zeros.clone(), margin: zeros.clone(), el2n: zeros }; epochs];
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (epoch_at, index_at, correct_at) = (at("epoch"), at("sample_index"), at("correct"));
    let floats = [at("p_true"), at("loss"), at("margin"), at("el2n")];
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (epoch, index): (usize, usize) = (f[epoch_at].parse().unwrap(), f[index_at].parse().unwrap());
        let row = &mut out[epoch - 1];
        row.correct[index] = u8::from(f[correct_at] == "1");
        for (column, &position) in [&mut row.p_true, &mut row.loss, &mut row.margin, &mut row.el2n].into_iter().zip(&floats) {
            column[index] = f[position].parse().unwrap();
        }
    }
    out
}

/// The served per-sample statistics (`/runs/{id}/samples`) equal the summaries, exactly.
fn same_statistics(page: &Value, summaries: &[dynamics::SampleSummary]) {
    let samples = page["samples"].as_array().unwrap();
    assert_eq!(samples.len(), summaries.len());
    for s in samples {
        let i = s["sample_index"].as_u64().unwrap() as usize;
        let v = dynamics::SampleValues::of(&summaries[i]);
        let what = format!("sample {i}: {s}");
        assert_eq!(s["forgetting_events"].as_u64(), Some(u64::from(v.forgetting_events)), "{what}");
        assert_eq!(s["learning_events"].as_u64(), Some(u64::from(v.learning_events)), "{what}");
        assert_eq!(s["first_learned_epoch"].as_u64(), v.first_learned_epoch.map(u64::from), "{what}");
        assert_eq!(s["unforgettable"].as_bool(), Some(v.unforgettable), "{what}");
        let fields = [
            ("confidence", v.confidence),
            ("variability", v.variability),
            ("correctness", v.correctness),
            ("tau", v.tau),
            ("r2", v.r2),
            ("mean_margin", v.mean_margin),
            ("el2n", v.el2n),
        ];
        assert!(v.mean_margin.is_some() && v.el2n.is_some(), "{what}");
        for (name, value) in fields {
            assert_eq!(s[name].as_f64(), value, "{name} of {what}");
        }
    }
}
