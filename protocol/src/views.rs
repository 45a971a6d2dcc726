//! What the JSON API returns and the pages render. Field names are a public contract
//! (docs/design.md, "Public JSON API"): add fields freely, never rename one.

use serde::{Deserialize, Serialize};

use crate::spec::{ExperimentSpec, FieldErrors};
use crate::worker::Heartbeat;

/// A registered dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    /// On-disk format, e.g. `idx`.
    pub format: String,
    pub path: String,
    pub num_classes: u32,
    pub class_names: Vec<String>,
    pub train_size: u64,
    pub val_size: u64,
    pub image_height: u32,
    pub image_width: u32,
    pub channels: u32,
    /// How the dataset loads; the same for the server's thumbnails and every worker.
    #[serde(default)]
    pub options: DatasetOptions,
    /// With a grouping rule ([`DatasetOptions::group_pattern`] or split.csv's group column):
    /// how many groups (patients) each side holds. No group is on two sides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<DatasetGroups>,
}

/// Groups (patients, subjects) per split of a grouped dataset: a group is counted on the
/// side that holds its images, and a dataset with a group on two sides is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DatasetGroups {
    pub train: u64,
    pub val: u64,
    pub test: u64,
}

/// Loading choices of a dataset, set when it is registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetOptions {
    /// ImageFolder without train/val folders or split file: the share of each class held out
    /// for validation, in `[0, 1)`.
    pub val_fraction: f64,
    /// Seed of that stratified split.
    pub split_seed: u64,
    /// An image file that cannot be decoded: `fail` (the load stops and names the file) or
    /// `skip` (the sample is left out and the worker's log lists it).
    pub bad_images: String,
    /// ImageFolder: a regular expression over each image's path relative to the root (`/`
    /// between folders); its first capture group, or the whole match without one, names the
    /// image's group (a patient, say). The seeded split then keeps every group on one side,
    /// and a layout that puts a group on two sides is refused. E.g. `_(P\d+)_` or
    /// `^[^/]+/([^/]+)/` (a folder per patient).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_pattern: Option<String>,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        DatasetOptions { val_fraction: 0.1, split_seed: 0, bad_images: "fail".into(), group_pattern: None }
    }
}

impl DatasetInfo {
    pub fn class_name(&self, label: u32) -> String {
        self.class_names.get(label as usize).cloned().unwrap_or_else(|| format!("class {label}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    /// Trained; the server computes its statistics and seals its records in the background
    /// (issue 18, item 5). Its statistics are shown once it has succeeded.
    Analysing,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] =
        [RunStatus::Queued, RunStatus::Running, RunStatus::Analysing, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Analysing => "analysing",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Training phase of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Head warmup: backbone frozen, only the classifier trains.
    Warmup,
    /// Full fine-tuning.
    Finetune,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Finetune => "finetune",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "warmup" => Some(Phase::Warmup),
            "finetune" => Some(Phase::Finetune),
            _ => None,
        }
    }
}

/// Whole-epoch metrics of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: u32,
    pub phase: Phase,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
}

/// Live progress of a job, as sent by server-sent events and stored on each heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub job_id: i64,
    pub run_id: i64,
    pub status: RunStatus,
    /// Recorded epochs of the whole run (warmup and fine-tuning).
    pub epochs: u32,
    /// The worker's last report (phase, epoch, step, loss, throughput, time left).
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    /// Fraction of the whole run done, in [0, 1].
    pub fraction: f64,
    /// When the server published this report (Unix milliseconds); absent in stored state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_ms: Option<u64>,
}

impl Progress {
    /// Progress of a job from its last heartbeat; without one, the phase is the status.
    pub fn new(job_id: i64, run_id: i64, status: RunStatus, epochs: u32, heartbeat: Option<Heartbeat>) -> Self {
        let heartbeat = heartbeat.unwrap_or_else(|| Heartbeat { phase: status.as_str().to_owned(), ..Default::default() });
        let within = if heartbeat.steps > 0 { f64::from(heartbeat.step) / f64::from(heartbeat.steps) } else { 0.0 };
        let done =
            if status == RunStatus::Succeeded || heartbeat.phase == "done" { f64::from(epochs) } else { f64::from(heartbeat.epoch.saturating_sub(1)) + within };
        let fraction = (done / f64::from(epochs.max(1))).clamp(0.0, 1.0);
        Self { job_id, run_id, status, epochs, heartbeat, fraction, published_ms: None }
    }
}

