//! The Slurm executor (FORGETLAB_EXECUTOR=slurm): every queued job becomes one `sbatch` job
//! whose script runs `forgetlab-worker --job ID` with a lease token minted for that submission.
//! The worker speaks the same HTTP protocol as local workers; this task only submits, follows
//! the Slurm jobs with `squeue` (then `sacct`, or `scontrol` where accounting is off, for the
//! final state), `scancel`s the Slurm jobs of cancelled runs, and hands a job whose Slurm job
//! ended without its worker reporting back to the queue (`Queue::slurm_job_ended`), which
//! re-queues it so the next submission resumes from the checkpoint.
//!
//! Assumes what every Slurm site gives: the client commands on this machine's PATH (with
//! SLURM_CONF where needed), and a filesystem every node sees for the worker's data dir.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use protocol::RunStatus;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::config::Config;
use crate::queue::{Queue, SlurmJob};

/// Longest a Slurm command may take before it counts as failed (a busy controller answers
/// within seconds; a hung one must not stop the loop).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Jobs submitted per round at most, so one round stays short with a long queue.
const SUBMISSIONS_PER_ROUND: i64 = 50;
/// How often the "sbatch is missing" error is repeated in the server log.
const MISSING_REPEAT: Duration = Duration::from_secs(600);

/// Validated Slurm settings (from `Config`'s FORGETLAB_SLURM_*).
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSettings {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub gpus: u32,
    pub time_limit: Option<String>,
    /// `#SBATCH` options, each starting with `-`.
    pub extra: Vec<String>,
    pub worker_bin: PathBuf,
    pub server_url: String,
    /// Checkpoints, dataset cache and Slurm output: a path every node sees.
    pub data_dir: PathBuf,
    pub poll: Duration,
    pub token_lifetime_seconds: u64,
}

