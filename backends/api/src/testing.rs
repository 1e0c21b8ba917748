//! Helpers for tests against real database servers (feature `testing`; never part of a normal build): the
//! test material of `testkit/data`, unique database names, the skip-or-fail rule for an unreachable server, and
//! clean-up from `Drop`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// An error of test set-up or clean-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A file of the repository's test material (`testkit/data/<name>`), e.g. `schema-postgres.sql`,
/// `fixture.sql`. Panics if it cannot be read.
pub fn test_data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testkit/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Whether tests run under CI (`CI=true`), where an unreachable server is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A database (or user) name unique to this process and call: `kobo_test_<pid>_<n>_<micros>`.
pub fn unique_name() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    format!(
        "kobo_test_{}_{}_{micros}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The rule for a test server that cannot be reached: a loud `SKIPPED:` line on stderr and `None` (the test
/// returns), or a panic under `CI=true`. `server` names it ("PostgreSQL"), `env_var` the variable that
/// points the tests elsewhere.
pub fn unreachable<T>(server: &str, url: &str, env_var: &str, why: &str) -> Option<T> {
    let url = crate::redact_url(url);
    if in_ci() {
        panic!("{server} test server {url} unreachable under CI=true: {why}");
    }
    eprintln!("SKIPPED: {server} test server {url} unreachable ({why}); set {env_var} or start the server");
    None
}

/// Runs `cleanup` to completion on a thread and runtime of its own (so it can be called from `Drop` inside
/// a test's runtime); a failure is a warning naming `what`, not a panic.
pub fn cleanup_on_own_thread<F, Fut>(what: &str, cleanup: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(cleanup())
    });
    match thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: could not clean up {what}: {e}"),
        Err(_) => eprintln!("warning: cleaning up {what} panicked"),
    }
}

/// The first characters of a script, for an error message.
pub fn head(sql: &str) -> String {
    sql.chars().take(300).collect()
}

/// The snapshot's data in a fixed order (workers by name, task groups by state, arch and channel, worker
/// task counts by worker and state), without timings: what two sources reading the same hub must agree on.
pub fn comparable(mut snapshot: crate::HubSnapshot) -> crate::HubSnapshot {
    snapshot.workers.sort_by(|a, b| a.name.cmp(&b.name));
    snapshot.timings.clear();
    if let Some(tasks) = &mut snapshot.tasks {
        tasks
            .groups
            .sort_by(|a, b| (a.state, &a.arch, &a.channel).cmp(&(b.state, &b.arch, &b.channel)));
        tasks
            .per_worker
            .sort_by(|a, b| (&a.worker, a.state).cmp(&(&b.worker, b.state)));
    }
    snapshot
}
