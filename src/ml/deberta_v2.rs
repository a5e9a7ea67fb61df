//! transformers' `DebertaV2ForSequenceClassification` with one label, as a verifier's reward
//! model, in the DeBERTa-v3 form most reward models use.
//!
//! What differs from BERT: no absolute positions; instead every layer adds disentangled
//! relative-position terms to the attention scores. With `q`, `k` the layer's query and key
//! projections of the tokens, `R` the relative-position embeddings (`rel_embeddings`, after
//! their LayerNorm) and `δ(i, j)` the bucketed distance `i − j`:
//!
//! ```text
//! score(i, j) = [ q_i·k_j  +  q_i·K_r[δ(i,j)]  +  k_j·Q_r[δ(i,j)] ] / √(d · (1 + |pos_att_type|))
//!                 content      c2p ("c2p")          p2c ("p2c")
//! ```
//!
//! where `K_r = key_proj(R)` and `Q_r = query_proj(R)` (`share_att_key`: the same projections
//! as the content) and δ is clamped into the table. Distances up to `position_buckets / 2` are
//! exact; longer ones share logarithmic buckets (`make_log_bucket_position`, computed in f32 as
//! torch does, so bucket boundaries agree). The pooler reads the first token
//! (`GELU(pooler.dense(h[0]))`) and `classifier` gives the score.
//!
//! Supported: `relative_attention` true, `position_biased_input` false, `share_att_key` true,
//! any subset of `pos_att_type` {c2p, p2c}, `position_buckets` on or off, `norm_rel_ebd`
//! `layer_norm` or `none`, `type_vocab_size` 0 or more (token type 0). Refused by name: the
//! convolution layer of DeBERTa-v2 xlarge (`conv_kernel_size`), absolute positions
//! (`position_biased_input` true), attention without relative positions, separate position
//! projections (`share_att_key` false), `embedding_size` ≠ `hidden_size`, and an
//! `attention_head_size` or `pooler_hidden_size` that differs from the usual.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::bert::{
    ACCEPTED_ACTIVATIONS, Activation, LayerNorm, POSITION_IDS, key_mask, linear, softmax,
};
use super::config::{require_heads_fit, require_positive};
use super::encoder_classifier::{ClassifierTensors, SequenceClassification};

/// `architectures` entry of a DeBERTa-v2 classifier.
pub const DEBERTA_V2_CLASSIFIER: &str = "DebertaV2ForSequenceClassification";
/// The prefix of the encoder's tensor names.
pub const DEBERTA_PREFIX: &str = "deberta.";

/// The fields of a transformers `DebertaV2Config` this project reads; missing ones take
/// transformers' defaults (which are DeBERTa-v1-like: a v3 `config.json` spells out
/// `relative_attention`, `position_biased_input`, `pos_att_type`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct DebertaV2Config {
    /// `"deberta-v2"` (v3 checkpoints use it too).
    pub model_type: String,
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads; `hidden_size` must be a multiple of it.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: String,
    /// Training length; also the longest input accepted here.
    pub max_position_embeddings: usize,
    /// Rows of the token-type embedding (0: none); only type 0 is used.
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Relative-position attention (required).
    pub relative_attention: bool,
    /// Largest relative distance; below 1 means `max_position_embeddings`.
    pub max_relative_positions: i64,
    /// Number of relative-position buckets per side; 0 or less: no bucketing.
    pub position_buckets: i64,
    /// Which relative terms are added: `"c2p"`, `"p2c"` (a `|`-separated string in older
    /// configs is split as transformers splits it).
    pub pos_att_type: Vec<String>,
    /// Whether the relative terms reuse the content projections (required).
    pub share_att_key: bool,
    /// `"layer_norm"`: `rel_embeddings` go through `encoder.LayerNorm`; `"none"`: not.
    pub norm_rel_ebd: Vec<String>,
    /// Absolute position embeddings added to the input (must be false).
    pub position_biased_input: bool,
    /// Padding token id.
    pub pad_token_id: u32,
    /// Width of the pooler (must equal `hidden_size`).
    pub pooler_hidden_size: usize,
    /// The pooler's activation.
    pub pooler_hidden_act: String,
    /// Width of the word embeddings (must equal `hidden_size`: no `embed_proj`).
    pub embedding_size: usize,
    /// Kernel of the convolution layer DeBERTa-v2 xlarge adds (0: none; required).
    pub conv_kernel_size: usize,
    /// Per-head width override (absent or `hidden_size / num_attention_heads`).
    pub attention_head_size: Option<usize>,
    /// `architectures`, `num_labels`.
    pub classification: SequenceClassification,
}

