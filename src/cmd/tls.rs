//! The TLS flags every server and client command shares (`--tls-cert`, `--tls-key`,
//! `--tls-client-ca`, `--tls-ca`), turned into `agora_proto::tls` settings.

use std::path::PathBuf;

use agora_proto::tls::{ClientTls, ServerFiles, ServerTls};

/// A server's TLS: with a certificate and key its port speaks only TLS.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "tls_server")]
pub struct ServerArgs {
    /// PEM certificate (chain) to serve TLS with; the port then speaks only TLS. Needs
    /// --tls-key.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
}

impl ServerArgs {
    pub fn load(&self, client_ca: Option<PathBuf>) -> anyhow::Result<Option<ServerTls>> {
        let files = ServerFiles { cert: self.tls_cert.clone(), key: self.tls_key.clone(), client_ca };
        Ok(ServerTls::load(&files)?)
    }
}

/// How a client verifies the servers it dials.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "tls_client")]
pub struct ClientArgs {
    /// PEM CA certificate(s) to verify servers with; bare host:port addresses then mean
    /// https://. Without it, https:// addresses are verified with the system's CAs.
    #[arg(long, value_name = "PEM", env = "AGORA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl ClientArgs {
    pub fn load(&self) -> anyhow::Result<Option<ClientTls>> {
        Ok(ClientTls::load(self.tls_ca.as_deref(), None, None)?)
    }
}
