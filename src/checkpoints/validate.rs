//! Validation of a checkpoint's files for its kind: the set of files (what is kept, ignored or
//! refused), `config.json`, the tokenizer, the shard index, and every tensor's presence, shape
//! and dtype against what the config implies. Everything is read from disk: the small files
//! whole, the safetensors files' headers only (the weights themselves are never read here).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use safetensors::Dtype;
use safetensors::tensor::Metadata;

use super::files::{
    CONFIG_FILE, CheckpointFiles, INDEX_FILE, IgnoreReason, IgnoredFile, JSON_ARRAY_FILES,
    KeptFile, TOKENIZER_FILE, is_gguf_file, is_weights_file, optional_files,
};
use super::{CheckpointLimits, CheckpointRejected};
use crate::domain::CheckpointKind;
use crate::ml::bert::{self, BertConfig};
use crate::ml::chat::{
    CHAT_TEMPLATE_FILE, SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE, TemplateFiles,
};
use crate::ml::config::ModelConfig;
use crate::ml::prompt::{PROMPT_TEMPLATE_FILE, PromptFiles, RolePrompts};
use crate::ml::verifier::SCORE_HEAD;
use crate::ml::weights::WeightIndex;

/// Weight dtypes the candle prover loads.
const ACCEPTED_DTYPES: &[Dtype] = &[Dtype::F32, Dtype::F16, Dtype::BF16];
/// How many names a message lists before "and N more".
const LISTED_NAMES: usize = 5;
/// Largest safetensors header the format allows (the `safetensors` crate's limit).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;
/// A checkpoint that passed [`validate`]: its files (sorted by name, still where they were
/// received or read) and what was learnt.
#[derive(Debug)]
pub struct ValidatedCheckpoint {
    pub(super) files: CheckpointFiles,
    pub(super) kind: CheckpointKind,
    pub(super) config: ModelConfig,
    pub(super) prompts: Option<RolePrompts>,
    pub(super) score_head: bool,
    pub(super) tensor_prefix: String,
    pub(super) parameters: u64,
    pub(super) dtypes: Vec<String>,
}

impl ValidatedCheckpoint {
    /// The kept files with their sizes and SHA-256, sorted by name.
    pub fn files(&self) -> &[KeptFile] {
        self.files.files()
    }

    /// What arrived but was not kept (Hub side files, sub-folders, unlisted shards, …).
    pub fn ignored(&self) -> &[IgnoredFile] {
        self.files.ignored()
    }

    /// The folder the kept files are in (a temporary folder for an upload; the folder itself
    /// for one read in place).
    pub fn dir(&self) -> &std::path::Path {
        self.files.dir()
    }

    /// The kind it was validated as (the rules differ: see the module documentation).
    pub fn kind(&self) -> CheckpointKind {
        self.kind
    }

    /// The parsed `config.json`: Llama for every prover; Llama, BERT or an encoder reward
    /// model for a verifier.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// How the prover builds its prompts (its chat template and `prompt_template.json`, or
    /// the defaults); `None` for verifiers.
    pub fn prompts(&self) -> Option<&RolePrompts> {
        self.prompts.as_ref()
    }

    /// Whether the weights hold a trained score head (`score.weight` and `score.bias`; an
    /// encoder reward model's own last layer): always for a Llama verifier and a reward model,
    /// optional for a BERT verifier, never for a prover.
    pub fn score_head(&self) -> bool {
        self.score_head
    }

    /// The prefix of the encoder's tensor names: `"bert."` for a `BertFor*` export, otherwise
    /// `""` (always `""` for Llama checkpoints). A loader passes it to the `VarBuilder`.
    pub fn tensor_prefix(&self) -> &str {
        &self.tensor_prefix
    }

    /// Number of weights over all tensors (buffers such as `position_ids` not counted).
    pub fn parameters(&self) -> u64 {
        self.parameters
    }

