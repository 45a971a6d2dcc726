//! Class level (docs/design.md, "Class level"): which classes are forgotten, into which classes,
//! and whether forgetting follows class similarity.

/// Mean forgetting events per class: `means[c]` over the samples labelled c (`None` for a
/// class without samples).
pub fn per_class_mean(labels: &[u32], scores: &[f64], classes: usize) -> Vec<Option<f64>> {
    let mut sums = vec![0.0; classes];
    let mut counts = vec![0usize; classes];
    for (&label, &score) in labels.iter().zip(scores) {
        sums[label as usize] += score;
        counts[label as usize] += 1;
    }
    sums.iter().zip(&counts).map(|(s, &n)| (n > 0).then(|| s / n as f64)).collect()
}

/// Mean forgetting events per class under a never-learned policy (docs/design.md, "Class level"):
/// `max` counts a never-learned sample as forgotten at every one of the `epochs` epochs, as
/// Toneva et al.'s `order_examples_by_forgetting.py` does, so a class that is never learned
/// does not look unforgotten; `exclude` leaves never-learned samples out (`None` for a class
/// with no sample left). A mean per sample: normalised by the class's size.
pub fn class_forgetting(labels: &[u32], values: &[crate::SampleValues], epochs: u32, classes: usize, policy: crate::NeverLearnedPolicy) -> Vec<Option<f64>> {
    class_forgetting_sums(labels, values, epochs, classes, policy).into_iter().map(|(s, n)| (n > 0).then(|| s / n as f64)).collect()
}

/// [`class_forgetting`] before the division: per class, the total forgetting events under the
/// policy and the number of samples counted.
pub fn class_forgetting_sums(
    labels: &[u32],
    values: &[crate::SampleValues],
    epochs: u32,
    classes: usize,
    policy: crate::NeverLearnedPolicy,
) -> Vec<(f64, usize)> {
    let mut sums = vec![0.0; classes];
    let mut counts = vec![0usize; classes];
    for (&label, v) in labels.iter().zip(values) {
        let score = match (v.never_learned, policy) {
            (false, _) => f64::from(v.forgetting_events),
            (true, crate::NeverLearnedPolicy::Max) => f64::from(epochs),
            (true, crate::NeverLearnedPolicy::Exclude) => continue,
        };
        sums[label as usize] += score;
        counts[label as usize] += 1;
    }
    sums.into_iter().zip(counts).collect()
}

/// The forgotten-into matrix: `m[true][predicted]` counts, over every forgetting event
/// (correct at t-1, wrong at t), the class predicted at t. `correct[t][i]` and
/// `predicted[t][i]` are epoch t+1's records of sample i.
pub fn forgotten_into(labels: &[u32], correct: &[&[u8]], predicted: &[&[u16]], classes: usize) -> Vec<Vec<u64>> {
    let mut matrix = vec![vec![0u64; classes]; classes];
    for t in 1..correct.len() {
        for (i, &label) in labels.iter().enumerate() {
            if correct[t - 1][i] == 1 && correct[t][i] == 0 {
                let into = predicted[t][i] as usize;
                if into < classes {
                    matrix[label as usize][into] += 1;
                }
            }
        }
    }
    matrix
}

/// Class similarity from a confusion matrix (`confusion[true][predicted]` counts): the
/// symmetrised confusion rate `S[i][j] = (C[i][j] / n_i + C[j][i] / n_j) / 2` for i != j, and 1
/// on the diagonal (n_i = row sums; a class without samples contributes 0).
pub fn confusion_similarity(confusion: &[Vec<u32>]) -> Vec<Vec<f64>> {
    let k = confusion.len();
    let rows: Vec<f64> = confusion.iter().map(|r| r.iter().map(|&c| f64::from(c)).sum()).collect();
    let rate = |i: usize, j: usize| if rows[i] > 0.0 { f64::from(confusion[i][j]) / rows[i] } else { 0.0 };
    (0..k).map(|i| (0..k).map(|j| if i == j { 1.0 } else { 0.5 * (rate(i, j) + rate(j, i)) }).collect()).collect()
}

