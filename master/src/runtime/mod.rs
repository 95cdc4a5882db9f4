//! The master's runtime: one task owns the core (`owner`), and the gRPC services
//! (`agent_link`, `scheduler`) and HTTP handlers (`http`) talk to it over one bounded
//! channel. gRPC and HTTP share one port, as in Mesos.

mod agent_link;
mod clock;
mod http;
mod metrics;
mod operator;
mod owner;
mod scheduler;
mod wire;

use std::future::Future;

use tokio::net::TcpListener;

use crate::core;

pub use owner::Handle;

/// Most gRPC and HTTP requests waiting for the owner task; handlers wait for room beyond.
const REQUEST_QUEUE_LEN: usize = 16 * 1024;

/// How the master runs, beyond the core's own configuration.
#[derive(Clone, Debug)]
pub struct MasterOptions {
    pub core: core::Config,
    /// Seeds the allocator's agent shuffle, so a run can be replayed.
    pub seed: u64,
    /// The `host:port` operators and agents reach this master at, shown in `/state`.
    pub advertise: String,
    /// How often timers (offer timeout, agent health, failover) are checked.
    pub tick_interval_ms: u64,
    /// The registry file; `None` keeps nothing across restarts.
    pub registry_path: Option<std::path::PathBuf>,
}

impl MasterOptions {
    pub fn new(advertise: String) -> Self {
        Self { core: core::Config::default(), seed: 0, advertise, tick_interval_ms: 100, registry_path: None }
    }
}

/// Completes once `stop` holds `true` (or its sender is gone).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Serves the master on `listener` until `shutdown` completes. The caller binds the
/// listener, so tests can bind port 0.
pub async fn serve(
    listener: TcpListener,
    options: MasterOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handle = owner::spawn(options, stop_rx.clone())?;
    let grpc = tonic::service::Routes::new(agent_link::server(handle.clone(), stop_rx.clone()))
        .add_service(scheduler::server(handle.clone(), stop_rx.clone()))
        .into_axum_router();
    // tonic's routes bring a fallback of their own; ours replaces it, so that unknown HTTP
    // paths get a JSON 404.
    let app = grpc.merge(http::router(handle)).fallback(http::not_found);
    tracing::info!(address = %listener.local_addr()?, "master listening");
    // Long-lived streams end when the owner stops, which lets the graceful shutdown finish.
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await?;
    Ok(())
}
