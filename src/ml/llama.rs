//! A Llama-architecture causal language model on candle-nn: the prover.
//!
//! Written here rather than taken from candle-transformers because the prover needs two things
//! that code lacks: batched decoding of left-padded prompts of different lengths (so one forward
//! pass advances many samples), and a differentiable path for training on CPU (candle's fused
//! RMSNorm and RoPE kernels have no backward pass). Tensor names follow the Hugging Face layout,
//! so checkpoints load from and save to `model.safetensors` next to `config.json`.

use candle_core::{D, DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::kv_cache::KvCache;
use candle_nn::{Embedding, Linear, VarBuilder};

use super::config::LlamaConfig;

/// Rotary position tables, shared by every layer.
#[derive(Debug, Clone)]
struct Rotary {
    /// `(max_positions, head_dim / 2)`, for candle's fused kernel.
    cos: Tensor,
    sin: Tensor,
    /// `(max_positions, head_dim)`, for the differentiable training path.
    cos_full: Tensor,
    sin_full: Tensor,
}

impl Rotary {
    fn new(cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let half = cfg.head_dim() / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f32 / cfg.head_dim() as f32))
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, cfg.max_position_embeddings as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((cfg.max_position_embeddings, 1))?;
        let freqs = positions.broadcast_mul(&inv_freq)?;
        let cos = freqs.cos()?;
        let sin = freqs.sin()?;
        let cos_full = Tensor::cat(&[&cos, &cos], 1)?;
        let sin_full = Tensor::cat(&[&sin, &sin], 1)?;
        Ok(Self {
            cos,
            sin,
            cos_full,
            sin_full,
        })
    }

    /// Rotates `x` of shape `(batch, heads, seq, head_dim)` for positions `start..start+seq`.
    fn apply(&self, x: &Tensor, start: usize, differentiable: bool) -> Result<Tensor> {
        let seq = x.dim(2)?;
        if differentiable {
            let cos = self.cos_full.narrow(0, start, seq)?;
            let sin = self.sin_full.narrow(0, start, seq)?;
            let half = x.dim(D::Minus1)? / 2;
            let x1 = x.narrow(D::Minus1, 0, half)?;
            let x2 = x.narrow(D::Minus1, half, half)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos)?
                .broadcast_add(&rotated.broadcast_mul(&sin)?)
        } else {
            let cos = self.cos.narrow(0, start, seq)?;
            let sin = self.sin.narrow(0, start, seq)?;
            candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
        }
    }
}

/// RMSNorm with a fused inference kernel and a differentiable training path.
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    fn forward(&self, x: &Tensor, differentiable: bool) -> Result<Tensor> {
        if differentiable {
            let norm = x.sqr()?.mean_keepdim(D::Minus1)?;
            let x = x.broadcast_div(&(norm + self.eps)?.sqrt()?)?;
            x.broadcast_mul(&self.weight)
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps as f32)
        }
    }
}

/// Self-attention with grouped-query key/value heads and a KV cache for decoding.
#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    cache: KvCache,
}

