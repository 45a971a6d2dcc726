//! The training loop: head warmup, then fine-tuning, recording every training sample every
//! epoch in the run's measurement mode.

use std::time::Instant;

use anyhow::{Context, Result};
use datasets::Split;
use protocol::worker::{ClassMeans, EpochColumns, EpochUpload, Heartbeat, SampleManifest, SourceValues};
use protocol::{Augment, DatasetInfo, EpochMetrics, ExperimentSpec, Measure, Phase, WarmupBackbone};
use rand::SeedableRng;
use tch::nn;
use tch::{Kind, Tensor};

use crate::checkpoint::{Checkpoints, Snapshot};
use crate::data::{DeviceSplit, load_split};
use crate::models::{self, Model, Shape};
use crate::optim::{self, Optim};
use crate::pipeline::{EpochSink, Pipeline};
use crate::recorder::{EpochArrays, measure};
use crate::schedule::{Scheduler, epoch_seed, shown_bits};
use crate::weights;

/// Where the loop reports: the HTTP client in the worker, a recorder in tests.
pub trait Reporter {
    /// Live progress. Returns `true` when the job was cancelled and training must stop.
    fn progress(&mut self, heartbeat: &Heartbeat) -> Result<bool>;
    /// The samples of the run, once, before the first epoch.
    fn manifest(&mut self, manifest: &SampleManifest) -> Result<()>;
    /// Where finished epochs go, on the thread that stores them ([`Pipeline`]); asked once,
    /// after the manifest.
    fn epoch_sink(&mut self) -> Box<dyn EpochSink>;
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Every epoch recorded; with the final model's class-mean embeddings.
    Completed(ClassMeans),
    Cancelled,
}

/// Seconds between heartbeats while training.
const HEARTBEAT_EVERY: f64 = 1.0;
/// Batch size of evaluation passes (no gradients, so larger than training batches).
const EVAL_BATCH: i64 = 512;

/// Where a run keeps what outlives the process.
#[derive(Debug, Clone, Default)]
pub struct Places {
    /// The run's checkpoint folder; `None` trains without checkpoints.
    pub checkpoints: Option<std::path::PathBuf>,
    /// Where decoded datasets are cached; `None` decodes every time.
    pub cache: Option<std::path::PathBuf>,
}

