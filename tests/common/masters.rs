//! Several `agora master --etcd` processes on one etcd, each on a port and work directory of
//! its own, that a test can SIGKILL and start again as a supervisor would; and the question
//! every HA test asks: which one leads. The logs of all lives stay in the directory given
//! (`masterI-LIFE.log`); they are not printed when a test fails.

use std::path::{Path, PathBuf};

use super::etcd::Etcd;
use super::{Proc, eventually, free_port};

/// An HTTP client that shows redirects instead of following them: a follower answers
/// `/state` with a 307 to the leader, and only the leader with a 200.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("http client")
}

/// The one master among `masters` that serves `/state` itself, if exactly one does.
pub async fn leader_of(client: &reqwest::Client, masters: &[String]) -> Option<String> {
    let mut leading = Vec::new();
    for master in masters {
        let answer = client.get(format!("http://{master}/state")).send().await;
        if answer.is_ok_and(|a| a.status() == reqwest::StatusCode::OK) {
            leading.push(master.clone());
        }
    }
    (leading.len() == 1).then(|| leading.remove(0))
}

/// Masters on one etcd; index `i` keeps its address and work directory across restarts.
pub struct Masters {
    /// `host:port` of each master, in index order.
    pub addrs: Vec<String>,
    procs: Vec<Proc>,
    args: Vec<Vec<String>>,
    /// Lives started so far per master, to give each life's log a name of its own.
    lives: Vec<usize>,
    dir: PathBuf,
    client: reqwest::Client,
}

impl Masters {
    /// Starts `count` masters on `etcd` with `flags` added (lease TTL, timeouts), logging to
    /// `dir/masterI-LIFE.log`; they elect a leader among themselves.
    pub fn start(etcd: &Etcd, dir: &Path, count: usize, flags: &[&str]) -> Masters {
        let addrs: Vec<String> = (0..count).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let args = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let port = addr.rsplit_once(':').expect("host:port").1;
                let work = dir.join(format!("master{i}"));
                let mut args: Vec<String> =
                    ["master", "--port", port, "--work-dir", work.to_str().expect("utf-8 path")]
                        .iter()
                        .map(|a| a.to_string())
                        .collect();
                args.extend(["--etcd".to_owned(), etcd.url.clone()]);
                args.extend(flags.iter().map(|f| f.to_string()));
                args
            })
            .collect();
        let mut masters = Masters {
            addrs,
            procs: Vec::new(),
            args,
            lives: vec![0; count],
            dir: dir.to_owned(),
            client: no_redirects(),
        };
        masters.procs = (0..count).map(|i| masters.spawn(i)).collect();
        masters
    }

    fn spawn(&mut self, index: usize) -> Proc {
        self.lives[index] += 1;
        let args: Vec<&str> = self.args[index].iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(&format!("master{index}-{}", self.lives[index]), &self.dir, &args);
        // Every life's log stays in the directory; printing only the current one would mislead.
        proc.print_log_on_panic = false;
        proc
    }

    /// Every master, comma-separated, as agents and frameworks take them.
    pub fn list(&self) -> String {
        self.addrs.join(",")
    }

    /// The index of the leading master right now, if exactly one serves `/state`.
    pub async fn leading(&self) -> Option<usize> {
        let leader = leader_of(&self.client, &self.addrs).await?;
        self.addrs.iter().position(|a| *a == leader)
    }

    /// Waits for a leader and returns its index.
    pub async fn leader(&self) -> usize {
        eventually("a leading master", async || self.leading().await).await
    }

    /// SIGKILLs master `index` and starts it again on the same port and work directory, as
    /// a supervisor would; it comes back as a follower or wins a later election.
    pub fn kill_and_restart(&mut self, index: usize) {
        self.procs[index].kill();
        self.procs[index] = self.spawn(index);
    }

    /// SIGKILLs master `index` and leaves it down until [`Masters::restart`].
    pub fn kill(&mut self, index: usize) {
        self.procs[index].kill();
    }

    /// Starts master `index` again on the same port and work directory.
    pub fn restart(&mut self, index: usize) {
        self.procs[index] = self.spawn(index);
    }

    /// Masters that exited by themselves (a leader that lost its lease does, by design) are
    /// started again; returns their indexes and exit statuses.
    pub fn restart_exited(&mut self) -> Vec<(usize, std::process::ExitStatus)> {
        let mut restarted = Vec::new();
        for index in 0..self.procs.len() {
            if let Some(status) = self.procs[index].exited() {
                restarted.push((index, status));
                self.procs[index] = self.spawn(index);
            }
        }
        restarted
    }

    /// The log of master `index`'s current life.
    pub fn log_text(&self, index: usize) -> String {
        self.procs[index].log_text()
    }
}
