//! What the storage and page benchmarks share: settings, percentiles, and fake runs whose
//! records are uploaded and finished through the queue, as a worker would. Each bench uses a
//! part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Instant;

use dynamics::rng::SplitMix64;
use protocol::worker::{EpochColumns, EpochUpload, Finish, ManifestEntry, Outcome, SampleManifest};
use protocol::{EpochMetrics, Phase, RunRequest};
use server::queue::Queue;
use server::service::Service;

/// The account benches launch as when they call the service directly.
pub fn bench_admin() -> protocol::auth::Identity {
    protocol::auth::Identity { user_id: 0, name: "bench".into(), role: protocol::auth::Role::Admin, csrf: None }
}

/// The administrator a benchmarked server creates at its first start
/// (`FORGETLAB_ADMIN_USER`/`_PASSWORD`), for [`signed_in`].
pub const ADMIN: (&str, &str) = ("bench-admin", "bench-admin-password");

/// An HTTP client signed in to the server at `base` with a new API token of [`ADMIN`];
/// `client` gives its other settings.
pub async fn signed_in(base: &str, client: reqwest::ClientBuilder) -> reqwest::Client {
    let made: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/tokens"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await
        .expect("POST /api/v1/tokens")
        .json()
        .await
        .expect("a token");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", made["token"].as_str().expect("a token")).parse().unwrap());
    client.default_headers(headers).build().unwrap()
}

/// This build's `forgetlab` serving from `dir` on a free loopback port, as an administrator
/// ([`ADMIN`]) set up; `settings` are further environment variables (workers, worker binary,
/// site root, log filter). Its output goes to `dir/server.log` and `dir/server.err`. Killed
/// when dropped.
pub struct BenchServer {
    pub base: String,
    child: std::process::Child,
}

