//! The table: one row per (source, size, scenario), printed and written as Markdown and JSON, and the checks
//! of quick mode.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::chart::{self, Point};
use crate::{Context, Plan, Result, Scenario, Size, Source};

/// What the server counted per scrape.
#[derive(Debug, Clone, Copy)]
pub struct ServerCount {
    pub per_scrape: f64,
    /// What `per_scrape` counts (`transactions`, `statements`, `HTTP requests`).
    pub what: &'static str,
    /// A second count (MariaDB's SELECTs, XML-RPC calls).
    pub second: Option<(&'static str, f64)>,
}

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    pub source: Source,
    pub size: Size,
    pub scenario: Scenario,
    pub scrapes: usize,
    /// Warm-up scrapes made (fewer than asked when its time limit was reached).
    pub warmup_scrapes: usize,
    pub failures: usize,
    pub up: bool,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub body_bytes: usize,
    pub server: Option<ServerCount>,
    pub rss_kib_start: u64,
    pub rss_kib_end: u64,
    pub rss_kib_peak: u64,
    pub floor_p50_ms: Option<f64>,
}

/// RSS the issue allows, KiB: under 20 MiB at 1,000 workers, under 30 MiB at 10,000.
fn rss_limit_kib(workers: u32) -> u64 {
    if workers >= 10_000 {
        30 * 1024
    } else {
        20 * 1024
    }
}

/// The hub size the issue sets its targets at: 1,000 workers, 1,000,000 tasks.
pub const TARGET_SIZE: Size = Size {
    workers: 1_000,
    tasks: 1_000_000,
};

impl Row {
    /// The target p50, milliseconds, where there is a floor.
    pub fn target_ms(&self) -> Option<f64> {
        let (factor, plus) = self.scenario.target();
        self.floor_p50_ms.map(|floor| factor * floor + plus)
    }

    pub fn ratio(&self) -> Option<f64> {
        self.floor_p50_ms.map(|floor| self.p50_ms / floor)
    }

    /// Whether p50 is within the target; `None` where there is no floor or the size is not the targets'.
    pub fn meets_target(&self) -> Option<bool> {
        if self.size != TARGET_SIZE {
            return None;
        }
        self.target_ms().map(|target| self.p50_ms <= target)
    }

    fn server_text(&self) -> String {
        match self.server {
            None => "n/a (in-process)".into(),
            Some(count) => {
                let mut text = format!("{:.2} {}", count.per_scrape, count.what);
                if let Some((what, n)) = count.second {
                    let _ = write!(text, ", {n:.2} {what}");
                }
                text
            }
        }
    }

    fn target_text(&self) -> String {
        let (factor, plus) = self.scenario.target();
        match (self.target_ms(), self.meets_target()) {
            (Some(target), Some(met)) => format!(
                "{} {factor}x{}: {target:.2} ms",
                if met { "met" } else { "MISSED" },
                if plus > 0.0 {
                    format!(" + {plus} ms")
                } else {
                    String::new()
                }
            ),
            (Some(target), None) => format!("({target:.2} ms; targets at 1k / 1M)"),
            _ => "request count constant".into(),
        }
    }

    /// The row's name in messages.
    fn what(&self) -> String {
        format!(
            "{} {}x{} {}",
            self.source.name(),
            self.size.workers,
            self.size.tasks,
            self.scenario.key()
        )
    }

    /// One line for the progress log.
    pub fn summary(&self) -> String {
        format!(
            "{} {} x{}: p50 {:.2} ms, p99 {:.2} ms, {} bytes, RSS {:.1} MiB",
            self.source.name(),
            self.scenario.key(),
            self.scrapes,
            self.p50_ms,
            self.p99_ms,
            self.body_bytes,
            self.rss_kib_end as f64 / 1024.0
        )
    }

    fn json(&self) -> Value {
        json!({
            "source": self.source.name(),
            "workers": self.size.workers,
            "tasks": self.size.tasks,
            "scenario": self.scenario.key(),
            "scrapes": self.scrapes,
            "warmup_scrapes": self.warmup_scrapes,
            "failures": self.failures,
            "complete": self.up,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "body_bytes": self.body_bytes,
            "server_per_scrape": self.server.map(|c| json!({
                "count": c.per_scrape,
                "what": c.what,
                "second": c.second.map(|(what, n)| json!({"count": n, "what": what})),
            })),
            "floor_p50_ms": self.floor_p50_ms,
            "ratio_to_floor": self.ratio(),
            "target_ms": self.target_ms(),
            "meets_target": self.meets_target(),
            "rss_kib_after_warmup": self.rss_kib_start,
            "rss_kib_end": self.rss_kib_end,
            "rss_kib_peak": self.rss_kib_peak,
        })
    }
}

