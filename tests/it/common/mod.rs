//! Helpers shared by the integration tests (the test material is `kobo_testkit::data`): hubs built in
//! temporary SQLite files, worker directories with chosen mtimes, an exposition-format parser, and the
//! skip-or-fail rule for database servers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use kobo_exporter::api::worker_dir::file_name;

/// The SQL statements of a script, one per element (statements end with `;` at the end of a line; `--`
/// comment lines are dropped). Good for kobo's schema dumps and the fixture, whose strings hold no `;\n`.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with("--")) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(
                std::mem::take(&mut current)
                    .trim_end()
                    .trim_end_matches(';')
                    .to_string(),
            );
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// The fixture hub (kobo's SQLite schema, then `fixture.sql`) in a new file `dir/hub.sqlite3`.
pub fn fixture_sqlite_in(dir: &Path) -> PathBuf {
    let path = dir.join("hub.sqlite3");
    let conn = rusqlite::Connection::open(&path).expect("create");
    // One transaction and no fsync: a statement per commit, each synced, took seconds on a busy disk.
    conn.execute_batch("PRAGMA synchronous = OFF; BEGIN")
        .expect("begin");
    conn.execute_batch(&kobo_testkit::data::read("schema-sqlite.sql"))
        .expect("schema");
    conn.execute_batch(&kobo_testkit::data::read("fixture.sql"))
        .expect("fixture");
    conn.execute_batch("COMMIT").expect("commit");
    path
}

/// The fixture hub in a new temporary SQLite file, kept while the returned directory lives.
pub fn fixture_sqlite() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = fixture_sqlite_in(dir.path());
    (dir, path)
}

/// A temporary worker directory holding kobo's last-seen file for each `(worker name, mtime)`.
pub fn worker_dir(entries: &[(&str, i64)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, mtime) in entries {
        let path = dir.path().join(file_name(name));
        let file = File::create(&path).expect("create last-seen file");
        // A fraction of a second on top: last seen is whole seconds, rounded down.
        let when = UNIX_EPOCH + Duration::from_secs(*mtime as u64) + Duration::from_millis(750);
        file.set_modified(when).expect("set mtime");
    }
    dir
}

/// The fixture's worker directory, from `fixture-last-seen.tsv` (workers marked `-` have no file). The
/// file names of the TSV are checked against kobo's naming rule on the way.
pub fn fixture_worker_dir() -> tempfile::TempDir {
    let tsv = kobo_testkit::data::read("fixture-last-seen.tsv");
    let mut entries = Vec::new();
    for line in tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "bad TSV line {line:?}");
        assert_eq!(
            file_name(fields[0]),
            fields[1],
            "file name of {}",
            fields[0]
        );
        if fields[2] != "-" {
            entries.push((fields[0], fields[2].parse::<i64>().expect("mtime")));
        }
    }
    worker_dir(&entries)
}

/// What the reference exporter (django-kobo-exporter) served for the fixture hub
/// (`fixture-reference-metrics.txt`), parsed.
pub fn reference_exposition() -> kobo_testkit::exposition::Exposition {
    kobo_testkit::exposition::parse(&kobo_testkit::data::read("fixture-reference-metrics.txt"))
        .expect("the reference parses")
}

/// The fixture hub in a temporary SQLite file and its worker directory, named as the exporter's
/// `KOBO_URL` and `KOBO_WORKER_DIR` want them; both kept while this lives.
pub struct FixtureVars {
    pub url: String,
    pub worker_dir: String,
    _hub: tempfile::TempDir,
    _workers: tempfile::TempDir,
}

impl FixtureVars {
    pub fn create() -> FixtureVars {
        let (hub_dir, hub) = fixture_sqlite();
        let workers = fixture_worker_dir();
        FixtureVars {
            url: format!("sqlite://{}", hub.display()),
            worker_dir: workers.path().display().to_string(),
            _hub: hub_dir,
            _workers: workers,
        }
    }

