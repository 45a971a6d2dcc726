//! The binary form of an epoch upload (`PUT /api/v1/worker/jobs/{job}/epochs/{epoch}` with
//! `Content-Type: application/x-forgetlab-epoch`). The same [`EpochUpload`] as the JSON form,
//! which the route still takes, in about a fifth of the bytes and without decimal printing:
//! 19 bytes a sample instead of about 85 (issue 18, item 4).
//!
//! Layout, every number little-endian:
//! ```text
//! "FLEPOCH1"                     8 bytes
//! header length H                u32
//! header                         H bytes of JSON: EpochHeader
//! correct                        n x u8
//! loss, p_true, margin           n x f32 each
//! predicted                      n x u16
//! el2n                           n x f32
//! val_confusion (if any)         confusion x u32
//! eval_loss (if any)             n x f32
//! shown (if any)                 ceil(n / 8) bytes (pack::pack_bits)
//! ```
//! Decoding checks every length exactly, so a cut or padded body is refused with its reason.

use serde::{Deserialize, Serialize};

use crate::EpochMetrics;
use crate::pack::{pack_f32, pack_u16, pack_u32, unpack_f32, unpack_u16, unpack_u32};
use crate::worker::{EpochColumns, EpochUpload};

pub const EPOCH_CONTENT_TYPE: &str = "application/x-forgetlab-epoch";
const MAGIC: &[u8; 8] = b"FLEPOCH1";

/// What comes before the columns: the metrics and the lengths of what follows.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochHeader {
    metrics: EpochMetrics,
    /// Training samples: the length of every column.
    samples: u32,
    /// Cells of the validation confusion matrix; absent when there is none.
    confusion: Option<u32>,
    eval_loss: bool,
    shown: bool,
}

/// The bytes of `upload` in the layout above.
pub fn encode_epoch(upload: &EpochUpload) -> Vec<u8> {
    let c = &upload.columns;
    let n = c.correct.len();
    let header = EpochHeader {
        metrics: upload.metrics.clone(),
        samples: n as u32,
        confusion: upload.val_confusion.as_ref().map(|v| v.len() as u32),
        eval_loss: upload.eval_loss.is_some(),
        shown: upload.shown.is_some(),
    };
    let header = serde_json::to_vec(&header).expect("the header serialises");
    let mut out = Vec::with_capacity(12 + header.len() + 19 * n + n / 8 + 1);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&c.correct);
    for column in [&c.loss, &c.p_true, &c.margin] {
        out.extend_from_slice(&pack_f32(column));
    }
    out.extend_from_slice(&pack_u16(&c.predicted));
    out.extend_from_slice(&pack_f32(&c.el2n));
    if let Some(confusion) = &upload.val_confusion {
        out.extend_from_slice(&pack_u32(confusion));
    }
    if let Some(loss) = &upload.eval_loss {
        out.extend_from_slice(&pack_f32(loss));
    }
    if let Some(shown) = &upload.shown {
        out.extend_from_slice(shown);
    }
    out
}

