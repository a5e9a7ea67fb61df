//! The decoder-only transformer every supported causal architecture is an instance of: Llama
//! 1/2/3, Mistral, Qwen2/2.5, Qwen3, Phi-3 and Gemma 2 differ in a handful of choices (biases,
//! per-head norms, fused projections, norm placement, activation, soft-caps, sliding windows,
//! rope scaling), which a [`DecoderSpec`] states; each architecture's own file reads its
//! `config.json` into one.
//!
//! Written here rather than taken from candle-transformers because the prover needs what
//! that code lacks: batched decoding of left-padded prompts of different lengths (one forward
//! pass advances many samples), a KV cache sized to the batch's need, transformers' exact rope
//! behaviour during cached decoding (dynamic NTK, Phi-3's LongRoPE re-prefill), and a
//! differentiable path for training on CPU (candle's fused RMSNorm and RoPE kernels have no
//! backward pass). Tensor names follow the Hugging Face layout.

use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::kv_cache::KvCache;
use candle_nn::{Embedding, Linear, VarBuilder};

use super::gguf::GgufFile;
use super::rope::Rope;

mod slots;
pub use slots::Slots;

/// The activation of the gated MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (Llama, Mistral, Qwen, Phi-3).
    Silu,
    /// GELU with the tanh approximation (Gemma 2's `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    /// Reads a `hidden_act` / `hidden_activation` value, refusing the ones not implemented.
    pub fn from_name(name: &str) -> std::result::Result<Self, String> {
        match name {
            "silu" | "swish" => Ok(Activation::Silu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Activation::GeluTanh),
            other => Err(format!(
                "config.json: the activation {other:?} is not supported (silu, gelu_pytorch_tanh)"
            )),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Silu => candle_nn::ops::silu(x),
            Activation::GeluTanh => x.gelu(),
        }
    }
}

/// Everything that makes one decoder architecture different from another.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderSpec {
    /// `model_type`, for messages and metadata.
    pub model_type: String,
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the gated MLP.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Width of one head (may differ from hidden / heads: Qwen3, Gemma 2).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Longest sequence the model was configured for (prompt + generation).
    pub max_positions: usize,
    /// Rotary embedding, with its scaling.
    pub rope: Rope,
    /// Whether the output projection reuses the token embedding (no `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Bias on the q, k and v projections (Qwen2; Llama's `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama's `attention_bias`).
    pub o_bias: bool,
    /// Bias on the MLP's projections (Llama's `mlp_bias`).
    pub mlp_bias: bool,
    /// RMSNorm over each head of q and k before rope (Qwen3's `q_norm`, `k_norm`).
    pub qk_norm: bool,
    /// q, k, v in one `qkv_proj` and gate, up in one `gate_up_proj` (Phi-3).
    pub fused_projections: bool,
    /// RMSNorm multiplies by `offset + weight` (Gemma: 1.0; others: 0.0).
    pub norm_offset: f64,
    /// Embeddings multiplied by this (Gemma: √hidden).
    pub embedding_scale: Option<f64>,
    /// Norms after attention and after the MLP as well as before (Gemma 2's
    /// `post_attention_layernorm`, `pre_feedforward_layernorm`, `post_feedforward_layernorm`).
    pub sandwich_norms: bool,
    /// The gated MLP's activation.
    pub activation: Activation,
    /// Attention scores are multiplied by this (1/√head_dim, or Gemma 2's
    /// 1/√query_pre_attn_scalar).
    pub attention_scale: f64,
    /// `cap · tanh(score / cap)` on attention scores before the mask (Gemma 2).
    pub attention_softcap: Option<f64>,
    /// `cap · tanh(logit / cap)` on the output logits (Gemma 2).
    pub final_softcap: Option<f64>,
    /// Per layer: the sliding window (a query sees itself and the `w - 1` keys before it), or
    /// `None` for full attention.
    pub windows: Vec<Option<usize>>,
}

