#!/usr/bin/env python3
"""Makes the quantizer test vectors for llama.cpp's own C quantizers (K-quants, importance-weighted).

Usage (from the repository root):
    /path/to/venv/bin/python tools/gen_kquant_vectors.py LIBGGML_BASE [out_dir]

LIBGGML_BASE is llama.cpp's `libggml-base.so` (built by tools/build_llama_cpp.sh:
`.../llama.cpp/build/bin/libggml-base.so`); out_dir defaults to quant/tests/vectors. Needs numpy only.

The ground truth is the C itself, called through ctypes:
  quantize_row_{q4_0,q4_1,q5_0,q5_1,q8_0,q2_K,q3_K,q4_K,q5_K,q6_K}_ref(x, y, k)   the reference quantizers
  quantize_{q4_0,q4_1,q5_0,q5_1,q2_K,q3_K,q4_K,q5_K,q6_K}(src, dst, nrow=1, n_per_row, imatrix)
                                                       the importance-weighted ones (what llama-quantize
                                                       calls when given an imatrix)

Writes two files (same layout as gen_quant_vectors.py's):
  kquants.bin   all byte strings, concatenated (little-endian f32 / block bytes)
  kquants.json  one case per line: {name, type, op, n, src: [off, len], expected: [off, len],
                ref: "llama.cpp", weights: [off, len] (op "quantize_weighted" only)}
    op "quantize":          src = one row of n f32; expected = the _ref quantizer's block bytes.
    op "quantize_weighted": src as above, weights = n f32 importances; expected = quantize_*(.., weights).

Everything is seeded, so re-running with the same library gives the same files.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

QK_K = 256
# name -> (elements per block, bytes per block, has a weighted quantizer)
TYPES = {
    "Q4_0": (32, 18, True), "Q4_1": (32, 20, True), "Q5_0": (32, 22, True), "Q5_1": (32, 24, True),
    "Q8_0": (32, 34, False),
    "Q2_K": (256, 84, True), "Q3_K": (256, 110, True), "Q4_K": (256, 144, True),
    "Q5_K": (256, 176, True), "Q6_K": (256, 210, True),
}


def c_name(ty: str) -> str:
    return ty.lower().replace("_k", "_K")


class Ggml:
    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)
        f32p = ctypes.POINTER(ctypes.c_float)
        for ty, (_, _, weighted) in TYPES.items():
            ref = getattr(self.lib, f"quantize_row_{c_name(ty)}_ref")
            ref.argtypes = [f32p, ctypes.c_void_p, ctypes.c_int64]
            ref.restype = None
            if weighted:
                q = getattr(self.lib, f"quantize_{c_name(ty)}")
                q.argtypes = [f32p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, f32p]
                q.restype = ctypes.c_size_t

    def quantize(self, ty: str, x: np.ndarray, weights: np.ndarray | None = None) -> bytes:
        bs, ts, _ = TYPES[ty]
        x = np.ascontiguousarray(x, dtype=np.float32)
        assert x.size % bs == 0
        out = ctypes.create_string_buffer(x.size // bs * ts)
        xp = x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        if weights is None:
            getattr(self.lib, f"quantize_row_{c_name(ty)}_ref")(xp, out, x.size)
        else:
            w = np.ascontiguousarray(weights, dtype=np.float32)
            assert w.size == x.size
            n = getattr(self.lib, f"quantize_{c_name(ty)}")(
                xp, out, 1, x.size, w.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            assert n == len(out.raw), (ty, n, len(out.raw))
        return out.raw


class Out:
    def __init__(self) -> None:
        self.blob = bytearray()
        self.cases: list[dict] = []
        self.seen: dict[bytes, int] = {}

    def put(self, b: bytes) -> list[int]:
        """Appends `b` once: cases of different types share their input rows."""
        if b not in self.seen:
            self.seen[b] = len(self.blob)
            self.blob += b
        return [self.seen[b], len(b)]

    def case(self, name: str, ty: str, op: str, x: np.ndarray, expected: bytes,
             weights: np.ndarray | None = None) -> None:
        c = {"name": name, "type": ty, "op": op, "n": int(x.size),
             "src": self.put(x.astype(np.float32).tobytes()), "expected": self.put(expected),
             "ref": "llama.cpp"}
        if weights is not None:
            c["weights"] = self.put(weights.astype(np.float32).tobytes())
        self.cases.append(c)


def rows(bs: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Named f32 rows: random data and the edges the scale searches branch on."""
    nb = 2 if bs == QK_K else 5
    n = bs * nb
    f = np.float32
    out = [
        ("normal", rng.standard_normal(n)),
        ("normal_1blk", rng.standard_normal(bs)),
        ("weights_like", rng.standard_normal(n) * 0.02),
        ("zeros", np.zeros(n)),
        ("constant_pos", np.full(n, 1.5)),
        ("constant_neg", np.full(n, -2.25)),
        ("positive_only", np.abs(rng.standard_normal(n)) + 0.1),
        ("negative_only", -np.abs(rng.standard_normal(n)) - 0.1),
        ("uniform", rng.uniform(-1, 1, n)),
        ("laplace", rng.laplace(0, 1, n)),
        ("tiny_1e-20", rng.standard_normal(n) * 1e-20),   # above GROUP_MAX_EPS; x² underflows
        ("tiny_1e-30", rng.standard_normal(n) * 1e-30),   # below GROUP_MAX_EPS
        ("huge_1e10", rng.standard_normal(n) * 1e10),
    ]
    o = rng.standard_normal(n)
    o[rng.choice(n, size=max(2, n // 20), replace=False)] *= 100.0
    out.append(("outliers", o))
    one = np.zeros(n)
    one[rng.integers(n)] = 3.0
    one[rng.integers(n)] = -7.0
    out.append(("two_hot", one))
    # every other 16-element sub-block zero: zero scales, skipped in the final pass
    sz = rng.standard_normal(n)
    sz.reshape(-1, 16)[::2] = 0.0
    out.append(("zero_subblocks", sz))
    # sub-blocks of very different magnitudes: small ones round to a 0 scale
    ms = rng.standard_normal(n).reshape(-1, 16) * (10.0 ** rng.uniform(-4, 3, (n // 16, 1)))
    out.append(("mixed_magnitudes", ms.reshape(-1)))
    # multiples of 0.5 and 0.25: the rounding ties of nearest_int
    out.append(("half_steps", rng.integers(-16, 17, n) * 0.5))
    out.append(("quarter_steps", rng.integers(-8, 9, n) * 0.25))
    # a block whose largest magnitude is tied between a positive and a negative value
    tie = rng.uniform(-1, 1, n)
    tie[1::bs] = 5.0
    tie[bs - 2::bs] = -5.0
    out.append(("amax_tie", tie))
    out.append(("small_ints", rng.integers(-3, 4, n).astype(float)))
    return [(name, np.asarray(x, dtype=f)) for name, x in out]


def weight_rows(n: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Importance rows: what an imatrix holds (mean squared activations, >= 0) and edges."""
    w = [
        ("imatrix_lognormal", np.exp(rng.standard_normal(n) * 1.5)),
        ("imatrix_ones", np.ones(n)),
        ("imatrix_some_zero", np.where(rng.uniform(size=n) < 0.3, 0.0, rng.uniform(0.1, 4.0, n))),
        ("imatrix_spiky", np.where(rng.uniform(size=n) < 0.02, 1e4, 1e-3) * rng.uniform(0.5, 1.5, n)),
    ]
    return [(name, np.asarray(x, dtype=np.float32)) for name, x in w]


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ggml = Ggml(sys.argv[1])
    out_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parent.parent / "quant/tests/vectors"
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20250611)
    o = Out()
    np.seterr(all="ignore")
    # The same rows for every type of a block size (stored once).
    inputs = {bs: rows(bs, rng) for bs in (32, QK_K)}
    weights = {bs: weight_rows(len(inputs[bs][0][1]), rng) for bs in (32, QK_K)}
    weighted_rows = ("normal", "weights_like", "zeros", "outliers", "zero_subblocks",
                     "mixed_magnitudes", "half_steps", "positive_only", "tiny_1e-20")
    for ty, (bs, _, weighted) in TYPES.items():
        for name, x in inputs[bs]:
            o.case(name, ty, "quantize", x, ggml.quantize(ty, x))
        if not weighted:
            continue
        # weighted: a few value rows, each with every kind of importance row
        for name, x in inputs[bs]:
            if name not in weighted_rows:
                continue
            for wname, w in weights[bs]:
                o.case(f"{name}/{wname}", ty, "quantize_weighted", x, ggml.quantize(ty, x, w), w)
            zeros = np.zeros(x.size, np.float32)
            if name == "normal":
                o.case("normal/imatrix_zeros", ty, "quantize_weighted", x,
                       ggml.quantize(ty, x, zeros), zeros)

    (out_dir / "kquants.bin").write_bytes(bytes(o.blob))
    head = json.dumps({"generator": "tools/gen_kquant_vectors.py", "library": Path(sys.argv[1]).name,
                       "llama_cpp": llama_cpp_version(Path(sys.argv[1])),
                       "numpy_version": np.__version__})[:-1]
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in o.cases)
    (out_dir / "kquants.json").write_text(f'{head}, "cases": [\n{lines}\n]}}\n')
    print(f"{len(o.cases)} cases, {len(o.blob)} bytes -> {out_dir}")


def llama_cpp_version(lib: Path) -> str | None:
    """The llama-cpp-python sdist the library was built from, if build_llama_cpp.sh's layout."""
    for p in lib.resolve().parents:
        for sdist in sorted(p.glob("llama_cpp_python-*.tar.gz")):
            return sdist.name[:-len(".tar.gz")]
    try:
        return subprocess.run(["git", "-C", str(lib.parent), "describe", "--always"],
                              capture_output=True, text=True).stdout.strip() or None
    except OSError:
        return None


if __name__ == "__main__":
    main()
