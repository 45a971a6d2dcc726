//! Optimizers and learning-rate schedules, written out so that their state can be saved in a
//! checkpoint and restored exactly (libtorch's C++ optimizers do not expose their state
//! through tch). The update rules are PyTorch's, step for step; a test checks them against
//! libtorch's own `SGD` and `AdamW`.

use anyhow::{Context, Result, bail};
use protocol::{Hyper, Optimizer, Schedule};
use tch::{Kind, Tensor, nn};

/// AdamW's moment decay rates and denominator guard (PyTorch's defaults).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// One parameter with its optimizer state.
struct Slot {
    name: String,
    param: Tensor,
    /// Whether weight decay applies (see [`decays`]).
    decay: bool,
    /// SGD: the momentum buffer. AdamW: the first moment.
    first: Option<Tensor>,
    /// AdamW: the second moment.
    second: Option<Tensor>,
    /// Updates this parameter has taken. Parameters frozen during the head warmup take none,
    /// so AdamW's bias correction counts per parameter.
    steps: i64,
}

pub struct Optim {
    kind: Optimizer,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    slots: Vec<Slot>,
}

/// Weight decay applies to weight matrices and convolution kernels (two or more dimensions),
/// not to biases, normalisation parameters, position embeddings or the class token: the
/// usual practice for fine-tuning (timm, DeiT), and harmless for the small CNN.
pub fn decays(name: &str, param: &Tensor) -> bool {
    param.dim() >= 2 && !name.ends_with("pos_embed") && !name.ends_with("cls_token")
}

impl Optim {
    /// An optimizer over the trainable variables of `vs`, in name order (so the state of a
    /// checkpoint lines up with its parameters).
    pub fn new(vs: &nn::VarStore, kind: Optimizer, hyper: &Hyper, decay: fn(&str, &Tensor) -> bool) -> Self {
        let variables = vs.variables_.lock().expect("var store lock");
        let trainable: Vec<*mut std::ffi::c_void> = variables.trainable_variables.iter().map(|v| v.tensor.data_ptr()).collect();
        let mut slots: Vec<Slot> = variables
            .named_variables
            .iter()
            .filter(|(_, t)| trainable.contains(&t.data_ptr()))
            .map(|(name, t)| Slot { name: name.clone(), param: t.shallow_clone(), decay: decay(name, t), first: None, second: None, steps: 0 })
            .collect();
        slots.sort_by(|a, b| a.name.cmp(&b.name));
        Optim { kind, momentum: hyper.momentum, nesterov: hyper.nesterov, weight_decay: hyper.weight_decay, slots }
    }

    /// Gradients of `loss` for every parameter that trains now (those frozen for the head
    /// warmup are left out), as `torch.autograd.grad` computes them: fresh tensors, nothing
    /// zeroed or accumulated in `.grad`.
    pub fn gradients(&self, loss: &Tensor) -> Vec<(usize, Tensor)> {
        let active: Vec<usize> = (0..self.slots.len()).filter(|&i| self.slots[i].param.requires_grad()).collect();
        let params: Vec<&Tensor> = active.iter().map(|&i| &self.slots[i].param).collect();
        active.into_iter().zip(Tensor::run_backward(&[loss], &params, false, false)).collect()
    }

