//! What a task uses without cgroups (its process group's CPU time, resident memory and
//! process count, read from `/proc`), and how much disk its sandbox holds (walked, with a
//! bound). The parsers are pure and tested directly; the walks only read.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use super::cgroups::Usage;
use crate::core::{LimitKind, Limitation};

/// Most entries one sandbox walk visits: a sandbox with more files than this counts as
/// holding what the first ones hold, and the walk's cost stays bounded.
pub(crate) const MAX_WALK_ENTRIES: usize = 1_000_000;
/// Deepest directory nesting walked.
const MAX_WALK_DEPTH: usize = 256;

/// One process, from `/proc/<pid>/stat`: its process group, CPU ticks (user, system) and
/// resident pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pgid: u32,
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub rss_pages: u64,
}

/// Reads a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses; what follows its last `)` is space-separated from field 3 (state) on.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n of the line is fields[n - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat {
        pgid: u32::try_from(field(5)?).ok()?,
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        rss_pages: field(24)?,
    })
}

/// The usage of each process group in `groups`, summed over its processes in `/proc`.
pub(crate) fn process_groups(groups: &BTreeSet<u32>) -> BTreeMap<u32, Usage> {
    let mut out = BTreeMap::new();
    if groups.is_empty() {
        return out;
    }
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096).max(1) as u64;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Some(stat) = std::fs::read_to_string(entry.path().join("stat")).ok().and_then(|t| parse_stat(&t)) else {
            continue;
        };
        if !groups.contains(&stat.pgid) {
            continue;
        }
        let usage: &mut Usage = out.entry(stat.pgid).or_default();
        usage.cpus_user_time_secs += stat.utime_ticks as f64 / ticks;
        usage.cpus_system_time_secs += stat.stime_ticks as f64 / ticks;
        usage.mem_rss_bytes += stat.rss_pages * page;
        usage.processes += 1;
    }
    out
}

/// Bytes of disk the files under `dir` take (allocated blocks, as `du` counts them), each
/// hard-linked file once; symlinks are not followed, and the walk stops after
/// [`MAX_WALK_ENTRIES`] entries.
pub(crate) fn disk_used(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut seen_links = HashSet::new();
    let mut visited = 0usize;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_WALK_ENTRIES {
                return total;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.nlink() > 1 && !meta.is_dir() && !seen_links.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() && depth < MAX_WALK_DEPTH {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    total
}

/// The limitation of a sandbox holding `used_bytes` for a task with `disk_mib` of disk;
/// a task that asked for no disk is not limited.
pub(crate) fn disk_limitation(used_bytes: u64, disk_mib: u64) -> Option<Limitation> {
    let limit_bytes = disk_mib.checked_mul(1024 * 1024).filter(|limit| *limit > 0)?;
    (used_bytes > limit_bytes).then(|| Limitation {
        kind: LimitKind::Disk,
        message: format!(
            "Disk usage ({:.1} MiB) exceeds the task's disk resource ({disk_mib} MiB)",
            used_bytes as f64 / (1024.0 * 1024.0)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_a_tricky_command_name_is_read_from_its_last_parenthesis() {
        let line = "4242 (my (odd) cmd) S 1 4200 4200 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 123456 1000000 321 18446744073709551615";
        assert_eq!(parse_stat(line), Some(ProcStat { pgid: 4200, utime_ticks: 250, stime_ticks: 75, rss_pages: 321 }));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn only_a_sandbox_over_a_disk_resource_it_asked_for_is_a_limitation() {
        assert_eq!(disk_limitation(10 << 20, 0), None);
        assert_eq!(disk_limitation(10 << 20, 10), None);
        let over = disk_limitation((10 << 20) + 1, 10).expect("over");
        assert_eq!(over.kind, LimitKind::Disk);
        assert!(over.message.contains("10 MiB"), "{}", over.message);
    }

    #[test]
    fn disk_use_counts_a_hard_linked_file_once_and_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("a"), vec![1u8; 256 * 1024]).expect("write");
        let one = disk_used(dir.path());
        assert!(one >= 256 * 1024, "{one}");
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).expect("link");
        std::os::unix::fs::symlink("/usr", dir.path().join("usr")).expect("symlink");
        let two = disk_used(dir.path());
        assert!(two < one + 64 * 1024, "{one} then {two}");
    }
}
