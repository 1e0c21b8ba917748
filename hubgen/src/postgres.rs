//! PostgreSQL: the dump's tables and primary keys on their own connection (the dump changes session
//! settings), then one transaction of `generate_series` inserts, then the dump's indexes and foreign keys
//! (built and checked once over the rows, as `pg_restore` does, instead of row by row).

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::{Dialect, Error, HubSpec, SCHEMA_POSTGRES, not_empty};

pub async fn generate(url: &str, spec: &HubSpec) -> Result<(), Error> {
    let mut conn = PgConnection::connect(url).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await?;
    if tables > 0 {
        return Err(not_empty(tables));
    }
    // The dump creates tables and primary keys first, then the indexes and foreign keys.
    let split = SCHEMA_POSTGRES
        .find("\nCREATE INDEX ")
        .ok_or("the PostgreSQL schema has no CREATE INDEX")?;
    let (tables, indexes) = SCHEMA_POSTGRES.split_at(split);
    sqlx::raw_sql(tables).execute(&mut conn).await?;
    conn.close().await?;

    let mut conn = PgConnection::connect(url).await?;
    conn.execute("SET TIME ZONE 'UTC'").await?;
    let mut tx = conn.begin().await?;
    for statement in spec.statements(Dialect::Postgres) {
        tx.execute(AssertSqlSafe(statement)).await?;
    }
    for table in [
        "auth_user",
        "hub_arch",
        "hub_channel",
        "hub_worker",
        "hub_task",
    ] {
        tx.execute(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
        )))
        .await?;
    }
    tx.commit().await?;
    sqlx::raw_sql(indexes).execute(&mut conn).await?;
    conn.execute(spec.worker_load_statement()).await?;
    conn.execute("ANALYZE").await?;
    conn.close().await?;
    Ok(())
}
