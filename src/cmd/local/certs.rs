//! `agora local --secure`: a throwaway CA and the certificates the cluster runs with, in
//! `DIR/tls/`. They are made on the first start and used again on later starts of the same
//! directory while they stay valid for at least another day; otherwise all are made anew
//! (the CA's key is never written: nothing else can be signed with it).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use agora_proto::tls::pki::{self, Authority, Usage};
use anyhow::Context;

/// How long the certificates are valid.
const VALID_FOR: Duration = Duration::from_secs(30 * 86_400);
/// Certificates are made anew when they would expire within this.
const RENEW_BEFORE: Duration = Duration::from_secs(86_400);
/// The name agents' client certificates carry.
pub const AGENT_NAME: &str = "agora-local-agent";

/// Where the PEM files are.
#[derive(Debug, Clone)]
pub struct LocalCerts {
    pub dir: PathBuf,
    /// What clients verify every server with (`--tls-ca`).
    pub ca: PathBuf,
    /// The master's, services', cron's and agents' HTTP certificate.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// What agents present to the master.
    pub agent_cert: PathBuf,
    pub agent_key: PathBuf,
    /// Whether the files were made by this start (else kept from an earlier one).
    pub made: bool,
}

impl LocalCerts {
    fn at(dir: PathBuf) -> LocalCerts {
        LocalCerts {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            agent_cert: dir.join("agent.pem"),
            agent_key: dir.join("agent-key.pem"),
            dir,
            made: false,
        }
    }
}

/// The names the server certificate carries: the address listened on (unless every
/// interface), the loopback names and the machine's hostname.
fn server_names(ip: IpAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.insert(0, ip.to_string());
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname")
        && let host = host.trim()
        && !host.is_empty()
        && !host.contains(char::is_whitespace)
    {
        names.push(host.to_owned());
    }
    names.dedup();
    names
}

/// The certificates in `work_dir/tls`, made when missing or about to expire.
pub fn ensure(work_dir: &Path, ip: IpAddr, now: SystemTime) -> anyhow::Result<LocalCerts> {
    let mut certs = LocalCerts::at(work_dir.join("tls"));
    let dialled = if ip.is_unspecified() { "127.0.0.1".to_owned() } else { ip.to_string() };
    if reusable(&certs, &dialled, now + RENEW_BEFORE) {
        return Ok(certs);
    }
    std::fs::create_dir_all(&certs.dir).with_context(|| format!("cannot create {}", certs.dir.display()))?;
    let ca = Authority::new("Agora local CA (throwaway)", now, VALID_FOR).context("making the local CA")?;
    let names = server_names(ip);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let server = ca.issue(&names, Usage::Server).context("making the server certificate")?;
    let agent = ca.issue(&[AGENT_NAME], Usage::Client).context("making the agents' certificate")?;
    write(&certs.ca, ca.cert_pem(), false)?;
    write(&certs.server_cert, &server.cert_pem, false)?;
    write(&certs.server_key, &server.key_pem, true)?;
    write(&certs.agent_cert, &agent.cert_pem, false)?;
    write(&certs.agent_key, &agent.key_pem, true)?;
    certs.made = true;
    Ok(certs)
}

fn reusable(certs: &LocalCerts, dialled: &str, at: SystemTime) -> bool {
    let read = |path: &Path| std::fs::read(path).ok();
    let (Some(ca), Some(server), Some(agent)) = (read(&certs.ca), read(&certs.server_cert), read(&certs.agent_cert))
    else {
        return false;
    };
    certs.server_key.is_file()
        && certs.agent_key.is_file()
        && pki::still_valid(&ca, &server, Usage::Server, Some(dialled), at)
        && pki::still_valid(&ca, &agent, Usage::Client, None, at)
}

/// Writes `text` to `path`; keys readable by their owner only.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if secret { 0o600 } else { 0o644 };
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_made_once_and_used_again_while_valid() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ip: IpAddr = "127.0.0.1".parse().expect("an address");
        let now = SystemTime::now();
        let first = ensure(dir.path(), ip, now).expect("made");
        assert!(first.made);
        let ca = std::fs::read(&first.ca).expect("the CA");
        let again = ensure(dir.path(), ip, now + Duration::from_secs(3_600)).expect("kept");
        assert!(!again.made);
        assert_eq!(std::fs::read(&again.ca).expect("the CA"), ca);
        let later = ensure(dir.path(), ip, now + VALID_FOR).expect("made anew");
        assert!(later.made, "certificates about to expire are made anew");
        assert_ne!(std::fs::read(&later.ca).expect("the CA"), ca);
    }
}
