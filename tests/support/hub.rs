//! A minimal kobo hub for the XML-RPC source: an HTTP server on 127.0.0.1 answering
//! `client.list_workers(True)`, `client.list_workers(False)` and the `system.multicall` of
//! `client.get_worker_info` with the fixture hub (`fixture.sql`, `fixture-last-seen.tsv`) in kobo's wire
//! format: Python's `xmlrpc.client` marshalling, as `tests/xmlrpc.rs` checks it against the real captures
//! byte for byte (the marshaller here is a copy of the part of it these calls need). Each response closes
//! its connection (`Connection: close`), as the hub's gunicorn does. Anything else gets a fault.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::super::common;

/// How long the hub serves at most, and how long one connection may take.
const LIFETIME: Duration = Duration::from_secs(120);
const PER_CONNECTION: Duration = Duration::from_secs(30);

/// The running hub; stops when dropped.
pub struct TestHub {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestHub {
    /// Serves the fixture hub on a free port of 127.0.0.1.
    pub async fn start() -> TestHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let answers = Arc::new(Answers::fixture());
        let requests = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            let serve = async {
                while let Ok((stream, _)) = listener.accept().await {
                    let (answers, count) = (Arc::clone(&answers), Arc::clone(&count));
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(PER_CONNECTION, serve(stream, &answers, &count))
                                .await;
                    });
                }
            };
            let _ = tokio::time::timeout(LIFETIME, serve).await;
        });
        TestHub {
            addr,
            requests,
            task,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The hub's answers: the bodies of the two lists and each worker's dumped export.
struct Answers {
    enabled: String,
    disabled: String,
    /// Worker name to `Marshaller.dump` of its export.
    exports: BTreeMap<String, String>,
}

impl Answers {
    fn fixture() -> Answers {
        let exports = fixture_exports();
        let names = |enabled: bool| {
            Py::List(
                exports
                    .iter()
                    .filter(|e| e.enabled == enabled)
                    .map(|e| Py::Str(e.name.clone()))
                    .collect(),
            )
        };
        Answers {
            enabled: response(&names(true)),
            disabled: response(&names(false)),
            exports: exports
                .iter()
                .map(|e| (e.name.clone(), value(&e.py())))
                .collect(),
        }
    }

    /// The body answering a request body.
    fn answer(&self, request: &str) -> String {
        let method = request
            .split("<methodName>")
            .nth(1)
            .and_then(|rest| rest.split("</methodName>").next())
            .unwrap_or_default();
        match method {
            "client.list_workers" if request.contains("<boolean>0</boolean>") => {
                self.disabled.clone()
            }
            "client.list_workers" => self.enabled.clone(),
            "system.multicall" => {
                // The workers asked for, in the order asked (every inner call is get_worker_info).
                let mut asked: Vec<(usize, &String)> = self
                    .exports
                    .iter()
                    .filter_map(|(name, dumped)| {
                        request.find(&format!(">{name}<")).map(|at| (at, dumped))
                    })
                    .collect();
                asked.sort();
                let inner: String = asked
                    .iter()
                    .map(|(_, dumped)| {
                        format!("<value><array><data>\n{dumped}</data></array></value>\n")
                    })
                    .collect();
                response_of(&format!(
                    "<value><array><data>\n{inner}</data></array></value>\n"
                ))
            }
            other => fault(
                1,
                &format!("Exception: method \"{other}\" is not supported"),
            ),
        }
    }
}

/// Reads one request, answers it and closes the connection.
async fn serve(mut stream: TcpStream, answers: &Answers, count: &AtomicUsize) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, length) = loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (at + 4, length);
        }
    };
    while data.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&data[head_end..head_end + length]).into_owned();
    let body = answers.answer(&request);
    let response = format!(
        "HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Tue, 25 Nov 2025 18:18:40 GMT\r\nConnection: close\r\n\
         Content-Type: text/xml\r\nVary: Cookie\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(response.as_bytes()).await.is_ok() {
        count.fetch_add(1, Ordering::SeqCst);
    }
    let _ = stream.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------------
// Python's xmlrpc.client marshaller, as far as these answers need it (a copy of `tests/xmlrpc.rs`' `py`).

