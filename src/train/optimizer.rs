//! Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) over a model's variables, with
//! weight decay only where it belongs and with state that a checkpoint can hold.
//!
//! We keep the moments ourselves rather than in libtorch's optimizer, whose state tch cannot
//! read or restore: a resumed run must continue its killed run's curve to the last bit, so the
//! moments must be saved with the weights (`train::checkpoint`).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::{nn, Kind, TchError, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Decoupled weight decay: the weights shrink by `lr · weight_decay` each step.
    #[default]
    #[serde(alias = "adamw")]
    AdamW,
    /// The decay, if any, is an L2 term added to the gradient.
    Adam,
}

/// PyTorch's defaults, which mamba_ssm, nanoGPT and zoology keep.
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Why a variable is exempt from weight decay, or `None` when it decays.
///
/// The rule: mamba_ssm marks `A_log` and `D` `_no_weight_decay` (decaying A_log drags every
/// channel's decay rate towards 1, decaying D drags the skip connection towards 0), and
/// nanoGPT's `configure_optimizers` exempts every tensor with fewer than 2 dimensions (biases,
/// norm gains, `dt_proj.bias`, which sets Δ's range). Embeddings are exempt too, as in
/// GPT-NeoX and zoology's trainer: the decay would shrink rare tokens' rows that get no
/// gradient to pull them back.
pub fn decay_exemption(name: &str, shape: &[i64]) -> Option<&'static str> {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if leaf == "A_log" || leaf == "D" {
        Some("an SSM parameter (mamba_ssm's _no_weight_decay)")
    } else if shape.len() < 2 {
        Some("a bias, norm gain or other vector (nanoGPT: fewer than 2 dimensions)")
    } else if name.contains("embed") {
        Some("an embedding")
    } else {
        None
    }
}

/// One variable and its moments.
struct Slot {
    name: String,
    var: Tensor,
    decays: bool,
    /// First and second moments, fp32 like the variable.
    m: Tensor,
    v: Tensor,
}

/// Adam or AdamW over every trainable variable of a var store, in name order so that the
/// gradient norm sums in the same order every run.
pub struct Adam {
    kind: Optimizer,
    weight_decay: f64,
    slots: Vec<Slot>,
    /// Updates taken so far (the bias corrections' t).
    steps: i64,
}

/// Key prefixes of the optimizer's tensors in a checkpoint.
const FIRST_MOMENT: &str = "adam.m.";
const SECOND_MOMENT: &str = "adam.v.";
const STEPS: &str = "adam.steps";

#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    #[error("the checkpoint has no optimizer state for `{0}`")]
    Missing(String),
    #[error(transparent)]
    Torch(#[from] TchError),
}

