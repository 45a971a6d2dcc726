//! Analysis over stored runs: exports of records and per-sample statistics, and comparisons
//! of runs joined on their samples' content keys.

use std::collections::HashMap;

use protocol::pack::{unpack_f32, unpack_u32};
use protocol::worker::{EpochColumns, ManifestEntry};
use protocol::{
    ArchSummary, ClassAccuracy, ClassForgetting, ClassReport, CompareMember, CompareQuery, CompareSummary, Comparison, CorrelationView, DataMap, DecayCounts,
    Failure, Grid, JaccardPoint, PairView, RunAnalysis, SampleHistory, SampleRef, SampleSet, SampleStats, Trajectory,
};
use sqlx::{Row, SqlitePool};

use dynamics::{NeverLearnedPolicy, Score};

use crate::codec;
use crate::db::internal;
use crate::records::{self, RunRecords};

/// A run's samples in recording order.
async fn manifest(pool: &SqlitePool, run_id: i64) -> Result<Vec<ManifestEntry>, Failure> {
    let rows: Vec<(i64, String, i64)> = sqlx::query_as("SELECT dataset_index, sample_key, label FROM run_samples WHERE run_id = ? ORDER BY sample_index")
        .bind(run_id)
        .fetch_all(pool)
        .await
        .map_err(internal)?;
    Ok(rows.into_iter().map(|(index, key, label)| ManifestEntry { dataset_index: index as u32, sample_key: key, label: label as u32 }).collect())
}

/// Every stored epoch of a run: (epoch, phase, records).
/// Each recorded epoch of a run: its phase, its records, and the samples its schedule
/// trained on (`None`: every sample).
async fn epochs(pool: &SqlitePool, run_id: i64, samples: usize) -> Result<Vec<(u32, String, EpochColumns, Option<Vec<bool>>)>, Failure> {
    let phases: HashMap<i64, String> =
        sqlx::query_as("SELECT epoch, phase FROM epoch_metrics WHERE run_id = ?").bind(run_id).fetch_all(pool).await.map_err(internal)?.into_iter().collect();
    let shown: HashMap<i64, Vec<u8>> =
        sqlx::query_as("SELECT epoch, shown FROM epoch_shown WHERE run_id = ?").bind(run_id).fetch_all(pool).await.map_err(internal)?.into_iter().collect();
    let records = records::read(pool, run_id).await?;
    records
        .epochs
        .into_iter()
        .zip(records.columns)
        .map(|(epoch, columns)| {
            let phase =
                phases.get(&i64::from(epoch)).cloned().ok_or_else(|| internal(format!("run #{run_id} has records but no metrics for epoch {epoch}")))?;
            let shown = shown.get(&i64::from(epoch)).map(|bits| protocol::pack::unpack_bits(bits, samples)).transpose().map_err(internal)?;
            Ok((epoch, phase, columns, shown))
        })
        .collect()
}

/// The formats of the export routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// `records.parquet` / `records.csv`: every stored epoch of a run, the record columns of docs/design.md.
pub async fn records(pool: &SqlitePool, run_id: i64, format: Format) -> Result<Vec<u8>, Failure> {
    let samples = manifest(pool, run_id).await?;
    let epochs = epochs(pool, run_id, samples.len()).await?;
    tokio::task::spawn_blocking(move || {
        let records = epochs.iter().map(|(epoch, phase, columns, shown)| export::EpochRecords {
            run: run_id,
            epoch: *epoch,
            phase,
            samples: &samples,
            columns,
            shown: shown.as_deref(),
        });
        let mut out = Vec::new();
        match format {
            Format::Parquet => export::write_records_parquet(&mut out, records),
            Format::Csv => export::write_records_csv(&mut out, records),
        }
        .map_err(internal)?;
        Ok(out)
    })
    .await
    .map_err(internal)?
}

/// `samples.parquet` / `samples.csv`: the run's per-sample statistics in recording order.
pub async fn samples(run_id: i64, stats: Vec<SampleStats>, format: Format) -> Result<Vec<u8>, Failure> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        match format {
            Format::Parquet => export::write_samples_parquet(&mut out, run_id, &stats),
            Format::Csv => export::write_samples_csv(&mut out, run_id, &stats),
        }
        .map_err(internal)?;
        Ok(out)
    })
    .await
    .map_err(internal)?
}

/// The per-sample statistics of compared runs in one file, restricted to the samples every
/// run holds (content keys), in the first run's order; runs over different sample sets are
/// refused unless `intersect`.
pub async fn comparison_samples(runs: Vec<(i64, Vec<SampleStats>)>, intersect: bool, format: Format) -> Result<Vec<u8>, Failure> {
    let keys: Vec<std::collections::HashSet<&str>> = runs.iter().map(|(_, s)| s.iter().map(|s| s.sample_key.as_str()).collect()).collect();
    let shared: std::collections::HashSet<&str> = keys[0].iter().copied().filter(|k| keys.iter().all(|set| set.contains(k))).collect();
    if !intersect && keys.iter().any(|set| set.len() != shared.len()) {
        let sizes: Vec<String> = runs.iter().map(|(id, s)| format!("#{id}: {}", s.len())).collect();
        return Err(Failure::conflict(format!(
            "the runs hold different samples ({}; {} shared); add intersect=true to export the shared ones",
            sizes.join(", "),
            shared.len()
        )));
    }
    let order: HashMap<&str, usize> = runs[0].1.iter().enumerate().map(|(i, s)| (s.sample_key.as_str(), i)).collect();
    let kept: Vec<(i64, Vec<SampleStats>)> = runs
        .iter()
        .map(|(id, stats)| {
            let mut rows: Vec<SampleStats> = stats.iter().filter(|s| shared.contains(s.sample_key.as_str())).cloned().collect();
            rows.sort_by_key(|s| order[s.sample_key.as_str()]);
            (*id, rows)
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        let parts: Vec<(i64, &[SampleStats])> = kept.iter().map(|(id, rows)| (*id, rows.as_slice())).collect();
        let mut out = Vec::new();
        match format {
            Format::Parquet => export::write_runs_samples_parquet(&mut out, &parts),
            Format::Csv => export::write_runs_samples_csv(&mut out, &parts),
        }
        .map_err(internal)?;
        Ok(out)
    })
    .await
    .map_err(internal)?
}

pub fn correlation_view(c: dynamics::Correlation) -> CorrelationView {
    CorrelationView { r: c.r.is_finite().then_some(c.r), p_value: c.p_value, n: c.n as u64 }
}

