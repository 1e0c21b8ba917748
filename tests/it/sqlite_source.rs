//! The SQLite source against real files: read-only files and directories, files that do not exist, the
//! worker secret, and the bundled demo hub.

use crate::common;
use kobo_testkit::CollectExt;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kobo_exporter::api::{LastSeen, WorkerDir};

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn reads_a_read_only_file_in_a_read_only_directory_and_changes_nothing() {
    let outer = tempfile::tempdir().expect("temp dir");
    let dir = outer.path().join("ro");
    std::fs::create_dir(&dir).expect("mkdir");
    let path = common::fixture_sqlite_in(&dir);
    let before = std::fs::read(&path).expect("read");
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    set_mode(&path, 0o444);
    set_mode(&dir, 0o555);

    let source = kobo_backend_sqlite::open(&path, None).expect("open read-only");
    for _ in 0..3 {
        let snapshot = source.collect_workers().await.expect("collect");
        assert_eq!(snapshot.workers.len(), 5);
    }
    drop(source);

    set_mode(&dir, 0o755);
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "the database file changed"
    );
    assert_eq!(
        std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime"),
        modified
    );
    assert_eq!(
        dir_listing(&dir),
        vec!["hub.sqlite3".to_string()],
        "journal or WAL files were created"
    );
}

#[test]
fn a_missing_file_is_an_error_and_is_never_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nope.sqlite3");
    let error = kobo_backend_sqlite::open(&path, None)
        .err()
        .expect("must fail")
        .to_string();
    assert!(error.contains("nope.sqlite3"), "{error}");
    assert!(!path.exists());
    assert!(dir_listing(dir.path()).is_empty());
}

#[tokio::test]
async fn the_worker_secret_is_never_in_the_records_or_the_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = common::fixture_sqlite_in(dir.path());
    let keys: Vec<String> = rusqlite::Connection::open(&path)
        .expect("open")
        .prepare("SELECT worker_key FROM hub_worker")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("keys");
    assert_eq!(keys.len(), 5);
    let workers = common::fixture_worker_dir();
    let source =
        kobo_backend_sqlite::open(&path, Some(WorkerDir::new(workers.path()))).expect("open");
    let snapshot = source.collect_workers().await.expect("collect");
    let text = kobo_exporter::render(&snapshot).expect("render");
    let debug = format!("{snapshot:?}");
    for key in &keys {
        assert!(!text.contains(key.as_str()), "worker_key in the output");
        assert!(!debug.contains(key.as_str()), "worker_key in the records");
    }
}

#[tokio::test]
async fn records_carry_arches_channels_and_last_seen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = common::fixture_sqlite_in(dir.path());
    let workers = common::fixture_worker_dir();
    let source =
        kobo_backend_sqlite::open(&path, Some(WorkerDir::new(workers.path()))).expect("open");
    let mut snapshot = source.collect_workers().await.expect("collect");
    snapshot.workers.sort_by(|a, b| a.name.cmp(&b.name));
    let first = &snapshot.workers[0];
    assert_eq!(first.name, "worker-0001.example.com");
    assert_eq!(first.arches, ["aarch64", "noarch", "s390x", "x86_64"]);
    assert_eq!(first.channels, ["compose", "default", "scratch"]);
    assert_eq!(first.max_tasks, Some(0));
    assert_eq!(first.min_priority, Some(0));
    assert_eq!(first.last_seen, LastSeen::At(1_749_999_887));
    assert_eq!(snapshot.workers[3].last_seen, LastSeen::Never);
    assert_eq!(snapshot.workers[2].max_tasks, Some(5));
    assert!(snapshot.warnings.is_empty());
}

