//! Which user a task runs as, and the environment it starts with.
//!
//! The user is the task's own (`CommandInfo.user`), else its framework's. An agent running
//! as root switches to it in the task's process before exec (supplementary groups, group,
//! user, from the passwd entry), with the sandbox owned by that user; it refuses root unless
//! started with `--allow-root-tasks`, or (as `agora local` does) runs such tasks as a stand-in
//! user instead. An agent that is not root cannot switch: its tasks run as itself.
//! [`resolve`] decides, with the passwd lookup passed in, and is tested directly.
//!
//! A task never sees the agent's environment (which may hold credentials): it starts from
//! `PATH`, `HOME`, `USER` and `LOGNAME`, then the sandbox variables and its own.

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Most supplementary groups a task's user gets (Linux' own bound is 65,536).
const MAX_GROUPS: usize = 1_024;
/// Most entries of a sandbox handed over to the task's user (what the fetcher put there).
const MAX_CHOWN_ENTRIES: usize = 100_000;
/// `PATH` for a task when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the agent does about users, decided at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UserPolicy {
    /// The agent runs as root, so it can (and does) switch to the task's user.
    pub switch: bool,
    /// Tasks may run as root (`--allow-root-tasks`).
    pub allow_root: bool,
    /// Instead of refusing a root task, run it as this user (`agora local` as root: nobody).
    pub root_tasks_as: Option<String>,
}

/// A passwd entry, as far as a task needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The user a task runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskUser {
    pub entry: Entry,
    /// Supplementary groups, from the group database.
    pub groups: Vec<u32>,
}

/// Decides the user of a task that asked for `requested` (its own or its framework's user):
/// `Ok(None)` to run as the agent itself (which cannot switch), else the entry to switch to;
/// the error says why the task may not run, naming the user.
pub(crate) fn resolve(
    requested: Option<&str>,
    policy: &UserPolicy,
    lookup: impl Fn(&str) -> Option<Entry>,
) -> Result<Option<Entry>, String> {
    if !policy.switch {
        return Ok(None);
    }
    // Nothing named: the agent's own user, root.
    let name = requested.filter(|name| !name.is_empty()).unwrap_or("root");
    let entry = lookup(name).ok_or_else(|| format!("user {name:?}: no such user on this agent"))?;
    if entry.uid != 0 || policy.allow_root {
        return Ok(Some(entry));
    }
    match &policy.root_tasks_as {
        Some(instead) => {
            let stand_in = lookup(instead).ok_or_else(|| format!("user {instead:?}: no such user on this agent"))?;
            if stand_in.uid == 0 {
                return Err(format!("user {instead:?} is root; root tasks are refused"));
            }
            Ok(Some(stand_in))
        }
        None => Err(format!(
            "the agent refuses to run tasks as root (user {name:?}): give the task (CommandInfo.user) or its \
             framework another user, or start the agent with --allow-root-tasks"
        )),
    }
}

/// The passwd entry of `name`, from the host's user database.
pub(crate) fn lookup(name: &str) -> Option<Entry> {
    let user = nix::unistd::User::from_name(name).ok().flatten()?;
    Some(Entry { name: user.name, uid: user.uid.as_raw(), gid: user.gid.as_raw(), home: user.dir })
}

/// The entry and its supplementary groups.
pub(crate) fn with_groups(entry: Entry) -> TaskUser {
    let groups = CString::new(entry.name.as_bytes())
        .ok()
        .and_then(|name| nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(entry.gid)).ok())
        .map(|groups| groups.into_iter().take(MAX_GROUPS).map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![entry.gid]);
    TaskUser { entry, groups }
}

