#!/usr/bin/env bash
# Prover decoding against llama2.c's run.c on identical random weights, side by side in one run.
#   scripts/bench/decode-vs-run-c.sh [SHAPES] [THREADS] [RUNS]
#   defaults: "15m 42m 110m" "1 2" 3
# For each shape and thread count it alternates RUNS times: run.c (256 tokens from BOS), then
# bench-prover at batch 1 and batch 8 (256 tokens per sequence after a prompt of ~80 tokens).
# It prints the median tokens/s of run.c, of our single stream (decoding steps only, as run.c's
# figure excludes its first token) and of our batch 8 (all 8 sequences), and the ratios. The
# reference is ../shared/bench/decode-reference (REFERENCE overrides); its files are cached in
# /tmp/decode-reference (CACHE overrides). Run it on an otherwise idle machine.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
reference=${REFERENCE:-$repo/../shared/bench/decode-reference}
cache=${CACHE:-/tmp/decode-reference}
shapes=${1:-15m 42m 110m}; threads=${2:-1 2}; runs=${3:-3}
(cd "$repo" && cargo build --release --quiet --bin bench-prover)
bench=$repo/target/release/bench-prover
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
printf '%-5s %-7s %10s %14s %14s %8s %8s\n' shape threads run.c batch1 batch8 b1/run.c b8/run.c
for shape in $shapes; do
  CACHE=$cache bash "$reference/reference.sh" "$shape" 1 8 >/dev/null
  for t in $threads; do
    : >"$cache/runc" ; : >"$cache/b1" ; : >"$cache/b8"
    for i in $(seq "$runs"); do
      OMP_NUM_THREADS=$t "$cache/runomp" "$cache/$shape.bin" -z "$reference/tokenizer.bin" \
        -t 1.0 -p 1.0 -n 256 -s "$i" 2>&1 >/dev/null | grep -o 'achieved tok/s: [0-9.]*' \
        | awk '{print $3}' >>"$cache/runc"
      out=$(RAYON_NUM_THREADS=$t "$bench" --model "$cache/hf-$shape" --tokens 256 --batches 1,8 \
        --sequences 1 --threads "$t" --no-job)
      echo "$out" | grep '^batch   1:' | grep -o '[0-9.]* tokens/s decoding' | awk '{print $1}' >>"$cache/b1"
      echo "$out" | grep '^batch   8:' | grep -o '[0-9.]* tokens/s decoding' | awk '{print $1}' >>"$cache/b8"
    done
    r=$(median <"$cache/runc"); b1=$(median <"$cache/b1"); b8=$(median <"$cache/b8")
    awk -v s="$shape" -v t="$t" -v r="$r" -v a="$b1" -v b="$b8" \
      'BEGIN {printf "%-5s %-7s %10.1f %14.1f %14.1f %8.2f %8.2f\n", s, t, r, a, b, a / r, b / r}'
  done
done
