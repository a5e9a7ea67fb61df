//! Qwen3 (`model_type` `"qwen3"`): Llama's decoder with an RMSNorm over each head of q and k
//! before rope (`q_norm`, `k_norm`), an explicit `head_dim` that may differ from
//! hidden / heads, no q/k/v bias by default, and Qwen's sliding-window rules.

use candle_nn::VarBuilder;
use serde::Deserialize;

use super::config::{Dims, TokenIds, refuse_quantized};
use super::decoder::{Activation, Decoder, DecoderSpec};
use super::qwen2::qwen_windows;
use super::rope::RopeFields;

/// The fields of a Hugging Face `Qwen3Config` this project reads (defaults as transformers').
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// E.g. `["Qwen3ForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads; the query heads when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head (transformers' default: 128).
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
    /// Bias on the attention projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the window below applies at all.
    #[serde(default)]
    pub use_sliding_window: bool,
    /// The attention window, when `use_sliding_window`.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Layers from this index on use the window (when no `layer_types` are given).
    #[serde(default = "default_window_layers")]
    pub max_window_layers: usize,
    /// transformers 5: each layer's attention.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Whether `lm_head` reuses the embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// The MLP's activation.
    #[serde(default = "default_act")]
    pub hidden_act: String,
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

fn default_head_dim() -> usize {
    128
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    32_768
}
fn default_window_layers() -> usize {
    28
}
fn default_act() -> String {
    "silu".into()
}

impl Config {
    /// The decoder this config describes, or why it cannot be built.
    pub fn spec(&self) -> Result<DecoderSpec, String> {
        refuse_quantized(&self.quantization_config)?;
        let dims = Dims {
            model_type: "qwen3",
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: Some(self.head_dim),
            rms_norm_eps: self.rms_norm_eps,
            max_positions: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
        };
        let mut spec = dims.spec(&self.rope)?;
        spec.activation = Activation::from_name(&self.hidden_act)?;
        spec.qkv_bias = self.attention_bias;
        spec.o_bias = self.attention_bias;
        spec.qk_norm = true;
        spec.windows = qwen_windows(
            self.num_hidden_layers,
            self.use_sliding_window,
            self.sliding_window,
            self.max_window_layers,
            self.layer_types.as_deref(),
        )?;
        spec.check()?;
        Ok(spec)
    }
}

/// A Qwen3 causal LM: the shared decoder with Qwen3's choices.
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
