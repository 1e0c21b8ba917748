//! The monitoring kit uses only metrics that exist: every metric name in the PromQL of
//! `monitoring/alerts.yml` and `monitoring/dashboard.json` is one the exporter serves for the fixture hub
//! (the families of a `--once`-like rendering, which include `process_*`, and the reload status that
//! `/metrics` adds), `up`, or a recording rule of alerts.yml; and every dashboard query follows its `job`
//! and `instance` variables, both multi-select (several hubs, and the exporter's own job beside the probe
//! job).

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use kobo_exporter::api::WorkerDir;
use kobo_exporter::collector::{CollectorOptions, HubCollector};
use kobo_exporter::exposition::Format;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The `expr:` values of a rules file: inline, or a block scalar (`>-`, `|`) of the more indented lines
/// that follow. Also the `record:` names, which the expressions may use.
fn rule_expressions(yaml: &str) -> (Vec<String>, BTreeSet<String>) {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut records = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let trimmed = trimmed.trim_start_matches("- ");
        if let Some(name) = trimmed.strip_prefix("record:") {
            records.insert(name.trim().to_string());
        }
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('>') || value.starts_with('|') {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" "));
        } else {
            exprs.push(value.trim_matches(['\'', '"']).to_string());
        }
    }
    (exprs, records)
}

/// Every `expr` of the dashboard's panels, and the metric of each `label_values(metric, label)` variable.
fn dashboard_expressions(json: &str) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                        ("definition", serde_json::Value::String(query)) => {
                            let inner = query
                                .strip_prefix("label_values(")
                                .and_then(|q| q.rsplit_once(','))
                                .map(|(metric, _)| metric.to_string());
                            out.push(inner.unwrap_or_else(|| query.clone()));
                        }
                        _ => walk(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let value: serde_json::Value = serde_json::from_str(json).expect("dashboard.json is JSON");
    let mut out = Vec::new();
    walk(&value, &mut out);
    out
}

/// Words of PromQL that take a parenthesised list of labels.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Other keywords, and the aggregation operators (which may be followed by `by (...)` before their `(`).
const KEYWORDS: [&str; 20] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

fn is_ident(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// Skips from an opening bracket at `i` to after its closing one, stepping over quoted strings.
fn skip_group(chars: &[char], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i),
            c if c == open => {
                depth += 1;
                i += 1;
            }
            c if c == close => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    i
}

fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        j += if chars[j] == '\\' { 2 } else { 1 };
    }
    j + 1
}

