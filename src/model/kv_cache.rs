//! The KV cache: keys and values of every position already seen, per sequence slot and layer.
//! Allocated once for `n_seq` slots of `n_ctx` positions; f16 by default (half the memory), f32 for
//! exact comparisons.

use half::f16;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CacheType {
    #[default]
    F16,
    F32,
}

impl std::str::FromStr for CacheType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(CacheType::F16),
            "f32" => Ok(CacheType::F32),
            _ => Err(format!("unknown cache type '{s}' (expected f16 or f32)")),
        }
    }
}

/// Storage of one cache tensor.
#[derive(Debug)]
pub enum KvStore {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl KvStore {
    fn new(ty: CacheType, n: usize) -> Self {
        match ty {
            CacheType::F16 => KvStore::F16(vec![f16::ZERO; n]),
            CacheType::F32 => KvStore::F32(vec![0.0; n]),
        }
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            KvStore::F16(v) => {
                for (d, s) in v[at..at + src.len()].iter_mut().zip(src) {
                    *d = f16::from_f32(*s);
                }
            }
            KvStore::F32(v) => v[at..at + src.len()].copy_from_slice(src),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            KvStore::F16(v) => v.len() * 2,
            KvStore::F32(v) => v.len() * 4,
        }
    }
}

/// Keys and values: for each slot and layer, `n_ctx` rows of `kv_dim` (= n_head_kv × head_dim).
/// Layout [n_seq][n_layer][n_ctx][kv_dim].
#[derive(Debug)]
pub struct KvCache {
    pub k: KvStore,
    pub v: KvStore,
    pub n_seq: usize,
    pub n_layer: usize,
    pub n_ctx: usize,
    pub kv_dim: usize,
}

impl KvCache {
    pub fn new(ty: CacheType, n_seq: usize, n_layer: usize, n_ctx: usize, kv_dim: usize) -> Self {
        let n = n_seq * n_layer * n_ctx * kv_dim;
        KvCache {
            k: KvStore::new(ty, n),
            v: KvStore::new(ty, n),
            n_seq,
            n_layer,
            n_ctx,
            kv_dim,
        }
    }

    /// Offset of row `pos` of layer `il` in slot `seq`.
    pub fn offset(&self, seq: usize, il: usize, pos: usize) -> usize {
        ((seq * self.n_layer + il) * self.n_ctx + pos) * self.kv_dim
    }

    /// Stores the key and value rows [kv_dim] of one position.
    pub fn store(&mut self, seq: usize, il: usize, pos: usize, k: &[f32], v: &[f32]) {
        let at = self.offset(seq, il, pos);
        self.k.write(at, k);
        self.v.write(at, v);
    }

    /// Bytes held by keys and values together.
    pub fn bytes(&self) -> usize {
        self.k.bytes() + self.v.bytes()
    }
}