impl Attention {
    fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (h, kv) = (cfg.hidden_size, cfg.kv_heads() * cfg.head_dim());
        Ok(Self {
            q_proj: candle_nn::linear_no_bias(h, h, vb.pp("q_proj"))?,
            k_proj: candle_nn::linear_no_bias(h, kv, vb.pp("k_proj"))?,
            v_proj: candle_nn::linear_no_bias(h, kv, vb.pp("v_proj"))?,
            o_proj: candle_nn::linear_no_bias(h, h, vb.pp("o_proj"))?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.kv_heads(),
            head_dim: cfg.head_dim(),
            cache: KvCache::new(2, cfg.max_position_embeddings),
        })
    }

    fn forward(
        &mut self,
        x: &Tensor,
        start: usize,
        mask: Option<&Tensor>,
        rotary: &Rotary,
        pass: Pass,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let differentiable = pass == Pass::Train;
        let q = linear(&self.q_proj, x)?
            .reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?;
        let k = linear(&self.k_proj, x)?
            .reshape((b, t, self.kv_heads, self.head_dim))?
            .transpose(1, 2)?;
        let v = linear(&self.v_proj, x)?
            .reshape((b, t, self.kv_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = rotary.apply(&q, start, differentiable)?.contiguous()?;
        let k = rotary.apply(&k, start, differentiable)?.contiguous()?;
        let (k, v) = if pass == Pass::Decode {
            self.cache.append(&k, &v)?
        } else {
            (k, v)
        };
        let k = repeat_kv(k, self.heads / self.kv_heads)?;
        let v = repeat_kv(v, self.heads / self.kv_heads)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
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

/// Applies `layer` to `(batch, seq, in)` as one 2-D matrix product: candle's 3-D path
/// broadcasts the weight into a batched product, which is slower, above all backwards.
fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let (b, t, h) = x.dims3()?;
    let y = layer.forward(&x.reshape((b * t, h))?)?;
    let out = y.dim(1)?;
    y.reshape((b, t, out))
}

/// Repeats key/value heads so grouped-query attention lines up with the query heads.
fn repeat_kv(x: Tensor, times: usize) -> Result<Tensor> {
    if times == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    Tensor::cat(&vec![&x; times], 2)?.reshape((b, kv * times, t, d))
}

/// The SwiGLU feed-forward block.
#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: candle_nn::linear_no_bias(h, f, vb.pp("gate_proj"))?,
            up_proj: candle_nn::linear_no_bias(h, f, vb.pp("up_proj"))?,
            down_proj: candle_nn::linear_no_bias(f, h, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&linear(&self.gate_proj, x)?)?;
        linear(&self.down_proj, &(gate * linear(&self.up_proj, x)?)?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// Which kind of forward pass: training (differentiable, no cache), decoding (fused kernels,
/// KV cache) or scoring (fused kernels, no cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Train,
    Decode,
    /// Whole sequences with the fused kernels and no cache (scoring).
    Score,
}

/// The causal LM. Decoding state (the KV cache) lives inside, so one `Llama` serves one batch
/// at a time; [`Llama::reset`] starts a new one.
#[derive(Debug, Clone)]
pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: Rotary,
    config: LlamaConfig,
    device: Device,
    /// Positions already in the KV cache.
    cached: usize,
}

impl Llama {
    /// Builds the model from `vb`: a checkpoint's tensors for inference, or a `VarMap` (fresh,
    /// randomly initialised variables) for training.
    pub fn new(config: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::msg)?;
        let device = vb.device().clone();
        let embed_tokens = candle_nn::embedding(
            config.vocab_size,
            config.hidden_size,
            vb.pp("model.embed_tokens"),
        )?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let vb = vb.pp(format!("model.layers.{i}"));
            layers.push(Block {
                input_layernorm: RmsNorm::new(
                    config.hidden_size,
                    config.rms_norm_eps,
                    vb.pp("input_layernorm"),
                )?,
                self_attn: Attention::new(config, vb.pp("self_attn"))?,
                post_attention_layernorm: RmsNorm::new(
                    config.hidden_size,
                    config.rms_norm_eps,
                    vb.pp("post_attention_layernorm"),
                )?,
                mlp: Mlp::new(config, vb.pp("mlp"))?,
            });
        }
        let norm = RmsNorm::new(config.hidden_size, config.rms_norm_eps, vb.pp("model.norm"))?;
        let lm_head = if config.tie_word_embeddings {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            candle_nn::linear_no_bias(config.hidden_size, config.vocab_size, vb.pp("lm_head"))?
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: Rotary::new(config, &device)?,
            config: config.clone(),
            device,
            cached: 0,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Positions currently held in the KV cache.
    pub fn cached_positions(&self) -> usize {
        self.cached
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
            *cache = KvCache::new(2, self.config.max_position_embeddings);
            cache.append(&k, &v)?;
        }
        Ok(())
    }

    /// Forgets the KV cache, ready for a new batch.
    pub fn reset(&mut self) {
        for layer in &mut self.layers {
            layer.self_attn.cache.reset();
        }
        self.cached = 0;
    }

    /// Training forward pass over token ids `(batch, seq)`, causal, no cache: the logits
    /// `(n, vocab)` of the `n` positions listed in `positions` (indices into the flattened
    /// `batch * seq` positions). Only positions that are trained on pay for the output
    /// projection; right padding is harmless because no position attends to a later one.
    pub fn forward_train(&mut self, ids: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let mask = causal_mask(t, &self.device)?;
        let x = self.run_blocks(ids, 0, Some(&mask), Pass::Train)?;
        let x = x.reshape((b * t, self.config.hidden_size))?;
        self.lm_head.forward(&x.index_select(positions, 0)?)
    }

    /// Final hidden states `(batch, seq, hidden)` of whole right-padded sequences, causal, no
    /// cache: the body a verifier puts its score head on. `differentiable` selects the training
    /// path.
    pub fn hidden_states(&mut self, ids: &Tensor, differentiable: bool) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let mask = causal_mask(t, &self.device)?;
        let pass = if differentiable {
            Pass::Train
        } else {
            Pass::Score
        };
        self.run_blocks(ids, 0, Some(&mask), pass)
    }

    /// Decoding step: feeds `ids` `(batch, new)` after the cached positions and returns the
    /// logits of the last position `(batch, vocab)`. `mask` is added to the attention scores,
    /// shape `(batch, 1, new, cached + new)`; decoders build it with [`decode_mask`].
    pub fn forward_decode(&mut self, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        if self.cached + t > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {} tokens exceeds max_position_embeddings {}",
                self.cached + t,
                self.config.max_position_embeddings
            );
        }
        let x = self.run_blocks(ids, self.cached, mask, Pass::Decode)?;
        self.cached += t;
        let last = x.i((.., t - 1, ..))?;
        self.lm_head.forward(&last.contiguous()?)
    }

    fn run_blocks(
        &mut self,
        ids: &Tensor,
        start: usize,
        mask: Option<&Tensor>,
        pass: Pass,
    ) -> Result<Tensor> {
        let differentiable = pass == Pass::Train;
        let mut x = self.embed_tokens.forward(ids)?;
        for layer in &mut self.layers {
            let residual = x.clone();
            let h = layer.input_layernorm.forward(&x, differentiable)?;
            let h = layer
                .self_attn
                .forward(&h, start, mask, &self.rotary, pass)?;
            x = (residual + h)?;
            let residual = x.clone();
            let h = layer.post_attention_layernorm.forward(&x, differentiable)?;
            x = (residual + layer.mlp.forward(&h)?)?;
        }
        self.norm.forward(&x, differentiable)
    }
}

