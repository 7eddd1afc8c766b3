//! The PID file: at most one running instance per file, and the way `rodent status`, `stop` and
//! `reload` find it.
//!
//! Who runs is decided by an exclusive `flock` held for the life of the process, never by the
//! file's existence or by `kill(pid, 0)` on the number inside: the kernel releases the lock when
//! its holder dies, however it dies, so a file left by a SIGKILLed process is simply taken over,
//! and a PID since reused by an unrelated process is never mistaken for a live instance.
//!
//! The file is opened with `O_NOFOLLOW` (a symlink in its place, which could make a root process
//! truncate any file, is refused), and the PID is written only once the lock is won. The holder
//! removes the file when it exits; a starter that opened the file just before that removal would
//! lock an unlinked inode, so every winner checks that the path still names the inode it locked.
//!
//! Readers ([`status`]) never take the lock themselves: even a shared lock held for a moment
//! would make a concurrent start fail. They read the holder from `/proc/locks` instead.
//!
//! `rodent restart` hands the file to the successor in one rename (`handover`).

mod handover;
mod locks;

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::unistd::Pid;

use crate::exit::Exit;
use locks::{Locks, locks};

/// How long a loser keeps trying when the lock is busy but no exclusive holder is visible in
/// `/proc/locks` (a reader peeking with a shared lock where `/proc` is not mounted).
const BUSY_RETRY: Duration = Duration::from_millis(100);
/// How long a loser waits for the winner to write its PID, when `/proc/locks` cannot name it.
const CONTENT_WAIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(2);
/// A winner whose file keeps being replaced under it gives up after this many attempts.
const ATTEMPTS: usize = 20;

/// Why the PID file could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PidFileError {
    #[error("another instance is already running (PID: {})", pid.map_or("unknown".to_string(), |p| p.to_string()))]
    AlreadyRunning { pid: Option<Pid> },
    #[error("refusing the PID file {}: it is a symbolic link", path.display())]
    Symlink { path: PathBuf },
    #[error("refusing the PID file {}: it is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot open the PID file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot lock the PID file {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
    #[error("cannot write the PID file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

impl PidFileError {
    /// The documented exit code: 75 when another instance runs, 1 for everything else.
    pub(crate) fn exit(&self) -> Exit {
        match self {
            Self::AlreadyRunning { .. } => Exit::AlreadyRunning,
            _ => Exit::Failure,
        }
    }
}

/// The held PID file. Dropping it removes the file, then releases the lock.
#[must_use = "the PID file is released as soon as this is dropped"]
pub(crate) struct PidFileLock {
    path: PathBuf,
    /// Which inode we locked: the path is only removed while it still names this one.
    identity: (u64, u64),
    _lock: Flock<File>,
}

impl std::fmt::Debug for PidFileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PidFileLock")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PidFileLock {
    /// Takes the PID file for this process and writes its PID into it.
    pub(crate) fn acquire(path: &Path) -> Result<Self, PidFileError> {
        for _ in 0..ATTEMPTS {
            let file = open(path, true)?;
            let locked = lock_exclusive(path, file)?;
            // The previous holder may have removed the path between our open and our lock: we
            // would hold a lock on a file nobody else can find.
            let held = locked.metadata().map_err(|source| PidFileError::Lock {
                path: path.to_path_buf(),
                source,
            })?;
            let current = std::fs::symlink_metadata(path).ok();
            if current.is_some_and(|c| identity(&c) == identity(&held)) {
                let pid = nix::unistd::getpid();
                write_pid(&locked, pid).map_err(|source| PidFileError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
                return Ok(Self {
                    path: path.to_path_buf(),
                    identity: identity(&held),
                    _lock: locked,
                });
            }
        }
        Err(PidFileError::Lock {
            path: path.to_path_buf(),
            source: io::Error::other("the file kept being replaced while it was being locked"),
        })
    }
}

impl Drop for PidFileLock {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| identity(&m) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
        // `_lock` is dropped (unlocked) only after this: unlinked first, unlocked second, so a
        // starter that wins our inode afterwards sees that the path no longer names it.
    }
}

/// What a PID file says about the instance it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// A process holds the lock: this is its PID.
    Running(Pid),
    /// The file is there but nobody holds its lock: its process (this PID) died without
    /// removing it.
    Dead(Pid),
    /// No file, or an empty one nobody holds.
    NotRunning,
}

