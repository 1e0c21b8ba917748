//! The SQL of the MySQL/MariaDB source, and the decoding of its rows. The schema check, the `hub_worker`
//! columns, the task aggregates and the row-to-record mapping are shared with the other SQL sources
//! (`kobo_backend_api::normalise`, `kobo_backend_api::tasks`); what is here is MySQL's own:
//! `information_schema`, `JSON_ARRAYAGG`, binary comparison of names, its types.

use std::time::{Duration, Instant};

use kobo_backend_api::normalise::{
    int_from_unsigned, names_from_json, of_worker, HubSchema, ScrapeSql, WorkerRow, REQUIRED_TABLES,
};
use kobo_backend_api::secrets::ErrorContext;
use kobo_backend_api::{tasks, HubSnapshot, SourceError, TaskGroup, TaskSummary, WorkerTaskCount};
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};

use crate::connect::describe;

/// The queries of one hub, built for its schema.
pub(crate) type HubQueries = ScrapeSql;

/// The columns of the required tables in the current database, from `information_schema` (which shows
/// only tables the user has a privilege on: a missing GRANT reads as a missing table, and the message
/// says so).
fn schema_sql() -> String {
    let tables: Vec<String> = REQUIRED_TABLES.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({})",
        tables.join(", ")
    )
}

/// Checks that the database is a kobo hub and builds its queries ([`scrape_sql`]).
pub(crate) async fn hub_queries(
    conn: &mut impl Queryable,
    query_timeout: Duration,
    context: &ErrorContext,
) -> Result<HubQueries, SourceError> {
    let rows: Vec<(String, String)> = conn
        .query(schema_sql())
        .await
        .map_err(|e| context.query(format!("reading information_schema: {}", describe(&e))))?;
    let tables: Vec<&str> = rows.iter().map(|(table, _)| table.as_str()).collect();
    let worker_columns: Vec<&str> = rows
        .iter()
        .filter(|(table, _)| table.eq_ignore_ascii_case("hub_worker"))
        .map(|(_, column)| column.as_str())
        .collect();
    let schema = HubSchema::check(&tables, &worker_columns).map_err(|message| {
        context.schema(if message.starts_with("table") {
            format!("{message} (or the user has no privilege on it)")
        } else {
            message
        })
    })?;
    Ok(scrape_sql(&schema, query_timeout))
}

/// The SQL of one scrape of a hub with this schema (what the source runs; public for the benchmark's
/// raw-SQL floor), each query carrying MySQL's server-side limit (`MAX_EXECUTION_TIME`, milliseconds;
/// MariaDB ignores the hint and has `max_statement_time` from the session set-up instead).
pub fn scrape_sql(schema: &HubSchema, query_timeout: Duration) -> ScrapeSql {
    let hint = |sql: String| {
        let millis = query_timeout.as_millis().max(1);
        sql.replacen(
            "SELECT ",
            &format!("SELECT /*+ MAX_EXECUTION_TIME({millis}) */ "),
            1,
        )
    };
    ScrapeSql {
        workers: hint(worker_sql(schema)),
        task_groups: hint(task_groups_sql()),
        worker_tasks: hint(tasks::per_worker_sql()),
    }
}

/// The one query per scrape that reads every worker with the names of its arches and channels as JSON
/// arrays (`JSON_ARRAYAGG`, MySQL 5.7.22+ / MariaDB 10.5+; JSON escapes every character, whatever the
/// name). Explicit columns only (never `worker_key`); names are sorted in Rust, not by the collation.
fn worker_sql(schema: &HubSchema) -> String {
    format!(
        "SELECT {}, \
         (SELECT JSON_ARRAYAGG(a.name) FROM hub_worker_arches wa JOIN hub_arch a ON a.id = wa.arch_id \
          WHERE wa.worker_id = w.id), \
         (SELECT JSON_ARRAYAGG(c.name) FROM hub_worker_channels wc JOIN hub_channel c ON c.id = wc.channel_id \
          WHERE wc.worker_id = w.id) \
         FROM hub_worker w",
        schema.worker_columns_sql()
    )
}

