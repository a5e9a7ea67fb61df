//! The verifier: a small Llama body with a scalar score head, and the paper's losses.
//!
//! The paper's verifier is a smaller LM with a reward head that scores a whole solution. Here
//! the score is read at the solution's last token (the body is causal, so that position has
//! seen everything). Training compares solutions of the same problem: Bradley–Terry on
//! (correct, incorrect) pairs plus λ·E[V²] to keep scores centred, or plain cross-entropy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{Linear, VarBuilder, VarMap};
use serde::Serialize;
use tokenizers::Tokenizer;

use super::ModelError;
use super::bert::{BertEncoder, tensor_prefix};
use super::config::{LlamaConfig, ModelConfig};
use super::decoder::Decoder;
use super::decoder::DecoderSpec;
use super::encoder_classifier::EncoderClassifier;
use super::tokenizer::{self, EOS, PAD};

/// Name prefix of the score head's tensors (`score.weight`, `score.bias`).
pub const SCORE_HEAD: &str = "score";

/// A decoder body (any supported architecture) + scalar head.
pub struct VerifierModel {
    body: Decoder,
    head: Linear,
}

impl VerifierModel {
    /// Builds the verifier from `vb` (a checkpoint, or a `VarMap` for training). The body's
    /// language-model head is never used: the spec's embeddings are tied so none is read.
    /// `head_bias`: the project's own verifiers have `score.bias`; transformers'
    /// `*ForSequenceClassification` decoders have none, and a version trained from one must
    /// not grow one (transformers would drop it on load and score differently).
    pub fn new(spec: &DecoderSpec, head_bias: bool, vb: VarBuilder) -> Result<Self> {
        let mut spec = spec.clone();
        spec.tie_word_embeddings = true;
        let body = Decoder::new(&spec, vb.clone())?;
        let head = if head_bias {
            candle_nn::linear(spec.hidden_size, 1, vb.pp(SCORE_HEAD))?
        } else {
            candle_nn::linear_no_bias(spec.hidden_size, 1, vb.pp(SCORE_HEAD))?
        };
        Ok(Self { body, head })
    }

    /// A Llama verifier (the project's own) from its config.
    pub fn llama(config: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        Self::new(&config.spec().map_err(candle_core::Error::msg)?, true, vb)
    }

    /// Scores `(batch,)` of right-padded token ids `(batch, seq)`: the head applied to each
    /// row's hidden state at `pooled[row]` (its last real token, or for a transformers reward
    /// model its last token that is not the padding id).
    pub fn scores(
        &mut self,
        ids: &Tensor,
        pooled: &[usize],
        differentiable: bool,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if pooled.len() != b || pooled.iter().any(|&n| n >= t) {
            candle_core::bail!("positions {pooled:?} do not fit a batch of {b} × {t}");
        }
        let hidden = self.body.hidden_states(ids, differentiable)?;
        self.score_hidden(&hidden, pooled)
    }

    /// The head applied to final hidden states `(batch, seq, hidden)` at `pooled[row]`.
    fn score_hidden(&self, hidden: &Tensor, pooled: &[usize]) -> Result<Tensor> {
        let (b, t, width) = hidden.dims3()?;
        let last: Vec<u32> = pooled
            .iter()
            .enumerate()
            .map(|(row, &n)| (row * t + n) as u32)
            .collect();
        let index = Tensor::new(last.as_slice(), hidden.device())?;
        let picked = hidden.reshape((b * t, width))?.index_select(&index, 0)?;
        self.head.forward(&picked)?.squeeze(1)
    }

