#!/usr/bin/env bash
# Mixtral larger than RAM: decode speed of smoe and llama.cpp under a memory cgroup limit set to a
# fraction of the model file, with the page cache dropped before each run (needs root).
#
# Usage: tools/paging_bench.sh MODEL.gguf [LLAMA_BENCH]
#   env: PCTS="100 50 35" (limits as % of the file size), SMOE=target/release/smoe, N=16, THREADS=2
# Make a model several times larger than the limit first, e.g.:
#   target/release/smoe synth /work/bench/mixtral-8l-q4_0.gguf --layers 8 --type q4_0
set -euo pipefail
MODEL=$1
LLAMA_BENCH=${2:-/work/llama/llama.cpp/build/bin/llama-bench}
PCTS=${PCTS:-"100 50 35"}
SMOE=${SMOE:-target/release/smoe}
N=${N:-16}
THREADS=${THREADS:-2}
size=$(stat -c %s "$MODEL")

if [ -d /sys/fs/cgroup/memory ]; then            # cgroup v1
  CG=/sys/fs/cgroup/memory/smoe-paging-bench
  mkdir -p "$CG"
  set_limit() { echo "$1" > "$CG/memory.limit_in_bytes"; }
else                                              # cgroup v2
  CG=/sys/fs/cgroup/smoe-paging-bench
  mkdir -p "$CG"
  set_limit() { echo "$1" > "$CG/memory.max"; }
fi
in_cgroup() { bash -c "echo \$\$ > $CG/cgroup.procs && exec \"\$@\"" _ "$@"; }
fresh() { sync; echo 3 > /proc/sys/vm/drop_caches; }

printf "model %s: %.2f GB, tg%s, %s threads\n" "$MODEL" "$(echo "$size/1000000000" | bc -l)" "$N" "$THREADS"
# llama.cpp repacks Q4_0 weights into anonymous memory on x86 by default (--repack 1), which cannot
# be paged out: it is measured both ways.
printf "| limit | smoe tok/s | smoe disk MB/token | smoe expert hits | busiest expert | llama.cpp tok/s | llama.cpp --repack 0 tok/s | ratio to the better llama.cpp |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
for pct in $PCTS; do
  set_limit $((size * pct / 100))
  fresh
  sj=$(in_cgroup "$SMOE" bench -m "$MODEL" -p 0 -n "$N" -r 1 -t "$THREADS" --json 2>/dev/null || echo '{}')
  field() { echo "$sj" | python3 -c "import json,sys; r=json.load(sys.stdin)['results'][0]; v=r.get('$1'); print(0 if v is None else v)" 2>/dev/null || echo 0; }
  s=$(field tps_mean)
  disk=$(field disk_bytes_per_token)
  hits=$(field expert_hit_rate)
  busiest=$(field busiest_expert_share)
  llama() {
    fresh
    in_cgroup "$LLAMA_BENCH" -m "$MODEL" -p 0 -n "$N" -r 1 -t "$THREADS" -o json "$@" 2>/dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])' 2>/dev/null || echo 0
  }
  l1=$(llama)
  l0=$(llama --repack 0)
  best=$(echo "if ($l1 > $l0) $l1 else $l0" | bc -l)
  show() { if [ "$(echo "$1 == 0" | bc)" = 1 ]; then echo "killed (out of memory)"; else printf "%.2f" "$1"; fi; }
  printf "| %s%% | %.2f | %.1f | %.1f%% | %.1f%% | %s | %s | %s |\n" "$pct" "$s" "$(echo "$disk/1000000" | bc -l)" \
    "$(echo "$hits*100" | bc -l)" "$(echo "$busiest*100" | bc -l)" "$(show "$l1")" "$(show "$l0")" \
    "$(if [ "$(echo "$best == 0" | bc)" = 1 ]; then echo "-"; else printf "%.2fx" "$(echo "$s/$best" | bc -l)"; fi)"
done
set_limit -1 2>/dev/null || set_limit max
