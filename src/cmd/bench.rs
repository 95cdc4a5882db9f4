//! `agora bench`: the traffic and failure simulator of the `agora-bench` crate, run until it
//! ends or Ctrl-C/SIGTERM.

use std::process::ExitCode;

pub use agora_bench::Args;

/// Runs the bench; an interrupted run drops what it started, so the master processes and
/// etcd it spawned are killed with it (exit 130).
pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    tokio::select! {
        result = agora_bench::run(args) => result,
        () = super::interrupted() => {
            eprintln!("agora bench: interrupted; stopping what it started");
            Ok(ExitCode::from(130))
        }
    }
}
