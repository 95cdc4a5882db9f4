//! One module per subcommand, each with its clap `Args` and an async `main`.

pub mod agent;
pub mod auth;
pub mod bench;
pub mod cron;
pub mod local;
pub mod master;
pub mod ops;
pub mod run;
pub mod services;
pub mod tls;

/// Structured logs to stderr; `RUST_LOG` picks the level (default `info`), and
/// `AGORA_LOG_FORMAT=json` switches to one JSON object per line. Colours only on a
/// terminal: a log file or a pipe gets plain text.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colours);
    if std::env::var("AGORA_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Completes on Ctrl-C or SIGTERM, whichever comes first, and logs it.
pub async fn shutdown_signal() {
    interrupted().await;
    tracing::info!("shutting down");
}

/// Completes on Ctrl-C or SIGTERM, whichever comes first.
pub async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// What a signal asks of a process that runs tasks (`agora agent`, `agora local`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM or SIGINT (Ctrl-C).
    Terminate,
    /// SIGUSR1: kill the tasks, then stop.
    Drain,
}

/// SIGTERM, SIGINT and SIGUSR1, listened to from creation on: a signal arriving before
/// anyone waits is kept, not lost, and SIGUSR1 no longer takes its default action (to
/// end the process at once).
#[derive(Debug)]
pub struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    drain: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening. Must be called within the tokio runtime.
    pub fn listen() -> anyhow::Result<Self> {
        use anyhow::Context;
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            drain: signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?,
        })
    }

    /// The next signal, logged.
    pub async fn next(&mut self) -> StopSignal {
        let (signal, name) = tokio::select! {
            _ = self.terminate.recv() => (StopSignal::Terminate, "SIGTERM"),
            _ = self.interrupt.recv() => (StopSignal::Terminate, "SIGINT"),
            _ = self.drain.recv() => (StopSignal::Drain, "SIGUSR1"),
        };
        tracing::info!(signal = name, "received a signal");
        signal
    }
}
