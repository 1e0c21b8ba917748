//! The SQLite source: reads a kobo hub's SQLite database file, read-only, through the SQL engine
//! (`kobo_backend_sql`), which it gives SQLite's connections, catalog, values and interrupt.
//!
//! The file is opened with `SQLITE_OPEN_READ_ONLY` (so it works on a file the exporter cannot write and
//! never creates one) and `PRAGMA query_only`. rusqlite is blocking, so every statement runs on tokio's
//! blocking pool, never on the async executor. A statement waits for a lock held by the hub at most until
//! the scrape's deadline (its busy timeout is the time left, 5 s at most), and one still running at the
//! deadline is interrupted (`sqlite3_interrupt`).
//!
//! At each collection the path's device and inode are compared with those of the file the connection was
//! opened on: a file deleted (or moved away) fails the collection, one replaced (e.g. by `mv new old`, the
//! usual atomic replacement) is opened anew; the old inode is never served.
//!
//! A scrape's worker query (outside a transaction) is not run again while `PRAGMA data_version`, read just
//! before it, is what it was at the last run: no other connection has committed since, so the rows are the
//! same and the kept result is served. The task refresh's statements always run, in their snapshot
//! transaction.

mod url;

use std::any::Any;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kobo_backend_api::normalise::HubSchema;
use kobo_backend_api::secrets::ErrorContext;
use kobo_backend_api::{Backend, SourceError, WorkerDir};
use kobo_backend_sql::{
    Catalog, Columns, Connection as SqlConnection, Dialect, Driver, DriverError, FromRow, Row,
    ScrapeSql, SqlSource, Statement, Value, statement_limit,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, InterruptHandle, OpenFlags};
use tokio::time::Instant;

pub use url::path_from_url;

/// A kobo hub's SQLite database.
pub type SqliteSource = SqlSource<Sqlite>;

/// The longest a statement waits for a lock held by the hub (less when the scrape's deadline is nearer).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A statement's wait for a lock ends this long before the deadline: the statement then ends by itself
/// with SQLite's own error (`database is locked`) rather than being abandoned mid-wait.
const BUSY_MARGIN: Duration = Duration::from_millis(100);

/// The SQLite source as the exporter registers it.
pub const BACKEND: Backend =
    kobo_backend_sql::backend(&Dialect::SQLITE, &["sqlite"], |options, _| {
        let source = from_url(&options.url, options.worker_dir)?;
        Ok(Arc::new(source.with_task_flow(&options.task_flow)))
    });

/// The SQL of one scrape of a hub with this schema (what the source runs; public for the benchmark's
/// raw-SQL floor).
pub fn scrape_sql(schema: &HubSchema) -> ScrapeSql {
    ScrapeSql::new(&Dialect::SQLITE, schema)
}

/// Opens the hub database at `path` read-only and checks that it is a kobo hub. Fails if the file does not
/// exist (it is never created), cannot be opened, or lacks the hub tables.
pub fn open(
    path: impl Into<PathBuf>,
    worker_dir: Option<WorkerDir>,
) -> Result<SqliteSource, SourceError> {
    let path = path.into();
    let context = ErrorContext::without_secrets(path.display().to_string());
    let hub = HubConnection::open(&path, false).map_err(|e| context.connect(e))?;
    let catalog = read_catalog(&hub.conn).map_err(|e| context.query(e))?;
    HubSchema::check(&catalog.tables, &catalog.worker_columns).map_err(|e| context.schema(e))?;
    let driver = Sqlite {
        path,
        slot: Arc::new(Mutex::new(Some(hub))),
    };
    Ok(SqlSource::with_driver(driver, context, worker_dir))
}

/// Opens the database named by a `sqlite:` URL (see [`path_from_url`]).
pub fn from_url(url: &str, worker_dir: Option<WorkerDir>) -> Result<SqliteSource, SourceError> {
    open(path_from_url(url)?, worker_dir)
}

/// The SQLite driver: one connection, opened at start-up, kept between collections and reopened after an
/// error (the file may have been replaced, or the schema migrated).
pub struct Sqlite {
    path: PathBuf,
    slot: Arc<Mutex<Option<HubConnection>>>,
}

impl Sqlite {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Statements the kept connection has run, not counting results it served again unchanged (for the
    /// tests; 0 while a collection holds the connection).
    pub fn statements_run(&self) -> u64 {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |hub| hub.statements_run)
    }
}

