//! The training engine behind `forgetlab-worker`.
//!
//! - [`data`]: a dataset split decoded once, subset by content key, resized, kept on the device;
//! - [`models`]: the architectures, with upstream parameter names so published weights load;
//! - [`recorder`]: per-sample correctness, loss, p_true, margin, prediction and EL2N;
//! - [`optim`]: SGD and AdamW with savable state, learning-rate schedules;
//! - [`weights`]: pretrained `.safetensors` weights in torchvision/timm names;
//! - [`checkpoint`]: a checkpoint per epoch, and resuming from it;
//! - [`predict`]: logits of imported weights on `.npy` inputs, to check an import;
//! - [`schedule`]: training schedules, which samples each epoch shows (no tch);
//! - [`train`]: the loop (head warmup, fine-tuning, both measurement modes);
//! - [`local`]: `forgetlab-worker train`, a run into a folder without a server;
//! - [`client`]: the worker side of the HTTP protocol in `protocol::worker`.
//!
//! Not here: storage or analysis (the server and `dynamics` do those).

pub mod checkpoint;
pub mod client;
pub mod data;
pub mod joblog;
pub mod local;
pub mod models;
pub mod optim;
pub mod pipeline;
pub mod predict;
pub mod recorder;
pub mod schedule;
pub mod train;
pub mod weights;

/// Picks the torch device for a spec's `device` setting. `cuda` where CUDA is not available
/// fails with the reason ([`no_cuda_reason`]): a run asked for a GPU never trains on the CPU
/// without saying so.
pub fn torch_device(setting: protocol::Device) -> anyhow::Result<tch::Device> {
    match setting {
        protocol::Device::Cpu => Ok(tch::Device::Cpu),
        protocol::Device::Auto => Ok(tch::Device::cuda_if_available()),
        protocol::Device::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
        protocol::Device::Cuda => anyhow::bail!("the run asks for device cuda, but {} (set device to auto or cpu to train on the CPU)", no_cuda_reason()),
    }
}

/// Whether this process has libtorch's CUDA library loaded: the worker was built against a
/// CUDA libtorch (`FORGETLAB_TORCH=cuda`), read from the process's own mappings.
pub fn has_cuda_build() -> bool {
    std::fs::read_to_string("/proc/self/maps").is_ok_and(|maps| maps.contains("libtorch_cuda.so"))
}

/// Why CUDA is not available to this worker, in words that say what to change.
pub fn no_cuda_reason() -> String {
    if !has_cuda_build() {
        return "this worker's libtorch is the CPU build (build it with FORGETLAB_TORCH=cuda; ./scripts/run does on a machine whose nvidia-smi lists a GPU)"
            .into();
    }
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) if v.trim().is_empty() || v.trim() == "-1" => {
            "its GPUs are hidden (CUDA_VISIBLE_DEVICES is empty: the server was started with FORGETLAB_DEVICE=cpu)".into()
        }
        _ => "its CUDA libtorch sees no GPU: no NVIDIA driver (libcuda.so.1) is loaded, or nvidia-smi -L lists none, or CUDA_VISIBLE_DEVICES names none".into(),
    }
}

/// What a worker trains on, for its job log and heartbeats: `cuda:0 (of 2 visible)`, or
/// `cpu` and why not CUDA.
pub fn describe_device(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(index) => format!("cuda:{index} (of {} visible)", tch::Cuda::device_count()),
        _ => format!("cpu ({})", no_cuda_reason()),
    }
}

/// This process's resident memory, in bytes (VmRSS).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
pub(crate) mod test_support {
    /// libtorch's default random generator is one per process: tests that draw from it (model
    /// initialisation, dropout, augmentation) take this lock so none disturbs another.
    static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
        TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
