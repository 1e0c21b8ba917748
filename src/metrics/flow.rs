//! Task flow: what the hub's tasks did since the exporter started, accumulated from the events each task
//! refresh gives ([`TaskFlow`]): `kobo_tasks_finished_total{state,method,channel}`, and the histograms
//! `kobo_task_wait_seconds{method,channel}` (created to started) and `kobo_task_run_seconds{method,channel}`
//! (started to finished). Everything starts from 0 when the exporter starts.
//!
//! Cardinality: methods are task handlers (a few dozen on a hub) and channels are few, but neither is
//! bounded by kobo, so at most `max_task_methods` methods get a label value of their own, in the order
//! they are first seen; the others are counted under [`OTHER_METHOD`]. Histograms are written by hand
//! because the prometheus crate's `Histogram` observes one value at a time behind atomics and keeps no
//! per-label bounded admission; these are plain counts updated once per refresh under the collector's lock.

use std::collections::{BTreeMap, BTreeSet};

use kobo_backend_api::{MethodCount, TaskFlow, TaskState};
use prometheus::proto::{Bucket, Histogram, MetricFamily, MetricType};

use super::family::{counter_family, push_counter};

/// The label value of the methods beyond the limit: never a kobo method name (they are Python class names).
pub const OTHER_METHOD: &str = "(other)";

/// How many methods get their own label value unless configured.
pub const DEFAULT_MAX_METHODS: usize = 100;

/// Upper bounds in seconds, from a second to a day: signing jobs take seconds, builds minutes to hours,
/// composes hours; a queue wait of more than a day is an outage.
pub const DEFAULT_BUCKETS: [f64; 15] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
    28800.0, 86400.0,
];

/// One histogram's observations.
#[derive(Debug, Clone, Default, PartialEq)]
struct Observed {
    /// Per bucket (not cumulative), the last one beyond the highest bound.
    counts: Vec<u64>,
    sum: f64,
}

/// The task flow since the exporter started.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowTotals {
    buckets: Vec<f64>,
    max_methods: usize,
    methods: BTreeSet<String>,
    finished: BTreeMap<(TaskState, String, String), u64>,
    wait: BTreeMap<(String, String), Observed>,
    run: BTreeMap<(String, String), Observed>,
    /// Changes with every change of the totals (for reusing their encoding).
    generation: u64,
    /// Whether the source gives the flow at all (it gave one).
    counting: bool,
}

impl FlowTotals {
    pub fn new(buckets: Vec<f64>, max_methods: usize) -> Self {
        FlowTotals {
            buckets,
            max_methods,
            methods: BTreeSet::new(),
            finished: BTreeMap::new(),
            wait: BTreeMap::new(),
            run: BTreeMap::new(),
            generation: 0,
            counting: false,
        }
    }

    /// Whether the source gives the task flow (a source that cannot has no flow families).
    pub fn counting(&self) -> bool {
        self.counting
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The label value of `method`: its own while fewer than the limit have one, else [`OTHER_METHOD`].
    fn method_label(&mut self, method: &str) -> String {
        if self.methods.contains(method) {
            return method.to_string();
        }
        if self.methods.len() < self.max_methods && method != OTHER_METHOD {
            self.methods.insert(method.to_string());
            return method.to_string();
        }
        OTHER_METHOD.to_string()
    }

    /// The counts by method with the methods beyond the limit gathered under [`OTHER_METHOD`].
    pub fn label_methods(&mut self, counts: Vec<MethodCount>) -> Vec<MethodCount> {
        let mut merged: BTreeMap<(TaskState, String), i64> = BTreeMap::new();
        for count in counts {
            let method = self.method_label(&count.method);
            *merged.entry((count.state, method)).or_default() += count.count;
        }
        merged
            .into_iter()
            .map(|((state, method), count)| MethodCount {
                state,
                method,
                count,
            })
            .collect()
    }

    /// Adds a refresh's events.
    pub fn add(&mut self, flow: &TaskFlow) {
        self.counting = true;
        if flow.started.is_empty() && flow.finished.is_empty() {
            return;
        }
        self.generation += 1;
        for task in &flow.started {
            let method = self.method_label(&task.method);
            let buckets = self.buckets.len();
            observe(
                self.wait.entry((method, task.channel.clone())),
                buckets,
                &self.buckets,
                task.wait,
            );
        }
        for task in &flow.finished {
            let method = self.method_label(&task.method);
            *self
                .finished
                .entry((task.state, method.clone(), task.channel.clone()))
                .or_default() += 1;
            if let Some(run) = task.run {
                let buckets = self.buckets.len();
                observe(
                    self.run.entry((method, task.channel.clone())),
                    buckets,
                    &self.buckets,
                    run,
                );
            }
        }
    }

    /// The three families, series ordered by state, then method and channel bytewise.
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut finished = counter_family(
            "kobo_tasks_finished_total",
            "Tasks that reached a finished state (CLOSED, CANCELED, FAILED, INTERRUPTED, TIMEOUT) since the exporter started, by state, method and channel",
        );
        for ((state, method, channel), count) in &self.finished {
            let labels = [
                ("state", state.name()),
                ("method", method.as_str()),
                ("channel", channel.as_str()),
            ];
            push_counter(&mut finished, &labels, *count as f64);
        }
        vec![
            finished,
            self.histogram(
                "kobo_task_wait_seconds",
                "Time from creation to start (dt_started - dt_created) of the tasks seen started since the exporter started, by method and channel",
                &self.wait,
            ),
            self.histogram(
                "kobo_task_run_seconds",
                "Time from start to finish (dt_finished - dt_started) of the tasks seen finished since the exporter started, by method and channel",
                &self.run,
            ),
        ]
    }

