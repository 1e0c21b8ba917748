//! [`SqlSource`]: a [`DataSource`] over any [`Driver`]. The reading of a hub written once for every
//! database: the schema checked on first use (and again after any error), the worker query alone or,
//! for a task refresh, with the task aggregates in one snapshot transaction, last seen listed beside it,
//! the scrape's deadline over all of it, and the statement in flight cancelled where it runs when the
//! deadline passes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant as Clock;

use async_trait::async_trait;
use kobo_backend_api::flow::{Cursor, FlowRead};
use kobo_backend_api::normalise::HubSchema;
use kobo_backend_api::secrets::ErrorContext;
use kobo_backend_api::worker_dir::LastSeenTask;
use kobo_backend_api::{
    CollectRequest, DataSource, FlowTracker, HubSnapshot, HubZone, Micros, Part, SourceError,
    TaskCount, TaskFlow, TaskFlowOptions, TaskRow, TaskSummary, WorkerDir, WorkerRecord,
    WorkerTaskCount,
};
use tokio::time::timeout_at;

use crate::decode::LatestFlow;
use crate::driver::{Connection, Driver, DriverError};
use crate::sql::{ScrapeSql, task_flow_sql};

/// A kobo hub's database, read through driver `D`.
pub struct SqlSource<D: Driver> {
    driver: Arc<D>,
    context: ErrorContext,
    worker_dir: Option<WorkerDir>,
    /// The statements for the schema found at the first collection; forgotten after any error, so that
    /// the schema is checked again.
    queries: Mutex<Option<ScrapeSql>>,
    /// Where the task flow's reads are.
    flow: FlowTracker,
}

/// A collection's snapshot, and the task-flow cursor to keep once it is known to have succeeded.
type Read = (HubSnapshot, Option<Cursor>);

impl<D: Driver> SqlSource<D> {
    /// A source reading through `driver`; errors name `context`'s target.
    pub fn with_driver(driver: D, context: ErrorContext, worker_dir: Option<WorkerDir>) -> Self {
        SqlSource {
            driver: Arc::new(driver),
            context,
            worker_dir,
            queries: Mutex::new(None),
            flow: TaskFlowOptions::default().tracker(),
        }
    }

    /// The source reading the task flow with `options` (its zone only where the database's datetimes are
    /// naive).
    pub fn with_task_flow(mut self, options: &TaskFlowOptions) -> Self {
        let mut options = options.clone();
        if !D::DIALECT.naive_datetimes {
            options.time_zone = HubZone::utc();
        }
        self.flow = options.tracker();
        self
    }

    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// Where errors happen (the redacted URL, or a path).
    pub fn target(&self) -> &str {
        self.context.target()
    }