/// A finished run's analysis as a whole, from its per-sample summaries (computed under
/// `settings`) and records (in sample order; `labels[i]` is sample i's): decay-fit counts and
/// warmup predictability, and the per-class forgetting with its forgotten-into matrix over
/// the same epoch window, with the settings recorded beside them.
pub fn run_analysis(
    summaries: &[dynamics::SampleSummary],
    records: &RunRecords,
    labels: &[u32],
    classes: usize,
    warmup_epochs: usize,
    settings: dynamics::AnalysisSettings,
) -> (RunAnalysis, ClassForgetting) {
    let policy = settings.never_learned;
    let first = settings.window.start(warmup_epochs).min(records.columns.len());
    let window = &records.columns[first..];
    let window_epochs = records.epochs.get(first).zip(records.epochs.last()).map(|(&a, &b)| [a, b]);
    let decays: Vec<dynamics::Decay> = summaries.iter().map(|s| s.decay).collect();
    let counted = dynamics::decay::summarize_fits(&decays);
    let mut decay = DecayCounts {
        fitted: counted.fitted as u64,
        never_learned: counted.never_learned as u64,
        too_few_points: counted.too_few_points as u64,
        constant: counted.constant as u64,
        mean_r2: counted.mean_r2,
        median_r2: counted.median_r2,
        exponential_preferred: counted.exponential_preferred as u64,
        r2_histogram: vec![0; 20],
        r2_below_zero: 0,
    };
    for fit in decays.iter().filter_map(dynamics::Decay::fitted) {
        match fit.exponential.r2 {
            r2 if r2 < 0.0 => decay.r2_below_zero += 1,
            r2 => decay.r2_histogram[((r2 * 20.0) as usize).min(19)] += 1,
        }
    }
    // Warm-up predictability over the fine-tuning epochs only (`dynamics::warmup`): the
    // summaries themselves under the fine-tuning window; under `all`, the decay is refitted
    // (same definition) without the warm-up epochs that produced the loss.
    let (warmup_predictability, warmup_vs_rate) = match warmup_epochs {
        0 => (None, None),
        warmup => {
            let fine_tuning: Vec<dynamics::SampleValues> = if settings.window == dynamics::Window::FineTuning {
                summaries.iter().map(dynamics::SampleValues::of).collect()
            } else {
                let columns: Vec<dynamics::TraceColumns> =
                    records.columns[warmup.min(records.columns.len())..].iter().map(protocol::worker::EpochColumns::trace).collect();
                let refit = dynamics::AnalysisSettings { window: dynamics::Window::All, ..settings };
                dynamics::summarize_samples(&columns, 0, None, refit).iter().map(dynamics::SampleValues::of).collect()
            };
            let loss: Vec<Option<f64>> = summaries.iter().map(|s| s.warmup_loss.map(f64::from)).collect();
            let w = dynamics::warmup::predictability(&fine_tuning, &loss);
            (Some(correlation_view(w.tau)), Some(correlation_view(w.rate)))
        }
    };
    let mut samples = vec![0u64; classes];
    let mut never_learned = vec![0u64; classes];
    for (&label, summary) in labels.iter().zip(summaries) {
        samples[label as usize] += 1;
        never_learned[label as usize] += u64::from(summary.events.never_learned());
    }
    let values: Vec<dynamics::SampleValues> = summaries.iter().map(dynamics::SampleValues::of).collect();
    let epochs = window.len() as u32;
    let forgetting_mean = dynamics::classes::class_forgetting(labels, &values, epochs, classes, policy);
    let forgetting_total = dynamics::classes::class_forgetting_sums(labels, &values, epochs, classes, policy).into_iter().map(|(total, _)| total).collect();
    let correct: Vec<&[u8]> = window.iter().map(|c| c.correct.as_slice()).collect();
    let predicted: Vec<&[u16]> = window.iter().map(|c| c.predicted.as_slice()).collect();
    let classes_view = ClassForgetting {
        samples,
        forgetting_mean,
        forgetting_total,
        never_learned,
        forgotten_into: dynamics::classes::forgotten_into(labels, &correct, &predicted, classes),
    };
    let el2n_epoch = dynamics::summary::el2n_epoch(records.columns.len(), warmup_epochs, settings);
    (RunAnalysis { settings, window_epochs, el2n_epoch, decay, warmup_predictability, warmup_vs_rate }, classes_view)
}

/// A stored confusion matrix (`epoch_metrics.val_confusion`: u32 LE, row-major, square) as
/// rows `[true][predicted]`.
pub fn confusion_matrix(bytes: &[u8]) -> Result<Vec<Vec<u32>>, String> {
    let cells = unpack_u32(bytes).map_err(|e| e.to_string())?;
    let side = (cells.len() as f64).sqrt().round() as usize;
    if side * side != cells.len() {
        return Err(format!("a confusion matrix of {} cells is not square", cells.len()));
    }
    Ok(cells.chunks(side.max(1)).map(<[u32]>::to_vec).collect())
}

/// `GET /api/v1/runs/{id}/classes`.
pub async fn class_report(pool: &SqlitePool, run_id: i64, class_names: Vec<String>) -> Result<ClassReport, Failure> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT classes FROM run_analysis WHERE run_id = ?").bind(run_id).fetch_optional(pool).await.map_err(internal)?;
    let forgetting: ClassForgetting = match stored {
        Some(json) => serde_json::from_str(&json).map_err(internal)?,
        None => return Err(Failure::conflict(format!("run #{run_id} has no class-level analysis: it has not succeeded (or finished before this version)"))),
    };
    let classes = forgetting.samples.len();
    let confusions: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT epoch, val_confusion FROM epoch_metrics WHERE run_id = ? AND val_confusion IS NOT NULL ORDER BY epoch")
            .bind(run_id)
            .fetch_all(pool)
            .await
            .map_err(internal)?;
    let mut val_accuracy = Vec::new();
    let mut val_confusion = None;
    for (epoch, bytes) in confusions {
        let matrix = confusion_matrix(&bytes).map_err(|e| internal(format!("run #{run_id} epoch {epoch}: {e}")))?;
        if matrix.len() != classes {
            return Err(internal(format!("run #{run_id} epoch {epoch}: a confusion matrix of {} classes for {classes}", matrix.len())));
        }
        let accuracy = matrix
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let total: u64 = row.iter().map(|&n| u64::from(n)).sum();
                (total > 0).then(|| f64::from(row[c]) / total as f64)
            })
            .collect();
        val_accuracy.push(ClassAccuracy { epoch: epoch as u32, accuracy });
        val_confusion = Some(matrix);
    }
    let means: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT dim, means FROM run_class_means WHERE run_id = ?").bind(run_id).fetch_optional(pool).await.map_err(internal)?;
    let embedding_similarity = match means {
        Some((dim, bytes)) => Some(dynamics::classes::embedding_similarity(&unpack_f32(&bytes).map_err(internal)?, dim.max(1) as usize)),
        None => None,
    };
    let confusion_similarity = val_confusion.as_deref().map(dynamics::classes::confusion_similarity);
    let similarity_agreement = match (&confusion_similarity, &embedding_similarity) {
        (Some(a), Some(b)) => Some(correlation_view(dynamics::spearman(&dynamics::classes::upper_triangle(a), &dynamics::classes::upper_triangle(b)))),
        _ => None,
    };
    let forgetting_follows_confusion = confusion_similarity.as_ref().map(|similarity| {
        let into = &forgetting.forgotten_into;
        let symmetric: Vec<Vec<f64>> = (0..classes).map(|i| (0..classes).map(|j| (into[i][j] + into[j][i]) as f64).collect()).collect();
        correlation_view(dynamics::spearman(&dynamics::classes::upper_triangle(&symmetric), &dynamics::classes::upper_triangle(similarity)))
    });
    let similar = |similarity: &Option<Vec<Vec<f64>>>| {
        similarity.as_deref().map(|s| correlation_view(dynamics::classes::similar_classes_forgotten_most(&forgetting.forgetting_mean, s)))
    };
    let (similar_forgotten_confusion, similar_forgotten_embedding) = (similar(&confusion_similarity), similar(&embedding_similarity));
    Ok(ClassReport {
        run_id,
        class_names,
        forgetting,
        val_accuracy,
        val_confusion,
        confusion_similarity,
        embedding_similarity,
        similarity_agreement,
        forgetting_follows_confusion,
        similar_forgotten_confusion,
        similar_forgotten_embedding,
    })
}

