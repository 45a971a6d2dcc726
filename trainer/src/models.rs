//! Architectures. Parameter names follow the upstream checkpoints (torchvision for ResNet,
//! timm for DeiT), so `.safetensors` weights in those schemes load by name.

use protocol::Arch;
use tch::Tensor;
use tch::nn::{self, ConvConfig, ModuleT};

/// A classifier with a separable head: `head_prefix` names the parameters trained during
/// head warmup; everything else is the backbone.
pub struct Model {
    /// Everything up to the penultimate embedding `[N, D]`.
    pub features: Box<dyn ModuleT + Send>,
    /// The classifier head: a linear layer from the embedding to the logits.
    pub head: nn::Linear,
    pub head_prefix: &'static str,
    /// Input channels the network expects (grey images are repeated to 3 for ImageNet models).
    pub in_channels: i64,
    /// Per-channel normalisation applied to pixels scaled to [0, 1].
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

/// What a model is built for: the data's channels and classes, the image side, and the
/// stochastic-depth rate (DeiT only).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub channels: i64,
    pub classes: i64,
    pub image_size: i64,
    pub drop_path: f64,
}

/// The name prefix of an architecture's classifier head (trained alone during head warmup,
/// replaced when pretrained weights meet a new class count).
pub fn head_prefix(arch: Arch) -> &'static str {
    match arch {
        Arch::SmallCnn | Arch::DeitSmall => "head",
        Arch::Resnet18 => "fc",
    }
}

pub fn build(arch: Arch, root: &nn::Path, shape: Shape) -> anyhow::Result<Model> {
    let Shape { channels: data_channels, classes: num_classes, .. } = shape;
    const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
    const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
    match arch {
        Arch::SmallCnn => Ok(Model {
            features: Box::new(small_cnn(root, data_channels)),
            head: nn::linear(root / "head", SMALL_CNN_WIDTH, num_classes, Default::default()),
            head_prefix: head_prefix(arch),
            in_channels: data_channels,
            mean: [0.5; 3],
            std: [0.5; 3],
        }),
        Arch::Resnet18 => Ok(Model {
            features: Box::new(resnet18(root)),
            head: nn::linear(root / "fc", 512, num_classes, Default::default()),
            head_prefix: head_prefix(arch),
            in_channels: 3,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }),
        Arch::DeitSmall => {
            anyhow::ensure!(shape.image_size % DEIT_PATCH == 0, "deit_small needs an image size that is a multiple of {DEIT_PATCH}, got {}", shape.image_size);
            Ok(Model {
                features: Box::new(deit_small(root, shape.image_size / DEIT_PATCH, shape.drop_path)),
                head: vit_linear(root / "head", DEIT_WIDTH, num_classes),
                head_prefix: head_prefix(arch),
                in_channels: 3,
                mean: IMAGENET_MEAN,
                std: IMAGENET_STD,
            })
        }
    }
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64, bias: bool) -> nn::Conv2D {
    nn::conv2d(p, c_in, c_out, kernel, ConvConfig { stride, padding, bias, ..Default::default() })
}

const SMALL_CNN_WIDTH: i64 = 128;

/// The small CNN's features: two 3x3 conv layers with max-pooling, an adaptive 4x4 pool, and
/// a linear layer to 128 (its head is a second linear layer): fast on a CPU, independent of
/// the image size.
pub fn small_cnn(p: &nn::Path, c_in: i64) -> impl ModuleT + Send + use<> {
    let conv1 = conv(p / "conv1", c_in, 32, 3, 1, 1, true);
    let conv2 = conv(p / "conv2", 32, 64, 3, 1, 1, true);
    let fc1 = nn::linear(p / "fc1", 64 * 16, SMALL_CNN_WIDTH, Default::default());
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
    })
}

