//! Task processes: the sandbox directory, the environment, spawning in a process group of
//! its own under a supervisor that outlives the agent, waiting for the exit, and
//! signalling the whole group.
//!
//! The supervisor: the agent forks a child (through `Command::spawn`, for its working
//! directory, standard streams and process group) whose `pre_exec` hook never returns: it
//! starts the task's command in a process of its own, which shares its memory until it
//! execs (`clone` with `CLONE_VM | CLONE_VFORK`, as `posix_spawn` does; a second `fork`
//! would copy the agent's page tables once more for every launch), and stays behind as the
//! task's supervisor. The command's argv, environment and the files to try for it (the PATH
//! search) are prepared before the fork, since neither child may allocate. A command that
//! cannot be exec'd is reported back through the spawn as the error of the last file
//! tried. The supervisor is the process-group leader (its pid
//! is the task's pid and group id), ignores SIGTERM, SIGINT, SIGHUP and SIGQUIT so that a
//! group kill reaches the command but not itself, waits for the command, records how it
//! ended in `meta/runs/<run>/exit_status` (`exit 3`, `signal 15`; temporary file, fsync,
//! rename), then SIGKILLs what is left of the group (itself included) so no background
//! leftover outlives the task. It runs only async-signal-safe system calls on buffers
//! prepared before the fork (no allocation, no lock), and closes every inherited descriptor
//! above stderr, so it holds neither the agent's sockets nor its work-dir lock. Nothing ties
//! it to the agent (no `PR_SET_PDEATHSIG`, no kill on drop): when the agent dies the
//! supervisor and the task carry on, and the restarted agent reads the file. SIGKILL of the
//! group kills the supervisor before it can write; the agent, when alive, then reports the
//! signal from `wait`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use agora_proto::model::{FrameworkId, TaskInfo};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{Semaphore, mpsc};

use super::cgroups::{self, Cgroups, TaskCgroup};
use super::fetcher::Fetcher;
use super::users::{self, UserPolicy};
use super::{Event, ProcessEvent, checkpoint};
use crate::core::{KillSignal, LimitKind, Limitation, ProcessExit, RunId};

/// Most sandboxes one task id may have under one framework (each reuse of the id gets a
/// fresh one); bounds the search for a free directory name.
const MAX_RUNS_PER_TASK_ID: u32 = 10_000;
/// Most launches under way at once, each on a blocking thread.
const MAX_CONCURRENT_LAUNCHES: usize = 8;
/// Most `PORTn` variables set; `PORTS` still lists these first ports only, which keeps the
/// environment of a task holding a huge range within what `execve` accepts.
const MAX_PORT_VARIABLES: usize = 1_024;

/// What the runtime needs to start one task's process.
#[derive(Clone, Debug)]
pub(crate) struct LaunchSpec {
    pub run: RunId,
    pub framework_id: FrameworkId,
    pub task: TaskInfo,
    /// `<work_dir>/sandboxes`, canonical.
    pub sandboxes: PathBuf,
    pub hostname: String,
    /// `<work_dir>/meta/runs/<run>`, made by the launch: the supervisor writes
    /// `supervisor_pid` and `exit_status` there.
    pub run_dir: PathBuf,
    /// Puts the task's URIs into its sandbox before the command starts.
    pub fetcher: Arc<Fetcher>,
    /// The agent's cgroups, unless it isolates with processes only.
    pub cgroups: Option<Arc<Cgroups>>,
    /// The user the task asked for: its own, else its framework's.
    pub user: Option<String>,
    pub users: Arc<UserPolicy>,
}