/// A run's per-sample statistics as rankings read them, by sample key, in sample order.
pub async fn sample_values(pool: &SqlitePool, run_id: i64) -> Result<Vec<(String, dynamics::SampleValues)>, Failure> {
    let rows = sqlx::query(
        "SELECT sample_key, sample_index, dataset_index, label, forgetting_events, learning_events, first_learned_epoch, never_learned, unforgettable,
                confidence, variability, correctness, tau, r2, warmup_loss, mean_margin, el2n, last_predicted FROM sample_stats WHERE run_id = ? ORDER BY sample_index",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .map_err(internal)?;
    Ok(rows.iter().map(|row| (row.get("sample_key"), crate::service::sample_stats_of(row).values())).collect())
}

/// A run's per-sample statistics as packed columns (`run_columns`), in sample order: every
/// stored statistic of `dynamics::Score` as f64 (NaN where it has no value), and
/// `never_learned` and `unforgettable` as 0/1. Written when a run succeeds, so a comparison
/// reads a few BLOBs per run instead of 10^5 rows.
pub fn score_columns(summaries: &[dynamics::SampleSummary]) -> Vec<(&'static str, Vec<u8>)> {
    let values: Vec<dynamics::SampleValues> = summaries.iter().map(dynamics::SampleValues::of).collect();
    let mut columns: Vec<(&'static str, Vec<u8>)> = Score::ALL
        .iter()
        .filter(|s| s.stored())
        .map(|&score| {
            let raw: Vec<u8> = values.iter().flat_map(|v| score.value(v).unwrap_or(f64::NAN).to_le_bytes()).collect();
            (score.as_str(), codec::encode(&raw, 8))
        })
        .collect();
    columns.push(("never_learned", codec::encode(&values.iter().map(|v| u8::from(v.never_learned)).collect::<Vec<_>>(), 1)));
    columns.push(("unforgettable", codec::encode(&values.iter().map(|v| u8::from(v.unforgettable)).collect::<Vec<_>>(), 1)));
    columns
}

/// The packed columns a ranking by `score` reads (`dynamics::Score::ranked_value`).
fn columns_for(score: Score) -> Vec<&'static str> {
    let mut names = vec!["never_learned", "unforgettable", "forgetting_events"];
    match score {
        Score::Tau | Score::DecayRate | Score::R2 => names.extend(["tau", "r2"]),
        Score::OneMinusConfidence => names.push("confidence"),
        score if !names.contains(&score.as_str()) => names.push(score.as_str()),
        _ => {}
    }
    names
}

/// Per-sample values rebuilt from packed columns: the fields `columns_for` names, the rest
/// left at their defaults (a ranking by that score reads no other). `None` when a column is
/// missing (a run finished before it was packed) or the lengths disagree.
fn values_from_columns(stored: &HashMap<String, Vec<u8>>, score: Score) -> Option<Vec<dynamics::SampleValues>> {
    let names = columns_for(score);
    if !names.iter().all(|n| stored.contains_key(*n)) {
        return None;
    }
    let flags = |name: &str| stored[name].iter().map(|&b| b != 0).collect::<Vec<bool>>();
    let (never, kept) = (flags("never_learned"), flags("unforgettable"));
    let floats: HashMap<&str, Vec<f64>> = names.iter().filter(|n| !matches!(**n, "never_learned" | "unforgettable")).map(|n| (*n, f64s(&stored[*n]))).collect();
    let n = never.len();
    if kept.len() != n || floats.values().any(|v| v.len() != n) {
        return None;
    }
    let at = |name: &str, i: usize| floats.get(name).map(|v| v[i]).filter(|x| !x.is_nan());
    Some(
        (0..n)
            .map(|i| dynamics::SampleValues {
                forgetting_events: at("forgetting_events", i).unwrap_or(0.0) as u32,
                learning_events: at("learning_events", i).unwrap_or(0.0) as u32,
                first_learned_epoch: at("first_learned_epoch", i).map(|e| e as u32),
                never_learned: never[i],
                unforgettable: kept[i],
                confidence: at("confidence", i),
                variability: at("variability", i),
                correctness: at("correctness", i),
                tau: at("tau", i),
                r2: at("r2", i),
                warmup_loss: at("warmup_loss", i),
                mean_margin: at("mean_margin", i),
                el2n: at("el2n", i),
            })
            .collect(),
    )
}

/// Some of a run's packed per-sample columns (`run_columns`), decoded, by name; a column the
/// run does not have is absent.
async fn run_columns(pool: &SqlitePool, run_id: i64, names: &[&str]) -> Result<HashMap<String, Vec<u8>>, Failure> {
    let placeholders = vec!["?"; names.len()].join(", ");
    let sql = format!("SELECT name, data FROM run_columns WHERE run_id = ? AND name IN ({placeholders})");
    let mut query = sqlx::query_as::<_, (String, Vec<u8>)>(&sql).bind(run_id);
    for name in names {
        query = query.bind(*name);
    }
    let rows = query.fetch_all(pool).await.map_err(internal)?;
    rows.into_iter()
        .map(|(name, data)| {
            let raw = codec::decode(&data).map_err(|e| internal(format!("run #{run_id} column {name}: {e}")))?;
            Ok((name, raw))
        })
        .collect()
}

/// A column of little-endian f64 values.
fn f64s(raw: &[u8]) -> Vec<f64> {
    raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

/// One run of a comparison: its ranked scores per sample.
struct RunScores {
    id: i64,
    dataset: String,
    /// SHA-256 of the sample keys in order; equal digests: the same samples, same order.
    digest: Option<String>,
    /// From `run_columns`, in sample order: (ranked value or NaN, forgotten at least once).
    columns: Option<(Vec<f64>, Vec<bool>)>,
    /// Mean forgetting per class, from `run_analysis`.
    class_forgetting: Vec<Option<f64>>,
    member: CompareMember,
}

/// Each sample's ranked value of `score` under `policy` (NaN: left out), and whether it was
/// forgotten at least once.
fn ranked(values: &[dynamics::SampleValues], score: Score, policy: NeverLearnedPolicy) -> (Vec<f64>, Vec<bool>) {
    values.iter().map(|v| (score.ranked_value(v, policy).unwrap_or(f64::NAN), v.forgetting_events > 0)).unzip()
}

async fn run_scores(pool: &SqlitePool, run_id: i64, score: Score, policy: NeverLearnedPolicy) -> Result<RunScores, Failure> {
    let row = sqlx::query("SELECT r.dataset, r.arch, r.seed, r.manifest_digest, j.status FROM runs r JOIN jobs j ON j.run_id = r.id WHERE r.id = ?")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(internal)?
        .ok_or_else(|| Failure::not_found(format!("no run #{run_id}")))?;
    let status: String = row.get("status");
    if status != "succeeded" {
        return Err(Failure::conflict(format!("run #{run_id} is {status}; only finished runs (succeeded) have statistics to compare")));
    }
    let stored = run_columns(pool, run_id, &columns_for(score)).await?;
    let columns = values_from_columns(&stored, score).map(|values| ranked(&values, score, policy));
    let analysis: Option<(String, String)> =
        sqlx::query_as("SELECT summary, classes FROM run_analysis WHERE run_id = ?").bind(run_id).fetch_optional(pool).await.map_err(internal)?;
    let (summary, class_forgetting) = match analysis {
        Some((summary, classes)) => (
            Some(serde_json::from_str::<RunAnalysis>(&summary).map_err(internal)?),
            serde_json::from_str::<ClassForgetting>(&classes).map_err(internal)?.forgetting_mean,
        ),
        None => (None, Vec::new()),
    };
    let decay = summary.as_ref().map(|s| s.decay.clone()).unwrap_or_default();
    let member = CompareMember {
        id: run_id,
        dataset: row.get("dataset"),
        arch: row.get("arch"),
        seed: row.get::<i64, _>("seed") as u64,
        mean_r2: decay.mean_r2,
        median_r2: decay.median_r2,
        exponential_preferred: decay.exponential_preferred,
        settings: summary.as_ref().map_or(dynamics::AnalysisSettings::LEGACY, |s| s.settings),
        fitted: decay.fitted,
        excluded: decay.never_learned + decay.too_few_points + decay.constant,
        excluded_by_reason: [decay.never_learned, decay.too_few_points, decay.constant],
        warmup_spearman: summary.as_ref().and_then(|s| s.warmup_predictability).and_then(|c| c.r),
        warmup_rate_spearman: summary.and_then(|s| s.warmup_vs_rate).and_then(|c| c.r),
    };
    Ok(RunScores { id: run_id, dataset: member.dataset.clone(), digest: row.get("manifest_digest"), columns, class_forgetting, member })
}

/// Scores of the compared samples, aligned across runs: entry i of every vector is one sample.
struct Aligned {
    /// Each compared sample's position in the first run's sample order.
    positions: Vec<usize>,
    /// Ranked values (NaN: left out).
    scores: Vec<Vec<f64>>,
    forgotten: Vec<Vec<bool>>,
}

/// The slow path, for runs over different sample lists (or finished before `run_columns`):
/// joins `sample_stats` rows on content keys, in the first run's sample order.
async fn join_on_keys(pool: &SqlitePool, runs: &[RunScores], score: Score, policy: NeverLearnedPolicy, intersect: bool) -> Result<Aligned, Failure> {
    let mut tables = Vec::new();
    for run in runs {
        tables.push(sample_values(pool, run.id).await?);
    }
    let maps: Vec<HashMap<&str, usize>> = tables.iter().map(|rows| rows.iter().enumerate().map(|(i, r)| (r.0.as_str(), i)).collect()).collect();
    let shared: Vec<Vec<usize>> =
        tables[0].iter().filter_map(|row| maps.iter().map(|m| m.get(row.0.as_str()).copied()).collect::<Option<Vec<usize>>>()).collect();
    if !intersect && tables.iter().any(|t| t.len() != shared.len()) {
        let sizes: Vec<String> = runs.iter().zip(&tables).map(|(r, t)| format!("#{}: {}", r.id, t.len())).collect();
        return Err(Failure::conflict(format!(
            "the runs hold different samples ({}; {} shared); add intersect=true to compare the shared ones",
            sizes.join(", "),
            shared.len()
        )));
    }
    let (scores, forgotten) = (0..runs.len())
        .map(|r| {
            let values: Vec<dynamics::SampleValues> = shared.iter().map(|at| tables[r][at[r]].1).collect();
            ranked(&values, score, policy)
        })
        .unzip();
    Ok(Aligned { positions: shared.iter().map(|at| at[0]).collect(), scores, forgotten })
}

/// Infinite ranked values (never-learned samples under `max`, tau of a sample never
/// forgotten) replaced by finite ones just past the run's finite range, 1 beyond its largest
/// (smallest): every rank, and so Spearman, Kendall and the top-q sets, stays the same, and
/// Pearson is defined (as Toneva et al. count a never-learned sample with more forgetting
/// events than any learned one).
fn finite_ranks(values: &[f64]) -> Vec<f64> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (low, high) = if low > high { (0.0, 0.0) } else { (low, high) };
    values
        .iter()
        .map(|&v| match v {
            f64::INFINITY => high + 1.0,
            f64::NEG_INFINITY => low - 1.0,
            v => v,
        })
        .collect()
}

/// Comparisons already computed, by query, each with the state of its runs when computed: an
/// entry is used only while every run is unchanged (same status, attempts, finish time).
#[derive(Default)]
pub struct CompareCache {
    entries: std::sync::Mutex<HashMap<String, (Vec<String>, Comparison)>>,
}

/// Entries kept; the cache is emptied when it is full.
const CACHED_COMPARISONS: usize = 64;

impl CompareCache {
    /// `GET /api/v1/compare`, answered from the cache while its runs are unchanged.
    pub async fn compare(&self, pool: &SqlitePool, query: CompareQuery) -> Result<Comparison, Failure> {
        let key = serde_json::to_string(&query).map_err(internal)?;
        let ids = parse_ids(&query.runs)?;
        let mut versions = Vec::new();
        for id in &ids {
            versions.push(run_version(pool, *id).await?.unwrap_or_default());
        }
        if let Some((_, comparison)) = self.entries.lock().unwrap().get(&key).filter(|(seen, _)| *seen == versions) {
            return Ok(comparison.clone());
        }
        let comparison = compare(pool, query).await?;
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= CACHED_COMPARISONS {
            entries.clear();
        }
        entries.insert(key, (versions, comparison.clone()));
        Ok(comparison)
    }
}

/// A run's state as far as its stored results go (status, attempts, finish time): they change
/// only when it finishes again. `None`: no such run.
pub async fn run_version(pool: &SqlitePool, run_id: i64) -> Result<Option<String>, Failure> {
    sqlx::query_scalar("SELECT status || '/' || attempts || '/' || COALESCE(finished_at, '') FROM jobs WHERE run_id = ?")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(internal)
}

/// What the run page draws from a finished run's stored results, kept per run with the run's
/// state when computed ([`run_version`]) and used while it is unchanged. The data map reads
/// three packed columns of every sample, the forgetting histogram counts every sample: 10-20 ms
/// for 100,000 samples on every load of the page, for results that change only with a retry.
#[derive(Default)]
pub struct RunCache {
    data_maps: PerRun<DataMap>,
    /// (samples recorded, samples per forgetting-event count).
    histograms: PerRun<(u64, Vec<u64>)>,
}

/// Runs kept per kind; the cache of a kind is emptied when it is full.
const CACHED_RUNS: usize = 256;

struct PerRun<T>(std::sync::Mutex<HashMap<i64, (String, T)>>);

impl<T> Default for PerRun<T> {
    fn default() -> Self {
        PerRun(Default::default())
    }
}

impl<T: Clone> PerRun<T> {
    fn get(&self, run_id: i64, version: &str) -> Option<T> {
        let entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&run_id).filter(|(seen, _)| seen == version).map(|(_, value)| value.clone())
    }

    fn put(&self, run_id: i64, version: String, value: T) {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHED_RUNS {
            entries.clear();
        }
        entries.insert(run_id, (version, value));
    }
}

