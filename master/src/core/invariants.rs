//! A self-check of the registry's bookkeeping, for simulations and debugging: every
//! cached sum and index must agree with the records it summarises, and no agent may be
//! over-committed. Written to run after every step of a simulation of thousands of
//! agents, so it avoids building `Resources` values in its loops.

use agora_proto::model::{AgentId, Resources, Role, Scalars};

use super::master::Master;
use super::registry::AgentRecord;

/// Scalars by role and raw port ranges, summed from several `Resources`.
#[derive(Debug, Default)]
struct Tally<'a> {
    by_role: Vec<(&'a Role, Scalars)>,
    ports: Vec<(u64, u64)>,
}

impl<'a> Tally<'a> {
    fn clear(&mut self) {
        self.by_role.clear();
        self.ports.clear();
    }

    fn add(&mut self, resources: &'a Resources) {
        for (role, pool) in resources.pools() {
            match self.by_role.iter_mut().find(|(r, _)| *r == role) {
                Some((_, sum)) => *sum = sum.saturating_add(&pool.scalars),
                None => self.by_role.push((role, pool.scalars)),
            }
            self.ports.extend_from_slice(pool.ports.ranges());
        }
    }

    fn scalars_of(&self, role: &Role) -> Scalars {
        self.by_role.iter().find(|(r, _)| *r == role).map_or(Scalars::ZERO, |(_, s)| *s)
    }

    /// Sorts the ranges and merges touching ones; `false` if any two overlap, which
    /// means one port was given twice.
    fn merge_ports(&mut self) -> bool {
        self.ports.sort_unstable();
        let mut kept: usize = 0;
        for i in 0..self.ports.len() {
            let Some(&(begin, end)) = self.ports.get(i) else { break };
            match kept.checked_sub(1).and_then(|last| self.ports.get_mut(last)) {
                Some(last) if begin <= last.1 => return false,
                Some(last) if begin == last.1.saturating_add(1) => last.1 = end,
                _ => {
                    if let Some(slot) = self.ports.get_mut(kept) {
                        *slot = (begin, end);
                    }
                    kept += 1;
                }
            }
        }
        self.ports.truncate(kept);
        true
    }

    /// Whether this tally is exactly `cached` (after `merge_ports`); `scratch` is a
    /// buffer reused between calls.
    fn equals(&self, cached: &Resources, scratch: &mut Tally<'_>) -> bool {
        let roles_with_scalars = self.by_role.iter().filter(|(_, s)| !s.is_zero()).count();
        let cached_roles = cached.pools().filter(|(_, p)| !p.scalars.is_zero()).count();
        scratch.clear();
        for (_, pool) in cached.pools() {
            scratch.ports.extend_from_slice(pool.ports.ranges());
        }
        roles_with_scalars == cached_roles
            && cached.pools().all(|(role, pool)| self.scalars_of(role) == pool.scalars)
            && scratch.merge_ports()
            && scratch.ports == self.ports
    }
}

/// Whether every range of `ranges` lies inside one port range of `total`.
fn ports_within(ranges: &[(u64, u64)], total: &Resources) -> bool {
    ranges.iter().all(|&(begin, end)| {
        total.pools().any(|(_, pool)| pool.ports.ranges().iter().any(|&(b, e)| b <= begin && end <= e))
    })
}

