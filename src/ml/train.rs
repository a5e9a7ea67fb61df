//! Training the default prover: a tiny Llama fitted with candle on CPU to the project's own
//! generated problems, in both roles.
//!
//! Helpful examples are the generator's correct solutions, sneaky examples the same problems'
//! solutions with one subtle reasoning error; the role is given by the checkpoint's prompt
//! template, as in the paper. Training is seeded end to end (data, order, initial weights,
//! evaluation draws), so the same command on the same thread count writes the same model.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::Serialize;
use tokenizers::Tokenizer;

use super::ModelError;
use super::config::{LlamaConfig, ModelConfig, TokenIds};
use super::decoder::Decoder;
use super::llama;
use super::prompt::{PROMPT_TEMPLATE_FILE, PromptTemplate};
use super::prover::{Prover, SampleRequest, WEIGHTS_FILE};
use super::rope::RopeFields;
use super::sampling::{SampleRng, SamplingParams};
use super::tokenizer::{self, BOS, EOS, PAD};
use crate::domain::ProverRole;
use crate::generator::{self, GeneratedProblem};
use crate::grading;

/// Seed of the generated problems a fresh database ships with; never trained on.
pub const BUILTIN_PROBLEMS_SEED: u64 = 2024;
/// How many built-in problems there are (kept in step with the CLI's built-in set).
pub const BUILTIN_PROBLEMS: usize = 500;
/// Seed of the held-out problems the prover's quality is measured on.
pub const HELD_OUT_SEED: u64 = 77;

/// Model size and schedule of one training recipe.
#[derive(Debug, Clone, Serialize)]
pub struct Preset {
    /// Recipe name, as given on the command line.
    pub name: &'static str,
    /// Residual width.
    pub hidden_size: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// BPE vocabulary.
    pub vocab_size: usize,
    /// Longest prompt + solution.
    pub max_positions: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Generated training problems (each gives a helpful and a sneaky example).
    pub train_problems: usize,
    /// Held-out problems evaluated after training.
    pub eval_problems: usize,
}

impl Preset {
    /// The named recipe: `tiny` (the shipped default prover) or `test` (seconds; for CI).
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self {
                name: "tiny",
                hidden_size: 192,
                layers: 4,
                heads: 6,
                intermediate_size: 512,
                vocab_size: 1024,
                max_positions: 512,
                steps: 2400,
                batch_size: 12,
                learning_rate: 2e-3,
                train_problems: 30_000,
                eval_problems: 200,
            }),
            "test" => Some(Self {
                name: "test",
                hidden_size: 32,
                layers: 1,
                heads: 2,
                intermediate_size: 64,
                vocab_size: 400,
                max_positions: 512,
                steps: 20,
                batch_size: 4,
                learning_rate: 3e-3,
                train_problems: 300,
                eval_problems: 4,
            }),
            _ => None,
        }
    }

    fn config(&self, tokenizer: &Tokenizer) -> LlamaConfig {
        LlamaConfig {
            architectures: vec!["LlamaForCausalLM".to_string()],
            model_type: "llama".to_string(),
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: Some(self.heads),
            vocab_size: tokenizer.get_vocab_size(true),
            rms_norm_eps: 1e-5,
            rope: RopeFields::theta(10_000.0),
            max_position_embeddings: self.max_positions,
            tie_word_embeddings: false,
            bos_token_id: tokenizer::special_id(tokenizer, BOS),
            eos_token_id: tokenizer::special_id(tokenizer, EOS).map(TokenIds::One),
            head_dim: None,
            attention_bias: false,
            mlp_bias: false,
            hidden_act: None,
            pad_token_id: None,
            quantization_config: None,
        }
    }
}

/// What to train and where to put it.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The recipe.
    pub preset: Preset,
    /// Seed of data, order, initialisation and evaluation.
    pub seed: u64,
    /// Checkpoint folder to write (replaced atomically).
    pub out: PathBuf,
    /// Optional GSM8K train JSONL whose reference solutions join the helpful examples.
    pub gsm8k: Option<PathBuf>,
    /// Overrides the preset's step count.
    pub steps: Option<usize>,
}

