#!/usr/bin/env python3
"""GGUF fixtures made by llama.cpp: writes tests/fixtures/gguf/{llama,qwen2}/ (see README.md).

Run by hand with the venv that scripts/reference/gguf.sh sets up (never by CI):
    bash scripts/reference/gguf.sh
    /tmp/legibility-gguf-venv/bin/python scripts/reference/make_gguf_fixtures.py

Per case: a tiny random-weight Hugging Face checkpoint (F32 model.safetensors, config/tokenizer
from tests/fixtures/transformers/<case>/ with wider shapes), its F32 GGUF (hf_to_gguf.py, the
converter's logic; kept in /tmp, not committed), the Q8_0 / Q4_0 / Q4_K_M / Q6_K files that
llama-quantize makes from it (gguf/<TYPE>.gguf), and llama.cpp's own logits for every file
(llama-cpp-python, CPU, 1 thread, F32 KV cache) on the 3 prompts of the transformers fixture,
plus a 16-token greedy continuation of prompt 0. A plain numpy forward of the safetensors
checkpoint must agree with llama.cpp on the F32 GGUF (max abs diff <= 1e-3): that checks the
conversion (names, q/k permutation, biases, tied head).
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

LLAMA_CPP_DIR = Path(os.environ.get("LLAMA_CPP_DIR", "/tmp/legibility-llama-cpp"))
os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(LLAMA_CPP_DIR / "build" / "bin"))

import numpy as np  # noqa: E402
import gguf  # noqa: E402
import llama_cpp  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_to_gguf  # noqa: E402
import logging  # noqa: E402

logging.getLogger("gguf").setLevel(logging.ERROR)  # SpecialVocab's notes on the test tokenizers

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "tests" / "fixtures" / "transformers"
OUT = REPO / "tests" / "fixtures" / "gguf"
WORK = Path(os.environ.get("GGUF_FIXTURES_TMP", "/tmp/legibility-gguf-fixtures"))
QUANTIZE = LLAMA_CPP_DIR / "build" / "bin" / "llama-quantize"

SHAPES = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=64, vocab_size=512, max_position_embeddings=128)
QUANTS = ["Q8_0", "Q4_0", "Q4_K_M", "Q6_K"]
TYPES = ["F32"] + QUANTS
GREEDY_TOKENS = 16
MIN_MARGIN = 0.01           # smallest top-1/top-2 gap required on every greedy step of every file
NUMPY_TOL = 1e-3            # numpy f32 forward vs llama.cpp F32 GGUF, max abs logit diff
CASES = {
    "llama": dict(seed=11000, exercises=(
        "Llama architecture from GGUF: token_embd, q/k rows permuted by the converter (rope in "
        "llama.cpp's interleaved-pair layout), GQA 4/2, SwiGLU, rope theta 500000, RMSNorm eps 1e-5, "
        "untied output.weight; k-quants need input dims that are multiples of 256")),
    "qwen2": dict(seed=12000, exercises=(
        "Qwen2 architecture from GGUF: q/k/v biases (F32), no permutation (llama.cpp uses NEOX rope "
        "for qwen2), tied embeddings: no output.weight, llama.cpp uses token_embd for the output, "
        "rope theta 1e6, RMSNorm eps 1e-6, no BOS")),
}
INIT = {
    "matrices": "N(0, 1/fan_in): std 1/16 for fan_in 256 (token embeddings and lm_head included, their fan_in "
                "being the hidden size), 1/sqrt(512) for down_proj",
    "norm_weights": "1 + N(0, 0.1^2)",
    "qkv_biases": "N(0, 0.3^2) (qwen2)",
    "order": "tensors drawn in sorted-name order from numpy.random.default_rng(seed), float64 cast to f32",
    "why": "logits ~N(0, 1) with unsaturated attention; the 32-wide fixtures' N(0, 0.3^2) carried to these "
           "widths (gain 1.7 per matrix, embeddings 0.3) made the net chaotic: ggml's Q8 activation rounding "
           "alone then moved logits by up to 0.65",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- checkpoint

def tensor_shapes(cfg: dict, names: list[str]) -> dict[str, tuple[int, ...]]:
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    table = {"embed_tokens.weight": (v, d), "lm_head.weight": (v, d), "norm.weight": (d,),
             "input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,),
             "q_proj.weight": (q, d), "k_proj.weight": (kv, d), "v_proj.weight": (kv, d), "o_proj.weight": (d, q),
             "q_proj.bias": (q,), "k_proj.bias": (kv,), "v_proj.bias": (kv,),
             "gate_proj.weight": (f, d), "up_proj.weight": (f, d), "down_proj.weight": (d, f)}
    out = {}
    for n in names:
        key = next(k for k in table if n.endswith(k))
        out[n] = table[key]
    return out


def draw(names_shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in sorted(names_shapes):
        shape = names_shapes[name]
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            w = 0.3 * rng.standard_normal(shape)
        else:  # [out, in] matrices; the embedding [vocab, hidden] is drawn like the head
            w = rng.standard_normal(shape) / np.sqrt(shape[1])
        out[name] = w.astype(np.float32)
    return out


def write_checkpoint(case: str, seed: int) -> tuple[Path, dict, dict[str, np.ndarray]]:
    src, dst = SRC / case, OUT / case
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "gguf").mkdir(parents=True)
    cfg = json.loads((src / "config.json").read_text())
    for k, v in SHAPES.items():
        if k == "head_dim" and "head_dim" not in cfg:
            continue
        cfg[k] = v
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"]:
        if (src / f).is_file():
            shutil.copyfile(src / f, dst / f)
    with safe_open(src / "model.safetensors", "np") as f:
        names = list(f.keys())
        metadata = f.metadata()
    weights = draw(tensor_shapes(cfg, names), seed)
    save_file(weights, str(dst / "model.safetensors"), metadata=metadata)
    os.chmod(dst / "model.safetensors", 0o644)  # save_file creates 0600
    return dst, cfg, weights


# ---------------------------------------------------------------- numpy reference

def numpy_forward(cfg: dict, w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """Plain f32 HF semantics: RMSNorm, rotate_half rope, GQA, SwiGLU; Qwen2 biases, tied head."""
    d, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // nh
    eps = np.float32(cfg["rms_norm_eps"])
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta"))
    t = len(ids)

    def rms(x, g):
        return (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)).astype(np.float32) * g

    inv = (1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.int64).astype(np.float32) / hd))).astype(np.float32)
    ang = np.arange(t, dtype=np.float32)[:, None] * inv[None, :]
    emb = np.concatenate([ang, ang], -1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]

    def rope(x):
        rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return x * cos + rot * sin

    def lin(x, p):
        y = x @ w[p + ".weight"].T
        return y + w[p + ".bias"] if p + ".bias" in w else y

    x = w["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((t, t), -np.inf, dtype=np.float32), 1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}"
        h = rms(x, w[f"{p}.input_layernorm.weight"])
        q = rope(lin(h, f"{p}.self_attn.q_proj").reshape(t, nh, hd))
        k = rope(lin(h, f"{p}.self_attn.k_proj").reshape(t, nkv, hd))
        v = lin(h, f"{p}.self_attn.v_proj").reshape(t, nkv, hd)
        k, v = np.repeat(k, nh // nkv, 1), np.repeat(v, nh // nkv, 1)
        s = np.einsum("thd,shd->hts", q, k) / np.float32(np.sqrt(hd)) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", s, v).reshape(t, nh * hd)
        x = x + lin(o, f"{p}.self_attn.o_proj")
        h = rms(x, w[f"{p}.post_attention_layernorm.weight"])
        g = lin(h, f"{p}.mlp.gate_proj")
        x = x + lin((g / (1 + np.exp(-g))) * lin(h, f"{p}.mlp.up_proj"), f"{p}.mlp.down_proj")
    x = rms(x, w["model.norm.weight"])
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return (x @ head.T).astype(np.float32)


def unpermute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """Inverse of hf_to_gguf.permute (the converter's LlamaModel.permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def dequantized_weights(path: Path, cfg: dict, hf_names: list[str], arch) -> dict[str, np.ndarray]:
    """A GGUF file's tensors dequantized by gguf-py, back under their HF names and row order."""
    tmap = gguf.get_tensor_name_map(arch, cfg["num_hidden_layers"])
    to_hf = {tmap.get_name(n, try_suffixes=(".weight", ".bias")): n for n in hf_names}
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        shape = [int(x) for x in reversed(t.shape)]
        a = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        name = to_hf[t.name]
        if arch == gguf.MODEL_ARCH.LLAMA and ".q_proj." in name:
            a = unpermute(a, cfg["num_attention_heads"], cfg["num_attention_heads"])
        if arch == gguf.MODEL_ARCH.LLAMA and ".k_proj." in name:
            a = unpermute(a, cfg["num_attention_heads"], cfg["num_key_value_heads"])
        out[name] = a
    assert set(out) == set(hf_names), set(hf_names) ^ set(out)
    return out


# ---------------------------------------------------------------- llama.cpp

def quantize(f32: Path, out: Path, qtype: str) -> None:
    r = subprocess.run([str(QUANTIZE), str(f32), str(out), qtype, "1"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"llama-quantize {qtype} failed:\n{r.stdout}\n{r.stderr}")


def tensor_types(path: Path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


def llama_cpp_run(path: Path, prompts: list[list[int]]) -> dict:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_batch=128, n_ubatch=128, n_threads=1,
                          n_threads_batch=1, logits_all=True, flash_attn=False, type_k=0, type_v=0,
                          n_gpu_layers=0, seed=0, verbose=False)
    out = {"prompt_logits": [], "tokenize": []}
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        out["prompt_logits"].append(np.array(llm.scores[:len(ids)], dtype=np.float32))
    llm.reset()
    llm.eval(prompts[0])
    greedy, steps = [], []
    for _ in range(GREEDY_TOKENS):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        steps.append(row)
        tok = int(np.argmax(row))
        greedy.append(tok)
        llm.eval([tok])
    out["greedy_ids"], out["greedy_logits"] = greedy, np.stack(steps)
    out["vocab"] = llm.n_vocab()
    llm.close()
    return out


def top2(rows: np.ndarray) -> list[list[float]]:
    s = np.sort(rows, -1)
    return [[float(a), float(b)] for a, b in zip(s[:, -1], s[:, -2])]


def llama_cpp_tokenize(path: Path, text: str, add_bos: bool) -> list[int]:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=32, vocab_only=True, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=add_bos, special=False)
    llm.close()
    return ids


def transformers_check(case: str) -> float:
    """The same conversion applied to the transformers fixture itself (32 wide, F32) must give
    transformers' own logits in llama.cpp: an end-to-end check of hf_to_gguf.py against transformers."""
    src = SRC / case
    ref = json.loads((src / "reference.json").read_text())
    with safe_open(src / "reference.safetensors", "np") as f:
        want = [f.get_tensor(p["logits"]) for p in ref["prompts"]]
    path = WORK / case / "transformers-fixture-F32.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    hf_to_gguf.convert(src, path, pre="default")
    got = llama_cpp_run(path, [p["input_ids"] for p in ref["prompts"]])["prompt_logits"]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(got, want))
    print(f"{case}: transformers fixture through hf_to_gguf + llama.cpp vs transformers logits: max abs diff {diff:.2e}")
    assert diff <= 1e-4, diff
    return diff


