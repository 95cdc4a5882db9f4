//! The master's runtime: one task owns the core (`owner`), and the gRPC services
//! (`agent_link`, `scheduler`) and HTTP handlers (`http`) talk to it over one bounded
//! channel. gRPC and HTTP share one port, as in Mesos.

mod agent_link;
pub mod auth;
mod clock;
pub mod election;
mod http;
mod legacy;
pub mod mesos;
mod metrics;
mod operator;
mod owner;
pub mod read_model;
mod scheduler;
mod streams;
mod wire;

use std::future::Future;

use tokio::net::TcpListener;

use crate::core;

pub use owner::Handle;
pub use wire::MAX_ACKNOWLEDGEMENTS;

/// Most gRPC and HTTP requests waiting for the owner task in each of its two lanes
/// (calls; reports and acknowledgements); handlers wait for room beyond.
const REQUEST_QUEUE_LEN: usize = 16 * 1024;

/// Default of `--rate-limit` and `--rate-limit-burst`: far above what a person or a busy
/// framework sends (every ACCEPT and ACKNOWLEDGE is a request, and the frameworks of one
/// host share its address when not authenticated), far below what a flood does.
pub const DEFAULT_RATE_LIMIT: agora_proto::edge::rate::RateLimit =
    agora_proto::edge::rate::RateLimit { per_second: 10_000, burst: 20_000 };

/// Default of `--max-connections` for `agora master`: each agent holds a connection, and a
/// cluster of tens of thousands of agents must fit (in-process masters keep the smaller
/// `ConnectionLimits::default()`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 65_536;

/// Default of `--max-concurrent-renders`: two large answers in memory at once.
pub const DEFAULT_MAX_CONCURRENT_RENDERS: usize = 2;

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
    /// Several masters on etcd: elect a leader there and keep the registry there (the
    /// registry file is then not used).
    pub etcd: Option<election::EtcdOptions>,
    /// Who must authenticate, and the credentials they are checked against.
    pub security: auth::Security,
    /// Large answers (`/state` and its kin) rendered at once; more wait their turn.
    pub max_concurrent_renders: usize,
    /// Requests per caller (principal, else non-loopback address), HTTP and gRPC alike.
    pub rate_limit: agora_proto::edge::rate::RateLimit,
    /// TLS on the one port (gRPC and HTTP); `None` serves plain text. With a client CA,
    /// agents must present a certificate it signed.
    pub tls: Option<agora_proto::tls::ServerTls>,
    /// Connections held at once, and how long a request's headers may take.
    pub connections: agora_proto::edge::conn::ConnectionLimits,
}

