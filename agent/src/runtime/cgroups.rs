//! Per-task cgroups: each task's processes run in a cgroup of their own, with a CPU share
//! (and a hard CFS quota when asked), a memory limit, a pids limit; the kernel enforces them
//! whether or not the agent runs, and the cgroup's counters give the task's usage.
//!
//! Both cgroup versions are supported and detected at start: v1 (one hierarchy per
//! controller, `cpu`, `cpuacct`, `memory`, `pids`, as on this kind of host) and v2 (one
//! unified hierarchy). The split is the usual one: the pure part ([`limits`], [`writes`],
//! [`detect`], the parsers) decides which file gets which value and reads the kernel's
//! answers, and is tested directly; [`Cgroups`] only creates directories, writes and reads
//! files, and kills what is left.
//!
//! Layout: `<hierarchy>/<agent's own cgroup>/agora/<key>/run-<n>-<random>` on v1 (nested under the
//! agent's own cgroup, so a limit put on the agent holds for its tasks too), and
//! `<unified root>/agora/<key>/run-<n>-<random>` on v2 (where a cgroup holding processes may not
//! have children with controllers, and the agent's own cgroup does hold the agent). `<key>`
//! is a digest of the agent's work dir, so several agents on one host (`agora local`) never
//! share a cgroup, and a restarted agent on the same work dir finds its tasks' again. Each
//! task's cgroup paths are also written to `meta/runs/<run>/cgroup`, read back at recovery.
//!
//! How a task joins its cgroup: the agent opens the `cgroup.procs` files before it forks
//! the supervisor, and the task's process (the `clone` child of the supervisor) writes `0`
//! to each before it execs, so the command's first instruction already runs under its
//! limits while the supervisor stays outside (an OOM kill never takes the supervisor, and
//! the task's numbers are the task's alone).

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use agora_proto::model::Resources;

/// The name every agent's cgroups live under.
const ROOT_NAME: &str = "agora";
/// Mesos' numbers: 1024 shares per CPU, never below 2 (the kernel's minimum).
const CPU_SHARES_PER_CPU: u64 = 1024;
const MIN_CPU_SHARES: u64 = 2;
/// The CFS period; the quota is the task's CPUs times this, never below 1 ms.
const CFS_PERIOD_US: u64 = 100_000;
const MIN_CFS_QUOTA_US: u64 = 1_000;
/// A task asking for less memory than this still gets this much: below it the command's
/// own binaries and libraries do not fit (Mesos' minimum, too).
pub(crate) const MIN_MEMORY_BYTES: u64 = 32 * 1024 * 1024;
/// The default `--cgroups-max-pids`: far above what a service needs (threads count), low
/// enough that a fork bomb stays a nuisance to its own task.
pub(crate) const DEFAULT_MAX_PIDS: u64 = 4_096;
/// How many times a cgroup's leftover processes are killed and its removal tried before it
/// is left for the next start to remove.
const DESTROY_ATTEMPTS: u32 = 100;
const DESTROY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
/// Largest cgroup file read (a `memory.stat` is a few KiB).
const MAX_READ_BYTES: u64 = 64 * 1024;

/// How the agent isolates its tasks (`--isolation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// cgroups where the agent can write them, else processes only (with a warning).
    #[default]
    Auto,
    /// cgroups, or the agent refuses to start.
    Cgroups,
    /// Processes only: no limits, usage from `/proc` (for unprivileged agents).
    Posix,
}

impl std::str::FromStr for Isolation {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "auto" => Ok(Isolation::Auto),
            "cgroups" | "cgroups/cpu,cgroups/mem" => Ok(Isolation::Cgroups),
            "posix" | "posix/cpu,posix/mem" => Ok(Isolation::Posix),
            other => Err(format!("expected cgroups, posix or auto, got {other:?}")),
        }
    }
}

