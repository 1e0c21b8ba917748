//! Task metrics over XML-RPC (a collection with `tasks` asked for): the fixture's `hub_task` rows answered by
//! `client.get_tasks` and `client.task_info` in kobo's wire format ([`TaskHub`]), against the captures and
//! the SQLite source.

use super::*;
use kobo_testkit::CollectExt;

use std::sync::Arc;
use std::time::Instant;

use kobo_backend_xmlrpc::ALLOWED_METHODS;
use kobo_exporter::api::{TaskGroup, TaskState, TaskSummary, WorkerTaskCount};
use kobo_exporter::collector::{CollectorOptions, HubCollector};
use kobo_testkit::exposition::parse;

const TASKS_OPEN: &str = "client.get_tasks([], [OPEN])";
const TASKS_ONE: &str = "client.get_tasks([id]) - one task, flat export";
const TASK_INFO: &str = "client.task_info(id) - flat=False by default";
const TASK_INFO_MISSING: &str = "client.task_info(missing id) - fault";
pub(super) const TASK_MISSING: &str = "DoesNotExist: Task matching query does not exist.";

/// A `hub_task` row, with what `Task.export()` reads from the rows it refers to.
#[derive(Debug, Clone)]
pub(super) struct TaskRow {
    id: i64,
    archive: bool,
    /// The owner's user name.
    owner: String,
    worker: Option<i64>,
    parent: Option<i64>,
    state: i64,
    label: String,
    method: String,
    args: Py,
    result: String,
    exclusive: bool,
    arch: i64,
    channel: i64,
    timeout: Option<i64>,
    waiting: bool,
    awaited: bool,
    /// `YYYY-MM-DD HH:MM:SS`, as kobo formats it.
    dt_created: String,
    dt_started: Option<String>,
    dt_finished: Option<String>,
    priority: i64,
    weight: i64,
    resubmitted_by: Option<String>,
    resubmitted_from: Option<i64>,
}

/// The fixture hub's workers, tasks, arches and channels: what its task calls answer from.
#[derive(Debug, Clone)]
pub(super) struct TaskHub {
    pub(super) exports: Vec<Export>,
    pub(super) tasks: Vec<TaskRow>,
    /// id -> (name, pretty_name).
    arches: BTreeMap<i64, (String, String)>,
    channels: BTreeMap<i64, String>,
}

