//! A checkpoint's `config.json`, whichever architecture it describes ([`ModelConfig`]), and
//! what every decoder config shares: token id lists, the resolved dimensions ([`Dims`]) and
//! the refusal of quantised checkpoints. Each architecture reads its own fields in its own
//! file (`llama`, `mistral`, `qwen2`, `qwen3`, `phi3`, `gemma2`, `bert`); one place states
//! what a checkpoint must contain, so loading, training and upload validation agree on names
//! and shapes.

use serde::{Deserialize, Serialize};

use super::bert::BertConfig;
use super::decoder::{Activation, DecoderSpec};
use super::encoder_classifier::EncoderClassifierConfig;
use super::rope::{Rope, RopeFields};
use super::{gemma2, mistral, phi3, qwen2, qwen3};

pub use super::llama::Config as LlamaConfig;

/// A token id field that configs write as one id or a list (Llama-3 instruct's
/// `eos_token_id: [128001, 128008, 128009]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(u32),
    /// Several ids, any of which counts.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids, in the order written.
    pub fn ids(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// The ids of an optional id field (none when absent).
pub fn token_ids(field: &Option<TokenIds>) -> Vec<u32> {
    field.as_ref().map(TokenIds::ids).unwrap_or_default()
}

/// A quantised checkpoint (GPTQ, AWQ, bitsandbytes, …) stores packed integers, not the tensors
/// this code multiplies: refused by name with what to do instead.
pub fn refuse_quantized(quantization: &Option<serde_json::Value>) -> Result<(), String> {
    match quantization {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(q) => {
            let method = q
                .get("quant_method")
                .and_then(|m| m.as_str())
                .unwrap_or("unnamed");
            Err(format!(
                "config.json: quantization_config ({method}) is set: quantised checkpoints are not supported; upload the unquantised (fp32, fp16 or bf16) checkpoint instead"
            ))
        }
    }
}

/// What every decoder config states in the same terms, resolved with its architecture's
/// defaults: the start of its [`DecoderSpec`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dims {
    pub model_type: &'static str,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Explicit `head_dim`, else hidden / heads.
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub max_positions: usize,
    pub tie_word_embeddings: bool,
}

impl Dims {
    /// The plain Llama-style spec of these dimensions with `rope`: every optional feature
    /// off, SiLU, scores scaled by 1/√head_dim, full attention in every layer; the
    /// architecture then switches on what it has.
    pub fn spec(&self, rope: &RopeFields) -> Result<DecoderSpec, String> {
        if self.heads == 0 {
            return Err("config.json: num_attention_heads must be positive".into());
        }
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / self.heads);
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.heads) {
            return Err(format!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.heads
            ));
        }
        Ok(DecoderSpec {
            model_type: self.model_type.to_string(),
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_layers,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim,
            rms_norm_eps: self.rms_norm_eps,
            max_positions: self.max_positions,
            rope: Rope::from_fields(rope, self.max_positions, 10_000.0, head_dim)?,
            tie_word_embeddings: self.tie_word_embeddings,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
            fused_projections: false,
            norm_offset: 0.0,
            embedding_scale: None,
            sandwich_norms: false,
            activation: Activation::Silu,
            attention_scale: 1.0 / (head_dim.max(1) as f64).sqrt(),
            attention_softcap: None,
            final_softcap: None,
            windows: vec![None; self.num_layers],
        })
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

/// A checkpoint's `config.json`, whichever architecture it describes: a decoder (Llama,
/// Mistral, Qwen2, Qwen3, Phi-3, Gemma 2: provers, and verifiers with a score head) or a
/// BERT-family encoder (verifiers). Upload validation and the stored metadata work on this so
/// every architecture shares one path.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// Llama 1/2/3.x (`model_type` `"llama"`, or absent: the project's own models).
    Llama(LlamaConfig),
    /// Mistral.
    Mistral(mistral::Config),
    /// Qwen2 / Qwen2.5.
    Qwen2(qwen2::Config),
    /// Qwen3.
    Qwen3(qwen3::Config),
    /// Phi-3.
    Phi3(phi3::Config),
    /// Gemma 2.
    Gemma2(gemma2::Config),
    /// A BERT-family encoder (`model_type` `"bert"`).
    Bert(BertConfig),
    /// An encoder reward model (verifiers only): `BertForSequenceClassification`,
    /// `RobertaForSequenceClassification` or `DebertaV2ForSequenceClassification`, one label.
    EncoderClassifier(EncoderClassifierConfig),
}

/// The `model_type`s a checkpoint may have, for messages.
pub const SUPPORTED_MODEL_TYPES: &str = "llama, mistral, qwen2, qwen3, phi3, gemma2 (provers and verifiers), bert, roberta, deberta-v2 (verifiers)";

