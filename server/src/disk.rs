//! Free space on the data volume (issue 23, item 7): the server warns before the disk is full
//! and refuses what would fill it with an answer that says so, instead of letting SQLite fail
//! mid-write; and it removes the checkpoints of runs that failed long ago.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use protocol::{DiskLevel, DiskSpace, Failure};

/// The answer to an upload or launch refused for space: 507 Insufficient Storage.
pub const INSUFFICIENT_STORAGE: u16 = 507;

/// The data directory's volume and the two thresholds on its free space.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
    /// Below this, the jobs page and the log warn (`FORGETLAB_DISK_WARN_MB`).
    pub warn_bytes: u64,
    /// Below this, uploads and launches are refused (`FORGETLAB_DISK_MIN_FREE_MB`).
    pub refuse_bytes: u64,
    /// The level last logged (`DiskLevel as u8`), so a crossing is logged once.
    logged: AtomicU8,
}

/// Free and total bytes of the filesystem holding `dir`, as an unprivileged process may use
/// them (`statvfs`: `f_bavail` and `f_blocks` times `f_frsize`).
pub fn space(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs the call fills in.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = stat.f_frsize as u64;
    Ok((stat.f_bavail as u64 * unit, stat.f_blocks as u64 * unit))
}

fn megabytes(bytes: u64) -> String {
    format!("{} MB", bytes / (1024 * 1024))
}

impl Disk {
    pub fn new(dir: PathBuf, warn_mb: u64, refuse_mb: u64) -> Self {
        let mb = 1024 * 1024;
        Self { dir, warn_bytes: warn_mb.saturating_mul(mb), refuse_bytes: refuse_mb.saturating_mul(mb), logged: AtomicU8::new(0) }
    }

    /// The volume now. An unreadable volume counts as ample (and is logged): refusing every
    /// upload because `statvfs` failed would be worse than SQLite's own error.
    pub fn now(&self) -> DiskSpace {
        let (free_bytes, total_bytes) = space(&self.dir).unwrap_or_else(|error| {
            tracing::warn!("cannot read the free space of {}: {error}", self.dir.display());
            (u64::MAX, u64::MAX)
        });
        let level = if free_bytes < self.refuse_bytes {
            DiskLevel::Full
        } else if free_bytes < self.warn_bytes {
            DiskLevel::Low
        } else {
            DiskLevel::Ok
        };
        let message = match level {
            DiskLevel::Full => Some(format!(
                "The data volume ({}) has {} free, under FORGETLAB_DISK_MIN_FREE_MB ({}): new runs and uploads are refused until space is freed.",
                self.dir.display(),
                megabytes(free_bytes),
                megabytes(self.refuse_bytes)
            )),
            DiskLevel::Low => Some(format!(
                "The data volume ({}) has {} free, under FORGETLAB_DISK_WARN_MB ({}); at {} new runs and uploads will be refused.",
                self.dir.display(),
                megabytes(free_bytes),
                megabytes(self.warn_bytes),
                megabytes(self.refuse_bytes)
            )),
            DiskLevel::Ok => None,
        };
        DiskSpace { free_bytes, total_bytes, warn_bytes: self.warn_bytes, refuse_bytes: self.refuse_bytes, level, message }
    }

    /// Refuses `what` (e.g. "this upload") when it would leave less than the reserve; `bytes`
    /// is its size where known (a body's Content-Length).
    pub fn admit(&self, what: &str, bytes: u64) -> Result<(), Failure> {
        let now = self.now();
        if now.free_bytes.saturating_sub(bytes) >= self.refuse_bytes {
            return Ok(());
        }
        self.log(&now);
        Err(Failure::new(
            INSUFFICIENT_STORAGE,
            format!(
                "{what} was refused: the server's data volume has {} free and keeps {} in reserve (FORGETLAB_DISK_MIN_FREE_MB); ask the administrator to free space, then try again",
                megabytes(now.free_bytes),
                megabytes(self.refuse_bytes)
            ),
        ))
    }

    /// Logs a change of level, once per crossing.
    pub fn log(&self, now: &DiskSpace) {
        let level = now.level as u8;
        if self.logged.swap(level, Ordering::Relaxed) == level {
            return;
        }
        match &now.message {
            Some(message) if now.level == DiskLevel::Full => tracing::error!("{message}"),
            Some(message) => tracing::warn!("{message}"),
            None => tracing::info!("the data volume has {} free again", megabytes(now.free_bytes)),
        }
    }
}

/// Removes the checkpoints (`checkpoints/run-N` under `dir`) of runs that failed or were
/// cancelled more than `days` ago (`FORGETLAB_FAILED_CHECKPOINT_DAYS`); a succeeded run's
/// worker removes its own. Retrying such a run starts it from its first epoch. Returns the
/// runs whose checkpoints were removed.
pub async fn remove_old_checkpoints(pool: &sqlx::SqlitePool, dir: &Path, days: u64) -> Vec<i64> {
    let cutoff = crate::db::unix_now() - i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let runs: Vec<i64> =
        match sqlx::query_scalar("SELECT run_id FROM jobs WHERE status IN ('failed', 'cancelled') AND finished_at IS NOT NULL AND unixepoch(finished_at) < ?")
            .bind(cutoff)
            .fetch_all(pool)
            .await
        {
            Ok(runs) => runs,
            Err(error) => {
                tracing::warn!("listing old failed runs for their checkpoints: {error}");
                return Vec::new();
            }
        };
    let mut removed = Vec::new();
    for run in runs {
        let folder = protocol::worker::checkpoint_dir(dir, run);
        match tokio::fs::remove_dir_all(&folder).await {
            Ok(()) => removed.push(run),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", folder.display()),
        }
    }
    if !removed.is_empty() {
        tracing::info!("removed the checkpoints of runs {removed:?}, failed or cancelled more than {days} days ago (FORGETLAB_FAILED_CHECKPOINT_DAYS)");
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_thresholds_of_the_volume_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = space(dir.path()).unwrap();
        assert!(free > 0 && free <= total, "free {free} of {total}");
        let mb = 1024 * 1024;
        let free_mb = free / mb;
        // Thresholds around what this volume has: under both, between, above both.
        assert_eq!(Disk::new(dir.path().into(), free_mb / 4, free_mb / 8).now().level, DiskLevel::Ok);
        let low = Disk::new(dir.path().into(), free_mb + 1024, free_mb / 8).now();
        assert_eq!(low.level, DiskLevel::Low);
        assert!(low.message.unwrap().contains("FORGETLAB_DISK_WARN_MB"));
        let full = Disk::new(dir.path().into(), free_mb + 2048, free_mb + 1024);
        assert_eq!(full.now().level, DiskLevel::Full);
        let refused = full.admit("this upload", 0).unwrap_err();
        assert_eq!(refused.status, INSUFFICIENT_STORAGE);
        assert!(refused.body.message.contains("FORGETLAB_DISK_MIN_FREE_MB"), "{}", refused.body.message);
        // An upload is refused when its own size would take the volume under the reserve.
        let ample = Disk::new(dir.path().into(), 0, free_mb / 2);
        assert!(ample.admit("a small upload", mb).is_ok());
        assert!(ample.admit("a large upload", free).is_err());
    }
}
