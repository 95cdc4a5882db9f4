//! Operators taking agents and machines out of service: deactivation (no new offers, tasks
//! left alone), draining (tasks killed with their grace, DRAINING then DRAINED, optionally
//! gone), marking an agent gone, and Mesos' maintenance schedules (machines DRAINING while
//! scheduled, DOWN between START_MAINTENANCE and STOP_MAINTENANCE, when their agents may not
//! register).
//!
//! An agent's `deactivated` flag and drain live on its record and are persisted with it
//! (`DurableAgent`); the schedule and the machines that are down are persisted whole
//! (`RegistryOp::PutMaintenance`). Every call checks all its input before it changes
//! anything, so a refused call stores nothing.

use std::collections::{BTreeMap, BTreeSet};

pub use agora_proto::model::Unavailability;
use agora_proto::model::{AgentId, FrameworkId, OfferId, TaskId, TaskState, TaskStatus, TaskStatusReason};
use serde::{Deserialize, Serialize};

use super::durable::RegistryOp;
use super::master::Master;
use super::roles::{OperatorError, OperatorErrorKind};
use super::{Event, InverseOffer, MAX_OFFERS_PER_CALL, Output, ToAgent};

/// Most machines a maintenance schedule may name, over all its windows.
pub const MAX_MAINTENANCE_MACHINES: usize = 10_000;
/// Most windows a maintenance schedule may have.
pub const MAX_MAINTENANCE_WINDOWS: usize = 1_000;
/// The grace period an agent gives a task that names none (the agent's default), which a
/// drain's `max_grace_period` may shorten but never lengthen.
pub const DEFAULT_KILL_GRACE_MS: u64 = 3_000;
/// Longest hostname or IP text a machine id may have.
const MAX_MACHINE_NAME_BYTES: usize = 255;

/// Where an agent's drain stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrainState {
    /// Its tasks are being killed.
    Draining,
    /// It has no task left.
    Drained,
}

/// An agent's drain: its state and how it was asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainInfo {
    pub state: DrainState,
    /// The longest grace period a task gets; `None`: each task's own.
    pub max_grace_period_ms: Option<u64>,
    /// The agent becomes gone once drained.
    pub mark_gone: bool,
}

/// A machine as Mesos names it: a hostname (kept lower-case: hostnames are not
/// case-sensitive), an IP, or both. Agora's agents advertise one address, their hostname,
/// so a machine holds the agents whose hostname is its `hostname` or its `ip`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MachineId {
    pub hostname: String,
    pub ip: String,
}

impl MachineId {
    /// Whether an agent advertising `hostname` runs on this machine.
    pub fn holds(&self, hostname: &str) -> bool {
        (!self.hostname.is_empty() && self.hostname.eq_ignore_ascii_case(hostname))
            || (!self.ip.is_empty() && self.ip == hostname)
    }
}

impl std::fmt::Display for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.hostname, self.ip)
    }
}

/// Machines that go down together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub machines: Vec<MachineId>,
    pub unavailability: Unavailability,
}

/// The operator's maintenance schedule and the machines it took down; persisted whole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    pub windows: Vec<Window>,
    /// Machines between START_MAINTENANCE and STOP_MAINTENANCE; always in `windows`.
    pub down: BTreeSet<MachineId>,
}

/// A machine's mode, as Mesos names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineMode {
    Up,
    Draining,
    Down,
}

impl Maintenance {
    /// The scheduled machine an agent advertising `hostname` runs on, with its window.
    pub fn machine_of(&self, hostname: &str) -> Option<(&MachineId, &Window)> {
        self.windows.iter().find_map(|w| w.machines.iter().find(|m| m.holds(hostname)).map(|m| (m, w)))
    }

    pub fn mode(&self, machine: &MachineId) -> MachineMode {
        if self.down.contains(machine) {
            MachineMode::Down
        } else if self.windows.iter().any(|w| w.machines.contains(machine)) {
            MachineMode::Draining
        } else {
            MachineMode::Up
        }
    }

