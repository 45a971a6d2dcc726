//! The dynamics crate against independent reference values: `bench/reference_stats.py`
//! computes them with numpy and scipy on seeded inputs and commits them to
//! `tests/fixtures/reference.json`: correlations, ranks, decay fits, events, cartography, top-q
//! sets and Jaccard, class level. Statistics must match within 1e-9, p-values within 1e-6
//! relative, and the decay fits (scipy's optimisers against ours) within 1e-6 relative.

use dynamics::decay::{Curve, Decay, fit_lag_retention, fit_p_true, lag_retention};
use dynamics::{Correlation, average_ranks, chance_jaccard, kendall_tau_b, pearson, spearman, spearman_brown};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/reference.json")).expect("the reference file")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(what: &str, ours: f64, theirs: f64, tolerance: f64) {
    let scale = theirs.abs().max(1e-300);
    assert!((ours - theirs).abs() <= tolerance * scale.max(1.0) || (ours - theirs).abs() / scale <= tolerance, "{what}: ours {ours}, scipy {theirs}");
}

fn check(what: &str, ours: Correlation, theirs: &Value) {
    let pair = floats(theirs);
    close(&format!("{what} coefficient"), ours.r, pair[0], 1e-9);
    let p = ours.p_value.expect("a p-value");
    assert!((p - pair[1]).abs() <= 1e-6 * pair[1].max(1e-300), "{what} p-value: ours {p}, scipy {}", pair[1]);
}

#[test]
fn correlations_match_scipy() {
    let r = reference();
    for (name, x, y) in [("ties", "x_int", "y_int"), ("continuous", "x_cont", "y_cont"), ("small", "x_small", "y_small")] {
        let (x, y) = (floats(&r["inputs"][x]), floats(&r["inputs"][y]));
        let expected = &r["expected"][name];
        check(&format!("{name} pearson"), pearson(&x, &y), &expected["pearson"]);
        check(&format!("{name} spearman"), spearman(&x, &y), &expected["spearman"]);
        check(&format!("{name} kendall"), kendall_tau_b(&x, &y), &expected["kendall"]);
    }
    assert_eq!(average_ranks(&floats(&r["inputs"]["x_int"])), floats(&r["expected"]["ranks"]));
    close("spearman-brown", spearman_brown(0.4, 3.0), floats(&r["expected"]["spearman_brown"])[0], 1e-12);
    close("chance", chance_jaccard(0.1), r["expected"]["chance_q10"].as_f64().unwrap(), 1e-12);
}

fn check_curve(what: &str, ours: &Curve, theirs: &Value) {
    close(&format!("{what} rate"), ours.rate, theirs["rate"].as_f64().unwrap(), 1e-6);
    close(&format!("{what} sse"), ours.sse, theirs["sse"].as_f64().unwrap(), 1e-9);
    close(&format!("{what} r2"), ours.r2, theirs["r2"].as_f64().unwrap(), 1e-9);
    close(&format!("{what} aic"), ours.aic, theirs["aic"].as_f64().unwrap(), 1e-9);
    if let Some(a) = theirs["a"].as_f64() {
        close(&format!("{what} floor"), ours.a.unwrap(), a, 1e-6);
    }
}

#[test]
fn decay_fits_match_scipy() {
    let r = reference();
    let correct: Vec<bool> = r["inputs"]["correct"].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
    let p_true: Vec<f32> = floats(&r["inputs"]["p_true"]).into_iter().map(|p| p as f32).collect();
    let points: Vec<Vec<f64>> = r["expected"]["lag_retention"].as_array().unwrap().iter().map(floats).collect();
    let ours = lag_retention(&correct);
    assert_eq!(ours.len(), points.len());
    for ((k, y), expected) in ours.iter().zip(&points) {
        assert_eq!((*k, *y), (expected[0], expected[1]));
    }
    for retention in dynamics::Retention::ALL {
        let name = format!("decay_{retention}");
        let Decay::Fitted(fit) = retention.fit(&correct, &p_true) else { panic!("{name} was excluded") };
        check_curve(&format!("{name} exponential"), &fit.exponential, &r["expected"][&name]["exponential"]);
        check_curve(&format!("{name} power"), &fit.power, &r["expected"][&name]["power"]);
    }
    for (name, fit) in [("decay_a", fit_lag_retention(&correct)), ("decay_b", fit_p_true(&correct, &p_true))] {
        let Decay::Fitted(fit) = fit else { panic!("{name} was excluded") };
        check_curve(&format!("{name} exponential"), &fit.exponential, &r["expected"][name]["exponential"]);
        check_curve(&format!("{name} power"), &fit.power, &r["expected"][name]["power"]);
    }
}

