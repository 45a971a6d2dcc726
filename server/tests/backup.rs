//! Issue 23, item 4: backups while the site serves and a worker uploads epochs, restores that
//! refuse a live data directory, and scheduled backups that keep the newest few.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{launch, require_fashion_mnist, wait_for_run, TestServer};
use serde_json::{json, Value};

fn admin(data_dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forgetlab")).arg("admin").args(args).env("FORGETLAB_DATA_DIR", data_dir).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn epochs_stored(server: &TestServer, run: i64) -> usize {
    let detail: Value = server.client().get(server.api(&format!("/runs/{run}"))).send().unwrap().json().unwrap();
    detail["epochs"].as_array().map_or(0, Vec::len)
}

/// What a database file holds: its integrity check, and the epochs stored for `run`.
fn inspect(database: &std::path::Path, run: i64) -> (String, i64) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", database.display())).await.unwrap();
        let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&pool).await.unwrap();
        let epochs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM epoch_metrics WHERE run_id = ?").bind(run).fetch_one(&pool).await.unwrap();
        pool.close().await;
        (check, epochs)
    })
}

#[test]
fn a_backup_taken_during_uploads_restores_every_acknowledged_epoch() {
    require_fashion_mnist();
    let mut server = TestServer::start(1);
    let mut weights = 2u64.to_le_bytes().to_vec();
    weights.extend(b"{}");
    assert_eq!(server.client().put(server.api("/weights/kept.safetensors")).body(weights).send().unwrap().status(), 201);
    let run = launch(&server, json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 12, "warmup_epochs": 0, "train_subset": 512, "val_subset": 64, "device": "cpu"}));
    let deadline = Instant::now() + Duration::from_secs(300);
    while epochs_stored(&server, run) < 2 {
        assert!(Instant::now() < deadline, "no 2 epochs in 300 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Acknowledged before the backup begins; the worker keeps uploading during it.
    let acknowledged = epochs_stored(&server, run);
    let folder = tempfile::tempdir().unwrap();
    let into = folder.path().join("b1");
    let (ok, said) = admin(server.data_dir.path(), &["backup", into.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(said.contains("integrity check: ok"), "{said}");
    let (check, epochs) = inspect(&into.join("forgetlab.db"), run);
    assert_eq!(check, "ok");
    assert!(epochs as usize >= acknowledged, "the backup holds {epochs} epochs, {acknowledged} were acknowledged before it");
    assert!(into.join("weights/kept.safetensors").is_file() && into.join("backup.json").is_file());
    let (ok, said) = admin(server.data_dir.path(), &["backup", into.to_str().unwrap()]);
    assert!(!ok && said.contains("not empty"), "never over an earlier backup: {said}");

    // Not over a running server's database.
    let (ok, said) = admin(server.data_dir.path(), &["restore", into.to_str().unwrap()]);
    assert!(!ok && said.contains("server is running"), "{said}");
    // A second server on the same data directory is refused too.
    let second = Command::new(env!("CARGO_BIN_EXE_forgetlab")).env("FORGETLAB_DATA_DIR", server.data_dir.path()).env("FORGETLAB_ADDR", "127.0.0.1:0").env("FORGETLAB_WORKERS", "0").output().unwrap();
    assert!(!second.status.success() && String::from_utf8_lossy(&second.stderr).contains("server is running"), "{}", String::from_utf8_lossy(&second.stderr));

    // Stopped, it restores (the replaced database kept), and the server serves the backup.
    let run_after = wait_for_run(&server, run, Duration::from_secs(600));
    assert_eq!(run_after["status"], "succeeded");
    server.stop();
    let (ok, said) = admin(server.data_dir.path(), &["restore", into.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(said.contains("kept as"), "{said}");
    assert!(std::fs::read_dir(server.data_dir.path()).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("forgetlab.db.before-restore-")));
    server.kill_and_restart();
    assert!(epochs_stored(&server, run) >= acknowledged, "the restored site has the acknowledged epochs");
}

#[test]
fn scheduled_backups_keep_the_newest() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path().display().to_string();
    // Every 2 seconds (0.000556 h), two kept.
    let server = TestServer::start_with(0, &[("FORGETLAB_BACKUP_DIR", &dir), ("FORGETLAB_BACKUP_HOURS", "0.000556"), ("FORGETLAB_BACKUP_KEEP", "2")]);
    std::thread::sleep(Duration::from_secs(9));
    let made: Vec<String> = std::fs::read_dir(folder.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(made.len(), 2, "{made:?}");
    for name in &made {
        assert!(name.starts_with("forgetlab-") && folder.path().join(name).join("forgetlab.db").is_file(), "{name}");
        let (check, _) = inspect(&folder.path().join(name).join("forgetlab.db"), 0);
        assert_eq!(check, "ok");
    }
    drop(server);
}

/// Issue 23, item 6: what monitoring reads, for administrators only.
#[test]
fn health_and_metrics_for_monitoring_are_for_administrators() {
    let server = TestServer::start(0);
    let member = server.account("mo", "member");
    let run = launch(&server, json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 4}));
    assert!(run > 0);
    for path in ["/healthz", "/metrics"] {
        assert_eq!(member.get(format!("{}{path}", server.url)).send().unwrap().status(), 403, "{path}");
        assert_eq!(reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap().get(format!("{}{path}", server.url)).send().unwrap().status(), 303, "{path} signed out");
    }
    let health: Value = server.client().get(format!("{}/healthz", server.url)).send().unwrap().json().unwrap();
    assert_eq!((health["status"].as_str(), health["database"].as_str(), health["jobs"]["queued"].as_i64()), (Some("ok"), Some("ok"), Some(1)), "{health}");
    let response = server.client().get(format!("{}/metrics", server.url)).send().unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().unwrap();
    for line in ["forgetlab_jobs{status=\"queued\"} 1", "forgetlab_jobs{status=\"running\"} 0", "forgetlab_epochs_stored 0", "# TYPE forgetlab_http_request_duration_seconds histogram"] {
        assert!(text.lines().any(|l| l == line || l.starts_with(line)), "{line} missing:\n{text}");
    }
    let count: f64 = text.lines().find_map(|l| l.strip_prefix("forgetlab_http_request_duration_seconds_count ")).unwrap().parse().unwrap();
    let inf: f64 = text.lines().find_map(|l| l.strip_prefix("forgetlab_http_request_duration_seconds_bucket{le=\"+Inf\"} ")).unwrap().parse().unwrap();
    assert!(count >= 5.0 && inf == count, "every request so far is counted: {count}, +Inf {inf}");
}
