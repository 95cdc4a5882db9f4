//! `agora master`: runs one master on a port shared by gRPC and HTTP.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_master::runtime::{self, MasterOptions};
use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Port for gRPC (agents, frameworks) and HTTP (operators), as in Mesos.
    #[arg(long, default_value_t = 5050)]
    pub port: u16,
    /// Address agents and frameworks are told to use, if not ip:port.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Directory for the master's state (the registry, `registry.redb`); locked so that
    /// two masters never share it.
    #[arg(long, default_value = "./agora-master")]
    pub work_dir: PathBuf,
    /// Run as one of several masters: elect the leader and keep the registry in this etcd
    /// cluster (`host:port` or URLs, comma-separated) instead of the registry file.
    /// Followers redirect clients to the leader; a leader that loses its lease exits.
    #[arg(long, value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The leader's etcd lease: a leader that dies is replaced within about this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub etcd_lease_ttl: Duration,
    #[command(flatten)]
    pub tls: super::tls::ServerArgs,
    /// PEM CA whose client certificates the master verifies: agents must then present one
    /// it signed (--tls-cert, --tls-key on the agent). Needs --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_client_ca: Option<PathBuf>,
    #[command(flatten)]
    pub tuning: Tuning,
    #[command(flatten)]
    pub auth: super::auth::MasterAuth,
}

/// Timings and the allocator seed, shared by `agora master` and `agora local`.
#[derive(Debug, Clone, clap::Args)]
pub struct Tuning {
    /// How long an agent may go without a heartbeat before it is unreachable.
    #[arg(long, default_value = "75s", value_parser = humantime::parse_duration)]
    pub agent_timeout: Duration,
    /// How often agents send heartbeats.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub agent_heartbeat_interval: Duration,
    /// How long an unreachable agent may take to come back with its tasks; past it the
    /// agent is gone (its tasks TASK_GONE) and must register afresh.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub agent_reregister_timeout: Duration,
    /// At most this many agents are declared gone per minute, so a network blip cannot
    /// empty the cluster.
    #[arg(long, default_value_t = 100)]
    pub agent_removals_per_minute: u32,
    /// Rescind offers not answered within this time (default: never).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub offer_timeout: Option<Duration>,
    /// Most offers one framework holds at once; a framework at the bound is passed over
    /// until it answers some. 0: no bound.
    #[arg(long, default_value_t = agora_master::core::DEFAULT_MAX_OFFERS_PER_FRAMEWORK)]
    pub max_offers_per_framework: usize,
    /// How often frameworks get a HEARTBEAT event.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub framework_heartbeat_interval: Duration,
    /// Seed for the allocator's agent shuffle (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub limits: Limits,
}

/// What one caller may make the master hold or do (`docs/security.md`).
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Most frameworks registered at once (connected, or gone less than their failover
    /// timeout ago); a subscription beyond is refused (429 / RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = agora_master::core::DEFAULT_MAX_FRAMEWORKS)]
    pub max_frameworks: usize,
    /// Longest name, user, hostname or principal a framework may give, in bytes.
    #[arg(long, default_value_t = agora_master::core::DEFAULT_MAX_FRAMEWORK_FIELD_BYTES)]
    pub max_framework_field_bytes: usize,
    /// Longest failover timeout a framework may ask for.
    #[arg(long, default_value = "28days", value_parser = humantime::parse_duration)]
    pub max_failover_timeout: Duration,
    /// Most roles the operator may give a weight, and most that may have quota.
    #[arg(long, default_value_t = agora_master::core::DEFAULT_MAX_ROLES)]
    pub max_roles: usize,
    /// Large answers (`/state`, GET_STATE, `/state-summary`, `/frameworks`) rendered at
    /// once; further readers wait their turn (up to 10 s, then 503).
    #[arg(long, default_value_t = agora_master::runtime::DEFAULT_MAX_CONCURRENT_RENDERS)]
    pub max_concurrent_renders: usize,
    /// Requests per second one caller may send (HTTP and gRPC; counted by principal, else
    /// by address; unauthenticated loopback callers are not counted); beyond, 429 with
    /// Retry-After or RESOURCE_EXHAUSTED. 0 turns the limit off.
    #[arg(long, default_value_t = agora_master::runtime::DEFAULT_RATE_LIMIT.per_second)]
    pub rate_limit: u32,
    /// Requests one caller may send at once after a quiet spell.
    #[arg(long, default_value_t = agora_master::runtime::DEFAULT_RATE_LIMIT.burst)]
    pub rate_limit_burst: u32,
    /// Connections held open at once; further clients wait to be accepted. Each agent
    /// holds one, so this must exceed the agents plus frameworks and operators.
    #[arg(long, default_value_t = agora_master::runtime::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// How long an HTTP/1 request's headers may take to arrive whole (slow clients are
    /// cut off); also how soon a connection must start a request.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
}

