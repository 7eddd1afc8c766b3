//! The PID file passed from one instance to its successor (`rodent restart`) with no moment in
//! which nobody holds it: the successor locks a file of its own beside the PID file
//! ([`PidFileLock::stand_by`]) and, once ready, renames it over the PID file in one step
//! ([`PidFileLock::take_over`]). Before the rename the path names the old instance's locked
//! inode, after it the successor's. The old instance's drop then leaves the file alone, since
//! the path no longer names the inode it locked.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::unistd::{Pid, getpid};

use super::{PidFileError, PidFileLock, Status, identity, lock_exclusive, status, write_pid};

impl PidFileLock {
    /// For the successor of a restart: a lock on a new file beside `path`, holding this
    /// process's PID, that [`take_over`](Self::take_over) later moves over `path`. Until then
    /// the instance being replaced holds `path`.
    pub(crate) fn stand_by(path: &Path) -> Result<Self, PidFileError> {
        let pid = getpid();
        let mut name = std::ffi::OsString::from(".");
        name.push(path.file_name().unwrap_or_default());
        name.push(format!(".{pid}"));
        let temp = path.with_file_name(name);
        // Left by a process that had this PID before and died between creating and renaming.
        let _ = std::fs::remove_file(&temp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&temp)
            .map_err(|source| PidFileError::Open {
                path: temp.clone(),
                source,
            })?;
        let locked = lock_exclusive(&temp, file)?;
        let held = locked.metadata().map_err(|source| PidFileError::Lock {
            path: temp.clone(),
            source,
        })?;
        write_pid(&locked, pid).map_err(|source| PidFileError::Write {
            path: temp.clone(),
            source,
        })?;
        Ok(Self {
            path: temp,
            identity: identity(&held),
            _lock: locked,
        })
    }

    /// Moves a [`stand_by`](Self::stand_by) lock over `path`, which `predecessor` holds (or
    /// nobody, if it died meanwhile): from the rename on, `path` names this process.
    pub(crate) fn take_over(&mut self, path: &Path, predecessor: Pid) -> Result<(), PidFileError> {
        if let Status::Running(holder) = status(path)?
            && holder != predecessor
            && holder != getpid()
        {
            return Err(PidFileError::AlreadyRunning { pid: Some(holder) });
        }
        std::fs::rename(&self.path, path).map_err(|source| PidFileError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        self.path = path.to_path_buf();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Scratch;
    use super::*;

    #[test]
    fn a_successor_takes_the_file_over_in_one_rename() {
        let dir = Scratch::new("takeover");
        let path = dir.pid_file();
        let old = PidFileLock::acquire(&path).expect("a fresh file is won");
        let me = getpid();
        let mut new = PidFileLock::stand_by(&path).expect("a stand-by lock beside it");
        assert_ne!(new.path, path);
        assert_eq!(
            status(&path).unwrap(),
            Status::Running(me),
            "the old one still holds it"
        );
        new.take_over(&path, me)
            .expect("the holder is the predecessor");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{me}\n"));
        drop(old);
        assert!(
            path.exists(),
            "the old holder leaves the successor's file alone"
        );
        assert_eq!(status(&path).unwrap(), Status::Running(me));
        drop(new);
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(&dir.0).unwrap().count(),
            0,
            "nothing left behind"
        );
    }
}
