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

/// An exposition as the pieces it was written in: the groups whose encoding was reused are shared with the
/// renderer's cache, not copied, so a gzipped answer ([`Exposition::gzip`]) is compressed from the pieces
/// and the whole text never exists at once.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    Owned(String),
    Shared(Arc<String>),
}

impl Piece {
    fn as_str(&self) -> &str {
        match self {
            Piece::Owned(text) => text,
            Piece::Shared(text) => text,
        }
    }
}

/// An exposition written in one piece.
impl From<String> for Exposition {
    fn from(text: String) -> Self {
        Exposition {
            pieces: vec![Piece::Owned(text)],
        }
    }
}

impl Exposition {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(|p| p.as_str().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole text.
    pub fn into_string(self) -> String {
        let mut out = String::with_capacity(self.len());
        for piece in &self.pieces {
            out.push_str(piece.as_str());
        }
        out
    }

    /// The gzip-compressed text ([`crate::compression::LEVEL`]), written piece by piece.
    pub fn gzip(&self) -> std::io::Result<Vec<u8>> {
        crate::compression::gzip_pieces(
            self.pieces.iter().map(|p| p.as_str().as_bytes()),
            self.len(),
            crate::compression::LEVEL,
        )
    }
}

/// A scrape that could not be answered with metrics (only in the reference set, which has no `kobo_up`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeError(pub String);

/// The encoding of each keyed group, by group: its key, its format and its text.
type Reused = HashMap<&'static str, (u64, Format, Arc<String>)>;

/// Renders the metric set it was made for; owns the encoding cache and the process metrics.
pub struct Renderer {
    set: MetricSet,
    process: Option<ProcessCollector>,
    /// The size of the last exposition's own (not reused) text: its buffer is allocated at once.
    last_size: AtomicUsize,
    /// The encoding of each keyed group of families ([`FamilySink::keyed`]) with its key and format.
    reused: Mutex<Reused>,
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
    /// reference set it is an error. Written group by group ([`hub_family_groups`]), as the pieces it
    /// was written in: the reused groups shared with the cache, not copied ([`Exposition`]).
    pub fn render(
        &self,
        outcome: &Outcome,
        status: &ExporterStatus,
        flow: Option<&FlowTotals>,
        format: Format,
        process_wide: &[MetricFamily],
    ) -> Result<Exposition, ScrapeError> {
        let failed =
            |e: prometheus::Error| ScrapeError(format!("rendering the metrics failed: {e}"));
        let mut sink = EncodingSink {
            format,
            out: Exposition::default(),
            current: String::with_capacity(self.last_size.load(Ordering::Relaxed) + 4096),
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
        format.finish(&mut sink.current);
        sink.flush();
        let own = sink
            .out
            .pieces
            .iter()
            .filter(|p| matches!(p, Piece::Owned(_)))
            .map(|p| p.as_str().len())
            .max()
            .unwrap_or(0);
        self.last_size.store(own, Ordering::Relaxed);
        Ok(sink.out)
    }
}

/// Encodes the families into `out`, reusing the encoding of a keyed group whose key and format are those of
/// the last scrape (between task refreshes, on a hub whose workers' arches and channels did not change).
struct EncodingSink<'a> {
    format: Format,
    out: Exposition,
    /// The piece being written (families encoded at this scrape).
    current: String,
    reused: &'a Mutex<Reused>,
}

impl EncodingSink<'_> {
    /// Ends the piece being written.
    fn flush(&mut self) {
        if !self.current.is_empty() {
            let text = std::mem::take(&mut self.current);
            self.out.pieces.push(Piece::Owned(text));
        }
    }
}

impl FamilySink for EncodingSink<'_> {
    type Error = prometheus::Error;

    fn families(&mut self, families: Vec<MetricFamily>) -> Result<(), prometheus::Error> {
        self.format.encode_into(&families, &mut self.current)
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
            self.flush();
            self.out.pieces.push(Piece::Shared(Arc::clone(text)));
            return Ok(());
        }
        let mut text = String::new();
        self.format.encode_into(&build(), &mut text)?;
        let text = Arc::new(text);
        self.flush();
        self.out.pieces.push(Piece::Shared(Arc::clone(&text)));
        reused.insert(group, (key, self.format, text));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kobo_backend_api::WorkerRecord;
    use std::io::Read as _;

    #[test]
    fn an_exposition_gzips_from_its_pieces_to_the_whole_text() {
        let mut workers = Vec::new();
        for i in 0..50 {
            let mut worker = WorkerRecord::new(format!("worker-{i:03}.example.com"));
            worker.max_load = i;
            worker.arches = vec!["x86_64".into()];
            workers.push(worker);
        }
        let outcome: Outcome = Ok(Arc::new(HubSnapshot::new(workers)));
        let renderer = Renderer::without_process_metrics(MetricSet::All);
        let status = ExporterStatus {
            up: true,
            source: "sqlite",
            ..ExporterStatus::default()
        };
        for scrape in 0..2 {
            let pieces = renderer
                .render(&outcome, &status, None, Format::Text, &[])
                .unwrap();
            let shared = pieces
                .pieces
                .iter()
                .filter(|p| matches!(p, Piece::Shared(_)))
                .count();
            assert!(shared >= 7, "scrape {scrape}: {shared} reused pieces");
            // A fresh renderer, which reuses nothing, gives the same text.
            let text = Renderer::without_process_metrics(MetricSet::All)
                .render(&outcome, &status, None, Format::Text, &[])
                .unwrap()
                .into_string();
            assert!(text.contains("kobo_worker_max_load{worker=\"worker-049.example.com\"} 49"));
            assert_eq!(pieces.len(), text.len());
            let mut unpacked = String::new();
            flate2::read::GzDecoder::new(pieces.gzip().unwrap().as_slice())
                .read_to_string(&mut unpacked)
                .unwrap();
            assert_eq!(unpacked, text, "scrape {scrape}");
            assert_eq!(pieces.into_string(), text);
        }
    }
}
