//! The worker protocol against a real server, with the test playing the worker: tokens are
//! checked, and an epoch uploaded twice is stored once (the second upload replaces the first),
//! in JSON or in the binary form.

mod common;

use common::{TestServer, WORKER_TOKEN, launch, require_fashion_mnist};
use reqwest::blocking::Client;
use serde_json::{Value, json};
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
    let client = server.client();
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
    let lease: Value = client
        .post(server.api("/worker/lease"))
        .bearer_auth(WORKER_TOKEN)
        .json(&json!({"worker": "test", "device": "cpu (probe)"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(lease["run_id"], run_id);
    let job = lease["job_id"].as_i64().unwrap();
    let token = lease["job_token"].as_str().unwrap().to_owned();
    let empty =
        client.post(server.api("/worker/lease")).bearer_auth(WORKER_TOKEN).json(&json!({"worker": "idle", "device": "cuda:0 (of 1 visible)"})).send().unwrap();
    assert_eq!(empty.status(), 204, "one job, leased once");
    // An idle worker's polls put it on the jobs page, with the device it said.
    assert_eq!(client.post(server.api("/worker/lease")).bearer_auth(WORKER_TOKEN).json(&json!({"worker": "idle"})).send().unwrap().status(), 204);
    // The workers heard from: each with its device and job; a heartbeat adds memory and speed.
    let beat = json!({"phase": "finetune", "epoch": 1, "step": 1, "steps": 2, "images_per_sec": 321.5, "memory_bytes": 123_456_789});
    assert_eq!(client.post(server.api(&format!("/worker/jobs/{job}/heartbeat"))).bearer_auth(&token).json(&beat).send().unwrap().status(), 200);
    let workers: Vec<Value> = client.get(server.api("/workers")).send().unwrap().json().unwrap();
    let named = |name: &str| workers.iter().find(|w| w["name"] == name).unwrap_or_else(|| panic!("no worker {name} in {workers:?}")).clone();
    let (busy, idle) = (named("test"), named("idle"));
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert_eq!((busy["device"].as_str(), busy["job_id"].as_i64(), busy["run_id"].as_i64()), (Some("cpu (probe)"), Some(job), Some(run_id)));
    assert_eq!((busy["memory_bytes"].as_u64(), busy["images_per_sec"].as_f64()), (Some(123_456_789), Some(321.5)));
    assert_eq!(
        (idle["device"].as_str(), idle["job_id"].as_i64()),
        (Some("cuda:0 (of 1 visible)"), None),
        "a later poll without a device keeps the one it said"
    );
    assert_eq!(workers[0]["name"], "test", "the most recently heard first");

    let manifest = json!({"samples": (0..4).map(|i| json!({"dataset_index": i, "sample_key": format!("key{i}"), "label": i})).collect::<Vec<_>>()});
    let epoch_url = server.api(&format!("/worker/jobs/{job}/epochs/1"));
    let early = client.put(&epoch_url).bearer_auth(&token).json(&upload(1, 4, 0.7)).send().unwrap();
    assert_eq!(early.status(), 409, "epochs need the manifest first");
    // A sample key a spreadsheet would run as a formula (CSV exports), or that carries markup,
    // is refused with the sample named (issue 19, item 12).
    for bad in ["=HYPERLINK(\"http://evil.example\")", "<b>x</b>", "", "-1+2"] {
        let mut with_bad = manifest.clone();
        with_bad["samples"][2]["sample_key"] = json!(bad);
        let refused = client.put(server.api(&format!("/worker/jobs/{job}/samples"))).bearer_auth(&token).json(&with_bad).send().unwrap();
        assert_eq!(refused.status(), 400, "{bad:?}");
        assert!(refused.text().unwrap().contains("sample 2 has the key"), "{bad:?}");
    }
    assert_eq!(client.put(server.api(&format!("/worker/jobs/{job}/samples"))).bearer_auth(&token).json(&manifest).send().unwrap().status(), 200);

    assert_eq!(client.put(&epoch_url).bearer_auth("not-the-token").json(&upload(1, 4, 0.7)).send().unwrap().status(), 401);
    assert_eq!(client.put(&epoch_url).bearer_auth(&token).json(&upload(1, 4, 0.7)).send().unwrap().status(), 200);
    assert_eq!(client.put(&epoch_url).bearer_auth(&token).json(&upload(1, 4, 0.9)).send().unwrap().status(), 200);
    let short = client.put(&epoch_url).bearer_auth(&token).json(&upload(1, 3, 0.9)).send().unwrap();
    assert_eq!(short.status(), 400);
    assert!(short.json::<Value>().unwrap()["message"].as_str().unwrap().contains("correct has 3 values; the run has 4 samples"));
    // The binary form the worker sends (protocol::wire) replaces it the same way; a cut one
    // is refused with its reason and changes nothing.
    let binary = |fill: f32| protocol::wire::encode_epoch(&serde_json::from_value(upload(1, 4, fill)).unwrap());
    let put_binary =
        |bytes: Vec<u8>| client.put(&epoch_url).bearer_auth(&token).header("content-type", protocol::wire::EPOCH_CONTENT_TYPE).body(bytes).send().unwrap();
    let stored = put_binary(binary(0.25));
    assert_eq!(stored.status(), 200);
    assert_eq!(stored.json::<Value>().unwrap()["samples"], 4);
    let mut cut = binary(0.5);
    cut.truncate(cut.len() - 3);
    let refused = put_binary(cut);
    assert_eq!(refused.status(), 422);
    assert!(refused.json::<Value>().unwrap()["message"].as_str().unwrap().contains("the binary epoch upload was refused: the body ends inside el2n"));
    let log_url = server.api(&format!("/worker/jobs/{job}/log"));
    assert_eq!(client.post(&log_url).bearer_auth("wrong").json(&json!({"lines": ["x"]})).send().unwrap().status(), 401);
    assert_eq!(client.post(&log_url).bearer_auth(&token).json(&json!({"lines": ["worker says hello"]})).send().unwrap().status(), 200);
    let log: Value = client.get(server.api(&format!("/runs/{run_id}/log"))).send().unwrap().json().unwrap();
    assert_eq!(log["lines"].as_array().unwrap().last().unwrap()["line"], "worker says hello");
    let beyond = client.put(server.api(&format!("/worker/jobs/{job}/epochs/3"))).bearer_auth(&token).json(&upload(3, 4, 0.9)).send().unwrap();
    assert_eq!(beyond.status(), 400, "the run has two epochs");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = SqlitePool::connect(&format!("sqlite://{}?mode=ro", server.database().display())).await.unwrap();
        let rows = sqlx::query("SELECT loss FROM epoch_records WHERE run_id = ? AND epoch = 1").bind(run_id).fetch_all(&pool).await.unwrap();
        assert_eq!(rows.len(), 1, "the same epoch uploaded twice leaves one copy");
        let loss = protocol::pack::unpack_f32(&rows[0].get::<Vec<u8>, _>("loss")).unwrap();
        assert_eq!(loss, vec![0.25; 4], "each upload replaced the one before, the refused one did not");
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

fn status(client: &Client, server: &TestServer, run_id: i64) -> String {
    let run: Value = client.get(server.api(&format!("/runs/{run_id}"))).send().unwrap().json().unwrap();
    run["status"].as_str().unwrap().to_owned()
}

/// Queues a one-epoch run over four samples; returns its id.
fn launch_tiny(client: &Client, server: &TestServer) -> i64 {
    let launched: Value = client
        .post(server.api("/runs"))
        .json(&json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 4}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    launched["id"].as_i64().expect("a run id")
}

fn lease(client: &Client, server: &TestServer) -> Value {
    client.post(server.api("/worker/lease")).bearer_auth(WORKER_TOKEN).json(&json!({"worker": "test"})).send().unwrap().json().unwrap()
}

#[test]
fn cancel_and_retry_through_the_api() {
    require_fashion_mnist();
    let server = TestServer::start(0);
    let client = server.client();
    let run_id = launch_tiny(&client, &server);
    let post = |action: &str| client.post(server.api(&format!("/runs/{run_id}/{action}"))).send().unwrap();

    // A queued run is cancelled at once, and can be put back in the queue.
    assert_eq!(post("cancel").json::<Value>().unwrap()["status"], "cancelled");
    assert_eq!(status(&client, &server, run_id), "cancelled");
    assert_eq!(post("cancel").status(), 409, "nothing left to cancel");
    assert_eq!(post("retry").json::<Value>().unwrap()["status"], "queued");
    assert_eq!(post("retry").status(), 409, "a queued run cannot be retried");

    // A running one is told to stop at its next heartbeat.
    let leased = lease(&client, &server);
    let (job, token) = (leased["job_id"].as_i64().unwrap(), leased["job_token"].as_str().unwrap().to_owned());
    let beat = json!({"phase": "finetune", "epoch": 1, "step": 1, "steps": 4, "loss": 1.0, "accuracy": 0.5, "images_per_sec": null, "eta_seconds": null});
    let heartbeat = |client: &Client| -> Value {
        client.post(server.api(&format!("/worker/jobs/{job}/heartbeat"))).bearer_auth(&token).json(&beat).send().unwrap().json().unwrap()
    };
    assert_eq!(heartbeat(&client)["cancel"], false);
    let progress: Value = client.get(server.api(&format!("/runs/{run_id}"))).send().unwrap().json().unwrap();
    assert_eq!(progress["progress"]["fraction"], 0.25, "epoch 1 of 1, step 1 of 4: {progress}");
    assert_eq!(post("cancel").json::<Value>().unwrap()["status"], "running");
    assert_eq!(heartbeat(&client)["cancel"], true);
    let finish = client.post(server.api(&format!("/worker/jobs/{job}/finish"))).bearer_auth(&token).json(&json!({"outcome": "cancelled"})).send().unwrap();
    assert_eq!(finish.status(), 200);
    assert_eq!(status(&client, &server, run_id), "cancelled");
    assert_eq!(client.post(server.api("/runs/12345/cancel")).send().unwrap().status(), 404);
}

#[test]
fn a_job_whose_worker_goes_silent_is_queued_again() {
    require_fashion_mnist();
    let server = TestServer::start_with(0, &[("FORGETLAB_LEASE_SECONDS", "1")]);
    let client = server.client();
    let run_id = launch_tiny(&client, &server);
    let first = lease(&client, &server);
    assert_eq!(status(&client, &server, run_id), "running");
    // No heartbeat: the lease (1 s) runs out and the reaper (every 5 s) re-queues the job.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while status(&client, &server, run_id) != "queued" {
        assert!(std::time::Instant::now() < deadline, "the job was not re-queued");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The silent worker's token no longer works; a new lease gets a new one.
    let stale = client
        .post(server.api(&format!("/worker/jobs/{}/heartbeat", first["job_id"])))
        .bearer_auth(first["job_token"].as_str().unwrap())
        .json(&json!({"phase": "finetune", "epoch": 1, "step": 1, "steps": 1}))
        .send()
        .unwrap();
    assert_eq!(stale.status(), 401);
    let second = lease(&client, &server);
    assert_eq!(second["run_id"], run_id);
    assert_ne!(second["job_token"], first["job_token"]);
}

#[test]
fn jobs_are_leased_by_priority_then_in_order_and_listed_by_owner() {
    require_fashion_mnist();
    let server = TestServer::start(0);
    let client = server.client();
    let spec = |priority: i64, owner: &str| json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 64, "device": "cpu", "priority": priority, "owner": owner});
    let ids: Vec<i64> = [(0, "ada"), (5, "bob"), (5, "ada"), (-3, "cy")].iter().map(|(p, o)| launch(&server, spec(*p, o))).collect();
    let order: Vec<i64> = (0..4).map(|_| lease(&client, &server)["run_id"].as_i64().unwrap()).collect();
    assert_eq!(order, vec![ids[1], ids[2], ids[0], ids[3]], "highest priority first, then first in");
    let listed: Value = client.get(server.api("/runs?owner=ada&sort=id")).send().unwrap().json().unwrap();
    let listed: Vec<(i64, i64)> = listed.as_array().unwrap().iter().map(|r| (r["id"].as_i64().unwrap(), r["priority"].as_i64().unwrap())).collect();
    assert_eq!(listed, vec![(ids[0], 0), (ids[2], 5)]);
    // Bad queue fields are refused with the rest of the spec's messages, and nothing is queued.
    let refused = client
        .post(server.api("/runs"))
        .json(&json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 0, "priority": 1000, "owner": "a b"}))
        .send()
        .unwrap();
    assert!(refused.status().is_client_error());
    let body: Value = refused.json().unwrap();
    for field in ["epochs", "priority", "owner"] {
        assert!(body["errors"][field].is_string(), "a message for {field}: {body}");
    }
    let all: Value = client.get(server.api("/runs")).send().unwrap().json().unwrap();
    assert_eq!(all.as_array().unwrap().len(), 4);
}

