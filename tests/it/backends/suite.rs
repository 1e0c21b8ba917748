//! The behaviour every database source must have, each test a generic function of the [`Backend`],
//! instantiated per backend by [`backend_suite!`]: the hubs it reads (against what the SQLite source reads
//! from the same hub), who may read, and how it fails and recovers.

use kobo_testkit::CollectExt;
use std::time::{Duration, Instant, UNIX_EPOCH};

use kobo_exporter::api::worker_dir::file_name;
use kobo_exporter::api::{DatabaseOptions, HubSnapshot, LastSeen, SourceError, WorkerDir};
use kobo_testkit::db::{READER_PASSWORD, TestDb, TestSession, comparable};

use super::Backend;

/// Stamps every test of the suite onto `$backend`, each a `#[tokio::test]` of the same name.
macro_rules! backend_suite {
    ($backend:ty) => {
        backend_suite!(@tests $backend:
            fixture_gives_the_same_snapshot_as_the_sqlite_source,
            last_seen_comes_from_the_worker_dir,
            changes_show_at_the_next_scrape_in_every_last_seen_mode,
            old_schema_without_min_priority_and_canceled_by_works,
            a_database_that_is_not_a_hub_names_the_missing_table,
            odd_names_empty_hubs_and_bytewise_grouping,
            least_privilege_reader_can_collect_but_not_write,
            a_user_without_grants_gets_a_clear_error,
            a_wrong_password_is_a_clear_error_without_the_password,
            an_unknown_database_is_a_clear_error,
            a_refused_connection_fails_at_once_and_clearly,
            a_silent_server_costs_one_connect_timeout,
            a_query_blocked_by_a_lock_times_out,
            the_scrape_deadline_cancels_a_blocked_statement_on_the_server,
            a_killed_connection_is_replaced_at_the_next_scrape,
            construction_does_no_io_and_refuses_unusable_options,
            unix_socket_url,
            tls_required_and_a_missing_ca_file,
            abandoned_collections_past_the_query_timeout_leave_the_pool_usable,
            abandoned_collections_released_early_leave_the_pool_usable,
        );
    };
    (@tests $backend:ty: $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                crate::backends::suite::$test::<$backend>().await;
            }
        )*
    };
}

/// The SQLite source's reading of `schema-sqlite.sql` followed by `scripts`: the reference.
pub async fn sqlite_reference(scripts: &[&str]) -> HubSnapshot {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("reference.sqlite3");
    let db = rusqlite::Connection::open(&file).expect("SQLite reference");
    let schema = kobo_testkit::data::read("schema-sqlite.sql");
    for script in std::iter::once(schema.as_str()).chain(scripts.iter().copied()) {
        db.execute_batch(script).expect("SQLite reference script");
    }
    db.close().map_err(|(_, e)| e).expect("close");
    let reference = kobo_backend_sqlite::open(&file, None).expect("SQLite reference source");
    comparable(
        reference
            .collect_tasks()
            .await
            .expect("SQLite reference snapshot"),
    )
}

/// The fixture hub as the SQLite source reads it.
pub async fn sqlite_fixture() -> HubSnapshot {
    sqlite_reference(&[&kobo_testkit::data::read("fixture.sql")]).await
}

/// Workers and tasks, as the exporter's task refresh reads them.
pub async fn collect<B: Backend>(options: DatabaseOptions) -> Result<HubSnapshot, SourceError> {
    B::source(options)?.collect_tasks().await.map(comparable)
}

/// Collects with `options`, which must fail within `limit`; the error.
pub async fn collect_error<B: Backend>(options: DatabaseOptions, limit: Duration) -> SourceError {
    let started = Instant::now();
    let result = collect::<B>(options).await;
    let took = started.elapsed();
    assert!(took < limit, "took {took:?}, more than {limit:?}");
    result.expect_err("the collection should fail")
}

