//! Runs tasks' health and readiness checks: one tokio task per running check, which waits
//! for its first run, then probes, reports the result to the owner and waits the interval,
//! until the owner drops it. What a result means is the core's business (`core::checks`).
//!
//! The probes, all against the task's own agent:
//! - HTTP: `GET path HTTP/1.1` to `127.0.0.1:port` over a plain `TcpStream`, reading only
//!   the status line (bounded), so no HTTP client is needed for a one-line answer.
//! - HTTPS: `curl -k` (as Mesos' own checker does), since the agent carries no TLS stack;
//!   the certificate is not verified, as in Mesos and Marathon, for the task is local.
//! - TCP: a connect to `127.0.0.1:port`.
//! - COMMAND: `/bin/sh -c` in the task's sandbox with the task's environment, in a process
//!   group of its own that is SIGKILLed when the check times out or is stopped.
//!
//! Each probe is bounded by its timeout, and at most [`MAX_CONCURRENT_PROBES`] run at once
//! across the agent, so a thousand tasks checked every second cannot fork a thousand
//! shells together.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::model::{HealthCheckKind, HttpScheme, TaskInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use super::Event;
use crate::core::{CheckKind, RunId};

/// Most probes running at once on one agent.
pub(crate) const MAX_CONCURRENT_PROBES: usize = 64;
/// Most bytes read before an HTTP answer's status line must have ended.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Which answers of an HTTP probe pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Accept {
    /// 200..=399, as Marathon's and Mesos' HTTP health checks.
    Healthy,
    /// Exactly these (a readiness check's `ready_status_codes`).
    Codes(Vec<u16>),
}

/// One probe, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    Http {
        scheme: HttpScheme,
        port: u16,
        path: String,
        accept: Accept,
    },
    Tcp {
        port: u16,
    },
    Command {
        shell: String,
        dir: PathBuf,
        env: Vec<(String, String)>,
        /// The task's user and group, which the command runs as (an agent that is not root
        /// cannot switch: `None`).
        run_as: Option<(u32, u32)>,
    },
}

/// A check: its probe and timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckSpec {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
}

impl CheckSpec {
    /// The task's check of `kind`, with `dir` its sandbox and `env` its environment (used by
    /// a command check); `None` when the task has no such check.
    pub fn of_task(
        task: &TaskInfo,
        kind: CheckKind,
        dir: PathBuf,
        env: Vec<(String, String)>,
        run_as: Option<(u32, u32)>,
    ) -> Option<Self> {
        match kind {
            CheckKind::Health => {
                let check = task.health_check.as_ref()?;
                let probe = match &check.kind {
                    HealthCheckKind::Http { scheme, port, path } => {
                        Probe::Http { scheme: *scheme, port: *port, path: path.clone(), accept: Accept::Healthy }
                    }
                    HealthCheckKind::Tcp { port } => Probe::Tcp { port: *port },
                    HealthCheckKind::Command { shell } => Probe::Command { shell: shell.clone(), dir, env, run_as },
                };
                Some(Self {
                    probe,
                    interval: Duration::from_millis(check.interval_ms),
                    timeout: Duration::from_millis(check.timeout_ms),
                })
            }
            CheckKind::Readiness => {
                let check = task.readiness_check.as_ref()?;
                Some(Self {
                    probe: Probe::Http {
                        scheme: check.scheme,
                        port: check.port,
                        path: check.path.clone(),
                        accept: Accept::Codes(check.ready_status_codes.clone()),
                    },
                    interval: Duration::from_millis(check.interval_ms),
                    timeout: Duration::from_millis(check.timeout_ms),
                })
            }
        }
    }
}

/// Runs one check until dropped: waits `first_wait`, then probes every `interval` after
/// the previous probe ended, reporting each result to the owner.
pub(crate) async fn run(
    run: RunId,
    kind: CheckKind,
    spec: CheckSpec,
    first_wait: Duration,
    events: mpsc::Sender<Event>,
    limit: Arc<Semaphore>,
) {
    tokio::time::sleep(first_wait).await;
    loop {
        let outcome = {
            let Ok(_permit) = limit.acquire().await else {
                return;
            };
            probe(&spec.probe, spec.timeout).await
        };
        if let Err(error) = &outcome {
            tracing::debug!(run = run.0, ?kind, %error, "check failed");
        }
        if events.send(Event::Check { run, kind, outcome }).await.is_err() {
            // The agent is stopping.
            return;
        }
        tokio::time::sleep(spec.interval).await;
    }
}

/// Runs `probe` once, within `timeout`: `Ok` when it passed, else why not.
pub(crate) async fn probe(probe: &Probe, timeout: Duration) -> Result<(), String> {
    match probe {
        Probe::Http { scheme: HttpScheme::Http, port, path, accept } => http(*port, path, accept, timeout).await,
        Probe::Http { scheme: HttpScheme::Https, port, path, accept } => https(*port, path, accept, timeout).await,
        Probe::Tcp { port } => tcp(*port, timeout).await,
        Probe::Command { shell, dir, env, run_as } => command(shell, dir, env, *run_as, timeout).await,
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("no answer within {} ms", timeout.as_millis())
}

async fn tcp(port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("cannot connect to port {port}: {error}")),
        Err(_) => Err(timed_out(timeout)),
    }
}