/// One epoch of `n` samples whose records vary with the sample and the epoch (so traces
/// differ and have forgetting events), in the binary form the worker sends.
fn varied_epoch(epoch: u32, n: usize) -> Vec<u8> {
    let mut rng = dynamics::rng::SplitMix64::new(u64::from(epoch));
    let mut next = move || rng.unit_f32();
    let p: Vec<f32> = (0..n).map(|_| next()).collect();
    let upload = protocol::worker::EpochUpload {
        metrics: protocol::EpochMetrics {
            epoch,
            phase: protocol::Phase::Finetune,
            train_loss: 0.5,
            train_accuracy: 0.5,
            val_loss: None,
            val_accuracy: None,
            lr: 0.1,
            seconds: 1.0,
        },
        columns: protocol::worker::EpochColumns {
            correct: p.iter().map(|&p| u8::from(p > 0.5)).collect(),
            loss: p.iter().map(|&p| -(p.max(1e-6)).ln()).collect(),
            p_true: p.clone(),
            margin: p.iter().map(|&p| p - 0.5).collect(),
            predicted: (0..n).map(|i| (i % 10) as u16).collect(),
            el2n: p.iter().map(|&p| 1.0 - p).collect(),
        },
        val_confusion: None,
        eval_loss: None,
        shown: None,
    };
    protocol::wire::encode_epoch(&upload)
}

