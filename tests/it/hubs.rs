//! Several hubs from one exporter (`kobo.hubs.<name>`, served on `/probe?target=<name>`), each with its
//! own source: the configuration, the routes, four sources with one database stalled, and the reload of
//! the configuration (SIGHUP, `POST /-/reload`) while scrapes run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use figment::Figment;
use figment::providers::{Format as _, Toml};
use kobo_exporter::auth::AuthState;
use kobo_exporter::config::ExporterConfig;
use kobo_exporter::hubs::{HubSet, Hubs};
use kobo_testkit::db::{MysqlDb, PostgresDb, TestDb, TestSession};
use rocket::http::{Header, Status};
use rocket::local::asynchronous::Client;

use crate::common;
use crate::support::hub::TestHub;

/// A figment of Rocket's debug defaults (logging off) and this TOML (`[default.kobo]` tables), nothing
/// of the environment or the repository's Rocket.toml.
fn figment(toml: &str) -> Figment {
    Figment::from(rocket::Config::debug_default())
        .merge(("log_level", "off"))
        .merge(Toml::string(toml).nested())
}

/// A client of the app serving the hubs of this TOML.
async fn client(toml: &str) -> Client {
    let figment = figment(toml);
    let config = ExporterConfig::from_figment(&figment).expect("config");
    let (set, _) = HubSet::open(&config, None).expect("hubs");
    let rocket = kobo_exporter::routes::build_hubs(
        figment,
        Arc::new(Hubs::new(set)),
        AuthState::default(),
        &config.path_prefix,
        None,
    );
    Client::tracked(rocket).await.expect("rocket")
}

/// `GET path` as Prometheus makes it (a 2 s scrape timeout): the status, the body, how long it took.
async fn get(client: &Client, path: &str) -> (Status, String, Duration) {
    let started = Instant::now();
    let response = client
        .get(path.to_string())
        .header(Header::new("X-Prometheus-Scrape-Timeout-Seconds", "2"))
        .dispatch()
        .await;
    let status = response.status();
    let body = response.into_string().await.unwrap_or_default();
    (status, body, started.elapsed())
}

/// The names of the families in an exposition (the testkit's parser: it must be well-formed), in order.
fn family_names(body: &str) -> Vec<String> {
    kobo_testkit::exposition::parse(body)
        .unwrap_or_else(|e| panic!("not an exposition: {e}\n{body}"))
        .order
}

