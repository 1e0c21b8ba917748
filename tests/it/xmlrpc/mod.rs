//! The XML-RPC source against local test hubs: [`kobo_testkit::hub_server`]'s HTTP server on 127.0.0.1
//! (hyper; requests read by dxr and recorded) answering with the real wire captures of a kobo 0.42.0 hub
//! holding the fixture (`testkit/data/xmlrpc-samples.md`, read at run time), byte for byte; and its one
//! raw-TCP server for what is not HTTP, or HTTP cut short.
//!
//! The captures hold `client.get_worker_info` for two of the fixture's five workers (and the empty struct of
//! an unknown one); the other three, the multicall envelope and the synthetic hubs are written by
//! [`py`], a copy of Python's `xmlrpc.client` marshaller that kobo uses, checked here to reproduce every
//! captured response byte for byte.
//!
//! - [`workers`]: the fixture hub's records and rendering (equal to the SQLite source's for every family
//!   XML-RPC provides, and the `xmlrpc__fixture` snapshot); the exact method sequence and the number of
//!   requests per scrape for 0, 1, 300 and 2,000 workers (never a `worker.*` call); faults inside the
//!   multicall, vanished and undecodable workers;
//! - [`errors`]: faults at the top level, HTML error pages, HTTP 500/502/401, redirects, malformed and
//!   truncated XML, a broken-off body, a body over the size cap, a server that never answers, a refused
//!   connection; gzip and connection reuse;
//! - [`security`]: basic auth, bearer token, credentials in the URL, and that no password or token appears
//!   in an error, echoed or not; control characters from the hub escaped;
//! - [`tasks`]: task metrics (collections with `tasks` asked for): the hub answers `client.get_tasks` and
//!   `client.task_info` from the fixture's `hub_task` rows in kobo's wire format ([`tasks::TaskHub`],
//!   checked against the captured answers byte for byte). Checked: the task and queue families equal the
//!   SQLite source's task collection on the same hub (and the `xmlrpc__fixture_with_tasks`
//!   snapshot), also with 2,000 more tasks; the exact requests (one `client.get_tasks` of the active states,
//!   one multicall of `client.task_info` for one task per arch no worker has) and that a plain `collect()`
//!   calls neither; a fault on `client.get_tasks` fails the task collection and the collector then serves
//!   the workers; an arch that cannot be named leaves its tasks out of the groups (not of the per-worker
//!   counts) with a warning.
#![cfg(feature = "xmlrpc")]

mod errors;
mod security;
mod tasks;
mod workers;

use crate::common;
use kobo_testkit::CollectExt;

use std::collections::BTreeMap;
use std::time::Duration;

use kobo_backend_xmlrpc::{XmlRpcOptions, XmlRpcSource};
use kobo_exporter::api::{DataSource, HubSnapshot, Part, SourceError, WorkerDir};
use kobo_testkit::hub_server::{
    Call, HubServer, Reply, Request, Response, Value, int, raw_http_server,
};

use crate::support::kobo_wire;
use kobo_wire::{Export, Py, fixture_exports, py, utc};

const PASSWORD: &str = "hunter2 s3cret";
const TOKEN: &str = "t0ken-abcdef";

// ---------------------------------------------------------------------------------------------------------
// The captures.

/// The response captured under the heading that starts with `heading` (after `### `): its headers as
/// captured (a real `Date`; `Content-Length` checked against the body, then hyper's) and its body, byte for
/// byte.
fn capture(heading: &str) -> Response {
    let samples = kobo_testkit::data::read("xmlrpc-samples.md");
    let section = samples
        .split("\n### ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("no section {heading:?} in xmlrpc-samples.md"));
    let marker = "Response on the wire:\n```http\n";
    let start = section.find(marker).expect("a response capture") + marker.len();
    let rest = &section[start..];
    let end = rest.find("\n```").expect("end of the capture");
    let (head, body) = rest[..end].split_once("\n\n").expect("headers and body");
    // The fence follows the body's final newline.
    let body = format!("{body}\n");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(": ").expect("header line");
            let value = if name.eq_ignore_ascii_case("date") {
                "Tue, 25 Nov 2025 18:18:40 GMT"
            } else {
                value
            };
            (name.to_string(), value.to_string())
        })
        .collect();
    let response = Response {
        status,
        headers,
        body: body.into_bytes(),
    };
    let length: usize = response
        .header("Content-Length")
        .map(|v| v.parse().expect("Content-Length"))
        .expect("Content-Length");
    assert_eq!(
        response.body.len(),
        length,
        "capture {heading:?}: body length"
    );
    response
}

/// The body of a captured response, as text.
fn text(response: &Response) -> &str {
    std::str::from_utf8(&response.body).expect("a UTF-8 body")
}