#[tokio::test]
async fn a_worker_dir_that_disappears_is_a_warning_not_zeros() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = common::fixture_sqlite_in(dir.path());
    let workers = common::fixture_worker_dir();
    let worker_path = workers.path().to_path_buf();
    let source =
        kobo_backend_sqlite::open(&path, Some(WorkerDir::new(&worker_path))).expect("open");
    drop(workers);
    let snapshot = source.collect_workers().await.expect("collect");
    assert!(
        snapshot
            .workers
            .iter()
            .all(|w| w.last_seen == LastSeen::Unavailable)
    );
    assert_eq!(snapshot.warnings.len(), 1);
    assert!(
        snapshot.warnings[0]
            .message
            .contains(&worker_path.display().to_string()),
        "{:?}",
        snapshot.warnings
    );
}

#[tokio::test]
async fn the_demo_hub_holds_what_its_sql_describes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
    let dir = tempfile::tempdir().expect("temp dir");
    let rebuilt = dir.path().join("hub.sqlite3");
    let conn = rusqlite::Connection::open(&rebuilt).expect("create");
    for file in [
        kobo_testkit::data::path("schema-sqlite.sql"),
        kobo_testkit::data::path("fixture.sql"),
    ] {
        conn.execute_batch(&std::fs::read_to_string(&file).expect("demo sql"))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    drop(conn);
    let demo = kobo_backend_sqlite::open(root.join("hub.sqlite3"), None).expect("demo");
    let rebuilt = kobo_backend_sqlite::open(&rebuilt, None).expect("rebuilt");
    let (a, b) = (
        demo.collect_tasks().await.expect("demo"),
        rebuilt.collect_tasks().await.expect("rebuilt"),
    );
    // The renderings (what the demo shows) and the task data are the same; timings differ.
    assert_eq!(
        kobo_exporter::render(&a).expect("render"),
        kobo_exporter::render(&b).expect("render")
    );
    assert_eq!(a.tasks, b.tasks);
    assert_eq!(a.workers.len(), 5);
}

/// The fixture hub at `dir/hub.sqlite3` with worker-0005 deleted and worker-0001's max_load set to 42.
fn changed_fixture_in(dir: &Path) -> std::path::PathBuf {
    let path = common::fixture_sqlite_in(dir);
    rusqlite::Connection::open(&path)
        .expect("open")
        .execute_batch(
            "DELETE FROM hub_worker_arches WHERE worker_id = 5; \
             DELETE FROM hub_worker_channels WHERE worker_id = 5; \
             DELETE FROM hub_task WHERE worker_id = 5; \
             DELETE FROM hub_worker WHERE id = 5; \
             UPDATE hub_worker SET max_load = 42 WHERE id = 1;",
        )
        .expect("change the hub");
    path
}

/// `kobo_up` and the `kobo_worker_max_load` samples (by worker name) of one scrape.
async fn scrape_up_and_max_load(
    client: &rocket::local::asynchronous::Client,
) -> (Option<f64>, std::collections::BTreeMap<String, f64>) {
    let body = crate::common::get_text(client, "/metrics").await;
    let parsed = kobo_testkit::exposition::parse(&body).expect("parses");
    let up = parsed
        .families
        .get("kobo_up")
        .and_then(|f| f.samples.values().next().copied());
    let max_load = parsed
        .families
        .get("kobo_worker_max_load")
        .map(|family| {
            family
                .samples
                .iter()
                .filter_map(|((_, labels), value)| {
                    let worker = labels.iter().find(|(k, _)| k == "worker")?;
                    Some((worker.1.clone(), *value))
                })
                .collect()
        })
        .unwrap_or_default();
    (up, max_load)
}