impl Limits {
    fn apply(&self, options: &mut MasterOptions) -> anyhow::Result<()> {
        let at_least_one = |flag: &str, value: usize| {
            if value == 0 { Err(anyhow::anyhow!("--{flag} must be at least 1")) } else { Ok(value) }
        };
        options.core.max_frameworks = at_least_one("max-frameworks", self.max_frameworks)?;
        options.core.max_framework_field_bytes =
            at_least_one("max-framework-field-bytes", self.max_framework_field_bytes)?;
        if self.max_framework_field_bytes > agora_proto::convert::MAX_TEXT_LEN {
            anyhow::bail!("--max-framework-field-bytes must be at most {}", agora_proto::convert::MAX_TEXT_LEN);
        }
        options.core.max_failover_timeout_ms = u64::try_from(self.max_failover_timeout.as_millis()).unwrap_or(u64::MAX);
        options.core.max_roles = at_least_one("max-roles", self.max_roles)?;
        if self.max_roles > agora_master::core::MAX_POLICY_ROLES {
            anyhow::bail!("--max-roles must be at most {}", agora_master::core::MAX_POLICY_ROLES);
        }
        options.max_concurrent_renders = at_least_one("max-concurrent-renders", self.max_concurrent_renders)?;
        if self.rate_limit > 0 && self.rate_limit_burst == 0 {
            anyhow::bail!("--rate-limit-burst must be at least 1 when --rate-limit is on");
        }
        options.rate_limit =
            agora_proto::edge::rate::RateLimit { per_second: self.rate_limit, burst: self.rate_limit_burst };
        if self.header_timeout < Duration::from_millis(100) {
            anyhow::bail!("--header-timeout must be at least 100ms");
        }
        options.connections = agora_proto::edge::conn::ConnectionLimits {
            max_connections: at_least_one("max-connections", self.max_connections)?,
            header_timeout: self.header_timeout,
        };
        Ok(())
    }
}

impl Tuning {
    /// The master's options from the flags, for a master reachable at `advertise`.
    pub fn options(&self, advertise: String) -> anyhow::Result<MasterOptions> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.agent_heartbeat_interval.is_zero() || self.agent_timeout <= self.agent_heartbeat_interval {
            anyhow::bail!("--agent-timeout must be longer than --agent-heartbeat-interval, which must be above zero");
        }
        if self.framework_heartbeat_interval < Duration::from_millis(100) {
            anyhow::bail!("--framework-heartbeat-interval must be at least 100ms");
        }
        let mut options = MasterOptions::new(advertise);
        options.seed = self.seed.unwrap_or_else(rand::random);
        options.core.master_id = master_id();
        options.core.agent_timeout_ms = ms(self.agent_timeout);
        options.core.agent_reregister_timeout_ms = ms(self.agent_reregister_timeout);
        if self.agent_removals_per_minute == 0 {
            anyhow::bail!("--agent-removals-per-minute must be at least 1");
        }
        options.core.agent_removals_per_minute = self.agent_removals_per_minute;
        options.core.agent_heartbeat_interval_ms = ms(self.agent_heartbeat_interval);
        options.core.offer_timeout_ms = self.offer_timeout.map(ms);
        options.core.max_offers_per_framework =
            (self.max_offers_per_framework > 0).then_some(self.max_offers_per_framework);
        options.core.framework_heartbeat_interval_ms = ms(self.framework_heartbeat_interval);
        self.limits.apply(&mut options)?;
        Ok(options)
    }
}