impl TaskHub {
    /// The fixture hub, from the fixture database.
    pub(super) fn fixture() -> TaskHub {
        let (_dir, path) = common::fixture_sqlite();
        let conn = rusqlite::Connection::open(&path).expect("open");
        let arches = conn
            .prepare("SELECT id, name, pretty_name FROM hub_arch")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let channels = conn
            .prepare("SELECT id, name FROM hub_channel")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let tasks = conn
            .prepare(
                "SELECT t.id, t.archive, o.username, t.worker_id, t.parent_id, t.state, t.label, t.method, \
                 t.args, t.result, t.exclusive, t.arch_id, t.channel_id, t.timeout, t.waiting, t.awaited, \
                 t.dt_created, t.dt_started, t.dt_finished, t.priority, t.weight, r.username, \
                 t.resubmitted_from_id \
                 FROM hub_task t JOIN auth_user o ON o.id = t.owner_id \
                 LEFT JOIN auth_user r ON r.id = t.resubmitted_by_id ORDER BY t.id",
            )
            .expect("prepare")
            .query_map([], |r| {
                Ok(TaskRow {
                    id: r.get(0)?,
                    archive: r.get(1)?,
                    owner: r.get(2)?,
                    worker: r.get(3)?,
                    parent: r.get(4)?,
                    state: r.get(5)?,
                    label: r.get(6)?,
                    method: r.get(7)?,
                    args: json_object(&r.get::<_, String>(8)?),
                    result: r.get(9)?,
                    exclusive: r.get(10)?,
                    arch: r.get(11)?,
                    channel: r.get(12)?,
                    timeout: r.get(13)?,
                    waiting: r.get(14)?,
                    awaited: r.get(15)?,
                    dt_created: r.get(16)?,
                    dt_started: r.get(17)?,
                    dt_finished: r.get(18)?,
                    priority: r.get(19)?,
                    weight: r.get(20)?,
                    resubmitted_by: r.get(21)?,
                    resubmitted_from: r.get(22)?,
                })
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        TaskHub {
            exports: fixture_exports(),
            tasks,
            arches,
            channels,
        }
    }

    /// The name of channel `id`.
    pub(super) fn channel_name(&self, id: i64) -> String {
        self.channels[&id].clone()
    }

    /// The task as kobo's default manager sees it: archived tasks do not exist.
    pub(super) fn task(&self, id: i64) -> Option<&TaskRow> {
        self.tasks.iter().find(|t| t.id == id && !t.archive)
    }

    /// `client.get_tasks(ids, states)`: the flat exports of the non-archived tasks with these ids (all when
    /// empty) in these states (all when empty), ordered by id descending (`Task.Meta.ordering`).
    pub(super) fn get_tasks(&self, ids: &[i64], states: &[i64]) -> Py {
        let mut tasks: Vec<&TaskRow> = self
            .tasks
            .iter()
            .filter(|t| !t.archive)
            .filter(|t| ids.is_empty() || ids.contains(&t.id))
            .filter(|t| states.is_empty() || states.contains(&t.state))
            .collect();
        tasks.sort_by_key(|t| std::cmp::Reverse(t.id));
        Py::List(tasks.into_iter().map(|t| self.export(t, true)).collect())
    }

    /// `Task.export(flat)`: ids for the worker, parent, arch and channel when flat, their exports otherwise
    /// (the parent's flat), and then the ids of the non-archived subtasks too.
    pub(super) fn export(&self, task: &TaskRow, flat: bool) -> Py {
        let id_or_none = |id: Option<i64>| id.map_or(Py::None, Py::Int);
        let text = |t: &Option<String>| t.clone().map_or(Py::None, Py::Str);
        let (worker, parent, arch, channel) = if flat {
            (
                id_or_none(task.worker),
                id_or_none(task.parent),
                Py::Int(task.arch),
                Py::Int(task.channel),
            )
        } else {
            let (name, pretty) = &self.arches[&task.arch];
            (
                task.worker.map_or(Py::None, |id| {
                    self.exports
                        .iter()
                        .find(|e| e.id == id)
                        .expect("the task's worker")
                        .py()
                }),
                task.parent.map_or(Py::None, |id| {
                    self.export(self.task(id).expect("the parent task"), true)
                }),
                Py::Dict(vec![
                    ("id", Py::Int(task.arch)),
                    ("name", Py::Str(name.clone())),
                    ("pretty_name", Py::Str(pretty.clone())),
                ]),
                Py::Dict(vec![
                    ("id", Py::Int(task.channel)),
                    ("name", Py::Str(self.channels[&task.channel].clone())),
                ]),
            )
        };
        let mut members = vec![
            ("id", Py::Int(task.id)),
            ("owner", Py::Str(task.owner.clone())),
            ("worker", worker),
            ("parent", parent),
            ("state", Py::Int(task.state)),
            ("label", Py::Str(task.label.clone())),
            ("method", Py::Str(task.method.clone())),
            ("args", task.args.clone()),
            ("result", Py::Str(task.result.clone())),
            ("exclusive", Py::Bool(task.exclusive)),
            ("arch", arch),
            ("channel", channel),
            ("timeout", id_or_none(task.timeout)),
            ("waiting", Py::Bool(task.waiting)),
            ("awaited", Py::Bool(task.awaited)),
            ("dt_created", Py::Str(task.dt_created.clone())),
            ("dt_started", text(&task.dt_started)),
            ("dt_finished", text(&task.dt_finished)),
            ("priority", Py::Int(task.priority)),
            ("weight", Py::Int(task.weight)),
            ("resubmitted_by", text(&task.resubmitted_by)),
            ("resubmitted_from", id_or_none(task.resubmitted_from)),
            (
                "state_label",
                Py::Str(
                    TaskState::from_code(task.state)
                        .expect("a task state")
                        .name()
                        .to_string(),
                ),
            ),
            ("is_finished", Py::Bool((3..=7).contains(&task.state))),
            ("is_failed", Py::Bool((4..=7).contains(&task.state))),
        ];
        if !flat {
            let mut subtasks: Vec<i64> = self
                .tasks
                .iter()
                .filter(|t| t.parent == Some(task.id) && !t.archive)
                .map(|t| t.id)
                .collect();
            subtasks.sort_by_key(|id| std::cmp::Reverse(*id));
            members.push((
                "subtask_id_list",
                Py::List(subtasks.into_iter().map(Py::Int).collect()),
            ));
        }
        Py::Dict(members)
    }
}

/// A task's `args` (a flat JSON object of strings, integers, booleans and nulls) as Python has it, keys in
/// their order. serde_json (without `preserve_order`) sorts the keys: the fixture's are sorted already,
/// which is checked.
fn json_object(text: &str) -> Py {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("a JSON object {text:?}: {e}"));
    let at: Vec<usize> = object
        .keys()
        .map(|key| text.find(&format!("\"{key}\"")).expect("the key"))
        .collect();
    assert!(at.is_sorted(), "the keys of {text:?} in sorted order");
    Py::Map(
        object
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    serde_json::Value::String(s) => Py::Str(s),
                    serde_json::Value::Bool(b) => Py::Bool(b),
                    serde_json::Value::Null => Py::None,
                    serde_json::Value::Number(n) => Py::Int(n.as_i64().expect("an integer")),
                    other => panic!("a flat JSON value: {other}"),
                };
                (key, value)
            })
            .collect(),
    )
}

