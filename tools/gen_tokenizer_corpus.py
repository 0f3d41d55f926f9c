#!/usr/bin/env python3
"""Write the tokenizer corpus: strings and the ids that Hugging Face `tokenizers` gives them.

The ground truth is `tests/fixtures/tokenizer/tokenizer.json` (the real Mistral/Mixtral tokenizer, see
tools/make_tokenizer.py), run through the Python `tokenizers` package with the post-processor (so every
line starts with BOS = 1). The Rust tests (tests/tokenizer_corpus.rs) must reproduce these ids exactly,
both from tokenizer.json and from the GGUF-style vocabulary (tokens + scores) alone.

Usage: tools/gen_tokenizer_corpus.py [--out tests/fixtures/tokenizer/corpus.jsonl] [--seed 1234]
Each output line: {"text": "...", "ids": [1, ...]}. Deterministic for a given seed.
"""
import argparse
import json
import os
import random

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "tokenizer")

WORDS = {
    "en": "the quick brown fox jumps over lazy dog tokenizer mixture experts inference weight quantization "
          "hello world running runner unbelievable internationalization antidisestablishmentarianism "
          "I don't can't won't it's they're Mr. Dr. e.g. i.e. U.S.A. OK okay".split(),
    "fr": "le café où être déjà naïve français œuvre garçon s'il vous plaît l'été à bientôt".split(),
    "de": "Straße größer Müller Äpfel übermäßig Donaudampfschifffahrtsgesellschaftskapitän".split(),
    "es": "niño mañana ¿qué? ¡hola! corazón pingüino".split(),
    "ru": "Привет мир как дела программирование электростанция".split(),
    "el": "Γειά σου κόσμε αλφάβητο ψυχή".split(),
    "zh": "你好 世界 机器学习 人工智能 混合专家模型 繁體中文 龍".split(),
    "ja": "こんにちは 世界 カタカナ ひらがな 東京都 ｶﾀｶﾅ".split(),
    "ko": "안녕하세요 세계 한국어 토크나이저".split(),
    "ar": "مرحبا بالعالم العربية الذكاء".split(),
    "he": "שלום עולם עברית".split(),
    "hi": "नमस्ते दुनिया हिन्दी क्षत्रिय".split(),
    "th": "สวัสดีชาวโลก ภาษาไทย".split(),
    "vi": "Tiếng Việt xin chào thế giới".split(),
    "am": "ሰላም ዓለም".split(),
    "ka": "გამარჯობა".split(),
    "emoji": ["😀", "🤖", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "❤️", "🧑🏿‍💻", "🫠", "✨", "🔥", "👩‍❤️‍💋‍👨",
              "☕", "🐍", "🦀", "1️⃣", "#️⃣"],
    "code": ["fn main() {", "}", "let x = 42;", "for (int i = 0; i < n; ++i)", "def f(x):", "    return x",
             "\tif (a && b) {", "#include <stdio.h>", "x->y", "a == b", "a != b", "0x7fff_ffff", "`code`",
             "/* comment */", "// TODO", "<div class=\"x\">", "</div>", "{\"key\": [1, 2.5, null]}",
             "SELECT * FROM t WHERE id = 1;", "println!(\"{}\", v);", "λx.x", "$HOME/.cargo", "C:\\Windows",
             "http://example.com/a?b=c&d=e#f", "user@example.com"],
    "sym": ["∑", "∫", "√2", "≠", "≤", "→", "⇒", "∀x∃y", "°C", "€", "£", "¥", "©", "®", "™", "…", "—", "–", "«»",
            "“quoted”", "‘single’", "½", "²", "ℕ", "𝔸", "𝕏", "♠", "♪", "░▒▓", "━━", "•", "·"],
    "weird": ["\u200b", "\u200d", "\ufeff", "\u00a0", "\u3000", "e\u0301", "\u0000", "\u0007", "\u001b[0m",
              "\u2581", "\u2581\u2581x", "\U0010fffd", "\U0001f9ff", "\ufffd", "\u0301", "ﬁ", "Ａ", "\u2028"],
    "special": ["<s>", "</s>", "<unk>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<s >", "< s>", "<S>",
                "<0x41>", "<0xE2>", "<|im_start|>", "<pad>", "<<s>>", "</s></s>"],
}

