//! Where variables come from: the process environment, and the dotenv file named by
//! `RODENT_ENV_FILE` layered over it.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Read;
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
                // Masked like any other invalid value: the admin token is a RODENT_ variable.
                let value = value.to_string_lossy();
                return Err(ConfigError::invalid(&key, &value, "valid UTF-8"));
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

impl super::Config {
    /// Every variable of the environment this configuration was read from (the process
    /// environment with `RODENT_ENV_FILE` layered over it), sorted by name, each value masked
    /// as `***` where `config` masks it: a variable named like a secret
    /// ([`looks_secret`](super::looks_secret)), or one the application declared secret.
    pub fn environment(&self) -> Vec<(&str, &str)> {
        let declared_secret = |name: &str| {
            self.settings
                .declared
                .iter()
                .any(|declared| declared.secret && declared.name == name)
        };
        self.vars
            .iter()
            .map(|(name, value)| {
                if super::looks_secret(name) || declared_secret(name) {
                    (name.as_str(), "***")
                } else {
                    (name.as_str(), value.as_str())
                }
            })
            .collect()
    }
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

/// Reads the dotenv file at `path` with dotenvy.
///
/// dotenvy's parse error carries the text it could not parse (for an unclosed quote, the whole
/// rest of the file), which may be any secret in the file, and no line number. It is never shown:
/// the file is fed to dotenvy one line per read, so that where it stopped is known, and the
/// error is rebuilt from the position alone: the line, the variable it sets, and the column.
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let error = |reason: String| ConfigError::EnvFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = crate::files::read(path).map_err(|e| error(e.to_string()))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = line_of(bytes, e.valid_up_to());
        error(format!("line {line} is not valid UTF-8"))
    })?;
    let delivered = Cell::new(0);
    let mut entries = dotenvy::from_read_iter(OneLineAtATime {
        text: text.as_bytes(),
        delivered: &delivered,
    });
    let mut vars = Vec::new();
    loop {
        let before = delivered.get();
        match entries.next() {
            None => return Ok(vars),
            Some(Ok(entry)) => vars.push(entry),
            Some(Err(dotenvy::Error::LineParse(unparsed, index))) => {
                let place = ParseError::locate(text, before, delivered.get(), &unparsed, index);
                return Err(error(place.to_string()));
            }
            // Read errors of a byte slice, which cannot happen; they carry no text either way.
            Some(Err(other)) => return Err(error(other.to_string())),
        }
    }
}

/// A reader that never returns more than one line per call: dotenvy's buffer then holds at
/// most the line it is parsing, so what was delivered is exactly what dotenvy has consumed.
struct OneLineAtATime<'a> {
    text: &'a [u8],
    /// Bytes of the file delivered so far.
    delivered: &'a Cell<usize>,
}

impl Read for OneLineAtATime<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.text[self.delivered.get()..];
        let line = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let n = line.min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.delivered.set(self.delivered.get() + n);
        Ok(n)
    }
}

/// Where the env file could not be parsed, with nothing of its text.
#[derive(Debug, PartialEq, Eq)]
struct ParseError {
    /// The line the entry that could not be parsed starts on, from 1.
    line: usize,
    /// The variable that entry sets, when its name could be read.
    variable: Option<String>,
    /// Where parsing stopped, as a line and a column (from 1); `None` for a quote still open at
    /// the end of the file.
    at: Option<(usize, usize)>,
}

