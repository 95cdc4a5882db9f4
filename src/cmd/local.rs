//! `agora local`: a whole cluster in one process — a master, N agents (each with its own
//! work directory and an equal share of this machine), the services framework with its
//! REST API on 8080 and the cron framework with its REST API on 4400. Ctrl-C (or SIGTERM,
//! SIGUSR1) stops it all: the agents drain (kill their tasks and wait, bounded, for the
//! frameworks to acknowledge TASK_KILLED), then the frameworks, then the master stops. A
//! second signal quits at once.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use agora_agent::{AgentConfig, Masters, Shutdown};
use anyhow::Context;
use tokio::sync::watch;

use super::auth::LocalCredentials;
use super::master::{Tuning, lock_work_dir};

mod certs;

/// More agents than this on one machine is a mistake, not a test.
const MAX_LOCAL_AGENTS: u32 = 256;
/// How long, once Ctrl-C killed the tasks, the agents wait for their frameworks to
/// acknowledge the updates: a framework that is not running never will.
const DRAIN_UPDATES_TIMEOUT_MS: u64 = 5_000;

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
    /// The port of the services framework's REST API (Marathon's `/v2`).
    #[arg(long, default_value_t = 8080)]
    pub services_port: u16,
    /// Do not start the services framework.
    #[arg(long)]
    pub no_services: bool,
    /// The port of the cron framework's REST API (Chronos').
    #[arg(long, default_value_t = 4400)]
    pub cron_port: u16,
    /// Do not start the cron framework.
    #[arg(long)]
    pub no_cron: bool,
    /// Require every caller to authenticate (frameworks, agents, operators, the services
    /// and cron APIs), with credentials made in WORK_DIR/auth (kept across starts): use
    /// them with AGORA_PRINCIPAL=operator AGORA_SECRET_FILE=WORK_DIR/auth/operator.secret.
    #[arg(long)]
    pub authenticate: bool,
    /// TLS everywhere: make a throwaway CA and certificates in DIR/tls (kept for the next
    /// start while valid), serve every port with TLS, and require agents to present a
    /// client certificate. Clients then need --tls-ca DIR/tls/ca.pem. Implies
    /// --authenticate: clients also present the operator's credential.
    #[arg(long)]
    pub secure: bool,
    #[command(flatten)]
    pub isolation: super::agent::IsolationArgs,
    #[command(flatten)]
    pub tuning: Tuning,
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    if args.agents == 0 || args.agents > MAX_LOCAL_AGENTS {
        anyhow::bail!("--agents must be between 1 and {MAX_LOCAL_AGENTS}, got {}", args.agents);
    }
    let mut signals = super::StopSignals::listen()?;
    if args.work_dir.as_os_str().is_empty() {
        anyhow::bail!("--work-dir: may not be empty");
    }
    // Absolute from here on: the agents' tasks run in their sandboxes, not here.
    let work_dir = std::path::absolute(&args.work_dir)
        .with_context(|| format!("--work-dir {}: cannot make it absolute", args.work_dir.display()))?;
    // Every flag is checked and every port bound before anything is written or started: a
    // mistake or a port in use leaves nothing behind (no `master/LOCK`, no master logs).
    agora_proto::model::Resources::parse(args.resources.as_deref().unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("--resources: {e}"))?;
    let address = SocketAddr::new(args.ip, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--port {}: cannot listen on {address}", args.port))?;
    let master = listener.local_addr()?.to_string();
    // Bound before anything starts, so that a port in use stops `agora local` at once.
    let services_listener = if args.no_services {
        None
    } else {
        let address = SocketAddr::new(args.ip, args.services_port);
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
            format!(
                "--services-port {}: cannot listen on {address} (another port, or --no-services)",
                args.services_port
            )
        })?;
        Some(listener)
    };
    let cron_listener = if args.no_cron {
        None
    } else {
        let address = SocketAddr::new(args.ip, args.cron_port);
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
            format!("--cron-port {}: cannot listen on {address} (another port, or --no-cron)", args.cron_port)
        })?;
        Some(listener)
    };
    let mut options = args.tuning.options(master.clone())?;
    let master_dir = work_dir.join("master");
    let _lock = lock_work_dir(&master_dir)?;
    options.registry_path = Some(master_dir.join("registry.redb"));
    // A secure cluster authenticates every caller too: TLS alone says nothing of who calls.
    let auth = match args.authenticate || args.secure {
        true => Some(LocalCredentials::load_or_make(&work_dir.join("auth"))?),
        false => None,
    };
    if let Some(auth) = &auth {
        options.security = auth.master_security();
    }
    let secure = if args.secure { Some(Secure::start(&work_dir, args.ip)?) } else { None };
    options.tls = secure.as_ref().map(|s| s.master.clone());
    // Detected after the work dir exists: its file system's free space is the agents' disk.
    let total = agora_agent::resolve_resources(args.resources.as_deref(), &work_dir)
        .map_err(|e| anyhow::anyhow!("--resources: {e}"))?;

    let mut agent_setups = Vec::new();
    for (index, share) in agora_agent::split_resources(&total, args.agents).into_iter().enumerate() {
        let agent_listener =
            tokio::net::TcpListener::bind((args.ip, 0)).await.context("binding an agent's HTTP port")?;
        let mut config = AgentConfig::new(Masters::one(master.clone()), work_dir.join(format!("agent-{index}")), share);
        config.hostname = agora_agent::default_hostname(args.ip);
        config.drain_updates_timeout_ms = DRAIN_UPDATES_TIMEOUT_MS;
        if let Some(secure) = &secure {
            config.master_tls = Some(secure.agent_link.clone());
            config.http_tls = Some(secure.server.clone());
        }
        args.isolation.apply(&mut config)?;
        if let Some(auth) = &auth {
            config.credential = Some(auth.credential("agent")?);
            config.http_gate = Some(auth.http_gate(&["/health"]));
        }
        if !args.isolation.allow_root_tasks {
            // Run as root, `agora local` runs what would run as root as nobody instead:
            // frameworks name the user who started them.
            config.root_tasks_as = Some("nobody".to_owned());
        }
        agent_setups.push((config, agent_listener));
    }

    // The master stops after the agents, so that the updates of the tasks they kill still
    // reach the frameworks and their acknowledgements come back.
    let (stop_master, master_stopped) = watch::channel(false);
    let mut master_task = tokio::spawn(agora_master::runtime::serve(listener, options, async move {
        let mut stopped = master_stopped;
        agora_master::runtime::stopped(&mut stopped).await
    }));
    let (drain_agents, agents_drained) = watch::channel(false);
    let mut agents = tokio::task::JoinSet::new();
    for (index, (config, agent_listener)) in agent_setups.into_iter().enumerate() {
        tracing::info!(agent = index, resources = %config.resources, "starting agent");
        let mut drain = agents_drained.clone();
        agents.spawn(agora_agent::run(config, agent_listener, async move {
            let _ = drain.wait_for(|drain| *drain).await;
            Shutdown::Drain
        }));
    }

    // Services subscribes like any framework; it stops after the agents have drained, so
    // that it hears of its tasks' ends, and before the master.
    let (stop_services, services_stopped) = watch::channel(false);
    let (mut services_task, services_url) =
        match services(services_listener, &master, &work_dir, auth.as_ref(), secure.as_ref(), services_stopped)? {
            Some((task, url)) => (Some(task), Some(url)),
            None => (None, None),
        };
    let (mut cron_task, cron_url) =
        match cron(cron_listener, &master, &work_dir, auth.as_ref(), secure.as_ref(), stop_services.subscribe())? {
            Some((task, url)) => (Some(task), Some(url)),
            None => (None, None),
        };
    let scheme = if secure.is_some() { "https" } else { "http" };
    let mut running = format!("master at {scheme}://{master} with {} agents", args.agents);
    // With TLS every client needs the CA; the environment variable saves repeating it.
    let (ca_flag, curl_ca, tls_note) = match &secure {
        Some(secure) => {
            let ca = secure.files.ca.display().to_string();
            let made = if secure.files.made { "made" } else { "kept from the last start" };
            (
                format!(" --tls-ca {ca}"),
                format!(" --cacert {ca}"),
                format!(
                    "TLS:    on every port, certificates {made} in {} (agents present agent.pem).\n\
                     \x20       Clients: --tls-ca {ca}, or export AGORA_TLS_CA={ca}\n",
                    secure.files.dir.display()
                ),
            )
        }
        None => (String::new(), String::new(), String::new()),
    };
    let mut tries = format!("{tls_note}Try:    agora run --master {master}{ca_flag} -- echo hello\n");
    if let Some(url) = &services_url {
        running.push_str(&format!(", services at {url}"));
        let target = if secure.is_some() { format!(" --services {url}{ca_flag}") } else { String::new() };
        tries.push_str(&format!(
            "Deploy: agora services deploy{target} app.json   (an app in Marathon's JSON; see docs/services.md)\n"
        ));
    }
    if let Some(url) = &cron_url {
        running.push_str(&format!(", cron at {url}"));
        let target = if secure.is_some() { format!(" --cron {url}{ca_flag}") } else { String::new() };
        tries.push_str(&format!(
            "Jobs:   agora cron add{target} job.json           (a job in Chronos' JSON; see docs/cron.md)\n"
        ));
    }
    let curl_auth = match &auth {
        Some(auth) => {
            let secret = auth.secret_file("operator");
            let secret = secret.display();
            let made = if auth.made { "made" } else { "kept from the last start" };
            running.push_str(&format!("; every caller authenticates (credentials {made} in {})", auth.dir.display()));
            tries.insert_str(0, &format!("Auth:   export AGORA_PRINCIPAL=operator AGORA_SECRET_FILE={secret}\n"));
            format!(" -u operator:$(cat {secret})")
        }
        None => String::new(),
    };
    eprintln!(
        "Agora is running: {running} (state in {}).\n{tries}\
         Look:   curl -s{curl_ca}{curl_auth} {scheme}://{master}/state\n\
         Stop with Ctrl-C: tasks are killed, then everything stops.",
        work_dir.display()
    );
    let services_running = async {
        match services_task.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    let cron_running = async {
        match cron_task.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    let mut master_done = false;
    let mut services_done = false;
    let mut cron_done = false;
    let mut first_error = tokio::select! {
        _ = signals.next() => None,
        result = services_running => {
            services_done = true;
            Some(services_failure(result).unwrap_or_else(|| anyhow::anyhow!("services stopped unexpectedly")))
        }
        result = cron_running => {
            cron_done = true;
            Some(cron_failure(result).unwrap_or_else(|| anyhow::anyhow!("cron stopped unexpectedly")))
        }
        Some(result) = agents.join_next() => {
            Some(failure("an agent", result).unwrap_or_else(|| anyhow::anyhow!("an agent stopped unexpectedly")))
        }
        result = &mut master_task => {
            master_done = true;
            Some(failure("the master", result).unwrap_or_else(|| anyhow::anyhow!("the master stopped unexpectedly")))
        }
    };
    if first_error.is_none() {
        eprintln!("Stopping: killing the tasks and reporting them killed (Ctrl-C again to quit at once).");
    }
    let _ = drain_agents.send(true);
    loop {
        tokio::select! {
            next = agents.join_next() => match next {
                None => break,
                Some(result) => if let Some(error) = failure("an agent", result) {
                    first_error.get_or_insert(error);
                },
            },
            _ = signals.next() => {
                // What the agents have not finished is in their checkpoints: the next
                // `agora local` on this directory takes it back.
                tracing::warn!("a second signal while stopping: quitting at once");
                return first_error.map_or(Ok(ExitCode::SUCCESS), Err);
            }
        }
    }
    // One signal stops both frameworks.
    let _ = stop_services.send(true);
    if !services_done
        && let Some(task) = services_task
        && let Some(error) = services_failure(task.await)
    {
        first_error.get_or_insert(error);
    }
    if !cron_done
        && let Some(task) = cron_task
        && let Some(error) = cron_failure(task.await)
    {
        first_error.get_or_insert(error);
    }
    let _ = stop_master.send(true);
    if !master_done && let Some(error) = failure("the master", master_task.await) {
        first_error.get_or_insert(error);
    }
    first_error.map_or(Ok(ExitCode::SUCCESS), Err)
}

/// The TLS settings of a `--secure` cluster, from the certificates in `DIR/tls`.
#[derive(Debug)]
struct Secure {
    files: certs::LocalCerts,
    /// The master's: its certificate, and agents' certificates verified against the CA.
    master: agora_proto::tls::ServerTls,
    /// Services', cron's and the agents' HTTP.
    server: agora_proto::tls::ServerTls,
    /// The agents' link: the CA, and the agents' certificate to present.
    agent_link: agora_proto::tls::ClientTls,
    /// The frameworks' link to the master: the CA.
    client: agora_proto::tls::ClientTls,
}

impl Secure {
    fn start(work_dir: &std::path::Path, ip: IpAddr) -> anyhow::Result<Secure> {
        use agora_proto::tls::{ClientTls, ServerFiles, ServerTls};
        let files = certs::ensure(work_dir, ip, std::time::SystemTime::now())?;
        let server_files = |client_ca: Option<PathBuf>| ServerFiles {
            cert: Some(files.server_cert.clone()),
            key: Some(files.server_key.clone()),
            client_ca,
        };
        let loaded = |tls: Option<ServerTls>| tls.context("TLS settings without a certificate");
        let master = loaded(ServerTls::load(&server_files(Some(files.ca.clone())))?)?;
        let server = loaded(ServerTls::load(&server_files(None))?)?;
        let agent_link = ClientTls::load(Some(&files.ca), Some(&files.agent_cert), Some(&files.agent_key))?
            .context("the agents' TLS settings")?;
        let client = ClientTls::load(Some(&files.ca), None, None)?.context("the frameworks' TLS settings")?;
        Ok(Secure { files, master, server, agent_link, client })
    }
}

/// What ended a master or agent task, as an error; `None` when it returned cleanly.
fn failure(who: &str, result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> Option<anyhow::Error> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.context(format!("{who} failed"))),
        Err(error) => Some(anyhow::anyhow!("{who} panicked: {error}")),
    }
}

