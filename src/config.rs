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
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Profile, Provider};
use kobo_backend_api::{Backend, DatabaseOptions, HubZone, OwnOptions, SourceKeys, WorkerDir};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::collector::CollectorOptions;
use crate::metrics::MetricSet;

/// The default port: outside the 9100-9999 range that Prometheus' exporters have used up, and clear of
/// well-known services.
pub const DEFAULT_PORT: u16 = 10120;

/// The largest `password_file` or `bearer_token_file` read: a secret is a line, not a file of megabytes.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The largest config file, TLS certificate chain or key read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The bounds of the duration keys, in seconds: (key, largest value, 0 allowed). Beyond them a value is a
/// typo, and a huge one overflowed the deadline arithmetic (`Instant + Duration`) at the first scrape.
/// `query_timeout` also stays well under PostgreSQL's `statement_timeout` limit (an int4 of milliseconds,
/// 2147483 s).
pub const DURATION_LIMITS: [(&str, u64, bool); 8] = [
    ("task_late_commit_window", 86400, true),
    ("worker_dir_rescan_interval", 86400, true),
    ("connect_timeout", 300, false),
    ("query_timeout", 3600, false),
    ("scrape_timeout", 3600, false),
    ("task_refresh_interval", 86400, true),
    ("min_scrape_interval", 3600, true),
    ("reconnect_backoff_max", 3600, true),
];

/// The bounds of `max_connections`: an exporter needs a handful; billions aborted the process.
pub const MAX_CONNECTIONS: std::ops::RangeInclusive<u32> = 1..=100;

/// The keys of the `kobo` table that every source shares: the fields of [`KoboTable`] (a test holds the
/// two together). The backends own theirs ([`Backend::keys`]).
const COMMON_KEYS: [&str; 22] = [
    "url",
    "worker_dir",
    "worker_dir_watch",
    "worker_dir_rescan_interval",
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
    "path_prefix",
    "reconnect_backoff_max",
    "basic_auth_users",
    "time_zone",
    "task_late_commit_window",
    "task_duration_buckets",
    "max_task_methods",
    "enable_reload",
];

/// The keys of the `kobo` table that are the process's, not a hub's: a `kobo.hubs.<name>` table may not
/// set them.
pub const PROCESS_KEYS: [&str; 3] = ["path_prefix", "basic_auth_users", "enable_reload"];

/// The longest hub name.
pub const MAX_HUB_NAME: usize = 64;

/// The bounds of `max_task_methods`.
pub const MAX_TASK_METHODS: std::ops::RangeInclusive<u32> = 1..=10_000;

/// The most buckets `task_duration_buckets` may have.
pub const MAX_BUCKETS: usize = 60;

/// The keys of the `kobo` table that `KOBO_<KEY>` environment variables can set: the shared ones and
/// every backend's (a map, `basic_auth_users`, is set in the file only).
fn env_keys() -> Vec<&'static str> {
    COMMON_KEYS
        .iter()
        .copied()
        .filter(|key| *key != "basic_auth_users")
        .chain(
            crate::source::BACKENDS
                .iter()
                .flat_map(|b| b.keys.iter().copied()),
        )
        .collect()
}

/// The shared keys of the `kobo` table as written (the backends read their own, [`FigmentKeys`]).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
struct KoboTable {
    url: Option<String>,
    worker_dir: Option<PathBuf>,
    worker_dir_watch: Option<bool>,
    /// Seconds.
    worker_dir_rescan_interval: Option<Seconds>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    max_connections: Option<u32>,
    /// Seconds.
    connect_timeout: Option<Seconds>,
    /// Seconds.
    query_timeout: Option<Seconds>,
    metrics: Option<MetricSet>,
    task_metrics: Option<bool>,
    /// Seconds.
    task_refresh_interval: Option<Seconds>,
    /// Seconds.
    scrape_timeout: Option<Seconds>,
    /// Seconds.
    min_scrape_interval: Option<Seconds>,
    path_prefix: Option<String>,
    /// Seconds.
    reconnect_backoff_max: Option<Seconds>,
    /// User name -> bcrypt hash.
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// An IANA zone name.
    time_zone: Option<String>,
    /// Seconds.
    task_late_commit_window: Option<Seconds>,
    /// Upper bounds in seconds.
    task_duration_buckets: Option<Vec<Seconds>>,
    max_task_methods: Option<u32>,
    enable_reload: Option<bool>,
}

