//! TLS for every Agora endpoint, with rustls and its `ring` provider: the server settings
//! (`ServerTls`, from PEM files), the listener that puts gRPC and HTTP on one TLS port
//! (`listener::serve`), and what clients verify servers with (`ClientTls`).
//!
//! A server started with a certificate speaks only TLS on its port, offering ALPN `h2` and
//! `http/1.1`, so tonic's gRPC and axum's HTTP keep sharing one port. A plain-text client
//! gets a clear refusal instead of a broken connection (see `listener`). With a client CA
//! (`--tls-client-ca`) a client certificate is verified when one is presented; requiring
//! one is up to the endpoint (the master requires it of agents), so that operators and
//! frameworks without certificates still reach the same port.
//!
//! A client given a CA (`--tls-ca`) trusts only that CA; a client dialling `https://`
//! without one trusts the system's CA certificates. A bare `host:port` means `https://`
//! when the client has TLS settings, `http://` otherwise.

pub mod listener;
#[cfg(any(test, feature = "pki"))]
pub mod pki;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use listener::{ClientIdentity, TlsListener, TlsPeer, client_identity, grpc_client_identity, scheme, serve};

/// The gRPC metadata key (and HTTP header) on the answer a TLS port gives a plain-text
/// client, so that clients can tell it from any other refusal and stop retrying.
pub const TLS_REQUIRED_HEADER: &str = "agora-tls-required";

