//! The task aggregates from kobo's task exports, computed here because the XML-RPC API has no aggregate
//! call: the same [`TaskSummary`] the SQL sources get from their two grouped queries.
//!
//! `client.get_tasks([], [0, 1, 2, 8])` gives the flat export of every non-archived task in an active state,
//! where the worker, arch and channel are ids. Names come from the worker exports of the same collection
//! ([`Directory`]); an arch or channel that no worker has (an arch nobody serves: a stranded queue) is named
//! from the nested structs of `client.task_info(id)` for one task that carries it ([`lookups`]). The
//! aggregation then groups by names as the SQL does: by (state, arch name, channel name), with the count
//! and the oldest `dt_created`, and ASSIGNED and OPEN tasks by (worker name, state).
//!
//! Nothing here panics on what the hub sends: a task export that cannot be read and a task whose arch or
//! channel cannot be named are left out, with one warning (a sentence starting with
//! [`TASK_WARNING_PREFIX`]) per reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dxr::Value;
use kobo_backend_api::clock::{HubZone, Micros};
use kobo_backend_api::tasks::instant_from_text;
use kobo_backend_api::{
    TaskCount, TaskGroup, TaskState, TaskSummary, WorkerRecord, WorkerTaskCount,
};

use crate::decode::{Fields, datetime_seconds};
use crate::rpc::kind;
use crate::sentence;

/// How every warning about the task metrics starts, so that they can be told from the worker warnings.
pub const TASK_WARNING_PREFIX: &str = kobo_backend_api::tasks::WARNING_PREFIX;

/// At most this many examples are quoted in one warning.
const EXAMPLES: usize = 3;

/// What the ids in task exports stand for: names learnt from the worker exports and `client.task_info`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Directory {
    pub workers: HashMap<i64, String>,
    pub arches: HashMap<i64, String>,
    pub channels: HashMap<i64, String>,
}

impl Directory {
    /// Learns a worker's id (when it has one) and the ids of its arches and channels.
    pub(crate) fn learn_worker(
        &mut self,
        id: Option<i64>,
        name: &str,
        arches: &[(i64, String)],
        channels: &[(i64, String)],
    ) {
        if let Some(id) = id {
            self.workers.insert(id, name.to_string());
        }
        for (id, name) in arches {
            self.arches.entry(*id).or_insert_with(|| name.clone());
        }
        for (id, name) in channels {
            self.channels.entry(*id).or_insert_with(|| name.clone());
        }
    }

    /// Learns what a decoded worker export tells ([`learn_worker`](Self::learn_worker)); its record.
    pub(crate) fn learn(&mut self, decoded: crate::decode::DecodedWorker) -> WorkerRecord {
        self.learn_worker(
            decoded.id,
            &decoded.record.name,
            &decoded.arch_ids,
            &decoded.channel_ids,
        );
        decoded.record
    }

    /// Learns the arch and channel of task `task_id` from its `client.task_info` answer (`flat=False`: `arch`
    /// is `{id, name, pretty_name}`, `channel` is `{id, name}`). The error says why the answer is unusable.
    pub(crate) fn learn_from_task_info(
        &mut self,
        task_id: i64,
        value: Value,
    ) -> Result<(), String> {
        let Value::Struct(members) = value else {
            return Err(format!("it returned {}, not a struct", kind(&value)));
        };
        let fields = Fields(&members);
        let id = fields.integer("id")?;
        if id != task_id {
            return Err(format!("it returned task {id} instead"));
        }
        let (arch_id, arch) = named(&fields, "arch")?;
        let (channel_id, channel) = named(&fields, "channel")?;
        self.arches.entry(arch_id).or_insert(arch);
        self.channels.entry(channel_id).or_insert(channel);
        Ok(())
    }
}

