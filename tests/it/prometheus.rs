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

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_the_exporter_and_evaluates_the_rules() {
    let Some(prometheus) = prometheus_binary() else {
        if common::in_ci() {
            panic!("prometheus is not installed and CI=true (apt-get install prometheus)");
        }
        eprintln!(
            "\n*** SKIPPED: the real-Prometheus test: no `prometheus` binary (apt-get install prometheus; \
             set CI=true to make this a failure) ***\n"
        );
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();

    let fixture = common::FixtureVars::create();
    let exporter = common::Exporter::start(&fixture.vars(&[("ROCKET_ADDRESS", "127.0.0.1")]));
    let exporter_port = exporter.port;

    let dir = tempfile::tempdir().expect("temp dir");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/alerts.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: kobo\n    metrics_path: /metrics\n    static_configs:\n      \
             - targets: ['127.0.0.1:{exporter_port}']\n",
            rules = rules.display()
        ),
    )
    .expect("prometheus.yml");
    let port = free_port();
    let _prometheus = Process(
        Command::new(&prometheus)
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