    /// Scores where only the blocks from `layer` on (and the head) are computed here: the
    /// hidden states entering that block are `entering[row]` `(len_row, hidden)`, computed
    /// once (frozen) and padded on the right to one batch here.
    fn scores_from(
        &mut self,
        entering: &[Tensor],
        layer: usize,
        pooled: &[usize],
        differentiable: bool,
    ) -> Result<Tensor> {
        let longest = entering
            .iter()
            .map(|x| x.dim(0))
            .collect::<Result<Vec<_>>>()?;
        let longest = longest.into_iter().max().unwrap_or(1);
        let rows = entering
            .iter()
            .map(|x| {
                let n = x.dim(0)?;
                if n == longest {
                    Ok(x.clone())
                } else {
                    x.pad_with_zeros(0, 0, longest - n)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let x = Tensor::stack(&rows, 0)?;
        let hidden = self.body.hidden_from(&x, layer, differentiable)?;
        self.score_hidden(&hidden, pooled)
    }
}

/// Where transformers' `*ForSequenceClassification` reads a row's score: the last position
/// whose id is not `pad` (0 for a row of padding only), whatever the row's real length — a
/// text that ends in the padding id itself (common when pad = EOS) is read one token earlier.
pub fn last_non_pad(row: &[u32], pad: u32) -> usize {
    row.iter().rposition(|&id| id != pad).unwrap_or(0)
}

/// The weights file a verifier version is written to (body and head together).
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The file recording how a verifier version was trained and how well it did.
pub const TRAINING_FILE: &str = "training.json";

/// The text a verifier reads: the problem, then the solution. One function, so training and
/// scoring always agree.
pub fn verifier_text(question: &str, solution: &str) -> String {
    format!(
        "Question: {}\nSolution:\n{}",
        question.trim(),
        solution.trim()
    )
}

/// The network under the score head.
// A verifier holds exactly one body for its whole life: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Body {
    /// A decoder body (the project's Llama, or an uploaded reward model of any supported
    /// architecture) with its head; every weight is a variable.
    Decoder(Box<VerifierModel>),
    /// A frozen BERT-family encoder (mean-pooled) and a trainable head: only the head is
    /// trained on CPU. `backbone` holds the encoder's weight files, copied into each version.
    Bert {
        encoder: Box<BertEncoder>,
        head: Linear,
        backbone: Vec<PathBuf>,
    },
    /// An encoder reward model (BERT, RoBERTa, DeBERTa-v2 `…ForSequenceClassification`)
    /// scoring with its own head. Everything before the head's last layer is frozen; that
    /// layer (`head`, starting from the checkpoint's weights, under the checkpoint's names) is
    /// what training changes. Versions keep the checkpoint's `config.json` (`config_json`)
    /// and tensor names, so they stay loadable by transformers.
    Classifier {
        model: Box<EncoderClassifier>,
        head: Linear,
        backbone: Vec<PathBuf>,
    },
}

/// Frozen features by token ids, so training computes each solution's encoder pass once
/// instead of once per epoch (and validation reuses them). Off outside training: scoring a
/// study sees each solution once, and nothing should grow without bound.
#[derive(Default)]
struct FeatureCache {
    on: bool,
    rows: HashMap<Vec<u32>, Tensor>,
}

impl FeatureCache {
    /// Per sequence its frozen rows `(len, width)` (a decoder's hidden states entering its
    /// first trained block), computing only those not seen yet (right-padded, in one batch)
    /// when the cache is on.
    fn sequences(
        &mut self,
        sequences: &[&Vec<u32>],
        pad: u32,
        device: &Device,
        compute: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let mut missing: Vec<&Vec<u32>> = sequences
            .iter()
            .copied()
            .filter(|s| !self.rows.contains_key(*s))
            .collect();
        missing.sort();
        missing.dedup();
        let mut computed = HashMap::new();
        if !missing.is_empty() {
            let (ids, lengths) = right_padded(&missing, pad, device)?;
            let hidden = compute(&ids)?;
            for (i, sequence) in missing.into_iter().enumerate() {
                computed.insert(sequence.clone(), hidden.get(i)?.narrow(0, 0, lengths[i])?);
            }
        }
        let rows = sequences
            .iter()
            .map(|s| {
                computed
                    .get(*s)
                    .or_else(|| self.rows.get(*s))
                    .cloned()
                    .ok_or_else(|| candle_core::Error::msg("a cached feature row went missing"))
            })
            .collect::<Result<Vec<_>>>()?;
        if self.on {
            self.rows.extend(computed);
        }
        Ok(rows)
    }

    /// Features `(batch, width)` of `sequences`, computing (right-padded, in one batch) only
    /// those not seen yet when the cache is on.
    fn get(
        &mut self,
        sequences: &[&Vec<u32>],
        pad: u32,
        device: &Device,
        compute: impl Fn(&Tensor, &[usize]) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if !self.on {
            let (ids, lengths) = right_padded(sequences, pad, device)?;
            return compute(&ids, &lengths);
        }
        let mut missing: Vec<&Vec<u32>> = sequences
            .iter()
            .copied()
            .filter(|s| !self.rows.contains_key(*s))
            .collect();
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            let (ids, lengths) = right_padded(&missing, pad, device)?;
            let features = compute(&ids, &lengths)?;
            for (i, sequence) in missing.into_iter().enumerate() {
                self.rows.insert(sequence.clone(), features.get(i)?);
            }
        }
        let rows = sequences
            .iter()
            .map(|s| {
                self.rows
                    .get(*s)
                    .cloned()
                    .ok_or_else(|| candle_core::Error::msg("a cached feature row went missing"))
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&rows, 0)
    }
}

/// A verifier checkpoint loaded for scoring or further training: model, tokenizer and the
/// trainable variables (the whole Llama model, or a BERT encoder's head).
pub struct Verifier {
    body: Body,
    varmap: VarMap,
    config: ModelConfig,
    /// `config.json` as read (written again with each version of a checkpoint that is not
    /// the project's own Llama).
    config_json: Option<Vec<u8>>,
    tokenizer: Tokenizer,
    pad: u32,
    eos: Option<u32>,
    add_special_tokens: bool,
    /// A transformers reward model: texts are tokenized as its tokenizer does (its own
    /// special tokens, no EOS appended) and the score is read at the last non-padding token.
    transformers_style: bool,
    max_positions: usize,
    device: Device,
    features: FeatureCache,
    /// A decoder body trained only from this block on (with the score head; the blocks below
    /// are frozen and their output cached while training); `None`: every weight.
    trained_from_layer: Option<usize>,
}

impl Verifier {
    /// A Llama verifier over in-memory parts (for example one just initialised for training).
    pub fn from_parts(
        config: LlamaConfig,
        tokenizer: Tokenizer,
        device: &Device,
    ) -> std::result::Result<Self, ModelError> {
        config.check().map_err(ModelError::Invalid)?;
        Self::from_decoder(ModelConfig::Llama(config), None, tokenizer, device)
    }

    /// A verifier whose body is the decoder `config` describes; its variables are fresh (the
    /// caller fills them from a checkpoint or trains them). A tokenizer with its own special
    /// tokens (a post-processor, as transformers' tokenizers have) marks a transformers reward
    /// model; the project's own tokenizers have none.
    fn from_decoder(
        config: ModelConfig,
        config_json: Option<Vec<u8>>,
        tokenizer: Tokenizer,
        device: &Device,
    ) -> std::result::Result<Self, ModelError> {
        let spec = config
            .decoder_spec()
            .ok_or_else(|| ModelError::Invalid("not a decoder".into()))?
            .map_err(ModelError::Invalid)?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let transformers_style = tokenizer.get_post_processor().is_some();
        let model = VerifierModel::new(&spec, !transformers_style, vb)?;
        let pad = config
            .pad_token_id()
            .or_else(|| tokenizer::special_id(&tokenizer, PAD))
            .unwrap_or(0);
        let eos = if transformers_style {
            None
        } else {
            config
                .eos_token_ids()
                .first()
                .copied()
                .or_else(|| tokenizer::special_id(&tokenizer, EOS))
        };
        Ok(Self {
            body: Body::Decoder(Box::new(model)),
            varmap,
            max_positions: spec.max_positions.max(2),
            config,
            config_json,
            tokenizer,
            pad,
            eos,
            add_special_tokens: transformers_style,
            transformers_style,
            device: device.clone(),
            features: FeatureCache::default(),
            trained_from_layer: None,
        })
    }

    /// Loads a verifier checkpoint folder: `config.json` (a decoder body, a BERT-family
    /// encoder such as all-MiniLM-L6-v2, or an encoder reward model whose `architectures` is
    /// `BertForSequenceClassification`, `RobertaForSequenceClassification` or
    /// `DebertaV2ForSequenceClassification`), `tokenizer.json`, and `*.safetensors` holding the
    /// body and, once trained, the `score` head. Without a head (an uploaded encoder) the head
    /// starts at zero: every score 0 until it is trained. A reward model scores with its own
    /// head.
    pub fn load(dir: &Path, device: &Device) -> std::result::Result<Self, ModelError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| ModelError::io(&path, e))
        };
        let config_bytes = read("config.json")?;
        let config = ModelConfig::from_json(&config_bytes).map_err(ModelError::Invalid)?;
        let tokenizer = tokenizer::from_json_bytes(&read("tokenizer.json")?)
            .map_err(|e| ModelError::Tokenizer(format!("tokenizer.json: {e}")))?;
        let weights = super::weight_files(dir)?;
        // SAFETY: checkpoint files are never modified in place: versions and uploads are
        // written to a temporary folder and renamed into place.
        let stored = unsafe { MmapedSafetensors::multi(&weights)? };
        let verifier = match config {
            config if config.decoder_spec().is_some() => {
                config.check().map_err(ModelError::Invalid)?;
                // Versions keep the checkpoint's own config.json, every field as written.
                Self::from_decoder(config, Some(config_bytes.clone()), tokenizer, device)?
            }
            ModelConfig::Bert(config) => {
                config.check().map_err(ModelError::Invalid)?;
                let mut tokenizer = tokenizer;
                // sentence-transformers' tokenizer pads and truncates to 128 by itself;
                // batching pads here, and the length cap is the encoder's.
                tokenizer.with_padding(None);
                tokenizer
                    .with_truncation(None)
                    .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                let names: Vec<String> = stored.tensors().into_iter().map(|(n, _)| n).collect();
                let prefix = tensor_prefix(names.iter().map(String::as_str));
                // SAFETY: as above.
                let vb =
                    unsafe { VarBuilder::from_mmaped_safetensors(&weights, DType::F32, device)? };
                let vb = match prefix.trim_end_matches('.') {
                    "" => vb,
                    prefix => vb.pp(prefix),
                };
                let encoder = BertEncoder::new(&config, vb)?;
                let varmap = VarMap::new();
                let head = candle_nn::linear(
                    config.hidden_size,
                    1,
                    VarBuilder::from_varmap(&varmap, DType::F32, device).pp(SCORE_HEAD),
                )?;
                Self {
                    body: Body::Bert {
                        encoder: Box::new(encoder),
                        head,
                        backbone: weights.clone(),
                    },
                    varmap,
                    pad: config.pad_token_id,
                    eos: None,
                    add_special_tokens: true,
                    transformers_style: false,
                    config_json: None,
                    max_positions: config.max_position_embeddings.max(2),
                    config: ModelConfig::Bert(config),
                    tokenizer,
                    device: device.clone(),
                    features: FeatureCache::default(),
                    trained_from_layer: None,
                }
            }
            ModelConfig::EncoderClassifier(config) => {
                config.check().map_err(ModelError::Invalid)?;
                let mut tokenizer = tokenizer;
                tokenizer.with_padding(None);
                // Long texts are cut inside the tokenizer, before its post-processor adds
                // `[CLS] … [SEP]` / `<s> … </s>`, as transformers' truncation does: the head
                // reads the first token and the model was trained with the closing one.
                tokenizer
                    .with_truncation(Some(tokenizers::TruncationParams {
                        max_length: config.max_tokens(),
                        ..tokenizers::TruncationParams::default()
                    }))
                    .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                // SAFETY: as above.
                let vb =
                    unsafe { VarBuilder::from_mmaped_safetensors(&weights, DType::F32, device)? };
                let model = EncoderClassifier::new(&config, vb)?;
                let varmap = VarMap::new();
                let (name, shape) = config.tensors().head.into_iter().next().ok_or_else(|| {
                    ModelError::Invalid("the reward model names no head tensors".into())
                })?;
                let prefix = name.trim_end_matches(".weight");
                let inputs = shape.get(1).copied().unwrap_or(config.hidden_size());
                let head = candle_nn::linear(
                    inputs,
                    1,
                    VarBuilder::from_varmap(&varmap, DType::F32, device).pp(prefix),
                )?;
                Self {
                    body: Body::Classifier {
                        model: Box::new(model),
                        head,
                        backbone: weights.clone(),
                    },
                    varmap,
                    pad: config.pad_token_id(),
                    eos: None,
                    add_special_tokens: true,
                    transformers_style: true,
                    // Versions keep the reward model's own config.json.
                    config_json: Some(config_bytes.clone()),
                    max_positions: config.max_tokens().max(2),
                    config: ModelConfig::EncoderClassifier(config),
                    tokenizer,
                    device: device.clone(),
                    features: FeatureCache::default(),
                    trained_from_layer: None,
                }
            }
            other => {
                return Err(ModelError::Invalid(format!(
                    "config.json: model_type {:?} cannot be a verifier",
                    other.model_type()
                )));
            }
        };
        let data = verifier
            .varmap
            .data()
            .lock()
            .map_err(|_| ModelError::Invalid("variable map poisoned".into()))?;
        for (name, var) in data.iter() {
            match stored.load(name, device) {
                Ok(tensor) => {
                    let tensor = tensor.to_dtype(DType::F32)?;
                    if tensor.shape() != var.shape() {
                        return Err(ModelError::Invalid(format!(
                            "{name} has shape {:?} but config.json implies {:?}",
                            tensor.dims(),
                            var.dims()
                        )));
                    }
                    var.set(&tensor)?;
                }
                Err(_) if name.starts_with(SCORE_HEAD) => var.set(&var.zeros_like()?)?,
                Err(e) => return Err(ModelError::Invalid(format!("{}: {e}", dir.display()))),
            }
        }
        drop(data);
        Ok(verifier)
    }

    /// The body's architecture: `"llama"`, `"bert"`, `"roberta"` or `"deberta-v2"`.
    pub fn architecture(&self) -> &str {
        self.config.model_type()
    }

    /// What training changes, in words for `training.json`.
    pub fn trained_part(&self) -> String {
        match &self.body {
            Body::Decoder(model) => match self.trained_from_layer {
                None => "every weight (decoder body and score head)".into(),
                Some(from) if from >= model.body.num_layers() => format!(
                    "the score head on the frozen {}'s final hidden state",
                    self.config.display_name()
                ),
                Some(from) => format!(
                    "blocks {from}–{} of {}, the final norm and the score head; the blocks below are frozen",
                    model.body.num_layers() - 1,
                    self.config.display_name()
                ),
            },
            Body::Bert { .. } => {
                "the score head on the frozen BERT encoder's mean-pooled features".into()
            }
            Body::Classifier { .. } => {
                let names: Vec<String> = self.varmap.data().lock().map_or_else(
                    |_| Vec::new(),
                    |data| {
                        let mut names: Vec<String> = data.keys().cloned().collect();
                        names.sort();
                        names
                    },
                );
                format!(
                    "the reward model's last layer ({}) on its frozen features; everything before it is the uploaded {}",
                    names.join(", "),
                    self.config.model_type()
                )
            }
        }
    }

    /// Turns the frozen-feature cache on (training: each solution's encoder pass is computed
    /// once) or off (and empties it). No effect on a Llama body, which is trained whole.
    pub fn cache_features(&mut self, on: bool) {
        self.features.on = on;
        if !on {
            self.features.rows.clear();
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Every trainable variable (for the optimiser): all of them, or, for a decoder trained
    /// from a block on, that block and those above it, the final norm and the score head.
    pub fn variables(&self) -> Vec<Var> {
        let Some(from) = self.trained_from_layer else {
            return self.varmap.all_vars();
        };
        let trained = |name: &str| {
            name.starts_with(SCORE_HEAD)
                || (from < self.layers() && name.starts_with("model.norm."))
                || name
                    .strip_prefix("model.layers.")
                    .and_then(|rest| rest.split('.').next())
                    .and_then(|i| i.parse::<usize>().ok())
                    .is_some_and(|i| i >= from)
        };
        self.varmap.data().lock().map_or_else(
            |_| Vec::new(),
            |data| {
                let mut named: Vec<(&String, &Var)> =
                    data.iter().filter(|(name, _)| trained(name)).collect();
                named.sort_by(|a, b| a.0.cmp(b.0));
                named.into_iter().map(|(_, var)| var.clone()).collect()
            },
        )
    }

    /// Decoder blocks of a decoder body (0 for an encoder).
    fn layers(&self) -> usize {
        match &self.body {
            Body::Decoder(model) => model.body.num_layers(),
            _ => 0,
        }
    }

    /// Trains only the top `blocks` decoder blocks and the score head of a decoder verifier
    /// (0: the head alone): an uploaded language model is too large to fine-tune whole on a
    /// CPU, so the blocks below are frozen and their output is computed once per text while
    /// training. `None` trains every weight (the project's own small verifiers). Refused for
    /// an encoder, whose trained part is fixed.
    pub fn train_top_blocks(
        &mut self,
        blocks: Option<usize>,
    ) -> std::result::Result<(), ModelError> {
        let layers = self.layers();
        if blocks.is_some() && !matches!(self.body, Body::Decoder(_)) {
            return Err(ModelError::Invalid(format!(
                "training only the top blocks applies to decoder verifiers; this one is {}",
                self.config.display_name()
            )));
        }
        if let Some(k) = blocks
            && k > layers
        {
            return Err(ModelError::Invalid(format!(
                "the verifier has {layers} blocks; {k} cannot be trained"
            )));
        }
        self.trained_from_layer = blocks.map(|k| layers - k);
        self.features.rows.clear();
        Ok(())
    }

    /// Whether the body is a decoder, whose blocks [`Verifier::train_top_blocks`] can freeze.
    pub fn layers_trainable(&self) -> bool {
        matches!(self.body, Body::Decoder(_))
    }

    /// Whether this is a transformers checkpoint (its own tokenizer's special tokens, scores
    /// at the last non-padding token) rather than one of the project's own verifiers.
    pub fn is_transformers_checkpoint(&self) -> bool {
        self.transformers_style
    }

    /// The variable map itself (seeded initialisation, snapshots).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Token ids of a verifier text, ending with EOS and cut to the model's context: the
    /// score is read at the last token, so a too-long text keeps its beginning and its end
    /// marker.
    pub fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, ModelError> {
        let mut ids = self
            .tokenizer
            .encode(text, self.add_special_tokens)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec();
        let limit = self.max_positions;
        let room = if self.eos.is_some() { limit - 1 } else { limit };
        ids.truncate(room);
        if let Some(eos) = self.eos {
            ids.push(eos);
        }
        if ids.is_empty() {
            ids.push(self.pad);
        }
        Ok(ids)
    }

    /// Scores of already encoded sequences, `(batch,)`; `differentiable` for training.
    pub fn scores(&mut self, sequences: &[&Vec<u32>], differentiable: bool) -> Result<Tensor> {
        let (pad, device) = (self.pad, &self.device);
        let features = match &mut self.body {
            Body::Decoder(model) => {
                let pooled: Vec<usize> = if self.transformers_style {
                    sequences.iter().map(|row| last_non_pad(row, pad)).collect()
                } else {
                    sequences.iter().map(|row| row.len().max(1) - 1).collect()
                };
                let Some(layer) = self.trained_from_layer else {
                    let (ids, _) = right_padded(sequences, pad, device)?;
                    return model.scores(&ids, &pooled, differentiable);
                };
                // Frozen below `layer`: its output comes from the cache while training.
                let entering = self.features.sequences(sequences, pad, device, |ids| {
                    // Detached: no gradient may flow back into the frozen blocks.
                    model.body.hidden_before(ids, layer).map(|h| h.detach())
                })?;
                return model.scores_from(&entering, layer, &pooled, differentiable);
            }
            Body::Bert { encoder, head, .. } => (
                self.features
                    .get(sequences, pad, device, |ids, n| encoder.pooled(ids, n))?,
                head,
            ),
            Body::Classifier { model, head, .. } => (
                self.features
                    .get(sequences, pad, device, |ids, n| model.features(ids, n))?,
                head,
            ),
        };
        features.1.forward(&features.0)?.squeeze(1)
    }

    /// Scores texts in batches of `batch` (similar lengths batched together, to pad little);
    /// returns one score per text in the given order.
    pub fn score_texts(
        &mut self,
        texts: &[String],
        batch: usize,
    ) -> std::result::Result<Vec<f32>, ModelError> {
        let encoded = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.score_encoded(&encoded, batch)
    }

    /// [`Verifier::score_texts`] for already encoded texts.
    pub fn score_encoded(
        &mut self,
        encoded: &[Vec<u32>],
        batch: usize,
    ) -> std::result::Result<Vec<f32>, ModelError> {
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut scores = vec![0f32; encoded.len()];
        for chunk in order.chunks(batch.max(1)) {
            let sequences: Vec<&Vec<u32>> = chunk.iter().map(|&i| &encoded[i]).collect();
            let values: Vec<f32> = self.scores(&sequences, false)?.to_vec1()?;
            for (&i, value) in chunk.iter().zip(values) {
                scores[i] = value;
            }
        }
        Ok(scores)
    }

    /// Copies of every variable, to restore the best weights after early stopping.
    pub fn snapshot(&self) -> std::result::Result<HashMap<String, Tensor>, ModelError> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| ModelError::Invalid("variable map poisoned".into()))?;
        data.iter()
            .map(|(name, var)| Ok((name.clone(), var.as_tensor().copy()?)))
            .collect()
    }

    /// Sets every variable back to a [`Verifier::snapshot`].
    pub fn restore(
        &self,
        snapshot: &HashMap<String, Tensor>,
    ) -> std::result::Result<(), ModelError> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| ModelError::Invalid("variable map poisoned".into()))?;
        for (name, var) in data.iter() {
            if let Some(tensor) = snapshot.get(name) {
                var.set(tensor)?;
            }
        }
        Ok(())
    }

    /// Writes the verifier as a checkpoint folder `out` with `training` as `training.json`,
    /// atomically: everything goes to a sibling temp folder (`.tmp-…`), is synced, and the
    /// folder is renamed into place; a crash leaves at most a temp folder, never a half file.
    pub fn save<T: Serialize>(
        &self,
        out: &Path,
        training: &T,
    ) -> std::result::Result<(), ModelError> {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "verifier".into());
        self.save_as(out, &format!(".tmp-{name}-"), training)
    }

    /// [`Verifier::save`] with the temp folder named `{temp_prefix}{pid}`, so a job can find
    /// and remove what a dead attempt of its own left.
    pub fn save_as<T: Serialize>(
        &self,
        out: &Path,
        temp_prefix: &str,
        training: &T,
    ) -> std::result::Result<(), ModelError> {
        super::write_folder_atomically(out, temp_prefix, |staging| {
            let config = match (&self.config, &self.config_json) {
                (config, Some(raw))
                    if self.transformers_style && config.decoder_spec().is_some() =>
                {
                    reward_model_config(raw)?
                }
                (_, Some(raw)) => String::from_utf8_lossy(raw).trim_end().to_string(),
                (ModelConfig::Bert(c), None) => pretty_json(c)?,
                (ModelConfig::Llama(c), None) => pretty_json(c)?,
                (other, None) => {
                    return Err(ModelError::Invalid(format!(
                        "the {} verifier's config.json was not kept",
                        other.display_name()
                    )));
                }
            };
            for (file, text) in [
                ("config.json", config),
                (TRAINING_FILE, pretty_json(training)?),
            ] {
                let path = staging.join(file);
                std::fs::write(&path, text + "\n").map_err(|e| ModelError::io(&path, e))?;
            }
            let tokenizer_path = staging.join("tokenizer.json");
            self.tokenizer
                .save(&tokenizer_path, false)
                .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
            match &self.body {
                Body::Decoder(_) => self.varmap.save(staging.join(WEIGHTS_FILE))?,
                Body::Bert { backbone, .. } | Body::Classifier { backbone, .. } => {
                    // The frozen encoder's tensors as they are stored, plus the trained head
                    // (a reward model's head replaces the stored one of the same name).
                    // SAFETY: as in `load`.
                    let stored = unsafe { MmapedSafetensors::multi(backbone)? };
                    let mut tensors: HashMap<String, Tensor> = HashMap::new();
                    for (name, _) in stored.tensors() {
                        if !name.starts_with(SCORE_HEAD) {
                            let tensor = stored.load(&name, &self.device)?;
                            tensors.insert(name, tensor);
                        }
                    }
                    let data = self
                        .varmap
                        .data()
                        .lock()
                        .map_err(|_| ModelError::Invalid("variable map poisoned".into()))?;
                    for (name, var) in data.iter() {
                        tensors.insert(name.clone(), var.as_tensor().clone());
                    }
                    drop(data);
                    candle_core::safetensors::save(&tensors, staging.join(WEIGHTS_FILE))?;
                }
            }
            Ok(())
        })
    }
}