#[test]
fn events_and_cartography_match_numpy() {
    let r = reference();
    let traces: Vec<Vec<bool>> =
        r["inputs"]["traces"].as_array().unwrap().iter().map(|t| t.as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect()).collect();
    let p_traces: Vec<Vec<f32>> = r["inputs"]["p_traces"].as_array().unwrap().iter().map(|t| floats(t).into_iter().map(|p| p as f32).collect()).collect();
    for (i, ((trace, p), expected)) in traces.iter().zip(&p_traces).zip(r["expected"]["events"].as_array().unwrap()).enumerate() {
        let events = dynamics::ForgettingEvents::from_trace(trace);
        assert_eq!(u64::from(events.forgetting_events), expected["forgetting"].as_u64().unwrap(), "sample {i}");
        assert_eq!(u64::from(events.learning_events), expected["learning"].as_u64().unwrap(), "sample {i}");
        assert_eq!(events.first_learned_epoch.map(u64::from), expected["first_learned"].as_u64(), "sample {i}");
        assert_eq!(events.unforgettable, expected["unforgettable"].as_bool().unwrap(), "sample {i}");
        let carto = dynamics::Cartography::from_trace(p, trace).expect("a non-empty trace");
        let numpy = floats(&r["expected"]["cartography"][i]);
        close(&format!("sample {i} confidence"), carto.confidence, numpy[0], 1e-9);
        close(&format!("sample {i} variability"), carto.variability, numpy[1], 1e-9);
        close(&format!("sample {i} correctness"), carto.correctness, numpy[2], 1e-12);
    }
}

#[test]
fn top_sets_and_jaccard_match_numpy() {
    let r = reference();
    let (a, b) = (floats(&r["inputs"]["scores_a"]), floats(&r["inputs"]["scores_b"]));
    let expected: Vec<Vec<usize>> =
        r["expected"]["top_sets"].as_array().unwrap().iter().map(|s| s.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()).collect();
    let (set_a, set_b) = (dynamics::top_set(&a, 0.1, 1), dynamics::top_set(&b, 0.1, 2));
    assert_eq!((&set_a.members, &set_b.members), (&expected[0], &expected[1]));
    assert_eq!(set_a.tied_at_cut, 0);
    close("jaccard", dynamics::jaccard(&set_a.members, &set_b.members).unwrap(), r["expected"]["jaccard"].as_f64().unwrap(), 1e-15);
}

