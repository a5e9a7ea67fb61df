//! Encoder reward models as transformers saves them: `BertForSequenceClassification`,
//! `RobertaForSequenceClassification` and `DebertaV2ForSequenceClassification` with one label.
//!
//! Researchers' verifiers are often such classifiers (a reward model is a classifier with one
//! output). This module holds what the three share: reading the classification fields of
//! `config.json` (`architectures`, `id2label`/`num_labels`), choosing the architecture, the
//! tensors a checkpoint of each must hold, and one model type over the three so the verifier
//! can score with the checkpoint's own head, or train that head's last layer on frozen
//! features. The architectures themselves live in [`super::bert`], [`super::roberta`] and
//! [`super::deberta_v2`].

use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::bert::{BertConfig, BertForSequenceClassification};
use super::deberta_v2::{DebertaV2Config, DebertaV2ForSequenceClassification};
use super::roberta::{RobertaConfig, RobertaForSequenceClassification};

/// The classification fields of a transformers `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceClassification {
    /// `architectures` as saved (`["RobertaForSequenceClassification"]`, …).
    pub architectures: Vec<String>,
    /// Number of outputs: the size of `id2label` when present (transformers derives it from
    /// there), else `num_labels`, else transformers' default of 2.
    pub num_labels: usize,
    /// Where `num_labels` came from, for messages.
    source: &'static str,
}

impl SequenceClassification {
    /// Reads the fields from a parsed `config.json`.
    pub fn from_value(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let architectures = match value.get("architectures") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|a| {
                    a.as_str().map(str::to_string).ok_or_else(|| {
                        format!("config.json: architectures must be a list of names, not {a}")
                    })
                })
                .collect::<std::result::Result<_, _>>()?,
            Some(other) => {
                return Err(format!(
                    "config.json: architectures must be a list of names, not {other}"
                ));
            }
        };
        let (num_labels, source) = match (value.get("id2label"), value.get("num_labels")) {
            (Some(serde_json::Value::Object(labels)), _) => (labels.len(), "id2label"),
            (Some(serde_json::Value::Null) | None, Some(n)) if !n.is_null() => {
                let n = n.as_u64().ok_or_else(|| {
                    format!("config.json: num_labels must be a whole number, not {n}")
                })?;
                (n as usize, "num_labels")
            }
            (Some(other), _) if !other.is_null() => {
                return Err(format!(
                    "config.json: id2label must be an object of labels, not {other}"
                ));
            }
            _ => (
                2,
                "transformers' default, as config.json has neither id2label nor num_labels",
            ),
        };
        Ok(Self {
            architectures,
            num_labels,
            source,
        })
    }

    /// Whether `architectures` names `architecture`.
    pub fn is(&self, architecture: &str) -> bool {
        self.architectures.iter().any(|a| a == architecture)
    }

    /// The classifier must be `architecture` with exactly one output: a reward model gives a
    /// solution one score.
    pub fn check(&self, architecture: &str) -> std::result::Result<(), String> {
        if !self.is(architecture) {
            return Err(format!(
                "config.json: architectures is {:?}; a verifier of this model_type must be a {architecture} reward model (num_labels 1)",
                self.architectures
            ));
        }
        if self.num_labels != 1 {
            return Err(format!(
                "config.json: num_labels is {} ({}); a reward model gives one score, so a {architecture} verifier needs num_labels 1 (id2label with one entry)",
                self.num_labels, self.source
            ));
        }
        Ok(())
    }
}

/// The tensors of an encoder classifier checkpoint, by role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassifierTensors {
    /// Present with these shapes, always.
    pub required: Vec<(String, Vec<usize>)>,
    /// Accepted with these shapes when present, never read (things transformers itself
    /// ignores on load).
    pub optional: Vec<(String, Vec<usize>)>,
    /// Integer buffers older exports save (`…embeddings.position_ids`): accepted, not weights.
    pub buffers: Vec<(String, Vec<usize>)>,
    /// The classifier's last layer (weight `[1, in]`, bias `[1]`), also in `required`: what
    /// training from the ratings changes.
    pub head: Vec<(String, Vec<usize>)>,
}

