#!/usr/bin/env python3
"""smoe against llama.cpp on the same GGUF file: alternating runs, medians, ratios.

The machine is shared and noisy, so each (model, threads, test) pair is run ROUNDS times with the
two runtimes alternating (smoe, llama, smoe, llama, ...), and the medians are compared. Each run
is one `smoe bench` / `llama-bench` process with -r REPS repetitions (mean of those).

Usage:
  tools/bench_vs_llama.py MODEL.gguf [MODEL2.gguf ...] [--threads 1,2] [--tests pp64,pp256,tg32]
      [--rounds 3] [--reps 2] [--smoe target/release/smoe]
      [--llama-bench /work/llama/llama.cpp/build/bin/llama-bench] [--llama-args "--repack 0"]
Prints a markdown table: model, threads, test, smoe median, llama.cpp median, ratio, and for tg
the share of the roofline (weight bytes per token x tok/s / measured read bandwidth) when
`--bandwidth` is given (it runs `smoe bench --bandwidth` once per thread count).
No third-party Python packages needed.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys


def smoe_run(smoe, model, threads, test, reps):
    kind, n = test[:2], int(test[2:])
    p, g = (str(n), "0") if kind == "pp" else ("0", str(n))
    # `-p 0` means no prompt test in smoe bench; pass only what is wanted.
    args = [smoe, "bench", "-m", model, "-t", str(threads), "-r", str(reps), "--json"]
    args += ["-p", p, "-n", g] if kind == "pp" else ["-p", "0", "-n", g]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    res = json.loads(out)
    for r in res["results"]:
        if r["test"] == test:
            return r["tps_mean"], res.get("decode_bytes_per_token")
    raise RuntimeError(f"smoe bench gave no {test}: {out}")


def llama_run(llama_bench, extra, model, threads, test, reps):
    kind, n = test[:2], int(test[2:])
    p, g = (str(n), "0") if kind == "pp" else ("0", str(n))
    args = [llama_bench, "-m", model, "-t", str(threads), "-r", str(reps), "-p", p, "-n", g,
            "-o", "json"] + extra
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    for r in json.loads(out):
        if (kind == "pp" and r["n_prompt"] == n and r["n_gen"] == 0) or \
           (kind == "tg" and r["n_gen"] == n and r["n_prompt"] == 0):
            return r["avg_ts"]
    raise RuntimeError(f"llama-bench gave no {test}: {out}")


def bandwidth(smoe, model, threads):
    args = [smoe, "bench", "-m", model, "-t", str(threads), "-p", "0", "-n", "1", "-r", "1",
            "--bandwidth", "--json"]
    res = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    for r in res.get("roofline", []):
        if r.get("threads") == threads:
            return r.get("read_gbps")
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tests", default="pp64,pp256,tg32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--smoe", default="target/release/smoe")
    ap.add_argument("--llama-bench", default="/work/llama/llama.cpp/build/bin/llama-bench")
    ap.add_argument("--llama-args", default="", help='extra llama-bench flags, e.g. "--repack 0"')
    ap.add_argument("--bandwidth", action="store_true", help="add the tg roofline share")
    a = ap.parse_args()
    extra = shlex.split(a.llama_args)
    threads = [int(t) for t in a.threads.split(",")]
    tests = a.tests.split(",")
    print(f"llama-bench flags: {' '.join(extra) or '(defaults)'}; {a.rounds} alternating rounds, "
          f"-r {a.reps} each; medians", file=sys.stderr)
    rows = []
    for model in a.models:
        gbps = {t: bandwidth(a.smoe, model, t) for t in threads} if a.bandwidth else {}
        for t in threads:
            for test in tests:
                s, l, bpt = [], [], None
                for _ in range(a.rounds):
                    v, bpt = smoe_run(a.smoe, model, t, test, a.reps)
                    s.append(v)
                    l.append(llama_run(a.llama_bench, extra, model, t, test, a.reps))
                sm, lm = statistics.median(s), statistics.median(l)
                roof = ""
                if test.startswith("tg") and gbps.get(t) and bpt:
                    roof = f"{100 * sm * bpt / (gbps[t] * 1e9):.0f}% (of {gbps[t]:.1f} GB/s)"
                row = (os.path.basename(model), t, test, sm, lm, sm / lm, roof)
                rows.append(row)
                print(f"{row[0]} t={t} {test}: smoe {s} llama {l}", file=sys.stderr)
    print("| model | threads | test | smoe tok/s | llama.cpp tok/s | ratio | smoe roofline |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m, t, test, sm, lm, r, roof in rows:
        print(f"| {m} | {t} | {test} | {sm:.2f} | {lm:.2f} | {r:.2f}x | {roof or '-'} |")


if __name__ == "__main__":
    main()
