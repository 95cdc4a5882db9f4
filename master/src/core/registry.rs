//! The master's records of agents, frameworks, tasks and offers, and the bookkeeping
//! that keeps their resource sums consistent.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use agora_proto::model::{
    AgentDescription, AgentId, AgentInfo, FrameworkId, FrameworkInfo, OfferId, Resources, Role, Scalars, StreamId,
    TaskId, TaskInfo, TaskState, TaskStatus, Unavailability,
};

use super::allocator::MinAllocatable;
use super::filter_slots::FilterSlots;
use super::prefetch::{prefetch, prefetch_prefix};
use super::{ConnId, DrainInfo, StatusEntry, TaskView};

/// Statuses kept per task for `/state`; older ones are dropped first.
pub(crate) const MAX_STATUSES_PER_TASK: usize = 16;

/// The master's record of one agent.
///
/// Laid out by hand (`repr(C)`, aligned to a cache line), with what an allocation round
/// reads and writes first: the round visits agents in random order and each visit waits
/// for the record's lines, so the hot fields fill the first three (`AGENT_HOT_BYTES`,
/// which the round prefetches) instead of all six lines the compiler's layout spread
/// them over.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub(crate) struct AgentRecord {
    // ----- read when a round reaches the agent, and by the table's sums (the first two lines) -----
    /// False once the agent missed its heartbeats for `agent_timeout_ms`; only a
    /// re-registration makes it reachable again.
    pub reachable: bool,
    consistent: bool,
    /// Not offered by the operator's word (DEACTIVATE_AGENT, a drain); tasks run on.
    pub deactivated: bool,
    /// The scalars of `free` and of `info.resources`, for the round and the table's sums.
    pub free_scalars: Scalars,
    pub total_scalars: Scalars,
    /// `info.resources` − `used` − `offered`, kept up to date on every change instead of
    /// being rebuilt each round; empty when the sums are inconsistent (`consistent` is
    /// false then), so that a bookkeeping bug can never turn into an over-commitment.
    free: Resources,
    /// The agent's current connection; `None` while it is disconnected.
    pub conn: Option<ConnId>,
    /// The allocation epoch at which a round found free resources here that no client
    /// could take; the allocator skips the agent until the epoch moves on or something
    /// changes on the agent (which resets this to `None`).
    pub stuck_epoch: Option<u64>,
    // ----- read or changed by each offer of the agent -----
    /// Resources in outstanding offers; changed only through `add_offered`, `remove_offered`.
    offered: Resources,
    /// Numbers of the outstanding offers on this agent (see `OfferBook`), oldest first.
    pub offers: Vec<u64>,
    /// Filter slots of the frameworks that filter this agent: the allocator checks a
    /// filter in a set of integers (a sorted vector or a bitmap) instead of a map of
    /// strings.
    pub filtered_by: FilterSlots,
    /// `info`'s hostname and attributes and the agent's `http://hostname:port`, shared
    /// by every offer of the agent (a copy is a reference count).
    pub description: Arc<AgentDescription>,
    /// The agent's id, the same as its key in `Master::agents`: every offer holds a copy,
    /// read here rather than from the map's node, one cache line fewer per offer.
    pub id: AgentId,
    // ----- the rest (`AGENT_HOT_BYTES` ends here) -----
    pub info: AgentInfo,
    /// When the agent became unreachable; its re-register timeout counts from here.
    pub unreachable_since_ms: Option<u64>,
    pub last_seen_ms: u64,
    pub registered_at_ms: u64,
    /// Resources held by the agent's live tasks (unreachable ones included: they may run).
    /// Private, and changed only through `add_used`, `remove_used` (and `set_resources`
    /// for `info`), so that `free` stays true.
    used: Resources,
    pub tasks: BTreeSet<(FrameworkId, TaskId)>,
    /// The operator's drain of the agent, if any.
    pub drain: Option<DrainInfo>,
    /// When the agent's machine is scheduled to be unavailable (its window's), if it is;
    /// changed only through `set_unavailability`, so that the description follows.
    unavailability: Option<Unavailability>,
}

/// The leading bytes of an `AgentRecord` that a round touches (see the record's layout).
pub(crate) const AGENT_HOT_BYTES: usize = std::mem::offset_of!(AgentRecord, info);
// A field added to the hot part must not cost every offer another line.
const _: () = assert!(AGENT_HOT_BYTES <= 3 * 64, "an agent's hot fields fit three cache lines");

