//! Pretrained weights from `.safetensors` files in the upstream naming schemes (torchvision
//! for ResNet-18, timm for DeiT-Small), and saving a model's variables in the same scheme.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use tch::{Tensor, nn};

use crate::models::resize_pos_embed;

/// What loading did, for the job's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Tensors copied into the model.
    pub copied: usize,
    /// The file's classifier-head tensors, left out: the head is new for the new classes.
    pub head_skipped: Vec<String>,
    /// Position embeddings interpolated to the run's image size: (from tokens, to tokens).
    pub pos_embed_resized: Option<(i64, i64)>,
}

/// Names to ignore in upstream files: batch-norm step counters (torchvision) carry no weights.
fn ignorable(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// A `.safetensors` file's tensors by name, a leading `module.` (saved from DataParallel)
/// removed. Read once, then asked for its head or loaded.
pub struct WeightsFile {
    path: std::path::PathBuf,
    tensors: BTreeMap<String, Tensor>,
}

impl WeightsFile {
    pub fn read(path: &Path) -> Result<WeightsFile> {
        let tensors = Tensor::read_safetensors(path)
            .with_context(|| format!("reading pretrained weights from {}", path.display()))?
            .into_iter()
            .map(|(name, tensor)| (name.strip_prefix("module.").map(str::to_owned).unwrap_or(name), tensor))
            .collect();
        Ok(WeightsFile { path: path.to_owned(), tensors })
    }

    /// The number of classes of the head `{head_prefix}.weight`.
    pub fn head_classes(&self, head_prefix: &str) -> Result<i64> {
        let name = format!("{head_prefix}.weight");
        let head = self.tensors.get(&name).with_context(|| format!("{} has no {name}: is it a checkpoint of this architecture?", self.path.display()))?;
        Ok(head.size()[0])
    }
}

/// Copies the tensors of `path` into `vs`, except the classifier head (`head_prefix`), which
/// keeps its fresh initialisation for the new class count. Every tensor of the model must be
/// in the file with its shape, and every tensor of the file must be in the model; all problems
/// are reported at once, each naming the tensor and both shapes. `pos_embed` of another grid
/// size is interpolated. Float16/bfloat16 files load into the model's float32.
pub fn load_pretrained(vs: &nn::VarStore, path: &Path, head_prefix: &str) -> Result<Loaded> {
    load(vs, &WeightsFile::read(path)?, Some(head_prefix))
}

/// Copies every tensor of `file` into `vs`, the classifier head included (for `predict`),
/// with the checks of [`load_pretrained`].
pub fn load_exact(vs: &nn::VarStore, file: &WeightsFile) -> Result<Loaded> {
    load(vs, file, None)
}

fn load(vs: &nn::VarStore, weights: &WeightsFile, head_prefix: Option<&str>) -> Result<Loaded> {
    let (path, file) = (&weights.path, &weights.tensors);
    let is_head = |name: &str| head_prefix.is_some_and(|prefix| name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')));
    let mut variables = vs.variables();
    let mut problems = Vec::new();
    let mut loaded = Loaded { copied: 0, head_skipped: Vec::new(), pos_embed_resized: None };
    for (name, tensor) in file {
        if is_head(name) {
            loaded.head_skipped.push(name.clone());
        } else if !variables.contains_key(name) && !ignorable(name) {
            problems.push(format!("unexpected tensor {name} with shape {:?}: the model has no such parameter", tensor.size()));
        }
    }
    tch::no_grad(|| -> Result<()> {
        for (name, target) in variables.iter_mut().filter(|(name, _)| !is_head(name)) {
            let Some(source) = file.get(name) else {
                problems.push(format!("missing tensor {name}: the model expects shape {:?}", target.size()));
                continue;
            };
            let mut source = source.to_kind(target.kind());
            if source.size() != target.size() && name == "pos_embed" && source.dim() == 3 && source.size()[2] == target.size()[2] {
                let (from, to) = (source.size()[1], target.size()[1]);
                source = resize_pos_embed(&source, to)?;
                loaded.pos_embed_resized = Some((from, to));
            }
            if source.size() != target.size() {
                problems.push(format!("tensor {name} has shape {:?} in the file, but the model expects {:?}", source.size(), target.size()));
                continue;
            }
            target.f_copy_(&source.to_device(target.device()))?;
            loaded.copied += 1;
        }
        Ok(())
    })?;
    if !problems.is_empty() {
        anyhow::bail!("{} does not fit the model ({} problems): {}", path.display(), problems.len(), problems.join("; "));
    }
    Ok(loaded)
}

/// Writes every variable of `vs` (parameters and buffers) under its name.
pub fn save(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(name, t)| (name, t.to_device(tch::Device::Cpu))).collect();
    Tensor::write_safetensors(&named, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Shape, build};
    use protocol::Arch;
    use tch::{Device, Kind};

    fn shape(classes: i64, image_size: i64) -> Shape {
        Shape { channels: 3, classes, image_size, drop_path: 0.0 }
    }

    #[test]
    fn resnet_weights_round_trip_with_a_new_head() {
        let _torch = crate::test_support::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resnet18.safetensors");
        let source = nn::VarStore::new(Device::Cpu);
        let _ = build(Arch::Resnet18, &source.root(), shape(1000, 32)).unwrap();
        save(&source, &path).unwrap();

        let target = nn::VarStore::new(Device::Cpu);
        let _ = build(Arch::Resnet18, &target.root(), shape(7, 32)).unwrap();
        let loaded = load_pretrained(&target, &path, "fc").unwrap();
        assert_eq!(loaded.head_skipped, vec!["fc.bias".to_owned(), "fc.weight".to_owned()]);
        assert_eq!(loaded.copied, target.variables().len() - 2);
        let (src, dst) = (source.variables(), target.variables());
        for (name, tensor) in &dst {
            if name.starts_with("fc.") {
                assert_eq!(tensor.size()[0], 7, "{name}: the head is sized for the new classes");
            } else {
                assert!(tensor.equal(&src[name]), "{name} was not copied");
            }
        }
    }

    #[test]
    fn missing_extra_and_misshapen_tensors_are_named_with_their_shapes() {
        let _torch = crate::test_support::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let source = nn::VarStore::new(Device::Cpu);
        let _ = build(Arch::Resnet18, &source.root(), shape(10, 32)).unwrap();
        let mut named: Vec<(String, Tensor)> = source.variables().into_iter().filter(|(name, _)| name != "layer1.0.conv1.weight").collect();
        for (name, tensor) in &mut named {
            if name == "conv1.weight" {
                *tensor = Tensor::zeros([64, 1, 7, 7], (Kind::Float, Device::Cpu));
            }
        }
        named.push(("layer9.weight".into(), Tensor::zeros([3], (Kind::Float, Device::Cpu))));
        named.push(("bn1.num_batches_tracked".into(), Tensor::zeros([1], (Kind::Int64, Device::Cpu))));
        Tensor::write_safetensors(&named, &path).unwrap();

        let target = nn::VarStore::new(Device::Cpu);
        let _ = build(Arch::Resnet18, &target.root(), shape(10, 32)).unwrap();
        let message = load_pretrained(&target, &path, "fc").unwrap_err().to_string();
        assert!(message.contains("(3 problems)"), "{message}");
        assert!(message.contains("missing tensor layer1.0.conv1.weight: the model expects shape [64, 64, 3, 3]"), "{message}");
        assert!(message.contains("tensor conv1.weight has shape [64, 1, 7, 7] in the file, but the model expects [64, 3, 7, 7]"), "{message}");
        assert!(message.contains("unexpected tensor layer9.weight with shape [3]"), "{message}");

        let not_safetensors = dir.path().join("model.safetensors");
        std::fs::write(&not_safetensors, b"PK\x03\x04 a torch zip").unwrap();
        let message = format!("{:#}", load_pretrained(&target, &not_safetensors, "fc").unwrap_err());
        assert!(message.contains("reading pretrained weights from"), "{message}");
    }

    #[test]
    fn deit_weights_at_224_load_into_a_32_pixel_model() {
        let _torch = crate::test_support::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deit_small.safetensors");
        let source = nn::VarStore::new(Device::Cpu);
        let _ = build(Arch::DeitSmall, &source.root(), shape(1000, 224)).unwrap();
        // Upstream files are often float16; they load into float32.
        let half: Vec<(String, Tensor)> = source.variables().into_iter().map(|(n, t)| (format!("module.{n}"), t.to_kind(Kind::Half))).collect();
        Tensor::write_safetensors(&half, &path).unwrap();

        let target = nn::VarStore::new(Device::Cpu);
        let model = build(Arch::DeitSmall, &target.root(), shape(5, 32)).unwrap();
        let loaded = load_pretrained(&target, &path, "head").unwrap();
        assert_eq!(loaded.pos_embed_resized, Some((197, 5)));
        let (src, dst) = (source.variables(), target.variables());
        let diff = (&dst["blocks.3.attn.qkv.weight"] - src["blocks.3.attn.qkv.weight"].to_kind(Kind::Half).to_kind(Kind::Float)).abs().max();
        assert_eq!(diff.double_value(&[]), 0.0);
        let x = model.prepare(&Tensor::zeros([1, 3, 32, 32], (Kind::Uint8, Device::Cpu)));
        assert_eq!(model.forward_t(&x, false).size(), vec![1, 5]);
    }
}
