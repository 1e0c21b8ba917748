//! The `kobo-exporter` binary end to end: it serves the bundled demo hub with no configuration, serves any
//! hub named by `KOBO_URL`/`KOBO_WORKER_DIR` with output equal to the reference exporter's, and refuses bad
//! configuration with one clear message and a non-zero exit.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A plain HTTP/1.1 GET; returns the status line, the headers and the body.
fn get(port: u16, path: &str) -> (String, String, String) {
    let response = common::http_request(port, "GET", path, "");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_string(),
        headers.to_ascii_lowercase(),
        body.to_string(),
    )
}

#[test]
fn serves_the_demo_hub_with_no_configuration() {
    let server = common::Exporter::start(&[]);
    let (status, headers, body) = get(server.port, "/kobo_exporter/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{headers}"
    );
    let parsed = kobo_testkit::exposition::parse(&body).expect("parses");
    assert_eq!(parsed.families["kobo_worker_enabled"].samples.len(), 5);
    // The demo carries last-seen files for four of its five workers.
    let seen = &parsed.families["kobo_worker_last_seen_seconds"].samples;
    assert_eq!(seen.values().filter(|v| **v > 0.0).count(), 4, "{body}");
}

#[test]
fn serves_any_hub_from_kobo_url_equal_to_the_reference() {
    let fixture = common::FixtureVars::create();
    let reference = common::reference_exposition();

    // The full set: every reference family equal, and the reference families first, in order.
    let server = common::Exporter::start(&fixture.vars(&[]));
    let (status, _, body) = get(server.port, "/kobo_exporter/metrics/");
    assert!(status.contains("200"), "{status}");
    let ours = kobo_testkit::exposition::parse(&body).expect("parses");
    for name in &reference.order {
        assert_eq!(
            ours.families.get(name),
            reference.families.get(name),
            "{name}"
        );
    }
    assert_eq!(ours.order[..6], reference.order[..]);
    drop(server);

    // `metrics = "reference"`: exactly the reference exporter's output.
    let server = common::Exporter::start(&fixture.vars(&[("KOBO_METRICS", "reference")]));
    let (status, _, body) = get(server.port, "/kobo_exporter/metrics");
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        kobo_testkit::exposition::parse(&body).expect("parses"),
        reference
    );
}

/// Runs the binary with this config and environment; returns its exit status and stderr. It must exit
/// by itself, quickly.
fn run_expecting_exit(config: &str, envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("kobo.toml");
    std::fs::write(&config_path, config).expect("write config");
    let mut child = common::serving_exporter_command(dir.path())
        .env("ROCKET_CONFIG", &config_path)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("stderr");
            return (status, stderr);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("kobo-exporter did not exit on bad config");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_configuration_stops_start_up_with_one_message_naming_the_key() {
    /// A config file, environment variables, and what the message must name.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 4] = [
        ("[default]\n", &[], &["kobo.url", "KOBO_URL"]),
        (
            "[default.kobo]\nurl = \"gopher://hub\"\n",
            &[],
            &["kobo.url", "kobo.toml", "gopher"],
        ),
        (
            "[default.kobo]\nurl = \"sqlite:///nonexistent/hub.sqlite3\"\n",
            &[],
            &["kobo.url", "/nonexistent/hub.sqlite3"],
        ),
        (
            "[default.kobo]\nurl = \"sqlite:///nonexistent/hub.sqlite3\"\n",
            &[("KOBO_WORKER_DIR", "/nonexistent/worker")],
            &["kobo.worker_dir", "KOBO_WORKER_DIR"],
        ),
    ];
    for (config, envs, needles) in cases {
        let (status, stderr) = run_expecting_exit(config, envs);
        assert!(!status.success(), "exit status {status} for {config:?}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one message, got {stderr:?}");
        for needle in needles {
            assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
        }
    }
    assert!(!Path::new("/nonexistent/hub.sqlite3").exists());
}

#[tokio::test]
async fn serves_https_with_rockets_tls_config() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("backends/xmlrpc/tests/tls");
    let config = format!(
        "{{certs=\"{}\",key=\"{}\"}}",
        tls.join("server.pem").display(),
        tls.join("server.key").display()
    );
    let server = common::Exporter::start(&[("ROCKET_TLS", &config)]);
    let ca = std::fs::read(tls.join("ca.pem")).expect("ca");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca cert")])
        .build()
        .expect("client");
    let response = client
        .get(format!(
            "https://127.0.0.1:{}/kobo_exporter/metrics",
            server.port
        ))
        .send()
        .await
        .expect("https request");
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("body");
    assert!(body.contains("kobo_worker_enabled{"), "{body}");
    // Plain HTTP on the TLS port gets no metrics.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/kobo_exporter/metrics",
            server.port
        ))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut server = common::Exporter::start(&[]);
    let (status, _, _) = get(server.port, "/metrics");
    assert!(status.contains("200"), "{status}");
    let pid = server.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends the signal (`TERM`, `HUP`, ...) to the server.
