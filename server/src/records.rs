//! Where the per-sample records live.
//!
//! While a run trains, `epoch_records` holds one row per (run, epoch) of packed arrays, as
//! the worker uploads them (an upload replaces its epoch; a resumed run appends). When the run
//! succeeds its records are sealed: transposed into `record_blocks` of [`BLOCK`] samples x every
//! epoch, each column encoded by [`crate::codec`] (byte planes, zstd; p_true stored as its
//! XOR with `exp(-loss)`, [`codec::predict_p_true`]), and the epoch rows are deleted. One sample's trajectory is then one block per run,
//! and the whole run is read back in epoch order for exports and recomputation.

use protocol::Failure;
use protocol::pack::{pack_f32, unpack_f32, unpack_u16};
use protocol::worker::EpochColumns;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::codec;
use crate::db::internal;

/// Samples per sealed block: a trajectory decodes this many samples' records per run.
pub const BLOCK: usize = 64;

/// How sealed blocks keep margin and EL2N (`FORGETLAB_RECORD_PRECISION`). Correctness,
/// predictions, loss and p_true, from which every statistic of docs/design.md is computed, are
/// always kept bit for bit; so are margin and EL2N while a run trains, and the per-sample
/// statistics are computed before sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RecordPrecision {
    /// Bit for bit as the worker sent them.
    #[default]
    Exact,
    /// Rounded to 11 significant bits (float16's precision, float32's range): relative
    /// error at most 2^-11.
    Half,
    /// Rounded to 8 significant bits (bfloat16's precision): relative error at most 2^-8.
    Bfloat,
}

impl RecordPrecision {
    /// Significant bits kept of a float32 (24: all).
    pub fn significant_bits(self) -> u32 {
        match self {
            RecordPrecision::Exact => 24,
            RecordPrecision::Half => 11,
            RecordPrecision::Bfloat => 8,
        }
    }
}

/// `x` rounded to the nearest float32 with `bits` significant bits, ties away from zero
/// (subnormals, below 2^-126, lose the same low bits: an absolute error of at most
/// 2^-126 x 2^-bits); NaN, infinities and zeros unchanged. The dropped mantissa bits become
/// zeros, which the byte planes and zstd then store almost for free.
pub fn round_significant(x: f32, bits: u32) -> f32 {
    if bits >= 24 || !x.is_finite() {
        return x;
    }
    let dropped = 24 - bits;
    let rounded = (x.to_bits() + (1 << (dropped - 1))) & !((1u32 << dropped) - 1);
    f32::from_bits(rounded)
}

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

/// Whether the run's records are sealed: blocks hold every one of its samples. While
/// [`store_sealed`] writes them, some blocks exist and the epoch rows are still complete.
async fn sealed(pool: &SqlitePool, run_id: i64) -> Result<bool, Failure> {
    let (blocks, in_blocks, samples): (i64, i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(samples), 0), (SELECT COUNT(*) FROM run_samples WHERE run_id = ?1) FROM record_blocks WHERE run_id = ?1")
            .bind(run_id)
            .fetch_one(pool)
            .await
            .map_err(internal)?;
    Ok(blocks > 0 && in_blocks == samples)
}

