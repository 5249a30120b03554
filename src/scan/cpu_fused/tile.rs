//! Moving a block's channel rows to and from (time, lane) tiles.
//!
//! The scan's inputs and outputs are channel-major, (lanes, seq_len) per block, while the
//! recurrence wants one vector of lanes per step. Element by element, that transpose costs a
//! store per value, as much as a fifth of the whole scan; under AVX it goes 8 × 8 values at a
//! time through registers, 24 shuffles for 64 values.

use super::Lanes;

/// Where a block's rows lie: row `lane` of the block starts at `lane * stride` of the slice.
#[derive(Debug, Clone, Copy)]
pub struct Rows {
    pub stride: usize,
    /// Channels present; the tile's other lanes are zeros.
    pub lanes: usize,
}

/// tile[k][lane] = rows[lane][start + k] for every k < tile.len(), zeros in absent lanes.
#[inline(always)]
pub fn gather(src: &[f32], rows: Rows, start: usize, tile: &mut [Lanes]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX.
        return unsafe { avx::gather(src, rows, start, tile) };
    }
    gather_elementwise(src, rows, start, tile, 0, 0);
}

/// rows[lane][start + k] = tile[k][lane] for every k < tile.len() and present lane.
#[inline(always)]
pub fn scatter(tile: &[Lanes], dst: &mut [f32], rows: Rows, start: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX.
        return unsafe { avx::scatter(tile, dst, rows, start) };
    }
    scatter_elementwise(tile, dst, rows, start, 0, 0);
}

/// [`gather`] one value at a time, except the lanes below `lanes_done` at steps below
/// `steps_done`, which are already in place.
#[inline(always)]
fn gather_elementwise(
    src: &[f32],
    rows: Rows,
    start: usize,
    tile: &mut [Lanes],
    lanes_done: usize,
    steps_done: usize,
) {
    for (k, values) in tile.iter_mut().enumerate() {
        let first = if k < steps_done { lanes_done } else { 0 };
        for (lane, value) in values.iter_mut().enumerate().skip(first) {
            *value = if lane < rows.lanes {
                src[lane * rows.stride + start + k]
            } else {
                0.0
            };
        }
    }
}

/// [`scatter`] one value at a time, skipping what [`gather_elementwise`] would.
#[inline(always)]
fn scatter_elementwise(
    tile: &[Lanes],
    dst: &mut [f32],
    rows: Rows,
    start: usize,
    lanes_done: usize,
    steps_done: usize,
) {
    for (k, values) in tile.iter().enumerate() {
        let first = if k < steps_done { lanes_done } else { 0 };
        for (lane, &value) in values.iter().enumerate().take(rows.lanes).skip(first) {
            dst[lane * rows.stride + start + k] = value;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{gather_elementwise, scatter_elementwise, Lanes, Rows};
    use std::arch::x86_64::*;

    /// Full 8 × 8 squares: (lanes rounded down to 8, steps rounded down to 8).
    fn squares(rows: Rows, steps: usize) -> (usize, usize) {
        (rows.lanes / 8 * 8, steps / 8 * 8)
    }

    #[target_feature(enable = "avx")]
    pub unsafe fn gather(src: &[f32], rows: Rows, start: usize, tile: &mut [Lanes]) {
        let (lanes_done, steps_done) = squares(rows, tile.len());
        for group in (0..lanes_done).step_by(8) {
            for k in (0..steps_done).step_by(8) {
                // No closures here: they would not inherit the AVX target feature.
                let mut square = [_mm256_setzero_ps(); 8];
                for (i, values) in square.iter_mut().enumerate() {
                    let row = &src[(group + i) * rows.stride + start + k..][..8];
                    // SAFETY: `row` holds 8 values.
                    *values = unsafe { _mm256_loadu_ps(row.as_ptr()) };
                }
                for (i, column) in transpose(square).into_iter().enumerate() {
                    let out = &mut tile[k + i][group..group + 8];
                    // SAFETY: `out` holds 8 values.
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), column) };
                }
            }
        }
        gather_elementwise(src, rows, start, tile, lanes_done, steps_done);
    }

    #[target_feature(enable = "avx")]
    pub unsafe fn scatter(tile: &[Lanes], dst: &mut [f32], rows: Rows, start: usize) {
        let (lanes_done, steps_done) = squares(rows, tile.len());
        for group in (0..lanes_done).step_by(8) {
            for k in (0..steps_done).step_by(8) {
                let mut square = [_mm256_setzero_ps(); 8];
                for (i, values) in square.iter_mut().enumerate() {
                    let step = &tile[k + i][group..group + 8];
                    // SAFETY: `step` holds 8 values.
                    *values = unsafe { _mm256_loadu_ps(step.as_ptr()) };
                }
                for (i, row) in transpose(square).into_iter().enumerate() {
                    let out = &mut dst[(group + i) * rows.stride + start + k..][..8];
                    // SAFETY: `out` holds 8 values.
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), row) };
                }
            }
        }
        scatter_elementwise(tile, dst, rows, start, lanes_done, steps_done);
    }

    /// The 8 × 8 transpose: pairs of rows interleaved, then pairs of pairs, then halves
    /// swapped across the 128-bit lanes.
    #[target_feature(enable = "avx")]
    fn transpose(r: [__m256; 8]) -> [__m256; 8] {
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let s = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xee>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xee>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xee>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xee>(t[5], t[7]),
        ];
        [
            _mm256_permute2f128_ps::<0x20>(s[0], s[4]),
            _mm256_permute2f128_ps::<0x20>(s[1], s[5]),
            _mm256_permute2f128_ps::<0x20>(s[2], s[6]),
            _mm256_permute2f128_ps::<0x20>(s[3], s[7]),
            _mm256_permute2f128_ps::<0x31>(s[0], s[4]),
            _mm256_permute2f128_ps::<0x31>(s[1], s[5]),
            _mm256_permute2f128_ps::<0x31>(s[2], s[6]),
            _mm256_permute2f128_ps::<0x31>(s[3], s[7]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::cpu_fused::LANES;

    #[test]
    fn gather_and_scatter_transpose_every_shape_exactly() {
        for lanes in [1, 7, 8, 9, LANES] {
            for (start, steps) in [(0, 1), (3, 8), (5, 13), (0, 64)] {
                let stride = 80;
                let rows = Rows { stride, lanes };
                let src: Vec<f32> = (0..lanes * stride).map(|i| i as f32).collect();
                let mut tile = vec![[f32::NAN; LANES]; steps];
                gather(&src, rows, start, &mut tile);
                for (k, values) in tile.iter().enumerate() {
                    for (lane, &value) in values.iter().enumerate() {
                        let want = if lane < lanes {
                            src[lane * stride + start + k]
                        } else {
                            0.0
                        };
                        assert_eq!(value, want, "lanes {lanes}, step {k}, lane {lane}");
                    }
                }
                let mut dst = vec![-1.0; lanes * stride];
                scatter(&tile, &mut dst, rows, start);
                for (i, (&got, &want)) in dst.iter().zip(&src).enumerate() {
                    let written = (start..start + steps).contains(&(i % stride));
                    assert_eq!(
                        got,
                        if written { want } else { -1.0 },
                        "lanes {lanes}, at {i}"
                    );
                }
            }
        }
    }
}
