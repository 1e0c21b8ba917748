//! Metric families computed from a hub snapshot. Each submodule owns one group of metrics, with its names
//! and HELP texts; [`families`] lists them in exposition order.

pub mod family;
pub mod workers;

use kobo_backend_api::HubSnapshot;
use prometheus::proto::MetricFamily;

/// Every metric family for this snapshot, in exposition order. Families may have no samples (an empty hub):
/// they are still listed, so that their HELP and TYPE are served, as the reference exporter does.
pub fn families(snapshot: &HubSnapshot) -> Vec<MetricFamily> {
    workers::families(snapshot)
}
