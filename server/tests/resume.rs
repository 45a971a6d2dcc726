//! A worker, or the server, killed with SIGKILL in the middle of a run: the job is re-queued
//! when its lease runs out, a new worker resumes it from the last checkpoint, and the stored
//! records equal those of an uninterrupted run with the same seed: no epoch missing, none
//! twice.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, launch, require_fashion_mnist, wait_for_run};
use serde_json::Value;
use sqlx::SqlitePool;

async fn records(database: &std::path::Path, run_id: i64) -> server::records::RunRecords {
    let pool = SqlitePool::connect(&format!("sqlite://{}?mode=ro", database.display())).await.unwrap();
    server::records::read(&pool, run_id).await.unwrap()
}

fn epochs_stored(server: &TestServer, run_id: i64) -> usize {
    let run: Value = server.client().get(server.api(&format!("/runs/{run_id}"))).send().unwrap().json().unwrap();
    run["epochs"].as_array().map_or(0, Vec::len)
}

const SPEC: &str = r#"{"dataset": "fashion-mnist", "arch": "small_cnn", "warmup_epochs": 1, "epochs": 4, "train_subset": 12000,
    "val_subset": 200, "batch_size": 50, "lr": 0.02, "seed": 11, "schedule": "cosine", "device": "cpu"}"#;

/// Launches a run, lets it store two epochs, calls `crash`, and checks that the run resumed
/// from a checkpoint and stored what an uninterrupted run with the same seed stores.
fn crash_and_compare(crash: impl FnOnce(&mut TestServer)) {
    require_fashion_mnist();
    let mut server = TestServer::start_with(1, &[("FORGETLAB_LEASE_SECONDS", "3")]);
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    let interrupted = launch(&server, spec.clone());

    let deadline = Instant::now() + Duration::from_secs(300);
    while epochs_stored(&server, interrupted) < 2 {
        assert!(Instant::now() < deadline, "run {interrupted} stored fewer than 2 epochs in 300 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    crash(&mut server);
    let stored_at_kill = epochs_stored(&server, interrupted);
    assert!(stored_at_kill < 5, "the crash came before the run ended ({stored_at_kill} epochs stored)");

    let run = wait_for_run(&server, interrupted, Duration::from_secs(600));
    assert_eq!(run["status"], "succeeded", "{run}");
    let uninterrupted = launch(&server, spec);
    let run = wait_for_run(&server, uninterrupted, Duration::from_secs(600));
    assert_eq!(run["status"], "succeeded", "{run}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (a, b) = runtime.block_on(async { (records(&server.database(), interrupted).await, records(&server.database(), uninterrupted).await) });
    assert_eq!(a.epochs, (1..=5).collect::<Vec<u32>>(), "every epoch once");
    for ((epoch, x), y) in a.epochs.iter().zip(&a.columns).zip(&b.columns) {
        assert!(x == y, "epoch {epoch}: the resumed run's records differ from the uninterrupted run's");
    }
    assert_eq!(a.eval_loss, b.eval_loss, "the loss after head warmup");
    let (attempts, uploaded_by): (i64, Vec<i64>) = runtime.block_on(async {
        let pool = SqlitePool::connect(&format!("sqlite://{}?mode=ro", server.database().display())).await.unwrap();
        let attempts = sqlx::query_scalar("SELECT attempts FROM jobs WHERE run_id = ?").bind(interrupted).fetch_one(&pool).await.unwrap();
        let by = sqlx::query_scalar("SELECT attempt FROM epoch_metrics WHERE run_id = ? ORDER BY epoch").bind(interrupted).fetch_all(&pool).await.unwrap();
        (attempts, by)
    });
    assert_eq!(attempts, 2, "the job ran twice: interrupted, then resumed");
    // Resumed, not restarted: the epochs stored before the crash were not recomputed.
    let first_attempt = uploaded_by.iter().take_while(|&&a| a == 1).count();
    assert!(first_attempt >= 1 && first_attempt <= stored_at_kill, "epochs by attempt: {uploaded_by:?} ({stored_at_kill} stored at the crash)");
    assert!(uploaded_by[first_attempt..].iter().all(|&a| a == 2), "epochs by attempt: {uploaded_by:?}");
    // The checkpoint folder of a finished run is removed.
    assert!(!server.data_dir.path().join(format!("checkpoints/run-{interrupted}")).exists());
}

#[test]
fn a_killed_worker_resumes_from_its_checkpoint_with_identical_records() {
    crash_and_compare(|server| {
        let workers = server.worker_pids();
        assert_eq!(workers.len(), 1, "one local worker: {workers:?}");
        let killed = std::process::Command::new("kill").args(["-9", &workers[0].to_string()]).status().unwrap();
        assert!(killed.success());
    });
}

#[test]
fn a_killed_server_restarts_and_the_run_resumes_with_identical_records() {
    crash_and_compare(TestServer::kill_and_restart);
}