/// Reads the state of the instance behind `path` without disturbing it: no lock is taken
/// (where `/proc/locks` can be read), so a start racing with this call is never refused.
pub(crate) fn status(path: &Path) -> Result<Status, PidFileError> {
    let file = match open(path, false) {
        Ok(file) => file,
        Err(PidFileError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(Status::NotRunning);
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata().map_err(|source| PidFileError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let holder = match locks(&meta) {
        Some(locks) => locks.writer,
        // Without /proc: peek with a shared lock, released at once. This is the one case where
        // a start at the very same moment could find the lock busy; starters retry briefly
        // for exactly this reason.
        None => match Flock::lock(clone(path, &file)?, FlockArg::LockSharedNonblock) {
            Ok(_released_on_drop) => None,
            Err((_, Errno::EWOULDBLOCK)) => Some(None),
            Err((_, errno)) => {
                return Err(PidFileError::Lock {
                    path: path.to_path_buf(),
                    source: errno.into(),
                });
            }
        },
    };
    Ok(match holder {
        Some(Some(pid)) => Status::Running(pid),
        // Held, but the holder's PID is not visible from here: trust what it wrote.
        Some(None) => match wait_for_pid(&file) {
            Some(pid) => Status::Running(pid),
            None => {
                return Err(PidFileError::Lock {
                    path: path.to_path_buf(),
                    source: io::Error::other("it is locked by a process whose PID is unknown"),
                });
            }
        },
        None => match read_pid(&file) {
            Some(pid) => Status::Dead(pid),
            None => Status::NotRunning,
        },
    })
}

fn clone(path: &Path, file: &File) -> Result<File, PidFileError> {
    file.try_clone().map_err(|source| PidFileError::Open {
        path: path.to_path_buf(),
        source,
    })
}

fn open(path: &Path, create: bool) -> Result<File, PidFileError> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(create)
        .create(create)
        .mode(0o644)
        .custom_flags(OFlag::O_NOFOLLOW.bits());
    let file = options.open(path).map_err(|source| {
        if source.raw_os_error() == Some(Errno::ELOOP as i32) {
            PidFileError::Symlink {
                path: path.to_path_buf(),
            }
        } else {
            PidFileError::Open {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let is_file = file.metadata().is_ok_and(|m| m.file_type().is_file());
    if !is_file {
        return Err(PidFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Wins the lock, or says who holds it.
fn lock_exclusive(path: &Path, mut file: File) -> Result<Flock<File>, PidFileError> {
    let started = Instant::now();
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((returned, Errno::EWOULDBLOCK)) => file = returned,
            Err((_, errno)) => {
                return Err(PidFileError::Lock {
                    path: path.to_path_buf(),
                    source: errno.into(),
                });
            }
        }
        let visible = file.metadata().ok().and_then(|m| locks(&m));
        if let Some(Locks {
            writer: Some(pid), ..
        }) = visible
        {
            return Err(PidFileError::AlreadyRunning { pid });
        }
        if started.elapsed() >= BUSY_RETRY {
            return Err(PidFileError::AlreadyRunning {
                pid: wait_for_pid(&file),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The PID in the file, waiting a moment for a winner that has locked but not yet written.
fn wait_for_pid(file: &File) -> Option<Pid> {
    let started = Instant::now();
    loop {
        if let Some(pid) = read_pid(file) {
            return Some(pid);
        }
        if started.elapsed() >= CONTENT_WAIT {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

fn write_pid(file: &File, pid: Pid) -> io::Result<()> {
    file.set_len(0)?;
    file.write_all_at(format!("{pid}\n").as_bytes(), 0)?;
    file.sync_all()
}

fn read_pid(file: &File) -> Option<Pid> {
    let mut bytes = [0u8; 32];
    let n = file.read_at(&mut bytes, 0).ok()?;
    std::str::from_utf8(&bytes[..n])
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&pid| pid > 0)
        .map(Pid::from_raw)
}

fn identity(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test, removed when dropped.
    pub(super) struct Scratch(pub(super) PathBuf);

    impl Scratch {
        pub(super) fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("rodent-pidfile-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub(super) fn pid_file(&self) -> PathBuf {
            self.0.join("rodent.pid")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_holder_is_running_and_a_second_lock_fails_naming_it() {
        let dir = Scratch::new("holder");
        let path = dir.pid_file();
        let held = PidFileLock::acquire(&path).expect("a fresh file is won");
        let me = nix::unistd::getpid();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{me}\n"));
        assert_eq!(status(&path).unwrap(), Status::Running(me));
        // flock locks belong to open file descriptions: a second open in the same process
        // conflicts like another process would.
        match PidFileLock::acquire(&path) {
            Err(PidFileError::AlreadyRunning { pid }) => assert_eq!(pid, Some(me)),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        drop(held);
        assert!(!path.exists(), "the holder removes the file");
        assert_eq!(status(&path).unwrap(), Status::NotRunning);
    }

    #[test]
    fn a_file_nobody_holds_is_dead_and_can_be_taken_over() {
        let dir = Scratch::new("stale");
        let path = dir.pid_file();
        std::fs::write(&path, "999999\n").unwrap();
        assert_eq!(status(&path).unwrap(), Status::Dead(Pid::from_raw(999999)));
        let held = PidFileLock::acquire(&path).expect("a stale file is taken over");
        assert_eq!(
            status(&path).unwrap(),
            Status::Running(nix::unistd::getpid())
        );
        drop(held);
    }

    #[test]
    fn a_symlink_is_refused() {
        let dir = Scratch::new("symlink");
        let path = dir.pid_file();
        let target = path.with_file_name("elsewhere");
        std::fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(
            PidFileLock::acquire(&path),
            Err(PidFileError::Symlink { .. })
        ));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    }

    #[test]
    fn messages_are_one_line() {
        let e = PidFileError::AlreadyRunning {
            pid: Some(Pid::from_raw(42)),
        };
        assert_eq!(
            e.to_string(),
            "another instance is already running (PID: 42)"
        );
        assert_eq!(e.exit(), Exit::AlreadyRunning);
    }
}
