//! Listening sockets a process inherits instead of binding: systemd's socket activation
//! (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, as a `.socket` unit, `systemd-socket-activate`
//! or Podman set them), and the socket rodent hands down itself, to the service under its PID 1
//! supervisor and to the successor of `rodent restart` (`RODENT_LISTENER`, and
//! `RODENT_MANAGEMENT_LISTENER` for the management port's).
//!
//! The protocol (`sd_listen_fds(3)`): descriptors start at 3; `LISTEN_PID` must be this
//! process, otherwise the variables were meant for another one (a parent that exported them by
//! mistake) and are ignored; every passed descriptor is marked close-on-exec. rodent serves one
//! socket: the only one passed, or the one named `http` (`FileDescriptorName=http`). It must be
//! a listening TCP socket; anything else is a configuration error naming the variable.
//!
//! Written here rather than taken from `listenfd`, `sd-listen-fds` or `libsystemd`: all three
//! read the process environment themselves (rodent reads a snapshot it validates once, and
//! tests pass a map) and the two that clean up call `env::remove_var` at an arbitrary point,
//! which is unsound once threads exist; none checks that the socket listens (`SO_ACCEPTCONN`);
//! `listenfd` also accepts a missing `LISTEN_PID`, and `sd-listen-fds` leaves the descriptors
//! inheritable by every child process.

use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::process::Command;

use nix::unistd::{Pid, getpid};

use super::handoff::{self, claim_inherited};
use crate::config::Vars;

/// The variables of the protocol, forgotten once read.
pub(crate) const VARIABLES: [&str; 3] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];
/// `SD_LISTEN_FDS_START`.
const FIRST_FD: RawFd = 3;
/// The name a socket unit gives rodent's socket when it passes several.
const NAME: &str = "http";
/// The internal variable naming the socket a rodent parent hands down (see [`handoff`]).
pub(crate) const HANDED_DOWN: &str = "RODENT_LISTENER";
/// The same for the management port's socket, which a predecessor hands to its successor
/// (`RODENT_MANAGEMENT_PORT`).
pub(crate) const MANAGEMENT_HANDED_DOWN: &str = "RODENT_MANAGEMENT_LISTENER";

/// Where an inherited socket came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A service manager: systemd, `systemd-socket-activate`, Podman.
    ServiceManager,
    /// The rodent that started this one: its supervisor, or its predecessor.
    Parent,
}

/// A listening socket this process did not bind.
#[derive(Debug)]
pub(crate) struct Inherited {
    pub(crate) listener: TcpListener,
    pub(crate) fd: RawFd,
    pub(crate) name: Option<String>,
    pub(crate) source: Source,
}

/// What the environment says about an inherited socket.
#[derive(Debug)]
pub(crate) enum Activation {
    /// Nothing inherited: bind `RODENT_HOST:RODENT_PORT`.
    None,
    /// `LISTEN_FDS` is set, but for another process (`LISTEN_PID`, unset if `None`).
    NotOurs {
        listen_pid: Option<String>,
    },
    Inherited(Inherited),
}

/// A socket activation variable that cannot be honoured.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value}: {problem}")]
pub(crate) struct ActivationError {
    pub(crate) variable: &'static str,
    pub(crate) value: String,
    pub(crate) problem: String,
}

