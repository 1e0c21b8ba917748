//! Task flow end to end on every database: a hub driven through task lifecycles with known times, scraped
//! through the exporter's collector after each step, and every series of `kobo_tasks_finished_total`,
//! `kobo_task_wait_seconds` and `kobo_task_run_seconds` (each bucket, `_count`, `_sum`) compared with what
//! the steps imply, and nothing else present.
//!
//! The steps: a task finished before the exporter started (not counted); started, closed, canceled while
//! FREE; failed, timed out and interrupted in the same second (ties at the watermark); a late commit
//! finishing before the watermark; a refresh that fails (the channel table renamed away) and is retried;
//! and two tasks on either side of the autumn clock change of the hub's zone (America/New_York), whose
//! naive times on SQLite and MariaDB go backwards (01:50 EDT, then 01:15 EST).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kobo_exporter::api::{DataSource, HubZone, TaskFlowOptions};
use kobo_exporter::collector::{CollectorOptions, HubCollector};
use kobo_exporter::metrics::flow::DEFAULT_BUCKETS;
use kobo_testkit::db::TestDb;
use kobo_testkit::exposition::{Exposition, parse};

const ZONE: &str = "America/New_York";

fn flow_options() -> TaskFlowOptions {
    TaskFlowOptions {
        late_commit_window: Duration::from_secs(300),
        time_zone: HubZone::named(ZONE).expect("zone"),
    }
}

/// A hub under test: how it is written to and read.
#[async_trait::async_trait(?Send)]
trait FlowHub: Send + Sync {
    /// Whether its datetimes are naive (written in [`ZONE`]).
    fn naive(&self) -> bool;
    async fn execute(&self, sql: &str);
    fn source(&self) -> Arc<dyn DataSource>;
}

struct SqliteHub {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

#[async_trait::async_trait(?Send)]
impl FlowHub for SqliteHub {
    fn naive(&self) -> bool {
        true
    }
    async fn execute(&self, sql: &str) {
        let conn = rusqlite::Connection::open(&self.path).expect("open for writing");
        conn.execute_batch(sql).expect(sql);
    }
    fn source(&self) -> Arc<dyn DataSource> {
        let source = kobo_backend_sqlite::open(&self.path, None).expect("source");
        Arc::new(source.with_task_flow(&flow_options()))
    }
}

#[async_trait::async_trait(?Send)]
impl<D: TestDb + Sync> FlowHub
    for (
        D,
        fn(kobo_exporter::api::DatabaseOptions) -> Arc<dyn DataSource>,
    )
{
    fn naive(&self) -> bool {
        D::SERVER != "PostgreSQL"
    }
    async fn execute(&self, sql: &str) {
        self.0.execute(sql).await;
    }
    fn source(&self) -> Arc<dyn DataSource> {
        let mut options = self.0.options();
        options.task_flow = flow_options();
        (self.1)(options)
    }
}

/// A UTC time as the hub writes it: naive in [`ZONE`], or a `timestamptz` literal.
fn at(hub: &dyn FlowHub, utc: &str) -> String {
    let instant = kobo_exporter::api::tasks::parse_utc_micros(utc).expect(utc);
    if hub.naive() {
        let zone = HubZone::named(ZONE).expect("zone");
        format!(
            "'{}'",
            kobo_exporter::api::clock::naive_text(zone.naive(instant))
        )
    } else {
        format!("'{utc}+00'")
    }
}

/// A task of the fixture's arch 2 and channel 1 (`default`), owner 1.
fn insert(
    hub: &dyn FlowHub,
    id: u32,
    state: u32,
    method: &str,
    times: [Option<&str>; 3],
) -> String {
    let [created, started, finished] = times.map(|t| t.map_or("NULL".to_string(), |t| at(hub, t)));
    let worker = if state == 0 || state == 4 {
        "NULL"
    } else {
        "1"
    };
    format!(
        "INSERT INTO hub_task (id, archive, state, label, exclusive, method, args, result, waiting, awaited, \
         dt_created, dt_started, dt_finished, priority, weight, subtask_count, arch_id, channel_id, owner_id, \
         worker_id) VALUES ({id}, FALSE, {state}, '', FALSE, '{method}', '{{}}', '', FALSE, FALSE, {created}, \
         {started}, {finished}, 10, 1, 0, 2, 1, 1, {worker});"
    )
}

/// What the flow families must hold: counts by (state, method), waits and runs by method (channel
/// `default` throughout).
#[derive(Default)]
struct Expected {
    finished: BTreeMap<(&'static str, &'static str), u32>,
    wait: BTreeMap<&'static str, Vec<f64>>,
    run: BTreeMap<&'static str, Vec<f64>>,
}

impl Expected {
    fn started(&mut self, method: &'static str, wait: f64) {
        self.wait.entry(method).or_default().push(wait);
    }
    fn finished(&mut self, state: &'static str, method: &'static str, run: Option<f64>) {
        *self.finished.entry((state, method)).or_default() += 1;
        if let Some(run) = run {
            self.run.entry(method).or_default().push(run);
        }
    }

