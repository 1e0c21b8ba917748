//! The collection policy of a scrape: collect from the source within a deadline, share a collection in
//! flight between concurrent scrapes, answer from the last one within the minimum interval, back off
//! from a failing source, keep the task data between refreshes, count failures and time the collectors.
//! Turning the outcome into text is the [`Renderer`]'s.
//!
//! Time is tokio's clock ([`tokio::time::Instant`], `sleep_until`, `timeout_at`): tests with in-process
//! sources run it paused (`#[tokio::test(start_paused = true)]`) and check the deadlines exactly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kobo_backend_api::{CollectRequest, DataSource, HubSnapshot, Part, SourceError, TaskSummary};
use prometheus::proto::MetricFamily;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::exposition::Format;
use crate::metrics::MetricSet;
use crate::metrics::exporter::ExporterStatus;
use crate::metrics::flow::FlowTotals;
use crate::render::{Exposition, Renderer};

/// How the collector works.
#[derive(Debug, Clone)]
pub struct CollectorOptions {
    pub metrics: MetricSet,
    /// Whether to read task aggregates at all.
    pub task_metrics: bool,
    /// How long task data is reused before it is read again (0: every scrape).
    pub task_refresh_interval: Duration,
    /// The longest a collection may take; lowered per scrape to Prometheus' own scrape timeout (its
    /// `X-Prometheus-Scrape-Timeout-Seconds` header) minus [`TIMEOUT_MARGIN`].
    pub scrape_timeout: Duration,
    /// A scrape within this time after the last collection is answered from it (0: never).
    pub min_scrape_interval: Duration,
    /// After failed collections the source is left alone for 1 s, then 2 s, 4 s, ... up to this (0: retry
    /// at every scrape), so that a down database or hub is not hammered; scrapes meanwhile get `kobo_up 0`.
    pub reconnect_backoff_max: Duration,
    /// The upper bounds (seconds) of the wait and run histograms' buckets.
    pub task_duration_buckets: Vec<f64>,
    /// How many methods get a label value of their own in the task families; later ones are `(other)`.
    pub max_task_methods: usize,
}

impl Default for CollectorOptions {
    fn default() -> Self {
        CollectorOptions {
            metrics: MetricSet::All,
            task_metrics: true,
            task_refresh_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            min_scrape_interval: Duration::ZERO,
            reconnect_backoff_max: Duration::from_secs(10),
            task_duration_buckets: crate::metrics::flow::DEFAULT_BUCKETS.to_vec(),
            max_task_methods: crate::metrics::flow::DEFAULT_MAX_METHODS,
        }
    }
}

/// Kept off Prometheus' scrape timeout, for rendering and sending the answer.
pub const TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// The shortest deadline a scrape gets, whatever Prometheus asks for.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);

pub use crate::render::{Outcome, ScrapeError};

/// Collects from a source for every scrape.
pub struct HubCollector {
    source: Arc<dyn DataSource>,
    options: CollectorOptions,
    /// Held for the whole of a collection: one collection at a time; what is kept between them.
    collection: tokio::sync::Mutex<Cache>,
    /// The exporter's own numbers; held only briefly, so that a scrape can answer while a collection is stuck.
    stats: Mutex<Stats>,
    /// Turns outcomes into exposition text.
    renderer: Renderer,
    /// The task flow since the start, and the methods' label values; `None` before the first task refresh.
    flow: Mutex<Option<FlowTotals>>,
    /// Set by [`shut_down`](Self::shut_down): when collections still running are abandoned.
    shutdown: watch::Sender<Option<Instant>>,
    /// The hub's name, for a named hub (`kobo.hubs.<name>`): in log lines and error messages.
    hub: Option<String>,
}

#[derive(Default)]
struct Cache {
    tasks: Option<(TaskSummary, Instant)>,
    last_task_attempt: Option<Instant>,
    /// The last collection: when it ended, and what it gave.
    last: Option<(Instant, Outcome)>,
    /// Failed collections in a row, and when the source may be tried again.
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Default)]
struct Stats {
    /// Whether the last collection succeeded; `None` before the first.
    up: Option<bool>,
    durations: BTreeMap<Part, f64>,
    errors: BTreeMap<Part, u64>,
    task_data_at: Option<Instant>,
}

impl HubCollector {
    /// The collector of the hub `/metrics` serves: its exposition has the process metrics.
    pub fn new(source: Arc<dyn DataSource>, options: CollectorOptions) -> Self {
        let renderer = Renderer::new(options.metrics);
        HubCollector::with_renderer(source, options, renderer)
    }

