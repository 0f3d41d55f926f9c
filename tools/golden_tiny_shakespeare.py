#!/usr/bin/env python3
"""Golden outputs of the committed Shakespeare model, computed by Hugging Face `transformers` from the
weights exactly as they are in the GGUF file.

The committed file (models/tiny-shakespeare-q8_0.gguf) is quantized, so a golden made from the f32
training checkpoint would differ from it by the quantization error. Instead this script reads the
GGUF with llama.cpp's `gguf` package, dequantizes every tensor to f32 (`gguf.quants.dequantize`),
undoes llama.cpp's Q/K row permutation, loads the result into MixtralForCausalLM (f32, eager
attention, CPU, one thread) and runs it. What remains between smoe and this reference is how the
arithmetic is done: smoe, like llama.cpp, rounds the activations to Q8_0 blocks before each q8_0
matrix product, which moves logits by a few hundredths. The Rust test (tests/tiny_shakespeare.rs)
therefore checks logits with a tolerance and compares greedy tokens up to the first step whose
top-1/top-2 gap is too small to call.

Writes tests/fixtures/tiny-shakespeare/golden.json:
  model        file name, sha256 and size of the GGUF (a golden that no longer matches is detectable),
               the config read from its metadata
  reference    library versions and settings
  prompts[i]   text; ids (tokenizer.json encoding with BOS); top: at every position of the prompt
               followed by its greedy continuation, the TOP_K largest logits (ids and values) and the
               log-sum-exp over all 32000 (so logits are compared at every step, even past a step
               too close to call); greedy: N_NEW ids by
               argmax with the whole sequence re-run at each step (EOS does not stop it; checked
               against generate() with the KV cache), the top-1 minus top-2 gap at each step, and
               the decoded completion
  tokenizer    a Shakespeare passage and its ids (tokenizer.json with BOS), for the round-trip test

Usage: tools/golden_tiny_shakespeare.py [--gguf models/tiny-shakespeare-q8_0.gguf] [--out ...]
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GGUF = os.path.join(REPO, "models", "tiny-shakespeare-q8_0.gguf")
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "tiny-shakespeare", "golden.json")
TOKENIZER = os.path.join(REPO, "tests", "fixtures", "tokenizer", "tokenizer.json")

PROMPTS = [
    "ROMEO:",
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?",
    "KING HENRY V:\nOnce more unto the breach, dear friends,",
]
N_NEW = 48
TOP_K = 16

# Not from the training text's held-out plays or its tokenization: a passage with the corpus's
# punctuation, apostrophes, a dash and line breaks (Hamlet III.1, public domain).
PASSAGE = (
    "HAMLET:\n"
    "To be, or not to be: that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n"
    "Or to take arms against a sea of troubles,\n"
    "And by opposing end them? To die: to sleep;\n"
    "No more; and by a sleep to say we end\n"
    "The heart-ache and the thousand natural shocks\n"
    "That flesh is heir to, 'tis a consummation\n"
    "Devoutly to be wish'd. To die, to sleep;--\n"
)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_gguf(path):
    """Metadata values and f32 tensors (numpy, outermost dimension first) of a GGUF file."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    r = GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("tokenizer.ggml.") and k != "tokenizer.ggml.bos_token_id" \
                and k != "tokenizer.ggml.eos_token_id":
            continue
        meta[k] = f.contents()
    tensors = {}
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))  # outermost first
        tensors[t.name] = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
    return meta, tensors


