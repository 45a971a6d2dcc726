//! `forgetlab-worker predict`: logits of a model with imported weights on inputs from a
//! `.npy` file, so a user can check the import against the framework the weights came from
//! (the same inputs through timm or torchvision must give the same logits).

use std::path::Path;

use anyhow::{Context, Result};
use protocol::Arch;
use tch::{Kind, Tensor, nn};

use crate::models::{self, Shape};
use crate::weights;

/// Batch size of the forward passes.
const BATCH: i64 = 256;

/// Reads `input` (float32 `[N, C, H, W]`, already normalised), runs the `arch` model with the
/// weights of `weights_path` (every tensor, the head included; the class count is the head's)
/// in eval mode, and writes the logits (float32 `[N, classes]`) to `out`. Returns their shape.
pub fn predict(arch: Arch, weights_path: &Path, input: &Path, out: &Path, device: tch::Device) -> Result<[usize; 2]> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let (shape, values) = datasets::read_f32_array(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let [n, c, h, w] = shape[..] else {
        anyhow::bail!("{} has shape {shape:?}; expected images as [N, C, H, W]", input.display());
    };
    anyhow::ensure!(h == w, "{} holds {h}x{w} images; the models take square ones", input.display());
    let file = weights::WeightsFile::read(weights_path)?;
    let classes = file.head_classes(models::head_prefix(arch))?;
    let vs = nn::VarStore::new(device);
    let model = models::build(arch, &vs.root(), Shape { channels: c as i64, classes, image_size: h as i64, drop_path: 0.0 })?;
    anyhow::ensure!(model.in_channels == c as i64, "{arch} takes {} input channels, {} has {c}", model.in_channels, input.display());
    weights::load_exact(&vs, &file)?;
    let x = Tensor::from_slice(&values).view([n as i64, c as i64, h as i64, w as i64]);
    let logits = tch::no_grad(|| {
        let chunks: Vec<Tensor> = x.split(BATCH, 0).iter().map(|b| model.forward_t(&b.to_device(device), false).to_device(tch::Device::Cpu)).collect();
        Tensor::cat(&chunks, 0).to_kind(Kind::Float)
    });
    let logits_shape = [n, classes as usize];
    let flat = Vec::<f32>::try_from(logits.flatten(0, -1))?;
    std::fs::write(out, datasets::encode_f32_array(&logits_shape, &flat)).with_context(|| format!("writing {}", out.display()))?;
    Ok(logits_shape)
}
