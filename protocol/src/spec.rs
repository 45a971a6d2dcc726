//! A run's specification: what to train, on what, and how to record it.
//!
//! Parse, don't validate: a [`RunRequest`] (JSON from the API, or the launch form's strings)
//! becomes an [`ExperimentSpec`] only through [`ExperimentSpec::parse`], which checks every
//! field and reports every problem at once, one message per field, saying what to fix.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sampling::{Sampling, check_against_spec, parse_sampling};
use crate::views::DatasetInfo;

/// Limits that keep a typo from queueing a job that would run for a year.
pub const MAX_EPOCHS: u64 = 1000;
pub const MAX_BATCH_SIZE: u64 = 65_536;
pub const MAX_LR: f64 = 10.0;
pub const MIN_IMAGE_SIZE: u64 = 8;
pub const MAX_IMAGE_SIZE: u64 = 1024;

/// A request to launch a run, as it arrives. Every field is optional here so that a missing
/// or mistyped one becomes a message about that field rather than a generic parse failure.
/// Numbers may also arrive as strings (the HTML form sends nothing else). Unknown fields are
/// refused: a misspelt `learning_rate` must not silently fall back to the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub dataset: Option<Value>,
    pub arch: Option<Value>,
    pub epochs: Option<Value>,
    pub warmup_epochs: Option<Value>,
    /// How the frozen backbone runs during head warmup: `eval` (default) or `train`.
    pub warmup_backbone: Option<Value>,
    pub batch_size: Option<Value>,
    pub lr: Option<Value>,
    pub optimizer: Option<Value>,
    pub seed: Option<Value>,
    pub train_subset: Option<Value>,
    pub val_subset: Option<Value>,
    pub image_size: Option<Value>,
    /// How images become the network's input: `resize_crop` (default) or `imagenet`.
    pub preprocess: Option<Value>,
    pub measure: Option<Value>,
    pub weights: Option<Value>,
    pub device: Option<Value>,
    pub momentum: Option<Value>,
    pub nesterov: Option<Value>,
    pub weight_decay: Option<Value>,
    pub schedule: Option<Value>,
    pub lr_warmup_epochs: Option<Value>,
    pub step_epochs: Option<Value>,
    pub step_gamma: Option<Value>,
    pub label_smoothing: Option<Value>,
    pub drop_path: Option<Value>,
    pub augment: Option<Value>,
    pub mixed_precision: Option<Value>,
    /// The training schedule (`crate::sampling`): a kind (`"random"`) or an object
    /// (`{"kind": "leitner", "budget": 0.5, "decks": 5}`); absent means `full`.
    pub sampling: Option<Value>,
    /// How never-learned samples enter every ranking of the run's statistics and every
    /// schedule that reads them: `max` (default, Toneva et al.: the most forgotten) or `exclude`.
    pub never_learned: Option<Value>,
    /// Which epochs the run's per-sample statistics cover (`dynamics::Window`): `fine_tuning`
    /// (default: after the head warm-up) or `all`.
    pub window: Option<Value>,
    /// The retention-decay definition the run's tau, R² and AIC fit (`dynamics::Retention`):
    /// `a` (default), `a_floor`, `a_weighted` or `b`.
    pub retention: Option<Value>,
    /// The epoch (1-based, warm-up included) whose EL2N is the run's `el2n` score; absent:
    /// 10 % into the statistics' window (Paul et al. score epoch 20 of 200).
    pub el2n_epoch: Option<Value>,
    /// Queue order, not part of the experiment: higher runs first (-100..=100, default 0).
    pub priority: Option<Value>,
    /// Who launched the run (letters, digits, `.`, `_`, `@`, `-`; at most 64).
    pub owner: Option<Value>,
    /// Labels for finding the run again: a list of strings, or one string separated by commas
    /// (letters, digits, `.`, `_`, `-`, `:`; at most 32 characters each, 16 tags).
    pub tags: Option<Value>,
    /// A name to find the run by (1 to 80 characters); default [`ExperimentSpec::default_name`].
    pub name: Option<Value>,
    /// Free notes on the run (at most 4,000 characters).
    pub notes: Option<Value>,
}

/// How a run is queued and found, apart from the experiment itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Queueing {
    pub priority: i64,
    pub owner: Option<String>,
    /// Sorted, without duplicates.
    pub tags: Vec<String>,
    /// `None`: the default name.
    pub name: Option<String>,
    pub notes: String,
}

/// The longest run name and notes accepted.
pub const MAX_RUN_NAME: usize = 80;
pub const MAX_RUN_NOTES: usize = 4000;

/// Checks a run name: trimmed, 1 to 80 characters, no control characters. `None` for an
/// empty one (the default).
pub fn parse_run_name(value: &Value) -> Result<Option<String>, String> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) => text.trim(),
        other => return Err(format!("name must be a string, got {other}")),
    };
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > MAX_RUN_NAME || text.chars().any(char::is_control) {
        return Err(format!("name must be 1 to {MAX_RUN_NAME} characters without line breaks or tabs, got {} characters", text.chars().count()));
    }
    Ok(Some(text.to_owned()))
}

