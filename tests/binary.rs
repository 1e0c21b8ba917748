//! The `kobo-exporter` binary end to end: it serves the bundled demo hub with no configuration, serves any
//! hub named by `KOBO_URL`/`KOBO_WORKER_DIR` with output equal to the reference exporter's, and refuses bad
//! configuration with one clear message and a non-zero exit.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kobo-exporter");

/// The exporter, started in the repository on a free port; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(envs: &[(&str, &str)]) -> Server {
    let mut command = Command::new(BIN);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("ROCKET_PROFILE")
        .env_remove("ROCKET_CONFIG")
        .env_remove("KOBO_URL")
        .env_remove("KOBO_WORKER_DIR")
        .env("ROCKET_PORT", "0")
        .env("ROCKET_LOG_LEVEL", "normal")
        .env("ROCKET_CLI_COLORS", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start kobo-exporter");
    let stdout = child.stdout.take().expect("stdout");
    let mut server = Server { child, port: 0 };
    // Read its log on a thread that keeps draining it (a closed pipe would fail its writes) and reports
    // the port from Rocket's launch line.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
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
        Ok(Some(port)) => server.port = port,
        Ok(None) => panic!("no port in Rocket's launch line"),
        Err(_) => panic!("kobo-exporter did not launch within 30 s"),
    }
    server
}

/// A plain HTTP/1.1 GET; returns the status line, the headers and the body.
fn get(port: u16, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
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
    let server = start(&[]);
    let (status, headers, body) = get(server.port, "/kobo_exporter/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{headers}"
    );
    let parsed = common::exposition::parse(&body).expect("parses");
    assert_eq!(parsed.families["kobo_worker_enabled"].samples.len(), 5);
    // The demo carries last-seen files for four of its five workers.
    let seen = &parsed.families["kobo_worker_last_seen_seconds"].samples;
    assert_eq!(seen.values().filter(|v| **v > 0.0).count(), 4, "{body}");
}

#[test]
fn serves_any_hub_from_kobo_url_equal_to_the_reference() {
    let (_dir, hub) = common::fixture_sqlite();
    let workers = common::fixture_worker_dir();
    let url = format!("sqlite://{}", hub.display());
    let worker_dir = workers.path().display().to_string();
    let reference =
        common::exposition::parse(&common::read_test_data("fixture-reference-metrics.txt"))
            .expect("reference");

    // The full set: every reference family equal, and the reference families first, in order.
    let server = start(&[("KOBO_URL", &url), ("KOBO_WORKER_DIR", &worker_dir)]);
    let (status, _, body) = get(server.port, "/kobo_exporter/metrics/");
    assert!(status.contains("200"), "{status}");
    let ours = common::exposition::parse(&body).expect("parses");
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
    let server = start(&[
        ("KOBO_URL", &url),
        ("KOBO_WORKER_DIR", &worker_dir),
        ("KOBO_METRICS", "reference"),
    ]);
    let (status, _, body) = get(server.port, "/kobo_exporter/metrics");
    assert!(status.contains("200"), "{status}");
    assert_eq!(common::exposition::parse(&body).expect("parses"), reference);
}

/// Runs the binary with this config and environment; returns its exit status and stderr. It must exit
/// by itself, quickly.
fn run_expecting_exit(config: &str, envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("kobo.toml");
    std::fs::write(&config_path, config).expect("write config");
    let mut command = Command::new(BIN);
    command
        .current_dir(dir.path())
        .env_remove("KOBO_URL")
        .env_remove("KOBO_WORKER_DIR")
        .env_remove("ROCKET_PROFILE")
        .env("ROCKET_CONFIG", &config_path)
        .env("ROCKET_PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start");
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
    let server = start(&[("ROCKET_TLS", &config)]);
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
    let mut server = start(&[]);
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
