//! The normalised records every source produces.
//!
//! Sources fill these and nothing else; the renderer reads only these. New metrics add fields or new record
//! kinds here (the structs are `#[non_exhaustive]` so that adding one breaks no caller outside this crate).

use crate::clock::Micros;
use crate::request::{Part, Warning};

/// One scrape's view of the hub.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct HubSnapshot {
    /// Every worker of the hub, in no particular order (the renderer sorts).
    pub workers: Vec<WorkerRecord>,
    /// Task aggregates, read in the same consistent snapshot as the workers; `None` where they were not
    /// asked for ([`DataSource::collect`](crate::DataSource::collect)) or the source cannot give them.
    pub tasks: Option<TaskSummary>,
    /// Problems that did not stop the collection but made a part of it unavailable or incomplete.
    pub warnings: Vec<Warning>,
    /// How long each part of the collection took, where the source measured it.
    pub timings: Vec<(Part, std::time::Duration)>,
    /// The tasks that started or finished since the last task refresh, each given once over the
    /// source's life; `None` where task data was not asked for or the source cannot tell.
    pub flow: Option<TaskFlow>,
}

impl HubSnapshot {
    /// A snapshot with these workers, no task data and no warnings.
    pub fn new(workers: Vec<WorkerRecord>) -> Self {
        HubSnapshot {
            workers,
            ..HubSnapshot::default()
        }
    }

    /// What a database read gave: workers, task data if asked for, and how long each part took.
    pub fn from_read(
        workers: Vec<WorkerRecord>,
        tasks: Option<TaskSummary>,
        timings: Vec<(Part, std::time::Duration)>,
    ) -> Self {
        HubSnapshot {
            workers,
            tasks,
            timings,
            ..HubSnapshot::default()
        }
    }
}

/// A kobo task state (`kobo.client.constants.TASK_STATES`; the code is the position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskState {
    Free = 0,
    Assigned = 1,
    Open = 2,
    Closed = 3,
    Canceled = 4,
    Failed = 5,
    Interrupted = 6,
    Timeout = 7,
    Created = 8,
}

impl TaskState {
    /// The states of tasks that are not finished: the only ones the exporter counts.
    /// The finished states: CLOSED, CANCELED, FAILED, INTERRUPTED, TIMEOUT.
    pub fn is_finished(self) -> bool {
        (3..=7).contains(&self.code())
    }

    pub const ACTIVE: [TaskState; 4] = [
        TaskState::Free,
        TaskState::Assigned,
        TaskState::Open,
        TaskState::Created,
    ];

    /// Every state, in code order.
    pub const ALL: [TaskState; 9] = [
        TaskState::Free,
        TaskState::Assigned,
        TaskState::Open,
        TaskState::Closed,
        TaskState::Canceled,
        TaskState::Failed,
        TaskState::Interrupted,
        TaskState::Timeout,
        TaskState::Created,
    ];

    /// The state with this code, if any.
    pub fn from_code(code: i64) -> Option<TaskState> {
        usize::try_from(code)
            .ok()
            .and_then(|i| TaskState::ALL.get(i).copied())
    }

    pub fn code(self) -> i64 {
        self as i64
    }

    /// kobo's name of the state, as used in label values: `FREE`, `ASSIGNED`, ...
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Free => "FREE",
            TaskState::Assigned => "ASSIGNED",
            TaskState::Open => "OPEN",
            TaskState::Closed => "CLOSED",
            TaskState::Canceled => "CANCELED",
            TaskState::Failed => "FAILED",
            TaskState::Interrupted => "INTERRUPTED",
            TaskState::Timeout => "TIMEOUT",
            TaskState::Created => "CREATED",
        }
    }
}

/// Non-archived tasks in one active state for one arch and channel.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskGroup {
    pub state: TaskState,
    /// The arch's `name`.
    pub arch: String,
    /// The channel's `name` (channel names are not unique: same-named channels are one group).
    pub channel: String,
    pub count: i64,
    /// `dt_created` of the oldest task, Unix seconds (UTC).
    pub oldest_created: Option<f64>,
}

/// Non-archived tasks of one worker in one state (ASSIGNED or OPEN), counted from the task table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerTaskCount {
    pub worker: String,
    pub state: TaskState,
    pub count: i64,
}

