//! Benchmark: raters judging concurrently over real HTTP on loopback.
//!
//! `cargo run --release --bin bench-judging -- [--database-url URL] [--raters 64] [--judgements 20000]`
//!
//! Builds a synthetic study on a fresh database (a temp SQLite file by default), serves the real
//! router on 127.0.0.1, and runs N raters, each looping "GET /api/rater/item → POST
//! /api/rater/judgements" until the wanted number of judgements is acknowledged. Prints
//! throughput and latency percentiles of both calls, then audits the database: acknowledged ==
//! stored, no duplicates, no solution over its quota. Every judgement is committed (WAL on
//! SQLite, fsync'd commit on PostgreSQL) before it is acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use legibility::clock::Clock;
use legibility::problems;
use legibility::store::Store;
use legibility::store::studies::StudySpec;
use legibility::web::{self, AppState, WebConfig};

#[derive(Debug, Parser)]
struct Args {
    /// Database to benchmark; default: a fresh SQLite file in a temp directory.
    #[arg(long)]
    database_url: Option<String>,
    /// Concurrent raters.
    #[arg(long, default_value_t = 64)]
    raters: usize,
    /// Judgements to collect in total.
    #[arg(long, default_value_t = 20_000)]
    judgements: i64,
    /// Share of items that are silent gold items (0 = the plain study); exercises the rater
    /// protocol's serving path.
    #[arg(long, default_value_t = 0.0)]
    gold_rate: f64,
}

/// Gold items in the pool when `--gold-rate` is above 0 (extra problems outside the study).
const GOLD_ITEMS: usize = 50;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<22} n={:<7} p50={:>6.2} ms  p95={:>6.2} ms  p99={:>6.2} ms  max={:>7.2} ms",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.95),
        percentile(&samples, 0.99),
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
}

/// Synthetic problems with one helpful and one sneaky solution each.
fn study_files(problems_n: usize) -> (String, String) {
    let mut problem_lines = Vec::with_capacity(problems_n);
    let mut solution_lines = Vec::with_capacity(problems_n * 2);
    for i in 0..problems_n {
        let question =
            format!("Bench problem {i}: Ann has {i} apples and buys 3 more. How many apples?");
        problem_lines.push(serde_json::json!({"question": question, "answer": format!("{i}+3={}\n#### {}", i + 3, i + 3)}).to_string());
        for (role, answer) in [("helpful", i + 3), ("sneaky", i + 4)] {
            solution_lines.push(
                serde_json::json!({"question": question, "checkpoint": "bench-prover", "round": 0, "role": role,
                                   "solution": format!("{i} + 3 = {answer}\n#### {answer}")})
                .to_string(),
            );
        }
    }
    (problem_lines.join("\n"), solution_lines.join("\n"))
}

