//! `agora cron`: runs the cron framework (Chronos' REST API on port 4400), or, with a
//! subcommand, acts as a client of that API (`add`, `list`, `show`, `run`, `next`,
//! `history`, `kill`, `delete`). Flags in, `agora_cron` called: the server is
//! `agora_cron::run`, the client `agora_cron::cli`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_cron::{CronConfig, cli};
use agora_sdk::election::EtcdConfig;
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
    /// The REST API's port (Chronos' 4400).
    #[arg(long, default_value_t = 4400)]
    pub port: u16,
    /// Address clients are redirected to, if not ip:port.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Directory for the state without --etcd (`cron.redb`); locked so that two processes
    /// never share it.
    #[arg(long, default_value = "./agora-cron")]
    pub work_dir: PathBuf,
    #[command(flatten)]
    pub credential: super::auth::ClientCredential,
    #[command(flatten)]
    pub rest_auth: super::auth::RestAuth,
    /// The role the framework subscribes with; runs launch on its resources or `*`.
    #[arg(long, default_value = "*")]
    pub role: String,
    /// The framework's name, as the master shows it.
    #[arg(long, default_value = "agora-cron")]
    pub name: String,
    /// Finished runs kept per job; older ones are forgotten (the counters keep their sums).
    #[arg(long, default_value_t = agora_cron::model::HISTORY_PER_JOB)]
    pub history: usize,
    /// The leader's etcd lease: a leader that dies is replaced within about this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub etcd_lease_ttl: Duration,
}

/// The client's subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Client {
    /// Create or replace jobs from a JSON file in Chronos' format (one job or a list).
    Add {
        /// The job's JSON (`-` reads standard input).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every job with its schedule or parents, counters and last runs.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One job's definition and state.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a job now, with extra arguments (everything after NAME, `-v` included: give
    /// `--cron` and `--json` before NAME).
    Run {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        arguments: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A job's next scheduled times, in its zone (or `--tz`).
    Next {
        name: String,
        /// How many times.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Times strictly after this RFC 3339 instant (default now).
        #[arg(long)]
        from: Option<String>,
        /// Show the times in this IANA zone.
        #[arg(long)]
        tz: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A job's runs, newest first.
    History {
        name: String,
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Kill a job's runs in flight.
    Kill {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a job (with `--force`, even while it has children).
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The cron REST API.
    #[arg(long, default_value = "http://127.0.0.1:4400", env = "AGORA_CRON")]
    pub cron: String,
    /// Machine-readable output: JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: super::tls::ClientArgs,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<cli::Client> {
        let tls = self.tls.load()?;
        cli::Client::with_tls(&self.cron, self.json, tls.as_ref()).map_err(|e| anyhow::anyhow!("--cron: {e}"))
    }
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let Some(command) = args.command else { return serve(args.serve).await };
    let outcome = match command {
        Client::Add { file, client } => client.client()?.add(&file).await,
        Client::List { client } => client.client()?.list().await,
        Client::Show { name, client } => client.client()?.show(&name).await,
        Client::Run { name, arguments, client } => client.client()?.run(&name, &arguments).await,
        Client::Next { name, count, from, tz, client } => {
            client.client()?.next(&name, count, from.as_deref(), tz.as_deref()).await
        }
        Client::History { name, limit, client } => client.client()?.history(&name, limit).await,
        Client::Kill { name, client } => client.client()?.kill(&name).await,
        Client::Delete { name, force, client } => client.client()?.delete(&name, force).await,
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("agora cron: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The cron configuration the server flags describe, listening at `advertise`.
pub fn config(args: &ServeArgs, advertise: String) -> anyhow::Result<CronConfig> {
    if args.history == 0 || args.history > agora_cron::model::MAX_HISTORY_REQUEST {
        anyhow::bail!(
            "--history must be between 1 and {}, got {}",
            agora_cron::model::MAX_HISTORY_REQUEST,
            args.history
        );
    }
    if args.name.trim().is_empty() {
        anyhow::bail!("--name may not be empty");
    }
    let mut config = CronConfig::new(args.master.clone(), args.work_dir.clone(), advertise);
    config.tls = args.tls.load(None)?;
    config.master_tls = args.tls_client.load()?;
    config.name = args.name.clone();
    config.core.role = args.role.clone();
    config.core.history_per_job = args.history;
    config.credential = args.credential.load()?;
    config.http_gate = args.rest_auth.gate()?;
    if !args.etcd.is_empty() {
        let endpoints = agora_proto::etcd_client::parse_endpoints(&args.etcd.join(","))?;
        let ttl_s = args.etcd_lease_ttl.as_secs();
        if !(2..=60).contains(&ttl_s) {
            anyhow::bail!("--etcd-lease-ttl must be between 2s and 60s (whole seconds)");
        }
        let mut etcd = EtcdConfig::new(endpoints, agora_cron::runtime::ETCD_ROOT);
        etcd.lease_ttl_s = u32::try_from(ttl_s).expect("at most 60");
        config.etcd = Some(etcd);
    }
    Ok(config)
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Without etcd the work directory holds the state: one process per directory.
    let _lock = if args.etcd.is_empty() { Some(super::services::lock_work_dir(&args.work_dir)?) } else { None };
    let address = SocketAddr::new(args.ip, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--port {}: cannot listen on {address}", args.port))?;
    let advertise = args.advertise.clone().unwrap_or_else(|| listener.local_addr().map_or(address, |a| a).to_string());
    let config = config(&args, advertise)?;
    // The error's message already holds its causes; anyhow's chain would repeat them.
    agora_cron::run(config, listener, super::shutdown_signal()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}
