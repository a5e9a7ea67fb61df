//! Benchmark: decoding speed of a prover checkpoint on this machine.
//!
//! Prints single-stream tokens/s (one solution at a time, the latency case), batched tokens/s
//! at several batch sizes (the generation job's case), and the process's peak resident memory.
//! A command, not a test: tests assert behaviour, benchmarks measure.
//!
//! `cargo run --release --bin bench-prover -- [--model models/prover-tiny] [--tokens 128] [--threads 1] [--sequences 16] [--no-job]`
//!
//! `--shape qwen2.5-0.5b|llama-3.2-1b` measures a random-weight model of that architecture and
//! size instead (built in memory from the real models' configs, F32, the shipped tokenizer for
//! prompts): decoding speed and peak memory on real shapes without a download.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::Device;
use clap::Parser;
use legibility::domain::ProverRole;
use legibility::generator;
use legibility::ml::prover::{Prover, SampleRequest};
use legibility::ml::sampling::SamplingParams;

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Checkpoint folder.
    #[arg(long, default_value = "models/prover-tiny")]
    model: PathBuf,
    /// Instead of `--model`: a random-weight model of a real architecture and size.
    #[arg(long, value_parser = ["qwen2.5-0.5b", "llama-3.2-1b"])]
    shape: Option<String>,
    /// Tokens to generate per sequence at most. A sequence still stops early at its end of
    /// sequence or final-answer line (as in a generation job); tokens/s counts the tokens
    /// actually generated, and each line says how many sequences stopped early (a
    /// random-weight `--shape` model practically never does).
    #[arg(long, default_value_t = 128)]
    tokens: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    batches: Vec<usize>,
    /// CPU threads for candle, as `serve` and `worker` set them (`--model-threads`); ignored
    /// when RAYON_NUM_THREADS is set.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Batch size of the generation-job workload measured last.
    #[arg(long, default_value_t = 32)]
    job_batch: usize,
    /// Sequences decoded per batch size at least (rounded up to whole batches).
    #[arg(long, default_value_t = 16)]
    sequences: usize,
    /// With `--shape`: quantize the random model to this GGUF type (`Q8_0`, `Q4_0`, `Q4_K`,
    /// `Q6_K`) as "quantize on registration" does, and measure that. (For a GGUF file of your
    /// own, point `--model` at its checkpoint folder.)
    #[arg(long, value_parser = legibility::ml::gguf::parse_quantization)]
    quantize: Option<candle_core::quantized::GgmlDType>,
    /// Skip the generation-job workload (a random-weight `--shape` model never writes a final
    /// answer, so every solution would run to the token limit).
    #[arg(long)]
    no_job: bool,
}

/// The process's peak resident memory so far (`VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// The process's resident memory now (`VmRSS`), in MiB.
fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", args.threads.max(1).to_string()) };
    }
    let mut prover = match &args.shape {
        Some(shape) => random_prover(shape, &args.model, args.quantize)?,
        None => Prover::load(&args.model, &Device::Cpu)?,
    };
    if let (Some(peak), Some(now)) = (peak_rss_mib(), rss_mib()) {
        println!("peak resident memory after loading: {peak:.0} MiB (resident now {now:.0} MiB)");
    }
    let spec = prover.model_mut().spec().clone();
    println!(
        "model {} ({}): hidden {} x {} layers, vocab {}, {} threads",
        args.model.display(),
        spec.model_type,
        spec.hidden_size,
        spec.num_layers,
        spec.vocab_size,
        candle_core::utils::get_num_threads()
    );
    let problems = generator::generate(4242, 64);
    let stop = AtomicBool::new(false);
    // Greedy decoding up to a fixed length: sampling choices do not change the work per token,
    // and the same cap makes runs comparable (early stops are counted and printed).
    let params = SamplingParams {
        temperature: 0.0,
        top_p: 1.0,
        max_new_tokens: args.tokens,
    };
    prover.generate(
        &[SampleRequest {
            question: problems[0].question.clone(),
            role: ProverRole::Helpful,
            seed: 0,
        }],
        &params,
        &stop,
    )?;
    for &batch in &args.batches {
        // At least 16 sequences per size, decoded `batch` at a time, so short runs average out.
        let sequences = batch.max(args.sequences).div_ceil(batch) * batch;
        let requests: Vec<SampleRequest> = (0..sequences)
            .map(|i| SampleRequest {
                question: problems[i % problems.len()].question.clone(),
                role: if i % 2 == 0 {
                    ProverRole::Helpful
                } else {
                    ProverRole::Sneaky
                },
                seed: i as u64,
            })
            .collect();
        let started = Instant::now();
        let (mut tokens, mut steps, mut stopped_early) = (0, 0, 0);
        for chunk in requests.chunks(batch) {
            let samples = prover.generate(chunk, &params, &stop)?;
            tokens += samples.iter().map(|s| s.tokens).sum::<usize>();
            steps += samples.iter().map(|s| s.tokens).max().unwrap_or(0);
            stopped_early += samples.iter().filter(|s| s.tokens < args.tokens).count();
        }
        let seconds = started.elapsed().as_secs_f64();
        // The same batches for one new token: the prompts' prefill, so the steps after it can
        // be timed on their own (on a big model the prefill is a large share of a short run).
        let first_token = SamplingParams {
            max_new_tokens: 1,
            ..params
        };
        let started = Instant::now();
        for chunk in requests.chunks(batch) {
            prover.generate(chunk, &first_token, &stop)?;
        }
        let prefill = started.elapsed().as_secs_f64();
        let batches = requests.len() / batch;
        let later_steps = steps.saturating_sub(batches).max(1);
        let step_ms = (seconds - prefill).max(0.0) * 1000.0 / later_steps as f64;
        println!(
            "batch {batch:>3}: {tokens:>6} tokens in {seconds:>6.2}s = {:>8.1} tokens/s; prefill + first token {:.0} ms, then {step_ms:.1} ms per decoding step, {:.1} tokens/s decoding (the tokens after the first over the time after the prefill); {stopped_early} of {} sequences stopped before {} tokens",
            tokens as f64 / seconds,
            prefill * 1000.0 / batches as f64,
            tokens.saturating_sub(requests.len()) as f64 / (seconds - prefill).max(1e-9),
            requests.len(),
            args.tokens
        );
        // The KV cache the prover allocates for the first batch (longest prompt + new tokens),
        // against one sized to the model's whole context.
        let longest = requests[..batch]
            .iter()
            .map(|r| prover.prompt_ids(r.role, &r.question).map(|p| p.len()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .max()
            .unwrap_or(0);
        let per_position = (2 * spec.num_layers * spec.kv_heads * spec.head_dim * 4 * batch) as f64;
        println!(
            "           KV cache {:.1} MiB for {} positions (sized to max_position_embeddings {}: {:.1} GiB)",
            per_position * (longest + args.tokens) as f64 / (1024.0 * 1024.0),
            longest + args.tokens,
            spec.max_positions,
            per_position * spec.max_positions as f64 / (1024.0 * 1024.0 * 1024.0)
        );
    }
    if args.no_job {
        if let Some(peak) = peak_rss_mib() {
            println!("peak resident memory: {peak:.0} MiB");
        }
        return Ok(());
    }
    // The generation job's workload: sampling at the default settings, each sequence stopping
    // at its final-answer line, both roles, in batches of `--job-batch`.
    let requests: Vec<SampleRequest> = problems
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            [ProverRole::Helpful, ProverRole::Sneaky]
                .into_iter()
                .map(move |role| SampleRequest {
                    question: p.question.clone(),
                    role,
                    seed: i as u64,
                })
        })
        .collect();
    let started = Instant::now();
    let mut tokens = 0;
    for batch in requests.chunks(args.job_batch) {
        tokens += prover
            .generate(batch, &SamplingParams::default(), &stop)?
            .iter()
            .map(|s| s.tokens)
            .sum::<usize>();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "generation job workload: {} solutions ({tokens} tokens) in {seconds:.2}s = {:.1} solutions/s, {:.0} tokens/s (batches of {})",
        requests.len(),
        requests.len() as f64 / seconds,
        tokens as f64 / seconds,
        args.job_batch
    );
    if let Some(peak) = peak_rss_mib() {
        println!("peak resident memory: {peak:.0} MiB");
    }
    Ok(())
}

