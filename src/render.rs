//! Rendering: a collection's outcome (the snapshot or the error) and the exporter's status to exposition
//! text, group by group, reusing the encoding of groups whose inputs did not change since the last scrape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use kobo_backend_api::HubSnapshot;
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::MetricFamily;

use crate::exposition::Format;
use crate::metrics::exporter::{self, ExporterStatus};
use crate::metrics::flow::FlowTotals;
use crate::metrics::{FamilySink, MetricSet, flow_families, hub_family_groups};

/// What one collection gave: the snapshot or the error message; shared by the scrapes that use it.
pub type Outcome = Result<Arc<HubSnapshot>, String>;

/// A scrape that could not be answered with metrics (only in the reference set, which has no `kobo_up`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeError(pub String);

/// Renders the metric set it was made for; owns the encoding cache and the process metrics.
pub struct Renderer {
    set: MetricSet,
    process: Option<ProcessCollector>,
    /// The size of the last exposition: the next one's buffer is allocated at once.
    last_size: AtomicUsize,
    /// The encoding of each keyed group of families ([`FamilySink::keyed`]) with its key and format.
    reused: Mutex<HashMap<&'static str, (u64, Format, String)>>,
}

impl Renderer {
    pub fn new(set: MetricSet) -> Self {
        Renderer {
            process: cfg!(target_os = "linux").then(ProcessCollector::for_self),
            ..Renderer::without_process_metrics(set)
        }
    }

    /// A renderer whose exposition has no `process_*` families: a named hub's, probed with the other
    /// hubs of the process (the process metrics are on `/metrics` once).
    pub fn without_process_metrics(set: MetricSet) -> Self {
        Renderer {
            set,
            process: None,
            last_size: AtomicUsize::new(0),
            reused: Mutex::new(HashMap::new()),
        }
    }

    /// The exposition of `outcome` in `format`: the hub's families, then (full set) the exporter's own
    /// from `status` and the process-wide ones given (`/metrics`' reload status), with the task flow's
    /// between them. With the full set a failed collection still gives metrics (`kobo_up 0`); with the
    /// reference set it is an error. Written group by group ([`hub_family_groups`]) into a buffer of the
    /// last one's size.
    pub fn render(
        &self,
        outcome: &Outcome,
        status: &ExporterStatus,
        flow: Option<&FlowTotals>,
        format: Format,
        process_wide: &[MetricFamily],
    ) -> Result<String, ScrapeError> {
        let failed =
            |e: prometheus::Error| ScrapeError(format!("rendering the metrics failed: {e}"));
        let mut sink = EncodingSink {
            format,
            out: String::with_capacity(self.last_size.load(Ordering::Relaxed) + 4096),
            reused: &self.reused,
        };
        match (outcome, self.set) {
            (Ok(snapshot), set) => {
                hub_family_groups(snapshot, set, &mut sink).map_err(failed)?;
                // Only with the hub's: `kobo_up 0` serves no hub metric. The counters resume where
                // they were when the hub is back.
                if let (Some(flow), MetricSet::All) = (flow, set) {
                    flow_families(flow, &mut sink).map_err(failed)?;
                }
            }
            (Err(message), MetricSet::Reference) => return Err(ScrapeError(message.clone())),
            (Err(_), MetricSet::All) => {}
        }
        if self.set == MetricSet::All {
            sink.families(exporter::families(status, self.process.as_ref()))
                .map_err(failed)?;
            sink.families(process_wide.to_vec()).map_err(failed)?;
        }
        let mut out = sink.out;
        format.finish(&mut out);
        self.last_size.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }
}

/// Encodes the families into `out`, reusing the encoding of a keyed group whose key and format are those of
/// the last scrape (between task refreshes, on a hub whose workers' arches and channels did not change).
struct EncodingSink<'a> {
    format: Format,
    out: String,
    reused: &'a Mutex<HashMap<&'static str, (u64, Format, String)>>,
}

impl FamilySink for EncodingSink<'_> {
    type Error = prometheus::Error;

    fn families(&mut self, families: Vec<MetricFamily>) -> Result<(), prometheus::Error> {
        self.format.encode_into(&families, &mut self.out)
    }

    fn keyed(
        &mut self,
        group: &'static str,
        key: u64,
        build: &dyn Fn() -> Vec<MetricFamily>,
    ) -> Result<(), prometheus::Error> {
        let mut reused = self.reused.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, format, text)) = reused.get(group)
            && *k == key
            && *format == self.format
        {
            self.out.push_str(text);
            return Ok(());
        }
        let mut text = String::new();
        self.format.encode_into(&build(), &mut text)?;
        self.out.push_str(&text);
        reused.insert(group, (key, self.format, text));
        Ok(())
    }
}
