//! Architectures. Parameter names follow the upstream checkpoints (torchvision for ResNet),
//! so `.safetensors` weights in those schemes load by name.

use protocol::Arch;
use tch::nn::{self, ConvConfig, ModuleT};
use tch::Tensor;

/// A classifier with a separable head: `head_prefix` names the parameters trained during
/// head warmup; everything else is the backbone.
pub struct Model {
    pub net: Box<dyn ModuleT + Send>,
    pub head_prefix: &'static str,
    /// Input channels the network expects (grey images are repeated to 3 for ImageNet models).
    pub in_channels: i64,
    /// Per-channel normalisation applied to pixels scaled to [0, 1].
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

pub fn build(arch: Arch, root: &nn::Path, data_channels: i64, num_classes: i64) -> anyhow::Result<Model> {
    const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
    const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
    match arch {
        Arch::SmallCnn => Ok(Model {
            net: Box::new(small_cnn(root, data_channels, num_classes)),
            head_prefix: "head",
            in_channels: data_channels,
            mean: [0.5; 3],
            std: [0.5; 3],
        }),
        Arch::Resnet18 => Ok(Model {
            net: Box::new(resnet18(root, num_classes)),
            head_prefix: "fc",
            in_channels: 3,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }),
        Arch::DeitSmall => anyhow::bail!("deit_small is not available in this version of the worker"),
    }
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64, bias: bool) -> nn::Conv2D {
    nn::conv2d(p, c_in, c_out, kernel, ConvConfig { stride, padding, bias, ..Default::default() })
}

/// Two 3x3 conv layers with max-pooling, an adaptive 4x4 pool, and two linear layers:
/// fast on a CPU, independent of the image size.
pub fn small_cnn(p: &nn::Path, c_in: i64, num_classes: i64) -> impl ModuleT + Send + use<> {
    let conv1 = conv(p / "conv1", c_in, 32, 3, 1, 1, true);
    let conv2 = conv(p / "conv2", 32, 64, 3, 1, 1, true);
    let fc1 = nn::linear(p / "fc1", 64 * 16, 128, Default::default());
    let head = nn::linear(p / "head", 128, num_classes, Default::default());
    nn::func_t(move |xs, train| {
        xs.apply(&conv1)
            .relu()
            .max_pool2d_default(2)
            .apply(&conv2)
            .relu()
            .max_pool2d_default(2)
            .adaptive_avg_pool2d([4, 4])
            .flatten(1, -1)
            .apply(&fc1)
            .relu()
            .dropout(0.25, train)
            .apply(&head)
    })
}

fn basic_block(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> impl ModuleT + Send + use<> {
    let conv1 = conv(&p / "conv1", c_in, c_out, 3, stride, 1, false);
    let bn1 = nn::batch_norm2d(&p / "bn1", c_out, Default::default());
    let conv2 = conv(&p / "conv2", c_out, c_out, 3, 1, 1, false);
    let bn2 = nn::batch_norm2d(&p / "bn2", c_out, Default::default());
    let downsample = (stride != 1 || c_in != c_out).then(|| {
        nn::seq_t()
            .add(conv(&p / "downsample" / "0", c_in, c_out, 1, stride, 0, false))
            .add(nn::batch_norm2d(&p / "downsample" / "1", c_out, Default::default()))
    });
    nn::func_t(move |xs, train| {
        let ys = xs.apply(&conv1).apply_t(&bn1, train).relu().apply(&conv2).apply_t(&bn2, train);
        let shortcut = match &downsample {
            Some(down) => xs.apply_t(down, train),
            None => xs.shallow_clone(),
        };
        (ys + shortcut).relu()
    })
}

fn layer(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> nn::SequentialT {
    nn::seq_t().add(basic_block(&p / "0", c_in, c_out, stride)).add(basic_block(&p / "1", c_out, c_out, 1))
}

/// ResNet-18 (He et al. 2016) with torchvision's parameter names.
pub fn resnet18(p: &nn::Path, num_classes: i64) -> impl ModuleT + Send + use<> {
    let conv1 = conv(p / "conv1", 3, 64, 7, 2, 3, false);
    let bn1 = nn::batch_norm2d(p / "bn1", 64, Default::default());
    let layers = nn::seq_t()
        .add(layer(p / "layer1", 64, 64, 1))
        .add(layer(p / "layer2", 64, 128, 2))
        .add(layer(p / "layer3", 128, 256, 2))
        .add(layer(p / "layer4", 256, 512, 2));
    let fc = nn::linear(p / "fc", 512, num_classes, Default::default());
    nn::func_t(move |xs, train| {
        xs.apply(&conv1)
            .apply_t(&bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
            .apply_t(&layers, train)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&fc)
    })
}

impl Model {
    /// `u8` images `[N, C, H, W]` to the normalised float input the network expects.
    pub fn prepare(&self, images: &Tensor) -> Tensor {
        let x = images.to_kind(tch::Kind::Float) / 255.0;
        let x = if x.size()[1] == 1 && self.in_channels == 3 { x.repeat([1, 3, 1, 1]) } else { x };
        let c = self.in_channels as usize;
        let mean = Tensor::from_slice(&self.mean[..c]).view([1, c as i64, 1, 1]).to_device(x.device()).to_kind(tch::Kind::Float);
        let std = Tensor::from_slice(&self.std[..c]).view([1, c as i64, 1, 1]).to_device(x.device()).to_kind(tch::Kind::Float);
        (x - mean) / std
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn resnet18_has_torchvision_names_and_shapes() {
        let _torch = crate::test_support::exclusive();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build(Arch::Resnet18, &vs.root(), 1, 10).unwrap();
        let vars = vs.variables();
        assert_eq!(vars["conv1.weight"].size(), vec![64, 3, 7, 7]);
        assert_eq!(vars["layer2.0.downsample.0.weight"].size(), vec![128, 64, 1, 1]);
        assert_eq!(vars["layer4.1.bn2.running_var"].size(), vec![512]);
        assert_eq!(vars["fc.weight"].size(), vec![10, 512]);
        // torchvision resnet18 has 11,689,512 parameters with 1000 classes; with 10 classes
        // the fc layer has 5,130 instead of 513,000.
        let trainable: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(trainable, 11_689_512 - 513_000 + 5_130);
        let x = model.prepare(&Tensor::zeros([2, 1, 32, 32], (Kind::Uint8, Device::Cpu)));
        assert_eq!(model.net.forward_t(&x, false).size(), vec![2, 10]);
    }

    #[test]
    fn small_cnn_accepts_any_image_size() {
        let _torch = crate::test_support::exclusive();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build(Arch::SmallCnn, &vs.root(), 1, 10).unwrap();
        for size in [28, 40] {
            let x = model.prepare(&Tensor::zeros([3, 1, size, size], (Kind::Uint8, Device::Cpu)));
            assert_eq!(model.net.forward_t(&x, true).size(), vec![3, 10]);
        }
    }
}
