//! What a database driver gives the engine: connections within a deadline, the catalog, a snapshot
//! transaction, statements fetched and decoded, and a way to cancel a statement from elsewhere.

use async_trait::async_trait;
use tokio::time::Instant;

use crate::decode::FromRow;
use crate::sql::{Dialect, Statement};

/// A failure of a driver operation, before the engine adds the source's target (and scrubs secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverError {
    /// No connection: refused, authentication, TLS, session set-up, or not within the time allowed.
    Connect(String),
    /// A statement failed (or was cancelled at the deadline).
    Query(String),
    /// A value could not be read.
    Data(String),
}

/// What the catalog says of a database: which tables there are and the columns of `hub_worker`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// The tables (and views) there are; others than the hub's may be among them.
    pub tables: Vec<String>,
    /// The columns of `hub_worker`.
    pub worker_columns: Vec<String>,
}

/// A database driver: how to reach the hub, and what its SQL looks like.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    type Conn: Connection;

    /// The database: its names, and the SQL differences of its dialect.
    const DIALECT: Dialect;

    /// Added to the message for a missing table (MySQL: the catalog hides tables the user may not read).
    fn missing_table_note(&self) -> &'static str {
        ""
    }

    /// A connection, everything about getting it bounded by `deadline` (and by the driver's own connect
    /// timeout): waiting for a place in the pool, testing an idle one, opening and setting up a new one.
    async fn connect(&self, deadline: Instant) -> Result<Self::Conn, DriverError>;

    /// Stops whatever the connection of `cancel` is running: called in the background when a collection
    /// is abandoned with a statement in flight. Bounded by the driver's connect timeout.
    async fn cancel(&self, cancel: <Self::Conn as Connection>::Cancel) -> Result<(), String>;
}

/// One connection to the hub, held by one collection.
#[async_trait]
pub trait Connection: Send + 'static {
    /// What [`Driver::cancel`] needs to stop this connection's statement.
    type Cancel: Send + 'static;

    fn cancel_handle(&self) -> Self::Cancel;

    /// Whether the schema must be read again even though the engine knows it (SQLite: the file was
    /// replaced since the last collection).
    fn schema_may_differ(&self) -> bool {
        false
    }

    /// The catalog, as the connection's queries will resolve names (search path, current database).
    async fn catalog(&mut self, deadline: Instant) -> Result<Catalog, DriverError>;

    /// Runs a statement that returns no rows (the dialect's [`begin_snapshot`](crate::Dialect), `COMMIT`),
    /// bounded by `deadline` as [`fetch`](Connection::fetch) is.
    async fn execute(&mut self, sql: &'static str, deadline: Instant) -> Result<(), DriverError>;

    /// Runs `statement`, its server-side limit set from the time left before `deadline`, and decodes
    /// every row as `R` (by column name, see [`crate::decode`]).
    async fn fetch<R: FromRow>(
        &mut self,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<Vec<R>, DriverError>;

    /// Gives the connection back for the next collection: only after a collection that ran to its end.
    fn release(self);

    /// Closes the connection after a failed collection (its session in a known state). Dropping it
    /// instead closes it at once, without waiting for anything.
    fn discard(self)
    where
        Self: Sized,
    {
    }
}
