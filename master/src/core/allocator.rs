//! Weighted, hierarchical dominant resource fairness with quota: decides which framework,
//! and for which of its roles, is offered each agent's free resources in one round.
//!
//! The allocator only reads the registry and returns [`Grant`]s; the master turns them
//! into offers. A *client* is one (framework, role) pair that wants offers. Roles form a
//! tree (`eng` is the parent of `eng/web`); a role's allocation is its whole subtree's.
//! The role picked first is the one whose path from the root is lowest, compared level
//! by level on (allocation share ÷ weight, name): at each level of the tree the child
//! with the lowest weighted share wins, as in Mesos' hierarchical sorter. Within a role,
//! the framework with the lowest share wins, ties on the name.
//!
//! A round has two passes, as in Mesos: the first gives roles with an unmet quota
//! guarantee up to that guarantee; the second gives everyone the rest, never beyond a
//! role's limit and never eating into what other roles still need for their guarantees.
//!
//! Cost: a round is handed only the slots of the agents worth a look, found without
//! walking the others (`AgentTable::round`: agents changed or not reached since the last
//! round, and agents no client could take at an older epoch), with the sums over every
//! active agent kept up to date as agents change; it reads an agent's record only when it
//! reaches it, and stops once every framework is at its offer bound. Filters are checked
//! against a per-agent set of integer framework slots (`FilterSlots`). The sorter is
//! rebuilt per round from the frameworks (not the agents), so a round costs
//! O(frameworks + reached agents × log). The round shuffles its slots a little ahead of
//! where it is, so it prefetches the memory of the next agents while offering the current
//! one.
//!
//! Stuck agents and the end of a round: an agent whose free resources no client could
//! take gets `stuck_epoch` set to the current `alloc_epoch` and is skipped until an event
//! touching it clears that, or the epoch moves on (a subscribe, a revive, a policy change,
//! any allocation change while quota exists, or an offer given back by a framework that a
//! round passed over at its `max_offers_per_framework` bound). A framework's clients leave
//! the round once it holds that many offers; when no client with room is left the round
//! ends, and the agents it did not reach stay pending for the next round (not stuck).
//!
//! Roles are kept in path-key order: a sorted vector while there are few, a B-tree beyond;
//! a role alone in the order is not re-keyed. Each role's clients are in a `ClientHeap`;
//! a role with many clients also has them laid out in a `ClientTree` (see
//! `Sorter::pick_client` for when the tree takes over from the heap).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use agora_proto::model::{FrameworkId, Resources, Role, Scalars};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::agent_table::{Counted, SlotSet, share_of};
use super::client_heap::ClientHeap;
use super::client_tree::{self, ClientTree, Member};
use super::filter_slots::FilterSlots;
use super::registry::{AgentRecord, FrameworkRecord};
use super::roles::{DEFAULT_WEIGHT_MILLI, RolePolicy};

/// Resources of one agent granted to one framework (by position in the round's framework
/// slice) for one of its roles, as decided.
#[derive(Clone, Debug, PartialEq)]
struct Decision {
    framework: u32,
    role: Role,
    resources: Resources,
    /// `resources`' scalars.
    scalars: Scalars,
}

/// A grant as the round hands it over: with the agent and the framework borrowed, so that
/// the offer is made while the agent's record is still in the cache, without a lookup.
#[derive(Debug)]
pub(crate) struct Grant<'g> {
    pub agent: &'g mut AgentRecord,
    /// The framework's position in the round's framework slice.
    pub framework: u32,
    pub framework_id: &'g FrameworkId,
    pub framework_record: &'g mut FrameworkRecord,
    pub role: Role,
    pub resources: Resources,
    /// `resources`' scalars, as the round summed them.
    pub scalars: Scalars,
}

/// The agents a round may visit, borrowed for the whole round so that its grants can be
/// turned into offers without looking anything up, and the sums over every active agent
/// (see `AgentTable::round`).
#[derive(Debug)]
pub(crate) struct RoundAgents<'a> {
    /// Every agent record by slot (`None`: a free slot).
    pub slots: &'a mut [Option<AgentRecord>],
    /// The slots worth a look, in any order; the round shuffles them as it goes.
    pub order: &'a mut [u32],
    /// What the round found at each position of `order` it reached; empty at the start.
    pub visits: &'a mut Vec<Visit>,
    /// The table's sums over the active agents (capacity, free resources), which the
    /// round moves by the change in the share of each agent it offers, while the agent's
    /// record is in the cache.
    pub sums: &'a mut Counted,
    /// The table's note of changed slots for the read model, when it keeps one: every
    /// agent the round offers changes.
    pub changed: Option<&'a mut SlotSet>,
}

/// What a round found at a position of `RoundAgents::order` it reached.
#[derive(Debug)]
pub(crate) struct Visit {
    /// The scalars of what is still free in this round; zero for an agent not worth
    /// offering (inactive, or stuck at this epoch).
    left: Scalars,
    /// What is still free in this round; `None` until the round first needs it (it is the
    /// agent's free part until then).
    free: Option<Resources>,
}

impl Visit {
    fn of(agent: &AgentRecord, min: MinAllocatable, epoch: u64) -> Self {
        let worth = agent.is_worth_a_visit(min, epoch);
        Visit { left: if worth { agent.free_scalars } else { Scalars::ZERO }, free: None }
    }
}

/// The smallest offer worth making, as Mesos judges it: enough CPUs *or* enough memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MinAllocatable {
    pub cpus_milli: u64,
    pub mem_mib: u64,
}