/// Checks run notes: at most 4,000 characters, trimmed at the ends; line breaks allowed.
pub fn parse_run_notes(value: &Value) -> Result<String, String> {
    let text = match value {
        Value::Null => return Ok(String::new()),
        Value::String(text) => text.trim(),
        other => return Err(format!("notes must be a string, got {other}")),
    };
    if text.chars().count() > MAX_RUN_NOTES {
        return Err(format!("notes must be at most {MAX_RUN_NOTES} characters, got {}", text.chars().count()));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err("notes must be text (no control characters other than line breaks and tabs)".into());
    }
    Ok(text.to_owned())
}

/// Splits and checks the `tags` field; the tags sorted, without duplicates.
pub fn parse_tags(value: &Value) -> Result<Vec<String>, String> {
    let words: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::String(text) => text.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(|t| t.trim().to_owned()).ok_or_else(|| format!("tags must be strings, got {item}")))
            .collect::<Result<_, _>>()?,
        other => return Err(format!("tags must be a list of strings or one string separated by commas, got {other}")),
    };
    if let Some(bad) =
        words.iter().find(|t| t.is_empty() || t.len() > 32 || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
    {
        return Err(format!("each tag must be 1 to 32 letters, digits, '.', '_', '-' or ':', got {bad:?}"));
    }
    let mut tags = words;
    tags.sort();
    tags.dedup();
    if tags.len() > 16 {
        return Err(format!("at most 16 tags, got {}", tags.len()));
    }
    Ok(tags)
}

impl RunRequest {
    /// The queue fields (priority, owner, tags), or a message per invalid field.
    pub fn queueing(&self) -> Result<Queueing, FieldErrors> {
        let mut errors = FieldErrors::default();
        let priority = match &self.priority {
            None | Some(Value::Null) => 0,
            Some(value) => match value.as_i64().or_else(|| value.as_str().and_then(|s| s.trim().parse().ok())) {
                Some(p) if (-100..=100).contains(&p) => p,
                _ => {
                    errors.add("priority", format!("priority must be a whole number from -100 to 100, got {value}"));
                    0
                }
            },
        };
        let owner = match &self.owner {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) if name.trim().is_empty() => None,
            Some(Value::String(name)) if name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')) => {
                Some(name.clone())
            }
            Some(value) => {
                errors.add("owner", format!("owner must be up to 64 letters, digits, '.', '_', '@' or '-', got {value}"));
                None
            }
        };
        let tags = errors.take("tags", self.tags.as_ref().map(parse_tags).transpose()).unwrap_or_default();
        let name = errors.take("name", self.name.as_ref().map(parse_run_name).transpose()).flatten();
        let notes = errors.take("notes", self.notes.as_ref().map(parse_run_notes).transpose()).unwrap_or_default();
        if errors.0.is_empty() { Ok(Queueing { priority, owner, tags, name, notes }) } else { Err(errors) }
    }
}

/// A validated run specification. Stored with the run (as JSON) and sent to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    /// Registered dataset name, e.g. `fashion-mnist`.
    pub dataset: String,
    pub arch: Arch,
    /// Full fine-tuning epochs, after the head warmup.
    pub epochs: u32,
    /// Head-warmup epochs (backbone frozen) before fine-tuning; recorded like any other epoch.
    pub warmup_epochs: u32,
    /// How the frozen backbone runs during head warmup. Absent in specs stored before it
    /// existed, whose backbones ran in training mode: those read as `train`.
    #[serde(default = "legacy_warmup_backbone")]
    pub warmup_backbone: WarmupBackbone,
    pub batch_size: u32,
    pub lr: f64,
    pub optimizer: Optimizer,
    pub seed: u64,
    /// Number of training samples to use; `None` means the whole training split. The subset
    /// depends only on the data (the samples with the smallest content keys), never on the
    /// seed, so runs with different seeds see the same samples.
    pub train_subset: Option<u32>,
    /// Number of validation samples to evaluate each epoch; `None` means the whole split.
    pub val_subset: Option<u32>,
    /// Side of the square images the model sees.
    pub image_size: u32,
    /// How the dataset's images become the model's `image_size` input, in training and in
    /// evaluation. Absent in specs stored before it existed: `resize_crop`, what they did.
    #[serde(default)]
    pub preprocess: Preprocess,
    pub measure: Measure,
    /// Pretrained weights, a path under a data root.
    pub weights: Option<String>,
    pub device: Device,
    /// How the optimizer is tuned, the learning-rate schedule, and the regularisers.
    /// Absent in specs stored before they existed; those read as the defaults.
    #[serde(flatten, default)]
    pub hyper: Hyper,
    /// Which samples each fine-tuning epoch shows, at what budget. Absent in specs stored
    /// before schedules existed; those read as `full`.
    #[serde(default)]
    pub sampling: Sampling,
    /// How never-learned samples are ranked (`dynamics::scores`): by this run's schedule when
    /// it reads a source run's statistics, and wherever this run's statistics are ranked.
    /// Absent in specs stored before it existed; those read as `max`.
    #[serde(default)]
    pub never_learned: NeverLearnedPolicy,
    /// Which epochs the run's per-sample statistics cover. Absent in specs stored before it
    /// existed, whose statistics covered every epoch: those read as `all`.
    #[serde(default = "legacy_window")]
    pub window: Window,
    /// The retention definition of the run's decay statistics. Absent in older specs: `a`.
    #[serde(default)]
    pub retention: Retention,
    /// The epoch whose EL2N is the run's `el2n` score (`None`: 10 % into the window).
    #[serde(default)]
    pub el2n_epoch: Option<u32>,
}

