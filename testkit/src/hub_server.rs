//! The fake hubs' HTTP: one server on hyper ([`HubServer`]) whose XML-RPC requests are read by dxr, and the
//! one raw-TCP server ([`raw_http_server`]) for what hyper never sends: a body broken off before its
//! `Content-Length`, bytes that are not HTTP at all.
//!
//! A [`HubServer`] answers every request with a handler closure ([`Reply`]: any status, headers and body,
//! or no answer at all), and counts the connections it accepted; [`HubServer::start`] also records every
//! request ([`Request`]: path, headers, body, the call dxr read from it). The answers' bodies come from
//! [`crate::wire`], kobo's marshaller, byte for byte; only the HTTP around them is hyper's. Connections are
//! kept alive unless the response says `Connection: close` (as the hub's gunicorn does).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use kobo_testkit::hub_server::{HubServer, Response};
//! use kobo_testkit::wire::py;
//!
//! let hub = HubServer::start(|request| {
//!     let method = request.call().map_or("?", |call| call.method.as_str()).to_string();
//!     Response::xml(py::fault(1, &format!("{method} is not supported"))).into()
//! })
//! .await
//! .unwrap();
//! assert!(hub.url().ends_with("/xmlrpc/client/"));
//! assert!(hub.received().is_empty());
//! # });
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
/// dxr's XML-RPC value: what a [`Call`]'s parameters are.
pub use dxr::Value;
use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long one connection may take, from accept to its last answer.
const PER_CONNECTION: Duration = Duration::from_secs(30);
/// The largest request body read.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------
// Requests.

/// An XML-RPC call as dxr reads it: the method's name and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub params: Vec<Value>,
}

impl Call {
    /// A `methodCall` document, read by dxr; why not, in words.
    pub fn from_xml(body: &str) -> Result<Call, String> {
        let call = dxr::MethodCall::from_xml(body)
            .map_err(|_| "the body is not an XML-RPC <methodCall>".to_string())?;
        if call.name.trim().is_empty() {
            return Err("an empty <methodName>".into());
        }
        Ok(Call {
            method: call.name.trim().to_string(),
            params: call.params,
        })
    }

    /// The calls inside a `system.multicall`, each read as Python's `system_multicall` reads it (a struct
    /// of a `methodName` string and a `params` array), or why not: Python's exception, `<class '...'>:why`.
    /// `Err` when the multicall itself does not take one array.
    pub fn multicall(&self) -> Result<Vec<Result<Call, String>>, String> {
        let [Value::Array(calls)] = self.params.as_slice() else {
            return Err(
                "TypeError: system_multicall() takes exactly one argument, a list of calls".into(),
            );
        };
        Ok(calls
            .iter()
            .map(|call| {
                let Value::Struct(members) = call else {
                    return Err(
                        "<class 'TypeError'>:each call of a multicall must be a struct".into(),
                    );
                };
                let method = match members.get("methodName") {
                    Some(Value::String(method)) => method.clone(),
                    _ => return Err("<class 'KeyError'>:'methodName'".into()),
                };
                let params = match members.get("params") {
                    Some(Value::Array(params)) => params.clone(),
                    Some(_) => {
                        return Err(
                            "<class 'TypeError'>:the params of a call must be an array".into()
                        );
                    }
                    None => return Err("<class 'KeyError'>:'params'".into()),
                };
                Ok(Call { method, params })
            })
            .collect())
    }

    /// The calls inside a `system.multicall`; panics (naming the call) for anything else. For tests.
    pub fn inner_calls(&self) -> Vec<Call> {
        match self.multicall() {
            Ok(calls) => calls
                .into_iter()
                .map(|call| call.unwrap_or_else(|why| panic!("{why} in {self:?}")))
                .collect(),
            Err(why) => panic!("{why}: {self:?}"),
        }
    }
}

/// An integer parameter (`<int>`, `<i4>` or `<i8>`).
pub fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => Some(i64::from(*i)),
        Value::Long(i) => Some(*i),
        _ => None,
    }
}

/// One request as the hub received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The HTTP method, `POST` for XML-RPC.
    pub method: String,
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The XML-RPC call the body holds, or why it holds none.
    pub call: Result<Call, String>,
}

impl Request {
    /// The first value of the header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The call of the request, or why there is none.
    pub fn call(&self) -> Result<&Call, &str> {
        self.call.as_ref().map_err(String::as_str)
    }

