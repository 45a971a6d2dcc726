//! The queue's side of the Slurm executor (`crate::executor::slurm`): what a submission
//! records on a job, the worker that leases one job with the submission's token, and what
//! happens to the job when its Slurm job ends.
//!
//! A submission is active from `prepare_submission` until the executor sees the Slurm job
//! gone (`slurm_ended_at` set). While it is active the job belongs to that submission's worker:
//! other workers do not lease it ([`super::NOT_HELD_FOR_SLURM`]), so a running job with an
//! active submission is always that submission's worker.

use protocol::worker::Lease;
use protocol::{Failure, Progress, RunStatus};
use sqlx::Row;

use super::{NOT_HELD_FOR_SLURM, NOW, Queue, hash_token, new_token, same_digest};
use crate::db::{internal, unix_now};

/// `jobs.slurm_state` between minting the token and `sbatch` answering with a job id.
pub const SUBMITTING: &str = "SUBMITTING";

/// A job with an active Slurm submission, as the executor follows it.
#[derive(Debug, Clone)]
pub struct SlurmJob {
    pub job_id: i64,
    pub run_id: i64,
    pub slurm_job_id: i64,
    /// The last Slurm state recorded.
    pub slurm_state: String,
    pub status: RunStatus,
    pub cancel_requested: bool,
    /// The submission's worker leased the job (it may since have lost the lease).
    pub leased: bool,
}