/// Aggregates over the active, non-archived tasks.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TaskSummary {
    /// One entry per (state, arch, channel) with at least one task; in no particular order.
    pub groups: Vec<TaskGroup>,
    /// One entry per (worker, state) with at least one ASSIGNED or OPEN task; in no particular order.
    pub per_worker: Vec<WorkerTaskCount>,
    /// One entry per (state, method) with tasks; empty where the source does not tell.
    pub by_method: Vec<MethodCount>,
}

impl TaskSummary {
    /// The summary of these groups (same-named ones merged, see [`crate::tasks::merge_groups`]) and
    /// per-worker counts.
    pub fn new(groups: Vec<TaskGroup>, per_worker: Vec<WorkerTaskCount>) -> Self {
        TaskSummary {
            groups: crate::tasks::merge_groups(groups),
            per_worker,
            by_method: Vec::new(),
        }
    }

    /// The summary of counts by (state, arch, channel, method): the groups, and the counts by (state,
    /// method), both with same-named entries merged.
    pub fn from_counts(counts: Vec<TaskCount>, per_worker: Vec<WorkerTaskCount>) -> Self {
        let by_method = crate::tasks::by_method(&counts);
        let groups = counts.into_iter().map(|c| c.group).collect();
        TaskSummary {
            by_method,
            ..TaskSummary::new(groups, per_worker)
        }
    }
}

/// Non-archived tasks in one active state for one arch, channel and method: the finest grouping a source
/// reads, from which [`TaskSummary::from_counts`] makes both views.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskCount {
    pub group: TaskGroup,
    /// The task's `method` (its handler's name).
    pub method: String,
}

/// Non-archived tasks in one active state with one method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodCount {
    pub state: TaskState,
    pub method: String,
    pub count: i64,
}

/// A task as a task-flow read found it (times are instants, microseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: i64,
    pub state: TaskState,
    pub method: String,
    /// The channel's name.
    pub channel: String,
    pub created: Option<crate::clock::Micros>,
    pub started: Option<crate::clock::Micros>,
    pub finished: Option<crate::clock::Micros>,
}

impl TaskRow {
    /// The row with its times, read as UTC, taken as naive times in `zone` instead.
    pub fn in_zone(self, zone: &crate::clock::HubZone) -> TaskRow {
        let at = |t: Option<i64>| t.map(|t| zone.instant(t));
        TaskRow {
            created: at(self.created),
            started: at(self.started),
            finished: at(self.finished),
            ..self
        }
    }
}

impl TaskGroup {
    /// The group with its oldest creation time, read as UTC, taken as a naive time in `zone` instead.
    pub fn in_zone(self, zone: &crate::clock::HubZone) -> TaskGroup {
        TaskGroup {
            oldest_created: self
                .oldest_created
                .map(|t| zone.instant((t * 1e6).round() as i64) as f64 / 1e6),
            ..self
        }
    }
}

/// What tasks did since the last task refresh.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TaskFlow {
    /// Tasks seen started for the first time.
    pub started: Vec<StartedTask>,
    /// Tasks seen finished for the first time.
    pub finished: Vec<FinishedTask>,
}

/// A task that started: how long it waited (`dt_started - dt_created`, seconds, at least 0).
#[derive(Debug, Clone, PartialEq)]
pub struct StartedTask {
    pub method: String,
    pub channel: String,
    pub wait: f64,
}

/// A task that reached a finished state, and how long it ran (`dt_finished - dt_started`, seconds, at
/// least 0) if it started.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedTask {
    pub state: TaskState,
    pub method: String,
    pub channel: String,
    pub run: Option<f64>,
}

impl StartedTask {
    /// The start of a task of `method` in `channel`, created and started at these instants.
    pub fn new(method: &str, channel: &str, created: Micros, started: Micros) -> Self {
        StartedTask {
            method: method.to_string(),
            channel: channel.to_string(),
            wait: crate::flow::seconds(started - created),
        }
    }
}

impl FinishedTask {
    /// The end of a task of `method` in `channel` in `state`; it ran if both instants are known.
    pub fn new(
        state: TaskState,
        method: &str,
        channel: &str,
        started: Option<Micros>,
        finished: Option<Micros>,
    ) -> Self {
        FinishedTask {
            state,
            method: method.to_string(),
            channel: channel.to_string(),
            run: started
                .zip(finished)
                .map(|(started, finished)| crate::flow::seconds(finished - started)),
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
