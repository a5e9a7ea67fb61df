//! Llama 1/2/3.x (`model_type` `"llama"`): the decoder with RMSNorm, SwiGLU, grouped-query
//! attention and rotary embeddings, optionally with `attention_bias`/`mlp_bias`, and every rope
//! scaling Llama checkpoints use (`llama3`, `linear`, `dynamic`; `yarn` too). The project's own
//! prover and verifier are Llama models of this config, written by `train`.

use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::config::{Dims, TokenIds, refuse_quantized};
use super::decoder::{Activation, Decoder, DecoderSpec};
use super::rope::RopeFields;

/// The fields of a Hugging Face `LlamaConfig` this project reads. Fields that would change the
/// maths and are not implemented are refused by name in [`Config::spec`]; the rest of what
/// transformers writes (dropout, initialiser range, …) has no effect on inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Always a list containing `"LlamaForCausalLM"` for checkpoints this project writes.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `"llama"`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to `num_attention_heads`.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Tokenizer vocabulary size.
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// The rotary embedding, in either config dialect.
    #[serde(flatten)]
    pub rope: RopeFields,
    /// Longest sequence (prompt + generation) the model supports.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Whether the output projection reuses the token embedding (then `lm_head.weight` is absent).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on the attention projections.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attention_bias: bool,
    /// Bias on the MLP projections.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mlp_bias: bool,
    /// The MLP's activation; SiLU when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<String>,
    /// Beginning-of-sequence token id, when the tokenizer has one.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id(s): one, or a list (Llama-3 instruct).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Padding token id (reward models read their score at the last token that is not it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    /// A quantised checkpoint's settings: refused (its weights are not plain tensors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization_config: Option<serde_json::Value>,
}

fn default_model_type() -> String {
    "llama".to_string()
}
fn default_rms_norm_eps() -> f64 {
    1e-5
}
fn default_max_positions() -> usize {
    2048
}

impl Config {
    /// Key/value heads, resolving the Llama default.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The decoder this config describes, or why it cannot be built (every message starts with
    /// `config.json` and names the field).
    pub fn spec(&self) -> Result<DecoderSpec, String> {
        refuse_quantized(&self.quantization_config)?;
        let activation = Activation::from_name(self.hidden_act.as_deref().unwrap_or("silu"))?;
        let dims = Dims {
            model_type: "llama",
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            head_dim: self.head_dim,
            rms_norm_eps: self.rms_norm_eps,
            max_positions: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
        };
        let mut spec = dims.spec(&self.rope)?;
        spec.activation = activation;
        spec.qkv_bias = self.attention_bias;
        spec.o_bias = self.attention_bias;
        spec.mlp_bias = self.mlp_bias;
        spec.check()?;
        Ok(spec)
    }

    /// Why this config cannot describe a usable model, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.model_type != "llama" {
            return Err(format!(
                "config.json: model_type is {:?}; this reader is for \"llama\"",
                self.model_type
            ));
        }
        self.spec().map(|_| ())
    }

    /// Every tensor a causal-LM checkpoint with this config holds, with its shape, in the
    /// Hugging Face naming (`model.layers.{i}.self_attn.q_proj.weight`, …).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        self.spec()
            .map(|spec| spec.expected_tensors(true))
            .unwrap_or_default()
    }
}

/// A Llama causal LM: the shared decoder with Llama's choices.
pub struct Model(Decoder);

impl Model {
    /// Builds the model from `vb` (a checkpoint's tensors, or a `VarMap` for training).
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