/// The environment every task starts from: the agent's `PATH` (a default when it has none)
/// and, for a task switched to a user, that user's `HOME`, `USER` and `LOGNAME`; else the
/// agent's own three. Nothing else of the agent's environment.
pub(crate) fn base_environment(user: Option<&Entry>) -> Vec<(String, String)> {
    let path = std::env::var("PATH").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| DEFAULT_PATH.to_owned());
    let mut env = vec![("PATH".to_owned(), path)];
    match user {
        Some(user) => {
            env.push(("HOME".to_owned(), user.home.display().to_string()));
            env.push(("USER".to_owned(), user.name.clone()));
            env.push(("LOGNAME".to_owned(), user.name.clone()));
        }
        None => {
            for name in ["HOME", "USER", "LOGNAME"] {
                if let Ok(value) = std::env::var(name) {
                    env.push((name.to_owned(), value));
                }
            }
        }
    }
    env
}

/// Hands the sandbox and what is in it (the fetcher's files, stdout, stderr) to the task's
/// user, not following symlinks; the sandbox itself is readable by that user and its group
/// only. At most [`MAX_CHOWN_ENTRIES`] entries.
pub(crate) fn give_sandbox(dir: &Path, user: &Entry) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = (Some(user.uid), Some(user.gid));
    std::os::unix::fs::lchown(dir, uid, gid)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)?.flatten() {
            seen += 1;
            if seen > MAX_CHOWN_ENTRIES {
                return Ok(());
            }
            let path = entry.path();
            std::os::unix::fs::lchown(&path, uid, gid)?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwd(name: &str) -> Option<Entry> {
        let (uid, gid) = match name {
            "root" => (0, 0),
            "nobody" => (65_534, 65_534),
            "alice" => (1_000, 1_000),
            "toor" => (0, 0),
            _ => return None,
        };
        Some(Entry { name: name.to_owned(), uid, gid, home: PathBuf::from(format!("/home/{name}")) })
    }

    fn policy(allow_root: bool, root_tasks_as: Option<&str>) -> UserPolicy {
        UserPolicy { switch: true, allow_root, root_tasks_as: root_tasks_as.map(str::to_owned) }
    }

    #[test]
    fn a_root_agent_runs_a_task_as_the_user_it_names() {
        let alice = resolve(Some("alice"), &policy(false, None), passwd).expect("alice may run");
        assert_eq!(alice.map(|e| e.uid), Some(1_000));
    }

    #[test]
    fn a_root_agent_refuses_root_tasks_unless_allowed_and_says_how_to_allow_them() {
        for asked in [Some("root"), None, Some("toor")] {
            let error = resolve(asked, &policy(false, None), passwd).expect_err("root is refused");
            assert!(error.contains("--allow-root-tasks"), "{error}");
        }
        let root = resolve(Some("root"), &policy(true, None), passwd).expect("allowed");
        assert_eq!(root.map(|e| e.uid), Some(0));
    }

    #[test]
    fn a_stand_in_user_takes_root_tasks_when_one_is_set() {
        let nobody = resolve(Some("root"), &policy(false, Some("nobody")), passwd).expect("as nobody");
        assert_eq!(nobody.map(|e| e.name), Some("nobody".to_owned()));
        let alice = resolve(Some("alice"), &policy(false, Some("nobody")), passwd).expect("alice stays alice");
        assert_eq!(alice.map(|e| e.name), Some("alice".to_owned()));
        assert!(resolve(Some("root"), &policy(false, Some("toor")), passwd).is_err(), "a root stand-in is no help");
    }

    #[test]
    fn an_unknown_user_is_named_in_the_refusal_and_an_agent_that_is_not_root_runs_tasks_as_itself() {
        let error = resolve(Some("mallory"), &policy(true, None), passwd).expect_err("unknown");
        assert!(error.contains("\"mallory\""), "{error}");
        let unswitched = UserPolicy { switch: false, allow_root: false, root_tasks_as: None };
        assert_eq!(resolve(Some("root"), &unswitched, passwd), Ok(None));
    }

    #[test]
    fn the_base_environment_holds_path_and_the_users_home_and_names_only() {
        let alice = passwd("alice").expect("alice");
        let env = base_environment(Some(&alice));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "HOME", "USER", "LOGNAME"]);
        assert!(env.contains(&("HOME".to_owned(), "/home/alice".to_owned())));
    }
}
