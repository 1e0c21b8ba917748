//! The SQL of the SQLite source, and the decoding of its rows. The schema check, the `hub_worker` columns,
//! the task aggregates and the row-to-record mapping are shared with the other SQL sources
//! ([`normalise`], [`tasks`]); what is here is SQLite's own: its catalog, `json_group_array`, its types.

use std::time::Instant;

use kobo_backend_api::normalise::{names_from_json, of_worker, HubSchema, ScrapeSql, WorkerRow};
use kobo_backend_api::{tasks, HubSnapshot, SourceError, TaskSummary};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

/// The queries of one hub, built for its schema.
pub(crate) type HubQueries = ScrapeSql;

/// Checks the schema and builds the queries: one that reads every worker with its arches and channels
/// (explicit columns only: never `worker_key`, the worker's secret, never `SELECT *`) and the two task
/// aggregates.
pub(crate) fn hub_queries(conn: &Connection, target: &str) -> Result<HubQueries, SourceError> {
    let query_error = |e: rusqlite::Error| SourceError::Query {
        target: target.to_string(),
        message: e.to_string(),
    };
    let names = |sql: &str| -> Result<Vec<String>, SourceError> {
        let mut stmt = conn.prepare(sql).map_err(query_error)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(query_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(query_error)
    };
    let tables = names("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")?;
    let columns = names("SELECT name FROM pragma_table_info('hub_worker')")?;
    let schema = HubSchema::check(&tables, &columns).map_err(|message| SourceError::Schema {
        target: target.to_string(),
        message,
    })?;
    Ok(scrape_sql(&schema))
}

/// The SQL of one scrape of a hub with this schema (what the source runs; public for the benchmark's
/// raw-SQL floor).
pub fn scrape_sql(schema: &HubSchema) -> ScrapeSql {
    let workers = format!(
        "SELECT {columns}, \
         (SELECT json_group_array(a.name) FROM hub_worker_arches wa JOIN hub_arch a ON a.id = wa.arch_id \
          WHERE wa.worker_id = w.id), \
         (SELECT json_group_array(c.name) FROM hub_worker_channels wc JOIN hub_channel c ON c.id = wc.channel_id \
          WHERE wc.worker_id = w.id) \
         FROM hub_worker w",
        columns = schema.worker_columns_sql()
    );
    ScrapeSql {
        workers,
        // Django writes dt_created as text `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC: min() of it is that text.
        task_groups: tasks::groups_sql(|expr| expr.to_string()),
        worker_tasks: tasks::per_worker_sql(),
    }
}

/// Reads the workers and, if asked, the task aggregates, in one read transaction (one consistent view).
pub(crate) fn read(
    conn: &Connection,
    queries: &HubQueries,
    with_tasks: bool,
    target: &str,
) -> Result<HubSnapshot, SourceError> {
    let query_error = |e: rusqlite::Error| SourceError::Query {
        target: target.to_string(),
        message: e.to_string(),
    };
    let data_error = |message: String| SourceError::Data {
        target: target.to_string(),
        message,
    };
    let transaction = conn.unchecked_transaction().map_err(query_error)?;
    let started = Instant::now();
    let workers = query_rows(&transaction, &queries.workers, worker_from_row)
        .map_err(|e| e.into_source_error(target))?
        .into_iter()
        .map(|row| row.into_record().map_err(data_error))
        .collect::<Result<Vec<_>, _>>()?;
    let mut timings = vec![("workers", started.elapsed())];
    let tasks = if with_tasks {
        let started = Instant::now();
        let groups = query_rows(&transaction, &queries.task_groups, |row| {
            let oldest: Option<String> = row.get(4).map_err(|e| e.to_string())?;
            tasks::group_from_row(
                int(row, 0, "hub_task.state")?,
                row.get(1).map_err(|e| e.to_string())?,
                row.get(2).map_err(|e| e.to_string())?,
                int(row, 3, "count")?,
                oldest.as_deref(),
            )
        })
        .map_err(|e| e.into_source_error(target))?;
        let per_worker = query_rows(&transaction, &queries.worker_tasks, |row| {
            tasks::worker_count_from_row(
                row.get(0).map_err(|e| e.to_string())?,
                int(row, 1, "hub_task.state")?,
                int(row, 2, "count")?,
            )
        })
        .map_err(|e| e.into_source_error(target))?;
        timings.push(("tasks", started.elapsed()));
        Some(TaskSummary::new(groups, per_worker))
    } else {
        None
    };
    transaction.finish().map_err(query_error)?;
    Ok(HubSnapshot::from_read(workers, tasks, timings))
}

/// Why reading rows failed: the query, or a value in a row.
enum RowsError {
    Query(rusqlite::Error),
    Data(String),
}

impl RowsError {
    fn into_source_error(self, target: &str) -> SourceError {
        match self {
            RowsError::Query(e) => SourceError::Query {
                target: target.to_string(),
                message: e.to_string(),
            },
            RowsError::Data(message) => SourceError::Data {
                target: target.to_string(),
                message,
            },
        }
    }
}

fn query_rows<T>(
    conn: &Connection,
    sql: &str,
    decode: impl Fn(&Row<'_>) -> Result<T, String>,
) -> Result<Vec<T>, RowsError> {
    let mut stmt = conn.prepare_cached(sql).map_err(RowsError::Query)?;
    let mut rows = stmt.query([]).map_err(RowsError::Query)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(RowsError::Query)? {
        out.push(decode(row).map_err(RowsError::Data)?);
    }
    Ok(out)
}

/// An integer column, `None` for NULL. SQLite stores Django's integers and booleans as INTEGER; a REAL that
/// is a whole number (e.g. written by hand) is accepted.
fn optional_int(row: &Row<'_>, idx: usize, column: &str) -> Result<Option<i64>, String> {
    match row.get_ref(idx) {
        Ok(ValueRef::Null) => Ok(None),
        Ok(ValueRef::Integer(i)) => Ok(Some(i)),
        Ok(ValueRef::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        Ok(other) => Err(format!(
            "{column} is {:?}, not an integer",
            other.data_type()
        )),
        Err(e) => Err(format!("{column}: {e}")),
    }
}

fn int(row: &Row<'_>, idx: usize, column: &str) -> Result<i64, String> {
    optional_int(row, idx, column)?.ok_or_else(|| format!("{column} is NULL"))
}

fn worker_from_row(row: &Row<'_>) -> Result<WorkerRow, String> {
    let name: String = row.get(0).map_err(|e| format!("hub_worker.name: {e}"))?;
    let column = |idx: usize, column: &str| {
        optional_int(row, idx, column).map_err(|message| of_worker(message, &name))
    };
    let json = |idx: usize, what: &str| -> Result<Vec<Option<String>>, String> {
        let text: Option<String> = row.get(idx).map_err(|e| format!("{what}: {e}"))?;
        names_from_json(text.as_deref()).map_err(|e| format!("{what} of worker {name:?}: {e}"))
    };
    Ok(WorkerRow {
        enabled: column(1, "hub_worker.enabled")?.map(|v| v != 0),
        ready: column(2, "hub_worker.ready")?.map(|v| v != 0),
        current_load: column(3, "hub_worker.current_load")?,
        max_load: column(4, "hub_worker.max_load")?,
        task_count: column(5, "hub_worker.task_count")?,
        max_tasks: column(6, "hub_worker.max_tasks")?,
        min_priority: column(7, "hub_worker.min_priority")?,
        arches: json(8, "arches")?,
        channels: json(9, "channels")?,
        name,
    })
}
