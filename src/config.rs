//! The exporter's configuration: the `kobo` table of Rocket's figment.
//!
//! Sources, later ones winning: Rocket's defaults, the exporter's defaults (port [`DEFAULT_PORT`]),
//! `Rocket.toml` (or the file named by `ROCKET_CONFIG`) with its profiles, `ROCKET_*` environment variables,
//! and `KOBO_URL`, `KOBO_WORKER_DIR`, ... for the keys of the `kobo` table. The profile is chosen with
//! `ROCKET_PROFILE` (default: `debug` in debug builds, `release` in release builds).
//!
//! Every error names the key and where its value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Profile};
use kobo_backend_api::{DatabaseOptions, WorkerDir};
use serde::Deserialize;

use crate::collector::CollectorOptions;
use crate::metrics::MetricSet;

/// The default port: outside the 9100-9999 range that Prometheus' exporters have used up, and clear of
/// well-known services.
pub const DEFAULT_PORT: u16 = 10120;

/// The keys of the `kobo` table that `KOBO_<KEY>` environment variables can set.
const ENV_KEYS: [&str; 19] = [
    "url",
    "worker_dir",
    "password_file",
    "ca_file",
    "max_connections",
    "connect_timeout",
    "query_timeout",
    "metrics",
    "task_metrics",
    "task_refresh_interval",
    "scrape_timeout",
    "min_scrape_interval",
    "username",
    "bearer_token_file",
    "tls_verify",
    "max_response_bytes",
    "multicall_chunk",
    "path_prefix",
    "reconnect_backoff_max",
];

/// The `kobo` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KoboTable {
    url: Option<String>,
    worker_dir: Option<PathBuf>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    max_connections: Option<u32>,
    /// Seconds.
    connect_timeout: Option<f64>,
    /// Seconds.
    query_timeout: Option<f64>,
    metrics: Option<MetricSet>,
    task_metrics: Option<bool>,
    /// Seconds.
    task_refresh_interval: Option<f64>,
    /// Seconds.
    scrape_timeout: Option<f64>,
    /// Seconds.
    min_scrape_interval: Option<f64>,
    username: Option<String>,
    bearer_token_file: Option<PathBuf>,
    tls_verify: Option<bool>,
    max_response_bytes: Option<u64>,
    multicall_chunk: Option<usize>,
    path_prefix: Option<String>,
    /// Seconds.
    reconnect_backoff_max: Option<f64>,
    /// User name -> bcrypt hash.
    basic_auth_users: Option<BTreeMap<String, String>>,
}

/// The part of the figment the exporter reads (Rocket reads the rest).
#[derive(Debug, Deserialize)]
struct Root {
    kobo: Option<KoboTable>,
}

/// The kind of data source, from the scheme of `kobo.url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Sqlite,
    Postgres,
    Mysql,
    XmlRpc,
}

impl SourceKind {
    /// The source kind for a URL scheme (case-insensitive), if any.
    pub fn from_scheme(scheme: &str) -> Option<Self> {
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Some(SourceKind::Sqlite),
            "postgres" | "postgresql" => Some(SourceKind::Postgres),
            "mysql" | "mariadb" => Some(SourceKind::Mysql),
            "http" | "https" => Some(SourceKind::XmlRpc),
            _ => None,
        }
    }
}

/// The validated exporter settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kind: SourceKind,
    /// Connection settings; the URL may hold a password (its `Debug` redacts it).
    pub database: DatabaseOptions,
    /// What to collect and how often.
    pub collector: CollectorOptions,
    /// The XML-RPC source's own settings.
    pub http: HttpSettings,
    /// Where the routes are mounted: `/`, or a prefix such as `/kobo` behind a reverse proxy.
    pub path_prefix: String,
    /// HTTP basic auth: user name -> bcrypt hash (none: no auth). `Debug` shows the names only.
    pub basic_auth_users: BasicAuthUsers,
    /// Where `kobo.url` came from, for error messages.
    pub url_origin: String,
    /// Where `kobo.worker_dir` came from, for error messages.
    pub worker_dir_origin: String,
}