impl RunCache {
    /// [`data_map`], answered from the cache while the run is unchanged.
    pub async fn data_map(&self, pool: &SqlitePool, run_id: i64) -> Result<DataMap, Failure> {
        let version = run_version(pool, run_id).await?;
        if let Some(map) = version.as_deref().and_then(|v| self.data_maps.get(run_id, v)) {
            return Ok(map);
        }
        let map = data_map(pool, run_id).await?;
        if let Some(version) = version {
            self.data_maps.put(run_id, version, map.clone());
        }
        Ok(map)
    }

    /// How many samples a run recorded, and how many of them have each count of forgetting
    /// events; from the cache while the run is unchanged, once it has finished.
    pub async fn forgetting_histogram(&self, pool: &SqlitePool, run_id: i64) -> Result<(u64, Vec<u64>), Failure> {
        let version = run_version(pool, run_id).await?;
        // Only finished runs: their statistics are written before the status says so.
        let finished = version.filter(|v| ["succeeded/", "failed/", "cancelled/"].iter().any(|s| v.starts_with(s)));
        if let Some(cached) = finished.as_deref().and_then(|v| self.histograms.get(run_id, v)) {
            return Ok(cached);
        }
        let sample_count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM run_samples WHERE run_id = ?").bind(run_id).fetch_one(pool).await.map_err(internal)?;
        let counts: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT forgetting_events, COUNT(*) FROM sample_stats WHERE run_id = ?{} GROUP BY forgetting_events ORDER BY forgetting_events",
            crate::service::PUBLISHED
        ))
        .bind(run_id)
        .fetch_all(pool)
        .await
        .map_err(internal)?;
        let mut histogram = vec![0u64; counts.last().map_or(0, |(k, _)| *k as usize + 1)];
        for (events, count) in counts {
            histogram[events as usize] = count as u64;
        }
        let computed = (sample_count as u64, histogram);
        if let Some(version) = finished {
            self.histograms.put(run_id, version, computed.clone());
        }
        Ok(computed)
    }
}

pub fn parse_ids(runs: &str) -> Result<Vec<i64>, Failure> {
    let ids: Vec<i64> = runs
        .split(',')
        .map(|s| s.trim().parse::<i64>().map_err(|_| Failure::bad_request(format!("runs must be run ids separated by commas, got {runs:?}"))))
        .collect::<Result<_, _>>()?;
    if ids.len() < 2 || ids.len() > 50 {
        return Err(Failure::bad_request(format!("compare 2 to 50 runs, got {}", ids.len())));
    }
    Ok(ids)
}