    /// Total size of the kept files, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.total_bytes()
    }

    /// What the checkpoints row records about the upload: its files with sizes and SHA-256,
    /// what was ignored (and why), the architecture (with its `model_type`, also at the top
    /// level), parameter count and weight dtypes; for verifiers whether a score head is
    /// present, for BERT the tensor prefix.
    pub fn metadata(&self) -> serde_json::Value {
        let files: Vec<serde_json::Value> = self
            .files()
            .iter()
            .map(|f| serde_json::json!({ "name": f.name, "bytes": f.bytes, "sha256": f.sha256 }))
            .collect();
        let ignored: Vec<serde_json::Value> = self
            .ignored()
            .iter()
            .map(|i| serde_json::json!({ "name": i.name, "reason": i.reason.describe() }))
            .collect();
        let mut metadata = serde_json::json!({
            "source": "upload",
            "model_type": self.config.model_type(),
            "files": files,
            "ignored": ignored,
            "sharded": self.files.contains(INDEX_FILE),
            "parameters": self.parameters,
            "dtypes": self.dtypes,
            "prompt_template": self.files.contains(PROMPT_TEMPLATE_FILE),
            "chat_template": matches!(self.prompts, Some(RolePrompts::Chat(_))),
            "architecture": self.config.architecture(),
        });
        if self.kind == CheckpointKind::Verifier {
            metadata["score_head"] = self.score_head.into();
        }
        if matches!(self.config, ModelConfig::Bert(_)) {
            metadata["tensor_prefix"] = self.tensor_prefix.clone().into();
        }
        metadata
    }
}

/// Lists up to [`LISTED_NAMES`] names, then "and N more".
fn list_names<S: AsRef<str>>(names: &[S]) -> String {
    let mut text = names
        .iter()
        .take(LISTED_NAMES)
        .map(|n| n.as_ref())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED_NAMES {
        text.push_str(&format!(" and {} more", names.len() - LISTED_NAMES));
    }
    text
}