fn basic_block(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> impl ModuleT + Send + use<> {
    let conv1 = conv(&p / "conv1", c_in, c_out, 3, stride, 1, false);
    let bn1 = nn::batch_norm2d(&p / "bn1", c_out, Default::default());
    let conv2 = conv(&p / "conv2", c_out, c_out, 3, 1, 1, false);
    let bn2 = nn::batch_norm2d(&p / "bn2", c_out, Default::default());
    let downsample = (stride != 1 || c_in != c_out).then(|| {
        nn::seq_t().add(conv(&p / "downsample" / "0", c_in, c_out, 1, stride, 0, false)).add(nn::batch_norm2d(
            &p / "downsample" / "1",
            c_out,
            Default::default(),
        ))
    });
    nn::func_t(move |xs, train| {
        // In-place ReLUs where the input is a fresh temporary, as torchvision does.
        let ys = xs.apply(&conv1).apply_t(&bn1, train).relu_().apply(&conv2).apply_t(&bn2, train);
        let shortcut = match &downsample {
            Some(down) => xs.apply_t(down, train),
            None => xs.shallow_clone(),
        };
        (ys + shortcut).relu_()
    })
}

fn layer(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> nn::SequentialT {
    nn::seq_t().add(basic_block(&p / "0", c_in, c_out, stride)).add(basic_block(&p / "1", c_out, c_out, 1))
}

/// ResNet-18's features (He et al. 2016) with torchvision's parameter names: everything up to
/// the global average pool (512 wide); the head is `fc`.
pub fn resnet18(p: &nn::Path) -> impl ModuleT + Send + use<> {
    let conv1 = conv(p / "conv1", 3, 64, 7, 2, 3, false);
    let bn1 = nn::batch_norm2d(p / "bn1", 64, Default::default());
    let layers = nn::seq_t().add(layer(p / "layer1", 64, 64, 1)).add(layer(p / "layer2", 64, 128, 2)).add(layer(p / "layer3", 128, 256, 2)).add(layer(
        p / "layer4",
        256,
        512,
        2,
    ));
    nn::func_t(move |xs, train| {
        xs.apply(&conv1)
            .apply_t(&bn1, train)
            .relu_()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
            .apply_t(&layers, train)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
    })
}

/// DeiT-Small / ViT-S/16 (Touvron et al. 2021): 16-pixel patches, width 384, 12 blocks of 6
/// heads, MLP ratio 4, a class token, learned position embeddings, pre-norm blocks with
/// LayerNorm eps 1e-6 and exact GELU, classification from the class token.
pub const DEIT_PATCH: i64 = 16;
const DEIT_WIDTH: i64 = 384;
const DEIT_DEPTH: i64 = 12;
const DEIT_HEADS: i64 = 6;
const DEIT_MLP: i64 = 4 * DEIT_WIDTH;

/// timm's initialisation: truncated-normal(0.02)-like weights (a normal here), zero biases.
fn vit_linear(p: nn::Path, c_in: i64, c_out: i64) -> nn::Linear {
    let config = nn::LinearConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, bs_init: Some(nn::Init::Const(0.0)), bias: true };
    nn::linear(p, c_in, c_out, config)
}

fn vit_norm(p: nn::Path) -> nn::LayerNorm {
    nn::layer_norm(p, vec![DEIT_WIDTH], nn::LayerNormConfig { eps: 1e-6, ..Default::default() })
}

struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    drop_path: f64,
}

impl Block {
    fn new(p: nn::Path, drop_path: f64) -> Self {
        Block {
            norm1: vit_norm(&p / "norm1"),
            qkv: vit_linear(&p / "attn" / "qkv", DEIT_WIDTH, 3 * DEIT_WIDTH),
            proj: vit_linear(&p / "attn" / "proj", DEIT_WIDTH, DEIT_WIDTH),
            norm2: vit_norm(&p / "norm2"),
            fc1: vit_linear(&p / "mlp" / "fc1", DEIT_WIDTH, DEIT_MLP),
            fc2: vit_linear(&p / "mlp" / "fc2", DEIT_MLP, DEIT_WIDTH),
            drop_path,
        }
    }

    fn attention(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().expect("tokens are [batch, tokens, width]");
        // [B, N, 3D] -> [3, B, heads, N, D/heads]
        let qkv = x.apply(&self.qkv).reshape([b, n, 3, DEIT_HEADS, d / DEIT_HEADS]).permute([2, 0, 3, 1, 4]);
        let out = Tensor::scaled_dot_product_attention::<Tensor>(&qkv.get(0), &qkv.get(1), &qkv.get(2), None, 0.0, false, None, false);
        out.transpose(1, 2).reshape([b, n, d]).apply(&self.proj)
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x + drop_path(&self.attention(&x.apply(&self.norm1)), self.drop_path, train);
        let mlp = x.apply(&self.norm2).apply(&self.fc1).gelu("none").apply(&self.fc2);
        &x + drop_path(&mlp, self.drop_path, train)
    }
}

