//! Shared helpers for the end-to-end tests: start real `agora` processes on loopback
//! with ephemeral ports and temporary directories, and wait for them with bounded timeouts.

#![allow(dead_code)]

pub mod agent;
pub mod etcd;
pub mod framework;
pub mod masters;
pub mod python;
pub mod run;
pub mod services;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const AGORA: &str = env!("CARGO_BIN_EXE_agora");

/// Longest any single wait in these tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// A free port on loopback. The port is released before use, so another process could
/// take it in between; tests tolerate that by failing loudly, never by hanging.
pub fn free_port() -> u16 {
    // Below Linux's ephemeral range (32768 and up), so that the outgoing connections of
    // the tests running alongside cannot take the port between this probe and the bind of
    // the process it is meant for (or between a SIGKILL and that process's restart).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..1_000 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + u16::try_from(seed.wrapping_add(n.wrapping_mul(7_919)) % 12_000).expect("below 12000");
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("local address").port();
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// A child process that is SIGKILLed when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
    /// Where standard output went, when it has a file of its own (else it is in `log`).
    pub out: Option<PathBuf>,
    /// Whether a failing test prints the log when this is dropped; tests that keep the
    /// files of many processes (and of their earlier lives) turn it off.
    pub print_log_on_panic: bool,
}

impl Proc {
    /// Starts `agora ARGS`, standard output and error both in `DIR/NAME.log`.
    pub fn spawn(name: &str, dir: &Path, args: &[&str]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create log file");
        Proc::spawn_to(name, log, None, file.try_clone().expect("clone log file"), file, args)
    }

    /// Like [`spawn`](Self::spawn), but standard output goes to `DIR/NAME.out` alone, for
    /// the test to parse (`agora run --json`); standard error to `DIR/NAME.log`.
    pub fn spawn_with_stdout(name: &str, dir: &Path, args: &[&str]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = dir.join(format!("{name}.out"));
        let stdout = std::fs::File::create(&out).expect("create stdout file");
        let stderr = std::fs::File::create(&log).expect("create log file");
        Proc::spawn_to(name, log, Some(out), stdout, stderr, args)
    }

    fn spawn_to(
        name: &str,
        log: PathBuf,
        out: Option<PathBuf>,
        stdout: std::fs::File,
        stderr: std::fs::File,
        args: &[&str],
    ) -> Proc {
        // Agents here run their tasks as root, allowed explicitly, and frameworks (which name
        // the user in `USER`) ask for root: the tasks write markers into the test's temporary
        // directories, which only root may enter. Users are tested in the agent crate
        // (`agent/tests/users.rs`) and by `local_cluster.rs`.
        let allow_root: &[&str] = match args.first() {
            Some(&"agent") | Some(&"local") => &["--allow-root-tasks"],
            _ => &[],
        };
        let child = Command::new(AGORA)
            .args(args)
            .args(allow_root)
            .env("USER", "root")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn agora");
        Proc { child, name: name.to_owned(), log, out, print_log_on_panic: true }
    }

    /// The exit status, once the process has exited (by itself or killed).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for a child")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {}", self.pid());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() && self.print_log_on_panic {
            eprintln!("---- log of {} ----\n{}", self.name, self.log_text());
        }
    }
}

/// Polls `check` until it returns `Some`, failing the test after `WAIT`.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Ok`, failing the test after `WAIT` with what the last
/// `Err` said was still missing.
pub async fn eventually_with<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let missing = match check().await {
            Ok(value) => return value,
            Err(missing) => missing,
        };
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last seen: {missing}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn get_json(url: &str) -> Option<serde_json::Value> {
    let response = reqwest::get(url).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// A master and agents started as separate processes, or one `agora local`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub master: String,
    pub procs: Vec<Proc>,
    /// How the master process was started, to restart it the same way.
    pub master_args: Vec<String>,
}