impl AgentRecord {
    pub fn new(id: AgentId, info: AgentInfo, conn: ConnId, now_ms: u64) -> Self {
        let mut agent = Self {
            id,
            info,
            conn: Some(conn),
            reachable: true,
            deactivated: false,
            drain: None,
            unreachable_since_ms: None,
            last_seen_ms: now_ms,
            registered_at_ms: now_ms,
            used: Resources::new(),
            offered: Resources::new(),
            free: Resources::new(),
            consistent: true,
            total_scalars: Scalars::ZERO,
            free_scalars: Scalars::ZERO,
            description: Arc::new(AgentDescription {
                hostname: String::new(),
                attributes: Vec::new(),
                url: String::new(),
                unavailability: None,
            }),
            unavailability: None,
            tasks: BTreeSet::new(),
            offers: Vec::new(),
            filtered_by: FilterSlots::default(),
            stuck_epoch: None,
        };
        agent.refresh();
        agent.describe();
        agent
    }

    /// Connected and reachable: the only state in which the agent is offered.
    pub fn is_active(&self) -> bool {
        self.reachable && self.conn.is_some()
    }

    /// Active and not deactivated by the operator: the only state in which it is offered.
    pub fn is_offerable(&self) -> bool {
        self.is_active() && !self.deactivated
    }

    pub fn used(&self) -> &Resources {
        &self.used
    }

    pub fn offered(&self) -> &Resources {
        &self.offered
    }

    /// Resources neither used nor offered. Empty if the sums are inconsistent, so that a
    /// bookkeeping bug can never turn into an over-commitment. A copy costs nothing: it
    /// shares the agent's pools.
    pub fn free(&self) -> Resources {
        self.free.clone()
    }

    /// Whether `resources` are free here; every grant is checked this way once more.
    pub fn has_free(&self, resources: &Resources) -> bool {
        self.free.contains(resources)
    }

    /// Recomputes what is derived from `info`, `used` and `offered`.
    fn refresh(&mut self) {
        let mut free = self.info.resources.clone();
        self.consistent = free.subtract(&self.used) && free.subtract(&self.offered);
        self.free = if self.consistent { free } else { Resources::new() };
        self.total_scalars = self.info.resources.scalars();
        self.free_scalars = self.free.scalars();
    }

    /// Recomputes what offers share of `info`: hostname, attributes and URL.
    fn describe(&mut self) {
        self.description = Arc::new(self.described());
    }

    /// The description `info` and the machine's unavailability give.
    fn described(&self) -> AgentDescription {
        AgentDescription {
            hostname: self.info.hostname.clone(),
            attributes: self.info.attributes.clone(),
            url: format!("http://{}:{}", self.info.hostname, self.info.port),
            unavailability: self.unavailability,
        }
    }

    /// Sets when the agent's machine is scheduled to be unavailable, which its offers say.
    pub fn set_unavailability(&mut self, unavailability: Option<Unavailability>) {
        self.unavailability = unavailability;
        self.describe();
    }

    /// Replaces the agent's description (a re-registration) and what derives from it.
    pub fn set_info(&mut self, info: AgentInfo) {
        self.info = info;
        self.refresh();
        self.describe();
    }

    /// Replaces the agent's resources (a reservation changed them).
    pub fn set_resources(&mut self, resources: Resources) {
        self.info.resources = resources;
        self.refresh();
    }

    /// `resources` leave the free part (`taken`) or come back to it; `apply` changes the
    /// used or offered sum accordingly. The free part follows in step while the sums are
    /// consistent, and is recomputed otherwise.
    fn shift(&mut self, resources: &Resources, taken: bool, apply: impl FnOnce(&mut Self) -> bool) {
        let applied = apply(self);
        let followed = applied
            && self.consistent
            && if taken {
                self.free.subtract(resources)
            } else {
                self.free.add(resources);
                true
            };
        if followed {
            self.free_scalars = self.free.scalars();
        } else {
            self.refresh();
        }
    }

    pub fn add_offered(&mut self, resources: &Resources) {
        if self.consistent && move_whole(&mut self.free, &mut self.offered, resources) {
            self.free_scalars = Scalars::ZERO;
            return;
        }
        self.shift(resources, true, |a| {
            a.offered.add(resources);
            true
        });
    }

    pub fn remove_offered(&mut self, resources: &Resources) {
        if self.consistent && move_whole(&mut self.offered, &mut self.free, resources) {
            self.free_scalars = self.free.scalars();
            return;
        }
        self.shift(resources, false, |a| a.offered.subtract(resources));
    }

    pub fn add_used(&mut self, resources: &Resources) {
        self.shift(resources, true, |a| {
            a.used.add(resources);
            true
        });
    }

    pub fn remove_used(&mut self, resources: &Resources) {
        self.shift(resources, false, |a| a.used.subtract(resources));
    }

    /// Prefetches the lines a round reads and writes (`AGENT_HOT_BYTES`) of the record in
    /// the table slot at `slot`, from its address alone.
    pub fn prefetch_hot(slot: *const Option<AgentRecord>) {
        // An `Option` may put its tag before the record: the hot part starts that much later.
        const TAG: usize = std::mem::size_of::<Option<AgentRecord>>() - std::mem::size_of::<AgentRecord>();
        prefetch_prefix(slot, TAG + AGENT_HOT_BYTES);
    }