pub use dynamics::{AnalysisSettings, NeverLearnedPolicy, Retention, Window};

fn legacy_warmup_backbone() -> WarmupBackbone {
    WarmupBackbone::Train
}

fn legacy_window() -> Window {
    AnalysisSettings::LEGACY.window
}

/// Optimizer settings, learning-rate schedule and regularisation of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hyper {
    /// SGD momentum (ignored by AdamW, which uses betas 0.9 and 0.999).
    pub momentum: f64,
    pub nesterov: bool,
    /// Decoupled for AdamW, L2 for SGD; applied to weight matrices and kernels only (not to
    /// biases, normalisation parameters, position embeddings or the class token).
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Linear learning-rate warmup at the start of fine-tuning, in epochs (may be 0).
    pub lr_warmup_epochs: u32,
    /// `step` schedule: multiply the rate by `step_gamma` every `step_epochs` fine-tuning epochs.
    pub step_epochs: u32,
    pub step_gamma: f64,
    /// Label smoothing of the training loss (the recorded per-sample loss is plain cross-entropy).
    pub label_smoothing: f64,
    /// Stochastic depth rate of the last block (DeiT; rising linearly from 0 at the first).
    pub drop_path: f64,
    pub augment: Augment,
    /// Float16 autocast with loss scaling, on CUDA only (ignored on the CPU).
    pub mixed_precision: bool,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            schedule: Schedule::Constant,
            lr_warmup_epochs: 0,
            step_epochs: 30,
            step_gamma: 0.1,
            label_smoothing: 0.0,
            drop_path: 0.0,
            augment: Augment::Flip,
            mixed_precision: true,
        }
    }
}

impl ExperimentSpec {
    /// The run's name when it was given none: architecture, dataset and seed, e.g.
    /// `resnet18-fashion-mnist-s3`, and the sample selection when it is not the full set
    /// (`...-s3-rbf`).
    pub fn default_name(&self) -> String {
        let mut name = format!("{}-{}-s{}", self.arch.as_str(), self.dataset, self.seed);
        let kind = self.sampling.plan.kind();
        if kind != "full" {
            name.push('-');
            name.push_str(kind);
        }
        name.chars().take(MAX_RUN_NAME).collect()
    }

    /// Total recorded epochs: head warmup, then fine-tuning.
    pub fn total_epochs(&self) -> u32 {
        self.warmup_epochs + self.epochs
    }

    /// The analysis choices the run's statistics are computed and ranked under.
    pub fn analysis(&self) -> AnalysisSettings {
        AnalysisSettings { window: self.window, retention: self.retention, never_learned: self.never_learned, el2n_epoch: self.el2n_epoch }
    }
}

macro_rules! choice_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
            fn names() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}
pub(crate) use choice_enum;

choice_enum!(
    /// Model architecture.
    Arch { SmallCnn => "small_cnn", Resnet18 => "resnet18", DeitSmall => "deit_small" }
);
choice_enum!(
    /// Optimizer: SGD with momentum 0.9, or AdamW.
    Optimizer { Sgd => "sgd", Adamw => "adamw" }
);
choice_enum!(
    /// How per-sample records are taken. `in_batch`: from the training forward pass, before
    /// the optimizer step (Toneva et al.; free). `full_pass`: an eval-mode pass over the whole
    /// training set after each epoch, without augmentation.
    Measure { InBatch => "in_batch", FullPass => "full_pass" }
);
choice_enum!(
    /// How the frozen backbone runs during head warmup (issue 22). `eval`: in evaluation mode,
    /// as a frozen feature extractor is (batch-norm running statistics fixed, no dropout or
    /// drop-path), so ResNet-18 and DeiT-Small get the same warmup; the default. `train`: in
    /// training mode (batch-norm statistics keep adapting to the new data; drop-path and
    /// dropout stay on), what runs before this setting existed did.
    WarmupBackbone { Eval => "eval", Train => "train" }
);
choice_enum!(
    /// Learning-rate schedule over the fine-tuning epochs (the head warmup runs at the base rate).
    Schedule { Constant => "constant", Cosine => "cosine", Step => "step" }
);
choice_enum!(
    /// Training-time augmentation, on the device. `crop_flip`: random resized crop (scale
    /// 0.08-1, aspect 3/4-4/3, as torchvision) and horizontal flip. Evaluation never augments.
    Augment { None => "none", Flip => "flip", CropFlip => "crop_flip" }
);
choice_enum!(
    /// How the dataset's images become the model's `S x S` input (S = `image_size`).
    /// `resize_crop`: the shorter side resized to S and the centre S x S kept, once, when the
    /// dataset is decoded; training augments that square (`augment`), evaluation sees it as
    /// it is. `imagenet`: torchvision's ImageNet recipe. The images are decoded at
    /// `L = S * 256 / 224` (256 for 224: shorter side to L, centre L x L); evaluation
    /// (validation, `full_pass`, the loss after head warm-up, class means) sees the centre
    /// S x S of that, which is `Resize(L)` then `CenterCrop(S)`; training with `crop_flip`
    /// draws `RandomResizedCrop(S)` from the L x L image and flips it, with `flip` or `none`
    /// takes the centre S x S (and flips it). The crop is drawn from the stored L x L square,
    /// not the whole non-square original: the one difference from torchvision.
    Preprocess { ResizeCrop => "resize_crop", Imagenet => "imagenet" }
);
impl Default for Preprocess {
    fn default() -> Self {
        Preprocess::ResizeCrop
    }
}
impl Preprocess {
    /// The side the images are decoded and kept at for a model input of `image_size`.
    pub fn stored_size(self, image_size: u32) -> u32 {
        match self {
            Preprocess::ResizeCrop => image_size,
            Preprocess::Imagenet => (image_size * 256 + 112) / 224,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Preprocess::ResizeCrop => "resize and centre-crop once at load",
            Preprocess::Imagenet => "ImageNet (torchvision): random resized crop in training, resize to 256/224 and centre-crop in evaluation",
        }
    }
}
choice_enum!(
    /// Where to train. `auto` takes CUDA when the worker has it, else the CPU.
    Device { Auto => "auto", Cpu => "cpu", Cuda => "cuda" }
);

