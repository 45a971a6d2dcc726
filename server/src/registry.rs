//! Registered datasets: where they are, what they hold, and their decoded images for
//! thumbnails (loaded on first use, kept in memory).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use datasets::{FASHION_MNIST_CLASSES, Format, ImageSet, Source, Split};
use protocol::{DatasetInfo, DatasetOptions, Failure};
use sqlx::{Row, SqlitePool};

use crate::db::internal;

/// The dataset registered on first start when Debian's dataset-fashion-mnist is installed.
pub const DEFAULT_DATASET: &str = "fashion-mnist";
/// Side of the thumbnails of datasets whose images differ in size.
const THUMBNAIL: u32 = 96;

pub struct Registry {
    pool: SqlitePool,
    roots: Vec<PathBuf>,
    /// Decoded splits for thumbnails, by (dataset, train). One cell per split: the requests
    /// that arrive while it is decoded wait for that one decoding (a sample grid asks for
    /// dozens of thumbnails at once; each used to decode the whole split).
    images: Mutex<HashMap<(String, bool), Arc<OnceCell<Arc<ImageSet>>>>>,
    /// Splits decoded for thumbnails since the start (`/metrics`).
    decoded: AtomicU64,
}

impl Registry {
    pub fn new(pool: SqlitePool, roots: Vec<PathBuf>) -> Self {
        Self { pool, roots, images: Mutex::new(HashMap::new()), decoded: AtomicU64::new(0) }
    }

    /// How many splits were decoded for thumbnails since the start.
    pub fn decoded_splits(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    pub async fn list(&self) -> Result<Vec<DatasetInfo>, Failure> {
        let rows = sqlx::query("SELECT * FROM datasets ORDER BY name").fetch_all(&self.pool).await.map_err(internal)?;
        rows.iter().map(dataset_from_row).collect()
    }

    pub async fn get(&self, name: &str) -> Result<DatasetInfo, Failure> {
        let row = sqlx::query("SELECT * FROM datasets WHERE name = ?").bind(name).fetch_optional(&self.pool).await.map_err(internal)?;
        match row {
            Some(row) => dataset_from_row(&row),
            None => Err(Failure::not_found(format!("no dataset named {name:?}"))),
        }
    }

    /// Confines `path` to the data roots: resolved (symlinks followed, `..` applied), it must
    /// lie under one. A path that does not exist gets the same answer as one outside the
    /// roots, so the answer tells nothing about files elsewhere.
    pub fn confine(&self, path: &Path) -> Result<PathBuf, Failure> {
        let resolved = path.canonicalize().ok();
        let inside =
            resolved.as_ref().is_some_and(|resolved| self.roots.iter().filter_map(|root| root.canonicalize().ok()).any(|root| resolved.starts_with(root)));
        match resolved {
            Some(resolved) if inside => Ok(resolved),
            _ => {
                let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
                Err(Failure::bad_request(format!("{} is outside the data roots ({}) or does not exist", path.display(), roots.join(", "))))
            }
        }
    }

    /// A file named by a user: an absolute path, or a path relative to one of the data roots
    /// (tried in order), confined to the roots. Refuses `..` outright, so a relative path
    /// cannot climb out even where a root's parent happens to exist.
    pub fn resolve_file(&self, text: &str) -> Result<PathBuf, String> {
        let path = Path::new(text);
        if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(format!("{text} contains '..'; give a path inside a data root"));
        }
        let candidates: Vec<PathBuf> = if path.is_absolute() { vec![path.to_owned()] } else { self.roots.iter().map(|root| root.join(path)).collect() };
        // One answer for a file that is missing and one outside the roots, so the field tells
        // nothing about paths elsewhere (issue 19, item 14).
        let confined = candidates.iter().find_map(|c| self.confine(c).ok().filter(|resolved| resolved.is_file()));
        confined.ok_or_else(|| {
            let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
            format!("no file {text} under the data roots ({})", roots.join(", "))
        })
    }