#[test]
fn named_hubs_inherit_the_kobo_table_and_errors_name_the_hub_key() {
    let config = ExporterConfig::from_figment(&figment(
        r#"
        [default.kobo]
        query_timeout = 3
        task_metrics = false
        [default.kobo.hubs.a]
        url = "sqlite:///tmp/a.sqlite3"
        [default.kobo.hubs."b-2_x"]
        url = "SQLITE:///tmp/b.sqlite3"
        query_timeout = 7
        "#,
    ))
    .expect("config");
    assert!(config.default.is_none(), "no kobo.url: no hub of its own");
    let names: Vec<&str> = config.hubs.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "b-2_x"]);
    let (a, b) = (&config.hubs["a"], &config.hubs["b-2_x"]);
    assert_eq!(
        a.database.query_timeout,
        Duration::from_secs(3),
        "inherited"
    );
    assert_eq!(b.database.query_timeout, Duration::from_secs(7), "its own");
    assert!(!a.collector.task_metrics && !b.collector.task_metrics);
    assert_eq!(b.database.url, "sqlite:///tmp/b.sqlite3");
    assert_eq!(a.url_key, "kobo.hubs.a.url");
    assert_eq!(a.hub.as_deref(), Some("a"));
    assert_ne!(a.identity, b.identity);

    // The same settings are the same hub; a changed inherited key changes every hub that inherits it.
    let again = |kobo: &str| {
        ExporterConfig::from_figment(&figment(&format!(
            "[default.kobo]\n{kobo}\n[default.kobo.hubs.a]\nurl = \"sqlite:///tmp/a.sqlite3\"\n\
             [default.kobo.hubs.b]\nurl = \"sqlite:///tmp/b.sqlite3\"\nquery_timeout = 7\n"
        )))
        .expect("config")
    };
    let (one, two) = (again("query_timeout = 3"), again("query_timeout = 3.0"));
    assert_eq!(one.hubs["a"].identity, two.hubs["a"].identity);
    let changed = again("query_timeout = 4");
    assert_ne!(one.hubs["a"].identity, changed.hubs["a"].identity);
    assert_eq!(
        one.hubs["b"].identity, changed.hubs["b"].identity,
        "b sets its own"
    );

    // With `kobo.url` the kobo table has its hub too.
    let both = ExporterConfig::from_figment(&figment(
        "[default.kobo]\nurl = \"sqlite:///tmp/k.sqlite3\"\n[default.kobo.hubs.a]\nquery_timeout = 2\n",
    ))
    .expect("config");
    assert!(both.default.is_some());
    assert_eq!(
        both.hubs["a"].database.url, "sqlite:///tmp/k.sqlite3",
        "the url is inherited as well"
    );
    assert_eq!(both.hubs["a"].url_key, "kobo.url");

    let cases: [(&str, &[&str]); 7] = [
        (
            "[default.kobo.hubs.b]\nurl = \"sqlite:///x\"\nquery_timeout = -1\n",
            &["`kobo.hubs.b.query_timeout`", "out of range"],
        ),
        (
            "[default.kobo.hubs.b]\nurl = \"sqlite:///x\"\nquery_timout = 1\n",
            &["unknown key `kobo.hubs.b.query_timout`"],
        ),
        (
            "[default.kobo.hubs.b]\nurl = \"sqlite:///x\"\npath_prefix = \"/x\"\n",
            &["`kobo.hubs.b.path_prefix`", "the whole exporter's"],
        ),
        (
            "[default.kobo.hubs.\"a b\"]\nurl = \"sqlite:///x\"\n",
            &["hub name \"a b\"", "kobo.hubs"],
        ),
        (
            "[default.kobo.hubs.c]\nquery_timeout = 1\n",
            &["missing key `kobo.hubs.c.url`", "kobo.hubs.c"],
        ),
        (
            "[default.kobo.hubs.c]\nurl = \"gopher://x\"\n",
            &["`kobo.hubs.c.url`", "unknown URL scheme"],
        ),
        (
            "[default.kobo.hubs.c]\nurl = \"http://hub/client/\"\ntls_verify = \"maybe\"\n",
            &["`kobo.hubs.c.tls_verify`"],
        ),
    ];
    for (toml, needles) in cases {
        let error = ExporterConfig::from_figment(&figment(toml))
            .expect_err(toml)
            .to_string();
        for needle in needles {
            assert!(error.contains(needle), "{needle:?} not in {error:?}");
        }
    }
}

