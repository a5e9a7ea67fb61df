//! Backup and restore (issue 22): a backup taken while 64 raters judge restores every
//! judgement it acknowledged; a backup taken after gives an identical report; a restore refuses a
//! target holding data and a backup with a changed byte; a database a newer release migrated is
//! refused at start.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use axum::http::StatusCode;
use common::{Backend, TestApp, TestDb, truthful};
use legibility::backup::{self, BackupError};
use legibility::web::WebConfig;
use uuid::Uuid;

/// Every judgement as (id → the columns a report reads).
async fn judgements(url: &str) -> BTreeMap<Uuid, (String, i64, i64, Option<i64>)> {
    with_raw_pool!(url, pool => {
        let rows: Vec<(Uuid, String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, verdict, served_at, server_elapsed_ms, client_elapsed_ms FROM judgements",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows.into_iter().map(|(id, v, s, e, c)| (id, (v, s, e, c))).collect()
    })
}

/// A verifier version whose folder holds a file, so the backup carries checkpoint files.
fn models_folder() -> tempfile::TempDir {
    let models = tempfile::tempdir().unwrap();
    let dir = models.path().join("verifiers/none");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("metrics.json"), b"{\"note\": \"test verifier\"}").unwrap();
    models
}

async fn backup_while_raters_judge_then_restore(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(24, 2, 3, 45_000).await;
    let study = fixture.study_id;
    app.store_verifier_scores(study, |i, _| i as f64 / 100.0)
        .await;
    let models = models_folder();
    let tokens = app.invite(study, 64).await;
    let folder = tempfile::tempdir().unwrap();

    // 64 raters judge until the study is full; a backup is taken once judging is under way.
    let judging = tokens.iter().map(|token| async {
        let mut rater = app.rater_client(token).await;
        loop {
            let item = rater.get("/api/rater/item").await.json();
            if item["status"] != "item" {
                break;
            }
            let verdict = truthful(item["solution"].as_str().unwrap_or_default());
            let answer = rater
                .post_json(
                    "/api/rater/judgements",
                    &serde_json::json!({"assignment_id": item["assignment_id"], "verdict": verdict}),
                )
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        }
    });
    let during = folder.path().join("during");
    let backing_up = async {
        loop {
            if judgements(&app.db.url).await.len() >= 20 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let acknowledged = judgements(&app.db.url).await;
        let manifest = backup::backup(app.store(), models.path(), &during, app.now())
            .await
            .expect("backup while raters judge");
        (acknowledged, manifest)
    };
    let (_, (acknowledged, manifest)) =
        tokio::join!(futures_util::future::join_all(judging), backing_up);
    let all = judgements(&app.db.url).await;
    assert_eq!(
        all.len(),
        24 * 2 * 2 * 3,
        "every solution (problem × checkpoint × role) judged three times"
    );

    // Restored: every judgement acknowledged before the backup began, each as stored, and
    // nothing that the source does not hold.
    let target = TestDb::new(backend).await;
    let restored_models = tempfile::tempdir().unwrap();
    backup::restore(&target.url, restored_models.path(), &during)
        .await
        .expect("restore");
    let restored = judgements(&target.url).await;
    assert_eq!(restored.len() as i64, manifest.rows("judgements"));
    assert!(restored.len() >= acknowledged.len());
    eprintln!(
        "acknowledged before the backup {}, in it {}, at the end {}",
        acknowledged.len(),
        restored.len(),
        all.len()
    );
    assert!(
        restored.len() < all.len(),
        "the backup was taken while raters judged"
    );
    for (id, row) in &acknowledged {
        assert_eq!(restored.get(id), Some(row), "judgement {id} lost");
    }
    for (id, row) in &restored {
        assert_eq!(all.get(id), Some(row), "judgement {id} changed");
    }
    assert_eq!(
        std::fs::read(restored_models.path().join("verifiers/none/metrics.json")).unwrap(),
        std::fs::read(models.path().join("verifiers/none/metrics.json")).unwrap()
    );

    // After judging: the restored database reports exactly what the source does.
    let after = folder.path().join("after");
    backup::backup(app.store(), models.path(), &after, app.now())
        .await
        .unwrap();
    let target = TestDb::new(backend).await;
    backup::restore(&target.url, restored_models.path(), &after)
        .await
        .expect("restore into a fresh database; identical model files are kept");
    let copy = TestApp::open(target, WebConfig::default()).await;
    assert_eq!(judgements(&copy.db.url).await, all);
    assert_eq!(copy.report_json(study).await, app.report_json(study).await);
    assert_eq!(app.attempts(study).await, copy.attempts(study).await);

    // Restoring over data is refused and changes nothing.
    let refused = backup::restore(&copy.db.url, restored_models.path(), &after).await;
    let message = refused.expect_err("a target with data").to_string();
    assert!(
        message.contains("not empty") || message.contains("already exists"),
        "{message}"
    );
    assert_eq!(judgements(&copy.db.url).await, all);
}
on_both_backends!(backup_while_raters_judge_then_restore);

/// Flips one byte of a file in the folder.
fn damage(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

async fn a_changed_byte_is_refused_and_the_target_stays_empty(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(4, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 2).await;
    app.judge_all(&tokens, truthful).await;
    let models = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let dest = folder.path().join("b");
    let manifest = backup::backup(app.store(), models.path(), &dest, app.now())
        .await
        .unwrap();
    assert_eq!(manifest.rows("judgements"), 8);
    let data = match backend {
        Backend::Sqlite => dest.join("database.sqlite"),
        Backend::Postgres => dest.join("postgres/judgements.copy"),
    };
    damage(&data);
    let target = TestDb::new(backend).await;
    let refused = backup::restore(&target.url, models.path(), &dest).await;
    let Err(BackupError::Refused(message)) = refused else {
        panic!("a damaged backup restored: {refused:?}");
    };
    assert!(message.contains("does not match its checksum"), "{message}");
    let data_name = data
        .strip_prefix(&dest)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(message.contains(&data_name), "{message}");
    // Nothing was written: the target is still a fresh, empty database.
    let empty = TestApp::open(target, WebConfig::default()).await;
    assert!(judgements(&empty.db.url).await.is_empty());

    // A folder that is not a backup, and a destination that is not empty, are refused.
    let not_a_backup = backup::restore(&app.db.url, models.path(), folder.path()).await;
    assert!(
        not_a_backup
            .expect_err("no manifest")
            .to_string()
            .contains("is not a Legibility Lab backup")
    );
    let occupied = backup::backup(app.store(), models.path(), &dest, app.now()).await;
    assert!(
        occupied
            .expect_err("non-empty")
            .to_string()
            .contains("is not empty")
    );
}
on_both_backends!(a_changed_byte_is_refused_and_the_target_stays_empty);

async fn a_database_from_a_newer_release_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let url = app.db.url.clone();
    app.store().close().await;
    with_raw_pool!(url, pool => {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (9999, 'from the future', TRUE, $1, 0)",
        )
        .bind(vec![0u8; 48])
        .execute(&pool)
        .await
        .unwrap();
    });
    let refused = legibility::store::Store::connect(&url).await;
    let message = refused.expect_err("a newer schema").to_string();
    assert!(
        message.contains("newer Legibility Lab (schema version 9999"),
        "{message}"
    );
}
on_both_backends!(a_database_from_a_newer_release_is_refused);

