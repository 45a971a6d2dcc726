//! Parquet through the `parquet` crate's column writers (no Arrow): a schema per file kind,
//! one row group per epoch of records, Snappy compression.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::parser::parse_message_type;
use protocol::SampleStats;

use crate::{EpochRecords, ExportError};

const RECORDS_SCHEMA: &str = "message records {
    REQUIRED INT64 run;
    REQUIRED INT32 epoch;
    REQUIRED BYTE_ARRAY phase (UTF8);
    REQUIRED BYTE_ARRAY sample_key (UTF8);
    REQUIRED INT32 sample_index;
    REQUIRED INT32 label;
    REQUIRED BOOLEAN correct;
    REQUIRED FLOAT loss;
    REQUIRED FLOAT p_true;
    REQUIRED FLOAT margin;
    REQUIRED INT32 predicted;
    REQUIRED FLOAT el2n;
    REQUIRED BOOLEAN shown;
}";

const SAMPLES_SCHEMA: &str = "message samples {
    REQUIRED BYTE_ARRAY sample_key (UTF8);
    REQUIRED INT32 sample_index;
    REQUIRED INT32 dataset_index;
    REQUIRED INT32 label;
    REQUIRED INT32 forgetting_events;
    REQUIRED INT32 learning_events;
    OPTIONAL INT32 first_learned_epoch;
    REQUIRED BOOLEAN never_learned;
    REQUIRED BOOLEAN unforgettable;
    OPTIONAL DOUBLE confidence;
    OPTIONAL DOUBLE variability;
    OPTIONAL DOUBLE correctness;
    OPTIONAL DOUBLE tau;
    OPTIONAL DOUBLE r2;
    OPTIONAL DOUBLE warmup_loss;
    OPTIONAL DOUBLE mean_margin;
    OPTIONAL DOUBLE el2n;
    REQUIRED INT64 run;
}";

fn writer<W: Write + Send>(out: W, schema: &str) -> Result<SerializedFileWriter<W>, ExportError> {
    let schema = Arc::new(parse_message_type(schema)?);
    let properties = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    Ok(SerializedFileWriter::new(out, schema, properties)?)
}

/// A column of required values.
fn required<T: parquet::data_type::DataType>(column: &mut SerializedColumnWriter<'_>, values: &[T::T]) -> Result<(), ExportError> {
    column.typed::<T>().write_batch(values, None, None)?;
    Ok(())
}

/// A column of optional values: definition level 1 where present, 0 where absent.
fn optional<T: parquet::data_type::DataType>(column: &mut SerializedColumnWriter<'_>, values: &[Option<T::T>]) -> Result<(), ExportError>
where
    T::T: Clone,
{
    let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
    let present: Vec<T::T> = values.iter().flatten().cloned().collect();
    column.typed::<T>().write_batch(&present, Some(&levels), None)?;
    Ok(())
}

/// Records as Parquet, one row group per epoch.
pub fn write_records_parquet<'a, W: Write + Send>(out: W, epochs: impl IntoIterator<Item = EpochRecords<'a>>) -> Result<(), ExportError> {
    let mut file = writer(out, RECORDS_SCHEMA)?;
    for e in epochs {
        e.check()?;
        let n = e.samples.len();
        let c = e.columns;
        let mut group = file.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            match index {
                0 => required::<Int64Type>(&mut column, &vec![e.run; n])?,
                1 => required::<Int32Type>(&mut column, &vec![e.epoch as i32; n])?,
                2 => required::<ByteArrayType>(&mut column, &vec![ByteArray::from(e.phase); n])?,
                3 => required::<ByteArrayType>(&mut column, &e.samples.iter().map(|s| ByteArray::from(s.sample_key.as_str())).collect::<Vec<_>>())?,
                4 => required::<Int32Type>(&mut column, &(0..n as i32).collect::<Vec<_>>())?,
                5 => required::<Int32Type>(&mut column, &e.samples.iter().map(|s| s.label as i32).collect::<Vec<_>>())?,
                6 => required::<BoolType>(&mut column, &c.correct.iter().map(|&v| v == 1).collect::<Vec<_>>())?,
                7 => required::<FloatType>(&mut column, &c.loss)?,
                8 => required::<FloatType>(&mut column, &c.p_true)?,
                9 => required::<FloatType>(&mut column, &c.margin)?,
                10 => required::<Int32Type>(&mut column, &c.predicted.iter().map(|&v| i32::from(v)).collect::<Vec<_>>())?,
                11 => required::<FloatType>(&mut column, &c.el2n)?,
                _ => required::<BoolType>(&mut column, &(0..n).map(|i| e.shown(i)).collect::<Vec<_>>())?,
            }
            column.close()?;
            index += 1;
        }
        group.close()?;
    }
    file.close()?;
    Ok(())
}

/// Per-sample statistics as Parquet, in one row group.
pub fn write_samples_parquet<W: Write + Send>(out: W, run: i64, samples: &[SampleStats]) -> Result<(), ExportError> {
    write_runs_samples_parquet(out, &[(run, samples)])
}

/// Several runs' per-sample statistics in one file (a comparison's): a row group per run,
/// the `run` column telling them apart.
pub fn write_runs_samples_parquet<W: Write + Send>(out: W, runs: &[(i64, &[SampleStats])]) -> Result<(), ExportError> {
    let mut file = writer(out, SAMPLES_SCHEMA)?;
    for &(run, samples) in runs {
        write_samples_group(&mut file, run, samples)?;
    }
    file.close()?;
    Ok(())
}

