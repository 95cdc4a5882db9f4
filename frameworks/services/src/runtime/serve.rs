//! [`run`]: serves the REST API on a listener the caller bound, and, on the process that
//! leads (the only one without `--etcd`), opens the store, recovers the planner, starts
//! the owner task and the SDK driver, and keeps them until shutdown or until leadership
//! or the store is lost.
//!
//! With `--etcd` each term of leadership starts afresh from the store: a leader that
//! abdicates (`DELETE /v2/leader`) stops its owner and driver, steps down and campaigns
//! again; one that loses its lease stops the process (fail-stop), since another may lead
//! already.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::etcd_client::{Etcd, EtcdError, Term};
use agora_sdk::{Driver, DriverConfig};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use super::election::{self, Role};
use super::owner::{Owner, OwnerError, stopped};
use super::{INPUT_QUEUE_LEN, Request, ServicesConfig, ServicesHandle, callbacks};
use crate::core::Planner;
use crate::http::{AbdicateFn, ApiInfo, LeaderFn};
use crate::store::{EtcdStore, FileStore, Store, StoreError};

/// How long a stopping process waits for its HTTP connections (event streams) to close
/// and for its owner to finish the batch in hand.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a leader that abdicated waits before campaigning again, so that another
/// process takes over.
const REJOIN_DELAY: Duration = Duration::from_secs(1);