impl DecoderSpec {
    /// Why this spec cannot make a model, if it cannot (every message starts with
    /// `config.json`).
    pub fn check(&self) -> std::result::Result<(), String> {
        for (name, value) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.heads),
            ("num_key_value_heads", self.kv_heads),
            ("vocab_size", self.vocab_size),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_positions),
        ] {
            if value == 0 {
                return Err(format!("config.json: {name} must be positive"));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "config.json: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.heads, self.kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err("config.json: the head width must be even for rotary embeddings".into());
        }
        if self.windows.len() != self.num_layers {
            return Err(format!(
                "config.json: {} layer types for {} layers",
                self.windows.len(),
                self.num_layers
            ));
        }
        if self.windows.contains(&Some(0)) {
            return Err("config.json: sliding_window must be positive".into());
        }
        Ok(())
    }

    /// Every tensor a checkpoint of this spec holds, with its shape, in the Hugging Face
    /// naming; `lm_head` says whether the output projection is part of it (a causal LM whose
    /// embeddings are not tied), so a verifier body can leave it out.
    pub fn expected_tensors(&self, lm_head: bool) -> Vec<(String, Vec<usize>)> {
        let (h, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.heads * self.head_dim;
        let kv = self.kv_heads * self.head_dim;
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for i in 0..self.num_layers {
            let p = format!("model.layers.{i}");
            let mut push = |name: String, shape: Vec<usize>| out.push((name, shape));
            push(format!("{p}.input_layernorm.weight"), vec![h]);
            if self.fused_projections {
                push(
                    format!("{p}.self_attn.qkv_proj.weight"),
                    vec![q + 2 * kv, h],
                );
            } else {
                for (name, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                    push(format!("{p}.self_attn.{name}.weight"), vec![rows, h]);
                    if self.qkv_bias {
                        push(format!("{p}.self_attn.{name}.bias"), vec![rows]);
                    }
                }
            }
            push(format!("{p}.self_attn.o_proj.weight"), vec![h, q]);
            if self.o_bias {
                push(format!("{p}.self_attn.o_proj.bias"), vec![h]);
            }
            if self.qk_norm {
                push(format!("{p}.self_attn.q_norm.weight"), vec![self.head_dim]);
                push(format!("{p}.self_attn.k_norm.weight"), vec![self.head_dim]);
            }
            push(format!("{p}.post_attention_layernorm.weight"), vec![h]);
            if self.sandwich_norms {
                push(format!("{p}.pre_feedforward_layernorm.weight"), vec![h]);
                push(format!("{p}.post_feedforward_layernorm.weight"), vec![h]);
            }
            if self.fused_projections {
                push(format!("{p}.mlp.gate_up_proj.weight"), vec![2 * f, h]);
            } else {
                for name in ["gate_proj", "up_proj"] {
                    push(format!("{p}.mlp.{name}.weight"), vec![f, h]);
                    if self.mlp_bias {
                        push(format!("{p}.mlp.{name}.bias"), vec![f]);
                    }
                }
            }
            push(format!("{p}.mlp.down_proj.weight"), vec![h, f]);
            if self.mlp_bias {
                push(format!("{p}.mlp.down_proj.bias"), vec![h]);
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if lm_head && !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }
}

/// Rotary tables, cached for the rope types whose tables do not depend on the forward length.
#[derive(Debug, Clone)]
struct Rotary {
    rope: Rope,
    /// `(positions, head_dim / 2)` for positions `0..`, extended on demand.
    cos: Option<Tensor>,
    sin: Option<Tensor>,
}

impl Rotary {
    fn new(rope: Rope) -> Self {
        Self {
            rope,
            cos: None,
            sin: None,
        }
    }

    /// cos and sin `(count, head_dim / 2)` for positions `start..start + count`, for a forward
    /// whose largest position is `start + count - 1`.
    fn tables(&mut self, start: usize, count: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let end = start + count;
        if self.rope.depends_on_length() {
            return self.rope.tables(start, count, end, device);
        }
        let cached = self.cos.as_ref().map_or(0, |c| c.dim(0).unwrap_or(0));
        if cached < end {
            // Grow to at least twice what is needed, so a decode loop rarely recomputes.
            let size = end.max(2 * cached).max(256);
            let (cos, sin) = self.rope.tables(0, size, size, device)?;
            self.cos = Some(cos);
            self.sin = Some(sin);
        }
        match (&self.cos, &self.sin) {
            (Some(cos), Some(sin)) => {
                Ok((cos.narrow(0, start, count)?, sin.narrow(0, start, count)?))
            }
            _ => candle_core::bail!("rotary tables missing"),
        }
    }
}

/// Rotates `x` `(batch, heads, seq, head_dim)` with `cos`/`sin` `(seq, head_dim / 2)`
/// (`rotate_half` style: first half against second half, as transformers does).
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor, differentiable: bool) -> Result<Tensor> {
    if differentiable {
        let cos = Tensor::cat(&[cos, cos], 1)?;
        let sin = Tensor::cat(&[sin, sin], 1)?;
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(&cos)?
            .broadcast_add(&rotated.broadcast_mul(&sin)?)
    } else {
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos.contiguous()?, &sin.contiguous()?)
    }
}

/// RMSNorm with a fused inference kernel and a differentiable training path; the weight is
/// used as `offset + weight` (Gemma stores the offset from 1).
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    offset: f64,
    eps: f64,
}

impl RmsNorm {
    fn new(size: usize, eps: f64, offset: f64, vb: Weights) -> Result<Self> {
        let weight = vb.vector(size, "weight", candle_nn::Init::Const(1.0 - offset))?;
        Ok(Self {
            weight,
            offset,
            eps,
        })
    }

    /// `offset + weight`, computed at use: a verifier's variables are filled after the model
    /// is built, and training changes them.
    fn scale(&self) -> Result<Tensor> {
        if self.offset == 0.0 {
            Ok(self.weight.clone())
        } else {
            &self.weight + self.offset
        }
    }