impl DebertaV2Config {
    /// Tensors per encoder layer in [`DebertaV2Config::tensors`].
    pub const TENSORS_PER_LAYER: usize = 16;

    /// Reads a parsed `config.json`. Not checked: see [`DebertaV2Config::check`].
    pub fn from_value(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let invalid = |field: &str, what: &str| {
            format!("config.json is not a valid DeBERTa-v2 config: {field} must be {what}")
        };
        let get = |field: &str| value.get(field).filter(|v| !v.is_null());
        let size = |field: &str, default: Option<usize>| -> std::result::Result<usize, String> {
            match get(field) {
                Some(v) => v
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| invalid(field, "a whole number")),
                None => default.ok_or_else(|| {
                    format!("config.json is not a valid DeBERTa-v2 config: {field} is missing")
                }),
            }
        };
        let signed = |field: &str, default: i64| -> std::result::Result<i64, String> {
            match get(field) {
                Some(v) => v.as_i64().ok_or_else(|| invalid(field, "a whole number")),
                None => Ok(default),
            }
        };
        let flag = |field: &str, default: bool| -> std::result::Result<bool, String> {
            match get(field) {
                Some(v) => v.as_bool().ok_or_else(|| invalid(field, "true or false")),
                None => Ok(default),
            }
        };
        let text = |field: &str, default: &str| -> std::result::Result<String, String> {
            match get(field) {
                Some(v) => v
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(field, "a string")),
                None => Ok(default.to_string()),
            }
        };
        let hidden_size = size("hidden_size", None)?;
        let pos_att_type = match get("pos_att_type") {
            None => Vec::new(),
            Some(serde_json::Value::String(s)) => split_types(s),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid("pos_att_type", "a list of strings"))
                })
                .collect::<std::result::Result<_, _>>()?,
            Some(_) => return Err(invalid("pos_att_type", "a list of strings")),
        };
        let attention_head_size = match get("attention_head_size") {
            None => None,
            Some(_) => Some(size("attention_head_size", None)?),
        };
        let pad_token_id = size("pad_token_id", Some(0))?;
        Ok(Self {
            model_type: text("model_type", "")?,
            vocab_size: size("vocab_size", None)?,
            hidden_size,
            num_hidden_layers: size("num_hidden_layers", None)?,
            num_attention_heads: size("num_attention_heads", None)?,
            intermediate_size: size("intermediate_size", None)?,
            hidden_act: text("hidden_act", "gelu")?,
            max_position_embeddings: size("max_position_embeddings", Some(512))?,
            type_vocab_size: size("type_vocab_size", Some(0))?,
            layer_norm_eps: match get("layer_norm_eps") {
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| invalid("layer_norm_eps", "a number"))?,
                None => 1e-7,
            },
            relative_attention: flag("relative_attention", false)?,
            max_relative_positions: signed("max_relative_positions", -1)?,
            position_buckets: signed("position_buckets", -1)?,
            pos_att_type,
            share_att_key: flag("share_att_key", false)?,
            norm_rel_ebd: split_types(&text("norm_rel_ebd", "none")?),
            position_biased_input: flag("position_biased_input", true)?,
            pad_token_id: u32::try_from(pad_token_id)
                .map_err(|_| invalid("pad_token_id", "a token id"))?,
            pooler_hidden_size: size("pooler_hidden_size", Some(hidden_size))?,
            pooler_hidden_act: text("pooler_hidden_act", "gelu")?,
            embedding_size: size("embedding_size", Some(hidden_size))?,
            conv_kernel_size: size("conv_kernel_size", Some(0))?,
            attention_head_size,
            classification: SequenceClassification::from_value(value)?,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// The largest relative distance the model was built for.
    pub fn max_relative_positions(&self) -> usize {
        if self.max_relative_positions < 1 {
            self.max_position_embeddings
        } else {
            self.max_relative_positions as usize
        }
    }

    /// Relative positions per side of the table (`pos_ebd_size`, transformers' `att_span`):
    /// `rel_embeddings` has twice as many rows.
    pub fn attention_span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets as usize
        } else {
            self.max_relative_positions()
        }
    }

    fn c2p(&self) -> bool {
        self.pos_att_type.iter().any(|t| t == "c2p")
    }

    fn p2c(&self) -> bool {
        self.pos_att_type.iter().any(|t| t == "p2c")
    }

    fn rel_layer_norm(&self) -> bool {
        self.norm_rel_ebd.iter().any(|t| t == "layer_norm")
    }

    /// Why this config cannot describe a supported DeBERTa-v2 reward model, if it cannot; every
    /// field that would change the maths and is not implemented is refused by name.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.model_type != "deberta-v2" {
            return Err(format!(
                "config.json: model_type is {:?}; a DeBERTa-v2 classifier needs \"deberta-v2\"",
                self.model_type
            ));
        }
        self.classification.check(DEBERTA_V2_CLASSIFIER)?;
        require_positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ])?;
        require_heads_fit(self.hidden_size, self.num_attention_heads)?;
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!(
                "config.json: layer_norm_eps must be a positive number, not {}",
                self.layer_norm_eps
            ));
        }
        for (field, act) in [
            ("hidden_act", &self.hidden_act),
            ("pooler_hidden_act", &self.pooler_hidden_act),
        ] {
            if Activation::from_name(act).is_none() {
                return Err(format!(
                    "config.json: {field} {act:?} is not supported (supported: {})",
                    ACCEPTED_ACTIVATIONS.join(", ")
                ));
            }
        }
        if self.pad_token_id as usize >= self.vocab_size {
            return Err(format!(
                "config.json: pad_token_id {} is outside the vocabulary (vocab_size {})",
                self.pad_token_id, self.vocab_size
            ));
        }
        if !self.relative_attention {
            return Err("config.json: relative_attention is false (or absent, transformers' default); only DeBERTa with relative-position attention, as DeBERTa-v2 and -v3 checkpoints have it, is supported".into());
        }
        if self.position_biased_input {
            return Err("config.json: position_biased_input is true (or absent, transformers' default); absolute position embeddings are not supported, only DeBERTa-v3-style relative positions (position_biased_input false)".into());
        }
        if let Some(other) = self
            .pos_att_type
            .iter()
            .find(|t| *t != "c2p" && *t != "p2c")
        {
            return Err(format!(
                "config.json: pos_att_type {other:?} is not supported (only \"c2p\" and \"p2c\")"
            ));
        }
        if !self.share_att_key && !self.pos_att_type.is_empty() {
            return Err("config.json: share_att_key is false (or absent); separate position projections (pos_key_proj, pos_query_proj) are not supported, only share_att_key true as DeBERTa-v2 and -v3 have it".into());
        }
        if let Some(other) = self
            .norm_rel_ebd
            .iter()
            .find(|t| *t != "layer_norm" && *t != "none")
        {
            return Err(format!(
                "config.json: norm_rel_ebd {other:?} is not supported (only \"layer_norm\" and \"none\")"
            ));
        }
        if self.conv_kernel_size > 0 {
            return Err(format!(
                "config.json: conv_kernel_size is {}; the convolution layer of DeBERTa-v2 xlarge/xxlarge is not supported (DeBERTa-v3 has none)",
                self.conv_kernel_size
            ));
        }
        if self.embedding_size != self.hidden_size {
            return Err(format!(
                "config.json: embedding_size {} differs from hidden_size {}; the embedding projection (embed_proj) is not supported",
                self.embedding_size, self.hidden_size
            ));
        }
        if let Some(size) = self.attention_head_size
            && size != self.head_dim()
        {
            return Err(format!(
                "config.json: attention_head_size {size} differs from hidden_size / num_attention_heads = {}; not supported",
                self.head_dim()
            ));
        }
        if self.pooler_hidden_size != self.hidden_size {
            return Err(format!(
                "config.json: pooler_hidden_size {} differs from hidden_size {}; not supported",
                self.pooler_hidden_size, self.hidden_size
            ));
        }
        if self.attention_span() == 0 {
            return Err("config.json: the relative-position table would be empty (position_buckets and max_relative_positions)".into());
        }
        if self.position_buckets > 0
            && self.max_relative_positions() <= self.attention_span() / 2 + 1
        {
            return Err(format!(
                "config.json: max_relative_positions {} must exceed position_buckets / 2 + 1 = {} for logarithmic buckets",
                self.max_relative_positions(),
                self.attention_span() / 2 + 1
            ));
        }
        Ok(())
    }

    /// Every tensor such a checkpoint holds, in transformers' names. Absolute
    /// `position_embeddings`, which some v3 exports still carry and transformers ignores
    /// (`position_biased_input` false), are accepted and unused.
    pub fn tensors(&self) -> ClassifierTensors {
        let (h, f) = (self.hidden_size, self.intermediate_size);
        let e = format!("{DEBERTA_PREFIX}embeddings");
        let mut required = vec![
            (
                format!("{e}.word_embeddings.weight"),
                vec![self.vocab_size, h],
            ),
            (format!("{e}.LayerNorm.weight"), vec![h]),
            (format!("{e}.LayerNorm.bias"), vec![h]),
        ];
        if self.type_vocab_size > 0 {
            required.push((
                format!("{e}.token_type_embeddings.weight"),
                vec![self.type_vocab_size, h],
            ));
        }
        for i in 0..self.num_hidden_layers {
            let p = format!("{DEBERTA_PREFIX}encoder.layer.{i}");
            for part in ["query_proj", "key_proj", "value_proj"] {
                required.push((format!("{p}.attention.self.{part}.weight"), vec![h, h]));
                required.push((format!("{p}.attention.self.{part}.bias"), vec![h]));
            }
            required.push((format!("{p}.attention.output.dense.weight"), vec![h, h]));
            required.push((format!("{p}.attention.output.dense.bias"), vec![h]));
            required.push((format!("{p}.attention.output.LayerNorm.weight"), vec![h]));
            required.push((format!("{p}.attention.output.LayerNorm.bias"), vec![h]));
            required.push((format!("{p}.intermediate.dense.weight"), vec![f, h]));
            required.push((format!("{p}.intermediate.dense.bias"), vec![f]));
            required.push((format!("{p}.output.dense.weight"), vec![h, f]));
            required.push((format!("{p}.output.dense.bias"), vec![h]));
            required.push((format!("{p}.output.LayerNorm.weight"), vec![h]));
            required.push((format!("{p}.output.LayerNorm.bias"), vec![h]));
        }
        required.push((
            format!("{DEBERTA_PREFIX}encoder.rel_embeddings.weight"),
            vec![2 * self.attention_span(), h],
        ));
        if self.rel_layer_norm() {
            required.push((format!("{DEBERTA_PREFIX}encoder.LayerNorm.weight"), vec![h]));
            required.push((format!("{DEBERTA_PREFIX}encoder.LayerNorm.bias"), vec![h]));
        }
        required.push(("pooler.dense.weight".into(), vec![h, h]));
        required.push(("pooler.dense.bias".into(), vec![h]));
        let head = vec![
            ("classifier.weight".to_string(), vec![1, h]),
            ("classifier.bias".to_string(), vec![1]),
        ];
        required.extend(head.iter().cloned());
        ClassifierTensors {
            required,
            optional: vec![(
                format!("{e}.position_embeddings.weight"),
                vec![self.max_position_embeddings, h],
            )],
            buffers: vec![(
                format!("{DEBERTA_PREFIX}{POSITION_IDS}"),
                vec![1, self.max_position_embeddings],
            )],
            head,
        }
    }
}