    /// `KOBO_URL` and `KOBO_WORKER_DIR`, then `more`.
    pub fn vars<'a>(&'a self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut vars = vec![
            ("KOBO_URL", self.url.as_str()),
            ("KOBO_WORKER_DIR", self.worker_dir.as_str()),
        ];
        vars.extend_from_slice(more);
        vars
    }
}

/// True when database tests must not be skipped (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Runs `body` in figment's [`Jail`](figment::Jail) (a temporary working directory, environment variables
/// restored afterwards), never in this process: a jail changes the whole process's working directory and
/// environment, which the tests running beside it in this binary must not see.
///
/// The first call in a test runs the whole test again in a child process (this test binary, given the
/// test's name, which libtest gives its thread) with `KOBO_TEST_IN_JAIL` set, and checks that it passed;
/// there every call runs its jail. In this process the calls return at once, so a test that uses jails
/// must assert only inside them.
pub fn jail<F>(body: F)
where
    F: FnOnce(&mut figment::Jail) -> figment::error::Result<()>,
{
    const IN_CHILD: &str = "KOBO_TEST_IN_JAIL";
    thread_local! {
        static RAN_IN_CHILD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if std::env::var_os(IN_CHILD).is_some() {
        figment::Jail::expect_with(body);
        return;
    }
    if RAN_IN_CHILD.with(|ran| ran.replace(true)) {
        return;
    }
    let test = std::thread::current()
        .name()
        .expect("a test thread is named after its test")
        .to_string();
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_CHILD, "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running the test in a child process");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} in its own process: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

/// A client of the app (Rocket's local client, its logging off) on `source`, with these collector options.
pub async fn app_client_with(
    source: std::sync::Arc<dyn kobo_exporter::api::DataSource>,
    options: kobo_exporter::collector::CollectorOptions,
) -> rocket::local::asynchronous::Client {
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let collector = kobo_exporter::collector::HubCollector::new(source, options);
    rocket::local::asynchronous::Client::tracked(kobo_exporter::routes::build(figment, collector))
        .await
        .expect("rocket")
}

/// [`app_client_with`] the default collector options.
pub async fn app_client(
    source: std::sync::Arc<dyn kobo_exporter::api::DataSource>,
) -> rocket::local::asynchronous::Client {
    app_client_with(
        source,
        kobo_exporter::collector::CollectorOptions::default(),
    )
    .await
}

/// A client of the app on the demo hub (the SQLite file the repository carries, with its last seen).
pub async fn demo_client() -> rocket::local::asynchronous::Client {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = kobo_backend_sqlite::open(
        root.join("demo/hub.sqlite3"),
        Some(kobo_exporter::api::WorkerDir::new(root.join("demo/worker"))),
    )
    .expect("demo hub");
    app_client(std::sync::Arc::new(source)).await
}

/// The body of a `GET path` through the app's client.
pub async fn get_text(client: &rocket::local::asynchronous::Client, path: &str) -> String {
    client
        .get(path.to_string())
        .dispatch()
        .await
        .into_string()
        .await
        .expect("a body")
}