    /// The collector of the named hub `hub`, served on `/probe`: no `process_*` families (they are the
    /// process's, on `/metrics`); its log lines and error messages name the hub.
    pub fn for_probe(source: Arc<dyn DataSource>, options: CollectorOptions, hub: &str) -> Self {
        let renderer = Renderer::without_process_metrics(options.metrics);
        HubCollector {
            hub: Some(hub.to_string()),
            ..HubCollector::with_renderer(source, options, renderer)
        }
    }

    fn with_renderer(
        source: Arc<dyn DataSource>,
        options: CollectorOptions,
        renderer: Renderer,
    ) -> Self {
        let mut stats = Stats::default();
        // Counters exist from the start, at 0, as Prometheus practice wants.
        stats.errors.insert(Part::Workers, 0);
        if options.task_metrics && options.metrics == MetricSet::All {
            stats.errors.insert(Part::Tasks, 0);
        }
        HubCollector {
            source,
            renderer,
            options,
            collection: tokio::sync::Mutex::new(Cache::default()),
            stats: Mutex::new(stats),
            flow: Mutex::new(None),
            shutdown: watch::Sender::new(None),
            hub: None,
        }
    }

    /// The exporter is shutting down: collections still running `within` from now (and any started
    /// after that) are abandoned, and their scrapes answered at once as failed (`kobo_up 0`), so that
    /// every scrape in flight gets an answer before the server closes its connections.
    pub fn shut_down(&self, within: Duration) {
        let at = Instant::now() + within;
        self.shutdown.send_if_modified(|current| match current {
            Some(earlier) if *earlier <= at => false,
            _ => {
                *current = Some(at);
                true
            }
        });
    }

