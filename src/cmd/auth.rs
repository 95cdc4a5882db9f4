//! The authentication flags the subcommands share: what a server requires of its callers
//! (`--credentials`, `--authenticate-*`, as Mesos names them) and the credential a client
//! presents (`--principal` with `--secret-file`, or a `--credential` file).

use std::path::PathBuf;
use std::sync::Arc;

use agora_proto::auth::{Credential, Credentials};
use anyhow::Context;

/// The credential a client presents to the master (or to services and cron).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientCredential {
    /// Authenticate as this principal, with the secret in --secret-file (needed when the
    /// server runs with --authenticate-frameworks or --authenticate-http).
    #[arg(long, env = "AGORA_PRINCIPAL", requires = "secret_file")]
    pub principal: Option<String>,
    /// The file holding the principal's secret (its text, without the final newline).
    #[arg(long, value_name = "FILE", env = "AGORA_SECRET_FILE", requires = "principal")]
    pub secret_file: Option<PathBuf>,
}

impl ClientCredential {
    pub fn load(&self) -> anyhow::Result<Option<Credential>> {
        match (&self.principal, &self.secret_file) {
            (Some(principal), Some(path)) => Ok(Some(
                Credential::with_secret_file(principal, path).map_err(|e| anyhow::anyhow!("--secret-file {e}"))?,
            )),
            _ => Ok(None),
        }
    }
}

/// Reads `--credentials FILE` (Mesos' format: JSON or `principal secret` lines).
pub fn load_credentials(path: Option<&PathBuf>) -> anyhow::Result<Option<Arc<Credentials>>> {
    path.map(|path| Credentials::load(path).map(Arc::new).map_err(|e| anyhow::anyhow!("--credentials {e}"))).transpose()
}

/// Who may call a framework's REST API (`agora services`, `agora cron`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RestAuth {
    /// The principals and secrets REST callers authenticate with (Mesos' credentials
    /// format, as the master's --credentials).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Refuse HTTP calls without a valid credential (HTTP Basic, `Bearer SECRET` or
    /// Marathon's `token=SECRET`); the health probe (`/ping`, `/health`) stays open.
    #[arg(long)]
    pub authenticate_http: bool,
}

impl RestAuth {
    /// The gate of a REST API whose health probe is `/ping` (services, cron).
    pub fn gate(&self) -> anyhow::Result<Option<Arc<agora_proto::edge::authenticate::HttpGate>>> {
        self.gate_with_open_paths(&["/ping"])
    }

    pub fn gate_with_open_paths(
        &self,
        open_paths: &'static [&'static str],
    ) -> anyhow::Result<Option<Arc<agora_proto::edge::authenticate::HttpGate>>> {
        let Some(credentials) = load_credentials(self.credentials.as_ref())? else {
            if self.authenticate_http {
                anyhow::bail!("--authenticate-http needs --credentials with at least one principal");
            }
            return Ok(None);
        };
        if self.authenticate_http && credentials.is_empty() {
            anyhow::bail!("--authenticate-http needs --credentials with at least one principal");
        }
        Ok(Some(Arc::new(agora_proto::edge::authenticate::HttpGate {
            credentials,
            required: self.authenticate_http,
            open_paths,
        })))
    }
}

/// Reads `--acls FILE` (Mesos' JSON ACL format).
pub fn load_acls(path: &PathBuf) -> anyhow::Result<Arc<agora_proto::acl::Acls>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--acls {}", path.display()))?;
    let acls = agora_proto::acl::Acls::parse(&text).map_err(|e| anyhow::anyhow!("--acls {}: {e}", path.display()))?;
    Ok(Arc::new(acls))
}

/// What the master requires of its callers; all off by default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MasterAuth {
    /// The principals and secrets callers authenticate with: JSON `{"credentials":
    /// [{"principal": …, "secret": …}]}` or one `principal secret` per line.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Refuse frameworks that do not authenticate (gRPC `authorization` metadata, HTTP
    /// Basic on /api/v1/scheduler).
    #[arg(long)]
    pub authenticate_frameworks: bool,
    /// Refuse agents that do not authenticate (their --credential).
    #[arg(long)]
    pub authenticate_agents: bool,
    /// Refuse operators' HTTP requests that do not authenticate (Basic, Bearer or token=).
    #[arg(long)]
    pub authenticate_http: bool,
    /// What each principal may do: Mesos' JSON ACLs (`register_frameworks`, `run_tasks`,
    /// `teardown_frameworks`, `reserve_resources`, `unreserve_resources`, `update_quotas`,
    /// `update_weights`, `view_frameworks`, `view_tasks`, `drain_agents`, `permissive`).
    #[arg(long, value_name = "FILE")]
    pub acls: Option<PathBuf>,
}

impl MasterAuth {
    pub fn security(&self) -> anyhow::Result<agora_master::runtime::auth::Security> {
        let security = agora_master::runtime::auth::Security {
            credentials: load_credentials(self.credentials.as_ref())?,
            authenticate_frameworks: self.authenticate_frameworks,
            authenticate_agents: self.authenticate_agents,
            authenticate_http: self.authenticate_http,
            acls: self.acls.as_ref().map(load_acls).transpose()?,
        };
        security.validate().map_err(|e| anyhow::anyhow!(e))?;
        Ok(security)
    }
}