impl Master {
    /// Recomputes every sum and index the master caches and compares, and checks that
    /// no agent's tasks and offers exceed it or share a port. `Err` names the first
    /// disagreement. One pass over all agents, tasks, offers and filters.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.agents.check(self.min_allocatable(), self.alloc_epoch)?;
        // Indexes are checked as bijections: every entry resolves to a record that points
        // back, and the entry counts equal the record counts.
        let mut task_count = 0usize;
        let mut framework_offer_count = 0usize;
        let mut filter_count = 0usize;
        let mut indexed_filters = 0usize;
        for (framework_id, framework) in &self.frameworks {
            let mut used = Scalars::ZERO;
            for (task_id, task) in &framework.tasks {
                if &task.info.task_id != task_id || task.state.is_terminal() {
                    return Err(format!("task {task_id} of {framework_id} is misfiled or terminal"));
                }
                used = used.saturating_add(&task.info.resources.scalars());
            }
            task_count += framework.tasks.len();
            if used != framework.used_scalars {
                return Err(format!(
                    "framework {framework_id} caches used {:?}, tasks hold {used:?}",
                    framework.used_scalars
                ));
            }
            if !framework.is_active() && !framework.offers.is_empty() {
                return Err(format!("inactive framework {framework_id} holds offers"));
            }
            if self.config.max_offers_per_framework.is_some_and(|max| framework.offers.len() > max) {
                return Err(format!(
                    "framework {framework_id} holds {} offers, beyond the bound",
                    framework.offers.len()
                ));
            }
            let mut offered = Scalars::ZERO;
            for n in framework.offers.iter() {
                match self.offers.by_key(n) {
                    Some(record)
                        if &record.offer.framework_id == framework_id
                            && self.offers.key(&self.offers.id(n)) == Some(n) =>
                    {
                        offered = offered.saturating_add(&record.offer.resources.scalars());
                    }
                    _ => return Err(format!("framework {framework_id} lists offer number {n} it does not hold")),
                }
            }
            framework_offer_count += framework.offers.len();
            if offered != framework.offered_scalars {
                return Err(format!(
                    "framework {framework_id} caches offered {:?}, offers hold {offered:?}",
                    framework.offered_scalars
                ));
            }
            filter_count += framework.filters.len();
            let by_role = framework.allocated.values().fold(Scalars::ZERO, |sum, s| sum.saturating_add(s));
            if by_role != framework.used_scalars.saturating_add(&framework.offered_scalars) {
                return Err(format!("framework {framework_id} accounts {by_role:?} by role, holds more or less"));
            }
            for agent_id in framework.filters.keys() {
                let indexed = framework
                    .filter_slot
                    .is_some_and(|slot| self.agents.get(agent_id).is_some_and(|a| a.filtered_by.contains(slot)));
                if self.agents.contains_key(agent_id) && !indexed {
                    return Err(format!("agent {agent_id} does not index the filter of {framework_id}"));
                }
                indexed_filters += usize::from(indexed);
            }
        }
        if indexed_filters != self.agents.values().map(|a| a.filtered_by.len()).sum::<usize>() {
            return Err("agents index filters that no framework holds".to_owned());
        }
        if framework_offer_count != self.offers.len() {
            return Err("the frameworks' offer indexes miss offers".to_owned());
        }
        for (until_ms, framework_id, agent_id) in &self.filter_expiries {
            let filter = self.frameworks.get(framework_id).and_then(|f| f.filters.get(agent_id));
            if filter != Some(until_ms) {
                return Err(format!("filter index names a filter of {framework_id} on {agent_id} that is not there"));
            }
        }
        if filter_count != self.filter_expiries.len() {
            return Err("the filter index misses filters".to_owned());
        }
        let mut indexed_tasks = 0usize;
        let mut indexed_offers = 0usize;
        let (mut used, mut offered, mut both) = (Tally::default(), Tally::default(), Tally::default());
        let mut scratch = Tally::default();
        for (agent_id, agent) in &self.agents {
            if !agent.free_is_exact() {
                return Err(format!(
                    "agent {agent_id} caches free {} ({:?}), which is not {} minus used {} and offered {}",
                    agent.free(),
                    agent.free_scalars,
                    agent.info.resources,
                    agent.used(),
                    agent.offered()
                ));
            }
            if &agent.id != agent_id {
                return Err(format!("agent {agent_id} is filed under another id than its own, {}", agent.id));
            }
            if !agent.description_is_exact() {
                return Err(format!(
                    "agent {agent_id} offers the description {:?}, which is not its info's",
                    agent.description
                ));
            }
            if !agent.offers.is_sorted_by(|a, b| a < b) {
                return Err(format!("agent {agent_id} lists an offer twice or out of order"));
            }
            if agent.tasks.is_empty() && agent.offers.is_empty() {
                if !agent.used().is_empty() || !agent.offered().is_empty() {
                    return Err(format!("agent {agent_id} has neither tasks nor offers but caches some in use"));
                }
                continue;
            }
            if agent.drain.as_ref().is_some_and(|d| d.state == super::DrainState::Drained) && !agent.tasks.is_empty() {
                return Err(format!("drained agent {agent_id} still has tasks"));
            }
            if !agent.is_offerable() && !agent.offers.is_empty() {
                return Err(format!("inactive or deactivated agent {agent_id} has offers"));
            }
            used.clear();
            offered.clear();
            both.clear();
            self.tally_agent(agent_id, agent, &mut used, &mut offered)?;
            indexed_tasks += agent.tasks.len();
            indexed_offers += agent.offers.len();
            if !used.merge_ports() || !offered.merge_ports() {
                return Err(format!("agent {agent_id} gave a port to two tasks or two offers"));
            }
            if !used.equals(agent.used(), &mut scratch) || !offered.equals(agent.offered(), &mut scratch) {
                return Err(format!(
                    "agent {agent_id} caches used {} and offered {}, which its tasks and offers do not add up to",
                    agent.used(),
                    agent.offered()
                ));
            }
            both.add(agent.used());
            both.add(agent.offered());
            if !both.merge_ports() {
                return Err(format!("agent {agent_id} offers a port a task holds"));
            }
            let total = &agent.info.resources;
            let fits = both
                .by_role
                .iter()
                .all(|(role, s)| total.pool(role).is_some_and(|p| p.scalars.contains(s)) || s.is_zero())
                && ports_within(&both.ports, total);
            if !fits {
                return Err(format!(
                    "agent {agent_id} is over-committed: used {used_r}, offered {offered_r} of {total}",
                    used_r = agent.used(),
                    offered_r = agent.offered()
                ));
            }
        }
        if indexed_tasks != task_count || indexed_offers != self.offers.len() {
            return Err("the agents' task or offer indexes miss entries".to_owned());
        }
        Ok(())
    }

    /// Adds up the agent's tasks and offers through its indexes, checking each entry
    /// points back at this agent.
    fn tally_agent<'a>(
        &'a self,
        agent_id: &AgentId,
        agent: &'a AgentRecord,
        used: &mut Tally<'a>,
        offered: &mut Tally<'a>,
    ) -> Result<(), String> {
        for (framework_id, task_id) in &agent.tasks {
            match self.frameworks.get(framework_id).and_then(|f| f.tasks.get(task_id)) {
                Some(task) if &task.info.agent_id == agent_id => used.add(&task.info.resources),
                _ => return Err(format!("agent {agent_id} indexes task {task_id} that is not there")),
            }
        }
        for &n in &agent.offers {
            match self.offers.by_key(n) {
                Some(record)
                    if &record.offer.agent_id == agent_id && self.offers.key(&self.offers.id(n)) == Some(n) =>
                {
                    offered.add(&record.offer.resources)
                }
                _ => return Err(format!("agent {agent_id} indexes offer number {n} that is not there")),
            }
        }
        Ok(())
    }
}
