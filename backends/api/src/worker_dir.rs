//! Last seen from kobo's `WORKER_DIR`.
//!
//! kobo touches `WORKER_DIR/<urlsafe-base64(name)>` (with `=` padding) on every authenticated `worker.*`
//! call; the file's mtime is the worker's last seen. A missing file means the worker was never seen. A
//! missing or unreadable directory is an error of its own: it must not look like "nobody was ever seen".

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

use crate::SourceError;
use crate::records::{HubSnapshot, LastSeen, WorkerRecord};
use crate::request::{Part, Warning};

/// kobo's worker directory, read for last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDir {
    path: PathBuf,
}

/// The file name kobo uses for a worker: the URL-safe base64 of its UTF-8 name, with padding.
pub fn file_name(worker_name: &str) -> String {
    URL_SAFE.encode(worker_name.as_bytes())
}

impl WorkerDir {
    /// A worker directory at `path`. Checked at every read, not here.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        WorkerDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the directory exists and can be listed: for a clear error at start-up.
    pub fn check(&self) -> Result<(), SourceError> {
        self.read_mtimes().map(|_| ())
    }

    /// Reads the mtimes (whole Unix seconds) of every file in the directory, keyed by file name.
    ///
    /// One directory listing per scrape instead of one `stat` per worker by name; names that are not
    /// valid UTF-8 cannot be kobo's base64 names and are skipped.
    pub fn read_mtimes(&self) -> Result<HashMap<String, i64>, SourceError> {
        let error = |e: io::Error| SourceError::WorkerDir {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let mut mtimes = HashMap::new();
        for entry in std::fs::read_dir(&self.path).map_err(error)? {
            let entry = entry.map_err(error)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // A file removed between the listing and the stat is simply not seen.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(error(e)),
            };
            let Ok(modified) = meta.modified() else {
                continue;
            };
            let seconds = match modified.duration_since(UNIX_EPOCH) {
                Ok(after) => after.as_secs() as i64,
                // Before 1970: whole seconds towards minus infinity, like Python's int(st_mtime).
                Err(before) => {
                    let d = before.duration();
                    -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
                }
            };
            mtimes.insert(name, seconds);
        }
        Ok(mtimes)
    }

    /// Sets every worker's last seen from the directory: `At(mtime)` where its file exists, `Never` where
    /// it does not. On error the workers are left untouched and the error is returned.
    pub fn apply(&self, workers: &mut [WorkerRecord]) -> Result<(), SourceError> {
        apply_mtimes(&self.read_mtimes()?, workers);
        Ok(())
    }
}

/// Sets every worker's last seen from a listing ([`WorkerDir::read_mtimes`]).
fn apply_mtimes(mtimes: &HashMap<String, i64>, workers: &mut [WorkerRecord]) {
    for worker in workers {
        worker.last_seen = match mtimes.get(&file_name(&worker.name)) {
            Some(&t) => LastSeen::At(t),
            None => LastSeen::Never,
        };
    }
}

/// How the warnings of [`LastSeenTask::apply`] begin.
pub const WARNING_PREFIX: &str = "last seen unavailable";

/// Last seen from an optional worker directory, the way every database source reads it, beside its queries:
/// [`spawn`](Self::spawn) lists the directory on tokio's blocking pool while the source reads the database,
/// [`apply`](Self::apply) then fills the snapshot. Without a directory last seen stays unavailable; an
/// unreadable one leaves it unavailable and adds a warning; the listing's own time is the `last_seen`
/// timing. A scrape takes the longer of the listing and the queries, not their sum: on a hub of thousands
/// of workers the listing (a stat per worker) costs as much as the worker query.
pub struct LastSeenTask {
    listing: Option<tokio::task::JoinHandle<Listing>>,
}

/// A directory listing ([`WorkerDir::read_mtimes`]) and how long it took.
type Listing = (Result<HashMap<String, i64>, SourceError>, Duration);

impl LastSeenTask {
    /// Starts listing `dir` (nothing to do without one). Must be called inside a tokio runtime.
    pub fn spawn(dir: Option<&WorkerDir>) -> LastSeenTask {
        let listing = dir.cloned().map(|dir| {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let mtimes = dir.read_mtimes();
                (mtimes, started.elapsed())
            })
        });
        LastSeenTask { listing }
    }

    /// Waits for the listing and fills the snapshot's last seen.
    pub async fn apply(self, snapshot: &mut HubSnapshot) {
        let Some(listing) = self.listing else {
            return;
        };
        let (mtimes, took) = match listing.await {
            Ok(done) => done,
            Err(e) => {
                snapshot.warnings.push(Warning::new(
                    Part::LastSeen,
                    format!("{WARNING_PREFIX}: the listing did not finish: {e}"),
                ));
                return;
            }
        };
        match mtimes {
            Ok(mtimes) => apply_mtimes(&mtimes, &mut snapshot.workers),
            Err(e) => snapshot.warnings.push(Warning::new(
                Part::LastSeen,
                format!("{WARNING_PREFIX}: {e}"),
            )),
        }
        snapshot.timings.push((Part::LastSeen, took));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_urlsafe_base64_with_padding() {
        assert_eq!(
            file_name("worker-0001.example.com"),
            "d29ya2VyLTAwMDEuZXhhbXBsZS5jb20="
        );
        // '?' and '>' give '/' and '+' in the standard alphabet: kobo uses '_' and '-'.
        assert_eq!(file_name("a?>"), "YT8-");
        assert_eq!(file_name("??"), "Pz8=");
        assert_eq!(file_name("\u{fb}\u{ff}"), "w7vDvw==");
    }

    #[test]
    fn present_file_gives_its_mtime_and_absent_file_never() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(file_name("seen"));
        std::fs::write(&path, b"").expect("write");
        let when = UNIX_EPOCH + std::time::Duration::from_millis(1_749_999_887_900);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(when))
            .expect("set mtime");
        let mut workers = vec![WorkerRecord::new("seen"), WorkerRecord::new("unseen")];
        WorkerDir::new(dir.path())
            .apply(&mut workers)
            .expect("apply");
        assert_eq!(workers[0].last_seen, LastSeen::At(1_749_999_887));
        assert_eq!(workers[1].last_seen, LastSeen::Never);
    }

    #[tokio::test]
    async fn missing_directory_is_an_error_naming_it_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope");
        let mut snapshot = HubSnapshot::new(vec![WorkerRecord::new("w")]);
        LastSeenTask::spawn(Some(&WorkerDir::new(&missing)))
            .apply(&mut snapshot)
            .await;
        assert_eq!(snapshot.workers[0].last_seen, LastSeen::Unavailable);
        let warnings = &snapshot.warnings;
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].message.starts_with(WARNING_PREFIX),
            "{warnings:?}"
        );
        assert_eq!(warnings[0].part, Part::LastSeen);
        assert!(
            warnings[0].message.contains(&missing.display().to_string()),
            "{warnings:?}"
        );
        assert!(WorkerDir::new(&missing).check().is_err());
    }

    #[tokio::test]
    async fn no_directory_leaves_last_seen_unavailable_without_warning() {
        let mut snapshot = HubSnapshot::new(vec![WorkerRecord::new("w")]);
        LastSeenTask::spawn(None).apply(&mut snapshot).await;
        assert_eq!(snapshot.workers[0].last_seen, LastSeen::Unavailable);
        assert!(snapshot.warnings.is_empty());
        assert!(snapshot.timings.is_empty(), "nothing was listed");
    }
}
