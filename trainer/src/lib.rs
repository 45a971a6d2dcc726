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
pub mod predict;
pub mod recorder;
pub mod schedule;
pub mod train;
pub mod weights;

/// Picks the torch device for a spec's `device` setting.
pub fn torch_device(setting: protocol::Device) -> anyhow::Result<tch::Device> {
    match setting {
        protocol::Device::Cpu => Ok(tch::Device::Cpu),
        protocol::Device::Auto => Ok(tch::Device::cuda_if_available()),
        protocol::Device::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
        protocol::Device::Cuda => anyhow::bail!(
            "the run asks for device cuda, but this worker's libtorch sees no CUDA device \
             (set device to auto or cpu, or run the worker on a GPU machine with a CUDA libtorch)"
        ),
    }
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
