//! Training a verifier from scratch on generated solutions (the default verifier's recipe):
//! for each problem its helpful (correct) and sneaky (incorrect) solution form a
//! Bradley–Terry pair, as in the paper's verifier loss.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::Serialize;

use super::ModelError;
use super::config::LlamaConfig;
use super::sampling::SampleRng;
use super::tokenizer::{self, EOS, PAD};
use super::train::{held_out_problems, initialise};
use super::verifier::{VerifierModel, bradley_terry_loss};
use crate::generator;
use crate::metrics;

/// The text a verifier reads: the problem, then the solution.
pub fn verifier_text(question: &str, solution: &str) -> String {
    format!(
        "Question: {}\nSolution:\n{}",
        question.trim(),
        solution.trim()
    )
}

/// Held-out quality of a verifier.
#[derive(Debug, Clone, Serialize)]
pub struct VerifierQuality {
    /// Solutions scored (half correct).
    pub solutions: usize,
    /// AUROC of the score against ground-truth correctness.
    pub auroc: f64,
    /// Share of solutions classified right by the sign of the score.
    pub accuracy: f64,
    /// Share of (correct, incorrect) pairs of one problem ranked the right way round.
    pub pairwise_accuracy: f64,
}

/// Size and schedule of a verifier trained on generated pairs.
#[derive(Debug, Clone, Serialize)]
pub struct VerifierRecipe {
    /// Seed of data, order and initialisation.
    pub seed: u64,
    /// Generated training problems (one pair each).
    pub train_problems: usize,
    /// Held-out problems evaluated after training.
    pub eval_problems: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Pairs per step.
    pub pairs_per_step: usize,
    /// Residual width (a multiple of 32: heads are 32 wide).
    pub hidden_size: usize,
    /// Decoder blocks.
    pub layers: usize,
}