    /// Resolves when collections are to be abandoned ([`shut_down`](Self::shut_down)); never before.
    async fn abandoned(&self) {
        let mut receiver = self.shutdown.subscribe();
        let at = match receiver.wait_for(Option::is_some).await {
            Ok(at) => *at,
            // The sender lives as long as the collector.
            Err(_) => None,
        };
        match at {
            Some(at) => sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    pub fn source(&self) -> &dyn DataSource {
        self.source.as_ref()
    }

    /// `the postgres source`, or `the postgres source of hub pub-prod` for a named hub.
    fn source_name(&self) -> String {
        match &self.hub {
            Some(hub) => format!("the {} source of hub {hub}", self.source.kind()),
            None => format!("the {} source", self.source.kind()),
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        // The stats are plain numbers: one left half-updated by a panic is still fine to serve.
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A collection that gave no snapshot, after `took`: logged, counted and timed as the workers'.
    fn collection_failed(&self, message: &str, took: Duration) {
        log::error!("{message}");
        let mut stats = self.stats();
        *stats.errors.entry(Part::Workers).or_default() += 1;
        stats.durations.insert(Part::Workers, took.as_secs_f64());
    }

    fn count_error(&self, part: Part) {
        *self.stats().errors.entry(part).or_default() += 1;
    }

    /// Whether the last collection succeeded (`None`: none has run yet).
    pub fn last_collection_succeeded(&self) -> Option<bool> {
        self.stats().up
    }

    /// The deadline for a scrape that arrived at `arrived`, given Prometheus' scrape timeout if it sent one.
    pub fn deadline(&self, arrived: Instant, prometheus_timeout: Option<Duration>) -> Instant {
        let mut budget = self.options.scrape_timeout;
        if let Some(requested) = prometheus_timeout {
            budget = budget.min(requested.saturating_sub(TIMEOUT_MARGIN).max(MIN_TIMEOUT));
        }
        arrived + budget
    }

    /// Collects (or shares a collection in flight) and renders. With the full metric set a failed or timed
    /// out collection still gives metrics (`kobo_up 0` and the exporter's own); with the reference set it
    /// is an error.
    pub async fn scrape(
        &self,
        prometheus_timeout: Option<Duration>,
    ) -> Result<String, ScrapeError> {
        self.scrape_as(prometheus_timeout, Format::Text).await
    }

    /// [`scrape`](Self::scrape) in the given exposition format.
    pub async fn scrape_as(
        &self,
        prometheus_timeout: Option<Duration>,
        format: Format,
    ) -> Result<String, ScrapeError> {
        self.scrape_with(prometheus_timeout, format, &[]).await
    }

    /// [`scrape_as`](Self::scrape_as), with process-wide families after the exporter's own (full set).
    pub async fn scrape_with(
        &self,
        prometheus_timeout: Option<Duration>,
        format: Format,
        process_wide: &[MetricFamily],
    ) -> Result<String, ScrapeError> {
        self.scrape_exposition(prometheus_timeout, format, process_wide)
            .await
            .map(Exposition::into_string)
    }

    /// [`scrape_with`](Self::scrape_with), as the pieces it was written in (what `/metrics` gzips without
    /// making the whole text).
    pub async fn scrape_exposition(
        &self,
        prometheus_timeout: Option<Duration>,
        format: Format,
        process_wide: &[MetricFamily],
    ) -> Result<Exposition, ScrapeError> {
        let arrived = Instant::now();
        let outcome = self
            .outcome(arrived, self.deadline(arrived, prometheus_timeout))
            .await;
        self.render(&outcome, format, process_wide)
    }

    /// One collection for the command line (`--check-config`, `--once`): the number of workers read and
    /// the text in `format`, or the collection's error message (a failed collection is an error here, not
    /// `kobo_up 0`).
    pub async fn collect_once(&self, format: Format) -> Result<(usize, String), ScrapeError> {
        let arrived = Instant::now();
        let outcome = self.outcome(arrived, self.deadline(arrived, None)).await;
        match &outcome {
            Ok(snapshot) => {
                let text = self.render(&outcome, format, &[])?;
                Ok((snapshot.workers.len(), text.into_string()))
            }
            Err(message) => Err(ScrapeError(message.clone())),
        }
    }

    /// Makes sure a collection has run (for readiness checks before the first scrape).
    pub async fn ensure_collected(&self) {
        if self.last_collection_succeeded().is_none() {
            let arrived = Instant::now();
            // Its outcome is recorded in the stats, which is all a readiness check reads.
            let _outcome = self.outcome(arrived, self.deadline(arrived, None)).await;
        }
    }

    /// The outcome for a scrape ([`outcome_by`](Self::outcome_by)), or a failure as soon as the exporter
    /// shuts down ([`shut_down`](Self::shut_down)): the collection in flight is abandoned.
    async fn outcome(&self, arrived: Instant, deadline: Instant) -> Outcome {
        tokio::select! {
            outcome = self.outcome_by(arrived, deadline) => outcome,
            () = self.abandoned() => {
                self.count_error(Part::Workers);
                self.stats().up = Some(false);
                let message = format!(
                    "the exporter is shutting down: the collection from {} was abandoned",
                    self.source_name()
                );
                log::warn!("{message}");
                Err(message)
            }
        }
    }

    /// The outcome for a scrape: a collection that ended after the scrape arrived (it was in flight) or
    /// within the minimum interval is shared; otherwise a new one, bounded by the deadline.
    async fn outcome_by(&self, arrived: Instant, deadline: Instant) -> Outcome {
        let budget = deadline.saturating_duration_since(arrived);
        let Ok(mut cache) = timeout_at(deadline, self.collection.lock()).await else {
            self.count_error(Part::Workers);
            self.stats().up = Some(false);
            let message =
                format!("no answer within {budget:?}: the collection in flight is still running");
            log::error!("{message}");
            return Err(message);
        };
        if let Some((ended, outcome)) = &cache.last
            && (*ended > arrived || ended.elapsed() < self.options.min_scrape_interval)
        {
            return outcome.clone();
        }
        if let Some(retry_at) = cache.retry_at.filter(|at| *at > Instant::now()) {
            let message = format!(
                "{} failed {} time(s) in a row; it is tried again in {:.1} s",
                self.source_name(),
                cache.failures,
                retry_at
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
            );
            self.count_error(Part::Workers);
            self.stats().up = Some(false);
            let outcome = Err(message);
            cache.last = Some((Instant::now(), outcome.clone()));
            return outcome;
        }
        let started = Instant::now();
        let outcome = match timeout_at(deadline, self.collect(&mut cache, deadline)).await {
            Ok(Ok(snapshot)) => Ok(Arc::new(snapshot)),
            Ok(Err(message)) => Err(message),
            Err(_) => {
                let message = format!(
                    "collecting from {} took longer than {budget:?}; abandoned",
                    self.source_name()
                );
                self.collection_failed(&message, started.elapsed());
                Err(message)
            }
        };
        {
            let mut stats = self.stats();
            stats.up = Some(outcome.is_ok());
            stats.task_data_at = cache.tasks.as_ref().map(|(_, at)| *at);
        }
        if outcome.is_ok() {
            cache.failures = 0;
            cache.retry_at = None;
        } else {
            cache.failures = cache.failures.saturating_add(1);
            let backoff = Duration::from_secs(1u64 << cache.failures.min(16).saturating_sub(1))
                .min(self.options.reconnect_backoff_max);
            cache.retry_at = (!backoff.is_zero()).then(|| Instant::now() + backoff);
        }
        cache.last = Some((Instant::now(), outcome.clone()));
        outcome
    }

    /// The exposition of `outcome` with the exporter's own status.
    fn render(
        &self,
        outcome: &Outcome,
        format: Format,
        process_wide: &[MetricFamily],
    ) -> Result<Exposition, ScrapeError> {
        let status = {
            let stats = self.stats();
            ExporterStatus {
                up: outcome.is_ok(),
                source: self.source.kind(),
                durations: stats.durations.clone(),
                errors: stats.errors.clone(),
                task_data_age: match outcome {
                    Ok(snapshot) if snapshot.tasks.is_some() => {
                        stats.task_data_at.map(|at| at.elapsed().as_secs_f64())
                    }
                    _ => None,
                },
            }
        };
        let flow = self.flow.lock().unwrap_or_else(PoisonError::into_inner);
        let flow = flow.as_ref().filter(|totals| totals.counting());
        self.renderer
            .render(outcome, &status, flow, format, process_wide)
    }

    /// Adds a task refresh's flow to the totals, and gives its counts by method their label values (the
    /// methods beyond the limit as one).
    fn count_flow(&self, snapshot: &mut HubSnapshot) {
        let mut totals = self.flow.lock().unwrap_or_else(PoisonError::into_inner);
        let totals = totals.get_or_insert_with(|| {
            FlowTotals::new(
                self.options.task_duration_buckets.clone(),
                self.options.max_task_methods,
            )
        });
        if let Some(tasks) = &mut snapshot.tasks {
            tasks.by_method = totals.label_methods(std::mem::take(&mut tasks.by_method));
        }
        if let Some(flow) = snapshot.flow.take() {
            totals.add(&flow);
        }
    }

    /// Reads the source, refreshing the task data when it is due; the error is the message to report.
    async fn collect(&self, cache: &mut Cache, deadline: Instant) -> Result<HubSnapshot, String> {
        let wants_tasks = self.options.task_metrics && self.options.metrics == MetricSet::All;
        let refresh_due = wants_tasks
            && cache
                .last_task_attempt
                .is_none_or(|at| at.elapsed() >= self.options.task_refresh_interval);
        let started = Instant::now();
        let request = CollectRequest {
            deadline,
            tasks: refresh_due,
            metrics: self.options.metrics,
        };
        let result = if refresh_due {
            cache.last_task_attempt = Some(started);
            match self.source.collect(&request).await {
                Ok(snapshot) => Ok(snapshot),
                // The source is unreachable: the workers cannot be read either, and the task data is due
                // again as soon as it is back.
                Err(e @ SourceError::Connect { .. }) => {
                    cache.last_task_attempt = None;
                    Err(e)
                }
                Err(e) => {
                    // No stale task numbers: they are dropped until the next refresh works. The workers are
                    // still worth a try.
                    log::error!("collecting tasks from {} failed: {e}", self.source_name());
                    self.count_error(Part::Tasks);
                    cache.tasks = None;
                    let workers = self.source.collect(&request.tasks(false)).await;
                    if workers.is_err() {
                        cache.last_task_attempt = None;
                    }
                    workers
                }
            }
        } else {
            self.source.collect(&request).await
        };
        let elapsed = started.elapsed();
        let mut snapshot = match result {
            Ok(snapshot) => snapshot,
            Err(e) => {
                let message = format!("collecting from {} failed: {e}", self.source_name());
                self.collection_failed(&message, elapsed);
                return Err(message);
            }
        };
        {
            let mut stats = self.stats();
            if snapshot.timings.is_empty() {
                stats.durations.insert(Part::Workers, elapsed.as_secs_f64());
            }
            for (part, duration) in &snapshot.timings {
                stats.durations.insert(*part, duration.as_secs_f64());
            }
            for warning in &snapshot.warnings {
                match &self.hub {
                    Some(hub) => log::warn!("hub {hub}: {warning}"),
                    None => log::warn!("{warning}"),
                }
                *stats.errors.entry(warning.part).or_default() += 1;
            }
        }
        if refresh_due {
            self.count_flow(&mut snapshot);
            if let Some(tasks) = &snapshot.tasks {
                cache.tasks = Some((tasks.clone(), started));
            }
        } else if let Some((tasks, _)) = &cache.tasks {
            snapshot.tasks = Some(tasks.clone());
        }
        Ok(snapshot)
    }
}