/// `GET /api/v1/workers`: a worker the server heard from within its lease time (a lease poll
/// or a heartbeat), newest first. Kept in the server's memory only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    /// The name it leases with (`host/cuda0`).
    pub name: String,
    /// What it trains on, in words: `cuda:0 (of 1 visible)`, or `cpu (why not CUDA)`.
    pub device: Option<String>,
    pub seconds_since_seen: f64,
    /// The job it is running, if any.
    pub job_id: Option<i64>,
    pub run_id: Option<i64>,
    /// From its job's last heartbeat: resident host memory and training throughput.
    pub memory_bytes: Option<u64>,
    pub images_per_sec: Option<f64>,
}

/// One row of the runs table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: i64,
    pub dataset: String,
    pub arch: String,
    pub seed: u64,
    pub epochs: u32,
    pub status: RunStatus,
    pub created_at: String,
    /// When a worker first started it.
    #[serde(default)]
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub progress: Option<Progress>,
    /// Final-epoch validation accuracy, when the run recorded one.
    pub final_val_accuracy: Option<f64>,
    #[serde(default)]
    pub owner: Option<String>,
    /// Queue order: higher runs first.
    #[serde(default)]
    pub priority: i64,
    /// Labels given at launch, sorted.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The Slurm job of the latest submission (Slurm executor only).
    #[serde(default)]
    pub slurm_job_id: Option<i64>,
    /// The study the run belongs to, if any.
    #[serde(default)]
    pub study: Option<StudyLink>,
    /// The run's name: given at launch or since, else generated
    /// ([`crate::ExperimentSpec::default_name`]).
    #[serde(default)]
    pub name: String,
}

/// How full the data volume is, worst last: `ok`, `low` (under the warning), `full` (under
/// the reserve: uploads and launches refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskLevel {
    Ok,
    Low,
    Full,
}

impl DiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskLevel::Ok => "ok",
            DiskLevel::Low => "low",
            DiskLevel::Full => "full",
        }
    }
}

/// The server's data volume (issue 23, item 7): `GET /healthz` and the jobs page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpace {
    /// Bytes the server may still write on the data directory's volume.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Under this, a warning (`FORGETLAB_DISK_WARN_MB`).
    pub warn_bytes: u64,
    /// Under this, uploads and launches are refused with 507 (`FORGETLAB_DISK_MIN_FREE_MB`).
    pub refuse_bytes: u64,
    pub level: DiskLevel,
    /// What to tell an administrator when the level is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A page of the runs table: the runs and how many match the filters in all, with every
/// owner and tag any run has (the choices of the table's owner and tag filters; filled for
/// the page only, empty where the JSON API and studies read runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunList {
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub runs: Vec<RunSummary>,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A run with its spec and per-epoch metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub id: i64,
    pub spec: ExperimentSpec,
    pub status: RunStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub progress: Option<Progress>,
    pub epochs: Vec<EpochMetrics>,
    /// Number of training samples recorded per epoch (0 until the worker reports them).
    pub sample_count: u64,
    /// How many samples have each number of forgetting events: index = events.
    pub forgetting_histogram: Vec<u64>,
    /// The dataset's class names, by label.
    pub class_names: Vec<String>,
    /// The validation confusion matrix of the latest epoch that has one: `[true][predicted]`
    /// counts. Per-class accuracy is each row's diagonal share.
    #[serde(default)]
    pub val_confusion: Option<Vec<Vec<u32>>>,
    /// Run-level analysis, computed when the run succeeded.
    #[serde(default)]
    pub analysis: Option<RunAnalysis>,
    /// The account that launched the run (none for runs from before accounts).
    #[serde(default)]
    pub owner: Option<String>,
    /// The run's tags, sorted.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The study the run belongs to, if any.
    #[serde(default)]
    pub study: Option<StudyLink>,
    /// Lineage: the earlier runs whose statistics this run's sample selection reads
    /// (`spec.sampling.source_run`), and the runs whose sample selection reads this run's.
    #[serde(default)]
    pub source_runs: Vec<LinkedRun>,
    #[serde(default)]
    pub derived_runs: Vec<LinkedRun>,
    /// The run's name (see [`RunSummary::name`]) and its notes ("" when none).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub notes: String,
    /// The fraction of the training samples each fine-tuning epoch trained on, for epochs that
    /// left samples out (a subset schedule); RbF on due samples only shows its saving here.
    #[serde(default)]
    pub data_fraction: Vec<EpochFraction>,
}

