//! Dataset cartography (Swayamdipta et al., "Dataset Cartography: Mapping and Diagnosing
//! Datasets with Training Dynamics", EMNLP 2020).

use serde::{Deserialize, Serialize};

/// Training-dynamics coordinates of one sample over epochs `t = 1..T`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cartography {
    /// `mean_t p_true_t`.
    pub confidence: f64,
    /// Population standard deviation `sqrt(mean_t (p_true_t - confidence)^2)`.
    pub variability: f64,
    /// `mean_t c_t`, the fraction of epochs the sample was classified correctly.
    pub correctness: f64,
}

impl Cartography {
    /// Computes the coordinates from one sample's `p_true` and `correct` traces (same length).
    /// Returns `None` for an empty trace, where none of the three is defined.
    pub fn from_trace(p_true: &[f32], correct: &[bool]) -> Option<Self> {
        debug_assert_eq!(p_true.len(), correct.len());
        if p_true.is_empty() {
            return None;
        }
        let epochs = p_true.len() as f64;
        let confidence = p_true.iter().map(|&p| f64::from(p)).sum::<f64>() / epochs;
        let variance = p_true.iter().map(|&p| (f64::from(p) - confidence).powi(2)).sum::<f64>() / epochs;
        let correctness = correct.iter().filter(|&&c| c).count() as f64 / epochs;
        Some(Self { confidence, variability: variance.sqrt(), correctness })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_values() {
        // p = 0.2, 0.4, 0.9: mean 0.5; deviations -0.3, -0.1, 0.4; variance (0.09+0.01+0.16)/3.
        let map = Cartography::from_trace(&[0.2, 0.4, 0.9], &[false, false, true]).unwrap();
        assert!((map.confidence - 0.5).abs() < 1e-7);
        assert!((map.variability - (0.26f64 / 3.0).sqrt()).abs() < 1e-7);
        assert!((map.correctness - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn constant_trace_has_zero_variability() {
        let map = Cartography::from_trace(&[0.7; 5], &[true; 5]).unwrap();
        assert!(map.variability.abs() < 1e-12);
        assert_eq!(map.correctness, 1.0);
    }

    #[test]
    fn empty_trace_is_undefined() {
        assert!(Cartography::from_trace(&[], &[]).is_none());
    }
}