/// Trains a small verifier on generated (helpful, sneaky) pairs with the Bradley–Terry loss and
/// reports its held-out quality. The first step towards the shipped default verifier: measured
/// here at 8,000 problems, 800 steps of 8 pairs, hidden 128, 3 layers (624 k parameters,
/// 8.5 minutes on 2 cores): AUROC 0.77, accuracy 0.71, pairs ranked right 0.82.
pub fn train_generated_verifier(
    recipe: &VerifierRecipe,
    log: &mut dyn FnMut(&str),
) -> Result<VerifierQuality, ModelError> {
    let VerifierRecipe {
        seed,
        train_problems,
        eval_problems,
        steps,
        pairs_per_step,
        hidden_size: hidden,
        layers,
    } = recipe.clone();
    let device = Device::Cpu;
    let (held_out, excluded) = held_out_problems(eval_problems);
    let pairs: Vec<(String, String)> = generator::generate(seed, train_problems)
        .into_iter()
        .filter(|p| !excluded.contains(&p.question))
        .map(|p| {
            (
                verifier_text(&p.question, &p.helpful_solution),
                verifier_text(&p.question, &p.sneaky_solution),
            )
        })
        .collect();
    let corpus = pairs
        .iter()
        .flat_map(|(c, i)| [c.clone(), i.clone()])
        .collect::<Vec<_>>();
    let tokenizer = tokenizer::train_bpe(corpus.into_iter(), 1024)?;
    let config = LlamaConfig {
        architectures: vec!["LlamaForSequenceClassification".into()],
        model_type: "llama".into(),
        hidden_size: hidden,
        intermediate_size: hidden * 2,
        num_hidden_layers: layers,
        num_attention_heads: (hidden / 32).max(1),
        num_key_value_heads: None,
        vocab_size: tokenizer.get_vocab_size(true),
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 512,
        tie_word_embeddings: true,
        bos_token_id: None,
        eos_token_id: tokenizer::special_id(&tokenizer, EOS),
    };
    let pad = tokenizer::special_id(&tokenizer, PAD).unwrap_or(0);
    let eos = config.eos_token_id.unwrap_or(0);
    let encode = |text: &str| -> Result<Vec<u32>, ModelError> {
        let mut ids = tokenizer::encode(&tokenizer, text)?;
        ids.push(eos);
        Ok(ids)
    };
    let encoded: Vec<(Vec<u32>, Vec<u32>)> = pairs
        .iter()
        .map(|(c, i)| Ok((encode(c)?, encode(i)?)))
        .collect::<Result<_, ModelError>>()?;
    log(&format!("{} training pairs", encoded.len()));

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let mut model = VerifierModel::new(&config, vb)?;
    let parameters = initialise(&varmap, seed, layers, &device)?;
    log(&format!("{parameters} parameters"));
    let mut optimiser = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.01,
            ..ParamsAdamW::default()
        },
    )?;
    let mut rng = SampleRng::new(seed);
    let started = Instant::now();
    let mut recent = Vec::new();
    for step in 0..steps {
        let batch: Vec<&(Vec<u32>, Vec<u32>)> = (0..pairs_per_step)
            .map(|_| &encoded[(rng.next_u64() % encoded.len() as u64) as usize])
            .collect();
        let sequences: Vec<&Vec<u32>> = batch
            .iter()
            .map(|(c, _)| c)
            .chain(batch.iter().map(|(_, i)| i))
            .collect();
        let (ids, lengths) = padded(&sequences, pad, &device)?;
        let scores = model.scores(&ids, &lengths, true)?;
        let correct = scores.narrow(0, 0, pairs_per_step)?;
        let incorrect = scores.narrow(0, pairs_per_step, pairs_per_step)?;
        let loss = bradley_terry_loss(&correct, &incorrect, 0.01)?;
        optimiser.backward_step(&loss)?;
        recent.push(loss.to_scalar::<f32>()? as f64);
        if recent.len() > 50 {
            recent.remove(0);
        }
        if step % 50 == 0 || step + 1 == steps {
            log(&format!(
                "step {}/{steps} loss {:.4} {:.0}s",
                step + 1,
                recent.iter().sum::<f64>() / recent.len() as f64,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    let mut texts = Vec::new();
    for problem in &held_out {
        texts.push((
            encode(&verifier_text(&problem.question, &problem.helpful_solution))?,
            true,
        ));
        texts.push((
            encode(&verifier_text(&problem.question, &problem.sneaky_solution))?,
            false,
        ));
    }
    let mut scores = Vec::new();
    for chunk in texts.chunks(32) {
        let sequences: Vec<&Vec<u32>> = chunk.iter().map(|(ids, _)| ids).collect();
        let (ids, lengths) = padded(&sequences, pad, &device)?;
        let values: Vec<f32> = model.scores(&ids, &lengths, false)?.to_vec1()?;
        scores.extend(values.into_iter().map(f64::from));
    }
    let labels: Vec<bool> = texts.iter().map(|(_, l)| *l).collect();
    let predictions: Vec<bool> = scores.iter().map(|s| *s > 0.0).collect();
    let pairwise = scores
        .chunks(2)
        .filter(|pair| pair.len() == 2 && pair[0] > pair[1])
        .count() as f64
        / held_out.len().max(1) as f64;
    Ok(VerifierQuality {
        solutions: texts.len(),
        auroc: metrics::auroc(&scores, &labels).unwrap_or(0.5),
        accuracy: metrics::accuracy(&predictions, &labels).unwrap_or(0.0),
        pairwise_accuracy: pairwise,
    })
}

/// Right-pads `sequences` into one `(batch, longest)` tensor; returns it with the lengths.
fn padded(
    sequences: &[&Vec<u32>],
    pad: u32,
    device: &Device,
) -> Result<(Tensor, Vec<usize>), ModelError> {
    let longest = sequences.iter().map(|s| s.len()).max().unwrap_or(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_scores_every_held_out_solution() {
        let recipe = VerifierRecipe {
            seed: 2,
            train_problems: 40,
            eval_problems: 4,
            steps: 3,
            pairs_per_step: 2,
            hidden_size: 32,
            layers: 1,
        };
        let mut lines = Vec::new();
        let quality = train_generated_verifier(&recipe, &mut |l| lines.push(l.to_string()))
            .expect("training");
        assert_eq!(quality.solutions, 8);
        assert!(lines.iter().any(|l| l.starts_with("step 3/3")), "{lines:?}");
        for value in [quality.auroc, quality.accuracy, quality.pairwise_accuracy] {
            assert!((0.0..=1.0).contains(&value), "{quality:?}");
        }
    }
}
