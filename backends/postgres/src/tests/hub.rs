//! What the source reads from hubs: the fixture (the same records as the SQLite source), last seen, old and
//! odd schemas, a database that is not a hub.

use std::time::{Duration, UNIX_EPOCH};

use kobo_backend_api::worker_dir::file_name;
use kobo_backend_api::{DataSource, LastSeen, SourceError, WorkerDir};

use sqlx::Connection;

use super::{collect, fixture_database, sqlite_fixture, sqlite_snapshot};
use crate::testing::TestDatabase;
use crate::{queries, PostgresSource, BEGIN};

#[tokio::test]
async fn fixture_gives_the_same_snapshot_as_the_sqlite_source() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let snapshot = collect(db.options()).await.expect("collect");
    assert_eq!(snapshot, sqlite_fixture().await);
    // And what that is, in case both were wrong the same way.
    assert_eq!(snapshot.workers.len(), 5);
    let w3 = &snapshot.workers[2];
    assert_eq!(w3.name, "worker-0003.example.com");
    assert!(w3.enabled && w3.ready);
    assert_eq!(
        (w3.max_load, w3.max_tasks, w3.min_priority),
        (4, Some(5), Some(10))
    );
    assert_eq!(w3.arches, ["noarch"]);
    let w1 = &snapshot.workers[0];
    assert_eq!(w1.arches, ["aarch64", "noarch", "s390x", "x86_64"]);
    assert_eq!(w1.channels, ["compose", "default", "scratch"]);
    assert_eq!(w1.last_seen, LastSeen::Unavailable);
    assert!(snapshot.warnings.is_empty());
    let tasks = snapshot.tasks.as_ref().expect("task aggregates");
    assert_eq!(tasks.groups.len(), 10);
    let oldest_free = &tasks.groups[0];
    assert_eq!(
        (oldest_free.arch.as_str(), oldest_free.channel.as_str()),
        ("aarch64", "compose")
    );
    assert_eq!(
        oldest_free.oldest_created.map(|t| t.floor()),
        Some(1_721_617_255.0)
    );
}

#[tokio::test]
async fn last_seen_comes_from_the_worker_dir() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = dir.path().join(file_name("worker-0002.example.com"));
    std::fs::write(&seen, b"").expect("touch");
    let when = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    std::fs::File::options()
        .write(true)
        .open(&seen)
        .and_then(|f| f.set_modified(when))
        .expect("mtime");
    let options = kobo_backend_api::DatabaseOptions {
        worker_dir: Some(WorkerDir::new(dir.path())),
        ..db.options()
    };
    let snapshot = collect(options.clone()).await.expect("collect");
    assert_eq!(snapshot.workers[1].last_seen, LastSeen::At(1_750_000_000));
    assert_eq!(snapshot.workers[0].last_seen, LastSeen::Never);
    // An unreadable worker_dir is a warning, not a failure.
    let missing = dir.path().join("missing");
    let options = kobo_backend_api::DatabaseOptions {
        worker_dir: Some(WorkerDir::new(&missing)),
        ..options
    };
    let snapshot = collect(options).await.expect("collect");
    assert_eq!(snapshot.workers[1].last_seen, LastSeen::Unavailable);
    assert_eq!(snapshot.warnings.len(), 1, "{:?}", snapshot.warnings);
}

#[tokio::test]
async fn old_schema_without_min_priority_and_canceled_by_works() {
    let Some(db) = fixture_database().await else {
        return;
    };
    db.execute("ALTER TABLE hub_worker DROP COLUMN min_priority; ALTER TABLE hub_task DROP COLUMN canceled_by_id;")
        .await;
    let snapshot = collect(db.options()).await.expect("collect");
    let mut expected = sqlite_fixture().await;
    for worker in &mut expected.workers {
        worker.min_priority = None;
    }
    assert_eq!(snapshot, expected);
}

