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

/// The timing loop of every floor: [`WARMUP`] untimed runs, then up to `iterations` timed ones, stopping
/// early after [`TIME_LIMIT`].
struct Samples {
    iterations: usize,
    runs: usize,
    started: Instant,
    times: Vec<Duration>,
}

impl Samples {
    fn new(iterations: usize) -> Samples {
        Samples {
            iterations,
            runs: 0,
            started: Instant::now(),
            times: Vec::with_capacity(iterations),
        }
    }

    /// Whether to run once more.
    fn more(&self) -> bool {
        self.runs < WARMUP + self.iterations
            && !(self.runs > WARMUP && self.started.elapsed() > TIME_LIMIT)
    }

    /// One run, which started at `started`.
    fn record(&mut self, started: Instant) {
        if self.runs >= WARMUP {
            self.times.push(started.elapsed());
        }
        self.runs += 1;
    }

    /// The median of the timed runs, milliseconds.
    fn median_ms(mut self) -> f64 {
        self.times.sort();
        self.times
            .get(self.times.len() / 2)
            .map_or(f64::NAN, |t| t.as_secs_f64() * 1000.0)
    }
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
    let mut samples = Samples::new(iterations);
    while samples.more() {
        let started = Instant::now();
        std::hint::black_box(run()?);
        samples.record(started);
    }
    Ok(samples.median_ms())
}

/// The timing loop of the async drivers: each run sends every one of `queries` through `query` on `conn`
/// (which fetches every row); the median run, milliseconds.
async fn median_ms<C>(
    conn: &mut C,
    queries: &[&str],
    iterations: usize,
    mut query: impl AsyncFnMut(&mut C, &str) -> Result<()>,
) -> Result<f64> {
    let mut samples = Samples::new(iterations);
    while samples.more() {
        let started = Instant::now();
        for sql in queries {
            query(conn, sql).await.context("the floor query")?;
        }
        samples.record(started);
    }
    Ok(samples.median_ms())
}

pub async fn postgres(url: &str, queries: &[&str], iterations: usize) -> Result<f64> {
    let mut conn = pg_connect(url).await?;
    let median = median_ms(&mut conn, queries, iterations, async |conn, sql| {
        let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_all(conn)
            .await?;
        std::hint::black_box(rows);
        Ok(())
    })
    .await?;
    drop(conn.close().await);
    Ok(median)
}

pub async fn mysql(url: &str, queries: &[&str], iterations: usize) -> Result<f64> {
    let mut conn = mysql_connect(url).await?;
    let median = median_ms(&mut conn, queries, iterations, async |conn, sql| {
        let rows: Vec<mysql_async::Row> = conn.query(sql).await?;
        std::hint::black_box(rows);
        Ok(())
    })
    .await?;
    drop(conn.disconnect().await);
    Ok(median)
}
