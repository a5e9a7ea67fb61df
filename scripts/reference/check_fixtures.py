#!/usr/bin/env python3
"""Independent check of tests/fixtures/transformers/ without transformers' modeling code.

A from-scratch float32 re-implementation (plain torch tensor ops) of the decoder families, written
from the maths documented in scripts/reference/README.md: it reads each case's config.json (either
dialect), model.safetensors and reference.json, recomputes the prompt logits, runs its own greedy
decode with a KV cache (with transformers' dynamic-rope and Phi-3 longrope cache behaviour) and
the decoder classifiers' scores, and compares with the references. It is what the Rust code has to
do, in ~250 lines; if it passes, the README's description of the maths is complete.

    /work/ref-venv/bin/python scripts/reference/check_fixtures.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "transformers"
TOL = 1e-4


def rope_params(cfg: dict) -> dict:
    """Both dialects: transformers 5 `rope_parameters`, 4.x `rope_theta` + `rope_scaling`."""
    if "rope_parameters" in cfg:
        rp = dict(cfg["rope_parameters"])
    else:
        rp = dict(cfg.get("rope_scaling") or {})
        rp["rope_theta"] = cfg.get("rope_theta", 10000.0)
    rp["rope_type"] = rp.get("rope_type", rp.get("type", "default"))
    if cfg.get("model_type") == "phi3" and "original_max_position_embeddings" in cfg:
        rp["original_max_position_embeddings"] = cfg["original_max_position_embeddings"]  # top level wins
    return rp


class Rope:
    def __init__(self, cfg: dict, head_dim: int):
        self.rp = rope_params(cfg)
        self.kind = self.rp["rope_type"]
        self.d = head_dim
        self.max_pos = cfg["max_position_embeddings"]
        self.theta = self.rp["rope_theta"]

    def base_inv(self, theta: float) -> torch.Tensor:
        return 1.0 / (theta ** (torch.arange(0, self.d, 2, dtype=torch.int64).float() / self.d))

    def inv_freq(self, seq_len: int) -> tuple[torch.Tensor, float]:
        """Frequencies and cos/sin scale for a forward whose largest position is seq_len - 1."""
        rp, kind = self.rp, self.kind
        inv = self.base_inv(self.theta)
        if kind == "default":
            return inv, 1.0
        if kind == "linear":
            return inv / rp["factor"], 1.0
        if kind == "dynamic":
            if seq_len <= self.max_pos:
                return inv, 1.0
            f = rp["factor"]
            theta = self.theta * ((f * seq_len / self.max_pos) - (f - 1)) ** (self.d / (self.d - 2))
            return self.base_inv(theta), 1.0
        if kind == "llama3":
            f, lo, hi, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
            wavelen = 2 * math.pi / inv
            out = torch.where(wavelen > old / lo, inv / f, inv)
            smooth = (old / wavelen - lo) / (hi - lo)
            smoothed = (1 - smooth) * out / f + smooth * out
            medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
            return torch.where(medium, smoothed, out), 1.0
        if kind == "yarn":
            f = rp.get("factor") or self.max_pos / rp["original_max_position_embeddings"]
            orig = rp["original_max_position_embeddings"]
            att = rp.get("attention_factor") or (0.1 * math.log(f) + 1.0 if f > 1 else 1.0)
            bf, bs = rp.get("beta_fast") or 32, rp.get("beta_slow") or 1

            def corr(rot):
                return (self.d * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(self.theta))

            low, high = math.floor(corr(bf)), math.ceil(corr(bs))
            low, high = max(low, 0), min(high, self.d - 1)
            if low == high:
                high += 0.001
            ramp = ((torch.arange(self.d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
            extra = 1 - ramp
            pos = self.theta ** (torch.arange(0, self.d, 2).float() / self.d)
            return (1 / (f * pos)) * (1 - extra) + (1 / pos) * extra, att
        if kind == "longrope":
            orig = rp["original_max_position_embeddings"]
            f = rp.get("factor") or self.max_pos / orig
            att = rp.get("attention_factor") or (1.0 if f <= 1 else math.sqrt(1 + math.log(f) / math.log(orig)))
            ext = torch.tensor(rp["long_factor"] if seq_len > orig else rp["short_factor"], dtype=torch.float32)
            shape = torch.arange(0, self.d, 2, dtype=torch.int64).float() / self.d
            return 1.0 / (ext * self.theta**shape), att
        raise SystemExit(f"unknown rope type {kind}")

    def cos_sin(self, positions: torch.Tensor, seq_len: int):
        inv, att = self.inv_freq(seq_len)
        fr = positions[:, None].float() * inv[None, :]
        emb = torch.cat([fr, fr], dim=-1)
        return emb.cos() * att, emb.sin() * att


def rotate(x, cos, sin):
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return x * cos + rot * sin


class Decoder:
    def __init__(self, folder: Path):
        self.cfg = cfg = json.loads((folder / "config.json").read_text())
        self.w = load_file(str(folder / "model.safetensors"))
        self.mt = cfg["model_type"]
        self.h = cfg["hidden_size"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads") or self.nh
        self.hd = cfg.get("head_dim") or self.h // self.nh
        self.eps = cfg["rms_norm_eps"]
        self.n = cfg["num_hidden_layers"]
        self.rope = Rope(cfg, self.hd)
        gemma = self.mt == "gemma2"
        self.scale = (cfg["query_pre_attn_scalar"] if gemma else self.hd) ** -0.5
        sw = cfg.get("sliding_window")
        if self.mt in ("qwen2", "qwen3") and not cfg.get("use_sliding_window"):
            sw = None
        if gemma:
            self.windows = [sw if i % 2 == 0 else None for i in range(self.n)]  # layer_types default
            if "layer_types" in cfg:
                self.windows = [sw if t == "sliding_attention" else None for t in cfg["layer_types"]]
        else:
            self.windows = [sw] * self.n
        self.cache = None

    def norm(self, x, name):
        w = self.w[name]
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return y * (1.0 + w) if self.mt == "gemma2" else y * w

    def lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y + b if b is not None else y

    def forward(self, ids: list[int], start: int) -> torch.Tensor:
        """Hidden states after the final norm for `ids` at positions start.., using/extending the cache."""
        p = "model."
        x = self.w[p + "embed_tokens.weight"][torch.tensor(ids)]
        if self.mt == "gemma2":
            x = x * torch.tensor(self.h**0.5, dtype=torch.float32)
        pos = torch.arange(start, start + len(ids))
        cos, sin = self.rope.cos_sin(pos, start + len(ids))
        if self.cache is None:
            self.cache = [None] * self.n
        for i in range(self.n):
            lp = f"{p}layers.{i}."
            hN = self.norm(x, lp + "input_layernorm.weight")
            T = len(ids)
            if self.mt == "phi3":
                qkv = self.lin(hN, lp + "self_attn.qkv_proj")
                q, k, v = qkv.split([self.nh * self.hd, self.nkv * self.hd, self.nkv * self.hd], dim=-1)
            else:
                q = self.lin(hN, lp + "self_attn.q_proj")
                k = self.lin(hN, lp + "self_attn.k_proj")
                v = self.lin(hN, lp + "self_attn.v_proj")
            q = q.view(T, self.nh, self.hd).transpose(0, 1)
            k = k.view(T, self.nkv, self.hd).transpose(0, 1)
            v = v.view(T, self.nkv, self.hd).transpose(0, 1)
            if self.mt == "qwen3":
                q = self.norm(q, lp + "self_attn.q_norm.weight")
                k = self.norm(k, lp + "self_attn.k_norm.weight")
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            if self.cache[i] is not None:
                k = torch.cat([self.cache[i][0], k], dim=1)
                v = torch.cat([self.cache[i][1], v], dim=1)
            self.cache[i] = (k, v)
            rep = self.nh // self.nkv
            k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
            s = (q @ k.transpose(1, 2)) * self.scale
            if self.mt == "gemma2":
                cap = self.cfg["attn_logit_softcapping"]
                s = torch.tanh(s / cap) * cap
            kpos = torch.arange(k.shape[1])
            qpos = pos
            allowed = kpos[None, :] <= qpos[:, None]
            if self.windows[i] is not None:
                allowed &= kpos[None, :] > qpos[:, None] - self.windows[i]
            s = s.masked_fill(~allowed, float("-inf"))
            a = torch.softmax(s, dim=-1) @ v
            a = self.lin(a.transpose(0, 1).reshape(T, self.nh * self.hd), lp + "self_attn.o_proj")
            if self.mt == "gemma2":
                x = x + self.norm(a, lp + "post_attention_layernorm.weight")
                m = self.norm(x, lp + "pre_feedforward_layernorm.weight")
                m = self.mlp(m, lp)
                x = x + self.norm(m, lp + "post_feedforward_layernorm.weight")
            else:
                x = x + a
                x = x + self.mlp(self.norm(x, lp + "post_attention_layernorm.weight"), lp)
        return self.norm(x, p + "norm.weight")

    def mlp(self, x, lp):
        if self.mt == "phi3":
            gate, up = self.lin(x, lp + "mlp.gate_up_proj").chunk(2, dim=-1)
        else:
            gate, up = self.lin(x, lp + "mlp.gate_proj"), self.lin(x, lp + "mlp.up_proj")
        act = torch.nn.functional.gelu(gate, approximate="tanh") if self.mt == "gemma2" else torch.nn.functional.silu(gate)
        return self.lin(act * up, lp + "mlp.down_proj")

    def logits(self, hidden):
        w = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])  # tied when absent
        out = hidden @ w.T
        cap = self.cfg.get("final_logit_softcapping") if self.mt == "gemma2" else None
        return torch.tanh(out / cap) * cap if cap else out

    def greedy(self, ids: list[int], steps: int):
        """Greedy decode with a KV cache, as transformers' generate runs it."""
        self.cache = None
        seq, out, step_logits = list(ids), [], []
        hidden = self.forward(seq, 0)
        orig = self.rope.rp.get("original_max_position_embeddings")
        for _ in range(steps):
            lg = self.logits(hidden[-1])
            step_logits.append(lg)
            nxt = int(lg.argmax())
            out.append(nxt)
            seq.append(nxt)
            if self.mt == "phi3" and self.rope.kind == "longrope" and len(seq) >= orig + 1 and len(seq) - 1 <= orig:
                self.cache = None  # Phi-3 drops its cache the first time the sequence passes orig
                hidden = self.forward(seq, 0)
            else:
                hidden = self.forward([nxt], len(seq) - 1)
        return out, torch.stack(step_logits)


