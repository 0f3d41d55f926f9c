//! Every kernel of every instruction set this CPU runs, against the scalar spec: bit-identical
//! (NaN matches NaN) on random and edge data.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use smoe_quant::format::{dequantize_row, f32_to_f16_bits, quantize_row};
use smoe_quant::kernels::{self, scalar, Isa, Kernels};
use smoe_quant::GgmlType;

/// The tables to check: every available one except the scalar spec itself.
fn tables() -> Vec<&'static Kernels> {
    let isas = kernels::available();
    assert!(isas.contains(&Isa::Scalar) && isas.contains(&Isa::Portable));
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
        assert!(isas.contains(&Isa::Avx2), "AVX2 CPU but no AVX2 table");
    }
    isas.into_iter()
        .filter(|&i| i != Isa::Scalar)
        .filter_map(kernels::table)
        .collect()
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_same(what: &str, isa: Isa, got: f32, want: f32) {
    assert!(
        same(got, want),
        "{what} on {isa}: {got:e} ({:#x}) != spec {want:e} ({:#x})",
        got.to_bits(),
        want.to_bits()
    );
}

/// A Q4_0 or Q8_0 row of `nb` blocks: quant bytes from `bytes`, scales from `scales` (f16 bits).
fn quant_row(block: usize, nb: usize, bytes: &[u8], scales: &[u16]) -> Vec<u8> {
    let mut row = Vec::with_capacity(nb * block);
    for b in 0..nb {
        row.extend_from_slice(&scales[b % scales.len()].to_le_bytes());
        for j in 0..block - 2 {
            row.push(bytes[(b * block + j) % bytes.len()]);
        }
    }
    row
}

/// Checks every quantized kernel of every table on weight rows `w` [4] against activation rows
/// `a` [4] (Q8_0), `n` elements each.
fn check_quant_kernels(n: usize, w4: &[Vec<u8>; 4], w8: &[Vec<u8>; 4], a: &[Vec<u8>; 4]) {
    let wr4 = [&w4[0][..], &w4[1], &w4[2], &w4[3]];
    let wr8 = [&w8[0][..], &w8[1], &w8[2], &w8[3]];
    let ar = [&a[0][..], &a[1], &a[2], &a[3]];
    for k in tables() {
        for (name, wr, spec, qk) in [
            (
                "q4_0",
                wr4,
                scalar::vec_dot_q4_0_q8_0 as fn(usize, &[u8], &[u8]) -> f32,
                k.q4_0,
            ),
            ("q8_0", wr8, scalar::vec_dot_q8_0_q8_0, k.q8_0),
        ] {
            let want: [[f32; 4]; 4] = ar.map(|a| wr.map(|w| spec(n, w, a)));
            for t in 0..4 {
                assert_same(name, k.isa, (qk.dot)(n, wr[t], ar[t]), want[t][t]);
                let x4 = (qk.dot_x4)(n, wr, ar[t]);
                for r in 0..4 {
                    assert_same(&format!("{name} x4"), k.isa, x4[r], want[t][r]);
                }
            }
            check_rows(name, k.isa, n, wr, ar[0], spec, qk.rows);
            let tile = (qk.tile_4x4)(n, wr, ar);
            for t in 0..4 {
                for r in 0..4 {
                    assert_same(&format!("{name} tile"), k.isa, tile[t][r], want[t][r]);
                }
            }
        }
    }
}

