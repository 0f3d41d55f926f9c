//! Well-known metadata key names (as llama.cpp's `gguf` package writes them). Per-architecture keys
//! are `{arch}.suffix`; build them with [`arch_key`].

pub const GENERAL_ARCHITECTURE: &str = "general.architecture";
pub const GENERAL_NAME: &str = "general.name";
pub const GENERAL_ALIGNMENT: &str = "general.alignment";
pub const GENERAL_FILE_TYPE: &str = "general.file_type";
pub const GENERAL_QUANTIZATION_VERSION: &str = "general.quantization_version";

// Per-architecture suffixes: the key is `{arch}{SUFFIX}`, e.g. "llama.expert_count".
pub const CONTEXT_LENGTH: &str = ".context_length";
pub const EMBEDDING_LENGTH: &str = ".embedding_length";
pub const BLOCK_COUNT: &str = ".block_count";
pub const FEED_FORWARD_LENGTH: &str = ".feed_forward_length";
pub const EXPERT_FEED_FORWARD_LENGTH: &str = ".expert_feed_forward_length";
pub const EXPERT_COUNT: &str = ".expert_count";
pub const EXPERT_USED_COUNT: &str = ".expert_used_count";
pub const ATTENTION_HEAD_COUNT: &str = ".attention.head_count";
pub const ATTENTION_HEAD_COUNT_KV: &str = ".attention.head_count_kv";
pub const ATTENTION_LAYER_NORM_RMS_EPSILON: &str = ".attention.layer_norm_rms_epsilon";
pub const ATTENTION_KEY_LENGTH: &str = ".attention.key_length";
pub const ROPE_FREQ_BASE: &str = ".rope.freq_base";
pub const ROPE_DIMENSION_COUNT: &str = ".rope.dimension_count";
pub const VOCAB_SIZE: &str = ".vocab_size";

pub const TOKENIZER_MODEL: &str = "tokenizer.ggml.model";
pub const TOKENIZER_PRE: &str = "tokenizer.ggml.pre";
pub const TOKENIZER_TOKENS: &str = "tokenizer.ggml.tokens";
pub const TOKENIZER_SCORES: &str = "tokenizer.ggml.scores";
pub const TOKENIZER_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub const TOKENIZER_MERGES: &str = "tokenizer.ggml.merges";
pub const TOKENIZER_BOS_ID: &str = "tokenizer.ggml.bos_token_id";
pub const TOKENIZER_EOS_ID: &str = "tokenizer.ggml.eos_token_id";
pub const TOKENIZER_UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
pub const TOKENIZER_PAD_ID: &str = "tokenizer.ggml.padding_token_id";
pub const TOKENIZER_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
pub const TOKENIZER_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
pub const TOKENIZER_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// `{arch}{suffix}`, e.g. `arch_key("llama", EXPERT_COUNT)` = "llama.expert_count".
pub fn arch_key(arch: &str, suffix: &str) -> String {
    format!("{arch}{suffix}")
}
