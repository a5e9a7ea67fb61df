#!/usr/bin/env python3
"""Hugging Face Llama / Qwen2 checkpoint folder -> F32 GGUF, the way llama.cpp converts it.

A torch-free mirror of the parts of llama.cpp's convert_hf_to_gguf.py (the copy vendored in the
pinned llama-cpp-python sdist: vendor/llama.cpp/convert_hf_to_gguf.py with conversion/base.py,
conversion/llama.py and conversion/qwen.py) that a plain Llama or Qwen2 checkpoint goes through
with `--outtype f32`, written with the gguf-py package vendored in the same sdist:

  * tensors: read with gguf.utility.SafetensorsLocal (sorted by name, like the converter), names
    mapped with gguf.get_tensor_name_map (token_embd, blk.N.attn_q/k/v/output, ffn_gate/up/down,
    attn_norm, ffn_norm, output_norm, output); LlamaModel (undo_permute = True) permutes the rows
    of q_proj / k_proj (weights and biases) with LlamaModel.permute so that llama.cpp's
    "normal" (interleaved-pair) rope equals HF's rotate_half rope; Qwen2Model is not permuted;
    biases are kept; a tied checkpoint has no lm_head, so no `output.weight` is written (llama.cpp
    then uses token_embd for the output projection); every tensor is F32 (ALL_F32 file type);
  * metadata, in the converter's order: general.architecture, general.type, the gguf.Metadata
    heuristics (general.name from the folder name, size label, ...), TextModel.set_gguf_parameters
    (+ LlamaModel's vocab_size and rope dimension count), general.quantization_version, then the
    vocabulary;
  * vocabulary: a byte-level BPE tokenizer.json goes through TextModel._set_vocab_gpt2 /
    get_vocab_base (tokenizer.ggml.model "gpt2", ids < vocab_size without a token become
    "[PAD<i>]" UNUSED, added special tokens CONTROL) and gguf.SpecialVocab (merges, bos/eos ids,
    add_bos from the post-processor, chat template); a SentencePiece-style BPE tokenizer.json
    (byte_fallback, as in llama2.c's stories models) goes through _set_vocab_llama_hf
    (tokenizer.ggml.model "llama", scores -1000, <0xNN> tokens BYTE).

Differences, all outside what the model computes: hparams come from config.json itself instead of
transformers' AutoConfig (which can add defaults such as head_dim; only then would the optional
llama.attention.key_length/value_length keys be written), and tokenizer.ggml.pre is given by the
caller (the converter refuses a BPE pre-tokenizer whose hash it does not know, which is the case
for the test tokenizers; "default" is accepted by llama.cpp; token ids, not text, are fed anyway).

Usage as a script: hf_to_gguf.py HF_DIR OUT.gguf [--pre default]
As a module: convert(hf_dir, out_path, tensors=None, pre="default") -> summary dict; `tensors` may
be an iterable of (hf_name, float32 array) to write instead of HF_DIR/model.safetensors (only
config.json and tokenizer*.json are then read from HF_DIR).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import gguf

# HF architecture -> (gguf architecture, undo_permute) as registered in conversion/llama.py, qwen.py
ARCHITECTURES = {
    "LlamaForCausalLM": (gguf.MODEL_ARCH.LLAMA, True),
    "Qwen2ForCausalLM": (gguf.MODEL_ARCH.QWEN2, False),
}


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """LlamaModel.permute: reorder each head's rows from HF's half split to interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def find_hparam(hparams: dict, keys: list[str], optional: bool = False):
    for k in keys:
        if k in hparams:
            return hparams[k]
    if optional:
        return None
    raise KeyError(f"none of {keys} in config.json")


def read_safetensors(path: Path) -> Iterable[tuple[str, np.ndarray]]:
    """The converter's reader (gguf.utility.SafetensorsLocal): tensors sorted by name."""
    dtypes = {"F32": np.float32, "F16": np.float16}
    for name, t in gguf.utility.SafetensorsLocal(path).tensors.items():
        if t.dtype not in dtypes:
            raise ValueError(f"{name}: dtype {t.dtype} not handled here")
        data = np.asarray(t.mmap_bytes()).view(dtypes[t.dtype]).reshape(t.shape)
        yield name, data.astype(np.float32)


def set_gguf_parameters(w: gguf.GGUFWriter, hparams: dict, arch: gguf.MODEL_ARCH) -> None:
    """TextModel.set_gguf_parameters (the keys a dense Llama / Qwen2 reaches) + LlamaModel's."""
    w.add_block_count(hparams["num_hidden_layers"])
    if (n_ctx := find_hparam(hparams, ["max_position_embeddings", "n_ctx", "n_positions"], True)) is not None:
        w.add_context_length(n_ctx)
    w.add_embedding_length(hparams["hidden_size"])
    w.add_feed_forward_length(hparams["intermediate_size"])
    w.add_head_count(hparams["num_attention_heads"])
    if (n_head_kv := hparams.get("num_key_value_heads")) is not None:
        w.add_head_count_kv(n_head_kv)
    rope = hparams.get("rope_parameters", hparams.get("rope_scaling")) or {}
    rope = dict(rope.get("full_attention", rope))
    if "rope_theta" not in rope and hparams.get("rope_theta") is not None:
        rope["rope_theta"] = hparams["rope_theta"]
    rope_type = rope.get("rope_type", rope.get("type"))
    if rope_type not in (None, "default"):
        raise ValueError(f"rope type {rope_type!r}: only the default rope is mirrored here")
    if (theta := rope.get("rope_theta")) is not None:
        w.add_rope_freq_base(theta)
    if (eps := find_hparam(hparams, ["rms_norm_eps", "norm_eps"], True)) is not None:
        w.add_layer_norm_rms_eps(eps)
    if (head_dim := hparams.get("head_dim")) is not None:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    if arch == gguf.MODEL_ARCH.LLAMA:
        w.add_vocab_size(hparams["vocab_size"])
        rope_dim = hparams.get("head_dim") or hparams["hidden_size"] // hparams["num_attention_heads"]
        w.add_rope_dimension_count(rope_dim)


