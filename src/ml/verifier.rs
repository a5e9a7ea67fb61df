//! The verifier: a small Llama body with a scalar score head, and the paper's losses.
//!
//! The paper's verifier is a smaller LM with a reward head that scores a whole solution. Here
//! the score is read at the solution's last token (the body is causal, so that position has
//! seen everything). Training compares solutions of the same problem: Bradley–Terry on
//! (correct, incorrect) pairs plus λ·E[V²] to keep scores centred, or plain cross-entropy.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::LlamaConfig;
use super::llama::Llama;

/// Name prefix of the score head's tensors (`score.weight`, `score.bias`).
pub const SCORE_HEAD: &str = "score";

/// Llama body + scalar head.
pub struct VerifierModel {
    body: Llama,
    head: Linear,
}

impl VerifierModel {
    /// Builds the verifier from `vb` (a checkpoint, or a `VarMap` for training). The config
    /// should tie word embeddings: the body's language-model head is not used.
    pub fn new(config: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let body = Llama::new(config, vb.clone())?;
        let head = candle_nn::linear(config.hidden_size, 1, vb.pp(SCORE_HEAD))?;
        Ok(Self { body, head })
    }

    /// Scores `(batch,)` of right-padded token ids `(batch, seq)` whose real lengths are
    /// `lengths`: the head applied to each sequence's last real token.
    pub fn scores(
        &mut self,
        ids: &Tensor,
        lengths: &[usize],
        differentiable: bool,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if lengths.len() != b || lengths.iter().any(|&n| n == 0 || n > t) {
            candle_core::bail!("lengths {lengths:?} do not fit a batch of {b} × {t}");
        }
        let hidden = self.body.hidden_states(ids, differentiable)?;
        let width = hidden.dim(2)?;
        let last: Vec<u32> = lengths
            .iter()
            .enumerate()
            .map(|(row, &n)| (row * t + n - 1) as u32)
            .collect();
        let index = Tensor::new(last.as_slice(), ids.device())?;
        let picked = hidden.reshape((b * t, width))?.index_select(&index, 0)?;
        self.head.forward(&picked)?.squeeze(1)
    }
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
        let mut verifier = VerifierModel::new(&config, vb).expect("model");
        // Seeded initialisation (small weights: scores start near 0, the loss near ln 2).
        crate::ml::train::initialise(&varmap, 11, 1, &device).expect("init");
        // "Solutions" whose last token says whether they are right (3) or wrong (4), padded.
        let correct = Tensor::new(&[[1u32, 2, 3, 0], [1, 3, 0, 0]], &device).expect("ids");
        let incorrect = Tensor::new(&[[1u32, 2, 4, 0], [1, 4, 0, 0]], &device).expect("ids");
        let lengths = [3, 2];
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
