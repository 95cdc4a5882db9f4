//! The master's agents: records kept in slots, found by id through an index, with what
//! an allocation round needs kept up to date as the agents change instead of being
//! gathered from every agent each round.
//!
//! A round needs the capacity and the free resources summed over the active agents (for
//! the shares) and the agents worth offering: active, with free resources worth offering,
//! and not found stuck at the current allocation epoch. Walking every agent for those
//! was most of a round's time at 10,000 agents. So the table lends its records mutably
//! only through a guard ([`AgentMut`]) that notes the agent's share of the sums when it
//! is made and moves the sums by the change when it is dropped, while the record is in
//! the cache (whatever changes on an agent changes through such a borrow, or in a round,
//! which does the same for the agents it offers); it keeps the slots worth a look
//! (borrowed agents, and those a round did not reach), which a round reads only as it
//! reaches them; and it keeps the agents a round left stuck, which are worth a look again
//! once the epoch moves on.

use std::collections::btree_map;
use std::collections::{BTreeMap, HashMap};

use agora_proto::model::{AgentId, Scalars};
use foldhash::fast::FixedState;

use super::allocator::{MinAllocatable, RoundAgents, RoundEnd, Visit};
use super::registry::AgentRecord;

/// What an agent adds to the table's sums: its capacity and free scalars while it is
/// active, zero otherwise; and the sums themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Counted {
    pub total: Scalars,
    pub free: Scalars,
}

/// A set of slots, one bit each: set and cleared in O(1), walked in slot order in
/// O(slots / 64 + members), with no duplicates to weed out.
#[derive(Clone, Debug, Default)]
pub(crate) struct SlotSet(Vec<u64>);

impl SlotSet {
    pub(crate) fn insert(&mut self, slot: u32) {
        let (word, bit) = (slot as usize / 64, slot % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        if let Some(w) = self.0.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    fn remove(&mut self, slot: u32) {
        if let Some(w) = self.0.get_mut(slot as usize / 64) {
            *w &= !(1 << (slot % 64));
        }
    }

    fn contains(&self, slot: u32) -> bool {
        self.0.get(slot as usize / 64).is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// The master's agents by id; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct AgentTable {
    slots: Vec<Option<AgentRecord>>,
    /// Slots by id, in id order, for walking the agents in that order.
    index: BTreeMap<AgentId, u32>,
    /// Slots by id, hashed, for finding one: a B-tree of 10,000 ids compares some twenty
    /// strings per lookup, which was a tenth of the master's owner task's time.
    lookup: HashMap<AgentId, u32, FixedState>,
    /// Free slots, reused before the table grows.
    vacant: Vec<u32>,
    /// Slots worth a look in the next round.
    pending: SlotSet,
    /// Slots whose record a round found stuck at `stuck_at`.
    stuck: SlotSet,
    /// The epoch at which the agents in `stuck` were found stuck.
    stuck_at: u64,
    /// Sums over the active agents of their capacity and their free scalars.
    sums: Counted,
    /// The slots handed to the current round, and what the round found at each; kept
    /// between rounds for their capacity.
    order: Vec<u32>,
    visits: Vec<Visit>,
    /// For the read model (`core/changes.rs`): slots whose record changed, and ids
    /// removed, since `take_changes`; kept only once `track_changes` turned them on.
    tracking: bool,
    changed: SlotSet,
    removed: Vec<AgentId>,
}

impl AgentTable {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn contains_key(&self, id: &AgentId) -> bool {
        self.lookup.contains_key(id)
    }

    pub fn get(&self, id: &AgentId) -> Option<&AgentRecord> {
        let slot = *self.lookup.get(id)?;
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The agent's record, which the next round looks at again; the sums follow the
    /// change in the agent's share when the guard is dropped.
    pub fn get_mut(&mut self, id: &AgentId) -> Option<AgentMut<'_>> {
        let slot = *self.lookup.get(id)? as usize;
        self.pending.insert(slot as u32);
        if self.tracking {
            self.changed.insert(slot as u32);
        }
        let record = self.slots.get_mut(slot)?.as_mut()?;
        let before = share_of(record);
        Some(AgentMut { record, before, sums: &mut self.sums })
    }

    /// Adds or replaces the agent's record; returns the one it replaces.
    pub fn insert(&mut self, id: AgentId, record: AgentRecord) -> Option<AgentRecord> {
        let now = share_of(&record);
        if let Some(&slot) = self.lookup.get(&id) {
            let old = self.slots.get_mut(slot as usize).and_then(|s| s.replace(record));
            let before = old.as_ref().map_or(Counted::default(), share_of);
            self.sums.settle(&before, &now);
            self.pending.insert(slot);
            if self.tracking {
                self.changed.insert(slot);
            }
            return old;
        }
        let slot = match self.vacant.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = Some(record);
                }
                slot
            }
            None => {
                self.slots.push(Some(record));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.lookup.insert(id.clone(), slot);
        self.index.insert(id, slot);
        self.sums.settle(&Counted::default(), &now);
        self.pending.insert(slot);
        if self.tracking {
            self.changed.insert(slot);
        }
        None
    }

    pub fn remove(&mut self, id: &AgentId) -> Option<AgentRecord> {
        let slot = self.lookup.remove(id)?;
        self.index.remove(id);
        let record = self.slots.get_mut(slot as usize)?.take();
        if let Some(record) = &record {
            self.sums.settle(&share_of(record), &Counted::default());
        }
        self.pending.remove(slot);
        self.stuck.remove(slot);
        self.vacant.push(slot);
        if self.tracking {
            self.changed.remove(slot);
            self.removed.push(id.clone());
        }
        record
    }

    /// Turns the notes for the read model on or off (see `core/changes.rs`).
    pub fn track_changes(&mut self, on: bool) {
        self.tracking = on;
        self.changed = SlotSet::default();
        self.removed.clear();
    }

    pub fn has_changes(&self) -> bool {
        !self.removed.is_empty() || self.changed.0.iter().any(|w| *w != 0)
    }

    /// The ids of the agents changed and of those removed since the last call.
    pub fn take_changes(&mut self) -> (Vec<AgentId>, Vec<AgentId>) {
        let mut changed = Vec::new();
        for (w, word) in self.changed.0.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let slot = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if let Some(Some(record)) = self.slots.get(slot) {
                    changed.push(record.id.clone());
                }
            }
        }
        (changed, std::mem::take(&mut self.removed))
    }