    /// Whether a round at `epoch` should offer the agent: offerable, with free resources worth
    /// offering (on the cached scalars), and not found stuck at this epoch already.
    pub fn is_worth_a_visit(&self, min: MinAllocatable, epoch: u64) -> bool {
        self.is_offerable() && min.admits_scalars(&self.free_scalars) && self.stuck_epoch != Some(epoch)
    }

    /// Prefetches the separate allocations an offer of this agent touches once the
    /// record itself is in the cache: the free pools' shared allocation, the filter
    /// slots, the offer numbers, the offered sum, and the reference counts of the
    /// description and the id the offer shares. See `prefetch`.
    pub fn prefetch_offer_data(&self) {
        if let Some((shared, _)) = self.free.pools_addr() {
            prefetch(shared);
        }
        if let Some((shared, _)) = self.offered.pools_addr() {
            prefetch(shared);
        }
        self.filtered_by.prefetch();
        prefetch(self.offers.as_ptr());
        prefetch(arc_counts(&self.description));
        prefetch(self.id.as_str().as_ptr().wrapping_sub(2 * std::mem::size_of::<usize>()));
    }

    /// Prefetches the elements of the free pools, once their shared allocation (which
    /// holds the elements' address) is in the cache.
    pub fn prefetch_free_pools(&self) {
        if let Some((_, elements)) = self.free.pools_addr() {
            prefetch(elements);
        }
    }

    /// Whether the cached free part is what `info`, `used` and `offered` give; for the
    /// invariant check.
    pub fn free_is_exact(&self) -> bool {
        let mut free = self.info.resources.clone();
        let consistent = free.subtract(&self.used) && free.subtract(&self.offered);
        let expected = if consistent { free } else { Resources::new() };
        self.consistent == consistent
            && self.free == expected
            && self.free_scalars == expected.scalars()
            && self.total_scalars == self.info.resources.scalars()
    }

    /// Whether the hostname, attributes and URL that offers share are `info`'s; for the
    /// invariant check.
    pub fn description_is_exact(&self) -> bool {
        *self.description == self.described()
    }
}

/// Moves `from`'s pools to `to` when `resources` are all of them (shared, not equal) and
/// `to` is empty: the sums change as `to.add(resources)` and `from.subtract(resources)`
/// would change them, without a reference count taken and another dropped. That is an
/// offer of everything free, and such an offer given back. Returns whether it moved.
fn move_whole(from: &mut Resources, to: &mut Resources, resources: &Resources) -> bool {
    if !to.is_empty() || !from.shares_with(resources) {
        return false;
    }
    *to = std::mem::take(from);
    true
}

/// Where an `Arc`'s reference counts are: the two words before its data.
pub(crate) fn arc_counts<T: ?Sized>(arc: &Arc<T>) -> *const u8 {
    Arc::as_ptr(arc).cast::<u8>().wrapping_sub(2 * std::mem::size_of::<usize>())
}

/// A live task. Frameworks hold their tasks boxed (`FrameworkRecord::tasks`), so that the
/// map's nodes, often half full, hold pointers rather than whole records.
#[derive(Clone, Debug)]
pub(crate) struct TaskRecord {
    /// Shared with the task's views (the read model holds one per task), never copied.
    pub info: Arc<TaskInfo>,
    pub state: TaskState,
    /// Oldest first, at most `MAX_STATUSES_PER_TASK`, and no spare capacity: a task keeps
    /// a few entries for as long as it runs, and most tasks are running ones.
    statuses: Vec<StatusEntry>,
    /// The framework asked to kill the task while its agent could not be told; the kill
    /// is sent when the agent re-registers.
    pub kill_pending: bool,
    /// The role the task's resources are accounted to (its offer's allocation role).
    pub role: Role,
}

impl TaskRecord {
    /// A task accounted to the role its resources are reserved for, else to `*`; a
    /// launch from an offer sets the offer's role instead.
    pub fn new(info: TaskInfo, status: &TaskStatus) -> Self {
        let state = status.state;
        let role = info.resources.pools().map(|(r, _)| r).find(|r| !r.is_unreserved()).cloned();
        let role = role.unwrap_or_else(Role::unreserved);
        Self { info: Arc::new(info), state, statuses: vec![StatusEntry::from(status)], kill_pending: false, role }
    }

    pub fn record(&mut self, status: &TaskStatus) {
        self.state = status.state;
        if self.statuses.len() >= MAX_STATUSES_PER_TASK {
            self.statuses.remove(0);
        }
        self.statuses.reserve_exact(1);
        self.statuses.push(StatusEntry::from(status));
    }

    pub fn latest(&self) -> Option<&StatusEntry> {
        self.statuses.last()
    }

