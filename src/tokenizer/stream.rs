//! Streamed detokenization: push ids one at a time, get back the text that is complete so far.

use super::Tokenizer;
use crate::Result;

/// Turns a stream of token ids into text without ever splitting a UTF-8 character.
///
/// - byte-fallback pieces (`<0xE2>` ...) are buffered until they form complete characters;
/// - the leading space of the first text (the '▁' SentencePiece puts before the first word) is dropped;
/// - control and unknown tokens print nothing, as in [`Tokenizer::decode`].
///
/// For valid UTF-8 the concatenated output equals `decode` of all ids. A byte sequence that can never
/// become valid prints one U+FFFD per byte (`decode` may replace a whole invalid run instead).
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tok: &'t Tokenizer,
    /// Bytes of an incomplete character, from byte-fallback pieces.
    pending: Vec<u8>,
    /// Nothing printed yet: the first leading space is still to be dropped.
    at_start: bool,
}

impl<'t> StreamDecoder<'t> {
    pub fn new(tok: &'t Tokenizer) -> Self {
        StreamDecoder {
            tok,
            pending: Vec::with_capacity(8),
            at_start: true,
        }
    }

    /// Add one token; returns the text it completes (often empty). Errors on an out-of-range id.
    pub fn push(&mut self, id: u32) -> Result<String> {
        let mut out = String::new();
        self.push_into(id, &mut out)?;
        Ok(out)
    }

    /// [`StreamDecoder::push`] into a buffer the caller reuses: `out` is cleared, then holds the
    /// text this token completes. Decoding loops use this so a token allocates nothing.
    pub fn push_into(&mut self, id: u32, out: &mut String) -> Result<()> {
        out.clear();
        if let Some(byte) = self.tok.byte_value(id)? {
            self.pending.push(byte);
            self.drain_pending(out, false);
        } else if !self.tok.is_special(id) {
            self.drain_pending(out, true);
            self.tok.push_piece_text(id, out)?;
        }
        self.strip_start(out);
        Ok(())
    }

    /// End of the stream: prints U+FFFD for bytes of a character that never completed.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        self.drain_pending(&mut out, true);
        self.strip_start(&mut out);
        out
    }

    /// Move the complete characters of `pending` to `out`; invalid bytes become U+FFFD, and so does an
    /// incomplete tail if `flush`.
    fn drain_pending(&mut self, out: &mut String, flush: bool) {
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` is valid UTF-8 by construction.
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(n) => {
                            push_replacements(out, n);
                            rest = &after[n..];
                        }
                        None if flush => {
                            push_replacements(out, after.len());
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
    }

    fn strip_start(&mut self, out: &mut String) {
        if self.at_start && !out.is_empty() {
            self.at_start = false;
            if out.starts_with(' ') {
                out.remove(0);
            }
        }
    }
}

fn push_replacements(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push('\u{FFFD}');
    }
}
