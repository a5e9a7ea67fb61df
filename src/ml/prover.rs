//! A prover checkpoint loaded for generation: batched sampling with a KV cache, the GSM8K
//! calculator, and stopping at the final-answer line.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

use super::ModelError;
use super::calculator;
use super::config::{ModelConfig, TokenIds};
use super::decoder::Decoder;
use super::prompt::RolePrompts;
use super::sampling::{SampleRng, SamplingParams, sample_token};
use super::tokenizer::{self, EOS, PAD};
use crate::domain::ProverRole;

/// Sequences [`Prover::generate`] decodes at a time at most.
pub const DEFAULT_SLOTS: usize = 64;

/// The weights file this project writes; loading accepts any `*.safetensors` set.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// One solution to generate: the prompt is built from `question` and `role` with the
/// checkpoint's own template; `seed` fixes the draw.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    /// The problem statement.
    pub question: String,
    /// Helpful or sneaky.
    pub role: ProverRole,
    /// Seed of this sample's random choices.
    pub seed: u64,
}

/// A generated solution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The solution text, calculator annotations included, ending with the final-answer line
    /// when the model produced one.
    pub text: String,
    /// Tokens generated (calculator tokens included).
    pub tokens: usize,
    /// Whether the model finished (final-answer line or end of sequence) before the token cap.
    pub finished: bool,
}

/// A loaded prover: model, tokenizer and role prompts.
pub struct Prover {
    model: Decoder,
    config: ModelConfig,
    tokenizer: Tokenizer,
    prompts: RolePrompts,
    /// Put before plain prompts when the tokenizer does not add special tokens itself (see
    /// [`RolePrompts::ids`]).
    bos: Option<u32>,
    /// Any of these ends a sequence: the config's (one or a list), `generation_config.json`'s
    /// and the tokenizer's end-of-sequence token.
    eos: Vec<u32>,
    pad: u32,
}

/// The optional `generation_config.json` of a checkpoint: its end-of-sequence ids override or
/// extend the config's (Llama-3 instruct lists `<|eot_id|>` there).
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// A prover checkpoint folder's configuration, tokenizer and role prompts (its chat template
/// and `prompt_template.json`, or the defaults: see [`RolePrompts`]), checked: what loading it
/// for sampling and loading it for fine-tuning both start from.
pub(crate) fn read_checkpoint_files(
    dir: &Path,
) -> Result<(ModelConfig, Tokenizer, RolePrompts), ModelError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| ModelError::io(&path, e))
    };
    let config = ModelConfig::from_json(&read("config.json")?).map_err(ModelError::Invalid)?;
    config.check().map_err(ModelError::Invalid)?;
    let tokenizer = super::tokenizer::from_json_bytes(&read("tokenizer.json")?)
        .map_err(|e| ModelError::Tokenizer(format!("tokenizer.json: {e}")))?;
    let prompts = RolePrompts::load_dir(dir)?;
    Ok((config, tokenizer, prompts))
}

/// The end-of-sequence ids a checkpoint's `generation_config.json` names (none when it has no
/// such file or field).
pub fn generation_eos_ids(dir: &Path) -> Result<Vec<u32>, ModelError> {
    #[derive(serde::Deserialize)]
    struct GenerationConfig {
        #[serde(default)]
        eos_token_id: Option<TokenIds>,
    }
    let path = dir.join(GENERATION_CONFIG_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let parsed: GenerationConfig = serde_json::from_slice(&bytes)
                .map_err(|e| ModelError::Invalid(format!("{GENERATION_CONFIG_FILE}: {e}")))?;
            Ok(super::config::token_ids(&parsed.eos_token_id))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ModelError::io(&path, e)),
    }
}