    /// Every series of the three families equals what the steps imply, and there are no others.
    fn check(&self, text: &str, step: &str) {
        let exposition = parse(text).expect("parses");
        assert_eq!(
            exposition.sample("kobo_up", &[]),
            Some(1.0),
            "{step}: kobo_up\n{text}"
        );
        let mut want: BTreeMap<(String, Vec<(String, String)>), f64> = BTreeMap::new();
        let labels = kobo_testkit::exposition::labels;
        for ((state, method), count) in &self.finished {
            let key = labels(&[("state", state), ("method", method), ("channel", "default")]);
            want.insert(("kobo_tasks_finished_total".into(), key), f64::from(*count));
        }
        for (family, observed) in [
            ("kobo_task_wait_seconds", &self.wait),
            ("kobo_task_run_seconds", &self.run),
        ] {
            for (method, values) in observed {
                let series = [("method", *method), ("channel", "default")];
                for le in DEFAULT_BUCKETS
                    .iter()
                    .map(|b| b.to_string())
                    .chain(["+Inf".to_string()])
                {
                    let bound: f64 = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().expect("le")
                    };
                    let below = values.iter().filter(|v| **v <= bound).count();
                    let mut with_le = series.to_vec();
                    with_le.push(("le", &le));
                    want.insert((format!("{family}_bucket"), labels(&with_le)), below as f64);
                }
                want.insert(
                    (format!("{family}_count"), labels(&series)),
                    values.len() as f64,
                );
                want.insert(
                    (format!("{family}_sum"), labels(&series)),
                    values.iter().sum(),
                );
            }
        }
        let got = flow_samples(&exposition);
        assert_eq!(got, want, "{step}: the task-flow series\n{text}");
    }
}

fn flow_samples(exposition: &Exposition) -> BTreeMap<(String, Vec<(String, String)>), f64> {
    [
        "kobo_tasks_finished_total",
        "kobo_task_wait_seconds",
        "kobo_task_run_seconds",
    ]
    .iter()
    .flat_map(|name| {
        let family = exposition.families.get(*name);
        assert!(
            family.is_some(),
            "{name} is served (its HELP and TYPE at least)"
        );
        family.map(|f| f.samples.clone()).unwrap_or_default()
    })
    .collect()
}