/// A count as the table shows it: 1k, 1M.
pub fn count(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn bytes(n: usize) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// The Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| source | hub (workers / tasks) | metrics | scrapes | p50 ms | p99 ms | body | server-side per scrape | raw-SQL floor p50 ms | p50 / floor | target (p50) | RSS MiB (warm -> end) |\n\
         |---|---|---|---:|---:|---:|---:|---|---:|---:|---|---|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {:.1} -> {:.1} |",
            row.source.name(),
            count(row.size.workers),
            count(row.size.tasks),
            row.scenario.name(),
            row.scrapes,
            row.p50_ms,
            row.p99_ms,
            bytes(row.body_bytes),
            row.server_text(),
            row.floor_p50_ms
                .map_or("-".into(), |floor| format!("{floor:.2}")),
            row.ratio().map_or("-".into(), |r| format!("{r:.2}")),
            row.target_text(),
            row.rss_kib_start as f64 / 1024.0,
            row.rss_kib_end as f64 / 1024.0,
        );
    }
    out
}

/// Where and how the run was made.
fn environment(plan: &Plan, quick: bool) -> Value {
    let output = |program: &str, args: &[&str]| -> Option<String> {
        let out = Command::new(program).args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "quick": quick,
        "exporter": plan.exporter.display().to_string(),
        "commit": output("git", &["rev-parse", "--short", "HEAD"]),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "kernel": output("uname", &["-sr"]),
        "date_utc": output("date", &["-u", "+%Y-%m-%d %H:%M"]),
        "warmup_scrapes": plan.warmup,
    })
}

/// Prints the table and writes `results.md`, `results.json` and `chart.svg` into `out`.
pub fn write(out: &Path, rows: &[Row], plan: &Plan, quick: bool) -> Result<()> {
    let env = environment(plan, quick);
    let table = markdown(rows);
    let header = format!(
        "kobo-bench{}: exporter {} at commit {}, {} CPUs, {}; {} warm-up scrapes per row\n\n",
        if quick { " --quick" } else { "" },
        plan.exporter.display(),
        env["commit"].as_str().unwrap_or("?"),
        env["cpus"],
        env["date_utc"].as_str().unwrap_or("?"),
        plan.warmup,
    );
    println!("\n{header}{table}");
    let md = out.join("results.md");
    std::fs::write(&md, format!("{header}{table}")).context(format!("writing {}", md.display()))?;
    let json_path = out.join("results.json");
    let document = json!({
        "environment": env,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&document).context("encoding the results")?;
    std::fs::write(&json_path, text).context(format!("writing {}", json_path.display()))?;
    let chart_path = out.join("chart.svg");
    let points: Vec<Point> = rows.iter().map(Point::from).collect();
    std::fs::write(&chart_path, chart::svg(&points, &chart::caption(&env)))
        .context(format!("writing {}", chart_path.display()))?;
    eprintln!(
        "results: {}, {} and {}",
        md.display(),
        json_path.display(),
        chart_path.display()
    );
    Ok(())
}

/// What failed: scrapes that failed or were incomplete, query counts that are not what the design says,
/// an XML-RPC request count that grows with the hub. Any of these fails the run.
pub fn checks(rows: &[Row]) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows {
        let what = row.what();
        if row.failures > 0 || !row.up || row.scrapes == 0 {
            failures.push(format!(
                "{what}: {} failed scrapes, complete: {}",
                row.failures, row.up
            ));
        }
        if let Some(count) = row.server
            && let Some(problem) = count_problem(row.source, row.scenario, count)
        {
            failures.push(format!("{what}: {problem}"));
        }
    }
    // XML-RPC: the same requests per scrape whatever the number of workers, up to the workers one
    // get_worker_info multicall carries (the source's default multicall_chunk; a hub with more workers
    // takes one more request per chunk).
    for scenario in [Scenario::Reference, Scenario::Full] {
        let counts: Vec<(u32, f64)> = rows
            .iter()
            .filter(|r| r.source == Source::Xmlrpc && r.scenario == scenario)
            .filter(|r| r.size.workers as usize <= kobo_backend_xmlrpc::DEFAULT_MULTICALL_CHUNK)
            .filter_map(|r| r.server.map(|c| (r.size.workers, c.per_scrape)))
            .collect();
        if let (Some(min), Some(max)) = (
            counts.iter().map(|c| c.1).reduce(f64::min),
            counts.iter().map(|c| c.1).reduce(f64::max),
        ) && max - min > 0.01
        {
            failures.push(format!(
                "xmlrpc {}: HTTP requests per scrape change with the workers: {counts:?}",
                scenario.key()
            ));
        }
    }
    failures
}