/// What the operator asked of the cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupsConfig {
    /// A hard CPU quota (CFS bandwidth) of the task's CPUs, not only a share.
    pub enable_cfs: bool,
    /// Memory plus swap limited to the memory limit (no swap beyond it).
    pub limit_swap: bool,
    /// Most processes and threads in one task.
    pub max_pids: u64,
}

impl Default for CgroupsConfig {
    fn default() -> Self {
        Self { enable_cfs: false, limit_swap: false, max_pids: DEFAULT_MAX_PIDS }
    }
}

/// The cgroup version in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// The controllers a task's cgroup uses. On v2 they share one directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Controller {
    Cpu,
    Cpuacct,
    Memory,
    Pids,
}

impl Controller {
    const ALL: [Controller; 4] = [Controller::Cpu, Controller::Cpuacct, Controller::Memory, Controller::Pids];

    fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }
}

/// One task's limits, from its resources and the operator's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub cpus_milli: u64,
    pub cfs: bool,
    pub mem_bytes: u64,
    pub limit_swap: bool,
    pub pids_max: u64,
}

/// The limits of a task holding `resources`.
pub(crate) fn limits(resources: &Resources, config: &CgroupsConfig) -> Limits {
    let scalars = resources.scalars();
    Limits {
        cpus_milli: scalars.cpus_milli,
        cfs: config.enable_cfs,
        mem_bytes: scalars.mem_mib.saturating_mul(1024 * 1024).max(MIN_MEMORY_BYTES),
        limit_swap: config.limit_swap,
        pids_max: config.max_pids.max(1),
    }
}

/// One value to write into a task's cgroup, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileWrite {
    pub controller: Controller,
    pub file: &'static str,
    pub value: String,
}

/// What to write, in order, to put `limits` on a fresh cgroup of `version`.
pub(crate) fn writes(version: Version, limits: &Limits) -> Vec<FileWrite> {
    let write = |controller, file, value: String| FileWrite { controller, file, value };
    let shares = (limits.cpus_milli.saturating_mul(CPU_SHARES_PER_CPU) / 1000).max(MIN_CPU_SHARES);
    let quota_us = (limits.cpus_milli.saturating_mul(CFS_PERIOD_US) / 1000).max(MIN_CFS_QUOTA_US);
    let mut out = Vec::new();
    match version {
        Version::V1 => {
            out.push(write(Controller::Cpu, "cpu.shares", shares.to_string()));
            if limits.cfs {
                out.push(write(Controller::Cpu, "cpu.cfs_period_us", CFS_PERIOD_US.to_string()));
                out.push(write(Controller::Cpu, "cpu.cfs_quota_us", quota_us.to_string()));
            }
            // The memory limit first: memory+swap may never be set below it.
            out.push(write(Controller::Memory, "memory.limit_in_bytes", limits.mem_bytes.to_string()));
            if limits.limit_swap {
                out.push(write(Controller::Memory, "memory.memsw.limit_in_bytes", limits.mem_bytes.to_string()));
            }
            out.push(write(Controller::Pids, "pids.max", limits.pids_max.to_string()));
        }
        Version::V2 => {
            // v1 shares mapped onto v2's weight range (1..=10000), as systemd and the
            // Kubernetes runtimes map them: 1024 shares (one CPU) become weight 39.
            let weight = 1 + (shares.clamp(2, 262_144) - 2) * 9_999 / 262_142;
            out.push(write(Controller::Cpu, "cpu.weight", weight.to_string()));
            if limits.cfs {
                out.push(write(Controller::Cpu, "cpu.max", format!("{quota_us} {CFS_PERIOD_US}")));
            }
            out.push(write(Controller::Memory, "memory.max", limits.mem_bytes.to_string()));
            if limits.limit_swap {
                out.push(write(Controller::Memory, "memory.swap.max", "0".to_owned()));
            }
            out.push(write(Controller::Pids, "pids.max", limits.pids_max.to_string()));
        }
    }
    out
}