    /// The agents in id order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { index: self.index.iter(), slots: &self.slots }
    }

    pub fn values(&self) -> impl Iterator<Item = &AgentRecord> + '_ {
        self.iter().map(|(_, record)| record)
    }

    /// The round's view: the sums over the active agents and the slots worth a look at
    /// `epoch`: those borrowed or not reached since the last round, and, once the epoch
    /// moved on, those stuck at an older one. No record is read. `finish_round` must
    /// follow.
    pub fn round(&mut self, epoch: u64) -> RoundAgents<'_> {
        // The sets grow as slots are marked, never past the slots.
        let words = self.slots.len().div_ceil(64);
        // Clients may take what they could not at an older epoch: every agent found stuck
        // then is worth a look again.
        let unstick = epoch != self.stuck_at;
        self.stuck_at = epoch;
        self.order.clear();
        for w in 0..words {
            let pending = self.pending.0.get_mut(w).map_or(0, std::mem::take);
            let stuck = if unstick { self.stuck.0.get_mut(w).map_or(0, std::mem::take) } else { 0 };
            let mut bits = pending | stuck;
            while bits != 0 {
                let slot = u32::try_from(w * 64).unwrap_or(u32::MAX).saturating_add(bits.trailing_zeros());
                bits &= bits - 1;
                self.order.push(slot);
            }
        }
        self.visits.clear();
        let changed = self.tracking.then_some(&mut self.changed);
        RoundAgents {
            slots: &mut self.slots,
            order: &mut self.order,
            visits: &mut self.visits,
            sums: &mut self.sums,
            changed,
        }
    }

    /// Settles a round that reached the first `end.reached` slots of its order (and moved
    /// the sums for the agents it offered): the agents it found stuck at `epoch` are marked so
    /// and kept for when the epoch moves on; the slots it did not reach stay worth a look.
    pub fn finish_round(&mut self, epoch: u64, end: &RoundEnd) {
        for &slot in self.order.get(end.reached..).unwrap_or_default() {
            self.pending.insert(slot);
        }
        for &slot in &end.stuck {
            if let Some(Some(agent)) = self.slots.get_mut(slot as usize) {
                agent.stuck_epoch = Some(epoch);
                self.stuck.insert(slot);
            }
        }
        self.order.clear();
        // The round's copies of free pools are let go now, not at the next round.
        self.visits.clear();
    }

    /// Checks the table's bookkeeping against its records: the indexes and the slots agree,
    /// the sums are the sum of the agents' shares, and every agent a round at `epoch` would
    /// offer will be looked at by it.
    pub fn check(&self, min: MinAllocatable, epoch: u64) -> Result<(), String> {
        let occupied = self.slots.iter().filter(|s| s.is_some()).count();
        if occupied != self.index.len()
            || occupied != self.lookup.len()
            || occupied + self.vacant.len() != self.slots.len()
        {
            return Err(format!(
                "the agent table holds {occupied} records, {} ids and {} free slots of {}",
                self.index.len(),
                self.vacant.len(),
                self.slots.len()
            ));
        }
        let (mut total, mut free) = (Scalars::ZERO, Scalars::ZERO);
        let mut marked = 0;
        for (id, &slot) in &self.index {
            let Some(Some(record)) = self.slots.get(slot as usize) else {
                return Err(format!("agent {id} points to an empty slot {slot}"));
            };
            if record.id != *id || self.lookup.get(id) != Some(&slot) {
                return Err(format!("agent {id}'s slot holds agent {}, or its two indexes disagree", record.id));
            }
            let (pending, stuck) = (self.pending.contains(slot), self.stuck.contains(slot));
            marked += usize::from(pending) + usize::from(stuck);
            if record.is_worth_a_visit(min, epoch) && !pending && !(stuck && self.stuck_at != epoch) {
                return Err(format!("agent {id} has resources to offer that no round would look at"));
            }
            if record.stuck_epoch == Some(self.stuck_at) && !stuck && !pending {
                return Err(format!("agent {id} is stuck but not kept for when the epoch moves on"));
            }
            let share = share_of(record);
            total = wrapping_add(&total, &share.total);
            free = wrapping_add(&free, &share.free);
        }
        if marked != self.pending.len() + self.stuck.len() {
            return Err("the agent table marks free slots".to_owned());
        }
        if (Counted { total, free }) != self.sums {
            return Err("the agent table's sums are not the sum of its agents".to_owned());
        }
        Ok(())
    }
}

