#!/usr/bin/env python3
"""A Hugging Face-format checkpoint with Mixtral 8x7B's real widths but only N layers, random weights.

For benchmarking the safetensors -> GGUF converter (ours against llama.cpp's convert_hf_to_gguf.py) on
tensors of the real sizes, without downloading 93 GB. NOT committed; one layer is about 3.4 GB in bf16.

Widths (Mixtral-8x7B-v0.1): n_embd 4096, n_ff 14336, 32 heads / 8 KV heads (head_dim 128),
8 experts, 2 per token, n_vocab 32000, rope_theta 1e6, rms_norm_eps 1e-5.

Writes OUT_DIR/:
  model-0000k-of-0000n.safetensors   shards of at most --shard-gb GB (HF's sharded layout and names:
                                     model.layers.{il}.block_sparse_moe.experts.{e}.w1.weight, ...)
  model.safetensors.index.json       {"metadata": {"total_size"}, "weight_map": {name: shard}}
  config.json, generation_config.json, tokenizer.json, tokenizer_config.json (copied from
  tests/fixtures/tokenizer)

Weights: normal(0, --std) for embeddings and linear layers, 1 + normal(0, 0.02) for RMSNorm weights,
each tensor from its own generator seeded by (seed, crc32(name)), so a tensor does not depend on the
shard layout. Everything is cast to --dtype (bf16 default, or f16 / f32).

Streaming: the shapes are known up front, so each shard's safetensors header (8-byte little-endian
length, JSON with dtype/shape/data_offsets, padded with spaces to 8 bytes) is written first and then
the tensors one at a time, each generated, written and freed. Peak memory is about one tensor in f32
plus its cast copy (< 1 GB for the embeddings), not a whole shard (`safetensors.torch.save_file` needs the
whole shard dict in memory, plus a copy). Every shard is then re-opened with the `safetensors` library,
which checks the header and the offsets, and a small tensor is compared with its regeneration.

Usage: tools/make_mixtral_width_checkpoint.py OUT_DIR [--layers 2] [--dtype bf16] [--seed 0]
                                             [--shard-gb 2.0] [--std 0.02]
"""
import argparse
import json
import os
import shutil
import sys
import time
import zlib

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(REPO, "tests", "fixtures", "tokenizer")

N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_EXPERT, N_EXPERT_USED, N_VOCAB = 4096, 14336, 32, 8, 8, 2, 32000
HEAD_DIM = N_EMBD // N_HEAD

DTYPES = {  # name -> (torch dtype, safetensors dtype)
    "bf16": (torch.bfloat16, "BF16"),
    "f16": (torch.float16, "F16"),
    "f32": (torch.float32, "F32"),
}


def tensor_plan(n_layer):
    """(name, shape, kind) in checkpoint order; kind 'norm' or 'normal'."""
    plan = [("model.embed_tokens.weight", (N_VOCAB, N_EMBD), "normal")]             # [n_vocab, n_embd]
    for il in range(n_layer):
        p = f"model.layers.{il}."
        plan += [
            (p + "input_layernorm.weight", (N_EMBD,), "norm"),                          # [n_embd]
            (p + "self_attn.q_proj.weight", (N_HEAD * HEAD_DIM, N_EMBD), "normal"),     # [n_head*head_dim, n_embd]
            (p + "self_attn.k_proj.weight", (N_HEAD_KV * HEAD_DIM, N_EMBD), "normal"),  # [n_head_kv*head_dim, n_embd]
            (p + "self_attn.v_proj.weight", (N_HEAD_KV * HEAD_DIM, N_EMBD), "normal"),  # [n_head_kv*head_dim, n_embd]
            (p + "self_attn.o_proj.weight", (N_EMBD, N_HEAD * HEAD_DIM), "normal"),     # [n_embd, n_head*head_dim]
            (p + "post_attention_layernorm.weight", (N_EMBD,), "norm"),                 # [n_embd]
            (p + "block_sparse_moe.gate.weight", (N_EXPERT, N_EMBD), "normal"),         # [n_expert, n_embd]
        ]
        for e in range(N_EXPERT):
            q = p + f"block_sparse_moe.experts.{e}."
            plan += [
                (q + "w1.weight", (N_FF, N_EMBD), "normal"),                            # [n_ff, n_embd] gate
                (q + "w2.weight", (N_EMBD, N_FF), "normal"),                            # [n_embd, n_ff] down
                (q + "w3.weight", (N_FF, N_EMBD), "normal"),                            # [n_ff, n_embd] up
            ]
    plan += [
        ("model.norm.weight", (N_EMBD,), "norm"),                                       # [n_embd]
        ("lm_head.weight", (N_VOCAB, N_EMBD), "normal"),                                # [n_vocab, n_embd]
    ]
    return plan


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def make_tensor(name, shape, kind, seed, std, dtype):
    g = torch.Generator().manual_seed((seed << 32) ^ zlib.crc32(name.encode()))
    t = torch.randn(*shape, generator=g, dtype=torch.float32)
    if kind == "norm":
        t = 1.0 + 0.02 * t
    else:
        t *= std
    return t.to(dtype)