/// A Python value as kobo exports it.
enum Py {
    Int(i64),
    Bool(bool),
    Str(String),
    None,
    List(Vec<Py>),
    Dict(Vec<(&'static str, Py)>),
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `Marshaller.dump` of one value.
fn value(v: &Py) -> String {
    match v {
        Py::Int(i) => format!("<value><int>{i}</int></value>\n"),
        Py::Bool(b) => format!("<value><boolean>{}</boolean></value>\n", u8::from(*b)),
        Py::Str(s) => format!("<value><string>{}</string></value>\n", escape(s)),
        Py::None => "<value><nil/></value>".into(),
        Py::List(items) => {
            let inner: String = items.iter().map(value).collect();
            format!("<value><array><data>\n{inner}</data></array></value>\n")
        }
        Py::Dict(members) => {
            let inner: String = members
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<member>\n<name>{}</name>\n{}</member>\n",
                        escape(k),
                        value(v)
                    )
                })
                .collect();
            format!("<value><struct>\n{inner}</struct></value>\n")
        }
    }
}

fn response_of(dumped: &str) -> String {
    format!("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n{dumped}</param>\n</params>\n</methodResponse>\n")
}

fn response(v: &Py) -> String {
    response_of(&value(v))
}

fn fault(code: i64, string: &str) -> String {
    let fault = value(&Py::Dict(vec![
        ("faultCode", Py::Int(code)),
        ("faultString", Py::Str(string.into())),
    ]));
    format!(
        "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n{fault}</fault>\n</methodResponse>\n"
    )
}

/// A worker as kobo's `Worker.export()` gives it.
struct Export {
    id: i64,
    name: String,
    /// (id, name, pretty_name), ordered by name.
    arches: Vec<(i64, String, String)>,
    /// (id, name), ordered by id.
    channels: Vec<(i64, String)>,
    enabled: bool,
    max_load: i64,
    ready: bool,
    task_count: i64,
    current_load: i64,
    /// `YYYY-MM-DDTHH:MM:SSZ`, or `None` for never seen.
    last_seen: Option<String>,
}

impl Export {
    fn py(&self) -> Py {
        let arches = self
            .arches
            .iter()
            .map(|(id, name, pretty)| {
                Py::Dict(vec![
                    ("id", Py::Int(*id)),
                    ("name", Py::Str(name.clone())),
                    ("pretty_name", Py::Str(pretty.clone())),
                ])
            })
            .collect();
        let channels = self
            .channels
            .iter()
            .map(|(id, name)| Py::Dict(vec![("id", Py::Int(*id)), ("name", Py::Str(name.clone()))]))
            .collect();
        Py::Dict(vec![
            ("id", Py::Int(self.id)),
            ("name", Py::Str(self.name.clone())),
            ("arches", Py::List(arches)),
            ("channels", Py::List(channels)),
            ("enabled", Py::Bool(self.enabled)),
            ("max_load", Py::Int(self.max_load)),
            ("ready", Py::Bool(self.ready)),
            ("task_count", Py::Int(self.task_count)),
            ("current_load", Py::Int(self.current_load)),
            (
                "last_seen",
                self.last_seen.clone().map_or(Py::None, Py::Str),
            ),
            ("version", Py::None),
        ])
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (UTC).
fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Every fixture worker's export, from the fixture in a temporary SQLite file and `fixture-last-seen.tsv`.
fn fixture_exports() -> Vec<Export> {
    let (_dir, path) = super::fixture::sqlite_file();
    let conn = rusqlite::Connection::open(&path).expect("open");
    let tsv = common::read_shared("fixture-last-seen.tsv");
    let last_seen: BTreeMap<String, Option<String>> = tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            let when = (fields[2] != "-").then(|| utc(fields[2].parse().expect("mtime")));
            (fields[0].to_string(), when)
        })
        .collect();
    let mut exports: Vec<Export> = conn
        .prepare(
            "SELECT id, name, enabled, max_load, ready, task_count, current_load FROM hub_worker ORDER BY id",
        )
        .expect("prepare")
        .query_map([], |r| {
            Ok(Export {
                id: r.get(0)?,
                name: r.get(1)?,
                arches: vec![],
                channels: vec![],
                enabled: r.get(2)?,
                max_load: r.get(3)?,
                ready: r.get(4)?,
                task_count: r.get(5)?,
                current_load: r.get(6)?,
                last_seen: None,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for export in &mut exports {
        export.last_seen = last_seen[&export.name].clone();
        export.arches = conn
            .prepare(
                "SELECT a.id, a.name, a.pretty_name FROM hub_worker_arches wa JOIN hub_arch a ON a.id = wa.arch_id \
                 WHERE wa.worker_id = ?1 ORDER BY a.name",
            )
            .expect("prepare")
            .query_map([export.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        export.channels = conn
            .prepare(
                "SELECT c.id, c.name FROM hub_worker_channels wc JOIN hub_channel c ON c.id = wc.channel_id \
                 WHERE wc.worker_id = ?1 ORDER BY c.id",
            )
            .expect("prepare")
            .query_map([export.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
    }
    exports
}
