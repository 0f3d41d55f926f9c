//! The K-quant kernels (Q2_K … Q6_K against Q8_K activations): every instruction set this CPU runs
//! against the scalar spec, bit for bit (NaN matches NaN), on random and edge data; the spec
//! against a dequantize-and-dot in f64; and the drivers (decode, tiles, gathers, thread counts).

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use smoe_quant::format::{dequantize_row, f32_to_f16_bits, quantize_row};
use smoe_quant::kernels::{self, kquant_scalar as spec, Isa, KQuantOps, Kernels};
use smoe_quant::matmul::{gemm, gemv, matmul, matmul_with, Activations, Matrix};
use smoe_quant::GgmlType;

const QK_K: usize = 256;
const Q8_K_BYTES: usize = 292;

/// One K-quant type: its block size, where its f16 scales sit, its spec and its table entry.
#[derive(Clone, Copy)]
struct Ty {
    ty: GgmlType,
    bytes: usize,
    f16_at: &'static [usize],
    spec: fn(usize, &[u8], &[u8]) -> f32,
    pick: fn(&Kernels) -> KQuantOps,
}

const TYPES: [Ty; 5] = [
    Ty {
        ty: GgmlType::Q4K,
        bytes: 144,
        f16_at: &[0, 2],
        spec: spec::vec_dot_q4_k_q8_k,
        pick: |k| k.k_quants.q4_k,
    },
    Ty {
        ty: GgmlType::Q6K,
        bytes: 210,
        f16_at: &[208],
        spec: spec::vec_dot_q6_k_q8_k,
        pick: |k| k.k_quants.q6_k,
    },
    Ty {
        ty: GgmlType::Q5K,
        bytes: 176,
        f16_at: &[0, 2],
        spec: spec::vec_dot_q5_k_q8_k,
        pick: |k| k.k_quants.q5_k,
    },
    Ty {
        ty: GgmlType::Q2K,
        bytes: 84,
        f16_at: &[80, 82],
        spec: spec::vec_dot_q2_k_q8_k,
        pick: |k| k.k_quants.q2_k,
    },
    Ty {
        ty: GgmlType::Q3K,
        bytes: 110,
        f16_at: &[108],
        spec: spec::vec_dot_q3_k_q8_k,
        pick: |k| k.k_quants.q3_k,
    },
];

/// The tables to check: every available one except the scalar spec itself.
fn tables() -> Vec<&'static Kernels> {
    let isas = kernels::available();
    assert!(isas.contains(&Isa::Portable));
    isas.into_iter()
        .filter(|&i| i != Isa::Scalar)
        .filter_map(kernels::table)
        .collect()
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// A weight row of `nb` blocks: bytes cycled from `bytes` (offset `skip`), the f16 scales from
/// `scales` (cycled).
fn weight_row(t: Ty, nb: usize, bytes: &[u8], skip: usize, scales: &[u16]) -> Vec<u8> {
    let mut row: Vec<u8> = bytes
        .iter()
        .cycle()
        .skip(skip)
        .take(nb * t.bytes)
        .copied()
        .collect();
    let mut k = 0;
    for b in row.chunks_exact_mut(t.bytes) {
        for &at in t.f16_at {
            b[at..at + 2].copy_from_slice(&scales[k % scales.len()].to_le_bytes());
            k += 1;
        }
    }
    row
}

/// A Q8_K row of `nb` blocks: quants cycled from `qs` (offset `skip`), scales from `d`, and the
/// `bsums` of the quants (the kernels' precondition).
fn act_row(nb: usize, qs: &[i8], skip: usize, d: &[f32]) -> Vec<u8> {
    let mut row = Vec::with_capacity(nb * Q8_K_BYTES);
    let mut q = qs.iter().cycle().skip(skip);
    for b in 0..nb {
        row.extend_from_slice(&d[b % d.len()].to_le_bytes());
        let block: Vec<i8> = q.by_ref().take(QK_K).copied().collect();
        row.extend(block.iter().map(|&v| v as u8));
        for g in block.chunks_exact(16) {
            let s: i16 = g.iter().map(|&v| i16::from(v)).sum();
            row.extend_from_slice(&s.to_le_bytes());
        }
    }
    row
}

