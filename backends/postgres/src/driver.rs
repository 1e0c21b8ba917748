//! The PostgreSQL driver of the SQL engine: connections from the source's pool, the catalog, the snapshot
//! transaction, statements with `statement_timeout` from the time left, values by type, and the cancel.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kobo_backend_api::normalise::{HubSchema, REQUIRED_TABLES};
use kobo_backend_api::secrets::ErrorContext;
use kobo_backend_api::{Backend, DatabaseOptions, SourceError};
use kobo_backend_sql::{
    Catalog, Connection, Dialect, Driver, DriverError, FromRow, Row, ScrapeSql, SqlSource,
    Statement, Value, decode_all, statement_limit,
};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection as _, Executor, Row as _};
use sqlx::{TypeInfo, ValueRef};
use tokio::time::Instant;

use crate::connect::{Lease, Pool, describe, millis};

/// A kobo hub's PostgreSQL database.
pub type PostgresSource = SqlSource<Postgres>;

/// How a scrape that reads the task metrics starts its transaction.
#[cfg(test)]
pub(crate) const BEGIN: &str = Dialect::POSTGRES.begin_snapshot;

/// A session's `statement_timeout` is changed before a statement only when the limit it should have (the
/// query timeout, or the time left when that is nearer) is lower by more than this, or higher by more than
/// a second: the cancel at the deadline covers the rest.
pub const TIMEOUT_TOLERANCE: Duration = Duration::from_millis(250);

/// The required tables that exist, each resolved through the session's `search_path` exactly as the
/// queries will resolve it (`to_regclass`), with the columns of `hub_worker`. `pg_catalog` is readable by
/// every role, so this needs no privilege beyond the GRANTs the queries need.
const CATALOG_SQL: &str = "SELECT t.name, a.attname::text \
     FROM unnest($1::text[]) AS t(name) \
     JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(t.name) \
     LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
       AND t.name = 'hub_worker'";

/// The PostgreSQL source as the exporter registers it.
pub const BACKEND: Backend = kobo_backend_sql::backend(
    &Dialect::POSTGRES,
    &["postgres", "postgresql"],
    |options, _| Ok(Arc::new(open(options)?)),
);

/// The SQL of one scrape of a hub with this schema (what the source runs; public for the benchmark's
/// raw-SQL floor).
pub fn scrape_sql(schema: &HubSchema) -> ScrapeSql {
    ScrapeSql::new(&Dialect::POSTGRES, schema)
}

/// A source for `options.url` (`postgres://` or `postgresql://`). Checks the URL and the options and sets
/// up a lazy pool: no connection is opened here, so a server that is down is reported by the first
/// collection, not here. Refuses a `max_connections` of 0 or above 1,000 and a `query_timeout` above
/// 2,147,483 s (PostgreSQL's `statement_timeout` is an int4 of milliseconds). Must be called inside a
/// tokio runtime (closing discarded connections is spawned on it).
pub fn open(options: DatabaseOptions) -> Result<PostgresSource, SourceError> {
    let context = ErrorContext::new(&options);
    let pool = Pool::new(&options, &context)?;
    let driver = Postgres {
        pool,
        query_timeout: options.query_timeout,
    };
    Ok(SqlSource::with_driver(driver, context, options.worker_dir)
        .with_task_flow(&options.task_flow))
}

/// [`open`], with this session set-up SQL instead of the usual one (to test a set-up that fails).
#[cfg(test)]
pub(crate) fn open_with_setup(
    options: DatabaseOptions,
    setup: String,
) -> Result<PostgresSource, SourceError> {
    let context = ErrorContext::new(&options);
    let mut pool = Pool::new(&options, &context)?;
    if let Some(pool) = Arc::get_mut(&mut pool) {
        pool.set_setup_sql(setup);
    }
    let driver = Postgres {
        pool,
        query_timeout: options.query_timeout,
    };
    Ok(SqlSource::with_driver(driver, context, options.worker_dir)
        .with_task_flow(&options.task_flow))
}

/// The PostgreSQL driver.
pub struct Postgres {
    pub(crate) pool: Arc<Pool>,
    query_timeout: Duration,
}

#[async_trait]
impl Driver for Postgres {
    type Conn = PgLease;

    const DIALECT: Dialect = Dialect::POSTGRES;

    async fn connect(&self, deadline: Instant) -> Result<PgLease, DriverError> {
        let lease = self
            .pool
            .acquire(deadline)
            .await
            .map_err(DriverError::Connect)?;
        Ok(PgLease {
            lease,
            query_timeout: self.query_timeout,
        })
    }

