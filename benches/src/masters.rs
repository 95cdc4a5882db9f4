//! Where the emulators find the master: one address, or several masters of which one
//! leads and the others redirect; and, when the bench starts them itself, the master
//! processes and the etcd server they elect their leader in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// The gRPC metadata key in which a follower names the leader.
const LEADER_METADATA: &str = agora_master::runtime::election::LEADER_METADATA;
/// Largest HTTP answer read back (`/metrics` of a big master is a few MiB at most).
const MAX_HTTP_BYTES: u64 = 16 << 20;
/// How long one HTTP request to a master may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long started processes get to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The masters the emulators talk to, and which of them is believed to lead.
#[derive(Debug)]
pub struct Masters {
    addresses: Vec<String>,
    leader: AtomicUsize,
    /// Bumped whenever etcd names a new leader: emulators waiting to reconnect try again
    /// at once, as agents started with `--etcd` do.
    elected: watch::Sender<u64>,
    /// One lazily connected channel per master and slot: emulators sharing a slot share an
    /// HTTP/2 connection. Agents' slots come first, then one per framework.
    channels: Vec<Vec<Channel>>,
}

impl Masters {
    /// Channels for `agent_slots` agents' connections, made on the current runtime, and
    /// for `frameworks`, made on `frameworks_runtime` (a channel's connection runs where
    /// the channel was made).
    pub fn new(
        addresses: Vec<String>,
        agent_slots: usize,
        frameworks: usize,
        frameworks_runtime: &tokio::runtime::Handle,
    ) -> anyhow::Result<Masters> {
        anyhow::ensure!(!addresses.is_empty(), "--master: no address given");
        let mut channels = Vec::with_capacity(addresses.len());
        for address in &addresses {
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .with_context(|| format!("--master: {address:?} is not a host:port"))?
                .initial_connection_window_size(16 << 20)
                .initial_stream_window_size(1 << 20)
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(10));
            let mut slots: Vec<Channel> = (0..agent_slots).map(|_| endpoint.connect_lazy()).collect();
            let _frameworks_runtime = frameworks_runtime.enter();
            slots.extend((0..frameworks.max(1)).map(|_| endpoint.connect_lazy()));
            channels.push(slots);
        }
        Ok(Masters { addresses, leader: AtomicUsize::new(0), elected: watch::Sender::new(0), channels })
    }

    /// Changes whenever etcd names a new leader.
    pub fn elections(&self) -> watch::Receiver<u64> {
        self.elected.subscribe()
    }

    /// Waits `pause`, or less when a new leader is elected meanwhile (then a short
    /// jittered moment, so that every emulator does not dial in the same instant).
    pub async fn pause(&self, pause: Duration, elections: &mut watch::Receiver<u64>, jitter: Duration) {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            Ok(()) = elections.changed() => tokio::time::sleep(jitter.min(pause)).await,
        }
    }

    /// Follows the leader key in etcd (one watch for every emulator, where each real agent
    /// started with `--etcd` holds its own) until the process ends.
    pub async fn follow_etcd(self: std::sync::Arc<Self>, etcd: String) {
        let client = match agora_proto::etcd_client::Etcd::connect(&[etcd]) {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "cannot follow the leader in etcd");
                return;
            }
        };
        loop {
            let Ok((leader, revision)) = client.leader().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if let Some(index) = leader.and_then(|l| self.addresses.iter().position(|a| *a == l))
                && self.leader.swap(index, Ordering::Relaxed) != index
            {
                self.elected.send_modify(|n| *n += 1);
            }
            let key = agora_proto::etcd_client::LEADER_KEY.as_bytes();
            if client.wait_for_change(key, revision, Duration::from_secs(10)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// The believed leader's index and its channel for `slot`.
    pub fn channel(&self, slot: usize) -> (usize, Channel) {
        let index = self.leader.load(Ordering::Relaxed) % self.addresses.len();
        let slots = &self.channels[index];
        (index, slots[slot % slots.len()].clone())
    }

    /// A call to master `index` failed with `status`. A follower's answer names the leader,
    /// which is believed from now on; any other failure moves on to the next master. True
    /// when the failure named another master to try at once.
    pub fn failed(&self, index: usize, status: Option<&tonic::Status>) -> bool {
        let named = status
            .filter(|s| s.code() == tonic::Code::Unavailable)
            .and_then(|s| s.metadata().get(LEADER_METADATA)?.to_str().ok())
            .and_then(|leader| self.addresses.iter().position(|a| a == leader.trim()));
        match named {
            Some(leader) if leader != index => {
                self.leader.store(leader, Ordering::Relaxed);
                true
            }
            _ => {
                let next = (index + 1) % self.addresses.len();
                let _ = self.leader.compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
                false
            }
        }
    }
}

/// `GET path` over a plain HTTP/1.0 connection (no client library for a few requests):
/// the status code and the body, or `None` when the master cannot be reached.
pub async fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        stream.take(MAX_HTTP_BYTES).read_to_end(&mut body).await.ok()?;
        let text = String::from_utf8(body).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.").then_some(())?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_owned()))
    };
    tokio::time::timeout(HTTP_TIMEOUT, fetch).await.ok().flatten()
}

