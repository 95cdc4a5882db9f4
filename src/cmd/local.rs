//! `agora local`: a whole cluster in one process — a master and N agents, each agent with
//! its own work directory and an equal share of this machine.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use agora_agent::AgentConfig;
use anyhow::Context;
use tokio::sync::watch;

use super::master::{Tuning, lock_work_dir};

/// More agents than this on one machine is a mistake, not a test.
const MAX_LOCAL_AGENTS: u32 = 256;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many agents to start.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// Address the master listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// The master's port (gRPC and HTTP).
    #[arg(long, default_value_t = 5050)]
    pub port: u16,
    /// Where the master's and agents' state lives: `DIR/master`, `DIR/agent-0`, …
    #[arg(long, default_value = "./agora-local")]
    pub work_dir: PathBuf,
    /// Resources of the whole machine to split between the agents (Mesos syntax);
    /// anything not named is detected.
    #[arg(long)]
    pub resources: Option<String>,
    #[command(flatten)]
    pub tuning: Tuning,
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    if args.agents == 0 || args.agents > MAX_LOCAL_AGENTS {
        anyhow::bail!("--agents must be between 1 and {MAX_LOCAL_AGENTS}, got {}", args.agents);
    }
    let master_dir = args.work_dir.join("master");
    let _lock = lock_work_dir(&master_dir)?;
    let address = SocketAddr::new(args.ip, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--port {}: cannot listen on {address}", args.port))?;
    let master = listener.local_addr()?.to_string();
    let mut options = args.tuning.options(master.clone())?;
    options.registry_path = Some(master_dir.join("registry.redb"));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move { agora_master::runtime::stopped(&mut rx).await };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(agora_master::runtime::serve(listener, options, stopped(stop_rx.clone())));

    let total = agora_agent::resolve_resources(args.resources.as_deref(), &args.work_dir)
        .map_err(|e| anyhow::anyhow!("--resources: {e}"))?;
    for (index, share) in agora_agent::split_resources(&total, args.agents).into_iter().enumerate() {
        let agent_listener = tokio::net::TcpListener::bind((args.ip, 0)).await.context("binding an agent's HTTP port")?;
        let mut config = AgentConfig::new(master.clone(), args.work_dir.join(format!("agent-{index}")), share);
        config.hostname = agora_agent::default_hostname(args.ip);
        tracing::info!(agent = index, resources = %config.resources, "starting agent");
        tasks.spawn(agora_agent::run(config, agent_listener, stopped(stop_rx.clone())));
    }

    eprintln!(
        "Agora is running: master at http://{master} with {} agents (state in {}).\n\
         Try:   agora run --master {master} -- echo hello\n\
         Look:  curl -s http://{master}/state\n\
         Stop with Ctrl-C.",
        args.agents,
        args.work_dir.display()
    );
    tokio::select! {
        _ = super::shutdown_signal() => {}
        Some(result) = tasks.join_next() => {
            // A master or agent stopped on its own: that is an error, so stop the rest.
            let _ = stop_tx.send(true);
            result.context("a component panicked")??;
            anyhow::bail!("a component stopped unexpectedly");
        }
    }
    let _ = stop_tx.send(true);
    while let Some(result) = tasks.join_next().await {
        result.context("a component panicked")??;
    }
    Ok(ExitCode::SUCCESS)
}
