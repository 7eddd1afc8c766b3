//! Who holds a `flock`, read from `/proc/locks` without touching the lock.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use nix::unistd::Pid;

/// The `flock`s on one file, as `/proc/locks` lists them.
pub(super) struct Locks {
    /// The exclusive holder: `Some(None)` when one exists but its PID is not visible here.
    pub(super) writer: Option<Option<Pid>>,
}

/// Reads `/proc/locks` for the file behind `meta`; `None` when it cannot be read.
///
/// Lines look like `1: FLOCK  ADVISORY  WRITE 1234 fe:00:5374941 0 EOF` (device major and minor
/// in hex, inode in decimal); `->` lines are waiters, not holders.
pub(super) fn locks(meta: &Metadata) -> Option<Locks> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let wanted = (
        u64::from(libc::major(meta.dev())),
        u64::from(libc::minor(meta.dev())),
        meta.ino(),
    );
    let mut writer = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") || fields.len() < 6 {
            continue;
        }
        if fields[3] != "WRITE" || device_and_inode(fields[5]) != Some(wanted) {
            continue;
        }
        let pid = fields[4].parse::<i32>().ok().filter(|&p| p > 0);
        writer = Some(pid.map(Pid::from_raw));
    }
    Some(Locks { writer })
}

fn device_and_inode(field: &str) -> Option<(u64, u64, u64)> {
    let mut parts = field.split(':');
    let major = u64::from_str_radix(parts.next()?, 16).ok()?;
    let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
    let inode = parts.next()?.parse().ok()?;
    Some((major, minor, inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_inode_parse_as_proc_locks_writes_them() {
        assert_eq!(device_and_inode("fe:00:5374941"), Some((0xfe, 0, 5374941)));
        assert_eq!(device_and_inode("00:1a:12"), Some((0, 0x1a, 12)));
        assert_eq!(device_and_inode("garbage"), None);
    }
}
