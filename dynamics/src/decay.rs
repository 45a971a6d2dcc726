//! Retention decay of one sample (DESIGN.md, "Retention decay").
//!
//! - Definition A, lag retention: `R(k) = P(correct at t + k | correct at t)` over the epochs
//!   t where the sample was correct, for every lag k with at least one such t; fitted by
//!   least squares to `exp(-k / tau)`.
//! - Definition B: the p_true trace from the first-learned epoch on, `y_j` at lag j = 0, 1, ...,
//!   fitted to `a + (1 - a) exp(-j / tau)` (a free, unconstrained).
//!
//! Each is also fitted with a power law, `(1 + k)^-alpha` (A) or `a + (1 - a)(1 + j)^-alpha`
//! (B), and the two are compared by AIC = `n ln(SSE / n) + 2 p` (p = 1 for A, 2 for B; SSE
//! floored at the smallest positive f64), so that a good exponential fit is not an artefact of
//! any decaying curve fitting. `R^2 = 1 - SSE / SS_tot`. Traces with fewer than
//! [`MIN_POINTS`] points or SS_tot = 0 are excluded, with the reason.
//!
//! Fitting: both models are `c + (1 - c) exp(-rate x)` with x = k (exponential) or
//! x = ln(1 + k) (power), c = 0 (A) or profiled out in closed form (B). The rate minimises the
//! SSE: the best of a coarse grid over [0, 100], then the zero of the SSE's derivative in the
//! grid cells around it, to full precision.

/// Fewer points than this and a trace is not fitted.
pub const MIN_POINTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Never correct (A) or never learned (B): nothing to decay.
    NeverLearned,
    /// Fewer than [`MIN_POINTS`] points.
    TooFewPoints,
    /// Every point equal: R^2 is undefined.
    Constant,
}

/// One fitted curve: its rate (1/tau, or alpha), its floor `a` (definition B), quality.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Curve {
    pub rate: f64,
    pub a: Option<f64>,
    pub sse: f64,
    pub r2: f64,
    pub aic: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecayFit {
    /// `1 / rate` of the exponential; `None` when the best fit does not decay (rate 0).
    pub tau: Option<f64>,
    pub exponential: Curve,
    pub power: Curve,
    pub points: usize,
}

