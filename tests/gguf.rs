//! GGUF provers. Written by this project (`ml::gguf::write_quantized`, what "quantize on
//! registration" stores) from the transformers fixtures: an F32 file gives the safetensors
//! model's logits exactly and transformers' greedy continuation; Q8_0 stays within a stated
//! tolerance. Validation refuses a file that disagrees with its config.json, naming the field.
//! (The files llama.cpp itself wrote, with its logits, are checked in `gguf_llama_cpp`.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use legibility::checkpoints::{CheckpointLimits, Staging, validate};
use legibility::domain::CheckpointKind;
use legibility::ml::config::ModelConfig;
use legibility::ml::decoder::{Decoder, greedy};
use legibility::ml::gguf::{self, QUANTIZED_WEIGHTS_FILE};
use legibility::ml::prover::Prover;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transformers")
        .join(case)
}

fn reference(case: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(case).join("reference.json")).unwrap()).unwrap()
}

fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn spec_of(dir: &Path) -> legibility::ml::decoder::DecoderSpec {
    ModelConfig::from_json(&std::fs::read(dir.join("config.json")).unwrap())
        .unwrap()
        .decoder_spec()
        .unwrap()
        .unwrap()
}

/// A copy of the fixture's checkpoint folder with its weights written as one GGUF of `dtype`.
fn gguf_copy(case: &str, dtype: GgmlDType) -> tempfile::TempDir {
    let source = fixture(case);
    let out = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("reference") && !name.ends_with(".safetensors") {
            std::fs::copy(&path, out.path().join(&name)).unwrap();
        }
    }
    let tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    gguf::write_quantized(
        &spec_of(&source),
        |name| Ok(tensors[name].clone()),
        dtype,
        &out.path().join(QUANTIZED_WEIGHTS_FILE),
    )
    .unwrap_or_else(|e| panic!("{case}: {e}"));
    out
}

fn safetensors_model(case: &str) -> Decoder {
    let dir = fixture(case);
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    Decoder::new(&spec_of(&dir), vb).unwrap()
}

