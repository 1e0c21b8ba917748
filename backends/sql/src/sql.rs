//! The SQL of a scrape, written once: the worker query and the two task aggregates, with each database's
//! differences given as parameters ([`Dialect`]), never patched into the text afterwards. Every column is
//! named (`AS name`, ...), and rows are decoded by those names ([`crate::decode`]).

use kobo_backend_api::TaskState;
use kobo_backend_api::clock::{Micros, naive_text};
use kobo_backend_api::normalise::HubSchema;

/// A database as the engine sees it: what it is called, and what differs in its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The source's kind (`postgres`, ...): see `DataSource::kind`.
    pub kind: &'static str,
    /// What the database is, in words (`PostgreSQL database`), put before the target in descriptions.
    pub database: &'static str,
    /// The statement that starts a read-only transaction in which every following statement sees one
    /// snapshot (a task refresh's).
    pub begin_snapshot: &'static str,
    /// How a worker's arch and channel names are gathered into one value.
    pub names: NamesAggregate,
    /// The expression for a `datetime` column's value as text `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
    pub datetime_as_text: fn(&str) -> String,
    /// The expression by which a name column is grouped and selected byte for byte (MySQL's collations
    /// compare case-insensitively and pad with spaces; the others compare bytes already).
    pub bytewise: fn(&str) -> String,
    /// Whether datetimes are naive (Django's on SQLite and MySQL), in the hub's `time_zone`; PostgreSQL's
    /// `timestamptz` are instants.
    pub naive_datetimes: bool,
    /// A datetime literal, compared with a datetime column, of text `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC
    /// where the datetimes are not naive).
    pub datetime_literal: fn(&str) -> String,
}

impl Dialect {
    /// PostgreSQL: names aggregated once per worker as `text[]` (hash aggregates joined to the workers),
    /// times as UTC text (the session's TimeZone is UTC), names compared byte for byte already.
    pub const POSTGRES: Dialect = Dialect {
        kind: "postgres",
        database: "PostgreSQL database",
        begin_snapshot: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        names: NamesAggregate::Joined(|column| format!("array_agg({column}::text)")),
        datetime_as_text: |expr| format!("to_char({expr}, 'YYYY-MM-DD HH24:MI:SS.US')"),
        bytewise: str::to_string,
        naive_datetimes: false,
        datetime_literal: |text| format!("TIMESTAMPTZ '{text}+00'"),
    };

    /// MySQL/MariaDB: names as JSON arrays (`JSON_ARRAYAGG`, MySQL 5.7.22+ / MariaDB 10.5+; JSON escapes
    /// every character, whatever the name) by a subquery per worker; times as `YYYY-MM-DD HH:MM:SS.ffffff`
    /// (Django stores UTC in `datetime(6)`); task groups' names as UTF-8 bytes, compared byte for byte as
    /// PostgreSQL and SQLite compare them: MySQL's usual collations are case-insensitive and pad with
    /// spaces (even `utf8mb4_bin`), which would merge channels `b`, `B` and `b ` into one group.
    pub const MYSQL: Dialect = Dialect {
        kind: "mysql",
        database: "MySQL/MariaDB database",
        // The session is read-only as well.
        begin_snapshot: "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT",
        names: NamesAggregate::PerWorker(|column| format!("JSON_ARRAYAGG({column})")),
        datetime_as_text: |expr| format!("DATE_FORMAT({expr}, '%Y-%m-%d %H:%i:%s.%f')"),
        bytewise: |column| format!("CAST(CONVERT({column} USING utf8mb4) AS BINARY)"),
        naive_datetimes: true,
        // Converted to the column's type, so the column's index serves the comparison.
        datetime_literal: |text| format!("'{text}'"),
    };

    /// SQLite: names as JSON arrays by a subquery per worker (`json_group_array`); Django writes
    /// `dt_created` as text `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC, so min() of it is that text; names
    /// compare byte for byte already.
    pub const SQLITE: Dialect = Dialect {
        kind: "sqlite",
        database: "SQLite database",
        // Deferred: its snapshot is taken at its first read, and kept to the commit.
        begin_snapshot: "BEGIN",
        names: NamesAggregate::PerWorker(|column| format!("json_group_array({column})")),
        datetime_as_text: str::to_string,
        bytewise: str::to_string,
        naive_datetimes: true,
        // Text compared as text: written as Django writes it ([`kobo_backend_api::clock::naive_text`]).
        datetime_literal: |text| format!("'{text}'"),
    };
}

