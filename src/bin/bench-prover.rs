//! Benchmark: decoding speed of a prover checkpoint on this machine.
//!
//! Prints single-stream tokens/s (one solution at a time, the latency case), batched tokens/s
//! at several batch sizes (the generation job's case), and the process's peak resident memory.
//! A command, not a test: tests assert behaviour, benchmarks measure.
//!
//! `cargo run --release --bin bench-prover -- [--model models/prover-tiny] [--tokens 128] [--threads 1]`

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
    /// Tokens generated per sequence (the final-answer stop is disabled by forcing the count).
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
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", args.threads.max(1).to_string()) };
    }
    let mut prover = Prover::load(&args.model, &Device::Cpu)?;
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
    // Greedy decoding at a fixed length: sampling choices do not change the work per token,
    // and a fixed count makes runs comparable.
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
        let sequences = batch.max(16).div_ceil(batch) * batch;
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
        let (mut tokens, mut steps) = (0, 0);
        for chunk in requests.chunks(batch) {
            let samples = prover.generate(chunk, &params, &stop)?;
            tokens += samples.iter().map(|s| s.tokens).sum::<usize>();
            steps += samples.iter().map(|s| s.tokens).max().unwrap_or(0);
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "batch {batch:>3}: {tokens:>6} tokens in {seconds:>6.2}s = {:>8.0} tokens/s ({:.2} ms per decoding step)",
            tokens as f64 / seconds,
            seconds * 1000.0 / steps.max(1) as f64
        );
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
