#!/usr/bin/env python3
"""Make the tiny seeded Mixtral fixture (Hugging Face folder) that the Rust golden tests read.

Shape: vocab 32000, hidden 32, intermediate 64, 2 layers, 4 heads (head_dim 8), 2 KV heads,
8 experts, 2 per token, rope_theta 1e6, rms_norm_eps 1e-5 (see CONFIG below).

Weights. HF's default init (normal, std 0.02) gives near-uniform logits, so greedy comparisons would
be decided by rounding noise. We re-initialise every tensor with scales that keep the activations
O(1) but make the decisions clear:
  embeddings        N(0, 1)
  linear layers     N(0, (factor / sqrt(fan_in))^2)   (factor per kind, FACTORS below)
  RMSNorm weights   1 + N(0, 0.1^2)
  router            N(0, (ROUTER_STD)^2), so router logits have std ~3 and top-2 choices are clear
  lm_head           scaled so logits have std ~4 (top-1 minus top-2 gaps mostly > 0.1)
Every tensor is rounded to bf16 before anything is computed, so the bf16 files hold the weights
exactly and an f32 computation on them (tools/golden_tiny_mixtral.py) is the reference for both the
bf16 and the f32 variants.

Usage:
  tools/make_tiny_mixtral.py [--seed 0] [--out tests/fixtures/tiny-mixtral]
      bf16, sharded (small max_shard_size -> 3 shards + model.safetensors.index.json), config.json,
      generation_config.json, and the tokenizer as relative symlinks to ../tokenizer/.
  tools/make_tiny_mixtral.py --dtype f32 --single-file --out /tmp/tiny-mixtral-f32
      the same weights as one f32 model.safetensors (not committed). Tokenizer files are symlinked
      by absolute path when OUT is not beside tests/fixtures/tokenizer, copied with --copy-tokenizer.

The files are written by `save_pretrained`, which (transformers >= 5) converts the fused in-memory
expert tensors back to the original checkpoint names:
  model.layers.{il}.block_sparse_moe.gate.weight              [n_expert, n_embd]
  model.layers.{il}.block_sparse_moe.experts.{e}.w1.weight     [n_ff, n_embd]   gate
  model.layers.{il}.block_sparse_moe.experts.{e}.w3.weight     [n_ff, n_embd]   up
  model.layers.{il}.block_sparse_moe.experts.{e}.w2.weight     [n_embd, n_ff]   down
The script re-reads the written files and checks names and values.
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "tiny-mixtral")
TOKENIZER_DIR = os.path.join(REPO, "tests", "fixtures", "tokenizer")
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"]

CONFIG = dict(
    vocab_size=32000,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    num_local_experts=8,
    num_experts_per_tok=2,
    rope_theta=1e6,
    rms_norm_eps=1e-5,
    max_position_embeddings=32768,
    sliding_window=None,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    hidden_act="silu",
)

# std = factor / sqrt(fan_in) for each kind of linear layer
FACTORS = {
    "q_proj": 1.5,   # q.k/sqrt(head_dim) has std ~factor_q*factor_k ~ 2: attention is not uniform
    "k_proj": 1.5,
    "v_proj": 1.0,
    "o_proj": 1.0,
    "w1": 1.0,       # gate
    "w3": 1.0,       # up
    "w2": 1.0,       # down
    "lm_head": 4.0,  # logits std ~4 on a normalised hidden state
}
ROUTER_STD = 0.5     # router logits std ~ 0.5 * sqrt(32) ~ 2.8
NORM_NOISE = 0.1
EMBED_STD = 1.0


def bf16_exact(t):
    """Round to bf16 and back: the value every variant of the fixture holds exactly."""
    return t.to(torch.bfloat16).to(torch.float32)


def make_weights(cfg, seed):
    """Original-checkpoint-named f32 tensors (all exactly representable in bf16), in a fixed order."""
    g = torch.Generator().manual_seed(seed)
    n_embd, n_ff, n_vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    head_dim = cfg["head_dim"]
    n_q = cfg["num_attention_heads"] * head_dim
    n_kv = cfg["num_key_value_heads"] * head_dim
    n_expert = cfg["num_local_experts"]

    def normal(shape, std):
        return bf16_exact(torch.randn(*shape, generator=g) * std)

    def linear(out_f, in_f, kind):
        return normal((out_f, in_f), FACTORS[kind] / math.sqrt(in_f))

    def norm_w():
        return bf16_exact(1.0 + NORM_NOISE * torch.randn(n_embd, generator=g))

    w = {}
    w["model.embed_tokens.weight"] = normal((n_vocab, n_embd), EMBED_STD)  # [n_vocab, n_embd]
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        w[p + "input_layernorm.weight"] = norm_w()                           # [n_embd]
        w[p + "self_attn.q_proj.weight"] = linear(n_q, n_embd, "q_proj")     # [n_head*head_dim, n_embd]
        w[p + "self_attn.k_proj.weight"] = linear(n_kv, n_embd, "k_proj")    # [n_head_kv*head_dim, n_embd]
        w[p + "self_attn.v_proj.weight"] = linear(n_kv, n_embd, "v_proj")    # [n_head_kv*head_dim, n_embd]
        w[p + "self_attn.o_proj.weight"] = linear(n_embd, n_q, "o_proj")     # [n_embd, n_head*head_dim]
        w[p + "post_attention_layernorm.weight"] = norm_w()                  # [n_embd]
        w[p + "block_sparse_moe.gate.weight"] = normal((n_expert, n_embd), ROUTER_STD)  # [n_expert, n_embd]
        for e in range(n_expert):
            q = p + f"block_sparse_moe.experts.{e}."
            w[q + "w1.weight"] = linear(n_ff, n_embd, "w1")                  # [n_ff, n_embd]
            w[q + "w2.weight"] = linear(n_embd, n_ff, "w2")                  # [n_embd, n_ff]
            w[q + "w3.weight"] = linear(n_ff, n_embd, "w3")                  # [n_ff, n_embd]
    w["model.norm.weight"] = norm_w()                                        # [n_embd]
    w["lm_head.weight"] = linear(n_vocab, n_embd, "lm_head")                 # [n_vocab, n_embd]
    return w


def load_into_model(model, w, cfg):
    """Copy original-named tensors into the (transformers >= 5, fused-expert) module."""
    params = dict(model.named_parameters())
    done = set()
    for name, t in w.items():
        if ".block_sparse_moe.experts." in name:
            continue
        target = name.replace(".block_sparse_moe.", ".mlp.")
        with torch.no_grad():
            params[target].copy_(t)
        done.add(target)
    n_ff = cfg["intermediate_size"]
    for il in range(cfg["num_hidden_layers"]):
        gate_up = params[f"model.layers.{il}.mlp.experts.gate_up_proj"]  # [n_expert, 2*n_ff, n_embd]
        down = params[f"model.layers.{il}.mlp.experts.down_proj"]        # [n_expert, n_embd, n_ff]
        with torch.no_grad():
            for e in range(cfg["num_local_experts"]):
                q = f"model.layers.{il}.block_sparse_moe.experts.{e}."
                gate_up[e, :n_ff].copy_(w[q + "w1.weight"])
                gate_up[e, n_ff:].copy_(w[q + "w3.weight"])
                down[e].copy_(w[q + "w2.weight"])
        done.update([f"model.layers.{il}.mlp.experts.gate_up_proj", f"model.layers.{il}.mlp.experts.down_proj"])
    missing = set(params) - done
    if missing:
        sys.exit(f"parameters not initialised: {sorted(missing)}")


def check_saved(out, w, dtype):
    """Re-read the written safetensors and compare names and values with what we generated."""
    from safetensors import safe_open

    index = os.path.join(out, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    seen = {}
    for f in files:
        with safe_open(os.path.join(out, f), framework="pt") as sf:
            for k in sf.keys():
                seen[k] = sf.get_tensor(k)
    if set(seen) != set(w):
        sys.exit(f"saved names differ: extra {sorted(set(seen) - set(w))[:5]}, "
                 f"missing {sorted(set(w) - set(seen))[:5]}")
    for k, t in seen.items():
        if t.dtype != dtype:
            sys.exit(f"{k}: saved as {t.dtype}, expected {dtype}")
        if not torch.equal(t.to(torch.float32), w[k]):
            sys.exit(f"{k}: saved values differ from the generated ones")
    return files


def link_tokenizer(out, copy):
    for f in TOKENIZER_FILES:
        dst = os.path.join(out, f)
        if os.path.lexists(dst):
            os.remove(dst)
        src = os.path.join(TOKENIZER_DIR, f)
        if copy:
            shutil.copyfile(src, dst)
        else:
            beside = os.path.dirname(out) == os.path.dirname(TOKENIZER_DIR)
            os.symlink(os.path.relpath(src, out) if beside else src, dst)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--single-file", action="store_true", help="one model.safetensors instead of shards")
    ap.add_argument("--max-shard-size", default="1500KB", help="save_pretrained max_shard_size when sharded")
    ap.add_argument("--copy-tokenizer", action="store_true", help="copy the tokenizer files instead of symlinking")
    args = ap.parse_args()

    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(args.seed)
    cfg = MixtralConfig(**CONFIG)
    w = make_weights(CONFIG, args.seed)
    model = MixtralForCausalLM(cfg).to(torch.float32)
    load_into_model(model, w, CONFIG)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = model.to(dtype)

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):  # stale shards from an earlier run
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(out, f))
    shard = "100GB" if args.single_file else args.max_shard_size
    model.save_pretrained(out, max_shard_size=shard)

    # transformers >= 5 writes rope_theta only inside "rope_parameters"; released Mixtral checkpoints
    # (and transformers 4.x) have it at the top level. Keep both, so readers of either style work.
    cpath = os.path.join(out, "config.json")
    c = json.load(open(cpath))
    c["rope_theta"] = CONFIG["rope_theta"]
    c["torch_dtype"] = c["dtype"]  # likewise: transformers 4.x name of "dtype"
    with open(cpath, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")

    files = check_saved(out, w, dtype)
    link_tokenizer(out, args.copy_tokenizer)
    n_params = sum(t.numel() for t in w.values())
    print(f"wrote {out}: {len(w)} tensors, {n_params} parameters, {args.dtype}, files {files}")


if __name__ == "__main__":
    main()
