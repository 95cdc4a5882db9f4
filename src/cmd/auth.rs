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

/// The principals `agora local --secure` makes: an operator for people and the CLIs, and
/// one per part of the cluster.
pub const LOCAL_PRINCIPALS: [&str; 4] = ["operator", "agent", "services", "cron"];

/// Credentials made for one local cluster, kept in `DIR/credentials` (Mesos' JSON format,
/// for the master, services and cron) and `DIR/<principal>.secret` (the secret alone, for
/// `--secret-file` and `$AGORA_SECRET_FILE`), all readable by their owner only.
#[derive(Debug, Clone)]
pub struct LocalCredentials {
    pub dir: PathBuf,
    pub credentials: Arc<Credentials>,
    /// Whether they were made now (else kept from an earlier start).
    pub made: bool,
}

impl LocalCredentials {
    /// Reads the credentials in `dir`, or makes them (random 256-bit secrets) when absent.
    pub fn load_or_make(dir: &std::path::Path) -> anyhow::Result<Self> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = dir.join("credentials");
        if path.exists() {
            let credentials = Credentials::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            for principal in LOCAL_PRINCIPALS {
                Credential::with_secret_file(principal, &dir.join(format!("{principal}.secret")))
                    .map_err(|e| anyhow::anyhow!("{e}; remove {} to make new credentials", dir.display()))?;
            }
            return Ok(Self { dir: dir.to_owned(), credentials: Arc::new(credentials), made: false });
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let write = |name: &str, text: &str| -> anyhow::Result<()> {
            let file = dir.join(name);
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("cannot write {}", file.display()))?;
            out.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", file.display()))
        };
        let mut entries = Vec::new();
        for principal in LOCAL_PRINCIPALS {
            let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
            write(&format!("{principal}.secret"), &format!("{secret}\n"))?;
            entries.push(serde_json::json!({ "principal": principal, "secret": secret }));
        }
        // The file that names them all goes last: its presence says the set is complete.
        let file = serde_json::json!({ "credentials": entries });
        write("credentials", &format!("{file:#}\n"))?;
        let credentials = Credentials::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { dir: dir.to_owned(), credentials: Arc::new(credentials), made: true })
    }

    /// The credential of one of [`LOCAL_PRINCIPALS`].
    pub fn credential(&self, principal: &str) -> anyhow::Result<Credential> {
        Credential::with_secret_file(principal, &self.secret_file(principal)).map_err(|e| anyhow::anyhow!("{e}"))
    }

    pub fn secret_file(&self, principal: &str) -> PathBuf {
        self.dir.join(format!("{principal}.secret"))
    }

    /// What the master requires with these: every caller authenticates.
    pub fn master_security(&self) -> agora_master::runtime::auth::Security {
        agora_master::runtime::auth::Security {
            credentials: Some(self.credentials.clone()),
            authenticate_frameworks: true,
            authenticate_agents: true,
            authenticate_http: true,
            acls: None,
        }
    }

    /// The gate of an HTTP API (services, cron, the agents) with these: every caller
    /// authenticates, but for the health probe at `open_paths`.
    pub fn http_gate(&self, open_paths: &'static [&'static str]) -> Arc<agora_proto::edge::authenticate::HttpGate> {
        Arc::new(agora_proto::edge::authenticate::HttpGate {
            credentials: self.credentials.clone(),
            required: true,
            open_paths,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn local_credentials_are_made_once_private_and_read_back_the_same() {
        let dir = tempfile::tempdir().expect("temp dir");
        let auth = dir.path().join("auth");
        let made = LocalCredentials::load_or_make(&auth).expect("made");
        assert!(made.made);
        assert_eq!(made.credentials.len(), LOCAL_PRINCIPALS.len());
        for name in ["credentials", "operator.secret", "agent.secret", "services.secret", "cron.secret"] {
            let mode = std::fs::metadata(auth.join(name)).expect("written").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        let operator = made.credential("operator").expect("a credential");
        assert!(made.credentials.verify("operator", operator.secret.expose()));
        assert_eq!(operator.secret.expose().len(), 64);
        let kept = LocalCredentials::load_or_make(&auth).expect("kept");
        assert!(!kept.made);
        assert_eq!(kept.credentials, made.credentials, "a restart keeps the secrets");
        assert_ne!(made.credential("agent").expect("agent").secret, operator.secret);
    }
}