/// The `(id, name)` of the nested `{id, name, ...}` struct in the field `field`.
fn named(fields: &Fields<'_>, field: &str) -> Result<(i64, String), String> {
    let value = fields.get(field)?;
    let Value::Struct(members) = value else {
        return Err(Fields::wrong(field, value, "a struct (flat=False)"));
    };
    let nested = Fields(members);
    let id = nested
        .integer("id")
        .map_err(|why| format!("{field}: {why}"))?;
    let name = nested
        .string("name")
        .map_err(|why| format!("{field}: {why}"))?;
    if name.is_empty() {
        return Err(format!("{field}: the field name is empty"));
    }
    Ok((id, name))
}

/// What the aggregates and the task flow need of one task's flat export.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskExport {
    pub id: i64,
    pub state: TaskState,
    pub worker: Option<i64>,
    pub arch: i64,
    pub channel: i64,
    /// The task's `method` (its handler's name).
    pub method: String,
    /// `dt_created`, an instant (microseconds since the epoch).
    pub created: Micros,
    /// `dt_started`, if the task started.
    pub started: Option<Micros>,
    /// `dt_finished`, if the task finished.
    pub finished: Option<Micros>,
}

/// A `client.get_tasks` answer: the tasks that could be read, and why the others could not.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TaskList {
    pub tasks: Vec<TaskExport>,
    /// `task <id>: <why>` (or `task [<index>]: <why>` without a readable id), one per unreadable export.
    pub unreadable: Vec<String>,
}

/// Reads the `client.get_tasks` result of the active states (an array of flat task structs), its times in
/// `zone`. Only a result that is not an array is an error; a task export that cannot be read (a missing
/// field, a wrong type, an unreadable time, a state that is not active) is listed in
/// [`TaskList::unreadable`].
pub(crate) fn task_list(value: Value, zone: &HubZone) -> Result<TaskList, String> {
    exports(value, zone, true)
}

/// Reads a `client.get_tasks` result of tasks in any state (the task flow's fetch by ids), as
/// [`task_list`] does.
pub(crate) fn any_tasks(value: Value, zone: &HubZone) -> Result<TaskList, String> {
    exports(value, zone, false)
}

fn exports(value: Value, zone: &HubZone, active_only: bool) -> Result<TaskList, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "the result is {}, not an array of tasks",
            kind(&value)
        ));
    };
    let mut list = TaskList::default();
    for (index, item) in items.into_iter().enumerate() {
        match task_export(&item, zone, active_only) {
            Ok(task) => list.tasks.push(task),
            Err((Some(id), why)) => list.unreadable.push(format!("task {id}: {why}")),
            Err((None, why)) => list.unreadable.push(format!("task [{index}]: {why}")),
        }
    }
    Ok(list)
}

/// One flat task export; the error carries the task id when it could be read.
fn task_export(
    item: &Value,
    zone: &HubZone,
    active_only: bool,
) -> Result<TaskExport, (Option<i64>, String)> {
    let Value::Struct(members) = item else {
        return Err((None, format!("{} instead of a struct", kind(item))));
    };
    let fields = Fields(members);
    let id = fields.integer("id").map_err(|why| (None, why))?;
    let read = || -> Result<TaskExport, String> {
        let code = fields.integer("state")?;
        let state = TaskState::from_code(code)
            .ok_or_else(|| format!("state {code} is not a kobo task state"))?;
        if active_only && !TaskState::ACTIVE.contains(&state) {
            return Err(format!(
                "state {code} ({}) is not an active state (the hub ignored the state filter?)",
                state.name()
            ));
        }
        let time = |field: &str| datetime(field, fields.get(field)?, zone);
        Ok(TaskExport {
            id,
            state,
            worker: fields.optional_integer("worker")?,
            arch: fields.integer("arch")?,
            channel: fields.integer("channel")?,
            method: fields.string("method")?,
            created: time("dt_created")?
                .ok_or_else(|| Fields::wrong("dt_created", &Value::Nil, "a string"))?,
            started: if fields.0.contains_key("dt_started") {
                time("dt_started")?
            } else {
                None
            },
            finished: if fields.0.contains_key("dt_finished") {
                time("dt_finished")?
            } else {
                None
            },
        })
    };
    read().map_err(|why| (Some(id), why))
}

