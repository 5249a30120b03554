//! Branch-free `exp`, `ln`, softplus and SiLU on f32 that the compiler can vectorise: libm's
//! scalar calls cannot be, and they would dominate the scan's time.
//!
//! Accuracy is a few ulp over the ranges the scan uses (checked against std in the tests), far
//! inside mamba_ssm's fp32 tolerance (rtol 6e-4).

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in f32 and a remainder (Cody–Waite), for an accurate reduction.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5 · 2²³ rounds to the nearest integer without a rounding
/// instruction (SSE2 has none).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// How a kernel computes a·b + c. Rust never contracts a multiply and an add into an FMA on
/// its own, so the kernels say which they want: [`Fused`] in code compiled with the `fma`
/// target feature (one instruction, one rounding), [`Separate`] elsewhere, where
/// `f32::mul_add` would be a slow libm call.
pub trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// a·b + c as one fused multiply-add.
pub struct Fused;

/// a·b + c as a multiply, then an add.
pub struct Separate;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// e^x for x in [-87.3, 88.7] (clamped outside, so e^-∞ gives ≈ 1e-38, not 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<Separate>(x)
}

/// [`exp`], with its multiply-adds computed as `M` says.
///
/// Written without float-to-int casts, whose saturation checks stop vectorisation: the
/// rounding trick leaves n in the low mantissa bits, and 2^n is built with integer adds.
#[inline(always)]
pub fn exp_with<M: MulAdd>(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    // x = n ln2 + r with |r| ≤ ln2 / 2, so e^x = 2^n · e^r.
    let shifted = M::mul_add(x, LOG2_E, ROUND_MAGIC);
    let n = shifted - ROUND_MAGIC;
    let r = M::mul_add(-n, LN2_LO, M::mul_add(-n, LN2_HI, x));
    // Degree-6 Taylor polynomial of e^r (Horner), error < 2e-7 on |r| ≤ 0.35.
    let p = 1.0 / 720.0;
    let p = M::mul_add(p, r, 1.0 / 120.0);
    let p = M::mul_add(p, r, 1.0 / 24.0);
    let p = M::mul_add(p, r, 1.0 / 6.0);
    let p = M::mul_add(p, r, 0.5);
    let p = M::mul_add(p, r, 1.0);
    let p = M::mul_add(p, r, 1.0);
    // `shifted`'s bits are ROUND_MAGIC's plus n; 2^n has exponent field n + 127.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    p * scale
}

/// ln(x) for positive, normal x.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    // x = m · 2^e with m in [√½, √2): ln x = e ln2 + ln m, and ln m = 2 atanh(s), s = (m−1)/(m+1).
    let bits = x.to_bits() as i32;
    let sqrt_half_bits = 0x3f35_04f3; // √½
    let e = (bits - sqrt_half_bits) >> 23;
    let m = f32::from_bits((bits - (e << 23)) as u32);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // 2 atanh(s) = 2s (1 + s²/3 + s⁴/5 + s⁶/7 + s⁸/9), |s| ≤ 0.172.
    let p = 1.0 / 9.0;
    let p = p * s2 + 1.0 / 7.0;
    let p = p * s2 + 1.0 / 5.0;
    let p = p * s2 + 1.0 / 3.0;
    let p = p * s2 + 1.0;
    let e = e as f32;
    e * LN2_HI + (2.0 * s * p + e * LN2_LO)
}

/// ln(1 + y) for y ≥ 0, accurate for tiny y too: the rounding error of 1 + y is corrected to
/// first order (Goldberg 1991, Theorem 4).
#[inline(always)]
pub fn ln_1p(y: f32) -> f32 {
    let u = 1.0 + y;
    ln(u) - ((u - 1.0) - y) / u
}

/// softplus(x) = ln(1 + eˣ), and x itself above 20 as in PyTorch.
#[inline(always)]
pub fn softplus(x: f32) -> f32 {
    let soft = ln_1p(exp(x.min(20.0)));
    if x > 20.0 {
        x
    } else {
        soft
    }
}