impl Cluster {
    /// `agora local` with `agents` agents (and no services framework).
    pub async fn local(agents: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let work = dir.path().join("local");
        let proc = Proc::spawn(
            "local",
            dir.path(),
            &[
                "local",
                "--port",
                &port.to_string(),
                "--agents",
                &agents.to_string(),
                "--work-dir",
                work.to_str().expect("utf-8 path"),
                "--no-services",
                "--no-cron",
            ],
        );
        let cluster = Cluster { dir, master: format!("127.0.0.1:{port}"), procs: vec![proc], master_args: Vec::new() };
        cluster.wait_for_agents(agents).await;
        cluster
    }

    /// A master process alone, with `extra` flags (short agent timeouts, say).
    pub async fn master_only(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port().to_string();
        let work = dir.path().join("master");
        let mut args = vec!["master", "--port", &port, "--work-dir", work.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        let master_args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let proc = Proc::spawn("master", dir.path(), &args);
        let cluster = Cluster { dir, master: format!("127.0.0.1:{port}"), procs: vec![proc], master_args };
        cluster.wait_for_master().await;
        cluster
    }

    /// SIGKILLs the master (always `procs[0]`) and starts it again with the same flags,
    /// port and work directory.
    pub async fn restart_master(&mut self) {
        self.procs[0].kill();
        let args: Vec<&str> = self.master_args.iter().map(String::as_str).collect();
        self.procs[0] = Proc::spawn("master-restarted", self.dir.path(), &args);
        self.wait_for_master().await;
    }

    pub async fn wait_for_master(&self) {
        let url = self.url("/health");
        eventually("the master to answer /health", async || {
            reqwest::get(&url).await.ok().filter(|r| r.status().is_success())
        })
        .await;
    }

    /// Starts an agent process; returns its index in `procs`.
    pub fn add_agent(&mut self, name: &str, resources: &str) -> usize {
        let work = self.dir.path().join(name);
        let port = free_port().to_string();
        let proc = Proc::spawn(
            name,
            self.dir.path(),
            &[
                "agent",
                "--master",
                &self.master,
                "--port",
                &port,
                "--work-dir",
                work.to_str().expect("utf-8 path"),
                "--resources",
                resources,
            ],
        );
        self.procs.push(proc);
        self.procs.len() - 1
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.master)
    }

    pub async fn state(&self) -> serde_json::Value {
        let url = self.url("/state");
        eventually("/state", async || get_json(&url).await).await
    }

    pub async fn wait_for_agents(&self, count: usize) {
        let url = self.url("/state");
        eventually(&format!("{count} active agents"), async || {
            let state = get_json(&url).await?;
            let active = state["slaves"].as_array()?.iter().filter(|a| a["active"] == true).count();
            (active >= count).then_some(())
        })
        .await;
    }

    /// Runs `agora run` against this cluster and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(AGORA);
        command.arg("run").arg("--master").arg(&self.master).args(args).env("RUST_LOG", "warn").env("USER", "root");
        run_bounded(command)
    }
}

impl Drop for Cluster {
    /// Tasks are built to outlive their agent, so a test that SIGKILLs agents would leave
    /// them behind: every process working inside this cluster's directory goes too.
    fn drop(&mut self) {
        for proc in &mut self.procs {
            proc.kill();
        }
        kill_processes_under(self.dir.path());
    }
}

/// SIGKILLs every process whose working directory is under `root`: the tasks of agents a
/// test started there (their sandboxes are), which outlive SIGKILLed agents by design.
pub fn kill_processes_under(root: &Path) {
    let Ok(root) = root.canonicalize() else { return };
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&root)) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// Runs a command to completion, killing it if it outlives `WAIT`. Output is collected on
/// a thread so a chatty child never blocks on a full pipe.
pub fn run_bounded(mut command: Command) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("collect output"),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            let output = rx.recv().expect("output after kill").expect("collect output");
            panic!(
                "command timed out\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
