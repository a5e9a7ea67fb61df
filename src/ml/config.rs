//! The Hugging Face `config.json` of a Llama-architecture checkpoint, and the tensors it implies;
//! [`ModelConfig`] also covers the BERT-family verifier backbone ([`super::bert::BertConfig`]).
//!
//! One place states what a checkpoint must contain, so loading, training and upload
//! validation all agree on names and shapes.

use serde::{Deserialize, Serialize};

use super::bert::BertConfig;
use super::encoder_classifier::EncoderClassifierConfig;

/// The fields of a Hugging Face `LlamaConfig` this project reads. Unknown fields are ignored so
/// real exported configs load; missing optional ones take the Llama defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Always a list containing `"LlamaForCausalLM"` for checkpoints this project writes.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `"llama"`; other model types are refused.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads; `hidden_size` must be a multiple of it.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to `num_attention_heads`.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Tokenizer vocabulary size.
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    /// Longest sequence (prompt + generation) the model supports.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Whether the output projection reuses the token embedding (then `lm_head.weight` is absent).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id, when the tokenizer has one.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id, when the tokenizer has one.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_model_type() -> String {
    "llama".to_string()
}
fn default_rms_norm_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f32 {
    10_000.0
}
fn default_max_positions() -> usize {
    2048
}

impl LlamaConfig {
    /// Key/value heads, resolving the Llama default.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Why this config cannot describe a usable model, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.model_type != "llama" {
            return Err(format!(
                "config.json: model_type is {:?}; only \"llama\" is supported",
                self.model_type
            ));
        }
        require_positive(&[
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ])?;
        require_heads_fit(self.hidden_size, self.num_attention_heads)?;
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "config.json: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err("config.json: the head width must be even for rotary embeddings".into());
        }
        Ok(())
    }

    /// Every tensor a checkpoint with this config holds, with its shape, in the Hugging Face
    /// naming (`model.layers.{i}.self_attn.q_proj.weight`, …).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let kv = self.kv_heads() * self.head_dim();
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for i in 0..self.num_hidden_layers {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            out.push((format!("{p}.self_attn.q_proj.weight"), vec![h, h]));
            out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
            out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, h]));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![f, h]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![f, h]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![h, f]));
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }
}

/// `Err("config.json: NAME must be positive")` for the first zero among `fields`: the
/// size checks every architecture's config shares.
pub(crate) fn require_positive(fields: &[(&str, usize)]) -> Result<(), String> {
    match fields.iter().find(|(_, value)| *value == 0) {
        Some((name, _)) => Err(format!("config.json: {name} must be positive")),
        None => Ok(()),
    }
}

/// The attention heads must split the hidden width evenly (heads positive: checked first).
pub(crate) fn require_heads_fit(hidden_size: usize, heads: usize) -> Result<(), String> {
    if hidden_size.is_multiple_of(heads) {
        Ok(())
    } else {
        Err(format!(
            "config.json: hidden_size {hidden_size} is not a multiple of num_attention_heads {heads}"
        ))
    }
}

/// A checkpoint's `config.json`, whichever architecture it describes: provers are always Llama,
/// verifiers are a Llama body or a BERT-family encoder, each with a score head. Upload
/// validation and the stored metadata work on this so both verifier backbones share one path.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// A Llama-architecture decoder (`model_type` `"llama"`, or absent).
    Llama(LlamaConfig),
    /// A BERT-family encoder (`model_type` `"bert"`).
    Bert(BertConfig),
    /// An encoder reward model (verifiers only): `BertForSequenceClassification`,
    /// `RobertaForSequenceClassification` or `DebertaV2ForSequenceClassification`, one label.
    EncoderClassifier(EncoderClassifierConfig),
}