/// A kobo datetime field (`YYYY-MM-DD HH:MM:SS`, a `dateTime.iso8601` too, or nil), naive in `zone`, as
/// an instant.
fn datetime(field: &str, value: &Value, zone: &HubZone) -> Result<Option<Micros>, String> {
    match value {
        Value::Nil => Ok(None),
        Value::String(text) => instant_from_text(Some(text), zone, field),
        Value::DateTime(dt) => datetime_seconds(dt)
            .map(|seconds| Some(zone.instant(seconds * 1_000_000)))
            .ok_or_else(|| format!("{field} {dt} is not a valid date and time")),
        other => Err(Fields::wrong(field, other, "a string")),
    }
}

/// One `client.task_info` call to make: the task, and the arch and channel it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub task: i64,
    pub arch: i64,
    pub channel: i64,
}

/// The tasks to ask `client.task_info` for so that every arch and channel id in `tasks` gets a name: one
/// task per id the directory lacks, fewer where one task carries an unknown arch and an unknown channel.
/// Tasks are taken in id order, so the choice does not depend on the order of the hub's answer.
pub(crate) fn lookups<'a>(
    tasks: impl IntoIterator<Item = &'a TaskExport>,
    directory: &Directory,
) -> Vec<Lookup> {
    let mut by_id: Vec<&TaskExport> = tasks.into_iter().collect();
    by_id.sort_by_key(|t| t.id);
    let mut arches: BTreeSet<i64> = BTreeSet::new();
    let mut channels: BTreeSet<i64> = BTreeSet::new();
    let mut out = Vec::new();
    for task in by_id {
        let arch_needed =
            !directory.arches.contains_key(&task.arch) && !arches.contains(&task.arch);
        let channel_needed =
            !directory.channels.contains_key(&task.channel) && !channels.contains(&task.channel);
        if arch_needed || channel_needed {
            arches.insert(task.arch);
            channels.insert(task.channel);
            out.push(Lookup {
                task: task.id,
                arch: task.arch,
                channel: task.channel,
            });
        }
    }
    out
}

/// The aggregates of `list` with the names of `directory`, and the warnings for what was left out.
/// `failed` holds, by task id, why a `client.task_info` lookup of [`lookups`] gave no names.
pub(crate) fn summarise(
    list: &TaskList,
    directory: &Directory,
    lookups: &[Lookup],
    failed: &BTreeMap<i64, String>,
) -> (TaskSummary, Vec<String>) {
    let mut groups: BTreeMap<(TaskState, &str, &str, &str), (i64, Micros)> = BTreeMap::new();
    let mut per_worker: BTreeMap<(&str, TaskState), i64> = BTreeMap::new();
    // Tasks left out, by the id that has no name.
    let mut unnamed_arches: BTreeMap<i64, i64> = BTreeMap::new();
    let mut unnamed_channels: BTreeMap<i64, i64> = BTreeMap::new();
    let mut unknown_workers: BTreeMap<i64, i64> = BTreeMap::new();
    for task in &list.tasks {
        // Per worker, as the SQL sources count: whatever the arch and channel.
        if matches!(task.state, TaskState::Assigned | TaskState::Open)
            && let Some(worker) = task.worker
        {
            match directory.workers.get(&worker) {
                Some(name) => *per_worker.entry((name, task.state)).or_default() += 1,
                None => *unknown_workers.entry(worker).or_default() += 1,
            }
        }
        let arch = directory.arches.get(&task.arch);
        let channel = directory.channels.get(&task.channel);
        if arch.is_none() {
            *unnamed_arches.entry(task.arch).or_default() += 1;
        }
        if channel.is_none() {
            *unnamed_channels.entry(task.channel).or_default() += 1;
        }
        if let (Some(arch), Some(channel)) = (arch, channel) {
            let entry = groups
                .entry((task.state, arch, channel, task.method.as_str()))
                .or_insert((0, task.created));
            entry.0 += 1;
            entry.1 = entry.1.min(task.created);
        }
    }

    let mut warnings = Vec::new();
    if !list.unreadable.is_empty() {
        warnings.push(sentence(format!(
            "{TASK_WARNING_PREFIX} {} task export(s) of client.get_tasks are left out because they cannot be \
             read: {}",
            list.unreadable.len(),
            examples(&list.unreadable)
        )));
    }
    for (what, unnamed) in [("arch", &unnamed_arches), ("channel", &unnamed_channels)] {
        for (&id, &count) in unnamed {
            let lookup = lookups.iter().find(|l| match what {
                "arch" => l.arch == id,
                _ => l.channel == id,
            });
            let why = match lookup {
                Some(lookup) => match failed.get(&lookup.task) {
                    Some(why) => format!("client.task_info({}) {why}", lookup.task),
                    None => format!("client.task_info({}) did not name it", lookup.task),
                },
                None => "it was not looked up".to_string(),
            };
            warnings.push(sentence(format!(
                "{TASK_WARNING_PREFIX} {count} active task(s) with {what} id {id} are left out: no worker \
                 accepts that {what}, and {why}"
            )));
        }
    }
    if !unknown_workers.is_empty() {
        let count: i64 = unknown_workers.values().sum();
        let ids: Vec<String> = unknown_workers.keys().map(i64::to_string).collect();
        warnings.push(format!(
            "{TASK_WARNING_PREFIX} {count} ASSIGNED or OPEN task(s) of worker id(s) {} are not counted per \
             worker: no worker of this scrape has that id.",
            examples(&ids)
        ));
    }

    let counts = groups
        .into_iter()
        .map(
            |((state, arch, channel, method), (count, oldest))| TaskCount {
                group: TaskGroup {
                    state,
                    arch: arch.to_string(),
                    channel: channel.to_string(),
                    count,
                    oldest_created: Some(oldest as f64 / 1e6),
                },
                method: method.to_string(),
            },
        )
        .collect();
    let per_worker = per_worker
        .into_iter()
        .map(|((worker, state), count)| WorkerTaskCount {
            worker: worker.to_string(),
            state,
            count,
        })
        .collect();
    (TaskSummary::from_counts(counts, per_worker), warnings)
}