async fn lifecycle(hub: &dyn FlowHub) {
    let collector = HubCollector::new(
        hub.source(),
        CollectorOptions {
            task_refresh_interval: Duration::ZERO,
            reconnect_backoff_max: Duration::ZERO,
            ..CollectorOptions::default()
        },
    );
    let scrape = || async { collector.scrape(None).await.expect("scrape") };
    let mut expected = Expected::default();

    // Before the exporter starts: one task finished (never counted), two FREE.
    hub.execute(
        &[
            insert(
                hub,
                1001,
                0,
                "MockBuild",
                [Some("2026-11-01 04:30:00"), None, None],
            ),
            insert(
                hub,
                1002,
                3,
                "MockBuild",
                [
                    Some("2026-11-01 04:00:00"),
                    Some("2026-11-01 04:05:00"),
                    Some("2026-11-01 04:20:00"),
                ],
            ),
            insert(
                hub,
                1004,
                0,
                "ComposeTask",
                [Some("2026-11-01 04:30:00"), None, None],
            ),
        ]
        .concat(),
    )
    .await;
    let first = scrape().await;
    expected.check(&first, "the first refresh counts nothing");
    // The oldest FREE task's creation, written in the hub's zone, read as the instant it was.
    let oldest = parse(&first).expect("parses").sample(
        "kobo_tasks_oldest_created_timestamp_seconds",
        &[
            ("state", "FREE"),
            ("arch", "x86_64"),
            ("channel", "default"),
        ],
    );
    let created = kobo_exporter::api::tasks::parse_utc_datetime("2026-11-01 04:30:00");
    assert_eq!(
        oldest, created,
        "kobo_tasks_oldest_created_timestamp_seconds in {ZONE}"
    );

    // Started; started and closed between two refreshes; canceled while FREE.
    hub.execute(&format!(
        "UPDATE hub_task SET state = 2, worker_id = 1, dt_started = {} WHERE id = 1001; {} \
         UPDATE hub_task SET state = 4, dt_finished = {} WHERE id = 1004;",
        at(hub, "2026-11-01 04:32:00"),
        insert(
            hub,
            1003,
            3,
            "MockBuild",
            [
                Some("2026-11-01 04:31:00"),
                Some("2026-11-01 04:31:30"),
                Some("2026-11-01 04:35:00")
            ]
        ),
        at(hub, "2026-11-01 04:34:00"),
    ))
    .await;
    expected.started("MockBuild", 120.0);
    expected.started("MockBuild", 30.0);
    expected.finished("CLOSED", "MockBuild", Some(210.0));
    expected.finished("CANCELED", "ComposeTask", None);
    expected.check(&scrape().await, "started, closed, canceled while FREE");

    // Failed, timed out and interrupted, all at 04:50:00.
    hub.execute(&format!(
        "UPDATE hub_task SET state = 5, dt_finished = {} WHERE id = 1001; {}{}",
        at(hub, "2026-11-01 04:50:00"),
        insert(
            hub,
            1005,
            7,
            "MockBuild",
            [
                Some("2026-11-01 04:39:00"),
                Some("2026-11-01 04:40:00"),
                Some("2026-11-01 04:50:00")
            ]
        ),
        insert(
            hub,
            1006,
            6,
            "MockBuild",
            [
                Some("2026-11-01 04:33:00"),
                Some("2026-11-01 04:49:00"),
                Some("2026-11-01 04:50:00")
            ]
        ),
    ))
    .await;
    expected.finished("FAILED", "MockBuild", Some(1080.0));
    expected.started("MockBuild", 60.0);
    expected.finished("TIMEOUT", "MockBuild", Some(600.0));
    expected.started("MockBuild", 960.0);
    expected.finished("INTERRUPTED", "MockBuild", Some(60.0));
    expected.check(&scrape().await, "three finished in one second");
    expected.check(&scrape().await, "the same tasks read again");

    // A late commit (finished at 04:48, before the watermark) and a new task; the refresh fails, then
    // is retried.
    hub.execute(
        &[
            insert(
                hub,
                1007,
                3,
                "ComposeTask",
                [
                    Some("2026-11-01 04:44:00"),
                    Some("2026-11-01 04:45:00"),
                    Some("2026-11-01 04:48:00"),
                ],
            ),
            insert(
                hub,
                1008,
                3,
                "MockBuild",
                [
                    Some("2026-11-01 04:51:00"),
                    Some("2026-11-01 04:52:00"),
                    Some("2026-11-01 04:55:00"),
                ],
            ),
        ]
        .concat(),
    )
    .await;
    hub.execute("ALTER TABLE hub_channel RENAME TO hub_channel_away")
        .await;
    let failed = parse(&scrape().await).expect("parses");
    assert_eq!(
        failed.sample("kobo_up", &[]),
        Some(0.0),
        "the refresh fails"
    );
    hub.execute("ALTER TABLE hub_channel_away RENAME TO hub_channel")
        .await;
    expected.started("ComposeTask", 60.0);
    expected.finished("CLOSED", "ComposeTask", Some(180.0));
    expected.started("MockBuild", 60.0);
    expected.finished("CLOSED", "MockBuild", Some(180.0));
    expected.check(&scrape().await, "a late commit, after a failed refresh");

    // 01:40-01:50 EDT, then 01:08-01:15 EST: the naive times of the second go back.
    hub.execute(&insert(
        hub,
        1009,
        3,
        "MockBuild",
        [
            Some("2026-11-01 05:38:00"),
            Some("2026-11-01 05:40:00"),
            Some("2026-11-01 05:50:00"),
        ],
    ))
    .await;
    expected.started("MockBuild", 120.0);
    expected.finished("CLOSED", "MockBuild", Some(600.0));
    expected.check(&scrape().await, "before the clock change");
    hub.execute(&insert(
        hub,
        1010,
        3,
        "MockBuild",
        [
            Some("2026-11-01 06:05:00"),
            Some("2026-11-01 06:08:00"),
            Some("2026-11-01 06:15:00"),
        ],
    ))
    .await;
    expected.started("MockBuild", 180.0);
    expected.finished("CLOSED", "MockBuild", Some(420.0));
    expected.check(&scrape().await, "after the clock change");
    let text = scrape().await;
    expected.check(&text, "after the clock change, read again");
    // The same series in OpenMetrics, which checks as such.
    let open_metrics = collector
        .scrape_as(None, kobo_exporter::exposition::Format::OpenMetrics)
        .await
        .expect("scrape");
    let families = kobo_testkit::openmetrics::check(&open_metrics).expect("valid OpenMetrics");
    let flow: BTreeMap<_, _> = [
        "kobo_tasks_finished",
        "kobo_task_wait_seconds",
        "kobo_task_run_seconds",
    ]
    .iter()
    .flat_map(|name| families[*name].samples.clone())
    .collect();
    assert_eq!(flow, flow_samples(&parse(&text).expect("parses")));
}

