//! Settings, from flags or environment variables, in one place.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Parser)]
#[command(name = "forgetlab", version, about = "forgetlab: study what neural networks forget while they are fine-tuned.")]
pub struct Config {
    /// Address to serve on.
    #[arg(long, env = "FORGETLAB_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Folder holding the SQLite database (forgetlab.db) and other state; created if missing.
    #[arg(long, env = "FORGETLAB_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Folders datasets may be registered from, separated by ':'. The data dir's `datasets/`
    /// folder is always one.
    #[arg(long, env = "FORGETLAB_DATA_ROOTS", value_delimiter = ':', default_value = "/usr/share/datasets")]
    pub data_roots: Vec<PathBuf>,

    /// Local worker processes (device slots): `auto`, one per GPU that `nvidia-smi -L` lists
    /// (or that CUDA_VISIBLE_DEVICES names), each pinned to its GPU, or one CPU worker where
    /// there is none; or a number, 0 for none (workers started elsewhere can still lease jobs
    /// with the worker token).
    #[arg(long, env = "FORGETLAB_WORKERS", default_value = "auto", value_parser = parse_workers)]
    pub workers: Workers,

    /// Which devices local workers may use: `auto` (CUDA when present), `cpu` (hide GPUs from
    /// them), `cuda`.
    #[arg(long, env = "FORGETLAB_DEVICE", value_enum, default_value_t = DeviceSetting::Auto)]
    pub device: DeviceSetting,

    /// The worker binary; default: `forgetlab-worker` beside this executable.
    #[arg(long, env = "FORGETLAB_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,

    /// Token workers present to lease jobs; default: a random one per start, handed to the
    /// local workers.
    #[arg(long, env = "FORGETLAB_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,

    /// Largest weights file `PUT /api/v1/weights/{file}` takes, in MB.
    #[arg(long, env = "FORGETLAB_MAX_UPLOAD_MB", default_value_t = 2048)]
    pub max_upload_mb: u64,

    /// How a finished run's records keep margin and EL2N: `exact` (bit for bit), `half` (11
    /// significant bits) or `bfloat` (8): smaller databases; every other column, and every
    /// statistic, stays exact (records::RecordPrecision).
    #[arg(long, env = "FORGETLAB_RECORD_PRECISION", value_enum, default_value_t = crate::records::RecordPrecision::Exact)]
    pub record_precision: crate::records::RecordPrecision,

    /// Runs a member may have queued or running at once (administrators are not limited);
    /// launches past it are refused with the count.
    #[arg(long, env = "FORGETLAB_MEMBER_MAX_ACTIVE_RUNS", default_value_t = 1000)]
    pub member_max_active_runs: u64,

    /// The highest queue priority a member may give a run (-100 to 100; administrators may
    /// use any).
    #[arg(long, env = "FORGETLAB_MEMBER_MAX_PRIORITY", default_value_t = 10, allow_negative_numbers = true)]
    pub member_max_priority: i64,

    /// A browser session unused for this many hours ends (besides its 14-day life).
    #[arg(long, env = "FORGETLAB_SESSION_IDLE_HOURS", default_value_t = 12)]
    pub session_idle_hours: u64,

    /// Addresses of reverse proxies in front of the server, separated by ','. Only a request
    /// from one of them has its client address read from FORGETLAB_CLIENT_IP_HEADER (for the
    /// sign-in limits); every other request is known by its connection's address.
    #[arg(long, env = "FORGETLAB_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// The header a trusted proxy puts the client's address in: `x-forwarded-for` (its last
    /// entry, the one the proxy added) or e.g. `x-real-ip`.
    #[arg(long, env = "FORGETLAB_CLIENT_IP_HEADER", default_value = "x-forwarded-for")]
    pub client_ip_header: String,

    /// Seconds a worker may take to send one request's body (an epoch's records); a slower
    /// one is answered 408 and re-sends.
    #[arg(long, env = "FORGETLAB_WORKER_BODY_SECONDS", default_value_t = 120)]
    pub worker_body_seconds: u64,

    /// Folder for scheduled backups (`forgetlab-YYYYMMDDTHHMMSSZ/` each, as `forgetlab admin
    /// backup` makes); none when unset.
    #[arg(long, env = "FORGETLAB_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Hours between scheduled backups.
    #[arg(long, env = "FORGETLAB_BACKUP_HOURS", default_value_t = 24.0)]
    pub backup_hours: f64,

    /// Scheduled backups kept (the oldest are removed).
    #[arg(long, env = "FORGETLAB_BACKUP_KEEP", default_value_t = 7)]
    pub backup_keep: usize,

    /// Free space on the data volume under which the jobs page and the log warn, in MB.
    #[arg(long, env = "FORGETLAB_DISK_WARN_MB", default_value_t = 5120)]
    pub disk_warn_mb: u64,

