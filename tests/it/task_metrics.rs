//! The task, queue and exporter metrics on the fixture hub, cross-checked against counts computed here
//! independently from the raw rows of `hub_task` (no GROUP BY, no shared SQL), and the collector's task
//! refresh: cached between refreshes with its age exported, dropped (not served stale) when it fails.

use crate::common;
use kobo_testkit::CollectExt;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kobo_exporter::api::tasks::parse_utc_datetime;
use kobo_exporter::api::{TaskState, WorkerDir};
use kobo_exporter::collector::{CollectorOptions, HubCollector};
use kobo_testkit::exposition::{Exposition, labels, parse};

/// One raw task row.
struct Task {
    archive: bool,
    state: usize,
    arch: String,
    channel: String,
    worker: Option<String>,
    created: f64,
}

fn raw_tasks(path: &Path) -> Vec<Task> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut stmt = conn
        .prepare(
            "SELECT t.archive, t.state, a.name, c.name, w.name, t.dt_created FROM hub_task t \
             JOIN hub_arch a ON a.id = t.arch_id JOIN hub_channel c ON c.id = t.channel_id \
             LEFT JOIN hub_worker w ON w.id = t.worker_id",
        )
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            Ok(Task {
                archive: r.get::<_, i64>(0)? != 0,
                state: r.get::<_, i64>(1)? as usize,
                arch: r.get(2)?,
                channel: r.get(3)?,
                worker: r.get(4)?,
                created: parse_utc_datetime(&r.get::<_, String>(5)?).expect("dt_created"),
            })
        })
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

/// One raw worker row with the names of its arches and channels.
struct RawWorker {
    name: String,
    enabled: bool,
    ready: bool,
    arches: Vec<String>,
    channels: Vec<String>,
}

fn is_active(task: &Task) -> bool {
    !task.archive && matches!(task.state, 0 | 1 | 2 | 8)
}

fn samples(exposition: &Exposition, family: &str) -> BTreeMap<Vec<(String, String)>, f64> {
    exposition
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"))
        .samples
        .iter()
        .map(|((_, labels), value)| (labels.clone(), *value))
        .collect()
}

async fn render(path: &Path) -> Exposition {
    let source = kobo_backend_sqlite::open(path, None).expect("open");
    let snapshot = source.collect_tasks().await.expect("collect");
    parse(&kobo_exporter::render(&snapshot).expect("render")).expect("parse")
}

/// Checks every task and queue family against the raw rows.
fn cross_check(path: &Path, exposition: &Exposition) {
    let tasks = raw_tasks(path);
    let mut count: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    let mut oldest: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    for task in tasks.iter().filter(|t| is_active(t)) {
        let key = labels(&[
            ("state", TaskState::ALL[task.state].name()),
            ("arch", &task.arch),
            ("channel", &task.channel),
        ]);
        *count.entry(key.clone()).or_default() += 1.0;
        let entry = oldest.entry(key).or_insert(f64::INFINITY);
        *entry = entry.min(task.created);
    }
    assert_eq!(samples(exposition, "kobo_tasks"), count);
    assert_eq!(
        samples(exposition, "kobo_tasks_oldest_created_timestamp_seconds"),
        oldest
    );

    let mut per_worker: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    let conn = rusqlite::Connection::open(path).expect("open");
    let workers: Vec<RawWorker> = {
        let mut stmt = conn
            .prepare("SELECT id, name, enabled, ready FROM hub_worker")
            .expect("workers");
        let rows: Vec<(i64, String, bool, bool)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)? != 0,
                    r.get::<_, i64>(3)? != 0,
                ))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        rows.into_iter()
            .map(|(id, name, enabled, ready)| {
                let names = |sql: &str| -> Vec<String> {
                    conn.prepare(sql)
                        .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
                        .expect("names")
                };
                let arches = names("SELECT a.name FROM hub_worker_arches x JOIN hub_arch a ON a.id = x.arch_id WHERE x.worker_id = ?1");
                let channels = names("SELECT c.name FROM hub_worker_channels x JOIN hub_channel c ON c.id = x.channel_id WHERE x.worker_id = ?1");
                RawWorker {
                    name,
                    enabled,
                    ready,
                    arches,
                    channels,
                }
            })
            .collect()
    };
    for worker in &workers {
        for state in ["ASSIGNED", "OPEN"] {
            per_worker.insert(labels(&[("worker", &worker.name), ("state", state)]), 0.0);
        }
    }
    for task in tasks
        .iter()
        .filter(|t| is_active(t) && matches!(t.state, 1 | 2))
    {
        if let Some(worker) = &task.worker {
            *per_worker
                .get_mut(&labels(&[
                    ("worker", worker),
                    ("state", TaskState::ALL[task.state].name()),
                ]))
                .expect("worker") += 1.0;
        }
    }
    assert_eq!(samples(exposition, "kobo_worker_tasks"), per_worker);

    let mut queue: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    let mut queue_ready: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    for task in tasks.iter().filter(|t| is_active(t)) {
        let key = labels(&[("arch", &task.arch), ("channel", &task.channel)]);
        let serving = workers.iter().filter(|w| {
            w.enabled && w.arches.contains(&task.arch) && w.channels.contains(&task.channel)
        });
        queue.insert(key.clone(), serving.clone().count() as f64);
        queue_ready.insert(key, serving.filter(|w| w.ready).count() as f64);
    }
    assert_eq!(samples(exposition, "kobo_queue_workers"), queue);
    assert_eq!(samples(exposition, "kobo_queue_workers_ready"), queue_ready);
}

