//! Tokenizer tests against the real Mistral/Mixtral tokenizer (tests/fixtures/tokenizer):
//! the corpus made by tools/gen_tokenizer_corpus.py (ids from Python `tokenizers`), the chat goldens made
//! by tools/golden_chat.py (transformers' apply_chat_template), streaming and vocabulary validation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

use smoe::tokenizer::{
    build_tokenizer, parse_byte_piece, render_chat, ChatMessage, TokenType, Tokenizer, Vocab,
    MIXTRAL_CHAT_TEMPLATE,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizer")
        .join(name)
}

struct Line {
    text: String,
    ids: Vec<u32>,
}

fn corpus() -> &'static [Line] {
    static CORPUS: OnceLock<Vec<Line>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let text = std::fs::read_to_string(fixture("corpus.jsonl")).unwrap();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let ids = v["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                Line {
                    text: v["text"].as_str().unwrap().to_owned(),
                    ids,
                }
            })
            .collect()
    })
}

fn vocab() -> &'static Vocab {
    static VOCAB: OnceLock<Vocab> = OnceLock::new();
    VOCAB.get_or_init(|| {
        Vocab::from_tokenizer_json(
            &fixture("tokenizer.json"),
            Some(&fixture("tokenizer_config.json")),
        )
        .unwrap()
    })
}

fn tok_from_json() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::from_tokenizer_json(
            &fixture("tokenizer.json"),
            Some(&fixture("tokenizer_config.json")),
        )
        .unwrap()
    })
}

fn tok_from_vocab() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_vocab(vocab()).unwrap())
}