/// The result `<value>...</value>\n` of a `<params>` response, as Python dumped it.
fn result_value(response: &Response) -> &str {
    let body = text(response);
    let start = body.find("<param>\n").expect("a params response") + "<param>\n".len();
    let end = body.rfind("</param>\n").expect("</param>");
    &body[start..end]
}

const LIST_ENABLED: &str = "client.list_workers() - enabled workers";
const LIST_DISABLED: &str = "client.list_workers(False) - disabled workers";
const INFO_SEEN: &str = "client.get_worker_info(name) - existing worker with last_seen";
const INFO_NEVER_SEEN: &str = "client.get_worker_info(name) - existing worker, never seen";
const INFO_MISSING: &str = "client.get_worker_info(name) - MISSING worker";
const WORKER_MULTICALL: &str = "system.multicall on the worker handler";
const LOGIN_REQUIRED: &str = "client.cancel_task without login - fault";
const NOT_SUPPORTED: &str = "system.listMethods is NOT registered";
const WORKER_MISSING: &str = "DoesNotExist: Worker matching query does not exist.";

// ---------------------------------------------------------------------------------------------------------
// Reading the requests (dxr, in kobo_testkit::hub_server).

/// The call of a recorded request.
fn call_of(request: &Request) -> Call {
    request.call().expect("an XML-RPC call").clone()
}

/// The calls of every request so far.
fn calls(hub: &HubServer) -> Vec<Call> {
    hub.received().iter().map(|r| call_of(r)).collect()
}

/// The integers of an array parameter.
fn ints(value: &Value) -> Vec<i64> {
    let Value::Array(items) = value else {
        panic!("an array of integers: {value:?}")
    };
    items
        .iter()
        .map(|item| int(item).unwrap_or_else(|| panic!("an integer: {item:?}")))
        .collect()
}

/// A `client.list_workers(enabled)` call.
fn list_workers(enabled: bool) -> Call {
    Call {
        method: "client.list_workers".into(),
        params: vec![Value::Boolean(enabled)],
    }
}