#[tokio::test]
async fn probe_serves_each_named_hub_and_metrics_the_kobo_tables() {
    let (_dir, hub) = common::fixture_sqlite();
    let url = format!("sqlite://{}", hub.display());
    let client = client(&format!(
        "[default.kobo]\nurl = \"{url}\"\n[default.kobo.hubs.full]\nurl = \"{url}\"\n\
         [default.kobo.hubs.ref]\nurl = \"{url}\"\nmetrics = \"reference\"\n"
    ))
    .await;

    let (status, body, _) = get(&client, "/probe?target=full").await;
    assert_eq!(status, Status::Ok, "{body}");
    let names = family_names(&body);
    assert!(body.contains("\nkobo_up 1\n"), "{body}");
    for name in [
        "kobo_worker_enabled",
        "kobo_exporter_build_info",
        "kobo_exporter_collect_duration_seconds",
        "kobo_exporter_collect_errors_total",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in the probe");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("process_") || n.starts_with("kobo_exporter_config_")),
        "the process's metrics are /metrics' only: {names:?}"
    );

    let (status, body, _) = get(&client, "/probe?target=ref").await;
    assert_eq!(status, Status::Ok);
    assert_eq!(family_names(&body).len(), 6, "the reference six: {body}");

    // The kobo table's own hub, with the process's metrics.
    let (status, body, _) = get(&client, "/metrics").await;
    assert_eq!(status, Status::Ok);
    assert!(body.contains("\nkobo_up 1\n"));
    if cfg!(target_os = "linux") {
        assert!(
            family_names(&body)
                .iter()
                .any(|n| n.starts_with("process_"))
        );
    }

    // OpenMetrics and gzip as on /metrics.
    let response = client
        .get("/probe?target=full")
        .header(Header::new("Accept", "application/openmetrics-text"))
        .dispatch()
        .await;
    let content_type = response.content_type().map(|c| c.to_string());
    let body = response.into_string().await.unwrap_or_default();
    assert!(
        content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{content_type:?}"
    );
    assert!(body.ends_with("# EOF\n"));
    let response = client
        .get("/probe?target=full")
        .header(Header::new("Accept-Encoding", "gzip"))
        .dispatch()
        .await;
    assert_eq!(response.headers().get_one("Content-Encoding"), Some("gzip"));

    // A target is a configured name: nothing else, never echoed.
    for (path, status) in [
        ("/probe", Status::BadRequest),
        ("/probe?target=", Status::BadRequest),
        ("/probe?target=nope", Status::NotFound),
        ("/probe?target=sqlite:///etc/passwd", Status::NotFound),
        (
            "/probe?target=http://evil.example/%3Cb%3E",
            Status::NotFound,
        ),
    ] {
        let (got, body, _) = get(&client, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains("the hubs configured: full, ref"), "{body}");
        assert!(!body.contains("nope") && !body.contains("evil") && !body.contains("passwd"));
    }

    // The landing page links each hub.
    let page = common::get_text(&client, "/").await;
    for link in ["href=\"probe?target=full\"", "href=\"probe?target=ref\""] {
        assert!(page.contains(link), "{link} not in {page}");
    }
    assert!(page.contains("<b>sqlite</b>"));

    // No reloader in this instance: `POST /-/reload` is off; other methods are 405.
    let response = client.post("/-/reload").dispatch().await;
    assert_eq!(response.status(), Status::Forbidden);
    let response = client.get("/-/reload").dispatch().await;
    assert_eq!(response.status(), Status::MethodNotAllowed);
    assert_eq!(response.headers().get_one("Allow"), Some("POST, PUT"));
    let response = client.post("/probe?target=full").dispatch().await;
    assert_eq!(response.status(), Status::MethodNotAllowed);
    assert_eq!(response.headers().get_one("Allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn without_a_hub_of_its_own_metrics_has_the_exporters_metrics_alone() {
    let (_dir, hub) = common::fixture_sqlite();
    let client = client(&format!(
        "[default.kobo.hubs.only]\nurl = \"sqlite://{}\"\n",
        hub.display()
    ))
    .await;
    let (status, body, _) = get(&client, "/metrics").await;
    assert_eq!(status, Status::Ok, "{body}");
    let names = family_names(&body);
    assert!(names.iter().any(|n| n == "kobo_exporter_build_info"));
    assert!(
        !names
            .iter()
            .any(|n| n == "kobo_up" || n.starts_with("kobo_worker"))
    );
    let (status, _, _) = get(&client, "/-/ready").await;
    assert_eq!(status, Status::Ok);
    let (status, body, _) = get(&client, "/probe?target=only").await;
    assert_eq!(status, Status::Ok);
    assert!(body.contains("\nkobo_up 1\n"));
    let page = common::get_text(&client, "/").await;
    assert!(page.contains("href=\"probe?target=only\""));
}

/// The slowest of three probes of `hub`, each answering `kobo_up 1` (the first reads the task data too).
async fn usual_time(client: &Client, hub: &str) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let (status, body, took) = get(client, &format!("/probe?target={hub}")).await;
        assert_eq!(status, Status::Ok, "{hub}: {body}");
        assert!(body.contains("\nkobo_up 1\n"), "{hub}: {body}");
        slowest = slowest.max(took);
    }
    slowest
}

