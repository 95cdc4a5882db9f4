//! Resources with exact arithmetic: CPUs in thousandths, memory and disk in MiB, ports as
//! sets of inclusive ranges, each quantity held by a role ("*" when unreserved).
//!
//! Integers make sums and differences exact: offering, launching and freeing a resource a
//! million times returns to the same total, which floating point (Mesos' `double`) cannot
//! promise.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

/// A role name; `*` is the unreserved pool every role may use. Immutable and shared: a
/// copy is a reference count.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role(Arc<str>);

/// The one `*`, shared by every unreserved pool.
static UNRESERVED_ROLE: LazyLock<Role> = LazyLock::new(|| Role(Arc::from(Role::UNRESERVED)));

impl Role {
    pub const UNRESERVED: &'static str = "*";

    pub fn unreserved() -> Self {
        UNRESERVED_ROLE.clone()
    }

    /// Validates a role name: path segments of `[A-Za-z0-9_.-]`, separated by `/`,
    /// none of them `.` or `..`; or `*`.
    pub fn parse(name: &str) -> Result<Self, ParseResourcesError> {
        if name == Self::UNRESERVED {
            return Ok(Self::unreserved());
        }
        let valid_segment = |segment: &str| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if name.len() > 256 || !name.split('/').all(valid_segment) {
            return Err(ParseResourcesError::new(format!(
                "invalid role {name:?}: use `*` or `/`-separated names of letters, digits, `_`, `-` and `.`"
            )));
        }
        Ok(Self(Arc::from(name)))
    }