    fn forward(&self, x: &Tensor, differentiable: bool) -> Result<Tensor> {
        if differentiable {
            let norm = x.sqr()?.mean_keepdim(D::Minus1)?;
            let x = x.broadcast_div(&(norm + self.eps)?.sqrt()?)?;
            x.broadcast_mul(&self.scale()?)
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.scale()?, self.eps as f32)
        }
    }
}

/// Where a decoder's weights come from: candle variables (safetensors, or fresh ones for
/// training) or a GGUF file, addressed by the same Hugging Face names.
#[derive(Clone)]
enum Weights<'a> {
    Vars(VarBuilder<'a>),
    Gguf {
        file: &'a GgufFile,
        spec: &'a DecoderSpec,
        prefix: String,
    },
}

impl Weights<'_> {
    fn pp(&self, name: impl ToString) -> Self {
        match self {
            Weights::Vars(vb) => Weights::Vars(vb.pp(name)),
            Weights::Gguf { file, spec, prefix } => Weights::Gguf {
                file,
                spec,
                prefix: if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{}", name.to_string())
                },
            },
        }
    }

    fn gguf(file: &GgufFile, spec: &DecoderSpec, prefix: &str, leaf: &str) -> Result<Tensor> {
        let name = format!("{prefix}.{leaf}");
        let tensor = file.read(&name, spec).map_err(candle_core::Error::msg)?;
        tensor.dequantize(&Device::Cpu)
    }

    /// A vector (norm weight), with the initial value fresh variables get.
    fn vector(&self, size: usize, leaf: &str, init: candle_nn::Init) -> Result<Tensor> {
        match self {
            Weights::Vars(vb) => vb.get_with_hints(size, leaf, init),
            Weights::Gguf { file, spec, prefix } => Self::gguf(file, spec, prefix, leaf),
        }
    }

    /// A projection with an optional bias. GGUF matrices in a block type stay quantized;
    /// F32/F16/BF16 ones become dense f32.
    fn projection(&self, inputs: usize, outputs: usize, bias: bool) -> Result<LinearLayer> {
        match self {
            Weights::Vars(vb) => Ok(LinearLayer::Dense(if bias {
                candle_nn::linear(inputs, outputs, vb.clone())?
            } else {
                candle_nn::linear_no_bias(inputs, outputs, vb.clone())?
            })),
            Weights::Gguf { file, spec, prefix } => {
                let weight = file
                    .read(&format!("{prefix}.weight"), spec)
                    .map_err(candle_core::Error::msg)?;
                let bias = bias
                    .then(|| Self::gguf(file, spec, prefix, "bias"))
                    .transpose()?;
                LinearLayer::from_quantized(weight, bias)
            }
        }
    }
}

/// Input rows from which a quantized projection dequantizes its weights for the product.
/// Q8_0 decoding steps never come here (the slots' kernel reads its blocks), so from 8 rows
/// on a Q8_0 prefill computes exactly what that kernel does. Other types decode here: a batch
/// of 8 or 16 sequences stays with candle's quantized product, which beats dequantizing the
/// whole matrix at every step (110m Q4_0, batch 8: 55 tokens/s dequantizing).
const PREFILL_DEQUANTIZE_ROWS: usize = 8;
const PREFILL_DEQUANTIZE_ROWS_OTHER_TYPES: usize = 32;

fn dequantize_from_rows(dtype: candle_core::quantized::GgmlDType) -> usize {
    if dtype == candle_core::quantized::GgmlDType::Q8_0 {
        PREFILL_DEQUANTIZE_ROWS
    } else {
        PREFILL_DEQUANTIZE_ROWS_OTHER_TYPES
    }
}

