//! `agora services`: runs the services framework (Marathon's `/v2` API on port 8080), or,
//! with a subcommand, acts as a client of that API (`deploy`, `scale`, `list`, …). Flags
//! in, `agora_services` called: the server is `agora_services::run`, the client
//! `agora_services::cli`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_services::runtime::election::EtcdConfig;
use agora_services::{ServicesConfig, cli};
use anyhow::Context;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Client>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The server's flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TLS on the REST API.
    #[command(flatten)]
    pub tls: super::tls::ServerArgs,
    /// Verifies the master (its link speaks TLS; bare masters mean https://).
    #[command(flatten)]
    pub tls_client: super::tls::ClientArgs,
    /// The masters, `host:port`, comma-separated (tried in turn).
    #[arg(long, value_delimiter = ',', required_unless_present = "etcd")]
    pub master: Vec<String>,
    /// Run as one of several processes on this etcd cluster (`host:port` or URLs,
    /// comma-separated): they elect a leader and keep the state there; followers redirect
    /// the REST API to the leader. The masters are found there too unless --master names
    /// them.
    #[arg(long, value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Address the REST API listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// The REST API's port (Marathon's 8080).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address clients are redirected to (and `/v2/leader` shows), if not ip:port.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Directory for the state without --etcd (`services.redb`); locked so that two
    /// processes never share it.
    #[arg(long, default_value = "./agora-services")]
    pub work_dir: PathBuf,
    #[command(flatten)]
    pub credential: super::auth::ClientCredential,
    #[command(flatten)]
    pub rest_auth: super::auth::RestAuth,
    /// The role the framework subscribes with; apps launch under it unless they name theirs.
    #[arg(long, default_value = "*")]
    pub role: String,
    /// The framework's name, as the master shows it.
    #[arg(long, default_value = "agora-services")]
    pub name: String,
    /// How long a deployment may take before it is rolled back, for apps that set no
    /// `deploymentTimeoutSeconds`.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    pub deployment_timeout: Duration,
    /// Service ports handed out to port definitions with port 0, `FIRST-LAST`.
    #[arg(long, default_value = "10000-20000", value_parser = parse_port_range)]
    pub service_ports: (u16, u16),
    /// Versions kept per app; the oldest beyond this are forgotten.
    #[arg(long, default_value_t = 50)]
    pub max_versions: usize,
    /// How often every task is reconciled with the master (beyond the reconciliation at
    /// each subscription).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Duration,
    /// The leader's etcd lease: a leader that dies is replaced within about this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub etcd_lease_ttl: Duration,
    /// `http_callback`: serve `/v2/eventSubscriptions` and POST every event to the
    /// subscribed URLs, as Marathon's flag of the same name does.
    #[arg(long, value_enum)]
    pub event_subscriber: Option<EventSubscriber>,
}

/// How events reach subscribers beside `/v2/events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventSubscriber {
    #[value(name = "http_callback")]
    HttpCallback,
}

