//! Data roots: the folders a [`crate::Source`] may read from, checked on every file and
//! folder a reader actually opens.
//!
//! Checking the registered folder once is not enough: a list file can name `../x.jpg`, a
//! class folder can hold a link to a file elsewhere, and the folder itself can be replaced
//! by a link after registration. So the check is made on what was opened: the file is opened
//! first (links followed, as everywhere), then the path the kernel reports for the open
//! descriptor (`/proc/self/fd/N` on Linux) must lie under a root. Between the check and the
//! reading nothing can be swapped, because both use the same descriptor; folders are listed
//! through their descriptor too. Where `/proc` is missing the path is canonicalised instead,
//! which leaves a window between the check and the open.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::DatasetError;

/// Where a source may read: anywhere ([`Roots::unconfined`], the default, for the trainer,
/// the command line and tests), or only under the given folders ([`Roots::new`], as the
/// server always sets).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Roots(Option<Arc<[PathBuf]>>);

impl Roots {
    /// No confinement: every path the source names is read.
    pub fn unconfined() -> Roots {
        Roots(None)
    }

    /// Confinement to `roots`, each canonicalised now. A root that does not resolve (it does
    /// not exist) is left out; with none left nothing can be read, never everything.
    pub fn new<P: AsRef<Path>>(roots: impl IntoIterator<Item = P>) -> Roots {
        let resolved: Vec<PathBuf> = roots.into_iter().filter_map(|root| std::fs::canonicalize(root.as_ref()).ok()).collect();
        Roots(Some(resolved.into()))
    }

    pub fn is_confined(&self) -> bool {
        self.0.is_some()
    }

    /// Whether the resolved path `real` is allowed: under a root (or anywhere, unconfined).
    fn allows(&self, real: &Path) -> bool {
        match &self.0 {
            None => true,
            Some(roots) => roots.iter().any(|root| real.starts_with(root)),
        }
    }

    /// Checks the path `path` resolves to now (for files only looked at, not read: their
    /// size and time in the cache's fingerprint).
    pub(crate) fn check_path(&self, path: &Path) -> Result<(), DatasetError> {
        if !self.is_confined() {
            return Ok(());
        }
        match std::fs::canonicalize(path) {
            Ok(real) if self.allows(&real) => Ok(()),
            Ok(_) => Err(DatasetError::OutsideRoots { path: path.to_owned() }),
            Err(source) => Err(DatasetError::Io { path: path.to_owned(), source }),
        }
    }

    /// Checks that the open `handle` (of `path`) lies under a root.
    fn check_opened(&self, handle: &File, path: &Path) -> Result<(), DatasetError> {
        if !self.is_confined() {
            return Ok(());
        }
        let real = opened_path(handle, path).map_err(|source| DatasetError::Io { path: path.to_owned(), source })?;
        if self.allows(&real) { Ok(()) } else { Err(DatasetError::OutsideRoots { path: path.to_owned() }) }
    }
}

/// Where the open `handle` really is: the kernel's name for the descriptor, or (without
/// `/proc`) `path` canonicalised.
fn opened_path(handle: &File, path: &Path) -> std::io::Result<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", handle.as_raw_fd())) {
            return Ok(real);
        }
    }
    let _ = handle;
    std::fs::canonicalize(path)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_owned(), source }
}

/// Opens the regular file at `path` for reading, confined to `roots`. Every file a reader
/// reads is opened here.
pub(crate) fn open_file(path: &Path, roots: &Roots) -> Result<File, DatasetError> {
    // Looked at before opening, so that a FIFO (whose open would wait for a writer) is not
    // opened at all; checked again on the descriptor, which is what counts.
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if !meta.is_file() {
        return Err(DatasetError::Io { path: path.to_owned(), source: std::io::Error::other("not a regular file") });
    }
    let file = File::open(path).map_err(io(path))?;
    roots.check_opened(&file, path)?;
    if !file.metadata().map_err(io(path))?.is_file() {
        return Err(DatasetError::Io { path: path.to_owned(), source: std::io::Error::other("not a regular file") });
    }
    Ok(file)
}

