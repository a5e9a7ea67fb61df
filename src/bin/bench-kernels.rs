//! Benchmark: the decoding step's batched matrix product (`legibility-kernels`) beside candle's
//! matmul of the same shapes, in one run.
//!
//! `cargo run --release --bin bench-kernels -- [--width 768] [--batches 1,4,8,16] [--threads 1]`
//!
//! For each batch size it times `x (batch × width) · Wᵀ` on a weight matrix that fits in cache
//! (2,304 rows: one 110m-shape layer's q, k and v) and on one that must stream from memory
//! (144,000 rows, 442 MB at width 768), and prints GFLOPS and the weights' GB/s for both.

use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Width of the rows (the model's hidden size).
    #[arg(long, default_value_t = 768)]
    width: usize,
    /// Batch sizes (rows of x).
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
    batches: Vec<usize>,
    /// Threads of the rayon pool both run on.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.max(1))
        .build_global()?;
    let k = args.width;
    println!("width {k}, {} threads", rayon::current_num_threads());
    for (label, rows, budget) in [("in cache", 2_304usize, 2e9), ("from memory", 144_000, 3e9)] {
        let w = Tensor::randn(0f32, 1.0, (rows, k), &Device::Cpu)?;
        let weights: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let wt = w.t()?;
        for &n in &args.batches {
            let x = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
            let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let mut out = vec![0f32; n * rows];
            let mut scratch = Vec::new();
            // Repeat until about `budget` multiply-adds, at least three times.
            let reps = ((budget / (n * k * rows) as f64) as usize).max(3);
            let run = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
                f()?;
                let started = Instant::now();
                for _ in 0..reps {
                    f()?;
                }
                Ok(started.elapsed().as_secs_f64())
            };
            let ours = run(&mut || {
                legibility_kernels::matmul_t(&xs, n, k, &[&weights], &mut out, &mut scratch);
                Ok(())
            })?;
            let candle = run(&mut || {
                x.matmul(&wt)?;
                Ok(())
            })?;
            let flops = 2.0 * (n * k * rows * reps) as f64;
            let bytes = (k * rows * 4 * reps) as f64;
            println!(
                "{label:>11}, batch {n:>2}: kernels {:>5.1} GFLOPS ({:>5.1} GB/s of weights), candle {:>5.1} GFLOPS ({:>5.1} GB/s)",
                flops / ours / 1e9,
                bytes / ours / 1e9,
                flops / candle / 1e9,
                bytes / candle / 1e9
            );
        }
    }
    Ok(())
}
