//! `forgetlab-worker train --config run.toml --out DIR`: a run without a server, for a
//! laptop or a batch job. The config holds a run spec (the fields of `POST /api/v1/runs`)
//! and a `[dataset]` table naming the data; the records land in DIR:
//!
//! - `records/epoch-NNNN.parquet`: one file per epoch, the record columns of docs/design.md (read the
//!   folder as one table with pandas, polars or arrow);
//! - `epochs.csv`: per-epoch metrics; `samples.parquet`: per-sample statistics;
//! - `spec.json`, and `checkpoints/` (a rerun with the same config resumes after the last
//!   completed epoch).
//!
//! ```toml
//! arch = "resnet18"
//! epochs = 10
//! warmup_epochs = 2
//! image_size = 64
//! [dataset]
//! name = "fashion-mnist"
//! format = "idx"            # idx, image_folder, cub, npz, synthetic
//! path = "/usr/share/datasets/fashion-mnist"
//! # optional: val_fraction = 0.1, split_seed = 0 (image_folder without a split),
//! # group_pattern = '_(P\d+)_' (image_folder: a patient per group, kept on one side),
//! # bad_images = "fail" or "skip"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use protocol::worker::{EpochUpload, Heartbeat, ManifestEntry, SampleManifest};
use protocol::{DatasetInfo, EpochMetrics, ExperimentSpec, RunRequest};

use crate::pipeline::EpochSink;
use crate::train::{Ending, Places, Reporter, train};