#[tokio::test]
async fn task_and_queue_metrics_match_the_raw_rows_of_the_fixture() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = common::fixture_sqlite_in(dir.path());
    let exposition = render(&path).await;
    cross_check(&path, &exposition);
    // Spot checks a person can verify in fixture.sql; no worker serves i386: that queue is stranded.
    let free_i386 = [("state", "FREE"), ("arch", "i386"), ("channel", "signing")];
    let i386 = [("arch", "i386"), ("channel", "signing")];
    let aarch64 = [("arch", "aarch64"), ("channel", "compose")];
    let free_aarch64 = [
        ("state", "FREE"),
        ("arch", "aarch64"),
        ("channel", "compose"),
    ];
    for (family, labels, expected) in [
        ("kobo_tasks", &free_i386[..], Some(1.0)),
        ("kobo_queue_workers", &i386[..], Some(0.0)),
        ("kobo_queue_workers", &aarch64[..], Some(1.0)),
        (
            "kobo_tasks_oldest_created_timestamp_seconds",
            &free_aarch64[..],
            parse_utc_datetime("2024-07-22 03:00:55"),
        ),
    ] {
        assert_eq!(
            value(&exposition, family, labels),
            expected,
            "{family}{labels:?}"
        );
    }
}

#[tokio::test]
async fn archived_and_finished_tasks_are_not_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = common::fixture_sqlite_in(dir.path());
    let before = render(&path).await;
    let conn = rusqlite::Connection::open(&path).expect("open");
    // An archived FREE task, an archived OPEN task on worker 2, and a CLOSED one: none may count.
    for (id, archive, state, worker) in [(1001, 1, 0, "NULL"), (1002, 1, 2, "2"), (1003, 0, 3, "2")]
    {
        conn.execute(
            &format!(
                "INSERT INTO hub_task (id, archive, state, label, exclusive, method, args, result, waiting, awaited, \
                 dt_created, priority, weight, subtask_count, arch_id, channel_id, owner_id, worker_id) \
                 VALUES ({id}, {archive}, {state}, 'x', 0, 'Method', '{{}}', '', 0, 0, '2000-01-01 00:00:00', 10, 1, 0, 6, 4, 1, {worker})"
            ),
            [],
        )
        .expect("insert");
    }
    let after = render(&path).await;
    for family in [
        "kobo_tasks",
        "kobo_tasks_oldest_created_timestamp_seconds",
        "kobo_worker_tasks",
        "kobo_queue_workers",
    ] {
        assert_eq!(
            samples(&after, family),
            samples(&before, family),
            "{family}"
        );
    }
    cross_check(&path, &after);
    // An active one does count, and becomes the oldest.
    conn.execute(
        "INSERT INTO hub_task (id, archive, state, label, exclusive, method, args, result, waiting, awaited, \
         dt_created, priority, weight, subtask_count, arch_id, channel_id, owner_id, worker_id) \
         VALUES (1004, 0, 0, 'x', 0, 'Method', '{}', '', 0, 0, '2000-01-01 00:00:00.25', 10, 1, 0, 6, 4, 1, NULL)",
        [],
    )
    .expect("insert");
    let active = render(&path).await;
    cross_check(&path, &active);
    let key = labels(&[("state", "FREE"), ("arch", "i386"), ("channel", "signing")]);
    assert_eq!(samples(&active, "kobo_tasks").get(&key), Some(&2.0));
    assert_eq!(
        samples(&active, "kobo_tasks_oldest_created_timestamp_seconds").get(&key),
        Some(&946_684_800.25)
    );
}

