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