fn judge(code: u16, accept: &Accept) -> Result<(), String> {
    let passed = match accept {
        Accept::Healthy => (200..=399).contains(&code),
        Accept::Codes(codes) => codes.contains(&code),
    };
    if passed { Ok(()) } else { Err(format!("HTTP status {code}")) }
}

async fn http(port: u16, path: &str, accept: &Accept, timeout: Duration) -> Result<(), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|error| format!("cannot connect to port {port}: {error}"))?;
        // The path was checked at the edge: it starts with `/` and holds no space or
        // control character, so it cannot break the request line.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: agora-agent-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.map_err(|error| format!("cannot send the request: {error}"))?;
        let mut answer = Vec::with_capacity(256);
        let mut buffer = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            if answer.len() >= MAX_STATUS_LINE {
                return Err(format!("no status line in the first {MAX_STATUS_LINE} bytes"));
            }
            let read = stream.read(&mut buffer).await.map_err(|error| format!("cannot read the answer: {error}"))?;
            if read == 0 {
                if answer.is_empty() {
                    return Err("the connection closed without an answer".to_owned());
                }
                break;
            }
            answer.extend_from_slice(&buffer[..read]);
        }
        status_code(&answer)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(code) => judge(code?, accept),
        Err(_) => Err(timed_out(timeout)),
    }
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
fn status_code(answer: &[u8]) -> Result<u16, String> {
    let line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let code = match (words.next(), words.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => code.parse::<u16>().ok(),
        _ => None,
    };
    code.filter(|c| (100..=599).contains(c)).ok_or_else(|| {
        let shown: String = line.trim().chars().take(80).collect();
        format!("not an HTTP answer: {shown:?}")
    })
}

async fn https(port: u16, path: &str, accept: &Accept, timeout: Duration) -> Result<(), String> {
    let url = format!("https://127.0.0.1:{port}{path}");
    // `--max-time` bounds curl itself; the timeout below bounds its start too.
    let seconds = format!("{:.3}", timeout.as_secs_f64());
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["--insecure", "--silent", "--show-error", "--output", "/dev/null", "--write-out", "%{http_code}"])
        .args(["--max-time", &seconds, "--", &url])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(timeout + Duration::from_secs(1), command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => return Err(format!("HTTPS checks run `curl`, which cannot be started: {error}")),
        Err(_) => return Err(timed_out(timeout)),
    };
    let code = String::from_utf8_lossy(&output.stdout).trim().parse::<u16>().ok().filter(|&c| c > 0);
    match code {
        Some(code) => judge(code, accept),
        None => {
            let error: String = String::from_utf8_lossy(&output.stderr).trim().chars().take(200).collect();
            Err(format!("HTTPS request failed: {error}"))
        }
    }
}

