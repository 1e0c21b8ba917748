//! Last seen from kobo's `WORKER_DIR`.
//!
//! kobo touches `WORKER_DIR/<urlsafe-base64(name)>` (with `=` padding) on every authenticated `worker.*`
//! call; the file's mtime is the worker's last seen. A missing file means the worker was never seen. A
//! missing or unreadable directory is an error of its own: it must not look like "nobody was ever seen".
//!
//! The directory is listed in full once, then kept up to date from inotify's events where it can be
//! ([`watch`]): a scrape then stats only the files changed since the last one.

mod watch;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

use crate::SourceError;
use crate::records::{HubSnapshot, LastSeen, WorkerRecord};
use crate::request::{Part, Warning};

pub use watch::{Freshness, Mode};

/// kobo's worker directory, read for last seen, and what is known of it between scrapes (shared by the
/// clones: a source's collections share one cache).
#[derive(Debug, Clone)]
pub struct WorkerDir {
    path: PathBuf,
    freshness: Freshness,
    state: Arc<Mutex<watch::State>>,
}

/// Two worker directories are the same when their path and freshness are (whatever they have cached).
impl PartialEq for WorkerDir {
    fn eq(&self, other: &Self) -> bool {
        (&self.path, self.freshness) == (&other.path, other.freshness)
    }
}

impl Eq for WorkerDir {}

/// The file name kobo uses for a worker: the URL-safe base64 of its UTF-8 name, with padding.
pub fn file_name(worker_name: &str) -> String {
    URL_SAFE.encode(worker_name.as_bytes())
}

