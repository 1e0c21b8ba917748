//! The XML-RPC source against a local test hub: an HTTP server on 127.0.0.1 that answers with the real wire
//! captures of a kobo 0.42.0 hub holding the fixture (`testkit/data/xmlrpc-samples.md`, read at run
//! time), byte for byte, and records every request.
//!
//! The captures hold `client.get_worker_info` for two of the fixture's five workers (and the empty struct of
//! an unknown one); the other three, the multicall envelope and the synthetic hubs are written by
//! [`py`], a copy of Python's `xmlrpc.client` marshaller that kobo uses, checked here to reproduce every
//! captured response byte for byte.
//!
//! What is checked: the fixture hub's records and rendering (equal to the SQLite source's for every family
//! XML-RPC provides, and the `xmlrpc__fixture` snapshot); the exact method sequence and the number of
//! requests per scrape for 0, 1, 300 and 2,000 workers (never a `worker.*` call); faults at the top level and
//! inside the multicall; HTML error pages, HTTP 500/502/401, redirects, malformed and truncated XML, a
//! broken-off body, a body over the size cap, a server that never answers, a refused connection; basic
//! auth, bearer token, `User-Agent`, gzip and connection reuse; and that no password or token appears in an
//! error.
//!
//! Task metrics (`collect_with_tasks`): the hub answers `client.get_tasks` and `client.task_info` from the
//! fixture's `hub_task` rows in kobo's wire format ([`TaskHub`], checked against the captured answers byte
//! for byte). Checked: the task and queue families equal the SQLite source's `collect_with_tasks()` on the
//! same hub (and the `xmlrpc__fixture_with_tasks` snapshot), also with 2,000 more tasks; the exact requests
//! (one `client.get_tasks` of the active states, one multicall of `client.task_info` for one task per arch
//! no worker has) and that a plain `collect()` calls neither; a fault on `client.get_tasks` fails the task
//! collection and the collector then serves the workers; an arch that cannot be named leaves its tasks out
//! of the groups (not of the per-worker counts) with a warning.
#![cfg(feature = "xmlrpc")]

use crate::common;
use kobo_testkit::CollectExt;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kobo_backend_xmlrpc::{XmlRpcOptions, XmlRpcSource, ALLOWED_METHODS, DEFAULT_MULTICALL_CHUNK};
use kobo_exporter::api::{
    DataSource, HubSnapshot, LastSeen, SourceError, TaskGroup, TaskSummary, WorkerDir,
    WorkerTaskCount,
};
use kobo_exporter::collector::{CollectorOptions, HubCollector};
use kobo_testkit::exposition::{parse, Exposition};
use kobo_testkit::xmlrpc_hub::XmlRpcHub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "hunter2 s3cret";
const TOKEN: &str = "t0ken-abcdef";

// ---------------------------------------------------------------------------------------------------------
// The captures.

/// One captured HTTP response: its header lines (as in the capture) and its body, byte for byte.
#[derive(Debug, Clone)]
struct Capture {
    status_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Capture {
    /// The bytes to send: the capture with CRLF line ends and a real `Date`.
    fn wire(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.status_line);
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("connection") && keep_alive {
                continue;
            }
            let value = if name.eq_ignore_ascii_case("date") {
                "Tue, 25 Nov 2025 18:18:40 GMT"
            } else {
                value
            };
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }

    /// The result `<value>...</value>\n` of a `<params>` response, as Python dumped it.
    fn result_value(&self) -> &str {
        let start = self.body.find("<param>\n").expect("a params response") + "<param>\n".len();
        let end = self.body.rfind("</param>\n").expect("</param>");
        &self.body[start..end]
    }
}

/// The response captured under the heading that starts with `heading` (after `### `).
fn capture(heading: &str) -> Capture {
    let samples = kobo_testkit::data::read("xmlrpc-samples.md");
    let section = samples
        .split("\n### ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("no section {heading:?} in xmlrpc-samples.md"));
    let marker = "Response on the wire:\n```http\n";
    let start = section.find(marker).expect("a response capture") + marker.len();
    let rest = &section[start..];
    let end = rest.find("\n```").expect("end of the capture");
    let text = &rest[..end];
    let (head, body) = text.split_once("\n\n").expect("headers and body");
    // The fence follows the body's final newline.
    let body = format!("{body}\n");
    let mut lines = head.lines();
    let status_line = lines.next().expect("status line").to_string();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(": ").expect("header line");
            (name.to_string(), value.to_string())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "Content-Length")
        .map(|(_, v)| v.parse().expect("Content-Length"))
        .expect("Content-Length");
    assert_eq!(body.len(), length, "capture {heading:?}: body length");
    Capture {
        status_line,
        headers,
        body,
    }
}

const LIST_ENABLED: &str = "client.list_workers() - enabled workers";
const LIST_DISABLED: &str = "client.list_workers(False) - disabled workers";
const INFO_SEEN: &str = "client.get_worker_info(name) - existing worker with last_seen";
const INFO_NEVER_SEEN: &str = "client.get_worker_info(name) - existing worker, never seen";
const INFO_MISSING: &str = "client.get_worker_info(name) - MISSING worker";
const WORKER_MULTICALL: &str = "system.multicall on the worker handler";
const LOGIN_REQUIRED: &str = "client.cancel_task without login - fault";
const NOT_SUPPORTED: &str = "system.listMethods is NOT registered";
const TASKS_OPEN: &str = "client.get_tasks([], [OPEN])";
const TASKS_ONE: &str = "client.get_tasks([id]) - one task, flat export";
const TASK_INFO: &str = "client.task_info(id) - flat=False by default";
const TASK_INFO_MISSING: &str = "client.task_info(missing id) - fault";
const TASK_MISSING: &str = "DoesNotExist: Task matching query does not exist.";

/// A response in the hub's own headers (gunicorn, `Connection: close`) around `body`.
fn hub_response(body: String) -> Capture {
    Capture {
        status_line: "HTTP/1.1 200 OK".into(),
        headers: vec![
            ("Server".into(), "gunicorn".into()),
            ("Date".into(), "<redacted>".into()),
            ("Connection".into(), "close".into()),
            ("Content-Type".into(), "text/xml".into()),
            ("Vary".into(), "Cookie".into()),
            ("Content-Length".into(), body.len().to_string()),
        ],
        body,
    }
}

use crate::support::kobo_wire;
use kobo_wire::{fixture_exports, py, utc, Export, Py};

/// kobo's task state names, by code.
const STATE_NAMES: [&str; 9] = [
    "FREE",
    "ASSIGNED",
    "OPEN",
    "CLOSED",
    "CANCELED",
    "FAILED",
    "INTERRUPTED",
    "TIMEOUT",
    "CREATED",
];