    pub fn statuses(&self) -> &[StatusEntry] {
        &self.statuses
    }

    pub fn view(&self, framework_id: &FrameworkId) -> TaskView {
        TaskView {
            info: self.info.clone(),
            framework_id: framework_id.clone(),
            state: self.state,
            statuses: self.statuses().to_vec(),
        }
    }
}

/// The master's record of one framework.
///
/// Laid out by hand (`repr(C)`, aligned to a cache line) like `AgentRecord`: each offer
/// a round makes reads and changes its framework's stream, offer sums, per-role charges
/// and offer numbers, and with a thousand frameworks those records do not all stay in
/// the nearest cache; together in the first two lines, they are two lines to wait for,
/// not four spread over the record.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub(crate) struct FrameworkRecord {
    // ----- read or changed by each offer made to the framework -----
    /// The current subscription; `None` while disconnected (or never subscribed to this
    /// master, for a framework known only from its agents' tasks).
    pub stream: Option<StreamId>,
    /// Totals over the framework's outstanding offers and live tasks. Only scalars: port
    /// numbers of different agents cannot be summed, and DRF needs only the scalars.
    pub offered_scalars: Scalars,
    /// Used + offered by role, for the allocator's per-role shares. No zero entries.
    pub allocated: RoleCharges,
    /// Numbers of the framework's outstanding offers (see `OfferBook`).
    pub offers: OfferNumbers,
    /// The framework's number in agents' `filtered_by`, given when it first filters one.
    pub filter_slot: Option<u64>,
    /// A round passed the framework over for holding `max_offers_per_framework` offers:
    /// agents found stuck meanwhile may be its once it gives one back.
    pub offer_capped: bool,
    // ----- the rest -----
    pub used_scalars: Scalars,
    pub info: FrameworkInfo,
    pub registered_at_ms: u64,
    /// When the framework disconnected; its failover timeout counts from here.
    pub unregistered_at_ms: Option<u64>,
    pub suppressed: BTreeSet<Role>,
    /// Agents this framework declined, until when (exclusive).
    pub filters: BTreeMap<AgentId, u64>,
    pub tasks: BTreeMap<TaskId, Box<TaskRecord>>,
    pub completed_tasks: VecDeque<TaskView>,
}

const _: () = assert!(
    std::mem::offset_of!(FrameworkRecord, used_scalars) <= 2 * 64,
    "a framework's hot fields fit two cache lines"
);

impl FrameworkRecord {
    pub fn new(info: FrameworkInfo, now_ms: u64) -> Self {
        Self {
            info,
            stream: None,
            registered_at_ms: now_ms,
            unregistered_at_ms: Some(now_ms),
            suppressed: BTreeSet::new(),
            filters: BTreeMap::new(),
            tasks: BTreeMap::new(),
            completed_tasks: VecDeque::new(),
            offers: OfferNumbers::default(),
            used_scalars: Scalars::ZERO,
            offered_scalars: Scalars::ZERO,
            allocated: RoleCharges::default(),
            filter_slot: None,
            offer_capped: false,
        }
    }

    pub fn is_active(&self) -> bool {
        self.stream.is_some()
    }

    /// The framework's first role: what tasks adopted from agents are accounted to.
    pub fn first_role(&self) -> Role {
        self.info.roles.first().cloned().unwrap_or_else(Role::unreserved)
    }

    /// Accounts resources taken (offered or used) for `role`.
    #[inline]
    pub fn charge(&mut self, role: &Role, scalars: &Scalars) {
        if scalars.is_zero() {
            return;
        }
        // Most charges are an offer's, to the framework's one role: the first entry,
        // holding the very name charged. That much inline, on every offer made; the
        // entry it finds is the one `find` would.
        if let Some((r, entry)) = self.allocated.0.first_mut()
            && std::ptr::eq(r.as_str(), role.as_str())
        {
            *entry = entry.saturating_add(scalars);
            return;
        }
        self.charge_found(role, scalars);
    }

    /// `charge` of a role that is not the first entry's very name.
    fn charge_found(&mut self, role: &Role, scalars: &Scalars) {
        match self.allocated.find(role) {
            Ok(at) => {
                if let Some((_, entry)) = self.allocated.0.get_mut(at) {
                    *entry = entry.saturating_add(scalars);
                }
            }
            Err(at) => self.allocated.0.insert(at, (role.clone(), *scalars)),
        }
    }

    /// Gives back resources accounted to `role`.
    pub fn refund(&mut self, role: &Role, scalars: &Scalars) {
        let Ok(at) = self.allocated.find(role) else { return };
        if let Some((_, entry)) = self.allocated.0.get_mut(at) {
            *entry = entry.saturating_sub(scalars);
            if entry.is_zero() {
                self.allocated.0.remove(at);
            }
        }
    }
}

