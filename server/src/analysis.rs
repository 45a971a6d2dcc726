//! Analysis over stored runs: exports of records and per-sample statistics, and comparisons
//! of runs joined on their samples' content keys.

use std::collections::HashMap;

use protocol::worker::{EpochColumns, ManifestEntry};
use protocol::{CompareQuery, Comparison, Failure, SampleHistory, SampleStats, Trajectory};
use sqlx::{Row, SqlitePool};

use crate::db::internal;
use crate::records;

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
async fn epochs(pool: &SqlitePool, run_id: i64) -> Result<Vec<(u32, String, EpochColumns)>, Failure> {
    let phases: HashMap<i64, String> =
        sqlx::query_as("SELECT epoch, phase FROM epoch_metrics WHERE run_id = ?").bind(run_id).fetch_all(pool).await.map_err(internal)?.into_iter().collect();
    let records = records::read(pool, run_id).await?;
    records
        .epochs
        .into_iter()
        .zip(records.columns)
        .map(|(epoch, columns)| {
            let phase = phases.get(&i64::from(epoch)).cloned().ok_or_else(|| internal(format!("run #{run_id} has records but no metrics for epoch {epoch}")))?;
            Ok((epoch, phase, columns))
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

/// `records.parquet` / `records.csv`: every stored epoch of a run, DESIGN.md's columns.
pub async fn records(pool: &SqlitePool, run_id: i64, format: Format) -> Result<Vec<u8>, Failure> {
    let samples = manifest(pool, run_id).await?;
    let epochs = epochs(pool, run_id).await?;
    tokio::task::spawn_blocking(move || {
        let records = epochs.iter().map(|(epoch, phase, columns)| export::EpochRecords { run: run_id, epoch: *epoch, phase, samples: &samples, columns });
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

/// Scores the compare route may rank by, with the column they come from.
const SCORES: &[&str] = &["forgetting_events", "learning_events", "variability", "warmup_loss", "tau", "r2", "confidence", "correctness"];

struct RunScores {
    id: i64,
    dataset: String,
    /// sample_key -> (score, never learned)
    scores: HashMap<String, (Option<f64>, bool)>,
}

async fn run_scores(pool: &SqlitePool, run_id: i64, score: &str) -> Result<RunScores, Failure> {
    let row = sqlx::query("SELECT r.dataset, j.status FROM runs r JOIN jobs j ON j.run_id = r.id WHERE r.id = ?")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(internal)?
        .ok_or_else(|| Failure::not_found(format!("no run #{run_id}")))?;
    let status: String = row.get("status");
    if status != "succeeded" {
        return Err(Failure::conflict(format!("run #{run_id} is {status}; only finished runs (succeeded) have statistics to compare")));
    }
    // `score` is one of SCORES: safe to name as a column.
    let rows: Vec<(String, Option<f64>, bool)> = sqlx::query_as(&format!("SELECT sample_key, CAST({score} AS REAL), never_learned FROM sample_stats WHERE run_id = ?"))
        .bind(run_id)
        .fetch_all(pool)
        .await
        .map_err(internal)?;
    Ok(RunScores { id: run_id, dataset: row.get("dataset"), scores: rows.into_iter().map(|(k, s, n)| (k, (s, n))).collect() })
}

/// `GET /api/v1/compare`.
pub async fn compare(pool: &SqlitePool, query: CompareQuery) -> Result<Comparison, Failure> {
    let ids: Vec<i64> = query
        .runs
        .split(',')
        .map(|s| s.trim().parse::<i64>().map_err(|_| Failure::bad_request(format!("runs must be run ids separated by commas, got {:?}", query.runs))))
        .collect::<Result<_, _>>()?;
    if ids.len() < 2 || ids.len() > 50 {
        return Err(Failure::bad_request(format!("compare 2 to 50 runs, got {}", ids.len())));
    }
    let q = query.q.unwrap_or(0.1);
    if !(q > 0.0 && q <= 1.0) {
        return Err(Failure::bad_request(format!("q must be a fraction above 0 and at most 1, got {q}")));
    }
    let score = query.score.clone().unwrap_or_else(|| "forgetting_events".into());
    if !SCORES.contains(&score.as_str()) {
        return Err(Failure::bad_request(format!("unknown score {score:?}; choose one of {}", SCORES.join(", "))));
    }
    let exclude_never_learned = match query.never_learned.as_deref().unwrap_or("max") {
        "max" => false,
        "exclude" => true,
        other => return Err(Failure::bad_request(format!("never_learned must be max or exclude, got {other:?}"))),
    };
    let mut runs = Vec::new();
    for &id in &ids {
        runs.push(run_scores(pool, id, &score).await?);
    }
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
    let mut keys: Vec<&String> = runs[0].scores.keys().filter(|k| runs.iter().all(|r| r.scores.contains_key(*k))).collect();
    if !intersect && runs.iter().any(|r| r.scores.len() != keys.len()) {
        let sizes: Vec<String> = runs.iter().map(|r| format!("#{}: {}", r.id, r.scores.len())).collect();
        return Err(Failure::conflict(format!(
            "the runs hold different samples ({}; {} shared); add intersect=true to compare the shared ones",
            sizes.join(", "),
            keys.len()
        )));
    }
    let never_learned_anywhere = |key: &String| runs.iter().any(|r| r.scores[key].1);
    if exclude_never_learned && score == "forgetting_events" {
        keys.retain(|k| !never_learned_anywhere(k));
    }
    // Samples without a value of the score (tau of an excluded fit) drop out of every run.
    keys.retain(|k| runs.iter().all(|r| r.scores[*k].0.is_some()));
    keys.sort();
    if keys.len() < 3 {
        return Err(Failure::conflict(format!("only {} samples are left to compare; nothing meaningful can be said", keys.len())));
    }
    let vectors: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| {
            let values: Vec<f64> = keys.iter().map(|k| r.scores[*k].0.unwrap_or(0.0)).collect();
            if score == "forgetting_events" && !exclude_never_learned {
                // Toneva et al.: never-learned samples rank above every forgotten one.
                let top = values.iter().cloned().fold(0.0, f64::max) + 1.0;
                keys.iter().zip(values).map(|(k, v)| if r.scores[*k].1 { top } else { v }).collect()
            } else {
                values
            }
        })
        .collect();
    let ids_for_seed = ids.clone();
    tokio::task::spawn_blocking(move || Ok(matrices(&ids_for_seed, &vectors, q, score)))
        .await
        .map_err(internal)?
}

fn matrices(ids: &[i64], vectors: &[Vec<f64>], q: f64, score: String) -> Comparison {
    let k = vectors.len();
    let sets: Vec<dynamics::TopSet> = vectors.iter().zip(ids).map(|(v, &id)| dynamics::top_set(v, q, id as u64)).collect();
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
        chance: dynamics::chance_jaccard(q),
        set_sizes: sets.iter().map(|s| s.size as u64).collect(),
        zero_scores: sets.iter().map(|s| s.zero_scores as u64).collect(),
        tied_at_cut: sets.iter().map(|s| s.tied_at_cut as u64).collect(),
    };
    let finite = |c: dynamics::Correlation| c.r.is_finite().then_some(c.r);
    for i in 0..k {
        for j in i..k {
            let (a, b) = (&vectors[i], &vectors[j]);
            let values = [
                dynamics::jaccard(&sets[i].members, &sets[j].members),
                finite(dynamics::spearman(a, b)),
                finite(dynamics::kendall_tau_b(a, b)),
                finite(dynamics::pearson(a, b)),
            ];
            let forgotten: (Vec<f64>, Vec<f64>) = a.iter().zip(b).filter(|(x, y)| **x > 0.0 && **y > 0.0).map(|(x, y)| (*x, *y)).unzip();
            let spearman_forgotten = finite(dynamics::spearman(&forgotten.0, &forgotten.1));
            for (matrix, value) in [&mut comparison.jaccard, &mut comparison.spearman, &mut comparison.kendall, &mut comparison.pearson].into_iter().zip(values) {
                matrix[i][j] = value;
                matrix[j][i] = value;
            }
            comparison.spearman_forgotten[i][j] = spearman_forgotten;
            comparison.spearman_forgotten[j][i] = spearman_forgotten;
        }
    }
    comparison
}

/// `GET /runs/{id}/samples/{key}`: the sample's trajectory in this run and in every other
/// finished run over the same dataset: one record block per run (`records::trace`).
pub async fn sample_history(pool: &SqlitePool, run_id: i64, key: &str, stats_of: fn(&sqlx::sqlite::SqliteRow) -> SampleStats) -> Result<SampleHistory, Failure> {
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
         WHERE s.sample_key = ? AND r.dataset = ? ORDER BY s.run_id",
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