pub async fn fixture_gives_the_same_snapshot_as_the_sqlite_source<B: Backend>() {
    let Some(db) = B::Db::with_fixture().await else {
        return;
    };
    let snapshot = collect::<B>(db.options()).await.expect("collect");
    assert_eq!(snapshot, sqlite_fixture().await);
    // And what that is, in case both were wrong the same way.
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
    // The plain scrape reads the workers only.
    let workers_only = B::source(db.options())
        .expect("source")
        .collect_workers()
        .await
        .expect("collect");
    assert!(workers_only.tasks.is_none());
    assert_eq!(
        workers_only
            .timings
            .iter()
            .map(|t| t.0.name())
            .collect::<Vec<_>>(),
        ["workers"]
    );
}

pub async fn last_seen_comes_from_the_worker_dir<B: Backend>() {
    let Some(db) = B::Db::with_fixture().await else {
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
    let snapshot = collect::<B>(with_dir(dir.path())).await.expect("collect");
    assert_eq!(snapshot.workers[1].last_seen, LastSeen::At(1_750_000_000));
    assert_eq!(snapshot.workers[0].last_seen, LastSeen::Never);
    // An unreadable worker_dir is a warning, not a failure.
    let snapshot = collect::<B>(with_dir(&dir.path().join("missing")))
        .await
        .expect("collect");
    assert_eq!(snapshot.workers[1].last_seen, LastSeen::Unavailable);
    assert_eq!(snapshot.warnings.len(), 1, "{:?}", snapshot.warnings);
}

pub async fn changes_show_at_the_next_scrape_in_every_last_seen_mode<B: Backend>() {
    let Some(db) = B::Db::with_fixture().await else {
        return;
    };
    let options = db.options();
    crate::common::changes_show_at_the_next_scrape(
        |dir| {
            B::source(DatabaseOptions {
                worker_dir: Some(dir),
                ..options.clone()
            })
            .expect("source")
        },
        async |sql: &str| db.execute(sql).await,
    )
    .await;
}

pub async fn old_schema_without_min_priority_and_canceled_by_works<B: Backend>() {
    let Some(db) = B::Db::with_fixture().await else {
        return;
    };
    db.drop_column("hub_worker", "min_priority").await;
    db.drop_column("hub_task", "canceled_by_id").await;
    let snapshot = collect::<B>(db.options()).await.expect("collect");
    let mut expected = sqlite_fixture().await;
    for worker in &mut expected.workers {
        worker.min_priority = None;
    }
    assert_eq!(snapshot, expected);
}

pub async fn a_database_that_is_not_a_hub_names_the_missing_table<B: Backend>() {
    let Some(db) = B::Db::create().await else {
        return;
    };
    let source = B::source(db.options()).expect("source");
    let error = source.collect_workers().await.expect_err("not a hub");
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
    let error = source.collect_workers().await.expect_err("partial hub");
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
        .collect_workers()
        .await
        .expect_err("hub_worker lacks columns");
    assert!(
        error
            .to_string()
            .contains("column hub_worker.enabled is missing"),
        "{error}"
    );
}

/// Names that need escaping, differ only in case or trailing space, or sort differently under a collation
/// (`ö` after `zz` bytewise; MariaDB's `utf8mb4_general_ci` would put it beside `a`); a worker without
/// arches or channels; tasks in channels whose names differ only in case.
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

pub async fn odd_names_empty_hubs_and_bytewise_grouping<B: Backend>() {
    let Some(db) = B::Db::create().await else {
        return;
    };
    db.load_schema().await;
    let empty = collect::<B>(db.options()).await.expect("empty hub");
    assert_eq!(
        (empty.workers.len(), empty.tasks.map(|t| t.groups.len())),
        (0, Some(0))
    );
    db.execute(ODD).await;
    let snapshot = collect::<B>(db.options()).await.expect("collect");
    assert_eq!(snapshot, sqlite_reference(&[ODD]).await);
    let w = snapshot
        .workers
        .iter()
        .find(|w| w.name.starts_with('w'))
        .expect("odd worker");
    assert_eq!(w.name, "w\\1 \"quoted\"\nnewline");
    assert_eq!(w.arches, ["a", "zz", "ö"]);
    assert_eq!(w.channels, ["B", "b", "b ", "x\"y\\z"]);
    let lonely = snapshot
        .workers
        .iter()
        .find(|w| w.name == "lonely")
        .expect("lonely");
    assert!(lonely.arches.is_empty() && lonely.channels.is_empty());
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

pub async fn least_privilege_reader_can_collect_but_not_write<B: Backend>() {
    let Some(mut db) = B::Db::with_fixture().await else {
        return;
    };
    let reader = db.create_reader().await;
    let options = DatabaseOptions::new(db.user_url(&reader, Some(READER_PASSWORD)));
    assert_eq!(
        collect::<B>(options).await.expect("collect as reader"),
        sqlite_fixture().await
    );
    // Outside the exporter's read-only sessions the role has no write privilege either.
    let error = db
        .try_execute_as(
            &reader,
            READER_PASSWORD,
            "INSERT INTO hub_channel (id, name) VALUES (99, 'x')",
        )
        .await
        .expect_err("write");
    assert!(error.contains(B::Db::PERMISSION_DENIED), "{error}");
}

pub async fn a_user_without_grants_gets_a_clear_error<B: Backend>() {
    let Some(mut db) = B::Db::with_fixture().await else {
        return;
    };
    let user = db.create_user_without_grants().await;
    let options = DatabaseOptions {
        connect_timeout: Duration::from_secs(3),
        ..DatabaseOptions::new(db.user_url(&user, Some(READER_PASSWORD)))
    };
    let error = collect_error::<B>(options, Duration::from_secs(5)).await;
    let text = error.to_string();
    assert!(text.contains("privilege"), "says what is missing: {text}");
    assert!(
        !text.contains(READER_PASSWORD),
        "the password leaked: {text}"
    );
}

pub async fn a_wrong_password_is_a_clear_error_without_the_password<B: Backend>() {
    let Some(mut db) = B::Db::with_fixture().await else {
        return;
    };
    let reader = db.create_reader().await;
    let secret = "Wr0ng-Pa55word";
    let quick = |options: DatabaseOptions| DatabaseOptions {
        connect_timeout: Duration::from_secs(3),
        ..options
    };
    // A server that trusts local connections (pg_hba `trust`) takes any password.
    let trusted = collect::<B>(quick(DatabaseOptions::new(db.user_url(&reader, None))))
        .await
        .is_ok();
    let cases = [
        (
            true,
            DatabaseOptions::new(db.user_url(&reader, Some(secret))),
        ),
        (
            true,
            DatabaseOptions {
                password: Some(secret.into()),
                ..DatabaseOptions::new(db.user_url(&reader, None))
            },
        ),
        (
            // The separate password wins over the (right) one in the URL.
            true,
            DatabaseOptions {
                password: Some(secret.into()),
                ..DatabaseOptions::new(db.user_url(&reader, Some(READER_PASSWORD)))
            },
        ),
        // A role that does not exist: refused even where the server trusts local connections.
        (
            false,
            DatabaseOptions::new(db.user_url("kobo_no_such_role", Some(secret))),
        ),
    ];
    for (trust_lets_in, options) in cases {
        let options = quick(options);
        let url = kobo_exporter::api::redact_url(&options.url);
        if trusted && trust_lets_in {
            eprintln!(
                "note: the server trusts {url} without a password; only the missing role is checked"
            );
            continue;
        }
        let has_password = options.password.is_some();
        let error = collect_error::<B>(options, Duration::from_secs(5)).await;
        let text = format!("{error} {error:?}");
        assert!(
            matches!(error, SourceError::Connect { .. }),
            "{url}: {text}"
        );
        assert!(
            !text.contains(secret) && !text.contains(READER_PASSWORD),
            "{url}: a password leaked: {text}"
        );
        assert!(
            text.contains("***") || has_password,
            "{url}: names the redacted URL: {text}"
        );
        assert!(
            text.contains(db.name()),
            "{url}: names the database: {text}"
        );
        assert!(
            B::AUTH_REFUSED.iter().any(|words| text.contains(words))
                && text.contains("check the user and password"),
            "{url}: {text}"
        );
    }
    let source =
        B::source(DatabaseOptions::new(db.user_url(&reader, Some(secret)))).expect("source");
    assert!(
        !source.describe().contains(secret) && source.describe().contains("***"),
        "{}",
        source.describe()
    );
    assert_eq!(source.kind(), B::SCHEMES[0]);
}

pub async fn an_unknown_database_is_a_clear_error<B: Backend>() {
    let Some(db) = B::Db::create().await else {
        return;
    };
    let options = DatabaseOptions {
        url: db.url().replace(db.name(), "kobo_no_such_database"),
        ..db.options()
    };
    let error = collect_error::<B>(options, Duration::from_secs(5)).await;
    let text = error.to_string();
    assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
    assert!(
        text.contains("kobo_no_such_database") && text.contains("check the database name"),
        "{text}"
    );
}

/// Two failed collections (with the task queries or without) of a source for `url` with `connect_timeout`:
/// each Connect error's text, and how long it took.
async fn two_connect_failures<B: Backend>(
    url: String,
    connect_timeout: Duration,
    with_tasks: bool,
) -> Vec<(String, Duration)> {
    let source = B::source(DatabaseOptions {
        connect_timeout,
        ..DatabaseOptions::new(url.clone())
    })
    .expect("source");
    let mut failures = Vec::new();
    for attempt in 1..=2 {
        let started = Instant::now();
        let result = if with_tasks {
            source.collect_tasks().await
        } else {
            source.collect_workers().await
        };
        let took = started.elapsed();
        let error = result.expect_err(&url);
        assert!(
            matches!(error, SourceError::Connect { .. }),
            "{url}, attempt {attempt}: {error:?}"
        );
        failures.push((error.to_string(), took));
    }
    failures
}

pub async fn a_refused_connection_fails_at_once_and_clearly<B: Backend>() {
    // Port 1, and the port of a listener just closed: nothing listens on either.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        listener.local_addr().expect("addr").port()
    };
    for port in [1, closed] {
        let url = format!("{}://kobo:s3cret@127.0.0.1:{port}/kobo", B::SCHEMES[0]);
        for (text, took) in two_connect_failures::<B>(url, Duration::from_secs(3), false).await {
            assert!(
                took < Duration::from_secs(1),
                "port {port}: a refused connection took {took:?} to report (connect_timeout 3 s)"
            );
            assert!(
                text.contains("refused") && text.contains(&format!("127.0.0.1:{port}")),
                "{text}"
            );
            assert!(!text.contains("s3cret"), "{text}");
        }
    }
}

pub async fn a_silent_server_costs_one_connect_timeout<B: Backend>() {
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
    for url in B::silent_urls(port) {
        for (text, took) in two_connect_failures::<B>(url.clone(), connect_timeout, true).await {
            assert!(
                took >= connect_timeout && took < connect_timeout + Duration::from_millis(500),
                "{url}: a silent server took {took:?} to report, not one connect_timeout ({connect_timeout:?})"
            );
            assert!(
                text.contains("connect_timeout (1 s)") && text.contains("did not answer"),
                "{url}: {text}"
            );
        }
    }
    silent.abort();
}

/// The source for `options` on `db` after one collection that works (with the task queries if
/// `with_tasks`), and a session that then holds `hub_worker` locked against it.
async fn source_then_lock<B: Backend>(
    db: &B::Db,
    options: DatabaseOptions,
    with_tasks: bool,
) -> (
    Box<dyn kobo_exporter::api::DataSource>,
    <B::Db as TestDb>::Session,
) {
    let source = B::source(options).expect("source");
    let before = if with_tasks {
        source.collect_tasks().await
    } else {
        source.collect_workers().await
    };
    before.expect("collect before the lock");
    let mut locker = db.session().await;
    locker.lock_exclusive("hub_worker").await;
    (source, locker)
}

pub async fn a_query_blocked_by_a_lock_times_out<B: Backend>() {
    let Some(db) = B::Db::with_fixture().await else {
        return;
    };
    let options = DatabaseOptions {
        query_timeout: Duration::from_secs(1),
        ..db.options()
    };
    let (source, mut locker) = source_then_lock::<B>(&db, options, false).await;
    let started = Instant::now();
    let error = source.collect_workers().await.expect_err("blocked");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(matches!(error, SourceError::Query { .. }), "{error:?}");
    assert!(error.to_string().contains("query_timeout"), "{error}");
    locker.unlock().await;
    source
        .collect_workers()
        .await
        .expect("collect after the lock");
}

/// The scrape's deadline reaches the database: with `hub_worker` locked and Prometheus' scrape timeout 2 s,
/// the scrape answers `kobo_up 0` within 2 s, one second later the exporter has no statement running or
/// waiting on the server (a query timeout of 60 s could not have ended it), and once the lock is released
/// the next scrape succeeds on the same pool.
pub async fn the_scrape_deadline_cancels_a_blocked_statement_on_the_server<B: Backend>() {
    let Some(db) = B::Db::with_fixture().await else {
        return;
    };
    let options = DatabaseOptions {
        query_timeout: Duration::from_secs(60),
        max_connections: 2,
        ..db.options()
    };
    let source: std::sync::Arc<dyn kobo_exporter::api::DataSource> =
        B::source(options).expect("source").into();
    let client = crate::common::app_client(source).await;
    let scrape = || async {
        let (_, body, took) = crate::common::scrape_within(&client, Duration::from_secs(2)).await;
        (body, took)
    };
    let (body, _) = scrape().await;
    assert!(body.contains("\nkobo_up 1\n"), "before the lock: {body}");
    let mut locker = db.session().await;
    locker.lock_exclusive("hub_worker").await;
    let (body, took) = scrape().await;
    assert!(body.contains("\nkobo_up 0\n"), "while locked: {body}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let running = db.running_statements().await;
    assert!(
        running.is_empty(),
        "statements of the exporter still on the server: {running:?}"
    );
    locker.unlock().await;
    // Past the collector's 1 s back-off after the failure.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (body, _) = scrape().await;
    assert!(body.contains("\nkobo_up 1\n"), "after the lock: {body}");
}

pub async fn a_killed_connection_is_replaced_at_the_next_scrape<B: Backend>() {
    let Some(db) = B::Db::with_fixture().await else {
        return;
    };
    let source = B::source(db.options()).expect("source");
    let before = source.collect_workers().await.expect("collect");
    assert!(
        db.kill_other_connections().await > 0,
        "the exporter keeps a connection"
    );
    let after = source
        .collect_workers()
        .await
        .expect("collect after the kill");
    assert_eq!(before.workers, after.workers);
}

pub async fn construction_does_no_io_and_refuses_unusable_options<B: Backend>() {
    // Nothing listens on port 1: construction still succeeds (the pool is lazy).
    for scheme in B::SCHEMES {
        let source = B::source(DatabaseOptions::new(format!(
            "{scheme}://u:pw@127.0.0.1:1/d"
        )))
        .expect("lazy");
        assert_eq!(
            source.describe(),
            format!("{} database {scheme}://u:***@127.0.0.1:1/d", B::Db::SERVER)
        );
    }
    let (url, expected) = (B::FOREIGN_URL, format!("not a {} URL", B::Db::SERVER));
    let error = B::source(DatabaseOptions::new(url)).err().expect(url);
    assert!(matches!(error, SourceError::Config(_)), "{url}: {error:?}");
    assert!(error.to_string().contains(&expected), "{url}: {error}");
    let zero = DatabaseOptions {
        max_connections: 0,
        ..DatabaseOptions::new(format!("{}://u:pw@h/d", B::SCHEMES[0]))
    };
    let error = B::source(zero).err().expect("max_connections 0");
    assert!(
        matches!(error, SourceError::Config(_)) && !error.to_string().contains("pw"),
        "{error:?}"
    );
}

pub async fn unix_socket_url<B: Backend>() {
    let Some(db) = B::Db::with_fixture().await else {
        return;
    };
    let Some(url) = B::socket_url(&db) else {
        eprintln!("SKIPPED (part): no {} socket here", B::Db::SERVER);
        return;
    };
    match collect::<B>(DatabaseOptions::new(url)).await {
        Ok(snapshot) => assert_eq!(snapshot, sqlite_fixture().await),
        // The socket may ask for peer authentication of an OS user that is not the role, or match another
        // account ('user'@'localhost' rather than 'user'@'127.0.0.1').
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains("authentication") || B::AUTH_REFUSED.iter().any(|w| text.contains(w)),
                "{text}"
            );
            eprintln!("note: socket reached but the account was refused: {text}");
        }
    }
}

