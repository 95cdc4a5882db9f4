//! [`run`]: serves the REST API on a listener the caller bound, and, on the process that
//! leads (the only one without `--etcd`), opens the store, recovers the core, starts the
//! owner task and the SDK driver, and keeps them until shutdown or until leadership or
//! the store is lost. A leader that loses its lease stops the process (fail-stop): another
//! may lead already, and this one's view of the state may be stale.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::etcd_client::{Etcd, EtcdError, Term};
use agora_sdk::election::{self, Role};
use agora_sdk::kv::EtcdTables;
use agora_sdk::{Driver, DriverConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::owner::{Owner, OwnerError, stopped};
use super::{CronConfig, INPUT_QUEUE_LEN, Request};
use crate::core::Cron;
use crate::http::{ApiInfo, Leadership, LeadershipFn};
use crate::store::{FILE_NAME, Store, StoreError};

/// How long a stopping process waits for its HTTP connections and for its owner to
/// finish the batch in hand.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why `agora cron` stopped on its own.
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

/// Serves `agora cron` on `listener` until `shutdown` completes (`Ok`), or until it cannot
/// go on (`Err`: a store it cannot write, lost leadership, a master that refuses the
/// framework for good); the binary exits non-zero then, and a supervisor restarts it.
pub async fn run(
    config: CronConfig,
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
    let advertise = config.advertise.clone();
    let leadership: LeadershipFn = Arc::new(move || match &*role.borrow() {
        Role::Leader => Leadership::Leader { address: advertise.clone() },
        Role::Follower { leader } => Leadership::Follower { leader: leader.clone() },
    });
    let mut app = crate::http::router(handle.clone(), ApiInfo { leadership });
    if let Some(gate) = &config.http_gate {
        // Outermost: the cross-site guard inside sees who is calling.
        app = app
            .layer(axum::middleware::from_fn_with_state(gate.clone(), agora_proto::edge::authenticate::authenticate));
    }
    tracing::info!(address = %listener.local_addr()?, advertise = %config.advertise, "cron REST API listening");
    let mut server_stop = stop.clone();
    // At most so many connections, and request headers whole within their deadline.
    let listener = agora_proto::edge::conn::nodelay(listener);
    let listener = agora_proto::edge::conn::LimitedListener::new(listener, Default::default());
    let tls = config.tls.clone();
    let mut server = tokio::spawn(async move {
        agora_proto::tls::serve(listener, tls.as_ref(), app, async move { stopped(&mut server_stop).await }).await
    });
    let mut leading = tokio::spawn(lead(config, requests, role_tx, stop.clone()));
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
    if !server.is_finished() && tokio::time::timeout(STOP_TIMEOUT, &mut server).await.is_err() {
        server.abort();
    }
    leading.abort();
    result
}

/// Leads (after winning the election, with etcd) until `stop`.
async fn lead(
    config: CronConfig,
    requests: mpsc::Receiver<Request>,
    role: watch::Sender<Role>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let (store, leadership) = match &config.etcd {
        None => {
            std::fs::create_dir_all(&config.work_dir).map_err(|e| {
                RunError::Config(format!("--work-dir {}: cannot create it: {e}", config.work_dir.display()))
            })?;
            (Store::open_file(&config.work_dir.join(FILE_NAME))?, None)
        }
        Some(etcd) => {
            let client = Etcd::connect(&etcd.endpoints)?;
            let term = tokio::select! {
                term = election::campaign(&client, etcd, &config.advertise, &role) => term,
                () = stopped(&mut stop) => return Ok(()),
            };
            tracing::info!(create_revision = term.create_revision, "elected the leading cron process");
            let store = Store::Etcd(Box::new(EtcdTables::new(client.clone(), &etcd.root, term.clone())));
            (store, Some((client, term)))
        }
    };
    let result = term(&config, requests, store, leadership.as_ref(), &role, &mut stop).await;
    if let Some((client, term)) = &leadership
        && let Err(error) = client.revoke_lease(term.lease_id).await
    {
        tracing::warn!(%error, "could not revoke the leader's lease; it expires by itself");
    }
    result
}

/// One term: recover, start the owner and the driver, and keep them until the term ends.
async fn term(
    config: &CronConfig,
    requests: mpsc::Receiver<Request>,
    mut store: Store,
    leadership: Option<&(Etcd, Term)>,
    role: &watch::Sender<Role>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), RunError> {
    let recovered = store.load().await?;
    tracing::info!(
        framework_id = ?recovered.framework_id,
        jobs = recovered.jobs.len(),
        runs_in_flight = recovered.runs.len(),
        finished_runs = recovered.finished.values().map(Vec::len).sum::<usize>(),
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
    let owner = Owner { cron: Cron::recover(config.core.clone(), recovered), store };
    let driver_handle = driver.handle();
    let mut owner = tokio::spawn(owner.run(driver.handle(), requests, inbox, term_stop.clone()));
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
    let ended: Result<(), RunError> = tokio::select! {
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
        () = stopped(stop) => Ok(()),
    };
    let _ = term_stop_tx.send(true);
    driver_handle.stop();
    if let Err(error) = ended {
        // Stop writing and calling the master at once: another process may lead already.
        owner.abort();
        driving.abort();
        return Err(error);
    }
    // A clean end: the owner finishes the batch in hand.
    match tokio::time::timeout(STOP_TIMEOUT, &mut owner).await {
        Ok(Ok((Ok(()), _))) => {}
        Ok(Ok((Err(error), _))) => return Err(RunError::Owner(error)),
        Ok(Err(_)) | Err(_) => owner.abort(),
    }
    let _ = tokio::time::timeout(STOP_TIMEOUT, &mut driving).await;
    driving.abort();
    Ok(())
}