/// Trains `spec` on `dataset`. `source` holds the earlier run's per-sample values when the
/// spec's schedule needs them (`spec.sampling.source()`); the server sends them with the lease.
pub fn train(spec: &ExperimentSpec, dataset: &DatasetInfo, reporter: &mut dyn Reporter, places: &Places, source: Option<&SourceValues>) -> Result<Ending> {
    let device = crate::torch_device(spec.device)?;
    let described = crate::describe_device(device);
    tracing::info!("training on {described} (device setting {})", spec.device.as_str());
    tch::manual_seed(spec.seed as i64);
    let mut beat = Beats::new(spec, described);
    if beat.send(reporter, "loading", 0, 0, 0, 0)? {
        return Ok(Ending::Cancelled);
    }
    let cache = places.cache.as_deref();
    let framing = (spec.image_size, spec.preprocess);
    let train = load_split(dataset, Split::Train, spec.train_subset, framing, device, cache)?;
    let val = load_split(dataset, Split::Val, spec.val_subset, framing, device, cache)?;
    reporter.manifest(&SampleManifest { samples: train.manifest.clone() })?;
    let mut scheduler = Scheduler::new(&spec.sampling, train.len(), spec.seed, spec.warmup_epochs, spec.epochs, source_in_manifest_order(&train, source))?;

    let vs = nn::VarStore::new(device);
    let shape = Shape {
        channels: i64::from(dataset.channels),
        classes: i64::from(dataset.num_classes),
        image_size: i64::from(spec.image_size),
        drop_path: spec.hyper.drop_path,
    };
    let model = models::build(spec.arch, &vs.root(), shape)?;
    if let Some(path) = &spec.weights {
        let loaded = weights::load_pretrained(&vs, std::path::Path::new(path), model.head_prefix)?;
        tracing::info!(copied = loaded.copied, head_skipped = ?loaded.head_skipped, pos_embed_resized = ?loaded.pos_embed_resized, "pretrained weights loaded from {path}");
    }
    let mut optimizer = Optim::new(&vs, spec.optimizer, &spec.hyper, optim::decays);
    let checkpoints = places.checkpoints.as_ref().map(Checkpoints::new);
    let resumed = match &checkpoints {
        Some(c) => c.restore(spec, &vs, &mut optimizer)?,
        None => None,
    };
    if let Some(epoch) = resumed {
        tracing::info!(epoch, "resuming after the checkpoint of epoch {epoch}");
        if let Some(state) = checkpoints.as_ref().and_then(|c| c.schedule(spec)) {
            scheduler.restore(serde_json::from_value(state).context("the checkpoint's schedule state")?)?;
        }
    }
    if spec.sampling != protocol::Sampling::default() {
        tracing::info!(schedule = %spec.sampling, shown = spec.sampling.shown_count(train.len()), samples = train.len(), "training schedule");
    }
    let saving = checkpoints.is_some();
    let mut pipeline = Pipeline::start(reporter.epoch_sink(), checkpoints);
    let first_epoch = resumed.map_or(1, |e| e + 1);
    beat.first_epoch = first_epoch;
    let mixed = spec.hyper.mixed_precision && device.is_cuda();
    let mut scaler = mixed.then(LossScaler::default);

    let n = train.len();
    let classes = i64::from(dataset.num_classes);
    let batch = i64::from(spec.batch_size);
    // The learning-rate schedule counts the steps of fine-tuning epochs, which show the
    // schedule's budget of samples (every sample under `full`).
    let finetune_steps_per_epoch = spec.sampling.shown_count(n).div_ceil(spec.batch_size as usize) as u64;
    let finetune_steps = u64::from(spec.epochs) * finetune_steps_per_epoch;
    for epoch in first_epoch..=spec.total_epochs() {
        let started = Instant::now();
        let phase = if epoch <= spec.warmup_epochs { Phase::Warmup } else { Phase::Finetune };
        set_phase(&vs, model.head_prefix, phase);
        let seed = epoch_seed(spec.seed, epoch);
        tch::manual_seed(seed as i64);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

        let shown = scheduler.order(epoch, &mut rng)?;
        let shown_count = shown.len();
        let steps = shown_count.div_ceil(batch as usize) as u32;
        // Spec validation makes subset schedules measure in a full pass.
        anyhow::ensure!(
            spec.measure == Measure::FullPass || shown_count == n,
            "epoch {epoch} shows {shown_count} of {n} samples, so in_batch measurement would leave some unrecorded; use measure full_pass"
        );
        let order: Vec<i64> = shown.iter().map(|&i| i as i64).collect();
        let order_on_device = Tensor::from_slice(&order).to_device(device);
        // in_batch records fill this buffer during the epoch; full_pass measures after it.
        let mut arrays = (spec.measure == Measure::InBatch).then(|| EpochArrays::new(n, device));
        // Running sums of loss and correct predictions, kept on the device: read at
        // heartbeats (at most once a second) and at the end of the epoch.
        let mut sums = Tensor::zeros([2], (Kind::Double, device));
        let mut lr = spec.lr;
        for (step, positions) in order.chunks(batch as usize).enumerate() {
            let finetune_step = (phase == Phase::Finetune).then(|| u64::from(epoch - spec.warmup_epochs - 1) * finetune_steps_per_epoch + step as u64);
            lr = optim::learning_rate(spec.lr, &spec.hyper, finetune_step, finetune_steps, finetune_steps_per_epoch);
            let index = order_on_device.narrow(0, step as i64 * batch, positions.len() as i64);
            let images = augment(&model.prepare(&train.images.index_select(0, &index)), spec.hyper.augment, train.input);
            let targets = train.labels.index_select(0, &index);
            let logits = tch::autocast(mixed, || training_forward(&model, &images, phase, spec.warmup_backbone)).to_kind(Kind::Float);
            let loss = optim::training_loss(&logits, &targets, spec.hyper.label_smoothing);
            let measures = tch::no_grad(|| measure(&logits.detach(), &targets));
            if let Some(arrays) = &mut arrays {
                arrays.write(&index, &measures);
            }
            match &mut scaler {
                Some(scaler) => {
                    scaler.backward_step(&mut optimizer, &loss, lr);
                }
                None => optimizer.backward_step(&loss, lr),
            }
            sums += tch::no_grad(|| Tensor::stack(&[measures.loss.sum(Kind::Double), measures.correct.sum(Kind::Double)], 0));
            if beat.due(step + 1 == steps as usize) {
                if pipeline.failed() {
                    pipeline.finish()?;
                }
                let [loss_sum, correct_sum] = read_sums(&sums)?;
                let seen = ((step + 1) * batch as usize).min(shown_count) as f64;
                let heartbeat = Heartbeat {
                    phase: phase.as_str().to_owned(),
                    epoch,
                    step: step as u32 + 1,
                    steps,
                    loss: Some(loss_sum / seen),
                    accuracy: Some(correct_sum / seen),
                    ..Default::default()
                };
                if beat.beat(reporter, heartbeat, shown_count)? {
                    return Ok(Ending::Cancelled);
                }
            }
        }
        let last_step = Instant::now();
        let columns = match arrays {
            Some(arrays) => arrays.finish(),
            None => {
                if beat.send(reporter, "measuring", epoch, steps, steps, n)? {
                    return Ok(Ending::Cancelled);
                }
                full_pass(&model, &train)
            }
        }
        .map_err(|e| anyhow::anyhow!("epoch {epoch}: {e}"))?;
        let [loss_sum, correct_sum] = read_sums(&sums)?;
        // Over the samples the epoch trained on.
        let train_loss = loss_sum / shown_count as f64;
        anyhow::ensure!(train_loss.is_finite(), "training diverged at epoch {epoch}: the mean training loss is {train_loss}; try a lower learning rate");

        let recorded = Instant::now();
        if beat.send(reporter, "validating", epoch, steps, steps, n)? {
            return Ok(Ending::Cancelled);
        }
        let validation = if val.is_empty() { None } else { Some(validate(&model, &val, classes, scheduler.needs_recall_items())?) };
        // The loss after head warmup (docs/design.md): an eval-mode pass at the end of the last
        // warmup epoch (the full pass of this epoch already is one).
        let validated = Instant::now();
        let eval_loss = if epoch == spec.warmup_epochs {
            if spec.measure == Measure::FullPass { Some(columns.loss.clone()) } else { Some(full_pass(&model, &train)?.loss) }
        } else {
            None
        };
        let metrics = EpochMetrics {
            epoch,
            phase,
            train_loss,
            train_accuracy: correct_sum / shown_count as f64,
            val_loss: validation.as_ref().map(|v| v.loss),
            val_accuracy: validation.as_ref().map(|v| v.accuracy),
            lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        if let Some(loss) = &eval_loss {
            scheduler.observe_warmup_loss(loss);
        }
        // The model's strength for RbF: validation accuracy, or the records' when there is no
        // validation set.
        let strength = metrics.val_accuracy.unwrap_or_else(|| columns.correct.iter().map(|&c| f64::from(c)).sum::<f64>() / n.max(1) as f64);
        // RbF fits its kernel to the validation items, or to the training records without them.
        let recall_items = match validation.as_ref().and_then(|v| v.items.as_ref()) {
            Some((loss, confidence)) => (loss.as_slice(), confidence.as_slice()),
            None => (columns.loss.as_slice(), columns.p_true.as_slice()),
        };
        scheduler.observe(epoch, &shown, &columns.correct, &columns.loss, strength, Some(recall_items));
        let shown = (!scheduler.shows_every_sample(epoch)).then(|| shown_bits(n, &shown));
        let val_confusion = validation.map(|v| v.confusion);
        let handing = Instant::now();
        let snapshot = if saving {
            // `full` has nothing to remember: its checkpoints stay as they were.
            let schedule = (spec.sampling != protocol::Sampling::default()).then(|| serde_json::to_value(&scheduler.state)).transpose()?;
            Some(Snapshot::take(spec, epoch, &vs, &optimizer, schedule))
        } else {
            None
        };
        // Uploaded, then checkpointed, on the pipeline's thread while the next epoch trains.
        pipeline.submit(EpochUpload { metrics, columns, val_confusion, eval_loss, shown }, snapshot)?;
        let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
        let now = Instant::now();
        tracing::info!(
            "epoch {epoch}: {:.0} ms from its last step to the next epoch (records {:.0} ms, validation {:.0} ms, checkpoint copy and hand-over {:.1} ms)",
            ms(last_step, now),
            ms(last_step, recorded),
            ms(recorded, validated),
            ms(handing, now)
        );
    }
    let means = class_means(&model, &train, classes)?;
    pipeline.finish()?;
    beat.send(reporter, "done", spec.total_epochs(), 1, 1, n)?;
    Ok(Ending::Completed(means))
}

/// The source run's values in manifest order, joined on sample keys; a sample the source run
/// does not hold gets no value (the schedule says what that means).
fn source_in_manifest_order(split: &DeviceSplit, source: Option<&SourceValues>) -> Option<Vec<Option<f64>>> {
    let source = source?;
    let values: Vec<Option<f64>> = split.manifest.iter().map(|s| source.values.get(&s.sample_key).copied().flatten()).collect();
    let absent = split.manifest.iter().filter(|s| !source.values.contains_key(&s.sample_key)).count();
    if absent > 0 {
        tracing::warn!(
            absent,
            samples = split.len(),
            run = source.run_id,
            "{absent} samples are not in source run #{}; they have no {}",
            source.run_id,
            source.score
        );
    }
    Some(values)
}

/// A validation pass: mean loss, accuracy, and the confusion matrix (row = true class,
/// column = predicted), accumulated on the device and read once; with `items`, also each
/// item's loss and confidence (probability of its true class), in split order.
struct Validation {
    loss: f64,
    accuracy: f64,
    confusion: Vec<u32>,
    items: Option<(Vec<f32>, Vec<f32>)>,
}

fn validate(model: &Model, val: &DeviceSplit, classes: i64, items: bool) -> Result<Validation> {
    let device = val.labels.device();
    let mut sums = Tensor::zeros([2], (Kind::Double, device));
    let mut confusion = Tensor::zeros([classes * classes], (Kind::Int64, device));
    let mut per_item: Vec<Tensor> = Vec::new();
    evaluate(model, val, |chunk, m| {
        let targets = val.labels.narrow(0, chunk.start as i64, (chunk.end - chunk.start) as i64);
        sums += Tensor::stack(&[m.loss.sum(Kind::Double), m.correct.sum(Kind::Double)], 0);
        confusion += (targets * classes + &m.predicted).bincount::<Tensor>(None, classes * classes);
        if items {
            per_item.push(Tensor::stack(&[m.loss.to_kind(Kind::Float), m.p_true.to_kind(Kind::Float)], 0));
        }
        Ok(())
    })?;
    let items = if items && !per_item.is_empty() {
        let both = Tensor::cat(&per_item, 1).to_device(tch::Device::Cpu);
        Some((Vec::<f32>::try_from(both.get(0))?, Vec::<f32>::try_from(both.get(1))?))
    } else {
        None
    };
    let [loss, correct] = read_sums(&sums)?;
    let confusion = Vec::<i64>::try_from(confusion.to_device(tch::Device::Cpu))?.into_iter().map(|c| c as u32).collect();
    let n = val.len() as f64;
    Ok(Validation { loss: loss / n, accuracy: correct / n, confusion, items })
}

/// The mean penultimate embedding of each class over `split`, in eval mode (class level of
/// docs/design.md: class similarity from class-mean embeddings).
pub fn class_means(model: &Model, split: &DeviceSplit, classes: i64) -> Result<ClassMeans> {
    tch::no_grad(|| {
        let device = split.labels.device();
        let mut sums: Option<Tensor> = None;
        let mut counts = Tensor::zeros([classes], (Kind::Float, device));
        let n = split.labels.size()[0];
        let mut start = 0;
        while start < n {
            let len = EVAL_BATCH.min(n - start);
            let features = model.features.forward_t(&model.prepare(&split.eval_images(start, len)), false).to_kind(Kind::Float);
            let labels = split.labels.narrow(0, start, len);
            let total = sums.get_or_insert_with(|| Tensor::zeros([classes, features.size()[1]], (Kind::Float, device)));
            let _ = total.index_add_(0, &labels, &features);
            let _ = counts.index_add_(0, &labels, &labels.ones_like().to_kind(Kind::Float));
            start += len;
        }
        let sums = sums.context("class means of an empty split")?;
        let dim = sums.size()[1];
        let means = &sums / counts.clamp_min(1.0).unsqueeze(1);
        Ok(ClassMeans {
            dim: dim as u32,
            means: Vec::<f32>::try_from(means.to_device(tch::Device::Cpu).flatten(0, -1))?,
            counts: Vec::<f32>::try_from(counts.to_device(tch::Device::Cpu))?.into_iter().map(|c| c as u32).collect(),
        })
    })
}

/// Dynamic loss scaling for float16 autocast (as `torch.cuda.amp.GradScaler`): the loss is
/// multiplied by `scale` before back-propagation and the gradients divided by it before the
/// step; a step whose gradients overflowed is skipped and the scale halved; after
/// `GROWTH_INTERVAL` clean steps the scale doubles.
#[derive(Debug)]
pub struct LossScaler {
    pub scale: f64,
    clean_steps: u32,
}

const GROWTH_INTERVAL: u32 = 2000;

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler { scale: 65536.0, clean_steps: 0 }
    }
}