/// The `config.json` of an encoder reward model, by architecture.
#[derive(Debug, Clone, PartialEq)]
pub enum EncoderClassifierConfig {
    /// `BertForSequenceClassification` (`model_type` `"bert"`).
    Bert(BertConfig, SequenceClassification),
    /// `RobertaForSequenceClassification` (`model_type` `"roberta"`).
    Roberta(RobertaConfig),
    /// `DebertaV2ForSequenceClassification` (`model_type` `"deberta-v2"`).
    DebertaV2(DebertaV2Config),
}

/// `architectures` entry of a BERT classifier.
pub const BERT_CLASSIFIER: &str = "BertForSequenceClassification";

impl EncoderClassifierConfig {
    /// The encoder classifier `value` describes, if its `model_type` is one: `"roberta"` and
    /// `"deberta-v2"` always are (only their classifiers are supported), `"bert"` only with
    /// `architectures` naming [`BERT_CLASSIFIER`] (otherwise it is the mean-pooled backbone
    /// of [`super::bert::BertEncoder`]). `None` for every other model type. Parsed, not
    /// checked: call [`EncoderClassifierConfig::check`].
    pub fn parse(
        model_type: Option<&str>,
        value: &serde_json::Value,
    ) -> Option<std::result::Result<Self, String>> {
        let parsed = match model_type? {
            "bert" => {
                let head = match SequenceClassification::from_value(value) {
                    Ok(head) if head.is(BERT_CLASSIFIER) => head,
                    Ok(_) => return None,
                    Err(e) => return Some(Err(e)),
                };
                serde_json::from_value::<BertConfig>(value.clone())
                    .map(|encoder| Self::Bert(encoder, head))
                    .map_err(|e| format!("config.json is not a valid BERT config: {e}"))
            }
            "roberta" => RobertaConfig::from_value(value).map(Self::Roberta),
            "deberta-v2" => DebertaV2Config::from_value(value).map(Self::DebertaV2),
            _ => return None,
        };
        Some(parsed)
    }

    /// The architecture's `model_type`.
    pub fn model_type(&self) -> &str {
        match self {
            Self::Bert(c, _) => &c.model_type,
            Self::Roberta(c) => &c.encoder.model_type,
            Self::DebertaV2(c) => &c.model_type,
        }
    }

