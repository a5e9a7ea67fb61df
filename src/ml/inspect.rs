//! Looking inside a checkpoint the way transformers would, so an admin can compare any
//! checkpoint with transformers before a study: a prover's next-token logits at every input
//! position, a verifier's score of a text (`legibility checkpoint logits`).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::ModelError;
use super::decoder::Decoder;
use super::verifier::Verifier;

/// One input position of a prover: the token there and the `top` highest logits of the next
/// token, as `[token_id, logit]`, highest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionLogits {
    /// 0-based position in the input.
    pub position: usize,
    /// The input token at this position.
    pub token_id: u32,
    /// The highest next-token logits.
    pub top: Vec<(u32, f32)>,
}

/// A verifier's score of one text, with the token ids it read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifierScore {
    /// The ids, as the verifier encodes the text.
    pub token_ids: Vec<u32>,
    /// The score.
    pub score: f32,
}

/// Whether the checkpoint at `dir` is a verifier (a reward model, the project's own verifier,
/// or an encoder) rather than a prover, judged by its `config.json`.
pub fn is_verifier(dir: &Path) -> Result<bool, ModelError> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
    let config = super::config::ModelConfig::from_json(&bytes).map_err(ModelError::Invalid)?;
    Ok(config.decoder_spec().is_none()
        || config
            .architectures()
            .iter()
            .any(|a| a.ends_with("ForSequenceClassification")))
}

/// A prover checkpoint's logits over `text`, tokenized as transformers' `tokenizer(text)` does
/// (the tokenizer's own special tokens added), in one forward pass.
pub fn prover_logits(
    dir: &Path,
    text: &str,
    top: usize,
) -> Result<Vec<PositionLogits>, ModelError> {
    let mut prover = super::prover::Prover::load(dir, &Device::Cpu)?;
    let ids = prover
        .tokenizer()
        .encode(text, true)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?
        .get_ids()
        .to_vec();
    if ids.is_empty() {
        return Err(ModelError::Invalid("the text has no tokens".into()));
    }
    logits_of(prover.model_mut(), &ids, top)
}

/// The `top` highest next-token logits at each position of `ids`.
pub fn logits_of(
    model: &mut Decoder,
    ids: &[u32],
    top: usize,
) -> Result<Vec<PositionLogits>, ModelError> {
    model.reset(ids.len());
    let input = Tensor::new(ids, model.device())?.unsqueeze(0)?;
    let logits: Vec<Vec<f32>> = model
        .forward_decode_all(&input, &[0])?
        .squeeze(0)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    Ok(ids
        .iter()
        .zip(logits)
        .enumerate()
        .map(|(position, (&token_id, row))| {
            let mut ranked: Vec<(u32, f32)> = row
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i as u32, v))
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            ranked.truncate(top);
            PositionLogits {
                position,
                token_id,
                top: ranked,
            }
        })
        .collect())
}

/// A verifier checkpoint's score of `text`, encoded as the verifier encodes texts.
pub fn verifier_score(dir: &Path, text: &str) -> Result<VerifierScore, ModelError> {
    let mut verifier = Verifier::load(dir, &Device::Cpu)?;
    let token_ids = verifier.encode(text)?;
    let score = verifier.score_encoded(std::slice::from_ref(&token_ids), 1)?[0];
    Ok(VerifierScore { token_ids, score })
}
