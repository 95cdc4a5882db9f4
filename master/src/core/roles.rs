//! Operator-set sharing policy (role weights, quota) and dynamic reservations, with the
//! operator calls that change them and the per-role view for `/roles`.
//!
//! The policy is kept apart from the registry in one [`RolePolicy`] value so that a store
//! can persist it as it is and a restarted master can take it back with
//! [`Master::restore_role_policy`].

use agora_proto::acl::Action;
use std::collections::{BTreeMap, BTreeSet};

use agora_proto::model::{AgentId, FrameworkId, OfferId, Resources, Role, Scalars};

use super::master::Master;
use super::{CallError, Operation};

/// A role's weight when the operator set none: 1.0, in thousandths.
pub const DEFAULT_WEIGHT_MILLI: u64 = 1_000;
/// The largest weight accepted: a million, in thousandths.
pub const MAX_WEIGHT_MILLI: u64 = 1_000_000_000;
/// Bound on roles with a weight or quota, and on entries in one weights update.
pub const MAX_POLICY_ROLES: usize = 100_000;
/// Bound on the dynamic reservations one agent may hold (distinct roles).
pub const MAX_RESERVATION_ROLES_PER_AGENT: usize = 64;

/// A role's quota, counted over the role's whole subtree.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quota {
    /// Held for the role: the allocator meets unmet guarantees first and does not hand
    /// out to other roles what is still needed to meet them.
    pub guarantee: Scalars,
    /// Never more than this; `None` is no limit, and `u64::MAX` in one quantity is no
    /// limit on that resource.
    pub limit: Option<Scalars>,
}

/// Everything the operator decided about sharing, in one persistable value.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RolePolicy {
    /// Weights in thousandths (1.0 = 1000); roles not listed weigh 1.0.
    pub weights: BTreeMap<Role, u64>,
    pub quotas: BTreeMap<Role, Quota>,
    /// Dynamically reserved resources per agent (RESERVE operations and `/reserve`).
    /// Re-applied to the agent's resources whenever it (re-)registers.
    pub reservations: BTreeMap<AgentId, Resources>,
}

/// Why an operator call was refused; `field` names the input at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct OperatorError {
    pub kind: OperatorErrorKind,
    pub field: String,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorErrorKind {
    /// The input is malformed or not allowed.
    Invalid,
    /// The input names something that does not exist.
    NotFound,
    /// The input is valid but the cluster's state does not allow it now.
    Conflict,
}

fn invalid(field: &str, reason: impl Into<String>) -> OperatorError {
    OperatorError { kind: OperatorErrorKind::Invalid, field: field.to_owned(), reason: reason.into() }
}

/// One role as the operator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleView {
    pub role: Role,
    pub weight_milli: u64,
    /// Frameworks subscribed to the role.
    pub frameworks: Vec<FrameworkId>,
    /// Used by tasks and held in offers, over the role's subtree.
    pub allocated: Scalars,
    /// The part of `allocated` held in outstanding offers.
    pub offered: Scalars,
    pub quota: Option<Quota>,
    /// `allocated`'s dominant share of the cluster, in parts per million.
    pub dominant_share_ppm: u64,
}

/// The same resources, unreserved.
fn unreserved_equivalent(resources: &Resources) -> Resources {
    let mut out = Resources::new();
    for (_, pool) in resources.pools() {
        out.add_pool(Role::unreserved(), pool.clone());
    }
    out
}

/// Checks that `resources` are non-empty and all reserved (for roles other than `*`).
fn check_reserved(field: &str, resources: &Resources) -> Result<(), OperatorError> {
    if resources.is_empty() {
        return Err(invalid(field, "no resources given"));
    }
    if resources.pools().any(|(role, _)| role.is_unreserved()) {
        return Err(invalid(field, "every resource must name its role, as in `cpus(eng):1`"));
    }
    if resources.pools().count() > MAX_RESERVATION_ROLES_PER_AGENT {
        return Err(invalid(field, format!("at most {MAX_RESERVATION_ROLES_PER_AGENT} roles")));
    }
    Ok(())
}

impl Master {
    pub fn role_policy(&self) -> &RolePolicy {
        &self.policy
    }

    /// Replaces the policy, for a master recovering its store. Reservations are applied
    /// to agents as they register.
    pub fn restore_role_policy(&mut self, policy: RolePolicy) {
        self.policy = policy;
        self.frameworks_changed();
    }

