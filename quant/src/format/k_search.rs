//! The scale searches behind the K-quant quantizers (and the importance-weighted Q4_0..Q5_1).
//!
//! The spec is llama.cpp's `ggml-quants.c` (reference quantizers `quantize_row_q*_K_ref` and the
//! weighted `quantize_q*_K` used with an importance matrix). Output must be bit-identical, so every
//! function here performs the same f32 operations in the same order as the C: sums accumulate one
//! element at a time, `a*b*c` is `(a*b)*c`, integers are converted to f32 where C converts them, and
//! C's narrowing stores (`uint8_t l = nearest_int(..)`) wrap as C's do (`as u8`). llama.cpp builds
//! `ggml-quants.c` (in ggml-base) for baseline x86-64 (SSE2, no FMA; `GGML_NATIVE` only changes
//! ggml-cpu), so nothing is fused; Rust never fuses either. On targets where FMA is baseline
//! (aarch64) GCC contracts `a*b + c` by default in GNU C mode, so llama.cpp's own output there can
//! differ in the last bits from its x86-64 output, which is what these functions reproduce.
//!
//! Names follow the C: `nmax` is the largest quant, `L` the quants, `x` the values, `w` the weights.

use super::q8_k::nearest_int;

/// Groups whose largest magnitude is below this are all zero (`GROUP_MAX_EPS`).
pub const GROUP_MAX_EPS: f32 = 1e-15;

/// f32 -> f16 bits as ggml's `GGML_FP32_TO_FP16`: round to nearest even, overflow to inf, and
/// any NaN to the quiet NaN 0x7e00 with the input's sign.
#[inline]
pub fn f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if (bits & 0x7fff_ffff) > 0x7f80_0000 {
        return ((bits >> 16) & 0x8000) as u16 | 0x7e00;
    }
    half::f16::from_f32(x).to_bits()
}

/// [`f16_bits`] as a `half::f16`.
#[inline]
pub fn to_f16(x: f32) -> half::f16 {
    half::f16::from_bits(f16_bits(x))
}

/// `a > b ? a : b` (C's `MAX` macro, which keeps `b` when either is NaN).
#[inline]
fn c_max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// The value of largest magnitude, with its sign (the first one on ties), and that magnitude.
#[inline]
fn signed_amax(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    (max, amax)
}

