//! An `agora agent` process whose port and work directory outlive it, so that it can be
//! SIGKILLed and started again to recover its tasks from its checkpoint.

use std::path::{Path, PathBuf};

use super::{Proc, free_port, get_json};

pub struct Agent {
    pub name: String,
    pub port: u16,
    pub work_dir: PathBuf,
    masters: String,
    resources: String,
    dir: PathBuf,
    /// Lives started so far, to give each life's log a name of its own.
    lives: usize,
    proc: Option<Proc>,
}

impl Agent {
    /// Starts agent `name` with its work directory in `dir`, registering with `masters`
    /// (`host:port`, comma-separated), offering `resources`.
    pub fn start(dir: &Path, name: &str, masters: &str, resources: &str) -> Agent {
        let mut agent = Agent {
            name: name.to_owned(),
            port: free_port(),
            work_dir: dir.join(name),
            masters: masters.to_owned(),
            resources: resources.to_owned(),
            dir: dir.to_owned(),
            lives: 0,
            proc: None,
        };
        agent.spawn();
        agent
    }

    /// Starts the agent (again) on the same port and work directory; its log is
    /// `dir/NAME-LIFE.log`.
    pub fn spawn(&mut self) {
        self.lives += 1;
        let port = self.port.to_string();
        let work_dir = self.work_dir.to_str().expect("utf-8 path");
        let args = [
            "agent",
            "--master",
            &self.masters,
            "--port",
            &port,
            "--work-dir",
            work_dir,
            "--resources",
            &self.resources,
        ];
        let mut proc = Proc::spawn(&format!("{}-{}", self.name, self.lives), &self.dir, &args);
        // Every life's log stays in the directory; printing only the current one would mislead.
        proc.print_log_on_panic = false;
        self.proc = Some(proc);
    }

    /// SIGKILL, as a crash would. Its tasks keep running.
    pub fn kill(&mut self) {
        if let Some(proc) = self.proc.as_mut() {
            proc.kill();
        }
    }

    /// The exit status if the current life ended (by itself, unless [`kill`](Self::kill)ed).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.as_mut().and_then(Proc::exited)
    }

    /// The agent's `/state`, if it answers now.
    pub async fn state(&self) -> Option<serde_json::Value> {
        get_json(&format!("http://127.0.0.1:{}/state", self.port)).await
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }
}
