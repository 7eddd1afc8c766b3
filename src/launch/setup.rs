//! The application's setup: async, fallible, and run in rodent's runtime once signals, logging,
//! trace export and the PID file are in place, so that it can open a pool, `tokio::spawn`, or
//! connect a gRPC channel. A shutdown signal meanwhile ends the start at once; any other signal
//! waits for the service, which handles it as soon as it runs.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::process::ExitCode;

use futures_util::FutureExt;
use tokio::runtime::Runtime;

use crate::config::{ConfigError, ConfigErrors};
use crate::exit::Exit;
use crate::lifecycle::BoxError;
use crate::lifecycle::budget::ExitBudget;
use crate::process::signal::Received;
use crate::run::Rodent;

/// The application's setup: given the service, returns it with its routes, checks, hooks and
/// tasks, or the reason it cannot start.
pub(crate) type Setup =
    Box<dyn FnOnce(Rodent) -> Pin<Box<dyn Future<Output = Result<Rodent, BoxError>>>>>;

/// How a start ended before the service ran.
pub(super) struct Stopped {
    pub(super) exit: Exit,
    /// The rest of the exit's schedule, from the moment the start ended.
    pub(super) budget: ExitBudget,
    /// One line, for a launcher or a predecessor waiting on the outcome.
    pub(super) cause: String,
}

/// Refuses to start inside a runtime: the process must still be single-threaded when it
/// decides what it becomes (the PID 1 supervisor and daemon mode fork), and rodent builds the
/// runtime itself once that is done. Called before anything else, so the refusal is immediate.
pub(super) fn inside_a_runtime(name: &str, entry: &str) -> Option<ExitCode> {
    tokio::runtime::Handle::try_current().ok()?;
    eprintln!(
        "{name}: App::{entry} was called inside a tokio runtime (is `main` marked \
         #[tokio::main]?). It sets the process up first (signals, the PID 1 supervisor, daemon \
         mode, which must happen while the process has a single thread), then builds its own \
         runtime and runs the setup there: call it from a plain `fn main`, and do async work \
         in the setup. To serve inside a runtime of your own, use Rodent::serve."
    );
    Some(Exit::Failure.into())
}

/// Runs `setup` in `runtime`, racing it against shutdown signals. Returns the service set up,
/// and the signals to serve with (any that arrived meanwhile first).
pub(super) fn run(
    runtime: &Runtime,
    setup: Setup,
    service: Rodent,
    mut signals: Received,
) -> Result<(Rodent, Received), Box<Stopped>> {
    tracing::info!(target: "rodent::lifecycle", "running the application's setup");
    let config = service.config();
    let mut held = Vec::new();
    let outcome = runtime.block_on(async {
        let mut setup = AssertUnwindSafe(setup(service)).catch_unwind();
        loop {
            tokio::select! {
                outcome = &mut setup => break Some(outcome),
                signal = signals.recv() => match signal {
                    Some(signal) if signal.is_shutdown() => {
                        tracing::info!(target: "rodent::lifecycle", signal = signal.name(), "signal received during setup; stopping");
                        break None;
                    }
                    Some(signal) => held.push(signal),
                    // The signal thread is gone: nothing more will come.
                    None => break Some(setup.await),
                },
            }
        }
    });
    let stopped = |exit: Exit, cause: String| {
        tracing::info!(target: "rodent::lifecycle", exit_code = exit.code(), "stopped");
        let budget = ExitBudget::starting_now(config.shutdown_grace);
        Err(Box::new(Stopped {
            exit,
            cause,
            budget,
        }))
    };
    let service = match outcome {
        None => return stopped(Exit::Clean, "stopped by a signal during setup".to_string()),
        Some(Ok(Ok(service))) => service,
        Some(Ok(Err(error))) => {
            let (exit, cause) = refused(&*error);
            return stopped(exit, cause);
        }
        Some(Err(panic)) => {
            let cause = format!("the setup panicked: {}", panic_message(&*panic));
            tracing::error!(target: "rodent::lifecycle", cause = %cause, exit_code = Exit::Failure.code(), "setup failed");
            return stopped(Exit::Failure, cause);
        }
    };
    // Signals that came during the setup go first, then the rest as they arrive.
    signals.hand_back(held);
    Ok((service, signals))
}

/// Logs why the setup failed, and says how the process exits: 78 for a configuration error
/// (every problem logged, naming its variable), 1 for anything else, with the cause and its
/// sources on one line.
fn refused(error: &(dyn std::error::Error + 'static)) -> (Exit, String) {
    if let Some(errors) = error.downcast_ref::<ConfigErrors>() {
        return config_refused(errors);
    }
    if let Some(one) = error.downcast_ref::<ConfigError>() {
        return config_refused(&ConfigErrors(vec![one.clone()]));
    }
    let mut cause = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        cause.push_str(": ");
        cause.push_str(&inner.to_string());
        source = inner.source();
    }
    let cause = cause.replace('\n', " ");
    tracing::error!(target: "rodent::lifecycle", cause = %cause, exit_code = Exit::Failure.code(), "setup failed");
    (Exit::Failure, format!("setup failed: {cause}"))
}

fn config_refused(errors: &ConfigErrors) -> (Exit, String) {
    errors.log();
    tracing::error!(
        target: "rodent::config",
        problems = errors.0.len(),
        exit_code = Exit::Config.code(),
        "refusing to start with an invalid configuration"
    );
    (Exit::Config, errors.to_string().replace('\n', " "))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}
