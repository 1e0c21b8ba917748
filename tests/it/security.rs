//! Security: credentials never reach logs or answers, and nothing but GET and HEAD is answered with
//! success. (Basic auth and TLS: tests/routes.rs and tests/binary.rs.)

use crate::common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use rocket::http::{Method, Status};
use rocket::local::asynchronous::Client;

/// The exporter with its stdout and stderr going to files; killed on drop.
struct Logged {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Logged {
    fn start(envs: &[(&str, &str)]) -> (Logged, u16) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("exporter.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = common::serving_exporter_command(env!("CARGO_MANIFEST_DIR"))
            .env("ROCKET_LOG_LEVEL", "debug")
            .env("KOBO_WORKER_DIR", dir.path())
            .envs(envs.iter().copied())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start kobo-exporter");
        let logged = Logged {
            child,
            log,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            let text = logged.log();
            if let Some(url) = text.split("launched from http://").nth(1) {
                let port = url
                    .lines()
                    .next()
                    .and_then(|l| l.trim().rsplit(':').next())
                    .and_then(|p| p.parse().ok());
                if let Some(port) = port {
                    return (logged, port);
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "did not launch: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A plain HTTP/1.1 GET: status line and body.
fn get(port: u16, path: &str) -> String {
    crate::common::http_request(port, "GET", path, "")
}

/// Runs the exporter against a source that cannot be reached, scrapes every route, and checks that the
/// secret is in neither the answers nor the log, while the failure itself is logged.
fn assert_secret_never_shown(envs: &[(&str, &str)], secret: &str) {
    // Nothing listens on 127.0.0.1:1, so each source fails at once; were a source to wait for its connect
    // timeout instead (the PostgreSQL source did, with sqlx's pool, 5 s by default), a short one.
    let mut envs = envs.to_vec();
    envs.insert(0, ("KOBO_CONNECT_TIMEOUT", "1"));
    let (exporter, port) = Logged::start(&envs);
    let mut answers = String::new();
    for path in [
        "/metrics",
        "/kobo_exporter/metrics",
        "/",
        "/-/ready",
        "/-/healthy",
    ] {
        answers.push_str(&get(port, path));
    }
    assert!(answers.contains("kobo_up 0"), "{answers}");
    let log = exporter.log();
    assert!(
        log.contains("collecting from the"),
        "the failure is logged: {log}"
    );
    assert!(
        !answers.contains(secret),
        "the secret is in an answer: {answers}"
    );
    assert!(!log.contains(secret), "the secret is in the log: {log}");
}

#[test]
fn a_database_password_in_the_url_is_never_shown() {
    let secret = "TopSecretPw1";
    assert_secret_never_shown(
        &[(
            "KOBO_URL",
            &format!("postgres://kobo:{secret}@127.0.0.1:1/hub"),
        )],
        secret,
    );
    assert_secret_never_shown(
        &[(
            "KOBO_URL",
            &format!("mysql://kobo:{secret}@127.0.0.1:1/hub"),
        )],
        secret,
    );
}

#[test]
fn passwords_and_tokens_from_files_are_never_shown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let password = dir.path().join("password");
    std::fs::write(&password, "FilePassw0rd\n").expect("write");
    let token = dir.path().join("token");
    std::fs::write(&token, "BearerT0ken\n").expect("write");
    let password = password.display().to_string();
    let token = token.display().to_string();
    assert_secret_never_shown(
        &[
            ("KOBO_URL", "mysql://kobo@127.0.0.1:1/hub"),
            ("KOBO_PASSWORD_FILE", &password),
        ],
        "FilePassw0rd",
    );
    assert_secret_never_shown(
        &[
            ("KOBO_URL", "http://127.0.0.1:1/xmlrpc/client/"),
            ("KOBO_USERNAME", "monitor"),
            ("KOBO_PASSWORD_FILE", &password),
        ],
        "FilePassw0rd",
    );
    assert_secret_never_shown(
        &[
            ("KOBO_URL", "https://127.0.0.1:1/xmlrpc/client/"),
            ("KOBO_BEARER_TOKEN_FILE", &token),
        ],
        "BearerT0ken",
    );
}

#[rocket::async_test]
async fn only_get_and_head_succeed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = kobo_backend_sqlite::open(root.join("demo/hub.sqlite3"), None).expect("demo");
    let collector = kobo_exporter::collector::HubCollector::new(
        std::sync::Arc::new(source),
        kobo_exporter::collector::CollectorOptions::default(),
    );
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let client = Client::tracked(kobo_exporter::routes::build(figment, collector))
        .await
        .expect("rocket");
    let paths = [
        "/",
        "/metrics",
        "/kobo_exporter/metrics",
        "/kobo_exporter/metrics/",
        "/-/healthy",
        "/-/ready",
    ];
    for path in paths {
        assert_eq!(
            client.get(path).dispatch().await.status(),
            Status::Ok,
            "GET {path}"
        );
        assert_eq!(
            client.head(path).dispatch().await.status(),
            Status::Ok,
            "HEAD {path}"
        );
        for method in [
            Method::Post,
            Method::Put,
            Method::Delete,
            Method::Patch,
            Method::Options,
        ] {
            let status = client.req(method, path).body("x").dispatch().await.status();
            assert!(
                status.class() != rocket::http::StatusClass::Success,
                "{method} {path}: {status}"
            );
        }
    }
}

/// A plain HTTP/1.1 GET with extra header lines (`Name: value\r\n` each): status line, headers and body.
fn get_with(port: u16, path: &str, headers: &str) -> String {
    crate::common::http_request(port, "GET", path, headers)
}

/// A config file serving the demo hub with basic auth for `prometheus` (password `password`), in `dir`.
fn basic_auth_config(dir: &Path, password: &str) -> String {
    let hash = bcrypt::hash(password, 4).expect("hash");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/hub.sqlite3");
    let config = dir.join("kobo.toml");
    std::fs::write(
        &config,
        format!(
            "[default.kobo]\nurl = \"sqlite://{}\"\n\n[default.kobo.basic_auth_users]\nprometheus = \"{hash}\"\n",
            demo.display()
        ),
    )
    .expect("write config");
    config.display().to_string()
}

#[test]
fn basic_auth_credentials_never_reach_the_debug_log() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let password = "Debug0nlyPassw0rd";
    let config = basic_auth_config(dir.path(), password);
    // Logged runs at log_level debug.
    let (exporter, port) = Logged::start(&[("ROCKET_CONFIG", &config)]);
    let right = base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{password}"));
    let wrong = base64::engine::general_purpose::STANDARD.encode("prometheus:WrongPassw0rd");
    let answer = get_with(
        port,
        "/metrics",
        &format!("Authorization: Basic {right}\r\n"),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let refused = get_with(
        port,
        "/metrics",
        &format!("Authorization: Basic {wrong}\r\n"),
    );
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let log = exporter.log();
    // Debug output is there: Rocket's routing of the request, and the refusal.
    assert!(log.contains("GET /metrics"), "{log}");
    assert!(log.contains("refused GET /metrics"), "{log}");
    for secret in [right.as_str(), wrong.as_str(), password, "WrongPassw0rd"] {
        assert!(!log.contains(secret), "{secret} is in the log: {log}");
    }
}

#[test]
fn refused_credentials_name_the_peer_not_a_header_the_client_sets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = basic_auth_config(dir.path(), "pw");
    // The line the exporter logs for a request without credentials that claims a client address.
    let refusal_logged = |envs: &[(&str, &str)]| {
        let (exporter, port) = Logged::start(envs);
        let refused = get_with(port, "/metrics", "X-Real-IP: 203.0.113.9\r\n");
        assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
        let log = exporter.log();
        let line = log
            .lines()
            .find(|l| l.contains("refused GET /metrics"))
            .unwrap_or_else(|| panic!("no refusal logged: {log}"));
        assert!(line.contains("(client 127.0.0.1:"), "{line}");
        line.to_string()
    };

    // No ip_header configured: the header is not believed, and not even mentioned.
    let line = refusal_logged(&[("ROCKET_CONFIG", &config)]);
    assert!(!line.contains("203.0.113.9"), "{line}");

    // Configured (behind a proxy that sets it): the peer, and what the header says.
    let line = refusal_logged(&[
        ("ROCKET_CONFIG", &config),
        ("ROCKET_IP_HEADER", "X-Real-IP"),
    ]);
    assert!(line.contains("X-Real-IP says 203.0.113.9"), "{line}");
}

#[test]
fn the_systemd_unit_raises_the_descriptor_limit() {
    // Connections that send a partial request are held (README, Running it in production): 1,024
    // descriptors, systemd's default soft limit, are too few.
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kobo-exporter.service"),
    )
    .expect("unit");
    let limit = unit
        .lines()
        .find_map(|line| line.strip_prefix("LimitNOFILE="))
        .and_then(|value| value.trim().parse::<u64>().ok());
    assert!(limit.is_some_and(|n| n >= 8192), "LimitNOFILE: {limit:?}");
}