impl KoboTable {
    /// A hub's table with what it leaves out taken from the `kobo` table's (the process-wide keys are the
    /// `kobo` table's alone: [`check_known_keys`] refuses them in a hub's table).
    fn inherit(self, parent: &KoboTable) -> KoboTable {
        let parent = parent.clone();
        KoboTable {
            url: self.url.or(parent.url),
            worker_dir: self.worker_dir.or(parent.worker_dir),
            worker_dir_watch: self.worker_dir_watch.or(parent.worker_dir_watch),
            worker_dir_rescan_interval: self
                .worker_dir_rescan_interval
                .or(parent.worker_dir_rescan_interval),
            password_file: self.password_file.or(parent.password_file),
            ca_file: self.ca_file.or(parent.ca_file),
            max_connections: self.max_connections.or(parent.max_connections),
            connect_timeout: self.connect_timeout.or(parent.connect_timeout),
            query_timeout: self.query_timeout.or(parent.query_timeout),
            metrics: self.metrics.or(parent.metrics),
            task_metrics: self.task_metrics.or(parent.task_metrics),
            task_refresh_interval: self.task_refresh_interval.or(parent.task_refresh_interval),
            scrape_timeout: self.scrape_timeout.or(parent.scrape_timeout),
            min_scrape_interval: self.min_scrape_interval.or(parent.min_scrape_interval),
            path_prefix: parent.path_prefix,
            reconnect_backoff_max: self.reconnect_backoff_max.or(parent.reconnect_backoff_max),
            basic_auth_users: parent.basic_auth_users,
            time_zone: self.time_zone.or(parent.time_zone),
            task_late_commit_window: self
                .task_late_commit_window
                .or(parent.task_late_commit_window),
            task_duration_buckets: self.task_duration_buckets.or(parent.task_duration_buckets),
            max_task_methods: self.max_task_methods.or(parent.max_task_methods),
            enable_reload: parent.enable_reload,
        }
    }
}

/// A number of seconds as written: a number, or a string holding one (figment reads `KOBO_X=1e19` or
/// `KOBO_X=nan` as a string). Its range is checked with the key's limits, in [`Settings::from_figment`].
#[derive(Debug, Clone, Copy, Serialize)]
struct Seconds(f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Seconds, E> {
                v.trim()
                    .parse::<f64>()
                    .map(Seconds)
                    .map_err(|_| E::custom(format!("{v:?} is not a number of seconds")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The part of the figment the exporter reads (Rocket reads the rest).
#[derive(Debug, Deserialize)]
struct Root {
    kobo: Option<KoboTable>,
}

/// The named hubs' tables, `kobo.hubs.<name>`, read through the whole figment as [`Root`] is (so that an
/// error names the key's full path).
#[derive(Debug, Deserialize)]
struct HubsRoot {
    kobo: Option<HubTables>,
}

#[derive(Debug, Deserialize)]
struct HubTables {
    hubs: Option<BTreeMap<String, KoboTable>>,
}

/// Where a hub's keys are looked up: the `kobo` table's own hub reads `kobo.<key>`; a named hub reads
/// `kobo.hubs.<name>.<key>`, then `kobo.<key>`.
#[derive(Clone, Copy)]
struct Scope<'a> {
    figment: &'a Figment,
    hub: Option<&'a str>,
}

impl Scope<'_> {
    /// The key's own path in this hub's table: `kobo.url`, `kobo.hubs.pub.url`.
    fn own_path(&self, key: &str) -> String {
        match self.hub {
            Some(name) => format!("kobo.hubs.{name}.{key}"),
            None => format!("kobo.{key}"),
        }
    }

    /// The path the hub's value of `key` comes from: its own table's if set there, else the `kobo` table's
    /// (for a key set nowhere, the hub's own, which is where to set it).
    fn path(&self, key: &str) -> String {
        let own = self.own_path(key);
        if self.hub.is_none() || self.figment.find_value(&own).is_ok() {
            return own;
        }
        let inherited = format!("kobo.{key}");
        if self.figment.find_value(&inherited).is_ok() {
            inherited
        } else {
            own
        }
    }

    /// The value of `key` for this hub, if it is set.
    fn find_value(&self, key: &str) -> Option<figment::value::Value> {
        self.figment.find_value(&self.path(key)).ok()
    }
}

/// The validated exporter settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The source `kobo.url`'s scheme names.
    pub backend: &'static Backend,
    /// Its own settings, from its keys of the `kobo` table.
    pub own: OwnOptions,
    /// Connection settings; the URL may hold a password (its `Debug` redacts it).
    pub database: DatabaseOptions,
    /// What to collect and how often.
    pub collector: CollectorOptions,
    /// Where the routes are mounted: `/`, or a prefix such as `/kobo` behind a reverse proxy.
    pub path_prefix: String,
    /// HTTP basic auth: user name -> bcrypt hash (none: no auth). `Debug` shows the names only.
    pub basic_auth_users: BasicAuthUsers,
    /// Where `kobo.url` came from, for error messages.
    pub url_origin: String,
    /// Where `kobo.worker_dir` came from, for error messages.
    pub worker_dir_origin: String,
    /// The hub's name: `None` for the `kobo` table's own hub, the `<name>` of `kobo.hubs.<name>`.
    pub hub: Option<String>,
    /// The key the URL was read from (`kobo.url`, `kobo.hubs.<name>.url`), for error messages.
    pub url_key: String,
    /// The key the worker directory was read from, for error messages.
    pub worker_dir_key: String,
    /// What the hub was made from: its keys' values and the contents of the files they name (password,
    /// token, CA). Two equal identities are the same hub: a reload keeps it, with its connections and
    /// caches. A hash, so that it holds no secret.
    pub identity: u64,
}

/// The whole configuration: the process-wide settings and every hub.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// The `kobo` table's own hub (served on `/metrics`): there when `kobo.url` is set, or when no named
    /// hub is (then a missing `kobo.url` is the error it always was).
    pub default: Option<Settings>,
    /// The named hubs, `kobo.hubs.<name>` (served on `/probe?target=<name>`), by name.
    pub hubs: BTreeMap<String, Settings>,
    /// Where the routes are mounted: `/`, or a prefix such as `/kobo` behind a reverse proxy.
    pub path_prefix: String,
    /// HTTP basic auth: user name -> bcrypt hash (none: no auth).
    pub basic_auth_users: BasicAuthUsers,
    /// Whether `POST /-/reload` reloads the configuration (`kobo.enable_reload`; SIGHUP always does).
    pub enable_reload: bool,
}

