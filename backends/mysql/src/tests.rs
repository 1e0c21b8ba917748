//! Tests of the source's internals against the real MySQL/MariaDB server named by `KOBO_TEST_MYSQL_URL`
//! (`kobo_testkit::db::MysqlDb`; each test creates and drops its own database): its read-only sessions
//! and transactions (MariaDB's `max_statement_time`), the statements of a scrape. What every database
//! source must do is the shared backend suite of the exporter's tests (`tests/it/backends`), run on this
//! source too.

use std::time::Duration;

use kobo_backend_api::{CollectRequest, DataSource, DatabaseOptions, WorkerRecord};
use kobo_backend_sql::{Connection, Driver};
use kobo_testkit::CollectExt;
use kobo_testkit::db::{MysqlDb, READER_PASSWORD, TestDb, more_workers};
use mysql_async::prelude::Queryable;
use tokio::time::Instant;

use crate::{MysqlSource, connect, open, scrape_sql};

/// The message of a statement that must fail.
fn refused<T>(result: Result<T, mysql_async::Error>, what: &str) -> String {
    connect::describe(&result.err().unwrap_or_else(|| panic!("{what} succeeded")))
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[tokio::test]
async fn the_exporters_sessions_and_transactions_are_read_only_for_an_administrator_and_a_reader() {
    let Some(mut db) = MysqlDb::with_fixture().await else {
        return;
    };
    let reader = db.create_reader().await;
    let admin = open(db.options()).expect("source");
    let as_reader = open(DatabaseOptions::new(
        db.user_url(&reader, Some(READER_PASSWORD)),
    ))
    .expect("source");
    const WRITE: &str = "UPDATE hub_worker SET enabled = 1 - enabled";
    // The worker query of a scrape runs without START TRANSACTION: the session must make it read-only. The
    // reader's missing privilege is what the server checks first.
    for (source, expected) in [(&admin, "read-only"), (&as_reader, "lacks a privilege")] {
        let mut conn = source.driver().pool.get_conn().await.expect("conn");
        let message = refused(conn.query_drop(WRITE).await, WRITE);
        assert!(message.contains(expected), "{message}");
    }
    let mut conn = admin.driver().connect(soon()).await.expect("conn");
    let begin = kobo_backend_sql::Dialect::MYSQL.begin_snapshot;
    conn.execute(begin, soon()).await.expect("begin");
    let raw = conn.conn().expect("held");
    let settings: Option<(String, String)> = raw
        .query_first("SELECT @@tx_isolation, @@group_concat_max_len")
        .await
        .expect("settings");
    assert_eq!(
        settings,
        Some(("REPEATABLE-READ".to_string(), "16777216".to_string()))
    );
    let message = refused(raw.query_drop(WRITE).await, WRITE);
    assert!(message.contains("read-only"), "{message}");
}

/// The statements one collection runs (`Questions` of the session): the source's one connection is read
/// before and after it.
async fn statements_of(source: &MysqlSource, tasks: bool) -> (usize, u64) {
    let questions = |row: Option<(String, u64)>| row.map(|(_, n)| n).expect("Questions");
    let mut conn = source.driver().connect(soon()).await.expect("conn");
    let raw = conn.conn().expect("held");
    let id = raw.id();
    let before = questions(
        raw.query_first("SHOW SESSION STATUS LIKE 'Questions'")
            .await
            .expect("status"),
    );
    conn.release();
    let request = CollectRequest::within(Duration::from_secs(10)).tasks(tasks);
    let read = source.collect(&request).await.expect("collect");
    let mut conn = source.driver().connect(soon()).await.expect("conn");
    let raw = conn.conn().expect("held");
    assert_eq!(raw.id(), id, "the pool's one connection");
    let after = questions(
        raw.query_first("SHOW SESSION STATUS LIKE 'Questions'")
            .await
            .expect("status"),
    );
    conn.release();
    // `Questions` counts the SHOW that reads it.
    (read.workers.len(), after - before - 1)
}

#[tokio::test]
async fn a_scrape_is_a_constant_number_of_statements() {
    let Some(db) = MysqlDb::with_fixture().await else {
        return;
    };
    let source = open(DatabaseOptions {
        max_connections: 1,
        ..db.options()
    })
    .expect("source");
    // The schema is read once, at the first collection.
    source.collect_workers().await.expect("collect");
    assert_eq!(
        statements_of(&source, false).await,
        (5, 1),
        "one worker query"
    );
    assert_eq!(
        statements_of(&source, true).await,
        (5, 7),
        "plus the snapshot transaction's START and COMMIT, the two task aggregates, and the task flow's \
         start: its latest times, then the tasks near them"
    );
    db.execute(&more_workers(45)).await;
    assert_eq!(
        statements_of(&source, false).await,
        (50, 1),
        "still one query with ten times the workers"
    );
    assert_eq!(
        statements_of(&source, true).await,
        (50, 6),
        "then one task-flow read per refresh"
    );
    // The driver's own statement, as the engine runs it, decodes by name.
    let mut conn = source.driver().connect(soon()).await.expect("conn");
    let sql = scrape_sql(&kobo_backend_api::normalise::HubSchema { min_priority: true });
    let workers: Vec<WorkerRecord> = conn.fetch(&sql.workers, soon()).await.expect("fetch");
    assert_eq!(workers.len(), 50);
}

#[tokio::test]
async fn absurd_max_connections_and_timeouts_are_refused_or_harmless() {
    // 2147483647 made mysql_async allocate for that many connections and abort the process.
    for max_connections in [0, 1001, 2_147_483_647, u32::MAX] {
        let options = DatabaseOptions {
            max_connections,
            ..DatabaseOptions::new("mysql://u@127.0.0.1:1/d")
        };
        let error = open(options)
            .err()
            .unwrap_or_else(|| panic!("max_connections {max_connections} was accepted"));
        assert!(
            error.to_string().contains("from 1 to 1000"),
            "{max_connections}: {error}"
        );
    }
    // Timeouts that overflow any sum: the collection's deadline bounds it, nothing panics.
    let source = open(DatabaseOptions {
        connect_timeout: Duration::MAX,
        query_timeout: Duration::MAX,
        ..DatabaseOptions::new("mysql://u@127.0.0.1:1/d")
    })
    .expect("lazy");
    let started = std::time::Instant::now();
    let request = CollectRequest::within(Duration::from_secs(2));
    assert!(
        source.collect(&request).await.is_err(),
        "nothing listens on port 1"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}