impl WarmupBackbone {
    pub fn label(self) -> &'static str {
        match self {
            WarmupBackbone::Eval => "eval mode (batch-norm statistics fixed, no dropout or drop-path)",
            WarmupBackbone::Train => "training mode (batch-norm statistics adapt)",
        }
    }
}

impl Arch {
    pub fn label(self) -> &'static str {
        match self {
            Arch::SmallCnn => "Small CNN",
            Arch::Resnet18 => "ResNet-18",
            Arch::DeitSmall => "DeiT-Small",
        }
    }
}

/// One message per offending field, keyed by the field's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert_with(|| message.into());
    }
    /// The checked value, or the default with the check's message kept under `field`.
    pub fn take<T: Default>(&mut self, field: &str, checked: Result<T, String>) -> T {
        checked.unwrap_or_else(|message| {
            self.add(field, message);
            T::default()
        })
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for FieldErrors {}

impl ExperimentSpec {
    /// Checks every field of `request` against the registered `datasets` and returns the
    /// spec, or every problem found (one message per field).
    pub fn parse(request: &RunRequest, datasets: &[DatasetInfo]) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut field = Fields { errors: &mut errors };

        let dataset_name = field.text("dataset", &request.dataset);
        let dataset = match &dataset_name {
            Some(name) => match datasets.iter().find(|d| &d.name == name) {
                Some(found) => Some(found),
                None => {
                    let known: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
                    field.errors.add("dataset", format!("unknown dataset {name:?}; registered: {}", list_or_none(&known)));
                    None
                }
            },
            None => {
                field.errors.add("dataset", "is required (a registered dataset name, e.g. fashion-mnist)");
                None
            }
        };

        let arch = field.choice("arch", &request.arch, Arch::parse, Arch::names);
        if request.arch.as_ref().is_none_or(is_blank) {
            field.errors.add("arch", format!("is required (one of {})", Arch::names()));
        }

        let epochs = field.whole("epochs", &request.epochs, 1, MAX_EPOCHS);
        if request.epochs.as_ref().is_none_or(is_blank) {
            field.errors.add("epochs", format!("is required (a whole number from 1 to {MAX_EPOCHS})"));
        }
        let warmup_epochs = field.whole("warmup_epochs", &request.warmup_epochs, 0, MAX_EPOCHS).unwrap_or(0);
        let batch_size = field.whole("batch_size", &request.batch_size, 1, MAX_BATCH_SIZE).unwrap_or(128);
        let lr = field.positive("lr", &request.lr, MAX_LR).unwrap_or(0.01);
        let optimizer = field.choice("optimizer", &request.optimizer, Optimizer::parse, Optimizer::names).unwrap_or(Optimizer::Sgd);
        let seed = field.whole("seed", &request.seed, 0, i64::MAX as u64).unwrap_or(0);
        let sampling = parse_sampling(&mut field, &request.sampling);
        // A schedule that leaves samples out of an epoch cannot record them from the training
        // pass: it measures every sample in a full pass, and says so if asked otherwise.
        let measure_default = if sampling.shows_subset() { Measure::FullPass } else { Measure::InBatch };
        let measure = field.choice("measure", &request.measure, Measure::parse, Measure::names).unwrap_or(measure_default);
        if sampling.shows_subset() && measure == Measure::InBatch {
            field
                .errors
                .add("measure", format!("in_batch records only the samples an epoch shows; {sampling} leaves some out, so use full_pass (the default for it)"));
        }
        check_against_spec(&sampling, warmup_epochs, field.errors);
        let device = field.choice("device", &request.device, Device::parse, Device::names).unwrap_or(Device::Auto);
        let hyper = parse_hyper(&mut field, request, optimizer, arch);

        let train_subset = field.whole("train_subset", &request.train_subset, 1, u32::MAX as u64);
        let val_subset = field.whole("val_subset", &request.val_subset, 1, u32::MAX as u64);
        if let Some(dataset) = dataset {
            if let Some(n) = train_subset.filter(|&n| n > dataset.train_size) {
                field.errors.add("train_subset", format!("{n} is larger than {}'s {} training samples", dataset.name, dataset.train_size));
            }
            if let Some(n) = val_subset.filter(|&n| n > dataset.val_size) {
                field.errors.add("val_subset", format!("{n} is larger than {}'s {} validation samples", dataset.name, dataset.val_size));
            }
        }
        let native_size = dataset.map_or(32, |d| u64::from(d.image_height.max(d.image_width)));
        let image_size = field.whole("image_size", &request.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE).unwrap_or(native_size);
        if native_size == 0 && request.image_size.as_ref().is_none_or(is_blank) {
            field.errors.add(
                "image_size",
                format!(
                    "is required for {}: its images differ in size (224 for ImageNet-pretrained models)",
                    dataset_name.as_deref().unwrap_or("this dataset")
                ),
            );
        }
        if arch == Some(Arch::DeitSmall) && image_size % PATCH != 0 {
            field.errors.add(
                "image_size",
                format!("deit_small needs a multiple of its {PATCH}-pixel patch, got {image_size}; try {}", (image_size / PATCH).max(1) * PATCH),
            );
        }
        let weights = field.text("weights", &request.weights);
        if let Some(path) = &weights {
            if !path.ends_with(".safetensors") {
                field.errors.add("weights", format!("{path} is not a .safetensors file; convert the checkpoint with safetensors.torch.save_file"));
            }
        }

        let preprocess = field.choice("preprocess", &request.preprocess, Preprocess::parse, Preprocess::names).unwrap_or_default();
        let warmup_backbone =
            field.choice("warmup_backbone", &request.warmup_backbone, WarmupBackbone::parse, WarmupBackbone::names).unwrap_or(WarmupBackbone::Eval);
        let never_learned = field.choice("never_learned", &request.never_learned, NeverLearnedPolicy::parse, || "max, exclude".into()).unwrap_or_default();
        let window = field.choice("window", &request.window, Window::parse, || "fine_tuning, all".into()).unwrap_or_default();
        let retention = field.choice("retention", &request.retention, Retention::parse, || "a, a_floor, a_weighted, b".into()).unwrap_or_default();
        let total = epochs.unwrap_or(1) + warmup_epochs;
        let el2n_epoch = field.whole("el2n_epoch", &request.el2n_epoch, 1, total.max(1)).map(|e| e as u32);

        if !errors.is_empty() {
            return Err(errors);
        }
        // Every `None` below was reported above; errors is empty, so each is present.
        match (dataset_name, arch, epochs) {
            (Some(dataset), Some(arch), Some(epochs)) => Ok(ExperimentSpec {
                dataset,
                arch,
                epochs: epochs as u32,
                warmup_epochs: warmup_epochs as u32,
                warmup_backbone,
                batch_size: batch_size as u32,
                lr,
                optimizer,
                seed,
                train_subset: train_subset.map(|n| n as u32),
                val_subset: val_subset.map(|n| n as u32),
                image_size: image_size as u32,
                preprocess,
                measure,
                weights,
                device,
                hyper,
                sampling,
                never_learned,
                window,
                retention,
                el2n_epoch,
            }),
            _ => Err(errors),
        }
    }
}