    /// `pg_cancel_backend` from a session of its own (the pool may be full), within `connect_timeout`.
    async fn cancel(&self, pid: i32) -> Result<(), String> {
        let cancel = async {
            let mut conn = self
                .pool
                .connect
                .connect()
                .await
                .map_err(|e| describe(&e))?;
            let result = sqlx::query("SELECT pg_cancel_backend($1)")
                .bind(pid)
                .execute(&mut conn)
                .await
                .map_err(|e| describe(&e));
            let _closed = conn.close().await;
            result.map(drop)
        };
        tokio::time::timeout(self.pool.connect_timeout, cancel)
            .await
            .unwrap_or_else(|_| Err("no connection for the cancel within connect_timeout".into()))
    }
}

/// A connection of the pool, held by one collection.
pub struct PgLease {
    lease: Lease,
    query_timeout: Duration,
}

impl PgLease {
    /// Sets the session's `statement_timeout` to what a statement started now may take, where it is off
    /// by more than the tolerance.
    async fn limit_by(&mut self, deadline: Instant) -> Result<(), DriverError> {
        let limit = statement_limit(deadline, self.query_timeout);
        let current = self.lease.statement_timeout;
        let too_long = current > limit + TIMEOUT_TOLERANCE;
        let too_short = current + Duration::from_secs(1) < limit;
        if too_long || too_short {
            let set = format!("SET statement_timeout = {}", millis(limit));
            self.lease
                .conn
                .execute(AssertSqlSafe(set))
                .await
                .map_err(|e| DriverError::Query(describe(&e)))?;
            self.lease.statement_timeout = limit;
        }
        Ok(())
    }

    /// The connection, for tests of the session.
    #[cfg(test)]
    pub(crate) fn conn(&mut self) -> &mut sqlx::PgConnection {
        &mut self.lease.conn
    }
}

#[async_trait]
impl Connection for PgLease {
    type Cancel = i32;

    fn cancel_handle(&self) -> i32 {
        self.lease.pid
    }

    async fn catalog(&mut self, deadline: Instant) -> Result<Catalog, DriverError> {
        self.limit_by(deadline).await?;
        let rows = sqlx::query(CATALOG_SQL)
            .bind(REQUIRED_TABLES.to_vec())
            .fetch_all(&mut self.lease.conn)
            .await
            .map_err(|e| DriverError::Query(format!("reading the catalog: {}", describe(&e))))?;
        let mut catalog = Catalog::default();
        for row in rows {
            let text = |idx: usize| -> Result<Option<String>, DriverError> {
                row.try_get(idx)
                    .map_err(|e| DriverError::Data(format!("the catalog: {e}")))
            };
            catalog.tables.extend(text(0)?);
            catalog.worker_columns.extend(text(1)?);
        }
        Ok(catalog)
    }

    async fn execute(&mut self, sql: &'static str, deadline: Instant) -> Result<(), DriverError> {
        self.limit_by(deadline).await?;
        self.lease
            .conn
            .execute(sql)
            .await
            .map(drop)
            .map_err(|e| DriverError::Query(describe(&e)))
    }

    async fn fetch<R: FromRow>(
        &mut self,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<Vec<R>, DriverError> {
        self.limit_by(deadline).await?;
        let rows = sqlx::query(AssertSqlSafe(statement.sql()))
            .fetch_all(&mut self.lease.conn)
            .await
            .map_err(|e| DriverError::Query(describe(&e)))?;
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let names: Vec<&str> = first.columns().iter().map(sqlx::Column::name).collect();
        decode_all(&names, rows.iter().map(PgValues)).map_err(DriverError::Data)
    }

    fn release(self) {
        self.lease.release();
    }

    fn discard(self) {
        self.lease.discard();
    }
}

/// A row's values by type: integers of any width, booleans, text, `text[]`.
struct PgValues<'r>(&'r PgRow);

impl Row for PgValues<'_> {
    fn value(&self, index: usize) -> Result<Value<'_>, String> {
        let row = self.0;
        let raw = row.try_get_raw(index).map_err(|e| e.to_string())?;
        if raw.is_null() {
            return Ok(Value::Null);
        }
        let error = |e: sqlx::Error| e.to_string();
        Ok(match raw.type_info().name() {
            "INT2" => Value::Int(row.try_get::<i16, _>(index).map_err(error)?.into()),
            "INT4" => Value::Int(row.try_get::<i32, _>(index).map_err(error)?.into()),
            "INT8" => Value::Int(row.try_get::<i64, _>(index).map_err(error)?),
            "BOOL" => Value::Bool(row.try_get::<bool, _>(index).map_err(error)?),
            "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" => {
                Value::Text(row.try_get::<&str, _>(index).map_err(error)?)
            }
            "TEXT[]" | "VARCHAR[]" => Value::Names(
                row.try_get::<Vec<Option<String>>, _>(index)
                    .map_err(error)?,
            ),
            other => Value::Other(other.to_string()),
        })
    }
}
