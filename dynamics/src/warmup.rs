//! Warm-up predictability (docs/design.md, "Warmup predictability"): does a sample's loss after the
//! head warm-up predict how fast it is forgotten during fine-tuning?
//!
//! The article reports "loss after warm-up predicts the decay constant, Spearman 0.30-0.50"
//! without saying whether its decay constant is tau or the rate 1/tau. Both are reported:
//! `rate` is Spearman(loss, 1/tau) and `tau` is Spearman(loss, tau); with the same samples
//! and tau = 1/rate strictly decreasing, `tau.r = -rate.r` exactly (ties included).
//!
//! To avoid circularity, the decay is fitted on the fine-tuning epochs only (the warm-up
//! epochs that produced the loss are not part of the fit): the caller passes summaries of the
//! fine-tuning window. Every sample with a defined decay rate enters (fitted traces, and
//! unforgettable ones with rate 0 and tau = infinity); never-learned samples and traces too
//! short to fit have none (`crate::Score::ranked_value` under `exclude`).

use crate::events::NeverLearnedPolicy;
use crate::scores::{SampleValues, Score};
use crate::stats::{Correlation, spearman};

/// Spearman of the loss after warm-up against the decay rate and against tau, with n and p.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupPredictability {
    pub rate: Correlation,
    pub tau: Correlation,
}

/// `fine_tuning[i]` is sample i's statistics over the fine-tuning epochs, `warmup_loss[i]`
/// its loss after the head warm-up.
pub fn predictability(fine_tuning: &[SampleValues], warmup_loss: &[Option<f64>]) -> WarmupPredictability {
    let policy = NeverLearnedPolicy::Exclude;
    let (mut loss, mut rate, mut tau) = (Vec::new(), Vec::new(), Vec::new());
    for (values, warmup) in fine_tuning.iter().zip(warmup_loss) {
        let (Some(l), Some(r), Some(t)) =
            (warmup.filter(|l| l.is_finite()), Score::DecayRate.ranked_value(values, policy), Score::Tau.ranked_value(values, policy))
        else {
            continue;
        };
        loss.push(l);
        rate.push(r);
        tau.push(t);
    }
    WarmupPredictability { rate: spearman(&loss, &rate), tau: spearman(&loss, &tau) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TraceColumns, summarize_samples};

    #[test]
    fn counts_unforgettable_samples_and_reports_both_signs() {
        // Six samples over 8 fine-tuning epochs: two never forgotten (rate 0), three forgotten
        // at different speeds, one never learned (no value).
        let traces = ["11111111", "01111111", "11011011", "11010101", "10101010", "00000000"];
        let epochs: Vec<(Vec<u8>, Vec<f32>)> = (0..8).map(|t| (traces.iter().map(|tr| u8::from(tr.as_bytes()[t] == b'1')).collect(), vec![0.5; 6])).collect();
        let columns: Vec<TraceColumns> = epochs.iter().map(|(c, p)| TraceColumns::new(c, p, p)).collect();
        let values: Vec<SampleValues> = summarize_samples(&columns, 0, None, crate::AnalysisSettings::default()).iter().map(SampleValues::of).collect();
        // Harder samples (forgotten faster) had a higher loss after warm-up.
        let loss = [Some(0.1), Some(0.2), Some(0.5), Some(0.9), Some(1.4), Some(3.0)];
        let w = predictability(&values, &loss);
        assert_eq!(w.rate.n, 5, "every sample with a defined rate, the unforgettable ones included");
        assert!(w.rate.r > 0.8, "{:?}", w.rate);
        assert_eq!(w.tau.r, -w.rate.r);
        assert!(w.rate.p_value.is_some());
    }
}
