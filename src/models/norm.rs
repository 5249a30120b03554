//! RMSNorm (Zhang & Sennrich 2019), used by both Llama and the Mamba LM.

use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        Self {
            weight: p.ones("weight", &[dim]),
            eps,
        }
    }

    /// The compute dtype: that of the weight.
    pub fn kind(&self) -> Kind {
        self.weight.kind()
    }
}

impl nn::Module for RmsNorm {
    /// y = x / sqrt(mean(x²) + ε) · w, normalised in fp32 whatever the compute dtype.
    fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        let xs32 = xs.to_kind(Kind::Float);
        let rms = (xs32.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        (xs32 * rms).to_kind(kind) * &self.weight
    }
}