#[test]
fn class_level_matches_numpy() {
    use dynamics::classes::{confusion_similarity, embedding_similarity, forgotten_into, per_class_mean, upper_triangle};
    let r = reference();
    let inputs = &r["inputs"];
    let labels: Vec<u32> = inputs["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let traces: Vec<Vec<u8>> =
        inputs["traces"].as_array().unwrap().iter().map(|t| t.as_array().unwrap().iter().map(|v| u8::from(v.as_bool().unwrap())).collect()).collect();
    let epochs = traces[0].len();
    // [epoch][sample], as the store keeps them.
    let correct: Vec<Vec<u8>> = (0..epochs).map(|t| traces.iter().map(|trace| trace[t]).collect()).collect();
    let predicted: Vec<Vec<u16>> =
        inputs["predicted"].as_array().unwrap().iter().map(|e| e.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u16).collect()).collect();
    let counts: Vec<f64> =
        traces.iter().map(|t| f64::from(dynamics::ForgettingEvents::from_trace(&t.iter().map(|&c| c == 1).collect::<Vec<_>>()).forgetting_events)).collect();
    let means = per_class_mean(&labels, &counts, 4);
    for (c, expected) in r["expected"]["per_class_mean"].as_array().unwrap().iter().enumerate() {
        close(&format!("class {c} mean forgetting"), means[c].unwrap(), expected.as_f64().unwrap(), 1e-12);
    }
    let correct_refs: Vec<&[u8]> = correct.iter().map(Vec::as_slice).collect();
    let predicted_refs: Vec<&[u16]> = predicted.iter().map(Vec::as_slice).collect();
    let into = forgotten_into(&labels, &correct_refs, &predicted_refs, 4);
    let expected_into: Vec<Vec<u64>> =
        r["expected"]["forgotten_into"].as_array().unwrap().iter().map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()).collect();
    assert_eq!(into, expected_into);
    let confusion: Vec<Vec<u32>> =
        inputs["confusion"].as_array().unwrap().iter().map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()).collect();
    let means: Vec<f32> = inputs["means"].as_array().unwrap().iter().flat_map(|row| floats(row).into_iter().map(|v| v as f32)).collect();
    let (conf, emb) = (confusion_similarity(&confusion), embedding_similarity(&means, 8));
    for (name, ours, theirs) in
        [("confusion similarity", &conf, &r["expected"]["confusion_similarity"]), ("embedding similarity", &emb, &r["expected"]["embedding_similarity"])]
    {
        for (i, row) in theirs.as_array().unwrap().iter().enumerate() {
            for (j, value) in floats(row).into_iter().enumerate() {
                close(&format!("{name} [{i}][{j}]"), ours[i][j], value, 1e-12);
            }
        }
    }
    check("similarity agreement", dynamics::spearman(&upper_triangle(&conf), &upper_triangle(&emb)), &r["expected"]["similarity_spearman"]);
}

/// Issue 17's statistics against `bench/reference_stats.py --scores-only`
/// (`tests/fixtures/reference_scores.json`): the jackknife over seeds of pair-based findings,
/// and warm-up predictability with the decay fitted after the warm-up.
#[test]
fn jackknife_and_warmup_predictability_match_numpy_and_scipy() {
    let r: Value = serde_json::from_str(include_str!("fixtures/reference_scores.json")).expect("the reference file");
    for name in ["within", "across"] {
        let values: Vec<(f64, [u64; 2])> =
            r["inputs"][name].as_array().unwrap().iter().map(|v| (v[0].as_f64().unwrap(), [v[1][0].as_u64().unwrap(), v[1][1].as_u64().unwrap()])).collect();
        let ours = dynamics::jackknife_over_seeds(&values, 0.95).unwrap();
        let theirs = &r["expected"][format!("jackknife_{name}")];
        close(&format!("{name} mean"), ours.mean, theirs["mean"].as_f64().unwrap(), 1e-12);
        close(&format!("{name} half width"), ours.half_width, theirs["half_width"].as_f64().unwrap(), 1e-9);
        assert_eq!(ours.n as u64, theirs["n"].as_u64().unwrap());
    }
    let traces: Vec<Vec<bool>> =
        r["inputs"]["traces"].as_array().unwrap().iter().map(|t| t.as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect()).collect();
    let warmup = r["inputs"]["warmup"].as_u64().unwrap() as usize;
    let loss: Vec<Option<f64>> = floats(&r["inputs"]["loss"]).into_iter().map(Some).collect();
    let epochs = traces[0].len();
    let correct: Vec<Vec<u8>> = (warmup..epochs).map(|t| traces.iter().map(|tr| u8::from(tr[t])).collect()).collect();
    let filler = vec![0.5f32; traces.len()];
    let columns: Vec<dynamics::TraceColumns> = correct.iter().map(|c| dynamics::TraceColumns::new(c, &filler, &filler)).collect();
    let values: Vec<dynamics::SampleValues> =
        dynamics::summarize_samples(&columns, 0, None, dynamics::AnalysisSettings::default()).iter().map(dynamics::SampleValues::of).collect();
    let ours = dynamics::warmup::predictability(&values, &loss);
    let theirs = &r["expected"]["warmup"];
    assert_eq!(ours.rate.n as u64, theirs["n"].as_u64().unwrap(), "samples with a defined decay rate");
    check("warm-up loss against the decay rate", ours.rate, &theirs["rate"]);
    check("warm-up loss against tau", ours.tau, &theirs["tau"]);

    // Class means over all epochs, under both never-learned policies.
    let all: Vec<Vec<u8>> = (0..epochs).map(|t| traces.iter().map(|tr| u8::from(tr[t])).collect()).collect();
    let columns: Vec<dynamics::TraceColumns> = all.iter().map(|c| dynamics::TraceColumns::new(c, &filler, &filler)).collect();
    let values: Vec<dynamics::SampleValues> =
        dynamics::summarize_samples(&columns, 0, None, dynamics::AnalysisSettings::default()).iter().map(dynamics::SampleValues::of).collect();
    let labels: Vec<u32> = r["inputs"]["labels"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap() as u32).collect();
    for (policy, name) in [(dynamics::NeverLearnedPolicy::Max, "class_forgetting_max"), (dynamics::NeverLearnedPolicy::Exclude, "class_forgetting_exclude")] {
        let ours = dynamics::classes::class_forgetting(&labels, &values, epochs as u32, 5, policy);
        for (c, theirs) in r["expected"][name].as_array().unwrap().iter().enumerate() {
            match (ours[c], theirs.as_f64()) {
                (Some(a), Some(b)) => close(&format!("{name} class {c}"), a, b, 1e-12),
                (a, b) => assert_eq!(a, b, "{name} class {c}"),
            }
        }
    }
}

