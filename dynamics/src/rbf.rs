//! Repeat before Forgetting (Amiri, Miller & Savova 2017, "Repeat before Forgetting: Spaced
//! Repetition for Efficient and Effective Training of Neural Networks", EMNLP): the kernels
//! that predict an instance's recall, the kernel constant `tau` fitted to the validation
//! items, and the delay after which a recalled instance is reviewed again.
//!
//! An instance's kernel argument is `x = d t / s`: its loss `d` (difficulty), the delay `t` in
//! epochs since it was last reviewed, the network's strength `s` (validation accuracy). Every
//! kernel here is `f(x; tau) = h(tau g(x))` with `g(x) = x` or `x^2` and `h` decreasing from
//! `h(0) = 1`:
//!
//! | kernel | `f(x; tau)` | `g(x)` | `h^-1(p)` |
//! |---|---|---|---|
//! | gaussian | `exp(-tau x^2)` | `x^2` | `-ln p` |
//! | laplace | `exp(-tau x)` | `x` | `-ln p` |
//! | linear | `max(0, 1 - tau x)` | `x` | `1 - p` |
//! | cosine | `(cos(pi tau x) + 1) / 2` for `tau x <= 1`, else 0 | `x` | `acos(2p - 1) / pi` |
//! | quadratic | `max(0, 1 - tau x^2)` | `x^2` | `1 - p` |
//! | secant | `2 / (exp(-tau x^2) + exp(tau x^2))` | `x^2` | `acosh(1 / p)` |
//!
//! The fit ([`fit_tau`]) is closed-form: least squares of the linearised kernel
//! `h^-1(p_i) = tau g(x_i)` through the origin, over the validation items recalled with
//! confidence `p_i >= nu` (the probability of the true class), each measured one epoch after
//! the previous measurement (`t = 1`, since the validation set is measured every epoch and
//! never trained on): `tau = sum g(x_i) h^-1(p_i) / sum g(x_i)^2`. The delay ([`delay`]) is
//! the longest whole number of epochs `t` at which `f(d t / s; tau) >= nu`:
//! `t = floor(s g^-1(h^-1(nu) / tau) / d)`.

use std::f64::consts::PI;
use std::fmt;

use serde::{Deserialize, Serialize};

/// RbF's recall kernels (Amiri et al. 2017, table 1); see the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    #[default]
    Gaussian,
    Laplace,
    Linear,
    Cosine,
    Quadratic,
    Secant,
}

impl Kernel {
    pub const ALL: &'static [Kernel] = &[Kernel::Gaussian, Kernel::Laplace, Kernel::Linear, Kernel::Cosine, Kernel::Quadratic, Kernel::Secant];

