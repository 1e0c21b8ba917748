//! Throw-away hub databases on real database servers, one trait for every server ([`TestDb`]), so that a
//! test of database behaviour is written once and run on each ([`PostgresDb`], [`MysqlDb`]).
//!
//! Each value is a new database `kobo_test_<pid>_<n>_<time>` on the server its implementation names (an
//! environment variable, or the default test server), dropped with any role it created when the value is
//! dropped, also when a test fails. An unreachable server skips the test with a loud `SKIPPED:` line on
//! stderr ([`TestDb::create`] gives `None`), or fails it when `CI=true`.

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;

#[cfg(feature = "mysql")]
pub use mysql::{MysqlDb, MysqlSession};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresDb, PostgresSession};

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kobo_backend_api::{DatabaseOptions, HubSnapshot};

/// An error of test set-up or clean-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The password of the roles made by [`TestDb::create_reader`] and [`TestDb::create_user_without_grants`].
pub const READER_PASSWORD: &str = "kobo-reader-secret";

/// The six tables the database sources read: what a least-privilege reader may `SELECT`.
pub const READ_TABLES: [&str; 6] = [
    "hub_worker",
    "hub_worker_arches",
    "hub_arch",
    "hub_worker_channels",
    "hub_channel",
    "hub_task",
];

/// A database created for one test on a real server, dropped on drop.
///
/// The futures need not be `Send`: a test awaits them on its own runtime.
#[allow(async_fn_in_trait)]
pub trait TestDb: Sized + Send + 'static {
    /// A session kept open between statements (to hold a lock, say).
    type Session: TestSession;

    /// The server's name in messages, e.g. `PostgreSQL`.
    const SERVER: &'static str;
    /// kobo's schema for this server in the test material, e.g. `schema-postgres.sql`.
    const SCHEMA: &'static str;
    /// What the server says when a role writes to a table it may only read.
    const PERMISSION_DENIED: &'static str;

    /// Creates an empty database; `None` if the server cannot be reached and `CI` is not `true` (a
    /// `SKIPPED:` line then says so on stderr).
    async fn create() -> Option<Self>;

    /// The database's name.
    fn name(&self) -> &str;

    /// The URL of this database for `user` (with `password` in it, if any).
    fn user_url(&self, user: &str, password: Option<&str>) -> String;

    /// An administrator URL of this database.
    fn url(&self) -> String;

    /// Drops a column, with the constraints and indexes that use it (to make an old schema).
    async fn drop_column(&self, table: &str, column: &str);

    /// The SQL that creates the login role `role` with password [`READER_PASSWORD`], able to reach this
    /// database.
    fn create_login_sql(&self, role: &str) -> String;

    /// The SQL that lets `role` `SELECT` from `table`.
    fn grant_select_sql(&self, role: &str, table: &str) -> String;

    /// Keeps `role`, to drop it with the database.
    fn keep_role(&mut self, role: String);

    /// Runs `sql` on a connection of its own as `user` with `password`: the server's error, if any.
    async fn try_execute_as(&self, user: &str, password: &str, sql: &str) -> Result<(), String>;

    /// A new administrator session on this database.
    async fn session(&self) -> Self::Session;

    /// Ends every other connection to this database (the sources' pooled ones); how many it ended.
    async fn kill_other_connections(&self) -> usize;

    /// Whether the server accepts TLS connections.
    async fn tls_available(&self) -> bool;

    /// The ids of the other sessions connected to this database now (the sources' pooled ones, idle or
    /// not), as the server's activity view shows them (read from a session of its own), in order.
    async fn connection_ids(&self) -> Vec<u64>;

    /// The statements that other sessions on this database are running or waiting on, as the server's
    /// activity view shows them (read from a session of its own).
    async fn running_statements(&self) -> Vec<String>;

    /// Source options for this database as the administrator, with short timeouts.
    fn options(&self) -> DatabaseOptions {
        DatabaseOptions {
            connect_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(5),
            ..DatabaseOptions::new(self.url())
        }
    }

    /// Runs `sql` (any number of statements) as the administrator.
    async fn execute(&self, sql: &str) {
        self.execute_each(&[sql]).await;
    }

    /// Runs each statement (or script) in turn on one administrator connection.
    async fn execute_each(&self, statements: &[impl AsRef<str>]) {
        let mut session = self.session().await;
        for statement in statements {
            session.execute(statement.as_ref()).await;
        }
        session.close().await;
    }

    /// Loads kobo 0.42's schema ([`TestDb::SCHEMA`]).
    async fn load_schema(&self) {
        self.execute(&crate::data::read(Self::SCHEMA)).await;
    }

    /// Loads the schema and the shared fixture hub (`testkit/data/fixture.sql`).
    async fn load_fixture(&self) {
        self.load_schema().await;
        self.execute(&crate::data::read("fixture.sql")).await;
    }

    /// Creates a login role `<database>_<suffix>` with password [`READER_PASSWORD`] and `SELECT` on
    /// `tables`; its name. It is dropped with the database.
    async fn create_login(&mut self, suffix: &str, tables: &[&str]) -> String {
        let role = format!("{}_{suffix}", self.name());
        self.keep_role(role.clone());
        let mut sql = vec![self.create_login_sql(&role)];
        sql.extend(
            tables
                .iter()
                .map(|table| self.grant_select_sql(&role, table)),
        );
        self.execute_each(&sql).await;
        role
    }

    /// Creates a login role with the documented least privileges on this database (`SELECT` on the six
    /// tables the source reads, nothing else); its name.
    async fn create_reader(&mut self) -> String {
        self.create_login("r", &READ_TABLES).await
    }

    /// Creates a login role with no privilege on any table; its name.
    async fn create_user_without_grants(&mut self) -> String {
        self.create_login("n", &[]).await
    }

    /// A new database with the fixture hub loaded; `None` as [`TestDb::create`].
    async fn with_fixture() -> Option<Self> {
        let db = Self::create().await?;
        db.load_fixture().await;
        Some(db)
    }
}

