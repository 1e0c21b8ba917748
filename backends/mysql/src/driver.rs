//! The MySQL/MariaDB driver of the SQL engine: connections from mysql_async's pool, `information_schema`,
//! the snapshot transaction, statements with their limit from the time left, values of the text protocol,
//! and `KILL QUERY`.

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
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Pool};
use tokio::time::Instant;

use crate::connect::{self, describe};

/// A kobo hub's MySQL or MariaDB database.
pub type MysqlSource = SqlSource<Mysql>;

/// How long closing a connection in the background may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The MySQL/MariaDB source as the exporter registers it (`mariadb://` is read as `mysql://`).
pub const BACKEND: Backend =
    kobo_backend_sql::backend(&Dialect::MYSQL, &["mysql", "mariadb"], |options, _| {
        Ok(Arc::new(open(options)?))
    });

/// The SQL of one scrape of a hub with this schema (what the source runs, before each statement gets its
/// limit; public for the benchmark's raw-SQL floor).
pub fn scrape_sql(schema: &HubSchema) -> ScrapeSql {
    ScrapeSql::new(&Dialect::MYSQL, schema)
}

/// The columns of the required tables in the current database, from `information_schema` (which shows
/// only tables the user has a privilege on: a missing GRANT reads as a missing table, and the message
/// says so).
fn catalog_sql() -> String {
    let tables: Vec<String> = REQUIRED_TABLES.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({})",
        tables.join(", ")
    )
}

/// A statement's limit is written into it only when it is nearer than the session's (the query timeout)
/// by more than this: a steady run of scrapes sends the statements as they are.
const LIMIT_TOLERANCE: Duration = Duration::from_millis(250);

/// `sql` with its server-side limit `limit`: for MySQL the `MAX_EXECUTION_TIME` hint (milliseconds; MariaDB
/// reads it as a comment), always; for MariaDB, whose session limit is the query timeout, `SET STATEMENT
/// max_statement_time = s FOR` (in a MariaDB-only executable comment, which MySQL skips) when `limit` is
/// nearer than `query_timeout`.
fn limited(statement: &Statement, limit: Duration, query_timeout: Duration) -> String {
    let millis = limit.as_millis().max(1);
    statement.sql_with(
        &mariadb_limit(limit, query_timeout),
        &format!("/*+ MAX_EXECUTION_TIME({millis}) */ "),
    )
}

/// MariaDB's `SET STATEMENT max_statement_time = s FOR ` prefix for a statement that must end within
/// `limit`, in a MariaDB-only executable comment; empty when the session's limit (`query_timeout`) is
/// near enough.
fn mariadb_limit(limit: Duration, query_timeout: Duration) -> String {
    match limit + LIMIT_TOLERANCE < query_timeout {
        true => format!(
            "/*M!100108 SET STATEMENT max_statement_time = {:.3} FOR */ ",
            limit.as_secs_f64()
        ),
        false => String::new(),
    }
}

/// A source for `options.url` (`mysql://` or `mariadb://`). Checks the URL and the options and sets up a
/// lazy pool: no connection is opened here, so a server that is down is reported by the first collection,
/// not here.
pub fn open(options: DatabaseOptions) -> Result<MysqlSource, SourceError> {
    let context = ErrorContext::new(&options);
    let opts = connect::opts(&options, &context)?;
    let driver = Mysql {
        pool: Pool::new(opts.clone()),
        opts,
        connect_timeout: options.connect_timeout,
        query_timeout: options.query_timeout,
    };
    Ok(SqlSource::with_driver(driver, context, options.worker_dir)
        .with_task_flow(&options.task_flow))
}

/// The MySQL/MariaDB driver.
pub struct Mysql {
    pub(crate) pool: Pool,
    /// For the connection of a cancel, outside the pool (which may be full).
    opts: Opts,
    query_timeout: Duration,
    connect_timeout: Duration,
}

#[async_trait]
impl Driver for Mysql {
    type Conn = MysqlConn;

    const DIALECT: Dialect = Dialect::MYSQL;

    fn missing_table_note(&self) -> &'static str {
        " (or the user has no privilege on it)"
    }

    async fn connect(&self, deadline: Instant) -> Result<MysqlConn, DriverError> {
        let conn = connect::acquire(&self.pool, self.connect_timeout, deadline)
            .await
            .map_err(DriverError::Connect)?;
        Ok(MysqlConn {
            conn: Some(conn),
            query_timeout: self.query_timeout,
        })
    }

    /// `KILL QUERY` from a connection of its own, within `connect_timeout`.
    async fn cancel(&self, id: u32) -> Result<(), String> {
        let cancel = async {
            let mut conn = Conn::new(self.opts.clone())
                .await
                .map_err(|e| describe(&e))?;
            let result = conn
                .query_drop(format!("KILL QUERY {id}"))
                .await
                .map_err(|e| describe(&e));
            let _closed = conn.disconnect().await;
            result
        };
        tokio::time::timeout(self.connect_timeout, cancel)
            .await
            .unwrap_or_else(|_| Err("no connection for the cancel within connect_timeout".into()))
    }
}

