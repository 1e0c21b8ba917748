//! The synthetic hubs of one size (one per database source; the XML-RPC hub serves the SQLite one) and the
//! rows measured on them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kobo_backend_api::normalise::HubSchema;
use kobo_backend_sql::ScrapeSql;
use kobo_hubgen::HubSpec;
use kobo_testkit::xmlrpc_hub::{XmlRpcHub, exports_from_sqlite};
use mysql_async::prelude::Queryable;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};

use crate::counters::{MysqlStatus, PgTransactions};
use crate::exporter::{Exporter, KoboSettings};
use crate::report::{Row, ServerCount};
use crate::scrape::Scraper;
use crate::{Args, Context, Plan, Result, Scenario, Size, Source, floor};

/// The index the README advises for the task metrics (PostgreSQL and SQLite: partial).
const INDEX_PARTIAL: &str =
    "CREATE INDEX hub_task_archive_state ON hub_task (state, archive) WHERE archive = false";
/// MariaDB has no partial indexes.
const INDEX_MYSQL: &str = "CREATE INDEX hub_task_archive_state ON hub_task (state, archive)";
const DROP_INDEX: &str = "DROP INDEX hub_task_archive_state";

/// The warm-up takes at most this long.
const WARMUP_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Every synthetic hub is generated with `hub_worker.min_priority` (kobo's current schema).
const SCHEMA: HubSchema = HubSchema { min_priority: true };

/// The hubs of one size.
pub struct HubSet {
    size: Size,
    out: PathBuf,
    keep: bool,
    sqlite: PathBuf,
    worker_dir: PathBuf,
    /// Admin URL and database name.
    postgres: Option<(String, String)>,
    mysql: Option<(String, String)>,
}

impl HubSet {
    /// Generates (or, with --keep-hubs, reuses) the hubs the sources need.
    pub async fn prepare(args: &Args, size: Size, sources: &[Source]) -> Result<HubSet> {
        let spec = HubSpec {
            workers: size.workers,
            tasks: size.tasks,
            seed: args.seed,
        };
        let stem = format!("kobo_bench_{}_{}_s{}", size.workers, size.tasks, args.seed);
        let hubs = args.out.join("hubs");
        std::fs::create_dir_all(&hubs).context(format!("creating {}", hubs.display()))?;
        let mut set = HubSet {
            size,
            out: args.out.clone(),
            keep: args.keep_hubs,
            sqlite: absolute(&hubs.join(format!("{stem}.sqlite3")))?,
            worker_dir: absolute(&hubs.join(format!("{stem}.worker")))?,
            postgres: None,
            mysql: None,
        };
        let started = Instant::now();
        if !(set.keep && set.worker_dir.is_dir()) {
            remove(&set.worker_dir)?;
            kobo_hubgen::write_worker_dir(&set.worker_dir, &spec)
                .map_err(anyhow::Error::from_boxed)
                .context(format!("writing {}", set.worker_dir.display()))?;
        }
        let needs_sqlite = sources.contains(&Source::Sqlite) || sources.contains(&Source::Xmlrpc);
        if needs_sqlite && !(set.keep && set.sqlite.is_file()) {
            remove(&set.sqlite)?;
            let url = format!("sqlite://{}", set.sqlite.display());
            kobo_hubgen::generate(&url, &spec)
                .await
                .map_err(anyhow::Error::from_boxed)
                .context("generating the SQLite hub")?;
        }
        if sources.contains(&Source::Postgres) {
            let existed = postgres_create(&args.postgres, &stem, set.keep).await?;
            set.postgres =
                Some(generate_unless(existed, &args.postgres, &stem, &spec, "PostgreSQL").await?);
        }
        if sources.contains(&Source::Mysql) {
            let existed = mysql_create(&args.mysql, &stem, set.keep).await?;
            set.mysql = Some(generate_unless(existed, &args.mysql, &stem, &spec, "MariaDB").await?);
        }
        eprintln!("   hubs ready in {:.1} s", started.elapsed().as_secs_f64());
        Ok(set)
    }

    /// Drops what was generated, unless --keep-hubs. Problems are reported, not fatal.
    pub async fn cleanup(&self) {
        if self.keep {
            return;
        }
        for path in [&self.sqlite, &self.worker_dir] {
            if let Err(e) = remove(path) {
                eprintln!("   cleanup: {e:#}");
            }
        }
        if let Some((admin, name)) = &self.postgres
            && let Err(e) = postgres_drop(admin, name).await
        {
            eprintln!("   cleanup: dropping PostgreSQL database {name}: {e:#}");
        }
        if let Some((admin, name)) = &self.mysql
            && let Err(e) = mysql_exec(admin, &format!("DROP DATABASE IF EXISTS {name}")).await
        {
            eprintln!("   cleanup: dropping MariaDB database {name}: {e:#}");
        }
    }

    /// Measures every row of one source on this size.
    pub async fn measure(&self, source: Source, plan: &Plan, rows: &mut Vec<Row>) -> Result<()> {
        match source {
            Source::Xmlrpc => {
                let exports = exports_from_sqlite(&self.sqlite, Some(&self.worker_dir))
                    .map_err(anyhow::Error::msg)
                    .context("reading the synthetic hub's workers for the XML-RPC hub")?;
                let hub = XmlRpcHub::start(exports)
                    .await
                    .context("starting the XML-RPC hub")?;
                for scenario in [Scenario::Reference, Scenario::Full] {
                    let settings = KoboSettings::new(hub.url(), None, scenario);
                    let (requests, calls) = (hub.requests(), hub.calls());
                    let mut row = self.row(source, scenario, plan, &settings, None).await?;
                    let requests = hub.requests() - requests;
                    let calls = hub.calls() - calls;
                    // The exporter's whole life: warm-up and measured scrapes (the first one is no different).
                    let total = (row.warmup_scrapes + row.scrapes) as f64;
                    row.server = Some(ServerCount {
                        per_scrape: requests as f64 / total,
                        what: "HTTP requests",
                        second: Some(("XML-RPC calls", calls as f64 / total)),
                    });
                    rows.push(row);
                }
                Ok(())
            }
            Source::Sqlite | Source::Postgres | Source::Mysql => {
                for scenario in [Scenario::Reference, Scenario::Full, Scenario::FullRefresh] {
                    if scenario == Scenario::FullRefresh {
                        self.index(source, true).await?;
                    }
                    let result = self.sql_row(source, scenario, plan).await;
                    if scenario == Scenario::FullRefresh {
                        self.index(source, false).await?;
                    }
                    rows.push(result?);
                }
                Ok(())
            }
        }
    }

    /// One row of a SQL source: the exporter, its server-side query count, then the floor.
    async fn sql_row(&self, source: Source, scenario: Scenario, plan: &Plan) -> Result<Row> {
        let worker_dir = Some(self.worker_dir.clone());
        let (url, sql) = match source {
            Source::Sqlite => (
                format!("sqlite://{}", self.sqlite.display()),
                kobo_backend_sqlite::scrape_sql(&SCHEMA),
            ),
            Source::Postgres => (
                self.postgres_url()?,
                kobo_backend_postgres::scrape_sql(&SCHEMA),
            ),
            Source::Mysql => (self.mysql_url()?, kobo_backend_mysql::scrape_sql(&SCHEMA)),
            Source::Xmlrpc => anyhow::bail!("not a SQL source"),
        };
        let settings = KoboSettings::new(url.clone(), worker_dir, scenario);
        let mut row = match source {
            Source::Postgres => {
                let (admin, name) = self.postgres.as_ref().context("no PostgreSQL hub")?;
                let counter = PgTransactions::new(admin, name).await?;
                let before = counter.settled().await?;
                let mut row = self.row(source, scenario, plan, &settings, None).await?;
                let after = counter.settled().await?;
                let total = (row.warmup_scrapes + row.scrapes) as f64;
                row.server = Some(ServerCount {
                    per_scrape: after.saturating_sub(before) as f64 / total,
                    what: "transactions",
                    second: None,
                });
                row
            }
            Source::Mysql => {
                let (admin, _) = self.mysql.as_ref().context("no MariaDB hub")?;
                let status = MysqlStatus::new(admin).await?;
                self.row(source, scenario, plan, &settings, Some(&status))
                    .await?
            }
            _ => self.row(source, scenario, plan, &settings, None).await?,
        };
        let queries = floor_queries(&sql, scenario);
        let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
        let iterations = row.scrapes.clamp(10, 1_000);
        let floor = match source {
            Source::Sqlite => floor::sqlite(&self.sqlite, &queries, iterations)?,
            Source::Postgres => floor::postgres(&url, &queries, iterations).await?,
            _ => floor::mysql(&url, &queries, iterations).await?,
        };
        row.floor_p50_ms = Some(floor);
        Ok(row)
    }

    /// Starts the exporter with `settings`, warms up, scrapes, and stops it. `status` counts MariaDB's
    /// statements over the measured scrapes.
    async fn row(
        &self,
        source: Source,
        scenario: Scenario,
        plan: &Plan,
        settings: &KoboSettings,
        status: Option<&MysqlStatus>,
    ) -> Result<Row> {
        let scrapes = match scenario {
            Scenario::FullRefresh => (plan.scrapes / 20).max(100),
            _ => plan.scrapes,
        };
        let name = format!(
            "{}-{}x{}-{}",
            source.name(),
            self.size.workers,
            self.size.tasks,
            scenario.key()
        );
        let exporter = Exporter::start(&plan.exporter, &self.out, &name, settings).await?;
        let scraper = Scraper::new(exporter.metrics_url())?;
        let workers = self.size.workers as usize;
        let warmup = scraper.run(plan.warmup, WARMUP_TIME_LIMIT, workers).await?;
        let rss_start = exporter.rss_kib()?;
        let before = match status {
            Some(status) => Some(status.read().await?),
            None => None,
        };
        let measured = scraper.run(scrapes, plan.row_time_limit, workers).await?;
        let server = match (status, before) {
            (Some(status), Some(before)) => {
                let after = status.read().await?;
                let n = measured.scrapes as f64;
                Some(ServerCount {
                    per_scrape: after.questions_since(&before) as f64 / n,
                    what: "statements",
                    second: Some(("SELECTs", after.selects_since(&before) as f64 / n)),
                })
            }
            _ => None,
        };
        let rss_end = exporter.rss_kib()?;
        let rss_peak = exporter.rss_peak_kib()?;
        exporter.stop();
        let row = Row {
            source,
            size: self.size,
            scenario,
            scrapes: measured.scrapes,
            warmup_scrapes: warmup.scrapes,
            failures: warmup.failures + measured.failures,
            up: warmup.up && measured.up,
            p50_ms: measured.percentile_ms(50.0),
            p99_ms: measured.percentile_ms(99.0),
            mean_ms: measured.mean_ms(),
            body_bytes: measured.body_bytes,
            server,
            rss_kib_start: rss_start,
            rss_kib_end: rss_end,
            rss_kib_peak: rss_peak,
            floor_p50_ms: None,
        };
        eprintln!("   {}", row.summary());
        Ok(row)
    }

    /// Creates (or drops) the README's task index on the hub of `source`.
    async fn index(&self, source: Source, create: bool) -> Result<()> {
        let started = Instant::now();
        match source {
            Source::Sqlite => {
                let conn = rusqlite::Connection::open(&self.sqlite)
                    .context(format!("opening {}", self.sqlite.display()))?;
                conn.execute_batch(if create { INDEX_PARTIAL } else { DROP_INDEX })
                    .context("the task index")?;
            }
            Source::Postgres => {
                let mut conn = pg_connect(&self.postgres_url()?).await?;
                let sql = if create { INDEX_PARTIAL } else { DROP_INDEX };
                conn.execute(sql).await.context("the task index")?;
                if create {
                    conn.execute("ANALYZE hub_task")
                        .await
                        .context("ANALYZE hub_task")?;
                }
            }
            Source::Mysql => {
                let sql = if create {
                    INDEX_MYSQL.to_string()
                } else {
                    format!("{DROP_INDEX} ON hub_task")
                };
                mysql_exec(&self.mysql_url()?, &sql).await?;
            }
            Source::Xmlrpc => {}
        }
        if create {
            eprintln!(
                "   task index created in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    fn postgres_url(&self) -> Result<String> {
        let (admin, name) = self.postgres.as_ref().context("no PostgreSQL hub")?;
        Ok(with_database(admin, name))
    }

    fn mysql_url(&self) -> Result<String> {
        let (admin, name) = self.mysql.as_ref().context("no MariaDB hub")?;
        Ok(with_database(admin, name))
    }
}

/// The queries a row's floor runs: what the exporter runs per scrape in that scenario.
fn floor_queries(sql: &ScrapeSql, scenario: Scenario) -> Vec<String> {
    match scenario {
        Scenario::FullRefresh => vec![
            sql.workers.sql(),
            sql.task_groups.sql(),
            sql.worker_tasks.sql(),
        ],
        // The reference six read hub_worker alone (no arches, no channels), as the exporter does.
        Scenario::Reference => vec![sql.workers_only.sql()],
        Scenario::Full => vec![sql.workers.sql()],
    }
}

/// `url` with its database (the last path segment) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).context(format!("resolving {}", path.display()))
}

/// Removes a file or directory if it exists.
fn remove(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else if path.exists() {
        std::fs::remove_file(path)
    } else {
        Ok(())
    };
    result.context(format!("removing {}", path.display()))
}

pub async fn pg_connect(url: &str) -> Result<sqlx::PgConnection> {
    let options: sqlx::postgres::PgConnectOptions = url.parse().context("the PostgreSQL URL")?;
    tokio::time::timeout(
        Duration::from_secs(10),
        options.application_name("kobo-bench").connect(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("PostgreSQL: no answer within 10 s"))?
    .context("connecting to PostgreSQL (start it, or pass --postgres)")
}

/// Generates the hub `spec` into the database `name` of the server at `admin` (`server` names it), unless
/// the database `existed` (kept from an earlier run); the server and database, as a [`HubSet`] keeps them.
async fn generate_unless(
    existed: bool,
    admin: &str,
    name: &str,
    spec: &HubSpec,
    server: &str,
) -> Result<(String, String)> {
    if !existed {
        kobo_hubgen::generate(&with_database(admin, name), spec)
            .await
            .map_err(anyhow::Error::from_boxed)
            .context(format!("generating the {server} hub"))?;
    }
    Ok((admin.to_string(), name.to_string()))
}

/// Creates the database `name` unless `reuse` and it exists; whether it existed.
async fn postgres_create(admin: &str, name: &str, reuse: bool) -> Result<bool> {
    let mut conn = pg_connect(admin).await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .context("looking for the hub database")?;
    if exists.is_some() && reuse {
        return Ok(true);
    }
    conn.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
        .await
        .context(format!("dropping an old {name}"))?;
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .context(format!("creating {name}"))?;
    drop(conn.close().await);
    Ok(false)
}

async fn postgres_drop(admin: &str, name: &str) -> Result<()> {
    let mut conn = pg_connect(admin).await?;
    conn.execute(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .await
    .context("DROP DATABASE")?;
    drop(conn.close().await);
    Ok(())
}

pub async fn mysql_connect(url: &str) -> Result<mysql_async::Conn> {
    let opts = mysql_async::Opts::from_url(url).context("the MariaDB URL")?;
    tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts))
        .await
        .map_err(|_| anyhow::anyhow!("MariaDB: no answer within 10 s"))?
        .context("connecting to MariaDB (start it, or pass --mysql)")
}

async fn mysql_exec(url: &str, sql: &str) -> Result<()> {
    let mut conn = mysql_connect(url).await?;
    conn.query_drop(sql)
        .await
        .with_context(|| sql.to_string())?;
    drop(conn.disconnect().await);
    Ok(())
}

/// Creates the database `name` unless `reuse` and it exists; whether it existed.
async fn mysql_create(admin: &str, name: &str, reuse: bool) -> Result<bool> {
    let mut conn = mysql_connect(admin).await?;
    let exists: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (name,),
        )
        .await
        .context("looking for the hub database")?;
    if exists.is_some() && reuse {
        return Ok(true);
    }
    conn.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .context(format!("dropping an old {name}"))?;
    conn.query_drop(format!("CREATE DATABASE {name}"))
        .await
        .context(format!("creating {name}"))?;
    drop(conn.disconnect().await);
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "hub"),
            "postgres://postgres@127.0.0.1:5432/hub"
        );
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306/test?ssl=false", "hub"),
            "mysql://root@127.0.0.1:3306/hub?ssl=false"
        );
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306", "hub"),
            "mysql://root@127.0.0.1:3306/hub"
        );
    }
}
