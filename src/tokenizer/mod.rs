//! Text <-> token ids for SentencePiece ("llama") vocabularies, on Hugging Face `tokenizers`.
//!
//! - [`Vocab`]: plain data as GGUF stores it (pieces, scores, types, special ids); made from tokenizer.json
//!   by [`Vocab::from_tokenizer_json`] with scores derived from the merge order.
//! - [`build_tokenizer`]: the HF tokenizer from a `Vocab` alone.
//! - [`Tokenizer`]: what the rest of smoe uses (encode, decode, pieces, special ids).
//! - [`StreamDecoder`]: streamed detokenization that never splits a UTF-8 character.
//! - [`render_chat`]: chat templates (minijinja), with Mixtral-Instruct's as the fallback.

mod build;
mod chat;
mod stream;
mod vocab;

use std::path::Path;

pub use build::{build_tokenizer, derive_merges, SPACE_MARKER};
pub use chat::{render_chat, ChatMessage, MIXTRAL_CHAT_TEMPLATE};
pub use stream::StreamDecoder;
pub use vocab::{parse_byte_piece, TokenType, Vocab};

use crate::{Error, Result};

/// A loaded tokenizer: the HF tokenizer plus the vocabulary facts the runtime needs.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    hf: tokenizers::Tokenizer,
    /// [n_vocab] pieces, '▁' for a space
    tokens: Vec<String>,
    /// [n_vocab] GGUF token types
    token_types: Vec<i32>,
    bos_id: u32,
    eos_id: u32,
    add_bos: bool,
    chat_template: Option<String>,
}

impl Tokenizer {
    /// From a GGUF-style vocabulary (builds the merges from the scores).
    pub fn from_vocab(vocab: &Vocab) -> Result<Tokenizer> {
        let hf = build_tokenizer(vocab)?;
        Ok(Tokenizer::with_parts(hf, vocab.clone()))
    }

    /// From tokenizer.json (the `--tokenizer` override), used as is; tokenizer_config.json, if given,
    /// supplies bos/eos, add_bos and the chat template.
    pub fn from_tokenizer_json(
        tokenizer_json: &Path,
        tokenizer_config: Option<&Path>,
    ) -> Result<Tokenizer> {
        let vocab = vocab::parse_tokenizer_json(tokenizer_json, tokenizer_config)?.vocab;
        let hf =
            tokenizers::Tokenizer::from_file(tokenizer_json).map_err(|e| Error::TokenizerFile {
                path: tokenizer_json.to_path_buf(),
                msg: format!("tokenizers could not load it: {e}"),
            })?;
        if hf.get_vocab_size(true) != vocab.n_vocab() {
            return Err(Error::TokenizerFile {
                path: tokenizer_json.to_path_buf(),
                msg: format!(
                    "{} tokens, but the vocabulary has {}",
                    hf.get_vocab_size(true),
                    vocab.n_vocab()
                ),
            });
        }
        Ok(Tokenizer::with_parts(hf, vocab))
    }

    fn with_parts(hf: tokenizers::Tokenizer, vocab: Vocab) -> Tokenizer {
        Tokenizer {
            hf,
            tokens: vocab.tokens,
            token_types: vocab.token_types,
            bos_id: vocab.bos_id,
            eos_id: vocab.eos_id,
            add_bos: vocab.add_bos,
            chat_template: vocab.chat_template,
        }
    }

    /// Token ids for `text`, with BOS first if `add_bos`. Control-token text such as "<s>" in `text`
    /// becomes that token, as with tokenizer.json.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let enc = self
            .hf
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(format!("encode: {e}")))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_bos {
            ids.push(self.bos_id);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The text of `ids`, skipping control and unknown tokens, without the leading space of the first word.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        for &id in ids {
            self.check_id(id)?;
        }
        self.hf
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(format!("decode: {e}")))
    }

    /// A streaming decoder over this tokenizer.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// The raw vocabulary piece of `id` ("▁Hello", "<0x0A>", "</s>"), `None` if out of range.
    pub fn token_to_piece(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a piece, `None` if it is not in the vocabulary.
    pub fn piece_to_token(&self, piece: &str) -> Option<u32> {
        self.hf.token_to_id(piece)
    }

    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos(&self) -> u32 {
        self.bos_id
    }

    pub fn eos(&self) -> u32 {
        self.eos_id
    }

    /// Whether prompts start with BOS (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The chat template from the model files, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The type of `id`, `None` if out of range.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.token_types
            .get(id as usize)
            .copied()
            .and_then(TokenType::from_gguf)
    }

    /// Control tokens (`<s>`, `</s>`): they mark structure and print nothing.
    pub fn is_control(&self, id: u32) -> bool {
        self.token_type(id) == Some(TokenType::Control)
    }

    /// Tokens that `decode` skips: control and unknown.
    pub fn is_special(&self, id: u32) -> bool {
        matches!(
            self.token_type(id),
            Some(TokenType::Control | TokenType::Unknown)
        )
    }

    /// Render a chat with this tokenizer's template (Mixtral-Instruct's if it has none) and BOS/EOS text.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let piece = |id: u32| self.token_to_piece(id).unwrap_or_default();
        render_chat(
            self.chat_template(),
            messages,
            piece(self.bos_id),
            piece(self.eos_id),
            add_generation_prompt,
        )
    }

    /// The underlying Hugging Face tokenizer.
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.hf
    }

    fn check_id(&self, id: u32) -> Result<()> {
        if (id as usize) < self.tokens.len() {
            Ok(())
        } else {
            Err(Error::Tokenizer(format!(
                "token id {id} out of range (n_vocab {})",
                self.tokens.len()
            )))
        }
    }

    /// The byte of a byte-fallback token, `None` for other tokens.
    fn byte_value(&self, id: u32) -> Result<Option<u8>> {
        self.check_id(id)?;
        if self.token_type(id) != Some(TokenType::Byte) {
            return Ok(None);
        }
        Ok(self.token_to_piece(id).and_then(parse_byte_piece))
    }

    /// Appends the text a normal or user-defined token prints to `out`: its piece with '▁' as ' '.
    fn push_piece_text(&self, id: u32, out: &mut String) -> Result<()> {
        self.check_id(id)?;
        for (i, part) in self
            .token_to_piece(id)
            .unwrap_or_default()
            .split(SPACE_MARKER)
            .enumerate()
        {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(part);
        }
        Ok(())
    }
}
