#!/usr/bin/env python3
"""Golden outputs of the tiny Mixtral fixture, computed by Hugging Face `transformers` (the reference).

Loads tests/fixtures/tiny-mixtral (written by tools/make_tiny_mixtral.py; bf16 weights upcast exactly
to f32) with MixtralForCausalLM in float32 on CPU, eager attention, one thread, and writes
tests/fixtures/tiny-mixtral/golden/:

  golden.json        the manifest (below)
  prompt{i}.f32      logits at EVERY position of prompt i: raw little-endian f32, row-major
                     [n_pos, n_vocab]; row p is the prediction for the token after position p
  ppl.txt            the perplexity text (public domain: Jane Austen, Pride and Prejudice, ch. 1);
                     read, never written, by this script

golden.json:
  model            folder, config values, sha256 of each weight file (a stale golden is detectable)
  prompts[i]       text, ids (tokenizer.json encoding; its post-processor adds BOS = 1),
                   logits_file, logits_shape [n_pos, n_vocab], argmax and top-1 minus top-2 gap per position,
                   greedy: 32 new ids chosen by argmax of the full model (the whole sequence re-run at
                   every step, no KV cache; EOS does not stop it), the gap at each step, and the text.
                   The same ids are checked against `model.generate(do_sample=False)` (KV cache).
  router           for prompt 0, per layer: router logits [n_pos, n_expert] and the top-2 expert ids per
                   position (order: larger logit first), and the 2nd-minus-3rd router logit gap.
  perplexity       llama.cpp `llama-perplexity` definition, see perplexity() below, for n_ctx 32 and 64.

Perplexity (exactly llama.cpp's llama-perplexity, default settings):
  1. tokenize the whole text once, with BOS at the front;
  2. cut it into non-overlapping chunks of N = n_ctx tokens: chunk c is tokens[c*N : (c+1)*N]; only
     full chunks count (here capped at MAX_CHUNKS); a partial tail is dropped;
  3. set each chunk's first token to BOS (chunk 0 already starts with it) and run the chunk alone,
     positions 0..N-1, fresh context;
  4. first = N/2; score the tokens at positions j = first+1 .. N-1 of each chunk, each from the
     logits at position j-1: nll_j = -log softmax(logits[j-1])[token_j]   (N-1-first tokens per chunk);
  5. after chunk c the running ppl is exp(sum of all nll so far / count so far); the final ppl is the
     running value after the last chunk, i.e. exp(mean nll over every scored token of every chunk).
  The log-softmax is computed in float64 from the float32 logits.

Usage: tools/golden_tiny_mixtral.py [--model tests/fixtures/tiny-mixtral] [--out MODEL/golden]
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO, "tests", "fixtures", "tiny-mixtral")

# Short prompts: logits are stored at every position (128 kB per position), keep the total <= 20.
PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was",
    "über 🙂",
]
N_NEW = 32
PPL_CTX = [32, 64]
MAX_CHUNKS = 8


def top2_gap(logits):
    """[n, n_vocab] -> top-1 minus top-2 logit, per row."""
    t = torch.topk(logits, 2, dim=-1).values
    return (t[..., 0] - t[..., 1])


def forward(model, ids, **kw):
    with torch.no_grad():
        return model(torch.tensor([ids], dtype=torch.long), **kw)


def greedy(model, ids, n_new):
    """argmax decoding, re-running the full sequence at every step (no KV cache)."""
    seq = list(ids)
    out, gaps = [], []
    for _ in range(n_new):
        logits = forward(model, seq).logits[0, -1]
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        gaps.append(float(top2_gap(logits)))
        seq.append(nxt)
    return out, gaps


def perplexity(model, tokens, n_ctx, bos, max_chunks):
    """llama-perplexity: see the module docstring."""
    n_chunks = min(len(tokens) // n_ctx, max_chunks)
    first = n_ctx // 2
    nll_sum, count, running = 0.0, 0, []
    for c in range(n_chunks):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        chunk[0] = bos
        logits = forward(model, chunk).logits[0].to(torch.float64)  # [n_ctx, n_vocab]
        logp = torch.log_softmax(logits, dim=-1)
        for j in range(first + 1, n_ctx):
            nll_sum += -float(logp[j - 1, chunk[j]])
            count += 1
        running.append(math.exp(nll_sum / count))
    return dict(n_ctx=n_ctx, first=first, n_chunks=n_chunks, n_scored_per_chunk=n_ctx - 1 - first,
                n_scored=count, mean_nll=nll_sum / count, running_ppl=running, ppl=running[-1])


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=None, help="default: MODEL/golden")
    args = ap.parse_args()
    out = args.out or os.path.join(args.model, "golden")
    os.makedirs(out, exist_ok=True)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    import transformers
    from tokenizers import Tokenizer
    from transformers import MixtralForCausalLM

    model = MixtralForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    cfg = model.config
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    bos = cfg.bos_token_id
    n_vocab = cfg.vocab_size

    weight_files = sorted(f for f in os.listdir(args.model) if f.endswith(".safetensors"))
    manifest = dict(
        model=dict(
            folder=os.path.relpath(os.path.abspath(args.model), REPO),
            weight_sha256={f: sha256(os.path.join(args.model, f)) for f in weight_files},
            n_vocab=n_vocab, n_embd=cfg.hidden_size, n_ff=cfg.intermediate_size,
            n_layer=cfg.num_hidden_layers, n_head=cfg.num_attention_heads,
            n_head_kv=cfg.num_key_value_heads, head_dim=cfg.head_dim, n_expert=cfg.num_local_experts,
            n_expert_used=cfg.num_experts_per_tok, rope_theta=cfg.rope_parameters["rope_theta"],
            rms_norm_eps=cfg.rms_norm_eps, bos=bos, eos=cfg.eos_token_id,
        ),
        reference=dict(
            library=f"transformers {transformers.__version__}, torch {torch.__version__}",
            dtype="float32", attn_implementation="eager", device="cpu", threads=1,
        ),
        prompts=[],
    )

    all_gaps = []
    for i, text in enumerate(PROMPTS):
        ids = tok.encode(text).ids
        if ids[0] != bos:
            sys.exit(f"tokenizer did not add BOS to {text!r}: {ids}")
        logits = forward(model, ids).logits[0]  # [n_pos, n_vocab]
        fname = f"prompt{i}.f32"
        logits.numpy().astype("<f4").tofile(os.path.join(out, fname))
        gaps = top2_gap(logits)
        new_ids, new_gaps = greedy(model, ids, N_NEW)
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                                 do_sample=False, pad_token_id=cfg.eos_token_id)
        kv_ids = gen[0, len(ids):].tolist()
        if kv_ids != new_ids:
            print(f"WARNING prompt {i}: generate() (KV cache) differs from full re-run greedy:\n"
                  f"  {kv_ids}\n  {new_ids}")
        manifest["prompts"].append(dict(
            text=text, ids=ids, logits_file=fname, logits_shape=[len(ids), n_vocab], logits_dtype="f32le",
            argmax=torch.argmax(logits, -1).tolist(), top2_gap=gaps.tolist(),
            greedy=dict(n_new=N_NEW, stop_at_eos=False, ids=new_ids, top2_gap=new_gaps,
                        text=tok.decode(ids + new_ids, skip_special_tokens=True),
                        matches_generate_with_kv_cache=kv_ids == new_ids),
        ))
        all_gaps += gaps.tolist() + new_gaps
        print(f"prompt {i} {text!r}: {len(ids)} ids, prompt gap min {gaps.min():.3f}, "
              f"greedy gap min {min(new_gaps):.3f} median {np.median(new_gaps):.3f}")

    # MoE routing of prompt 0, per layer
    ids0 = manifest["prompts"][0]["ids"]
    router_logits = forward(model, ids0, output_router_logits=True).router_logits  # n_layer x [n_pos, n_expert]
    layers = []
    for il, rl in enumerate(router_logits):
        s = torch.sort(rl, dim=-1, descending=True)
        layers.append(dict(layer=il, top2=s.indices[:, :2].tolist(), logits=rl.tolist(),
                           gap_2nd_3rd=(s.values[:, 1] - s.values[:, 2]).tolist()))
    manifest["router"] = dict(prompt=0, layers=layers)

    # perplexity
    text = open(os.path.join(out, "ppl.txt"), encoding="utf-8").read()
    tokens = tok.encode(text).ids
    ppl = dict(text_file="ppl.txt", n_chars=len(text), n_tokens=len(tokens), max_chunks=MAX_CHUNKS,
               definition="llama.cpp llama-perplexity: tokenize once with BOS; non-overlapping chunks of "
                          "n_ctx tokens; chunk[0]=BOS; first=n_ctx/2; score tokens j in [first+1, n_ctx-1] "
                          "from logits at j-1; ppl=exp(mean nll over all scored tokens of all chunks)",
               ctx=[perplexity(model, tokens, n, bos, MAX_CHUNKS) for n in PPL_CTX])
    manifest["perplexity"] = ppl

    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")

    g = np.array(all_gaps)
    rg = np.concatenate([np.array(l["gap_2nd_3rd"]) for l in layers])
    print(f"top-1 minus top-2 gaps over all prompt positions and greedy steps: n {len(g)}, min {g.min():.4f}, "
          f"median {np.median(g):.4f}, share < 0.1: {(g < 0.1).mean():.3f}")
    print(f"router 2nd-3rd gap (prompt 0): min {rg.min():.4f}, median {np.median(rg):.4f}")
    for p in ppl["ctx"]:
        print(f"ppl n_ctx {p['n_ctx']}: {p['n_chunks']} chunks x {p['n_scored_per_chunk']} tokens, "
              f"ppl {p['ppl']:.6g} (mean nll {p['mean_nll']:.6f}); running {[f'{x:.4g}' for x in p['running_ppl']]}")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"wrote {out}: {size} bytes")


if __name__ == "__main__":
    main()