/// Reads what [`encode_epoch`] wrote, or says what is wrong with the bytes.
pub fn decode_epoch(bytes: &[u8]) -> Result<EpochUpload, String> {
    let mut rest = Reader(bytes);
    if rest.take(8, "the format marker")? != MAGIC {
        return Err(format!("a binary epoch upload starts with {:?}", String::from_utf8_lossy(MAGIC)));
    }
    let header_len = u32::from_le_bytes(rest.take(4, "the header length")?.try_into().expect("4 bytes")) as usize;
    let header: EpochHeader = serde_json::from_slice(rest.take(header_len, "the header")?).map_err(|e| format!("the header: {e}"))?;
    let n = header.samples as usize;
    let f32s = |rest: &mut Reader, what: &str| rest.take(4 * n, what).map(|b| unpack_f32(b).expect("a multiple of 4"));
    let correct = rest.take(n, "correct")?.to_vec();
    let loss = f32s(&mut rest, "loss")?;
    let p_true = f32s(&mut rest, "p_true")?;
    let margin = f32s(&mut rest, "margin")?;
    let predicted = unpack_u16(rest.take(2 * n, "predicted")?).expect("a multiple of 2");
    let el2n = f32s(&mut rest, "el2n")?;
    let val_confusion = match header.confusion {
        Some(cells) => Some(unpack_u32(rest.take(4 * cells as usize, "val_confusion")?).expect("a multiple of 4")),
        None => None,
    };
    let eval_loss = if header.eval_loss { Some(f32s(&mut rest, "eval_loss")?) } else { None };
    let shown = if header.shown { Some(rest.take(n.div_ceil(8), "shown")?.to_vec()) } else { None };
    if !rest.0.is_empty() {
        return Err(format!("{} bytes follow the last column the header announces", rest.0.len()));
    }
    let columns = EpochColumns { correct, loss, p_true, margin, predicted, el2n };
    Ok(EpochUpload { metrics: header.metrics, columns, val_confusion, eval_loss, shown })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err(format!("the body ends inside {what}: {len} bytes expected, {} left", self.0.len()));
        }
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Phase;

    fn upload(n: usize, extras: bool) -> EpochUpload {
        // Values with every mantissa bit in use, as a trained model's are.
        let f = |k: f32| (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / 16_777_216.0 * k).collect::<Vec<_>>();
        EpochUpload {
            metrics: EpochMetrics {
                epoch: 3,
                phase: Phase::Finetune,
                train_loss: 0.1 + 0.2,
                train_accuracy: 0.75,
                val_loss: Some(f64::MIN_POSITIVE),
                val_accuracy: None,
                lr: 1e-3,
                seconds: 2.5,
            },
            columns: EpochColumns {
                correct: (0..n).map(|i| (i % 2) as u8).collect(),
                loss: f(0.25),
                p_true: vec![f32::MIN_POSITIVE; n],
                margin: (0..n).map(|i| if i == 0 { f32::INFINITY } else { -(i as f32) / 3.0 }).collect(),
                predicted: (0..n).map(|i| (i * 7 % 65_536) as u16).collect(),
                el2n: f(1e-7),
            },
            val_confusion: extras.then(|| vec![1, 2, 3, 4]),
            eval_loss: extras.then(|| f(0.5)),
            shown: extras.then(|| crate::pack::pack_bits(&(0..n).map(|i| i % 3 == 0).collect::<Vec<_>>())),
        }
    }

    #[test]
    fn an_epoch_comes_back_bit_for_bit() {
        for (n, extras) in [(0, false), (1, true), (13, true), (1000, false)] {
            let original = upload(n, extras);
            let bytes = encode_epoch(&original);
            let back = decode_epoch(&bytes).unwrap();
            // Equal values, and (encoding again) equal bits.
            assert_eq!(back, original);
            assert_eq!(encode_epoch(&back), bytes);
        }
    }

    #[test]
    fn the_binary_form_is_a_fifth_of_the_json() {
        let original = upload(10_000, true);
        let binary = encode_epoch(&original).len();
        // As the worker sent it before: through serde_json::Value, so every f32 printed as the
        // f64 it widens to (17 significant digits).
        let json = serde_json::to_vec(&serde_json::to_value(&original).unwrap()).unwrap().len();
        assert!(binary * 4 < json, "binary {binary} bytes, JSON {json}");
        // 19 bytes a sample, 4 for the eval loss, 1/8 for the shown bit, and the header.
        assert!(binary <= 23 * 10_000 + 10_000 / 8 + 400, "{binary} bytes for 10,000 samples");
    }

    #[test]
    fn cut_padded_or_foreign_bodies_are_refused_with_their_reason() {
        let bytes = encode_epoch(&upload(10, true));
        assert!(decode_epoch(&bytes[..bytes.len() - 1]).unwrap_err().contains("ends inside shown"));
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode_epoch(&padded).unwrap_err().contains("1 bytes follow"));
        assert!(decode_epoch(b"{\"metrics\": 1}").unwrap_err().contains("starts with"));
        assert!(decode_epoch(&bytes[..10]).unwrap_err().contains("header length"));
        let mut huge = bytes.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_epoch(&huge).unwrap_err().contains("ends inside the header"));
    }
}