impl LossScaler {
    /// Returns whether the step was taken.
    pub fn backward_step(&mut self, optimizer: &mut Optim, loss: &Tensor, lr: f64) -> bool {
        let mut grads = optimizer.gradients(&(loss * self.scale));
        let finite = optim::unscale(&mut grads, 1.0 / self.scale);
        if finite {
            optimizer.apply(&grads, lr);
            self.clean_steps += 1;
            if self.clean_steps >= GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.clean_steps = 0;
            }
        } else {
            self.scale /= 2.0;
            self.clean_steps = 0;
        }
        finite
    }
}

/// The training step's forward pass. During head warmup the frozen backbone runs as
/// `warmup_backbone` says: in eval mode (`WarmupBackbone::Eval`: batch-norm running statistics
/// fixed, no dropout or drop-path, and no autograd graph through it, since none of its
/// parameters train), or in training mode (`Train`: statistics adapting). The head always
/// trains; during fine-tuning the whole model runs in training mode.
fn training_forward(model: &Model, images: &Tensor, phase: Phase, warmup_backbone: WarmupBackbone) -> Tensor {
    match (phase, warmup_backbone) {
        (Phase::Warmup, WarmupBackbone::Eval) => tch::no_grad(|| model.features.forward_t(images, false)).apply(&model.head),
        _ => model.forward_t(images, true),
    }
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

/// Training-time augmentation of a normalised float batch `[N, C, L, L]`, on its device, to
/// the model's `size x size` input: `crop_flip` draws a random resized crop from the whole
/// stored image; `flip` and `none` take its centre (all of it when `L = size`).
pub fn augment(images: &Tensor, kind: Augment, size: i64) -> Tensor {
    let n = images.size()[0];
    match kind {
        Augment::None => crate::data::centre(images, size),
        Augment::Flip => {
            let images = crate::data::centre(images, size);
            let flip = Tensor::rand([n, 1, 1, 1], (Kind::Float, images.device())).lt(0.5);
            images.flip([3]).where_self(&flip, &images)
        }
        Augment::CropFlip => random_resized_crop_flip(images, size),
    }
}

/// torchvision's `RandomResizedCrop` (area 8-100 %, aspect 3/4 to 4/3, log-uniform) and
/// `RandomHorizontalFlip`, per sample, in one bilinear `grid_sampler` call: each sample's
/// crop box and flip become an affine map from output to input coordinates. Boxes that do not
/// fit (too wide or tall for the aspect drawn) are shrunk to fit, keeping the centre inside.
pub fn random_resized_crop_flip(images: &Tensor, size: i64) -> Tensor {
    let (n, c, _, _) = images.size4().expect("images are [N, C, H, W]");
    let options = (Kind::Float, images.device());
    let area = Tensor::rand([n], options) * 0.92 + 0.08;
    let log_ratio = (Tensor::rand([n], options) * 2.0 - 1.0) * (4.0f64 / 3.0).ln();
    let ratio = log_ratio.exp();
    // Crop sides as fractions of the image sides.
    let cw = (&area * &ratio).sqrt().clamp_max(1.0);
    let ch = (&area / &ratio).sqrt().clamp_max(1.0);
    // Centres (normalised to [-1, 1]) where the box stays inside the image.
    let cx = (Tensor::rand([n], options) * 2.0 - 1.0) * (1.0 - &cw);
    let cy = (Tensor::rand([n], options) * 2.0 - 1.0) * (1.0 - &ch);
    let flip = Tensor::rand([n], options).lt(0.5).to_kind(Kind::Float) * -2.0 + 1.0;
    let zero = Tensor::zeros([n], options);
    let theta = Tensor::stack(&[&cw * flip, zero.shallow_clone(), cx, zero, ch, cy], 1).view([n, 2, 3]);
    let grid = Tensor::affine_grid_generator(&theta, [n, c, size, size], false);
    // Bilinear (0), border padding (1).
    images.grid_sampler(&grid, 0, 1, false)
}

/// Every sample of `split` measured in eval mode, in manifest order: the full_pass
/// measurement, and the loss after head warmup.
pub fn full_pass(model: &Model, split: &DeviceSplit) -> Result<EpochColumns> {
    let device = split.labels.device();
    let mut arrays = EpochArrays::new(split.len(), device);
    evaluate(model, split, |chunk, measures| {
        arrays.write(&Tensor::arange_start(chunk.start as i64, chunk.end as i64, (Kind::Int64, device)), measures);
        Ok(())
    })?;
    arrays.finish()
}

/// The epoch's running loss and correct-prediction sums, on the host.
fn read_sums(sums: &Tensor) -> Result<[f64; 2]> {
    let host = Vec::<f64>::try_from(sums.to_device(tch::Device::Cpu))?;
    Ok([host[0], host[1]])
}

/// Runs the model in eval mode over `split` in order, handing each chunk's measures to `sink`.
fn evaluate(model: &Model, split: &DeviceSplit, mut sink: impl FnMut(std::ops::Range<usize>, &crate::recorder::BatchMeasures) -> Result<()>) -> Result<()> {
    tch::no_grad(|| {
        let n = split.len() as i64;
        let mut start = 0;
        while start < n {
            let len = EVAL_BATCH.min(n - start);
            let images = split.eval_images(start, len);
            let targets = split.labels.narrow(0, start, len);
            let logits = model.forward_t(&model.prepare(&images), false);
            sink(start as usize..(start + len) as usize, &measure(&logits, &targets))?;
            start += len;
        }
        Ok(())
    })
}

/// Throttled heartbeats with throughput and time-left estimates.
struct Beats {
    /// The epoch this process started at (later than 1 when resumed from a checkpoint).
    first_epoch: u32,
    last: Option<Instant>,
    started: Instant,
    epochs: u32,
    /// [`crate::describe_device`] of the device trained on.
    device: String,
}

impl Beats {
    fn new(spec: &ExperimentSpec, device: String) -> Self {
        Self { first_epoch: 1, last: None, started: Instant::now(), epochs: spec.total_epochs().max(1), device }
    }

    /// An unconditional heartbeat (phase changes). Returns whether the job was cancelled.
    fn send(&mut self, reporter: &mut dyn Reporter, phase: &str, epoch: u32, step: u32, steps: u32, samples: usize) -> Result<bool> {
        self.beat(reporter, Heartbeat { phase: phase.to_owned(), epoch, step, steps, ..Default::default() }, samples)
    }

    /// Whether a heartbeat is due: at most every [`HEARTBEAT_EVERY`] seconds, and at the last
    /// step of an epoch.
    fn due(&self, last_step: bool) -> bool {
        last_step || self.last.is_none_or(|t| t.elapsed().as_secs_f64() >= HEARTBEAT_EVERY)
    }

    fn beat(&mut self, reporter: &mut dyn Reporter, mut heartbeat: Heartbeat, samples: usize) -> Result<bool> {
        self.last = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs_f64();
        let within = if heartbeat.steps > 0 { f64::from(heartbeat.step) / f64::from(heartbeat.steps) } else { 0.0 };
        let epochs_done = f64::from(heartbeat.epoch.saturating_sub(1)) + within;
        let done_here = epochs_done - f64::from(self.first_epoch - 1);
        if elapsed > 0.0 && done_here > 0.0 {
            heartbeat.images_per_sec = Some(done_here * samples as f64 / elapsed);
            let left = f64::from(self.epochs) - epochs_done;
            heartbeat.eta_seconds = Some(elapsed * left / done_here);
        }
        heartbeat.device = Some(self.device.clone());
        heartbeat.memory_bytes = crate::resident_bytes();
        reporter.progress(&heartbeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::exclusive;
    use protocol::{Arch, Device, Hyper, Optimizer, Preprocess};
    use rand::seq::SliceRandom;
    use std::sync::{Arc, Mutex};

    /// Collects everything the loop reports.
    #[derive(Default)]
    struct Recorded {
        heartbeats: Vec<Heartbeat>,
        manifest: Option<SampleManifest>,
        /// What the sink stored, copied into `epochs` when [`train_recorded`] returns.
        stored: Arc<Mutex<Vec<EpochUpload>>>,
        epochs: Vec<EpochUpload>,
        cancel_after: Option<usize>,
        /// Refuse the upload of this epoch, as a worker killed before it could upload.
        fail_at_epoch: Option<u32>,
        /// How long storing an epoch takes (a slow server).
        store_delay: std::time::Duration,
        /// When each heartbeat came, with its epoch.
        beats_at: Vec<(u32, Instant)>,
        /// Each epoch's store: epoch, start, end, and the checkpoint in force when it began
        /// (read from `probe`, a checkpoint folder and the spec).
        stores: Arc<Mutex<Vec<(u32, Instant, Instant, Option<u32>)>>>,
        probe: Option<(std::path::PathBuf, ExperimentSpec)>,
    }

    impl Reporter for Recorded {
        fn progress(&mut self, heartbeat: &Heartbeat) -> Result<bool> {
            self.heartbeats.push(heartbeat.clone());
            self.beats_at.push((heartbeat.epoch, Instant::now()));
            Ok(self.cancel_after.is_some_and(|n| self.heartbeats.len() >= n))
        }
        fn manifest(&mut self, manifest: &SampleManifest) -> Result<()> {
            self.manifest = Some(manifest.clone());
            Ok(())
        }
        fn epoch_sink(&mut self) -> Box<dyn EpochSink> {
            Box::new(Sink {
                stored: self.stored.clone(),
                fail_at_epoch: self.fail_at_epoch,
                delay: self.store_delay,
                stores: self.stores.clone(),
                probe: self.probe.clone(),
            })
        }
    }

    struct Sink {
        stored: Arc<Mutex<Vec<EpochUpload>>>,
        fail_at_epoch: Option<u32>,
        delay: std::time::Duration,
        stores: Arc<Mutex<Vec<(u32, Instant, Instant, Option<u32>)>>>,
        probe: Option<(std::path::PathBuf, ExperimentSpec)>,
    }

    impl EpochSink for Sink {
        fn epoch(&mut self, epoch: &EpochUpload) -> Result<()> {
            let start = Instant::now();
            let checkpoint = self.probe.as_ref().and_then(|(dir, spec)| Checkpoints::new(dir).latest(spec));
            anyhow::ensure!(self.fail_at_epoch != Some(epoch.metrics.epoch), "the worker died");
            std::thread::sleep(self.delay);
            self.stored.lock().unwrap().push(epoch.clone());
            self.stores.lock().unwrap().push((epoch.metrics.epoch, start, Instant::now(), checkpoint));
            Ok(())
        }
    }

    /// [`train`], then what it stored in `recorded.epochs`.
    fn train_recorded(spec: &ExperimentSpec, dataset: &DatasetInfo, recorded: &mut Recorded, places: &Places, source: Option<&SourceValues>) -> Result<Ending> {
        let ending = train(spec, dataset, recorded, places, source);
        recorded.epochs = recorded.stored.lock().unwrap().clone();
        ending
    }

    /// Two classes of 8x8 images: bright top half or bright bottom half (unchanged by the
    /// horizontal flips of augmentation), with noise.
    fn synthetic_dataset(dir: &std::path::Path, train: usize, val: usize) -> DatasetInfo {
        let mut rng = dynamics::rng::SplitMix64::new(12345);
        let mut noise = move || (rng.next_u64() >> 56) as u8 / 4;
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
            options: Default::default(),
            groups: None,
        }
    }

    fn spec(measure: Measure, warmup_epochs: u32) -> ExperimentSpec {
        ExperimentSpec {
            dataset: "synthetic".into(),
            arch: Arch::SmallCnn,
            epochs: 2,
            warmup_epochs,
            warmup_backbone: WarmupBackbone::Eval,
            batch_size: 16,
            lr: 0.05,
            optimizer: Optimizer::Sgd,
            seed: 3,
            train_subset: Some(48),
            val_subset: None,
            image_size: 8,
            preprocess: Default::default(),
            measure,
            weights: None,
            device: Device::Cpu,
            hyper: Hyper::default(),
            sampling: Default::default(),
            never_learned: Default::default(),
            window: Default::default(),
            retention: Default::default(),
            el2n_epoch: None,
        }
    }

    #[test]
    fn records_every_sample_every_epoch_with_phases_and_is_reproducible() {
        let _torch = exclusive();
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 64, 16);
        let mut first = Recorded::default();
        let Ending::Completed(means) = train_recorded(&spec(Measure::InBatch, 1), &dataset, &mut first, &Places::default(), None).unwrap() else {
            panic!("the run did not complete");
        };
        assert_eq!((means.dim, means.counts.iter().sum::<u32>(), means.means.len()), (128, 48, 2 * 128));
        let manifest = first.manifest.as_ref().unwrap();
        assert_eq!(manifest.samples.len(), 48, "the subset");
        assert_eq!(first.epochs.len(), 3, "one warmup and two fine-tuning epochs");
        let phases: Vec<Phase> = first.epochs.iter().map(|e| e.metrics.phase).collect();
        assert_eq!(phases, vec![Phase::Warmup, Phase::Finetune, Phase::Finetune]);
        for epoch in &first.epochs {
            epoch.columns.check_lengths(48).unwrap();
            // The confusion matrix covers the 16 validation samples; its diagonal is the accuracy.
            let confusion = epoch.val_confusion.as_ref().unwrap();
            assert_eq!((confusion.len(), confusion.iter().sum::<u32>()), (4, 16));
            let accuracy = f64::from(confusion[0] + confusion[3]) / 16.0;
            assert!((epoch.metrics.val_accuracy.unwrap() - accuracy).abs() < 1e-12);
        }
        // The loss after head warmup: an eval pass at the end of the warmup epoch, only there.
        assert_eq!(first.epochs[0].eval_loss.as_ref().map(Vec::len), Some(48));
        assert!(first.epochs[1..].iter().all(|e| e.eval_loss.is_none()));
        assert_ne!(first.epochs[0].eval_loss.as_ref().unwrap(), &first.epochs[0].columns.loss, "eval-mode loss after the epoch, not the in-batch loss");
        assert_eq!(first.heartbeats.last().unwrap().phase, "done");
        // The same seed gives the same records, bit for bit.
        let mut second = Recorded::default();
        train_recorded(&spec(Measure::InBatch, 1), &dataset, &mut second, &Places::default(), None).unwrap();
        assert_eq!(first.epochs.iter().map(|e| &e.columns).collect::<Vec<_>>(), second.epochs.iter().map(|e| &e.columns).collect::<Vec<_>>());
    }

    #[test]
    fn full_pass_measures_in_eval_mode_in_manifest_order() {
        let _torch = exclusive();
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 64, 8);
        let mut recorded = Recorded::default();
        let spec = ExperimentSpec { epochs: 6, batch_size: 8, ..spec(Measure::FullPass, 0) };
        train_recorded(&spec, &dataset, &mut recorded, &Places::default(), None).unwrap();
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
        assert_eq!(train_recorded(&spec(Measure::InBatch, 0), &dataset, &mut recorded, &Places::default(), None).unwrap(), Ending::Cancelled);
        assert!(recorded.epochs.is_empty());
    }

    #[test]
    fn head_warmup_trains_only_the_head() {
        let _torch = exclusive();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = models::build(Arch::SmallCnn, &vs.root(), Shape { channels: 1, classes: 2, image_size: 8, drop_path: 0.0 }).unwrap();
        let mut optimizer = Optim::new(&vs, Optimizer::Sgd, &Hyper::default(), optim::decays);
        let snapshot = |vs: &nn::VarStore| -> Vec<(String, Tensor)> {
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            vars
        };
        let step = |optimizer: &mut Optim| {
            let x = model.prepare(&Tensor::randint(255, [8, 1, 8, 8], (Kind::Uint8, tch::Device::Cpu)));
            let y = Tensor::from_slice(&[0i64, 1, 0, 1, 0, 1, 0, 1]);
            optimizer.backward_step(&model.forward_t(&x, true).cross_entropy_for_logits(&y), 0.1);
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

    /// Issue 22, item 1: a frozen backbone in eval mode during warmup leaves ResNet-18's
    /// batch-norm statistics (buffers, which never take gradients) as they were and turns
    /// DeiT's drop-path off; `train` mode, and fine-tuning, do neither.
    #[test]
    fn head_warmup_runs_the_frozen_backbone_in_eval_mode() {
        let _torch = exclusive();
        tch::manual_seed(1);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let resnet = models::build(Arch::Resnet18, &vs.root(), Shape { channels: 1, classes: 2, image_size: 32, drop_path: 0.0 }).unwrap();
        let statistics = |vs: &nn::VarStore| -> Vec<(String, Tensor)> {
            let mut buffers: Vec<(String, Tensor)> =
                vs.variables().into_iter().filter(|(k, _)| k.contains("running_")).map(|(k, v)| (k, v.detach().copy())).collect();
            buffers.sort_by(|a, b| a.0.cmp(&b.0));
            buffers
        };
        let changed = |before: &[(String, Tensor)], after: &[(String, Tensor)]| before.iter().zip(after).filter(|((_, a), (_, b))| !a.equal(b)).count();
        let x = resnet.prepare(&Tensor::randint(255, [4, 1, 32, 32], (Kind::Uint8, tch::Device::Cpu)));
        set_phase(&vs, resnet.head_prefix, Phase::Warmup);
        let before = statistics(&vs);
        assert_eq!(before.len(), 2 * 20, "ResNet-18's 20 batch norms, mean and variance each");
        let logits = training_forward(&resnet, &x, Phase::Warmup, WarmupBackbone::Eval);
        assert!(logits.requires_grad(), "the head still trains");
        assert_eq!(changed(&before, &statistics(&vs)), 0, "an eval-mode warmup moved batch-norm statistics");
        let _ = training_forward(&resnet, &x, Phase::Warmup, WarmupBackbone::Train);
        assert_eq!(changed(&before, &statistics(&vs)), before.len(), "a train-mode warmup adapts every batch norm");
        set_phase(&vs, resnet.head_prefix, Phase::Finetune);
        let before = statistics(&vs);
        let _ = training_forward(&resnet, &x, Phase::Finetune, WarmupBackbone::Eval);
        assert_eq!(changed(&before, &statistics(&vs)), before.len(), "fine-tuning adapts them");

        let vs = nn::VarStore::new(tch::Device::Cpu);
        let deit = models::build(Arch::DeitSmall, &vs.root(), Shape { channels: 1, classes: 2, image_size: 32, drop_path: 0.5 }).unwrap();
        let x = deit.prepare(&Tensor::randint(255, [4, 1, 32, 32], (Kind::Uint8, tch::Device::Cpu)));
        let eval = [0, 1].map(|_| training_forward(&deit, &x, Phase::Warmup, WarmupBackbone::Eval));
        assert!(eval[0].equal(&eval[1]), "drop-path is off in an eval-mode warmup");
        let train = [0, 1].map(|_| training_forward(&deit, &x, Phase::Warmup, WarmupBackbone::Train));
        assert!(!train[0].allclose(&train[1], 1e-6, 1e-6, false), "drop-path drops in training mode");
    }

    #[test]
    fn a_resumed_run_records_what_an_uninterrupted_one_does() {
        let _torch = exclusive();
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 64, 8);
        let spec = ExperimentSpec {
            epochs: 3,
            optimizer: Optimizer::Adamw,
            lr: 0.003,
            hyper: Hyper { schedule: protocol::Schedule::Cosine, lr_warmup_epochs: 1, ..Hyper::default() },
            ..spec(Measure::InBatch, 1)
        };
        let mut whole = Recorded::default();
        train_recorded(&spec, &dataset, &mut whole, &Places::default(), None).unwrap();
        assert_eq!(whole.epochs.len(), 4);

        let places = Places { checkpoints: Some(dir.path().join("checkpoints")), cache: Some(dir.path().join("cache")) };
        let mut crashed = Recorded { fail_at_epoch: Some(3), ..Default::default() };
        let error = train_recorded(&spec, &dataset, &mut crashed, &places, None).unwrap_err();
        assert!(error.to_string().contains("the worker died"));
        assert_eq!(crashed.epochs.len(), 2);
        assert_eq!(Checkpoints::new(dir.path().join("checkpoints")).latest(&spec), Some(2));

        let mut resumed = Recorded::default();
        train_recorded(&spec, &dataset, &mut resumed, &places, None).unwrap();
        let epochs: Vec<u32> = resumed.epochs.iter().map(|e| e.metrics.epoch).collect();
        assert_eq!(epochs, vec![3, 4], "resumes after the last checkpoint");
        let joined: Vec<&EpochUpload> = crashed.epochs.iter().chain(&resumed.epochs).collect();
        for (a, b) in whole.epochs.iter().zip(joined) {
            assert_eq!(a.columns, b.columns, "epoch {} differs", a.metrics.epoch);
            assert_eq!(a.metrics.lr, b.metrics.lr);
        }
        // Another spec does not pick up this run's checkpoint.
        let other = ExperimentSpec { seed: 4, ..spec.clone() };
        assert_eq!(Checkpoints::new(dir.path().join("checkpoints")).latest(&other), None);
    }

    /// Issue 18, item 4: the next epoch trains while the last one is stored (a slow server
    /// no longer stops training), and the checkpoint of an epoch is written only after it is
    /// stored.
    #[test]
    fn the_next_epoch_trains_while_the_last_is_stored_and_checkpoints_follow_the_stores() {
        let _torch = exclusive();
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 64, 8);
        let spec = ExperimentSpec { epochs: 3, ..spec(Measure::InBatch, 1) };
        let checkpoints = dir.path().join("checkpoints");
        let places = Places { checkpoints: Some(checkpoints.clone()), cache: None };
        let delay = std::time::Duration::from_millis(600);
        let mut recorded = Recorded { store_delay: delay, probe: Some((checkpoints.clone(), spec.clone())), ..Default::default() };
        train_recorded(&spec, &dataset, &mut recorded, &places, None).unwrap();
        let stores = recorded.stores.lock().unwrap().clone();
        assert_eq!(stores.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        for &(epoch, start, end, checkpoint) in &stores {
            assert_eq!(checkpoint, epoch.checked_sub(1).filter(|&e| e > 0), "the checkpoint in force when epoch {epoch} was stored");
            let trained_meanwhile = recorded.beats_at.iter().any(|&(e, at)| e == epoch + 1 && at > start && at < end);
            if epoch < 4 {
                assert!(trained_meanwhile, "no heartbeat of epoch {} while epoch {epoch} was being stored", epoch + 1);
            }
        }
        assert_eq!(Checkpoints::new(&checkpoints).latest(&spec), Some(4));
    }

    /// A subset schedule: every sample is still measured every epoch (full pass), each
    /// fine-tuning epoch uploads exactly the budget's samples as shown, the head warmup shows
    /// all; and a run resumed from a checkpoint (the schedule's state with it) shows and
    /// records what an uninterrupted one does.
    #[test]
    fn a_subset_schedule_records_every_sample_and_resumes_with_its_state() {
        let _torch = exclusive();
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 64, 8);
        let spec = ExperimentSpec {
            epochs: 3,
            sampling: protocol::Sampling { budget: 0.25, plan: protocol::Plan::Rbf { nu: 0.9, kernel: protocol::RbfKernel::Gaussian, due_only: false } },
            ..spec(Measure::FullPass, 1)
        };
        let mut whole = Recorded::default();
        train_recorded(&spec, &dataset, &mut whole, &Places::default(), None).unwrap();
        assert_eq!(whole.epochs.len(), 4);
        for upload in &whole.epochs {
            upload.columns.check_lengths(48).unwrap();
            let shown = upload.shown.as_ref().map(|bits| protocol::pack::unpack_bits(bits, 48).unwrap());
            match upload.metrics.phase {
                Phase::Warmup => assert_eq!(shown, None, "the head warmup shows every sample"),
                Phase::Finetune => assert_eq!(shown.unwrap().iter().filter(|&&b| b).count(), 12, "round(0.25 * 48)"),
            }
        }
        let places = Places { checkpoints: Some(dir.path().join("checkpoints")), cache: None };
        let mut crashed = Recorded { fail_at_epoch: Some(4), ..Default::default() };
        assert!(train_recorded(&spec, &dataset, &mut crashed, &places, None).is_err());
        let mut resumed = Recorded::default();
        train_recorded(&spec, &dataset, &mut resumed, &places, None).unwrap();
        assert_eq!(resumed.epochs.iter().map(|e| e.metrics.epoch).collect::<Vec<_>>(), vec![4]);
        let joined: Vec<&EpochUpload> = crashed.epochs.iter().chain(&resumed.epochs).collect();
        for (a, b) in whole.epochs.iter().zip(joined) {
            assert_eq!((&a.columns, &a.shown), (&b.columns, &b.shown), "epoch {} differs", a.metrics.epoch);
        }
        // A schedule that needs a source run refuses to start without its values.
        let pruned = ExperimentSpec {
            sampling: protocol::Sampling {
                budget: 0.5,
                plan: protocol::Plan::Prune {
                    source_run: protocol::SourceRuns::one(9),
                    score: protocol::SampleScore::ForgettingEvents,
                    keep: protocol::Keep::Top,
                },
            },
            ..spec.clone()
        };
        let error = train_recorded(&pruned, &dataset, &mut Recorded::default(), &Places::default(), None).unwrap_err();
        assert!(error.to_string().contains("needs per-sample values of run #9"), "{error}");
    }

    /// in_batch records equal the measures computed sample by sample, in f64, from a forward
    /// pass of the same batch before the optimizer step (one batch per epoch, so the records of
    /// epoch 1 come from that pass; no augmentation, so the pass can be repeated here).
    #[test]
    fn in_batch_records_equal_a_separate_per_sample_computation() {
        let _torch = exclusive();
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 40, 8);
        let spec = ExperimentSpec {
            arch: Arch::Resnet18,
            epochs: 1,
            batch_size: 32,
            train_subset: Some(32),
            hyper: Hyper { augment: Augment::None, ..Hyper::default() },
            ..spec(Measure::InBatch, 0)
        };
        let mut recorded = Recorded::default();
        train_recorded(&spec, &dataset, &mut recorded, &Places::default(), None).unwrap();
        let columns = &recorded.epochs[0].columns;

        tch::manual_seed(spec.seed as i64);
        let split = load_split(&dataset, Split::Train, spec.train_subset, (spec.image_size, spec.preprocess), tch::Device::Cpu, None).unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = models::build(Arch::Resnet18, &vs.root(), Shape { channels: 1, classes: 2, image_size: 8, drop_path: 0.0 }).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(epoch_seed(spec.seed, 1));
        let mut order: Vec<i64> = (0..32).collect();
        order.shuffle(&mut rng);
        let index = Tensor::from_slice(&order);
        let logits = tch::no_grad(|| model.forward_t(&model.prepare(&split.images.index_select(0, &index)), true));
        let logits: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&logits.to_kind(Kind::Double)).unwrap();
        for (row, &position) in order.iter().enumerate() {
            let z = &logits[row];
            let label = split.manifest[position as usize].label as usize;
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = z.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
            let loss = log_sum - z[label];
            let p_true = (-loss).exp();
            let predicted = (0..z.len()).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap();
            let p = position as usize;
            assert!((f64::from(columns.loss[p]) - loss).abs() < 1e-4, "sample {p}: loss {} vs {loss}", columns.loss[p]);
            assert!((f64::from(columns.p_true[p]) - p_true).abs() < 1e-5, "sample {p}: p_true");
            assert_eq!(columns.predicted[p] as usize, predicted, "sample {p}: prediction");
            assert_eq!(columns.correct[p] == 1, predicted == label, "sample {p}: correctness");
        }
    }

    #[test]
    fn random_resized_crop_keeps_shape_and_crops_inside_the_image() {
        let _torch = exclusive();
        // A constant image stays constant under any crop, flip and resize.
        let images = Tensor::full([16, 3, 12, 12], 0.7, (Kind::Float, tch::Device::Cpu));
        let out = random_resized_crop_flip(&images, 12);
        assert_eq!(out.size(), vec![16, 3, 12, 12]);
        assert!((out - 0.7).abs().max().double_value(&[]) < 1e-6);
        // A horizontal ramp: crops see sub-ranges of it, flips reverse it, and no sample is
        // the identity on every pixel.
        let ramp = Tensor::arange(12, (Kind::Float, tch::Device::Cpu)).view([1, 1, 1, 12]).expand([64, 1, 12, 12], false).contiguous();
        let out = random_resized_crop_flip(&ramp, 12);
        assert!(out.min().double_value(&[]) >= -1e-4 && out.max().double_value(&[]) <= 11.0 + 1e-4);
        let slope = (out.select(3, 11) - out.select(3, 0)).mean_dim(Some([1, 2].as_slice()), false, Kind::Float);
        let slopes = Vec::<f64>::try_from(&slope).unwrap();
        assert!(slopes.iter().any(|&s| s < 0.0) && slopes.iter().any(|&s| s > 0.0), "flips happen: {slopes:?}");
    }

    #[test]
    fn imagenet_preprocessing_crops_in_training_and_centres_in_evaluation() {
        let _torch = exclusive();
        // Stored at L = 16 for an input of 14 (14 * 256 / 224 = 16): every pixel tells its place.
        let stored = Tensor::arange(2 * 16 * 16, (Kind::Int64, tch::Device::Cpu)).remainder(251).to_kind(Kind::Uint8).view([2, 1, 16, 16]);
        let split = DeviceSplit { images: stored.shallow_clone(), input: 14, labels: Tensor::from_slice(&[0i64, 1]), manifest: vec![] };
        // Evaluation: the centre 14 x 14, one pixel in from every side (CenterCrop's offset).
        let seen = split.eval_images(0, 2);
        assert_eq!(seen.size(), vec![2, 1, 14, 14]);
        assert!(seen.equal(&stored.narrow(2, 1, 14).narrow(3, 1, 14)));
        assert!(crate::data::centre(&Tensor::zeros([1, 1, 37, 37], (Kind::Float, tch::Device::Cpu)), 32).size() == vec![1, 1, 32, 32]);
        // Training: every augmentation gives the model its 14 x 14 input; `none` is the
        // evaluation crop, `flip` that crop or its mirror, `crop_flip` a crop of the whole image.
        let floats = stored.to_kind(Kind::Float);
        let centre = floats.narrow(2, 1, 14).narrow(3, 1, 14);
        assert!(augment(&floats, Augment::None, 14).equal(&centre));
        let flipped = augment(&floats, Augment::Flip, 14);
        assert_eq!(flipped.size(), vec![2, 1, 14, 14]);
        for i in 0..2 {
            let (out, c) = (flipped.get(i), centre.get(i));
            assert!(out.equal(&c) || out.equal(&c.flip([2])), "sample {i} is the centre crop or its mirror");
        }
        let many = floats.get(0).unsqueeze(0).expand([64, 1, 16, 16], false).contiguous();
        let cropped = augment(&many, Augment::CropFlip, 14);
        assert_eq!(cropped.size(), vec![64, 1, 14, 14]);
        assert!(cropped.min().double_value(&[]) >= -1e-3 && cropped.max().double_value(&[]) <= 250.0 + 1e-3);
        // Through a run: the split is decoded at the stored size, and training and its
        // records run at the input size.
        let dir = tempfile::tempdir().unwrap();
        let dataset = synthetic_dataset(dir.path(), 32, 8);
        let loaded = load_split(&dataset, Split::Train, Some(16), (8, Preprocess::Imagenet), tch::Device::Cpu, None).unwrap();
        assert_eq!((loaded.images.size()[2], loaded.input), (9, 8));
        let spec =
            ExperimentSpec { preprocess: Preprocess::Imagenet, hyper: Hyper { augment: Augment::CropFlip, ..Hyper::default() }, ..spec(Measure::FullPass, 1) };
        let mut recorded = Recorded::default();
        train_recorded(&spec, &dataset, &mut recorded, &Places::default(), None).unwrap();
        assert_eq!(recorded.epochs.len(), 3);
        assert!(recorded.epochs.iter().all(|e| e.columns.loss.iter().all(|l| l.is_finite())));
    }

    #[test]
    fn loss_scaling_unscales_and_skips_overflowing_steps() {
        let _torch = exclusive();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[3, 2], nn::Init::Const(1.0));
        let mut plain = Optim::new(&vs, Optimizer::Sgd, &Hyper { momentum: 0.0, weight_decay: 0.0, ..Hyper::default() }, optim::decays);
        let x = Tensor::from_slice(&[1.0f32, 2.0]).view([2, 1]);
        let mut scaler = LossScaler::default();
        assert!(scaler.backward_step(&mut plain, &w.matmul(&x).sum(Kind::Float), 0.1));
        // d/dw sum(w x) = x^T per row: w = 1 - 0.1 * [1, 2].
        let expected = Tensor::from_slice(&[0.9f32, 0.8, 0.9, 0.8, 0.9, 0.8]).view([3, 2]);
        assert!(w.allclose(&expected, 1e-6, 1e-6, false));
        let scale = scaler.scale;
        assert!(!scaler.backward_step(&mut plain, &(w.matmul(&x).sum(Kind::Float) * f64::INFINITY), 0.1));
        assert_eq!(scaler.scale, scale / 2.0);
        assert!(w.allclose(&expected, 1e-6, 1e-6, false), "an overflowing step is skipped");
    }

    #[test]
    fn class_means_average_each_class_s_embeddings() {
        let _torch = exclusive();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = models::build(Arch::SmallCnn, &vs.root(), Shape { channels: 1, classes: 3, image_size: 8, drop_path: 0.0 }).unwrap();
        let images = Tensor::randint(255, [5, 1, 8, 8], (Kind::Uint8, tch::Device::Cpu));
        let labels = Tensor::from_slice(&[2i64, 0, 2, 2, 0]);
        let split = DeviceSplit { images: images.shallow_clone(), input: 8, labels, manifest: Vec::new() };
        let means = class_means(&model, &split, 3).unwrap();
        assert_eq!(means.counts, vec![2, 0, 3]);
        let features = tch::no_grad(|| model.features.forward_t(&model.prepare(&images), false));
        let expected_2 = (features.get(0) + features.get(2) + features.get(3)) / 3.0;
        let got_2 = Tensor::from_slice(&means.means[2 * 128..3 * 128]);
        assert!((got_2 - expected_2).abs().max().double_value(&[]) < 1e-5);
        assert!(means.means[128..256].iter().all(|&v| v == 0.0), "a class without samples has zeros");
    }
}
