//! The verifier pages on SQLite and PostgreSQL: the admin verifier page (who may see it, the
//! version table for every metrics shape), its training form (one job with the chosen
//! settings, 409 while one is queued, bad fields refused with their name), and the study page's
//! verifier scores and scoring button.

mod common;

use axum::http::StatusCode;
use common::{Backend, TestApp};
use legibility::domain::{JobKind, JobState, LabelSource, UserRole, VerifierLoss};
use legibility::store::jobs::JobView;
use legibility::store::verifiers::NewVerifierVersion;
use legibility::worker::verifier::TrainingParams;
use serde_json::{Value, json};
use uuid::Uuid;

const LEASE_MS: i64 = 60_000;

/// Registers a verifier version without files (nothing here loads it).
async fn register(app: &TestApp, label: Option<&str>, metrics: Value) -> (Uuid, i64) {
    let new = NewVerifierVersion {
        label: label.map(str::to_string),
        model_dir: "verifiers/not-loaded".into(),
        checkpoint_metadata: json!({}),
        base_checkpoint_id: None,
        job_id: None,
        label_source: LabelSource::Both,
        loss: VerifierLoss::BradleyTerry,
        judgements_seen: 12,
        metrics,
        score_studies: vec![],
    };
    app.store()
        .register_verifier_version(None, &new, app.now())
        .await
        .unwrap()
}

/// A trained version's metrics, in the shape `FitReport` writes.
fn fit_report_metrics() -> Value {
    let card = |solutions: u64, accuracy: f64, auroc: Value| json!({"solutions": solutions, "accuracy": accuracy, "auroc": auroc});
    json!({
        "before": {"solutions": 8, "ground_truth": card(8, 0.5, json!(0.4375)),
                   "human": card(6, 0.5, json!(0.5)), "by_round_role": []},
        "after": {"solutions": 8, "ground_truth": card(8, 0.875, json!(0.9375)),
                  "human": card(6, 0.8333, json!(0.8889)),
                  "by_round_role": [
                      {"round": 0, "role": "helpful", "ground_truth": card(4, 0.75, Value::Null),
                       "human": card(3, 0.6667, Value::Null)},
                      {"round": 0, "role": "sneaky", "ground_truth": card(4, 1.0, Value::Null),
                       "human": card(3, 1.0, Value::Null)}]},
        "train_solutions": 32, "validation_solutions": 8, "epochs": 3, "best_epoch": 2,
        "steps": 12, "train_seconds": 4.2, "train_solutions_per_second": 30.0, "history": [],
        "options": {"loss": "bradley_terry"},
    })
}

fn training_jobs(jobs: &[JobView]) -> Vec<&JobView> {
    jobs.iter()
        .filter(|j| j.kind == JobKind::VerifierTraining)
        .collect()
}