impl ExporterConfig {
    /// Reads and validates the `kobo` table and every `kobo.hubs.<name>` table.
    pub fn from_figment(figment: &Figment) -> Result<ExporterConfig, ConfigError> {
        let names = hub_names(figment)?;
        let url_set = figment
            .find_value("kobo.url")
            .ok()
            .and_then(|value| value.into_string())
            .is_some_and(|url| !url.trim().is_empty());
        // The tables are read once, and the keys checked once, for all the hubs.
        let kobo;
        let default = if url_set || names.is_empty() {
            kobo = table_of(figment)?;
            check_known_keys(figment)?;
            Some(Settings::read(figment, None, &kobo, kobo.clone())?)
        } else {
            check_known_keys(figment)?;
            kobo = table_of(figment)?;
            None
        };
        let mut tables = if names.is_empty() {
            BTreeMap::new()
        } else {
            figment
                .extract::<HubsRoot>()
                .map_err(|e| ConfigError(format_figment_error(e)))?
                .kobo
                .and_then(|tables| tables.hubs)
                .unwrap_or_default()
        };
        let mut hubs = BTreeMap::new();
        for name in &names {
            let table = tables.remove(name).unwrap_or_default().inherit(&kobo);
            hubs.insert(
                name.clone(),
                Settings::read(figment, Some(name), &kobo, table)?,
            );
        }
        let (path_prefix, basic_auth_users) = match &default {
            Some(settings) => (
                settings.path_prefix.clone(),
                settings.basic_auth_users.clone(),
            ),
            None => process_settings(figment, &kobo)?,
        };
        let enable_reload = kobo.enable_reload.unwrap_or(false);
        Ok(ExporterConfig {
            default,
            hubs,
            path_prefix,
            basic_auth_users,
            enable_reload,
        })
    }

    /// Every hub: the `kobo` table's own (`None`) first, then the named ones.
    pub fn every_hub(&self) -> impl Iterator<Item = (Option<&str>, &Settings)> {
        self.default
            .iter()
            .map(|settings| (None, settings))
            .chain(self.hubs.iter().map(|(name, s)| (Some(name.as_str()), s)))
    }
}

/// The `kobo` table as written (empty when there is none).
fn table_of(figment: &Figment) -> Result<KoboTable, ConfigError> {
    // Extracted through the whole figment (not `extract_inner`) so that errors give the key's full path.
    Ok(figment
        .extract::<Root>()
        .map_err(|e| ConfigError(format_figment_error(e)))?
        .kobo
        .unwrap_or_default())
}

/// The names of the `kobo.hubs.<name>` tables, checked: a hub name goes into URLs and label values.
fn hub_names(figment: &Figment) -> Result<Vec<String>, ConfigError> {
    let Ok(hubs) = figment.find_value("kobo.hubs") else {
        return Ok(Vec::new());
    };
    let figment::value::Value::Dict(_, tables) = hubs else {
        return Err(ConfigError(format!(
            "`kobo.hubs` ({}): give a table of hubs, `[kobo.hubs.<name>]`",
            origin(figment, "kobo.hubs")
        )));
    };
    for (name, table) in &tables {
        let valid = !name.is_empty()
            && name.len() <= MAX_HUB_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        // No `.`: figment reads `kobo.hubs.a.b.url` as the key path a -> b -> url.
        if !valid {
            return Err(ConfigError(format!(
                "hub name {name:?} in `kobo.hubs` ({}): give 1 to {MAX_HUB_NAME} ASCII letters, \
                 digits, `-` or `_`",
                origin(figment, "kobo.hubs")
            )));
        }
        if !matches!(table, figment::value::Value::Dict(..)) {
            return Err(ConfigError(format!(
                "`kobo.hubs.{name}` ({}): give a table of the hub's keys",
                origin(figment, &format!("kobo.hubs.{name}"))
            )));
        }
    }
    Ok(tables.into_keys().collect())
}

/// `path_prefix` and `basic_auth_users`, checked.
fn process_settings(
    figment: &Figment,
    table: &KoboTable,
) -> Result<(String, BasicAuthUsers), ConfigError> {
    let key_error = |key: &str, message: &str| {
        ConfigError(format!("`{key}` ({}): {message}", origin(figment, key)))
    };
    let path_prefix = match table.path_prefix.as_deref().map(str::trim) {
        None | Some("") | Some("/") => "/".to_string(),
        Some(prefix) => check_path_prefix(prefix).map_err(|e| key_error("kobo.path_prefix", &e))?,
    };
    let basic_auth_users = BasicAuthUsers(table.basic_auth_users.clone().unwrap_or_default());
    if let Err(e) = crate::auth::BasicAuth::new(basic_auth_users.0.clone()) {
        return Err(key_error("kobo.basic_auth_users", &e));
    }
    Ok((path_prefix, basic_auth_users))
}