/// Checks a checkpoint of `kind` completely; nothing is stored here (files this kind does not
/// use are dropped from a temporary folder, never from a folder read in place). See the module
/// documentation for the rules. The set of files is settled before any content is parsed: a
/// verifier's prompt template is refused, files only the other kind uses and shards the index
/// does not list are ignored, PyTorch-only and GGUF-only checkpoints are refused saying what to
/// do.
pub fn validate(
    mut files: CheckpointFiles,
    kind: CheckpointKind,
    limits: &CheckpointLimits,
) -> Result<ValidatedCheckpoint, CheckpointRejected> {
    let total = files.total_bytes();
    if total > limits.max_bytes {
        return Err(CheckpointRejected::TooLarge {
            total,
            limit: limits.max_bytes,
        });
    }
    if kind == CheckpointKind::Verifier && files.contains(PROMPT_TEMPLATE_FILE) {
        return Err(CheckpointRejected::InvalidFile(format!(
            "{PROMPT_TEMPLATE_FILE} belongs to prover checkpoints only: a verifier scores solutions in the project's own input format, so a template would have no effect; remove it"
        )));
    }
    // A BERT encoder offered as a prover is refused for what it is, before anything else:
    // the fix is to choose "verifier".
    if kind == CheckpointKind::Prover
        && files.contains(CONFIG_FILE)
        && let Ok(config) = ModelConfig::from_json(&files.read_small(CONFIG_FILE)?)
        && is_encoder(&config)
    {
        return Err(bert_prover(config.model_type()));
    }
    let optional = optional_files(kind);
    let other_kind: Vec<String> = files
        .files()
        .iter()
        .map(|f| f.name.clone())
        .filter(|n| {
            !(n == CONFIG_FILE
                || n == TOKENIZER_FILE
                || n == INDEX_FILE
                || is_weights_file(n)
                || is_gguf_file(n)
                || optional.contains(&n.as_str()))
        })
        .collect();
    for name in other_kind {
        files.ignore(&name, IgnoreReason::OtherKind)?;
    }
    let index = if files.contains(INDEX_FILE) {
        let index = WeightIndex::from_json(&files.read_small(INDEX_FILE)?)
            .map_err(CheckpointRejected::InvalidFile)?;
        for shard in index.files() {
            if !files.contains(shard) {
                let tensors = index.weight_map().values().filter(|f| *f == shard).count();
                return Err(CheckpointRejected::Missing(format!(
                    "{shard} is missing: {INDEX_FILE} maps {tensors} tensor(s) to it"
                )));
            }
        }
        let unlisted: Vec<String> = files
            .files()
            .iter()
            .map(|f| f.name.clone())
            .filter(|n| is_weights_file(n) && !index.files().contains(&n.as_str()))
            .collect();
        for name in unlisted {
            files.ignore(&name, IgnoreReason::NotInIndex)?;
        }
        Some(index)
    } else {
        None
    };
    // GGUF weights are read only for a prover without safetensors; elsewhere they are
    // ignored, as PyTorch weights beside safetensors are.
    let gguf: Vec<String> = files
        .files()
        .iter()
        .map(|f| f.name.clone())
        .filter(|n| is_gguf_file(n))
        .collect();
    let has_safetensors = files.files().iter().any(|f| is_weights_file(&f.name));
    if kind == CheckpointKind::Verifier || has_safetensors {
        for name in &gguf {
            files.ignore(name, IgnoreReason::Gguf)?;
        }
    } else if gguf.len() > 1 {
        return Err(CheckpointRejected::InvalidFile(format!(
            "this checkpoint has {} GGUF files ({}); a prover is read from one: keep the quantization to use",
            gguf.len(),
            list_names(&gguf)
        )));
    }
    let gguf = files
        .files()
        .iter()
        .find(|f| is_gguf_file(&f.name))
        .map(|f| f.name.clone());
    if gguf.is_none() && !files.files().iter().any(|f| is_weights_file(&f.name)) {
        let ignored_as = |reason: IgnoreReason| -> Vec<&str> {
            files
                .ignored()
                .iter()
                .filter(|i| i.reason == reason)
                .map(|i| i.name.as_str())
                .collect()
        };
        let pytorch = ignored_as(IgnoreReason::PyTorchWeights);
        if !pytorch.is_empty() {
            return Err(CheckpointRejected::Unsupported(format!(
                "this checkpoint has PyTorch .bin weights only ({}); convert it with `save_pretrained(..., safe_serialization=True)` (or the transformers `convert` script) and upload the safetensors",
                list_names(&pytorch)
            )));
        }
        let ignored_gguf = ignored_as(IgnoreReason::Gguf);
        if !ignored_gguf.is_empty() {
            return Err(CheckpointRejected::Unsupported(format!(
                "this verifier has GGUF weights only ({}); a verifier is trained, so it is read from safetensors: upload the original Hugging Face checkpoint (config.json, tokenizer.json, *.safetensors)",
                list_names(&ignored_gguf)
            )));
        }
    }
    if let Some(name) = &gguf {
        for needed in [CONFIG_FILE, TOKENIZER_FILE] {
            if !files.contains(needed) {
                return Err(CheckpointRejected::InvalidFile(format!(
                    "{needed} is missing: a GGUF prover ({name}) needs the original model's config.json and tokenizer.json beside it (copy them, and tokenizer_config.json for the chat template, from the Hugging Face checkpoint it was converted from)"
                )));
            }
        }
    }
    if !files.contains(CONFIG_FILE) {
        return Err(CheckpointRejected::Missing(CONFIG_FILE.into()));
    }
    if !files.contains(TOKENIZER_FILE) {
        if files
            .ignored()
            .iter()
            .any(|i| i.reason == IgnoreReason::SentencePiece)
        {
            return Err(CheckpointRejected::InvalidFile(format!(
                "{TOKENIZER_FILE} is missing (tokenizer.model, a sentencepiece model, is not read here); save the fast tokenizer with `AutoTokenizer.from_pretrained(...).save_pretrained(...)`, which writes tokenizer.json"
            )));
        }
        return Err(CheckpointRejected::Missing(TOKENIZER_FILE.into()));
    }
    if gguf.is_none() && !files.files().iter().any(|f| is_weights_file(&f.name)) {
        return Err(CheckpointRejected::Missing(
            "a *.safetensors weights file".into(),
        ));
    }

    let mut small = Vec::new();
    for kept in files.files() {
        if !is_weights_file(&kept.name) && !is_gguf_file(&kept.name) {
            small.push((kept.name.clone(), files.read_small(&kept.name)?));
        }
    }
    let by_name: HashMap<&str, &[u8]> = small
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();

    let config =
        ModelConfig::from_json(by_name[CONFIG_FILE]).map_err(CheckpointRejected::InvalidFile)?;
    if kind == CheckpointKind::Prover && is_encoder(&config) {
        return Err(bert_prover(config.model_type()));
    }
    config.check().map_err(CheckpointRejected::InvalidFile)?;
    let ids = config
        .bos_token_id()
        .map(|id| ("bos_token_id", id))
        .into_iter()
        .chain(
            config
                .eos_token_ids()
                .into_iter()
                .map(|id| ("eos_token_id", id)),
        );
    for (field, id) in ids {
        if id as usize >= config.vocab_size() {
            return Err(CheckpointRejected::InvalidFile(format!(
                "{CONFIG_FILE}: {field} {id} is outside the vocabulary (vocab_size {})",
                config.vocab_size()
            )));
        }
    }

    check_tokenizer(by_name[TOKENIZER_FILE], config.vocab_size())?;

    // A prover's prompts are built once here: a chat template must parse and render both
    // roles, or the upload is refused with the template's own error.
    let prompts = if kind == CheckpointKind::Prover {
        let file = |name: &str| by_name.get(name).copied();
        let prompts = RolePrompts::from_files(PromptFiles {
            prompt_template: file(PROMPT_TEMPLATE_FILE),
            chat: TemplateFiles {
                chat_template: file(CHAT_TEMPLATE_FILE),
                tokenizer_config: file(TOKENIZER_CONFIG_FILE),
                special_tokens_map: file(SPECIAL_TOKENS_MAP_FILE),
            },
        })
        .map_err(CheckpointRejected::InvalidFile)?;
        Some(prompts)
    } else {
        None
    };
    for name in &optional {
        let Some(bytes) = by_name.get(name) else {
            continue;
        };
        if JSON_ARRAY_FILES.contains(name) {
            serde_json::from_slice::<Vec<serde_json::Value>>(bytes).map_err(|e| {
                CheckpointRejected::InvalidFile(format!("{name} is not a JSON array: {e}"))
            })?;
        } else if name.ends_with(".json") && *name != PROMPT_TEMPLATE_FILE {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes).map_err(
                |e| CheckpointRejected::InvalidFile(format!("{name} is not a JSON object: {e}")),
            )?;
        } else if (name.ends_with(".md") || name.ends_with(".txt") || name.ends_with(".jinja"))
            && std::str::from_utf8(bytes).is_err()
        {
            return Err(CheckpointRejected::InvalidFile(format!(
                "{name} is not UTF-8 text"
            )));
        }
    }

    if let Some(name) = &gguf {
        let (parameters, dtypes) = check_gguf(&files, name, &config)?;
        files.compute_digests()?;
        return Ok(ValidatedCheckpoint {
            files,
            kind,
            config,
            prompts,
            score_head: false,
            tensor_prefix: String::new(),
            parameters,
            dtypes,
        });
    }
    let found = read_tensors(&files)?;
    if let Some(index) = &index {
        check_index(index, &found)?;
    }
    let plan = TensorPlan::new(kind, &config, &found)?;
    let (parameters, dtypes) = check_tensors(&found, &plan)?;
    let score_head = !plan.score_head.is_empty()
        && plan
            .score_head
            .iter()
            .all(|(name, _)| found.contains_key(name));
    let tensor_prefix = plan.prefix.to_string();
    drop(found);
    files.compute_digests()?;
    Ok(ValidatedCheckpoint {
        files,
        kind,
        config,
        prompts,
        score_head,
        tensor_prefix,
        parameters,
        dtypes,
    })
}