    /// The architecture's name as people write it ("BERT", "RoBERTa", "DeBERTa-v2").
    pub fn display_name(&self) -> &'static str {
        match self {
            Self::Bert(..) => "BERT",
            Self::Roberta(_) => "RoBERTa",
            Self::DebertaV2(_) => "DeBERTa-v2",
        }
    }

    /// `architectures` as saved.
    pub fn architectures(&self) -> &[String] {
        match self {
            Self::Bert(_, head) => &head.architectures,
            Self::Roberta(c) => &c.classification.architectures,
            Self::DebertaV2(c) => &c.classification.architectures,
        }
    }

    /// The transformers class name, for messages ("BertForSequenceClassification", …).
    pub fn class_name(&self) -> &'static str {
        match self {
            Self::Bert(..) => BERT_CLASSIFIER,
            Self::Roberta(_) => super::roberta::ROBERTA_CLASSIFIER,
            Self::DebertaV2(_) => super::deberta_v2::DEBERTA_V2_CLASSIFIER,
        }
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Bert(c, _) => c.hidden_size,
            Self::Roberta(c) => c.encoder.hidden_size,
            Self::DebertaV2(c) => c.hidden_size,
        }
    }

    /// Token vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Bert(c, _) => c.vocab_size,
            Self::Roberta(c) => c.encoder.vocab_size,
            Self::DebertaV2(c) => c.vocab_size,
        }
    }

    /// The padding token id: batches are right-padded with it.
    pub fn pad_token_id(&self) -> u32 {
        match self {
            Self::Bert(c, _) => c.pad_token_id,
            Self::Roberta(c) => c.encoder.pad_token_id,
            Self::DebertaV2(c) => c.pad_token_id,
        }
    }

    /// The most tokens (special tokens included) one input may have.
    pub fn max_tokens(&self) -> usize {
        match self {
            Self::Bert(c, _) => c.max_position_embeddings,
            Self::Roberta(c) => c.max_tokens(),
            Self::DebertaV2(c) => c.max_position_embeddings,
        }
    }

    /// Why the config cannot describe a supported reward model, if it cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        match self {
            Self::Bert(c, head) => {
                head.check(BERT_CLASSIFIER)?;
                c.check()
            }
            Self::Roberta(c) => c.check(),
            Self::DebertaV2(c) => c.check(),
        }
    }

    /// The tensors a checkpoint must and may hold, in transformers' names.
    pub fn tensors(&self) -> ClassifierTensors {
        match self {
            Self::Bert(c, _) => BertForSequenceClassification::tensors(c),
            Self::Roberta(c) => c.tensors(),
            Self::DebertaV2(c) => c.tensors(),
        }
    }

    /// Encoder layers, and tensors each needs: for the early size check of uploads.
    pub fn layers(&self) -> (usize, usize) {
        match self {
            Self::Bert(c, _) => (c.num_hidden_layers, BertConfig::TENSORS_PER_LAYER),
            Self::Roberta(c) => (c.encoder.num_hidden_layers, BertConfig::TENSORS_PER_LAYER),
            Self::DebertaV2(c) => (c.num_hidden_layers, DebertaV2Config::TENSORS_PER_LAYER),
        }
    }

    /// What the checkpoints row records about the architecture.
    pub fn architecture(&self) -> serde_json::Value {
        let (layers, _) = self.layers();
        let mut out = serde_json::json!({
            "model_type": self.model_type(),
            "architectures": [self.class_name()],
            "num_labels": 1,
            "hidden_size": self.hidden_size(),
            "num_hidden_layers": layers,
            "vocab_size": self.vocab_size(),
            "max_tokens": self.max_tokens(),
        });
        if let Self::DebertaV2(c) = self {
            out["position_buckets"] = c.position_buckets.into();
            out["pos_att_type"] = c.pos_att_type.clone().into();
        }
        out
    }
}

/// An encoder reward model loaded for scoring: the checkpoint's whole network, its own head
/// included.
pub enum EncoderClassifier {
    /// `BertForSequenceClassification`.
    Bert(BertForSequenceClassification),
    /// `RobertaForSequenceClassification`.
    Roberta(RobertaForSequenceClassification),
    /// `DebertaV2ForSequenceClassification`.
    DebertaV2(DebertaV2ForSequenceClassification),
}

impl EncoderClassifier {
    /// Builds the model from `vb` at the checkpoint's root (names as transformers saves them);
    /// the config is checked first.
    pub fn new(config: &EncoderClassifierConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::msg)?;
        Ok(match config {
            EncoderClassifierConfig::Bert(c, _) => {
                Self::Bert(BertForSequenceClassification::new(c, vb)?)
            }
            EncoderClassifierConfig::Roberta(c) => {
                Self::Roberta(RobertaForSequenceClassification::new(c, vb)?)
            }
            EncoderClassifierConfig::DebertaV2(c) => {
                Self::DebertaV2(DebertaV2ForSequenceClassification::new(c, vb)?)
            }
        })
    }

    /// What the classifier's last layer reads, `(batch, in)`, for right-padded u32 `ids`
    /// `(batch, seq)` with real lengths `lengths`: every weight before that layer applied.
    pub fn features(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        match self {
            Self::Bert(m) => m.features(ids, lengths),
            Self::Roberta(m) => m.features(ids, lengths),
            Self::DebertaV2(m) => m.features(ids, lengths),
        }
    }

    /// The checkpoint's own scores, `(batch,)`: transformers' logits.
    pub fn scores(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        use candle_core::Module;
        self.head()
            .forward(&self.features(ids, lengths)?)?
            .squeeze(1)
    }

    /// The last layer, as loaded.
    pub fn head(&self) -> &Linear {
        match self {
            Self::Bert(m) => m.head(),
            Self::Roberta(m) => m.head(),
            Self::DebertaV2(m) => m.head(),
        }
    }
}
