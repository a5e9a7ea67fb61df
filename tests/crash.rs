//! Durability across a crash: the real `legibility serve` binary is killed with SIGKILL while
//! raters judge over HTTP. After a restart every acknowledged judgement is stored exactly once,
//! the slot counters agree with the assignments, and the study still completes with exactly
//! the wanted number of judgements per solution.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::{Backend, TestApp};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use uuid::Uuid;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The server as a child process, killed (SIGKILL) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_server(url: &str, address: &str) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_legibility"))
        .args(["serve", "--bind", address])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start legibility serve");
    let server = Server(child);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    loop {
        let request = axum::http::Request::get(format!("http://{address}/healthz"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Ok(response) = client.request(request).await
            && response.status() == 200
        {
            return server;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(
    client: &HttpClient,
    request: axum::http::Request<Full<Bytes>>,
) -> Result<(u16, serde_json::Value), String> {
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

/// One rater judging until the study has nothing left for them or the server goes away.
/// Returns whether they finished; pushes every acknowledged assignment id.
async fn rater_loop(address: String, token: String, acknowledged: Arc<Mutex<Vec<Uuid>>>) -> bool {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let request = axum::http::Request::get(format!("http://{address}/api/rater/item"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let Ok((200, item)) = call(&client, request).await else {
            return false;
        };
        if item["status"] != "item" {
            return item["status"] == "finished";
        }
        let id: Uuid = item["assignment_id"].as_str().unwrap().parse().unwrap();
        let body = serde_json::json!({"assignment_id": id, "verdict": "wrong"}).to_string();
        let request = axum::http::Request::post(format!("http://{address}/api/rater/judgements"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        match call(&client, request).await {
            Ok((200, _)) => acknowledged.lock().unwrap().push(id),
            _ => return false,
        }
    }
}

async fn acknowledged_judgements_survive_kill_9(backend: Backend) {
    let app = TestApp::start(backend).await;
    // 30 problems × 1 checkpoint × 2 roles, 2 judgements each: 120 wanted.
    let fixture = app.fixture(30, 1, 2, 45_000).await;
    let tokens = app.invite(fixture.study_id, 8).await;
    let address = format!("127.0.0.1:{}", common::free_port());
    let acknowledged = Arc::new(Mutex::new(Vec::new()));

    let server = start_server(&app.db.url, &address).await;
    let raters: Vec<_> = tokens
        .iter()
        .map(|t| tokio::spawn(rater_loop(address.clone(), t.clone(), acknowledged.clone())))
        .collect();
    // Kill the server in the middle of the work.
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 40 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "raters made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(server);
    for rater in raters {
        assert!(!rater.await.unwrap(), "a rater finished before the crash");
    }
    let before_restart: HashSet<Uuid> = acknowledged.lock().unwrap().iter().copied().collect();
    assert!(before_restart.len() >= 40);

    // Restart; every acknowledged judgement is there exactly once, the counters agree.
    let server = start_server(&app.db.url, &address).await;
    let stored: Vec<(Uuid,)> = with_raw_pool!(app.db.url, pool => sqlx::query_as("SELECT assignment_id FROM judgements").fetch_all(&pool).await.unwrap());
    let stored: Vec<Uuid> = stored.into_iter().map(|(id,)| id).collect();
    let stored_set: HashSet<Uuid> = stored.iter().copied().collect();
    assert_eq!(
        stored.len(),
        stored_set.len(),
        "a judgement was stored twice"
    );
    let lost: Vec<_> = before_restart.difference(&stored_set).collect();
    assert!(
        lost.is_empty(),
        "acknowledged judgements lost in the crash: {lost:?}"
    );
    let mismatched: Vec<(Uuid, i64, i64)> = with_raw_pool!(app.db.url, pool => sqlx::query_as(
        "SELECT ss.solution_id, ss.slots_taken,
                (SELECT COUNT(*) FROM assignments a WHERE a.study_id = ss.study_id AND a.solution_id = ss.solution_id
                   AND a.state <> 'abandoned')
         FROM study_solutions ss WHERE ss.study_id = $1")
        .bind(fixture.study_id).fetch_all(&pool).await.unwrap());
    for (solution, slots, live) in mismatched {
        assert_eq!(
            slots, live,
            "slot counter of {solution} disagrees with its assignments"
        );
    }

    // The raters resume and the study completes exactly.
    let raters: Vec<_> = tokens
        .iter()
        .map(|t| tokio::spawn(rater_loop(address.clone(), t.clone(), acknowledged.clone())))
        .collect();
    for rater in raters {
        assert!(
            rater.await.unwrap(),
            "a rater could not finish after the restart"
        );
    }
    drop(server);
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (progress.judged, progress.wanted, progress.in_progress),
        (120, 120, 0),
        "{progress:?}"
    );
}
on_both_backends!(acknowledged_judgements_survive_kill_9);

/// Graceful shutdown: SIGTERM while a judgement's body is still arriving. The server answers
/// that request, stores the judgement, takes no new connections and exits cleanly.
async fn sigterm_finishes_the_request_in_flight(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let token = app.invite(fixture.study_id, 1).await.remove(0);
    let address = format!("127.0.0.1:{}", common::free_port());
    let mut server = start_server(&app.db.url, &address).await;

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let request = axum::http::Request::get(format!("http://{address}/api/rater/item"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, item) = call(&client, request).await.unwrap();
    assert_eq!((status, item["status"].as_str()), (200, Some("item")));
    let assignment: Uuid = item["assignment_id"].as_str().unwrap().parse().unwrap();

    // Headers and half the body, then SIGTERM, then the rest.
    let body = serde_json::json!({"assignment_id": assignment, "verdict": "correct"}).to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/rater/judgements HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();
    // Time for the server to accept the connection and read the headers, even on a busy CI
    // machine: SIGTERM must find the request in flight, not an unaccepted connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::terminate(&server.0);
    // The listener closes: a new connection is refused while the old one is still served.
    let started = Instant::now();
    while tokio::net::TcpStream::connect(&address).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server still accepts connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server exited with a request in flight"
    );
    stream.write_all(rest).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("no answer to the request in flight")
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the request in flight was not answered: {response}"
    );

    let exit = common::wait_for_exit(&mut server.0, Duration::from_secs(20)).await;
    assert!(exit.success(), "exit after SIGTERM: {exit}");
    let stored: Vec<(Uuid, String)> = with_raw_pool!(app.db.url, pool => sqlx::query_as(
        "SELECT assignment_id, verdict FROM judgements").fetch_all(&pool).await.unwrap());
    assert_eq!(stored, vec![(assignment, "correct".to_string())]);
}
on_both_backends!(sigterm_finishes_the_request_in_flight);