/// The configs of the real models whose shapes `--shape` measures (as published on the Hub).
fn shape_config(shape: &str) -> serde_json::Value {
    match shape {
        "qwen2.5-0.5b" => serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
            "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": 32768,
            "max_window_layers": 21, "bos_token_id": 151643, "eos_token_id": 151643
        }),
        _ => serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
            "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "tie_word_embeddings": true,
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]
        }),
    }
}

/// A prover of `shape` with random weights (candle's initialisation, in memory) and the
/// tokenizer and prompts of the checkpoint at `tokenizer_dir`.
fn random_prover(
    shape: &str,
    tokenizer_dir: &std::path::Path,
    quantize: Option<candle_core::quantized::GgmlDType>,
) -> anyhow::Result<Prover> {
    use legibility::ml::config::ModelConfig;
    let config = ModelConfig::from_json(&serde_json::to_vec(&shape_config(shape))?)
        .map_err(anyhow::Error::msg)?;
    let spec = config
        .decoder_spec()
        .ok_or_else(|| anyhow::anyhow!("not a decoder"))?
        .map_err(anyhow::Error::msg)?;
    // Plain tensors, not a VarMap's variables: candle keeps the inputs of every operation on a
    // variable alive for backpropagation, which made a batch's prefill hold all its layers'
    // activations (~200 MiB per sequence at this size) and overstated peak memory.
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in spec.expected_tensors(true) {
        let tensor = if name.contains("norm") {
            candle_core::Tensor::ones(shape, candle_core::DType::F32, &Device::Cpu)?
        } else if name.ends_with(".bias") {
            candle_core::Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu)?
        } else {
            candle_core::Tensor::randn(0f32, 0.02, shape, &Device::Cpu)?
        };
        tensors.insert(name, tensor);
    }
    let model = match quantize {
        Some(dtype) => {
            let path =
                std::env::temp_dir().join(format!("bench-prover-{}.gguf", std::process::id()));
            let written = legibility::ml::gguf::write_quantized(
                &spec,
                |n| Ok(tensors[n].clone()),
                dtype,
                &path,
            );
            drop(tensors);
            let model = written.map_err(anyhow::Error::from).and_then(|()| {
                let file = legibility::ml::gguf::GgufFile::open(&path)?;
                println!("quantized: {:?}", file.tensor_types());
                Ok(legibility::ml::decoder::Decoder::from_gguf(&spec, &file)?)
            });
            let _ = std::fs::remove_file(&path);
            model?
        }
        None => {
            let vb =
                candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
            legibility::ml::decoder::Decoder::new(&spec, vb)?
        }
    };
    let tokenizer = legibility::ml::tokenizer::from_json_bytes(&std::fs::read(
        tokenizer_dir.join("tokenizer.json"),
    )?)
    .map_err(anyhow::Error::msg)?;
    Ok(Prover::from_parts(
        model,
        config,
        tokenizer,
        legibility::ml::prompt::PromptTemplate::default(),
    )?)
}