/// Checks a prover's GGUF file against its config (header only: metadata and the tensor
/// table; see [`crate::ml::gguf::GgufFile::check`]); returns its parameter count and the
/// tensor types it holds (`"Q8_0 ×14"`).
fn check_gguf(
    files: &CheckpointFiles,
    name: &str,
    config: &ModelConfig,
) -> Result<(u64, Vec<String>), CheckpointRejected> {
    let spec = match config.decoder_spec() {
        Some(spec) => spec.map_err(CheckpointRejected::InvalidFile)?,
        None => return Err(bert_prover(config.model_type())),
    };
    let file = crate::ml::gguf::GgufFile::open(&files.path(name))
        .map_err(|e| CheckpointRejected::InvalidFile(e.to_string()))?;
    file.check(&spec)
        .map_err(|e| CheckpointRejected::Tensors(e.to_string()))?;
    let dtypes = file
        .tensor_types()
        .into_iter()
        .map(|(dtype, count)| format!("{dtype} ×{count}"))
        .collect();
    Ok((file.parameters(), dtypes))
}

/// Whether `config` is an encoder (a BERT backbone or an encoder reward model): a verifier,
/// never a prover.
fn is_encoder(config: &ModelConfig) -> bool {
    matches!(
        config,
        ModelConfig::Bert(_) | ModelConfig::EncoderClassifier(_)
    )
}

