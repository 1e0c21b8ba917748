//! kobo's wire format for the test hubs: Python's xmlrpc.client marshaller and `Worker.export()` live in
//! [`kobo_hubgen::wire`] (re-exported here); this file adds the fixture workers as kobo exports them.
//! Shared by tests/xmlrpc.rs and the fault tests' hub (tests/support/hub.rs).
#![allow(dead_code)]

use std::collections::BTreeMap;

// tests/xmlrpc.rs uses all of them; the fault and concurrency tests only `fixture_exports`.
#[allow(unused_imports)]
pub use kobo_hubgen::wire::{py, utc, Export, Py};

/// Every fixture worker's export, from the fixture database and `fixture-last-seen.tsv`.
pub fn fixture_exports() -> Vec<Export> {
    let (_dir, path) = crate::common::fixture_sqlite();
    let conn = rusqlite::Connection::open(&path).expect("open");
    let tsv = crate::common::read_shared("fixture-last-seen.tsv");
    let last_seen: BTreeMap<String, Option<String>> = tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            let when = (fields[2] != "-").then(|| utc(fields[2].parse().expect("mtime")));
            (fields[0].to_string(), when)
        })
        .collect();
    let mut workers = conn
        .prepare("SELECT id, name, enabled, max_load, ready, task_count, current_load FROM hub_worker ORDER BY id")
        .expect("prepare");
    let mut exports: Vec<Export> = workers
        .query_map([], |r| {
            Ok(Export {
                id: r.get(0)?,
                name: r.get(1)?,
                arches: vec![],
                channels: vec![],
                enabled: r.get(2)?,
                max_load: r.get(3)?,
                ready: r.get(4)?,
                task_count: r.get(5)?,
                current_load: r.get(6)?,
                last_seen: None,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for export in &mut exports {
        export.last_seen = last_seen[&export.name].clone();
        export.arches = conn
            .prepare(
                "SELECT a.id, a.name, a.pretty_name FROM hub_worker_arches wa JOIN hub_arch a ON a.id = wa.arch_id \
                 WHERE wa.worker_id = ?1 ORDER BY a.name",
            )
            .expect("prepare")
            .query_map([export.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        export.channels = conn
            .prepare(
                "SELECT c.id, c.name FROM hub_worker_channels wc JOIN hub_channel c ON c.id = wc.channel_id \
                 WHERE wc.worker_id = ?1 ORDER BY c.id",
            )
            .expect("prepare")
            .query_map([export.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
    }
    exports
}
