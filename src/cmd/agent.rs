//! `agora agent`: runs one agent that offers this host's resources to a master and serves
//! its sandboxes over HTTP. SIGTERM and SIGINT stop it leaving its tasks running (the next
//! agent on the work dir takes them back); SIGUSR1 drains it: its tasks are killed, then it
//! stops. A second signal during a drain stops it at once. With a subcommand (`drain`,
//! `deactivate`, `reactivate`, `show`), it asks the master about an agent instead
//! (`agora_master::cli`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_agent::{AgentConfig, Masters, Shutdown};
use agora_proto::model::Attribute;
use anyhow::Context;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Client>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Operator commands about an agent, sent to the leading master's operator API.
#[derive(Debug, clap::Subcommand)]
pub enum Client {
    /// Kill the agent's tasks (each with its grace period, at most --grace-period) and
    /// offer it no more; `agora agent reactivate` once drained offers it again.
    Drain {
        /// The agent's id, as `/state` shows it.
        agent_id: String,
        /// The longest grace period a task gets (`30s`, `2m`); default: each task's own.
        #[arg(long, value_parser = humantime::parse_duration)]
        grace_period: Option<Duration>,
        /// Remove the agent for good once drained (its id may never register again).
        #[arg(long)]
        mark_gone: bool,
        #[command(flatten)]
        master: MasterArg,
    },
    /// Offer the agent no more (its outstanding offers are rescinded); its tasks run on.
    Deactivate {
        /// The agent's id, as `/state` shows it.
        agent_id: String,
        #[command(flatten)]
        master: MasterArg,
    },
    /// Offer a deactivated or drained agent again.
    Reactivate {
        /// The agent's id, as `/state` shows it.
        agent_id: String,
        #[command(flatten)]
        master: MasterArg,
    },
    /// An agent: its address, state, resources and live tasks.
    Show {
        /// The agent's id, as `agora agents` shows it.
        agent_id: String,
        /// Print the master's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        master: MasterArg,
    },
}

use super::ops::MasterArg;

/// The agent's own flags.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("find_master").required(true).args(["master", "etcd"])))]
pub struct ServeArgs {
    /// TLS: the agent's HTTP port serves this certificate, and the agent presents it to a
    /// master that asks for client certificates (--tls-client-ca there).
    #[command(flatten)]
    pub tls: super::tls::ServerArgs,
    #[command(flatten)]
    pub tls_client: super::tls::ClientArgs,
    /// The master to register with, HOST:PORT; with several masters on etcd, all of them,
    /// comma-separated: the agent dials them in turn and follows the one that leads.
    #[arg(long)]
    pub master: Option<String>,
    /// Instead of --master: the etcd cluster the masters elect their leader on (HOST:PORT
    /// or http:// URLs, comma-separated); the agent registers with the leader named there
    /// and looks it up again whenever it loses it.
    #[arg(long)]
    pub etcd: Option<String>,
    /// Address the agent's HTTP endpoint (sandboxes, /state) listens on; 0.0.0.0 for every
    /// interface.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Port of the agent's HTTP endpoint, as in Mesos.
    #[arg(long, default_value_t = 5051)]
    pub port: u16,
    /// Name under which frameworks reach this agent (default: --ip, or the machine's
    /// hostname when --ip is 0.0.0.0).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Directory for the task sandboxes and the checkpoint (`meta/`) from which a restarted
    /// agent takes back its id and its running tasks; locked so that two agents never share it.
    /// A relative path is taken from the current directory at start.
    #[arg(long, default_value = "./agora-agent")]
    pub work_dir: PathBuf,
    /// Resources to offer, e.g. "cpus:4;mem:8192;disk:10000;ports:[31000-32000]"; those not
    /// named are detected.
    #[arg(long)]
    pub resources: Option<String>,
    /// Attributes frameworks can match on, e.g. "rack:r1;zone:a".
    #[arg(long)]
    pub attributes: Option<String>,
    /// Time between SIGTERM and SIGKILL when killing a task that names none.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub kill_grace_period: Duration,
    #[command(flatten)]
    pub isolation: IsolationArgs,
    /// The agent's credential for a master run with --authenticate-agents: a file with
    /// `principal secret`, or JSON `{"principal": …, "secret": …}` (Mesos' --credential).
    #[arg(long, value_name = "FILE")]
    pub credential: Option<PathBuf>,
    /// Who may call the agent's HTTP API: --credentials FILE, and --authenticate-http to
    /// refuse callers without a valid one (`/health` stays open).
    #[command(flatten)]
    pub rest_auth: super::auth::RestAuth,
    /// The operator's ACLs (the master's --acls file): the agent applies
    /// `access_sandboxes` to its sandbox files, by the sandbox's user.
    #[arg(long, value_name = "FILE")]
    pub acls: Option<PathBuf>,
}