/// What a framework holds per role (offered and used), sorted by role, no zero entries.
/// A framework has one role or a few, so a vector beats a B-tree, and the role an offer
/// is charged to is usually the very name the entry holds (shared), found by its address
/// before any string is compared.
#[derive(Clone, Debug, Default)]
pub(crate) struct RoleCharges(Vec<(Role, Scalars)>);

/// Up to this many entries, `RoleCharges::find` first looks for the role's address.
const ROLE_CHARGES_SCANNED: usize = 8;

impl RoleCharges {
    /// Where `role` is (`Ok`) or would go (`Err`).
    #[inline]
    fn find(&self, role: &Role) -> Result<usize, usize> {
        if self.0.len() <= ROLE_CHARGES_SCANNED
            && let Some(at) = self.0.iter().position(|(r, _)| std::ptr::eq(r.as_str(), role.as_str()))
        {
            return Ok(at);
        }
        self.0.binary_search_by(|(r, _)| r.cmp(role))
    }

    pub fn get(&self, role: &Role) -> Option<&Scalars> {
        self.find(role).ok().and_then(|at| self.0.get(at)).map(|(_, s)| s)
    }

    pub fn keys(&self) -> impl Iterator<Item = &Role> + '_ {
        self.0.iter().map(|(r, _)| r)
    }

    pub fn values(&self) -> impl Iterator<Item = &Scalars> + '_ {
        self.0.iter().map(|(_, s)| s)
    }

    /// The entries, by role.
    pub fn iter(&self) -> impl Iterator<Item = (&Role, &Scalars)> + '_ {
        self.0.iter().map(|(r, s)| (r, s))
    }
}

/// A framework's outstanding offer numbers, in increasing order. Numbers are minted
/// increasing, so a new one goes at the end of a vector (a B-tree insert cost ten times
/// more, on every offer made); an offer that ends is marked ended in place (found by
/// binary search) and the ended ones are dropped when they reach the end or outnumber
/// the live ones, so that ending offers in any order stays O(log n) amortized.
#[derive(Clone, Debug, Default)]
pub(crate) struct OfferNumbers {
    /// `n << 1`, with the low bit set once offer `n` ended; increasing.
    entries: Vec<u64>,
    live: usize,
}

impl OfferNumbers {
    /// Adds `n`, which must be higher than any number added before.
    pub fn insert(&mut self, n: u64) {
        debug_assert!(self.entries.last().is_none_or(|&last| last >> 1 < n), "offer numbers increase");
        debug_assert!(n < 1 << 63, "an offer number leaves room for the ended bit");
        self.entries.push(n << 1);
        self.live += 1;
    }

    /// Removes `n`; returns whether it was there.
    pub fn remove(&mut self, n: u64) -> bool {
        let Ok(at) = self.entries.binary_search_by_key(&n, |&e| e >> 1) else { return false };
        let Some(entry) = self.entries.get_mut(at).filter(|e| **e & 1 == 0) else { return false };
        *entry |= 1;
        self.live -= 1;
        while self.entries.last().is_some_and(|&e| e & 1 == 1) {
            self.entries.pop();
        }
        if self.entries.len() > 2 * self.live + 8 {
            self.entries.retain(|&e| e & 1 == 0);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The outstanding numbers, increasing.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().filter(|&&e| e & 1 == 0).map(|&e| e >> 1)
    }
}

/// An outstanding offer as the master keeps it: what it holds and for whom. The agent's
/// description is in the OFFERS event, not here, and so is the id: the book files the
/// offer under the number the id is formed from (`OfferBook::id`).
#[derive(Clone, Debug)]
pub(crate) struct HeldOffer {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
}

#[derive(Clone, Debug)]
pub(crate) struct OfferRecord {
    pub offer: HeldOffer,
    /// The framework role the offer was made for.
    pub role: Role,
}

/// The outstanding offers. The master names offers `{master_id}-O{n}` with `n` counting
/// up, and files them under `n`: an id is looked up by its number, which only an id in
/// this form has (`OfferId::number_after` takes the prefix and the canonical digits
/// alone), so an id the master did not mint in this form is simply not found, and the
/// record filed under `n` is offer `{master_id}-O{n}` without holding its id. Numbers are
/// minted consecutively, so the book is a window indexed by `n - base` (no hashing: making
/// an offer is a push at the back, ending one a `take` in place, and ended slots at the
/// front are popped). An offer that outlives many newer ones would keep the window long,
/// so when the window holds more than twice as many ended slots as live ones, its older
/// half moves to `old`, a B-tree of the offers older than the window. Whoever lists the
/// offers gets them in number order (`values`), never in hash order.
#[derive(Debug)]
pub(crate) struct OfferBook {
    /// `{master_id}-O`, shared by every id minted.
    prefix: Arc<str>,
    /// The number of `window`'s first slot; every number in `old` is lower.
    base: u64,
    /// Offer `base + i` in slot `i`, `None` once it ended (or if it was never filed).
    window: VecDeque<Option<OfferRecord>>,
    /// Outstanding offers in `window`.
    live: usize,
    /// Outstanding offers older than `base`.
    old: BTreeMap<u64, OfferRecord>,
}

/// Ended slots a window may hold beyond twice its live ones before its older half moves
/// to `OfferBook::old`.
const WINDOW_SLACK: usize = 64;

impl OfferBook {
    pub fn new(master_id: &str) -> Self {
        let prefix = Arc::from(format!("{master_id}-O"));
        Self { prefix, base: 0, window: VecDeque::new(), live: 0, old: BTreeMap::new() }
    }