    /// Whether the client takes gzip (`Accept-Encoding`).
    pub fn accepts_gzip(&self) -> bool {
        self.header("accept-encoding")
            .is_some_and(|v| v.contains("gzip"))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Answers.

/// An HTTP response: status, headers in order (`Content-Length` is always hyper's, of the body sent), body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with this status, headers and body.
    pub fn new(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    /// An XML-RPC answer in the hub's own headers (gunicorn; `Connection: close`).
    pub fn xml(body: impl Into<Vec<u8>>) -> Response {
        Response::new(
            200,
            &[
                ("Server", "gunicorn"),
                ("Connection", "close"),
                ("Content-Type", "text/xml"),
                ("Vary", "Cookie"),
            ],
            body,
        )
    }

    /// The same response, but leaving its connection open for the next request.
    pub fn keep_alive(mut self) -> Response {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("connection"));
        self
    }

    /// The same response with its body gzipped (`Content-Encoding: gzip`), as a compressing proxy sends it.
    pub fn gzipped(mut self) -> Response {
        self.body = gzip(&self.body);
        self.headers
            .push(("Content-Encoding".into(), "gzip".into()));
        self
    }

    /// The response as HTTP/1.1 bytes, its `Content-Length` the body's: for [`raw_http_server`] to cut short
    /// or garble.
    pub fn to_http_bytes(&self) -> Vec<u8> {
        let reason = StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Whatever");
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (name, value) in &self.headers {
            if !name.eq_ignore_ascii_case("content-length") {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// The value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the hub does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    Send(Response),
    /// Never answer (the connection stays open until the client gives up).
    Stall,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply::Send(response)
    }
}

/// `data` gzipped (flate2).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------
// The server.

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A fake hub over HTTP on 127.0.0.1; stops accepting when dropped.
#[derive(Debug)]
pub struct HubServer {
    addr: SocketAddr,
    log: Option<Arc<Mutex<Vec<Arc<Request>>>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HubServer {
    /// Answers every request with `handler` on a free port of 127.0.0.1, recording every request (must be
    /// called inside a tokio runtime).
    pub async fn start(
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<HubServer> {
        crate::install_crypto_provider();
        HubServer::serve(Arc::new(handler), true).await
    }

    /// As [`HubServer::start`], without keeping the requests (a benchmark's hub answers millions).
    pub async fn start_unrecorded(
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<HubServer> {
        crate::install_crypto_provider();
        HubServer::serve(Arc::new(handler), false).await
    }

    async fn serve(handler: Handler, record: bool) -> std::io::Result<HubServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = record.then(|| Arc::new(Mutex::new(Vec::new())));
        let connections = Arc::new(AtomicUsize::new(0));
        let (shared_log, count) = (log.clone(), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (handler, log) = (Arc::clone(&handler), shared_log.clone());
                let service = hyper::service::service_fn(move |request| {
                    answer(request, Arc::clone(&handler), log.clone())
                });
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .title_case_headers(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(PER_CONNECTION, connection).await;
                });
            }
        });
        Ok(HubServer {
            addr,
            log,
            connections,
            task,
        })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// kobo's client endpoint here, `http://<addr>/xmlrpc/client/` (the path is not checked).
    pub fn url(&self) -> String {
        format!("http://{}/xmlrpc/client/", self.addr)
    }

    /// Every request so far, in order (none for a hub started unrecorded).
    pub fn received(&self) -> Vec<Arc<Request>> {
        self.log
            .as_ref()
            .map(|log| log.lock().map(|log| log.clone()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The top-level method of every request so far, in order (`?` for a body that is no call).
    pub fn methods(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| r.call().map_or("?".into(), |c| c.method.clone()))
            .collect()
    }

    /// The connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads one request, records it and answers it with `handler`. Requests HTTP cannot carry an XML-RPC call
/// in get a `4xx` without the handler: not a POST (405), no `Content-Length` (411), a body over
/// [`MAX_BODY`] (413).
async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    handler: Handler,
    log: Option<Arc<Mutex<Vec<Arc<Request>>>>>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let refuse = |status: u16, why: &str| {
        Ok(to_hyper(Response::new(
            status,
            &[
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Connection", "close"),
            ],
            format!("{why}\n"),
        )))
    };
    if request.method() != hyper::Method::POST {
        return refuse(405, "XML-RPC calls are POST requests");
    }
    let length = request
        .headers()
        .get(CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()));
    match length {
        None => return refuse(411, "no Content-Length"),
        Some(None) => return refuse(400, "an invalid Content-Length"),
        Some(Some(length)) if length > MAX_BODY => {
            return refuse(413, &format!("the body is larger than {MAX_BODY} bytes"));
        }
        Some(Some(_)) => {}
    }
    let (head, body) = request.into_parts();
    let Ok(body) = Limited::new(body, MAX_BODY).collect().await else {
        return refuse(400, "the body could not be read");
    };
    let body = body.to_bytes();
    let call = std::str::from_utf8(&body)
        .map_err(|e| format!("the body is not UTF-8: {e}"))
        .and_then(Call::from_xml);
    let received = Arc::new(Request {
        method: head.method.to_string(),
        path: head.uri.path().to_string(),
        headers: head
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        call,
    });
    if let Some(log) = &log
        && let Ok(mut log) = log.lock()
    {
        log.push(Arc::clone(&received));
    }
    match handler(&received) {
        Reply::Send(response) => Ok(to_hyper(response)),
        Reply::Stall => std::future::pending().await,
    }
}

/// A [`Response`] for hyper; a header hyper cannot send becomes a `500` saying which.
fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::IM_A_TEAPOT);
    for (name, value) in &response.headers {
        if name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                out.headers_mut().append(name, value);
            }
            _ => {
                let mut refused = hyper::Response::new(Full::new(Bytes::from(format!(
                    "the handler's header {name}: {value:?} cannot be sent\n"
                ))));
                *refused.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return refused;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// The raw-TCP server.

/// The one raw-TCP HTTP server, for malformed HTTP: answers every connection with `bytes` as they are once
/// the request's head has arrived, then closes it (its writing side first, so that the client reads all
/// of `bytes` and then the end). Stops accepting when dropped.
#[derive(Debug)]
pub struct RawHttpServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawHttpServer {
    /// kobo's client endpoint here, `http://<addr>/xmlrpc/client/`.
    pub fn url(&self) -> String {
        format!("http://{}/xmlrpc/client/", self.addr)
    }
}

/// Serves `bytes` to every connection on a free port of 127.0.0.1 (see [`RawHttpServer`]).
pub async fn raw_http_server(bytes: Vec<u8>) -> std::io::Result<RawHttpServer> {
    crate::install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let bytes = Arc::new(bytes);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let bytes = Arc::clone(&bytes);
            tokio::spawn(tokio::time::timeout(PER_CONNECTION, async move {
                let mut received = Vec::new();
                let mut buf = [0u8; 8192];
                while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                // Whatever else the client sends, until it goes: closing with unread data would reset the
                // connection before the client has read the answer.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }));
        }
    });
    Ok(RawHttpServer { addr, task })
}
