//! transformers' `RobertaForSequenceClassification` with one label, as a verifier's reward
//! model.
//!
//! RoBERTa's encoder layers are BERT's (post-norm, GELU), so they come from [`super::bert`];
//! what differs is the embeddings' position ids, counted from the ids themselves
//! (`cumsum(id != pad) · (id != pad) + pad`: pads get `pad`, real tokens `pad + 1`, …), and the
//! head, which reads `<s>` through `classifier.dense` + tanh and then `classifier.out_proj`
//! (RoBERTa has no pooler).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::bert::{BertConfig, BertEncoder, POSITION_IDS, PositionIds};
use super::encoder_classifier::{ClassifierTensors, SequenceClassification};

/// `architectures` entry of a RoBERTa classifier.
pub const ROBERTA_CLASSIFIER: &str = "RobertaForSequenceClassification";
/// The prefix of the encoder's tensor names.
pub const ROBERTA_PREFIX: &str = "roberta.";

/// A RoBERTa `config.json`: BERT's fields (the encoder is BERT's) with RoBERTa's default
/// padding id 1, plus the classification fields.
#[derive(Debug, Clone, PartialEq)]
pub struct RobertaConfig {
    /// The encoder's fields; `model_type` is `"roberta"`.
    pub encoder: BertConfig,
    /// `architectures`, `num_labels`.
    pub classification: SequenceClassification,
}

impl RobertaConfig {
    /// Reads a parsed `config.json`; missing fields take transformers' `RobertaConfig`
    /// defaults (BERT's, except `pad_token_id` 1). Not checked: see [`RobertaConfig::check`].
    pub fn from_value(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let mut value = value.clone();
        if let Some(fields) = value.as_object_mut()
            && fields.get("pad_token_id").is_none_or(|v| v.is_null())
        {
            fields.insert("pad_token_id".into(), 1.into());
        }
        let encoder: BertConfig = serde_json::from_value(value.clone())
            .map_err(|e| format!("config.json is not a valid RoBERTa config: {e}"))?;
        Ok(Self {
            encoder,
            classification: SequenceClassification::from_value(&value)?,
        })
    }

    /// Why this config cannot describe a supported RoBERTa reward model, if it cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.encoder.model_type != "roberta" {
            return Err(format!(
                "config.json: model_type is {:?}; a RoBERTa classifier needs \"roberta\"",
                self.encoder.model_type
            ));
        }
        self.classification.check(ROBERTA_CLASSIFIER)?;
        self.encoder.check_encoder()?;
        if self.max_tokens() == 0 {
            return Err(format!(
                "config.json: max_position_embeddings {} leaves no position for a token after the padding id {} (RoBERTa counts positions from pad_token_id + 1)",
                self.encoder.max_position_embeddings, self.encoder.pad_token_id
            ));
        }
        Ok(())
    }

    /// The most tokens one input may have: positions run from `pad + 1` to
    /// `max_position_embeddings - 1` (512 for the usual 514).
    pub fn max_tokens(&self) -> usize {
        self.encoder
            .max_position_embeddings
            .saturating_sub(self.encoder.pad_token_id as usize + 1)
    }

    /// Every tensor such a checkpoint holds, in transformers' names.
    pub fn tensors(&self) -> ClassifierTensors {
        let h = self.encoder.hidden_size;
        let head = vec![
            ("classifier.out_proj.weight".to_string(), vec![1, h]),
            ("classifier.out_proj.bias".to_string(), vec![1]),
        ];
        let mut required = self.encoder.expected_tensors(ROBERTA_PREFIX);
        required.push(("classifier.dense.weight".into(), vec![h, h]));
        required.push(("classifier.dense.bias".into(), vec![h]));
        required.extend(head.iter().cloned());
        ClassifierTensors {
            required,
            optional: Vec::new(),
            buffers: vec![(
                format!("{ROBERTA_PREFIX}{POSITION_IDS}"),
                vec![1, self.encoder.max_position_embeddings],
            )],
            head,
        }
    }
}

/// `RobertaForSequenceClassification` with one label.
#[derive(Debug, Clone)]
pub struct RobertaForSequenceClassification {
    encoder: BertEncoder,
    dense: Linear,
    out_proj: Linear,
}

impl RobertaForSequenceClassification {
    /// Builds the classifier from `vb` at the checkpoint's root. The config is checked.
    pub fn new(config: &RobertaConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::msg)?;
        let h = config.encoder.hidden_size;
        let positions = PositionIds::FromIds {
            pad: config.encoder.pad_token_id,
        };
        let encoder = BertEncoder::build(&config.encoder, positions, vb.pp("roberta"))?;
        let head = vb.pp("classifier");
        Ok(Self {
            encoder,
            dense: candle_nn::linear(h, h, head.pp("dense"))?,
            out_proj: candle_nn::linear(h, 1, head.pp("out_proj"))?,
        })
    }

    /// `tanh(classifier.dense(h[<s>]))`, `(batch, hidden)`: what `out_proj` reads.
    pub fn features(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let hidden = self.encoder.hidden_states(ids, lengths)?;
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        self.dense.forward(&first)?.tanh()
    }

    /// The `classifier.out_proj` layer.
    pub fn head(&self) -> &Linear {
        &self.out_proj
    }
}