/// Trains (as the worker) run `run_id` on `n` samples for `epochs` epochs and finishes it;
/// returns how long the finish request took.
fn play_a_run(client: &Client, server: &TestServer, run_id: i64, n: usize, epochs: u32) -> std::time::Duration {
    let lease: Value = client.post(server.api("/worker/lease")).bearer_auth(WORKER_TOKEN).json(&json!({"worker": "test"})).send().unwrap().json().unwrap();
    assert_eq!(lease["run_id"], run_id);
    let (job, token) = (lease["job_id"].as_i64().unwrap(), lease["job_token"].as_str().unwrap().to_owned());
    let manifest = json!({"samples": (0..n).map(|i| json!({"dataset_index": i, "sample_key": format!("k{i}"), "label": i % 10})).collect::<Vec<_>>()});
    assert_eq!(client.put(server.api(&format!("/worker/jobs/{job}/samples"))).bearer_auth(&token).json(&manifest).send().unwrap().status(), 200);
    for epoch in 1..=epochs {
        let url = server.api(&format!("/worker/jobs/{job}/epochs/{epoch}"));
        let stored =
            client.put(url).bearer_auth(&token).header("content-type", protocol::wire::EPOCH_CONTENT_TYPE).body(varied_epoch(epoch, n)).send().unwrap();
        assert_eq!(stored.status(), 200, "epoch {epoch}");
    }
    let started = std::time::Instant::now();
    let finish = client.post(server.api(&format!("/worker/jobs/{job}/finish"))).bearer_auth(&token).json(&json!({"outcome": "succeeded"})).send().unwrap();
    assert_eq!(finish.status(), 200);
    started.elapsed()
}

