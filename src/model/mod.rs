//! The Mixtral model: hyper-parameters, typed weights, and the forward pass over a batch of tokens.

pub mod attention;
pub mod config;
pub mod kv_cache;
pub mod mixtral;
pub mod moe;
pub mod norm;
pub mod observe;
pub mod pager;
pub mod rope;
pub mod weights;

pub use config::Config;
pub use kv_cache::{CacheType, KvCache};
pub use mixtral::{BatchToken, LoadOptions, MemBudget, Mixtral, Scratch};
pub use observe::{Hook, MatmulInput, Site};
pub use weights::Weights;
