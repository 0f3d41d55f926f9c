//! Property tests for the block formats: round-trip error bounds, no panics on arbitrary bytes,
//! and errors (not panics) on wrong lengths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use smoe_quant::format::{
    dequantize_row, f16_bits_to_f32, f32_to_f16_bits, quantize_row, quantize_row_weighted, Block,
    BlockQ8K,
};
use smoe_quant::{GgmlType, QuantError, ALL_TYPES};

const DEQUANT_TYPES: [GgmlType; 14] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8K,
];
const QUANT_TYPES: [GgmlType; 14] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8K,
];
/// K-quants and the largest error they leave, as a fraction of the super-block's largest magnitude,
/// on uniform rows whose scales stay f16 normals (measured worst over 3000 rows, plus a margin).
const K_ERROR_BOUNDS: [(GgmlType, f32); 5] = [
    (GgmlType::Q2K, 0.55),
    (GgmlType::Q3K, 0.33),
    (GgmlType::Q4K, 0.15),
    (GgmlType::Q5K, 0.08),
    (GgmlType::Q6K, 0.04),
];

/// f32 -> f16 -> f32 (the stored scale).
fn via_f16(x: f32) -> f32 {
    f16_bits_to_f32(f32_to_f16_bits(x))
}

fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut q = vec![0u8; ty.row_bytes(x.len() as u64).unwrap() as usize];
    quantize_row(ty, x, &mut q).unwrap();
    let mut y = vec![0f32; x.len()];
    dequantize_row(ty, &q, &mut y).unwrap();
    y
}

/// Dequantizes a row quantized with importance weights `qw`.
fn round_trip_weighted(ty: GgmlType, x: &[f32], qw: &[f32]) -> Vec<f32> {
    let mut q = vec![0u8; ty.row_bytes(x.len() as u64).unwrap() as usize];
    quantize_row_weighted(ty, x, &mut q, qw).unwrap();
    let mut y = vec![0f32; x.len()];
    dequantize_row(ty, &q, &mut y).unwrap();
    y
}

/// Rows of whole blocks with values in a range where f16 scales stay finite.
fn rows(block: usize, max_blocks: usize) -> impl Strategy<Value = Vec<f32>> {
    (1..=max_blocks, 0.001f32..1000.0).prop_flat_map(move |(nb, scale)| {
        prop::collection::vec(-1.0f32..1.0, nb * block)
            .prop_map(move |v| v.into_iter().map(|x| x * scale).collect())
    })
}

fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