/// One epoch's training data: `shown` of the run's samples, `fraction` = shown / samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochFraction {
    pub epoch: u32,
    pub shown: u64,
    pub fraction: f64,
}

/// `PATCH /api/v1/runs/{id}`: what to change of a run's name, notes and tags; a field left
/// out stays. An empty name brings back the default one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// A list of tags, or one string separated by commas; replaces the run's tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Value>,
}

/// A study, as a run page links to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyLink {
    pub id: i64,
    pub name: String,
}

/// Another run, as a run's lineage names it: enough to tell it apart and link to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedRun {
    pub id: i64,
    pub arch: String,
    pub seed: u64,
    pub status: RunStatus,
    /// Its sample selection's kind (`full`, `prune`, ...).
    pub sampling: String,
}

/// A correlation coefficient with its two-sided p-value (scipy's definitions) and the number
/// of pairs; `r` is `None` when undefined (a constant input, fewer than 3 pairs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CorrelationView {
    pub r: Option<f64>,
    pub p_value: Option<f64>,
    pub n: u64,
}

/// The decay fits of a run's samples under its retention definition, counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecayCounts {
    pub fitted: u64,
    /// Excluded, by reason: never correct; fewer than 3 lags; every point equal.
    pub never_learned: u64,
    pub too_few_points: u64,
    pub constant: u64,
    pub mean_r2: Option<f64>,
    /// Median R^2 of the exponential fits (absent in runs analysed before it existed).
    #[serde(default)]
    pub median_r2: Option<f64>,
    /// Fits where the exponential has a lower AIC than the power law `(1 + k)^-alpha`.
    pub exponential_preferred: u64,
    /// R^2 of the fitted samples in 20 bins of width 0.05 over [0, 1]; below 0 counted apart.
    pub r2_histogram: Vec<u64>,
    pub r2_below_zero: u64,
}

/// What a finished run says as a whole (docs/design.md: decay fits, warmup predictability).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunAnalysis {
    /// The analysis choices these statistics were computed under (window, retention
    /// definition, never-learned policy). Runs analysed before they were recorded read as
    /// what they were computed with: every epoch, definition A, `max`.
    #[serde(default = "legacy_settings")]
    pub settings: dynamics::AnalysisSettings,
    /// The first and last epoch the per-sample statistics cover (absent in older runs).
    #[serde(default)]
    pub window_epochs: Option<[u32; 2]>,
    /// The epoch whose EL2N is the per-sample `el2n` score (absent in older runs).
    #[serde(default)]
    pub el2n_epoch: Option<u32>,
    pub decay: DecayCounts,
    /// Spearman(loss after head warmup, tau), tau fitted on the fine-tuning epochs only, over
    /// every sample with a defined decay (unforgettable ones at tau = infinity; never-learned
    /// ones have none), with n and p (`dynamics::warmup`); `None` without a head warmup.
    pub warmup_predictability: Option<CorrelationView>,
    /// The same against the decay rate 1/tau: `r` is exactly `-warmup_predictability.r`.
    #[serde(default)]
    pub warmup_vs_rate: Option<CorrelationView>,
}

fn legacy_settings() -> dynamics::AnalysisSettings {
    dynamics::AnalysisSettings::LEGACY
}

/// Per-class forgetting of a run, computed when it succeeded (indexed by label).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassForgetting {
    pub samples: Vec<u64>,
    /// Mean forgetting events per sample of the class under the run's never-learned policy
    /// (`dynamics::classes::class_forgetting`): `max` counts a never-learned sample as
    /// forgotten at every epoch (Toneva et al.), `exclude` leaves it out.
    pub forgetting_mean: Vec<Option<f64>>,
    /// The class's total forgetting events under the same policy (before dividing by the
    /// samples counted); empty for runs analysed before it existed.
    #[serde(default)]
    pub forgetting_total: Vec<f64>,
    pub never_learned: Vec<u64>,
    /// `[true][predicted]`: at each forgetting event, the class predicted instead.
    pub forgotten_into: Vec<Vec<u64>>,
}

