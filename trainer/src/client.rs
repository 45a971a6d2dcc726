//! The worker side of the HTTP protocol (`protocol::worker`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use protocol::worker::{EpochUpload, Finish, Heartbeat, HeartbeatReply, Lease, LeaseRequest, LogLines, SampleManifest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pipeline::EpochSink;
use crate::train::Reporter;

/// Transient failures (connection refused, 5xx) are retried this many times, backing off.
const ATTEMPTS: u32 = 6;

#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// A refusal the worker cannot fix by retrying (bad token, invalid upload).
#[derive(Debug, thiserror::Error)]
#[error("the server refused {what} with status {status}: {message}")]
pub struct Refused {
    pub what: String,
    pub status: u16,
    pub message: String,
}

impl Client {
    pub fn new(base: &str) -> Self {
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).timeout(Duration::from_secs(120)).build();
        Self { base: base.trim_end_matches('/').to_owned(), agent }
    }

    fn call<B: Serialize, R: DeserializeOwned>(&self, method: &str, path: &str, token: &str, body: &B) -> Result<Option<R>> {
        self.call_with_attempts(method, path, token, body, ATTEMPTS)
    }

    fn call_with_attempts<B: Serialize, R: DeserializeOwned>(&self, method: &str, path: &str, token: &str, body: &B, attempts: u32) -> Result<Option<R>> {
        self.send_bytes(method, path, token, ("application/json", &serde_json::to_vec(body)?), attempts)
    }

    /// Sends `body` (its content type and bytes), retrying transient failures.
    fn send_bytes<R: DeserializeOwned>(&self, method: &str, path: &str, token: &str, body: (&str, &[u8]), attempts: u32) -> Result<Option<R>> {
        let url = format!("{}/api/v1/worker{path}", self.base);
        let (content_type, bytes) = body;
        let mut wait = Duration::from_millis(250);
        for attempt in 1..=attempts {
            let result = self.agent.request(method, &url).set("authorization", &format!("Bearer {token}")).set("content-type", content_type).send_bytes(bytes);
            match result {
                Ok(response) if response.status() == 204 => return Ok(None),
                Ok(response) => return Ok(Some(response.into_json()?)),
                // 507: the server's disk is nearly full; retrying soon would not help.
                Err(ureq::Error::Status(status, response)) if status < 500 || status == 507 => {
                    let message = response.into_string().unwrap_or_default();
                    let message = serde_json::from_str::<protocol::ApiError>(&message).map(|e| e.message).unwrap_or(message);
                    return Err(Refused { what: format!("{method} {path}"), status, message }.into());
                }
                Err(error) if attempt < attempts => {
                    tracing::warn!("{method} {path} failed (attempt {attempt} of {attempts}): {error}; retrying in {wait:?}");
                    sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
                Err(error) => bail!("{method} {url} failed after {attempts} attempt(s): {error}"),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Asks for a job, once (the caller polls). `None` when the queue is empty.
    /// `device` says what this worker trains on (for the jobs page).
    pub fn lease(&self, worker_token: &str, worker: &str, device: &str) -> Result<Option<Lease>> {
        self.call_with_attempts("POST", "/lease", worker_token, &LeaseRequest { worker: worker.to_owned(), job_id: None, device: Some(device.to_owned()) }, 1)
    }

    /// Asks for one given job (a batch job started for it), retrying while the server cannot
    /// be reached. A [`Refused`] 409 means the job is no longer queued.
    pub fn lease_job(&self, token: &str, worker: &str, job_id: i64, device: &str) -> Result<Lease> {
        let request = LeaseRequest { worker: worker.to_owned(), job_id: Some(job_id), device: Some(device.to_owned()) };
        self.call("POST", "/lease", token, &request)?.ok_or_else(|| anyhow!("the server answered the lease of job #{job_id} without a lease"))
    }

    /// Speaks for a leased job, and keeps its lease alive from a background thread while the
    /// training thread is busy in a long step without heartbeats (decoding a dataset, a full
    /// measurement pass, a checkpoint).
    pub fn job(&self, lease: &Lease) -> JobClient {
        let latest = Arc::new(Mutex::new(Heartbeat { phase: "loading".into(), ..Default::default() }));
        let cancelled = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(Mutex::new(None));
        // A message sends the latest heartbeat now; dropping the sender stops the thread.
        let (wake, woken) = mpsc::channel::<()>();
        let interval = Duration::from_secs_f64((lease.lease_seconds as f64 / 3.0).max(0.5));
        let keepalive = {
            let (client, latest, cancelled, refused) = (self.clone(), latest.clone(), cancelled.clone(), refused.clone());
            let (path, token) = (format!("/jobs/{}/heartbeat", lease.job_id), lease.job_token.clone());
            let log_path = format!("/jobs/{}/log", lease.job_id);
            std::thread::spawn(move || {
                while !matches!(woken.recv_timeout(interval), Err(RecvTimeoutError::Disconnected)) {
                    while woken.try_recv().is_ok() {}
                    let heartbeat = latest.lock().expect("heartbeat lock").clone();
                    send_log(&client, &log_path, &token);
                    match client.call_with_attempts::<_, HeartbeatReply>("POST", &path, &token, &heartbeat, 1) {
                        Ok(Some(reply)) if reply.cancel => cancelled.store(true, Ordering::Relaxed),
                        Ok(_) => {}
                        // The job is no longer this worker's (lease lost, token revoked).
                        Err(error) if error.is::<Refused>() => *refused.lock().expect("refusal lock") = Some(error),
                        Err(error) => tracing::warn!("heartbeat failed: {error:#}"),
                    }
                }
            })
        };
        JobClient {
            client: self.clone(),
            job_id: lease.job_id,
            token: lease.job_token.clone(),
            latest,
            cancelled,
            refused,
            wake: Some(wake),
            keepalive: Some(keepalive),
        }
    }
}

/// Sends the log lines gathered since the last send (`crate::joblog`); keeps them for the next
/// try when the server cannot be reached.
fn send_log(client: &Client, path: &str, token: &str) {
    let lines = crate::joblog::drain();
    if lines.is_empty() {
        return;
    }
    if let Err(error) = client.call_with_attempts::<_, serde_json::Value>("POST", path, token, &LogLines { lines: lines.clone() }, 1) {
        crate::joblog::restore(lines);
        eprintln!("sending the job's log failed: {error:#}");
    }
}

/// Speaks for one leased job with its token.
pub struct JobClient {
    client: Client,
    job_id: i64,
    token: String,
    /// The last progress reported, re-sent by the keep-alive thread.
    latest: Arc<Mutex<Heartbeat>>,
    /// Set when a heartbeat's reply carried cancellation.
    cancelled: Arc<AtomicBool>,
    /// The server's refusal of a heartbeat, which ends the job.
    refused: Arc<Mutex<Option<anyhow::Error>>>,
    wake: Option<mpsc::Sender<()>>,
    keepalive: Option<std::thread::JoinHandle<()>>,
}

impl Drop for JobClient {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.keepalive.take() {
            let _ = thread.join();
        }
    }
}

impl JobClient {
    fn send<B: Serialize, R: DeserializeOwned>(&self, method: &str, path: &str, body: &B) -> Result<Option<R>> {
        self.client.call(method, &format!("/jobs/{}{path}", self.job_id), &self.token, body)
    }

    pub fn finish(&mut self, finish: &Finish) -> Result<()> {
        // No heartbeat after the end: the job's token dies with it.
        drop(self.wake.take());
        if let Some(thread) = self.keepalive.take() {
            let _ = thread.join();
        }
        send_log(&self.client, &format!("/jobs/{}/log", self.job_id), &self.token);
        self.send::<_, serde_json::Value>("POST", "/finish", finish).map(drop)
    }
}

impl Reporter for JobClient {
    /// Never waits on the network: the heartbeat thread sends it, and its reply's
    /// cancellation (or refusal) is seen at the next call.
    fn progress(&mut self, heartbeat: &Heartbeat) -> Result<bool> {
        *self.latest.lock().expect("heartbeat lock") = heartbeat.clone();
        if let Some(wake) = &self.wake {
            let _ = wake.send(());
        }
        if let Some(error) = self.refused.lock().expect("refusal lock").take() {
            return Err(error);
        }
        Ok(self.cancelled.load(Ordering::Relaxed))
    }

    fn manifest(&mut self, manifest: &SampleManifest) -> Result<()> {
        self.send::<_, serde_json::Value>("PUT", "/samples", manifest).map(drop)
    }

    fn epoch_sink(&mut self) -> Box<dyn EpochSink> {
        Box::new(EpochSender { client: self.client.clone(), job_id: self.job_id, token: self.token.clone() })
    }
}

/// Uploads epochs in their binary form (`protocol::wire`) from the epoch pipeline's thread.
struct EpochSender {
    client: Client,
    job_id: i64,
    token: String,
}

impl EpochSink for EpochSender {
    fn epoch(&mut self, epoch: &EpochUpload) -> Result<()> {
        let m = &epoch.metrics;
        let validation = m.val_accuracy.map(|a| format!(", validation accuracy {a:.4}")).unwrap_or_default();
        tracing::info!("epoch {} ({}): loss {:.4}, accuracy {:.4}{validation}, {:.1} s", m.epoch, m.phase.as_str(), m.train_loss, m.train_accuracy, m.seconds);
        let started = std::time::Instant::now();
        let bytes = protocol::wire::encode_epoch(epoch);
        let path = format!("/jobs/{}/epochs/{}", self.job_id, m.epoch);
        self.client.send_bytes::<serde_json::Value>("PUT", &path, &self.token, (protocol::wire::EPOCH_CONTENT_TYPE, &bytes), ATTEMPTS)?;
        tracing::info!("epoch {} stored by the server: {} KiB in {:.0} ms", m.epoch, bytes.len() / 1024, started.elapsed().as_secs_f64() * 1e3);
        Ok(())
    }
}
