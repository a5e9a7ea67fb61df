//! Soak: many raters judge through the real `legibility serve` for a long while, with one kill -9
//! of the server in the middle.
//!
//! `cargo build --release --bin legibility --bin soak && target/release/soak [--database-url URL]
//! [--raters 1000] [--judgements-per-rater 50] [--think-ms 1000-3000]`
//!
//! Builds a study on a fresh database (a temp SQLite file by default), starts
//! `legibility serve --no-worker` as a child process, and runs the raters over HTTP on loopback:
//! each asks for an item, thinks, answers, until it has `--judgements-per-rater` acknowledged.
//! When half of all judgements are acknowledged the server is killed with SIGKILL and started
//! again at once; raters retry what failed. Every 2 s the server's resident memory is sampled.
//! At the end the database is audited against what was acknowledged: lost (acknowledged, not
//! stored), duplicated, and 5xx or refused connections outside the restart window (from the kill
//! until the new server answers, plus one second for requests in flight). It exits non-zero if
//! any of those is not 0.

mod load;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// Database; default: a fresh SQLite file in a temp directory.
    #[arg(long)]
    database_url: Option<String>,
    /// Simulated raters, all at once.
    #[arg(long, default_value_t = 1000)]
    raters: usize,
    /// Judgements each rater gives.
    #[arg(long, default_value_t = 50)]
    judgements_per_rater: usize,
    /// Think time before each answer, `MIN-MAX` in milliseconds (uniform).
    #[arg(long, default_value = "1000-3000", value_parser = parse_range)]
    think_ms: (u64, u64),
    /// The `legibility` binary to serve with (default: beside this one).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
    /// Do not kill the server (a baseline for the memory and error figures).
    #[arg(long)]
    no_kill: bool,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (min, max) = text
        .split_once('-')
        .ok_or_else(|| format!("\"{text}\" is not MIN-MAX"))?;
    let min: u64 = min.trim().parse().map_err(|e| format!("MIN: {e}"))?;
    let max: u64 = max.trim().parse().map_err(|e| format!("MAX: {e}"))?;
    if min > max || max >= TIME_LIMIT_MS as u64 / 2 {
        return Err(format!("MIN ≤ MAX < {} ms", TIME_LIMIT_MS / 2));
    }
    Ok((min, max))
}

const TIME_LIMIT_MS: i64 = 60_000;
const PER_SOLUTION: i64 = 5;

/// The server child process and its log.
struct Server {
    child: Child,
}