impl Activation {
    /// Reads the variables from `vars` and claims the socket they describe.
    ///
    /// Claims descriptors by number: call it once, at startup, before anything could have
    /// opened another file under those numbers.
    pub(crate) fn from_vars(vars: &Vars) -> Result<Self, ActivationError> {
        if let Some(inherited) = handed_down(vars)? {
            return Ok(Self::Inherited(inherited));
        }
        let Some(count) = vars.get("LISTEN_FDS") else {
            return Ok(Self::None);
        };
        let invalid = |variable: &'static str, value: &str, problem: String| ActivationError {
            variable,
            value: value.to_string(),
            problem,
        };
        let listen_pid = vars.get("LISTEN_PID");
        match listen_pid.map(|p| p.trim().parse::<i32>()) {
            None => return Ok(Self::NotOurs { listen_pid: None }),
            Some(Err(_)) => {
                return Err(invalid(
                    "LISTEN_PID",
                    listen_pid.map_or("", String::as_str),
                    "expected the PID of the process the sockets are for".into(),
                ));
            }
            Some(Ok(pid)) if Pid::from_raw(pid) != getpid() => {
                return Ok(Self::NotOurs {
                    listen_pid: listen_pid.cloned(),
                });
            }
            Some(Ok(_)) => {}
        }
        let count: RawFd = match count.trim().parse() {
            Ok(n) if (1..=1024).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "LISTEN_FDS",
                    count,
                    "expected the number of sockets passed (at least 1)".into(),
                ));
            }
        };
        // sd_listen_fds does this for every descriptor passed, used or not: none of them is for
        // the processes this one starts.
        for fd in FIRST_FD..FIRST_FD + count {
            // SAFETY: F_SETFD on a number that is not open fails with EBADF and changes nothing.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let names: Vec<&str> = vars
            .get("LISTEN_FDNAMES")
            .map(|n| n.split(':').collect())
            .unwrap_or_default();
        let index = if count == 1 {
            0
        } else {
            match names.iter().position(|n| *n == NAME) {
                Some(i) if (i as RawFd) < count => i as RawFd,
                _ => {
                    return Err(invalid(
                        "LISTEN_FDNAMES",
                        vars.get("LISTEN_FDNAMES").map_or("", String::as_str),
                        format!(
                            "{count} sockets were passed and none is named {NAME:?}: name \
                             rodent's with FileDescriptorName={NAME}"
                        ),
                    ));
                }
            }
        };
        let fd = FIRST_FD + index;
        let listener = claim(fd).map_err(|problem| {
            invalid(
                "LISTEN_FDS",
                count.to_string().as_str(),
                format!("descriptor {fd} is not a listening TCP socket: {problem}"),
            )
        })?;
        Ok(Self::Inherited(Inherited {
            listener,
            fd,
            name: names.get(index as usize).map(|n| n.to_string()),
            source: Source::ServiceManager,
        }))
    }
}

/// The socket a rodent parent handed down, if the variable names our parent.
fn handed_down(vars: &Vars) -> Result<Option<Inherited>, ActivationError> {
    Ok(
        claim_handed_down(vars, HANDED_DOWN)?.map(|(listener, fd)| Inherited {
            listener,
            fd,
            name: None,
            source: Source::Parent,
        }),
    )
}

/// The management port's socket a predecessor handed down, if the variable names our parent.
/// Claims the descriptor: call it once, at startup.
pub(crate) fn management_handed_down(vars: &Vars) -> Result<Option<TcpListener>, ActivationError> {
    Ok(claim_handed_down(vars, MANAGEMENT_HANDED_DOWN)?.map(|(listener, _)| listener))
}

/// The listener named in `variable` ([`handoff`]), if this process's parent named it.
fn claim_handed_down(
    vars: &Vars,
    variable: &'static str,
) -> Result<Option<(TcpListener, RawFd)>, ActivationError> {
    let Some(parent) = handoff::handed_down(vars, variable) else {
        return Ok(None);
    };
    let listener = claim(parent.fd).map_err(|problem| ActivationError {
        variable,
        value: vars.get(variable).cloned().unwrap_or_default(),
        problem: format!(
            "descriptor {} is not a listening TCP socket: {problem}",
            parent.fd
        ),
    })?;
    Ok(Some((listener, parent.fd)))
}

/// Takes `fd` as a listener once it is known to be one; `Err` says what it is instead.
fn claim(fd: RawFd) -> Result<TcpListener, &'static str> {
    let owned = claim_inherited(fd).ok_or("it is not open")?;
    kind(owned.as_fd())?;
    let listener = TcpListener::from(owned);
    // Tokio drives it; the service manager may have passed it blocking.
    listener
        .set_nonblocking(true)
        .map_err(|_| "it cannot be made non-blocking")?;
    Ok(listener)
}