fn write_samples_group<W: Write + Send>(file: &mut SerializedFileWriter<W>, run: i64, samples: &[SampleStats]) -> Result<(), ExportError> {
    let mut group = file.next_row_group()?;
    let ints = |f: fn(&SampleStats) -> u32| samples.iter().map(|s| f(s) as i32).collect::<Vec<_>>();
    let doubles = |f: fn(&SampleStats) -> Option<f64>| samples.iter().map(f).collect::<Vec<_>>();
    let mut index = 0;
    while let Some(mut column) = group.next_column()? {
        match index {
            0 => required::<ByteArrayType>(&mut column, &samples.iter().map(|s| ByteArray::from(s.sample_key.as_str())).collect::<Vec<_>>())?,
            1 => required::<Int32Type>(&mut column, &ints(|s| s.sample_index))?,
            2 => required::<Int32Type>(&mut column, &ints(|s| s.dataset_index))?,
            3 => required::<Int32Type>(&mut column, &ints(|s| s.label))?,
            4 => required::<Int32Type>(&mut column, &ints(|s| s.forgetting_events))?,
            5 => required::<Int32Type>(&mut column, &ints(|s| s.learning_events))?,
            6 => optional::<Int32Type>(&mut column, &samples.iter().map(|s| s.first_learned_epoch.map(|e| e as i32)).collect::<Vec<_>>())?,
            7 => required::<BoolType>(&mut column, &samples.iter().map(|s| s.never_learned).collect::<Vec<_>>())?,
            8 => required::<BoolType>(&mut column, &samples.iter().map(|s| s.unforgettable).collect::<Vec<_>>())?,
            9 => optional::<DoubleType>(&mut column, &doubles(|s| s.confidence))?,
            10 => optional::<DoubleType>(&mut column, &doubles(|s| s.variability))?,
            11 => optional::<DoubleType>(&mut column, &doubles(|s| s.correctness))?,
            12 => optional::<DoubleType>(&mut column, &doubles(|s| s.tau))?,
            13 => optional::<DoubleType>(&mut column, &doubles(|s| s.r2))?,
            14 => optional::<DoubleType>(&mut column, &doubles(|s| s.warmup_loss))?,
            15 => optional::<DoubleType>(&mut column, &doubles(|s| s.mean_margin))?,
            16 => optional::<DoubleType>(&mut column, &doubles(|s| s.el2n))?,
            _ => required::<Int64Type>(&mut column, &vec![run; samples.len()])?,
        }
        column.close()?;
        index += 1;
    }
    group.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    use super::*;
    use crate::tests::example;

    #[test]
    fn records_read_back_with_their_names_types_and_values() {
        let (samples, columns) = example();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.parquet");
        let shown = [true, false];
        let epochs = [1, 2].map(|epoch| EpochRecords {
            run: 4,
            epoch,
            phase: "finetune",
            samples: &samples,
            columns: &columns,
            shown: (epoch == 2).then_some(&shown[..]),
        });
        write_records_parquet(std::fs::File::create(&path).unwrap(), epochs).unwrap();

        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2, "one row group per epoch");
        let rows: Vec<_> = reader.get_row_iter(None).unwrap().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 4);
        let names: Vec<&str> = rows[0].get_column_iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, crate::RECORD_COLUMNS);
        let fields: Vec<&Field> = rows[3].get_column_iter().map(|(_, field)| field).collect();
        assert_eq!(fields[1], &Field::Int(2));
        assert_eq!(fields[3], &Field::Str("bb".into()));
        assert_eq!(fields[6], &Field::Bool(false));
        assert_eq!(fields[7], &Field::Float(1.5));
        assert_eq!(fields[11], &Field::Float(1.25));
        assert_eq!(fields[12], &Field::Bool(false), "epoch 2 left sample bb out");
        assert_eq!(rows[0].get_column_iter().nth(12).unwrap().1, &Field::Bool(true), "no shown set: every sample trained on");
    }

    #[test]
    fn sample_statistics_keep_absent_values_absent() {
        let stats = vec![
            SampleStats {
                sample_key: "aa".into(),
                sample_index: 0,
                dataset_index: 9,
                label: 2,
                forgetting_events: 3,
                learning_events: 4,
                first_learned_epoch: Some(2),
                never_learned: false,
                unforgettable: false,
                confidence: Some(0.5),
                variability: Some(0.25),
                correctness: Some(0.75),
                tau: None,
                r2: None,
                warmup_loss: Some(1.0),
                mean_margin: Some(-0.5),
                el2n: Some(0.75),
                last_predicted: Some(2),
            },
            SampleStats {
                sample_key: "bb".into(),
                sample_index: 1,
                dataset_index: 1,
                label: 0,
                forgetting_events: 0,
                learning_events: 0,
                first_learned_epoch: None,
                never_learned: true,
                unforgettable: false,
                confidence: Some(0.1),
                variability: Some(0.0),
                correctness: Some(0.0),
                tau: None,
                r2: None,
                warmup_loss: None,
                mean_margin: None,
                el2n: None,
                last_predicted: None,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.parquet");
        write_samples_parquet(std::fs::File::create(&path).unwrap(), 7, &stats).unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let rows: Vec<_> = reader.get_row_iter(None).unwrap().map(Result::unwrap).collect();
        let row: Vec<(&String, &Field)> = rows[1].get_column_iter().collect();
        assert_eq!(row[6], (&"first_learned_epoch".to_owned(), &Field::Null));
        assert_eq!(row[7].1, &Field::Bool(true));
        assert_eq!(row[14].1, &Field::Null);
        assert_eq!(row[16], (&"el2n".to_owned(), &Field::Null));
        assert_eq!(row[17].1, &Field::Long(7));
        assert_eq!(rows[0].get_column_iter().nth(14).unwrap().1, &Field::Double(1.0));
        assert_eq!(rows[0].get_column_iter().nth(15).unwrap(), (&"mean_margin".to_owned(), &Field::Double(-0.5)));
    }
}