#[tokio::test]
async fn a_database_that_is_not_a_hub_names_the_missing_table() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let source = PostgresSource::new(db.options()).expect("source");
    let error = source.collect().await.expect_err("not a hub");
    assert!(matches!(error, SourceError::Schema { .. }), "{error:?}");
    assert!(
        error.to_string().contains("table hub_worker is missing"),
        "{error}"
    );
    // A partial hub names the first table it lacks; the schema is checked again at every failed scrape.
    db.execute(
        "CREATE TABLE hub_worker (id int, name text); CREATE TABLE hub_arch (id int, name text);",
    )
    .await;
    let error = source.collect().await.expect_err("partial hub");
    assert!(
        error
            .to_string()
            .contains("table hub_worker_arches is missing"),
        "{error}"
    );
    db.execute(
        "CREATE TABLE hub_worker_arches (id int, worker_id int, arch_id int); \
         CREATE TABLE hub_worker_channels (id int, worker_id int, channel_id int); \
         CREATE TABLE hub_channel (id int, name text);",
    )
    .await;
    let error = source
        .collect()
        .await
        .expect_err("hub_worker lacks columns");
    assert!(
        error
            .to_string()
            .contains("column hub_worker.enabled is missing"),
        "{error}"
    );
}

#[tokio::test]
async fn odd_names_empty_hubs_and_repeated_channel_names() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    db.load_schema().await;
    assert_eq!(collect(db.options()).await.expect("empty hub").workers, []);
    let odd = "INSERT INTO hub_arch (id, name, pretty_name) VALUES (1, 'zz', 'zz'), (2, 'Ä', 'Ä'), (3, 'a', 'a');
        INSERT INTO hub_channel (id, name) VALUES (1, 'b'), (2, 'b'), (3, 'B'), (4, 'x\"y\\z');
        INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, task_count, current_load, min_priority)
            VALUES (1, 'k1', 'w\\1 \"quoted\"
newline', TRUE, 1, 0, TRUE, 0, 0, 0),
                   (2, 'k2', 'lonely', FALSE, 1, 0, FALSE, 0, 0, 0);
        INSERT INTO hub_worker_arches (id, worker_id, arch_id) VALUES (1, 1, 1), (2, 1, 2), (3, 1, 3);
        INSERT INTO hub_worker_channels (id, worker_id, channel_id) VALUES (1, 1, 1), (2, 1, 2), (3, 1, 3), (4, 1, 4);";
    db.execute(odd).await;
    let snapshot = collect(db.options()).await.expect("collect");
    assert_eq!(snapshot, sqlite_snapshot(&[odd]).await);
    let w = snapshot
        .workers
        .iter()
        .find(|w| w.name.starts_with('w'))
        .expect("odd worker");
    assert_eq!(w.name, "w\\1 \"quoted\"\nnewline");
    assert_eq!(w.arches, ["a", "zz", "Ä"]);
    assert_eq!(w.channels, ["B", "b", "x\"y\\z"]);
    let lonely = snapshot
        .workers
        .iter()
        .find(|w| w.name == "lonely")
        .expect("lonely");
    assert!(lonely.arches.is_empty() && lonely.channels.is_empty());
}

/// `count` more workers (ids from 100), each with an arch and a channel.
fn more_workers(count: usize) -> String {
    (100..100 + count)
        .map(|id| {
            format!(
                "INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, task_count, \
                 current_load, min_priority) VALUES ({id}, 'key-{id}', 'extra-{id}', TRUE, 1, 0, TRUE, 0, 0, 0); \
                 INSERT INTO hub_worker_arches (id, worker_id, arch_id) VALUES ({id}, {id}, 1); \
                 INSERT INTO hub_worker_channels (id, worker_id, channel_id) VALUES ({id}, {id}, 1);"
            )
        })
        .collect()
}

#[tokio::test]
async fn a_scrape_reads_hub_worker_once_whatever_the_number_of_workers() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let source = PostgresSource::new(db.options()).expect("source");
    // Counts scans of hub_worker by one read, inside a scrape's transaction (`pg_stat_xact_user_tables` is
    // backend-local and immediate, unlike pg_stat_statements, which may not be installed; it may include
    // earlier transactions not yet flushed, hence the difference).
    const HUB_WORKER_SCANS: &str =
        "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = 'hub_worker'";
    let scans = |with_tasks: bool| {
        let source = &source;
        async move {
            source.collect().await.expect("collect");
            let queries = source.cached_queries().expect("queries");
            let mut conn = source.pool.acquire(&source.context).await.expect("conn");
            let mut tx = conn.begin_with(BEGIN).await.expect("begin");
            let before: i64 = sqlx::query_scalar(HUB_WORKER_SCANS)
                .fetch_one(&mut *tx)
                .await
                .expect("stats");
            let read = queries::read(&mut tx, &queries, with_tasks, &source.context)
                .await
                .expect("read");
            let after: i64 = sqlx::query_scalar(HUB_WORKER_SCANS)
                .fetch_one(&mut *tx)
                .await
                .expect("stats");
            (read.workers.len(), after - before)
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
