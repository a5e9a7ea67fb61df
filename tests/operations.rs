//! Operations: `/metrics` in the Prometheus text format, for admins or a scraper holding the
//! configured token, with per-route request counts and latencies and the database's
//! judgements, active items and jobs.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Backend, TestApp};
use legibility::domain::UserRole;
use legibility::web::{self, AppState, WebConfig};

/// The value of the first sample line starting with `prefix` (labels included).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_count_requests_judgements_and_jobs(backend: Backend) {
    let mut app = TestApp::start(backend).await;
    app.router = web::router(AppState {
        config: Arc::new(WebConfig {
            metrics_token: Some("scrape-secret".into()),
            ..WebConfig::default()
        }),
        ..app.state.clone()
    });
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    app.judge_all(&tokens, common::truthful).await;

    // Admins and the scraper's token get it; researchers, raters and strangers do not.
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    admin.get(&format!("/studies/{}", fixture.study_id)).await;
    let page = admin.get("/metrics").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let mut researcher = app.staff_client("rhea", UserRole::Researcher).await;
    assert_eq!(
        researcher.get("/metrics").await.status,
        StatusCode::FORBIDDEN
    );
    let mut rater = app.rater_client(&tokens[0]).await;
    assert_eq!(rater.get("/metrics").await.location(), Some("/login"));
    let with = |token: &str| {
        Request::get("/metrics")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    // A script with a wrong token gets 401 (with WWW-Authenticate), not the login page.
    let wrong = app.send(with("wrong")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    assert!(wrong.headers.contains_key(header::WWW_AUTHENTICATE));
    let scraped = app.send(with("scrape-secret")).await;
    assert_eq!(scraped.status, StatusCode::OK);
    let text = scraped.body;

    // The database's figures: this test's three judgements, all "correct" or "wrong".
    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    let correct = sample(&text, "legibility_judgements_total{verdict=\"correct\"}").unwrap_or(0.0);
    let wrong = sample(&text, "legibility_judgements_total{verdict=\"wrong\"}").unwrap_or(0.0);
    assert_eq!(
        (correct as i64, wrong as i64),
        (progress.correct_verdicts, progress.wrong_verdicts),
        "{text}"
    );
    assert_eq!(sample(&text, "legibility_active_items "), Some(0.0));
    assert!(text.contains("# TYPE legibility_jobs gauge"));

    // Requests per route template (never raw paths with ids), with a latency histogram whose
    // +Inf bucket equals its count. Counters are per process and other tests run alongside,
    // so they are at least this test's own requests.
    let item_requests: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("legibility_http_requests_total{method=\"GET\",route=\"/api/rater/item\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(item_requests >= 4.0, "{text}");
    assert!(text.contains("route=\"/studies/{id}\""), "{text}");
    assert!(
        !text.contains(&fixture.study_id.to_string()),
        "a raw path became a label"
    );
    let labels = "method=\"GET\",route=\"/api/rater/item\"";
    let infinite = sample(
        &text,
        &format!("legibility_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}}"),
    );
    let count = sample(
        &text,
        &format!("legibility_http_request_duration_seconds_count{{{labels}}}"),
    );
    assert!(infinite.is_some() && infinite == count, "{text}");
}
on_both_backends!(metrics_count_requests_judgements_and_jobs);

/// `LEGIBILITY_LOG_FORMAT=json`: the real server logs one JSON object per line.
#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/logs.db", dir.path().display());
    let address = format!("127.0.0.1:{}", common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_legibility"))
        .args(["serve", "--no-worker", "--bind", &address])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "info")
        .env(legibility::cli::LOG_FORMAT_ENV, "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start legibility serve");
    let stderr = child.stderr.take().unwrap();
    let (lines_out, lines_in) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_out.send(line).is_err() {
                break;
            }
        }
    });
    let mut events = Vec::new();
    while events.len() < 2 {
        match lines_in.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(line) => events.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!events.is_empty(), "the server logged nothing");
    for line in &events {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(event["timestamp"].is_string(), "{line}");
        assert!(event["level"].is_string(), "{line}");
        assert!(event["fields"].is_object(), "{line}");
    }
}

