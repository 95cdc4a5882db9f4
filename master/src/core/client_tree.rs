//! `ClientTree`: a big role's clients by framework filter slot under a tree of minimums,
//! beside the role's heap: where the allocator finds the next client of the role once the
//! heap would pop many filtering clients to find it.
//!
//! Why: a role's `ClientHeap` finds the lowest client that has not filtered an agent by
//! taking filtering clients off its top until one has not, and putting them back. That is
//! cheap while few clients filtered the agent, and ruinous once most have: frameworks that
//! decline agents with long filters (Mesos' DeclineOffers bench declines every offer,
//! forever) leave every agent filtered by nearly every framework, and each agent then
//! costs a pop and a push per framework — 300 ms a round at 10,000 agents and 1,000
//! frameworks.
//!
//! Here a client's place is fixed by its filter slot, so that an agent's filter bitmap
//! lines up with the clients word for word. Places are grouped into leaves of `LEAF`, and
//! each node of a complete binary tree over the leaves holds the lowest (share, client)
//! below it. The lowest client the agent has not filtered is found by walking down from
//! the root, lowest child first, and stopping at the first node whose lowest client is
//! not filtered: that client is the lowest in the node, so no node with a higher lowest
//! needs a look. Cost: the tree's nodes whose lowest client filtered the agent and is
//! lower than the answer — a handful, where the heap pops them all. A grant re-keys its
//! client: its leaf (`LEAF` entries) and the leaf's ancestors while their lowest changes.
//! When the agent filters nearly every client, the unfiltered ones are read straight off
//! its bitmap instead, a word at a time (`scan_unfiltered`).
//!
//! The minimums cost a walk up the tree on every grant, which a heap does not pay while
//! its lowest client is usually the answer; so a tree starts as the layout alone (entries
//! by place, re-keyed with a store, enough for `scan_unfiltered`) and computes and keeps
//! its minimums once the allocator asks (`keep_minimums`; see `Sorter::pick_client`).
//!
//! The answer is a heap's exactly: the lowest (share, client) among the clients the
//! agent's filters leave and whose framework may still be offered something.

use super::filter_slots::FilterSlots;

/// Roles with fewer clients than this keep to a heap: popping a few filtering clients
/// costs less than keeping a tree.
pub(crate) const MIN_CLIENTS: usize = 64;

/// Places per leaf: a fourth of a filter-bitmap word, so that re-keying a leaf's lowest
/// client looks at 16 entries (four cache lines), and finding the lowest open client of
/// a leaf at the few its filter bits leave.
const LEAF: usize = 16;
/// The bits of a leaf's places, from its first.
const LEAF_MASK: u64 = (1 << LEAF) - 1;

/// `lowest_open` looks at every unfiltered client instead of walking the tree when
/// `left² ≤ SCAN_FACTOR · filtered` (see there).
const SCAN_FACTOR: usize = 4;

/// One client's (share, index) packed so that integer order is tuple order, as in
/// `ClientHeap`; `NONE` where no client is. The index is the client's in the tree, which
/// orders clients as their numbers do.
fn entry(key: u64, index: u32) -> u128 {
    (u128::from(key) << 32) | u128::from(index)
}

const NONE: u128 = u128::MAX;

fn index_of(entry: u128) -> usize {
    // Truncation takes the index back out of the entry's low half.
    entry as u32 as usize
}

/// A client as `ClientTree::build` takes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    pub client: u32,
    /// The client's framework: what `lowest_open` asks whether it is open.
    pub framework: u32,
    pub slot: Option<u64>,
    /// The client's share.
    pub key: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct ClientTree {
    /// The filter-bitmap word of place 0: places `0..unslotted_from` are slots
    /// `first_word * 64 ..`.
    first_word: u64,
    /// Places from here hold clients without a filter slot, which filter nothing.
    unslotted_from: usize,
    /// Each place's current (share, index); `NONE` where no client is, or the client's
    /// framework may not be offered anything more this round.
    entries: Vec<u128>,
    /// Each client's number, framework and place, by index.
    members: Vec<(u32, u32, u32)>,
    /// Leaves, a power of two.
    leaves: usize,
    /// The lowest entry under each node: node 1 is the root, node `k`'s children are
    /// `2k` and `2k + 1`, and leaf `l` is node `leaves + l`.
    lowest: Vec<u128>,
    /// Scratch space of `lowest_open`: the nodes left to look at.
    stack: Vec<usize>,
    /// Bit `p % 64` of word `p / 64` set when a client is at place `p`.
    present: Vec<u64>,
    /// How many clients are in the tree.
    clients: usize,
    /// Whether `lowest` is kept (see `keep_minimums`).
    keeps_minimums: bool,
}