# ---------------------------------------------------------------- one case

def build_case(case: str, spec: dict, versions: dict) -> dict:
    ref = json.loads((SRC / case / "reference.json").read_text())
    prompts = [p["input_ids"] for p in ref["prompts"]]
    transformers_diff = transformers_check(case)
    for attempt in range(50):
        seed = spec["seed"] + attempt
        folder, cfg, weights = write_checkpoint(case, seed)
        work = WORK / case
        work.mkdir(parents=True, exist_ok=True)
        f32 = work / "F32.gguf"
        conv = hf_to_gguf.convert(folder, f32, pre="default")
        files = {"F32": f32}
        for q in QUANTS:
            files[q] = folder / "gguf" / f"{q}.gguf"
            quantize(f32, files[q], q)
        runs = {t: llama_cpp_run(p, prompts) for t, p in files.items()}
        margins = {t: float(np.min(np.diff(np.sort(r["greedy_logits"], -1)[:, -2:], axis=-1))) for t, r in runs.items()}
        if min(margins.values()) >= MIN_MARGIN:
            break
        print(f"{case}: seed {seed} greedy margin {min(margins.values()):.2e} < {MIN_MARGIN}, next seed")
    else:
        sys.exit(f"{case}: no seed with greedy margins >= {MIN_MARGIN}")

    # numpy reference vs llama.cpp F32
    np_logits = [numpy_forward(cfg, weights, ids) for ids in prompts]
    np_diffs = [float(np.abs(a - b).max()) for a, b in zip(np_logits, runs["F32"]["prompt_logits"])]
    print(f"{case}: seed {seed}, numpy vs llama.cpp F32 max abs diff per prompt {['%.2e' % d for d in np_diffs]}")
    assert max(np_diffs) <= NUMPY_TOL, f"{case}: numpy forward disagrees with llama.cpp F32 GGUF: {np_diffs}"
    assert runs["F32"]["vocab"] == cfg["vocab_size"]

    tensors, entries = {}, {}
    f32_prompt = runs["F32"]["prompt_logits"]
    for t, r in runs.items():
        types = tensor_types(files[t])
        counts: dict[str, int] = {}
        for ty in types.values():
            counts[ty] = counts.get(ty, 0) + 1
        entry = {
            "file": None if t == "F32" else f"gguf/{t}.gguf",
            "committed": t != "F32",
            "sha256": sha256(files[t]), "bytes": files[t].stat().st_size,
            "tensor_types": types, "tensor_type_counts": dict(sorted(counts.items())),
            "prompts": [],
            "greedy": {"prompt": 0, "max_new_tokens": GREEDY_TOKENS, "ids": r["greedy_ids"],
                       "logits": f"{t}.greedy.logits", "logits_shape": list(r["greedy_logits"].shape),
                       "top2_logits": top2(r["greedy_logits"]), "min_margin": margins[t]},
        }
        for i, (ids, lg) in enumerate(zip(prompts, r["prompt_logits"])):
            name = f"{t}.prompt{i}.logits"
            tensors[name] = np.ascontiguousarray(lg)
            entry["prompts"].append({"input_ids": ids, "logits": name, "logits_shape": list(lg.shape)})
        tensors[f"{t}.greedy.logits"] = np.ascontiguousarray(r["greedy_logits"])
        if t == "F32":
            entry["vs_numpy"] = {"max_abs_diff_per_prompt": np_diffs, "max_abs_diff": max(np_diffs)}
        else:
            deq = dequantized_weights(files[t], cfg, list(weights), hf_to_gguf.ARCHITECTURES[cfg["architectures"][0]][0])
            dd = [np.abs(numpy_forward(cfg, deq, ids) - lg) for ids, lg in zip(prompts, r["prompt_logits"])]
            entry["numpy_dequantized_vs_llama_cpp"] = {
                "what": "numpy f32 forward on this file's weights dequantized by gguf-py vs llama.cpp on this "
                        "file: what is left is ggml quantizing the activations (Q8_0 / Q8_K) in its matmuls",
                "max_abs_diff": float(max(x.max() for x in dd)),
                "mean_abs_diff": float(np.concatenate([x.ravel() for x in dd]).mean()),
            }
            assert entry["numpy_dequantized_vs_llama_cpp"]["max_abs_diff"] < 0.3, (t, entry["numpy_dequantized_vs_llama_cpp"])
            d = [np.abs(a - b) for a, b in zip(r["prompt_logits"], f32_prompt)]
            g = runs["F32"]["greedy_ids"]
            first = next((i for i, (a, b) in enumerate(zip(r["greedy_ids"], g)) if a != b), None)
            entry["vs_F32"] = {
                "prompt_logits_max_abs_diff": float(max(x.max() for x in d)),
                "prompt_logits_mean_abs_diff": float(np.concatenate([x.ravel() for x in d]).mean()),
                "prompt_logits_max_abs_diff_per_prompt": [float(x.max()) for x in d],
                "prompt_argmax_agreement": float(np.mean(np.concatenate(
                    [a.argmax(-1) == b.argmax(-1) for a, b in zip(r["prompt_logits"], f32_prompt)]))),
                "greedy_ids_equal": r["greedy_ids"] == g,
                "greedy_first_divergence": first,
            }
        entries[t] = entry
        print(f"  {t:7s} {entry['bytes']:>9d} B  {entry['tensor_type_counts']}  greedy {r['greedy_ids']}"
              + ("" if t == "F32" else f"  vs F32 max {entry['vs_F32']['prompt_logits_max_abs_diff']:.3g}"
                 f" mean {entry['vs_F32']['prompt_logits_mean_abs_diff']:.3g}"
                 f" greedy equal {entry['vs_F32']['greedy_ids_equal']}"
                 f"; numpy(dequantized) vs llama.cpp max {entry['numpy_dequantized_vs_llama_cpp']['max_abs_diff']:.3g}"
                 f" mean {entry['numpy_dequantized_vs_llama_cpp']['mean_abs_diff']:.3g}"))
    save_file(tensors, str(folder / "reference.safetensors"))
    os.chmod(folder / "reference.safetensors", 0o644)

    bos = cfg.get("bos_token_id")
    tokenize = []
    for p in ref["prompts"]:
        add_bos = bool(p["input_ids"]) and p["input_ids"][0] == bos
        ids = llama_cpp_tokenize(files["F32"], p["text"], add_bos)
        tokenize.append({"text": p["text"], "llama_cpp_ids": ids, "equal": ids == p["input_ids"]})

    reference = {
        "case": case,
        "architecture": cfg["architectures"][0],
        "gguf_architecture": conv["architecture"],
        "exercises": spec["exercises"],
        "versions": versions,
        "seed": seed,
        "init": INIT,
        "shapes": {k: cfg[k] for k in SHAPES if k in cfg} | {"head_dim": SHAPES["head_dim"]},
        "checkpoint": "config.json, model.safetensors (F32, Hugging Face names) and the tokenizer files "
                      f"of this folder; config and tokenizer from tests/fixtures/transformers/{case}/ with "
                      "only the shape fields changed",
        "conversion": {
            "tool": "scripts/reference/hf_to_gguf.py: convert_hf_to_gguf.py's logic for this architecture, "
                    "written with the vendored gguf-py, outtype f32",
            "permuted_qk": conv["permuted_qk"],
            "tokenizer_model": conv["tokenizer_model"],
            "tokenizer_pre": conv["tokenizer_pre"],
            "output_weight": "output.weight" in entries["F32"]["tensor_types"],
            "f32_file": f"{WORK / case / 'F32.gguf'} (not committed; rebuilt by this script)",
        },
        "quantize": f"llama-quantize F32.gguf gguf/<TYPE>.gguf <TYPE> 1 (no imatrix)",
        "llama_cpp": {
            "bindings": "llama_cpp.Llama(model_path, n_ctx=128, n_batch=128, n_ubatch=128, n_threads=1, "
                        "n_threads_batch=1, logits_all=True, flash_attn=False, type_k=F32, type_v=F32, "
                        "n_gpu_layers=0)",
            "prompt_logits": "reset(); eval(input_ids): one batch, logits of every position (row t predicts token t+1)",
            "greedy": f"eval(prompt 0), then {GREEDY_TOKENS} times: argmax (numpy, first index on ties) of the "
                      "last logits row, eval([token]) with the KV cache; logits rows are each step's input",
        },
        "llama_cpp_tokenize": tokenize,
        "tensors_file": "reference.safetensors",
        "prompts": [{"text": p["text"], "input_ids": p["input_ids"]} for p in ref["prompts"]],
        "numpy_reference": {
            "what": "numpy f32 forward of model.safetensors with Hugging Face semantics (rotate_half rope, "
                    "RMSNorm, GQA, SwiGLU, biases, tied head), no llama.cpp code",
            "max_abs_diff_vs_F32_gguf": max(np_diffs), "tolerance": NUMPY_TOL,
        },
        "transformers_check": {
            "what": f"hf_to_gguf.py applied to tests/fixtures/transformers/{case}/ (32 wide, F32), run by "
                    "llama.cpp as above, vs that folder's transformers logits (3 prompts)",
            "max_abs_diff": transformers_diff,
        },
        "greedy_min_margin_required": MIN_MARGIN,
        "files": entries,
    }
    (folder / "reference.json").write_text(json.dumps(reference, indent=2) + "\n")
    return reference