    /// Back-propagates `loss` and takes one step at rate `lr`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) {
        let grads = self.gradients(loss);
        self.apply(&grads, lr);
    }

    /// One update of the parameters in `grads` (slot index, gradient).
    pub fn apply(&mut self, grads: &[(usize, Tensor)], lr: f64) {
        let (kind, momentum, nesterov, wd) = (self.kind, self.momentum, self.nesterov, self.weight_decay);
        tch::no_grad(|| {
            for (i, grad) in grads {
                let slot = &mut self.slots[*i];
                slot.steps += 1;
                let wd = if slot.decay { wd } else { 0.0 };
                match kind {
                    Optimizer::Sgd => sgd(slot, grad, lr, momentum, nesterov, wd),
                    Optimizer::Adamw => adamw(slot, grad, lr, wd),
                }
            }
        });
    }

    /// The optimizer state as named tensors, for a checkpoint: `{param}::first`,
    /// `{param}::second` and `{param}::steps` (a one-element int64 tensor).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for slot in &self.slots {
            if let Some(t) = &slot.first {
                out.push((format!("{}::first", slot.name), t.shallow_clone()));
            }
            if let Some(t) = &slot.second {
                out.push((format!("{}::second", slot.name), t.shallow_clone()));
            }
            out.push((format!("{}::steps", slot.name), Tensor::from_slice(&[slot.steps])));
        }
        out
    }

    /// Restores what [`Optim::state`] saved. Every parameter's step count must be present.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let find = |key: String| state.iter().find(|(k, _)| *k == key).map(|(_, t)| t);
        for slot in &mut self.slots {
            let steps = find(format!("{}::steps", slot.name)).with_context(|| format!("the checkpoint has no optimizer state for {}", slot.name))?;
            slot.steps = steps.int64_value(&[0]);
            let device = slot.param.device();
            slot.first = find(format!("{}::first", slot.name)).map(|t| t.to_device(device));
            slot.second = find(format!("{}::second", slot.name)).map(|t| t.to_device(device));
            for buffer in [&slot.first, &slot.second].into_iter().flatten() {
                if buffer.size() != slot.param.size() {
                    bail!("the checkpoint's optimizer state for {} has shape {:?}, the parameter {:?}", slot.name, buffer.size(), slot.param.size());
                }
            }
        }
        Ok(())
    }
}

/// Multiplies every gradient by `factor` (loss scaling); returns whether all of them are
/// finite. One host synchronisation for all parameters.
pub fn unscale(grads: &mut [(usize, Tensor)], factor: f64) -> bool {
    tch::no_grad(|| {
        let mut non_finite: Option<Tensor> = None;
        for (_, grad) in grads.iter_mut() {
            let _ = grad.g_mul_scalar_(factor);
            let bad = grad.isfinite().logical_not().sum(Kind::Int64);
            non_finite = Some(match non_finite {
                Some(total) => total + bad,
                None => bad,
            });
        }
        non_finite.is_none_or(|t| t.int64_value(&[]) == 0)
    })
}

/// PyTorch's SGD: `g = grad + wd p`; `b = m b + g` (`b = g` at the first step);
/// `g = g + m b` (Nesterov) or `g = b`; `p -= lr g`.
fn sgd(slot: &mut Slot, grad: &Tensor, lr: f64, momentum: f64, nesterov: bool, wd: f64) {
    // `grad` is ours (fresh from autograd), so it is updated in place; `addcmul_` with a
    // 0-d scalar tensor is an axpy in one pass without a temporary.
    let scalar = |value: f64| Tensor::scalar_tensor(value, (slot.param.kind(), slot.param.device()));
    let mut g = grad.shallow_clone();
    if wd != 0.0 {
        let _ = g.addcmul_(&slot.param, &scalar(wd));
    }
    if momentum != 0.0 {
        let buffer = match slot.first.take() {
            None => g.copy(),
            // b = m b + g, written into g's storage, which then becomes the buffer.
            Some(b) if !nesterov => g.addcmul_(&b, &scalar(momentum)),
            Some(mut b) => b.g_mul_scalar_(momentum).g_add_(&g),
        };
        if nesterov {
            let _ = g.addcmul_(&buffer, &scalar(momentum));
        } else {
            g = buffer.shallow_clone();
        }
        slot.first = Some(buffer);
    }
    let _ = slot.param.addcmul_(&g, &scalar(-lr));
}

