//! Building metric families with the `prometheus` crate's data model.

use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// A gauge family with no samples yet.
pub fn gauge_family(name: &str, help: &str) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(MetricType::GAUGE);
    family
}

/// Adds a gauge sample with these `(label, value)` pairs, in this order.
pub fn push_gauge(family: &mut MetricFamily, labels: &[(&str, &str)], value: f64) {
    let labels = labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_string());
            pair.set_value((*value).to_string());
            pair
        })
        .collect();
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    let mut metric = Metric::from_label(labels);
    metric.set_gauge(gauge);
    family.mut_metric().push(metric);
}