fn signed_max(x: &[f32]) -> f32 {
    let mut best = x[0];
    for &v in x {
        if v.abs() > best.abs() {
            best = v;
        }
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn q8_0_error_at_most_half_a_step(x in rows(32, 4)) {
        let y = round_trip(GgmlType::Q8_0, &x);
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            let d = amax(xb) / 127.0;
            // half a step, plus what storing d as f16 moves the largest quant
            let bound = 0.5 * d + 127.0 * (d - via_f16(d)).abs() + 1e-6 * amax(xb);
            for (i, (a, b)) in xb.iter().zip(yb).enumerate() {
                prop_assert!((a - b).abs() <= bound, "element {i}: {a} -> {b}, bound {bound}");
            }
        }
    }

    #[test]
    fn q4_0_and_q5_0_error_bounds(x in rows(32, 4)) {
        for (ty, half_levels) in [(GgmlType::Q4_0, 8.0f32), (GgmlType::Q5_0, 16.0)] {
            let y = round_trip(ty, &x);
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let d = (signed_max(xb) / -half_levels).abs();
                let slack = half_levels * (d - via_f16(d)).abs() + 1e-6 * amax(xb);
                for (i, (a, b)) in xb.iter().zip(yb).enumerate() {
                    // The element at the top of the range (x / d near +half_levels) is clamped to
                    // the last level, one step away; everything else rounds to within half a step.
                    let clamped = (a / d).abs() > half_levels - 0.5 - 1e-3;
                    let bound = if clamped { d } else { 0.5 * d } + slack;
                    prop_assert!((a - b).abs() <= bound, "{ty} element {i}: {a} -> {b}, bound {bound}");
                }
            }
        }
    }

    #[test]
    fn q4_1_and_q5_1_error_bounds(x in rows(32, 4)) {
        for (ty, levels) in [(GgmlType::Q4_1, 15.0f32), (GgmlType::Q5_1, 31.0)] {
            let y = round_trip(ty, &x);
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let min = xb.iter().fold(f32::INFINITY, |m, &v| m.min(v));
                let max = xb.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let d = (max - min) / levels;
                let bound = 0.5 * d
                    + levels * (d - via_f16(d)).abs()
                    + (min - via_f16(min)).abs()
                    + 1e-5 * amax(xb);
                for (i, (a, b)) in xb.iter().zip(yb).enumerate() {
                    prop_assert!((a - b).abs() <= bound, "{ty} element {i}: {a} -> {b}, bound {bound}");
                }
            }
        }
    }

    #[test]
    fn k_quant_error_bounds(x in prop::collection::vec(-1.0f32..1.0, 256..=512), scale in 1.0f32..1000.0) {
        let x: Vec<f32> = x[..x.len() / 256 * 256].iter().map(|v| v * scale).collect();
        let ones = vec![1.0f32; x.len()];
        for (ty, bound) in K_ERROR_BOUNDS {
            for (how, y) in [("ref", round_trip(ty, &x)), ("weighted", round_trip_weighted(ty, &x, &ones))] {
                for (xb, yb) in x.chunks(256).zip(y.chunks(256)) {
                    let b = bound * amax(xb);
                    for (i, (a, v)) in xb.iter().zip(yb).enumerate() {
                        prop_assert!((a - v).abs() <= b, "{ty} {how} element {i}: {a} -> {v}, bound {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn weighted_quantize_never_panics_on_arbitrary_floats(
        t in 0..QUANT_TYPES.len(),
        bits in prop::collection::vec(any::<u32>(), 256),
        wbits in prop::collection::vec(any::<u32>(), 256),
    ) {
        let ty = QUANT_TYPES[t];
        let x: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        let w: Vec<f32> = wbits.into_iter().map(f32::from_bits).collect();
        let mut q = vec![0u8; ty.row_bytes(256).unwrap() as usize];
        prop_assert!(quantize_row_weighted(ty, &x, &mut q, &w).is_ok());
        let mut y = vec![0f32; 256];
        prop_assert!(dequantize_row(ty, &q, &mut y).is_ok());
    }

    #[test]
    fn q8_k_error_and_bsums(x in rows(256, 2)) {
        let mut q = vec![0u8; 292 * (x.len() / 256)];
        quantize_row(GgmlType::Q8K, &x, &mut q).unwrap();
        for (xb, bytes) in x.chunks(256).zip(q.chunks(292)) {
            let b: BlockQ8K = bytemuck::pod_read_unaligned(bytes);
            for g in 0..16 {
                let s: i32 = b.qs[16 * g..16 * g + 16].iter().map(|&v| i32::from(v)).sum();
                prop_assert_eq!(i32::from(b.bsums[g]), s);
            }
            let mut y = [0f32; 256];
            b.dequantize(&mut y);
            let bound = 0.5 * b.d.abs() * (1.0 + 1e-5) + 1e-6 * amax(xb);
            for (i, (a, v)) in xb.iter().zip(&y).enumerate() {
                prop_assert!((a - v).abs() <= bound, "element {i}: {a} -> {v}, bound {bound}");
            }
        }
    }

    #[test]
    fn f16_and_bf16_relative_error(x in prop::collection::vec(-60000.0f32..60000.0, 1..64)) {
        for (ty, rel, abs) in [(GgmlType::F16, 2f32.powi(-11), 2f32.powi(-25)), (GgmlType::BF16, 2f32.powi(-8), 0.0)] {
            let y = round_trip(ty, &x);
            for (a, b) in x.iter().zip(&y) {
                prop_assert!((a - b).abs() <= rel * a.abs() + abs, "{ty}: {a} -> {b}");
            }
        }
        prop_assert_eq!(round_trip(GgmlType::F32, &x), x);
    }

    #[test]
    fn dequantize_never_panics_on_arbitrary_bytes(
        t in 0..DEQUANT_TYPES.len(),
        nb in 0usize..4,
        seed in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let ty = DEQUANT_TYPES[t];
        let n = nb * ty.block_size();
        let len = nb * ty.type_size();
        let src: Vec<u8> = (0..len).map(|i| seed[i % seed.len()].wrapping_mul(i as u8 | 1)).collect();
        let mut dst = vec![0f32; n];
        prop_assert!(dequantize_row(ty, &src, &mut dst).is_ok());
        // and from an unaligned start
        let mut shifted = vec![0u8; len + 1];
        shifted[1..].copy_from_slice(&src);
        let mut dst2 = vec![0f32; n];
        prop_assert!(dequantize_row(ty, &shifted[1..], &mut dst2).is_ok());
        let same = dst.iter().zip(&dst2).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
        prop_assert!(same);
    }

    #[test]
    fn quantize_never_panics_on_arbitrary_floats(
        t in 0..QUANT_TYPES.len(),
        bits in prop::collection::vec(any::<u32>(), 256),
    ) {
        let ty = QUANT_TYPES[t];
        let x: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        let mut q = vec![0u8; ty.row_bytes(256).unwrap() as usize];
        prop_assert!(quantize_row(ty, &x, &mut q).is_ok());
        let mut y = vec![0f32; 256];
        prop_assert!(dequantize_row(ty, &q, &mut y).is_ok());
    }

    #[test]
    fn wrong_lengths_are_errors(t in 0..DEQUANT_TYPES.len(), n in 0usize..600, len in 0usize..1200) {
        let ty = DEQUANT_TYPES[t];
        let right = ty.row_bytes(n as u64).map(|b| b as usize);
        let src = vec![0u8; len];
        let mut dst = vec![0f32; n];
        let r = dequantize_row(ty, &src, &mut dst);
        if right == Some(len) {
            prop_assert!(r.is_ok());
        } else {
            prop_assert!(matches!(r, Err(QuantError::Shape { .. })), "{ty} n={n} len={len}: {r:?}");
        }
        if QUANT_TYPES.contains(&ty) {
            let x = vec![0.5f32; n];
            let mut q = vec![0u8; len];
            let r = quantize_row(ty, &x, &mut q);
            prop_assert_eq!(r.is_ok(), right == Some(len));
        }
    }
}

#[test]
fn other_types_are_unsupported() {
    for ty in ALL_TYPES {
        let n = ty.block_size();
        let mut src = vec![0u8; ty.type_size()];
        let mut dst = vec![0f32; n];
        let d = dequantize_row(ty, &src, &mut dst);
        assert_eq!(
            d.is_ok(),
            DEQUANT_TYPES.contains(&ty),
            "{ty} dequantize: {d:?}"
        );
        if d.is_err() {
            assert!(matches!(d, Err(QuantError::Unsupported(t)) if t == ty));
        }
        let q = quantize_row(ty, &dst, &mut src);
        assert_eq!(q.is_ok(), QUANT_TYPES.contains(&ty), "{ty} quantize: {q:?}");
    }
}

#[test]
fn zeros_round_trip_to_zeros() {
    for ty in QUANT_TYPES {
        let x = vec![0f32; 512];
        assert!(round_trip(ty, &x).iter().all(|&v| v == 0.0), "{ty}");
    }
}