/// `"p2c|c2p"` → `["p2c", "c2p"]`, lower-cased and trimmed, as transformers splits these
/// fields.
fn split_types(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split('|')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// transformers' `make_log_bucket_position` for one distance: exact within `±bucket_size/2`,
/// logarithmic beyond, in f32 like torch (so the `ceil` lands on the same side).
pub fn log_bucket(relative: i64, bucket_size: i64, max_position: i64) -> i64 {
    let mid = bucket_size / 2;
    let abs = if relative < mid && relative > -mid {
        mid - 1
    } else {
        relative.abs()
    };
    if abs <= mid {
        return relative;
    }
    let base = (((max_position - 1) as f64) / mid as f64) as f32;
    let log_pos =
        ((abs as f32 / mid as f32).ln() / base.ln() * (mid - 1) as f32).ceil() + mid as f32;
    log_pos as i64 * relative.signum()
}

/// Row of the relative-position table for query `i` and key `j`: the bucketed `i − j`,
/// shifted by the span and clamped into `[0, 2·span)`.
fn table_row(config: &DebertaV2Config, i: usize, j: usize) -> usize {
    let relative = i as i64 - j as i64;
    let span = config.attention_span() as i64;
    let bucketed = if config.position_buckets > 0 {
        log_bucket(
            relative,
            config.position_buckets,
            config.max_relative_positions() as i64,
        )
    } else {
        relative
    };
    (bucketed + span).clamp(0, 2 * span - 1) as usize
}

/// One layer's disentangled self-attention and feed-forward block (post-norm).
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
    activation: Activation,
}

