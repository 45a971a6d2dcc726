//! Per-sample summaries of a whole run, computed from its per-epoch columns.

use std::collections::HashMap;

use crate::{Cartography, ForgettingEvents};

/// One epoch's per-sample columns, indexed by sample position in the run.
#[derive(Debug, Clone, Copy)]
pub struct TraceColumns<'a> {
    pub correct: &'a [u8],
    pub p_true: &'a [f32],
    pub loss: &'a [f32],
    /// True-class logit minus the largest other logit, when recorded.
    pub margin: Option<&'a [f32]>,
    /// EL2N, `||softmax - onehot||_2`, when recorded.
    pub el2n: Option<&'a [f32]>,
}

impl<'a> TraceColumns<'a> {
    /// An epoch's correctness, p_true and loss, without margin or EL2N.
    pub fn new(correct: &'a [u8], p_true: &'a [f32], loss: &'a [f32]) -> Self {
        TraceColumns { correct, p_true, loss, margin: None, el2n: None }
    }
}

/// Everything `dynamics` derives for one sample of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSummary {
    pub events: ForgettingEvents,
    pub cartography: Option<Cartography>,
    /// Loss at the last head-warmup epoch, when the run had one.
    pub warmup_loss: Option<f32>,
    /// The retention-decay fit of the run's definition ([`crate::Retention`]).
    pub decay: crate::Decay,
    /// Mean margin over the window's epochs (the area under the margin of Pleiss et al.
    /// 2020, divided by the epochs); `None` unless every epoch of the window has margins.
    pub mean_margin: Option<f64>,
    /// EL2N at the window's EL2N epoch ([`el2n_epoch`], Paul et al. 2021); `None` unless
    /// that epoch has EL2N.
    pub el2n: Option<f64>,
}

/// The epoch whose EL2N a run's `el2n` score is (1-based, the run's numbering): `chosen` when
/// set, else 10 % into the window (the first window epoch plus a tenth of its length, rounded
/// down), as Paul et al. score CIFAR-10 at epoch 20 of 200. `None` for an empty window or a
/// chosen epoch after the last.
pub fn el2n_epoch(total_epochs: usize, warmup_epochs: usize, settings: crate::AnalysisSettings) -> Option<u32> {
    let first = settings.window.start(warmup_epochs).min(total_epochs);
    let length = total_epochs - first;
    match settings.el2n_epoch {
        Some(epoch) => (epoch >= 1 && epoch as usize <= total_epochs).then_some(epoch),
        None => (length > 0).then(|| (first + 1 + length / 10) as u32),
    }
}

/// Summarises every sample of a run. `epochs` are in epoch order (1..T), each with one entry
/// per sample; `warmup_epochs` is how many of them were head warmup. Events, cartography and
/// the decay fit cover `settings.window` (the fine-tuning window starts after the warmup;
/// first-learned epochs keep the run's numbering) and fit `settings.retention`. A sample's
/// warmup loss is its entry in `loss_after_warmup` (an eval-mode pass at the end of the head
/// warmup, the definition in docs/design.md) when given, else its recorded loss at the last warmup
/// epoch, in either window.
///
/// Samples are split over the machine's cores. The decay fits of definition A depend only on
/// the correctness trace, and real runs repeat traces (learned at epoch e and kept), so each
/// distinct trace is fitted once per thread.
///
/// Panics if the epochs (or `loss_after_warmup`) disagree on the number of samples: the
/// caller validated uploads.
pub fn summarize_samples(
    epochs: &[TraceColumns<'_>],
    warmup_epochs: usize,
    loss_after_warmup: Option<&[f32]>,
    settings: crate::AnalysisSettings,
) -> Vec<SampleSummary> {
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
            .map(|start| scope.spawn(move || summarize_range(epochs, warmup_epochs, loss_after_warmup, settings, start..(start + per_thread).min(samples))))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a summary thread panicked")).collect()
    })
}

