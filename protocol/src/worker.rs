//! Messages of the worker protocol (docs/design.md, "Architecture"): a worker leases a job with
//! its worker token, then speaks only about that job with the job's own token: heartbeats
//! (whose answers carry cancellation), the sample manifest, one idempotent PUT per epoch, and
//! the end.
//!
//! Routes, all under `/api/v1/worker`:
//! - `POST /lease` (worker token) -> 200 [`Lease`] or 204 when the queue is empty; with a
//!   `job_id`, that job only (the worker token, or the token of a Slurm submission for it),
//!   409 when it is not queued;
//! - `POST /jobs/{job}/heartbeat` [`Heartbeat`] -> [`HeartbeatReply`];
//! - `PUT /jobs/{job}/samples` [`SampleManifest`];
//! - `PUT /jobs/{job}/epochs/{epoch}` [`EpochUpload`] (replaces, never duplicates);
//! - `POST /jobs/{job}/finish` [`Finish`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sampling::SampleScore;
use crate::spec::ExperimentSpec;
use crate::views::{DatasetInfo, EpochMetrics};

pub const TOKEN_HEADER: &str = "authorization";

/// Where the checkpoints of run `run_id` live under a worker's data folder: the worker writes
/// them and removes them when the run succeeds; the server removes those of runs that failed
/// long ago (`FORGETLAB_FAILED_CHECKPOINT_DAYS`).
pub fn checkpoint_dir(data_dir: &std::path::Path, run_id: i64) -> std::path::PathBuf {
    data_dir.join("checkpoints").join(format!("run-{run_id}"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// A name for logs and the jobs page, e.g. `host/cpu0`.
    pub worker: String,
    /// Lease this job only: a worker started by a batch scheduler for one job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    /// What the worker trains on, in words (as [`Heartbeat::device`]), for the jobs page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub job_id: i64,
    pub run_id: i64,
    /// Bearer token for this job's routes; valid while the job runs.
    pub job_token: String,
    pub spec: ExperimentSpec,
    pub dataset: DatasetInfo,
    /// Heartbeat at least this often or lose the lease.
    pub lease_seconds: u64,
    /// The earlier run's per-sample values that the spec's schedule needs
    /// (`spec.sampling.source()`), resolved by the server when it leases the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_values: Option<SourceValues>,
}

/// One per-sample statistic of an earlier run, keyed by sample key (runs are joined on keys,
/// never on positions). `None` where the run has no value (e.g. tau of a trace that was not
/// fitted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceValues {
    /// The first source run (the only one, unless several seeds were combined).
    pub run_id: i64,
    /// Every source run, when the schedule combined several (`dynamics::Score::over_seeds`).
    #[serde(default)]
    pub runs: Vec<i64>,
    pub score: SampleScore,
    /// Ranked values: a never-learned sample's is infinite (the forgotten end of its score,
    /// under the `max` policy), and so is the tau of a trace never forgotten. JSON has no
    /// infinity (serde_json writes it as `null`, which reads back as "no value", the other end
    /// of every ranking), so infinities travel as the strings `"inf"` and `"-inf"`.
    #[serde(with = "ranked_values")]
    pub values: BTreeMap<String, Option<f64>>,
}

/// [`SourceValues::values`] in JSON: numbers, `null`, and `"inf"` / `"-inf"` for infinities.
mod ranked_values {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Number(f64),
        Infinite(String),
    }

    pub fn serialize<S: Serializer>(values: &BTreeMap<String, Option<f64>>, serializer: S) -> Result<S::Ok, S::Error> {
        let wire: BTreeMap<&String, Option<Wire>> = values
            .iter()
            .map(|(key, value)| {
                let wire = value.filter(|v| !v.is_nan()).map(|v| match v {
                    f64::INFINITY => Wire::Infinite("inf".into()),
                    f64::NEG_INFINITY => Wire::Infinite("-inf".into()),
                    v => Wire::Number(v),
                });
                (key, wire)
            })
            .collect();
        wire.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, Option<f64>>, D::Error> {
        let wire = BTreeMap::<String, Option<Wire>>::deserialize(deserializer)?;
        wire.into_iter()
            .map(|(key, value)| {
                let value = match value {
                    None => None,
                    Some(Wire::Number(v)) => Some(v),
                    Some(Wire::Infinite(text)) => Some(match text.as_str() {
                        "inf" => f64::INFINITY,
                        "-inf" => f64::NEG_INFINITY,
                        other => return Err(serde::de::Error::custom(format!("a ranked value is a number, null, \"inf\" or \"-inf\", got {other:?}"))),
                    }),
                };
                Ok((key, value))
            })
            .collect()
    }
}

/// What a worker reports while it trains; also the live part of [`crate::Progress`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// `loading`, `warmup`, `finetune`, `measuring`, `validating`, `done` (or, on the
    /// server's side, the job's status while no worker reports).
    pub phase: String,
    /// 1-based epoch in progress (0 before the first).
    pub epoch: u32,
    pub step: u32,
    pub steps: u32,
    /// Mean training loss and accuracy of the epoch so far.
    pub loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub images_per_sec: Option<f64>,
    pub eta_seconds: Option<f64>,
    /// What the worker trains on, in words: `cuda:0 (1 of 1 GPUs)`, or `cpu` and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The worker process's resident host memory, in bytes (GPU memory is not reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// `POST /worker/jobs/{job}/log`: the worker's log lines since its last send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLines {
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Stop now: the job was cancelled.
    pub cancel: bool,
}