/// The fixture hub, with `extra` tasks added, read with its task aggregates by the SQLite source.
pub(super) async fn sqlite_with_tasks(extra: &[TaskRow]) -> HubSnapshot {
    let (_dir, path) = common::fixture_sqlite();
    let mut conn = rusqlite::Connection::open(&path).expect("open");
    let transaction = conn.transaction().expect("transaction");
    for t in extra {
        transaction
            .execute(
                "INSERT INTO hub_task (id, archive, state, label, exclusive, method, args, result, comment, \
                 timeout, waiting, awaited, dt_created, dt_started, dt_finished, priority, weight, \
                 subtask_count, arch_id, channel_id, owner_id, parent_id, resubmitted_by_id, \
                 resubmitted_from_id, worker_id, canceled_by_id) \
                 VALUES (?1, ?2, ?3, ?4, 0, 'MockBuild', '{}', '', NULL, NULL, 0, 0, ?5, NULL, NULL, 10, 1, 0, \
                 ?6, ?7, 2, NULL, NULL, NULL, ?8, NULL)",
                rusqlite::params![
                    t.id,
                    t.archive,
                    t.state,
                    t.label,
                    t.dt_created,
                    t.arch,
                    t.channel,
                    t.worker
                ],
            )
            .expect("insert a task");
    }
    transaction.commit().expect("commit");
    drop(conn);
    let workers = common::fixture_worker_dir();
    let source =
        kobo_backend_sqlite::open(&path, Some(WorkerDir::new(workers.path()))).expect("open");
    source.collect_tasks().await.expect("collect with tasks")
}

