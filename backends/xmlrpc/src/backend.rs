//! The XML-RPC source as the exporter registers it ([`BACKEND`]): its URL schemes and its keys of the
//! `kobo` table (HTTP credentials, TLS verification, response and multicall sizes).

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;

use kobo_backend_api::{Backend, DataSource, DatabaseOptions, OwnOptions, SourceError, SourceKeys};

use crate::{DEFAULT_MULTICALL_CHUNK, XmlRpcOptions, XmlRpcSource};

/// The bounds of `max_response_bytes`: 1 KiB to 1 GiB.
pub const MAX_RESPONSE_BYTES: RangeInclusive<u64> = 1024..=1024 * 1024 * 1024;

/// The bounds of `multicall_chunk`: workers per `system.multicall`.
pub const MULTICALL_CHUNK: RangeInclusive<u64> = 1..=100_000;

/// The XML-RPC source's keys of the `kobo` table, as given (unset: the defaults of [`XmlRpcOptions`]).
/// `Debug` redacts the token.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// `username`: HTTP basic auth user (the password is `kobo.password_file`'s).
    pub username: Option<String>,
    /// From `bearer_token_file`: a bearer token for hubs behind an authenticating proxy.
    pub bearer_token: Option<String>,
    /// `tls_verify`: `false` turns TLS certificate verification off (logged as a warning).
    pub tls_verify: Option<bool>,
    pub max_response_bytes: Option<u64>,
    pub multicall_chunk: Option<u64>,
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOptions")
            .field("username", &self.username)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("tls_verify", &self.tls_verify)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("multicall_chunk", &self.multicall_chunk)
            .finish()
    }
}

/// The XML-RPC source as the exporter registers it. Its task metrics are off unless asked for: they need
/// the unpaginated `client.get_tasks`.
pub const BACKEND: Backend = Backend {
    kind: "xmlrpc",
    schemes: &["http", "https"],
    keys: &[
        "username",
        "bearer_token_file",
        "tls_verify",
        "max_response_bytes",
        "multicall_chunk",
    ],
    task_metrics_by_default: false,
    read_options,
    open,
};

fn read_options(keys: &dyn SourceKeys) -> Result<OwnOptions, String> {
    Ok(OwnOptions::new(HttpOptions {
        username: keys.text("username")?,
        bearer_token: keys.secret_file("bearer_token_file")?,
        tls_verify: keys.flag("tls_verify")?,
        max_response_bytes: keys.number("max_response_bytes", MAX_RESPONSE_BYTES)?,
        multicall_chunk: keys.number("multicall_chunk", MULTICALL_CHUNK)?,
    }))
}

/// The source for the shared options (URL, CA file, password; `query_timeout` is the HTTP request
/// timeout) and its own.
fn open(options: DatabaseOptions, own: &OwnOptions) -> Result<Arc<dyn DataSource>, SourceError> {
    let http = own.get::<HttpOptions>().cloned().unwrap_or_default();
    let mut xmlrpc = XmlRpcOptions::new(options.url);
    xmlrpc.ca_file = options.ca_file;
    xmlrpc.password = options.password;
    xmlrpc.request_timeout = options.query_timeout;
    xmlrpc.task_flow = options.task_flow;
    xmlrpc.username = http.username;
    xmlrpc.bearer_token = http.bearer_token;
    xmlrpc.tls_verify = http.tls_verify.unwrap_or(true);
    if let Some(bytes) = http.max_response_bytes {
        xmlrpc.max_response_bytes = bytes;
    }
    if let Some(chunk) = http.multicall_chunk {
        xmlrpc.multicall_chunk = usize::try_from(chunk).unwrap_or(DEFAULT_MULTICALL_CHUNK);
    }
    Ok(Arc::new(XmlRpcSource::new(xmlrpc)?))
}
