//! Training throughput of the engine as a run uses it: data from a `u8` tensor on the device,
//! normalisation and flip augmentation on the device, forward, in_batch recording, backward,
//! SGD step. Reports images/s and the share of each step spent on data (indexing,
//! normalising, augmenting), for ResNet-18 and DeiT-Small. `bench/pytorch_reference.py` runs
//! the same steps in PyTorch eager (torchvision / timm models) for the comparison.
//!
//! `cargo bench -p trainer --bench throughput` (settings: FORGETLAB_BENCH_ARCHS, _SIZE,
//! _BATCH, _STEPS; on CUDA also _AMP=1 for float16 autocast).

use std::time::{Duration, Instant};

use protocol::{Arch, Augment, Hyper, Optimizer};
use tch::{Device, Kind, Tensor, nn};
use trainer::models::{Shape, build};
use trainer::optim::{Optim, decays};
use trainer::recorder::{EpochArrays, measure};
use trainer::train::augment;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn main() {
    let size: i64 = setting("FORGETLAB_BENCH_SIZE", "64").parse().unwrap();
    let batch: i64 = setting("FORGETLAB_BENCH_BATCH", "32").parse().unwrap();
    let steps: i64 = setting("FORGETLAB_BENCH_STEPS", "20").parse().unwrap();
    let amp = setting("FORGETLAB_BENCH_AMP", "0") == "1";
    let device = Device::cuda_if_available();
    let samples = batch * 8;
    for arch in setting("FORGETLAB_BENCH_ARCHS", "resnet18,deit_small").split(',') {
        let arch = Arch::parse(arch).expect("an architecture name");
        tch::manual_seed(0);
        let images = Tensor::randint(256, [samples, 3, size, size], (Kind::Uint8, device));
        let labels = Tensor::randint(10, [samples], (Kind::Int64, device));
        let vs = nn::VarStore::new(device);
        let model = build(arch, &vs.root(), Shape { channels: 3, classes: 10, image_size: size, drop_path: 0.0 }).unwrap();
        let mut optim = Optim::new(&vs, Optimizer::Sgd, &Hyper::default(), decays);
        let mut arrays = EpochArrays::new(samples as usize, device);
        let order = Tensor::randperm(samples, (Kind::Int64, device));
        let (mut data_time, mut total) = (Duration::ZERO, Duration::ZERO);
        for step in 0..steps + 3 {
            let started = Instant::now();
            let index = order.narrow(0, (step % 8) * batch, batch);
            let x = augment(&model.prepare(&images.index_select(0, &index)), Augment::Flip, size);
            let y = labels.index_select(0, &index);
            synchronize(device);
            let data_done = Instant::now();
            let logits = tch::autocast(amp, || model.forward_t(&x, true)).to_kind(Kind::Float);
            let loss = logits.cross_entropy_for_logits(&y);
            arrays.write(&index, &tch::no_grad(|| measure(&logits.detach(), &y)));
            optim.backward_step(&loss, 0.01);
            synchronize(device);
            if step >= 3 {
                // The first steps warm up the allocator and kernels.
                data_time += data_done - started;
                total += started.elapsed();
            }
        }
        let rate = (steps * batch) as f64 / total.as_secs_f64();
        println!(
            "forgetlab {arch} size {size} batch {batch} device {device:?} threads {} amp {amp}: {rate:.1} img/s, data {:.2}% of step time",
            tch::get_num_threads(),
            100.0 * data_time.as_secs_f64() / total.as_secs_f64()
        );
    }
}