/// Where the agent's task cgroups go: the directory under which `run-<n>` is made, per
/// controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One base directory per controller (two may be the same when co-mounted).
    V1 { cpu: PathBuf, cpuacct: PathBuf, memory: PathBuf, pids: PathBuf },
    /// The unified hierarchy's mount point, and the base under it.
    V2 { mount: PathBuf, base: PathBuf },
}

/// Finds the cgroup hierarchies from `/proc/self/mounts` and this process' own cgroups from
/// `/proc/self/cgroup`: v1 when every controller the agent uses has a v1 hierarchy, else v2
/// when there is a unified hierarchy (its controllers are checked when it is prepared).
/// `key` names this agent's subtree.
pub(crate) fn detect(mounts: &str, self_cgroup: &str, key: &str) -> Result<Layout, String> {
    let mut v1 = std::collections::BTreeMap::new();
    let mut v2 = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, mount, kind, options, ..] = fields.as_slice() else {
            continue;
        };
        match *kind {
            "cgroup" => {
                for option in options.split(',') {
                    if let Some(controller) = Controller::ALL.iter().find(|c| c.name() == option) {
                        v1.entry(*controller).or_insert_with(|| PathBuf::from(unescape_mount(mount)));
                    }
                }
            }
            "cgroup2" if v2.is_none() => v2 = Some(PathBuf::from(unescape_mount(mount))),
            _ => {}
        }
    }
    let subtree = format!("{ROOT_NAME}/{key}");
    if Controller::ALL.iter().all(|c| v1.contains_key(c)) {
        let own = |controller: Controller| own_cgroup(self_cgroup, controller.name()).unwrap_or_default();
        let base = |controller: Controller| -> PathBuf {
            let mut dir = v1[&controller].clone();
            let own = own(controller);
            let own = own.trim_start_matches('/');
            if !own.is_empty() {
                dir.push(own);
            }
            dir.join(&subtree)
        };
        return Ok(Layout::V1 {
            cpu: base(Controller::Cpu),
            cpuacct: base(Controller::Cpuacct),
            memory: base(Controller::Memory),
            pids: base(Controller::Pids),
        });
    }
    match v2 {
        Some(mount) => Ok(Layout::V2 { base: mount.join(&subtree), mount }),
        None => {
            let missing: Vec<&str> = Controller::ALL.iter().filter(|c| !v1.contains_key(c)).map(|c| c.name()).collect();
            Err(format!("no cgroup2 hierarchy, and no cgroup v1 hierarchy for {}", missing.join(", ")))
        }
    }
}

/// `/proc/mounts` writes spaces and a few other bytes in octal (`\040`).
fn unescape_mount(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(value) = u8::from_str_radix(&path[i + 1..i + 4], 8)
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process' cgroup in the v1 hierarchy holding `controller`, from `/proc/self/cgroup`
/// (`4:memory:/some/path`, `1:cpu,cpuacct:/`).
fn own_cgroup(self_cgroup: &str, controller: &str) -> Option<String> {
    self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == controller).then(|| path.to_owned())
    })
}

/// The value of `key` in a flat keyed file (`memory.stat`, `cpuacct.stat`,
/// `memory.events`, `memory.oom_control`: `name value` per line).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// One task's cgroup: a directory per controller (the same one for every controller on v2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskCgroup {
    pub version: Version,
    pub cpu: PathBuf,
    pub cpuacct: PathBuf,
    pub memory: PathBuf,
    pub pids: PathBuf,
}

impl TaskCgroup {
    fn dir(&self, controller: Controller) -> &Path {
        match controller {
            Controller::Cpu => &self.cpu,
            Controller::Cpuacct => &self.cpuacct,
            Controller::Memory => &self.memory,
            Controller::Pids => &self.pids,
        }
    }

    /// Each distinct directory once.
    fn dirs(&self) -> Vec<&Path> {
        let set: BTreeSet<&Path> = Controller::ALL.iter().map(|c| self.dir(*c)).collect();
        set.into_iter().collect()
    }

