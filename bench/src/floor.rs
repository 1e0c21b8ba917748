//! The raw-SQL floor: the exporter's own queries (each source's `scrape_sql`) through the database's driver
//! on one open connection, every row fetched, nothing else: no pool, no transaction, no decoding into
//! records, no rendering, no HTTP. Its median is what a scrape cannot beat.

use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rusqlite::OpenFlags;
use sqlx::{AssertSqlSafe, Connection};

use crate::hubs::{mysql_connect, pg_connect};
use crate::{Context, Result};

/// Runs before timing, to warm caches and prepared statements as the exporter's warm-up does.
const WARMUP: usize = 10;

/// A floor measures at most this long (then with fewer iterations).
const TIME_LIMIT: Duration = Duration::from_secs(10);

/// Median of `iterations` runs, milliseconds.
fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times
        .get(times.len() / 2)
        .map_or(f64::NAN, |t| t.as_secs_f64() * 1000.0)
}

pub fn sqlite(path: &Path, queries: &[&str], iterations: usize) -> Result<f64> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .context(format!("opening {}", path.display()))?;
    let run = || -> Result<usize> {
        let mut cells = 0;
        for sql in queries {
            let mut stmt = conn
                .prepare_cached(sql)
                .context("preparing the floor query")?;
            let columns = stmt.column_count();
            let mut rows = stmt.query([]).context("the floor query")?;
            while let Some(row) = rows.next().context("the floor query")? {
                for i in 0..columns {
                    row.get_ref(i).context("a floor row")?;
                    cells += 1;
                }
            }
        }
        Ok(cells)
    };
    let mut times = Vec::with_capacity(iterations);
    let all = Instant::now();
    for i in 0..WARMUP + iterations {
        if i > WARMUP && all.elapsed() > TIME_LIMIT {
            break;
        }
        let started = Instant::now();
        std::hint::black_box(run()?);
        if i >= WARMUP {
            times.push(started.elapsed());
        }
    }
    Ok(median_ms(times))
}

pub async fn postgres(url: &str, queries: &[&str], iterations: usize) -> Result<f64> {
    let mut conn = pg_connect(url).await?;
    let mut times = Vec::with_capacity(iterations);
    let all = Instant::now();
    for i in 0..WARMUP + iterations {
        if i > WARMUP && all.elapsed() > TIME_LIMIT {
            break;
        }
        let started = Instant::now();
        for sql in queries {
            let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut conn)
                .await
                .context("the floor query")?;
            std::hint::black_box(rows);
        }
        if i >= WARMUP {
            times.push(started.elapsed());
        }
    }
    drop(conn.close().await);
    Ok(median_ms(times))
}

pub async fn mysql(url: &str, queries: &[&str], iterations: usize) -> Result<f64> {
    let mut conn = mysql_connect(url).await?;
    let mut times = Vec::with_capacity(iterations);
    let all = Instant::now();
    for i in 0..WARMUP + iterations {
        if i > WARMUP && all.elapsed() > TIME_LIMIT {
            break;
        }
        let started = Instant::now();
        for sql in queries {
            let rows: Vec<mysql_async::Row> = conn.query(*sql).await.context("the floor query")?;
            std::hint::black_box(rows);
        }
        if i >= WARMUP {
            times.push(started.elapsed());
        }
    }
    drop(conn.disconnect().await);
    Ok(median_ms(times))
}