/// The [`Settings::identity`] of a hub: a hash of the values of every key it reads (with the contents
/// of the files they name) in a canonical form.
fn identity(scope: Scope<'_>) -> u64 {
    use std::hash::{Hash as _, Hasher as _};

    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let backend_keys = crate::source::BACKENDS
        .iter()
        .flat_map(|b| b.keys.iter().copied());
    for key in COMMON_KEYS.iter().copied().chain(backend_keys) {
        if PROCESS_KEYS.contains(&key) {
            continue;
        }
        let Some(value) = scope.find_value(key) else {
            continue;
        };
        key.hash(&mut hasher);
        let mut text = String::new();
        canonical(&value, &mut text);
        text.hash(&mut hasher);
        if key.ends_with("_file")
            && let Some(path) = value.as_str()
        {
            // A rotated password, token or CA is another hub: it is reconnected. Read as the files
            // themselves are (a regular file, bounded: never a FIFO that blocks).
            match read_small_file(Path::new(path), MAX_FILE_BYTES) {
                Ok(text) => text.hash(&mut hasher),
                Err(e) => e.hash(&mut hasher),
            }
        }
    }
    hasher.finish()
}

/// A figment value as text that depends on the value only (not on where it was read).
fn canonical(value: &figment::value::Value, out: &mut String) {
    use figment::value::Value;
    use std::fmt::Write as _;

    match value {
        Value::String(_, s) => {
            let _ = write!(out, "{s:?}");
        }
        Value::Char(_, c) => {
            let _ = write!(out, "{c:?}");
        }
        Value::Bool(_, b) => {
            let _ = write!(out, "{b}");
        }
        Value::Num(_, n) => {
            // `3` and `3.0` are the same number of seconds.
            let n = *n;
            let number = n
                .to_f64()
                .or_else(|| n.to_i128().map(|i| i as f64))
                .or_else(|| n.to_u128().map(|u| u as f64));
            let _ = write!(out, "{number:?}");
        }
        Value::Empty(..) => out.push_str("()"),
        Value::Dict(_, dict) => {
            out.push('{');
            for (key, value) in dict {
                let _ = write!(out, "{key:?}=");
                canonical(value, out);
                out.push(',');
            }
            out.push('}');
        }
        Value::Array(_, values) => {
            out.push('[');
            for value in values {
                canonical(value, out);
                out.push(',');
            }
            out.push(']');
        }
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

/// The file that figment and Rocket will read, if any: `ROCKET_CONFIG` or `Rocket.toml`, a relative name
/// searched for in the working directory and its parents (figment's own search).
pub fn resolved_config_file() -> Option<PathBuf> {
    Toml::file(config_file())
        .metadata()
        .source
        .and_then(|source| source.file_path().map(Path::to_path_buf))
}

/// Checks, before Rocket or figment read anything, what they would otherwise panic on or silently
/// mangle: `KOBO_*` and `ROCKET_*` environment variables that are not UTF-8 (figment skips them, Rocket
/// reads `Rocket.toml` instead of a non-UTF-8 `ROCKET_CONFIG`), a `ROCKET_CONFIG` that names no regular
/// file, a config file that cannot be read or parsed, and the keys Rocket reads to start its runtime.
/// The error is one line naming the file or variable (never quoting the file's lines: they may hold a
/// password).
pub fn check_before_start() -> Result<(), ConfigError> {
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let upper = name.to_ascii_uppercase();
        if (upper.starts_with("KOBO_") || upper.starts_with("ROCKET_")) && value.to_str().is_none()
        {
            return Err(ConfigError(format!(
                "environment variable {name} is not valid UTF-8 (figment and Rocket cannot read it)"
            )));
        }
    }
    if let Some(path) = std::env::var_os("ROCKET_CONFIG") {
        let path = PathBuf::from(path);
        match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                return Err(ConfigError(format!(
                    "ROCKET_CONFIG {}: not a regular file",
                    path.display()
                )));
            }
            Ok(_) => {}
            // A missing file is no config file, as for Rocket.toml (`--config` checks existence itself).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ConfigError(format!(
                    "ROCKET_CONFIG {}: {e}",
                    path.display()
                )));
            }
        }
    }
    if let Some(path) = resolved_config_file() {
        let file_error =
            |e: &dyn fmt::Display| ConfigError(format!("config file {}: {e}", path.display()));
        let text = read_small_file(&path, MAX_FILE_BYTES)
            .map_err(|e| ConfigError(format!("config file: {e}")))?;
        Toml::string(&text)
            .nested()
            .data()
            .map_err(|e| file_error(&one_line_parse_error(&e.to_string())))?;
    }
    // What `rocket::execute` extracts from Rocket's own figment before anything runs (its runtime's
    // workers, max_blocking and shutdown.force), panicking on an error: extract it all here first.
    rocket::Config::figment()
        .extract::<rocket::Config>()
        .map_err(|e| ConfigError(format!("Rocket's settings: {}", format_figment_error(e))))?;
    Ok(())
}