impl Adam {
    pub fn new(vars: &nn::VarStore, kind: Optimizer, weight_decay: f64) -> Self {
        let mut named: Vec<(String, Tensor)> = vars
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, var)| Slot {
                decays: decay_exemption(&name, &var.size()).is_none(),
                m: var.zeros_like(),
                v: var.zeros_like(),
                name,
                var,
            })
            .collect();
        Self {
            kind,
            weight_decay,
            slots,
            steps: 0,
        }
    }

    /// The names of the variables that decay, in order.
    pub fn decaying(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| s.decays)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Backpropagates `loss`, clips the gradients' global norm to `clip` (as
    /// `torch.nn.utils.clip_grad_norm_` does), and takes one step at rate `lr`.
    pub fn step(&mut self, loss: &Tensor, lr: f64, clip: Option<f64>) -> Result<(), TchError> {
        let vars: Vec<&Tensor> = self.slots.iter().map(|s| &s.var).collect();
        // Gradients as fresh tensors (autograd.grad), so nothing accumulates between steps and
        // there is nothing to zero.
        // A variable the loss does not reach gets an undefined gradient and, as in PyTorch, no
        // update.
        let mut grads = Tensor::f_run_backward(&[loss], &vars, false, false)?;
        if let Some(max_norm) = clip {
            let norms: Vec<Tensor> = grads
                .iter()
                .filter(|g| g.defined())
                .map(|g| g.norm())
                .collect();
            let total = if norms.is_empty() {
                0.0
            } else {
                Tensor::stack(&norms, 0).norm().double_value(&[])
            };
            let scale = max_norm / (total + 1e-6);
            if scale < 1.0 {
                for g in grads.iter_mut().filter(|g| g.defined()) {
                    let _ = g.g_mul_scalar_(scale);
                }
            }
        }
        self.steps += 1;
        let t = self.steps as i32;
        let step_size = lr / (1.0 - BETA1.powi(t));
        let correction2 = (1.0 - BETA2.powi(t)).sqrt();
        tch::no_grad(|| {
            for (slot, grad) in self.slots.iter_mut().zip(grads) {
                if !grad.defined() {
                    continue;
                }
                let decay = if slot.decays { self.weight_decay } else { 0.0 };
                let grad = match self.kind {
                    Optimizer::AdamW => {
                        if decay != 0.0 {
                            let _ = slot.var.g_mul_scalar_(1.0 - lr * decay);
                        }
                        grad
                    }
                    Optimizer::Adam if decay != 0.0 => grad + &slot.var * decay,
                    Optimizer::Adam => grad,
                };
                let _ = slot.m.lerp_(&grad, 1.0 - BETA1);
                let _ = slot.v.lerp_(&grad.square(), 1.0 - BETA2);
                // var −= step_size · m / (√v / √(1 − β₂ᵗ) + ε)
                let denominator = (slot.v.sqrt() / correction2 + EPS) / -step_size;
                let _ = slot.var.addcdiv_(&slot.m, &denominator);
            }
        });
        Ok(())
    }

    /// The moments and the step count, named for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = Vec::with_capacity(2 * self.slots.len() + 1);
        for slot in &self.slots {
            state.push((
                format!("{FIRST_MOMENT}{}", slot.name),
                slot.m.shallow_clone(),
            ));
            state.push((
                format!("{SECOND_MOMENT}{}", slot.name),
                slot.v.shallow_clone(),
            ));
        }
        state.push((STEPS.to_owned(), Tensor::from(self.steps)));
        state
    }

    /// Restores what [`Adam::state`] saved.
    pub fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimizerError> {
        let get = |key: String| state.get(&key).ok_or(OptimizerError::Missing(key));
        tch::no_grad(|| {
            for slot in &mut self.slots {
                slot.m
                    .f_copy_(get(format!("{FIRST_MOMENT}{}", slot.name))?)?;
                slot.v
                    .f_copy_(get(format!("{SECOND_MOMENT}{}", slot.name))?)?;
            }
            Ok::<(), OptimizerError>(())
        })?;
        self.steps = get(STEPS.to_owned())?.to_kind(Kind::Int64).int64_value(&[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssm_parameters_vectors_and_embeddings_do_not_decay() {
        for (name, shape) in [
            ("backbone.layers.0.mixer.A_log", &[128, 16][..]),
            ("backbone.layers.0.mixer.D", &[128][..]),
            ("backbone.layers.0.mixer.dt_proj.bias", &[128][..]),
            ("backbone.layers.1.norm.weight", &[64][..]),
            ("backbone.embeddings.weight", &[16, 64][..]),
            ("model.embed_tokens.weight", &[16, 64][..]),
        ] {
            assert!(decay_exemption(name, shape).is_some(), "{name} decays");
        }
        for (name, shape) in [
            ("backbone.layers.0.mixer.in_proj.weight", &[256, 64][..]),
            ("backbone.layers.0.mixer.dt_proj.weight", &[128, 4][..]),
            ("backbone.layers.0.mixer.conv1d.weight", &[128, 1, 4][..]),
            ("model.layers.0.self_attn.q_proj.weight", &[64, 64][..]),
            ("lm_head.weight", &[16, 64][..]),
        ] {
            assert_eq!(decay_exemption(name, shape), None, "{name} is exempt");
        }
    }
}