fn wait_for_succeeded(client: &Client, server: &TestServer, run_id: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let run: Value = client.get(server.api(&format!("/runs/{run_id}"))).send().unwrap().json().unwrap();
        match run["status"].as_str().unwrap() {
            "succeeded" => return,
            "analysing" if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(100)),
            other => panic!("run #{run_id} is {other}: {run}"),
        }
    }
}

/// The samples export without its run column, for comparing two runs' statistics.
fn statistics_of(client: &Client, server: &TestServer, run_id: i64) -> Vec<String> {
    let csv = client.get(server.api(&format!("/runs/{run_id}/samples.csv"))).send().unwrap().text().unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let run_column = header.iter().position(|h| *h == "run" || *h == "run_id");
    csv.lines().map(|line| line.split(',').enumerate().filter(|(i, _)| Some(*i) != run_column).map(|(_, v)| v).collect::<Vec<_>>().join(",")).collect()
}

/// Issue 18, item 5: the worker's finish is answered before the end-of-run analysis, which
/// runs in the background (the run is `analysing`, its statistics hidden until complete); a
/// server killed during it starts it again, and the statistics equal those of an analysis
/// that was not interrupted.
#[test]
fn a_succeeded_run_is_analysed_in_the_background_and_again_after_a_crash() {
    require_fashion_mnist();
    let mut server = TestServer::start(0);
    let client = server.client();
    let (n, epochs) = (60_000, 12);
    let launch = |seed: u32| -> i64 {
        let spec = json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": epochs, "warmup_epochs": 0, "train_subset": n, "seed": seed});
        client.post(server.api("/runs")).json(&spec).send().unwrap().json::<Value>().unwrap()["id"].as_i64().unwrap()
    };
    let (interrupted, whole) = (launch(1), launch(2));

    let took = play_a_run(&client, &server, interrupted, n, epochs);
    let run: Value = client.get(server.api(&format!("/runs/{interrupted}"))).send().unwrap().json().unwrap();
    assert_eq!(run["status"], "analysing", "answered before the analysis ended ({took:?})");
    let samples: Value = client.get(server.api(&format!("/runs/{interrupted}/samples?limit=5"))).send().unwrap().json().unwrap();
    assert_eq!(samples["total"], 0, "no statistics are shown while they are written: {samples}");
    server.kill_and_restart();
    let client = server.client();
    wait_for_succeeded(&client, &server, interrupted);
    let log: Value = client.get(server.api(&format!("/runs/{interrupted}/log"))).send().unwrap().json().unwrap();
    let lines: Vec<&str> = log["lines"].as_array().unwrap().iter().filter_map(|l| l["line"].as_str()).collect();
    assert!(lines.iter().any(|l| l.contains("the server stopped during the end-of-run analysis")), "the analysis was not interrupted: {lines:?}");

    play_a_run(&client, &server, whole, n, epochs);
    wait_for_succeeded(&client, &server, whole);
    let (a, b) = (statistics_of(&client, &server, interrupted), statistics_of(&client, &server, whole));
    assert_eq!(a.len(), n + 1);
    assert!(a == b, "the statistics after a restart differ from an uninterrupted analysis");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = SqlitePool::connect(&format!("sqlite://{}?mode=ro", server.database().display())).await.unwrap();
        for run in [interrupted, whole] {
            let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM epoch_records WHERE run_id = ?").bind(run).fetch_one(&pool).await.unwrap();
            assert_eq!(rows, 0, "run #{run}'s epoch rows are gone once sealed");
            let blocks: i64 = sqlx::query_scalar("SELECT SUM(samples) FROM record_blocks WHERE run_id = ?").bind(run).fetch_one(&pool).await.unwrap();
            assert_eq!(blocks, n as i64);
        }
    });
}
