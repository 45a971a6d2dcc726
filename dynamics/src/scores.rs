//! The per-sample statistics that runs are ranked, compared, pruned and scheduled by: one list
//! (name, direction, meaning) that the API, the exports, the pages and the schedules all read.
//!
//! A score has a *direction*: which end of it is "more forgotten" (docs/design.md, "Definitions"):
//! more forgetting events, lower confidence, lower correctness, shorter tau. A top-q forgotten
//! set takes that end ([`Score::forgotten_key`]).
//!
//! Ranking needs a value for samples the statistic itself leaves undefined, and every ranking
//! treats them the same way ([`Score::ranked_value`]):
//! - never-learned samples follow the run's [`NeverLearnedPolicy`]: `max` puts them at the
//!   forgotten end of every score (Toneva et al. 2019, `order_examples_by_forgetting.py`,
//!   counts an example never learned as forgotten at every presentation, above every learned
//!   one), `exclude` gives them no value;
//! - a sample that never leaves the correct state (unforgettable) has tau = infinity and decay
//!   rate 0: it does not decay;
//! - a learned, forgettable sample whose retention could not be fitted (learned in the last two
//!   epochs, or a lag retention that is constant below 1) has no measured retention: it ranks
//!   with the never-learned samples under the same policy, at the forgotten end of tau, decay
//!   rate and R².

use serde::{Deserialize, Serialize};

use crate::events::NeverLearnedPolicy;

/// Which end of a score is "more forgotten".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher values are more forgotten (forgetting events, decay rate).
    Higher,
    /// Lower values are more forgotten (confidence, correctness, tau).
    Lower,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Higher => "higher",
            Direction::Lower => "lower",
        }
    }
}

macro_rules! scores {
    ($($variant:ident => $name:literal, $direction:ident, $label:literal, $meaning:literal;)+) => {
        /// A per-sample statistic of a finished run that rankings, comparisons, pruning and
        /// schedules take (`sample_stats` holds each, except the derived decay rate and 1 − confidence).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Score { $($variant),+ }

        impl Score {
            /// Every score, in the order pages list them.
            pub const ALL: &'static [Score] = &[$(Score::$variant),+];

            /// The API name (a `sample_stats` column, except `decay_rate`).
            pub fn as_str(self) -> &'static str {
                match self { $(Score::$variant => $name),+ }
            }

            pub fn parse(text: &str) -> Option<Score> {
                match text { $($name => Some(Score::$variant),)+ _ => None }
            }

            /// Which end is more forgotten.
            pub fn direction(self) -> Direction {
                match self { $(Score::$variant => Direction::$direction),+ }
            }

            /// A short label for a page.
            pub fn label(self) -> &'static str {
                match self { $(Score::$variant => $label),+ }
            }

            /// What the statistic is, in a sentence, with its reference.
            pub fn meaning(self) -> &'static str {
                match self { $(Score::$variant => $meaning),+ }
            }
        }
    };
}

