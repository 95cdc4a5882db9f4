//! One module per subcommand, each with its clap `Args` and an async `main`.

pub mod agent;
pub mod bench;
pub mod local;
pub mod master;
pub mod run;

/// Structured logs to stderr; `RUST_LOG` picks the level (default `info`), and
/// `AGORA_LOG_FORMAT=json` switches to one JSON object per line.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