impl ModelConfig {
    /// Parses `config.json`, choosing the architecture by its `model_type` (absent: Llama, as
    /// the project's oldest checkpoints wrote it; anything unsupported is refused naming it;
    /// a quantised checkpoint is refused before anything else). The config is parsed, not
    /// checked: call [`ModelConfig::check`]. Messages start with `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("config.json is not valid JSON: {e}"))?;
        if let Some(q) = value.get("quantization_config") {
            refuse_quantized(&Some(q.clone()))?;
        }
        let model_type = match value.get("model_type") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(format!(
                    "config.json: model_type must be a string, not {other}"
                ));
            }
        };
        fn parse<T: serde::de::DeserializeOwned>(
            value: serde_json::Value,
            name: &str,
        ) -> Result<T, String> {
            serde_json::from_value(value)
                .map_err(|e| format!("config.json is not a valid {name} config: {e}"))
        }
        if let Some(parsed) = EncoderClassifierConfig::parse(model_type.as_deref(), &value) {
            return parsed.map(ModelConfig::EncoderClassifier);
        }
        match model_type.as_deref() {
            Some("bert") => parse(value, "BERT").map(ModelConfig::Bert),
            None | Some("llama") => parse(value, "Llama").map(ModelConfig::Llama),
            Some("mistral") => parse(value, "Mistral").map(ModelConfig::Mistral),
            Some("qwen2") => parse(value, "Qwen2").map(ModelConfig::Qwen2),
            Some("qwen3") => parse(value, "Qwen3").map(ModelConfig::Qwen3),
            Some("phi3") => parse(value, "Phi-3").map(ModelConfig::Phi3),
            Some("gemma2") => parse(value, "Gemma 2").map(ModelConfig::Gemma2),
            Some(other) => Err(format!(
                "config.json: model_type is {other:?}, which is not supported; supported: {SUPPORTED_MODEL_TYPES}"
            )),
        }
    }

    /// The architecture's `model_type`.
    pub fn model_type(&self) -> &str {
        match self {
            ModelConfig::Llama(c) => &c.model_type,
            ModelConfig::Mistral(_) => "mistral",
            ModelConfig::Qwen2(_) => "qwen2",
            ModelConfig::Qwen3(_) => "qwen3",
            ModelConfig::Phi3(_) => "phi3",
            ModelConfig::Gemma2(_) => "gemma2",
            ModelConfig::Bert(c) => &c.model_type,
            ModelConfig::EncoderClassifier(c) => c.model_type(),
        }
    }

    /// The architecture's name as people write it, for messages ("Qwen2", "Phi-3", …).
    pub fn display_name(&self) -> &'static str {
        match self {
            ModelConfig::Llama(_) => "Llama",
            ModelConfig::Mistral(_) => "Mistral",
            ModelConfig::Qwen2(_) => "Qwen2",
            ModelConfig::Qwen3(_) => "Qwen3",
            ModelConfig::Phi3(_) => "Phi-3",
            ModelConfig::Gemma2(_) => "Gemma 2",
            ModelConfig::Bert(_) => "BERT",
            ModelConfig::EncoderClassifier(c) => c.display_name(),
        }
    }

    /// The `architectures` list (e.g. `["Qwen2ForSequenceClassification"]`).
    pub fn architectures(&self) -> &[String] {
        match self {
            ModelConfig::Llama(c) => &c.architectures,
            ModelConfig::Mistral(c) => &c.architectures,
            ModelConfig::Qwen2(c) => &c.architectures,
            ModelConfig::Qwen3(c) => &c.architectures,
            ModelConfig::Phi3(c) => &c.architectures,
            ModelConfig::Gemma2(c) => &c.architectures,
            ModelConfig::Bert(_) => &[],
            ModelConfig::EncoderClassifier(c) => c.architectures(),
        }
    }

    /// The decoder a decoder config describes (`None` for an encoder), or why it cannot be
    /// built.
    pub fn decoder_spec(&self) -> Option<Result<DecoderSpec, String>> {
        Some(match self {
            ModelConfig::Llama(c) => c.spec(),
            ModelConfig::Mistral(c) => c.spec(),
            ModelConfig::Qwen2(c) => c.spec(),
            ModelConfig::Qwen3(c) => c.spec(),
            ModelConfig::Phi3(c) => c.spec(),
            ModelConfig::Gemma2(c) => c.spec(),
            ModelConfig::Bert(_) | ModelConfig::EncoderClassifier(_) => return None,
        })
    }

    /// Width of the hidden states: the score head's input size.
    pub fn hidden_size(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.hidden_size,
            ModelConfig::Mistral(c) => c.hidden_size,
            ModelConfig::Qwen2(c) => c.hidden_size,
            ModelConfig::Qwen3(c) => c.hidden_size,
            ModelConfig::Phi3(c) => c.hidden_size,
            ModelConfig::Gemma2(c) => c.hidden_size,
            ModelConfig::Bert(c) => c.hidden_size,
            ModelConfig::EncoderClassifier(c) => c.hidden_size(),
        }
    }

    /// Token vocabulary size, which the tokenizer must fit.
    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.vocab_size,
            ModelConfig::Mistral(c) => c.vocab_size,
            ModelConfig::Qwen2(c) => c.vocab_size,
            ModelConfig::Qwen3(c) => c.vocab_size,
            ModelConfig::Phi3(c) => c.vocab_size,
            ModelConfig::Gemma2(c) => c.vocab_size,
            ModelConfig::Bert(c) => c.vocab_size,
            ModelConfig::EncoderClassifier(c) => c.vocab_size(),
        }
    }

    /// The beginning-of-sequence id the config names, if any.
    pub fn bos_token_id(&self) -> Option<u32> {
        match self {
            ModelConfig::Llama(c) => c.bos_token_id,
            ModelConfig::Mistral(c) => c.bos_token_id,
            ModelConfig::Qwen2(c) => c.bos_token_id,
            ModelConfig::Qwen3(c) => c.bos_token_id,
            ModelConfig::Phi3(c) => c.bos_token_id,
            ModelConfig::Gemma2(c) => c.bos_token_id,
            ModelConfig::Bert(_) | ModelConfig::EncoderClassifier(_) => None,
        }
    }

    /// Every end-of-sequence id the config names (one, a list, or none).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        match self {
            ModelConfig::Llama(c) => token_ids(&c.eos_token_id),
            ModelConfig::Mistral(c) => token_ids(&c.eos_token_id),
            ModelConfig::Qwen2(c) => token_ids(&c.eos_token_id),
            ModelConfig::Qwen3(c) => token_ids(&c.eos_token_id),
            ModelConfig::Phi3(c) => token_ids(&c.eos_token_id),
            ModelConfig::Gemma2(c) => token_ids(&c.eos_token_id),
            ModelConfig::Bert(_) | ModelConfig::EncoderClassifier(_) => Vec::new(),
        }
    }

    /// The padding id the config names, if any (reward models read their score at the last
    /// token that is not it).
    pub fn pad_token_id(&self) -> Option<u32> {
        match self {
            ModelConfig::Llama(c) => c.pad_token_id,
            ModelConfig::Mistral(c) => c.pad_token_id,
            ModelConfig::Qwen2(c) => c.pad_token_id,
            ModelConfig::Qwen3(c) => c.pad_token_id,
            ModelConfig::Phi3(c) => c.pad_token_id,
            ModelConfig::Gemma2(c) => c.pad_token_id,
            ModelConfig::Bert(c) => Some(c.pad_token_id),
            ModelConfig::EncoderClassifier(c) => Some(c.pad_token_id()),
        }
    }

    /// Why the config cannot describe a usable model, if it cannot (the architecture's own
    /// check).
    pub fn check(&self) -> Result<(), String> {
        match self {
            ModelConfig::Llama(c) => c.check(),
            ModelConfig::Bert(c) => c.check(),
            ModelConfig::EncoderClassifier(c) => c.check(),
            other => other.decoder_spec().map_or(Ok(()), |spec| spec.map(|_| ())),
        }
    }

    /// The Llama config, if this is one.
    pub fn as_llama(&self) -> Option<&LlamaConfig> {
        match self {
            ModelConfig::Llama(c) => Some(c),
            _ => None,
        }
    }

    /// The BERT config, if this is one.
    pub fn as_bert(&self) -> Option<&BertConfig> {
        match self {
            ModelConfig::Bert(c) => Some(c),
            _ => None,
        }
    }

    /// What the checkpoints row records about the architecture (`model_type` first).
    pub fn architecture(&self) -> serde_json::Value {
        if let ModelConfig::EncoderClassifier(c) = self {
            return c.architecture();
        }
        if let ModelConfig::Bert(c) = self {
            return serde_json::json!({
                "model_type": c.model_type,
                "hidden_size": c.hidden_size,
                "intermediate_size": c.intermediate_size,
                "num_hidden_layers": c.num_hidden_layers,
                "num_attention_heads": c.num_attention_heads,
                "vocab_size": c.vocab_size,
                "max_position_embeddings": c.max_position_embeddings,
                "type_vocab_size": c.type_vocab_size,
                "hidden_act": c.hidden_act,
            });
        }
        match self.decoder_spec() {
            Some(Ok(spec)) => serde_json::json!({
                "model_type": self.model_type(),
                "architectures": self.architectures(),
                "hidden_size": spec.hidden_size,
                "intermediate_size": spec.intermediate_size,
                "num_hidden_layers": spec.num_layers,
                "num_attention_heads": spec.heads,
                "num_key_value_heads": spec.kv_heads,
                "head_dim": spec.head_dim,
                "vocab_size": spec.vocab_size,
                "max_position_embeddings": spec.max_positions,
                "tie_word_embeddings": spec.tie_word_embeddings,
                "rope_type": spec.rope.kind(),
                "rope_theta": spec.rope.theta,
                "sliding_window": spec.windows.iter().flatten().max(),
            }),
            _ => serde_json::json!({ "model_type": self.model_type() }),
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
