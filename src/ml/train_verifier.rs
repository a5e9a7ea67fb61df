//! Verifier training, two ways.
//!
//! * [`train_generated_verifier`]: the shipped default verifier's recipe, from scratch on
//!   generated problems, where each problem's helpful (correct) and sneaky (incorrect)
//!   solution form one Bradley–Terry pair.
//! * [`fit_verifier`]: a new verifier version from the labels a study produced (human majority,
//!   ground truth or both; see `labels`): train/validation split by problem, the
//!   paper's Bradley–Terry + λ·E[V²] loss or cross-entropy, AdamW, early stopping on the
//!   validation loss, and validation metrics against ground truth and human majority, per prover
//!   round and role.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ModelError;
use super::config::{LlamaConfig, TokenIds};
use super::rope::RopeFields;
use super::sampling::SampleRng;
use super::split::{Split, split_problems};
use super::tokenizer::{self, EOS};
use super::train::{held_out_problems, initialise};
use super::verifier::{Verifier, bradley_terry_loss, cross_entropy_loss, verifier_text};
use crate::domain::{ProverRole, VerifierLoss};
use crate::generator;
use crate::metrics;

/// Held-out quality of a verifier trained on generated pairs.
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

impl VerifierRecipe {
    /// A named recipe: `tiny` (the shipped default verifier, ~20 minutes on 2 cores) or `test`
    /// (seconds, for CI).
    pub fn named(name: &str, seed: u64) -> Option<Self> {
        match name {
            "tiny" => Some(Self {
                seed,
                train_problems: 12_000,
                eval_problems: 200,
                steps: 1_500,
                pairs_per_step: 8,
                hidden_size: 128,
                layers: 3,
            }),
            "test" => Some(Self {
                seed,
                train_problems: 60,
                eval_problems: 8,
                steps: 4,
                pairs_per_step: 2,
                hidden_size: 32,
                layers: 1,
            }),
            _ => None,
        }
    }
}

/// What `training.json` of a generated-data verifier records.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedVerifierReport {
    /// The recipe.
    pub recipe: VerifierRecipe,
    /// Trainable parameters.
    pub parameters: usize,
    /// Mean loss over the last 50 steps.
    pub final_loss: f64,
    /// Training time in seconds.
    pub train_seconds: f64,
    /// Held-out quality.
    pub quality: VerifierQuality,
    /// Where the data came from.
    pub data: String,
}

