//! Upgrades with data (issue 22): every release leaves a backup of a database it wrote under
//! `tests/fixtures/upgrade/` (a study with judgements, a verifier version with scores, a training
//! run with a round), made by `write_upgrade_fixtures` below, with the figures it reported. Today's
//! binary restores each one, applies its migrations, and must keep every row and report every
//! figure unchanged, on both databases.
//!
//! After a release: `cargo test --test upgrade -- --ignored write_upgrade_fixtures` writes the
//! fixtures of the current schema version (existing ones are left as they are); commit them.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Backend, TestApp, TestDb, truthful};
use legibility::backup::{self, Manifest};
use legibility::domain::JobKind;
use legibility::store::games::RoundProver;
use legibility::store::jobs::NewJob;
use legibility::web::WebConfig;
use legibility::worker::game::TrainingRunParams;
use uuid::Uuid;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

/// What a release reported on its fixture; today's binary must report the same.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Expected {
    study_id: Uuid,
    report: serde_json::Value,
    attempts: Vec<serde_json::Value>,
    rounds: Vec<(i64, String, serde_json::Value)>,
    verifier_versions: Vec<serde_json::Value>,
}

async fn observe(app: &TestApp, study: Uuid, run: Uuid) -> Expected {
    let rounds = app
        .store()
        .game_rounds(run)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.round, r.checkpoint_label, r.report))
        .collect();
    let verifier_versions = app
        .store()
        .verifier_versions()
        .await
        .unwrap()
        .into_iter()
        .map(|v| serde_json::json!({"version": v.version, "metrics": v.metrics}))
        .collect();
    Expected {
        study_id: study,
        report: app.report_json(study).await,
        attempts: app.attempts(study).await,
        rounds,
        verifier_versions,
    }
}

/// Every figure and column `old` held is in `now` with the same value; `now` may hold more
/// (figures and columns added since the fixture's release, e.g. issue 23's scores).
fn assert_kept(what: &str, old: &serde_json::Value, now: &serde_json::Value) {
    use serde_json::Value;
    match (old, now) {
        (Value::Object(old), Value::Object(now)) => {
            for (key, value) in old {
                let Some(kept) = now.get(key) else {
                    panic!("{what}: {key} is gone");
                };
                assert_kept(&format!("{what}.{key}"), value, kept);
            }
        }
        (Value::Array(old), Value::Array(now)) => {
            assert_eq!(old.len(), now.len(), "{what}: length");
            for (i, (a, b)) in old.iter().zip(now).enumerate() {
                assert_kept(&format!("{what}[{i}]"), a, b);
            }
        }
        _ => assert_eq!(old, now, "{what}"),
    }
}

/// Rows per table, as the database holds them now.
async fn row_counts(url: &str, tables: &[String]) -> BTreeMap<String, i64> {
    with_raw_pool!(url, pool => {
        let mut counts = BTreeMap::new();
        for table in tables {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\"")))
                .fetch_one(&pool)
                .await
                .unwrap();
            counts.insert(table.clone(), n);
        }
        counts
    })
}

async fn upgrades_keep_every_row_and_figure(backend: Backend) {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let folder = entry.unwrap().path();
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(&format!("-{backend:?}").to_lowercase()) {
            continue;
        }
        let expected: Expected =
            serde_json::from_slice(&std::fs::read(folder.join("expected.json")).unwrap()).unwrap();
        let run: Uuid = std::fs::read_to_string(folder.join("run_id"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let target = TestDb::new(backend).await;
        let models = tempfile::tempdir().unwrap();
        let manifest: Manifest =
            backup::restore(&target.url, models.path(), &folder.join("backup"))
                .await
                .unwrap_or_else(|e| panic!("restoring {name}: {e}"));
        let app = TestApp::open(target, WebConfig::default()).await;
        assert_eq!(
            app.store().schema_version().await.unwrap(),
            backend_latest(backend),
            "{name} migrated to today's schema"
        );
        let tables: Vec<String> = manifest
            .database
            .tables
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let before: BTreeMap<String, i64> = manifest
            .database
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.rows))
            .collect();
        assert_eq!(
            row_counts(&app.db.url, &tables).await,
            before,
            "{name}: rows kept"
        );
        assert!(
            before["judgements"] > 0 && before["game_rounds"] > 0,
            "{name} holds data"
        );
        let now = observe(&app, expected.study_id, run).await;
        assert_kept(
            &format!("{name}: report.json"),
            &expected.report,
            &now.report,
        );
        assert_kept(
            &format!("{name}: the attempts download"),
            &serde_json::json!(expected.attempts),
            &serde_json::json!(now.attempts),
        );
        assert_eq!(
            now.rounds, expected.rounds,
            "{name}: the training run's rounds"
        );
        assert_eq!(now.verifier_versions, expected.verifier_versions, "{name}");
        checked += 1;
    }
    assert!(checked >= 1, "no upgrade fixture for {backend:?}");
}
on_both_backends!(upgrades_keep_every_row_and_figure);