#[test]
fn similar_classes_forgotten_most_matches_scipy() {
    let r: Value = serde_json::from_str(include_str!("fixtures/reference_scores.json")).unwrap();
    let similarity: Vec<Vec<f64>> = r["inputs"]["similarity"].as_array().unwrap().iter().map(floats).collect();
    let greatest = dynamics::classes::greatest_similarity(&similarity);
    for (c, theirs) in floats(&r["expected"]["greatest_similarity"]).into_iter().enumerate() {
        assert_eq!(greatest[c], Some(theirs), "class {c}");
    }
    let forgetting: Vec<Option<f64>> = r["expected"]["class_forgetting_max"].as_array().unwrap().iter().map(Value::as_f64).collect();
    let ours = dynamics::classes::similar_classes_forgotten_most(&forgetting, &similarity);
    assert_eq!(ours.n, 5);
    check("similar classes forgotten most", ours, &r["expected"]["similar_classes_forgotten_most"]);
}

/// RbF's kernels (issue 22 item 3) against `reference_rbf.json`: numpy's least squares for
/// tau over the recalled validation items, and each delay found by scanning the epochs.
#[test]
fn rbf_fits_and_delays_match_numpy() {
    use dynamics::rbf::{Kernel, delay, fit_tau};
    let r: Value = serde_json::from_str(include_str!("fixtures/reference_rbf.json")).expect("the RbF reference file");
    let input = &r["inputs"];
    let (strength, nu) = (input["strength"].as_f64().unwrap(), input["nu"].as_f64().unwrap());
    let longest = input["longest"].as_u64().unwrap() as u32;
    let (loss, confidence, train) = (floats(&input["val_loss"]), floats(&input["confidence"]), floats(&input["train_loss"]));
    for &kernel in Kernel::ALL {
        let expected = &r["expected"][kernel.as_str()];
        let tau = fit_tau(kernel, &loss, &confidence, strength, nu).expect("recalled items");
        close(&format!("{kernel} tau"), tau, expected["tau"].as_f64().unwrap(), 1e-9);
        let delays: Vec<u64> = train.iter().map(|&d| u64::from(delay(kernel, d, strength, tau, nu, longest))).collect();
        let theirs: Vec<u64> = expected["delays"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(delays, theirs, "{kernel} delays");
        assert!(theirs.iter().any(|&t| t > 1) && theirs.iter().any(|&t| t < longest as u64), "{kernel}: the delays spread");
    }
}