    /// Whether an agent advertising `hostname` is on a machine that is down.
    pub fn is_down(&self, hostname: &str) -> bool {
        self.down.iter().any(|m| m.holds(hostname))
    }

    /// Scheduled machines that are not down, in schedule order.
    pub fn draining(&self) -> Vec<MachineId> {
        self.windows.iter().flat_map(|w| &w.machines).filter(|m| !self.down.contains(*m)).cloned().collect()
    }
}

/// A framework's answer to an inverse offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InverseOfferAnswer {
    Accept,
    Decline,
}

/// What one framework said of a draining machine (Mesos' `InverseOfferStatus`): `None`
/// while its inverse offer is unanswered (UNKNOWN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InverseOfferStatus {
    pub framework_id: FrameworkId,
    pub answer: Option<InverseOfferAnswer>,
    pub timestamp_ms: u64,
}

/// Inverse offers made and answered; kept in memory only, as Mesos keeps them: after a
/// restart, frameworks are asked again.
#[derive(Debug, Default)]
pub(crate) struct InverseOffers {
    next: u64,
    /// Unanswered ones by id: the framework, the agent and its machine.
    outstanding: BTreeMap<OfferId, (FrameworkId, AgentId, MachineId)>,
    /// The (framework, agent) pairs with one outstanding.
    sent: BTreeSet<(FrameworkId, AgentId)>,
    /// By machine and framework: the answer (`None`: not yet) and when it was made.
    statuses: BTreeMap<MachineId, BTreeMap<FrameworkId, (Option<InverseOfferAnswer>, u64)>>,
}

impl InverseOffers {
    /// Forgets what concerns machines `keep` refuses.
    fn retain_machines(&mut self, keep: impl Fn(&MachineId) -> bool) {
        let sent = &mut self.sent;
        self.outstanding.retain(|_, (framework_id, agent_id, machine)| {
            let kept = keep(machine);
            if !kept {
                sent.remove(&(framework_id.clone(), agent_id.clone()));
            }
            kept
        });
        self.statuses.retain(|machine, _| keep(machine));
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> OperatorError {
    OperatorError { kind: OperatorErrorKind::Invalid, field: field.to_owned(), reason: reason.into() }
}

fn conflict(field: &str, reason: impl Into<String>) -> OperatorError {
    OperatorError { kind: OperatorErrorKind::Conflict, field: field.to_owned(), reason: reason.into() }
}

/// A machine id as given, checked and normalised: at least one of hostname and IP, the IP
/// a valid address, the hostname lower-cased.
pub fn machine_id(field: &str, hostname: &str, ip: &str) -> Result<MachineId, OperatorError> {
    if hostname.is_empty() && ip.is_empty() {
        return Err(invalid(field, "must name a hostname, an ip, or both"));
    }
    if hostname.len() > MAX_MACHINE_NAME_BYTES || hostname.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(&format!("{field}.hostname"), "must be a hostname of at most 255 bytes"));
    }
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(&format!("{field}.ip"), format!("{ip:?} is not an IP address")));
    }
    Ok(MachineId { hostname: hostname.to_ascii_lowercase(), ip: ip.to_owned() })
}

/// The grace period a drain gives a task: its own, at most the drain's bound.
fn drain_grace(task_grace_ms: Option<u64>, max_grace_ms: Option<u64>) -> Option<u64> {
    match (task_grace_ms, max_grace_ms) {
        (Some(own), Some(max)) => Some(own.min(max)),
        (None, Some(max)) => Some(DEFAULT_KILL_GRACE_MS.min(max)),
        (own, None) => own,
    }
}

impl Master {
    fn known_agent(&self, field: &str, agent_id: &AgentId) -> Result<(), OperatorError> {
        if self.agents.contains_key(agent_id) {
            Ok(())
        } else {
            Err(OperatorError {
                kind: OperatorErrorKind::NotFound,
                field: field.to_owned(),
                reason: format!("agent {agent_id} is not known"),
            })
        }
    }