#[tokio::test]
async fn lifecycles_on_sqlite() {
    let (dir, path) = crate::common::fixture_sqlite();
    lifecycle(&SqliteHub { _dir: dir, path }).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn lifecycles_on_postgres() {
    let Some(db) = kobo_testkit::db::PostgresDb::with_fixture().await else {
        return;
    };
    let open: fn(_) -> Arc<dyn DataSource> =
        |options| Arc::new(kobo_backend_postgres::open(options).expect("source"));
    lifecycle(&(db, open)).await;
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn lifecycles_on_mariadb() {
    let Some(db) = kobo_testkit::db::MysqlDb::with_fixture().await else {
        return;
    };
    let open: fn(_) -> Arc<dyn DataSource> =
        |options| Arc::new(kobo_backend_mysql::open(options).expect("source"));
    lifecycle(&(db, open)).await;
}

/// The flow the exporter counts on a generated hub equals what SQL counts in the same rows: a third of
/// the active tasks of a 20,000-task hub finished in every state, with several methods and channels, after
/// the exporter's first refresh; counters by (state, method, channel) and the run histograms' buckets,
/// `_count` and `_sum` by (method, channel), the buckets counted by SQL at each bound.
#[tokio::test]
async fn the_flow_of_a_generated_hub_equals_raw_sql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hub.sqlite3");
    let spec = kobo_hubgen::HubSpec {
        workers: 50,
        tasks: 20_000,
        seed: 7,
    };
    kobo_hubgen::sqlite::generate(&path, &spec).expect("generate");
    let source = kobo_backend_sqlite::open(&path, None).expect("source");
    let collector = HubCollector::new(
        Arc::new(source),
        CollectorOptions {
            task_refresh_interval: Duration::ZERO,
            ..CollectorOptions::default()
        },
    );
    collector.scrape(None).await.expect("the first refresh");
    let db = rusqlite::Connection::open(&path).expect("open for writing");
    let finishing = "state IN (0, 1, 2, 8) AND id % 3 = 0";
    db.execute_batch(&format!(
        "UPDATE hub_task SET \
           method = CASE (id / 100) % 4 WHEN 0 THEN 'MockBuild' WHEN 1 THEN 'ComposeTask' WHEN 2 THEN 'SignTask' \
                    ELSE 'CreateRepo' END, \
           dt_started = CASE WHEN (id / 100) % 7 = 0 THEN NULL \
                        ELSE datetime(strftime('%s', dt_created) + id % 900, 'unixepoch') END, \
           dt_finished = datetime(strftime('%s', dt_created) + id % 900 + (id * 37) % 7200, 'unixepoch'), \
           state = CASE WHEN (id / 100) % 7 = 0 THEN 4 ELSE 3 + (id / 100) % 5 END \
         WHERE {finishing}"
    ))
    .expect("finish tasks");
    let text = collector.scrape(None).await.expect("the second refresh");
    let exposition = parse(&text).expect("parses");
    let labels = kobo_testkit::exposition::labels;
    let mut want: BTreeMap<(String, Vec<(String, String)>), f64> = BTreeMap::new();
    let states = [
        "FREE",
        "ASSIGNED",
        "OPEN",
        "CLOSED",
        "CANCELED",
        "FAILED",
        "INTERRUPTED",
        "TIMEOUT",
    ];
    let mut counts = db
        .prepare(
            "SELECT t.state, t.method, c.name, count(*) FROM hub_task t JOIN hub_channel c ON c.id = t.channel_id \
             WHERE t.dt_finished IS NOT NULL AND t.archive = 0 GROUP BY 1, 2, 3",
        )
        .expect("prepare");
    let rows = counts
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as usize,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
            ))
        })
        .expect("query");
    for row in rows {
        let (state, method, channel, n) = row.expect("row");
        let key = labels(&[
            ("state", states[state]),
            ("method", &method),
            ("channel", &channel),
        ]);
        want.insert(("kobo_tasks_finished_total".into(), key), n);
    }
    let run = "(strftime('%s', t.dt_finished) - strftime('%s', t.dt_started))";
    let per_series = format!(
        "SELECT t.method, c.name, count(*), sum({run}) FROM hub_task t JOIN hub_channel c ON c.id = t.channel_id \
         WHERE t.dt_finished IS NOT NULL AND t.dt_started IS NOT NULL AND t.archive = 0 GROUP BY 1, 2"
    );
    let mut series = db.prepare(&per_series).expect("prepare");
    let rows: Vec<(String, String, f64, f64)> = series
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert!(rows.len() >= 8, "several methods and channels: {rows:?}");
    for (method, channel, count, sum) in rows {
        let base = [("method", method.as_str()), ("channel", channel.as_str())];
        want.insert(("kobo_task_run_seconds_count".into(), labels(&base)), count);
        want.insert(("kobo_task_run_seconds_sum".into(), labels(&base)), sum);
        for le in DEFAULT_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()])
        {
            let bound = if le == "+Inf" {
                "1e18".to_string()
            } else {
                le.clone()
            };
            let below: f64 = db
                .query_row(
                    &format!(
                        "SELECT count(*) FROM hub_task t JOIN hub_channel c ON c.id = t.channel_id \
                         WHERE t.dt_finished IS NOT NULL AND t.dt_started IS NOT NULL AND t.archive = 0 \
                         AND t.method = ?1 AND c.name = ?2 AND {run} <= {bound}"
                    ),
                    [&method, &channel],
                    |r| r.get(0),
                )
                .expect("bucket");
            let mut with_le = base.to_vec();
            with_le.push(("le", &le));
            want.insert(
                ("kobo_task_run_seconds_bucket".into(), labels(&with_le)),
                below,
            );
        }
    }
    let got: BTreeMap<_, _> = flow_samples(&exposition)
        .into_iter()
        .filter(|((name, _), _)| !name.starts_with("kobo_task_wait"))
        .collect();
    assert_eq!(got, want);
    // Every task that started was waited for: as many waits as runs.
    let waits: f64 = exposition.families["kobo_task_wait_seconds"]
        .samples
        .iter()
        .filter(|((name, _), _)| name == "kobo_task_wait_seconds_count")
        .map(|(_, v)| v)
        .sum();
    let started: f64 = db
        .query_row(
            "SELECT count(*) FROM hub_task WHERE dt_started IS NOT NULL AND archive = 0",
            [],
            |r| r.get(0),
        )
        .expect("started");
    assert_eq!(waits, started);
}