impl DecayFit {
    /// Whether the exponential explains the trace better than the power law (lower AIC).
    pub fn exponential_preferred(&self) -> bool {
        self.exponential.aic < self.power.aic
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    Fitted(DecayFit),
    Excluded(Exclusion),
}

/// Definition A's points `(k, R(k))` for a correctness trace (`correct[t-1]` is epoch t).
pub fn lag_retention(correct: &[bool]) -> Vec<(f64, f64)> {
    let t = correct.len();
    (1..t)
        .filter_map(|k| {
            let starts = (0..t - k).filter(|&i| correct[i]).count();
            let kept = (0..t - k).filter(|&i| correct[i] && correct[i + k]).count();
            (starts > 0).then(|| (k as f64, kept as f64 / starts as f64))
        })
        .collect()
}

/// Definition A: `exp(-k / tau)` to the lag-retention points.
pub fn fit_lag_retention(correct: &[bool]) -> Decay {
    if !correct.iter().any(|&c| c) {
        return Decay::Excluded(Exclusion::NeverLearned);
    }
    fit(&lag_retention(correct), false)
}

/// Definition B: `a + (1 - a) exp(-j / tau)` to the p_true trace from the first epoch the
/// sample was correct.
pub fn fit_p_true(correct: &[bool], p_true: &[f32]) -> Decay {
    let Some(first) = correct.iter().position(|&c| c) else {
        return Decay::Excluded(Exclusion::NeverLearned);
    };
    let points: Vec<(f64, f64)> = p_true[first..].iter().enumerate().map(|(j, &p)| (j as f64, f64::from(p))).collect();
    fit(&points, true)
}

fn fit(points: &[(f64, f64)], with_floor: bool) -> Decay {
    if points.len() < MIN_POINTS {
        return Decay::Excluded(Exclusion::TooFewPoints);
    }
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    if ss_tot == 0.0 {
        return Decay::Excluded(Exclusion::Constant);
    }
    let params = if with_floor { 2.0 } else { 1.0 };
    let curve = |xs: Vec<(f64, f64)>| {
        let (rate, a, sse) = best_rate(&xs, with_floor);
        let n = xs.len() as f64;
        Curve { rate, a: with_floor.then_some(a), sse, r2: 1.0 - sse / ss_tot, aic: n * (sse.max(f64::MIN_POSITIVE) / n).ln() + 2.0 * params }
    };
    let exponential = curve(points.to_vec());
    let power = curve(points.iter().map(|&(k, y)| ((1.0 + k).ln(), y)).collect());
    Decay::Fitted(DecayFit { tau: (exponential.rate > 0.0).then(|| 1.0 / exponential.rate), exponential, power, points: points.len() })
}

/// For a rate: the floor (0 without one, else its least-squares value) and the SSE of
/// `c + (1 - c) exp(-rate x)`.
fn profile(points: &[(f64, f64)], rate: f64, with_floor: bool) -> (f64, f64) {
    let a = if with_floor {
        let (mut num, mut den) = (0.0, 0.0);
        for &(x, y) in points {
            let e = (-rate * x).exp();
            num += (y - e) * (1.0 - e);
            den += (1.0 - e) * (1.0 - e);
        }
        if den > 0.0 { num / den } else { 0.0 }
    } else {
        0.0
    };
    let sse = points.iter().map(|&(x, y)| (y - a - (1.0 - a) * (-rate * x).exp()).powi(2)).sum();
    (a, sse)
}

/// d SSE / d rate at the profiled floor (envelope theorem): `2 (1 - a) sum r x exp(-rate x)`.
fn slope(points: &[(f64, f64)], rate: f64, with_floor: bool) -> f64 {
    let (a, _) = profile(points, rate, with_floor);
    2.0 * (1.0 - a)
        * points
            .iter()
            .map(|&(x, y)| {
                let e = (-rate * x).exp();
                (y - a - (1.0 - a) * e) * x * e
            })
            .sum::<f64>()
}

const MAX_RATE: f64 = 100.0;

/// Rates of the coarse grid: 0, then 33 log-spaced rates from 1e-6 MAX_RATE to MAX_RATE
/// (neighbours a factor 1.78 apart).
const GRID_POINTS: usize = 32;

/// The rate in [0, MAX_RATE] with the smallest SSE: `(rate, floor, sse)`. The best point of
/// a coarse grid brackets the minimum with its neighbours; the slope's zero inside is found
/// by the Illinois variant of regula falsi (superlinear, never leaves the bracket).
fn best_rate(points: &[(f64, f64)], with_floor: bool) -> (f64, f64, f64) {
    let grid: Vec<f64> =
        std::iter::once(0.0).chain((0..=GRID_POINTS).map(|i| MAX_RATE * 10f64.powf(-8.0 + 8.0 * i as f64 / GRID_POINTS as f64))).collect();
    let sse: Vec<f64> = grid.iter().map(|&r| profile(points, r, with_floor).1).collect();
    let best = (0..grid.len()).min_by(|&a, &b| sse[a].total_cmp(&sse[b])).unwrap_or(0);
    let (mut lo, mut hi) = (grid[best.saturating_sub(1)], grid[(best + 1).min(grid.len() - 1)]);
    let mut rate = grid[best];
    let (mut slope_lo, mut slope_hi) = (slope(points, lo, with_floor), slope(points, hi, with_floor));
    if slope_lo < 0.0 && slope_hi > 0.0 {
        let mut previous = f64::NAN;
        let mut kept = 0i8;
        for _ in 0..200 {
            let mut c = (lo * slope_hi - hi * slope_lo) / (slope_hi - slope_lo);
            if !(c > lo && c < hi) {
                c = 0.5 * (lo + hi);
            }
            let g = slope(points, c, with_floor);
            rate = c;
            if g == 0.0 || (c - previous).abs() <= 1e-15 * c {
                break;
            }
            previous = c;
            if g < 0.0 {
                (lo, slope_lo) = (c, g);
                if kept == -1 {
                    slope_hi *= 0.5;
                }
                kept = -1;
            } else {
                (hi, slope_hi) = (c, g);
                if kept == 1 {
                    slope_lo *= 0.5;
                }
                kept = 1;
            }
        }
    }
    let (a, sse) = profile(points, rate, with_floor);
    (rate, a, sse)
}

/// Fits over a run, counted: how many were fitted, how many excluded for each reason, the
/// mean R^2 of the exponential fits, and how often the exponential beat the power law.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecaySummary {
    pub fitted: usize,
    pub never_learned: usize,
    pub too_few_points: usize,
    pub constant: usize,
    pub mean_r2: Option<f64>,
    pub exponential_preferred: usize,
}