/// Loads the TLS certificate chain and key that Rocket would load at launch (`tls.certs`, `tls.key`),
/// with Rocket's own loaders, and checks that they make a server configuration (the key is the
/// certificate's). Nothing to do without TLS. The error names the key and where it was set.
pub fn check_tls(figment: &Figment) -> Result<(), ConfigError> {
    use rocket::http::tls::rustls;
    use rocket::http::tls::util::{load_certs, load_private_key};

    let config = figment
        .extract::<rocket::Config>()
        .map_err(|e| ConfigError(format!("Rocket's settings: {}", format_figment_error(e))))?;
    let Some(tls) = &config.tls else {
        return Ok(());
    };
    let key_error = |key: &str, message: &dyn fmt::Display| {
        ConfigError(format!("`{key}` ({}): {message}", origin(figment, key)))
    };
    // Rocket's `either::Either`: a path (relative to the config file) or the PEM itself.
    let contents = |key: &str, path: Option<PathBuf>, bytes: Option<&[u8]>| match path {
        Some(path) => read_small_file(&path, MAX_FILE_BYTES)
            .map(|text| (text.into_bytes(), path.display().to_string()))
            .map_err(|e| key_error(key, &e)),
        None => Ok((bytes.unwrap_or_default().to_vec(), "the bytes given".into())),
    };
    let (certs, certs_name) = contents("tls.certs", tls.certs().left(), tls.certs().right())?;
    let (key, key_name) = contents("tls.key", tls.key().left(), tls.key().right())?;
    let chain = load_certs(&mut certs.as_slice())
        .map_err(|e| key_error("tls.certs", &format!("{certs_name}: {e}")))?;
    if chain.is_empty() {
        return Err(key_error(
            "tls.certs",
            &format!("{certs_name} holds no PEM certificate"),
        ));
    }
    let key = load_private_key(&mut key.as_slice())
        .map_err(|e| key_error("tls.key", &format!("{key_name}: {e}")))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            key_error(
                "tls.key",
                &format!(
                    "{key_name} does not go with the certificate in {certs_name} (`tls.certs`): {e}"
                ),
            )
        })?;
    Ok(())
}

