//! The local executor: one `forgetlab-worker` process per device slot, restarted when it
//! dies. Workers talk to this server over HTTP like any remote worker would. The other
//! executor, [`slurm`], submits each queued job to a Slurm cluster instead.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;

use crate::config::{DeviceSetting, Workers};

pub mod slurm;

/// Variables a worker may inherit from the server's environment: where programs and
/// libraries are, the locale, logging, and the CUDA and threading settings of the machine.
/// Nothing else reaches it: not `FORGETLAB_ADMIN_PASSWORD`, not the server's other settings,
/// not whatever secrets its service manager set (issue 19, item 10). What a worker needs from
/// the server it is given explicitly.
const INHERITED: &[&str] =
    &["PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "RUST_LOG", "RUST_BACKTRACE", "OMP_NUM_THREADS", "MKL_NUM_THREADS"];
const INHERITED_PREFIXES: &[&str] = &["CUDA_", "NVIDIA_", "LC_"];

/// The server's environment variables a worker inherits ([`INHERITED`]), with their values.
fn inherited() -> Vec<(String, std::ffi::OsString)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
        .filter(|(name, _)| INHERITED.contains(&name.as_str()) || INHERITED_PREFIXES.iter().any(|p| name.starts_with(p)))
        .collect()
}

/// The names of the variables a worker inherits.
pub fn inherited_names() -> Vec<String> {
    inherited().into_iter().map(|(name, _)| name).collect()
}

/// A command with only the inherited part of the server's environment.
pub fn clean_command(program: &std::path::Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear().envs(inherited());
    command
}

pub struct LocalExecutor {
    pub worker_bin: PathBuf,
    pub server_url: String,
    pub worker_token: String,
    pub workers: Workers,
    pub device: DeviceSetting,
    /// Given to workers: they keep checkpoints and the dataset cache there.
    pub data_dir: PathBuf,
}

/// The GPUs local workers may be pinned to: the server's own CUDA_VISIBLE_DEVICES when set
/// (the administrator's choice), else every GPU `nvidia-smi -L` lists; none when neither
/// names one (no driver, no GPU).
pub fn visible_gpus() -> Vec<String> {
    if let Some(set) = std::env::var("CUDA_VISIBLE_DEVICES").ok().filter(|v| !v.trim().is_empty()) {
        return set.split(',').map(|d| d.trim().to_owned()).filter(|d| !d.is_empty() && d != "-1").collect();
    }
    let listed = std::process::Command::new("nvidia-smi").arg("-L").stderr(std::process::Stdio::null()).output();
    match listed {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("GPU ")).enumerate().map(|(i, _)| i.to_string()).collect()
        }
        _ => Vec::new(),
    }
}

/// What each local worker slot may see: `Some(gpu)` pins it with CUDA_VISIBLE_DEVICES,
/// `Some("")` hides every GPU (FORGETLAB_DEVICE=cpu), `None` leaves the environment alone.
pub fn plan_slots(workers: Workers, device: DeviceSetting, gpus: &[String]) -> Vec<Option<String>> {
    let count = match workers {
        Workers::Count(n) => n as usize,
        Workers::Auto if device != DeviceSetting::Cpu && !gpus.is_empty() => gpus.len(),
        Workers::Auto => 1,
    };
    (0..count)
        .map(|slot| match device {
            DeviceSetting::Cpu => Some(String::new()),
            _ if gpus.is_empty() => None,
            _ => Some(gpus[slot % gpus.len()].clone()),
        })
        .collect()
}

impl LocalExecutor {
    /// Starts the slots' supervisors; they stop their workers when `shutdown` turns true.
    pub fn start(self, shutdown: watch::Receiver<bool>) {
        let gpus = if self.device == DeviceSetting::Cpu { Vec::new() } else { visible_gpus() };
        let slots = plan_slots(self.workers, self.device, &gpus);
        match (slots.len(), gpus.is_empty()) {
            (0, _) => {
                tracing::info!("no local workers (FORGETLAB_WORKERS=0); remote workers can lease with the worker token");
                return;
            }
            (n, true) => tracing::info!("{n} local worker(s) on the CPU (no GPU listed by nvidia-smi -L or CUDA_VISIBLE_DEVICES, or FORGETLAB_DEVICE=cpu)"),
            (n, false) => tracing::info!("{n} local worker(s), pinned to GPU(s) {}", slots.iter().flatten().cloned().collect::<Vec<_>>().join(", ")),
        }
        for (slot, pin) in slots.into_iter().enumerate() {
            let slot = slot as u32;
            let mut command = clean_command(&self.worker_bin);
            command
                .env("FORGETLAB_SERVER", &self.server_url)
                .env("FORGETLAB_WORKER_TOKEN", &self.worker_token)
                .env("FORGETLAB_WORKER_NAME", format!("local-{slot}"))
                .env("FORGETLAB_EXIT_WITH_PARENT", "true")
                .env("FORGETLAB_DATA_DIR", &self.data_dir)
                .kill_on_drop(true);
            if let Some(pin) = pin {
                command.env("CUDA_VISIBLE_DEVICES", pin);
            }
            tokio::spawn(supervise(slot, self.worker_bin.clone(), command, shutdown.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_gpus() {
        let gpus: Vec<String> = ["0", "1"].map(String::from).to_vec();
        let pins = |w, d, g: &[String]| plan_slots(w, d, g);
        assert_eq!(pins(Workers::Auto, DeviceSetting::Auto, &gpus), vec![Some("0".into()), Some("1".into())], "one per GPU, pinned");
        assert_eq!(pins(Workers::Auto, DeviceSetting::Auto, &[]), vec![None], "one CPU worker without a GPU");
        assert_eq!(pins(Workers::Auto, DeviceSetting::Cpu, &gpus), vec![Some(String::new())], "cpu hides the GPUs");
        assert_eq!(
            pins(Workers::Count(3), DeviceSetting::Cuda, &gpus),
            vec![Some("0".into()), Some("1".into()), Some("0".into())],
            "more slots than GPUs share them"
        );
        assert_eq!(pins(Workers::Count(0), DeviceSetting::Auto, &gpus), Vec::<Option<String>>::new());
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
