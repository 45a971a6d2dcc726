//! Storage and analysis speed on a real SQLite file, through the server's own code paths (the
//! queue's epoch upload and end of run, the trajectory and compare routes' functions), for
//! issue #4's goals: one epoch of 100,000 samples stored in <= 20 ms; per-sample statistics of
//! 100,000 samples x 100 epochs in <= 1 s; one trajectory in <= 5 ms; Jaccard and correlation
//! matrices over 6 runs x 100,000 samples in <= 200 ms; <= 10 MB per million sample-epochs.
//!
//! `cargo bench -p server --bench storage` (FORGETLAB_BENCH_SAMPLES, _EPOCHS, _RUNS).
//!
//! FORGETLAB_BENCH_DATA chooses the records of the big run:
//! - `random` (default): p_true uniform in [0, 1) every epoch, so every trace differs and
//!   nothing compresses: the worst case for the fits and the store;
//! - `shaped`: each sample's p_true rises with the epoch, later for harder samples, with
//!   10 % noise (a rough stand-in for training);
//! - a folder written by `forgetlab-worker train --out DIR`: a real run's records
//!   (`DIR/records/epoch-*.parquet`), its own samples and epochs.

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

/// The big run's records, `[epoch]` columns.
enum Data {
    Random,
    Shaped,
    Real(Vec<EpochColumns>),
}

impl Data {
    fn from_env() -> Self {
        match std::env::var("FORGETLAB_BENCH_DATA").as_deref() {
            Err(_) | Ok("random") => Data::Random,
            Ok("shaped") => Data::Shaped,
            Ok(dir) => Data::Real(read_real(Path::new(dir))),
        }
    }

    fn epoch(&self, rng: &mut Rng, samples: usize, epoch: u32, epochs: u32) -> EpochColumns {
        if let Data::Real(columns) = self {
            return columns[epoch as usize - 1].clone();
        }
        let mut columns = EpochColumns::zeroed(samples);
        for i in 0..samples {
            let p = match self {
                Data::Shaped => {
                    let difficulty = (i * 7919 % samples) as f32 / samples as f32;
                    (f32::from(epoch as u16) / epochs as f32 / (difficulty + 0.05)).min(1.0) * 0.9 + 0.1 * rng.unit()
                }
                _ => rng.unit(),
            };
            columns.p_true[i] = p;
            columns.loss[i] = -p.max(1e-6).ln();
            columns.correct[i] = u8::from(p > 0.5);
            columns.margin[i] = p - 0.5;
            columns.predicted[i] = if p > 0.5 { (i % 10) as u16 } else { ((i + 1) % 10) as u16 };
            columns.el2n[i] = 1.0 - p;
        }
        columns
    }
}

/// Every `records/epoch-*.parquet` of a `forgetlab-worker train` folder, in epoch order.
fn read_real(dir: &Path) -> Vec<EpochColumns> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let mut files: Vec<_> = std::fs::read_dir(dir.join("records")).expect("a records folder").map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let reader = SerializedFileReader::new(std::fs::File::open(file).unwrap()).unwrap();
            let mut columns = EpochColumns::zeroed(0);
            for row in reader.get_row_iter(None).unwrap() {
                let row = row.unwrap();
                columns.correct.push(u8::from(row.get_bool(6).unwrap()));
                columns.loss.push(row.get_float(7).unwrap());
                columns.p_true.push(row.get_float(8).unwrap());
                columns.margin.push(row.get_float(9).unwrap());
                columns.predicted.push(row.get_int(10).unwrap() as u16);
                columns.el2n.push(row.get_float(11).unwrap());
            }
            columns
        })
        .collect()
}

fn key(i: usize) -> String {
    format!("{:032x}", i as u128 * 0x9E37_79B9_7F4A_7C15)
}

