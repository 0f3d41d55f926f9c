//! Build a Hugging Face `tokenizers::Tokenizer` from a [`Vocab`] alone (a GGUF file has no merge list).
//!
//! The merges are every split of a normal piece into two normal pieces, ordered as the Hugging Face
//! SentencePiece converter orders them: by the merged piece's score (highest first), then by the merged
//! piece's id, then by the ids of the left and right pieces. With the scores of
//! [`Vocab::from_tokenizer_json`] this reproduces the original merge list exactly (checked there); with
//! a real SentencePiece model's scores it reproduces what `transformers` would convert it to.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::AddedToken;

use super::vocab::{TokenType, Vocab};
use crate::{Error, Result};

/// The SentencePiece word-boundary marker, U+2581.
pub const SPACE_MARKER: &str = "\u{2581}";

fn hf_err(what: &str) -> impl Fn(tokenizers::Error) -> Error + '_ {
    move |e| Error::Tokenizer(format!("{what}: {e}"))
}

/// The BPE merges implied by the vocabulary's pieces and scores, as (left id, right id), first merge first.
pub fn derive_merges(vocab: &Vocab) -> Result<Vec<(u32, u32)>> {
    vocab.validate()?;
    let normal = |id: u32| vocab.token_types[id as usize] == TokenType::Normal as i32;
    let index: HashMap<&str, u32> = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    // (merged, left, right)
    let mut merges: Vec<(u32, u32, u32)> = Vec::new();
    for (merged, piece) in vocab.tokens.iter().enumerate() {
        let merged = merged as u32;
        if !normal(merged) {
            continue;
        }
        for (k, _) in piece.char_indices().skip(1) {
            let (l, r) = (index.get(&piece[..k]), index.get(&piece[k..]));
            if let (Some(&l), Some(&r)) = (l, r) {
                if normal(l) && normal(r) {
                    merges.push((merged, l, r));
                }
            }
        }
    }
    let score = |id: u32| vocab.scores[id as usize];
    merges.sort_by(|a, b| {
        score(b.0)
            .total_cmp(&score(a.0))
            .then((a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)))
    });
    Ok(merges.into_iter().map(|(_, l, r)| (l, r)).collect())
}

/// The Hugging Face tokenizer for a SentencePiece vocabulary: BPE with byte fallback over the derived
/// merges, the normalizer that prepends '▁' and turns spaces into '▁', the decoder that undoes it, and
/// the control / unknown / user-defined pieces as added tokens (so "<s>" in text is never split).
pub fn build_tokenizer(vocab: &Vocab) -> Result<tokenizers::Tokenizer> {
    vocab.validate()?;
    let merges: Vec<(String, String)> = derive_merges(vocab)?
        .into_iter()
        .map(|(l, r)| {
            (
                vocab.tokens[l as usize].clone(),
                vocab.tokens[r as usize].clone(),
            )
        })
        .collect();
    let model_vocab: tokenizers::models::bpe::Vocab = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let unk = vocab.tokens[vocab.unk_id as usize].clone();
    let bpe = BPE::builder()
        .vocab_and_merges(model_vocab, merges)
        .unk_token(unk)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(hf_err("building the BPE model"))?;

    let mut tok = tokenizers::Tokenizer::new(bpe);
    let replace_space = Replace::new(" ", SPACE_MARKER).map_err(hf_err("space normalizer"))?;
    let normalizer = NormalizerSequence::new(vec![
        Prepend::new(SPACE_MARKER.to_owned()).into(),
        replace_space.into(),
    ]);
    tok.with_normalizer(Some(normalizer))
        .map_err(hf_err("normalizer"))?;
    let replace_marker = Replace::new(SPACE_MARKER, " ").map_err(hf_err("space decoder"))?;
    tok.with_decoder(Some(DecoderSequence::new(vec![
        replace_marker.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
        Strip::new(' ', 1, 0).into(),
    ])));

    let mut special = Vec::new();
    let mut user = Vec::new();
    for (id, piece) in vocab.tokens.iter().enumerate() {
        match vocab.token_type(id as u32) {
            Some(TokenType::Control | TokenType::Unknown) => {
                special.push(AddedToken::from(piece.clone(), true))
            }
            Some(TokenType::UserDefined) => {
                user.push(AddedToken::from(piece.clone(), false).normalized(false))
            }
            _ => {}
        }
    }
    tok.add_special_tokens(special)
        .map_err(hf_err("adding control tokens"))?;
    tok.add_tokens(user)
        .map_err(hf_err("adding user-defined tokens"))?;
    Ok(tok)
}