/// Every stored record of a run, sealed or not.
pub async fn read(pool: &SqlitePool, run_id: i64) -> Result<RunRecords, Failure> {
    match sealed(pool, run_id).await? {
        true => read_sealed(pool, run_id).await,
        false => read_epochs(pool, run_id).await,
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

impl SealedBlock {
    fn encoded_len(&self) -> usize {
        self.columns.iter().map(Vec::len).sum::<usize>() + self.eval_loss.as_ref().map_or(0, Vec::len)
    }
}

/// Encodes a run's records into blocks (CPU work: call it off the async runtime), margin and
/// EL2N at `precision`. Uses the machine's cores.
pub fn seal(records: &RunRecords, precision: RecordPrecision) -> Vec<SealedBlock> {
    let bits = precision.significant_bits();
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
            codec::encode(&raw, width)
        };
        let f32_at = |f: fn(&EpochColumns) -> &Vec<f32>| move |e: &EpochColumns, s: usize| f(e)[s].to_le_bytes();
        let rounded_at = |f: fn(&EpochColumns) -> &Vec<f32>| move |e: &EpochColumns, s: usize| round_significant(f(e)[s], bits).to_le_bytes();
        let columns = vec![
            gather(1, &|e, s| [e.correct[s], 0, 0, 0]),
            gather(4, &|e, s| codec::p_true_residual(e.p_true[s], e.loss[s]).to_le_bytes()),
            gather(4, &f32_at(|e| &e.loss)),
            gather(2, &|e, s| {
                let [a, b] = e.predicted[s].to_le_bytes();
                [a, b, 0, 0]
            }),
            gather(4, &rounded_at(|e| &e.margin)),
            gather(4, &rounded_at(|e| &e.el2n)),
        ];
        let eval_loss = records.eval_loss.as_ref().map(|(_, loss)| codec::encode(&pack_f32(&loss[first..end]), 4));
        SealedBlock { first_sample: first, samples: end - first, columns, eval_loss }
    };
    let per_thread = starts.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            starts.chunks(per_thread).map(|chunk| scope.spawn(move || chunk.iter().map(|&first| encode_block(first)).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("a sealing thread panicked")).collect()
    })
}

/// Encoded bytes of sealed blocks written per transaction (a few milliseconds of the single
/// writer each).
const SEALED_BYTES_PER_TRANSACTION: usize = 1 << 20;

/// Stores sealed blocks in place of the run's epoch rows, in short transactions: the blocks
/// first (readers keep using the epoch rows until every block is there, see [`read`]), then
/// the epoch rows are deleted one epoch at a time. Safe to run again after a crash.
pub async fn store_sealed(pool: &SqlitePool, run_id: i64, records: &RunRecords, blocks: &[SealedBlock]) -> Result<(), Failure> {
    sqlx::query("DELETE FROM record_blocks WHERE run_id = ?").bind(run_id).execute(pool).await.map_err(internal)?;
    let eval_epoch = records.eval_loss.as_ref().map(|(epoch, _)| i64::from(*epoch));
    let mut rest = blocks;
    while !rest.is_empty() {
        // Blocks while the bytes before each are under the bound (at least one).
        let mut before = 0;
        let count = rest
            .iter()
            .take_while(|b| {
                let fits = before < SEALED_BYTES_PER_TRANSACTION;
                before += b.encoded_len();
                fits
            })
            .count();
        let (chunk, tail) = rest.split_at(count);
        rest = tail;
        let began = std::time::Instant::now();
        let mut tx = pool.begin().await.map_err(internal)?;
        for block in chunk {
            insert_block(&mut tx, run_id, records.columns.len(), block, eval_epoch).await?;
        }
        tx.commit().await.map_err(internal)?;
        crate::db::make_way(began).await;
    }
    let epochs: Vec<i64> = sqlx::query_scalar("SELECT epoch FROM epoch_records WHERE run_id = ?").bind(run_id).fetch_all(pool).await.map_err(internal)?;
    for epoch in epochs {
        let began = std::time::Instant::now();
        sqlx::query("DELETE FROM epoch_records WHERE run_id = ? AND epoch = ?").bind(run_id).bind(epoch).execute(pool).await.map_err(internal)?;
        crate::db::make_way(began).await;
    }
    Ok(())
}