/// Why `agora services` stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error("etcd: {0}")]
    Etcd(#[from] EtcdError),
    #[error("lost leadership: {0}")]
    LostLeadership(EtcdError),
    #[error("the framework driver stopped: {0}")]
    Driver(#[from] agora_sdk::Error),
    #[error("serving the REST API failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("{0} stopped unexpectedly")]
    Stopped(&'static str),
}

/// Serves `agora services` on `listener` until `shutdown` completes (`Ok`), or until it
/// cannot go on (`Err`: a store it cannot write, lost leadership, a master that refuses
/// the framework for good); the binary exits non-zero then, and a supervisor restarts it.
pub async fn run(
    config: ServicesConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    if config.masters.is_empty() && config.etcd.is_none() {
        return Err(RunError::Config("give --master (one or more masters) or --etcd".into()));
    }
    // Checked before anything starts, so that a bad flag is an error at once.
    config.framework()?;
    let (stop_tx, stop) = watch::channel(false);
    let (handle, requests) = super::channel();
    let initial = if config.etcd.is_some() { Role::Follower { leader: None } } else { Role::Leader };
    let (role_tx, role) = watch::channel(initial);
    let abdication = Arc::new(Notify::new());
    let info = api_info(&config, listener.local_addr()?.port(), role.clone(), abdication.clone());
    let mut app = crate::http::router(handle.clone(), info)
        .layer(axum::middleware::from_fn_with_state(role, super::follow_leader));
    if let Some(gate) = &config.http_gate {
        // Outermost: the cross-site guard inside sees who is calling.
        app = app
            .layer(axum::middleware::from_fn_with_state(gate.clone(), agora_proto::edge::authenticate::authenticate));
    }
    tracing::info!(address = %listener.local_addr()?, advertise = %config.advertise, "services REST API listening");
    let mut server_stop = stop.clone();
    // At most so many connections, and request headers whole within their deadline.
    let listener = agora_proto::edge::conn::nodelay(listener);
    let listener = agora_proto::edge::conn::LimitedListener::new(listener, Default::default());
    // Requests carry the peer's address, for the events that name the client
    // (`api_post_event`); with TLS the port speaks only TLS.
    let tls = config.tls.clone();
    let mut server = tokio::spawn(async move {
        agora_proto::tls::serve(listener, tls.as_ref(), app, async move { stopped(&mut server_stop).await }).await
    });
    let mut leading = tokio::spawn(lead(config, handle, requests, role_tx, stop.clone(), abdication));
    let result = tokio::select! {
        _ = shutdown => {
            let _ = stop_tx.send(true);
            match tokio::time::timeout(STOP_TIMEOUT * 2, &mut leading).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(RunError::Stopped("the leading task")),
                Err(_) => Ok(()),
            }
        }
        result = &mut leading => {
            let _ = stop_tx.send(true);
            result.unwrap_or(Err(RunError::Stopped("the leading task")))
        }
        result = &mut server => {
            let _ = stop_tx.send(true);
            match result {
                Ok(Ok(())) => Err(RunError::Stopped("the REST API")),
                Ok(Err(error)) => Err(RunError::Serve(error)),
                Err(_) => Err(RunError::Stopped("the REST API")),
            }
        }
    };
    // Event streams may hold connections open: they get a moment, not for ever.
    if !server.is_finished() && tokio::time::timeout(STOP_TIMEOUT, &mut server).await.is_err() {
        server.abort();
    }
    leading.abort();
    result
}

/// What `/v2/info` and `/v2/leader` say, with who leads read from the election.
fn api_info(config: &ServicesConfig, http_port: u16, role: watch::Receiver<Role>, abdication: Arc<Notify>) -> ApiInfo {
    let advertise = config.advertise.clone();
    let leader: LeaderFn = Arc::new(move || match &*role.borrow() {
        Role::Leader => Some(advertise.clone()),
        Role::Follower { leader } => leader.clone(),
    });
    let abdicate: Option<AbdicateFn> = config.etcd.as_ref().map(|_| {
        let abdicate: AbdicateFn = Arc::new(move || abdication.notify_one());
        abdicate
    });
    ApiInfo {
        framework_name: config.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        address: config.advertise.clone(),
        http_port,
        master: config.master_description(),
        role: config.role.clone(),
        user: config.planner.default_user.clone(),
        leader,
        abdicate,
        ha: config.etcd.is_some(),
        http_callbacks: config.http_callbacks,
    }
}

/// How one term of leadership ended without an error.
enum TermEnd {
    /// The process is stopping.
    Stopped,
    /// `DELETE /v2/leader`: step down and campaign again.
    Abdicated,
}

/// Leads (after winning the election, with etcd) until `stop`; campaigns again after an
/// abdication.
async fn lead(
    config: ServicesConfig,
    handle: ServicesHandle,
    mut requests: mpsc::Receiver<Request>,
    role: watch::Sender<Role>,
    mut stop: watch::Receiver<bool>,
    abdication: Arc<Notify>,
) -> Result<(), RunError> {
    loop {
        let (store, leadership) = match &config.etcd {
            None => {
                std::fs::create_dir_all(&config.work_dir).map_err(|e| {
                    RunError::Config(format!("--work-dir {}: cannot create it: {e}", config.work_dir.display()))
                })?;
                (Store::File(FileStore::open(&config.work_dir.join("services.redb"))?), None)
            }
            Some(etcd) => {
                let client = Etcd::connect(&etcd.endpoints)?;
                let term = tokio::select! {
                    term = election::campaign(&client, etcd, &config.advertise, &role) => term,
                    () = stopped(&mut stop) => return Ok(()),
                };
                tracing::info!(create_revision = term.create_revision, "elected the leading services process");
                let store = Store::Etcd(Box::new(EtcdStore::new(client.clone(), &etcd.root, term.clone())));
                (store, Some((client, term)))
            }
        };
        let (end, back) =
            term(&config, &handle, requests, store, leadership.as_ref(), &role, &mut stop, &abdication).await?;
        if let Some((client, term)) = &leadership
            && let Err(error) = client.revoke_lease(term.lease_id).await
        {
            tracing::warn!(%error, "could not revoke the leader's lease; it expires by itself");
        }
        match end {
            TermEnd::Stopped => return Ok(()),
            TermEnd::Abdicated => {
                tracing::info!("abdicated; campaigning again");
                role.send_replace(Role::Follower { leader: None });
                requests = back;
                tokio::select! {
                    _ = tokio::time::sleep(REJOIN_DELAY) => {}
                    () = stopped(&mut stop) => return Ok(()),
                }
            }
        }
    }
}

/// One term: recover, start the owner and the driver, and keep them until the term ends.
/// Gives back the request channel, for the next term.
#[allow(clippy::too_many_arguments)]
async fn term(
    config: &ServicesConfig,
    handle: &ServicesHandle,
    requests: mpsc::Receiver<Request>,
    mut store: Store,
    leadership: Option<&(Etcd, Term)>,
    role: &watch::Sender<Role>,
    stop: &mut watch::Receiver<bool>,
    abdication: &Notify,
) -> Result<(TermEnd, mpsc::Receiver<Request>), RunError> {
    let recovered = store.load().await?;
    tracing::info!(
        framework_id = ?recovered.framework_id,
        apps = recovered.apps.len(),
        instances = recovered.instances.len(),
        deployments = recovered.deployments.len(),
        "recovered the state"
    );
    let mut framework = config.framework()?;
    framework.id = recovered.framework_id.clone();
    let mut driver_config = if config.masters.is_empty() {
        let endpoints = config.etcd.as_ref().map(|e| e.endpoints.clone()).unwrap_or_default();
        DriverConfig::with_etcd(endpoints, framework)
    } else {
        DriverConfig::new(config.masters.clone(), framework)
    };
    driver_config.tls = config.master_tls.clone();
    // The owner acknowledges status updates once they are committed, many per call.
    driver_config.explicit_acknowledgements = true;
    driver_config.credential = config.credential.clone();
    let driver = Driver::new(driver_config)?;
    let (term_stop_tx, term_stop) = watch::channel(false);
    let (inputs, inbox) = mpsc::channel(INPUT_QUEUE_LEN);
    // Subscribed before the owner runs: every event after the recovered subscribers is seen.
    let callbacks = config
        .http_callbacks
        .then(|| callbacks::deliver(recovered.subscribers.clone(), handle.subscribe_events(), term_stop.clone()));
    let owner = Owner {
        framework_id: recovered.framework_id.clone(),
        planner: Planner::recover(config.planner.clone(), recovered),
        store,
        driver: driver.handle(),
        events: handle.events_sender(),
        views: handle.views_sender(),
        tick: Duration::from_millis(config.tick_ms.max(1)),
        pending_framework_id: false,
    };
    let driver_handle = driver.handle();
    if let Some(callbacks) = callbacks {
        tokio::spawn(callbacks);
    }
    let mut owner = tokio::spawn(owner.run(requests, inbox, term_stop.clone()));
    let mut driver_stop = term_stop.clone();
    let mut driving = tokio::spawn(async move {
        let mut forwarder = agora_sdk::forward::Forwarder::new(inputs);
        driver.run_until(&mut forwarder, async move { stopped(&mut driver_stop).await }).await
    });
    role.send_replace(Role::Leader);
    let held = async {
        match (leadership, &config.etcd) {
            (Some((client, term)), Some(etcd)) => election::hold(client, etcd, term).await,
            _ => std::future::pending().await,
        }
    };
    let ended: Result<TermEnd, RunError> = tokio::select! {
        lost = held => Err(RunError::LostLeadership(lost)),
        result = &mut owner => match result {
            Ok((Ok(()), _)) => Err(RunError::Stopped("the owner task")),
            Ok((Err(error), _)) => Err(RunError::Owner(error)),
            Err(_) => Err(RunError::Stopped("the owner task")),
        },
        result = &mut driving => match result {
            Ok(Ok(())) => Err(RunError::Stopped("the framework driver")),
            Ok(Err(error)) => Err(RunError::Driver(error)),
            Err(_) => Err(RunError::Stopped("the framework driver")),
        },
        () = stopped(stop) => Ok(TermEnd::Stopped),
        () = abdication.notified(), if leadership.is_some() => Ok(TermEnd::Abdicated),
    };
    let _ = term_stop_tx.send(true);
    driver_handle.stop();
    let end = match ended {
        Ok(end) => end,
        Err(error) => {
            // Stop writing and calling the master at once: another process may lead already.
            owner.abort();
            driving.abort();
            return Err(error);
        }
    };
    // A clean end: the owner finishes the batch in hand and gives the requests back.
    let back = match tokio::time::timeout(STOP_TIMEOUT, &mut owner).await {
        Ok(Ok((Ok(()), back))) => back,
        Ok(Ok((Err(error), _))) => return Err(RunError::Owner(error)),
        Ok(Err(_)) | Err(_) => {
            owner.abort();
            return Err(RunError::Stopped("the owner task"));
        }
    };
    let _ = tokio::time::timeout(STOP_TIMEOUT, &mut driving).await;
    driving.abort();
    Ok((end, back))
}