/// A projection `x·Wᵀ + b`: dense f32 (trainable, read in place by the decoding kernels) or
/// quantized (GGUF blocks, multiplied by candle's quantized kernels).
#[derive(Debug, Clone)]
pub(crate) enum LinearLayer {
    Dense(Linear),
    Quantized {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

impl LinearLayer {
    fn from_quantized(
        weight: candle_core::quantized::QTensor,
        bias: Option<Tensor>,
    ) -> Result<Self> {
        use candle_core::quantized::GgmlDType;
        if matches!(
            weight.dtype(),
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
        ) {
            let dense = weight.dequantize(&Device::Cpu)?;
            return Ok(LinearLayer::Dense(Linear::new(dense, bias)));
        }
        Ok(LinearLayer::Quantized {
            weight: QMatMul::from_arc(std::sync::Arc::new(weight))?,
            bias,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            LinearLayer::Dense(layer) => layer.forward(x),
            LinearLayer::Quantized { weight, bias } => {
                // Many rows (a prompt's prefill): the weights dequantized once and multiplied
                // in f32 are several times faster than candle's row-by-row quantized product,
                // and compute what the Q8_0 decoding kernel computes.
                let rows = x.elem_count() / x.dim(D::Minus1)?.max(1);
                let y = match weight {
                    QMatMul::QTensor(q) if rows >= dequantize_from_rows(q.dtype()) => {
                        x.broadcast_matmul(&q.dequantize(x.device())?.t()?)?
                    }
                    _ => weight.forward(x)?,
                };
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}

/// Applies `layer` to `(batch, seq, in)` as one 2-D matrix product: candle's 3-D path
/// broadcasts the weight into a batched product, which is slower, above all backwards.
fn linear(layer: &LinearLayer, x: &Tensor) -> Result<Tensor> {
    let (b, t, h) = x.dims3()?;
    let y = layer.forward(&x.reshape((b * t, h))?)?;
    let out = y.dim(1)?;
    y.reshape((b, t, out))
}

/// Repeats key/value heads so grouped-query attention lines up with the query heads (query
/// head `h` uses key/value head `h / times`, as transformers' `repeat_kv`).
fn repeat_kv(x: Tensor, times: usize) -> Result<Tensor> {
    if times == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    Tensor::cat(&vec![&x; times], 2)?.reshape((b, kv * times, t, d))
}

/// The q, k, v projections: separate, or one fused `qkv_proj` (Phi-3).
#[derive(Debug, Clone)]
enum QkvProjection {
    Separate {
        q: LinearLayer,
        k: LinearLayer,
        v: LinearLayer,
    },
    Fused(LinearLayer),
}

/// Self-attention with grouped-query key/value heads, optional per-head norms, and a KV cache.
#[derive(Debug, Clone)]
struct Attention {
    qkv: QkvProjection,
    o_proj: LinearLayer,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
    cache: KvCache,
    /// Keys and values `(batch, kv_heads, seq, head_dim)` of the last `Pass::Prefill`.
    prefilled: Option<(Tensor, Tensor)>,
}

impl Attention {
    fn new(spec: &DecoderSpec, vb: Weights) -> Result<Self> {
        let h = spec.hidden_size;
        let (q, kv) = (spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim);
        let qkv = if spec.fused_projections {
            QkvProjection::Fused(vb.pp("qkv_proj").projection(h, q + 2 * kv, spec.qkv_bias)?)
        } else {
            QkvProjection::Separate {
                q: vb.pp("q_proj").projection(h, q, spec.qkv_bias)?,
                k: vb.pp("k_proj").projection(h, kv, spec.qkv_bias)?,
                v: vb.pp("v_proj").projection(h, kv, spec.qkv_bias)?,
            }
        };
        let head_norm = |name: &str| -> Result<Option<RmsNorm>> {
            spec.qk_norm
                .then(|| {
                    RmsNorm::new(
                        spec.head_dim,
                        spec.rms_norm_eps,
                        spec.norm_offset,
                        vb.pp(name),
                    )
                })
                .transpose()
        };
        Ok(Self {
            qkv,
            o_proj: vb.pp("o_proj").projection(q, h, spec.o_bias)?,
            q_norm: head_norm("q_norm")?,
            k_norm: head_norm("k_norm")?,
            heads: spec.heads,
            kv_heads: spec.kv_heads,
            head_dim: spec.head_dim,
            scale: spec.attention_scale,
            softcap: spec.attention_softcap,
            cache: KvCache::new(2, 512),
            prefilled: None,
        })
    }

    fn forward(
        &mut self,
        x: &Tensor,
        mask: Option<&Tensor>,
        (cos, sin): (&Tensor, &Tensor),
        pass: Pass,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let differentiable = pass == Pass::Train;
        let (q, k, v) = match &self.qkv {
            QkvProjection::Separate { q, k, v } => (linear(q, x)?, linear(k, x)?, linear(v, x)?),
            QkvProjection::Fused(qkv) => {
                let all = linear(qkv, x)?;
                let (q, kv) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
                (
                    all.narrow(D::Minus1, 0, q)?,
                    all.narrow(D::Minus1, q, kv)?,
                    all.narrow(D::Minus1, q + kv, kv)?,
                )
            }
        };
        let mut q = q
            .reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?;
        let mut k = k
            .reshape((b, t, self.kv_heads, self.head_dim))?
            .transpose(1, 2)?;
        let v = v
            .reshape((b, t, self.kv_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        if let (Some(q_norm), Some(k_norm)) = (&self.q_norm, &self.k_norm) {
            q = q_norm.forward(&q.contiguous()?, differentiable)?;
            k = k_norm.forward(&k.contiguous()?, differentiable)?;
        }
        let q = rotate(&q, cos, sin, differentiable)?.contiguous()?;
        let k = rotate(&k, cos, sin, differentiable)?.contiguous()?;
        let (k, v) = match pass {
            Pass::Decode => self.cache.append(&k, &v)?,
            Pass::Prefill => {
                self.prefilled = Some((k.clone(), v.clone()));
                (k, v)
            }
            Pass::Train | Pass::Score => (k, v),
        };
        let k = repeat_kv(k, self.heads / self.kv_heads)?;
        let v = repeat_kv(v, self.heads / self.kv_heads)?;
        let mut scores = (q.matmul(&k.t()?)? * self.scale)?;
        if let Some(cap) = self.softcap {
            scores = ((scores / cap)?.tanh()? * cap)?;
        }
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = if differentiable {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let out =
            weights
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, t, self.heads * self.head_dim))?;
        linear(&self.o_proj, &out)
    }
}

/// The gate and up projections: separate, or one fused `gate_up_proj` (Phi-3).
#[derive(Debug, Clone)]
enum GateUp {
    Separate { gate: LinearLayer, up: LinearLayer },
    Fused(LinearLayer),
}

/// The gated feed-forward block: `down(act(gate(x)) · up(x))`.
#[derive(Debug, Clone)]
struct Mlp {
    gate_up: GateUp,
    down_proj: LinearLayer,
    activation: Activation,
    intermediate: usize,
}

impl Mlp {
    fn new(spec: &DecoderSpec, vb: Weights) -> Result<Self> {
        let (h, f) = (spec.hidden_size, spec.intermediate_size);
        let gate_up = if spec.fused_projections {
            GateUp::Fused(vb.pp("gate_up_proj").projection(h, 2 * f, spec.mlp_bias)?)
        } else {
            GateUp::Separate {
                gate: vb.pp("gate_proj").projection(h, f, spec.mlp_bias)?,
                up: vb.pp("up_proj").projection(h, f, spec.mlp_bias)?,
            }
        };
        Ok(Self {
            gate_up,
            down_proj: vb.pp("down_proj").projection(f, h, spec.mlp_bias)?,
            activation: spec.activation,
            intermediate: f,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (gate, up) = match &self.gate_up {
            GateUp::Separate { gate, up } => (linear(gate, x)?, linear(up, x)?),
            GateUp::Fused(both) => {
                let both = linear(both, x)?;
                (
                    both.narrow(D::Minus1, 0, self.intermediate)?,
                    both.narrow(D::Minus1, self.intermediate, self.intermediate)?,
                )
            }
        };
        linear(&self.down_proj, &(self.activation.apply(&gate)? * up)?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    /// Llama: the norm before the MLP. Gemma 2: the norm of the attention's output.
    post_attention_layernorm: RmsNorm,
    /// Gemma 2 only: the norms before and after the MLP.
    feedforward_norms: Option<(RmsNorm, RmsNorm)>,
    mlp: Mlp,
    window: Option<usize>,
}

/// Which kind of forward pass: training (differentiable, no cache), decoding (fused kernels,
/// KV cache) or scoring (fused kernels, no cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Train,
    Decode,
    /// Whole sequences with the fused kernels and no cache (scoring).
    Score,
    /// A prompt entering a decoding slot: as `Score`, and each layer keeps its keys and values
    /// for the slot's cache.
    Prefill,
}

/// A causal language model of any supported architecture. Decoding state (the KV cache and
/// the ids it holds) lives inside, so one `Decoder` serves one batch at a time;
/// [`Decoder::reset`] starts a new one.
#[derive(Debug, Clone)]
pub struct Decoder {
    embed_tokens: TokenEmbedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: LinearLayer,
    rotary: Rotary,
    spec: DecoderSpec,
    device: Device,
    /// Positions already in the KV cache.
    cached: usize,
    /// Room the KV cache is allocated for at the next reset (prompt + new tokens).
    capacity: usize,
    /// The ids in the KV cache, per batch row (left padding included): LongRoPE's switch to
    /// its long factors recomputes the whole sequence from them, as transformers' Phi-3 does.
    history: Vec<Vec<u32>>,
    /// Each batch row's left padding.
    pads: Vec<usize>,
}

/// The token embedding: a dense table (trainable), or a GGUF one whose rows are dequantized
/// as they are looked up (the output projection may share it).
#[derive(Debug, Clone)]
enum TokenEmbedding {
    Dense(Embedding),
    Quantized(std::sync::Arc<candle_core::quantized::QTensor>),
}

impl TokenEmbedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            TokenEmbedding::Dense(e) => e.forward(ids),
            TokenEmbedding::Quantized(q) => q.embedding(ids),
        }
    }
}

impl Decoder {
    /// Builds the model from `vb`: a checkpoint's tensors for inference, or a `VarMap` (fresh,
    /// randomly initialised variables) for training.
    pub fn new(spec: &DecoderSpec, vb: VarBuilder) -> Result<Self> {
        spec.check().map_err(candle_core::Error::msg)?;
        let device = vb.device().clone();
        let embed_tokens = candle_nn::embedding(
            spec.vocab_size,
            spec.hidden_size,
            vb.pp("model.embed_tokens"),
        )?;
        let lm_head = if spec.tie_word_embeddings {
            LinearLayer::Dense(Linear::new(embed_tokens.embeddings().clone(), None))
        } else {
            LinearLayer::Dense(candle_nn::linear_no_bias(
                spec.hidden_size,
                spec.vocab_size,
                vb.pp("lm_head"),
            )?)
        };
        Self::build(
            spec,
            Weights::Vars(vb),
            TokenEmbedding::Dense(embed_tokens),
            lm_head,
            device,
        )
    }

    /// Builds the model from a GGUF file already checked against `spec` (see
    /// [`GgufFile::check`]), on the CPU: block-quantized matrices stay quantized.
    pub fn from_gguf(spec: &DecoderSpec, file: &GgufFile) -> Result<Self> {
        spec.check().map_err(candle_core::Error::msg)?;
        file.check(spec).map_err(candle_core::Error::msg)?;
        let device = Device::Cpu;
        let table = file
            .read("model.embed_tokens.weight", spec)
            .map_err(candle_core::Error::msg)?;
        let dense = matches!(
            table.dtype(),
            candle_core::quantized::GgmlDType::F32
                | candle_core::quantized::GgmlDType::F16
                | candle_core::quantized::GgmlDType::BF16
        );
        let (embed_tokens, tied) = if dense {
            let table = table.dequantize(&device)?;
            (
                TokenEmbedding::Dense(Embedding::new(table.clone(), spec.hidden_size)),
                LinearLayer::Dense(Linear::new(table, None)),
            )
        } else {
            let table = std::sync::Arc::new(table);
            (
                TokenEmbedding::Quantized(table.clone()),
                LinearLayer::Quantized {
                    weight: QMatMul::from_arc(table)?,
                    bias: None,
                },
            )
        };
        let weights = Weights::Gguf {
            file,
            spec,
            prefix: String::new(),
        };
        let lm_head = if spec.tie_word_embeddings {
            tied
        } else {
            weights
                .pp("lm_head")
                .projection(spec.hidden_size, spec.vocab_size, false)?
        };
        Self::build(spec, weights, embed_tokens, lm_head, device)
    }

    fn build(
        spec: &DecoderSpec,
        vb: Weights,
        embed_tokens: TokenEmbedding,
        lm_head: LinearLayer,
        device: Device,
    ) -> Result<Self> {
        let norm =
            |size: usize, vb: Weights| RmsNorm::new(size, spec.rms_norm_eps, spec.norm_offset, vb);
        let mut layers = Vec::with_capacity(spec.num_layers);
        for i in 0..spec.num_layers {
            let vb = vb.pp(format!("model.layers.{i}"));
            let feedforward_norms = if spec.sandwich_norms {
                Some((
                    norm(spec.hidden_size, vb.pp("pre_feedforward_layernorm"))?,
                    norm(spec.hidden_size, vb.pp("post_feedforward_layernorm"))?,
                ))
            } else {
                None
            };
            layers.push(Block {
                input_layernorm: norm(spec.hidden_size, vb.pp("input_layernorm"))?,
                self_attn: Attention::new(spec, vb.pp("self_attn"))?,
                post_attention_layernorm: norm(
                    spec.hidden_size,
                    vb.pp("post_attention_layernorm"),
                )?,
                feedforward_norms,
                mlp: Mlp::new(spec, vb.pp("mlp"))?,
                window: spec.windows[i],
            });
        }
        let final_norm = norm(spec.hidden_size, vb.pp("model.norm"))?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: final_norm,
            lm_head,
            rotary: Rotary::new(spec.rope.clone()),
            spec: spec.clone(),
            device,
            cached: 0,
            capacity: 512,
            history: Vec::new(),
            pads: Vec::new(),
        })
    }

    /// The architecture's choices.
    pub fn spec(&self) -> &DecoderSpec {
        &self.spec
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Positions currently held in the KV cache.
    pub fn cached_positions(&self) -> usize {
        self.cached
    }

    /// Forgets the KV cache, ready for a new batch whose sequences will hold up to `capacity`
    /// positions (prompt + new tokens): the cache is allocated for that, not for the model's
    /// `max_position_embeddings` (131,072 for Llama 3.2), and grows if it is exceeded.
    pub fn reset(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        for layer in &mut self.layers {
            layer.self_attn.cache = KvCache::new(2, self.capacity);
        }
        self.cached = 0;
        self.history.clear();
        self.pads.clear();
    }

    /// Keeps only the listed batch rows of the KV cache, in that order: finished sequences
    /// leave the batch so later steps spend nothing on them.
    pub fn retain_rows(&mut self, rows: &[u32]) -> Result<()> {
        let index = Tensor::new(rows, &self.device)?;
        for layer in &mut self.layers {
            let cache = &mut layer.self_attn.cache;
            let (Some(k), Some(v)) = (cache.k()?, cache.v()?) else {
                continue;
            };
            let k = k.contiguous()?.index_select(&index, 0)?;
            let v = v.contiguous()?.index_select(&index, 0)?;
            *cache = KvCache::new(2, self.capacity);
            cache.append(&k, &v)?;
        }
        self.history = rows
            .iter()
            .filter_map(|&r| self.history.get(r as usize).cloned())
            .collect();
        self.pads = rows
            .iter()
            .filter_map(|&r| self.pads.get(r as usize).copied())
            .collect();
        Ok(())
    }

    /// Training forward pass over token ids `(batch, seq)`, causal, no cache: the logits
    /// `(n, vocab)` of the `n` positions listed in `positions` (indices into the flattened
    /// `batch * seq` positions). Only positions that are trained on pay for the output
    /// projection; right padding is harmless because no position attends to a later one.
    pub fn forward_train(&mut self, ids: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let pads = vec![0; b];
        let x = self.run_blocks(ids, 0, &pads, Pass::Train)?;
        let x = x.reshape((b * t, self.spec.hidden_size))?;
        self.logits(&x.index_select(positions, 0)?)
    }

    /// Final hidden states `(batch, seq, hidden)` of whole right-padded sequences, causal, no
    /// cache: the body a verifier puts its score head on. `differentiable` selects the training
    /// path.
    pub fn hidden_states(&mut self, ids: &Tensor, differentiable: bool) -> Result<Tensor> {
        let b = ids.dim(0)?;
        let pass = if differentiable {
            Pass::Train
        } else {
            Pass::Score
        };
        self.run_blocks(ids, 0, &vec![0; b], pass)
    }

    /// Decoding step: feeds `ids` `(batch, new)` after the cached positions, each row left
    /// padded by `pads` (given with the first call after a reset; later calls pass the same or
    /// an empty slice), and returns the logits of the last position `(batch, vocab)`.
    pub fn forward_decode(&mut self, ids: &Tensor, pads: &[usize]) -> Result<Tensor> {
        let x = self.decode_hidden(ids, pads)?;
        let t = x.dim(1)?;
        self.logits(&x.i((.., t - 1, ..))?.contiguous()?)
    }

    /// [`Decoder::forward_decode`] returning the logits of every new position
    /// `(batch, new, vocab)`: what `checkpoint logits` prints and the reference tests compare.
    pub fn forward_decode_all(&mut self, ids: &Tensor, pads: &[usize]) -> Result<Tensor> {
        let x = self.decode_hidden(ids, pads)?;
        let (b, t, h) = x.dims3()?;
        self.logits(&x.reshape((b * t, h))?)?
            .reshape((b, t, self.spec.vocab_size))
    }

    /// The final hidden states of the new positions, with the cache extended; handles
    /// LongRoPE's switch to its long factors by recomputing the whole sequence.
    fn decode_hidden(&mut self, ids: &Tensor, pads: &[usize]) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if self.cached == 0 || self.pads.len() != b {
            self.pads = if pads.len() == b {
                pads.to_vec()
            } else {
                vec![0; b]
            };
            self.history = vec![Vec::new(); b];
        }
        let new: Vec<Vec<u32>> = ids.to_vec2()?;
        for (row, tokens) in self.history.iter_mut().zip(&new) {
            row.extend_from_slice(tokens);
        }
        if let Some(switch) = self.spec.rope.regime_switch()
            && self.cached > 0
            && self.cached <= switch
            && self.cached + t > switch
        {
            // transformers' Phi-3 drops its cache when the sequence first passes the original
            // length and recomputes everything with the long factors; so do we.
            let all = self.history.concat();
            let length = self.history[0].len();
            let ids = Tensor::from_vec(all, (b, length), &self.device)?;
            let capacity = self.capacity;
            let pads = self.pads.clone();
            let history = std::mem::take(&mut self.history);
            self.reset(capacity);
            self.history = history;
            self.pads = pads.clone();
            let x = self.run_blocks(&ids, 0, &pads, Pass::Decode)?;
            self.cached = length;
            return x.narrow(1, length - t, t);
        }
        let pads = self.pads.clone();
        let x = self.run_blocks(ids, self.cached, &pads, Pass::Decode)?;
        self.cached += t;
        Ok(x)
    }

    /// The output logits of final hidden states `(n, hidden)`, soft-capped where the
    /// architecture does.
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let logits = self.lm_head.forward(x)?;
        match self.spec.final_softcap {
            Some(cap) => (logits / cap)?.tanh()? * cap,
            None => Ok(logits),
        }
    }

    /// Decoder blocks in all.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The hidden states `(batch, seq, hidden)` entering block `layer` of right-padded ids, no
    /// cache, fused kernels: what a verifier whose blocks below `layer` are frozen computes
    /// once per text and caches.
    pub fn hidden_before(&mut self, ids: &Tensor, layer: usize) -> Result<Tensor> {
        let b = ids.dim(0)?;
        let x = self.embed(ids)?;
        let layers = 0..layer.min(self.layers.len());
        self.blocks(x, layers, 0, &vec![0; b], Pass::Score)
    }

    /// From hidden states entering block `layer` through the remaining blocks to the final
    /// norm (causal, no cache); `differentiable` selects the training path.
    pub fn hidden_from(
        &mut self,
        x: &Tensor,
        layer: usize,
        differentiable: bool,
    ) -> Result<Tensor> {
        let pass = if differentiable {
            Pass::Train
        } else {
            Pass::Score
        };
        let b = x.dim(0)?;
        let layers = layer.min(self.layers.len())..self.layers.len();
        let x = self.blocks(x.clone(), layers, 0, &vec![0; b], pass)?;
        self.norm.forward(&x, differentiable)
    }

    /// Token embeddings, scaled where the architecture does.
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.embed_tokens.forward(ids)?;
        match self.spec.embedding_scale {
            Some(scale) => x * scale,
            None => Ok(x),
        }
    }

    fn run_blocks(
        &mut self,
        ids: &Tensor,
        start: usize,
        pads: &[usize],
        pass: Pass,
    ) -> Result<Tensor> {
        let x = self.embed(ids)?;
        let x = self.blocks(x, 0..self.layers.len(), start, pads, pass)?;
        self.norm.forward(&x, pass == Pass::Train)
    }

    /// Runs the blocks in `layers` on hidden states `x` of positions `start..`.
    fn blocks(
        &mut self,
        mut x: Tensor,
        layers: std::ops::Range<usize>,
        start: usize,
        pads: &[usize],
        pass: Pass,
    ) -> Result<Tensor> {
        let differentiable = pass == Pass::Train;
        let t = x.dim(1)?;
        let (cos, sin) = self.rotary.tables(start, t, &self.device)?;
        // One mask per distinct window; a single-token step without padding needs none.
        let mut masks: Vec<(Option<usize>, Option<Tensor>)> = Vec::new();
        for layer in &mut self.layers[layers] {
            let mask = match masks.iter().find(|(w, _)| *w == layer.window) {
                Some((_, mask)) => mask.clone(),
                None => {
                    let mask = attention_mask(pads, start, t, layer.window, &self.device)?;
                    masks.push((layer.window, mask.clone()));
                    mask
                }
            };
            let residual = x.clone();
            let h = layer.input_layernorm.forward(&x, differentiable)?;
            let h = layer
                .self_attn
                .forward(&h, mask.as_ref(), (&cos, &sin), pass)?;
            match &layer.feedforward_norms {
                Some((pre, post)) => {
                    let h = layer.post_attention_layernorm.forward(&h, differentiable)?;
                    x = (residual + h)?;
                    let residual = x.clone();
                    let h = pre.forward(&x, differentiable)?;
                    let h = post.forward(&layer.mlp.forward(&h)?, differentiable)?;
                    x = (residual + h)?;
                }
                None => {
                    x = (residual + h)?;
                    let residual = x.clone();
                    let h = layer.post_attention_layernorm.forward(&x, differentiable)?;
                    x = (residual + layer.mlp.forward(&h)?)?;
                }
            }
        }
        Ok(x)
    }
}

/// Additive attention mask `(batch, 1, new, past + new)` for `new` queries after `past` cached
/// positions over left-padded rows: query `q` (absolute position `past + q`) of row `b` sees key
/// `k` when `k` is not after it, is not padding (`k >= pads[b]`) and, with a sliding window `w`,
/// is one of the `w` positions ending at the query. A padding query sees only itself, which
/// keeps every softmax row finite. `None` when nothing is masked (one new token, no padding,
/// no window reached).
pub fn attention_mask(
    pads: &[usize],
    past: usize,
    new: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let total = past + new;
    let windowed = window.is_some_and(|w| total > w);
    if new == 1 && !windowed && pads.iter().all(|&p| p == 0) {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(pads.len() * new * total);
    for &p in pads {
        for q in 0..new {
            let qpos = past + q;
            for k in 0..total {
                let in_window = window.is_none_or(|w| qpos - k.min(qpos) < w);
                let visible = k == qpos || (k <= qpos && k >= p && in_window);
                values.push(if visible { 0.0 } else { f32::NEG_INFINITY });
            }
        }
    }
    Ok(Some(Tensor::from_vec(
        values,
        (pads.len(), 1, new, total),
        device,
    )?))
}

/// Greedy decoding of one unpadded prompt for `steps` tokens, no stop: what the reference
/// tests compare with transformers' `generate(do_sample=False)`. Decodes through a slot (the
/// hand-written kernels) where the model runs on them, as the prover does. Returns the new ids
/// and each step's logits.
pub fn greedy(
    model: &mut Decoder,
    prompt: &[u32],
    steps: usize,
) -> Result<(Vec<u32>, Vec<Vec<f32>>)> {
    let (mut out, mut all) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    if model.runs_on_slots() {
        let mut slots = model.slots(1, prompt.len() + steps)?;
        let mut row = model.start(&mut slots, 0, prompt)?;
        for _ in 0..steps {
            let next = argmax(&row);
            all.push(row);
            out.push(next);
            row = model.step(&mut slots, &[(0, next)])?;
        }
        return Ok((out, all));
    }
    model.reset(prompt.len() + steps);
    let device = model.device().clone();
    let ids = Tensor::new(prompt, &device)?.unsqueeze(0)?;
    let mut logits = model.forward_decode(&ids, &[0])?;
    for _ in 0..steps {
        let row: Vec<f32> = logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?;
        let next = argmax(&row);
        all.push(row);
        out.push(next);
        logits = model.forward_decode(&Tensor::new(&[[next]], &device)?, &[])?;
    }
    Ok((out, all))
}

/// The id of the largest logit (the first of equal ones).
pub fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0 as u32
}