/// The API's properties allowed by a schema object (following one `$ref`).
fn properties<'a>(
    doc: &'a serde_json::Value,
    schema: &'a serde_json::Value,
) -> &'a serde_json::Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]["properties"]
        }
        None => &schema["properties"],
    }
}

/// Every key of `value` is documented in `props`, and every `required` one is present.
fn conforms(value: &serde_json::Value, schema: &serde_json::Value, props: &serde_json::Value) {
    let object = value.as_object().expect("a JSON object");
    for key in object.keys() {
        assert!(
            props.get(key).is_some(),
            "undocumented key {key:?} in {value}"
        );
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        let key = required.as_str().unwrap();
        assert!(
            object.contains_key(key),
            "{key:?} is required but missing in {value}"
        );
    }
}

/// `/api/openapi.json` lists every JSON API route with its methods, and what the server
/// answers has the documented shape.
async fn the_openapi_document_matches_the_api(backend: Backend) {
    let app = TestApp::start(backend).await;
    let served = app.client().get("/api/openapi.json").await;
    assert_eq!(served.status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&served.body).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let api_routes: Vec<(String, String)> = common::routes_in_source()
        .into_iter()
        .filter(|(_, path)| path.starts_with("/api/") || path == "/healthz")
        .collect();
    assert!(api_routes.len() >= 5, "{api_routes:?}");
    for (method, path) in &api_routes {
        assert!(
            doc["paths"][path][method.to_lowercase()].is_object(),
            "{method} {path} is not in static/openapi.json"
        );
    }

    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    let schemas = &doc["components"]["schemas"];
    let variant = |status: &str| -> serde_json::Value {
        schemas["ItemResponse"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["properties"]["status"]["const"] == status)
            .cloned()
            .unwrap_or_else(|| panic!("no documented item status {status}"))
    };
    let item = rater.get("/api/rater/item").await.json();
    let item_schema = variant("item");
    conforms(&item, &item_schema, &item_schema["properties"]);
    let judge = |verdict: &str| json_body(&item, verdict);
    let answer = rater
        .post_json("/api/rater/judgements", &judge("wrong"))
        .await
        .json();
    conforms(
        &answer,
        &schemas["JudgementResponse"],
        properties(&doc, &schemas["JudgementResponse"]),
    );
    let step = rater
        .post_json(
            "/api/rater/steps",
            &serde_json::json!({"assignment_id": item["assignment_id"], "step": 1}),
        )
        .await
        .json();
    conforms(
        &step,
        &schemas["StepResponse"],
        &schemas["StepResponse"]["properties"],
    );
    let again = rater
        .post_json(
            "/api/rater/steps",
            &serde_json::json!({"assignment_id": item["assignment_id"], "step": 1}),
        )
        .await;
    assert_eq!(again.status, StatusCode::GONE);
    conforms(
        &again.json(),
        &schemas["Error"],
        &schemas["Error"]["properties"],
    );
    let item = rater.get("/api/rater/item").await.json();
    rater
        .post_json("/api/rater/judgements", &json_body(&item, "correct"))
        .await;
    let finished = rater.get("/api/rater/item").await.json();
    let finished_schema = variant("finished");
    conforms(&finished, &finished_schema, &finished_schema["properties"]);
    let health = app.client().get("/healthz").await.json();
    conforms(
        &health,
        &schemas["Health"],
        &schemas["Health"]["properties"],
    );
}
on_both_backends!(the_openapi_document_matches_the_api);

fn json_body(item: &serde_json::Value, verdict: &str) -> serde_json::Value {
    serde_json::json!({"assignment_id": item["assignment_id"], "verdict": verdict, "client_elapsed_ms": 900})
}
