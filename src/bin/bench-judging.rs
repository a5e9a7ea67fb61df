//! Benchmark: raters judging concurrently over real HTTP on loopback.
//!
//! `cargo run --release --bin bench-judging -- [--database-url URL] [--raters 64] [--judgements 20000]`
//! `cargo run --release --bin bench-judging -- --raters 2000 --think-ms 10000-45000 [--duration-s 120]`
//!
//! Builds a synthetic study on a fresh database (a temp SQLite file by default), serves the real
//! router on 127.0.0.1, and runs N raters, each looping "GET /api/rater/item → POST
//! /api/rater/judgements". Closed loop (the default): no pause between calls, until the wanted
//! number of judgements is acknowledged: the peak throughput, with latency that is mostly
//! queueing. With `--think-ms MIN-MAX` each rater reads the item for a random time in that range
//! before answering, as people do, for `--duration-s`: arrivals no longer wait on the server
//! (think time ≫ latency), so the latencies are those of a real study's load (2,000 raters
//! thinking 10–45 s send ≈ 70 judgements/s). Prints throughput and latency percentiles of both
//! calls, then audits the database: acknowledged == stored, no duplicates, no solution over its
//! quota. Every judgement is committed (WAL on SQLite, fsync'd commit on PostgreSQL) before it
//! is acknowledged.

mod load;

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
    /// Think time before each answer, `MIN-MAX` in milliseconds (uniform); without it the
    /// raters loop with no pause (closed loop).
    #[arg(long, value_parser = parse_think)]
    think_ms: Option<(u64, u64)>,
    /// With `--think-ms`: how long raters keep taking new items (the items they hold at the
    /// end are still answered).
    #[arg(long, default_value_t = 120)]
    duration_s: u64,
}

fn parse_think(text: &str) -> Result<(u64, u64), String> {
    let (min, max) = text
        .split_once('-')
        .ok_or_else(|| format!("\"{text}\" is not MIN-MAX, such as 10000-45000"))?;
    let min: u64 = min.trim().parse().map_err(|e| format!("MIN: {e}"))?;
    let max: u64 = max.trim().parse().map_err(|e| format!("MAX: {e}"))?;
    if min > max || max >= THINK_TIME_LIMIT_MS as u64 {
        return Err(format!(
            "MIN ≤ MAX < {THINK_TIME_LIMIT_MS} (the study's time limit in this mode)"
        ));
    }
    Ok((min, max))
}

/// The machine's 1-minute load average, for the printout (other work skews every figure).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The study's time limit with `--think-ms`: above the longest think, so every answer is in
/// time (a closed-loop run uses the paper's 45 s; nobody thinks there).
const THINK_TIME_LIMIT_MS: i64 = 60_000;

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
    // In think-time mode the study must outlast the run: at most one item per rater per
    // shortest think, plus the one each rater holds at the end.
    let wanted = match args.think_ms {
        Some((min, _)) => {
            let per_rater = args.duration_s * 1000 / min.max(1) + 2;
            (args.raters as u64 * per_rater) as i64
        }
        None => args.judgements,
    };
    let problems_n = ((wanted as usize).div_ceil(2 * per_solution as usize)).max(args.raters) + 1;
    let gold_items = if args.gold_rate > 0.0 { GOLD_ITEMS } else { 0 };
    let set_id =
        load::import_synthetic_set(&store, &clock, "bench", problems_n + gold_items).await?;
    let study = store
        .create_study(
            &StudySpec {
                name: format!("bench {set_id}"),
                time_limit_ms: if args.think_ms.is_some() {
                    THINK_TIME_LIMIT_MS
                } else {
                    45_000
                },
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
                answers: Default::default(),
                time_limits: Default::default(),
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

    match args.think_ms {
        Some((min, max)) => println!(
            "bench-judging: {:?}, {} raters thinking {min}–{max} ms before each answer, for {} s ({} solutions × {per_solution}), server on {address}, load average {}",
            store.backend(),
            args.raters,
            args.duration_s,
            problems_n * 2,
            load_average()
        ),
        None => println!(
            "bench-judging: {:?}, {} raters, {} judgements wanted ({} solutions × {per_solution}), server on {address}, load average {}",
            store.backend(),
            args.raters,
            args.judgements,
            problems_n * 2,
            load_average()
        ),
    }
    // Closed loop: a shared count of judgements still to take. Think-time mode: until the end.
    let remaining = Arc::new(AtomicI64::new(if args.think_ms.is_some() {
        i64::MAX
    } else {
        args.judgements
    }));
    let until = Instant::now() + Duration::from_secs(args.duration_s);
    let think = args.think_ms;
    let acknowledged = Arc::new(AtomicI64::new(0));
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (rater, token) in tokens.into_iter().enumerate() {
        let (client, remaining, acknowledged) =
            (client.clone(), remaining.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let mut serve_times = Vec::new();
            let mut submit_times = Vec::new();
            // (all non-200 answers, of which 5xx)
            let mut errors = (0u64, 0u64);
            let rater = rater as u64;
            let mut loops = 0u64;
            if let Some((_, max)) = think {
                // Raters arrive spread over one think time, not all at once.
                tokio::time::sleep(load::think_time(rater, u64::MAX, (0, max))).await;
            }
            while remaining.fetch_sub(1, Ordering::Relaxed) > 0
                && (think.is_none() || Instant::now() < until)
            {
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
                let mut client_elapsed_ms = 1000;
                if let Some(range) = think {
                    let pause = load::think_time(rater, loops, range);
                    client_elapsed_ms = pause.as_millis() as i64;
                    tokio::time::sleep(pause).await;
                }
                loops += 1;
                let body = serde_json::json!({"assignment_id": item["assignment_id"], "verdict": "correct", "client_elapsed_ms": client_elapsed_ms});
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
    println!(
        "elapsed                {elapsed:.2} s (load average now {})",
        load_average()
    );
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
