//! Connecting: [`DatabaseOptions`] to sqlx connect options and a small lazy pool of the source's own
//! ([`Pool`]), getting a connection from it, and sqlx errors to messages.

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kobo_backend_api::secrets::ErrorContext;
use kobo_backend_api::{DatabaseOptions, SourceError};
use sqlx::error::DatabaseError;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, Row};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The `application_name` the exporter's sessions show in `pg_stat_activity`, unless the URL sets one.
pub const APPLICATION_NAME: &str = "kobo-exporter";

/// URL schemes this source accepts.
const SCHEMES: [&str; 2] = ["postgres", "postgresql"];

/// The connect options for `options`: the URL as sqlx parses it (`sslmode`, `sslrootcert`, `host=/socket/dir`,
/// ...), the separate password and CA file on top.
pub(crate) fn connect_options(
    options: &DatabaseOptions,
    context: &ErrorContext,
) -> Result<PgConnectOptions, SourceError> {
    let scheme = options
        .url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    if !scheme.is_some_and(|s| SCHEMES.contains(&s.as_str())) {
        return Err(SourceError::Config(format!(
            "{} is not a PostgreSQL URL: the scheme must be postgres:// or postgresql://",
            context.target()
        )));
    }
    let mut connect = PgConnectOptions::from_str(&options.url)
        .map_err(|e| context.config("invalid PostgreSQL URL", e))?;
    if let Some(password) = &options.password {
        connect = connect.password(password);
    }
    if let Some(ca_file) = &options.ca_file {
        if !ca_file.is_file() {
            return Err(SourceError::Config(format!(
                "ca_file {} for {} is not a readable file",
                ca_file.display(),
                context.target()
            )));
        }
        connect = connect.ssl_root_cert(ca_file);
    }
    if connect.get_application_name().is_none() {
        connect = connect.application_name(APPLICATION_NAME);
    }
    Ok(connect)
}

/// The longest `query_timeout` PostgreSQL can enforce: `statement_timeout` is an int4 of milliseconds.
pub(crate) const MAX_QUERY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// A connection is replaced after this long, and an idle one after [`IDLE_TIMEOUT`] unused (checked when a
/// collection needs one), so that server-side session memory does not grow for ever.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How long closing a discarded connection politely (`Terminate`) may take in the background.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The statements every new session runs before its first use: `statement_timeout` to the query timeout
/// (lowered before a statement when the scrape's deadline is nearer, see `driver`), `TimeZone` UTC (times
/// are read as UTC text) and `default_transaction_read_only = on` (every statement of the session is
/// read-only, also the worker query that runs outside an explicit transaction); then the backend's process
/// id, to cancel its statement from another session. The one place of the set-up SQL.
pub(crate) fn session_setup_sql(query_timeout: Duration) -> String {
    format!(
        "SET statement_timeout = {}; SET TimeZone = 'UTC'; \
         SET default_transaction_read_only = on; SELECT pg_backend_pid()",
        millis(query_timeout)
    )
}

/// A duration as whole milliseconds for `statement_timeout`, at least 1 (0 would mean no limit).
pub(crate) fn millis(duration: Duration) -> u128 {
    duration.as_millis().max(1)
}

/// A connection with its age, its backend's process id and the session's `statement_timeout`.
pub(crate) struct Live {
    pub(crate) conn: PgConnection,
    opened: Instant,
    pub(crate) pid: i32,
    pub(crate) statement_timeout: Duration,
}

/// An idle connection.
struct Idle {
    live: Live,
    since: Instant,
}

/// A small lazy pool of at most `max_connections` connections, opened on demand, each tested
/// (`ping`) before it is handed out, so that one broken by a server restart is replaced.
///
/// It is the source's own rather than sqlx's `PgPool` because of how sqlx's pool fails (sqlx 0.9):
/// - a connection dropped in the middle of a statement (a collection abandoned at its deadline) goes back
///   through a spawned, unbounded "ping, else `close_hard`" task; over TLS with a live server that task
///   waits for ever (the TLS flush of `close_hard` waits for bytes the server never sends) and keeps the
///   pool's permit: after `max_connections` such collections the pool is wedged for as long as the process
///   lives (transact-rs/sqlx#4349 is the same leak with a silent peer);
/// - a refused connection is retried until the acquire timeout, and a failed session set-up is retried
///   and reported only as "pool timed out".
///
/// Here a connection goes back to the pool only when a collection gave it back ([`Lease::release`]) after
/// success; a [`Lease`] dropped before (the collection's future dropped mid-statement) closes its socket at
/// once and frees its place in the pool. Getting a connection is bounded by one `connect_timeout`, and the
/// first failure of a new connection (refused, authentication, TLS, set-up) is the error, at once.
///
/// The statement of an abandoned collection is stopped by the driver (`pg_cancel_backend` from a session
/// of its own, see `driver`: sqlx keeps the backend key data of a cancel request private); its lease is
/// closed here.
pub(crate) struct Pool {
    pub(crate) connect: PgConnectOptions,
    setup: String,
    query_timeout: Duration,
    max_connections: u32,
    pub(crate) connect_timeout: Duration,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
}

