//! GGUF checkpoints (llama.cpp's format) for the Llama and Qwen families: a prover folder holds
//! one `*.gguf` file instead of `*.safetensors`, beside the original `config.json` and
//! `tokenizer.json`. The config decides the maths (rope scaling included); the file's metadata
//! must agree with it field by field, and a metadata key or tensor this reader does not know is
//! refused by name rather than ignored. Quantized matrices stay quantized in memory and are
//! multiplied by candle's quantized kernels (4–8× fewer bytes read per token than f32).
//!
//! llama.cpp's converter stores Llama q/k projection rows permuted for its interleaved rope
//! (`LlamaModel.permute`); they are put back in Hugging Face order on reading (whole rows move,
//! so quantized blocks are untouched). [`write_quantized`] writes the same layout.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

pub use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};

use super::ModelError;
use super::decoder::DecoderSpec;
use super::rope::RopeScaling;

/// The file extension of GGUF weights.
pub const GGUF_EXTENSION: &str = "gguf";

/// The file name [`write_quantized`] gives the weights of a quantized checkpoint.
pub const QUANTIZED_WEIGHTS_FILE: &str = "model.gguf";

/// The `*.gguf` files of a checkpoint folder, sorted.
pub fn gguf_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case(GGUF_EXTENSION))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The GGUF weights of a checkpoint folder, if it has them: one `*.gguf` file (a folder with
/// several is refused, naming them).
pub fn checkpoint_gguf(dir: &Path) -> Result<Option<PathBuf>, ModelError> {
    let mut files = gguf_files(dir)?;
    if files.len() > 1 {
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        return Err(ModelError::Invalid(format!(
            "{}: holds {} GGUF files ({}); keep the one to use",
            dir.display(),
            files.len(),
            names.join(", ")
        )));
    }
    Ok(files.pop())
}

/// The GGUF architecture a config's `model_type` is stored as (llama.cpp writes Mistral as
/// `llama`), or `None` for the architectures read only from safetensors.
pub fn architecture(model_type: &str) -> Option<&'static str> {
    match model_type {
        "llama" | "mistral" => Some("llama"),
        "qwen2" => Some("qwen2"),
        "qwen3" => Some("qwen3"),
        _ => None,
    }
}

/// The GGUF name of a Hugging Face tensor name, for the tensors a [`DecoderSpec`] lists.
pub fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (module, leaf) = rest.rsplit_once('.')?;
    let name = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{name}.{leaf}"))
}

/// Metadata keys under the architecture's prefix that this reader checks or that do not
/// change the maths. Any other key under the prefix is refused by name.
const KNOWN_KEYS: &[&str] = &[
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.layer_norm_rms_epsilon",
    "attention.key_length",
    "attention.value_length",
    "rope.freq_base",
    "rope.dimension_count",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scaling.original_context_length",
    "rope.scaling.attn_factor",
    "rope.scaling.finetuned",
    "rope.scaling.yarn_log_multiplier",
    "vocab_size",
    "expert_count",
    "expert_used_count",
];