/// The refusal of an encoder config (BERT, RoBERTa, DeBERTa) offered as a prover.
fn bert_prover(model_type: &str) -> CheckpointRejected {
    CheckpointRejected::Unsupported(format!(
        "{CONFIG_FILE}: model_type is {model_type:?}, but prover checkpoints must be decoder language models (llama, mistral, qwen2, qwen3, phi3, gemma2): an encoder cannot generate solutions; upload it as a verifier"
    ))
}

/// The tokenizer must load and fit the model's embedding: its vocabulary (added tokens
/// included) no larger than `vocab_size` and every token id below it.
fn check_tokenizer(bytes: &[u8], vocab_size: usize) -> Result<(), CheckpointRejected> {
    let tokenizer = crate::ml::tokenizer::from_json_bytes(bytes).map_err(|e| {
        CheckpointRejected::InvalidFile(format!("{TOKENIZER_FILE} cannot be loaded: {e}"))
    })?;
    let size = tokenizer.get_vocab_size(true);
    if size > vocab_size {
        return Err(CheckpointRejected::InvalidFile(format!(
            "{TOKENIZER_FILE} has {size} tokens (added tokens included) but {CONFIG_FILE} has vocab_size {vocab_size}"
        )));
    }
    if let Some((token, id)) = tokenizer
        .get_vocab(true)
        .into_iter()
        .max_by_key(|(_, id)| *id)
        && id as usize >= vocab_size
    {
        return Err(CheckpointRejected::InvalidFile(format!(
            "{TOKENIZER_FILE}: token {token:?} has id {id}, outside {CONFIG_FILE}'s vocab_size {vocab_size}"
        )));
    }
    Ok(())
}

/// Where a tensor was found: (file, shape, dtype), by tensor name.
type FoundTensors<'a> = BTreeMap<String, (&'a str, Vec<usize>, Dtype)>;

/// Every tensor of every weight file (from the headers alone), refusing a tensor that appears
/// twice (in one file or in two shards) and a file that is not valid safetensors.
fn read_tensors(files: &CheckpointFiles) -> Result<FoundTensors<'_>, CheckpointRejected> {
    let mut found = FoundTensors::new();
    for kept in files.files().iter().filter(|f| is_weights_file(&f.name)) {
        let file = kept.name.as_str();
        let header = read_header(files, file)?;
        let mut names: Vec<_> = header.tensors().into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, info) in names {
            if let Some((other, _, _)) = found.get(&name) {
                return Err(CheckpointRejected::Tensors(if *other == file {
                    format!("tensor {name} appears twice in {file}")
                } else {
                    format!("tensor {name} appears in both {other} and {file}")
                }));
            }
            found.insert(name, (file, info.shape.clone(), info.dtype));
        }
    }
    Ok(found)
}

