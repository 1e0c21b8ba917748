//! The MySQL/MariaDB source: reads a kobo hub's MySQL or MariaDB database, read-only, with mysql_async.
//!
//! Needs MySQL 5.7.22+ or MariaDB 10.5+ (`JSON_ARRAYAGG`).
//!
//! # URL
//! `mysql://` or `mariadb://` (read as `mysql://`), as mysql_async reads it, plus `ssl-mode`:
//! - `mysql://kobo_exporter@db.example.com:3306/kobo` over TCP (the database is required);
//! - `mysql://kobo_exporter@localhost/kobo?socket=/run/mysqld/mysqld.sock` over a Unix socket;
//! - TLS: `ssl-mode=DISABLED|REQUIRED|VERIFY_CA|VERIFY_IDENTITY` as with the mysql client (REQUIRED
//!   encrypts without checking the certificate; VERIFY_CA checks it against the CA; VERIFY_IDENTITY also
//!   checks the host name). `PREFERRED` is refused: it would silently fall back to plain text. The
//!   `ca_file` option sets the CA certificate; given without `ssl-mode` it means VERIFY_CA. mysql_async's
//!   own `require_ssl=true`, `verify_ca=`, `verify_identity=` parameters work as well.
//! - The password may be in the URL (`mysql://user:secret@host/db`) or given separately (the exporter's
//!   `password_file`), which wins. It never appears in errors: they name the redacted URL.
//!
//! A TCP connection to the local host stays on TCP (mysql_async would otherwise move it onto the server's
//! socket, where the server may match a different account); add `prefer_socket=true` to allow that.
//!
//! # What it does per scrape
//! One query reading every worker with its arches and channels: a single statement, one round trip, its
//! own consistent snapshot. When task metrics are refreshed ([`DataSource::collect_with_tasks`]) it and the
//! two grouped task queries of `kobo_backend_api::tasks` (the `queries` module) run in one read-only
//! transaction with a consistent snapshot (`SET TRANSACTION READ ONLY` + `START TRANSACTION WITH CONSISTENT
//! SNAPSHOT`). A constant number of queries whatever the number of workers. Every session is read-only
//! (`SET SESSION TRANSACTION READ ONLY`), so the exporter cannot write even if its user could. Names are compared byte for byte (grouped as binary strings, sorted in Rust), as on PostgreSQL
//! and SQLite, not by the table's case-insensitive collation. The schema is checked on first use and again
//! after any error.
//!
//! Connections come from a small lazy pool (the `connect` module): none is opened before the first scrape,
//! and one that the server closed (restart, `KILL`) is noticed and replaced. Each connection runs
//! `SET SESSION max_statement_time` (MariaDB; MySQL gets a `MAX_EXECUTION_TIME` hint on each query); the
//! whole collection has a client-side limit as well.
//!
//! # Least privilege
//! The exporter needs only `SELECT` on the six tables it reads (`hub_task` only for the task metrics). As
//! an administrator (replace the user, host, password and database as needed):
//!
//! ```sql
//! CREATE USER 'kobo_exporter'@'%' IDENTIFIED BY 'change-me';
//! GRANT SELECT ON kobo.hub_worker TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_worker_arches TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_arch TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_worker_channels TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_channel TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_task TO 'kobo_exporter'@'%';
//! ```

mod connect;
mod queries;

pub use queries::scrape_sql;

#[cfg(test)]
mod tests;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kobo_backend_api::secrets::ErrorContext;
use kobo_backend_api::worker_dir::LastSeenTask;
use kobo_backend_api::{DataSource, DatabaseOptions, HubSnapshot, SourceError, WorkerDir};
use mysql_async::{Pool, TxOpts};
use queries::HubQueries;

pub use connect::PROGRAM_NAME;

/// Slack on top of the connect and query timeouts before the client gives up on a collection.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// A kobo hub's MySQL or MariaDB database.
pub struct MysqlSource {
    pool: Pool,
    context: ErrorContext,
    connect_timeout: Duration,
    query_timeout: Duration,
    worker_dir: Option<WorkerDir>,
    /// The queries for the schema found at the first scrape; forgotten after any error, so that the schema
    /// is checked again.
    queries: Mutex<Option<HubQueries>>,
}

/// The transaction of a scrape that reads the task metrics: read-only, with a consistent snapshot
/// (REPEATABLE READ, the default).
pub(crate) fn snapshot_tx() -> TxOpts {
    let mut opts = TxOpts::new();
    opts.with_consistent_snapshot(true)
        .with_readonly(Some(true));
    opts
}

impl MysqlSource {
    /// A source for `options.url` (`mysql://` or `mariadb://`). Checks the URL and the options and sets up
    /// a lazy pool: no connection is opened here, so a server that is down is reported by the first
    /// [`collect`](DataSource::collect), not here.
    pub fn new(options: DatabaseOptions) -> Result<Self, SourceError> {
        let context = ErrorContext::new(&options);
        let opts = connect::opts(&options, &context)?;
        Ok(MysqlSource {
            pool: connect::pool(opts),
            context,
            connect_timeout: options.connect_timeout,
            query_timeout: options.query_timeout,
            worker_dir: options.worker_dir,
            queries: Mutex::new(None),
        })
    }

    /// The longest a collection may take: getting a connection, then the queries.
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

    /// One scrape: the worker query alone, or with the task queries in one read-only, consistent-snapshot
    /// transaction; last seen listed beside it.
    async fn read(&self, with_tasks: bool) -> Result<HubSnapshot, SourceError> {
        // Last seen is listed on the blocking pool while the database answers.
        let last_seen = LastSeenTask::spawn(self.worker_dir.as_ref());
        let mut conn = connect::acquire(&self.pool, self.connect_timeout, &self.context).await?;
        let queries = match self.cached_queries() {
            Some(queries) => queries,
            None => {
                let queries =
                    queries::hub_queries(&mut conn, self.query_timeout, &self.context).await?;
                self.set_queries(Some(queries.clone()));
                queries
            }
        };
        let mut snapshot = if with_tasks {
            let mut tx = conn
                .start_transaction(snapshot_tx())
                .await
                .map_err(|e| self.context.query(connect::describe(&e)))?;
            let snapshot = queries::read(&mut tx, &queries, true, &self.context).await?;
            tx.commit()
                .await
                .map_err(|e| self.context.query(connect::describe(&e)))?;
            snapshot
        } else {
            // One statement is its own snapshot: no transaction statements around it.
            queries::read(&mut conn, &queries, false, &self.context).await?
        };
        drop(conn);
        last_seen.apply(&mut snapshot).await;
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
impl DataSource for MysqlSource {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn describe(&self) -> String {
        format!("MySQL/MariaDB database {}", self.context.target())
    }

    async fn collect(&self) -> Result<HubSnapshot, SourceError> {
        self.read_within_limit(false).await
    }

    async fn collect_with_tasks(&self) -> Result<HubSnapshot, SourceError> {
        self.read_within_limit(true).await
    }
}
