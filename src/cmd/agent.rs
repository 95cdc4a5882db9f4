//! Placeholder until this subcommand is written.

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn main(_args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("this subcommand is being written")
}