/// Run `encode` over the corpus; panic listing the first mismatches.
fn check_corpus(what: &str, encode: impl Fn(&str) -> Vec<u32>) {
    let lines = corpus();
    assert!(lines.len() > 2000, "corpus too small: {}", lines.len());
    let mut bad = Vec::new();
    for l in lines {
        let got = encode(&l.text);
        if got != l.ids {
            bad.push(format!(
                "{:?}\n  want {:?}\n  got  {:?}",
                l.text, l.ids, got
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} differ:\n{}",
        bad.len(),
        lines.len(),
        bad[..bad.len().min(5)].join("\n")
    );
}

#[test]
fn vocab_facts() {
    let v = vocab();
    assert_eq!(v.n_vocab(), 32000);
    assert_eq!((v.unk_id, v.bos_id, v.eos_id), (0, 1, 2));
    assert!(v.add_bos && !v.add_eos);
    assert_eq!(v.chat_template.as_deref(), Some(MIXTRAL_CHAT_TEMPLATE));
    assert_eq!(v.token_type(0), Some(TokenType::Unknown));
    assert_eq!(v.token_type(1), Some(TokenType::Control));
    assert_eq!(v.token_type(2), Some(TokenType::Control));
    assert_eq!(v.token_type(3), Some(TokenType::Byte));
    assert_eq!(v.tokens[3 + 0x0A], "<0x0A>");
    assert_eq!(v.token_type(258), Some(TokenType::Byte));
    assert_eq!(v.token_type(259), Some(TokenType::Normal));
    // Byte and special pieces score 0; "▁t" is the first merge; every normal piece scores below 0
    // except the product of merge 0.
    assert_eq!(v.scores[..259].iter().filter(|&&s| s != 0.0).count(), 0);
    assert_eq!(v.scores[261], 0.0); // "▁t" = merge 0
    assert!(v.scores[259..].iter().all(|&s| s <= 0.0));
}

#[test]
fn corpus_from_tokenizer_json() {
    let tok = tok_from_json();
    check_corpus("tokenizer.json", |s| tok.encode(s, true).unwrap());
}

#[test]
fn corpus_from_vocab() {
    let tok = tok_from_vocab();
    check_corpus("Vocab -> build_tokenizer", |s| tok.encode(s, true).unwrap());
}

#[test]
fn built_tokenizer_has_the_file_merges() {
    // The merges derived from the scores are the file's merges, in order.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer.json")).unwrap()).unwrap();
    let want: Vec<&str> = file["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let v = vocab();
    let got: Vec<String> = smoe::tokenizer::derive_merges(v)
        .unwrap()
        .into_iter()
        .map(|(l, r)| format!("{} {}", v.tokens[l as usize], v.tokens[r as usize]))
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(g, w)| g == w));
    assert_eq!(build_tokenizer(v).unwrap().get_vocab_size(true), 32000);
}

/// Text that does not survive encode -> decode by design: control-token text becomes a control token
/// (skipped when decoding), and a literal '▁' decodes as a space.
fn roundtrips(s: &str) -> bool {
    !(s.contains("<s>") || s.contains("</s>") || s.contains("<unk>") || s.contains('\u{2581}'))
}

#[test]
fn corpus_decode_roundtrip() {
    for tok in [tok_from_json(), tok_from_vocab()] {
        let mut n = 0;
        for l in corpus().iter().filter(|l| roundtrips(&l.text)) {
            assert_eq!(tok.decode(&l.ids).unwrap(), l.text, "ids {:?}", l.ids);
            n += 1;
        }
        assert!(n > 2000, "{n}");
    }
}

/// llama.cpp's SentencePiece tokenizer (`llm_tokenizer_spm`) on our vocabulary: control-token text is
/// split out first; each remaining fragment gets a leading space, spaces become '▁', it is split into
/// UTF-8 characters, and the adjacent pair whose concatenation is a piece with the best score is merged
/// (leftmost on ties) until none is left; characters that are not pieces become byte tokens.
fn spm_encode(v: &Vocab, index: &HashMap<&str, u32>, text: &str) -> Vec<u32> {
    let mut out = vec![v.bos_id];
    let specials: Vec<&str> = (0..v.n_vocab() as u32)
        .filter(|&i| {
            matches!(
                v.token_type(i),
                Some(TokenType::Control | TokenType::Unknown)
            )
        })
        .map(|i| v.tokens[i as usize].as_str())
        .collect();
    let mut rest = text;
    while !rest.is_empty() {
        // Earliest special occurrence (longest at that position).
        let hit = specials
            .iter()
            .filter_map(|s| rest.find(s).map(|p| (p, std::cmp::Reverse(s.len()), *s)))
            .min();
        let (raw, special, after) = match hit {
            Some((p, _, s)) => (&rest[..p], Some(s), &rest[p + s.len()..]),
            None => (rest, None, ""),
        };
        if !raw.is_empty() {
            spm_fragment(
                v,
                index,
                &format!(" {raw}").replace(' ', "\u{2581}"),
                &mut out,
            );
        }
        if let Some(s) = special {
            out.push(index[s]);
        }
        rest = after;
    }
    out
}

fn spm_fragment(v: &Vocab, index: &HashMap<&str, u32>, text: &str, out: &mut Vec<u32>) {
    // Symbols: byte ranges into `text`, linked list; merged-away symbols have len 0.
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let n = starts.len();
    let mut start = starts.clone();
    let mut len: Vec<usize> = (0..n)
        .map(|i| starts.get(i + 1).copied().unwrap_or(text.len()) - starts[i])
        .collect();
    let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
    let mut next: Vec<Option<usize>> = (0..n).map(|i| (i + 1 < n).then_some(i + 1)).collect();
    // (score, Reverse(left), left, right, combined len): max-heap = best score, then leftmost.
    struct Bigram(f32, std::cmp::Reverse<usize>, usize, usize, usize);
    impl Ord for Bigram {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
        }
    }
    impl PartialOrd for Bigram {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl PartialEq for Bigram {
        fn eq(&self, o: &Self) -> bool {
            self.cmp(o).is_eq()
        }
    }
    impl Eq for Bigram {}
    let mut heap = BinaryHeap::new();
    let try_add =
        |heap: &mut BinaryHeap<Bigram>, l: usize, r: usize, start: &[usize], len: &[usize]| {
            let s = &text[start[l]..start[r] + len[r]];
            if let Some(&id) = index.get(s) {
                heap.push(Bigram(
                    v.scores[id as usize],
                    std::cmp::Reverse(l),
                    l,
                    r,
                    s.len(),
                ));
            }
        };
    for i in 1..n {
        try_add(&mut heap, i - 1, i, &start, &len);
    }
    while let Some(Bigram(_, _, l, r, size)) = heap.pop() {
        if len[l] == 0 || len[r] == 0 || len[l] + len[r] != size || next[l] != Some(r) {
            continue; // stale
        }
        len[l] += len[r];
        len[r] = 0;
        next[l] = next[r];
        if let Some(nn) = next[r] {
            prev[nn] = Some(l);
        }
        if let Some(p) = prev[l] {
            try_add(&mut heap, p, l, &start, &len);
        }
        if let Some(nn) = next[l] {
            try_add(&mut heap, l, nn, &start, &len);
        }
    }
    let mut i = Some(0);
    while let Some(s) = i {
        let piece = &text[start[s]..start[s] + len[s]];
        match index.get(piece) {
            Some(&id) => out.push(id),
            None => out.extend(
                piece
                    .bytes()
                    .map(|b| index[format!("<0x{b:02X}>").as_str()]),
            ),
        }
        i = next[s];
    }
    start.clear();
}

#[test]
fn corpus_llama_cpp_spm_with_derived_scores() {
    let v = vocab();
    let index: HashMap<&str, u32> = v
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    check_corpus("llama.cpp SPM simulation", |s| spm_encode(v, &index, s));
}

#[test]
fn spm_simulation_has_teeth() {
    // Scores by id (a tempting shortcut) put the whitespace pieces "▁▁", "▁▁▁▁" (ids 259, 260, merged
    // last in tokenizer.json) first, and llama.cpp would then tokenize differently.
    let mut v = vocab().clone();
    for (id, s) in v.scores.iter_mut().enumerate() {
        if *s != 0.0 {
            *s = -(id as f32);
        }
    }
    let index: HashMap<&str, u32> = v
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let differ = corpus()
        .iter()
        .filter(|l| spm_encode(&v, &index, &l.text) != l.ids)
        .count();
    assert!(differ > 100, "{differ}");
}

#[test]
fn stream_equals_decode_on_corpus() {
    let tok = tok_from_vocab();
    for l in corpus() {
        let mut dec = tok.stream_decoder();
        let mut text = String::new();
        for &id in &l.ids {
            text += &dec.push(id).unwrap();
        }
        text += &dec.finish();
        assert_eq!(text, tok.decode(&l.ids).unwrap(), "ids {:?}", l.ids);
    }
}

#[test]
fn stream_buffers_byte_pieces() {
    let tok = tok_from_vocab();
    for s in [
        "🫠 melt",
        "混合专家模型 👨‍👩‍👧‍👦!",
        "𝔸𝕏 and ꙮ",
        "  two spaces first",
    ] {
        let ids = tok.encode(s, true).unwrap();
        let n_bytes = ids
            .iter()
            .filter(|&&i| tok.token_type(i) == Some(TokenType::Byte))
            .count();
        assert!(
            n_bytes > 0 || s.starts_with(' '),
            "{s:?} has no byte pieces: {ids:?}"
        );
        let mut dec = tok.stream_decoder();
        let mut chunks = Vec::new();
        for &id in &ids {
            let piece = tok.token_to_piece(id).unwrap();
            let chunk = dec.push(id).unwrap();
            // A byte piece prints only when it completes a character.
            if let Some(b) = parse_byte_piece(piece) {
                if b >= 0xC0 {
                    assert!(chunk.is_empty(), "lead byte {piece} printed {chunk:?}");
                }
            }
            chunks.push(chunk);
        }
        assert_eq!(dec.finish(), "");
        assert_eq!(chunks.concat(), s);
        assert_eq!(chunks[0], ""); // BOS prints nothing
    }
    // Control tokens print nothing; an incomplete character is flushed as U+FFFD at the end.
    let mut dec = tok.stream_decoder();
    let e2 = tok.piece_to_token("<0xE2>").unwrap();
    assert_eq!(dec.push(tok.bos()).unwrap(), "");
    assert_eq!(dec.push(e2).unwrap(), "");
    assert_eq!(dec.push(tok.eos()).unwrap(), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
    assert!(tok.stream_decoder().push(32000).is_err());
}

#[test]
fn wrapper_basics() {
    let tok = tok_from_vocab();
    assert_eq!(tok.n_vocab(), 32000);
    assert_eq!((tok.bos(), tok.eos()), (1, 2));
    assert!(tok.is_control(1) && tok.is_special(0) && !tok.is_control(0) && !tok.is_special(261));
    assert_eq!(tok.encode("", true).unwrap(), vec![1]);
    assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new());
    assert_eq!(tok.encode("Hello world", false).unwrap(), vec![22557, 1526]);
    assert_eq!(tok.token_to_piece(1526), Some("\u{2581}world"));
    assert_eq!(tok.token_to_piece(32000), None);
    assert!(tok.decode(&[1, 32000]).is_err());
    assert_eq!(tok.decode(&[1, 22557, 1526, 2]).unwrap(), "Hello world");
}

#[derive(serde::Deserialize)]
struct ChatCase {
    name: String,
    template: Option<String>,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    expected: Option<String>,
    error: Option<String>,
}

#[test]
fn chat_golden() {
    let cases: Vec<ChatCase> =
        serde_json::from_str(&std::fs::read_to_string(fixture("chat_golden.json")).unwrap())
            .unwrap();
    assert!(cases.len() >= 10);
    let tok = tok_from_json();
    for c in &cases {
        let template = c.template.as_deref().or(tok.chat_template());
        let got = render_chat(
            template,
            &c.messages,
            "<s>",
            "</s>",
            c.add_generation_prompt,
        );
        match (&c.expected, &c.error, got) {
            (Some(want), None, Ok(got)) => assert_eq!(&got, want, "{}", c.name),
            (None, Some(want), Err(e)) => {
                let msg = e.to_string().to_lowercase();
                let key = want.to_lowercase();
                let key = key.split('.').next().unwrap_or(&key);
                assert!(
                    msg.contains(key),
                    "{}: error {msg:?} does not contain {want:?}",
                    c.name
                )
            }
            (_, _, got) => panic!(
                "{}: expected {:?} / error {:?}, got {got:?}",
                c.name, c.expected, c.error
            ),
        }
    }
    // No template in the file: Mixtral-Instruct's.
    let msgs = [ChatMessage::new("user", "Hi")];
    assert_eq!(
        render_chat(None, &msgs, "<s>", "</s>", true).unwrap(),
        "<s>[INST] Hi [/INST]"
    );
    assert_eq!(
        tok.render_chat(&msgs, true).unwrap(),
        "<s>[INST] Hi [/INST]"
    );
    let err = render_chat(Some("{% if %}"), &msgs, "<s>", "</s>", false).unwrap_err();
    assert!(err.to_string().starts_with("chat template:"), "{err}");
}

fn tiny_vocab() -> Vocab {
    let tokens: Vec<String> = [
        "<unk>",
        "<s>",
        "</s>",
        "<0x41>",
        "\u{2581}",
        "a",
        "b",
        "ab",
        "\u{2581}ab",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Vocab {
        scores: vec![0.0, 0.0, 0.0, 0.0, -10.0, -11.0, -12.0, -1.0, -2.0],
        token_types: vec![2, 3, 3, 6, 1, 1, 1, 1, 1],
        tokens,
        bos_id: 1,
        eos_id: 2,
        unk_id: 0,
        add_bos: true,
        add_eos: false,
        chat_template: None,
    }
}

#[test]
fn tiny_vocab_encodes() {
    let tok = Tokenizer::from_vocab(&tiny_vocab()).unwrap();
    assert_eq!(tok.encode("ab ab", true).unwrap(), vec![1, 8, 8]);
    assert_eq!(tok.encode("A", false).unwrap(), vec![4, 3]); // byte fallback
    assert_eq!(tok.encode("c", false).unwrap(), vec![4, 0]); // no <0x63>: unknown
    assert_eq!(tok.decode(&[1, 8, 8, 2]).unwrap(), "ab ab");
}

#[test]
fn invalid_vocab_is_a_clear_error() {
    type Mutation = Box<dyn Fn(&mut Vocab)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|v| {
                v.scores.pop();
            }),
            "9 tokens but 8 scores",
        ),
        (Box::new(|v| v.token_types.push(1)), "10 token types"),
        (
            Box::new(|v| v.bos_id = 9),
            "bos id 9 out of range (n_vocab 9)",
        ),
        (Box::new(|v| v.eos_id = 100), "eos id 100 out of range"),
        (Box::new(|v| v.unk_id = 9), "unk id 9 out of range"),
        (
            Box::new(|v| v.tokens[6] = "a".into()),
            "token 6 \"a\" duplicates token 5",
        ),
        (
            Box::new(|v| v.token_types[5] = 7),
            "has type 7, expected 1..=6",
        ),
        (Box::new(|v| v.token_types[5] = 6), "not of the form <0xHH>"),
        (Box::new(|v| v.scores[5] = f32::NAN), "has score NaN"),
        (
            Box::new(|v| v.tokens[5] = String::new()),
            "token 5 is the empty string",
        ),
    ];
    for (mutate, want) in cases {
        let mut v = tiny_vocab();
        mutate(&mut v);
        let err = Tokenizer::from_vocab(&v).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid vocabulary: ") && err.contains(want),
            "{err:?} lacks {want:?}"
        );
    }
}

#[test]
fn unrepresentable_merges_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    // "a b" is a split of "ab" but the file never merges it: scores cannot express that.
    let json = r#"{"added_tokens":[{"id":0,"content":"<unk>","special":true,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false},
        {"id":1,"content":"<s>","special":true,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false},
        {"id":2,"content":"</s>","special":true,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false}],
        "model":{"type":"BPE","unk_token":"<unk>","vocab":{"<unk>":0,"<s>":1,"</s>":2,"a":3,"b":4,"ab":5,"▁":6,"▁a":7},
        "merges":["▁ a"]}}"#;
    std::fs::write(&path, json).unwrap();
    let err = Vocab::from_tokenizer_json(&path, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not representable as SentencePiece scores"),
        "{err}"
    );
    // Used directly (the --tokenizer override) it still loads.
    let tok = Tokenizer::from_tokenizer_json(&path, None).unwrap();
    assert_eq!(tok.bos(), 1);
    let missing = Vocab::from_tokenizer_json(&dir.path().join("nope.json"), None)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.json"), "{missing}");
}