    /// Free space on the data volume kept in reserve, in MB: under it, new runs, weights
    /// uploads and workers' record uploads are refused (507) before SQLite would fail.
    #[arg(long, env = "FORGETLAB_DISK_MIN_FREE_MB", default_value_t = 1024)]
    pub disk_min_free_mb: u64,

    /// Days after which the checkpoints of a failed or cancelled run are removed (retrying it
    /// then starts from its first epoch).
    #[arg(long, env = "FORGETLAB_FAILED_CHECKPOINT_DAYS", default_value_t = 7)]
    pub failed_checkpoint_days: u64,

    /// A job whose worker has not sent a heartbeat for this long is re-queued.
    #[arg(long, env = "FORGETLAB_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,

    /// Folder with the browser bundle (`pkg/`); default: `../site` from this executable, where
    /// `cargo leptos build` puts it.
    #[arg(long, env = "FORGETLAB_SITE_ROOT")]
    pub site_root: Option<PathBuf>,

    /// Where queued jobs run: `local` (worker processes on this machine, FORGETLAB_WORKERS of
    /// them) or `slurm` (one `sbatch` job per queued job; the FORGETLAB_SLURM_* settings).
    #[arg(long, env = "FORGETLAB_EXECUTOR", value_enum, default_value_t = ExecutorKind::Local)]
    pub executor: ExecutorKind,

    /// Slurm partition to submit to (`sbatch --partition`); default: the cluster's default.
    #[arg(long, env = "FORGETLAB_SLURM_PARTITION")]
    pub slurm_partition: Option<String>,

    /// Slurm account to charge (`sbatch --account`).
    #[arg(long, env = "FORGETLAB_SLURM_ACCOUNT")]
    pub slurm_account: Option<String>,

    /// GPUs per job (`sbatch --gres=gpu:N`); 0 asks for none.
    #[arg(long, env = "FORGETLAB_SLURM_GPUS", default_value_t = 0)]
    pub slurm_gpus: u32,

    /// Time limit per job in Slurm's format (`MM`, `HH:MM:SS`, `D-HH:MM`, ...). A job that
    /// reaches it is re-queued and resumes from its last checkpoint.
    #[arg(long, env = "FORGETLAB_SLURM_TIME")]
    pub slurm_time: Option<String>,

    /// Extra `#SBATCH` options for the batch script, separated by ';' (e.g.
    /// `--qos=normal;--constraint=a100`).
    #[arg(long, env = "FORGETLAB_SLURM_EXTRA", value_delimiter = ';', allow_hyphen_values = true)]
    pub slurm_extra: Vec<String>,

    /// The worker binary as the cluster's nodes see it (an absolute path); default: the
    /// local worker binary.
    #[arg(long, env = "FORGETLAB_SLURM_WORKER_BIN")]
    pub slurm_worker_bin: Option<PathBuf>,

    /// This server's URL as the cluster's nodes reach it; default: the address it serves on.
    #[arg(long, env = "FORGETLAB_SLURM_SERVER_URL")]
    pub slurm_server_url: Option<String>,

    /// Folder for the workers' checkpoints, dataset cache and Slurm output, on a filesystem
    /// every node sees (an absolute path); default: FORGETLAB_DATA_DIR.
    #[arg(long, env = "FORGETLAB_SLURM_DATA_DIR")]
    pub slurm_data_dir: Option<PathBuf>,

    /// Seconds between looks at the queue and at `squeue`.
    #[arg(long, env = "FORGETLAB_SLURM_POLL_SECONDS", default_value_t = 10)]
    pub slurm_poll_seconds: u64,

    /// Hours a submission's lease token stays valid: a batch job pending longer is submitted
    /// again (its worker's lease is refused).
    #[arg(long, env = "FORGETLAB_SLURM_TOKEN_HOURS", default_value_t = 72)]
    pub slurm_token_hours: u64,
}

/// How many local workers to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    Auto,
    Count(u32),
}

fn parse_workers(text: &str) -> Result<Workers, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(Workers::Auto);
    }
    text.parse().map(Workers::Count).map_err(|_| format!("FORGETLAB_WORKERS must be auto or a whole number, got {text:?}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    Local,
    Slurm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceSetting {
    Auto,
    Cpu,
    Cuda,
}

impl Config {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("forgetlab.db")
    }

    fn beside_executable(relative: &str) -> Option<PathBuf> {
        std::env::current_exe().ok()?.parent().map(|dir| dir.join(relative))
    }

    pub fn worker_bin(&self) -> PathBuf {
        self.worker_bin.clone().or_else(|| Self::beside_executable("forgetlab-worker")).unwrap_or_else(|| "forgetlab-worker".into())
    }

    pub fn site_root(&self) -> PathBuf {
        self.site_root.clone().or_else(|| Self::beside_executable("../site")).unwrap_or_else(|| "target/site".into())
    }

    /// Every folder datasets may come from, the data dir's own first.
    pub fn all_data_roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.data_dir.join("datasets")];
        roots.extend(self.data_roots.iter().cloned());
        roots
    }
}
