//! Forgetting and learning events (Toneva et al., "An Empirical Study of Example Forgetting
//! during Deep Neural Network Learning", ICLR 2019).

use serde::{Deserialize, Serialize};

/// Events in one sample's correctness trace `c_1..c_T` (epochs are 1-based).
///
/// The state before the first epoch is taken as wrong (`c_0 = 0`), so a sample correct at
/// epoch 1 has a learning event there and can never have a forgetting event at epoch 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgettingEvents {
    /// Number of epochs `t` with `c_{t-1} = 1` and `c_t = 0`.
    pub forgetting_events: u32,
    /// Number of epochs `t` with `c_{t-1} = 0` and `c_t = 1` (with `c_0 = 0`).
    pub learning_events: u32,
    /// `min { t : c_t = 1 }`, or `None` when the sample is never correct.
    pub first_learned_epoch: Option<u32>,
    /// Learned, and correct at every epoch from `first_learned_epoch` to `T`.
    pub unforgettable: bool,
}

impl ForgettingEvents {
    /// Counts the events of one trace. `correct[t - 1]` is `c_t`.
    pub fn from_trace(correct: &[bool]) -> Self {
        let mut previous = false;
        let mut forgetting_events = 0;
        let mut learning_events = 0;
        let mut first_learned_epoch = None;
        for (index, &now) in correct.iter().enumerate() {
            match (previous, now) {
                (true, false) => forgetting_events += 1,
                (false, true) => {
                    learning_events += 1;
                    first_learned_epoch.get_or_insert(index as u32 + 1);
                }
                _ => {}
            }
            previous = now;
        }
        Self { forgetting_events, learning_events, first_learned_epoch, unforgettable: first_learned_epoch.is_some() && forgetting_events == 0 }
    }

    /// True when the sample was never correct at any recorded epoch.
    pub fn never_learned(&self) -> bool {
        self.first_learned_epoch.is_none()
    }

    /// The forgetting score used for rankings: the number of forgetting events, with
    /// never-learned samples handled by `policy`. `None` means "leave out of the ranking".
    ///
    /// Toneva et al. rank never-learned samples above every forgotten one (`Max`), which is
    /// what `f64::INFINITY` gives in a descending sort.
    pub fn score(&self, policy: NeverLearnedPolicy) -> Option<f64> {
        match (self.never_learned(), policy) {
            (false, _) => Some(f64::from(self.forgetting_events)),
            (true, NeverLearnedPolicy::Max) => Some(f64::INFINITY),
            (true, NeverLearnedPolicy::Exclude) => None,
        }
    }
}

/// How never-learned samples enter forgetting-score rankings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeverLearnedPolicy {
    /// Rank them above all others, as Toneva et al. do.
    #[default]
    Max,
    /// Leave them out of the ranking.
    Exclude,
}

impl NeverLearnedPolicy {
    pub const ALL: &'static [NeverLearnedPolicy] = &[NeverLearnedPolicy::Max, NeverLearnedPolicy::Exclude];

    pub fn as_str(self) -> &'static str {
        match self {
            NeverLearnedPolicy::Max => "max",
            NeverLearnedPolicy::Exclude => "exclude",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(bits: &str) -> Vec<bool> {
        bits.chars().map(|c| c == '1').collect()
    }

    #[test]
    fn hand_worked_trace_with_two_forgetting_events() {
        // epochs:        1 2 3 4 5 6 7
        // correct:       0 1 1 0 1 0 1
        // learning at 2, 5, 7; forgetting at 4, 6.
        let events = ForgettingEvents::from_trace(&trace("0110101"));
        assert_eq!(events.forgetting_events, 2);
        assert_eq!(events.learning_events, 3);
        assert_eq!(events.first_learned_epoch, Some(2));
        assert!(!events.unforgettable);
        assert!(!events.never_learned());
        assert_eq!(events.score(NeverLearnedPolicy::Max), Some(2.0));
    }

    #[test]
    fn never_learned_sample() {
        let events = ForgettingEvents::from_trace(&trace("00000"));
        assert_eq!(events.forgetting_events, 0);
        assert_eq!(events.learning_events, 0);
        assert_eq!(events.first_learned_epoch, None);
        assert!(events.never_learned());
        assert!(!events.unforgettable, "a never-learned sample is not unforgettable");
        assert_eq!(events.score(NeverLearnedPolicy::Max), Some(f64::INFINITY));
        assert_eq!(events.score(NeverLearnedPolicy::Exclude), None);
    }

    #[test]
    fn correct_at_first_epoch_is_a_learning_event_not_a_forgetting_one() {
        let events = ForgettingEvents::from_trace(&trace("1011"));
        assert_eq!(events.first_learned_epoch, Some(1));
        assert_eq!(events.learning_events, 2); // epochs 1 and 3
        assert_eq!(events.forgetting_events, 1); // epoch 2
        assert!(!events.unforgettable);
    }

    #[test]
    fn unforgettable_sample_learned_late() {
        let events = ForgettingEvents::from_trace(&trace("0011111"));
        assert_eq!(events.first_learned_epoch, Some(3));
        assert_eq!(events.forgetting_events, 0);
        assert_eq!(events.learning_events, 1);
        assert!(events.unforgettable);
    }

    #[test]
    fn forgotten_at_the_last_epoch_is_not_unforgettable() {
        let events = ForgettingEvents::from_trace(&trace("1110"));
        assert_eq!(events.forgetting_events, 1);
        assert!(!events.unforgettable);
    }

    #[test]
    fn empty_trace() {
        let events = ForgettingEvents::from_trace(&[]);
        assert_eq!(events.forgetting_events + events.learning_events, 0);
        assert!(events.never_learned());
    }

    proptest::proptest! {
        #[test]
        fn learning_events_equal_forgetting_events_or_one_more(bits in proptest::collection::vec(proptest::bool::ANY, 0..64)) {
            let events = ForgettingEvents::from_trace(&bits);
            // Transitions alternate, starting with a learning event (c_0 = 0).
            let last = bits.last().copied().unwrap_or(false);
            proptest::prop_assert_eq!(events.learning_events, events.forgetting_events + u32::from(last));
            proptest::prop_assert_eq!(events.never_learned(), !bits.contains(&true));
        }
    }
}