/// The `config.json` of a version trained from a transformers decoder: the checkpoint's own,
/// except that a language model's (`LlamaForCausalLM`) becomes the reward model it now is
/// (`LlamaForSequenceClassification` with one label), so transformers'
/// `AutoModelForSequenceClassification` loads the saved `score` head instead of making a
/// two-label one. A reward model's config is kept as written.
pub fn reward_model_config(raw: &[u8]) -> std::result::Result<String, ModelError> {
    let invalid = |e: serde_json::Error| ModelError::Invalid(format!("config.json: {e}"));
    let mut config: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(raw).map_err(invalid)?;
    let architectures: Vec<String> = config
        .get("architectures")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if architectures
        .iter()
        .any(|a| a.ends_with("ForSequenceClassification"))
    {
        return Ok(String::from_utf8_lossy(raw).trim_end().to_string());
    }
    if let Some(stem) = architectures
        .iter()
        .find_map(|a| a.strip_suffix("ForCausalLM"))
    {
        let class = format!("{stem}ForSequenceClassification");
        config.insert("architectures".into(), serde_json::json!([class]));
    }
    config.insert("id2label".into(), serde_json::json!({"0": "LABEL_0"}));
    config.insert("label2id".into(), serde_json::json!({"LABEL_0": 0}));
    config.remove("num_labels");
    serde_json::to_string_pretty(&config).map_err(invalid)
}

