//! `agora`: the one binary. Parses the command line, installs tracing and hands over to
//! the subcommand; everything else lives in the crates.

mod cmd;

/// mimalloc instead of glibc's malloc: the master allocates and frees many small, short-lived
/// blocks (protobuf messages, statuses, offers) from several threads; under glibc these
/// fragmented its heap and `malloc` took a quarter of the CPU of an `agora bench` run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "agora", version, about = "A two-level resource-offer cluster scheduler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a master: registry, allocator, scheduler API, operator API and web UI.
    Master(cmd::master::Args),
    /// Run an agent: offers this host's resources and runs tasks.
    Agent(cmd::agent::Args),
    /// Run a whole cluster in one process: a master and N agents.
    Local(cmd::local::Args),
    /// Run the services framework (Marathon's /v2 API), or act on it: deploy, scale, list, …
    Services(cmd::services::Args),
    /// Run the cron framework (Chronos' API), or act on it: add, list, run, next, history, …
    Cron(cmd::cron::Args),
    /// Run a command on the cluster as one or more tasks and wait for them (like mesos-execute).
    Run(cmd::run::Args),
    /// Simulate agents and frameworks against a master and measure it (traffic and failures).
    Bench(cmd::bench::Args),
    /// List the agents: address, state, resources in use, live tasks.
    Agents(cmd::ops::AgentsArgs),
    /// List the frameworks: name, user, roles, resources in use, live tasks.
    Frameworks(cmd::ops::FrameworksArgs),
    /// Act on a framework: teardown.
    Framework(cmd::ops::FrameworkArgs),
    /// List tasks (the live ones by default), filtered by state, framework or agent.
    Tasks(cmd::ops::TasksArgs),
    /// One task: show, log (what it printed, -f to follow), ls, cat, kill.
    Task(cmd::ops::TaskArgs),
    /// Print the completion script of a shell (bash, zsh, fish, …) to standard output.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "agora", &mut std::io::stdout());
        return std::process::ExitCode::SUCCESS;
    }
    cmd::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("agora: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Master(args) => cmd::master::main(args).await,
            Command::Agent(args) => cmd::agent::main(args).await,
            Command::Local(args) => cmd::local::main(args).await,
            Command::Run(args) => cmd::run::main(args).await,
            Command::Services(args) => cmd::services::main(args).await,
            Command::Cron(args) => cmd::cron::main(args).await,
            Command::Bench(args) => cmd::bench::main(args).await,
            Command::Agents(args) => cmd::ops::agents(args).await,
            Command::Frameworks(args) => cmd::ops::frameworks(args).await,
            Command::Framework(args) => cmd::ops::framework(args).await,
            Command::Tasks(args) => cmd::ops::tasks(args).await,
            Command::Task(args) => cmd::ops::task(args).await,
            Command::Completions { .. } => Ok(std::process::ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("agora: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_line_is_well_formed() {
        // clap checks flags and groups of every subcommand only when it is parsed; this
        // checks them all at once (two flattened groups with one name, say).
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
