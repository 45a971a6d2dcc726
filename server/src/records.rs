//! Where the per-sample records live.
//!
//! While a run trains, `epoch_records` holds one row per (run, epoch) of packed arrays, as
//! the worker uploads them (an upload replaces its epoch; a resumed run appends). When the run
//! succeeds its records are sealed: transposed into `record_blocks` of [`BLOCK`] samples x every
//! epoch, each column encoded by [`crate::codec`] (XOR with the previous epoch, byte planes,
//! zstd), and the epoch rows are deleted. One sample's trajectory is then one block per run,
//! and the whole run is read back in epoch order for exports and recomputation.

use protocol::pack::{pack_f32, unpack_f32, unpack_u16};
use protocol::worker::EpochColumns;
use protocol::Failure;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::codec;
use crate::db::internal;

/// Samples per sealed block: a trajectory decodes this many samples' records per run.
pub const BLOCK: usize = 64;

/// A run's records in epoch order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecords {
    /// The stored epochs' numbers (1-based), ascending, one per entry of `columns`.
    pub epochs: Vec<u32>,
    pub columns: Vec<EpochColumns>,
    /// The eval-mode loss of every sample at the end of the head warmup, with that epoch.
    pub eval_loss: Option<(u32, Vec<f32>)>,
}

/// One sample's records over the epochs of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub correct: Vec<u8>,
    pub p_true: Vec<f32>,
    pub loss: Vec<f32>,
    pub predicted: Vec<u16>,
}

/// Whether the run's records are sealed.
async fn sealed(pool: &SqlitePool, run_id: i64) -> Result<Option<i64>, Failure> {
    sqlx::query_scalar("SELECT epochs FROM record_blocks WHERE run_id = ? LIMIT 1").bind(run_id).fetch_optional(pool).await.map_err(internal)
}

/// Every stored record of a run, sealed or not.
pub async fn read(pool: &SqlitePool, run_id: i64) -> Result<RunRecords, Failure> {
    match sealed(pool, run_id).await? {
        Some(_) => read_sealed(pool, run_id).await,
        None => read_epochs(pool, run_id).await,
    }
}

async fn read_epochs(pool: &SqlitePool, run_id: i64) -> Result<RunRecords, Failure> {
    let rows = sqlx::query("SELECT epoch, correct, loss, p_true, margin, predicted, el2n, eval_loss FROM epoch_records WHERE run_id = ? ORDER BY epoch")
        .bind(run_id)
        .fetch_all(pool)
        .await
        .map_err(internal)?;
    let mut records = RunRecords::default();
    for row in &rows {
        let epoch = row.get::<i64, _>("epoch") as u32;
        let f32s = |name: &str| unpack_f32(&row.get::<Vec<u8>, _>(name)).map_err(internal);
        records.columns.push(EpochColumns {
            correct: row.get("correct"),
            loss: f32s("loss")?,
            p_true: f32s("p_true")?,
            margin: f32s("margin")?,
            predicted: unpack_u16(&row.get::<Vec<u8>, _>("predicted")).map_err(internal)?,
            el2n: f32s("el2n")?,
        });
        if let Some(eval_loss) = row.get::<Option<Vec<u8>>, _>("eval_loss") {
            records.eval_loss = Some((epoch, unpack_f32(&eval_loss).map_err(internal)?));
        }
        records.epochs.push(epoch);
    }
    Ok(records)
}

/// The columns of a block, in storage order: trajectories read the first four.
const COLUMNS: [(&str, usize); 6] = [("correct", 1), ("p_true", 4), ("loss", 4), ("predicted", 2), ("margin", 4), ("el2n", 4)];

/// A sealed block, encoded.
pub struct SealedBlock {
    first_sample: usize,
    samples: usize,
    columns: Vec<Vec<u8>>,
    eval_loss: Option<Vec<u8>>,
}

/// Encodes a run's records into blocks (CPU work: call it off the async runtime). Uses the
/// machine's cores.
pub fn seal(records: &RunRecords) -> Vec<SealedBlock> {
    let samples = records.columns.first().map_or(0, |c| c.correct.len());
    let epochs = records.columns.len();
    let starts: Vec<usize> = (0..samples).step_by(BLOCK).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(starts.len()).max(1);
    let encode_block = |first: usize| {
        let end = (first + BLOCK).min(samples);
        // Sample-major: each sample's values over the epochs, one after another.
        let gather = |width: usize, value: &dyn Fn(&EpochColumns, usize) -> [u8; 4]| {
            let mut raw = Vec::with_capacity((end - first) * epochs * width);
            for s in first..end {
                for epoch in &records.columns {
                    raw.extend_from_slice(&value(epoch, s)[..width]);
                }
            }
            codec::encode(&raw, width, epochs)
        };
        let f32_at = |f: fn(&EpochColumns) -> &Vec<f32>| move |e: &EpochColumns, s: usize| f(e)[s].to_le_bytes();
        let columns = vec![
            gather(1, &|e, s| [e.correct[s], 0, 0, 0]),
            gather(4, &f32_at(|e| &e.p_true)),
            gather(4, &f32_at(|e| &e.loss)),
            gather(2, &|e, s| {
                let [a, b] = e.predicted[s].to_le_bytes();
                [a, b, 0, 0]
            }),
            gather(4, &f32_at(|e| &e.margin)),
            gather(4, &f32_at(|e| &e.el2n)),
        ];
        let eval_loss = records.eval_loss.as_ref().map(|(_, loss)| codec::encode(&pack_f32(&loss[first..end]), 4, 1));
        SealedBlock { first_sample: first, samples: end - first, columns, eval_loss }
    };
    let per_thread = starts.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = starts.chunks(per_thread).map(|chunk| scope.spawn(move || chunk.iter().map(|&first| encode_block(first)).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("a sealing thread panicked")).collect()
    })
}

