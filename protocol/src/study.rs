//! Studies: one dataset, architectures x seeds x training schedules (arms), launched as one
//! grid of runs and reported as one (docs/design.md's architecture-dependent forgetting study is
//! the preset).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::sampling::Sampling;
use crate::spec::{FieldErrors, RunRequest};
use crate::views::{Comparison, RunSummary};

/// Presets: (name, what it is, the request fields it fills).
pub fn presets() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "architecture-dependent-forgetting",
            "The article's study (arXiv:2604.11508): ResNet-18 and DeiT-Small, 3 seeds, 2 head-warmup epochs then 10 of fine-tuning at 224 px with ImageNet preprocessing (random resized crops and flips in training, resize to 256 and centre-crop in evaluation), per-epoch records (give each architecture its pretrained weights)",
            json!({"archs": ["resnet18", "deit_small"], "seeds": [1, 2, 3],
                   "base": {"warmup_epochs": 2, "epochs": 10, "image_size": 224, "preprocess": "imagenet", "augment": "crop_flip", "batch_size": 64, "lr": 0.01, "measure": "in_batch"}}),
        ),
        (
            "architecture-dependent-forgetting-small",
            // 4 fine-tuning epochs: the statistics' default window is the fine-tuning epochs,
            // and a decay fit needs 3 lags (4 epochs) in it.
            "The same shape in minutes on a CPU: Fashion-MNIST, 512 training images at 32 px, 1 warmup + 4 fine-tuning epochs",
            json!({"archs": ["resnet18", "deit_small"], "seeds": [1, 2, 3],
                   "base": {"dataset": "fashion-mnist", "train_subset": 512, "val_subset": 128, "image_size": 32, "warmup_epochs": 1,
                            "epochs": 4, "batch_size": 32, "lr": 0.02, "measure": "in_batch"}}),
        ),
    ]
}

/// `POST /api/v1/studies`. Like a run request, every field may be missing or mistyped and
/// gets its own message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyRequest {
    /// A name to find the study by (1 to 80 characters); default: the preset's or "study".
    pub name: Option<Value>,
    /// Start from a preset ([`presets`]); the request's own fields win over it.
    pub preset: Option<Value>,
    /// What every run shares, as in `POST /runs` (dataset, epochs, warmup_epochs, lr, ...);
    /// `arch`, `seed`, `weights` and `sampling` come from the lists below.
    pub base: Option<Value>,
    /// Architectures: names (`"resnet18"`) or `{"arch": "resnet18", "weights": "file"}`.
    pub archs: Option<Value>,
    /// Seeds: a list of whole numbers, or one string separated by commas.
    pub seeds: Option<Value>,
    /// Training schedules (arms), each a `sampling` value; default `["full"]`.
    pub arms: Option<Value>,
}

/// One run of a study's grid.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    pub arch: String,
    pub seed: u64,
    /// Index into the study's arms.
    pub arm: usize,
    pub request: RunRequest,
}

/// A study request expanded: its runs, arms outermost, then architectures, then seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyPlan {
    pub name: String,
    pub archs: Vec<(String, Option<String>)>,
    pub seeds: Vec<u64>,
    pub arms: Vec<Value>,
    /// The request's shared fields (after the preset), kept with the study to extend it.
    pub base: Map<String, Value>,
    pub runs: Vec<PlannedRun>,
}

/// At most this many runs per study.
pub const MAX_STUDY_RUNS: usize = 200;

impl StudyRequest {
    /// Expands the request into runs, or a message per field (`archs`, `seeds`, `arms[1]`,
    /// `base`, ...). Each run's own fields are checked later by the run spec's parser.
    pub fn plan(&self) -> Result<StudyPlan, FieldErrors> {
        let mut errors = FieldErrors::default();
        let preset = match &self.preset {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) if name.is_empty() => None,
            Some(Value::String(name)) => match presets().into_iter().find(|(n, _, _)| n == name) {
                Some((_, _, fields)) => Some(fields),
                None => {
                    let names: Vec<&str> = presets().iter().map(|p| p.0).collect();
                    errors.add("preset", format!("unknown preset {name:?}; choose one of {}", names.join(", ")));
                    None
                }
            },
            Some(other) => {
                errors.add("preset", format!("preset must be a name, got {other}"));
                None
            }
        };
        let from_preset = |key: &str| preset.as_ref().and_then(|p| p.get(key)).cloned();
        let given = |value: &Option<Value>, key: &str| value.clone().filter(|v| !v.is_null() && v != &json!("")).or_else(|| from_preset(key));