/// How often a recovered task's supervisor, which is not the agent's child and so cannot be
/// waited for, is checked when the kernel offers no pidfd.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts the task's process and reports on it until it exits: `Started` or
/// `LaunchFailed`, then `Exited`. Runs as a task of its own so that the owner never waits
/// on the file system or on a process. The launch itself (sandbox, files, fork) blocks, so
/// it runs on a blocking thread, at most [`MAX_CONCURRENT_LAUNCHES`] at once: a burst of
/// hundreds of launches neither stalls the runtime's workers nor grows hundreds of threads,
/// each of which would make every later fork slower.
pub(crate) async fn supervise(spec: LaunchSpec, events: mpsc::Sender<Event>, launches: Arc<Semaphore>) {
    let run = spec.run;
    let task_id = spec.task.task_id.clone();
    let exit_status = spec.run_dir.join("exit_status");
    let report = |event| Event::Process { run, event };
    let mem_mib = spec.task.resources.scalars().mem_mib;
    // The URIs first, outside the launch bound: a slow download holds no launch back.
    let fetched = match fetch(&spec).await {
        Ok(fetched) => fetched,
        Err(error) => {
            tracing::info!(%task_id, %error, "fetching the task's URIs failed");
            let _ = events.send(report(ProcessEvent::LaunchFailed { error })).await;
            return;
        }
    };
    let launched = match launches.acquire_owned().await {
        Ok(permit) => match tokio::task::spawn_blocking(move || {
            let _permit = permit;
            launch(&spec, fetched)
        })
        .await
        {
            Ok(launched) => launched,
            // Blocking tasks are never cancelled; a panic is a bug, and carries on as one.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        },
        Err(_) => Err(io::Error::other("the agent is stopping")),
    };
    let Launched { mut child, pid, start_ticks, sandbox, cgroup } = match launched {
        Ok(launched) => launched,
        Err(error) => {
            tracing::info!(%task_id, %error, "task launch failed");
            let _ = events.send(report(ProcessEvent::LaunchFailed { error: error.to_string() })).await;
            return;
        }
    };
    tracing::info!(%task_id, pid, %sandbox, "task started");
    if start_ticks.is_none() {
        tracing::debug!(pid, "the supervisor ended before its start time was read");
    }
    let cgroup = cgroup.map(Arc::new);
    let started = ProcessEvent::Started { pid, start_ticks, sandbox, cgroup: cgroup.clone() };
    if events.send(report(started)).await.is_err() {
        // The agent is stopping; it kills what is left itself.
        return;
    }
    let waited = child.wait().await;
    // The supervisor's record is how the command itself ended; the supervisor's own status
    // only says so when it was killed before it could write (a SIGKILL of the group).
    let recorded = checkpoint::read_exit_status(&exit_status);
    let exit = match (recorded, waited) {
        (Some(exit), _) => exit,
        (None, Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => ProcessExit::Code(code),
            (None, Some(signal)) => ProcessExit::Signal(signal),
            // Neither an exit code nor a signal: not a state `wait` returns on Unix.
            (None, None) => ProcessExit::Code(-1),
        },
        (None, Err(error)) => {
            // The child can no longer be waited for, so it is treated as dead; the group is
            // killed below to make that true.
            tracing::warn!(%task_id, %error, "cannot wait for the task's process");
            ProcessExit::Signal(Signal::SIGKILL as i32)
        }
    };
    // The task is its process group: anything the command left running in the background
    // dies with it, as a container's processes do when it stops.
    if let Err(error) = signal_group(pid, KillSignal::Kill)
        && error != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid, %error, "cannot kill what is left of the task's process group");
    }
    let limitation = finish(cgroup, mem_mib).await;
    tracing::info!(%task_id, pid, ?exit, ?limitation, "task exited");
    let _ = events.send(report(ProcessEvent::Exited { exit, limitation })).await;
}

/// The memory limitation of a task with `mem_mib` whose cgroup saw an OOM kill, if it did.
pub(crate) fn memory_limitation(cgroup: &TaskCgroup, mem_mib: u64) -> Option<Limitation> {
    (Cgroups::oom_kills(cgroup) > 0).then(|| {
        let limit_mib = (mem_mib.saturating_mul(1024 * 1024).max(cgroups::MIN_MEMORY_BYTES)) >> 20;
        let peak = Cgroups::memory_peak(cgroup).map_or_else(String::new, |peak| format!(", peak {} MiB", peak >> 20));
        Limitation {
            kind: LimitKind::Memory,
            message: format!(
                "Memory limit exceeded: the task's processes reached its {limit_mib} MiB limit{peak} and the kernel \
                 killed them (OOM)"
            ),
        }
    })
}

/// Once a task's process has ended: whether the kernel OOM-killed it; then its cgroup is
/// destroyed (what is left in it killed) on a blocking thread of its own, off the path of
/// the task's last update: a removal may wait for killed processes to be reaped.
async fn finish(cgroup: Option<Arc<TaskCgroup>>, mem_mib: u64) -> Option<Limitation> {
    let cgroup = cgroup?;
    let read = cgroup.clone();
    let limitation = tokio::task::spawn_blocking(move || memory_limitation(&read, mem_mib)).await.ok().flatten();
    tokio::task::spawn_blocking(move || {
        if let Err(error) = cgroups::destroy(&cgroup) {
            tracing::warn!(%error, "cannot remove the task's cgroup; the next start removes it");
        }
    });
    limitation
}