/// What every layer's attention shares for one batch: the mask, the normalised
/// relative-position embeddings and the flat gather indexes of the c2p and p2c terms.
struct Relative {
    mask: Tensor,
    embeddings: Tensor,
    /// For each (i, j) in row order: `i · 2span + row(i, j)` into `(T, 2span)` scores.
    c2p: Option<Tensor>,
    /// For each (i, j) in row order: `j · 2span + row(i, j)`.
    p2c: Option<Tensor>,
}

impl Layer {
    fn new(config: &DebertaV2Config, vb: VarBuilder) -> Result<Self> {
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let eps = config.layer_norm_eps;
        let activation = Activation::from_name(&config.hidden_act)
            .ok_or_else(|| candle_core::Error::msg("unsupported hidden_act"))?;
        let attention = vb.pp("attention");
        let own = attention.pp("self");
        Ok(Self {
            query: candle_nn::linear(h, h, own.pp("query_proj"))?,
            key: candle_nn::linear(h, h, own.pp("key_proj"))?,
            value: candle_nn::linear(h, h, own.pp("value_proj"))?,
            attention_out: candle_nn::linear(h, h, attention.pp("output").pp("dense"))?,
            attention_norm: LayerNorm::new(h, eps, attention.pp("output").pp("LayerNorm"))?,
            intermediate: candle_nn::linear(h, f, vb.pp("intermediate").pp("dense"))?,
            output: candle_nn::linear(f, h, vb.pp("output").pp("dense"))?,
            output_norm: LayerNorm::new(h, eps, vb.pp("output").pp("LayerNorm"))?,
            activation,
        })
    }

