//! Running it as a lab's server (issue 23), through the real binary:
//! - item 4: backups while the site serves and a worker uploads epochs, restores that refuse a
//!   live data directory, and scheduled backups that keep the newest few;
//! - item 5: a database written by the previous release (a committed fixture) opens and reads
//!   the same; one from a newer release is refused; a failed migration leaves it as it was;
//! - item 6: health and metrics;
//! - item 7: a nearly full data volume refuses launches and uploads with a clear answer, and
//!   the checkpoints of runs that failed long ago are removed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, ADMIN_USER, TestServer, WORKER_TOKEN, launch, page, require_fashion_mnist, sign_in, wait_for_run};
use serde_json::{Value, json};

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
    let run = launch(
        &server,
        json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 12, "warmup_epochs": 0, "train_subset": 512, "val_subset": 64, "device": "cpu"}),
    );
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
    let second = Command::new(env!("CARGO_BIN_EXE_forgetlab"))
        .env("FORGETLAB_DATA_DIR", server.data_dir.path())
        .env("FORGETLAB_ADDR", "127.0.0.1:0")
        .env("FORGETLAB_WORKERS", "0")
        .output()
        .unwrap();
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
        assert_eq!(
            reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(format!("{}{path}", server.url))
                .send()
                .unwrap()
                .status(),
            303,
            "{path} signed out"
        );
    }
    let health: Value = server.client().get(format!("{}/healthz", server.url)).send().unwrap().json().unwrap();
    assert_eq!((health["status"].as_str(), health["database"].as_str(), health["jobs"]["queued"].as_i64()), (Some("ok"), Some("ok"), Some(1)), "{health}");
    let response = server.client().get(format!("{}/metrics", server.url)).send().unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().unwrap();
    for line in [
        "forgetlab_jobs{status=\"queued\"} 1",
        "forgetlab_jobs{status=\"running\"} 0",
        "forgetlab_epochs_stored 0",
        "# TYPE forgetlab_http_request_duration_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line || l.starts_with(line)), "{line} missing:\n{text}");
    }
    let count: f64 = text.lines().find_map(|l| l.strip_prefix("forgetlab_http_request_duration_seconds_count ")).unwrap().parse().unwrap();
    let inf: f64 = text.lines().find_map(|l| l.strip_prefix("forgetlab_http_request_duration_seconds_bucket{le=\"+Inf\"} ")).unwrap().parse().unwrap();
    assert!(count >= 5.0 && inf == count, "every request so far is counted: {count}, +Inf {inf}");
}

/// The fixture: a database written by release 0.1.0 (`scripts/make-upgrade-fixture`), and what
/// that release answered.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/upgrade-v0.1.0");

fn fixture_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(format!("{FIXTURE}/forgetlab.db"), dir.path().join("forgetlab.db")).unwrap();
    dir
}

/// Where `new` does not answer what `old` did: a field the old release sent that is gone or
/// has another value (a newer release may add fields: the API's contract is additive).
fn differences(old: &Value, new: &Value, at: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in o {
                match n.get(k) {
                    Some(w) => differences(v, w, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k} is gone")),
                }
            }
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            for (i, (v, w)) in o.iter().zip(n).enumerate() {
                differences(v, w, &format!("{at}[{i}]"), out);
            }
        }
        _ if old == new => {}
        _ => out.push(format!("{at}: was {old}, now {new}")),
    }
}

/// Answers that changed on purpose since 0.1.0, each with its CHANGELOG entry: every one must
/// still differ (so the list stays true), and nothing else may.
const CHANGED_SINCE_FIXTURE: &[(&str, &str)] = &[
    ("/studies/1.report.arms[0].accuracy_vs_random:", "0.2.0, Changed: the full arm is not paired with a random arm at a smaller budget"),
    ("/studies/1.report.arms[0].macro_f1_vs_random:", "0.2.0, Changed: the same, for macro-F1"),
    ("/studies/1.report.findings:", "0.2.0, Added: the all-pairs cross-architecture Jaccard as a finding of its own"),
];

