//! Dominant resource fairness: decides which framework is offered each agent's free
//! resources in one allocation round.
//!
//! The allocator only reads the registry and returns [`Grant`]s; the master turns them
//! into offers. Frameworks are grouped by role (role → frameworks), the role with the
//! lowest dominant share picks first and, within it, the framework with the lowest
//! dominant share; ties break on the name, so a round is deterministic for a given seed.
//! Weights, quota and nested roles extend the role level later without touching the
//! framework level.

use std::collections::{BTreeMap, BTreeSet};

use agora_proto::model::{AgentId, FrameworkId, Resources, Role, Scalars};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::registry::{AgentRecord, FrameworkRecord};

/// Resources of one agent granted to one framework.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Grant {
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
    pub resources: Resources,
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

    fn admits_scalars(&self, s: &Scalars) -> bool {
        s.cpus_milli >= self.cpus_milli || s.mem_mib >= self.mem_mib
    }
}

/// Dominant shares of the frameworks of one role.
#[derive(Debug, Default)]
struct RoleEntry {
    /// What every framework of the role holds (used + offered), eligible or not.
    allocated: Scalars,
    /// Eligible frameworks, lowest share first.
    order: BTreeSet<(u64, FrameworkId)>,
    /// Each eligible framework's current allocation and the share it is sorted under.
    shares: BTreeMap<FrameworkId, (Scalars, u64)>,
}

/// Two-level DRF sorter: roles by share, then frameworks within a role by share.
#[derive(Debug, Default)]
struct Sorter {
    total: Scalars,
    roles: BTreeMap<Role, RoleEntry>,
    /// Roles with at least one eligible framework, lowest share first.
    order: BTreeSet<(u64, Role)>,
}

impl Sorter {
    fn build(frameworks: &BTreeMap<FrameworkId, FrameworkRecord>, total: Scalars) -> Self {
        let mut sorter = Sorter { total, ..Sorter::default() };
        for (id, framework) in frameworks {
            let allocated = framework.used_scalars.saturating_add(&framework.offered_scalars);
            let entry = sorter.roles.entry(framework.allocation_role()).or_default();
            entry.allocated = entry.allocated.saturating_add(&allocated);
            if framework.wants_offers() {
                let share = allocated.dominant_share_ppm(&total);
                entry.order.insert((share, id.clone()));
                entry.shares.insert(id.clone(), (allocated, share));
            }
        }
        for (role, entry) in &sorter.roles {
            if !entry.order.is_empty() {
                sorter.order.insert((entry.allocated.dominant_share_ppm(&total), role.clone()));
            }
        }
        sorter
    }

    /// Adds `granted` to the framework's and its role's allocation and re-sorts both.
    fn charge(&mut self, role: &Role, framework_id: &FrameworkId, granted: Scalars) {
        let total = self.total;
        let Some(entry) = self.roles.get_mut(role) else { return };
        let old_role_share = entry.allocated.dominant_share_ppm(&total);
        entry.allocated = entry.allocated.saturating_add(&granted);
        if let Some((allocated, share)) = entry.shares.get_mut(framework_id) {
            entry.order.remove(&(*share, framework_id.clone()));
            *allocated = allocated.saturating_add(&granted);
            *share = allocated.dominant_share_ppm(&total);
            entry.order.insert((*share, framework_id.clone()));
        }
        if self.order.remove(&(old_role_share, role.clone())) {
            self.order.insert((entry.allocated.dominant_share_ppm(&total), role.clone()));
        }
    }
}

/// Runs one round: each active agent with enough free resources, in an order shuffled by
/// `rng`, goes to the lowest-share framework that wants offers and has not filtered it.
pub(crate) fn allocate(
    rng: &mut ChaCha8Rng,
    agents: &BTreeMap<AgentId, AgentRecord>,
    frameworks: &BTreeMap<FrameworkId, FrameworkRecord>,
    min: MinAllocatable,
    now_ms: u64,
) -> Vec<Grant> {
    let total = agents
        .values()
        .filter(|a| a.is_active())
        .fold(Scalars::ZERO, |sum, a| sum.saturating_add(&a.info.resources.scalars()));
    let mut sorter = Sorter::build(frameworks, total);
    if sorter.order.is_empty() {
        return Vec::new();
    }
    // Most agents of a busy cluster have nothing free; the scalar test rejects them
    // without building their free resources.
    let mut candidates: Vec<(&AgentId, Resources)> = agents
        .iter()
        .filter(|(_, a)| a.is_active())
        .filter(|(_, a)| {
            let free =
                a.info.resources.scalars().saturating_sub(&a.used.scalars()).saturating_sub(&a.offered.scalars());
            min.admits_scalars(&free)
        })
        .map(|(id, a)| (id, a.free()))
        .filter(|(_, free)| min.admits(free))
        .collect();
    candidates.shuffle(rng);

    let mut grants = Vec::new();
    let mut roles: Vec<Role> = Vec::new();
    for (agent_id, mut free) in candidates {
        // The role order changes as grants are charged; each agent walks a fresh copy.
        roles.clear();
        roles.extend(sorter.order.iter().map(|(_, role)| role.clone()));
        for role in &roles {
            let offerable = free.allocatable_to(role);
            if !min.admits(&offerable) {
                continue;
            }
            let chosen = sorter.roles.get(role).and_then(|entry| {
                entry
                    .order
                    .iter()
                    .map(|(_, id)| id)
                    .find(|id| frameworks.get(*id).is_some_and(|f| !f.is_filtered(agent_id, now_ms)))
                    .cloned()
            });
            let Some(framework_id) = chosen else { continue };
            if !free.subtract(&offerable) {
                continue;
            }
            sorter.charge(role, &framework_id, offerable.scalars());
            grants.push(Grant { agent_id: agent_id.clone(), framework_id, resources: offerable });
            if !min.admits(&free) {
                break;
            }
        }
    }
    grants
}