/// The bound on launches under way at once that [`supervise`] takes.
pub(crate) fn launch_limit() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_CONCURRENT_LAUNCHES))
}

/// Sends `signal` to the process group `pid`.
pub(crate) fn signal_group(pid: u32, signal: KillSignal) -> Result<(), nix::errno::Errno> {
    // Group 0 would be the agent's own group and 1 is init's: never a task's.
    let pgid = i32::try_from(pid).ok().filter(|p| *p > 1).ok_or(nix::errno::Errno::EINVAL)?;
    let signal = match signal {
        KillSignal::Term => Signal::SIGTERM,
        KillSignal::Kill => Signal::SIGKILL,
    };
    killpg(Pid::from_raw(pgid), signal)
}

/// A task's process, started.
struct Launched {
    child: tokio::process::Child,
    /// The supervisor's pid: the task's process group.
    pid: u32,
    /// The supervisor's start time in clock ticks, which tells it apart from a later process
    /// given its pid; `None` when it ended before it was read.
    start_ticks: Option<u64>,
    /// The sandbox, relative to the sandboxes root.
    sandbox: String,
    /// The task's cgroup, when the agent isolates with cgroups.
    cgroup: Option<TaskCgroup>,
}

/// A sandbox made, with its URIs fetched into it: the directory and its path relative to the
/// sandboxes root.
type Fetched = (PathBuf, String);

/// Makes the sandbox and fetches the task's URIs into it, when it has any; `None` leaves
/// the sandbox to [`launch`]. The error is the launch's failure.
async fn fetch(spec: &LaunchSpec) -> Result<Option<Fetched>, String> {
    if spec.task.command.uris.is_empty() {
        return Ok(None);
    }
    let (sandboxes, framework_id, task_id) =
        (spec.sandboxes.clone(), spec.framework_id.clone(), spec.task.task_id.as_str().to_owned());
    let (dir, sandbox) = tokio::task::spawn_blocking(move || create_sandbox(&sandboxes, &framework_id, &task_id))
        .await
        .map_err(|e| format!("making the sandbox stopped: {e}"))?
        .map_err(|e| format!("cannot make the sandbox: {e}"))?;
    spec.fetcher.fetch_all(&spec.task.command.uris, &dir).await?;
    Ok(Some((dir, sandbox)))
}