/// The targets that a row misses: p50 against the floor (at 1,000 workers and 1,000,000 tasks),
/// RSS under 20 MiB at 1,000 workers and under 30 MiB at 10,000. Reported; they do not fail the run.
pub fn missed_targets(rows: &[Row]) -> Vec<String> {
    let mut missed = Vec::new();
    for row in rows {
        if row.meets_target() == Some(false) {
            missed.push(format!(
                "{}: p50 {:.2} ms, target {:.2} ms",
                row.what(),
                row.p50_ms,
                row.target_ms().unwrap_or(f64::NAN)
            ));
        }
        let limit = rss_limit_kib(row.size.workers);
        if row.size.workers >= TARGET_SIZE.workers && row.rss_kib_end > limit {
            missed.push(format!(
                "{}: RSS {:.1} MiB, target under {} MiB",
                row.what(),
                row.rss_kib_end as f64 / 1024.0,
                limit / 1024
            ));
        }
    }
    missed
}

/// Whether a server-side count contradicts the design: PostgreSQL one transaction per scrape; MariaDB one
/// SELECT per scrape; four when the task data are read (the workers, the task groups, the tasks per worker
/// and the task flow since the last refresh; the flow's latest times once more, at the first refresh only).
fn count_problem(source: Source, scenario: Scenario, count: ServerCount) -> Option<String> {
    // Connection set-up and the schema check at the first scrape add a little, once.
    const SLACK: f64 = 0.1;
    match source {
        Source::Postgres => (count.per_scrape > 1.0 + SLACK || count.per_scrape < 1.0 - SLACK)
            .then(|| format!("{:.2} transactions per scrape, not 1", count.per_scrape)),
        Source::Mysql => {
            let selects = count.second.map_or(f64::NAN, |(_, n)| n);
            let expected = if scenario == Scenario::FullRefresh {
                4.0
            } else {
                1.0
            };
            ((selects - expected).abs() > SLACK)
                .then(|| format!("{selects:.2} SELECTs per scrape, not {expected}"))
        }
        Source::Sqlite | Source::Xmlrpc => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(source: Source, workers: u32, server: f64) -> Row {
        Row {
            source,
            size: Size {
                workers,
                tasks: 1_000,
            },
            scenario: Scenario::Reference,
            scrapes: 100,
            warmup_scrapes: 20,
            failures: 0,
            up: true,
            p50_ms: 2.0,
            p99_ms: 3.0,
            mean_ms: 2.1,
            body_bytes: 1000,
            server: Some(ServerCount {
                per_scrape: server,
                what: "x",
                second: Some(("SELECTs", server)),
            }),
            rss_kib_start: 10_000,
            rss_kib_end: 10_100,
            rss_kib_peak: 10_200,
            floor_p50_ms: Some(0.4),
        }
    }

    #[test]
    fn checks_catch_growing_xmlrpc_requests_and_wrong_query_counts() {
        let good = vec![
            row(Source::Xmlrpc, 10, 2.0),
            row(Source::Xmlrpc, 200, 2.0),
            row(Source::Postgres, 10, 1.0),
            row(Source::Mysql, 10, 1.0),
        ];
        assert!(checks(&good).is_empty(), "{:?}", checks(&good));
        let bad = vec![
            row(Source::Xmlrpc, 10, 3.0),
            row(Source::Xmlrpc, 200, 4.0),
            row(Source::Postgres, 10, 3.0),
            row(Source::Mysql, 10, 2.0),
        ];
        assert_eq!(checks(&bad).len(), 3, "{:?}", checks(&bad));
    }

    #[test]
    fn targets_are_one_and_a_half_times_the_floor_plus_half_a_millisecond_at_the_target_size() {
        let mut r = row(Source::Sqlite, 10, 1.0);
        assert!((r.target_ms().unwrap_or_default() - 1.1).abs() < 1e-9);
        assert_eq!(r.meets_target(), None, "no target at 10 workers");
        assert!(markdown(&[r.clone()]).contains("| (1.10 ms; targets at 1k / 1M) |"));
        r.size = TARGET_SIZE;
        assert_eq!(r.meets_target(), Some(false));
        assert_eq!(missed_targets(&[r.clone()]).len(), 1);
        r.p50_ms = 1.05;
        assert_eq!(r.meets_target(), Some(true));
        assert!(markdown(&[r.clone()]).contains("| met 1.5x + 0.5 ms: 1.10 ms |"));
        r.rss_kib_end = 21 * 1024;
        assert_eq!(missed_targets(&[r.clone()]).len(), 1, "RSS over 20 MiB");
        r.size.workers = 10_000;
        r.floor_p50_ms = None;
        assert!(
            missed_targets(&[r.clone()]).is_empty(),
            "21 MiB is under 30 at 10,000"
        );
        r.rss_kib_end = 31 * 1024;
        assert_eq!(missed_targets(&[r]).len(), 1, "RSS over 30 MiB");
    }
}