impl Prover {
    /// Loads a checkpoint folder in the Hugging Face layout (`config.json` of any supported
    /// decoder architecture, `tokenizer.json`, `*.safetensors` or one `*.gguf` (Llama,
    /// Mistral, Qwen2, Qwen3; see [`super::gguf`]), optional
    /// `generation_config.json`, `prompt_template.json`, a chat template in `chat_template.jinja`
    /// or `tokenizer_config.json`) onto `device`, in F32.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let (config, tokenizer, prompts) = read_checkpoint_files(dir)?;
        let spec = match config.decoder_spec() {
            Some(spec) => spec.map_err(ModelError::Invalid)?,
            None => {
                return Err(ModelError::Invalid(format!(
                    "config.json: model_type {:?} is an encoder; a prover must be a decoder that generates text",
                    config.model_type()
                )));
            }
        };
        let model = match super::gguf::checkpoint_gguf(dir)? {
            Some(path) => {
                if !device.is_cpu() {
                    return Err(ModelError::Invalid(
                        "GGUF checkpoints are decoded on the CPU only".into(),
                    ));
                }
                let file = super::gguf::GgufFile::open(&path)?;
                file.check(&spec)?;
                Decoder::from_gguf(&spec, &file)?
            }
            None => {
                let weights = super::weight_files(dir)?;
                // SAFETY: the files are checkpoint files this process does not modify while
                // they are mapped; uploads are written to a temporary folder and renamed into
                // place.
                let vb =
                    unsafe { VarBuilder::from_mmaped_safetensors(&weights, DType::F32, device)? };
                Decoder::new(&spec, vb)?
            }
        };
        let mut prover = Self::from_parts(model, config, tokenizer, prompts)?;
        for id in generation_eos_ids(dir)? {
            if !prover.eos.contains(&id) {
                prover.eos.push(id);
            }
        }
        Ok(prover)
    }

    /// Wraps an in-memory model (for example one just trained) with its config.
    pub fn from_parts(
        model: Decoder,
        config: ModelConfig,
        tokenizer: Tokenizer,
        prompts: impl Into<RolePrompts>,
    ) -> Result<Self, ModelError> {
        let bos = super::prompt::plain_bos(&tokenizer, config.bos_token_id());
        let mut eos = config.eos_token_ids();
        if let Some(id) = tokenizer::special_id(&tokenizer, EOS)
            && !eos.contains(&id)
        {
            eos.push(id);
        }
        let pad = tokenizer::special_id(&tokenizer, PAD)
            .or(config.pad_token_id())
            .or(eos.first().copied())
            .unwrap_or(0);
        Ok(Self {
            model,
            config,
            tokenizer,
            prompts: prompts.into(),
            bos,
            eos,
            pad,
        })
    }

    /// The end-of-sequence ids that stop a sequence.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The decoder (for benchmarks and the logits command).
    pub fn model_mut(&mut self) -> &mut Decoder {
        &mut self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The checkpoint's role prompts.
    pub fn prompts(&self) -> &RolePrompts {
        &self.prompts
    }

    /// The model configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Token ids of the prompt for `question` in `role`: for a base model its plain prompt,
    /// with BOS as its tokenizer adds it (or as the project's own models expect it); for an
    /// instruct model its chat template's text, with no BOS of ours added (the template writes
    /// its own, so it is never doubled).
    pub fn prompt_ids(&self, role: ProverRole, question: &str) -> Result<Vec<u32>, ModelError> {
        self.prompts.ids(&self.tokenizer, self.bos, role, question)
    }

    /// Generates one solution per request, decoded together (see [`Prover::generate_each`]
    /// with up to [`DEFAULT_SLOTS`] sequences at a time), in the order of the requests.
    pub fn generate(
        &mut self,
        requests: &[SampleRequest],
        params: &SamplingParams,
        stop: &AtomicBool,
    ) -> Result<Vec<Sample>, ModelError> {
        let mut samples: Vec<Option<Sample>> = vec![None; requests.len()];
        let slots = requests.len().clamp(1, DEFAULT_SLOTS);
        self.generate_each(requests, params, slots, stop, |index, sample| {
            samples[index] = Some(sample);
            Ok(())
        })?;
        samples
            .into_iter()
            .map(|s| s.ok_or_else(|| ModelError::Invalid("a request got no solution".into())))
            .collect()
    }

    /// Generates one solution per request with continuous batching: up to `slots` sequences
    /// advance together, one forward step for all of them, and a finished sequence's slot takes
    /// the next request at once, so the batch stays full until the requests run out. Each
    /// sequence decodes at its own positions with its own random draw, so a solution does not
    /// depend on the others in its batch. `done(index, sample)` is called as each request
    /// finishes (index into `requests`); `stop` is polled every step so a job that lost its
    /// lease stops computing.
    pub fn generate_each(
        &mut self,
        requests: &[SampleRequest],
        params: &SamplingParams,
        slots: usize,
        stop: &AtomicBool,
        mut done: impl FnMut(usize, Sample) -> Result<(), ModelError>,
    ) -> Result<(), ModelError> {
        params.check().map_err(ModelError::Invalid)?;
        if requests.is_empty() {
            return Ok(());
        }
        let prompts = requests
            .iter()
            .map(|r| self.prompt_ids(r.role, &r.question))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = self.model.spec().max_positions;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if longest >= limit {
            return Err(ModelError::Invalid(format!(
                "a prompt of {longest} tokens does not fit the model's {limit} positions"
            )));
        }
        if !self.model.runs_on_slots() {
            for (chunk, first) in requests
                .chunks(slots.max(1))
                .zip((0..).step_by(slots.max(1)))
            {
                let chunk_prompts = &prompts[first..first + chunk.len()];
                for (i, sample) in self
                    .generate_padded(chunk, chunk_prompts, params, stop)?
                    .into_iter()
                    .enumerate()
                {
                    done(first + i, sample)?;
                }
            }
            return Ok(());
        }
        let count = slots.clamp(1, requests.len());
        let capacity = (longest + params.max_new_tokens).min(limit);
        let mut cache = self.model.slots(count, capacity)?;
        let mut active: Vec<Option<Running>> = vec![None; count];
        let mut next = 0;
        loop {
            // Free slots take the next requests, their prompts entering in shared passes.
            let mut starting: Vec<(usize, usize)> = Vec::new();
            for (slot, entry) in active.iter().enumerate() {
                if entry.is_none() && next < requests.len() {
                    cache.free(slot);
                    starting.push((slot, next));
                    next += 1;
                }
            }
            if !starting.is_empty() {
                let entries: Vec<(usize, &[u32])> = starting
                    .iter()
                    .map(|&(slot, request)| (slot, prompts[request].as_slice()))
                    .collect();
                let first_logits = self.model.start_many(&mut cache, &entries)?;
                for ((slot, request), logits) in starting.into_iter().zip(first_logits) {
                    let cap = params.max_new_tokens.min(limit - prompts[request].len());
                    let state = SequenceState::new(requests[request].seed);
                    if cap == 0 {
                        done(request, self.sample(state)?)?;
                    } else {
                        active[slot] = Some(Running {
                            request,
                            state,
                            cap,
                            logits,
                        });
                    }
                }
            }
            if active.iter().all(Option::is_none) && next == requests.len() {
                return Ok(());
            }
            if stop.load(Ordering::Relaxed) {
                return Err(ModelError::Stopped);
            }
            let mut feed = Vec::with_capacity(count);
            for (slot, entry) in active.iter_mut().enumerate() {
                let Some(running) = entry else {
                    continue;
                };
                let state = &mut running.state;
                let token = match state.forced.pop() {
                    Some(token) => token,
                    None => sample_token(&running.logits, params, &mut state.rng),
                };
                self.advance(state, token)?;
                // Every token but an end of sequence is kept, so `ids` counts the draws.
                if state.finished || state.ids.len() >= running.cap {
                    if let Some(running) = entry.take() {
                        done(running.request, self.sample(running.state)?)?;
                    }
                } else {
                    feed.push((slot, token));
                }
            }
            if feed.is_empty() {
                continue;
            }
            let logits = self.model.step(&mut cache, &feed)?;
            let vocab = self.model.spec().vocab_size;
            for (row, &(slot, _)) in logits.chunks_exact(vocab).zip(&feed) {
                if let Some(running) = &mut active[slot] {
                    running.logits.copy_from_slice(row);
                }
            }
        }
    }

    /// The finished sample of a sequence's state.
    fn sample(&self, state: SequenceState) -> Result<Sample, ModelError> {
        let text = tokenizer::decode(&self.tokenizer, &state.ids)?;
        Ok(Sample {
            text: final_text(&text),
            tokens: state.ids.len(),
            finished: state.finished,
        })
    }

    /// The left-padded batch of the plain candle path, for a model the decoding slots cannot
    /// run (not f32 on the CPU): one forward pass per step for the whole batch.
    /// `prompts` are the requests' token ids, checked to fit the model.
    fn generate_padded(
        &mut self,
        requests: &[SampleRequest],
        prompts: &[Vec<u32>],
        params: &SamplingParams,
        stop: &AtomicBool,
    ) -> Result<Vec<Sample>, ModelError> {
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let limit = self.model.spec().max_positions;
        let max_new = params.max_new_tokens.min(limit - longest);
        let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
        let mut input = Vec::with_capacity(prompts.len() * longest);
        for (prompt, &pad) in prompts.iter().zip(&pads) {
            input.extend(std::iter::repeat_n(self.pad, pad));
            input.extend(prompt);
        }
        let device = self.model.device().clone();
        let batch = requests.len();
        // The KV cache holds what this batch needs: the longest prompt and the new tokens.
        self.model.reset(longest + max_new);
        let ids = Tensor::from_vec(input, (batch, longest), &device)?;
        let mut logits = self.model.forward_decode(&ids, &pads)?;

        let mut states: Vec<SequenceState> = requests
            .iter()
            .map(|r| SequenceState::new(r.seed))
            .collect();
        // Batch row → request index; rows of finished sequences
        // are dropped from the batch (and the KV cache) once enough of them have finished.
        let mut rows: Vec<usize> = (0..batch).collect();
        for _ in 0..max_new {
            if stop.load(Ordering::Relaxed) {
                return Err(ModelError::Stopped);
            }
            let logit_rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
            let mut next = Vec::with_capacity(rows.len());
            for (&request, row) in rows.iter().zip(&logit_rows) {
                let state = &mut states[request];
                if state.finished {
                    next.push(self.pad);
                    continue;
                }
                let token = match state.forced.pop() {
                    Some(token) => token,
                    None => sample_token(row, params, &mut state.rng),
                };
                self.advance(state, token)?;
                next.push(token);
            }
            let finished = rows.iter().filter(|&&r| states[r].finished).count();
            if finished == rows.len() {
                break;
            }
            if finished * 8 >= rows.len() {
                let keep: Vec<u32> = (0..rows.len())
                    .filter(|&i| !states[rows[i]].finished)
                    .map(|i| i as u32)
                    .collect();
                self.model.retain_rows(&keep)?;
                next = keep.iter().map(|&i| next[i as usize]).collect();
                rows = keep.iter().map(|&i| rows[i as usize]).collect();
            }
            let ids = Tensor::from_vec(next, (rows.len(), 1), &device)?;
            logits = self.model.forward_decode(&ids, &[])?;
        }
        states.into_iter().map(|state| self.sample(state)).collect()
    }

    /// Appends `token` to a sequence and applies the stopping rules and the calculator.
    fn advance(&self, state: &mut SequenceState, token: u32) -> Result<(), ModelError> {
        if self.eos.contains(&token) {
            state.finished = true;
            return Ok(());
        }
        state.ids.push(token);
        let piece = self.tokenizer.id_to_token(token).unwrap_or_default();
        // Only the characters that can end an annotation or a line need the decoded text.
        if !(piece.contains('=') || piece.contains('Ċ') || piece.contains('\n')) {
            return Ok(());
        }
        let text = tokenizer::decode(&self.tokenizer, &state.ids)?;
        if has_final_answer_line(&text) {
            state.finished = true;
        } else if state.forced.is_empty()
            && let Some(result) = calculator::completion(&text)
        {
            let mut forced = tokenizer::encode(&self.tokenizer, &result)?;
            forced.reverse();
            state.forced = forced;
        }
        Ok(())
    }
}

