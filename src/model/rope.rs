//! Rotary position embedding, llama.cpp's "normal" mode: adjacent pairs (x[2i], x[2i+1]) of each head
//! are rotated by `pos · base^(-2i/n_rot)`. (Hugging Face rotates halves instead; the converter
//! permutes the rows of the Q and K projections so that both conventions give the same result.)

/// Per-pair inverse frequencies, computed once: `inv_freq[i] = base^(-2i/n_rot)`.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(n_rot: usize, base: f32) -> Self {
        let inv_freq = (0..n_rot / 2)
            .map(|i| (1.0 / (base as f64).powf(2.0 * i as f64 / n_rot as f64)) as f32)
            .collect();
        Rope { inv_freq }
    }

    /// Rotates every head of `x` [n_heads × head_dim] in place for position `pos`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        for head in x.chunks_exact_mut(head_dim) {
            for (i, &f) in self.inv_freq.iter().enumerate() {
                let theta = pos as f32 * f;
                let (sin, cos) = theta.sin_cos();
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * cos - b * sin;
                head[2 * i + 1] = a * sin + b * cos;
            }
        }
    }
}