async fn verifier_page_is_for_admins_and_shows_every_version(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let empty = admin.get("/admin/verifiers").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(empty.body.contains("id=\"no-versions\""), "{}", empty.body);
    assert!(
        empty.body.contains(r#"href="/admin/verifiers""#),
        "nav link"
    );

    // The shipped version's shape, no metrics at all, and a trained version's report.
    register(
        &app,
        Some("default-verifier-tiny"),
        json!({"recipe": {"seed": 1}, "quality": {"auroc": 0.9123, "accuracy": 0.81,
               "pairwise_accuracy": 0.955, "solutions": 400}}),
    )
    .await;
    register(&app, Some("<b>uploaded</b>"), json!({})).await;
    register(&app, None, fit_report_metrics()).await;

    let page = admin.get("/admin/verifiers").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    for expected in [
        "default-verifier-tiny",
        "verifier-v3",
        "&#60;b&#62;uploaded&#60;/b&#62;",
        // Shipped: held-out quality.
        "held-out generated problems",
        "0.912",
        "0.810",
        "pairs ranked right: 0.955",
        "400",
        // Trained: after, with before next to it, and the per-group breakdown.
        "0.875<br><small>before: 0.500</small>",
        "0.938<br><small>before: 0.438</small>",
        "0.889<br><small>before: 0.500</small>",
        "<details>",
        "sneaky",
        "3 epochs (kept epoch 2)",
        "no metrics recorded",
        "--verifier-every",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in {body}");
    }
    assert!(!body.contains("<b>uploaded"), "labels are escaped");
    assert_eq!(body.matches("(current)").count(), 1);
    let current = body.find("(current)").unwrap();
    let v3 = body.find(r#"<tr data-version="3">"#).unwrap();
    let v2 = body.find(r#"<tr data-version="2">"#).unwrap();
    assert!(
        v3 < current && current < v2,
        "version 3 is current and listed first"
    );

    let mut researcher = app.staff_client("rita", UserRole::Researcher).await;
    assert_eq!(
        researcher.get("/admin/verifiers").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(
        !researcher
            .get("/studies")
            .await
            .body
            .contains("/admin/verifiers"),
        "researchers get no link"
    );
    let mut anonymous = app.client();
    assert_eq!(
        anonymous.get("/admin/verifiers").await.location(),
        Some("/login")
    );
}
on_both_backends!(verifier_page_is_for_admins_and_shows_every_version);

async fn training_form_queues_one_job(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let study = fixture.study_id.to_string();

    // Nothing to start from yet: refused, nothing queued.
    let defaults = [
        ("label_source", "both"),
        ("loss", "bradley_terry"),
        ("scope", "all"),
        ("base", "current"),
        ("seed", "1"),
        ("max_epochs", "8"),
    ];
    let refused = admin.post_form("/admin/verifiers/train", &defaults).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("base checkpoint"), "{}", refused.body);

    let (checkpoint, _) = register(&app, None, json!({})).await;
    let page = admin.get("/admin/verifiers").await;
    assert!(
        page.body.contains(&format!("value=\"{study}\"")),
        "studies offered"
    );
    assert!(
        page.body.contains(&format!("value=\"{checkpoint}\"")),
        "verifier checkpoints offered"
    );
    let base = checkpoint.to_string();
    let chosen = [
        ("label_source", "human"),
        ("loss", "cross_entropy"),
        ("scope", study.as_str()),
        ("base", base.as_str()),
        ("seed", "7"),
        ("max_epochs", "3"),
        ("learning_rate", "0.002"),
        ("train_blocks", "1"),
    ];

    // Bad fields are refused with their name and queue nothing.
    for (field, value, name) in [
        ("label_source", "everyone", "label source"),
        ("loss", "hinge", "loss"),
        ("max_epochs", "0", "max epochs"),
        ("seed", "-1", "seed"),
        ("learning_rate", "0", "learning rate"),
        ("learning_rate", "fast", "learning rate"),
        ("train_blocks", "-2", "blocks to train"),
        ("scope", "not-a-study", "scope"),
        ("base", &Uuid::now_v7().to_string(), "base checkpoint"),
    ] {
        let fields: Vec<(&str, &str)> = chosen
            .iter()
            .map(|&(k, v)| (k, if k == field { value } else { v }))
            .collect();
        let response = admin.post_form("/admin/verifiers/train", &fields).await;
        assert!(
            response.status.is_client_error() && response.status != StatusCode::CONFLICT,
            "{field}={value}: {}",
            response.status
        );
        assert!(
            response.body.contains(&format!("{name}:")),
            "{field}: {}",
            response.body
        );
    }
    let jobs = app.store().jobs(100).await.unwrap();
    assert!(training_jobs(&jobs).is_empty(), "{jobs:?}");

    // Researchers and visitors may not ask.
    let mut researcher = app.staff_client("rita", UserRole::Researcher).await;
    assert_eq!(
        researcher
            .post_form("/admin/verifiers/train", &chosen)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.client()
            .post_form("/admin/verifiers/train", &chosen)
            .await
            .location(),
        Some("/login")
    );

    let queued = admin.post_form("/admin/verifiers/train", &chosen).await;
    assert_eq!(queued.status, StatusCode::SEE_OTHER, "{}", queued.body);
    assert_eq!(queued.location(), Some("/admin/jobs"));
    let again = admin.post_form("/admin/verifiers/train", &defaults).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.body.contains("already queued or running"),
        "{}",
        again.body
    );
    let jobs = app.store().jobs(100).await.unwrap();
    let training = training_jobs(&jobs);
    assert_eq!(training.len(), 1, "{jobs:?}");
    assert_eq!(training[0].state, JobState::Queued);
    let page = admin.get("/admin/verifiers").await;
    assert!(page.body.contains("id=\"training-job\""), "{}", page.body);

    let (admin_user, _) = app.store().user_with_hash("ada").await.unwrap().unwrap();
    let created_by: Option<Uuid> = with_raw_pool!(app.db.url, pool => {
        sqlx::query_scalar("SELECT created_by FROM jobs WHERE id = $1")
            .bind(training[0].id)
            .fetch_one(&pool)
            .await
            .unwrap()
    });
    assert_eq!(created_by, Some(admin_user.id));
    let claimed = app
        .store()
        .claim_job("w1", &[JobKind::VerifierTraining], LEASE_MS, app.now())
        .await
        .unwrap()
        .expect("the training job is claimable");
    let params: TrainingParams = serde_json::from_value(claimed.params).unwrap();
    assert_eq!(params.label_source, LabelSource::Human);
    assert_eq!(params.study_id, Some(fixture.study_id));
    assert_eq!(params.base_checkpoint_id, Some(checkpoint));
    assert_eq!(params.fit.loss, VerifierLoss::CrossEntropy);
    assert_eq!((params.fit.seed, params.fit.max_epochs), (7, 3));
    assert_eq!(params.fit.learning_rate, 0.002);
    assert_eq!(params.fit.train_blocks, Some(1));
    assert_eq!(params.trigger, "admin");

    // Still one while it runs.
    let running = admin.post_form("/admin/verifiers/train", &chosen).await;
    assert_eq!(running.status, StatusCode::CONFLICT);
    let jobs = app.store().jobs(100).await.unwrap();
    assert_eq!(training_jobs(&jobs).len(), 1);
}
on_both_backends!(training_form_queues_one_job);

async fn study_page_shows_scores_and_queues_scoring(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let study_path = format!("/studies/{}", fixture.study_id);
    let score_path = format!("{study_path}/score");
    let mut researcher = app.staff_client("rita", UserRole::Researcher).await;
    let scoring_jobs = || async {
        app.store()
            .jobs_for_study(fixture.study_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.kind == JobKind::VerifierScoring)
            .count()
    };

    // No verifier version: the section says so, offers no button, and a post is refused.
    let page = researcher.get(&study_path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"no-verifier\""), "{}", page.body);
    assert!(!page.body.contains(&score_path));
    assert_eq!(
        researcher.post_form(&score_path, &[]).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(scoring_jobs().await, 0);

    // A version scores the study's six solutions: helpful (correct) 1.5, sneaky (incorrect) -0.5.
    let (checkpoint, version) = register(&app, None, json!({})).await;
    let page = researcher.get(&study_path).await;
    assert!(page.body.contains("No verifier version has scored"));
    assert!(page.body.contains(&score_path));
    app.store()
        .enqueue_verifier_scoring(fixture.study_id, Some(checkpoint), None, app.now())
        .await
        .unwrap();
    let job = app
        .store()
        .claim_job("w1", &[JobKind::VerifierScoring], LEASE_MS, app.now())
        .await
        .unwrap()
        .expect("the scoring job is claimable");
    let rows: Vec<(Uuid, f64)> = app
        .store()
        .solutions_to_score(fixture.study_id, checkpoint)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _, text)| {
            (
                id,
                if text.contains("step by step") {
                    1.5
                } else {
                    -0.5
                },
            )
        })
        .collect();
    assert_eq!(rows.len(), 6);
    app.store()
        .commit_scores(&job.lease, checkpoint, &rows, 6, app.now())
        .await
        .unwrap();
    app.store().finish_job(&job.lease, app.now()).await.unwrap();

    let page = researcher.get(&study_path).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    let row_start = body
        .find(&format!("<tr data-version=\"{version}\">"))
        .unwrap_or_else(|| panic!("no score row for version {version}: {body}"));
    let row = &body[row_start..row_start + body[row_start..].find("</tr>").unwrap()];
    assert!(row.contains("data-field=\"scored\">6<"), "{row}");
    // Mean correct, mean incorrect, helpful, sneaky, AUROC.
    assert!(
        row.contains("<td>1.500</td><td>-0.500</td><td>1.500</td><td>-0.500</td><td>1.000</td>"),
        "{row}"
    );

    // The button queues a scoring job with the current verifier for this study.
    let before = scoring_jobs().await;
    let response = researcher.post_form(&score_path, &[]).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert_eq!(response.location(), Some(study_path.as_str()));
    assert_eq!(scoring_jobs().await, before + 1);
    let queued = app
        .store()
        .claim_job("w2", &[JobKind::VerifierScoring], LEASE_MS, app.now())
        .await
        .unwrap()
        .expect("the new scoring job is claimable");
    assert_eq!(queued.study_id, Some(fixture.study_id));
    assert_eq!(queued.params["verifier_checkpoint_id"], Value::Null);

    // Unknown studies and visitors are refused.
    assert_eq!(
        researcher
            .post_form(&format!("/studies/{}/score", Uuid::now_v7()), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.client().post_form(&score_path, &[]).await.location(),
        Some("/login")
    );
    assert_eq!(scoring_jobs().await, before + 1);
}
on_both_backends!(study_page_shows_scores_and_queues_scoring);