/// PyTorch's AdamW (Loshchilov & Hutter 2019): `p *= 1 - lr wd`; `m = b1 m + (1-b1) g`;
/// `v = b2 v + (1-b2) g^2`; `p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`.
fn adamw(slot: &mut Slot, grad: &Tensor, lr: f64, wd: f64) {
    if wd != 0.0 {
        let _ = slot.param.g_mul_scalar_(1.0 - lr * wd);
    }
    let mut m = slot.first.take().unwrap_or_else(|| grad.zeros_like());
    let mut v = slot.second.take().unwrap_or_else(|| grad.zeros_like());
    let _ = m.lerp_(grad, 1.0 - BETA1);
    let _ = v.g_mul_scalar_(BETA2).g_add_(&(grad * grad * (1.0 - BETA2)));
    let t = slot.steps as i32;
    let correction1 = 1.0 - BETA1.powi(t);
    let correction2 = 1.0 - BETA2.powi(t);
    let denominator = (&v / correction2).sqrt() + EPS;
    let _ = slot.param.g_sub_(&((&m / denominator) * (lr / correction1)));
    slot.first = Some(m);
    slot.second = Some(v);
}

/// The learning rate of a step. The head warmup runs at the base rate. Fine-tuning step
/// `s` of `total` (both counted from 0 within fine-tuning) starts with a linear warmup over
/// `warmup` steps (rate `lr (s+1)/warmup`), then follows the schedule over the remaining
/// steps: constant; cosine `lr (1 + cos(pi k / K)) / 2` for `k` of `K` post-warmup steps;
/// or step, `lr gamma^floor(epoch / step_epochs)`.
pub fn learning_rate(base: f64, hyper: &Hyper, finetune_step: Option<u64>, total: u64, steps_per_epoch: u64) -> f64 {
    let Some(s) = finetune_step else { return base };
    let warmup = u64::from(hyper.lr_warmup_epochs) * steps_per_epoch;
    if s < warmup {
        return base * (s + 1) as f64 / warmup as f64;
    }
    match hyper.schedule {
        Schedule::Constant => base,
        Schedule::Cosine => {
            let k = (s - warmup) as f64;
            let span = total.saturating_sub(warmup).max(1) as f64;
            base * 0.5 * (1.0 + (std::f64::consts::PI * k / span).cos())
        }
        Schedule::Step => {
            let epoch = s / steps_per_epoch.max(1);
            base * hyper.step_gamma.powi((epoch / u64::from(hyper.step_epochs.max(1))) as i32)
        }
    }
}