#[tokio::test]
async fn a_hub_file_deleted_fails_and_one_replaced_by_rename_is_read_anew() {
    use kobo_exporter::collector::{CollectorOptions, HubCollector};
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = common::fixture_sqlite_in(dir.path());
    // New files are made beside it (same file system, for the renames).
    let staging = || tempfile::tempdir_in(dir.path()).expect("staging dir");
    let (first, second, third) = (staging(), staging(), staging());
    let changed = changed_fixture_in(first.path());

    let source = Arc::new(kobo_backend_sqlite::open(&path, None).expect("open"));
    let options = CollectorOptions {
        task_metrics: false,
        reconnect_backoff_max: std::time::Duration::ZERO,
        ..CollectorOptions::default()
    };
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let collector = HubCollector::new(source.clone(), options);
    let client = rocket::local::asynchronous::Client::tracked(kobo_exporter::routes::build(
        figment, collector,
    ))
    .await
    .expect("rocket");

    let (up, max_load) = scrape_up_and_max_load(&client).await;
    assert_eq!(up, Some(1.0));
    assert_eq!(max_load.len(), 5, "{max_load:?}");
    assert_eq!(max_load.get("worker-0001.example.com"), Some(&2.0));

    // Deleted: the exporter must not go on serving the rows of the file it still has open.
    std::fs::remove_file(&path).expect("rm");
    let (up, max_load) = scrape_up_and_max_load(&client).await;
    assert_eq!(up, Some(0.0), "served a deleted file: {max_load:?}");
    assert!(max_load.is_empty(), "{max_load:?}");
    let error = source
        .collect_workers()
        .await
        .expect_err("a deleted file")
        .to_string();
    assert!(
        error.contains(&path.display().to_string()) && error.contains("deleted"),
        "{error}"
    );

    // Back, then replaced by a rename (another inode): the new file is read.
    std::fs::copy(&changed, &path).expect("restore");
    let (up, max_load) = scrape_up_and_max_load(&client).await;
    assert_eq!(up, Some(1.0));
    assert_eq!(max_load.len(), 4, "{max_load:?}");
    let fresh = common::fixture_sqlite_in(second.path());
    std::fs::rename(&fresh, &path).expect("mv");
    let (up, max_load) = scrape_up_and_max_load(&client).await;
    assert_eq!(up, Some(1.0));
    assert_eq!(max_load.len(), 5, "{max_load:?}");
    assert_eq!(max_load.get("worker-0001.example.com"), Some(&2.0));
    // And once more the other way, straight on the source.
    let changed = changed_fixture_in(third.path());
    std::fs::rename(&changed, &path).expect("mv");
    let snapshot = source.collect_workers().await.expect("the replaced file");
    assert_eq!(snapshot.workers.len(), 4);
    assert!(
        snapshot
            .workers
            .iter()
            .any(|w| w.name == "worker-0001.example.com" && w.max_load == 42)
    );
}

#[tokio::test]
async fn changes_show_at_the_next_scrape_in_every_last_seen_mode() {
    let (_tmp, path) = common::fixture_sqlite();
    common::changes_show_at_the_next_scrape(
        |dir| Box::new(kobo_backend_sqlite::open(&path, Some(dir)).expect("open")),
        async |sql: &str| {
            rusqlite::Connection::open(&path)
                .and_then(|hub| hub.execute_batch(sql))
                .expect("the hub's write");
        },
    )
    .await;
}

/// `PRAGMA data_version`: while no other connection has committed, the worker query is not run again;
/// a commit, and a task refresh (its snapshot transaction), run it.
#[tokio::test]
async fn an_unchanged_hub_is_not_queried_again() {
    let (_tmp, path) = common::fixture_sqlite();
    let source = kobo_backend_sqlite::open(&path, None).expect("open");
    let run = || source.driver().statements_run();
    let first = source.collect_workers().await.expect("collect");
    assert_eq!(run(), 1);
    for _ in 0..3 {
        let again = source.collect_workers().await.expect("collect");
        assert_eq!(again.workers, first.workers);
    }
    assert_eq!(run(), 1, "served from the last result");
    rusqlite::Connection::open(&path)
        .and_then(|hub| hub.execute_batch("UPDATE hub_worker SET max_load = 9 WHERE id = 5"))
        .expect("the hub's write");
    let changed = source.collect_workers().await.expect("collect");
    assert_eq!(run(), 2, "queried after the commit");
    assert_eq!(changed.workers[4].max_load, 9);
    let before = run();
    source.collect_tasks().await.expect("collect with tasks");
    assert!(
        run() >= before + 3,
        "a task refresh runs every statement: {}",
        run()
    );
}
