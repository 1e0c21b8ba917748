//! The PostgreSQL source: reads a kobo hub's PostgreSQL database, read-only, with sqlx.
//!
//! # URL
//! `postgres://` or `postgresql://`, as sqlx (and mostly libpq) reads it:
//! - `postgres://kobo_exporter@db.example.com:5432/kobo` over TCP;
//! - `postgres://kobo_exporter@localhost/kobo?host=/var/run/postgresql` over the Unix socket in that
//!   directory (`host=` starting with `/`; a percent-encoded path as the host,
//!   `postgres://kobo_exporter@%2Fvar%2Frun%2Fpostgresql/kobo`, works too);
//! - TLS: `sslmode=disable|allow|prefer|require|verify-ca|verify-full` (default `prefer`),
//!   `sslrootcert=/path/ca.pem`; the `ca_file` option sets the CA certificate as `sslrootcert` does.
//!   Use `verify-full` (or `verify-ca`) to have the server's certificate checked.
//! - The password may be in the URL (`postgres://user:secret@host/db`) or given separately (the exporter's
//!   `password_file`), which wins. It never appears in errors: they name the redacted URL.
//!
//! libpq's environment variables (`PGHOST`, `PGUSER`, `PGPASSWORD`, ...) and `~/.pgpass` fill what the URL
//! leaves out, as sqlx does.
//!
//! # What it does per scrape
//! One query reading every worker with its arches and channels: a single statement, one round trip, its
//! own consistent snapshot. When task metrics are refreshed ([`DataSource::collect_with_tasks`]) it and the
//! two grouped task queries of `kobo_backend_api::tasks` (the `queries` module) run in one read-only
//! transaction (`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`), so every number comes from one
//! snapshot. A constant number of queries whatever the number of workers. Every session is read-only
//! (`default_transaction_read_only`), so the exporter cannot write even if its role could. The schema is
//! checked on first use and again after any error.
//!
//! Connections come from a small lazy pool (the `connect` module): none is opened before the first scrape,
//! and one that a server restart broke fails the ping before use and is replaced, so a restarted server
//! needs no exporter restart. Each connection runs `SET statement_timeout` to the query timeout; the whole
//! collection has a client-side limit as well. Getting a connection is bounded by one `connect_timeout`,
//! and the first failure to open one (refused, authentication, TLS, session set-up) is reported at once, as
//! what it is. A connection goes back to the pool only after a complete collection: after an error it is
//! closed, and a collection abandoned mid-statement (the exporter's deadline) closes its socket and frees
//! its place in the pool at once, so the pool can never be wedged by abandoned collections.
//!
//! # Least privilege
//! The exporter needs only `SELECT` on the six tables it reads. As a superuser, in the hub's database
//! (replace the role name, password, database and schema as needed):
//!
//! ```sql
//! CREATE ROLE kobo_exporter LOGIN PASSWORD 'change-me';
//! GRANT CONNECT ON DATABASE kobo TO kobo_exporter;
//! GRANT USAGE ON SCHEMA public TO kobo_exporter;
//! GRANT SELECT ON hub_worker, hub_worker_arches, hub_arch, hub_worker_channels, hub_channel, hub_task
//!     TO kobo_exporter;
//! ```
//!
//! (`CONNECT` and `USAGE ON SCHEMA public` are granted to `PUBLIC` by default; the lines make the role
//! independent of that. `hub_task` is read only for the task metrics.)

mod connect;
mod queries;

pub use queries::scrape_sql;

pub use connect::APPLICATION_NAME;

#[cfg(test)]
mod tests;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kobo_backend_api::secrets::ErrorContext;
use kobo_backend_api::worker_dir::LastSeenTask;
use kobo_backend_api::{DataSource, DatabaseOptions, HubSnapshot, SourceError, WorkerDir};
use queries::HubQueries;
use sqlx::{Connection, PgConnection};

/// How a scrape that reads the task metrics starts its transaction.
pub(crate) const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Slack on top of the connect and query timeouts before the client gives up on a collection.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// A kobo hub's PostgreSQL database.
pub struct PostgresSource {
    pool: connect::Pool,
    context: ErrorContext,
    connect_timeout: Duration,
    query_timeout: Duration,
    worker_dir: Option<WorkerDir>,
    /// The queries for the schema found at the first scrape; forgotten after any error, so that the schema
    /// is checked again.
    queries: Mutex<Option<HubQueries>>,
}