    /// The record kept in `meta/runs/<run>/cgroup`: the version, then `controller path` lines.
    pub fn to_record(&self) -> String {
        let version = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        let mut text = format!("version {version}\n");
        for controller in Controller::ALL {
            text.push_str(&format!("{} {}\n", controller.name(), self.dir(controller).display()));
        }
        text
    }

    /// Reads [`to_record`](Self::to_record) back; `None` when damaged or when a path is not
    /// absolute or leaves through `..` (nothing outside a cgroup hierarchy may be removed).
    pub fn from_record(text: &str) -> Option<Self> {
        let mut version = None;
        let mut dirs = std::collections::BTreeMap::new();
        for line in text.lines() {
            let (name, value) = line.split_once(' ')?;
            if name == "version" {
                version = Some(match value {
                    "v1" => Version::V1,
                    "v2" => Version::V2,
                    _ => return None,
                });
                continue;
            }
            let controller = Controller::ALL.into_iter().find(|c| c.name() == name)?;
            let path = PathBuf::from(value);
            // Only a task cgroup of an agent: `.../agora/<key>/run-<n>`, with no way out.
            let names: Vec<&std::ffi::OsStr> = path.iter().collect();
            let safe = path.is_absolute()
                && !path.components().any(|c| matches!(c, std::path::Component::ParentDir))
                && names.len() >= 4
                && names[names.len() - 3] == ROOT_NAME
                && names[names.len() - 1].to_str().and_then(run_of).is_some();
            if !safe {
                return None;
            }
            dirs.insert(controller, path);
        }
        Some(Self {
            version: version?,
            cpu: dirs.remove(&Controller::Cpu)?,
            cpuacct: dirs.remove(&Controller::Cpuacct)?,
            memory: dirs.remove(&Controller::Memory)?,
            pids: dirs.remove(&Controller::Pids)?,
        })
    }
}

/// A task's usage, as read from its cgroup or from `/proc`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Usage {
    pub cpus_user_time_secs: f64,
    pub cpus_system_time_secs: f64,
    /// Periods in which the CFS quota throttled the task, and how long it was held.
    pub cpus_nr_throttled: Option<u64>,
    pub cpus_throttled_time_secs: Option<f64>,
    pub mem_rss_bytes: u64,
    pub mem_cache_bytes: Option<u64>,
    pub mem_limit_bytes: Option<u64>,
    pub processes: u64,
}

/// The agent's cgroups, once prepared: creates, reads and destroys task cgroups.
#[derive(Debug)]
pub(crate) struct Cgroups {
    layout: Layout,
    config: CgroupsConfig,
}

