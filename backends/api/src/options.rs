//! Settings shared by the database sources (PostgreSQL, MySQL/MariaDB), as the exporter's config gives them.

use std::fmt;
use std::time::Duration;

use url::{Url, form_urlencoded};

use crate::WorkerDir;

/// How a database source connects. `Debug` redacts the URL's password and the password itself.
#[derive(Clone)]
pub struct DatabaseOptions {
    /// The `kobo.url` as configured, e.g. `postgres://kobo@db.example.com/kobo?sslmode=verify-full`.
    /// May hold a password: never log or show it; use [`redact_url`].
    pub url: String,
    /// A password given separately (read from `kobo.password_file`); overrides one in the URL.
    pub password: Option<String>,
    /// A CA certificate (PEM) to verify the server with.
    pub ca_file: Option<std::path::PathBuf>,
    /// Largest number of connections the source keeps (opened lazily).
    pub max_connections: u32,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long one query may run, enforced by the server where it can (`statement_timeout`,
    /// `max_statement_time`) and by the client as well.
    pub query_timeout: Duration,
    /// Where last seen is read from, if anywhere.
    pub worker_dir: Option<WorkerDir>,
    /// How the task flow is read.
    pub task_flow: TaskFlowOptions,
}

/// How a source reads the task flow (`kobo_tasks_finished_total`, the wait and run histograms).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFlowOptions {
    /// How far behind the last read each read reaches, for tasks whose transaction committed late
    /// (`task_late_commit_window`).
    pub late_commit_window: Duration,
    /// The zone of the hub's naive datetimes (`time_zone`; SQLite, MySQL/MariaDB, XML-RPC).
    pub time_zone: crate::clock::HubZone,
}

impl Default for TaskFlowOptions {
    fn default() -> Self {
        TaskFlowOptions {
            late_commit_window: crate::flow::DEFAULT_WINDOW,
            time_zone: crate::clock::HubZone::utc(),
        }
    }
}

impl TaskFlowOptions {
    /// A tracker for a source with these options.
    pub fn tracker(&self) -> crate::flow::FlowTracker {
        crate::flow::FlowTracker::new(self.late_commit_window, self.time_zone.clone())
    }
}

/// The most connections a database source keeps: an exporter needs a handful (one collection runs at a
/// time); billions made the drivers allocate for them and abort the process.
pub const MAX_CONNECTIONS: u32 = 1000;

impl DatabaseOptions {
    /// `max_connections` is from 1 to [`MAX_CONNECTIONS`]; the error names `target` (a redacted URL).
    pub fn check_max_connections(&self, target: &str) -> Result<(), crate::SourceError> {
        if (1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Ok(());
        }
        Err(crate::SourceError::Config(format!(
            "max_connections for {target} is {}: it must be from 1 to {MAX_CONNECTIONS}",
            self.max_connections
        )))
    }

    /// Options for this URL with the defaults: 2 connections, 5 s to connect, 10 s per query, no separate
    /// password, no CA file, no worker_dir.
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseOptions {
            url: url.into(),
            password: None,
            ca_file: None,
            max_connections: 2,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
            worker_dir: None,
            task_flow: TaskFlowOptions::default(),
        }
    }
}

impl fmt::Debug for DatabaseOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseOptions")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("worker_dir", &self.worker_dir)
            .field("task_flow", &self.task_flow)
            .finish()
    }
}

/// The URL with its password (`user:password@`) and the values of its `password` query parameters as
/// `***`: safe to log and show.
///
/// The URL is read by the `url` crate, as sqlx and mysql_async read it, so what is hidden is what they
/// take for the password. What is shown is the crate's serialisation: the text as written for the URLs it
/// leaves alone (`postgres://kobo:***@db:5432/hub?sslmode=require`, the socket host
/// `postgres://kobo@%2Fvar%2Frun%2Fpostgresql/hub`, `sqlite:///var/hub.db`), else the URL as the drivers
/// read it (scheme lower-cased, `http(s)` hosts lower-cased and default ports dropped, a space as `%20`).
/// The query stays as written. A URL the crate refuses, or would strip of tabs, line breaks or spaces at
/// the ends, is shown as written and redacted by a hand-written reading that may hide more than the
/// password (`unparsed_secrets` in this module).
pub fn redact_url(url: &str) -> String {
    url_secrets(url).redacted
}

