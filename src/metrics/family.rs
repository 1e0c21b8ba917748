//! Building metric families with the `prometheus` crate's data model.

use prometheus::proto::{Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};

/// A family of this type with no samples yet.
fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(kind);
    family
}

/// A gauge family with no samples yet.
pub fn gauge_family(name: &str, help: &str) -> MetricFamily {
    family(name, help, MetricType::GAUGE)
}

/// A counter family with no samples yet.
pub fn counter_family(name: &str, help: &str) -> MetricFamily {
    family(name, help, MetricType::COUNTER)
}

fn metric(labels: &[(&str, &str)]) -> Metric {
    let labels = labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_string());
            pair.set_value((*value).to_string());
            pair
        })
        .collect();
    Metric::from_label(labels)
}

/// Adds a sample with these `(label, value)` pairs, in this order, its value set by `set`.
fn push_sample(family: &mut MetricFamily, labels: &[(&str, &str)], set: impl FnOnce(&mut Metric)) {
    let mut metric = metric(labels);
    set(&mut metric);
    family.mut_metric().push(metric);
}

/// Adds a gauge sample with these `(label, value)` pairs, in this order.
pub fn push_gauge(family: &mut MetricFamily, labels: &[(&str, &str)], value: f64) {
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    push_sample(family, labels, |metric| metric.set_gauge(gauge));
}

/// Adds a counter sample with these `(label, value)` pairs, in this order.
pub fn push_counter(family: &mut MetricFamily, labels: &[(&str, &str)], value: f64) {
    let mut counter = Counter::default();
    counter.set_value(value);
    push_sample(family, labels, |metric| metric.set_counter(counter));
}

/// Adds a histogram sample with these `(label, value)` pairs, in this order.
pub fn push_histogram(family: &mut MetricFamily, labels: &[(&str, &str)], histogram: Histogram) {
    push_sample(family, labels, |metric| metric.set_histogram(histogram));
}

/// A gauge family with one unlabelled sample.
pub fn single_gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut family = gauge_family(name, help);
    push_gauge(&mut family, &[], value);
    family
}

/// The hasher of the render's reuse keys ([`super::FamilySink::keyed`]): foldhash's quality variant with a
/// fixed seed, 64 bits like SipHash's but several times faster on the many short writes of a key (SipHash
/// was 8 % of a steady scrape's CPU at 1,000 workers). Keys are compared between scrapes of one process
/// only, so the seed need not be secret.
pub fn key_hasher() -> impl std::hash::Hasher {
    use std::hash::BuildHasher as _;
    foldhash::quality::FixedState::with_seed(0x6b6f_626f).build_hasher()
}
