//! The job queue and the worker runtime on SQLite and PostgreSQL: claims with leases, fenced
//! writes, expired leases retried, attempts exhausted, retry rules, cancelling, concurrent
//! claimers; the worker's heartbeat, panics, shutdown; and the admin jobs page.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use common::{Backend, TestApp};
use legibility::domain::{JobKind, JobState, UserRole};
use legibility::store::jobs::{ClaimedJob, JobView, Lease, NewJob};
use legibility::store::{Store, StoreError};
use legibility::worker::{JobContext, JobError, JobFuture, JobHandler, Worker, WorkerConfig};
use serde_json::json;
use uuid::Uuid;

const KINDS: &[JobKind] = &[JobKind::Generation];
const LEASE_MS: i64 = 60_000;

fn generation(study_id: Option<Uuid>, max_attempts: i64, params: serde_json::Value) -> NewJob {
    NewJob {
        kind: JobKind::Generation,
        params,
        study_id,
        created_by: None,
        max_attempts,
        progress_total: 10,
    }
}

async fn claim(app: &TestApp, worker: &str) -> Option<ClaimedJob> {
    app.store()
        .claim_job(worker, KINDS, LEASE_MS, app.now())
        .await
        .unwrap()
}

async fn view(app: &TestApp, id: Uuid) -> JobView {
    app.store().job(id).await.unwrap()
}

/// Asserts that every write with `lease` is refused because the lease is gone.
async fn assert_fenced(app: &TestApp, lease: &Lease) {
    let store = app.store();
    let now = app.now();
    assert!(matches!(
        store.renew_lease(lease, LEASE_MS, now).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store.set_progress(lease, 1, 10).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store.finish_job(lease, now).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store.fail_job(lease, "late", true, now).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store.release_job(lease).await,
        Err(StoreError::LeaseLost)
    ));
}

async fn enqueue_claim_progress_finish(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let store = app.store();
    let params = json!({"checkpoint": "prover-r0", "samples": 4});
    let id = store
        .enqueue_job(
            &generation(Some(fixture.study_id), 3, params.clone()),
            app.now(),
        )
        .await
        .unwrap();
    let queued = view(&app, id).await;
    assert_eq!(
        (queued.state, queued.attempts, queued.progress_total),
        (JobState::Queued, 0, 10)
    );
    assert_eq!(
        queued.study_name.as_deref(),
        Some(format!("study-{}", fixture.problem_set).as_str())
    );
    assert!(
        store
            .claim_job("w1", &[], LEASE_MS, app.now())
            .await
            .unwrap()
            .is_none(),
        "a worker without handlers takes nothing"
    );

    let job = claim(&app, "w1").await.expect("the queued job is claimed");
    assert_eq!(
        (job.id, job.kind, job.attempt, job.study_id),
        (id, JobKind::Generation, 1, Some(fixture.study_id))
    );
    assert_eq!(job.params, params);
    assert_eq!(job.lease.job_id, id);
    assert!(
        claim(&app, "w2").await.is_none(),
        "a leased job is not claimed twice"
    );
    let running = view(&app, id).await;
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.lease_owner.as_deref(), Some("w1"));
    assert!(running.started_at.is_some());

    store.set_progress(&job.lease, 3, 7).await.unwrap();
    store
        .renew_lease(&job.lease, LEASE_MS, app.now())
        .await
        .unwrap();
    let progressed = view(&app, id).await;
    assert_eq!(
        (progressed.progress_done, progressed.progress_total),
        (3, 7)
    );
    assert!(matches!(
        store.set_progress(&job.lease, -1, 7).await,
        Err(StoreError::Invalid(_))
    ));

    assert!(store.chunks_done(id).await.unwrap().is_empty());
    with_raw_pool!(app.db.url, pool => {
        sqlx::query("INSERT INTO job_chunks (job_id, chunk_key, finished_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind("problems-0-63")
            .bind(app.now())
            .execute(&pool)
            .await
            .unwrap();
    });
    assert_eq!(
        store.chunks_done(id).await.unwrap(),
        HashSet::from(["problems-0-63".to_string()])
    );

    store.finish_job(&job.lease, app.now()).await.unwrap();
    let done = view(&app, id).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!((done.progress_done, done.progress_total), (7, 7));
    assert!(done.finished_at.is_some());
    assert_eq!(
        done.lease_owner.as_deref(),
        Some("w1"),
        "the page still names the worker"
    );
    assert_fenced(&app, &job.lease).await;
    assert!(claim(&app, "w2").await.is_none());

    let listed = store.jobs(10).await.unwrap();
    assert_eq!(listed, vec![done.clone()]);
    assert_eq!(
        store.jobs_for_study(fixture.study_id).await.unwrap(),
        vec![done]
    );
    assert!(matches!(
        store.job(Uuid::now_v7()).await,
        Err(StoreError::NotFound("job"))
    ));
}
on_both_backends!(enqueue_claim_progress_finish);

