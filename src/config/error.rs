//! Why a configuration was refused: every problem, each naming its variable.

use std::fmt;
use std::path::PathBuf;

/// One reason the configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable whose value could not be used.
    Invalid {
        /// The variable's name.
        variable: String,
        /// The value as given, or `***` for secrets.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// Values that are each valid but cannot work together.
    Inconsistent {
        /// Which values, and why they do not fit.
        explanation: String,
    },
    /// `RODENT_ENV_FILE` names a file that cannot be read or parsed.
    EnvFile {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A variable names a file that cannot be used: `RODENT_TLS_CERT`, `RODENT_TLS_KEY`.
    File {
        /// The variable's name.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
}

impl ConfigError {
    /// `variable` had the value `raw`, which is not what was `expected`. An application's setup
    /// that finds a value it cannot use returns `Err(ConfigError::invalid(…).into())`, which
    /// ends the start with exit 78. The value is kept only when the variable's name does not
    /// look secret ([`looks_secret`]).
    pub fn invalid(variable: &str, raw: &str, expected: impl Into<String>) -> Self {
        let value = if looks_secret(variable) {
            "***".to_string()
        } else {
            raw.to_string()
        };
        Self::Invalid {
            variable: variable.to_string(),
            value,
            expected: expected.into(),
        }
    }

    /// The variable this error is about, when there is exactly one.
    pub fn variable(&self) -> Option<&str> {
        match self {
            Self::Invalid { variable, .. } => Some(variable),
            Self::EnvFile { .. } => Some("RODENT_ENV_FILE"),
            Self::File { variable, .. } => Some(variable),
            Self::Inconsistent { .. } => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid {
                variable,
                value,
                expected,
            } => write!(f, "{variable}={value:?} is invalid: expected {expected}"),
            Self::Inconsistent { explanation } => f.write_str(explanation),
            Self::EnvFile { path, reason } => {
                write!(
                    f,
                    "RODENT_ENV_FILE={:?} cannot be used: {reason}",
                    path.display().to_string()
                )
            }
            Self::File {
                variable,
                path,
                reason,
            } => write!(
                f,
                "{variable}={:?} cannot be used: {reason}",
                path.display().to_string()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one reading of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(
    /// The problems, in the order the variables were read.
    pub Vec<ConfigError>,
);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.0.len() == 1 {
            "problem"
        } else {
            "problems"
        };
        write!(f, "invalid configuration ({} {noun})", self.0.len())?;
        for error in &self.0 {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

/// Whether a variable's value must be masked wherever it is shown.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "CREDENTIAL",
        "API_KEY",
        "PRIVATE_KEY",
        "HEADERS",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

impl ConfigErrors {
    /// Logs every problem, one line each, naming the variable (with the value, masked when
    /// secret, and what was expected, when there is one).
    pub(crate) fn log(&self) {
        for error in &self.0 {
            match error {
                ConfigError::Invalid {
                    variable,
                    value,
                    expected,
                } => tracing::error!(
                    target: "rodent::config",
                    variable = %variable,
                    value = %value,
                    expected = %expected,
                    error = %error,
                    "invalid configuration"
                ),
                other => tracing::error!(
                    target: "rodent::config",
                    variable = other.variable(),
                    error = %other,
                    "invalid configuration"
                ),
            }
        }
    }
}