/// Trains a small verifier from scratch on generated (helpful, sneaky) pairs with the
/// Bradley–Terry loss and measures it on held-out generated problems. Returns the verifier
/// (for the caller to save) and its report.
pub fn train_generated_verifier(
    recipe: &VerifierRecipe,
    log: &mut dyn FnMut(&str),
) -> Result<(Verifier, GeneratedVerifierReport), ModelError> {
    let device = Device::Cpu;
    let (held_out, excluded) = held_out_problems(recipe.eval_problems);
    let pairs: Vec<(String, String)> = generator::generate(recipe.seed, recipe.train_problems)
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
    let hidden = recipe.hidden_size;
    let config = LlamaConfig {
        architectures: vec!["LlamaForSequenceClassification".into()],
        model_type: "llama".into(),
        hidden_size: hidden,
        intermediate_size: hidden * 2,
        num_hidden_layers: recipe.layers,
        num_attention_heads: (hidden / 32).max(1),
        num_key_value_heads: None,
        vocab_size: tokenizer.get_vocab_size(true),
        rms_norm_eps: 1e-5,
        rope: RopeFields::theta(10_000.0),
        max_position_embeddings: 512,
        tie_word_embeddings: true,
        bos_token_id: None,
        eos_token_id: tokenizer::special_id(&tokenizer, EOS).map(TokenIds::One),
        head_dim: None,
        attention_bias: false,
        mlp_bias: false,
        hidden_act: None,
        pad_token_id: None,
        quantization_config: None,
    };
    let mut verifier = Verifier::from_parts(config, tokenizer, &device)?;
    let encoded: Vec<(Vec<u32>, Vec<u32>)> = pairs
        .iter()
        .map(|(c, i)| Ok((verifier.encode(c)?, verifier.encode(i)?)))
        .collect::<Result<_, ModelError>>()?;
    log(&format!("{} training pairs", encoded.len()));
    let parameters = initialise(verifier.varmap(), recipe.seed, recipe.layers, &device)?;
    log(&format!("{parameters} parameters"));
    let mut optimiser = AdamW::new(
        verifier.variables(),
        ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.01,
            ..ParamsAdamW::default()
        },
    )?;
    let mut rng = SampleRng::new(recipe.seed);
    let started = Instant::now();
    let mut recent = Vec::new();
    let n = recipe.pairs_per_step;
    for step in 0..recipe.steps {
        let batch: Vec<&(Vec<u32>, Vec<u32>)> = (0..n)
            .map(|_| &encoded[(rng.next_u64() % encoded.len() as u64) as usize])
            .collect();
        let sequences: Vec<&Vec<u32>> = batch
            .iter()
            .map(|(c, _)| c)
            .chain(batch.iter().map(|(_, i)| i))
            .collect();
        let scores = verifier.scores(&sequences, true)?;
        let loss = bradley_terry_loss(&scores.narrow(0, 0, n)?, &scores.narrow(0, n, n)?, 0.01)?;
        optimiser.backward_step(&loss)?;
        recent.push(loss.to_scalar::<f32>()? as f64);
        if recent.len() > 50 {
            recent.remove(0);
        }
        if step % 50 == 0 || step + 1 == recipe.steps {
            log(&format!(
                "step {}/{} loss {:.4} {:.0}s",
                step + 1,
                recipe.steps,
                mean(&recent),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let mut texts = Vec::new();
    for problem in &held_out {
        texts.push(verifier_text(&problem.question, &problem.helpful_solution));
        texts.push(verifier_text(&problem.question, &problem.sneaky_solution));
    }
    let scores: Vec<f64> = verifier
        .score_texts(&texts, 32)?
        .into_iter()
        .map(f64::from)
        .collect();
    let labels: Vec<bool> = (0..texts.len()).map(|i| i % 2 == 0).collect();
    let predictions: Vec<bool> = scores.iter().map(|s| *s > 0.0).collect();
    let pairwise = scores
        .chunks(2)
        .filter(|pair| pair.len() == 2 && pair[0] > pair[1])
        .count() as f64
        / held_out.len().max(1) as f64;
    let quality = VerifierQuality {
        solutions: texts.len(),
        auroc: metrics::auroc(&scores, &labels).unwrap_or(0.5),
        accuracy: metrics::accuracy(&predictions, &labels).unwrap_or(0.0),
        pairwise_accuracy: pairwise,
    };
    log(&format!(
        "held-out: AUROC {:.3}, accuracy {:.3}, pairs ranked right {:.3}",
        quality.auroc, quality.accuracy, quality.pairwise_accuracy
    ));
    let report = GeneratedVerifierReport {
        recipe: recipe.clone(),
        parameters,
        final_loss: mean(&recent),
        train_seconds,
        quality,
        data: format!(
            "generator seed {} ({} problems, minus the built-in and held-out sets), helpful vs sneaky reference solutions",
            recipe.seed, recipe.train_problems
        ),
    };
    Ok((verifier, report))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// One solution as verifier training sees it.
#[derive(Debug, Clone)]
pub struct LabelledSolution {
    /// The solution.
    pub solution_id: Uuid,
    /// Its problem: the unit of the train/validation split.
    pub problem_id: Uuid,
    /// The verifier text ([`verifier_text`] of question and solution).
    pub text: String,
    /// The training label under the chosen source; `None` leaves it out of training (and of
    /// the loss on validation) but not of the metrics.
    pub label: Option<bool>,
    /// The grader's verdict against the reference answer.
    pub ground_truth: bool,
    /// The raters' majority verdict, where they reached one.
    pub human: Option<bool>,
    /// The round of the prover checkpoint that wrote it.
    pub round: i64,
    /// The role it was written in.
    pub role: ProverRole,
}

/// How [`fit_verifier`] trains; stored in training jobs' parameters, where missing fields take
/// the defaults (so old jobs keep parsing when options are added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FitOptions {
    /// Bradley–Terry on (correct, incorrect) pairs of one problem, or cross-entropy.
    pub loss: VerifierLoss,
    /// Weight of the E[V²] term of the Bradley–Terry loss.
    pub lambda: f64,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Pairs (Bradley–Terry) or solutions (cross-entropy) per step.
    pub batch: usize,
    /// Passes over the training data at most.
    pub max_epochs: usize,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    /// Optimiser steps at most, over all epochs.
    pub max_steps: usize,
    /// Seed of the split and the data order.
    pub seed: u64,
    /// Share of problems held out for validation.
    pub validation_share: f64,
    /// For a decoder verifier: train only the top this many blocks and the score head (0: the
    /// head alone), the blocks below frozen and their output computed once per text. Absent:
    /// every weight of the project's own verifiers, the head alone of an uploaded
    /// transformers model.
    pub train_blocks: Option<usize>,
}

/// AdamW's learning rate unless one is asked for.
pub const DEFAULT_LEARNING_RATE: f64 = 3e-4;

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            loss: VerifierLoss::BradleyTerry,
            lambda: 0.01,
            learning_rate: DEFAULT_LEARNING_RATE,
            batch: 8,
            max_epochs: 8,
            patience: 2,
            max_steps: 2_000,
            seed: 1,
            validation_share: 0.2,
            train_blocks: None,
        }
    }
}

