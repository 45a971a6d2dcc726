//! The decode cache: one file per (source, split, image size) holding the decoded split, so
//! that a dataset is decoded once and afterwards read in one go.
//!
//! File layout, integers little-endian:
//!
//! | bytes | what |
//! | --- | --- |
//! | 8 | magic `FLDCACHE` |
//! | 4 | version, `u32` (1) |
//! | 32 | fingerprint: SHA-256, see below |
//! | 8 + 4 + 4 + 4 | count `u64`, height, width, channels `u32` |
//! | 4 × count | labels, `u32` |
//! | 32 × count | keys, lowercase hex ASCII |
//! | 4, then per entry 4 + n + 4 + m | skipped files: count `u32`; path and reason as length `u32` + UTF-8 |
//! | count × height × width × channels | pixels |
//! | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! The fingerprint is SHA-256 over the version, the format, the source's absolute path (or
//! synthetic spec), the options (val fraction, seed, bad-image policy), the split, the image
//! size, and for every file the source is read from ([`crate::Source`]'s data files: images,
//! lists, split file, IDX or npz files) its path, size and modification time. A cache file
//! whose fingerprint differs, or that is truncated or corrupt (length or CRC), is rebuilt.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::source::{Loaded, Source, identity_path, load};
use crate::{DatasetError, ImageSet, Split};

const MAGIC: &[u8; 8] = b"FLDCACHE";
const VERSION: u32 = 1;
const KEY_LEN: usize = 32;

/// The options and location that make a source what it is, as text.
fn identity(source: &Source) -> String {
    let options = &source.options;
    let mut identity = format!(
        "format={}\npath={}\nval_fraction={}\nseed={}\nbad_images={}\n",
        source.format,
        identity_path(source),
        options.val_fraction,
        options.seed,
        options.bad_images.as_str()
    );
    // Only when set, so that the cache files of ungrouped sources keep their names.
    if let Some(pattern) = &options.group_pattern {
        identity.push_str(&format!("group_pattern={pattern}\n"));
    }
    identity
}

fn size_label(image_size: Option<u32>) -> String {
    image_size.map_or("native".into(), |size| size.to_string())
}

/// Where [`load_cached`] keeps `split` of `source` at `image_size`:
/// `cache_dir/{format}-{first 16 hex digits of SHA-256 of the source's identity}-{split}-{size or "native"}.cache`.
pub fn cache_path(source: &Source, split: Split, image_size: Option<u32>, cache_dir: &Path) -> PathBuf {
    let digest = Sha256::digest(identity(source).as_bytes());
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    cache_dir.join(format!("{}-{id}-{split}-{}.cache", source.format, size_label(image_size)))
}

fn fingerprint(source: &Source, split: Split, image_size: Option<u32>) -> Result<[u8; 32], DatasetError> {
    let mut hasher = Sha256::new();
    hasher.update(VERSION.to_le_bytes());
    hasher.update(identity(source).as_bytes());
    hasher.update(format!("split={split}\nsize={}\n", size_label(image_size)).as_bytes());
    for file in source.files()? {
        // Only looked at here (their contents are read by `load`, confined there), but a
        // file that now leads out of the roots must not keep its cached pixels alive.
        source.roots.check_path(&file)?;
        let meta = std::fs::metadata(&file).map_err(|source| DatasetError::Io { path: file.clone(), source })?;
        // A file system without modification times fingerprints by size alone.
        let modified = meta.modified().ok().and_then(|time| time.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(meta.len().to_le_bytes());
        hasher.update(modified.as_secs().to_le_bytes());
        hasher.update(modified.subsec_nanos().to_le_bytes());
    }
    Ok(hasher.finalize().into())
}

/// [`load`], through a cache file under `cache_dir` (see [`cache_path`]): read when its
/// fingerprint matches the source as it is now (`from_cache` is then true), else decoded and
/// written (to a temporary file, renamed into place, so readers never see half a file).
pub fn load_cached(source: &Source, split: Split, image_size: Option<u32>, cache_dir: &Path) -> Result<Loaded, DatasetError> {
    let fingerprint = fingerprint(source, split, image_size)?;
    let path = cache_path(source, split, image_size, cache_dir);
    if let Some(loaded) = std::fs::read(&path).ok().and_then(|bytes| parse(bytes, &fingerprint)) {
        return Ok(loaded);
    }
    let loaded = load(source, split, image_size)?;
    std::fs::create_dir_all(cache_dir).map_err(|source| DatasetError::Write { path: cache_dir.to_owned(), source })?;
    write_atomically(&path, &fingerprint, &loaded)?;
    Ok(loaded)
}

fn write_atomically(path: &Path, fingerprint: &[u8; 32], loaded: &Loaded) -> Result<(), DatasetError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}-{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let written = write(&temporary, fingerprint, loaded).and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        DatasetError::Write { path: path.to_owned(), source }
    })
}

