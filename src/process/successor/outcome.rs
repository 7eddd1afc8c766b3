//! How a restart ended, left by the instance being replaced in a file beside the PID file
//! (`<pid file>.restart`) for the `rodent restart` command, which cannot hear the successor's
//! report itself: the successor is the old instance's child, not the command's.
//!
//! One line, `<old pid> ready <new pid> <address>` or `<old pid> failed <code> <message>`,
//! written in one rename: a reader sees a whole outcome or the previous one, and tells a new one
//! from an old one by the file's identity.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Pid, getpid};

/// How a restart ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recorded {
    Ready {
        old: Pid,
        new: Pid,
        address: Option<SocketAddr>,
    },
    Failed {
        old: Pid,
        code: u8,
        message: String,
    },
}

impl Recorded {
    /// The instance that was to be replaced.
    pub(crate) fn old(&self) -> Pid {
        match self {
            Self::Ready { old, .. } | Self::Failed { old, .. } => *old,
        }
    }

    fn line(&self) -> String {
        match self {
            Self::Ready { old, new, address } => {
                let address = address.map_or("-".to_string(), |a| a.to_string());
                format!("{old} ready {new} {address}\n")
            }
            Self::Failed { old, code, message } => format!("{old} failed {code} {message}\n"),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let line = text.lines().next()?;
        let mut words = line.splitn(4, ' ');
        let old = Pid::from_raw(words.next()?.parse().ok()?);
        match (words.next()?, words.next()?, words.next()) {
            ("ready", new, address) => Some(Self::Ready {
                old,
                new: Pid::from_raw(new.parse().ok()?),
                address: address.and_then(|a| a.parse().ok()),
            }),
            ("failed", code, message) => Some(Self::Failed {
                old,
                code: code.parse().ok()?,
                message: message.unwrap_or_default().to_string(),
            }),
            _ => None,
        }
    }
}

/// Where the outcome of a restart is left: beside the PID file, readable by whoever can read
/// that.
fn path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.file_name().unwrap_or_default().to_os_string();
    name.push(".restart");
    pid_file.with_file_name(name)
}

/// Writes the outcome in one rename, so a reader sees all of it or the previous one.
///
/// The temporary name is predictable and the directory may be writable by others (`/tmp`):
/// whatever is found at that name (a leftover, or a symlink planted there) is unlinked, which
/// removes a link itself, never what it points at; the file is then created anew, `O_EXCL`
/// and `O_NOFOLLOW`, so that if something appears at the name in between the write fails
/// instead of following it. The rename replaces the name `<pid file>.restart` itself, link or
/// not.
pub(crate) fn record(pid_file: &Path, outcome: &Recorded) -> io::Result<()> {
    let path = path(pid_file);
    let mut temp = path.clone().into_os_string();
    temp.push(format!(".{}", getpid()));
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(&temp)?;
    let written = file.write_all(outcome.line().as_bytes());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&temp, &path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(())
}

/// Which outcome file is there now: every write is a new file renamed into place, so a new
/// outcome has a new identity (device, inode, modification time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity(Option<(u64, u64, i64, i64)>);

impl Identity {
    fn of(meta: Option<std::fs::Metadata>) -> Self {
        Self(meta.map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec())))
    }
}

/// The identity of the outcome recorded now (none, if no restart ever recorded one).
pub(crate) fn identity(pid_file: &Path) -> Identity {
    Identity::of(std::fs::symlink_metadata(path(pid_file)).ok())
}

/// The outcome recorded now, and which file it came from.
pub(crate) fn read(pid_file: &Path) -> Option<(Identity, Recorded)> {
    let mut file = File::open(path(pid_file)).ok()?;
    let identity = Identity::of(file.metadata().ok());
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some((identity, Recorded::parse(&text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_as_written() {
        for outcome in [
            Recorded::Ready {
                old: Pid::from_raw(10),
                new: Pid::from_raw(11),
                address: Some("127.0.0.1:8080".parse().unwrap()),
            },
            Recorded::Ready {
                old: Pid::from_raw(10),
                new: Pid::from_raw(11),
                address: None,
            },
            Recorded::Failed {
                old: Pid::from_raw(10),
                code: 78,
                message: "RODENT_PORT=eighty: expected a port".into(),
            },
        ] {
            assert_eq!(Recorded::parse(&outcome.line()), Some(outcome));
        }
        assert_eq!(
            path(Path::new("/run/rodent/rodent.pid")),
            Path::new("/run/rodent/rodent.pid.restart")
        );
    }

    #[test]
    fn a_new_record_has_a_new_identity() {
        let dir = std::env::temp_dir().join(format!("rodent-outcome-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("rodent.pid");
        let before = identity(&pid_file);
        assert!(read(&pid_file).is_none());
        let failed = Recorded::Failed {
            old: getpid(),
            code: 1,
            message: "no".into(),
        };
        record(&pid_file, &failed).unwrap();
        let (first, read_back) = read(&pid_file).unwrap();
        assert_eq!(read_back, failed);
        assert_ne!(first, before);
        assert_eq!(identity(&pid_file), first);
        record(&pid_file, &failed).unwrap();
        assert_ne!(
            identity(&pid_file),
            first,
            "the same outcome again is a new one"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