type ServicesTask = tokio::task::JoinHandle<Result<(), agora_services::RunError>>;

/// Starts the services framework on `listener` against `master`, its state in
/// `WORK_DIR/services`; `None` with `--no-services`. Returns the task and its REST API's URL.
fn services(
    listener: Option<tokio::net::TcpListener>,
    master: &str,
    work_dir: &std::path::Path,
    auth: Option<&LocalCredentials>,
    secure: Option<&Secure>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<(ServicesTask, String)>> {
    let Some(listener) = listener else { return Ok(None) };
    let advertise = listener.local_addr()?.to_string();
    let mut config =
        agora_services::ServicesConfig::new(vec![master.to_owned()], work_dir.join("services"), advertise.clone());
    config.planner.seed = rand::random();
    if let Some(auth) = auth {
        config.credential = Some(auth.credential("services")?);
        config.http_gate = Some(auth.http_gate(&["/ping"]));
    }
    config.tls = secure.map(|s| s.server.clone());
    config.master_tls = secure.map(|s| s.client.clone());
    let scheme = if secure.is_some() { "https" } else { "http" };
    let task = tokio::spawn(agora_services::run(config, listener, async move {
        let _ = stop.wait_for(|stop| *stop).await;
    }));
    Ok(Some((task, format!("{scheme}://{advertise}"))))
}

fn services_failure(
    result: Result<Result<(), agora_services::RunError>, tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match result {
        Ok(Ok(())) => None,
        // The error's message already holds its causes; anyhow's chain would repeat them.
        Ok(Err(error)) => Some(anyhow::anyhow!("services failed: {error}")),
        Err(error) => Some(anyhow::anyhow!("services panicked: {error}")),
    }
}

type CronTask = tokio::task::JoinHandle<Result<(), agora_cron::RunError>>;

/// Starts the cron framework on `listener` against `master`, its state in
/// `WORK_DIR/cron`; `None` with `--no-cron`. Returns the task and its REST API's URL.
fn cron(
    listener: Option<tokio::net::TcpListener>,
    master: &str,
    work_dir: &std::path::Path,
    auth: Option<&LocalCredentials>,
    secure: Option<&Secure>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<(CronTask, String)>> {
    let Some(listener) = listener else { return Ok(None) };
    let advertise = listener.local_addr()?.to_string();
    let mut config = agora_cron::CronConfig::new(vec![master.to_owned()], work_dir.join("cron"), advertise.clone());
    if let Some(auth) = auth {
        config.credential = Some(auth.credential("cron")?);
        config.http_gate = Some(auth.http_gate(&["/ping"]));
    }
    config.tls = secure.map(|s| s.server.clone());
    config.master_tls = secure.map(|s| s.client.clone());
    let scheme = if secure.is_some() { "https" } else { "http" };
    let task = tokio::spawn(agora_cron::run(config, listener, async move {
        let _ = stop.wait_for(|stop| *stop).await;
    }));
    Ok(Some((task, format!("{scheme}://{advertise}"))))
}

fn cron_failure(result: Result<Result<(), agora_cron::RunError>, tokio::task::JoinError>) -> Option<anyhow::Error> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(anyhow::anyhow!("cron failed: {error}")),
        Err(error) => Some(anyhow::anyhow!("cron panicked: {error}")),
    }
}
