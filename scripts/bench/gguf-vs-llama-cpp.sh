#!/usr/bin/env bash
# Prover decoding of a GGUF checkpoint against llama.cpp's llama-bench on the SAME file, side by side.
#   scripts/bench/gguf-vs-llama-cpp.sh [SHAPES] [THREADS] [TYPES] [RUNS]
#   defaults: "110m" "1 2" "Q8_0 Q4_0" 3
# SHAPES: 15m | 42m | 110m (llama2.c's stories shapes: Llama, random weights, made by
#   ../shared/bench/decode-reference/reference.sh as the Hugging Face folder $CACHE/hf-SHAPE), or
#   qwen2.5-0.5b (random weights, Qwen2.5-0.5B's real shapes: hidden 896, 24 layers, 14 heads / 2 kv
#   heads, intermediate 4864, vocab 151936, tied embeddings, q/k/v biases, rope theta 1e6; written
#   straight to GGUF from numpy; config and tokenizer files come from tests/fixtures/transformers/qwen2,
#   whose tokenizer has only 512 tokens: ids stay below the vocab, which is all a benchmark needs).
# TYPES: llama-quantize types (Q8_0, Q4_0, Q4_K_M, Q6_K, ...); Q4_K_M / Q6_K need widths that are
#   multiples of 256 (110m's 768 and 2048 are; qwen2.5-0.5b's 896 is not, llama-quantize falls back).
# Each shape is converted to an F32 GGUF with scripts/reference/hf_to_gguf.py (the logic of llama.cpp's
# convert_hf_to_gguf.py, as for the test fixtures) and quantized with llama-quantize into
# $WORK/SHAPE-TYPE/model.gguf next to config.json and the tokenizer files (WORK defaults to
# /tmp/gguf-bench; delete it to rebuild). For each thread count it alternates RUNS times:
#   llama-bench -m model.gguf -p 0 -n 256 -t T -r 1      (text generation of 256 tokens: tokens/s)
#   bench-prover --model $WORK/SHAPE-TYPE --tokens 256 --batches 1,8 --sequences 1 --threads T --no-job
# and prints the medians: llama.cpp's tg256 tokens/s, our single stream (decoding steps only, the
# first token excluded, like llama-bench's tg figure which has no prompt) and our batch 8 (all 8
# sequences), and the ratios. RUST=0 runs the llama.cpp half only (no cargo build). Needs
# scripts/reference/gguf.sh first (venv + llama.cpp build; VENV / LLAMA_CPP_DIR override the paths).
# llama-bench runs with its defaults otherwise (f16 KV cache, flash attention auto, CPU weight repack
# on). Run it on an otherwise idle machine.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
reference=${REFERENCE:-$repo/../shared/bench/decode-reference}
cache=${CACHE:-/tmp/decode-reference}
work=${WORK:-/tmp/gguf-bench}
venv=${VENV:-/tmp/legibility-gguf-venv}
llama=${LLAMA_CPP_DIR:-/tmp/legibility-llama-cpp}
shapes=${1:-110m}; threads=${2:-1 2}; types=${3:-Q8_0 Q4_0}; runs=${4:-3}
rust=${RUST:-1}
py=$venv/bin/python
lbench=$llama/build/bin/llama-bench
quantize=$llama/build/bin/llama-quantize
for f in "$py" "$lbench" "$quantize"; do
  [ -x "$f" ] || { echo "$f missing: run scripts/reference/gguf.sh first" >&2; exit 1; }
done
bench=$repo/target/release/bench-prover
if [ "$rust" = 1 ]; then
  (cd "$repo" && cargo build --release --quiet --bin bench-prover)
fi
mkdir -p "$work"
median() { sort -n | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }

# the Hugging Face folder (config + tokenizer files) and the F32 GGUF of a shape
prepare_shape() {
  local shape=$1 f32=$work/$shape-F32.gguf
  case $shape in
    qwen2.5-0.5b)
      hf=$work/hf-$shape
      [ -f "$f32" ] && return
      mkdir -p "$hf"
      "$py" - "$repo" "$hf" "$f32" <<'EOF'
import json, shutil, sys
from pathlib import Path
import numpy as np
repo, hf, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
sys.path.insert(0, str(repo / "scripts" / "reference"))
import hf_to_gguf
src = repo / "tests" / "fixtures" / "transformers" / "qwen2"
cfg = json.loads((src / "config.json").read_text())
L = 24
cfg.update(hidden_size=896, intermediate_size=4864, num_hidden_layers=L, num_attention_heads=14,
           num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
           max_window_layers=L, layer_types=["full_attention"] * L, tie_word_embeddings=True)