def main() -> None:
    if not QUANTIZE.is_file():
        sys.exit(f"{QUANTIZE} missing: run scripts/reference/gguf.sh first")
    sdist = LLAMA_CPP_DIR / "src" / f"llama_cpp_python-{llama_cpp.__version__}"
    commit = "unknown"
    changelog = sdist / "CHANGELOG.md"
    if changelog.is_file():
        text = changelog.read_text()
        section = text.split(f"## [{llama_cpp.__version__}]", 1)[-1].split("\n## ", 1)[0]
        if "llama.cpp@" in section:
            commit = section.split("llama.cpp@", 1)[1].split()[0]
    versions = {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_commit": commit,
        "llama_cpp_source": f"vendor/llama.cpp of the llama-cpp-python {llama_cpp.__version__} sdist "
                            "(commit as its CHANGELOG names it; the sdist has no git history, so no build number)",
        "gguf_py": md.version("gguf"),
        "numpy": np.__version__,
        "safetensors": md.version("safetensors"),
        "ggml_system_info": llama_cpp.llama_print_system_info().decode().strip(),
    }
    print(json.dumps(versions))
    OUT.mkdir(parents=True, exist_ok=True)
    for case, spec in CASES.items():
        build_case(case, spec, versions)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT}: {sum(1 for p in OUT.rglob('*') if p.is_file())} files, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
