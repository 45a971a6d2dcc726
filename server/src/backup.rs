//! Backups a lab can rely on (issue 23, item 4): `forgetlab admin backup PATH` copies the
//! database consistently while the site serves and workers upload (SQLite's `VACUUM INTO`
//! reads one snapshot), with the uploaded weights and a manifest; `forgetlab admin restore
//! PATH` puts a backup in place, refusing while a server runs on that data directory (the
//! server holds a lock on it), and keeps the database it replaces. With
//! `FORGETLAB_BACKUP_DIR` set the server also makes one every `FORGETLAB_BACKUP_HOURS` and
//! keeps the newest `FORGETLAB_BACKUP_KEEP`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sqlx::SqlitePool;

/// The file a running server holds an exclusive lock on, in its data directory.
pub const LOCK_FILE: &str = "forgetlab.lock";
/// A backup folder's manifest.
pub const MANIFEST: &str = "backup.json";
const DATABASE: &str = "forgetlab.db";

/// An exclusive hold on a data directory: one server (or one restore) at a time.
pub struct DataLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock, or says who holds it.
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<DataLock> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; released when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("a forgetlab server is running on {} (it holds {}); stop it first", data_dir.display(), path.display());
    }
    Ok(DataLock { _file: file })
}

/// What a backup holds, as its manifest says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub created_at: String,
    /// The newest migration applied to the copied database.
    pub schema_version: i64,
    pub runs: i64,
    pub epochs: i64,
    pub weights: Vec<String>,
}

/// Copies the database of `pool` and the weights under `data_dir` into the new folder `into`.
pub async fn backup(pool: &SqlitePool, data_dir: &Path, into: &Path) -> anyhow::Result<Manifest> {
    if into.exists() && std::fs::read_dir(into).map_or(true, |mut d| d.next().is_some()) {
        bail!("{} exists and is not empty; give a new folder for the backup", into.display());
    }
    std::fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
    let copy = into.join(DATABASE);
    let text = copy.to_str().context("the backup path must be valid UTF-8")?;
    // One read transaction: every row committed before it began, nothing half-written.
    sqlx::query(&format!("VACUUM INTO '{}'", text.replace('\'', "''"))).execute(pool).await.context("copying the database (VACUUM INTO)")?;
    let mut weights = Vec::new();
    let source = crate::routes::weights_dir(data_dir);
    if let Ok(entries) = std::fs::read_dir(&source) {
        std::fs::create_dir_all(into.join("weights"))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".safetensors") && !name.starts_with('.') {
                std::fs::copy(entry.path(), into.join("weights").join(&name)).with_context(|| format!("copying weights {name}"))?;
                weights.push(name);
            }
        }
    }
    weights.sort();
    let manifest = inspect(&copy, weights).await?;
    std::fs::write(into.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(manifest)
}

/// Opens a copied database read-only, checks it whole (`PRAGMA integrity_check`), and counts
/// what it holds.
async fn inspect(database: &Path, weights: Vec<String>) -> anyhow::Result<Manifest> {
    let pool = SqlitePool::connect(&format!("sqlite://{}?mode=ro", database.display())).await.with_context(|| format!("opening {}", database.display()))?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&pool).await?;
    if check != "ok" {
        bail!("{} fails SQLite's integrity check: {check}", database.display());
    }
    let schema_version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = 1").fetch_one(&pool).await?;
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs").fetch_one(&pool).await?;
    let epochs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM epoch_metrics").fetch_one(&pool).await?;
    let created_at: String = sqlx::query_scalar("SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now')").fetch_one(&pool).await?;
    pool.close().await;
    Ok(Manifest { created_at, schema_version, runs, epochs, weights })
}

/// Puts the backup in `from` in place of `data_dir`'s database and weights. Refuses while a
/// server runs there; the database it replaces is kept beside it, renamed.
pub async fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<(Manifest, Option<PathBuf>)> {
    let backup = from.join(DATABASE);
    if !backup.is_file() {
        bail!("{} holds no {DATABASE}: give a folder made by `forgetlab admin backup`", from.display());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;
    let weights =
        std::fs::read_dir(from.join("weights")).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    let manifest = inspect(&backup, weights).await?;
    let target = data_dir.join(DATABASE);
    let kept = if target.exists() {
        let stamp = manifest.created_at.replace([':', '-'], "");
        let aside = data_dir.join(format!("{DATABASE}.before-restore-{stamp}"));
        std::fs::rename(&target, &aside).with_context(|| format!("moving {} aside", target.display()))?;
        for suffix in ["-wal", "-shm"] {
            let side = data_dir.join(format!("{DATABASE}{suffix}"));
            if side.exists() {
                std::fs::rename(&side, data_dir.join(format!("{DATABASE}.before-restore-{stamp}{suffix}")))?;
            }
        }
        Some(aside)
    } else {
        None
    };
    std::fs::copy(&backup, &target).with_context(|| format!("copying {} into place", backup.display()))?;
    let weights_dir = crate::routes::weights_dir(data_dir);
    std::fs::create_dir_all(&weights_dir)?;
    for name in &manifest.weights {
        let to = weights_dir.join(name);
        if !to.exists() {
            std::fs::copy(from.join("weights").join(name), &to).with_context(|| format!("restoring weights {name}"))?;
        }
    }
    Ok((manifest, kept))
}

/// One scheduled backup (the server runs it every FORGETLAB_BACKUP_HOURS): a new folder under
/// `dir`, then the oldest beyond `keep` removed (only folders this made: `forgetlab-...` with
/// a manifest).
pub async fn scheduled(pool: &SqlitePool, data_dir: &Path, dir: &Path, keep: usize) {
    let stamp: String = match sqlx::query_scalar("SELECT strftime('%Y%m%dT%H%M%SZ', 'now')").fetch_one(pool).await {
        Ok(stamp) => stamp,
        Err(error) => return tracing::error!("scheduled backup: the database did not answer: {error}"),
    };
    let into = dir.join(format!("forgetlab-{stamp}"));
    match backup(pool, data_dir, &into).await {
        Ok(m) => tracing::info!("backup {} ({} runs, {} epochs)", into.display(), m.runs, m.epochs),
        Err(error) => tracing::error!("scheduled backup into {} failed: {error:#}", into.display()),
    }
    let mut made: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("forgetlab-")) && p.join(MANIFEST).is_file())
                .collect()
        })
        .unwrap_or_default();
    made.sort();
    while made.len() > keep {
        let old = made.remove(0);
        if let Err(error) = std::fs::remove_dir_all(&old) {
            tracing::warn!("could not remove the old backup {}: {error}", old.display());
        }
    }
}