/// A session on a [`TestDb`], kept open between statements.
#[allow(async_fn_in_trait)]
pub trait TestSession {
    /// Runs `sql` (any number of statements) in this session.
    async fn execute(&mut self, sql: &str);

    /// Locks `table` against readers until [`TestSession::unlock`].
    async fn lock_exclusive(&mut self, table: &str);

    /// Releases the lock of [`TestSession::lock_exclusive`].
    async fn unlock(&mut self);

    /// Ends the session.
    async fn close(self);
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether tests run under CI (`CI=true`), where an unreachable server is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A database (or user) name unique to this process and call: `kobo_test_<pid>_<n>_<micros>`.
pub fn unique_name() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    format!(
        "kobo_test_{}_{}_{micros}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The rule for a test server that cannot be reached: a loud `SKIPPED:` line on stderr and `None` (the test
/// returns), or a panic under `CI=true`. `server` names it ("PostgreSQL"), `env_var` the variable that
/// points the tests elsewhere.
pub fn unreachable<T>(server: &str, url: &str, env_var: &str, why: &str) -> Option<T> {
    let url = kobo_backend_api::redact_url(url);
    if in_ci() {
        panic!("{server} test server {url} unreachable under CI=true: {why}");
    }
    eprintln!(
        "SKIPPED: {server} test server {url} unreachable ({why}); set {env_var} or start the server"
    );
    None
}

/// Connects with `connect` within 5 s; an unreachable server as [`unreachable`] says.
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn connect_admin<C, E: std::fmt::Display>(
    server: &str,
    url: &str,
    env_var: &str,
    connect: impl Future<Output = Result<C, E>>,
) -> Option<C> {
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => unreachable(server, url, env_var, &e.to_string()),
        Err(_) => unreachable(server, url, env_var, "no answer within 5 s"),
    }
}

/// Runs `cleanup` to completion on a thread and runtime of its own (so it can be called from `Drop` inside
/// a test's runtime); a failure is a warning naming `what`, not a panic.
pub fn cleanup_on_own_thread<F, Fut>(what: &str, cleanup: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(cleanup())
    });
    match thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: could not clean up {what}: {e}"),
        Err(_) => eprintln!("warning: cleaning up {what} panicked"),
    }
}

/// The first characters of a script, for an error message.
pub fn head(sql: &str) -> String {
    sql.chars().take(300).collect()
}

/// `count` more workers (ids from 100), each with the arch and the channel of id 1: statements for a hub
/// with the fixture loaded.
pub fn more_workers(count: usize) -> String {
    (100..100 + count)
        .map(|id| {
            format!(
                "INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, task_count, \
                 current_load, min_priority) VALUES ({id}, 'key-{id}', 'extra-{id}', TRUE, 1, 0, TRUE, 0, 0, 0); \
                 INSERT INTO hub_worker_arches (id, worker_id, arch_id) VALUES ({id}, {id}, 1); \
                 INSERT INTO hub_worker_channels (id, worker_id, channel_id) VALUES ({id}, {id}, 1);"
            )
        })
        .collect()
}

/// The snapshot's data in a fixed order (workers by name, task groups by state, arch and channel, worker
/// task counts by worker and state), without timings: what two sources reading the same hub must agree on.
pub fn comparable(mut snapshot: HubSnapshot) -> HubSnapshot {
    snapshot.workers.sort_by(|a, b| a.name.cmp(&b.name));
    snapshot.timings.clear();
    if let Some(tasks) = &mut snapshot.tasks {
        tasks
            .groups
            .sort_by(|a, b| (a.state, &a.arch, &a.channel).cmp(&(b.state, &b.arch, &b.channel)));
        tasks
            .per_worker
            .sort_by(|a, b| (&a.worker, a.state).cmp(&(&b.worker, b.state)));
    }
    snapshot
}
