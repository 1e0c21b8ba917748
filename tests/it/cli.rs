//! The command line: `--help`, `--version`, `--config FILE`, `--check-config` (one-line verdict, exit 0/1,
//! no secrets) and `--once` (the exposition text on stdout, or the error on stderr and exit 1).

use crate::common;

use std::path::Path;
use std::process::{Output, Stdio};

/// Runs the binary in `dir` with these arguments and environment, with no inherited kobo/Rocket settings.
fn run(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let envs: Vec<(&str, &std::ffi::OsStr)> = envs
        .iter()
        .map(|(key, value)| (*key, std::ffi::OsStr::new(value)))
        .collect();
    run_os(dir, &args, &envs)
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

/// Runs the binary with `--config` naming a temporary `kobo.toml` of these contents, then `option`
/// (`--check-config`, `--once`), in the config's folder.
fn run_with_config(contents: &str, option: &str) -> Output {
    let (dir, path) = config_file(contents);
    run(
        dir.path(),
        &["--config", &path.display().to_string(), option],
        &[],
    )
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
        let out = run_with_config(config, "--check-config");
        assert_check_config_error(&out, needles);
    }
}

#[test]
fn check_config_never_prints_secrets() {
    // Nothing listens on port 1: the connection fails, and the message must not carry the password.
    let out = run_with_config(
        "[default.kobo]\nurl = \"postgresql://kobo:s3cr3t-pw@127.0.0.1:1/kobo\"\nconnect_timeout = 2\n\
         reconnect_backoff_max = 0\n",
        "--check-config",
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
    let parsed = kobo_testkit::exposition::parse(&body).expect("parses");
    assert_eq!(parsed.families["kobo_worker_enabled"].samples.len(), 5);
    let up = &parsed.families["kobo_up"].samples;
    assert_eq!(up.values().copied().collect::<Vec<_>>(), [1.0]);
    assert!(parsed.families.contains_key("kobo_exporter_build_info"));
    // Only the exposition on stdout: no launch banner or log lines.
    assert!(body.starts_with("# HELP kobo_worker_enabled "), "{body}");
}

#[test]
fn once_with_the_reference_set_equals_the_reference() {
    let fixture = common::FixtureVars::create();
    let out = run(
        repo(),
        &["--once"],
        &fixture.vars(&[("KOBO_METRICS", "reference")]),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        kobo_testkit::exposition::parse(&text(&out.stdout)).expect("parses"),
        common::reference_exposition()
    );
}

#[test]
fn once_fails_with_the_error_on_stderr() {
    let out = run_with_config(
        "[default.kobo]\nurl = \"postgresql://kobo:s3cr3t-pw@127.0.0.1:1/kobo\"\nconnect_timeout = 2\n",
        "--once",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("kobo-exporter: "), "{stderr}");
    assert!(stderr.contains("postgres"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-pw"), "{stderr}");
}

/// Runs the binary in `dir` with these arguments and environment (which need not be UTF-8), with no
/// inherited kobo/Rocket settings.
fn run_os(dir: &Path, args: &[&std::ffi::OsStr], envs: &[(&str, &std::ffi::OsStr)]) -> Output {
    common::exporter_command(dir)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run kobo-exporter")
}

/// `--check-config` refused the config: exit 1, one `error:` line on stdout naming each needle, no panic.
fn assert_check_config_error(out: &Output, needles: &[&str]) {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout {stdout:?}, stderr {stderr:?}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.starts_with("error: "), "{stdout:?}");
    for needle in needles {
        assert!(stdout.contains(needle), "{needle:?} not in {stdout:?}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Serving refused the config: exit 1, one `kobo-exporter:` line on stderr naming each needle, no panic.
fn assert_serve_error(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("kobo-exporter: "), "{stderr:?}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
}

#[test]
fn a_config_file_that_cannot_be_parsed_is_one_error_line() {
    let cases: [(&[u8], &[&str]); 5] = [
        (b"this is [not toml\n", &["TOML", "line 1"]),
        (
            b"[default.kobo]\nurl = \"sqlite://x\"\n# \xff\xfe\n",
            &["UTF-8"],
        ),
        // The offending line is not quoted: it may hold a password.
        (
            b"[default.kobo]\nurl = \"postgres://kobo:s3cr3t-pw@db/kobo\n",
            &["TOML", "line 2"],
        ),
        // Keys Rocket reads before anything else (its runtime's).
        (b"[default]\nworkers = \"many\"\n", &["workers"]),
        (b"[default.shutdown]\nforce = 3\n", &["force"]),
    ];
    for (contents, needles) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kobo.toml");
        std::fs::write(&path, contents).expect("write");
        let path_text = path.display().to_string();
        let by_option = run(dir.path(), &["--config", &path_text, "--check-config"], &[]);
        assert_check_config_error(&by_option, needles);
        // Named as figment shows it (relative to the working directory).
        assert!(
            text(&by_option.stdout).contains("kobo.toml"),
            "{}",
            text(&by_option.stdout)
        );
        let by_env = run(
            dir.path(),
            &["--check-config"],
            &[("ROCKET_CONFIG", &path_text)],
        );
        assert_check_config_error(&by_env, needles);
        assert!(!text(&by_env.stdout).contains("s3cr3t-pw"));
        // Serving fails the same way, before Rocket starts.
        let serving = run(
            dir.path(),
            &["--config", &path_text],
            &[("ROCKET_PORT", "0")],
        );
        assert_serve_error(&serving, needles);
        assert!(!text(&serving.stderr).contains("s3cr3t-pw"));
        // The bundled Rocket.toml in the working directory, found by Rocket's own search.
        std::fs::rename(&path, dir.path().join("Rocket.toml")).expect("rename");
        let found = run(dir.path(), &["--check-config"], &[]);
        assert_check_config_error(&found, needles);
        assert!(
            text(&found.stdout).contains("Rocket.toml"),
            "{}",
            text(&found.stdout)
        );
    }
}

#[test]
fn a_config_path_that_cannot_be_read_is_one_error_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A directory named as the config file.
    let sub = dir.path().join("kobo.toml");
    std::fs::create_dir(&sub).expect("mkdir");
    let sub = sub.display().to_string();
    assert_check_config_error(
        &run(dir.path(), &["--config", &sub, "--check-config"], &[]),
        &[&sub],
    );
    assert_check_config_error(
        &run(dir.path(), &["--check-config"], &[("ROCKET_CONFIG", &sub)]),
        &[&sub, "ROCKET_CONFIG"],
    );
    assert_serve_error(&run(dir.path(), &[], &[("ROCKET_CONFIG", &sub)]), &[&sub]);
    // A regular file whose read fails, even for root: reading /proc/self/mem at offset 0 is EIO.
    #[cfg(target_os = "linux")]
    {
        let mem = "/proc/self/mem";
        assert_check_config_error(
            &run(dir.path(), &["--config", mem, "--check-config"], &[]),
            &[mem],
        );
        assert_serve_error(&run(dir.path(), &[], &[("ROCKET_CONFIG", mem)]), &[mem]);
    }
    // A file without read permission: root reads it anyway.
    // The owner of /proc/self is the process's effective user.
    let euid =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc"));
    if euid == 0 {
        eprintln!(
            "\n*** SKIPPED: the chmod 000 case: tests run as root, who can read any file ***\n"
        );
    } else {
        use std::os::unix::fs::PermissionsExt as _;
        let locked = dir.path().join("locked.toml");
        std::fs::write(&locked, "[default.kobo]\nurl = \"sqlite://x\"\n").expect("write");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        let locked = locked.display().to_string();
        assert_check_config_error(
            &run(dir.path(), &["--config", &locked, "--check-config"], &[]),
            &[&locked],
        );
    }
}

/// Settings `--check-config` refuses in a config of a good hub: a path prefix Rocket cannot mount, values
/// too large for their type.
#[test]
fn check_config_refuses_unmountable_prefixes_and_huge_values() {
    let (_hub_dir, hub) = common::fixture_sqlite();
    for (line, key) in [
        (r#"path_prefix = "/a b""#, "kobo.path_prefix"),
        (r#"path_prefix = "//""#, "kobo.path_prefix"),
        ("scrape_timeout = 1e19", "kobo.scrape_timeout"),
        ("max_connections = 4294967295", "kobo.max_connections"),
    ] {
        let out = run_with_config(
            &format!(
                "[default.kobo]\nurl = \"sqlite://{}\"\n{line}\n",
                hub.display()
            ),
            "--check-config",
        );
        assert_check_config_error(&out, &[key, "kobo.toml"]);
    }
}

fn tls_dir() -> std::path::PathBuf {
    repo().join("backends/xmlrpc/tests/tls")
}

#[test]
fn check_config_loads_the_tls_certificate_and_key() {
    let (_hub_dir, hub) = common::fixture_sqlite();
    let tls = tls_dir();
    let good_cert = tls.join("server.pem").display().to_string();
    let good_key = tls.join("server.key").display().to_string();
    let check = |certs: &str, key: &str| {
        let (dir, path) = config_file(&format!(
            "[default.kobo]\nurl = \"sqlite://{}\"\n[default.tls]\ncerts = {certs:?}\nkey = {key:?}\n",
            hub.display()
        ));
        std::fs::write(
            dir.path().join("garbage.pem"),
            "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("empty.pem"), "").expect("write");
        // Run elsewhere: relative paths are relative to the config file, as Rocket reads them.
        let out = run(
            repo(),
            &["--config", &path.display().to_string(), "--check-config"],
            &[],
        );
        (dir, out)
    };
    let (_dir, out) = check(&good_cert, &good_key);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("ok: "),
        "{}",
        text(&out.stdout)
    );

    let (_dir, out) = check(&good_cert, "/nonexistent/tls.key");
    assert_check_config_error(&out, &["tls.key", "/nonexistent/tls.key", "kobo.toml"]);
    let (_dir, out) = check(&good_cert, "garbage.pem");
    assert_check_config_error(&out, &["tls.key", "garbage.pem"]);
    let (_dir, out) = check(&good_cert, "empty.pem");
    assert_check_config_error(&out, &["tls.key", "empty.pem"]);
    let (_dir, out) = check("/nonexistent/tls.crt", &good_key);
    assert_check_config_error(&out, &["tls.certs", "/nonexistent/tls.crt"]);
    let (_dir, out) = check("empty.pem", &good_key);
    assert_check_config_error(&out, &["tls.certs", "empty.pem"]);
    // A key that is not the certificate's.
    let (_dir, out) = check(&tls.join("ca.pem").display().to_string(), &good_key);
    assert_check_config_error(&out, &["tls"]);
}

/// Starts the binary in `dir` (serving on a free port), waits for Rocket's launch line and stops it;
/// returns everything it printed.
fn launch_output(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    use std::io::Read as _;
    let mut child = common::serving_exporter_command(dir)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kobo-exporter");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (sender, receiver) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buffer = [0; 4096];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buffer[..n]);
            if String::from_utf8_lossy(&all).contains("launched from") {
                let _ = sender.send(());
            }
        }
        all
    });
    let launched = receiver
        .recv_timeout(std::time::Duration::from_secs(30))
        .is_ok();
    let _ = child.kill();
    let _ = child.wait();
    let out = text(&reader.join().expect("reader"));
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    assert!(launched, "did not launch: {out}{err}");
    format!("{out}{err}")
}

#[test]
fn the_bundled_configs_use_no_deprecated_profile() {
    let out = launch_output(repo(), &[], &[("ROCKET_LOG_LEVEL", "normal")]);
    assert!(!out.contains("deprecated"), "{out}");

    // The deployment example, in its own profile, with what the host would provide.
    let secret = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(secret.path(), "not-a-real-password\n").expect("write");
    let secret = secret.path().display().to_string();
    let deploy = repo()
        .join("deploy/Rocket.production.toml")
        .display()
        .to_string();
    let out = launch_output(
        repo(),
        &["--config", &deploy],
        &[
            ("ROCKET_PROFILE", "live"),
            ("ROCKET_LOG_LEVEL", "normal"),
            ("KOBO_URL", "sqlite://demo/hub.sqlite3"),
            ("KOBO_WORKER_DIR", "demo/worker"),
            ("KOBO_PASSWORD_FILE", &secret),
        ],
    );
    assert!(!out.contains("deprecated"), "{out}");
}

#[test]
fn a_config_path_that_is_not_utf8_is_refused_not_replaced() {
    use std::os::unix::ffi::OsStrExt as _;
    let (_hub_dir, hub) = common::fixture_sqlite();
    let dir = tempfile::tempdir().expect("temp dir");
    // A working Rocket.toml in the working directory: the exporter must not fall back to it.
    std::fs::write(
        dir.path().join("Rocket.toml"),
        format!("[default.kobo]\nurl = \"sqlite://{}\"\n", hub.display()),
    )
    .expect("write");
    let name = std::ffi::OsStr::from_bytes(b"kobo-\xff.toml");
    let path = dir.path().join(name);
    std::fs::write(
        &path,
        "[default.kobo]\nurl = \"sqlite:///nonexistent/other.sqlite3\"\n",
    )
    .expect("write");
    let out = run_os(
        dir.path(),
        &[
            std::ffi::OsStr::new("--config"),
            path.as_os_str(),
            std::ffi::OsStr::new("--check-config"),
        ],
        &[],
    );
    assert_check_config_error(&out, &["--config", "UTF-8"]);
    let out = run_os(
        dir.path(),
        &[std::ffi::OsStr::new("--check-config")],
        &[("ROCKET_CONFIG", path.as_os_str())],
    );
    assert_check_config_error(&out, &["ROCKET_CONFIG", "UTF-8"]);
    let out = run_os(
        dir.path(),
        &[std::ffi::OsStr::new("--check-config")],
        &[("KOBO_WORKER_DIR", std::ffi::OsStr::from_bytes(b"/tmp/\xff"))],
    );
    assert_check_config_error(&out, &["KOBO_WORKER_DIR", "UTF-8"]);
}

#[test]
fn once_and_check_config_print_the_sources_warnings_on_stderr() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envs = [
        ("KOBO_URL", "https://127.0.0.1:1/hub/xmlrpc/client/"),
        ("KOBO_TLS_VERIFY", "false"),
        ("KOBO_QUERY_TIMEOUT", "1"),
        ("KOBO_RECONNECT_BACKOFF_MAX", "0"),
    ];
    let out = run(dir.path(), &["--once"], &envs);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("kobo-exporter: warning: TLS certificate verification is OFF"),
        "{stderr}"
    );
    // The warning, then the failure, once (not also as the collector's log line).
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    let out = run(dir.path(), &["--check-config"], &envs);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert!(
        text(&out.stderr).contains("verification is OFF"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_config_checks_every_hub_and_once_reads_the_target() {
    let (_hub_dir, hub) = common::fixture_sqlite();
    let url = format!("sqlite://{}", hub.display());
    let config = format!(
        "[default.kobo]\nurl = \"{url}\"\n\
         [default.kobo.hubs.good]\nurl = \"{url}\"\n\
         [default.kobo.hubs.gone]\nurl = \"sqlite:///nonexistent/hub.sqlite3\"\n\
         [default.kobo.hubs.down]\nurl = \"postgres://u:s3cret@127.0.0.1:1/hub\"\nconnect_timeout = 1\n"
    );
    let out = run_with_config(&config, "--check-config");
    assert_eq!(out.status.code(), Some(1), "a hub fails: exit 1");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "a line per hub: {stdout}");
    assert!(
        lines[0].starts_with("ok: hub (kobo table): SQLite database "),
        "{stdout}"
    );
    // Then by name.
    assert!(lines[1].starts_with("error: hub down: "), "{stdout}");
    assert!(
        lines[1].contains("postgres source of hub down failed"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("error: hub gone: configuration error: `kobo.hubs.gone.url`"),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("ok: hub good: SQLite database "),
        "{stdout}"
    );
    assert_eq!(
        lines[0].rsplit(", ").next(),
        lines[3].rsplit(", ").next(),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "{stdout}");

    let only_good = config.replace(
        "[default.kobo.hubs.gone]",
        "[default.kobo.hubs.gone]\nmetrics = \"all\"",
    );
    let (dir, path) = config_file(&only_good);
    let once = |target: &str| {
        run(
            dir.path(),
            &[
                "--config",
                &path.display().to_string(),
                "--once",
                "--target",
                target,
            ],
            &[],
        )
    };
    let out = once("good");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let metrics = text(&out.stdout);
    assert!(metrics.contains("\nkobo_up 1\n"));
    assert!(!metrics.contains("process_"), "a named hub's metrics");
    let out = once("nope");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "--target: no hub of that name in `kobo.hubs` (the hubs configured: down, gone, good)"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = run(repo(), &["--target", "good"], &[]);
    assert_eq!(out.status.code(), Some(2), "--target needs --once");
}