/// A URL's secrets: the URL with each as `***`, and each as a message may show it.
pub(crate) struct UrlSecrets {
    pub redacted: String,
    /// The password as the `url` crate writes it (percent-encoded), and every `password` query value as
    /// written and decoded.
    pub secrets: Vec<String>,
}

/// The secrets of `input` (see [`redact_url`]).
pub(crate) fn url_secrets(input: &str) -> UrlSecrets {
    let Some(url) = Url::parse(input).ok().filter(|url| !url.cannot_be_a_base()) else {
        return unparsed_secrets(input);
    };
    // The crate drops tabs and line breaks anywhere, and controls and spaces at the ends: shown as it writes
    // the URL, one a hub sends (a redirect's `Location`) would hide them. Such a URL is shown as written,
    // and its secrets are those of both readings.
    let drops = input.contains(['\t', '\n', '\r']) || input.trim_matches(|c| c <= ' ') != input;
    if drops {
        let mut secrets = unparsed_secrets(input);
        secrets.secrets.extend(parsed_secrets(url).secrets);
        return secrets;
    }
    parsed_secrets(url)
}

/// The secrets of a URL the `url` crate reads (see [`redact_url`]).
fn parsed_secrets(mut url: Url) -> UrlSecrets {
    let mut secrets = Vec::new();
    if let Some(password) = url.password() {
        secrets.push(password.to_string());
        // Fails only for a URL without a host, which has no password.
        let _ = url.set_password(Some("***"));
    }
    if let Some(query) = url.query() {
        let (redacted, values) = redact_query(query);
        if !values.is_empty() {
            secrets.extend(values);
            url.set_query(Some(&redacted));
        }
    }
    UrlSecrets {
        redacted: url.into(),
        secrets,
    }
}

/// `query` with the value of every `password` parameter as `***`, and those values as written and decoded.
/// Names and values are decoded with `form_urlencoded` (`+` is a space), as the drivers read them; the pairs
/// are kept as written, since re-encoding them (`Url::query_pairs_mut`) would show
/// `socket=/run/mysqld.sock` as `socket=%2Frun%2Fmysqld.sock`.
fn redact_query(query: &str) -> (String, Vec<String>) {
    let mut values = Vec::new();
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let Some((written_name, written_value)) = pair.split_once('=') else {
                return pair.to_string();
            };
            match form_urlencoded::parse(pair.as_bytes()).next() {
                Some((name, value)) if name.eq_ignore_ascii_case("password") => {
                    values.push(written_value.to_string());
                    values.push(value.into_owned());
                    format!("{written_name}=***")
                }
                _ => pair.to_string(),
            }
        })
        .collect();
    (pairs.join("&"), values)
}

