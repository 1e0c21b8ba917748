//! The SQL engine of kobo-exporter's database sources (SQLite, PostgreSQL, MySQL/MariaDB), written once:
//!
//! - [`sql`]: the statements of a scrape, each database's differences as parameters ([`Dialect`]);
//! - [`decode`]: rows to records, columns found by name;
//! - [`driver`]: what a driver supplies ([`Driver`], [`Connection`]): connect, catalog, begin-snapshot,
//!   fetch, cancel;
//! - [`engine`]: [`SqlSource`], the [`DataSource`](kobo_backend_api::DataSource) over a driver: the cached
//!   schema queries, the snapshot transaction of task refreshes, last seen, error context and the
//!   deadline, with the statement in flight cancelled when it passes.
//!
//! A new SQL database is a crate with a [`Driver`]: its connections, its catalog query, its dialect.

pub mod decode;
pub mod driver;
pub mod engine;
pub mod sql;

pub use decode::{Columns, FromRow, Row, Value, decode_all};
pub use driver::{Catalog, Connection, Driver, DriverError};
pub use engine::SqlSource;
pub use sql::{Dialect, NamesAggregate, ScrapeSql, Statement};

use std::time::Duration;

use kobo_backend_api::{Backend, OpenFn};
use tokio::time::Instant;

/// How an SQL source registers with the exporter: its dialect's kind, `schemes`, no keys of its own, task
/// metrics on by default, and `open`.
pub const fn backend(dialect: &Dialect, schemes: &'static [&'static str], open: OpenFn) -> Backend {
    Backend {
        kind: dialect.kind,
        schemes,
        keys: &[],
        task_metrics_by_default: true,
        read_options: Backend::no_options,
        open,
    }
}

/// The server-side limit for a statement started now: the time left before `deadline`, at most
/// `query_timeout`, at least 1 ms (0 means "no limit" to every server).
pub fn statement_limit(deadline: Instant, query_timeout: Duration) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(query_timeout)
        .max(Duration::from_millis(1))
}