impl Cgroups {
    /// Finds the hierarchies and makes this agent's base directories (enabling the
    /// controllers on the way down on v2); fails when the agent cannot write them.
    pub fn prepare(key: &str, config: CgroupsConfig) -> Result<Self, String> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| format!("/proc/self/mounts: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let layout = detect(&mounts, &own, key)?;
        match &layout {
            Layout::V1 { cpu, cpuacct, memory, pids } => {
                for dir in [cpu, cpuacct, memory, pids] {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
            }
            Layout::V2 { mount, base } => {
                let available = read_small(&mount.join("cgroup.controllers")).unwrap_or_default();
                let missing: Vec<&str> = ["cpu", "memory", "pids"]
                    .into_iter()
                    .filter(|c| !available.split_whitespace().any(|a| a == *c))
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "the cgroup2 hierarchy at {} lacks the {} controller(s)",
                        mount.display(),
                        missing.join(", ")
                    ));
                }
                // Each level from the mount down to the base passes the controllers on.
                let mut dir = mount.clone();
                let relative = base.strip_prefix(mount).map_err(|e| e.to_string())?.to_path_buf();
                for part in std::iter::once(None).chain(relative.components().map(Some)) {
                    if let Some(part) = part {
                        dir.push(part);
                        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    }
                    write_file(&dir.join("cgroup.subtree_control"), "+cpu +memory +pids")
                        .map_err(|e| format!("{}: enabling cpu, memory and pids: {e}", dir.display()))?;
                }
            }
        }
        Ok(Self { layout, config })
    }

    /// `cgroups v1` or `cgroups v2`, for the start-up log and `/metrics`.
    pub fn describe(&self) -> &'static str {
        match self.layout {
            Layout::V1 { .. } => "cgroups v1",
            Layout::V2 { .. } => "cgroups v2",
        }
    }

    /// The cgroup run `name` gets (not created).
    fn task_cgroup(&self, name: &str) -> TaskCgroup {
        match &self.layout {
            Layout::V1 { cpu, cpuacct, memory, pids } => TaskCgroup {
                version: Version::V1,
                cpu: cpu.join(name),
                cpuacct: cpuacct.join(name),
                memory: memory.join(name),
                pids: pids.join(name),
            },
            Layout::V2 { base, .. } => {
                let dir = base.join(name);
                TaskCgroup {
                    version: Version::V2,
                    cpu: dir.clone(),
                    cpuacct: dir.clone(),
                    memory: dir.clone(),
                    pids: dir,
                }
            }
        }
    }

    /// Makes a fresh cgroup for a task with `resources` and puts its limits on it. Its name,
    /// `run-<n>-<random>`, is new: a cgroup a crash left under the same run number (being
    /// removed meanwhile at start) is never taken for it.
    pub fn create(&self, run: u64, resources: &Resources) -> io::Result<TaskCgroup> {
        let cgroup = self.task_cgroup(&format!("run-{run}-{:08x}", rand::random::<u32>()));
        for dir in cgroup.dirs() {
            std::fs::create_dir(dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        let limits = limits(resources, &self.config);
        for write in writes(cgroup.version, &limits) {
            let path = cgroup.dir(write.controller).join(write.file);
            let written = write_file(&path, &write.value);
            match written {
                Ok(()) => {}
                // Swap accounting is off on many kernels: the swap rule is then moot.
                Err(error) if write.file.contains("sw") || write.file.contains("swap") => {
                    tracing::debug!(path = %path.display(), %error, "no swap limit on this host");
                }
                Err(error) => {
                    let _ = destroy(&cgroup);
                    return Err(io::Error::new(
                        error.kind(),
                        format!("cannot write {} to {}: {error}", write.value, path.display()),
                    ));
                }
            }
        }
        Ok(cgroup)
    }

    /// The `cgroup.procs` files a task's process writes itself into, opened for writing.
    pub fn open_procs(cgroup: &TaskCgroup) -> io::Result<Vec<std::fs::File>> {
        cgroup
            .dirs()
            .into_iter()
            .map(|dir| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join("cgroup.procs").display())))
            })
            .collect()
    }

    /// This agent's task cgroups, by name (`run-<n>-<random>`) with their run.
    pub fn existing(&self) -> std::collections::BTreeMap<String, u64> {
        let bases: Vec<&Path> = match &self.layout {
            Layout::V1 { cpu, cpuacct, memory, pids } => vec![cpu, cpuacct, memory, pids],
            Layout::V2 { base, .. } => vec![base],
        };
        let mut found = std::collections::BTreeMap::new();
        for base in bases {
            let Ok(entries) = std::fs::read_dir(base) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Some(run) = run_of(&name) {
                    found.insert(name, run);
                }
            }
        }
        found
    }

    /// Removes this agent's own directories (`agora/<key>`) when they are empty. The shared
    /// `agora` above them stays: another agent may be making its own there right now.
    pub fn remove_base(&self) {
        let bases: Vec<&Path> = match &self.layout {
            Layout::V1 { cpu, cpuacct, memory, pids } => vec![cpu, cpuacct, memory, pids],
            Layout::V2 { base, .. } => vec![base],
        };
        for base in bases {
            // Not empty (a task cgroup left): the removal fails, as it should.
            let _ = std::fs::remove_dir(base);
        }
    }

    /// Destroys the task cgroup called `name` (kills what is in it).
    pub fn destroy_named(&self, name: &str) -> io::Result<()> {
        destroy(&self.task_cgroup(name))
    }

    /// How many times the kernel OOM-killed a process of the cgroup.
    pub fn oom_kills(cgroup: &TaskCgroup) -> u64 {
        match cgroup.version {
            Version::V1 => read_small(&cgroup.memory.join("memory.oom_control"))
                .and_then(|text| keyed(&text, "oom_kill"))
                .unwrap_or(0),
            Version::V2 => {
                read_small(&cgroup.memory.join("memory.events")).and_then(|text| keyed(&text, "oom_kill")).unwrap_or(0)
            }
        }
    }

    /// The most memory the cgroup held, when the kernel tells (v1 always, v2 from 5.19).
    pub fn memory_peak(cgroup: &TaskCgroup) -> Option<u64> {
        let file = match cgroup.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        read_small(&cgroup.memory.join(file))?.trim().parse().ok()
    }
}

