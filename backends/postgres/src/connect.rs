//! Connecting: [`DatabaseOptions`] to sqlx connect options and a lazy pool, getting a connection from it,
//! and sqlx errors to messages.

use std::str::FromStr;
use std::time::Duration;

use kobo_backend_api::secrets::ErrorContext;
use kobo_backend_api::{DatabaseOptions, SourceError};
use sqlx::error::DatabaseError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, Postgres};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, PgPool};

/// The `application_name` the exporter's sessions show in `pg_stat_activity`, unless the URL sets one.
pub const APPLICATION_NAME: &str = "kobo-exporter";

/// URL schemes this source accepts.
const SCHEMES: [&str; 2] = ["postgres", "postgresql"];

/// The connect options for `options`: the URL as sqlx parses it (`sslmode`, `sslrootcert`, `host=/socket/dir`,
/// ...), the separate password and CA file on top.
pub(crate) fn connect_options(
    options: &DatabaseOptions,
    context: &ErrorContext,
) -> Result<PgConnectOptions, SourceError> {
    let scheme = options
        .url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    if !scheme.is_some_and(|s| SCHEMES.contains(&s.as_str())) {
        return Err(SourceError::Config(format!(
            "{} is not a PostgreSQL URL: the scheme must be postgres:// or postgresql://",
            context.target()
        )));
    }
    let mut connect = PgConnectOptions::from_str(&options.url)
        .map_err(|e| context.config("invalid PostgreSQL URL", e))?;
    if let Some(password) = &options.password {
        connect = connect.password(password);
    }
    if let Some(ca_file) = &options.ca_file {
        if !ca_file.is_file() {
            return Err(SourceError::Config(format!(
                "ca_file {} for {} is not a readable file",
                ca_file.display(),
                context.target()
            )));
        }
        connect = connect.ssl_root_cert(ca_file);
    }
    if connect.get_application_name().is_none() {
        connect = connect.application_name(APPLICATION_NAME);
    }
    Ok(connect)
}

/// A lazy pool for `options`: at most `max_connections`, opened on demand, tested before each use (so one
/// broken by a server restart is replaced, not handed out), each starting with
/// `SET statement_timeout` to the query timeout, `SET TimeZone = 'UTC'` (times are read as UTC text) and
/// `SET default_transaction_read_only = on` (every statement of the session is read-only, also the worker
/// query that runs outside an explicit transaction).
/// Needs a tokio runtime: the pool spawns its maintenance task.
pub(crate) fn pool(
    options: &DatabaseOptions,
    context: &ErrorContext,
) -> Result<PgPool, SourceError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(SourceError::Config(format!(
            "the PostgreSQL source for {} must be created inside a tokio runtime",
            context.target()
        )));
    }
    if options.max_connections == 0 {
        return Err(SourceError::Config(format!(
            "max_connections for {} must be at least 1",
            context.target()
        )));
    }
    let connect = connect_options(options, context)?;
    let statement_timeout_ms = options.query_timeout.as_millis().max(1);
    Ok(PgPoolOptions::new()
        .max_connections(options.max_connections)
        .min_connections(0)
        .acquire_timeout(options.connect_timeout)
        .test_before_acquire(true)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                let set = format!(
                    "SET statement_timeout = {statement_timeout_ms}; SET TimeZone = 'UTC'; \
                     SET default_transaction_read_only = on"
                );
                conn.execute(AssertSqlSafe(set)).await.map(|_| ())
            })
        })
        .connect_lazy_with(connect))
}

/// A connection from the pool, within `connect_timeout`.
///
/// sqlx retries a refused connection until the timeout and then reports only "pool timed out"; in that
/// case one direct connection attempt finds the real cause (refused, authentication, TLS, ...) for the
/// error message.
pub(crate) async fn acquire(
    pool: &PgPool,
    connect_timeout: Duration,
    context: &ErrorContext,
) -> Result<PoolConnection<Postgres>, SourceError> {
    match pool.acquire().await {
        Ok(conn) => Ok(conn),
        Err(sqlx::Error::PoolTimedOut) => {
            let waited = connect_timeout.as_secs_f64();
            let options = pool.connect_options();
            let cause = match tokio::time::timeout(connect_timeout, options.connect()).await {
                Err(_) => "the server did not answer".to_string(),
                Ok(Err(e)) => describe(&e),
                Ok(Ok(conn)) => {
                    drop(conn.close().await);
                    format!(
                        "all {} connections of the pool are busy (or failed their set-up)",
                        pool.options().get_max_connections()
                    )
                }
            };
            Err(context.connect(format!(
                "no connection within connect_timeout ({waited} s): {cause}"
            )))
        }
        Err(e) => Err(context.connect(describe(&e))),
    }
}

/// A message for a sqlx error: the server's message with its SQLSTATE, a plain-words note for the common
/// causes, and the rest as sqlx words it.
pub(crate) fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => describe_database(db.as_ref()),
        other => other.to_string(),
    }
}

fn describe_database(db: &dyn DatabaseError) -> String {
    let code = db.code().unwrap_or_default();
    let note = match code.as_ref() {
        "57014" => " (the query ran longer than query_timeout and the server canceled it)",
        "28P01" | "28000" => " (check the user and password)",
        "3D000" => " (check the database name in the URL)",
        "42501" => " (the user lacks a privilege: see the GRANTs in the documentation)",
        "25006" => " (the exporter's transactions are read-only)",
        "57P01" | "57P02" | "57P03" => " (the server is shutting down or restarting)",
        _ => "",
    };
    format!("{} (SQLSTATE {code}){note}", db.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<PgConnectOptions, SourceError> {
        let options = DatabaseOptions::new(url);
        connect_options(&options, &ErrorContext::new(&options))
    }

    #[test]
    fn unix_sockets_schemes_and_the_application_name() {
        for url in [
            "postgres://kobo@localhost/hub?host=/var/run/postgresql",
            "postgresql://kobo@%2Fvar%2Frun%2Fpostgresql/hub",
        ] {
            let options = parse(url).expect(url);
            assert_eq!(
                options.get_socket().map(|p| p.display().to_string()),
                Some("/var/run/postgresql".into())
            );
            assert_eq!(options.get_database(), Some("hub"));
        }
        let options = parse("postgres://kobo@db:5433/hub?sslmode=verify-full").expect("TCP");
        assert_eq!((options.get_host(), options.get_port()), ("db", 5433));
        assert_eq!(options.get_application_name(), Some(APPLICATION_NAME));
        let named = parse("postgres://kobo@db/hub?application_name=mine").expect("named");
        assert_eq!(named.get_application_name(), Some("mine"));
    }
}
