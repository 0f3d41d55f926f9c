#!/usr/bin/env python3
"""Checks a GGUF written by `smoe quantize` against llama.cpp's own `gguf` package (the ground truth for
the format and the block layouts):

- the package reads the file (metadata, tensor infos);
- every expert tensor (blk.N.ffn_{gate,up,down}_exps) holds exactly the bytes that
  `gguf.quants.quantize` makes from the checkpoint's values (bf16 → f32), experts stacked in order;
- attn_q / attn_k hold the checkpoint's rows permuted as llama.cpp's convert_hf_to_gguf.py permutes them
  (compared after dequantizing with the package), other matrices their rows unpermuted.

With --write-sha FILE it also records the SHA-256 of each expert tensor's expected bytes, so a Rust test
can check our converter without Python.

Usage: tools/check_quantized_gguf.py HF_DIR FILE.gguf [--write-sha OUT.json]
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import gguf
from safetensors.numpy import load_file


def load_hf(hf_dir):
    idx = os.path.join(hf_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    out = {}
    for f in files:
        # safetensors.numpy cannot hold bf16; read raw via torch-free path: load as uint16 then widen.
        from safetensors import safe_open
        with safe_open(os.path.join(hf_dir, f), framework="pt") as st:
            for k in st.keys():
                out[k] = st.get_tensor(k).float().numpy()
    return out


def permute(w, n_head):
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf_dir")
    ap.add_argument("gguf_file")
    ap.add_argument("--write-sha")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.hf_dir, "config.json")))
    hf = load_hf(a.hf_dir)
    r = gguf.GGUFReader(a.gguf_file)
    tensors = {t.name: t for t in r.tensors}
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    failures, sha = 0, {}
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}"
        for gname, w in (("ffn_gate_exps", "w1"), ("ffn_down_exps", "w2"), ("ffn_up_exps", "w3")):
            t = tensors[f"blk.{il}.{gname}.weight"]
            stacked = np.stack([hf[f"{p}.block_sparse_moe.experts.{e}.{w}.weight"] for e in range(cfg["num_local_experts"])])
            qt = gguf.GGMLQuantizationType(int(t.tensor_type))
            want = gguf.quants.quantize(stacked.astype(np.float32), qt).tobytes()
            got = bytes(t.data.tobytes())
            ok = want == got
            failures += not ok
            sha[t.name] = hashlib.sha256(want).hexdigest()
            print(f"{t.name:28} {qt.name:5} {'identical' if ok else 'DIFFERENT'} ({len(got)} bytes)")
        for gname, hname, heads in (("attn_q", "q_proj", n_head), ("attn_k", "k_proj", n_kv), ("attn_v", "v_proj", None)):
            t = tensors[f"blk.{il}.{gname}.weight"]
            src = hf[f"{p}.self_attn.{hname}.weight"]
            want = permute(src, heads) if heads else src
            qt = gguf.GGMLQuantizationType(int(t.tensor_type))
            if qt in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16):
                want_q = want.astype(np.float32)
                got = gguf.quants.dequantize(t.data, qt).reshape(want.shape) if qt != gguf.GGMLQuantizationType.F32 else np.array(t.data).reshape(want.shape)
                ok = np.array_equal(got.astype(np.float32), want_q) if qt != gguf.GGMLQuantizationType.F16 else np.allclose(got, want_q, rtol=1e-3, atol=1e-6)
            else:
                ok = gguf.quants.quantize(want.astype(np.float32), qt).tobytes() == bytes(t.data.tobytes())
            failures += not ok
            print(f"blk.{il}.{gname}.weight{'':14} {qt.name:5} {'matches' if ok else 'DIFFERENT'} (permuted: {heads is not None})")
    print(f"architecture {r.fields['general.architecture'].contents()}, {len(r.tensors)} tensors, {len(r.fields)} keys")
    if a.write_sha:
        with open(a.write_sha, "w") as f:
            json.dump(sha, f, indent=1, sort_keys=True)
    if failures:
        print(f"{failures} tensors differ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