/// With `stalled`'s database locked against its reads: its probe answers `kobo_up 0` by Prometheus'
/// deadline, while each other hub, probed meanwhile, answers `kobo_up 1` in about its usual time.
async fn stall<D: TestDb>(
    client: &Client,
    db: &D,
    stalled: &str,
    usual: &BTreeMap<&'static str, Duration>,
) {
    let mut locker = db.session().await;
    locker.lock_exclusive("hub_worker").await;
    let blocked = async {
        let (status, body, took) = get(client, &format!("/probe?target={stalled}")).await;
        assert_eq!(status, Status::Ok);
        assert!(
            body.contains("\nkobo_up 0\n"),
            "{stalled} while locked: {body}"
        );
        assert!(
            took < Duration::from_secs(2),
            "{stalled} answered after {took:?}"
        );
        took
    };
    let others = async {
        // While the stalled hub's collection is in flight.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut answered = Vec::new();
        for round in 0..3 {
            for (&hub, &usual) in usual.iter().filter(|(hub, _)| **hub != stalled) {
                let (status, body, took) = get(client, &format!("/probe?target={hub}")).await;
                assert_eq!(status, Status::Ok);
                assert!(
                    body.contains("\nkobo_up 1\n"),
                    "{hub} while {stalled} stalls: {body}"
                );
                assert!(
                    took <= usual * 3 + Duration::from_millis(500),
                    "{hub} took {took:?} (usually {usual:?}) while {stalled} stalled, round {round}"
                );
                answered.push(hub);
            }
        }
        answered
    };
    let (took, answered) = tokio::join!(blocked, others);
    assert!(
        took > Duration::from_millis(1000),
        "the lock held it ({took:?})"
    );
    assert_eq!(answered.len(), 3 * (usual.len() - 1));
    locker.unlock().await;
    // Past the 1 s back-off after the failure.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, body, _) = get(client, &format!("/probe?target={stalled}")).await;
    assert!(
        body.contains("\nkobo_up 1\n"),
        "{stalled} after the lock: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_sources_in_one_exporter_and_a_stalled_database_holds_up_no_other() {
    let (Some(postgres), Some(mariadb)) = (
        PostgresDb::with_fixture().await,
        MysqlDb::with_fixture().await,
    ) else {
        return;
    };
    let (_dir, sqlite) = common::fixture_sqlite();
    let xmlrpc = TestHub::start().await;
    // A query timeout far beyond the scrape's: only Prometheus' deadline (2 s) ends a stalled read.
    let client = client(&format!(
        "[default.kobo]\nquery_timeout = 60\n\
         [default.kobo.hubs.sqlite]\nurl = \"sqlite://{}\"\n\
         [default.kobo.hubs.postgres]\nurl = \"{}\"\n\
         [default.kobo.hubs.mariadb]\nurl = \"{}\"\n\
         [default.kobo.hubs.xmlrpc]\nurl = \"http://{}/client/\"\n",
        sqlite.display(),
        postgres.url(),
        mariadb.url(),
        xmlrpc.addr()
    ))
    .await;
    let mut usual = BTreeMap::new();
    for hub in ["sqlite", "postgres", "mariadb", "xmlrpc"] {
        usual.insert(hub, usual_time(&client, hub).await);
    }
    // Each source read what the hub holds: the fixture's workers, the same on every source.
    let mut workers = BTreeMap::new();
    for hub in usual.keys() {
        let (_, body, _) = get(&client, &format!("/probe?target={hub}")).await;
        let enabled: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("kobo_worker_enabled{"))
            .collect();
        workers.insert(*hub, enabled.join("\n"));
    }
    let first = workers["sqlite"].clone();
    assert!(!first.is_empty());
    for (hub, lines) in &workers {
        assert_eq!(lines, &first, "{hub} reads other workers");
    }
    stall(&client, &postgres, "postgres", &usual).await;
    stall(&client, &mariadb, "mariadb", &usual).await;
}

