//! Task and queue metrics: active, non-archived tasks by state, arch and channel, the oldest of each, and
//! for every arch/channel pair with active tasks, how many workers could take them.
//!
//! Label values are names (state, arch, channel), never ids; no task ids, owners or labels, so the
//! cardinality is bounded by states x arches x channels. `kobo_tasks_by_method` is by state and method,
//! with methods beyond `max_task_methods` under one value ([`super::flow`]).

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use kobo_backend_api::{HubSnapshot, MethodCount, TaskGroup, TaskSummary};
use prometheus::proto::MetricFamily;

use super::family::{gauge_family, push_gauge};

/// `kobo_tasks`, `kobo_tasks_oldest_created_timestamp_seconds` and `kobo_tasks_by_method` (a function of
/// [`task_key`]), one sample per (state, arch, channel)
/// with tasks (a missing series means none), ordered by state code, then arch and channel bytewise.
pub fn task_families(tasks: &TaskSummary) -> Vec<MetricFamily> {
    let mut groups: Vec<&TaskGroup> = tasks.groups.iter().collect();
    groups.sort_by(|a, b| {
        (a.state, a.arch.as_bytes(), a.channel.as_bytes()).cmp(&(
            b.state,
            b.arch.as_bytes(),
            b.channel.as_bytes(),
        ))
    });
    let mut count = gauge_family(
        "kobo_tasks",
        "Non-archived tasks in an active state (FREE, ASSIGNED, OPEN, CREATED), by state, arch and channel",
    );
    let mut oldest = gauge_family(
        "kobo_tasks_oldest_created_timestamp_seconds",
        "Creation time of the oldest non-archived task, by active state, arch and channel",
    );
    for group in groups {
        let labels = [
            ("state", group.state.name()),
            ("arch", group.arch.as_str()),
            ("channel", group.channel.as_str()),
        ];
        push_gauge(&mut count, &labels, group.count as f64);
        if let Some(created) = group.oldest_created {
            push_gauge(&mut oldest, &labels, created);
        }
    }
    let mut by_method = gauge_family(
        "kobo_tasks_by_method",
        "Non-archived tasks in an active state (FREE, ASSIGNED, OPEN, CREATED), by state and method",
    );
    let mut methods: Vec<&MethodCount> = tasks.by_method.iter().collect();
    methods.sort_by(|a, b| (a.state, a.method.as_bytes()).cmp(&(b.state, b.method.as_bytes())));
    for method in methods {
        let labels = [
            ("state", method.state.name()),
            ("method", method.method.as_str()),
        ];
        push_gauge(&mut by_method, &labels, method.count as f64);
    }
    vec![count, oldest, by_method]
}

/// What [`task_families`] depend on: the task groups.
pub fn task_key(tasks: &TaskSummary) -> u64 {
    let mut hasher = super::family::key_hasher();
    for g in &tasks.groups {
        (g.state, &g.arch, &g.channel, g.count).hash(&mut hasher);
        g.oldest_created.map(f64::to_bits).hash(&mut hasher);
    }
    for m in &tasks.by_method {
        (m.state, &m.method, m.count).hash(&mut hasher);
    }
    hasher.finish()
}

/// `kobo_queue_workers` and `kobo_queue_workers_ready`: for every arch/channel pair that has active tasks,
/// the enabled (and the ready) workers that accept both the arch and the channel. 0 means nobody can take
/// those tasks: the queue is stranded. (kobo also requires a task's priority to reach the worker's
/// `min_priority`; that is not taken into account here.)
pub fn queue_families(snapshot: &HubSnapshot, tasks: &TaskSummary) -> Vec<MetricFamily> {
    let pairs: BTreeSet<(&[u8], &str, &str)> = tasks
        .groups
        .iter()
        .map(|g| (g.arch.as_bytes(), g.arch.as_str(), g.channel.as_str()))
        .collect();
    let mut workers = gauge_family(
        "kobo_queue_workers",
        "Enabled workers that accept both the arch and the channel, for every arch/channel pair with active tasks",
    );
    let mut ready = gauge_family(
        "kobo_queue_workers_ready",
        "Enabled and ready workers that accept both the arch and the channel, for every arch/channel pair with active tasks",
    );
    let pairs: Vec<(&str, &str)> = pairs.into_iter().map(|(_, a, c)| (a, c)).collect();
    // For every arch, the pairs (by index) that have it: a worker is checked only against the pairs of the
    // arches it accepts, not against every pair.
    let mut pairs_of_arch: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, (arch, _)) in pairs.iter().enumerate() {
        pairs_of_arch.entry(arch).or_default().push(index);
    }
    let mut counts = vec![(0u64, 0u64); pairs.len()];
    for worker in snapshot.workers.iter().filter(|w| w.enabled) {
        // arches and channels are sorted and unique in every record.
        for arch in &worker.arches {
            for &index in pairs_of_arch.get(arch.as_str()).into_iter().flatten() {
                let channel = pairs[index].1;
                if worker
                    .channels
                    .binary_search_by(|c| c.as_str().cmp(channel))
                    .is_ok()
                {
                    counts[index].0 += 1;
                    counts[index].1 += u64::from(worker.ready);
                }
            }
        }
    }
    for (&(arch, channel), &(enabled, ready_count)) in pairs.iter().zip(&counts) {
        let labels = [("arch", arch), ("channel", channel)];
        push_gauge(&mut workers, &labels, enabled as f64);
        push_gauge(&mut ready, &labels, ready_count as f64);
    }
    vec![workers, ready]
}