/// The client's subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Client {
    /// Create or update an app or a group from a JSON file, and follow the deployment
    /// until it finishes (exit 0), fails or is rolled back (exit 1).
    Deploy {
        /// The app's or group's Marathon JSON (`-` reads standard input).
        file: PathBuf,
        /// Override a deployment in progress on the same apps.
        #[arg(long)]
        force: bool,
        /// Print the deployment's id and return at once.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set an app's number of instances and follow the deployment.
    Scale {
        id: String,
        instances: u32,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every app with its instances, health and deployments.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One app's definition and state.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An app's tasks: host, ports, state, health.
    Tasks {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace every instance of an app, rolling, and follow the deployment.
    Restart {
        id: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deploy an app's previous configuration (or `--to VERSION`) and follow it.
    Rollback {
        id: String,
        /// The version to go back to (as `show` and `/v2/apps/ID/versions` list them).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop an app (or a group and everything in it) and forget it.
    Delete {
        id: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The services REST API.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "AGORA_SERVICES")]
    pub services: String,
    /// Machine-readable output: JSON (one object per line while following a deployment).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: super::tls::ClientArgs,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<cli::Client> {
        let tls = self.tls.load()?;
        cli::Client::with_tls(&self.services, self.json, tls.as_ref()).map_err(|e| anyhow::anyhow!("--services: {e}"))
    }
}

fn parse_port_range(value: &str) -> Result<(u16, u16), String> {
    let (first, last) = value.split_once('-').ok_or("expected FIRST-LAST, like 10000-20000")?;
    let first: u16 = first.trim().parse().map_err(|_| format!("{first:?} is not a port"))?;
    let last: u16 = last.trim().parse().map_err(|_| format!("{last:?} is not a port"))?;
    if first == 0 || first > last {
        return Err("expected 1 <= FIRST <= LAST".into());
    }
    Ok((first, last))
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let Some(command) = args.command else { return serve(args.serve).await };
    let outcome = match command {
        Client::Deploy { file, force, detach, client } => {
            client.client()?.deploy(&file, cli::Follow { force, detach }).await
        }
        Client::Scale { id, instances, force, detach, client } => {
            client.client()?.scale(&id, instances, cli::Follow { force, detach }).await
        }
        Client::List { client } => client.client()?.list().await,
        Client::Show { id, client } => client.client()?.show(&id).await,
        Client::Tasks { id, client } => client.client()?.tasks(&id).await,
        Client::Restart { id, force, detach, client } => {
            client.client()?.restart(&id, cli::Follow { force, detach }).await
        }
        Client::Rollback { id, to, force, detach, client } => {
            client.client()?.rollback(&id, to.as_deref(), cli::Follow { force, detach }).await
        }
        Client::Delete { id, force, detach, client } => {
            client.client()?.delete(&id, cli::Follow { force, detach }).await
        }
    };
    match outcome {
        Ok(cli::Outcome::Done) => Ok(ExitCode::SUCCESS),
        Ok(cli::Outcome::Failed) => Ok(ExitCode::FAILURE),
        Err(error) => {
            eprintln!("agora services: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The services configuration the server flags describe, listening at `advertise`.
pub fn config(args: &ServeArgs, advertise: String) -> anyhow::Result<ServicesConfig> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if args.max_versions == 0 || args.max_versions > 1_000 {
        anyhow::bail!("--max-versions must be between 1 and 1000, got {}", args.max_versions);
    }
    if args.deployment_timeout < Duration::from_secs(1) {
        anyhow::bail!("--deployment-timeout must be at least 1s");
    }
    if args.reconcile_interval < Duration::from_secs(1) {
        anyhow::bail!("--reconcile-interval must be at least 1s");
    }
    if args.name.trim().is_empty() {
        anyhow::bail!("--name may not be empty");
    }
    let mut config = ServicesConfig::new(args.master.clone(), args.work_dir.clone(), advertise);
    config.tls = args.tls.load(None)?;
    config.master_tls = args.tls_client.load()?;
    config.name = args.name.clone();
    config.role = args.role.clone();
    config.planner.default_deployment_timeout_ms = ms(args.deployment_timeout);
    config.planner.service_ports = args.service_ports;
    config.planner.max_versions = args.max_versions;
    config.planner.reconcile_interval_ms = ms(args.reconcile_interval);
    config.planner.roles = vec![args.role.clone()];
    config.planner.seed = rand::random();
    config.http_callbacks = args.event_subscriber == Some(EventSubscriber::HttpCallback);
    config.credential = args.credential.load()?;
    config.http_gate = args.rest_auth.gate()?;
    if !args.etcd.is_empty() {
        let endpoints = agora_proto::etcd_client::parse_endpoints(&args.etcd.join(","))?;
        let ttl_s = args.etcd_lease_ttl.as_secs();
        if !(2..=60).contains(&ttl_s) {
            anyhow::bail!("--etcd-lease-ttl must be between 2s and 60s (whole seconds)");
        }
        let mut etcd = EtcdConfig::new(endpoints, "/agora/services");
        etcd.lease_ttl_s = u32::try_from(ttl_s).expect("at most 60");
        config.etcd = Some(etcd);
    }
    Ok(config)
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Without etcd the work directory holds the state: one process per directory.
    let _lock = if args.etcd.is_empty() { Some(lock_work_dir(&args.work_dir)?) } else { None };
    let address = SocketAddr::new(args.ip, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--port {}: cannot listen on {address}", args.port))?;
    let advertise = args.advertise.clone().unwrap_or_else(|| listener.local_addr().map_or(address, |a| a).to_string());
    let config = config(&args, advertise)?;
    // The error's message already holds its causes; anyhow's chain would repeat them.
    agora_services::run(config, listener, super::shutdown_signal()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Creates and locks the work directory; the lock lives as long as the returned file.
pub fn lock_work_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("--work-dir {}: cannot create it", dir.display()))?;
    let path = dir.join("LOCK");
    let file = std::fs::File::create(&path).with_context(|| format!("--work-dir: cannot write {}", path.display()))?;
    file.try_lock().map_err(|_| anyhow::anyhow!("--work-dir {}: another process is using it", dir.display()))?;
    Ok(file)
}
