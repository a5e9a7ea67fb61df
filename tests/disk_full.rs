//! A full database (issue 22): SQLite stops growing at the `max_size_mib` cap of DATABASE_URL as
//! it would on a full disk (SQLITE_FULL). Judgement writes and an import then fail with 507 and a
//! message that says nothing was saved; every acknowledged judgement stays, nothing is
//! half-written, the rater keeps the item and its deadline, and once space returns the same
//! running server takes the same answer and the same import.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{Backend, TestApp, TestDb, truthful};
use legibility::domain::UserRole;
use legibility::web::WebConfig;
use uuid::Uuid;

const PAGE: f64 = 4096.0;

async fn judged_assignments(url: &str) -> Vec<Uuid> {
    with_raw_pool!(url, pool => {
        sqlx::query_scalar("SELECT assignment_id FROM judgements")
            .fetch_all(&pool)
            .await
            .unwrap()
    })
}

async fn problem_count(url: &str) -> i64 {
    with_raw_pool!(url, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM problems").fetch_one(&pool).await.unwrap()
    })
}

/// The first 400 problems of GSM8K's test split, imported through the admin page.
async fn import_big(admin: &mut common::Client<'_>) -> common::TestResponse {
    let gsm8k = std::fs::read_to_string(common::gsm8k("test")).unwrap();
    let big: String = gsm8k.lines().take(400).collect::<Vec<_>>().join("\n");
    admin
        .post_multipart(
            "/admin/import",
            &[("kind", "problems"), ("set", "big")],
            big.as_bytes(),
        )
        .await
}