def check(folder: Path) -> tuple[str, float]:
    ref = json.loads((folder / "reference.json").read_text())
    tensors = load_file(str((folder / ref["tensors_file"]).resolve())) if ref.get("tensors_file") else {}
    m = Decoder(folder)
    worst = 0.0
    if ref["kind"] == "causal_lm":
        for p in ref["prompts"]:
            m.cache = None
            got = m.logits(m.forward(p["input_ids"], 0))
            worst = max(worst, float((got - tensors[p["logits"]]).abs().max()))
            ids, steps = m.greedy(p["input_ids"], len(p["greedy_ids"]))
            assert ids == p["greedy_ids"], (folder.name, "greedy ids differ")
            top2 = torch.tensor(p["greedy_top2_logits"])
            worst = max(worst, float((steps.topk(2, dim=-1).values - top2).abs().max()))
            if "greedy_logits" in p:
                worst = max(worst, float((steps - tensors[p["greedy_logits"]]).abs().max()))
    else:
        c = ref["classifier"]
        for u in c["unpadded"]:
            m.cache = None
            h = m.forward(u["input_ids"], 0)
            score = h[u["pooled_index"]] @ m.w["score.weight"].T
            worst = max(worst, abs(float(score[0]) - u["score"][0]))
    assert worst <= TOL, (folder.name, worst)
    return folder.name, worst


def main() -> int:
    decoders = ("llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2")
    rows = []
    for folder in sorted(FIXTURES.iterdir()):
        cfg = json.loads((folder / "config.json").read_text())
        if cfg["model_type"] in decoders:
            rows.append(check(folder))
    for name, worst in rows:
        print(f"{name:24s} max abs diff {worst:.2e}")
    print(f"{len(rows)} cases agree with the references within {TOL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