/// `(1, 1, t, t)` additive mask: 0 on and below the diagonal, -inf above.
fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(values, (1, 1, t, t), device)
}

/// Additive attention mask for a decoding step over left-padded sequences.
///
/// Query `q` (at absolute position `past + q`) of sequence `b` may see key `k` when `k` is not
/// after it and is not padding (`k >= pad[b]`); a padding query sees only itself, which keeps
/// every softmax row finite. Shape `(batch, 1, new, past + new)`.
pub fn decode_mask(pad: &[usize], past: usize, new: usize, device: &Device) -> Result<Tensor> {
    let total = past + new;
    let mut values = Vec::with_capacity(pad.len() * new * total);
    for &p in pad {
        for q in 0..new {
            let qpos = past + q;
            for k in 0..total {
                let visible = k == qpos || (k <= qpos && k >= p);
                values.push(if visible { 0.0 } else { f32::NEG_INFINITY });
            }
        }
    }
    Tensor::from_vec(values, (pad.len(), 1, new, total), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn tiny() -> LlamaConfig {
        serde_json::from_value(serde_json::json!({
            "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 11,
            "max_position_embeddings": 32
        }))
        .expect("config")
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff")
    }

    #[test]
    fn decoding_with_cache_and_padding_matches_the_training_pass() {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let mut model = Llama::new(&tiny(), vb).expect("model");
        let ids = Tensor::new(&[[1u32, 5, 7, 2, 9, 3]], &device).expect("ids");
        let all = Tensor::arange(0u32, 6, &device).expect("positions");
        let full = model
            .forward_train(&ids, &all)
            .and_then(|l| l.unsqueeze(0))
            .expect("train pass");

        // Prefill 4 tokens, then 2 single steps: the last logits equal the full pass's.
        model.reset();
        let mask = decode_mask(&[0], 0, 4, &device).expect("mask");
        model
            .forward_decode(&ids.narrow(1, 0, 4).expect("n"), Some(&mask))
            .expect("prefill");
        model
            .forward_decode(&ids.narrow(1, 4, 1).expect("n"), None)
            .expect("step");
        let last = model
            .forward_decode(&ids.narrow(1, 5, 1).expect("n"), None)
            .expect("step");
        let expected = full.i((.., 5, ..)).expect("slice");
        assert!(max_diff(&last, &expected) < 1e-4);

        // The same sequence left-padded by 2 inside a batch gives the same logits.
        model.reset();
        let padded =
            Tensor::new(&[[0u32, 0, 1, 5, 7, 2], [1, 5, 7, 2, 9, 3]], &device).expect("ids");
        let mask = decode_mask(&[2, 0], 0, 6, &device).expect("mask");
        let logits = model.forward_decode(&padded, Some(&mask)).expect("prefill");
        let unpadded = full.i((.., 3, ..)).expect("slice");
        assert!(max_diff(&logits.i(0..1).expect("row"), &unpadded) < 1e-4);
        assert!(max_diff(&logits.i(1..2).expect("row"), &expected) < 1e-4);

        // Dropping the first row from the batch keeps the second one's state intact: its next
        // step matches the unbatched pass.
        model.reset();
        let mask = decode_mask(&[2, 0], 0, 5, &device).expect("mask");
        let prefix = padded.narrow(1, 0, 5).expect("prefix");
        model.forward_decode(&prefix, Some(&mask)).expect("prefill");
        model.retain_rows(&[1]).expect("retain");
        let step = Tensor::new(&[[3u32]], &device).expect("ids");
        let last = model.forward_decode(&step, None).expect("step");
        assert!(max_diff(&last, &expected) < 1e-4);
    }
}