/// The worker names of `client.get_worker_info` calls.
fn worker_info_names(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| match (c.method.as_str(), c.params.as_slice()) {
            ("client.get_worker_info", [Value::String(name)]) => name.clone(),
            _ => panic!("not a get_worker_info call: {c:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Hubs.

type Handler = Box<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A recording hub answering with `handler`.
async fn hub(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HubServer {
    HubServer::start(handler).await.expect("start the test hub")
}

/// The XML-RPC source's options and source for a hub's URL (a timeout no test reaches by accident).
fn options(url: &str) -> XmlRpcOptions {
    XmlRpcOptions {
        request_timeout: Duration::from_secs(30),
        ..XmlRpcOptions::new(url)
    }
}

fn source(hub: &HubServer) -> XmlRpcSource {
    XmlRpcSource::new(options(&hub.url())).expect("source")
}

/// A response with this status, headers and body that closes its connection.
fn http(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
    let mut response = Response::new(status, headers, body);
    response.headers.push(("Connection".into(), "close".into()));
    response.into()
}

/// An XML-RPC body in the hub's own headers.
fn xml(body: impl Into<Vec<u8>>) -> Reply {
    Response::xml(body).into()
}

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
    extra_tasks: Vec<tasks::TaskRow>,
    /// The hub's tasks, for a test that changes them between scrapes (the fixture's when unset).
    live: Option<std::sync::Arc<std::sync::Mutex<tasks::TaskHub>>>,
}

/// The fixture hub, served from the captures where they exist.
fn fixture_handler(quirks: Quirks) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let live = quirks.live.clone().unwrap_or_else(|| {
        let mut hub = tasks::TaskHub::fixture();
        hub.tasks.extend(quirks.extra_tasks.iter().cloned());
        std::sync::Arc::new(std::sync::Mutex::new(hub))
    });
    let exports = live.lock().expect("the hub's tasks").exports.clone();
    let captured: BTreeMap<String, String> = [INFO_SEEN, INFO_NEVER_SEEN]
        .iter()
        .map(|h| {
            let c = capture(h);
            let name = result_value(&c)
                .split("<name>name</name>\n<value><string>")
                .nth(1)
                .and_then(|s| s.split('<').next())
                .expect("name in capture")
                .to_string();
            (name, result_value(&c).to_string())
        })
        .collect();
    let missing = result_value(&capture(INFO_MISSING)).to_string();
    let list_disabled = capture(LIST_DISABLED);
    // `client.list_workers(True)`, with the vanished workers listed too.
    let list_enabled = if quirks.vanished.is_empty() {
        capture(LIST_ENABLED)
    } else {
        let mut names: Vec<Py> = exports
            .iter()
            .filter(|e| e.enabled)
            .map(|e| Py::Str(e.name.clone()))
            .collect();
        names.extend(quirks.vanished.iter().map(|n| Py::Str(n.clone())));
        Response::xml(py::response(&Py::List(names)))
    };
    // The lists as results inside a multicall (their dumped values), or the fault asked for.
    let list_result = {
        let enabled_value = result_value(&list_enabled).to_string();
        let disabled_value = result_value(&list_disabled).to_string();
        let list_fault = quirks.list_fault.clone();
        move |enabled: bool| -> Result<String, (i64, String)> {
            match &list_fault {
                Some((faulting, fault)) if *faulting == enabled => Err((1, fault.clone())),
                _ if enabled => Ok(enabled_value.clone()),
                _ => Ok(disabled_value.clone()),
            }
        }
    };
    move |request: &Request| {
        let hub = live.lock().expect("the hub's tasks").clone();
        let call = call_of(request);
        let response = match (call.method.as_str(), call.params.as_slice()) {
            ("client.list_workers", [] | [Value::Boolean(true)]) => list_enabled.clone(),
            ("client.list_workers", [Value::Boolean(false)]) => list_disabled.clone(),
            ("system.multicall", _) => Response::xml(multicall(&call, |inner| {
                match (inner.method.as_str(), inner.params.as_slice()) {
                    ("client.get_worker_info", [Value::String(name)]) => {
                        if quirks.faulting.contains(name) {
                            Err((1, WORKER_MISSING.to_string()))
                        } else if let Some(dumped) = captured.get(name) {
                            Ok(dumped.clone())
                        } else if let Some(export) = exports.iter().find(|e| &e.name == name) {
                            Ok(py::value(&export.py()))
                        } else {
                            Ok(missing.clone())
                        }
                    }
                    ("client.list_workers", [] | [Value::Boolean(true)]) => list_result(true),
                    ("client.list_workers", [Value::Boolean(false)]) => list_result(false),
                    ("client.get_tasks", [ids, states @ ..]) if states.len() <= 1 => {
                        let states = states.first().map(ints).unwrap_or_default();
                        Ok(py::value(&hub.get_tasks(&ints(ids), &states)))
                    }
                    ("client.task_info", [id]) => match int(id)
                        .and_then(|id| hub.task(id).filter(|_| !quirks.gone_tasks.contains(&id)))
                    {
                        Some(task) => Ok(py::value(&hub.export(task, false))),
                        None => Err((1, tasks::TASK_MISSING.to_string())),
                    },
                    (method, _) => Err((
                        1,
                        format!("<class 'Exception'>:method \"{method}\" is not supported"),
                    )),
                }
            })),
            ("client.get_tasks", [ids, states @ ..]) if states.len() <= 1 => {
                match &quirks.tasks_fault {
                    Some(fault) => Response::xml(py::fault(1, fault)),
                    None => {
                        let states = states.first().map(ints).unwrap_or_default();
                        Response::xml(py::response(&hub.get_tasks(&ints(ids), &states)))
                    }
                }
            }
            (method, _) => Response::xml(py::fault(
                1,
                &format!("Exception: method \"{method}\" is not supported"),
            )),
        };
        let response = if quirks.keep_alive {
            response.keep_alive()
        } else {
            response
        };
        if quirks.gzip && request.accepts_gzip() {
            response.gzipped().into()
        } else {
            response.into()
        }
    }
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

/// The dumped answer of a multicall to a hub whose workers are `exports`: the lists, `get_worker_info`
/// by `info` (given the name); anything else panics the hub (and fails the test's scrape).
fn multicall_of(
    call: &Call,
    exports: &[Export],
    info: impl Fn(&str) -> Result<String, (i64, String)>,
) -> String {
    // `client.list_workers(enabled)`: the sorted names.
    let names = |enabled: bool| {
        let mut names: Vec<String> = exports
            .iter()
            .filter(|e| e.enabled == enabled)
            .map(|e| e.name.clone())
            .collect();
        names.sort();
        Py::List(names.into_iter().map(Py::Str).collect())
    };
    multicall(call, |inner| {
        match (inner.method.as_str(), inner.params.as_slice()) {
            ("client.list_workers", [Value::Boolean(enabled)]) => Ok(py::value(&names(*enabled))),
            ("client.get_worker_info", [Value::String(name)]) => info(name),
            _ => panic!("{inner:?}"),
        }
    })
}

/// The dumped answer of a `system.multicall`: each inner call's `answer`, a dumped value or a fault.
fn multicall(call: &Call, answer: impl Fn(&Call) -> Result<String, (i64, String)>) -> String {
    let items: Vec<Result<String, (i64, String)>> = call.inner_calls().iter().map(answer).collect();
    py::multicall(&items)
}

/// A synthetic hub of `n` workers (even ones enabled), some with odd names, answered by the marshaller.
fn synthetic_handler(n: usize) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let exports = synthetic_exports(n);
    move |request: &Request| {
        let call = call_of(request);
        let body = match call.method.as_str() {
            "system.multicall" => multicall_of(&call, &exports, |name| {
                let export = exports
                    .iter()
                    .find(|e| e.name == name)
                    .expect("a known worker");
                Ok(py::value(&export.py()))
            }),
            method => py::fault(
                1,
                &format!("Exception: method \"{method}\" is not supported"),
            ),
        };
        xml(body)
    }
}

/// A hub of two enabled workers, `a.example.com` and `b.example.com`, whose `client.get_worker_info`
/// answers (inside the multicall) are given by `info`.
fn two_worker_handler(
    info: impl Fn(&str) -> Result<String, (i64, String)> + Send + Sync + 'static,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let two = ["a.example.com", "b.example.com"].map(|name| Export {
        name: name.into(),
        enabled: true,
        ..synthetic_exports(1).remove(0)
    });
    move |request: &Request| xml(multicall_of(&call_of(request), &two, &info))
}

