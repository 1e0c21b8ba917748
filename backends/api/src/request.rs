//! What the exporter asks of a source for one collection ([`CollectRequest`]), and what it learns of the
//! collection besides the records ([`Part`], [`Warning`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Which metrics the exporter serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricSet {
    /// Everything the source provides, plus the exporter's health metrics.
    #[default]
    All,
    /// Exactly django-kobo-exporter's six families, nothing else: no arches, channels or task data.
    Reference,
}

/// One collection: by when it must be done, whether task data is wanted, and which metrics are served.
///
/// The deadline bounds all of a source's work: getting a connection, each statement (a source sets the
/// server's own limit from the time left) and each HTTP request. A source stops where the work runs once
/// it passes (a cancelled statement, a dropped request), and the collection's future may also be dropped
/// at the deadline by the exporter: a source must leave nothing running on the hub either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectRequest {
    /// When the collection is abandoned.
    pub deadline: Instant,
    /// Whether the task aggregates are wanted (a refresh of the task metrics).
    pub tasks: bool,
    /// The metric set served: with [`MetricSet::Reference`] a source may skip the arches and channels.
    pub metrics: MetricSet,
}

impl CollectRequest {
    /// A request for the workers, every metric, due by `deadline`.
    pub fn workers(deadline: Instant) -> Self {
        CollectRequest {
            deadline,
            tasks: false,
            metrics: MetricSet::All,
        }
    }

    /// A request for the workers and the task data, every metric, due by `deadline`.
    pub fn with_tasks(deadline: Instant) -> Self {
        CollectRequest {
            tasks: true,
            ..CollectRequest::workers(deadline)
        }
    }

    /// A request due `within` from now (`within` is capped at a day, so that no deadline overflows).
    pub fn within(within: Duration) -> Self {
        let within = within.min(Duration::from_secs(86_400));
        CollectRequest::workers(Instant::now() + within)
    }

    /// This request, with the task data asked for or not.
    pub fn tasks(self, tasks: bool) -> Self {
        CollectRequest { tasks, ..self }
    }

    /// Whether the arches and channels of the workers are wanted.
    pub fn wants_names(&self) -> bool {
        self.metrics == MetricSet::All
    }

    /// The time left before the deadline (zero once it has passed).
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// A part of a collection, as the exporter reports it (`collector` label of its own metrics). Ordered by
/// name, as the exporter lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// When each worker last called in (the worker directory).
    LastSeen,
    /// The task aggregates.
    Tasks,
    /// The workers with their loads, arches and channels.
    Workers,
}

impl Part {
    /// Every part, in the order the exporter lists them.
    pub const ALL: [Part; 3] = [Part::LastSeen, Part::Tasks, Part::Workers];

    /// The name as a label value: `workers`, `tasks`, `last_seen`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Workers => "workers",
            Part::Tasks => "tasks",
            Part::LastSeen => "last_seen",
        }
    }
}

/// A problem that did not stop the collection but made a part of it unavailable or incomplete (for
/// example an unreadable worker directory: then no worker has a last seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub part: Part,
    /// A complete sentence.
    pub message: String,
}

impl Warning {
    pub fn new(part: Part, message: impl Into<String>) -> Self {
        Warning {
            part,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
