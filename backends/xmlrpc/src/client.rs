//! HTTP for the XML-RPC source: one reused reqwest client (rustls with the ring provider, gzip, a
//! `User-Agent`, a request timeout, no redirects followed), the size cap on responses, and errors that name
//! the hub URL (redacted), the method and the HTTP status, with every configured secret scrubbed out.
//!
//! The calls themselves are built only by [`crate::rpc::encode`], which enforces the allow-list.

use std::fmt::Display;
use std::time::Instant;

use dxr::{Fault, Value};
use kobo_backend_api::SourceError;
use kobo_backend_api::secrets::Secrets;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Certificate, StatusCode};

use crate::options::{Credentials, Endpoint, XmlRpcOptions, endpoint};
use crate::rpc::{self, Call, ItemError, Request};
use crate::worker_infos::{Answer, Decoded, WorkerInfos};

/// The hub's XML-RPC client endpoint, reached over one connection pool.
#[derive(Debug)]
pub(crate) struct HubClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    max_response_bytes: u64,
    request_timeout: std::time::Duration,
}

impl HubClient {
    /// Checks the options and builds the HTTP client (reads the CA file; no network I/O).
    pub(crate) fn new(options: &XmlRpcOptions) -> Result<Self, SourceError> {
        let endpoint = endpoint(options)?;
        let shown = endpoint.shown.clone();
        let config =
            |message: String| SourceError::Config(format!("XML-RPC source {shown}: {message}"));
        // reqwest is built without a crypto provider and takes the process's: the program installs it
        // once (kobo-exporter's main installs ring). Without one reqwest would panic here.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(config(
                "no rustls crypto provider is installed in this process: the program must install one \
                 (rustls::crypto::ring::default_provider().install_default()) before it makes the source"
                    .into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(options.user_agent.as_str())
            .gzip(true)
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false);
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| config(format!("cannot read ca_file {}: {e}", path.display())))?;
            let certificates = Certificate::from_pem_bundle(&pem).map_err(|e| {
                config(format!(
                    "ca_file {} is not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
            if certificates.is_empty() {
                return Err(config(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_only(certificates);
        }
        if !options.tls_verify {
            log::warn!(
                "TLS certificate verification is OFF for the XML-RPC source {shown}: any server can pose as the hub"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| config(endpoint.secrets.clean(describe_error(&e))))?;
        Ok(HubClient {
            http,
            endpoint,
            max_response_bytes: options.max_response_bytes,
            request_timeout: options.request_timeout,
        })
    }

    /// The endpoint as it may be shown.
    pub(crate) fn shown(&self) -> &str {
        &self.endpoint.shown
    }

    /// `client.list_workers(True)` and `client.list_workers(False)` in one `system.multicall` request: the
    /// enabled and the disabled workers' names. A fault (or an unusable answer) for either call fails the
    /// whole read, as a fault on a lone `client.list_workers` call would.
    pub(crate) async fn worker_lists(&self) -> Result<(Vec<String>, Vec<String>), SourceError> {
        let calls = vec![
            Call::ListWorkers { enabled: true },
            Call::ListWorkers { enabled: false },
        ];
        let label = "system.multicall of client.list_workers";
        let value = self.call_as(&Request::Multicall(calls), label).await?;
        let results =
            rpc::multicall_results(value, 2).map_err(|why| self.data(format!("{label}: {why}")))?;
        let mut lists = Vec::with_capacity(2);
        for (enabled, result) in [true, false].into_iter().zip(results) {
            let call = format!("client.list_workers({})", python_bool(enabled));
            let names = match result {
                Ok(value) => crate::decode::worker_names(value)
                    .map_err(|why| self.data(format!("{call}: {why}")))?,
                Err(ItemError::Fault(fault)) => {
                    return Err(self.query(format!(
                        "{call} (in system.multicall): the hub answered with fault {}: {}",
                        fault.code(),
                        self.fault_text(&fault)
                    )));
                }
                Err(ItemError::Malformed(what)) => {
                    return Err(
                        self.data(format!("{call}: system.multicall answered {what} for it"))
                    );
                }
            };
            lists.push(names);
        }
        let disabled = lists.pop().unwrap_or_default();
        let enabled = lists.pop().unwrap_or_default();
        Ok((enabled, disabled))
    }

    /// `client.get_worker_info(name)` for each name, in one `system.multicall` request; one answer per
    /// name, in order. The response is decoded as it arrives ([`WorkerInfos`]); one that is not a
    /// multicall's array is read whole and judged as any other call's.
    pub(crate) async fn worker_infos(&self, names: &[String]) -> Result<Vec<Answer>, SourceError> {
        let calls = names
            .iter()
            .map(|name| Call::GetWorkerInfo { name: name.clone() })
            .collect();
        let request = Request::Multicall(calls);
        let method = request.method();
        let label = "system.multicall of client.get_worker_info";
        let mut decoder = WorkerInfos::new(names);
        let (status, headers) = self.exchange(&request, method, &mut decoder).await?;
        let answers = match decoder.finish() {
            Ok(Decoded::Answers(answers)) if status.is_success() => answers,
            Ok(Decoded::Answers(_)) => {
                return Err(self.query(format!(
                    "{method}: HTTP {status}, with a multicall's answer as the body"
                )));
            }
            Ok(Decoded::Whole(body)) => {
                let value = self.value_of(
                    method,
                    &Reply {
                        status,
                        headers,
                        body,
                    },
                )?;
                return rpc::multicall_results(value, names.len())
                    .map(|results| results.into_iter().map(Answer::Value).collect())
                    .map_err(|why| self.data(format!("{label}: {why}")));
            }
            Err(why) => return Err(self.not_xml_rpc(method, status, &why)),
        };
        if answers.len() != names.len() {
            return Err(self.data(format!(
                "{label}: system.multicall answered {} results for {} calls",
                answers.len(),
                names.len()
            )));
        }
        Ok(answers)
    }

    /// `client.get_tasks([], states)`: the flat exports of every non-archived task in these states, in one
    /// unpaginated answer (the costly call of the task metrics).
    pub(crate) async fn active_tasks(&self, states: Vec<i64>) -> Result<Value, SourceError> {
        let request = Request::Single(Call::GetTasks {
            ids: Vec::new(),
            states,
        });
        self.call(&request).await
    }

    /// `client.get_tasks(chunk, [])` for each chunk of task ids (any state), in one `system.multicall`
    /// request; one result per chunk, in order.
    pub(crate) async fn tasks_by_ids(
        &self,
        chunks: &[Vec<i64>],
    ) -> Result<Vec<Result<Value, ItemError>>, SourceError> {
        let calls = chunks
            .iter()
            .map(|ids| Call::GetTasks {
                ids: ids.clone(),
                states: Vec::new(),
            })
            .collect();
        let value = self.call(&Request::Multicall(calls)).await?;
        rpc::multicall_results(value, chunks.len())
            .map_err(|why| self.data(format!("system.multicall of client.get_tasks: {why}")))
    }

    /// `client.task_info(id)` for each task id, in one `system.multicall` request; one result per id, in
    /// order.
    pub(crate) async fn task_infos(
        &self,
        ids: &[i64],
    ) -> Result<Vec<Result<Value, ItemError>>, SourceError> {
        let calls = ids.iter().map(|&id| Call::TaskInfo { id }).collect();
        let value = self.call(&Request::Multicall(calls)).await?;
        rpc::multicall_results(value, ids.len())
            .map_err(|why| self.data(format!("system.multicall of client.task_info: {why}")))
    }

    /// Sends one request and returns its result value; faults and anything that is not an XML-RPC response
    /// are errors, which name the request's method.
    async fn call(&self, request: &Request) -> Result<Value, SourceError> {
        self.call_as(request, request.method()).await
    }

    /// [`call`](Self::call), with errors naming the request as `method` (for a multicall, what it holds).
    async fn call_as(&self, request: &Request, method: &str) -> Result<Value, SourceError> {
        let mut body = Vec::new();
        let (status, headers) = self.exchange(request, method, &mut body).await?;
        self.value_of(
            method,
            &Reply {
                status,
                headers,
                body,
            },
        )
    }

    /// Sends one request, the response's body into `sink` as it arrives; its status and headers.
    async fn exchange(
        &self,
        request: &Request,
        method: &str,
        sink: &mut dyn BodySink,
    ) -> Result<(StatusCode, HeaderMap), SourceError> {
        let body = rpc::encode(request).map_err(|why| self.query(why))?;
        let started = Instant::now();
        let (status, headers, read) = self.post(method, body, sink).await?;
        log::debug!(
            "XML-RPC {method} on {}: HTTP {status}, {read} bytes in {} ms",
            self.endpoint.shown,
            started.elapsed().as_millis()
        );
        Ok((status, headers))
    }

    /// The result value of a whole response; faults, HTTP errors and anything that is not an XML-RPC
    /// response are errors naming `method`.
    fn value_of(&self, method: &str, reply: &Reply) -> Result<Value, SourceError> {
        let text = std::str::from_utf8(&reply.body);
        let decoded = text
            .map_err(|e| format!("the body is not UTF-8 ({e})"))
            .and_then(rpc::decode);
        if !reply.status.is_success() {
            return Err(self.query(format!(
                "{method}: {}",
                self.http_error(reply, decoded.ok())
            )));
        }
        match decoded {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(fault)) => Err(self.query(format!(
                "{method}: the hub answered with fault {}: {}",
                fault.code(),
                self.fault_text(&fault)
            ))),
            Err(why) => Err(self.query(format!(
                "{method}: HTTP {}, but the response is not XML-RPC: {why} ({})",
                reply.status,
                describe_body(&reply.headers, &reply.body, &self.endpoint.secrets)
            ))),
        }
    }

    /// The error for a response refused while it streamed in.
    fn not_xml_rpc(&self, method: &str, status: StatusCode, why: &str) -> SourceError {
        self.query(format!(
            "{method}: HTTP {status}, but the response is not XML-RPC: {why}"
        ))
    }

    /// POSTs a `methodCall` and passes the response's body to `sink` as it arrives, up to the size cap;
    /// the status, the headers and the bytes read.
    async fn post(
        &self,
        method: &str,
        body: String,
        sink: &mut dyn BodySink,
    ) -> Result<(StatusCode, HeaderMap, usize), SourceError> {
        let request = self
            .http
            .post(self.endpoint.url.clone())
            .header(CONTENT_TYPE, "text/xml")
            .header(ACCEPT, "text/xml")
            .body(body);
        let request = match &self.endpoint.credentials {
            Credentials::None => request,
            Credentials::Basic { username, password } => {
                request.basic_auth(username, password.as_ref())
            }
            Credentials::Bearer(token) => request.bearer_auth(token),
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| self.transport_error(method, None, &e))?;
        let status = response.status();
        let too_large = |size: String| {
            self.query(format!(
                "{method}: HTTP {status}, the response is larger than max_response_bytes ({} bytes): {size}",
                self.max_response_bytes
            ))
        };
        if let Some(length) = response.content_length()
            && length > self.max_response_bytes
        {
            return Err(too_large(format!("Content-Length {length}")));
        }
        let mut read = 0usize;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (read + chunk.len()) as u64 > self.max_response_bytes {
                        return Err(too_large(format!("more than {} bytes", read + chunk.len())));
                    }
                    read += chunk.len();
                    sink.take(&chunk)
                        .map_err(|why| self.not_xml_rpc(method, status, &why))?;
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error(method, Some((status, read)), &e)),
            }
        }
        Ok((status, response.headers().clone(), read))
    }

    /// The message for an HTTP status that is not a success.
    fn http_error(&self, reply: &Reply, decoded: Option<Result<Value, dxr::Fault>>) -> String {
        let status = reply.status;
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::PROXY_AUTHENTICATION_REQUIRED => {
                match self.endpoint.credentials {
                    Credentials::None => {
                        " (the hub or a proxy in front of it wants credentials: set a username and password, or a bearer token)"
                    }
                    _ => " (the credentials were rejected)",
                }
            }
            StatusCode::FORBIDDEN => " (access denied)",
            _ => "",
        };
        let what = match decoded {
            Some(Err(fault)) => format!("fault {}: {}", fault.code(), self.fault_text(&fault)),
            _ if status.is_redirection() => {
                match reply.headers.get(LOCATION).and_then(|l| l.to_str().ok()) {
                    Some(location) => format!(
                        "redirected to {} (redirects are not followed: set the URL to the hub's XML-RPC client endpoint)",
                        kobo_backend_api::redact_url(location)
                    ),
                    None => "a redirect without a Location".into(),
                }
            }
            _ => describe_body(&reply.headers, &reply.body, &self.endpoint.secrets),
        };
        format!("HTTP {status}{hint}: {what}")
    }

    /// The error for a failed exchange: no connection, a timeout, or a body that broke off after `read`
    /// bytes of a response with this status.
    fn transport_error(
        &self,
        method: &str,
        response: Option<(StatusCode, usize)>,
        error: &reqwest::Error,
    ) -> SourceError {
        let cause = describe_error(error);
        let after = match response {
            Some((status, read)) => {
                format!(", HTTP {status}, the response broke off after {read} bytes")
            }
            None => String::new(),
        };
        if error.is_timeout() {
            self.query(format!(
                "{method}: no complete response within {:?} (request_timeout){after}",
                self.request_timeout
            ))
        } else if error.is_connect() {
            SourceError::Connect {
                target: self.endpoint.shown.clone(),
                message: self.scrub(format!("{method}: {cause}")),
            }
        } else {
            self.query(format!("{method}{after}: {cause}"))
        }
    }

    pub(crate) fn query(&self, message: impl Display) -> SourceError {
        SourceError::Query {
            target: self.endpoint.shown.clone(),
            message: self.scrub(message),
        }
    }

    /// The error for a result that cannot be used, naming the hub (secrets scrubbed, control characters
    /// escaped).
    pub(crate) fn data(&self, message: impl Display) -> SourceError {
        SourceError::Data {
            target: self.endpoint.shown.clone(),
            message: self.scrub(message),
        }
    }

    /// `text` as it may go into an error, a warning or the log: without any configured secret (in any form
    /// it is sent in, nor any echoed `Authorization` header), its control characters escaped. Every message
    /// of this source passes through here, since most quote the hub.
    pub(crate) fn scrub(&self, text: impl Display) -> String {
        self.endpoint.secrets.clean(text)
    }

    /// The configured secrets, to scrub the hub's text before it is shortened.
    pub(crate) fn secrets(&self) -> &Secrets {
        &self.endpoint.secrets
    }

    /// A fault's string for a message: scrubbed before it is shortened (so that no part of a secret is
    /// left at the cut), then summarised.
    fn fault_text(&self, fault: &Fault) -> String {
        fault_text(&self.endpoint.secrets, fault)
    }
}

