//! [`read`]: the one way rodent reads a file it was pointed at (the env file, a certificate, a
//! key), at start and while it serves. Bounded in size and in time, and never on the caller's
//! own thread: a FIFO, a device such as `/dev/zero`, a directory or a huge file is refused as
//! soon as it is opened, and a file on a hung mount (whose `open` or `read` blocks in the kernel,
//! where no timeout can interrupt it) is given up on after [`WITHIN`], its thread left behind.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The largest file read: an env file or a PEM certificate chain is a few kilobytes, and a file
/// larger than this is not one (or is still being written).
pub(crate) const MAX_BYTES: u64 = 1024 * 1024;

/// The longest a read may take, from `open` to the last byte.
pub(crate) const WITHIN: Duration = Duration::from_secs(5);

/// Reads may be left blocked on a hung mount; past this many still blocked, a read is refused at
/// once rather than leave yet another thread behind.
const MAX_BLOCKED: usize = 4;

/// Reads whose thread has not returned yet, finished or given up on.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Why a file could not be read. Its text never holds any of the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReadError {
    /// `open` or `read` failed (missing, no permission, a symlink loop, ...).
    #[error("{0}")]
    Io(String),
    #[error("it is a {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("it is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("it could not be read within {}s (a hung mount?)", WITHIN.as_secs())]
    TimedOut,
    #[error("{MAX_BLOCKED} earlier reads are still blocked (a hung mount?)")]
    Blocked,
}

/// Reads the whole file at `path`, waiting at most [`WITHIN`]. For code that may block that
/// long: the start, the commands; a running service calls [`read_async`].
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, ReadError> {
    let path = path.to_path_buf();
    waiting(WITHIN, move || read_here(&path))
}

/// [`read`] for async code: the caller's task waits, its thread does not.
pub(crate) async fn read_async(path: &Path) -> Result<Vec<u8>, ReadError> {
    let path = path.to_path_buf();
    off_thread(move || read_here(&path)).await
}

type Outcome = Result<Vec<u8>, ReadError>;

/// Runs `work` on a thread of its own and waits for it at most `within`.
fn waiting(within: Duration, work: impl FnOnce() -> Outcome + Send + 'static) -> Outcome {
    let (tx, rx) = mpsc::sync_channel(1);
    let reader = spawn(work, move |read| {
        let _ = tx.send(read);
    })?;
    match rx.recv_timeout(within) {
        Ok(read) => {
            // Joined, so that the thread is gone when this returns: the start forks after it
            // (a daemon, the PID 1 supervisor), which needs a process with one thread.
            let _ = reader.join();
            read
        }
        Err(_) => Err(ReadError::TimedOut),
    }
}

/// Runs `work` on a thread of its own; the caller's task waits at most [`WITHIN`].
async fn off_thread(work: impl FnOnce() -> Outcome + Send + 'static) -> Outcome {
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawn(work, move |read| {
        let _ = tx.send(read);
    })?;
    match tokio::time::timeout(WITHIN, rx).await {
        Ok(Ok(read)) => read,
        // The thread cannot drop its sender without sending; a timeout is a timeout.
        Ok(Err(_)) | Err(_) => Err(ReadError::TimedOut),
    }
}

/// Starts `work` on a thread of its own, which hands its outcome to `deliver`.
fn spawn(
    work: impl FnOnce() -> Outcome + Send + 'static,
    deliver: impl FnOnce(Outcome) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, ReadError> {
    if RUNNING.fetch_add(1, Ordering::AcqRel) >= MAX_BLOCKED {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
        return Err(ReadError::Blocked);
    }
    std::thread::Builder::new()
        .name("rodent-read".into())
        .spawn(move || {
            let read = work();
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            deliver(read);
        })
        .map_err(|e| {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            ReadError::Io(format!("cannot start a thread to read it: {e}"))
        })
}

/// The read itself, on the calling thread.
fn read_here(path: &Path) -> Outcome {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. A file under a
    // lease (a file server's) answers EWOULDBLOCK instead of waiting for its holder to let go:
    // it is waited for like any slow read, here, within the bound. Nothing blocks on a regular
    // file's data either way.
    let open = |flags| {
        OpenOptions::new()
            .read(true)
            .custom_flags(flags | libc::O_NOCTTY)
            .open(path)
    };
    let file = match open(libc::O_NONBLOCK) {
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => open(0),
        opened => opened,
    }
    .map_err(io)?;
    // The type of what was opened, not of what the path named a moment before.
    let metadata = file.metadata().map_err(io)?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotAFile(match () {
            () if kind.is_dir() => "directory",
            () if kind.is_fifo() => "FIFO",
            () if kind.is_char_device() => "character device",
            () if kind.is_block_device() => "block device",
            () if kind.is_socket() => "socket",
            () => "special file",
        }));
    }
    if metadata.len() > MAX_BYTES {
        return Err(ReadError::TooLarge);
    }
    read_bounded(file)
}