/// `GET /api/v1/runs/{id}/classes`: the class-level view of a run (docs/design.md, class level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub run_id: i64,
    pub class_names: Vec<String>,
    #[serde(flatten)]
    pub forgetting: ClassForgetting,
    /// Validation accuracy of each class at each epoch that has a confusion matrix.
    pub val_accuracy: Vec<ClassAccuracy>,
    /// The last epoch's validation confusion matrix, `[true][predicted]`.
    pub val_confusion: Option<Vec<Vec<u32>>>,
    /// Symmetrised confusion rates of that matrix (1 on the diagonal).
    pub confusion_similarity: Option<Vec<Vec<f64>>>,
    /// Cosine similarity of the final model's class-mean penultimate embeddings.
    pub embedding_similarity: Option<Vec<Vec<f64>>>,
    /// Spearman between the two similarities over the class pairs.
    pub similarity_agreement: Option<CorrelationView>,
    /// Spearman between the forgotten-into counts (both directions summed) and the confusion
    /// similarity over the class pairs: does forgetting follow similarity?
    pub forgetting_follows_confusion: Option<CorrelationView>,
    /// "Similar classes are forgotten most", per class (`dynamics::classes::
    /// similar_classes_forgotten_most`): Spearman over classes between mean forgetting and the
    /// class's greatest confusion similarity to another class, n = classes.
    #[serde(default)]
    pub similar_forgotten_confusion: Option<CorrelationView>,
    /// The same against the greatest class-mean embedding similarity.
    #[serde(default)]
    pub similar_forgotten_embedding: Option<CorrelationView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub epoch: u32,
    pub accuracy: Vec<Option<f64>>,
}

/// Per-sample statistics of one run (docs/design.md names these fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleStats {
    pub sample_key: String,
    pub sample_index: u32,
    /// Index of the sample in the dataset's training split (for its image).
    pub dataset_index: u32,
    pub label: u32,
    pub forgetting_events: u32,
    pub learning_events: u32,
    pub first_learned_epoch: Option<u32>,
    pub never_learned: bool,
    pub unforgettable: bool,
    pub confidence: Option<f64>,
    pub variability: Option<f64>,
    pub correctness: Option<f64>,
    pub tau: Option<f64>,
    pub r2: Option<f64>,
    pub warmup_loss: Option<f64>,
    /// Mean margin over the statistics' window (absent in runs analysed before it existed).
    #[serde(default)]
    pub mean_margin: Option<f64>,
    /// EL2N at the run's EL2N epoch (`RunAnalysis.el2n_epoch`).
    #[serde(default)]
    pub el2n: Option<f64>,
    /// The class the run predicted at its last epoch (absent in runs analysed before it was
    /// stored).
    #[serde(default)]
    pub last_predicted: Option<u32>,
}

impl SampleStats {
    /// A sample's row from its place in the run and `dynamics`' statistics (`last_predicted`, which
    /// they do not hold, is `None`).
    pub fn from_values(sample_key: String, sample_index: u32, dataset_index: u32, label: u32, v: &dynamics::SampleValues) -> Self {
        SampleStats {
            sample_key,
            sample_index,
            dataset_index,
            label,
            forgetting_events: v.forgetting_events,
            learning_events: v.learning_events,
            first_learned_epoch: v.first_learned_epoch,
            never_learned: v.never_learned,
            unforgettable: v.unforgettable,
            confidence: v.confidence,
            variability: v.variability,
            correctness: v.correctness,
            tau: v.tau,
            r2: v.r2,
            warmup_loss: v.warmup_loss,
            mean_margin: v.mean_margin,
            el2n: v.el2n,
            last_predicted: None,
        }
    }