    fn cached_queries(&self) -> Option<ScrapeSql> {
        self.queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_queries(&self, queries: Option<ScrapeSql>) {
        *self.queries.lock().unwrap_or_else(PoisonError::into_inner) = queries;
    }

    fn error(&self, error: DriverError) -> SourceError {
        match error {
            DriverError::Connect(message) => self.context.connect(message),
            DriverError::Query(message) => self.context.query(message),
            DriverError::Data(message) => self.context.data(message),
        }
    }

    /// One collection: a connection, the statements on it, last seen beside them. The connection goes
    /// back for reuse only after a complete collection; after an error it is closed; and if this future
    /// is dropped with a statement in flight (the deadline), the statement is cancelled on the server.
    async fn read(
        &self,
        request: &CollectRequest,
        connected: &AtomicBool,
    ) -> Result<Read, SourceError> {
        // Last seen is listed on the blocking pool while the database answers.
        let last_seen = LastSeenTask::spawn(self.worker_dir.as_ref());
        let mut conn = self
            .driver
            .connect(request.deadline)
            .await
            .map_err(|e| self.error(e))?;
        connected.store(true, Ordering::Relaxed);
        let cancel = CancelOnDrop {
            driver: Arc::clone(&self.driver),
            handle: Some(conn.cancel_handle()),
        };
        let result = self.read_on(&mut conn, request).await;
        cancel.disarm();
        let (mut snapshot, cursor) = match result {
            Ok(read) => {
                conn.release();
                read
            }
            Err(e) => {
                conn.discard();
                return Err(e);
            }
        };
        last_seen.apply(&mut snapshot).await;
        Ok((snapshot, cursor))
    }

    /// The statements of one collection on `conn`.
    async fn read_on(
        &self,
        conn: &mut D::Conn,
        request: &CollectRequest,
    ) -> Result<Read, SourceError> {
        let deadline = request.deadline;
        let queries = match self.cached_queries() {
            Some(queries) if !conn.schema_may_differ() => queries,
            _ => {
                let catalog = conn.catalog(deadline).await.map_err(|e| self.error(e))?;
                let schema = HubSchema::check(&catalog.tables, &catalog.worker_columns).map_err(
                    |message| {
                        let note = match message.starts_with("table") {
                            true => self.driver.missing_table_note(),
                            false => "",
                        };
                        self.context.schema(format!("{message}{note}"))
                    },
                )?;
                let queries = ScrapeSql::new(&D::DIALECT, &schema);
                self.set_queries(Some(queries.clone()));
                queries
            }
        };
        let workers = match request.wants_names() {
            true => &queries.workers,
            false => &queries.workers_only,
        };
        let error = |e| self.error(e);
        // The worker query alone is its own snapshot: no transaction round trips without task data.
        if request.tasks {
            let begin = D::DIALECT.begin_snapshot;
            conn.execute(begin, deadline).await.map_err(error)?;
        }
        let started = Clock::now();
        let workers = conn
            .fetch::<WorkerRecord>(workers, deadline)
            .await
            .map_err(error)?;
        let mut timings = vec![(Part::Workers, started.elapsed())];
        if !request.tasks {
            return Ok((HubSnapshot::from_read(workers, None, timings), None));
        }
        let started = Clock::now();
        let zone = self.flow.zone();
        let counts = conn
            .fetch::<TaskCount>(&queries.task_groups, deadline)
            .await
            .map_err(error)?
            .into_iter()
            .map(|count| TaskCount {
                group: count.group.in_zone(zone),
                ..count
            })
            .collect();
        let per_worker = conn
            .fetch::<WorkerTaskCount>(&queries.worker_tasks, deadline)
            .await
            .map_err(error)?;
        let (flow, cursor) = self.read_flow(conn, &queries, deadline).await?;
        timings.push((Part::Tasks, started.elapsed()));
        conn.execute("COMMIT", deadline).await.map_err(error)?;
        let tasks = Some(TaskSummary::from_counts(counts, per_worker));
        let mut snapshot = HubSnapshot::from_read(workers, tasks, timings);
        snapshot.flow = Some(flow);
        Ok((snapshot, Some(cursor)))
    }

    /// The tasks that started or finished since the last refresh (see [`FlowTracker`]), in the snapshot
    /// transaction of the task aggregates.
    async fn read_flow(
        &self,
        conn: &mut D::Conn,
        queries: &ScrapeSql,
        deadline: tokio::time::Instant,
    ) -> Result<(TaskFlow, Cursor), SourceError> {
        let error = |e| self.error(e);
        let zone = self.flow.zone();
        let now = unix_now();
        let read = self.flow.next_read(now);
        let (since, latest) = match read {
            FlowRead::Since(since) => (Some(since), None),
            FlowRead::Baseline => {
                let latest = conn
                    .fetch::<LatestFlow>(&queries.flow_latest, deadline)
                    .await
                    .map_err(error)?
                    .first()
                    .and_then(|latest| latest.0)
                    .map(|naive| zone.instant(naive));
                (self.flow.baseline_since(latest, now), latest)
            }
        };
        let rows = match since {
            None => Vec::new(),
            Some(since) => {
                let statement = task_flow_sql(&D::DIALECT, zone.naive(since));
                conn.fetch::<TaskRow>(&statement, deadline)
                    .await
                    .map_err(error)?
                    .into_iter()
                    .map(|row| row.in_zone(zone))
                    .collect()
            }
        };
        Ok(self.flow.advance(read, since, latest, &rows))
    }
}

/// The exporter's clock in microseconds since the epoch.
fn unix_now() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(Micros::MAX)
        })
}

/// Cancels the connection's statement in the background unless disarmed: dropped with the collection's
/// future at the deadline, it stops the work on the server instead of leaving it to run.
struct CancelOnDrop<D: Driver> {
    driver: Arc<D>,
    handle: Option<<D::Conn as Connection>::Cancel>,
}

impl<D: Driver> CancelOnDrop<D> {
    fn disarm(mut self) {
        self.handle = None;
    }
}

impl<D: Driver> Drop for CancelOnDrop<D> {
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let driver = Arc::clone(&self.driver);
        runtime.spawn(async move {
            if let Err(e) = driver.cancel(handle).await {
                log::warn!(
                    "could not cancel the abandoned statement on the {} source: {e}",
                    D::DIALECT.kind
                );
            }
        });
    }
}

#[async_trait]
impl<D: Driver> DataSource for SqlSource<D> {
    fn kind(&self) -> &'static str {
        D::DIALECT.kind
    }

    fn describe(&self) -> String {
        format!("{} {}", D::DIALECT.database, self.context.target())
    }

    async fn collect(&self, request: &CollectRequest) -> Result<HubSnapshot, SourceError> {
        let started = tokio::time::Instant::now();
        let connected = AtomicBool::new(false);
        let result = match timeout_at(request.deadline, self.read(request, &connected)).await {
            Ok(result) => result,
            Err(_) => {
                let budget = request.deadline.saturating_duration_since(started);
                Err(match connected.load(Ordering::Relaxed) {
                    false => self.context.connect(format!(
                        "no connection within the collection's deadline ({} s)",
                        budget.as_secs_f64()
                    )),
                    true => self.context.query(format!(
                        "no answer within the collection's deadline ({} s): the statement was cancelled",
                        budget.as_secs_f64()
                    )),
                })
            }
        };
        match result {
            Ok((snapshot, cursor)) => {
                if let Some(cursor) = cursor {
                    self.flow.commit(cursor);
                }
                Ok(snapshot)
            }
            Err(e) => {
                // The hub may have been migrated or replaced: check the schema again next time.
                self.set_queries(None);
                Err(e)
            }
        }
    }
}