/// The secrets of a URL the `url` crate refuses, such as one whose password holds an unescaped `/`, `?` or
/// `#` (`postgres://kobo:pa/ss@db/hub`: the crate reads `pa` as a bad port), or reads without an authority
/// (`postgres:kobo:pw@db/hub`, the slashes forgotten: all of it a path). The error about it names the
/// redacted URL, and no parser hands out the parts of a URL it rejects, so this is hand-written, and
/// generous: after `scheme://`, everything from the first `:` to the last `@` counts as the password (for
/// `postgres://db:99999/hub?email=a@b` that hides more than a password), and `password` parameters in a
/// query after it are redacted as in a URL that parses.
fn unparsed_secrets(input: &str) -> UrlSecrets {
    let start = input.find("://").map_or(0, |i| i + 3);
    let (mut redacted, mut rest) = (input[..start].to_string(), &input[start..]);
    let mut secrets = Vec::new();
    if let Some((userinfo, after)) = rest.rsplit_once('@') {
        match userinfo.split_once(':') {
            Some((user, password)) => {
                secrets.push(password.to_string());
                redacted.push_str(&format!("{user}:***@"));
            }
            None => redacted.push_str(&format!("{userinfo}@")),
        }
        rest = after;
    }
    match rest.split_once('?') {
        Some((before, query)) => {
            let (query, values) = redact_query(query);
            secrets.extend(values);
            redacted.push_str(&format!("{before}?{query}"));
        }
        None => redacted.push_str(rest),
    }
    UrlSecrets { redacted, secrets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://kobo:s3cret@db:5432/hub"),
            "postgres://kobo:***@db:5432/hub"
        );
        assert_eq!(
            redact_url("mysql://kobo:p%40ss@db/hub?ssl-mode=required"),
            "mysql://kobo:***@db/hub?ssl-mode=required"
        );
        assert_eq!(
            redact_url("postgres://db/hub?user=k&password=s3cret"),
            "postgres://db/hub?user=k&password=***"
        );
        assert_eq!(
            redact_url("postgres://kobo@db/hub"),
            "postgres://kobo@db/hub"
        );
        assert_eq!(redact_url("sqlite:///var/hub.db"), "sqlite:///var/hub.db");
        assert_eq!(redact_url("sqlite:hub.db"), "sqlite:hub.db");
        let debug = format!(
            "{:?}",
            DatabaseOptions {
                password: Some("hunter2".into()),
                ..DatabaseOptions::new("postgres://u:s3cret@h/d")
            }
        );
        assert!(
            !debug.contains("s3cret") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn what_is_shown_is_the_url_as_written() {
        for (url, shown) in [
            // The socket directory as the host, percent-encoded: kept so.
            (
                "postgres://kobo:pw@%2Fvar%2Frun%2Fpostgresql/hub",
                "postgres://kobo:***@%2Fvar%2Frun%2Fpostgresql/hub",
            ),
            (
                "postgres:///hub?host=/var/run/postgresql&password=pw",
                "postgres:///hub?host=/var/run/postgresql&password=***",
            ),
            // The query as written, not re-encoded; its other parameters, empty ones and case kept.
            (
                "mysql://kobo:pw@DB.example.com:3307/hub?socket=/run/mysqld/mysqld.sock&&ssl-mode=REQUIRED",
                "mysql://kobo:***@DB.example.com:3307/hub?socket=/run/mysqld/mysqld.sock&&ssl-mode=REQUIRED",
            ),
            (
                "postgres://kobo:pw@[::1]:5432/hub",
                "postgres://kobo:***@[::1]:5432/hub",
            ),
            ("postgres://h/d?password", "postgres://h/d?password"),
            (
                "postgres://u:pw@h/d?password=x#frag",
                "postgres://u:***@h/d?password=***#frag",
            ),
            ("hub.db", "hub.db"),
            ("/login?next=/hub", "/login?next=/hub"),
            // What the `url` crate drops (tabs, line breaks, spaces at the ends) is kept.
            ("https://hub.example/\tx", "https://hub.example/\tx"),
            (
                " postgres://kobo:p\nw@db/hub?password=x\ty ",
                " postgres://kobo:***@db/hub?password=***",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn every_password_is_redacted() {
        for (url, shown) in [
            // An `@` in the password: the last one ends it, as the drivers read it.
            ("postgres://kobo:p@s$@db/hub", "postgres://kobo:***@db/hub"),
            (
                "postgres://kobo:p%3As%2F$@db/hub",
                "postgres://kobo:***@db/hub",
            ),
            ("mysql://:p$@db/hub", "mysql://:***@db/hub"),
            // The parameter's name compared decoded and in any case, as the drivers compare it.
            (
                "postgres://db/hub?PASSWORD=p$",
                "postgres://db/hub?PASSWORD=***",
            ),
            (
                "postgres://db/hub?pass%77ord=p$",
                "postgres://db/hub?pass%77ord=***",
            ),
            (
                "postgres://db/hub?password=a+$&password=c%26$&sslmode=require",
                "postgres://db/hub?password=***&password=***&sslmode=require",
            ),
            // URLs the `url` crate refuses: a password with `/`, `?` or `#`, an empty host, a bad port.
            ("postgres://kobo:p$/ss@db/hub", "postgres://kobo:***@db/hub"),
            (
                "postgres://kobo:p$?ss@db/hub?password=$x",
                "postgres://kobo:***@db/hub?password=***",
            ),
            ("postgres://kobo:p$#ss@db/hub", "postgres://kobo:***@db/hub"),
            ("postgres://:p$@/hub", "postgres://:***@/hub"),
            (
                "postgres://kobo:p$@db:99999/hub",
                "postgres://kobo:***@db:99999/hub",
            ),
            ("kobo:p$@db", "kobo:***@db"),
            ("postgres:kobo:p$@db/hub", "postgres:***@db/hub"),
            (
                "postgres://db:99999/hub?password=p$",
                "postgres://db:99999/hub?password=***",
            ),
            // Generous when malformed: more than the password may be hidden.
            ("postgres://db:99999/hub?email=a@b", "postgres://db:***@b"),
        ] {
            let redacted = redact_url(url);
            assert_eq!(redacted, shown, "{url}");
            // `$` marks each password.
            assert!(!redacted.contains('$'), "{url}: {redacted}");
        }
    }
}
