//! The operator's commands: `agora agents`, `agora frameworks`, `agora framework teardown`,
//! `agora tasks` and `agora task show|log|ls|cat|kill`. Flags in, `agora_master::cli` called,
//! its text printed; an error is one line on stderr and exit status 1.

use std::io::Write;
use std::process::ExitCode;

use agora_master::cli::listing::{self, TaskFilter};
use agora_master::cli::sandbox::{self, LogOptions};
use agora_master::cli::{CliError, MasterClient, actions};
use agora_proto::model::TaskState;

/// Where the master is; shared by every operator command.
#[derive(Debug, Clone, clap::Args)]
pub struct MasterArg {
    /// The master, HOST:PORT; several comma-separated are tried in turn (a follower
    /// redirects to the leader).
    #[arg(long, env = "AGORA_MASTER", default_value = "127.0.0.1:5050", value_name = "HOST:PORT[,…]")]
    pub master: String,
    #[command(flatten)]
    pub tls: super::tls::ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct AgentsArgs {
    /// Print the master's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

#[derive(Debug, clap::Args)]
pub struct FrameworksArgs {
    /// Also the frameworks that were removed (torn down, or gone past their failover timeout).
    #[arg(long)]
    all: bool,
    /// Print the master's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

#[derive(Debug, clap::Args)]
pub struct FrameworkArgs {
    #[command(subcommand)]
    command: FrameworkCommand,
}

#[derive(Debug, clap::Subcommand)]
enum FrameworkCommand {
    /// Remove a framework: its tasks are killed and its id may never subscribe again.
    Teardown {
        /// The framework's id, as `agora frameworks` shows it.
        framework_id: String,
        #[command(flatten)]
        master: MasterArg,
    },
}

#[derive(Debug, clap::Args)]
pub struct TasksArgs {
    /// Only tasks in this state (`running`, `failed`, `TASK_FINISHED`, …); repeat or
    /// comma-separate for several. Default: the live states, or all with --all.
    #[arg(long, value_delimiter = ',', value_parser = listing::parse_state)]
    state: Vec<TaskState>,
    /// Only the tasks of this framework (its id).
    #[arg(long, value_name = "FRAMEWORK_ID")]
    framework: Option<String>,
    /// Only the tasks on this agent (its id).
    #[arg(long, value_name = "AGENT_ID")]
    agent: Option<String>,
    /// Ended tasks too (those the master keeps).
    #[arg(long)]
    all: bool,
    /// The newest N tasks at most.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=listing::MAX_TASKS as u64))]
    limit: u64,
    /// Print the master's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

#[derive(Debug, clap::Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    command: TaskCommand,
}

/// Which task, when several frameworks used its id: the newest unless told.
#[derive(Debug, Clone, clap::Args)]
struct Which {
    /// The task's id, as `agora tasks` shows it.
    task_id: String,
    /// The task's framework, when several frameworks have a task of this id (default: the
    /// newest task).
    #[arg(long, value_name = "FRAMEWORK_ID")]
    framework: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum TaskCommand {
    /// A task: its agent, sandbox, resources and state history.
    Show {
        #[command(flatten)]
        which: Which,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        master: MasterArg,
    },
    /// What the task printed: its stdout (or stderr), read from its sandbox on its agent.
    Log {
        #[command(flatten)]
        which: Which,
        /// Its standard error instead of its standard output.
        #[arg(long)]
        stderr: bool,
        /// Keep printing what the task writes until it has ended (like `tail -f`).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines (then, with --follow, what comes after).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=sandbox::MAX_TAIL_LINES as u64))]
        tail: Option<u64>,
        #[command(flatten)]
        master: MasterArg,
    },
    /// List a directory of the task's sandbox (its top by default).
    Ls {
        #[command(flatten)]
        which: Which,
        /// A directory inside the sandbox.
        #[arg(default_value = "")]
        path: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        master: MasterArg,
    },
    /// Print a file of the task's sandbox, bytes as they are.
    Cat {
        #[command(flatten)]
        which: Which,
        /// A file inside the sandbox (`stdout`, `stderr`, `out/report.txt`, …).
        path: String,
        #[command(flatten)]
        master: MasterArg,
    },
    /// Kill a live task (through the master, as its framework would).
    Kill {
        #[command(flatten)]
        which: Which,
        #[command(flatten)]
        master: MasterArg,
    },
}

/// Prints the text, or the error in one line (`agora CMD: …`), as the exit status says.
fn finish(command: &str, result: Result<String, CliError>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(text) => {
            // A closed pipe (`| head`) is the reader's choice, not an error.
            if !text.is_empty() {
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("agora {command}: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn client(master: &MasterArg) -> Result<MasterClient, CliError> {
    let tls = master.tls.load().map_err(|e| CliError::Usage(e.to_string()))?;
    MasterClient::with_tls(&master.master, tls.as_ref())
}

pub async fn agents(args: AgentsArgs) -> anyhow::Result<ExitCode> {
    let result = async { listing::agents(&client(&args.master)?, args.json).await }.await;
    finish("agents", result)
}

pub async fn agent_show(agent_id: &str, json: bool, master: &MasterArg) -> anyhow::Result<ExitCode> {
    let result = async { listing::agent_show(&client(master)?, agent_id, json).await }.await;
    finish("agent show", result)
}

pub async fn frameworks(args: FrameworksArgs) -> anyhow::Result<ExitCode> {
    let result = async { listing::frameworks(&client(&args.master)?, args.all, args.json).await }.await;
    finish("frameworks", result)
}

pub async fn framework(args: FrameworkArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        FrameworkCommand::Teardown { framework_id, master } => {
            let result = async { actions::teardown(&client(&master)?, &framework_id).await }.await;
            finish("framework teardown", result)
        }
    }
}

pub async fn tasks(args: TasksArgs) -> anyhow::Result<ExitCode> {
    let filter = TaskFilter {
        states: args.state,
        framework_id: args.framework,
        agent_id: args.agent,
        all: args.all,
        limit: usize::try_from(args.limit).unwrap_or(listing::MAX_TASKS),
    };
    let result = async { listing::tasks(&client(&args.master)?, &filter, args.json).await }.await;
    finish("tasks", result)
}

pub async fn task(args: TaskArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TaskCommand::Show { which, json, master } => {
            let result =
                async { listing::task_show(&client(&master)?, &which.task_id, which.framework.as_deref(), json).await }
                    .await;
            finish("task show", result)
        }
        TaskCommand::Log { which, stderr, follow, tail, master } => {
            let options = LogOptions {
                framework_id: which.framework,
                stderr,
                follow,
                tail: tail.map(|n| usize::try_from(n).unwrap_or(sandbox::MAX_TAIL_LINES)),
            };
            let result = async {
                let client = client(&master)?;
                let mut out = std::io::stdout();
                let mut note = |line: &str| eprintln!("agora task log: {line}");
                sandbox::log(&client, &which.task_id, &options, &mut out, &mut note).await.map(|()| String::new())
            }
            .await;
            finish("task log", result)
        }
        TaskCommand::Ls { which, path, json, master } => {
            let result =
                async { sandbox::ls(&client(&master)?, &which.task_id, &path, which.framework.as_deref(), json).await }
                    .await;
            finish("task ls", result)
        }
        TaskCommand::Cat { which, path, master } => {
            let result = async {
                let mut out = std::io::stdout().lock();
                sandbox::cat(&client(&master)?, &which.task_id, &path, which.framework.as_deref(), &mut out)
                    .await
                    .map(|()| String::new())
            }
            .await;
            finish("task cat", result)
        }
        TaskCommand::Kill { which, master } => {
            let result =
                async { actions::kill_task(&client(&master)?, &which.task_id, which.framework.as_deref()).await }.await;
            finish("task kill", result)
        }
    }
}
