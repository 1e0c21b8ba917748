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

use super::kobo_wire::py::{fault, response, response_of, value};
use super::kobo_wire::{fixture_exports, Py};

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
