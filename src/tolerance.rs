//! How close a result must be to its reference twin: mamba_ssm's rule and numbers
//! (`tests/ops/test_selective_scan.py`), |got − want| ≤ atol + rtol·|want| at every element,
//! against a reference computed in fp32 from the same rounded inputs.

use std::fmt;
use tch::{Device, Kind, Tensor};

/// An elementwise bound |got − want| ≤ `atol` + `rtol`·|want|.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// mamba_ssm's for fp32 results.
    pub const FP32: Self = Self {
        rtol: 6e-4,
        atol: 2e-3,
    };
    /// mamba_ssm's for bf16 results: bf16 keeps 8 significant bits.
    pub const BF16: Self = Self {
        rtol: 3e-2,
        atol: 5e-2,
    };
    /// mamba_ssm's for f16 results, ten times tighter than bf16's: f16 keeps 11 significant
    /// bits.
    pub const F16: Self = Self {
        rtol: 3e-3,
        atol: 5e-3,
    };
    /// fp32 gradients: [`Tolerance::FP32`] ten times looser, the loosest of mamba_ssm's
    /// factors for gradients (written out, as `FP32.times(10.0)` rounds rtol one bit low).
    pub const FP32_GRADIENTS: Self = Self {
        rtol: 6e-3,
        atol: 2e-2,
    };

    /// mamba_ssm's tolerance for results in `kind`: fp32's, f16's, and bf16's (the loosest)
    /// for bf16 and any other kind.
    pub fn for_kind(kind: Kind) -> Self {
        match kind {
            Kind::Float => Self::FP32,
            Kind::Half => Self::F16,
            _ => Self::BF16,
        }
    }

    /// This tolerance `factor` times looser (or tighter, below 1): for gradients, which
    /// mamba_ssm compares 2 to 10 times looser than outputs.
    pub fn times(self, factor: f64) -> Self {
        Self {
            rtol: self.rtol * factor,
            atol: self.atol * factor,
        }
    }

    /// Whether one number `got` is within this tolerance of `want`. False for a NaN.
    pub fn admits(self, got: f64, want: f64) -> bool {
        (got - want).abs() <= self.atol + self.rtol * want.abs()
    }

    /// The worst excess over the bound, max(|got − want| − (atol + rtol·|want|)): ≤ 0 when
    /// `got` is within tolerance everywhere. Computed on the CPU in f64, which holds every
    /// f32, bf16 and f16 value exactly. Infinite when the shapes differ or either side holds
    /// a NaN or an infinity (no tolerance covers those), and −∞ for empty tensors.
    pub fn worst_excess(self, got: &Tensor, want: &Tensor) -> f64 {
        if got.size() != want.size() {
            return f64::INFINITY;
        }
        if got.numel() == 0 {
            return f64::NEG_INFINITY;
        }
        let excess = tch::no_grad(|| {
            let got = on_host(got);
            let want = on_host(want);
            ((&got - &want).abs() - (want.abs() * self.rtol + self.atol))
                .max()
                .double_value(&[])
        });
        // A NaN on either side makes the difference, and so the maximum, NaN; an infinity
        // makes it infinite or NaN (∞ − ∞).
        if excess.is_nan() {
            f64::INFINITY
        } else {
            excess
        }
    }

    /// How `got` compares with `want` under this tolerance.
    pub fn compare(self, got: &Tensor, want: &Tensor) -> Comparison {
        if got.size() != want.size() {
            return Comparison::Shapes {
                got: got.size(),
                want: want.size(),
            };
        }
        let excess = self.worst_excess(got, want);
        if excess == f64::INFINITY {
            Comparison::NonFinite
        } else if excess <= 0.0 {
            Comparison::Within(excess)
        } else {
            Comparison::Beyond(excess)
        }
    }

    /// `Ok` when `got` is within tolerance of `want`, else a message that names `what` was
    /// compared, how it failed (the worst excess, non-finite values, or the two shapes) and
    /// the tolerance.
    pub fn check(self, what: &str, got: &Tensor, want: &Tensor) -> Result<(), String> {
        match self.compare(got, want) {
            Comparison::Within(_) => Ok(()),
            failed => Err(format!(
                "{what}: {failed} (rtol {:e}, atol {:e})",
                self.rtol, self.atol
            )),
        }
    }

    /// Panics with [`Tolerance::check`]'s message unless `got` is within tolerance of `want`.
    #[track_caller]
    pub fn assert_close(self, what: &str, got: &Tensor, want: &Tensor) {
        if let Err(message) = self.check(what, got, want) {
            panic!("{message}");
        }
    }
}