/// What is wrong with the TLS settings; each names the file or flag.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {path}: {reason}")]
    File { flag: &'static str, path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

fn file_error(flag: &'static str, path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { flag, path: path.to_owned(), reason: reason.to_string() }
}

/// The `ring` provider, named once so that every config uses the same one whatever
/// providers other crates compile in.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Deprecated only for lacking post-quantum key exchange, which would need aws-lc-rs
    // (a C and cmake build); `ring` is the choice for a pure, light build.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the certificates of a PEM file; at least one.
fn read_certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(flag, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(flag, path, format!("not a PEM certificate file: {e}")))?;
    if certificates.is_empty() {
        return Err(file_error(flag, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certificates)
}

/// The most a certificate, key or CA file may hold: far more than any chain needs.
const MAX_PEM_BYTES: u64 = 1 << 20;

fn read_pem(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let metadata = std::fs::metadata(path).map_err(|e| file_error(flag, path, e))?;
    if metadata.len() > MAX_PEM_BYTES {
        return Err(file_error(flag, path, format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    std::fs::read(path).map_err(|e| file_error(flag, path, e))
}

fn read_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| file_error(flag, path, format!("no PEM private key: {e}")))
}

fn root_store(flag: &'static str, path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_certificates(flag, path)? {
        roots.add(certificate).map_err(|e| file_error(flag, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The TLS files a server is started with (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Clone, Debug, Default)]
pub struct ServerFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// A server's TLS settings, ready to accept connections.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    verifies_clients: bool,
}

impl ServerTls {
    /// `None` when no certificate is given (the server speaks plain text); an error naming
    /// the flag when the files are incomplete or unreadable.
    pub fn load(files: &ServerFiles) -> Result<Option<ServerTls>, TlsError> {
        let (cert, key) = match (&files.cert, &files.key) {
            (None, None) if files.client_ca.is_none() => return Ok(None),
            (None, None) => return Err(TlsError::Config("--tls-client-ca needs --tls-cert and --tls-key".into())),
            (Some(_), None) => return Err(TlsError::Config("--tls-cert needs --tls-key".into())),
            (None, Some(_)) => return Err(TlsError::Config("--tls-key needs --tls-cert".into())),
            (Some(cert), Some(key)) => (cert, key),
        };
        let chain = read_certificates("--tls-cert", cert)?;
        let key = read_key("--tls-key", key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = root_store("--tls-client-ca", path)?;
                // Optional at the handshake: endpoints that need a certificate (the agents'
                // link) refuse callers without one, while operators and frameworks on the
                // same port need none. A certificate that is presented must verify.
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| file_error("--tls-client-ca", path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("--tls-cert and --tls-key do not make a usable pair: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(ServerTls { config: Arc::new(config), verifies_clients: files.client_ca.is_some() }))
    }

    /// True when started with a client CA: presented client certificates are verified and
    /// reach handlers as [`ClientIdentity`].
    pub fn verifies_clients(&self) -> bool {
        self.verifies_clients
    }

    pub(crate) fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }
}

/// A certificate chain and its key, PEM.
type IdentityPem = (Arc<[u8]>, Arc<[u8]>);

/// How a client verifies the servers it dials (`--tls-ca`), and the certificate it
/// presents when asked (`--tls-cert`, `--tls-key`: agents to a master that requires one).
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    ca_pem: Option<Arc<[u8]>>,
    identity_pem: Option<IdentityPem>,
}

impl ClientTls {
    /// `None` when no file is given (bare addresses then mean `http://`); an error naming
    /// the flag when a file is unreadable or not PEM.
    pub fn load(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<Option<ClientTls>, TlsError> {
        let ca_pem = match ca {
            None => None,
            Some(path) => {
                root_store("--tls-ca", path)?;
                Some(Arc::from(read_pem("--tls-ca", path)?))
            }
        };
        let identity_pem = match (cert, key) {
            (None, None) => None,
            (Some(_), None) => return Err(TlsError::Config("--tls-cert needs --tls-key".into())),
            (None, Some(_)) => return Err(TlsError::Config("--tls-key needs --tls-cert".into())),
            (Some(cert), Some(key)) => {
                read_certificates("--tls-cert", cert)?;
                read_key("--tls-key", key)?;
                Some((Arc::from(read_pem("--tls-cert", cert)?), Arc::from(read_pem("--tls-key", key)?)))
            }
        };
        if ca_pem.is_none() && identity_pem.is_none() {
            return Ok(None);
        }
        Ok(Some(ClientTls { ca_pem, identity_pem }))
    }

    /// Settings that trust only the CA in `ca_pem` (tests and `agora local --secure`).
    pub fn from_ca_pem(ca_pem: &[u8]) -> ClientTls {
        ClientTls { ca_pem: Some(Arc::from(ca_pem)), identity_pem: None }
    }

    /// The CA certificate(s) to trust, PEM; `None` means the system's.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// The client certificate chain and key to present, PEM.
    pub fn identity_pem(&self) -> Option<(&[u8], &[u8])> {
        self.identity_pem.as_ref().map(|(cert, key)| (&cert[..], &key[..]))
    }

    /// tonic's settings for dialling `https://` with these.
    pub fn tonic_config(&self) -> tonic::transport::ClientTlsConfig {
        let mut config = tonic::transport::ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
        config = match &self.ca_pem {
            Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity_pem {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        config
    }
}

/// `builder` set to verify servers with `tls` (only its CA when it has one) and to present
/// its client certificate; unchanged when `tls` is `None`.
#[cfg(feature = "reqwest")]
pub fn reqwest_builder(
    builder: reqwest::ClientBuilder,
    tls: Option<&ClientTls>,
) -> Result<reqwest::ClientBuilder, TlsError> {
    let Some(tls) = tls else {
        return Ok(builder);
    };
    let mut builder = builder;
    if let Some(ca) = tls.ca_pem() {
        let certificates =
            reqwest::Certificate::from_pem_bundle(ca).map_err(|e| TlsError::Config(format!("--tls-ca: {e}")))?;
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let Some((cert, key)) = tls.identity_pem() {
        let pem = [cert, b"\n", key].concat();
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|e| TlsError::Config(format!("--tls-cert/--tls-key: {e}")))?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

/// How long a TLS handshake may take, on either side.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `address` as a URL: kept when it names a scheme, else `https://` when the client has
/// TLS settings and `http://` when it has none.
pub fn url(address: &str, tls: Option<&ClientTls>) -> String {
    if address.contains("://") {
        address.to_owned()
    } else if tls.is_some() {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    }
}

/// A gRPC endpoint for `address` (see [`url`]), verifying the server when it is `https://`
/// (with the system's CA certificates when `tls` is `None`).
pub fn endpoint(address: &str, tls: Option<&ClientTls>) -> Result<tonic::transport::Endpoint, String> {
    let url = url(address, tls);
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone()).map_err(|e| format!("{address:?}: {e}"))?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let config = tls.cloned().unwrap_or_default().tonic_config();
    endpoint.tls_config(config).map_err(|e| format!("{address:?}: TLS settings: {}", chain(&e)))
}

/// Why a connection failed, in one line: a TLS failure as a sentence that says what to do
/// (an untrusted certificate, a server that does not speak TLS, a refused client
/// certificate), anything else as its chain of causes.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    tls_failure(error).unwrap_or_else(|| chain(error))
}

/// The chain of causes of `error`, joined with `: `.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The rustls error somewhere in `error`'s chain (tokio-rustls wraps it in an
/// `io::Error`, whose `source` skips it), described; `None` when TLS is not the cause.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    find_rustls(error, 0).map(explain)
}

/// Most causes looked through: chains are short, and this bounds a cyclic one.
const MAX_CAUSES: usize = 32;

fn find_rustls<'e>(error: &'e (dyn std::error::Error + 'static), depth: usize) -> Option<&'e rustls::Error> {
    if depth > MAX_CAUSES {
        return None;
    }
    if let Some(found) = error.downcast_ref::<rustls::Error>() {
        return Some(found);
    }
    // An `io::Error` made from another error hides it from `source`: look inside.
    if let Some(io) = error.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
        && let Some(found) = find_rustls(inner, depth + 1)
    {
        return Some(found);
    }
    find_rustls(error.source()?, depth + 1)
}

fn explain(error: &rustls::Error) -> String {
    use rustls::{AlertDescription, CertificateError, Error};
    match error {
        Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature | CertificateError::BadEncoding,
        ) => {
            format!("TLS: the server's certificate is not trusted ({error}): give the CA that signed it with --tls-ca")
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            format!("TLS: the server's certificate does not name the address dialled ({error})")
        }
        Error::InvalidCertificate(_) => format!("TLS: the server's certificate is not valid ({error})"),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            format!(
                "TLS: the server did not answer with TLS ({error}); dial it with http:// or start it with --tls-cert"
            )
        }
        Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired,
        ) => format!(
            "TLS: the server refused this client's certificate ({error}): give one its --tls-client-ca signed with --tls-cert and --tls-key"
        ),
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests;