    /// The statistics as `dynamics`' rankings read them.
    pub fn values(&self) -> dynamics::SampleValues {
        dynamics::SampleValues {
            forgetting_events: self.forgetting_events,
            learning_events: self.learning_events,
            first_learned_epoch: self.first_learned_epoch,
            never_learned: self.never_learned,
            unforgettable: self.unforgettable,
            confidence: self.confidence,
            variability: self.variability,
            correctness: self.correctness,
            tau: self.tau,
            r2: self.r2,
            warmup_loss: self.warmup_loss,
            mean_margin: self.mean_margin,
            el2n: self.el2n,
        }
    }
}

/// A page of per-sample statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplePage {
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub samples: Vec<SampleStats>,
}

/// The body of every 4xx/5xx JSON answer: a sentence, and for invalid input one message per
/// offending field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub message: String,
    #[serde(default, skip_serializing_if = "FieldErrors::is_empty")]
    pub errors: FieldErrors,
}

/// Answer to `POST /api/v1/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launched {
    pub id: i64,
    pub job_id: i64,
    pub status: RunStatus,
}

/// A refusal or failure with its HTTP status, as the server's service layer returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", .body.message)]
pub struct Failure {
    pub status: u16,
    pub body: ApiError,
}

impl Failure {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, body: ApiError { message: message.into(), errors: FieldErrors::default() } }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::new(429, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// Invalid input: one message per offending field.
    pub fn invalid(message: impl Into<String>, errors: FieldErrors) -> Self {
        Self { status: 422, body: ApiError { message: message.into(), errors } }
    }
}

/// Filters, sort and page of `GET /api/v1/runs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    pub status: Option<String>,
    pub dataset: Option<String>,
    pub arch: Option<String>,
    pub owner: Option<String>,
    /// Runs carrying this tag.
    pub tag: Option<String>,
    /// Runs of this study.
    pub study: Option<i64>,
    /// Runs created on or after this day, `YYYY-MM-DD` (UTC).
    pub created_from: Option<String>,
    /// Runs created on or before this day, `YYYY-MM-DD` (UTC).
    pub created_to: Option<String>,
    /// `id`, `created_at`, `dataset`, `arch`, `seed`, `epochs`, `status`, `owner`, `priority`;
    /// prefix `-` for descending. Default: newest first.
    pub sort: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// Sort and page of `GET /api/v1/runs/{id}/samples`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleQuery {
    /// A per-sample statistic; prefix `-` for descending. Default `-forgetting_events`.
    pub sort: Option<String>,
    pub label: Option<u32>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    pub never_learned: Option<bool>,
    pub unforgettable: Option<bool>,
    /// Inclusive bounds on a statistic; a bound on a statistic the sample lacks (tau of an
    /// excluded fit) leaves the sample out.
    pub min_forgetting_events: Option<u32>,
    pub max_forgetting_events: Option<u32>,
    pub min_first_learned_epoch: Option<u32>,
    pub max_first_learned_epoch: Option<u32>,
    pub min_confidence: Option<f64>,
    pub max_confidence: Option<f64>,
    pub min_variability: Option<f64>,
    pub max_variability: Option<f64>,
    pub min_tau: Option<f64>,
    pub max_tau: Option<f64>,
    pub min_r2: Option<f64>,
    pub max_r2: Option<f64>,
}

impl SampleQuery {
    /// The filters as (column, operator, value), for the server to bind.
    pub fn bounds(&self) -> Vec<(&'static str, &'static str, f64)> {
        let mut out = Vec::new();
        let mut push = |column, min: Option<f64>, max: Option<f64>| {
            out.extend(min.map(|v| (column, ">=", v)));
            out.extend(max.map(|v| (column, "<=", v)));
        };
        push("forgetting_events", self.min_forgetting_events.map(f64::from), self.max_forgetting_events.map(f64::from));
        push("first_learned_epoch", self.min_first_learned_epoch.map(f64::from), self.max_first_learned_epoch.map(f64::from));
        push("confidence", self.min_confidence, self.max_confidence);
        push("variability", self.min_variability, self.max_variability);
        push("tau", self.min_tau, self.max_tau);
        push("r2", self.min_r2, self.max_r2);
        push("never_learned", self.never_learned.map(f64::from), self.never_learned.map(f64::from));
        push("unforgettable", self.unforgettable.map(f64::from), self.unforgettable.map(f64::from));
        out
    }
}