    fn histogram(
        &self,
        name: &str,
        help: &str,
        series: &BTreeMap<(String, String), Observed>,
    ) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(MetricType::HISTOGRAM);
        for ((method, channel), observed) in series {
            let mut histogram = Histogram::default();
            let mut cumulative = 0;
            let mut buckets = Vec::with_capacity(self.buckets.len());
            for (bound, count) in self.buckets.iter().zip(&observed.counts) {
                cumulative += count;
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(cumulative);
                buckets.push(bucket);
            }
            histogram.set_bucket(buckets);
            histogram.set_sample_count(observed.counts.iter().sum());
            histogram.set_sample_sum(observed.sum);
            let labels = [("method", method.as_str()), ("channel", channel.as_str())];
            super::family::push_histogram(&mut family, &labels, histogram);
        }
        family
    }
}

fn observe(
    entry: std::collections::btree_map::Entry<'_, (String, String), Observed>,
    buckets: usize,
    bounds: &[f64],
    value: f64,
) {
    let observed = entry.or_insert_with(|| Observed {
        counts: vec![0; buckets + 1],
        sum: 0.0,
    });
    // The first bucket whose upper bound is at least the value (`le`), else the one beyond them all.
    let index = bounds.partition_point(|bound| *bound < value);
    observed.counts[index] += 1;
    observed.sum += value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kobo_backend_api::{FinishedTask, StartedTask};

    fn flow(started: &[(&str, f64)], finished: &[(TaskState, &str, Option<f64>)]) -> TaskFlow {
        let mut flow = TaskFlow::default();
        flow.started = started
            .iter()
            .map(|(method, wait)| StartedTask {
                method: (*method).into(),
                channel: "default".into(),
                wait: *wait,
            })
            .collect();
        flow.finished = finished
            .iter()
            .map(|(state, method, run)| FinishedTask {
                state: *state,
                method: (*method).into(),
                channel: "default".into(),
                run: *run,
            })
            .collect();
        flow
    }

    #[test]
    fn buckets_are_le_and_methods_beyond_the_limit_are_other() {
        let mut totals = FlowTotals::new(vec![1.0, 10.0], 2);
        totals.add(&flow(
            &[("A", 1.0), ("A", 1.5), ("B", 10.0), ("C", 11.0)],
            &[
                (TaskState::Closed, "A", Some(0.5)),
                (TaskState::Canceled, "C", None),
            ],
        ));
        let families = totals.families();
        let wait = &families[1].get_metric();
        assert_eq!(wait.len(), 3, "(other), A and B, bytewise");
        let a = wait[1].get_histogram();
        let cumulative: Vec<u64> = a
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect();
        assert_eq!(
            (cumulative, a.get_sample_count(), a.get_sample_sum()),
            (vec![1, 2], 2, 2.5)
        );
        let other = wait[0].get_histogram();
        assert_eq!(wait[0].get_label()[0].value(), OTHER_METHOD);
        assert_eq!(
            (
                other.get_bucket()[1].cumulative_count(),
                other.get_sample_count()
            ),
            (0, 1)
        );
        assert_eq!(
            wait[2].get_histogram().get_bucket()[1].cumulative_count(),
            1,
            "10 is le 10"
        );
        let finished = &families[0].get_metric();
        assert_eq!(finished.len(), 2);
        assert_eq!(finished[1].get_label()[1].value(), OTHER_METHOD);
        assert_eq!(
            families[2].get_metric().len(),
            1,
            "canceled while FREE: no run"
        );
        let generation = totals.generation();
        totals.add(&TaskFlow::default());
        assert_eq!(totals.generation(), generation);
    }
}
