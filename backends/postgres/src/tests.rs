//! Tests of the source's internals against the real PostgreSQL server named by `KOBO_TEST_POSTGRES_URL`
//! (`kobo_testkit::db::PostgresDb`; each test creates and drops its own database): its read-only sessions
//! and transactions, the statements of a scrape, its session set-up. What every database source must do
//! is the shared backend suite of the exporter's tests (`tests/it/backends`), run on this source too.

use kobo_testkit::CollectExt;
use std::time::{Duration, Instant};

use kobo_backend_api::normalise::HubSchema;
use kobo_backend_api::{DatabaseOptions, SourceError, TaskCount, WorkerRecord, WorkerTaskCount};
use kobo_backend_sql::{Connection as _, Driver};
use kobo_testkit::db::{PostgresDb, READER_PASSWORD, TestDb, more_workers};
use sqlx::Executor;

use crate::driver::{BEGIN, PgLease};
use crate::{PostgresSource, connect, open, scrape_sql};

fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(10)
}

async fn lease_of(source: &PostgresSource) -> PgLease {
    source.driver().connect(soon()).await.expect("conn")
}

#[tokio::test]
async fn the_exporters_sessions_and_transactions_are_read_only_for_a_superuser_and_a_reader() {
    let Some(mut db) = PostgresDb::with_fixture().await else {
        return;
    };
    let superuser = open(db.options()).expect("source");
    let mut lease = lease_of(&superuser).await;
    let conn = lease.conn();
    conn.execute(BEGIN).await.expect("begin");
    for (setting, expected) in [
        ("transaction_isolation", "repeatable read"),
        // statement_timeout is the query timeout.
        ("statement_timeout", "5s"),
        ("TimeZone", "UTC"),
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&mut *conn)
            .await
            .expect("show");
        assert_eq!(value, expected, "{setting}");
    }
    drop(lease);
    let reader = db.create_reader().await;
    let as_reader = open(DatabaseOptions::new(
        db.user_url(&reader, Some(READER_PASSWORD)),
    ))
    .expect("source");
    // The worker query of a scrape runs without BEGIN: the session default must make it read-only, as the
    // scrape's transaction is. For the reader, whose role may not write at all, read-only comes first.
    for (who, source) in [("superuser", &superuser), ("reader", &as_reader)] {
        let mut lease = lease_of(source).await;
        let conn = lease.conn();
        for write in [
            "UPDATE hub_worker SET enabled = NOT enabled",
            "INSERT INTO hub_channel (id, name) VALUES (99, 'x')",
        ] {
            let message = refused(conn.execute(write).await, write);
            assert!(
                message.contains("SQLSTATE 25006"),
                "{who}, session: {message}"
            );
            conn.execute(BEGIN).await.expect("begin");
            let message = refused(conn.execute(write).await, write);
            assert!(
                message.contains("read-only transaction") && message.contains("SQLSTATE 25006"),
                "{who}, transaction: {message}"
            );
            conn.execute("ROLLBACK").await.expect("rollback");
        }
    }
}

#[tokio::test]
async fn a_scrape_reads_hub_worker_once_whatever_the_number_of_workers() {
    let Some(db) = PostgresDb::with_fixture().await else {
        return;
    };
    let source = open(db.options()).expect("source");
    // Counts scans of hub_worker by one read, inside a scrape's transaction (`pg_stat_xact_user_tables` is
    // backend-local and immediate, unlike pg_stat_statements, which may not be installed; it may include
    // earlier transactions not yet flushed, hence the difference).
    const HUB_WORKER_SCANS: &str = "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = 'hub_worker'";
    let sql = scrape_sql(&HubSchema { min_priority: true });
    let scans = |with_tasks: bool| {
        let (source, sql) = (&source, &sql);
        async move {
            // The statements of a collection, on a connection of the source, as the engine runs them.
            let mut lease = lease_of(source).await;
            lease.conn().execute(BEGIN).await.expect("begin");
            let before: i64 = sqlx::query_scalar(HUB_WORKER_SCANS)
                .fetch_one(&mut *lease.conn())
                .await
                .expect("stats");
            let workers: Vec<WorkerRecord> = lease.fetch(&sql.workers, soon()).await.expect("read");
            if with_tasks {
                let _: Vec<TaskCount> = lease.fetch(&sql.task_groups, soon()).await.expect("read");
                let _: Vec<WorkerTaskCount> =
                    lease.fetch(&sql.worker_tasks, soon()).await.expect("read");
            }
            let after: i64 = sqlx::query_scalar(HUB_WORKER_SCANS)
                .fetch_one(&mut *lease.conn())
                .await
                .expect("stats");
            (workers.len(), after - before)
        }
    };
    assert_eq!(scans(false).await, (5, 1), "one worker query");
    // The per-worker task counts join hub_worker once per matching task (an index lookup each): that
    // depends on the tasks and the plan, never on the number of workers.
    let (_, with_tasks) = scans(true).await;
    db.execute(&more_workers(45)).await;
    assert_eq!(
        scans(false).await,
        (50, 1),
        "still one worker query with ten times the workers"
    );
    assert_eq!(scans(true).await, (50, with_tasks));
}

#[tokio::test]
async fn a_failed_session_set_up_is_reported_as_such() {
    let Some(db) = PostgresDb::with_fixture().await else {
        return;
    };
    // What a query_timeout beyond statement_timeout's int4 of milliseconds gave before it was refused.
    let setup = crate::connect::session_setup_sql(Duration::from_secs(3_000_000));
    let source = crate::driver::open_with_setup(db.options(), setup).expect("source");
    let started = Instant::now();
    let error = source.collect_workers().await.expect_err("set-up fails");
    let took = started.elapsed();
    let text = error.to_string();
    assert!(
        took < Duration::from_secs(1),
        "took {took:?} (connect_timeout 3 s)"
    );
    assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
    assert!(
        text.contains("session set-up")
            && text.contains("statement_timeout")
            && text.contains("SQLSTATE 22023"),
        "{text}"
    );
    assert!(!text.contains("busy"), "{text}");
}

#[test]
fn a_query_timeout_beyond_statement_timeout_or_absurd_max_connections_are_refused() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let with = |query_timeout: Duration, max_connections: u32| DatabaseOptions {
            query_timeout,
            max_connections,
            ..DatabaseOptions::new("postgres://u:pw@127.0.0.1:1/d")
        };
        // statement_timeout is an int4 of milliseconds: 2147483.647 s at most.
        open(with(Duration::from_secs(2_147_483), 2)).expect("the largest");
        for (options, expected) in [
            (
                with(Duration::from_secs(2_147_484), 2),
                ["query_timeout", "2147483 s"],
            ),
            (
                with(Duration::from_secs(u64::MAX), 2),
                ["query_timeout", "2147483 s"],
            ),
            (
                with(Duration::from_secs(5), 1001),
                ["max_connections", "1000"],
            ),
            (
                with(Duration::from_secs(5), u32::MAX),
                ["max_connections", "1000"],
            ),
        ] {
            let what = format!("{options:?}");
            let error = open(options).err().expect(&what);
            assert!(matches!(error, SourceError::Config(_)), "{what}: {error:?}");
            let text = error.to_string();
            assert!(
                expected.iter().all(|e| text.contains(e)) && !text.contains("pw"),
                "{what}: {text}"
            );
        }
        open(with(Duration::from_secs(5), 1000)).expect("1000 connections");
    });
}

/// The message of a statement that must fail.
fn refused<T>(result: Result<T, sqlx::Error>, what: &str) -> String {
    connect::describe(&result.err().unwrap_or_else(|| panic!("{what} succeeded")))
}
