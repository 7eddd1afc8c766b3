//! The service's side of the supervisor: what a re-executed rodent inherits from it.

use std::os::fd::OwnedFd;

use tokio::io::AsyncReadExt;

use super::{MARKER, TARGET};
use crate::config::Vars;
use crate::process::daemon::Report;
use crate::process::handoff;

/// The service's end of the supervisor: the reaped-orphan totals, and the daemon report pipe
/// when the supervisor is itself a detached daemon.
#[derive(Debug)]
pub(crate) struct Link {
    counts: OwnedFd,
    report: Option<Report>,
}

impl Link {
    pub(super) fn inherited(vars: &Vars) -> Option<Self> {
        let supervisor = handoff::handed_down(vars, MARKER)?;
        Some(Self {
            counts: supervisor.claim()?,
            report: Report::inherited(vars),
        })
    }

    /// The daemon report pipe, when the supervisor was started by `serve --detach`: the service
    /// reports readiness in its place.
    pub(crate) fn take_report(&mut self) -> Option<Report> {
        self.report.take()
    }

    /// Feeds every total the supervisor sends to `update`. Must be called inside a Tokio
    /// runtime; the task ends when the supervisor closes the pipe.
    pub(crate) fn publish(self, update: impl Fn(u64) + Send + 'static) {
        let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(self.counts) {
            Ok(pipe) => pipe,
            Err(e) => {
                tracing::warn!(target: TARGET, error = %e, "cannot read the supervisor's zombie counts");
                return;
            }
        };
        tokio::spawn(async move {
            let mut total = [0u8; 8];
            while pipe.read_exact(&mut total).await.is_ok() {
                update(u64::from_le_bytes(total));
            }
        });
    }
}