/// A connection of the pool, held by one collection. Given back ([`Connection::release`]) it returns to
/// the pool; dropped (a failed or abandoned collection, perhaps inside the snapshot transaction) it is
/// disconnected in the background, never reused.
pub struct MysqlConn {
    conn: Option<Conn>,
    query_timeout: Duration,
}

impl MysqlConn {
    pub(crate) fn conn(&mut self) -> Result<&mut Conn, DriverError> {
        self.conn
            .as_mut()
            .ok_or_else(|| DriverError::Query("the connection was given back".into()))
    }

    async fn query_drop(&mut self, sql: String) -> Result<(), DriverError> {
        self.conn()?
            .query_drop(sql)
            .await
            .map_err(|e| DriverError::Query(describe(&e)))
    }
}

impl Drop for MysqlConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _closed = tokio::time::timeout(CLOSE_TIMEOUT, conn.disconnect()).await;
            });
        }
    }
}

#[async_trait]
impl Connection for MysqlConn {
    type Cancel = u32;

    fn cancel_handle(&self) -> u32 {
        self.conn.as_ref().map_or(0, Conn::id)
    }

    async fn catalog(&mut self, deadline: Instant) -> Result<Catalog, DriverError> {
        let limit = statement_limit(deadline, self.query_timeout);
        let sql = format!(
            "{}{}",
            mariadb_limit(limit, self.query_timeout),
            catalog_sql()
        );
        let rows: Vec<(String, String)> = self.conn()?.query(sql).await.map_err(|e| {
            DriverError::Query(format!("reading information_schema: {}", describe(&e)))
        })?;
        let mut catalog = Catalog::default();
        for (table, column) in rows {
            if table.eq_ignore_ascii_case("hub_worker") {
                catalog.worker_columns.push(column);
            }
            catalog.tables.push(table);
        }
        Ok(catalog)
    }

    async fn execute(&mut self, sql: &'static str, _deadline: Instant) -> Result<(), DriverError> {
        self.query_drop(sql.to_string()).await
    }

    /// The text protocol: one round trip, no statement to prepare.
    async fn fetch<R: FromRow>(
        &mut self,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<Vec<R>, DriverError> {
        let limit = statement_limit(deadline, self.query_timeout);
        let sql = limited(statement, limit, self.query_timeout);
        let rows: Vec<mysql_async::Row> = self
            .conn()?
            .query(sql)
            .await
            .map_err(|e| DriverError::Query(describe(&e)))?;
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = first
            .columns_ref()
            .iter()
            .map(|c| c.name_str().into_owned())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        decode_all(&names, rows.iter().map(MysqlValues)).map_err(DriverError::Data)
    }

    fn release(mut self) {
        // Back to mysql_async's pool.
        drop(self.conn.take());
    }
}

/// A row's values: the text protocol gives bytes (read as the record wants them); NULL as NULL.
struct MysqlValues<'r>(&'r mysql_async::Row);

impl Row for MysqlValues<'_> {
    fn value(&self, index: usize) -> Result<Value<'_>, String> {
        use mysql_async::Value as My;
        Ok(match self.0.as_ref(index) {
            None | Some(My::NULL) => Value::Null,
            Some(My::Bytes(bytes)) => Value::Unparsed(bytes),
            Some(My::Int(v)) => Value::Int(*v),
            Some(My::UInt(v)) => Value::UInt(*v),
            Some(My::Float(v)) => Value::Real(f64::from(*v)),
            Some(My::Double(v)) => Value::Real(*v),
            Some(My::Date(..)) => Value::Other("DATETIME".into()),
            Some(My::Time(..)) => Value::Other("TIME".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queries_read_no_secret_compare_names_bytewise_and_carry_their_limit() {
        let sql = scrape_sql(&HubSchema {
            min_priority: false,
        });
        let workers = sql.workers.sql();
        assert!(workers.contains("NULL AS min_priority"), "{workers}");
        assert!(!workers.contains("worker_key") && !workers.contains("SELECT *"));
        assert!(catalog_sql().contains("'hub_worker_channels'"));
        let plain = limited(
            &sql.workers,
            Duration::from_secs(10),
            Duration::from_secs(10),
        );
        assert!(
            plain.starts_with("SELECT /*+ MAX_EXECUTION_TIME(10000) */ w.name AS name"),
            "{plain}"
        );
        let limited = limited(
            &sql.workers,
            Duration::from_millis(1500),
            Duration::from_secs(10),
        );
        assert!(
            limited.starts_with(
                "/*M!100108 SET STATEMENT max_statement_time = 1.500 FOR */ SELECT \
                 /*+ MAX_EXECUTION_TIME(1500) */ w.name AS name"
            ),
            "{limited}"
        );
    }
}