/// How tasks are isolated; shared by `agora agent` and `agora local`.
#[derive(Debug, Clone, clap::Args)]
pub struct IsolationArgs {
    /// `cgroups` (each task in a cgroup of its own, limited to its cpus, mem and pids; v1
    /// or v2, detected), `posix` (processes only, no limits: for agents that cannot write
    /// cgroups) or `auto`: cgroups where the agent can write them, else posix.
    #[arg(long, default_value = "auto", value_parser = parse_isolation)]
    pub isolation: agora_agent::Isolation,
    /// A hard CPU quota (CFS bandwidth) of each task's cpus, not only a weighted share.
    #[arg(long)]
    pub cgroups_enable_cfs: bool,
    /// Memory plus swap limited to the task's mem: no swapping beyond it.
    #[arg(long)]
    pub cgroups_limit_swap: bool,
    /// Most processes and threads one task may hold (a fork bomb stays in its task).
    #[arg(long, default_value_t = agora_agent::CgroupsConfig::default().max_pids)]
    pub cgroups_max_pids: u64,
    /// End a task whose sandbox outgrows its disk resource (TASK_FAILED,
    /// REASON_CONTAINER_LIMITATION_DISK); without it sandboxes are only measured.
    #[arg(long)]
    pub enforce_container_disk_quota: bool,
    /// How often the sandboxes of running tasks are measured.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub disk_watch_interval: Duration,
    /// Let an agent running as root run tasks as root (a task's user is its own
    /// CommandInfo.user, else its framework's); without it they are refused.
    #[arg(long)]
    pub allow_root_tasks: bool,
}

fn parse_isolation(value: &str) -> Result<agora_agent::Isolation, String> {
    value.parse()
}

impl IsolationArgs {
    /// Puts the isolation flags into `config`; every error names its flag.
    pub fn apply(&self, config: &mut AgentConfig) -> anyhow::Result<()> {
        if self.cgroups_max_pids == 0 {
            anyhow::bail!("--cgroups-max-pids: must be at least 1");
        }
        let interval_ms = u64::try_from(self.disk_watch_interval.as_millis()).unwrap_or(u64::MAX);
        if interval_ms < 100 {
            anyhow::bail!("--disk-watch-interval: must be at least 100ms");
        }
        config.isolation = self.isolation;
        config.cgroups = agora_agent::CgroupsConfig {
            enable_cfs: self.cgroups_enable_cfs,
            limit_swap: self.cgroups_limit_swap,
            max_pids: self.cgroups_max_pids,
        };
        config.enforce_container_disk_quota = self.enforce_container_disk_quota;
        config.disk_watch_interval_ms = interval_ms;
        config.allow_root_tasks = self.allow_root_tasks;
        Ok(())
    }
}