/// Checks that `fd` is a listening TCP socket, IPv4 or IPv6.
fn kind(fd: BorrowedFd<'_>) -> Result<(), &'static str> {
    let stat = nix::sys::stat::fstat(fd).map_err(|_| "it is not open")?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("it is not a socket");
    }
    // nix has no SO_DOMAIN, so all three are read the same way.
    let option = |name: libc::c_int| -> Option<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`, on a descriptor open for
        // the borrow's lifetime.
        let ok = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        } == 0;
        ok.then_some(value)
    };
    match option(libc::SO_DOMAIN) {
        Some(libc::AF_INET | libc::AF_INET6) => {}
        Some(libc::AF_UNIX) => return Err("it is a Unix socket"),
        _ => return Err("it is not an IP socket"),
    }
    match option(libc::SO_TYPE) {
        Some(libc::SOCK_STREAM) => {}
        Some(libc::SOCK_DGRAM) => return Err("it is a datagram (UDP) socket"),
        _ => return Err("it is not a stream socket"),
    }
    match option(libc::SO_ACCEPTCONN) {
        Some(1) => Ok(()),
        _ => Err("it does not listen (a connected or unlistened socket)"),
    }
}

/// Hands `listener` down to the rodent `command` starts, in [`HANDED_DOWN`]; the socket
/// activation variables, which were this process's, are not passed on.
pub(crate) fn hand_down(command: &mut Command, listener: &impl AsRawFd) {
    for name in VARIABLES {
        command.env_remove(name);
    }
    handoff::hand_down(command, HANDED_DOWN, listener.as_raw_fd());
}

/// Hands the management port's `listener` down the same way, in [`MANAGEMENT_HANDED_DOWN`].
pub(crate) fn hand_down_management(command: &mut Command, listener: &impl AsRawFd) {
    handoff::hand_down(command, MANAGEMENT_HANDED_DOWN, listener.as_raw_fd());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_set_is_nothing_inherited() {
        assert!(matches!(
            Activation::from_vars(&Vars::new()),
            Ok(Activation::None)
        ));
    }

    #[test]
    fn another_process_s_variables_are_not_ours() {
        let other = (getpid().as_raw() + 1).to_string();
        match Activation::from_vars(&vars(&[("LISTEN_FDS", "1"), ("LISTEN_PID", &other)])) {
            Ok(Activation::NotOurs { listen_pid }) => assert_eq!(listen_pid, Some(other)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Activation::from_vars(&vars(&[("LISTEN_FDS", "1")])),
            Ok(Activation::NotOurs { listen_pid: None })
        ));
    }

    #[test]
    fn a_socket_handed_down_by_another_parent_is_not_ours() {
        let stranger = format!("{}:3", getpid());
        assert!(matches!(
            Activation::from_vars(&vars(&[(HANDED_DOWN, &stranger)])),
            Ok(Activation::None)
        ));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let me = getpid().as_raw().to_string();
        let error =
            Activation::from_vars(&vars(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "me")])).unwrap_err();
        assert_eq!(error.variable, "LISTEN_PID");
        let error = Activation::from_vars(&vars(&[("LISTEN_FDS", "zero"), ("LISTEN_PID", &me)]))
            .unwrap_err();
        assert_eq!(error.variable, "LISTEN_FDS");
        let error =
            Activation::from_vars(&vars(&[("LISTEN_FDS", "0"), ("LISTEN_PID", &me)])).unwrap_err();
        assert_eq!(error.variable, "LISTEN_FDS");
    }

    #[test]
    fn what_a_descriptor_is_when_it_is_not_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(kind(listener.as_fd()), Ok(()));
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(
            kind(stream.as_fd())
                .unwrap_err()
                .contains("does not listen")
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(kind(udp.as_fd()).unwrap_err().contains("datagram"));
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(kind(file.as_fd()), Err("it is not a socket"));
    }
}