/// The run-of-rows kernel (decode, and the packed many-token path) on 19 distinct rows made from `wr` (blocks rotated, quants
/// flipped), stored at a stride a few bytes longer than a row: every row equals the spec.
fn check_rows(
    name: &str,
    isa: Isa,
    n: usize,
    wr: [&[u8]; 4],
    a: &[u8],
    spec: fn(usize, &[u8], &[u8]) -> f32,
    rows: kernels::QuantRows,
) {
    let span = wr[0].len();
    let block = span / (n / 32);
    let stride = span + 6;
    let n_rows = 19;
    let mut w = vec![0u8; n_rows * stride];
    for r in 0..n_rows {
        let mut row = wr[r % 4].to_vec();
        row.rotate_left((r / 4) * block % span);
        if (r / 4) % 2 == 1 {
            for (i, v) in row.iter_mut().enumerate() {
                if i % block >= 2 {
                    *v ^= 0x5a;
                }
            }
        }
        w[r * stride..r * stride + span].copy_from_slice(&row);
    }
    for (len, n_tok) in [
        (n_rows, 1),
        (8, 1),
        (5, 1),
        (n_rows, 4),
        (8, 7),
        (13, 3),
        (3, 6),
        (n_rows, 2),
        (16, 9),
        (n_rows, 13),
        // Sixteen-row kernels with every tile width the others leave out.
        (16, 6),
        (n_rows, 7),
        (16, 8),
    ] {
        // Token t: the activation row with its blocks rotated by t (distinct when nb > 1).
        let arb = a.len();
        let mut at = Vec::with_capacity(n_tok * arb);
        for t in 0..n_tok {
            let mut row = a.to_vec();
            row.rotate_left(t * 34 % arb);
            at.extend_from_slice(&row);
        }
        let mut y = vec![f32::NAN; len * n_tok];
        rows(n, &w[..(len - 1) * stride + span], stride, &at, &mut y);
        for r in 0..len {
            for t in 0..n_tok {
                let want = spec(
                    n,
                    &w[r * stride..r * stride + span],
                    &at[t * arb..(t + 1) * arb],
                );
                let what = format!("{name} rows[{r}/{len}] token {t}/{n_tok}");
                assert_same(&what, isa, y[r * n_tok + t], want);
            }
        }
    }
}

fn check_quantize(x: &[f32]) {
    let mut want = vec![0u8; x.len() / 32 * 34];
    quantize_row(GgmlType::Q8_0, x, &mut want).unwrap();
    let mut s = vec![0u8; want.len()];
    scalar::quantize_row_q8_0(x, &mut s);
    assert_eq!(
        s, want,
        "scalar quantize_row_q8_0 differs from the block format"
    );
    for k in tables() {
        let mut got = vec![0xAAu8; want.len()];
        (k.quantize_row_q8_0)(x, &mut got);
        assert_eq!(got, want, "quantize_row_q8_0 on {}: x = {x:?}", k.isa);
    }
}

fn check_float_kernels(n: usize, w32: &[Vec<u8>; 4], w16: &[Vec<u8>; 4], x: &[f32]) {
    let r32 = [&w32[0][..], &w32[1], &w32[2], &w32[3]];
    let r16 = [&w16[0][..], &w16[1], &w16[2], &w16[3]];
    for k in tables() {
        for (name, wr, spec, fk) in [
            (
                "f32",
                r32,
                scalar::vec_dot_f32_f32 as fn(usize, &[u8], &[f32]) -> f32,
                k.f32,
            ),
            ("f16", r16, scalar::vec_dot_f16_f32, k.f16),
            ("bf16", r16, scalar::vec_dot_bf16_f32, k.bf16),
        ] {
            let want = wr.map(|w| spec(n, w, x));
            let x4 = (fk.dot_x4)(n, wr, x);
            for r in 0..4 {
                assert_same(name, k.isa, (fk.dot)(n, wr[r], x), want[r]);
                assert_same(&format!("{name} x4"), k.isa, x4[r], want[r]);
            }
            // axpy: out starts as x, p from the first weight row's dot (any finite or not).
            let axpy_spec = match name {
                "f32" => scalar::axpy_f32 as fn(usize, f32, &[u8], &mut [f32]),
                "f16" => scalar::axpy_f16,
                _ => scalar::axpy_bf16,
            };
            for p in [want[0], 0.5, -3.25e-3] {
                let mut want_out = x.to_vec();
                axpy_spec(n, p, wr[1], &mut want_out);
                let mut got = x.to_vec();
                (fk.axpy)(n, p, wr[1], &mut got);
                for (g, w) in got.iter().zip(&want_out) {
                    assert_same(&format!("{name} axpy"), k.isa, *g, *w);
                }
            }
        }
    }
}