impl MinAllocatable {
    pub fn admits(&self, resources: &Resources) -> bool {
        !resources.is_empty() && self.admits_scalars(&resources.scalars())
    }

    pub fn admits_scalars(&self, s: &Scalars) -> bool {
        (s.cpus_milli > 0 || s.mem_mib > 0 || s.disk_mib > 0)
            && (s.cpus_milli >= self.cpus_milli || s.mem_mib >= self.mem_mib)
    }
}

/// Path keys are compared on at most this many levels of the role tree; deeper levels
/// tie and fall back to the role's name order.
const MAX_DEPTH: usize = 8;
/// (weighted share, name rank) per level, root first; unused levels are zero, and ranks
/// start at 1, so a role sorts before its own children.
type PathKey = [(u64, u32); MAX_DEPTH];

#[derive(Debug)]
struct Node {
    role: Role,
    parent: Option<u32>,
    /// Position of the role's name in sorted order, from 1.
    rank: u32,
    weight_milli: u64,
    /// The subtree's allocation (used + offered).
    allocated: Scalars,
    /// `allocated`'s dominant share divided by the weight: the node's sort key at its level.
    share: u64,
    guarantee: Scalars,
    limit: Option<Scalars>,
    /// Eligible clients of exactly this role, lowest (share, client) first, until the
    /// role's `tree` takes over. A grant re-keys the client's entry in place when it is the
    /// lowest (the usual case), else pushes a new one; an entry whose share is not its
    /// client's current one is then stale and dropped when it surfaces.
    clients: ClientHeap,
    /// The same by filter slot, for a role with many clients (see `ClientTree` and
    /// `Sorter::pick_client`).
    tree: Option<ClientTree>,
    /// Picks from the heap this round, and the filtering clients they skipped.
    picks: usize,
    skips: usize,
    /// Key under which the node sits in `Sorter::order`, when it does.
    in_order: Option<PathKey>,
    in_unmet: bool,
    /// Nodes with clients in this node's subtree (itself included): their keys depend on
    /// this node's share.
    dependents: Vec<u32>,
}

#[derive(Debug)]
struct Client {
    /// The framework's position in the round's framework slice.
    framework: u32,
    /// The framework's filter slot; `None` when it never filtered any agent.
    slot: Option<u64>,
    node: u32,
    allocated: Scalars,
    key: u64,
    /// The client's index in its role's `tree`, when the role has one.
    tree_index: u32,
}

#[derive(Debug)]
struct Sorter {
    total: Scalars,
    min: MinAllocatable,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    /// Scratch space of `pick_client`.
    skipped: Vec<(u64, u32)>,
    /// Offers each framework (by position) may still be given this round under
    /// `max_offers_per_framework`.
    room: Vec<u32>,
    /// Frameworks (by position) at that bound this round, some more than once.
    capped: Vec<u32>,
    /// Frameworks with clients and room left: none, and the round is over.
    open_frameworks: usize,
    /// The offers those frameworks may still be given: a round makes at most this many.
    open_room: u64,
    /// Nodes with eligible clients and headroom under their limits, lowest path first.
    order: Order,
    /// The subset of `order` whose own guarantee is not met yet.
    unmet: Order,
    /// Unmet guarantees summed over every role; held back from the second pass.
    unmet_total: Scalars,
}

/// Nodes by path key. Most clusters have a handful of roles with clients, and a round
/// re-sorts a node after every grant: a sorted vector does that with a binary search and
/// a short move, where a B-tree walks and rebalances nodes of 136-byte entries. Past
/// `SMALL_ORDER` nodes the vector becomes a B-tree, so that a move never shifts thousands
/// of entries.
#[derive(Debug)]
enum Order {
    Small(Vec<(PathKey, u32)>),
    Large(BTreeSet<(PathKey, u32)>),
}

const SMALL_ORDER: usize = 32;

impl Default for Order {
    fn default() -> Self {
        Order::Small(Vec::new())
    }
}

