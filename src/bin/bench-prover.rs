//! Benchmark: decoding speed of a prover checkpoint on this machine.
//!
//! Prints single-stream tokens/s (one solution at a time, the latency case), batched tokens/s
//! at several batch sizes (the generation job's case), and the process's peak resident memory.
//! A command, not a test: tests assert behaviour, benchmarks measure.
//!
//! `cargo run --release --bin bench-prover -- [--model models/prover-tiny] [--tokens 128]`

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
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut prover = Prover::load(&args.model, &Device::Cpu)?;
    let config = prover.config().clone();
    println!(
        "model {}: hidden {} x {} layers, vocab {}, {} threads",
        args.model.display(),
        config.hidden_size,
        config.num_hidden_layers,
        config.vocab_size,
        std::thread::available_parallelism().map_or(1, |n| n.get())
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
        let requests: Vec<SampleRequest> = (0..batch)
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
        let samples = prover.generate(&requests, &params, &stop)?;
        let seconds = started.elapsed().as_secs_f64();
        // Every sequence occupies its batch row for the whole run, so the work is the longest
        // sequence's steps times the batch; count only tokens actually kept.
        let tokens: usize = samples.iter().map(|s| s.tokens).sum();
        let steps = samples.iter().map(|s| s.tokens).max().unwrap_or(0);
        println!(
            "batch {batch:>3}: {tokens:>6} tokens in {seconds:>6.2}s = {:>8.0} tokens/s ({:.1} ms per step of {steps} steps)",
            tokens as f64 / seconds,
            seconds * 1000.0 / steps.max(1) as f64
        );
    }
    if let Some(peak) = peak_rss_mib() {
        println!("peak resident memory: {peak:.0} MiB");
    }
    Ok(())
}
