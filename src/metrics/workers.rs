//! Per-worker metrics: first the six gauges of django-kobo-exporter (the same names, HELP texts, `worker`
//! label and family order, so existing dashboards and alerts keep working), then the exporter's own.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use kobo_backend_api::{HubSnapshot, LastSeen, TaskState, TaskSummary, WorkerRecord};
use prometheus::proto::MetricFamily;

use super::family::{gauge_family, push_gauge};

/// A per-worker gauge: name, HELP text, and its value for a worker (`None`: no sample for that worker).
pub type WorkerGauge = (&'static str, &'static str, fn(&WorkerRecord) -> Option<f64>);

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
    if b { 1.0 } else { 0.0 }
}

/// The workers ordered by name bytewise (so every source gives the same order, whatever its database's
/// collation).
pub fn sorted(snapshot: &HubSnapshot) -> Vec<&WorkerRecord> {
    let mut workers: Vec<&WorkerRecord> = snapshot.workers.iter().collect();
    workers.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    workers
}

/// A per-worker gauge's family (a reference gauge or [`MAX_TASKS`]), samples in the order of `workers`
/// ([`sorted`]): a function of [`gauge_key`] alone.
pub fn gauge_family_of(
    workers: &[&WorkerRecord],
    (name, help, value): &WorkerGauge,
) -> MetricFamily {
    let mut family = gauge_family(name, help);
    for worker in workers {
        if let Some(v) = value(worker) {
            push_gauge(&mut family, &[("worker", &worker.name)], v);
        }
    }
    family
}

/// What a per-worker gauge's family depends on: every worker's name and value, in order.
pub fn gauge_key(workers: &[&WorkerRecord], value: fn(&WorkerRecord) -> Option<f64>) -> u64 {
    let mut hasher = super::family::key_hasher();
    for worker in workers {
        (&worker.name, value(worker).map(f64::to_bits)).hash(&mut hasher);
    }
    hasher.finish()
}

/// The states `kobo_worker_tasks` counts per worker.
const WORKER_TASK_STATES: [TaskState; 2] = [TaskState::Assigned, TaskState::Open];

// The per-worker families beyond the reference, in exposition order: max_tasks (sources that know it), the
// arches and channels a worker accepts (info metrics of value 1) and, when there is task data, its ASSIGNED
// and OPEN tasks counted from the task table (0 where it has none). Samples in the order of `workers`
// (`sorted`); `hub_family_groups` puts them together.

/// `kobo_worker_max_tasks` (sources that know it; the others give no sample).
pub const MAX_TASKS: WorkerGauge = (
    "kobo_worker_max_tasks",
    "Maximum number of tasks the worker takes at once (0 = no limit)",
    |w| w.max_tasks.map(|n| n as f64),
);

/// `kobo_worker_arch` and `kobo_worker_channel`: a function of [`accepted_key`] alone.
pub fn accepted_families(workers: &[&WorkerRecord]) -> Vec<MetricFamily> {
    let mut arch = gauge_family(
        "kobo_worker_arch",
        "1 for every arch the worker accepts tasks for",
    );
    let mut channel = gauge_family(
        "kobo_worker_channel",
        "1 for every channel the worker takes tasks from",
    );
    for worker in workers {
        for name in &worker.arches {
            push_gauge(&mut arch, &[("worker", &worker.name), ("arch", name)], 1.0);
        }
        for name in &worker.channels {
            push_gauge(
                &mut channel,
                &[("worker", &worker.name), ("channel", name)],
                1.0,
            );
        }
    }
    vec![arch, channel]
}

/// What [`accepted_families`] depend on: every worker's name, arches and channels, in order.
pub fn accepted_key(workers: &[&WorkerRecord]) -> u64 {
    let mut hasher = super::family::key_hasher();
    for worker in workers {
        (&worker.name, &worker.arches, &worker.channels).hash(&mut hasher);
    }
    hasher.finish()
}

/// `kobo_worker_tasks`: a function of [`worker_tasks_key`] alone.
pub fn worker_tasks_family(workers: &[&WorkerRecord], tasks: &TaskSummary) -> MetricFamily {
    let mut counted = gauge_family(
        "kobo_worker_tasks",
        "Non-archived tasks of the worker in state ASSIGNED or OPEN, counted from the task table",
    );
    let mut by_worker: HashMap<(&str, TaskState), i64> = HashMap::new();
    for c in &tasks.per_worker {
        *by_worker.entry((c.worker.as_str(), c.state)).or_default() += c.count;
    }
    for worker in workers {
        for state in WORKER_TASK_STATES {
            let count = by_worker
                .get(&(worker.name.as_str(), state))
                .copied()
                .unwrap_or(0);
            push_gauge(
                &mut counted,
                &[("worker", &worker.name), ("state", state.name())],
                count as f64,
            );
        }
    }
    counted
}

/// What [`worker_tasks_family`] depends on: the workers' names, in order, and the per-worker task counts.
pub fn worker_tasks_key(workers: &[&WorkerRecord], tasks: &TaskSummary) -> u64 {
    let mut hasher = super::family::key_hasher();
    for worker in workers {
        worker.name.hash(&mut hasher);
    }
    for c in &tasks.per_worker {
        (&c.worker, c.state, c.count).hash(&mut hasher);
    }
    hasher.finish()
}
