//! [`Watch`]: says when files may have changed on disk, however they were changed: written in
//! place, replaced by a rename (an editor's save, `mv`), swapped through a symlink (the kubelet
//! updates a mounted ConfigMap or Secret by renaming its `..data` symlink to a new directory),
//! deleted and created again, their directory removed and made again. It does not say what
//! changed: the caller reads the files again and compares.
//!
//! Watched are the directory of each file, the directory of every symlink on the way to it (and
//! of its target), each as named and as resolved, and the file itself (a file bind-mounted alone
//! is written in place, and only a watch on it sees that). A directory that does not exist is
//! watched through its nearest ancestor that does, until it comes back. After every burst of
//! events the set is worked out again, so a swap moves the watch to the new target; the caller
//! reads the files only after that, so nothing changed in between is missed. Symlink loops end
//! the walk (at most [`MAX_LINKS`] links are followed, as the kernel does).
//!
//! inotify through nix rather than the notify crate: rodent runs on Linux only, and nix, already
//! a dependency, has inotify; tokio's `AsyncFd` waits for its events on the runtime rodent
//! already runs. notify would add five crates (walkdir, xxhash-rust, inotify, notify-types, log)
//! and a thread with an event loop of its own, to an image that must stay under 10 MB, and the
//! parts this file is about (what to watch, re-arming after a swap, the debounce) would still be
//! ours.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// A burst of changes is waited out: the files are read once no event has come for this long.
pub(crate) const QUIET: Duration = Duration::from_millis(250);

/// ... but no longer than this after the burst's first event, so a file rewritten without pause
/// is still read.
pub(crate) const BURST_MAX: Duration = Duration::from_secs(2);

/// Symlinks followed from a watched file before the walk gives up (a loop): the kernel's own
/// limit.
const MAX_LINKS: usize = 40;

/// What is watched for, on directories and on the files themselves. Not IN_OPEN, IN_ACCESS or
/// IN_CLOSE_NOWRITE: reading the files again would wake the watch again.
fn events() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
}

/// The watch could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {} for changes: {reason}", file.display())]
pub(crate) struct WatchError {
    pub(crate) file: PathBuf,
    reason: String,
}

/// Watches files for changes on disk.
pub(crate) struct Watch {
    inotify: AsyncFd<Fd>,
    files: Vec<PathBuf>,
    /// The watches in place, with what each watches.
    watching: Vec<(PathBuf, WatchDescriptor)>,
    /// The burst of events being waited out: when its first and its last event came.
    burst: Option<(Instant, Instant)>,
}