/// Trains nothing: uploads `epochs` epochs of records for a new run, as a worker would, and
/// ends it. Returns (run id, upload times in ms, end-of-run time in ms, and the time of the
/// per-sample statistics alone: reading the stored epochs and summarising every sample).
async fn fake_run(service: &Service, queue: &Queue, data: &Data, samples: usize, epochs: u32, seed: u64) -> (i64, Vec<f64>, f64, f64) {
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
        let columns = data.epoch(&mut rng, samples, epoch, epochs);
        let metrics = EpochMetrics { epoch, phase: Phase::Finetune, train_loss: 1.0, train_accuracy: 0.5, val_loss: None, val_accuracy: None, lr: 0.01, seconds: 1.0 };
        let upload = EpochUpload { metrics, columns, val_confusion: None, eval_loss: None, shown: None };
        let started = Instant::now();
        queue.put_epoch(lease.job_id, &lease.job_token, epoch, &upload).await.expect("epoch");
        uploads.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let started = Instant::now();
    let records = server::records::read(&service.pool, launched.id).await.expect("records");
    let columns: Vec<dynamics::TraceColumns> = records.columns.iter().map(|c| dynamics::TraceColumns { correct: &c.correct, p_true: &c.p_true, loss: &c.loss }).collect();
    let summaries = dynamics::summarize_samples(&columns, 0, None);
    assert_eq!(summaries.len(), samples);
    let statistics = started.elapsed().as_secs_f64() * 1e3;
    drop(summaries);
    drop(columns);
    drop(records);
    let started = Instant::now();
    queue.finish(lease.job_id, &lease.job_token, &Finish { outcome: Outcome::Succeeded, message: None, class_means: None }).await.expect("finish");
    (launched.id, uploads, started.elapsed().as_secs_f64() * 1e3, statistics)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "server=info".into())).init();
    let data = Data::from_env();
    let (samples, epochs) = match &data {
        Data::Real(columns) => (columns[0].correct.len(), columns.len() as u32),
        _ => (setting("FORGETLAB_BENCH_SAMPLES", 100_000), setting("FORGETLAB_BENCH_EPOCHS", 100) as u32),
    };
    let runs = setting("FORGETLAB_BENCH_RUNS", 6);
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("bench.db");
    let pool = server::db::connect(&database).await.unwrap();
    let registry = Arc::new(Registry::new(pool.clone(), vec![dir.path().to_owned()]));
    let spec = format!("classes=10,train_per_class={},val_per_class=1,size=10,channels=1,seed=1", samples / 10);
    registry.register("bench", datasets::Format::Synthetic, Path::new(&spec), DatasetOptions::default()).await.expect("register");
    let hub = Hub::default();
    let service = Service { pool: pool.clone(), registry: registry.clone(), hub: hub.clone(), compare_cache: Default::default() };
    let queue = Queue::new(pool.clone(), hub, registry, "bench", 3600);

    let kind = match &data {
        Data::Random => "random records".to_owned(),
        Data::Shaped => "training-shaped records".to_owned(),
        Data::Real(_) => format!("a real run's records from {}", std::env::var("FORGETLAB_BENCH_DATA").unwrap()),
    };
    println!("{samples} samples, {kind}; one run of {epochs} epochs, then {runs} runs of 2 epochs for compare");
    let (run, uploads, end, statistics) = fake_run(&service, &queue, &data, samples, epochs, 1).await;
    // The file after a checkpoint, and the bytes in use: pages freed by the sealed epoch rows
    // are reused by the next run's uploads.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    let pragma = |name: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(&format!("PRAGMA {name}")).fetch_one(&pool).await.unwrap() }
    };
    let (pages, free, page_size) = (pragma("page_count").await, pragma("freelist_count").await, pragma("page_size").await);
    let file = std::fs::metadata(&database).map_or(0, |m| m.len());
    let bytes = (pages - free) * page_size;
    let sample_epochs = samples as f64 * f64::from(epochs);
    println!("database file: {:.2} MB per million sample-epochs ({:.1} MB)", file as f64 / 1e6 / (sample_epochs / 1e6), file as f64 / 1e6);
    let mut parts = Vec::new();
    for column in ["correct", "p_true", "loss", "predicted", "margin", "el2n"] {
        let bytes: i64 = sqlx::query_scalar(&format!("SELECT SUM(length({column})) FROM record_blocks WHERE run_id = ?")).bind(run).fetch_one(&pool).await.unwrap();
        parts.push(format!("{column} {:.2}", bytes as f64 / sample_epochs));
    }
    println!("sealed records, bytes per sample-epoch: {}", parts.join(", "));
    println!("store one epoch: median {:.1} ms, p95 {:.1} ms (goal <= 20 ms)", median(uploads.clone()), p95(uploads));
    println!("per-sample statistics alone (read the epochs, events, cartography, decay fits) for {samples} x {epochs}: {statistics:.0} ms (goal <= 1000 ms)");
    println!("end of run (the statistics again, run analysis, sealing the records, writing it all): {end:.0} ms");
    println!("database in use: {:.2} MB per million sample-epochs (goal <= 10 MB)", bytes as f64 / 1e6 / (sample_epochs / 1e6));

    let mut times = Vec::new();
    for i in 0..100 {
        let started = Instant::now();
        let history = server::analysis::sample_history(&pool, run, &key(i * 997 % samples), server::service::sample_stats_of).await.expect("history");
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(history.this_run.correct.len(), epochs as usize);
    }
    println!("one sample's trajectory over {epochs} epochs: median {:.2} ms, p95 {:.2} ms (goal <= 5 ms)", median(times.clone()), p95(times));

    for (what, query) in [
        ("sorted by -forgetting_events (indexed)", protocol::SampleQuery { sort: Some("-forgetting_events".into()), limit: Some(50), ..Default::default() }),
        ("sorted by -tau", protocol::SampleQuery { sort: Some("-tau".into()), limit: Some(50), ..Default::default() }),
        ("sorted by confidence, 0.2 <= variability <= 0.4", protocol::SampleQuery { sort: Some("confidence".into()), min_variability: Some(0.2), max_variability: Some(0.4), limit: Some(50), ..Default::default() }),
        ("class 3, page 20", protocol::SampleQuery { label: Some(3), offset: Some(1000), limit: Some(50), ..Default::default() }),
    ] {
        let mut times = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            service.samples(run, query.clone()).await.expect("samples");
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        println!("samples page of 50, {what}: median {:.1} ms", median(times));
    }

    let mut ids = Vec::new();
    for r in 0..runs {
        ids.push(fake_run(&service, &queue, &Data::Random, samples, 2, 10 + r as u64).await.0);
    }
    let query = CompareQuery { runs: ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","), ..Default::default() };
    let started = Instant::now();
    service.compare_cache.compare(&pool, query.clone()).await.expect("compare");
    let first = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    service.compare_cache.compare(&pool, query.clone()).await.expect("compare");
    println!("compare through the cache: first {first:.0} ms, again {:.2} ms", started.elapsed().as_secs_f64() * 1e3);
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let comparison = server::analysis::compare(&pool, query.clone()).await.expect("compare");
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(comparison.runs.len(), runs);
    }
    println!("compare {runs} runs x {samples} samples (Jaccard, Spearman, Kendall, Pearson): median {:.0} ms (goal <= 200 ms)", median(times));
}