/// Makes the sandbox (unless [`fetch`] did) and starts the task's supervisor in it. Blocks:
/// runs on a blocking thread (within the runtime, which the child's handle registers with).
fn launch(spec: &LaunchSpec, fetched: Option<Fetched>) -> io::Result<Launched> {
    // Not synced: were the machine to crash, the supervisor would die with it and write
    // nothing there, and a directory lost or left over is put right at the next start.
    std::fs::create_dir_all(&spec.run_dir)?;
    let (dir, sandbox) = match fetched {
        Some(fetched) => fetched,
        None => create_sandbox(&spec.sandboxes, &spec.framework_id, spec.task.task_id.as_str())?,
    };
    let user = users::resolve(spec.user.as_deref(), &spec.users, users::lookup)
        .map_err(|message| io::Error::new(io::ErrorKind::PermissionDenied, message))?
        .map(users::with_groups);
    // Appended to: the fetcher's notes come first.
    let stdout = std::fs::File::options().create(true).append(true).open(dir.join("stdout"))?;
    let stderr = std::fs::File::options().create(true).append(true).open(dir.join("stderr"))?;
    if let Some(user) = &user {
        users::give_sandbox(&dir, &user.entry).map_err(|error| {
            io::Error::new(error.kind(), format!("cannot hand the sandbox to user {:?}: {error}", user.entry.name))
        })?;
    }
    let command_info = &spec.task.command;
    let (program, args): (&str, Vec<&str>) = match &command_info.shell {
        Some(shell) => ("/bin/sh", vec!["-c", shell.as_str()]),
        None => {
            let (program, args) = command_info.argv.split_first().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "the command has neither a shell nor an argv")
            })?;
            (program.as_str(), args.iter().map(String::as_str).collect())
        }
    };
    let mut exec =
        TaskExec::new(program, &args, environment(&spec.task, &dir, &spec.hostname, user.as_ref().map(|u| &u.entry)))?;
    exec.creds = user.map(|user| (user.entry.uid, user.entry.gid, user.groups));
    let paths = SupervisorPaths::new(&spec.run_dir)?;
    // The cgroup is made and its limits set before the fork; the task's process joins it
    // before it execs, through these files, open until the spawn has returned.
    let cgroup = match &spec.cgroups {
        Some(cgroups) => Some(cgroups.create(spec.run.0, &spec.task.resources)?),
        None => None,
    };
    let joined = match &cgroup {
        Some(cgroup) => {
            let opened = std::fs::write(spec.run_dir.join("cgroup"), cgroup.to_record())
                .and_then(|()| Cgroups::open_procs(cgroup));
            match opened {
                Ok(files) => files,
                Err(error) => {
                    let _ = cgroups::destroy(cgroup);
                    return Err(error);
                }
            }
        }
        None => Vec::new(),
    };
    exec.join_fds = joined.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    // The supervisor never gets to `Command`'s own exec (see the module documentation): the
    // command is what the supervisor starts from `exec`.
    let mut command = tokio::process::Command::new(program);
    command
        .args(&args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // A group of its own, so that a kill reaches every process the task starts.
        .process_group(0)
        // The agent decides when a task dies, not the drop of a handle.
        .kill_on_drop(false);
    install_supervisor(&mut command, paths, exec);
    let spawned = command.spawn().map_err(|error| match &command_info.shell {
        Some(_) => io::Error::new(error.kind(), format!("cannot run /bin/sh: {error}")),
        None => io::Error::new(error.kind(), format!("cannot run {program:?}: {error}")),
    });
    drop(joined);
    let child = match spawned {
        Ok(child) => child,
        Err(error) => {
            if let Some(cgroup) = &cgroup {
                let _ = cgroups::destroy(cgroup);
            }
            return Err(error);
        }
    };
    let pid = child.id().ok_or_else(|| io::Error::other("the process exited before its id was read"))?;
    let start_ticks = checkpoint::process_start(pid).map(|(start_ticks, _)| start_ticks);
    Ok(Launched { child, pid, start_ticks, sandbox, cgroup })
}

/// Makes the spawned process the task's supervisor (see the module documentation).
#[allow(
    unsafe_code,
    reason = "pre_exec is how a hook runs between fork and exec; it only calls async-signal-safe code"
)]
fn install_supervisor(command: &mut tokio::process::Command, paths: SupervisorPaths, mut exec: TaskExec) {
    // SAFETY: the hook runs in the forked child before exec and only makes async-signal-safe
    // system calls on memory prepared before the fork (see `become_supervisor`).
    unsafe {
        command.pre_exec(move || become_supervisor(&paths, &mut exec));
    }
}

/// Size of the stack the command's process runs on until it execs.
const EXEC_STACK_BYTES: usize = 64 * 1024;

/// Everything the command's process needs to exec, built before the fork: C strings, the
/// null-terminated pointer arrays `execve` takes, and a stack to run on.
struct TaskExec {
    /// The files to try in turn: the program itself when it names a path, else the program
    /// in each directory of the task's `PATH` (or `/bin:/usr/bin` when it has none), as
    /// `execvp` searches.
    candidates: Vec<CString>,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    /// Pointers into `_argv` and `_envp`, each array ending with a null pointer.
    argv: Vec<*const nix::libc::c_char>,
    envp: Vec<*const nix::libc::c_char>,
    stack: Vec<u8>,
    /// `cgroup.procs` files the command's process writes itself into before it execs.
    join_fds: Vec<nix::libc::c_int>,
    /// The user, group and supplementary groups the command's process switches to before
    /// it execs; `None` keeps the agent's.
    creds: Option<(u32, u32, Vec<u32>)>,
    /// Set by the command's process when no candidate could be exec'd: the error of the
    /// last one that was not a plain "not found".
    error: std::sync::atomic::AtomicI32,
}

// SAFETY: the raw pointers point into the `CString`s the same value owns, which are never
// changed or dropped before it; the value moves to the `pre_exec` hook and is used only by
// the forked child.
#[allow(unsafe_code, reason = "the pointer arrays point into strings the value owns")]
unsafe impl Send for TaskExec {}
// SAFETY: as above; nothing reads the pointers outside the forked child.
#[allow(unsafe_code, reason = "the pointer arrays point into strings the value owns")]
unsafe impl Sync for TaskExec {}