impl BenchServer {
    pub async fn start(dir: &Path, settings: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_forgetlab"))
            .env("FORGETLAB_ADDR", format!("127.0.0.1:{port}"))
            .env("FORGETLAB_DATA_DIR", dir)
            .env("FORGETLAB_DEVICE", "cpu")
            .env("FORGETLAB_ADMIN_USER", ADMIN.0)
            .env("FORGETLAB_ADMIN_PASSWORD", ADMIN.1)
            .env("RUST_LOG", "warn")
            .envs(settings.iter().copied())
            .stdout(std::fs::File::create(dir.join("server.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("server.err")).unwrap())
            .spawn()
            .expect("start the server");
        let probe = reqwest::Client::new();
        let started = Instant::now();
        while probe.get(format!("{base}/api/v1/health")).send().await.is_err() {
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "the server did not answer");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        BenchServer { base, child }
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker benches start: FORGETLAB_WORKER_BIN, or this checkout's debug build.
pub fn worker_bin() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var("FORGETLAB_WORKER_BIN").unwrap_or_else(|_| root.join("target/debug/forgetlab-worker").display().to_string())
}

pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn p95(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

/// The big run's records, `[epoch]` columns.
pub enum Data {
    Random,
    Shaped,
    Real(Vec<EpochColumns>),
}

impl Data {
    pub fn from_env() -> Self {
        Self::from_env_or("random")
    }

    /// FORGETLAB_BENCH_DATA, or `default` when it is not set.
    pub fn from_env_or(default: &str) -> Self {
        match std::env::var("FORGETLAB_BENCH_DATA").as_deref().unwrap_or(default) {
            "random" => Data::Random,
            "shaped" => Data::Shaped,
            dir => Data::Real(read_real(Path::new(dir))),
        }
    }

    pub fn epoch(&self, rng: &mut SplitMix64, samples: usize, epoch: u32, epochs: u32) -> EpochColumns {
        if let Data::Real(columns) = self {
            return columns[epoch as usize - 1].clone();
        }
        let mut columns = EpochColumns::zeroed(samples);
        for i in 0..samples {
            let p = match self {
                Data::Shaped => {
                    let difficulty = (i * 7919 % samples) as f32 / samples as f32;
                    (f32::from(epoch as u16) / epochs as f32 / (difficulty + 0.05)).min(1.0) * 0.9 + 0.1 * rng.unit_f32()
                }
                _ => rng.unit_f32(),
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
pub fn read_real(dir: &Path) -> Vec<EpochColumns> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let mut files: Vec<_> = std::fs::read_dir(dir.join("records"))
        .expect("a records folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
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

pub fn key(i: usize) -> String {
    format!("{:032x}", i as u128 * u128::from(dynamics::rng::GOLDEN))
}

/// Trains nothing: uploads `epochs` epochs of records for a new run, as a worker would, and
/// ends it. Returns (run id, upload times in ms, end-of-run time in ms, and the time of the
/// per-sample statistics alone: reading the stored epochs and summarising every sample).
pub async fn fake_run(service: &Service, queue: &Queue, data: &Data, samples: usize, epochs: u32, seed: u64, tags: &str) -> (i64, Vec<f64>, f64, f64) {
    let (run_id, lease, uploads) = uploaded_run(service, queue, data, samples, epochs, seed, tags).await;
    let started = Instant::now();
    let records = server::records::read(&service.pool, run_id).await.expect("records");
    let columns: Vec<dynamics::TraceColumns> = records.columns.iter().map(|c| dynamics::TraceColumns::new(&c.correct, &c.p_true, &c.loss)).collect();
    let summaries = dynamics::summarize_samples(&columns, 0, None, dynamics::AnalysisSettings::default());
    assert_eq!(summaries.len(), samples);
    let statistics = started.elapsed().as_secs_f64() * 1e3;
    drop(summaries);
    drop(columns);
    drop(records);
    let started = Instant::now();
    let analysis =
        queue.finish(lease.job_id, &lease.job_token, &Finish { outcome: Outcome::Succeeded, message: None, class_means: None }).await.expect("finish");
    // The end of run, statistics and sealing included (they run in the background).
    analysis.expect("a succeeded run is analysed").await.expect("the analysis");
    (run_id, uploads, started.elapsed().as_secs_f64() * 1e3, statistics)
}

/// A new run launched, leased, and its `epochs` epochs of records uploaded as a worker would;
/// not finished. Returns (run id, its lease, upload times in ms).
pub async fn uploaded_run(
    service: &Service,
    queue: &Queue,
    data: &Data,
    samples: usize,
    epochs: u32,
    seed: u64,
    tags: &str,
) -> (i64, protocol::worker::Lease, Vec<f64>) {
    let request = RunRequest {
        dataset: Some("bench".into()),
        arch: Some("small_cnn".into()),
        epochs: Some(epochs.into()),
        seed: Some(seed.into()),
        tags: Some(tags.into()),
        ..Default::default()
    };
    let launched = service.launch(request, &bench_admin()).await.expect("launch");
    let lease = queue.lease("bench").await.expect("lease").expect("a job");
    let manifest =
        SampleManifest { samples: (0..samples).map(|i| ManifestEntry { dataset_index: i as u32, sample_key: key(i), label: (i % 10) as u32 }).collect() };
    queue.put_manifest(lease.job_id, &lease.job_token, &manifest).await.expect("manifest");
    let mut rng = SplitMix64::new(seed);
    let mut uploads = Vec::new();
    for epoch in 1..=epochs {
        let columns = data.epoch(&mut rng, samples, epoch, epochs);
        let metrics =
            EpochMetrics { epoch, phase: Phase::Finetune, train_loss: 1.0, train_accuracy: 0.5, val_loss: None, val_accuracy: None, lr: 0.01, seconds: 1.0 };
        let upload = EpochUpload { metrics, columns, val_confusion: None, eval_loss: None, shown: None };
        let started = Instant::now();
        queue.put_epoch(lease.job_id, &lease.job_token, epoch, &upload).await.expect("epoch");
        uploads.push(started.elapsed().as_secs_f64() * 1e3);
    }
    (launched.id, lease, uploads)
}