/// The header of a safetensors file, read without its tensor data and checked as the
/// `safetensors` crate checks a whole file: the offsets tile the data exactly, and the data
/// ends where the file ends (so a truncated upload is caught).
pub(super) fn read_header(
    files: &CheckpointFiles,
    name: &str,
) -> Result<Metadata, CheckpointRejected> {
    let invalid = |why: String| {
        CheckpointRejected::InvalidFile(format!(
            "{name} is not a valid safetensors file (truncated or corrupt): {why}"
        ))
    };
    let mut file = files.open(name)?;
    let len = file
        .metadata()
        .map_err(|e| CheckpointRejected::Unreadable(format!("{name} cannot be read: {e}")))?
        .len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix)
        .map_err(|_| invalid(format!("it holds only {len} bytes")))?;
    let n = u64::from_le_bytes(prefix);
    if n > MAX_SAFETENSORS_HEADER {
        return Err(invalid(format!("its header claims {n} bytes")));
    }
    if 8 + n > len {
        return Err(invalid(format!(
            "its header claims {n} bytes but the file holds {len}"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .map_err(|e| invalid(e.to_string()))?;
    let metadata: Metadata = serde_json::from_slice(&header).map_err(|e| invalid(e.to_string()))?;
    let data = len - 8 - n;
    if metadata.data_len() as u64 != data {
        return Err(invalid(format!(
            "its header describes {} bytes of tensor data but the file holds {data}",
            metadata.data_len()
        )));
    }
    Ok(metadata)
}

/// The index and the shards agree exactly: every tensor the index lists is in the shard it
/// names, and every tensor in the shards is listed.
fn check_index(index: &WeightIndex, found: &FoundTensors<'_>) -> Result<(), CheckpointRejected> {
    for (tensor, shard) in index.weight_map() {
        match found.get(tensor) {
            Some((file, _, _)) if file == shard => {}
            Some((file, _, _)) => {
                return Err(CheckpointRejected::Tensors(format!(
                    "{INDEX_FILE} maps {tensor} to {shard}, but it is in {file}"
                )));
            }
            None => {
                return Err(CheckpointRejected::Tensors(format!(
                    "{INDEX_FILE} maps {tensor} to {shard}, but {shard} does not hold it"
                )));
            }
        }
    }
    let unlisted: Vec<String> = found
        .iter()
        .filter(|(name, _)| !index.weight_map().contains_key(*name))
        .map(|(name, (file, _, _))| format!("{name} (in {file})"))
        .collect();
    if !unlisted.is_empty() {
        return Err(CheckpointRejected::Tensors(format!(
            "{} tensor(s) in the shards are not listed in {INDEX_FILE}: {}",
            unlisted.len(),
            list_names(&unlisted)
        )));
    }
    Ok(())
}

/// What the weights of one checkpoint must hold, derived from its kind and config.
struct TensorPlan {
    /// How to name the model in messages ("llama prover", "BERT verifier",
    /// "RobertaForSequenceClassification", …).
    model: String,
    /// Tensors that must be present with these shapes.
    required: Vec<(String, Vec<usize>)>,
    /// Tensors accepted with these shapes when present.
    optional: Vec<(String, Vec<usize>)>,
    /// The score head's tensors: present both or neither (required ones are also in `required`).
    score_head: Vec<(String, Vec<usize>)>,
    /// Integer buffers accepted with these shapes when present; not weights, not counted.
    buffers: Vec<(String, Vec<usize>)>,
    /// Prefix of the encoder's tensor names (`"bert."` or `""`).
    prefix: &'static str,
    /// Encoder layers the config implies, and tensors each needs: for the early size check.
    layers: usize,
    per_layer: usize,
}

impl TensorPlan {
    fn new(
        kind: CheckpointKind,
        config: &ModelConfig,
        found: &FoundTensors<'_>,
    ) -> Result<Self, CheckpointRejected> {
        let score_head = vec![
            (
                format!("{SCORE_HEAD}.weight"),
                vec![1, config.hidden_size()],
            ),
            (format!("{SCORE_HEAD}.bias"), vec![1]),
        ];
        if let Some(Ok(spec)) = config.decoder_spec() {
            let body = spec.expected_tensors(false);
            let per_layer = (body.len() - 2) / spec.num_layers.max(1);
            let lm_head = (
                "lm_head.weight".to_string(),
                vec![spec.vocab_size, spec.hidden_size],
            );
            return Ok(match kind {
                CheckpointKind::Prover => TensorPlan {
                    model: format!("{} prover", config.display_name()),
                    required: spec.expected_tensors(true),
                    optional: Vec::new(),
                    score_head: Vec::new(),
                    buffers: Vec::new(),
                    prefix: "",
                    layers: spec.num_layers,
                    per_layer,
                },
                // A verifier reads the body's last hidden state: the output projection is
                // accepted, never needed. Reward models saved by transformers have a score
                // head without bias; the project's own verifiers write one.
                // Without a score head (a language model uploaded to train a verifier on),
                // the head starts at zero: every score 0 until it is trained.
                CheckpointKind::Verifier => TensorPlan {
                    model: format!("{} verifier", config.display_name()),
                    required: body,
                    optional: vec![lm_head, score_head[0].clone(), score_head[1].clone()],
                    score_head: vec![score_head[0].clone()],
                    buffers: Vec::new(),
                    prefix: "",
                    layers: spec.num_layers,
                    per_layer,
                },
            });
        }
        match (config, kind) {
            (ModelConfig::Bert(c), _) => {
                let prefix = bert::tensor_prefix(found.keys().map(String::as_str));
                let mut optional = c.pooler_tensors(prefix);
                optional.extend(score_head.iter().cloned());
                Ok(TensorPlan {
                    model: "BERT verifier".into(),
                    required: c.expected_tensors(prefix),
                    optional,
                    score_head,
                    buffers: vec![(
                        format!("{prefix}{}", bert::POSITION_IDS),
                        vec![1, c.max_position_embeddings],
                    )],
                    prefix,
                    layers: c.num_hidden_layers,
                    per_layer: BertConfig::TENSORS_PER_LAYER,
                })
            }
            (ModelConfig::EncoderClassifier(c), _) => {
                let tensors = c.tensors();
                let (layers, per_layer) = c.layers();
                Ok(TensorPlan {
                    model: c.class_name().into(),
                    required: tensors.required,
                    optional: tensors.optional,
                    score_head: tensors.head,
                    buffers: tensors.buffers,
                    prefix: "",
                    layers,
                    per_layer,
                })
            }
            (other, _) => Err(CheckpointRejected::Unsupported(format!(
                "{CONFIG_FILE}: model_type {:?} has no weight layout here",
                other.model_type()
            ))),
        }
    }
}

/// Every required tensor present, nothing unexpected, the shapes the config implies, an
/// accepted dtype; the score head complete or absent. Returns the parameter count and dtypes.
fn check_tensors(
    found: &FoundTensors<'_>,
    plan: &TensorPlan,
) -> Result<(u64, Vec<String>), CheckpointRejected> {
    // A config implying far more layers than the files hold is refused before its (possibly
    // enormous) list of expected names is used.
    let layers_fit = plan
        .layers
        .checked_mul(plan.per_layer)
        .is_some_and(|n| n <= found.len());
    if !layers_fit {
        return Err(CheckpointRejected::Tensors(format!(
            "{CONFIG_FILE} has num_hidden_layers {}, which needs at least {} tensors, but the safetensors files hold only {}",
            plan.layers,
            plan.layers.saturating_mul(plan.per_layer),
            found.len()
        )));
    }
    let shapes: HashMap<&str, &Vec<usize>> = plan
        .required
        .iter()
        .chain(&plan.optional)
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    let buffers: HashMap<&str, &Vec<usize>> =
        plan.buffers.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let missing: Vec<&str> = plan
        .required
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !found.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        let head_missing = missing
            .iter()
            .any(|m| plan.score_head.iter().any(|(n, _)| n == m));
        let hint = if head_missing {
            format!(
                " (a {} needs the score head {})",
                plan.model,
                describe(&plan.score_head)
            )
        } else {
            String::new()
        };
        return Err(CheckpointRejected::Tensors(format!(
            "{} tensor(s) that a {} with this {CONFIG_FILE} needs are missing: {}{hint}",
            missing.len(),
            plan.model,
            list_names(&missing)
        )));
    }
    let unexpected: Vec<&str> = found
        .keys()
        .map(String::as_str)
        .filter(|n| !shapes.contains_key(n) && !buffers.contains_key(n))
        .collect();
    if !unexpected.is_empty() {
        return Err(CheckpointRejected::Tensors(format!(
            "{} unexpected tensor(s) for a {} with this {CONFIG_FILE}: {}",
            unexpected.len(),
            plan.model,
            list_names(&unexpected)
        )));
    }
    let present: Vec<&str> = plan
        .score_head
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| found.contains_key(*n))
        .collect();
    if !present.is_empty() && present.len() < plan.score_head.len() {
        let absent: Vec<&str> = plan
            .score_head
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !found.contains_key(*n))
            .collect();
        return Err(CheckpointRejected::Tensors(format!(
            "{} is present but {} is missing: a score head needs both ({}) or neither",
            list_names(&present),
            list_names(&absent),
            describe(&plan.score_head)
        )));
    }
    let mut parameters = 0u64;
    let mut dtypes = Vec::new();
    // In the plan's order (the embedding first), so the first mismatch reported is the one a
    // wrong config.json shows first.
    let in_order = plan
        .required
        .iter()
        .chain(&plan.optional)
        .chain(&plan.buffers)
        .filter_map(|(name, _)| found.get_key_value(name));
    for (name, (file, actual, dtype)) in in_order {
        if let Some(shape) = buffers.get(name.as_str()) {
            if actual != *shape {
                return Err(CheckpointRejected::Tensors(format!(
                    "{name} has shape {actual:?} but {CONFIG_FILE} implies {shape:?} (in {file})"
                )));
            }
            if !matches!(dtype, Dtype::I64 | Dtype::I32) {
                return Err(CheckpointRejected::Tensors(format!(
                    "{name} has dtype {dtype:?} (in {file}); this buffer must be I64 or I32"
                )));
            }
            continue;
        }
        let shape = shapes[name.as_str()];
        if actual != shape {
            return Err(CheckpointRejected::Tensors(format!(
                "{name} has shape {actual:?} but {CONFIG_FILE} implies {shape:?} (in {file})"
            )));
        }
        if !ACCEPTED_DTYPES.contains(dtype) {
            return Err(CheckpointRejected::Tensors(format!(
                "{name} has dtype {dtype:?} (in {file}); only F32, F16 and BF16 are accepted"
            )));
        }
        let dtype = format!("{dtype:?}");
        if !dtypes.contains(&dtype) {
            dtypes.push(dtype);
        }
        parameters = parameters.saturating_add(shape.iter().product::<usize>() as u64);
    }
    Ok((parameters, dtypes))
}

/// `score.weight [1, 8] and score.bias [1]`: tensors with their shapes, for messages.
fn describe(tensors: &[(String, Vec<usize>)]) -> String {
    tensors
        .iter()
        .map(|(n, s)| format!("{n} {s:?}"))
        .collect::<Vec<_>>()
        .join(" and ")
}