/// DeiT-Small's patch size in pixels.
pub const PATCH: u64 = 16;

fn parse_hyper(field: &mut Fields<'_>, request: &RunRequest, optimizer: Optimizer, arch: Option<Arch>) -> Hyper {
    let defaults = Hyper::default();
    let default_decay = if optimizer == Optimizer::Adamw { 0.05 } else { defaults.weight_decay };
    let default_drop_path = if arch == Some(Arch::DeitSmall) { 0.1 } else { 0.0 };
    Hyper {
        momentum: field.fraction("momentum", &request.momentum, 0.0, 0.999).unwrap_or(defaults.momentum),
        nesterov: field.flag("nesterov", &request.nesterov).unwrap_or(defaults.nesterov),
        weight_decay: field.fraction("weight_decay", &request.weight_decay, 0.0, 1.0).unwrap_or(default_decay),
        schedule: field.choice("schedule", &request.schedule, Schedule::parse, Schedule::names).unwrap_or(defaults.schedule),
        lr_warmup_epochs: field.whole("lr_warmup_epochs", &request.lr_warmup_epochs, 0, MAX_EPOCHS).map_or(0, |n| n as u32),
        step_epochs: field.whole("step_epochs", &request.step_epochs, 1, MAX_EPOCHS).map_or(defaults.step_epochs, |n| n as u32),
        step_gamma: field.fraction("step_gamma", &request.step_gamma, 0.0, 1.0).unwrap_or(defaults.step_gamma),
        label_smoothing: field.fraction("label_smoothing", &request.label_smoothing, 0.0, 0.999).unwrap_or(0.0),
        drop_path: field.fraction("drop_path", &request.drop_path, 0.0, 0.999).unwrap_or(default_drop_path),
        augment: field.choice("augment", &request.augment, Augment::parse, Augment::names).unwrap_or(defaults.augment),
        mixed_precision: field.flag("mixed_precision", &request.mixed_precision).unwrap_or(defaults.mixed_precision),
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "none yet".to_owned() } else { names.join(", ") }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// Field readers that record a message for a present-but-invalid value and return `None`.
/// A missing or blank value is `None` without a message: the caller decides on a default.
pub(crate) struct Fields<'a> {
    pub(crate) errors: &'a mut FieldErrors,
}

