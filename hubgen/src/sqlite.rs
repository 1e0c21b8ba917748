//! SQLite: one transaction, recursive CTEs.

use std::path::Path;

use rusqlite::Connection;

use crate::{Dialect, Error, HubSpec, SCHEMA_SQLITE, not_empty};

pub fn generate(path: &Path, spec: &HubSpec) -> Result<(), Error> {
    let mut conn = Connection::open(path)?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |row| row.get(0),
    )?;
    if tables > 0 {
        return Err(not_empty(tables));
    }
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA_SQLITE)?;
    for statement in spec.statements(Dialect::Sqlite) {
        tx.execute(&statement, [])?;
    }
    tx.execute(spec.worker_load_statement(), [])?;
    tx.commit()?;
    conn.execute_batch("ANALYZE")?;
    Ok(())
}