    /// Sets the weights of the given roles (thousandths, > 0); all or nothing.
    pub fn set_weights(&mut self, weights: Vec<(Role, u64)>) -> Result<(), OperatorError> {
        let max_roles = self.config.max_roles.min(MAX_POLICY_ROLES);
        if weights.len() > max_roles {
            return Err(invalid("weights", format!("at most {max_roles} entries")));
        }
        for (i, (role, weight_milli)) in weights.iter().enumerate() {
            if role.is_unreserved() {
                return Err(invalid(&format!("[{i}].role"), "`*` is not a role one can weigh"));
            }
            if *weight_milli == 0 || *weight_milli > MAX_WEIGHT_MILLI {
                return Err(invalid(&format!("[{i}].weight"), "must be more than 0 and at most 1000000"));
            }
        }
        let new_roles = weights.iter().filter(|(r, _)| !self.policy.weights.contains_key(r)).count();
        if self.policy.weights.len().saturating_add(new_roles) > max_roles {
            return Err(invalid(
                "weights",
                format!("at most {max_roles} roles may have a weight; {} have one", self.policy.weights.len()),
            ));
        }
        for (role, weight_milli) in weights {
            if weight_milli == DEFAULT_WEIGHT_MILLI {
                self.policy.weights.remove(&role);
            } else {
                self.policy.weights.insert(role, weight_milli);
            }
        }
        self.persist_role_policy();
        self.frameworks_changed();
        Ok(())
    }

    /// Refuses quota changes whose guarantees, with the quotas that stay, would add up to
    /// more than the active agents hold (as Mesos does unless forced): such a guarantee
    /// cannot be met, and while the allocator tries, every other role gets nothing.
    /// Guarantees of roles nested under a role with quota count within it, not again.
    /// A change that is invalid in itself (a limit under its guarantee) passes here: the
    /// setter that follows refuses it naming its field.
    pub fn check_quota_capacity(&self, field: &str, changes: &[(Role, Option<Quota>)]) -> Result<(), OperatorError> {
        let invalid = |q: &Quota| q.limit.as_ref().is_some_and(|limit| !limit.contains(&q.guarantee));
        if changes.iter().any(|(_, quota)| quota.as_ref().is_some_and(invalid)) {
            return Ok(());
        }
        let mut quotas = self.policy.quotas.clone();
        for (role, quota) in changes {
            match quota {
                Some(quota) => quotas.insert(role.clone(), quota.clone()),
                None => quotas.remove(role),
            };
        }
        let has_quota_above = |role: &Role| {
            let mut at = super::allocator::parent_role(role);
            while let Some(parent) = at {
                if quotas.contains_key(&parent) {
                    return true;
                }
                at = super::allocator::parent_role(&parent);
            }
            false
        };
        let guaranteed = quotas
            .iter()
            .filter(|(role, _)| !has_quota_above(role))
            .fold(Scalars::ZERO, |sum, (_, quota)| sum.saturating_add(&quota.guarantee));
        let capacity = self
            .agents
            .values()
            .filter(|a| a.is_active())
            .fold(Scalars::ZERO, |sum, a| sum.saturating_add(&a.info.resources.scalars()));
        if capacity.contains(&guaranteed) {
            return Ok(());
        }
        Err(OperatorError {
            kind: OperatorErrorKind::Conflict,
            field: field.to_owned(),
            reason: format!(
                "the guarantees would add up to {}, more than the active agents hold ({}); add agents \
                 first, or force the change",
                scalars_text(&guaranteed),
                scalars_text(&capacity)
            ),
        })
    }

    /// Sets (or replaces) a role's quota.
    pub fn set_quota(&mut self, role: Role, quota: Quota) -> Result<(), OperatorError> {
        if role.is_unreserved() {
            return Err(invalid("role", "`*` cannot have quota"));
        }
        if let Some(limit) = &quota.limit
            && !limit.contains(&quota.guarantee)
        {
            return Err(invalid("limit", "must be at least the guarantee in every resource"));
        }
        let max_roles = self.config.max_roles.min(MAX_POLICY_ROLES);
        if !self.policy.quotas.contains_key(&role) && self.policy.quotas.len() >= max_roles {
            return Err(invalid("role", format!("at most {max_roles} roles may have quota")));
        }
        self.policy.quotas.insert(role, quota);
        self.persist_role_policy();
        self.frameworks_changed();
        Ok(())
    }

