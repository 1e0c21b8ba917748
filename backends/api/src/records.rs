//! The normalised records every source produces.
//!
//! Sources fill these and nothing else; the renderer reads only these. New metrics add fields or new record
//! kinds here (the structs are `#[non_exhaustive]` so that adding one breaks no caller outside this crate).

/// One scrape's view of the hub.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct HubSnapshot {
    /// Every worker of the hub, in no particular order (the renderer sorts).
    pub workers: Vec<WorkerRecord>,
    /// Problems that did not stop the collection but made part of it unavailable (for example an unreadable
    /// worker_dir: then no worker has a last seen). Each is a complete sentence.
    pub warnings: Vec<String>,
}

impl HubSnapshot {
    /// A snapshot with these workers and no warnings.
    pub fn new(workers: Vec<WorkerRecord>) -> Self {
        HubSnapshot {
            workers,
            warnings: Vec::new(),
        }
    }
}

/// When a worker last talked to the hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LastSeen {
    /// Unix time in whole seconds.
    At(i64),
    /// The hub has no record of the worker ever calling in (the reference exporter exports 0).
    Never,
    /// The source cannot tell (no worker_dir configured, or it could not be read).
    #[default]
    Unavailable,
}

/// One worker, as kobo's `hub_worker` row (or `client.get_worker_info`) describes it.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct WorkerRecord {
    /// The worker's unique name (its host name): the `worker` label.
    pub name: String,
    pub enabled: bool,
    /// kobo's cached `ready` column.
    pub ready: bool,
    /// kobo's cached `current_load` column: sum of weights of its OPEN, non-waiting tasks.
    pub current_load: i64,
    pub max_load: i64,
    /// kobo's cached `task_count` column: number of its OPEN tasks.
    pub task_count: i64,
    /// Maximum number of tasks (0 = no limit); `None` where the source does not tell (XML-RPC).
    pub max_tasks: Option<i64>,
    /// Minimum task priority it takes; `None` on old hubs without the column or where the source does not
    /// tell.
    pub min_priority: Option<i64>,
    pub last_seen: LastSeen,
    /// Names of the arches it accepts, sorted.
    pub arches: Vec<String>,
    /// Names of the channels it accepts, sorted.
    pub channels: Vec<String>,
}

impl WorkerRecord {
    /// A worker with this name and every other field at its default (disabled, zero loads, last seen
    /// unavailable); sources set the rest field by field.
    pub fn new(name: impl Into<String>) -> Self {
        WorkerRecord {
            name: name.into(),
            ..WorkerRecord::default()
        }
    }
}