/// A config file the exporter binary reads (`ROCKET_CONFIG`), rewritten between reloads.
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl ConfigFile {
    fn new(contents: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kobo.toml");
        std::fs::write(&path, contents).expect("write config");
        ConfigFile { _dir: dir, path }
    }

    fn write(&self, contents: &str) {
        // Whole or not at all, as an editor or a configuration manager replaces it.
        let next = self.path.with_extension("next");
        std::fs::write(&next, contents).expect("write config");
        std::fs::rename(&next, &self.path).expect("replace config");
    }
}

/// How a reload is asked for.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    Hup,
    Post,
}

/// The exporter under reload, and the HTTP client of the test.
struct Reloading {
    exporter: common::Exporter,
    http: reqwest::Client,
}

impl Reloading {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.exporter.port)
    }

    async fn get(&self, path: &str) -> (u16, String) {
        match self
            .http
            .get(self.url(path))
            .header("X-Prometheus-Scrape-Timeout-Seconds", "5")
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// The value of an unlabelled sample on `/metrics`.
    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Asks for a reload; whether it was applied (`POST`: its answer; SIGHUP: the reload metrics).
    async fn reload(&self, trigger: Trigger) -> (bool, String) {
        let before = self
            .metric("kobo_exporter_config_last_reload_success_timestamp_seconds")
            .await;
        match trigger {
            Trigger::Post => {
                let response = self
                    .http
                    .post(self.url("/-/reload"))
                    .send()
                    .await
                    .expect("POST /-/reload");
                let ok = response.status().is_success();
                (ok, response.text().await.unwrap_or_default())
            }
            Trigger::Hup => {
                let pid = self.exporter.child.id().to_string();
                let status = std::process::Command::new("kill")
                    .args(["-HUP", &pid])
                    .status()
                    .expect("kill");
                assert!(status.success());
                // Done when the metrics move: the timestamp (applied) or the flag (refused).
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let now = self
                        .metric("kobo_exporter_config_last_reload_success_timestamp_seconds")
                        .await;
                    if now != before {
                        return (true, self.exporter.log());
                    }
                    if self
                        .metric("kobo_exporter_config_last_reload_successful")
                        .await
                        == Some(0.0)
                    {
                        return (false, self.exporter.log());
                    }
                }
                panic!("SIGHUP: no reload within 10 s: {}", self.exporter.log());
            }
        }
    }
}