/// A connection of the [`Pool`], held by one collection. Dropped without [`release`](Lease::release) (the
/// collection failed, or its future was dropped mid-use), the connection is closed, never reused, and its
/// place in the pool is free at once: dropping it does no I/O and waits for nothing.
pub(crate) struct Lease {
    pool: Arc<Pool>,
    live: Live,
    _permit: OwnedSemaphorePermit,
}

impl Deref for Lease {
    type Target = Live;

    fn deref(&self) -> &Live {
        &self.live
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Live {
        &mut self.live
    }
}

impl Lease {
    /// Gives the connection back to the pool for the next collection: only after work that ran to its end
    /// and left the session clean.
    pub(crate) fn release(self) {
        let Lease {
            pool,
            live,
            _permit,
        } = self;
        pool.lock_idle().push(Idle {
            live,
            since: Instant::now(),
        });
        // The permit is dropped after the connection is idle: never more connections than permits.
        drop(_permit);
    }

    /// Closes the connection politely in the background (its session is in a known state, e.g. after a
    /// query error) and frees its place in the pool at once.
    pub(crate) fn discard(self) {
        close_in_background(self.live.conn);
    }
}

/// Sends `Terminate` and closes `conn` on a spawned task, giving up (dropping the socket) after
/// [`CLOSE_TIMEOUT`]; without a runtime the socket is just dropped.
fn close_in_background(conn: PgConnection) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _closed = tokio::time::timeout(CLOSE_TIMEOUT, conn.close()).await;
        });
    }
}

/// Where getting a connection is (for the message when it times out).
const WAITING: u8 = 0;
const TESTING: u8 = 1;
const OPENING: u8 = 2;

/// What went wrong getting a connection (before the error context is added).
enum AcquireError {
    /// Nothing came within the time allowed.
    TimedOut,
    /// Opening a connection failed.
    Connect(sqlx::Error),
    /// The connection opened but its session set-up failed.
    Setup(sqlx::Error),
}