/// Kills a command check's process group unless the check's shell was waited for: a check
/// that times out or is stopped leaves nothing running. The group cannot have been reused
/// while its leader is not reaped.
struct GroupGuard {
    pgid: Option<nix::unistd::Pid>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

async fn command(
    shell: &str,
    dir: &std::path::Path,
    env: &[(String, String)],
    run_as: Option<(u32, u32)>,
    timeout: Duration,
) -> Result<(), String> {
    let mut command = tokio::process::Command::new("/bin/sh");
    // As the task itself runs: its user, its environment and none of the agent's.
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    command
        .arg("-c")
        .arg(shell)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|error| format!("cannot run /bin/sh: {error}"))?;
    let pgid = child.id().and_then(|pid| i32::try_from(pid).ok()).filter(|&pid| pid > 1);
    let mut guard = GroupGuard { pgid: pgid.map(nix::unistd::Pid::from_raw) };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            // Reaped: its pid may be reused from now on, so the group is left alone.
            guard.pgid = None;
            match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(0), _) => Ok(()),
                (Some(code), _) => Err(format!("the command exited with status {code}")),
                (None, Some(signal)) => Err(format!("the command was terminated by signal {signal}")),
                (None, None) => Err("the command ended without a status".to_owned()),
            }
        }
        Ok(Err(error)) => Err(format!("cannot wait for the command: {error}")),
        Err(_) => {
            drop(guard);
            // Reap the shell the guard killed, so no zombie is left.
            let _ = child.wait().await;
            Err(format!("the command did not finish within {} ms", timeout.as_millis()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A local server answering every connection with `answer` once it read the request.
    async fn server(answer: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = vec![0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        port
    }

    /// A port nothing listens on (bound, then released).
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address").port()
    }

    const SECOND: Duration = Duration::from_secs(1);

    fn http_probe(port: u16, accept: Accept) -> Probe {
        Probe::Http { scheme: HttpScheme::Http, port, path: "/health".into(), accept }
    }

    #[tokio::test]
    async fn an_http_check_passes_on_2xx_and_3xx_and_fails_naming_any_other_status() {
        let ok = server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(probe(&http_probe(ok, Accept::Healthy), SECOND).await, Ok(()));
        let moved = server("HTTP/1.0 302 Found\r\n\r\n").await;
        assert_eq!(probe(&http_probe(moved, Accept::Healthy), SECOND).await, Ok(()));
        let down = server("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(probe(&http_probe(down, Accept::Healthy), SECOND).await, Err("HTTP status 503".to_owned()));
    }

    #[tokio::test]
    async fn a_readiness_probe_passes_only_on_its_listed_codes() {
        let no_content = server("HTTP/1.1 204 No Content\r\n\r\n").await;
        assert_eq!(
            probe(&http_probe(no_content, Accept::Codes(vec![200])), SECOND).await,
            Err("HTTP status 204".into())
        );
        assert_eq!(probe(&http_probe(no_content, Accept::Codes(vec![200, 204])), SECOND).await, Ok(()));
    }

    #[tokio::test]
    async fn an_http_check_fails_on_a_closed_port_garbage_or_silence() {
        let closed = closed_port().await;
        let error = probe(&http_probe(closed, Accept::Healthy), SECOND).await.expect_err("closed");
        assert!(error.contains("cannot connect"), "{error}");
        let garbage = server("SSH-2.0-OpenSSH\r\n").await;
        let error = probe(&http_probe(garbage, Accept::Healthy), SECOND).await.expect_err("garbage");
        assert!(error.contains("not an HTTP answer"), "{error}");
        // Accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let silent = listener.local_addr().expect("address").port();
        let error = probe(&http_probe(silent, Accept::Healthy), Duration::from_millis(200)).await.expect_err("silent");
        assert_eq!(error, "no answer within 200 ms");
        drop(listener);
    }

    #[tokio::test]
    async fn a_tcp_check_passes_when_something_listens() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let open = listener.local_addr().expect("address").port();
        assert_eq!(probe(&Probe::Tcp { port: open }, SECOND).await, Ok(()));
        drop(listener);
        let error = probe(&Probe::Tcp { port: open }, SECOND).await.expect_err("closed");
        assert!(error.contains(&format!("port {open}")), "{error}");
    }

    #[tokio::test]
    async fn an_https_check_of_a_server_that_does_not_speak_tls_fails() {
        let plain = server("HTTP/1.1 200 OK\r\n\r\n").await;
        let probe_ = Probe::Http { scheme: HttpScheme::Https, port: plain, path: "/".into(), accept: Accept::Healthy };
        let error = probe(&probe_, SECOND).await.expect_err("not TLS");
        assert!(error.contains("HTTPS"), "{error}");
    }

    fn command_probe(shell: &str, dir: &std::path::Path) -> Probe {
        Probe::Command {
            shell: shell.into(),
            dir: dir.to_path_buf(),
            env: vec![("CHECK_ME".to_owned(), "yes".to_owned())],
            run_as: None,
        }
    }

    #[tokio::test]
    async fn a_command_check_runs_in_the_sandbox_with_the_task_environment_and_passes_on_exit_0() {
        let sandbox = tempfile::tempdir().expect("tempdir");
        std::fs::write(sandbox.path().join("marker"), "").expect("write");
        let passes = command_probe(r#"test -f marker && test "$CHECK_ME" = yes"#, sandbox.path());
        assert_eq!(probe(&passes, SECOND * 5).await, Ok(()));
        let fails = command_probe("exit 3", sandbox.path());
        assert_eq!(probe(&fails, SECOND * 5).await, Err("the command exited with status 3".to_owned()));
    }

    #[tokio::test]
    async fn a_command_check_that_times_out_fails_and_its_whole_group_is_killed() {
        let sandbox = tempfile::tempdir().expect("tempdir");
        let hangs = command_probe("sleep 30 & echo $! > background.pid; wait", sandbox.path());
        let error = probe(&hangs, Duration::from_millis(500)).await.expect_err("timed out");
        assert_eq!(error, "the command did not finish within 500 ms");
        let pid: u32 = std::fs::read_to_string(sandbox.path().join("background.pid"))
            .expect("the shell wrote its child's pid")
            .trim()
            .parse()
            .expect("a pid");
        // SIGKILL is delivered at once, but reaping the orphan is init's business: wait,
        // bounded, until it is gone or a zombie.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match super::super::checkpoint::process_start(pid) {
                None | Some((_, true)) => break,
                Some(_) if std::time::Instant::now() > deadline => panic!("the background sleep {pid} survived"),
                Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    #[test]
    fn a_status_line_gives_its_code_and_anything_else_is_refused() {
        assert_eq!(status_code(b"HTTP/1.1 404 Not Found\r\n"), Ok(404));
        assert_eq!(status_code(b"HTTP/1.0 200\r\n"), Ok(200));
        assert!(status_code(b"HTTP/1.1 999 What\r\n").is_err());
        assert!(status_code(b"hello world\r\n").is_err());
    }
}
