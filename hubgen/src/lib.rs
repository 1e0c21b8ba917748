//! kobo-hubgen: writes a deterministic synthetic kobo hub (kobo's own schema, then set-based inserts) into
//! an empty SQLite file, PostgreSQL database or MariaDB/MySQL database, and optionally kobo's last-seen
//! files into a worker directory.
//!
//! (kobo's XML-RPC wire format and a hub served over XML-RPC, for the tests and benchmarks of the XML-RPC
//! source, are in kobo-testkit.)

pub mod mysql;
pub mod postgres;
pub mod rows;
pub mod sqlite;

use std::fs::File;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

pub use rows::{Dialect, HubSpec};

/// kobo's schemas, one per database.
pub const SCHEMA_SQLITE: &str = include_str!("../../testkit/data/schema-sqlite.sql");
pub const SCHEMA_POSTGRES: &str = include_str!("../../testkit/data/schema-postgres.sql");
pub const SCHEMA_MYSQL: &str = include_str!("../../testkit/data/schema-mysql.sql");

/// A failure, as a message for the user.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Writes the hub of `spec` into the database at `url` (`sqlite:///path`, `postgres://…`, `mysql://…`),
/// which must be empty (no tables).
pub async fn generate(url: &str, spec: &HubSpec) -> Result<(), Error> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.to_string();
        let spec = *spec;
        tokio::task::spawn_blocking(move || sqlite::generate(Path::new(&path), &spec)).await?
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::generate(url, spec).await
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        mysql::generate(&url.replacen("mariadb://", "mysql://", 1), spec).await
    } else {
        Err(
            format!("unsupported URL {url:?}: use sqlite:///path, postgres://… or mysql://…")
                .into(),
        )
    }
}

/// The error for a target that already has tables.
pub(crate) fn not_empty(tables: i64) -> Error {
    format!(
        "the target is not empty ({tables} tables): kobo-hubgen only writes into an empty database"
    )
    .into()
}

/// Writes kobo's last-seen file of every worker that has been seen into `dir` (created if missing).
pub fn write_worker_dir(dir: &Path, spec: &HubSpec) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    for w in 1..=u64::from(spec.workers) {
        if let Some(mtime) = spec.last_seen(w) {
            let path = dir.join(kobo_backend_api::worker_dir::file_name(
                &HubSpec::worker_name(w),
            ));
            let file = File::create(&path)?;
            file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime as u64))?;
        }
    }
    Ok(())
}
