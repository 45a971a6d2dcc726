//! The service the pages' server functions call. The server implements it over SQLite and
//! provides it as context; the JSON API handlers call the same implementation.

use std::sync::Arc;

use protocol::auth::{Account, Identity, NewToken, Role, TokenInfo};
use protocol::{DatasetInfo, Failure, Launched, RunDetail, RunList, RunQuery, RunRequest, RunStatus, SamplePage, SampleQuery};

#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn datasets(&self) -> Result<Vec<DatasetInfo>, Failure>;
    /// Launches a run as `who`.
    async fn launch(&self, request: RunRequest, who: &Identity) -> Result<Launched, Failure>;
    async fn runs(&self, query: RunQuery) -> Result<RunList, Failure>;
    /// The server's data volume (the jobs page warns when it is nearly full).
    async fn disk_space(&self) -> Result<protocol::DiskSpace, Failure>;
    /// The workers heard from lately, with their devices and jobs.
    async fn workers(&self) -> Result<Vec<protocol::WorkerView>, Failure>;
    async fn studies(&self) -> Result<Vec<protocol::study::StudySummary>, Failure>;
    async fn study(&self, id: i64) -> Result<protocol::study::StudyDetail, Failure>;
    async fn launch_study(&self, request: protocol::study::StudyRequest, who: &Identity) -> Result<protocol::study::StudyLaunched, Failure>;
    /// Cancels the study's unfinished runs (`who` must own it); how many.
    async fn cancel_study(&self, id: i64, who: &Identity) -> Result<u64, Failure>;
    /// The run's data map, binned.
    async fn data_map(&self, run_id: i64) -> Result<protocol::DataMap, Failure>;
    async fn compare(&self, query: protocol::CompareQuery) -> Result<protocol::Comparison, Failure>;
    /// One sample in this run and every other run over its dataset.
    async fn sample_history(&self, run_id: i64, key: String) -> Result<protocol::SampleHistory, Failure>;
    async fn run(&self, id: i64) -> Result<RunDetail, Failure>;
    /// Changes a run's name, notes or tags, as its owner or an administrator.
    async fn update_run(&self, id: i64, change: protocol::RunChange, who: &Identity) -> Result<RunDetail, Failure>;
    async fn samples(&self, run_id: i64, query: SampleQuery) -> Result<SamplePage, Failure>;
    /// Cancels a queued run, or asks a running one to stop (within a heartbeat).
    async fn cancel(&self, run_id: i64, who: &Identity) -> Result<RunStatus, Failure>;
    /// Queues a failed or cancelled run again; it resumes after its last checkpoint.
    async fn retry(&self, run_id: i64, who: &Identity) -> Result<RunStatus, Failure>;
    /// The class-level view of a succeeded run.
    async fn classes(&self, run_id: i64) -> Result<protocol::ClassReport, Failure>;
    /// The newest `tail` lines of the run's job log.
    async fn log(&self, run_id: i64, tail: u32) -> Result<protocol::JobLog, Failure>;
    /// A personal API token for `who`, its secret shown this once.
    async fn create_token(&self, who: &Identity, name: String) -> Result<NewToken, Failure>;
    async fn tokens(&self, who: &Identity) -> Result<Vec<TokenInfo>, Failure>;
    async fn revoke_token(&self, who: &Identity, id: i64) -> Result<(), Failure>;
    /// Changes the caller's password; ends their other sessions and, when asked, revokes
    /// their API tokens. What was done, in words.
    async fn change_password(&self, who: &Identity, old: String, new: String, revoke_tokens: bool) -> Result<String, Failure>;
    /// Ends every session of `who`; how many.
    async fn sign_out_everywhere(&self, who: &Identity) -> Result<u64, Failure>;
    async fn accounts(&self) -> Result<Vec<Account>, Failure>;
    async fn create_account(&self, name: String, password: String, role: Role) -> Result<Account, Failure>;
    /// Changes another account's role or disabled flag (never the caller's own).
    async fn update_account(&self, who: &Identity, name: String, role: Option<Role>, disabled: Option<bool>) -> Result<Account, Failure>;
    /// Sets a new password for another account, ending its sessions; what was done, in words.
    async fn reset_password(&self, who: &Identity, name: String, password: String, revoke_tokens: bool) -> Result<String, Failure>;
}

pub type SharedBackend = Arc<dyn Backend>;