/// Pretty JSON for the small files of a checkpoint.
fn pretty_json<T: Serialize + ?Sized>(value: &T) -> std::result::Result<String, ModelError> {
    serde_json::to_string_pretty(value).map_err(|e| ModelError::Invalid(e.to_string()))
}

/// Right-pads `sequences` into one `(batch, longest)` tensor; returns it with the lengths.
pub fn right_padded(
    sequences: &[&Vec<u32>],
    pad: u32,
    device: &Device,
) -> Result<(Tensor, Vec<usize>)> {
    let longest = sequences.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut flat = Vec::with_capacity(sequences.len() * longest);
    for sequence in sequences {
        flat.extend_from_slice(sequence);
        flat.extend(std::iter::repeat_n(pad, longest - sequence.len()));
    }
    let lengths = sequences.iter().map(|s| s.len()).collect();
    Ok((
        Tensor::from_vec(flat, (sequences.len(), longest), device)?,
        lengths,
    ))
}

/// `ln(1 + e^x)`, stable for large |x|.
fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    x.relu()? + tail
}

/// The paper's verifier loss: `mean(ln(1 + e^{-(V_correct - V_incorrect)}))` over aligned pairs
/// of solutions to the same problem, plus `lambda · mean(V²)` over every score in the pairs.
pub fn bradley_terry_loss(correct: &Tensor, incorrect: &Tensor, lambda: f64) -> Result<Tensor> {
    let comparison = softplus(&(incorrect - correct)?)?.mean_all()?;
    let all = Tensor::cat(&[correct, incorrect], 0)?;
    comparison + (all.sqr()?.mean_all()? * lambda)?
}