/// Measured quality of a prover on held-out generated problems.
#[derive(Debug, Clone, Serialize)]
pub struct ProverQuality {
    /// Problems evaluated (each sampled once per role).
    pub problems: usize,
    /// Share of helpful solutions graded correct.
    pub helpful_correct: f64,
    /// Share of sneaky solutions graded incorrect.
    pub sneaky_incorrect: f64,
    /// Share of solutions that reached a final-answer line.
    pub finished: f64,
    /// Sampling used.
    pub sampling: SamplingParams,
}

/// The record written to `training.json` next to the weights.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Recipe used.
    pub preset: Preset,
    /// Seed used.
    pub seed: u64,
    /// Steps run.
    pub steps: usize,
    /// Training examples (helpful + sneaky).
    pub examples: usize,
    /// Mean loss over the last 50 steps.
    pub final_loss: f64,
    /// Wall-clock seconds of the optimisation.
    pub train_seconds: f64,
    /// Trainable parameters.
    pub parameters: usize,
    /// Held-out quality.
    pub quality: ProverQuality,
    /// The generator seeds used for training and evaluation.
    pub data: String,
}

/// One training sequence: prompt ids then target ids (solution + EOS).
struct Example {
    ids: Vec<u32>,
    prompt_len: usize,
}

/// Encodes (role, question, solution) triples as training sequences: BOS, the role's prompt,
/// the solution and EOS; sequences longer than `max_len` tokens are left out.
fn encode_examples(
    tokenizer: &Tokenizer,
    template: &PromptTemplate,
    pairs: &[(ProverRole, String, String)],
    max_len: usize,
) -> Result<Vec<Example>, ModelError> {
    let bos = tokenizer::special_id(tokenizer, BOS);
    let eos = tokenizer::special_id(tokenizer, EOS)
        .ok_or_else(|| ModelError::Tokenizer("the tokenizer has no </s>".into()))?;
    let mut examples = Vec::with_capacity(pairs.len());
    for (role, question, solution) in pairs {
        let mut ids: Vec<u32> = bos.into_iter().collect();
        ids.extend(tokenizer::encode(
            tokenizer,
            &template.render(*role, question),
        )?);
        let prompt_len = ids.len();
        ids.extend(tokenizer::encode(tokenizer, solution)?);
        ids.push(eos);
        if ids.len() <= max_len {
            examples.push(Example { ids, prompt_len });
        }
    }
    Ok(examples)
}

/// How a prover checkpoint is fine-tuned on chosen solutions: the optimiser step of a game
/// round (expert iteration on the highest-reward samples, see `game::expert_iteration_examples`).
/// Few steps at a small learning rate keep the prover near where it started, which is what a
/// KL penalty to the initial prover does for policy-gradient methods.
#[derive(Debug, Clone, Serialize)]
pub struct FineTuneOptions {
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate (warm-up, then cosine decay).
    pub learning_rate: f64,
    /// Seed of the batch order.
    pub seed: u64,
}

/// The record a fine-tuned checkpoint keeps in `training.json`.
#[derive(Debug, Clone, Serialize)]
pub struct FineTuneReport {
    /// The checkpoint folder it started from.
    pub base: String,
    /// The settings used.
    pub options: FineTuneOptions,
    /// Training sequences (after leaving out over-long ones).
    pub examples: usize,
    /// Mean loss on the examples before the first step.
    pub initial_loss: f64,
    /// Mean loss on the examples after the last step.
    pub final_loss: f64,
    /// Wall-clock seconds of the optimisation.
    pub train_seconds: f64,
}

