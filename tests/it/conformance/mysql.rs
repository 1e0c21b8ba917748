//! The conformance hubs on MySQL/MariaDB: kobo's MariaDB schema in a fresh database on the test server
//! (`KOBO_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`), dropped afterwards. Statements run
//! with `NO_BACKSLASH_ESCAPES`, so their string literals mean what they mean on the other databases.

use kobo_backend_mysql::testing::TestDatabase;
use kobo_backend_mysql::MysqlSource;
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
        let source = MysqlSource::new(options)
            .unwrap_or_else(|e| panic!("opening hub {}: {e}", hub.snapshot));
        super::assert_conforms(&hub, &source).await;
    }
}
