//! The training loop: head warmup, then fine-tuning, recording every training sample every
//! epoch in the run's measurement mode.

use std::time::Instant;

use anyhow::{Context, Result};
use datasets::Split;
use protocol::worker::{EpochUpload, Heartbeat, SampleManifest};
use protocol::{DatasetInfo, EpochMetrics, ExperimentSpec, Measure, Optimizer, Phase};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};

use crate::data::{load_split, DeviceSplit};
use crate::models::{self, Model};
use crate::recorder::{measure, EpochArrays};

/// Where the loop reports: the HTTP client in the worker, a recorder in tests.
pub trait Reporter {
    /// Live progress. Returns `true` when the job was cancelled and training must stop.
    fn progress(&mut self, heartbeat: &Heartbeat) -> Result<bool>;
    /// The samples of the run, once, before the first epoch.
    fn manifest(&mut self, manifest: &SampleManifest) -> Result<()>;
    /// One finished epoch.
    fn epoch(&mut self, epoch: &EpochUpload) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Completed,
    Cancelled,
}

/// Seconds between heartbeats while training.
const HEARTBEAT_EVERY: f64 = 1.0;
/// Batch size of evaluation passes (no gradients, so larger than training batches).
const EVAL_BATCH: i64 = 512;

pub fn train(spec: &ExperimentSpec, dataset: &DatasetInfo, reporter: &mut dyn Reporter) -> Result<Ending> {
    let device = crate::torch_device(spec.device)?;
    tch::manual_seed(spec.seed as i64);
    let mut beat = Beats::new(spec);
    if beat.send(reporter, "loading", 0, 0, 0, 0)? {
        return Ok(Ending::Cancelled);
    }
    let train = load_split(dataset, Split::Train, spec.train_subset, spec.image_size, device)?;
    let val = load_split(dataset, Split::Val, spec.val_subset, spec.image_size, device)?;
    reporter.manifest(&SampleManifest { samples: train.manifest.clone() })?;

    let vs = nn::VarStore::new(device);
    let model = models::build(spec.arch, &vs.root(), i64::from(dataset.channels), i64::from(dataset.num_classes))?;
    let mut optimizer = match spec.optimizer {
        Optimizer::Sgd => nn::Sgd { momentum: 0.9, dampening: 0.0, wd: 5e-4, nesterov: false }.build(&vs, spec.lr),
        Optimizer::Adamw => nn::AdamW::default().build(&vs, spec.lr),
    }
    .context("building the optimizer")?;

    let n = train.len();
    let batch = i64::from(spec.batch_size);
    let steps = n.div_ceil(spec.batch_size as usize) as u32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    for epoch in 1..=spec.total_epochs() {
        let started = Instant::now();
        let phase = if epoch <= spec.warmup_epochs { Phase::Warmup } else { Phase::Finetune };
        set_phase(&vs, model.head_prefix, phase);

        let mut order: Vec<i64> = (0..n as i64).collect();
        order.shuffle(&mut rng);
        let mut arrays = EpochArrays::new(n);
        let (mut loss_sum, mut correct_sum) = (0.0, 0.0);
        for (step, positions) in order.chunks(batch as usize).enumerate() {
            let index = Tensor::from_slice(positions).to_device(device);
            let images = augment(&train.images.index_select(0, &index));
            let targets = train.labels.index_select(0, &index);
            let logits = model.net.forward_t(&model.prepare(&images), true);
            let loss = logits.cross_entropy_for_logits(&targets);
            let measures = tch::no_grad(|| measure(&logits.detach(), &targets));
            if spec.measure == Measure::InBatch {
                arrays.write(positions, &measures)?;
            }
            optimizer.backward_step(&loss);
            loss_sum += measures.loss.sum(Kind::Float).double_value(&[]);
            correct_sum += measures.correct.sum(Kind::Float).double_value(&[]);
            let seen = ((step + 1) * batch as usize).min(n) as f64;
            let heartbeat = Heartbeat {
                phase: phase.as_str().to_owned(),
                epoch,
                step: step as u32 + 1,
                steps,
                loss: Some(loss_sum / seen),
                accuracy: Some(correct_sum / seen),
                ..Default::default()
            };
            beat.maybe(reporter, heartbeat, n)?;
            if beat.cancelled {
                return Ok(Ending::Cancelled);
            }
        }
        if spec.measure == Measure::FullPass {
            if beat.send(reporter, "measuring", epoch, steps, steps, n)? {
                return Ok(Ending::Cancelled);
            }
            let positions: Vec<i64> = (0..n as i64).collect();
            evaluate(&model, &train, |chunk, measures| arrays.write(&positions[chunk], measures))?;
        }
        anyhow::ensure!(arrays.written == n, "epoch {epoch} recorded {} of {n} samples", arrays.written);
        let train_loss = loss_sum / n as f64;
        anyhow::ensure!(
            train_loss.is_finite(),
            "training diverged at epoch {epoch}: the mean training loss is {train_loss}; try a lower learning rate"
        );

        if beat.send(reporter, "validating", epoch, steps, steps, n)? {
            return Ok(Ending::Cancelled);
        }
        let (val_loss, val_accuracy) = if val.is_empty() {
            (None, None)
        } else {
            let (mut vloss, mut vcorrect) = (0.0, 0.0);
            evaluate(&model, &val, |_, m| {
                vloss += m.loss.sum(Kind::Float).double_value(&[]);
                vcorrect += m.correct.sum(Kind::Float).double_value(&[]);
                Ok(())
            })?;
            (Some(vloss / val.len() as f64), Some(vcorrect / val.len() as f64))
        };
        let metrics = EpochMetrics {
            epoch,
            phase,
            train_loss,
            train_accuracy: correct_sum / n as f64,
            val_loss,
            val_accuracy,
            lr: spec.lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        reporter.epoch(&EpochUpload { metrics, columns: arrays.columns })?;
    }
    beat.send(reporter, "done", spec.total_epochs(), steps, steps, n)?;
    Ok(Ending::Completed)
}

/// During head warmup only the head's parameters train; then everything does.
/// Buffers (batch-norm statistics) are left alone: they never take gradients.
fn set_phase(vs: &nn::VarStore, head_prefix: &str, phase: Phase) {
    let vars = vs.variables_.lock().expect("var store lock");
    for (name, tensor) in &vars.named_variables {
        if vars.trainable_variables.iter().any(|v| v.tensor.data_ptr() == tensor.data_ptr()) {
            let trains = phase == Phase::Finetune || name.starts_with(head_prefix);
            let _ = tensor.set_requires_grad(trains);
        }
    }
}

/// Random horizontal flip, per sample, on the device.
fn augment(images: &Tensor) -> Tensor {
    let n = images.size()[0];
    let flip = Tensor::rand([n, 1, 1, 1], (Kind::Float, images.device())).lt(0.5);
    images.flip([3]).where_self(&flip, images)
}

/// Runs the model in eval mode over `split` in order, handing each chunk's measures to `sink`.
fn evaluate(model: &Model, split: &DeviceSplit, mut sink: impl FnMut(std::ops::Range<usize>, &crate::recorder::BatchMeasures) -> Result<()>) -> Result<()> {
    tch::no_grad(|| {
        let n = split.len() as i64;
        let mut start = 0;
        while start < n {
            let len = EVAL_BATCH.min(n - start);
            let images = split.images.narrow(0, start, len);
            let targets = split.labels.narrow(0, start, len);
            let logits = model.net.forward_t(&model.prepare(&images), false);
            sink(start as usize..(start + len) as usize, &measure(&logits, &targets))?;
            start += len;
        }
        Ok(())
    })
}

/// Throttled heartbeats with throughput and time-left estimates.
struct Beats {
    last: Option<Instant>,
    started: Instant,
    epochs: u32,
    cancelled: bool,
}

impl Beats {
    fn new(spec: &ExperimentSpec) -> Self {
        Self { last: None, started: Instant::now(), epochs: spec.total_epochs().max(1), cancelled: false }
    }

    /// An unconditional heartbeat (phase changes). Returns whether the job was cancelled.
    fn send(&mut self, reporter: &mut dyn Reporter, phase: &str, epoch: u32, step: u32, steps: u32, samples: usize) -> Result<bool> {
        self.beat(reporter, Heartbeat { phase: phase.to_owned(), epoch, step, steps, ..Default::default() }, samples)
    }

    /// A heartbeat at most every [`HEARTBEAT_EVERY`] seconds, and at the last step of an epoch.
    fn maybe(&mut self, reporter: &mut dyn Reporter, heartbeat: Heartbeat, samples: usize) -> Result<()> {
        let due = self.last.is_none_or(|t| t.elapsed().as_secs_f64() >= HEARTBEAT_EVERY);
        if due || heartbeat.step == heartbeat.steps {
            self.beat(reporter, heartbeat, samples)?;
        }
        Ok(())
    }

    fn beat(&mut self, reporter: &mut dyn Reporter, mut heartbeat: Heartbeat, samples: usize) -> Result<bool> {
        self.last = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs_f64();
        let within = if heartbeat.steps > 0 { f64::from(heartbeat.step) / f64::from(heartbeat.steps) } else { 0.0 };
        let epochs_done = f64::from(heartbeat.epoch.saturating_sub(1)) + within;
        let fraction = epochs_done / f64::from(self.epochs);
        if elapsed > 0.0 && epochs_done > 0.0 {
            heartbeat.images_per_sec = Some(epochs_done * samples as f64 / elapsed);
            heartbeat.eta_seconds = Some(elapsed * (1.0 - fraction) / fraction);
        }
        self.cancelled = reporter.progress(&heartbeat)?;
        Ok(self.cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::exclusive;
    use protocol::{Arch, Device};

    /// Collects everything the loop reports.
    #[derive(Default)]
    struct Recorded {
        heartbeats: Vec<Heartbeat>,
        manifest: Option<SampleManifest>,
        epochs: Vec<EpochUpload>,
        cancel_after: Option<usize>,
    }

    impl Reporter for Recorded {
        fn progress(&mut self, heartbeat: &Heartbeat) -> Result<bool> {
            self.heartbeats.push(heartbeat.clone());
            Ok(self.cancel_after.is_some_and(|n| self.heartbeats.len() >= n))
        }
        fn manifest(&mut self, manifest: &SampleManifest) -> Result<()> {
            self.manifest = Some(manifest.clone());
            Ok(())
        }
        fn epoch(&mut self, epoch: &EpochUpload) -> Result<()> {
            self.epochs.push(epoch.clone());
            Ok(())
        }
    }

    /// Two classes of 8x8 images: bright top half or bright bottom half (unchanged by the
    /// horizontal flips of augmentation), with noise.
    fn synthetic_dataset(dir: &std::path::Path, train: usize, val: usize) -> DatasetInfo {
        let mut state = 12345u32;
        let mut noise = move || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 24) as u8 / 4
        };
        for (stem, count) in [("train", train), ("t10k", val)] {
            let mut pixels = Vec::new();
            let mut labels = Vec::new();
            for i in 0..count {
                let label = (i % 2) as u8;
                for row in 0..8 {
                    for _col in 0..8 {
                        let bright = (row < 4) == (label == 0);
                        pixels.push(if bright { 180 } else { 20 } + noise());
                    }
                }
                labels.push(label);
            }
            std::fs::write(dir.join(format!("{stem}-images-idx3-ubyte")), datasets::encode_idx(&[count as u32, 8, 8], &pixels)).unwrap();
            std::fs::write(dir.join(format!("{stem}-labels-idx1-ubyte")), datasets::encode_idx(&[count as u32], &labels)).unwrap();
        }
        DatasetInfo {
            name: "synthetic".into(),
            format: "idx".into(),
            path: dir.display().to_string(),
            num_classes: 2,
            class_names: vec!["left".into(), "right".into()],
            train_size: train as u64,
            val_size: val as u64,
            image_height: 8,
            image_width: 8,
            channels: 1,
        }
    }

    fn spec(measure: Measure, warmup_epochs: u32) -> ExperimentSpec {
        ExperimentSpec {
            dataset: "synthetic".into(),
            arch: Arch::SmallCnn,
            epochs: 2,
            warmup_epochs,
            batch_size: 16,
            lr: 0.05,
            optimizer: Optimizer::Sgd,
            seed: 3,
            train_subset: Some(48),
            val_subset: None,
            image_size: 8,
            measure,
            weights: None,
            device: Device::Cpu,
        }
    }

    #[test]
    fn records_every_sample_every_epoch_with_phases_and_is_reproducible() {
        let _torch = exclusive();
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 64, 16);
        let mut first = Recorded::default();
        assert_eq!(train(&spec(Measure::InBatch, 1), &dataset, &mut first).unwrap(), Ending::Completed);
        let manifest = first.manifest.as_ref().unwrap();
        assert_eq!(manifest.samples.len(), 48, "the subset");
        assert_eq!(first.epochs.len(), 3, "one warmup and two fine-tuning epochs");
        let phases: Vec<Phase> = first.epochs.iter().map(|e| e.metrics.phase).collect();
        assert_eq!(phases, vec![Phase::Warmup, Phase::Finetune, Phase::Finetune]);
        for epoch in &first.epochs {
            epoch.columns.check_lengths(48).unwrap();
            assert!(epoch.metrics.val_accuracy.is_some());
        }
        assert_eq!(first.heartbeats.last().unwrap().phase, "done");
        // The same seed gives the same records, bit for bit.
        let mut second = Recorded::default();
        train(&spec(Measure::InBatch, 1), &dataset, &mut second).unwrap();
        assert_eq!(first.epochs.iter().map(|e| &e.columns).collect::<Vec<_>>(), second.epochs.iter().map(|e| &e.columns).collect::<Vec<_>>());
    }

    #[test]
    fn full_pass_measures_in_eval_mode_in_manifest_order() {
        let _torch = exclusive();
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 64, 8);
        let mut recorded = Recorded::default();
        let spec = ExperimentSpec { epochs: 6, batch_size: 8, ..spec(Measure::FullPass, 0) };
        train(&spec, &dataset, &mut recorded).unwrap();
        assert_eq!(recorded.epochs.len(), 6);
        assert!(recorded.heartbeats.iter().any(|h| h.phase == "measuring"));
        // The two-class task is easy: the last full pass gets most samples right.
        let last = &recorded.epochs[5].columns;
        let accuracy = last.correct.iter().map(|&c| f64::from(c)).sum::<f64>() / 48.0;
        assert!(accuracy > 0.8, "accuracy {accuracy}");
    }

    #[test]
    fn cancellation_stops_at_the_next_heartbeat() {
        let _torch = exclusive();
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 64, 8);
        let mut recorded = Recorded { cancel_after: Some(2), ..Default::default() };
        assert_eq!(train(&spec(Measure::InBatch, 0), &dataset, &mut recorded).unwrap(), Ending::Cancelled);
        assert!(recorded.epochs.is_empty());
    }

    #[test]
    fn head_warmup_trains_only_the_head() {
        let _torch = exclusive();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = models::build(Arch::SmallCnn, &vs.root(), 1, 2).unwrap();
        let mut optimizer = nn::Sgd { momentum: 0.9, dampening: 0.0, wd: 5e-4, nesterov: false }.build(&vs, 0.1).unwrap();
        let snapshot = |vs: &nn::VarStore| -> Vec<(String, Tensor)> {
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            vars
        };
        let step = |optimizer: &mut nn::Optimizer| {
            let x = model.prepare(&Tensor::randint(255, [8, 1, 8, 8], (Kind::Uint8, tch::Device::Cpu)));
            let y = Tensor::from_slice(&[0i64, 1, 0, 1, 0, 1, 0, 1]);
            optimizer.backward_step(&model.net.forward_t(&x, true).cross_entropy_for_logits(&y));
        };
        set_phase(&vs, model.head_prefix, Phase::Warmup);
        let before = snapshot(&vs);
        step(&mut optimizer);
        for ((name, old), (_, new)) in before.iter().zip(snapshot(&vs)) {
            let changed = !old.allclose(&new, 0.0, 0.0, false);
            assert_eq!(changed, name.starts_with("head"), "{name} changed: {changed}");
        }
        set_phase(&vs, model.head_prefix, Phase::Finetune);
        let before = snapshot(&vs);
        step(&mut optimizer);
        for ((name, old), (_, new)) in before.iter().zip(snapshot(&vs)) {
            assert!(!old.allclose(&new, 0.0, 0.0, false), "{name} should train during fine-tuning");
        }
    }
}
