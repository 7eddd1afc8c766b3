//! The files rodent is pointed at and reads while it serves: the env file (`RODENT_ENV_FILE`),
//! the TLS certificate and key (`RODENT_TLS_CERT`, `RODENT_TLS_KEY`).
//!
//! | part | owns |
//! | --- | --- |
//! | `read` | [`read`]: bounded in size and time, off the caller's thread; the one way they are read |
//! | `watch` | [`Watch`]: changes on disk, debounced, through renames and the kubelet's symlink swap |

mod read;
mod watch;

pub(crate) use read::{ReadError, read, read_async};
pub(crate) use watch::{Watch, WatchError};