/// Reads a run config: the spec and the dataset it names.
pub fn read_config(path: &Path) -> Result<(ExperimentSpec, DatasetInfo)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: toml::Value = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut json = serde_json::to_value(value)?;
    let table = json.as_object_mut().context("the config must be a TOML table")?;
    let dataset = table.remove("dataset").with_context(|| format!("{} has no [dataset] table (name, format, path)", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let text_of = |key: &str| dataset.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let name = text_of("name").unwrap_or_else(|| "dataset".to_owned());
    let format = datasets::Format::parse(&text_of("format").context("[dataset] needs a format: idx, image_folder, cub, npz or synthetic")?)?;
    let data_path = text_of("path").context("[dataset] needs a path (for synthetic, the generator spec)")?;
    let data_path = if format == datasets::Format::Synthetic { PathBuf::from(data_path) } else { base.join(data_path) };
    let defaults = protocol::DatasetOptions::default();
    let options = protocol::DatasetOptions {
        val_fraction: dataset.get("val_fraction").and_then(|v| v.as_f64()).unwrap_or(defaults.val_fraction),
        split_seed: dataset.get("split_seed").and_then(|v| v.as_u64()).unwrap_or(defaults.split_seed),
        bad_images: text_of("bad_images").unwrap_or(defaults.bad_images),
        group_pattern: text_of("group_pattern"),
    };
    let source = datasets::Source::new(format, data_path.clone()).with_options((&options).try_into()?);
    let summary = datasets::inspect(&source).with_context(|| format!("reading the dataset at {}", data_path.display()))?;
    let info = datasets::describe(&name, &source, summary, options);
    table.insert("dataset".into(), serde_json::Value::String(name));
    if let Some(weights) = table.get("weights").and_then(|w| w.as_str()) {
        let resolved = base.join(weights).display().to_string();
        table.insert("weights".into(), serde_json::Value::String(resolved));
    }
    let request: RunRequest = serde_json::from_value(json).with_context(|| format!("{}: not a run spec", path.display()))?;
    let spec = ExperimentSpec::parse(&request, std::slice::from_ref(&info)).map_err(|errors| anyhow::anyhow!("{}: {errors}", path.display()))?;
    Ok((spec, info))
}

/// Writes what the training loop reports into the output folder.
struct Folder {
    out: PathBuf,
    samples: Vec<ManifestEntry>,
}

impl Folder {
    fn epoch_path(&self, epoch: u32, extension: &str) -> PathBuf {
        self.out.join("records").join(format!("epoch-{epoch:04}.{extension}"))
    }
}

/// The folder's records, written on the epoch pipeline's thread.
struct FolderSink(Folder);

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash never leaves
/// half a file under the final name.
fn write_atomically(path: &Path, write: impl FnOnce(std::fs::File) -> Result<()>) -> Result<()> {
    let temporary = path.with_extension("partial");
    write(std::fs::File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

impl Reporter for Folder {
    fn progress(&mut self, heartbeat: &Heartbeat) -> Result<bool> {
        if heartbeat.step == heartbeat.steps && heartbeat.steps > 0 {
            let loss = heartbeat.loss.map_or(String::new(), |l| format!(" loss {l:.4}"));
            let accuracy = heartbeat.accuracy.map_or(String::new(), |a| format!(" accuracy {a:.4}"));
            let speed = heartbeat.images_per_sec.map_or(String::new(), |s| format!(" {s:.0} img/s"));
            eprintln!("epoch {} ({}){loss}{accuracy}{speed}", heartbeat.epoch, heartbeat.phase);
        }
        Ok(false)
    }

    fn manifest(&mut self, manifest: &SampleManifest) -> Result<()> {
        self.samples = manifest.samples.clone();
        Ok(())
    }

    fn epoch_sink(&mut self) -> Box<dyn EpochSink> {
        Box::new(FolderSink(Folder { out: self.out.clone(), samples: self.samples.clone() }))
    }
}

impl EpochSink for FolderSink {
    fn epoch(&mut self, upload: &EpochUpload) -> Result<()> {
        let folder = &self.0;
        let m = &upload.metrics;
        let shown = upload.shown.as_deref().map(|bits| protocol::pack::unpack_bits(bits, folder.samples.len())).transpose().map_err(anyhow::Error::msg)?;
        let records = export::EpochRecords {
            run: 0,
            epoch: m.epoch,
            phase: m.phase.as_str(),
            samples: &folder.samples,
            columns: &upload.columns,
            shown: shown.as_deref(),
        };
        write_atomically(&folder.epoch_path(m.epoch, "parquet"), |file| Ok(export::write_records_parquet(file, [records])?))?;
        // Everything but the records, for epochs.csv and the per-sample statistics.
        let rest = serde_json::json!({
            "metrics": m,
            "correct": upload.columns.correct,
            "p_true": upload.columns.p_true,
            "loss": upload.columns.loss,
            "margin": upload.columns.margin,
            "el2n": upload.columns.el2n,
            "eval_loss": upload.eval_loss,
            "val_confusion": upload.val_confusion,
            "shown": upload.shown.as_deref().map(|bits| shown_indices(bits, folder.samples.len())),
        });
        write_atomically(&folder.epoch_path(m.epoch, "json"), |file| Ok(serde_json::to_writer(std::io::BufWriter::new(file), &rest)?))
    }
}

/// The positions of the set bits of `bits`: the samples an epoch showed.
fn shown_indices(bits: &[u8], samples: usize) -> Vec<u32> {
    (0..samples).filter(|&i| bits.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1)).map(|i| i as u32).collect()
}

/// Trains the run of `config`, writing into `out`. Returns the number of epochs recorded.
pub fn run(config: &Path, out: &Path) -> Result<u32> {
    let (spec, dataset) = read_config(config)?;
    std::fs::create_dir_all(out.join("records")).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("spec.json"), serde_json::to_vec_pretty(&spec)?)?;
    let cache = std::env::var_os("FORGETLAB_DATA_DIR").map_or_else(|| out.join("cache"), |dir| PathBuf::from(dir).join("cache"));
    let places = Places { checkpoints: Some(out.join("checkpoints")), cache: Some(cache) };
    let mut folder = Folder { out: out.to_owned(), samples: Vec::new() };
    match train(&spec, &dataset, &mut folder, &places, None)? {
        Ending::Completed(_) => {}
        Ending::Cancelled => anyhow::bail!("the run was cancelled"),
    }
    summarise(&spec, &folder)?;
    Ok(spec.total_epochs())
}

#[derive(serde::Deserialize)]
struct EpochRest {
    metrics: EpochMetrics,
    correct: Vec<u8>,
    p_true: Vec<f32>,
    loss: Vec<f32>,
    /// Absent in epoch files written before they were kept.
    #[serde(default)]
    margin: Option<Vec<f32>>,
    #[serde(default)]
    el2n: Option<Vec<f32>>,
    eval_loss: Option<Vec<f32>>,
}

/// `epochs.csv` and `samples.parquet` from every epoch's files (including those written
/// before a resume).
fn summarise(spec: &ExperimentSpec, folder: &Folder) -> Result<()> {
    let epochs: Vec<EpochRest> = (1..=spec.total_epochs())
        .map(|epoch| {
            let path = folder.epoch_path(epoch, "json");
            let bytes = std::fs::read(&path).with_context(|| format!("epoch {epoch} is missing: {}", path.display()))?;
            Ok(serde_json::from_slice(&bytes)?)
        })
        .collect::<Result<_>>()?;
    let mut csv = String::from("epoch,phase,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n");
    for e in &epochs {
        let m = &e.metrics;
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        csv += &format!(
            "{},{},{},{},{},{},{},{}\n",
            m.epoch,
            m.phase.as_str(),
            m.train_loss,
            m.train_accuracy,
            opt(m.val_loss),
            opt(m.val_accuracy),
            m.lr,
            m.seconds
        );
    }
    std::fs::write(folder.out.join("epochs.csv"), csv)?;
    let columns: Vec<dynamics::TraceColumns> = epochs
        .iter()
        .map(|e| dynamics::TraceColumns { margin: e.margin.as_deref(), el2n: e.el2n.as_deref(), ..dynamics::TraceColumns::new(&e.correct, &e.p_true, &e.loss) })
        .collect();
    let warmup = spec.warmup_epochs as usize;
    let after_warmup = warmup.checked_sub(1).and_then(|i| epochs[i].eval_loss.as_deref());
    let summaries = dynamics::summarize_samples(&columns, warmup, after_warmup, spec.analysis());
    let stats = export::sample_stats(&folder.samples, &summaries);
    write_atomically(&folder.out.join("samples.parquet"), |file| Ok(export::write_samples_parquet(file, 0, &stats)?))
}
