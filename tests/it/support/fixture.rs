//! The fixture hub (`fixture.sql`, `fixture-last-seen.tsv`) in a temporary SQLite file, the metrics the
//! SQLite source renders for it (the reference every other source must equal), and a parsed scrape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kobo_backend_sqlite::SqliteSource;
use kobo_exporter::api::WorkerDir;
use kobo_exporter::collector::{CollectorOptions, HubCollector};

use crate::common;
use kobo_testkit::exposition::{Family, parse};

/// The fixture hub in a new temporary SQLite file (kept while the directory lives).
pub fn sqlite_file() -> (tempfile::TempDir, PathBuf) {
    common::fixture_sqlite()
}

/// The fixture hub read by the SQLite source, with the fixture's worker directory.
pub struct SqliteFixture {
    pub source: Arc<SqliteSource>,
    _file: tempfile::TempDir,
    _worker_dir: tempfile::TempDir,
}

impl SqliteFixture {
    pub fn open() -> SqliteFixture {
        let (file, path) = sqlite_file();
        let worker_dir = common::fixture_worker_dir();
        let source = kobo_backend_sqlite::open(&path, Some(WorkerDir::new(worker_dir.path())))
            .expect("open the fixture");
        SqliteFixture {
            source: Arc::new(source),
            _file: file,
            _worker_dir: worker_dir,
        }
    }
}

/// The hub families (everything but `kobo_up`, `kobo_exporter_*` and `process_*`) that the SQLite source
/// gives for the fixture hub through a collector with `options`.
pub async fn reference(options: &CollectorOptions) -> BTreeMap<String, Family> {
    let fixture = SqliteFixture::open();
    let collector = HubCollector::new(fixture.source.clone(), options.clone());
    let scrape = Scrape::parse(
        &collector
            .scrape(None)
            .await
            .expect("the SQLite fixture scrapes"),
    );
    assert_eq!(scrape.up(), Some(1.0), "the SQLite fixture collects");
    let hub = scrape.hub();
    assert!(
        hub.get("kobo_worker_enabled")
            .is_some_and(|f| f.samples.len() == 5),
        "the reference has the fixture's five workers"
    );
    hub
}

/// A parsed scrape.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub families: BTreeMap<String, Family>,
}

impl Scrape {
    /// Parses an exposition; panics (with the text) if it is not well-formed.
    pub fn parse(text: &str) -> Scrape {
        let parsed = parse(text).unwrap_or_else(|e| panic!("bad exposition: {e}\n{text}"));
        Scrape {
            text: text.to_string(),
            families: parsed.families,
        }
    }

    /// The value of the unlabelled sample `name`.
    pub fn single(&self, name: &str) -> Option<f64> {
        self.families
            .get(name)?
            .samples
            .get(&(name.to_string(), Vec::new()))
            .copied()
    }

    /// `kobo_up`.
    pub fn up(&self) -> Option<f64> {
        self.single("kobo_up")
    }

    /// `kobo_exporter_collect_errors_total{collector="<collector>"}`.
    pub fn errors(&self, collector: &str) -> Option<f64> {
        let name = "kobo_exporter_collect_errors_total";
        self.families
            .get(name)?
            .samples
            .get(&(
                name.to_string(),
                vec![("collector".to_string(), collector.to_string())],
            ))
            .copied()
    }

    /// The hub's families: all but `kobo_up`, the exporter's own and the process metrics.
    pub fn hub(&self) -> BTreeMap<String, Family> {
        self.families
            .iter()
            .filter(|(name, _)| is_hub_family(name))
            .map(|(name, family)| (name.clone(), family.clone()))
            .collect()
    }
}

/// Whether a family is the hub's (not `kobo_up`, the exporter's own or a process metric).
pub fn is_hub_family(name: &str) -> bool {
    name != "kobo_up" && !name.starts_with("kobo_exporter_") && !name.starts_with("process_")
}