async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: axum::http::Request<Full<Bytes>>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    legibility::cli::init_tracing();
    let temp = tempfile_dir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", temp.display()));
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let clock = Clock::default();
    let per_solution = 5i64;
    let problems_n =
        ((args.judgements as usize).div_ceil(2 * per_solution as usize)).max(args.raters) + 1;
    let gold_items = if args.gold_rate > 0.0 { GOLD_ITEMS } else { 0 };
    let (problem_file, solution_file) = study_files(problems_n + gold_items);
    let set = format!("bench-{}", uuid::Uuid::new_v4().simple());
    store
        .import_problems(
            &set,
            &problems::parse_gsm8k_problems(problem_file.as_bytes())?,
            clock.now_ms(),
        )
        .await?;
    store
        .import_solutions(
            Some(&set),
            &problems::parse_solutions(solution_file.as_bytes())?,
            clock.now_ms(),
        )
        .await?;
    let set_id = store
        .problem_sets()
        .await?
        .into_iter()
        .find(|s| s.name == set)
        .context("set")?
        .id;
    let study = store
        .create_study(
            &StudySpec {
                name: set.clone(),
                time_limit_ms: 45_000,
                judgements_per_solution: per_solution,
                reclaim_grace_ms: 15_000,
                problem_set_id: set_id,
                checkpoint_ids: vec![],
                roles: vec![],
                max_problems: Some(problems_n),
                protocol: legibility::quality::RaterProtocol {
                    gold_items: gold_items as i64,
                    gold_rate: args.gold_rate,
                    ..Default::default()
                },
            },
            None,
            clock.now_ms(),
        )
        .await?;
    let names: Vec<String> = (0..args.raters)
        .map(|i| format!("bench rater {i}"))
        .collect();
    let tokens: Vec<String> = store
        .invite_raters(study.id, &names, clock.now_ms())
        .await?
        .into_iter()
        .map(|i| i.token)
        .collect();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let state = AppState {
        store: store.clone(),
        clock,
        config: Arc::new(WebConfig::default()),
    };
    tokio::spawn(async move { axum::serve(listener, web::router(state)).await });

    println!(
        "bench-judging: {:?}, {} raters, {} judgements wanted ({} solutions × {per_solution}), server on {address}",
        store.backend(),
        args.raters,
        args.judgements,
        problems_n * 2
    );
    let remaining = Arc::new(AtomicI64::new(args.judgements));
    let acknowledged = Arc::new(AtomicI64::new(0));
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens {
        let (client, remaining, acknowledged) =
            (client.clone(), remaining.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let mut serve_times = Vec::new();
            let mut submit_times = Vec::new();
            // (all non-200 answers, of which 5xx)
            let mut errors = (0u64, 0u64);
            while remaining.fetch_sub(1, Ordering::Relaxed) > 0 {
                let t = Instant::now();
                let request = axum::http::Request::get(format!("http://{address}/api/rater/item"))
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::new(Bytes::new()))?;
                let (status, item) = call(&client, request).await?;
                serve_times.push(t.elapsed());
                if status != 200 || item["status"] != "item" {
                    errors.0 += u64::from(status != 200);
                    errors.1 += u64::from(status >= 500);
                    break;
                }
                let body = serde_json::json!({"assignment_id": item["assignment_id"], "verdict": "correct", "client_elapsed_ms": 1000});
                let t = Instant::now();
                let request = axum::http::Request::post(format!("http://{address}/api/rater/judgements"))
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))?;
                let (status, _) = call(&client, request).await?;
                submit_times.push(t.elapsed());
                if status == 200 {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.0 += 1;
                    errors.1 += u64::from(status >= 500);
                }
            }
            anyhow::Ok((serve_times, submit_times, errors))
        }));
    }
    let (mut serve_all, mut submit_all, mut errors, mut server_errors) =
        (Vec::new(), Vec::new(), 0, 0);
    for task in tasks {
        let (serve, submit, (e, e5xx)) = task.await??;
        serve_all.extend(serve);
        submit_all.extend(submit);
        errors += e;
        server_errors += e5xx;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    println!("elapsed                {elapsed:.2} s");
    println!(
        "judgements/s           {:.0} (acknowledged {acknowledged}, errors {errors}, of which 5xx {server_errors})",
        acknowledged as f64 / elapsed
    );
    println!(
        "rater loops/s          {:.0} (one serve + one judgement each)",
        submit_all.len() as f64 / elapsed
    );
    report("GET  /api/rater/item", serve_all);
    report("POST /api/rater/judgements", submit_all);

    let progress = store.study_progress(study.id).await?;
    let gold_answers: i64 = store
        .study_rater_quality(study.id)
        .await?
        .values()
        .map(|q| q.gold.answered)
        .sum();
    println!(
        "audit: stored {} judgements + {gold_answers} gold answers, acknowledged {acknowledged}, in progress {}, wanted {}",
        progress.judged, progress.in_progress, progress.wanted
    );
    let audit = store.audit_judging(study.id).await?;
    println!(
        "audit: lost {}, duplicated {}, over-assigned solutions {}, repeated problems {}, 5xx {server_errors}",
        acknowledged - progress.judged - gold_answers,
        audit.duplicated,
        audit.over_assigned,
        audit.repeated_problems
    );
    if progress.judged + gold_answers != acknowledged || !audit.is_clean() || server_errors > 0 {
        bail!(
            "audit failed: {} stored + {gold_answers} gold vs {acknowledged} acknowledged; {audit:?}; {server_errors} 5xx",
            progress.judged
        );
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&temp);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "legibility-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