/// Fine-tunes the prover in `base` on (role, question, solution) triples and writes the result
/// to `out` atomically (config, tokenizer and prompt template unchanged). Weights of any
/// accepted dtype are trained in F32.
pub fn fine_tune_prover(
    base: &Path,
    pairs: &[(ProverRole, String, String)],
    options: &FineTuneOptions,
    out: &Path,
) -> Result<FineTuneReport, ModelError> {
    let device = Device::Cpu;
    let Trainable {
        config,
        tokenizer,
        template,
        varmap,
        mut model,
        pad,
    } = trainable(base, &device)?;
    let examples = encode_examples(&tokenizer, &template, pairs, config.max_position_embeddings)?;
    if examples.is_empty() {
        return Err(ModelError::Invalid(
            "no solution to fine-tune on fits the model's context".into(),
        ));
    }
    let mut optimiser = fine_tuning_optimiser(&varmap, options.learning_rate)?;
    let batch_size = options.batch_size.max(1);
    let mean_loss = |model: &mut Decoder| -> Result<f64, ModelError> {
        let (mut total, mut weight) = (0.0, 0.0);
        for chunk in examples.chunks(batch_size) {
            let batch: Vec<&Example> = chunk.iter().collect();
            let loss = batch_loss(model, &batch, pad, &device)?.to_scalar::<f32>()? as f64;
            total += loss * chunk.len() as f64;
            weight += chunk.len() as f64;
        }
        Ok(total / weight)
    };
    let initial_loss = mean_loss(&mut model)?;
    let mut rng = SampleRng::new(options.seed ^ 0xf17e);
    let mut order: Vec<usize> = Vec::new();
    let started = Instant::now();
    let warmup = (options.steps / 10).max(1);
    for step in 0..options.steps {
        optimiser.set_learning_rate(learning_rate(
            options.learning_rate,
            step,
            options.steps,
            warmup,
        ));
        if order.is_empty() {
            order = length_bucketed(&examples, batch_size, &mut rng);
        }
        let take = order.len().saturating_sub(batch_size);
        let batch: Vec<&Example> = order.drain(take..).map(|i| &examples[i]).collect();
        let loss = batch_loss(&mut model, &batch, pad, &device)?;
        optimiser.backward_step(&loss)?;
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let report = FineTuneReport {
        base: base.display().to_string(),
        options: options.clone(),
        examples: examples.len(),
        initial_loss,
        final_loss: mean_loss(&mut model)?,
        train_seconds,
    };
    write_checkpoint(out, &config, &tokenizer, &template, &varmap, &report)?;
    Ok(report)
}

/// The optimiser of a game step's update (expert iteration or policy gradient): AdamW without
/// weight decay, so the prover stays where its checkpoint put it but for the step's gradients.
fn fine_tuning_optimiser(varmap: &VarMap, learning_rate: f64) -> Result<AdamW, ModelError> {
    Ok(AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?)
}

/// A plain-prompt Llama prover loaded for training: its files and F32 weights in a VarMap.
struct Trainable {
    config: LlamaConfig,
    tokenizer: Tokenizer,
    template: PromptTemplate,
    varmap: VarMap,
    model: Decoder,
    pad: u32,
}

/// Loads the prover in `base` for training; fine-tuning (the game's prover steps) runs the
/// project's own plain-prompt Llama provers only.
fn trainable(base: &Path, device: &Device) -> Result<Trainable, ModelError> {
    let (config, tokenizer, prompts) = super::prover::read_checkpoint_files(base)?;
    let config = config.as_llama().cloned().ok_or_else(|| {
        ModelError::Invalid(format!(
            "fine-tuning supports Llama provers; this checkpoint is {:?}",
            config.model_type()
        ))
    })?;
    // Training prompts must be the ones generation uses; only plain prompts are built here.
    let super::prompt::RolePrompts::Plain(template) = prompts else {
        return Err(ModelError::Invalid(format!(
            "{} has a chat template: fine-tuning instruct provers is not supported yet",
            base.display()
        )));
    };
    let pad = tokenizer::special_id(&tokenizer, PAD).unwrap_or(0);
    let varmap = VarMap::new();
    let model: Decoder = llama::Model::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )?
    .into();
    load_weights(&varmap, &super::weight_files(base)?, device)?;
    Ok(Trainable {
        config,
        tokenizer,
        template,
        varmap,
        model,
        pad,
    })
}

/// A sample a policy-gradient step learns from.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySample {
    /// The role it was sampled in.
    pub role: ProverRole,
    /// The problem's question.
    pub question: String,
    /// The sampled solution.
    pub solution: String,
    /// Its reward from the game's rules.
    pub reward: f64,
    /// Its group for the leave-one-out baseline (one per problem and role).
    pub group: usize,
}

/// log π(solution | prompt) under the prover in `dir` for each sample that fits the context
/// (None for one that does not), in batches of `batch_size`; no gradient is kept.
pub fn solution_log_probs(
    dir: &Path,
    samples: &[PolicySample],
    batch_size: usize,
) -> Result<Vec<Option<f64>>, ModelError> {
    let device = Device::Cpu;
    let mut prover = trainable(dir, &device)?;
    let (examples, fits) = encode_policy_samples(&prover, samples)?;
    let values = log_probs_of(&mut prover, &examples, batch_size, &device)?;
    let mut values = values.into_iter();
    Ok(fits
        .iter()
        .map(|fits| fits.then(|| values.next()).flatten())
        .collect())
}