/// Waits (10 s at most) until `db` has no connection left; how many it had at the end.
async fn connections_drain<D: TestDb>(db: &D) -> usize {
    let started = Instant::now();
    loop {
        let count = db.connection_ids().await.len();
        if count == 0 || started.elapsed() > Duration::from_secs(10) {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The config of the reload test: the kobo table's own hub (SQLite), `pg` on the PostgreSQL database
/// `pg_url`, `my` on MariaDB, and optional extra hubs.
fn reload_config(sqlite: &str, pg_url: &str, my_url: &str, extra: &str) -> String {
    format!(
        "[default.kobo]\nurl = \"{sqlite}\"\nenable_reload = true\n\
         [default.kobo.hubs.pg]\nurl = \"{pg_url}\"\n\
         [default.kobo.hubs.my]\nurl = \"{my_url}\"\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_with_scrapes_running_lose_no_scrape_and_leak_no_connection() {
    let (Some(pg_a), Some(pg_b), Some(my), Some(my_extra)) = (
        PostgresDb::with_fixture().await,
        PostgresDb::with_fixture().await,
        MysqlDb::with_fixture().await,
        MysqlDb::with_fixture().await,
    ) else {
        return;
    };
    let (_dir, sqlite) = common::fixture_sqlite();
    let sqlite = format!("sqlite://{}", sqlite.display());
    let (mut pg_on, mut pg_off) = (&pg_a, &pg_b);
    let file = ConfigFile::new(&reload_config(&sqlite, &pg_on.url(), &my.url(), ""));
    let exporter = common::Exporter::start(&[("ROCKET_CONFIG", &file.path.display().to_string())]);
    let reloading = Arc::new(Reloading {
        exporter,
        http: reqwest::Client::new(),
    });

    // Scrapers on the hubs that every configuration below has, the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut scrapers = Vec::new();
    for path in ["/metrics", "/probe?target=pg", "/probe?target=my"] {
        let (reloading, stop, scrapes, failures) = (
            Arc::clone(&reloading),
            Arc::clone(&stop),
            Arc::clone(&scrapes),
            Arc::clone(&failures),
        );
        scrapers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = reloading.get(path).await;
                scrapes.fetch_add(1, Ordering::Relaxed);
                if status != 200 || !body.contains("\nkobo_up 1\n") {
                    let head: String = body.chars().take(300).collect();
                    failures
                        .lock()
                        .expect("failures")
                        .push(format!("{path}: {status}: {head}"));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pg_on.connection_ids().await.is_empty());
    let my_connections = my.connection_ids().await;
    assert!(!my_connections.is_empty());

    let mut applied = 0;
    for (round, trigger) in [Trigger::Hup, Trigger::Post].into_iter().enumerate() {
        // Add two hubs.
        let extra = format!(
            "[default.kobo.hubs.extra_pg]\nurl = \"{}\"\n[default.kobo.hubs.extra_my]\nurl = \"{}\"\n",
            pg_off.url(),
            my_extra.url()
        );
        file.write(&reload_config(&sqlite, &pg_on.url(), &my.url(), &extra));
        let (ok, said) = reloading.reload(trigger).await;
        assert!(ok, "{trigger:?} add: {said}");
        applied += 1;
        for hub in ["extra_pg", "extra_my"] {
            let (status, body) = reloading.get(&format!("/probe?target={hub}")).await;
            assert_eq!(status, 200, "{trigger:?}: {hub} added: {body}");
            assert!(body.contains("\nkobo_up 1\n"), "{body}");
        }
        assert!(!my_extra.connection_ids().await.is_empty());

        // Remove them: their connections close.
        file.write(&reload_config(&sqlite, &pg_on.url(), &my.url(), ""));
        let (ok, said) = reloading.reload(trigger).await;
        assert!(ok, "{trigger:?} remove: {said}");
        applied += 1;
        for hub in ["extra_pg", "extra_my"] {
            let (status, _) = reloading.get(&format!("/probe?target={hub}")).await;
            assert_eq!(status, 404, "{trigger:?}: {hub} removed");
        }
        assert_eq!(
            connections_drain(pg_off).await,
            0,
            "{trigger:?}: extra_pg leaks"
        );
        assert_eq!(
            connections_drain(&my_extra).await,
            0,
            "{trigger:?}: extra_my leaks"
        );

        // Move `pg` to the other database: it keeps answering, the old database's connections close.
        file.write(&reload_config(&sqlite, &pg_off.url(), &my.url(), ""));
        let (ok, said) = reloading.reload(trigger).await;
        assert!(ok, "{trigger:?} change: {said}");
        applied += 1;
        std::mem::swap(&mut pg_on, &mut pg_off);
        let (status, body) = reloading.get("/probe?target=pg").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            connections_drain(pg_off).await,
            0,
            "{trigger:?}: the old pg leaks"
        );
        assert!(
            !pg_on.connection_ids().await.is_empty(),
            "pg reads its new database"
        );

        // A broken file is refused, naming what is wrong; everything keeps serving.
        let broken = match round {
            0 => "[default.kobo\nurl = \"sqlite://x\"\n".to_string(),
            _ => reload_config(&sqlite, &pg_on.url(), &my.url(), "").replace(
                "[default.kobo.hubs.my]\n",
                "[default.kobo.hubs.my]\nmax_connections = 0\n",
            ),
        };
        file.write(&broken);
        let (ok, said) = reloading.reload(trigger).await;
        assert!(!ok, "{trigger:?}: a broken file was applied");
        let named = match round {
            0 => "TOML parse error",
            _ => "`kobo.hubs.my.max_connections`",
        };
        assert!(said.contains(named), "{trigger:?}: {named} not in {said}");
        assert_eq!(
            reloading
                .metric("kobo_exporter_config_last_reload_successful")
                .await,
            Some(0.0)
        );
        let (status, body) = reloading.get("/probe?target=pg").await;
        assert_eq!(status, 200, "the old configuration serves: {body}");

        // Mended: the next reload applies, and says so.
        file.write(&reload_config(&sqlite, &pg_on.url(), &my.url(), ""));
        let (ok, said) = reloading.reload(trigger).await;
        assert!(ok, "{trigger:?} mended: {said}");
        applied += 1;
        assert_eq!(
            reloading
                .metric("kobo_exporter_config_last_reload_successful")
                .await,
            Some(1.0)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for scraper in scrapers {
        scraper.await.expect("scraper");
    }
    let failures = failures.lock().expect("failures").clone();
    assert!(failures.is_empty(), "failed scrapes: {failures:#?}");
    let scrapes = scrapes.load(Ordering::Relaxed);
    assert!(scrapes > 30, "only {scrapes} scrapes ran");
    assert_eq!(applied, 8);
    // The hub that no reload changed kept its pool: a connection it had before the 8 reloads is still
    // there (a hub opened anew would have closed them all).
    let still = my.connection_ids().await;
    assert!(
        my_connections.iter().any(|id| still.contains(id)),
        "my was reconnected: {my_connections:?} then {still:?}"
    );
    let log = reloading.exporter.log();
    assert!(
        log.contains("configuration reloaded (SIGHUP): added: extra_my, extra_pg"),
        "{log}"
    );
    assert!(
        log.contains("configuration reloaded (POST /-/reload): changed: pg"),
        "{log}"
    );
    assert!(
        log.contains("refused, the configuration in force keeps serving"),
        "{log}"
    );
}

#[test]
fn a_reload_replaces_the_basic_auth_users_and_enable_reload() {
    use base64::Engine as _;

    let (_dir, hub) = common::fixture_sqlite();
    let base = format!(
        "[default.kobo]\nurl = \"sqlite://{}\"\nenable_reload = true\n",
        hub.display()
    );
    let file = ConfigFile::new(&base);
    let exporter = common::Exporter::start(&[("ROCKET_CONFIG", &file.path.display().to_string())]);
    let request = |method: &str, path: &str, headers: &str| {
        let response = common::http_request(exporter.port, method, path, headers);
        let status = response.split(' ').nth(1).unwrap_or_default().to_string();
        (status, response)
    };
    let credentials = format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode("prometheus:s3cret")
    );
    assert_eq!(request("GET", "/metrics", "").0, "200");

    let hash = bcrypt::hash("s3cret", 4).expect("hash");
    file.write(&format!(
        "{base}[default.kobo.basic_auth_users]\nprometheus = \"{hash}\"\n"
    ));
    let (status, response) = request("POST", "/-/reload", "");
    assert_eq!(status, "200", "{response}");
    assert_eq!(
        request("GET", "/metrics", "").0,
        "401",
        "the new users apply"
    );
    assert_eq!(request("GET", "/metrics", &credentials).0, "200");
    assert_eq!(
        request("POST", "/-/reload", "").0,
        "401",
        "reloading needs them too"
    );

    // Users gone and HTTP reloads off: applied by the last one allowed.
    file.write(&base.replace("enable_reload = true", "enable_reload = false"));
    let (status, response) = request("PUT", "/-/reload", &credentials);
    assert_eq!(status, "200", "{response}");
    assert_eq!(request("GET", "/metrics", "").0, "200", "no users: no auth");
    let (status, response) = request("POST", "/-/reload", "");
    assert_eq!(status, "403", "{response}");
    assert!(response.contains("enable_reload = true"), "{response}");
    assert!(!exporter.log().contains(&hash), "no hash in the log");
}