    pub fn is_unreserved(&self) -> bool {
        &*self.0 == Self::UNRESERVED
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` is `other` or one of its ancestors (`eng` is an ancestor of `eng/web`).
    pub fn is_ancestor_or_self_of(&self, other: &Role) -> bool {
        other.0 == self.0 || (other.0.starts_with(&*self.0) && other.0.as_bytes().get(self.0.len()) == Some(&b'/'))
    }
}

// Serialized as a plain string, as when the role was a `String`.
impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|name| Self(Arc::from(name)))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scalar quantities of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Scalars {
    pub cpus_milli: u64,
    pub mem_mib: u64,
    pub disk_mib: u64,
}

impl Scalars {
    pub const ZERO: Scalars = Scalars { cpus_milli: 0, mem_mib: 0, disk_mib: 0 };

    pub fn new(cpus_milli: u64, mem_mib: u64, disk_mib: u64) -> Self {
        Self { cpus_milli, mem_mib, disk_mib }
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// True when every quantity of `other` fits in `self`.
    pub fn contains(&self, other: &Scalars) -> bool {
        self.cpus_milli >= other.cpus_milli && self.mem_mib >= other.mem_mib && self.disk_mib >= other.disk_mib
    }

    pub fn saturating_add(&self, other: &Scalars) -> Scalars {
        Scalars {
            cpus_milli: self.cpus_milli.saturating_add(other.cpus_milli),
            mem_mib: self.mem_mib.saturating_add(other.mem_mib),
            disk_mib: self.disk_mib.saturating_add(other.disk_mib),
        }
    }

    pub fn checked_sub(&self, other: &Scalars) -> Option<Scalars> {
        Some(Scalars {
            cpus_milli: self.cpus_milli.checked_sub(other.cpus_milli)?,
            mem_mib: self.mem_mib.checked_sub(other.mem_mib)?,
            disk_mib: self.disk_mib.checked_sub(other.disk_mib)?,
        })
    }

    pub fn saturating_sub(&self, other: &Scalars) -> Scalars {
        Scalars {
            cpus_milli: self.cpus_milli.saturating_sub(other.cpus_milli),
            mem_mib: self.mem_mib.saturating_sub(other.mem_mib),
            disk_mib: self.disk_mib.saturating_sub(other.disk_mib),
        }
    }

    /// The largest share `self` holds of `total` over the three quantities, in parts per
    /// million; this is the dominant share of dominant resource fairness.
    #[inline]
    pub fn dominant_share_ppm(&self, total: &Scalars) -> u64 {
        // In u64 while `used × 10⁶` fits (any real cluster); in u128 beyond. The same
        // quotient either way, but the allocator computes shares on every grant and a
        // 128-bit division is several times slower.
        let share = |used: u64, all: u64| match (all, used.checked_mul(1_000_000)) {
            (0, _) => 0,
            (_, Some(scaled)) => scaled / all,
            (_, None) => (u128::from(used) * 1_000_000 / u128::from(all)) as u64,
        };
        share(self.cpus_milli, total.cpus_milli)
            .max(share(self.mem_mib, total.mem_mib))
            .max(share(self.disk_mib, total.disk_mib))
    }
}

/// A set of non-negative integers kept as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Builds a set from ranges in any order, merging overlaps; a range with `begin > end`
    /// is rejected.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Result<Self, ParseResourcesError> {
        let mut set = Self::new();
        for (begin, end) in ranges {
            if begin > end {
                return Err(ParseResourcesError::new(format!("range [{begin}-{end}] ends before it begins")));
            }
            set.insert(begin, end);
        }
        set.0.shrink_to_fit();
        Ok(set)
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many numbers the set holds.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|(b, e)| e - b + 1).sum()
    }

    fn insert(&mut self, begin: u64, end: u64) {
        self.0.push((begin, end));
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(b, e) in &self.0 {
            match merged.last_mut() {
                Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((b, e)),
            }
        }
        self.0 = merged;
    }

    pub fn union(&self, other: &RangeSet) -> RangeSet {
        let mut out = self.clone();
        out.merge_from(other);
        out
    }

    /// Adds every number of `other` in place: one sort and one merging pass, no new vector
    /// (offering and freeing resources do this on every offer).
    pub fn merge_from(&mut self, other: &RangeSet) {
        if other.0.is_empty() {
            return;
        }
        self.0.extend_from_slice(&other.0);
        self.0.sort_unstable();
        // `dedup_by` hands each range with the last one kept: touching or overlapping
        // ranges are folded into the kept one.
        self.0.dedup_by(|next, kept| {
            if next.0 <= kept.1.saturating_add(1) {
                kept.1 = kept.1.max(next.1);
                true
            } else {
                false
            }
        });
    }

    /// True when every number of `other` is in `self`.
    pub fn contains(&self, other: &RangeSet) -> bool {
        other.0.iter().all(|&(b, e)| self.0.iter().any(|&(sb, se)| sb <= b && e <= se))
    }

    pub fn contains_value(&self, value: u64) -> bool {
        self.0.iter().any(|&(b, e)| b <= value && value <= e)
    }

    /// `self` without the numbers of `other`.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::with_capacity(self.0.len());
        for &(mut b, e) in &self.0 {
            let mut open = true;
            for &(ob, oe) in &other.0 {
                if oe < b || ob > e {
                    continue;
                }
                if ob > b {
                    out.push((b, ob - 1));
                }
                if oe >= e {
                    open = false;
                    break;
                }
                b = oe + 1;
            }
            if open {
                out.push((b, e));
            }
        }
        RangeSet(out)
    }

    /// The lowest `count` numbers of the set, or `None` when it holds fewer.
    pub fn take_lowest(&self, count: u64) -> Option<RangeSet> {
        let mut left = count;
        let mut out = Vec::new();
        for &(b, e) in &self.0 {
            if left == 0 {
                break;
            }
            let n = (e - b + 1).min(left);
            out.push((b, b + n - 1));
            left -= n;
        }
        (left == 0).then_some(RangeSet(out))
    }

    /// Every number of the set, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|&(b, e)| b..=e)
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (b, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{b}-{e}")?;
        }
        f.write_str("]")
    }
}

/// The resources one role holds on one agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pool {
    pub scalars: Scalars,
    pub ports: RangeSet,
}

impl Pool {
    pub fn is_empty(&self) -> bool {
        self.scalars.is_zero() && self.ports.is_empty()
    }

    pub fn contains(&self, other: &Pool) -> bool {
        self.scalars.contains(&other.scalars) && self.ports.contains(&other.ports)
    }

    pub fn add(&mut self, other: &Pool) {
        self.scalars = self.scalars.saturating_add(&other.scalars);
        self.ports.merge_from(&other.ports);
    }

    /// Removes `other`, which must be contained; returns false (and changes nothing) if not.
    pub fn subtract(&mut self, other: &Pool) -> bool {
        if !self.contains(other) {
            return false;
        }
        self.scalars = self.scalars.saturating_sub(&other.scalars);
        self.ports = self.ports.difference(&other.ports);
        true
    }
}

/// Resources on one agent (or an offer, or a task), by role.
///
/// The pools are shared between copies until one of them changes (copy on write), so
/// that an offer, the master's record of it and the agent's offered sum can hold the same
/// resources without copying them. Pools are sorted by role and never empty.
#[derive(Clone, Default)]
pub struct Resources {
    /// `None` when there is no pool.
    pools: Option<Arc<Vec<(Role, Pool)>>>,
}

impl PartialEq for Resources {
    fn eq(&self, other: &Self) -> bool {
        self.shares_with(other) || self.slice() == other.slice()
    }
}

impl Eq for Resources {}

/// Printed as the map of pools it was before pools were shared.
impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Pools<'a>(&'a [(Role, Pool)]);
        impl fmt::Debug for Pools<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.iter().map(|(r, p)| (r, p))).finish()
            }
        }
        f.debug_struct("Resources").field("pools", &Pools(self.slice())).finish()
    }
}

/// Serialized as `{"pools": {role: pool, …}}`, the format of the registry on disk.
impl serde::Serialize for Resources {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Pools<'a>(&'a [(Role, Pool)]);
        impl serde::Serialize for Pools<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|(r, p)| (r, p)))
            }
        }
        let mut s = serializer.serialize_struct("Resources", 1)?;
        s.serialize_field("pools", &Pools(self.slice()))?;
        s.end()
    }
}

impl<'de> serde::Deserialize<'de> for Resources {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename = "Resources")]
        struct Stored {
            pools: BTreeMap<Role, Pool>,
        }
        let stored = Stored::deserialize(deserializer)?;
        let mut resources = Resources::new();
        for (role, pool) in stored.pools {
            resources.add_pool(role, pool);
        }
        Ok(resources)
    }
}

/// A resource string or role that could not be understood; the message says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseResourcesError(String);

impl ParseResourcesError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Upper bounds that keep arithmetic far from overflow: a million CPUs, an exbibyte.
const MAX_CPUS_MILLI: u64 = 1_000_000_000;
const MAX_MIB: u64 = 1 << 40;
const MAX_PORT: u64 = 65_535;

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Unreserved resources from plain quantities.
    pub fn unreserved(scalars: Scalars, ports: RangeSet) -> Self {
        let mut r = Self::new();
        r.add_pool(Role::unreserved(), Pool { scalars, ports });
        r
    }

    /// Parses the Mesos agent syntax: `cpus:4;mem:8192;disk:10000;ports:[31000-32000]`,
    /// with an optional role per entry (`cpus(eng):2`). CPUs may be fractional down to a
    /// thousandth (a positive quantity that would round to 0 is refused); memory and disk
    /// are MiB. An entry repeated for one role (`cpus:1;cpus:2`) adds up, as Mesos sums its
    /// resources: scalars add, port ranges merge.
    pub fn parse(text: &str) -> Result<Self, ParseResourcesError> {
        let mut resources = Self::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (key, value) = entry
                .split_once(':')
                .ok_or_else(|| ParseResourcesError::new(format!("{entry:?}: expected NAME:VALUE")))?;
            let (name, role) = match key.trim().split_once('(') {
                Some((name, rest)) => {
                    let role = rest
                        .strip_suffix(')')
                        .ok_or_else(|| ParseResourcesError::new(format!("{entry:?}: role must end with `)`")))?;
                    (name.trim(), Role::parse(role.trim())?)
                }
                None => (key.trim(), Role::unreserved()),
            };
            let value = value.trim();
            let mut pool = Pool::default();
            match name {
                "cpus" => pool.scalars.cpus_milli = parse_cpus(value)?,
                "mem" => pool.scalars.mem_mib = parse_mib(name, value)?,
                "disk" => pool.scalars.disk_mib = parse_mib(name, value)?,
                "ports" => pool.ports = parse_ranges(value)?,
                other => {
                    return Err(ParseResourcesError::new(format!(
                        "unknown resource {other:?}: expected cpus, mem, disk or ports"
                    )));
                }
            }
            resources.add_pool(role, pool);
        }
        // Repeated entries add up; their sum stays within what one entry may say, so that
        // what parses also prints back as something that parses.
        for (role, pool) in resources.pools() {
            let s = &pool.scalars;
            if s.cpus_milli > MAX_CPUS_MILLI || s.mem_mib > MAX_MIB || s.disk_mib > MAX_MIB {
                return Err(ParseResourcesError::new(format!(
                    "the entries for role {role} add up to more than a million cpus or 2^40 MiB"
                )));
            }
        }
        Ok(resources)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slice().iter().all(|(_, p)| p.is_empty())
    }

    pub fn pools(&self) -> impl Iterator<Item = (&Role, &Pool)> {
        self.slice().iter().map(|(r, p)| (r, p))
    }

    pub fn pool(&self, role: &Role) -> Option<&Pool> {
        let pools = self.slice();
        pools.binary_search_by(|(r, _)| r.cmp(role)).ok().and_then(|i| pools.get(i)).map(|(_, p)| p)
    }

    fn slice(&self) -> &[(Role, Pool)] {
        self.pools.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Where the pools are held: their shared allocation (with its reference counts),
    /// and the elements of their vector, whose address is read from that allocation. For
    /// callers that fetch them into the cache ahead of use; `None` when there is no pool.
    pub fn pools_addr(&self) -> Option<(*const u8, *const u8)> {
        self.pools.as_ref().map(|pools| (Arc::as_ptr(pools).cast::<u8>(), pools.as_ptr().cast::<u8>()))
    }

    /// Whether both hold the very same pools (one is a copy of the other, unchanged).
    #[inline]
    pub fn shares_with(&self, other: &Resources) -> bool {
        matches!((&self.pools, &other.pools), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    /// The pools for changing; copied first if another `Resources` shares them.
    fn pools_mut(&mut self) -> &mut Vec<(Role, Pool)> {
        Arc::make_mut(self.pools.get_or_insert_with(Default::default))
    }

    /// Drops the pools that became empty, and the vector when none is left.
    fn tidy(&mut self) {
        if let Some(pools) = &mut self.pools {
            if pools.iter().any(|(_, p)| p.is_empty()) {
                Arc::make_mut(pools).retain(|(_, p)| !p.is_empty());
            }
            if pools.is_empty() {
                self.pools = None;
            }
        }
    }

    /// Gives back the spare capacity of the pools (unless another copy shares them): for
    /// resources built once and then held, such as a task's (a vector grown by one pool
    /// keeps room for four).
    pub fn shrink_to_fit(&mut self) {
        if let Some(pools) = self.pools.as_mut().and_then(Arc::get_mut) {
            pools.shrink_to_fit();
        }
    }

    pub fn add_pool(&mut self, role: Role, pool: Pool) {
        if pool.is_empty() {
            return;
        }
        let pools = self.pools_mut();
        match pools.binary_search_by(|(r, _)| r.cmp(&role)) {
            Ok(i) => {
                if let Some((_, mine)) = pools.get_mut(i) {
                    mine.add(&pool);
                }
            }
            Err(i) => pools.insert(i, (role, pool)),
        }
    }

    pub fn add(&mut self, other: &Resources) {
        if other.is_empty() {
            return;
        }
        // Adding to nothing shares the other's pools instead of copying them.
        if self.pools.is_none() {
            self.pools.clone_from(&other.pools);
            self.tidy();
            return;
        }
        let pools = self.pools_mut();
        for (role, pool) in other.pools().filter(|(_, p)| !p.is_empty()) {
            // Adding to a pool that exists needs no copy of the role or the pool.
            match pools.binary_search_by(|(r, _)| r.cmp(role)) {
                Ok(i) => {
                    if let Some((_, mine)) = pools.get_mut(i) {
                        mine.add(pool);
                    }
                }
                Err(i) => pools.insert(i, (role.clone(), pool.clone())),
            }
        }
    }

    /// True when every pool of `other` fits in the same role's pool of `self`.
    #[inline]
    pub fn contains(&self, other: &Resources) -> bool {
        self.shares_with(other)
            || other
                .pools()
                .all(|(role, pool)| pool.is_empty() || self.pool(role).is_some_and(|mine| mine.contains(pool)))
    }

    /// Removes `other`; returns false and leaves `self` unchanged unless it contains `other`.
    pub fn subtract(&mut self, other: &Resources) -> bool {
        if self.shares_with(other) {
            self.pools = None;
            return true;
        }
        if !self.contains(other) {
            return false;
        }
        if other.is_empty() {
            return true;
        }
        let pools = self.pools_mut();
        for (role, pool) in other.pools() {
            if let Ok(i) = pools.binary_search_by(|(r, _)| r.cmp(role))
                && let Some((_, mine)) = pools.get_mut(i)
            {
                mine.subtract(pool);
            }
        }
        self.tidy();
        true
    }

    /// The sum of the scalars over every role.
    #[inline]
    pub fn scalars(&self) -> Scalars {
        self.slice().iter().fold(Scalars::ZERO, |acc, (_, p)| acc.saturating_add(&p.scalars))
    }

    /// Every port, whatever its role.
    pub fn ports(&self) -> RangeSet {
        self.slice().iter().fold(RangeSet::new(), |acc, (_, p)| acc.union(&p.ports))
    }

    /// The part a framework in `role` may be offered: unreserved resources and those
    /// reserved for `role` or one of its ancestors.
    pub fn allocatable_to(&self, role: &Role) -> Resources {
        let allowed = |r: &Role| r.is_unreserved() || r.is_ancestor_or_self_of(role);
        if self.slice().iter().all(|(r, _)| allowed(r)) {
            return self.clone();
        }
        let pools: Vec<(Role, Pool)> = self.slice().iter().filter(|(r, _)| allowed(r)).cloned().collect();
        Resources { pools: (!pools.is_empty()).then(|| Arc::new(pools)) }
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (role, pool) in self.pools() {
            let tag = if role.is_unreserved() { String::new() } else { format!("({role})") };
            let s = &pool.scalars;
            if s.cpus_milli > 0 {
                parts.push(format!("cpus{tag}:{}", format_cpus(s.cpus_milli)));
            }
            if s.mem_mib > 0 {
                parts.push(format!("mem{tag}:{}", s.mem_mib));
            }
            if s.disk_mib > 0 {
                parts.push(format!("disk{tag}:{}", s.disk_mib));
            }
            if !pool.ports.is_empty() {
                parts.push(format!("ports{tag}:{}", pool.ports));
            }
        }
        f.write_str(&parts.join(";"))
    }
}

/// Formats thousandths of a CPU as a decimal without trailing zeros (`1500` → `1.5`).
pub fn format_cpus(cpus_milli: u64) -> String {
    let whole = cpus_milli / 1000;
    let frac = cpus_milli % 1000;
    if frac == 0 { whole.to_string() } else { format!("{whole}.{frac:03}").trim_end_matches('0').to_owned() }
}

/// Converts a CPU count given as a decimal (`0.1`, `4`) to thousandths.
pub fn cpus_to_milli(cpus: f64) -> Result<u64, ParseResourcesError> {
    if !cpus.is_finite() || cpus < 0.0 {
        return Err(ParseResourcesError::new(format!("cpus must be a non-negative number, got {cpus}")));
    }
    let milli = (cpus * 1000.0).round();
    if milli > MAX_CPUS_MILLI as f64 {
        return Err(ParseResourcesError::new(format!("cpus {cpus} is more than a million")));
    }
    // Quantities are kept in thousandths (as Mesos keeps them): a finer one is rounded,
    // but one that would round to nothing is refused instead of silently becoming 0.
    if milli == 0.0 && cpus > 0.0 {
        return Err(ParseResourcesError::new(format!("cpus {cpus} is below the precision of 0.001")));
    }
    Ok(milli as u64)
}

fn parse_cpus(value: &str) -> Result<u64, ParseResourcesError> {
    let cpus: f64 = value.parse().map_err(|_| ParseResourcesError::new(format!("cpus: {value:?} is not a number")))?;
    cpus_to_milli(cpus)
}

fn parse_mib(name: &str, value: &str) -> Result<u64, ParseResourcesError> {
    let mib: f64 =
        value.parse().map_err(|_| ParseResourcesError::new(format!("{name}: {value:?} is not a number of MiB")))?;
    if !mib.is_finite() || mib < 0.0 || mib > MAX_MIB as f64 {
        return Err(ParseResourcesError::new(format!("{name}: {value} is out of range")));
    }
    if mib > 0.0 && mib.round() == 0.0 {
        return Err(ParseResourcesError::new(format!("{name}: {value} is below the precision of 1 MiB")));
    }
    Ok(mib.round() as u64)
}

fn parse_ranges(value: &str) -> Result<RangeSet, ParseResourcesError> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| ParseResourcesError::new(format!("ports: {value:?} must look like [31000-32000]")))?;
    let mut ranges = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (b, e) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim()
                .parse::<u64>()
                .ok()
                .filter(|p| *p <= MAX_PORT)
                .ok_or_else(|| ParseResourcesError::new(format!("ports: {s:?} is not a port number (0-65535)")))
        };
        ranges.push((parse(b)?, parse(e)?));
    }
    RangeSet::from_ranges(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantity_below_the_precision_is_refused_instead_of_becoming_zero() {
        let refused = Resources::parse("cpus:0.0001").expect_err("below a thousandth");
        assert_eq!(refused.to_string(), "cpus 0.0001 is below the precision of 0.001");
        assert!(Resources::parse("mem:0.2").is_err());
        assert!(cpus_to_milli(0.0004).is_err());
        assert_eq!(cpus_to_milli(0.0005).ok(), Some(1));
        assert_eq!(cpus_to_milli(0.0).ok(), Some(0));
        assert_eq!(Resources::parse("cpus:0;mem:0").map(|r| r.is_empty()).ok(), Some(true));
    }

    #[test]
    fn a_repeated_entry_adds_up_as_in_mesos_within_the_bounds_of_one() {
        let r = Resources::parse("cpus:1;cpus:2;mem:10;ports:[1-5];ports:[4-9]").expect("valid");
        assert_eq!(r.to_string(), "cpus:3;mem:10;ports:[1-9]");
        // Found by the fuzz tests: a sum beyond what one entry may say would not print
        // back as something that parses.
        assert!(Resources::parse("disk:92988270691;disk:1006523357086").is_err());
    }

    #[test]
    fn the_mesos_agent_syntax_parses_and_prints_back() {
        let r = Resources::parse("cpus:4;mem:8192;disk:10000;ports:[31000-32000]").expect("valid");
        assert_eq!(r.scalars(), Scalars::new(4000, 8192, 10000));
        assert_eq!(r.ports().len(), 1001);
        assert_eq!(r.to_string(), "cpus:4;mem:8192;disk:10000;ports:[31000-32000]");
    }

    #[test]
    fn reserved_entries_keep_their_role() {
        let r = Resources::parse("cpus(eng):2;cpus:1.5;mem(eng/web):1024").expect("valid");
        let eng = Role::parse("eng").expect("role");
        assert_eq!(r.pool(&eng).map(|p| p.scalars.cpus_milli), Some(2000));
        assert_eq!(r.scalars().cpus_milli, 3500);
        let web = Role::parse("eng/web").expect("role");
        assert_eq!(r.allocatable_to(&web).scalars(), Scalars::new(3500, 1024, 0));
        assert_eq!(r.allocatable_to(&Role::parse("ops").expect("role")).scalars(), Scalars::new(1500, 0, 0));
    }

    #[test]
    fn bad_resource_strings_say_what_is_wrong() {
        for (input, needle) in [
            ("cpus:x", "not a number"),
            ("gpus:1", "unknown resource"),
            ("mem:-1", "out of range"),
            ("ports:31000-32000", "must look like"),
            ("ports:[5-1]", "ends before"),
            ("ports:[70000-70001]", "not a port"),
            ("cpus(..):1", "invalid role"),
            ("cpus", "expected NAME:VALUE"),
        ] {
            let err = Resources::parse(input).expect_err(input);
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn subtracting_then_adding_returns_exactly_to_the_start() {
        let total = Resources::parse("cpus:4;mem:8192;ports:[31000-32000]").expect("valid");
        let task = Resources::parse("cpus:0.1;mem:32;ports:[31005-31006]").expect("valid");
        let mut left = total.clone();
        for _ in 0..40 {
            assert!(left.subtract(&task) || !left.contains(&task));
            left.add(&task);
        }
        assert_eq!(left, total);
        let mut small = Resources::parse("cpus:0.05").expect("valid");
        assert!(!small.subtract(&task), "subtracting more than is there must fail");
        assert_eq!(small.scalars().cpus_milli, 50);
    }

    #[test]
    fn range_sets_merge_split_and_take() {
        let set = RangeSet::from_ranges([(10, 20), (21, 25), (30, 40)]).expect("valid");
        assert_eq!(set.ranges(), &[(10, 25), (30, 40)]);
        let hole = RangeSet::from_ranges([(12, 13), (35, 50)]).expect("valid");
        assert_eq!(set.difference(&hole).ranges(), &[(10, 11), (14, 25), (30, 34)]);
        assert_eq!(set.take_lowest(17).expect("enough").ranges(), &[(10, 25), (30, 30)]);
        assert!(set.take_lowest(100).is_none());
        assert!(set.contains(&RangeSet::from_ranges([(31, 33)]).expect("valid")));
        assert!(!set.contains(&RangeSet::from_ranges([(25, 30)]).expect("valid")));
    }

    #[test]
    fn merging_range_sets_folds_touching_and_overlapping_ranges() {
        let mut set = RangeSet::from_ranges([(10, 20), (50, 60)]).expect("valid");
        set.merge_from(&RangeSet::from_ranges([(21, 25), (5, 8), (30, 40), (55, 70)]).expect("valid"));
        assert_eq!(set.ranges(), &[(5, 8), (10, 25), (30, 40), (50, 70)]);
        set.merge_from(&RangeSet::new());
        assert_eq!(set.len(), 4 + 16 + 11 + 21);
    }

    #[test]
    fn a_changed_copy_leaves_the_original_alone() {
        let original = Resources::parse("cpus:4;mem:1024;cpus(eng):1;ports:[31000-31010]").expect("valid");
        let mut copy = original.clone();
        assert!(copy.subtract(&Resources::parse("cpus:1;ports:[31005-31005]").expect("valid")));
        copy.add(&Resources::parse("disk:10;mem(ops):5").expect("valid"));
        assert_eq!(original.to_string(), "cpus:4;mem:1024;ports:[31000-31010];cpus(eng):1");
        assert_eq!(copy.to_string(), "cpus:3;mem:1024;disk:10;ports:[31000-31004,31006-31010];cpus(eng):1;mem(ops):5");
        assert_ne!(original, copy);
    }

    #[test]
    fn subtracting_a_copy_empties_and_adding_to_nothing_equals_the_addend() {
        let offer = Resources::parse("cpus:2;ports:[31000-31001]").expect("valid");
        let mut free = offer.clone();
        assert!(free.subtract(&offer));
        assert!(free.is_empty());
        assert_eq!(free, Resources::new());
        assert!(!free.subtract(&offer), "nothing is left to subtract");
        free.add(&offer);
        assert_eq!(free, offer);
        free.add(&offer);
        assert_eq!(free.scalars().cpus_milli, 4000);
        assert_eq!(offer.scalars().cpus_milli, 2000, "the addend is not changed through the sum");
        assert_eq!(free.ports().ranges(), &[(31000, 31001)]);
    }

    #[test]
    fn resources_keep_the_debug_form_of_a_map_of_pools() {
        assert_eq!(
            format!("{:?}", Resources::parse("mem:3").expect("valid")),
            "Resources { pools: {Role(\"*\"): Pool { scalars: Scalars { cpus_milli: 0, mem_mib: 3, disk_mib: 0 }, ports: RangeSet([]) }} }"
        );
    }

    #[test]
    fn dominant_share_is_the_largest_fraction() {
        let total = Scalars::new(10_000, 1000, 0);
        assert_eq!(Scalars::new(1000, 500, 0).dominant_share_ppm(&total), 500_000);
        assert_eq!(Scalars::new(5000, 100, 7).dominant_share_ppm(&total), 500_000);
        // Beyond what u64 holds once scaled to parts per million: computed in u128.
        let huge = Scalars::new(u64::MAX / 2, 0, 0);
        assert_eq!(huge.dominant_share_ppm(&Scalars::new(u64::MAX, 1, 1)), 499_999);
        assert_eq!(Scalars::new(1, 2, 3).dominant_share_ppm(&Scalars::new(3, 0, 7)), 428_571);
    }
}