/// A task's usage now, from its cgroup.
pub(crate) fn usage(cgroup: &TaskCgroup) -> Usage {
    // Clock ticks per second, the unit of v1's `cpuacct.stat`.
    let ticks_per_sec =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as f64;
    let read = |controller: Controller, file: &str| read_small(&cgroup.dir(controller).join(file));
    let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
    let processes = number(read(Controller::Pids, "pids.current")).unwrap_or(0);
    match cgroup.version {
        Version::V1 => {
            let cpu = read(Controller::Cpuacct, "cpuacct.stat").unwrap_or_default();
            let throttle = read(Controller::Cpu, "cpu.stat").unwrap_or_default();
            let memory = read(Controller::Memory, "memory.stat").unwrap_or_default();
            Usage {
                cpus_user_time_secs: keyed(&cpu, "user").unwrap_or(0) as f64 / ticks_per_sec,
                cpus_system_time_secs: keyed(&cpu, "system").unwrap_or(0) as f64 / ticks_per_sec,
                cpus_nr_throttled: keyed(&throttle, "nr_throttled"),
                cpus_throttled_time_secs: keyed(&throttle, "throttled_time").map(|ns| ns as f64 / 1e9),
                mem_rss_bytes: keyed(&memory, "total_rss").or_else(|| keyed(&memory, "rss")).unwrap_or(0),
                mem_cache_bytes: keyed(&memory, "total_cache").or_else(|| keyed(&memory, "cache")),
                mem_limit_bytes: number(read(Controller::Memory, "memory.limit_in_bytes")),
                processes,
            }
        }
        Version::V2 => {
            let cpu = read(Controller::Cpu, "cpu.stat").unwrap_or_default();
            let memory = read(Controller::Memory, "memory.stat").unwrap_or_default();
            Usage {
                cpus_user_time_secs: keyed(&cpu, "user_usec").unwrap_or(0) as f64 / 1e6,
                cpus_system_time_secs: keyed(&cpu, "system_usec").unwrap_or(0) as f64 / 1e6,
                cpus_nr_throttled: keyed(&cpu, "nr_throttled"),
                cpus_throttled_time_secs: keyed(&cpu, "throttled_usec").map(|us| us as f64 / 1e6),
                mem_rss_bytes: keyed(&memory, "anon").unwrap_or(0),
                mem_cache_bytes: keyed(&memory, "file"),
                // `max` (no limit) reads as None.
                mem_limit_bytes: number(read(Controller::Memory, "memory.max")),
                processes,
            }
        }
    }
}

/// The run of a task cgroup's name, `run-<n>-<random>`.
fn run_of(name: &str) -> Option<u64> {
    let (run, nonce) = name.strip_prefix("run-")?.split_once('-')?;
    (nonce.len() == 8 && nonce.bytes().all(|b| b.is_ascii_hexdigit())).then(|| run.parse().ok()).flatten()
}