impl FitOptions {
    /// Why these options cannot train, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(self.validation_share > 0.0 && self.validation_share < 1.0) {
            return Err(format!(
                "the validation share must be between 0 and 1, not {}",
                self.validation_share
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err("the learning rate must be positive".into());
        }
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err("lambda must be 0 or more".into());
        }
        if self.batch == 0 || self.max_epochs == 0 || self.max_steps == 0 {
            return Err("batch, epochs and steps must be at least 1".into());
        }
        Ok(())
    }
}

/// Accuracy and AUROC of scores against one kind of label.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scorecard {
    /// Solutions with this kind of label.
    pub solutions: usize,
    /// Share classified right by the sign of the score; `None` without solutions.
    pub accuracy: Option<f64>,
    /// AUROC; `None` when one class is absent.
    pub auroc: Option<f64>,
}

impl Scorecard {
    /// The scorecard of `scores` against `labels` (pairs without a label are left out).
    pub fn of(scores: &[f64], labels: &[Option<bool>]) -> Self {
        let (s, l): (Vec<f64>, Vec<bool>) = scores
            .iter()
            .zip(labels)
            .filter_map(|(s, l)| l.map(|l| (*s, l)))
            .unzip();
        let predictions: Vec<bool> = s.iter().map(|s| *s > 0.0).collect();
        Self {
            solutions: s.len(),
            accuracy: metrics::accuracy(&predictions, &l),
            auroc: metrics::auroc(&s, &l),
        }
    }
}

/// Validation metrics of one prover round and role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupMetrics {
    /// Prover round.
    pub round: i64,
    /// Prover role.
    pub role: ProverRole,
    /// Against ground truth.
    pub ground_truth: Scorecard,
    /// Against the human majority.
    pub human: Scorecard,
}

/// A verifier's metrics on the validation split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationMetrics {
    /// Validation solutions scored.
    pub solutions: usize,
    /// Against the grader's ground truth.
    pub ground_truth: Scorecard,
    /// Against the raters' majority verdict (solutions with one).
    pub human: Scorecard,
    /// Per prover round and role.
    pub by_round_role: Vec<GroupMetrics>,
}