/// f16 bits that are finite.
fn finite_f16() -> impl Strategy<Value = u16> {
    any::<u16>().prop_filter("finite", |h| h & 0x7c00 != 0x7c00)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn quant_dots_match_the_spec(
        nb in prop::sample::select(vec![1usize, 2, 3, 4, 5, 7, 8, 9, 129]),
        bytes in prop::collection::vec(any::<u8>(), 64..4096),
        scales in prop::collection::vec(finite_f16(), 1..64),
        seed in any::<u64>(),
    ) {
        let n = nb * 32;
        let rot = |r: usize| -> Vec<u8> { bytes.iter().cycle().skip(r * 97 + (seed % 31) as usize).take(bytes.len()).copied().collect() };
        let w4 = std::array::from_fn(|r| quant_row(18, nb, &rot(r), &scales[r % scales.len()..]));
        let w8 = std::array::from_fn(|r| quant_row(34, nb, &rot(r + 4), &scales[(r + 1) % scales.len()..]));
        let a = std::array::from_fn(|t| quant_row(34, nb, &rot(t + 8), &scales[(t + 2) % scales.len()..]));
        check_quant_kernels(n, &w4, &w8, &a);
    }

    #[test]
    fn quantize_matches_the_spec(
        x in prop::collection::vec(prop_oneof![
            4 => -10.0f32..10.0,
            1 => any::<f32>(),
            1 => (-300i32..300).prop_map(|k| k as f32 * 0.5),
        ], 32..=32 * 9),
    ) {
        let n = x.len() / 32 * 32;
        check_quantize(&x[..n]);
        // Scaled so that id = 1: exact halves are ties.
        let mut y = x[..n].to_vec();
        for b in y.chunks_exact_mut(32) {
            b[0] = 127.0;
            for v in &mut b[1..] {
                *v = (*v * 8.0).round() / 16.0 ;
            }
        }
        check_quantize(&y);
    }

    #[test]
    fn float_dots_match_the_spec(
        n in prop_oneof![1usize..=40, Just(4096usize), Just(4101usize)],
        vals in prop::collection::vec(-4.0f32..4.0, 64),
        seed in any::<usize>(),
    ) {
        let v = |i: usize| vals[(i * 7 + seed) % vals.len()] * if i.is_multiple_of(5) { 1e3 } else { 1.0 };
        let x: Vec<f32> = (0..n).map(|i| v(i + 11)).collect();
        let w32 = std::array::from_fn(|r| (0..n).flat_map(|i| v(i + 3 * r).to_le_bytes()).collect());
        let w16 = std::array::from_fn(|r| (0..n).flat_map(|i| f32_to_f16_bits(v(i + 5 * r)).to_le_bytes()).collect());
        check_float_kernels(n, &w32, &w16, &x);
    }
}

#[test]
fn quant_edges_match_the_spec() {
    // Scales: f16 extremes (max, min normal, min subnormal, negative max, zero, inf, NaN).
    let scale_sets: [&[u16]; 5] = [
        &[0x7bff],
        &[0x0400, 0x0001, 0x8001],
        &[0xfbff, 0x0000, 0x3c00],
        &[0x7c00, 0x3c00],
        &[0x7e00, 0x3c00],
    ];
    // Quants: all -8 nibbles (0x00), all +7 (0xff), alternating; i8 -128, 127, mixed.
    let byte_sets: [&[u8]; 6] = [
        &[0x00],
        &[0xff],
        &[0x0f, 0xf0],
        &[0x80],
        &[0x7f],
        &[0x80, 0x7f, 0x00, 0x01],
    ];
    for nb in [1usize, 3, 7, 129] {
        for ws in scale_sets {
            for wb in byte_sets {
                for ab in byte_sets {
                    let w4 = std::array::from_fn(|_| quant_row(18, nb, wb, ws));
                    let w8 = std::array::from_fn(|_| quant_row(34, nb, wb, ws));
                    let a = std::array::from_fn(|_| quant_row(34, nb, ab, &[0x7bff, 0x0001]));
                    check_quant_kernels(nb * 32, &w4, &w8, &a);
                }
            }
        }
    }
}

