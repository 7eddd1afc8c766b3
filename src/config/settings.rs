//! The application's own settings: each variable declared once (its name, its default, whether
//! a reload applies it, whether it is secret, how it is parsed), then read and validated in the
//! same pass as rodent's own, shown by `config`, known to the unknown-variable warning, layered
//! from `RODENT_ENV_FILE` and re-read on SIGHUP, all or nothing with rodent's own.
//!
//! An application describes its settings as a function that reads them from a [`Reader`]:
//!
//! ```
//! use std::time::Duration;
//! use rodent::config::{Reader, Var, parse};
//!
//! struct Settings {
//!     database: String,
//!     purge_every: Duration,
//!     api_key: Option<rodent::config::Secret>,
//! }
//!
//! impl Settings {
//!     fn read(vars: &mut Reader) -> Self {
//!         vars.prefix("NOTES_");
//!         Self {
//!             database: vars.get(Var::new("NOTES_DATABASE", "notes.db", parse::text)),
//!             purge_every: vars.get(Var::new("NOTES_PURGE_EVERY", "1m", parse::duration).reloadable()),
//!             api_key: vars.get(Var::optional("NOTES_API_KEY", parse::secret).secret()),
//!         }
//!     }
//! }
//! ```
//!
//! A value that does not parse is recorded with its variable, and reading goes on (with the
//! default in its place) so that every problem is reported at once: the function never sees an
//! error, and the settings it returns are only used when there was none.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Config;
use super::error::ConfigError;
use super::source::Vars;

/// How a value is parsed: `Err` says what was expected ("a duration such as 5s").
type Parse<T> = Box<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

/// One variable of the application's, as it declares it; read with [`Reader::get`].
pub struct Var<T> {
    name: &'static str,
    /// What `config` shows when the variable is unset; empty when there is no default.
    default_text: &'static str,
    /// The value when the variable is unset or blank, or when its value is invalid (reading
    /// goes on).
    fallback: Fallback<T>,
    required: bool,
    reloadable: bool,
    secret: bool,
    parse: Parse<T>,
}

enum Fallback<T> {
    /// Parsed like a value, when it is needed.
    Text(&'static str),
    Value(Box<dyn Fn() -> T + Send + Sync>),
}

impl<T: 'static> Var<T> {
    /// A variable with a default, written as a user would write the value (`"5s"`, `"100"`),
    /// parsed by `parse` like any value. A default that does not parse is a mistake in the
    /// program: reading panics, naming the variable.
    pub fn new(
        name: &'static str,
        default: &'static str,
        parse: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            default_text: default,
            fallback: Fallback::Text(default),
            required: false,
            reloadable: false,
            secret: false,
            parse: Box::new(parse),
        }
    }

    /// A variable that must be set: unset or blank, it is reported as a problem.
    pub fn required(
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self
    where
        T: Default,
    {
        Self {
            name,
            default_text: "",
            fallback: Fallback::Value(Box::new(T::default)),
            required: true,
            reloadable: false,
            secret: false,
            parse: Box::new(parse),
        }
    }

    /// A reload (SIGHUP) applies a new value of this variable; otherwise a changed value is
    /// validated, logged as needing a restart, and the running value stays.
    pub fn reloadable(mut self) -> Self {
        self.reloadable = true;
        self
    }

    /// The value is never shown: not by `config`, not in an error, not in the log.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

impl<T: 'static> Var<Option<T>> {
    /// A variable that may be left unset: `None` then.
    pub fn optional(
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            default_text: "",
            fallback: Fallback::Value(Box::new(|| None)),
            required: false,
            reloadable: false,
            secret: false,
            parse: Box::new(move |raw| parse(raw).map(Some)),
        }
    }
}

/// A variable the application declared, as `config` shows it and reloads compare it.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub(crate) name: &'static str,
    pub(crate) default_text: &'static str,
    pub(crate) secret: bool,
    /// The value in effect as written (`None`: unset, the default applies).
    pub(crate) raw: Option<String>,
    /// On a reload, a variable that is not reloadable and was changed: the new value, which
    /// was validated but does not apply.
    pub(crate) not_applied: bool,
}

impl Declared {
    /// The value as `config` shows it: secrets masked.
    pub(crate) fn rendered(&self) -> String {
        match &self.raw {
            Some(_) if self.secret => "***".to_string(),
            Some(raw) => raw.clone(),
            None => self.default_text.to_string(),
        }
    }
}

