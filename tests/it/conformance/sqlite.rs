//! The conformance hubs on SQLite: kobo's SQLite schema in a temporary file, opened read-only.

use kobo_backend_sqlite::SqliteSource;
use kobo_exporter::api::SourceError;

use super::hubs::{self, Hub};

/// Builds the hub in a temporary SQLite file and opens it with the SQLite source.
pub fn load(hub: &Hub) -> (tempfile::TempDir, Result<SqliteSource, SourceError>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hub.sqlite3");
    let conn = rusqlite::Connection::open(&path).expect("create hub");
    conn.execute_batch(&kobo_testkit::data::read("schema-sqlite.sql"))
        .expect("schema");
    for statement in &hub.statements {
        conn.execute(statement, [])
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    for (table, column) in &hub.drop_columns {
        // SQLite refuses to drop an indexed column: drop its indexes first.
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT DISTINCT il.name FROM pragma_index_list(?1) il, pragma_index_info(il.name) ii \
                 WHERE ii.name = ?2 AND il.origin = 'c'",
            )
            .and_then(|mut s| s.query_map([table, column], |r| r.get(0))?.collect())
            .expect("indexes");
        for index in indexes {
            conn.execute(&format!("DROP INDEX \"{index}\""), [])
                .expect("drop index");
        }
        conn.execute(&format!("ALTER TABLE {table} DROP COLUMN {column}"), [])
            .unwrap_or_else(|e| panic!("dropping {table}.{column}: {e}"));
    }
    drop(conn);
    let source = kobo_backend_sqlite::open(&path, hub.worker_dir.worker_dir());
    (dir, source)
}

#[tokio::test]
async fn every_hub_renders_its_shared_snapshot() {
    for hub in hubs::all() {
        let (_dir, source) = load(&hub);
        let source = source.unwrap_or_else(|e| panic!("opening hub {}: {e}", hub.snapshot));
        super::assert_conforms(&hub, &source).await;
    }
}