        let name = match given(&self.name, "name") {
            None => self.preset.as_ref().and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("study").to_owned(),
            Some(Value::String(name)) if (1..=80).contains(&name.trim().chars().count()) => name.trim().to_owned(),
            Some(other) => {
                errors.add("name", format!("name must be 1 to 80 characters, got {other}"));
                String::new()
            }
        };

        let mut base = match from_preset("base") {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        match &self.base {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, value) in map {
                    if matches!(key.as_str(), "arch" | "seed" | "weights" | "sampling") {
                        errors.add("base", format!("base.{key} is set per run: use the study's archs, seeds and arms lists"));
                    } else if !value.is_null() && value != &json!("") {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
            Some(other) => errors.add("base", format!("base must be an object of run settings, got {other}")),
        }
        if let Err(e) = serde_json::from_value::<RunRequest>(Value::Object(base.clone())) {
            errors.add("base", format!("base: {e}"));
        }

        let archs: Vec<(String, Option<String>)> = match given(&self.archs, "archs") {
            None => {
                errors.add("archs", "archs is required: a list of architectures, e.g. [\"resnet18\", \"deit_small\"]");
                Vec::new()
            }
            Some(value) => {
                let items = list_items(value);
                let mut archs = Vec::new();
                for item in items {
                    match &item {
                        Value::String(arch) => archs.push((arch.clone(), None)),
                        Value::Object(map) => match map.get("arch").and_then(Value::as_str) {
                            Some(arch) => {
                                archs.push((arch.to_owned(), map.get("weights").and_then(Value::as_str).filter(|w| !w.is_empty()).map(str::to_owned)))
                            }
                            None => errors.add("archs", format!("each architecture is a name or {{\"arch\": ..., \"weights\": ...}}, got {item}")),
                        },
                        _ => errors.add("archs", format!("each architecture is a name or {{\"arch\": ..., \"weights\": ...}}, got {item}")),
                    }
                }
                if archs.is_empty() && errors.get("archs").is_none() {
                    errors.add("archs", "name at least one architecture");
                }
                archs
            }
        };

        let seeds: Vec<u64> = match given(&self.seeds, "seeds") {
            None => {
                errors.add("seeds", "seeds is required: a list of whole numbers, e.g. [1, 2, 3]");
                Vec::new()
            }
            Some(value) => {
                let items = list_items(value);
                let parsed: Option<Vec<u64>> = items.iter().map(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).collect();
                match parsed {
                    Some(mut seeds) if !seeds.is_empty() => {
                        let before = seeds.len();
                        seeds.sort_unstable();
                        seeds.dedup();
                        if seeds.len() != before {
                            errors.add("seeds", "each seed once: a repeated seed would train the same run twice");
                        }
                        seeds
                    }
                    _ => {
                        errors.add("seeds", format!("seeds must be whole numbers (at least one), got {}", Value::Array(items)));
                        Vec::new()
                    }
                }
            }
        };

        let arms: Vec<Value> = match given(&self.arms, "arms") {
            None => vec![json!("full")],
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) => vec![json!("full")],
            Some(other) => vec![other],
        };
        let mut subset_arms = Vec::new();
        for (i, arm) in arms.iter().enumerate() {
            match Sampling::parse(arm) {
                Ok(sampling) if sampling.shows_subset() => subset_arms.push((i, sampling)),
                Ok(_) => {}
                Err(arm_errors) => {
                    for (field, message) in arm_errors.0 {
                        errors.add(&format!("arms[{i}]"), format!("{field}: {message}"));
                    }
                }
            }
        }
        // The arms that train on a subset are compared with each other (paired by seed, against
        // the reference arm): at different budgets a difference would measure the budget, not
        // the schedule (issue 22). `full` trains on everything and is shown, not paired.
        if let Some((_, first)) = subset_arms.first() {
            if subset_arms.iter().any(|(_, s)| s.budget != first.budget) {
                let named: Vec<String> = subset_arms.iter().map(|(i, s)| format!("arms[{i}] {s}")).collect();
                errors.add("arms", format!("the arms a study compares must train on one budget, got {}; give them the same budget", named.join(", ")));
            }
        }

        let count = archs.len() * seeds.len() * arms.len();
        if count > MAX_STUDY_RUNS {
            errors.add("seeds", format!("{count} runs is more than a study holds ({MAX_STUDY_RUNS}); use fewer architectures, seeds or arms"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let runs = expand(&base, &archs, &seeds, &arms);
        Ok(StudyPlan { name, archs, seeds, arms, base, runs })
    }
}

/// A list field's entries: a JSON list as it is, one string split at commas, anything else
/// as the only entry.
fn list_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::String(text) => text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| json!(s)).collect(),
        other => vec![other],
    }
}

