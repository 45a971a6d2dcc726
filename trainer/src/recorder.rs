//! Per-sample measurements of one forward pass, written into the epoch's arrays.

use protocol::worker::EpochColumns;
use tch::{Kind, Tensor};

/// One epoch's per-sample columns being filled in, batch by batch, in a buffer on the
/// training device: a batch's measures are scattered to their manifest positions there, and
/// the whole epoch reaches the host once, in [`EpochArrays::finish`]. No per-batch host sync.
pub struct EpochArrays {
    /// `[7, N]` float32: loss, p_true, margin, el2n, correct, predicted (exact in float32 for
    /// fewer than 2^24 classes), and how many times each position was written.
    buffer: Tensor,
    samples: usize,
}

const ROWS: i64 = 7;
const WRITES: i64 = 6;

/// Measurements of a batch: every tensor is 1-d with one value per sample.
pub struct BatchMeasures {
    pub loss: Tensor,
    pub correct: Tensor,
    pub p_true: Tensor,
    pub margin: Tensor,
    pub predicted: Tensor,
    pub el2n: Tensor,
}

/// Per-sample loss (cross-entropy), correctness, softmax probability of the true class,
/// margin (true logit minus the largest other logit), predicted class and EL2N
/// (`||softmax - onehot||_2`, Paul et al. 2021) from `logits [N, K]` and `targets [N]`.
pub fn measure(logits: &Tensor, targets: &Tensor) -> BatchMeasures {
    let logits = logits.to_kind(Kind::Float);
    let classes = logits.size()[1];
    let targets_col = targets.unsqueeze(1);
    let log_probs = logits.log_softmax(1, Kind::Float);
    let probs = log_probs.exp();
    let loss = -log_probs.gather(1, &targets_col, false).squeeze_dim(1);
    let p_true = probs.gather(1, &targets_col, false).squeeze_dim(1);
    let predicted = logits.argmax(1, false);
    let correct = predicted.eq_tensor(targets);
    let true_logit = logits.gather(1, &targets_col, false).squeeze_dim(1);
    let best_other = logits.scatter_value(1, &targets_col, f64::NEG_INFINITY).amax([1], false);
    let margin = true_logit - best_other;
    let one_hot = targets.one_hot(classes).to_kind(Kind::Float);
    let el2n = (probs - one_hot).square().sum_dim_intlist(&[1i64][..], false, Kind::Float).sqrt();
    BatchMeasures { loss, correct, p_true, margin, predicted, el2n }
}

impl EpochArrays {
    pub fn new(samples: usize, device: tch::Device) -> Self {
        Self { buffer: Tensor::zeros([ROWS, samples as i64], (Kind::Float, device)), samples }
    }

    /// Writes a batch's measures at the manifest positions `positions` (an int64 tensor on the
    /// buffer's device).
    pub fn write(&mut self, positions: &Tensor, batch: &BatchMeasures) {
        tch::no_grad(|| {
            let rows = Tensor::stack(
                &[&batch.loss, &batch.p_true, &batch.margin, &batch.el2n, &batch.correct.to_kind(Kind::Float), &batch.predicted.to_kind(Kind::Float)],
                0,
            )
            .to_kind(Kind::Float);
            let _ = self.buffer.narrow(0, 0, WRITES).index_copy_(1, positions, &rows);
            let _ = self.buffer.get(WRITES).index_add_(0, positions, &positions.ones_like().to_kind(Kind::Float));
        });
    }

    /// The epoch's columns on the host (one transfer). Every position must have been written
    /// exactly once.
    pub fn finish(self) -> anyhow::Result<EpochColumns> {
        let n = self.samples;
        let host = Vec::<f32>::try_from(self.buffer.to_device(tch::Device::Cpu).flatten(0, -1))?;
        let row = |r: i64| &host[r as usize * n..(r as usize + 1) * n];
        let writes = row(WRITES);
        if let Some(position) = writes.iter().position(|&w| w != 1.0) {
            let unwritten = writes.iter().filter(|&&w| w == 0.0).count();
            let repeated = writes.iter().filter(|&&w| w > 1.0).count();
            anyhow::bail!(
                "the epoch's records are incomplete: {unwritten} of {n} samples unwritten, {repeated} written more than once (first at position {position})"
            );
        }
        Ok(EpochColumns {
            loss: row(0).to_vec(),
            p_true: row(1).to_vec(),
            margin: row(2).to_vec(),
            el2n: row(3).to_vec(),
            correct: row(4).iter().map(|&c| c as u8).collect(),
            predicted: row(5).iter().map(|&p| p as u16).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_match_hand_computed_values() {
        // Sample 0: logits (2, 0, 0), target 0 -> correct; sample 1: logits (0, 1, 3), target 1 -> wrong.
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 0.0, 1.0, 3.0]).view([2, 3]);
        let targets = Tensor::from_slice(&[0i64, 1]);
        let m = measure(&logits, &targets);
        let softmax0 = [2f64.exp(), 1.0, 1.0].map(|v| v / (2f64.exp() + 2.0));
        let z1 = 1.0 + 1f64.exp() + 3f64.exp();
        let softmax1 = [1.0 / z1, 1f64.exp() / z1, 3f64.exp() / z1];
        let close = |t: &Tensor, i: i64, want: f64| assert!((t.double_value(&[i]) - want).abs() < 1e-5, "{} vs {want}", t.double_value(&[i]));
        close(&m.p_true, 0, softmax0[0]);
        close(&m.p_true, 1, softmax1[1]);
        close(&m.loss, 0, -softmax0[0].ln());
        close(&m.loss, 1, -softmax1[1].ln());
        close(&m.margin, 0, 2.0);
        close(&m.margin, 1, -2.0);
        let el2n0 = ((softmax0[0] - 1.0).powi(2) + softmax0[1].powi(2) + softmax0[2].powi(2)).sqrt();
        close(&m.el2n, 0, el2n0);
        assert_eq!(m.predicted.int64_value(&[1]), 2);
        assert!(m.correct.int64_value(&[0]) == 1 && m.correct.int64_value(&[1]) == 0);

        let mut arrays = EpochArrays::new(4, tch::Device::Cpu);
        arrays.write(&Tensor::from_slice(&[3i64, 1]), &m);
        arrays.write(&Tensor::from_slice(&[0i64, 2]), &m);
        let columns = arrays.finish().unwrap();
        assert_eq!(columns.correct, vec![1, 0, 0, 1]);
        assert_eq!(columns.predicted, vec![0, 2, 2, 0]);
        assert!((f64::from(columns.loss[3]) + softmax0[0].ln()).abs() < 1e-5);
    }

    #[test]
    fn an_epoch_with_a_sample_missing_or_written_twice_is_refused() {
        let m = measure(&Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]), &Tensor::from_slice(&[0i64, 1]));
        let mut arrays = EpochArrays::new(3, tch::Device::Cpu);
        arrays.write(&Tensor::from_slice(&[0i64, 1]), &m);
        let message = arrays.finish().unwrap_err().to_string();
        assert!(message.contains("1 of 3 samples unwritten, 0 written more than once"), "{message}");
        let mut arrays = EpochArrays::new(3, tch::Device::Cpu);
        arrays.write(&Tensor::from_slice(&[0i64, 1]), &m);
        arrays.write(&Tensor::from_slice(&[1i64, 2]), &m);
        let message = arrays.finish().unwrap_err().to_string();
        assert!(message.contains("0 of 3 samples unwritten, 1 written more than once (first at position 1)"), "{message}");
    }
}