    /// Sets or (with `None`) removes several roles' quota, all or nothing (Mesos'
    /// UPDATE_QUOTA). Removing a quota a role does not have is no change.
    pub fn update_quotas(&mut self, changes: Vec<(Role, Option<Quota>)>) -> Result<(), OperatorError> {
        let mut quotas = self.policy.quotas.clone();
        for (i, (role, quota)) in changes.into_iter().enumerate() {
            let field = format!("quota_configs[{i}]");
            if role.is_unreserved() {
                return Err(invalid(&format!("{field}.role"), "`*` cannot have quota"));
            }
            match quota {
                None => {
                    quotas.remove(&role);
                }
                Some(quota) => {
                    if let Some(limit) = &quota.limit
                        && !limit.contains(&quota.guarantee)
                    {
                        return Err(invalid(
                            &format!("{field}.limits"),
                            "must be at least the guarantee in every resource",
                        ));
                    }
                    quotas.insert(role, quota);
                }
            }
        }
        let max_roles = self.config.max_roles.min(MAX_POLICY_ROLES);
        if quotas.len() > max_roles {
            return Err(invalid("quota_configs", format!("at most {max_roles} roles may have quota")));
        }
        self.policy.quotas = quotas;
        self.persist_role_policy();
        self.frameworks_changed();
        Ok(())
    }

    pub fn remove_quota(&mut self, role: &Role) -> Result<Quota, OperatorError> {
        let Some(quota) = self.policy.quotas.remove(role) else {
            return Err(OperatorError {
                kind: OperatorErrorKind::NotFound,
                field: "role".to_owned(),
                reason: format!("role {role} has no quota"),
            });
        };
        self.persist_role_policy();
        self.frameworks_changed();
        Ok(quota)
    }