/// `count` more tasks for the fixture hub (ids from 1001): every state, every arch and channel, some
/// archived, some on workers, creation times spread over a month.
pub(super) fn bulk_tasks(count: i64) -> Vec<TaskRow> {
    (0..count)
        .map(|i| {
            let id = 1001 + i;
            let state = [0, 1, 2, 8, 3, 5][(i % 6) as usize];
            TaskRow {
                id,
                archive: i % 7 == 0,
                owner: "alice".into(),
                worker: matches!(state, 1 | 2 | 3 | 5).then_some(1 + i % 5),
                parent: None,
                state,
                label: format!("bulk {id}"),
                method: "MockBuild".into(),
                args: Py::Map(vec![]),
                result: String::new(),
                exclusive: false,
                arch: 1 + i % 6,
                channel: 1 + (i / 6) % 4,
                timeout: None,
                waiting: false,
                awaited: false,
                dt_created: format!(
                    "2025-07-{:02} {:02}:{:02}:{:02}",
                    1 + (i * 13) % 28,
                    (i * 5) % 24,
                    (i * 7) % 60,
                    (i * 11) % 60
                ),
                dt_started: None,
                dt_finished: None,
                priority: 10,
                weight: 1,
                resubmitted_by: None,
                resubmitted_from: None,
            }
        })
        .collect()
}

/// A task summary's records in a fixed order, for comparing sources.
fn sorted_summary(summary: &TaskSummary) -> (Vec<TaskGroup>, Vec<WorkerTaskCount>) {
    let mut groups = summary.groups.clone();
    groups.sort_by(|a, b| (a.state, &a.arch, &a.channel).cmp(&(b.state, &b.arch, &b.channel)));
    let mut per_worker = summary.per_worker.clone();
    per_worker.sort_by(|a, b| (&a.worker, a.state).cmp(&(&b.worker, b.state)));
    (groups, per_worker)
}

/// The task ids of the inner calls of a multicall request, each of `method` and read by `ids` from its
/// parameters, in order.
fn inner_ids(call: &Call, method: &str, ids: impl Fn(&[Value]) -> Option<Vec<i64>>) -> Vec<i64> {
    assert_eq!(call.method, "system.multicall");
    call.inner_calls()
        .iter()
        .flat_map(|inner| {
            assert_eq!(inner.method, method);
            ids(&inner.params).unwrap_or_else(|| panic!("{inner:?}"))
        })
        .collect()
}

/// The task ids of the inner `client.get_tasks(ids, [])` calls of a task-flow multicall, in order.
fn flow_ids(call: &Call) -> Vec<i64> {
    inner_ids(call, "client.get_tasks", |params| match params {
        [ids, states] if ints(states).is_empty() => Some(ints(ids)),
        _ => None,
    })
}

/// The task ids of the inner `client.task_info` calls of a multicall request.
fn task_info_ids(call: &Call) -> Vec<i64> {
    inner_ids(call, "client.task_info", |params| match params {
        [id] => Some(vec![int(id).expect("a task id")]),
        _ => None,
    })
}

