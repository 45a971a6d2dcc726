//! Per-sample summaries of a whole run, computed from its per-epoch columns.

use std::collections::HashMap;

use crate::{Cartography, ForgettingEvents};

/// One epoch's per-sample columns, indexed by sample position in the run.
#[derive(Debug, Clone, Copy)]
pub struct TraceColumns<'a> {
    pub correct: &'a [u8],
    pub p_true: &'a [f32],
    pub loss: &'a [f32],
}

/// Everything `dynamics` derives for one sample of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSummary {
    pub events: ForgettingEvents,
    pub cartography: Option<Cartography>,
    /// Loss at the last head-warmup epoch, when the run had one.
    pub warmup_loss: Option<f32>,
    /// The retention-decay fit of definition A (lag retention, `exp(-k / tau)`).
    pub decay: crate::Decay,
}

/// Summarises every sample of a run. `epochs` are in epoch order (1..T), each with one entry
/// per sample; `warmup_epochs` is how many of them were head warmup. A sample's warmup loss
/// is its entry in `loss_after_warmup` (an eval-mode pass at the end of the head warmup,
/// DESIGN.md's definition) when given, else its recorded loss at the last warmup epoch.
///
/// Samples are split over the machine's cores. The decay fit of definition A depends only on
/// the correctness trace, and real runs repeat traces (learned at epoch e and kept), so each
/// distinct trace is fitted once per thread.
///
/// Panics if the epochs (or `loss_after_warmup`) disagree on the number of samples: the
/// caller validated uploads.
pub fn summarize_samples(epochs: &[TraceColumns<'_>], warmup_epochs: usize, loss_after_warmup: Option<&[f32]>) -> Vec<SampleSummary> {
    let samples = epochs.first().map_or(0, |e| e.correct.len());
    assert!(
        epochs.iter().all(|e| e.correct.len() == samples && e.p_true.len() == samples && e.loss.len() == samples),
        "every epoch must hold the same samples"
    );
    assert!(loss_after_warmup.is_none_or(|l| l.len() == samples), "the loss after warmup must cover every sample");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(samples.div_ceil(4096)).max(1);
    let per_thread = samples.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..samples)
            .step_by(per_thread)
            .map(|start| scope.spawn(move || summarize_range(epochs, warmup_epochs, loss_after_warmup, start..(start + per_thread).min(samples))))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a summary thread panicked")).collect()
    })
}

fn summarize_range(epochs: &[TraceColumns<'_>], warmup_epochs: usize, loss_after_warmup: Option<&[f32]>, range: std::ops::Range<usize>) -> Vec<SampleSummary> {
    let last_warmup = warmup_epochs.checked_sub(1).and_then(|last| epochs.get(last));
    let mut correct = Vec::with_capacity(epochs.len());
    let mut p_true = Vec::with_capacity(epochs.len());
    let mut bits = vec![0u64; epochs.len().div_ceil(64)];
    let mut fits: HashMap<Box<[u64]>, crate::Decay> = HashMap::new();
    range
        .map(|sample| {
            correct.clear();
            p_true.clear();
            bits.fill(0);
            for (t, epoch) in epochs.iter().enumerate() {
                let c = epoch.correct[sample] != 0;
                correct.push(c);
                bits[t / 64] |= u64::from(c) << (t % 64);
                p_true.push(epoch.p_true[sample]);
            }
            let decay = match fits.get(&bits[..]) {
                Some(&fit) => fit,
                None => *fits.entry(bits.clone().into_boxed_slice()).or_insert_with(|| crate::decay::fit_lag_retention(&correct)),
            };
            SampleSummary {
                decay,
                events: ForgettingEvents::from_trace(&correct),
                cartography: Cartography::from_trace(&p_true, &correct),
                warmup_loss: match (loss_after_warmup, last_warmup) {
                    (Some(losses), Some(_)) => Some(losses[sample]),
                    (_, last) => last.map(|epoch| epoch.loss[sample]),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_epochs_into_sample_traces() {
        let epoch1 = TraceColumns { correct: &[1, 0], p_true: &[0.9, 0.1], loss: &[0.1, 2.3] };
        let epoch2 = TraceColumns { correct: &[0, 1], p_true: &[0.3, 0.8], loss: &[1.2, 0.2] };
        let summaries = summarize_samples(&[epoch1, epoch2], 1, None);
        assert_eq!(summaries[0].events.forgetting_events, 1);
        assert_eq!(summaries[0].events.first_learned_epoch, Some(1));
        assert_eq!(summaries[1].events.forgetting_events, 0);
        assert_eq!(summaries[1].events.first_learned_epoch, Some(2));
        assert_eq!(summaries[0].warmup_loss, Some(0.1));
        assert_eq!(summaries[1].warmup_loss, Some(2.3));
        assert!((summaries[0].cartography.unwrap().confidence - 0.6).abs() < 1e-6);
    }

    #[test]
    fn no_warmup_means_no_warmup_loss() {
        let epoch = TraceColumns { correct: &[1], p_true: &[0.9], loss: &[0.1] };
        assert_eq!(summarize_samples(&[epoch], 0, None)[0].warmup_loss, None);
        // An eval-mode loss after the warmup takes the place of the recorded one.
        let epoch = TraceColumns { correct: &[1], p_true: &[0.5], loss: &[0.7] };
        assert_eq!(summarize_samples(&[epoch], 1, Some(&[0.25]))[0].warmup_loss, Some(0.25));
        assert_eq!(summarize_samples(&[epoch], 0, Some(&[0.25]))[0].warmup_loss, None, "no warmup, no warmup loss");
    }
}