/// SiLU(x) = x · σ(x) = x / (1 + e⁻ˣ).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// Subnormal floats flushed to zero on this thread while the guard lives: results that would be
/// subnormal become 0 (FTZ) and subnormal inputs read as 0 (DAZ), as CUDA's fast-math kernels
/// do. Without it the scan's backward pass runs about an order of magnitude slower in training:
/// the loss scores few positions, so most of the adjoint ∂h decays from zero-gradient steps
/// towards 0 through the subnormal range, where every x86 vector operation on such a lane takes
/// a microcode assist of a hundred cycles or more. The values lost are below 1.2e-38, far under
/// every tolerance; the previous mode is restored on drop, so libtorch's own kernels, which
/// share these threads, are unaffected.
pub struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

/// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) flags.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

impl FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    pub fn on_this_thread() -> Self {
        let mut saved = 0u32;
        // SAFETY: stmxcsr and ldmxcsr only read and write this thread's SSE control register;
        // the value written differs from the current one in the two flush flags only.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut saved, options(nostack));
            let flushed = saved | FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &flushed, options(nostack, readonly));
        }
        Self { saved }
    }

    /// Elsewhere a no-op: AArch64's cores handle subnormals at full speed or nearly.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn on_this_thread() -> Self {
        Self {}
    }
}

impl Drop for FlushSubnormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: restores the value `on_this_thread` read from this thread's register.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &self.saved, options(nostack, readonly));
        }
    }
}

/// Calls `$body` compiled for the widest vectors the CPU has: AVX-512 (with FMA), else AVX2 +
/// FMA, else the baseline target. The body is generic over `$mul_add`, a [`MulAdd`]:
/// [`Fused`](crate::scan::fast_math::Fused) in the FMA variants,
/// [`Separate`](crate::scan::fast_math::Separate) in the other. It is inlined into each
/// variant, so the compiler vectorises it for each.
macro_rules! dispatch_simd {
    ($(#[$doc:meta])* $vis:vis $name:ident<$mul_add:ident>($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<$mul_add: crate::scan::fast_math::MulAdd>($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                body::<crate::scan::fast_math::Fused>($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                body::<crate::scan::fast_math::Fused>($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports the features `avx512` is compiled for.
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports the features `avx2` is compiled for.
                return unsafe { avx2($($arg),*) };
            }
            body::<crate::scan::fast_math::Separate>($($arg),*)
        }
    };
}
pub(crate) use dispatch_simd;

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_err(got: f32, want: f64) -> f64 {
        ((got as f64 - want) / want.abs().max(1e-30)).abs()
    }

    #[test]
    fn exp_is_accurate_over_its_range_with_either_multiply_add() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            assert!(rel_err(exp(x), want) < 1e-6, "exp({x})");
            assert!(rel_err(exp_with::<Fused>(x), want) < 1e-6, "fused exp({x})");
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp_with::<Fused>(0.0), 1.0);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn the_guard_flushes_subnormals_on_its_thread_until_dropped() {
        use std::hint::black_box;
        let tiny = || black_box(1e-30f32) * black_box(1e-10f32);
        assert!(tiny() > 0.0 && !tiny().is_normal(), "1e-40 is subnormal");
        {
            let _flush = FlushSubnormals::on_this_thread();
            if cfg!(target_arch = "x86_64") {
                assert_eq!(tiny(), 0.0, "a subnormal result is flushed");
                let subnormal = black_box(f32::from_bits(1));
                assert_eq!(subnormal * 1.0, 0.0, "a subnormal input reads as 0");
            }
        }
        assert!(tiny() > 0.0, "the mode is restored on drop");
    }

    #[test]
    fn ln_is_accurate() {
        for &x in &[
            1e-30f32, 1e-5, 0.1, 0.5, 0.70710677, 1.0, 1.5, 2.0, 10.0, 1e5, 3e38,
        ] {
            let want = (x as f64).ln();
            let err = (ln(x) as f64 - want).abs();
            assert!(
                err < 2e-6 * want.abs().max(1.0),
                "ln({x}) = {} vs {want}",
                ln(x)
            );
        }
    }

    #[test]
    fn softplus_and_silu_match_their_definitions() {
        let mut x = -30.0f32;
        while x < 30.0 {
            let xd = x as f64;
            let sp = if xd > 20.0 { xd } else { xd.exp().ln_1p() };
            assert!((softplus(x) as f64 - sp).abs() < 2e-6 * sp, "softplus({x})");
            let si = xd / (1.0 + (-xd).exp());
            assert!(
                (silu(x) as f64 - si).abs() < 2e-6 * si.abs().max(1.0),
                "silu({x})"
            );
            x += 0.0731;
        }
    }
}
