//! Correlations between two runs' per-sample scores, with two-sided p-values, as scipy.stats
//! computes them (scipy 1.x: `pearsonr`, `spearmanr`, `kendalltau(method="asymptotic")`).

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// A correlation coefficient with its two-sided p-value and the number of pairs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Correlation {
    pub r: f64,
    /// `None` when the coefficient is undefined (a constant input, or fewer than 3 pairs).
    pub p_value: Option<f64>,
    pub n: usize,
}

/// Ranks starting at 1, ties sharing the average of their positions (`scipy.stats.rankdata`,
/// method "average").
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) share rank (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Pearson's r = cov(x, y) / (sd(x) sd(y)), with the p-value of `t = r sqrt((n-2)/(1-r^2))`
/// under Student's t with n - 2 degrees of freedom (equal to scipy's exact beta form).
pub fn pearson(x: &[f64], y: &[f64]) -> Correlation {
    assert_eq!(x.len(), y.len(), "paired samples");
    let n = x.len();
    let undefined = Correlation { r: f64::NAN, p_value: None, n };
    if n < 2 {
        return undefined;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return undefined;
    }
    let r = (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0);
    Correlation { r, p_value: t_test_p(r, n), n }
}

fn t_test_p(r: f64, n: usize) -> Option<f64> {
    if n < 3 {
        return None;
    }
    if r.abs() == 1.0 {
        return Some(0.0);
    }
    let df = (n - 2) as f64;
    let t = r * (df / (1.0 - r * r)).sqrt();
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some(2.0 * dist.cdf(-t.abs()))
}

/// Spearman's rho: Pearson's r of the average ranks, with its t-distribution p-value (as
/// `scipy.stats.spearmanr`). Unchanged by any strictly increasing transform of either input.
pub fn spearman(x: &[f64], y: &[f64]) -> Correlation {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Kendall's tau-b (Knight's O(n log n) algorithm, as scipy): `(C - D) / sqrt((n0 - n1)(n0 - n2))`
/// with n0 = n(n-1)/2 pairs, n1 and n2 the pairs tied in x and in y. The p-value is scipy's
/// "asymptotic" one: a normal approximation with the tie-corrected variance.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Correlation {
    assert_eq!(x.len(), y.len(), "paired samples");
    let n = x.len();
    let undefined = Correlation { r: f64::NAN, p_value: None, n };
    if n < 2 {
        return undefined;
    }
    // Sort by (x, y); count ties in x and joint ties.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]).then(y[a].total_cmp(&y[b])));
    let xs: Vec<f64> = order.iter().map(|&i| x[i]).collect();
    let mut ys: Vec<f64> = order.iter().map(|&i| y[i]).collect();
    let x_ties = tie_counts(&xs);
    let mut joint = 0u64;
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && xs[end] == xs[start] && ys[end] == ys[start] {
            end += 1;
        }
        let t = (end - start) as u64;
        joint += t * (t - 1) / 2;
        start = end;
    }
    // Discordant pairs = swaps of a stable merge sort of y (in x order).
    let swaps = merge_sort_swaps(&mut ys);
    let y_ties = tie_counts(&ys);
    let pairs = (n as u64) * (n as u64 - 1) / 2;
    let (xtie, ytie) = (x_ties.pairs, y_ties.pairs);
    if xtie == pairs || ytie == pairs {
        return undefined;
    }
    // Concordant minus discordant, over pairs tied in neither.
    let con_minus_dis = pairs as f64 - xtie as f64 - ytie as f64 + joint as f64 - 2.0 * swaps as f64;
    let tau = (con_minus_dis / ((pairs - xtie) as f64).sqrt() / ((pairs - ytie) as f64).sqrt()).clamp(-1.0, 1.0);
    let p_value = (n >= 3).then(|| {
        let nf = n as f64;
        let m = nf * (nf - 1.0);
        let var =
            (m * (2.0 * nf + 5.0) - x_ties.v1 - y_ties.v1) / 18.0 + (2.0 * xtie as f64 * ytie as f64) / m + x_ties.v0 * y_ties.v0 / (9.0 * m * (nf - 2.0));
        let z = con_minus_dis / var.sqrt();
        2.0 * Normal::standard().cdf(-z.abs())
    });
    Correlation { r: tau, p_value, n }
}

/// Over groups of t equal sorted values: sum t(t-1)/2, sum t(t-1)(t-2), sum t(t-1)(2t+5).
struct Ties {
    pairs: u64,
    v0: f64,
    v1: f64,
}

