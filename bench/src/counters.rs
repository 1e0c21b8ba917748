//! Server-side counts of what the exporter asked for: PostgreSQL's committed transactions of the hub
//! database (`pg_stat_database.xact_commit`; `pg_stat_statements` is not loaded on a stock server) and
//! MariaDB's `Questions` (statements from clients) and `Com_select` status counters.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use sqlx::PgConnection;
use tokio::sync::Mutex;

use crate::hubs::{mysql_connect, pg_connect};
use crate::{Context, Result};

/// `pg_stat_database.xact_commit` of one database, read from the administrator's database (so that the
/// reads are not counted). PostgreSQL publishes a backend's counts when it goes idle (at most once a
/// second) and when it exits: [`settled`](Self::settled) is read with no exporter running, after its
/// connections closed.
pub struct PgTransactions {
    conn: Mutex<PgConnection>,
    database: String,
}

impl PgTransactions {
    pub async fn new(admin: &str, database: &str) -> Result<PgTransactions> {
        Ok(PgTransactions {
            conn: Mutex::new(pg_connect(admin).await?),
            database: database.to_string(),
        })
    }

    async fn read(&self) -> Result<u64> {
        let mut conn = self.conn.lock().await;
        let commits: Option<i64> =
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                .bind(&self.database)
                .fetch_optional(&mut *conn)
                .await
                .context("reading pg_stat_database")?;
        Ok(commits.unwrap_or(0).max(0) as u64)
    }

    /// The count once it stopped moving: two reads 300 ms apart agree (at most 15 s).
    pub async fn settled(&self) -> Result<u64> {
        let mut last = self.read().await?;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.read().await?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        Err(anyhow::anyhow!(
            "pg_stat_database.xact_commit of {} did not settle within 15 s",
            self.database
        ))
    }
}

/// MariaDB's global `Questions` and `Com_select`, minus what reading them costs.
pub struct MysqlStatus {
    conn: Mutex<mysql_async::Conn>,
    /// What one read adds to (Questions, Com_select), measured at start.
    own: (u64, u64),
}

/// One reading of the status counters.
pub struct Status {
    questions: u64,
    selects: u64,
    own: (u64, u64),
}

impl Status {
    /// Statements since `before`, without the read that took this reading.
    pub fn questions_since(&self, before: &Status) -> u64 {
        self.questions
            .saturating_sub(before.questions)
            .saturating_sub(self.own.0)
    }

    pub fn selects_since(&self, before: &Status) -> u64 {
        self.selects
            .saturating_sub(before.selects)
            .saturating_sub(self.own.1)
    }
}

impl MysqlStatus {
    pub async fn new(admin: &str) -> Result<MysqlStatus> {
        let status = MysqlStatus {
            conn: Mutex::new(mysql_connect(admin).await?),
            own: (0, 0),
        };
        // Two reads back to back: the difference is the cost of one read.
        let first = status.raw().await?;
        let second = status.raw().await?;
        Ok(MysqlStatus {
            own: (
                second.0.saturating_sub(first.0),
                second.1.saturating_sub(first.1),
            ),
            ..status
        })
    }

    async fn raw(&self) -> Result<(u64, u64)> {
        let mut conn = self.conn.lock().await;
        let rows: Vec<(String, String)> = conn
            .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_select')")
            .await
            .context("SHOW GLOBAL STATUS")?;
        let value = |name: &str| -> Result<u64> {
            rows.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.parse().ok())
                .with_context(|| format!("SHOW GLOBAL STATUS has no {name}"))
        };
        Ok((value("Questions")?, value("Com_select")?))
    }

    pub async fn read(&self) -> Result<Status> {
        let (questions, selects) = self.raw().await?;
        Ok(Status {
            questions,
            selects,
            own: self.own,
        })
    }
}