impl TaskExec {
    /// The exec of `program` with `args` in the environment `env` alone (a later variable
    /// wins over an earlier one of the same name); nothing of the agent's.
    fn new(program: &str, args: &[&str], env: Vec<(String, String)>) -> io::Result<Self> {
        let nul = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} holds a NUL byte"));
        let vars: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> =
            env.into_iter().map(|(key, value)| (key.into(), value.into())).collect();
        let envp = vars
            .iter()
            .map(|(key, value)| {
                let mut line = key.as_bytes().to_vec();
                line.push(b'=');
                line.extend_from_slice(value.as_bytes());
                CString::new(line).map_err(|_| nul(&format!("the environment variable {}", key.to_string_lossy())))
            })
            .collect::<io::Result<Vec<CString>>>()?;
        let argv = std::iter::once(program)
            .chain(args.iter().copied())
            .map(|arg| CString::new(arg).map_err(|_| nul("an argument")))
            .collect::<io::Result<Vec<CString>>>()?;
        let candidates = if program.is_empty() {
            Vec::new()
        } else if program.contains('/') {
            vec![CString::new(program).map_err(|_| nul("the program"))?]
        } else {
            let path = vars.get(std::ffi::OsStr::new("PATH")).map(|path| path.as_bytes()).unwrap_or(b"/bin:/usr/bin");
            path.split(|byte| *byte == b':')
                .map(|dir| {
                    // An empty entry is the working directory, the sandbox.
                    let dir = if dir.is_empty() { b".".as_slice() } else { dir };
                    let mut file = dir.to_vec();
                    file.push(b'/');
                    file.extend_from_slice(program.as_bytes());
                    CString::new(file).map_err(|_| nul("PATH"))
                })
                .collect::<io::Result<Vec<CString>>>()?
        };
        let pointers = |strings: &[CString]| {
            strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>()
        };
        Ok(Self {
            argv: pointers(&argv),
            envp: pointers(&envp),
            candidates,
            _argv: argv,
            _envp: envp,
            // Never read before written: only its spare capacity is used, without the cost of
            // zeroing it on every launch.
            stack: Vec::with_capacity(EXEC_STACK_BYTES),
            join_fds: Vec::new(),
            creds: None,
            error: std::sync::atomic::AtomicI32::new(0),
        })
    }
}

/// The command's process, run by `clone` on the supervisor's memory until it execs: tries
/// each candidate in turn, as `execvp` does, and exits 127 when none runs, leaving the
/// error for the supervisor. Only `execve` and `_exit`: it shares the supervisor's memory.
#[allow(unsafe_code, reason = "execve and _exit on the pointers prepared before the fork")]
extern "C" fn exec_task(arg: *mut nix::libc::c_void) -> nix::libc::c_int {
    use nix::libc;
    // SAFETY: `arg` is the `TaskExec` the supervisor passed to `clone`, alive and unchanged
    // while this process shares its memory; execve and _exit are async-signal-safe.
    unsafe {
        let exec = &*(arg as *const TaskExec);
        // Into the task's cgroup first ("0" is the writer itself), so that the command runs
        // under its limits from its first instruction; a task that cannot be put there does
        // not run.
        for fd in &exec.join_fds {
            if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                exec.error.store(*libc::__errno_location(), std::sync::atomic::Ordering::SeqCst);
                libc::_exit(127);
            }
        }
        // Then the task's user: groups first, while still allowed to set them, the user last.
        // Raw system calls: glibc's wrappers would try to change every thread of the
        // process, and this one shares the supervisor's memory but is no thread of it.
        if let Some((uid, gid, groups)) = &exec.creds {
            let switched = libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) == 0
                && libc::syscall(libc::SYS_setresgid, *gid, *gid, *gid) == 0
                && libc::syscall(libc::SYS_setresuid, *uid, *uid, *uid) == 0;
            if !switched {
                exec.error.store(*libc::__errno_location(), std::sync::atomic::Ordering::SeqCst);
                libc::_exit(127);
            }
        }
        let mut error = libc::ENOENT;
        for candidate in &exec.candidates {
            libc::execve(candidate.as_ptr(), exec.argv.as_ptr(), exec.envp.as_ptr());
            let failed = *libc::__errno_location();
            match failed {
                // Not here: the search goes on, and "not found" is the answer only if
                // nothing better comes up.
                libc::ENOENT | libc::ENOTDIR => {}
                // Found but not runnable: remembered, and the search goes on, as in execvp.
                libc::EACCES => error = failed,
                _ => {
                    error = failed;
                    break;
                }
            }
        }
        exec.error.store(error, std::sync::atomic::Ordering::SeqCst);
        libc::_exit(127)
    }
}