/// Settings of the XML-RPC source (the database sources ignore them). `Debug` redacts the token.
#[derive(Clone, Default)]
pub struct HttpSettings {
    /// HTTP basic auth user (the password is `kobo.password_file`'s).
    pub username: Option<String>,
    /// A bearer token for hubs behind an authenticating proxy (from `kobo.bearer_token_file`).
    pub bearer_token: Option<String>,
    /// `false` turns TLS certificate verification off (logged as a warning).
    pub tls_verify: bool,
    pub max_response_bytes: Option<u64>,
    pub multicall_chunk: Option<usize>,
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
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

/// Basic-auth users and their bcrypt hashes; `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct BasicAuthUsers(pub BTreeMap<String, String>);

impl fmt::Debug for BasicAuthUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// A configuration error: names the key and where its value came from (or where to set it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The config file that Rocket reads: `ROCKET_CONFIG`, else `Rocket.toml`.
pub fn config_file() -> String {
    Env::var_or("ROCKET_CONFIG", "Rocket.toml")
}

/// Rocket's figment with the exporter's defaults and its `KOBO_*` environment variables.
pub fn figment() -> Figment {
    Figment::from(rocket::Config::default())
        .merge(Serialized::default("port", DEFAULT_PORT))
        .merge(Serialized::default("ident", "kobo-exporter"))
        .merge(Toml::file(config_file()).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
        .merge(kobo_env())
        .select(Profile::from_env_or(
            "ROCKET_PROFILE",
            rocket::Config::DEFAULT_PROFILE,
        ))
}

/// `KOBO_URL`, `KOBO_WORKER_DIR`, ... as the keys of the `kobo` table, in every profile.
fn kobo_env() -> Env {
    Env::prefixed("KOBO_")
        .only(&ENV_KEYS)
        .map(|key| format!("kobo.{key}").into())
        .global()
}

/// Where the value of `key` (e.g. `kobo.url`) came from, in words: `TOML file Rocket.toml, key
/// release.kobo.url` or `environment variable KOBO_URL`.
pub fn origin(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(meta) => {
            let keys: Vec<&str> = key.split('.').collect();
            if meta.name.contains("environment") {
                format!("environment variable {}", env_var_name(key))
            } else {
                let place = match &meta.source {
                    Some(source) => format!("{} {source}", meta.name),
                    None => meta.name.to_string(),
                };
                // The profile the value was set in (`default`, `release`, ...), not the selected one.
                let profile = figment
                    .find_value(key)
                    .ok()
                    .and_then(|value| value.tag().profile())
                    .unwrap_or_else(|| figment.profile().clone());
                format!("{place}, key {}", meta.interpolate(&profile, &keys))
            }
        }
        None => format!(
            "not set: set `{}` in the [{}.kobo] table of {} or the environment variable {}",
            key.trim_start_matches("kobo."),
            figment.profile(),
            config_file(),
            env_var_name(key)
        ),
    }
}

fn env_var_name(key: &str) -> String {
    format!(
        "KOBO_{}",
        key.trim_start_matches("kobo.").to_ascii_uppercase()
    )
}

impl Settings {
    /// Reads and validates the `kobo` table.
    pub fn from_figment(figment: &Figment) -> Result<Settings, ConfigError> {
        // Extracted through the whole figment (not `extract_inner`) so that errors give the key's full path.
        let table = figment
            .extract::<Root>()
            .map_err(|e| ConfigError(format_figment_error(e)))?
            .kobo
            .unwrap_or_default();
        let key_error = |key: &str, message: &str| {
            ConfigError(format!("`{key}` ({}): {message}", origin(figment, key)))
        };

        let url = table.url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            ConfigError(format!(
                "missing key `kobo.url` ({})",
                origin(figment, "kobo.url")
            ))
        })?;
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        let kind = SourceKind::from_scheme(scheme).ok_or_else(|| {
            key_error(
                "kobo.url",
                &format!(
                    "unknown URL scheme `{scheme}`: use sqlite:, postgres:, postgresql:, mysql:, mariadb:, http: or https:"
                ),
            )
        })?;