/// A fault's string, scrubbed of `secrets`, summarised ([`rpc::summarise_fault`]), control characters
/// escaped.
pub(crate) fn fault_text(secrets: &Secrets, fault: &Fault) -> String {
    secrets.clean(rpc::summarise_fault(&secrets.scrub(fault.string())))
}

/// A response read in full.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Where [`HubClient::post`] puts a response's body as it arrives.
pub(crate) trait BodySink: Send {
    /// Takes the next piece; an error says why the body is not what was asked for, and ends the read.
    fn take(&mut self, chunk: &[u8]) -> Result<(), String>;
}

/// The whole body, for the calls decoded through dxr.
impl BodySink for Vec<u8> {
    fn take(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

impl BodySink for WorkerInfos<'_> {
    fn take(&mut self, chunk: &[u8]) -> Result<(), String> {
        WorkerInfos::take(self, chunk)
    }
}

fn python_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// A reqwest error and its causes, `: `-separated, without the URL (our errors name it once, as their
/// target).
fn describe_error(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// A short description of a body that is not what was expected: its type and either an HTML page's title
/// or the start of the text. The body is scrubbed of `secrets` before it is cut short.
fn describe_body(headers: &HeaderMap, body: &[u8], secrets: &Secrets) -> String {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "no Content-Type".to_string(), |v| secrets.clean(v));
    if body.is_empty() {
        return format!("{content_type}, empty body");
    }
    let text = secrets.scrub(String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]));
    let lower = text.to_ascii_lowercase();
    let trimmed = lower.trim_start();
    if content_type.contains("html")
        || trimmed.starts_with("<!doctype html")
        || trimmed.starts_with("<html")
    {
        let title = lower
            .find("<title")
            .and_then(|start| lower[start..].find('>').map(|end| start + end + 1))
            .and_then(|start| {
                lower[start..]
                    .find("</title")
                    .map(|end| (start, start + end))
            })
            .map(|(start, end)| {
                text[start..end]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        return match title {
            Some(title) if !title.is_empty() => {
                format!(
                    "{content_type}, an HTML page titled {:?}",
                    rpc::shorten(&title, 120)
                )
            }
            _ => format!("{content_type}, an HTML page"),
        };
    }
    let start = text.split_whitespace().collect::<Vec<_>>().join(" ");
    format!(
        "{content_type}, {} bytes starting {:?}",
        body.len(),
        rpc::shorten(&start, 120)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_described_briefly() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "text/html; charset=utf-8".parse().unwrap());
        let html = b"<!DOCTYPE html>\n<html><head><TITLE>\n502  Bad Gateway\n</TITLE></head><body>nginx</body></html>";
        assert_eq!(
            describe_body(&headers, html, &Secrets::default()),
            "text/html; charset=utf-8, an HTML page titled \"502 Bad Gateway\""
        );
        assert_eq!(
            describe_body(&HeaderMap::new(), b"", &Secrets::default()),
            "no Content-Type, empty body"
        );
        let text = describe_body(
            &HeaderMap::new(),
            "upstream\tconnect error\n\u{1b}[0m".as_bytes(),
            &Secrets::default(),
        );
        assert_eq!(
            text,
            "no Content-Type, 27 bytes starting \"upstream connect error \\u{1b}[0m\""
        );
    }

    #[test]
    fn secrets_are_scrubbed_longest_first() {
        let secrets = Secrets::new(["hunter2", "hunter22"]);
        assert_eq!(secrets.scrub("a hunter22 b hunter2"), "a *** b ***");
    }

    #[test]
    fn bodies_and_faults_are_scrubbed_before_they_are_cut_short() {
        // A password (with a quote, which the quoted start of the body would escape) and its basic-auth
        // form at the cut of 120 characters.
        let secrets = Secrets::default().with_basic_auth("mon", Some("pa\"ss"));
        let body = format!("{}pa\"ss Basic bW9uOnBhInNz", "x".repeat(110));
        let text = describe_body(&HeaderMap::new(), body.as_bytes(), &secrets);
        assert!(!text.contains("pa") && !text.contains("bW9u"), "{text}");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "text/plain;\tx=1".parse().unwrap());
        assert_eq!(
            describe_body(&headers, b"", &secrets),
            "text/plain;\\tx=1, empty body"
        );
        let fault = Fault::new(
            1,
            format!("{}Authorization: Basic bW9uOnBhInNz\r", "y".repeat(298)),
        );
        let text = fault_text(&secrets, &fault);
        assert!(!text.contains("bW9u") && !text.contains('\r'), "{text}");
        let fault = Fault::new(1, "a\u{1b}[2Kb\tc".into());
        assert_eq!(fault_text(&secrets, &fault), "a\\u{1b}[2Kb\\tc");
    }
}
