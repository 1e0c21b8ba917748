//! The per-worker gauges of django-kobo-exporter: the same names, HELP texts, `worker` label and family
//! order, so existing dashboards and alerts keep working.

use kobo_backend_api::{HubSnapshot, LastSeen, WorkerRecord};
use prometheus::proto::MetricFamily;

use super::family::{gauge_family, push_gauge};

/// A reference metric: name, HELP text, and its value for a worker (`None`: no sample for that worker).
type WorkerGauge = (&'static str, &'static str, fn(&WorkerRecord) -> Option<f64>);

/// The six reference gauges, in the reference's order.
pub const REFERENCE_GAUGES: [WorkerGauge; 6] = [
    ("kobo_worker_enabled", "1 if worker is enabled", |w| {
        Some(bool_value(w.enabled))
    }),
    ("kobo_worker_ready", "1 if worker is ready", |w| {
        Some(bool_value(w.ready))
    }),
    (
        "kobo_worker_load",
        "Current load of worker (sum of task weights)",
        |w| Some(w.current_load as f64),
    ),
    (
        "kobo_worker_max_load",
        "Maximum permitted load of worker",
        |w| Some(w.max_load as f64),
    ),
    (
        "kobo_worker_open_tasks",
        "Current number of OPEN tasks for worker",
        |w| Some(w.task_count as f64),
    ),
    (
        "kobo_worker_last_seen_seconds",
        "Time of worker's last communication with hub",
        |w| match w.last_seen {
            LastSeen::At(seconds) => Some(seconds as f64),
            // As the reference: a worker that never called in exports 0.
            LastSeen::Never => Some(0.0),
            // Unknown is not "never": no sample rather than a false 0.
            LastSeen::Unavailable => None,
        },
    ),
];

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The reference families, samples ordered by worker name bytewise (so every source gives the same order,
/// whatever its database's collation).
pub fn families(snapshot: &HubSnapshot) -> Vec<MetricFamily> {
    let mut workers: Vec<&WorkerRecord> = snapshot.workers.iter().collect();
    workers.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    REFERENCE_GAUGES
        .iter()
        .map(|(name, help, value)| {
            let mut family = gauge_family(name, help);
            for worker in &workers {
                if let Some(v) = value(worker) {
                    push_gauge(&mut family, &[("worker", &worker.name)], v);
                }
            }
            family
        })
        .collect()
}