    pub fn as_str(self) -> &'static str {
        match self {
            Kernel::Gaussian => "gaussian",
            Kernel::Laplace => "laplace",
            Kernel::Linear => "linear",
            Kernel::Cosine => "cosine",
            Kernel::Quadratic => "quadratic",
            Kernel::Secant => "secant",
        }
    }

    pub fn parse(text: &str) -> Option<Kernel> {
        Kernel::ALL.iter().copied().find(|k| k.as_str() == text)
    }

    /// The kernels' names, comma-separated, for messages.
    pub fn names() -> String {
        Kernel::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Whether the kernel's argument enters squared (`g(x) = x^2`).
    fn squared(self) -> bool {
        matches!(self, Kernel::Gaussian | Kernel::Quadratic | Kernel::Secant)
    }

    fn g(self, x: f64) -> f64 {
        if self.squared() { x * x } else { x }
    }

    fn g_inverse(self, v: f64) -> f64 {
        if self.squared() { v.sqrt() } else { v }
    }

    /// `h(u)`, the kernel as a function of `u = tau g(x) >= 0`.
    fn h(self, u: f64) -> f64 {
        match self {
            Kernel::Gaussian | Kernel::Laplace => (-u).exp(),
            Kernel::Linear | Kernel::Quadratic => (1.0 - u).max(0.0),
            Kernel::Cosine if u <= 1.0 => ((PI * u).cos() + 1.0) / 2.0,
            Kernel::Cosine => 0.0,
            Kernel::Secant => 2.0 / ((-u).exp() + u.exp()),
        }
    }

    /// `h^-1(p)` for a recall `p` in (0, 1]: 0 at `p = 1`, growing as `p` falls.
    fn h_inverse(self, p: f64) -> f64 {
        match self {
            Kernel::Gaussian | Kernel::Laplace => -p.ln(),
            Kernel::Linear | Kernel::Quadratic => 1.0 - p,
            Kernel::Cosine => (2.0 * p - 1.0).clamp(-1.0, 1.0).acos() / PI,
            Kernel::Secant => (1.0 / p).acosh(),
        }
    }

    /// The predicted recall `f(x; tau)`.
    pub fn recall(self, x: f64, tau: f64) -> f64 {
        self.h(tau * self.g(x))
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How close to 1 a confidence reads as certain recall (16 float32 ulps below 1).
pub const CERTAIN: f64 = 1e-6;

/// The kernel argument `x = d t / s` of an instance with loss `d` reviewed `t` epochs ago by a
/// network of strength `s` (a strength of 0 reads as the smallest positive number).
pub fn kernel_x(loss: f64, delay: f64, strength: f64) -> f64 {
    loss * delay / strength.max(f64::MIN_POSITIVE)
}

/// The closed-form kernel constant (module doc): over the validation items with confidence
/// `p_i >= nu`, `tau = sum g(x_i) h^-1(p_i) / sum g(x_i)^2` with `x_i = kernel_x(loss_i, 1,
/// strength)`. `None` when no recalled item has `x_i > 0` (the caller keeps its last `tau`).
/// 0 when every recalled item has `p_i = 1` (nothing is forgotten: every delay is the longest).
/// Non-finite inputs are left out; a confidence within [`CERTAIN`] of 1 reads as 1.
pub fn fit_tau(kernel: Kernel, loss: &[f64], confidence: &[f64], strength: f64, nu: f64) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for (&d, &p) in loss.iter().zip(confidence) {
        if !(d.is_finite() && p.is_finite() && p >= nu) {
            continue;
        }
        // A float32 softmax rounds a near-certain recall to within a few ulps of 1 (or just
        // above it): such an item says "not forgotten", not a recall of 0.99999994, whose
        // h^-1 over a loss of the same rounding would make tau noise.
        let p = if p > 1.0 - CERTAIN { 1.0 } else { p };
        let g = kernel.g(kernel_x(d, 1.0, strength));
        if g > 0.0 && g.is_finite() {
            num += g * kernel.h_inverse(p);
            den += g * g;
        }
    }
    (den > 0.0).then(|| (num / den).max(0.0))
}

/// The longest delay in whole epochs, from 1 to `longest`, at which the predicted recall
/// `f(d t / s; tau)` of an instance with loss `d` stays at or above `nu`:
/// `t = floor(s g^-1(h^-1(nu) / tau) / d)`. One epoch when even that is predicted to fall
/// below `nu` (or the strength is 0); `longest` when nothing is forgotten (`tau = 0` or
/// `d = 0`).
pub fn delay(kernel: Kernel, loss: f64, strength: f64, tau: f64, nu: f64, longest: u32) -> u32 {
    let longest = longest.max(1);
    if strength <= 0.0 || loss.is_nan() || tau.is_nan() {
        return 1;
    }
    // A loss of 0 (or -0, as a float32 cross-entropy of a certain prediction comes out)
    // predicts no forgetting.
    if loss <= 0.0 {
        return longest;
    }
    let reach = strength * kernel.g_inverse(kernel.h_inverse(nu) / tau) / loss;
    if reach.is_nan() {
        return 1;
    }
    // A delay that reaches nu exactly (up to rounding) counts as recalled.
    ((reach * (1.0 + 1e-12)).floor().min(f64::from(longest)).max(1.0)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_starts_at_one_falls_and_inverts() {
        for &k in Kernel::ALL {
            assert_eq!(k.recall(0.0, 2.0), 1.0, "{k}");
            let (near, far) = (k.recall(0.2, 2.0), k.recall(0.4, 2.0));
            assert!(near < 1.0 && far < near, "{k}: {near} {far}");
            for p in [0.95, 0.7, 0.3] {
                let u = k.h_inverse(p);
                assert!((k.h(u) - p).abs() < 1e-12, "{k} at {p}");
            }
            assert_eq!(Kernel::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kernel::parse("rbf"), None);
    }

    #[test]
    fn the_delay_is_the_last_epoch_recalled_at_nu() {
        // Gaussian, s = 0.8, tau = 2, nu = 0.9, d = 0.05: s sqrt(ln(1/0.9) / 2) / d
        // = 0.8 * 0.229527 / 0.05 = 3.67 epochs, so 3.
        assert_eq!(delay(Kernel::Gaussian, 0.05, 0.8, 2.0, 0.9, 10), 3);
        for &k in Kernel::ALL {
            for loss in [0.01, 0.05, 0.3, 2.0] {
                let t = delay(k, loss, 0.8, 2.0, 0.9, 50);
                let at = |t: u32| k.recall(kernel_x(loss, f64::from(t), 0.8), 2.0);
                assert!(t == 1 || at(t) >= 0.9 - 1e-12, "{k} {loss}: recall {} at {t}", at(t));
                assert!(t == 50 || at(t + 1) < 0.9, "{k} {loss}: recall {} at {}", at(t + 1), t + 1);
            }
            assert_eq!(delay(k, 0.0, 0.8, 2.0, 0.9, 7), 7, "{k}: loss 0 waits the longest");
            assert_eq!(delay(k, -0.0, 0.8, 2.0, 0.9, 7), 7, "{k}: so does -0, as float32 gives it");
            assert_eq!(delay(k, 0.3, 0.8, 0.0, 0.9, 7), 7, "{k}: tau 0 forgets nothing");
            assert_eq!(delay(k, 0.3, 0.0, 2.0, 0.9, 7), 1, "{k}: no strength");
        }
    }

    #[test]
    fn the_fit_recovers_the_constant_of_exact_recalls_and_uses_only_recalled_items() {
        let strength = 0.75;
        let loss: Vec<f64> = (5..=24).map(|i| f64::from(i) * 0.01).collect();
        for &k in Kernel::ALL {
            let mut confidence: Vec<f64> = loss.iter().map(|&d| k.recall(kernel_x(d, 1.0, strength), 3.0)).collect();
            let tau = fit_tau(k, &loss, &confidence, strength, 0.5).unwrap();
            assert!((tau - 3.0).abs() < 1e-9, "{k}: {tau}");
            // Items below nu do not move the fit.
            confidence[19] = 0.2;
            confidence[18] = 0.1;
            let tau = fit_tau(k, &loss, &confidence, strength, 0.5).unwrap();
            assert!((tau - 3.0).abs() < 1e-9, "{k}: {tau}");
        }
        assert_eq!(fit_tau(Kernel::Gaussian, &[0.1, 0.2], &[0.4, 0.3], 0.8, 0.9), None, "none recalled");
        assert_eq!(fit_tau(Kernel::Gaussian, &[0.1, 0.2], &[1.0, 1.0], 0.8, 0.9), Some(0.0), "nothing forgotten");
        assert_eq!(fit_tau(Kernel::Gaussian, &[f64::NAN, 0.2], &[0.95, f64::NAN], 0.8, 0.9), None, "non-finite left out");
        // A network certain of every validation item (losses and confidences at float32
        // rounding, as a real run on an easy set gives): nothing is forgotten, not a tau
        // of 6e-8 / 3.6e-15.
        let confidence = [f64::from(1.0f32 - f32::EPSILON / 2.0), 1.0, f64::from(1.0f32 + f32::EPSILON)];
        assert_eq!(fit_tau(Kernel::Gaussian, &[6e-8, 0.0, 1e-9], &confidence, 0.8, 0.9), Some(0.0));
    }
}
