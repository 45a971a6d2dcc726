//! Do two runs forget the same samples? The top-q sets of a score, their Jaccard index, and
//! what chance would give.

use std::collections::HashSet;

use crate::rng::SplitMix64;

/// The samples in a run's top-q set, by position, with what the cut had to decide.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopSet {
    /// Positions of the chosen samples, ascending.
    pub members: Vec<usize>,
    /// `round(q n)`, at least 1 when q > 0 and there are samples.
    pub size: usize,
    /// Samples whose score is 0 (never forgotten, say): when they outnumber `n - size`, the
    /// set holds some of them and their choice is the tie-break's.
    pub zero_scores: usize,
    /// Samples tied with the last score inside the set, of which only some fit.
    pub tied_at_cut: usize,
}

/// The `round(q n)` samples with the highest scores. Ties at the cut are broken by a random
/// draw seeded with `seed`: give each run its own seed, or tied samples (all the zeros, say)
/// would be drawn alike in every run and inflate their overlap.
pub fn top_set(scores: &[f64], q: f64, seed: u64) -> TopSet {
    assert!((0.0..=1.0).contains(&q), "q is a fraction");
    let n = scores.len();
    let size = if n == 0 || q == 0.0 { 0 } else { ((q * n as f64).round() as usize).clamp(1, n) };
    let mut rng = SplitMix64::new(seed);
    let draws: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(draws[a].cmp(&draws[b])));
    let tied_at_cut = match size.checked_sub(1) {
        Some(last) if size < n && scores[order[last]] == scores[order[size]] => scores.iter().filter(|&&s| s == scores[order[last]]).count(),
        _ => 0,
    };
    let mut members = order[..size].to_vec();
    members.sort_unstable();
    TopSet { members, size, zero_scores: scores.iter().filter(|&&s| s == 0.0).count(), tied_at_cut }
}

/// `|A ∩ B| / |A ∪ B|`; `None` for two empty sets.
pub fn jaccard(a: &[usize], b: &[usize]) -> Option<f64> {
    let a: HashSet<usize> = a.iter().copied().collect();
    let union = b.iter().filter(|x| !a.contains(x)).count() + a.len();
    if union == 0 {
        return None;
    }
    let both = b.iter().filter(|x| a.contains(x)).count();
    Some(both as f64 / union as f64)
}

/// The Jaccard index two independent random sets of a fraction `q` of the samples have on
/// average (for large n): `q / (2 - q)`.
pub fn chance_jaccard(q: f64) -> f64 {
    q / (2.0 - q)
}

/// The Jaccard index of two runs' top-q sets at each `q` of `qs`, with the chance baseline:
/// `(q, jaccard, chance)`.
pub fn jaccard_curve(a: &[f64], b: &[f64], qs: &[f64], seeds: (u64, u64)) -> Vec<(f64, Option<f64>, f64)> {
    qs.iter()
        .map(|&q| {
            let (x, y) = (top_set(a, q, seeds.0), top_set(b, q, seeds.1));
            (q, jaccard(&x.members, &y.members), chance_jaccard(q))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn top_set_takes_the_highest_and_reports_ties_and_zeros() {
        let scores = [0.0, 5.0, 2.0, 2.0, 0.0, 9.0, 2.0, 0.0, 0.0, 1.0];
        let set = top_set(&scores, 0.2, 1);
        assert_eq!((set.members.clone(), set.size, set.zero_scores, set.tied_at_cut), (vec![1, 5], 2, 4, 0));
        // Three samples tie at 2 for the last two places: the seed decides, and says so.
        let set = top_set(&scores, 0.4, 1);
        assert_eq!(set.size, 4);
        assert!(set.members.contains(&1) && set.members.contains(&5));
        assert_eq!(set.tied_at_cut, 3);
        let other_seeds: HashSet<Vec<usize>> = (0..20).map(|seed| top_set(&scores, 0.4, seed).members).collect();
        assert!(other_seeds.len() > 1, "different seeds draw different tied samples");
        assert_eq!(top_set(&scores, 0.4, 7), top_set(&scores, 0.4, 7), "a seed repeats its draw");
    }

    #[test]
    fn chance_baseline_matches_random_sets() {
        assert_eq!(chance_jaccard(0.1), 0.1 / 1.9);
        // Random scores: the top-10 % sets of independent runs overlap by about q / (2 - q).
        let n = 20_000;
        let mut rng = SplitMix64::new(5);
        let mut draw = || (0..n).map(|_| rng.unit_f64()).collect::<Vec<f64>>();
        let (a, b) = (draw(), draw());
        let j = jaccard(&top_set(&a, 0.1, 1).members, &top_set(&b, 0.1, 2).members).unwrap();
        assert!((j - chance_jaccard(0.1)).abs() < 0.01, "{j}");
    }

    proptest! {
        #[test]
        fn jaccard_is_symmetric_and_in_the_unit_interval(a in proptest::collection::hash_set(0usize..40, 0..30), b in proptest::collection::hash_set(0usize..40, 0..30)) {
            let (a, b): (Vec<usize>, Vec<usize>) = (a.into_iter().collect(), b.into_iter().collect());
            let (ab, ba) = (jaccard(&a, &b), jaccard(&b, &a));
            prop_assert_eq!(ab, ba);
            if let Some(j) = ab {
                prop_assert!((0.0..=1.0).contains(&j));
            } else {
                prop_assert!(a.is_empty() && b.is_empty());
            }
            if !a.is_empty() {
                prop_assert_eq!(jaccard(&a, &a), Some(1.0));
            }
        }
    }
}
