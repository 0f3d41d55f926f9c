#!/usr/bin/env python3
"""Compares the tensors of two GGUF files: per tensor, the type in each and whether the bytes are equal.

Usage:
    /path/to/venv/bin/python tools/compare_gguf_tensors.py OURS.gguf THEIRS.gguf [--json]
                                                           [--golden OUT.json --key NAME]

Made to check `smoe quantize --type q4_k_m` (etc.) against llama-quantize run on the same weights
(e.g. llama.cpp's bf16 conversion of the same checkpoint: bf16 -> f32 is exact in both tools, so
the quantizer sees the same values). For tensors whose bytes differ, prints how many blocks differ.
Exit status 0 when every tensor has the same type and bytes, 1 otherwise.

--golden OUT.json --key NAME records THEIRS' tensors ({name: {"type", "sha256"}}) under NAME in
OUT.json (merged with what is there), for a Rust test to check our output against without llama.cpp.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES


def tensors(path: str) -> dict:
    r = GGUFReader(path)
    return {t.name: t for t in r.tensors}


def main() -> None:
    argv = sys.argv[1:]
    opt = {}
    for flag in ("--golden", "--key"):
        if flag in argv:
            i = argv.index(flag)
            opt[flag] = argv[i + 1]
            del argv[i:i + 2]
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 2 or ("--golden" in opt) != ("--key" in opt):
        sys.exit(__doc__)
    as_json = "--json" in sys.argv
    a, b = tensors(args[0]), tensors(args[1])
    rows = []
    for name in sorted(set(a) | set(b)):
        ta, tb = a.get(name), b.get(name)
        row = {"name": name,
               "ours": ta.tensor_type.name if ta is not None else None,
               "theirs": tb.tensor_type.name if tb is not None else None}
        if ta is not None and tb is not None and ta.tensor_type == tb.tensor_type:
            da = np.asarray(ta.data).view(np.uint8).reshape(-1)
            db = np.asarray(tb.data).view(np.uint8).reshape(-1)
            row["bytes_equal"] = bool(da.size == db.size and np.array_equal(da, db))
            if not row["bytes_equal"] and da.size == db.size:
                bs = GGML_QUANT_SIZES[ta.tensor_type][1]
                diff = (da.reshape(-1, bs) != db.reshape(-1, bs)).any(axis=1)
                row["blocks_differing"] = int(diff.sum())
                row["blocks"] = int(diff.size)
        rows.append(row)
    ok = all(r["ours"] == r["theirs"] and r.get("bytes_equal") for r in rows)
    if "--golden" in opt:
        out = Path(opt["--golden"])
        golden = json.loads(out.read_text()) if out.exists() else {}
        golden[opt["--key"]] = {
            name: {"type": t.tensor_type.name,
                   "sha256": hashlib.sha256(np.asarray(t.data).view(np.uint8).tobytes()).hexdigest()}
            for name, t in sorted(b.items())}
        out.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    if as_json:
        print(json.dumps({"identical": ok, "tensors": rows}, indent=1))
    else:
        print(f"{'tensor':36} {'smoe':>6} {'llama':>6}  bytes")
        for r in rows:
            same = r.get("bytes_equal")
            what = "identical" if same else (
                f"{r['blocks_differing']}/{r['blocks']} blocks differ" if "blocks_differing" in r else
                "-" if same is None else "differ")
            print(f"{r['name']:36} {r['ours'] or '-':>6} {r['theirs'] or '-':>6}  {what}")
        n_same = sum(1 for r in rows if r.get("bytes_equal"))
        print(f"{n_same}/{len(rows)} tensors identical in type and bytes")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
