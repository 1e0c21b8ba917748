//! Tests of the source's internals against the real MySQL/MariaDB server named by `KOBO_TEST_MYSQL_URL`
//! (`kobo_testkit::db::MysqlDb`; each test creates and drops its own database): its read-only sessions
//! and transactions (MariaDB's `max_statement_time`), the statements of a scrape. What every database
//! source must do is the shared backend suite of the exporter's tests (`tests/it/backends`), run on this
//! source too.

use std::time::Duration;

use kobo_backend_api::{DataSource, DatabaseOptions};
use kobo_testkit::db::{more_workers, MysqlDb, TestDb, READER_PASSWORD};
use mysql_async::prelude::Queryable;

use crate::{connect, queries, snapshot_tx, MysqlSource};

/// The message of a statement that must fail.
fn refused<T>(result: Result<T, mysql_async::Error>, what: &str) -> String {
    connect::describe(&result.err().unwrap_or_else(|| panic!("{what} succeeded")))
}

#[tokio::test]
async fn the_exporters_sessions_and_transactions_are_read_only_for_an_administrator_and_a_reader() {
    let Some(mut db) = MysqlDb::with_fixture().await else {
        return;
    };
    let reader = db.create_reader().await;
    let admin = MysqlSource::new(DatabaseOptions {
        query_timeout: Duration::from_millis(2500),
        ..db.options()
    })
    .expect("source");
    let as_reader = MysqlSource::new(DatabaseOptions::new(
        db.user_url(&reader, Some(READER_PASSWORD)),
    ))
    .expect("source");
    const WRITE: &str = "UPDATE hub_worker SET enabled = 1 - enabled";
    // The worker query of a scrape runs without START TRANSACTION: the session must make it read-only. The
    // reader's missing privilege is what the server checks first.
    for (source, expected) in [(&admin, "read-only"), (&as_reader, "lacks a privilege")] {
        let mut conn = connect::acquire(&source.pool, Duration::from_secs(3), &source.context)
            .await
            .expect("conn");
        let message = refused(conn.query_drop(WRITE).await, WRITE);
        assert!(message.contains(expected), "{message}");
    }
    let mut conn = connect::acquire(&admin.pool, Duration::from_secs(3), &admin.context)
        .await
        .expect("conn");
    let mut tx = conn.start_transaction(snapshot_tx()).await.expect("begin");
    let settings: Option<(String, String, String)> = tx
        .query_first("SELECT @@tx_isolation, @@max_statement_time, @@group_concat_max_len")
        .await
        .expect("settings");
    let (isolation, limit, concat) = settings.expect("one row");
    assert_eq!(
        (isolation.as_str(), concat.as_str()),
        ("REPEATABLE-READ", "16777216")
    );
    assert_eq!(
        limit.parse::<f64>().ok(),
        Some(2.5),
        "max_statement_time is the query timeout"
    );
    let message = refused(tx.query_drop(WRITE).await, WRITE);
    assert!(message.contains("read-only"), "{message}");
}

#[tokio::test]
async fn a_scrape_is_a_constant_number_of_statements() {
    let Some(db) = MysqlDb::with_fixture().await else {
        return;
    };
    let source = MysqlSource::new(db.options()).expect("source");
    // Counts the statements of one read on the source's own connection (the session's `Questions`).
    let statements = |with_tasks: bool| {
        let source = &source;
        async move {
            source.collect().await.expect("collect");
            let queries = source.cached_queries().expect("queries");
            let mut conn = connect::acquire(&source.pool, Duration::from_secs(3), &source.context)
                .await
                .expect("conn");
            let questions = |row: Option<(String, u64)>| row.map(|(_, n)| n).expect("Questions");
            let before = questions(
                conn.query_first("SHOW SESSION STATUS LIKE 'Questions'")
                    .await
                    .expect("status"),
            );
            let read = queries::read(&mut conn, &queries, with_tasks, &source.context)
                .await
                .expect("read");
            let after = questions(
                conn.query_first("SHOW SESSION STATUS LIKE 'Questions'")
                    .await
                    .expect("status"),
            );
            // `Questions` counts the SHOW that reads it.
            (read.workers.len(), after - before - 1)
        }
    };
    assert_eq!(statements(false).await, (5, 1), "one worker query");
    assert_eq!(
        statements(true).await,
        (5, 3),
        "plus the two task aggregates"
    );
    db.execute(&more_workers(45)).await;
    assert_eq!(
        statements(false).await,
        (50, 1),
        "still one query with ten times the workers"
    );
    assert_eq!(statements(true).await, (50, 3));
}

#[test]
fn absurd_max_connections_and_timeouts_are_refused_or_harmless() {
    // 2147483647 made mysql_async allocate for that many connections and abort the process.
    for max_connections in [0, 1001, 2_147_483_647, u32::MAX] {
        let options = DatabaseOptions {
            max_connections,
            ..DatabaseOptions::new("mysql://u@127.0.0.1:1/d")
        };
        let error = MysqlSource::new(options)
            .err()
            .unwrap_or_else(|| panic!("max_connections {max_connections} was accepted"));
        assert!(
            error.to_string().contains("from 1 to 1000"),
            "{max_connections}: {error}"
        );
    }
    // Durations whose sum overflows: the client-side limit saturates instead of panicking.
    let source = MysqlSource::new(DatabaseOptions {
        connect_timeout: Duration::MAX,
        query_timeout: Duration::MAX,
        ..DatabaseOptions::new("mysql://u@127.0.0.1:1/d")
    })
    .expect("lazy");
    assert_eq!(source.client_timeout(), Duration::MAX);
}