/// A name as UTF-8 bytes, compared byte for byte as PostgreSQL and SQLite compare it: MySQL's usual
/// collations are case-insensitive and pad with spaces (even `utf8mb4_bin`), which would merge channels `b`,
/// `B` and `b ` into one group.
fn binary_name(column: &str) -> String {
    format!("CAST(CONVERT({column} USING utf8mb4) AS BINARY)")
}

/// The shared task-group query, with dates as `YYYY-MM-DD HH:MM:SS.ffffff` (Django stores UTC in
/// `datetime(6)`) and names grouped byte for byte.
fn task_groups_sql() -> String {
    tasks::groups_sql(|expr| format!("DATE_FORMAT({expr}, '%Y-%m-%d %H:%i:%s.%f')"))
        .replace("a.name", &binary_name("a.name"))
        .replace("c.name", &binary_name("c.name"))
}

/// Reads the workers and, if asked, the task aggregates, inside the scrape's transaction.
pub(crate) async fn read(
    conn: &mut impl Queryable,
    queries: &HubQueries,
    with_tasks: bool,
    context: &ErrorContext,
) -> Result<HubSnapshot, SourceError> {
    let started = Instant::now();
    let workers = fetch(conn, &queries.workers, worker_row, context)
        .await?
        .into_iter()
        .map(|row| row.into_record().map_err(|m| context.data(m)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut timings = vec![("workers", started.elapsed())];
    let tasks = if with_tasks {
        let started = Instant::now();
        let groups = fetch(conn, &queries.task_groups, group_row, context).await?;
        let per_worker = fetch(conn, &queries.worker_tasks, worker_count_row, context).await?;
        timings.push(("tasks", started.elapsed()));
        Some(TaskSummary::new(groups, per_worker))
    } else {
        None
    };
    Ok(HubSnapshot::from_read(workers, tasks, timings))
}

/// Runs `sql` (text protocol: one round trip, no statement to prepare) and decodes every row.
async fn fetch<T>(
    conn: &mut impl Queryable,
    sql: &str,
    decode: impl Fn(Vec<Value>) -> Result<T, String>,
    context: &ErrorContext,
) -> Result<Vec<T>, SourceError> {
    let rows: Vec<Row> = conn
        .query(sql)
        .await
        .map_err(|e| context.query(describe(&e)))?;
    rows.into_iter()
        .map(|row| {
            let values = row
                .unwrap_raw()
                .into_iter()
                .map(|value| value.unwrap_or(Value::NULL))
                .collect();
            decode(values).map_err(|m| context.data(m))
        })
        .collect()
}

/// The values of a row, taken in order; a missing one is `NULL`.
struct Values(std::vec::IntoIter<Value>);

impl Values {
    fn next(&mut self) -> Value {
        self.0.next().unwrap_or(Value::NULL)
    }
}

fn worker_row(values: Vec<Value>) -> Result<WorkerRow, String> {
    let mut values = Values(values.into_iter());
    let name = required(text(values.next(), "hub_worker.name")?, "hub_worker.name")?;
    let mut columns = || -> Result<WorkerRow, String> {
        Ok(WorkerRow {
            enabled: int(values.next(), "hub_worker.enabled")?.map(|v| v != 0),
            ready: int(values.next(), "hub_worker.ready")?.map(|v| v != 0),
            current_load: int(values.next(), "hub_worker.current_load")?,
            max_load: int(values.next(), "hub_worker.max_load")?,
            task_count: int(values.next(), "hub_worker.task_count")?,
            max_tasks: int(values.next(), "hub_worker.max_tasks")?,
            min_priority: int(values.next(), "hub_worker.min_priority")?,
            arches: names(values.next(), "hub_worker.arches")?,
            channels: names(values.next(), "hub_worker.channels")?,
            name: name.clone(),
        })
    };
    columns().map_err(|message| of_worker(message, &name))
}

fn group_row(values: Vec<Value>) -> Result<TaskGroup, String> {
    let mut values = Values(values.into_iter());
    tasks::group_from_row(
        required(int(values.next(), "hub_task.state")?, "hub_task.state")?,
        required(text(values.next(), "hub_arch.name")?, "hub_arch.name")?,
        required(text(values.next(), "hub_channel.name")?, "hub_channel.name")?,
        required(int(values.next(), "count")?, "count")?,
        text(values.next(), "hub_task.dt_created")?.as_deref(),
    )
}

fn worker_count_row(values: Vec<Value>) -> Result<WorkerTaskCount, String> {
    let mut values = Values(values.into_iter());
    tasks::worker_count_from_row(
        required(text(values.next(), "hub_worker.name")?, "hub_worker.name")?,
        required(int(values.next(), "hub_task.state")?, "hub_task.state")?,
        required(int(values.next(), "count")?, "count")?,
    )
}

fn required<T>(value: Option<T>, what: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("{what} is NULL"))
}

/// An integer, signed or unsigned, from the binary protocol (`Int`, `UInt`) or the text protocol (`Bytes`).
fn int(value: Value, what: &str) -> Result<Option<i64>, String> {
    match value {
        Value::NULL => Ok(None),
        Value::Int(v) => Ok(Some(v)),
        Value::UInt(v) => int_from_unsigned(v, what).map(Some),
        Value::Bytes(bytes) => {
            let text =
                std::str::from_utf8(&bytes).map_err(|_| format!("{what} is not a number"))?;
            match (text.parse::<i64>(), text.parse::<u64>()) {
                (Ok(v), _) => Ok(Some(v)),
                (Err(_), Ok(v)) => int_from_unsigned(v, what).map(Some),
                _ => Err(format!("{what} = {text:?} is not an integer")),
            }
        }
        other => Err(format!("{what} = {other:?} is not an integer")),
    }
}

/// A UTF-8 string (the connection's character set is utf8mb4).
fn text(value: Value, what: &str) -> Result<Option<String>, String> {
    match value {
        Value::NULL => Ok(None),
        Value::Bytes(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{what} is not valid UTF-8")),
        other => Err(format!("{what} = {other:?} is not a string")),
    }
}

/// A JSON array of names; `NULL` (no rows to aggregate) is none.
fn names(value: Value, what: &str) -> Result<Vec<Option<String>>, String> {
    let json = text(value, what)?;
    names_from_json(json.as_deref()).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_of_every_protocol_and_sign() {
        assert_eq!(int(Value::Int(-3), "c"), Ok(Some(-3)));
        assert_eq!(int(Value::UInt(7), "c"), Ok(Some(7)));
        assert_eq!(int(Value::Bytes(b"42".to_vec()), "c"), Ok(Some(42)));
        assert_eq!(int(Value::NULL, "c"), Ok(None));
        assert!(int(Value::UInt(u64::MAX), "hub_worker.max_load")
            .unwrap_err()
            .contains("max_load"));
        assert!(int(Value::Bytes(b"18446744073709551615".to_vec()), "c").is_err());
        assert!(int(Value::Bytes(b"1.5".to_vec()), "c").is_err());
    }

    #[test]
    fn the_queries_read_no_secret_and_compare_names_bytewise() {
        let sql = worker_sql(&HubSchema {
            min_priority: false,
        });
        assert!(sql.contains("w.max_tasks, NULL"), "{sql}");
        assert!(
            !sql.contains("worker_key") && !sql.contains("SELECT *"),
            "{sql}"
        );
        let groups = task_groups_sql();
        let binary = binary_name("c.name");
        // Selected as bytes; same-named groups are merged in Rust, bytewise.
        assert_eq!(groups.matches(&binary).count(), 1, "{groups}");
        assert_eq!(
            groups.matches(&binary_name("a.name")).count(),
            1,
            "{groups}"
        );
        assert!(schema_sql().contains("'hub_worker_channels'"));
    }
}