HANDWRITTEN = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \t \n ", "a", " a", "a ", " a ", "  a  ", "hello",
    "Hello world", " Hello world", "Hello world ", "Hello  world", "Hello   world", "Hello\tworld", "Hello\nworld",
    "[INST] What is the capital of France? [/INST]", "<s>[INST] hi [/INST] Hello!</s>", "<s>", "</s>", "<unk>",
    "a<s>b", "a </s> b", "<s><s>", " <s>", "<s> ", "x<unk>y", "[INST][/INST]", "[INST]  [/INST]",
    "12345678901234567890", "3.14159265358979323846", "1,000,000", "2024-01-31T12:34:56Z", "0.000001",
    "1e-10", "-42", "+7", "007", "99 bottles", "9" * 64, "12 345 678", "١٢٣٤٥", "一二三", "Ⅻ",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 100, "ab" * 60, " " * 40, "\t" * 10, "\n" * 12, "." * 50, "-" * 80, "=" * 33, "_" * 20, "▁" * 5,
    "😀" * 10, "👨‍👩‍👧‍👦👨‍👩‍👧‍👦", "🇫🇷🇩🇪🇯🇵", "你好，世界！", "こんにちは、世界。", "안녕, 세계!",
    "Ünïcödé", "naïve café", "Ελληνικά", "עִבְרִית", "हिन्दी", "ไทย", "Ⓐⓑⓒ", "ｆｕｌｌｗｉｄｔｈ",
    "The Mixtral-8x7B model is a sparse mixture of experts.", "def hello():\n    print('hi')\n",
    "fn main() {\n\tprintln!(\"Hello, world!\");\n}\n", "<html><body>x</body></html>",
    "\u2581", "\u2581\u2581", " \u2581 ", "\u00a0nbsp", "zero\u200bwidth", "\ufeffbom", "e\u0301 vs \u00e9",
]


# Strings X+Y+Z where X+Y and Y+Z are the same piece T by two different merges and tokenizer.json ranks
# the right one first (found by scanning the vocabulary): here HF BPE (lowest merge rank first) and
# SentencePiece/llama.cpp (best piece score, leftmost first) can disagree.
SAME_PIECE_OVERLAPS = ["ondondon", "endenden", "ensensen", "ennennen"]
OVERLAP_CONTEXTS = ["{}", "x{}", "{}x", "a {}", "London{}", "{}ing", " {} ", "{0}{0}"]


def random_unicode(rng, n):
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F),
              (0x1100, 0x11FF), (0x2000, 0x2BFF), (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
              (0xF900, 0xFAFF), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0x10000, 0x1FFFF), (0x20000, 0x2A6DF),
              (0xE000, 0xF8FF), (0x0, 0x1F)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def random_ws(rng):
    return rng.choice([" ", " ", " ", "  ", "   ", "\t", "\n", " \n", "\n\n", "\r\n", "    ", "\u3000", ""])


def random_mix(rng):
    kinds = list(WORDS)
    parts = []
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.6:
            parts.append(rng.choice(WORDS[rng.choice(kinds)]))
        elif r < 0.7:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 25))))
        elif r < 0.8:
            parts.append(random_unicode(rng, rng.randint(1, 6)))
        else:
            parts.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789.,;:!?'\"()[]{}<>/\\-_+=*&^%$#@~`|")
                                 for _ in range(rng.randint(1, 10))))
        parts.append(random_ws(rng))
    s = "".join(parts)
    r = rng.random()
    if r < 0.15:
        s = " " + s
    elif r < 0.25:
        s = s.strip()
    return s


def make_strings(seed):
    rng = random.Random(seed)
    strings = list(HANDWRITTEN)
    for kind, words in WORDS.items():
        strings.extend(words)
        strings.extend(" " + w for w in words)
        strings.append(" ".join(words))
    for _ in range(1800):
        strings.append(random_mix(rng))
    for _ in range(400):
        strings.append(random_unicode(rng, rng.randint(1, 20)))
    for _ in range(200):  # whitespace-heavy
        strings.append("".join(random_ws(rng) + rng.choice(WORDS["en"]) for _ in range(rng.randint(1, 6)))
                       + random_ws(rng))
    for _ in range(150):  # chat-marker-heavy
        strings.append(rng.choice(["[INST] ", "<s>[INST] ", "[INST]", " [INST] "]) + random_mix(rng)
                       + rng.choice([" [/INST]", "[/INST]", " [/INST] ", " [/INST]</s>"])
                       + rng.choice(["", " ok", "</s>", " </s>"]))
    for w in SAME_PIECE_OVERLAPS:
        strings.extend(c.format(w) for c in OVERLAP_CONTEXTS)
    seen = set()
    unique = []
    for s in strings:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(FIXTURE, "corpus.jsonl"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    tok = Tokenizer.from_file(os.path.join(FIXTURE, "tokenizer.json"))
    strings = make_strings(args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        for s in strings:
            ids = tok.encode(s, add_special_tokens=True).ids
            f.write(json.dumps({"text": s, "ids": ids}, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: {len(strings)} strings, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
