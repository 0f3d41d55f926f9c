//! A memory read-bandwidth probe: the roofline that a decode matrix-vector product (which reads
//! every weight byte once) can at best reach.

use std::time::Instant;

use rayon::prelude::*;

use crate::{QuantError, Result};

/// Bytes summed per task: long runs, so each thread streams as the hardware prefetchers like.
const CHUNK: usize = 1 << 20;

/// Reads a `bytes`-byte buffer (rounded down to whole 1 MiB chunks, at least one) with `threads`
/// threads, each 1 MiB task summing its chunk as [`STREAMS`] streams of 64-bit words (plain Rust
/// the compiler vectorizes for any CPU: the loads, not the adds, are the limit); returns the best
/// of a few passes in GB/s (10^9 bytes per second). Make `bytes` several times the last-level
/// cache.
pub fn measure_read_gbps(bytes: usize, threads: usize) -> Result<f64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| QuantError::Pool(e.to_string()))?;
    let words = (bytes / CHUNK).max(1) * CHUNK / 8;
    let buf = vec![1u64; words]; // touched once here so the pages exist
    let mut best = f64::INFINITY;
    let mut check = 0u64;
    for _ in 0..5 {
        let t0 = Instant::now();
        let sum: u64 = pool.install(|| {
            buf.par_chunks(CHUNK / 8)
                .map(sum_words)
                .reduce(|| 0, u64::wrapping_add)
        });
        best = best.min(t0.elapsed().as_secs_f64());
        check = check.wrapping_add(sum);
    }
    // Keeps the sums alive (and catches a pass that read nothing).
    if check != 5 * words as u64 {
        return Err(QuantError::Pool(format!(
            "bandwidth probe summed {check}, expected {}",
            5 * words
        )));
    }
    Ok((words * 8) as f64 / best / 1e9)
}

/// Streams a task reads side by side: a decode kernel reads several weight rows at once, and
/// one core gets about a fifth more bandwidth from several streams than from one (12.0 against
/// 14.5 GB/s on the two-core Xeon this was measured on).
const STREAMS: usize = 8;

/// The wrapping sum of `w` (a whole number of [`STREAMS`] × 8 words), read as [`STREAMS`]
/// consecutive parts side by side, eight words of each in turn.
fn sum_words(w: &[u64]) -> u64 {
    let part = w.len() / STREAMS / 8 * 8;
    let mut acc = [0u64; 8];
    for i in (0..part).step_by(8) {
        for s in 0..STREAMS {
            let c = &w[s * part + i..s * part + i + 8];
            for (a, x) in acc.iter_mut().zip(c) {
                *a = a.wrapping_add(*x);
            }
        }
    }
    let rest = w[STREAMS * part..]
        .iter()
        .fold(0u64, |s, x| s.wrapping_add(*x));
    acc.iter().fold(rest, |s, x| s.wrapping_add(*x))
}
