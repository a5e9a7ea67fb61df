#!/usr/bin/env bash
# The verifier's training step, candle (bench-verifier --steps-file) beside PyTorch on the CPU,
# on the same model, the same token ids, the same loss and optimiser, in one run.
#   scripts/bench/verifier-vs-torch.sh [STEPS] [THREADS]        defaults: 40 "1 2"
# PyTorch lives in a virtual environment outside the repository (VENV, default
# /tmp/legibility-torch), installed once with the versions scripts/reference pins (CPU wheels).
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
steps=${1:-40}; threads=${2:-1 2}
venv=${VENV:-/tmp/legibility-torch}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --index-url https://download.pytorch.org/whl/cpu torch==2.15.0 \
    || "$venv/bin/pip" install -q torch==2.15.0
  "$venv/bin/pip" install -q transformers==5.25.0 safetensors==0.8.0
fi
(cd "$repo" && cargo build --release --quiet --bin bench-verifier)
file=$(mktemp /tmp/verifier-steps.XXXXXX.json)
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
for t in $threads; do
  (cd "$repo" && RAYON_NUM_THREADS=$t target/release/bench-verifier --steps-file "$file" --steps "$steps" | grep '^candle')
  OMP_NUM_THREADS=$t "$venv/bin/python" "$repo/scripts/bench/verifier_step_torch.py" "$file" --threads "$t"
done
rm -f "$file"