impl ModelConfig {
    /// Parses `config.json`, choosing the architecture by its `model_type` (`"bert"` → BERT,
    /// `"llama"` or absent → Llama; anything else is refused naming it). The config is parsed,
    /// not checked: call [`ModelConfig::check`]. Messages start with `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("config.json is not valid JSON: {e}"))?;
        let model_type = match value.get("model_type") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(format!(
                    "config.json: model_type must be a string, not {other}"
                ));
            }
        };
        if let Some(parsed) = EncoderClassifierConfig::parse(model_type.as_deref(), &value) {
            return parsed.map(ModelConfig::EncoderClassifier);
        }
        match model_type.as_deref() {
            Some("bert") => serde_json::from_value(value)
                .map(ModelConfig::Bert)
                .map_err(|e| format!("config.json is not a valid BERT config: {e}")),
            None | Some("llama") => serde_json::from_value(value)
                .map(ModelConfig::Llama)
                .map_err(|e| format!("config.json is not a valid Llama config: {e}")),
            Some(other) => Err(format!(
                "config.json: model_type is {other:?}; only \"llama\" (provers and verifiers) and \"bert\", \"roberta\", \"deberta-v2\" (verifiers) are supported"
            )),
        }
    }

    /// The architecture's `model_type` (`"llama"` or `"bert"`).
    pub fn model_type(&self) -> &str {
        match self {
            ModelConfig::Llama(c) => &c.model_type,
            ModelConfig::Bert(c) => &c.model_type,
            ModelConfig::EncoderClassifier(c) => c.model_type(),
        }
    }

    /// Width of the hidden states: the score head's input size.
    pub fn hidden_size(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.hidden_size,
            ModelConfig::Bert(c) => c.hidden_size,
            ModelConfig::EncoderClassifier(c) => c.hidden_size(),
        }
    }

    /// Token vocabulary size, which the tokenizer must fit.
    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.vocab_size,
            ModelConfig::Bert(c) => c.vocab_size,
            ModelConfig::EncoderClassifier(c) => c.vocab_size(),
        }
    }

    /// Why the config cannot describe a usable model, if it cannot (the architecture's own
    /// check).
    pub fn check(&self) -> Result<(), String> {
        match self {
            ModelConfig::Llama(c) => c.check(),
            ModelConfig::Bert(c) => c.check(),
            ModelConfig::EncoderClassifier(c) => c.check(),
        }
    }

    /// The Llama config, if this is one.
    pub fn as_llama(&self) -> Option<&LlamaConfig> {
        match self {
            ModelConfig::Llama(c) => Some(c),
            ModelConfig::Bert(_) | ModelConfig::EncoderClassifier(_) => None,
        }
    }

    /// The BERT config, if this is one.
    pub fn as_bert(&self) -> Option<&BertConfig> {
        match self {
            ModelConfig::Bert(c) => Some(c),
            ModelConfig::Llama(_) | ModelConfig::EncoderClassifier(_) => None,
        }
    }

    /// What the checkpoints row records about the architecture (`model_type` first).
    pub fn architecture(&self) -> serde_json::Value {
        match self {
            ModelConfig::Llama(c) => serde_json::json!({
                "model_type": c.model_type,
                "hidden_size": c.hidden_size,
                "intermediate_size": c.intermediate_size,
                "num_hidden_layers": c.num_hidden_layers,
                "num_attention_heads": c.num_attention_heads,
                "num_key_value_heads": c.kv_heads(),
                "vocab_size": c.vocab_size,
                "max_position_embeddings": c.max_position_embeddings,
                "tie_word_embeddings": c.tie_word_embeddings,
            }),
            ModelConfig::Bert(c) => serde_json::json!({
                "model_type": c.model_type,
                "hidden_size": c.hidden_size,
                "intermediate_size": c.intermediate_size,
                "num_hidden_layers": c.num_hidden_layers,
                "num_attention_heads": c.num_attention_heads,
                "vocab_size": c.vocab_size,
                "max_position_embeddings": c.max_position_embeddings,
                "type_vocab_size": c.type_vocab_size,
                "hidden_act": c.hidden_act,
            }),
            ModelConfig::EncoderClassifier(c) => c.architecture(),
        }
    }
}

impl From<LlamaConfig> for ModelConfig {
    fn from(config: LlamaConfig) -> Self {
        ModelConfig::Llama(config)
    }
}

impl From<BertConfig> for ModelConfig {
    fn from(config: BertConfig) -> Self {
        ModelConfig::Bert(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_config_picks_the_architecture_by_model_type() {
        let llama = br#"{"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":16}"#;
        let config = ModelConfig::from_json(llama).expect("llama");
        assert_eq!(config.model_type(), "llama");
        assert!(config.as_llama().is_some() && config.as_bert().is_none());
        assert_eq!((config.hidden_size(), config.vocab_size()), (8, 16));
        assert_eq!(config.architecture()["num_key_value_heads"], 2);
        let bert = br#"{"model_type":"bert","hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":16}"#;
        let config = ModelConfig::from_json(bert).expect("bert");
        assert_eq!(config.model_type(), "bert");
        assert_eq!(config.check(), Ok(()));
        assert_eq!(config.architecture()["hidden_act"], "gelu");
        let err = ModelConfig::from_json(br#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(err.contains("\"gpt2\""), "{err}");
        let err = ModelConfig::from_json(br#"{"model_type":"bert","hidden_size":8}"#).unwrap_err();
        assert!(
            err.starts_with("config.json is not a valid BERT config"),
            "{err}"
        );
        let err = ModelConfig::from_json(br#"{"hidden_size":8}"#).unwrap_err();
        assert!(
            err.starts_with("config.json is not a valid Llama config"),
            "{err}"
        );
        let err = ModelConfig::from_json(b"[1]").unwrap_err();
        assert!(
            err.starts_with("config.json is not a valid Llama config"),
            "{err}"
        );
    }
}