impl ClientTree {
    /// Lays out a role's clients, given in increasing number, or returns `None` when
    /// there are too few of them or their slots are spread too thin for it to pay. A
    /// client's index, for `rekey`, is its position in `clients`.
    pub fn build(clients: &[Member]) -> Option<ClientTree> {
        if clients.len() < MIN_CLIENTS || !clients.windows(2).all(|pair| pair[0].client < pair[1].client) {
            return None;
        }
        let slots = clients.iter().filter_map(|m| m.slot);
        let (low, high) = slots.fold((u64::MAX, 0), |(low, high), s| (low.min(s), high.max(s)));
        let first_word = if low > high { 0 } else { low / 64 };
        let slotted_span = if low > high { 0 } else { usize::try_from((high / 64 - first_word + 1) * 64).ok()? };
        // Every place costs an entry, and the walk's leaves: slots spread over more than
        // four times the clients' number are too thin.
        if slotted_span > clients.len().saturating_mul(4).saturating_add(64) {
            return None;
        }
        let unslotted = clients.iter().filter(|m| m.slot.is_none()).count();
        let places = (slotted_span + unslotted).max(1);
        let leaves = places.div_ceil(LEAF).next_power_of_two();
        let mut tree = ClientTree {
            first_word,
            unslotted_from: slotted_span,
            entries: vec![NONE; leaves * LEAF],
            members: Vec::with_capacity(clients.len()),
            leaves,
            lowest: vec![NONE; 2 * leaves],
            stack: Vec::new(),
            present: vec![0; (leaves * LEAF).div_ceil(64)],
            clients: 0,
            keeps_minimums: false,
        };
        let mut next_unslotted = slotted_span;
        for (index, m) in (0u32..).zip(clients) {
            let place = match m.slot {
                Some(slot) => usize::try_from(slot - first_word * 64).ok()?,
                None => {
                    next_unslotted += 1;
                    next_unslotted - 1
                }
            };
            let at = tree.entries.get_mut(place)?;
            if *at != NONE {
                // Two clients of a role on one slot: not a layout by slot.
                return None;
            }
            *at = entry(m.key, index);
            *tree.present.get_mut(place / 64)? |= 1 << (place % 64);
            tree.clients += 1;
            tree.members.push((m.client, m.framework, u32::try_from(place).ok()?));
        }
        Some(tree)
    }

    /// Whether the minimums are kept (see `keep_minimums`).
    pub fn keeps_minimums(&self) -> bool {
        self.keeps_minimums
    }

    /// Computes the minimums, and keeps them from now on. Until then the tree is only its
    /// clients laid out by slot, for `scan_unfiltered`, and re-keying a client is a store;
    /// with them, `lowest_open` can walk down the tree, and re-keying a client walks up
    /// from its leaf.
    pub fn keep_minimums(&mut self) {
        self.keeps_minimums = true;
        let leaves = self.leaves;
        for leaf in 0..leaves {
            let lowest = self.leaf_lowest(leaf);
            if let Some(at) = self.lowest.get_mut(leaves + leaf) {
                *at = lowest;
            }
        }
        for node in (1..leaves).rev() {
            let lowest = self.lowest.get(2 * node..2 * node + 2).map_or(NONE, |pair| pair[0].min(pair[1]));
            if let Some(at) = self.lowest.get_mut(node) {
                *at = lowest;
            }
        }
    }

    /// Whether every client is gone for the round (its framework at its offer bound).
    pub fn is_empty(&self) -> bool {
        self.clients == 0
    }

    /// Notes the new share of the client at `index` (see `build`).
    pub fn rekey(&mut self, index: u32, key: u64) {
        if let Some(&(_, _, place)) = self.members.get(index as usize) {
            self.set(place as usize, entry(key, index));
        }
    }

    /// The number, framework and place of the client an entry is for.
    fn member(&self, e: u128) -> (u32, u32, usize) {
        self.members.get(index_of(e)).map_or((u32::MAX, u32::MAX, usize::MAX), |&(c, f, place)| (c, f, place as usize))
    }

