//! A memory read-bandwidth probe: the roofline that a decode matrix-vector product (which reads
//! every weight byte once) can at best reach.

use std::time::Instant;

use rayon::prelude::*;

use crate::kernels;
use crate::{QuantError, Result};

/// Floats summed per task: 64 KiB of the buffer against an L1-resident vector of ones.
const CHUNK: usize = 16 * 1024;

/// Reads a `bytes`-byte buffer (rounded down to whole 64 KiB chunks, at least one) with `threads`
/// threads, summing it with the best f32 dot kernel; returns the best of a few passes in GB/s
/// (10^9 bytes per second). Make `bytes` several times the last-level cache.
pub fn measure_read_gbps(bytes: usize, threads: usize) -> Result<f64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| QuantError::Pool(e.to_string()))?;
    let n = (bytes / 4 / CHUNK).max(1) * CHUNK;
    let buf = vec![1.0f32; n]; // [n] touched once here so the pages exist
    let ones = vec![1.0f32; CHUNK];
    // The best table the CPU has, whatever `SMOE_ISA` says: this measures the machine.
    let dot = kernels::table(kernels::detected())
        .unwrap_or(kernels::kernels())
        .f32
        .dot;
    let data: &[u8] = bytemuck::cast_slice(&buf);
    let mut best = f64::INFINITY;
    let mut check = 0.0f32;
    for _ in 0..5 {
        let t0 = Instant::now();
        let sum: f32 = pool.install(|| {
            data.par_chunks(CHUNK * 4)
                .map(|c| dot(CHUNK, c, &ones))
                .sum()
        });
        best = best.min(t0.elapsed().as_secs_f64());
        check += sum;
    }
    // Keeps the sums alive (and catches a kernel that read nothing).
    if check < n as f32 {
        return Err(QuantError::Pool(format!(
            "bandwidth probe summed {check}, expected {}",
            5 * n
        )));
    }
    Ok((n * 4) as f64 / best / 1e9)
}