/// `GET /api/v1/compare`, computed.
pub async fn compare(pool: &SqlitePool, query: CompareQuery) -> Result<Comparison, Failure> {
    let ids = parse_ids(&query.runs)?;
    let q = query.q.unwrap_or(0.1);
    if !(q > 0.0 && q <= 1.0) {
        return Err(Failure::bad_request(format!("q must be a fraction above 0 and at most 1, got {q}")));
    }
    let name = query.score.as_deref().unwrap_or("forgetting_events");
    let score =
        Score::parse(name).ok_or_else(|| Failure::bad_request(format!("unknown score {name:?}; choose one of {}", protocol::sampling::score_names())))?;
    let text = query.never_learned.as_deref().unwrap_or("max");
    let policy = NeverLearnedPolicy::parse(text).ok_or_else(|| Failure::bad_request(format!("never_learned must be max or exclude, got {text:?}")))?;
    let curve: Vec<f64> = match query.curve.as_deref().filter(|c| !c.trim().is_empty()) {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|q| q.trim().parse::<f64>().ok().filter(|q| *q > 0.0 && *q <= 1.0))
            .collect::<Option<Vec<f64>>>()
            .filter(|qs| qs.len() <= 50)
            .ok_or_else(|| Failure::bad_request(format!("curve must be up to 50 fractions in (0, 1] separated by commas, got {list:?}")))?,
    };
    // `None`: no pair; `Some(None)`: `auto`, chosen once the runs' architectures are known.
    let pair: Option<Option<(usize, usize)>> = match query.pair.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some("auto") => Some(None),
        Some(text) => {
            let at = |id: i64| ids.iter().position(|&r| r == id);
            let parsed: Option<(usize, usize)> = text.split_once(',').and_then(|(a, b)| Some((at(a.trim().parse().ok()?)?, at(b.trim().parse().ok()?)?)));
            Some(Some(
                parsed
                    .filter(|(a, b)| a != b)
                    .ok_or_else(|| Failure::bad_request(format!("pair must be two different runs of `runs` as a,b, or auto, got {text:?}")))?,
            ))
        }
    };
    let mut runs = Vec::new();
    for &id in &ids {
        runs.push(run_scores(pool, id, score, policy).await?);
    }
    let members: Vec<CompareMember> = runs.iter().map(|r| r.member.clone()).collect();
    // `auto`: the first two runs of different architectures (what a study compares), else the first two.
    let pair = pair.map(|chosen| {
        chosen.unwrap_or_else(|| {
            let k = members.len();
            (0..k).flat_map(|i| (i + 1..k).map(move |j| (i, j))).find(|&(i, j)| members[i].arch != members[j].arch).unwrap_or((0, 1))
        })
    });
    // The first run's samples, to name those of the pair's sets.
    let first_manifest = if pair.is_some() { manifest(pool, ids[0]).await? } else { Vec::new() };
    let class_forgetting: Vec<Vec<Option<f64>>> = runs.iter().map(|r| r.class_forgetting.clone()).collect();
    // Runs are joined on content keys; different datasets or sample sets are refused unless
    // the caller asks for the intersection.
    let intersect = query.intersect.unwrap_or(false);
    for pair in runs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.dataset != b.dataset && !intersect {
            return Err(Failure::conflict(format!(
                "runs #{} and #{} are over different datasets ({} and {}); add intersect=true to compare the samples they share",
                a.id, b.id, a.dataset, b.dataset
            )));
        }
    }
    // Same samples in the same order (equal digests) and packed columns: no join needed.
    let same_samples = runs.iter().all(|r| r.digest.is_some() && r.digest == runs[0].digest && r.columns.is_some());
    let aligned = if same_samples {
        let mut aligned = Aligned { positions: Vec::new(), scores: Vec::new(), forgotten: Vec::new() };
        for run in &mut runs {
            let (scores, forgotten) = run.columns.take().expect("checked");
            aligned.scores.push(scores);
            aligned.forgotten.push(forgotten);
        }
        aligned.positions = (0..aligned.scores[0].len()).collect();
        aligned
    } else {
        join_on_keys(pool, &runs, score, policy, intersect).await?
    };
    tokio::task::spawn_blocking(move || {
        let k = aligned.scores.len();
        // Samples without a ranked value in some run (never learned under `exclude`, a
        // statistic undefined for the sample) drop out of every run.
        let keep: Vec<usize> = (0..aligned.scores[0].len()).filter(|&i| (0..k).all(|r| !aligned.scores[r][i].is_nan())).collect();
        if keep.len() < 3 {
            return Err(Failure::conflict(format!("only {} samples are left to compare; nothing meaningful can be said", keep.len())));
        }
        // Values in the score's units (finite), and the keys the top-q sets take: higher is
        // more forgotten, whichever the score's direction.
        let vectors: Vec<Vec<f64>> = (0..k).map(|r| finite_ranks(&keep.iter().map(|&i| aligned.scores[r][i]).collect::<Vec<_>>())).collect();
        let keys: Vec<Vec<f64>> = vectors.iter().map(|v| v.iter().map(|&x| score.forgotten_key(x)).collect()).collect();
        let forgotten: Vec<Vec<bool>> = aligned.forgotten.iter().map(|f| keep.iter().map(|&i| f[i]).collect()).collect();
        let mut comparison = matrices(&ids, &keys, &forgotten, q, score.as_str().to_owned());
        comparison.direction = score.direction().as_str().to_owned();
        comparison.score_meaning = score.meaning().to_owned();
        comparison.never_learned = policy.as_str().to_owned();
        comparison.class_consistency = class_consistency(&class_forgetting);
        comparison.class_forgetting = class_forgetting;
        comparison.jaccard_curve = curve
            .iter()
            .map(|&q| {
                let sets: Vec<Vec<usize>> = keys.iter().zip(&ids).map(|(v, &id)| dynamics::top_set(v, q, id as u64).members).collect();
                let values: Vec<f64> =
                    (0..k).flat_map(|i| (i + 1..k).map(move |j| (i, j))).filter_map(|(i, j)| dynamics::jaccard(&sets[i], &sets[j])).collect();
                let jaccard = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
                JaccardPoint { q, jaccard, chance: dynamics::chance_jaccard(q) }
            })
            .collect();
        comparison.seeds_combined = seeds_combined(&members, &aligned.scores, &keep, score, q);
        comparison.summary = Some(summarize(&members, &comparison));
        comparison.members = members;
        comparison.pair = pair.map(|(a, b)| {
            let named = |i: usize| {
                let entry = &first_manifest[aligned.positions[keep[i]]];
                SampleRef { sample_key: entry.sample_key.clone(), dataset_index: entry.dataset_index, label: entry.label }
            };
            pair_view(ids[a], ids[b], (&vectors[a], &vectors[b]), (&keys[a], &keys[b]), q, named)
        });
        Ok(comparison)
    })
    .await
    .map_err(internal)?
}

/// The compared runs grouped by architecture, each group's ranked values combined per sample
/// over its seeds (`dynamics::Score::over_seeds`), and the groups' top-q sets and Spearman
/// between architectures. `scores[r][i]` is run r's ranked value of sample i, `keep` the
/// samples every run has a value for. `None` with fewer than two architectures.
fn seeds_combined(members: &[CompareMember], scores: &[Vec<f64>], keep: &[usize], score: Score, q: f64) -> Option<protocol::SeedsCombined> {
    let mut archs: Vec<String> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (r, member) in members.iter().enumerate() {
        match archs.iter().position(|a| *a == member.arch) {
            Some(g) => groups[g].push(r),
            None => {
                archs.push(member.arch.clone());
                groups.push(vec![r]);
            }
        }
    }
    if archs.len() < 2 {
        return None;
    }
    let keys: Vec<Vec<f64>> = groups
        .iter()
        .map(|group| {
            let combined: Vec<f64> =
                keep.iter().map(|&i| score.over_seeds(&group.iter().map(|&r| Some(scores[r][i])).collect::<Vec<_>>()).unwrap_or(f64::NAN)).collect();
            finite_ranks(&combined).into_iter().map(|v| score.forgotten_key(v)).collect()
        })
        .collect();
    let sets: Vec<dynamics::TopSet> = keys.iter().zip(&groups).map(|(k, group)| dynamics::top_set(k, q, members[group[0]].id as u64)).collect();
    let g = archs.len();
    let mut jaccard = vec![vec![None; g]; g];
    let mut spearman = vec![vec![None; g]; g];
    for a in 0..g {
        for b in 0..g {
            jaccard[a][b] = dynamics::jaccard(&sets[a].members, &sets[b].members);
            let r = dynamics::spearman(&keys[a], &keys[b]).r;
            spearman[a][b] = r.is_finite().then_some(r);
        }
    }
    Some(protocol::SeedsCombined {
        archs,
        runs: groups.iter().map(|group| group.iter().map(|&r| members[r].id).collect()).collect(),
        combination: score.seed_combination().to_owned(),
        jaccard,
        spearman,
        set_sizes: sets.iter().map(|s| s.size as u64).collect(),
    })
}

/// Samples named in each set of a pair's set algebra.
const PAIR_EXAMPLES: usize = 24;