impl Watch {
    /// Starts watching `files`. Fails when inotify cannot be used, or a file's directory cannot
    /// be watched; after that the watch gets by with what it can watch. Needs the tokio runtime.
    pub(crate) fn new(files: Vec<PathBuf>) -> Result<Self, WatchError> {
        let fail = |file: &Path, reason: String| WatchError {
            file: file.to_path_buf(),
            reason,
        };
        let first = files.first().cloned().unwrap_or_default();
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| fail(&first, format!("inotify: {e}")))?;
        // SAFETY: `Fd` owns the inotify descriptor, which stays open, and the same, for as
        // long as the `AsyncFd` that owns the `Fd`.
        let inotify = unsafe { AsyncFd::register_with_interest(Fd(inotify), Interest::READABLE) }
            .map_err(|e| fail(&first, e.to_string()))?;
        for file in &files {
            let dir = directory_of(file);
            inotify
                .get_ref()
                .0
                .add_watch(&dir, events())
                .map_err(|e| fail(file, format!("{}: {e}", dir.display())))?;
        }
        let mut watch = Self {
            inotify,
            files,
            watching: Vec::new(),
            burst: None,
        };
        watch.rearm();
        Ok(watch)
    }

    /// Resolves once the files may have changed: after a burst of events has settled (no event
    /// for [`QUIET`], or [`BURST_MAX`] after its first), and the watch has moved to whatever the
    /// files now are. Cancel-safe: events already seen count towards the next call.
    pub(crate) async fn changed(&mut self) {
        loop {
            let settles = self
                .burst
                .map(|(first, last)| (last + QUIET).min(first + BURST_MAX));
            let events = tokio::select! {
                ready = self.inotify.readable() => {
                    let Ok(mut ready) = ready else {
                        // The descriptor is unusable; nothing more can be learned from it.
                        return std::future::pending().await;
                    };
                    match ready.try_io(|fd| fd.get_ref().0.read_events().map_err(Into::into)) {
                        Ok(Ok(events)) => events,
                        Ok(Err(e)) => {
                            tracing::warn!(target: "rodent::files", error = %e, "cannot read file change events");
                            Vec::new()
                        }
                        Err(_would_block) => continue,
                    }
                }
                () = sleep_until(settles) => {
                    self.burst = None;
                    self.rearm();
                    return;
                }
            };
            let live: BTreeSet<WatchDescriptor> = self.watching.iter().map(|(_, wd)| *wd).collect();
            // Events of watches already removed (their last one, IN_IGNORED) are old news.
            if events
                .iter()
                .any(|e| live.contains(&e.wd) || e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW))
            {
                let now = Instant::now();
                self.burst = Some(self.burst.map_or((now, now), |(first, _)| (first, now)));
            }
        }
    }

    /// Watches what the files are now, and stops watching what they no longer are.
    fn rearm(&mut self) {
        let inotify = &self.inotify.get_ref().0;
        let mut watching = Vec::new();
        for place in places(&self.files) {
            // The same descriptor again for what is watched already; a new one for a new
            // directory at an old name. What cannot be watched (gone again, no permission) is
            // done without: its nearest ancestor is watched.
            if let Ok(wd) = inotify.add_watch(&place, events()) {
                watching.push((place, wd));
            }
        }
        for (_, wd) in &self.watching {
            if !watching.iter().any(|(_, kept)| kept == wd) {
                let _ = inotify.rm_watch(*wd);
            }
        }
        tracing::debug!(
            target: "rodent::files",
            watching = ?watching.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>(),
            "watching for changes"
        );
        self.watching = watching;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What to watch for `files`: see the module's documentation.
fn places(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut places = BTreeSet::new();
    for file in files {
        let mut path = std::path::absolute(file).unwrap_or_else(|_| file.clone());
        for _ in 0..MAX_LINKS {
            let dir = directory_of(&path);
            places.insert(existing(&dir));
            if let Ok(real) = dir.canonicalize() {
                places.insert(real);
            }
            match std::fs::read_link(&path) {
                Ok(target) => path = dir.join(target),
                Err(_) => break,
            }
        }
        if std::fs::metadata(file).is_ok_and(|m| m.is_file()) {
            places.insert(file.clone());
        }
    }
    places
}

/// The directory `file` is in.
fn directory_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => PathBuf::from("/"),
    }
}

/// `dir`, or its nearest ancestor that is a directory.
fn existing(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.is_dir())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// The inotify descriptor, for `AsyncFd`.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rodent-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_kubelet_volume_is_watched_where_its_symlinks_lead() {
        let dir = dir("kubelet");
        let data = dir.join("..2026_12_01_10_00_00.123");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("rodent.env"), "A=1\n").unwrap();
        symlink(data.file_name().unwrap(), dir.join("..data")).unwrap();
        symlink("..data/rodent.env", dir.join("rodent.env")).unwrap();
        let places = places(&[dir.join("rodent.env")]);
        assert!(places.contains(&dir), "{places:?}");
        assert!(places.contains(&data.canonicalize().unwrap()), "{places:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_watched_through_its_ancestor_and_loops_end() {
        let dir = dir("missing");
        let places = places(&[dir.join("gone/deeper/rodent.env")]);
        assert_eq!(places, BTreeSet::from([dir.clone()]));
        let looped = dir.join("loop");
        symlink(&looped, &looped).unwrap();
        assert_eq!(super::places(&[looped]), BTreeSet::from([dir.clone()]));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
