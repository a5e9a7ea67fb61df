//! A full database (issue 22): SQLite stops growing at the `max_size_mib` cap of DATABASE_URL as
//! it would on a full disk (SQLITE_FULL). Judgement writes and an import then fail with 507 and a
//! message that says nothing was saved; every acknowledged judgement stays, nothing is
//! half-written, the rater keeps the item and its deadline, and once space returns the same
//! running server takes the same answer and the same import.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{Backend, TestApp, truthful};
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
    let gsm8k = std::fs::read_to_string(common::gsm8k("test")).unwrap();
    let big: String = gsm8k.lines().take(400).collect::<Vec<_>>().join("\n");
    let before = problem_count(&base_url).await;
    let refused = admin
        .post_multipart(
            "/admin/import",
            &[("kind", "problems"), ("set", "big")],
            big.as_bytes(),
        )
        .await;
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
            let answer = rater
                .post_json(
                    "/api/rater/judgements",
                    &serde_json::json!({"assignment_id": id, "verdict": verdict}),
                )
                .await;
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
        let answer = rater
            .post_json(
                "/api/rater/judgements",
                &serde_json::json!({"assignment_id": id, "verdict": verdict}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        acknowledged.insert(id);
    }
    let imported = admin
        .post_multipart(
            "/admin/import",
            &[("kind", "problems"), ("set", "big")],
            big.as_bytes(),
        )
        .await;
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