/// Outcome of the launch form: the new run, or a message per invalid field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchOutcome {
    pub run_id: Option<i64>,
    pub message: Option<String>,
    pub errors: FieldErrors,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(phase: &str, epoch: u32, step: u32, steps: u32) -> Option<Heartbeat> {
        Some(Heartbeat { phase: phase.into(), epoch, step, steps, ..Default::default() })
    }

    #[test]
    fn progress_is_the_fraction_of_all_epochs_done() {
        assert_eq!(Progress::new(1, 1, RunStatus::Queued, 4, None).fraction, 0.0);
        assert_eq!(Progress::new(1, 1, RunStatus::Queued, 4, None).heartbeat.phase, "queued");
        assert_eq!(Progress::new(1, 1, RunStatus::Running, 4, beat("finetune", 2, 5, 10)).fraction, 0.375);
        assert_eq!(Progress::new(1, 1, RunStatus::Running, 4, beat("done", 4, 10, 10)).fraction, 1.0);
        assert_eq!(Progress::new(1, 1, RunStatus::Succeeded, 4, None).fraction, 1.0);
        assert_eq!(Progress::new(1, 1, RunStatus::Running, 0, beat("loading", 0, 0, 0)).fraction, 0.0);
    }

    #[test]
    fn progress_json_is_flat() {
        let json = serde_json::to_value(Progress::new(3, 2, RunStatus::Running, 4, beat("warmup", 1, 1, 2))).unwrap();
        assert_eq!(json["phase"], "warmup");
        assert_eq!(json["epoch"], 1);
        assert_eq!(json["fraction"], 0.125);
        let back: Progress = serde_json::from_value(json).unwrap();
        assert_eq!(back.heartbeat.steps, 2);
    }
}

/// Query of `GET /api/v1/compare`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareQuery {
    /// Run ids, comma-separated, at least two.
    pub runs: String,
    /// Fraction of samples in each top-q set; default 0.1.
    pub q: Option<f64>,
    /// The per-sample score ranked: one of `dynamics::Score` (`forgetting_events` by
    /// default, `tau`, `decay_rate`, `confidence`, ...). Top-q sets take its forgotten end.
    pub score: Option<String>,
    /// Never-learned samples, under every score: `max` (at the forgotten end, above every
    /// other, as Toneva et al.; default) or `exclude` (left out of the comparison).
    pub never_learned: Option<String>,
    /// Compare runs over different sample sets on the samples they share.
    pub intersect: Option<bool>,
    /// Fractions, comma-separated, for a Jaccard-vs-q curve (e.g. `0.01,0.05,0.1,0.2,0.5`);
    /// none by default, since each q ranks every run again.
    pub curve: Option<String>,
    /// Two of `runs`, `a,b`: adds their score scatter (binned) and the set algebra of their
    /// top-q sets (`pair` in the answer). `auto`: the first two runs of different
    /// architectures, else the first two.
    pub pair: Option<String>,
}