/// Stochastic depth (Huang et al. 2016): in training, drops a residual branch for a whole
/// sample with probability `rate` and scales the kept ones by `1 / (1 - rate)`.
fn drop_path(x: &Tensor, rate: f64, train: bool) -> Tensor {
    if !train || rate == 0.0 {
        return x.shallow_clone();
    }
    let keep = 1.0 - rate;
    let mut shape = vec![1i64; x.dim()];
    shape[0] = x.size()[0];
    let mask = Tensor::empty(shape, (x.kind(), x.device())).bernoulli_float_(keep);
    x * mask / keep
}

/// DeiT-Small's features with timm's parameter names, for `grid x grid` patches: the final
/// norm of the class token (384 wide); the head is `head`.
pub fn deit_small(p: &nn::Path, grid: i64, drop_path_rate: f64) -> impl ModuleT + Send + use<> {
    let patch = conv(p / "patch_embed" / "proj", 3, DEIT_WIDTH, DEIT_PATCH, DEIT_PATCH, 0, true);
    let cls_token = p.var("cls_token", &[1, 1, DEIT_WIDTH], nn::Init::Randn { mean: 0.0, stdev: 1e-6 });
    let pos_embed = p.var("pos_embed", &[1, 1 + grid * grid, DEIT_WIDTH], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
    // The drop rate rises linearly from 0 at the first block to `drop_path_rate` at the last.
    let blocks: Vec<Block> = (0..DEIT_DEPTH).map(|i| Block::new(p / "blocks" / i, drop_path_rate * i as f64 / (DEIT_DEPTH - 1) as f64)).collect();
    let norm = vit_norm(p / "norm");
    nn::func_t(move |xs, train| {
        let b = xs.size()[0];
        let tokens = xs.apply(&patch).flatten(2, -1).transpose(1, 2);
        let mut x = Tensor::cat(&[cls_token.expand([b, -1, -1], false), tokens], 1) + &pos_embed;
        for block in &blocks {
            x = block.forward(&x, train);
        }
        x.apply(&norm).select(1, 0)
    })
}

/// Resizes a position embedding `[1, 1 + g0^2, D]` to `[1, 1 + g1^2, D]`: the class token's
/// entry is kept, the `g0 x g0` grid is interpolated bicubically (as timm does when the
/// image size differs from the checkpoint's).
pub fn resize_pos_embed(pos: &Tensor, tokens: i64) -> anyhow::Result<Tensor> {
    let (_, n0, d) = pos.size3()?;
    let (g0, g1) = (((n0 - 1) as f64).sqrt() as i64, ((tokens - 1) as f64).sqrt() as i64);
    anyhow::ensure!(g0 * g0 == n0 - 1 && g1 * g1 == tokens - 1, "position embeddings of {n0} and {tokens} tokens are not square grids plus a class token");
    let cls = pos.narrow(1, 0, 1);
    let grid = pos.narrow(1, 1, n0 - 1).reshape([1, g0, g0, d]).permute([0, 3, 1, 2]).to_kind(tch::Kind::Float);
    let grid = grid.upsample_bicubic2d([g1, g1], false, None, None).permute([0, 2, 3, 1]).reshape([1, g1 * g1, d]);
    Ok(Tensor::cat(&[cls.to_kind(tch::Kind::Float), grid], 1))
}

impl Model {
    /// Logits of a prepared batch.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(x, train).apply(&self.head)
    }

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
        let model = build(Arch::Resnet18, &vs.root(), Shape { channels: 1, classes: 10, image_size: 32, drop_path: 0.0 }).unwrap();
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
        assert_eq!(model.forward_t(&x, false).size(), vec![2, 10]);
    }

    #[test]
    fn small_cnn_accepts_any_image_size() {
        let _torch = crate::test_support::exclusive();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build(Arch::SmallCnn, &vs.root(), Shape { channels: 1, classes: 10, image_size: 28, drop_path: 0.0 }).unwrap();
        for size in [28, 40] {
            let x = model.prepare(&Tensor::zeros([3, 1, size, size], (Kind::Uint8, Device::Cpu)));
            assert_eq!(model.forward_t(&x, true).size(), vec![3, 10]);
        }
    }

    #[test]
    fn deit_small_has_timm_names_and_shapes() {
        let _torch = crate::test_support::exclusive();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build(Arch::DeitSmall, &vs.root(), Shape { channels: 1, classes: 10, image_size: 224, drop_path: 0.1 }).unwrap();
        let vars = vs.variables();
        assert_eq!(vars["patch_embed.proj.weight"].size(), vec![384, 3, 16, 16]);
        assert_eq!(vars["cls_token"].size(), vec![1, 1, 384]);
        assert_eq!(vars["pos_embed"].size(), vec![1, 197, 384]);
        assert_eq!(vars["blocks.11.attn.qkv.weight"].size(), vec![1152, 384]);
        assert_eq!(vars["blocks.0.attn.proj.bias"].size(), vec![384]);
        assert_eq!(vars["blocks.5.mlp.fc1.weight"].size(), vec![1536, 384]);
        assert_eq!(vars["blocks.5.norm2.weight"].size(), vec![384]);
        assert_eq!(vars["norm.bias"].size(), vec![384]);
        assert_eq!(vars["head.weight"].size(), vec![10, 384]);
        // timm's deit_small_patch16_224 has 22,050,664 parameters with 1000 classes.
        let total: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(total, 22_050_664 - (384 * 1000 + 1000) + (384 * 10 + 10));
        assert!(build(Arch::DeitSmall, &(vs.root() / "other"), Shape { channels: 3, classes: 2, image_size: 40, drop_path: 0.0 }).is_err());
        let small = nn::VarStore::new(Device::Cpu);
        let model32 = build(Arch::DeitSmall, &small.root(), Shape { channels: 1, classes: 10, image_size: 32, drop_path: 0.0 }).unwrap();
        let x = model32.prepare(&Tensor::zeros([2, 1, 32, 32], (Kind::Uint8, Device::Cpu)));
        assert_eq!(model32.forward_t(&x, false).size(), vec![2, 10]);
        drop(model);
    }

    #[test]
    fn deit_attention_equals_the_written_out_formula() {
        let _torch = crate::test_support::exclusive();
        let vs = nn::VarStore::new(Device::Cpu);
        let block = Block::new(vs.root() / "b", 0.0);
        let x = Tensor::randn([2, 5, DEIT_WIDTH], (Kind::Float, Device::Cpu));
        let (b, n, d, h) = (2, 5, DEIT_WIDTH, DEIT_HEADS);
        let qkv = x.apply(&block.qkv).reshape([b, n, 3, h, d / h]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let weights = (q.matmul(&k.transpose(-2, -1)) / ((d / h) as f64).sqrt()).softmax(-1, Kind::Float);
        let expected = weights.matmul(&v).transpose(1, 2).reshape([b, n, d]).apply(&block.proj);
        let diff = (block.attention(&x) - expected).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "attention differs by {diff}");
    }

    #[test]
    fn drop_path_drops_whole_samples_only_in_training() {
        let _torch = crate::test_support::exclusive();
        let x = Tensor::ones([64, 3, 4], (Kind::Float, Device::Cpu));
        assert!(drop_path(&x, 0.5, false).equal(&x));
        let dropped = drop_path(&x, 0.5, true);
        let per_sample = dropped.sum_dim_intlist([1, 2].as_slice(), false, Kind::Float);
        let values: Vec<f64> = Vec::<f64>::try_from(&per_sample).unwrap();
        assert!(values.iter().all(|&v| v == 0.0 || (v - 24.0).abs() < 1e-6), "{values:?}");
        assert!(values.contains(&0.0) && values.iter().any(|&v| v > 0.0));
    }

    #[test]
    fn position_embeddings_resize_keeping_the_class_token() {
        let _torch = crate::test_support::exclusive();
        let pos = Tensor::randn([1, 197, 8], (Kind::Float, Device::Cpu));
        let same = resize_pos_embed(&pos, 197).unwrap();
        assert!((&same - &pos).abs().max().double_value(&[]) < 1e-5);
        let small = resize_pos_embed(&pos, 5).unwrap();
        assert_eq!(small.size(), vec![1, 5, 8]);
        assert!(small.get(0).get(0).equal(&pos.get(0).get(0)));
        assert!(resize_pos_embed(&pos, 6).is_err());
    }
}