/// Reads the application's variables, collecting every problem; given to the function the
/// application declares its settings with.
pub struct Reader<'a> {
    vars: &'a Vars,
    /// On a reload: the variables in effect, whose running values stay for what is not
    /// reloadable.
    running: Option<&'a [Declared]>,
    errors: Vec<ConfigError>,
    declared: Vec<Declared>,
    prefixes: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(vars: &'a Vars, running: Option<&'a [Declared]>) -> Self {
        Self {
            vars,
            running,
            errors: Vec::new(),
            declared: Vec::new(),
            prefixes: Vec::new(),
        }
    }

    /// Reads one variable: its value, or its default when it is unset or blank. A value that
    /// does not parse is recorded as a problem (the default stands in, so reading goes on).
    ///
    /// # Panics
    ///
    /// When the same name is read twice, when it is one of rodent's own variables, or when the
    /// default does not parse: mistakes in the program, not in the configuration.
    pub fn get<T: 'static>(&mut self, var: Var<T>) -> T {
        assert!(
            !self.declared.iter().any(|d| d.name == var.name),
            "the setting {} is declared twice",
            var.name
        );
        assert!(
            !super::VARIABLES.iter().any(|v| v.name == var.name)
                && !super::otel::VARIABLES.contains(&var.name),
            "{} is one of rodent's own variables: an application declares its own names",
            var.name
        );
        let given = self.raw(var.name);
        if let Some(raw) = &given
            && let Err(expected) = (var.parse)(raw)
        {
            self.invalid(&var, raw, expected);
        } else if given.is_none() && var.required {
            self.errors.push(ConfigError::Invalid {
                variable: var.name.to_string(),
                value: String::new(),
                expected: "a value: this variable must be set".to_string(),
            });
        }
        // What applies: on a reload, the running value of a variable that is not reloadable.
        let running = self
            .running
            .filter(|_| !var.reloadable)
            .and_then(|running| running.iter().find(|d| d.name == var.name));
        let (raw, not_applied) = match running {
            Some(running) => (running.raw.clone(), running.raw != given),
            None => (given, false),
        };
        let value = raw
            .as_deref()
            .and_then(|raw| (var.parse)(raw).ok())
            .unwrap_or_else(|| fallback(&var));
        self.declared.push(Declared {
            name: var.name,
            default_text: var.default_text,
            secret: var.secret,
            raw,
            not_applied,
        });
        value
    }

    /// Says that the application's variables start with `prefix` (`"NOTES_"`): any other
    /// variable with that prefix is warned about at start, as a likely typo, like an unknown
    /// `RODENT_*` variable.
    pub fn prefix(&mut self, prefix: &'static str) {
        if !self.prefixes.contains(&prefix) {
            self.prefixes.push(prefix);
        }
    }

    /// Records a problem that spans several variables (two values that are each valid but do
    /// not work together), naming them in `explanation`.
    pub fn inconsistent(&mut self, explanation: impl Into<String>) {
        self.errors.push(ConfigError::Inconsistent {
            explanation: explanation.into(),
        });
    }

    /// The value of a variable, `None` when unset or blank.
    fn raw(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }

    fn invalid<T>(&mut self, var: &Var<T>, raw: &str, expected: String) {
        let value = if var.secret { "***" } else { raw };
        self.errors
            .push(ConfigError::invalid(var.name, value, expected));
    }

    pub(crate) fn finish(self) -> (Vec<Declared>, Vec<&'static str>, Vec<ConfigError>) {
        (self.declared, self.prefixes, self.errors)
    }
}

fn fallback<T: 'static>(var: &Var<T>) -> T {
    match &var.fallback {
        Fallback::Value(make) => make(),
        Fallback::Text(text) => match (var.parse)(text) {
            Ok(value) => value,
            Err(expected) => panic!(
                "the default of {} ({text:?}) does not parse: expected {expected}",
                var.name
            ),
        },
    }
}

/// The function an application reads its settings with, type-erased so that a [`Config`] can
/// hold any application's settings and read them again on reload.
pub(crate) type Declaration =
    Arc<dyn Fn(&mut Reader<'_>) -> Arc<dyn Any + Send + Sync> + Send + Sync>;

/// A declaration with no variables: rodent's own settings only.
pub(crate) fn none() -> Declaration {
    Arc::new(|_: &mut Reader<'_>| Arc::new(()) as Arc<dyn Any + Send + Sync>)
}

/// The declaration that reads settings of type `S` with `read`.
pub(crate) fn declaration<S: Send + Sync + 'static>(read: fn(&mut Reader<'_>) -> S) -> Declaration {
    Arc::new(move |reader: &mut Reader<'_>| Arc::new(read(reader)) as Arc<dyn Any + Send + Sync>)
}

/// The application's settings as read, with what was declared.
#[derive(Clone)]
pub(crate) struct Values {
    pub(crate) values: Arc<dyn Any + Send + Sync>,
    pub(crate) declared: Vec<Declared>,
    pub(crate) prefixes: Vec<&'static str>,
}

/// The application's settings as they are now: a cheap handle (an `Arc` and an atomic load)
/// for handlers and tasks, which a reload updates together with rodent's own settings.
pub struct Current<S> {
    config: Arc<ArcSwap<Config>>,
    settings: PhantomData<fn() -> S>,
}

impl<S> Clone for Current<S> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            settings: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for Current<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current").finish_non_exhaustive()
    }
}

impl<S: Send + Sync + 'static> Current<S> {
    /// A handle on the settings in `config`, when they are of type `S`.
    pub(crate) fn new(config: Arc<ArcSwap<Config>>) -> Option<Self> {
        config.load().settings.values.is::<S>().then_some(Self {
            config,
            settings: PhantomData,
        })
    }

    /// The whole configuration in effect now, rodent's settings with the application's.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The settings in effect now: those read at start, or by the last reload that applied.
    pub fn get(&self) -> Arc<S> {
        self.config
            .load()
            .settings
            .values
            .clone()
            .downcast::<S>()
            .unwrap_or_else(|_| {
                unreachable!("a reload reads the settings with the declaration it started with")
            })
    }
}