fn backend_latest(backend: Backend) -> i64 {
    match backend {
        Backend::Sqlite => legibility::store::Backend::Sqlite.latest_schema_version(),
        Backend::Postgres => legibility::store::Backend::Postgres.latest_schema_version(),
    }
}

/// Writes `tests/fixtures/upgrade/v<version>-schema<N>-<backend>/` for this release.
#[tokio::test]
#[ignore = "run by hand after a release: writes committed fixtures"]
async fn write_upgrade_fixtures() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let folder = fixtures().join(format!(
            "v{}-schema{}-{}",
            env!("CARGO_PKG_VERSION"),
            backend_latest(backend),
            format!("{backend:?}").to_lowercase()
        ));
        if folder.exists() {
            eprintln!("{} exists; left as it is", folder.display());
            continue;
        }
        let app = TestApp::start(backend).await;
        let fixture = app.fixture(6, 2, 2, 45_000).await;
        let study = fixture.study_id;
        let tokens = app.invite(study, 3).await;
        app.judge_all(&tokens, truthful).await;
        let models = tempfile::tempdir().unwrap();
        let verifier_dir = models.path().join("verifiers/none");
        std::fs::create_dir_all(&verifier_dir).unwrap();
        std::fs::write(
            verifier_dir.join("README"),
            "an upgrade fixture's verifier: scores only\n",
        )
        .unwrap();
        let (verifier, _) = app
            .store_verifier_scores(study, |i, _| (i % 7) as f64 / 7.0)
            .await;
        let prover = app
            .store()
            .checkpoint_details()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.label == fixture.checkpoint_labels[0])
            .unwrap()
            .id;
        let run = training_run(&app, prover, verifier, models.path()).await;
        let expected = observe(&app, study, run).await;
        let dest = folder.join("backup");
        std::fs::create_dir_all(&folder).unwrap();
        backup::backup(app.store(), models.path(), &dest, app.now())
            .await
            .unwrap();
        std::fs::write(
            folder.join("expected.json"),
            serde_json::to_vec_pretty(&expected).unwrap(),
        )
        .unwrap();
        std::fs::write(folder.join("run_id"), format!("{run}\n")).unwrap();
        eprintln!("wrote {}", folder.display());
    }
}

/// A finished training run with a step and a round whose prover has files, as a worker
/// records them.
async fn training_run(app: &TestApp, prover: Uuid, verifier: Uuid, models: &Path) -> Uuid {
    let store = app.store();
    let params = TrainingRunParams {
        name: "upgrade fixture".into(),
        prover_checkpoint_id: prover,
        verifier_checkpoint_id: verifier,
        rounds: 1,
        ..TrainingRunParams::default()
    };
    let job = store
        .enqueue_job(
            &NewJob {
                kind: JobKind::TrainingRun,
                params: serde_json::to_value(&params).unwrap(),
                study_id: None,
                created_by: None,
                max_attempts: 1,
                progress_total: 2,
            },
            app.now(),
        )
        .await
        .unwrap();
    let claimed = store
        .claim_job("fixture-worker", &[JobKind::TrainingRun], 60_000, app.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.lease.job_id, job);
    let round_dir = "runs/upgrade-fixture/round-1";
    std::fs::create_dir_all(models.join(round_dir)).unwrap();
    std::fs::write(models.join(round_dir).join("README"), "round 1's prover\n").unwrap();
    store
        .record_game_round(
            &claimed.lease,
            0,
            &RoundProver::Existing(prover),
            &serde_json::json!({"round": 0, "verifier_auroc": 0.5}),
            1,
            app.now(),
        )
        .await
        .unwrap();
    store
        .record_game_step(
            &claimed.lease,
            1,
            1,
            &serde_json::json!({"step": 1, "mean_reward": 0.25}),
            1,
            app.now(),
        )
        .await
        .unwrap();
    store
        .record_game_round(
            &claimed.lease,
            1,
            &RoundProver::New {
                label: "upgrade fixture round 1".into(),
                model_dir: round_dir.into(),
                metadata: serde_json::json!({"run": "upgrade fixture", "round": 1}),
            },
            &serde_json::json!({"round": 1, "verifier_auroc": 0.75}),
            2,
            app.now(),
        )
        .await
        .unwrap();
    store.finish_job(&claimed.lease, app.now()).await.unwrap();
    job
}