def does_token_look_special(token: str) -> bool:
    """TextModel.does_token_look_special."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<｜") and token.endswith("｜>"))
            or (token.startswith("<unused") and token.endswith(">")))


def set_vocab(w: gguf.GGUFWriter, hf_dir: Path, vocab_size: int, pre: str) -> str:
    tok = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = tok["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in tok.get("added_tokens", [])}
    for t in added.values():
        vocab.setdefault(t["content"], t["id"])
    reverse = {i: s for s, i in vocab.items()}
    assert max(reverse) < vocab_size, "token ids must be < vocab_size"
    spm_like = (model["type"] == "BPE" and model.get("byte_fallback", False)
                and (tok.get("decoder") or {}).get("type") == "Sequence")
    if spm_like:
        # _set_vocab_llama_hf / gguf.LlamaHfVocab: base tokens in id order, then added tokens
        # beyond the base vocabulary; every score is -1000; <0xNN> are BYTE, specials CONTROL
        base = len(model["vocab"])
        specials = {t["id"] for t in added.values() if t.get("special")}
        tokens, scores, types = [], [], []
        for i in range(base):
            text = reverse[i]
            tokens.append(text.encode("utf-8"))
            scores.append(-1000.0)
            if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
                types.append(gguf.TokenType.BYTE)
            else:
                types.append(gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL)
        for t in sorted(added.values(), key=lambda t: t["id"]):
            if t["id"] >= base:
                tokens.append(t["content"].encode("utf-8"))
                scores.append(-1000.0)
                types.append(gguf.TokenType.CONTROL if t.get("special") else gguf.TokenType.USER_DEFINED)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        gguf.SpecialVocab(hf_dir, n_vocab=len(tokens)).add_to_gguf(w, quiet=True)
        return "llama"
    # _set_vocab_gpt2 / get_vocab_base (byte-level BPE): the token strings stay byte-level encoded
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        text = reverse[i]
        if text in added:
            types.append(gguf.TokenType.CONTROL if added[text].get("special") or does_token_look_special(text)
                         else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(text)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(hf_dir, load_merges=True).add_to_gguf(w, quiet=True)
    return "gpt2"


def convert(hf_dir: Path | str, out: Path | str, tensors: Iterable[tuple[str, np.ndarray]] | None = None,
            pre: str = "default") -> dict:
    hf_dir, out = Path(hf_dir), Path(out)
    hparams = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    hf_arch = hparams["architectures"][0]
    if hf_arch not in ARCHITECTURES:
        raise ValueError(f"{hf_arch}: only {sorted(ARCHITECTURES)} are mirrored here")
    arch, undo_permute = ARCHITECTURES[hf_arch]
    n_block = hparams["num_hidden_layers"]
    n_head = hparams["num_attention_heads"]
    n_head_kv = hparams.get("num_key_value_heads")
    tensor_map = gguf.get_tensor_name_map(arch, n_block)
    w = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[arch], endianess=gguf.GGUFEndian.LITTLE)

    # ModelBase.prepare_tensors (+ LlamaModel.modify_tensors), outtype f32
    if tensors is None:
        tensors = read_safetensors(hf_dir / "model.safetensors")
    written = {}
    for name, data in tensors:
        if name.endswith((".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")):
            continue
        data = np.asarray(data, dtype=np.float32)
        if undo_permute:
            if name.endswith(("q_proj.weight", "q_proj.bias")):
                data = permute(data, n_head, n_head)
            if name.endswith(("k_proj.weight", "k_proj.bias")):
                data = permute(data, n_head, n_head_kv)
        new_name = tensor_map.get_name(key=name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ValueError(f"Can not map tensor {name!r}")
        data = np.ascontiguousarray(data)
        w.add_tensor(new_name, data, raw_dtype=gguf.GGMLQuantizationType.F32)
        written[new_name] = list(reversed(data.shape))  # ggml order (ne0 first)

    # ModelBase.prepare_metadata + TextModel.prepare_metadata
    total, shared, expert, expert_count = w.get_total_parameter_count()
    meta = gguf.Metadata.load(None, hf_dir, None, total)
    if meta.name is None:
        meta.name = hf_dir.name
    if meta.size_label is None and total > 0:
        meta.size_label = gguf.size_label(total, shared, expert, expert_count)
    w.add_type(gguf.GGUFType.MODEL)
    meta.set_gguf_meta_model(w)
    set_gguf_parameters(w, hparams, arch)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokenizer_model = set_vocab(w, hf_dir, hparams["vocab_size"], pre)

    out.parent.mkdir(parents=True, exist_ok=True)
    w.write_header_to_file(path=out)
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    return {"architecture": gguf.MODEL_ARCH_NAMES[arch], "permuted_qk": undo_permute,
            "tokenizer_model": tokenizer_model, "tokenizer_pre": pre if tokenizer_model == "gpt2" else "default",
            "parameters": int(total), "tensors": written}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hf_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--pre", default="default", help="tokenizer.ggml.pre for a byte-level BPE vocabulary")
    args = ap.parse_args()
    s = convert(args.hf_dir, args.out, pre=args.pre)
    print(f"wrote {args.out}: {s['architecture']}, {s['parameters']} parameters, {len(s['tensors'])} tensors, "
          f"tokenizer {s['tokenizer_model']}")


if __name__ == "__main__":
    main()