#[tokio::test]
async fn scheduled_backups_keep_the_newest() {
    let app = TestApp::start(Backend::Sqlite).await;
    let models = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let start = 1_796_657_400_000;
    for minute in 0..4 {
        backup::scheduled_backup(
            app.store(),
            models.path(),
            folder.path(),
            2,
            start + minute * 60_000,
        )
        .await
        .unwrap();
    }
    let mut kept: Vec<String> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        ["legibility-20261207T153200Z", "legibility-20261207T153300Z"]
    );
}

/// The commands a user runs: `legibility backup DEST` and `legibility restore SRC`.
async fn the_backup_and_restore_commands(backend: Backend) {
    use std::process::Command;
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(4, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 2).await;
    app.judge_all(&tokens, truthful).await;
    let models = models_folder();
    let folder = tempfile::tempdir().unwrap();
    let dest = folder.path().join("nightly");
    app.store_verifier_scores(fixture.study_id, |i, _| i as f64)
        .await;
    let run = |url: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_legibility"))
            .args(args)
            .env("DATABASE_URL", url)
            .env_remove("LEGIBILITY_MODELS_DIR")
            .output()
            .expect("run legibility")
    };
    let written = run(
        &app.db.url,
        &[
            "backup",
            dest.to_str().unwrap(),
            "--models-dir",
            models.path().to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&written.stdout);
    assert!(written.status.success(), "{written:?}");
    assert!(stdout.contains("8 judgements, 1 studies"), "{stdout}");

    let target = TestDb::new(backend).await;
    let restored_models = tempfile::tempdir().unwrap();
    let restore_args = [
        "restore",
        dest.to_str().unwrap(),
        "--models-dir",
        restored_models.path().to_str().unwrap(),
    ];
    let restored = run(&target.url, &restore_args);
    let stdout = String::from_utf8_lossy(&restored.stdout);
    assert!(restored.status.success(), "{restored:?}");
    assert!(
        stdout.contains("restored 8 judgements, 1 studies and 1 checkpoint files"),
        "{stdout}"
    );
    assert_eq!(judgements(&target.url).await, judgements(&app.db.url).await);

    let again = run(&target.url, &restore_args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.contains("not empty") || stderr.contains("already exists"),
        "{stderr}"
    );
}
on_both_backends!(the_backup_and_restore_commands);
