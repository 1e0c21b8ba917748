//! Rendering benchmarks (issue 7): a hub snapshot built in code (1,000 and 10,000 workers with task data),
//! rendered the way `/metrics` does it (`metrics::hub_families`, plus the exporter's own families for the
//! full set, then `Format::encode`):
//!
//! - `render/text_all`: every family (hub and exporter), Prometheus text format 0.0.4;
//! - `render/text_reference`: django-kobo-exporter's six families only (`MetricSet::Reference`);
//! - `render/openmetrics_all`: every family, OpenMetrics 1.0.0.
//!
//! Each iteration builds the families and encodes them (both are per-scrape work). The process metrics
//! (`process_*`, read from /proc) are left out: they do not depend on the hub and would make the runs
//! depend on the machine. Run with `cargo bench -p kobo-exporter --bench render`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use kobo_exporter::api::{
    HubSnapshot, LastSeen, TaskGroup, TaskState, TaskSummary, WorkerRecord, WorkerTaskCount,
};
use kobo_exporter::exposition::Format;
use kobo_exporter::metrics::exporter::{self, ExporterStatus};
use kobo_exporter::metrics::{hub_families, MetricSet};

/// A small deterministic generator (SplitMix64), so every run renders the same hub.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `true` with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const ARCHES: [&str; 10] = [
    "aarch64", "armv7hl", "i386", "i686", "noarch", "ppc64", "ppc64le", "riscv64", "s390x",
    "x86_64",
];

const CHANNELS: [&str; 20] = [
    "default",
    "rhel-8",
    "rhel-9",
    "rhel-10",
    "fedora-rawhide",
    "fedora-42",
    "fedora-43",
    "centos-stream-9",
    "centos-stream-10",
    "scratch",
    "kernel",
    "kernel-rt",
    "container-builds",
    "image-builds",
    "compose",
    "signing",
    "errata",
    "testing",
    "long-running",
    "priority",
];

const ROLES: [&str; 6] = ["builder", "compose", "image", "test", "sign", "scratch"];
const SITES: [&str; 4] = ["brq", "rdu", "phx", "bos"];

/// `count` distinct items of `from`, sorted (as sources give arches and channels).
fn pick(rng: &mut Rng, from: &[&str], count: usize) -> Vec<String> {
    let mut picked: Vec<String> = Vec::with_capacity(count);
    while picked.len() < count {
        let item = from[rng.below(from.len() as u64) as usize];
        if !picked.iter().any(|p| p == item) {
            picked.push(item.to_string());
        }
    }
    picked.sort_unstable();
    picked
}

/// A hub of `workers` workers, with task data: about 70% of the 4 active states x 10 arches x 20 channels
/// groups have tasks, and about 40% of the workers have ASSIGNED or OPEN tasks.
fn snapshot(workers: usize) -> HubSnapshot {
    let mut rng = Rng(0x6b6f_626f ^ workers as u64);
    let now: i64 = 1_780_000_000;
    let records: Vec<WorkerRecord> = (0..workers)
        .map(|i| {
            let role = ROLES[i % ROLES.len()];
            let site = SITES[(i / 7) % SITES.len()];
            let mut worker = WorkerRecord::new(format!("{role}-{i:05}.{site}.example.com"));
            worker.enabled = rng.chance(90);
            worker.ready = worker.enabled && rng.chance(75);
            worker.max_load = [1, 2, 4, 8, 16][rng.below(5) as usize];
            worker.current_load = rng.below(worker.max_load as u64 + 1) as i64;
            worker.task_count = rng.below(worker.current_load as u64 + 1) as i64;
            worker.max_tasks = Some(rng.below(6) as i64);
            worker.min_priority = Some(rng.below(3) as i64 * 10);
            worker.last_seen = if rng.chance(3) {
                LastSeen::Never
            } else {
                LastSeen::At(now - rng.below(86_400 * 3) as i64)
            };
            let arches = 2 + rng.below(3) as usize;
            worker.arches = pick(&mut rng, &ARCHES, arches);
            let channels = 1 + rng.below(3) as usize;
            worker.channels = pick(&mut rng, &CHANNELS, channels);
            worker
        })
        .collect();
    let mut groups = Vec::new();
    for state in TaskState::ACTIVE {
        for arch in ARCHES {
            for channel in CHANNELS {
                if rng.chance(70) {
                    groups.push(TaskGroup {
                        state,
                        arch: arch.to_string(),
                        channel: channel.to_string(),
                        count: 1 + rng.below(500) as i64,
                        oldest_created: Some((now - 1 - rng.below(86_400 * 14) as i64) as f64),
                    });
                }
            }
        }
    }
    let mut per_worker = Vec::new();
    for worker in &records {
        if rng.chance(40) {
            for state in [TaskState::Assigned, TaskState::Open] {
                if rng.chance(60) {
                    per_worker.push(WorkerTaskCount {
                        worker: worker.name.clone(),
                        state,
                        count: 1 + rng.below(8) as i64,
                    });
                }
            }
        }
    }
    HubSnapshot::from_read(
        records,
        Some(TaskSummary::new(groups, per_worker)),
        Vec::new(),
    )
}

/// The exporter's own status after a good scrape with task data.
fn status() -> ExporterStatus {
    ExporterStatus {
        up: true,
        source: "postgres",
        durations: BTreeMap::from([("workers", 0.042), ("tasks", 0.274), ("last_seen", 0.011)]),
        errors: BTreeMap::from([("workers", 0), ("tasks", 2), ("last_seen", 0)]),
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
    for workers in [1_000usize, 10_000] {
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
            assert_eq!(samples, workers, "{id}: kobo_worker_enabled samples");
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
    }
    group.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
