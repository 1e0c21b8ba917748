//! The collector reuses the encoding of the families that change only with the hub's configuration or its
//! task data (arches and channels of workers, task counts) while their inputs stay the same: every scrape
//! must still render exactly what a fresh rendering of its snapshot gives, in both formats, whatever changed
//! between scrapes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::fake::FakeSource;
use kobo_exporter::api::{
    HubSnapshot, TaskGroup, TaskState, TaskSummary, WorkerRecord, WorkerTaskCount,
};
use kobo_exporter::collector::{CollectorOptions, HubCollector};
use kobo_exporter::exposition::Format;
use kobo_exporter::metrics::{MetricSet, hub_families};

/// Gives its snapshots in turn, the last one again and again.
struct Scripted {
    snapshots: Mutex<Vec<HubSnapshot>>,
}

impl Scripted {
    fn next(&self) -> HubSnapshot {
        let mut snapshots = self.snapshots.lock().expect("lock");
        if snapshots.len() > 1 {
            snapshots.remove(0)
        } else {
            snapshots[0].clone()
        }
    }
}

fn worker(name: &str, arches: &[&str], channels: &[&str], ready: bool) -> WorkerRecord {
    let mut worker = WorkerRecord::new(name);
    worker.enabled = true;
    worker.ready = ready;
    worker.arches = arches.iter().map(|a| a.to_string()).collect();
    worker.channels = channels.iter().map(|c| c.to_string()).collect();
    worker
}

fn hub(workers: Vec<WorkerRecord>, assigned: i64, free: i64) -> HubSnapshot {
    let tasks = TaskSummary::new(
        vec![TaskGroup {
            state: TaskState::Free,
            arch: "x86_64".into(),
            channel: "default".into(),
            count: free,
            oldest_created: Some(1_700_000_000.5),
        }],
        vec![WorkerTaskCount {
            worker: "w1".into(),
            state: TaskState::Assigned,
            count: assigned,
        }],
    );
    let mut snapshot = HubSnapshot::new(workers);
    snapshot.tasks = Some(tasks);
    snapshot
}

#[tokio::test]
async fn every_scrape_renders_its_own_snapshot_whatever_changed() {
    let base = || {
        vec![
            worker("w1", &["x86_64"], &["default"], true),
            worker("w2", &["aarch64", "x86_64"], &["default"], false),
        ]
    };
    let mut arch_changed = base();
    arch_changed[0].arches = vec!["s390x".into()];
    let mut renamed = base();
    renamed[1].name = "w3".into();
    let mut not_ready = base();
    not_ready[0].ready = false;
    // Each per-worker family is keyed by its samples (values, and no sample for an unknown last seen).
    let mut loaded = base();
    loaded[0].current_load = 3;
    let mut seen = base();
    seen[1].last_seen = kobo_exporter::api::LastSeen::At(1_700_000_123);
    let mut never = base();
    never[1].last_seen = kobo_exporter::api::LastSeen::Never;
    let mut limited = base();
    limited[0].max_tasks = Some(2);
    let snapshots = vec![
        hub(base(), 1, 5),
        hub(base(), 1, 5), // the same: reused
        hub(arch_changed.clone(), 1, 5),
        hub(arch_changed, 2, 5), // per-worker task count changed
        hub(renamed, 2, 5),
        hub(base(), 2, 7),    // task groups changed
        hub(not_ready, 2, 7), // only readiness: queue families
        hub(base(), 1, 5),
        hub(base(), 1, 5),
        hub(loaded.clone(), 1, 5),
        hub(loaded, 1, 5),
        hub(seen, 1, 5),
        hub(never, 1, 5),
        hub(base(), 1, 5),
        hub(limited, 1, 5),
        hub(base(), 1, 5),
    ];
    // Every snapshot in the text format, then every one in OpenMetrics; every scrape collects anew. (The
    // keyed families are gauges, which both formats write alike; the reuse is keyed by format all the same.)
    let script = snapshots.iter().chain(&snapshots).cloned();
    let scripted = Scripted {
        snapshots: Mutex::new(script.collect()),
    };
    let source = FakeSource::new("sqlite", "scripted", move |_| {
        std::future::ready(Ok(scripted.next()))
    });
    let collector = HubCollector::new(
        Arc::new(source),
        CollectorOptions {
            task_refresh_interval: Duration::ZERO,
            reconnect_backoff_max: Duration::ZERO,
            ..CollectorOptions::default()
        },
    );
    for format in [Format::Text, Format::OpenMetrics] {
        for (i, snapshot) in snapshots.iter().enumerate() {
            let expected = format
                .encode(&hub_families(snapshot, MetricSet::All))
                .expect("render");
            let expected = expected.strip_suffix("# EOF\n").unwrap_or(&expected);
            let body = collector
                .scrape_as(None, format)
                .await
                .unwrap_or_else(|e| panic!("scrape {i}: {e:?}"));
            assert!(
                body.starts_with(expected),
                "scrape {i} ({format:?}) differs from a fresh rendering:\n{body}\n---\n{expected}"
            );
        }
    }
}