/// The samples as training sequences, and for each sample whether it fits the context.
fn encode_policy_samples(
    prover: &Trainable,
    samples: &[PolicySample],
) -> Result<(Vec<Example>, Vec<bool>), ModelError> {
    let mut examples = Vec::with_capacity(samples.len());
    let mut fits = Vec::with_capacity(samples.len());
    for s in samples {
        let pair = [(s.role, s.question.clone(), s.solution.clone())];
        let encoded = encode_examples(
            &prover.tokenizer,
            &prover.template,
            &pair,
            prover.config.max_position_embeddings,
        )?;
        fits.push(!encoded.is_empty());
        examples.extend(encoded);
    }
    Ok((examples, fits))
}

fn log_probs_of(
    prover: &mut Trainable,
    examples: &[Example],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<f64>, ModelError> {
    let mut values = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch: Vec<&Example> = chunk.iter().collect();
        let lp = sequence_log_probs(&mut prover.model, &batch, prover.pad, device)?;
        values.extend(lp.to_vec1::<f32>()?.into_iter().map(f64::from));
    }
    Ok(values)
}

/// What a policy-gradient step did.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyGradientReport {
    /// The fine-tune record (its losses are the policy-gradient loss before and after).
    pub fine_tune: FineTuneReport,
    /// Mean single-sample KL estimate log π − log π_ref over the samples, before the step.
    pub mean_kl: f64,
}