/// The supervisor's file names as C strings, built before the fork since the forked child
/// may not allocate.
struct SupervisorPaths {
    dir: CString,
    /// Where the supervisor writes its own pid first thing, so that an agent that dies
    /// between spawning it and recording its pid still finds it.
    own_pid: CString,
    temp: CString,
    exit_status: CString,
}

impl SupervisorPaths {
    fn new(run_dir: &Path) -> io::Result<Self> {
        if !run_dir.is_absolute() {
            // The supervisor runs in the task's sandbox, where a relative path names nothing.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the run directory {} is not an absolute path", run_dir.display()),
            ));
        }
        let c = |path: PathBuf| CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other);
        Ok(Self {
            dir: c(run_dir.to_path_buf())?,
            own_pid: c(run_dir.join("supervisor_pid"))?,
            temp: c(run_dir.join(".exit_status.tmp"))?,
            exit_status: c(run_dir.join("exit_status"))?,
        })
    }
}

/// Runs in the child the agent forked, before exec (see the module documentation): starts
/// the task's command and turns this process into its supervisor, which never returns; or
/// returns the error that kept the command from running, which the agent's spawn reports.
#[allow(unsafe_code, reason = "clone, waitpid and _exit have no safe wrapper usable between fork and exec")]
fn become_supervisor(paths: &SupervisorPaths, exec: &mut TaskExec) -> io::Result<()> {
    use nix::libc;
    // SAFETY: clone (as posix_spawn uses it), signal, close, waitpid, open, write, fsync,
    // rename, kill and _exit are async-signal-safe; nothing here allocates or takes a lock.
    unsafe {
        let mut line = [0u8; 32];
        let len = format_status(&mut line, b"", libc::getpid());
        let fd =
            libc::open(paths.own_pid.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC, 0o644);
        if fd >= 0 {
            libc::write(fd, line.as_ptr().cast(), len);
            libc::close(fd);
        }
        // The stack grows down from the end of its capacity, kept 16-byte aligned as the ABI
        // wants.
        let top = exec.stack.as_mut_ptr().add(exec.stack.capacity());
        let top = top.sub(top as usize % 16);
        // CLONE_VFORK: this process waits until the command has exec'd (or given up), so the
        // memory they share is never used by both at once.
        let task = libc::clone(
            exec_task,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (exec as *mut TaskExec).cast(),
        );
        if task < 0 {
            return Err(io::Error::last_os_error());
        }
        let error = exec.error.load(std::sync::atomic::Ordering::SeqCst);
        if error != 0 {
            let mut status = 0;
            libc::waitpid(task, &mut status, 0);
            return Err(io::Error::from_raw_os_error(error));
        }
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
            libc::signal(signal, libc::SIG_IGN);
        }
        // The agent's SIGCHLD handler would interrupt the wait below for nothing.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        // Every inherited descriptor above stderr goes: std's exec-error pipe (whose open end
        // would make the agent's spawn wait for the whole task), the agent's sockets and its
        // work-dir lock.
        // One `close_range` (Linux 5.9) does it; older kernels get a bounded loop.
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            let max_fd = libc::sysconf(libc::_SC_OPEN_MAX).clamp(1_024, 65_536) as i32;
            for fd in 3..max_fd {
                libc::close(fd);
            }
        }
        let mut status: libc::c_int = 0;
        let waited = loop {
            let pid = libc::waitpid(task, &mut status, 0);
            if pid == task {
                break true;
            }
            if pid < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break false;
        };
        if waited {
            let mut line = [0u8; 32];
            let len = if libc::WIFSIGNALED(status) {
                format_status(&mut line, b"signal ", libc::WTERMSIG(status))
            } else {
                format_status(&mut line, b"exit ", libc::WEXITSTATUS(status))
            };
            let fd = libc::open(
                paths.temp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                let written = libc::write(fd, line.as_ptr().cast(), len);
                let synced = libc::fsync(fd);
                libc::close(fd);
                if written == len as isize
                    && synced == 0
                    && libc::rename(paths.temp.as_ptr(), paths.exit_status.as_ptr()) == 0
                {
                    let dir = libc::open(paths.dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
                    if dir >= 0 {
                        libc::fsync(dir);
                        libc::close(dir);
                    }
                }
            }
        }
        // Whatever the command left running in its group dies with it, as a container's
        // processes do when it stops; this supervisor is in the group and ends here too.
        libc::kill(0, libc::SIGKILL);
        libc::_exit(if waited { 0 } else { 1 });
    }
}

