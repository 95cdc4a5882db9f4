//! What this host offers: detection of CPUs, memory, disk and ports, the `--resources`
//! override, and splitting one machine into shares for several agents (`agora local`).

use std::collections::BTreeSet;
use std::path::Path;

use agora_proto::model::{ParseResourcesError, Pool, RangeSet, Resources, Role, Scalars};

/// The port range offered when `--resources` names none, as in Mesos.
pub const DEFAULT_PORTS: (u64, u64) = (31_000, 32_000);

const MIB: u64 = 1024 * 1024;
/// Memory kept back for the operating system and the agent: 1 GiB, or half of a smaller
/// machine (Mesos' rule).
const MEM_RESERVE_MAX_MIB: u64 = 1024;
/// Disk kept back for logs and the system: 5 GiB, or half of a smaller disk (Mesos' rule).
const DISK_RESERVE_MAX_MIB: u64 = 5 * 1024;

/// The host's resources, all unreserved: every CPU, physical memory less a reserve, the free
/// space of the file system holding `work_dir` less a reserve, and ports 31000-32000.
/// A quantity that cannot be read is offered as zero rather than guessed.
pub fn detect_resources(work_dir: &Path) -> Resources {
    let cpus_milli = std::thread::available_parallelism().map_or(1, |n| n.get() as u64) * 1000;
    let mem_mib = memory_total_mib().map_or(0, |total| total - total.div_ceil(2).min(MEM_RESERVE_MAX_MIB));
    let disk_mib = disk_free_mib(work_dir).map_or(0, |free| free - free.div_ceil(2).min(DISK_RESERVE_MAX_MIB));
    let ports = RangeSet::from_ranges([DEFAULT_PORTS]).expect("the default port range is well formed");
    Resources::unreserved(Scalars::new(cpus_milli, mem_mib, disk_mib), ports)
}

/// The resources to offer given the `--resources` text: every name it gives (`cpus`, `mem`,
/// `disk`, `ports`, with or without a role) replaces the detected value of that name; the
/// names it leaves out are detected.
pub fn resolve_resources(flag: Option<&str>, work_dir: &Path) -> Result<Resources, ParseResourcesError> {
    let text = flag.unwrap_or("");
    let mut resources = Resources::parse(text)?;
    let named = named_entries(text);
    let detected = detect_resources(work_dir);
    let scalars = detected.scalars();
    let keep = |name: &str, value: u64| if named.contains(name) { 0 } else { value };
    let fill = Scalars::new(
        keep("cpus", scalars.cpus_milli),
        keep("mem", scalars.mem_mib),
        keep("disk", scalars.disk_mib),
    );
    let ports = if named.contains("ports") { RangeSet::new() } else { detected.ports() };
    resources.add_pool(Role::unreserved(), Pool { scalars: fill, ports });
    Ok(resources)
}

/// The resource names a `--resources` text mentions (`cpus(eng):2` names `cpus`).
fn named_entries(text: &str) -> BTreeSet<String> {
    text.split(';')
        .filter_map(|entry| entry.split([':', '(']).next())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Share `index` (from 0) of `total` split `shares` ways: each quantity of each role is
/// divided exactly, the remainder going one unit each to the first shares, and ports are cut
/// into contiguous runs. The shares add up to `total` exactly; `shares` of 0 is taken as 1.
pub fn share_of(total: &Resources, shares: u32, index: u32) -> Resources {
    let shares = u64::from(shares.max(1));
    let index = u64::from(index).min(shares - 1);
    let part = |amount: u64| amount / shares + u64::from(index < amount % shares);
    // Where share `index` starts: the sizes of the shares before it.
    let start = |amount: u64| (0..index).map(|i| amount / shares + u64::from(i < amount % shares)).sum::<u64>();
    let mut out = Resources::new();
    for (role, pool) in total.pools() {
        let s = pool.scalars;
        let scalars = Scalars::new(part(s.cpus_milli), part(s.mem_mib), part(s.disk_mib));
        let count = pool.ports.len();
        let before = pool.ports.take_lowest(start(count)).unwrap_or_default();
        let ports = pool.ports.difference(&before).take_lowest(part(count)).unwrap_or_default();
        out.add_pool(role.clone(), Pool { scalars, ports });
    }
    out
}

/// `total` split `shares` ways (see [`share_of`]).
pub fn split_resources(total: &Resources, shares: u32) -> Vec<Resources> {
    (0..shares.max(1)).map(|i| share_of(total, shares, i)).collect()
}

/// `MemTotal` of `/proc/meminfo`, in MiB.
fn memory_total_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Space available to unprivileged users on the file system of `dir` (or of its nearest
/// existing ancestor, since the work directory may not exist yet), in MiB.
fn disk_free_mib(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("."));
    let stat = nix::sys::statvfs::statvfs(existing).ok()?;
    #[allow(clippy::useless_conversion)] // The field types differ between platforms.
    let bytes = u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    Some(bytes / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_finds_cpus_memory_disk_and_the_default_ports() {
        let dir = std::env::temp_dir();
        let r = detect_resources(&dir);
        assert!(r.scalars().cpus_milli >= 1000);
        assert!(r.scalars().mem_mib > 0);
        assert_eq!(r.ports().ranges(), &[(31_000, 32_000)]);
    }

    #[test]
    fn given_entries_replace_detected_ones_and_the_rest_are_detected() {
        let dir = std::env::temp_dir();
        let detected = detect_resources(&dir);
        let r = resolve_resources(Some("cpus:2;ports:[5000-5001]"), &dir).expect("valid");
        assert_eq!(r.scalars().cpus_milli, 2000);
        assert_eq!(r.scalars().mem_mib, detected.scalars().mem_mib);
        assert_eq!(r.ports().ranges(), &[(5000, 5001)]);

        let reserved = resolve_resources(Some("mem(eng):100"), &dir).expect("valid");
        assert_eq!(reserved.scalars().mem_mib, 100, "a reserved entry replaces the detected amount too");
        assert_eq!(reserved.scalars().cpus_milli, detected.scalars().cpus_milli);
    }

    #[test]
    fn a_bad_resources_text_is_rejected_with_the_reason() {
        let err = resolve_resources(Some("gpus:1"), &std::env::temp_dir()).expect_err("unknown");
        assert!(err.to_string().contains("unknown resource"), "{err}");
    }

    #[test]
    fn shares_of_a_machine_add_up_exactly_to_the_machine() {
        let total = Resources::parse("cpus:4.001;mem:8191;disk:10;ports:[31000-31010,32000-32002];cpus(eng):1")
            .expect("valid");
        let shares = split_resources(&total, 3);
        assert_eq!(shares[0].scalars(), Scalars::new(1334 + 334, 2731, 4));
        assert_eq!(shares[2].scalars(), Scalars::new(1333 + 333, 2730, 3));
        assert_eq!(shares[0].ports().ranges(), &[(31_000, 31_004)]);
        assert_eq!(shares[1].ports().ranges(), &[(31_005, 31_009)]);
        assert_eq!(shares[2].ports().ranges(), &[(31_010, 31_010), (32_000, 32_002)]);
        let mut sum = Resources::new();
        for share in &shares {
            sum.add(share);
        }
        assert_eq!(sum, total);
    }
}
