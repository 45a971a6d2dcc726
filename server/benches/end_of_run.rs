//! Issue 18, item 5: while the server ends a big run (per-sample statistics, decay fits, run
//! analysis, sealing the records), how long another worker's heartbeats and epoch uploads
//! wait. The end of run runs in the background and writes in short transactions; this
//! measures the waits it leaves on a real SQLite file through the server's own code paths.
//!
//! `cargo bench -p server --bench end_of_run --profile dev` (FORGETLAB_BENCH_SAMPLES (100000),
//! _EPOCHS (100), FORGETLAB_BENCH_DATA as in the storage bench: random, shaped).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamics::rng::SplitMix64;
use protocol::worker::{EpochUpload, Finish, Heartbeat, Outcome};
use protocol::{DatasetOptions, EpochMetrics, Phase};
use server::progress::Hub;
use server::queue::Queue;
use server::registry::Registry;
use server::service::Service;
use support::{Data, median, setting, uploaded_run};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "server=info".into())).init();
    let data = Data::from_env_or("shaped");
    let samples = setting("FORGETLAB_BENCH_SAMPLES", 100_000);
    let epochs = setting("FORGETLAB_BENCH_EPOCHS", 100) as u32;
    let dir = tempfile::tempdir().unwrap();
    let pool = server::db::connect(&dir.path().join("bench.db")).await.unwrap();
    let registry = Arc::new(Registry::new(pool.clone(), vec![dir.path().to_owned()]));
    let spec = format!("classes=10,train_per_class={},val_per_class=1,size=10,channels=1,seed=1", samples / 10);
    registry.register("bench", datasets::Format::Synthetic, Path::new(&spec), DatasetOptions::default()).await.expect("register");
    let hub = Hub::default();
    let service = Service::new(pool.clone(), registry.clone(), hub.clone());
    let queue = Queue::new(pool.clone(), hub, registry, "bench", 3600);
    let (_big, lease, _) = uploaded_run(&service, &queue, &data, samples, epochs, 1, "").await;
    // Another worker, training a small run meanwhile: 1,000 samples, an epoch every 50 ms.
    let small = 1_000;
    let (_, other, _) = uploaded_run(&service, &queue, &data, small, 1, 2, "").await;
    let kind = std::env::var("FORGETLAB_BENCH_DATA").unwrap_or_else(|_| "shaped".into());
    println!("{samples} samples x {epochs} epochs ({kind} records); another worker heartbeats every 10 ms and uploads an epoch of {small} samples every 50 ms");

    let started = Instant::now();
    let analysis =
        queue.finish(lease.job_id, &lease.job_token, &Finish { outcome: Outcome::Succeeded, message: None, class_means: None }).await.expect("finish");
    let answered = started.elapsed();
    let mut analysis = analysis.expect("a succeeded run is analysed");
    let (mut beats, mut uploads) = (Vec::new(), Vec::new());
    let mut rng = SplitMix64::new(7);
    let mut tick = 0u32;
    loop {
        tokio::select! {
            done = &mut analysis => { done.expect("the analysis"); break; }
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        let t = Instant::now();
        queue.heartbeat(other.job_id, &other.job_token, &Heartbeat { phase: "finetune".into(), epoch: 1, ..Default::default() }).await.expect("heartbeat");
        beats.push(t.elapsed().as_secs_f64() * 1e3);
        if *beats.last().unwrap() > 8.0 {
            println!("slow heartbeat: {:.0} ms, {:.0} ms after the finish", beats.last().unwrap(), (t - started).as_secs_f64() * 1e3);
        }
        tick += 1;
        if tick % 5 == 0 {
            let columns = data.epoch(&mut rng, small, 1, 1);
            let metrics = EpochMetrics {
                epoch: 1,
                phase: Phase::Finetune,
                train_loss: 1.0,
                train_accuracy: 0.5,
                val_loss: None,
                val_accuracy: None,
                lr: 0.01,
                seconds: 1.0,
            };
            let t = Instant::now();
            queue
                .put_epoch(other.job_id, &other.job_token, 1, &EpochUpload { metrics, columns, val_confusion: None, eval_loss: None, shown: None })
                .await
                .expect("epoch");
            uploads.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let total = started.elapsed();
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!("finish answered in {:.1} ms; the analysis took {:.0} ms in the background", answered.as_secs_f64() * 1e3, total.as_secs_f64() * 1e3);
    println!("heartbeats meanwhile: {}, median {:.2} ms, max {:.1} ms", beats.len(), median(beats.clone()), max(&beats));
    println!("uploads meanwhile: {}, median {:.2} ms, max {:.1} ms", uploads.len(), median(uploads.clone()), max(&uploads));
}