/// A TOML parse error in one line, without the quoted source line and caret (the line may hold a
/// secret): `TOML parse error at line 2, column 7: invalid basic string`.
fn one_line_parse_error(error: &str) -> String {
    error
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with('|')
                && !line
                    .split_once('|')
                    .is_some_and(|(number, _)| number.trim().chars().all(|c| c.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// Reads a small text file: a regular file (a device such as `/dev/zero` or a FIFO is refused without
/// being read), at most `cap` bytes (read with `Read::take`, so a huge file is not read in full), UTF-8.
/// The error names the path, not the contents.
pub fn read_small_file(path: &Path, cap: u64) -> Result<String, String> {
    let shown = path.display();
    // Before opening: opening a FIFO blocks until a writer comes.
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(format!("{shown} is larger than {}", human_bytes(cap)));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{shown} is not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn human_bytes(bytes: u64) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
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
        .only(&env_keys())
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
        None => match key
            .strip_prefix("kobo.hubs.")
            .and_then(|rest| rest.split_once('.'))
        {
            Some((hub, bare)) => format!(
                "not set: set `{bare}` in the [{}.kobo.hubs.{hub}] table of {}, or in the [{0}.kobo] \
                 table for every hub",
                figment.profile(),
                config_file(),
            ),
            None => format!(
                "not set: set `{}` in the [{}.kobo] table of {} or the environment variable {}",
                key.trim_start_matches("kobo."),
                figment.profile(),
                config_file(),
                env_var_name(key)
            ),
        },
    }
}

/// The environment variable that sets `key`: `KOBO_URL` for `kobo.url`, `ROCKET_TLS` for `tls.key`.
fn env_var_name(key: &str) -> String {
    match key.strip_prefix("kobo.") {
        Some(rest) => format!("KOBO_{}", rest.to_ascii_uppercase()),
        None => format!(
            "ROCKET_{}",
            key.split('.').next().unwrap_or(key).to_ascii_uppercase()
        ),
    }
}

impl Settings {
    /// Reads and validates the `kobo` table.
    pub fn from_figment(figment: &Figment) -> Result<Settings, ConfigError> {
        let kobo = table_of(figment)?;
        check_known_keys(figment)?;
        Settings::read(figment, None, &kobo, kobo.clone())
    }

    /// Validates one hub's keys, `table`: the `kobo` table itself for its own hub (`hub` is `None`), or
    /// `kobo.hubs.<hub>` inheriting from it. The tables are read and their keys checked
    /// ([`check_known_keys`]) by the caller.
    fn read(
        figment: &Figment,
        hub: Option<&str>,
        kobo: &KoboTable,
        table: KoboTable,
    ) -> Result<Settings, ConfigError> {
        let scope = Scope { figment, hub };
        // `key` is the bare name (`url`): the message names the path its value came from.
        let key_error = |key: &str, message: &str| {
            let path = scope.path(key);
            ConfigError(format!("`{path}` ({}): {message}", origin(figment, &path)))
        };

        let url = table.url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            let path = scope.path("url");
            let inherit = match hub {
                Some(_) => " (nor `kobo.url` to inherit)",
                None => "",
            };
            ConfigError(format!(
                "missing key `{path}`{inherit} ({})",
                origin(figment, &path)
            ))
        })?;
        let (scheme, rest) = url.split_once(':').unwrap_or(("", ""));
        let backend = crate::source::backend_for(scheme).ok_or_else(|| {
            let schemes: Vec<String> = crate::source::BACKENDS
                .iter()
                .flat_map(|b| b.schemes.iter().map(|s| format!("{s}:")))
                .collect();
            key_error(
                "url",
                &format!("unknown URL scheme `{scheme}`: use {}", schemes.join(", ")),
            )
        })?;
        // Schemes are case-insensitive (RFC 3986): hand the sources the canonical lower-case form, so
        // that `SQLITE://` is what the sources parse, not only what this check accepts.
        let url = format!("{}:{rest}", scheme.to_ascii_lowercase());

        // An empty path (`KOBO_WORKER_DIR=`) is unset, as an empty `KOBO_URL` is.
        let path = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let mut database = DatabaseOptions::new(url);
        database.worker_dir = path(table.worker_dir).map(WorkerDir::new);
        database.ca_file = path(table.ca_file);
        if let Some(path) = &path(table.password_file) {
            database.password =
                Some(read_secret(path).map_err(|e| key_error("password_file", &e))?);
        }
        let out_of_range = |key: &str, value: &dyn fmt::Display, range: &dyn fmt::Display| {
            key_error(key, &format!("{value} is out of range: give {range}"))
        };
        // Every backend reads its own keys (whatever the URL, so that a bad value is named now); the
        // one of the URL keeps what it read.
        let keys = FigmentKeys { scope };
        let mut own = OwnOptions::none();
        for candidate in crate::source::BACKENDS {
            let read = (candidate.read_options)(&keys).map_err(ConfigError)?;
            if candidate.kind == backend.kind {
                own = read;
            }
        }
        if let Some(n) = table.max_connections {
            if !MAX_CONNECTIONS.contains(&n) {
                let range = format!("{} to {}", MAX_CONNECTIONS.start(), MAX_CONNECTIONS.end());
                return Err(out_of_range("max_connections", &n, &range));
            }
            database.max_connections = n;
        }
        let seconds = |name: &str, Seconds(seconds): Seconds| -> Result<Duration, ConfigError> {
            let (max, zero_allowed) = DURATION_LIMITS
                .iter()
                .find(|(key, _, _)| *key == name)
                .map(|&(_, max, zero)| (max, zero))
                .unwrap_or((0, false));
            let ok = seconds.is_finite()
                && seconds <= max as f64
                && (seconds > 0.0 || (zero_allowed && seconds == 0.0));
            match Duration::try_from_secs_f64(seconds) {
                Ok(duration) if ok => Ok(duration),
                _ => {
                    let lowest = if zero_allowed {
                        "from 0"
                    } else {
                        "greater than 0 and"
                    };
                    Err(out_of_range(
                        name,
                        &seconds,
                        &format!("a number of seconds {lowest} up to {max}"),
                    ))
                }
            }
        };
        // Checked with or without a worker_dir, so that a bad value is named now.
        let mut freshness = kobo_backend_api::worker_dir::Freshness::default();
        if let Some(watch) = table.worker_dir_watch {
            freshness.watch = watch;
        }
        if let Some(s) = table.worker_dir_rescan_interval {
            freshness.rescan_interval = seconds("worker_dir_rescan_interval", s)?;
        }
        database.worker_dir = database
            .worker_dir
            .take()
            .map(|dir| dir.with_freshness(freshness));
        if let Some(s) = table.connect_timeout {
            database.connect_timeout = seconds("connect_timeout", s)?;
        }
        if let Some(s) = table.query_timeout {
            database.query_timeout = seconds("query_timeout", s)?;
        }
        let mut collector = CollectorOptions::default();
        if let Some(set) = table.metrics {
            collector.metrics = set;
        }
        // Task metrics from XML-RPC need the unpaginated client.get_tasks: off unless asked for.
        collector.task_metrics = table
            .task_metrics
            .unwrap_or(backend.task_metrics_by_default);
        if let Some(s) = table.task_refresh_interval {
            collector.task_refresh_interval = seconds("task_refresh_interval", s)?;
        }
        if let Some(s) = table.scrape_timeout {
            collector.scrape_timeout = seconds("scrape_timeout", s)?;
        }
        if let Some(s) = table.reconnect_backoff_max {
            collector.reconnect_backoff_max = seconds("reconnect_backoff_max", s)?;
        }
        if let Some(s) = table.min_scrape_interval {
            collector.min_scrape_interval = seconds("min_scrape_interval", s)?;
        }
        if let Some(s) = table.task_late_commit_window {
            database.task_flow.late_commit_window = seconds("task_late_commit_window", s)?;
        }
        if let Some(name) = table
            .time_zone
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            database.task_flow.time_zone =
                HubZone::named(name).map_err(|e| key_error("time_zone", &e))?;
        }
        if let Some(buckets) = table.task_duration_buckets {
            let buckets: Vec<f64> = buckets.into_iter().map(|Seconds(s)| s).collect();
            check_buckets(&buckets).map_err(|e| key_error("task_duration_buckets", &e))?;
            collector.task_duration_buckets = buckets;
        }
        if let Some(n) = table.max_task_methods {
            if !MAX_TASK_METHODS.contains(&n) {
                let range = format!("{} to {}", MAX_TASK_METHODS.start(), MAX_TASK_METHODS.end());
                return Err(out_of_range("max_task_methods", &n, &range));
            }
            collector.max_task_methods = n as usize;
        }
        let (path_prefix, basic_auth_users) = process_settings(figment, kobo)?;
        Ok(Settings {
            backend,
            own,
            path_prefix,
            basic_auth_users,
            database,
            collector,
            url_origin: origin(figment, &scope.path("url")),
            worker_dir_origin: origin(figment, &scope.path("worker_dir")),
            hub: hub.map(str::to_string),
            url_key: scope.path("url"),
            worker_dir_key: scope.path("worker_dir"),
            identity: identity(scope),
        })
    }
}