impl ServeArgs {
    /// The agent's configuration from the flags; every error names its flag.
    pub fn config(&self) -> anyhow::Result<AgentConfig> {
        let masters = match (&self.master, &self.etcd) {
            (Some(master), None) => Masters::List(check_master(master)?),
            (None, Some(etcd)) => Masters::Etcd(agora_proto::etcd_client::parse_endpoints(etcd)?),
            _ => anyhow::bail!("give either --master or --etcd"),
        };
        if self.work_dir.as_os_str().is_empty() {
            anyhow::bail!("--work-dir: may not be empty");
        }
        let resources = agora_agent::resolve_resources(self.resources.as_deref(), &self.work_dir)
            .map_err(|e| anyhow::anyhow!("--resources: {e}"))?;
        let attributes = match &self.attributes {
            Some(text) => Attribute::parse_list(text).map_err(|e| anyhow::anyhow!("--attributes: {e}"))?,
            None => Vec::new(),
        };
        let hostname = match &self.hostname {
            Some(name) if name.trim().is_empty() => anyhow::bail!("--hostname: may not be empty"),
            Some(name) => name.trim().to_owned(),
            None => agora_agent::default_hostname(self.ip),
        };
        let mut config = AgentConfig::new(masters, &self.work_dir, resources);
        config.master_tls = agora_proto::tls::ClientTls::load(
            self.tls_client.tls_ca.as_deref(),
            self.tls.tls_cert.as_deref(),
            self.tls.tls_key.as_deref(),
        )?;
        config.http_tls = self.tls.load(None)?;
        config.attributes = attributes;
        config.hostname = hostname;
        config.kill_grace_period_ms = u64::try_from(self.kill_grace_period.as_millis()).unwrap_or(u64::MAX);
        self.isolation.apply(&mut config)?;
        if let Some(path) = &self.credential {
            let credential =
                agora_proto::auth::Credential::load(path).map_err(|e| anyhow::anyhow!("--credential {e}"))?;
            config.credential = Some(credential);
        }
        config.http_gate = self.rest_auth.gate_with_open_paths(&["/health"])?;
        config.acls = self.acls.as_ref().map(super::auth::load_acls).transpose()?;
        Ok(config)
    }
}

/// Accepts `HOST:PORT`, with or without `http://` or `https://`, or a comma-separated list of them.
fn check_master(value: &str) -> anyhow::Result<Vec<String>> {
    value.split(',').map(check_one_master).collect()
}

fn check_one_master(value: &str) -> anyhow::Result<String> {
    let address = value.trim();
    let bare = address.strip_prefix("http://").or_else(|| address.strip_prefix("https://")).unwrap_or(address);
    let valid =
        bare.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid {
        anyhow::bail!("--master: expected HOST:PORT (like 127.0.0.1:5050), got {value:?}");
    }
    Ok(address.to_owned())
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(command) => client(command).await,
        None => serve(args.serve).await,
    }
}

async fn client(command: Client) -> anyhow::Result<ExitCode> {
    use agora_master::cli::{AgentCommand, run};
    let (agent_id, master, command) = match command {
        Client::Drain { agent_id, grace_period, mark_gone, master } => {
            (agent_id, master, AgentCommand::Drain { max_grace_period: grace_period, mark_gone })
        }
        Client::Deactivate { agent_id, master } => (agent_id, master, AgentCommand::Deactivate),
        Client::Reactivate { agent_id, master } => (agent_id, master, AgentCommand::Reactivate),
        Client::Show { agent_id, json, master } => return super::ops::agent_show(&agent_id, json, &master).await,
    };
    let tls = master.tls.load()?;
    match run(&master.master, tls.as_ref(), &agent_id, command).await {
        Ok(line) => {
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("agora agent: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Listening before anything else: a SIGUSR1 sent during start-up must not kill the agent.
    let mut signals = super::StopSignals::listen()?;
    let config = args.config()?;
    let address = SocketAddr::new(args.ip, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--port {}: cannot listen on {address}", args.port))?;
    let (stop, how) = tokio::sync::oneshot::channel();
    let agent = agora_agent::run(config, listener, async move { how.await.unwrap_or(Shutdown::LeaveTasks) });
    tokio::pin!(agent);
    let mut stop = Some(stop);
    loop {
        tokio::select! {
            result = &mut agent => {
                result?;
                return Ok(ExitCode::SUCCESS);
            }
            signal = signals.next() => {
                let Some(stop) = stop.take() else {
                    // Impatience: what the drain has not finished is left as a crash leaves
                    // it, in the checkpoint, for the next agent on this work dir.
                    tracing::warn!("a second signal during the drain: stopping at once");
                    return Ok(ExitCode::SUCCESS);
                };
                let _ = stop.send(match signal {
                    super::StopSignal::Terminate => Shutdown::LeaveTasks,
                    super::StopSignal::Drain => Shutdown::Drain,
                });
            }
        }
    }
}
