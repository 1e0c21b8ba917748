//! Settings shared by the database sources (PostgreSQL, MySQL/MariaDB), as the exporter's config gives them.

use std::fmt;
use std::time::Duration;

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
            .finish()
    }
}

/// The URL with any password (the part between `user:` and `@` in the authority) and any `password=` query
/// parameter replaced by `***`: safe to log and show.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
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
}