/// The grid's runs for the given seeds: arms outermost, then architectures, then seeds.
pub fn expand(base: &Map<String, Value>, archs: &[(String, Option<String>)], seeds: &[u64], arms: &[Value]) -> Vec<PlannedRun> {
    let mut runs = Vec::new();
    for (arm_index, arm) in arms.iter().enumerate() {
        for (arch, weights) in archs {
            for &seed in seeds {
                let mut fields = base.clone();
                fields.insert("arch".into(), json!(arch));
                fields.insert("seed".into(), json!(seed));
                if let Some(weights) = weights {
                    fields.insert("weights".into(), json!(weights));
                }
                if arm != &json!("full") {
                    fields.insert("sampling".into(), arm.clone());
                }
                let request: RunRequest = serde_json::from_value(Value::Object(fields)).expect("checked when planned");
                runs.push(PlannedRun { arch: arch.clone(), seed, arm: arm_index, request });
            }
        }
    }
    runs
}

/// `POST /api/v1/studies` answered: the study and its runs, queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyLaunched {
    pub id: i64,
    pub runs: Vec<i64>,
}

/// A row of the studies list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySummary {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    pub runs: u64,
    pub succeeded: u64,
    pub active: u64,
    pub failed: u64,
}

/// `GET /api/v1/studies/{id}`: the grid, its runs' states, and the report over those done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyDetail {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    pub dataset: String,
    pub archs: Vec<String>,
    pub seeds: Vec<u64>,
    /// Each arm's schedule as text (`full`, `leitner at budget 0.5`, ...).
    pub arms: Vec<String>,
    pub runs: Vec<StudyRun>,
    pub report: StudyReport,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRun {
    pub arch: String,
    pub seed: u64,
    pub arm: usize,
    pub run: RunSummary,
}

/// The findings over a study's finished runs, with the paper's numbers beside them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyReport {
    /// The first arm's succeeded runs compared (forgetting events, top 10 %): cross-arch
    /// against cross-seed Jaccard and chance, Spearman, R^2 and warmup predictability per
    /// architecture. `None` until two runs of the arm have succeeded.
    pub comparison: Option<Comparison>,
    /// Why there is no comparison yet, or what went wrong computing it.
    pub comparison_note: Option<String>,
    /// The arm the others are paired with, seed by seed (`random at budget 0.5`): the `random`
    /// arm; `None` without one. Only arms at its budget are paired with it.
    #[serde(default)]
    pub reference_arm: Option<String>,
    /// Per arm (and architecture): final validation accuracy and macro-F1 over seeds with 95 %
    /// intervals, and the paired difference against the `random` arm.
    pub arms: Vec<ArmReport>,
    /// The published values of the study of docs/design.md, to read beside the findings.
    pub published: Vec<Published>,
    /// The findings over the first arm's runs, each with a 95 % Student-t interval (over
    /// seeds, or over pairs of runs where the finding is a pairwise one).
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// Per arm and architecture: validation accuracy and macro-F1 at every epoch, over seeds,
    /// against epochs and against training samples seen.
    #[serde(default)]
    pub curves: Vec<ArmCurve>,
}

/// A statistic's name, the same on every page that shows it (issue 21: one name per number).
/// `key` is a [`Finding::key`], or one of the compare summary's pooled statistics
/// (`cross_seed_jaccard_pooled`, `cross_seed_spearman_pooled`); the compare summary's
/// `cross_arch_jaccard` is the finding `cross_arch_jaccard_all_pairs`.
pub fn finding_name(key: &str) -> &'static str {
    match key {
        "cross_arch_jaccard" => "Same-seed cross-architecture Jaccard of the top-q forgotten sets",
        "cross_arch_jaccard_all_pairs" => "All-pairs cross-architecture Jaccard of the top-q forgotten sets",
        "cross_seed_jaccard" => "Cross-seed Jaccard of the top-q forgotten sets",
        "cross_seed_jaccard_pooled" => "Cross-seed Jaccard of the top-q forgotten sets, pooled over architectures",
        "cross_seed_spearman" => "Cross-seed Spearman of per-sample forgetting",
        "cross_seed_spearman_pooled" => "Cross-seed Spearman of per-sample forgetting, pooled over architectures",
        "mean_r2" => "Mean R² of the retention-decay fits",
        "warmup_spearman" => "Spearman(loss after head warm-up, τ)",
        "warmup_spearman_rate" => "Spearman(loss after head warm-up, decay rate 1/τ)",
        "forgetting_follows_similarity" => "Forgotten-into counts follow class confusion (pairs of classes)",
        "similar_classes_forgotten_most" => "Similar classes are forgotten most (per class)",
        "class_consistency_cross_seed" => "Class-level forgetting consistent across seeds",
        "class_consistency_cross_arch" => "Class-level forgetting consistent across architectures",
        _ => "Finding",
    }
}