/// A rater's answer to the item it holds.
async fn answer(
    rater: &mut common::Client<'_>,
    assignment_id: &str,
    verdict: &str,
) -> common::TestResponse {
    rater
        .post_json(
            "/api/rater/judgements",
            &serde_json::json!({"assignment_id": assignment_id, "verdict": verdict}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_database_refuses_writes_cleanly_and_recovers() {
    let setup = TestApp::start(Backend::Sqlite).await;
    let fixture = setup.fixture(30, 1, 2, 45_000).await;
    let study = fixture.study_id;
    let tokens = setup.invite(study, 60).await;
    // Ballast stands in for the rest of a disk: deleting it is space returning.
    let pages: i64 = with_raw_pool!(setup.db.url, pool => {
        sqlx::query("CREATE TABLE ballast (x BLOB)").execute(&pool).await.unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO ballast SELECT randomblob(3000) FROM n",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
        sqlx::query_scalar("PRAGMA page_count").fetch_one(&pool).await.unwrap()
    });
    let TestApp { state, mut db, .. } = setup;
    state.store.close().await;
    // Room for a few pages more: staff accounts and sessions fit, 120 judgements do not.
    let cap_mib = (pages + 6) as f64 * PAGE / (1024.0 * 1024.0);
    db.url = format!("{}?max_size_mib={cap_mib}", db.url);
    let app = TestApp::open(db, WebConfig::default()).await;
    let base_url = app.db.url.split('?').next().unwrap().to_string();
    let mut admin = app.staff_client("admin", UserRole::Admin).await;

    // An import that does not fit: 507, the message says nothing was saved, no problem kept.
    let before = problem_count(&base_url).await;
    let refused = import_big(&mut admin).await;
    assert_eq!(
        refused.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        refused.body
    );
    assert!(
        refused
            .body
            .contains("storage is full, so nothing was saved"),
        "{}",
        refused.body
    );
    assert_eq!(problem_count(&base_url).await, before);

    // Raters judge, each holding an item, until writes do not fit: serving an item and storing
    // an answer both stop with 507.
    let mut raters = Vec::new();
    let mut refused_items = 0;
    for token in &tokens {
        let mut client = app.rater_client(token).await;
        let item = client.get("/api/rater/item").await;
        if item.status == StatusCode::INSUFFICIENT_STORAGE {
            refused_items += 1;
            raters.push((client, None));
        } else {
            assert_eq!(item.json()["status"], "item");
            raters.push((client, Some(item.json())));
        }
    }
    let mut acknowledged = BTreeSet::new();
    let mut refused_answers = Vec::new();
    while raters.iter().any(|(_, item)| item.is_some()) {
        for (index, (rater, held)) in raters.iter_mut().enumerate() {
            let Some(item) = held.take() else { continue };
            let id: Uuid = item["assignment_id"].as_str().unwrap().parse().unwrap();
            let verdict = truthful(item["solution"].as_str().unwrap_or_default());
            let answer = answer(rater, &id.to_string(), verdict).await;
            match answer.status {
                StatusCode::OK => {
                    acknowledged.insert(id);
                }
                StatusCode::INSUFFICIENT_STORAGE => {
                    assert!(answer.body.contains("storage is full"), "{}", answer.body);
                    refused_answers.push((index, id, verdict, item["deadline"].clone()));
                    continue;
                }
                other => panic!("{other}: {}", answer.body),
            }
            let next = rater.get("/api/rater/item").await;
            if next.status == StatusCode::INSUFFICIENT_STORAGE {
                assert!(next.body.contains("storage is full"), "{}", next.body);
                refused_items += 1;
                continue;
            }
            let next = next.json();
            if next["status"] == "item" {
                *held = Some(next);
            }
        }
    }
    assert!(acknowledged.len() < 120, "the cap was never reached");
    eprintln!(
        "{} judgements acknowledged before the database was full; refused: {} answers, {} items",
        acknowledged.len(),
        refused_answers.len(),
        refused_items
    );
    assert!(
        !refused_answers.is_empty(),
        "no answer hit the full database"
    );
    let stored: BTreeSet<Uuid> = judged_assignments(&base_url).await.into_iter().collect();
    assert_eq!(
        stored, acknowledged,
        "every acknowledged judgement, and nothing else"
    );

    // Space returns; the same server takes the refused answer (same item, same deadline) and
    // the import, with nothing duplicated.
    with_raw_pool!(base_url, pool => {
        sqlx::query("DELETE FROM ballast").execute(&pool).await.unwrap();
    });
    for (index, id, verdict, deadline) in refused_answers {
        let rater = &mut raters[index].0;
        let item = rater.get("/api/rater/item").await.json();
        assert_eq!(
            item["assignment_id"],
            id.to_string(),
            "the rater keeps the item"
        );
        assert_eq!(item["deadline"], deadline, "and its deadline");
        let answer = answer(rater, &id.to_string(), verdict).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        acknowledged.insert(id);
    }
    let imported = import_big(&mut admin).await;
    assert!(
        imported.status.is_success() || imported.status.is_redirection(),
        "{}",
        imported.body
    );
    assert_eq!(problem_count(&base_url).await, before + 400);
    app.judge_all(&tokens, truthful).await;
    let all = judged_assignments(&base_url).await;
    let distinct: BTreeSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), 120);
    assert_eq!(distinct.len(), 120);
    assert!(acknowledged.is_subset(&distinct));
}

/// Where the real-disk scenario finds its small file system (see below).
const SMALL_DISK: &str = "LEGIBILITY_TEST_SMALL_DISK";

/// A real full disk: the scenario below runs in a user and mount namespace of its own
/// (`unshare`, no root needed where unprivileged user namespaces are on, as on Debian) with its
/// database, models folder and backups on a 48 MiB tmpfs, which a ballast file fills.
#[test]
fn a_full_disk_refuses_writes_cleanly_and_recovers() {
    let mount = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
        .arg("mount -t tmpfs -o size=48m legibility-test \"$0\" && exec \"$@\"")
        .arg(mount.path())
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "on_a_small_disk",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SMALL_DISK, mount.path())
        .output()
        .expect("run unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains("1 passed"),
        "the scenario on a small disk failed:\n{text}"
    );
    eprintln!("{text}");
}

