//! The exporter's own metrics: whether the last collection worked, how long its parts took, how often they
//! failed, which build and source this is, the age of the cached task data, and the process metrics.

use std::collections::BTreeMap;

use kobo_backend_api::Part;
use prometheus::core::Collector as _;
use prometheus::proto::MetricFamily;

use super::family::{counter_family, gauge_family, push_counter, push_gauge, single_gauge};

/// What the collector knows about itself at the end of a scrape.
#[derive(Debug, Clone, Default)]
pub struct ExporterStatus {
    /// Whether the last collection from the source succeeded.
    pub up: bool,
    /// The source kind (`sqlite`, `postgres`, ...).
    pub source: &'static str,
    /// Duration of the last run of each collector, in seconds.
    pub durations: BTreeMap<Part, f64>,
    /// Failures of each collector since start-up.
    pub errors: BTreeMap<Part, u64>,
    /// Seconds since the task data was read, when there is task data.
    pub task_data_age: Option<f64>,
}

/// The exporter's families, then the standard `process_*` ones (Linux).
pub fn families(
    status: &ExporterStatus,
    process: Option<&prometheus::process_collector::ProcessCollector>,
) -> Vec<MetricFamily> {
    let mut families = vec![single_gauge(
        "kobo_up",
        "1 if the last collection from the kobo hub succeeded, 0 if it failed (then the hub metrics are absent)",
        if status.up { 1.0 } else { 0.0 },
    )];
    let mut build = gauge_family(
        "kobo_exporter_build_info",
        "Version of kobo-exporter and the kind of source it reads, value 1",
    );
    push_gauge(
        &mut build,
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("source", status.source),
        ],
        1.0,
    );
    families.push(build);
    let mut durations = gauge_family(
        "kobo_exporter_collect_duration_seconds",
        "Duration of the last run of each collector (workers, tasks, last_seen), in seconds",
    );
    for (collector, seconds) in &status.durations {
        push_gauge(&mut durations, &[("collector", collector.name())], *seconds);
    }
    families.push(durations);
    let mut errors = counter_family(
        "kobo_exporter_collect_errors_total",
        "Failed runs of each collector (workers, tasks, last_seen) since the exporter started",
    );
    for (collector, count) in &status.errors {
        push_counter(
            &mut errors,
            &[("collector", collector.name())],
            *count as f64,
        );
    }
    families.push(errors);
    if let Some(age) = status.task_data_age {
        families.push(single_gauge(
            "kobo_exporter_task_data_age_seconds",
            "Seconds since the task and queue metrics were read from the hub (they are refreshed every task_refresh_interval)",
            age,
        ));
    }
    if let Some(process) = process {
        families.extend(process.collect());
    }
    families
}

/// The outcome of the configuration reloads ([`crate::reload`]), for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct ReloadStatus {
    /// Whether the last reload (or, before any, the start-up) applied the configuration.
    pub successful: bool,
    /// When the configuration last applied (a reload, or the start), in seconds since the Unix epoch.
    pub success_timestamp: f64,
}

/// The process-wide families of `/metrics` beside its hub's: the reload status.
pub fn reload_families(status: &ReloadStatus) -> Vec<MetricFamily> {
    vec![
        single_gauge(
            "kobo_exporter_config_last_reload_successful",
            "1 if the last configuration reload succeeded (or none was asked for since the start), 0 if it was refused",
            if status.successful { 1.0 } else { 0.0 },
        ),
        single_gauge(
            "kobo_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration last applied (the start or a successful reload), in seconds since the Unix epoch",
            status.success_timestamp,
        ),
    ]
}

/// `/metrics` of a process whose `kobo` table has no hub of its own (only named hubs, on `/probe`): the
/// build, the process metrics and the reload status.
pub fn process_families(
    reload: &ReloadStatus,
    process: Option<&prometheus::process_collector::ProcessCollector>,
) -> Vec<MetricFamily> {
    let mut build = gauge_family(
        "kobo_exporter_build_info",
        "Version of kobo-exporter and the kind of source it reads, value 1",
    );
    push_gauge(
        &mut build,
        &[("version", env!("CARGO_PKG_VERSION")), ("source", "")],
        1.0,
    );
    let mut families = vec![build];
    if let Some(process) = process {
        families.extend(process.collect());
    }
    families.extend(reload_families(reload));
    families
}
