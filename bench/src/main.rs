//! kobo-bench: the benchmark runner. For every source (SQLite, PostgreSQL, MariaDB, XML-RPC) and hub size it
//! generates a synthetic hub (kobo-hubgen), starts the exporter binary on it, scrapes `/metrics` over one
//! keep-alive connection after a warm-up, and measures in the same run the raw-SQL floor: the exporter's own
//! SQL through the database's driver on one open connection. It prints one table (and writes it as Markdown
//! and JSON) with p50/p99 scrape latency, response size, the queries or XML-RPC requests per scrape counted on
//! the server side, the exporter's RSS, the floor and the ratio to it, and the target for each row.
//!
//! `--quick` (what `.ci/run` runs): the smallest hub, a few hundred scrapes with the debug exporter; it fails
//! (exit 1) when a scrape fails, a query count is not what the design says, or the XML-RPC request count
//! grows with the workers. Latency targets are reported, not enforced, in quick mode (debug build).
//!
//! The results are drawn as `chart.svg` too (chart.rs); `--chart-from FILE.json` draws it from an earlier
//! run's results.json without measuring.

mod chart;
mod counters;
mod exporter;
mod floor;
mod hubs;
mod report;
mod scrape;

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Parser, ValueEnum};

/// A failure, with what was being done (anyhow's context chain; shown with `{:#}`).
pub use anyhow::{Context, Result};

#[derive(Debug, Parser)]
#[command(
    name = "kobo-bench",
    about = "Benchmarks kobo-exporter on synthetic hubs, against the raw-SQL floor"
)]
pub struct Args {
    /// CI mode: 10 workers / 1,000 tasks (and 200 workers for XML-RPC), few scrapes, the debug exporter;
    /// exits 1 on a failed scrape or a wrong query count.
    #[arg(long)]
    pub quick: bool,
    /// Sources to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sqlite,postgres,mysql,xmlrpc"
    )]
    pub sources: Vec<Source>,
    /// Hub sizes as WORKERSxTASKS (k and M suffixes allowed), e.g. 10x1k,1000x1M,10000x1M.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<Size>>,
    /// Measured scrapes per row (default 10,000; 200 with --quick), or as many as fit in --row-seconds. Rows that
    /// refresh the task metrics on every scrape take a twentieth of it (at least 100).
    #[arg(long)]
    pub scrapes: Option<usize>,
    /// A row measures at most this many seconds, then stops early (the table shows the scrapes made).
    #[arg(long, default_value_t = 40)]
    pub row_seconds: u64,
    /// Scrapes before measuring (default 200; 20 with --quick).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// The exporter binary (default target/release/kobo-exporter; target/debug/kobo-exporter with --quick).
    #[arg(long)]
    pub exporter: Option<PathBuf>,
    /// Where hubs, exporter configs and the results (results.md, results.json, chart.svg) go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// PostgreSQL administrator URL: the runner creates (and drops) its hub databases there.
    #[arg(
        long,
        env = "KOBO_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub postgres: String,
    /// MariaDB/MySQL administrator URL.
    #[arg(
        long,
        env = "KOBO_BENCH_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/test"
    )]
    pub mysql: String,
    /// Keep the generated hubs after the run, and reuse hubs kept by an earlier run.
    #[arg(long)]
    pub keep_hubs: bool,
    /// The hub generator's seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u32,
    /// Measure nothing: draw the chart of an earlier run's results.json into --out/chart.svg.
    #[arg(long, value_name = "FILE.json")]
    pub chart_from: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Source {
    Sqlite,
    Postgres,
    Mysql,
    Xmlrpc,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Sqlite => "sqlite",
            Source::Postgres => "postgres",
            Source::Mysql => "mariadb",
            Source::Xmlrpc => "xmlrpc",
        }
    }
}

/// A hub size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub workers: u32,
    pub tasks: u32,
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Size, String> {
        let number = |part: &str| -> std::result::Result<u32, String> {
            let (digits, factor) = match part.strip_suffix(['k', 'K']) {
                Some(digits) => (digits, 1_000),
                None => match part.strip_suffix('M') {
                    Some(digits) => (digits, 1_000_000),
                    None => (part, 1),
                },
            };
            digits
                .parse::<u32>()
                .ok()
                .and_then(|n| n.checked_mul(factor))
                .ok_or_else(|| format!("{part:?} is not a count (e.g. 1000, 1k, 1M)"))
        };
        let (workers, tasks) = s
            .split_once('x')
            .ok_or_else(|| format!("{s:?}: a size is WORKERSxTASKS, e.g. 1000x1M"))?;
        Ok(Size {
            workers: number(workers)?,
            tasks: number(tasks)?,
        })
    }
}