/// Writes `prefix` and `number` in decimal, then a newline, into `buffer`; returns the length.
/// No allocation: it runs between fork and exec.
fn format_status(buffer: &mut [u8; 32], prefix: &[u8], number: i32) -> usize {
    let mut len = 0;
    for &byte in prefix {
        buffer[len] = byte;
        len += 1;
    }
    let mut value = i64::from(number);
    if value < 0 {
        buffer[len] = b'-';
        len += 1;
        value = -value;
    }
    let mut digits = [0u8; 20];
    let mut count = 0;
    loop {
        digits[count] = b'0' + (value % 10) as u8;
        count += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for i in (0..count).rev() {
        buffer[len] = digits[i];
        len += 1;
    }
    buffer[len] = b'\n';
    len + 1
}

/// Watches a recovered task's supervisor, which is not the agent's child and so cannot be
/// waited for: waits until the process with this pid and start time is gone, then reports
/// how the task ended, from the supervisor's record, or that nothing recorded it.
pub(crate) async fn watch(
    run: RunId,
    pid: u32,
    start_ticks: u64,
    exit_status: PathBuf,
    events: mpsc::Sender<Event>,
    cgroup: Option<(Arc<TaskCgroup>, u64)>,
) {
    wait_gone(pid, start_ticks).await;
    let limitation = match cgroup {
        Some((cgroup, mem_mib)) => finish(Some(cgroup), mem_mib).await,
        None => None,
    };
    let event = match checkpoint::read_exit_status(&exit_status) {
        Some(exit) => ProcessEvent::Exited { exit, limitation },
        None => ProcessEvent::Gone,
    };
    tracing::info!(?run, pid, ?event, "recovered task ended");
    let _ = events.send(Event::Process { run, event }).await;
}

/// Returns once process `pid`, started at `start_ticks`, has ended. A pidfd (Linux 5.3)
/// turns readable when the process exits, so thousands of recovered tasks cost nothing
/// while they run; without one, the process is polled.
async fn wait_gone(pid: u32, start_ticks: u64) {
    let same = || matches!(checkpoint::process_start(pid), Some((start, false)) if start == start_ticks);
    if let Some(fd) = pidfd_open(pid) {
        // Opened first, checked second: the descriptor names the process it was opened on,
        // so once the start time matches, a later process given the same pid cannot fool it.
        if !same() {
            return;
        }
        let _ = fd.readable().await;
        return;
    }
    while same() {
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

/// A pidfd for process `pid`, registered with tokio, when the kernel offers them.
#[allow(unsafe_code, reason = "pidfd_open has no wrapper in nix 0.30; owning and registering the descriptor is unsafe")]
fn pidfd_open(pid: u32) -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd;
    let pid = nix::libc::pid_t::try_from(pid).ok()?;
    // SAFETY: the system call takes no pointers.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0u32) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: a non-negative result is a new descriptor (close-on-exec) that nothing else
    // owns; the `AsyncFd` owns it from here and closes it only when dropped.
    unsafe {
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE).ok()
    }
}

/// Creates the task's sandbox, `<framework_id>/<task_id>` under `root`, and returns its path
/// and its name relative to `root`. A task id the framework used before on this agent gets
/// `<task_id>.run-2`, `.run-3`, …: the first name not taken. `create_dir` fails on an
/// existing directory, so two runs never share a sandbox even if a task is named like
/// another's second run.
fn create_sandbox(root: &Path, framework_id: &FrameworkId, task_id: &str) -> io::Result<(PathBuf, String)> {
    let framework_dir = root.join(framework_id.as_str());
    std::fs::create_dir_all(&framework_dir)?;
    // Passable, not listable: a task reaches its own sandbox and learns no other's name.
    std::fs::set_permissions(&framework_dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
    for n in 1..=MAX_RUNS_PER_TASK_ID {
        let name = if n == 1 { task_id.to_owned() } else { format!("{task_id}.run-{n}") };
        let dir = framework_dir.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((dir, format!("{framework_id}/{name}"))),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::other(format!("task {task_id} already has {MAX_RUNS_PER_TASK_ID} sandboxes")))
}

/// The task's environment: `PATH` and its user's `HOME`, `USER`, `LOGNAME` (see
/// [`users::base_environment`]), the sandbox, task and port variables, then the task's own,
/// which win, since the framework knows best what its command needs. Nothing else of the
/// agent's environment: it may hold the agent's credentials.
pub(crate) fn environment(
    task: &TaskInfo,
    sandbox: &Path,
    hostname: &str,
    user: Option<&users::Entry>,
) -> Vec<(String, String)> {
    let sandbox = sandbox.display().to_string();
    let mut env = users::base_environment(user);
    env.extend([
        ("MESOS_SANDBOX".to_owned(), sandbox.clone()),
        ("AGORA_SANDBOX".to_owned(), sandbox),
        ("MESOS_TASK_ID".to_owned(), task.task_id.to_string()),
        ("AGORA_TASK_ID".to_owned(), task.task_id.to_string()),
        ("HOST".to_owned(), hostname.to_owned()),
    ]);
    let ports: Vec<String> = task.resources.ports().iter().take(MAX_PORT_VARIABLES).map(|p| p.to_string()).collect();
    if let Some(first) = ports.first() {
        env.push(("PORT".to_owned(), first.clone()));
    }
    for (i, port) in ports.iter().enumerate() {
        env.push((format!("PORT{i}"), port.clone()));
    }
    if !ports.is_empty() {
        env.push(("PORTS".to_owned(), ports.join(",")));
    }
    env.extend(task.command.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::model::{AgentId, CommandInfo, Resources, TaskId};

    #[test]
    fn ports_become_numbered_variables_lowest_first_and_the_task_environment_wins() {
        let task = TaskInfo {
            task_id: TaskId::new("web"),
            name: "web".into(),
            agent_id: AgentId::new("a"),
            resources: Resources::parse("ports:[31005-31006,31001-31001]").expect("valid"),
            command: CommandInfo {
                shell: Some("true".into()),
                argv: vec![],
                environment: [("HOST".to_owned(), "mine".to_owned())].into_iter().collect(),
                uris: Vec::new(),
                user: None,
            },
            labels: vec![],
            kill_grace_period_ms: None,
            health_check: None,
            readiness_check: None,
        };
        let env = environment(&task, Path::new("/s"), "h", None);
        let get = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("PORT"), Some("31001"));
        assert_eq!(get("PORT0"), Some("31001"));
        assert_eq!(get("PORT2"), Some("31006"));
        assert_eq!(get("PORTS"), Some("31001,31005,31006"));
        assert_eq!(get("MESOS_SANDBOX"), Some("/s"));
        assert_eq!(get("AGORA_TASK_ID"), Some("web"));
        assert_eq!(get("HOST"), Some("mine"));
    }

    #[tokio::test]
    async fn waiting_for_a_process_that_is_not_a_child_returns_once_it_has_exited() {
        // A grandchild, as a recovered supervisor is: `sh` prints the pid of a background
        // `sleep` and exits.
        let output = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 0.3 >/dev/null 2>&1 & echo $!"])
            .output()
            .expect("sh runs");
        let pid: u32 = String::from_utf8_lossy(&output.stdout).trim().parse().expect("a pid");
        let (start, _) = checkpoint::process_start(pid).expect("the sleep runs");
        tokio::time::timeout(std::time::Duration::from_secs(10), wait_gone(pid, start)).await.expect("in time");
        assert!(checkpoint::process_start(pid).is_none_or(|(now, zombie)| zombie || now != start));
    }

    #[tokio::test]
    async fn waiting_for_a_pid_with_another_start_time_returns_at_once() {
        let (start, _) = checkpoint::process_start(std::process::id()).expect("this process");
        tokio::time::timeout(std::time::Duration::from_secs(10), wait_gone(std::process::id(), start + 1))
            .await
            .expect("at once");
    }

    #[test]
    fn signalling_group_zero_or_one_is_refused() {
        assert_eq!(signal_group(0, KillSignal::Kill), Err(nix::errno::Errno::EINVAL));
        assert_eq!(signal_group(1, KillSignal::Kill), Err(nix::errno::Errno::EINVAL));
    }

    #[test]
    fn the_supervisor_paths_must_be_absolute() {
        let error = SupervisorPaths::new(Path::new("work/meta/runs/1")).err().expect("a relative run dir is refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("work/meta/runs/1"), "{error}");
        let paths = SupervisorPaths::new(Path::new("/w/meta/runs/1")).expect("an absolute run dir");
        assert_eq!(paths.exit_status.to_str(), Ok("/w/meta/runs/1/exit_status"));
    }
}