fn send_signal(server: &common::Exporter, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{signal}");
}

/// Waits for the server to exit, at most `limit`; its exit status.
fn wait_for_exit(server: &mut common::Exporter, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "still running {limit:?} after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_during_a_slow_collection_answers_the_scrape_and_exits_0() {
    let (_dir, hub) = common::fixture_sqlite();
    let url = format!("sqlite://{}", hub.display());
    // The collection could wait up to 8 s; SQLite's busy timeout is 5 s: both far past the SIGTERM.
    let mut server = common::Exporter::start(&[("KOBO_URL", &url), ("KOBO_SCRAPE_TIMEOUT", "8")]);
    // Another connection holds the hub file: the exporter's read waits in SQLite's busy timeout.
    let writer = rusqlite::Connection::open(&hub).expect("open");
    writer.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let port = server.port;
    let scrape = std::thread::spawn(move || get(port, "/metrics"));
    std::thread::sleep(Duration::from_secs(1));
    send_signal(&server, "TERM");
    let signalled = Instant::now();
    let (status, _, body) = scrape.join().expect("the scrape in flight got an answer");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("\nkobo_up 0\n"), "{body}");
    // Within the grace period (2 s by default).
    assert!(
        signalled.elapsed() < Duration::from_millis(2500),
        "answered {:?} after SIGTERM",
        signalled.elapsed()
    );
    let exit = wait_for_exit(&mut server, Duration::from_secs(5));
    assert!(exit.success(), "exit status {exit}");
    drop(writer);
}

#[test]
fn sighup_reloads_and_sigusr1_and_sigusr2_are_ignored_with_a_log_line() {
    let mut server = common::Exporter::start(&[]);
    for signal in ["HUP", "USR1", "USR2"] {
        send_signal(&server, signal);
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            server.child.try_wait().expect("wait").is_none(),
            "SIG{signal} ended the process"
        );
        let (status, _, body) = get(server.port, "/metrics");
        assert!(status.contains("200"), "after SIG{signal}: {status}");
        assert!(body.contains("\nkobo_up 1\n"), "{body}");
        assert!(
            body.contains("\nkobo_exporter_config_last_reload_successful 1\n"),
            "{body}"
        );
    }
    let log = server.log();
    assert!(
        log.contains("configuration reloaded (SIGHUP): unchanged: (kobo table)"),
        "SIGHUP not logged as a reload: {log}"
    );
    for signal in ["SIGUSR1", "SIGUSR2"] {
        assert!(
            log.contains(&format!("received {signal}: ignored")),
            "{signal} not logged: {log}"
        );
    }
    // SIGTERM still shuts down.
    send_signal(&server, "TERM");
    let exit = wait_for_exit(&mut server, Duration::from_secs(5));
    assert!(exit.success(), "exit status {exit}");
}

/// Whether the server closed (or reset) this connection within `limit`: a read that ends or fails
/// otherwise than by timing out.
fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn connections_that_send_no_request_are_closed() {
    // Rocket's keep_alive is the limit: 1 s here (5 s by default).
    let server = common::Exporter::start(&[("ROCKET_KEEP_ALIVE", "1")]);
    let mut silent: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect();
    // A keep-alive connection that made a request stays open between requests.
    let mut busy = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let request = "GET /-/healthy HTTP/1.1\r\nHost: localhost\r\n\r\n";
    busy.write_all(request.as_bytes()).expect("send");
    busy.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = [0u8; 512];
    let n = busy.read(&mut answer).expect("answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));

    let started = Instant::now();
    for (i, stream) in silent.iter_mut().enumerate() {
        let left = Duration::from_secs(4).saturating_sub(started.elapsed());
        assert!(
            closed_by_server(stream, left.max(Duration::from_millis(1))),
            "silent connection {i} still open {:?} after it was opened",
            started.elapsed()
        );
    }
    // Scrapes are served meanwhile, and the keep-alive connection still is.
    let (status, _, _) = get(server.port, "/metrics");
    assert!(status.contains("200"), "{status}");
    busy.write_all(request.as_bytes()).expect("send again");
    let n = busy.read(&mut answer).expect("second answer");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "keep-alive connection cut"
    );
    let log = server.log();
    assert!(
        log.contains("that sent no request within 1 s"),
        "not logged: {log}"
    );
}