impl ParseError {
    /// Places dotenvy's error: the entry that failed is the first one that is not blank or a
    /// comment after `from` (where the previous entry ended), and ends at `to`; dotenvy
    /// reported the `unparsed` text (a suffix of that entry), stopping at `index` in it.
    fn locate(text: &str, from: usize, to: usize, unparsed: &str, index: usize) -> Self {
        let mut start = from;
        for physical in text[from..to].split_inclusive('\n') {
            let content = physical.trim_start();
            if !content.is_empty() && !content.starts_with('#') {
                break;
            }
            start += physical.len();
        }
        let entry = &text[start.min(to)..to];
        // dotenvy reports the whole entry, or (for a value it cannot parse) the value, which
        // is the end of the entry with trailing whitespace removed.
        let offset = [entry, entry.trim_end()]
            .into_iter()
            .find(|e| e.ends_with(unparsed))
            .map_or(0, |e| e.len() - unparsed.len());
        let mut stop = (start + offset + index).min(text.len());
        let unclosed = stop >= text.trim_end().len() && entry.contains(['"', '\'']);
        let at = (!unclosed).then(|| {
            while !text.is_char_boundary(stop) {
                stop -= 1;
            }
            let line_start = text[..stop].rfind('\n').map_or(0, |i| i + 1);
            (
                line_of(text.as_bytes(), stop),
                text[line_start..stop].chars().count() + 1,
            )
        });
        Self {
            line: line_of(text.as_bytes(), start),
            variable: variable_of(entry),
            at,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        match &self.variable {
            Some(variable) => write!(f, " ({variable})")?,
            None => f.write_str(" (no variable name: expected NAME=value)")?,
        }
        match self.at {
            None => f.write_str(" cannot be parsed: a quote is not closed by the end of the file"),
            Some((line, column)) if line == self.line => {
                write!(f, " cannot be parsed at column {column}")
            }
            Some((line, column)) => {
                write!(f, " cannot be parsed at line {line}, column {column}")
            }
        }
    }
}

/// The line (from 1) of the byte at `offset`.
fn line_of(text: &[u8], offset: usize) -> usize {
    text[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The variable an entry sets (`NAME=...` or `export NAME=...`), when its name is one dotenvy
/// accepts and is followed by `=`: anything else may be part of a value, and is not shown.
fn variable_of(entry: &str) -> Option<String> {
    let entry = entry.trim_start();
    let entry = match entry.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => entry,
    };
    let end = entry
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(entry.len());
    let (name, rest) = entry.split_at(end);
    let named = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && rest.trim_start_matches([' ', '\t']).starts_with('=');
    named.then(|| name.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: impl AsRef<[u8]>) -> Result<Vec<(String, String)>, String> {
        let text = text.as_ref();
        let dir = std::env::temp_dir().join(format!("rodent-env-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{:x}.env",
            text.len() * 31 + text.iter().map(|&b| usize::from(b)).sum::<usize>()
        ));
        std::fs::write(&path, text).unwrap();
        let read = read_env_file(&path).map_err(|e| match e {
            ConfigError::EnvFile { reason, .. } => reason,
            other => panic!("{other:?}"),
        });
        std::fs::remove_file(&path).unwrap();
        read
    }

    #[test]
    fn a_parse_error_names_the_line_and_the_variable_and_shows_no_value() {
        let cases = [
            (
                "A=1\nRODENT_ADMIN_TOKEN=\"hunter2\nB=hunter2\n",
                "line 2 (RODENT_ADMIN_TOKEN) cannot be parsed: a quote is not closed by the end of the file",
            ),
            (
                "# c\n\nRODENT_ADMIN_TOKEN=abc def hunter2\nB=2\n",
                "line 3 (RODENT_ADMIN_TOKEN) cannot be parsed at column 24",
            ),
            (
                "A='x\ny'\n  export  SECRET=\\hunter2\n",
                "line 3 (SECRET) cannot be parsed at column 19",
            ),
            (
                "A=1\nhunter2\n",
                "line 2 (no variable name: expected NAME=value) cannot be parsed at column 8",
            ),
            (
                "A=1\n=hunter2\n",
                "line 2 (no variable name: expected NAME=value) cannot be parsed at column 1",
            ),
            (
                "\u{feff}A=\"a\nb\nc\" d hunter2\n",
                "line 1 (A) cannot be parsed at line 3, column 4",
            ),
        ];
        for (text, expected) in cases {
            match parse(text) {
                Err(reason) => {
                    assert_eq!(reason, expected, "{text:?}");
                    assert!(!reason.contains("hunter2"));
                }
                Ok(vars) => assert_eq!(expected, "nothing", "{text:?}: {vars:?}"),
            }
        }
        assert_eq!(
            parse(b"A=1\nB=\xE9t\xE9\n").unwrap_err(),
            "line 2 is not valid UTF-8"
        );
        assert_eq!(
            parse("A=1\nexport B = \"two\"\n").unwrap(),
            [("A".into(), "1".into()), ("B".into(), "two".into())]
        );
    }
}