def split_shards(plan, elem_size, max_bytes):
    shards, cur, cur_bytes = [], [], 0
    for item in plan:
        nbytes = numel(item[1]) * elem_size
        if cur and cur_bytes + nbytes > max_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(item)
        cur_bytes += nbytes
    if cur:
        shards.append(cur)
    return shards


def write_shard(path, items, st_dtype, elem_size, make):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in items:
        nbytes = numel(shape) * elem_size
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for name, shape, kind in items:
            t = make(name, shape, kind)
            f.write(t.reshape(-1).view(torch.uint8).numpy())
            del t
    return offset


def write_config(out, n_layer, dtype_name):
    from transformers import GenerationConfig, MixtralConfig

    cfg = MixtralConfig(
        vocab_size=N_VOCAB, hidden_size=N_EMBD, intermediate_size=N_FF, num_hidden_layers=n_layer,
        num_attention_heads=N_HEAD, num_key_value_heads=N_HEAD_KV, num_local_experts=N_EXPERT,
        num_experts_per_tok=N_EXPERT_USED, rope_theta=1e6, rms_norm_eps=1e-5, max_position_embeddings=32768,
        sliding_window=None, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, hidden_act="silu",
        router_aux_loss_coef=0.02, architectures=["MixtralForCausalLM"],
    )
    c = json.loads(cfg.to_json_string())
    torch_name = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[dtype_name]
    # transformers >= 5 keeps rope_theta only in rope_parameters and names the dtype "dtype";
    # released Mixtral config.json files have "rope_theta" and "torch_dtype". Write both styles.
    c.update(rope_theta=1e6, dtype=torch_name, torch_dtype=torch_name)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    GenerationConfig(bos_token_id=1, eos_token_id=2).save_pretrained(out)


def verify(out, shards, files, st_dtype, make):
    """Re-open each shard with the safetensors library; compare one small tensor per shard."""
    from safetensors import safe_open

    for items, fname in zip(shards, files):
        with safe_open(os.path.join(out, fname), framework="pt") as sf:
            keys = list(sf.keys())
            if sorted(keys) != sorted(n for n, _, _ in items):
                sys.exit(f"{fname}: tensor names differ from the plan")
            for name, shape, _ in items:
                sl = sf.get_slice(name)
                if list(sl.get_shape()) != list(shape) or sl.get_dtype() != st_dtype:
                    sys.exit(f"{fname}: {name}: {sl.get_dtype()} {sl.get_shape()}, expected {st_dtype} {shape}")
            name, shape, kind = min(items, key=lambda it: numel(it[1]))
            if not torch.equal(sf.get_tensor(name), make(name, shape, kind)):
                sys.exit(f"{fname}: {name}: values differ from the regenerated tensor")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-gb", type=float, default=2.0, help="max shard size in GB (1e9 bytes)")
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    dtype, st_dtype = DTYPES[args.dtype]
    elem_size = torch.tensor([], dtype=dtype).element_size()
    out = args.out_dir
    os.makedirs(out, exist_ok=True)

    def make(name, shape, kind):
        return make_tensor(name, shape, kind, args.seed, args.std, dtype)

    plan = tensor_plan(args.layers)
    shards = split_shards(plan, elem_size, int(args.shard_gb * 1e9))
    files = [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))]
    total, weight_map, t0 = 0, {}, time.time()
    for items, fname in zip(shards, files):
        total += write_shard(os.path.join(out, fname), items, st_dtype, elem_size, make)
        weight_map.update({name: fname for name, _, _ in items})
        print(f"{fname}: {len(items)} tensors, {total / 1e9:.2f} GB so far, {time.time() - t0:.0f} s", flush=True)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")
    write_config(out, args.layers, args.dtype)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copyfile(os.path.join(TOKENIZER_DIR, f), os.path.join(out, f))
    verify(out, shards, files, st_dtype, make)
    print(f"wrote {out}: {args.layers} layers, {len(plan)} tensors, {total / 1e9:.2f} GB in {len(files)} shards, "
          f"{args.dtype}, {time.time() - t0:.0f} s; verified")


if __name__ == "__main__":
    main()