/// Symmetric quants `L[i] = l + nmax`, `l` in `-nmax..nmax`, minimizing the weighted squared error
/// (`make_qx_quants` with `rmse_type` 1): weights `qw`, or `x²` without. Tries the scale
/// `-nmax/max` and 18 nudges of it; returns the best scale.
pub fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [i8], qw: Option<&[f32]>) -> f32 {
    let (max, amax) = signed_amax(x);
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let weight = |i: usize| qw.map_or(x[i] * x[i], |w| w[i]);
    let clamp = |l: i32| l.clamp(-nmax, nmax - 1);
    let mut iscale = (-nmax) as f32 / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (i, &xi) in x.iter().enumerate() {
        let l = clamp(nearest_int(iscale * xi));
        l_out[i] = (l + nmax) as i8;
        let w = weight(i);
        sumlx += w * xi * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for (i, &xi) in x.iter().enumerate() {
            let l = clamp(nearest_int(iscale * xi));
            let w = weight(i);
            sumlx += w * xi * l as f32;
            suml2 += w * l as f32 * l as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (i, &xi) in x.iter().enumerate() {
                l_out[i] = (nmax + clamp(nearest_int(iscale * xi))) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's symmetric quants (`make_q3_quants` with `do_rmse`): start from `-nmax/max`, then up to 5
/// passes moving single quants while the `x²`-weighted fit improves. `L[i] = l + nmax`.
pub fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let (max, amax) = signed_amax(x);
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let clamp = |l: i32| l.clamp(-nmax, nmax - 1);
    let iscale = (-nmax) as f32 / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (i, &xi) in x.iter().enumerate() {
        let l = clamp(nearest_int(iscale * xi));
        l_out[i] = l as i8;
        let w = xi * xi;
        sumlx += w * xi * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for (i, &xi) in x.iter().enumerate() {
            let w = xi * xi;
            let li = f32::from(l_out[i]);
            let mut slx = sumlx - w * xi * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = clamp(nearest_int(xi * sl2 / slx));
                if new_l != i32::from(l_out[i]) {
                    slx += w * xi * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for l in l_out.iter_mut() {
        *l += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The grid of an asymmetric search: `nstep + 1` trial scales `(rmin + rdelta·is + nmax)/(max-min)`.
#[derive(Clone, Copy)]
pub struct Grid {
    pub rmin: f32,
    pub rdelta: f32,
    pub nstep: i32,
    /// Minimize the weighted absolute error instead of the squared error.
    pub use_mad: bool,
}

/// Asymmetric quants `x ≈ scale·L - the_min`, `L` in `0..=nmax`, minimizing the `weights`-weighted
/// error over the trial scales of `grid` (`make_qkx2_quants`; `make_qkx3_quants` with weights does the
/// same operations). Returns `(scale, the_min)`; `the_min >= 0` unless an input is NaN.
pub fn make_qkx_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    l_aux: &mut [u8],
    grid: Grid,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if grid.use_mad { d.abs() } else { d * d };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        l_out[i] = l.clamp(0, nmax) as u8;
        let diff = scale * f32::from(l_out[i]) + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if grid.nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=grid.nstep {
        iscale = (grid.rmin + grid.rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            l_aux[i] = l as u8;
            let (w, lf) = (weights[i], l as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(l_aux[i]) + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&l_aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Non-negative quants `L` in `0..=nmax` for the sub-block scales (or mins) of a weighted K-quant
/// (`make_qp_quants`): the best of 9 trial scales, then up to 5 passes moving single quants.
///
/// As in C, `L` holds `uint8_t`: a negative first-pass quant wraps (and is read back wrapped).
pub fn make_qp_quants(nmax: i32, x: &[f32], l_out: &mut [u8], quant_weights: &[f32]) -> f32 {
    let max = x.iter().fold(0f32, |m, &v| c_max(m, v));
    if max < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for (l, &xi) in l_out.iter_mut().zip(x) {
        *l = nearest_int(iscale * xi) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0f32;
    for (i, &xi) in x.iter().enumerate() {
        let diff = xi - scale * f32::from(l_out[i]);
        best_mse += quant_weights[i] * diff * diff;
    }
    for is in (-4..=4).filter(|&is| is != 0) {
        let iscale_is = (0.1 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0f32;
        for (i, &xi) in x.iter().enumerate() {
            let l = nearest_int(iscale_is * xi).min(nmax);
            let diff = xi - scale_is * l as f32;
            mse += quant_weights[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (i, &xi) in x.iter().enumerate() {
        let l = nearest_int(iscale * xi).min(nmax);
        l_out[i] = l as u8;
        let w = quant_weights[i];
        sumlx += w * xi * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for (i, &xi) in x.iter().enumerate() {
            let w = quant_weights[i];
            let li = f32::from(l_out[i]);
            let mut slx = sumlx - w * xi * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(xi * sl2 / slx).min(nmax);
                if new_l != i32::from(l_out[i]) {
                    slx += w * xi * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// `Σ x²` over `x`, one element at a time (the weighted quantizers' `sum_x2`).
#[inline]
pub fn sum_squares(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |s, &v| s + v * v)
}

/// The importance weights of a weighted quantizer: `qw[i] · sqrt(sigma2 + x[i]²)`.
#[inline]
pub fn importance(qw: &[f32], x: &[f32], sigma2: f32, out: &mut [f32]) {
    for ((o, &q), &xi) in out.iter_mut().zip(qw).zip(x) {
        *o = q * (sigma2 + xi * xi).sqrt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_bits_matches_ggml_on_nan_and_rounding() {
        assert_eq!(f16_bits(f32::NAN), 0x7e00);
        assert_eq!(f16_bits(-f32::NAN), 0xfe00);
        assert_eq!(f16_bits(f32::INFINITY), 0x7c00);
        assert_eq!(f16_bits(1e6), 0x7c00);
        assert_eq!(f16_bits(1.0), 0x3c00);
        // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: to even (1).
        assert_eq!(f16_bits(1.0 + f32::powi(2.0, -11)), 0x3c00);
    }

    #[test]
    fn qx_quants_of_zeros_is_zero() {
        let mut l = [5i8; 16];
        assert_eq!(make_qx_quants(32, &[0.0; 16], &mut l, None), 0.0);
        assert_eq!(l, [0; 16]);
    }
}