/// Histogram buckets: from 1 to [`MAX_BUCKETS`] finite upper bounds above 0, in increasing order.
fn check_buckets(buckets: &[f64]) -> Result<(), String> {
    if buckets.is_empty() || buckets.len() > MAX_BUCKETS {
        return Err(format!(
            "{} buckets: give from 1 to {MAX_BUCKETS}",
            buckets.len()
        ));
    }
    if let Some(bad) = buckets.iter().find(|b| !b.is_finite() || **b <= 0.0) {
        return Err(format!("{bad} is not a number of seconds greater than 0"));
    }
    if let Some(pair) = buckets.windows(2).find(|pair| pair[0] >= pair[1]) {
        return Err(format!(
            "{} then {}: give the upper bounds in increasing order",
            pair[0], pair[1]
        ));
    }
    Ok(())
}

/// Refuses a key of the `kobo` table that neither the shared keys nor any backend's are (a typo would
/// otherwise be silently ignored), naming it and where it was set.
fn check_known_keys(figment: &Figment) -> Result<(), ConfigError> {
    let Ok(figment::value::Value::Dict(_, table)) = figment.find_value("kobo") else {
        return Ok(());
    };
    let known = |key: &str| {
        COMMON_KEYS.contains(&key)
            || crate::source::BACKENDS
                .iter()
                .any(|backend| backend.keys.contains(&key))
    };
    let unknown = |path: String| {
        Err(ConfigError(format!(
            "unknown key `{path}` ({})",
            origin(figment, &path)
        )))
    };
    if let Some(key) = table.keys().find(|key| !known(key) && *key != "hubs") {
        return unknown(format!("kobo.{key}"));
    }
    if let Some(figment::value::Value::Dict(_, hubs)) = table.get("hubs") {
        for (name, hub) in hubs {
            let figment::value::Value::Dict(_, keys) = hub else {
                continue;
            };
            if let Some(key) = keys.keys().find(|key| !known(key)) {
                return unknown(format!("kobo.hubs.{name}.{key}"));
            }
            if let Some(key) = keys.keys().find(|key| PROCESS_KEYS.contains(&key.as_str())) {
                let path = format!("kobo.hubs.{name}.{key}");
                return Err(ConfigError(format!(
                    "`{path}` ({}): `{key}` is the whole exporter's, not a hub's: set it in the \
                     `kobo` table",
                    origin(figment, &path)
                )));
            }
        }
    }
    Ok(())
}

/// The secret in the file at `path`: a small regular UTF-8 file, its trailing line break dropped, not
/// empty. The error names the file, never its contents.
fn read_secret(path: &Path) -> Result<String, String> {
    let text = read_small_file(path, MAX_SECRET_BYTES)?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(secret.to_string())
}

/// The keys of the `kobo` table as a backend reads them ([`SourceKeys`]), from the figment: an error
/// names `kobo.<key>` and where its value was set.
struct FigmentKeys<'a> {
    scope: Scope<'a>,
}

impl FigmentKeys<'_> {
    fn error(&self, key: &str, message: &dyn fmt::Display) -> String {
        let key = self.scope.path(key);
        format!("`{key}` ({}): {message}", origin(self.scope.figment, &key))
    }

    /// The hub's value of `<key>`, if it is set.
    fn value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match self.scope.find_value(key) {
            Some(value) => value
                .deserialize::<T>()
                .map(Some)
                .map_err(|e| self.error(key, &format_figment_error(e))),
            None => Ok(None),
        }
    }
}

