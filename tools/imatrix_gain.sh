#!/usr/bin/env bash
# What an importance matrix buys: perplexity of a checkpoint quantized with and without one.
#
# Usage: tools/imatrix_gain.sh HF_DIR CALIB.txt EVAL.txt [CTX] [TYPES...]
#   HF_DIR     a Hugging Face Mixtral checkpoint (e.g. the trained tiny Shakespeare model)
#   CALIB.txt  text the imatrix is collected on; EVAL.txt  text perplexity is measured on
#              (keep them apart: the imatrix must not have seen the evaluation text)
#   CTX        tokens per chunk for both (default 256)
#   TYPES      --type values to compare (default: q4_k_m q4_k_s q5_k_m q6_k q4_0)
# Env: SMOE (default target/release/smoe), OUT (work folder, default a temp dir), THREADS (2),
#      LLAMA_PERPLEXITY (optional: also measure each file with llama.cpp's llama-perplexity).
# Prints one line per type: perplexity of f32, without imatrix, with imatrix, and the change.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,13p' "$0"; exit 1; }
HF=$1 CALIB=$2 EVAL=$3 CTX=${4:-256}
shift $(( $# >= 4 ? 4 : 3 ))
TYPES=${*:-q4_k_m q4_k_s q5_k_m q6_k q4_0}
SMOE=${SMOE:-target/release/smoe}
OUT=${OUT:-$(mktemp -d)}
T=${THREADS:-2}
mkdir -p "$OUT"

ppl() { # FILE -> perplexity on EVAL
  "$SMOE" perplexity -m "$1" -f "$EVAL" --ctx "$CTX" -t "$T" --json 2>/dev/null |
    python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["perplexity"])'
}
lppl() { # FILE -> llama-perplexity's final estimate (LLAMA_PERPLEXITY may carry a prefix: env ...)
  # shellcheck disable=SC2086
  $LLAMA_PERPLEXITY -m "$1" -f "$EVAL" -c "$CTX" -t "$T" 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}

"$SMOE" quantize "$HF" "$OUT/f32.gguf" --type f32 >/dev/null 2>&1
"$SMOE" imatrix -m "$OUT/f32.gguf" -f "$CALIB" -o "$OUT/imatrix.gguf" --ctx "$CTX" -t "$T" 2>&1 |
  grep -v '^\[' >&2 || true
base=$(ppl "$OUT/f32.gguf")
echo "f32: $base"
for ty in $TYPES; do
  "$SMOE" quantize "$HF" "$OUT/$ty.gguf" --type "$ty" >/dev/null 2>&1
  "$SMOE" quantize "$HF" "$OUT/$ty-imatrix.gguf" --type "$ty" --imatrix "$OUT/imatrix.gguf" >/dev/null 2>&1
  a=$(ppl "$OUT/$ty.gguf") b=$(ppl "$OUT/$ty-imatrix.gguf")
  line=$(python3 -c "f,a,b=$base,$a,$b; print(f'$ty: {a:.4f} -> {b:.4f} with imatrix ({100*(b-a)/a:+.2f}%); over f32: {100*(a-f)/f:+.2f}% -> {100*(b-f)/f:+.2f}%')")
  if [ -n "${LLAMA_PERPLEXITY:-}" ]; then
    line="$line; llama-perplexity $(lppl "$OUT/$ty.gguf") -> $(lppl "$OUT/$ty-imatrix.gguf")"
  fi
  echo "$line"
done
