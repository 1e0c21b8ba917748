//! End to end with a real Prometheus (Debian's `prometheus` package): the exporter serves the fixture hub on
//! loopback, a Prometheus started here with a generated config and a temporary data directory scrapes it
//! (negotiating OpenMetrics and gzip, as Prometheus does: its metadata shows the OpenMetrics types) and loads `monitoring/alerts.yml`; the test then asks
//! Prometheus' HTTP API for `up == 1`, the reference series with the reference values, the new families,
//! the recording rules, every rule's health, and the alerts the fixture's stranded queue makes pending.
//!
//! Without a `prometheus` binary the test is skipped loudly, or fails under `CI=true`.

use crate::common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `prometheus` binary, if installed.
fn prometheus_binary() -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// GET `path` of Prometheus' API; the `data` of a successful answer.
async fn api(client: &reqwest::Client, port: u16, path: &str) -> Result<Value, String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
    let text = response.text().await.map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_str(&text).map_err(|e| format!("{url}: {e}: {text}"))?;
    if body["status"] != "success" {
        return Err(format!("{url}: {body}"));
    }
    Ok(body["data"].clone())
}

/// An instant query's result vector.
async fn query(client: &reqwest::Client, port: u16, promql: &str) -> Result<Vec<Value>, String> {
    let mut url = String::from("/api/v1/query?query=");
    for byte in promql.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            url.push(byte as char);
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    let data = api(client, port, &url).await?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// Polls until `check` gives `Some`, for up to `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let started = Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(e) => last = e,
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; last error: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A sample's labels without `__name__`, `job` and `instance`, sorted, and its value.
fn sample(value: &Value) -> (Vec<(String, String)>, f64) {
    let labels = value["metric"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let number = value["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let mut labels = labels;
    labels.sort();
    (labels, number)
}

/// The `prometheus` binary, or `None` after a loud skip (a failure under `CI=true`).
fn prometheus_or_skip() -> Option<String> {
    let found = prometheus_binary();
    if found.is_none() {
        if common::in_ci() {
            panic!("prometheus is not installed and CI=true (apt-get install prometheus)");
        }
        eprintln!(
            "\n*** SKIPPED: the real-Prometheus test: no `prometheus` binary (apt-get install prometheus; \
             set CI=true to make this a failure) ***\n"
        );
    }
    found
}

/// A Prometheus on a free loopback port, scraping every second with these `scrape_configs` entries (YAML
/// indented for the list) and loading `monitoring/alerts.yml`; its port. Its data is in a temporary
/// directory that lives as long as the process.
fn start_prometheus(binary: &str, scrape_configs: &str) -> ((Process, tempfile::TempDir), u16) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/alerts.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n{scrape_configs}",
            rules = rules.display()
        ),
    )
    .expect("prometheus.yml");
    let port = free_port();
    let process = Process(
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus"),
    );
    ((process, dir), port)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_the_exporter_and_evaluates_the_rules() {
    let Some(prometheus) = prometheus_or_skip() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();

    let fixture = common::FixtureVars::create();
    let exporter = common::Exporter::start(&fixture.vars(&[("ROCKET_ADDRESS", "127.0.0.1")]));
    let exporter_port = exporter.port;

    let (_prometheus, port) = start_prometheus(
        &prometheus,
        &format!(
            "  - job_name: kobo\n    metrics_path: /metrics\n    static_configs:\n      \
         - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    );
    let client = reqwest::Client::new();
    let limit = Duration::from_secs(60);

    // The target is up.
    eventually("up == 1", limit, || async {
        let result = query(&client, port, "up{job=\"kobo\"} == 1").await?;
        Ok((result.len() == 1).then_some(()))
    })
    .await;
    let targets = api(&client, port, "/api/v1/targets")
        .await
        .expect("targets");
    let active = targets["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(active.len(), 1, "{targets}");
    assert_eq!(active[0]["health"], "up", "{targets}");

    // The reference series, with the reference values.
    let reference = common::reference_exposition();
    for name in &reference.order {
        let want: BTreeMap<Vec<(String, String)>, f64> = reference.families[name]
            .samples
            .iter()
            .map(|((_, labels), value)| (labels.clone(), *value))
            .collect();
        let got = eventually(name, limit, || async {
            let result = query(&client, port, name).await?;
            let got: BTreeMap<_, _> = result.iter().map(sample).collect();
            Ok((got.len() == want.len()).then_some(got))
        })
        .await;
        assert_eq!(got, want, "{name}");
    }

    // The new families, as Prometheus stored them from the OpenMetrics answer.
    for series in [
        "kobo_up == 1",
        "kobo_exporter_build_info{source=\"sqlite\"} == 1",
        "kobo_exporter_collect_errors_total{collector=\"workers\"}",
        "kobo_exporter_collect_duration_seconds{collector=\"workers\"}",
        "kobo_tasks{state=\"FREE\",arch=\"i386\",channel=\"signing\"}",
        "kobo_queue_workers{arch=\"i386\",channel=\"signing\"} == 0",
        "kobo_worker_arch",
        "kobo_worker_channel",
        "kobo_worker_tasks",
        "process_resident_memory_bytes",
    ] {
        let result = query(&client, port, series).await.expect(series);
        assert!(!result.is_empty(), "no {series}");
    }

    // Prometheus negotiated OpenMetrics: its metadata has the OpenMetrics family names and types.
    let metadata = eventually("metadata", limit, || async {
        let data = api(&client, port, "/api/v1/metadata").await?;
        Ok(data.get("kobo_exporter_build").is_some().then_some(data))
    })
    .await;
    assert_eq!(
        metadata["kobo_exporter_build"][0]["type"], "info",
        "{metadata}"
    );
    assert_eq!(
        metadata["kobo_exporter_collect_errors"][0]["type"], "counter",
        "{metadata}"
    );
    assert_eq!(metadata["kobo_worker_enabled"][0]["type"], "gauge");

    // The rules loaded, every one evaluates without error, and the recording rules give series.
    let groups = eventually("rules evaluated", limit, || async {
        let data = api(&client, port, "/api/v1/rules").await?;
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        let rules: Vec<Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok");
        if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
            return Err(format!("rule failed: {bad}"));
        }
        Ok(evaluated.then_some(groups))
    })
    .await;
    let mut names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["kobo.alerts", "kobo.rules"]);
    for record in [
        "kobo:worker_last_seen_age_seconds",
        "kobo:tasks_free:sum_by_arch_channel",
        "kobo:tasks_free_oldest_wait_seconds",
        "kobo:worker_load_ratio",
    ] {
        eventually(record, limit, || async {
            let result = query(&client, port, record).await?;
            Ok((!result.is_empty()).then_some(()))
        })
        .await;
    }

    // The fixture has FREE tasks for i386/signing that no enabled worker takes: pending (for: 15m).
    eventually("KoboQueueStranded pending", limit, || async {
        let data = api(&client, port, "/api/v1/alerts").await?;
        let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
        Ok(alerts
            .iter()
            .any(|a| {
                a["labels"]["alertname"] == "KoboQueueStranded"
                    && a["labels"]["arch"] == "i386"
                    && a["labels"]["channel"] == "signing"
                    && a["state"] == "pending"
            })
            .then_some(()))
    })
    .await;
}

/// The multi-target pattern, as the README gives it: one job probes each hub by name through
/// `/probe?target=`, relabeled so that the hub is the `instance`; another scrapes the exporter's own
/// `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_probes_two_hubs_through_relabeling() {
    let Some(prometheus) = prometheus_or_skip() else {
        return;
    };
    let (_a_dir, hub_a) = common::fixture_sqlite();
    let (_b_dir, hub_b) = common::fixture_sqlite();
    // Hub b differs from a in one worker's max load.
    rusqlite::Connection::open(&hub_b)
        .and_then(|conn| conn.execute("UPDATE hub_worker SET max_load = 42 WHERE id = 1", []))
        .expect("change hub b");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("kobo.toml");
    std::fs::write(
        &config,
        format!(
            "[default.kobo.hubs.hub-a]\nurl = \"sqlite://{}\"\n[default.kobo.hubs.hub-b]\nurl = \"sqlite://{}\"\n",
            hub_a.display(),
            hub_b.display()
        ),
    )
    .expect("kobo.toml");
    let exporter = common::Exporter::start(&[
        ("ROCKET_CONFIG", &config.display().to_string()),
        ("ROCKET_ADDRESS", "127.0.0.1"),
    ]);
    let exporter_port = exporter.port;
    let (_prometheus, port) = start_prometheus(
        &prometheus,
        &format!(
            "  - job_name: kobo\n    metrics_path: /probe\n    static_configs:\n      \
             - targets: ['hub-a', 'hub-b']\n    relabel_configs:\n      \
             - source_labels: [__address__]\n        target_label: __param_target\n      \
             - source_labels: [__param_target]\n        target_label: instance\n      \
             - target_label: __address__\n        replacement: 127.0.0.1:{exporter_port}\n  \
             - job_name: kobo_exporter\n    static_configs:\n      \
             - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    );
    let client = reqwest::Client::new();
    let limit = Duration::from_secs(60);

    let instances = |result: &[Value]| -> Vec<String> {
        let mut names: Vec<String> = result
            .iter()
            .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    };
    let up = eventually("both probes up", limit, || async {
        let result = query(&client, port, "up{job=\"kobo\"} == 1").await?;
        Ok((result.len() == 2).then_some(result))
    })
    .await;
    assert_eq!(instances(&up), ["hub-a", "hub-b"]);
    let kobo_up = eventually("kobo_up of both hubs", limit, || async {
        let result = query(&client, port, "kobo_up{job=\"kobo\"} == 1").await?;
        Ok((result.len() == 2).then_some(result))
    })
    .await;
    assert_eq!(instances(&kobo_up), ["hub-a", "hub-b"]);

    // Each instance is its own hub's data.
    let max_load = eventually("max load by hub", limit, || async {
        let result = query(
            &client,
            port,
            "kobo_worker_max_load{job=\"kobo\",worker=\"worker-0001.example.com\"}",
        )
        .await?;
        Ok((result.len() == 2).then_some(result))
    })
    .await;
    let by_instance: BTreeMap<String, f64> = max_load
        .iter()
        .map(|s| {
            let instance = s["metric"]["instance"].as_str().unwrap_or("").to_string();
            (instance, sample(s).1)
        })
        .collect();
    assert_eq!(
        by_instance,
        BTreeMap::from([("hub-a".to_string(), 2.0), ("hub-b".to_string(), 42.0)])
    );

    // The exporter's own metrics are its job's, once; the probes have the per-hub health only.
    eventually("the exporter's own job", limit, || async {
        let result = query(
            &client,
            port,
            "kobo_exporter_config_last_reload_successful{job=\"kobo_exporter\"} == 1",
        )
        .await?;
        Ok((result.len() == 1).then_some(()))
    })
    .await;
    for (series, want) in [
        ("process_resident_memory_bytes{job=\"kobo_exporter\"}", 1),
        ("process_resident_memory_bytes{job=\"kobo\"}", 0),
        (
            "kobo_exporter_collect_errors_total{job=\"kobo\",collector=\"workers\"}",
            2,
        ),
        ("kobo_up{job=\"kobo_exporter\"}", 0),
    ] {
        let result = query(&client, port, series).await.expect(series);
        assert_eq!(result.len(), want, "{series}: {result:?}");
    }
    // The rules evaluate on the probed series without error.
    eventually("rules evaluated", limit, || async {
        let data = api(&client, port, "/api/v1/rules").await?;
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
            return Err(format!("rule failed: {bad}"));
        }
        Ok((!rules.is_empty() && rules.iter().all(|r| r["health"] == "ok")).then_some(()))
    })
    .await;
    drop(exporter);
}
