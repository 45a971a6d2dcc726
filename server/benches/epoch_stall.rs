//! Issue 18's end-of-epoch stall: how long the training thread waits between the last step of
//! one epoch and the first step of the next, with 100,000 samples, through a real server and
//! worker. The worker logs, per epoch, the time from its last step to the next epoch and its
//! parts (copying the records to the host, validation, the checkpoint copy and hand-over), and
//! the time the epoch pipeline's thread took to have it stored (the binary upload) meanwhile;
//! before the pipeline, the training thread waited for that upload and the checkpoint write.
//! Goal: the hand-over <= 2 % of the epoch.
//!
//! `cargo bench -p server --bench epoch_stall --profile dev` (FORGETLAB_WORKER_BIN names the
//! worker, default target/debug/forgetlab-worker; FORGETLAB_STALL_SAMPLES (100000),
//! FORGETLAB_STALL_EPOCHS (4), FORGETLAB_STALL_ARCH (small_cnn)).

mod support;

use std::time::Duration;

use support::{median, setting};

/// The numbers of a log line like "epoch 3: 812 ms from its last step to the next epoch
/// (records 20 ms, validation 700 ms, checkpoint copy and hand-over 1.2 ms)".
fn stall_line(line: &str) -> Option<(u32, [f64; 4])> {
    let at = line.find(" ms from its last step")?;
    let head = &line[..at];
    let (before, total) = head.rsplit_once(": ")?;
    let epoch = before.rsplit_once("epoch ")?.1;
    let numbers: Vec<f64> = line[at..].split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|t| t.parse().ok()).collect();
    let [records, validation, handover] = numbers[..] else { return None };
    Some((epoch.parse().ok()?, [total.parse().ok()?, records, validation, handover]))
}

/// "epoch 3 stored by the server: 1855 KiB in 95 ms" -> (3, 95).
fn stored_line(line: &str) -> Option<(u32, f64)> {
    let (before, rest) = line.split_once(" stored by the server: ")?;
    let epoch = before.rsplit_once("epoch ")?.1;
    let ms = rest.split(" in ").nth(1)?.trim_end().strip_suffix(" ms")?;
    Some((epoch.parse().ok()?, ms.parse().ok()?))
}

#[tokio::main]
async fn main() {
    // The worker's own line formats (trainer/src/train.rs, trainer/src/client.rs).
    let example = "2026-12-04T05:00:00Z  INFO trainer::train: epoch 3: 812 ms from its last step to the next epoch (records 20 ms, validation 700 ms, checkpoint copy and hand-over 1.2 ms)";
    assert_eq!(stall_line(example), Some((3, [812.0, 20.0, 700.0, 1.2])));
    assert_eq!(stored_line("INFO trainer::client: epoch 3 stored by the server: 1855 KiB in 95 ms"), Some((3, 95.0)));
    let samples = setting("FORGETLAB_STALL_SAMPLES", 100_000);
    let epochs = setting("FORGETLAB_STALL_EPOCHS", 4);
    let arch = std::env::var("FORGETLAB_STALL_ARCH").unwrap_or_else(|_| "small_cnn".into());
    let dir = tempfile::tempdir().unwrap();
    // The worker inherits RUST_LOG: its per-epoch lines are info.
    let server = support::BenchServer::start(
        dir.path(),
        &[("FORGETLAB_WORKERS", "1"), ("FORGETLAB_WORKER_BIN", &support::worker_bin()), ("RUST_LOG", "warn,trainer=info")],
    )
    .await;
    let base = server.base.clone();
    let client = support::signed_in(&base, reqwest::Client::builder()).await;
    let generator = format!("classes=10,train_per_class={},val_per_class=100,size=28,channels=1,seed=1", samples / 10);
    let registered = client
        .post(format!("{base}/api/v1/datasets"))
        .json(&serde_json::json!({"name": "stall", "format": "synthetic", "path": generator}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201, "{}", registered.text().await.unwrap());
    let spec =
        serde_json::json!({"dataset": "stall", "arch": arch, "epochs": epochs, "warmup_epochs": 0, "batch_size": 256, "device": "cpu", "measure": "in_batch"});
    let launched = client.post(format!("{base}/api/v1/runs")).json(&spec).send().await.unwrap();
    assert_eq!(launched.status(), 201, "{}", launched.text().await.unwrap());
    let id = launched.json::<serde_json::Value>().await.unwrap()["id"].as_i64().unwrap();
    println!("{samples} samples, {arch}, {epochs} epochs, batch 256, CPU; run {id}");
    let run = loop {
        let run: serde_json::Value = client.get(format!("{base}/api/v1/runs/{id}")).send().await.unwrap().json().await.unwrap();
        if matches!(run["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
            break run;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    let log: serde_json::Value = client.get(format!("{base}/api/v1/runs/{id}/log")).send().await.unwrap().json().await.unwrap();
    let lines: Vec<&str> = log["lines"].as_array().unwrap().iter().filter_map(|l| l["line"].as_str()).collect();
    let stalls: Vec<(u32, [f64; 4])> = lines.iter().filter_map(|l| stall_line(l)).collect();
    let stored: Vec<(u32, f64)> = lines.iter().filter_map(|l| stored_line(l)).collect();
    assert!(!stalls.is_empty() && !stored.is_empty(), "the job log has no per-epoch timing lines:\n{}", lines.join("\n"));
    let epochs_run: serde_json::Value = client.get(format!("{base}/api/v1/runs/{id}")).send().await.unwrap().json().await.unwrap();
    let seconds: Vec<f64> = epochs_run["epochs"].as_array().map(|e| e.iter().filter_map(|m| m["seconds"].as_f64()).collect()).unwrap_or_default();
    println!("| epoch | epoch s | last step to next epoch ms | records ms | validation ms | copy + hand-over ms | stored in background ms |");
    for (epoch, [total, records, validation, handover]) in &stalls {
        let background = stored.iter().find(|s| s.0 == *epoch).map_or(f64::NAN, |s| s.1);
        let secs = seconds.get(*epoch as usize - 1).copied().unwrap_or(f64::NAN);
        println!("| {epoch} | {secs:.2} | {total:.0} | {records:.0} | {validation:.0} | {handover:.1} | {background:.0} |");
    }
    let epoch_ms = median(seconds.iter().map(|s| s * 1e3).collect());
    let handover = median(stalls.iter().map(|s| s.1[3]).collect());
    let background = median(stored.iter().map(|s| s.1).collect());
    println!("median epoch {epoch_ms:.0} ms; hand-over {handover:.1} ms = {:.3} % of the epoch (goal <= 2 %)", 100.0 * handover / epoch_ms);
    println!("the upload the training thread used to wait for: median {background:.0} ms = {:.2} % of the epoch", 100.0 * background / epoch_ms);
    drop(server);
}