/// The whole file at `path`, confined to `roots`, refused without reading when it is
/// larger than `max_bytes` (`what` says what the file is, for the message).
pub(crate) fn read_file(path: &Path, roots: &Roots, max_bytes: u64, what: &str) -> Result<Vec<u8>, DatasetError> {
    let file = open_file(path, roots)?;
    let len = file.metadata().map_err(io(path))?.len();
    let too_large = || DatasetError::TooLarge { path: path.to_owned(), reason: format!("{what} of more than {max_bytes} bytes") };
    if len > max_bytes {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len as usize).map_err(|_| too_large())?;
    // `take`: a file that grows while it is read still stops at the limit.
    file.take(max_bytes + 1).read_to_end(&mut bytes).map_err(io(path))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// The text file at `path` (see [`read_file`]); bytes that are not UTF-8 are replaced.
pub(crate) fn read_text(path: &Path, roots: &Roots, max_bytes: u64, what: &str) -> Result<String, DatasetError> {
    let bytes = read_file(path, roots, max_bytes, what)?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

/// One entry of a folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub name: String,
    /// A folder, or a link to one (followed: where it leads is checked when it is listed).
    pub is_dir: bool,
}

/// The entries of the folder `dir`, confined to `roots` (the folder is opened, checked, and
/// listed through the same descriptor), sorted by name.
pub(crate) fn list_dir(dir: &Path, roots: &Roots) -> Result<Vec<Entry>, DatasetError> {
    let handle = match roots.is_confined() {
        true => {
            let handle = File::open(dir).map_err(io(dir))?;
            roots.check_opened(&handle, dir)?;
            Some(handle)
        }
        false => None,
    };
    // Listed through the checked descriptor while `handle` keeps it open.
    let through = handle.as_ref().and_then(descriptor_path).unwrap_or_else(|| dir.to_owned());
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(&through).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(io(dir))?;
        let is_dir = kind.is_dir() || (kind.is_symlink() && through.join(&name).is_dir());
        entries.push(Entry { name, is_dir });
    }
    entries.sort();
    Ok(entries)
}

/// A path that opens what `handle` is open on, wherever it is now (Linux).
fn descriptor_path(handle: &File) -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let path = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
        if path.exists() {
            return Some(path);
        }
    }
    let _ = handle;
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn files_and_folders_are_checked_where_they_really_are() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("inside.txt"), "in").unwrap();
        std::fs::write(outside.path().join("secret.txt"), "out").unwrap();
        symlink(outside.path().join("secret.txt"), root.path().join("link.txt")).unwrap();
        symlink(outside.path(), root.path().join("away")).unwrap();
        let roots = Roots::new([root.path()]);

        assert_eq!(read_text(&root.path().join("inside.txt"), &roots, 10, "a test file").unwrap(), "in");
        let err = read_text(&root.path().join("link.txt"), &roots, 10, "a test file").unwrap_err();
        assert!(matches!(err, DatasetError::OutsideRoots { .. }), "{err}");
        assert!(err.to_string().contains("link.txt leads outside the data roots"), "{err}");
        let err = read_text(&root.path().join("away/secret.txt"), &roots, 10, "a test file").unwrap_err();
        assert!(matches!(err, DatasetError::OutsideRoots { .. }), "{err}");
        let err = list_dir(&root.path().join("away"), &roots).unwrap_err();
        assert!(matches!(err, DatasetError::OutsideRoots { .. }), "{err}");
        let names: Vec<(String, bool)> = list_dir(root.path(), &roots).unwrap().into_iter().map(|e| (e.name, e.is_dir)).collect();
        assert_eq!(names, [("away".into(), true), ("inside.txt".into(), false), ("link.txt".into(), false)]);

        // Unconfined, everything reads; with no root that resolves, nothing does.
        assert_eq!(read_text(&root.path().join("link.txt"), &Roots::unconfined(), 10, "a test file").unwrap(), "out");
        let nowhere = Roots::new([root.path().join("missing")]);
        assert!(matches!(read_text(&root.path().join("inside.txt"), &nowhere, 10, "x").unwrap_err(), DatasetError::OutsideRoots { .. }));
    }

    #[test]
    fn reads_are_bounded_and_only_of_regular_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("big.txt"), "0123456789").unwrap();
        let err = read_file(&root.path().join("big.txt"), &Roots::unconfined(), 9, "a list").unwrap_err().to_string();
        assert!(err.contains("big.txt is too large: a list of more than 9 bytes"), "{err}");
        let err = read_file(root.path(), &Roots::unconfined(), 9, "a list").unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