/// Two runs' scores binned against each other, and their top-q sets split into a only, b
/// only and both, each with its highest-scoring examples.
/// `values` are the two runs' scores (the scatter), `keys` the same turned so that higher is
/// more forgotten (the sets, and the order of their examples).
fn pair_view(a: i64, b: i64, (values_a, values_b): (&[f64], &[f64]), (x, y): (&[f64], &[f64]), q: f64, named: impl Fn(usize) -> SampleRef) -> PairView {
    let scatter = score_grid(values_a, values_b);
    let in_a = dynamics::top_set(x, q, a as u64).members;
    let in_b = dynamics::top_set(y, q, b as u64).members;
    let (mut only_a, mut only_b, mut both) = (Vec::new(), Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    // Both lists are ascending: one merge splits them.
    while i < in_a.len() || j < in_b.len() {
        match (in_a.get(i), in_b.get(j)) {
            (Some(&s), Some(&t)) if s == t => {
                both.push(s);
                i += 1;
                j += 1;
            }
            (Some(&s), Some(&t)) if s < t => {
                only_a.push(s);
                i += 1;
            }
            (Some(&s), None) => {
                only_a.push(s);
                i += 1;
            }
            (_, Some(&t)) => {
                only_b.push(t);
                j += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    let set = |mut members: Vec<usize>, score: &dyn Fn(usize) -> f64| {
        let count = members.len() as u64;
        members.sort_by(|&s, &t| score(t).total_cmp(&score(s)).then(s.cmp(&t)));
        SampleSet { count, examples: members.into_iter().take(PAIR_EXAMPLES).map(&named).collect() }
    };
    PairView { a, b, scatter, only_a: set(only_a, &|s| x[s]), only_b: set(only_b, &|s| y[s]), both: set(both, &|s| x[s] + y[s]) }
}

/// Bins of a scatter: one per value when both scores are whole numbers over a short range
/// (forgetting events), else 40 equal bins per axis over the values' range.
fn score_grid(x: &[f64], y: &[f64]) -> Grid {
    let axis = |v: &[f64]| {
        let (lo, hi) = v.iter().filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if !lo.is_finite() {
            return (0.0, 1.0, 1);
        }
        if v.iter().all(|x| x.fract() == 0.0) && hi - lo <= 60.0 {
            (lo - 0.5, hi + 0.5, (hi - lo) as u32 + 1)
        } else if hi > lo {
            (lo, hi, 40)
        } else {
            (lo - 0.5, hi + 0.5, 1)
        }
    };
    grid(x.iter().zip(y).map(|(&x, &y)| (x, y, None)), axis(x), axis(y))
}

/// Counts points `(x, y, value)` into cells over `(min, max, bins)` per axis (a point on the
/// top edge goes into the last cell); with values, the mean value per cell too. Points with
/// a coordinate that is not finite or outside the range are counted as missing.
pub fn grid(points: impl Iterator<Item = (f64, f64, Option<f64>)>, x_axis: (f64, f64, u32), y_axis: (f64, f64, u32)) -> Grid {
    let ((x_min, x_max, x_bins), (y_min, y_max, y_bins)) = (x_axis, y_axis);
    let cells = (x_bins * y_bins) as usize;
    let mut counts = vec![0u64; cells];
    let mut sums = vec![0f64; cells];
    let mut valued = vec![0u64; cells];
    let (mut points_in, mut missing) = (0u64, 0u64);
    let bin = |v: f64, min: f64, max: f64, bins: u32| -> Option<usize> {
        if !(v.is_finite() && v >= min && v <= max) {
            return None;
        }
        Some((((v - min) / (max - min) * f64::from(bins)) as usize).min(bins as usize - 1))
    };
    for (x, y, value) in points {
        match (bin(x, x_min, x_max, x_bins), bin(y, y_min, y_max, y_bins)) {
            (Some(i), Some(j)) => {
                let cell = j * x_bins as usize + i;
                counts[cell] += 1;
                points_in += 1;
                if let Some(v) = value.filter(|v| v.is_finite()) {
                    sums[cell] += v;
                    valued[cell] += 1;
                }
            }
            _ => missing += 1,
        }
    }
    let any_values = valued.iter().any(|&n| n > 0);
    Grid {
        x_min,
        x_max,
        y_min,
        y_max,
        x_bins,
        y_bins,
        counts,
        means: any_values.then(|| sums.iter().zip(&valued).map(|(&s, &n)| (n > 0).then(|| s / n as f64)).collect()),
        points: points_in,
        missing,
    }
}

/// Cells per axis of the data map.
const DATA_MAP_BINS: u32 = 40;

/// `GET /runs/{id}/datamap`: variability (x, over [0, 0.5], the largest standard deviation
/// of a probability) against confidence (y, over [0, 1]), cells coloured by mean correctness.
pub async fn data_map(pool: &SqlitePool, run_id: i64) -> Result<DataMap, Failure> {
    let mut stored = run_columns(pool, run_id, &["variability", "confidence", "correctness"]).await?;
    let points: Vec<(f64, f64, Option<f64>)> = match (stored.remove("variability"), stored.remove("confidence"), stored.remove("correctness")) {
        (Some(v), Some(c), Some(k)) => f64s(&v).into_iter().zip(f64s(&c)).zip(f64s(&k)).map(|((v, c), k)| (v, c, Some(k))).collect(),
        // Runs finished before run_columns existed.
        _ => {
            let rows: Vec<(Option<f64>, Option<f64>, Option<f64>)> =
                sqlx::query_as("SELECT variability, confidence, correctness FROM sample_stats WHERE run_id = ?")
                    .bind(run_id)
                    .fetch_all(pool)
                    .await
                    .map_err(internal)?;
            if rows.is_empty() {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM jobs WHERE run_id = ?").bind(run_id).fetch_optional(pool).await.map_err(internal)?;
                return Err(match status {
                    None => Failure::not_found(format!("no run #{run_id}")),
                    Some(status) => Failure::conflict(format!("run #{run_id} is {status}; the data map is drawn when a run has succeeded")),
                });
            }
            rows.into_iter().map(|(v, c, k)| (v.unwrap_or(f64::NAN), c.unwrap_or(f64::NAN), k)).collect()
        }
    };
    let grid = grid(points.into_iter(), (0.0, 0.5, DATA_MAP_BINS), (0.0, 1.0, DATA_MAP_BINS));
    Ok(DataMap { run_id, grid })
}

/// The findings of docs/design.md over compared runs: different architectures against one
/// architecture's seeds, and per architecture its fits and warmup predictability.
fn summarize(members: &[CompareMember], comparison: &Comparison) -> CompareSummary {
    let k = members.len();
    let mean = |values: &[f64]| (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    let pairs: Vec<(usize, usize)> = (0..k).flat_map(|i| (i + 1..k).map(move |j| (i, j))).collect();
    let cross_arch: Vec<(usize, usize)> = pairs.iter().copied().filter(|&(i, j)| members[i].arch != members[j].arch).collect();
    let cross_seed: Vec<(usize, usize)> =
        pairs.iter().copied().filter(|&(i, j)| members[i].arch == members[j].arch && members[i].seed != members[j].seed).collect();
    let values = |set: &[(usize, usize)], matrix: &[Vec<Option<f64>>]| set.iter().filter_map(|&(i, j)| matrix[i][j]).collect::<Vec<f64>>();
    let mut archs: Vec<&str> = members.iter().map(|m| m.arch.as_str()).collect();
    archs.sort();
    archs.dedup();
    let per_arch = archs
        .into_iter()
        .map(|arch| {
            let of_arch: Vec<&CompareMember> = members.iter().filter(|m| m.arch == arch).collect();
            let seeds: Vec<(usize, usize)> = cross_seed.iter().copied().filter(|&(i, _)| members[i].arch == arch).collect();
            let spearman = mean(&values(&seeds, &comparison.spearman));
            ArchSummary {
                arch: arch.to_owned(),
                runs: of_arch.len() as u64,
                mean_r2: mean(&of_arch.iter().filter_map(|m| m.mean_r2).collect::<Vec<_>>()),
                median_r2: mean(&of_arch.iter().filter_map(|m| m.median_r2).collect::<Vec<_>>()),
                fitted: of_arch.iter().map(|m| m.fitted).sum(),
                excluded: of_arch.iter().map(|m| m.excluded).sum(),
                excluded_by_reason: std::array::from_fn(|reason| of_arch.iter().map(|m| m.excluded_by_reason[reason]).sum()),
                exponential_preferred: of_arch.iter().map(|m| m.exponential_preferred).sum(),
                cross_seed_spearman: spearman,
                reliability: spearman.filter(|_| of_arch.len() > 1).map(|r| dynamics::spearman_brown(r, of_arch.len() as f64)),
                warmup_spearman: mean(&of_arch.iter().filter_map(|m| m.warmup_spearman).collect::<Vec<_>>()),
            }
        })
        .collect();
    CompareSummary {
        cross_arch_jaccard: mean(&values(&cross_arch, &comparison.jaccard)),
        cross_arch_pairs: cross_arch.len() as u64,
        cross_seed_jaccard: mean(&values(&cross_seed, &comparison.jaccard)),
        cross_seed_spearman: mean(&values(&cross_seed, &comparison.spearman)),
        cross_seed_pairs: cross_seed.len() as u64,
        chance: comparison.chance,
        per_arch,
    }
}

/// Spearman between every two runs' per-class forgetting, over the classes with a value in
/// both (`None` where the class lists differ or fewer than 3 classes remain).
fn class_consistency(per_run: &[Vec<Option<f64>>]) -> Vec<Vec<Option<f64>>> {
    let k = per_run.len();
    (0..k)
        .map(|i| {
            (0..k)
                .map(|j| {
                    let (a, b) = (&per_run[i], &per_run[j]);
                    if a.len() != b.len() {
                        return None;
                    }
                    let (x, y): (Vec<f64>, Vec<f64>) = a.iter().zip(b).filter_map(|(x, y)| Some(((*x)?, (*y)?))).unzip();
                    let r = dynamics::spearman(&x, &y).r;
                    r.is_finite().then_some(r)
                })
                .collect()
        })
        .collect()
}

/// Every pair's Jaccard of the top-q sets and correlations, pairs spread over the cores.
fn matrices(ids: &[i64], vectors: &[Vec<f64>], forgotten: &[Vec<bool>], q: f64, score: String) -> Comparison {
    let k = vectors.len();
    let sets: Vec<dynamics::TopSet> = vectors.iter().zip(ids).map(|(v, &id)| dynamics::top_set(v, q, id as u64)).collect();
    let ranks: Vec<Vec<f64>> = vectors.iter().map(|v| dynamics::average_ranks(v)).collect();
    let mut comparison = Comparison {
        runs: ids.to_vec(),
        q,
        score,
        samples: vectors[0].len() as u64,
        jaccard: vec![vec![None; k]; k],
        spearman: vec![vec![None; k]; k],
        kendall: vec![vec![None; k]; k],
        pearson: vec![vec![None; k]; k],
        spearman_forgotten: vec![vec![None; k]; k],
        spearman_p: vec![vec![None; k]; k],
        kendall_p: vec![vec![None; k]; k],
        pearson_p: vec![vec![None; k]; k],
        spearman_forgotten_p: vec![vec![None; k]; k],
        forgotten_pairs: vec![vec![0; k]; k],
        spearman_forgotten_either: vec![vec![None; k]; k],
        spearman_forgotten_either_p: vec![vec![None; k]; k],
        forgotten_either: vec![vec![0; k]; k],
        reliability: None,
        class_forgetting: Vec::new(),
        class_consistency: Vec::new(),
        jaccard_curve: Vec::new(),
        chance: dynamics::chance_jaccard(q),
        set_sizes: sets.iter().map(|s| s.size as u64).collect(),
        zero_scores: sets.iter().map(|s| s.zero_scores as u64).collect(),
        tied_at_cut: sets.iter().map(|s| s.tied_at_cut as u64).collect(),
        direction: String::new(),
        score_meaning: String::new(),
        never_learned: String::new(),
        members: Vec::new(),
        summary: None,
        pair: None,
        seeds_combined: None,
    };
    let pairs: Vec<(usize, usize)> = (0..k).flat_map(|i| (i..k).map(move |j| (i, j))).collect();
    let pair = |&(i, j): &(usize, usize)| {
        let in_both: Vec<usize> = (0..vectors[i].len()).filter(|&s| forgotten[i][s] && forgotten[j][s]).collect();
        let in_either: Vec<usize> = (0..vectors[i].len()).filter(|&s| forgotten[i][s] || forgotten[j][s]).collect();
        let subset = |v: &[f64]| in_both.iter().map(|&s| v[s]).collect::<Vec<f64>>();
        let union = |v: &[f64]| in_either.iter().map(|&s| v[s]).collect::<Vec<f64>>();
        let correlations = if i == j {
            // A run against itself: r = 1 unless the scores are constant; no p-value.
            let own = |v: &[f64]| {
                let varies = v.iter().any(|x| *x != v[0]);
                dynamics::Correlation { r: if varies && v.len() >= 2 { 1.0 } else { f64::NAN }, p_value: None, n: v.len() }
            };
            let all = own(&vectors[i]);
            [all, all, all, own(&subset(&vectors[i])), own(&union(&vectors[i]))]
        } else {
            // Spearman is Pearson's r of the average ranks, ranked once per run.
            [
                dynamics::pearson(&ranks[i], &ranks[j]),
                dynamics::kendall_tau_b(&vectors[i], &vectors[j]),
                dynamics::pearson(&vectors[i], &vectors[j]),
                dynamics::spearman(&subset(&vectors[i]), &subset(&vectors[j])),
                dynamics::spearman(&union(&vectors[i]), &union(&vectors[j])),
            ]
        };
        ((i, j), dynamics::jaccard(&sets[i].members, &sets[j].members), correlations, (in_both.len() as u64, in_either.len() as u64))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(pairs.len()).max(1);
    let results: Vec<_> = std::thread::scope(|scope| {
        let (pairs, pair) = (&pairs, &pair);
        let handles: Vec<_> = (0..threads).map(|t| scope.spawn(move || pairs.iter().skip(t).step_by(threads).map(pair).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("a comparison thread panicked")).collect()
    });
    let finite = |c: &dynamics::Correlation| c.r.is_finite().then_some(c.r);
    for ((i, j), jaccard, correlations, (in_both, in_either)) in results {
        let [spearman, kendall, pearson, spearman_forgotten, spearman_either] = &correlations;
        for (matrix, value) in [
            (&mut comparison.jaccard, jaccard),
            (&mut comparison.spearman, finite(spearman)),
            (&mut comparison.kendall, finite(kendall)),
            (&mut comparison.pearson, finite(pearson)),
            (&mut comparison.spearman_forgotten, finite(spearman_forgotten)),
            (&mut comparison.spearman_p, spearman.p_value),
            (&mut comparison.kendall_p, kendall.p_value),
            (&mut comparison.pearson_p, pearson.p_value),
            (&mut comparison.spearman_forgotten_p, spearman_forgotten.p_value),
            (&mut comparison.spearman_forgotten_either, finite(spearman_either)),
            (&mut comparison.spearman_forgotten_either_p, spearman_either.p_value),
        ] {
            matrix[i][j] = value;
            matrix[j][i] = value;
        }
        comparison.forgotten_pairs[i][j] = in_both;
        comparison.forgotten_pairs[j][i] = in_both;
        comparison.forgotten_either[i][j] = in_either;
        comparison.forgotten_either[j][i] = in_either;
    }
    let off_diagonal: Vec<Option<f64>> = (0..k).flat_map(|i| (i + 1..k).map(move |j| (i, j))).map(|(i, j)| comparison.spearman[i][j]).collect();
    comparison.reliability =
        off_diagonal.iter().copied().collect::<Option<Vec<f64>>>().map(|rs| dynamics::spearman_brown(rs.iter().sum::<f64>() / rs.len() as f64, k as f64));
    comparison
}

/// `GET /runs/{id}/samples/{key}`: the sample's trajectory in this run and in every other
/// finished run over the same dataset: one record block per run (`records::trace`).
pub async fn sample_history(
    pool: &SqlitePool,
    run_id: i64,
    key: &str,
    stats_of: fn(&sqlx::sqlite::SqliteRow) -> SampleStats,
) -> Result<SampleHistory, Failure> {
    let dataset: String = sqlx::query_scalar("SELECT dataset FROM runs WHERE id = ?")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(internal)?
        .ok_or_else(|| Failure::not_found(format!("no run #{run_id}")))?;
    let rows = sqlx::query(
        "SELECT s.*, r.arch, r.seed
         FROM sample_stats s
         JOIN runs r ON r.id = s.run_id
         WHERE s.sample_key = ? AND r.dataset = ? AND s.run_id NOT IN (SELECT run_id FROM jobs WHERE status = 'analysing') ORDER BY s.run_id",
    )
    .bind(key)
    .bind(&dataset)
    .fetch_all(pool)
    .await
    .map_err(internal)?;
    let mut this_run = None;
    let mut other_runs = Vec::new();
    for row in &rows {
        let (run, stats) = (row.get("run_id"), stats_of(row));
        let trace = records::trace(pool, run, stats.sample_index as usize).await?;
        let trajectory = Trajectory {
            run_id: run,
            arch: row.get("arch"),
            seed: row.get::<i64, _>("seed") as u64,
            stats,
            correct: trace.correct,
            p_true: trace.p_true,
            loss: trace.loss,
            predicted: trace.predicted,
        };
        if trajectory.run_id == run_id {
            this_run = Some(trajectory);
        } else {
            other_runs.push(trajectory);
        }
    }
    let this_run = this_run.ok_or_else(|| {
        Failure::not_found(format!("run #{run_id} has no finished statistics for sample {key:?} (an unknown key, or the run has not succeeded yet)"))
    })?;
    Ok(SampleHistory { sample_key: key.to_owned(), this_run, other_runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_combine_per_architecture_before_the_architectures_are_compared() {
        let member = |id: i64, arch: &str, seed: u64| CompareMember {
            id,
            dataset: "d".into(),
            arch: arch.into(),
            seed,
            mean_r2: None,
            median_r2: None,
            exponential_preferred: 0,
            settings: dynamics::AnalysisSettings::default(),
            fitted: 0,
            excluded: 0,
            excluded_by_reason: [0; 3],
            warmup_spearman: None,
            warmup_rate_spearman: None,
        };
        let members = [member(1, "resnet18", 1), member(2, "deit_small", 1), member(3, "resnet18", 2), member(4, "deit_small", 2)];
        // Forgetting events of 10 samples. Each seed alone tops a different pair; summed over
        // its two seeds (Toneva et al.), each architecture tops samples 0 and 1.
        let events = |spikes: &[(usize, f64)]| {
            let mut v = vec![0.0; 10];
            for &(i, x) in spikes {
                v[i] = x;
            }
            v
        };
        let scores = [events(&[(0, 5.0), (9, 1.0)]), events(&[(1, 3.0), (8, 1.0)]), events(&[(1, 4.0), (9, 1.0)]), events(&[(0, 6.0), (7, 1.0)])];
        let keep: Vec<usize> = (0..10).collect();
        let combined = seeds_combined(&members, &scores, &keep, Score::ForgettingEvents, 0.2).unwrap();
        assert_eq!(combined.archs, ["resnet18", "deit_small"]);
        assert_eq!(combined.runs, [vec![1, 3], vec![2, 4]]);
        assert_eq!(combined.set_sizes, [2, 2]);
        assert_eq!(combined.jaccard[0][1], Some(1.0), "both architectures' seed sums top samples 0 and 1");
        assert!(combined.combination.contains("summed over seeds"));
        // One run against another of the other architecture shares nothing at q = 0.2.
        let one = dynamics::top_set(&scores[0], 0.2, 1).members;
        let other = dynamics::top_set(&scores[1], 0.2, 2).members;
        assert_eq!(dynamics::jaccard(&one, &other), Some(0.0));
        assert!(seeds_combined(&members[..1], &scores[..1], &keep, Score::ForgettingEvents, 0.2).is_none(), "one architecture");
    }

    /// A fresh database (in a folder kept while the guard lives) with one dataset `d`.
    async fn database_with_a_dataset() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::connect(&dir.path().join("t.db")).await.unwrap();
        sqlx::query("INSERT INTO datasets (name, format, path, num_classes, class_names, train_size, val_size, image_height, image_width, channels) VALUES ('d', 'idx', '/', 2, '[]', 3, 1, 1, 1, 1)")
            .execute(&pool)
            .await
            .unwrap();
        (dir, pool)
    }

    /// Every score, the default (forgetting_events) included, is read from the run's packed
    /// columns: the fast path of a comparison. A regression once sent the default score
    /// through the join on sample keys, 20 times slower at 10^5 samples.
    #[tokio::test]
    async fn every_score_reads_the_packed_columns() {
        let (_dir, pool) = database_with_a_dataset().await;
        sqlx::query("INSERT INTO runs (id, spec, dataset, arch, seed, epochs, manifest_digest) VALUES (1, '{}', 'd', 'small_cnn', 0, 3, 'abc')")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO jobs (run_id, status) VALUES (1, 'succeeded')").execute(&pool).await.unwrap();
        let epochs = [[1u8, 0, 1], [0, 1, 1], [1, 1, 0]];
        let p_true = [0.5f32; 3];
        let columns: Vec<dynamics::TraceColumns> = epochs.iter().map(|c| dynamics::TraceColumns::new(c, &p_true, &p_true)).collect();
        let summaries = dynamics::summarize_samples(&columns, 0, None, dynamics::AnalysisSettings::default());
        for (name, data) in score_columns(&summaries) {
            sqlx::query("INSERT INTO run_columns (run_id, name, data) VALUES (1, ?, ?)").bind(name).bind(data).execute(&pool).await.unwrap();
        }
        for &score in Score::ALL {
            let scores = run_scores(&pool, 1, score, NeverLearnedPolicy::Max).await.unwrap();
            let (values, forgotten) = scores.columns.unwrap_or_else(|| panic!("{score} was not read from the packed columns"));
            assert_eq!(forgotten, [true, false, true], "{score}: samples 0 and 2 go from correct to wrong once");
            let expected: Vec<f64> =
                summaries.iter().map(|s| score.ranked_value(&dynamics::SampleValues::of(s), NeverLearnedPolicy::Max).unwrap_or(f64::NAN)).collect();
            assert_eq!(format!("{values:?}"), format!("{expected:?}"), "{score}: the packed columns rank as the summaries do");
        }
    }

    /// Audit finding (issue 17, item 1): a schedule's source values came straight from
    /// `sample_stats`, so a never-learned sample reached the pruner with 0 forgetting events
    /// and an unforgettable one with no tau. The rows now go through `dynamics`' ranking.
    #[tokio::test]
    async fn stored_statistics_rank_never_learned_and_unforgettable_samples() {
        let (_dir, pool) = database_with_a_dataset().await;
        sqlx::query("INSERT INTO runs (id, spec, dataset, arch, seed, epochs) VALUES (1, '{}', 'd', 'small_cnn', 0, 6)").execute(&pool).await.unwrap();
        // Never learned; unforgettable (constant retention: no fit); forgotten twice, fitted.
        sqlx::query(
            "INSERT INTO sample_stats (run_id, sample_index, sample_key, dataset_index, label, forgetting_events, learning_events, first_learned_epoch,
                 never_learned, unforgettable, confidence, variability, correctness, tau, r2, warmup_loss) VALUES
             (1, 0, 'never', 0, 0, 0, 0, NULL, 1, 0, 0.1, 0.05, 0.0, NULL, NULL, NULL),
             (1, 1, 'kept', 1, 1, 0, 1, 1, 0, 1, 0.9, 0.05, 1.0, NULL, NULL, NULL),
             (1, 2, 'flips', 2, 0, 2, 3, 1, 0, 0, 0.5, 0.3, 0.5, 2.5, 0.4, NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let rows = sample_values(&pool, 1).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["never", "kept", "flips"]);
        let ranked = |score: Score, policy| rows.iter().map(|(_, v)| score.ranked_value(v, policy)).collect::<Vec<_>>();
        let inf = f64::INFINITY;
        assert_eq!(ranked(Score::ForgettingEvents, NeverLearnedPolicy::Max), [Some(inf), Some(0.0), Some(2.0)]);
        assert_eq!(ranked(Score::ForgettingEvents, NeverLearnedPolicy::Exclude), [None, Some(0.0), Some(2.0)]);
        assert_eq!(ranked(Score::Tau, NeverLearnedPolicy::Max), [Some(-inf), Some(inf), Some(2.5)]);
        assert_eq!(ranked(Score::DecayRate, NeverLearnedPolicy::Max), [Some(inf), Some(0.0), Some(0.4)]);
    }

    /// Audit finding (issue 17, item 4): the top-q "forgotten" set took the highest values
    /// of every score; for tau, confidence, correctness and R^2 that is the least-forgotten
    /// end. Keys now turn every score so that the top-q set is its forgotten end.
    #[test]
    fn top_sets_take_the_forgotten_end_of_every_score() {
        // Confidence of 10 samples: 0.1 .. 1.0; the 20 % most forgotten are the two least confident.
        let confidence: Vec<f64> = (1..=10).map(|i| f64::from(i) / 10.0).collect();
        let keys: Vec<f64> = confidence.iter().map(|&c| Score::Confidence.forgotten_key(c)).collect();
        assert_eq!(dynamics::top_set(&keys, 0.2, 1).members, vec![0, 1]);
        // tau with an unforgettable sample (+inf) and a never-learned one (-inf under max).
        let tau = finite_ranks(&[f64::INFINITY, 3.0, f64::NEG_INFINITY, 9.0, 1.0]);
        assert_eq!(tau, vec![10.0, 3.0, 0.0, 9.0, 1.0]);
        let keys: Vec<f64> = tau.iter().map(|&t| Score::Tau.forgotten_key(t)).collect();
        assert_eq!(dynamics::top_set(&keys, 0.4, 1).members, vec![2, 4], "never learned, then the shortest tau");
    }
}