/// The index of the master that leads and serves its state, if one does: a follower's
/// `/metrics` is a redirect, the leader's comes from its core.
pub async fn serving_leader(addresses: &[String], skip: Option<usize>) -> Option<usize> {
    for (index, address) in addresses.iter().enumerate() {
        if Some(index) == skip {
            continue;
        }
        if let Some((200, _)) = http_get(address, "/metrics").await {
            return Some(index);
        }
    }
    None
}

/// Masters (and their etcd) started by the bench as child processes, killed when dropped.
#[derive(Debug)]
pub struct Spawned {
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    /// `host:port` of the etcd the masters elect their leader in, when there are several.
    pub etcd_address: Option<String>,
    masters: Vec<Option<Child>>,
    pub addresses: Vec<String>,
}

/// How to start the masters.
#[derive(Debug)]
pub struct SpawnSpec<'a> {
    pub count: usize,
    /// The leader's etcd lease, with several masters.
    pub lease_ttl: Duration,
    /// `$ETCD` or `etcd` on the `PATH`, with several masters.
    pub etcd_binary: &'a str,
    pub seed: u64,
}

impl Spawned {
    /// Starts `count` masters of this binary on loopback ports; several elect their leader
    /// in an etcd started here too. Returns once one leads and serves; on failure the
    /// error says where the logs are kept.
    pub async fn start(spec: SpawnSpec<'_>) -> anyhow::Result<Spawned> {
        let dir =
            tempfile::Builder::new().prefix("agora-bench-").tempdir().context("cannot create a temporary directory")?;
        let mut spawned = Spawned { dir, etcd: None, etcd_address: None, masters: Vec::new(), addresses: Vec::new() };
        match spawned.start_all(spec).await {
            Ok(()) => Ok(spawned),
            Err(error) => Err(error.context(format!("logs kept in {}", spawned.keep_logs().display()))),
        }
    }

    async fn start_all(&mut self, spec: SpawnSpec<'_>) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find this program's own binary")?;
        let etcd_url = if spec.count > 1 { Some(self.start_etcd(spec.etcd_binary).await?) } else { None };
        self.etcd_address.clone_from(&etcd_url);
        for index in 0..spec.count {
            let port = free_port()?;
            let address = format!("127.0.0.1:{port}");
            let work_dir = self.dir.path().join(format!("master-{index}"));
            let log = log_file(self.dir.path(), &format!("master-{index}.log"))?;
            let mut command = Command::new(&exe);
            command
                .arg("master")
                .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
                .arg("--work-dir")
                .arg(&work_dir)
                .args(["--seed", &spec.seed.wrapping_add(index as u64).to_string()]);
            if let Some(url) = &etcd_url {
                let ttl = humantime::format_duration(spec.lease_ttl).to_string();
                command.args(["--etcd", url]).args(["--etcd-lease-ttl", &ttl]);
            }
            let child = command
                .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("cannot start `agora master`")?;
            self.masters.push(Some(child));
            self.addresses.push(address);
        }
        let until = Instant::now() + READY_WITHIN;
        while serving_leader(&self.addresses, None).await.is_none() {
            self.check_alive()?;
            anyhow::ensure!(Instant::now() < until, "no master served within {READY_WITHIN:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn start_etcd(&mut self, binary: &str) -> anyhow::Result<String> {
        let (client, peer) = (free_port()?, free_port()?);
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = log_file(self.dir.path(), "etcd.log")?;
        let child = Command::new(binary)
            .arg("--data-dir")
            .arg(self.dir.path().join("etcd"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("cannot run `{binary}`: several masters need an etcd server (Debian: apt-get install etcd-server; or set $ETCD)")
            })?;
        self.etcd = Some(child);
        let address = format!("127.0.0.1:{client}");
        let until = Instant::now() + READY_WITHIN;
        loop {
            if let Some((200, body)) = http_get(&address, "/health").await
                && body.contains("\"health\":\"true\"")
            {
                return Ok(address);
            }
            anyhow::ensure!(Instant::now() < until, "etcd did not become healthy");
            if let Some(etcd) = &mut self.etcd
                && let Ok(Some(status)) = etcd.try_wait()
            {
                anyhow::bail!("etcd exited ({status})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (index, master) in self.masters.iter_mut().enumerate() {
            if let Some(child) = master
                && let Ok(Some(status)) = child.try_wait()
            {
                anyhow::bail!("master {index} exited ({status})");
            }
        }
        Ok(())
    }

    pub fn pid(&self, index: usize) -> Option<u32> {
        self.masters.get(index)?.as_ref().map(Child::id)
    }

    /// SIGKILLs master `index`, as a crash would.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.masters.get_mut(index).and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Keeps the logs after the run, for a look at what went wrong; returns where.
    pub fn keep_logs(&mut self) -> PathBuf {
        self.dir.disable_cleanup(true);
        self.dir.path().to_owned()
    }

    fn stop_all(&mut self) {
        for index in 0..self.masters.len() {
            self.kill(index);
        }
        if let Some(mut etcd) = self.etcd.take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(dir.join(name)).with_context(|| format!("cannot create {name}"))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}
