//! The generator: counts per state follow the formula of `rows.rs`; the same spec gives the same exporter
//! rendering from SQLite, PostgreSQL and MariaDB (the databases come from the backends' `TestDatabase`
//! helpers, which skip loudly or fail under `CI=true`); a non-empty target is refused.

use kobo_testkit::CollectExt;
use std::collections::BTreeMap;
use std::path::Path;

use kobo_backend_api::worker_dir::WorkerDir;
use kobo_backend_api::{DataSource, DatabaseOptions, SourceError};
use kobo_hubgen::{HubSpec, generate, write_worker_dir};
use kobo_testkit::db::TestDb;

const SPEC: HubSpec = HubSpec {
    workers: 20,
    tasks: 2000,
    seed: 7,
};

fn sqlite_hub(dir: &Path, spec: &HubSpec) -> std::path::PathBuf {
    let path = dir.join("hub.sqlite3");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(generate(&format!("sqlite://{}", path.display()), spec))
        .expect("generate");
    path
}

#[test]
fn counts_per_state_follow_the_formula() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = sqlite_hub(dir.path(), &SPEC);
    let conn = rusqlite::Connection::open(&path).expect("open");

    let mut expected: BTreeMap<(i64, bool), i64> = BTreeMap::new();
    for n in 1..=u64::from(SPEC.tasks) {
        *expected
            .entry((i64::from(SPEC.task_state(n)), SPEC.task_archived(n)))
            .or_default() += 1;
    }
    let mut stmt = conn
        .prepare("SELECT state, archive, count(*) FROM hub_task GROUP BY state, archive")
        .expect("prepare");
    let actual: BTreeMap<(i64, bool), i64> = stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(actual, expected);

    // The mix is realistic: about 1% active, every state present, 30% of the finished archived.
    let active: i64 = expected
        .iter()
        .filter(|((s, _), _)| [0, 1, 2, 8].contains(s))
        .map(|(_, c)| c)
        .sum();
    assert_eq!(active, 20);
    for state in 0..=8 {
        assert!(expected.keys().any(|(s, _)| *s == state), "state {state}");
    }
    let archived: i64 = expected
        .iter()
        .filter(|((_, a), _)| *a)
        .map(|(_, c)| c)
        .sum();
    assert!((450..=750).contains(&archived), "{archived} archived");

    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(one("SELECT count(*) FROM hub_worker"), 20);
    assert_eq!(one("SELECT count(*) FROM hub_arch"), 6);
    assert_eq!(one("SELECT count(*) FROM hub_channel"), 4);
    assert_eq!(one("SELECT count(*) FROM auth_user"), 6);
    // Waiting parents with two subtasks each, and workers on exactly the assigned/open/finished tasks.
    assert_eq!(
        one("SELECT count(*) FROM hub_task WHERE waiting AND subtask_count = 2"),
        2
    );
    assert_eq!(
        one("SELECT count(*) FROM hub_task WHERE parent_id IS NOT NULL"),
        4
    );
    assert_eq!(
        one("SELECT count(*) FROM hub_task WHERE (worker_id IS NULL) <> (state IN (0, 8))"),
        0
    );
    assert_eq!(one("SELECT count(DISTINCT weight) FROM hub_task"), 4);
    assert_eq!(
        one(
            "SELECT count(*) FROM hub_worker w WHERE NOT EXISTS (SELECT 1 FROM hub_worker_arches a WHERE a.worker_id = w.id)"
        ),
        0
    );
    assert_eq!(
        one("SELECT sum(task_count) FROM hub_worker"),
        one("SELECT count(*) FROM hub_task WHERE state IN (1, 2)")
    );
    assert!(one("SELECT count(DISTINCT enabled || ready || max_load) FROM hub_worker") > 3);
}

#[test]
fn refuses_a_non_empty_target() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = sqlite_hub(dir.path(), &SPEC);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let error = runtime
        .block_on(generate(&format!("sqlite://{}", path.display()), &SPEC))
        .expect_err("second run");
    assert!(error.to_string().contains("not empty"), "{error}");
}

#[test]
fn worker_dir_is_deterministic_and_some_are_never_seen() {
    let a = tempfile::tempdir().expect("temp dir");
    let b = tempfile::tempdir().expect("temp dir");
    write_worker_dir(a.path(), &SPEC).expect("write");
    write_worker_dir(b.path(), &SPEC).expect("write");
    let ma = WorkerDir::new(a.path()).read_mtimes().expect("read");
    let mb = WorkerDir::new(b.path()).read_mtimes().expect("read");
    assert_eq!(ma, mb);
    assert!(
        !ma.is_empty() && ma.len() < SPEC.workers as usize,
        "{}",
        ma.len()
    );
}

async fn render_sqlite(path: &Path, workers: &Path) -> String {
    let source = kobo_backend_sqlite::open(path, Some(WorkerDir::new(workers))).expect("open");
    let snapshot = source.collect_tasks().await.expect("collect");
    kobo_exporter::render(&snapshot).expect("render")
}

fn with_dir(options: DatabaseOptions, workers: &Path) -> DatabaseOptions {
    DatabaseOptions {
        worker_dir: Some(WorkerDir::new(workers)),
        ..options
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_spec_renders_the_same_on_every_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let workers = dir.path().join("workers");
    write_worker_dir(&workers, &SPEC).expect("worker dir");
    let path = dir.path().join("hub.sqlite3");
    generate(&format!("sqlite://{}", path.display()), &SPEC)
        .await
        .expect("sqlite");
    let sqlite = render_sqlite(&path, &workers).await;
    for family in [
        "kobo_tasks{",
        "kobo_tasks_oldest_created_timestamp_seconds{",
        "kobo_worker_last_seen_seconds{",
        "kobo_worker_arch{",
        "kobo_worker_channel{",
        "kobo_worker_tasks{",
        "kobo_worker_load{",
    ] {
        assert!(sqlite.contains(family), "no {family} in\n{sqlite}");
    }

    renders_as_sqlite::<kobo_testkit::db::PostgresDb, _>(
        kobo_backend_postgres::open,
        &workers,
        &sqlite,
    )
    .await;
    renders_as_sqlite::<kobo_testkit::db::MysqlDb, _>(kobo_backend_mysql::open, &workers, &sqlite)
        .await;
}

/// [`SPEC`] generated into a new database `D` (unless its server is unreachable) renders as `sqlite`
/// through the source that `open` makes, and a second generation into it is refused.
async fn renders_as_sqlite<D: TestDb, S: DataSource>(
    open: fn(DatabaseOptions) -> Result<S, SourceError>,
    workers: &Path,
    sqlite: &str,
) {
    let Some(db) = D::create().await else {
        return;
    };
    generate(&db.url(), &SPEC).await.expect(D::SERVER);
    let source = open(with_dir(db.options(), workers)).expect("source");
    let snapshot = source.collect_tasks().await.expect("collect");
    let rendered = kobo_exporter::render(&snapshot).expect("render");
    assert_eq!(rendered, sqlite, "{} differs from SQLite", D::SERVER);
    let error = generate(&db.url(), &SPEC).await.expect_err("non-empty");
    assert!(error.to_string().contains("not empty"), "{error}");
}