fn wrapping_add(a: &Scalars, b: &Scalars) -> Scalars {
    Scalars {
        cpus_milli: a.cpus_milli.wrapping_add(b.cpus_milli),
        mem_mib: a.mem_mib.wrapping_add(b.mem_mib),
        disk_mib: a.disk_mib.wrapping_add(b.disk_mib),
    }
}

fn wrapping_sub(a: &Scalars, b: &Scalars) -> Scalars {
    Scalars {
        cpus_milli: a.cpus_milli.wrapping_sub(b.cpus_milli),
        mem_mib: a.mem_mib.wrapping_sub(b.mem_mib),
        disk_mib: a.disk_mib.wrapping_sub(b.disk_mib),
    }
}

/// A mutable borrow of an agent's record that moves the table's sums by the change in
/// the agent's share when dropped (see the module documentation).
#[derive(Debug)]
pub(crate) struct AgentMut<'t> {
    record: &'t mut AgentRecord,
    /// The agent's share when the borrow began.
    before: Counted,
    sums: &'t mut Counted,
}

impl std::ops::Deref for AgentMut<'_> {
    type Target = AgentRecord;

    fn deref(&self) -> &AgentRecord {
        self.record
    }
}

impl std::ops::DerefMut for AgentMut<'_> {
    fn deref_mut(&mut self) -> &mut AgentRecord {
        self.record
    }
}

impl Drop for AgentMut<'_> {
    fn drop(&mut self) {
        self.sums.settle(&self.before, &share_of(self.record));
    }
}

impl Counted {
    /// Moves these sums from one share of an agent to another. The sums are kept with
    /// wrapping arithmetic: exact as long as the true sums fit in 64 bits.
    pub fn settle(&mut self, before: &Counted, now: &Counted) {
        if now != before {
            self.total = wrapping_add(&wrapping_sub(&self.total, &before.total), &now.total);
            self.free = wrapping_add(&wrapping_sub(&self.free, &before.free), &now.free);
        }
    }
}

/// What an agent adds to the sums: its capacity and free scalars while it is active.
pub(crate) fn share_of(agent: &AgentRecord) -> Counted {
    if agent.is_active() {
        Counted { total: agent.total_scalars, free: agent.free_scalars }
    } else {
        Counted::default()
    }
}

/// The agents in id order, with their ids.
pub(crate) struct Iter<'a> {
    index: btree_map::Iter<'a, AgentId, u32>,
    slots: &'a [Option<AgentRecord>],
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a AgentId, &'a AgentRecord);

    fn next(&mut self) -> Option<Self::Item> {
        for (id, &slot) in self.index.by_ref() {
            if let Some(Some(record)) = self.slots.get(slot as usize) {
                return Some((id, record));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.index.len()))
    }
}

impl<'a> IntoIterator for &'a AgentTable {
    type Item = (&'a AgentId, &'a AgentRecord);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ConnId;
    use agora_proto::model::{AgentInfo, Resources};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const MIN: MinAllocatable = MinAllocatable { cpus_milli: 100, mem_mib: 32 };

