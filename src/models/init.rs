//! Initial weights: drawn for a model that trains, not drawn for one whose weights a checkpoint
//! is about to overwrite. A normal draw per parameter costs more than reading the checkpoint
//! (about 1 s for a Llama of 124M parameters on one core, against 0.3 s to copy its weights
//! from the page cache), so loading builds the model with [`skipping_draws`].

use serde::{Deserialize, Serialize};
use std::cell::Cell;
use tch::nn;

/// How a Mamba-1 block's projections (`in_proj`, `x_proj`, `out_proj`) and convolution are
/// drawn. Δ's projection, A and D are initialised as the paper says either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightInit {
    /// PyTorch's `nn.Linear` and `nn.Conv1d` default, which mamba_ssm keeps: U(±1/√fan_in)
    /// for weights and biases alike.
    #[default]
    Torch,
    /// tch's default: Kaiming-uniform weights, U(±√(6/fan_in)), √6 times wider, which widens
    /// Δ, B and C at the start; a zero convolution bias. This project's initialisation before
    /// 2026-12-02, kept to compare recipes (issue #30).
    Tch,
}

impl WeightInit {
    pub fn is_torch(&self) -> bool {
        *self == WeightInit::Torch
    }
}

thread_local! {
    static SKIPPING: Cell<bool> = const { Cell::new(false) };
}

/// `init`, or zeros while [`skipping_draws`] builds a model. Only the large tensors (the
/// projections and the embedding) go through here; the small ones are drawn either way.
pub fn drawn(init: nn::Init) -> nn::Init {
    if SKIPPING.with(Cell::get) {
        nn::Init::Const(0.0)
    } else {
        init
    }
}

/// Runs `build` with every initialiser that goes through [`drawn`] set to zeros: for a model
/// whose every variable a checkpoint then overwrites.
pub fn skipping_draws<T>(build: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SKIPPING.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SKIPPING.with(|s| s.replace(true)));
    build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_skipped_inside_the_scope_only() {
        let zeros = |init: nn::Init| matches!(init, nn::Init::Const(c) if c == 0.0);
        let normal = nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        };
        assert!(!zeros(drawn(normal)));
        assert!(skipping_draws(|| zeros(drawn(normal))));
        assert!(!zeros(drawn(normal)), "restored after the scope");
        let _ = std::panic::catch_unwind(|| skipping_draws(|| panic!("a build that fails")));
        assert!(!zeros(drawn(normal)), "restored after a panic");
    }
}