impl ValidationMetrics {
    /// Metrics of `scores` for `solutions` (aligned).
    pub fn of(solutions: &[&LabelledSolution], scores: &[f64]) -> Self {
        let truth: Vec<Option<bool>> = solutions.iter().map(|s| Some(s.ground_truth)).collect();
        let human: Vec<Option<bool>> = solutions.iter().map(|s| s.human).collect();
        let mut groups: BTreeMap<(i64, ProverRole), Vec<usize>> = BTreeMap::new();
        for (i, s) in solutions.iter().enumerate() {
            groups.entry((s.round, s.role)).or_default().push(i);
        }
        let by_round_role = groups
            .into_iter()
            .map(|((round, role), members)| {
                let pick = |labels: &[Option<bool>]| {
                    let s: Vec<f64> = members.iter().map(|&i| scores[i]).collect();
                    let l: Vec<Option<bool>> = members.iter().map(|&i| labels[i]).collect();
                    Scorecard::of(&s, &l)
                };
                GroupMetrics {
                    round,
                    role,
                    ground_truth: pick(&truth),
                    human: pick(&human),
                }
            })
            .collect();
        Self {
            solutions: solutions.len(),
            ground_truth: Scorecard::of(scores, &truth),
            human: Scorecard::of(scores, &human),
            by_round_role,
        }
    }
}

/// One epoch's figures, for the training log in `training.json`.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Validation loss after the epoch.
    pub validation_loss: f64,
    /// Validation AUROC against ground truth after the epoch.
    pub validation_auroc: Option<f64>,
}

/// What a [`fit_verifier`] run did and how well the result does.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    /// The options it ran with.
    pub options: FitOptions,
    /// What was trained (the whole model, or a head on frozen features).
    pub trained: String,
    /// Labelled solutions in the training split.
    pub train_solutions: usize,
    /// Training examples per epoch: pairs (Bradley–Terry) or solutions (cross-entropy).
    pub train_examples: usize,
    /// Solutions in the validation split (labelled or not).
    pub validation_solutions: usize,
    /// Problems in each split.
    pub train_problems: usize,
    /// Problems held out.
    pub validation_problems: usize,
    /// Epochs run.
    pub epochs: usize,
    /// The epoch whose weights were kept (0: the starting weights were best).
    pub best_epoch: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Training time in seconds (validation passes included).
    pub train_seconds: f64,
    /// Solutions through forward and backward per second of training.
    pub train_solutions_per_second: f64,
    /// Validation metrics of the starting weights.
    pub before: ValidationMetrics,
    /// Validation metrics of the kept weights.
    pub after: ValidationMetrics,
    /// Per-epoch losses.
    pub history: Vec<EpochLog>,
}

/// Trains `verifier` in place on `data` and returns the report; the kept weights are the
/// epoch with the lowest validation loss (the starting weights count as epoch 0).
/// `progress(done, total)` is called after every step; `stop` is polled between steps and
/// turns into [`ModelError::Stopped`].
pub fn fit_verifier(
    verifier: &mut Verifier,
    data: &[LabelledSolution],
    options: &FitOptions,
    progress: &mut dyn FnMut(usize, usize),
    stop: &AtomicBool,
) -> Result<FitReport, ModelError> {
    // An uploaded language model is trained on top of its frozen body unless asked otherwise;
    // a number of blocks asked of an encoder is refused by `train_top_blocks`.
    let blocks = options
        .train_blocks
        .or((verifier.is_transformers_checkpoint() && verifier.layers_trainable()).then_some(0));
    verifier.train_top_blocks(blocks)?;
    // A frozen body's features depend only on the tokens: computed once per solution, not
    // once per epoch and validation pass.
    verifier.cache_features(true);
    let report = fit(verifier, data, options, progress, stop);
    verifier.cache_features(false);
    verifier.train_top_blocks(None)?;
    report
}

