//! Helpers shared by the integration tests: the test material in `testkit/data/`, hubs built in
//! temporary SQLite files, worker directories with chosen mtimes, an exposition-format parser, and the
//! skip-or-fail rule for database servers.
#![allow(dead_code)]

pub mod exposition;
pub mod openmetrics;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use kobo_exporter::api::worker_dir::file_name;

/// A file of the repository's test material (`testkit/data/<name>`: kobo's schemas, the fixture hub, the
/// reference exporter's output, the XML-RPC wire captures).
pub fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testkit/data")
        .join(name)
}

/// The text of a test-material file; panics with its path when it is missing (the tests need it).
pub fn read_test_data(name: &str) -> String {
    let path = test_data(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The SQL statements of a script, one per element (statements end with `;` at the end of a line; `--`
/// comment lines are dropped). Good for kobo's schema dumps and the fixture, whose strings hold no `;\n`.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with("--")) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(
                std::mem::take(&mut current)
                    .trim_end()
                    .trim_end_matches(';')
                    .to_string(),
            );
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// The fixture hub (kobo's SQLite schema, then `fixture.sql`) in a new file `dir/hub.sqlite3`.
pub fn fixture_sqlite_in(dir: &Path) -> PathBuf {
    let path = dir.join("hub.sqlite3");
    let conn = rusqlite::Connection::open(&path).expect("create");
    // One transaction and no fsync: a statement per commit, each synced, took seconds on a busy disk.
    conn.execute_batch("PRAGMA synchronous = OFF; BEGIN")
        .expect("begin");
    conn.execute_batch(&read_test_data("schema-sqlite.sql"))
        .expect("schema");
    conn.execute_batch(&read_test_data("fixture.sql"))
        .expect("fixture");
    conn.execute_batch("COMMIT").expect("commit");
    path
}

/// The fixture hub in a new temporary SQLite file, kept while the returned directory lives.
pub fn fixture_sqlite() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = fixture_sqlite_in(dir.path());
    (dir, path)
}

/// A temporary worker directory holding kobo's last-seen file for each `(worker name, mtime)`.
pub fn worker_dir(entries: &[(&str, i64)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, mtime) in entries {
        let path = dir.path().join(file_name(name));
        let file = File::create(&path).expect("create last-seen file");
        // A fraction of a second on top: last seen is whole seconds, rounded down.
        let when = UNIX_EPOCH + Duration::from_secs(*mtime as u64) + Duration::from_millis(750);
        file.set_modified(when).expect("set mtime");
    }
    dir
}

/// The fixture's worker directory, from `fixture-last-seen.tsv` (workers marked `-` have no file). The
/// file names of the TSV are checked against kobo's naming rule on the way.
pub fn fixture_worker_dir() -> tempfile::TempDir {
    let tsv = read_test_data("fixture-last-seen.tsv");
    let mut entries = Vec::new();
    for line in tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "bad TSV line {line:?}");
        assert_eq!(
            file_name(fields[0]),
            fields[1],
            "file name of {}",
            fields[0]
        );
        if fields[2] != "-" {
            entries.push((fields[0], fields[2].parse::<i64>().expect("mtime")));
        }
    }
    worker_dir(&entries)
}

/// True when database tests must not be skipped (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports an unreachable database server: a loud skip, or a failure under `CI=true`.
pub fn skip_or_fail(what: &str, error: &dyn std::fmt::Display) {
    if in_ci() {
        panic!("{what} is unreachable and CI=true: {error}");
    }
    eprintln!(
        "\n*** SKIPPED: {what} is unreachable: {error} (set CI=true to make this a failure) ***\n"
    );
}