/// Fills the file system holding `dir` with a ballast file; returns it.
fn fill_disk(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let ballast = dir.join("ballast");
    let mut file = std::fs::File::create(&ballast).unwrap();
    for chunk in [1 << 20, 4096, 512] {
        let bytes = vec![0u8; chunk];
        loop {
            match file.write(&bytes) {
                Ok(n) if n == chunk => {}
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
    }
    let _ = file.sync_all();
    ballast
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run by a_full_disk_refuses_writes_cleanly_and_recovers on a tmpfs of its own"]
async fn on_a_small_disk() {
    let disk =
        std::path::PathBuf::from(std::env::var(SMALL_DISK).expect("run through its wrapper"));
    let models = disk.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let db = TestDb::at(format!("sqlite://{}", disk.join("legibility.db").display()));
    let config = WebConfig {
        models_dir: models.clone(),
        ..WebConfig::default()
    };
    let app = TestApp::open(db, config).await;
    let fixture = app.fixture(30, 1, 2, 45_000).await;
    let tokens = app.invite(fixture.study_id, 60).await;
    let mut admin = app.staff_client("admin", UserRole::Admin).await;
    let mut raters = Vec::new();
    for token in &tokens {
        let mut client = app.rater_client(token).await;
        let item = client.get("/api/rater/item").await.json();
        assert_eq!(item["status"], "item");
        raters.push((client, item));
    }
    let url = app.db.url.clone();
    with_raw_pool!(url, pool => {
        // An empty write-ahead log, so every write needs new blocks.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    });
    let ballast = fill_disk(&disk);

    // Answers: every one refused with 507, none stored.
    let before: BTreeSet<Uuid> = judged_assignments(&url).await.into_iter().collect();
    let mut refused = 0;
    for (rater, item) in &mut raters {
        let answer = answer(
            rater,
            item["assignment_id"].as_str().unwrap(),
            truthful(item["solution"].as_str().unwrap()),
        )
        .await;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::INSUFFICIENT_STORAGE => {
                assert!(answer.body.contains("storage is full"), "{}", answer.body);
                refused += 1;
            }
            other => panic!("{other}: {}", answer.body),
        }
    }
    let after: BTreeSet<Uuid> = judged_assignments(&url).await.into_iter().collect();
    assert!(refused > 0, "no answer hit the full disk");
    assert_eq!(after.len(), before.len() + raters.len() - refused);

    // Downloads write nothing on the server: they go on while the disk is full.
    let download = admin
        .get(&format!("/studies/{}/attempts.jsonl", fixture.study_id))
        .await;
    assert_eq!(download.status, StatusCode::OK, "{}", download.body);
    let judged_rows = download
        .body
        .lines()
        .filter(|line| !line.contains("\"verdict\":null"))
        .count();
    assert_eq!(judged_rows, after.len(), "{}", download.body);

    // An import, an upload and a backup: refused, nothing half-written.
    let problems = problem_count(&url).await;
    let import = import_big(&mut admin).await;
    assert_eq!(
        import.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        import.body
    );
    assert_eq!(problem_count(&url).await, problems);
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/prover-tiny");
    let files: Vec<(String, Vec<u8>)> = ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .map(|name| (name.to_string(), std::fs::read(shipped.join(name)).unwrap()))
        .collect();
    let upload = admin
        .upload_checkpoint("uploaded on a small disk", "0", "prover", &files)
        .await;
    assert_eq!(
        upload.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        upload.body
    );
    assert!(upload.body.contains("disk is full"), "{}", upload.body);
    let leftovers = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(leftovers(&models.join("uploads")), Vec::<String>::new());
    let backups = disk.join("backups");
    std::fs::create_dir_all(&backups).unwrap_or(());
    let backup =
        legibility::backup::backup(app.store(), &models, &backups.join("b1"), app.now()).await;
    assert!(backup.is_err(), "a backup onto a full disk");
    assert_eq!(
        leftovers(&backups),
        Vec::<String>::new(),
        "no half-written backup"
    );

    // Space returns: the same server takes everything.
    std::fs::remove_file(&ballast).unwrap();
    for (rater, item) in &mut raters {
        if after.contains(
            &item["assignment_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        ) {
            continue;
        }
        let again = rater.get("/api/rater/item").await.json();
        assert_eq!(
            again["assignment_id"], item["assignment_id"],
            "the rater keeps the item"
        );
        assert_eq!(again["deadline"], item["deadline"], "and its deadline");
        let answer = answer(
            rater,
            item["assignment_id"].as_str().unwrap(),
            truthful(item["solution"].as_str().unwrap()),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    assert_eq!(
        judged_assignments(&url).await.len(),
        before.len() + raters.len()
    );
    let import = import_big(&mut admin).await;
    assert!(import.status.is_success(), "{}", import.body);
    assert_eq!(problem_count(&url).await, problems + 400);
    let upload = admin
        .upload_checkpoint("uploaded on a small disk", "0", "prover", &files)
        .await;
    assert!(
        upload.status.is_redirection() || upload.status.is_success(),
        "{}",
        upload.body
    );
    assert_eq!(leftovers(&models.join("uploads")).len(), 1);
    legibility::backup::backup(app.store(), &models, &backups.join("b1"), app.now())
        .await
        .expect("a backup once space returned");
    app.judge_all(&tokens, truthful).await;
    let all = judged_assignments(&url).await;
    assert_eq!(all.len(), 120);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 120);
    eprintln!(
        "full disk: {refused} of {} answers refused, import/upload/backup refused; all recovered",
        raters.len()
    );
}