impl MasterOptions {
    pub fn new(advertise: String) -> Self {
        Self {
            core: core::Config::default(),
            seed: 0,
            advertise,
            tick_interval_ms: 100,
            registry_path: None,
            etcd: None,
            security: auth::Security::default(),
            max_concurrent_renders: DEFAULT_MAX_CONCURRENT_RENDERS,
            rate_limit: DEFAULT_RATE_LIMIT,
            tls: None,
            connections: agora_proto::edge::conn::ConnectionLimits::default(),
        }
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
    mut options: MasterOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    options.security.validate().map_err(|e| anyhow::anyhow!(e))?;
    // The core applies `run_tasks` itself, on every launch.
    options.core.acls = options.security.acls.clone();
    let security = std::sync::Arc::new(options.security.clone());
    let streams = streams::Streams::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let options_context = (options.core.master_id.clone(), options.advertise.clone());
    let admin = mesos::operator_admin::AdminContext::new(&options, mesos_context(&options_context));
    let etcd = options.etcd.clone();
    let options_rate_limit = options.rate_limit;
    let tls = options.tls.clone();
    let agents_need_certificates = tls.as_ref().is_some_and(agora_proto::tls::ServerTls::verifies_clients);
    let connection_limits = options.connections;
    let (handle, requests) = owner::channel();
    let (read_model, feed) = read_model::ReadModel::start(read_model::MasterFacts {
        master_id: options.core.master_id.clone(),
        advertise: options.advertise.clone(),
        start_time_ms: clock::wall_ms(),
        heartbeat_interval_ms: options.core.framework_heartbeat_interval_ms,
        max_completed_tasks_per_framework: options.core.max_completed_tasks_per_framework,
        max_completed_frameworks: options.core.max_completed_frameworks,
        flags: mesos::operator_admin::flags(&options),
        max_concurrent_renders: options.max_concurrent_renders,
    });
    let (role_tx, role_rx) = tokio::sync::watch::channel(election::Role::Leader);
    let leading = match &etcd {
        None => {
            let store = options.registry_path.as_deref().map(crate::store::Store::open).transpose()?;
            owner::start(options, store, requests, feed, stop_rx.clone())?;
            None
        }
        Some(etcd) => {
            role_tx.send_replace(election::Role::Follower { leader: None });
            let client = agora_proto::etcd_client::Etcd::connect(&etcd.endpoints)?;
            Some(tokio::spawn(lead(client, etcd.clone(), options, requests, feed, stop_rx.clone(), role_tx)))
        }
    };
    let grpc = tonic::service::Routes::new(agent_link::server(
        handle.clone(),
        stop_rx.clone(),
        security.clone(),
        agents_need_certificates,
    ))
    .add_service(scheduler::server(handle.clone(), stop_rx.clone(), security.clone(), streams.clone()))
    .into_axum_router();
    // tonic's routes bring a fallback of their own; ours replaces it, so that unknown HTTP
    // paths get a JSON 404. Until this master leads, followers answer every request.
    // Operators' routes authenticate in one layer; the scheduler API and gRPC
    // authenticate frameworks and agents themselves.
    let operator_routes = http::router(handle.clone(), read_model.clone())
        .merge(mesos::operator::router(handle.clone(), read_model, admin))
        .layer(axum::middleware::from_fn_with_state(security.clone(), auth::operator_gate));
    let app = grpc
        .merge(mesos::router(handle, stop_rx.clone(), mesos_context(&options_context), security.clone(), streams))
        .merge(operator_routes)
        .fallback(http::not_found)
        // Every refusal in one JSON shape; changes only same-origin (or authenticated) and
        // as JSON or protobuf (`agora_proto::edge`).
        .layer(axum::middleware::from_fn(agora_proto::edge::json_errors))
        .layer(axum::middleware::from_fn(agora_proto::edge::cross_site::guard_changes))
        // Each caller (principal, else peer address) within `--rate-limit`, gRPC included.
        .layer(axum::middleware::from_fn_with_state(
            agora_proto::edge::rate::Limiter::new(options_rate_limit),
            agora_proto::edge::rate::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(security.clone(), auth::mark_authenticated))
        .layer(axum::middleware::from_fn_with_state(role_rx, election::follow_leader));
    tracing::info!(address = %listener.local_addr()?, tls = tls.is_some(), "master listening");
    let listener = agora_proto::edge::conn::nodelay(listener);
    // At most `--max-connections`, and request headers whole within `--header-timeout`.
    let listener = agora_proto::edge::conn::LimitedListener::new(listener, connection_limits);
    // Long-lived streams end when the owner stops, which lets the graceful shutdown finish.
    // The peer's address reaches every request (`ConnectInfo<SocketAddr>`, with TLS or
    // without): rate limits count by it.
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    agora_proto::tls::serve(listener, tls.as_ref(), app, shutdown).await?;
    // Give a stepping-down leader the moment it needs to revoke its lease.
    if let Some(leading) = leading {
        let _ = tokio::time::timeout(STEP_DOWN_TIMEOUT, leading).await;
    }
    Ok(())
}

/// What Mesos' SUBSCRIBED event says of this master (`MasterInfo`), from its id and the
/// `host:port` it advertises.
fn mesos_context((master_id, advertise): &(String, String)) -> mesos::convert::MasterContext {
    let (hostname, port) = advertise.rsplit_once(':').unwrap_or((advertise.as_str(), "5050"));
    let hostname = hostname.trim_start_matches('[').trim_end_matches(']').to_owned();
    // MasterInfo.ip is an IPv4 address in network order as a number; 0 when unknown.
    let ip = hostname.parse::<std::net::Ipv4Addr>().map(|ip| u32::from_le_bytes(ip.octets())).unwrap_or(0);
    mesos::convert::MasterContext {
        master_id: master_id.clone(),
        hostname,
        port: port.parse().unwrap_or(5050),
        ip,
        version: http::VERSION.to_owned(),
    }
}

/// Longest a stopping master waits to hand over leadership (revoke its lease).
const STEP_DOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Campaigns; once elected, loads the registry from etcd, starts the owner task, serves
/// as leader, and stops the process when leadership is lost (fail-stop: another master
/// may already lead, and this one's view of the registry may be stale).
async fn lead(
    client: agora_proto::etcd_client::Etcd,
    etcd: election::EtcdOptions,
    options: MasterOptions,
    requests: owner::Inbox,
    feed: read_model::Feed,
    mut stop: tokio::sync::watch::Receiver<bool>,
    role: tokio::sync::watch::Sender<election::Role>,
) {
    let advertise = options.advertise.clone();
    let term = tokio::select! {
        term = election::campaign(&client, &etcd, &advertise, &role) => term,
        _ = stopped(&mut stop) => return,
    };
    tracing::info!(create_revision = term.create_revision, "elected leading master");
    let opened = crate::store::EtcdStore::open(&etcd.endpoints, &etcd.root, term.clone())
        .map(|store| crate::store::Store::Etcd(Box::new(store)));
    let started = opened.and_then(|store| owner::start(options, Some(store), requests, feed, stop.clone()));
    if let Err(error) = started {
        fail_stop(&format!("cannot take over the registry from etcd: {error}"));
    }
    role.send_replace(election::Role::Leader);
    tokio::select! {
        lost = election::hold(&client, &etcd, &term) => fail_stop(&format!("lost leadership: {lost}")),
        _ = stopped(&mut stop) => {
            // Stepping down on a clean stop lets another master lead without waiting
            // for the lease to expire.
            if let Err(error) = client.revoke_lease(term.lease_id).await {
                tracing::warn!(%error, "could not revoke the leader's lease; it expires by itself");
            }
        }
    }
}

fn fail_stop(why: &str) -> ! {
    tracing::error!("{why}; stopping the master");
    eprintln!("agora master: {why}");
    std::process::exit(1)
}