impl PostgresSource {
    /// A source for `options.url` (`postgres://` or `postgresql://`). Checks the URL and the options and
    /// sets up a lazy pool: no connection is opened here, so a server that is down is reported by the
    /// first [`collect`](DataSource::collect), not here. Refuses a `max_connections` of 0 or above 1,000
    /// and a `query_timeout` above 2,147,483 s (PostgreSQL's `statement_timeout` is an int4 of
    /// milliseconds). Must be called inside a tokio runtime (closing discarded connections is spawned on
    /// it).
    pub fn new(options: DatabaseOptions) -> Result<Self, SourceError> {
        let context = ErrorContext::new(&options);
        let pool = connect::Pool::new(&options, &context)?;
        Ok(PostgresSource {
            pool,
            context,
            connect_timeout: options.connect_timeout,
            query_timeout: options.query_timeout,
            worker_dir: options.worker_dir,
            queries: Mutex::new(None),
        })
    }

    /// The longest a collection may take: getting a connection (one `connect_timeout` for all of it), then
    /// the queries.
    fn client_timeout(&self) -> Duration {
        self.connect_timeout
            .saturating_add(self.query_timeout)
            .saturating_add(CLIENT_GRACE)
    }

    fn cached_queries(&self) -> Option<HubQueries> {
        self.queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_queries(&self, queries: Option<HubQueries>) {
        *self.queries.lock().unwrap_or_else(PoisonError::into_inner) = queries;
    }

    /// One scrape: the worker query alone, or with the task queries in one read-only transaction; last
    /// seen listed beside it.
    async fn read(&self, with_tasks: bool) -> Result<HubSnapshot, SourceError> {
        // Last seen is listed on the blocking pool while the database answers.
        let last_seen = LastSeenTask::spawn(self.worker_dir.as_ref());
        let mut conn = self.pool.acquire(&self.context).await?;
        // The connection goes back to the pool only after a complete collection. After an error it is
        // closed; if this future is dropped mid-statement (the collection abandoned at its deadline), the
        // lease is dropped with it, which closes the socket and frees the pool's place at once.
        let result = self.read_on(&mut conn, with_tasks).await;
        if result.is_ok() {
            conn.release();
        } else {
            conn.discard();
        }
        let mut snapshot = result?;
        last_seen.apply(&mut snapshot).await;
        Ok(snapshot)
    }

    /// The queries of one scrape on `conn`.
    async fn read_on(
        &self,
        conn: &mut PgConnection,
        with_tasks: bool,
    ) -> Result<HubSnapshot, SourceError> {
        let queries = match self.cached_queries() {
            Some(queries) => queries,
            None => {
                let queries = queries::hub_queries(conn, &self.context).await?;
                self.set_queries(Some(queries.clone()));
                queries
            }
        };
        let snapshot = if with_tasks {
            let mut tx = conn
                .begin_with(BEGIN)
                .await
                .map_err(|e| self.context.query(connect::describe(&e)))?;
            let snapshot = queries::read(&mut tx, &queries, true, &self.context).await?;
            tx.commit()
                .await
                .map_err(|e| self.context.query(connect::describe(&e)))?;
            snapshot
        } else {
            // One statement is its own snapshot: no BEGIN and COMMIT round trips.
            queries::read(conn, &queries, false, &self.context).await?
        };
        Ok(snapshot)
    }

    /// [`read`](Self::read) within the client-side limit; forgets the queries after an error.
    async fn read_within_limit(&self, with_tasks: bool) -> Result<HubSnapshot, SourceError> {
        let limit = self.client_timeout();
        let result = match tokio::time::timeout(limit, self.read(with_tasks)).await {
            Ok(result) => result,
            Err(_) => Err(self.context.query(format!(
                "no answer within {} s (connect_timeout + query_timeout + {} s); gave up",
                limit.as_secs_f64(),
                CLIENT_GRACE.as_secs()
            ))),
        };
        if result.is_err() {
            // The hub may have been migrated or replaced: check the schema again at the next scrape.
            self.set_queries(None);
        }
        result
    }
}

#[async_trait]
impl DataSource for PostgresSource {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn describe(&self) -> String {
        format!("PostgreSQL database {}", self.context.target())
    }

    async fn collect(&self) -> Result<HubSnapshot, SourceError> {
        self.read_within_limit(false).await
    }

    async fn collect_with_tasks(&self) -> Result<HubSnapshot, SourceError> {
        self.read_within_limit(true).await
    }
}
