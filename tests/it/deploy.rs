//! The deployment files in `deploy/`: the example Rocket.toml loads and validates for each of its profiles,
//! the systemd unit passes `systemd-analyze verify` and keeps its hardening, the nginx snippet passes
//! `nginx -t` and really proxies `/kobo/` to the exporter (auth, GET only, OpenMetrics passed through; skipped
//! loudly without nginx), and the Containerfile and the example config agree with the exporter.

#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error, as figment defines them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common;
use kobo_exporter::config::Settings;

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

fn read(name: &str) -> String {
    let path = deploy(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn example_rocket_toml_loads_in_every_profile() {
    for profile in ["live", "test"] {
        common::jail(|jail| {
            jail.clear_env();
            jail.create_file("db-password", "not-a-real-password\n")?;
            jail.set_env("ROCKET_CONFIG", deploy("Rocket.production.toml").display());
            jail.set_env("ROCKET_PROFILE", profile);
            // What the systemd unit does: the password comes from its credential.
            jail.set_env(
                "KOBO_PASSWORD_FILE",
                jail.directory().join("db-password").display(),
            );
            let figment = kobo_exporter::config::figment();
            let settings =
                Settings::from_figment(&figment).unwrap_or_else(|e| panic!("{profile}: {e}"));
            assert_eq!(settings.backend.kind, "postgres", "{profile}");
            assert_eq!(settings.path_prefix, "/kobo", "{profile}");
            let rocket: rocket::Config = figment.extract()?;
            assert_eq!(rocket.port, 10120);
            assert_eq!(rocket.address.to_string(), "127.0.0.1");
            if profile == "live" {
                assert_eq!(settings.collector.scrape_timeout, Duration::from_secs(8));
                assert_eq!(rocket.shutdown.grace, 5);
                assert_eq!(rocket.log_level, rocket::config::LogLevel::Critical);
            }
            Ok(())
        });
    }
}

#[test]
fn nginx_snippet_matches_the_path_prefix() {
    let nginx = read("nginx.conf");
    let config = read("Rocket.production.toml");
    assert!(config.contains("path_prefix = \"/kobo\""));
    assert!(nginx.contains("location /kobo/ {"));
    // The prefix is passed through (no URI part after the address), to the exporter's default port.
    assert!(nginx.contains("proxy_pass http://127.0.0.1:10120;"));
    assert!(nginx.contains("limit_except GET"));
    assert!(nginx.contains("metrics_path: /kobo/metrics"));
}

#[test]
fn containerfile_builds_the_binary_with_a_supported_toolchain() {
    let containerfile = read("Containerfile");
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"'))
        .expect("rust-version");
    assert!(
        containerfile.contains(&format!("FROM docker.io/library/rust:{rust_version}")),
        "the build stage must use Rust {rust_version}"
    );
    assert!(containerfile.contains("--bin kobo-exporter"));
    // The packages' layout (Cargo.toml's package metadata): the binary in /usr/bin, the configuration in
    // /etc/kobo-exporter.
    assert!(manifest.contains(r#"["target/release/kobo-exporter", "usr/bin/", "755"]"#));
    assert!(manifest.contains(r#"dest = "/usr/bin/kobo-exporter""#));
    assert!(containerfile.contains("COPY --from=build /kobo-exporter /usr/bin/kobo-exporter"));
    assert!(containerfile.contains(r#"ENTRYPOINT ["/usr/bin/kobo-exporter"]"#));
    assert!(containerfile.contains("ROCKET_CONFIG=/etc/kobo-exporter/Rocket.toml"));
    assert!(containerfile.contains("ROCKET_ADDRESS=0.0.0.0"));
    assert!(containerfile.contains("USER nonroot"));
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .expect(".dockerignore");
    assert!(
        ignore.lines().any(|l| l == "target/"),
        "the build context must leave out target/"
    );
}

#[test]
fn systemd_unit_is_valid_and_hardened() {
    let unit = read("kobo-exporter.service");
    for setting in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "ExecStart=/usr/local/bin/kobo-exporter --config /etc/kobo-exporter/Rocket.toml",
        "Environment=ROCKET_PROFILE=live",
    ] {
        assert!(unit.contains(setting), "{setting:?} missing");
    }
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("systemd-analyze is missing and CI=true");
        }
        eprintln!("\n*** SKIPPED: systemd-analyze verify: systemd-analyze is not installed ***\n");
        return;
    };
    assert!(version.status.success());
    // Verify a copy that runs the binary just built (the installed path does not exist here).
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("kobo-exporter.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/kobo-exporter", common::BIN),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only complaints about this unit count (the host's own units may have theirs).
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("kobo-exporter.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

/// A child process killed on drop.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A plain HTTP/1.1 request through the proxy; the status code and the body.
fn request(port: u16, method: &str, path: &str, headers: &str) -> (u16, String) {
    let response = common::http_request(port, method, path, headers);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// nginx with deploy/nginx.conf in front of the exporter (`path_prefix = "/kobo"`): the metrics at
/// /kobo/metrics with basic auth, 401 without, GET only, /kobo redirected. Skipped loudly without nginx.
#[test]
fn nginx_snippet_proxies_the_path_prefix() {
    let nginx = match Command::new("nginx").arg("-v").output() {
        Ok(out) if out.status.success() => "nginx",
        _ => {
            eprintln!("\n*** SKIPPED: the nginx snippet test: nginx is not installed ***\n");
            return;
        }
    };
    // The exporter on its own free port, under /kobo.
    let exporter_port = free_port();
    let port_text = exporter_port.to_string();
    let _exporter = Process(
        common::exporter_command(env!("CARGO_MANIFEST_DIR"))
            .env("ROCKET_PORT", &port_text)
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_LOG_LEVEL", "off")
            .env("KOBO_PATH_PREFIX", "/kobo")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start kobo-exporter"),
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    // nginx's workers may run as another user: they must read the password file.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let htpasswd = root.join("htpasswd");
    std::fs::write(&htpasswd, "prometheus:{PLAIN}s3cret\n").expect("htpasswd");
    std::fs::set_permissions(&htpasswd, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let snippet = read("nginx.conf")
        .replace("127.0.0.1:10120", &format!("127.0.0.1:{exporter_port}"))
        .replace(
            "/etc/nginx/kobo-exporter.htpasswd",
            &htpasswd.display().to_string(),
        );
    std::fs::write(root.join("kobo.conf"), snippet).expect("snippet");
    let port = free_port();
    let temp = |name: &str| root.join(name).display().to_string();
    std::fs::write(
        root.join("nginx.conf"),
        format!(
            "pid {pid};\nerror_log {log} warn;\ndaemon off;\n# One process, so that killing it stops nginx.\n\
             master_process off;\nevents {{}}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n  \
             uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    include {snippet};\n  }}\n}}\n",
            pid = temp("nginx.pid"),
            log = temp("error.log"),
            t = root.display(),
            snippet = temp("kobo.conf"),
        ),
    )
    .expect("nginx.conf");
    let conf = temp("nginx.conf");
    let check = Command::new(nginx)
        .args(["-t", "-p", &root.display().to_string(), "-c", &conf])
        .output()
        .expect("nginx -t");
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _nginx = Process(
        Command::new(nginx)
            .args(["-p", &root.display().to_string(), "-c", &conf])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nginx"),
    );
    // Both up: wait for an answer through the proxy.
    let auth = "Authorization: Basic cHJvbWV0aGV1czpzM2NyZXQ=\r\n"; // prometheus:s3cret
    let started = std::time::Instant::now();
    loop {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && request(port, "GET", "/kobo/-/healthy", auth).0 == 200;
        if ok {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no answer through nginx: {}",
            std::fs::read_to_string(root.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = request(port, "GET", "/kobo/metrics", auth);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kobo_worker_enabled{"), "{body}");
    let (status, body) = request(
        port,
        "GET",
        "/kobo/metrics",
        &format!("{auth}Accept: application/openmetrics-text; version=1.0.0\r\n"),
    );
    assert_eq!(status, 200);
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics through the proxy: {body}"
    );
    assert_eq!(request(port, "GET", "/kobo/metrics", "").0, 401);
    assert_eq!(request(port, "POST", "/kobo/metrics", auth).0, 403);
    assert_eq!(request(port, "GET", "/kobo", "").0, 301);
}

/// The PrometheusRule of the Kubernetes base is `monitoring/alerts.yml`, generated (never edited twice): its
/// spec is the file's text indented by two spaces.
#[test]
fn the_kubernetes_prometheus_rule_is_the_alerts_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rule = std::fs::read_to_string(root.join("deploy/kubernetes/prometheusrule.yaml"))
        .expect("prometheusrule.yaml");
    let alerts = std::fs::read_to_string(root.join("monitoring/alerts.yml")).expect("alerts.yml");
    let (_, spec) = rule.split_once("\nspec:\n").expect("a spec");
    let indented: String = alerts
        .lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_string()
            } else {
                format!("  {line}\n")
            }
        })
        .collect();
    assert_eq!(
        spec, indented,
        "run python3 deploy/kubernetes/gen-prometheusrule.py"
    );
    assert!(rule.contains("kind: PrometheusRule"));
}
