//! A checkpoint after every epoch, so a job whose worker died resumes from its last completed
//! epoch and produces the same records as an uninterrupted run.
//!
//! A run's folder holds `epoch-N.safetensors` (the model's variables as `model.{name}` and the
//! optimizer state as `optim.{name}::...`) and `checkpoint.json` naming the latest one with
//! the spec it belongs to. The JSON is replaced atomically after its tensor file is complete,
//! so a crash while saving leaves the previous checkpoint in force.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use protocol::ExperimentSpec;
use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

use crate::optim::Optim;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pointer {
    epoch: u32,
    file: String,
    spec: ExperimentSpec,
    /// The training schedule's state after `epoch` (`schedule::State`); absent in
    /// checkpoints written before schedules existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule: Option<serde_json::Value>,
}

pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Checkpoints { dir: dir.into() }
    }

    fn pointer_path(&self) -> PathBuf {
        self.dir.join("checkpoint.json")
    }

    /// Writes `snapshot` (model, optimizer, the training schedule's state when it has one)
    /// and removes the checkpoint before it (on any thread: the training
    /// thread goes on while it is written).
    pub fn write(&self, snapshot: Snapshot) -> Result<()> {
        let Snapshot { spec, epoch, tensors, schedule } = snapshot;
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let previous = self.pointer().map(|p| p.file);
        let file = format!("epoch-{epoch}.safetensors");
        let named: Vec<(String, Tensor)> = tensors.into_iter().map(|(n, t)| (n, t.to_device(tch::Device::Cpu))).collect();
        Tensor::write_safetensors(&named, self.dir.join(&file)).context("writing the checkpoint")?;
        let pointer = Pointer { epoch, file: file.clone(), spec, schedule };
        let temporary = self.dir.join("checkpoint.json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(&pointer)?)?;
        std::fs::rename(&temporary, self.pointer_path())?;
        if let Some(old) = previous.filter(|old| *old != file) {
            let _ = std::fs::remove_file(self.dir.join(old));
        }
        Ok(())
    }

    fn pointer(&self) -> Option<Pointer> {
        let bytes = std::fs::read(self.pointer_path()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The last completed epoch of this spec's checkpoint, if there is one.
    pub fn latest(&self, spec: &ExperimentSpec) -> Option<u32> {
        self.pointer().filter(|p| p.spec == *spec).map(|p| p.epoch)
    }

    /// The schedule state saved with the latest checkpoint of `spec`.
    pub fn schedule(&self, spec: &ExperimentSpec) -> Option<serde_json::Value> {
        self.pointer().filter(|p| p.spec == *spec).and_then(|p| p.schedule)
    }

    /// Restores the model and optimizer from the latest checkpoint of `spec`. Returns the
    /// epoch it ended, or `None` (leaving both untouched) when there is none for this spec.
    pub fn restore(&self, spec: &ExperimentSpec, vs: &nn::VarStore, optim: &mut Optim) -> Result<Option<u32>> {
        let Some(pointer) = self.pointer().filter(|p| p.spec == *spec) else { return Ok(None) };
        let path = self.dir.join(&pointer.file);
        let tensors = Tensor::read_safetensors(&path).with_context(|| format!("reading checkpoint {}", path.display()))?;
        let mut model = Vec::new();
        let mut state = Vec::new();
        for (name, tensor) in tensors {
            if let Some(rest) = name.strip_prefix("model.") {
                model.push((rest.to_owned(), tensor));
            } else if let Some(rest) = name.strip_prefix("optim.") {
                state.push((rest.to_owned(), tensor));
            }
        }
        let mut variables = vs.variables();
        anyhow::ensure!(model.len() == variables.len(), "checkpoint {} has {} model tensors, the model {}", path.display(), model.len(), variables.len());
        tch::no_grad(|| -> Result<()> {
            for (name, tensor) in &model {
                let target = variables.get_mut(name).with_context(|| format!("checkpoint tensor {name} is not in the model"))?;
                target.f_copy_(&tensor.to_device(target.device()))?;
            }
            Ok(())
        })?;
        optim.load_state(&state)?;
        Ok(Some(pointer.epoch))
    }

    /// Removes the run's checkpoints (after it succeeded).
    pub fn clear(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The state at the end of an epoch, copied (on the model's device) so that training can
/// change the originals while [`Checkpoints::write`] saves it.
pub struct Snapshot {
    spec: ExperimentSpec,
    epoch: u32,
    tensors: Vec<(String, Tensor)>,
    schedule: Option<serde_json::Value>,
}

impl Snapshot {
    pub fn take(spec: &ExperimentSpec, epoch: u32, vs: &nn::VarStore, optim: &Optim, schedule: Option<serde_json::Value>) -> Self {
        let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
        tensors.extend(optim.state().into_iter().map(|(n, t)| (format!("optim.{n}"), t)));
        let tensors = tch::no_grad(|| tensors.into_iter().map(|(n, t)| (n, t.detach().copy())).collect());
        Snapshot { spec: spec.clone(), epoch, tensors, schedule }
    }
}

/// Where the checkpoints of run `run_id` live under a worker's data folder.
pub fn run_dir(data_dir: &Path, run_id: i64) -> PathBuf {
    protocol::worker::checkpoint_dir(data_dir, run_id)
}
