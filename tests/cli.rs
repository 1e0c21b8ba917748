//! The command line: `--help`, `--version`, `--config FILE`, `--check-config` (one-line verdict, exit 0/1,
//! no secrets) and `--once` (the exposition text on stdout, or the error on stderr and exit 1).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kobo-exporter");

/// Runs the binary in `dir` with these arguments and environment, with no inherited kobo/Rocket settings.
fn run(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .args(args)
        .env_remove("ROCKET_PROFILE")
        .env_remove("ROCKET_CONFIG")
        .env_remove("KOBO_URL")
        .env_remove("KOBO_WORKER_DIR")
        .env_remove("KOBO_METRICS")
        .stdin(Stdio::null());
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("run kobo-exporter")
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_version() {
    let out = run(repo(), &["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for option in ["--config <FILE>", "--check-config", "--once", "--version"] {
        assert!(help.contains(option), "{option} not in {help}");
    }
    let out = run(repo(), &["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("kobo-exporter {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(repo(), &["--check-config", "--once"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "conflicting options are a usage error"
    );
    let out = run(repo(), &["--frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_config_on_the_demo_hub() {
    let out = run(repo(), &["--check-config"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok: SQLite database demo/hub.sqlite3, 5 workers\n"
    );
}

/// A config file in a temporary directory; returns the directory and the file's path.
fn config_file(contents: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kobo.toml");
    std::fs::write(&path, contents).expect("write config");
    (dir, path)
}

#[test]
fn config_option_is_rocket_config() {
    let (_hub_dir, hub) = common::fixture_sqlite();
    let (dir, path) = config_file(&format!(
        "[default.kobo]\nurl = \"sqlite://{}\"\n",
        hub.display()
    ));
    let path = path.display().to_string();
    let by_option = run(dir.path(), &["--config", &path, "--check-config"], &[]);
    let by_env = run(dir.path(), &["--check-config"], &[("ROCKET_CONFIG", &path)]);
    assert!(by_option.status.success(), "{}", text(&by_option.stdout));
    assert_eq!(by_option.stdout, by_env.stdout);
    let verdict = text(&by_option.stdout);
    assert!(verdict.starts_with("ok: SQLite database "), "{verdict}");
    assert!(verdict.ends_with(" workers\n"), "{verdict}");
    assert_eq!(verdict.lines().count(), 1);

    // A file named with --config must exist (a missing Rocket.toml is fine, a missing --config file is not).
    let out = run(
        dir.path(),
        &["--config", "/nonexistent/kobo.toml", "--check-config"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let verdict = text(&out.stdout);
    assert!(verdict.starts_with("error: "), "{verdict}");
    assert!(verdict.contains("/nonexistent/kobo.toml"), "{verdict}");
}

#[test]
fn check_config_refuses_bad_configuration_in_one_line() {
    let cases: [(&str, &[&str]); 4] = [
        ("[default]\n", &["kobo.url", "KOBO_URL"]),
        (
            "[default.kobo]\nurl = \"gopher://hub\"\n",
            &["kobo.url", "gopher"],
        ),
        (
            "[default.kobo]\nurl = \"sqlite:///nonexistent/hub.sqlite3\"\n",
            &["kobo.url", "/nonexistent/hub.sqlite3"],
        ),
        (
            "[default]\nport = \"not a port\"\n[default.kobo]\nurl = \"sqlite://x\"\n",
            &["port"],
        ),
    ];
    for (config, needles) in cases {
        let (dir, path) = config_file(config);
        let out = run(
            dir.path(),
            &["--config", &path.display().to_string(), "--check-config"],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{config}");
        let verdict = text(&out.stdout);
        assert_eq!(verdict.lines().count(), 1, "{verdict}");
        assert!(verdict.starts_with("error: "), "{verdict}");
        for needle in needles {
            assert!(verdict.contains(needle), "{needle:?} not in {verdict:?}");
        }
    }
}

#[test]
fn check_config_never_prints_secrets() {
    // Nothing listens on port 1: the connection fails, and the message must not carry the password.
    let (dir, path) = config_file(
        "[default.kobo]\nurl = \"postgresql://kobo:s3cr3t-pw@127.0.0.1:1/kobo\"\nconnect_timeout = 2\n\
         reconnect_backoff_max = 0\n",
    );
    let out = run(
        dir.path(),
        &["--config", &path.display().to_string(), "--check-config"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.starts_with("error: "), "{all}");
    assert!(!all.contains("s3cr3t-pw"), "secret printed: {all}");
}

#[test]
fn once_prints_the_exposition_of_the_demo_hub() {
    let out = run(repo(), &["--once"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = text(&out.stdout);
    let parsed = common::exposition::parse(&body).expect("parses");
    assert_eq!(parsed.families["kobo_worker_enabled"].samples.len(), 5);
    let up = &parsed.families["kobo_up"].samples;
    assert_eq!(up.values().copied().collect::<Vec<_>>(), [1.0]);
    assert!(parsed.families.contains_key("kobo_exporter_build_info"));
    // Only the exposition on stdout: no launch banner or log lines.
    assert!(body.starts_with("# HELP kobo_worker_enabled "), "{body}");
}

#[test]
fn once_with_the_reference_set_equals_the_reference() {
    let (_dir, hub) = common::fixture_sqlite();
    let workers = common::fixture_worker_dir();
    let url = format!("sqlite://{}", hub.display());
    let worker_dir = workers.path().display().to_string();
    let out = run(
        repo(),
        &["--once"],
        &[
            ("KOBO_URL", &url),
            ("KOBO_WORKER_DIR", &worker_dir),
            ("KOBO_METRICS", "reference"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference =
        common::exposition::parse(&common::read_test_data("fixture-reference-metrics.txt"))
            .expect("reference");
    assert_eq!(
        common::exposition::parse(&text(&out.stdout)).expect("parses"),
        reference
    );
}

#[test]
fn once_fails_with_the_error_on_stderr() {
    let (dir, path) = config_file(
        "[default.kobo]\nurl = \"postgresql://kobo:s3cr3t-pw@127.0.0.1:1/kobo\"\nconnect_timeout = 2\n",
    );
    let out = run(
        dir.path(),
        &["--config", &path.display().to_string(), "--once"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("kobo-exporter: "), "{stderr}");
    assert!(stderr.contains("postgres"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-pw"), "{stderr}");
}
