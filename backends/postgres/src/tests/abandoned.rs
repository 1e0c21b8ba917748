//! Collections abandoned mid-statement (the collector drops the source's future at its deadline): the
//! connection they held must not cost the pool anything, whatever the server does with the statement.

use std::time::{Duration, Instant};

use kobo_backend_api::{DataSource, DatabaseOptions};
use sqlx::Executor;

use super::fixture_database;
use crate::PostgresSource;

/// How long a collection runs before it is abandoned (as the collector's deadline would).
const ABANDON_AFTER: Duration = Duration::from_millis(400);

/// `max_connections` collections abandoned while `hub_worker` is locked; the lock held past the server's
/// `statement_timeout` (`past_query_timeout`) or released before it; then the next collection must work
/// at once.
async fn recovers_after_abandoned_collections(max_connections: u32, past_query_timeout: bool) {
    let Some(db) = fixture_database().await else {
        return;
    };
    let query_timeout = Duration::from_secs(1);
    let connect_timeout = Duration::from_secs(3);
    let options = DatabaseOptions {
        max_connections,
        connect_timeout,
        query_timeout,
        // TLS as the server offers it (sslmode=prefer): sqlx's pool wedged over TLS only.
        ..db.options()
    };
    let source = PostgresSource::new(options).expect("source");
    source
        .collect_with_tasks()
        .await
        .expect("collect before the lock");
    let mut locker = db.connect().await;
    locker
        .execute("BEGIN; LOCK TABLE hub_worker IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    for i in 0..max_connections + 1 {
        // Alternately the scrape with the task queries (in a transaction) and the one without.
        let collection = async {
            if i % 2 == 0 {
                source.collect_with_tasks().await
            } else {
                source.collect().await
            }
        };
        let result = tokio::time::timeout(ABANDON_AFTER, collection).await;
        assert!(
            result.is_err(),
            "collection {i} should be blocked: {result:?}"
        );
    }
    if past_query_timeout {
        // The server cancels the abandoned statements (statement_timeout).
        tokio::time::sleep(query_timeout + Duration::from_millis(300)).await;
    }
    locker.execute("ROLLBACK").await.expect("unlock");
    let started = Instant::now();
    let result = source.collect_with_tasks().await;
    let took = started.elapsed();
    let snapshot = result.unwrap_or_else(|e| {
        panic!(
            "max_connections {max_connections}: the first collection after the lock failed after {took:?}: {e}"
        )
    });
    assert!(!snapshot.workers.is_empty());
    assert!(
        took < Duration::from_secs(1),
        "max_connections {max_connections}: the first collection after the lock took {took:?}"
    );
    source.collect().await.expect("and the next one");
}

#[tokio::test]
async fn one_connection_recovers_from_abandoned_collections_past_the_query_timeout() {
    recovers_after_abandoned_collections(1, true).await;
}

#[tokio::test]
async fn two_connections_recover_from_abandoned_collections_past_the_query_timeout() {
    recovers_after_abandoned_collections(2, true).await;
}

#[tokio::test]
async fn one_connection_recovers_from_abandoned_collections_released_early() {
    recovers_after_abandoned_collections(1, false).await;
}

#[tokio::test]
async fn two_connections_recover_from_abandoned_collections_released_early() {
    recovers_after_abandoned_collections(2, false).await;
}
