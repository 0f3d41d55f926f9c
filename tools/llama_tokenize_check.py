#!/usr/bin/env python3
"""Does llama.cpp tokenize our GGUF files exactly as the tokenizer.json does?

Runs llama.cpp's `llama-tokenize` on every string of tests/fixtures/tokenizer/corpus.jsonl (whose `ids`
are the Hugging Face tokenizers encoding of the real Mistral tokenizer.json, with BOS) against a GGUF
written by `smoe quantize` (the scores we derive from the merge order are what llama.cpp's SentencePiece
tokenizer uses), and counts disagreements.

Usage: tools/llama_tokenize_check.py LLAMA_TOKENIZE FILE.gguf [--corpus PATH] [--jobs 2]
"""
import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def tokenize(exe, model, text):
    r = subprocess.run([exe, "-m", model, "-p", text, "--ids", "--log-disable", "--no-escape"],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("llama_tokenize")
    ap.add_argument("gguf")
    ap.add_argument("--corpus", default="tests/fixtures/tokenizer/corpus.jsonl")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.corpus, encoding="utf-8")]
    # llama-tokenize takes the prompt as an argv string and refuses an empty one: skip those and NULs.
    rows = [r for r in rows if "\x00" not in r["text"] and r["text"]]
    with ThreadPoolExecutor(a.jobs) as ex:
        got = list(ex.map(lambda r: tokenize(a.llama_tokenize, a.gguf, r["text"]), rows))
    bad = [(r, g) for r, g in zip(rows, got) if g != r["ids"]]
    for r, g in bad[:10]:
        print(f"DIFF {r['text']!r}\n  tokenizer.json {r['ids']}\n  llama.cpp      {g}")
    print(f"{len(rows) - len(bad)} of {len(rows)} strings tokenized identically by llama.cpp")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