/// [`fit_verifier`] with the feature cache on.
fn fit(
    verifier: &mut Verifier,
    data: &[LabelledSolution],
    options: &FitOptions,
    progress: &mut dyn FnMut(usize, usize),
    stop: &AtomicBool,
) -> Result<FitReport, ModelError> {
    let started = Instant::now();
    let mut usable: HashMap<Uuid, (bool, bool)> = HashMap::new();
    for s in data {
        let entry = usable.entry(s.problem_id).or_default();
        match s.label {
            Some(true) => entry.0 = true,
            Some(false) => entry.1 = true,
            None => {}
        }
    }
    let usable: HashMap<Uuid, bool> = usable
        .into_iter()
        .map(|(problem, (correct, incorrect))| {
            let yields = match options.loss {
                VerifierLoss::BradleyTerry => correct && incorrect,
                VerifierLoss::CrossEntropy => correct || incorrect,
            };
            (problem, yields)
        })
        .collect();
    let sides = split_problems(&usable, options.seed, options.validation_share);
    let split = |s: &LabelledSolution| sides[&s.problem_id];
    let train: Vec<&LabelledSolution> = data.iter().filter(|s| split(s) == Split::Train).collect();
    let validation: Vec<&LabelledSolution> = data
        .iter()
        .filter(|s| split(s) == Split::Validation)
        .collect();
    let count_problems = |set: &[&LabelledSolution]| {
        set.iter()
            .map(|s| s.problem_id)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let train_set = Examples::build(verifier, &train, options)?;
    let validation_set = Examples::build(verifier, &validation, options)?;
    let what = match options.loss {
        VerifierLoss::BradleyTerry => "(correct, incorrect) pairs of one problem",
        VerifierLoss::CrossEntropy => "labelled solutions",
    };
    if train_set.len() == 0 || validation_set.len() == 0 {
        return Err(ModelError::Invalid(format!(
            "not enough labelled data to train a verifier: {} training and {} validation {what} \
             ({} labelled solutions of {} problems in all); at least one of each is needed — \
             collect more judgements or use ground-truth labels",
            train_set.len(),
            validation_set.len(),
            data.iter().filter(|s| s.label.is_some()).count(),
            count_problems(&data.iter().collect::<Vec<_>>()),
        )));
    }
    let validation_encoded: Vec<Vec<u32>> = validation
        .iter()
        .map(|s| verifier.encode(&s.text))
        .collect::<Result<_, _>>()?;
    let evaluate = |verifier: &mut Verifier| -> Result<(f64, ValidationMetrics), ModelError> {
        let scores: Vec<f64> = verifier
            .score_encoded(&validation_encoded, 32)?
            .into_iter()
            .map(f64::from)
            .collect();
        let loss = validation_set.loss_of(&scores, options)?;
        Ok((loss, ValidationMetrics::of(&validation, &scores)))
    };
    let (mut best_loss, before) = evaluate(verifier)?;
    let mut best = verifier.snapshot()?;
    let mut best_epoch = 0;
    let mut after = before.clone();
    let mut optimiser = AdamW::new(
        verifier.variables(),
        ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: 0.01,
            ..ParamsAdamW::default()
        },
    )?;
    let batch = options.batch.max(1);
    let steps_per_epoch = train_set.len().div_ceil(batch);
    let total = (steps_per_epoch * options.max_epochs).min(options.max_steps.max(1));
    let mut rng = SampleRng::new(options.seed ^ 0x5eed);
    let mut steps = 0;
    let mut solutions_seen = 0usize;
    let mut history = Vec::new();
    let mut epochs = 0;
    'epochs: for epoch in 1..=options.max_epochs {
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut losses = Vec::new();
        for chunk in order.chunks(batch) {
            if steps >= total {
                break;
            }
            if stop.load(Ordering::SeqCst) {
                return Err(ModelError::Stopped);
            }
            let (loss, solutions) = train_set.batch_loss(verifier, chunk, options)?;
            optimiser.backward_step(&loss)?;
            losses.push(loss.to_scalar::<f32>()? as f64);
            solutions_seen += solutions;
            steps += 1;
            progress(steps, total);
        }
        epochs = epoch;
        let (loss, metrics) = evaluate(verifier)?;
        history.push(EpochLog {
            epoch,
            train_loss: mean(&losses),
            validation_loss: loss,
            validation_auroc: metrics.ground_truth.auroc,
        });
        if loss < best_loss {
            best_loss = loss;
            best = verifier.snapshot()?;
            best_epoch = epoch;
            after = metrics;
        } else if epoch - best_epoch >= options.patience.max(1) {
            break 'epochs;
        }
        if steps >= total {
            break;
        }
    }
    verifier.restore(&best)?;
    let train_seconds = started.elapsed().as_secs_f64();
    Ok(FitReport {
        options: options.clone(),
        trained: verifier.trained_part(),
        train_solutions: train.iter().filter(|s| s.label.is_some()).count(),
        train_examples: train_set.len(),
        validation_solutions: validation.len(),
        train_problems: count_problems(&train),
        validation_problems: count_problems(&validation),
        epochs,
        best_epoch,
        steps,
        train_seconds,
        train_solutions_per_second: solutions_seen as f64 / train_seconds.max(1e-9),
        before,
        after,
        history,
    })
}