/// One raw HTTP/1.1 request to 127.0.0.1:`port` (`headers`: extra `Name: value\r\n` lines), on its own
/// connection, read to its end: the whole response as text (status line, headers, body).
pub fn http_request(port: u16, method: &str, path: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// The exporter binary built with these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_kobo-exporter");

/// The exporter binary run in `dir`, with none of the kobo/Rocket settings of the environment the tests run
/// in (a Rocket profile or config file, a hub, a worker directory, a metric set) and stdin closed; the
/// caller adds its own variables, arguments and pipes.
pub fn exporter_command(dir: impl AsRef<Path>) -> std::process::Command {
    let mut command = std::process::Command::new(BIN);
    command.current_dir(dir).stdin(std::process::Stdio::null());
    for name in [
        "ROCKET_PROFILE",
        "ROCKET_CONFIG",
        "KOBO_URL",
        "KOBO_WORKER_DIR",
        "KOBO_METRICS",
    ] {
        command.env_remove(name);
    }
    command
}

/// [`exporter_command`] for an exporter that serves: on a free port (Rocket's launch line names it), its
/// log without colours.
pub fn serving_exporter_command(dir: impl AsRef<Path>) -> std::process::Command {
    let mut command = exporter_command(dir);
    command
        .env("ROCKET_PORT", "0")
        .env("ROCKET_CLI_COLORS", "false");
    command
}

/// The exporter binary serving from the repository (its demo hub, unless `envs` name another) on a free
/// port, its log level `normal`; killed on drop.
pub struct Exporter {
    pub child: std::process::Child,
    pub port: u16,
    /// What it wrote to stdout (Rocket's log) so far.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Exporter {
    /// Starts it with these variables and waits (30 s at most) for Rocket's launch line, which names the
    /// port.
    pub fn start(envs: &[(&str, &str)]) -> Exporter {
        use std::io::BufRead as _;
        let mut child = serving_exporter_command(env!("CARGO_MANIFEST_DIR"))
            .env("ROCKET_LOG_LEVEL", "normal")
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start kobo-exporter");
        let stdout = child.stdout.take().expect("stdout");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut exporter = Exporter {
            child,
            port: 0,
            log: log.clone(),
        };
        // Read its log on a thread that keeps draining it (a closed pipe would fail its writes) and reports
        // the port from Rocket's launch line.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut log) = log.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some(url) = line.split("launched from http").nth(1) {
                    let port = url
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = sender.send(port);
                }
            }
        });
        match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => exporter.port = port,
            Ok(None) => panic!("no port in Rocket's launch line"),
            Err(_) => panic!("kobo-exporter did not launch within 30 s"),
        }
        exporter
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /metrics` as Prometheus makes it, with its scrape timeout (the
/// `X-Prometheus-Scrape-Timeout-Seconds` header, `timeout` in seconds): the status, the body and how long
/// the whole answer took.
pub async fn scrape_within(
    client: &rocket::local::asynchronous::Client,
    timeout: Duration,
) -> (rocket::http::Status, String, Duration) {
    let started = std::time::Instant::now();
    let response = client
        .get("/metrics")
        .header(rocket::http::Header::new(
            "X-Prometheus-Scrape-Timeout-Seconds",
            timeout.as_secs_f64().to_string(),
        ))
        .dispatch()
        .await;
    let status = response.status();
    let body = response.into_string().await.expect("a body");
    (status, body, started.elapsed())
}

/// The last-seen cache modes a database source is checked in: inotify (the default), a full listing
/// at every scrape, and inotify with a periodic full listing.
pub fn last_seen_modes() -> [kobo_exporter::api::worker_dir::Freshness; 3] {
    use kobo_exporter::api::worker_dir::Freshness;
    [
        Freshness::default(),
        Freshness {
            watch: false,
            rescan_interval: Duration::ZERO,
        },
        Freshness {
            watch: true,
            rescan_interval: Duration::from_secs(3_600),
        },
    ]
}

/// Issue 17's correctness check for a source over the fixture hub, in every last-seen mode: a changed,
/// an added and a deleted worker row, and a touched, a new and a removed last-seen file, each show at
/// the very next scrape. `open` makes the source on a worker directory; `write` runs SQL on the hub
/// through another connection (as the hub does). Each mode starts from the fixture's rows again.
pub async fn changes_show_at_the_next_scrape<W>(
    open: impl Fn(kobo_exporter::api::WorkerDir) -> Box<dyn kobo_exporter::api::DataSource>,
    write: W,
) where
    W: AsyncFn(&str),
{
    use kobo_exporter::api::worker_dir::file_name;
    use kobo_exporter::api::{LastSeen, WorkerDir};
    use kobo_testkit::CollectExt;

    let set_mtime = |dir: &Path, name: &str, seconds: u64| {
        std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(file_name(name)))
            .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(seconds)))
            .expect("set the mtime");
    };
    for mode in last_seen_modes() {
        write("DELETE FROM hub_worker WHERE id IN (6, 7)").await;
        write("UPDATE hub_worker SET max_load = 4, ready = TRUE WHERE id = 3").await;
        let dir = tempfile::tempdir().expect("temp dir");
        set_mtime(dir.path(), "worker-0002.example.com", 1_700_000_000);
        let source = open(WorkerDir::new(dir.path()).with_freshness(mode));
        let scrape = async || {
            let snapshot = source
                .collect_workers()
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            assert!(
                snapshot.warnings.is_empty(),
                "{mode:?}: {:?}",
                snapshot.warnings
            );
            snapshot.workers
        };
        let worker = |workers: &[kobo_exporter::api::WorkerRecord], name: &str| {
            workers.iter().find(|w| w.name == name).cloned()
        };
        let first = scrape().await;
        assert_eq!(first.len(), 5, "{mode:?}");
        assert_eq!(
            worker(&first, "worker-0002.example.com").map(|w| w.last_seen),
            Some(LastSeen::At(1_700_000_000)),
            "{mode:?}"
        );
        // Unchanged: the same records (a source may serve them without asking the database again).
        assert_eq!(scrape().await, first, "{mode:?}");

        write("UPDATE hub_worker SET max_load = 7, ready = FALSE WHERE id = 3").await;
        let w = worker(&scrape().await, "worker-0003.example.com").expect("still there");
        assert_eq!((w.max_load, w.ready), (7, false), "{mode:?}: a changed row");

        for (id, name) in [
            (6, "worker-0006.example.com"),
            (7, "worker-0007.example.com"),
        ] {
            write(&format!(
                "INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, \
                 task_count, current_load, min_priority) VALUES ({id}, 'k{id}', '{name}', TRUE, 3, 0, \
                 TRUE, 0, 0, 0)"
            ))
            .await;
        }
        let workers = scrape().await;
        let added = worker(&workers, "worker-0006.example.com")
            .unwrap_or_else(|| panic!("{mode:?}: added"));
        assert_eq!(
            (added.max_load, added.last_seen),
            (3, LastSeen::Never),
            "{mode:?}"
        );
        assert_eq!(workers.len(), 7, "{mode:?}");

        write("DELETE FROM hub_worker WHERE id = 7").await;
        let workers = scrape().await;
        assert!(
            worker(&workers, "worker-0007.example.com").is_none(),
            "{mode:?}: deleted"
        );
        assert_eq!(workers.len(), 6, "{mode:?}");

        // Last-seen files: touched, created, removed. With a rescan interval and no inotify they would
        // wait for the interval; every mode checked here reads them at once.
        set_mtime(dir.path(), "worker-0002.example.com", 1_750_000_000);
        set_mtime(dir.path(), "worker-0006.example.com", 1_760_000_000);
        std::fs::remove_file(dir.path().join(file_name("worker-0002.example.com")))
            .and_then(|()| {
                std::fs::File::create(dir.path().join(file_name("worker-0002.example.com")))
                    .map(drop)
            })
            .expect("recreate");
        set_mtime(dir.path(), "worker-0002.example.com", 1_750_000_000);
        let workers = scrape().await;
        assert_eq!(
            worker(&workers, "worker-0002.example.com").map(|w| w.last_seen),
            Some(LastSeen::At(1_750_000_000)),
            "{mode:?}: touched"
        );
        assert_eq!(
            worker(&workers, "worker-0006.example.com").map(|w| w.last_seen),
            Some(LastSeen::At(1_760_000_000)),
            "{mode:?}: created"
        );
        std::fs::remove_file(dir.path().join(file_name("worker-0006.example.com"))).expect("rm");
        let workers = scrape().await;
        assert_eq!(
            worker(&workers, "worker-0006.example.com").map(|w| w.last_seen),
            Some(LastSeen::Never),
            "{mode:?}: removed"
        );
    }
}