    /// The id of offer number `n`: the shared prefix and the number, no allocation.
    pub fn id(&self, n: u64) -> OfferId {
        OfferId::numbered(&self.prefix, n)
    }

    /// The number of an id minted by `id`.
    pub fn key(&self, id: &OfferId) -> Option<u64> {
        let n = id.number_after(&self.prefix)?;
        self.by_key(n).map(|_| n)
    }

    pub fn get(&self, id: &OfferId) -> Option<&OfferRecord> {
        self.key(id).and_then(|n| self.by_key(n))
    }

    pub fn by_key(&self, n: u64) -> Option<&OfferRecord> {
        match n.checked_sub(self.base) {
            Some(at) => self.window.get(usize::try_from(at).ok()?)?.as_ref(),
            None => self.old.get(&n),
        }
    }

    /// Files offer `n`, whose number is higher than any filed before.
    #[inline]
    pub fn insert(&mut self, n: u64, record: OfferRecord) {
        debug_assert!(n >= self.base + self.window.len() as u64, "offer numbers increase");
        if self.window.is_empty() {
            self.base = n;
        } else if n != self.base + self.window.len() as u64 {
            self.skip_to(n);
        }
        self.window.push_back(Some(record));
        self.live += 1;
        if self.window.len() > 2 * self.live + WINDOW_SLACK {
            self.shorten();
        }
    }

    /// Makes `n` the number after the window's last slot, `n` being higher than that.
    #[cold]
    fn skip_to(&mut self, n: u64) {
        let end = self.base + self.window.len() as u64;
        let gap = usize::try_from(n.saturating_sub(end)).unwrap_or(usize::MAX);
        if gap > self.window.len() + WINDOW_SLACK {
            // Far ahead (numbers skipped): start a new window rather than fill the gap.
            self.spill(self.window.len());
            self.base = n;
        } else {
            self.window.resize_with(self.window.len() + gap, || None);
        }
    }

    /// Spills the window's older half until it holds no more than twice as many ended
    /// slots as live ones (and the slack).
    #[cold]
    fn shorten(&mut self) {
        while self.window.len() > 2 * self.live + WINDOW_SLACK {
            self.spill(self.window.len() / 2);
        }
    }

    /// Moves the window's first `count` slots to `old` (amortized: each slot is pushed
    /// and popped once).
    fn spill(&mut self, count: usize) {
        for _ in 0..count {
            let Some(slot) = self.window.pop_front() else { break };
            if let Some(record) = slot {
                self.live -= 1;
                self.old.insert(self.base, record);
            }
            self.base += 1;
        }
        self.trim();
    }

    /// Pops ended slots off the window's front.
    fn trim(&mut self) {
        while self.window.front().is_some_and(Option::is_none) {
            self.window.pop_front();
            self.base += 1;
        }
    }

    pub fn remove(&mut self, n: u64) -> Option<OfferRecord> {
        let Some(at) = n.checked_sub(self.base) else { return self.old.remove(&n) };
        let record = self.window.get_mut(usize::try_from(at).ok()?)?.take()?;
        self.live -= 1;
        if at == 0 {
            self.trim();
        }
        Some(record)
    }

    /// Every outstanding offer, oldest first.
    pub fn values(&self) -> impl Iterator<Item = &OfferRecord> + '_ {
        self.old.values().chain(self.window.iter().flatten())
    }

