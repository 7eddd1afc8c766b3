//! The notes service's own settings, validated with rodent's (exit 78, each bad one named),
//! shown by `notes config`, and re-read on SIGHUP.

use std::path::PathBuf;
use std::time::Duration;

use rodent::config::{Reader, Secret, Var, parse};

/// Every `NOTES_*` variable. What a request or a purge round reads is reloadable (a SIGHUP
/// applies it to the next one); what the pool was opened with is not.
pub(crate) struct Settings {
    /// `NOTES_DATABASE`: the SQLite file, created when missing.
    pub(crate) database: PathBuf,
    /// `NOTES_POOL_SIZE`: connections to it.
    pub(crate) pool_size: u32,
    /// `NOTES_PAGE_SIZE` (reloadable): the most notes `GET /notes` lists.
    pub(crate) page_size: u32,
    /// `NOTES_PURGE_EVERY` (reloadable): how often the purge worker archives and removes
    /// deleted notes.
    pub(crate) purge_every: Duration,
    /// `NOTES_PURGE_RATE` (reloadable): the most notes a second the worker purges, to spare the
    /// disk the requests use.
    pub(crate) purge_rate: u32,
    /// `NOTES_ARCHIVE`: where purged notes are appended, one JSON line each.
    pub(crate) archive: PathBuf,
    /// `NOTES_API_KEY` (secret, reloadable: a key is rotated with a SIGHUP): when set, writing
    /// takes `Authorization: Bearer <key>`.
    pub(crate) api_key: Option<Secret>,
}

impl Settings {
    pub(crate) fn read(vars: &mut Reader) -> Self {
        vars.prefix("NOTES_");
        Self {
            database: vars.get(Var::new("NOTES_DATABASE", "notes.db", path)),
            pool_size: vars.get(Var::new("NOTES_POOL_SIZE", "4", parse::number(1..=64))),
            page_size: vars
                .get(Var::new("NOTES_PAGE_SIZE", "100", parse::number(1..=1000)).reloadable()),
            purge_every: vars
                .get(Var::new("NOTES_PURGE_EVERY", "1m", positive_duration).reloadable()),
            purge_rate: vars
                .get(Var::new("NOTES_PURGE_RATE", "100", parse::number(1..=10_000)).reloadable()),
            archive: vars.get(Var::new("NOTES_ARCHIVE", "notes-archive.jsonl", path)),
            api_key: vars.get(
                Var::optional("NOTES_API_KEY", parse::secret)
                    .secret()
                    .reloadable(),
            ),
        }
    }
}

/// A file's path: anything but empty.
fn path(raw: &str) -> Result<PathBuf, String> {
    match raw.trim() {
        "" => Err("a file path".to_string()),
        raw => Ok(PathBuf::from(raw)),
    }
}

fn positive_duration(raw: &str) -> Result<Duration, String> {
    match parse::duration(raw)? {
        d if d.is_zero() => Err("a duration greater than zero, such as 30s".to_string()),
        d => Ok(d),
    }
}