impl WorkerDir {
    /// A worker directory at `path`, watched where it can be ([`Freshness::default`]). Checked at every
    /// read, not here.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        WorkerDir {
            path: path.into(),
            freshness: Freshness::default(),
            state: Arc::default(),
        }
    }

    /// The same directory, kept fresh as `freshness` says.
    pub fn with_freshness(self, freshness: Freshness) -> Self {
        WorkerDir { freshness, ..self }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn freshness(&self) -> Freshness {
        self.freshness
    }

    /// How the directory is being read, once it has been read.
    pub fn mode(&self) -> Option<Mode> {
        self.lock().mode.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, watch::State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, e: io::Error) -> SourceError {
        SourceError::WorkerDir {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Every file's mtime, as fresh as [`Freshness`] says: a full listing when one is due (the first,
    /// after inotify lost events or the directory was replaced, every `rescan_interval`, or at every call
    /// without inotify); otherwise the last one with the files inotify saw change since stat'ed again.
    /// On error the cache is dropped, so that the next call lists the directory again.
    pub fn mtimes(&self) -> Result<Arc<HashMap<String, i64>>, SourceError> {
        let mut state = self.lock();
        let now = Instant::now();
        let interval = self.freshness.rescan_interval;
        let due = match state.listed_at {
            None => true,
            Some(at) if !interval.is_zero() => now.duration_since(at) >= interval,
            Some(_) => state.watch.is_none(),
        };
        let due = due || !self.apply_events(&mut state)?;
        if due {
            self.relist(&mut state, now)?;
        }
        Ok(Arc::clone(&state.mtimes))
    }

    /// Stats again the files inotify saw change since the last call (nothing to do without a watch);
    /// `false` when a full listing is needed instead (events were lost, the directory went, the watch
    /// failed).
    fn apply_events(&self, state: &mut watch::State) -> Result<bool, SourceError> {
        let Some(watch) = state.watch.as_mut() else {
            return Ok(true);
        };
        let changes = match watch.drain() {
            Ok(changes) if !changes.relist => changes,
            Ok(_) => {
                state.watch = None;
                return Ok(false);
            }
            Err(e) => {
                log::warn!(
                    "last seen: the inotify watch of {} failed ({e}): listing it instead",
                    self.path.display()
                );
                state.watch = None;
                return Ok(false);
            }
        };
        if changes.names.is_empty() {
            return Ok(true);
        }
        let mtimes = Arc::make_mut(&mut state.mtimes);
        for name in changes.names {
            let Ok(name) = name.into_string() else {
                continue;
            };
            match std::fs::metadata(self.path.join(&name)) {
                Ok(meta) => {
                    if let Some(seconds) = meta.modified().ok().map(unix_seconds) {
                        mtimes.insert(name, seconds);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    mtimes.remove(&name);
                }
                Err(e) => {
                    *state = watch::State::default();
                    return Err(self.error(e));
                }
            }
        }
        Ok(true)
    }

    /// A full listing, the watch set up first where it is wanted and can be (a change made while the
    /// directory is listed is then not lost); logs the mode when it changed. On error the cache is
    /// dropped.
    fn relist(&self, state: &mut watch::State, now: Instant) -> Result<(), SourceError> {
        let mode = match (&state.watch, self.freshness.watch) {
            (Some(_), _) => Mode::Watching,
            (None, false) => Mode::Listing("worker_dir_watch is false".into()),
            (None, true) => match watch::Watch::new(&self.path) {
                Ok(watch) => {
                    state.watch = Some(watch);
                    Mode::Watching
                }
                Err(why) => Mode::Listing(why),
            },
        };
        match self.read_mtimes() {
            // The events queued meanwhile stay queued: the next call stats their files again, which
            // may have changed after the listing read them.
            Ok(listing) => {
                state.mtimes = Arc::new(listing);
                state.listed_at = Some(now);
                state.listings += 1;
            }
            Err(e) => {
                *state = watch::State::default();
                return Err(e);
            }
        }
        if state.mode.as_ref() != Some(&mode) {
            self.announce(&mode);
            state.mode = Some(mode);
        }
        Ok(())
    }

    /// Says in the log how last seen is kept, and how fresh it is.
    fn announce(&self, mode: &Mode) {
        let interval = self.freshness.rescan_interval.as_secs_f64();
        let path = self.path.display();
        match (mode, interval > 0.0) {
            (Mode::Watching, false) => log::info!(
                "last seen: {path} is watched with inotify: a scrape reads only the files changed since the last one"
            ),
            (Mode::Watching, true) => log::info!(
                "last seen: {path} is watched with inotify: a scrape reads only the files changed since the last one, and it is listed in full every {interval} s"
            ),
            (Mode::Listing(why), false) => log::info!(
                "last seen: {path} is not watched ({why}): it is listed in full at every scrape"
            ),
            (Mode::Listing(why), true) => log::info!(
                "last seen: {path} is not watched ({why}): it is listed in full every {interval} s, and last seen is up to that old"
            ),
        }
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
        let mut mtimes = HashMap::new();
        for entry in std::fs::read_dir(&self.path).map_err(|e| self.error(e))? {
            let entry = entry.map_err(|e| self.error(e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // A file removed between the listing and the stat is simply not seen.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.error(e)),
            };
            let Ok(modified) = meta.modified() else {
                continue;
            };
            mtimes.insert(name, unix_seconds(modified));
        }
        Ok(mtimes)
    }

    /// Sets every worker's last seen from the directory: `At(mtime)` where its file exists, `Never` where
    /// it does not. On error the workers are left untouched and the error is returned.
    pub fn apply(&self, workers: &mut [WorkerRecord]) -> Result<(), SourceError> {
        let mtimes = self.mtimes()?;
        apply_mtimes(&mtimes, workers);
        Ok(())
    }
}

/// Whole Unix seconds of a file time; before 1970, towards minus infinity, like Python's `int(st_mtime)`.
fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => {
            let d = before.duration();
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
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
type Listing = (Result<Arc<HashMap<String, i64>>, SourceError>, Duration);

impl LastSeenTask {
    /// Starts listing `dir` (nothing to do without one). Must be called inside a tokio runtime.
    pub fn spawn(dir: Option<&WorkerDir>) -> LastSeenTask {
        let listing = dir.cloned().map(|dir| {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let mtimes = dir.mtimes();
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

    fn set_mtime(path: &Path, seconds: u64) {
        std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(seconds)))
            .expect("set the mtime");
    }

    fn listings(dir: &WorkerDir) -> u64 {
        dir.lock().listings
    }

    fn seen(dir: &WorkerDir, name: &str) -> Option<i64> {
        dir.mtimes().expect("read").get(name).copied()
    }

    #[test]
    fn watched_a_touched_created_removed_or_renamed_file_shows_at_the_next_read_without_a_listing()
    {
        let tmp = tempfile::tempdir().unwrap();
        set_mtime(&tmp.path().join("a"), 1_000);
        let dir = WorkerDir::new(tmp.path());
        assert_eq!(dir.mode(), None);
        assert_eq!(seen(&dir, "a"), Some(1_000));
        assert_eq!(dir.mode(), Some(Mode::Watching), "{:?}", dir.mode());
        set_mtime(&tmp.path().join("a"), 2_000);
        assert_eq!(seen(&dir, "a"), Some(2_000), "touched");
        set_mtime(&tmp.path().join("b"), 3_000);
        assert_eq!(seen(&dir, "b"), Some(3_000), "created");
        std::fs::remove_file(tmp.path().join("a")).unwrap();
        assert_eq!(seen(&dir, "a"), None, "removed");
        std::fs::rename(tmp.path().join("b"), tmp.path().join("c")).unwrap();
        let mtimes = dir.mtimes().unwrap();
        assert_eq!(
            (mtimes.get("b"), mtimes.get("c")),
            (None, Some(&3_000)),
            "renamed"
        );
        // A clone shares the cache (a source's collections do).
        assert_eq!(seen(&dir.clone(), "c"), Some(3_000));
        assert_eq!(listings(&dir), 1, "one listing, then only events");
    }

    #[test]
    fn unwatched_every_read_lists_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkerDir::new(tmp.path()).with_freshness(Freshness {
            watch: false,
            rescan_interval: Duration::ZERO,
        });
        assert_eq!(seen(&dir, "a"), None);
        set_mtime(&tmp.path().join("a"), 1_000);
        assert_eq!(seen(&dir, "a"), Some(1_000));
        set_mtime(&tmp.path().join("a"), 2_000);
        assert_eq!(seen(&dir, "a"), Some(2_000));
        assert_eq!(listings(&dir), 3);
        assert_eq!(
            dir.mode(),
            Some(Mode::Listing("worker_dir_watch is false".into()))
        );
    }

    #[test]
    fn a_rescan_interval_bounds_the_listings_and_inotify_still_sees_changes() {
        let tmp = tempfile::tempdir().unwrap();
        set_mtime(&tmp.path().join("a"), 1_000);
        let hour = Duration::from_secs(3_600);
        let unwatched = WorkerDir::new(tmp.path()).with_freshness(Freshness {
            watch: false,
            rescan_interval: hour,
        });
        let watched = WorkerDir::new(tmp.path()).with_freshness(Freshness {
            watch: true,
            rescan_interval: hour,
        });
        assert_eq!(
            (seen(&unwatched, "a"), seen(&watched, "a")),
            (Some(1_000), Some(1_000))
        );
        set_mtime(&tmp.path().join("a"), 2_000);
        // Without inotify last seen is up to the interval old: what the operator chose.
        assert_eq!(seen(&unwatched, "a"), Some(1_000));
        assert_eq!(seen(&watched, "a"), Some(2_000));
        assert_eq!((listings(&unwatched), listings(&watched)), (1, 1));
        // Once the interval has passed, a full listing.
        unwatched.lock().listed_at = Instant::now().checked_sub(hour);
        assert_eq!(seen(&unwatched, "a"), Some(2_000));
        assert_eq!(listings(&unwatched), 2);
    }

    #[test]
    fn a_replaced_directory_or_an_overflowed_queue_is_listed_again() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("worker");
        std::fs::create_dir(&path).unwrap();
        set_mtime(&path.join("a"), 1_000);
        let dir = WorkerDir::new(&path);
        assert_eq!(seen(&dir, "a"), Some(1_000));
        // Replaced: the watch of the old directory is gone (IN_DELETE_SELF, IN_IGNORED).
        std::fs::remove_dir_all(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        set_mtime(&path.join("b"), 2_000);
        let mtimes = dir.mtimes().unwrap();
        assert_eq!((mtimes.get("a"), mtimes.get("b")), (None, Some(&2_000)));
        assert_eq!(listings(&dir), 2);
        assert_eq!(seen(&dir, "b"), Some(2_000));
        assert_eq!(listings(&dir), 2, "the new directory is watched");
        // More events than the queue holds (touches of two files in turn are not merged): the overflow
        // makes the next read list the directory.
        let queued: u64 = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(16_384);
        for i in 0..=queued {
            set_mtime(&path.join(if i % 2 == 0 { "b" } else { "c" }), 3_000 + i);
        }
        let mtimes = dir.mtimes().unwrap();
        assert_eq!(listings(&dir), 3, "listed after the overflow");
        assert_eq!(
            mtimes.get("b").copied().max(mtimes.get("c").copied()),
            Some(3_000 + queued as i64)
        );
        // Removed for good: an error, and the cache is dropped.
        std::fs::remove_dir_all(&path).unwrap();
        assert!(matches!(dir.mtimes(), Err(SourceError::WorkerDir { .. })));
        std::fs::create_dir(&path).unwrap();
        assert_eq!(dir.mtimes().unwrap().len(), 0);
    }

    #[test]
    fn a_network_filesystem_is_known_by_its_magic_number() {
        assert_eq!(watch::remote_filesystem(Path::new("/nonexistent")), None);
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(watch::remote_filesystem(tmp.path()), None, "a local disk");
    }

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
