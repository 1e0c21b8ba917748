//! A small kobo hub served over XML-RPC on 127.0.0.1, for tests and benchmarks of the XML-RPC source.
//!
//! [`XmlRpcHub`] answers what the exporter calls, in kobo's exact wire format ([`crate::wire`]: Python's
//! `xmlrpc.client` marshaller):
//!
//! - `client.list_workers(True)` / `client.list_workers(False)` (no argument: `True`): the sorted names of
//!   the enabled / disabled workers;
//! - `client.get_worker_info(name)`: the worker's export, `{}` for an unknown name;
//! - `system.multicall` of those: one `[result]` or fault struct per call, in order.
//!
//! Anything else gets a fault (at the top level as kobo's dispatcher gives it; inside a multicall as
//! Python's `system_multicall` does). A body that is not an XML-RPC `methodCall` gets a fault too; an HTTP
//! request that cannot carry one (not a POST, no `Content-Length`, a body over the limit) gets a `4xx`
//! answer. Every response closes its connection (`Connection: close`), as the hub's gunicorn does.
//! The request path is not checked: [`XmlRpcHub::url`] gives kobo's `/xmlrpc/client/`.
//!
//! The HTTP is [`crate::hub_server`]'s (hyper), the requests are read by dxr, and the answers are dumped
//! once at start, so a multicall for thousands of workers costs no more than copying their exports.
//!
//! [`exports_from_sqlite`] reads the workers of a hub database (one written by kobo-hubgen, or kobo's own)
//! as `Worker.export()` gives them, to serve them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dxr::Value;

use crate::hub_server::{Call, HubServer, Response, int};
use crate::wire::py::{self, Py};
use crate::wire::{Export, utc};

/// A kobo hub serving a fixed set of workers over XML-RPC on 127.0.0.1; stops serving when dropped.
#[derive(Debug)]
pub struct XmlRpcHub {
    server: HubServer,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicUsize,
    calls: AtomicUsize,
}