fn summarize_range(
    all_epochs: &[TraceColumns<'_>],
    warmup_epochs: usize,
    loss_after_warmup: Option<&[f32]>,
    settings: crate::AnalysisSettings,
    range: std::ops::Range<usize>,
) -> Vec<SampleSummary> {
    let last_warmup = warmup_epochs.checked_sub(1).and_then(|last| all_epochs.get(last));
    let first = settings.window.start(warmup_epochs).min(all_epochs.len());
    let epochs = &all_epochs[first..];
    let retention = settings.retention;
    let el2n_at = el2n_epoch(all_epochs.len(), warmup_epochs, settings).and_then(|e| all_epochs[e as usize - 1].el2n);
    let margins: Option<Vec<&[f32]>> = epochs.iter().map(|e| e.margin).collect();
    let margins = margins.filter(|m| !m.is_empty());
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
            let decay = if retention.reads_p_true() {
                retention.fit(&correct, &p_true)
            } else {
                match fits.get(&bits[..]) {
                    Some(&fit) => fit,
                    None => *fits.entry(bits.clone().into_boxed_slice()).or_insert_with(|| retention.fit(&correct, &p_true)),
                }
            };
            let mut events = ForgettingEvents::from_trace(&correct);
            if let Some(epoch) = &mut events.first_learned_epoch {
                *epoch += first as u32;
            }
            SampleSummary {
                decay,
                mean_margin: margins.as_ref().map(|m| m.iter().map(|column| f64::from(column[sample])).sum::<f64>() / m.len() as f64),
                el2n: el2n_at.map(|column| f64::from(column[sample])),
                events,
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
    use crate::{AnalysisSettings, Retention, Window};

    #[test]
    fn transposes_epochs_into_sample_traces() {
        let epoch1 = TraceColumns::new(&[1, 0], &[0.9, 0.1], &[0.1, 2.3]);
        let epoch2 = TraceColumns::new(&[0, 1], &[0.3, 0.8], &[1.2, 0.2]);
        let summaries = summarize_samples(&[epoch1, epoch2], 1, None, AnalysisSettings::LEGACY);
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
        let epoch = TraceColumns::new(&[1], &[0.9], &[0.1]);
        assert_eq!(summarize_samples(&[epoch], 0, None, AnalysisSettings::LEGACY)[0].warmup_loss, None);
        // An eval-mode loss after the warmup takes the place of the recorded one.
        let epoch = TraceColumns::new(&[1], &[0.5], &[0.7]);
        assert_eq!(summarize_samples(&[epoch], 1, Some(&[0.25]), AnalysisSettings::LEGACY)[0].warmup_loss, Some(0.25));
        assert_eq!(summarize_samples(&[epoch], 0, Some(&[0.25]), AnalysisSettings::LEGACY)[0].warmup_loss, None, "no warmup, no warmup loss");
    }

    #[test]
    fn the_fine_tuning_window_leaves_the_warmup_out() {
        // Sample 0: correct in the warm-up, lost at the first fine-tuning epoch, relearned.
        // Sample 1: learned only in fine-tuning.
        let c = |a: u8, b: u8| [a, b];
        let traces = [c(1, 0), c(1, 0), c(0, 1), c(1, 1), c(1, 0)];
        let p = [0.9f32, 0.2];
        let loss = [0.1f32, 2.0];
        let columns: Vec<TraceColumns> = traces.iter().map(|t| TraceColumns::new(t, &p, &loss)).collect();
        let all = summarize_samples(&columns, 2, None, AnalysisSettings { window: Window::All, ..AnalysisSettings::default() });
        let fine = summarize_samples(&columns, 2, None, AnalysisSettings::default());
        // All: 1 1 0 1 1 -> one forgetting event (epoch 3); fine-tuning: 0 1 1 -> none.
        assert_eq!((all[0].events.forgetting_events, fine[0].events.forgetting_events), (1, 0));
        assert_eq!(all[0].events.first_learned_epoch, Some(1));
        assert_eq!(fine[0].events.first_learned_epoch, Some(4), "the run's own epoch number");
        // Sample 1: 0 0 1 1 0 in all, 1 1 0 in fine-tuning; learned at epoch 3 either way.
        assert_eq!((all[1].events.first_learned_epoch, fine[1].events.first_learned_epoch), (Some(3), Some(3)));
        assert_eq!(fine[1].cartography.unwrap().correctness, 2.0 / 3.0);
        // The warm-up loss is the last warm-up epoch's in both windows.
        assert_eq!((all[0].warmup_loss, fine[0].warmup_loss), (Some(0.1), Some(0.1)));
        // Definition B reads p_true; the window changes the trace it reads.
        let b = summarize_samples(&columns, 0, None, AnalysisSettings { retention: Retention::B, ..AnalysisSettings::default() });
        assert_eq!(b[0].decay, crate::decay::fit_p_true(&[true, true, false, true, true], &[0.9; 5]));
    }
}