fn all_logits(model: &mut Decoder, input: &[u32]) -> Tensor {
    model.reset(input.len());
    model
        .forward_decode_all(
            &Tensor::new(input, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            &[0],
        )
        .unwrap()
        .squeeze(0)
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// How far a GGUF copy's logits are from the safetensors model's, over every position of
/// every prompt.
#[derive(Debug, Default)]
struct Deviation {
    /// Largest |Δlogit|.
    max: f32,
    /// Mean |Δlogit|.
    mean: f32,
    /// Largest |logit| of the f32 model (the scale the differences are read against).
    scale: f32,
    /// Whether the greedy continuations (decoded through slots) are transformers'.
    same_greedy: bool,
}

fn compare(case: &str, dtype: GgmlDType) -> Deviation {
    let copy = gguf_copy(case, dtype);
    let mut prover =
        Prover::load(copy.path(), &Device::Cpu).unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut dense = safetensors_model(case);
    let reference = reference(case);
    let mut deviation = Deviation {
        same_greedy: true,
        ..Deviation::default()
    };
    let (mut sum, mut count) = (0f64, 0usize);
    for prompt in reference["prompts"].as_array().unwrap() {
        let input = ids(&prompt["input_ids"]);
        let a = all_logits(prover.model_mut(), &input);
        let b = all_logits(&mut dense, &input);
        deviation.max = deviation.max.max(max_diff(&a, &b));
        let diffs: Vec<f32> = (&a - &b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        sum += diffs.iter().map(|&d| d as f64).sum::<f64>();
        count += diffs.len();
        let values: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        deviation.scale = values.iter().fold(deviation.scale, |m, v| m.max(v.abs()));
        let want = ids(&prompt["greedy_ids"]);
        let got = greedy(prover.model_mut(), &input, want.len()).unwrap();
        deviation.same_greedy &= got.0 == want;
    }
    deviation.mean = (sum / count as f64) as f32;
    deviation
}

#[test]
fn an_f32_gguf_is_the_safetensors_model() {
    // Llama (q/k rows permuted as llama.cpp stores them), Llama 3 rope (rope_freqs), linear
    // rope, Qwen2 (q/k/v biases, tied output), Qwen3 (q/k norms, head_dim ≠ hidden / heads).
    for case in [
        "llama",
        "llama3-rope",
        "llama-linear",
        "qwen2",
        "qwen3",
        "llama3-instruct-v4",
    ] {
        let d = compare(case, GgmlDType::F32);
        assert!(d.max <= 1e-5, "{case}: F32 GGUF logits differ by {}", d.max);
        assert!(
            d.same_greedy,
            "{case}: F32 GGUF greedy ids differ from transformers'"
        );
    }
}

/// Q8_0 (one f16 scale per 32 weights, activations quantized to 8 bits per block as
/// llama.cpp does). These tiny random models (weights N(0, 0.3²), sharp attention) amplify any
/// change far more than trained models: see `gguf_llama_cpp` for realistic figures.
#[test]
fn a_q8_0_gguf_stays_close_to_f32() {
    for case in ["llama", "llama3-rope", "qwen2", "qwen3"] {
        let d = compare(case, GgmlDType::Q8_0);
        eprintln!(
            "{case}: Q8_0 max |Δlogit| {:.4}, mean {:.4}, logits up to {:.2}",
            d.max, d.mean, d.scale
        );
        assert!(d.max > 0.0, "{case}: Q8_0 cannot be exact");
        assert!(d.max <= 0.2 * d.scale, "{case}: {d:?}");
        assert!(d.mean <= 0.02 * d.scale, "{case}: {d:?}");
    }
}

#[test]
fn quantizing_refuses_what_the_format_cannot_hold() {
    let source = fixture("mistral");
    let tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = gguf::write_quantized(
        &spec_of(&source),
        |name| Ok(tensors[name].clone()),
        GgmlDType::Q8_0,
        &out.path().join("x.gguf"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("sliding-window attention"), "{err}");
    let err = gguf::write_quantized(
        &spec_of(&fixture("phi3")),
        |_| unreachable!(),
        GgmlDType::Q8_0,
        &out.path().join("x.gguf"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not model_type \"phi3\""), "{err}");
}

fn validate_folder(
    dir: &Path,
    kind: CheckpointKind,
) -> Result<legibility::checkpoints::ValidatedCheckpoint, String> {
    let mut staging = Staging::new(&std::env::temp_dir(), CheckpointLimits::default()).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("reference") {
            staging
                .add(&name, std::fs::File::open(&path).unwrap())
                .unwrap();
        }
    }
    let files = staging.finish().unwrap();
    validate(files, kind, &CheckpointLimits::default()).map_err(|e| e.to_string())
}

/// Rewrites `dir`'s model.gguf with `change` applied to its metadata.
fn edit_metadata(dir: &Path, change: impl FnOnce(&mut HashMap<String, Value>)) {
    let path = dir.join(QUANTIZED_WEIGHTS_FILE);
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut tensors = Vec::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        tensors.push((
            name.clone(),
            content.tensor(&mut file, name, &Device::Cpu).unwrap(),
        ));
    }
    let mut metadata = content.metadata.clone();
    change(&mut metadata);
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(&path).unwrap();
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
}

#[test]
fn a_gguf_prover_is_a_valid_upload_and_must_agree_with_its_config() {
    let copy = gguf_copy("llama", GgmlDType::Q8_0);
    let checkpoint = validate_folder(copy.path(), CheckpointKind::Prover).unwrap();
    let metadata = checkpoint.metadata();
    assert!(
        metadata.to_string().contains("Q8_0"),
        "the tensor types are recorded: {metadata}"
    );

    // A verifier is never read from GGUF.
    let err = validate_folder(copy.path(), CheckpointKind::Verifier).unwrap_err();
    assert!(
        err.contains("a verifier is trained, so it is read from safetensors"),
        "{err}"
    );

    // config.json of another model: named field by field.
    let other = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(copy.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, other.path().join(path.file_name().unwrap())).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.path().join("config.json")).unwrap()).unwrap();
    config["rms_norm_eps"] = serde_json::json!(1e-6);
    std::fs::write(other.path().join("config.json"), config.to_string()).unwrap();
    let err = validate_folder(other.path(), CheckpointKind::Prover).unwrap_err();
    assert!(
        err.contains("llama.attention.layer_norm_rms_epsilon")
            && err.contains("config.json is not this model's"),
        "{err}"
    );
    config["rms_norm_eps"] = serde_json::json!(1e-5);
    config["rope_parameters"]["rope_type"] = serde_json::json!("linear");
    config["rope_parameters"]["factor"] = serde_json::json!(2.0);
    std::fs::write(other.path().join("config.json"), config.to_string()).unwrap();
    let err = validate_folder(other.path(), CheckpointKind::Prover).unwrap_err();
    assert!(
        err.contains("rope.scaling.type \"none\"") && err.contains("\"linear\""),
        "{err}"
    );

    // Metadata this reader does not know is refused by name, not ignored.
    let edited = gguf_copy("llama", GgmlDType::Q8_0);
    edit_metadata(edited.path(), |m| {
        m.insert("llama.attention.sliding_window".into(), Value::U32(4));
    });
    let err = validate_folder(edited.path(), CheckpointKind::Prover).unwrap_err();
    assert!(
        err.contains("metadata llama.attention.sliding_window is not understood here"),
        "{err}"
    );
    let edited = gguf_copy("qwen2", GgmlDType::Q8_0);
    edit_metadata(edited.path(), |m| {
        m.insert("general.architecture".into(), Value::String("llama".into()));
    });
    let err = validate_folder(edited.path(), CheckpointKind::Prover).unwrap_err();
    assert!(
        err.contains("the file's architecture is \"llama\""),
        "{err}"
    );

    // Two GGUF files: which one is meant is not guessed.
    std::fs::copy(
        copy.path().join(QUANTIZED_WEIGHTS_FILE),
        copy.path().join("model-q4.gguf"),
    )
    .unwrap();
    let err = validate_folder(copy.path(), CheckpointKind::Prover).unwrap_err();
    assert!(
        err.contains("2 GGUF files (model-q4.gguf, model.gguf)"),
        "{err}"
    );

    // Without config.json the message says what to copy.
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(
        edited.path().join(QUANTIZED_WEIGHTS_FILE),
        bare.path().join("qwen2.5-0.5b-instruct-q8_0.gguf"),
    )
    .unwrap();
    std::fs::copy(
        edited.path().join("tokenizer.json"),
        bare.path().join("tokenizer.json"),
    )
    .unwrap();
    let err = validate_folder(bare.path(), CheckpointKind::Prover).unwrap_err();
    assert!(
        err.contains("config.json is missing: a GGUF prover"),
        "{err}"
    );
}

