//! Errors a data source reports. Messages name what failed and where, never a credential.

use std::path::PathBuf;

/// Why a source could not deliver a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration given to the source is unusable (bad URL, missing file, ...).
    #[error("{0}")]
    Config(String),
    /// The source could not be reached or opened.
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    /// A query against the hub failed.
    #[error("query on {target} failed: {message}")]
    Query { target: String, message: String },
    /// The database is reachable but is not (or not entirely) a kobo hub.
    #[error("{target} does not look like a kobo hub: {message}")]
    Schema { target: String, message: String },
    /// The worker directory (for last seen) could not be read.
    #[error("cannot read worker_dir {}: {message}", path.display())]
    WorkerDir { path: PathBuf, message: String },
    /// A row held a value the exporter cannot represent.
    #[error("unexpected data in {target}: {message}")]
    Data { target: String, message: String },
}
