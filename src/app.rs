//! [`App`]: how an application describes itself (its name and version, its settings, its
//! tracing layers) and enters rodent, which then runs the whole process around it.

use std::future::Future;
use std::marker::PhantomData;
use std::process::ExitCode;

use tracing_subscriber::{Layer, Registry};

use crate::build::{self, BuildInfo, Identity};
use crate::config::{self, Config, ConfigErrors, Current, Declaration, Reader, Spec};
use crate::launch::{self, Launch, Options};
use crate::lifecycle::BoxError;
use crate::observe::logging::BoxedLayer;
use crate::run::Rodent;

/// An application on rodent: its name and version, its settings (`S`, read by the function
/// given to [`settings`](App::settings)), and its tracing layers. [`main`](App::main) runs the
/// command line and the process around it; the application's setup runs in rodent's runtime
/// and returns the [`Rodent`] to serve.
///
/// ```no_run
/// use axum::{Router, routing::get};
///
/// fn main() -> std::process::ExitCode {
///     rodent::app!().main(|service, _settings| async move {
///         Ok(service.routes(Router::new().route("/hello", get(|| async { "hello" }))))
///     })
/// }
/// ```
///
/// [`app!`](crate::app!) names the application after its package (`CARGO_PKG_NAME`,
/// `CARGO_PKG_VERSION`); [`App::new`] takes them as given.
pub struct App<S = ()> {
    identity: Identity,
    settings: Declaration,
    layers: Vec<BoxedLayer>,
    kind: PhantomData<fn() -> S>,
}

/// An [`App`] named after the calling package: `CARGO_PKG_NAME`, `CARGO_PKG_VERSION`, and
/// `CARGO_PKG_DESCRIPTION` for `--help`.
#[macro_export]
macro_rules! app {
    () => {
        $crate::App::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
            .about(env!("CARGO_PKG_DESCRIPTION"))
    };
}

impl App<()> {
    /// An application with this name and version, and no settings of its own yet.
    ///
    /// The name is the command's name, the default PID file's name (`/run/<name>.pid`),
    /// `service.name` on traces and the `name` label of `rodent_build_info`; the version is
    /// `--version`'s and `service.version`.
    ///
    /// # Panics
    ///
    /// When `name` is not made of ASCII letters, digits, `-`, `_` and `.` (at most 64, not
    /// starting with `.` or `-`), or `version` is empty: it names files and commands.
    pub fn new(name: &'static str, version: &'static str) -> Self {
        assert!(
            build::valid_name(name),
            "{name:?} cannot name an application: use ASCII letters, digits, '-', '_' and '.' \
             (at most 64, not starting with '.' or '-')"
        );
        assert!(!version.trim().is_empty(), "the version of {name} is empty");
        Self {
            identity: Identity {
                name,
                version,
                commit: None,
                about: None,
            },
            settings: config::settings_none(),
            layers: Vec::new(),
            kind: PhantomData,
        }
    }
}

impl<S: Send + Sync + 'static> App<S> {
    /// The commit the application was built from, for `version` and `rodent_build_info`.
    pub fn commit(mut self, commit: &'static str) -> Self {
        self.identity.commit = Some(commit).filter(|c| !c.trim().is_empty());
        self
    }

    /// One line on what the application is, for `--help`.
    pub fn about(mut self, about: &'static str) -> Self {
        self.identity.about = Some(about).filter(|a| !a.trim().is_empty());
        self
    }

    /// Declares the application's settings: `read` reads each of its variables from a
    /// [`Reader`] (see the [`config`](crate::config) module). They are validated with rodent's
    /// own before anything starts, shown by `config`, and re-read on SIGHUP; the setup and its
    /// handlers follow them through a [`Current`] handle.
    pub fn settings<T: Send + Sync + 'static>(self, read: fn(&mut Reader<'_>) -> T) -> App<T> {
        App {
            identity: self.identity,
            settings: config::declaration(read),
            layers: self.layers,
            kind: PhantomData,
        }
    }

    /// Adds a tracing layer to rodent's subscriber, next to rodent's log and trace export: an
    /// application never installs a subscriber of its own, which would take their place. The
    /// layer carries its own filter (`RODENT_LOG` filters rodent's log lines only).
    pub fn tracing_layer(mut self, layer: impl Layer<Registry> + Send + Sync + 'static) -> Self {
        self.layers.push(layer.boxed());
        self
    }

    /// What is running: the application's name and version, and rodent's build.
    pub fn build_info(&self) -> BuildInfo {
        self.identity.build_info()
    }

    /// Reads the configuration this application runs with from the process environment:
    /// rodent's variables and the application's settings. For a lifecycle run alone
    /// ([`Rodent::run`], [`Rodent::serve`]): the `OTEL_*` variables of trace export, which only
    /// [`main`](Self::main) and [`serve`](Self::serve) act on, are not read.
    pub fn config_from_env(&self) -> Result<Config, ConfigErrors> {
        Spec::of(self.identity, self.settings.clone(), false).read(None)
    }

    /// The same from the given variables (and `RODENT_ENV_FILE` among them); a reload reads
    /// them again.
    pub fn config_from_vars<I, K, V>(&self, vars: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Spec::of(self.identity, self.settings.clone(), false)
            .reading(vars)
            .read(None)
    }

    /// Runs the command line (`serve`, the default, `status`, `stop`, `reload`, `restart`,
    /// `probe`, `config`, `version`) named after the application, and returns the exit code.
    ///
    /// `serve` reads and validates the configuration (exit 78), becomes the PID 1 supervisor or
    /// a daemon where asked, installs the signal handlers, starts logging and trace export,
    /// takes the PID file and builds the runtime; then runs `setup` in it, with the service and
    /// a handle on the settings. The setup may `tokio::spawn`, open pools and connections, and
    /// fail: a [`ConfigError`](crate::config::ConfigError) or
    /// [`ConfigErrors`] ends the start with exit 78, anything else with exit 1 and the cause
    /// on one log line. A shutdown signal during the setup stops the process at once.
    ///
    /// Called inside a tokio runtime (`#[tokio::main]`), it refuses at once, saying why: the
    /// process must still be single-threaded when it starts.
    pub fn main<F, Fut>(self, setup: F) -> ExitCode
    where
        F: FnOnce(Rodent, Current<S>) -> Fut + 'static,
        Fut: Future<Output = Result<Rodent, BoxError>> + 'static,
    {
        let (launch, setup) = self.into_launch(setup);
        launch::main(launch, setup)
    }

    /// The `serve` command alone, for an application with a command line of its own: what
    /// [`main`](Self::main) does for `serve`.
    pub fn serve<F, Fut>(self, options: Options, setup: F) -> ExitCode
    where
        F: FnOnce(Rodent, Current<S>) -> Fut + 'static,
        Fut: Future<Output = Result<Rodent, BoxError>> + 'static,
    {
        let (launch, setup) = self.into_launch(setup);
        launch::serve(launch, options, setup)
    }

    fn into_launch<F, Fut>(self, setup: F) -> (Launch, launch::Setup)
    where
        F: FnOnce(Rodent, Current<S>) -> Fut + 'static,
        Fut: Future<Output = Result<Rodent, BoxError>> + 'static,
    {
        let launch = Launch {
            identity: self.identity,
            settings: self.settings,
            layers: self.layers,
        };
        let setup: launch::Setup = Box::new(move |service: Rodent| {
            let settings = service
                .settings::<S>()
                .expect("the configuration was read with this application's settings");
            Box::pin(setup(service, settings))
        });
        (launch, setup)
    }
}
