//! `agora run --detach`: the run goes on in a background process of its own, so that its
//! tasks keep a framework that acknowledges their updates and tears itself down when they
//! end, as any run does; this process only waits until every instance has started.
//!
//! The background run is this binary again with the same arguments, less `--detach`, plus
//! `--json`: its updates tell this process when every task has started. Until then its
//! progress lines are passed on; afterwards its outputs lead nowhere (a closed pipe, whose
//! errors it ignores). It runs in a process group of its own, so a Ctrl-C at the terminal
//! reaches only this process, which hands it on while it waits, and never afterwards.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{ExitCode, Stdio};

use agora_proto::model::TaskId;
use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Starts the background run and waits until each of `task_ids` has an update.
pub async fn run_in_background(task_ids: &[TaskId], masters: &[String]) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("--detach: cannot find this program to start it again")?;
    let args = background_args(std::env::args().skip(1).collect());
    let mut child = tokio::process::Command::new(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("--detach: cannot start the background run")?;
    let mut updates = BufReader::new(child.stdout.take().context("its stdout")?).lines();
    let mut progress = BufReader::new(child.stderr.take().context("its stderr")?).lines();
    let wanted: BTreeSet<&str> = task_ids.iter().map(TaskId::as_str).collect();
    let mut started = BTreeSet::new();
    let mut framework_id = String::new();
    let mut progress_open = true;
    while started.len() < wanted.len() {
        tokio::select! {
            line = updates.next_line() => {
                let Some(line) = line.context("reading the background run")? else {
                    // It ended before every task started: its own messages said why.
                    while let Ok(Some(line)) = progress.next_line().await {
                        eprintln!("{line}");
                    }
                    let status = child.wait().await.context("waiting for the background run")?;
                    return Ok(ExitCode::from(status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1)));
                };
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                match event["event"].as_str() {
                    Some("subscribed") => framework_id = event["framework_id"].as_str().unwrap_or_default().to_owned(),
                    Some("update") => {
                        if let Some(id) = event["task_id"].as_str().filter(|id| wanted.contains(id)) {
                            started.insert(id.to_owned());
                        }
                    }
                    _ => {}
                }
            }
            line = progress.next_line(), if progress_open => match line {
                Ok(Some(line)) => eprintln!("{line}"),
                _ => progress_open = false,
            },
            _ = tokio::signal::ctrl_c() => {
                // Handed on: the background run kills what it launched and ends.
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
                }
                let _ = child.wait().await;
                return Ok(ExitCode::from(130));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for id in task_ids {
        let _ = writeln!(out, "{id}");
    }
    let masters = masters.join(",");
    let first = &task_ids[0];
    eprintln!(
        "agora run: detached; framework {framework_id} runs in the background until its tasks end. \
         Their output: `agora task log {first} --follow --master {masters}`; to stop them: \
         `agora framework teardown {framework_id} --master {masters}`"
    );
    Ok(ExitCode::SUCCESS)
}

/// The background run's arguments: these, less the first `--detach`, with `--json` (its
/// updates are read) right after `run`.
fn background_args(mut args: Vec<String>) -> Vec<String> {
    if let Some(at) = args.iter().position(|a| a == "--detach") {
        args.remove(at);
    }
    let options_end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    if !args[..options_end].iter().any(|a| a == "--json") {
        let at = args.iter().position(|a| a == "run").map_or(0, |i| i + 1);
        args.insert(at, "--json".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_run_has_the_same_arguments_less_detach_and_with_json() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            background_args(words(&["run", "--master", "m:1", "--detach", "--", "docker", "run", "--detach"])),
            words(&["run", "--json", "--master", "m:1", "--", "docker", "run", "--detach"])
        );
    }
}