fn tie_counts(sorted: &[f64]) -> Ties {
    let mut ties = Ties { pairs: 0, v0: 0.0, v1: 0.0 };
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start + 1;
        while end < sorted.len() && sorted[end] == sorted[start] {
            end += 1;
        }
        let t = (end - start) as u64;
        let tf = t as f64;
        ties.pairs += t * (t - 1) / 2;
        ties.v0 += tf * (tf - 1.0) * (tf - 2.0);
        ties.v1 += tf * (tf - 1.0) * (2.0 * tf + 5.0);
        start = end;
    }
    ties
}

/// Sorts `values` ascending with a stable merge sort; returns how many pairs it swapped
/// (pairs i < j with values[i] > values[j]).
fn merge_sort_swaps(values: &mut [f64]) -> u64 {
    let n = values.len();
    if n < 2 {
        return 0;
    }
    let mut buffer = values.to_vec();
    let mut swaps = 0u64;
    let mut width = 1;
    while width < n {
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j, mut k) = (start, mid, start);
            while i < mid && j < end {
                if values[j] < values[i] {
                    buffer[k] = values[j];
                    swaps += (mid - i) as u64;
                    j += 1;
                } else {
                    buffer[k] = values[i];
                    i += 1;
                }
                k += 1;
            }
            buffer[k..k + (mid - i)].copy_from_slice(&values[i..mid]);
            k += mid - i;
            buffer[k..k + (end - j)].copy_from_slice(&values[j..end]);
            start = end;
        }
        values.copy_from_slice(&buffer);
        width *= 2;
    }
    swaps
}

/// Spearman-Brown prophecy: the reliability of an average of `k` runs whose pairwise
/// correlation is `r`: `k r / (1 + (k - 1) r)`.
pub fn spearman_brown(r: f64, k: f64) -> f64 {
    k * r / (1.0 + (k - 1.0) * r)
}

/// A mean with its two-sided confidence interval from Student's t (as
/// `scipy.stats.t.interval(level, n - 1, mean, sem)`): `mean +- t_{(1+level)/2, n-1} s / sqrt(n)`
/// with `s` the sample standard deviation. The study report's interval over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanInterval {
    pub mean: f64,
    /// Half the interval's width; NaN with a single value.
    pub half_width: f64,
    pub n: usize,
}

/// `None` for no values; a single value has a mean and no interval (NaN half-width).
pub fn mean_interval(values: &[f64], level: f64) -> Option<MeanInterval> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Some(MeanInterval { mean, half_width: f64::NAN, n });
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?.inverse_cdf((1.0 + level) / 2.0);
    Some(MeanInterval { mean, half_width: t * (variance / n as f64).sqrt(), n })
}