/// One policy-gradient update of the prover in `base` (REINFORCE, see
/// `game::policy_gradient_loss`): rewards penalised by β·KL to the prover in `reference`
/// (the run's initial prover), leave-one-out advantages within each sample's group, then one
/// pass over the samples in minibatches of `options.batch_size` with AdamW (warm-up and cosine
/// decay to `options.learning_rate`). Samples that do not fit the context are left out. The
/// result is written to `out` atomically.
pub fn policy_gradient_prover(
    base: &Path,
    reference: &Path,
    samples: &[PolicySample],
    kl_coefficient: f64,
    options: &FineTuneOptions,
    out: &Path,
) -> Result<PolicyGradientReport, ModelError> {
    let device = Device::Cpu;
    let mut prover = trainable(base, &device)?;
    let (examples, fits) = encode_policy_samples(&prover, samples)?;
    if examples.is_empty() {
        return Err(ModelError::Invalid(
            "no solution to learn from fits the model's context".into(),
        ));
    }
    let kept: Vec<&PolicySample> = samples
        .iter()
        .zip(&fits)
        .filter(|(_, f)| **f)
        .map(|(s, _)| s)
        .collect();
    let batch_size = options.batch_size.max(1);
    let before = log_probs_of(&mut prover, &examples, batch_size, &device)?;
    let reference_log_probs = if reference == base {
        before.clone()
    } else {
        let mut reference = trainable(reference, &device)?;
        log_probs_of(&mut reference, &examples, batch_size, &device)?
    };
    let rewards: Vec<f64> = kept.iter().map(|s| s.reward).collect();
    let groups: Vec<usize> = kept.iter().map(|s| s.group).collect();
    let shaped = crate::game::kl_penalised(&rewards, &before, &reference_log_probs, kl_coefficient);
    let advantages = crate::game::leave_one_out_advantages(&shaped, &groups);
    let mean_kl = before
        .iter()
        .zip(&reference_log_probs)
        .map(|(a, b)| a - b)
        .sum::<f64>()
        / before.len() as f64;
    let initial_loss = crate::game::policy_gradient_loss(&advantages, &before);

    let mut optimiser = fine_tuning_optimiser(&prover.varmap, options.learning_rate)?;
    let mut rng = SampleRng::new(options.seed ^ 0x9e1f);
    let order = length_bucketed(&examples, batch_size, &mut rng);
    let steps = order.len().div_ceil(batch_size);
    let warmup = (steps / 10).max(1);
    let started = Instant::now();
    for (step, chunk) in order.chunks(batch_size).enumerate() {
        optimiser.set_learning_rate(learning_rate(options.learning_rate, step, steps, warmup));
        let batch: Vec<&Example> = chunk.iter().map(|i| &examples[*i]).collect();
        let weights: Vec<f64> = chunk.iter().map(|i| advantages[*i]).collect();
        let loss = reinforce_loss(&mut prover, &batch, &weights, &device)?;
        optimiser.backward_step(&loss)?;
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let after = log_probs_of(&mut prover, &examples, batch_size, &device)?;
    let report = FineTuneReport {
        base: base.display().to_string(),
        options: FineTuneOptions {
            steps,
            ..options.clone()
        },
        examples: examples.len(),
        initial_loss,
        final_loss: crate::game::policy_gradient_loss(&advantages, &after),
        train_seconds,
    };
    write_checkpoint(
        out,
        &prover.config,
        &prover.tokenizer,
        &prover.template,
        &prover.varmap,
        &report,
    )?;
    Ok(PolicyGradientReport {
        fine_tune: report,
        mean_kl,
    })
}

/// The REINFORCE loss of `samples` under the prover in `dir` as the training step computes it
/// on tensors (before any update), for checking it against `game::policy_gradient_loss`.
pub fn policy_gradient_batch_loss(
    dir: &Path,
    samples: &[PolicySample],
    advantages: &[f64],
) -> Result<f64, ModelError> {
    let device = Device::Cpu;
    let mut prover = trainable(dir, &device)?;
    let (examples, _) = encode_policy_samples(&prover, samples)?;
    let batch: Vec<&Example> = examples.iter().collect();
    let loss = reinforce_loss(&mut prover, &batch, advantages, &device)?;
    Ok(f64::from(loss.to_scalar::<f32>()?))
}

/// Mean over the batch of −A·log π(solution | prompt): the REINFORCE loss as a tensor.
fn reinforce_loss(
    prover: &mut Trainable,
    batch: &[&Example],
    advantages: &[f64],
    device: &Device,
) -> Result<Tensor, ModelError> {
    let weights: Vec<f32> = advantages.iter().map(|a| *a as f32).collect();
    let weights = Tensor::from_vec(weights, batch.len(), device)?;
    let log_probs = sequence_log_probs(&mut prover.model, batch, prover.pad, device)?;
    Ok((log_probs * weights)?
        .sum_all()?
        .affine(-1.0 / batch.len() as f64, 0.0)?)
}

/// Sets every variable from the checkpoint's weight files (converted to F32); a tensor the
/// model needs and the files lack, or of another shape, is an error naming it.
fn load_weights(varmap: &VarMap, files: &[PathBuf], device: &Device) -> Result<(), ModelError> {
    let mut tensors = std::collections::HashMap::new();
    for file in files {
        tensors.extend(candle_core::safetensors::load(file, device)?);
    }
    let data = varmap
        .data()
        .lock()
        .map_err(|_| ModelError::Invalid("variable map poisoned".into()))?;
    for (name, var) in data.iter() {
        let tensor = tensors
            .get(name)
            .ok_or_else(|| ModelError::Invalid(format!("the weights have no tensor {name}")))?;
        if tensor.dims() != var.dims() {
            return Err(ModelError::Invalid(format!(
                "tensor {name} has shape {:?}, the model needs {:?}",
                tensor.dims(),
                var.dims()
            )));
        }
        var.set(&tensor.to_dtype(DType::F32)?)?;
    }
    Ok(())
}

/// Trains a prover with `options`, writes the checkpoint folder and returns the report.
/// `log` receives progress lines.
pub fn train_prover(
    options: &TrainOptions,
    log: &mut dyn FnMut(&str),
) -> Result<TrainReport, ModelError> {
    let preset = &options.preset;
    let steps = options.steps.unwrap_or(preset.steps);
    let device = Device::Cpu;
    let template = PromptTemplate::default();

    let (held_out, excluded) = held_out_problems(preset.eval_problems);
    let mut pairs: Vec<(ProverRole, String, String)> = Vec::new();
    for problem in generator::generate_for_training(options.seed, preset.train_problems) {
        if excluded.contains(&problem.question) {
            continue;
        }
        pairs.push((
            ProverRole::Helpful,
            problem.question.clone(),
            problem.helpful_solution.clone(),
        ));
        pairs.push((
            ProverRole::Sneaky,
            problem.question,
            problem.sneaky_solution,
        ));
    }
    if let Some(path) = &options.gsm8k {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let records = crate::problems::parse_gsm8k_problems(&bytes)
            .map_err(|e| ModelError::Invalid(format!("{}: {e}", path.display())))?;
        log(&format!("adding {} GSM8K helpful examples", records.len()));
        for record in records {
            pairs.push((
                ProverRole::Helpful,
                record.question,
                record.reference_solution,
            ));
        }
    }

    log(&format!("training the tokenizer on {} texts", pairs.len()));
    let corpus: Vec<String> = pairs
        .iter()
        .map(|(role, q, s)| format!("{}{s}", template.render(*role, q)))
        .collect();
    let tokenizer = tokenizer::train_bpe(corpus.into_iter(), preset.vocab_size)?;
    let config = preset.config(&tokenizer);
    let pad = tokenizer::special_id(&tokenizer, PAD).unwrap_or(0);

    let examples = encode_examples(
        &tokenizer,
        &template,
        &pairs,
        config.max_position_embeddings,
    )?;
    let mean_len =
        examples.iter().map(|e| e.ids.len()).sum::<usize>() as f64 / examples.len().max(1) as f64;
    log(&format!(
        "{} examples, mean {mean_len:.0} tokens, vocabulary {}",
        examples.len(),
        config.vocab_size
    ));
    if examples.is_empty() {
        return Err(ModelError::Invalid("no training examples".into()));
    }

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let mut model: Decoder = llama::Model::new(&config, vb)?.into();
    let parameters = initialise(&varmap, options.seed, config.num_hidden_layers, &device)?;
    log(&format!("{parameters} parameters"));
    let mut optimiser = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: preset.learning_rate,
            weight_decay: 0.01,
            ..ParamsAdamW::default()
        },
    )?;

    let mut rng = SampleRng::new(options.seed ^ 0x5eed);
    let mut order: Vec<usize> = Vec::new();
    let mut recent = Vec::new();
    let started = Instant::now();
    let (mut forward_seconds, mut backward_seconds) = (0.0, 0.0);
    let warmup = (steps / 20).max(1);
    for step in 0..steps {
        let lr = learning_rate(preset.learning_rate, step, steps, warmup);
        optimiser.set_learning_rate(lr);
        if order.is_empty() {
            order = length_bucketed(&examples, preset.batch_size, &mut rng);
        }
        let take = order.len().saturating_sub(preset.batch_size);
        let batch: Vec<&Example> = order.drain(take..).map(|i| &examples[i]).collect();
        let forward_started = Instant::now();
        let loss = batch_loss(&mut model, &batch, pad, &device)?;
        let backward_started = Instant::now();
        forward_seconds += (backward_started - forward_started).as_secs_f64();
        optimiser.backward_step(&loss)?;
        backward_seconds += backward_started.elapsed().as_secs_f64();
        recent.push(loss.to_scalar::<f32>()? as f64);
        if recent.len() > 50 {
            recent.remove(0);
        }
        if step % 50 == 0 || step + 1 == steps {
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            log(&format!(
                "step {}/{steps} loss {mean:.4} lr {lr:.2e} {:.0}s (forward {forward_seconds:.0}s, backward+update {backward_seconds:.0}s)",
                step + 1,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let final_loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;

    let mut prover = Prover::from_parts(
        model,
        ModelConfig::Llama(config.clone()),
        tokenizer.clone(),
        template.clone(),
    )?;
    let quality = evaluate(
        &mut prover,
        &held_out,
        options.seed,
        &SamplingParams::default(),
    )?;
    log(&format!(
        "held-out: helpful correct {:.1}%, sneaky incorrect {:.1}%, finished {:.1}%",
        quality.helpful_correct * 100.0,
        quality.sneaky_incorrect * 100.0,
        quality.finished * 100.0
    ));
    let report = TrainReport {
        preset: preset.clone(),
        seed: options.seed,
        steps,
        examples: examples.len(),
        final_loss,
        train_seconds,
        parameters,
        quality,
        data: format!(
            "generator seed {} ({} problems, minus built-in seed {BUILTIN_PROBLEMS_SEED} and held-out seed {HELD_OUT_SEED}){}",
            options.seed,
            preset.train_problems,
            if options.gsm8k.is_some() {
                " + GSM8K train"
            } else {
                ""
            }
        ),
    };
    write_checkpoint(
        &options.out,
        &config,
        &tokenizer,
        &template,
        &varmap,
        &report,
    )?;
    Ok(report)
}

/// The first `count` held-out problems, and every question training must skip: those and the
/// built-in set's, so neither quality figures nor studies on the built-in set are measured on
/// problems a model was trained on.
pub(crate) fn held_out_problems(count: usize) -> (Vec<GeneratedProblem>, HashSet<String>) {
    let held_out = generator::generate(HELD_OUT_SEED, count);
    let mut excluded: HashSet<String> = held_out.iter().map(|p| p.question.clone()).collect();
    excluded.extend(
        generator::generate(BUILTIN_PROBLEMS_SEED, BUILTIN_PROBLEMS)
            .into_iter()
            .map(|p| p.question),
    );
    (held_out, excluded)
}

/// Deterministic initialisation: N(0, 0.02) for matrices (output projections scaled down by
/// depth, as in GPT-2), ones for norms. Returns the parameter count.
pub(crate) fn initialise(
    varmap: &VarMap,
    seed: u64,
    layers: usize,
    device: &Device,
) -> Result<usize, ModelError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| ModelError::Invalid("variable map poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = SampleRng::new(seed);
    let mut count = 0;
    for name in names {
        let var = &data[name];
        let shape = var.shape().clone();
        let n = shape.elem_count();
        count += n;
        let values: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            let std = if name.contains("o_proj") || name.contains("down_proj") {
                0.02 / (2.0 * layers as f64).sqrt()
            } else {
                0.02
            };
            (0..n).map(|_| (rng.next_normal() * std) as f32).collect()
        };
        var.set(&Tensor::from_vec(values, shape, device)?)?;
    }
    Ok(count)
}

/// Linear warm-up, then cosine decay to a tenth of the peak.
fn learning_rate(peak: f64, step: usize, steps: usize, warmup: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (0.1 + 0.9 * cosine)
}

fn shuffle<T>(items: &mut [T], rng: &mut SampleRng) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// One epoch's order: shuffled, then sorted by length within windows of 64 batches and cut
/// into batches that are shuffled again, so a batch holds sequences of similar length and
/// little compute goes to padding.
fn length_bucketed(examples: &[Example], batch_size: usize, rng: &mut SampleRng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    shuffle(&mut order, rng);
    for window in order.chunks_mut(batch_size * 64) {
        window.sort_by_key(|&i| examples[i].ids.len());
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    shuffle(&mut batches, rng);
    batches.into_iter().flatten().collect()
}

/// Mean cross-entropy of predicting each target token (solution + EOS) from everything
/// before it; prompt and padding positions do not count.
fn batch_loss(
    model: &mut Decoder,
    batch: &[&Example],
    pad: u32,
    device: &Device,
) -> Result<Tensor, ModelError> {
    let (picked, labels, _) = solution_logits(model, batch, pad, device)?;
    Ok(candle_nn::loss::cross_entropy(&picked, &labels)?)
}

/// The logits at every position that predicts a solution token (or the end) of a padded
/// batch, the tokens they predict, and the batch row of each such position.
fn solution_logits(
    model: &mut Decoder,
    batch: &[&Example],
    pad: u32,
    device: &Device,
) -> Result<(Tensor, Tensor, Vec<usize>), ModelError> {
    let width = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1) - 1;
    let mut inputs = Vec::with_capacity(batch.len() * width);
    let mut positions = Vec::new();
    let mut labels = Vec::new();
    let mut rows = Vec::new();
    for (row, example) in batch.iter().enumerate() {
        let n = example.ids.len() - 1;
        for t in 0..width {
            inputs.push(if t < n { example.ids[t] } else { pad });
            if t < n && t + 1 >= example.prompt_len {
                positions.push((row * width + t) as u32);
                labels.push(example.ids[t + 1]);
                rows.push(row);
            }
        }
    }
    let inputs = Tensor::from_vec(inputs, (batch.len(), width), device)?;
    let count = positions.len();
    let picked = model.forward_train(&inputs, &Tensor::from_vec(positions, count, device)?)?;
    Ok((picked, Tensor::from_vec(labels, count, device)?, rows))
}

/// log π(solution | prompt) of each example of a batch: the summed log-probabilities of its
/// solution tokens and its end, as a (batch,) tensor that gradients flow through.
fn sequence_log_probs(
    model: &mut Decoder,
    batch: &[&Example],
    pad: u32,
    device: &Device,
) -> Result<Tensor, ModelError> {
    let (picked, labels, rows) = solution_logits(model, batch, pad, device)?;
    let token_log_probs = candle_nn::ops::log_softmax(&picked, 1)?
        .gather(&labels.unsqueeze(1)?, 1)?
        .squeeze(1)?;
    // Sum per row through a 0/1 membership matrix (rows × positions).
    let count = rows.len();
    let mut membership = vec![0f32; batch.len() * count];
    for (position, row) in rows.iter().enumerate() {
        membership[row * count + position] = 1.0;
    }
    let membership = Tensor::from_vec(membership, (batch.len(), count), device)?;
    Ok(membership
        .matmul(&token_log_probs.unsqueeze(1)?)?
        .squeeze(1)?)
}

/// Samples each held-out problem once per role and grades the results.
pub fn evaluate(
    prover: &mut Prover,
    problems: &[GeneratedProblem],
    seed: u64,
    params: &SamplingParams,
) -> Result<ProverQuality, ModelError> {
    let stop = AtomicBool::new(false);
    let (mut helpful_correct, mut sneaky_incorrect, mut finished) = (0usize, 0usize, 0usize);
    for (chunk_index, chunk) in problems.chunks(16).enumerate() {
        let mut requests = Vec::new();
        for (i, problem) in chunk.iter().enumerate() {
            for (r, role) in [ProverRole::Helpful, ProverRole::Sneaky]
                .into_iter()
                .enumerate()
            {
                requests.push(SampleRequest {
                    question: problem.question.clone(),
                    role,
                    seed: seed
                        .wrapping_add(((chunk_index * 16 + i) * 2 + r) as u64)
                        .wrapping_mul(0x2545_F491_4F6C_DD1D),
                });
            }
        }
        let samples = prover.generate(&requests, params, &stop)?;
        for (k, (request, sample)) in requests.iter().zip(&samples).enumerate() {
            let problem = &chunk[k / 2];
            let correct = grading::grade(&sample.text, &problem.answer.to_string()).is_correct();
            finished += usize::from(sample.finished);
            match request.role {
                ProverRole::Helpful => helpful_correct += usize::from(correct),
                ProverRole::Sneaky => sneaky_incorrect += usize::from(!correct),
            }
        }
    }
    let n = problems.len().max(1) as f64;
    Ok(ProverQuality {
        problems: problems.len(),
        helpful_correct: helpful_correct as f64 / n,
        sneaky_incorrect: sneaky_incorrect as f64 / n,
        finished: finished as f64 / (2.0 * n),
        sampling: *params,
    })
}

/// Writes the checkpoint folder next to `out` and renames it into place, so a killed run
/// leaves the previous checkpoint intact.
fn write_checkpoint(
    out: &Path,
    config: &LlamaConfig,
    tokenizer: &Tokenizer,
    template: &PromptTemplate,
    varmap: &VarMap,
    report: &impl Serialize,
) -> Result<(), ModelError> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "prover".into());
    super::write_folder_atomically(out, &format!(".tmp-{name}-"), |staging| {
        let files: [(&str, String); 3] = [
            ("config.json", pretty_json(config)?),
            (PROMPT_TEMPLATE_FILE, pretty_json(template)?),
            ("training.json", pretty_json(report)?),
        ];
        for (file, text) in files {
            let path = staging.join(file);
            std::fs::write(&path, text + "\n").map_err(|e| ModelError::io(&path, e))?;
        }
        let tokenizer_path = staging.join("tokenizer.json");
        tokenizer
            .save(&tokenizer_path, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        varmap.save(staging.join(WEIGHTS_FILE))?;
        Ok(())
    })
}

/// Pretty JSON for the small files of a checkpoint.
fn pretty_json<T: Serialize>(value: &T) -> Result<String, ModelError> {
    serde_json::to_string_pretty(value).map_err(|e| ModelError::Invalid(e.to_string()))
}
