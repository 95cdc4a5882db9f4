use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::pki::{Authority, Usage};
use super::*;

const DAY: Duration = Duration::from_secs(86_400);

struct Files {
    _dir: tempfile_dir::Dir,
    server: ServerFiles,
    ca: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

/// A tiny temporary directory, removed on drop (proto has no tempfile dependency).
mod tempfile_dir {
    #[derive(Debug)]
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("agora-tls-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("a temporary directory");
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a PEM file");
    path
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate named `agent-1`.
fn files(tag: &str, client_ca: bool) -> Files {
    let dir = tempfile_dir::Dir::new(tag);
    let ca = Authority::new("test CA", SystemTime::now(), DAY).expect("a CA");
    let server = ca.issue(&["127.0.0.1", "localhost"], Usage::Server).expect("a server certificate");
    let client = ca.issue(&["agent-1"], Usage::Client).expect("a client certificate");
    let ca_path = write(&dir.0, "ca.pem", ca.cert_pem());
    Files {
        server: ServerFiles {
            cert: Some(write(&dir.0, "server.pem", &server.cert_pem)),
            key: Some(write(&dir.0, "server-key.pem", &server.key_pem)),
            client_ca: client_ca.then(|| ca_path.clone()),
        },
        client_cert: write(&dir.0, "client.pem", &client.cert_pem),
        client_key: write(&dir.0, "client-key.pem", &client.key_pem),
        ca: ca_path,
        _dir: dir,
    }
}

async fn tls_server(files: &Files) -> std::net::SocketAddr {
    let tls = ServerTls::load(&files.server).expect("server TLS settings").expect("TLS is on");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { serve(listener, Some(&tls), app, std::future::pending()).await });
    address
}

#[test]
fn incomplete_server_settings_name_the_missing_flag() {
    let only_cert = ServerFiles { cert: Some("c.pem".into()), ..ServerFiles::default() };
    assert!(ServerTls::load(&only_cert).expect_err("a refusal").to_string().contains("--tls-key"));
    let only_ca = ServerFiles { client_ca: Some("ca.pem".into()), ..ServerFiles::default() };
    assert!(ServerTls::load(&only_ca).expect_err("a refusal").to_string().contains("--tls-cert"));
    let missing = ServerFiles {
        cert: Some("/nonexistent/c.pem".into()),
        key: Some("/nonexistent/k.pem".into()),
        client_ca: None,
    };
    let error = ServerTls::load(&missing).expect_err("a refusal").to_string();
    assert!(error.starts_with("--tls-cert /nonexistent/c.pem"), "{error}");
    assert!(ServerTls::load(&ServerFiles::default()).expect("no TLS").is_none());
}

#[test]
fn a_file_without_certificates_is_refused_with_its_flag() {
    let dir = tempfile_dir::Dir::new("not-pem");
    let path = write(&dir.0, "ca.pem", "hello\n");
    let error = ClientTls::load(Some(&path), None, None).expect_err("a refusal").to_string();
    assert!(error.contains("--tls-ca") && error.contains("no PEM certificate"), "{error}");
}

#[test]
fn bare_addresses_use_https_only_when_the_client_has_tls_settings() {
    let tls = ClientTls::from_ca_pem(b"");
    assert_eq!(url("m:5050", None), "http://m:5050");
    assert_eq!(url("m:5050", Some(&tls)), "https://m:5050");
    assert_eq!(url("http://m:5050", Some(&tls)), "http://m:5050");
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_connects_and_one_that_does_not_is_told_why() {
    let files = files("trust", false);
    let address = tls_server(&files).await;
    let trusting = ClientTls::load(Some(&files.ca), None, None).expect("client settings");
    endpoint(&address.to_string(), trusting.as_ref()).expect("endpoint").connect().await.expect("a trusted connection");

    let other = Authority::new("another CA", SystemTime::now(), DAY).expect("a CA");
    let stranger = ClientTls::from_ca_pem(other.cert_pem().as_bytes());
    let error =
        endpoint(&address.to_string(), Some(&stranger)).expect("endpoint").connect().await.expect_err("a refusal");
    let text = describe(&error);
    assert!(text.contains("not trusted") && text.contains("--tls-ca"), "{text}");
}

#[tokio::test]
async fn a_plain_grpc_client_is_refused_with_a_status_that_says_tls_is_required() {
    let files = files("plain-grpc", false);
    let address = tls_server(&files).await;
    let channel = endpoint(&address.to_string(), None).expect("endpoint").connect().await.expect("h2 in plain text");
    let mut client = crate::pb::agent_link_client::AgentLinkClient::new(channel);
    let status = client.attach(tokio_stream::empty()).await.expect_err("a refusal");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.metadata().contains_key(TLS_REQUIRED_HEADER));
    assert!(status.message().contains("TLS"), "{}", status.message());
}

#[tokio::test]
async fn a_plain_http_request_gets_a_400_that_says_tls_is_required() {
    let files = files("plain-http", false);
    let address = tls_server(&files).await;
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("the refusal closes the connection")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("speaks TLS only"), "{answer}");
}

#[tokio::test]
async fn a_tls_client_against_a_plain_server_is_told_it_does_not_speak_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { serve(listener, None, axum::Router::new(), std::future::pending()).await });
    let other = Authority::new("a CA", SystemTime::now(), DAY).expect("a CA");
    let tls = ClientTls::from_ca_pem(other.cert_pem().as_bytes());
    let error = endpoint(&address.to_string(), Some(&tls)).expect("endpoint").connect().await.expect_err("a refusal");
    let text = describe(&error);
    assert!(text.contains("did not answer with TLS"), "{text}");
}

#[tokio::test]
async fn a_verified_client_certificate_reaches_the_server_with_its_names() {
    let files = files("mtls", true);
    let tls = ServerTls::load(&files.server).expect("server TLS settings").expect("TLS is on");
    assert!(tls.verifies_clients());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let mut listener = TlsListener::new(listener, &tls).expect("a TLS listener");

    let roots = root_store("--tls-ca", &files.ca).expect("roots");
    let chain = read_certificates("--tls-cert", &files.client_cert).expect("client chain");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&files.client_key).expect("client key");
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client config");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(address).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name").to_owned();
        let mut stream = connector.connect(name, tcp).await.expect("handshake");
        stream.write_all(b"x").await.expect("write");
        stream
    });
    let (_stream, peer) = listener.accept().await;
    let identity = peer.client.expect("a verified client certificate");
    assert_eq!(identity.dns_names, vec!["agent-1".to_owned()]);
    drop(client.await);
}

#[test]
fn certificates_are_still_valid_until_they_expire_and_only_under_their_ca() {
    let now = SystemTime::now();
    let ca = Authority::new("CA", now, DAY).expect("a CA");
    let server = ca.issue(&["127.0.0.1"], Usage::Server).expect("a certificate");
    let (ca_pem, cert_pem) = (ca.cert_pem().as_bytes(), server.cert_pem.as_bytes());
    assert!(pki::still_valid(ca_pem, cert_pem, Usage::Server, Some("127.0.0.1"), now));
    assert!(!pki::still_valid(ca_pem, cert_pem, Usage::Server, Some("10.0.0.1"), now));
    assert!(!pki::still_valid(ca_pem, cert_pem, Usage::Server, Some("127.0.0.1"), now + 2 * DAY));
    let other = Authority::new("other", now, DAY).expect("a CA");
    assert!(!pki::still_valid(other.cert_pem().as_bytes(), cert_pem, Usage::Server, None, now));
}