#[test]
fn a_database_of_the_previous_release_opens_and_reads_the_same() {
    let server = TestServer::start_in(fixture_data_dir(), 0, &[]);
    let index: Value = serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/expected/index.json")).unwrap()).unwrap();
    let client = server.client();
    let (mut checked, mut changed) = (0, Vec::new());
    for entry in index.as_array().unwrap() {
        let (path, file) = (entry["path"].as_str().unwrap(), entry["file"].as_str().unwrap());
        let old = std::fs::read(format!("{FIXTURE}/expected/{file}")).unwrap();
        let response = client.get(server.api(path)).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let new = response.bytes().unwrap();
        if file.ends_with(".csv") {
            assert!(old == new.as_ref(), "{path}: the export differs from what 0.1.0 wrote");
        } else {
            let (old, new): (Value, Value) = (serde_json::from_slice(&old).unwrap(), serde_json::from_slice(&new).unwrap());
            differences(&old, &new, path, &mut changed);
        }
        checked += 1;
    }
    assert!(checked >= 15, "the fixture lists {checked} answers");
    let expected = |d: &String| CHANGED_SINCE_FIXTURE.iter().any(|(at, _)| d.starts_with(at));
    let unexpected: Vec<&String> = changed.iter().filter(|d| !expected(d)).collect();
    assert!(unexpected.is_empty(), "answers that differ from what 0.1.0 served:\n{unexpected:#?}");
    for (at, why) in CHANGED_SINCE_FIXTURE {
        assert!(changed.iter().any(|d| d.starts_with(at)), "{at} ({why}) reads as 0.1.0 did: drop it from the list");
    }
    // The old release's account still signs in, and its study's page renders.
    let (cookie, ..) = sign_in(&server, ADMIN_USER, ADMIN_PASSWORD, false);
    let (status, _, html) = page(&server, &cookie, "/studies/1");
    assert_eq!(status, 200);
    assert!(html.contains("upgrade fixture"), "the study page of the fixture's study");
}

/// Starts the binary on `data_dir` and waits for it to exit: its status and standard error;
/// `None` when it was still running after 60 s (it served).
fn start_expecting_refusal(data_dir: &std::path::Path) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_forgetlab"))
        .env("FORGETLAB_ADDR", "127.0.0.1:0")
        .env("FORGETLAB_DATA_DIR", data_dir)
        .env("FORGETLAB_WORKERS", "0")
        .env("FORGETLAB_ADMIN_USER", ADMIN_USER)
        .env("FORGETLAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

fn sha256_of(path: &std::path::Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

/// What a database's migrations table says: the versions applied, in order.
fn applied(database: &std::path::Path) -> Vec<i64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", database.display())).await.unwrap();
        let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&pool).await.unwrap();
        pool.close().await;
        versions
    })
}

#[test]
fn a_database_of_a_newer_release_is_refused_and_left_as_it_was() {
    let dir = fixture_data_dir();
    let database = dir.path().join("forgetlab.db");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display())).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9001, 'from the future', 1, x'00', 0)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let before = sha256_of(&database);
    let (status, stderr) = start_expecting_refusal(dir.path());
    let status = status.expect("the server started on a database of a newer release");
    assert!(!status.success());
    assert!(stderr.contains("written by a newer forgetlab") && stderr.contains("migration 9001"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(sha256_of(&database), before, "the refused database was written to");
}

/// The newest migration this binary applies.
fn latest_migration() -> i64 {
    sqlx::migrate!("../migrations").migrations.iter().map(|m| m.version).max().expect("migrations")
}

/// A database at migration 15 (of a release before 0.1.0): made with this binary's own
/// migrations, the first 15 of them.
fn database_at_migration_15(database: &std::path::Path, break_the_last: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(database).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let mut migrator = sqlx::migrate!("../migrations");
        migrator.migrations = std::borrow::Cow::Owned(migrator.migrations.iter().filter(|m| m.version <= 15).cloned().collect());
        migrator.run(&pool).await.unwrap();
        // Accounts made before the upgrade: the tests' administrator (its password hash from
        // the fixture, made by 0.1.0) and a viewer.
        let fixture = sqlx::SqlitePool::connect(&format!("sqlite://{FIXTURE}/forgetlab.db?mode=ro")).await.unwrap();
        let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE name = ?").bind(ADMIN_USER).fetch_one(&fixture).await.unwrap();
        fixture.close().await;
        sqlx::query("INSERT INTO users (name, password_hash, role) VALUES (?, ?, 'admin'), ('old', 'x', 'viewer')")
            .bind(ADMIN_USER)
            .bind(hash)
            .execute(&pool)
            .await
            .unwrap();
        if break_the_last {
            // Migration 17 adds this column: with it there already, 16 applies and 17 fails.
            sqlx::query("ALTER TABLE sessions ADD COLUMN last_seen_at TEXT").execute(&pool).await.unwrap();
        }
        pool.close().await;
    });
}

#[test]
fn a_failed_upgrade_puts_the_database_back_and_a_good_one_keeps_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("forgetlab.db");
    database_at_migration_15(&database, true);
    let (status, stderr) = start_expecting_refusal(dir.path());
    assert!(!status.expect("the server started on a database whose migration failed").success());
    let latest = latest_migration();
    let pending: Vec<String> = (16..=latest).map(|v| v.to_string()).collect();
    assert!(
        stderr.contains(&format!("applying database migrations [{}]", pending.join(", "))) && stderr.contains("put back as it was before (migration 15)"),
        "{stderr}"
    );
    assert_eq!(applied(&database), (1..=15).collect::<Vec<i64>>(), "migration 16 stayed applied: half-migrated");

    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("forgetlab.db");
    database_at_migration_15(&database, false);
    let server = TestServer::start_in(dir, 0, &[]);
    assert_eq!(applied(&server.database()), (1..=latest).collect::<Vec<i64>>());
    let copy = server.data_dir.path().join(format!("forgetlab.db.before-upgrade-15-{latest}"));
    assert_eq!(applied(&copy), (1..=15).collect::<Vec<i64>>(), "the copy from before the upgrade");
    // The administrator from before the upgrade signed in (the server's token above); the viewer is there too.
    let users: Value = server.client().get(server.api("/users")).send().unwrap().json().unwrap();
    assert!(users.as_array().unwrap().iter().any(|u| u["name"] == "old"), "the account from before the upgrade: {users}");
}