/// Binary cross-entropy of scores (logits) against 0/1 labels (F32): the option to train on
/// single solutions instead of pairs.
pub fn cross_entropy_loss(scores: &Tensor, labels: &Tensor) -> Result<Tensor> {
    (softplus(scores)? - (scores * labels)?)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};

    fn scalar(t: &Tensor) -> f64 {
        t.to_scalar::<f32>().expect("scalar") as f64
    }

    #[test]
    fn losses_match_hand_computation() {
        let device = Device::Cpu;
        let c = Tensor::new(&[2.0f32, 0.0], &device).expect("t");
        let i = Tensor::new(&[0.0f32, 1.0], &device).expect("t");
        // pairs: ln(1+e^-2) and ln(1+e^1); squares: (4 + 0 + 0 + 1) / 4.
        let expected =
            ((1.0 + (-2.0f64).exp()).ln() + (1.0 + 1.0f64.exp()).ln()) / 2.0 + 0.5 * 1.25;
        let loss = scalar(&bradley_terry_loss(&c, &i, 0.5).expect("loss"));
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
        let labels = Tensor::new(&[1.0f32, 0.0], &device).expect("t");
        let scores = Tensor::new(&[3.0f32, -1.0], &device).expect("t");
        let expected = ((1.0 + (-3.0f64).exp()).ln() + (1.0 + (-1.0f64).exp()).ln()) / 2.0;
        let loss = scalar(&cross_entropy_loss(&scores, &labels).expect("loss"));
        assert!((loss - expected).abs() < 1e-5);
        // Stable for large scores.
        let big = Tensor::new(&[80.0f32], &device).expect("t");
        assert!((scalar(&softplus(&big).expect("sp").squeeze(0).expect("s")) - 80.0).abs() < 1e-4);
    }

    /// A tiny random BERT checkpoint (`bert.`-prefixed names, no score head) in `dir`.
    fn tiny_bert(dir: &Path, texts: &[String]) {
        let tokenizer = tokenizer::train_bpe(texts.iter().cloned(), 300).expect("tokenizer");
        let config: crate::ml::bert::BertConfig = serde_json::from_value(serde_json::json!({
            "model_type": "bert", "vocab_size": tokenizer.get_vocab_size(true),
            "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32, "max_position_embeddings": 128
        }))
        .expect("config");
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        BertEncoder::new(&config, vb.pp("bert")).expect("encoder");
        let mut rng = crate::ml::sampling::SampleRng::new(3);
        for (name, var) in varmap.data().lock().expect("lock").iter() {
            let n = var.elem_count();
            let values: Vec<f32> = if name.ends_with("LayerNorm.weight") {
                vec![1.0; n]
            } else if name.ends_with("LayerNorm.bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| (rng.next_normal() * 0.2) as f32).collect()
            };
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).expect("t"))
                .expect("set");
        }
        varmap.save(dir.join(WEIGHTS_FILE)).expect("save");
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string(&config).expect("json"),
        )
        .expect("write");
        tokenizer
            .save(dir.join("tokenizer.json"), false)
            .expect("tokenizer");
    }

    #[test]
    fn a_bert_backbone_trains_its_head_and_round_trips() {
        use crate::domain::ProverRole;
        use crate::ml::train_verifier::{FitOptions, LabelledSolution, fit_verifier};
        let data: Vec<LabelledSolution> = (0..16u128)
            .flat_map(|p| {
                [true, false].map(|right| LabelledSolution {
                    solution_id: uuid::Uuid::from_u128(p * 2 + right as u128),
                    problem_id: uuid::Uuid::from_u128(p),
                    text: verifier_text(
                        &format!("What is {p} plus one?"),
                        &format!(
                            "It is {p} and one. The answer is {}",
                            if right { "right" } else { "wrong" }
                        ),
                    ),
                    label: Some(right),
                    ground_truth: right,
                    human: None,
                    round: 0,
                    role: if right {
                        ProverRole::Helpful
                    } else {
                        ProverRole::Sneaky
                    },
                })
            })
            .collect();
        let texts: Vec<String> = data.iter().map(|s| s.text.clone()).collect();
        let base = tempfile::tempdir().expect("dir");
        tiny_bert(base.path(), &texts);
        let mut verifier = Verifier::load(base.path(), &Device::Cpu).expect("load");
        assert_eq!(verifier.architecture(), "bert");
        // No head yet: every score is 0.
        let untrained = verifier.score_texts(&texts, 8).expect("scores");
        assert!(untrained.iter().all(|s| *s == 0.0), "{untrained:?}");
        let options = FitOptions {
            learning_rate: 0.05,
            batch: 4,
            max_epochs: 40,
            patience: 40,
            validation_share: 0.25,
            ..FitOptions::default()
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let report =
            fit_verifier(&mut verifier, &data, &options, &mut |_, _| {}, &stop).expect("fit");
        assert!(report.best_epoch > 0, "{report:?}");
        let trained = verifier.score_texts(&texts, 8).expect("scores");
        let ranked = trained.chunks(2).filter(|pair| pair[0] > pair[1]).count();
        assert!(ranked >= 14, "{trained:?}");
        // The version holds the encoder and the head; it loads back with the same scores.
        let out = tempfile::tempdir().expect("dir");
        let version = out.path().join("v2");
        verifier.save(&version, &report).expect("save");
        let mut reloaded = Verifier::load(&version, &Device::Cpu).expect("reload");
        let again = reloaded.score_texts(&texts, 8).expect("scores");
        for (a, b) in trained.iter().zip(&again) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn a_tiny_verifier_learns_to_rank_correct_above_incorrect() {
        let device = Device::Cpu;
        let config: LlamaConfig = serde_json::from_value(serde_json::json!({
            "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 8, "max_position_embeddings": 16,
            "tie_word_embeddings": true
        }))
        .expect("config");
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let mut verifier = VerifierModel::llama(&config, vb).expect("model");
        // Seeded initialisation (small weights: scores start near 0, the loss near ln 2).
        crate::ml::train::initialise(&varmap, 11, 1, &device).expect("init");
        // "Solutions" whose last token says whether they are right (3) or wrong (4), padded.
        let correct = Tensor::new(&[[1u32, 2, 3, 0], [1, 3, 0, 0]], &device).expect("ids");
        let incorrect = Tensor::new(&[[1u32, 2, 4, 0], [1, 4, 0, 0]], &device).expect("ids");
        // Each row's score is read at its last real token.
        let lengths = [2, 1];
        let mut optimiser = AdamW::new(
            varmap.all_vars(),
            ParamsAdamW {
                lr: 0.02,
                ..ParamsAdamW::default()
            },
        )
        .expect("optimiser");
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..60 {
            let c = verifier.scores(&correct, &lengths, true).expect("scores");
            let i = verifier.scores(&incorrect, &lengths, true).expect("scores");
            let loss = bradley_terry_loss(&c, &i, 0.01).expect("loss");
            last = scalar(&loss);
            first.get_or_insert(last);
            optimiser.backward_step(&loss).expect("step");
        }
        let first = first.expect("first");
        assert!((first - 2f64.ln()).abs() < 0.05, "initial loss {first}");
        assert!(last < 0.3, "loss {first} → {last}");
        let c: Vec<f32> = verifier
            .scores(&correct, &lengths, false)
            .expect("s")
            .to_vec1()
            .expect("v");
        let i: Vec<f32> = verifier
            .scores(&incorrect, &lengths, false)
            .expect("s")
            .to_vec1()
            .expect("v");
        assert!(c.iter().zip(&i).all(|(c, i)| c > i), "{c:?} vs {i:?}");
    }
}
