//! Failures: nothing listening, a query stuck behind a lock, a killed connection, unusable options. Each
//! must give a clear error quickly, and the source must recover by itself.

use std::time::{Duration, Instant};

use kobo_backend_api::{DataSource, DatabaseOptions, SourceError};
use sqlx::{Connection, Executor};

use super::{collect_error, fixture_database};
use crate::{PostgresSource, APPLICATION_NAME};

#[tokio::test]
async fn a_server_that_refuses_connections_is_a_quick_clear_error() {
    let options = DatabaseOptions {
        connect_timeout: Duration::from_secs(2),
        ..DatabaseOptions::new("postgres://kobo:s3cret@127.0.0.1:1/kobo")
    };
    let error = collect_error(options, Duration::from_secs(6)).await;
    let text = error.to_string();
    assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
    assert!(
        text.contains("refused") && text.contains("127.0.0.1:1"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test]
async fn a_query_blocked_by_a_lock_times_out() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let options = DatabaseOptions {
        query_timeout: Duration::from_secs(1),
        ..db.options()
    };
    let source = PostgresSource::new(options).expect("source");
    source.collect().await.expect("collect before the lock");
    let mut locker = db.connect().await;
    locker
        .execute("BEGIN; LOCK TABLE hub_worker IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let started = Instant::now();
    let error = source.collect().await.expect_err("blocked");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(matches!(error, SourceError::Query { .. }), "{error:?}");
    assert!(error.to_string().contains("query_timeout"), "{error}");
    locker.execute("ROLLBACK").await.expect("unlock");
    source.collect().await.expect("collect after the lock");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_clear_error() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let options = DatabaseOptions {
        connect_timeout: Duration::from_secs(1),
        ..DatabaseOptions::new(format!(
            "postgres://kobo@127.0.0.1:{port}/kobo?sslmode=disable"
        ))
    };
    let error = collect_error(options, Duration::from_secs(5)).await;
    assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("did not answer"), "{error}");
    silent.abort();
}

#[tokio::test]
async fn a_killed_connection_is_replaced_at_the_next_scrape() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let source = PostgresSource::new(db.options()).expect("source");
    let before = source.collect().await.expect("collect");
    let mut admin = db.connect().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(APPLICATION_NAME)
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert!(
        !killed.is_empty() && killed.iter().all(|k| *k),
        "{killed:?}"
    );
    let after = source.collect().await.expect("collect after the kill");
    assert_eq!(before.workers, after.workers);
    drop(admin.close().await);
}

#[test]
fn construction_does_no_io_and_refuses_unusable_options() {
    // Outside a runtime: a clear error, not a panic.
    let error = PostgresSource::new(DatabaseOptions::new("postgres://u@h/d"))
        .err()
        .expect("no runtime");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // Nothing listens on port 1: construction still succeeds (the pool is lazy).
        let source = PostgresSource::new(DatabaseOptions::new("postgresql://u:pw@127.0.0.1:1/d"))
            .expect("lazy");
        assert_eq!(
            source.describe(),
            "PostgreSQL database postgresql://u:***@127.0.0.1:1/d"
        );
        for (url, expected) in [
            ("mysql://u@h/d", "not a PostgreSQL URL"),
            ("postgres://u:p@h/d?sslmode=bogus", "invalid PostgreSQL URL"),
            ("postgres://u:p@h:99999/d", "invalid PostgreSQL URL"),
        ] {
            let error = PostgresSource::new(DatabaseOptions::new(url))
                .err()
                .expect(url);
            assert!(matches!(error, SourceError::Config(_)), "{url}: {error:?}");
            assert!(error.to_string().contains(expected), "{url}: {error}");
        }
        let zero = DatabaseOptions {
            max_connections: 0,
            ..DatabaseOptions::new("postgres://u@h/d")
        };
        assert!(PostgresSource::new(zero).is_err());
    });
}

#[tokio::test]
async fn a_refused_connection_fails_at_once_not_after_the_connect_timeout() {
    // Nothing listens on the port of a listener just closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        listener.local_addr().expect("addr").port()
    };
    let options = DatabaseOptions {
        connect_timeout: Duration::from_secs(3),
        ..DatabaseOptions::new(format!("postgres://kobo@127.0.0.1:{port}/kobo"))
    };
    let source = PostgresSource::new(options).expect("source");
    for attempt in 1..=2 {
        let started = Instant::now();
        let error = source.collect().await.expect_err("refused");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "attempt {attempt}: a refused connection took {took:?} to report (connect_timeout 3 s)"
        );
        assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
        assert!(error.to_string().contains("refused"), "{error}");
    }
}

#[tokio::test]
async fn a_silent_server_costs_one_connect_timeout() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let connect_timeout = Duration::from_secs(1);
    let options = DatabaseOptions {
        connect_timeout,
        ..DatabaseOptions::new(format!("postgres://kobo@127.0.0.1:{port}/kobo"))
    };
    let source = PostgresSource::new(options).expect("source");
    for attempt in 1..=2 {
        let started = Instant::now();
        let error = source.collect_with_tasks().await.expect_err("silent");
        let took = started.elapsed();
        assert!(
            took >= connect_timeout && took < connect_timeout + Duration::from_millis(500),
            "attempt {attempt}: a silent server took {took:?} to report, not one connect_timeout ({connect_timeout:?})"
        );
        let text = error.to_string();
        assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
        assert!(
            text.contains("connect_timeout (1 s)") && text.contains("did not answer"),
            "{text}"
        );
    }
    silent.abort();
}

#[tokio::test]
async fn a_failed_session_set_up_is_reported_as_such() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let mut source = PostgresSource::new(db.options()).expect("source");
    // What a query_timeout beyond statement_timeout's int4 of milliseconds gave before it was refused.
    source
        .pool
        .set_setup_sql(crate::connect::session_setup_sql(Duration::from_secs(
            3_000_000,
        )));
    let started = Instant::now();
    let error = source.collect().await.expect_err("set-up fails");
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
        PostgresSource::new(with(Duration::from_secs(2_147_483), 2)).expect("the largest");
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
            let error = PostgresSource::new(options).err().expect(&what);
            assert!(matches!(error, SourceError::Config(_)), "{what}: {error:?}");
            let text = error.to_string();
            assert!(
                expected.iter().all(|e| text.contains(e)) && !text.contains("pw"),
                "{what}: {text}"
            );
        }
        PostgresSource::new(with(Duration::from_secs(5), 1000)).expect("1000 connections");
    });
}
