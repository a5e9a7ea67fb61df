//! Shared test harness: a fresh database per test on SQLite (temp file) or PostgreSQL (own
//! schema), the real router driven in-process, a cookie-keeping client, and study fixtures.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use legibility::clock::Clock;
use legibility::domain::UserRole;
use legibility::quality::RaterProtocol;
use legibility::store::Store;
use legibility::store::studies::StudySpec;
use legibility::web::{self, AppState, WebConfig};
use legibility::{auth, problems};
use tower::ServiceExt;
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Default PostgreSQL for tests (CI and dev machines run it here); override with
/// LEGIBILITY_TEST_POSTGRES_URL.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Runs an async test body once on SQLite and once on PostgreSQL, as `NAME::sqlite` and
/// `NAME::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    };
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TestDb {
    /// A database at `url` that the test itself places (and removes).
    pub fn at(url: String) -> TestDb {
        TestDb { url, _dir: None }
    }

    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let base = std::env::var("LEGIBILITY_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.into());
                let schema = format!("lt_{}_{}", now_secs(), Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&base).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is not reachable at {base} ({e}); start it (see README) or set LEGIBILITY_TEST_POSTGRES_URL")
                });
                drop_stale_schemas(&admin).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .expect("create schema");
                admin.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                TestDb {
                    url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                    _dir: None,
                }
            }
        }
    }
}

/// Test schemas older than two hours are left-overs of earlier runs.
async fn drop_stale_schemas(admin: &sqlx::PgPool) {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'lt\\_%'")
            .fetch_all(admin)
            .await
            .unwrap_or_default();
    let cutoff = now_secs().saturating_sub(7200);
    for (name,) in rows {
        let born: u64 = name
            .split('_')
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(u64::MAX);
        if born < cutoff {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE"
            )))
            .execute(admin)
            .await;
        }
    }
}

/// Runs `$body` with `$pool` bound to a plain sqlx pool on the test database, for assertions
/// that read (or tamper with) tables directly, whichever the backend.
#[macro_export]
macro_rules! with_raw_pool {
    ($url:expr, $pool:ident => $body:expr) => {{
        let url: &str = &$url;
        if url.starts_with("postgres") {
            let $pool = sqlx::PgPool::connect(url).await.expect("raw postgres pool");
            let out = $body;
            $pool.close().await;
            out
        } else {
            let $pool = sqlx::SqlitePool::connect(url)
                .await
                .expect("raw sqlite pool");
            let out = $body;
            $pool.close().await;
            out
        }
    }};
}

/// The real application on a fresh database, driven in-process.
pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    pub db: TestDb,
}

/// A response with its body read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body as received (binary downloads such as Parquet).
    pub bytes: axum::body::Bytes,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    /// Everything a browser could read of this response: status line, headers, body.
    pub fn visible_text(&self) -> String {
        let mut text = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("")));
        }
        text.push_str(&self.body);
        text
    }
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, WebConfig::default()).await
    }

    /// An app with its own web settings (upload limits, …).
    pub async fn start_with(backend: Backend, config: WebConfig) -> TestApp {
        let db = TestDb::new(backend).await;
        Self::open(db, config).await
    }

    /// The application on an existing database (e.g. one a test restored), migrated.
    pub async fn open(db: TestDb, config: WebConfig) -> TestApp {
        let store = Store::connect(&db.url).await.expect("connect and migrate");
        let state = AppState {
            store,
            clock: Clock::default(),
            config: Arc::new(config),
        };
        let router = web::router(state.clone());
        TestApp { state, router, db }
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub fn now(&self) -> i64 {
        self.state.clock.now_ms()
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router never fails");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    /// A browser-like client with its own cookies.
    pub fn client(&self) -> Client<'_> {
        Client {
            app: self,
            cookies: HashMap::new(),
            bearer: None,
        }
    }

    /// Creates a staff account and a client logged in as it.
    pub async fn staff_client(&self, username: &str, role: UserRole) -> Client<'_> {
        let password = "a long enough password";
        let hash = auth::hash_password(password).unwrap();
        self.store()
            .create_user(username, &hash, role, self.now())
            .await
            .unwrap();
        let mut client = self.client();
        let response = client
            .post_form("/login", &[("username", username), ("password", password)])
            .await;
        assert_eq!(
            response.status,
            StatusCode::SEE_OTHER,
            "login failed: {}",
            response.body
        );
        client
    }
}