fn value(exposition: &Exposition, family: &str, pairs: &[(&str, &str)]) -> Option<f64> {
    samples(exposition, family).get(&labels(pairs)).copied()
}

/// `kobo_exporter_collect_errors_total{collector}`.
fn errors_total(exposition: &Exposition, collector: &str) -> Option<f64> {
    value(
        exposition,
        "kobo_exporter_collect_errors_total",
        &[("collector", collector)],
    )
}

#[tokio::test]
async fn task_data_is_cached_between_refreshes_and_its_age_exported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = common::fixture_sqlite_in(dir.path());
    let source = Arc::new(
        kobo_backend_sqlite::open(
            &path,
            Some(WorkerDir::new(common::fixture_worker_dir().path())),
        )
        .expect("open"),
    );
    let options = CollectorOptions {
        task_refresh_interval: Duration::from_millis(400),
        ..CollectorOptions::default()
    };
    let collector = HubCollector::new(source, options);
    let first = parse(&collector.scrape(None).await.expect("scrape")).expect("parse");
    let key = [
        ("state", "FREE"),
        ("arch", "aarch64"),
        ("channel", "compose"),
    ];
    assert_eq!(value(&first, "kobo_tasks", &key), Some(1.0));
    assert_eq!(value(&first, "kobo_up", &[]), Some(1.0));

    rusqlite::Connection::open(&path)
        .and_then(|c| {
            c.execute(
                "UPDATE hub_task SET archive = 1 WHERE state = 0 AND arch_id = 3",
                [],
            )
        })
        .expect("archive");
    let cached = parse(&collector.scrape(None).await.expect("scrape")).expect("parse");
    assert_eq!(
        value(&cached, "kobo_tasks", &key),
        Some(1.0),
        "served from the cache"
    );
    let age = value(&cached, "kobo_exporter_task_data_age_seconds", &[]).expect("age");
    assert!((0.0..0.4).contains(&age), "age {age}");

    tokio::time::sleep(Duration::from_millis(450)).await;
    let refreshed = parse(&collector.scrape(None).await.expect("scrape")).expect("parse");
    assert_eq!(
        value(&refreshed, "kobo_tasks", &key),
        None,
        "refreshed: no such task any more"
    );
    assert!(value(&refreshed, "kobo_exporter_task_data_age_seconds", &[]).expect("age") < 0.4);
    for collector in ["workers", "tasks", "last_seen"] {
        assert!(
            value(
                &refreshed,
                "kobo_exporter_collect_duration_seconds",
                &[("collector", collector)]
            )
            .is_some(),
            "{collector}"
        );
    }
    assert_eq!(errors_total(&refreshed, "tasks"), Some(0.0));
}

#[tokio::test]
async fn a_failing_task_query_drops_the_task_metrics_but_keeps_the_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = common::fixture_sqlite_in(dir.path());
    rusqlite::Connection::open(&path)
        .and_then(|c| c.execute_batch("DROP TABLE hub_task"))
        .expect("drop hub_task");
    let source = Arc::new(kobo_backend_sqlite::open(&path, None).expect("open"));
    let collector = HubCollector::new(source, CollectorOptions::default());
    let exposition = parse(&collector.scrape(None).await.expect("scrape")).expect("parse");
    assert_eq!(value(&exposition, "kobo_up", &[]), Some(1.0));
    assert_eq!(samples(&exposition, "kobo_worker_enabled").len(), 5);
    assert!(
        !exposition.families.contains_key("kobo_tasks"),
        "no stale or empty task metrics"
    );
    assert!(
        !exposition
            .families
            .contains_key("kobo_exporter_task_data_age_seconds")
    );
    assert_eq!(errors_total(&exposition, "tasks"), Some(1.0));
    assert_eq!(errors_total(&exposition, "workers"), Some(0.0));
}

#[tokio::test]
async fn an_unreadable_worker_dir_counts_as_a_last_seen_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = common::fixture_sqlite_in(dir.path());
    let workers = common::fixture_worker_dir();
    let source = Arc::new(
        kobo_backend_sqlite::open(&path, Some(WorkerDir::new(workers.path()))).expect("open"),
    );
    drop(workers);
    let collector = HubCollector::new(source, CollectorOptions::default());
    let exposition = parse(&collector.scrape(None).await.expect("scrape")).expect("parse");
    assert_eq!(value(&exposition, "kobo_up", &[]), Some(1.0));
    assert!(samples(&exposition, "kobo_worker_last_seen_seconds").is_empty());
    assert_eq!(errors_total(&exposition, "last_seen"), Some(1.0));
}
