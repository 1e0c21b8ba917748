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

/// The hub's metric families for this snapshot, in exposition order. Families may have no samples (an
/// empty hub): they are still listed, so that their HELP and TYPE are served, as the reference exporter
/// does. Task and queue families appear only when the snapshot has task data.
pub fn hub_families(snapshot: &HubSnapshot, set: MetricSet) -> Vec<MetricFamily> {
    // Sorted once for every per-worker family.
    let sorted = workers::sorted(snapshot);
    let mut families = workers::reference_families(&sorted);
    if set == MetricSet::All {
        families.extend(workers::extra_families(&sorted, snapshot.tasks.as_ref()));
        if let Some(tasks) = &snapshot.tasks {
            families.extend(tasks::task_families(tasks));
            families.extend(tasks::queue_families(snapshot, tasks));
        }
    }
    families
}