/// The run's training samples in recording order: position `i` is `sample_index` i.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleManifest {
    pub samples: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub dataset_index: u32,
    pub sample_key: String,
    pub label: u32,
}

/// One epoch: its metrics and every sample's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochUpload {
    pub metrics: EpochMetrics,
    pub columns: EpochColumns,
    /// The validation confusion matrix of this epoch, `classes x classes` counts, row-major:
    /// row = true class, column = predicted class. Absent when the run has no validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_confusion: Option<Vec<u32>>,
    /// Every training sample's loss in an eval-mode pass at the END of this epoch, in manifest
    /// order. Sent for the last head-warmup epoch: "the loss after head warmup" of docs/design.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<Vec<f32>>,
    /// The samples this epoch trained on, one bit per sample in manifest order
    /// ([`crate::pack::pack_bits`]). Sent for the fine-tuning epochs of every schedule but
    /// `full`; absent means every sample was shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown: Option<Vec<u8>>,
}

/// The class means of the training set's penultimate-layer embeddings at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMeans {
    /// Embedding width.
    pub dim: u32,
    /// `classes x dim`, row-major by label. A class without training samples has NaN-free
    /// zeros and a count of 0.
    pub means: Vec<f32>,
    /// Training samples per class.
    pub counts: Vec<u32>,
}

/// One epoch's per-sample records (docs/design.md, "Definitions"), every array in manifest order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochColumns {
    /// 1 when the predicted class is the true one, else 0.
    pub correct: Vec<u8>,
    /// Cross-entropy of the true class.
    pub loss: Vec<f32>,
    /// Softmax probability of the true class.
    pub p_true: Vec<f32>,
    /// True logit minus the largest other logit.
    pub margin: Vec<f32>,
    pub predicted: Vec<u16>,
    /// `||softmax - onehot||_2`.
    pub el2n: Vec<f32>,
}

impl EpochColumns {
    /// The columns `dynamics` summarises, margin and EL2N included.
    pub fn trace(&self) -> dynamics::TraceColumns<'_> {
        dynamics::TraceColumns { correct: &self.correct, p_true: &self.p_true, loss: &self.loss, margin: Some(&self.margin), el2n: Some(&self.el2n) }
    }

    /// Columns of `samples` zeros, to be filled in.
    pub fn zeroed(samples: usize) -> Self {
        Self {
            correct: vec![0; samples],
            loss: vec![0.0; samples],
            p_true: vec![0.0; samples],
            margin: vec![0.0; samples],
            predicted: vec![0; samples],
            el2n: vec![0.0; samples],
        }
    }

    /// Checks the arrays against the manifest length; returns a message saying what is off.
    pub fn check_lengths(&self, samples: usize) -> Result<(), String> {
        let lengths = [
            ("correct", self.correct.len()),
            ("loss", self.loss.len()),
            ("p_true", self.p_true.len()),
            ("margin", self.margin.len()),
            ("predicted", self.predicted.len()),
            ("el2n", self.el2n.len()),
        ];
        for (name, len) in lengths {
            if len != samples {
                return Err(format!("{name} has {len} values; the run has {samples} samples"));
            }
        }
        if let Some(bad) = self.correct.iter().find(|&&c| c > 1) {
            return Err(format!("correct must hold 0 or 1, found {bad}"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    pub outcome: Outcome,
    /// For a failure: what went wrong, shown to people on the jobs and run pages.
    pub message: Option<String>,
    /// For a success: the class-mean embeddings of the final model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_means: Option<ClassMeans>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A never-learned sample's ranked value is infinite; it must reach the worker as such
    /// (serde_json alone turns it into `null`, "no value", which ranks it at the other end).
    #[test]
    fn source_values_keep_their_infinities_through_json() {
        let values: BTreeMap<String, Option<f64>> =
            [("a", Some(f64::INFINITY)), ("b", Some(f64::NEG_INFINITY)), ("c", Some(0.25)), ("d", None), ("e", Some(f64::NAN))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        let sent = SourceValues { run_id: 1, runs: vec![1, 2], score: SampleScore::El2n, values };
        let json = serde_json::to_string(&sent).unwrap();
        assert!(json.contains(r#""values":{"a":"inf","b":"-inf","c":0.25,"d":null,"e":null}"#), "{json}");
        let received: SourceValues = serde_json::from_str(&json).unwrap();
        assert_eq!(received.values["a"], Some(f64::INFINITY));
        assert_eq!(received.values["b"], Some(f64::NEG_INFINITY));
        assert_eq!((received.values["c"], received.values["d"], received.values["e"]), (Some(0.25), None, None));
        let bad = json.replace(r#""-inf""#, r#""minus infinity""#);
        assert!(serde_json::from_str::<SourceValues>(&bad).unwrap_err().to_string().contains("\"minus infinity\""));
    }
}
