//! Random quantized weights for the kernel benches and the `decode_probe` example (included by
//! both with `#[path]`): random quant bytes, with every block's f16 scales set to a small finite
//! value so that every dot product stays finite.

use smoe_quant::GgmlType;

/// `n_rows` rows of `n_cols` elements of `ty` (empty when `n_cols` is not whole blocks), from an
/// xorshift stream started at `seed`.
pub fn random_weights(ty: GgmlType, n_rows: usize, n_cols: usize, seed: u64) -> Vec<u8> {
    let len = ty.row_bytes(n_cols as u64).unwrap_or(0) as usize * n_rows;
    let mut s = seed | 1;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    for b in v.chunks_exact_mut(ty.type_size()) {
        for &at in scale_offsets(ty) {
            b[at..at + 2].copy_from_slice(&0x2000u16.to_le_bytes());
        }
    }
    v
}

/// Where a block of `ty` keeps its f16 scales.
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[0],
    }
}