/// An opened GGUF file: its header (metadata and where each tensor lies), checked against a
/// decoder spec before any weight is read.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    architecture: String,
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::Invalid(format!(
        "{}: {message}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    ))
}

impl GgufFile {
    /// Reads the header of `path` (metadata and tensor table; no weights).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        let content = Content::read(&mut file).map_err(|e| {
            let text = e.to_string();
            if text.contains("unknown dtype") {
                invalid(
                    path,
                    format!("it uses a quantization type this build cannot read ({text}); supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K"),
                )
            } else {
                invalid(path, format!("not a readable GGUF file: {text}"))
            }
        })?;
        let architecture = match content.metadata.get("general.architecture") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(invalid(path, "general.architecture is missing")),
        };
        Ok(Self {
            path: path.to_path_buf(),
            content,
            architecture,
        })
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// How many tensors of each type the file holds (`{"Q8_0": 14, "F32": 5}`), for
    /// metadata and messages.
    pub fn tensor_types(&self) -> BTreeMap<String, usize> {
        let mut types = BTreeMap::new();
        for info in self.content.tensor_infos.values() {
            *types
                .entry(type_name(info.ggml_dtype).to_string())
                .or_insert(0) += 1;
        }
        types
    }

    /// Parameters in the file's tensors.
    pub fn parameters(&self) -> u64 {
        self.content
            .tensor_infos
            .values()
            .map(|i| i.shape.elem_count() as u64)
            .sum()
    }

    fn err(&self, message: impl std::fmt::Display) -> ModelError {
        invalid(&self.path, message)
    }

    fn number(&self, key: &str) -> Result<Option<f64>, ModelError> {
        let Some(value) = self.content.metadata.get(key) else {
            return Ok(None);
        };
        let number = match value {
            Value::U8(v) => *v as f64,
            Value::I8(v) => *v as f64,
            Value::U16(v) => *v as f64,
            Value::I16(v) => *v as f64,
            Value::U32(v) => *v as f64,
            Value::I32(v) => *v as f64,
            Value::U64(v) => *v as f64,
            Value::I64(v) => *v as f64,
            Value::F32(v) => *v as f64,
            Value::F64(v) => *v,
            _ => return Err(self.err(format!("metadata {key} is not a number"))),
        };
        Ok(Some(number))
    }

    /// Checks the file against the decoder `spec` read from `config.json` (of `model_type`):
    /// architecture, every shape-bearing metadata field, rope base and scaling, epsilon, and
    /// every tensor's presence, shape and type. Unknown metadata under the architecture's
    /// prefix and unexpected tensors are refused by name.
    pub fn check(&self, spec: &DecoderSpec) -> Result<(), ModelError> {
        let Some(expected) = architecture(&spec.model_type) else {
            return Err(self.err(format!(
                "GGUF weights are read for Llama, Mistral, Qwen2 and Qwen3 checkpoints; config.json says model_type {:?}",
                spec.model_type
            )));
        };
        let arch = self.architecture.as_str();
        if arch != expected {
            return Err(self.err(format!(
                "the file's architecture is {arch:?} but config.json (model_type {:?}) needs {expected:?}: config.json is not this model's",
                spec.model_type
            )));
        }
        if let Some(count) = self.number("split.count")?
            && count > 1.0
        {
            return Err(self.err(format!(
                "a split GGUF ({count} parts) is not read here; merge it first with llama.cpp's `llama-gguf-split --merge`"
            )));
        }
        let prefix = format!("{arch}.");
        let mut unknown: Vec<&str> = self
            .content
            .metadata
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|k| !KNOWN_KEYS.contains(k))
            .collect();
        unknown.sort_unstable();
        if let Some(key) = unknown.first() {
            return Err(self.err(format!(
                "metadata {prefix}{key} is not understood here and may change the maths; refusing rather than computing the model wrongly"
            )));
        }
        if self
            .number(&format!("{prefix}expert_count"))?
            .unwrap_or(0.0)
            > 0.0
        {
            return Err(self.err("mixture-of-experts models are not supported"));
        }
        let kv_heads_default = spec.heads as f64;
        for (key, want, default) in [
            ("block_count", spec.num_layers as f64, None),
            ("embedding_length", spec.hidden_size as f64, None),
            ("feed_forward_length", spec.intermediate_size as f64, None),
            ("attention.head_count", spec.heads as f64, None),
            (
                "attention.head_count_kv",
                spec.kv_heads as f64,
                Some(kv_heads_default),
            ),
            (
                "attention.key_length",
                spec.head_dim as f64,
                Some(spec.head_dim as f64),
            ),
            (
                "attention.value_length",
                spec.head_dim as f64,
                Some(spec.head_dim as f64),
            ),
            (
                "rope.dimension_count",
                spec.rope.dim as f64,
                Some(spec.rope.dim as f64),
            ),
            (
                "vocab_size",
                spec.vocab_size as f64,
                Some(spec.vocab_size as f64),
            ),
        ] {
            let key = format!("{prefix}{key}");
            let found = match (self.number(&key)?, default) {
                (Some(v), _) => v,
                (None, Some(d)) => d,
                (None, None) => return Err(self.err(format!("metadata {key} is missing"))),
            };
            if found != want {
                return Err(self.err(format!(
                    "metadata {key} is {found} but config.json gives {want}: config.json is not this model's"
                )));
            }
        }
        // f32 in the file: compare at f32 precision.
        for (key, want) in [
            ("attention.layer_norm_rms_epsilon", spec.rms_norm_eps),
            ("rope.freq_base", spec.rope.theta),
        ] {
            let key = format!("{prefix}{key}");
            let Some(found) = self.number(&key)? else {
                return Err(self.err(format!("metadata {key} is missing")));
            };
            if (found as f32) != (want as f32) {
                return Err(self.err(format!(
                    "metadata {key} is {found} but config.json gives {want}: config.json is not this model's"
                )));
            }
        }
        self.check_rope_scaling(spec, &prefix)?;
        self.check_tensors(spec)
    }

    fn check_rope_scaling(&self, spec: &DecoderSpec, prefix: &str) -> Result<(), ModelError> {
        let key = format!("{prefix}rope.scaling.type");
        let kind = match self.content.metadata.get(&key) {
            None => "none".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(self.err(format!("metadata {key} is not a string"))),
        };
        let config = spec.rope.kind();
        let agrees = match (kind.as_str(), &spec.rope.scaling) {
            // Llama 3's scaling is stored as a `rope_freqs` tensor, checked with the tensors.
            ("none", RopeScaling::Default | RopeScaling::Llama3 { .. }) => true,
            ("linear", RopeScaling::Linear { factor }) => {
                let found = self
                    .number(&format!("{prefix}rope.scaling.factor"))?
                    .unwrap_or(1.0);
                (found as f32) == (*factor as f32)
            }
            ("yarn", RopeScaling::Yarn { factor, .. }) => {
                let found = self
                    .number(&format!("{prefix}rope.scaling.factor"))?
                    .unwrap_or(1.0);
                (found as f32) == (*factor as f32)
            }
            _ => false,
        };
        if !agrees {
            return Err(self.err(format!(
                "metadata {key} {kind:?} (with its factor) disagrees with config.json's rope type {config:?}: config.json is not this model's"
            )));
        }
        Ok(())
    }

    fn check_tensors(&self, spec: &DecoderSpec) -> Result<(), ModelError> {
        let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
        for (hf, shape) in spec.expected_tensors(true) {
            let Some(name) = gguf_name(&hf) else {
                return Err(self.err(format!(
                    "the tensor {hf} has no GGUF name here (this architecture is read from safetensors only)"
                )));
            };
            expected.push((name, shape));
        }
        let infos = &self.content.tensor_infos;
        let mut wanted: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        if spec.tie_word_embeddings && infos.contains_key("output.weight") {
            return Err(self.err(
                "the file has its own output.weight but config.json says tie_word_embeddings: config.json is not this model's",
            ));
        }
        let llama3 = matches!(spec.rope.scaling, RopeScaling::Llama3 { .. });
        if llama3 {
            wanted.insert("rope_freqs.weight");
            if !infos.contains_key("rope_freqs.weight") {
                return Err(self.err(
                    "config.json has Llama 3 rope scaling but the file has no rope_freqs.weight: it was converted from another config",
                ));
            }
        }
        let mut extra: Vec<&str> = infos
            .keys()
            .map(String::as_str)
            .filter(|n| !wanted.contains(n))
            .collect();
        extra.sort_unstable();
        if let Some(name) = extra.first() {
            return Err(self.err(format!(
                "the file holds the tensor {name}, which this {} model does not have; refusing rather than ignoring it",
                spec.model_type
            )));
        }
        for (name, shape) in &expected {
            let Some(info) = infos.get(name) else {
                return Err(self.err(format!("the tensor {name} is missing")));
            };
            if info.shape.dims() != shape.as_slice() {
                return Err(self.err(format!(
                    "the tensor {name} has shape {:?}, config.json implies {shape:?}",
                    info.shape.dims()
                )));
            }
            let block = info.ggml_dtype.block_size();
            let row = *shape.last().unwrap_or(&0);
            if !row.is_multiple_of(block) {
                return Err(self.err(format!(
                    "the tensor {name} has rows of {row} values, not a multiple of its {} block of {block}",
                    type_name(info.ggml_dtype)
                )));
            }
            if matches!(info.ggml_dtype, GgmlDType::Q8_1 | GgmlDType::Q8K) {
                return Err(self.err(format!(
                    "the tensor {name} is stored as {}, an intermediate type llama.cpp never writes for weights",
                    type_name(info.ggml_dtype)
                )));
            }
        }
        if llama3 {
            let factors = self.vector("rope_freqs.weight")?;
            let (base, _) = super::rope::Rope {
                scaling: RopeScaling::Default,
                ..spec.rope.clone()
            }
            .frequencies(1);
            let (scaled, _) = spec.rope.frequencies(1);
            if factors.len() != base.len() {
                return Err(self.err(format!(
                    "rope_freqs.weight has {} values for {} frequency pairs",
                    factors.len(),
                    base.len()
                )));
            }
            for (i, ((f, b), s)) in factors.iter().zip(&base).zip(&scaled).enumerate() {
                let want = b / s;
                if (f - want).abs() > 1e-3 * want.abs().max(1.0) {
                    return Err(self.err(format!(
                        "rope_freqs.weight[{i}] is {f} but config.json's Llama 3 rope scaling gives {want}: config.json is not this model's"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A 1-D tensor's values in f32 (norm weights, biases, rope factors).
    fn vector(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        let tensor = self.read_raw(name)?;
        Ok(tensor.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?)
    }

    fn read_raw(&self, name: &str) -> Result<QTensor, ModelError> {
        let mut file =
            std::fs::File::open(&self.path).map_err(|e| ModelError::io(&self.path, e))?;
        self.content
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| self.err(format!("reading {name}: {e}")))
    }

    /// The tensor with Hugging Face name `hf` (as [`DecoderSpec::expected_tensors`] names
    /// it), in Hugging Face row order: `(rows, cols)` matrices stay in their stored type.
    pub fn read(&self, hf: &str, spec: &DecoderSpec) -> Result<QTensor, ModelError> {
        let name =
            gguf_name(hf).ok_or_else(|| self.err(format!("no GGUF name for the tensor {hf}")))?;
        let tensor = self.read_raw(&name)?;
        if self.architecture != "llama" {
            return Ok(tensor);
        }
        let heads = if hf.contains(".q_proj.") {
            spec.heads
        } else if hf.contains(".k_proj.") {
            spec.kv_heads
        } else {
            return Ok(tensor);
        };
        Ok(permute_rows(
            &tensor,
            heads,
            spec.head_dim,
            Direction::FromGguf,
        )?)
    }
}

/// The name llama.cpp gives a tensor type.
pub fn type_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

/// Which way [`permute_rows`] moves rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Hugging Face order → llama.cpp's (writing).
    ToGguf,
    /// llama.cpp's order → Hugging Face's (reading).
    FromGguf,
}

/// Moves the rows of a q or k projection (or its bias) between the Hugging Face order (per
/// head: the first halves of the rotated pairs, then the second halves) and llama.cpp's
/// (per head: pairs interleaved). Row `h·d + 2j + s` in the file is row `h·d + s·d/2 + j` in
/// Hugging Face order. Whole rows move, so any block type is kept as it is.
fn permute_rows(
    tensor: &QTensor,
    heads: usize,
    head_dim: usize,
    direction: Direction,
) -> candle_core::Result<QTensor> {
    let dims = tensor.shape().dims().to_vec();
    let rows = dims[0];
    if rows != heads * head_dim {
        candle_core::bail!("{rows} rows for {heads} heads of {head_dim}");
    }
    let data = tensor.data()?;
    let row_bytes = data.len() / rows;
    let half = head_dim / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for j in 0..half {
            for s in 0..2 {
                let gguf = h * head_dim + 2 * j + s;
                let hf = h * head_dim + s * half + j;
                let (from, to) = match direction {
                    Direction::FromGguf => (gguf, hf),
                    Direction::ToGguf => (hf, gguf),
                };
                out[to * row_bytes..(to + 1) * row_bytes]
                    .copy_from_slice(&data[from * row_bytes..(from + 1) * row_bytes]);
            }
        }
    }
    let storage = QStorage::from_data(std::borrow::Cow::Owned(out), &Device::Cpu, tensor.dtype())?;
    QTensor::new(storage, dims)
}

/// The quantization types offered when registering a safetensors prover.
pub fn parse_quantization(name: &str) -> Result<GgmlDType, String> {
    match name.to_ascii_uppercase().as_str() {
        "Q8_0" => Ok(GgmlDType::Q8_0),
        "Q4_0" => Ok(GgmlDType::Q4_0),
        "Q4_K" => Ok(GgmlDType::Q4K),
        "Q6_K" => Ok(GgmlDType::Q6K),
        other => Err(format!(
            "quantization {other:?} is not offered (Q8_0, Q4_0, Q4_K, Q6_K)"
        )),
    }
}

/// Writes the weights of a Llama/Mistral/Qwen2/Qwen3 checkpoint, which `load` gives by Hugging
/// Face name (as the spec lists them; one at a time, so only the quantized copy is held
/// whole), to `out` as GGUF in llama.cpp's layout: matrices
/// quantized to `dtype` where their rows fit its blocks (others, and every vector, in F32),
/// Llama q/k rows permuted, metadata as llama.cpp's converter writes it for the
/// architecture. The tokenizer is not embedded: the folder keeps `tokenizer.json`.
pub fn write_quantized(
    spec: &DecoderSpec,
    load: impl Fn(&str) -> Result<Tensor, ModelError>,
    dtype: GgmlDType,
    out: &Path,
) -> Result<(), ModelError> {
    let Some(arch) = architecture(&spec.model_type) else {
        return Err(ModelError::Invalid(format!(
            "quantizing is offered for Llama, Mistral, Qwen2 and Qwen3 provers, not model_type {:?}",
            spec.model_type
        )));
    };
    let not_implemented = |what: &str| {
        Err(ModelError::Invalid(format!(
            "quantizing a checkpoint with {what} is not supported"
        )))
    };
    match spec.rope.scaling {
        RopeScaling::Default | RopeScaling::Llama3 { .. } | RopeScaling::Linear { .. } => {}
        _ => return not_implemented(&format!("{} rope scaling", spec.rope.kind())),
    }
    if spec.windows.iter().any(Option::is_some) {
        return not_implemented("sliding-window attention");
    }
    if spec.o_bias || spec.mlp_bias || (spec.qkv_bias && arch == "llama") {
        return not_implemented("biases outside q/k/v (Llama attention_bias or mlp_bias)");
    }
    let mut quantized: Vec<(String, QTensor)> = Vec::new();
    for (hf, shape) in spec.expected_tensors(true) {
        let tensor = load(&hf)?;
        let name = gguf_name(&hf)
            .ok_or_else(|| ModelError::Invalid(format!("no GGUF name for the tensor {hf}")))?;
        let tensor = tensor.to_dtype(candle_core::DType::F32)?;
        let row = *shape.last().unwrap_or(&0);
        // A matrix whose rows do not fit the type's blocks (k-quants need multiples of 256,
        // e.g. Qwen2.5-0.5B's 896 and 4864) falls back to Q8_0, as llama.cpp falls back to
        // a 32-value type; vectors stay F32.
        let as_type = if shape.len() != 2 {
            GgmlDType::F32
        } else if row.is_multiple_of(dtype.block_size()) {
            dtype
        } else if row.is_multiple_of(GgmlDType::Q8_0.block_size()) {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        let mut q = QTensor::quantize(&tensor, as_type)?;
        if arch == "llama" {
            if hf.contains(".q_proj.") {
                q = permute_rows(&q, spec.heads, spec.head_dim, Direction::ToGguf)?;
            } else if hf.contains(".k_proj.") {
                q = permute_rows(&q, spec.kv_heads, spec.head_dim, Direction::ToGguf)?;
            }
        }
        quantized.push((name, q));
    }
    if let RopeScaling::Llama3 { .. } = spec.rope.scaling {
        let (base, _) = super::rope::Rope {
            scaling: RopeScaling::Default,
            ..spec.rope.clone()
        }
        .frequencies(1);
        let (scaled, _) = spec.rope.frequencies(1);
        let factors: Vec<f32> = base.iter().zip(&scaled).map(|(b, s)| b / s).collect();
        let n = factors.len();
        let tensor = Tensor::from_vec(factors, n, &Device::Cpu)?;
        quantized.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&tensor, GgmlDType::F32)?,
        ));
    }
    let p = |key: &str| format!("{arch}.{key}");
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.file_type".into(), Value::U32(file_type(dtype))),
        ("general.quantization_version".into(), Value::U32(2)),
        (p("context_length"), Value::U32(spec.max_positions as u32)),
        (p("embedding_length"), Value::U32(spec.hidden_size as u32)),
        (p("block_count"), Value::U32(spec.num_layers as u32)),
        (
            p("feed_forward_length"),
            Value::U32(spec.intermediate_size as u32),
        ),
        (p("attention.head_count"), Value::U32(spec.heads as u32)),
        (
            p("attention.head_count_kv"),
            Value::U32(spec.kv_heads as u32),
        ),
        (p("attention.key_length"), Value::U32(spec.head_dim as u32)),
        (
            p("attention.value_length"),
            Value::U32(spec.head_dim as u32),
        ),
        (p("rope.dimension_count"), Value::U32(spec.rope.dim as u32)),
        (p("rope.freq_base"), Value::F32(spec.rope.theta as f32)),
        (
            p("attention.layer_norm_rms_epsilon"),
            Value::F32(spec.rms_norm_eps as f32),
        ),
        (p("vocab_size"), Value::U32(spec.vocab_size as u32)),
    ];
    if let RopeScaling::Linear { factor } = spec.rope.scaling {
        metadata.push((p("rope.scaling.type"), Value::String("linear".into())));
        metadata.push((p("rope.scaling.factor"), Value::F32(factor as f32)));
    }
    let metadata_refs: Vec<(&str, &Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> =
        quantized.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(out).map_err(|e| ModelError::io(out, e))?;
    gguf_file::write(&mut file, &metadata_refs, &tensor_refs)?;
    file.sync_all().map_err(|e| ModelError::io(out, e))
}

/// [`write_quantized`] for a checkpoint's `*.safetensors` files (any float dtype, read
/// through a memory map one tensor at a time).
pub fn quantize_safetensors(
    spec: &DecoderSpec,
    weights: &[PathBuf],
    dtype: GgmlDType,
    out: &Path,
) -> Result<(), ModelError> {
    // SAFETY: checkpoint files are not modified while this process reads them (uploads are
    // staged copies).
    let tensors = unsafe { candle_core::safetensors::MmapedSafetensors::multi(weights)? };
    write_quantized(
        spec,
        |name| {
            Ok(tensors
                .load(name, &Device::Cpu)?
                .to_dtype(candle_core::DType::F32)?)
        },
        dtype,
        out,
    )
}

/// llama.cpp's `general.file_type` code of a whole-file quantization.
fn file_type(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q8_0 => 7,
        GgmlDType::Q5_0 => 8,
        GgmlDType::Q5_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 12,
        GgmlDType::Q4K => 15,
        GgmlDType::Q5K => 17,
        GgmlDType::Q6K => 18,
        GgmlDType::BF16 => 32,
        GgmlDType::Q8_1 | GgmlDType::Q8K => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_llama_cpp() {
        for (hf, gguf) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
            (
                "model.layers.0.input_layernorm.weight",
                "blk.0.attn_norm.weight",
            ),
            (
                "model.layers.11.self_attn.q_proj.bias",
                "blk.11.attn_q.bias",
            ),
            (
                "model.layers.3.self_attn.o_proj.weight",
                "blk.3.attn_output.weight",
            ),
            (
                "model.layers.2.self_attn.k_norm.weight",
                "blk.2.attn_k_norm.weight",
            ),
            (
                "model.layers.1.post_attention_layernorm.weight",
                "blk.1.ffn_norm.weight",
            ),
            (
                "model.layers.1.mlp.down_proj.weight",
                "blk.1.ffn_down.weight",
            ),
        ] {
            assert_eq!(gguf_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        assert_eq!(gguf_name("model.layers.0.self_attn.qkv_proj.weight"), None);
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
    }

    #[test]
    fn permuting_rows_round_trips_and_matches_the_converter() {
        // 2 heads of width 4, one column: HF rows [h0: a0 a1 b0 b1, h1: …] become the
        // converter's interleaved [a0 b0 a1 b1] per head.
        let values: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let tensor = Tensor::from_vec(values.clone(), (8, 1), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&tensor, GgmlDType::F32).unwrap();
        let to = permute_rows(&q, 2, 4, Direction::ToGguf).unwrap();
        let stored: Vec<f32> = to
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(stored, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        let back = permute_rows(&to, 2, 4, Direction::FromGguf).unwrap();
        let back: Vec<f32> = back
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(back, values);
    }

    #[test]
    fn offered_quantizations() {
        assert_eq!(parse_quantization("q8_0"), Ok(GgmlDType::Q8_0));
        assert!(
            parse_quantization("Q2_K")
                .unwrap_err()
                .contains("not offered")
        );
    }
}
