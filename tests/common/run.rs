//! `agora run --json --checkpoint FILE` as a process that a test can SIGKILL and start again
//! as the same framework, and read everything it was told, over all its lives.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Proc;

pub struct RunProc {
    pub name: String,
    pub checkpoint: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    /// Standard output of each life so far, in order.
    outputs: Vec<PathBuf>,
    proc: Proc,
}

impl RunProc {
    /// Starts `agora run --master MASTERS --name NAME --json --checkpoint DIR/NAME.checkpoint
    /// FLAGS -- COMMAND…`; standard output of life L is `DIR/NAME-L.out`.
    pub fn start(dir: &Path, name: &str, masters: &str, flags: &[&str], command: &[&str]) -> RunProc {
        let checkpoint = dir.join(format!("{name}.checkpoint"));
        let mut args: Vec<String> = ["run", "--master", masters, "--name", name, "--json", "--checkpoint"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.push(checkpoint.to_str().expect("utf-8 path").to_owned());
        args.extend(flags.iter().map(|f| f.to_string()));
        args.push("--".to_owned());
        args.extend(command.iter().map(|c| c.to_string()));
        let proc = spawn(dir, name, 1, &args);
        let outputs = vec![proc.out.clone().expect("stdout of its own")];
        RunProc { name: name.to_owned(), checkpoint, args, dir: dir.to_owned(), outputs, proc }
    }

    /// SIGKILLs this life and starts the next on the same checkpoint: it resumes the framework.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Sends `signal` (`INT`, `TERM`, …) to the current life.
    pub fn signal(&self, signal: &str) {
        self.proc.signal(signal);
    }

    /// Starts the next life (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.proc = spawn(&self.dir, &self.name, self.outputs.len() + 1, &self.args);
        self.outputs.push(self.proc.out.clone().expect("stdout of its own"));
    }

    /// How many lives were started.
    pub fn lives(&self) -> usize {
        self.outputs.len()
    }

    /// The exit status, once the current life has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.exited()
    }

    /// Every JSON line printed so far, over all lives, in order.
    pub fn events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        for (life, out) in self.outputs.iter().enumerate() {
            let text = std::fs::read_to_string(out).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                match serde_json::from_str::<Value>(line) {
                    Ok(event) => events.push(event),
                    // Only the line being written when the process was killed may be torn.
                    Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
                    Err(error) => panic!("{}, life {}: bad JSON line {line:?}: {error}", self.name, life + 1),
                }
            }
        }
        events
    }

    /// The updates delivered for `task_id`, over all lives, in order.
    pub fn updates(&self, task_id: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event"] == "update" && e["task_id"] == task_id).collect()
    }

    /// The states delivered for `task_id`, in order, duplicates included.
    pub fn states(&self, task_id: &str) -> Vec<String> {
        self.updates(task_id).iter().filter_map(|u| u["state"].as_str().map(str::to_owned)).collect()
    }

    /// The framework ids of every subscription, in order.
    pub fn framework_ids(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "subscribed")
            .filter_map(|e| e["framework_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Standard error of the current life.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

fn spawn(dir: &Path, name: &str, life: usize, args: &[String]) -> Proc {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut proc = Proc::spawn_with_stdout(&format!("{name}-{life}"), dir, &args);
    // Every life's log stays in the directory; printing only the current one would mislead.
    proc.print_log_on_panic = false;
    proc
}
