//! The SQL of the SQLite source, and the mapping of its rows to records.

use kobo_backend_api::{SourceError, WorkerRecord};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

/// Tables the worker query reads.
const REQUIRED_TABLES: [&str; 5] = [
    "hub_worker",
    "hub_worker_arches",
    "hub_arch",
    "hub_worker_channels",
    "hub_channel",
];

/// `hub_worker` columns every kobo hub has.
const REQUIRED_WORKER_COLUMNS: [&str; 8] = [
    "id",
    "name",
    "enabled",
    "ready",
    "current_load",
    "max_load",
    "task_count",
    "max_tasks",
];

/// Checks the schema and builds the one query per scrape that reads every worker with its arches and
/// channels. Explicit columns only: never `worker_key` (the worker's secret), never `SELECT *`.
/// `min_priority` came with a 2016 migration that old hubs may lack.
pub(crate) fn worker_query(conn: &Connection, target: &str) -> Result<String, SourceError> {
    let schema_error = |message: String| SourceError::Schema {
        target: target.to_string(),
        message,
    };
    let query_error = |e: rusqlite::Error| SourceError::Query {
        target: target.to_string(),
        message: e.to_string(),
    };
    for table in REQUIRED_TABLES {
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1)",
                [table],
                |row| row.get(0),
            )
            .map_err(query_error)?;
        if !exists {
            return Err(schema_error(format!("table {table} is missing")));
        }
    }
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info('hub_worker')")
        .map_err(query_error)?;
    let columns = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(query_error)?;
    if let Some(missing) = REQUIRED_WORKER_COLUMNS
        .iter()
        .find(|c| !columns.iter().any(|have| have == *c))
    {
        return Err(schema_error(format!(
            "column hub_worker.{missing} is missing"
        )));
    }
    let min_priority = if columns.iter().any(|c| c == "min_priority") {
        "w.min_priority"
    } else {
        "NULL"
    };
    Ok(format!(
        "SELECT w.name, w.enabled, w.ready, w.current_load, w.max_load, w.task_count, w.max_tasks, \
         {min_priority}, \
         (SELECT json_group_array(a.name) FROM hub_worker_arches wa JOIN hub_arch a ON a.id = wa.arch_id \
          WHERE wa.worker_id = w.id), \
         (SELECT json_group_array(c.name) FROM hub_worker_channels wc JOIN hub_channel c ON c.id = wc.channel_id \
          WHERE wc.worker_id = w.id) \
         FROM hub_worker w"
    ))
}

/// Runs the worker query.
pub(crate) fn read_workers(
    conn: &Connection,
    sql: &str,
    target: &str,
) -> Result<Vec<WorkerRecord>, SourceError> {
    let query_error = |e: rusqlite::Error| SourceError::Query {
        target: target.to_string(),
        message: e.to_string(),
    };
    let mut stmt = conn.prepare_cached(sql).map_err(query_error)?;
    let mut rows = stmt.query([]).map_err(query_error)?;
    let mut workers = Vec::new();
    while let Some(row) = rows.next().map_err(query_error)? {
        workers.push(worker_from_row(row).map_err(|message| SourceError::Data {
            target: target.to_string(),
            message,
        })?);
    }
    Ok(workers)
}

fn worker_from_row(row: &Row<'_>) -> Result<WorkerRecord, String> {
    let name: String = row.get(0).map_err(|e| format!("hub_worker.name: {e}"))?;
    let int = |idx: usize, column: &str| -> Result<Option<i64>, String> {
        match row.get_ref(idx) {
            Ok(ValueRef::Null) => Ok(None),
            Ok(ValueRef::Integer(i)) => Ok(Some(i)),
            // Django stores whole numbers; a REAL that is one (e.g. written by hand) is accepted.
            Ok(ValueRef::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            Ok(other) => Err(format!(
                "hub_worker.{column} of worker {name:?} is {:?}, not an integer",
                other.data_type()
            )),
            Err(e) => Err(format!("hub_worker.{column}: {e}")),
        }
    };
    let required = |idx: usize, column: &str| -> Result<i64, String> {
        int(idx, column)?.ok_or_else(|| format!("hub_worker.{column} of worker {name:?} is NULL"))
    };
    let names = |idx: usize, what: &str| -> Result<Vec<String>, String> {
        let json: Option<String> = row.get(idx).map_err(|e| format!("{what}: {e}"))?;
        let mut names: Vec<Option<String>> = match json {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| format!("{what} of worker {name:?}: {e}"))?,
            None => Vec::new(),
        };
        let mut names: Vec<String> = names.drain(..).flatten().collect();
        names.sort_unstable();
        names.dedup();
        Ok(names)
    };
    let mut worker = WorkerRecord::new(name.clone());
    worker.enabled = required(1, "enabled")? != 0;
    worker.ready = required(2, "ready")? != 0;
    worker.current_load = required(3, "current_load")?;
    worker.max_load = required(4, "max_load")?;
    worker.task_count = required(5, "task_count")?;
    worker.max_tasks = Some(required(6, "max_tasks")?);
    worker.min_priority = int(7, "min_priority")?;
    worker.arches = names(8, "arches")?;
    worker.channels = names(9, "channels")?;
    Ok(worker)
}
