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

    /// Number of local worker processes (device slots) to run; 0 runs none (workers started
    /// elsewhere can still lease jobs with the worker token).
    #[arg(long, env = "FORGETLAB_WORKERS", default_value_t = 1)]
    pub workers: u32,

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

    /// A job whose worker has not sent a heartbeat for this long is re-queued.
    #[arg(long, env = "FORGETLAB_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,

    /// Folder with the browser bundle (`pkg/`); default: `../site` from this executable, where
    /// `cargo leptos build` puts it.
    #[arg(long, env = "FORGETLAB_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
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
