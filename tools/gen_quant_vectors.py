#!/usr/bin/env python3
"""Makes the block-format test vectors for crate smoe-quant from the ground truth: the `gguf` package.

Usage (from the repository root):
    /path/to/venv/bin/python tools/gen_quant_vectors.py [out_dir]     # default quant/tests/vectors

The venv needs `gguf` and `numpy`. Writes two files:
  vectors.bin   all byte strings, concatenated (little-endian f32 / block bytes)
  vectors.json  the manifest: one entry per case:
                {name, type, op: "quantize"|"dequantize", n (elements), src: [offset, len],
                 expected: [offset, len], ref: "gguf" | "llama.cpp"}
    op "quantize":   src = n f32, expected = the block bytes of `gguf.quants.quantize`.
    op "dequantize": src = block bytes, expected = n f32 from `gguf.quants.dequantize`.
    ref "llama.cpp": Q8_K, which the package does not implement; expected comes from the
                     numpy transcription of llama.cpp's quantize_row_q8_K_ref / dequantize_row_q8_K
                     below (the package has no Q8_K), so it checks consistency, not ground truth.

Everything is seeded, so re-running gives the same files for the same gguf/numpy versions.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import quantize, dequantize

QK_K = 256
F16_MAX = 65504.0

# Types whose quantize the package implements (F32/F16 by cast, the rest by class).
QUANTIZE_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
# Types checked on dequantize of random blocks.
DEQUANT_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                 T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]

# Offsets of the f16 scale fields inside a block, per type (from the package's dequantize code).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82],   # scales[16] qs[64] d dmin
    T.Q3_K: [108],      # hmask[32] qs[64] scales[12] d
    T.Q4_K: [0, 2],     # d dmin scales[12] qs[128]
    T.Q5_K: [0, 2],     # d dmin scales[12] qh[32] qs[128]
    T.Q6_K: [208],      # ql[128] qh[64] scales[16] d
}


class Out:
    def __init__(self) -> None:
        self.blob = bytearray()
        self.cases: list[dict] = []

    def put(self, b: bytes) -> list[int]:
        off = len(self.blob)
        self.blob += b
        return [off, len(b)]

    def case(self, name: str, ty: str, op: str, n: int, src: bytes, expected: bytes, ref: str = "gguf") -> None:
        self.cases.append({"name": name, "type": ty, "op": op, "n": n,
                           "src": self.put(src), "expected": self.put(expected), "ref": ref})


def f32_bits(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint32).view(np.float32)


def quant_inputs(ty: T, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Named f32 rows for a quantizing type; lengths are whole (and odd) numbers of blocks."""
    bs = GGML_QUANT_SIZES[ty][0]
    nb = 7 if bs == 32 else 3
    if bs == 1:
        nb = 67  # odd element count for the plain types
    n = bs * nb
    rows = [
        ("normal", rng.standard_normal(n).astype(np.float32)),
        ("normal_1blk", rng.standard_normal(bs).astype(np.float32)),
        ("zeros", np.zeros(n, dtype=np.float32)),
        ("constant_pos", np.full(n, 1.5, dtype=np.float32)),
        ("constant_neg", np.full(n, -2.25, dtype=np.float32)),
    ]
    out = rng.standard_normal(n).astype(np.float32)
    out[rng.choice(n, size=max(2, n // 20), replace=False)] *= np.float32(100.0)
    rows.append(("outliers", out))
    rows.append(("tiny_1e-30", (rng.standard_normal(n) * 1e-30).astype(np.float32)))
    rows.append(("huge_1e30", (rng.standard_normal(n) * 1e30).astype(np.float32)))
    # Scales near the f16 maximum: d = amax/127 (Q8_0), max/-8 (Q4_0), ... around 65504.
    scale = {T.Q8_0: 127.0, T.Q4_0: 8.0, T.Q5_0: 16.0, T.Q4_1: 15.0, T.Q5_1: 31.0}.get(ty, 1.0)
    near = rng.uniform(-1.0, 1.0, n).astype(np.float32)
    for b in range(nb):  # each block gets one element of magnitude scale * 65504 * (1 +- small)
        near[b * bs + rng.integers(bs)] = np.float32((-1) ** b * scale * F16_MAX * (1.0 + (b - nb / 2) * 2e-4))
    rows.append(("near_f16_max", near))
    # Negative maximum and ties: the amax element's sign decides the scale's sign (Q4_0/Q5_0).
    neg = rng.standard_normal(n).astype(np.float32)
    neg[::bs] = -9.0
    rows.append(("negative_max", neg))
    if bs > 1:
        tie = rng.uniform(-1.0, 1.0, n).astype(np.float32)
        for b in range(nb):
            i, j = b * bs + 1, b * bs + bs - 2
            first, second = (-5.0, 5.0) if b % 2 == 0 else (5.0, -5.0)
            tie[i], tie[j] = np.float32(first), np.float32(second)
        rows.append(("amax_tie", tie))
    # Half-way values: multiples of 0.5 hit the rounding ties of x*id + 8.5 / round(x*id).
    grid = (rng.integers(-16, 17, n) * 0.5).astype(np.float32)
    grid[::bs] = {T.Q8_0: 127.0, T.Q4_0: -8.0, T.Q5_0: -16.0}.get(ty, 8.0)
    rows.append(("half_steps", grid))
    rows.append(("normal_2", (rng.standard_normal(n) * 0.02).astype(np.float32)))
    if bs == 1:
        special = f32_bits([
            0x00000000, 0x80000000, 0x7F800000, 0xFF800000,   # +-0, +-inf
            0x7FC00000, 0xFFC00000, 0x7FC12345, 0x7F800001,   # quiet NaNs, signaling NaN
            0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7F802001,
            0x00000001, 0x80000001, 0x007FFFFF, 0x00800000,   # f32 subnormals, min normal
            0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001,   # around f16 max (65504, 65520)
            0x33000000, 0x33000001, 0x337FFFFF, 0x33800000,   # around half the smallest f16 subnormal
            0x38800000, 0x387FC000, 0x387FE000, 0x387FF000,   # f16 min normal and nearby
            0x3F808000, 0x3F818000, 0x3F808001, 0x3F817FFF,   # bf16 ties (to even) and near ties
            0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x7F7F7FFF,   # f32 max: bf16 rounds to inf or not
            0x0DA24260, 0x7149F2CA, 0xF149F2CA, 0x3DCCCCCD,   # 1e-30, 1e30, -1e30, 0.1
        ])
        rows.append(("special", special))
    return rows


def random_blocks(ty: T, nb: int, rng: np.random.Generator, signed_scales: bool) -> np.ndarray:
    """Random block bytes with the f16 scale fields set to finite, moderate values."""
    bs, ts = GGML_QUANT_SIZES[ty]
    raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
    for off in F16_FIELDS[ty]:
        v = rng.uniform(1e-3, 0.5, size=nb)
        if signed_scales:
            v *= rng.choice([-1.0, 1.0], size=nb)
        raw[:, off:off + 2] = v.astype(np.float16).view(np.uint8).reshape(nb, 2)
    return raw


# ---- Q8_K: a numpy transcription of llama.cpp's quantize_row_q8_K_ref / dequantize_row_q8_K ----
# block_q8_K = { float d; int8_t qs[256]; int16_t bsums[16]; }  (292 bytes)

def q8_k_quantize(x: np.ndarray) -> bytes:
    out = bytearray()
    for blk in x.astype(np.float32).reshape(-1, QK_K):
        ax = np.abs(blk)
        amax = ax.max()
        if not amax > 0:  # all zero: d = 0, qs = 0; smoe also zeroes bsums
            out += np.zeros(1, np.float32).tobytes() + bytes(QK_K) + bytes(2 * 16)
            continue
        mx = blk[int(np.argmax(ax))]  # first element of largest magnitude, with its sign
        iscale = np.float32(-127.0) / mx
        v = np.rint(iscale * blk)  # nearest_int: round half to even for |v| < 2^22
        q = np.minimum(v, 127).astype(np.int8)
        bsums = q.astype(np.int32).reshape(16, 16).sum(axis=1).astype(np.int16)
        d = np.float32(1.0) / iscale
        out += np.array([d], np.float32).tobytes() + q.tobytes() + bsums.astype("<i2").tobytes()
    return bytes(out)


def q8_k_dequantize(b: bytes) -> np.ndarray:
    blocks = np.frombuffer(b, dtype=np.uint8).reshape(-1, 292)
    d = blocks[:, 0:4].copy().view(np.float32)
    qs = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * qs).reshape(-1)


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "quant/tests/vectors"
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240531)
    o = Out()
    warnings.simplefilter("ignore")  # overflow to inf in f16 casts is part of what we test

    for ty in QUANTIZE_TYPES:
        for name, x in quant_inputs(ty, rng):
            x = x.astype(np.float32)
            q = np.ascontiguousarray(quantize(x.reshape(1, -1), ty)).view(np.uint8).tobytes()
            o.case(name, ty.name, "quantize", x.size, x.tobytes(), q)
            y = dequantize(np.frombuffer(q, dtype=np.uint8).reshape(1, -1), ty).astype(np.float32)
            o.case(name, ty.name, "dequantize", x.size, q, y.tobytes())

    for ty in DEQUANT_TYPES:
        bs, ts = GGML_QUANT_SIZES[ty]
        nb = 5 if bs == 256 else (13 if bs == 32 else 257)
        cases = []
        if bs == 1:
            # every kind of bit pattern, NaN payloads included
            width = ts
            raw = rng.integers(0, 256, size=(nb * width,), dtype=np.uint8)
            cases.append(("random_bits", raw))
        else:
            cases.append(("random_blocks", random_blocks(ty, nb, rng, signed_scales=False)))
            cases.append(("random_blocks_signed", random_blocks(ty, 3, rng, signed_scales=True)))
            cases.append(("random_blocks_1", random_blocks(ty, 1, rng, signed_scales=False)))
        for name, raw in cases:
            raw = np.ascontiguousarray(raw).reshape(1, -1).view(np.uint8)
            y = dequantize(raw, ty).astype(np.float32)
            o.case(name, ty.name, "dequantize", y.size, raw.tobytes(), y.tobytes())

    for name, x in quant_inputs(T.Q8_K, rng):
        q = q8_k_quantize(x)
        o.case(name, "Q8_K", "quantize", x.size, x.astype(np.float32).tobytes(), q, ref="llama.cpp")
        o.case(name, "Q8_K", "dequantize", x.size, q, q8_k_dequantize(q).tobytes(), ref="llama.cpp")

    (out_dir / "vectors.bin").write_bytes(bytes(o.blob))
    manifest = {
        "generator": "tools/gen_quant_vectors.py",
        "gguf_version": getattr(gguf, "__version__", None) or _dist_version("gguf"),
        "numpy_version": np.__version__,
        "cases": o.cases,
    }
    # one case per line keeps the manifest small and its diffs readable
    head = json.dumps({k: v for k, v in manifest.items() if k != "cases"})[:-1]
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in o.cases)
    (out_dir / "vectors.json").write_text(f'{head}, "cases": [\n{lines}\n]}}\n')
    print(f"{len(o.cases)} cases, {len(o.blob)} bytes -> {out_dir}")


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()