/// `GET /api/v1/compare`: every matrix is indexed like `runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub runs: Vec<i64>,
    pub q: f64,
    pub score: String,
    /// Samples compared (shared by every run, after exclusions).
    pub samples: u64,
    pub jaccard: Vec<Vec<Option<f64>>>,
    pub spearman: Vec<Vec<Option<f64>>>,
    pub kendall: Vec<Vec<Option<f64>>>,
    pub pearson: Vec<Vec<Option<f64>>>,
    /// Spearman over the samples forgotten at least once in both runs.
    pub spearman_forgotten: Vec<Vec<Option<f64>>>,
    /// Two-sided p-values of the correlations above (scipy's definitions); none on the
    /// diagonal (a run against itself).
    pub spearman_p: Vec<Vec<Option<f64>>>,
    pub kendall_p: Vec<Vec<Option<f64>>>,
    pub pearson_p: Vec<Vec<Option<f64>>>,
    pub spearman_forgotten_p: Vec<Vec<Option<f64>>>,
    /// Samples forgotten at least once in both runs (the pairs of `spearman_forgotten`).
    pub forgotten_pairs: Vec<Vec<u64>>,
    /// Spearman over the samples forgotten at least once in either run (the union), and its p.
    #[serde(default)]
    pub spearman_forgotten_either: Vec<Vec<Option<f64>>>,
    #[serde(default)]
    pub spearman_forgotten_either_p: Vec<Vec<Option<f64>>>,
    /// Samples forgotten at least once in either run (the pairs of `spearman_forgotten_either`).
    #[serde(default)]
    pub forgotten_either: Vec<Vec<u64>>,
    /// Spearman-Brown reliability of the average score over these runs: the mean Spearman
    /// of distinct pairs, stepped up to k runs. `None` with an undefined correlation.
    pub reliability: Option<f64>,
    /// Each run's mean forgetting events per class (learned samples), by label; empty when
    /// a run has no class analysis.
    pub class_forgetting: Vec<Vec<Option<f64>>>,
    /// Spearman between two runs' per-class forgetting (classes with a value in both): is
    /// class-level forgetting consistent across seeds and architectures?
    pub class_consistency: Vec<Vec<Option<f64>>>,
    /// Mean Jaccard of distinct pairs' top-q sets at each q asked for (`curve`), with chance.
    pub jaccard_curve: Vec<JaccardPoint>,
    /// Jaccard of two random top-q sets: q / (2 - q).
    pub chance: f64,
    pub set_sizes: Vec<u64>,
    /// Samples scoring 0 in each run.
    pub zero_scores: Vec<u64>,
    /// Samples tied at each run's cut (the seeded draw chose among them).
    pub tied_at_cut: Vec<u64>,
    /// Which end of `score` is "more forgotten" (`higher` or `lower`): the end every top-q
    /// set takes (`dynamics::Score::direction`).
    #[serde(default)]
    pub direction: String,
    /// The score's meaning, with its reference, as the page shows it.
    #[serde(default)]
    pub score_meaning: String,
    /// The never-learned policy the ranking applied: `max` or `exclude`.
    #[serde(default)]
    pub never_learned: String,
    /// The compared runs, indexed like `runs`.
    #[serde(default)]
    pub members: Vec<CompareMember>,
    /// The study's findings over these runs, grouped by architecture and seed.
    #[serde(default)]
    pub summary: Option<CompareSummary>,
    /// Present when the query named a `pair`.
    #[serde(default)]
    pub pair: Option<PairView>,
    /// The runs of each architecture combined into one score per sample (Toneva et al.'s
    /// forgetting events summed over seeds, Paul et al.'s EL2N averaged over seeds:
    /// `dynamics::Score::over_seeds`), and the architectures compared on it; present with two
    /// or more architectures.
    #[serde(default)]
    pub seeds_combined: Option<SeedsCombined>,
}

/// A comparison of architectures on their seed-combined scores, indexed like `archs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedsCombined {
    pub archs: Vec<String>,
    /// The compared runs of each architecture.
    pub runs: Vec<Vec<i64>>,
    /// How the seeds were combined, in words.
    pub combination: String,
    pub jaccard: Vec<Vec<Option<f64>>>,
    pub spearman: Vec<Vec<Option<f64>>>,
    pub set_sizes: Vec<u64>,
}

/// One compared run, with what its own analysis says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareMember {
    pub id: i64,
    pub dataset: String,
    pub arch: String,
    pub seed: u64,
    /// Mean and median R^2 of the run's decay fits, under `settings.retention`.
    pub mean_r2: Option<f64>,
    #[serde(default)]
    pub median_r2: Option<f64>,
    /// Fits where the exponential beat the power law by AIC.
    #[serde(default)]
    pub exponential_preferred: u64,
    /// What the run's statistics were computed under.
    #[serde(default = "legacy_settings")]
    pub settings: dynamics::AnalysisSettings,
    /// Fitted and excluded decay traces, and the excluded by reason: never learned, too few
    /// points, constant.
    pub fitted: u64,
    pub excluded: u64,
    #[serde(default)]
    pub excluded_by_reason: [u64; 3],
    /// Spearman(warmup loss, tau) of the run, over its fine-tuning epochs.
    pub warmup_spearman: Option<f64>,
    /// Spearman(warmup loss, decay rate 1/tau) of the run, over its fine-tuning epochs.
    #[serde(default)]
    pub warmup_rate_spearman: Option<f64>,
}