impl XmlRpcHub {
    /// Serves these workers on a free port of 127.0.0.1 (must be called inside a tokio runtime).
    pub async fn start(exports: Vec<Export>) -> std::io::Result<XmlRpcHub> {
        let answers = Answers::new(&exports);
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        let server = HubServer::start_unrecorded(move |request| {
            let (body, calls) = answers.answer(request.call());
            shared.calls.fetch_add(calls, Ordering::SeqCst);
            shared.requests.fetch_add(1, Ordering::SeqCst);
            Response::xml(body).into()
        })
        .await?;
        Ok(XmlRpcHub { server, counters })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The URL to give the exporter's XML-RPC source: kobo's client endpoint, `http://<addr>/xmlrpc/client/`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// XML-RPC requests answered so far, faults included (not the `4xx` of requests that carry no call).
    pub fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// XML-RPC calls answered so far, faults included: a plain call counts one, a `system.multicall` counts
    /// the calls inside it.
    pub fn calls(&self) -> usize {
        self.counters.calls.load(Ordering::SeqCst)
    }
}

/// Every worker of the SQLite hub database at `path` as `Worker.export()` gives it, ordered by id: three
/// queries (workers, their arches, their channels), whatever the number of workers. Last seen is the mtime
/// of the worker's file in `worker_dir` (kobo's URL-safe base64 of the name), `None` for a worker without
/// one, or for every worker without `worker_dir`.
pub fn exports_from_sqlite(path: &Path, worker_dir: Option<&Path>) -> Result<Vec<Export>, String> {
    let shown = path.display();
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("cannot open the hub database {shown}: {e}"))?;
    let query = |what: &str, e: rusqlite::Error| format!("{shown}: reading {what}: {e}");
    let mut exports: Vec<Export> = conn
        .prepare(
            "SELECT id, name, enabled, max_load, ready, task_count, current_load FROM hub_worker \
             ORDER BY id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |r| {
                    Ok(Export {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        arches: Vec::new(),
                        channels: Vec::new(),
                        enabled: r.get(2)?,
                        max_load: r.get(3)?,
                        ready: r.get(4)?,
                        task_count: r.get(5)?,
                        current_load: r.get(6)?,
                        last_seen: None,
                    })
                })?
                .collect()
        })
        .map_err(|e| query("the workers", e))?;
    let index: HashMap<i64, usize> = exports
        .iter()
        .enumerate()
        .map(|(at, export)| (export.id, at))
        .collect();

    let arches: Vec<(i64, i64, String, String)> = conn
        .prepare(
            "SELECT wa.worker_id, a.id, a.name, a.pretty_name FROM hub_worker_arches wa \
             JOIN hub_arch a ON a.id = wa.arch_id ORDER BY wa.worker_id, a.name, a.id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .map_err(|e| query("the workers' arches", e))?;
    for (worker, id, name, pretty) in arches {
        if let Some(&at) = index.get(&worker) {
            exports[at].arches.push((id, name, pretty));
        }
    }
    let channels: Vec<(i64, i64, String)> = conn
        .prepare(
            "SELECT wc.worker_id, c.id, c.name FROM hub_worker_channels wc \
             JOIN hub_channel c ON c.id = wc.channel_id ORDER BY wc.worker_id, c.id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(|e| query("the workers' channels", e))?;
    for (worker, id, name) in channels {
        if let Some(&at) = index.get(&worker) {
            exports[at].channels.push((id, name));
        }
    }

    if let Some(dir) = worker_dir {
        let mtimes = kobo_backend_api::worker_dir::WorkerDir::new(dir)
            .read_mtimes()
            .map_err(|e| e.to_string())?;
        for export in &mut exports {
            let file = kobo_backend_api::worker_dir::file_name(&export.name);
            export.last_seen = mtimes.get(&file).map(|&mtime| utc(mtime));
        }
    }
    Ok(exports)
}

// ---------------------------------------------------------------------------------------------------------
// The answers.

/// The hub's answers, dumped once: the two lists and each worker's export.
#[derive(Debug)]
struct Answers {
    /// `Marshaller.dump` of the enabled / disabled names.
    enabled: String,
    disabled: String,
    /// Worker name to `Marshaller.dump` of its export.
    exports: HashMap<String, String>,
    /// `Marshaller.dump` of `{}`.
    empty: String,
}

impl Answers {
    fn new(exports: &[Export]) -> Answers {
        let names = |enabled: bool| {
            let mut names: Vec<&str> = exports
                .iter()
                .filter(|e| e.enabled == enabled)
                .map(|e| e.name.as_str())
                .collect();
            names.sort_unstable();
            py::value(&Py::List(
                names.into_iter().map(|n| Py::Str(n.to_string())).collect(),
            ))
        };
        Answers {
            enabled: names(true),
            disabled: names(false),
            exports: exports
                .iter()
                .map(|e| (e.name.clone(), py::value(&e.py())))
                .collect(),
            empty: py::value(&Py::Dict(Vec::new())),
        }
    }

    /// The body answering a request's call (or why it holds none), and how many calls it answered.
    fn answer(&self, call: Result<&Call, &str>) -> (String, usize) {
        let call = match call {
            Ok(call) => call,
            // kobo's dispatcher answers an unreadable call with a fault, as it does any exception.
            Err(why) => return (py::fault(1, &format!("ExpatError: {why}")), 0),
        };
        if call.method == "system.multicall" {
            let calls = match call.multicall() {
                Ok(calls) => calls,
                Err(why) => return (py::fault(1, &why), 0),
            };
            let items: Vec<Result<&str, (i64, String)>> = calls
                .iter()
                .map(|inner| {
                    let inner = inner.as_ref().map_err(|why| (1, why.clone()))?;
                    self.inner(inner)
                })
                .collect();
            let mut inner = String::with_capacity(
                items
                    .iter()
                    .map(|item| item.as_ref().map_or(200, |dumped| dumped.len() + 40))
                    .sum::<usize>()
                    + 64,
            );
            for item in &items {
                match item {
                    Ok(dumped) => {
                        inner.push_str("<value><array><data>\n");
                        inner.push_str(dumped);
                        inner.push_str("</data></array></value>\n");
                    }
                    Err((code, string)) => inner.push_str(&py::value(&Py::Dict(vec![
                        ("faultCode", Py::Int(*code)),
                        ("faultString", Py::Str(string.clone())),
                    ]))),
                }
            }
            let body = py::response_of(&format!(
                "<value><array><data>\n{inner}</data></array></value>\n"
            ));
            return (body, items.len());
        }
        let body = match self.call(&call.method, &call.params) {
            Ok(dumped) => py::response_of(dumped),
            Err(Failure::Unsupported) => py::fault(
                1,
                &format!("Exception: method \"{}\" is not supported", call.method),
            ),
            Err(Failure::Arguments(why)) => py::fault(1, &format!("TypeError: {why}")),
        };
        (body, 1)
    }

    /// One call inside a `system.multicall`: its dumped result, or its fault as Python's
    /// `system_multicall` gives it.
    fn inner(&self, call: &Call) -> Result<&str, (i64, String)> {
        let method = call.method.as_str();
        if method == "system.multicall" {
            return Err((
                1,
                "<class 'Exception'>:system.multicall inside system.multicall is not supported"
                    .into(),
            ));
        }
        self.call(method, &call.params)
            .map_err(|failure| match failure {
                Failure::Unsupported => (
                    1,
                    format!("<class 'Exception'>:method \"{method}\" is not supported"),
                ),
                Failure::Arguments(why) => (1, format!("<class 'TypeError'>:{why}")),
            })
    }

    /// The dumped result of a call other than `system.multicall`.
    fn call(&self, method: &str, params: &[Value]) -> Result<&str, Failure> {
        match method {
            "client.list_workers" => match params {
                [] | [Value::Boolean(true)] => Ok(&self.enabled),
                [Value::Boolean(false)] => Ok(&self.disabled),
                [i] if int(i).is_some() => Ok(if int(i) != Some(0) {
                    &self.enabled
                } else {
                    &self.disabled
                }),
                _ => Err(Failure::Arguments(
                    "list_workers() takes at most one argument, enabled (a boolean)".into(),
                )),
            },
            "client.get_worker_info" => match params {
                [Value::String(name)] => Ok(self.exports.get(name).unwrap_or(&self.empty)),
                _ => Err(Failure::Arguments(
                    "get_worker_info() takes exactly one argument, worker_name (a string)".into(),
                )),
            },
            _ => Err(Failure::Unsupported),
        }
    }
}

/// Why a call has no result.
enum Failure {
    Unsupported,
    Arguments(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn export(id: i64, name: &str, enabled: bool) -> Export {
        Export {
            id,
            name: name.into(),
            arches: vec![(2, "x86_64".into(), "x86_64".into())],
            channels: vec![(1, "default".into())],
            enabled,
            max_load: 2,
            ready: true,
            task_count: 1,
            current_load: 1,
            last_seen: Some(utc(1_750_000_000)),
        }
    }

    fn hub_exports() -> Vec<Export> {
        vec![
            export(1, "b.example.com", true),
            export(2, "a&<x>.example.com", true),
            export(3, "off.example.com", false),
        ]
    }

    /// A request as the exporter (dxr) encodes it.
    fn call(method: &str, params: &str) -> String {
        format!(
            "<?xml version=\"1.0\"?>\n<methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>"
        )
    }

    fn worker_info(name: &str) -> String {
        format!(
            "<value><struct><member><name>methodName</name><value><string>client.get_worker_info</string></value></member>\
             <member><name>params</name><value><array><data><value><string>{name}</string></value></data></array></value></member></struct></value>"
        )
    }

    /// Calls `method` over HTTP with a `<param>` for each of these values (the XML inside `<value>`), and
    /// returns the status line and body.
    async fn post_call(hub: &XmlRpcHub, method: &str, params: &[&str]) -> (String, String) {
        let params: String = params
            .iter()
            .map(|value| format!("<param><value>{value}</value></param>"))
            .collect();
        post(hub, &call(method, &params)).await
    }

    /// Sends one request over HTTP and returns the status line and body.
    async fn post(hub: &XmlRpcHub, body: &str) -> (String, String) {
        let mut stream = TcpStream::connect(hub.addr()).await.unwrap();
        let request = format!(
            "POST /xmlrpc/client/ HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
            hub.addr(),
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        // hyper's Date, an IMF-fixdate.
        let date = head
            .lines()
            .find_map(|l| l.strip_prefix("Date: "))
            .unwrap_or_else(|| panic!("no Date in {head}"));
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    #[tokio::test]
    async fn answers_a_single_call_in_kobos_format() {
        let hub = XmlRpcHub::start(hub_exports()).await.unwrap();
        assert_eq!(
            hub.url(),
            format!("http://127.0.0.1:{}/xmlrpc/client/", hub.addr().port())
        );
        let (status, body) =
            post_call(&hub, "client.list_workers", &["<boolean>1</boolean>"]).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            body,
            "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n\
             <value><string>a&amp;&lt;x&gt;.example.com</string></value>\n\
             <value><string>b.example.com</string></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n"
        );
        let (_, body) = post_call(&hub, "client.list_workers", &["<boolean>0</boolean>"]).await;
        assert!(body.contains("<string>off.example.com</string>"), "{body}");
        assert!(!body.contains("b.example.com"), "{body}");
        let (_, body) = post_call(
            &hub,
            "client.get_worker_info",
            &["<string>b.example.com</string>"],
        )
        .await;
        assert_eq!(body, py::response(&hub_exports()[0].py()));
        let (_, body) = post_call(&hub, "client.get_worker_info", &["nobody"]).await;
        assert!(
            body.contains("<param>\n<value><struct>\n</struct></value>\n</param>"),
            "{body}"
        );
        assert_eq!((hub.requests(), hub.calls()), (4, 4));
    }

    #[tokio::test]
    async fn answers_a_multicall_in_order_with_inner_faults() {
        let hub = XmlRpcHub::start(hub_exports()).await.unwrap();
        let lists = "<value><struct><member><name>methodName</name><value><string>client.list_workers</string></value></member>\
             <member><name>params</name><value><array><data><value><boolean>0</boolean></value></data></array></value></member></struct></value>";
        let unknown = "<value><struct><member><name>methodName</name><value><string>worker.update_worker</string></value></member>\
             <member><name>params</name><value><array><data></data></array></value></member></struct></value>";
        let params = format!(
            "<param><value><array><data>{}{}{lists}{unknown}{}</data></array></value></param>",
            worker_info("a&amp;&lt;x&gt;.example.com"),
            worker_info("b.example.com"),
            worker_info("gone.example.com"),
        );
        let (status, body) = post(&hub, &call("system.multicall", &params)).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let exports = hub_exports();
        let expected = py::multicall(&[
            Ok(py::value(&exports[1].py())),
            Ok(py::value(&exports[0].py())),
            Ok(py::value(&Py::List(vec![Py::Str(
                "off.example.com".into(),
            )]))),
            Err((
                1,
                "<class 'Exception'>:method \"worker.update_worker\" is not supported".into(),
            )),
            Ok(py::value(&Py::Dict(vec![]))),
        ]);
        assert_eq!(body, expected);
        assert_eq!((hub.requests(), hub.calls()), (1, 5));
    }

    #[tokio::test]
    async fn unknown_methods_get_a_fault() {
        let hub = XmlRpcHub::start(hub_exports()).await.unwrap();
        let (status, body) = post_call(&hub, "client.enable_worker", &[]).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            body,
            py::fault(
                1,
                "Exception: method \"client.enable_worker\" is not supported"
            )
        );
        let (_, body) = post_call(&hub, "client.get_worker_info", &["<int>1</int>"]).await;
        assert!(body.contains("<name>faultCode</name>"), "{body}");
        assert!(body.contains("TypeError: get_worker_info()"), "{body}");
    }

    #[tokio::test]
    async fn malformed_requests_get_a_fault_or_a_4xx_never_a_panic() {
        let hub = XmlRpcHub::start(hub_exports()).await.unwrap();
        for body in [
            "",
            "not xml",
            "<methodCall><methodName>client.list_workers</methodName><params>",
            "<methodCall><methodName>client.list_workers</methodName></methodResponse>",
            "<methodResponse/>",
            "<methodCall><params/></methodCall>",
            "<methodCall><methodName>system.multicall</methodName><params><param><value><bogus/></value></param></params></methodCall>",
            "<methodCall><methodName>system.multicall</methodName></methodCall>",
            "<methodCall><methodName>client.get_worker_info</methodName><params><param><value><string>&nope;</string></value></param></params></methodCall>",
            "<methodCall><methodName>x</methodName><params><param><value><int>99999999999999999999</int></value></param></params></methodCall>",
            "\u{feff}<a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a>",
        ] {
            let (status, answer) = post(&hub, body).await;
            assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
            assert!(answer.contains("<fault>"), "{body}: {answer}");
        }
        let multicall_of_junk = call(
            "system.multicall",
            "<param><value><array><data><value><int>1</int></value><value><struct></struct></value></data></array></value></param>",
        );
        let (_, answer) = post(&hub, &multicall_of_junk).await;
        assert_eq!(
            answer.matches("<name>faultCode</name>").count(),
            2,
            "{answer}"
        );

        // HTTP problems: a 4xx, and the hub goes on serving.
        for raw in [
            "GET /xmlrpc/client/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /xmlrpc/client/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /xmlrpc/client/ HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
            "POST /xmlrpc/client/ HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
        ] {
            let mut stream = TcpStream::connect(hub.addr()).await.unwrap();
            stream.write_all(raw.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            assert!(response.starts_with("HTTP/1.1 4"), "{raw:?}: {response}");
        }
        let invalid_utf8 = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\xff\xfe";
        let mut stream = TcpStream::connect(hub.addr()).await.unwrap();
        stream.write_all(invalid_utf8).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.contains("not UTF-8"), "{response}");
        let (_, body) = post_call(&hub, "client.list_workers", &[]).await;
        assert!(body.contains("b.example.com"), "{body}");
    }

    #[test]
    fn requests_parse_in_linear_time() {
        // 20,000 calls in one multicall: a quadratic parser would take minutes.
        let calls: String = (0..20_000)
            .map(|i| worker_info(&format!("worker-{i:05}.example.com")))
            .collect();
        let body = call(
            "system.multicall",
            &format!("<param><value><array><data>{calls}</data></array></value></param>"),
        );
        let started = std::time::Instant::now();
        let parsed = Call::from_xml(&body).unwrap();
        assert_eq!(parsed.inner_calls().len(), 20_000);
        assert!(started.elapsed() < Duration::from_secs(10));
        let answers = Answers::new(&[export(1, "worker-00007.example.com", true)]);
        let (answer, count) = answers.answer(Ok(&parsed));
        assert_eq!(count, 20_000);
        assert_eq!(answer.matches("<name>current_load</name>").count(), 1);
    }

    /// A hub database and worker directory written by kobo-hubgen in a temporary folder: the folder, the
    /// database, the worker directory, the spec.
    fn generated(
        workers: u32,
        tasks: u32,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::path::PathBuf,
        kobo_hubgen::HubSpec,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.sqlite3");
        let spec = kobo_hubgen::HubSpec {
            workers,
            tasks,
            seed: 1,
        };
        kobo_hubgen::sqlite::generate(&db, &spec).unwrap();
        let worker_dir = dir.path().join("workers");
        kobo_hubgen::write_worker_dir(&worker_dir, &spec).unwrap();
        (dir, db, worker_dir, spec)
    }

    /// `cargo test -p kobo-hubgen --lib ten_thousand -- --ignored --nocapture`: the timings at scale.
    #[tokio::test]
    #[ignore = "a measurement: generates a hub of 10,000 workers"]
    async fn ten_thousand_workers() {
        let (_dir, db, workers, _) = generated(10_000, 1000);
        let started = std::time::Instant::now();
        let exports = exports_from_sqlite(&db, Some(&workers)).unwrap();
        println!(
            "exports_from_sqlite: {} workers in {:?}",
            exports.len(),
            started.elapsed()
        );
        assert_eq!(exports.len(), 10_000);
        let calls: String = exports.iter().map(|e| worker_info(&e.name)).collect();
        let body = call(
            "system.multicall",
            &format!("<param><value><array><data>{calls}</data></array></value></param>"),
        );
        let started = std::time::Instant::now();
        let hub = XmlRpcHub::start(exports).await.unwrap();
        println!("XmlRpcHub::start: {:?}", started.elapsed());
        let started = std::time::Instant::now();
        let (status, answer) = post(&hub, &body).await;
        println!(
            "a multicall of 10,000 get_worker_info: {} bytes asked, {} bytes answered in {:?}",
            body.len(),
            answer.len(),
            started.elapsed()
        );
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(hub.calls(), 10_000);
    }

    #[test]
    fn exports_from_a_generated_sqlite_hub() {
        let (dir, db, workers, spec) = generated(50, 100);
        let exports = exports_from_sqlite(&db, Some(&workers)).unwrap();
        assert_eq!(exports.len(), 50);
        for (n, export) in exports.iter().enumerate() {
            let w = n as u64 + 1;
            assert_eq!(export.name, kobo_hubgen::HubSpec::worker_name(w));
            assert_eq!(export.last_seen, spec.last_seen(w).map(utc));
            assert!(export.arches.windows(2).all(|p| p[0].1 <= p[1].1));
            assert!(export.channels.windows(2).all(|p| p[0].0 < p[1].0));
        }
        assert!(exports.iter().any(|e| !e.arches.is_empty()));
        assert!(exports.iter().any(|e| !e.channels.is_empty()));
        let without = exports_from_sqlite(&db, None).unwrap();
        assert!(without.iter().all(|e| e.last_seen.is_none()));
        assert!(exports_from_sqlite(&dir.path().join("missing.sqlite3"), None).is_err());
        assert!(exports_from_sqlite(&db, Some(&dir.path().join("nowhere"))).is_err());
    }
}