pub fn summarize_fits(fits: &[Decay]) -> DecaySummary {
    let mut summary = DecaySummary::default();
    let mut r2_sum = 0.0;
    for fit in fits {
        match fit {
            Decay::Fitted(f) => {
                summary.fitted += 1;
                r2_sum += f.exponential.r2;
                summary.exponential_preferred += usize::from(f.exponential_preferred());
            }
            Decay::Excluded(Exclusion::NeverLearned) => summary.never_learned += 1,
            Decay::Excluded(Exclusion::TooFewPoints) => summary.too_few_points += 1,
            Decay::Excluded(Exclusion::Constant) => summary.constant += 1,
        }
    }
    summary.mean_r2 = (summary.fitted > 0).then(|| r2_sum / summary.fitted as f64);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lag_retention_counts_kept_correctness() {
        // Correct at epochs 1, 2, 4. Lag 1: from 1 (kept), 2 (lost), 4 has no t+1 -> 1/2.
        let points = lag_retention(&[true, true, false, true]);
        assert_eq!(points, vec![(1.0, 0.5), (2.0, 0.5), (3.0, 1.0)]);
    }

    #[test]
    fn exclusions_say_why() {
        assert_eq!(fit_lag_retention(&[false, false, false]), Decay::Excluded(Exclusion::NeverLearned));
        assert_eq!(fit_p_true(&[false, true, true], &[0.1, 0.9, 0.9]), Decay::Excluded(Exclusion::TooFewPoints));
        assert_eq!(fit_lag_retention(&[true; 6]), Decay::Excluded(Exclusion::Constant));
        let summary = summarize_fits(&[Decay::Excluded(Exclusion::Constant), fit_p_true(&[true; 5], &[0.9, 0.7, 0.6, 0.55, 0.52])]);
        assert_eq!((summary.fitted, summary.constant), (1, 1));
    }

    proptest! {
        #[test]
        fn fits_recover_tau_from_noise_free_exponential_traces(tau in 0.3f64..40.0, a in 0.0f64..0.8, epochs in 8usize..60) {
            // Definition B's model, exactly.
            let p: Vec<f32> = (0..epochs).map(|j| (a + (1.0 - a) * (-(j as f64) / tau).exp()) as f32).collect();
            let correct = vec![true; epochs];
            let Decay::Fitted(fit) = fit_p_true(&correct, &p) else { panic!("fitted") };
            // f32 inputs: tau to about 1e-4 relative, unless the curve is flat within f32.
            let flat = (-(epochs as f64 - 1.0) / tau).exp() > 0.999;
            if !flat {
                prop_assert!((fit.tau.unwrap() - tau).abs() / tau < 2e-3, "tau {} fitted {:?}", tau, fit.tau);
                prop_assert!(fit.exponential.r2 > 0.9999);
                prop_assert!((fit.exponential.a.unwrap() - a).abs() < 1e-3);
            }
        }

        #[test]
        fn lag_retention_fit_recovers_an_exact_exponential(tau in 0.5f64..30.0) {
            let points: Vec<(f64, f64)> = (1..30).map(|k| (k as f64, (-(k as f64) / tau).exp())).collect();
            let Decay::Fitted(fit) = fit(&points, false) else { panic!("fitted") };
            prop_assert!((fit.tau.unwrap() - tau).abs() / tau < 1e-9, "tau {} fitted {:?}", tau, fit.tau);
            prop_assert!(fit.exponential.aic < fit.power.aic, "an exponential is best described as one");
        }
    }
}