/// The metric names of a PromQL expression (Grafana's `$variables` allowed): identifiers outside label
/// matchers, ranges and strings that are not functions, keywords or label lists.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c == '$' {
            i += 1;
            while i < chars.len()
                && (is_ident(chars[i], false) || chars[i] == '{' || chars[i] == '}')
            {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident(c, true) {
            let start = i;
            while i < chars.len() && is_ident(chars[i], false) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if call {
                    i = skip_group(&chars, next, '(', ')');
                }
            } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The metric names the exporter serves for the fixture hub with its worker directory, and the
/// process-wide ones of `/metrics` (the reload status, in no hub's rendering).
async fn exported_names() -> BTreeSet<String> {
    let (_dir, hub) = common::fixture_sqlite();
    let workers = common::fixture_worker_dir();
    let source =
        kobo_backend_sqlite::open(hub, Some(WorkerDir::new(workers.path()))).expect("fixture");
    let collector = HubCollector::new(Arc::new(source), CollectorOptions::default());
    let (_, text) = collector
        .collect_once(Format::Text)
        .await
        .expect("collects");
    let parsed = kobo_testkit::exposition::parse(&text).expect("parses");
    let mut names: BTreeSet<String> = parsed.families.keys().cloned().collect();
    // A histogram's series are its `_bucket`, `_count` and `_sum`.
    for (name, family) in &parsed.families {
        if family.kind.as_deref() == Some("histogram") {
            names.extend(["_bucket", "_count", "_sum"].map(|suffix| format!("{name}{suffix}")));
        }
    }
    assert!(
        names.iter().any(|n| n.starts_with("process_")),
        "process metrics"
    );
    let reload = kobo_exporter::metrics::exporter::reload_families(
        &kobo_exporter::metrics::exporter::ReloadStatus {
            successful: true,
            success_timestamp: 0.0,
        },
    );
    let text = kobo_exporter::exposition::encode(&reload).expect("encodes");
    let parsed = kobo_testkit::exposition::parse(&text).expect("parses");
    names.extend(parsed.families.keys().cloned());
    names.insert("up".into());
    names
}

#[test]
fn the_extractor_finds_metric_names_only() {
    let names = metric_names(
        "sum by (arch, channel) (kobo_tasks{state=\"FREE\", job=\"$job\"}) > 0 and on (job, instance) \
         kobo_queue_workers == 0 or rate(process_cpu_seconds_total{x=~\"a|b\"}[$__rate_interval]) \
         > 1e3 unless time() - kobo:worker_last_seen_age_seconds offset 5m",
    );
    let want: BTreeSet<String> = [
        "kobo_tasks",
        "kobo_queue_workers",
        "process_cpu_seconds_total",
        "kobo:worker_last_seen_age_seconds",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, want);
}

#[tokio::test]
async fn alerts_and_dashboard_use_only_exported_metrics() {
    let exported = exported_names().await;
    let (rule_exprs, records) = rule_expressions(&read("monitoring/alerts.yml"));
    assert!(rule_exprs.len() >= 10, "{rule_exprs:?}");
    let dashboard_exprs = dashboard_expressions(&read("monitoring/dashboard.json"));
    assert!(dashboard_exprs.len() >= 15, "{dashboard_exprs:?}");

    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (file, exprs) in [
        ("alerts.yml", &rule_exprs),
        ("dashboard.json", &dashboard_exprs),
    ] {
        for expr in exprs.iter() {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{file}: no metric in {expr:?}");
            for name in names {
                if !exported.contains(&name) && !records.contains(&name) {
                    unknown.push(format!("{file}: {name} in {expr:?}"));
                }
                used.insert(name);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics that are not exported:\n{}",
        unknown.join("\n")
    );
    // The kit covers the main families.
    for name in [
        "up",
        "kobo_up",
        "kobo_worker_enabled",
        "kobo_worker_ready",
        "kobo_worker_last_seen_seconds",
        "kobo_worker_load",
        "kobo_worker_max_load",
        "kobo_tasks",
        "kobo_tasks_oldest_created_timestamp_seconds",
        "kobo_queue_workers",
        "kobo_task_wait_seconds_bucket",
        "kobo_task_run_seconds_bucket",
        "kobo_tasks_finished_total",
        "kobo_tasks_by_method",
        "kobo_exporter_config_last_reload_successful",
    ] {
        assert!(used.contains(name), "{name} is not used");
    }
}

#[test]
fn dashboard_panels_follow_the_job_and_instance_variables() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("monitoring/dashboard.json")).expect("JSON");
    let list = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    let variables: Vec<&str> = list.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
    // Several hubs (instances) at once, and the hubs' job with the exporter's own.
    for variable in &list[1..] {
        assert_eq!(variable["multi"].as_bool(), Some(true), "{variable}");
        assert_eq!(variable["includeAll"].as_bool(), Some(true), "{variable}");
    }
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut targets = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            // Every selector of the expression is limited to the chosen job and instances.
            let selectors = expr.matches('{').count();
            assert!(selectors > 0, "{title}: {expr}");
            assert_eq!(
                expr.matches("job=~\"$job\"").count(),
                selectors,
                "{title}: {expr}"
            );
            assert_eq!(
                expr.matches("instance=~\"$instance\"").count(),
                selectors,
                "{title}: {expr}"
            );
            targets += 1;
        }
    }
    assert!(targets >= 15);
}