/// A writer that keeps the CRC-32 of what went through it.
struct Checksummed<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Checksummed<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.inner.write_all(bytes)
    }
    fn put_u32(&mut self, value: u32) -> std::io::Result<()> {
        self.put(&value.to_le_bytes())
    }
    fn put_text(&mut self, text: &str) -> std::io::Result<()> {
        self.put_u32(text.len() as u32)?;
        self.put(text.as_bytes())
    }
}

fn write(path: &Path, fingerprint: &[u8; 32], loaded: &Loaded) -> std::io::Result<()> {
    let images = &loaded.images;
    let mut out = Checksummed { inner: BufWriter::new(File::create(path)?), crc: crc32fast::Hasher::new() };
    out.put(MAGIC)?;
    out.put_u32(VERSION)?;
    out.put(fingerprint)?;
    out.put(&(images.len() as u64).to_le_bytes())?;
    for dim in [images.height, images.width, images.channels] {
        out.put_u32(dim as u32)?;
    }
    for &label in &images.labels {
        out.put_u32(label)?;
    }
    for key in &images.keys {
        if key.len() != KEY_LEN {
            return Err(std::io::Error::other(format!("sample key {key:?} is not {KEY_LEN} characters")));
        }
        out.put(key.as_bytes())?;
    }
    out.put_u32(loaded.skipped.len() as u32)?;
    for (skipped, reason) in &loaded.skipped {
        out.put_text(&skipped.to_string_lossy())?;
        out.put_text(reason)?;
    }
    out.put(&images.pixels)?;
    let crc = out.crc.finalize();
    out.inner.write_all(&crc.to_le_bytes())?;
    out.inner.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Reads fixed-size fields off the front of a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(slice)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// The split in a cache file's bytes, or `None` when the file is stale, truncated or corrupt.
fn parse(mut bytes: Vec<u8>, fingerprint: &[u8; 32]) -> Option<Loaded> {
    let body_len = bytes.len().checked_sub(4)?;
    let stored_crc = u32::from_le_bytes(bytes[body_len..].try_into().ok()?);
    let mut reader = Reader { bytes: &bytes[..body_len], at: 0 };
    if reader.take(8)? != MAGIC || reader.u32()? != VERSION || reader.take(32)? != fingerprint {
        return None;
    }
    let count = usize::try_from(reader.u64()?).ok()?;
    let (height, width, channels) = (reader.u32()? as usize, reader.u32()? as usize, reader.u32()? as usize);
    let pixel_len = count.checked_mul(height)?.checked_mul(width)?.checked_mul(channels)?;
    // Checked before anything is allocated from the counts, and before the CRC is computed.
    if body_len.checked_sub(reader.at)? < count.checked_mul(4 + KEY_LEN)?.checked_add(4)?.checked_add(pixel_len)? {
        return None;
    }
    if crc32fast::hash(&bytes[..body_len]) != stored_crc {
        return None;
    }
    let labels: Vec<u32> = reader.take(4 * count)?.chunks_exact(4).map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]])).collect();
    let keys_bytes = reader.take(KEY_LEN * count)?;
    let keys = keys_bytes.chunks_exact(KEY_LEN).map(|key| String::from_utf8(key.to_vec()).ok()).collect::<Option<Vec<_>>>()?;
    let skipped_count = reader.u32()? as usize;
    let mut skipped = Vec::new();
    for _ in 0..skipped_count {
        skipped.push((PathBuf::from(reader.text()?), reader.text()?));
    }
    let pixel_start = reader.at;
    if body_len - pixel_start != pixel_len {
        return None;
    }
    // The pixels are the file's tail: keep the buffer rather than copy them out of it.
    bytes.truncate(body_len);
    bytes.drain(..pixel_start);
    let images = ImageSet { pixels: bytes, labels, keys, height, width, channels };
    Some(Loaded { images, skipped, from_cache: true })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::testing::write_image;
    use crate::{BadImages, Format, Options, SyntheticSpec};

    fn folder_dataset(root: &Path) {
        for (i, class) in ["a", "a", "b", "b"].iter().enumerate() {
            write_image(&root.join(format!("train/{class}/{i}.png")), 8 + i as u32, 8, true, i as u8);
        }
        write_image(&root.join("val/a/v.jpg"), 9, 9, true, 7);
    }

    #[test]
    fn second_load_reads_the_cache_and_changes_rebuild_it() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        folder_dataset(data.path());
        let source = Source::new(Format::ImageFolder, data.path());

        let first = load_cached(&source, Split::Train, Some(6), cache.path()).unwrap();
        assert!(!first.from_cache);
        let second = load_cached(&source, Split::Train, Some(6), cache.path()).unwrap();
        assert!(second.from_cache);
        assert_eq!(second.images, first.images);
        assert_eq!(second.skipped, first.skipped);
        assert!(!load_cached(&source, Split::Val, Some(6), cache.path()).unwrap().from_cache, "own file per split");
        assert!(!load_cached(&source, Split::Train, Some(4), cache.path()).unwrap().from_cache, "own file per size");

        // Touching a file (a new modification time, same bytes) rebuilds.
        let file = std::fs::File::options().write(true).open(data.path().join("train/a/0.png")).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(60)).unwrap();
        let touched = load_cached(&source, Split::Train, Some(6), cache.path()).unwrap();
        assert!(!touched.from_cache);
        assert_eq!(touched.images, first.images);
        assert!(load_cached(&source, Split::Train, Some(6), cache.path()).unwrap().from_cache);

        // New content rebuilds and is what loads.
        write_image(&data.path().join("train/b/3.png"), 8, 8, true, 99);
        let changed = load_cached(&source, Split::Train, Some(6), cache.path()).unwrap();
        assert!(!changed.from_cache);
        assert_ne!(changed.images.keys[3], first.images.keys[3]);
        assert_eq!(changed.images, load(&source, Split::Train, Some(6)).unwrap().images);
    }

    #[test]
    fn truncated_or_corrupt_cache_files_are_rebuilt() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        folder_dataset(data.path());
        let source = Source::new(Format::ImageFolder, data.path());
        let fresh = load_cached(&source, Split::Train, Some(5), cache.path()).unwrap();
        let path = cache_path(&source, Split::Train, Some(5), cache.path());
        let bytes = std::fs::read(&path).unwrap();

        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let rebuilt = load_cached(&source, Split::Train, Some(5), cache.path()).unwrap();
        assert!(!rebuilt.from_cache);
        assert_eq!(rebuilt.images, fresh.images);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "rewritten whole");

        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        assert!(!load_cached(&source, Split::Train, Some(5), cache.path()).unwrap().from_cache);

        std::fs::write(&path, b"").unwrap();
        assert!(!load_cached(&source, Split::Train, Some(5), cache.path()).unwrap().from_cache);
        assert!(load_cached(&source, Split::Train, Some(5), cache.path()).unwrap().from_cache);
        let leftovers = std::fs::read_dir(cache.path()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"));
        assert_eq!(leftovers.count(), 0);
    }

    #[test]
    fn options_and_skipped_files_are_part_of_the_cache() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        folder_dataset(data.path());
        std::fs::write(data.path().join("train/b/broken.png"), b"garbage").unwrap();
        let skipping = Source::new(Format::ImageFolder, data.path()).with_options(Options { bad_images: BadImages::Skip, ..Options::default() });
        let failing = Source::new(Format::ImageFolder, data.path());
        assert_ne!(cache_path(&skipping, Split::Train, None, cache.path()), cache_path(&failing, Split::Train, None, cache.path()));
        assert!(load_cached(&failing, Split::Train, Some(4), cache.path()).is_err());
        let first = load_cached(&skipping, Split::Train, Some(4), cache.path()).unwrap();
        let cached = load_cached(&skipping, Split::Train, Some(4), cache.path()).unwrap();
        assert!(cached.from_cache);
        assert_eq!(cached.skipped.len(), 1);
        assert_eq!(cached.skipped, first.skipped);
    }

    #[test]
    fn synthetic_sources_cache_by_their_spec() {
        let cache = tempfile::tempdir().unwrap();
        let spec = SyntheticSpec { classes: 2, train_per_class: 3, val_per_class: 1, size: 6, channels: 3, seed: 1 };
        let source = Source::synthetic(&spec);
        let first = load_cached(&source, Split::Train, None, cache.path()).unwrap();
        let second = load_cached(&source, Split::Train, None, cache.path()).unwrap();
        assert!(!first.from_cache && second.from_cache);
        assert_eq!(second.images, crate::generate(&spec, Split::Train).unwrap());
        let other = Source::synthetic(&SyntheticSpec { seed: 2, ..spec });
        assert!(!load_cached(&other, Split::Train, None, cache.path()).unwrap().from_cache);
    }
}