(hf / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"]:
    if (src / f).is_file():
        shutil.copyfile(src / f, hf / f)
D, F, H, KV = 896, 4864, 14 * 64, 2 * 64
rng = np.random.default_rng(0)
def rnd(*shape, std=0.02):
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
def tensors():  # the HF names, sorted like the converter's safetensors reader
    t = {"model.embed_tokens.weight": lambda: rnd(151936, D), "model.norm.weight": lambda: np.ones(D, np.float32)}
    for i in range(L):
        p = f"model.layers.{i}."
        t |= {p + "input_layernorm.weight": lambda: np.ones(D, np.float32),
              p + "post_attention_layernorm.weight": lambda: np.ones(D, np.float32),
              p + "self_attn.q_proj.weight": lambda: rnd(H, D), p + "self_attn.q_proj.bias": lambda: rnd(H),
              p + "self_attn.k_proj.weight": lambda: rnd(KV, D), p + "self_attn.k_proj.bias": lambda: rnd(KV),
              p + "self_attn.v_proj.weight": lambda: rnd(KV, D), p + "self_attn.v_proj.bias": lambda: rnd(KV),
              p + "self_attn.o_proj.weight": lambda: rnd(D, H),
              p + "mlp.gate_proj.weight": lambda: rnd(F, D), p + "mlp.up_proj.weight": lambda: rnd(F, D),
              p + "mlp.down_proj.weight": lambda: rnd(D, F)}
    for name in sorted(t):
        yield name, t[name]()
s = hf_to_gguf.convert(hf, out, tensors=tensors())
print(f"wrote {out}: {s['parameters'] / 1e6:.0f}M parameters", file=sys.stderr)
EOF
      ;;
    *)
      CACHE=$cache bash "$reference/reference.sh" "$shape" 1 8 >/dev/null
      hf=$cache/hf-$shape
      [ -f "$f32" ] || "$py" "$repo/scripts/reference/hf_to_gguf.py" "$hf" "$f32" >&2
      ;;
  esac
}

# $work/SHAPE-TYPE/: config.json, tokenizer files and model.gguf (no safetensors)
prepare_type() {
  local shape=$1 type=$2 dir=$work/$1-$2
  if [ ! -f "$dir/model.gguf" ]; then
    mkdir -p "$dir"
    "$quantize" "$work/$shape-F32.gguf" "$dir/model.gguf.part" "$type" "$(nproc)" >"$dir/quantize.log" 2>&1 \
      || { tail -20 "$dir/quantize.log" >&2; exit 1; }
    mv "$dir/model.gguf.part" "$dir/model.gguf"
  fi
  for f in "$hf"/*.json "$hf"/chat_template.jinja; do
    [ -f "$f" ] && cp "$f" "$dir/"
  done
  return 0
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "llama.cpp: $("$lbench" --version 2>&1 | head -1)"
printf '%-13s %-7s %-7s %9s %10s %10s %8s %8s\n' shape type threads llama.cpp batch1 batch8 b1/llama b8/llama
for shape in $shapes; do
  prepare_shape "$shape"
  for type in $types; do
    prepare_type "$shape" "$type"
    dir=$work/$shape-$type
    for t in $threads; do
      : >"$dir/llama.$t"; : >"$dir/b1.$t"; : >"$dir/b8.$t"
      for i in $(seq "$runs"); do
        # one CSV header line and one row; avg_ts is the generation tokens/s of that run
        "$lbench" -m "$dir/model.gguf" -p 0 -n 256 -t "$t" -r 1 -o csv 2>"$dir/llama-bench.err" \
          | awk -F, 'NR == 1 {for (c = 1; c <= NF; c++) {h = $c; gsub(/"/, "", h); col[h] = c}; next}
                     {v = $(col["avg_ts"]); gsub(/"/, "", v); print v}' >>"$dir/llama.$t"
        if [ "$rust" = 1 ]; then
          if out=$(RAYON_NUM_THREADS=$t "$bench" --model "$dir" --tokens 256 --batches 1,8 \
            --sequences 1 --threads "$t" --no-job 2>&1); then
            echo "$out" | grep '^batch   1:' | grep -o '[0-9.]* tokens/s decoding' | awk '{print $1}' >>"$dir/b1.$t"
            echo "$out" | grep '^batch   8:' | grep -o '[0-9.]* tokens/s decoding' | awk '{print $1}' >>"$dir/b8.$t"
          else
            echo "bench-prover failed on $dir (threads $t):" >&2; echo "$out" | tail -5 >&2
          fi
        fi
      done
      l=$(median <"$dir/llama.$t"); b1=$(median <"$dir/b1.$t"); b8=$(median <"$dir/b8.$t")
      awk -v s="$shape" -v ty="$type" -v t="$t" -v l="${l:-}" -v a="${b1:-}" -v b="${b8:-}" '
        function num(v, w, p) { return v == "" ? sprintf("%" w "s", "-") : sprintf("%" w "." p "f", v) }
        BEGIN {
          r1 = (a == "" || l == "") ? "" : a / l; r8 = (b == "" || l == "") ? "" : b / l
          printf "%-13s %-7s %-7s %s %s %s %s %s\n", s, ty, t, num(l, 9, 1), num(a, 10, 1), num(b, 10, 1),
            num(r1, 8, 2), num(r8, 8, 2)
        }'
    done
  done
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg) (runs are only comparable on an idle machine)"