/// Class similarity from class-mean embeddings (`means` row-major, `dim` wide): cosine
/// similarity; 0 against a zero vector.
pub fn embedding_similarity(means: &[f32], dim: usize) -> Vec<Vec<f64>> {
    let rows: Vec<&[f32]> = means.chunks(dim).collect();
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    rows.iter()
        .map(|a| {
            rows.iter()
                .map(|b| {
                    let dot: f64 = a.iter().zip(*b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
                    let denominator = norm(a) * norm(b);
                    if denominator > 0.0 { dot / denominator } else { 0.0 }
                })
                .collect()
        })
        .collect()
}

/// Per class c, its greatest similarity to another class, `max_{j != c} S[c][j]` (`None` with
/// a single class).
pub fn greatest_similarity(similarity: &[Vec<f64>]) -> Vec<Option<f64>> {
    (0..similarity.len()).map(|c| similarity[c].iter().enumerate().filter(|&(j, _)| j != c).map(|(_, &s)| s).reduce(f64::max)).collect()
}

/// "Visually similar classes are forgotten most" as a per-class statement (docs/design.md, "Class
/// level"): Spearman, over the classes with a value of both, between a class's mean forgetting
/// (`forgetting[c]`, e.g. [`class_forgetting`]) and its greatest similarity to another class
/// ([`greatest_similarity`] of a confusion or embedding similarity), with n = those classes.
pub fn similar_classes_forgotten_most(forgetting: &[Option<f64>], similarity: &[Vec<f64>]) -> crate::Correlation {
    let (x, y): (Vec<f64>, Vec<f64>) = forgetting.iter().zip(greatest_similarity(similarity)).filter_map(|(f, s)| Some(((*f)?, s?))).unzip();
    crate::spearman(&x, &y)
}

/// The entries above the diagonal, row by row: what two similarity matrices are correlated on.
pub fn upper_triangle(matrix: &[Vec<f64>]) -> Vec<f64> {
    (0..matrix.len()).flat_map(|i| (i + 1..matrix.len()).map(move |j| matrix[i][j])).collect()
}

/// Accuracy of a `[true][predicted]` confusion matrix: the diagonal's share.
pub fn accuracy(confusion: &[Vec<u32>]) -> Option<f64> {
    let total: u64 = confusion.iter().flatten().map(|&n| u64::from(n)).sum();
    let right: u64 = confusion.iter().enumerate().map(|(c, row)| u64::from(row.get(c).copied().unwrap_or(0))).sum();
    (total > 0).then(|| right as f64 / total as f64)
}

/// Macro-averaged F1 of a `[true][predicted]` confusion matrix, as scikit-learn's
/// `f1_score(average="macro", zero_division=0)`: the mean over the classes that occur (as a
/// true or a predicted label) of `2 P R / (P + R)`, 0 where the class was never predicted
/// right.
pub fn macro_f1(confusion: &[Vec<u32>]) -> Option<f64> {
    let k = confusion.len();
    let column = |c: usize| confusion.iter().map(|row| u64::from(row.get(c).copied().unwrap_or(0))).sum::<u64>();
    let scores: Vec<f64> = (0..k)
        .filter_map(|c| {
            let (tp, actual, predicted) =
                (u64::from(confusion[c].get(c).copied().unwrap_or(0)), confusion[c].iter().map(|&n| u64::from(n)).sum::<u64>(), column(c));
            if actual == 0 && predicted == 0 {
                return None;
            }
            Some(if tp == 0 { 0.0 } else { 2.0 * tp as f64 / (actual + predicted) as f64 })
        })
        .collect();
    (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_means_and_forgotten_into() {
        assert_eq!(per_class_mean(&[0, 1, 0], &[2.0, 5.0, 4.0], 3), vec![Some(3.0), Some(5.0), None]);
        // Sample 0 (class 0) is forgotten at epoch 2 into class 2; sample 1 never.
        let correct: [&[u8]; 3] = [&[1, 1], &[0, 1], &[1, 1]];
        let predicted: [&[u16]; 3] = [&[0, 1], &[2, 1], &[0, 1]];
        let m = forgotten_into(&[0, 1], &correct, &predicted, 3);
        assert_eq!(m[0], vec![0, 0, 1]);
        assert_eq!(m.iter().flatten().sum::<u64>(), 1);
    }

    #[test]
    fn similarities() {
        let s = confusion_similarity(&[vec![8, 2], vec![1, 9]]);
        assert_eq!(s[0][1], 0.5 * (0.2 + 0.1));
        assert_eq!(s[0][1], s[1][0]);
        let e = embedding_similarity(&[1.0, 0.0, 1.0, 1.0, 0.0, 0.0], 2);
        assert!((e[0][1] - 1.0 / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(e[2][0], 0.0);
        assert_eq!(upper_triangle(&e), vec![e[0][1], e[0][2], e[1][2]]);
    }

    #[test]
    fn macro_f1_matches_scikit_learn() {
        // y_true = [0,0,0,1,1,2], y_pred = [0,0,1,1,2,2]: f1_score(average="macro") = 0.7111...
        let confusion = vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]];
        assert!((macro_f1(&confusion).unwrap() - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-15);
        assert!((accuracy(&confusion).unwrap() - 4.0 / 6.0).abs() < 1e-15);
        // A class never predicted scores 0; one that never occurs is left out.
        assert_eq!(macro_f1(&[vec![1, 0, 0], vec![1, 0, 0], vec![0, 0, 0]]), Some((2.0 / 3.0 + 0.0) / 2.0));
        assert_eq!(macro_f1(&[]), None);
    }
}