/// "Quantize on registration": a validated safetensors prover becomes a GGUF prover folder
/// (side files kept, weights replaced), validated again, that generates.
#[test]
fn a_safetensors_prover_is_quantized_on_registration() {
    let models = tempfile::tempdir().unwrap();
    let checkpoint = validate_folder(&fixture("qwen2"), CheckpointKind::Prover).unwrap();
    let limits = CheckpointLimits::default();
    let quantized = legibility::checkpoints::quantize::quantize(
        checkpoint,
        GgmlDType::Q8_0,
        models.path(),
        &limits,
    )
    .unwrap();
    let names: Vec<String> = quantized.files().iter().map(|f| f.name.clone()).collect();
    assert!(
        names.contains(&QUANTIZED_WEIGHTS_FILE.to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"tokenizer.json".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with(".safetensors")),
        "{names:?}"
    );
    let mut prover = Prover::load(quantized.dir(), &Device::Cpu).unwrap();
    let input = ids(&reference("qwen2")["prompts"][0]["input_ids"]);
    let a = all_logits(prover.model_mut(), &input);
    let b = all_logits(&mut safetensors_model("qwen2"), &input);
    let diff = max_diff(&a, &b);
    assert!(diff > 0.0 && diff <= 1.0, "Q8_0 differs by {diff}");

    // A verifier is not quantized.
    let verifier = validate_folder(&fixture("qwen2-cls"), CheckpointKind::Verifier).unwrap();
    let err = legibility::checkpoints::quantize::quantize(
        verifier,
        GgmlDType::Q8_0,
        models.path(),
        &limits,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("only provers can be quantized"), "{err}");
}
