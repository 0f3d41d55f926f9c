#!/usr/bin/env python3
"""GGUF fixtures from the ground truth: llama.cpp's own `gguf` Python package.

Modes:
  gen_gguf_fixture.py [OUT_DIR]
      Writes OUT_DIR/all_types.gguf with gguf.GGUFWriter (metadata of every value type, nested and
      string arrays, one small tensor of each of F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K..Q6_K),
      then reads it back with gguf.GGUFReader and writes
        OUT_DIR/all_types.expected.json   what the package reads, in `smoe inspect --json`'s schema
        OUT_DIR/all_types.tensor_fnv.json tensor name -> FNV-1a 64 of the bytes the package reads
  gen_gguf_fixture.py --check-ours FILE [--json OUT]
      Reads FILE (written by smoe's GgufWriter in tests/gguf_writer.rs, `ours_plan`) with
      gguf.GGUFReader, checks every metadata value, tensor type, shape and data byte against the
      content the Rust test declares (mirrored below), and writes the package's reading as JSON.

OUT_DIR defaults to tests/fixtures/gguf. Run with the venv that has `gguf` and `numpy`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V

MAX_ARRAY_ITEMS = 16


# --- reading: the package's reader -> our --json schema -------------------------------------------

def _walk(parts, i: int, vtype: V):
    """Value at parts[i] of type vtype -> (json value, next index).

    ReaderField.contents() flattens nested arrays (a FIXME in the package), so walk the reader's
    raw parts instead: a string is [len, bytes], an array is [elem type, len, items...], a scalar
    one part.
    """
    if vtype == V.STRING:
        return str(bytes(parts[i + 1]), encoding="utf-8"), i + 2
    if vtype == V.ARRAY:
        itype = V(int(parts[i][0]))
        n = int(parts[i + 1][0])
        i += 2
        items = []
        for _ in range(n):
            v, i = _walk(parts, i, itype)
            items.append(v)
        if n > MAX_ARRAY_ITEMS:
            return {"type": itype.name, "len": n}, i
        return items, i
    return parts[i].tolist()[0], i + 1


def reader_json(path: Path) -> tuple[dict, dict]:
    r = gguf.GGUFReader(path)
    version = int(r.fields["GGUF.version"].parts[0][0])
    metadata = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header counts
        # KV field parts: [key len, key bytes, value type, value parts...]
        v, end = _walk(field.parts, 3, V(int(field.parts[2][0])))
        assert end == len(field.parts), name
        metadata[name] = v
    tensors = []
    fnv = {}
    for t in r.tensors:
        tensors.append({
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(d) for d in t.shape],  # as stored: innermost first
            "offset": int(t.field.parts[5][0]),  # within the data section, as stored
            "bytes": int(t.n_bytes),
        })
        fnv[t.name] = f"{fnv1a64(t.data.tobytes()):016x}"
    return {"version": version, "metadata": metadata, "tensors": tensors}, fnv


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


# --- all_types.gguf ---------------------------------------------------------------------------------

def write_all_types(out: Path) -> None:
    rng = np.random.default_rng(20240611)
    w = gguf.GGUFWriter(out, "llama")  # adds general.architecture = "llama"
    w.add_name("all-types")
    w.add_uint8("test.uint8", 250)
    w.add_int8("test.int8", -120)
    w.add_uint16("test.uint16", 65000)
    w.add_int16("test.int16", -32000)
    w.add_uint32("test.uint32", 4_000_000_000)
    w.add_int32("test.int32", -2_000_000_000)
    w.add_float32("test.float32", 0.1)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "héllo, wörld ✓")
    w.add_uint64("test.uint64", 2**64 - 2)
    w.add_int64("test.int64", -(2**62) - 7)
    w.add_float64("test.float64", -1234.5678e100)
    w.add_array("test.array.int32", [1, -2, 3])
    w.add_array("test.array.float32", [0.5, -1.25, 3.0e-3])
    w.add_array("test.array.bool", [True, False, True])
    w.add_array("test.array.string", ["a", "", "ünïcode", "<0x0A>"])
    w.add_key_value("test.array.uint8", [0, 1, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.array.uint64", [2**63, 1], V.ARRAY, sub_type=V.UINT64)
    w.add_key_value("test.array.float64", [1e300, -0.0], V.ARRAY, sub_type=V.FLOAT64)
    w.add_array("test.array.nested", [[1, 2], [3], [4, 5, 6]])
    w.add_array("test.array.nested_strings", [["x"], ["y", "z"]])
    w.add_array("test.array.nested3", [[[7]], [[8, 9]]])
    w.add_array("test.array.long_int32", list(range(40)))  # > 16 -> summarized
    w.add_array("test.array.long_string", [f"tok{i}" for i in range(20)])
    w.add_array("test.array.exactly16", list(range(16)))  # not summarized
    w.add_array("test.array.long_nested", [[i] for i in range(17)])
    w.add_expert_count(4)
    w.add_expert_used_count(2)

    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    # numpy shapes are outermost first; the file stores dims innermost first.
    w.add_tensor("t.f32", f32(4, 8))
    w.add_tensor("t.f16", f32(2, 16).astype(np.float16))
    w.add_tensor("t.bf16", quant_or_raw(rng, f32(32), Q.BF16), raw_dtype=Q.BF16)
    for name, qt, shape in [
        ("t.q8_0", Q.Q8_0, (2, 64)),
        ("t.q4_0", Q.Q4_0, (2, 2, 32)),
        ("t.q4_1", Q.Q4_1, (32,)),
        ("t.q5_0", Q.Q5_0, (64,)),
        ("t.q5_1", Q.Q5_1, (3, 32)),
        ("t.q2_k", Q.Q2_K, (256,)),
        ("t.q3_k", Q.Q3_K, (2, 256)),
        ("t.q4_k", Q.Q4_K, (2, 1, 256)),
        ("t.q5_k", Q.Q5_K, (256,)),
        ("t.q6_k", Q.Q6_K, (2, 256)),
    ]:
        w.add_tensor(name, quant_or_raw(rng, f32(*shape), qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quant_or_raw(rng, data: np.ndarray, qt: Q) -> np.ndarray:
    """Quantized by the package where it can, else random bytes of the right byte shape."""
    try:
        return gguf.quants.quantize(data, qt)
    except NotImplementedError:
        shape = gguf.quants.quant_shape_to_byte_shape(data.shape, qt)
        return rng.integers(0, 256, size=shape, dtype=np.uint8)


# --- checking a file written by our writer ------------------------------------------------------------
# Mirrors `ours_plan` in tests/gguf_writer.rs: change both together.

OURS_METADATA = {
    "general.architecture": (V.STRING, "llama"),
    "general.name": (V.STRING, "smoe-writer-test"),
    "general.alignment": (V.UINT32, 64),
    "llama.expert_count": (V.UINT32, 4),
    "llama.expert_used_count": (V.UINT32, 2),
    "test.u8": (V.UINT8, 200),
    "test.i8": (V.INT8, -100),
    "test.u16": (V.UINT16, 60000),
    "test.i16": (V.INT16, -30000),
    "test.u32": (V.UINT32, 4_000_000_000),
    "test.i32": (V.INT32, -2_000_000_000),
    "test.f32": (V.FLOAT32, 1.5),
    "test.bool": (V.BOOL, True),
    "test.string": (V.STRING, "bé ✓"),
    "test.u64": (V.UINT64, 2**63 + 5),
    "test.i64": (V.INT64, -(2**62)),
    "test.f64": (V.FLOAT64, -2.25),
    "test.strings": (V.ARRAY, ["a", "bé", ""]),
    "test.long": (V.ARRAY, {"type": "UINT32", "len": 20}),
    "test.nested": (V.ARRAY, [[1, 2], [3]]),
    "test.nested_str": (V.ARRAY, [["x"], ["y", "z"]]),
}
# name, type, dims (innermost first)
OURS_TENSORS = [
    ("token_embd.weight", Q.F32, [8, 10]),
    ("blk.0.attn_q.weight", Q.Q8_0, [32, 8]),
    ("blk.0.ffn_gate_inp.weight", Q.F32, [8, 4]),
    ("blk.0.ffn_gate_exps.weight", Q.Q4_0, [32, 16, 4]),
    ("blk.0.ffn_up_exps.weight", Q.Q4_K, [256, 2, 4]),
    ("output.weight", Q.F16, [8, 10]),
]


def ours_bytes(k: int, n: int) -> bytes:
    """Tensor k's data as the Rust test writes it: byte i = (i * 31 + k * 7) % 251."""
    return bytes((i * 31 + k * 7) % 251 for i in range(n))