impl Server {
    fn start(
        bin: &std::path::Path,
        url: &str,
        port: u16,
        log: &std::path::Path,
    ) -> anyhow::Result<Server> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(bin)
            .args([
                "serve",
                "--no-worker",
                "--bind",
                &format!("127.0.0.1:{port}"),
            ])
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Server { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process in MiB (Linux), if it runs: (all, anonymous). The anonymous
/// part is the process's own heap; the rest is mostly SQLite's memory-mapped database file,
/// which grows with the database by design.
fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Seconds since the start, and the server's (all, anonymous) resident MiB then.
type MemorySample = (f64, (f64, f64));

async fn wait_healthy(client: &HttpClient, port: u16, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let request = axum::http::Request::get(format!("http://127.0.0.1:{port}/healthz"))
            .body(Full::new(Bytes::new()))?;
        if let Ok(response) = client.request(request).await
            && response.status() == 200
        {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("the server did not answer within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A failed call: when, and whether it was a 5xx (else the connection failed).
#[derive(Debug, Clone, Copy)]
struct Failure {
    at: Instant,
    server_error: bool,
}

async fn call(
    client: &HttpClient,
    request: axum::http::Request<Full<Bytes>>,
) -> Result<(u16, serde_json::Value), ()> {
    let response = client.request(request).await.map_err(|_| ())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|_| ())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server_bin = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no folder")?
            .join("legibility"),
    };
    let temp = std::env::temp_dir().join(format!("legibility-soak-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&temp)?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/soak.db", temp.display()));

    // The study: enough solutions that every rater gives all its judgements.
    let wanted = (args.raters * args.judgements_per_rater) as i64;
    let problems_n = (wanted as usize).div_ceil(2 * PER_SOLUTION as usize) + args.raters;
    let (study_id, tokens) = {
        let store = Store::connect(&url)
            .await
            .with_context(|| format!("opening {url}"))?;
        let clock = Clock::default();
        let set_id = load::import_synthetic_set(&store, &clock, "soak", problems_n).await?;
        let study = store
            .create_study(
                &StudySpec {
                    name: format!("soak {set_id}"),
                    time_limit_ms: TIME_LIMIT_MS,
                    judgements_per_solution: PER_SOLUTION,
                    reclaim_grace_ms: 15_000,
                    problem_set_id: set_id,
                    checkpoint_ids: vec![],
                    roles: vec![],
                    max_problems: Some(problems_n),
                    protocol: Default::default(),
                    answers: Default::default(),
                    time_limits: Default::default(),
                },
                None,
                clock.now_ms(),
            )
            .await?;
        let names: Vec<String> = (0..args.raters)
            .map(|i| format!("soak rater {i}"))
            .collect();
        let tokens: Vec<String> = store
            .invite_raters(study.id, &names, clock.now_ms())
            .await?
            .into_iter()
            .map(|i| i.token)
            .collect();
        store.close().await;
        (study.id, tokens)
    };

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let log = temp.join("server.log");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let server = Arc::new(Mutex::new(Server::start(&server_bin, &url, port, &log)?));
    wait_healthy(&client, port, Duration::from_secs(120)).await?;
    println!(
        "soak: {} raters × {} judgements (think {}–{} ms) on {}, server pid {}",
        args.raters,
        args.judgements_per_rater,
        args.think_ms.0,
        args.think_ms.1,
        if url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        server.lock().map(|s| s.pid()).unwrap_or(0)
    );

    let started = Instant::now();
    let acknowledged_count = Arc::new(AtomicI64::new(0));
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    let failures: Arc<Mutex<Vec<Failure>>> = Arc::default();
    let current_pid = Arc::new(AtomicU64::new(u64::from(
        server.lock().map(|s| s.pid()).unwrap_or(0),
    )));

    // Memory: one sample every 2 s, of whichever server runs.
    let samples: Arc<Mutex<Vec<MemorySample>>> = Arc::default();
    let sampler = {
        let (samples, pid) = (samples.clone(), current_pid.clone());
        tokio::spawn(async move {
            loop {
                if let Some(mib) = rss_mib(pid.load(Ordering::Relaxed) as u32)
                    && let Ok(mut samples) = samples.lock()
                {
                    samples.push((started.elapsed().as_secs_f64(), mib));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    let mut raters = Vec::new();
    for (index, token) in tokens.into_iter().enumerate() {
        let (client, acknowledged, count, failures) = (
            client.clone(),
            acknowledged.clone(),
            acknowledged_count.clone(),
            failures.clone(),
        );
        let (per_rater, think) = (args.judgements_per_rater, args.think_ms);
        raters.push(tokio::spawn(async move {
            let rater = index as u64;
            // Arrivals spread over one think time.
            tokio::time::sleep(load::think_time(rater, u64::MAX, (0, think.1))).await;
            let mut done = 0;
            let mut loops = 0;
            let fail = |server_error: bool| {
                if let Ok(mut f) = failures.lock() {
                    f.push(Failure {
                        at: Instant::now(),
                        server_error,
                    });
                }
            };
            while done < per_rater {
                let request =
                    axum::http::Request::get(format!("http://127.0.0.1:{port}/api/rater/item"))
                        .header("authorization", format!("Bearer {token}"))
                        .body(Full::new(Bytes::new()))
                        .expect("a request");
                let item = match call(&client, request).await {
                    Ok((200, item)) if item["status"] == "item" => item,
                    Ok((200, _)) => break,
                    Ok((status, _)) => {
                        fail(status >= 500);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(()) => {
                        fail(false);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                tokio::time::sleep(load::think_time(rater, loops, think)).await;
                loops += 1;
                let id = item["assignment_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let body = serde_json::json!({"assignment_id": id, "verdict": "correct"});
                let request = axum::http::Request::post(format!(
                    "http://127.0.0.1:{port}/api/rater/judgements"
                ))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("a request");
                match call(&client, request).await {
                    Ok((200, _)) => {
                        done += 1;
                        count.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut a) = acknowledged.lock() {
                            a.insert(id);
                        }
                    }
                    // A repeated answer after a lost acknowledgement, or an item whose time ran
                    // out while the server was down: the next item follows.
                    Ok((409 | 410, _)) => {}
                    Ok((status, _)) => fail(status >= 500),
                    Err(()) => fail(false),
                }
            }
            done
        }));
    }

    // The kill: at half of all judgements.
    let mut window = None;
    if !args.no_kill {
        while acknowledged_count.load(Ordering::Relaxed) < wanted / 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let killed_at = Instant::now();
        {
            let mut running = server.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            running.child.kill()?;
            running.child.wait()?;
            *running = Server::start(&server_bin, &url, port, &log)?;
            current_pid.store(u64::from(running.pid()), Ordering::Relaxed);
        }
        wait_healthy(&client, port, Duration::from_secs(120)).await?;
        let back = Instant::now();
        println!(
            "kill -9 at {:.1} s after {} acknowledged; answering again after {:.2} s",
            (killed_at - started).as_secs_f64(),
            acknowledged_count.load(Ordering::Relaxed),
            (back - killed_at).as_secs_f64()
        );
        window = Some((killed_at, back + Duration::from_secs(1)));
    }
    let mut given = 0;
    for rater in raters {
        given += rater.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    sampler.abort();
    drop(server);

    // Audit against the database.
    let store = Store::connect(&url).await?;
    let progress = store.study_progress(study_id).await?;
    let audit = store.audit_judging(study_id).await?;
    let stored: HashSet<String> = store
        .judged_assignment_ids(study_id)
        .await?
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    store.close().await;
    let acknowledged = acknowledged.lock().map(|a| a.clone()).unwrap_or_default();
    let lost = acknowledged.difference(&stored).count();
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    let inside = |f: &Failure| window.is_some_and(|(from, to)| f.at >= from && f.at <= to);
    let (in_window, outside): (Vec<Failure>, Vec<Failure>) =
        failures.iter().partition(|f| inside(f));
    let outside_5xx = outside.iter().filter(|f| f.server_error).count();
    let outside_refused = outside.len() - outside_5xx;
    println!(
        "{} judgements acknowledged in {elapsed:.0} s ({:.0}/s); stored {}, lost {lost}, duplicated {}, over-assigned {}",
        acknowledged.len(),
        acknowledged.len() as f64 / elapsed,
        progress.judged,
        audit.duplicated,
        audit.over_assigned
    );
    println!(
        "failed calls: {} in the restart window; outside it {outside_5xx} 5xx, {outside_refused} refused connections",
        in_window.len()
    );
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let line: Vec<String> = samples
        .iter()
        .step_by((samples.len() / 12).max(1))
        .map(|(t, (all, anon))| format!("{t:.0}s {all:.0}/{anon:.0}"))
        .collect();
    println!(
        "server RSS MiB over time (all/anonymous): {}",
        line.join(", ")
    );
    let anon: Vec<f64> = samples.iter().map(|s| s.1.1).collect();
    if let (Some(first), Some(max)) = (
        samples.iter().find(|(t, _)| *t >= 10.0),
        anon.iter().copied().reduce(f64::max),
    ) {
        println!(
            "server anonymous RSS: {:.0} MiB at 10 s, peak {max:.0} MiB, last {:.0} MiB",
            first.1.1,
            anon.last().copied().unwrap_or(0.0)
        );
    }
    if lost > 0 || audit.duplicated > 0 || outside_5xx > 0 || given < acknowledged.len() {
        bail!(
            "soak failed: lost {lost}, duplicated {}, 5xx outside the restart window {outside_5xx}",
            audit.duplicated
        );
    }
    let _ = std::fs::remove_dir_all(&temp);
    Ok(())
}