/// A fresh id per master start, so ids handed out by one run never collide with another's.
fn master_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Creates and locks the work directory; the lock lives as long as the returned file.
pub fn lock_work_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("--work-dir {}: cannot create it", dir.display()))?;
    let path = dir.join("LOCK");
    let file = std::fs::File::create(&path).with_context(|| format!("--work-dir: cannot write {}", path.display()))?;
    file.try_lock().map_err(|_| anyhow::anyhow!("--work-dir {}: another master is using it", dir.display()))?;
    Ok(file)
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let security = args.auth.security()?;
    let tls = args.tls.load(args.tls_client_ca.clone())?;
    let address = SocketAddr::new(args.ip, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--port {}: cannot listen on {address}", args.port))?;
    // After the port: one in use leaves no `LOCK` behind.
    let _lock = lock_work_dir(&args.work_dir)?;
    let bound = listener.local_addr()?;
    let mut options = args.tuning.options(args.advertise.clone().unwrap_or_else(|| bound.to_string()))?;
    options.security = security;
    options.tls = tls;
    if args.etcd.is_empty() {
        options.registry_path = Some(args.work_dir.join("registry.redb"));
    } else {
        let ttl_s = args.etcd_lease_ttl.as_secs();
        if !(2..=60).contains(&ttl_s) {
            anyhow::bail!("--etcd-lease-ttl must be between 2s and 60s (whole seconds)");
        }
        let mut etcd = runtime::election::EtcdOptions::new(args.etcd.clone());
        etcd.lease_ttl_s = u32::try_from(ttl_s).expect("at most 60");
        options.etcd = Some(etcd);
    }
    tracing::info!(master_id = %options.core.master_id, advertise = %options.advertise, "starting master");
    runtime::serve(listener, options, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        tuning: Tuning,
    }

    fn options(flags: &[&str]) -> MasterOptions {
        let flags = Flags::try_parse_from(std::iter::once("agora").chain(flags.iter().copied())).expect("valid flags");
        flags.tuning.options("127.0.0.1:5050".to_owned()).expect("valid tuning")
    }

    #[test]
    fn the_offer_bound_defaults_to_the_cores_and_zero_lifts_it() {
        let default = options(&[]).core.max_offers_per_framework;
        assert_eq!(default, Some(agora_master::core::DEFAULT_MAX_OFFERS_PER_FRAMEWORK));
        assert_eq!(options(&["--max-offers-per-framework", "7"]).core.max_offers_per_framework, Some(7));
        assert_eq!(options(&["--max-offers-per-framework", "0"]).core.max_offers_per_framework, None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x0a60_2a16),
            ..proptest::test_runner::Config::default()
        })]

        /// Duration flags: any text is a duration or a refusal, never a panic (a huge
        /// number of days included).
        #[test]
        fn any_duration_flag_text_is_parsed_or_refused(
            text in proptest::prop_oneof!["[0-9]{1,30}(ns|ms|s|m|h|d|days|w|y)?", "\\PC{0,20}"],
            flag in proptest::sample::select(&["--agent-timeout", "--offer-timeout", "--max-failover-timeout"][..]),
        ) {
            if let Ok(flags) = Flags::try_parse_from(["agora", flag, text.as_str()]) {
                let _ = flags.tuning.options("127.0.0.1:5050".to_owned());
            }
        }
    }

    #[test]
    fn the_registry_bounds_come_from_their_flags_and_zero_is_refused() {
        let o = options(&["--max-frameworks", "3", "--max-failover-timeout", "1h", "--max-roles", "5"]);
        assert_eq!((o.core.max_frameworks, o.core.max_failover_timeout_ms, o.core.max_roles), (3, 3_600_000, 5));
        assert_eq!(options(&[]).core.max_failover_timeout_ms, agora_master::core::DEFAULT_MAX_FAILOVER_TIMEOUT_MS);
        let flags = Flags::try_parse_from(["agora", "--max-frameworks", "0"]).expect("parses");
        assert!(flags.tuning.options("127.0.0.1:5050".to_owned()).is_err());
    }
}