    /// Registers a dataset under `name` (replacing nothing: a taken name is refused). `path`
    /// is a folder or file under the data roots, or for `synthetic` the generator's spec
    /// (e.g. `classes=4,train_per_class=32,val_per_class=8,size=16,channels=1,seed=7`).
    pub async fn register(&self, name: &str, format: Format, path: &Path, options: DatasetOptions) -> Result<DatasetInfo, Failure> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(Failure::bad_request(format!("dataset name {name:?} must be letters, digits, '-' or '_'")));
        }
        let path = if format == Format::Synthetic { path.to_owned() } else { self.confine(path)? };
        let source = source_of(format, &path, &options, &self.roots)?;
        let (source, summary) = tokio::task::spawn_blocking(move || datasets::inspect(&source).map(|summary| (source, summary)))
            .await
            .map_err(internal)?
            .map_err(|e| Failure::bad_request(e.to_string()))?;
        // Image sizes read as 0 when they differ (ImageFolder, CUB): runs then choose a size.
        let mut info = datasets::describe(name, &source, summary, options);
        if format == Format::Idx && info.num_classes as usize == FASHION_MNIST_CLASSES.len() && name.contains("fashion") {
            info.class_names = FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect();
        }
        let inserted = sqlx::query(
            "INSERT INTO datasets (name, format, path, num_classes, class_names, train_size, val_size, image_height, image_width, channels, options, groups)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
        )
        .bind(&info.name)
        .bind(&info.format)
        .bind(&info.path)
        .bind(info.num_classes)
        .bind(serde_json::to_string(&info.class_names).map_err(internal)?)
        .bind(info.train_size as i64)
        .bind(info.val_size as i64)
        .bind(info.image_height)
        .bind(info.image_width)
        .bind(info.channels)
        .bind(serde_json::to_string(&info.options).map_err(internal)?)
        .bind(info.groups.map(|groups| serde_json::to_string(&groups)).transpose().map_err(internal)?)
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        if inserted.rows_affected() == 0 {
            return Err(Failure::conflict(format!("a dataset named {name:?} is already registered")));
        }
        Ok(info)
    }

    /// Registers Debian's Fashion-MNIST as the default dataset, once, when it is installed.
    pub async fn register_default(&self) {
        let path = Path::new("/usr/share/datasets/fashion-mnist");
        if !path.is_dir() {
            tracing::warn!("{} not found: install Debian's dataset-fashion-mnist for the default dataset", path.display());
            return;
        }
        match self.get(DEFAULT_DATASET).await {
            Ok(_) => {}
            Err(_) => match self.register(DEFAULT_DATASET, Format::Idx, path, DatasetOptions::default()).await {
                Ok(info) => tracing::info!("registered {} ({} training images)", info.name, info.train_size),
                Err(error) => tracing::warn!("could not register {}: {error}", DEFAULT_DATASET),
            },
        }
    }

    /// One training or validation image as a PNG.
    pub async fn image_png(&self, name: &str, train: bool, index: usize) -> Result<Vec<u8>, Failure> {
        let set = self.images(name, train).await?;
        let pixels = set.image(index).ok_or_else(|| Failure::not_found(format!("{name} has {} images; no index {index}", set.len())))?;
        encode_png(pixels, set.width as u32, set.height as u32, set.channels).map_err(internal)
    }

    async fn images(&self, name: &str, train: bool) -> Result<Arc<ImageSet>, Failure> {
        let cell = self.images.lock().expect("image cache lock").entry((name.to_owned(), train)).or_default().clone();
        // A failed decoding leaves the cell empty: the next request tries again.
        let set = cell
            .get_or_try_init(|| async {
                let info = self.get(name).await?;
                let split = if train { Split::Train } else { Split::Val };
                let format = Format::parse(&info.format).map_err(internal)?;
                let source = source_of(format, Path::new(&info.path), &info.options, &self.roots)?;
                // Images of one size are shown as they are; mixed sizes at THUMBNAIL pixels.
                let size = (info.image_height == 0).then_some(THUMBNAIL);
                self.decoded.fetch_add(1, Ordering::Relaxed);
                // What the files hold now is the member's to fix (a file swapped or grown since
                // registration): a 400 that says which, never a 500.
                let set = tokio::task::spawn_blocking(move || datasets::load(&source, split, size))
                    .await
                    .map_err(internal)?
                    .map_err(|e| Failure::bad_request(format!("{name} cannot be read as registered: {e}")))?;
                Ok::<_, Failure>(Arc::new(set.images))
            })
            .await?;
        Ok(set.clone())
    }
}

fn encode_png(pixels: &[u8], width: u32, height: u32, channels: usize) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(if channels == 3 { png::ColorType::Rgb } else { png::ColorType::Grayscale });
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(pixels)?;
    Ok(out)
}

/// The dataset as the `datasets` crate reads it, every file it opens confined to the data
/// roots at open time (issue 19, item 5); invalid options are the caller's to fix.
fn source_of(format: Format, path: &Path, options: &DatasetOptions, roots: &[PathBuf]) -> Result<Source, Failure> {
    let options = options.try_into().map_err(|e: datasets::DatasetError| Failure::bad_request(e.to_string()))?;
    Ok(Source::new(format, path).with_options(options).confined_to(datasets::Roots::new(roots)))
}

fn dataset_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<DatasetInfo, Failure> {
    let class_names: String = row.get("class_names");
    let options: String = row.get("options");
    let groups: Option<String> = row.get("groups");
    Ok(DatasetInfo {
        name: row.get("name"),
        format: row.get("format"),
        path: row.get("path"),
        num_classes: row.get::<i64, _>("num_classes") as u32,
        class_names: serde_json::from_str(&class_names).map_err(internal)?,
        train_size: row.get::<i64, _>("train_size") as u64,
        val_size: row.get::<i64, _>("val_size") as u64,
        image_height: row.get::<i64, _>("image_height") as u32,
        image_width: row.get::<i64, _>("image_width") as u32,
        channels: row.get::<i64, _>("channels") as u32,
        options: serde_json::from_str(&options).map_err(internal)?,
        groups: groups.map(|groups| serde_json::from_str(&groups)).transpose().map_err(internal)?,
    })
}
