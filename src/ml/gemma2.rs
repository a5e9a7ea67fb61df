//! Gemma 2 (`model_type` `"gemma2"`): embeddings scaled by √hidden, RMSNorm weights used as
//! `1 + w`, norms before and after both attention and the MLP, a GELU-tanh gate, attention
//! scores scaled by 1/√`query_pre_attn_scalar` and soft-capped before the mask, the output
//! logits soft-capped, tied embeddings, and a sliding window on every other layer.

use candle_nn::VarBuilder;
use serde::Deserialize;

use super::config::{Dims, TokenIds, refuse_quantized};
use super::decoder::{Activation, Decoder, DecoderSpec};
use super::rope::RopeFields;

/// The fields of a Hugging Face `Gemma2Config` this project reads (defaults as transformers').
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// E.g. `["Gemma2ForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the gated MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    #[serde(default = "default_kv_heads")]
    pub num_key_value_heads: usize,
    /// Width of one head.
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    /// Tokenizer vocabulary size.
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// The rotary embedding, in either config dialect.
    #[serde(flatten)]
    pub rope: RopeFields,
    /// Longest configured sequence.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Attention scores are scaled by 1/√ of this (not of `head_dim`).
    #[serde(default = "default_query_scalar")]
    pub query_pre_attn_scalar: f64,
    /// `cap · tanh(score / cap)` on attention scores; null for none.
    #[serde(default = "default_attn_cap")]
    pub attn_logit_softcapping: Option<f64>,
    /// `cap · tanh(logit / cap)` on the output logits; null for none.
    #[serde(default = "default_final_cap")]
    pub final_logit_softcapping: Option<f64>,
    /// The window of the sliding layers.
    #[serde(default = "default_window")]
    pub sliding_window: Option<usize>,
    /// transformers 5: each layer's attention; without it, even layers slide.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Bias on the attention projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Attention without the causal mask: refused (not a generator).
    #[serde(default)]
    pub use_bidirectional_attention: Option<bool>,
    /// Whether `lm_head` reuses the embedding (Gemma: yes).
    #[serde(default = "default_tie")]
    pub tie_word_embeddings: bool,
    /// The MLP's activation (Gemma 2's name for it).
    #[serde(default)]
    pub hidden_activation: Option<String>,
    /// The older name of the activation field.
    #[serde(default)]
    pub hidden_act: Option<String>,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id(s).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Refused when set.
    #[serde(default)]
    pub quantization_config: Option<serde_json::Value>,
}

fn default_kv_heads() -> usize {
    4
}
fn default_head_dim() -> usize {
    256
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    8192
}
fn default_query_scalar() -> f64 {
    256.0
}
fn default_attn_cap() -> Option<f64> {
    Some(50.0)
}
fn default_final_cap() -> Option<f64> {
    Some(30.0)
}
fn default_window() -> Option<usize> {
    Some(4096)
}
fn default_tie() -> bool {
    true
}

impl Config {
    /// The decoder this config describes, or why it cannot be built.
    pub fn spec(&self) -> Result<DecoderSpec, String> {
        refuse_quantized(&self.quantization_config)?;
        if self.use_bidirectional_attention == Some(true) {
            return Err(
                "config.json: use_bidirectional_attention is true: attention without the causal mask is not supported"
                    .into(),
            );
        }
        let dims = Dims {
            model_type: "gemma2",
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads,
            head_dim: Some(self.head_dim),
            rms_norm_eps: self.rms_norm_eps,
            max_positions: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
        };
        let mut spec = dims.spec(&self.rope)?;
        let activation = self
            .hidden_activation
            .as_deref()
            .or(self.hidden_act.as_deref())
            .unwrap_or("gelu_pytorch_tanh");
        spec.activation = Activation::from_name(activation)?;
        spec.qkv_bias = self.attention_bias;
        spec.o_bias = self.attention_bias;
        spec.norm_offset = 1.0;
        spec.embedding_scale = Some((self.hidden_size as f64).sqrt());
        spec.sandwich_norms = true;
        if self.query_pre_attn_scalar.is_nan() || self.query_pre_attn_scalar <= 0.0 {
            return Err("config.json: query_pre_attn_scalar must be positive".into());
        }
        spec.attention_scale = 1.0 / self.query_pre_attn_scalar.sqrt();
        spec.attention_softcap = self.attn_logit_softcapping;
        spec.final_softcap = self.final_logit_softcapping;
        spec.windows = match &self.layer_types {
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(None),
                    "sliding_attention" => Ok(self.sliding_window),
                    other => Err(format!(
                        "config.json: layer type {other:?} is not supported"
                    )),
                })
                .collect::<Result<_, _>>()?,
            None => (0..self.num_hidden_layers)
                .map(|i| i.is_multiple_of(2).then_some(self.sliding_window).flatten())
                .collect(),
        };
        spec.check()?;
        Ok(spec)
    }
}

/// A Gemma 2 causal LM: the shared decoder with Gemma 2's choices.
pub struct Model(Decoder);

impl Model {
    /// Builds the model from `vb`.
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let spec = cfg.spec().map_err(candle_core::Error::msg)?;
        Ok(Self(Decoder::new(&spec, vb)?))
    }
}

impl From<Model> for Decoder {
    fn from(model: Model) -> Self {
        model.0
    }
}
