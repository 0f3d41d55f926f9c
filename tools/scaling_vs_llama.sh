#!/usr/bin/env bash
# Thread scaling, smoe against llama.cpp built natively on this machine, on 2-layer Mixtral-width
# Q4_0 and Q8_0 models written by `smoe synth`. For a machine with more cores than the dev box
# (e.g. the lent 16-core one: carry a release smoe and a source tarball of llama.cpp).
#
#   SMOE=path/to/smoe LLAMA_SRC=llama-src.tar.xz OUT=results/ THREADS=1,4,16 tools/scaling_vs_llama.sh
#
# llama.cpp is built Release with GGML_NATIVE=ON and AMX turned off (-mno-amx-*): on CPUs with
# AMX that build crashes otherwise (see issue 5). Results: $OUT/smoe.txt and $OUT/llama.txt.
set -euo pipefail
SMOE=${SMOE:-target/release/smoe}
OUT=${OUT:-scaling}
THREADS=${THREADS:-1,4,16}
WORK=${WORK:-/tmp/scaling}
mkdir -p "$OUT" "$WORK/ll"
if [ -f "${LLAMA_SRC:?a llama.cpp source tarball or directory}" ]; then
  tar -xJf "$LLAMA_SRC" -C "$WORK/ll"
  src="$WORK/ll"
else
  src="$LLAMA_SRC"
fi
flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S "$src" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_APP=OFF -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" > "$OUT/cmake.log" 2>&1
cmake --build "$WORK/build" -j "$(nproc)" --target llama-bench > "$OUT/build.log" 2>&1
lscpu | grep -E "Model name|Flags" > "$OUT/cpu.txt"
for ty in q4_0 q8_0; do
  m="$WORK/mixtral-2l-$ty.gguf"
  [ -f "$m" ] || "$SMOE" synth "$m" --layers 2 --type "$ty" > /dev/null
  "$SMOE" bench -m "$m" -p 256 -n 32 -t "$THREADS" -r 2 2>&1 | grep -E "pp|tg" | tee -a "$OUT/smoe.txt"
  "$WORK/build/bin/llama-bench" -m "$m" -p 256 -n 32 -t "$THREADS" -r 2 2>&1 | grep -E "pp|tg" \
    | tee -a "$OUT/llama.txt"
done