impl SourceKeys for FigmentKeys<'_> {
    fn text(&self, key: &str) -> Result<Option<String>, String> {
        self.value(key)
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, String> {
        self.value(key)
    }

    fn number(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, String> {
        // Read as a float first: a negative or huge number gets the range message, not a type error.
        let Some(number) = self.value::<f64>(key)? else {
            return Ok(None);
        };
        let whole = number.fract() == 0.0 && number >= 0.0 && number <= u64::MAX as f64;
        match whole.then_some(number as u64) {
            Some(value) if range.contains(&value) => Ok(Some(value)),
            _ => Err(self.error(
                key,
                &format!(
                    "{number} is out of range: give {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn secret_file(&self, key: &str) -> Result<Option<String>, String> {
        // An empty path (`KOBO_BEARER_TOKEN_FILE=`) is unset.
        let path = self.value::<PathBuf>(key)?;
        match path.filter(|p| !p.as_os_str().is_empty()) {
            Some(path) => read_secret(&path)
                .map(Some)
                .map_err(|e| self.error(key, &e)),
            None => Ok(None),
        }
    }
}

/// The mount point for a `path_prefix` (one trailing `/` dropped), checked with Rocket's own rules, the
/// functions that `Rocket::mount` and `Rocket::register` call on a base (an origin URI, then each route's
/// and catcher's URI under it), so that what passes here cannot make Rocket panic at launch ("invalid
/// route base"). Rocket accepts some bases that then match no request: those are refused too (an empty
/// segment, `//`; a percent-escape, since Rocket compares the escaped base with decoded request paths).
fn check_path_prefix(prefix: &str) -> Result<String, String> {
    use rocket::http::uri::Origin;

    let base = prefix.strip_suffix('/').unwrap_or(prefix);
    if !base.starts_with('/') {
        return Err(format!("{prefix:?} is not a path starting with /"));
    }
    if prefix.contains("//") {
        return Err(format!(
            "{prefix:?} has an empty path segment (`//`): give a path such as /kobo"
        ));
    }
    if base.contains(['?', '#', '%', '<', '>']) {
        return Err(format!(
            "{prefix:?} may not hold ?, #, %, < or >: give a plain path such as /kobo"
        ));
    }
    let origin = Origin::try_from(base).map_err(|e| {
        format!("{prefix:?} is not a valid route base for Rocket ({e}): give a path of ASCII letters, digits and - . _ ~ such as /kobo")
    })?;
    fn dummy_catcher<'r>(
        _: rocket::http::Status,
        request: &'r rocket::Request<'_>,
    ) -> rocket::catcher::BoxFuture<'r> {
        use rocket::response::Responder as _;
        Box::pin(async move { ().respond_to(request) })
    }
    fn dummy<'r>(
        request: &'r rocket::Request<'_>,
        _: rocket::Data<'r>,
    ) -> rocket::route::BoxFuture<'r> {
        rocket::route::Outcome::from(request, ()).pin()
    }
    rocket::Route::new(rocket::http::Method::Get, "/metrics", dummy)
        .map_base(|old| format!("{origin}{old}"))
        .map_err(|e| format!("{prefix:?}: Rocket cannot mount routes under it: {e}"))?;
    rocket::Catcher::new(401, dummy_catcher)
        .map_base(|old| format!("{origin}{old}"))
        .map_err(|e| format!("{prefix:?}: Rocket cannot register catchers under it: {e}"))?;
    Ok(base.to_string())
}

/// A figment error in one line per problem, each naming the key and its source (figment's own wording).
fn format_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        // A TOML parse error quotes the offending line, which may hold a password: drop it.
        .map(|e| one_line_parse_error(&e.to_string()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`COMMON_KEYS`] are exactly the fields of [`KoboTable`]: the struct literal must name every field
    /// (no `..`), and what it serialises to must be the list.
    #[test]
    fn the_common_keys_are_the_fields_of_the_kobo_table() {
        let every_field = KoboTable {
            url: Some(String::new()),
            worker_dir: Some(PathBuf::new()),
            worker_dir_watch: Some(true),
            worker_dir_rescan_interval: Some(Seconds(1.0)),
            password_file: Some(PathBuf::new()),
            ca_file: Some(PathBuf::new()),
            max_connections: Some(1),
            connect_timeout: Some(Seconds(1.0)),
            query_timeout: Some(Seconds(1.0)),
            metrics: Some(MetricSet::All),
            task_metrics: Some(true),
            task_refresh_interval: Some(Seconds(1.0)),
            scrape_timeout: Some(Seconds(1.0)),
            min_scrape_interval: Some(Seconds(1.0)),
            path_prefix: Some(String::new()),
            reconnect_backoff_max: Some(Seconds(1.0)),
            basic_auth_users: Some(BTreeMap::new()),
            time_zone: Some(String::new()),
            task_late_commit_window: Some(Seconds(1.0)),
            task_duration_buckets: Some(vec![Seconds(1.0)]),
            max_task_methods: Some(1),
            enable_reload: Some(true),
        };
        let value = figment::value::Value::serialize(&every_field).expect("serialise");
        let figment::value::Value::Dict(_, fields) = value else {
            panic!("not a table: {value:?}");
        };
        let mut fields: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut listed = COMMON_KEYS.to_vec();
        fields.sort_unstable();
        listed.sort_unstable();
        assert_eq!(fields, listed);
        // No backend claims a shared key, and every key can be set from the environment but the map.
        for backend in crate::source::BACKENDS {
            for key in backend.keys {
                assert!(!COMMON_KEYS.contains(key), "{}: {key}", backend.kind);
                assert!(env_keys().contains(key));
            }
        }
        assert_eq!(env_keys().len(), COMMON_KEYS.len() - 1 + 5);
    }
}