    /// The lowest client not in `filtered` (an agent's filter slots) whose framework
    /// `open` says may be offered something. A client whose framework may not is taken out
    /// of the tree for good (`open` must stay false for it), its framework handed to
    /// `closed`.
    pub fn lowest_open(
        &mut self,
        filtered: &FilterSlots,
        mut open: impl FnMut(u32) -> bool,
        mut closed: impl FnMut(u32),
    ) -> Option<u32> {
        // With `left` clients unfiltered (at least: the agent's filters may hold other
        // roles' slots), the walk below meets some `filtered / left` filtering clients
        // lower than the answer, and looks through a leaf for most; a look at each
        // unfiltered client instead costs a read of the agent's bitmap and `left` entries.
        let left = self.clients.saturating_sub(filtered.len());
        if !self.keeps_minimums || left.saturating_mul(left) <= filtered.len().saturating_mul(SCAN_FACTOR) {
            return self.scan_unfiltered(filtered, &mut open, &mut closed);
        }
        let mut best = NONE;
        let mut stack = std::mem::take(&mut self.stack);
        stack.clear();
        let mut next = Some(1);
        while let Some(node) = next.take().or_else(|| stack.pop()) {
            let Some(&lowest) = self.lowest.get(node) else { continue };
            if lowest >= best {
                continue;
            }
            let (_, framework, place) = self.member(lowest);
            if !self.filters(filtered, place) {
                if open(framework) {
                    // The lowest client under the node is the node's answer.
                    best = lowest;
                } else {
                    // Out, and the node looked at again under its new lowest.
                    self.set(place, NONE);
                    closed(framework);
                    next = Some(node);
                }
                continue;
            }
            if node >= self.leaves {
                best = best.min(self.leaf_lowest_open(node - self.leaves, filtered, best, &mut open, &mut closed));
                continue;
            }
            // Down to the lower child; the other waits its turn.
            let (left, right) = (2 * node, 2 * node + 1);
            let (low, high) =
                if self.lowest.get(left) <= self.lowest.get(right) { (left, right) } else { (right, left) };
            stack.push(high);
            next = Some(low);
        }
        self.stack = stack;
        (best != NONE).then(|| self.member(best).0)
    }

    /// The lowest open entry of a leaf below `below` among those `filtered` leaves, or
    /// `NONE`; closed clients met are taken out.
    fn leaf_lowest_open(
        &mut self,
        leaf: usize,
        filtered: &FilterSlots,
        below: u128,
        open: &mut impl FnMut(u32) -> bool,
        closed: &mut impl FnMut(u32),
    ) -> u128 {
        let start = leaf * LEAF;
        let unfiltered = !self.filter_bits(filtered, start) & LEAF_MASK;
        let best = self.lowest_among(start, unfiltered, below, open, closed);
        if best == below { NONE } else { best }
    }

    /// The lowest open entry below `best` among places `start + i` for the bits `i` set
    /// in `bits`, or `best`; closed clients met are taken out.
    fn lowest_among(
        &mut self,
        start: usize,
        mut bits: u64,
        mut best: u128,
        open: &mut impl FnMut(u32) -> bool,
        closed: &mut impl FnMut(u32),
    ) -> u128 {
        while bits != 0 {
            let place = start + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let Some(&e) = self.entries.get(place) else { break };
            if e >= best {
                continue;
            }
            let (_, framework, _) = self.member(e);
            if open(framework) {
                best = e;
            } else {
                self.set(place, NONE);
                closed(framework);
            }
        }
        best
    }

    /// `lowest_open` by a look at every client not in `filtered`; needs no minimums.
    pub fn scan_unfiltered(
        &mut self,
        filtered: &FilterSlots,
        open: &mut impl FnMut(u32) -> bool,
        closed: &mut impl FnMut(u32),
    ) -> Option<u32> {
        let mut best = NONE;
        for leaf in (0..self.leaves).step_by(64 / LEAF) {
            let start = leaf * LEAF;
            let words =
                if start < self.unslotted_from { filtered.word(self.first_word + (start / 64) as u64) } else { 0 };
            let unfiltered = self.present.get(start / 64).copied().unwrap_or(0) & !words;
            best = self.lowest_among(start, unfiltered, best, open, closed);
        }
        (best != NONE).then(|| self.member(best).0)
    }

    /// Whether the client at `place` is in `filtered`.
    fn filters(&self, filtered: &FilterSlots, place: usize) -> bool {
        place < self.unslotted_from && filtered.contains(self.first_word * 64 + place as u64)
    }

    /// Bit `i` set when the client at `start + i` (`start` a leaf's first place) is in
    /// `filtered`.
    fn filter_bits(&self, filtered: &FilterSlots, start: usize) -> u64 {
        if start >= self.unslotted_from {
            return 0;
        }
        let word = filtered.word(self.first_word + (start / 64) as u64);
        (word >> (start % 64)) & LEAF_MASK
    }

    fn leaf_lowest(&self, leaf: usize) -> u128 {
        let start = leaf * LEAF;
        let Some(entries) = self.entries.get(start..start + LEAF) else { return NONE };
        entries.iter().fold(NONE, |lowest, &e| lowest.min(e))
    }

