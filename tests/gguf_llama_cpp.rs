//! GGUF files written by llama.cpp's own tools, against llama.cpp's own logits
//! (`tests/fixtures/gguf/`, made by `scripts/reference/make_gguf_fixtures.py` with the llama.cpp
//! of llama-cpp-python 0.3.36): a Llama and a Qwen2 model of width 256 converted the way
//! `convert_hf_to_gguf.py` does (Llama q/k rows permuted) and quantized by `llama-quantize` to
//! Q8_0, Q4_0, Q4_K_M and Q6_K. Every position of every prompt is compared with llama.cpp, and
//! with the f32 model, and the greedy continuation (decoded through slots) with llama.cpp's.
//!
//! llama.cpp rounds each input row to 8 bits before a quantized product (Q8_0/Q8_K). So does
//! candle's quantized product, which this project uses for the Q4/Q6 types on these short
//! prompts (fewer than 32 rows): Q6_K and Q4_K_M come out equal to llama.cpp to 4 digits. Q8_0
//! is multiplied in f32 by the dequantized blocks (the decoding kernel; exact for the stored
//! weights), which leaves ~0.09 against llama.cpp. The tolerances below are the measured worst
//! cases with about 2× room; the README lists the figures.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use legibility::ml::decoder::greedy;
use legibility::ml::prover::Prover;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(case)
}

fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// The case's checkpoint folder with `gguf/<kind>.gguf` as its only weights.
fn gguf_folder(case: &str, kind: &str) -> tempfile::TempDir {
    let source = fixture(case);
    let out = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_file() && !name.starts_with("reference") && !name.ends_with(".safetensors") {
            std::fs::copy(&path, out.path().join(&name)).unwrap();
        }
    }
    std::fs::copy(
        source.join("gguf").join(format!("{kind}.gguf")),
        out.path().join("model.gguf"),
    )
    .unwrap();
    out
}

fn all_logits(prover: &mut Prover, input: &[u32]) -> Tensor {
    let model = prover.model_mut();
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

/// (type, largest |Δlogit| allowed against llama.cpp's logits of the same file, against the
/// f32 model's): measured worst cases over both cases with about 2× room (README).
const TYPES: &[(&str, f32, f32)] = &[
    ("Q8_0", 0.2, 0.25),
    ("Q6_K", 1e-3, 0.6),
    ("Q4_K_M", 0.03, 2.5),
    ("Q4_0", 0.1, 2.5),
];

#[test]
fn llama_cpp_files_give_llama_cpp_logits() {
    for case in ["llama", "qwen2"] {
        let dir = fixture(case);
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let tensors =
            candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu)
                .unwrap();
        // The f32 safetensors model (this project's loader, checked against transformers in
        // tests/transformers.rs) against llama.cpp running the F32 GGUF of the same weights:
        // the conversion is right.
        let mut dense = Prover::load(&dir, &Device::Cpu).unwrap();
        let prompts = reference["files"]["F32"]["prompts"].as_array().unwrap();
        let mut f32_logits = Vec::new();
        for prompt in prompts {
            let input = ids(&prompt["input_ids"]);
            let ours = all_logits(&mut dense, &input);
            let theirs = &tensors[prompt["logits"].as_str().unwrap()];
            let diff = max_diff(&ours, theirs);
            assert!(diff <= 1e-4, "{case} F32: differs from llama.cpp by {diff}");
            f32_logits.push(ours);
        }
        for &(kind, vs_llama_cpp, vs_f32) in TYPES {
            let folder = gguf_folder(case, kind);
            let mut prover = Prover::load(folder.path(), &Device::Cpu)
                .unwrap_or_else(|e| panic!("{case} {kind}: {e}"));
            let file = &reference["files"][kind];
            let (mut worst_cpp, mut worst_f32) = (0f32, 0f32);
            for (p, prompt) in file["prompts"].as_array().unwrap().iter().enumerate() {
                let input = ids(&prompt["input_ids"]);
                let ours = all_logits(&mut prover, &input);
                let theirs = &tensors[prompt["logits"].as_str().unwrap()];
                worst_cpp = worst_cpp.max(max_diff(&ours, theirs));
                worst_f32 = worst_f32.max(max_diff(&ours, &f32_logits[p]));
            }
            let greedy_ref = &file["greedy"];
            let prompt =
                ids(&prompts[greedy_ref["prompt"].as_u64().unwrap() as usize]["input_ids"]);
            let want = ids(&greedy_ref["ids"]);
            let (got, _) = greedy(prover.model_mut(), &prompt, want.len()).unwrap();
            let agree = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
            eprintln!(
                "{case} {kind}: max |Δlogit| vs llama.cpp {worst_cpp:.4}, vs f32 {worst_f32:.4}; greedy agrees for {agree} of {} tokens",
                want.len()
            );
            assert!(
                worst_cpp <= vs_llama_cpp,
                "{case} {kind}: differs from llama.cpp by {worst_cpp}"
            );
            assert!(
                worst_f32 <= vs_f32,
                "{case} {kind}: differs from f32 by {worst_f32}"
            );
            assert!(worst_f32 > 0.0, "{case} {kind}: cannot be exact");
        }
    }
}