scores! {
    ForgettingEvents => "forgetting_events", Higher, "forgetting events",
        "transitions from correct to wrong between consecutive epochs (Toneva et al. 2019)";
    LearningEvents => "learning_events", Higher, "learning events",
        "transitions from wrong to correct, the state before the first epoch counting as wrong";
    FirstLearnedEpoch => "first_learned_epoch", Higher, "first-learned epoch",
        "the first epoch at which the sample was classified correctly; later is harder";
    Confidence => "confidence", Lower, "confidence",
        "mean probability of the true class over the epochs (Swayamdipta et al. 2020)";
    Variability => "variability", Higher, "variability",
        "population standard deviation of the probability of the true class (Swayamdipta et al. 2020); higher is more ambiguous";
    Correctness => "correctness", Lower, "correctness",
        "fraction of epochs at which the sample was correct (Swayamdipta et al. 2020)";
    Tau => "tau", Lower, "decay constant tau",
        "the time constant of the exponential fitted to the sample's lag retention; shorter is forgotten faster, infinite for a sample never forgotten";
    DecayRate => "decay_rate", Higher, "decay rate 1/tau",
        "the rate of the exponential fitted to the sample's lag retention, 1/tau; 0 for a sample never forgotten";
    R2 => "r2", Lower, "R² of the decay fit",
        "1 - SS_res/SS_tot of the exponential retention fit; lower is less explained by a smooth decay";
    WarmupLoss => "warmup_loss", Higher, "loss after warm-up",
        "cross-entropy of the sample after the head warm-up; higher is harder";
    OneMinusConfidence => "one_minus_confidence", Higher, "1 − mean p_true",
        "one minus the mean probability of the true class over the epochs (1 − confidence, Swayamdipta et al. 2020); higher is less confidently learned";
    MeanMargin => "mean_margin", Lower, "mean margin",
        "mean over the epochs of the true-class logit minus the largest other logit (the area under the margin of Pleiss et al. 2020, per epoch); lower is more often misclassified";
    El2n => "el2n", Higher, "EL2N",
        "L2 norm of the softmax minus the one-hot label at the run's EL2N epoch, 10 % into the window unless chosen (Paul et al. 2021); higher is harder";
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a ranking needs to know of one sample of one run: its stored statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampleValues {
    pub forgetting_events: u32,
    pub learning_events: u32,
    pub first_learned_epoch: Option<u32>,
    pub never_learned: bool,
    pub unforgettable: bool,
    pub confidence: Option<f64>,
    pub variability: Option<f64>,
    pub correctness: Option<f64>,
    /// The fitted tau; `None` when the fit does not decay (rate 0) or there is no fit.
    pub tau: Option<f64>,
    /// R² of the exponential fit; `None` when the trace was excluded from fitting.
    pub r2: Option<f64>,
    pub warmup_loss: Option<f64>,
    /// Mean margin over the window (`None` without recorded margins).
    pub mean_margin: Option<f64>,
    /// EL2N at the run's EL2N epoch.
    pub el2n: Option<f64>,
}

impl SampleValues {
    /// The sample's statistics from what `dynamics` derived for it.
    pub fn of(summary: &crate::SampleSummary) -> Self {
        let fit = summary.decay.fitted();
        SampleValues {
            forgetting_events: summary.events.forgetting_events,
            learning_events: summary.events.learning_events,
            first_learned_epoch: summary.events.first_learned_epoch,
            never_learned: summary.events.never_learned(),
            unforgettable: summary.events.unforgettable,
            confidence: summary.cartography.map(|c| c.confidence),
            variability: summary.cartography.map(|c| c.variability),
            correctness: summary.cartography.map(|c| c.correctness),
            tau: fit.and_then(|f| f.tau),
            r2: fit.map(|f| f.exponential.r2),
            warmup_loss: summary.warmup_loss.map(f64::from),
            mean_margin: summary.mean_margin,
            el2n: summary.el2n,
        }
    }

    /// The decay constant for ranking: the fitted tau; infinity for a sample that does not
    /// decay (unforgettable, or a fit of rate 0); `None` without a measured retention.
    fn effective_tau(&self) -> Option<f64> {
        match (self.r2.is_some(), self.tau) {
            (true, Some(tau)) => Some(tau),
            (true, None) => Some(f64::INFINITY),
            (false, _) if self.unforgettable => Some(f64::INFINITY),
            (false, _) => None,
        }
    }
}

impl Score {
    /// The statistic as stored and served (`None` where it is undefined for the sample):
    /// the decay rate is `1 / tau` of a fit, 0 when the fit does not decay.
    pub fn value(self, s: &SampleValues) -> Option<f64> {
        match self {
            Score::ForgettingEvents => Some(f64::from(s.forgetting_events)),
            Score::LearningEvents => Some(f64::from(s.learning_events)),
            Score::FirstLearnedEpoch => s.first_learned_epoch.map(f64::from),
            Score::Confidence => s.confidence,
            Score::Variability => s.variability,
            Score::Correctness => s.correctness,
            Score::Tau => s.tau.filter(|_| s.r2.is_some()),
            Score::DecayRate => s.r2.map(|_| s.tau.map_or(0.0, |tau| 1.0 / tau)),
            Score::R2 => s.r2,
            Score::WarmupLoss => s.warmup_loss,
            Score::OneMinusConfidence => s.confidence.map(|c| 1.0 - c),
            Score::MeanMargin => s.mean_margin,
            Score::El2n => s.el2n,
        }
    }

    /// The value a ranking uses, in the score's own units (see the module's rules): the
    /// statistic, with never-learned samples (and, for the decay scores, samples without a
    /// measured retention) at the forgotten end under `max` (`±infinity` by the direction)
    /// and without a value under `exclude`; tau is infinite and the decay rate 0 for a sample
    /// never forgotten. `None` leaves the sample out of the ranking.
    pub fn ranked_value(self, s: &SampleValues, policy: NeverLearnedPolicy) -> Option<f64> {
        let forgotten_end = || match policy {
            NeverLearnedPolicy::Max => Some(match self.direction() {
                Direction::Higher => f64::INFINITY,
                Direction::Lower => f64::NEG_INFINITY,
            }),
            NeverLearnedPolicy::Exclude => None,
        };
        if s.never_learned {
            return forgotten_end();
        }
        match self {
            Score::Tau => s.effective_tau().or_else(forgotten_end),
            Score::DecayRate => s.effective_tau().map(|tau| 1.0 / tau).or_else(forgotten_end),
            // An unforgettable trace has a constant lag retention: excluded from fitting, and
            // perfectly retained, so it is at the retained end of R^2.
            Score::R2 => s.r2.or(if s.unforgettable { Some(f64::INFINITY) } else { None }).or_else(forgotten_end),
            _ => self.value(s),
        }
    }

    /// One sample's ranked values in several runs (seeds) combined into one, as the
    /// references combine seeds: event counts are summed (Toneva et al. 2019 sum forgetting
    /// events over seeds), tau is the tau of the mean decay rate (`1 / mean(1 / tau)`: an
    /// infinite tau is a rate of 0), and every other score is averaged (Paul et al. 2021
    /// average EL2N over seeds). A sample without a value in one of the runs (left out by the
    /// `exclude` policy) has none; `-inf` tau (never learned, under `max`) stays `-inf`.
    pub fn over_seeds(self, values: &[Option<f64>]) -> Option<f64> {
        let values: Vec<f64> = values.iter().copied().collect::<Option<_>>()?;
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        Some(match self {
            Score::ForgettingEvents | Score::LearningEvents => values.iter().sum(),
            Score::Tau if values.contains(&f64::NEG_INFINITY) => f64::NEG_INFINITY,
            Score::Tau => 1.0 / (values.iter().map(|tau| 1.0 / tau).sum::<f64>() / n),
            _ => values.iter().sum::<f64>() / n,
        })
    }

    /// How [`Score::over_seeds`] combines this score's seeds, for a page.
    pub fn seed_combination(self) -> &'static str {
        match self {
            Score::ForgettingEvents | Score::LearningEvents => "summed over seeds (Toneva et al. 2019)",
            Score::Tau => "the tau of the mean decay rate over seeds",
            Score::El2n => "averaged over seeds (Paul et al. 2021)",
            _ => "averaged over seeds",
        }
    }

    /// Whether the score is a stored per-sample column (`sample_stats`, `run_columns`): every
    /// one but those derived from another (the decay rate from tau, 1 − confidence).
    pub fn stored(self) -> bool {
        !matches!(self, Score::DecayRate | Score::OneMinusConfidence)
    }

    /// A ranked value turned so that higher is more forgotten: the key a top-q forgotten set
    /// takes its highest entries of.
    pub fn forgotten_key(self, ranked: f64) -> f64 {
        match self.direction() {
            Direction::Higher => ranked,
            Direction::Lower => -ranked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TraceColumns, summarize_samples};

    /// Summaries of hand-made traces, one sample each: `bits[t]` is correctness at epoch t+1.
    fn sample(bits: &str) -> SampleValues {
        // p_true 0.9 when correct, 0.1 when wrong; margin +-2; EL2N 0.1 or 1.2.
        let epochs: Vec<[Vec<f32>; 4]> =
            bits.chars().map(|c| if c == '1' { [vec![0.9], vec![0.5], vec![2.0], vec![0.1]] } else { [vec![0.1], vec![0.5], vec![-2.0], vec![1.2]] }).collect();
        let correct: Vec<Vec<u8>> = bits.chars().map(|c| vec![u8::from(c == '1')]).collect();
        let columns: Vec<TraceColumns> =
            epochs.iter().zip(&correct).map(|([p, l, m, e], c)| TraceColumns { correct: c, p_true: p, loss: l, margin: Some(m), el2n: Some(e) }).collect();
        SampleValues::of(&summarize_samples(&columns, 0, None, crate::AnalysisSettings::default())[0])
    }

    #[test]
    fn every_score_has_a_name_that_parses_back_and_a_meaning() {
        for &score in Score::ALL {
            assert_eq!(Score::parse(score.as_str()), Some(score));
            assert!(!score.meaning().is_empty() && !score.label().is_empty());
        }
        assert_eq!(Score::parse("nope"), None);
    }

    #[test]
    fn directions_follow_design() {
        // docs/design.md: more events, lower confidence, lower correctness, shorter tau.
        assert_eq!(Score::ForgettingEvents.direction(), Direction::Higher);
        assert_eq!(Score::Confidence.direction(), Direction::Lower);
        assert_eq!(Score::Correctness.direction(), Direction::Lower);
        assert_eq!(Score::Tau.direction(), Direction::Lower);
        assert_eq!(Score::DecayRate.direction(), Direction::Higher);
    }

    #[test]
    fn never_learned_samples_are_the_most_forgotten_under_max_for_every_score() {
        let never = sample("00000000");
        let forgotten = sample("01010101");
        for &score in Score::ALL {
            let key = |s: &SampleValues| score.ranked_value(s, NeverLearnedPolicy::Max).map(|v| score.forgotten_key(v));
            // Warmup loss is absent without a warmup; every other score ranks both.
            if score == Score::WarmupLoss {
                continue;
            }
            assert!(key(&never).unwrap() > key(&forgotten).unwrap(), "{score}: never-learned must outrank a forgotten sample");
            assert_eq!(score.ranked_value(&never, NeverLearnedPolicy::Exclude), None, "{score}");
        }
        // The old pruner saw a never-learned sample's 0 events, as if it were unforgettable.
        assert_eq!(Score::ForgettingEvents.value(&never), Some(0.0));
        assert_eq!(Score::ForgettingEvents.ranked_value(&never, NeverLearnedPolicy::Max), Some(f64::INFINITY));
    }

    #[test]
    fn margin_el2n_and_one_minus_confidence_are_read_from_the_window() {
        // 8 epochs, correct at 3 of them: mean margin (3 * 2 - 5 * 2) / 8; EL2N 10 % into the
        // window is epoch 1 (wrong: 1.2); 1 - confidence = 1 - (3 * 0.9 + 5 * 0.1) / 8.
        let s = sample("01010100");
        assert_eq!(Score::MeanMargin.value(&s), Some(-0.5));
        assert_eq!(Score::El2n.value(&s), Some(f64::from(1.2f32)));
        let confidence = (3.0 * f64::from(0.9f32) + 5.0 * f64::from(0.1f32)) / 8.0;
        assert!((Score::OneMinusConfidence.value(&s).unwrap() - (1.0 - confidence)).abs() < 1e-12);
        assert_eq!(Score::MeanMargin.direction(), Direction::Lower);
        assert_eq!(Score::El2n.direction(), Direction::Higher);
        // The chosen EL2N epoch, and one past the run's end.
        let settings = |el2n_epoch| crate::AnalysisSettings { el2n_epoch, ..crate::AnalysisSettings::default() };
        assert_eq!(crate::summary::el2n_epoch(8, 0, settings(Some(2))), Some(2));
        assert_eq!(crate::summary::el2n_epoch(8, 0, settings(Some(9))), None);
        assert_eq!(crate::summary::el2n_epoch(100, 0, settings(None)), Some(11), "epoch 20 of 200 in Paul et al.: 10 % in");
        assert_eq!(crate::summary::el2n_epoch(23, 3, settings(None)), Some(6), "10 % into the 20 fine-tuning epochs 4..=23");
    }

    #[test]
    fn seeds_combine_as_the_references_do() {
        let (inf, some) = (f64::INFINITY, |v: f64| Some(v));
        assert_eq!(Score::ForgettingEvents.over_seeds(&[some(1.0), some(3.0), some(0.0)]), Some(4.0), "Toneva: the sum over seeds");
        assert_eq!(Score::ForgettingEvents.over_seeds(&[some(1.0), some(inf)]), Some(inf), "never learned in one seed, under max");
        assert_eq!(Score::El2n.over_seeds(&[some(0.5), some(1.0)]), Some(0.75), "Paul et al.: the mean over seeds");
        assert_eq!(Score::Tau.over_seeds(&[some(2.0), some(inf)]), Some(4.0), "rates 0.5 and 0: mean rate 0.25");
        assert_eq!(Score::Tau.over_seeds(&[some(inf), some(inf)]), Some(inf));
        assert_eq!(Score::Tau.over_seeds(&[some(2.0), some(f64::NEG_INFINITY)]), Some(f64::NEG_INFINITY));
        assert_eq!(Score::Confidence.over_seeds(&[some(0.5), None]), None, "left out in one seed: left out");
        assert_eq!(Score::Confidence.over_seeds(&[]), None);
    }

    #[test]
    fn unforgettable_samples_have_infinite_tau_and_zero_rate() {
        let kept = sample("00111111");
        assert!(kept.unforgettable);
        assert_eq!(Score::Tau.value(&kept), None, "the stored tau stays undefined: nothing was fitted");
        assert_eq!(Score::Tau.ranked_value(&kept, NeverLearnedPolicy::Max), Some(f64::INFINITY));
        assert_eq!(Score::DecayRate.ranked_value(&kept, NeverLearnedPolicy::Exclude), Some(0.0));
        let forgotten = sample("1101101001");
        let tau = Score::Tau.ranked_value(&forgotten, NeverLearnedPolicy::Max).unwrap();
        assert!(tau.is_finite() && tau > 0.0, "{tau}");
        assert_eq!(Score::DecayRate.ranked_value(&forgotten, NeverLearnedPolicy::Max), Some(1.0 / tau));
        // Forgotten before unforgettable on the forgotten end of tau.
        assert!(Score::Tau.forgotten_key(tau) > Score::Tau.forgotten_key(f64::INFINITY));
    }

    #[test]
    fn learned_too_late_to_fit_ranks_with_the_never_learned() {
        let late = sample("0000001");
        assert!(late.r2.is_none() && !late.never_learned && late.unforgettable);
        // Learned at the last epoch and kept: unforgettable by Toneva's definition.
        assert_eq!(Score::Tau.ranked_value(&late, NeverLearnedPolicy::Max), Some(f64::INFINITY));
        let flicker = sample("0000010");
        assert!(flicker.r2.is_none() && !flicker.unforgettable);
        assert_eq!(Score::Tau.ranked_value(&flicker, NeverLearnedPolicy::Max), Some(f64::NEG_INFINITY));
        assert_eq!(Score::Tau.ranked_value(&flicker, NeverLearnedPolicy::Exclude), None);
    }
}
