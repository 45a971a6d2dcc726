//! A real server, a real worker process, real libtorch training on real Fashion-MNIST, and
//! the stored per-sample statistics checked against a recomputation from the stored epochs.

mod common;

use std::time::Duration;

use common::{TestServer, launch, require_fashion_mnist, wait_for_run};
use protocol::pack::unpack_f32;
use serde_json::{Value, json};
use sqlx::{Row, SqlitePool};

/// Forgetting events, learning events and first-learned epoch, written out independently of
/// the `dynamics` crate: c_0 = 0; forgetting = 1 -> 0; learning = 0 -> 1.
fn recount(trace: &[u8]) -> (i64, i64, Option<i64>) {
    let (mut forgotten, mut learned, mut first) = (0, 0, None);
    for t in 0..trace.len() {
        let before = if t == 0 { 0 } else { trace[t - 1] };
        if before == 1 && trace[t] == 0 {
            forgotten += 1;
        }
        if before == 0 && trace[t] == 1 {
            learned += 1;
            if first.is_none() {
                first = Some(t as i64 + 1);
            }
        }
    }
    (forgotten, learned, first)
}

async fn check_stored_statistics(database: &std::path::Path, run_id: i64, epochs: usize, samples: usize, warmup: usize) {
    let pool = SqlitePool::connect(&format!("sqlite://{}?mode=ro", database.display())).await.expect("open the run's database");
    // Sealed at the end of the run: record blocks of 64 samples, no epoch rows left.
    let epoch_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM epoch_records WHERE run_id = ?").bind(run_id).fetch_one(&pool).await.unwrap();
    let blocks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM record_blocks WHERE run_id = ?").bind(run_id).fetch_one(&pool).await.unwrap();
    assert_eq!((epoch_rows, blocks as usize), (0, samples.div_ceil(server::records::BLOCK)));
    let records = server::records::read(&pool, run_id).await.unwrap();
    assert_eq!(records.epochs, (1..=epochs as u32).collect::<Vec<_>>(), "every epoch once");
    let mut correct = Vec::new();
    let mut p_true = Vec::new();
    let mut loss = Vec::new();
    for columns in &records.columns {
        let c = columns.correct.clone();
        assert_eq!(c.len(), samples);
        assert!(c.iter().all(|&v| v <= 1));
        let p = columns.p_true.clone();
        assert!(p.iter().all(|&v| (0.0..=1.0).contains(&v)), "p_true is a probability");
        let l = columns.loss.clone();
        // The loss is the cross-entropy of the recorded p_true.
        for (loss, p) in l.iter().zip(&p) {
            assert!((loss - (-p.ln())).abs() < 1e-3 * (1.0 + loss.abs()), "loss {loss} vs -ln p_true {}", -p.ln());
        }
        let (predicted, margin) = (&columns.predicted, &columns.margin);
        assert_eq!(predicted.len(), samples);
        // Correct exactly when the true logit beats every other one.
        for k in 0..samples {
            if margin[k] > 1e-4 {
                assert_eq!(c[k], 1);
            }
            if margin[k] < -1e-4 {
                assert_eq!(c[k], 0);
            }
        }
        assert_eq!(columns.el2n.len(), samples);
        correct.push(c);
        p_true.push(p);
        loss.push(l);
    }
    let stats = sqlx::query("SELECT * FROM sample_stats WHERE run_id = ? ORDER BY sample_index").bind(run_id).fetch_all(&pool).await.unwrap();
    assert_eq!(stats.len(), samples, "one statistics row per sample");
    // The statistics cover the fine-tuning epochs (the default window): the epochs after the
    // warm-up, read as a trace of their own; first-learned epochs in the run's numbering.
    let (full_margin, full_el2n): (Vec<&[f32]>, Vec<&[f32]>) = records.columns.iter().map(|c| (c.margin.as_slice(), c.el2n.as_slice())).unzip();
    let (correct, p_true, margin) = (&correct[warmup..], &p_true[warmup..], &full_margin[warmup..]);
    let epochs = epochs - warmup;
    // EL2N 10 % into the window: its first epoch plus a tenth of its length.
    let el2n_epoch = warmup + epochs / 10;
    let last_predicted = &records.columns.last().expect("epochs").predicted;
    for (i, row) in stats.iter().enumerate() {
        assert_eq!(row.get::<Option<i64>, _>("last_predicted"), Some(i64::from(last_predicted[i])), "sample {i}: the last epoch's prediction");
        let trace: Vec<u8> = correct.iter().map(|epoch| epoch[i]).collect();
        let (forgotten, learned, first) = recount(&trace);
        let first = first.map(|e| e + warmup as i64);
        let mean_margin = margin.iter().map(|m| f64::from(m[i])).sum::<f64>() / epochs as f64;
        assert!((row.get::<f64, _>("mean_margin") - mean_margin).abs() < 1e-9, "sample {i}");
        assert_eq!(row.get::<f64, _>("el2n"), f64::from(full_el2n[el2n_epoch][i]), "sample {i}");
        assert_eq!(row.get::<i64, _>("forgetting_events"), forgotten, "sample {i}, trace {trace:?}");
        assert_eq!(row.get::<i64, _>("learning_events"), learned, "sample {i}");
        assert_eq!(row.get::<Option<i64>, _>("first_learned_epoch"), first, "sample {i}");
        assert_eq!(row.get::<bool, _>("never_learned"), first.is_none());
        assert_eq!(row.get::<bool, _>("unforgettable"), first.is_some() && forgotten == 0);
        let mean = p_true.iter().map(|e| f64::from(e[i])).sum::<f64>() / epochs as f64;
        let var = p_true.iter().map(|e| (f64::from(e[i]) - mean).powi(2)).sum::<f64>() / epochs as f64;
        assert!((row.get::<f64, _>("confidence") - mean).abs() < 1e-9);
        assert!((row.get::<f64, _>("variability") - var.sqrt()).abs() < 1e-9);
        let correctness = trace.iter().map(|&c| f64::from(c)).sum::<f64>() / epochs as f64;
        assert!((row.get::<f64, _>("correctness") - correctness).abs() < 1e-12);
        // tau and R^2 of the lag-retention fit, where the trace allows one.
        let expected_fit = dynamics::decay::fit_lag_retention(&trace.iter().map(|&c| c == 1).collect::<Vec<_>>());
        match expected_fit {
            dynamics::Decay::Fitted(fit) => {
                assert_eq!(row.get::<Option<f64>, _>("tau"), fit.tau, "sample {i}");
                assert_eq!(row.get::<Option<f64>, _>("r2"), Some(fit.exponential.r2), "sample {i}");
            }
            dynamics::Decay::Excluded(_) => assert_eq!(row.get::<Option<f64>, _>("r2"), None, "sample {i}"),
        }
        let warmup_loss = row.get::<Option<f64>, _>("warmup_loss");
        if warmup > 0 {
            assert_eq!(warmup_loss, Some(f64::from(loss[warmup - 1][i])));
        } else {
            assert_eq!(warmup_loss, None);
        }
    }
    // The eval-mode loss after head warmup is stored with the last warmup epoch only.
    assert_eq!(records.eval_loss.as_ref().map(|(epoch, loss)| (*epoch as usize, loss.len())), (warmup > 0).then_some((warmup, samples)));
    // Class-mean embeddings of the final model: every class of the subset counted.
    let (dim, means, counts): (i64, Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT dim, means, counts FROM run_class_means WHERE run_id = ?").bind(run_id).fetch_one(&pool).await.unwrap();
    let counts = protocol::pack::unpack_u32(&counts).unwrap();
    assert_eq!((counts.len(), counts.iter().sum::<u32>() as usize), (10, samples));
    assert_eq!(unpack_f32(&means).unwrap().len(), 10 * dim as usize);
    assert!(dim == 128 || dim == 512, "small CNN or ResNet-18 width, got {dim}");
    // Content keys: the manifest's key of every sample is the hash of its image and label.
    let images = datasets::load_idx_split(std::path::Path::new(common::FASHION_MNIST), datasets::Split::Train).unwrap();
    let manifest = sqlx::query("SELECT dataset_index, sample_key, label FROM run_samples WHERE run_id = ? ORDER BY sample_index")
        .bind(run_id)
        .fetch_all(&pool)
        .await
        .unwrap();
    for row in &manifest {
        let index = row.get::<i64, _>("dataset_index") as usize;
        assert_eq!(row.get::<i64, _>("label") as u32, images.labels[index]);
        assert_eq!(row.get::<String, _>("sample_key"), datasets::sample_key(images.image(index).unwrap(), images.labels[index]));
    }
}

#[test]
fn real_jobs_store_statistics_that_match_the_stored_epochs() {
    require_fashion_mnist();
    let server = TestServer::start(1);
    let small = launch(
        &server,
        json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 2, "train_subset": 256, "val_subset": 256,
               "batch_size": 64, "lr": 0.05, "seed": 1, "measure": "in_batch", "device": "cpu"}),
    );
    let resnet = launch(
        &server,
        json!({"dataset": "fashion-mnist", "arch": "resnet18", "warmup_epochs": 1, "epochs": 1, "train_subset": 128,
               "val_subset": 128, "batch_size": 32, "lr": 0.01, "seed": 2, "measure": "full_pass", "image_size": 32, "device": "cpu"}),
    );
    for (id, epochs, samples, warmup) in [(small, 2, 256, 0), (resnet, 2, 128, 1)] {
        let run = wait_for_run(&server, id, Duration::from_secs(600));
        assert_eq!(run["status"], "succeeded", "run {id}: {run}");
        assert_eq!(run["epochs"].as_array().unwrap().len(), epochs);
        assert_eq!(run["sample_count"], samples);
        // The latest validation confusion matrix: 10 x 10, every validation sample once, its
        // diagonal share equal to the last epoch's validation accuracy.
        let confusion: Vec<Vec<u64>> = serde_json::from_value(run["val_confusion"].clone()).unwrap();
        assert_eq!(confusion.len(), 10);
        let total: u64 = confusion.iter().flatten().sum();
        assert_eq!(total, samples as u64, "val_subset equals train_subset in these runs");
        let diagonal: u64 = (0..10).map(|k| confusion[k][k]).sum();
        let last = run["epochs"].as_array().unwrap().last().unwrap()["val_accuracy"].as_f64().unwrap();
        assert!((diagonal as f64 / total as f64 - last).abs() < 1e-9);
        let histogram_total: u64 = run["forgetting_histogram"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(histogram_total, samples as u64, "the histogram covers every sample");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(check_stored_statistics(&server.database(), id, epochs, samples, warmup));
    }
    // The API's sample list agrees with the database and is sorted as asked.
    let page: Value = server.client().get(server.api(&format!("/runs/{small}/samples?sort=-forgetting_events&limit=20"))).send().unwrap().json().unwrap();
    assert_eq!(page["total"], 256);
    let events: Vec<u64> = page["samples"].as_array().unwrap().iter().map(|s| s["forgetting_events"].as_u64().unwrap()).collect();
    assert_eq!(events.len(), 20);
    assert!(events.windows(2).all(|w| w[0] >= w[1]), "sorted by forgetting events: {events:?}");
    // A thumbnail of a listed sample is a PNG.
    let index = page["samples"][0]["dataset_index"].as_u64().unwrap();
    let png = server.client().get(server.api(&format!("/datasets/fashion-mnist/train/{index}.png"))).send().unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(&png.bytes().unwrap()[..8], b"\x89PNG\r\n\x1a\n");
}