/// An open database and the file it was opened on.
struct HubConnection {
    conn: Connection,
    /// The last result of each statement run outside a transaction, with the `PRAGMA data_version` read
    /// just before it: while the version is the same, no other connection has committed, and the result
    /// is served again without running the statement.
    results: HashMap<String, (i64, Box<dyn Any + Send>)>,
    /// Statements run (not served from `results`), for the tests.
    statements_run: u64,
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

impl HubConnection {
    /// Opens the database; `reopening` after it was open once (the source is only made from a file that
    /// opens), when a missing file is one deleted or moved away since.
    fn open(path: &Path, reopening: bool) -> Result<Self, String> {
        // SQLite's own message for a missing file is "unable to open database file": say what it is.
        // The file replaced between this and the open is noticed at the next collection (another inode).
        let file = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => FileId::of(&meta),
            Ok(_) => return Err("not a regular file".into()),
            Err(e) if reopening && e.kind() == std::io::ErrorKind::NotFound => {
                return Err(deleted(&e));
            }
            Err(e) => return Err(e.to_string()),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| e.to_string())?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| conn.pragma_update(None, "query_only", true))
            .map_err(|e| e.to_string())?;
        Ok(HubConnection {
            conn,
            file,
            results: HashMap::new(),
            statements_run: 0,
        })
    }

    /// Whether the file at `path` is still the one this connection reads. `Ok(false)`: another file
    /// (replaced, e.g. by a rename); an error: the path is gone (deleted or moved away) or cannot be
    /// checked.
    fn is_current(&self, path: &Path) -> Result<bool, String> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(FileId::of(&meta) == self.file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(deleted(&e)),
            Err(e) => Err(format!(
                "cannot check that the database file is still the one opened ({e})"
            )),
        }
    }
}

/// The message for a database file that is no longer at its path.
fn deleted(error: &std::io::Error) -> String {
    format!(
        "the database file was deleted or moved away since it was opened ({error}); it is read again \
         once a file is at this path"
    )
}

/// The tables and views there are, and the columns of `hub_worker`.
fn read_catalog(conn: &Connection) -> Result<Catalog, String> {
    let names = |sql: &str| -> Result<Vec<String>, rusqlite::Error> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect()
    };
    let read = || -> Result<Catalog, rusqlite::Error> {
        Ok(Catalog {
            tables: names("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")?,
            worker_columns: names("SELECT name FROM pragma_table_info('hub_worker')")?,
        })
    };
    read().map_err(|e| e.to_string())
}

#[async_trait]
impl Driver for Sqlite {
    type Conn = SqliteConn;

    const DIALECT: Dialect = Dialect::SQLITE;

    /// The kept connection if the file at the path is still the one it reads; else the file opened anew.
    async fn connect(&self, deadline: Instant) -> Result<SqliteConn, DriverError> {
        let slot = Arc::clone(&self.slot);
        let path = self.path.clone();
        let open = tokio::task::spawn_blocking(move || {
            let kept = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            // A file deleted or replaced at the path is noticed here: the connection still reads the old
            // inode. Deleted: the collection fails (and the old file is let go of); replaced: the new
            // file is opened.
            match kept {
                Some(hub) if hub.is_current(&path)? => Ok((hub, false)),
                _ => HubConnection::open(&path, true).map(|hub| (hub, true)),
            }
        });
        let (hub, opened) = match tokio::time::timeout_at(deadline, open).await {
            Ok(Ok(result)) => result.map_err(DriverError::Connect)?,
            Ok(Err(e)) => return Err(DriverError::Connect(format!("the open task failed: {e}"))),
            Err(_) => {
                return Err(DriverError::Connect(
                    "the database file did not open by the scrape's deadline".into(),
                ));
            }
        };
        Ok(SqliteConn {
            interrupt: Arc::new(hub.conn.get_interrupt_handle()),
            hub: Some(hub),
            opened,
            slot: Arc::clone(&self.slot),
        })
    }

    async fn cancel(&self, interrupt: Arc<InterruptHandle>) -> Result<(), String> {
        interrupt.interrupt();
        Ok(())
    }
}

/// How long a statement started now may wait for a lock: [`BUSY_TIMEOUT`], or until [`BUSY_MARGIN`] before
/// the deadline when that is sooner.
fn busy_timeout(deadline: Instant) -> Duration {
    statement_limit(deadline, BUSY_TIMEOUT)
        .saturating_sub(BUSY_MARGIN)
        .max(Duration::from_millis(1))
}

