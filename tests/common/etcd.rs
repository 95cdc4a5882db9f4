//! A real etcd server for tests: one member on loopback with ephemeral ports and a
//! temporary data directory, SIGKILLed when dropped. A machine without `etcd` fails the
//! test with a message saying how to install it; it is never skipped.
//!
//! Self-contained (std only) so that the master crate's own tests include it too.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer `/health` after it starts.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Attempts at starting etcd: a port picked free can be taken by another process before
/// etcd binds it, which shows as etcd exiting at once.
const START_ATTEMPTS: usize = 3;

/// A running single-member etcd.
pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:PORT`, what clients dial.
    pub url: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The etcd binary: `$ETCD` when set, else `etcd` on the `PATH`.
fn binary() -> String {
    std::env::var("ETCD").unwrap_or_else(|_| "etcd".to_owned())
}

impl Etcd {
    /// Starts etcd and waits until it is healthy, failing the test when it cannot.
    pub fn start() -> Etcd {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match Etcd::try_start() {
                Ok(etcd) => return etcd,
                Err(log) => last_log = log,
            }
        }
        panic!("etcd did not become healthy after {START_ATTEMPTS} attempts; its last log:\n{last_log}");
    }

    fn try_start() -> Result<Etcd, String> {
        let dir = tempfile::tempdir().expect("temp dir for etcd");
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.path().join("etcd.log");
        let file = std::fs::File::create(&log).expect("create etcd log");
        let data_dir = dir.path().join("data");
        let spawned = Command::new(binary())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone etcd log"))
            .stderr(file)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => panic!(
                "cannot run `{}` ({error}): these tests need a real etcd server. Install it \
                 (Debian: `apt-get install etcd-server`; `.ci/test` does this) or point $ETCD at the binary",
                binary()
            ),
        };
        let mut etcd = Etcd { child, url, log, _dir: dir };
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = etcd.child.try_wait() {
                return Err(etcd.log_text());
            }
            if etcd.healthy() {
                return Ok(etcd);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(etcd.log_text())
    }

    /// `host:port` of the client URL.
    pub fn endpoint(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(self.endpoint()) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /health HTTP/1.0\r\nHost: {}\r\n\r\n", self.endpoint());
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    /// SIGKILL, as a crash (or a partition from every etcd member) would look.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- log of etcd ----\n{}", self.log_text());
        }
    }
}
