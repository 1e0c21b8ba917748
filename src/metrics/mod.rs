//! Metric families computed from a hub snapshot. Each submodule owns one group of metrics, with its names
//! and HELP texts; [`hub_families`] lists them in exposition order. The exporter's own health metrics are
//! in [`exporter`].

pub mod exporter;
pub mod family;
pub mod flow;
pub mod tasks;
pub mod workers;

use std::convert::Infallible;

use kobo_backend_api::HubSnapshot;
use prometheus::proto::MetricFamily;

pub use kobo_backend_api::MetricSet;

/// Where [`hub_family_groups`] puts the families, group by group.
pub trait FamilySink {
    type Error;

    /// The next families of the exposition.
    fn families(&mut self, families: Vec<MetricFamily>) -> Result<(), Self::Error>;

    /// The next families, which are a function of `key` alone (the same key, the same families): a sink
    /// may reuse what it made of them for the same `group` and key, without calling `build`.
    fn keyed(
        &mut self,
        group: &'static str,
        key: u64,
        build: &dyn Fn() -> Vec<MetricFamily>,
    ) -> Result<(), Self::Error> {
        let _ = (group, key);
        self.families(build())
    }
}

/// Collects every family.
impl FamilySink for Vec<MetricFamily> {
    type Error = Infallible;

    fn families(&mut self, families: Vec<MetricFamily>) -> Result<(), Infallible> {
        self.extend(families);
        Ok(())
    }
}

/// The task-flow families of `totals`, through `sink` (their encoding reused until the totals change).
pub fn flow_families<S: FamilySink>(
    totals: &flow::FlowTotals,
    sink: &mut S,
) -> Result<(), S::Error> {
    sink.keyed("flow", totals.generation(), &|| totals.families())
}

/// Every family the source's snapshot gives for `set`, in exposition order.
pub fn hub_families(snapshot: &HubSnapshot, set: MetricSet) -> Vec<MetricFamily> {
    let mut all = Vec::new();
    match hub_family_groups(snapshot, set, &mut all) {
        Ok(()) => all,
        Err(never) => match never {},
    }
}

/// [`hub_families`] group by group: each group is handed to `sink` (to be encoded) and dropped before the
/// next is built, so a scrape holds one group of the prometheus crate's data model at a time (some 400
/// bytes per sample), not every sample of a hub of thousands of workers at once. Every group but the
/// queue families goes through [`FamilySink::keyed`] with what it depends on as the key: the per-worker
/// families their samples, the accepted arches and channels the workers' configuration, the task groups
/// the task data; so a scrape reuses the encoding of every group that did not change.
pub fn hub_family_groups<S: FamilySink>(
    snapshot: &HubSnapshot,
    set: MetricSet,
    sink: &mut S,
) -> Result<(), S::Error> {
    // Sorted once for every per-worker family.
    let sorted = workers::sorted(snapshot);
    // Each per-worker family is keyed by its samples: a family no worker's value changed in since the
    // last scrape (every one on a quiet hub; enabled, max_load, max_tasks on most) is not encoded again.
    let max_tasks = (set == MetricSet::All).then_some(&workers::MAX_TASKS);
    for gauge in workers::REFERENCE_GAUGES.iter().chain(max_tasks) {
        sink.keyed(gauge.0, workers::gauge_key(&sorted, gauge.2), &|| {
            vec![workers::gauge_family_of(&sorted, gauge)]
        })?;
    }
    if set == MetricSet::All {
        sink.keyed("accepted", workers::accepted_key(&sorted), &|| {
            workers::accepted_families(&sorted)
        })?;
        if let Some(tasks) = &snapshot.tasks {
            sink.keyed(
                "worker_tasks",
                workers::worker_tasks_key(&sorted, tasks),
                &|| vec![workers::worker_tasks_family(&sorted, tasks)],
            )?;
            sink.keyed("tasks", tasks::task_key(tasks), &|| {
                tasks::task_families(tasks)
            })?;
            sink.families(tasks::queue_families(snapshot, tasks))?;
        }
    }
    Ok(())
}
