//! Last seen kept between scrapes: the worker directory listed once, then kept up to date from inotify's
//! events, so that a scrape stats only the files changed since the one before, not every worker's file.
//!
//! Where inotify cannot be trusted the directory is listed again instead: on a network filesystem (NFS,
//! the usual way to share `WORKER_DIR`, SMB, CephFS, 9p, FUSE: inotify sees only this host's changes
//! there), when inotify cannot be had (no more instances or watches), when its queue overflowed, and when
//! the directory itself was removed or moved. [`Freshness`] says how often a full listing is made anyway.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};

/// How last seen is kept fresh: configured by `worker_dir_watch` and `worker_dir_rescan_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Use inotify where the filesystem allows it (`worker_dir_watch`, default true).
    pub watch: bool,
    /// A full listing at most this often (`worker_dir_rescan_interval`); zero: with inotify, only when it
    /// is set up or lost its events; without it, at every scrape.
    pub rescan_interval: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            watch: true,
            rescan_interval: Duration::ZERO,
        }
    }
}

/// How the directory is being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// inotify's events between full listings.
    Watching,
    /// Full listings only; why inotify is not used.
    Listing(String),
}

/// The cache of one worker directory.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// File name -> mtime (whole Unix seconds), as the last listing and the events since made it.
    pub mtimes: Arc<HashMap<String, i64>>,
    /// When the last full listing was made.
    pub listed_at: Option<Instant>,
    pub watch: Option<Watch>,
    /// The mode last logged, so that a change is logged once.
    pub mode: Option<Mode>,
    /// Full listings made (for the tests).
    pub listings: u64,
}

/// An inotify instance watching the directory.
#[derive(Debug)]
pub(crate) struct Watch {
    inotify: Inotify,
    buffer: Vec<u8>,
}

/// What the events since the last drain say.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Names of the files created, changed, touched, removed or renamed.
    pub names: HashSet<OsString>,
    /// Events were lost (the queue overflowed) or the directory itself went: list it again.
    pub relist: bool,
}

/// Filesystems on which inotify does not see other hosts' changes (`statfs`'s `f_type`).
const REMOTE_FILESYSTEMS: [(u32, &str); 10] = [
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x0102_1997, "9p"),
    (0x00C3_6400, "CephFS"),
    (0x6573_5546, "FUSE"),
    (0x5346_414F, "AFS"),
    (0x0116_1970, "GFS2"),
    (0x7461_636F, "OCFS2"),
];

/// The name of the network filesystem `path` is on, if it is on one.
pub(crate) fn remote_filesystem(path: &Path) -> Option<&'static str> {
    let stat = rustix::fs::statfs(path).ok()?;
    // `f_type` is signed on some targets: its low 32 bits are the magic number.
    let magic = stat.f_type as u32;
    REMOTE_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

impl Watch {
    /// A watch on `path`, or why there is none.
    pub(crate) fn new(path: &Path) -> Result<Watch, String> {
        if let Some(fs) = remote_filesystem(path) {
            return Err(format!(
                "it is on {fs}, where inotify does not see other hosts' changes"
            ));
        }
        let inotify = Inotify::init().map_err(|e| format!("inotify is not available ({e})"))?;
        let mask = WatchMask::ATTRIB
            | WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
            | WatchMask::EXCL_UNLINK;
        inotify
            .watches()
            .add(path, mask)
            .map_err(|e| format!("it cannot be watched ({e})"))?;
        Ok(Watch {
            inotify,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// Every event queued since the last call, without waiting.
    pub(crate) fn drain(&mut self) -> io::Result<Changes> {
        let mut changes = Changes::default();
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(changes),
                Err(e) => return Err(e),
            };
            let mut any = false;
            for event in events {
                any = true;
                if event.mask.intersects(
                    EventMask::Q_OVERFLOW
                        | EventMask::IGNORED
                        | EventMask::DELETE_SELF
                        | EventMask::MOVE_SELF
                        | EventMask::UNMOUNT,
                ) {
                    changes.relist = true;
                }
                if let Some(name) = event.name {
                    changes.names.insert(name.to_os_string());
                }
            }
            if !any {
                return Ok(changes);
            }
        }
    }
}