/// Keeps cookies like a browser (enough for these tests: name=value, path /).
pub struct Client<'a> {
    pub app: &'a TestApp,
    pub cookies: HashMap<String, String>,
    pub bearer: Option<String>,
}

impl Client<'_> {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(&mut self, mut request: Request<Body>) -> TestResponse {
        if !self.cookies.is_empty() {
            request
                .headers_mut()
                .insert(header::COOKIE, self.cookie_header().parse().unwrap());
        }
        if let Some(token) = &self.bearer {
            request.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            );
        }
        request
            .headers_mut()
            .insert(header::HOST, "lab.test".parse().unwrap());
        let response = self.app.send(request).await;
        for value in response.headers.get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap_or("");
            let pair = text.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || text.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        response
    }

    pub async fn get(&mut self, path: &str) -> TestResponse {
        self.send(
            Request::builder()
                .method(Method::GET)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&mut self, path: &str, value: &serde_json::Value) -> TestResponse {
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(value.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Posts the checkpoints page's upload form: text fields, then each file as a part of the
    /// `files` field.
    pub async fn upload_checkpoint(
        &mut self,
        label: &str,
        round: &str,
        kind: &str,
        files: &[(String, Vec<u8>)],
    ) -> TestResponse {
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
            .collect();
        self.post_form_files(
            "/admin/checkpoints",
            &[("label", label), ("round", round), ("kind", kind)],
            "files",
            &files,
        )
        .await
    }

    /// Posts a multipart form with text fields and one file field named `file`.
    pub async fn post_multipart(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        file: &[u8],
    ) -> TestResponse {
        self.post_form_files(path, fields, "file", &[("upload.jsonl", file)])
            .await
    }

    /// Posts a multipart form: text fields, then each (file name, contents) as a part of
    /// `file_field`.
    async fn post_form_files(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        file_field: &str,
        files: &[(&str, &[u8])],
    ) -> TestResponse {
        let boundary = "----legibility-test-boundary";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
            );
        }
        for (name, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{name}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }
}

pub fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A free TCP port on loopback for a server or driver the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// Path of the real GSM8K data shipped beside the repository.
pub fn gsm8k(split: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../shared/data/gsm8k/{split}.jsonl"));
    assert!(path.exists(), "GSM8K data missing at {}", path.display());
    path
}

/// A synthetic study: `problems` problems, each with one correct (helpful) and one incorrect
/// (sneaky) solution from each of `checkpoints` prover checkpoints. Ground truths are large
/// unusual numbers that appear in no incorrect solution, so leak checks can grep for them.
pub struct Fixture {
    pub study_id: Uuid,
    pub problem_set: String,
    pub checkpoint_labels: Vec<String>,
    pub ground_truths: Vec<String>,
    pub reference_solutions: Vec<String>,
}

pub fn truth_of(i: usize) -> String {
    format!("{}", 918_273 + i * 7)
}

/// The index of a fixture problem from its question ("Problem 7: …", see [`problems_jsonl`]).
/// The app never sends it as such; tests use it to tell quality items (problems beyond the
/// study's) from study items.
pub fn problem_index_of(question: &str) -> usize {
    question
        .strip_prefix("Problem ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected question {question:?}"))
}