/// How the names of a worker's arches (or channels) become one value of its row.
#[derive(Debug, Clone, Copy)]
pub enum NamesAggregate {
    /// The names of every worker aggregated once (hash aggregates joined to the workers) with this
    /// aggregate function over the name column: PostgreSQL's `array_agg`, 3.0 instead of 7.5 ms of server
    /// time for 1,000 workers compared with a subquery per worker.
    Joined(fn(&str) -> String),
    /// A subquery per worker with this aggregate: SQLite's `json_group_array`, MySQL's `JSON_ARRAYAGG`
    /// (each an index lookup per worker).
    PerWorker(fn(&str) -> String),
}

/// A statement of the engine: always a `SELECT`, kept as the text after `SELECT ` so that a driver can put
/// a limit before it or a hint into it ([`Statement::sql_with`]) without searching the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    after_select: String,
}

impl Statement {
    fn select(after_select: String) -> Self {
        Statement { after_select }
    }

    /// The statement as it is.
    pub fn sql(&self) -> String {
        self.sql_with("", "")
    }

    /// The statement with `prefix` before it and `hint` right after `SELECT` (MySQL's optimizer hints);
    /// each empty or ending in a space.
    pub fn sql_with(&self, prefix: &str, hint: &str) -> String {
        format!("{prefix}SELECT {hint}{}", self.after_select)
    }
}

/// The statements of one scrape of a hub with a given schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeSql {
    /// Every worker with its arches and channels (the full metric set).
    pub workers: Statement,
    /// Every worker without the names (the reference metric set needs none).
    pub workers_only: Statement,
    /// Tasks by state, arch and channel.
    pub task_groups: Statement,
    /// ASSIGNED and OPEN tasks per worker.
    pub worker_tasks: Statement,
    /// The latest `dt_started` and `dt_finished`: where the task flow starts ([`task_flow_sql`]).
    pub flow_latest: Statement,
}

impl ScrapeSql {
    /// The statements for a hub with `schema`, in `dialect`.
    pub fn new(dialect: &Dialect, schema: &HubSchema) -> Self {
        ScrapeSql {
            workers: worker_sql(dialect, schema, true),
            workers_only: worker_sql(dialect, schema, false),
            task_groups: task_groups_sql(dialect),
            worker_tasks: worker_tasks_sql(),
            flow_latest: flow_latest_sql(dialect),
        }
    }
}

/// The `hub_worker` columns, each under its own name. Never `worker_key`: it is the worker's secret; never
/// `SELECT *`.
fn worker_columns(schema: &HubSchema) -> String {
    let min_priority = if schema.min_priority {
        "w.min_priority"
    } else {
        "NULL"
    };
    format!(
        "w.name AS name, w.enabled AS enabled, w.ready AS ready, w.current_load AS current_load, \
         w.max_load AS max_load, w.task_count AS task_count, w.max_tasks AS max_tasks, \
         {min_priority} AS min_priority"
    )
}

/// The one query per scrape that reads every worker, with the names of its arches and channels if
/// `names`. Names are sorted in Rust, not by the database's collation; a worker without arches gets NULL
/// (or an empty list), read as none.
fn worker_sql(dialect: &Dialect, schema: &HubSchema, names: bool) -> Statement {
    let columns = worker_columns(schema);
    if !names {
        return Statement::select(format!("{columns} FROM hub_worker w"));
    }
    let sql = match dialect.names {
        NamesAggregate::Joined(aggregate) => format!(
            "{columns}, wa.names AS arches, wc.names AS channels FROM hub_worker w \
             LEFT JOIN (SELECT wa.worker_id, {arches} AS names \
                        FROM hub_worker_arches wa JOIN hub_arch a ON a.id = wa.arch_id GROUP BY wa.worker_id) wa \
               ON wa.worker_id = w.id \
             LEFT JOIN (SELECT wc.worker_id, {channels} AS names \
                        FROM hub_worker_channels wc JOIN hub_channel c ON c.id = wc.channel_id GROUP BY wc.worker_id) wc \
               ON wc.worker_id = w.id",
            arches = aggregate("a.name"),
            channels = aggregate("c.name"),
        ),
        NamesAggregate::PerWorker(aggregate) => format!(
            "{columns}, \
             (SELECT {arches} FROM hub_worker_arches wa JOIN hub_arch a ON a.id = wa.arch_id \
              WHERE wa.worker_id = w.id) AS arches, \
             (SELECT {channels} FROM hub_worker_channels wc JOIN hub_channel c ON c.id = wc.channel_id \
              WHERE wc.worker_id = w.id) AS channels \
             FROM hub_worker w",
            arches = aggregate("a.name"),
            channels = aggregate("c.name"),
        ),
    };
    Statement::select(sql)
}