#[test]
fn quantize_edges_match_the_spec() {
    let specials = [
        0.0f32,
        -0.0,
        f32::MAX,
        -f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        1e-45,
        -1e-45,
        2e-43,
        -2e-43,
        65504.0,
        65520.0,
        1e30,
        0.49999997,
        0.5,
        1.5,
        -2.5,
    ];
    for &s in &specials {
        for &t in &specials {
            let x: Vec<f32> = (0..64)
                .map(|i| match i % 4 {
                    0 => s,
                    1 => t,
                    2 => s * 0.5,
                    _ => -t,
                })
                .collect();
            check_quantize(&x);
        }
    }
    check_quantize(&[0.0; 32 * 7]);
    // Ties after scaling by id = 1 and by 127 / 1.27.
    let x: Vec<f32> = (0..32)
        .map(|i| if i == 0 { 127.0 } else { i as f32 - 15.5 })
        .collect();
    check_quantize(&x);
    let x: Vec<f32> = (0..32)
        .map(|i| {
            if i == 0 {
                1.27
            } else {
                (i as f32 - 15.5) * 0.01
            }
        })
        .collect();
    check_quantize(&x);
}

#[test]
fn float_edges_match_the_spec() {
    for n in [0usize, 1, 8, 15, 16, 17, 129] {
        for v in [
            0.0f32,
            -0.0,
            65504.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
            f32::INFINITY,
            f32::NAN,
        ] {
            let x: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { v } else { 1.0 }).collect();
            let w32 = std::array::from_fn(|r| {
                (0..n)
                    .flat_map(|i| if (i + r) % 2 == 0 { v } else { -1.5 }.to_le_bytes())
                    .collect()
            });
            let w16 = std::array::from_fn(|r| {
                (0..n)
                    .flat_map(|i| {
                        f32_to_f16_bits(if (i + r) % 2 == 0 { v } else { -1.5 }).to_le_bytes()
                    })
                    .collect()
            });
            check_float_kernels(n, &w32, &w16, &x);
        }
    }
}

/// The scalar spec itself against dequantize-and-dot in f64.
#[test]
fn scalar_quant_dot_is_the_dequantized_dot() {
    let n = 32 * 9;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
        .collect();
    let y: Vec<f32> = (0..n)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021)
        .collect();
    let mut a = vec![0u8; n / 32 * 34];
    quantize_row(GgmlType::Q8_0, &y, &mut a).unwrap();
    let mut ad = vec![0f32; n];
    dequantize_row(GgmlType::Q8_0, &a, &mut ad).unwrap();
    for (ty, dot) in [
        (
            GgmlType::Q4_0,
            scalar::vec_dot_q4_0_q8_0 as fn(usize, &[u8], &[u8]) -> f32,
        ),
        (GgmlType::Q8_0, scalar::vec_dot_q8_0_q8_0),
    ] {
        let mut w = vec![0u8; ty.row_bytes(n as u64).unwrap() as usize];
        quantize_row(ty, &x, &mut w).unwrap();
        let mut wd = vec![0f32; n];
        dequantize_row(ty, &w, &mut wd).unwrap();
        let exact: f64 = wd
            .iter()
            .zip(&ad)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum();
        let scale: f64 = wd
            .iter()
            .zip(&ad)
            .map(|(&p, &q)| (f64::from(p) * f64::from(q)).abs())
            .sum();
        let got = f64::from(dot(n, &w, &a));
        assert!(
            (got - exact).abs() <= 1e-6 * scale,
            "{ty}: {got} vs {exact}"
        );
    }
}
