//! Storage and analysis speed on a real SQLite file, through the server's own code paths (the
//! queue's epoch upload and end of run, the trajectory and compare routes' functions), for
//! issue #4's goals: one epoch of 100,000 samples stored in <= 20 ms; per-sample statistics of
//! 100,000 samples x 100 epochs in <= 1 s; one trajectory in <= 5 ms; Jaccard and correlation
//! matrices over 6 runs x 100,000 samples in <= 200 ms; <= 10 MB per million sample-epochs.
//!
//! `cargo bench -p server --bench storage` (FORGETLAB_BENCH_SAMPLES, _EPOCHS, _RUNS).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use protocol::worker::{EpochColumns, EpochUpload, Finish, ManifestEntry, Outcome, SampleManifest};
use protocol::{CompareQuery, DatasetOptions, EpochMetrics, Phase, RunRequest};
use server::progress::Hub;
use server::queue::Queue;
use server::registry::Registry;
use server::service::Service;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn p95(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

/// splitmix64, for reproducible fake records.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn key(i: usize) -> String {
    format!("{:032x}", i as u128 * 0x9E37_79B9_7F4A_7C15)
}

/// Trains nothing: uploads `epochs` epochs of random records for a new run, as a worker would,
/// and ends it. Returns (run id, upload times in ms, end-of-run time in ms).
async fn fake_run(service: &Service, queue: &Queue, samples: usize, epochs: u32, seed: u64) -> (i64, Vec<f64>, f64) {
    let request = RunRequest {
        dataset: Some("bench".into()),
        arch: Some("small_cnn".into()),
        epochs: Some(epochs.into()),
        seed: Some(seed.into()),
        ..Default::default()
    };
    let launched = service.launch(request).await.expect("launch");
    let lease = queue.lease("bench").await.expect("lease").expect("a job");
    let manifest = SampleManifest {
        samples: (0..samples).map(|i| ManifestEntry { dataset_index: i as u32, sample_key: key(i), label: (i % 10) as u32 }).collect(),
    };
    queue.put_manifest(lease.job_id, &lease.job_token, &manifest).await.expect("manifest");
    let mut rng = Rng(seed);
    let mut uploads = Vec::new();
    for epoch in 1..=epochs {
        let mut columns = EpochColumns::zeroed(samples);
        for i in 0..samples {
            let p = rng.unit();
            columns.p_true[i] = p;
            columns.loss[i] = -p.max(1e-6).ln();
            columns.correct[i] = u8::from(p > 0.5);
            columns.margin[i] = p - 0.5;
            columns.predicted[i] = (i % 10) as u16;
            columns.el2n[i] = 1.0 - p;
        }
        let metrics = EpochMetrics { epoch, phase: Phase::Finetune, train_loss: 1.0, train_accuracy: 0.5, val_loss: None, val_accuracy: None, lr: 0.01, seconds: 1.0 };
        let upload = EpochUpload { metrics, columns, val_confusion: None, eval_loss: None };
        let started = Instant::now();
        queue.put_epoch(lease.job_id, &lease.job_token, epoch, &upload).await.expect("epoch");
        uploads.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let started = Instant::now();
    queue.finish(lease.job_id, &lease.job_token, &Finish { outcome: Outcome::Succeeded, message: None, class_means: None }).await.expect("finish");
    (launched.id, uploads, started.elapsed().as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let samples = setting("FORGETLAB_BENCH_SAMPLES", 100_000);
    let epochs = setting("FORGETLAB_BENCH_EPOCHS", 100) as u32;
    let runs = setting("FORGETLAB_BENCH_RUNS", 6);
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("bench.db");
    let pool = server::db::connect(&database).await.unwrap();
    let registry = Arc::new(Registry::new(pool.clone(), vec![dir.path().to_owned()]));
    let spec = format!("classes=10,train_per_class={},val_per_class=1,size=10,channels=1,seed=1", samples / 10);
    registry.register("bench", datasets::Format::Synthetic, Path::new(&spec), DatasetOptions::default()).await.expect("register");
    let hub = Hub::default();
    let service = Service { pool: pool.clone(), registry: registry.clone(), hub: hub.clone() };
    let queue = Queue::new(pool.clone(), hub, registry, "bench", 3600);

    println!("{samples} samples; one run of {epochs} epochs, then {runs} runs of 2 epochs for compare");
    let (run, uploads, end) = fake_run(&service, &queue, samples, epochs, 1).await;
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let bytes = size(&database) + size(&dir.path().join("bench.db-wal"));
    let sample_epochs = samples as f64 * f64::from(epochs);
    println!("store one epoch: median {:.1} ms, p95 {:.1} ms (goal <= 20 ms)", median(uploads.clone()), p95(uploads));
    println!("end of run (per-sample statistics, decay fits, traces) for {samples} x {epochs}: {end:.0} ms (goal <= 1000 ms)");
    println!("database: {:.2} MB per million sample-epochs (goal <= 10 MB)", bytes as f64 / 1e6 / (sample_epochs / 1e6));

    let mut times = Vec::new();
    for i in 0..100 {
        let started = Instant::now();
        let history = server::analysis::sample_history(&pool, run, &key(i * 997 % samples), server::service::sample_stats_of).await.expect("history");
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(history.this_run.correct.len(), epochs as usize);
    }
    println!("one sample's trajectory over {epochs} epochs: median {:.2} ms, p95 {:.2} ms (goal <= 5 ms)", median(times.clone()), p95(times));

    let mut ids = Vec::new();
    for r in 0..runs {
        ids.push(fake_run(&service, &queue, samples, 2, 10 + r as u64).await.0);
    }
    let query = CompareQuery { runs: ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","), ..Default::default() };
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let comparison = server::analysis::compare(&pool, query.clone()).await.expect("compare");
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(comparison.runs.len(), runs);
    }
    println!("compare {runs} runs x {samples} samples (Jaccard, Spearman, Kendall, Pearson): median {:.0} ms (goal <= 200 ms)", median(times));
}
