//! Tests against the real PostgreSQL server named by `KOBO_TEST_POSTGRES_URL` (see [`crate::testing`]):
//! each creates and drops its own database.

mod abandoned;
mod access;
mod failures;
mod hub;

use std::time::{Duration, Instant};

use kobo_backend_api::testing::comparable;
use kobo_backend_api::{DataSource, DatabaseOptions, HubSnapshot, SourceError};
use kobo_backend_sqlite::SqliteSource;

use crate::testing::{test_data, TestDatabase};
use crate::PostgresSource;

/// What the SQLite source reads from `schema-sqlite.sql` with `scripts` loaded after it.
async fn sqlite_snapshot(scripts: &[&str]) -> HubSnapshot {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hub.sqlite3");
    let conn = rusqlite::Connection::open(&path).expect("create SQLite hub");
    conn.execute_batch(&test_data("schema-sqlite.sql"))
        .expect("SQLite schema");
    for sql in scripts {
        conn.execute_batch(sql).expect("load SQLite hub");
    }
    drop(conn);
    let source = SqliteSource::open(&path, None).expect("open SQLite hub");
    comparable(
        source
            .collect_with_tasks()
            .await
            .expect("collect SQLite hub"),
    )
}

/// The fixture hub as the SQLite source reads it.
async fn sqlite_fixture() -> HubSnapshot {
    sqlite_snapshot(&[&test_data("fixture.sql")]).await
}

/// Workers and tasks, as the exporter's task refresh reads them.
async fn collect(options: DatabaseOptions) -> Result<HubSnapshot, SourceError> {
    PostgresSource::new(options)?
        .collect_with_tasks()
        .await
        .map(comparable)
}

/// Collects with `options`, which must fail within `limit`; the error.
async fn collect_error(options: DatabaseOptions, limit: Duration) -> SourceError {
    let started = Instant::now();
    let result = collect(options).await;
    let took = started.elapsed();
    assert!(took < limit, "took {took:?}, more than {limit:?}");
    result.expect_err("the collection should fail")
}

/// A hub database with the fixture loaded; `None` (skip the test) when the server cannot be reached.
async fn fixture_database() -> Option<TestDatabase> {
    let db = TestDatabase::create().await?;
    db.load_fixture().await;
    Some(db)
}
