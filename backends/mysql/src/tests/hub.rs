//! What the source reads from hubs: the fixture (the same records as the SQLite source), last seen, old and
//! odd schemas, a database that is not a hub.

use std::time::{Duration, UNIX_EPOCH};

use kobo_backend_api::worker_dir::file_name;
use kobo_backend_api::{DataSource, DatabaseOptions, LastSeen, SourceError, WorkerDir};

use mysql_async::prelude::Queryable;

use super::{collect, fixture_database, sqlite_fixture, sqlite_reference};
use crate::testing::TestDatabase;
use crate::{connect, queries, MysqlSource};

#[tokio::test]
async fn fixture_gives_the_same_snapshot_as_the_sqlite_source() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let snapshot = collect(db.options()).await.expect("collect");
    assert_eq!(snapshot, sqlite_fixture().await);
    assert_eq!(snapshot.workers.len(), 5);
    let w3 = &snapshot.workers[2];
    assert_eq!(
        (w3.name.as_str(), w3.enabled, w3.ready),
        ("worker-0003.example.com", true, true)
    );
    assert_eq!(
        (w3.max_load, w3.max_tasks, w3.min_priority),
        (4, Some(5), Some(10))
    );
    assert_eq!(
        snapshot.workers[0].arches,
        ["aarch64", "noarch", "s390x", "x86_64"]
    );
    let tasks = snapshot.tasks.as_ref().expect("task aggregates");
    assert_eq!(tasks.groups.len(), 10);
    assert_eq!(
        tasks.groups[0].oldest_created.map(|t| t.floor()),
        Some(1_721_617_255.0)
    );
    // The plain scrape reads the workers only.
    let workers_only = MysqlSource::new(db.options())
        .expect("source")
        .collect()
        .await
        .expect("collect");
    assert!(workers_only.tasks.is_none());
    assert_eq!(
        workers_only.timings.iter().map(|t| t.0).collect::<Vec<_>>(),
        ["workers"]
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
    let with_dir = |path: &std::path::Path| DatabaseOptions {
        worker_dir: Some(WorkerDir::new(path)),
        ..db.options()
    };
    let snapshot = collect(with_dir(dir.path())).await.expect("collect");
    assert_eq!(snapshot.workers[1].last_seen, LastSeen::At(1_750_000_000));
    assert_eq!(snapshot.workers[0].last_seen, LastSeen::Never);
    let snapshot = collect(with_dir(&dir.path().join("missing")))
        .await
        .expect("collect");
    assert_eq!(snapshot.workers[1].last_seen, LastSeen::Unavailable);
    assert_eq!(snapshot.warnings.len(), 1, "{:?}", snapshot.warnings);
}

#[tokio::test]
async fn old_schema_without_min_priority_and_canceled_by_works() {
    let Some(db) = fixture_database().await else {
        return;
    };
    db.drop_column("hub_worker", "min_priority").await;
    db.drop_column("hub_task", "canceled_by_id").await;
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
    let source = MysqlSource::new(db.options()).expect("source");
    let error = source.collect().await.expect_err("not a hub");
    assert!(matches!(error, SourceError::Schema { .. }), "{error:?}");
    assert!(
        error.to_string().contains("table hub_worker is missing"),
        "{error}"
    );
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

/// Names that need escaping, differ only in case or trailing space, or sort differently under a collation;
/// a worker without arches or channels; tasks in channels whose names differ only in case.
const ODD: &str = "INSERT INTO hub_arch (id, name, pretty_name) VALUES (1, 'zz', 'zz'), (2, 'ö', 'ö'), (3, 'a', 'a');
    INSERT INTO hub_channel (id, name) VALUES (1, 'b'), (2, 'b'), (3, 'B'), (4, 'x\"y\\z'), (5, 'b ');
    INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, task_count, current_load, min_priority)
        VALUES (1, 'k1', 'w\\1 \"quoted\"
newline', TRUE, 1, 0, TRUE, 0, 0, 0), (2, 'k2', 'lonely', FALSE, 1, 0, FALSE, 0, 0, 0);
    INSERT INTO hub_worker_arches (id, worker_id, arch_id) VALUES (1, 1, 1), (2, 1, 2), (3, 1, 3);
    INSERT INTO hub_worker_channels (id, worker_id, channel_id) VALUES (1, 1, 1), (2, 1, 2), (3, 1, 3), (4, 1, 4), (5, 1, 5);
    INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
        VALUES (1, 'x', FALSE, 'u', '', '', 'u@example.com', FALSE, TRUE, '2024-01-01 00:00:00');
    INSERT INTO hub_task (id, archive, state, label, exclusive, method, args, result, waiting, awaited, dt_created, priority, weight, subtask_count, arch_id, channel_id, owner_id)
        VALUES (1, FALSE, 0, '', FALSE, 'M', '', '', FALSE, FALSE, '2024-07-22 03:00:55.250000', 10, 1, 0, 1, 1, 1),
               (2, FALSE, 0, '', FALSE, 'M', '', '', FALSE, FALSE, '2024-07-22 03:00:56', 10, 1, 0, 1, 3, 1),
               (3, FALSE, 0, '', FALSE, 'M', '', '', FALSE, FALSE, '2024-07-22 03:00:57', 10, 1, 0, 1, 5, 1),
               (4, FALSE, 0, '', FALSE, 'M', '', '', FALSE, FALSE, '2024-07-22 03:00:58', 10, 1, 0, 1, 2, 1);";

#[tokio::test]
async fn odd_names_empty_hubs_and_bytewise_grouping() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    db.load_schema().await;
    let empty = collect(db.options()).await.expect("empty hub");
    assert_eq!(
        (empty.workers.len(), empty.tasks.map(|t| t.groups.len())),
        (0, Some(0))
    );
    db.execute(ODD).await;
    let snapshot = collect(db.options()).await.expect("collect");
    assert_eq!(snapshot, sqlite_reference(&[ODD]).await);
    let w = snapshot
        .workers
        .iter()
        .find(|w| w.name.starts_with('w'))
        .expect("odd worker");
    assert_eq!(w.name, "w\\1 \"quoted\"\nnewline");
    assert_eq!(w.arches, ["a", "zz", "ö"]);
    assert_eq!(w.channels, ["B", "b", "b ", "x\"y\\z"]);
    let groups = snapshot.tasks.expect("tasks").groups;
    let channels: Vec<(&str, i64)> = groups
        .iter()
        .map(|g| (g.channel.as_str(), g.count))
        .collect();
    assert_eq!(
        channels,
        [("B", 1), ("b", 2), ("b ", 1)],
        "same-named channels are one group, bytewise"
    );
    assert_eq!(groups[1].oldest_created, Some(1_721_617_255.25));
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
async fn a_scrape_is_a_constant_number_of_statements() {
    let Some(db) = fixture_database().await else {
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
