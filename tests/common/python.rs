//! The Python clients' scripts (`tests/python/*.py`), run with the virtualenv that
//! `.ci/python-venv` builds: Marathon's, Chronos' and pymesos' real clients against Agora.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The venv's python, or `None` when it is missing outside CI (the test then says so and
/// passes without running; with `CI=true` a missing venv fails it).
pub fn test_python() -> Option<PathBuf> {
    let path = match std::env::var_os("AGORA_TEST_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py-venv/bin/python"),
    };
    if path.exists() {
        return Some(path);
    }
    let message = format!(
        "no Python test environment at {} (build it with `bash .ci/python-venv`, or set AGORA_TEST_PYTHON)",
        path.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}; required in CI");
    eprintln!("SKIPPED: {message}");
    None
}

/// The command that runs `tests/python/<script>` with `args`, kept on loopback (the
/// clients honour proxy variables), unbuffered, writing no bytecode.
pub fn script_command(python: &Path, script: &str, args: &[&str]) -> Command {
    let mut command = Command::new(python);
    command
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script))
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::null());
    command
}

/// Runs `tests/python/<script>` to its end, or SIGKILLs it after `timeout` (which bounds a
/// wedged run, not a slow one); answers whether it passed and everything it printed.
pub fn run_script(python: &Path, script: &str, args: &[&str], timeout: Duration) -> (bool, String) {
    let mut child = script_command(python, script, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python client");
    let pid = child.id();
    let (stdout, stderr) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "{}{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
        if status.is_none() { format!("\nkilled after {timeout:?}") } else { String::new() }
    );
    (status.is_some_and(|s| s.success()), output)
}
