//! The SQLite database: WAL mode, foreign keys on, migrations applied at start.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Opens the database and brings its schema up to this release's (issue 23, item 5):
/// - a database written by a newer release (a migration this binary does not know) is refused
///   before anything is written, with what to do;
/// - before an existing database is migrated, a copy of it is made beside it
///   (`forgetlab.db.before-upgrade-FROM-TO`, with `VACUUM INTO`), and if any pending migration
///   fails the database is put back from that copy: it is never left half-migrated (sqlx runs
///   each migration in its own transaction, so without the copy a failure in the second of two
///   would keep the first).
pub async fn connect(path: &Path) -> anyhow::Result<SqlitePool> {
    let migrator = sqlx::migrate!("../migrations");
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let applied = if path.exists() { applied_migrations(path).await? } else { Vec::new() };
    let newest = applied.iter().copied().max();
    if let Some(newest) = newest.filter(|&v| v > known) {
        anyhow::bail!(
            "{} was written by a newer forgetlab: its schema is at migration {newest}, and this forgetlab {} knows migrations up to {known}. \
             Run the release that wrote it (or a newer one), or restore a backup made by this release (`forgetlab admin restore PATH`); nothing was changed",
            path.display(),
            env!("CARGO_PKG_VERSION")
        );
    }
    let pool = open(path).await?;
    let pending: Vec<i64> = migrator.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect();
    let Some(from) = newest.filter(|_| !pending.is_empty()) else {
        migrator.run(&pool).await.context("applying database migrations")?;
        return Ok(pool);
    };
    let copy = path.with_file_name(format!("forgetlab.db.before-upgrade-{from}-{known}"));
    let _ = std::fs::remove_file(&copy);
    sqlx::query("VACUUM INTO ?")
        .bind(copy.display().to_string())
        .execute(&pool)
        .await
        .with_context(|| format!("copying the database to {} before migrating it (is the disk full?)", copy.display()))?;
    tracing::info!("upgrading the database from migration {from} to {known} (migrations {pending:?}); its copy from before is {}", copy.display());
    match migrator.run(&pool).await {
        Ok(()) => Ok(pool),
        Err(error) => {
            pool.close().await;
            let put_back = put_back(path, &copy);
            anyhow::bail!(
                "applying database migrations {pending:?} to {} failed: {error}. {}",
                path.display(),
                match put_back {
                    Ok(()) => format!("The database was put back as it was before (migration {from}); its copy is also kept as {}", copy.display()),
                    Err(e) => format!("Putting the database back failed too ({e}): copy {} over it by hand before starting again", copy.display()),
                }
            )
        }
    }
}

/// Versions of the migrations applied to the database at `path`, read on a read-only
/// connection (nothing is written to a database that is then refused); none for a new one.
async fn applied_migrations(path: &Path) -> anyhow::Result<Vec<i64>> {
    use sqlx::Connection;
    let options = SqliteConnectOptions::new().filename(path).read_only(true).busy_timeout(Duration::from_secs(10));
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await.with_context(|| format!("opening the database {}", path.display()))?;
    let table: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'").fetch_optional(&mut connection).await?;
    let versions = match table {
        Some(_) => sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&mut connection).await?,
        None => Vec::new(),
    };
    connection.close().await?;
    Ok(versions)
}

/// Replaces the (closed) database at `path` with `copy`, removing its WAL files first.
fn put_back(path: &Path, copy: &Path) -> std::io::Result<()> {
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(side) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let staged = path.with_extension("db.restoring");
    std::fs::copy(copy, &staged)?;
    std::fs::rename(staged, path)
}

async fn open(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await.with_context(|| format!("opening the database {}", path.display()))?;
    Ok(pool)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Maps a database error to a 500 without leaking SQL to the client; logs the detail.
pub fn internal(error: impl std::fmt::Display) -> protocol::Failure {
    tracing::error!("internal error: {error}");
    protocol::Failure::internal("internal error; the server log has the details")
}

/// After a write of a long background job (the end-of-run analysis) that began at `began`:
/// waits as long as the write held SQLite's single writer lock (1 to 50 ms), so that other
/// writers, whose busy handler polls, get the lock between the job's transactions instead of
/// being starved by back-to-back ones.
pub async fn make_way(began: std::time::Instant) {
    tokio::time::sleep(began.elapsed().clamp(std::time::Duration::from_millis(1), std::time::Duration::from_millis(50))).await;
}