        let mut database = DatabaseOptions::new(url);
        database.worker_dir = table.worker_dir.map(WorkerDir::new);
        database.ca_file = table.ca_file;
        let read_secret = |key: &str, path: &PathBuf| -> Result<String, ConfigError> {
            let text = std::fs::read_to_string(path)
                .map_err(|e| key_error(key, &format!("cannot read {}: {e}", path.display())))?;
            let secret = text.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                return Err(key_error(key, &format!("{} is empty", path.display())));
            }
            Ok(secret.to_string())
        };
        if let Some(path) = &table.password_file {
            database.password = Some(read_secret("kobo.password_file", path)?);
        }
        let mut http = HttpSettings {
            username: table.username,
            tls_verify: table.tls_verify.unwrap_or(true),
            max_response_bytes: table.max_response_bytes,
            multicall_chunk: table.multicall_chunk,
            ..HttpSettings::default()
        };
        if let Some(path) = &table.bearer_token_file {
            http.bearer_token = Some(read_secret("kobo.bearer_token_file", path)?);
        }
        if http.multicall_chunk == Some(0) {
            return Err(key_error("kobo.multicall_chunk", "must be at least 1"));
        }
        if let Some(n) = table.max_connections {
            if n == 0 {
                return Err(key_error("kobo.max_connections", "must be at least 1"));
            }
            database.max_connections = n;
        }
        let seconds = |key: &str, seconds: f64, zero_allowed: bool| {
            Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|d| zero_allowed || !d.is_zero())
                .ok_or_else(|| {
                    let what = if zero_allowed {
                        "0 or more"
                    } else {
                        "a positive number of"
                    };
                    key_error(key, &format!("{seconds} is not {what} seconds"))
                })
        };
        if let Some(s) = table.connect_timeout {
            database.connect_timeout = seconds("kobo.connect_timeout", s, false)?;
        }
        if let Some(s) = table.query_timeout {
            database.query_timeout = seconds("kobo.query_timeout", s, false)?;
        }
        let mut collector = CollectorOptions::default();
        if let Some(set) = table.metrics {
            collector.metrics = set;
        }
        // Task metrics from XML-RPC need the unpaginated client.get_tasks: off unless asked for.
        collector.task_metrics = table.task_metrics.unwrap_or(kind != SourceKind::XmlRpc);
        if let Some(s) = table.task_refresh_interval {
            collector.task_refresh_interval = seconds("kobo.task_refresh_interval", s, true)?;
        }
        if let Some(s) = table.scrape_timeout {
            collector.scrape_timeout = seconds("kobo.scrape_timeout", s, false)?;
        }
        if let Some(s) = table.reconnect_backoff_max {
            collector.reconnect_backoff_max = seconds("kobo.reconnect_backoff_max", s, true)?;
        }
        if let Some(s) = table.min_scrape_interval {
            collector.min_scrape_interval = seconds("kobo.min_scrape_interval", s, true)?;
        }
        let path_prefix = match table.path_prefix.as_deref().map(str::trim) {
            None | Some("") | Some("/") => "/".to_string(),
            Some(prefix) if prefix.starts_with('/') && !prefix.contains(['?', '#', '<', '>']) => {
                prefix.trim_end_matches('/').to_string()
            }
            Some(prefix) => {
                return Err(key_error(
                    "kobo.path_prefix",
                    &format!("{prefix:?} is not a path starting with /"),
                ))
            }
        };
        let basic_auth_users = BasicAuthUsers(table.basic_auth_users.unwrap_or_default());
        if let Err(e) = crate::auth::BasicAuth::new(basic_auth_users.0.clone()) {
            return Err(key_error("kobo.basic_auth_users", &e));
        }
        Ok(Settings {
            kind,
            path_prefix,
            basic_auth_users,
            database,
            collector,
            http,
            url_origin: origin(figment, "kobo.url"),
            worker_dir_origin: origin(figment, "kobo.worker_dir"),
        })
    }
}

/// A figment error in one line per problem, each naming the key and its source (figment's own wording).
fn format_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
