//! `Vocab`: a SentencePiece ("llama") vocabulary as GGUF stores it, and its conversion from tokenizer.json.
//!
//! GGUF keeps no merge list for a "llama" vocabulary: only pieces, scores and token types. llama.cpp
//! tokenizes by repeatedly merging the adjacent pair whose *merged piece* has the highest score (leftmost
//! on ties). We therefore derive the scores from the BPE merge order of tokenizer.json:
//!
//! - a normal piece produced by a merge gets `-(rank of the first merge that produces it)`, so pieces
//!   made by earlier merges score higher;
//! - a normal piece that no merge produces (single characters) gets a score below every merge:
//!   `-(n_merges + k)`, k counting those pieces in id order (SentencePiece orders them after the merges);
//! - control, unknown, user-defined and byte pieces get 0, as SentencePiece does.
//!
//! [`derive_merges`] turns the scores back into a merge list; `from_tokenizer_json` checks that it
//! reproduces the file's merges exactly, so a GGUF written from this vocabulary tokenizes like tokenizer.json.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum TokenType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    /// The type for a GGUF token-type value, `None` if the value is not one of 1..=6.
    pub fn from_gguf(v: i32) -> Option<TokenType> {
        Some(match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// A SentencePiece vocabulary in the shape GGUF stores it (`tokenizer.ggml.*` keys, model "llama").
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    /// `tokenizer.ggml.tokens` [n_vocab]: the pieces, with '▁' (U+2581) for a space.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` [n_vocab]: higher merges first.
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type` [n_vocab]: see [`TokenType`].
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.bos_token_id`
    pub bos_id: u32,
    /// `tokenizer.ggml.eos_token_id`
    pub eos_id: u32,
    /// `tokenizer.ggml.unknown_token_id`
    pub unk_id: u32,
    /// `tokenizer.ggml.add_bos_token`
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token`
    pub add_eos: bool,
    /// `tokenizer.chat_template`
    pub chat_template: Option<String>,
}

/// Parse `<0xHH>` (a byte-fallback piece) into its byte.
pub fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Vocab {
    /// Number of tokens.
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    /// The type of token `id` (`None` if out of range or not a known type value).
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.token_types
            .get(id as usize)
            .copied()
            .and_then(TokenType::from_gguf)
    }

    /// Check the vocabulary is self-consistent: equal lengths, ids in range, known token types,
    /// finite scores, no duplicate pieces, well-formed byte pieces.
    pub fn validate(&self) -> Result<()> {
        let n = self.tokens.len();
        if n == 0 {
            return Err(Error::Vocab("no tokens".into()));
        }
        if u32::try_from(n).is_err() {
            return Err(Error::Vocab(format!("{n} tokens do not fit u32 ids")));
        }
        if self.scores.len() != n || self.token_types.len() != n {
            return Err(Error::Vocab(format!(
                "{n} tokens but {} scores and {} token types (all three must be equal)",
                self.scores.len(),
                self.token_types.len()
            )));
        }
        for (what, id) in [
            ("bos", self.bos_id),
            ("eos", self.eos_id),
            ("unk", self.unk_id),
        ] {
            if id as usize >= n {
                return Err(Error::Vocab(format!(
                    "{what} id {id} out of range (n_vocab {n})"
                )));
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
        for (id, tok) in self.tokens.iter().enumerate() {
            if tok.is_empty() {
                return Err(Error::Vocab(format!("token {id} is the empty string")));
            }
            if let Some(prev) = seen.insert(tok.as_str(), id) {
                return Err(Error::Vocab(format!(
                    "token {id} {tok:?} duplicates token {prev}"
                )));
            }
            let ty = self.token_types[id];
            match TokenType::from_gguf(ty) {
                None => {
                    return Err(Error::Vocab(format!(
                        "token {id} {tok:?} has type {ty}, expected 1..=6"
                    )))
                }
                Some(TokenType::Byte) if parse_byte_piece(tok).is_none() => {
                    return Err(Error::Vocab(format!(
                        "token {id} {tok:?} has type byte (6) but is not of the form <0xHH>"
                    )))
                }
                _ => {}
            }
            if !self.scores[id].is_finite() {
                return Err(Error::Vocab(format!(
                    "token {id} {tok:?} has score {}",
                    self.scores[id]
                )));
            }
        }
        Ok(())
    }

    /// Read a Hugging Face SentencePiece-style BPE tokenizer (tokenizer.json, and optionally
    /// tokenizer_config.json for bos/eos/unk, add_bos/add_eos and the chat template) into a vocabulary
    /// with scores derived from the merge order (see the module docs). This is what `smoe quantize`
    /// writes into GGUF. Fails if the merges cannot be expressed as scores.
    pub fn from_tokenizer_json(
        tokenizer_json: &Path,
        tokenizer_config: Option<&Path>,
    ) -> Result<Vocab> {
        let parsed = parse_tokenizer_json(tokenizer_json, tokenizer_config)?;
        let derived = super::build::derive_merges(&parsed.vocab)?;
        let vocab = &parsed.vocab;
        let file = &parsed.merges;
        let bad = |msg: String| Error::TokenizerFile {
            path: tokenizer_json.to_path_buf(),
            msg,
        };
        if derived.len() != file.len() {
            return Err(bad(format!(
                "the merges are not representable as SentencePiece scores: the file has {} merges, \
                 the vocabulary implies {} (every split of a piece into two pieces must be a merge)",
                file.len(),
                derived.len()
            )));
        }
        for (rank, (d, f)) in derived.iter().zip(file).enumerate() {
            if d != f {
                let name = |p: &(u32, u32)| {
                    format!(
                        "{:?} + {:?}",
                        vocab.tokens[p.0 as usize], vocab.tokens[p.1 as usize]
                    )
                };
                return Err(bad(format!(
                    "the merges are not representable as SentencePiece scores: merge {rank} is {}, \
                     the scores order {} there",
                    name(f),
                    name(d)
                )));
            }
        }
        Ok(parsed.vocab)
    }
}

/// A parsed tokenizer.json: the vocabulary and the file's own merges (as id pairs).
pub(crate) struct ParsedTokenizer {
    pub vocab: Vocab,
    pub merges: Vec<(u32, u32)>,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::TokenizerFile {
        path: path.to_path_buf(),
        msg: format!("not JSON: {e}"),
    })
}

/// A special-token entry of tokenizer_config.json: a string or an AddedToken object `{content: ...}`.
fn config_token(cfg: &Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `chat_template` is a string, or a list of `{name, template}` (we take "default").
fn config_chat_template(cfg: &Value) -> Option<String> {
    match cfg.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_owned)),
        _ => None,
    }
}

/// Parse tokenizer.json (+ config) without checking that the merges match the derived scores.
pub(crate) fn parse_tokenizer_json(
    tokenizer_json: &Path,
    tokenizer_config: Option<&Path>,
) -> Result<ParsedTokenizer> {
    let bad = |msg: String| Error::TokenizerFile {
        path: tokenizer_json.to_path_buf(),
        msg,
    };
    let root = read_json(tokenizer_json)?;
    let model = root
        .get("model")
        .ok_or_else(|| bad("no \"model\" object".into()))?;
    let model_type = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
    if model_type != "BPE" {
        return Err(bad(format!(
            "model type {model_type:?}, expected \"BPE\" (SentencePiece BPE)"
        )));
    }
    if root.pointer("/pre_tokenizer/type").and_then(Value::as_str) == Some("ByteLevel") {
        return Err(bad(
            "byte-level BPE (GPT-2 style) is not a SentencePiece vocabulary".into(),
        ));
    }

    // id -> piece, from the model vocabulary and the added tokens.
    let model_vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("model.vocab is not an object".into()))?;
    let mut slots: Vec<Option<String>> = Vec::new();
    let put = |id: u64, piece: &str, slots: &mut Vec<Option<String>>| -> Result<()> {
        let i = usize::try_from(id).ok().filter(|&i| i < (1 << 24));
        let i = i.ok_or_else(|| bad(format!("token {piece:?} has id {id}, too large")))?;
        if slots.len() <= i {
            slots.resize(i + 1, None);
        }
        match &slots[i] {
            Some(prev) if prev != piece => {
                Err(bad(format!("id {i} is both {prev:?} and {piece:?}")))
            }
            _ => {
                slots[i] = Some(piece.to_owned());
                Ok(())
            }
        }
    };
    for (piece, id) in model_vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| bad(format!("model.vocab[{piece:?}] is not an id")))?;
        put(id, piece, &mut slots)?;
    }
    let mut added_special: Vec<(u32, bool)> = Vec::new();
    if let Some(added) = root.get("added_tokens").and_then(Value::as_array) {
        for t in added {
            let content = t.get("content").and_then(Value::as_str);
            let id = t.get("id").and_then(Value::as_u64);
            let (Some(content), Some(id)) = (content, id) else {
                return Err(bad(format!("added token without content or id: {t}")));
            };
            put(id, content, &mut slots)?;
            let special = t.get("special").and_then(Value::as_bool).unwrap_or(false);
            added_special.push((id as u32, special));
        }
    }
    let mut tokens = Vec::with_capacity(slots.len());
    for (id, slot) in slots.into_iter().enumerate() {
        tokens.push(slot.ok_or_else(|| bad(format!("no token has id {id} (ids must be dense)")))?);
    }
    let index: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();

    // Merges, as "a b" strings (older files) or ["a", "b"] pairs (newer files).
    let mut merges = Vec::new();
    let raw_merges = model.get("merges").and_then(Value::as_array);
    for (rank, m) in raw_merges.into_iter().flatten().enumerate() {
        let (a, b) = match m {
            Value::String(s) => s
                .split_once(' ')
                .ok_or_else(|| bad(format!("merge {rank} {s:?} has no space")))?,
            Value::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(bad(format!("merge {rank} is not a pair of strings: {m}"))),
            },
            _ => {
                return Err(bad(format!(
                    "merge {rank} is neither \"a b\" nor [a, b]: {m}"
                )))
            }
        };
        let lookup = |p: &str| {
            index
                .get(p)
                .copied()
                .ok_or_else(|| bad(format!("merge {rank} uses {p:?}, not in the vocabulary")))
        };
        let (ia, ib) = (lookup(a)?, lookup(b)?);
        let merged = format!("{a}{b}");
        if !index.contains_key(merged.as_str()) {
            return Err(bad(format!(
                "merge {rank} makes {merged:?}, not in the vocabulary"
            )));
        }
        merges.push((ia, ib));
    }

    // Special ids: tokenizer_config.json, else the conventional SentencePiece names.
    let cfg = match tokenizer_config {
        Some(p) => Some(read_json(p)?),
        None => None,
    };
    let cfg_path = tokenizer_config.unwrap_or(tokenizer_json);
    let find = |key: &str, default: &str| -> Result<u32> {
        let name = cfg
            .as_ref()
            .and_then(|c| config_token(c, key))
            .unwrap_or_else(|| default.to_owned());
        index
            .get(name.as_str())
            .copied()
            .ok_or_else(|| Error::TokenizerFile {
                path: cfg_path.to_path_buf(),
                msg: format!("{key} {name:?} is not in the vocabulary"),
            })
    };
    let model_unk = model
        .get("unk_token")
        .and_then(Value::as_str)
        .unwrap_or("<unk>")
        .to_owned();
    let bos_id = find("bos_token", "<s>")?;
    let eos_id = find("eos_token", "</s>")?;
    let unk_id = find("unk_token", &model_unk)?;
    let flag = |key: &str, default: bool| {
        cfg.as_ref()
            .and_then(|c| c.get(key))
            .and_then(Value::as_bool)
            .unwrap_or(default)
    };
    let add_bos = flag("add_bos_token", true);
    let add_eos = flag("add_eos_token", false);
    let chat_template = cfg.as_ref().and_then(config_chat_template);

    // Token types.
    let mut token_types: Vec<i32> = tokens
        .iter()
        .map(|t| if parse_byte_piece(t).is_some() { TokenType::Byte } else { TokenType::Normal } as i32)
        .collect();
    for &(id, special) in &added_special {
        let ty = if special {
            TokenType::Control
        } else {
            TokenType::UserDefined
        };
        token_types[id as usize] = ty as i32;
    }
    token_types[bos_id as usize] = TokenType::Control as i32;
    token_types[eos_id as usize] = TokenType::Control as i32;
    token_types[unk_id as usize] = TokenType::Unknown as i32;

    // Scores from the merge order.
    let n_merges = merges.len();
    let mut first_rank: Vec<Option<usize>> = vec![None; tokens.len()];
    for (rank, &(a, b)) in merges.iter().enumerate() {
        let merged = format!("{}{}", tokens[a as usize], tokens[b as usize]);
        if let Some(&id) = index.get(merged.as_str()) {
            first_rank[id as usize].get_or_insert(rank);
        }
    }
    let mut n_unmerged = 0usize;
    let mut scores = Vec::with_capacity(tokens.len());
    for (id, rank) in first_rank.iter().enumerate() {
        let score = if token_types[id] != TokenType::Normal as i32 {
            0.0
        } else if let Some(rank) = rank {
            -(*rank as f32)
        } else {
            n_unmerged += 1;
            -((n_merges + n_unmerged) as f32)
        };
        scores.push(score);
    }
    if n_merges + n_unmerged >= 1 << 24 {
        return Err(bad(format!(
            "{n_merges} merges: too many to keep f32 scores exact"
        )));
    }

    let vocab = Vocab {
        tokens,
        scores,
        token_types,
        bos_id,
        eos_id,
        unk_id,
        add_bos,
        add_eos,
        chat_template,
    };
    vocab.validate().map_err(|e| bad(e.to_string()))?;
    Ok(ParsedTokenizer { vocab, merges })
}

impl Vocab {
    /// The vocabulary a GGUF file stores (`tokenizer.ggml.*`, model "llama" = SentencePiece BPE).
    /// Missing scores count as 0 and missing token types are inferred (`<0x..>` byte pieces, the
    /// bos/eos/unk specials), as llama.cpp does.
    pub fn from_gguf(h: &crate::gguf::GgufHeader) -> Result<Vocab> {
        let path = h.path().display().to_string();
        let model = h.get_str_opt("tokenizer.ggml.model")?.unwrap_or("llama");
        if model != "llama" {
            return Err(Error::Vocab(format!(
                "{path}: tokenizer.ggml.model is '{model}'; smoe reads SentencePiece ('llama') vocabularies"
            )));
        }
        let tokens: Vec<String> = h
            .get_str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_string)
            .collect();
        let n = tokens.len();
        let scores = match h.get_array_opt("tokenizer.ggml.scores")? {
            Some(_) => h.get_f32_array("tokenizer.ggml.scores")?,
            None => vec![0.0; n],
        };
        let id =
            |key: &str, default: u32| -> Result<u32> { Ok(h.get_u32_opt(key)?.unwrap_or(default)) };
        let bos_id = id("tokenizer.ggml.bos_token_id", 1)?;
        let eos_id = id("tokenizer.ggml.eos_token_id", 2)?;
        let unk_id = id("tokenizer.ggml.unknown_token_id", 0)?;
        let token_types = match h.get_array_opt("tokenizer.ggml.token_type")? {
            Some(_) => h
                .get_i64_array("tokenizer.ggml.token_type")?
                .into_iter()
                .map(|t| i32::try_from(t).unwrap_or(i32::MAX))
                .collect(),
            None => tokens
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let i = i as u32;
                    if i == unk_id {
                        TokenType::Unknown as i32
                    } else if i == bos_id || i == eos_id {
                        TokenType::Control as i32
                    } else if parse_byte_piece(t).is_some() {
                        TokenType::Byte as i32
                    } else {
                        TokenType::Normal as i32
                    }
                })
                .collect(),
        };
        let vocab = Vocab {
            tokens,
            scores,
            token_types,
            bos_id,
            eos_id,
            unk_id,
            add_bos: h
                .get_bool_opt("tokenizer.ggml.add_bos_token")?
                .unwrap_or(true),
            add_eos: h
                .get_bool_opt("tokenizer.ggml.add_eos_token")?
                .unwrap_or(false),
            chat_template: h
                .get_str_opt("tokenizer.chat_template")?
                .map(str::to_string),
        };
        vocab
            .validate()
            .map_err(|e| Error::Vocab(format!("{path}: {e}")))?;
        Ok(vocab)
    }
}
