//! The worker protocol against a real server, with the test playing the worker: tokens are
//! checked, and an epoch uploaded twice is stored once (the second upload replaces the first).

mod common;

use common::{require_fashion_mnist, TestServer, WORKER_TOKEN};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use sqlx::{Row, SqlitePool};

fn upload(epoch: u32, n: usize, fill: f32) -> Value {
    json!({
        "metrics": {"epoch": epoch, "phase": "finetune", "train_loss": fill, "train_accuracy": 0.5, "val_loss": null,
                    "val_accuracy": null, "lr": 0.1, "seconds": 1.0},
        "columns": {"correct": vec![1; n], "loss": vec![fill; n], "p_true": vec![0.5; n], "margin": vec![0.1; n],
                    "predicted": vec![3; n], "el2n": vec![0.2; n]},
    })
}

#[test]
fn tokens_are_checked_and_epoch_uploads_are_idempotent() {
    require_fashion_mnist();
    let server = TestServer::start(0);
    let client = Client::new();
    let launched: Value = client
        .post(server.api("/runs"))
        .json(&json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 2, "train_subset": 4}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let run_id = launched["id"].as_i64().unwrap();

    let refused = client.post(server.api("/worker/lease")).bearer_auth("wrong").json(&json!({"worker": "test"})).send().unwrap();
    assert_eq!(refused.status(), 401, "a wrong worker token cannot lease");
    let lease: Value = client.post(server.api("/worker/lease")).bearer_auth(WORKER_TOKEN).json(&json!({"worker": "test"})).send().unwrap().json().unwrap();
    assert_eq!(lease["run_id"], run_id);
    let job = lease["job_id"].as_i64().unwrap();
    let token = lease["job_token"].as_str().unwrap().to_owned();
    let empty = client.post(server.api("/worker/lease")).bearer_auth(WORKER_TOKEN).json(&json!({"worker": "test"})).send().unwrap();
    assert_eq!(empty.status(), 204, "one job, leased once");

    let manifest = json!({"samples": (0..4).map(|i| json!({"dataset_index": i, "sample_key": format!("key{i}"), "label": i})).collect::<Vec<_>>()});
    let epoch_url = server.api(&format!("/worker/jobs/{job}/epochs/1"));
    let early = client.put(&epoch_url).bearer_auth(&token).json(&upload(1, 4, 0.7)).send().unwrap();
    assert_eq!(early.status(), 409, "epochs need the manifest first");
    assert_eq!(client.put(server.api(&format!("/worker/jobs/{job}/samples"))).bearer_auth(&token).json(&manifest).send().unwrap().status(), 200);

    assert_eq!(client.put(&epoch_url).bearer_auth("not-the-token").json(&upload(1, 4, 0.7)).send().unwrap().status(), 401);
    assert_eq!(client.put(&epoch_url).bearer_auth(&token).json(&upload(1, 4, 0.7)).send().unwrap().status(), 200);
    assert_eq!(client.put(&epoch_url).bearer_auth(&token).json(&upload(1, 4, 0.9)).send().unwrap().status(), 200);
    let short = client.put(&epoch_url).bearer_auth(&token).json(&upload(1, 3, 0.9)).send().unwrap();
    assert_eq!(short.status(), 400);
    assert!(short.json::<Value>().unwrap()["message"].as_str().unwrap().contains("correct has 3 values; the run has 4 samples"));
    let beyond = client.put(server.api(&format!("/worker/jobs/{job}/epochs/3"))).bearer_auth(&token).json(&upload(3, 4, 0.9)).send().unwrap();
    assert_eq!(beyond.status(), 400, "the run has two epochs");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = SqlitePool::connect(&format!("sqlite://{}?mode=ro", server.database().display())).await.unwrap();
        let rows = sqlx::query("SELECT loss FROM epoch_records WHERE run_id = ? AND epoch = 1").bind(run_id).fetch_all(&pool).await.unwrap();
        assert_eq!(rows.len(), 1, "the same epoch uploaded twice leaves one copy");
        let loss = protocol::pack::unpack_f32(&rows[0].get::<Vec<u8>, _>("loss")).unwrap();
        assert_eq!(loss, vec![0.9; 4], "the second upload replaced the first");
        let metrics: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM epoch_metrics WHERE run_id = ?").bind(run_id).fetch_one(&pool).await.unwrap();
        assert_eq!(metrics, 1);
    });

    // Finishing with an epoch missing does not pretend success.
    let finish = client.post(server.api(&format!("/worker/jobs/{job}/finish"))).bearer_auth(&token).json(&json!({"outcome": "succeeded"})).send().unwrap();
    assert_eq!(finish.status(), 200);
    let run: Value = client.get(server.api(&format!("/runs/{run_id}"))).send().unwrap().json().unwrap();
    assert_eq!(run["status"], "failed");
    assert!(run["error"].as_str().unwrap().contains("epochs missing: 2"), "{run}");
    // The job's token died with the job: nothing stored can be overwritten any more.
    assert_eq!(client.put(&epoch_url).bearer_auth(&token).json(&upload(1, 4, 0.1)).send().unwrap().status(), 401);
}
