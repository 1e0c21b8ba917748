//! The SQLite source: reads a kobo hub's SQLite database file, read-only.
//!
//! The file is opened with `SQLITE_OPEN_READ_ONLY` (so it works on a file the exporter cannot write and
//! never creates one) and `PRAGMA query_only`. rusqlite is blocking, so every query runs on tokio's blocking
//! pool, never on the async executor. The SQL lives in [`queries`].

mod queries;

pub use queries::scrape_sql;
mod url;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kobo_backend_api::worker_dir::LastSeenTask;
use kobo_backend_api::{DataSource, HubSnapshot, SourceError, WorkerDir};
use rusqlite::{Connection, OpenFlags};

pub use url::path_from_url;

/// How long a query waits for a lock held by the hub before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A kobo hub's SQLite database.
pub struct SqliteSource {
    path: PathBuf,
    worker_dir: Option<WorkerDir>,
    /// One connection, opened at start-up and reopened after an error; `None` after a failure.
    connection: Arc<Mutex<Option<HubConnection>>>,
}

/// An open database with the queries built for its schema.
struct HubConnection {
    conn: Connection,
    queries: queries::HubQueries,
}

impl SqliteSource {
    /// Opens the hub database at `path` read-only and checks that it is a kobo hub. Fails if the file does
    /// not exist (it is never created), cannot be opened, or lacks the hub tables.
    pub fn open(
        path: impl Into<PathBuf>,
        worker_dir: Option<WorkerDir>,
    ) -> Result<Self, SourceError> {
        let path = path.into();
        let conn = HubConnection::open(&path)?;
        Ok(SqliteSource {
            path,
            worker_dir,
            connection: Arc::new(Mutex::new(Some(conn))),
        })
    }

    /// Opens the database named by a `sqlite:` URL (see [`path_from_url`]).
    pub fn from_url(url: &str, worker_dir: Option<WorkerDir>) -> Result<Self, SourceError> {
        Self::open(path_from_url(url)?, worker_dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl HubConnection {
    fn open(path: &Path) -> Result<Self, SourceError> {
        let target = path.display().to_string();
        let connect_error = |message: String| SourceError::Connect {
            target: target.clone(),
            message,
        };
        // SQLite's own message for a missing file is "unable to open database file": say what it is.
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(connect_error("not a regular file".into())),
            Err(e) => return Err(connect_error(e.to_string())),
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|e| connect_error(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| conn.pragma_update(None, "query_only", true))
            .map_err(|e| connect_error(e.to_string()))?;
        let queries = queries::hub_queries(&conn, &target)?;
        Ok(HubConnection { conn, queries })
    }
}

impl SqliteSource {
    /// Reads the hub on tokio's blocking pool, and last seen beside it.
    async fn read(&self, with_tasks: bool) -> Result<HubSnapshot, SourceError> {
        let connection = Arc::clone(&self.connection);
        let path = self.path.clone();
        // Last seen is listed on another blocking thread while the query runs.
        let last_seen = LastSeenTask::spawn(self.worker_dir.as_ref());
        let join = tokio::task::spawn_blocking(move || {
            // A poisoned lock only means an earlier scrape panicked; the connection is dropped below on
            // any error anyway, so the data behind it is still usable.
            let mut guard = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let hub = match guard.take() {
                Some(hub) => hub,
                None => HubConnection::open(&path)?,
            };
            let target = path.display().to_string();
            let snapshot = queries::read(&hub.conn, &hub.queries, with_tasks, &target)?;
            // Kept only after a successful read: after an error the next scrape reopens the file (it may
            // have been replaced, or the schema migrated).
            *guard = Some(hub);
            drop(guard);
            Ok(snapshot)
        });
        let mut snapshot = join.await.map_err(|e| SourceError::Query {
            target: self.path.display().to_string(),
            message: format!("the query task failed: {e}"),
        })??;
        last_seen.apply(&mut snapshot).await;
        Ok(snapshot)
    }
}

#[async_trait]
impl DataSource for SqliteSource {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn describe(&self) -> String {
        format!("SQLite database {}", self.path.display())
    }

    async fn collect(&self) -> Result<HubSnapshot, SourceError> {
        self.read(false).await
    }

    async fn collect_with_tasks(&self) -> Result<HubSnapshot, SourceError> {
        self.read(true).await
    }
}