    fn id(i: u64) -> AgentId {
        AgentId::new(format!("agent-{i}"))
    }

    fn record(i: u64) -> AgentRecord {
        let resources =
            Resources::parse(if i.is_multiple_of(2) { "cpus:4;mem:1024" } else { "cpus:2;mem:512;disk:100" })
                .expect("valid resources");
        let info = AgentInfo { hostname: format!("host-{i}"), port: 5051, resources, attributes: vec![] };
        AgentRecord::new(id(i), info, ConnId(i), 0)
    }

    fn recomputed(table: &AgentTable) -> Counted {
        let mut sums = Counted::default();
        for agent in table.values() {
            sums.settle(&Counted::default(), &share_of(agent));
        }
        sums
    }

    /// A round as the allocator runs one, without clients: it reaches a prefix of its
    /// order, and every agent it reaches with resources worth offering is left stuck.
    /// Returns how many agents it was given.
    fn run_round(table: &mut AgentTable, epoch: u64, rng: &mut ChaCha8Rng) -> usize {
        let round = table.round(epoch);
        let reached = rng.random_range(0..=round.order.len());
        let stuck = round.order[..reached]
            .iter()
            .copied()
            .filter(|&slot| round.slots[slot as usize].as_ref().is_some_and(|a| a.is_worth_a_visit(MIN, epoch)))
            .collect();
        let given = round.order.len();
        table.finish_round(epoch, &RoundEnd { reached, stuck, capped: Vec::new() });
        given
    }

    /// How many agents a round at `epoch` would look at; it reaches none of them, so they
    /// all stay worth a look.
    fn round_len(table: &mut AgentTable, epoch: u64) -> usize {
        let len = table.round(epoch).order.len();
        table.finish_round(epoch, &RoundEnd::default());
        assert_eq!(table.check(MIN, epoch), Ok(()));
        len
    }

    #[test]
    fn the_sums_and_the_agents_worth_a_look_follow_every_change() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let mut table = AgentTable::default();
        let mut epoch = 0;
        let used = Resources::parse("cpus:1;mem:256").expect("valid resources");
        for step in 0..5_000 {
            let i = rng.random_range(0..60);
            match rng.random_range(0..7) {
                0 => {
                    table.insert(id(i), record(i));
                }
                1 => {
                    table.remove(&id(i));
                    assert!(table.get(&id(i)).is_none() && !table.contains_key(&id(i)), "step {step}");
                }
                2 => {
                    if let Some(mut agent) = table.get_mut(&id(i)) {
                        agent.reachable = !agent.reachable;
                    }
                }
                3 => {
                    if let Some(mut agent) = table.get_mut(&id(i)) {
                        if agent.has_free(&used) {
                            agent.add_used(&used);
                        } else if !agent.used().is_empty() {
                            agent.remove_used(&used);
                        }
                    }
                }
                4 => {
                    if let Some(mut agent) = table.get_mut(&id(i)) {
                        agent.conn = if agent.conn.is_some() { None } else { Some(ConnId(i)) };
                    }
                }
                5 => {
                    run_round(&mut table, epoch, &mut rng);
                }
                _ => epoch += 1,
            }
            assert_eq!(table.check(MIN, epoch), Ok(()), "step {step}");
            assert_eq!(table.sums, recomputed(&table), "step {step}");
        }
    }

    #[test]
    fn a_round_without_changes_looks_at_nothing_and_a_new_epoch_at_the_stuck_agents() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut table = AgentTable::default();
        for i in 0..100 {
            table.insert(id(i), record(i));
        }
        // The first round looks at every agent; one that reaches them all leaves them stuck.
        let round = table.round(0);
        assert_eq!(round.order.len(), 100);
        let stuck: Vec<u32> = round.order.to_vec();
        table.finish_round(0, &RoundEnd { reached: 100, stuck, capped: Vec::new() });
        assert_eq!(round_len(&mut table, 0), 0, "nothing changed, nothing to look at");
        // A change brings back that agent; a new epoch all of them.
        drop(table.get_mut(&id(7)));
        assert_eq!(round_len(&mut table, 0), 1);
        assert_eq!(round_len(&mut table, 0), 1, "not reached, still worth a look");
        assert_eq!(run_round(&mut table, 1, &mut rng), 100);
        // A removed agent's slot is reused by the next one, without its marks.
        table.remove(&id(5));
        table.insert(id(500), record(500));
        assert_eq!(table.len(), 100);
        assert_eq!(table.check(MIN, 1), Ok(()));
        assert_eq!(table.get(&id(500)).map(|a| a.id.clone()), Some(id(500)));
    }
}