impl Fields<'_> {
    pub(crate) fn present<'v>(value: &'v Option<Value>) -> Option<&'v Value> {
        value.as_ref().filter(|v| !is_blank(v))
    }

    pub(crate) fn text(&mut self, name: &str, value: &Option<Value>) -> Option<String> {
        match Self::present(value)? {
            Value::String(s) => Some(s.trim().to_owned()),
            other => {
                self.errors.add(name, format!("must be text, got {other}"));
                None
            }
        }
    }

    pub(crate) fn choice<T>(&mut self, name: &str, value: &Option<Value>, parse: fn(&str) -> Option<T>, names: fn() -> String) -> Option<T> {
        let text = self.text(name, value)?;
        let parsed = parse(&text);
        if parsed.is_none() {
            self.errors.add(name, format!("unknown value {text:?}; choose one of {}", names()));
        }
        parsed
    }

    pub(crate) fn whole(&mut self, name: &str, value: &Option<Value>, min: u64, max: u64) -> Option<u64> {
        let value = Self::present(value)?;
        let parsed = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.errors.add(name, format!("must be a whole number from {min} to {max}, got {}", shown(value)));
                None
            }
        }
    }

    /// A number in `min..=max`.
    pub(crate) fn fraction(&mut self, name: &str, value: &Option<Value>, min: f64, max: f64) -> Option<f64> {
        let value = Self::present(value)?;
        match number(value) {
            Some(x) if x.is_finite() && (min..=max).contains(&x) => Some(x),
            _ => {
                self.errors.add(name, format!("must be a number from {min} to {max}, got {}", shown(value)));
                None
            }
        }
    }

    /// `true`/`false`, or what an HTML checkbox sends (`on`); `1`/`0` also read as such.
    pub(crate) fn flag(&mut self, name: &str, value: &Option<Value>) -> Option<bool> {
        let value = Self::present(value)?;
        let parsed = match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.trim() {
                "true" | "on" | "1" | "yes" => Some(true),
                "false" | "off" | "0" | "no" => Some(false),
                _ => None,
            },
            Value::Number(n) => n.as_u64().filter(|&n| n <= 1).map(|n| n == 1),
            _ => None,
        };
        if parsed.is_none() {
            self.errors.add(name, format!("must be true or false, got {}", shown(value)));
        }
        parsed
    }

    pub(crate) fn positive(&mut self, name: &str, value: &Option<Value>, max: f64) -> Option<f64> {
        let value = Self::present(value)?;
        match number(value) {
            Some(x) if x.is_finite() && x > 0.0 && x <= max => Some(x),
            _ => {
                self.errors.add(name, format!("must be a number greater than 0 and at most {max}, got {}", shown(value)));
                None
            }
        }
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// A value as the user typed it: numbers bare (`0`, `-0.1`), other text quoted (`"many"`).
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) if s.trim().parse::<f64>().is_ok() => s.trim().to_owned(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Fashion-MNIST as registered, for the parsers' tests.
    pub(crate) fn fashion() -> Vec<DatasetInfo> {
        vec![DatasetInfo {
            name: "fashion-mnist".into(),
            format: "idx".into(),
            path: "/usr/share/datasets/fashion-mnist".into(),
            num_classes: 10,
            class_names: vec![],
            train_size: 60_000,
            val_size: 10_000,
            image_height: 28,
            image_width: 28,
            channels: 1,
            options: Default::default(),
            groups: None,
        }]
    }

    fn request(value: Value) -> RunRequest {
        serde_json::from_value(value).expect("request shape")
    }

    #[test]
    fn minimal_request_gets_documented_defaults() {
        let spec = ExperimentSpec::parse(&request(json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 3})), &fashion()).unwrap();
        assert_eq!(spec.epochs, 3);
        assert_eq!(spec.warmup_epochs, 0);
        assert_eq!(spec.image_size, 28);
        assert_eq!(spec.measure, Measure::InBatch);
        assert_eq!(spec.device, Device::Auto);
        assert_eq!(spec.train_subset, None);
    }

    #[test]
    fn analysis_settings_default_to_fine_tuning_and_a_and_old_specs_read_as_computed() {
        let spec = ExperimentSpec::parse(&request(json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 3})), &fashion()).unwrap();
        assert_eq!(
            spec.analysis(),
            AnalysisSettings { window: Window::FineTuning, retention: Retention::A, never_learned: NeverLearnedPolicy::Max, el2n_epoch: None }
        );
        let chosen = ExperimentSpec::parse(
            &request(json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 3, "window": "all", "retention": "b", "el2n_epoch": "2"})),
            &fashion(),
        )
        .unwrap();
        assert_eq!((chosen.window, chosen.retention, chosen.el2n_epoch), (Window::All, Retention::B, Some(2)));
        let errors = ExperimentSpec::parse(
            &request(json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 3, "warmup_epochs": 1, "window": "warmup", "retention": "c", "el2n_epoch": 5})),
            &fashion(),
        )
        .unwrap_err();
        assert_eq!(errors.get("el2n_epoch"), Some("must be a whole number from 1 to 4, got 5"));
        assert_eq!(errors.get("window"), Some("unknown value \"warmup\"; choose one of fine_tuning, all"));
        assert_eq!(errors.get("retention"), Some("unknown value \"c\"; choose one of a, a_floor, a_weighted, b"));
        // A spec stored before the settings existed: its statistics covered every epoch.
        let mut stored = serde_json::to_value(&spec).unwrap();
        let object = stored.as_object_mut().unwrap();
        object.remove("window");
        object.remove("retention");
        let old: ExperimentSpec = serde_json::from_value(stored).unwrap();
        assert_eq!((old.window, old.retention), (Window::All, Retention::A));
    }

    /// Issue 22, item 1: new runs warm their head up over a backbone in eval mode; a spec
    /// stored before the setting existed says what its run did (training mode).
    #[test]
    fn preprocessing_is_recorded_and_old_specs_read_as_resized_once() {
        let spec = ExperimentSpec::parse(&request(json!({"dataset": "fashion-mnist", "arch": "resnet18", "epochs": 3})), &fashion()).unwrap();
        assert_eq!(spec.preprocess, Preprocess::ResizeCrop);
        let chosen = ExperimentSpec::parse(
            &request(json!({"dataset": "fashion-mnist", "arch": "resnet18", "epochs": 3, "image_size": 224, "preprocess": "imagenet"})),
            &fashion(),
        )
        .unwrap();
        assert_eq!(chosen.preprocess, Preprocess::Imagenet);
        // torchvision's Resize(256) before CenterCrop(224); the same ratio at other sizes.
        assert_eq!(Preprocess::Imagenet.stored_size(224), 256);
        assert_eq!(Preprocess::Imagenet.stored_size(112), 128);
        assert_eq!(Preprocess::Imagenet.stored_size(32), 37);
        assert_eq!(Preprocess::ResizeCrop.stored_size(224), 224);
        let errors =
            ExperimentSpec::parse(&request(json!({"dataset": "fashion-mnist", "arch": "resnet18", "epochs": 3, "preprocess": "torchvision"})), &fashion())
                .unwrap_err();
        assert_eq!(errors.get("preprocess"), Some("unknown value \"torchvision\"; choose one of resize_crop, imagenet"));
        let mut stored = serde_json::to_value(&chosen).unwrap();
        assert_eq!(stored["preprocess"], "imagenet", "recorded with the run");
        stored.as_object_mut().unwrap().remove("preprocess");
        let old: ExperimentSpec = serde_json::from_value(stored).unwrap();
        assert_eq!(old.preprocess, Preprocess::ResizeCrop);
    }

    #[test]
    fn warmup_backbone_defaults_to_eval_and_old_specs_read_as_trained() {
        let spec =
            ExperimentSpec::parse(&request(json!({"dataset": "fashion-mnist", "arch": "resnet18", "epochs": 3, "warmup_epochs": 1})), &fashion()).unwrap();
        assert_eq!(spec.warmup_backbone, WarmupBackbone::Eval);
        let chosen =
            ExperimentSpec::parse(&request(json!({"dataset": "fashion-mnist", "arch": "resnet18", "epochs": 3, "warmup_backbone": "train"})), &fashion())
                .unwrap();
        assert_eq!(chosen.warmup_backbone, WarmupBackbone::Train);
        let errors =
            ExperimentSpec::parse(&request(json!({"dataset": "fashion-mnist", "arch": "resnet18", "epochs": 3, "warmup_backbone": "frozen"})), &fashion())
                .unwrap_err();
        assert_eq!(errors.get("warmup_backbone"), Some("unknown value \"frozen\"; choose one of eval, train"));
        let mut stored = serde_json::to_value(&spec).unwrap();
        assert_eq!(stored["warmup_backbone"], "eval", "recorded with the run");
        stored.as_object_mut().unwrap().remove("warmup_backbone");
        let old: ExperimentSpec = serde_json::from_value(stored).unwrap();
        assert_eq!(old.warmup_backbone, WarmupBackbone::Train);
    }

    #[test]
    fn form_strings_parse_like_numbers() {
        let spec = ExperimentSpec::parse(
            &request(json!({"dataset": "fashion-mnist", "arch": "resnet18", "epochs": "2", "lr": " 0.1 ", "train_subset": "256", "seed": "7", "measure": "full_pass", "weights": ""})),
            &fashion(),
        )
        .unwrap();
        assert_eq!((spec.epochs, spec.lr, spec.train_subset, spec.seed), (2, 0.1, Some(256), 7));
        assert_eq!(spec.measure, Measure::FullPass);
    }

    #[test]
    fn every_invalid_field_gets_its_own_message() {
        let errors = ExperimentSpec::parse(
            &request(json!({"dataset": "cifar-11", "arch": "vgg", "epochs": 0, "lr": -0.1, "batch_size": "lots", "measure": "sometimes"})),
            &fashion(),
        )
        .unwrap_err();
        assert_eq!(errors.get("dataset"), Some("unknown dataset \"cifar-11\"; registered: fashion-mnist"));
        assert!(errors.get("arch").unwrap().contains("choose one of small_cnn, resnet18, deit_small"));
        assert_eq!(errors.get("epochs"), Some("must be a whole number from 1 to 1000, got 0"));
        assert_eq!(errors.get("lr"), Some("must be a number greater than 0 and at most 10, got -0.1"));
        assert!(errors.get("batch_size").unwrap().contains("got \"lots\""));
        assert!(errors.get("measure").unwrap().contains("in_batch, full_pass"));
    }

    #[test]
    fn subset_larger_than_the_dataset_is_refused() {
        let errors = ExperimentSpec::parse(&request(json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 60_001})), &fashion())
            .unwrap_err();
        assert_eq!(errors.get("train_subset"), Some("60001 is larger than fashion-mnist's 60000 training samples"));
    }

    #[test]
    fn missing_required_fields_are_named() {
        let errors = ExperimentSpec::parse(&RunRequest::default(), &fashion()).unwrap_err();
        for field in ["dataset", "arch", "epochs"] {
            assert!(errors.get(field).unwrap().starts_with("is required"), "{field}: {errors}");
        }
    }

    #[test]
    fn zero_learning_rate_and_fractional_epochs_are_refused() {
        let errors = ExperimentSpec::parse(&request(json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1.5, "lr": 0})), &fashion()).unwrap_err();
        assert!(errors.get("epochs").is_some());
        assert!(errors.get("lr").is_some());
    }

    #[test]
    fn unknown_fields_are_refused_by_the_request_shape() {
        let result: Result<RunRequest, _> = serde_json::from_value(json!({"dataset": "fashion-mnist", "learning_rate": 0.1}));
        assert!(result.unwrap_err().to_string().contains("unknown field `learning_rate`"));
    }

    #[test]
    fn hyper_parameters_parse_with_arch_aware_defaults() {
        let spec = ExperimentSpec::parse(
            &request(json!({"dataset": "fashion-mnist", "arch": "deit_small", "epochs": 1, "image_size": 32, "optimizer": "adamw",
                "schedule": "cosine", "lr_warmup_epochs": "2", "nesterov": "on", "label_smoothing": 0.1, "weights": "w/deit.safetensors"})),
            &fashion(),
        )
        .unwrap();
        assert_eq!(spec.hyper.schedule, Schedule::Cosine);
        assert_eq!((spec.hyper.lr_warmup_epochs, spec.hyper.nesterov, spec.hyper.label_smoothing), (2, true, 0.1));
        assert_eq!((spec.hyper.weight_decay, spec.hyper.drop_path), (0.05, 0.1));
        assert_eq!(spec.weights.as_deref(), Some("w/deit.safetensors"));
        // Stored specs from before the hyper-parameters existed read as the defaults.
        let mut old = serde_json::to_value(&spec).unwrap();
        for key in ["momentum", "nesterov", "weight_decay", "schedule", "label_smoothing", "drop_path", "augment"] {
            old.as_object_mut().unwrap().remove(key);
        }
        let reread: ExperimentSpec = serde_json::from_value(old).unwrap();
        assert_eq!(reread.hyper.schedule, Schedule::Constant);
        assert_eq!(reread.hyper.momentum, 0.9);
    }

    #[test]
    fn bad_hyper_parameters_and_deit_sizes_are_named() {
        let errors = ExperimentSpec::parse(
            &request(json!({"dataset": "fashion-mnist", "arch": "deit_small", "epochs": 1, "image_size": 28, "momentum": 1.5,
                "nesterov": "maybe", "schedule": "linear", "weights": "w/model.pth"})),
            &fashion(),
        )
        .unwrap_err();
        assert_eq!(errors.get("image_size"), Some("deit_small needs a multiple of its 16-pixel patch, got 28; try 16"));
        assert_eq!(errors.get("momentum"), Some("must be a number from 0 to 0.999, got 1.5"));
        assert_eq!(errors.get("nesterov"), Some("must be true or false, got \"maybe\""));
        assert!(errors.get("schedule").unwrap().contains("constant, cosine, step"));
        assert!(errors.get("weights").unwrap().contains("not a .safetensors file"));
    }
}