/// The warnings of a task-flow read ([`crate::flow`]): exports it could not read, ids that left the active
/// set and did not answer, tasks whose channel has no name.
pub(crate) fn flow_warnings(
    unreadable: &[String],
    vanished: &[i64],
    unnamed: usize,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if !unreadable.is_empty() {
        warnings.push(sentence(format!(
            "{TASK_WARNING_PREFIX} {} task export(s) of the task flow's client.get_tasks are not counted \
             because they cannot be read: {}",
            unreadable.len(),
            examples(unreadable)
        )));
    }
    if !vanished.is_empty() {
        let ids: Vec<String> = vanished.iter().map(i64::to_string).collect();
        warnings.push(format!(
            "{TASK_WARNING_PREFIX} {} task(s) left the active set and are gone from client.get_tasks \
             (archived or deleted), so their end is not counted: {}.",
            vanished.len(),
            examples(&ids)
        ));
    }
    if unnamed > 0 {
        warnings.push(format!(
            "{TASK_WARNING_PREFIX} {unnamed} task(s) that started or finished are not counted: their \
             channel has no name."
        ));
    }
    warnings
}

/// The first [`EXAMPLES`] items, `; `-separated, with how many more there are.
fn examples(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(EXAMPLES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > EXAMPLES {
        text.push_str(&format!(" (and {} more)", items.len() - EXAMPLES));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use kobo_backend_api::MethodCount;

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn st(members: Vec<(&str, Value)>) -> Value {
        Value::Struct(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// A flat export as `client.get_tasks` gives it (the fields the aggregates read, and a few others).
    fn flat(
        id: i64,
        state: i64,
        worker: Option<i64>,
        arch: i64,
        channel: i64,
        created: &str,
    ) -> Value {
        st(vec![
            ("id", Value::Long(id)),
            ("owner", s("carol")),
            (
                "worker",
                worker.map_or(Value::Nil, |w| Value::Integer(w as i32)),
            ),
            ("parent", Value::Nil),
            ("state", Value::Integer(state as i32)),
            ("arch", Value::Integer(arch as i32)),
            ("channel", Value::Integer(channel as i32)),
            ("method", s("Build")),
            ("dt_created", s(created)),
            ("dt_finished", Value::Nil),
        ])
    }

    fn directory() -> Directory {
        let mut d = Directory::default();
        d.learn_worker(
            Some(2),
            "worker-0002.example.com",
            &[(1, "noarch".into()), (2, "x86_64".into())],
            &[(1, "default".into()), (3, "scratch".into())],
        );
        d.learn_worker(
            Some(4),
            "worker-0004.example.com",
            &[(1, "other".into())],
            &[],
        );
        d
    }

    #[test]
    fn task_lists_are_read_and_bad_exports_listed() {
        let list = task_list_utc(Value::Array(vec![
            flat(37, 2, Some(2), 2, 3, "2025-03-12 17:24:19"),
            flat(5, 0, None, 3, 2, "2024-07-22 03:00:55"),
            flat(9, 3, Some(2), 2, 3, "2025-03-12 17:24:19"),
            flat(10, 0, None, 2, 3, "soon"),
            st(vec![("id", s("11"))]),
            flat(12, 0, None, 2, 3, "2025-03-12 17:24:19").into_struct_without("arch"),
            Value::Nil,
        ]))
        .unwrap();
        assert_eq!(
            list.tasks,
            [
                TaskExport {
                    id: 37,
                    state: TaskState::Open,
                    worker: Some(2),
                    arch: 2,
                    channel: 3,
                    method: "Build".into(),
                    created: 1_741_800_259_000_000,
                    started: None,
                    finished: None,
                },
                TaskExport {
                    id: 5,
                    state: TaskState::Free,
                    worker: None,
                    arch: 3,
                    channel: 2,
                    method: "Build".into(),
                    created: 1_721_617_255_000_000,
                    started: None,
                    finished: None,
                }
            ]
        );
        assert_eq!(
            list.unreadable,
            [
                "task 9: state 3 (CLOSED) is not an active state (the hub ignored the state filter?)",
                "task 10: dt_created \"soon\" is not a date and time",
                "task [4]: the field id is a string, not an integer",
                "task 12: the field arch is missing",
                "task [6]: nil instead of a struct",
            ]
        );
        assert!(
            task_list_utc(Value::Nil)
                .unwrap_err()
                .contains("nil, not an array")
        );
    }

    fn task_list_utc(value: Value) -> Result<TaskList, String> {
        task_list(value, &HubZone::utc())
    }

    trait Without {
        fn into_struct_without(self, field: &str) -> Value;
    }

    impl Without for Value {
        fn into_struct_without(self, field: &str) -> Value {
            let Value::Struct(mut members) = self else {
                return self;
            };
            members.remove(field);
            Value::Struct(members)
        }
    }

    #[test]
    fn one_lookup_per_unknown_id_in_task_id_order() {
        let d = directory();
        let task = |id, arch, channel| TaskExport {
            id,
            state: TaskState::Free,
            worker: None,
            arch,
            channel,
            method: "Build".into(),
            created: 0,
            started: None,
            finished: None,
        };
        // Unknown: arches 6 and 4, channels 2 and 4.
        let tasks = [
            task(40, 6, 4),
            task(13, 6, 1),
            task(2, 6, 2),
            task(34, 4, 4),
            task(17, 1, 3),
            task(50, 4, 2),
        ];
        let found = lookups(&tasks, &d);
        assert_eq!(
            found,
            [
                Lookup {
                    task: 2,
                    arch: 6,
                    channel: 2
                },
                Lookup {
                    task: 34,
                    arch: 4,
                    channel: 4
                }
            ]
        );
        assert!(lookups(&[task(1, 1, 1), task(2, 2, 3)], &d).is_empty());
    }

    #[test]
    fn task_info_names_arches_and_channels() {
        let mut d = directory();
        let answer = st(vec![
            ("id", Value::Integer(6)),
            ("worker", Value::Nil),
            (
                "arch",
                st(vec![
                    ("id", Value::Integer(6)),
                    ("name", s("i386")),
                    ("pretty_name", s("i386")),
                ]),
            ),
            (
                "channel",
                st(vec![("id", Value::Integer(1)), ("name", s("renamed"))]),
            ),
        ]);
        d.learn_from_task_info(6, answer.clone()).unwrap();
        assert_eq!(d.arches[&6], "i386");
        // What the worker exports said stays.
        assert_eq!(d.channels[&1], "default");
        assert_eq!(
            d.clone().learn_from_task_info(7, answer).unwrap_err(),
            "it returned task 6 instead"
        );
        let flat_answer = st(vec![
            ("id", Value::Integer(6)),
            ("arch", Value::Integer(6)),
            ("channel", Value::Integer(1)),
        ]);
        assert_eq!(
            d.learn_from_task_info(6, flat_answer).unwrap_err(),
            "the field arch is an integer, not a struct (flat=False)"
        );
        assert_eq!(
            d.learn_from_task_info(6, Value::Nil).unwrap_err(),
            "it returned nil, not a struct"
        );
        let nameless = st(vec![
            ("id", Value::Integer(6)),
            ("arch", st(vec![("id", Value::Integer(6))])),
            (
                "channel",
                st(vec![("id", Value::Integer(1)), ("name", s("x"))]),
            ),
        ]);
        assert_eq!(
            d.learn_from_task_info(6, nameless).unwrap_err(),
            "arch: the field name is missing"
        );
    }

    #[test]
    fn aggregates_group_by_names_and_warn_about_what_is_left_out() {
        let mut d = directory();
        // Channel 5 is another channel named "default": one group with channel 1, as in SQL.
        d.channels.insert(5, "default".into());
        let task = |id, state, worker, arch, channel, created| TaskExport {
            id,
            state,
            worker,
            arch,
            channel,
            // Odd ids are builds, even ones composes: the counts by method cross the groups.
            method: if id % 2 == 1 { "Build" } else { "Compose" }.to_string(),
            created: i64::from(created) * 1_000_000,
            started: None,
            finished: None,
        };
        let list = TaskList {
            tasks: vec![
                task(1, TaskState::Free, None, 1, 1, 300),
                task(2, TaskState::Free, None, 1, 5, 100),
                task(3, TaskState::Free, None, 2, 1, 50),
                task(4, TaskState::Open, Some(2), 1, 1, 10),
                task(5, TaskState::Open, Some(2), 6, 1, 20),
                task(6, TaskState::Assigned, Some(4), 1, 3, 30),
                task(7, TaskState::Assigned, Some(9), 1, 3, 40),
                task(8, TaskState::Created, None, 6, 8, 40),
                task(9, TaskState::Open, None, 1, 1, 5),
            ],
            unreadable: vec!["task 10: the field arch is missing".into()],
        };
        let found = lookups(&list.tasks, &d);
        assert_eq!(
            found,
            [
                Lookup {
                    task: 5,
                    arch: 6,
                    channel: 1
                },
                Lookup {
                    task: 8,
                    arch: 6,
                    channel: 8
                }
            ]
        );
        let failed: BTreeMap<i64, String> = [
            (
                5,
                "answered fault 1: DoesNotExist: Task matching query does not exist.".to_string(),
            ),
            (
                8,
                "answered fault 1: DoesNotExist: Task matching query does not exist.".to_string(),
            ),
        ]
        .into();
        let (summary, warnings) = summarise(&list, &d, &found, &failed);
        let group = |state, arch: &str, channel: &str, count, oldest| TaskGroup {
            state,
            arch: arch.into(),
            channel: channel.into(),
            count,
            oldest_created: Some(oldest),
        };
        assert_eq!(
            summary.groups,
            [
                group(TaskState::Free, "noarch", "default", 2, 100.0),
                group(TaskState::Free, "x86_64", "default", 1, 50.0),
                group(TaskState::Assigned, "noarch", "scratch", 2, 30.0),
                group(TaskState::Open, "noarch", "default", 2, 5.0),
            ]
        );
        let method = |state, method: &str, count| MethodCount {
            state,
            method: method.into(),
            count,
        };
        assert_eq!(
            summary.by_method,
            [
                method(TaskState::Free, "Build", 2),
                method(TaskState::Free, "Compose", 1),
                method(TaskState::Assigned, "Build", 1),
                method(TaskState::Assigned, "Compose", 1),
                method(TaskState::Open, "Build", 1),
                method(TaskState::Open, "Compose", 1),
            ]
        );
        let count = |worker: &str, state, count| WorkerTaskCount {
            worker: worker.into(),
            state,
            count,
        };
        assert_eq!(
            summary.per_worker,
            [
                count("worker-0002.example.com", TaskState::Open, 2),
                count("worker-0004.example.com", TaskState::Assigned, 1),
            ]
        );
        assert_eq!(
            warnings,
            [
                "Task metrics: 1 task export(s) of client.get_tasks are left out because they cannot be read: \
                 task 10: the field arch is missing.",
                "Task metrics: 2 active task(s) with arch id 6 are left out: no worker accepts that arch, and \
                 client.task_info(5) answered fault 1: DoesNotExist: Task matching query does not exist.",
                "Task metrics: 1 active task(s) with channel id 8 are left out: no worker accepts that \
                 channel, and client.task_info(8) answered fault 1: DoesNotExist: Task matching query does \
                 not exist.",
                "Task metrics: 1 ASSIGNED or OPEN task(s) of worker id(s) 9 are not counted per worker: no \
                 worker of this scrape has that id.",
            ]
        );
        assert!(warnings.iter().all(|w| w.starts_with(TASK_WARNING_PREFIX)));
    }

    #[test]
    fn a_task_without_a_method_is_unreadable() {
        let list = task_list_utc(Value::Array(vec![
            flat(3, 0, None, 1, 1, "2025-03-12 17:24:19").into_struct_without("method"),
        ]))
        .unwrap();
        assert_eq!(list.tasks, []);
        assert_eq!(list.unreadable, ["task 3: the field method is missing"]);
    }

    #[test]
    fn long_lists_are_cut_in_warnings() {
        let items: Vec<String> = (1..=5).map(|i| format!("task {i}")).collect();
        assert_eq!(examples(&items), "task 1; task 2; task 3 (and 2 more)");
        assert_eq!(examples(&items[..2]), "task 1; task 2");
    }

    #[test]
    fn datetimes() {
        assert_eq!(
            datetime("dt_created", &s("2024-07-29 10:12:10"), &HubZone::utc()),
            Ok(Some(1_722_247_930_000_000))
        );
        let dt: dxr::DateTime = "20240729T10:12:10".parse().unwrap();
        assert_eq!(
            datetime("dt_started", &Value::DateTime(dt), &HubZone::utc()),
            Ok(Some(1_722_247_930_000_000))
        );
        assert_eq!(
            datetime("dt_finished", &Value::Nil, &HubZone::utc()),
            Ok(None)
        );
        assert_eq!(
            datetime("dt_finished", &Value::Integer(3), &HubZone::utc()).unwrap_err(),
            "the field dt_finished is an integer, not a string"
        );
        // A created time is required; times are read in the hub's zone.
        let no_created = st(vec![
            ("id", Value::Integer(3)),
            ("state", Value::Integer(0)),
            ("worker", Value::Nil),
            ("arch", Value::Integer(1)),
            ("channel", Value::Integer(1)),
            ("method", s("Build")),
            ("dt_created", Value::Nil),
        ]);
        assert_eq!(
            task_list_utc(Value::Array(vec![no_created]))
                .unwrap()
                .unreadable,
            ["task 3: the field dt_created is nil, not a string"]
        );
        let prague = HubZone::named("Europe/Prague").unwrap();
        let list = task_list(
            Value::Array(vec![flat(4, 0, None, 1, 1, "2024-07-29 10:12:10")]),
            &prague,
        )
        .unwrap();
        assert_eq!(
            list.tasks[0].created, 1_722_240_730_000_000,
            "CEST is UTC+2"
        );
    }
}