/// A job that fails in the worker (a damaged weights file: libtorch cannot read it) is marked
/// failed with the worker's message, its log tail shows what happened, and the next job runs.
#[test]
fn a_failing_job_is_marked_failed_with_its_message_and_the_next_job_runs() {
    require_fashion_mnist();
    let server = TestServer::start(1);
    std::fs::write(server.data_dir.path().join("datasets").join("broken.safetensors"), b"these bytes are not a safetensors file").unwrap();
    let broken = launch(
        &server,
        json!({"dataset": "fashion-mnist", "arch": "resnet18", "epochs": 1, "train_subset": 64, "val_subset": 64, "image_size": 32,
               "seed": 1, "weights": "broken.safetensors", "device": "cpu"}),
    );
    let run = wait_for_run(&server, broken, Duration::from_secs(300));
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("broken.safetensors"), "the message names the file: {error}");

    let fine = launch(
        &server,
        json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 128, "val_subset": 64, "seed": 2, "device": "cpu"}),
    );
    let run = wait_for_run(&server, fine, Duration::from_secs(300));
    assert_eq!(run["status"], "succeeded", "the next job runs: {run}");

    // The log tails: the server's notes and the worker's own lines, in order.
    let log = |id: i64| -> Vec<(String, String)> {
        let log: Value = server.client().get(server.api(&format!("/runs/{id}/log?tail=500"))).send().unwrap().json().unwrap();
        log["lines"].as_array().unwrap().iter().map(|l| (l["source"].as_str().unwrap().to_owned(), l["line"].as_str().unwrap().to_owned())).collect()
    };
    let lines = log(broken);
    assert!(lines.first().is_some_and(|(source, line)| source == "server" && line.starts_with("leased by worker")), "{lines:?}");
    assert!(lines.iter().any(|(source, _)| source == "worker"), "the worker's lines arrive: {lines:?}");
    assert!(lines.last().is_some_and(|(source, line)| source == "server" && line.starts_with("failed: ") && line.contains("broken.safetensors")), "{lines:?}");
    let lines = log(fine);
    assert!(lines.iter().any(|(source, line)| source == "worker" && line.contains("epoch 1 (finetune): loss")), "{lines:?}");
    assert_eq!(lines.last().map(|l| l.1.as_str()), Some("succeeded"));
    let tail: Value = server.client().get(server.api(&format!("/runs/{fine}/log?tail=1"))).send().unwrap().json().unwrap();
    assert_eq!(tail["lines"].as_array().unwrap().len(), 1);
    assert_eq!(server.client().get(server.api("/runs/999/log")).send().unwrap().status(), 404);
}
