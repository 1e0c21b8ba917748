//! The hubs every source must render identically: each a set of portable INSERTs applied on top of kobo's
//! real schema for the database at hand, plus the worker directory to read last seen from.

use super::common;

/// One hub to load into every database.
pub struct Hub {
    /// The insta snapshot name: the same for every database.
    pub snapshot: &'static str,
    /// Portable statements run after the schema (no trailing `;`). String literals may hold backslashes:
    /// a MySQL/MariaDB loader must set `NO_BACKSLASH_ESCAPES`.
    pub statements: Vec<String>,
    /// Columns to drop after loading, `(table, column)`, to make an old schema. Each database drops them its
    /// own way (with the indexes and constraints that use them).
    pub drop_columns: Vec<(&'static str, &'static str)>,
    /// The worker directory given to the source: `None` for no `worker_dir` at all.
    pub worker_dir: WorkerDirKind,
}

pub enum WorkerDirKind {
    /// A directory with these last-seen files.
    Present(tempfile::TempDir),
    /// A configured directory that does not exist.
    Absent(tempfile::TempDir),
}

impl WorkerDirKind {
    pub fn path(&self) -> std::path::PathBuf {
        match self {
            WorkerDirKind::Present(dir) => dir.path().to_path_buf(),
            WorkerDirKind::Absent(dir) => dir.path().join("no-such-worker-dir"),
        }
    }

    pub fn worker_dir(&self) -> Option<kobo_exporter::api::WorkerDir> {
        Some(kobo_exporter::api::WorkerDir::new(self.path()))
    }
}

/// The fixture hub of `testkit/data/fixture.sql` with the last-seen files of `fixture-last-seen.tsv`.
pub fn fixture() -> Hub {
    Hub {
        snapshot: "fixture",
        statements: common::statements(&kobo_testkit::data::read("fixture.sql")),
        drop_columns: Vec::new(),
        worker_dir: WorkerDirKind::Present(common::fixture_worker_dir()),
    }
}

/// The fixture hub on an old schema: no `hub_worker.min_priority` (before 2016) and no
/// `hub_task.canceled_by_id` (before kobo 0.40). Same output as the fixture.
pub fn old_schema() -> Hub {
    Hub {
        snapshot: "fixture",
        drop_columns: vec![
            ("hub_worker", "min_priority"),
            ("hub_task", "canceled_by_id"),
        ],
        ..fixture()
    }
}

/// The fixture hub with a `worker_dir` that does not exist: no last-seen samples at all, never zeros.
pub fn absent_worker_dir() -> Hub {
    Hub {
        snapshot: "fixture_worker_dir_absent",
        worker_dir: WorkerDirKind::Absent(tempfile::tempdir().expect("temp dir")),
        ..fixture()
    }
}

/// A hub with no workers (and nothing else).
pub fn empty() -> Hub {
    Hub {
        snapshot: "empty",
        statements: Vec::new(),
        drop_columns: Vec::new(),
        worker_dir: WorkerDirKind::Present(common::worker_dir(&[])),
    }
}

/// Worker names that need escaping in the exposition format (quote, backslash, newline), non-ASCII names,
/// and names whose order differs between bytewise and case-insensitive or locale collation.
pub const ODD_NAMES: [&str; 10] = [
    "quote\"d.example.com",
    "back\\slash.example.com",
    "new\nline.example.com",
    "ünïcødé.example.com",
    "Zeta.example.com",
    "alpha.example.com",
    "Beta.example.com",
    "_under.example.com",
    "worker-10.example.com",
    "worker-9.example.com",
];

/// Workers with [`ODD_NAMES`], each with its own arch and channel, varied values, and last seen for half.
pub fn odd_names() -> Hub {
    let mut statements = vec![
        "INSERT INTO hub_arch (id, name, pretty_name) VALUES (1, 'noarch', 'noarch')".to_string(),
        "INSERT INTO hub_channel (id, name) VALUES (1, 'default')".to_string(),
    ];
    let mut seen = Vec::new();
    for (i, name) in ODD_NAMES.iter().enumerate() {
        let id = i + 1;
        let literal = name.replace('\'', "''");
        statements.push(format!(
            "INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, task_count, \
             current_load, min_priority) VALUES ({id}, 'secret-key-{id:04}', '{literal}', {enabled}, {max_load}, 0, \
             {ready}, {tasks}, {load}, 0)",
            enabled = if i % 3 == 0 { "FALSE" } else { "TRUE" },
            ready = if i % 2 == 0 { "TRUE" } else { "FALSE" },
            max_load = i + 1,
            tasks = i % 4,
            load = (i * 7) % 5,
        ));
        statements.push(format!(
            "INSERT INTO hub_worker_arches (id, worker_id, arch_id) VALUES ({id}, {id}, 1)"
        ));
        statements.push(format!(
            "INSERT INTO hub_worker_channels (id, worker_id, channel_id) VALUES ({id}, {id}, 1)"
        ));
        if i % 2 == 1 {
            seen.push((*name, 1_750_000_000 + i as i64 * 1000));
        }
    }
    Hub {
        snapshot: "odd_names",
        statements,
        drop_columns: Vec::new(),
        worker_dir: WorkerDirKind::Present(common::worker_dir(&seen)),
    }
}

/// Every hub of the suite.
pub fn all() -> Vec<Hub> {
    vec![
        fixture(),
        old_schema(),
        absent_worker_dir(),
        empty(),
        odd_names(),
    ]
}