/// `IN (...)` list of these state codes.
fn codes(states: &[TaskState]) -> String {
    states
        .iter()
        .map(|s| s.code().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Active, non-archived tasks per (state, arch, channel, method): state, arch name, channel name, method,
/// count, and the oldest `dt_created` as text.
///
/// Counted per (state, arch id, channel id) first, then named: planners filter and group `hub_task` alone
/// (with the optional index, see the README) instead of joining every task row to its arch and channel,
/// which MariaDB did row by row (3 s instead of 0.1 s at 1M tasks without the index). Channels with the
/// same name give several rows; `kobo_backend_api::tasks::merge_groups` makes them one group.
///
/// The filter is written `archive = false` in lower case on purpose: SQLite uses a partial index only when
/// the query repeats the index's `WHERE archive = false` term as written (`FALSE` does not match).
fn task_groups_sql(dialect: &Dialect) -> Statement {
    Statement::select(format!(
        "t.state AS state, {arch} AS arch, {channel} AS channel, t.method AS method, t.n AS n, \
                {oldest} AS oldest \
         FROM (SELECT state, arch_id, channel_id, {method} AS method, count(*) AS n, \
                      min(dt_created) AS oldest FROM hub_task \
               WHERE archive = false AND state IN ({codes}) \
               GROUP BY state, arch_id, channel_id, {method}) t \
         JOIN hub_arch a ON a.id = t.arch_id JOIN hub_channel c ON c.id = t.channel_id",
        arch = (dialect.bytewise)("a.name"),
        channel = (dialect.bytewise)("c.name"),
        method = (dialect.bytewise)("method"),
        oldest = (dialect.datetime_as_text)("t.oldest"),
        codes = codes(&TaskState::ACTIVE),
    ))
}

/// ASSIGNED and OPEN non-archived tasks per (worker name, state). The tasks are grouped before the join,
/// and without a `worker_id IS NOT NULL` term (the join drops NULLs): either would invite SQLite to walk
/// the worker_id index row by row, 15 times slower than a scan.
fn worker_tasks_sql() -> Statement {
    Statement::select(format!(
        "w.name AS worker, t.state AS state, t.n AS n \
         FROM (SELECT state, worker_id, count(*) AS n FROM hub_task \
               WHERE archive = false AND state IN ({codes}) \
               GROUP BY state, worker_id) t \
         JOIN hub_worker w ON w.id = t.worker_id",
        codes = codes(&[TaskState::Assigned, TaskState::Open]),
    ))
}

/// The latest start and finish of any task: two index lookups where the indexes on `dt_started` and
/// `dt_finished` exist (README, "Task flow"), a scan where they do not; read once, at the first refresh.
fn flow_latest_sql(dialect: &Dialect) -> Statement {
    Statement::select(format!(
        "{started} AS started, {finished} AS finished",
        started = (dialect.datetime_as_text)("(SELECT max(dt_started) FROM hub_task)"),
        finished = (dialect.datetime_as_text)("(SELECT max(dt_finished) FROM hub_task)"),
    ))
}

/// The non-archived tasks that started or finished at or after `since` (a naive time, or UTC where the
/// dialect's datetimes are instants), with their method and channel: two index range scans where the
/// indexes on `dt_started` and `dt_finished` exist, so a refresh reads the tasks of its interval and
/// not the table. A task that did both is one row.
pub fn task_flow_sql(dialect: &Dialect, since: Micros) -> Statement {
    let since = (dialect.datetime_literal)(&naive_text(since));
    let text = dialect.datetime_as_text;
    Statement::select(format!(
        "t.id AS id, t.state AS state, {method} AS method, {channel} AS channel, \
         {created} AS created, {started} AS started, {finished} AS finished \
         FROM hub_task t JOIN hub_channel c ON c.id = t.channel_id \
         WHERE (t.dt_started >= {since} OR t.dt_finished >= {since}) AND t.archive = false",
        method = (dialect.bytewise)("t.method"),
        channel = (dialect.bytewise)("c.name"),
        created = text("t.dt_created"),
        started = text("t.dt_started"),
        finished = text("t.dt_finished"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_no_star_and_every_column_named() {
        let sql = ScrapeSql::new(
            &Dialect::SQLITE,
            &HubSchema {
                min_priority: false,
            },
        );
        let workers = sql.workers.sql();
        assert!(workers.contains("NULL AS min_priority"), "{workers}");
        assert!(workers.contains("AS arches") && workers.contains("AS channels"));
        assert!(!sql.workers_only.sql().contains("hub_arch"));
        let flow = task_flow_sql(&Dialect::SQLITE, 1_000_000);
        for statement in [
            &sql.workers,
            &sql.workers_only,
            &sql.task_groups,
            &sql.worker_tasks,
            &sql.flow_latest,
            &flow,
        ] {
            let text = statement.sql();
            assert!(text.starts_with("SELECT "), "{text}");
            assert!(!text.contains("worker_key"), "{text}");
            assert!(!text.contains("SELECT *"), "{text}");
        }
        assert!(
            sql.worker_tasks
                .sql_with("/* p */ ", "/*+ h */ ")
                .starts_with("/* p */ SELECT /*+ h */ w.name AS worker")
        );
    }

    #[test]
    fn dialect_parameters_land_where_they_belong() {
        let sql = ScrapeSql::new(&Dialect::POSTGRES, &HubSchema { min_priority: true });
        assert!(
            sql.workers
                .sql()
                .contains("array_agg(a.name::text) AS names")
        );
        let mysql = ScrapeSql::new(&Dialect::MYSQL, &HubSchema { min_priority: true });
        let binary = |column: &str| format!("CAST(CONVERT({column} USING utf8mb4) AS BINARY)");
        let groups = mysql.task_groups.sql();
        // Selected as bytes; same-named groups are merged in Rust, bytewise.
        assert!(
            groups.contains(&format!(
                "{} AS arch, {} AS channel",
                binary("a.name"),
                binary("c.name")
            )),
            "{groups}"
        );
        assert!(groups.contains("DATE_FORMAT(t.oldest, '%Y-%m-%d %H:%i:%s.%f') AS oldest"));
        assert!(
            !mysql.workers.sql().contains("BINARY"),
            "names of workers as JSON text"
        );
        let groups = sql.task_groups.sql();
        // Only active, non-archived tasks, and never one query per worker (no parameters).
        assert!(
            groups.contains("WHERE archive = false AND state IN (0, 1, 2, 8)"),
            "{groups}"
        );
        let per_worker = sql.worker_tasks.sql();
        assert!(per_worker.contains("WHERE archive = false AND state IN (1, 2)"));
        assert!(!groups.contains('?') && !per_worker.contains('?') && !groups.contains('$'));
        // The task flow's bound as each database compares it; SQLite's as Django writes the text.
        let since = 1_795_630_630_000_000;
        assert!(
            task_flow_sql(&Dialect::POSTGRES, since)
                .sql()
                .contains("t.dt_started >= TIMESTAMPTZ '2026-11-25 18:17:10+00' OR")
        );
        let flow = task_flow_sql(&Dialect::MYSQL, since + 5).sql();
        assert!(
            flow.contains("t.dt_finished >= '2026-11-25 18:17:10.000005')"),
            "{flow}"
        );
        assert!(
            flow.contains(&format!("{} AS method", binary("t.method"))),
            "{flow}"
        );
        assert!(
            groups.contains("GROUP BY state, arch_id, channel_id, method)"),
            "{groups}"
        );
    }
}