/// A `hub_task` row, with what `Task.export()` reads from the rows it refers to.
#[derive(Debug, Clone)]
struct TaskRow {
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
struct TaskHub {
    exports: Vec<Export>,
    tasks: Vec<TaskRow>,
    /// id -> (name, pretty_name).
    arches: BTreeMap<i64, (String, String)>,
    channels: BTreeMap<i64, String>,
}

impl TaskHub {
    /// The fixture hub, from the fixture database.
    fn fixture() -> TaskHub {
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

    /// The task as kobo's default manager sees it: archived tasks do not exist.
    fn task(&self, id: i64) -> Option<&TaskRow> {
        self.tasks.iter().find(|t| t.id == id && !t.archive)
    }

    /// `client.get_tasks(ids, states)`: the flat exports of the non-archived tasks with these ids (all when
    /// empty) in these states (all when empty), ordered by id descending (`Task.Meta.ordering`).
    fn get_tasks(&self, ids: &[i64], states: &[i64]) -> Py {
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
    fn export(&self, task: &TaskRow, flat: bool) -> Py {
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
                Py::Str(STATE_NAMES[task.state as usize].to_string()),
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
/// their order.
fn json_object(text: &str) -> Py {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .expect("a JSON object");
    let mut members = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = json_string(rest);
        let after = after
            .trim_start()
            .strip_prefix(':')
            .expect(":")
            .trim_start();
        let (value, after) = if after.starts_with('"') {
            let (s, after) = json_string(after);
            (Py::Str(s), after)
        } else {
            let end = after.find(',').unwrap_or(after.len());
            let literal = after[..end].trim();
            let value = match literal {
                "true" => Py::Bool(true),
                "false" => Py::Bool(false),
                "null" => Py::None,
                number => Py::Int(number.parse().expect("an integer")),
            };
            (value, &after[end..])
        };
        members.push((key, value));
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Py::Map(members)
}

/// The JSON string at the start of `text` (simple escapes only), and what follows it.
fn json_string(text: &str) -> (String, &str) {
    let body = text.strip_prefix('"').expect("a JSON string");
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &body[i + 1..]),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    panic!("an unterminated JSON string in {text:?}")
}

// ---------------------------------------------------------------------------------------------------------
// Reading the requests: a small XML-RPC methodCall parser, independent of the source's own.

#[derive(Debug, Clone, PartialEq)]
enum X {
    Int(i64),
    Bool(bool),
    Str(String),
    Nil,
    Arr(Vec<X>),
    Struct(Vec<(String, X)>),
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with(|c: char| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn tag(&mut self) -> String {
        self.skip_ws();
        assert!(
            self.s[self.pos..].starts_with('<'),
            "expected a tag at {}: {}",
            self.pos,
            self.s
        );
        let end = self.s[self.pos..].find('>').expect("tag end") + self.pos;
        let tag = self.s[self.pos + 1..end].to_string();
        self.pos = end + 1;
        tag
    }

    fn peek_tag(&mut self) -> String {
        let pos = self.pos;
        let tag = self.tag();
        self.pos = pos;
        tag
    }

    fn expect(&mut self, wanted: &str) {
        let tag = self.tag();
        assert_eq!(tag, wanted, "in {}", self.s);
    }

    fn text(&mut self) -> String {
        let end = self.s[self.pos..].find('<').expect("text end") + self.pos;
        let raw = &self.s[self.pos..end];
        self.pos = end;
        unescape(raw)
    }

    fn value(&mut self) -> X {
        self.expect("value");
        let start = self.pos;
        let text = self.text();
        if self.peek_tag() == "/value" {
            self.expect("/value");
            return X::Str(text);
        }
        self.pos = start;
        let tag = self.tag();
        let value = match tag.as_str() {
            "string" | "int" | "i4" | "i8" | "boolean" => {
                let text = self.text();
                self.expect(&format!("/{tag}"));
                match tag.as_str() {
                    "string" => X::Str(text),
                    "boolean" => X::Bool(text == "1"),
                    _ => X::Int(text.trim().parse().expect("integer")),
                }
            }
            "string/" => X::Str(String::new()),
            "nil/" => X::Nil,
            "array" => {
                self.expect("data");
                let mut items = Vec::new();
                while self.peek_tag() == "value" {
                    items.push(self.value());
                }
                self.expect("/data");
                self.expect("/array");
                X::Arr(items)
            }
            "struct" => {
                let mut members = Vec::new();
                while self.peek_tag() == "member" {
                    self.expect("member");
                    self.expect("name");
                    let name = self.text();
                    self.expect("/name");
                    members.push((name, self.value()));
                    self.expect("/member");
                }
                self.expect("/struct");
                X::Struct(members)
            }
            other => panic!("unexpected <{other}> in {}", self.s),
        };
        self.expect("/value");
        value
    }
}

fn unescape(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let end = rest[amp..].find(';').expect("entity end") + amp;
        let entity = &rest[amp + 1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ if entity.starts_with("#x") => {
                char::from_u32(u32::from_str_radix(&entity[2..], 16).expect("hex")).expect("char")
            }
            _ if entity.starts_with('#') => {
                char::from_u32(entity[1..].parse().expect("dec")).expect("char")
            }
            _ => panic!("unknown entity {entity}"),
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A method call: its name and parameters.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    method: String,
    params: Vec<X>,
}

fn parse_call(body: &str) -> Call {
    let body = body.trim_start();
    let body = match body.strip_prefix("<?xml") {
        Some(rest) => &rest[rest.find("?>").expect("declaration end") + 2..],
        None => body,
    };
    let mut p = Parser { s: body, pos: 0 };
    p.expect("methodCall");
    p.expect("methodName");
    let method = p.text();
    p.expect("/methodName");
    let mut params = Vec::new();
    match p.tag().as_str() {
        "params" => {
            while p.peek_tag() == "param" {
                p.expect("param");
                params.push(p.value());
                p.expect("/param");
            }
            p.expect("/params");
            p.expect("/methodCall");
        }
        "params/" => p.expect("/methodCall"),
        "/methodCall" => {}
        other => panic!("unexpected <{other}>"),
    }
    Call { method, params }
}

/// The calls inside a `system.multicall` call.
fn inner_calls(call: &Call) -> Vec<Call> {
    let [X::Arr(entries)] = call.params.as_slice() else {
        panic!("multicall params: {:?}", call.params)
    };
    entries
        .iter()
        .map(|entry| {
            let X::Struct(members) = entry else {
                panic!("entry {entry:?}")
            };
            let get = |n: &str| {
                members
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .expect(n)
            };
            let (X::Str(method), X::Arr(params)) = (get("methodName"), get("params")) else {
                panic!("entry {entry:?}")
            };
            Call { method, params }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// The test server.

/// One request as the test hub received it.
#[derive(Debug, Clone)]
struct Received {
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    path: String,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn call(&self) -> Call {
        parse_call(&self.body)
    }
}

/// What the test hub does with a request.
enum Reply {
    /// Send these bytes (a whole HTTP response), then close the connection.
    Close(Vec<u8>),
    /// Send these bytes and keep the connection for the next request.
    KeepAlive(Vec<u8>),
    /// Never answer (the connection stays open until the test ends).
    Hang,
}

type Handler = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// A hub on 127.0.0.1 that answers with `handler` and records every request and connection.
struct TestHub {
    url: String,
    requests: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

impl TestHub {
    async fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> TestHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/xmlrpc/client/",
            listener.local_addr().expect("address")
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new(handler);
        let (log, count) = (Arc::clone(&requests), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, Arc::clone(&handler), Arc::clone(&log)));
            }
        });
        TestHub {
            url,
            requests,
            connections,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.requests.lock().expect("log").clone()
    }

    /// The top-level method of every request so far, in order.
    fn methods(&self) -> Vec<String> {
        self.received().iter().map(|r| r.call().method).collect()
    }

    fn options(&self) -> XmlRpcOptions {
        XmlRpcOptions {
            request_timeout: Duration::from_secs(30),
            ..XmlRpcOptions::new(&self.url)
        }
    }

    fn source(&self) -> XmlRpcSource {
        XmlRpcSource::new(self.options()).expect("source")
    }
}

async fn serve(mut stream: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Received>>>) {
    let mut buffer = Vec::new();
    loop {
        // The head.
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8(buffer[head_end..head_end + length].to_vec())
            .expect("UTF-8 request body");
        buffer.drain(..head_end + length);
        let received = Received {
            path: request_line
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_string(),
            headers,
            body,
        };
        log.lock().expect("log").push(received.clone());
        match handler(&received) {
            Reply::Close(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                return;
            }
            Reply::KeepAlive(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::Hang => {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A raw HTTP response with this status line, headers and body (Content-Length added).
fn http(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

// ---------------------------------------------------------------------------------------------------------
// Hubs.

/// How the fixture hub misbehaves, if at all.
#[derive(Clone, Default)]
struct Quirks {
    /// `client.get_worker_info` of these names faults inside the multicall.
    faulting: Vec<String>,
    /// Names listed as enabled workers that the hub then does not know (deleted in between): `{}`.
    vanished: Vec<String>,
    /// `client.list_workers(enabled)` for this `enabled` answers with this fault (inside the multicall).
    list_fault: Option<(bool, String)>,
    /// Keep connections open (no `Connection: close`).
    keep_alive: bool,
    /// gzip every response when the request accepts it.
    gzip: bool,
    /// `client.get_tasks` answers with this fault.
    tasks_fault: Option<String>,
    /// Tasks that `client.task_info` no longer finds (deleted or archived since `client.get_tasks`).
    gone_tasks: Vec<i64>,
    /// Tasks the hub has besides the fixture's.
    extra_tasks: Vec<TaskRow>,
}

/// The fixture hub, served from the captures where they exist.
fn fixture_handler(quirks: Quirks) -> impl Fn(&Received) -> Reply + Send + Sync + 'static {
    let mut hub = TaskHub::fixture();
    hub.tasks.extend(quirks.extra_tasks.iter().cloned());
    let exports = hub.exports.clone();
    let captured: BTreeMap<String, String> = [INFO_SEEN, INFO_NEVER_SEEN]
        .iter()
        .map(|h| {
            let c = capture(h);
            let name = c
                .result_value()
                .split("<name>name</name>\n<value><string>")
                .nth(1)
                .and_then(|s| s.split('<').next())
                .expect("name in capture")
                .to_string();
            (name, c.result_value().to_string())
        })
        .collect();
    let missing = capture(INFO_MISSING).result_value().to_string();
    let list_enabled = capture(LIST_ENABLED);
    let list_disabled = capture(LIST_DISABLED);
    // `client.list_workers(True)`, with the vanished workers listed too.
    let list_enabled = if quirks.vanished.is_empty() {
        list_enabled
    } else {
        let mut names: Vec<Py> = exports
            .iter()
            .filter(|e| e.enabled)
            .map(|e| Py::Str(e.name.clone()))
            .collect();
        names.extend(quirks.vanished.iter().map(|n| Py::Str(n.clone())));
        hub_response(py::response(&Py::List(names)))
    };
    // The lists as results inside a multicall (their dumped values), or the fault asked for.
    let list_enabled_value = list_enabled.result_value().to_string();
    let list_disabled_value = list_disabled.result_value().to_string();
    let quirks_list_fault = quirks.list_fault.clone();
    let list_result = move |enabled: bool| -> Result<String, (i64, String)> {
        match &quirks_list_fault {
            Some((faulting, fault)) if *faulting == enabled => Err((1, fault.clone())),
            _ if enabled => Ok(list_enabled_value.clone()),
            _ => Ok(list_disabled_value.clone()),
        }
    };
    move |request: &Received| {
        let call = request.call();
        let response = match (call.method.as_str(), call.params.as_slice()) {
            ("client.list_workers", [] | [X::Bool(true)]) => list_enabled.clone(),
            ("client.list_workers", [X::Bool(false)]) => list_disabled.clone(),
            ("system.multicall", _) => {
                let items: Vec<Result<String, (i64, String)>> = inner_calls(&call)
                    .iter()
                    .map(
                        |inner| match (inner.method.as_str(), inner.params.as_slice()) {
                            ("client.get_worker_info", [X::Str(name)]) => {
                                if quirks.faulting.contains(name) {
                                    Err((
                                        1,
                                        "DoesNotExist: Worker matching query does not exist."
                                            .to_string(),
                                    ))
                                } else if let Some(dumped) = captured.get(name) {
                                    Ok(dumped.clone())
                                } else if let Some(export) =
                                    exports.iter().find(|e| &e.name == name)
                                {
                                    Ok(py::value(&export.py()))
                                } else {
                                    Ok(missing.clone())
                                }
                            }
                            ("client.list_workers", [] | [X::Bool(true)]) => list_result(true),
                            ("client.list_workers", [X::Bool(false)]) => list_result(false),
                            ("client.task_info", [X::Int(id)]) => {
                                match hub.task(*id).filter(|_| !quirks.gone_tasks.contains(id)) {
                                    Some(task) => Ok(py::value(&hub.export(task, false))),
                                    None => Err((1, TASK_MISSING.to_string())),
                                }
                            }
                            (method, _) => Err((
                                1,
                                format!("<class 'Exception'>:method \"{method}\" is not supported"),
                            )),
                        },
                    )
                    .collect();
                hub_response(py::multicall(&items))
            }
            ("client.get_tasks", [ids, states @ ..]) if states.len() <= 1 => {
                match &quirks.tasks_fault {
                    Some(fault) => hub_response(py::fault(1, fault)),
                    None => {
                        let states = states.first().map(ints).unwrap_or_default();
                        hub_response(py::response(&hub.get_tasks(&ints(ids), &states)))
                    }
                }
            }
            (method, _) => hub_response(py::fault(
                1,
                &format!("Exception: method \"{method}\" is not supported"),
            )),
        };
        finish(request, response, quirks.keep_alive, quirks.gzip)
    }
}

/// The integers of an array parameter.
fn ints(value: &X) -> Vec<i64> {
    let X::Arr(items) = value else {
        panic!("an array of integers: {value:?}")
    };
    items
        .iter()
        .map(|item| match item {
            X::Int(i) => *i,
            other => panic!("an integer: {other:?}"),
        })
        .collect()
}

/// The reply for a capture-shaped response, gzipped if asked for and accepted.
fn finish(request: &Received, response: Capture, keep_alive: bool, gzip: bool) -> Reply {
    let accepts_gzip = request
        .header("accept-encoding")
        .is_some_and(|v| v.contains("gzip"));
    if gzip && accepts_gzip {
        let compressed = gzipped(response.body.as_bytes());
        let mut bytes = Vec::new();
        let mut head = format!("{}\r\n", response.status_line);
        for (name, value) in &response.headers {
            match name.as_str() {
                "Content-Length" => {
                    head.push_str(&format!("Content-Length: {}\r\n", compressed.len()))
                }
                "Connection" if keep_alive => {}
                _ => head.push_str(&format!("{name}: {value}\r\n")),
            }
        }
        head.push_str("Content-Encoding: gzip\r\n\r\n");
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(&compressed);
        return if keep_alive {
            Reply::KeepAlive(bytes)
        } else {
            Reply::Close(bytes)
        };
    }
    if keep_alive {
        Reply::KeepAlive(response.wire(true))
    } else {
        Reply::Close(response.wire(false))
    }
}

/// `data` gzipped (flate2), as a hub behind a compressing proxy sends it.
fn gzipped(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// `n` synthetic workers (even ones enabled), some with odd names.
fn synthetic_exports(n: usize) -> Vec<Export> {
    (0..n)
        .map(|i| Export {
            id: i as i64 + 1,
            name: match i % 7 {
                3 => format!("w\u{f6}rker-{i:05}.\u{e9}xample.com"),
                5 => format!("odd&<{i:05}>\"'.example.com"),
                _ => format!("worker-{i:05}.example.com"),
            },
            arches: vec![
                (1, "noarch".into(), "noarch".into()),
                (2, "x86_64".into(), "x86_64".into()),
            ],
            channels: vec![(1, "default".into())],
            enabled: i % 2 == 0,
            max_load: 4,
            ready: i % 3 == 0,
            task_count: (i % 5) as i64,
            current_load: (i % 4) as i64,
            last_seen: (i % 11 != 0).then(|| utc(1_750_000_000 + i as i64)),
        })
        .collect()
}

/// A synthetic hub of `n` workers (even ones enabled), some with odd names, answered by the marshaller.
fn synthetic_handler(n: usize) -> impl Fn(&Received) -> Reply + Send + Sync + 'static {
    let exports = synthetic_exports(n);
    // `client.list_workers(enabled)`: the sorted names.
    let names = |exports: &[Export], enabled: bool| {
        let mut names: Vec<String> = exports
            .iter()
            .filter(|e| e.enabled == enabled)
            .map(|e| e.name.clone())
            .collect();
        names.sort();
        Py::List(names.into_iter().map(Py::Str).collect())
    };
    move |request: &Received| {
        let call = request.call();
        let body = match (call.method.as_str(), call.params.as_slice()) {
            ("client.list_workers", [X::Bool(enabled)]) => py::response(&names(&exports, *enabled)),
            ("system.multicall", _) => {
                let items: Vec<Result<String, (i64, String)>> = inner_calls(&call)
                    .iter()
                    .map(
                        |inner| match (inner.method.as_str(), inner.params.as_slice()) {
                            ("client.list_workers", [X::Bool(enabled)]) => {
                                Ok(py::value(&names(&exports, *enabled)))
                            }
                            ("client.get_worker_info", [X::Str(name)]) => {
                                let export = exports
                                    .iter()
                                    .find(|e| &e.name == name)
                                    .expect("a known worker");
                                Ok(py::value(&export.py()))
                            }
                            _ => panic!("{inner:?}"),
                        },
                    )
                    .collect();
                py::multicall(&items)
            }
            (method, _) => py::fault(
                1,
                &format!("Exception: method \"{method}\" is not supported"),
            ),
        };
        Reply::Close(hub_response(body).wire(false))
    }
}

/// The fixture hub read by the SQLite source, with the fixture's worker_dir.
async fn sqlite_snapshot() -> HubSnapshot {
    let (_dir, path) = common::fixture_sqlite();
    let workers = common::fixture_worker_dir();
    let source =
        kobo_backend_sqlite::open(&path, Some(WorkerDir::new(workers.path()))).expect("open");
    source.collect_workers().await.expect("collect")
}

/// The fixture hub, with `extra` tasks added, read with its task aggregates by the SQLite source.
async fn sqlite_with_tasks(extra: &[TaskRow]) -> HubSnapshot {
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
fn bulk_tasks(count: i64) -> Vec<TaskRow> {
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

/// The value of the sample `name{labels}`, if present.
fn sample(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wanted.sort();
    exposition
        .families
        .values()
        .flat_map(|f| f.samples.iter())
        .find(|((sample, labels), _)| sample == name && *labels == wanted)
        .map(|(_, value)| *value)
}

/// The task and queue families, which the XML-RPC source provides only with task metrics.
const TASK_FAMILIES: [&str; 5] = [
    "kobo_worker_tasks",
    "kobo_tasks",
    "kobo_tasks_oldest_created_timestamp_seconds",
    "kobo_queue_workers",
    "kobo_queue_workers_ready",
];

/// The task ids of the inner `client.task_info` calls of a multicall request.
fn task_info_ids(call: &Call) -> Vec<i64> {
    assert_eq!(call.method, "system.multicall");
    inner_calls(call)
        .iter()
        .map(|inner| {
            assert_eq!(inner.method, "client.task_info");
            let [X::Int(id)] = inner.params.as_slice() else {
                panic!("{inner:?}")
            };
            *id
        })
        .collect()
}

/// The error of a scrape that must fail (printed, for reading with `--nocapture`).
fn message(result: Result<HubSnapshot, SourceError>) -> String {
    match result {
        Ok(snapshot) => panic!("expected an error, got {snapshot:?}"),
        Err(e) => {
            println!("error: {e}");
            e.to_string()
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The tests.

#[test]
fn the_marshaller_reproduces_every_capture() {
    let exports = fixture_exports();
    let by_name = |n: &str| {
        exports
            .iter()
            .find(|e| e.name == n)
            .expect("fixture worker")
            .py()
    };
    assert_eq!(
        py::response(&by_name("worker-0002.example.com")),
        capture(INFO_SEEN).body
    );
    assert_eq!(
        py::response(&by_name("worker-0004.example.com")),
        capture(INFO_NEVER_SEEN).body
    );
    assert_eq!(py::response(&Py::Dict(vec![])), capture(INFO_MISSING).body);
    let names = |enabled: bool| {
        Py::List(
            exports
                .iter()
                .filter(|e| e.enabled == enabled)
                .map(|e| Py::Str(e.name.clone()))
                .collect(),
        )
    };
    assert_eq!(py::response(&names(true)), capture(LIST_ENABLED).body);
    assert_eq!(py::response(&names(false)), capture(LIST_DISABLED).body);
    assert_eq!(
        py::multicall(&[
            Ok(py::value(&Py::Int(5))),
            Err((
                1,
                "<class 'Exception'>:method \"no.such\" is not supported".into()
            ))
        ]),
        capture(WORKER_MULTICALL).body
    );
    assert_eq!(
        py::fault(1, "PermissionDenied: Login required."),
        capture(LOGIN_REQUIRED).body
    );
    assert_eq!(
        py::fault(
            1,
            "Exception: method \"system.listMethods\" is not supported"
        ),
        capture(NOT_SUPPORTED).body
    );
    assert_eq!(utc(1_749_999_904), "2025-06-15T15:05:04Z");
    assert_eq!(utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
}

#[tokio::test]
async fn the_fixture_hub_gives_the_sqlite_sources_records_and_metrics() {
    let hub = TestHub::start(fixture_handler(Quirks::default())).await;
    let snapshot = hub.source().collect_workers().await.expect("collect");
    assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);

    // The records: the SQLite source's, less what XML-RPC does not carry.
    let reference = sqlite_snapshot().await;
    let mut expected = reference.workers.clone();
    for worker in &mut expected {
        worker.max_tasks = None;
        worker.min_priority = None;
    }
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ours = snapshot.workers.clone();
    ours.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(ours, expected);
    let last_seen: Vec<LastSeen> = ours.iter().map(|w| w.last_seen).collect();
    assert_eq!(
        last_seen,
        [
            LastSeen::At(1_749_999_887),
            LastSeen::At(1_749_999_904),
            LastSeen::At(1_749_542_246),
            LastSeen::Never,
            LastSeen::At(1_749_999_913)
        ]
    );

    // The rendering, family by family, for the families XML-RPC provides.
    let text = kobo_exporter::render(&snapshot).expect("render");
    let ours = parse(&text).expect("our output parses");
    let sqlite =
        parse(&kobo_exporter::render(&reference).expect("render")).expect("SQLite output parses");
    let provided: Vec<&String> = ours
        .order
        .iter()
        .filter(|n| !ours.families[*n].samples.is_empty())
        .collect();
    for name in [
        "kobo_worker_enabled",
        "kobo_worker_ready",
        "kobo_worker_load",
        "kobo_worker_max_load",
        "kobo_worker_open_tasks",
        "kobo_worker_last_seen_seconds",
        "kobo_worker_arch",
        "kobo_worker_channel",
    ] {
        assert!(
            provided.iter().any(|n| *n == name),
            "XML-RPC provides {name}"
        );
    }
    for name in &provided {
        assert_eq!(
            ours.families.get(*name),
            sqlite.families.get(*name),
            "family {name}"
        );
    }
    // What XML-RPC cannot tell is absent, not a false value.
    if let Some(max_tasks) = ours.families.get("kobo_worker_max_tasks") {
        assert!(max_tasks.samples.is_empty());
    }
    // The reference exporter's six families, equal to what it served for this hub.
    let reference_metrics =
        parse(&kobo_testkit::data::read("fixture-reference-metrics.txt")).expect("reference");
    for name in &reference_metrics.order {
        assert_eq!(
            ours.families.get(name),
            reference_metrics.families.get(name),
            "family {name}"
        );
    }

    insta::with_settings!({
        snapshot_path => "../../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
        description => "the fixture hub read through its XML-RPC API (real kobo 0.42.0 wire captures)",
    }, {
        insta::assert_snapshot!("xmlrpc__fixture", text);
    });

    // One scrape: one multicall of the two lists, then one multicall of the five workers; nothing else.
    let received = hub.received();
    let calls: Vec<Call> = received.iter().map(Received::call).collect();
    assert_eq!(hub.methods(), ["system.multicall", "system.multicall"]);
    let lists = inner_calls(&calls[0]);
    assert_eq!(
        lists.iter().map(|c| c.method.as_str()).collect::<Vec<_>>(),
        ["client.list_workers", "client.list_workers"]
    );
    assert_eq!(lists[0].params, [X::Bool(true)]);
    assert_eq!(lists[1].params, [X::Bool(false)]);
    let inner = inner_calls(&calls[1]);
    let names: Vec<String> = inner
        .iter()
        .map(|c| {
            assert_eq!(c.method, "client.get_worker_info");
            let [X::Str(name)] = c.params.as_slice() else {
                panic!("{c:?}")
            };
            name.clone()
        })
        .collect();
    assert_eq!(
        names,
        (1..=5)
            .map(|i| format!("worker-{i:04}.example.com"))
            .collect::<Vec<_>>()
    );
    for request in &received {
        assert_eq!(request.path, "/xmlrpc/client/");
        assert_eq!(request.header("content-type"), Some("text/xml"));
        let agent = request.header("user-agent").expect("User-Agent");
        assert!(agent.starts_with("kobo-exporter/"), "{agent}");
        assert!(request
            .header("accept-encoding")
            .is_some_and(|v| v.contains("gzip")));
        assert_eq!(request.header("authorization"), None);
    }
}

#[tokio::test]
async fn the_url_may_lack_the_trailing_slash() {
    let hub = TestHub::start(fixture_handler(Quirks::default())).await;
    let options = XmlRpcOptions {
        url: hub.url.trim_end_matches('/').to_string(),
        ..hub.options()
    };
    let source = XmlRpcSource::new(options).expect("source");
    assert_eq!(source.describe(), hub.url);
    assert_eq!(
        source
            .collect_workers()
            .await
            .expect("collect")
            .workers
            .len(),
        5
    );
    assert!(hub.received().iter().all(|r| r.path == "/xmlrpc/client/"));
}

#[tokio::test]
async fn requests_per_scrape_are_bounded_and_only_allowed_methods_are_called() {
    // One multicall of the two lists, then ceil(workers / chunk) multicalls of get_worker_info.
    for (workers, chunk, expected_requests) in [
        (0, DEFAULT_MULTICALL_CHUNK, 1),
        (1, DEFAULT_MULTICALL_CHUNK, 2),
        (2000, DEFAULT_MULTICALL_CHUNK, 2),
        (300, 300, 2),
        (2000, 300, 8),
        (7, 3, 4),
    ] {
        let hub = TestHub::start(synthetic_handler(workers)).await;
        let options = XmlRpcOptions {
            multicall_chunk: chunk,
            ..hub.options()
        };
        let source = XmlRpcSource::new(options).expect("source");
        let started = Instant::now();
        let snapshot = source
            .collect_workers()
            .await
            .unwrap_or_else(|e| panic!("{workers} workers: {e}"));
        assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
        assert_eq!(snapshot.workers.len(), workers);
        let methods = hub.methods();
        assert_eq!(
            methods.len(),
            expected_requests,
            "{workers} workers, chunks of {chunk}: {methods:?}"
        );
        assert!(
            methods.iter().all(|m| m == "system.multicall"),
            "{methods:?}"
        );
        let received = hub.received();
        let lists = inner_calls(&received[0].call());
        assert_eq!(
            lists,
            [
                Call {
                    method: "client.list_workers".into(),
                    params: vec![X::Bool(true)]
                },
                Call {
                    method: "client.list_workers".into(),
                    params: vec![X::Bool(false)]
                }
            ]
        );
        // Every worker asked for exactly once, at most `chunk` per request.
        let mut asked = Vec::new();
        for request in &received[1..] {
            let inner = inner_calls(&request.call());
            assert!(!inner.is_empty() && inner.len() <= chunk);
            for call in inner {
                assert!(
                    ALLOWED_METHODS.contains(&call.method.as_str()),
                    "{}",
                    call.method
                );
                assert_eq!(call.method, "client.get_worker_info");
                let [X::Str(name)] = call.params.as_slice() else {
                    panic!("{call:?}")
                };
                asked.push(name.clone());
            }
        }
        let mut names: Vec<String> = snapshot.workers.iter().map(|w| w.name.clone()).collect();
        names.sort();
        asked.sort();
        assert_eq!(asked, names, "each worker asked for once");
        println!(
            "{workers} workers: {expected_requests} requests in {:?}",
            started.elapsed()
        );
    }
    // Odd names survive the round trip, and render as label values.
    let hub = TestHub::start(synthetic_handler(8)).await;
    let snapshot = hub.source().collect_workers().await.expect("collect");
    let names: Vec<&str> = snapshot.workers.iter().map(|w| w.name.as_str()).collect();
    assert!(
        names.contains(&"w\u{f6}rker-00003.\u{e9}xample.com"),
        "{names:?}"
    );
    assert!(names.contains(&"odd&<00005>\"'.example.com"), "{names:?}");
    let text = kobo_exporter::render(&snapshot).expect("render");
    assert!(
        text.contains("worker=\"odd&<00005>\\\"'.example.com\""),
        "{text}"
    );
    for method in ALLOWED_METHODS {
        assert!(!method.starts_with("worker."), "{method}");
    }
}

#[tokio::test]
async fn the_request_count_stays_constant_as_workers_grow_from_10_to_2000() {
    // kobo_testkit's XML-RPC hub, as the benchmark runner serves it; the source with its defaults.
    let mut requests = Vec::new();
    for workers in [10, 2000] {
        let hub = XmlRpcHub::start(synthetic_exports(workers))
            .await
            .expect("hub");
        let source = XmlRpcSource::new(XmlRpcOptions::new(hub.url())).expect("source");
        let started = Instant::now();
        let snapshot = source
            .collect_workers()
            .await
            .unwrap_or_else(|e| panic!("{workers} workers: {e}"));
        let elapsed = started.elapsed();
        assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
        assert_eq!(snapshot.workers.len(), workers);
        assert_eq!(
            snapshot
                .workers
                .iter()
                .filter(|w| w.last_seen == LastSeen::Never)
                .count(),
            workers.div_ceil(11)
        );
        // The lists' multicall (2 calls) and one multicall of every worker's get_worker_info.
        assert_eq!(hub.calls(), 2 + workers, "{workers} workers");
        println!(
            "{workers} workers: {} requests, {} calls in {elapsed:?}",
            hub.requests(),
            hub.calls()
        );
        requests.push(hub.requests());
    }
    assert_eq!(
        requests,
        [2, 2],
        "requests per scrape for 10 and 2,000 workers"
    );
}

#[tokio::test]
async fn a_fault_on_list_workers_inside_the_multicall_fails_the_collection() {
    let fault = "PermissionDenied: Login required.";
    for enabled in [true, false] {
        let hub = TestHub::start(fixture_handler(Quirks {
            list_fault: Some((enabled, fault.into())),
            ..Quirks::default()
        }))
        .await;
        let error = message(hub.source().collect_workers().await);
        let call = if enabled {
            "client.list_workers(True)"
        } else {
            "client.list_workers(False)"
        };
        assert_eq!(
            error,
            format!(
                "query on {} failed: {call} (in system.multicall): the hub answered with fault 1: {fault}",
                hub.url
            )
        );
        // Nothing is read after the lists, and the task path fails the same way.
        assert_eq!(hub.methods(), ["system.multicall"]);
        let error = message(hub.source().collect_tasks().await);
        assert!(
            error.contains(&format!(
                "{call} (in system.multicall): the hub answered with fault"
            )),
            "{error}"
        );
        assert_eq!(hub.methods(), ["system.multicall", "system.multicall"]);
    }
}

#[tokio::test]
async fn a_fault_or_a_vanished_worker_in_the_multicall_drops_only_that_worker() {
    let quirks = Quirks {
        faulting: vec!["worker-0003.example.com".into()],
        vanished: vec!["worker-0006.example.com".into()],
        ..Quirks::default()
    };
    let hub = TestHub::start(fixture_handler(quirks)).await;
    let snapshot = hub
        .source()
        .collect_workers()
        .await
        .expect("a partial scrape is not a failure");
    let names: Vec<&str> = snapshot.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "worker-0001.example.com",
            "worker-0002.example.com",
            "worker-0004.example.com",
            "worker-0005.example.com"
        ]
    );
    assert_eq!(
        snapshot.warnings.iter().map(|w| w.message.as_str()).collect::<Vec<_>>(),
        [
            "The worker \"worker-0003.example.com\" is left out of this scrape: client.get_worker_info answered \
             fault 1: DoesNotExist: Worker matching query does not exist.",
            "The worker \"worker-0006.example.com\" is left out of this scrape: the hub has no such worker any \
             more (deleted or renamed since the worker list was read)."
        ]
    );
    assert_eq!(hub.methods().len(), 2);
}

/// A hub that answers every request with `reply`, and the error a scrape of it gives.
async fn error_from(
    reply: impl Fn(&Received) -> Reply + Send + Sync + 'static,
) -> (String, TestHub) {
    let hub = TestHub::start(reply).await;
    let options = XmlRpcOptions {
        username: Some("monitor".into()),
        password: Some(PASSWORD.into()),
        ..hub.options()
    };
    let error = message(
        XmlRpcSource::new(options)
            .expect("source")
            .collect_workers()
            .await,
    );
    assert!(error.contains(&hub.url), "the error names the hub: {error}");
    assert!(
        !error.contains(PASSWORD) && !error.contains("s3cret"),
        "the password leaked: {error}"
    );
    (error, hub)
}

#[tokio::test]
async fn top_level_faults_are_errors() {
    let login = capture(LOGIN_REQUIRED);
    let (error, _) = error_from(move |_| Reply::Close(login.wire(false))).await;
    assert!(
        error.contains(
            "system.multicall of client.list_workers: the hub answered with fault 1: PermissionDenied: \
             Login required."
        ),
        "{error}"
    );
    // A hub running with DEBUG = True sends a whole traceback: the error keeps the exception line.
    let traceback = "Traceback (most recent call last):\n  File \"/srv/hub/venv/lib/python3.11/site-packages/kobo/django/xmlrpc/dispatcher.py\", line 91, in _marshaled_dispatch\n    response = self._dispatch(method, params)\nkobo.hub.models.Worker.DoesNotExist: Worker matching query does not exist.\nFrame get in /srv/hub/x.py at line 639\n<LOCALS>\n  secret_local = 'x'\n</LOCALS>";
    let (error, _) =
        error_from(move |_| Reply::Close(hub_response(py::fault(1, traceback)).wire(false))).await;
    assert!(
        error.ends_with(
            "fault 1: kobo.hub.models.Worker.DoesNotExist: Worker matching query does not exist."
        ),
        "{error}"
    );
    assert!(!error.contains("LOCALS"), "{error}");
}

#[tokio::test]
async fn http_errors_name_the_status() {
    let django_500 = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta http-equiv=\"content-type\" content=\"text/html; charset=utf-8\">\n  <title>Server Error (500)</title>\n</head>\n<body><h1>Server Error (500)</h1><p></p></body>\n</html>\n";
    let (error, _) = error_from(move |_| {
        Reply::Close(http(
            "500 Internal Server Error",
            &[("Content-Type", "text/html; charset=utf-8")],
            django_500.as_bytes(),
        ))
    })
    .await;
    assert!(error.contains("HTTP 500 Internal Server Error"), "{error}");
    assert!(
        error.contains("an HTML page titled \"Server Error (500)\""),
        "{error}"
    );

    let nginx_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    let (error, _) = error_from(move |_| {
        Reply::Close(http(
            "502 Bad Gateway",
            &[("Server", "nginx"), ("Content-Type", "text/html")],
            nginx_502.as_bytes(),
        ))
    })
    .await;
    assert!(error.contains("system.multicall of client.list_workers: HTTP 502 Bad Gateway: text/html, an HTML page titled \"502 Bad Gateway\""), "{error}");

    let (error, hub) = error_from(|_| {
        Reply::Close(http(
            "401 Unauthorized",
            &[("WWW-Authenticate", "Basic realm=\"kobo\"")],
            b"Authorization Required",
        ))
    })
    .await;
    assert!(
        error.contains("HTTP 401 Unauthorized (the credentials were rejected)"),
        "{error}"
    );
    assert_eq!(hub.received().len(), 1);
    let hub = TestHub::start(|_| Reply::Close(http("401 Unauthorized", &[], b""))).await;
    let error = message(hub.source().collect_workers().await);
    assert!(
        error
            .contains("HTTP 401 Unauthorized (the hub or a proxy in front of it wants credentials"),
        "{error}"
    );

    // A 200 page of a proxy or a login form is not XML-RPC either.
    let (error, _) = error_from(|_| {
        Reply::Close(http(
            "200 OK",
            &[("Content-Type", "text/html")],
            b"<!doctype html><html><head><title>Sign in</title></head></html>",
        ))
    })
    .await;
    assert!(
        error.contains("HTTP 200 OK, but the response is not XML-RPC: the body is an HTML page, not an XML-RPC <methodResponse>"),
        "{error}"
    );
    assert!(error.contains("titled \"Sign in\""), "{error}");

    let (error, _) = error_from(|_| {
        Reply::Close(http(
            "301 Moved Permanently",
            &[("Location", "https://hub.example.com/xmlrpc/client/")],
            b"",
        ))
    })
    .await;
    assert!(
        error.contains(
            "HTTP 301 Moved Permanently: redirected to https://hub.example.com/xmlrpc/client/"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn malformed_and_truncated_xml_are_errors() {
    let malformed = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n</param>\n</params>\n</methodResponse>\n";
    let (error, _) =
        error_from(move |_| Reply::Close(hub_response(malformed.into()).wire(false))).await;
    assert!(
        error.contains("HTTP 200 OK, but the response is not XML-RPC: not well-formed XML at byte"),
        "{error}"
    );

    // A body cut short, with a Content-Length that matches what is sent.
    let list = capture(LIST_ENABLED).body;
    let cut = list[..list.len() / 2].to_string();
    let (error, _) = error_from(move |_| Reply::Close(hub_response(cut.clone()).wire(false))).await;
    assert!(error.contains("not XML-RPC: the XML ends early"), "{error}");
    assert!(error.contains("truncated"), "{error}");

    // A body that breaks off before its Content-Length.
    let full = capture(LIST_ENABLED);
    let (error, _) = error_from(move |_| {
        let wire = full.wire(false);
        Reply::Close(wire[..wire.len() - 100].to_vec())
    })
    .await;
    assert!(
        error.contains(
            "system.multicall of client.list_workers, HTTP 200 OK, the response broke off after"
        ),
        "{error}"
    );

    // Not XML at all, and not HTTP at all.
    let (error, _) =
        error_from(|_| Reply::Close(http("200 OK", &[("Content-Type", "text/plain")], b"OK")))
            .await;
    assert!(
        error.contains(
            "not XML-RPC: the body holds no XML element (text/plain, 2 bytes starting \"OK\")"
        ),
        "{error}"
    );
    let (error, _) = error_from(|_| Reply::Close(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec())).await;
    assert!(
        error.contains("system.multicall of client.list_workers"),
        "{error}"
    );

    // A valid response of the wrong shape: the multicall's result, or a list inside it.
    let (error, _) =
        error_from(|_| Reply::Close(hub_response(py::response(&Py::Int(3))).wire(false))).await;
    assert!(
        error.contains(
            "system.multicall of client.list_workers: the system.multicall result is an integer, not \
             an array"
        ),
        "{error}"
    );
    let lists = py::multicall(&[Ok(py::value(&Py::Int(3))), Ok(py::value(&Py::List(vec![])))]);
    let (error, _) =
        error_from(move |_| Reply::Close(hub_response(lists.clone()).wire(false))).await;
    assert!(
        error.contains("client.list_workers(True): the result is an integer, not an array"),
        "{error}"
    );
    let one_list = py::multicall(&[Ok(py::value(&Py::List(vec![])))]);
    let (error, _) =
        error_from(move |_| Reply::Close(hub_response(one_list.clone()).wire(false))).await;
    assert!(
        error.contains("system.multicall of client.list_workers: system.multicall answered 1 results for 2 calls"),
        "{error}"
    );
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let big = format!("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><string>{}</string></value>\n</param>\n</params>\n</methodResponse>\n", "x".repeat(10_000));
    let announced = big.clone();
    let big_for_gzip = big.clone();
    let hub =
        TestHub::start(move |_| Reply::Close(hub_response(announced.clone()).wire(false))).await;
    let options = XmlRpcOptions {
        max_response_bytes: 4096,
        ..hub.options()
    };
    let error = message(
        XmlRpcSource::new(options)
            .expect("source")
            .collect_workers()
            .await,
    );
    let length = big.len();
    assert!(
        error.contains(&format!(
            "larger than max_response_bytes (4096 bytes): Content-Length {length}"
        )),
        "{error}"
    );

    // Without a Content-Length (chunked), and gzipped: the cap counts decoded bytes.
    let hub = TestHub::start(move |request| {
        let compressed = gzipped(big_for_gzip.as_bytes());
        assert!(request.header("accept-encoding").is_some_and(|v| v.contains("gzip")));
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for chunk in compressed.chunks(1000) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        Reply::Close(bytes)
    })
    .await;
    let options = XmlRpcOptions {
        max_response_bytes: 4096,
        ..hub.options()
    };
    let error = message(
        XmlRpcSource::new(options)
            .expect("source")
            .collect_workers()
            .await,
    );
    assert!(
        error.contains("larger than max_response_bytes (4096 bytes): more than"),
        "{error}"
    );
}

#[tokio::test]
async fn a_hub_that_never_answers_times_out() {
    let hub = TestHub::start(|_| Reply::Hang).await;
    let options = XmlRpcOptions {
        request_timeout: Duration::from_secs(1),
        bearer_token: Some(TOKEN.into()),
        ..XmlRpcOptions::new(&hub.url)
    };
    let started = Instant::now();
    let error = message(
        XmlRpcSource::new(options)
            .expect("source")
            .collect_workers()
            .await,
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(900), "took {elapsed:?}");
    assert!(
        error.contains(
            "system.multicall of client.list_workers: no complete response within 1s (request_timeout)"
        ),
        "{error}"
    );
    assert!(
        error.contains(&hub.url) && !error.contains(TOKEN),
        "{error}"
    );
    assert_eq!(hub.received().len(), 1);

    // Nobody listening at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/xmlrpc/client/",
        listener.local_addr().expect("address")
    );
    drop(listener);
    let error = message(
        XmlRpcSource::new(XmlRpcOptions::new(&url))
            .expect("source")
            .collect_workers()
            .await,
    );
    assert!(
        error.starts_with(&format!(
            "cannot connect to {url}: system.multicall of client.list_workers: "
        )),
        "{error}"
    );
}

#[tokio::test]
async fn credentials_are_sent_and_never_shown() {
    let hub = TestHub::start(fixture_handler(Quirks::default())).await;
    let basic = XmlRpcOptions {
        username: Some("monitor".into()),
        password: Some(PASSWORD.into()),
        ..hub.options()
    };
    let source = XmlRpcSource::new(basic.clone()).expect("source");
    source.collect_workers().await.expect("collect");
    let debug = format!("{basic:?} {source:?}");
    assert!(
        !debug.contains(PASSWORD) && !debug.contains("s3cret"),
        "{debug}"
    );
    // base64("monitor:hunter2 s3cret")
    for request in hub.received() {
        assert_eq!(
            request.header("authorization"),
            Some("Basic bW9uaXRvcjpodW50ZXIyIHMzY3JldA==")
        );
    }

    let hub = TestHub::start(fixture_handler(Quirks::default())).await;
    let bearer = XmlRpcOptions {
        bearer_token: Some(TOKEN.into()),
        ..hub.options()
    };
    let source = XmlRpcSource::new(bearer.clone()).expect("source");
    source.collect_workers().await.expect("collect");
    assert!(!format!("{bearer:?} {source:?}").contains(TOKEN));
    assert_eq!(hub.received().len(), 2);
    for request in hub.received() {
        assert_eq!(
            request.header("authorization"),
            Some(&*format!("Bearer {TOKEN}"))
        );
    }

    // Credentials in the URL are sent as basic auth and appear nowhere.
    let hub = TestHub::start(|_| Reply::Close(http("403 Forbidden", &[], b"denied"))).await;
    let url = hub
        .url
        .replace("http://", "http://monitor:hunter2%20s3cret@");
    let source = XmlRpcSource::new(XmlRpcOptions::new(&url)).expect("source");
    assert_eq!(source.describe(), hub.url);
    let error = message(source.collect_workers().await);
    assert!(
        !error.contains("hunter2") && !error.contains("s3cret") && !error.contains("monitor"),
        "{error}"
    );
    assert!(error.contains("HTTP 403 Forbidden"), "{error}");
    assert_eq!(
        hub.received()[0].header("authorization"),
        Some("Basic bW9uaXRvcjpodW50ZXIyIHMzY3JldA==")
    );

    // A password echoed by a proxy into its error page is scrubbed.
    let (error, _) = error_from(|_| {
        Reply::Close(http(
            "400 Bad Request",
            &[("Content-Type", "text/plain")],
            format!("bad password {PASSWORD}").as_bytes(),
        ))
    })
    .await;
    assert!(error.contains("bad password ***"), "{error}");
}

#[tokio::test]
async fn gzip_responses_and_connection_reuse() {
    let hub = TestHub::start(fixture_handler(Quirks {
        gzip: true,
        keep_alive: true,
        ..Quirks::default()
    }))
    .await;
    let source = hub.source();
    let first = source.collect_workers().await.expect("first scrape");
    let second = source.collect_workers().await.expect("second scrape");
    // The same but for the timings.
    assert_eq!(
        (&first.workers, &first.tasks, &first.warnings),
        (&second.workers, &second.tasks, &second.warnings)
    );
    assert_eq!(first.workers.len(), 5);
    assert_eq!(hub.received().len(), 4);
    assert_eq!(
        hub.connections.load(Ordering::SeqCst),
        1,
        "both scrapes over one connection"
    );

    let plain = TestHub::start(fixture_handler(Quirks::default())).await;
    let reference = plain
        .source()
        .collect_workers()
        .await
        .expect("plain scrape");
    assert_eq!(
        kobo_exporter::render(&first).expect("render"),
        kobo_exporter::render(&reference).expect("render")
    );
}

// ---------------------------------------------------------------------------------------------------------
// Task metrics (collect_with_tasks).

#[test]
fn the_marshaller_reproduces_the_task_captures() {
    let hub = TaskHub::fixture();
    let six = hub.task(6).expect("task 6");
    assert_eq!(
        py::response(&hub.get_tasks(&[6], &[])),
        capture(TASKS_ONE).body
    );
    assert_eq!(
        py::response(&hub.export(six, false)),
        capture(TASK_INFO).body
    );
    assert_eq!(py::fault(1, TASK_MISSING), capture(TASK_INFO_MISSING).body);
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
    let hub = TestHub::start(fixture_handler(Quirks::default())).await;
    let source = hub.source();
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
        assert_eq!(
            sample(&exposition, "kobo_queue_workers", &labels),
            Some(0.0)
        );
    }
    assert_eq!(
        sample(
            &exposition,
            "kobo_tasks_oldest_created_timestamp_seconds",
            &[("state", "FREE"), ("arch", "i386"), ("channel", "signing")]
        ),
        Some(1_743_692_434.0),
        "task 40, created 2025-04-03 15:00:34"
    );
    insta::with_settings!({
        snapshot_path => "../../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
        description => "the fixture hub read through its XML-RPC API with task metrics (get_tasks and task_info answered in kobo 0.42.0's wire format)",
    }, {
        insta::assert_snapshot!("xmlrpc__fixture_with_tasks", text);
    });

    // The requests: the workers as for a scrape, one get_tasks of the active states, one multicall of
    // task_info for one task of each arch no worker has (i386: task 2, ppc64le: task 34).
    let calls: Vec<Call> = hub.received().iter().map(Received::call).collect();
    assert_eq!(
        hub.methods(),
        [
            "system.multicall",
            "system.multicall",
            "client.get_tasks",
            "system.multicall"
        ]
    );
    assert_eq!(
        calls[2].params,
        [
            X::Arr(vec![]),
            X::Arr(vec![X::Int(0), X::Int(1), X::Int(2), X::Int(8)])
        ]
    );
    assert_eq!(task_info_ids(&calls[3]), [2, 34]);
    for call in &calls {
        assert!(ALLOWED_METHODS.contains(&call.method.as_str()));
    }

    // A plain collect reads the workers only: no task call, no task data.
    let plain = source.collect_workers().await.expect("collect");
    assert_eq!(plain.tasks, None);
    assert_eq!(plain.workers, snapshot.workers);
    let timings: Vec<&str> = plain.timings.iter().map(|(part, _)| part.name()).collect();
    assert_eq!(timings, ["workers"]);
    assert_eq!(hub.methods()[4..], ["system.multicall", "system.multicall"]);
}

#[tokio::test]
async fn task_metrics_cost_one_get_tasks_and_at_most_one_task_info_multicall() {
    let extra = bulk_tasks(2000);
    let hub = TestHub::start(fixture_handler(Quirks {
        extra_tasks: extra.clone(),
        ..Quirks::default()
    }))
    .await;
    let options = XmlRpcOptions {
        multicall_chunk: 2,
        ..hub.options()
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
    // 1 multicall of the lists + ceil(5 / 2) multicalls of workers + 1 get_tasks + 1 multicall of
    // task_info.
    let calls: Vec<Call> = hub.received().iter().map(Received::call).collect();
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "system.multicall",
            "system.multicall",
            "system.multicall",
            "system.multicall",
            "client.get_tasks",
            "system.multicall"
        ]
    );
    // Thousands of i386 and ppc64le tasks, still one lookup per arch: the lowest task id of each.
    assert_eq!(task_info_ids(&calls[5]), [2, 34]);

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
    let hub = TestHub::start(fixture_handler(quirks.clone())).await;
    let error = message(hub.source().collect_tasks().await);
    assert!(
        error
            == format!(
                "query on {} failed: client.get_tasks: the hub answered with fault 1: {fault}",
                hub.url
            ),
        "{error}"
    );
    assert_eq!(
        hub.methods(),
        ["system.multicall", "system.multicall", "client.get_tasks"]
    );

    // The collector falls back to the workers: kobo_up 1, no task families, one task error counted.
    let hub = TestHub::start(fixture_handler(quirks)).await;
    let collector = HubCollector::new(
        Arc::new(hub.source()),
        CollectorOptions {
            task_metrics: true,
            ..CollectorOptions::default()
        },
    );
    let text = collector.scrape(None).await.expect("scrape");
    let exposition = parse(&text).expect("parse");
    assert_eq!(sample(&exposition, "kobo_up", &[]), Some(1.0));
    assert_eq!(
        exposition.families["kobo_worker_enabled"].samples.len(),
        5,
        "{text}"
    );
    for name in TASK_FAMILIES {
        assert!(!exposition.families.contains_key(name), "{name}: {text}");
    }
    assert_eq!(
        sample(
            &exposition,
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
    let hub = TestHub::start(fixture_handler(Quirks {
        gone_tasks: vec![2],
        ..Quirks::default()
    }))
    .await;
    let snapshot = hub
        .source()
        .collect_tasks()
        .await
        .expect("a task left out is not a failure");
    assert_eq!(
        snapshot.warnings.iter().map(|w| w.message.as_str()).collect::<Vec<_>>(),
        [
            "Task metrics: 5 active task(s) with arch id 6 are left out: no worker accepts that arch, and \
             client.task_info(2) answered fault 1: DoesNotExist: Task matching query does not exist."
        ]
    );
    assert!(snapshot.warnings[0]
        .message
        .starts_with(kobo_backend_xmlrpc::TASK_WARNING_PREFIX));
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
        sample(
            &exposition,
            "kobo_queue_workers",
            &[("arch", "ppc64le"), ("channel", "signing")]
        ),
        Some(0.0)
    );
    assert!(!kobo_exporter::render(&snapshot)
        .expect("render")
        .contains("i386"));
    assert_eq!(task_info_ids(&hub.received()[3].call()), [2, 34]);
}

// ---------------------------------------------------------------------------------------------------------
// Hostile and broken hubs: nothing decodable, control characters, an echoed Authorization header.

/// A hub of two enabled workers, `a.example.com` and `b.example.com`, whose `client.get_worker_info`
/// answers (inside the multicall) are given by `info`.
fn two_worker_handler(
    info: impl Fn(&str) -> Result<String, (i64, String)> + Send + Sync + 'static,
) -> impl Fn(&Received) -> Reply + Send + Sync + 'static {
    move |request: &Received| {
        let call = request.call();
        let items: Vec<Result<String, (i64, String)>> = inner_calls(&call)
            .iter()
            .map(
                |inner| match (inner.method.as_str(), inner.params.as_slice()) {
                    ("client.list_workers", [X::Bool(true)]) => Ok(py::value(&Py::List(vec![
                        Py::Str("a.example.com".into()),
                        Py::Str("b.example.com".into()),
                    ]))),
                    ("client.list_workers", [X::Bool(false)]) => Ok(py::value(&Py::List(vec![]))),
                    ("client.get_worker_info", [X::Str(name)]) => info(name),
                    _ => panic!("{inner:?}"),
                },
            )
            .collect();
        Reply::Close(hub_response(py::multicall(&items)).wire(false))
    }
}

/// No character of `text` is a control character, nor a bidirectional override or a line separator.
fn assert_no_raw_controls(text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| {
            c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
        })
        .collect();
    assert!(bad.is_empty(), "raw control characters {bad:?} in {text:?}");
}

#[tokio::test]
async fn when_no_worker_can_be_decoded_the_collection_fails() {
    // Every get_worker_info faults: the hub has workers, the scrape has none to show.
    let names: Vec<String> = fixture_exports().into_iter().map(|e| e.name).collect();
    let hub = TestHub::start(fixture_handler(Quirks {
        faulting: names.clone(),
        ..Quirks::default()
    }))
    .await;
    let error = message(hub.source().collect_workers().await);
    assert!(
        error.starts_with(&format!("unexpected data in {}: ", hub.url))
            && error.contains(&format!(
                "none of the {} workers the hub lists could be read",
                names.len()
            ))
            && error.contains("DoesNotExist: Worker matching query does not exist."),
        "{error}"
    );
    let error = message(hub.source().collect_tasks().await);
    assert!(error.contains("could be read"), "{error}");

    // Exports that cannot be decoded at all.
    let hub = TestHub::start(two_worker_handler(|_| Ok(py::value(&Py::Int(7))))).await;
    let error = message(hub.source().collect_workers().await);
    assert!(
        error.contains("none of the 2 workers the hub lists could be read")
            && error.contains("not a struct"),
        "{error}"
    );

    // Through the exporter: kobo_up 0, no worker families.
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let options = CollectorOptions {
        task_metrics: false,
        reconnect_backoff_max: Duration::ZERO,
        ..CollectorOptions::default()
    };
    let collector = HubCollector::new(Arc::new(hub.source()), options);
    let client = rocket::local::asynchronous::Client::tracked(kobo_exporter::routes::build(
        figment, collector,
    ))
    .await
    .expect("rocket");
    let body = common::get_text(&client, "/metrics").await;
    let parsed = parse(&body).expect("parses");
    assert_eq!(sample(&parsed, "kobo_up", &[]), Some(0.0), "{body}");

    // One worker readable is a partial scrape, not a failure; a hub with no workers is not one either.
    let hub = TestHub::start(two_worker_handler(|name| {
        let export = fixture_exports().into_iter().next().expect("a worker");
        if name == "a.example.com" {
            Ok(py::value(
                &Export {
                    name: name.into(),
                    ..export
                }
                .py(),
            ))
        } else {
            Err((
                1,
                "DoesNotExist: Worker matching query does not exist.".into(),
            ))
        }
    }))
    .await;
    let snapshot = hub.source().collect_workers().await.expect("partial");
    assert_eq!(snapshot.workers.len(), 1);
    assert_eq!(snapshot.warnings.len(), 1, "{:?}", snapshot.warnings);
    let hub = TestHub::start(synthetic_handler(0)).await;
    let snapshot = hub.source().collect_workers().await.expect("no workers");
    assert!(snapshot.workers.is_empty() && snapshot.warnings.is_empty());

    // Every listed worker deleted between the two requests: truly no workers, not a failure.
    let missing = capture(INFO_MISSING).result_value().to_string();
    let hub = TestHub::start(two_worker_handler(move |_| Ok(missing.clone()))).await;
    let snapshot = hub.source().collect_workers().await.expect("all deleted");
    assert!(snapshot.workers.is_empty());
    assert_eq!(snapshot.warnings.len(), 2, "{:?}", snapshot.warnings);
}

#[tokio::test]
async fn control_characters_from_the_hub_are_escaped_in_errors_and_warnings() {
    // A raw CR is a line end to an XML parser (only `&#13;` stays a CR, below).
    let nasty = "Boom\u{1b}[2K\u{1b}[1Afake: kobo_up 1\tand\u{7} \u{202e}desrever";
    // A top-level fault.
    let fault = py::fault(1, nasty);
    let (error, _) =
        error_from(move |_| Reply::Close(hub_response(fault.clone()).wire(false))).await;
    assert_no_raw_controls(&error);
    assert!(
        error.contains(
            "fault 1: Boom\\u{1b}[2K\\u{1b}[1Afake: kobo_up 1\\tand\\u{7} \\u{202e}desrever"
        ),
        "{error}"
    );
    let fault = py::fault(1, "Boom CR fake").replace(" CR ", "&#13;");
    let (error, _) =
        error_from(move |_| Reply::Close(hub_response(fault.clone()).wire(false))).await;
    assert_no_raw_controls(&error);
    assert!(error.ends_with("fault 1: Boom\\rfake"), "{error}");
    // A fault inside the multicall of the lists.
    let hub = TestHub::start(fixture_handler(Quirks {
        list_fault: Some((false, nasty.into())),
        ..Quirks::default()
    }))
    .await;
    let error = message(hub.source().collect_workers().await);
    assert_no_raw_controls(&error);
    assert!(error.contains("Boom\\u{1b}[2K"), "{error}");
    // Faults of get_worker_info (warnings), one worker with a name full of control characters.
    let nasty_fault = nasty.to_string();
    let hub = TestHub::start(two_worker_handler(move |name| {
        let export = fixture_exports().into_iter().next().expect("a worker");
        if name == "a.example.com" {
            Ok(py::value(
                &Export {
                    name: "b\u{1b}[31m\rgus".into(),
                    ..export
                }
                .py(),
            ))
        } else {
            Err((1, nasty_fault.clone()))
        }
    }))
    .await;
    let error = message(hub.source().collect_workers().await);
    assert_no_raw_controls(&error);
    assert!(error.contains("\"b\\u{1b}[31m\\ngus\""), "{error}");
    let hub = TestHub::start(two_worker_handler(move |name| {
        let export = fixture_exports().into_iter().next().expect("a worker");
        if name == "a.example.com" {
            Ok(py::value(
                &Export {
                    name: name.into(),
                    ..export
                }
                .py(),
            ))
        } else {
            Err((1, nasty.into()))
        }
    }))
    .await;
    let snapshot = hub.source().collect_workers().await.expect("partial");
    assert_eq!(snapshot.warnings.len(), 1);
    assert_no_raw_controls(&snapshot.warnings[0].message);
    assert!(
        snapshot.warnings[0].message.contains("Boom\\u{1b}[2K"),
        "{:?}",
        snapshot.warnings
    );

    // HTTP error bodies, HTML titles, header values (a tab is a valid header character).
    let body = format!("<html><head><title>Oops{nasty}</title></head></html>");
    let (error, _) = error_from(move |_| {
        Reply::Close(http(
            "500 Internal Server Error",
            &[("Content-Type", "text/html;\tcharset=utf-8")],
            body.as_bytes(),
        ))
    })
    .await;
    assert_no_raw_controls(&error);
    assert!(error.contains("text/html;\\tcharset=utf-8"), "{error}");
    let (error, _) = error_from(move |_| {
        Reply::Close(http(
            "502 Bad Gateway",
            &[("Content-Type", "text/plain")],
            nasty.as_bytes(),
        ))
    })
    .await;
    assert_no_raw_controls(&error);
    let (error, _) = error_from(|_| {
        Reply::Close(http(
            "302 Found",
            &[("Location", "https://elsewhere.example/\tx")],
            b"",
        ))
    })
    .await;
    assert_no_raw_controls(&error);
    assert!(error.contains("elsewhere.example/\\tx"), "{error}");
    // Not XML-RPC: the diagnosis quotes the hub's element names.
    let (error, _) = error_from(|_| {
        Reply::Close(http(
            "200 OK",
            &[("Content-Type", "text/xml")],
            "<x\u{1b}[2Ky></x\u{1b}[2Ky>".as_bytes(),
        ))
    })
    .await;
    assert_no_raw_controls(&error);
}

#[tokio::test]
async fn an_echoed_authorization_header_is_scrubbed_in_every_form() {
    // base64("monitor:hunter2 s3cret"), as sent: see credentials_are_sent_and_never_shown.
    let basic = "bW9uaXRvcjpodW50ZXIyIHMzY3JldA==";
    let leaks = |error: &str, secret: &str| {
        // No 8 characters in a row of the secret, so that a cut-off copy does not leak either.
        let chars: Vec<char> = secret.chars().collect();
        chars
            .windows(8)
            .map(|w| w.iter().collect::<String>())
            .find(|part| error.contains(part.as_str()))
    };
    let echo = |request: &Received| -> String {
        request
            .header("authorization")
            .unwrap_or("none")
            .to_string()
    };
    // In a plain-text error page, at its start and cut off at the end of the quoted part.
    for padding in [0, 90, 100, 110] {
        let (error, _) = error_from(move |request| {
            let body = format!(
                "{}Authorization: {} was refused",
                "x".repeat(padding),
                echo(request)
            );
            Reply::Close(http(
                "400 Bad Request",
                &[("Content-Type", "text/plain")],
                body.as_bytes(),
            ))
        })
        .await;
        assert_eq!(leaks(&error, basic), None, "{error}");
        if padding == 0 {
            assert!(
                error.contains("Authorization: Basic *** was refused"),
                "{error}"
            );
        }
    }
    // In a fault string (a Django debug dump of the request), in a multicall fault, in an HTML title.
    let (error, _) = error_from(move |request| {
        let fault = format!(
            "ValueError: {{'HTTP_AUTHORIZATION': '{}', 'HTTP_HOST': 'hub'}}",
            echo(request)
        );
        Reply::Close(hub_response(py::fault(1, &fault)).wire(false))
    })
    .await;
    assert_eq!(leaks(&error, basic), None, "{error}");
    assert!(
        error.contains("'HTTP_AUTHORIZATION': 'Basic ***', 'HTTP_HOST': 'hub'"),
        "{error}"
    );
    let (error, _) = error_from(move |request| {
        let body = format!(
            "<html><head><title>Denied for {}</title></head></html>",
            echo(request)
        );
        Reply::Close(http(
            "403 Forbidden",
            &[("Content-Type", "text/html")],
            body.as_bytes(),
        ))
    })
    .await;
    assert_eq!(leaks(&error, basic), None, "{error}");
    assert!(error.contains("Denied for Basic ***"), "{error}");

    // The bearer token, in the header form and alone; and as a warning for one worker.
    let hub = TestHub::start(move |request: &Received| {
        let body = format!("bad {} (token {TOKEN})", echo(request));
        Reply::Close(http(
            "401 Unauthorized",
            &[("Content-Type", "text/plain")],
            body.as_bytes(),
        ))
    })
    .await;
    let options = XmlRpcOptions {
        bearer_token: Some(TOKEN.into()),
        ..hub.options()
    };
    let error = message(
        XmlRpcSource::new(options)
            .expect("source")
            .collect_workers()
            .await,
    );
    assert_eq!(leaks(&error, TOKEN), None, "{error}");
    assert!(error.contains("bad Bearer *** (token ***)"), "{error}");

    let header = Arc::new(Mutex::new(String::new()));
    let seen = Arc::clone(&header);
    let handler = two_worker_handler(move |name| {
        let export = fixture_exports().into_iter().next().expect("a worker");
        if name == "a.example.com" {
            Ok(py::value(
                &Export {
                    name: name.into(),
                    ..export
                }
                .py(),
            ))
        } else {
            Err((
                1,
                format!("PermissionDenied: {}", seen.lock().expect("header")),
            ))
        }
    });
    let hub = TestHub::start(move |request: &Received| {
        *header.lock().expect("header") = echo(request);
        handler(request)
    })
    .await;
    let options = XmlRpcOptions {
        username: Some("monitor".into()),
        password: Some(PASSWORD.into()),
        ..hub.options()
    };
    let snapshot = XmlRpcSource::new(options)
        .expect("source")
        .collect_workers()
        .await
        .expect("partial");
    assert_eq!(snapshot.warnings.len(), 1);
    assert_eq!(
        leaks(&snapshot.warnings[0].message, basic),
        None,
        "{:?}",
        snapshot.warnings
    );
    assert!(
        snapshot.warnings[0]
            .message
            .contains("PermissionDenied: Basic ***"),
        "{:?}",
        snapshot.warnings
    );
}