#[test]
fn the_marshaller_reproduces_the_task_captures() {
    let hub = TaskHub::fixture();
    let six = hub.task(6).expect("task 6");
    assert_eq!(
        py::response(&hub.get_tasks(&[6], &[])),
        text(&capture(TASKS_ONE))
    );
    assert_eq!(
        py::response(&hub.export(six, false)),
        text(&capture(TASK_INFO))
    );
    assert_eq!(
        py::fault(1, TASK_MISSING),
        text(&capture(TASK_INFO_MISSING))
    );
    // `client.get_tasks([], [OPEN])` is captured only as the decoded result: the same tasks, in the same
    // order (by id, descending), as the fixture's non-archived OPEN tasks.
    let samples = kobo_testkit::data::read("xmlrpc-samples.md");
    let section = samples
        .split("\n### ")
        .find(|s| s.starts_with(TASKS_OPEN))
        .expect("the get_tasks([], [OPEN]) section");
    let python = section
        .split("```python\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("its result");
    let captured: Vec<i64> = python
        .split("{'id': ")
        .skip(1)
        .map(|s| {
            s.split(',')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a task id")
        })
        .collect();
    let Py::List(open) = hub.get_tasks(&[], &[2]) else {
        panic!("a list")
    };
    let ours: Vec<i64> = open
        .iter()
        .map(|task| match task {
            Py::Dict(members) => match members.first() {
                Some(("id", Py::Int(id))) => *id,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(captured, [37, 34, 13, 12, 6]);
    assert_eq!(ours, captured);
    // Every field the capture shows for task 37, as the marshaller writes it.
    let body = py::response(&Py::List(open[..1].to_vec()));
    for expected in [
        "<name>owner</name>\n<value><string>carol</string></value>",
        "<name>parent</name>\n<value><int>6</int></value>",
        "<name>arch</name>\n<value><int>2</int></value>",
        "<name>channel</name>\n<value><int>3</int></value>",
        "<name>awaited</name>\n<value><boolean>1</boolean></value>",
        "<name>dt_created</name>\n<value><string>2025-03-12 17:24:19</string></value>",
        "<name>priority</name>\n<value><int>20</int></value>",
    ] {
        assert!(body.contains(expected), "{expected} in {body}");
    }
}

#[tokio::test]
async fn task_metrics_of_the_fixture_hub_equal_the_sqlite_sources() {
    let hub = hub(fixture_handler(Quirks::default())).await;
    let source = source(&hub);
    let snapshot = source.collect_tasks().await.expect("collect with tasks");
    assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
    let timings: Vec<&str> = snapshot
        .timings
        .iter()
        .map(|(part, _)| part.name())
        .collect();
    assert_eq!(timings, ["workers", "tasks"]);

    // The records: the SQLite source's task aggregates, exactly.
    let reference = sqlite_with_tasks(&[]).await;
    let ours = sorted_summary(snapshot.tasks.as_ref().expect("task data"));
    let theirs = sorted_summary(reference.tasks.as_ref().expect("task data"));
    assert_eq!(ours, theirs);
    assert_eq!(ours.0.len(), 10, "every active task is its own group here");

    // The rendering: every family XML-RPC provides equals the SQLite source's, the task and queue families
    // among them; the stranded queues (i386 and ppc64le: no worker serves them) show as 0.
    let text = kobo_exporter::render(&snapshot).expect("render");
    let exposition = parse(&text).expect("our output parses");
    let sqlite =
        parse(&kobo_exporter::render(&reference).expect("render")).expect("SQLite output parses");
    for name in TASK_FAMILIES {
        let family = exposition.families.get(name).expect(name);
        assert!(!family.samples.is_empty(), "{name} has samples");
        assert_eq!(Some(family), sqlite.families.get(name), "family {name}");
    }
    for name in exposition
        .order
        .iter()
        .filter(|n| !exposition.families[*n].samples.is_empty())
    {
        assert_eq!(
            exposition.families.get(name),
            sqlite.families.get(name),
            "family {name}"
        );
    }
    for (arch, channel) in [
        ("i386", "compose"),
        ("i386", "scratch"),
        ("ppc64le", "signing"),
    ] {
        let labels = [("arch", arch), ("channel", channel)];
        assert_eq!(exposition.sample("kobo_queue_workers", &labels), Some(0.0));
    }
    assert_eq!(
        exposition.sample(
            "kobo_tasks_oldest_created_timestamp_seconds",
            &[("state", "FREE"), ("arch", "i386"), ("channel", "signing")]
        ),
        Some(1_743_692_434.0),
        "task 40, created 2025-04-03 15:00:34"
    );
    assert_snapshot(
        "xmlrpc__fixture_with_tasks",
        "the fixture hub read through its XML-RPC API with task metrics (get_tasks and task_info answered in kobo 0.42.0's wire format)",
        &text,
    );

    // The requests: the workers as for a scrape, one get_tasks of the active states, the task flow's
    // baseline (one multicall of get_tasks(ids, []) for the 100 ids above the newest active task), one
    // multicall of task_info for one task of each arch no worker has (i386: task 2, ppc64le: task 34).
    let calls = calls(&hub);
    assert_eq!(
        hub.methods(),
        [
            "system.multicall",
            "system.multicall",
            "client.get_tasks",
            "system.multicall",
            "system.multicall"
        ]
    );
    let newest_active = TaskHub::fixture()
        .tasks
        .iter()
        .filter(|t| !t.archive && [0, 1, 2, 8].contains(&t.state))
        .map(|t| t.id)
        .max()
        .expect("active tasks");
    assert_eq!(
        flow_ids(&calls[3]),
        (newest_active + 1..=newest_active + kobo_backend_xmlrpc::flow::PROBE).collect::<Vec<_>>()
    );
    assert_eq!(
        snapshot.flow,
        Some(Default::default()),
        "a baseline counts nothing"
    );
    let [ids, states] = calls[2].params.as_slice() else {
        panic!("get_tasks(ids, states): {:?}", calls[2])
    };
    assert_eq!((ints(ids), ints(states)), (vec![], vec![0, 1, 2, 8]));
    assert_eq!(task_info_ids(&calls[4]), [2, 34]);
    for call in &calls {
        assert!(ALLOWED_METHODS.contains(&call.method.as_str()));
    }

    // A plain collect reads the workers only: no task call, no task data.
    let plain = source.collect_workers().await.expect("collect");
    assert_eq!(plain.tasks, None);
    assert_eq!(plain.workers, snapshot.workers);
    let timings: Vec<&str> = plain.timings.iter().map(|(part, _)| part.name()).collect();
    assert_eq!(timings, ["workers"]);
    assert_eq!(hub.methods()[5..], ["system.multicall", "system.multicall"]);
}

/// Through the collector, as the exporter runs it: a baseline, then tasks that close, fail and are created,
/// run and time out between two refreshes, each counted once with its wait and run; a refresh with nothing
/// new changes nothing.
#[tokio::test]
async fn the_task_flow_over_xmlrpc_counts_each_lifecycle_once() {
    let live = Arc::new(std::sync::Mutex::new(TaskHub::fixture()));
    let hub = hub(fixture_handler(Quirks {
        live: Some(live.clone()),
        ..Quirks::default()
    }))
    .await;
    let collector = HubCollector::new(
        Arc::new(source(&hub)),
        CollectorOptions {
            task_metrics: true,
            task_refresh_interval: std::time::Duration::ZERO,
            min_scrape_interval: std::time::Duration::ZERO,
            ..CollectorOptions::default()
        },
    );
    let scrape = || async { parse(&collector.scrape(None).await.expect("scrape")).expect("parse") };
    let baseline = scrape().await;
    assert_eq!(baseline.sample("kobo_up", &[]), Some(1.0));
    for name in ["kobo_tasks_finished_total", "kobo_task_run_seconds"] {
        assert!(
            baseline
                .families
                .get(name)
                .is_none_or(|f| f.samples.is_empty()),
            "the baseline counts nothing: {name}"
        );
    }

    let (closed, newest, channel) = {
        let mut tasks = live.lock().expect("tasks");
        // Task 37 (OPEN, ErrataDiffBuild, started 2025-03-12 17:34:19) closes 5 minutes later.
        let task = tasks
            .tasks
            .iter_mut()
            .find(|t| t.id == 37)
            .expect("task 37");
        task.state = 3;
        task.dt_finished = Some("2025-03-12 17:39:19".into());
        let channel = task.channel;
        // A task created, started 90 s later and timed out 1 h after that, all between two refreshes (after
        // every time the baseline read: a task it did not follow counts only from then).
        let newest = tasks.tasks.iter().map(|t| t.id).max().expect("tasks") + 1;
        let mut new = task_clone(&tasks.tasks, 37);
        new.id = newest;
        new.state = 7;
        new.method = "ComposeTask".into();
        new.dt_created = "2026-01-10 08:00:00".into();
        new.dt_started = Some("2026-01-10 08:01:30".into());
        new.dt_finished = Some("2026-01-10 09:01:30".into());
        tasks.tasks.push(new);
        let name = tasks.channel_name(channel);
        (37, newest, name)
    };
    let after = scrape().await;
    fn series<'a>(method: &'a str, channel: &'a str) -> [(&'a str, &'a str); 2] {
        [("method", method), ("channel", channel)]
    }
    let errata = series("ErrataDiffBuild", &channel);
    let compose = series("ComposeTask", &channel);
    for (task, state, [method, channel]) in
        [(closed, "CLOSED", errata), (newest, "TIMEOUT", compose)]
    {
        assert_eq!(
            after.sample(
                "kobo_tasks_finished_total",
                &[("state", state), method, channel]
            ),
            Some(1.0),
            "task {task}"
        );
    }
    for (name, labels, want) in [
        ("kobo_task_run_seconds_sum", errata, 300.0),
        ("kobo_task_run_seconds_sum", compose, 3600.0),
        ("kobo_task_wait_seconds_count", compose, 1.0),
        ("kobo_task_wait_seconds_sum", compose, 90.0),
    ] {
        assert_eq!(after.sample(name, &labels), Some(want), "{name} {labels:?}");
    }
    assert_eq!(
        after.sample("kobo_task_wait_seconds_count", &errata),
        None,
        "task 37 started before the baseline"
    );
    let finished: f64 = after.families["kobo_tasks_finished_total"]
        .samples
        .values()
        .sum();
    assert_eq!(finished, 2.0, "nothing else");

    // Nothing new: the same values.
    let again = scrape().await;
    assert_eq!(
        again.families.get("kobo_tasks_finished_total"),
        after.families.get("kobo_tasks_finished_total")
    );
    assert_eq!(
        again.families.get("kobo_task_run_seconds"),
        after.families.get("kobo_task_run_seconds")
    );
}

/// A copy of task `id`'s row.
fn task_clone(tasks: &[TaskRow], id: i64) -> TaskRow {
    tasks.iter().find(|t| t.id == id).expect("the task").clone()
}

#[tokio::test]
async fn task_metrics_cost_one_get_tasks_and_at_most_one_task_info_multicall() {
    let extra = bulk_tasks(2000);
    let hub = hub(fixture_handler(Quirks {
        extra_tasks: extra.clone(),
        ..Quirks::default()
    }))
    .await;
    let options = XmlRpcOptions {
        multicall_chunk: 2,
        ..options(&hub.url())
    };
    let started = Instant::now();
    let snapshot = XmlRpcSource::new(options)
        .expect("source")
        .collect_tasks()
        .await
        .expect("collect with tasks");
    println!(
        "the fixture and 2,000 more tasks: {} requests in {:?}",
        hub.received().len(),
        started.elapsed()
    );
    assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
    // 1 multicall of the lists + ceil(5 / 2) multicalls of workers + 1 get_tasks + the task flow's baseline
    // multicall + 1 multicall of task_info.
    let calls = calls(&hub);
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "system.multicall",
            "system.multicall",
            "system.multicall",
            "system.multicall",
            "client.get_tasks",
            "system.multicall",
            "system.multicall"
        ]
    );
    assert_eq!(flow_ids(&calls[5]).len(), 100, "the baseline's probe");
    // Thousands of i386 and ppc64le tasks, still one lookup per arch: the lowest task id of each.
    assert_eq!(task_info_ids(&calls[6]), [2, 34]);

    let reference = sqlite_with_tasks(&extra).await;
    assert_eq!(
        sorted_summary(snapshot.tasks.as_ref().expect("task data")),
        sorted_summary(reference.tasks.as_ref().expect("task data"))
    );
    let active = extra
        .iter()
        .filter(|t| !t.archive && [0, 1, 2, 8].contains(&t.state))
        .count() as i64;
    let counted: i64 = snapshot
        .tasks
        .as_ref()
        .map(|t| t.groups.iter().map(|g| g.count).sum())
        .unwrap_or_default();
    assert_eq!(counted, 10 + active);
}

#[tokio::test]
async fn a_fault_on_get_tasks_fails_the_task_collection_and_the_exporter_serves_the_workers() {
    // What a hub older than get_tasks' state filter answers.
    let fault = "TypeError: get_tasks() takes 2 positional arguments but 3 were given";
    let quirks = Quirks {
        tasks_fault: Some(fault.into()),
        ..Quirks::default()
    };
    let hub = hub(fixture_handler(quirks.clone())).await;
    let error = message(source(&hub).collect_tasks().await);
    assert!(
        error
            == format!(
                "query on {} failed: client.get_tasks: the hub answered with fault 1: {fault}",
                hub.url()
            ),
        "{error}"
    );
    assert_eq!(
        hub.methods(),
        ["system.multicall", "system.multicall", "client.get_tasks"]
    );

    // The collector falls back to the workers: kobo_up 1, no task families, one task error counted.
    let hub = super::hub(fixture_handler(quirks)).await;
    let collector = HubCollector::new(
        Arc::new(source(&hub)),
        CollectorOptions {
            task_metrics: true,
            ..CollectorOptions::default()
        },
    );
    let text = collector.scrape(None).await.expect("scrape");
    let exposition = parse(&text).expect("parse");
    assert_eq!(exposition.sample("kobo_up", &[]), Some(1.0));
    assert_eq!(
        exposition.families["kobo_worker_enabled"].samples.len(),
        5,
        "{text}"
    );
    for name in TASK_FAMILIES {
        assert!(!exposition.families.contains_key(name), "{name}: {text}");
    }
    assert_eq!(
        exposition.sample(
            "kobo_exporter_collect_errors_total",
            &[("collector", "tasks")]
        ),
        Some(1.0)
    );
    assert_eq!(
        hub.methods(),
        [
            "system.multicall",
            "system.multicall",
            "client.get_tasks",
            "system.multicall",
            "system.multicall"
        ]
    );
}

#[tokio::test]
async fn an_arch_that_cannot_be_named_leaves_its_tasks_out_with_a_warning() {
    // Task 2 is gone when the exporter asks task_info for it: i386 (arch id 6) has no name.
    let hub = hub(fixture_handler(Quirks {
        gone_tasks: vec![2],
        ..Quirks::default()
    }))
    .await;
    let snapshot = source(&hub)
        .collect_tasks()
        .await
        .expect("a task left out is not a failure");
    assert_eq!(
        warnings(&snapshot),
        [(
            Part::Tasks,
            "Task metrics: 5 active task(s) with arch id 6 are left out: no worker accepts that arch, and \
             client.task_info(2) answered fault 1: DoesNotExist: Task matching query does not exist."
        )]
    );
    assert!(
        snapshot.warnings[0]
            .message
            .starts_with(kobo_backend_xmlrpc::TASK_WARNING_PREFIX)
    );
    let reference = sqlite_with_tasks(&[]).await;
    let (groups, per_worker) = sorted_summary(snapshot.tasks.as_ref().expect("task data"));
    let (all_groups, all_per_worker) = sorted_summary(reference.tasks.as_ref().expect("task data"));
    let named: Vec<TaskGroup> = all_groups
        .into_iter()
        .filter(|g| g.arch != "i386")
        .collect();
    assert_eq!(groups, named, "the i386 groups only are missing");
    assert_eq!(
        per_worker, all_per_worker,
        "per worker, the i386 tasks still count (the SQL sources count them whatever the arch)"
    );
    let exposition = parse(&kobo_exporter::render(&snapshot).expect("render")).expect("parse");
    assert_eq!(
        exposition.sample(
            "kobo_queue_workers",
            &[("arch", "ppc64le"), ("channel", "signing")]
        ),
        Some(0.0)
    );
    assert!(
        !kobo_exporter::render(&snapshot)
            .expect("render")
            .contains("i386")
    );
    assert_eq!(task_info_ids(&calls(&hub)[4]), [2, 34]);
}