impl Queue {
    /// `POST /worker/lease` with a `job_id`: that job, with either the worker token (when no
    /// Slurm submission holds the job) or the token of the job's active Slurm submission
    /// (single use: the job's own token takes over).
    pub async fn lease_job(&self, job_id: i64, token: &str, worker: &str) -> Result<Lease, Failure> {
        let presented = hash_token(token);
        let is_worker_token = same_digest(&presented, &self.worker_token_hash);
        let job_token = new_token();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = ?1, token_hash = ?2, lease_expires_at = ?3,
                 cancel_requested = 0, error = NULL, progress = NULL, started_at = COALESCE(started_at, {NOW}), updated_at = {NOW},
                 slurm_token_hash = NULL, slurm_token_expires_at = NULL
             WHERE id = ?4 AND status = 'queued'
                 AND ((?5 AND {NOT_HELD_FOR_SLURM})
                      OR (slurm_ended_at IS NULL AND slurm_token_hash = ?6 AND slurm_token_expires_at > ?7))
             RETURNING id, run_id, attempts"
        ))
        .bind(worker)
        .bind(hash_token(&job_token))
        .bind(unix_now() + self.lease_seconds as i64)
        .bind(job_id)
        .bind(is_worker_token)
        .bind(&presented)
        .bind(unix_now())
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        match row {
            Some(row) => self.leased_to(worker, job_token, row.get("id"), row.get("run_id"), row.get("attempts")).await,
            None => Err(self.why_not_leased(job_id, &presented, is_worker_token).await),
        }
    }

    /// Says why [`Queue::lease_job`] found nothing to lease.
    async fn why_not_leased(&self, job_id: i64, presented: &str, is_worker_token: bool) -> Failure {
        let row: Option<(String, Option<String>, Option<i64>, Option<String>, Option<String>)> =
            match sqlx::query_as("SELECT status, slurm_token_hash, slurm_token_expires_at, slurm_state, slurm_ended_at FROM jobs WHERE id = ?")
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await
            {
                Ok(row) => row,
                Err(error) => return internal(error),
            };
        let Some((status, token_hash, expires, slurm_state, ended)) = row else {
            return Failure::not_found(format!("no job #{job_id}"));
        };
        let held = slurm_state.is_some() && ended.is_none();
        let submission_token = token_hash.is_some_and(|h| same_digest(&h, presented));
        if !is_worker_token && !submission_token {
            return Failure::unauthorized(format!("the token is not valid for job #{job_id} (a submission's token works once, for its own job)"));
        }
        if submission_token && expires.is_some_and(|at| at <= unix_now()) {
            return Failure::unauthorized(format!("the submission's token for job #{job_id} expired; the server submits the job again"));
        }
        if status != "queued" {
            return Failure::conflict(format!("job #{job_id} is {status}, not queued"));
        }
        if held && is_worker_token {
            return Failure::conflict(format!("job #{job_id} is submitted to Slurm; its own batch job runs it"));
        }
        Failure::conflict(format!("job #{job_id} cannot be leased now"))
    }

    /// Queued jobs that no active Slurm submission holds, in lease order (priority, then
    /// age), at most `limit`.
    pub async fn slurm_submittable(&self, limit: i64) -> Result<Vec<(i64, i64)>, Failure> {
        sqlx::query_as(&format!("SELECT id, run_id FROM jobs WHERE status = 'queued' AND {NOT_HELD_FOR_SLURM} ORDER BY priority DESC, id LIMIT ?"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(internal)
    }

    /// Starts a submission of a queued job: mints its single-use lease token (returned; only
    /// its hash is kept, valid `lifetime_seconds`) and holds the job for it. `None` when the job
    /// is no longer queued or another submission holds it.
    pub async fn prepare_submission(&self, job_id: i64, lifetime_seconds: u64) -> Result<Option<String>, Failure> {
        let token = new_token();
        let prepared = sqlx::query(&format!(
            "UPDATE jobs SET slurm_state = ?1, slurm_job_id = NULL, slurm_ended_at = NULL, slurm_submit_attempts = attempts,
                 slurm_token_hash = ?2, slurm_token_expires_at = ?3, updated_at = {NOW}
             WHERE id = ?4 AND status = 'queued' AND {NOT_HELD_FOR_SLURM}"
        ))
        .bind(SUBMITTING)
        .bind(hash_token(&token))
        .bind(unix_now() + lifetime_seconds as i64)
        .bind(job_id)
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok((prepared.rows_affected() == 1).then_some(token))
    }

    /// `sbatch` accepted the job as Slurm job `slurm_job_id`.
    pub async fn submitted(&self, job_id: i64, slurm_job_id: i64, output: &str) -> Result<(), Failure> {
        sqlx::query(&format!("UPDATE jobs SET slurm_job_id = ?, slurm_state = 'PENDING', updated_at = {NOW} WHERE id = ? AND slurm_state = ?"))
            .bind(slurm_job_id)
            .bind(job_id)
            .bind(SUBMITTING)
            .execute(&self.pool)
            .await
            .map_err(internal)?;
        tracing::info!(job = job_id, slurm_job_id, "submitted to Slurm");
        self.note(job_id, format!("submitted to Slurm as job {slurm_job_id} (its output: {output})")).await
    }

    /// The submission did not happen (`sbatch` could not be started, or did not answer): the
    /// job is free again and its token void, so a batch job that did start cannot lease it.
    pub async fn submission_abandoned(&self, job_id: i64) -> Result<(), Failure> {
        sqlx::query(&format!(
            "UPDATE jobs SET slurm_state = NULL, slurm_ended_at = NULL, slurm_token_hash = NULL, slurm_token_expires_at = NULL,
                 updated_at = {NOW} WHERE id = ? AND slurm_state = ?"
        ))
        .bind(job_id)
        .bind(SUBMITTING)
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok(())
    }

    /// `sbatch` refused the job: it fails with Slurm's words (a retry submits it again).
    pub async fn submission_refused(&self, job_id: i64, message: String) -> Result<(), Failure> {
        let run_id: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE jobs SET slurm_state = 'REFUSED', slurm_ended_at = {NOW}, slurm_token_hash = NULL, slurm_token_expires_at = NULL,
                 updated_at = {NOW} WHERE id = ? AND slurm_state = ? RETURNING run_id"
        ))
        .bind(job_id)
        .bind(SUBMITTING)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        match run_id {
            Some(run_id) => self.mark_finished(job_id, run_id, RunStatus::Failed, Some(message)).await,
            None => Ok(()),
        }
    }

    /// A note in the job's log from the executor (`scancel` sent, `sbatch` missing).
    pub async fn executor_note(&self, job_id: i64, line: String) -> Result<(), Failure> {
        self.note(job_id, line).await
    }

    /// Jobs whose Slurm job is pending or running as far as the queue knows.
    pub async fn slurm_jobs(&self) -> Result<Vec<SlurmJob>, Failure> {
        let rows = sqlx::query(
            "SELECT id, run_id, slurm_job_id, slurm_state, status, cancel_requested, attempts > COALESCE(slurm_submit_attempts, attempts) AS leased
             FROM jobs WHERE slurm_job_id IS NOT NULL AND slurm_ended_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        rows.iter()
            .map(|row| {
                let status: String = row.get("status");
                Ok(SlurmJob {
                    job_id: row.get("id"),
                    run_id: row.get("run_id"),
                    slurm_job_id: row.get("slurm_job_id"),
                    slurm_state: row.get::<Option<String>, _>("slurm_state").unwrap_or_default(),
                    status: RunStatus::parse(&status).ok_or_else(|| internal(format!("unknown status {status}")))?,
                    cancel_requested: row.get::<i64, _>("cancel_requested") != 0,
                    leased: row.get::<i64, _>("leased") != 0,
                })
            })
            .collect()
    }

    /// Submissions left half done by a server that stopped between minting a token and
    /// recording `sbatch`'s answer: freed, their tokens void.
    pub async fn abandon_unfinished_submissions(&self) -> Result<u64, Failure> {
        let done = sqlx::query(&format!(
            "UPDATE jobs SET slurm_state = NULL, slurm_token_hash = NULL, slurm_token_expires_at = NULL, updated_at = {NOW}
             WHERE slurm_state = ? AND slurm_job_id IS NULL AND slurm_ended_at IS NULL"
        ))
        .bind(SUBMITTING)
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok(done.rows_affected())
    }

    /// With the local executor nothing follows Slurm: submissions a previous start left
    /// active stop holding their jobs (their tokens void), so local workers can lease them.
    pub async fn release_slurm_holds(&self) -> Result<u64, Failure> {
        let done = sqlx::query(&format!(
            "UPDATE jobs SET slurm_state = 'UNFOLLOWED', slurm_ended_at = {NOW}, slurm_token_hash = NULL, slurm_token_expires_at = NULL
             WHERE slurm_state IS NOT NULL AND slurm_ended_at IS NULL"
        ))
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok(done.rows_affected())
    }

    /// Records the state `squeue` shows for a Slurm job still listed.
    pub async fn slurm_state(&self, job: &SlurmJob, state: &str) -> Result<(), Failure> {
        sqlx::query("UPDATE jobs SET slurm_state = ? WHERE id = ? AND slurm_job_id = ? AND slurm_ended_at IS NULL")
            .bind(state)
            .bind(job.job_id)
            .bind(job.slurm_job_id)
            .execute(&self.pool)
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// The Slurm job is gone (`final_state` as `sacct`/`scontrol` tell it). A job it was
    /// running that never reported its end (node failure, preemption, time limit, `scancel`)
    /// is re-queued, and resumes from its last checkpoint; one whose batch job ended before
    /// its worker leased it counts an attempt, so a broken worker installation fails the job
    /// after `max_attempts` submissions instead of looping.
    pub async fn slurm_job_ended(&self, job: &SlurmJob, final_state: &str, output: &str) -> Result<(), Failure> {
        // Writes first, then decides from what the write returned.
        let row: Option<(String, i64, i64, Option<i64>, i64)> = sqlx::query_as(&format!(
            "UPDATE jobs SET slurm_state = ?, slurm_ended_at = {NOW}, slurm_token_hash = NULL, slurm_token_expires_at = NULL, updated_at = {NOW}
             WHERE id = ? AND slurm_job_id = ? AND slurm_ended_at IS NULL
             RETURNING status, attempts, max_attempts, slurm_submit_attempts, cancel_requested"
        ))
        .bind(final_state)
        .bind(job.job_id)
        .bind(job.slurm_job_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        let Some((status, attempts, max_attempts, submit_attempts, cancel_requested)) = row else { return Ok(()) };
        let (job_id, slurm_job_id) = (job.job_id, job.slurm_job_id);
        let ended = format!("Slurm job {slurm_job_id} ended ({final_state})");
        match status.as_str() {
            "running" if cancel_requested != 0 => {
                self.note(job_id, format!("{ended} after the cancel request")).await?;
                self.mark_finished(job_id, job.run_id, RunStatus::Cancelled, None).await
            }
            "running" => {
                let failed = format!("{ended} without its worker reporting the end, on every one of {attempts} attempts");
                let outcome = self.requeue_or_fail(job_id, "running", attempts, max_attempts, attempts, &failed).await?;
                if let Some(status) = outcome {
                    tracing::warn!(job = job_id, slurm_job_id, attempts, "{ended} while its worker was training; the job is now {status}");
                    self.note(job_id, format!("{ended} while its worker was training (attempt {attempts}): the job is now {status}; it resumes from its last checkpoint. Output: {output}")).await?;
                }
                Ok(())
            }
            "queued" if Some(attempts) == submit_attempts => {
                let failed = format!("{ended} before its worker leased the job, on every one of {} submissions; see {output}", attempts + 1);
                let outcome = self.requeue_or_fail(job_id, "queued", attempts, max_attempts, attempts + 1, &failed).await?;
                if let Some(status) = outcome {
                    tracing::warn!(job = job_id, slurm_job_id, "{ended} before its worker leased the job; the job is now {status}");
                    self.note(
                        job_id,
                        format!(
                            "{ended} before its worker leased the job (submission {} of {max_attempts}); the job is now {status}. Output: {output}",
                            attempts + 1
                        ),
                    )
                    .await?;
                }
                Ok(())
            }
            _ => self.note(job_id, ended).await,
        }
    }

    /// Puts a job back in the queue with `new_attempts`, or fails it with `failed` when that
    /// uses up its attempts; only if it is still `status` with `attempts` (nobody else moved it
    /// meanwhile). Returns the new status, `None` if the job had moved on.
    async fn requeue_or_fail(
        &self,
        job_id: i64,
        status: &str,
        attempts: i64,
        max_attempts: i64,
        new_attempts: i64,
        failed: &str,
    ) -> Result<Option<RunStatus>, Failure> {
        let requeue = new_attempts < max_attempts;
        let row: Option<(i64,)> = sqlx::query_as(&format!(
            "UPDATE jobs SET status = ?1, attempts = ?2, error = ?3, finished_at = CASE WHEN ?4 THEN NULL ELSE {NOW} END,
                 token_hash = NULL, lease_expires_at = NULL, updated_at = {NOW}
             WHERE id = ?5 AND status = ?6 AND attempts = ?7 RETURNING run_id"
        ))
        .bind(if requeue { "queued" } else { "failed" })
        .bind(new_attempts)
        .bind((!requeue).then_some(failed))
        .bind(requeue)
        .bind(job_id)
        .bind(status)
        .bind(attempts)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        let Some((run_id,)) = row else { return Ok(None) };
        let now = if requeue { RunStatus::Queued } else { RunStatus::Failed };
        let spec = self.spec(run_id).await?;
        self.hub.publish(Progress::new(job_id, run_id, now, spec.total_epochs(), None));
        Ok(Some(now))
    }
}
