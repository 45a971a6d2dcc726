//! Per-sample measurements of one forward pass, written into the epoch's arrays.

use protocol::worker::EpochColumns;
use tch::{Kind, Tensor};

/// One epoch's per-sample columns being filled in, batch by batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochArrays {
    pub columns: EpochColumns,
    /// How many positions were written this epoch (each must be, exactly once).
    pub written: usize,
}

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
    pub fn new(samples: usize) -> Self {
        Self { columns: EpochColumns::zeroed(samples), written: 0 }
    }

    /// Writes a batch's measures at the manifest positions `positions`.
    pub fn write(&mut self, positions: &[i64], batch: &BatchMeasures) -> anyhow::Result<()> {
        let to_f32 = |t: &Tensor| -> anyhow::Result<Vec<f32>> { Ok(Vec::<f32>::try_from(t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float))?) };
        let loss = to_f32(&batch.loss)?;
        let p_true = to_f32(&batch.p_true)?;
        let margin = to_f32(&batch.margin)?;
        let el2n = to_f32(&batch.el2n)?;
        let correct = Vec::<u8>::try_from(batch.correct.to_device(tch::Device::Cpu).to_kind(Kind::Uint8))?;
        let predicted = Vec::<i64>::try_from(batch.predicted.to_device(tch::Device::Cpu))?;
        let columns = &mut self.columns;
        for (k, &position) in positions.iter().enumerate() {
            let i = position as usize;
            columns.loss[i] = loss[k];
            columns.p_true[i] = p_true[k];
            columns.margin[i] = margin[k];
            columns.el2n[i] = el2n[k];
            columns.correct[i] = correct[k];
            columns.predicted[i] = u16::try_from(predicted[k]).unwrap_or(u16::MAX);
        }
        self.written += positions.len();
        Ok(())
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

        let mut arrays = EpochArrays::new(4);
        arrays.write(&[3, 1], &m).unwrap();
        assert_eq!(arrays.columns.correct, vec![0, 0, 0, 1]);
        assert_eq!(arrays.columns.predicted, vec![0, 2, 0, 0]);
        assert_eq!(arrays.written, 2);
    }
}
