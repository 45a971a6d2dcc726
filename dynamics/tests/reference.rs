//! The dynamics crate against independent reference values: `bench/reference_stats.py`
//! computes them with numpy and scipy on seeded inputs and commits them to
//! `tests/fixtures/reference.json`. Statistics must match within 1e-9, p-values within 1e-6
//! relative, and the decay fits (scipy's optimisers against ours) within 1e-6 relative.

use dynamics::decay::{fit_lag_retention, fit_p_true, lag_retention, Curve, Decay};
use dynamics::{average_ranks, chance_jaccard, kendall_tau_b, pearson, spearman, spearman_brown, Correlation};
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
    for (name, fit) in [("decay_a", fit_lag_retention(&correct)), ("decay_b", fit_p_true(&correct, &p_true))] {
        let Decay::Fitted(fit) = fit else { panic!("{name} was excluded") };
        check_curve(&format!("{name} exponential"), &fit.exponential, &r["expected"][name]["exponential"]);
        check_curve(&format!("{name} power"), &fit.power, &r["expected"][name]["power"]);
    }
}
