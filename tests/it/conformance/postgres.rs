//! The conformance hubs on PostgreSQL: kobo's PostgreSQL schema in a fresh database on the test server
//! (`KOBO_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards.

use kobo_backend_postgres::testing::TestDatabase;
use kobo_backend_postgres::PostgresSource;
use kobo_exporter::api::DatabaseOptions;

use super::hubs::{self, Hub};

/// Builds the hub in a new database; `None` when the server is unreachable outside CI (the test skips).
pub async fn load(hub: &Hub) -> Option<TestDatabase> {
    let db = TestDatabase::create().await?;
    db.load_schema().await;
    db.execute_each(&hub.statements).await;
    for (table, column) in &hub.drop_columns {
        db.drop_column(table, column).await;
    }
    Some(db)
}

#[tokio::test]
async fn every_hub_renders_its_shared_snapshot() {
    for hub in hubs::all() {
        let Some(db) = load(&hub).await else { return };
        let options = DatabaseOptions {
            worker_dir: hub.worker_dir.worker_dir(),
            ..db.options()
        };
        let source = PostgresSource::new(options)
            .unwrap_or_else(|e| panic!("opening hub {}: {e}", hub.snapshot));
        super::assert_conforms(&hub, &source).await;
    }
}