/// The mean of values that each belong to a pair of runs, with a 95 %-style interval that
/// respects that pairs share runs: the delete-one-group jackknife over seeds (Efron & Tibshirani
/// 1993, ch. 11). `values[i] = (v, [seed_a, seed_b])` is one pair's value and the seeds of
/// its two runs. With `G` the distinct seeds and `theta_(-g)` the mean over the pairs that
/// involve neither run of seed `g`,
/// `se = sqrt((G - 1) / G * sum_g (theta_(-g) - mean_g theta_(-g))^2)` and the interval is
/// `mean +- t_{(1+level)/2, G-1} se`, `n = G`. Pairs of seeds are not independent (with 3
/// seeds, each run is in 2 of the 3 pairs), so Student's t over the pairs is too narrow.
///
/// `None` without values; NaN half-width when fewer than 3 seeds leave a pair out (a
/// leave-one-out mean is undefined).
pub fn jackknife_over_seeds(values: &[(f64, [u64; 2])], level: f64) -> Option<MeanInterval> {
    if values.is_empty() {
        return None;
    }
    let mean = values.iter().map(|v| v.0).sum::<f64>() / values.len() as f64;
    let mut seeds: Vec<u64> = values.iter().flat_map(|v| v.1).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let g = seeds.len();
    let left_out: Option<Vec<f64>> = seeds
        .iter()
        .map(|&seed| {
            let rest: Vec<f64> = values.iter().filter(|v| !v.1.contains(&seed)).map(|v| v.0).collect();
            (!rest.is_empty()).then(|| rest.iter().sum::<f64>() / rest.len() as f64)
        })
        .collect();
    let half_width = match left_out {
        Some(thetas) if g >= 3 => {
            let centre = thetas.iter().sum::<f64>() / g as f64;
            let se = ((g - 1) as f64 / g as f64 * thetas.iter().map(|t| (t - centre).powi(2)).sum::<f64>()).sqrt();
            let t = StudentsT::new(0.0, 1.0, (g - 1) as f64).ok()?.inverse_cdf((1.0 + level) / 2.0);
            t * se
        }
        _ => f64::NAN,
    };
    Some(MeanInterval { mean, half_width, n: g })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn jackknife_over_seeds_by_hand() {
        // Three seeds, one pair each: leaving seed 1 out leaves pair (2, 3) and so on.
        let values = [(0.2, [1, 2]), (0.4, [1, 3]), (0.9, [2, 3])];
        let j = jackknife_over_seeds(&values, 0.95).unwrap();
        assert!((j.mean - 0.5).abs() < 1e-15);
        assert_eq!(j.n, 3);
        // theta_(-1) = 0.9, theta_(-2) = 0.4, theta_(-3) = 0.2; centre 0.5;
        // se = sqrt(2/3 * (0.16 + 0.01 + 0.09)) = sqrt(0.17333...); t_{0.975, 2} = 4.302652729911275.
        let expected = 4.302652729911275 * (2.0f64 / 3.0 * 0.26).sqrt();
        assert!((j.half_width - expected).abs() < 1e-9, "{} vs {expected}", j.half_width);
        // Wider than Student's t over the three pairs treated as independent.
        assert!(j.half_width > mean_interval(&[0.2, 0.4, 0.9], 0.95).unwrap().half_width);
        assert!(jackknife_over_seeds(&[(0.3, [1, 2])], 0.95).unwrap().half_width.is_nan());
        assert_eq!(jackknife_over_seeds(&[], 0.95), None);
    }

    /// Kendall's tau-b by its definition, over all pairs.
    fn kendall_by_pairs(x: &[f64], y: &[f64]) -> f64 {
        let (mut concordant, mut discordant, mut tx, mut ty) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                let (dx, dy) = ((x[i] - x[j]).signum(), (y[i] - y[j]).signum());
                if x[i] == x[j] && y[i] == y[j] {
                } else if x[i] == x[j] {
                    tx += 1.0;
                } else if y[i] == y[j] {
                    ty += 1.0;
                } else if dx == dy {
                    concordant += 1.0;
                } else {
                    discordant += 1.0;
                }
            }
        }
        (concordant - discordant) / ((concordant + discordant + tx) * (concordant + discordant + ty)).sqrt()
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(average_ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
    }

    #[test]
    fn perfect_and_undefined_correlations() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let c = pearson(&x, &[2.0, 4.0, 6.0, 8.0]);
        assert!((c.r - 1.0).abs() < 1e-12 && c.p_value.unwrap() < 1e-12, "{c:?}");
        assert!(spearman(&x, &[5.0, 5.0, 5.0, 5.0]).p_value.is_none(), "a constant input has no correlation");
        assert_eq!(spearman_brown(0.5, 3.0), 0.75);
    }

    #[test]
    fn mean_intervals_use_students_t() {
        // scipy.stats.t.interval(0.95, 2, loc=2, scale=stats.sem([1, 2, 3])) = (-0.48413771175033, 4.48413771175033)
        let m = mean_interval(&[1.0, 2.0, 3.0], 0.95).unwrap();
        assert_eq!(m.mean, 2.0);
        assert!((m.half_width - 2.484_137_711_750_33).abs() < 1e-9, "{m:?}");
        assert!(mean_interval(&[4.0], 0.95).unwrap().half_width.is_nan());
        assert!(mean_interval(&[], 0.95).is_none());
    }

    proptest! {
        #[test]
        fn spearman_is_unchanged_by_monotone_transforms(xs in proptest::collection::vec((0u8..20, 0u8..20), 3..60)) {
            let x: Vec<f64> = xs.iter().map(|p| f64::from(p.0)).collect();
            let y: Vec<f64> = xs.iter().map(|p| f64::from(p.1)).collect();
            let transformed: Vec<f64> = x.iter().map(|v| (v * 0.3).exp() + 7.0).collect();
            let (a, b) = (spearman(&x, &y), spearman(&transformed, &y));
            prop_assert!(a.r.is_nan() && b.r.is_nan() || (a.r - b.r).abs() < 1e-12);
        }

        #[test]
        fn kendall_tau_b_is_in_range_and_equals_the_pairwise_definition(xs in proptest::collection::vec((0u8..6, 0u8..6), 2..50)) {
            let x: Vec<f64> = xs.iter().map(|p| f64::from(p.0)).collect();
            let y: Vec<f64> = xs.iter().map(|p| f64::from(p.1)).collect();
            let fast = kendall_tau_b(&x, &y).r;
            let slow = kendall_by_pairs(&x, &y);
            if slow.is_finite() {
                prop_assert!((-1.0..=1.0).contains(&fast));
                prop_assert!((fast - slow).abs() < 1e-12, "fast {} slow {}", fast, slow);
            } else {
                prop_assert!(fast.is_nan());
            }
        }
    }
}