    /// Reserves free unreserved resources of an agent for roles (`cpus(eng):1`). The
    /// agent's outstanding offers are rescinded first, so that what they held can be
    /// reserved.
    pub fn reserve(&mut self, agent_id: &AgentId, resources: &Resources) -> Result<(), OperatorError> {
        check_reserved("resources", resources)?;
        self.check_agent(agent_id)?;
        self.rescind_agent_offers(agent_id);
        let needed = unreserved_equivalent(resources);
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return Err(self.unknown_agent(agent_id)) };
        if !agent.free().contains(&needed) {
            return Err(OperatorError {
                kind: OperatorErrorKind::Conflict,
                field: "resources".to_owned(),
                reason: format!("agent {agent_id} has not {needed} free and unreserved"),
            });
        }
        let mut info = agent.info.resources.clone();
        if !info.subtract(&needed) {
            return Err(invalid("resources", "not on the agent"));
        }
        info.add(resources);
        agent.set_resources(info);
        agent.stuck_epoch = None;
        drop(agent);
        self.policy.reservations.entry(agent_id.clone()).or_default().add(resources);
        self.persist_role_policy();
        self.dirty = true;
        Ok(())
    }

    /// Gives back dynamically reserved resources that no task uses.
    pub fn unreserve(&mut self, agent_id: &AgentId, resources: &Resources) -> Result<(), OperatorError> {
        check_reserved("resources", resources)?;
        self.check_agent(agent_id)?;
        let reserved = self.policy.reservations.get(agent_id).cloned().unwrap_or_default();
        if !reserved.contains(resources) {
            return Err(OperatorError {
                kind: OperatorErrorKind::Conflict,
                field: "resources".to_owned(),
                reason: format!(
                    "agent {agent_id} holds no such dynamic reservation (it holds {})",
                    if reserved.is_empty() { "none".to_owned() } else { reserved.to_string() }
                ),
            });
        }
        self.rescind_agent_offers(agent_id);
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return Err(self.unknown_agent(agent_id)) };
        if !agent.free().contains(resources) {
            return Err(OperatorError {
                kind: OperatorErrorKind::Conflict,
                field: "resources".to_owned(),
                reason: "tasks use part of these reserved resources".to_owned(),
            });
        }
        let mut info = agent.info.resources.clone();
        if !info.subtract(resources) {
            return Err(invalid("resources", "not on the agent"));
        }
        info.add(&unreserved_equivalent(resources));
        agent.set_resources(info);
        agent.stuck_epoch = None;
        drop(agent);
        if let Some(held) = self.policy.reservations.get_mut(agent_id) {
            held.subtract(resources);
            if held.is_empty() {
                self.policy.reservations.remove(agent_id);
            }
        }
        self.persist_role_policy();
        self.dirty = true;
        Ok(())
    }

    fn check_agent(&self, agent_id: &AgentId) -> Result<(), OperatorError> {
        if self.agents.contains_key(agent_id) { Ok(()) } else { Err(self.unknown_agent(agent_id)) }
    }

    fn unknown_agent(&self, agent_id: &AgentId) -> OperatorError {
        OperatorError {
            kind: OperatorErrorKind::NotFound,
            field: "agent_id".to_owned(),
            reason: format!("agent {agent_id} is not known"),
        }
    }

    /// Converts the agent's unreserved resources into its remembered dynamic
    /// reservations, as far as they fit (its resources may have shrunk meanwhile).
    pub(crate) fn apply_reservations(&mut self, agent_id: &AgentId) {
        let Some(reserved) = self.policy.reservations.get(agent_id) else { return };
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return };
        for (role, pool) in reserved.pools() {
            let mut one = Resources::new();
            one.add_pool(role.clone(), pool.clone());
            let mut info = agent.info.resources.clone();
            if info.subtract(&unreserved_equivalent(&one)) {
                info.add(&one);
                agent.set_resources(info);
            }
        }
    }

    /// Every role that has frameworks, resources, a weight or quota, by name; ancestors
    /// of those included.
    pub fn roles(&self) -> Vec<RoleView> {
        let mut names: BTreeSet<Role> = BTreeSet::new();
        for framework in self.frameworks.values() {
            names.extend(framework.info.roles.iter().cloned());
            names.extend(framework.allocated.keys().cloned());
        }
        names.extend(self.policy.weights.keys().cloned());
        names.extend(self.policy.quotas.keys().cloned());
        for reserved in self.policy.reservations.values() {
            names.extend(reserved.pools().map(|(r, _)| r.clone()));
        }
        let listed: Vec<Role> = names.iter().cloned().collect();
        for role in listed {
            let mut next = super::allocator::parent_role(&role);
            while let Some(parent) = next {
                next = super::allocator::parent_role(&parent);
                names.insert(parent);
            }
        }
        names.remove(&Role::unreserved());
        let total = self
            .agents
            .values()
            .filter(|a| a.is_active())
            .fold(Scalars::ZERO, |sum, a| sum.saturating_add(&a.info.resources.scalars()));
        // One pass over frameworks and offers, each amount added to its role and every
        // ancestor: the view costs O(frameworks × roles each × depth), not roles × frameworks.
        fn add_up(map: &mut BTreeMap<Role, Scalars>, role: &Role, scalars: &Scalars) {
            let mut at = Some(role.clone());
            while let Some(role) = at {
                at = super::allocator::parent_role(&role);
                let entry = map.entry(role).or_insert(Scalars::ZERO);
                *entry = entry.saturating_add(scalars);
            }
        }
        let mut allocated_by: BTreeMap<Role, Scalars> = BTreeMap::new();
        let mut offered_by: BTreeMap<Role, Scalars> = BTreeMap::new();
        let mut frameworks_by: BTreeMap<&Role, Vec<FrameworkId>> = BTreeMap::new();
        for (id, framework) in &self.frameworks {
            for role in &framework.info.roles {
                frameworks_by.entry(role).or_default().push(id.clone());
            }
            for (role, scalars) in framework.allocated.iter() {
                add_up(&mut allocated_by, role, scalars);
            }
        }
        for record in self.offers.values() {
            add_up(&mut offered_by, &record.role, &record.offer.resources.scalars());
        }
        let mut views = Vec::new();
        for role in names.iter().chain(std::iter::once(&Role::unreserved())) {
            let allocated = allocated_by.get(role).copied().unwrap_or(Scalars::ZERO);
            let offered = offered_by.get(role).copied().unwrap_or(Scalars::ZERO);
            let frameworks = frameworks_by.get(role).cloned().unwrap_or_default();
            if role.is_unreserved() && frameworks.is_empty() && allocated.is_zero() {
                continue;
            }
            views.push(RoleView {
                role: role.clone(),
                weight_milli: self.policy.weights.get(role).copied().unwrap_or(DEFAULT_WEIGHT_MILLI),
                frameworks,
                allocated,
                offered,
                quota: self.policy.quotas.get(role).cloned(),
                dominant_share_ppm: allocated.dominant_share_ppm(&total),
            });
        }
        views
    }

    /// Some change may let clients take agents they could not before (a framework
    /// subscribed or revived, the policy changed): no agent is stuck any more.
    pub(crate) fn frameworks_changed(&mut self) {
        self.alloc_epoch = self.alloc_epoch.saturating_add(1);
        self.dirty = true;
    }

    /// Something changed on one agent (resources freed, a filter lifted).
    pub(crate) fn agent_changed(&mut self, agent_id: &AgentId) {
        if let Some(mut agent) = self.agents.get_mut(agent_id) {
            agent.stuck_epoch = None;
        }
        self.allocation_changed();
    }

    /// What an agent's change means beyond the agent: a round is due, and with quota one
    /// role's allocation shrinking changes what others may get.
    pub(crate) fn allocation_changed(&mut self) {
        if !self.policy.quotas.is_empty() {
            self.alloc_epoch = self.alloc_epoch.saturating_add(1);
        }
        self.dirty = true;
    }
}