    /// Stops offering the agent (its outstanding offers are rescinded); its tasks run on.
    /// Idempotent.
    pub fn deactivate_agent(&mut self, agent_id: &AgentId) -> Result<(), OperatorError> {
        self.known_agent("agent_id", agent_id)?;
        self.set_deactivated(agent_id);
        Ok(())
    }

    fn set_deactivated(&mut self, agent_id: &AgentId) {
        self.rescind_agent_offers(agent_id);
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return };
        if agent.deactivated {
            return;
        }
        agent.deactivated = true;
        drop(agent);
        self.persist_agent(agent_id);
    }

    /// Offers the agent again and forgets a finished drain. Refused, as in Mesos, for an
    /// agent that is not deactivated or is still draining.
    pub fn reactivate_agent(&mut self, agent_id: &AgentId) -> Result<(), OperatorError> {
        self.known_agent("agent_id", agent_id)?;
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return Ok(()) };
        if !agent.deactivated {
            return Err(conflict("agent_id", format!("agent {agent_id} is not deactivated")));
        }
        if agent.drain.as_ref().is_some_and(|d| d.state == DrainState::Draining) {
            return Err(conflict("agent_id", format!("agent {agent_id} is still draining")));
        }
        agent.deactivated = false;
        agent.drain = None;
        agent.stuck_epoch = None;
        drop(agent);
        self.persist_agent(agent_id);
        self.agent_changed(agent_id);
        Ok(())
    }

    /// Drains the agent: deactivated, every task killed with its grace period (at most
    /// `max_grace_period_ms`), DRAINED once no task is left, then gone if `mark_gone`. A
    /// drain of a draining agent replaces its settings. Refused for an agent on a machine
    /// in the maintenance schedule, as in Mesos (the schedule drains it already).
    pub fn drain_agent(
        &mut self,
        now_ms: u64,
        agent_id: &AgentId,
        max_grace_period_ms: Option<u64>,
        mark_gone: bool,
    ) -> Result<(), OperatorError> {
        self.known_agent("agent_id", agent_id)?;
        let hostname = self.agents.get(agent_id).map(|a| a.info.hostname.clone()).unwrap_or_default();
        if let Some((machine, _)) = self.maintenance.machine_of(&hostname) {
            return Err(conflict(
                "agent_id",
                format!("agent {agent_id} is on machine {machine} of the maintenance schedule"),
            ));
        }
        self.set_deactivated(agent_id);
        if let Some(mut agent) = self.agents.get_mut(agent_id) {
            agent.drain = Some(DrainInfo { state: DrainState::Draining, max_grace_period_ms, mark_gone });
        }
        self.persist_agent(agent_id);
        self.kill_draining_tasks(now_ms, agent_id);
        Ok(())
    }

    /// Kills every task of a draining agent (again after it re-registers), or finishes the
    /// drain when none is left.
    pub(crate) fn kill_draining_tasks(&mut self, _now_ms: u64, agent_id: &AgentId) {
        let Some(agent) = self.agents.get(agent_id) else { return };
        let Some(drain) = agent.drain.as_ref().filter(|d| d.state == DrainState::Draining) else { return };
        let max_grace_ms = drain.max_grace_period_ms;
        let tasks: Vec<(FrameworkId, TaskId)> = agent.tasks.iter().cloned().collect();
        if tasks.is_empty() {
            self.finish_drain(agent_id);
            return;
        }
        for (framework_id, task_id) in tasks {
            self.kill_task_with_grace(&framework_id, &task_id, max_grace_ms);
        }
    }

    /// Sends a kill whose grace period is at most `max_grace_ms`, or remembers it for when
    /// the agent returns.
    fn kill_task_with_grace(&mut self, framework_id: &FrameworkId, task_id: &TaskId, max_grace_ms: Option<u64>) {
        let Some(task) = self.frameworks.get_mut(framework_id).and_then(|f| f.tasks.get_mut(task_id)) else {
            return;
        };
        let agent_id = task.info.agent_id.clone();
        if self.agents.get(&agent_id).is_some_and(|a| a.is_active()) {
            task.kill_pending = false;
            let message = ToAgent::KillTask {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                grace_period_ms: drain_grace(task.info.kill_grace_period_ms, max_grace_ms),
            };
            self.outbox.push(Output::ToAgent { agent_id, message });
        } else {
            task.kill_pending = true;
        }
    }

    /// A draining agent's last task ended: DRAINED, and gone if the drain said so.
    pub(crate) fn finish_drain(&mut self, agent_id: &AgentId) {
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return };
        let Some(drain) = agent.drain.as_mut().filter(|d| d.state == DrainState::Draining) else { return };
        drain.state = DrainState::Drained;
        let mark_gone = drain.mark_gone;
        drop(agent);
        self.persist_agent(agent_id);
        if mark_gone {
            self.remove_agent_for_good(0, agent_id, "the agent was drained and marked gone");
        }
    }

    /// Declares the agent gone at the operator's word (Mesos' MARK_AGENT_GONE): its tasks
    /// are TASK_GONE_BY_OPERATOR, its connection is closed, and it may never register
    /// under this id again. Idempotent: an agent already gone is accepted.
    pub fn mark_agent_gone(&mut self, now_ms: u64, agent_id: &AgentId) -> Result<(), OperatorError> {
        if self.gone_agent_set.contains(agent_id) {
            return Ok(());
        }
        self.known_agent("agent_id", agent_id)?;
        self.remove_agent_for_good(now_ms, agent_id, "the operator marked the agent gone");
        Ok(())
    }

    /// Removes an agent for good: tasks TASK_GONE_BY_OPERATOR, offers rescinded, the
    /// connection closed (the agent finds it is gone when it dials again), the id
    /// remembered as gone.
    pub(crate) fn remove_agent_for_good(&mut self, now_ms: u64, agent_id: &AgentId, message: &str) {
        self.rescind_agent_offers(agent_id);
        let connected = self.agents.get(agent_id).is_some_and(|a| a.conn.is_some());
        let Some(agent) = self.agents.remove(agent_id) else { return };
        for (framework_id, task_id) in agent.tasks {
            let status = TaskStatus::from_master(
                task_id.clone(),
                Some(agent_id.clone()),
                TaskState::TaskGoneByOperator,
                TaskStatusReason::AgentRemoved,
                message,
                now_ms,
            );
            self.transition_task(&framework_id, &task_id, status, true);
        }
        self.remember_gone_agent(agent_id.clone());
        self.counters.agents_removed = self.counters.agents_removed.saturating_add(1);
        self.outbox.push(Output::Persist(RegistryOp::RemoveAgent { agent_id: agent_id.clone() }));
        if connected {
            self.outbox.push(Output::ReconnectAgent { agent_id: agent_id.clone() });
        }
        self.dirty = true;
    }

    /// The framework of live task `task_id` (in `framework_id`, if given). Without
    /// `framework_id` the task id must name one live task.
    pub fn live_task_framework(
        &self,
        framework_id: Option<&FrameworkId>,
        task_id: &TaskId,
    ) -> Result<FrameworkId, OperatorError> {
        let owner = match framework_id {
            Some(id) => {
                let framework = self.frameworks.get(id).ok_or_else(|| OperatorError {
                    kind: OperatorErrorKind::NotFound,
                    field: "framework_id".to_owned(),
                    reason: format!("framework {id} is not known"),
                })?;
                framework.tasks.contains_key(task_id).then(|| id.clone())
            }
            None => {
                let mut owners =
                    self.frameworks.iter().filter(|(_, f)| f.tasks.contains_key(task_id)).map(|(id, _)| id);
                let first = owners.next().cloned();
                if let (Some(first), Some(second)) = (&first, owners.next()) {
                    return Err(conflict(
                        "framework_id",
                        format!("task {task_id} is live in frameworks {first} and {second}; name the framework"),
                    ));
                }
                first
            }
        };
        owner.ok_or_else(|| OperatorError {
            kind: OperatorErrorKind::NotFound,
            field: "task_id".to_owned(),
            reason: format!("no live task {task_id}"),
        })
    }

    /// Kills a live task at the operator's word (Agora's KILL_TASK; Mesos' operator API has
    /// none): as the framework's own KILL, the agent kills it with its grace period and
    /// reports KILLING and KILLED to the framework. Returns the framework the task belongs
    /// to (see [`Master::live_task_framework`]).
    pub fn kill_task_by_operator(
        &mut self,
        framework_id: Option<&FrameworkId>,
        task_id: &TaskId,
    ) -> Result<FrameworkId, OperatorError> {
        let owner = self.live_task_framework(framework_id, task_id)?;
        self.kill_task(&owner, task_id);
        Ok(owner)
    }

    /// Removes a framework at the operator's word (Mesos' operator TEARDOWN): as its own
    /// TEARDOWN, its tasks are killed and its id may not subscribe again.
    pub fn teardown_framework(&mut self, now_ms: u64, framework_id: &FrameworkId) -> Result<(), OperatorError> {
        if !self.frameworks.contains_key(framework_id) {
            return Err(OperatorError {
                kind: OperatorErrorKind::NotFound,
                field: "framework_id".to_owned(),
                reason: format!("framework {framework_id} is not known"),
            });
        }
        self.remove_framework(now_ms, framework_id);
        Ok(())
    }

    // ----- maintenance schedules -----

    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    /// Takes back a recovered schedule (before agents register).
    pub(crate) fn restore_maintenance(&mut self, maintenance: Maintenance) {
        self.maintenance = maintenance;
    }

    /// Replaces the schedule. Machines must be unique over the windows and valid (see
    /// [`machine_id`]); a machine that is down must stay scheduled (STOP_MAINTENANCE takes
    /// it out). Machines added become DRAINING, machines left out are UP again.
    pub fn update_maintenance_schedule(&mut self, now_ms: u64, windows: Vec<Window>) -> Result<(), OperatorError> {
        if windows.len() > MAX_MAINTENANCE_WINDOWS {
            return Err(invalid("schedule.windows", format!("at most {MAX_MAINTENANCE_WINDOWS} windows")));
        }
        let mut seen: BTreeSet<&MachineId> = BTreeSet::new();
        for (i, window) in windows.iter().enumerate() {
            let field = format!("schedule.windows[{i}]");
            if window.machines.is_empty() {
                return Err(invalid(&format!("{field}.machine_ids"), "must name at least one machine"));
            }
            if window.unavailability.duration_ns.is_some_and(|d| d < 0) {
                return Err(invalid(&format!("{field}.unavailability.duration"), "must not be negative"));
            }
            for (j, machine) in window.machines.iter().enumerate() {
                if !seen.insert(machine) {
                    return Err(invalid(
                        &format!("{field}.machine_ids[{j}]"),
                        format!("machine {machine} is scheduled twice"),
                    ));
                }
            }
        }
        if seen.len() > MAX_MAINTENANCE_MACHINES {
            return Err(invalid("schedule.windows", format!("at most {MAX_MAINTENANCE_MACHINES} machines")));
        }
        if let Some(machine) = self.maintenance.down.iter().find(|m| !seen.contains(m)) {
            return Err(conflict(
                "schedule",
                format!("machine {machine} is down: bring it up (STOP_MAINTENANCE) before leaving it out"),
            ));
        }
        self.maintenance.windows = windows;
        self.persist_maintenance();
        let maintenance = &self.maintenance;
        self.inverse.retain_machines(|m| maintenance.mode(m) == MachineMode::Draining);
        // Offers say when their agent's machine goes away: those made before this schedule
        // are rescinded where that changed.
        let changed: Vec<(AgentId, Option<Unavailability>)> = self
            .agents
            .iter()
            .filter_map(|(id, a)| {
                let now = self.maintenance.machine_of(&a.info.hostname).map(|(_, w)| w.unavailability);
                (a.description.unavailability != now).then(|| (id.clone(), now))
            })
            .collect();
        for (agent_id, unavailability) in changed {
            self.rescind_agent_offers(&agent_id);
            if let Some(mut agent) = self.agents.get_mut(&agent_id) {
                agent.set_unavailability(unavailability);
            }
        }
        let scheduled: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| self.maintenance.machine_of(&a.info.hostname).is_some())
            .map(|(id, _)| id.clone())
            .collect();
        self.send_inverse_offers(now_ms, &scheduled);
        Ok(())
    }

    /// The unavailability an agent advertising `hostname` gets from the schedule.
    pub(crate) fn unavailability_of(&self, hostname: &str) -> Option<Unavailability> {
        self.maintenance.machine_of(hostname).map(|(_, w)| w.unavailability)
    }

    /// Asks each framework with tasks on these agents (those on draining machines) to give
    /// them back before the machine's unavailability: one inverse offer per framework and
    /// agent, unless one is outstanding or the framework already answered for the machine.
    pub(crate) fn send_inverse_offers(&mut self, now_ms: u64, agent_ids: &[AgentId]) {
        let mut batches: BTreeMap<FrameworkId, Vec<InverseOffer>> = BTreeMap::new();
        for agent_id in agent_ids {
            let Some(agent) = self.agents.get(agent_id) else { continue };
            let Some((machine, window)) = self.maintenance.machine_of(&agent.info.hostname) else { continue };
            if self.maintenance.down.contains(machine) {
                continue;
            }
            let frameworks: BTreeSet<&FrameworkId> = agent.tasks.iter().map(|(f, _)| f).collect();
            for framework_id in frameworks {
                let active = self.frameworks.get(framework_id).is_some_and(|f| f.is_active());
                let pair = (framework_id.clone(), agent_id.clone());
                let answered = self
                    .inverse
                    .statuses
                    .get(machine)
                    .and_then(|by| by.get(framework_id))
                    .is_some_and(|(answer, _)| answer.is_some());
                if !active || answered || self.inverse.sent.contains(&pair) {
                    continue;
                }
                self.inverse.next = self.inverse.next.saturating_add(1);
                let id = OfferId::new(format!("{}-I{}", self.config.master_id, self.inverse.next));
                self.inverse.outstanding.insert(id.clone(), (framework_id.clone(), agent_id.clone(), machine.clone()));
                self.inverse.sent.insert(pair);
                let statuses = self.inverse.statuses.entry(machine.clone()).or_default();
                statuses.entry(framework_id.clone()).or_insert((None, now_ms));
                batches.entry(framework_id.clone()).or_default().push(InverseOffer {
                    id,
                    framework_id: framework_id.clone(),
                    agent_id: agent_id.clone(),
                    agent_url: agent.description.url.clone(),
                    unavailability: window.unavailability,
                });
            }
        }
        for (framework_id, offers) in batches {
            self.outbox.push(Output::ToFramework { framework_id, event: Event::InverseOffers(offers) });
        }
    }

    /// A framework accepts or declines inverse offers; the answer is its status for the
    /// machine (GET_MAINTENANCE_STATUS). Ids it does not hold are ignored, as Mesos does.
    pub(crate) fn answer_inverse_offers(
        &mut self,
        now_ms: u64,
        framework_id: &FrameworkId,
        ids: Vec<OfferId>,
        accept: bool,
    ) -> Result<(), super::CallError> {
        if ids.len() > MAX_OFFERS_PER_CALL {
            return Err(super::CallError::Invalid {
                field: "inverse_offer_ids".to_owned(),
                reason: format!("at most {MAX_OFFERS_PER_CALL} inverse offers"),
            });
        }
        let answer = if accept { InverseOfferAnswer::Accept } else { InverseOfferAnswer::Decline };
        for id in ids {
            let Some((owner, _, _)) = self.inverse.outstanding.get(&id) else { continue };
            if owner != framework_id {
                continue;
            }
            let Some((framework_id, agent_id, machine)) = self.inverse.outstanding.remove(&id) else { continue };
            self.inverse.sent.remove(&(framework_id.clone(), agent_id));
            self.inverse.statuses.entry(machine).or_default().insert(framework_id, (Some(answer), now_ms));
        }
        Ok(())
    }

    /// Each draining machine's inverse offer statuses, by framework.
    pub fn inverse_offer_statuses(&self) -> BTreeMap<MachineId, Vec<InverseOfferStatus>> {
        self.inverse
            .statuses
            .iter()
            .map(|(machine, by)| {
                let list = by
                    .iter()
                    .map(|(framework_id, (answer, at_ms))| InverseOfferStatus {
                        framework_id: framework_id.clone(),
                        answer: *answer,
                        timestamp_ms: *at_ms,
                    })
                    .collect();
                (machine.clone(), list)
            })
            .collect()
    }

    /// Takes scheduled machines down: their agents are removed for good (tasks
    /// TASK_GONE_BY_OPERATOR) and refused until the machines are up again. Every machine
    /// must be scheduled and DRAINING.
    pub fn start_maintenance(&mut self, now_ms: u64, machines: Vec<MachineId>) -> Result<(), OperatorError> {
        check_machine_list(&machines)?;
        for (i, machine) in machines.iter().enumerate() {
            match self.maintenance.mode(machine) {
                MachineMode::Draining => {}
                MachineMode::Up => {
                    return Err(conflict(
                        &format!("machines[{i}]"),
                        format!("machine {machine} is not in the maintenance schedule"),
                    ));
                }
                MachineMode::Down => {
                    return Err(conflict(&format!("machines[{i}]"), format!("machine {machine} is down already")));
                }
            }
        }
        let on_machines: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| machines.iter().any(|m| m.holds(&a.info.hostname)))
            .map(|(id, _)| id.clone())
            .collect();
        self.maintenance.down.extend(machines);
        self.persist_maintenance();
        let maintenance = &self.maintenance;
        self.inverse.retain_machines(|m| maintenance.mode(m) == MachineMode::Draining);
        for agent_id in on_machines {
            self.remove_agent_for_good(now_ms, &agent_id, "the agent's machine went down for maintenance");
        }
        Ok(())
    }

    /// Brings machines that are down up again: they leave the schedule (a window left
    /// empty goes) and their agents may register again.
    pub fn stop_maintenance(&mut self, machines: Vec<MachineId>) -> Result<(), OperatorError> {
        check_machine_list(&machines)?;
        for (i, machine) in machines.iter().enumerate() {
            if !self.maintenance.down.contains(machine) {
                return Err(conflict(&format!("machines[{i}]"), format!("machine {machine} is not down")));
            }
        }
        for machine in &machines {
            self.maintenance.down.remove(machine);
        }
        for window in &mut self.maintenance.windows {
            window.machines.retain(|m| !machines.contains(m));
        }
        self.maintenance.windows.retain(|w| !w.machines.is_empty());
        self.persist_maintenance();
        let maintenance = &self.maintenance;
        self.inverse.retain_machines(|m| maintenance.mode(m) == MachineMode::Draining);
        Ok(())
    }

    /// Called after every change to the schedule or the machines that are down.
    fn persist_maintenance(&mut self) {
        let maintenance = self.maintenance.clone();
        self.outbox.push(Output::Persist(RegistryOp::PutMaintenance { maintenance }));
    }
}

fn check_machine_list(machines: &[MachineId]) -> Result<(), OperatorError> {
    if machines.is_empty() {
        return Err(invalid("machines", "must name at least one machine"));
    }
    if machines.len() > MAX_MAINTENANCE_MACHINES {
        return Err(invalid("machines", format!("at most {MAX_MAINTENANCE_MACHINES} machines")));
    }
    let mut seen = BTreeSet::new();
    for (i, machine) in machines.iter().enumerate() {
        if !seen.insert(machine) {
            return Err(invalid(&format!("machines[{i}]"), format!("machine {machine} is named twice")));
        }
    }
    Ok(())
}
