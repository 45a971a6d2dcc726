//! Files a researcher opens in pandas, polars, R or a spreadsheet:
//!
//! - records: one row per (epoch, sample) with the record columns of docs/design.md `run, epoch, phase,
//!   sample_key, sample_index, label, correct, loss, p_true, margin, predicted, el2n`, then
//!   `shown` (whether the epoch's schedule trained on the sample); Parquet (one row group per
//!   epoch, Snappy) or CSV;
//! - per-sample statistics: one row per sample with the fields of `protocol::SampleStats`.
//!
//! Writers take any `Write`, so the same code serves files on disk and HTTP responses.

mod parquet_files;

pub use parquet_files::{write_records_parquet, write_runs_samples_parquet, write_samples_parquet};

use std::io::Write;

use protocol::SampleStats;
use protocol::worker::{EpochColumns, ManifestEntry};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("epoch {epoch} has {columns} records for {samples} samples")]
    Length { epoch: u32, columns: usize, samples: usize },
}

/// The record columns, in file order (docs/design.md, "Public JSON API"), and `shown`.
pub const RECORD_COLUMNS: [&str; 13] =
    ["run", "epoch", "phase", "sample_key", "sample_index", "label", "correct", "loss", "p_true", "margin", "predicted", "el2n", "shown"];

/// One epoch of one run: its phase, the run's samples in recording order, and the records.
#[derive(Debug, Clone, Copy)]
pub struct EpochRecords<'a> {
    pub run: i64,
    pub epoch: u32,
    pub phase: &'a str,
    pub samples: &'a [ManifestEntry],
    pub columns: &'a EpochColumns,
    /// The samples the epoch trained on (a schedule's subset), one flag per sample; `None`
    /// when it trained on every sample (head warmup, the `full` schedule).
    pub shown: Option<&'a [bool]>,
}

impl EpochRecords<'_> {
    fn check(&self) -> Result<(), ExportError> {
        let c = self.columns;
        let lengths = [
            c.correct.len(),
            c.loss.len(),
            c.p_true.len(),
            c.margin.len(),
            c.predicted.len(),
            c.el2n.len(),
            self.shown.map_or(self.samples.len(), <[bool]>::len),
        ];
        match lengths.iter().find(|&&len| len != self.samples.len()) {
            Some(&columns) => Err(ExportError::Length { epoch: self.epoch, columns, samples: self.samples.len() }),
            None => Ok(()),
        }
    }

    /// Whether sample `i` was trained on in this epoch.
    fn shown(&self, i: usize) -> bool {
        self.shown.is_none_or(|shown| shown[i])
    }
}

/// Records as CSV with a header line; floats in Rust's shortest round-trip form.
pub fn write_records_csv<'a>(mut out: impl Write, epochs: impl IntoIterator<Item = EpochRecords<'a>>) -> Result<(), ExportError> {
    writeln!(out, "{}", RECORD_COLUMNS.join(","))?;
    for e in epochs {
        e.check()?;
        let c = e.columns;
        for (i, sample) in e.samples.iter().enumerate() {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                e.run,
                e.epoch,
                e.phase,
                sample.sample_key,
                i,
                sample.label,
                c.correct[i],
                c.loss[i],
                c.p_true[i],
                c.margin[i],
                c.predicted[i],
                c.el2n[i],
                u8::from(e.shown(i))
            )?;
        }
    }
    Ok(())
}

/// The per-sample statistics columns, in file order.
pub const SAMPLE_COLUMNS: [&str; 18] = [
    "sample_key",
    "sample_index",
    "dataset_index",
    "label",
    "forgetting_events",
    "learning_events",
    "first_learned_epoch",
    "never_learned",
    "unforgettable",
    "confidence",
    "variability",
    "correctness",
    "tau",
    "r2",
    "warmup_loss",
    "mean_margin",
    "el2n",
    "run",
];

/// Per-sample statistics as CSV; an absent value is an empty field.
pub fn write_samples_csv(out: impl Write, run: i64, samples: &[SampleStats]) -> Result<(), ExportError> {
    write_runs_samples_csv(out, &[(run, samples)])
}

/// Several runs' per-sample statistics in one CSV (a comparison's), one header, the `run`
/// column telling them apart.
pub fn write_runs_samples_csv(mut out: impl Write, runs: &[(i64, &[SampleStats])]) -> Result<(), ExportError> {
    fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
        value.map(|v| v.to_string()).unwrap_or_default()
    }
    writeln!(out, "{}", SAMPLE_COLUMNS.join(","))?;
    for &(run, samples) in runs {
        for s in samples {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{run}",
                s.sample_key,
                s.sample_index,
                s.dataset_index,
                s.label,
                s.forgetting_events,
                s.learning_events,
                opt(s.first_learned_epoch),
                s.never_learned,
                s.unforgettable,
                opt(s.confidence),
                opt(s.variability),
                opt(s.correctness),
                opt(s.tau),
                opt(s.r2),
                opt(s.warmup_loss),
                opt(s.mean_margin),
                opt(s.el2n),
            )?;
        }
    }
    Ok(())
}

/// Per-sample statistics of a run from its summaries (`dynamics::summarize_samples`), in
/// recording order.
pub fn sample_stats(samples: &[ManifestEntry], summaries: &[dynamics::SampleSummary]) -> Vec<SampleStats> {
    samples
        .iter()
        .zip(summaries)
        .enumerate()
        .map(|(i, (sample, summary))| {
            SampleStats::from_values(sample.sample_key.clone(), i as u32, sample.dataset_index, sample.label, &dynamics::SampleValues::of(summary))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn example() -> (Vec<ManifestEntry>, EpochColumns) {
        let samples =
            vec![ManifestEntry { dataset_index: 7, sample_key: "aa".into(), label: 1 }, ManifestEntry { dataset_index: 3, sample_key: "bb".into(), label: 0 }];
        let columns = EpochColumns {
            correct: vec![1, 0],
            loss: vec![0.25, 1.5],
            p_true: vec![0.75, 0.125],
            margin: vec![2.0, -1.0],
            predicted: vec![1, 1],
            el2n: vec![0.5, 1.25],
        };
        (samples, columns)
    }

    #[test]
    fn records_csv_has_one_row_per_sample_and_epoch() {
        let (samples, columns) = example();
        let mut out = Vec::new();
        let shown = [false, true];
        let epochs = [1, 2].map(|epoch| EpochRecords {
            run: 4,
            epoch,
            phase: if epoch == 1 { "warmup" } else { "finetune" },
            samples: &samples,
            columns: &columns,
            shown: (epoch == 2).then_some(&shown[..]),
        });
        write_records_csv(&mut out, epochs).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "run,epoch,phase,sample_key,sample_index,label,correct,loss,p_true,margin,predicted,el2n,shown");
        assert_eq!(lines[1], "4,1,warmup,aa,0,1,1,0.25,0.75,2,1,0.5,1");
        assert_eq!(lines[3], "4,2,finetune,aa,0,1,1,0.25,0.75,2,1,0.5,0", "left out by the epoch's schedule");
        assert_eq!(lines[4], "4,2,finetune,bb,1,0,0,1.5,0.125,-1,1,1.25,1");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn mismatched_lengths_are_refused() {
        let (samples, mut columns) = example();
        columns.el2n.pop();
        let error = write_records_csv(Vec::new(), [EpochRecords { run: 1, epoch: 3, phase: "finetune", samples: &samples, columns: &columns, shown: None }])
            .unwrap_err();
        assert_eq!(error.to_string(), "epoch 3 has 1 records for 2 samples");
    }
}
