//! Rendering benchmarks (issue 7): kobo-hubgen's synthetic hub read by the SQLite source (1,000 and
//! 10,000 workers, 50,000 tasks), rendered the way `/metrics` does it (`metrics::hub_families`, plus the
//! exporter's own families for the full set, then `Format::encode`):
//!
//! - `render/text_all`: every family (hub and exporter), Prometheus text format 0.0.4;
//! - `render/text_reference`: django-kobo-exporter's six families only (`MetricSet::Reference`);
//! - `render/openmetrics_all`: every family, OpenMetrics 1.0.0;
//! - `render/steady_all`, `render/steady_reference`: what a scrape of an unchanged hub costs, through the
//!   exporter's `Renderer`, which reuses the encoding of the groups whose inputs did not change;
//! - `gzip/level_N`: the text exposition of every family gzipped at levels 1, 3 and 6 (the sizes are
//!   printed), to weigh the time against the bytes sent.
//!
//! Each iteration builds the families and encodes them (both are per-scrape work). The process metrics
//! (`process_*`, read from /proc) are left out: they do not depend on the hub and would make the runs
//! depend on the machine. Run with `cargo bench -p kobo-exporter --bench render`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is the verdict"
)]

use kobo_testkit::CollectExt;
use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use kobo_exporter::api::{HubSnapshot, Part, WorkerDir};
use kobo_exporter::exposition::Format;
use kobo_exporter::metrics::exporter::{self, ExporterStatus};
use kobo_exporter::metrics::{MetricSet, hub_families};
use kobo_exporter::render::Renderer;
use kobo_hubgen::HubSpec;

/// A hub of `workers` workers with task data: kobo-hubgen's synthetic hub (the one kobo-bench serves),
/// with 50,000 tasks and its last-seen files, written to a temporary SQLite file and read by the SQLite
/// source, as a scrape with a task refresh reads it.
fn snapshot(workers: u32) -> HubSnapshot {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, worker_dir) = (dir.path().join("hub.sqlite3"), dir.path().join("worker"));
    let spec = HubSpec {
        workers,
        tasks: 50_000,
        seed: 1,
    };
    kobo_hubgen::sqlite::generate(&db, &spec).expect("generate the hub");
    kobo_hubgen::write_worker_dir(&worker_dir, &spec).expect("last-seen files");
    let source =
        kobo_backend_sqlite::open(&db, Some(WorkerDir::new(&worker_dir))).expect("open the hub");
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(source.collect_tasks())
        .expect("read the hub")
}

/// The exporter's own status after a good scrape with task data.
fn status() -> ExporterStatus {
    ExporterStatus {
        up: true,
        source: "postgres",
        durations: BTreeMap::from([
            (Part::Workers, 0.042),
            (Part::Tasks, 0.274),
            (Part::LastSeen, 0.011),
        ]),
        errors: BTreeMap::from([(Part::Workers, 0), (Part::Tasks, 2), (Part::LastSeen, 0)]),
        task_data_age: Some(12.5),
    }
}

/// What the collector renders for a scrape: the hub families of `set`, then (full set only) the exporter's.
fn render(
    snapshot: &HubSnapshot,
    status: &ExporterStatus,
    set: MetricSet,
    format: Format,
) -> String {
    let mut families = hub_families(snapshot, set);
    if set == MetricSet::All {
        families.extend(exporter::families(status, None));
    }
    format.encode(&families).expect("the families encode")
}

fn bench_render(c: &mut Criterion) {
    let status = status();
    let mut group = c.benchmark_group("render");
    for workers in [1_000u32, 10_000] {
        let hub = snapshot(workers);
        group.throughput(Throughput::Elements(workers as u64));
        // Renders take milliseconds (1,000 workers) to 100 ms (10,000): samples of a fixed number of
        // iterations, rather than 100 growing ones.
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(if workers >= 10_000 { 20 } else { 50 });
        for (id, set, format) in [
            ("text_all", MetricSet::All, Format::Text),
            ("text_reference", MetricSet::Reference, Format::Text),
            ("openmetrics_all", MetricSet::All, Format::OpenMetrics),
        ] {
            // Outside the timed loop: the rendering is the real thing, not an empty exposition.
            let text = render(&hub, &status, set, format);
            let samples = text.matches("\nkobo_worker_enabled{").count();
            assert_eq!(
                samples, workers as usize,
                "{id}: kobo_worker_enabled samples"
            );
            if set == MetricSet::All {
                for family in [
                    "kobo_worker_arch{",
                    "kobo_tasks{",
                    "kobo_queue_workers{",
                    "kobo_up",
                ] {
                    assert!(text.contains(family), "{id}: no {family}");
                }
            } else {
                assert!(
                    !text.contains("kobo_worker_arch"),
                    "{id}: more than the reference"
                );
            }
            group.bench_function(BenchmarkId::new(id, workers), |b| {
                b.iter(|| render(black_box(&hub), &status, set, format))
            });
        }
        let outcome = Ok(std::sync::Arc::new(hub.clone()));
        for (id, set) in [
            ("steady_all", MetricSet::All),
            ("steady_reference", MetricSet::Reference),
        ] {
            let renderer = Renderer::without_process_metrics(set);
            let first = renderer
                .render(&outcome, &status, None, Format::Text, &[])
                .expect("renders")
                .into_string();
            assert_eq!(first, render(&hub, &status, set, Format::Text), "{id}");
            group.bench_function(BenchmarkId::new(id, workers), |b| {
                b.iter(|| {
                    renderer
                        .render(black_box(&outcome), &status, None, Format::Text, &[])
                        .expect("renders")
                        .into_string()
                })
            });
        }
    }
    group.finish();
    let text = render(&snapshot(1_000), &status, MetricSet::All, Format::Text);
    let mut gzip = c.benchmark_group("gzip");
    gzip.throughput(Throughput::Bytes(text.len() as u64));
    for level in [1u32, 3, 6] {
        let gzip_at = |text: &str| {
            kobo_exporter::compression::gzip_pieces([text.as_bytes()], text.len(), level)
        };
        let packed = gzip_at(&text).expect("gzip");
        eprintln!(
            "gzip/level_{level}: {} bytes of text to {} bytes",
            text.len(),
            packed.len()
        );
        gzip.bench_function(BenchmarkId::new(format!("level_{level}"), 1_000), |b| {
            b.iter(|| gzip_at(black_box(&text)))
        });
    }
    gzip.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