/// A request being decoded in a slot.
#[derive(Clone)]
struct Running {
    /// Index into the requests.
    request: usize,
    state: SequenceState,
    /// New tokens it may draw at most.
    cap: usize,
    /// The logits its next token is drawn from.
    logits: Vec<f32>,
}

/// Decoding state of one sequence in a batch.
#[derive(Clone)]
struct SequenceState {
    ids: Vec<u32>,
    /// Calculator tokens still to emit, last first.
    forced: Vec<u32>,
    rng: SampleRng,
    finished: bool,
}

impl SequenceState {
    fn new(seed: u64) -> Self {
        Self {
            ids: Vec::new(),
            forced: Vec::new(),
            rng: SampleRng::new(seed),
            finished: false,
        }
    }
}

/// Whether `text` holds a complete GSM8K final-answer line (`#### …` followed by a newline).
pub fn has_final_answer_line(text: &str) -> bool {
    text.match_indices("####")
        .any(|(at, _)| text[at..].contains('\n'))
}

/// The solution up to and including its final-answer line, without trailing whitespace and
/// without control characters other than newlines and tabs: byte-level decoding can produce
/// any byte, and NUL is not storable text (PostgreSQL refuses it) nor readable by a rater.
pub fn final_text(text: &str) -> String {
    let text = match text.find("####") {
        Some(at) => {
            let end = text[at..].find('\n').map_or(text.len(), |n| at + n);
            &text[..end]
        }
        None => text,
    };
    text.trim_end()
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_answer_line_ends_the_solution() {
        assert!(!has_final_answer_line("a\n#### 4"));
        assert!(has_final_answer_line("a\n#### 4\n"));
        assert_eq!(final_text("a\n#### 4\nmore"), "a\n#### 4");
        assert_eq!(final_text("no answer yet  "), "no answer yet");
        assert_eq!(final_text("a\u{0}b\u{7}\tc\n#### 1"), "ab\tc\n#### 1");
    }
}
