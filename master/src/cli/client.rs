//! The operator CLI's way to the masters: `--master` names one or several (`a:5050,b:5050`),
//! each `HOST:PORT` or `http://HOST:PORT`. A call goes to the master that answered last
//! (the first at start); one that cannot be reached, or answers 503 (a follower with no
//! leader), passes the call to the next. A follower answers 307 naming the leader, which
//! `agora_sdk::cli::RestClient` follows with method and body kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agora_proto::tls::ClientTls;
use agora_sdk::cli::{RestClient, RestError};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::CliError;

/// Longest one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Most masters one `--master` may list.
const MAX_MASTERS: usize = 16;

/// A client of the masters of one cluster.
#[derive(Debug)]
pub struct MasterClient {
    masters: Vec<RestClient>,
    /// The master that answered last: asked first next time.
    preferred: AtomicUsize,
    /// How masters (and agents, for sandboxes) are verified (`--tls-ca`).
    tls: Option<ClientTls>,
}

/// `http://HOST:PORT` of a master given as `HOST:PORT` or `http://HOST:PORT`
/// (`https://` kept).
pub fn base_url(master: &str) -> Result<String, CliError> {
    base_url_with(master, None)
}

/// [`base_url`] for a client with TLS settings (`--tls-ca`), for which a bare
/// `HOST:PORT` means `https://`.
pub fn base_url_with(master: &str, tls: Option<&ClientTls>) -> Result<String, CliError> {
    let address = master.trim().trim_end_matches('/');
    let (scheme, bare) = match (address.strip_prefix("http://"), address.strip_prefix("https://")) {
        (Some(bare), _) => ("http", bare),
        (_, Some(bare)) => ("https", bare),
        _ if tls.is_some() => ("https", address),
        _ => ("http", address),
    };
    let valid =
        bare.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid || bare.contains('/') {
        return Err(CliError::Master(master.to_owned()));
    }
    Ok(format!("{scheme}://{bare}"))
}

impl MasterClient {
    /// A client of the comma-separated masters in `list`; `Err` names the one that is not
    /// `HOST:PORT`.
    pub fn new(list: &str) -> Result<MasterClient, CliError> {
        Self::with_tls(list, None)
    }

    /// [`new`](Self::new), verifying `https://` masters with `tls` (`--tls-ca`).
    pub fn with_tls(list: &str, tls: Option<&ClientTls>) -> Result<MasterClient, CliError> {
        let names: Vec<&str> = list.split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        if names.is_empty() {
            return Err(CliError::Master(list.to_owned()));
        }
        if names.len() > MAX_MASTERS {
            return Err(CliError::Usage(format!("--master: at most {MAX_MASTERS} masters")));
        }
        let masters = names
            .into_iter()
            .map(|name| {
                let base = base_url_with(name, tls)?;
                RestClient::with_tls("the master", &base, CALL_TIMEOUT, tls).map_err(CliError::Usage)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MasterClient { masters, preferred: AtomicUsize::new(0), tls: tls.cloned() })
    }

    /// The TLS settings the client was made with.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// The masters, comma-separated, as messages name them.
    pub fn names(&self) -> String {
        self.masters.iter().map(RestClient::base).collect::<Vec<_>>().join(",")
    }

    /// `GET path` (with its query); `what` names the read in errors.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::GET, path, None, path.split('?').next().unwrap_or(path)).await
    }

    /// One operator call (`POST /api/v1`) of type `kind` with `body`.
    pub async fn call(&self, kind: &str, body: &Value) -> Result<Value, CliError> {
        self.send(Method::POST, "/api/v1", Some(body), kind).await
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>, what: &str) -> Result<Value, CliError> {
        let count = self.masters.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        let mut last_reason = String::new();
        for i in 0..count {
            let index = (first + i) % count;
            match self.masters[index].send(method.clone(), path, body).await {
                Ok(value) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(RestError::Unreachable { reason, .. }) => last_reason = reason,
                Err(RestError::Api { status, message, .. }) if status == StatusCode::SERVICE_UNAVAILABLE => {
                    last_reason = format!("{status}: {message}");
                }
                Err(RestError::Api { status, message, details, .. }) => {
                    return Err(CliError::Refused { call: what.to_owned(), status, message: message + &details });
                }
            }
        }
        Err(CliError::Unreachable { url: self.names(), reason: last_reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_is_named_by_host_and_port_with_or_without_its_scheme() {
        assert_eq!(base_url("127.0.0.1:5050").ok(), Some("http://127.0.0.1:5050".to_owned()));
        assert_eq!(base_url("http://node-1:5050/").ok(), Some("http://node-1:5050".to_owned()));
        for bad in ["", "node-1", ":5050", "node-1:0", "node-1:http", "ftp://node-1:5050", "node-1:5050/x"] {
            assert!(matches!(base_url(bad), Err(CliError::Master(_))), "{bad:?}");
        }
        assert_eq!(base_url("https://node-1:5050").ok(), Some("https://node-1:5050".to_owned()));
        let tls = ClientTls::from_ca_pem(b"");
        assert_eq!(base_url_with("node-1:5050", Some(&tls)).ok(), Some("https://node-1:5050".to_owned()));
    }

    #[test]
    fn several_masters_are_listed_and_each_is_checked() {
        let client = MasterClient::new("a:1, b:2,").expect("two masters");
        assert_eq!(client.names(), "http://a:1,http://b:2");
        assert!(matches!(MasterClient::new("a:1,b"), Err(CliError::Master(m)) if m == "b"));
        assert!(matches!(MasterClient::new(" , "), Err(CliError::Master(_))));
    }

    #[tokio::test]
    async fn a_master_that_refuses_connections_passes_the_call_to_the_next_and_then_fails_in_one_line() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("address").port();
        drop(closed);
        let client = MasterClient::new(&format!("127.0.0.1:{port},127.0.0.1:{port}")).expect("client");
        let error = client.get("/slaves").await.expect_err("nobody listens").to_string();
        assert!(error.starts_with(&format!("cannot reach the master at http://127.0.0.1:{port},")), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }
}
