//! What recording costs: ResNet-18 training steps on the CPU with no per-sample recording,
//! with in_batch recording (measures of the training forward pass scattered into the
//! device buffer, one host transfer per epoch), and with a full_pass measurement (an extra
//! eval-mode pass over the training set after the epoch). The three alternate epoch by epoch
//! so that the machine's noise hits them alike; the median epoch of each is reported.
//!
//! `cargo bench -p trainer --bench tracking` (settings: FORGETLAB_BENCH_SAMPLES, _BATCH,
//! _SIZE, _ROUNDS). Results go in bench/RESULTS.md with the machine and date.

use std::time::Instant;

use protocol::worker::ManifestEntry;
use protocol::{Arch, Hyper, Optimizer};
use tch::{Device, Kind, Tensor, nn};
use trainer::data::DeviceSplit;
use trainer::models::{Shape, build};
use trainer::optim::{Optim, decays};
use trainer::recorder::{EpochArrays, measure};
use trainer::train::full_pass;

fn setting(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Off,
    InBatch,
    FullPass,
}

fn main() {
    let samples = setting("FORGETLAB_BENCH_SAMPLES", 1024);
    let batch = setting("FORGETLAB_BENCH_BATCH", 128);
    let size = setting("FORGETLAB_BENCH_SIZE", 32);
    let rounds = setting("FORGETLAB_BENCH_ROUNDS", 5);
    let device = Device::cuda_if_available();
    tch::manual_seed(0);
    let images = Tensor::randint(256, [samples, 3, size, size], (Kind::Uint8, device));
    let labels = Tensor::randint(10, [samples], (Kind::Int64, device));
    let manifest = vec![ManifestEntry { dataset_index: 0, sample_key: String::new(), label: 0 }; samples as usize];
    let split = DeviceSplit { images: images.shallow_clone(), input: size, labels: labels.shallow_clone(), manifest };
    let vs = nn::VarStore::new(device);
    let model = build(Arch::Resnet18, &vs.root(), Shape { channels: 3, classes: 10, image_size: size, drop_path: 0.0 }).unwrap();
    let mut optim = Optim::new(&vs, Optimizer::Sgd, &Hyper::default(), decays);
    println!("ResNet-18, {samples} samples of {size}x{size}, batch {batch}, device {device:?}, {} threads", tch::get_num_threads());

    let mut epoch = |mode: Mode| -> f64 {
        let started = Instant::now();
        let order = Tensor::randperm(samples, (Kind::Int64, device));
        let mut arrays = EpochArrays::new(samples as usize, device);
        let mut start = 0;
        while start < samples {
            let len = batch.min(samples - start);
            let index = order.narrow(0, start, len);
            let x = model.prepare(&images.index_select(0, &index));
            let y = labels.index_select(0, &index);
            let logits = model.forward_t(&x, true);
            let loss = logits.cross_entropy_for_logits(&y);
            if mode == Mode::InBatch {
                let measures = tch::no_grad(|| measure(&logits.detach(), &y));
                arrays.write(&index, &measures);
            }
            optim.backward_step(&loss, 0.01);
            start += len;
        }
        if mode == Mode::FullPass {
            // The trainer's own full pass (one host transfer at its end).
            full_pass(&model, &split).unwrap();
        } else if mode == Mode::InBatch {
            arrays.finish().unwrap();
        } else {
            // The same end-of-epoch synchronisation as the recording modes.
            let _ = vs.trainable_variables()[0].sum(Kind::Float).double_value(&[]);
        }
        samples as f64 / started.elapsed().as_secs_f64()
    };

    epoch(Mode::Off); // warm-up: allocator, kernels
    let modes = [Mode::Off, Mode::InBatch, Mode::FullPass];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for round in 0..rounds {
        // Rotate the order each round so no mode always runs first.
        for k in 0..3 {
            let m = (k + round as usize) % 3;
            rates[m].push(epoch(modes[m]));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median(&mut rates[0]);
    let in_batch = median(&mut rates[1]);
    let full = median(&mut rates[2]);
    println!("recording off:  {off:8.1} img/s (median of {rounds} epochs)");
    println!("in_batch:       {in_batch:8.1} img/s  time ratio vs off {:.3}", off / in_batch);
    println!("full_pass:      {full:8.1} img/s  time ratio vs off {:.3}", off / full);
}
