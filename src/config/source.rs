//! Where variables come from: the process environment, and the dotenv file named by
//! `RODENT_ENV_FILE` layered over it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;

/// The environment as rodent sees it: process variables with the env file layered on top.
pub type Vars = BTreeMap<String, String>;

/// The process environment. A `RODENT_*` variable whose value is not UTF-8 is an error (it
/// cannot be what the user meant); other variables that are not UTF-8 are not ours to judge.
pub(super) fn process_env() -> Result<Vars, ConfigError> {
    let mut vars = Vars::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str().map(str::to_string) else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                vars.insert(key, value);
            }
            Err(value) if key.starts_with("RODENT_") => {
                return Err(ConfigError::Invalid {
                    variable: key,
                    value: value.to_string_lossy().into_owned(),
                    expected: "valid UTF-8".to_string(),
                });
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

/// Layers the dotenv file named by `RODENT_ENV_FILE` over `vars`: a variable in the file wins
/// over the same variable in the process environment, so that editing the file and sending
/// SIGHUP changes a running process.
pub(super) fn layer_env_file(mut vars: Vars) -> Result<Vars, ConfigError> {
    let Some(path) = vars
        .get("RODENT_ENV_FILE")
        .filter(|p| !p.trim().is_empty())
        .map(PathBuf::from)
    else {
        return Ok(vars);
    };
    for (key, value) in read_env_file(&path)? {
        // The file cannot point at another file: one level of layering is all there is.
        if key != "RODENT_ENV_FILE" {
            vars.insert(key, value);
        }
    }
    Ok(vars)
}

fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let error = |reason: String| ConfigError::EnvFile {
        path: path.to_path_buf(),
        reason,
    };
    let entries = dotenvy::from_path_iter(path).map_err(|e| error(describe(&e)))?;
    entries
        .map(|entry| entry.map_err(|e| error(describe(&e))))
        .collect()
}

fn describe(error: &dotenvy::Error) -> String {
    match error {
        dotenvy::Error::Io(io) => io.to_string(),
        dotenvy::Error::LineParse(line, index) => {
            format!("line {line:?} cannot be parsed (at character {index})")
        }
        other => other.to_string(),
    }
}

/// Where the PID file goes when `RODENT_PID_FILE` is not set, named after the application
/// (`name`), so that two different services on one host do not claim the same file:
/// `/run/<name>.pid` for root (the FHS place for system daemons), `$XDG_RUNTIME_DIR/<name>.pid`
/// for a user session, and `/tmp/<name>-<uid>.pid` otherwise. The container image sets its own.
pub(super) fn default_pid_file(vars: &Vars, name: &str) -> Option<PathBuf> {
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        return Some(PathBuf::from(format!("/run/{name}.pid")));
    }
    if let Some(dir) = vars.get("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Some(Path::new(dir).join(format!("{name}.pid")));
    }
    Some(PathBuf::from(format!("/tmp/{name}-{uid}.pid")))
}
