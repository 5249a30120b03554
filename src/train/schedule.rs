//! Learning-rate schedules: linear warm-up, then constant or cosine decay to zero.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Hold the peak rate after warm-up (the Mamba paper's synthetic tasks).
    #[default]
    Constant,
    /// Half a cosine from the peak down to zero at the last step.
    Cosine,
}

/// The learning rate at `step` (0-based) of `steps`.
pub fn learning_rate(peak: f64, step: usize, steps: usize, warmup: usize, decay: Decay) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    match decay {
        Decay::Constant => peak,
        Decay::Cosine => {
            let span = steps.saturating_sub(warmup).max(1) as f64;
            let progress = ((step - warmup) as f64 / span).min(1.0);
            peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_holds_or_decays() {
        assert_eq!(learning_rate(1.0, 0, 100, 4, Decay::Constant), 0.25);
        assert_eq!(learning_rate(1.0, 3, 100, 4, Decay::Constant), 1.0);
        assert_eq!(learning_rate(1.0, 50, 100, 4, Decay::Constant), 1.0);
        assert_eq!(learning_rate(1.0, 4, 104, 4, Decay::Cosine), 1.0);
        assert!((learning_rate(1.0, 54, 104, 4, Decay::Cosine) - 0.5).abs() < 1e-12);
        assert!(learning_rate(1.0, 103, 104, 4, Decay::Cosine) < 0.01);
    }
}