impl Master {
    /// Checks the RESERVE and UNRESERVE operations of an ACCEPT against the named offers,
    /// in order, without changing anything; returns them as (reserve?, resources).
    pub(crate) fn check_reservations(
        &self,
        framework_id: &FrameworkId,
        offer_ids: &[OfferId],
        operations: &[Operation],
    ) -> Result<Vec<(bool, Resources)>, CallError> {
        let wanted = operations.iter().any(|op| !matches!(op, Operation::Launch { .. }));
        if !wanted {
            return Ok(Vec::new());
        }
        let mut left = Resources::new();
        let mut role: Option<&Role> = None;
        let mut agent_id: Option<&AgentId> = None;
        for offer_id in offer_ids {
            if let Some(record) = self.offers.get(offer_id).filter(|o| &o.offer.framework_id == framework_id) {
                left.add(&record.offer.resources);
                role.get_or_insert(&record.role);
                agent_id.get_or_insert(&record.offer.agent_id);
            }
        }
        let (Some(role), Some(agent_id)) = (role, agent_id) else { return Ok(Vec::new()) };
        let dynamic = self.policy.reservations.get(agent_id).cloned().unwrap_or_default();
        let mut checked = Vec::new();
        for (i, op) in operations.iter().enumerate() {
            let (reserve, resources, field) = match op {
                Operation::Launch { .. } => continue,
                Operation::Reserve { resources } => {
                    (true, resources, format!("accept.operations[{i}].reserve.resources"))
                }
                Operation::Unreserve { resources } => {
                    (false, resources, format!("accept.operations[{i}].unreserve.resources"))
                }
            };
            let refuse = |reason: String| CallError::Invalid { field: field.clone(), reason };
            check_reserved(&field, resources).map_err(|e| refuse(e.reason))?;
            if let Some(acls) = &self.config.acls {
                let action = if reserve { Action::ReserveResources } else { Action::UnreserveResources };
                let principal = self.frameworks.get(framework_id).map(|f| f.info.principal.as_str());
                let principal = principal.filter(|p| !p.is_empty());
                for (reserved_role, _) in resources.pools() {
                    acls.check(action, principal, reserved_role.as_str())
                        .map_err(|denied| CallError::Forbidden(denied.to_string()))?;
                }
            }
            if reserve {
                if let Some((other, _)) = resources.pools().find(|(r, _)| *r != role) {
                    return Err(refuse(format!("the offers are for role {role}, not {other}")));
                }
                let needed = unreserved_equivalent(resources);
                if !left.subtract(&needed) {
                    return Err(refuse(format!("the offers do not hold {needed} unreserved")));
                }
                left.add(resources);
            } else {
                if !dynamic.contains(resources) {
                    return Err(refuse("only dynamically reserved resources can be unreserved".to_owned()));
                }
                if !left.subtract(resources) {
                    return Err(refuse(format!("the offers do not hold {resources}")));
                }
                left.add(&unreserved_equivalent(resources));
            }
            checked.push((reserve, resources.clone()));
        }
        Ok(checked)
    }

    /// Applies a checked RESERVE (or UNRESERVE) to the agent, whose offers were just
    /// accepted (so the resources are free), and to what is left of those offers.
    pub(crate) fn apply_reservation(
        &mut self,
        agent_id: &AgentId,
        left: &mut Resources,
        resources: &Resources,
        reserve: bool,
    ) {
        let unreserved = unreserved_equivalent(resources);
        let (from, to) = if reserve { (&unreserved, resources) } else { (resources, &unreserved) };
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return };
        let mut info = agent.info.resources.clone();
        let mut rest = left.clone();
        if !(info.subtract(from) && rest.subtract(from)) {
            return;
        }
        info.add(to);
        rest.add(to);
        agent.set_resources(info);
        agent.stuck_epoch = None;
        *left = rest;
        drop(agent);
        let held = self.policy.reservations.entry(agent_id.clone()).or_default();
        if reserve {
            held.add(resources);
        } else {
            held.subtract(resources);
        }
        if held.is_empty() {
            self.policy.reservations.remove(agent_id);
        }
        self.persist_role_policy();
        self.dirty = true;
    }
}

/// `cpus 4, mem 8192 MiB, disk 0 MiB`: quantities in an operator's words.
fn scalars_text(s: &Scalars) -> String {
    format!("cpus {}, mem {} MiB, disk {} MiB", agora_proto::model::format_cpus(s.cpus_milli), s.mem_mib, s.disk_mib)
}