pub async fn tls_required_and_a_missing_ca_file<B: Backend>() {
    let Some(db) = B::Db::with_fixture().await else {
        return;
    };
    let missing_ca = DatabaseOptions {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..db.options()
    };
    let error = B::source(missing_ca).err().expect("missing ca_file");
    assert!(
        matches!(error, SourceError::Config(_))
            && error.to_string().contains("/nonexistent/ca.pem"),
        "{error}"
    );
    let required = DatabaseOptions {
        connect_timeout: Duration::from_secs(3),
        ..DatabaseOptions::new(B::tls_required_url(&db))
    };
    if db.tls_available().await {
        assert_eq!(
            collect::<B>(required).await.expect("TLS required"),
            sqlite_fixture().await
        );
    } else {
        // TLS required but the server has none: refused, never silently in plain text.
        let error = collect_error::<B>(required, Duration::from_secs(5)).await;
        assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
        eprintln!("TLS required against a server without TLS: {error}");
    }
}

/// How long a collection runs before it is abandoned (as the collector's deadline would).
const ABANDON_AFTER: Duration = Duration::from_millis(400);

/// Collections abandoned mid-statement (the collector drops the source's future at its deadline) must not
/// cost the pool anything, whatever the server does with the statement: `max_connections + 1` collections
/// abandoned while `hub_worker` is locked; the lock held past the server's statement limit
/// (`past_query_timeout`) or released before it; then the next collection must work at once.
async fn recovers_after_abandoned_collections<B: Backend>(
    max_connections: u32,
    past_query_timeout: bool,
) {
    let Some(db) = B::Db::with_fixture().await else {
        return;
    };
    let query_timeout = Duration::from_secs(1);
    let options = DatabaseOptions {
        max_connections,
        connect_timeout: Duration::from_secs(3),
        query_timeout,
        // TLS as the server offers it (PostgreSQL's sslmode=prefer): sqlx's pool wedged over TLS only.
        ..db.options()
    };
    let (source, mut locker) = source_then_lock::<B>(&db, options, true).await;
    for i in 0..max_connections + 1 {
        // Alternately the scrape with the task queries (in a transaction) and the one without.
        let collection = async {
            if i % 2 == 0 {
                source.collect_tasks().await
            } else {
                source.collect_workers().await
            }
        };
        let result = tokio::time::timeout(ABANDON_AFTER, collection).await;
        assert!(
            result.is_err(),
            "collection {i} should be blocked: {result:?}"
        );
    }
    if past_query_timeout {
        // The server cancels the abandoned statements.
        tokio::time::sleep(query_timeout + Duration::from_millis(300)).await;
    }
    locker.unlock().await;
    let started = Instant::now();
    let result = source.collect_tasks().await;
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
    source.collect_workers().await.expect("and the next one");
}

pub async fn abandoned_collections_past_the_query_timeout_leave_the_pool_usable<B: Backend>() {
    for max_connections in [1, 2] {
        recovers_after_abandoned_collections::<B>(max_connections, true).await;
    }
}

pub async fn abandoned_collections_released_early_leave_the_pool_usable<B: Backend>() {
    for max_connections in [1, 2] {
        recovers_after_abandoned_collections::<B>(max_connections, false).await;
    }
}