/// Every kernel of every table on weight rows `w` [4] and activation rows `a` [4] against the spec.
fn check(t: Ty, n: usize, w: &[Vec<u8>; 4], a: &[Vec<u8>; 4]) {
    let wr = [&w[0][..], &w[1], &w[2], &w[3]];
    let ar = [&a[0][..], &a[1], &a[2], &a[3]];
    let want: [[f32; 4]; 4] = ar.map(|a| wr.map(|w| (t.spec)(n, w, a)));
    let fail = |what: &str, isa: Isa, got: f32, want: f32| {
        panic!(
            "{} {what} on {isa}, n = {n}: {got:e} ({:#x}) != spec {want:e} ({:#x})",
            t.ty,
            got.to_bits(),
            want.to_bits()
        )
    };
    for k in tables() {
        let qk = (t.pick)(k).kernels;
        for tok in 0..4 {
            let got = (qk.dot)(n, wr[tok], ar[tok]);
            if !same(got, want[tok][tok]) {
                fail("dot", k.isa, got, want[tok][tok]);
            }
            let x4 = (qk.dot_x4)(n, wr, ar[tok]);
            for r in 0..4 {
                if !same(x4[r], want[tok][r]) {
                    fail("dot_x4", k.isa, x4[r], want[tok][r]);
                }
            }
        }
        let tile = (qk.tile_4x4)(n, wr, ar);
        for tok in 0..4 {
            for r in 0..4 {
                if !same(tile[tok][r], want[tok][r]) {
                    fail("tile_4x4", k.isa, tile[tok][r], want[tok][r]);
                }
            }
        }
        // gemm_4 on every token count up to 13 (each chunk size and remainder): the tokens are
        // the four rows of `a` cycled.
        let gemm = (t.pick)(k).gemm_4;
        for n_tok in 1..=13 {
            let act: Vec<u8> = (0..n_tok).flat_map(|j| a[j % 4].iter().copied()).collect();
            let mut out = vec![f32::NAN; 4 * n_tok];
            gemm(n, wr, &act, &mut out);
            for j in 0..n_tok {
                for r in 0..4 {
                    if !same(out[4 * j + r], want[j % 4][r]) {
                        fail("gemm_4", k.isa, out[4 * j + r], want[j % 4][r]);
                    }
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
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn kquant_dots_match_the_spec(
        ti in 0usize..TYPES.len(),
        nb in prop::sample::select(vec![1usize, 2, 3, 5, 8, 17]),
        bytes in prop::collection::vec(any::<u8>(), 64..2048),
        scales in prop::collection::vec(finite_f16(), 1..16),
        qs in prop::collection::vec(any::<i8>(), 64..2048),
        d in prop::collection::vec(prop_oneof![-1e3f32..1e3, Just(0.0f32), 1e-7f32..1e-3], 1..8),
        seed in any::<u16>(),
    ) {
        let t = TYPES[ti];
        let s = usize::from(seed);
        let w = std::array::from_fn(|r| weight_row(t, nb, &bytes, s + 131 * r, &scales[r % scales.len()..]));
        let a = std::array::from_fn(|k| act_row(nb, &qs, s + 71 * k, &d[k % d.len()..]));
        check(t, nb * QK_K, &w, &a);
    }
}

/// Packs sub-block `j`'s 6-bit scale and min into the 12 bytes of Q4_K / Q5_K (the inverse of
/// `format::q4_k::get_scale_min`).
fn set_scale_min(j: usize, sc: u8, m: u8, q: &mut [u8]) {
    if j < 4 {
        q[j] = (q[j] & 0xc0) | sc;
        q[j + 4] = (q[j + 4] & 0xc0) | m;
    } else {
        q[j + 4] = (sc & 0x0f) | ((m & 0x0f) << 4);
        q[j - 4] = (q[j - 4] & 0x3f) | ((sc >> 4) << 6);
        q[j] = (q[j] & 0x3f) | ((m >> 4) << 6);
    }
}

#[test]
fn set_scale_min_inverts_the_format() {
    let mut q = [0u8; 12];
    for j in 0..8 {
        set_scale_min(j, (7 * j as u8 + 5) % 64, (11 * j as u8 + 60) % 64, &mut q);
    }
    for j in 0..8 {
        let got = smoe_quant::format::q4_k::get_scale_min(j, &q);
        assert_eq!(got, ((7 * j as u8 + 5) % 64, (11 * j as u8 + 60) % 64));
    }
}

#[test]
fn kquant_edges_match_the_spec() {
    // Weight bytes: zeros, all ones (max quants, max 4-bit/6-bit scales and mins, Q6_K +31 and
    // scale -1), alternating, i8 extremes for Q6_K scales, a ramp (every byte value).
    let ramp: Vec<u8> = (0..=255).collect();
    let byte_sets: [&[u8]; 6] = [
        &[0x00],
        &[0xff],
        &[0x55, 0xaa],
        &[0x80, 0x7f],
        &[0x3f],
        &ramp,
    ];
    // f16 scales: max, min normal / subnormals, negative max and zero, infinity, NaN.
    let scale_sets: [&[u16]; 5] = [
        &[0x7bff],
        &[0x0400, 0x0001, 0x8001],
        &[0xfbff, 0x0000, 0x3c00],
        &[0x7c00, 0x3c00],
        &[0x7e00, 0x3c00],
    ];
    // Activation quants: ±127, -128, alternating, zeros; scales: 1, large, tiny, negative, 0.
    let act_sets: [&[i8]; 5] = [&[127], &[-128], &[-127], &[127, -128, 0, 1], &[0]];
    let d_sets: [&[f32]; 3] = [&[1.0, -3.5], &[f32::MAX, 1e-38], &[0.0, 2.0]];
    for t in TYPES {
        for nb in [1usize, 3, 7] {
            for wb in byte_sets {
                for ws in scale_sets {
                    for ab in act_sets {
                        for d in d_sets {
                            let w = std::array::from_fn(|r| weight_row(t, nb, wb, 7 * r, ws));
                            let a = std::array::from_fn(|k| act_row(nb, ab, k, d));
                            check(t, nb * QK_K, &w, &a);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_6bit_scale_and_min_matches_the_spec() {
    // Q4_K / Q5_K: 8 blocks × 8 sub-blocks take every scale 0..64 and every min 63..=0.
    let nb = 8;
    for t in TYPES
        .into_iter()
        .filter(|t| matches!(t.ty, GgmlType::Q4K | GgmlType::Q5K))
    {
        let ramp: Vec<u8> = (0..=255).map(|v: u8| v.wrapping_mul(37)).collect();
        let w = std::array::from_fn(|r| {
            let mut row = weight_row(t, nb, &ramp, 13 * r, &[0x3c00, 0x3800]);
            for (b, blk) in row.chunks_exact_mut(t.bytes).enumerate() {
                for j in 0..8 {
                    let v = ((8 * b + j + r) % 64) as u8;
                    set_scale_min(j, v, 63 - v, &mut blk[4..16]);
                }
            }
            row
        });
        let a = std::array::from_fn(|k| act_row(nb, &[127, -128, 5, -7, 0], k, &[0.5, 1.0]));
        check(t, nb * QK_K, &w, &a);
    }
    // Q6_K: quants all -32 (ql = qh = 0) or all +31 (0xff), scales -128 and 127.
    let t = TYPES[1];
    for (ql, scale) in [(0x00u8, 0x80u8), (0xff, 0x7f), (0x00, 0x7f), (0xff, 0x80)] {
        let w = std::array::from_fn(|_| {
            let mut row = weight_row(t, 3, &[ql], 0, &[0x3c00]);
            for blk in row.chunks_exact_mut(t.bytes) {
                blk[192..208].fill(scale);
            }
            row
        });
        let a = std::array::from_fn(|k| act_row(3, &[127, -128, -127][k % 3..], 0, &[1.0]));
        check(t, 3 * QK_K, &w, &a);
    }
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Random quant bytes with small finite f16 scales (0.001 .. 0.03): realistic weight rows.
fn weight_matrix(t: Ty, n_rows: usize, n_cols: usize, seed: u64) -> Vec<u8> {
    let nb = n_cols / QK_K * n_rows;
    let bytes: Vec<u8> = values(nb * t.bytes, seed)
        .iter()
        .map(|v| ((v + 1.0) * 128.0) as u8)
        .collect();
    let scales: Vec<u16> = values(64, seed + 1)
        .iter()
        .map(|v| f32_to_f16_bits(0.001 + 0.029 * v.abs()))
        .collect();
    weight_row(t, nb, &bytes, 0, &scales)
}

/// The scalar spec itself against dequantize-and-dot in f64.
#[test]
fn scalar_spec_is_the_dequantized_dot() {
    let n = QK_K * 5;
    let x = values(n, 77);
    let mut a = vec![0u8; n / QK_K * Q8_K_BYTES];
    quantize_row(GgmlType::Q8K, &x, &mut a).unwrap();
    let mut ad = vec![0f32; n];
    dequantize_row(GgmlType::Q8K, &a, &mut ad).unwrap();
    for t in TYPES {
        for seed in 0..4 {
            let w = weight_matrix(t, 1, n, 100 + seed);
            let mut wd = vec![0f32; n];
            dequantize_row(t.ty, &w, &mut wd).unwrap();
            let exact: f64 = wd
                .iter()
                .zip(&ad)
                .map(|(&p, &q)| f64::from(p) * f64::from(q))
                .sum();
            let mag: f64 = wd
                .iter()
                .zip(&ad)
                .map(|(&p, &q)| (f64::from(p) * f64::from(q)).abs())
                .sum();
            let got = f64::from((t.spec)(n, &w, &a));
            assert!(
                (got - exact).abs() <= 2e-6 * mag,
                "{}: {got} vs {exact} (magnitude {mag})",
                t.ty
            );
        }
    }
}

#[test]
fn quantize_row_q8_k_matches_the_format() {
    for (i, x) in [values(QK_K * 3, 5), vec![0.0; QK_K * 2], {
        let mut v = values(QK_K, 6);
        v[17] = 40.0;
        v[200] = -40.0;
        v
    }]
    .iter()
    .enumerate()
    {
        let mut want = vec![0u8; x.len() / QK_K * Q8_K_BYTES];
        quantize_row(GgmlType::Q8K, x, &mut want).unwrap();
        for isa in kernels::available() {
            let k = kernels::table(isa).unwrap();
            let mut got = vec![0xaau8; want.len()];
            (k.k_quants.quantize_row_q8_k)(x, &mut got);
            assert_eq!(got, want, "quantize_row_q8_k on {isa}, case {i}");
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn matmul_runs_the_spec_everywhere() {
    for t in TYPES {
        for (n_rows, n_cols) in [(1, 256), (7, 512), (37, 768), (130, 1024)] {
            let wb = weight_matrix(t, n_rows, n_cols, n_rows as u64 * 31 + n_cols as u64);
            let w = Matrix::new(t.ty, &wb, n_rows, n_cols).unwrap();
            for n_tok in [1usize, 2, 5, 9] {
                let x = values(n_tok * n_cols, 7 + n_tok as u64);
                let acts = Activations::from_rows(&x, n_cols).unwrap();
                let mut y = vec![0.0; n_tok * n_rows];
                matmul(&w, &acts, &mut y).unwrap();
                // Every output is the spec's dot of its row with the token's Q8_K row.
                for tok in 0..n_tok {
                    let a = acts.q8k_row(tok).unwrap();
                    let mut q = vec![0u8; a.len()];
                    quantize_row(GgmlType::Q8K, &x[tok * n_cols..(tok + 1) * n_cols], &mut q)
                        .unwrap();
                    assert_eq!(a, &q[..], "Q8_K rows");
                    for r in 0..n_rows {
                        let want = (t.spec)(n_cols, w.row(r), a);
                        assert_eq!(
                            y[tok * n_rows + r].to_bits(),
                            want.to_bits(),
                            "{} {n_rows}x{n_cols} t{tok} r{r}",
                            t.ty
                        );
                    }
                }
                // Every instruction set, thread count and the legacy entry points: same bits.
                for isa in kernels::available() {
                    let mut yi = vec![0.0; y.len()];
                    matmul_with(kernels::table(isa).unwrap(), &w, &acts, &mut yi).unwrap();
                    assert_eq!(bits(&yi), bits(&y), "{} {isa} differs", t.ty);
                }
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut yt = vec![0.0; y.len()];
                    pool.install(|| matmul(&w, &acts, &mut yt)).unwrap();
                    assert_eq!(bits(&yt), bits(&y), "{}: {threads} threads differ", t.ty);
                }
                let mut yl = vec![0.0; y.len()];
                gemm(&w, &x, n_tok, &mut yl).unwrap();
                assert_eq!(bits(&yl), bits(&y), "{}: legacy gemm differs", t.ty);
                let mut yv = vec![0.0; n_rows];
                gemv(&w, &x[..n_cols], &mut yv).unwrap();
                assert_eq!(bits(&yv), bits(&y[..n_rows]), "{}: gemv differs", t.ty);
            }
        }
    }
}

#[test]
fn gathers_carry_q8_k() {
    let t = TYPES[0];
    let (n_rows, n_cols, n_tok) = (20, 512, 11);
    let wb = weight_matrix(t, n_rows, n_cols, 3);
    let w = Matrix::new(t.ty, &wb, n_rows, n_cols).unwrap();
    let x = values(n_tok * n_cols, 4);
    let mut acts = Activations::from_rows(&x, n_cols).unwrap();
    let mut y = vec![0.0; n_tok * n_rows];
    matmul(&w, &acts, &mut y).unwrap();
    let pick = [10usize, 0, 3, 3, 7];
    let mut sub = Activations::new();
    // Twice: the first gather finds Q8_K in the source; the second, after new rows, makes it
    // there because `sub` has fed a K-quant matrix.
    for round in 0..2 {
        if round == 1 {
            acts.set_rows(&x, n_cols).unwrap();
        }
        acts.gather_into(&pick, &mut sub).unwrap();
        let mut ys = vec![0.0; pick.len() * n_rows];
        matmul(&w, &sub, &mut ys).unwrap();
        for (i, &tok) in pick.iter().enumerate() {
            assert_eq!(sub.q8k_row(i), acts.q8k_row(tok));
            assert_eq!(
                bits(&ys[i * n_rows..(i + 1) * n_rows]),
                bits(&y[tok * n_rows..(tok + 1) * n_rows]),
                "round {round}"
            );
        }
    }
    // Rows replaced: Q8_K follows the new rows.
    let x2 = values(n_tok * n_cols, 5);
    acts.set_rows(&x2, n_cols).unwrap();
    let mut q = vec![0u8; n_cols / QK_K * Q8_K_BYTES];
    quantize_row(GgmlType::Q8K, &x2[..n_cols], &mut q).unwrap();
    assert_eq!(acts.q8k_row(0).unwrap(), &q[..]);
    // Not whole super-blocks: no Q8_K rows.
    let odd = Activations::from_rows(&x[..96], 96).unwrap();
    assert!(odd.q8k_row(0).is_none());
}

/// An eight-row many-token kernel (`gemm_8`, where a table has it) against the spec, bit for
/// bit: called directly on one and two groups of eight distinct rows (at a padded stride), on
/// the weight bytes of `byte_sets` (`fix` then edits each row's blocks: set, row, block) with
/// activations ±127 and -128 and random ones, on every tile remainder of the token count (and
/// past one 256-token pass), and through `matmul` on 9 and 13 rows (past the type's cut-off, a
/// group of eight and leftover rows; 1 to 13 tokens, both sides of each cut-off). Returns how
/// many `gemm_8` runs were checked.
fn check_gemm_8(t: Ty, byte_sets: &[&[u8]], fix: impl Fn(usize, usize, &mut [u8])) -> usize {
    let random: Vec<u8> = values(4096, 11)
        .iter()
        .map(|v| ((v + 1.0) * 128.0) as u8)
        .collect();
    let scale_sets: [&[u16]; 3] = [&[0x3c00, 0x2e66, 0xb800], &[0x7bff, 0x0001], &[0x1010]];
    let act_sets: [&[i8]; 4] = [&[-128], &[127], &[127, -128, 0, -127, 3], &[-128, 127]];
    let random_acts: Vec<i8> = random.iter().map(|&b| b as i8).collect();
    let nb = 3;
    let n = nb * QK_K;
    let span = nb * t.bytes;
    let row_bytes = span + 40;
    let mut checked = 0;
    for k in tables() {
        let Some(gemm_8) = (t.pick)(k).gemm_8 else {
            continue;
        };
        for (wi, wb) in byte_sets.iter().chain([&&random[..]]).enumerate() {
            let ws = scale_sets[wi % scale_sets.len()];
            // 16 distinct rows (each a different offset into the bytes and scales).
            let rows: Vec<Vec<u8>> = (0..16)
                .map(|r| {
                    let mut row = weight_row(t, nb, wb, 29 * r + wi, &ws[r % ws.len()..]);
                    for blk in row.chunks_exact_mut(t.bytes) {
                        fix(wi, r, blk);
                    }
                    row
                })
                .collect();
            let mut w = vec![0xa5u8; 16 * row_bytes];
            for (r, row) in rows.iter().enumerate() {
                w[r * row_bytes..r * row_bytes + span].copy_from_slice(row);
            }
            for (ai, ab) in act_sets.iter().chain([&&random_acts[..]]).enumerate() {
                for n_tok in [1usize, 2, 3, 5, 9, 13, 70, 260] {
                    let acts: Vec<Vec<u8>> = (0..n_tok)
                        .map(|j| act_row(nb, ab, 17 * j + ai, &[0.25, -1.5, 3e-3]))
                        .collect();
                    let a: Vec<u8> = acts.concat();
                    for n_rows in [8, 16] {
                        let mut out = vec![f32::NAN; n_rows * n_tok];
                        gemm_8(
                            n,
                            &w[..(n_rows - 1) * row_bytes + span],
                            row_bytes,
                            &a,
                            &mut out,
                        );
                        for r in 0..n_rows {
                            for j in 0..n_tok {
                                let want = (t.spec)(n, &rows[r], &acts[j]);
                                let got = out[r * n_tok + j];
                                assert!(
                                    same(got, want),
                                    "{} gemm_8 on {}: rows {n_rows} r{r} t{j} of {n_tok}, \
                                     bytes {wi}, acts {ai}: {got:e} != spec {want:e}",
                                    t.ty,
                                    k.isa
                                );
                            }
                        }
                    }
                    checked += 1;
                }
            }
        }
    }
    // Through the driver: a group of eight plus leftover rows, every table.
    for n_rows in [9, 13] {
        let wb = weight_matrix(t, n_rows, 512, 5 + n_rows as u64);
        let w = Matrix::new(t.ty, &wb, n_rows, 512).unwrap();
        for n_tok in [1usize, 2, 5, 6, 9, 13] {
            let x = values(n_tok * 512, 3 + n_tok as u64);
            let acts = Activations::from_rows(&x, 512).unwrap();
            for isa in kernels::available() {
                let mut y = vec![0.0; n_tok * n_rows];
                matmul_with(kernels::table(isa).unwrap(), &w, &acts, &mut y).unwrap();
                for tok in 0..n_tok {
                    let a = acts.q8k_row(tok).unwrap();
                    for r in 0..n_rows {
                        let want = (t.spec)(512, w.row(r), a);
                        assert_eq!(
                            y[tok * n_rows + r].to_bits(),
                            want.to_bits(),
                            "{} {isa} {n_rows} rows, {n_tok} tokens: t{tok} r{r}",
                            t.ty
                        );
                    }
                }
            }
        }
    }
    checked
}

/// [`check_gemm_8`] for `ty` on all-ones quant bytes (0xff), zeros, mixed bytes and a ramp. With
/// `scales`, the first two sets also get the scale bytes in that range set to one of the two
/// values, alternating by row, so extreme quants meet extreme scales. On a CPU with AVX2 the table
/// must have a `gemm_8` for `ty`.
fn gemm_8_on_edges(ty: GgmlType, scales: Option<(std::ops::Range<usize>, [u8; 2])>) {
    let t = *TYPES.iter().find(|t| t.ty == ty).unwrap();
    let ramp: Vec<u8> = (0..=255).collect();
    let sets: [&[u8]; 4] = [&[0xff], &[0x00], &[0x00, 0xff, 0x0f], &ramp];
    let checked = check_gemm_8(t, &sets, |wi, r, blk| {
        if let Some((range, v)) = scales.clone().filter(|_| wi < 2) {
            blk[range].fill(v[(r + wi) % 2]);
        }
    });
    if kernels::available().contains(&Isa::Avx2) {
        assert!(checked > 0, "the AVX2 table has a {ty} gemm_8");
    }
}

/// Q4_K: quants 15 (0xff, scales and mins 63 too), zeros, mixed bytes, a ramp.
#[test]
fn q4_k_gemm_8_matches_the_spec() {
    gemm_8_on_edges(GgmlType::Q4K, None);
}

/// Q5_K: quants 31 (0xff, scales and mins 63 too), zeros, mixed bytes, a ramp.
#[test]
fn q5_k_gemm_8_matches_the_spec() {
    gemm_8_on_edges(GgmlType::Q5K, None);
}

/// Q6_K: quants +31 (0xff) or -32 (0x00) with every scale 127 or -128.
#[test]
fn q6_k_gemm_8_matches_the_spec() {
    gemm_8_on_edges(GgmlType::Q6K, Some((192..208, [0x7f, 0x80])));
}

/// Q3_K: quants +3 (0xff, high bits set) or -4 (0x00) with the packed scales all ones (every
/// scale +31) or all zeros (-32).
#[test]
fn q3_k_gemm_8_matches_the_spec() {
    gemm_8_on_edges(GgmlType::Q3K, Some((96..108, [0xff, 0x00])));
}

/// Q2_K: quants 3 (0xff) or 0 with every scale and min 15, or scale 15 and min 0.
#[test]
fn q2_k_gemm_8_matches_the_spec() {
    gemm_8_on_edges(GgmlType::Q2K, Some((0..16, [0xff, 0x0f])));
}
