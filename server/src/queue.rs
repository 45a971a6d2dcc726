//! The job queue and the server side of the worker protocol (`protocol::worker`).
//!
//! A job is leased by one worker at a time with a token only that worker knows (stored
//! hashed); heartbeats renew the lease and carry cancellation back; each epoch is one
//! idempotent upsert; a job whose lease expires is re-queued (or failed after its attempts).

use std::sync::Arc;

use protocol::pack::{pack_f32, pack_u16, pack_u32};
use protocol::worker::{EpochUpload, Finish, Heartbeat, HeartbeatReply, Lease, LogLines, Outcome, SampleManifest, SourceValues};
use protocol::{ExperimentSpec, Failure, JobLog, LogLine, Phase, Progress, RunStatus};
use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::db::{internal, unix_now};
use crate::progress::Hub;
use crate::records;
use crate::registry::Registry;

mod slurm;
pub use slurm::SlurmJob;

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";
/// A job whose Slurm submission is pending or running belongs to the worker that submission
/// starts; no other worker may lease it (see `slurm.rs`).
const NOT_HELD_FOR_SLURM: &str = "(slurm_state IS NULL OR slurm_ended_at IS NOT NULL)";
/// Longest failure message kept; libtorch errors can carry pages of backtrace.
const MAX_ERROR_CHARS: usize = 4000;
/// Log lines kept per job, and the longest line kept.
const LOG_LINES: usize = 2000;
/// Rows of `sample_stats` written per transaction at the end of a run (a few ms each).
const STATS_PER_TRANSACTION: usize = 500;
const MAX_LOG_LINE_CHARS: usize = 2000;

#[derive(Clone)]
pub struct Queue {
    pool: SqlitePool,
    hub: Hub,
    registry: Arc<Registry>,
    worker_token_hash: String,
    lease_seconds: u64,
    record_precision: records::RecordPrecision,
    /// One end-of-run analysis at a time: each holds a run's records in memory.
    analyses: Arc<tokio::sync::Semaphore>,
    /// The workers heard from within the lease time (`GET /api/v1/workers`).
    pub workers: Arc<crate::workers::Workers>,
}

/// A running job, as its token proves.
struct LeasedJob {
    run_id: i64,
    /// Which attempt of the job this lease is (1 for the first).
    attempt: i64,
    spec: ExperimentSpec,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// 256 random bits, in hex.
pub fn new_token() -> String {
    hex(&rand::random::<[u8; 32]>())
}

/// Compares two hex digests without an early exit, so timing tells nothing.
pub(crate) fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks an epoch's shown samples against the run: one bit per sample, a fine-tuning epoch of
/// a schedule that shows subsets, exactly the schedule's budget of samples. Returns the count.
fn check_shown(spec: &ExperimentSpec, epoch: u32, bits: &[u8], samples: usize) -> Result<usize, String> {
    let shown = protocol::pack::unpack_bits(bits, samples).map_err(|e| format!("shown: {e}"))?;
    let count = shown.iter().filter(|&&b| b).count();
    if epoch <= spec.warmup_epochs || spec.sampling == protocol::Sampling::default() {
        return Err(format!("epoch {epoch} shows every sample under {}; send no shown set", spec.sampling));
    }
    let budget = spec.sampling.shown_count(samples);
    if spec.sampling.shows_fewer() {
        if count == 0 || count > budget {
            return Err(format!("shown has {count} samples; the schedule {} shows from 1 to {budget} of {samples}", spec.sampling));
        }
    } else if count != budget {
        return Err(format!("shown has {count} samples; the schedule {} shows {budget} of {samples}", spec.sampling));
    }
    Ok(count)
}

impl Queue {
    pub fn new(pool: SqlitePool, hub: Hub, registry: Arc<Registry>, worker_token: &str, lease_seconds: u64) -> Self {
        let analyses = Arc::new(tokio::sync::Semaphore::new(1));
        let workers = Arc::new(crate::workers::Workers::new(std::time::Duration::from_secs(lease_seconds.max(10))));
        Self { pool, hub, registry, worker_token_hash: hash_token(worker_token), lease_seconds, record_precision: Default::default(), analyses, workers }
    }

    /// How sealed records keep margin and EL2N (exact unless asked).
    pub fn with_record_precision(mut self, precision: records::RecordPrecision) -> Self {
        self.record_precision = precision;
        self
    }

    /// Whether `token` may send a request to a worker route, checked before its body is read
    /// (issue 19, item 2): for a job's routes, that job's lease token; for leasing, the worker
    /// token or a Slurm submission's token. What the token may do there, the route checks.
    pub async fn admits(&self, job_id: Option<i64>, token: &str) -> Result<(), Failure> {
        let presented = hash_token(token);
        let found: Option<i64> = match job_id {
            Some(job_id) => sqlx::query_scalar("SELECT 1 FROM jobs WHERE id = ? AND token_hash = ?")
                .bind(job_id)
                .bind(&presented)
                .fetch_optional(&self.pool)
                .await
                .map_err(internal)?,
            None if same_digest(&presented, &self.worker_token_hash) => Some(1),
            // Expired or not: the lease then says which (`lease_job`).
            None => sqlx::query_scalar("SELECT 1 FROM jobs WHERE slurm_token_hash = ? LIMIT 1")
                .bind(&presented)
                .fetch_optional(&self.pool)
                .await
                .map_err(internal)?,
        };
        match (found, job_id) {
            (Some(_), _) => Ok(()),
            (None, Some(job_id)) => Err(Failure::unauthorized(format!("the token is not valid for job #{job_id}"))),
            (None, None) => Err(Failure::unauthorized("the worker token is not valid for this server")),
        }
    }