    fn forward(&self, x: &Tensor, relative: &Relative, heads: usize, scale: f64) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let d = h / heads;
        let split = |y: Tensor, rows: usize| -> Result<Tensor> {
            // (…, rows, h) → (…, heads, rows, d)
            match y.rank() {
                3 => y
                    .reshape((b, rows, heads, d))?
                    .transpose(1, 2)?
                    .contiguous(),
                _ => y.reshape((rows, heads, d))?.transpose(0, 1)?.contiguous(),
            }
        };
        let q = split(linear(&self.query, x)?, t)?;
        let k = split(linear(&self.key, x)?, t)?;
        let v = split(linear(&self.value, x)?, t)?;
        let mut scores = (q.matmul(&k.t()?)? / scale)?;
        let rows = relative.embeddings.dim(0)?;
        // (heads, 2span, d) → (1, heads, d, 2span), shared by the batch.
        let table = |layer: &Linear| -> Result<Tensor> {
            split(layer.forward(&relative.embeddings)?, rows)?
                .t()?
                .unsqueeze(0)
        };
        let gather = |full: Tensor, index: &Tensor| -> Result<Tensor> {
            full.reshape((b, heads, t * rows))?
                .index_select(index, 2)?
                .reshape((b, heads, t, t))
        };
        if let Some(index) = &relative.c2p {
            let c2p = gather(q.broadcast_matmul(&table(&self.key)?)?, index)?;
            scores = (scores + (c2p / scale)?)?;
        }
        if let Some(index) = &relative.p2c {
            let p2c = gather(k.broadcast_matmul(&table(&self.query)?)?, index)?;
            scores = (scores + (p2c / scale)?)?;
        }
        let context = softmax(&scores.broadcast_add(&relative.mask)?)?
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

/// `DebertaV2ForSequenceClassification` with one label.
#[derive(Debug, Clone)]
pub struct DebertaV2ForSequenceClassification {
    word_embeddings: Embedding,
    token_type: Option<Tensor>,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    rel_embeddings: Tensor,
    rel_norm: Option<LayerNorm>,
    pooler: Linear,
    pooler_activation: Activation,
    classifier: Linear,
    scale: f64,
    config: DebertaV2Config,
}

impl DebertaV2ForSequenceClassification {
    /// Builds the classifier from `vb` at the checkpoint's root. The config is checked.
    pub fn new(config: &DebertaV2Config, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::msg)?;
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let base = vb.pp("deberta");
        let embeddings = base.pp("embeddings");
        let token_type = if config.type_vocab_size > 0 {
            let table = candle_nn::embedding(
                config.type_vocab_size,
                h,
                embeddings.pp("token_type_embeddings"),
            )?;
            Some(table.embeddings().get(0)?)
        } else {
            None
        };
        let encoder = base.pp("encoder");
        let rel_embeddings = encoder
            .pp("rel_embeddings")
            .get((2 * config.attention_span(), h), "weight")?;
        let rel_norm = if config.rel_layer_norm() {
            Some(LayerNorm::new(h, eps, encoder.pp("LayerNorm"))?)
        } else {
            None
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::new(config, encoder.pp(format!("layer.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let scale_factor = 1 + usize::from(config.c2p()) + usize::from(config.p2c());
        // transformers: sqrt(float32(d) * factor), so the same f32 value here.
        let scale = ((config.head_dim() * scale_factor) as f32).sqrt() as f64;
        Ok(Self {
            word_embeddings: candle_nn::embedding(
                config.vocab_size,
                h,
                embeddings.pp("word_embeddings"),
            )?,
            token_type,
            embeddings_norm: LayerNorm::new(h, eps, embeddings.pp("LayerNorm"))?,
            layers,
            rel_embeddings,
            rel_norm,
            pooler: candle_nn::linear(h, h, vb.pp("pooler").pp("dense"))?,
            pooler_activation: Activation::from_name(&config.pooler_hidden_act)
                .ok_or_else(|| candle_core::Error::msg("unsupported pooler_hidden_act"))?,
            classifier: candle_nn::linear(h, 1, vb.pp("classifier"))?,
            scale,
            config: config.clone(),
        })
    }

    /// The flat gather indexes of one sequence length (see [`Relative`]).
    fn indexes(&self, t: usize, device: &Device) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let rows = 2 * self.config.attention_span();
        // The row depends on i − j only: one bucket per distance, not per pair.
        let by_distance: Vec<usize> = (0..2 * t.max(1) - 1)
            .map(|k| table_row(&self.config, k, t.max(1) - 1))
            .collect();
        let mut c2p = Vec::with_capacity(t * t);
        let mut p2c = Vec::with_capacity(t * t);
        for i in 0..t {
            for j in 0..t {
                let row = by_distance[i + t - 1 - j];
                c2p.push((i * rows + row) as u32);
                p2c.push((j * rows + row) as u32);
            }
        }
        let make = |wanted: bool, values: Vec<u32>| -> Result<Option<Tensor>> {
            if wanted {
                Ok(Some(Tensor::from_vec(values, t * t, device)?))
            } else {
                Ok(None)
            }
        };
        Ok((make(self.config.c2p(), c2p)?, make(self.config.p2c(), p2c)?))
    }

    /// Final hidden states `(batch, seq, hidden)` of right-padded u32 `ids` with real lengths
    /// `lengths`; padded keys are masked out. Longer inputs than `max_position_embeddings` are
    /// refused (the model never saw them in training).
    pub fn hidden_states(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if lengths.len() != b || lengths.iter().any(|&n| n == 0 || n > t) {
            candle_core::bail!("lengths {lengths:?} do not fit a batch of {b} × {t}");
        }
        if t > self.config.max_position_embeddings {
            candle_core::bail!(
                "a sequence of {t} tokens is longer than the model's max_position_embeddings {}",
                self.config.max_position_embeddings
            );
        }
        let mut x = self.word_embeddings.forward(ids)?;
        if let Some(token_type) = &self.token_type {
            x = x.broadcast_add(token_type)?;
        }
        let mut x = self.embeddings_norm.forward(&x)?;
        let embeddings = match &self.rel_norm {
            Some(norm) => norm.forward(&self.rel_embeddings)?,
            None => self.rel_embeddings.clone(),
        };
        let (c2p, p2c) = self.indexes(t, ids.device())?;
        let relative = Relative {
            mask: key_mask(lengths, t, ids.device())?.to_dtype(DType::F32)?,
            embeddings,
            c2p,
            p2c,
        };
        let heads = self.config.num_attention_heads;
        for layer in &self.layers {
            x = layer.forward(&x, &relative, heads, self.scale)?;
        }
        Ok(x)
    }

    /// `act(pooler.dense(h[0]))`, `(batch, hidden)`: what `classifier` reads.
    pub fn features(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let hidden = self.hidden_states(ids, lengths)?;
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        self.pooler_activation
            .forward(&self.pooler.forward(&first)?)
    }

    /// The `classifier` layer.
    pub fn head(&self) -> &Linear {
        &self.classifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_buckets_match_transformers() {
        // make_log_bucket_position(rel, 16, 64): exact within ±8, then ceil(log(|r|/8) /
        // log(63/8) · 7) + 8 with the sign; the values numpy gives for the same formula in
        // float32 (the fixture test checks the whole model against transformers itself).
        let expected = [
            (0, 0),
            (1, 1),
            (-7, -7),
            (8, 8),
            (-8, -8),
            (9, 9),
            (10, 9),
            (11, 10),
            (13, 10),
            (20, 12),
            (39, 14),
            (-39, -14),
            (63, 15),
            (64, 16),
            (200, 19),
        ];
        for (relative, bucket) in expected {
            assert_eq!(log_bucket(relative, 16, 64), bucket, "{relative}");
        }
    }

    #[test]
    fn pos_att_type_strings_split_like_transformers() {
        assert_eq!(split_types("P2C| c2p"), vec!["p2c", "c2p"]);
        assert!(split_types("").is_empty());
    }
}
