//! The roofline of the fused scan on this CPU: [`advance`], the kernel's own inner step, run on
//! operands that never leave registers and L1. It does the same exps and multiply-adds per
//! state, lane and step as the scan, compiled for the same vector width, with no memory traffic;
//! no scan can beat it, and `benches/scan.rs` measures the kernels against it.

use super::{advance, Lanes, LANES};
use crate::scan::fast_math::dispatch_simd;

/// State size the roofline runs with, the Mamba default.
pub const D_STATE: usize = 16;

dispatch_simd! {
/// Runs `count` time steps of one block of [`LANES`] channels with [`D_STATE`] states, and
/// returns a sum of the outputs so that nothing is optimised away.
pub steps<M>(count: usize, seed: f32) -> f32 {
    let a: Vec<Lanes> = (0..D_STATE).map(|n| [-(n as f32 + 1.0); LANES]).collect();
    let mut h = vec![[seed; LANES]; D_STATE];
    let (mut b, mut c) = ([0.0f32; D_STATE], [0.0f32; D_STATE]);
    let mut total = [0.0f32; LANES];
    for step in 0..count {
        // Δ changes every step, as in the scan, so its exps cannot be hoisted out of the loop.
        let phase = (step & 7) as f32;
        let delta: Lanes = std::array::from_fn(|l| 1e-3 * (phase + l as f32));
        let delta_u: Lanes = std::array::from_fn(|l| 0.5 * delta[l]);
        b.fill(phase * 0.1);
        c.fill(phase * 0.2);
        let ch = advance::<M>(&mut h, &a, &delta, &delta_u, &b, &c);
        for (total, ch) in total.iter_mut().zip(ch) {
            *total += ch;
        }
    }
    total.iter().sum()
}
}