/// Stores sealed blocks in place of the run's epoch rows.
pub async fn store_sealed(tx: &mut Transaction<'_, Sqlite>, run_id: i64, records: &RunRecords, blocks: &[SealedBlock]) -> Result<(), Failure> {
    sqlx::query("DELETE FROM record_blocks WHERE run_id = ?").bind(run_id).execute(&mut **tx).await.map_err(internal)?;
    let eval_epoch = records.eval_loss.as_ref().map(|(epoch, _)| i64::from(*epoch));
    for block in blocks {
        let mut insert = sqlx::query(
            "INSERT INTO record_blocks (run_id, first_sample, samples, epochs, correct, p_true, loss, predicted, margin, el2n, eval_loss, eval_loss_epoch)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(block.first_sample as i64)
        .bind(block.samples as i64)
        .bind(records.columns.len() as i64);
        for column in &block.columns {
            insert = insert.bind(column);
        }
        insert.bind(&block.eval_loss).bind(eval_epoch).execute(&mut **tx).await.map_err(internal)?;
    }
    sqlx::query("DELETE FROM epoch_records WHERE run_id = ?").bind(run_id).execute(&mut **tx).await.map_err(internal)?;
    Ok(())
}

fn decoded(row: &sqlx::sqlite::SqliteRow, name: &str) -> Result<Vec<u8>, Failure> {
    codec::decode(&row.get::<Vec<u8>, _>(name)).map_err(|e| internal(format!("record block column {name}: {e}")))
}

async fn read_sealed(pool: &SqlitePool, run_id: i64) -> Result<RunRecords, Failure> {
    let rows = sqlx::query("SELECT * FROM record_blocks WHERE run_id = ? ORDER BY first_sample").bind(run_id).fetch_all(pool).await.map_err(internal)?;
    let epochs = rows.first().map_or(0, |r| r.get::<i64, _>("epochs") as usize);
    let samples: usize = rows.iter().map(|r| r.get::<i64, _>("samples") as usize).sum();
    let mut records = RunRecords { epochs: (1..=epochs as u32).collect(), columns: vec![EpochColumns::zeroed(samples); epochs], eval_loss: None };
    let mut eval_loss = Vec::new();
    for row in &rows {
        let first = row.get::<i64, _>("first_sample") as usize;
        let count = row.get::<i64, _>("samples") as usize;
        let columns: Vec<Vec<u8>> = COLUMNS.iter().map(|(name, _)| decoded(row, name)).collect::<Result<_, _>>()?;
        for (name, width) in COLUMNS {
            if columns[COLUMNS.iter().position(|c| c.0 == name).unwrap()].len() != count * epochs * width {
                return Err(internal(format!("record block {first} of run #{run_id}: column {name} has the wrong length")));
            }
        }
        for s in 0..count {
            for (e, epoch) in records.columns.iter_mut().enumerate() {
                let i = s * epochs + e;
                let f32_at = |c: usize| f32::from_le_bytes(columns[c][i * 4..i * 4 + 4].try_into().unwrap());
                epoch.correct[first + s] = columns[0][i];
                epoch.p_true[first + s] = f32_at(1);
                epoch.loss[first + s] = f32_at(2);
                epoch.predicted[first + s] = u16::from_le_bytes([columns[3][i * 2], columns[3][i * 2 + 1]]);
                epoch.margin[first + s] = f32_at(4);
                epoch.el2n[first + s] = f32_at(5);
            }
        }
        if let Some(epoch) = row.get::<Option<i64>, _>("eval_loss_epoch") {
            eval_loss.extend(unpack_f32(&decoded(row, "eval_loss")?).map_err(internal)?);
            records.eval_loss = Some((epoch as u32, Vec::new()));
        }
    }
    if let Some((_, loss)) = &mut records.eval_loss {
        *loss = eval_loss;
    }
    Ok(records)
}

/// One sample's records in one run: a block's first four columns when sealed, else the
/// sample's entry of every epoch row.
pub async fn trace(pool: &SqlitePool, run_id: i64, sample_index: usize) -> Result<Trace, Failure> {
    let first = (sample_index / BLOCK * BLOCK) as i64;
    let row = sqlx::query("SELECT epochs, correct, p_true, loss, predicted FROM record_blocks WHERE run_id = ? AND first_sample = ?")
        .bind(run_id)
        .bind(first)
        .fetch_optional(pool)
        .await
        .map_err(internal)?;
    let Some(row) = row else {
        let records = read_epochs(pool, run_id).await?;
        return Ok(Trace {
            correct: records.columns.iter().map(|c| c.correct[sample_index]).collect(),
            p_true: records.columns.iter().map(|c| c.p_true[sample_index]).collect(),
            loss: records.columns.iter().map(|c| c.loss[sample_index]).collect(),
            predicted: records.columns.iter().map(|c| c.predicted[sample_index]).collect(),
        });
    };
    let epochs = row.get::<i64, _>("epochs") as usize;
    let at = sample_index - first as usize;
    let range = |width: usize| at * epochs * width..(at + 1) * epochs * width;
    let slice = |name: &str, width: usize| -> Result<Vec<u8>, Failure> {
        let column = decoded(&row, name)?;
        column.get(range(width)).map(<[u8]>::to_vec).ok_or_else(|| internal(format!("record block {first} of run #{run_id} is short")))
    };
    Ok(Trace {
        correct: slice("correct", 1)?,
        p_true: unpack_f32(&slice("p_true", 4)?).map_err(internal)?,
        loss: unpack_f32(&slice("loss", 4)?).map_err(internal)?,
        predicted: unpack_u16(&slice("predicted", 2)?).map_err(internal)?,
    })
}