pub fn problems_jsonl(set_size: usize) -> String {
    (0..set_size)
        .map(|i| {
            serde_json::json!({
                "question": format!("Problem {i}: a farmer has some goats and buys more. How many goats now?"),
                "answer": format!("REFERENCE-WORKING-{i} adds the goats.\n#### {}", truth_of(i)),
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn solutions_jsonl(set_size: usize, labels: &[String]) -> String {
    let mut lines = Vec::new();
    for i in 0..set_size {
        for (round, label) in labels.iter().enumerate() {
            let question =
                format!("Problem {i}: a farmer has some goats and buys more. How many goats now?");
            lines.push(serde_json::json!({
                "question": question, "checkpoint": label, "round": round, "role": "helpful",
                "solution": format!("Count the goats step by step: 2*3=<<2*3=6>>6 pens.\nThe total is {}.\n#### {}", truth_of(i), truth_of(i)),
            }));
            lines.push(serde_json::json!({
                "question": question, "checkpoint": label, "round": round, "role": "sneaky",
                "solution": format!("Count the goats, carefully.\nThe total is {}.\n#### {}", 40 + i, 40 + i),
            }));
        }
    }
    lines
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl TestApp {
    /// Imports a synthetic problem set and solutions and creates a study over them.
    pub async fn fixture(
        &self,
        problems_n: usize,
        checkpoints_n: usize,
        per_solution: i64,
        time_limit_ms: i64,
    ) -> Fixture {
        self.fixture_with_solutions(
            problems_n,
            checkpoints_n,
            per_solution,
            time_limit_ms,
            solutions_jsonl,
        )
        .await
    }

    /// [`TestApp::fixture`] with the solutions JSONL written by `solutions(problems_n, labels)`.
    pub async fn fixture_with_solutions(
        &self,
        problems_n: usize,
        checkpoints_n: usize,
        per_solution: i64,
        time_limit_ms: i64,
        solutions: impl Fn(usize, &[String]) -> String,
    ) -> Fixture {
        self.fixture_in_full(
            problems_n,
            checkpoints_n,
            per_solution,
            time_limit_ms,
            solutions,
            None,
            RaterProtocol::default(),
        )
        .await
    }

    /// A study with a rater protocol over the first `study_problems` of `problems_n` problems
    /// (one checkpoint, one judgement per solution, 45 s); the other problems supply the
    /// quality items.
    pub async fn fixture_with_protocol(
        &self,
        problems_n: usize,
        study_problems: usize,
        protocol: RaterProtocol,
    ) -> Fixture {
        self.fixture_in_full(
            problems_n,
            1,
            1,
            45_000,
            solutions_jsonl,
            Some(study_problems),
            protocol,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn fixture_in_full(
        &self,
        problems_n: usize,
        checkpoints_n: usize,
        per_solution: i64,
        time_limit_ms: i64,
        solutions: impl Fn(usize, &[String]) -> String,
        max_problems: Option<usize>,
        protocol: RaterProtocol,
    ) -> Fixture {
        let set = format!("set-{}", Uuid::new_v4().simple());
        let labels: Vec<String> = (0..checkpoints_n)
            .map(|i| format!("ckpt-secret-{i}-{}", &set[4..12]))
            .collect();
        let records =
            problems::parse_gsm8k_problems(problems_jsonl(problems_n).as_bytes()).unwrap();
        self.store()
            .import_problems(&set, &records, self.now())
            .await
            .unwrap();
        let records = problems::parse_solutions(solutions(problems_n, &labels).as_bytes()).unwrap();
        self.store()
            .import_solutions(Some(&set), &records, self.now())
            .await
            .unwrap();
        let set_id = self
            .store()
            .problem_sets()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == set)
            .unwrap()
            .id;
        let spec = StudySpec {
            name: format!("study-{set}"),
            time_limit_ms,
            judgements_per_solution: per_solution,
            reclaim_grace_ms: 5_000,
            problem_set_id: set_id,
            checkpoint_ids: vec![],
            roles: vec![],
            max_problems,
            protocol,
            answers: Default::default(),
            time_limits: Default::default(),
        };
        let study = self
            .store()
            .create_study(&spec, None, self.now())
            .await
            .unwrap();
        Fixture {
            study_id: study.id,
            problem_set: set,
            checkpoint_labels: labels,
            ground_truths: (0..problems_n).map(truth_of).collect(),
            reference_solutions: (0..problems_n)
                .map(|i| format!("REFERENCE-WORKING-{i}"))
                .collect(),
        }
    }

    /// The study's tidy table as a researcher downloads it (JSON Lines), one object per
    /// attempt in serving order.
    pub async fn attempts(&self, study_id: Uuid) -> Vec<serde_json::Value> {
        let name = format!("researcher-{}", Uuid::new_v4().simple());
        let mut researcher = self.staff_client(&name, UserRole::Researcher).await;
        let response = researcher
            .get(&format!("/studies/{study_id}/attempts.jsonl"))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response
            .body
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// The study's `report.json`, as a researcher reads it.
    pub async fn report_json(&self, study_id: Uuid) -> serde_json::Value {
        let name = format!("researcher-{}", Uuid::new_v4().simple());
        let mut researcher = self.staff_client(&name, UserRole::Researcher).await;
        let response = researcher
            .get(&format!("/studies/{study_id}/report.json"))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.json()
    }

    /// Invites `n` raters and returns their tokens.
    pub async fn invite(&self, study_id: Uuid, n: usize) -> Vec<String> {
        let names: Vec<String> = (0..n).map(|i| format!("rater {i}")).collect();
        self.store()
            .invite_raters(study_id, &names, self.now())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.token)
            .collect()
    }

    /// A client that has opened its invite link.
    pub async fn rater_client(&self, token: &str) -> Client<'_> {
        let mut client = self.client();
        let response = client.get(&format!("/r/{token}")).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
        client
    }
}

/// Polls `job` until it succeeded, failed or was cancelled; panics after `limit`.
pub async fn wait_for_end(
    store: &Store,
    job: Uuid,
    limit: std::time::Duration,
) -> legibility::store::jobs::JobView {
    use legibility::domain::JobState;
    let started = std::time::Instant::now();
    loop {
        let view = store.job(job).await.unwrap();
        if matches!(
            view.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        ) {
            return view;
        }
        assert!(started.elapsed() < limit, "job did not end: {view:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl TestApp {
    /// Every rater judges until nothing is left; `verdict` decides from the solution text (the
    /// fixture's sneaky solutions say "carefully": see [`truthful`]).
    pub async fn judge_all(&self, tokens: &[String], verdict: impl Fn(&str) -> &'static str) {
        for token in tokens {
            let mut rater = self.rater_client(token).await;
            loop {
                let item = rater.get("/api/rater/item").await.json();
                if item["status"] != "item" {
                    break;
                }
                let text = item["solution"].as_str().unwrap_or_default();
                let answer = rater
                    .post_json(
                        "/api/rater/judgements",
                        &serde_json::json!({"assignment_id": item["assignment_id"], "verdict": verdict(text)}),
                    )
                    .await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            }
        }
    }

    /// Registers a verifier version (no model files: nothing loads it) and stores its
    /// `score_of(i, solution)` for every solution of `study`, as a scoring job would. Returns the
    /// version's checkpoint id and number.
    pub async fn store_verifier_scores(
        &self,
        study: Uuid,
        score_of: impl Fn(usize, Uuid) -> f64,
    ) -> (Uuid, i64) {
        use legibility::domain::{JobKind, LabelSource, VerifierLoss};
        use legibility::store::verifiers::NewVerifierVersion;
        let store = self.store();
        let (checkpoint, version) = store
            .register_verifier_version(
                None,
                &NewVerifierVersion {
                    label: None,
                    model_dir: "verifiers/none".into(),
                    checkpoint_metadata: serde_json::json!({}),
                    base_checkpoint_id: None,
                    job_id: None,
                    label_source: LabelSource::Both,
                    loss: VerifierLoss::BradleyTerry,
                    judgements_seen: 0,
                    metrics: serde_json::json!({}),
                    score_studies: vec![],
                },
                self.now(),
            )
            .await
            .unwrap();
        store
            .enqueue_verifier_scoring(study, Some(checkpoint), None, self.now())
            .await
            .unwrap();
        let job = store
            .claim_job(
                "test-scorer",
                &[JobKind::VerifierScoring],
                60_000,
                self.now(),
            )
            .await
            .unwrap()
            .unwrap();
        let rows: Vec<(Uuid, f64)> = store
            .solutions_to_score(study, checkpoint)
            .await
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, (id, _, _))| (id, score_of(i, id)))
            .collect();
        store
            .commit_scores(&job.lease, checkpoint, &rows, rows.len() as i64, self.now())
            .await
            .unwrap();
        (checkpoint, version)
    }
}

/// A rater who is always right on the fixture: sneaky solutions (they say "carefully") are
/// wrong, the rest correct.
pub fn truthful(text: &str) -> &'static str {
    if text.contains("carefully") {
        "wrong"
    } else {
        "correct"
    }
}

/// Every `(METHOD, path)` the handlers register: each `.route("path", get(…).post(…))` call in
/// `src/web/*.rs`.
pub fn routes_in_source() -> BTreeSet<(String, String)> {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/src/web");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            let call_and_more = &rest[at + ".route(".len()..];
            let mut depth = 1;
            let mut end = call_and_more.len();
            for (i, c) in call_and_more.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &call_and_more[..end];
            let route = call.split('"').nth(1).unwrap_or_else(|| {
                panic!("{}: a route without a literal path: {call}", path.display())
            });
            for method in ["get", "post", "put", "patch", "delete"] {
                let needle = format!("{method}(");
                let registered = call.match_indices(&needle).any(|(i, _)| {
                    call[..i]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                });
                if registered {
                    routes.insert((method.to_uppercase(), route.to_string()));
                }
            }
            rest = &call_and_more[end..];
        }
    }
    routes
}

/// Sends SIGTERM to a child process, as a service manager stopping it would.
pub fn terminate(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(sent.success(), "kill -TERM {} failed", child.id());
}

/// Waits until a child process exits; fails the test after `limit`.
pub async fn wait_for_exit(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(exit) = child.try_wait().expect("polling a child process") {
            return exit;
        }
        assert!(
            started.elapsed() < limit,
            "process {} did not exit within {limit:?}",
            child.id()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A `legibility worker` child process, killed (SIGKILL) when dropped.
pub struct WorkerProcess(pub std::process::Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real worker binary on `url` as worker `name`, with `args` after `worker`.
pub fn start_worker_process(url: &str, name: &str, args: &[&str]) -> WorkerProcess {
    spawn_worker(url, name, args, "warn", std::process::Stdio::null())
}

/// Like [`start_worker_process`], with the worker's log (info and up) written to `log`.
pub fn start_logged_worker_process(
    url: &str,
    name: &str,
    args: &[&str],
    log: &std::path::Path,
) -> WorkerProcess {
    let file = std::fs::File::create(log).expect("create the worker's log file");
    spawn_worker(url, name, args, "info", file.into())
}

fn spawn_worker(
    url: &str,
    name: &str,
    args: &[&str],
    level: &str,
    stderr: std::process::Stdio,
) -> WorkerProcess {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_legibility"))
        .arg("worker")
        .args(args)
        .arg("--worker-id")
        .arg(name)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", level)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start legibility worker");
    WorkerProcess(child)
}

/// Waits until `job` has made progress and still has more to do, so its worker can be stopped
/// mid-job; fails if the job fails or makes no progress within 5 minutes.
pub async fn wait_for_progress_mid_job(store: &Store, job: Uuid) {
    let started = std::time::Instant::now();
    loop {
        let view = store.job(job).await.unwrap();
        if view.progress_done > 0 {
            assert!(
                view.progress_done < view.progress_total,
                "the job finished before its worker could be stopped: {view:?}"
            );
            return;
        }
        assert_ne!(view.state, legibility::domain::JobState::Failed, "{view:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(300),
            "{view:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
