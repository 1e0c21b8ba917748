//! The contract between kobo-exporter and its data sources.
//!
//! Every source (SQLite, PostgreSQL, MySQL/MariaDB, XML-RPC) implements [`DataSource`] and normalises what
//! it reads into the records of [`records`]; the exporter renders only those records, so it never needs to
//! know which source produced them.

pub mod backend;
pub mod clock;
pub mod error;
pub mod flow;
pub mod normalise;
pub mod options;
pub mod records;
pub mod request;
pub mod secrets;
pub mod tasks;
pub mod worker_dir;

pub use backend::{Backend, OpenFn, OwnOptions, SourceKeys};
pub use clock::{HubZone, Micros};
pub use error::SourceError;
pub use flow::FlowTracker;
pub use options::{DatabaseOptions, TaskFlowOptions, redact_url};
pub use records::{
    FinishedTask, HubSnapshot, LastSeen, MethodCount, StartedTask, TaskCount, TaskFlow, TaskGroup,
    TaskRow, TaskState, TaskSummary, WorkerRecord, WorkerTaskCount,
};
pub use request::{CollectRequest, MetricSet, Part, Warning};
pub use worker_dir::WorkerDir;

use async_trait::async_trait;

/// A kobo hub data source: one [`collect`](DataSource::collect) call per collection.
#[async_trait]
pub trait DataSource: Send + Sync {
    /// A short name of the kind of source (`sqlite`, `postgres`, `mysql`, `xmlrpc`), shown on the landing
    /// page and in logs. Never the URL: it may hold credentials.
    fn kind(&self) -> &'static str;

    /// A description of where the data comes from that is safe to show (no password, no secret).
    fn describe(&self) -> String;

    /// Reads one consistent snapshot of the hub: the workers, and the task aggregates ([`tasks`]) when
    /// `request.tasks` asks for them (a source that cannot count tasks leaves them `None`). All of the
    /// work is bounded by `request.deadline` ([`CollectRequest`] says how); past it the result is an
    /// error and nothing of the collection is left running on the hub.
    async fn collect(&self, request: &CollectRequest) -> Result<HubSnapshot, SourceError>;
}