/// Reads at most [`MAX_BYTES`]: a file can grow after its size was read, and some (in `/proc`)
/// say they are empty and are not.
fn read_bounded(file: File) -> Outcome {
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

fn io(e: std::io::Error) -> ReadError {
    ReadError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rodent-read-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_regular_file_is_read_whole() {
        let dir = dir("regular");
        let path = dir.join("f");
        std::fs::write(&path, b"A=1\n").unwrap();
        assert_eq!(read(&path).unwrap(), b"A=1\n");
        std::fs::write(&path, vec![b'x'; MAX_BYTES as usize]).unwrap();
        assert_eq!(read(&path).unwrap().len() as u64, MAX_BYTES);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn what_is_not_a_small_regular_file_is_refused_at_once() {
        let dir = dir("refused");
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let huge = dir.join("huge");
        File::create(&huge).unwrap().set_len(MAX_BYTES + 1).unwrap();
        let looped = dir.join("loop");
        symlink(&looped, &looped).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(read(&fifo), Err(ReadError::NotAFile("FIFO")));
        assert_eq!(
            read(Path::new("/dev/zero")),
            Err(ReadError::NotAFile("character device"))
        );
        assert_eq!(read(&dir), Err(ReadError::NotAFile("directory")));
        assert_eq!(read(&huge), Err(ReadError::TooLarge));
        assert!(matches!(read(&looped), Err(ReadError::Io(e)) if e.contains("symbolic links")));
        assert!(matches!(read(&dir.join("missing")), Err(ReadError::Io(_))));
        assert!(started.elapsed() < WITHIN / 2, "{:?}", started.elapsed());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_that_lies_about_its_size_is_cut_at_the_bound() {
        // /dev/zero behind a regular file's descriptor is not possible; /proc files say they are
        // empty. The bound is on what is read, whatever the size said.
        let (reader, writer) = std::io::pipe().unwrap();
        let writing = std::thread::spawn(move || {
            let mut writer = writer;
            let chunk = vec![0u8; 64 * 1024];
            while std::io::Write::write_all(&mut writer, &chunk).is_ok() {}
        });
        let file = File::from(std::os::fd::OwnedFd::from(reader));
        assert_eq!(read_bounded(file), Err(ReadError::TooLarge));
        writing.join().unwrap();
    }

    /// A FIFO opened without O_NONBLOCK waits for a writer, as a file on a hung mount waits for
    /// its server: a read that does not return on its own. Returns the way to unblock it, as a
    /// mount that recovers would.
    fn blocking_read(name: &str) -> (impl FnOnce() -> Outcome + Send + 'static, impl FnOnce()) {
        let dir = dir(name);
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let blocked = fifo.clone();
        let work = move || File::open(&blocked).map(|_| Vec::new()).map_err(io);
        let unblock = move || {
            let _writer = OpenOptions::new().write(true).open(&fifo).unwrap();
            std::fs::remove_dir_all(dir).unwrap();
        };
        (work, unblock)
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_blocks_is_given_up_on_and_the_task_goes_on() {
        let (work, unblock) = blocking_read("blocked-async");
        assert_eq!(off_thread(work).await, Err(ReadError::TimedOut));
        unblock();
    }

    #[test]
    fn a_read_that_blocks_is_given_up_on_at_the_bound() {
        let (work, unblock) = blocking_read("blocked");
        let started = std::time::Instant::now();
        let within = Duration::from_millis(200);
        assert_eq!(waiting(within, work), Err(ReadError::TimedOut));
        assert!(started.elapsed() < within * 10, "{:?}", started.elapsed());
        unblock();
    }
}