/// Mean loss with label smoothing, as `torch.nn.functional.cross_entropy`.
pub fn training_loss(logits: &Tensor, targets: &Tensor, label_smoothing: f64) -> Tensor {
    logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(targets, None, tch::Reduction::Mean, -100, label_smoothing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;
    use tch::nn::{Module, OptimizerConfig};

    fn all(_: &str, _: &Tensor) -> bool {
        true
    }

    /// Trains the same tiny regression with ours and with libtorch's optimizer; the
    /// parameters must agree after several steps.
    fn agree(kind: Optimizer, hyper: Hyper, reference: impl OptimizerConfig) {
        let _torch = crate::test_support::exclusive();
        tch::manual_seed(0);
        let make = || {
            let vs = nn::VarStore::new(Device::Cpu);
            let layer = nn::linear(vs.root() / "l", 4, 3, Default::default());
            (vs, layer)
        };
        let (vs_a, layer_a) = make();
        let (mut vs_b, layer_b) = make();
        vs_b.copy(&vs_a).unwrap();
        let x = Tensor::randn([8, 4], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        let mut ours = Optim::new(&vs_a, kind, &hyper, all);
        let mut theirs = reference.build(&vs_b, 0.05).unwrap();
        for _ in 0..5 {
            ours.backward_step(&(layer_a.forward(&x) - &y).square().mean(Kind::Float), 0.05);
            theirs.backward_step(&(layer_b.forward(&x) - &y).square().mean(Kind::Float));
        }
        for (name, a) in vs_a.variables() {
            let b = &vs_b.variables()[&name];
            let diff = (&a - b).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{kind} {name}: differs from libtorch by {diff}");
            assert!(!a.allclose(&Tensor::zeros_like(&a), 0.0, 0.0, false));
        }
    }

    #[test]
    fn sgd_matches_libtorch() {
        let hyper = Hyper { momentum: 0.9, nesterov: false, weight_decay: 1e-2, ..Hyper::default() };
        agree(Optimizer::Sgd, hyper, nn::Sgd { momentum: 0.9, dampening: 0.0, wd: 1e-2, nesterov: false });
    }

    #[test]
    fn nesterov_sgd_matches_libtorch() {
        let hyper = Hyper { momentum: 0.8, nesterov: true, weight_decay: 0.0, ..Hyper::default() };
        agree(Optimizer::Sgd, hyper, nn::Sgd { momentum: 0.8, dampening: 0.0, wd: 0.0, nesterov: true });
    }

    #[test]
    fn adamw_matches_libtorch() {
        let hyper = Hyper { weight_decay: 0.05, ..Hyper::default() };
        agree(Optimizer::Adamw, hyper, nn::AdamW { beta1: BETA1, beta2: BETA2, wd: 0.05, eps: EPS, amsgrad: false });
    }

    #[test]
    fn schedules_follow_their_formulas() {
        let base = 0.1;
        let hyper = |schedule, lr_warmup_epochs| Hyper { schedule, lr_warmup_epochs, step_epochs: 2, step_gamma: 0.5, ..Hyper::default() };
        // Head warmup: the base rate.
        assert_eq!(learning_rate(base, &hyper(Schedule::Cosine, 1), None, 100, 10), base);
        // Linear warmup over one epoch of 10 steps, then cosine over the other 90.
        let cosine = hyper(Schedule::Cosine, 1);
        assert!((learning_rate(base, &cosine, Some(0), 100, 10) - 0.01).abs() < 1e-12);
        assert!((learning_rate(base, &cosine, Some(9), 100, 10) - 0.1).abs() < 1e-12);
        assert!((learning_rate(base, &cosine, Some(10), 100, 10) - 0.1).abs() < 1e-12);
        assert!((learning_rate(base, &cosine, Some(55), 100, 10) - 0.05).abs() < 1e-12);
        assert!(learning_rate(base, &cosine, Some(99), 100, 10) < 1e-4);
        // Step: halved every two epochs.
        let step = hyper(Schedule::Step, 0);
        assert_eq!(learning_rate(base, &step, Some(19), 100, 10), base);
        assert_eq!(learning_rate(base, &step, Some(20), 100, 10), base * 0.5);
        assert_eq!(learning_rate(base, &step, Some(45), 100, 10), base * 0.25);
    }

    #[test]
    fn state_round_trips_and_decay_skips_biases() {
        let _torch = crate::test_support::exclusive();
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = nn::linear(vs.root() / "l", 4, 3, Default::default());
        let mut optim = Optim::new(&vs, Optimizer::Adamw, &Hyper::default(), decays);
        assert_eq!(optim.slots.iter().map(|s| (s.name.as_str(), s.decay)).collect::<Vec<_>>(), vec![("l.bias", false), ("l.weight", true)]);
        let x = Tensor::randn([8, 4], (Kind::Float, Device::Cpu));
        optim.backward_step(&layer.forward(&x).square().mean(Kind::Float), 0.01);
        let saved = optim.state();
        let mut fresh = Optim::new(&vs, Optimizer::Adamw, &Hyper::default(), decays);
        fresh.load_state(&saved).unwrap();
        assert_eq!(fresh.slots[1].steps, 1);
        assert!(fresh.slots[1].second.as_ref().unwrap().allclose(optim.slots[1].second.as_ref().unwrap(), 0.0, 0.0, false));
        let missing = fresh.load_state(&saved[..1]).unwrap_err().to_string();
        assert!(missing.contains("no optimizer state for l.bias") || missing.contains("no optimizer state for l.weight"), "{missing}");
    }
}