/// The connection, held by one collection; its statements run on the blocking pool.
pub struct SqliteConn {
    /// `None` while a statement runs (the connection is on the blocking thread) or once it is lost.
    hub: Option<HubConnection>,
    interrupt: Arc<InterruptHandle>,
    /// Whether it was opened for this collection (the file may be another hub than the last one).
    opened: bool,
    slot: Arc<Mutex<Option<HubConnection>>>,
}

impl SqliteConn {
    /// Runs `op` on the connection on tokio's blocking pool. If this future is dropped meanwhile, the
    /// connection is closed when `op` returns.
    async fn blocking<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut HubConnection) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        let mut hub = self.hub.take().ok_or_else(|| {
            DriverError::Query("the connection was lost by an earlier error".into())
        })?;
        let (hub, result) = tokio::task::spawn_blocking(move || {
            let result = op(&mut hub);
            (hub, result)
        })
        .await
        .map_err(|e| DriverError::Query(format!("the query task failed: {e}")))?;
        self.hub = Some(hub);
        result
    }
}

#[async_trait]
impl SqlConnection for SqliteConn {
    type Cancel = Arc<InterruptHandle>;

    fn cancel_handle(&self) -> Arc<InterruptHandle> {
        Arc::clone(&self.interrupt)
    }

    fn schema_may_differ(&self) -> bool {
        self.opened
    }

    async fn catalog(&mut self, deadline: Instant) -> Result<Catalog, DriverError> {
        let busy = busy_timeout(deadline);
        self.blocking(move |hub| {
            hub.conn
                .busy_timeout(busy)
                .map_err(|e| e.to_string())
                .and_then(|()| read_catalog(&hub.conn))
                .map_err(DriverError::Query)
        })
        .await
    }

    async fn execute(&mut self, sql: &'static str, _deadline: Instant) -> Result<(), DriverError> {
        self.blocking(move |hub| {
            hub.conn
                .execute_batch(sql)
                .map_err(|e| DriverError::Query(e.to_string()))
        })
        .await
    }

    async fn fetch<R: FromRow>(
        &mut self,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<Vec<R>, DriverError> {
        let sql = statement.sql();
        let busy = busy_timeout(deadline);
        self.blocking(move |hub| {
            let query = |e: rusqlite::Error| DriverError::Query(e.to_string());
            let conn = &hub.conn;
            conn.busy_timeout(busy).map_err(query)?;
            // Outside a transaction (a scrape's worker query), a result no other connection can have
            // changed is served again. Inside one (the task refresh) every statement runs, on the
            // transaction's snapshot.
            let version = match conn.is_autocommit() {
                true => Some(
                    conn.query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0))
                        .map_err(query)?,
                ),
                false => None,
            };
            if let (Some(version), Some((seen, rows))) = (version, hub.results.get(&sql))
                && *seen == version
                && let Some(rows) = rows.downcast_ref::<Vec<R>>()
            {
                return Ok(rows.clone());
            }
            let mut stmt = conn.prepare_cached(&sql).map_err(query)?;
            let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let columns = Columns::find::<R>(&names).map_err(DriverError::Data)?;
            let mut rows = stmt.query([]).map_err(query)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(query)? {
                out.push(R::decode(&SqliteValues(row), &columns).map_err(DriverError::Data)?);
            }
            drop(rows);
            drop(stmt);
            hub.statements_run += 1;
            if let Some(version) = version {
                // A handful of statements run outside a transaction; never let the map grow.
                if hub.results.len() >= 8 {
                    hub.results.clear();
                }
                hub.results.insert(sql, (version, Box::new(out.clone())));
            }
            Ok(out)
        })
        .await
    }

    /// Kept for the next collection.
    fn release(mut self) {
        if let Some(hub) = self.hub.take() {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(hub);
            }
        }
    }
}

/// A row's values as SQLite stores them: Django's integers and booleans as INTEGER, names as TEXT.
struct SqliteValues<'r>(&'r rusqlite::Row<'r>);

impl Row for SqliteValues<'_> {
    fn value(&self, index: usize) -> Result<Value<'_>, String> {
        Ok(match self.0.get_ref(index).map_err(|e| e.to_string())? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(bytes) => {
                Value::Text(std::str::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())?)
            }
            ValueRef::Blob(_) => Value::Other("BLOB".into()),
        })
    }
}
