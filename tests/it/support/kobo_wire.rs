//! kobo's wire format for the test hubs: Python's xmlrpc.client marshaller and `Worker.export()` live in
//! [`kobo_testkit::wire`] (re-exported here); this file adds the fixture workers as kobo exports them.
//! Shared by the xmlrpc/ tests and the fault tests' hub (support/hub.rs).

use std::collections::BTreeMap;

// xmlrpc/ uses all of them; the fault and concurrency tests only `fixture_exports`.
#[allow(unused_imports)]
pub use kobo_testkit::wire::{Export, Py, py, utc};

/// Every fixture worker's export, from the fixture database (`kobo_testkit::xmlrpc_hub::exports_from_sqlite`)
/// with last seen from `fixture-last-seen.tsv`.
pub fn fixture_exports() -> Vec<Export> {
    let (_dir, path) = crate::common::fixture_sqlite();
    let tsv = kobo_testkit::data::read("fixture-last-seen.tsv");
    let last_seen: BTreeMap<String, Option<String>> = tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            let when = (fields[2] != "-").then(|| utc(fields[2].parse().expect("mtime")));
            (fields[0].to_string(), when)
        })
        .collect();
    let mut exports =
        kobo_testkit::xmlrpc_hub::exports_from_sqlite(&path, None).expect("fixture exports");
    for export in &mut exports {
        export.last_seen = last_seen[&export.name].clone();
    }
    exports
}