/// the findings of docs/design.md over the compared runs: pairs of different architectures against
/// pairs of one architecture with different seeds, and chance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSummary {
    /// Mean Jaccard of the top-q sets over pairs of runs with different architectures.
    pub cross_arch_jaccard: Option<f64>,
    pub cross_arch_pairs: u64,
    /// Mean Jaccard and Spearman over pairs with the same architecture and different seeds.
    pub cross_seed_jaccard: Option<f64>,
    pub cross_seed_spearman: Option<f64>,
    pub cross_seed_pairs: u64,
    pub chance: f64,
    pub per_arch: Vec<ArchSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchSummary {
    pub arch: String,
    pub runs: u64,
    /// Mean over the architecture's runs of each run's mean R^2, and of each run's median.
    pub mean_r2: Option<f64>,
    #[serde(default)]
    pub median_r2: Option<f64>,
    /// Fitted and excluded traces over its runs, and fits where the exponential beat the
    /// power law by AIC.
    #[serde(default)]
    pub fitted: u64,
    #[serde(default)]
    pub excluded: u64,
    /// Excluded traces by reason over its runs: never learned, too few points, constant.
    #[serde(default)]
    pub excluded_by_reason: [u64; 3],
    #[serde(default)]
    pub exponential_preferred: u64,
    /// Mean Spearman over its cross-seed pairs, and its Spearman-Brown projection to the
    /// average of all its runs.
    pub cross_seed_spearman: Option<f64>,
    pub reliability: Option<f64>,
    /// Mean over its runs of Spearman(warmup loss, tau).
    pub warmup_spearman: Option<f64>,
}

/// Two runs of a comparison side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairView {
    pub a: i64,
    pub b: i64,
    /// Run a's score (x) against run b's (y), binned.
    pub scatter: Grid,
    /// The top-q sets: in a only, in b only, in both.
    pub only_a: SampleSet,
    pub only_b: SampleSet,
    pub both: SampleSet,
}

/// How many samples a set holds, and the first few (for thumbnails).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleSet {
    pub count: u64,
    pub examples: Vec<SampleRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRef {
    pub sample_key: String,
    pub dataset_index: u32,
    pub label: u32,
}

/// Points counted in a grid of cells: how a scatter of 10^5 points is sent and drawn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub x_min: f64,
    pub x_max: f64,
    pub y_min: f64,
    pub y_max: f64,
    pub x_bins: u32,
    pub y_bins: u32,
    /// Points per cell, `counts[y * x_bins + x]`, row 0 at `y_min`.
    pub counts: Vec<u64>,
    /// Per cell, the mean of a third value (the data map: correctness); `None` where empty.
    #[serde(default)]
    pub means: Option<Vec<Option<f64>>>,
    pub points: u64,
    /// Points left out for lacking a coordinate.
    pub missing: u64,
}

/// `GET /api/v1/runs/{id}/datamap`: the data map of Swayamdipta et al. (2020), variability
/// (x) against confidence (y), each cell coloured by its samples' mean correctness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataMap {
    pub run_id: i64,
    pub grid: Grid,
}

/// One sample's records across a run's epochs.
/// `GET /api/v1/runs/{id}/log`: the newest lines of the run's job log, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLog {
    pub run_id: i64,
    pub lines: Vec<LogLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub at: String,
    pub attempt: u32,
    /// `worker` (the worker's own log) or `server` (leased, re-queued, cancelled, finished).
    pub source: String,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JaccardPoint {
    pub q: f64,
    pub jaccard: Option<f64>,
    pub chance: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    pub run_id: i64,
    pub arch: String,
    pub seed: u64,
    pub stats: SampleStats,
    /// Epoch e is at index e - 1.
    pub correct: Vec<u8>,
    pub p_true: Vec<f32>,
    pub loss: Vec<f32>,
    pub predicted: Vec<u16>,
}

/// `GET /api/v1/runs/{id}/samples/{sample_key}`: the sample in this run, and in every other
/// finished run over the same dataset (joined on the content key), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleHistory {
    pub sample_key: String,
    pub this_run: Trajectory,
    pub other_runs: Vec<Trajectory>,
}