async fn concurrent_claimers_never_share_a_job(backend: Backend) {
    let app = TestApp::start(backend).await;
    for i in 0..3 {
        app.store()
            .enqueue_job(&generation(None, 3, json!({"n": i})), app.now())
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store: Store = app.store().clone();
        let now = app.now();
        tasks.push(tokio::spawn(async move {
            store
                .claim_job(&format!("w{i}"), KINDS, LEASE_MS, now)
                .await
                .unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        if let Some(job) = task.await.unwrap() {
            claimed.push(job.id);
        }
    }
    let distinct: HashSet<Uuid> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    assert_eq!(distinct.len(), 3, "a job was claimed twice: {claimed:?}");
    for job in app.store().jobs(10).await.unwrap() {
        assert_eq!((job.state, job.attempts), (JobState::Running, 1));
    }
}
on_both_backends!(concurrent_claimers_never_share_a_job);

async fn expired_leases_are_retried_and_the_old_lease_is_fenced(backend: Backend) {
    let app = TestApp::start(backend).await;
    let id = app
        .store()
        .enqueue_job(&generation(None, 3, json!({})), app.now())
        .await
        .unwrap();
    let first = claim(&app, "dead-worker").await.unwrap();
    app.state.clock.advance_ms(LEASE_MS - 1_000);
    assert!(
        claim(&app, "w2").await.is_none(),
        "the lease has not expired yet"
    );
    app.state.clock.advance_ms(2_000);

    let second = claim(&app, "w2").await.expect("the expired job is retried");
    assert_eq!((second.id, second.attempt), (id, 2));
    assert_ne!(second.lease.token, first.lease.token);
    let running = view(&app, id).await;
    assert_eq!(running.lease_owner.as_deref(), Some("w2"));
    assert_eq!(running.attempts, 2);

    assert_fenced(&app, &first.lease).await;
    app.store()
        .set_progress(&second.lease, 5, 10)
        .await
        .unwrap();
    app.store()
        .finish_job(&second.lease, app.now())
        .await
        .unwrap();
    assert_eq!(view(&app, id).await.state, JobState::Succeeded);
}
on_both_backends!(expired_leases_are_retried_and_the_old_lease_is_fenced);

async fn a_job_whose_worker_keeps_dying_fails_after_its_attempts(backend: Backend) {
    let app = TestApp::start(backend).await;
    let doomed = app
        .store()
        .enqueue_job(&generation(None, 2, json!({"which": "doomed"})), app.now())
        .await
        .unwrap();
    app.state.clock.advance_ms(1);
    let next = app
        .store()
        .enqueue_job(&generation(None, 2, json!({"which": "next"})), app.now())
        .await
        .unwrap();

    assert_eq!(claim(&app, "w1").await.unwrap().id, doomed);
    assert_eq!(claim(&app, "w1b").await.unwrap().id, next);
    // Both workers die; both jobs are retried once.
    app.state.clock.advance_ms(LEASE_MS + 1);
    let retry = claim(&app, "w2").await.unwrap();
    assert_eq!((retry.id, retry.attempt), (doomed, 2));
    // The second worker dies too: the doomed job has used its attempts and fails; the same
    // claim moves on to the next candidate.
    app.state.clock.advance_ms(LEASE_MS + 1);
    let taken = claim(&app, "w3").await.unwrap();
    assert_eq!((taken.id, taken.attempt), (next, 2));
    let failed = view(&app, doomed).await;
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("the worker running it (w2) stopped responding (2 of 2 attempts)")
    );
    assert!(failed.finished_at.is_some());
    assert_fenced(&app, &retry.lease).await;
    app.store()
        .finish_job(&taken.lease, app.now())
        .await
        .unwrap();
    assert!(claim(&app, "w4").await.is_none());
}
on_both_backends!(a_job_whose_worker_keeps_dying_fails_after_its_attempts);

async fn failed_attempts_retry_only_when_asked_and_allowed(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store();
    let id = store
        .enqueue_job(&generation(None, 2, json!({})), app.now())
        .await
        .unwrap();

    // Retryable failure with an attempt left: queued again, error kept, lease gone.
    let first = claim(&app, "w1").await.unwrap();
    let state = store
        .fail_job(&first.lease, "database unreachable", true, app.now())
        .await
        .unwrap();
    assert_eq!(state, JobState::Queued);
    let queued = view(&app, id).await;
    assert_eq!(queued.state, JobState::Queued);
    assert_eq!(queued.error.as_deref(), Some("database unreachable"));
    assert_eq!((queued.attempts, queued.finished_at), (1, None));
    assert_fenced(&app, &first.lease).await;

    // The last attempt fails retryably: failed for good.
    let second = claim(&app, "w1").await.unwrap();
    assert_eq!(second.attempt, 2);
    let state = store
        .fail_job(&second.lease, "database unreachable again", true, app.now())
        .await
        .unwrap();
    assert_eq!(state, JobState::Failed);
    let failed = view(&app, id).await;
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.error.as_deref(), Some("database unreachable again"));
    assert!(failed.finished_at.is_some());
    assert!(claim(&app, "w1").await.is_none());

    // A fatal error fails at once, attempts left or not.
    let fatal = store
        .enqueue_job(&generation(None, 5, json!({})), app.now())
        .await
        .unwrap();
    let job = claim(&app, "w1").await.unwrap();
    let state = store
        .fail_job(&job.lease, "no such checkpoint", false, app.now())
        .await
        .unwrap();
    assert_eq!(state, JobState::Failed);
    assert_eq!(view(&app, fatal).await.attempts, 1);

    // Releasing (graceful shutdown) does not use up an attempt.
    let released = store
        .enqueue_job(&generation(None, 1, json!({})), app.now())
        .await
        .unwrap();
    let job = claim(&app, "w1").await.unwrap();
    store.release_job(&job.lease).await.unwrap();
    let back = view(&app, released).await;
    assert_eq!(
        (back.state, back.attempts, back.lease_owner),
        (JobState::Queued, 0, None)
    );
    assert_fenced(&app, &job.lease).await;
    assert_eq!(claim(&app, "w2").await.unwrap().attempt, 1);
}
on_both_backends!(failed_attempts_retry_only_when_asked_and_allowed);

async fn cancelling_fences_the_worker(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store();
    let running = store
        .enqueue_job(&generation(None, 3, json!({})), app.now())
        .await
        .unwrap();
    let job = claim(&app, "w1").await.unwrap();
    let queued = store
        .enqueue_job(&generation(None, 3, json!({})), app.now())
        .await
        .unwrap();

    store.cancel_job(running, app.now()).await.unwrap();
    store.cancel_job(queued, app.now()).await.unwrap();
    for id in [running, queued] {
        let cancelled = view(&app, id).await;
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert!(cancelled.finished_at.is_some());
    }
    assert_fenced(&app, &job.lease).await;
    assert!(claim(&app, "w2").await.is_none());
    app.state.clock.advance_ms(LEASE_MS * 2);
    assert!(
        claim(&app, "w2").await.is_none(),
        "cancelled jobs never come back"
    );
    assert!(matches!(
        store.cancel_job(running, app.now()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.cancel_job(Uuid::now_v7(), app.now()).await,
        Err(StoreError::NotFound("job"))
    ));
}
on_both_backends!(cancelling_fences_the_worker);

/// A handler whose behaviour the job's `mode` parameter picks.
struct ScriptedHandler {
    /// Set once a `block` job saw its stop flag.
    saw_stop: Arc<AtomicBool>,
}

impl JobHandler for ScriptedHandler {
    fn run(&self, job: ClaimedJob, ctx: JobContext) -> JobFuture {
        let saw_stop = Arc::clone(&self.saw_stop);
        Box::pin(async move {
            match job.params["mode"].as_str().unwrap_or("") {
                "ok" => {
                    ctx.progress(1, 2).await?;
                    ctx.progress(2, 2).await?;
                    Ok(())
                }
                "fatal" => Err(JobError::Fatal("bad parameters: no checkpoint".into())),
                "panic" => panic!("boom in attempt {}", job.attempt),
                "block" => {
                    // Polls the stop flag like a blocking compute thread would.
                    // (The worker drops this future when it stops the job; the thread runs on
                    // until it sees the flag.)
                    let flag = ctx.lease_lost_flag();
                    let _ = tokio::task::spawn_blocking(move || {
                        for _ in 0..2_000 {
                            if flag.load(Ordering::SeqCst) {
                                saw_stop.store(true, Ordering::SeqCst);
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    })
                    .await;
                    Err(JobError::LeaseLost)
                }
                other => Err(JobError::Fatal(format!("unknown mode {other:?}"))),
            }
        })
    }
}

/// Waits (real time, up to 10 s) until the job satisfies `done`.
async fn wait_for(store: &Store, id: Uuid, what: &str, done: impl Fn(&JobView) -> bool) -> JobView {
    for _ in 0..1_000 {
        let job = store.job(id).await.unwrap();
        if done(&job) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} never became {what}: {:?}", store.job(id).await);
}

/// Waits (real time, up to 5 s) for `flag` to be set.
async fn raised(flag: &AtomicBool) -> bool {
    for _ in 0..500 {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn the_worker_runs_retries_stops_and_hands_back_jobs(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = app.store().clone();
    let saw_stop = Arc::new(AtomicBool::new(false));
    let lease_ms = 300;
    let mut worker = Worker::new(
        store.clone(),
        app.state.clock.clone(),
        WorkerConfig {
            id: "test-worker".into(),
            lease_ms,
            poll_ms: 10,
        },
    );
    worker.register(
        JobKind::Generation,
        Arc::new(ScriptedHandler {
            saw_stop: Arc::clone(&saw_stop),
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let enqueue = |mode: &str, max_attempts: i64| {
        let store = store.clone();
        let job = generation(None, max_attempts, json!({ "mode": mode }));
        let now = app.now();
        async move { store.enqueue_job(&job, now).await.unwrap() }
    };
    let terminal = |j: &JobView| {
        matches!(
            j.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    };

    let ok = enqueue("ok", 3).await;
    let fatal = enqueue("fatal", 3).await;
    let panics = enqueue("panic", 2).await;
    let ok = wait_for(&store, ok, "ended", terminal).await;
    assert_eq!(ok.state, JobState::Succeeded);
    assert_eq!(
        (ok.progress_done, ok.progress_total, ok.attempts),
        (2, 2, 1)
    );
    assert_eq!(ok.lease_owner.as_deref(), Some("test-worker"));
    let fatal = wait_for(&store, fatal, "ended", terminal).await;
    assert_eq!(
        (fatal.state, fatal.attempts, fatal.error.as_deref()),
        (JobState::Failed, 1, Some("bad parameters: no checkpoint"))
    );
    let panics = wait_for(&store, panics, "ended", terminal).await;
    assert_eq!(
        (panics.state, panics.attempts, panics.error.as_deref()),
        (
            JobState::Failed,
            2,
            Some("the job panicked: boom in attempt 2")
        )
    );

    // A long job keeps its lease alive through the heartbeat; cancelling it stops the handler.
    let long = enqueue("block", 3).await;
    wait_for(&store, long, "running", |j| j.state == JobState::Running).await;
    tokio::time::sleep(Duration::from_millis(3 * lease_ms as u64)).await;
    assert!(
        store
            .claim_job("thief", KINDS, lease_ms, app.now())
            .await
            .unwrap()
            .is_none(),
        "the heartbeat kept the lease from expiring"
    );
    assert_eq!(view(&app, long).await.state, JobState::Running);
    store.cancel_job(long, app.now()).await.unwrap();
    assert!(raised(&saw_stop).await, "the handler was told to stop");
    saw_stop.store(false, Ordering::SeqCst);
    assert_eq!(view(&app, long).await.state, JobState::Cancelled);

    // Shutdown while a job runs: the handler is stopped, the job goes back to the queue and
    // the attempt does not count.
    let handed_back = enqueue("block", 3).await;
    wait_for(&store, handed_back, "running", |j| {
        j.state == JobState::Running
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker stops promptly")
        .unwrap();
    assert!(raised(&saw_stop).await, "the handler was told to stop");
    let back = view(&app, handed_back).await;
    assert_eq!(
        (back.state, back.attempts, back.lease_owner),
        (JobState::Queued, 0, None)
    );
}
on_both_backends!(the_worker_runs_retries_stops_and_hands_back_jobs);

async fn admin_jobs_page_shows_progress_and_errors_to_admins_only(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let store = app.store();
    let failing = store
        .enqueue_job(&generation(Some(fixture.study_id), 1, json!({})), app.now())
        .await
        .unwrap();
    let job = claim(&app, "gpu-box-1").await.unwrap();
    store
        .fail_job(
            &job.lease,
            "tokenizer.json is missing in <models/prover-r1>",
            true,
            app.now(),
        )
        .await
        .unwrap();
    app.state.clock.advance_ms(1);
    let running = store
        .enqueue_job(&generation(Some(fixture.study_id), 3, json!({})), app.now())
        .await
        .unwrap();
    let job = claim(&app, "gpu-box-2").await.unwrap();
    store.set_progress(&job.lease, 3, 7).await.unwrap();

    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let page = admin.get("/admin/jobs").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(
        body.contains(r#"<progress data-field="bar" max="7" value="3">"#),
        "{body}"
    );
    assert!(body.contains("3 / 7"), "{body}");
    assert!(
        body.contains("gpu-box-2") && body.contains("gpu-box-1"),
        "{body}"
    );
    assert!(
        body.contains("tokenizer.json is missing in &#60;models/prover-r1&#62;")
            && !body.contains("<models/"),
        "the error is shown, escaped: {body}"
    );
    assert!(
        body.contains(&format!("/studies/{}", fixture.study_id)),
        "{body}"
    );
    assert!(
        body.contains(&format!("study-{}", fixture.problem_set)),
        "{body}"
    );
    assert!(
        body.contains(&format!("/admin/jobs/{running}/cancel")),
        "{body}"
    );
    assert!(
        !body.contains(&format!("/admin/jobs/{failing}/cancel")),
        "a failed job offers no cancel"
    );
    assert!(
        body.contains(r#"<script src="/static/jobs.js" defer>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"href="/admin/jobs""#),
        "the staff navigation links the page"
    );
    // Newest first.
    assert!(body.find(&running.to_string()) < body.find(&failing.to_string()));

    let script = admin.get("/static/jobs.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.body.contains("/admin/jobs.json"));

    let listed = admin.get("/admin/jobs.json").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let jobs = listed.json()["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["id"], running.to_string());
    assert_eq!(
        (
            &jobs[0]["state"],
            &jobs[0]["progress_done"],
            &jobs[0]["progress_total"]
        ),
        (&json!("running"), &json!(3), &json!(7))
    );
    assert_eq!(jobs[1]["state"], "failed");
    assert_eq!(
        jobs[1]["error"],
        "tokenizer.json is missing in <models/prover-r1>"
    );

    // Researchers and anonymous visitors are refused.
    let mut researcher = app.staff_client("rita", UserRole::Researcher).await;
    assert_eq!(
        researcher.get("/admin/jobs").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        researcher.get("/admin/jobs.json").await.status,
        StatusCode::FORBIDDEN
    );
    let cancel_path = format!("/admin/jobs/{running}/cancel");
    assert_eq!(
        researcher.post_form(&cancel_path, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(
        !researcher
            .get("/studies")
            .await
            .body
            .contains("/admin/jobs")
    );
    let mut anonymous = app.client();
    assert_eq!(
        anonymous.get("/admin/jobs").await.location(),
        Some("/login")
    );
    assert_eq!(
        anonymous.get("/admin/jobs.json").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anonymous.post_form(&cancel_path, &[]).await.location(),
        Some("/login")
    );
    assert_eq!(view(&app, running).await.state, JobState::Running);

    // The admin cancels the running job; cancelling it again is a conflict.
    let cancelled = admin.post_form(&cancel_path, &[]).await;
    assert_eq!(
        cancelled.status,
        StatusCode::SEE_OTHER,
        "{}",
        cancelled.body
    );
    assert_eq!(cancelled.location(), Some("/admin/jobs"));
    assert_eq!(view(&app, running).await.state, JobState::Cancelled);
    assert_eq!(
        admin.post_form(&cancel_path, &[]).await.status,
        StatusCode::CONFLICT
    );
    assert!(matches!(
        store.set_progress(&job.lease, 4, 7).await,
        Err(StoreError::LeaseLost)
    ));
}
on_both_backends!(admin_jobs_page_shows_progress_and_errors_to_admins_only);