/// The differentiable Bradley–Terry loss of encoded (correct, incorrect) pairs: both sides
/// scored in one batch, correct ones first. What a training step minimises (and what
/// `bench-verifier --steps-file` times).
pub fn pairs_loss(
    verifier: &mut Verifier,
    pairs: &[(&Vec<u32>, &Vec<u32>)],
    lambda: f64,
) -> Result<Tensor, ModelError> {
    let sequences: Vec<&Vec<u32>> = pairs
        .iter()
        .map(|p| p.0)
        .chain(pairs.iter().map(|p| p.1))
        .collect();
    let n = pairs.len();
    let scores = verifier.scores(&sequences, true)?;
    Ok(bradley_terry_loss(
        &scores.narrow(0, 0, n)?,
        &scores.narrow(0, n, n)?,
        lambda,
    )?)
}

/// Training examples of one split: encoded labelled solutions and, for Bradley–Terry, the
/// (correct, incorrect) pairs of one problem.
struct Examples {
    /// Index in the split's solution list of each labelled solution below.
    labelled_positions: Vec<usize>,
    encoded: Vec<Vec<u32>>,
    labels: Vec<bool>,
    /// Indexes into `encoded` of (label true, label false) pairs; empty for cross-entropy.
    pairs: Vec<(usize, usize)>,
    loss: VerifierLoss,
}

/// Pairs per problem at most: a problem with many samples would otherwise dominate an epoch.
const MAX_PAIRS_PER_PROBLEM: usize = 16;

impl Examples {
    fn build(
        verifier: &Verifier,
        solutions: &[&LabelledSolution],
        options: &FitOptions,
    ) -> Result<Self, ModelError> {
        let labelled_positions: Vec<usize> = solutions
            .iter()
            .enumerate()
            .filter(|(_, s)| s.label.is_some())
            .map(|(i, _)| i)
            .collect();
        let labelled: Vec<(&LabelledSolution, bool)> = solutions
            .iter()
            .filter_map(|s| s.label.map(|l| (*s, l)))
            .collect();
        let encoded = labelled
            .iter()
            .map(|(s, _)| verifier.encode(&s.text))
            .collect::<Result<Vec<_>, _>>()?;
        let labels: Vec<bool> = labelled.iter().map(|(_, l)| *l).collect();
        let mut pairs = Vec::new();
        if options.loss == VerifierLoss::BradleyTerry {
            let mut by_problem: BTreeMap<Uuid, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
            for (i, (s, l)) in labelled.iter().enumerate() {
                let entry = by_problem.entry(s.problem_id).or_default();
                if *l { &mut entry.0 } else { &mut entry.1 }.push(i);
            }
            for (good, bad) in by_problem.values() {
                let all: Vec<(usize, usize)> = good
                    .iter()
                    .flat_map(|&g| bad.iter().map(move |&b| (g, b)))
                    .collect();
                // Spread over both sides when capping: every k-th pair.
                let stride = all.len().div_ceil(MAX_PAIRS_PER_PROBLEM).max(1);
                pairs.extend(all.into_iter().step_by(stride));
            }
        }
        Ok(Self {
            labelled_positions,
            encoded,
            labels,
            pairs,
            loss: options.loss,
        })
    }

