//! Issue #5's load benchmark: a real server (this build's `forgetlab`) with the workers this
//! machine allows, 200 tiny jobs queued, 50 clients following `/api/v1/events` and 20 clients
//! loading pages (jobs list, run pages, a run's JSON) for 60 seconds, all from this second
//! process on loopback. Reports errors, p95 page time (goal <= 150 ms), the delay from the
//! server's publishing an event to its arrival (goal p95 <= 500 ms), and after the queue
//! drains, that every run stored each epoch exactly once.
//!
//! `cargo bench -p server --bench load` (FORGETLAB_WORKER_BIN names the worker, default
//! target/debug/forgetlab-worker; FORGETLAB_LOAD_SECONDS, _JOBS, _WORKERS).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::main]
async fn main() {
    let seconds = setting("FORGETLAB_LOAD_SECONDS", 60);
    let jobs = setting("FORGETLAB_LOAD_JOBS", 200);
    let workers = setting("FORGETLAB_LOAD_WORKERS", std::thread::available_parallelism().map_or(1, |n| n.get() as u64));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (workers_setting, site) = (workers.to_string(), root.join("target/site").display().to_string());
    let server = support::BenchServer::start(
        dir.path(),
        &[("FORGETLAB_WORKERS", &workers_setting), ("FORGETLAB_WORKER_BIN", &support::worker_bin()), ("FORGETLAB_SITE_ROOT", &site)],
    )
    .await;
    let base = server.base.clone();
    // Pages and the API need an account: an administrator's API token.
    let client = support::signed_in(&base, reqwest::Client::builder().pool_max_idle_per_host(100)).await;
    println!("server up; {workers} workers, {jobs} jobs, 50 event clients, 20 page clients, {seconds} s");

    let mut ids = Vec::new();
    for i in 0..jobs {
        let spec = serde_json::json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 2, "train_subset": 64, "val_subset": 64,
            "batch_size": 32, "seed": i, "device": "cpu"});
        let response = client.post(format!("{base}/api/v1/runs")).json(&spec).send().await.unwrap();
        assert_eq!(response.status(), 201, "launch {i}");
        ids.push(response.json::<serde_json::Value>().await.unwrap()["id"].as_i64().unwrap());
    }
    let ids = Arc::new(ids);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let delays = Arc::new(Mutex::new(Vec::<f64>::new()));
    let pages = Arc::new(Mutex::new(Vec::<(String, f64)>::new()));

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, base, stop, errors, delays) = (client.clone(), base.clone(), stop.clone(), errors.clone(), delays.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut response) = client.get(format!("{base}/api/v1/events")).send().await else {
                errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut buffer = String::new();
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(500), response.chunk()).await {
                    Ok(Ok(Some(bytes))) => {
                        let arrived = now_ms();
                        buffer.push_str(&String::from_utf8_lossy(&bytes));
                        while let Some(end) = buffer.find("\n\n") {
                            let event: String = buffer.drain(..end + 2).collect();
                            for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                                let value: serde_json::Value = serde_json::from_str(data.trim()).unwrap_or_default();
                                if let Some(published) = value["published_ms"].as_u64() {
                                    delays.lock().unwrap().push(arrived.saturating_sub(published) as f64);
                                }
                            }
                        }
                    }
                    Ok(Ok(None)) | Ok(Err(_)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {}
                }
            }
        }));
    }
    for c in 0..20u64 {
        let (client, base, stop, errors, pages, ids) = (client.clone(), base.clone(), stop.clone(), errors.clone(), pages.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = dynamics::rng::SplitMix64::new(c);
            while !stop.load(Ordering::Relaxed) {
                let n = rng.next_u64();
                let id = ids[(n >> 33) as usize % ids.len()];
                let (kind, path) = match (n >> 20) % 4 {
                    0 => ("jobs page", "/jobs".to_owned()),
                    1 | 2 => ("run page", format!("/runs/{id}")),
                    _ => ("run JSON", format!("/api/v1/runs/{id}")),
                };
                let started = Instant::now();
                match client.get(format!("{base}{path}")).send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        pages.lock().unwrap().push((kind.to_owned(), started.elapsed().as_secs_f64() * 1e3));
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let pages = pages.lock().unwrap().clone();
    let delays = delays.lock().unwrap().clone();
    println!("errors: {}", errors.load(Ordering::Relaxed));
    for kind in ["jobs page", "run page", "run JSON"] {
        let times: Vec<f64> = pages.iter().filter(|p| p.0 == kind).map(|p| p.1).collect();
        println!("{kind}: {} loads, median {:.1} ms, p95 {:.1} ms", times.len(), percentile(times.clone(), 0.5), percentile(times, 0.95));
    }
    let all: Vec<f64> = pages.iter().map(|p| p.1).collect();
    println!("all pages: {} loads, p95 {:.1} ms (goal <= 150 ms)", all.len(), percentile(all, 0.95));
    println!(
        "events: {} received, delay median {:.0} ms, p95 {:.0} ms, max {:.0} ms (goal p95 <= 500 ms)",
        delays.len(),
        percentile(delays.clone(), 0.5),
        percentile(delays.clone(), 0.95),
        percentile(delays, 1.0)
    );

    // Let the queue drain, then check every run's epochs.
    let drain = Instant::now();
    let (mut succeeded, mut bad) = (0, Vec::new());
    for &id in ids.iter() {
        loop {
            let run: serde_json::Value = client.get(format!("{base}/api/v1/runs/{id}")).send().await.unwrap().json().await.unwrap();
            match run["status"].as_str().unwrap() {
                "queued" | "running" if drain.elapsed() < Duration::from_secs(1800) => tokio::time::sleep(Duration::from_millis(500)).await,
                "succeeded" => {
                    let epochs: Vec<u64> = run["epochs"].as_array().unwrap().iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
                    if epochs == [1, 2] {
                        succeeded += 1
                    } else {
                        bad.push((id, format!("epochs {epochs:?}")))
                    }
                    break;
                }
                other => {
                    bad.push((id, other.to_owned()));
                    break;
                }
            }
        }
    }
    println!(
        "after draining ({:.0} s more): {succeeded} of {} runs succeeded with epochs [1, 2] exactly once; other: {bad:?}",
        drain.elapsed().as_secs_f64(),
        ids.len()
    );
    drop(server);
    // Warnings of the server and its workers (their stderr): a retried request shows here.
    let text = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.path().join("server.err")).unwrap_or_default();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    println!("server and worker warnings: {}", warnings.len());
    for line in warnings.iter().take(5) {
        println!("  {line}");
    }
}
