//! One scrape: collect from the source, keep the task data between refreshes, count failures and time the
//! collectors, and render the exposition text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kobo_backend_api::{DataSource, HubSnapshot, TaskSummary};
use prometheus::process_collector::ProcessCollector;

use crate::exposition;
use crate::metrics::exporter::{self, ExporterStatus};
use crate::metrics::{hub_families, MetricSet};

/// How the collector works.
#[derive(Debug, Clone)]
pub struct CollectorOptions {
    pub metrics: MetricSet,
    /// Whether to read task aggregates at all.
    pub task_metrics: bool,
    /// How long task data is reused before it is read again (0: every scrape).
    pub task_refresh_interval: Duration,
}

impl Default for CollectorOptions {
    fn default() -> Self {
        CollectorOptions {
            metrics: MetricSet::All,
            task_metrics: true,
            task_refresh_interval: Duration::from_secs(60),
        }
    }
}

/// A scrape that could not be answered with metrics (only in the reference set, which has no `kobo_up`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeError(pub String);

/// Collects from a source for every scrape.
pub struct HubCollector {
    source: Arc<dyn DataSource>,
    options: CollectorOptions,
    /// One collection at a time; what is kept between scrapes.
    state: tokio::sync::Mutex<State>,
    process: Option<ProcessCollector>,
}

#[derive(Default)]
struct State {
    tasks: Option<(TaskSummary, Instant)>,
    last_task_attempt: Option<Instant>,
    durations: BTreeMap<&'static str, f64>,
    errors: BTreeMap<&'static str, u64>,
}

impl HubCollector {
    pub fn new(source: Arc<dyn DataSource>, options: CollectorOptions) -> Self {
        let mut state = State::default();
        // Counters exist from the start, at 0, as Prometheus practice wants.
        state.errors.insert("workers", 0);
        if options.task_metrics && options.metrics == MetricSet::All {
            state.errors.insert("tasks", 0);
        }
        HubCollector {
            source,
            options,
            state: tokio::sync::Mutex::new(state),
            process: cfg!(target_os = "linux").then(ProcessCollector::for_self),
        }
    }

    pub fn source(&self) -> &dyn DataSource {
        self.source.as_ref()
    }

    /// Collects and renders. With the full metric set a failed collection still gives metrics (`kobo_up 0`
    /// and the exporter's own); with the reference set it is an error.
    pub async fn scrape(&self) -> Result<String, ScrapeError> {
        let mut state = self.state.lock().await;
        let snapshot = self.collect(&mut state).await;
        let set = self.options.metrics;
        let mut families = match (&snapshot, set) {
            (Ok(snapshot), _) => hub_families(snapshot, set),
            (Err(message), MetricSet::Reference) => return Err(ScrapeError(message.clone())),
            (Err(_), MetricSet::All) => Vec::new(),
        };
        if set == MetricSet::All {
            let status = ExporterStatus {
                up: snapshot.is_ok(),
                source: self.source.kind(),
                durations: state.durations.clone(),
                errors: state.errors.clone(),
                task_data_age: state
                    .tasks
                    .as_ref()
                    .map(|(_, at)| at.elapsed().as_secs_f64()),
            };
            families.extend(exporter::families(&status, self.process.as_ref()));
        }
        exposition::encode(&families)
            .map_err(|e| ScrapeError(format!("rendering the metrics failed: {e}")))
    }

    /// Reads the source, refreshing the task data when it is due; the error is the message to report.
    async fn collect(&self, state: &mut State) -> Result<HubSnapshot, String> {
        let wants_tasks = self.options.task_metrics && self.options.metrics == MetricSet::All;
        let refresh_due = wants_tasks
            && state
                .last_task_attempt
                .is_none_or(|at| at.elapsed() >= self.options.task_refresh_interval);
        let started = Instant::now();
        let result = if refresh_due {
            state.last_task_attempt = Some(started);
            match self.source.collect_with_tasks().await {
                Ok(snapshot) => Ok(snapshot),
                Err(e) => {
                    // No stale task numbers: they are dropped until the next refresh works. The workers are
                    // still worth a try.
                    log::error!(
                        "collecting tasks from the {} source failed: {e}",
                        self.source.kind()
                    );
                    *state.errors.entry("tasks").or_default() += 1;
                    state.tasks = None;
                    self.source.collect().await
                }
            }
        } else {
            self.source.collect().await
        };
        let elapsed = started.elapsed();
        let mut snapshot = match result {
            Ok(snapshot) => snapshot,
            Err(e) => {
                let message = format!(
                    "collecting from the {} source failed: {e}",
                    self.source.kind()
                );
                log::error!("{message}");
                *state.errors.entry("workers").or_default() += 1;
                state.durations.insert("workers", elapsed.as_secs_f64());
                return Err(message);
            }
        };
        if snapshot.timings.is_empty() {
            state.durations.insert("workers", elapsed.as_secs_f64());
        }
        for (collector, duration) in &snapshot.timings {
            state.durations.insert(collector, duration.as_secs_f64());
        }
        for warning in &snapshot.warnings {
            log::warn!("{warning}");
            *state.errors.entry(warning_collector(warning)).or_default() += 1;
        }
        if refresh_due {
            if let Some(tasks) = &snapshot.tasks {
                state.tasks = Some((tasks.clone(), started));
            }
        } else if let Some((tasks, _)) = &state.tasks {
            snapshot.tasks = Some(tasks.clone());
        }
        Ok(snapshot)
    }
}

/// The collector a source's warning belongs to.
fn warning_collector(warning: &str) -> &'static str {
    if warning.starts_with(kobo_backend_api::worker_dir::WARNING_PREFIX) {
        "last_seen"
    } else {
        "workers"
    }
}
