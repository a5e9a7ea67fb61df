//! Mistral (`model_type` `"mistral"`): Llama's decoder with a sliding attention window on
//! every layer (Mistral 7B v0.1: 4,096; later versions: none).

use candle_nn::VarBuilder;
use serde::Deserialize;

use super::config::{Dims, TokenIds, refuse_quantized};
use super::decoder::{Activation, Decoder, DecoderSpec};
use super::rope::RopeFields;

/// The fields of a Hugging Face `MistralConfig` this project reads (defaults as transformers').
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// E.g. `["MistralForCausalLM"]`.
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
    /// Key/value heads (transformers' default: 8).
    #[serde(default = "default_kv_heads")]
    pub num_key_value_heads: usize,
    /// Width of one head; hidden / heads when absent.
    #[serde(default)]
    pub head_dim: Option<usize>,
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
    /// The attention window (absent: transformers' default 4,096; null: none).
    #[serde(default = "default_window")]
    pub sliding_window: Option<usize>,
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

fn default_kv_heads() -> usize {
    8
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    4096 * 32
}
fn default_window() -> Option<usize> {
    Some(4096)
}
fn default_act() -> String {
    "silu".into()
}

impl Config {
    /// The decoder this config describes, or why it cannot be built.
    pub fn spec(&self) -> Result<DecoderSpec, String> {
        refuse_quantized(&self.quantization_config)?;
        let dims = Dims {
            model_type: "mistral",
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            rms_norm_eps: self.rms_norm_eps,
            max_positions: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
        };
        let mut spec = dims.spec(&self.rope)?;
        spec.activation = Activation::from_name(&self.hidden_act)?;
        spec.windows = vec![self.sliding_window; self.num_hidden_layers];
        spec.check()?;
        Ok(spec)
    }
}

/// A Mistral causal LM: the shared decoder with Mistral's choices.
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