async fn insert_block(tx: &mut Transaction<'_, Sqlite>, run_id: i64, epochs: usize, block: &SealedBlock, eval_epoch: Option<i64>) -> Result<(), Failure> {
    let mut insert = sqlx::query(
        "INSERT INTO record_blocks (run_id, first_sample, samples, epochs, correct, p_true, loss, predicted, margin, el2n, eval_loss, eval_loss_epoch)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(run_id)
    .bind(block.first_sample as i64)
    .bind(block.samples as i64)
    .bind(epochs as i64);
    for column in &block.columns {
        insert = insert.bind(column);
    }
    insert.bind(&block.eval_loss).bind(eval_epoch).execute(&mut **tx).await.map_err(internal)?;
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
        if let Some((name, _)) = COLUMNS.iter().zip(&columns).find(|((_, width), column)| column.len() != count * epochs * width) {
            return Err(internal(format!("record block {first} of run #{run_id}: column {} has the wrong length", name.0)));
        }
        for s in 0..count {
            for (e, epoch) in records.columns.iter_mut().enumerate() {
                let i = s * epochs + e;
                let f32_at = |c: usize| f32::from_le_bytes(columns[c][i * 4..i * 4 + 4].try_into().unwrap());
                epoch.correct[first + s] = columns[0][i];
                epoch.loss[first + s] = f32_at(2);
                epoch.p_true[first + s] = codec::p_true_from_residual(f32_at(1).to_bits(), epoch.loss[first + s]);
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
    let loss = unpack_f32(&slice("loss", 4)?).map_err(internal)?;
    let residuals = unpack_f32(&slice("p_true", 4)?).map_err(internal)?;
    Ok(Trace {
        correct: slice("correct", 1)?,
        p_true: residuals.iter().zip(&loss).map(|(r, &l)| codec::p_true_from_residual(r.to_bits(), l)).collect(),
        loss,
        predicted: unpack_u16(&slice("predicted", 2)?).map_err(internal)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records with awkward values: NaN, infinities, zeros, p_true not equal to exp(-loss).
    fn records(samples: usize, epochs: usize) -> RunRecords {
        let mut rng = dynamics::rng::SplitMix64::new(3);
        let mut next = move || rng.next_u64() as u32;
        let columns = (0..epochs)
            .map(|_| {
                let mut c = EpochColumns::zeroed(samples);
                for s in 0..samples {
                    let loss = (next() % 10_000) as f32 / 1000.0;
                    c.loss[s] = loss;
                    c.p_true[s] = match s % 7 {
                        0 => f32::NAN,
                        1 => 0.0,
                        2 => f32::from_bits(next()),
                        _ => (-loss).exp(),
                    };
                    c.correct[s] = (next() % 2) as u8;
                    c.margin[s] = if s % 11 == 0 { f32::NEG_INFINITY } else { f32::from_bits(next()) };
                    c.predicted[s] = (next() % 200) as u16;
                    c.el2n[s] = f32::from_bits(next() & 0x7fff_ffff);
                }
                c
            })
            .collect();
        RunRecords { epochs: (1..=epochs as u32).collect(), columns, eval_loss: Some((1, (0..samples).map(|s| s as f32 * 0.5).collect())) }
    }

    /// Compares bit patterns (NaN included).
    fn bits(records: &RunRecords) -> Vec<Vec<u32>> {
        records
            .columns
            .iter()
            .flat_map(|c| [c.loss.clone(), c.p_true.clone(), c.margin.clone(), c.el2n.clone()])
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    }

    #[tokio::test]
    async fn sealed_records_read_back_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::connect(&dir.path().join("t.db")).await.unwrap();
        sqlx::query("INSERT INTO datasets (name, format, path, num_classes, class_names, train_size, val_size, image_height, image_width, channels) VALUES ('d', 'idx', '/', 2, '[]', 1, 1, 1, 1, 1)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO runs (id, spec, dataset, arch, seed, epochs) VALUES (1, '{}', 'd', 'small_cnn', 0, 5)").execute(&pool).await.unwrap();
        let original = records(150, 5); // three blocks, the last one short
        for s in 0..150 {
            sqlx::query("INSERT INTO run_samples (run_id, sample_index, dataset_index, sample_key, label) VALUES (1, ?, ?, ?, 0)")
                .bind(s)
                .bind(s)
                .bind(format!("k{s}"))
                .execute(&pool)
                .await
                .unwrap();
        }
        for (epoch, c) in original.epochs.iter().zip(&original.columns) {
            let eval_loss = original.eval_loss.as_ref().filter(|(e, _)| e == epoch).map(|(_, loss)| pack_f32(loss));
            sqlx::query("INSERT INTO epoch_records (run_id, epoch, sample_count, correct, loss, p_true, margin, predicted, el2n, eval_loss) VALUES (1, ?, 150, ?, ?, ?, ?, ?, ?, ?)")
                .bind(epoch)
                .bind(&c.correct)
                .bind(pack_f32(&c.loss))
                .bind(pack_f32(&c.p_true))
                .bind(pack_f32(&c.margin))
                .bind(protocol::pack::pack_u16(&c.predicted))
                .bind(pack_f32(&c.el2n))
                .bind(eval_loss)
                .execute(&pool)
                .await
                .unwrap();
        }
        let blocks = seal(&original, RecordPrecision::Exact);
        assert_eq!(blocks.len(), 3);
        // A server stopped while sealing (issue 18, item 5: blocks are written in several
        // transactions): with some blocks written, the run is read from its epoch rows.
        let mut tx = pool.begin().await.unwrap();
        insert_block(&mut tx, 1, 5, &blocks[0], Some(1)).await.unwrap();
        tx.commit().await.unwrap();
        assert!(!sealed(&pool, 1).await.unwrap());
        assert_eq!(bits(&read(&pool, 1).await.unwrap()), bits(&original));
        store_sealed(&pool, 1, &original, &blocks).await.unwrap();
        assert!(sealed(&pool, 1).await.unwrap());
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM epoch_records WHERE run_id = 1").fetch_one(&pool).await.unwrap();
        assert_eq!(left, 0, "the epoch rows go once every block is stored");
        let back = read(&pool, 1).await.unwrap();
        assert_eq!(back.epochs, original.epochs);
        assert_eq!(bits(&back), bits(&original));
        for (a, b) in back.columns.iter().zip(&original.columns) {
            assert_eq!((&a.correct, &a.predicted), (&b.correct, &b.predicted));
        }
        assert_eq!(back.eval_loss, original.eval_loss);
        for sample in [0, 63, 64, 149] {
            let trace = trace(&pool, 1, sample).await.unwrap();
            assert_eq!(trace.correct, original.columns.iter().map(|c| c.correct[sample]).collect::<Vec<_>>());
            assert_eq!(trace.predicted, original.columns.iter().map(|c| c.predicted[sample]).collect::<Vec<_>>());
            let expected: Vec<u32> = original.columns.iter().map(|c| c.p_true[sample].to_bits()).collect();
            assert_eq!(trace.p_true.iter().map(|p| p.to_bits()).collect::<Vec<_>>(), expected, "sample {sample}");
        }

        // At half precision everything but margin and EL2N is still exact, and those two are
        // within 2^-11 of the sent values, relatively.
        let blocks = seal(&original, RecordPrecision::Half);
        store_sealed(&pool, 1, &original, &blocks).await.unwrap();
        let half = read(&pool, 1).await.unwrap();
        for (a, b) in half.columns.iter().zip(&original.columns) {
            assert_eq!((&a.correct, &a.predicted), (&b.correct, &b.predicted));
            let same = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same(&a.loss, &b.loss) && same(&a.p_true, &b.p_true));
            for (x, y) in a.margin.iter().chain(&a.el2n).zip(b.margin.iter().chain(&b.el2n)) {
                let close =
                    if y.abs() < f32::MIN_POSITIVE { (x - y).abs() <= f32::MIN_POSITIVE * 2f32.powi(-10) } else { ((x - y) / y).abs() <= 2f32.powi(-11) };
                assert!(x.to_bits() == y.to_bits() || close || (x.is_infinite() && y.is_finite()), "{x} from {y}");
            }
        }
    }

    #[test]
    fn rounding_keeps_the_asked_significant_bits() {
        assert_eq!(round_significant(1.0, 11), 1.0);
        assert_eq!(round_significant(1.0 + 2f32.powi(-12), 11), 1.0, "below half a unit: down");
        assert_eq!(round_significant(1.0 + 2f32.powi(-11), 11), 1.0 + 2f32.powi(-10), "half a unit: away from zero");
        assert_eq!(round_significant(-3.1415927, 8), -3.140625);
        assert_eq!(round_significant(f32::from_bits(0x3fff_ffff), 11), 2.0, "the carry moves into the exponent");
        for x in [f32::NAN, f32::INFINITY, -0.0, 0.0] {
            assert_eq!(round_significant(x, 8).to_bits(), x.to_bits());
        }
        assert_eq!(round_significant(0.1, 24), 0.1);
        let mut x = 1e-30f32;
        while x < 1e30 {
            let r = round_significant(x, 11);
            assert!(((r - x) / x).abs() <= 2f32.powi(-11), "{x} -> {r}");
            assert_eq!(r.to_bits() & 0x1fff, 0, "the 13 dropped bits are zero");
            x *= 1.37;
        }
    }
}