/// What one row of the table measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `metrics = "reference"`: django-kobo-exporter's six families. Floor: the worker query.
    Reference,
    /// The full metric set, task metrics cached (`task_refresh_interval` 60 s, its default): the scrapes
    /// between task refreshes, on a hub without the task index. Floor: the worker query.
    Full,
    /// The full metric set with the task metrics refreshed on every scrape (`task_refresh_interval = 0`), on
    /// a hub with the index the README advises. Floor: the worker query and the two task queries.
    FullRefresh,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Reference => "reference six",
            Scenario::Full => "full, tasks cached",
            Scenario::FullRefresh => "full, tasks every scrape (index)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Scenario::Reference => "reference",
            Scenario::Full => "full",
            Scenario::FullRefresh => "full_refresh",
        }
    }

    /// The issues' latency target for this row: p50 within `factor` x floor + `plus_ms` (issue 17 for the
    /// reference six and the default, issue 7 for the task queries on every scrape).
    pub fn target(self) -> (f64, f64) {
        match self {
            Scenario::Reference | Scenario::Full => (1.5, 0.5),
            Scenario::FullRefresh => (3.0, 0.0),
        }
    }
}

/// The sizes and counts of a run.
pub struct Plan {
    pub sizes: Vec<Size>,
    /// Extra worker counts for XML-RPC only (quick mode: to see the request count stay constant).
    pub xmlrpc_extra: Vec<Size>,
    pub scrapes: usize,
    pub warmup: usize,
    pub exporter: PathBuf,
    /// The longest a row measures.
    pub row_time_limit: std::time::Duration,
}

impl Plan {
    fn from_args(args: &Args) -> Plan {
        let default_sizes = if args.quick {
            vec![Size {
                workers: 10,
                tasks: 1_000,
            }]
        } else {
            vec![
                Size {
                    workers: 10,
                    tasks: 1_000,
                },
                Size {
                    workers: 1_000,
                    tasks: 1_000_000,
                },
                Size {
                    workers: 10_000,
                    tasks: 1_000_000,
                },
            ]
        };
        let xmlrpc_extra = if args.quick {
            vec![Size {
                workers: 200,
                tasks: 1_000,
            }]
        } else {
            vec![]
        };
        let exporter = args.exporter.clone().unwrap_or_else(|| {
            PathBuf::from(if args.quick {
                "target/debug/kobo-exporter"
            } else {
                "target/release/kobo-exporter"
            })
        });
        Plan {
            sizes: args.sizes.clone().unwrap_or(default_sizes),
            xmlrpc_extra,
            scrapes: args
                .scrapes
                .unwrap_or(if args.quick { 200 } else { 10_000 }),
            warmup: args.warmup.unwrap_or(if args.quick { 20 } else { 200 }),
            exporter,
            row_time_limit: std::time::Duration::from_secs(args.row_seconds),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // reqwest is built without a TLS provider of its own (the workspace picks ring); the runner speaks
    // plain HTTP, but the client needs one installed. An error means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kobo-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kobo-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every row; `Ok(false)` when a check failed.
async fn run(args: &Args) -> Result<bool> {
    if let Some(json) = &args.chart_from {
        let path = chart::write_from(json, &args.out)?;
        eprintln!("chart: {}", path.display());
        return Ok(true);
    }
    let plan = Plan::from_args(args);
    if !plan.exporter.is_file() {
        return Err(anyhow::anyhow!(
            "no exporter binary at {} (build it first: `cargo build{}`, or pass --exporter)",
            plan.exporter.display(),
            if args.quick { "" } else { " --release" }
        ));
    }
    std::fs::create_dir_all(&args.out).context(format!("creating {}", args.out.display()))?;
    let mut rows = Vec::new();
    let mut sizes: Vec<(Size, bool)> = plan.sizes.iter().map(|s| (*s, false)).collect();
    if args.sources.contains(&Source::Xmlrpc) {
        sizes.extend(plan.xmlrpc_extra.iter().map(|s| (*s, true)));
    }
    for (size, xmlrpc_only) in sizes {
        let sources: Vec<Source> = args
            .sources
            .iter()
            .copied()
            .filter(|s| !xmlrpc_only || *s == Source::Xmlrpc)
            .collect();
        eprintln!(
            "== {} workers, {} tasks: {}",
            size.workers,
            size.tasks,
            sources
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let hub_set = hubs::HubSet::prepare(args, size, &sources).await?;
        for source in &sources {
            let result = hub_set.measure(*source, &plan, &mut rows).await;
            if let Err(e) = result {
                hub_set.cleanup().await;
                return Err(anyhow::anyhow!(
                    "{} at {}x{}: {e:#}",
                    source.name(),
                    size.workers,
                    size.tasks
                ));
            }
        }
        hub_set.cleanup().await;
    }
    let failures = report::checks(&rows);
    report::write(&args.out, &rows, &plan, args.quick)?;
    if !args.quick {
        for missed in report::missed_targets(&rows) {
            eprintln!("target missed: {missed}");
        }
    }
    for failure in &failures {
        eprintln!("FAILED: {failure}");
    }
    Ok(failures.is_empty())
}
