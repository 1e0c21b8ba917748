//! MariaDB/MySQL: `seq_1_to_N` (MariaDB's sequence engine) inserts in one transaction.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use crate::{Dialect, Error, HubSpec, SCHEMA_MYSQL, not_empty};

pub async fn generate(url: &str, spec: &HubSpec) -> Result<(), Error> {
    let mut conn = Conn::new(Opts::from_url(url)?).await?;
    let tables: Option<i64> = conn
        .query_first(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE()",
        )
        .await?;
    let tables = tables.unwrap_or(0);
    if tables > 0 {
        return Err(not_empty(tables));
    }
    conn.query_drop(SCHEMA_MYSQL).await?;
    conn.query_drop("SET SESSION time_zone = '+00:00', foreign_key_checks = 0")
        .await?;
    conn.query_drop("START TRANSACTION").await?;
    for statement in spec.statements(Dialect::Mysql) {
        conn.query_drop(statement).await?;
    }
    conn.query_drop(spec.worker_load_statement()).await?;
    conn.query_drop("COMMIT").await?;
    conn.query_drop("ANALYZE TABLE hub_worker, hub_task")
        .await?;
    conn.disconnect().await?;
    Ok(())
}