/// One finding of the study of docs/design.md measured on this study's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable name: `cross_arch_jaccard` (same-seed pairs), `cross_arch_jaccard_all_pairs`
    /// (every pair of architectures, any seeds), `cross_seed_jaccard`, `mean_r2`,
    /// `cross_seed_spearman`, `warmup_spearman` (against tau), `warmup_spearman_rate`
    /// (against 1/tau), `class_consistency_cross_seed`,
    /// `class_consistency_cross_arch`, `forgetting_follows_similarity` (pairs of classes),
    /// `similar_classes_forgotten_most` (per class).
    pub key: String,
    /// The architecture it is about; `None` for findings across architectures.
    pub arch: Option<String>,
    pub value: Option<Interval>,
    /// The epoch window of the statistics it is computed from (`fine_tuning`, `all`, or
    /// both joined by `+` when its runs differ).
    #[serde(default)]
    pub window: String,
    /// The retention definition it depends on (`a`, `a_floor`, `a_weighted`, `b`); empty for
    /// findings that do not depend on one (forgetting events, class means).
    #[serde(default)]
    pub retention: String,
    /// How the interval was computed: Student's t over independent values, or the jackknife
    /// over seeds for values that are pairs of runs (pairs share runs).
    #[serde(default)]
    pub method: String,
    /// What one of the `n` values is (`a seed: the mean over pairs of architectures trained
    /// with that seed`, `a pair of seeds`, `a run`).
    pub over: String,
    /// Anything to read beside the value: chance, exclusions, Spearman-Brown.
    pub note: Option<String>,
    /// Index into `StudyReport::published` of the paper's number for it.
    pub published: Option<usize>,
}

/// An arm's learning curve for one architecture, over its succeeded seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmCurve {
    pub arm: String,
    pub arch: String,
    pub points: Vec<CurvePoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub epoch: u32,
    pub phase: crate::views::Phase,
    /// Training samples shown up to the end of this epoch (head warmup included), the mean
    /// over seeds (they agree at a matched budget).
    pub samples_seen: f64,
    /// The fraction of the training samples this epoch trained on, the mean over seeds.
    #[serde(default)]
    pub data_fraction: Option<f64>,
    pub accuracy: Option<Interval>,
    pub macro_f1: Option<Interval>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmReport {
    pub arm: String,
    pub arch: String,
    /// (seed, final validation accuracy, macro-F1) of each succeeded run.
    pub seeds: Vec<(u64, Option<f64>, Option<f64>)>,
    /// Training samples shown in the first fine-tuning epoch (the matched budget; an RbF arm
    /// on due samples only shows fewer as samples are recalled, see `data_fraction`).
    pub samples_per_epoch: Option<u64>,
    /// The fraction of the training samples a fine-tuning epoch trained on: each seed's mean
    /// over its fine-tuning epochs, with its interval over seeds (RbF's saving).
    #[serde(default)]
    pub data_fraction: Option<Interval>,
    pub accuracy: Option<Interval>,
    pub macro_f1: Option<Interval>,
    /// This arm's accuracy minus the `random` arm's, paired by seed; `None` without a random arm.
    pub accuracy_vs_random: Option<Interval>,
    /// The same for macro-F1.
    #[serde(default)]
    pub macro_f1_vs_random: Option<Interval>,
}

/// A mean over seeds with its 95 % Student-t interval (`half_width` NaN -> null with one seed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub half_width: Option<f64>,
    pub n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub finding: String,
    pub paper: String,
}

/// The paper's numbers (docs/design.md, arXiv:2604.11508).
/// The paper the study reproduces, as the report cites it (docs/design.md, "The science").
pub const PAPER: &str = "“Not All Forgetting Is Equal: Architecture-Dependent Retention Dynamics in Fine-Tuned Image Classifiers”, arXiv:2604.11508 (2026)";
/// The same, short, for a column heading.
pub const PAPER_SHORT: &str = "arXiv:2604.11508, 2026";