def unpermute(w, n_head):
    """Undo llama.cpp's Q/K permutation: GGUF row 2i+j of a head is Hugging Face row j*hd/2 + i."""
    rows, cols = w.shape
    hd = rows // n_head
    return w.reshape(n_head, hd // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def build_model(meta, tensors):
    from transformers import MixtralConfig, MixtralForCausalLM

    a = meta["general.architecture"]
    n_embd = meta[f"{a}.embedding_length"]
    n_head = meta[f"{a}.attention.head_count"]
    n_head_kv = meta[f"{a}.attention.head_count_kv"]
    cfg = dict(
        vocab_size=tensors["token_embd.weight"].shape[0],
        hidden_size=n_embd,
        intermediate_size=meta[f"{a}.feed_forward_length"],
        num_hidden_layers=meta[f"{a}.block_count"],
        num_attention_heads=n_head,
        num_key_value_heads=n_head_kv,
        head_dim=meta.get(f"{a}.attention.key_length", n_embd // n_head),
        num_local_experts=meta[f"{a}.expert_count"],
        num_experts_per_tok=meta[f"{a}.expert_used_count"],
        rope_theta=float(meta[f"{a}.rope.freq_base"]),
        rms_norm_eps=float(meta[f"{a}.attention.layer_norm_rms_epsilon"]),
        max_position_embeddings=meta[f"{a}.context_length"],
        sliding_window=None,
        tie_word_embeddings="output.weight" not in tensors,
        bos_token_id=meta["tokenizer.ggml.bos_token_id"],
        eos_token_id=meta["tokenizer.ggml.eos_token_id"],
        hidden_act="silu",
    )
    model = MixtralForCausalLM(MixtralConfig(**cfg)).to(torch.float32)
    params = dict(model.named_parameters())
    t = lambda name: torch.from_numpy(tensors[name])
    w = {
        "model.embed_tokens.weight": t("token_embd.weight"),
        "model.norm.weight": t("output_norm.weight"),
        "lm_head.weight": t("output.weight" if "output.weight" in tensors else "token_embd.weight"),
    }
    for il in range(cfg["num_hidden_layers"]):
        b, p = f"blk.{il}.", f"model.layers.{il}."
        w[p + "input_layernorm.weight"] = t(b + "attn_norm.weight")
        w[p + "post_attention_layernorm.weight"] = t(b + "ffn_norm.weight")
        w[p + "self_attn.q_proj.weight"] = torch.from_numpy(unpermute(tensors[b + "attn_q.weight"], n_head))
        w[p + "self_attn.k_proj.weight"] = torch.from_numpy(unpermute(tensors[b + "attn_k.weight"], n_head_kv))
        w[p + "self_attn.v_proj.weight"] = t(b + "attn_v.weight")
        w[p + "self_attn.o_proj.weight"] = t(b + "attn_output.weight")
        w[p + "mlp.gate.weight"] = t(b + "ffn_gate_inp.weight")
        # [n_expert, n_ff, n_embd] gate and up -> gate_up_proj [n_expert, 2*n_ff, n_embd] (gate first)
        w[p + "mlp.experts.gate_up_proj"] = torch.cat([t(b + "ffn_gate_exps.weight"), t(b + "ffn_up_exps.weight")], 1)
        w[p + "mlp.experts.down_proj"] = t(b + "ffn_down_exps.weight")  # [n_expert, n_embd, n_ff]
    if set(w) != set(params):
        sys.exit(f"weights do not match the module: {sorted(set(w) ^ set(params))}")
    with torch.no_grad():
        for name, v in w.items():
            if params[name].shape != v.shape:
                sys.exit(f"{name}: {tuple(v.shape)} from the file, module wants {tuple(params[name].shape)}")
            params[name].copy_(v)
    model.eval()
    return model, cfg


def forward(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids], dtype=torch.long)).logits[0]


def gap(logits):
    v = torch.topk(logits, 2).values
    return float(v[0] - v[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    import gguf
    import transformers
    from tokenizers import Tokenizer
    from transformers import MixtralConfig  # noqa: F401  (fail early without transformers)

    meta, tensors = read_gguf(args.gguf)
    model, cfg = build_model(meta, tensors)
    model.config._attn_implementation = "eager"
    tok = Tokenizer.from_file(TOKENIZER)

    prompts = []
    for text in PROMPTS:
        ids = tok.encode(text).ids
        seq, new, gaps = list(ids), [], []
        for _ in range(N_NEW):
            last = forward(model, seq)[-1]
            nxt = int(torch.argmax(last))
            new.append(nxt)
            gaps.append(gap(last))
            seq.append(nxt)
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                                 do_sample=False, pad_token_id=cfg["eos_token_id"])
        kv = gen[0, len(ids):].tolist()
        # logits at every position of the prompt and the greedy continuation (teacher-forced)
        logits = forward(model, ids + new)  # [n_pos, n_vocab]
        top = torch.topk(logits, TOP_K, dim=-1)
        lse = torch.logsumexp(logits.double(), dim=-1)
        if kv != new:
            print(f"WARNING {text!r}: generate() (KV cache) differs from the full re-run:\n  {kv}\n  {new}")
        completion = tok.decode(ids + new, skip_special_tokens=True)[len(tok.decode(ids, skip_special_tokens=True)):]
        prompts.append(dict(
            text=text, ids=ids,
            top=[dict(ids=top.indices[p].tolist(), logits=top.values[p].tolist(), logsumexp=float(lse[p]))
                 for p in range(len(ids) + N_NEW)],
            greedy=dict(n_new=N_NEW, ids=new, top2_gap=gaps, completion=completion,
                        matches_generate_with_kv_cache=kv == new),
        ))
        print(f"{text!r} ->{completion!r}\n  gaps: min {min(gaps):.3f}, first < 0.05 at "
              f"{next((i for i, g in enumerate(gaps) if g < 0.05), None)}")

    golden = dict(
        model=dict(file=os.path.relpath(os.path.abspath(args.gguf), REPO), sha256=sha256(args.gguf),
                   bytes=os.path.getsize(args.gguf), config=cfg),
        reference=dict(
            library=f"transformers {transformers.__version__}, torch {torch.__version__}, gguf {gguf.__version__}"
            if hasattr(gguf, "__version__") else f"transformers {transformers.__version__}, torch {torch.__version__}",
            weights="the GGUF's tensors dequantized to f32 by gguf.quants.dequantize, Q/K un-permuted",
            dtype="float32", attn_implementation="eager", device="cpu", threads=1,
        ),
        prompts=prompts,
        tokenizer=dict(text=PASSAGE, ids=tok.encode(PASSAGE).ids),
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