/// The outcome of [`Tolerance::compare`]; its `Display` is the detail a report shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// Within tolerance everywhere, with this worst excess (≤ 0).
    Within(f64),
    /// Beyond it somewhere, by this much at worst.
    Beyond(f64),
    /// A NaN or an infinity on either side.
    NonFinite,
    /// The shapes differ, so nothing was compared.
    Shapes { got: Vec<i64>, want: Vec<i64> },
}

impl Comparison {
    pub fn is_close(&self) -> bool {
        matches!(self, Self::Within(_))
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Within(excess) | Self::Beyond(excess) => {
                write!(f, "worst excess over tolerance {excess:.2e}")
            }
            Self::NonFinite => f.write_str("non-finite values"),
            Self::Shapes { got, want } => write!(f, "shapes differ: {got:?} against {want:?}"),
        }
    }
}

/// `t` on the CPU in f64.
fn on_host(t: &Tensor) -> Tensor {
    t.to_device(Device::Cpu).to_kind(Kind::Double)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: &[f32]) -> Tensor {
        Tensor::from_slice(values)
    }

    #[test]
    fn the_bound_grows_with_the_reference() {
        let tol = Tolerance::FP32;
        // At 100 the bound is 2e-3 + 6e-2.
        let want = tensor(&[0.0, 100.0]);
        assert!(tol.compare(&tensor(&[1e-3, 100.05]), &want).is_close());
        let far = tol.compare(&tensor(&[3e-3, 100.0]), &want);
        assert!(
            matches!(far, Comparison::Beyond(e) if (e - 1e-3).abs() < 1e-6),
            "{far:?}"
        );
        assert!(tol.admits(100.05, 100.0) && !tol.admits(100.1, 100.0));
    }

    #[test]
    fn non_finite_values_and_other_shapes_never_pass() {
        let tol = Tolerance::BF16;
        let want = tensor(&[1.0, 2.0]);
        for got in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let got = tensor(&[1.0, got]);
            assert_eq!(tol.compare(&got, &want), Comparison::NonFinite);
            assert_eq!(tol.compare(&want, &got), Comparison::NonFinite);
        }
        let inf = tensor(&[f32::INFINITY]);
        assert_eq!(tol.compare(&inf, &inf), Comparison::NonFinite);
        let error = tol.check("y", &tensor(&[1.0]), &want).unwrap_err();
        assert!(
            error.starts_with("y: shapes differ: [1] against [2]"),
            "{error}"
        );
        assert!(!tol.admits(f64::NAN, 1.0));
    }

    #[test]
    fn kinds_map_to_mamba_ssms_tolerances() {
        assert_eq!(Tolerance::for_kind(Kind::Float), Tolerance::FP32);
        assert_eq!(Tolerance::for_kind(Kind::BFloat16), Tolerance::BF16);
        assert_eq!(Tolerance::for_kind(Kind::Half), Tolerance::F16);
        let looser = Tolerance::FP32.times(10.0);
        assert!((looser.rtol - Tolerance::FP32_GRADIENTS.rtol).abs() < 1e-15);
        assert!((looser.atol - Tolerance::FP32_GRADIENTS.atol).abs() < 1e-15);
    }
}