impl SlurmSettings {
    /// Checks the settings; the error names the setting and says what is expected.
    /// `served_url`, `worker_bin` and `data_dir` are the defaults (this server's own).
    pub fn from_config(config: &Config, served_url: &str, worker_bin: PathBuf, data_dir: PathBuf) -> Result<Self, String> {
        let name = |value: &Option<String>, setting: &str| -> Result<Option<String>, String> {
            match value.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(v) if v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.,".contains(c)) => Ok(Some(v.to_owned())),
                Some(v) => Err(format!("{setting} must be a Slurm name (letters, digits, '-', '_', '.', ','), got {v:?}")),
            }
        };
        let time_limit = match config.slurm_time.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) if is_slurm_time(t) => Some(t.to_owned()),
            Some(t) => {
                return Err(format!(
                    "FORGETLAB_SLURM_TIME must be a Slurm time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED), got {t:?}"
                ));
            }
        };
        let mut extra = Vec::new();
        for option in config.slurm_extra.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            let option = option.strip_prefix("#SBATCH").map_or(option, str::trim);
            if !option.starts_with('-') || option.chars().any(char::is_control) {
                return Err(format!("FORGETLAB_SLURM_EXTRA holds sbatch options separated by ';', each starting with '-' (e.g. --qos=normal), got {option:?}"));
            }
            extra.push(option.to_owned());
        }
        let worker_bin = config.slurm_worker_bin.clone().unwrap_or(worker_bin);
        if !worker_bin.is_absolute() {
            return Err(format!("FORGETLAB_SLURM_WORKER_BIN must be an absolute path on the cluster's nodes, got {}", worker_bin.display()));
        }
        let server_url = config.slurm_server_url.clone().unwrap_or_else(|| served_url.to_owned()).trim_end_matches('/').to_owned();
        if !(server_url.starts_with("http://") || server_url.starts_with("https://")) || server_url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("FORGETLAB_SLURM_SERVER_URL must be an http:// or https:// URL the nodes can reach, got {server_url:?}"));
        }
        let data_dir = config.slurm_data_dir.clone().unwrap_or(data_dir);
        if !data_dir.is_absolute() {
            return Err(format!("FORGETLAB_SLURM_DATA_DIR must be an absolute path every node sees, got {}", data_dir.display()));
        }
        if config.slurm_poll_seconds == 0 {
            return Err("FORGETLAB_SLURM_POLL_SECONDS must be at least 1".into());
        }
        if config.slurm_token_hours == 0 {
            return Err("FORGETLAB_SLURM_TOKEN_HOURS must be at least 1".into());
        }
        Ok(Self {
            partition: name(&config.slurm_partition, "FORGETLAB_SLURM_PARTITION")?,
            account: name(&config.slurm_account, "FORGETLAB_SLURM_ACCOUNT")?,
            gpus: config.slurm_gpus,
            time_limit,
            extra,
            worker_bin,
            server_url,
            data_dir,
            poll: Duration::from_secs(config.slurm_poll_seconds),
            token_lifetime_seconds: config.slurm_token_hours * 3600,
        })
    }

    /// Where Slurm writes a job's stdout and stderr (`%j`: the Slurm job id).
    pub fn output_pattern(&self, job_id: i64) -> PathBuf {
        self.data_dir.join("slurm").join(format!("forgetlab-job-{job_id}-%j.out"))
    }

    /// `sbatch`'s arguments for a job. Given on the command line rather than as `#SBATCH`
    /// lines so paths need no quoting.
    pub fn sbatch_args(&self, job_id: i64) -> Vec<String> {
        let mut args = vec![
            "--parsable".to_owned(),
            format!("--job-name=forgetlab-{job_id}"),
            format!("--output={}", self.output_pattern(job_id).display()),
            format!("--chdir={}", self.data_dir.display()),
            "--ntasks=1".to_owned(),
            export_option(&super::inherited_names()),
        ];
        args.extend(self.partition.iter().map(|p| format!("--partition={p}")));
        args.extend(self.account.iter().map(|a| format!("--account={a}")));
        if self.gpus > 0 {
            args.push(format!("--gres=gpu:{}", self.gpus));
        }
        args.extend(self.time_limit.iter().map(|t| format!("--time={t}")));
        args
    }

    /// The batch script (read by `sbatch` from stdin): the extra options, then the worker
    /// for this one job. The token lives in the script, which Slurm keeps readable by the
    /// job's owner only, not in `sbatch`'s environment.
    pub fn batch_script(&self, job_id: i64, token: &str) -> String {
        let mut script = String::from("#!/bin/sh\n");
        for option in &self.extra {
            script.push_str(&format!("#SBATCH {option}\n"));
        }
        script.push_str(&format!(
            "# forgetlab job {job_id}: a worker that leases this job only, then exits.\n\
             export FORGETLAB_SERVER={server}\n\
             export FORGETLAB_WORKER_TOKEN={token}\n\
             export FORGETLAB_JOB_ID={job_id}\n\
             export FORGETLAB_DATA_DIR={data}\n\
             export FORGETLAB_WORKER_NAME=\"slurm-$SLURM_JOB_ID@$(hostname)\"\n\
             exec {bin} --job {job_id}\n",
            server = shell_quote(&self.server_url),
            token = shell_quote(token),
            data = shell_quote(&self.data_dir.display().to_string()),
            bin = shell_quote(&self.worker_bin.display().to_string()),
        ));
        script
    }
}

/// `--export`: the batch job gets only the variables a local worker would inherit (and Slurm's
/// own `SLURM_*`), never the server's secrets; the script sets the rest (issue 19, item 10).
fn export_option(names: &[String]) -> String {
    let mut names = names.to_vec();
    names.sort();
    if names.is_empty() { "--export=NONE".to_owned() } else { format!("--export={}", names.join(",")) }
}

/// Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
/// days-hours:minutes, days-hours:minutes:seconds, or unlimited.
fn is_slurm_time(text: &str) -> bool {
    if text.eq_ignore_ascii_case("unlimited") || text.eq_ignore_ascii_case("infinite") {
        return true;
    }
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (days, clock) = match text.split_once('-') {
        Some((days, clock)) => (Some(days), clock),
        None => (None, text),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    days.is_none_or(number) && (1..=3).contains(&parts.len()) && parts.iter().all(|p| number(p))
}

/// `'text'` for sh, with each `'` written as `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Whether `program` is an executable file in a PATH folder.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a Slurm command printed, or why it could not be run.
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs a Slurm client command with `stdin` as its input, under [`COMMAND_TIMEOUT`].
/// The server's worker token is kept out of its environment: batch jobs inherit it.
async fn run(program: &str, args: &[String], stdin: Option<&str>) -> std::io::Result<Ran> {
    let mut command = super::clean_command(std::path::Path::new(program));
    // The client commands find their cluster through Slurm's own variables (SLURM_CONF, ...).
    command.envs(std::env::vars_os().filter(|(name, _)| name.to_str().is_some_and(|n| n.starts_with("SLURM_"))));
    command.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await?;
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{program} did not answer within {COMMAND_TIMEOUT:?}")))??;
    Ok(Ran {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

pub struct SlurmExecutor {
    pub settings: SlurmSettings,
    pub queue: Arc<Queue>,
    /// Slurm jobs already sent `scancel`, so it is sent once.
    scancelled: HashSet<i64>,
    /// Jobs whose log already says that `sbatch` is missing.
    told_missing: HashSet<i64>,
    missing_logged_at: Option<Instant>,
}

impl SlurmExecutor {
    pub fn new(settings: SlurmSettings, queue: Arc<Queue>) -> Self {
        Self { settings, queue, scancelled: HashSet::new(), told_missing: HashSet::new(), missing_logged_at: None }
    }

    /// Follows the queue and the cluster every `poll` until `shutdown` turns true. Slurm
    /// jobs keep running when the server stops; the next start picks them up from the
    /// database.
    pub fn start(mut self, mut shutdown: watch::Receiver<bool>) {
        let output_dir = self.settings.data_dir.join("slurm");
        if let Err(error) = std::fs::create_dir_all(&output_dir) {
            tracing::warn!("cannot create {} for the Slurm jobs' output ({error}); it must exist on the nodes or their jobs fail", output_dir.display());
        }
        tracing::info!(
            server_url = %self.settings.server_url,
            worker_bin = %self.settings.worker_bin.display(),
            data_dir = %self.settings.data_dir.display(),
            "Slurm executor: queued jobs are submitted with sbatch"
        );
        tokio::spawn(async move {
            match self.queue.abandon_unfinished_submissions().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!("{n} submission(s) left unfinished by the last run of the server were abandoned"),
                Err(error) => tracing::error!("cannot tidy unfinished Slurm submissions: {error}"),
            }
            let mut tick = tokio::time::interval(self.settings.poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => self.round().await,
                    _ = shutdown.changed() => break,
                }
            }
        });
    }

    /// One look: endings first (so a re-queued job is submitted again in the same round),
    /// then submissions.
    pub async fn round(&mut self) {
        if let Err(error) = self.follow().await {
            tracing::error!("following the Slurm jobs failed: {error:#}");
        }
        if let Err(error) = self.submit().await {
            tracing::error!("submitting to Slurm failed: {error:#}");
        }
    }

    async fn submit(&mut self) -> anyhow::Result<()> {
        let queued = self.queue.slurm_submittable(SUBMISSIONS_PER_ROUND).await?;
        if queued.is_empty() {
            return Ok(());
        }
        if !on_path("sbatch") {
            return self.sbatch_missing(&queued, "was not found on PATH").await;
        }
        for (job_id, run_id) in queued {
            let Some(token) = self.queue.prepare_submission(job_id, self.settings.token_lifetime_seconds).await? else { continue };
            let script = self.settings.batch_script(job_id, &token);
            match run("sbatch", &self.settings.sbatch_args(job_id), Some(&script)).await {
                Ok(ran) if ran.success => match parse_parsable(&ran.stdout) {
                    Some(slurm_job_id) => {
                        let output = self.settings.output_pattern(job_id).display().to_string().replace("%j", &slurm_job_id.to_string());
                        self.queue.submitted(job_id, slurm_job_id, &output).await?;
                    }
                    None => {
                        let message = format!("sbatch answered without a job id: {:?} {}", ran.stdout, ran.stderr);
                        tracing::error!(job = job_id, run = run_id, "{message}");
                        self.queue.submission_refused(job_id, message).await?;
                    }
                },
                Ok(ran) => {
                    let said = if ran.stderr.is_empty() { &ran.stdout } else { &ran.stderr };
                    let message = format!("sbatch refused the job: {said}");
                    tracing::error!(job = job_id, run = run_id, "{message}");
                    self.queue.submission_refused(job_id, message).await?;
                }
                Err(error) => {
                    self.queue.submission_abandoned(job_id).await?;
                    if error.kind() == std::io::ErrorKind::NotFound {
                        return self.sbatch_missing(&[(job_id, run_id)], "could not be started").await;
                    }
                    // The controller may be busy or away: the job stays queued for the next round.
                    tracing::error!(job = job_id, run = run_id, "sbatch failed: {error}; trying again in {:?}", self.settings.poll);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Says, in the server log (every [`MISSING_REPEAT`]) and once in each waiting job's
    /// log, that Slurm's commands are missing; the jobs stay queued.
    async fn sbatch_missing(&mut self, jobs: &[(i64, i64)], what: &str) -> anyhow::Result<()> {
        let message = format!(
            "FORGETLAB_EXECUTOR=slurm, but `sbatch` {what}: install the Slurm client commands on this server (Debian: \
             apt-get install slurm-client) configured for your cluster (/etc/slurm/slurm.conf or SLURM_CONF), or set \
             FORGETLAB_EXECUTOR=local. The job stays queued."
        );
        if self.missing_logged_at.is_none_or(|at| at.elapsed() > MISSING_REPEAT) {
            tracing::error!("{message}");
            self.missing_logged_at = Some(Instant::now());
        }
        for &(job_id, _) in jobs {
            if self.told_missing.insert(job_id) {
                self.queue.executor_note(job_id, message.clone()).await?;
            }
        }
        Ok(())
    }

    async fn follow(&mut self) -> anyhow::Result<()> {
        let jobs = self.queue.slurm_jobs().await?;
        if jobs.is_empty() {
            return Ok(());
        }
        // Only a successful listing says a job is gone: when squeue fails (controller
        // restarting), nothing is concluded.
        let listed = squeue().await?;
        for job in &jobs {
            match listed.get(&job.slurm_job_id) {
                Some(state) => {
                    if *state != job.slurm_state {
                        self.queue.slurm_state(job, state).await?;
                    }
                    if let Some(why) = unwanted(job) {
                        if self.scancelled.insert(job.slurm_job_id) {
                            self.scancel(job, why).await?;
                        }
                    }
                }
                None => {
                    let state = final_state(job.slurm_job_id).await;
                    let output = self.settings.output_pattern(job.job_id).display().to_string().replace("%j", &job.slurm_job_id.to_string());
                    self.queue.slurm_job_ended(job, &state, &output).await?;
                    self.scancelled.remove(&job.slurm_job_id);
                }
            }
        }
        Ok(())
    }

    async fn scancel(&self, job: &SlurmJob, why: &str) -> anyhow::Result<()> {
        let ran = run("scancel", &[job.slurm_job_id.to_string()], None).await.context("running scancel")?;
        let line =
            if ran.success { format!("scancel {} sent: {why}", job.slurm_job_id) } else { format!("scancel {} failed: {}", job.slurm_job_id, ran.stderr) };
        tracing::info!(job = job.job_id, "{line}");
        self.queue.executor_note(job.job_id, line).await?;
        Ok(())
    }
}

/// Why a Slurm job that is still listed should go, if it should: its run ended or was
/// cancelled, or its worker lost the lease (the job was re-queued meanwhile and waits for this
/// Slurm job to end before it is submitted again).
fn unwanted(job: &SlurmJob) -> Option<&'static str> {
    match job.status {
        RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled => Some("the job has ended"),
        RunStatus::Running if job.cancel_requested => Some("the run was cancelled"),
        RunStatus::Queued if job.leased => Some("its worker lost the lease; the job was re-queued"),
        _ => None,
    }
}

/// `sbatch --parsable` prints `ID` or `ID;CLUSTER`.
fn parse_parsable(stdout: &str) -> Option<i64> {
    stdout.lines().last()?.split(';').next()?.trim().parse().ok()
}

/// The Slurm jobs of this user that Slurm still lists (pending, running, completing), with
/// their states.
async fn squeue() -> anyhow::Result<HashMap<i64, String>> {
    let args = ["--me", "--noheader", "--format=%i|%T"].map(String::from);
    let ran = run("squeue", &args, None).await.context("running squeue")?;
    if !ran.success {
        return Err(anyhow!("squeue failed: {}", ran.stderr));
    }
    Ok(parse_squeue(&ran.stdout))
}

fn parse_squeue(stdout: &str) -> HashMap<i64, String> {
    stdout
        .lines()
        .filter_map(|line| {
            let (id, state) = line.trim().split_once('|')?;
            Some((id.trim().parse().ok()?, state.trim().to_owned()))
        })
        .collect()
}

/// How a Slurm job that `squeue` no longer lists ended: `sacct` where accounting is on,
/// else `scontrol` (which remembers finished jobs for MinJobAge, 300 s by default).
async fn final_state(slurm_job_id: i64) -> String {
    let id = slurm_job_id.to_string();
    let sacct = ["-n", "-X", "-P", "-j", &id, "--format=State,ExitCode"].map(String::from);
    if let Ok(ran) = run("sacct", &sacct, None).await {
        if let Some(line) = ran.stdout.lines().find(|l| !l.trim().is_empty()).filter(|_| ran.success) {
            let (state, exit) = line.split_once('|').unwrap_or((line, ""));
            return format!("{}, exit code {exit}", state.trim());
        }
    }
    let scontrol = ["show", "job", "-o", &id].map(String::from);
    match run("scontrol", &scontrol, None).await {
        Ok(ran) if ran.success => parse_scontrol(&ran.stdout).unwrap_or_else(|| "state unknown".into()),
        _ => "state unknown: neither sacct nor scontrol knows the job any more".into(),
    }
}

/// `JobState=CANCELLED Reason=None ... ExitCode=0:15` from `scontrol show job -o`.
fn parse_scontrol(stdout: &str) -> Option<String> {
    let field = |name: &str| stdout.split_whitespace().find_map(|f| f.strip_prefix(name).and_then(|f| f.strip_prefix('=')));
    let state = field("JobState")?;
    let reason = field("Reason").filter(|r| *r != "None").map(|r| format!(", reason {r}")).unwrap_or_default();
    let exit = field("ExitCode").map(|e| format!(", exit code {e}")).unwrap_or_default();
    Some(format!("{state}{reason}{exit}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn settings(args: &[&str]) -> Result<SlurmSettings, String> {
        let config = Config::try_parse_from(std::iter::once("forgetlab").chain(args.iter().copied())).expect("flags parse");
        SlurmSettings::from_config(&config, "http://10.0.0.1:3000", "/opt/forgetlab/forgetlab-worker".into(), "/shared/forgetlab".into())
    }

    #[test]
    fn settings_default_to_the_servers_own_and_refuse_what_sbatch_would() {
        let s = settings(&[]).unwrap();
        assert_eq!(
            (s.server_url.as_str(), s.worker_bin.as_path(), s.data_dir.as_path()),
            ("http://10.0.0.1:3000", Path::new("/opt/forgetlab/forgetlab-worker"), Path::new("/shared/forgetlab"))
        );
        assert!(settings(&["--slurm-time", "2-03:04:05"]).is_ok());
        assert!(settings(&["--slurm-time", "90"]).is_ok());
        let bad_time = settings(&["--slurm-time", "two hours"]).unwrap_err();
        assert!(bad_time.contains("FORGETLAB_SLURM_TIME") && bad_time.contains("\"two hours\""), "{bad_time}");
        assert!(settings(&["--slurm-time", "1:2:3:4"]).is_err());
        assert!(settings(&["--slurm-partition", "gpu a100"]).unwrap_err().contains("FORGETLAB_SLURM_PARTITION"));
        assert!(settings(&["--slurm-worker-bin", "bin/forgetlab-worker"]).unwrap_err().contains("absolute"));
        assert!(settings(&["--slurm-data-dir", "data"]).unwrap_err().contains("FORGETLAB_SLURM_DATA_DIR"));
        assert!(settings(&["--slurm-server-url", "10.0.0.1:3000"]).unwrap_err().contains("http://"));
        assert!(settings(&["--slurm-extra", "qos=normal"]).unwrap_err().contains("FORGETLAB_SLURM_EXTRA"));
        let s = settings(&["--slurm-extra", "--qos=normal; #SBATCH --constraint=a100;"]).unwrap();
        assert_eq!(s.extra, ["--qos=normal", "--constraint=a100"]);
    }

    #[test]
    fn the_batch_script_runs_one_job_with_its_token_and_quotes_paths() {
        let s = settings(&[
            "--slurm-partition=gpu",
            "--slurm-account=lab",
            "--slurm-gpus=2",
            "--slurm-time=04:00:00",
            "--slurm-extra=--qos=high",
            "--slurm-worker-bin=/opt/it's here/forgetlab-worker",
        ])
        .unwrap();
        let args = s.sbatch_args(7);
        let export = args.iter().find(|a| a.starts_with("--export=")).expect("an --export option");
        assert!(!export.contains("FORGETLAB") && !export.contains("ALL"), "{export}");
        assert_eq!(export_option(&["PATH".into(), "HOME".into()]), "--export=HOME,PATH");
        assert_eq!(export_option(&[]), "--export=NONE");
        for expected in [
            "--parsable",
            "--job-name=forgetlab-7",
            "--output=/shared/forgetlab/slurm/forgetlab-job-7-%j.out",
            "--partition=gpu",
            "--account=lab",
            "--gres=gpu:2",
            "--time=04:00:00",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} missing from {args:?}");
        }
        let script = s.batch_script(7, "secret");
        assert!(script.starts_with("#!/bin/sh\n#SBATCH --qos=high\n"), "{script}");
        assert!(script.contains("export FORGETLAB_WORKER_TOKEN='secret'\n"));
        assert!(script.contains("export FORGETLAB_JOB_ID=7\n"));
        assert!(script.contains(r"exec '/opt/it'\''s here/forgetlab-worker' --job 7"), "{script}");
        assert!(!settings(&[]).unwrap().sbatch_args(1).iter().any(|a| a.starts_with("--gres")), "no GPUs asked by default");
    }

    #[test]
    fn slurm_outputs_are_read() {
        assert_eq!(parse_parsable("1234\n"), Some(1234));
        assert_eq!(parse_parsable("1234;cluster"), Some(1234));
        assert_eq!(parse_parsable("Submitted"), None);
        let listed = parse_squeue("12|RUNNING\n13|PENDING\n\n");
        assert_eq!((listed[&12].as_str(), listed[&13].as_str(), listed.len()), ("RUNNING", "PENDING", 2));
        let shown = "JobId=5 JobName=x UserId=root(0) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) ExitCode=0:15";
        assert_eq!(parse_scontrol(shown).as_deref(), Some("TIMEOUT, reason TimeLimit, exit code 0:15"));
    }
}