def check_ours(path: Path) -> dict:
    r = gguf.GGUFReader(path)
    doc, _ = reader_json(path)
    problems = []
    got_keys = [k for k in r.fields if not k.startswith("GGUF.")]
    if got_keys != list(OURS_METADATA):
        problems.append(f"keys {got_keys} != {list(OURS_METADATA)}")
    for key, (vtype, want) in OURS_METADATA.items():
        field = r.fields.get(key)
        if field is None:
            continue
        if field.types[0] != vtype:
            problems.append(f"{key}: type {field.types[0].name} != {vtype.name}")
        if doc["metadata"][key] != want:
            problems.append(f"{key}: {doc['metadata'][key]!r} != {want!r}")
    if r.alignment != 64:
        problems.append(f"alignment {r.alignment} != 64")
    if len(r.tensors) != len(OURS_TENSORS):
        problems.append(f"{len(r.tensors)} tensors != {len(OURS_TENSORS)}")
    for k, (t, (name, qt, dims)) in enumerate(zip(r.tensors, OURS_TENSORS)):
        if (t.name, t.tensor_type, [int(d) for d in t.shape]) != (name, qt, dims):
            problems.append(f"tensor {k}: {t.name} {t.tensor_type.name} {t.shape} != {name} {qt.name} {dims}")
        if t.data_offset % 64 != 0:
            problems.append(f"{t.name}: data at {t.data_offset} not 64-aligned")
        if t.data.tobytes() != ours_bytes(k, int(t.n_bytes)):
            problems.append(f"{t.name}: data bytes differ")
    if problems:
        sys.exit("check-ours FAILED:\n  " + "\n  ".join(problems))
    print(f"check-ours: {path}: {len(OURS_METADATA)} keys and {len(OURS_TENSORS)} tensors match (gguf package {importlib.metadata.version('gguf')})")
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", default="tests/fixtures/gguf", type=Path)
    ap.add_argument("--check-ours", type=Path, metavar="FILE")
    ap.add_argument("--json", type=Path, metavar="OUT", help="with --check-ours: write the package's reading here")
    args = ap.parse_args()
    if args.check_ours:
        doc = check_ours(args.check_ours)
        if args.json:
            dump(doc, args.json)
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "all_types.gguf"
    write_all_types(path)
    doc, fnv = reader_json(path)
    dump(doc, args.out_dir / "all_types.expected.json")
    dump(fnv, args.out_dir / "all_types.tensor_fnv.json")
    print(f"wrote {path} ({path.stat().st_size} bytes), {len(doc['metadata'])} keys, {len(doc['tensors'])} tensors")


if __name__ == "__main__":
    main()