pub fn published() -> Vec<Published> {
    [
        ("Cross-architecture Jaccard of the top-10 % forgotten sets", "0.34 (OCT), 0.15 (CUB); chance 0.053"),
        ("Mean R² of the exponential retention-decay fit", "DeiT-Small 0.74, ResNet-18 0.52"),
        ("Cross-seed Spearman of per-sample forgetting", "~0.01 (Toneva et al. 2019: Pearson 0.89 on CIFAR-10 from scratch)"),
        (
            "Spearman(loss after head warm-up, decay constant)",
            "0.30 to 0.50, as \"loss after warm-up predicts the decay constant\"; the paper does not say whether its decay constant is tau or the rate 1/tau, so both are shown",
        ),
        ("Static spaced repetition by tau against random sampling", "no improvement"),
        ("Class-level forgetting", "consistent across runs; visually similar classes are forgotten most (into each other)"),
    ]
    .into_iter()
    .map(|(finding, paper)| Published { finding: finding.into(), paper: paper.into() })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preset_expands_into_its_grid_and_the_request_wins_over_it() {
        let request = StudyRequest {
            preset: Some(json!("architecture-dependent-forgetting-small")),
            base: Some(json!({"epochs": 5, "train_subset": ""})),
            arms: Some(json!(["full", {"kind": "random", "budget": 0.5}])),
            ..Default::default()
        };
        let plan = request.plan().unwrap();
        assert_eq!(plan.name, "architecture-dependent-forgetting-small");
        assert_eq!(plan.runs.len(), 2 * 3 * 2);
        let first = &plan.runs[0];
        assert_eq!((first.arch.as_str(), first.seed, first.arm), ("resnet18", 1, 0));
        assert_eq!(first.request.epochs, Some(json!(5)), "the request's base wins");
        assert_eq!(first.request.train_subset, Some(json!(512)), "an empty field keeps the preset's");
        assert_eq!(first.request.sampling, None, "the full arm is the default schedule");
        let last = plan.runs.last().unwrap();
        assert_eq!((last.arch.as_str(), last.seed, last.arm), ("deit_small", 3, 1));
        assert_eq!(last.request.sampling, Some(json!({"kind": "random", "budget": 0.5})));
    }

    /// Issue 22, item 4: the subset arms a study compares share one budget.
    #[test]
    fn arms_at_different_budgets_are_refused_naming_them() {
        let at = |arms: Value| StudyRequest { archs: Some(json!(["small_cnn"])), seeds: Some(json!([1])), arms: Some(arms), ..Default::default() }.plan();
        let errors = at(json!(["full", {"kind": "random", "budget": 0.5}, {"kind": "rbf", "budget": 0.3}])).unwrap_err();
        assert_eq!(
            errors.get("arms"),
            Some("the arms a study compares must train on one budget, got arms[1] random at budget 0.5, arms[2] rbf at budget 0.3; give them the same budget")
        );
        assert!(at(json!(["full", {"kind": "random", "budget": 0.5}, {"kind": "leitner", "budget": 0.5}])).is_ok(), "full plus one budget");
    }

    #[test]
    fn every_mistake_gets_a_message_naming_its_field() {
        let request = StudyRequest {
            preset: Some(json!("nope")),
            base: Some(json!({"seed": 3})),
            archs: Some(json!([7])),
            seeds: Some(json!("1,x")),
            arms: Some(json!([{"kind": "leitner", "budget": 2}])),
            ..Default::default()
        };
        let errors = request.plan().unwrap_err();
        assert!(errors.get("preset").unwrap().contains("unknown preset"));
        assert!(errors.get("base").unwrap().contains("set per run"));
        assert!(errors.get("archs").unwrap().contains("a name or"));
        assert!(errors.get("seeds").unwrap().contains("whole numbers"));
        assert!(errors.get("arms[0]").unwrap().contains("budget"), "{errors:?}");
        let repeated = StudyRequest { archs: Some(json!("resnet18")), seeds: Some(json!([1, 1])), ..Default::default() }.plan().unwrap_err();
        assert!(repeated.get("seeds").unwrap().contains("each seed once"));
        let weights = StudyRequest { archs: Some(json!([{"arch": "resnet18", "weights": "r18.safetensors"}])), seeds: Some(json!([4])), ..Default::default() }
            .plan()
            .unwrap();
        assert_eq!(weights.runs[0].request.weights, Some(json!("r18.safetensors")));
    }
}
