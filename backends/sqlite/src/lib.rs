//! The SQLite source: reads a kobo hub's SQLite database file, read-only.
//!
//! The file is opened with `SQLITE_OPEN_READ_ONLY` (so it works on a file the exporter cannot write and
//! never creates one) and `PRAGMA query_only`. rusqlite is blocking, so every query runs on tokio's blocking
//! pool, never on the async executor. The SQL lives in [`queries`].
//!
//! At each collection the path's device and inode are compared with those of the file the connection was
//! opened on: a file deleted (or moved away) fails the collection, one replaced (e.g. by `mv new old`, the
//! usual atomic replacement) is opened anew; the old inode is never served.

mod queries;

pub use queries::scrape_sql;
mod url;

use std::os::unix::fs::MetadataExt;
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
    /// The device and inode of the file the connection was opened on, to notice the file at the path being
    /// deleted or replaced (by a rename, the usual way to replace a file atomically): SQLite keeps reading
    /// the open file, i.e. the old rows, for ever.
    file: FileId,
}

/// A file's device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

impl SqliteSource {
    /// Opens the hub database at `path` read-only and checks that it is a kobo hub. Fails if the file does
    /// not exist (it is never created), cannot be opened, or lacks the hub tables.
    pub fn open(
        path: impl Into<PathBuf>,
        worker_dir: Option<WorkerDir>,
    ) -> Result<Self, SourceError> {
        let path = path.into();
        let conn = HubConnection::open(&path, false)?;
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
    /// Opens the database; `reopening` after it was open once (the source is only made from a file that
    /// opens), when a missing file is one deleted or moved away since.
    fn open(path: &Path, reopening: bool) -> Result<Self, SourceError> {
        let target = path.display().to_string();
        let connect_error = |message: String| SourceError::Connect {
            target: target.clone(),
            message,
        };
        // SQLite's own message for a missing file is "unable to open database file": say what it is.
        // The file replaced between this and the open is noticed at the next collection (another inode).
        let file = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => FileId::of(&meta),
            Ok(_) => return Err(connect_error("not a regular file".into())),
            Err(e) if reopening && e.kind() == std::io::ErrorKind::NotFound => {
                return Err(deleted(path, &e))
            }
            Err(e) => return Err(connect_error(e.to_string())),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|e| connect_error(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| conn.pragma_update(None, "query_only", true))
            .map_err(|e| connect_error(e.to_string()))?;
        let queries = queries::hub_queries(&conn, &target)?;
        Ok(HubConnection {
            conn,
            queries,
            file,
        })
    }

    /// Whether the file at `path` is still the one this connection reads. `Ok(false)`: another file
    /// (replaced, e.g. by a rename); an error: the path is gone (deleted or moved away) or cannot be
    /// checked.
    fn is_current(&self, path: &Path) -> Result<bool, SourceError> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(FileId::of(&meta) == self.file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(deleted(path, &e)),
            Err(e) => Err(SourceError::Connect {
                target: path.display().to_string(),
                message: format!(
                    "cannot check that the database file is still the one opened ({e})"
                ),
            }),
        }
    }
}

/// The error for a database file that is no longer at its path.
fn deleted(path: &Path, error: &std::io::Error) -> SourceError {
    SourceError::Connect {
        target: path.display().to_string(),
        message: format!(
            "the database file was deleted or moved away since it was opened ({error}); it is read again \
             once a file is at this path"
        ),
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
            // A file deleted or replaced at the path is noticed here: the connection still reads the old
            // inode. Deleted: the collection fails (and the old file is let go of); replaced: the new file
            // is opened.
            let hub = match guard.take() {
                Some(hub) if hub.is_current(&path)? => hub,
                Some(replaced) => {
                    drop(replaced);
                    HubConnection::open(&path, true)?
                }
                None => HubConnection::open(&path, true)?,
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
