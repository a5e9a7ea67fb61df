//! Scale-out on one PostgreSQL: two `legibility serve` processes and two `legibility worker`
//! processes, started together on a fresh database. Staff sessions and rater items work across
//! the servers (no state lives in a process), raters judging through both at once fill the
//! study exactly, and each job is taken by exactly one worker.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::{Backend, TestApp};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use legibility::domain::{JobState, UserRole};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn models_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/models").to_string()
}

fn spawn(args: &[&str], url: &str) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_legibility"))
            .args(args)
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start legibility"),
    )
}

async fn request(
    client: &HttpClient,
    method: &str,
    url: String,
    headers: &[(&str, String)],
    body: String,
) -> (u16, axum::http::HeaderMap, String) {
    let mut builder = axum::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let response = client
        .request(builder.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// `GET /api/rater/item` on one server.
async fn next_item(
    client: &HttpClient,
    address: &str,
    auth: &[(&str, String)],
) -> serde_json::Value {
    let (status, _, body) = request(
        client,
        "GET",
        format!("http://{address}/api/rater/item"),
        auth,
        String::new(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn wait_healthy(client: &HttpClient, address: &str, server: &mut Process) {
    let started = Instant::now();
    loop {
        let probe = axum::http::Request::get(format!("http://{address}/healthz"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Ok(response) = client.request(probe).await
            && response.status() == 200
        {
            return;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("the server at {address} exited at start-up: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{address} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_and_two_workers_share_one_postgres() {
    let app = TestApp::start(Backend::Postgres).await;
    let url = app.db.url.clone();
    let hash = legibility::auth::hash_password("operator password").unwrap();
    app.store()
        .create_user("ops", &hash, UserRole::Admin, app.now())
        .await
        .unwrap();
    let fixture = app.fixture(20, 1, 2, 45_000).await;
    let tokens = app.invite(fixture.study_id, 6).await;

    // Both servers start at once on the same database (first-start work races).
    let addresses = [
        format!("127.0.0.1:{}", common::free_port()),
        format!("127.0.0.1:{}", common::free_port()),
    ];
    let models = models_dir();
    let mut servers: Vec<Process> = addresses
        .iter()
        .map(|a| {
            spawn(
                &["serve", "--no-worker", "--bind", a, "--models-dir", &models],
                &url,
            )
        })
        .collect();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for (address, server) in addresses.iter().zip(servers.iter_mut()) {
        wait_healthy(&client, address, server).await;
    }
    let shipped: Vec<String> = app
        .store()
        .checkpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.label)
        .collect();
    let distinct: HashSet<&String> = shipped.iter().collect();
    assert_eq!(
        distinct.len(),
        shipped.len(),
        "a shipped model was registered twice"
    );

    // A staff session made on one server works on the other.
    let (status, headers, _) = request(
        &client,
        "POST",
        format!("http://{}/login", addresses[0]),
        &[(
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        )],
        "username=ops&password=operator+password".into(),
    )
    .await;
    assert_eq!(status, 303);
    let cookie = headers[axum::http::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, _, page) = request(
        &client,
        "GET",
        format!("http://{}/studies/{}", addresses[1], fixture.study_id),
        &[("cookie", cookie.clone())],
        String::new(),
    )
    .await;
    assert_eq!(status, 200, "the session did not work on the other server");
    assert!(page.contains(&format!("study-{}", fixture.problem_set)));

    // Raters alternate between the servers on every request; the study fills exactly.
    let mut raters = Vec::new();
    for (r, token) in tokens.iter().enumerate() {
        let (client, addresses, token) = (client.clone(), addresses.clone(), token.clone());
        raters.push(tokio::spawn(async move {
            let auth = [("authorization", format!("Bearer {token}"))];
            let mut turn = r;
            let mut judged = 0;
            loop {
                turn += 1;
                let item = next_item(&client, &addresses[turn % 2], &auth).await;
                if item["status"] != "item" {
                    assert_eq!(item["status"], "finished");
                    return judged;
                }
                // The same item, with the same deadline, from the other server.
                turn += 1;
                let again = next_item(&client, &addresses[turn % 2], &auth).await;
                assert_eq!(again["assignment_id"], item["assignment_id"]);
                turn += 1;
                let body = serde_json::json!({"assignment_id": item["assignment_id"], "verdict": "correct"});
                let (status, _, answer) = request(
                    &client,
                    "POST",
                    format!("http://{}/api/rater/judgements", addresses[turn % 2]),
                    &[
                        ("authorization", format!("Bearer {token}")),
                        ("content-type", "application/json".to_string()),
                    ],
                    body.to_string(),
                )
                .await;
                assert_eq!(status, 200, "{answer}");
                judged += 1;
            }
        }));
    }
    let mut judged = 0;
    for rater in raters {
        judged += rater.await.unwrap();
    }
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (judged, progress.judged),
        (progress.wanted, progress.wanted)
    );
    let audit = app.store().audit_judging(fixture.study_id).await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");

    // Two workers, several scoring jobs (with the shipped verifier the servers registered):
    // every job succeeds, each taken once.
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(
            app.store()
                .enqueue_verifier_scoring(fixture.study_id, None, None, app.now())
                .await
                .unwrap(),
        );
    }
    let _workers: Vec<Process> = ["worker-a", "worker-b"]
        .iter()
        .map(|id| {
            spawn(
                &["worker", "--worker-id", id, "--models-dir", &models],
                &url,
            )
        })
        .collect();
    let started = Instant::now();
    loop {
        let mut done = 0;
        for job in &jobs {
            let view = app.store().job(*job).await.unwrap();
            assert!(
                !matches!(view.state, JobState::Failed | JobState::Cancelled),
                "{view:?}"
            );
            done += usize::from(view.state == JobState::Succeeded);
        }
        if done == jobs.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the workers did not finish the jobs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut owners = HashSet::new();
    for job in &jobs {
        let view = app.store().job(*job).await.unwrap();
        assert_eq!(
            view.attempts, 1,
            "job {job} was taken more than once: {view:?}"
        );
        owners.extend(view.lease_owner);
    }
    assert!(
        owners.iter().all(|o| o == "worker-a" || o == "worker-b"),
        "{owners:?}"
    );
    servers.clear();
}
