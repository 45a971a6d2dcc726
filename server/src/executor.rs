//! The local executor: one `forgetlab-worker` process per device slot, restarted when it
//! dies. Workers talk to this server over HTTP like any remote worker would. The other
//! executor, [`slurm`], submits each queued job to a Slurm cluster instead.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;

use crate::config::DeviceSetting;

pub mod slurm;

/// Variables a worker may inherit from the server's environment: where programs and
/// libraries are, the locale, logging, and the CUDA and threading settings of the machine.
/// Nothing else reaches it: not `FORGETLAB_ADMIN_PASSWORD`, not the server's other settings,
/// not whatever secrets its service manager set (issue 19, item 10). What a worker needs from
/// the server it is given explicitly.
const INHERITED: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "RUST_LOG", "RUST_BACKTRACE", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS"];
const INHERITED_PREFIXES: &[&str] = &["CUDA_", "NVIDIA_", "LC_"];

/// The names of the server's environment variables a worker inherits ([`INHERITED`]).
pub fn inherited_names() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| INHERITED.contains(&name.as_str()) || INHERITED_PREFIXES.iter().any(|p| name.starts_with(p)))
        .collect()
}

/// A command with only the inherited part of the server's environment.
pub fn clean_command(program: &std::path::Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for name in inherited_names() {
        if let Some(value) = std::env::var_os(&name) {
            command.env(name, value);
        }
    }
    command
}

pub struct LocalExecutor {
    pub worker_bin: PathBuf,
    pub server_url: String,
    pub worker_token: String,
    pub slots: u32,
    pub device: DeviceSetting,
    /// Given to workers: they keep checkpoints and the dataset cache there.
    pub data_dir: PathBuf,
}

impl LocalExecutor {
    /// Starts the slots' supervisors; they stop their workers when `shutdown` turns true.
    pub fn start(self, shutdown: watch::Receiver<bool>) {
        if self.slots == 0 {
            tracing::info!("no local workers (FORGETLAB_WORKERS=0); remote workers can lease with the worker token");
            return;
        }
        for slot in 0..self.slots {
            let mut command = clean_command(&self.worker_bin);
            command
                .env("FORGETLAB_SERVER", &self.server_url)
                .env("FORGETLAB_WORKER_TOKEN", &self.worker_token)
                .env("FORGETLAB_WORKER_NAME", format!("local-{slot}"))
                .env("FORGETLAB_EXIT_WITH_PARENT", "true")
                .env("FORGETLAB_DATA_DIR", &self.data_dir)
                .kill_on_drop(true);
            match self.device {
                DeviceSetting::Cpu => {
                    command.env("CUDA_VISIBLE_DEVICES", "");
                }
                // One GPU per slot.
                DeviceSetting::Cuda | DeviceSetting::Auto if self.slots > 1 => {
                    command.env("CUDA_VISIBLE_DEVICES", slot.to_string());
                }
                _ => {}
            }
            tokio::spawn(supervise(slot, self.worker_bin.clone(), command, shutdown.clone()));
        }
    }
}

async fn supervise(slot: u32, bin: PathBuf, mut command: Command, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    while !*shutdown.borrow() {
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(
                    "cannot start worker {slot} from {}: {error}. Build it with `cargo build -p trainer` or set FORGETLAB_WORKER_BIN; retrying in 30 s",
                    bin.display()
                );
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => continue,
                    _ = shutdown.changed() => break,
                }
            }
        };
        tracing::info!(slot, pid = child.id(), "worker started");
        let started = std::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!(slot, ?status, "worker exited; restarting in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            _ = shutdown.changed() => {
                let _ = child.kill().await;
                break;
            }
        }
    }
}
