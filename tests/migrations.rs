//! Versioned migrations: applied once at start-up, re-opening is a no-op, and a database whose
//! applied migration differs from the shipped one (an edited migration) is refused.

mod common;

use common::{Backend, TestDb};
use legibility::store::Store;

async fn migrations_apply_once_and_detect_edits(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.expect("first start migrates");
    store.close().await;
    let again = Store::connect(&db.url)
        .await
        .expect("second start finds nothing to do");
    again.close().await;

    let tamper = "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1";
    with_raw_pool!(db.url, pool => {
        sqlx::query(tamper).bind(vec![0u8; 48]).execute(&pool).await.unwrap();
    });
    let refused = Store::connect(&db.url)
        .await
        .expect_err("an edited migration must be refused");
    assert!(refused.to_string().contains("migration 1"), "{refused}");
}
on_both_backends!(migrations_apply_once_and_detect_edits);

/// Migration 0009 on a database that already holds graded solutions and a study: each
/// solution's outcome follows its `is_correct`, and the study has left nothing out.
async fn solution_grades_migration_backfills_existing_rows(backend: Backend) {
    let db = TestDb::new(backend).await;
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        std::fs::File::create(path).expect("create the SQLite file");
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let name = |p: &std::path::Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let (earlier, this): (Vec<_>, Vec<_>) = files
        .into_iter()
        .filter(|p| name(p)[..4] <= *"0009")
        .partition(|p| name(p)[..4] < *"0009");
    assert_eq!(this.len(), 1, "{this:?}");
    let run = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let (set, problem, checkpoint, study) = (
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    );
    let solutions = [(uuid::Uuid::now_v7(), true), (uuid::Uuid::now_v7(), false)];
    let rows: Vec<(bool, String)> = with_raw_pool!(db.url, pool => {
        for file in &earlier {
            sqlx::raw_sql(sqlx::AssertSqlSafe(run(file))).execute(&pool).await.unwrap();
        }
        sqlx::query("INSERT INTO problem_sets (id, name, created_at) VALUES ($1, 'old', 0)")
            .bind(set).execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO problems (id, problem_set_id, position, question, question_sha, ground_truth,
                                   reference_solution, created_at)
             VALUES ($1, $2, 1, 'How many?', 'sha', '18', '#### 18', 0)",
        )
        .bind(problem).bind(set).execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO checkpoints (id, kind, label, round, created_at) VALUES ($1, 'prover', 'p', 0, 0)",
        )
        .bind(checkpoint).execute(&pool).await.unwrap();
        for (id, is_correct) in solutions {
            sqlx::query(
                "INSERT INTO solutions (id, problem_id, checkpoint_id, role, text, text_sha,
                                        extracted_answer, is_correct, created_at)
                 VALUES ($1, $2, $3, 'helpful', $4, $4, NULL, $5, 0)",
            )
            .bind(id).bind(problem).bind(checkpoint).bind(id.to_string()).bind(is_correct)
            .execute(&pool).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO studies (id, name, time_limit_ms, judgements_per_solution, reclaim_grace_ms,
                                  status, created_at)
             VALUES ($1, 'old study', 45000, 1, 15000, 'open', 0)",
        )
        .bind(study).execute(&pool).await.unwrap();

        sqlx::raw_sql(sqlx::AssertSqlSafe(run(&this[0]))).execute(&pool).await.unwrap();

        let left_out: (i64,) = sqlx::query_as("SELECT ungradable_left_out FROM studies")
            .fetch_one(&pool).await.unwrap();
        assert_eq!(left_out.0, 0);
        // An outcome outside the three is refused.
        let bad = sqlx::query("UPDATE solutions SET grade = 'maybe'").execute(&pool).await;
        assert!(bad.is_err(), "the grade column accepted 'maybe'");
        sqlx::query_as("SELECT is_correct, grade FROM solutions ORDER BY is_correct DESC")
            .fetch_all(&pool).await.unwrap()
    });
    assert_eq!(
        rows,
        vec![
            (true, "correct".to_string()),
            (false, "incorrect".to_string())
        ]
    );
}
on_both_backends!(solution_grades_migration_backfills_existing_rows);