    /// Examples per epoch.
    fn len(&self) -> usize {
        match self.loss {
            VerifierLoss::BradleyTerry => self.pairs.len(),
            VerifierLoss::CrossEntropy => self.encoded.len(),
        }
    }

    /// The loss of the examples `chunk` (indexes below [`Examples::len`]), differentiable,
    /// and how many solutions it ran through the model.
    fn batch_loss(
        &self,
        verifier: &mut Verifier,
        chunk: &[usize],
        options: &FitOptions,
    ) -> Result<(Tensor, usize), ModelError> {
        match self.loss {
            VerifierLoss::BradleyTerry => {
                let pairs: Vec<(&Vec<u32>, &Vec<u32>)> = chunk
                    .iter()
                    .map(|&k| {
                        (
                            &self.encoded[self.pairs[k].0],
                            &self.encoded[self.pairs[k].1],
                        )
                    })
                    .collect();
                Ok((
                    pairs_loss(verifier, &pairs, options.lambda)?,
                    2 * chunk.len(),
                ))
            }
            VerifierLoss::CrossEntropy => {
                let sequences: Vec<&Vec<u32>> = chunk.iter().map(|&k| &self.encoded[k]).collect();
                let labels: Vec<f32> = chunk
                    .iter()
                    .map(|&k| if self.labels[k] { 1.0 } else { 0.0 })
                    .collect();
                let scores = verifier.scores(&sequences, true)?;
                let labels = Tensor::new(labels.as_slice(), scores.device())?;
                Ok((cross_entropy_loss(&scores, &labels)?, chunk.len()))
            }
        }
    }

    /// The (non-differentiable) loss of precomputed `scores` of the split's solutions; the
    /// scores are aligned with the split's solutions, labelled or not, so this maps through
    /// the labelled ones.
    fn loss_of(&self, all_scores: &[f64], options: &FitOptions) -> Result<f64, ModelError> {
        // `encoded` holds only labelled solutions, in split order: recover their scores.
        let scores: Vec<f64> = self
            .labelled_positions
            .iter()
            .map(|&i| all_scores[i])
            .collect();
        let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        Ok(match options.loss {
            VerifierLoss::BradleyTerry => {
                let comparison = mean(
                    &self
                        .pairs
                        .iter()
                        .map(|&(g, b)| softplus(scores[b] - scores[g]))
                        .collect::<Vec<_>>(),
                );
                let used: std::collections::BTreeSet<usize> =
                    self.pairs.iter().flat_map(|&(g, b)| [g, b]).collect();
                let squares: Vec<f64> = used.iter().map(|&i| scores[i] * scores[i]).collect();
                comparison + options.lambda * mean(&squares)
            }
            VerifierLoss::CrossEntropy => mean(
                &scores
                    .iter()
                    .zip(&self.labels)
                    .map(|(s, l)| softplus(*s) - if *l { *s } else { 0.0 })
                    .collect::<Vec<_>>(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_scores_every_held_out_solution() {
        let recipe = VerifierRecipe::named("test", 2).expect("recipe");
        let mut lines = Vec::new();
        let (_, report) = train_generated_verifier(&recipe, &mut |l| lines.push(l.to_string()))
            .expect("training");
        let quality = report.quality;
        assert_eq!(quality.solutions, 16);
        assert!(lines.iter().any(|l| l.starts_with("step 4/4")), "{lines:?}");
        for value in [quality.auroc, quality.accuracy, quality.pairwise_accuracy] {
            assert!((0.0..=1.0).contains(&value), "{quality:?}");
        }
    }
}