/// Kills every process left in the cgroup and removes its directories; retried for a while
/// since killed processes leave only once their parent (often init) has reaped them.
pub(crate) fn destroy(cgroup: &TaskCgroup) -> io::Result<()> {
    let mut last = None;
    for attempt in 0..DESTROY_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(DESTROY_PAUSE);
        }
        let mut left = false;
        for dir in cgroup.dirs() {
            if !dir.exists() {
                continue;
            }
            if cgroup.version == Version::V2 {
                // Linux 5.14: one write kills the whole cgroup.
                let _ = write_file(&dir.join("cgroup.kill"), "1");
            }
            for pid in read_small(&dir.join("cgroup.procs")).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>()
                    && pid > 1
                {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    left = true;
                    last = Some(io::Error::new(error.kind(), format!("{}: {error}", dir.display())));
                }
            }
        }
        if !left {
            return Ok(());
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("the cgroup could not be removed")))
}

/// A short digest of the agent's work dir, naming its subtree.
pub(crate) fn agent_key(work_dir: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(work_dir.as_os_str().as_encoded_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_READ_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(text: &str) -> Resources {
        Resources::parse(text).expect("valid resources")
    }

    #[test]
    fn a_task_gets_shares_from_its_cpus_a_quota_only_with_cfs_and_a_memory_limit_of_at_least_32_mib() {
        let config = CgroupsConfig { enable_cfs: false, limit_swap: false, max_pids: 64 };
        let small = limits(&resources("cpus:0.5;mem:16"), &config);
        assert_eq!(small.mem_bytes, MIN_MEMORY_BYTES);
        let v1 = writes(Version::V1, &small);
        let values: Vec<(&str, &str)> = v1.iter().map(|w| (w.file, w.value.as_str())).collect();
        assert_eq!(values, vec![("cpu.shares", "512"), ("memory.limit_in_bytes", "33554432"), ("pids.max", "64")]);
        let cfs = CgroupsConfig { enable_cfs: true, limit_swap: true, max_pids: 64 };
        let big = limits(&resources("cpus:2;mem:256"), &cfs);
        let v1: Vec<(&str, String)> = writes(Version::V1, &big).into_iter().map(|w| (w.file, w.value)).collect();
        assert_eq!(
            v1,
            vec![
                ("cpu.shares", "2048".to_owned()),
                ("cpu.cfs_period_us", "100000".to_owned()),
                ("cpu.cfs_quota_us", "200000".to_owned()),
                ("memory.limit_in_bytes", (256u64 << 20).to_string()),
                ("memory.memsw.limit_in_bytes", (256u64 << 20).to_string()),
                ("pids.max", "64".to_owned()),
            ]
        );
        let v2: Vec<(&str, String)> = writes(Version::V2, &big).into_iter().map(|w| (w.file, w.value)).collect();
        assert_eq!(
            v2,
            vec![
                ("cpu.weight", "79".to_owned()),
                ("cpu.max", "200000 100000".to_owned()),
                ("memory.max", (256u64 << 20).to_string()),
                ("memory.swap.max", "0".to_owned()),
                ("pids.max", "64".to_owned()),
            ]
        );
    }

    #[test]
    fn a_task_without_cpus_still_gets_the_minimum_share_and_quota() {
        let config = CgroupsConfig { enable_cfs: true, ..CgroupsConfig::default() };
        let none = limits(&resources("mem:64"), &config);
        let values: Vec<(&str, String)> = writes(Version::V1, &none).into_iter().map(|w| (w.file, w.value)).collect();
        assert!(values.contains(&("cpu.shares", "2".to_owned())), "{values:?}");
        assert!(values.contains(&("cpu.cfs_quota_us", "1000".to_owned())), "{values:?}");
        let v2: Vec<(&str, String)> = writes(Version::V2, &none).into_iter().map(|w| (w.file, w.value)).collect();
        assert!(v2.contains(&("cpu.weight", "1".to_owned())), "{v2:?}");
    }

    const V1_MOUNTS: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    #[test]
    fn v1_hierarchies_win_and_nest_under_the_agents_own_cgroup() {
        let own = "4:memory:/session/abc\n2:cpuacct:/\n1:cpu:/\n8:pids:/\n0::/\n";
        let layout = detect(V1_MOUNTS, own, "k1").expect("v1");
        assert_eq!(
            layout,
            Layout::V1 {
                cpu: PathBuf::from("/sys/fs/cgroup/cpu/agora/k1"),
                cpuacct: PathBuf::from("/sys/fs/cgroup/cpuacct/agora/k1"),
                memory: PathBuf::from("/sys/fs/cgroup/memory/session/abc/agora/k1"),
                pids: PathBuf::from("/sys/fs/cgroup/pids/agora/k1"),
            }
        );
    }

    #[test]
    fn comounted_cpu_and_cpuacct_share_a_directory() {
        let mounts = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n\
                      cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n\
                      cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n";
        let Layout::V1 { cpu, cpuacct, .. } = detect(mounts, "", "k").expect("v1") else {
            panic!("expected v1");
        };
        assert_eq!(cpu, cpuacct);
        assert_eq!(cpu, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/agora/k"));
    }

    #[test]
    fn a_unified_hierarchy_alone_is_v2_and_nothing_at_all_is_an_error_naming_the_controllers() {
        let mounts = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        assert_eq!(
            detect(mounts, "0::/user.slice\n", "k").expect("v2"),
            Layout::V2 { mount: PathBuf::from("/sys/fs/cgroup"), base: PathBuf::from("/sys/fs/cgroup/agora/k") }
        );
        let error =
            detect("proc /proc proc rw 0 0\ncgroup /c/memory cgroup rw,memory 0 0\n", "", "k").expect_err("no cgroups");
        assert!(error.contains("cpu, cpuacct, pids"), "{error}");
    }

    #[test]
    fn keyed_files_are_read_by_name() {
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(2));
        assert_eq!(keyed(oom, "oom"), None);
        assert_eq!(keyed("user 150\nsystem 25\n", "system"), Some(25));
    }

    #[test]
    fn a_cgroup_record_reads_back_and_a_path_outside_the_hierarchies_is_refused() {
        let cgroup = TaskCgroup {
            version: Version::V1,
            cpu: PathBuf::from("/sys/fs/cgroup/cpu/agora/k/run-3-0000abcd"),
            cpuacct: PathBuf::from("/sys/fs/cgroup/cpuacct/agora/k/run-3-0000abcd"),
            memory: PathBuf::from("/sys/fs/cgroup/memory/agora/k/run-3-0000abcd"),
            pids: PathBuf::from("/sys/fs/cgroup/pids/agora/k/run-3-0000abcd"),
        };
        assert_eq!(TaskCgroup::from_record(&cgroup.to_record()), Some(cgroup.clone()));
        let evil = cgroup.to_record().replace("/sys/fs/cgroup/pids/agora/k/run-3-0000abcd", "/etc/agora/k/x");
        assert_eq!(TaskCgroup::from_record(&evil), None);
        let dotted = cgroup.to_record().replace("/agora/k/run-3-0000abcd", "/../../etc");
        assert_eq!(TaskCgroup::from_record(&dotted), None);
        assert_eq!(TaskCgroup::from_record("version v3\n"), None);
    }

    #[test]
    fn a_task_cgroups_name_gives_its_run() {
        assert_eq!(run_of("run-12-00ab12ef"), Some(12));
        assert_eq!(run_of("run-12"), None);
        assert_eq!(run_of("run-x-00ab12ef"), None);
        assert_eq!(run_of("other"), None);
    }

    #[test]
    fn isolation_names_parse_and_others_are_refused() {
        assert_eq!("cgroups".parse::<Isolation>(), Ok(Isolation::Cgroups));
        assert_eq!("posix".parse::<Isolation>(), Ok(Isolation::Posix));
        assert!("docker".parse::<Isolation>().expect_err("unknown").contains("docker"));
    }

    #[test]
    fn mount_points_with_escaped_spaces_are_read_back() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