    /// How long a lease lasts without a heartbeat.
    pub fn lease_seconds(&self) -> u64 {
        self.lease_seconds
    }

    pub fn check_worker_token(&self, token: &str) -> Result<(), Failure> {
        if same_digest(&hash_token(token), &self.worker_token_hash) {
            Ok(())
        } else {
            Err(Failure::unauthorized("the worker token is not valid for this server"))
        }
    }

    /// Takes the next queued job (highest priority, then oldest), or `None`. Jobs submitted
    /// to Slurm wait for the worker their batch job starts.
    pub async fn lease(&self, worker: &str) -> Result<Option<Lease>, Failure> {
        let token = new_token();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = ?1, token_hash = ?2, lease_expires_at = ?3,
                 cancel_requested = 0, error = NULL, progress = NULL, started_at = COALESCE(started_at, {NOW}), updated_at = {NOW}
             WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND {NOT_HELD_FOR_SLURM} ORDER BY priority DESC, id LIMIT 1)
             RETURNING id, run_id, attempts"
        ))
        .bind(worker)
        .bind(hash_token(&token))
        .bind(unix_now() + self.lease_seconds as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        let Some(row) = row else { return Ok(None) };
        self.leased_to(worker, token, row.get("id"), row.get("run_id"), row.get("attempts")).await.map(Some)
    }

    /// The rest of a lease once the job is marked running: the spec and dataset the worker
    /// needs, a note in the job's log, and a progress event.
    async fn leased_to(&self, worker: &str, token: String, job_id: i64, run_id: i64, attempt: i64) -> Result<Lease, Failure> {
        let spec = self.spec(run_id).await?;
        let dataset = match self.registry.get(&spec.dataset).await {
            Ok(dataset) => dataset,
            Err(failure) => {
                self.mark_finished(job_id, run_id, RunStatus::Failed, Some(format!("cannot start: {}", failure.body.message))).await?;
                return Err(failure);
            }
        };
        let source_values = match self.source_values(&spec).await {
            Ok(values) => values,
            Err(failure) => {
                self.mark_finished(job_id, run_id, RunStatus::Failed, Some(format!("cannot start: {}", failure.body.message))).await?;
                return Err(failure);
            }
        };
        tracing::info!(job = job_id, run = run_id, worker, "job leased");
        self.note(job_id, format!("leased by worker {worker} (attempt {attempt})")).await?;
        self.hub.publish(Progress::new(job_id, run_id, RunStatus::Running, spec.total_epochs(), None));
        Ok(Lease { job_id, run_id, job_token: token, spec, dataset, lease_seconds: self.lease_seconds, source_values })
    }

    /// The per-sample values of the source runs that the spec's schedule needs, by sample key:
    /// each sample's ranked value of the score (`dynamics::Score::ranked_value`) under this
    /// run's never-learned policy, so every schedule ranks exactly as the compare page does;
    /// with several source runs (seeds), combined per sample by `dynamics::Score::over_seeds`
    /// over the samples every one of them has.
    async fn source_values(&self, spec: &ExperimentSpec) -> Result<Option<SourceValues>, Failure> {
        let Some((runs, score)) = spec.sampling.source() else { return Ok(None) };
        let mut per_run: Vec<std::collections::HashMap<String, Option<f64>>> = Vec::with_capacity(runs.len());
        for &source_run in runs {
            let rows = crate::analysis::sample_values(&self.pool, source_run).await?;
            if rows.is_empty() {
                return Err(Failure::conflict(format!("the schedule's source run #{source_run} has no per-sample statistics (deleted, or not succeeded)")));
            }
            per_run.push(rows.into_iter().map(|(key, v)| (key, score.ranked_value(&v, spec.never_learned))).collect());
        }
        let (first, rest) = per_run.split_first().expect("a selection names at least one source run");
        let values = first
            .iter()
            .filter_map(|(key, value)| {
                let mut seeds = vec![*value];
                for other in rest {
                    seeds.push(*other.get(key)?);
                }
                Some((key.clone(), score.over_seeds(&seeds)))
            })
            .collect();
        Ok(Some(SourceValues { run_id: runs[0], runs: runs.to_vec(), score, values }))
    }

    async fn spec(&self, run_id: i64) -> Result<ExperimentSpec, Failure> {
        let text: String = sqlx::query_scalar("SELECT spec FROM runs WHERE id = ?").bind(run_id).fetch_one(&self.pool).await.map_err(internal)?;
        serde_json::from_str(&text).map_err(internal)
    }

    /// The running job `job_id`, if `token` is its token.
    async fn leased(&self, job_id: i64, token: &str) -> Result<LeasedJob, Failure> {
        let row = sqlx::query("SELECT run_id, status, token_hash, attempts FROM jobs WHERE id = ?")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?
            .ok_or_else(|| Failure::not_found(format!("no job #{job_id}")))?;
        let hash: Option<String> = row.get("token_hash");
        if !hash.is_some_and(|h| same_digest(&h, &hash_token(token))) {
            return Err(Failure::unauthorized(format!("the token is not valid for job #{job_id}")));
        }
        let status: String = row.get("status");
        if status != "running" {
            return Err(Failure::conflict(format!("job #{job_id} is {status}, not running")));
        }
        let run_id = row.get("run_id");
        Ok(LeasedJob { run_id, attempt: row.get("attempts"), spec: self.spec(run_id).await? })
    }

    /// Appends lines to a job's log (its current attempt), keeping the newest [`LOG_LINES`].
    async fn log(&self, job_id: i64, source: &str, lines: &[String]) -> Result<(), Failure> {
        if lines.is_empty() {
            return Ok(());
        }
        // Writes only: a transaction that read first could not take the write lock while
        // another connection writes (SQLite answers "database is locked" at once).
        let mut tx = self.pool.begin().await.map_err(internal)?;
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO job_log (job_id, attempt, source, line) ");
        insert.push_values(lines.iter().rev().take(LOG_LINES).rev(), |mut row, line| {
            row.push_bind(job_id)
                .push("(SELECT attempts FROM jobs WHERE id = ")
                .push_bind_unseparated(job_id)
                .push_unseparated(")")
                .push_bind(source)
                .push_bind(line.chars().take(MAX_LOG_LINE_CHARS).collect::<String>());
        });
        insert.build().execute(&mut *tx).await.map_err(internal)?;
        sqlx::query("DELETE FROM job_log WHERE job_id = ?1 AND id <= (SELECT id FROM job_log WHERE job_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)")
            .bind(job_id)
            .bind(LOG_LINES as i64)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)
    }

    /// A note from the server in the job's log.
    async fn note(&self, job_id: i64, line: String) -> Result<(), Failure> {
        self.log(job_id, "server", &[line]).await
    }

    /// `POST /worker/jobs/{job}/log`: the worker's lines.
    pub async fn put_log(&self, job_id: i64, token: &str, lines: &LogLines) -> Result<(), Failure> {
        self.leased(job_id, token).await?;
        self.log(job_id, "worker", &lines.lines).await
    }

    /// The newest `tail` lines of a run's job log, oldest first.
    pub async fn log_tail(&self, run_id: i64, tail: u32) -> Result<JobLog, Failure> {
        let (job_id, _) = self.job_of(run_id).await?;
        let mut lines: Vec<LogLine> =
            sqlx::query_as::<_, (String, i64, String, String)>("SELECT at, attempt, source, line FROM job_log WHERE job_id = ? ORDER BY id DESC LIMIT ?")
                .bind(job_id)
                .bind(tail.min(LOG_LINES as u32))
                .fetch_all(&self.pool)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|(at, attempt, source, line)| LogLine { at, attempt: attempt as u32, source, line })
                .collect();
        lines.reverse();
        Ok(JobLog { run_id, lines })
    }

    async fn num_classes(&self, dataset: &str) -> Result<i64, Failure> {
        sqlx::query_scalar("SELECT num_classes FROM datasets WHERE name = ?").bind(dataset).fetch_one(&self.pool).await.map_err(internal)
    }

    async fn renew(&self, job_id: i64) -> Result<(), Failure> {
        sqlx::query(&format!("UPDATE jobs SET lease_expires_at = ?, updated_at = {NOW} WHERE id = ?"))
            .bind(unix_now() + self.lease_seconds as i64)
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map_err(internal)?;
        Ok(())
    }

    pub async fn heartbeat(&self, job_id: i64, token: &str, beat: &Heartbeat) -> Result<HeartbeatReply, Failure> {
        let job = self.leased(job_id, token).await?;
        let progress = Progress::new(job_id, job.run_id, RunStatus::Running, job.spec.total_epochs(), Some(beat.clone()));
        let (cancel, worker): (i64, Option<String>) =
            sqlx::query_as(&format!("UPDATE jobs SET progress = ?, lease_expires_at = ?, updated_at = {NOW} WHERE id = ? RETURNING cancel_requested, worker"))
                .bind(serde_json::to_string(&progress).map_err(internal)?)
                .bind(unix_now() + self.lease_seconds as i64)
                .bind(job_id)
                .fetch_one(&self.pool)
                .await
                .map_err(internal)?;
        if let Some(worker) = worker {
            self.workers.beat(&worker, (job_id, job.run_id), beat);
        }
        self.hub.publish(progress);
        Ok(HeartbeatReply { cancel: cancel != 0 })
    }

    /// Stores the run's sample list (its keys checked by [`valid_sample_key`]). A retried attempt sends the same list again, which is
    /// accepted; a different list once epochs are stored is refused, since it would make
    /// them meaningless.
    pub async fn put_manifest(&self, job_id: i64, token: &str, manifest: &SampleManifest) -> Result<(), Failure> {
        let job = self.leased(job_id, token).await?;
        if manifest.samples.is_empty() {
            return Err(Failure::bad_request("the sample manifest is empty"));
        }
        if let Some((index, sample)) = manifest.samples.iter().enumerate().find(|(_, s)| !valid_sample_key(&s.sample_key)) {
            return Err(Failure::bad_request(format!(
                "sample {index} has the key {:?}; a sample key is 1 to 128 letters, digits, `_`, `.`, `:` or `-`, starting with a letter or digit (forgetlab's are 32 hex digits)",
                sample.sample_key.chars().take(40).collect::<String>()
            )));
        }
        let stored: Vec<(String,)> = sqlx::query_as("SELECT sample_key FROM run_samples WHERE run_id = ? ORDER BY sample_index")
            .bind(job.run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(internal)?;
        if !stored.is_empty() {
            let same = stored.len() == manifest.samples.len() && stored.iter().zip(&manifest.samples).all(|((k,), s)| *k == s.sample_key);
            if same {
                return Ok(());
            }
            let epochs: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM epoch_records WHERE run_id = ?").bind(job.run_id).fetch_one(&self.pool).await.map_err(internal)?;
            if epochs > 0 {
                return Err(Failure::conflict(format!("run #{} already has {epochs} epochs recorded over a different sample list", job.run_id)));
            }
        }
        let mut tx = self.pool.begin().await.map_err(internal)?;
        sqlx::query("DELETE FROM run_samples WHERE run_id = ?").bind(job.run_id).execute(&mut *tx).await.map_err(internal)?;
        for (chunk_index, chunk) in manifest.samples.chunks(2000).enumerate() {
            let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO run_samples (run_id, sample_index, dataset_index, sample_key, label) ");
            insert.push_values(chunk.iter().enumerate(), |mut row, (i, sample)| {
                row.push_bind(job.run_id)
                    .push_bind((chunk_index * 2000 + i) as i64)
                    .push_bind(sample.dataset_index)
                    .push_bind(&sample.sample_key)
                    .push_bind(sample.label);
            });
            insert.build().execute(&mut *tx).await.map_err(internal)?;
        }
        let mut digest = Sha256::new();
        for sample in &manifest.samples {
            digest.update(sample.sample_key.as_bytes());
            digest.update(b"\n");
        }
        sqlx::query("UPDATE runs SET manifest_digest = ? WHERE id = ?")
            .bind(hex(&digest.finalize()))
            .bind(job.run_id)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        self.renew(job_id).await
    }

    /// Stores one epoch: replaces any earlier upload of the same (run, epoch), never adds a
    /// second copy.
    pub async fn put_epoch(&self, job_id: i64, token: &str, epoch: u32, upload: &EpochUpload) -> Result<(), Failure> {
        let job = self.leased(job_id, token).await?;
        let total = job.spec.total_epochs();
        if epoch == 0 || epoch > total {
            return Err(Failure::bad_request(format!("epoch {epoch} is outside 1..={total}")));
        }
        if upload.metrics.epoch != epoch {
            return Err(Failure::bad_request(format!("the body is for epoch {}, the URL for epoch {epoch}", upload.metrics.epoch)));
        }
        let expected_phase = if epoch <= job.spec.warmup_epochs { Phase::Warmup } else { Phase::Finetune };
        if upload.metrics.phase != expected_phase {
            return Err(Failure::bad_request(format!("epoch {epoch} is a {} epoch, not {}", expected_phase.as_str(), upload.metrics.phase.as_str())));
        }
        let samples: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM run_samples WHERE run_id = ?").bind(job.run_id).fetch_one(&self.pool).await.map_err(internal)?;
        if samples == 0 {
            return Err(Failure::conflict("send the sample manifest before any epoch"));
        }
        upload.columns.check_lengths(samples as usize).map_err(Failure::bad_request)?;
        let classes = self.num_classes(&job.spec.dataset).await?;
        if let Some(confusion) = &upload.val_confusion {
            let cells = (classes * classes) as usize;
            if confusion.len() != cells {
                return Err(Failure::bad_request(format!("val_confusion has {} cells; {classes} classes need {cells}", confusion.len())));
            }
        }
        if let Some(eval_loss) = upload.eval_loss.as_ref().filter(|l| l.len() != samples as usize) {
            return Err(Failure::bad_request(format!("eval_loss has {} values; the run has {samples} samples", eval_loss.len())));
        }
        let shown_count = match &upload.shown {
            Some(bits) => Some(check_shown(&job.spec, epoch, bits, samples as usize).map_err(Failure::bad_request)?),
            None => None,
        };
        let m = &upload.metrics;
        let mut tx = self.pool.begin().await.map_err(internal)?;
        sqlx::query(
            "INSERT INTO epoch_records (run_id, epoch, sample_count, correct, loss, p_true, margin, predicted, el2n, eval_loss)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (run_id, epoch) DO UPDATE SET sample_count = excluded.sample_count, correct = excluded.correct,
                 loss = excluded.loss, p_true = excluded.p_true, margin = excluded.margin, predicted = excluded.predicted,
                 el2n = excluded.el2n, eval_loss = excluded.eval_loss",
        )
        .bind(job.run_id)
        .bind(epoch)
        .bind(samples)
        .bind(&upload.columns.correct)
        .bind(pack_f32(&upload.columns.loss))
        .bind(pack_f32(&upload.columns.p_true))
        .bind(pack_f32(&upload.columns.margin))
        .bind(pack_u16(&upload.columns.predicted))
        .bind(pack_f32(&upload.columns.el2n))
        .bind(upload.eval_loss.as_deref().map(pack_f32))
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        sqlx::query(
            "INSERT INTO epoch_metrics (run_id, epoch, phase, train_loss, train_accuracy, val_loss, val_accuracy, lr, seconds, attempt, val_confusion)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (run_id, epoch) DO UPDATE SET phase = excluded.phase, train_loss = excluded.train_loss,
                 train_accuracy = excluded.train_accuracy, val_loss = excluded.val_loss, val_accuracy = excluded.val_accuracy,
                 lr = excluded.lr, seconds = excluded.seconds, attempt = excluded.attempt, val_confusion = excluded.val_confusion",
        )
        .bind(job.run_id)
        .bind(epoch)
        .bind(m.phase.as_str())
        .bind(m.train_loss)
        .bind(m.train_accuracy)
        .bind(m.val_loss)
        .bind(m.val_accuracy)
        .bind(m.lr)
        .bind(m.seconds)
        .bind(job.attempt)
        .bind(upload.val_confusion.as_deref().map(pack_u32))
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        // A retried upload replaces the epoch's shown samples too (or removes them).
        sqlx::query("DELETE FROM epoch_shown WHERE run_id = ? AND epoch = ?").bind(job.run_id).bind(epoch).execute(&mut *tx).await.map_err(internal)?;
        if let (Some(bits), Some(count)) = (&upload.shown, shown_count) {
            sqlx::query("INSERT INTO epoch_shown (run_id, epoch, shown_count, shown) VALUES (?, ?, ?, ?)")
                .bind(job.run_id)
                .bind(epoch)
                .bind(count as i64)
                .bind(bits)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        }
        tx.commit().await.map_err(internal)?;
        self.renew(job_id).await
    }

    /// The worker's end of a job. A succeeded one is checked (every epoch stored, class means
    /// of the right shape), marked `analysing` and answered at once; its statistics and sealing
    /// run in the background ([`Queue::analyse`]), whose handle is returned.
    pub async fn finish(&self, job_id: i64, token: &str, finish: &Finish) -> Result<Option<tokio::task::JoinHandle<()>>, Failure> {
        let job = self.leased(job_id, token).await?;
        let (status, error) = match finish.outcome {
            Outcome::Succeeded => match self.begin_analysis(job_id, job.run_id, &job.spec, finish).await {
                Ok(()) => return Ok(Some(self.spawn_analysis(job_id, job.run_id))),
                Err(failure) => (RunStatus::Failed, Some(format!("the results could not be summarised: {}", failure.body.message))),
            },
            Outcome::Failed => (RunStatus::Failed, Some(finish.message.clone().unwrap_or_else(|| "the worker reported a failure without a message".into()))),
            Outcome::Cancelled => (RunStatus::Cancelled, None),
        };
        self.mark_finished(job_id, job.run_id, status, error).await?;
        Ok(None)
    }

    /// What the end of a succeeded run checks and stores before answering the worker: every
    /// epoch is there, the class means fit; then the job is `analysing` (its token dead).
    async fn begin_analysis(&self, job_id: i64, run_id: i64, spec: &ExperimentSpec, finish: &Finish) -> Result<(), Failure> {
        let stored: Vec<i64> =
            sqlx::query_scalar("SELECT epoch FROM epoch_records WHERE run_id = ? ORDER BY epoch").bind(run_id).fetch_all(&self.pool).await.map_err(internal)?;
        let total = spec.total_epochs();
        let missing: Vec<String> = (1..=total).filter(|e| !stored.contains(&i64::from(*e))).map(|e| e.to_string()).collect();
        if !missing.is_empty() {
            return Err(Failure::conflict(format!("epochs missing: {}", missing.join(", "))));
        }
        if let Some(means) = &finish.class_means {
            let classes = self.num_classes(&spec.dataset).await?;
            if means.counts.len() != classes as usize || means.means.len() != classes as usize * means.dim as usize {
                return Err(Failure::bad_request(format!(
                    "class_means has {} counts and {} values; {classes} classes of width {} need {classes} and {}",
                    means.counts.len(),
                    means.means.len(),
                    means.dim,
                    classes * i64::from(means.dim)
                )));
            }
            sqlx::query("INSERT OR REPLACE INTO run_class_means (run_id, dim, means, counts) VALUES (?, ?, ?, ?)")
                .bind(run_id)
                .bind(means.dim)
                .bind(pack_f32(&means.means))
                .bind(pack_u32(&means.counts))
                .execute(&self.pool)
                .await
                .map_err(internal)?;
        }
        let progress = self.last_report(job_id, run_id, RunStatus::Analysing).await?;
        sqlx::query(&format!(
            "UPDATE jobs SET status = 'analysing', progress = ?, token_hash = NULL, lease_expires_at = NULL, updated_at = {NOW} WHERE id = ?"
        ))
        .bind(serde_json::to_string(&progress).map_err(internal)?)
        .bind(job_id)
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        self.note(job_id, "trained; computing the per-sample statistics and sealing the records".into()).await?;
        self.hub.publish(progress);
        Ok(())
    }

    /// The job's last report (epoch, loss, speed), saying it is now `status`.
    async fn last_report(&self, job_id: i64, run_id: i64, status: RunStatus) -> Result<Progress, Failure> {
        let stored: Option<String> = sqlx::query_scalar("SELECT progress FROM jobs WHERE id = ?").bind(job_id).fetch_one(&self.pool).await.map_err(internal)?;
        let mut heartbeat = stored.and_then(|p| serde_json::from_str::<Progress>(&p).ok()).map(|p| p.heartbeat).unwrap_or_default();
        heartbeat.phase = status.as_str().to_owned();
        if status == RunStatus::Succeeded {
            heartbeat.eta_seconds = Some(0.0);
        }
        Ok(Progress::new(job_id, run_id, status, self.spec(run_id).await?.total_epochs(), Some(heartbeat)))
    }

    fn spawn_analysis(&self, job_id: i64, run_id: i64) -> tokio::task::JoinHandle<()> {
        let queue = self.clone();
        tokio::spawn(async move { queue.analyse(job_id, run_id).await })
    }

    /// The background end of a succeeded run: its per-sample statistics and sealed records,
    /// written in short transactions ([`Queue::compute_sample_stats`]), then `succeeded` (or
    /// `failed` with the reason). Safe to run again after a crash: every write replaces.
    async fn analyse(&self, job_id: i64, run_id: i64) {
        let _permit = self.analyses.acquire().await;
        let outcome = match self.spec(run_id).await {
            Ok(spec) => self.compute_sample_stats(run_id, &spec).await,
            Err(failure) => Err(failure),
        };
        let (status, error) = match outcome {
            Ok(samples) => {
                tracing::info!(job = job_id, run = run_id, samples, "run succeeded; per-sample statistics stored");
                (RunStatus::Succeeded, None)
            }
            Err(failure) => (RunStatus::Failed, Some(format!("the results could not be summarised: {}", failure.body.message))),
        };
        if let Err(failure) = self.mark_finished(job_id, run_id, status, error).await {
            tracing::error!(job = job_id, run = run_id, "the end of the run's analysis could not be stored: {}", failure.body.message);
        }
    }

    /// At start: analyses that a stopped server left unfinished begin again.
    pub async fn resume_analyses(&self) -> Result<usize, Failure> {
        let jobs: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, run_id FROM jobs WHERE status = 'analysing' ORDER BY id").fetch_all(&self.pool).await.map_err(internal)?;
        for &(job_id, run_id) in &jobs {
            tracing::info!(job = job_id, run = run_id, "resuming the end-of-run analysis a stopped server left unfinished");
            self.note(job_id, "the server stopped during the end-of-run analysis; it starts again".into()).await?;
            self.spawn_analysis(job_id, run_id);
        }
        Ok(jobs.len())
    }

    async fn mark_finished(&self, job_id: i64, run_id: i64, status: RunStatus, error: Option<String>) -> Result<(), Failure> {
        let error = error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect::<String>());
        if let Some(message) = &error {
            tracing::warn!(job = job_id, run = run_id, "job failed: {message}");
        }
        self.note(job_id, format!("{}{}", status.as_str(), error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())).await?;
        let progress = self.last_report(job_id, run_id, status).await?;
        sqlx::query(&format!(
            "UPDATE jobs SET status = ?, error = ?, progress = ?, token_hash = NULL, lease_expires_at = NULL,
                 finished_at = {NOW}, updated_at = {NOW} WHERE id = ?"
        ))
        .bind(status.as_str())
        .bind(&error)
        .bind(serde_json::to_string(&progress).map_err(internal)?)
        .bind(job_id)
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        self.hub.publish(progress);
        Ok(())
    }

    /// Derives `sample_stats` from the stored epochs (all of them must be there), and seals
    /// the records (`records::seal`).
    pub async fn compute_sample_stats(&self, run_id: i64, spec: &ExperimentSpec) -> Result<usize, Failure> {
        let samples: Vec<(i64, i64, String, i64)> =
            sqlx::query_as("SELECT sample_index, dataset_index, sample_key, label FROM run_samples WHERE run_id = ? ORDER BY sample_index")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await
                .map_err(internal)?;
        let started = std::time::Instant::now();
        let records = records::read(&self.pool, run_id).await?;
        let read = started.elapsed();
        let total = spec.total_epochs();
        if records.epochs != (1..=total).collect::<Vec<_>>() {
            let missing: Vec<String> = (1..=total).filter(|e| !records.epochs.contains(e)).map(|e| e.to_string()).collect();
            return Err(Failure::conflict(format!("epochs missing: {}", missing.join(", "))));
        }
        let warmup = spec.warmup_epochs as usize;
        let classes = self.num_classes(&spec.dataset).await? as usize;
        let labels: Vec<u32> = samples.iter().map(|s| s.3 as u32).collect();
        if let Some(label) = labels.iter().find(|&&l| l as usize >= classes) {
            return Err(internal(format!("a sample labelled {label} in a dataset of {classes} classes")));
        }
        let precision = self.record_precision;
        let settings = spec.analysis();
        let (records, summaries, blocks, analysis, summarized, sealed) = tokio::task::spawn_blocking(move || {
            // The loss after head warmup: the eval-mode pass at the end of the last warmup
            // epoch when the worker sent one (older runs: that epoch's recorded loss).
            let after_warmup = records.eval_loss.as_ref().filter(|(epoch, _)| *epoch as usize == warmup).map(|(_, loss)| loss.as_slice());
            let columns: Vec<dynamics::TraceColumns> = records.columns.iter().map(protocol::worker::EpochColumns::trace).collect();
            let summaries = dynamics::summarize_samples(&columns, warmup, after_warmup, settings);
            let analysis = crate::analysis::run_analysis(&summaries, &records, &labels, classes, warmup, settings);
            let summarized = started.elapsed();
            let blocks = records::seal(&records, precision);
            (records, summaries, blocks, analysis, summarized, started.elapsed())
        })
        .await
        .map_err(internal)?;
        if summaries.len() != samples.len() {
            return Err(internal(format!("{} summaries for {} samples", summaries.len(), samples.len())));
        }
        // Short transactions, so that other workers' uploads and heartbeats never wait long
        // for the single writer; the run is `analysing` until the last one, and its
        // statistics are read only after that.
        // The class each sample was predicted at the last epoch (the sample grid shows it).
        let last_predicted: Vec<Option<u16>> = match records.columns.last() {
            Some(last) if last.predicted.len() == samples.len() => last.predicted.iter().copied().map(Some).collect(),
            _ => vec![None; samples.len()],
        };
        let rows: Vec<_> = samples.iter().zip(&summaries).zip(&last_predicted).collect();
        for chunk in rows.chunks(STATS_PER_TRANSACTION) {
            let (first, last) = (chunk[0].0.0.0, chunk[chunk.len() - 1].0.0.0);
            let began = std::time::Instant::now();
            let mut tx = self.pool.begin().await.map_err(internal)?;
            sqlx::query("DELETE FROM sample_stats WHERE run_id = ? AND sample_index BETWEEN ? AND ?")
                .bind(run_id)
                .bind(first)
                .bind(last)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO sample_stats (run_id, sample_index, sample_key, dataset_index, label, forgetting_events, learning_events,
                 first_learned_epoch, never_learned, unforgettable, confidence, variability, correctness, tau, r2, warmup_loss, mean_margin, el2n, last_predicted) ",
            );
            insert.push_values(chunk, |mut row, (((index, dataset_index, key, label), summary), predicted)| {
                let events = &summary.events;
                let fit = summary.decay.fitted();
                row.push_bind(run_id)
                    .push_bind(*index)
                    .push_bind(key)
                    .push_bind(*dataset_index)
                    .push_bind(*label)
                    .push_bind(events.forgetting_events)
                    .push_bind(events.learning_events)
                    .push_bind(events.first_learned_epoch)
                    .push_bind(events.never_learned())
                    .push_bind(events.unforgettable)
                    .push_bind(summary.cartography.map(|c| c.confidence))
                    .push_bind(summary.cartography.map(|c| c.variability))
                    .push_bind(summary.cartography.map(|c| c.correctness))
                    .push_bind(fit.and_then(|f| f.tau))
                    .push_bind(fit.map(|f| f.exponential.r2))
                    .push_bind(summary.warmup_loss.map(f64::from))
                    .push_bind(summary.mean_margin)
                    .push_bind(summary.el2n)
                    .push_bind(predicted.map(i64::from));
            });
            insert.build().execute(&mut *tx).await.map_err(internal)?;
            tx.commit().await.map_err(internal)?;
            crate::db::make_way(began).await;
        }
        for (name, data) in crate::analysis::score_columns(&summaries) {
            let began = std::time::Instant::now();
            sqlx::query("INSERT OR REPLACE INTO run_columns (run_id, name, data) VALUES (?, ?, ?)")
                .bind(run_id)
                .bind(name)
                .bind(data)
                .execute(&self.pool)
                .await
                .map_err(internal)?;
            crate::db::make_way(began).await;
        }
        sqlx::query("INSERT OR REPLACE INTO run_analysis (run_id, summary, classes) VALUES (?, ?, ?)")
            .bind(run_id)
            .bind(serde_json::to_string(&analysis.0).map_err(internal)?)
            .bind(serde_json::to_string(&analysis.1).map_err(internal)?)
            .execute(&self.pool)
            .await
            .map_err(internal)?;
        let stats_written = started.elapsed();
        records::store_sealed(&self.pool, run_id, &records, &blocks).await?;
        tracing::info!(run = run_id, samples = summaries.len(), epochs = total, ?read, ?summarized, ?sealed, ?stats_written, total = ?started.elapsed(), "end of run: statistics and sealed records stored");
        Ok(summaries.len())
    }

    /// Re-queues running jobs whose lease expired (their worker vanished); fails those out of
    /// attempts. Returns how many were touched.
    pub async fn requeue_expired(&self) -> Result<usize, Failure> {
        let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(&format!(
            "UPDATE jobs SET
                 status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                 error = CASE WHEN attempts < max_attempts THEN NULL
                     ELSE 'the worker stopped sending heartbeats on every one of ' || attempts || ' attempts' END,
                 finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE {NOW} END,
                 token_hash = NULL, lease_expires_at = NULL, updated_at = {NOW}
             WHERE status = 'running' AND lease_expires_at < ?
             RETURNING id, run_id, status, attempts"
        ))
        .bind(unix_now())
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        for (job_id, run_id, status, attempts) in &rows {
            tracing::warn!(job = job_id, run = run_id, attempts, "lease expired; job is now {status}");
            self.note(*job_id, format!("no heartbeat before the lease ran out (attempt {attempts}); the job is now {status}")).await?;
            let spec = self.spec(*run_id).await?;
            let status = RunStatus::parse(status).unwrap_or(RunStatus::Failed);
            self.hub.publish(Progress::new(*job_id, *run_id, status, spec.total_epochs(), None));
        }
        Ok(rows.len())
    }

    /// Cancels a queued job at once, or asks a running one to stop at its next heartbeat.
    pub async fn cancel(&self, run_id: i64) -> Result<RunStatus, Failure> {
        let (job_id, status) = self.job_of(run_id).await?;
        match status {
            RunStatus::Queued => {
                self.mark_finished(job_id, run_id, RunStatus::Cancelled, None).await?;
                Ok(RunStatus::Cancelled)
            }
            RunStatus::Running => {
                sqlx::query(&format!("UPDATE jobs SET cancel_requested = 1, updated_at = {NOW} WHERE id = ?"))
                    .bind(job_id)
                    .execute(&self.pool)
                    .await
                    .map_err(internal)?;
                self.note(job_id, "cancel asked; the worker stops at its next heartbeat".into()).await?;
                Ok(RunStatus::Running)
            }
            RunStatus::Analysing => Err(Failure::conflict(format!("run #{run_id} has finished training and is being analysed; nothing to cancel"))),
            finished => Err(Failure::conflict(format!("run #{run_id} already ended ({finished}); nothing to cancel"))),
        }
    }

    /// Puts a failed or cancelled run back in the queue.
    /// Cancels a run for `who`, who must own it (or be an administrator).
    pub async fn cancel_as(&self, run_id: i64, who: &protocol::auth::Identity) -> Result<RunStatus, Failure> {
        crate::auth::check_may_change(&self.pool, who, crate::auth::Owned::Run(run_id)).await?;
        self.cancel(run_id).await
    }

    /// Retries a run for `who`, who must own it (or be an administrator).
    pub async fn retry_as(&self, run_id: i64, who: &protocol::auth::Identity) -> Result<RunStatus, Failure> {
        crate::auth::check_may_change(&self.pool, who, crate::auth::Owned::Run(run_id)).await?;
        self.retry(run_id).await
    }

    pub async fn retry(&self, run_id: i64) -> Result<RunStatus, Failure> {
        let (job_id, status) = self.job_of(run_id).await?;
        if !matches!(status, RunStatus::Failed | RunStatus::Cancelled) {
            return Err(Failure::conflict(format!("run #{run_id} is {status}; only failed or cancelled runs can be retried")));
        }
        sqlx::query(&format!(
            "UPDATE jobs SET status = 'queued', attempts = 0, error = NULL, cancel_requested = 0, progress = NULL,
                 finished_at = NULL, updated_at = {NOW} WHERE id = ?"
        ))
        .bind(job_id)
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        self.note(job_id, "queued again by a retry; it resumes after its last checkpoint".into()).await?;
        let spec = self.spec(run_id).await?;
        self.hub.publish(Progress::new(job_id, run_id, RunStatus::Queued, spec.total_epochs(), None));
        Ok(RunStatus::Queued)
    }

    async fn job_of(&self, run_id: i64) -> Result<(i64, RunStatus), Failure> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM jobs WHERE run_id = ?").bind(run_id).fetch_optional(&self.pool).await.map_err(internal)?;
        let (job_id, status) = row.ok_or_else(|| Failure::not_found(format!("no run #{run_id}")))?;
        Ok((job_id, RunStatus::parse(&status).ok_or_else(|| internal(format!("unknown status {status}")))?))
    }
}

/// Whether a worker's sample key may be stored: 1 to 128 ASCII letters, digits, `_`, `.`, `:`
/// or `-`, the first a letter or digit. Keys end up in pages, URLs and CSV exports, so a key
/// such as `=HYPERLINK(...)` (a spreadsheet formula) or one with markup never gets in (issue
/// 19, item 12).
pub fn valid_sample_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}