    /// Puts `e` at `place` and mends the lowest entries above it: the leaf's, and each
    /// ancestor's while it changes, from the changed child and its sibling.
    fn set(&mut self, place: usize, e: u128) {
        let Some(old) = self.entries.get_mut(place).map(|slot| std::mem::replace(slot, e)) else { return };
        if e == NONE
            && old != NONE
            && let Some(word) = self.present.get_mut(place / 64)
        {
            *word &= !(1 << (place % 64));
            self.clients -= 1;
        }
        if !self.keeps_minimums {
            return;
        }
        let leaf = place / LEAF;
        let mut node = self.leaves + leaf;
        let Some(&was) = self.lowest.get(node) else { return };
        let mut now = if e <= was {
            e
        } else if old == was {
            self.leaf_lowest(leaf)
        } else {
            return;
        };
        if now == was {
            return;
        }
        let lowest = &mut self.lowest;
        if let Some(at) = lowest.get_mut(node) {
            *at = now;
        }
        while node > 1 {
            let Some(&sibling) = lowest.get(node ^ 1) else { break };
            node /= 2;
            now = now.min(sibling);
            let Some(at) = lowest.get_mut(node) else { break };
            if *at == now {
                break;
            }
            *at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn member(client: u32, framework: u32, slot: Option<u64>, key: u64) -> Member {
        Member { client, framework, slot, key }
    }

    /// The tree's answer is the lowest open, unfiltered client by (share, client), found
    /// here by looking at every client, through re-keyings, closings and filters of every
    /// density and form.
    #[test]
    fn the_tree_finds_what_a_look_at_every_client_finds() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for round in 0..200 {
            let n = rng.random_range(MIN_CLIENTS..400);
            let spread = rng.random_range(1..=3u64);
            let base = rng.random_range(0..500u64);
            // Client numbers of several roles interleave; this role has every third.
            let mut clients: Vec<Member> = (0..n)
                .map(|i| {
                    let slot = (!rng.random_bool(0.05)).then_some(base + i as u64 * spread);
                    member(3 * i as u32 + 1, i as u32, slot, rng.random_range(0..4u64))
                })
                .collect();
            let Some(mut tree) = ClientTree::build(&clients) else {
                panic!("round {round}: {n} clients {spread} slots apart are dense enough")
            };
            // Frameworks at their offer bound.
            let mut closed = std::collections::BTreeSet::new();
            for step in 0..60 {
                // Shares only grow.
                let i = rng.random_range(0..n);
                if !closed.contains(&clients[i].framework) {
                    clients[i].key += rng.random_range(0..3u64);
                    tree.rekey(i as u32, clients[i].key);
                }
                if rng.random_bool(0.05) {
                    closed.insert(clients[rng.random_range(0..n)].framework);
                }
                let density = rng.random_range(0.0..=1.0);
                let mut filtered = FilterSlots::default();
                for m in &clients {
                    if let Some(s) = m.slot
                        && rng.random_bool(density)
                    {
                        filtered.insert(s);
                    }
                }
                let expected = clients
                    .iter()
                    .filter(|m| !closed.contains(&m.framework) && m.slot.is_none_or(|s| !filtered.contains(s)))
                    .min_by_key(|m| (m.key, m.client))
                    .map(|m| m.client);
                if !tree.keeps_minimums() && rng.random_bool(0.1) {
                    tree.keep_minimums();
                }
                let mut handed = Vec::new();
                let found = tree.lowest_open(&filtered, |f| !closed.contains(&f), |f| handed.push(f));
                assert_eq!(found, expected, "round {round} step {step}");
                assert!(handed.iter().all(|f| closed.contains(f)), "only closed frameworks' clients are taken out");
                if tree.is_empty() {
                    assert!(clients.iter().all(|m| closed.contains(&m.framework)), "round {round} step {step}");
                }
            }
        }
    }

    #[test]
    fn small_or_thinly_spread_roles_keep_to_their_heap() {
        let few: Vec<Member> = (0..MIN_CLIENTS as u32 - 1).map(|c| member(c, c, Some(u64::from(c)), 0)).collect();
        assert!(ClientTree::build(&few).is_none());
        let thin: Vec<Member> = (0..MIN_CLIENTS as u32).map(|c| member(c, c, Some(u64::from(c) * 1_000), 0)).collect();
        assert!(ClientTree::build(&thin).is_none());
        let mut unordered: Vec<Member> = (0..MIN_CLIENTS as u32).map(|c| member(c, c, Some(u64::from(c)), 0)).collect();
        unordered.swap(0, 1);
        assert!(ClientTree::build(&unordered).is_none(), "clients must come in increasing number");
        let unslotted: Vec<Member> = (0..MIN_CLIENTS as u32).map(|c| member(c, c + 100, None, u64::from(c))).collect();
        let mut tree = ClientTree::build(&unslotted).expect("clients without slots need no words");
        tree.keep_minimums();
        let mut every = FilterSlots::default();
        (0..1_000).for_each(|s| every.insert(s));
        assert_eq!(tree.lowest_open(&every, |f| f != 100, |_| {}), Some(1), "clients without a slot filter nothing");
        assert_eq!(tree.lowest_open(&every, |_| false, |_| {}), None);
        assert!(tree.is_empty(), "closed clients are out for good");
    }
}