impl Order {
    fn is_empty(&self) -> bool {
        match self {
            Order::Small(v) => v.is_empty(),
            Order::Large(b) => b.is_empty(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Order::Small(v) => v.len(),
            Order::Large(b) => b.len(),
        }
    }

    fn insert(&mut self, entry: (PathKey, u32)) {
        match self {
            Order::Small(v) => match v.binary_search(&entry) {
                Ok(_) => {}
                Err(at) if v.len() < SMALL_ORDER => v.insert(at, entry),
                Err(_) => {
                    let mut b: BTreeSet<(PathKey, u32)> = v.drain(..).collect();
                    b.insert(entry);
                    *self = Order::Large(b);
                }
            },
            Order::Large(b) => {
                b.insert(entry);
            }
        }
    }

    fn remove(&mut self, entry: &(PathKey, u32)) {
        match self {
            Order::Small(v) => {
                if let Ok(at) = v.binary_search(entry) {
                    v.remove(at);
                }
            }
            Order::Large(b) => {
                b.remove(entry);
            }
        }
    }

    /// Moves `old` to `new`; either may be absent. A move that keeps the entry between
    /// its neighbours rewrites it in place.
    fn update(&mut self, old: Option<(PathKey, u32)>, new: Option<(PathKey, u32)>) {
        match (old, new) {
            (Some(old), Some(new)) => {
                // Found by the node's number first: whole keys are compared only where
                // the number matches (once, in the sorter: a node is in an order once).
                if let Order::Small(v) = self
                    && let Some(at) = v.iter().position(|entry| entry.1 == old.1 && entry.0 == old.0)
                {
                    let after_previous = at.checked_sub(1).and_then(|p| v.get(p)).is_none_or(|prev| *prev < new);
                    let before_next = v.get(at + 1).is_none_or(|next| new < *next);
                    if after_previous && before_next {
                        if let Some(entry) = v.get_mut(at) {
                            *entry = new;
                        }
                        return;
                    }
                }
                self.remove(&old);
                self.insert(new);
            }
            (Some(old), None) => self.remove(&old),
            (None, Some(new)) => self.insert(new),
            (None, None) => {}
        }
    }

    /// The first entry, or the first after `after`.
    fn first_after(&self, after: Option<&(PathKey, u32)>) -> Option<(PathKey, u32)> {
        match (self, after) {
            (Order::Small(v), None) => v.first().copied(),
            (Order::Small(v), Some(key)) => {
                let at = v.partition_point(|e| e <= key);
                v.get(at).copied()
            }
            (Order::Large(b), None) => b.first().copied(),
            (Order::Large(b), Some(key)) => b.range((Bound::Excluded(*key), Bound::Unbounded)).next().copied(),
        }
    }
}

/// `eng` for `eng/web`; `None` for a top-level role.
pub(crate) fn parent_role(role: &Role) -> Option<Role> {
    let (parent, _) = role.as_str().rsplit_once('/')?;
    Role::parse(parent).ok()
}

fn weighted_share(allocated: &Scalars, total: &Scalars, weight_milli: u64) -> u64 {
    let share = allocated.dominant_share_ppm(total);
    let weight_milli = weight_milli.max(1);
    // In u64 while `share × 1000` fits (a share is at most a million ppm unless more than
    // the total is allocated): the same quotient as in u128, without a 128-bit division
    // on every grant.
    match share.checked_mul(1000) {
        Some(scaled) => scaled / weight_milli,
        None => u64::try_from(u128::from(share) * 1000 / u128::from(weight_milli)).unwrap_or(u64::MAX),
    }
}

fn min_scalars(a: &Scalars, b: &Scalars) -> Scalars {
    Scalars {
        cpus_milli: a.cpus_milli.min(b.cpus_milli),
        mem_mib: a.mem_mib.min(b.mem_mib),
        disk_mib: a.disk_mib.min(b.disk_mib),
    }
}

/// At most `cap` of `resources`' scalars, taken pool by pool in role order; ports stay.
fn capped(resources: Resources, cap: &Scalars) -> Resources {
    if cap.contains(&resources.scalars()) {
        return resources;
    }
    let mut left = *cap;
    let mut out = Resources::new();
    for (role, pool) in resources.pools() {
        let mut pool = pool.clone();
        pool.scalars = min_scalars(&pool.scalars, &left);
        left = left.saturating_sub(&pool.scalars);
        out.add_pool(role.clone(), pool);
    }
    out
}

/// `free` as a client in one role sees it, read in one pass over the pools without
/// building anything.
struct FreeFor {
    /// The scalars the client may be offered.
    offerable: Scalars,
    /// The scalars of all of `free`.
    all: Scalars,
    /// Whether the client may be offered every pool of `free`.
    every_pool: bool,
}

fn free_for(free: &Resources, role: &Role) -> FreeFor {
    let mut seen = FreeFor { offerable: Scalars::ZERO, all: Scalars::ZERO, every_pool: true };
    for (r, pool) in free.pools() {
        seen.all = seen.all.saturating_add(&pool.scalars);
        if r.is_unreserved() || r.is_ancestor_or_self_of(role) {
            seen.offerable = seen.offerable.saturating_add(&pool.scalars);
        } else {
            seen.every_pool = false;
        }
    }
    seen
}

impl Sorter {
    fn build(frameworks: &[(&FrameworkId, &mut FrameworkRecord)], input: &RoundInput<'_>, total: Scalars) -> Self {
        let (policy, min) = (input.policy, input.min);
        // Every role that holds resources, has a client or has quota, and its ancestors.
        let mut names: BTreeSet<Role> = BTreeSet::new();
        for (_, framework) in frameworks {
            names.extend(framework.allocated.keys().cloned());
            if framework.is_active() {
                names.extend(framework.info.roles.iter().filter(|r| !framework.suppressed.contains(*r)).cloned());
            }
        }
        names.extend(policy.quotas.keys().cloned());
        let leaves: Vec<Role> = names.iter().cloned().collect();
        for role in leaves {
            let mut next = parent_role(&role);
            while let Some(parent) = next {
                next = parent_role(&parent);
                names.insert(parent);
            }
        }
        let index: BTreeMap<&Role, u32> =
            names.iter().enumerate().map(|(i, r)| (r, u32::try_from(i).unwrap_or(u32::MAX))).collect();
        let mut nodes: Vec<Node> = names
            .iter()
            .enumerate()
            .map(|(i, role)| {
                let quota = policy.quotas.get(role);
                Node {
                    role: role.clone(),
                    parent: parent_role(role).and_then(|p| index.get(&p).copied()),
                    rank: u32::try_from(i).unwrap_or(u32::MAX - 1).saturating_add(1),
                    weight_milli: policy.weights.get(role).copied().unwrap_or(DEFAULT_WEIGHT_MILLI),
                    allocated: Scalars::ZERO,
                    share: 0,
                    guarantee: quota.map_or(Scalars::ZERO, |q| q.guarantee),
                    limit: quota.and_then(|q| q.limit),
                    clients: ClientHeap::default(),
                    tree: None,
                    picks: 0,
                    skips: 0,
                    in_order: None,
                    in_unmet: false,
                    dependents: Vec::new(),
                }
            })
            .collect();
        let mut clients = Vec::new();
        for (f, (_, framework)) in frameworks.iter().enumerate() {
            for (role, scalars) in framework.allocated.iter() {
                if let Some(&n) = index.get(role) {
                    add_up(&mut nodes, n, scalars);
                }
            }
            if !framework.is_active() {
                continue;
            }
            for role in framework.info.roles.iter().filter(|r| !framework.suppressed.contains(*r)) {
                let Some(&node) = index.get(role) else { continue };
                let allocated = framework.allocated.get(role).copied().unwrap_or(Scalars::ZERO);
                let key = allocated.dominant_share_ppm(&total);
                let slot = framework.filter_slot;
                let framework = u32::try_from(f).unwrap_or(u32::MAX);
                clients.push(Client { framework, slot, node, allocated, key, tree_index: u32::MAX });
            }
        }
        queue_clients(&mut nodes, &mut clients);
        for n in 0..nodes.len() {
            if nodes.get(n).is_some_and(Node::has_clients) {
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                let mut at = Some(n);
                while let Some(a) = at {
                    let Some(node) = nodes.get_mut(a as usize) else { break };
                    node.dependents.push(n);
                    at = node.parent;
                }
            }
        }
        let room: Vec<u32> = frameworks
            .iter()
            .map(|(_, framework)| {
                let left =
                    input.max_offers_per_framework.map_or(usize::MAX, |max| max.saturating_sub(framework.offers.len()));
                u32::try_from(left).unwrap_or(u32::MAX)
            })
            .collect();
        let mut open: Vec<u32> = clients
            .iter()
            .map(|c: &Client| c.framework)
            .filter(|&f| room.get(f as usize).is_some_and(|&r| r > 0))
            .collect();
        open.dedup();
        let open_room = open.iter().map(|&f| u64::from(room.get(f as usize).copied().unwrap_or(0))).sum();
        let mut sorter = Sorter {
            total,
            min,
            nodes,
            clients,
            skipped: Vec::new(),
            room,
            capped: Vec::new(),
            open_frameworks: open.len(),
            open_room,
            order: Order::default(),
            unmet: Order::default(),
            unmet_total: Scalars::ZERO,
        };
        sorter.unmet_total = sorter.nodes.iter().fold(Scalars::ZERO, |sum, n| sum.saturating_add(&n.unmet()));
        for node in &mut sorter.nodes {
            node.share = weighted_share(&node.allocated, &total, node.weight_milli);
        }
        for n in 0..sorter.nodes.len() {
            if sorter.nodes.get(n).is_some_and(Node::has_clients) {
                sorter.rekey(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
        sorter
    }

    fn node(&self, n: u32) -> Option<&Node> {
        self.nodes.get(n as usize)
    }

    /// The node's (weighted share, rank) at each level from the root. Of a path deeper
    /// than `MAX_DEPTH * 4`, only its `MAX_DEPTH * 4` lowest levels count, and of those the
    /// `MAX_DEPTH` highest.
    fn path_key(&self, n: u32) -> PathKey {
        let mut depth: usize = 0;
        let mut at = Some(n);
        while let Some(node) = at.and_then(|a| self.node(a)) {
            depth += 1;
            at = node.parent;
        }
        let first = depth.saturating_sub(MAX_DEPTH * 4);
        let mut key: PathKey = [(0, 0); MAX_DEPTH];
        let mut level = depth;
        let mut at = Some(n);
        while let Some(node) = at.and_then(|a| self.node(a)) {
            level -= 1;
            if level < first {
                break;
            }
            if let Some(slot) = key.get_mut(level - first) {
                *slot = (node.share, node.rank);
            }
            at = node.parent;
        }
        key
    }

    /// What the node may still get under its own and its ancestors' limits.
    fn limit_headroom(&self, n: u32) -> Scalars {
        let mut room = Scalars::new(u64::MAX, u64::MAX, u64::MAX);
        let mut at = Some(n);
        while let Some(a) = at {
            let Some(node) = self.node(a) else { break };
            if let Some(limit) = &node.limit {
                room = min_scalars(&room, &limit.saturating_sub(&node.allocated));
            }
            at = node.parent;
        }
        room
    }

    /// Puts node `n` back in the orders under its current key, or leaves it out when
    /// its limit leaves nothing worth offering.
    fn rekey(&mut self, n: u32) {
        let room = self.limit_headroom(n);
        let min = self.min;
        let Some(node) = self.nodes.get(n as usize) else { return };
        let admitted = node.has_clients() && min.admits_scalars(&room);
        let in_unmet = admitted && min.admits_scalars(&min_scalars(&node.unmet(), &room));
        let (in_order, was_unmet) = (node.in_order.is_some(), node.in_unmet);
        // A node that stays alone in the orders it is in is compared with no other node
        // for the rest of the round: after `build`, the orders only lose nodes (shares and
        // allocations only grow, so a node left out is never admitted again). Its key is
        // not worth computing; the stale one it is filed under stays consistent with
        // `in_order`. This is every grant of a cluster with one role.
        let alone = self.order.len() == 1 && (!in_unmet || self.unmet.len() == 1);
        if admitted && in_order && was_unmet == in_unmet && alone {
            return;
        }
        let key = self.path_key(n);
        let Some(node) = self.nodes.get_mut(n as usize) else { return };
        let old = node.in_order;
        if admitted && old == Some(key) && was_unmet == in_unmet {
            // Same place in both orders: nothing to move.
            return;
        }
        node.in_order = admitted.then_some(key);
        node.in_unmet = in_unmet;
        self.order.update(old.map(|old| (old, n)), admitted.then_some((key, n)));
        self.unmet.update(old.filter(|_| was_unmet).map(|old| (old, n)), in_unmet.then_some((key, n)));
    }

    /// Adds `granted` to client `c`, its role and the role's ancestors, and re-sorts every
    /// role whose key depends on them.
    fn charge(&mut self, c: u32, granted: &Scalars) {
        let total = self.total;
        let Some(client) = self.clients.get_mut(c as usize) else { return };
        let n = client.node;
        let old = client.key;
        client.allocated = client.allocated.saturating_add(granted);
        client.key = client.allocated.dominant_share_ppm(&total);
        if client.key != old
            && let Some(node) = self.nodes.get_mut(n as usize)
        {
            let in_tree = node.tree.as_mut().is_some_and(|tree| {
                tree.rekey(client.tree_index, client.key);
                tree.keeps_minimums()
            });
            // Once the tree has taken over, the role's heap is empty and stays so.
            if !in_tree {
                // The client just picked is usually still the lowest (unless clients that
                // filtered the agent were put back below it): its entry is re-keyed in
                // place instead of a push now and a pop of the stale entry later.
                if node.clients.peek() == Some((old, c)) {
                    node.clients.replace_top(client.key, c);
                } else {
                    node.clients.push(client.key, c);
                }
            }
        }
        // With one node left in the order (it only loses nodes during a round, see
        // `rekey`), no role's key is compared with another's any more: shares are not
        // worth computing for the rest of the round.
        let keyed = self.order.len() > 1;
        let mut top = n;
        let mut at = Some(n);
        while let Some(a) = at {
            let Some(node) = self.nodes.get_mut(a as usize) else { break };
            let before = node.unmet();
            node.allocated = node.allocated.saturating_add(granted);
            if keyed {
                node.share = weighted_share(&node.allocated, &total, node.weight_milli);
            }
            if !before.is_zero() {
                let met = before.saturating_sub(&node.unmet());
                self.unmet_total = self.unmet_total.saturating_sub(&met);
            }
            top = a;
            at = node.parent;
        }
        // The list is taken out while its nodes are re-sorted, and put back: no copy.
        let dependents =
            self.nodes.get_mut(top as usize).map(|t| std::mem::take(&mut t.dependents)).unwrap_or_default();
        for &d in &dependents {
            self.rekey(d);
        }
        if let Some(t) = self.nodes.get_mut(top as usize) {
            t.dependents = dependents;
        }
    }

    /// The first client of node `n` in (share, client) order that has not filtered the
    /// agent. Clients that filtered it are taken off the heap while looking and put back;
    /// clients whose framework has no room left under its offer bound are taken off for
    /// the rest of the round.
    ///
    /// A role with many clients also has them in a `ClientTree`, by filter slot. Its picks
    /// start on the heap, which costs least while few of the lowest clients filter the
    /// agents; an agent whose lowest `MAX_SKIPS` clients filter it is looked up in the
    /// tree's layout instead, and once the role's picks skip one filtering client in
    /// `TREE_AFTER` on average, the tree keeps its minimums and replaces the heap for the
    /// rest of the round. Every way gives the same client.
    fn pick_client(&mut self, n: u32, filtered_by: &FilterSlots) -> Option<u32> {
        let clients = &self.clients;
        let room = &self.room;
        let node = self.nodes.get_mut(n as usize)?;
        let open = |framework: u32| room.get(framework as usize).is_some_and(|&r| r > 0);
        if let Some(tree) = node.tree.as_mut().filter(|tree| tree.keeps_minimums()) {
            let capped = &mut self.capped;
            return tree.lowest_open(filtered_by, open, |framework| capped.push(framework));
        }
        let mut found = None;
        let mut gave_up = false;
        while let Some((key, c)) = node.clients.peek() {
            let Some(client) = clients.get(c as usize) else {
                node.clients.pop();
                continue;
            };
            if client.key != key {
                node.clients.pop();
                continue;
            }
            if !open(client.framework) {
                node.clients.pop();
                self.capped.push(client.framework);
                continue;
            }
            if client.slot.is_some_and(|s| filtered_by.contains(s)) {
                if node.tree.is_some() && self.skipped.len() >= MAX_SKIPS {
                    gave_up = true;
                    break;
                }
                if let Some(entry) = node.clients.pop() {
                    self.skipped.push(entry);
                }
                continue;
            }
            found = Some(c);
            break;
        }
        let skips = self.skipped.len();
        for (key, c) in self.skipped.drain(..) {
            node.clients.push(key, c);
        }
        let Some(tree) = &mut node.tree else { return found };
        node.picks += 1;
        node.skips += skips;
        if gave_up {
            let capped = &mut self.capped;
            found = tree.scan_unfiltered(filtered_by, &mut { open }, &mut |framework| capped.push(framework));
        }
        if node.picks >= TREE_AFTER_PICKS && node.skips.saturating_mul(TREE_AFTER) >= node.picks {
            tree.keep_minimums();
            node.clients = ClientHeap::default();
        }
        found
    }
}

/// See `Sorter::pick_client`. A filtering client skipped costs a pop and a push on the
/// heap, some 100 instructions; keeping the tree's minimums costs a walk up from a leaf
/// per grant, some 350, and saves the heap's work.
const MAX_SKIPS: usize = 8;
const TREE_AFTER: usize = 4;
/// Picks a role makes on its heap before their skips are counted.
const TREE_AFTER_PICKS: usize = 32;

/// Puts every client in its role's heap, and lays out the clients of a role with many
/// in a `ClientTree` too (see `Sorter::pick_client`).
fn queue_clients(nodes: &mut [Node], clients: &mut [Client]) {
    let mut counts = vec![0usize; nodes.len()];
    for client in clients.iter() {
        if let Some(count) = counts.get_mut(client.node as usize) {
            *count += 1;
        }
    }
    // A list with room for each role crowded enough for a tree; none for the others.
    let mut members: Vec<Vec<Member>> = counts
        .iter()
        .map(|&count| if count >= client_tree::MIN_CLIENTS { Vec::with_capacity(count) } else { Vec::new() })
        .collect();
    for (c, client) in (0u32..).zip(clients.iter()) {
        if let Some(m) = members.get_mut(client.node as usize)
            && m.capacity() > 0
        {
            m.push(Member { client: c, framework: client.framework, slot: client.slot, key: client.key });
        }
    }
    for (node, members) in nodes.iter_mut().zip(&members) {
        let Some(tree) = ClientTree::build(members) else { continue };
        for (member, index) in members.iter().zip(0u32..) {
            if let Some(client) = clients.get_mut(member.client as usize) {
                client.tree_index = index;
            }
        }
        node.tree = Some(tree);
    }
    for (c, client) in (0u32..).zip(clients.iter()) {
        if let Some(node) = nodes.get_mut(client.node as usize) {
            node.clients.push(client.key, c);
        }
    }
}

impl Node {
    fn has_clients(&self) -> bool {
        match &self.tree {
            Some(tree) if tree.keeps_minimums() => !tree.is_empty(),
            _ => !self.clients.is_empty(),
        }
    }

    fn unmet(&self) -> Scalars {
        self.guarantee.saturating_sub(&self.allocated)
    }
}

fn add_up(nodes: &mut [Node], n: u32, scalars: &Scalars) {
    let mut at = Some(n);
    while let Some(a) = at {
        let Some(node) = nodes.get_mut(a as usize) else { break };
        node.allocated = node.allocated.saturating_add(scalars);
        at = node.parent;
    }
}

/// Which pass of a round is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Only roles with an unmet guarantee, up to it.
    Guarantees,
    /// Everyone, within limits, leaving what unmet guarantees still need.
    Rest,
}

/// Inputs of a round that are not the registry itself.
#[derive(Debug)]
pub(crate) struct RoundInput<'a> {
    pub policy: &'a RolePolicy,
    pub min: MinAllocatable,
    /// Most outstanding offers per framework; `None`: no bound.
    pub max_offers_per_framework: Option<usize>,
}

/// What a round leaves for the master's bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct RoundEnd {
    /// How many positions of `RoundAgents::order` the round reached, in its shuffled
    /// order: it stops once every framework with clients is at its offer bound, and the
    /// slots it did not reach are worth a look next round, untouched.
    pub reached: usize,
    /// Slots of the agents reached and left with free resources no client could take.
    pub stuck: Vec<u32>,
    /// Frameworks (by position) passed over for being at their offer bound, in order, once
    /// each.
    pub capped: Vec<u32>,
}

/// Runs one round: the agents worth a look, in an order shuffled by `rng` as the round
/// goes, go to the lowest clients that want them, have not filtered them and whose
/// framework is below its offer bound. Each grant goes to `offer` as soon as it is decided.
/// An agent's record is read only once the round reaches it, so a round that stops early
/// (every framework at its offer bound) costs the agents it reached, not all it was given.
pub(crate) fn allocate(
    rng: &mut ChaCha8Rng,
    agents: &mut RoundAgents<'_>,
    frameworks: &mut [(&FrameworkId, &mut FrameworkRecord)],
    input: RoundInput<'_>,
    epoch: u64,
    mut offer: impl FnMut(Grant<'_>),
) -> RoundEnd {
    let min = input.min;
    let mut end = RoundEnd::default();
    let RoundAgents { slots, order, visits, sums, changed } = agents;
    if order.is_empty() {
        return end;
    }
    // The round's own view of what is free, which its grants use up; the table's sums
    // follow the agents' records.
    let mut available = sums.free;
    let mut sorter = Sorter::build(frameworks, &input, sums.total);
    if sorter.order.is_empty() {
        return end;
    }
    let mut decided: Vec<Decision> = Vec::new();
    visits.clear();
    if sorter.open_room.saturating_mul(2) >= order.len() as u64 {
        // The round may well reach most of its agents: they are read now, in slot order,
        // which is memory order, rather than one cache miss at a time in random order.
        for &slot in order.iter() {
            visits.push(match slots.get(slot as usize) {
                Some(Some(agent)) => Visit::of(agent, min, epoch),
                _ => Visit { left: Scalars::ZERO, free: None },
            });
        }
    }
    let mut shuffled = 0;
    let mut reached = 0;
    // One draw of the round's generator seeds the shuffle's: a draw from ChaCha costs
    // some 50 instructions, one of SplitMix a handful, and a round may draw 50,000.
    let mut draws = SplitMix(rng.random());
    for pass in [Pass::Guarantees, Pass::Rest] {
        if pass == Pass::Guarantees && sorter.unmet.is_empty() {
            continue;
        }
        for i in 0..order.len() {
            if sorter.open_frameworks == 0 {
                // Every client's framework holds as many offers as it may: the agents not
                // reached wait for the next round.
                break;
            }
            // The order is shuffled as far as the prefetching looks ahead: a uniform
            // sample of the slots, drawn one at a time (Fisher–Yates from the front).
            shuffle_until(&mut draws, order, visits, &mut shuffled, i + AHEAD_RECORD + 1);
            fetch_ahead(slots, order, i);
            let Some(&slot) = order.get(i) else { break };
            let Some(Some(agent)) = slots.get_mut(slot as usize) else { break };
            if i == visits.len() {
                visits.push(Visit::of(agent, min, epoch));
            }
            reached = reached.max(i + 1);
            let Some(Visit { left, free }) = visits.get_mut(i) else { continue };
            if !min.admits_scalars(left) {
                continue;
            }
            // A copy shares the agent's pools; a grant of everything free moves it on.
            let free = free.get_or_insert_with(|| agent.free());
            allocate_agent(&mut sorter, pass, agent, free, &mut available, &mut decided);
            *left = free.scalars();
            // Taken before the offers change the agent, and only if there are any.
            let before = (!decided.is_empty()).then(|| share_of(agent));
            for d in decided.drain(..) {
                let Some((framework_id, framework)) = frameworks.get_mut(d.framework as usize) else { continue };
                offer(Grant {
                    agent,
                    framework: d.framework,
                    framework_id,
                    framework_record: framework,
                    role: d.role,
                    resources: d.resources,
                    scalars: d.scalars,
                });
            }
            if let Some(before) = before {
                sums.settle(&before, &share_of(agent));
                if let Some(changed) = changed.as_deref_mut() {
                    changed.insert(slot);
                }
            }
        }
    }
    end.reached = reached;
    for (visit, &slot) in visits.iter().zip(order.iter()).take(reached) {
        if min.admits_scalars(&visit.left) {
            end.stuck.push(slot);
        }
    }
    end.capped = std::mem::take(&mut sorter.capped);
    end.capped.sort_unstable();
    end.capped.dedup();
    end
}

/// Shuffles `order` from the front until its first `until` positions (at most all) are a
/// random draw of it; `shuffled` is how far it got before. `visits`, when read up front
/// for every position, moves along.
fn shuffle_until(draws: &mut SplitMix, order: &mut [u32], visits: &mut [Visit], shuffled: &mut usize, until: usize) {
    let n = order.len();
    let along = visits.len() == n;
    while *shuffled < until.min(n) {
        let j = *shuffled + draws.below(n - *shuffled);
        order.swap(*shuffled, j);
        if along {
            visits.swap(*shuffled, j);
        }
        *shuffled += 1;
    }
}

/// SplitMix64 (Steele, Lea and Flood): a small, fast generator, good enough to order a
/// round's agents and seeded from the master's own generator, so runs stay reproducible.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0), by multiplying and keeping the high word: biased by at
    /// most `n / 2^64`, which no round can notice.
    fn below(&mut self, n: usize) -> usize {
        let wide = u128::from(self.next()) * n as u128;
        usize::try_from(wide >> 64).unwrap_or(0)
    }
}

/// How many positions ahead of the one being offered a round prefetches each level of
/// the next agents' memory: their records first, then (the records being in the cache by
/// then) the allocations the records point to, then the free pools' elements, whose
/// address is in one of those allocations. Far enough ahead for a miss to memory to
/// complete while the agents in between are offered (a few hundred nanoseconds each),
/// near enough for the lines to stay in the cache until used.
const AHEAD_RECORD: usize = 24;
const AHEAD_POINTED: usize = 12;
const AHEAD_POOLS: usize = 6;

/// Prefetches what offering the agents after position `i` will touch (see `prefetch`);
/// without it, each offer waits for a dozen cache misses one after the other.
fn fetch_ahead(slots: &[Option<AgentRecord>], order: &[u32], i: usize) {
    let slot = |ahead: usize| order.get(i + ahead).map(|&s| s as usize);
    if let Some(s) = slot(AHEAD_RECORD) {
        // Only the address: the record's memory is what is being fetched.
        AgentRecord::prefetch_hot(slots.as_ptr().wrapping_add(s));
    }
    if let Some(Some(agent)) = slot(AHEAD_POINTED).and_then(|s| slots.get(s)) {
        agent.prefetch_offer_data();
    }
    if let Some(Some(agent)) = slot(AHEAD_POOLS).and_then(|s| slots.get(s)) {
        agent.prefetch_free_pools();
    }
}

/// Offers one agent's free resources to the roles in order, continuing after each grant
/// from the role that took, until nothing worth offering is left or no role takes.
fn allocate_agent(
    sorter: &mut Sorter,
    pass: Pass,
    agent: &AgentRecord,
    free: &mut Resources,
    available: &mut Scalars,
    grants: &mut Vec<Decision>,
) {
    let min = sorter.min;
    let mut after: Option<(PathKey, u32)> = None;
    loop {
        let set = match pass {
            Pass::Guarantees => &sorter.unmet,
            Pass::Rest => &sorter.order,
        };
        let next = set.first_after(after.as_ref());
        let Some((key, n)) = next else { return };
        after = Some((key, n));
        let Some(node) = sorter.node(n) else { continue };
        let seen = free_for(free, &node.role);
        let offerable = seen.offerable;
        if !min.admits_scalars(&offerable) {
            continue;
        }
        let mut cap = sorter.limit_headroom(n);
        match pass {
            Pass::Guarantees => cap = min_scalars(&cap, &node.unmet()),
            Pass::Rest if !sorter.unmet_total.is_zero() => {
                // What the other roles still need for their guarantees stays free.
                let others = sorter.unmet_total.saturating_sub(&node.unmet());
                cap = min_scalars(&cap, &available.saturating_sub(&others));
            }
            Pass::Rest => {}
        }
        if !min.admits_scalars(&min_scalars(&offerable, &cap)) {
            continue;
        }
        let role = node.role.clone();
        let Some(c) = sorter.pick_client(n, &agent.filtered_by) else { continue };
        let Some(framework) = sorter.clients.get(c as usize).map(|client| client.framework) else { continue };
        // The common case: the role may take everything free and no cap bites. Moving the
        // free resources into the grant saves building and subtracting a copy.
        let whole = seen.every_pool && cap.contains(&seen.all);
        let (resources, granted) = if whole {
            (std::mem::take(free), seen.all)
        } else {
            let resources = capped(free.allocatable_to(&role), &cap);
            let granted = resources.scalars();
            (resources, granted)
        };
        if resources.is_empty() || !min.admits_scalars(&granted) {
            if whole {
                *free = resources;
            }
            continue;
        }
        if !whole && !free.subtract(&resources) {
            continue;
        }
        *available = available.saturating_sub(&granted);
        sorter.charge(c, &granted);
        if let Some(room) = sorter.room.get_mut(framework as usize) {
            *room = room.saturating_sub(1);
            if *room == 0 {
                sorter.open_frameworks = sorter.open_frameworks.saturating_sub(1);
                sorter.capped.push(framework);
            }
        }
        grants.push(Decision { framework, role, resources, scalars: granted });
        if !min.admits(free) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::model::{FrameworkInfo, StreamId};
    use rand::{Rng, SeedableRng};

    fn key(share: u64, rank: u32) -> PathKey {
        let mut key: PathKey = [(0, 0); MAX_DEPTH];
        key[0] = (share, rank);
        key[1] = (share % 3, rank % 2);
        key
    }

    #[test]
    fn the_role_order_answers_as_a_sorted_set_below_and_above_its_switch() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut order = Order::default();
        let mut reference: BTreeSet<(PathKey, u32)> = BTreeSet::new();
        for step in 0..4_000 {
            let entry = (key(rng.random_range(0..20), rng.random_range(0..4)), rng.random_range(0..60));
            // Grow past the switch to a B-tree in the first half, shrink in the second.
            let grow = if step < 2_000 { 0.6 } else { 0.25 };
            if rng.random_bool(0.15) && !reference.contains(&entry) {
                // A move from an entry that is there to one that is not.
                let from = reference.iter().nth(rng.random_range(0..reference.len().max(1))).copied();
                if let Some(from) = from {
                    order.update(Some(from), Some(entry));
                    reference.remove(&from);
                    reference.insert(entry);
                }
            } else if rng.random_bool(grow) {
                order.insert(entry);
                reference.insert(entry);
            } else {
                order.remove(&entry);
                reference.remove(&entry);
            }
            assert_eq!(order.is_empty(), reference.is_empty());
            assert_eq!(order.first_after(None), reference.first().copied());
            let probe = (key(rng.random_range(0..20), rng.random_range(0..4)), rng.random_range(0..60));
            let expected = reference.range((Bound::Excluded(probe), Bound::Unbounded)).next().copied();
            assert_eq!(order.first_after(Some(&probe)), expected, "step {step}");
        }
        assert!(matches!(order, Order::Large(_)), "the order switched to a B-tree on the way");
    }

    #[test]
    fn the_client_picked_is_the_lowest_share_that_did_not_filter_the_agent() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let ids: Vec<FrameworkId> = (0..40).map(|i| FrameworkId::new(format!("f{i:02}"))).collect();
        let mut records: Vec<FrameworkRecord> = ids
            .iter()
            .map(|id| {
                let info = FrameworkInfo {
                    id: Some(id.clone()),
                    name: String::new(),
                    user: String::new(),
                    roles: vec![Role::unreserved()],
                    failover_timeout_ms: 0,
                    hostname: String::new(),
                    principal: String::new(),
                };
                let mut record = FrameworkRecord::new(info, 0);
                record.stream = Some(StreamId::new("s"));
                record
            })
            .collect();
        for (slot, record) in records.iter_mut().enumerate() {
            // Some frameworks never filtered anything; some start with an allocation.
            record.filter_slot = (slot % 5 != 0).then_some(slot as u64);
            if slot % 3 == 0 {
                record.charge(&Role::unreserved(), &Scalars::new(1_000 * (slot as u64 % 4), 0, 0));
            }
        }
        let frameworks: Vec<(&FrameworkId, &mut FrameworkRecord)> = ids.iter().zip(records.iter_mut()).collect();
        let total = Scalars::new(1_000_000, 1_000_000, 1_000_000);
        let min = MinAllocatable { cpus_milli: 10, mem_mib: 32 };
        let policy = RolePolicy::default();
        let input = RoundInput { policy: &policy, min, max_offers_per_framework: None };
        let mut sorter = Sorter::build(&frameworks, &input, total);
        for step in 0..3_000 {
            let mut filtered_by = FilterSlots::default();
            for slot in (0..40).filter(|_| rng.random_bool(0.6)) {
                filtered_by.insert(slot);
            }
            let expected = sorter
                .clients
                .iter()
                .enumerate()
                .filter(|(_, c)| c.slot.is_none_or(|s| !filtered_by.contains(s)))
                .map(|(i, c)| (c.key, i as u32))
                .min()
                .map(|(_, i)| i);
            let picked = sorter.pick_client(0, &filtered_by);
            assert_eq!(picked, expected, "step {step}");
            if let Some(c) = picked {
                // Some grants are too small to move the share.
                let granted = Scalars::new(rng.random_range(0..3_000), rng.random_range(0..2), 0);
                sorter.charge(c, &granted);
            }
        }
    }
}