impl Pool {
    /// A lazy pool for `options`: checks them, opens nothing. Needs a tokio runtime (closing discarded
    /// connections is spawned on it).
    pub(crate) fn new(
        options: &DatabaseOptions,
        context: &ErrorContext,
    ) -> Result<Arc<Pool>, SourceError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SourceError::Config(format!(
                "the PostgreSQL source for {} must be created inside a tokio runtime",
                context.target()
            )));
        }
        options.check_max_connections(context.target())?;
        if options.query_timeout > MAX_QUERY_TIMEOUT {
            return Err(SourceError::Config(format!(
                "query_timeout for {} is {} s: PostgreSQL's statement_timeout allows at most {} s \
                 (2147483647 ms, about 24.8 days)",
                context.target(),
                options.query_timeout.as_secs_f64(),
                MAX_QUERY_TIMEOUT.as_secs()
            )));
        }
        let connect = connect_options(options, context)?;
        Ok(Arc::new(Pool {
            connect,
            setup: session_setup_sql(options.query_timeout),
            query_timeout: options.query_timeout,
            max_connections: options.max_connections,
            connect_timeout: options.connect_timeout,
            permits: Arc::new(Semaphore::new(options.max_connections as usize)),
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// Replaces the session set-up SQL (to test a set-up that fails).
    #[cfg(test)]
    pub(crate) fn set_setup_sql(&mut self, sql: String) {
        self.setup = sql;
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        // A plain list: one left by a panic is still fine to use.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection, within `connect_timeout` (and by `deadline`) for everything: waiting for a place in
    /// the pool, testing an idle connection, opening and setting up a new one. The first failure to open
    /// one is the error, at once (a refused connection is not retried until the timeout).
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
    ) -> Result<Lease, String> {
        let phase = AtomicU8::new(WAITING);
        let deadline = tokio::time::Instant::now()
            .checked_add(self.connect_timeout)
            .map_or(deadline, |own| own.min(deadline));
        let result = tokio::time::timeout_at(deadline, self.lease(&phase))
            .await
            .unwrap_or(Err(AcquireError::TimedOut));
        result.map_err(|error| match error {
            AcquireError::TimedOut => {
                let cause = match phase.load(Ordering::Relaxed) {
                    WAITING => format!(
                        "all {} connections of the pool are in use by other collections",
                        self.max_connections
                    ),
                    _ => "the server did not answer".to_string(),
                };
                format!(
                    "no connection within connect_timeout ({} s): {cause}",
                    self.connect_timeout.as_secs_f64()
                )
            }
            AcquireError::Connect(e) => describe(&e),
            AcquireError::Setup(e) => format!(
                "the connection opened, but its session set-up ({}) failed: {}",
                self.setup,
                describe(&e)
            ),
        })
    }

    /// A place in the pool, then an idle connection that answers a ping or a new one; `phase` says where it
    /// is.
    async fn lease(self: &Arc<Self>, phase: &AtomicU8) -> Result<Lease, AcquireError> {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            // The semaphore is never closed.
            return Err(AcquireError::TimedOut);
        };
        loop {
            let idle = self.lock_idle().pop();
            let Some(Idle { mut live, since }) = idle else {
                break;
            };
            if live.opened.elapsed() > MAX_LIFETIME || since.elapsed() > IDLE_TIMEOUT {
                close_in_background(live.conn);
                continue;
            }
            phase.store(TESTING, Ordering::Relaxed);
            // A broken one is dropped here (its socket closed) and the next one tried; a silent one is
            // dropped with this future at the deadline.
            if live.conn.ping().await.is_ok() {
                return Ok(Lease {
                    pool: Arc::clone(self),
                    live,
                    _permit: permit,
                });
            }
        }
        phase.store(OPENING, Ordering::Relaxed);
        let mut conn = self
            .connect
            .connect()
            .await
            .map_err(AcquireError::Connect)?;
        let pid = match sqlx::raw_sql(AssertSqlSafe(self.setup.clone()))
            .fetch_all(&mut conn)
            .await
            .and_then(|rows| match rows.last() {
                Some(row) => row.try_get::<i32, _>(0),
                None => Err(sqlx::Error::RowNotFound),
            }) {
            Ok(pid) => pid,
            Err(e) => {
                close_in_background(conn);
                return Err(AcquireError::Setup(e));
            }
        };
        Ok(Lease {
            pool: Arc::clone(self),
            live: Live {
                conn,
                opened: Instant::now(),
                pid,
                statement_timeout: self.query_timeout,
            },
            _permit: permit,
        })
    }
}

/// A message for a sqlx error: the server's message with its SQLSTATE, a plain-words note for the common
/// causes, and the rest as sqlx words it.
pub(crate) fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => describe_database(db.as_ref()),
        other => other.to_string(),
    }
}

fn describe_database(db: &dyn DatabaseError) -> String {
    let code = db.code().unwrap_or_default();
    let note = match code.as_ref() {
        "57014" => {
            " (the statement ran past its limit, query_timeout or the scrape's deadline, and was canceled)"
        }
        "28P01" | "28000" => " (check the user and password)",
        "3D000" => " (check the database name in the URL)",
        "42501" => " (the user lacks a privilege: see the GRANTs in the documentation)",
        "25006" => " (the exporter's transactions are read-only)",
        "57P01" | "57P02" | "57P03" => " (the server is shutting down or restarting)",
        _ => "",
    };
    format!("{} (SQLSTATE {code}){note}", db.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<PgConnectOptions, SourceError> {
        let options = DatabaseOptions::new(url);
        connect_options(&options, &ErrorContext::new(&options))
    }

    #[test]
    fn unix_sockets_schemes_and_the_application_name() {
        for url in [
            "postgres://kobo@localhost/hub?host=/var/run/postgresql",
            "postgresql://kobo@%2Fvar%2Frun%2Fpostgresql/hub",
        ] {
            let options = parse(url).expect(url);
            assert_eq!(
                options.get_socket().map(|p| p.display().to_string()),
                Some("/var/run/postgresql".into())
            );
            assert_eq!(options.get_database(), Some("hub"));
        }
        let options = parse("postgres://kobo@db:5433/hub?sslmode=verify-full").expect("TCP");
        assert_eq!((options.get_host(), options.get_port()), ("db", 5433));
        assert_eq!(options.get_application_name(), Some(APPLICATION_NAME));
        let named = parse("postgres://kobo@db/hub?application_name=mine").expect("named");
        assert_eq!(named.get_application_name(), Some("mine"));
    }
}
