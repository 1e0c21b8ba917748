//! Tests against the real MySQL/MariaDB server named by `KOBO_TEST_MYSQL_URL` (see [`crate::testing`]):
//! each creates and drops its own database.

mod access;
mod failures;
mod hub;

use std::time::{Duration, Instant};

use kobo_backend_api::testing::{comparable, test_data};
use kobo_backend_api::{DataSource, DatabaseOptions, HubSnapshot, SourceError};
use kobo_backend_sqlite::SqliteSource;

use crate::testing::TestDatabase;
use crate::MysqlSource;

/// The SQLite source's reading of `schema-sqlite.sql` followed by `scripts`: the reference.
async fn sqlite_reference(scripts: &[&str]) -> HubSnapshot {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("reference.sqlite3");
    let db = rusqlite::Connection::open(&file).expect("SQLite reference");
    for script in
        std::iter::once(test_data("schema-sqlite.sql").as_str()).chain(scripts.iter().copied())
    {
        db.execute_batch(script).expect("SQLite reference script");
    }
    db.close().map_err(|(_, e)| e).expect("close");
    let reference = SqliteSource::open(&file, None).expect("SQLite reference source");
    comparable(
        reference
            .collect_with_tasks()
            .await
            .expect("SQLite reference snapshot"),
    )
}

/// The fixture hub as the SQLite source reads it.
async fn sqlite_fixture() -> HubSnapshot {
    sqlite_reference(&[&test_data("fixture.sql")]).await
}

/// Workers and tasks, as the exporter's task refresh reads them.
async fn collect(options: DatabaseOptions) -> Result<HubSnapshot, SourceError> {
    MysqlSource::new(options)?
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