/// The two-worker hub where `a.example.com` answers a fixture worker's export named `shown`, and
/// `b.example.com` the fault `fault(request)` (given the request being answered).
fn one_of_two_readable(
    shown: &str,
    fault: impl Fn(&Request) -> String + Send + Sync + 'static,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let a = py::value(
        &Export {
            name: shown.into(),
            ..fixture_exports().remove(0)
        }
        .py(),
    );
    move |request: &Request| {
        let b = fault(request);
        let handler = two_worker_handler({
            let a = a.clone();
            move |name| {
                if name == "a.example.com" {
                    Ok(a.clone())
                } else {
                    Err((1, b.clone()))
                }
            }
        });
        handler(request)
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

// ---------------------------------------------------------------------------------------------------------
// Scrapes.

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

/// The error of a scrape of `url` with basic auth: it names the hub and never shows the password.
async fn error_with_password(url: &str) -> String {
    let options = XmlRpcOptions {
        username: Some("monitor".into()),
        password: Some(PASSWORD.into()),
        ..options(url)
    };
    let error = message(
        XmlRpcSource::new(options)
            .expect("source")
            .collect_workers()
            .await,
    );
    assert!(error.contains(url), "the error names the hub: {error}");
    assert!(
        !error.contains(PASSWORD) && !error.contains("s3cret"),
        "the password leaked: {error}"
    );
    error
}

/// A hub that answers every request with `reply`, and the error a scrape of it gives.
async fn error_from(
    reply: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> (String, HubServer) {
    let hub = hub(reply).await;
    (error_with_password(&hub.url()).await, hub)
}

/// What a hub answers in a table of cases: an HTTP response (hyper), or raw bytes that are not one.
enum Answer {
    Http(Reply),
    Raw(Vec<u8>),
}

/// The error a scrape of a hub that gives `answer` to every request gives.
async fn error_of(answer: Answer) -> String {
    match answer {
        Answer::Http(reply) => error_from(move |_| reply.clone()).await.0,
        Answer::Raw(bytes) => {
            let server = raw_http_server(bytes).await.expect("raw server");
            error_with_password(&server.url()).await
        }
    }
}

/// For each case, a hub answering every request so: the error of a scrape says every one of `says` (and
/// never the password: [`error_with_password`]). The errors, in the order of the cases.
async fn check_errors(cases: Vec<(Answer, &[&str])>) -> Vec<String> {
    let mut errors = Vec::new();
    for (answer, says) in cases {
        let error = error_of(answer).await;
        for part in says {
            assert!(error.contains(part), "{part:?} in {error}");
        }
        errors.push(error);
    }
    errors
}

/// `text` against the snapshot `name` in `snapshots/`, described so.
fn assert_snapshot(name: &str, description: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => "../../../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
        description => description,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

/// The task and queue families, which the XML-RPC source provides only with task metrics.
const TASK_FAMILIES: [&str; 5] = [
    "kobo_worker_tasks",
    "kobo_tasks",
    "kobo_tasks_oldest_created_timestamp_seconds",
    "kobo_queue_workers",
    "kobo_queue_workers_ready",
];

/// The snapshot's warnings, each with the part of the collection it belongs to.
pub fn warnings(snapshot: &HubSnapshot) -> Vec<(Part, &str)> {
    snapshot
        .warnings
        .iter()
        .map(|w| (w.part, w.message.as_str()))
        .collect()
}