    /// Every outstanding offer with its number, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &OfferRecord)> + '_ {
        let window = (self.base..).zip(&self.window).filter_map(|(n, slot)| Some((n, slot.as_ref()?)));
        self.old.iter().map(|(&n, record)| (n, record)).chain(window)
    }

    pub fn len(&self) -> usize {
        self.live + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> OfferRecord {
        let offer = HeldOffer {
            framework_id: FrameworkId::new("f"),
            agent_id: AgentId::new("a"),
            resources: Resources::parse("cpus:1").expect("valid"),
        };
        OfferRecord { offer, role: Role::unreserved() }
    }

    #[test]
    fn offer_ids_are_the_prefix_and_the_number_and_only_those_are_found() {
        let mut book = OfferBook::new("m");
        assert_eq!(book.id(0).to_string(), "m-O0");
        assert_eq!(book.id(7).to_string(), "m-O7");
        assert_eq!(book.id(1_234_567_890).to_string(), "m-O1234567890");
        assert_eq!(book.id(u64::MAX).to_string(), format!("m-O{}", u64::MAX));
        let long = "x".repeat(300);
        assert_eq!(OfferBook::new(&long).id(42).to_string(), format!("{long}-O42"));

        book.insert(7, record());
        assert_eq!(book.key(&OfferId::new("m-O7")), Some(7));
        assert!(book.get(&OfferId::new("m-O7")).is_some());
        for other in ["m-O07", "m-O+7", "n-O7", "m-O8", "m-O", "m-O7x", "O7", ""] {
            assert_eq!(book.key(&OfferId::new(other)), None, "{other}");
        }
        assert!(book.remove(7).is_some());
        assert_eq!(book.key(&OfferId::new("m-O7")), None);
        assert!(book.remove(7).is_none(), "an offer ends once");
        assert_eq!(book.len(), 0);
    }

    #[test]
    fn offer_numbers_answer_as_a_sorted_set_whatever_order_offers_end_in() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut numbers = OfferNumbers::default();
        let mut reference: BTreeSet<u64> = BTreeSet::new();
        let mut next = 1;
        for step in 0..20_000 {
            if rng.random_bool(0.5) {
                numbers.insert(next);
                reference.insert(next);
                next += rng.random_range(1..4);
            } else {
                let n = rng.random_range(next.saturating_sub(60)..next + 2);
                assert_eq!(numbers.remove(n), reference.remove(&n), "step {step}");
            }
            assert_eq!(numbers.len(), reference.len());
            assert!(numbers.entries.len() <= 2 * numbers.len() + 8, "ended entries do not pile up");
            if step % 100 == 0 {
                assert!(numbers.iter().eq(reference.iter().copied()), "step {step}");
            }
        }
    }

    #[test]
    fn ended_offers_free_their_slots_and_offers_are_listed_by_number() {
        let mut book = OfferBook::new("m");
        for n in [9, 10, 11] {
            book.insert(n, record());
        }
        assert!(book.remove(10).is_some());
        assert!(book.remove(9).is_some());
        book.insert(12, record());
        assert_eq!((book.base, book.window.len()), (11, 2), "ended slots at the front are popped");
        book.insert(9_000, record());
        assert_eq!(book.window.len(), 1, "a far number starts a new window");
        let listed: Vec<String> = book.iter().map(|(n, _)| book.id(n).to_string()).collect();
        assert_eq!(listed, ["m-O11", "m-O12", "m-O9000"]);
        assert_eq!(book.by_key(12).map(|_| book.id(12).to_string()).as_deref(), Some("m-O12"));
        assert!(book.by_key(10).is_none() && book.by_key(9).is_none());
        assert_eq!(book.len(), 3);
    }

    #[test]
    fn the_offer_book_answers_as_a_sorted_map_and_its_window_stays_short() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut book = OfferBook::new("m");
        let mut reference: BTreeMap<u64, String> = BTreeMap::new();
        let mut next = 0;
        for step in 0..40_000 {
            let step_removed = rng.random_bool(0.5);
            if !step_removed {
                book.insert(next, record());
                reference.insert(next, book.id(next).to_string());
                next += if rng.random_bool(0.01) { rng.random_range(1..500) } else { 1 };
            } else {
                // Mostly recent offers; now and then one from long ago.
                let back = if rng.random_bool(0.05) { next } else { 80 };
                let n = rng.random_range(next.saturating_sub(back)..next + 2);
                let got = book.remove(n).map(|_| book.id(n).to_string());
                assert_eq!(got, reference.remove(&n), "step {step}");
            }
            assert_eq!(book.len(), reference.len());
            // (Checked after each insert: ending offers only shortens the window or leaves it.)
            assert!(book.window.len() <= 2 * book.live + WINDOW_SLACK || step_removed, "step {step}");
            assert!(book.old.keys().next_back().is_none_or(|&n| n < book.base));
            if step % 97 == 0 {
                let listed: Vec<String> = book.iter().map(|(n, _)| book.id(n).to_string()).collect();
                assert!(listed.iter().eq(reference.values()), "step {step}");
                for (&n, id) in reference.iter().take(20) {
                    assert_eq!(book.key(&OfferId::new(id)), Some(n));
                }
            }
        }
        assert!(!book.old.is_empty(), "the test reached the spill");
    }

    #[test]
    fn a_task_keeps_its_latest_statuses_oldest_first_and_no_spare_room() {
        let info = TaskInfo {
            task_id: TaskId::new("t"),
            name: "t".to_owned(),
            agent_id: AgentId::new("a"),
            resources: Resources::parse("cpus:1").expect("valid"),
            command: Default::default(),
            labels: Vec::new(),
            kill_grace_period_ms: None,
            health_check: None,
            readiness_check: None,
        };
        let status = |n: u64| {
            let mut status = TaskStatus::from_master(
                TaskId::new("t"),
                Some(AgentId::new("a")),
                TaskState::TaskRunning,
                agora_proto::model::TaskStatusReason::Unspecified,
                if n.is_multiple_of(2) { String::new() } else { format!("update {n}") },
                n,
            );
            status.exit_code = Some(n as i32);
            status
        };
        let mut task = TaskRecord::new(info, &status(0));
        for n in 1..3 {
            task.record(&status(n));
        }
        assert_eq!(task.statuses.capacity(), 3, "held statuses keep no spare capacity");
        for n in 3..40 {
            task.record(&status(n));
        }
        let kept: Vec<u64> = task.statuses().iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(kept, (24..40).collect::<Vec<u64>>());
        assert_eq!(task.statuses.capacity(), MAX_STATUSES_PER_TASK);
        let latest = task.latest().expect("a status");
        assert_eq!((&*latest.message, latest.exit_code), ("update 39", Some(39)));
        assert_eq!(task.view(&FrameworkId::new("f")).statuses, task.statuses());
    }

    fn agent(resources: &str) -> AgentRecord {
        let info = AgentInfo {
            hostname: "h".into(),
            port: 5051,
            resources: Resources::parse(resources).expect("valid"),
            attributes: vec![],
        };
        AgentRecord::new(AgentId::new("a"), info, ConnId(1), 0)
    }

    #[test]
    fn an_agents_free_part_follows_its_offers_and_tasks() {
        let mut a = agent("cpus:4;mem:1024;ports:[1-10]");
        assert_eq!(a.description.url, "http://h:5051");
        assert!(a.description_is_exact());
        assert_eq!(a.free_scalars, Scalars::new(4000, 1024, 0));
        let task = Resources::parse("cpus:1;mem:100;ports:[3-4]").expect("valid");
        a.add_used(&task);
        assert!(a.free_is_exact());
        assert_eq!(a.free().to_string(), "cpus:3;mem:924;ports:[1-2,5-10]");
        // Offering everything free leaves nothing, and the offer coming back restores it.
        let offer = a.free();
        a.add_offered(&offer);
        assert!(a.free().is_empty() && a.free_scalars.is_zero() && a.free_is_exact());
        assert!(!a.has_free(&Resources::parse("cpus:0.1").expect("valid")));
        a.remove_offered(&offer);
        assert!(a.free_is_exact());
        assert_eq!(a.free().to_string(), "cpus:3;mem:924;ports:[1-2,5-10]");
        a.remove_used(&task);
        assert!(a.free_is_exact());
        assert_eq!(a.free(), a.info.resources);
        assert_eq!(a.free_scalars, a.total_scalars);
    }

    #[test]
    fn an_inconsistent_agent_has_nothing_free_until_its_sums_agree_again() {
        let mut a = agent("cpus:2;mem:100");
        let too_much = Resources::parse("cpus:3").expect("valid");
        a.add_offered(&too_much);
        assert!(a.free().is_empty(), "an over-commitment offers nothing more");
        assert!(a.free_is_exact());
        a.add_used(&Resources::parse("mem:10").expect("valid"));
        assert!(a.free().is_empty() && a.free_is_exact());
        a.remove_offered(&too_much);
        assert!(a.free_is_exact());
        assert_eq!(a.free().to_string(), "cpus:2;mem:90");
        a.set_resources(Resources::parse("cpus:1;mem:50").expect("valid"));
        assert_eq!(a.free().to_string(), "cpus:1;mem:40");
        assert_eq!(a.total_scalars, Scalars::new(1000, 50, 0));
        assert!(a.free_is_exact());
    }

    #[test]
    fn stored_resources_keep_their_json_form() {
        let r = Resources::parse("cpus:1;ports:[1-2];mem(eng):3").expect("valid");
        let json = serde_json::to_string(&r).expect("serializes");
        assert_eq!(
            json,
            r#"{"pools":{"*":{"scalars":{"cpus_milli":1000,"mem_mib":0,"disk_mib":0},"ports":[[1,2]]},"eng":{"scalars":{"cpus_milli":0,"mem_mib":3,"disk_mib":0},"ports":[]}}}"#
        );
        let back: Resources = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, r);
        let id: AgentId = serde_json::from_str(r#""m-S1""#).expect("deserializes");
        assert_eq!((id.as_str(), serde_json::to_string(&id).expect("serializes").as_str()), ("m-S1", r#""m-S1""#));
        let role: Role = serde_json::from_str(r#""a/b""#).expect("deserializes");
        assert_eq!(serde_json::to_string(&role).expect("serializes"), r#""a/b""#);
    }
}
