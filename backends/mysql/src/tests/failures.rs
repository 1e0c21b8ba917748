//! Failures: nothing listening, a query stuck behind a lock, a killed connection, unusable options. Each
//! must give a clear error quickly, and the source must recover by itself.

use std::time::{Duration, Instant};

use kobo_backend_api::{DataSource, DatabaseOptions, SourceError};
use mysql_async::prelude::Queryable;

use super::{collect_error, fixture_database};
use crate::MysqlSource;

#[tokio::test]
async fn a_server_that_refuses_connections_is_a_quick_clear_error() {
    let options = DatabaseOptions {
        connect_timeout: Duration::from_secs(2),
        ..DatabaseOptions::new("mysql://kobo:s3cret@127.0.0.1:1/kobo")
    };
    let error = collect_error(options, Duration::from_secs(4)).await;
    let text = error.to_string();
    assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
    assert!(
        text.contains("refused") && text.contains("127.0.0.1:1"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_clear_error() {
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
        ..DatabaseOptions::new(format!("mysql://kobo@127.0.0.1:{port}/kobo"))
    };
    let error = collect_error(options, Duration::from_secs(4)).await;
    assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("did not answer"), "{error}");
    silent.abort();
}

#[tokio::test]
async fn a_query_blocked_by_a_lock_times_out() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let source = MysqlSource::new(DatabaseOptions {
        query_timeout: Duration::from_secs(1),
        ..db.options()
    })
    .expect("source");
    source.collect().await.expect("collect before the lock");
    let mut locker = db.connect().await;
    locker
        .query_drop("LOCK TABLES hub_worker WRITE")
        .await
        .expect("lock");
    let started = Instant::now();
    let error = source.collect().await.expect_err("blocked");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(matches!(error, SourceError::Query { .. }), "{error:?}");
    eprintln!("blocked query after {took:?}: {error}");
    locker.query_drop("UNLOCK TABLES").await.expect("unlock");
    source.collect().await.expect("collect after the lock");
}

#[tokio::test]
async fn a_killed_connection_is_replaced_at_the_next_scrape() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let source = MysqlSource::new(db.options()).expect("source");
    let before = source.collect().await.expect("collect");
    let mut admin = db.connect().await;
    let ids: Vec<u64> = admin
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
            (db.name(),),
        )
        .await
        .expect("processlist");
    assert!(!ids.is_empty(), "the exporter keeps a connection");
    for id in ids {
        admin.query_drop(format!("KILL {id}")).await.expect("kill");
    }
    let after = source.collect().await.expect("collect after the kill");
    assert_eq!(before.workers, after.workers);
}

#[test]
fn construction_does_no_io() {
    // Nothing listens on port 1, and no runtime is running: construction still succeeds (the pool is lazy).
    let source =
        MysqlSource::new(DatabaseOptions::new("mariadb://u:pw@127.0.0.1:1/d")).expect("lazy");
    assert_eq!(
        source.describe(),
        "MySQL/MariaDB database mariadb://u:***@127.0.0.1:1/d"
    );
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
