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
