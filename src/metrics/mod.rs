//! Metric families computed from a hub snapshot. Each submodule owns one group of metrics, with its names
//! and HELP texts; [`hub_families`] lists them in exposition order. The exporter's own health metrics are
//! in [`exporter`].

pub mod exporter;
pub mod family;
pub mod tasks;
pub mod workers;

use kobo_backend_api::HubSnapshot;
use prometheus::proto::MetricFamily;
use serde::Deserialize;

/// Which metrics to serve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricSet {
    /// Everything the source provides, plus the exporter's health metrics.
    #[default]
    All,
    /// Exactly django-kobo-exporter's six families, nothing else.
    Reference,
}

/// Every family the source's snapshot gives for `set`, in exposition order.
pub fn hub_families(snapshot: &HubSnapshot, set: MetricSet) -> Vec<MetricFamily> {
    let mut all = Vec::new();
    let collected: Result<(), std::convert::Infallible> =
        hub_family_groups(snapshot, set, &mut |group| {
            all.extend(group);
            Ok(())
        });
    match collected {
        Ok(()) => all,
        Err(never) => match never {},
    }
}

/// [`hub_families`] group by group: each group is handed to `emit` (to be encoded) and dropped before the
/// next is built, so a scrape holds one group of the prometheus crate's data model at a time (some 400
/// bytes per sample), not every sample of a hub of thousands of workers at once.
pub fn hub_family_groups<E>(
    snapshot: &HubSnapshot,
    set: MetricSet,
    emit: &mut dyn FnMut(Vec<MetricFamily>) -> Result<(), E>,
) -> Result<(), E> {
    // Sorted once for every per-worker family.
    let sorted = workers::sorted(snapshot);
    for family in workers::reference_families(&sorted) {
        emit(vec![family])?;
    }
    if set == MetricSet::All {
        emit(workers::extra_families(&sorted, snapshot.tasks.as_ref()))?;
        if let Some(tasks) = &snapshot.tasks {
            emit(tasks::task_families(tasks))?;
            emit(tasks::queue_families(snapshot, tasks))?;
        }
    }
    Ok(())
}