/// Issue 23, item 7: a data volume under its reserve refuses what would fill it, says so on the
/// jobs page, in /healthz and /metrics; a worker whose records are refused fails its job with
/// the reason; once space is back the run retries; old failed runs' checkpoints go.
#[test]
fn a_nearly_full_disk_refuses_uploads_and_launches_and_old_checkpoints_go() {
    let mut server = TestServer::start(0);
    let shapes = json!({"name": "shapes", "format": "synthetic", "path": "classes=3,train_per_class=20,val_per_class=5,size=8,channels=1,seed=1"});
    assert_eq!(server.client().post(server.api("/datasets")).json(&shapes).send().unwrap().status(), 201);
    let spec = json!({"dataset": "shapes", "arch": "small_cnn", "epochs": 2, "batch_size": 16, "lr": 0.05, "device": "cpu"});
    let queued = launch(&server, spec.clone());

    // A reserve larger than what the volume has free: the volume counts as full.
    let (free, _) = server::disk::space(server.data_dir.path()).unwrap();
    let reserve = (free / (1024 * 1024) + 100_000).to_string();
    server.restart_with(1, &[("FORGETLAB_DISK_MIN_FREE_MB", &reserve), ("FORGETLAB_DISK_WARN_MB", &reserve)]);
    let client = server.client();
    let refused = client.post(server.api("/runs")).json(&spec).send().unwrap();
    assert_eq!(refused.status(), 507);
    let message = refused.json::<Value>().unwrap()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("FORGETLAB_DISK_MIN_FREE_MB") && message.contains("free"), "{message}");
    let mut weights = 2u64.to_le_bytes().to_vec();
    weights.extend(b"{}");
    assert_eq!(client.put(server.api("/weights/w.safetensors")).body(weights).send().unwrap().status(), 507);
    assert!(!server.data_dir.path().join("datasets/weights/w.safetensors").exists());
    let health: Value = client.get(format!("{}/healthz", server.url)).send().unwrap().json().unwrap();
    assert_eq!((health["status"].as_str(), health["disk"]["level"].as_str()), (Some("degraded"), Some("full")), "{health}");
    let metrics = client.get(format!("{}/metrics", server.url)).send().unwrap().text().unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("forgetlab_disk_free_bytes ")), "{metrics}");
    let (cookie, ..) = sign_in(&server, ADMIN_USER, ADMIN_PASSWORD, false);
    let html = page(&server, &cookie, "/jobs").2;
    assert!(html.contains("class=\"disk-warning\"") && html.contains("new runs and uploads are refused"), "the jobs page does not warn");

    // The queued run's worker leases it; the server refuses its records; the job fails with why.
    let failed = wait_for_run(&server, queued, Duration::from_secs(120));
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap_or_default().contains("FORGETLAB_DISK_MIN_FREE_MB"), "{failed}");
    let lease = reqwest::blocking::Client::new().post(server.api("/worker/lease")).bearer_auth(WORKER_TOKEN).json(&json!({"worker": "probe"})).send().unwrap();
    assert_eq!(lease.status(), 204, "nothing left queued");

    // Checkpoints: the failed run's, made 8 days old, go at the next start; others stay.
    for run in [queued, 999_999] {
        let folder = server.data_dir.path().join(format!("checkpoints/run-{run}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("epoch-1.ot"), b"weights").unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", server.database().display())).await.unwrap();
        sqlx::query("UPDATE jobs SET finished_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-8 days') WHERE run_id = ?")
            .bind(queued)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    server.restart_with(1, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.data_dir.path().join(format!("checkpoints/run-{queued}")).exists() {
        assert!(Instant::now() < deadline, "the old failed run's checkpoints are still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.data_dir.path().join("checkpoints/run-999999").exists(), "a folder of no failed run was removed");
    // Space back: the run retries and trains to the end.
    assert_eq!(server.client().post(server.api(&format!("/runs/{queued}/retry"))).send().unwrap().status(), 200);
    assert_eq!(wait_for_run(&server, queued, Duration::from_secs(180))["status"], "succeeded");
    let health: Value = server.client().get(format!("{}/healthz", server.url)).send().unwrap().json().unwrap();
    assert_eq!(health["disk"]["level"], "ok", "{health}");
}
