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

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use protocol::{CompareQuery, DatasetOptions};
use server::progress::Hub;
use server::queue::Queue;
use server::registry::Registry;
use server::service::Service;
use support::{Data, fake_run, key, median, p95, setting};

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
    let service = Service::new(pool.clone(), registry.clone(), hub.clone());
    // FORGETLAB_RECORD_PRECISION as the server reads it (exact, half, bfloat).
    let precision = std::env::var("FORGETLAB_RECORD_PRECISION").map_or(Default::default(), |v| {
        <server::records::RecordPrecision as clap::ValueEnum>::from_str(&v, true).expect("FORGETLAB_RECORD_PRECISION: exact, half or bfloat")
    });
    println!("margin and EL2N sealed at {precision:?} precision");
    let queue = Queue::new(pool.clone(), hub, registry, "bench", 3600).with_record_precision(precision);

    let kind = match &data {
        Data::Random => "random records".to_owned(),
        Data::Shaped => "training-shaped records".to_owned(),
        Data::Real(_) => format!("a real run's records from {}", std::env::var("FORGETLAB_BENCH_DATA").unwrap()),
    };
    println!("{samples} samples, {kind}; one run of {epochs} epochs, then {runs} runs of 2 epochs for compare");
    let (run, uploads, end, statistics) = fake_run(&service, &queue, &data, samples, epochs, 1, "").await;
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
        let bytes: i64 =
            sqlx::query_scalar(&format!("SELECT SUM(length({column})) FROM record_blocks WHERE run_id = ?")).bind(run).fetch_one(&pool).await.unwrap();
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
        (
            "sorted by confidence, 0.2 <= variability <= 0.4",
            protocol::SampleQuery {
                sort: Some("confidence".into()),
                min_variability: Some(0.2),
                max_variability: Some(0.4),
                limit: Some(50),
                ..Default::default()
            },
        ),
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
        ids.push(fake_run(&service, &queue, &Data::Random, samples, 2, 10 + r as u64, "").await.0);
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
