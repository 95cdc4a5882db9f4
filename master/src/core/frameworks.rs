//! Framework handlers: SUBSCRIBE, disconnection, and every scheduler call (ACCEPT,
//! DECLINE, REVIVE, SUPPRESS, KILL, ACKNOWLEDGE, RECONCILE, MESSAGE, TEARDOWN).

use std::collections::{BTreeSet, HashSet};

use agora_proto::model::{
    AgentId, FrameworkId, FrameworkInfo, OfferId, Resources, Role, StreamId, TaskId, TaskInfo, TaskState, TaskStatus,
    TaskStatusReason, UpdateId,
};

use super::master::{Master, OfferEnd, sequence_of};
use super::registry::{AgentRecord, FrameworkRecord, TaskRecord};
use super::{Call, CallError, Config, Event, Operation, Output, ToAgent};

/// Bound on the roles of one framework.
pub const MAX_ROLES_PER_FRAMEWORK: usize = 64;
/// Bound on the offers one ACCEPT or DECLINE may name.
pub const MAX_OFFERS_PER_CALL: usize = 10_000;
/// Bound on the tasks one explicit RECONCILE may name.
pub const MAX_RECONCILE_TASKS: usize = 100_000;

fn invalid(field: &str, reason: impl Into<String>) -> CallError {
    CallError::Invalid { field: field.to_owned(), reason: reason.into() }
}

/// At most `MAX_ROLES_PER_FRAMEWORK` roles, each once, `*` when none is named.
fn normalize_roles(info: &mut FrameworkInfo) -> Result<(), CallError> {
    if info.roles.len() > MAX_ROLES_PER_FRAMEWORK {
        return Err(invalid("framework_info.roles", format!("at most {MAX_ROLES_PER_FRAMEWORK} roles")));
    }
    let mut seen = BTreeSet::new();
    info.roles.retain(|role| seen.insert(role.clone()));
    if info.roles.is_empty() {
        info.roles.push(Role::unreserved());
    }
    Ok(())
}

/// The operator's bounds on what one framework's info may hold (`Config`).
fn check_bounds(config: &Config, info: &FrameworkInfo) -> Result<(), CallError> {
    let max = config.max_framework_field_bytes;
    for (field, value) in
        [("name", &info.name), ("user", &info.user), ("hostname", &info.hostname), ("principal", &info.principal)]
    {
        if value.len() > max {
            return Err(invalid(
                &format!("framework_info.{field}"),
                format!("is {} bytes, more than the {max} this master allows", value.len()),
            ));
        }
    }
    if info.failover_timeout_ms > config.max_failover_timeout_ms {
        return Err(invalid(
            "framework_info.failover_timeout",
            format!(
                "{} s is longer than the {} s this master allows",
                info.failover_timeout_ms / 1000,
                config.max_failover_timeout_ms / 1000
            ),
        ));
    }
    Ok(())
}

impl Master {
    /// Subscribes a new framework or re-subscribes a known one (a failover). Each
    /// subscription gets a new stream id; offers made to the previous stream are void.
    pub fn subscribe(&mut self, now_ms: u64, mut info: FrameworkInfo) -> Result<(FrameworkId, StreamId), CallError> {
        normalize_roles(&mut info)?;
        check_bounds(&self.config, &info)?;
        let known = info.id.as_ref().is_some_and(|id| self.frameworks.contains_key(id));
        if !known && self.frameworks.len() >= self.config.max_frameworks {
            return Err(CallError::Exhausted(format!(
                "the master holds {} frameworks, the most it allows; a framework is forgotten once it \
                 is torn down or its failover timeout passes",
                self.frameworks.len()
            )));
        }
        let framework_id = match info.id.clone().filter(|id| !id.as_str().is_empty()) {
            Some(id) if self.is_removed_framework(&id) => {
                return Err(invalid(
                    "framework_info.id",
                    format!("framework {id} was removed; subscribe without an id"),
                ));
            }
            Some(id) => id,
            None => {
                let id = FrameworkId::new(format!("{}-{:04}", self.config.master_id, self.next_framework));
                self.next_framework = self.next_framework.saturating_add(1);
                id
            }
        };
        info.id = Some(framework_id.clone());
        // Failing over into a framework proves it is that framework by its principal
        // (authenticated at the edge when authentication is on).
        if let Some(existing) = self.frameworks.get(&framework_id)
            && existing.info.principal != info.principal
        {
            return Err(CallError::Forbidden(format!(
                "framework {framework_id} belongs to another principal; subscribe as that principal"
            )));
        }
        if self.frameworks.contains_key(&framework_id) {
            self.withdraw_framework_offers(&framework_id);
            self.clear_filters(&framework_id);
        } else {
            // An id this master never gave out: a framework of a previous master.
            let prefix = format!("{}-", self.config.master_id);
            if let Some(n) = sequence_of(framework_id.as_str(), &prefix) {
                self.next_framework = self.next_framework.max(n.saturating_add(1));
            }
            self.frameworks.insert(framework_id.clone(), FrameworkRecord::new(info.clone(), now_ms));
        }
        let stream_id = self.new_stream_id();
        let Some(framework) = self.frameworks.get_mut(&framework_id) else {
            return Err(CallError::UnknownFramework(framework_id));
        };
        framework.info = info;
        framework.stream = Some(stream_id.clone());
        framework.unregistered_at_ms = None;
        framework.suppressed.clear();
        self.changes.framework(&framework_id);
        self.persist_framework(&framework_id);
        self.outbox.push(Output::ToFramework {
            framework_id: framework_id.clone(),
            event: Event::Subscribed {
                framework_id: framework_id.clone(),
                stream_id: stream_id.clone(),
                heartbeat_interval_ms: self.config.framework_heartbeat_interval_ms,
            },
        });
        self.frameworks_changed();
        Ok((framework_id, stream_id))
    }

    /// The framework's stream `stream_id` closed. Its offers go back and its failover
    /// timeout starts; its tasks keep running.
    pub fn framework_disconnected(&mut self, now_ms: u64, framework_id: &FrameworkId, stream_id: &StreamId) {
        let Some(framework) = self.frameworks.get(framework_id) else { return };
        if framework.stream.as_ref() != Some(stream_id) {
            return;
        }
        self.withdraw_framework_offers(framework_id);
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.stream = None;
            framework.unregistered_at_ms = Some(now_ms);
        }
        self.changes.framework(framework_id);
    }

    /// Applies one scheduler call from the framework's current stream.
    pub fn call(
        &mut self,
        now_ms: u64,
        framework_id: &FrameworkId,
        stream_id: &StreamId,
        call: Call,
    ) -> Result<(), CallError> {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return Err(CallError::UnknownFramework(framework_id.clone()));
        };
        if framework.stream.as_ref() != Some(stream_id) {
            return Err(CallError::StaleStream(stream_id.clone()));
        }
        match call {
            Call::Accept { offer_ids, operations, refuse_ms } => {
                self.accept(now_ms, framework_id, offer_ids, operations, refuse_ms)
            }
            Call::Decline { offer_ids, refuse_ms } => self.decline(now_ms, framework_id, offer_ids, refuse_ms),
            Call::Revive { roles } => self.revive(framework_id, roles),
            Call::Suppress { roles } => self.suppress(framework_id, roles),
            Call::Kill { task_id, agent_id } => {
                self.kill(now_ms, framework_id, task_id, agent_id);
                Ok(())
            }
            Call::Acknowledge { agent_id, task_id, uuid } => {
                self.acknowledge(framework_id, agent_id, task_id, uuid);
                Ok(())
            }
            Call::Reconcile { tasks } => self.reconcile(now_ms, framework_id, tasks),
            Call::Message { .. } => {
                Err(invalid("message", "framework messages need an executor; command tasks have none"))
            }
            Call::Teardown => {
                self.remove_framework(now_ms, framework_id);
                Ok(())
            }
            Call::UpdateFramework { info } => self.update_framework(framework_id, info),
            Call::AnswerInverseOffers { ids, accept } => self.answer_inverse_offers(now_ms, framework_id, ids, accept),
        }
    }

    /// Replaces a subscribed framework's description, as a re-subscription would but on
    /// the same stream: its offers are rescinded and its filters lifted, since what it
    /// may be offered (its roles) can have changed.
    fn update_framework(&mut self, framework_id: &FrameworkId, mut info: FrameworkInfo) -> Result<(), CallError> {
        normalize_roles(&mut info)?;
        check_bounds(&self.config, &info)?;
        let Some(framework) = self.frameworks.get(framework_id) else {
            return Err(CallError::UnknownFramework(framework_id.clone()));
        };
        if info.user != framework.info.user {
            return Err(invalid("framework_info.user", "cannot change; subscribe a new framework"));
        }
        if info.principal != framework.info.principal {
            return Err(invalid("framework_info.principal", "cannot change; subscribe a new framework"));
        }
        info.id = Some(framework_id.clone());
        self.rescind_framework_offers(framework_id);
        self.clear_filters(framework_id);
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.suppressed.retain(|role| info.roles.contains(role));
            framework.info = info;
        }
        self.changes.framework(framework_id);
        self.persist_framework(framework_id);
        self.frameworks_changed();
        Ok(())
    }

    // ----- ACCEPT -----

    fn accept(
        &mut self,
        now_ms: u64,
        framework_id: &FrameworkId,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        refuse_ms: u64,
    ) -> Result<(), CallError> {
        if offer_ids.is_empty() {
            return Err(invalid("accept.offer_ids", "at least one offer is required"));
        }
        if offer_ids.len() > MAX_OFFERS_PER_CALL {
            return Err(invalid("accept.offer_ids", format!("at most {MAX_OFFERS_PER_CALL} offers")));
        }
        let task_count: usize = operations
            .iter()
            .map(|op| match op {
                Operation::Launch { tasks } => tasks.len(),
                Operation::Reserve { .. } | Operation::Unreserve { .. } => 0,
            })
            .sum();
        if task_count > self.config.max_tasks_per_accept {
            return Err(invalid(
                "accept.operations",
                format!("{task_count} tasks, at most {} per ACCEPT", self.config.max_tasks_per_accept),
            ));
        }
        // Reservations are checked against the offers before anything is used up: a bad
        // one refuses the whole call and the offers stay outstanding.
        let reservations = self.check_reservations(framework_id, &offer_ids, &operations)?;
        let tasks: Vec<TaskInfo> = operations
            .into_iter()
            .flat_map(|op| match op {
                Operation::Launch { tasks } => tasks,
                Operation::Reserve { .. } | Operation::Unreserve { .. } => Vec::new(),
            })
            .collect();

        let (agent_id, problem) = self.check_offers(framework_id, &offer_ids);
        // The framework's own named offers are used up whether or not the ACCEPT is valid.
        let mut offered = Resources::new();
        // Tasks are accounted to the role their offers were made for.
        let mut role: Option<Role> = None;
        for offer_id in offer_ids.iter().collect::<BTreeSet<_>>() {
            if let Some(record) = self.offers.get(offer_id).filter(|o| &o.offer.framework_id == framework_id) {
                role.get_or_insert_with(|| record.role.clone());
                if let Some(offer) = self.end_offer(offer_id, OfferEnd::Accepted) {
                    offered.add(&offer.resources);
                }
            }
        }
        let role = role.unwrap_or_else(Role::unreserved);
        let agent_id = match (agent_id, problem) {
            (Some(agent_id), None) => agent_id,
            (_, problem) => {
                let message = problem.unwrap_or_else(|| "no valid offer".to_owned());
                for task in tasks {
                    self.counters.tasks_dropped = self.counters.tasks_dropped.saturating_add(1);
                    let status = TaskStatus::from_master(
                        task.task_id,
                        Some(task.agent_id),
                        TaskState::TaskDropped,
                        TaskStatusReason::InvalidOffers,
                        message.clone(),
                        now_ms,
                    );
                    self.send_update(framework_id, status);
                }
                return Ok(());
            }
        };

        let mut left = offered;
        for (reserve, resources) in reservations {
            self.apply_reservation(&agent_id, &mut left, &resources, reserve);
        }
        // Only asked whether it holds an id, never walked: a hash set is the cheaper check.
        let mut launched: HashSet<TaskId> = HashSet::new();
        for task in tasks {
            match self.check_task(framework_id, &agent_id, &task, &left, &launched) {
                Ok(()) => {
                    left.subtract(&task.resources);
                    launched.insert(task.task_id.clone());
                    self.launch(now_ms, framework_id, &role, task);
                }
                Err((reason, message)) => {
                    self.counters.tasks_errored = self.counters.tasks_errored.saturating_add(1);
                    let status = TaskStatus::from_master(
                        task.task_id,
                        Some(agent_id.clone()),
                        TaskState::TaskError,
                        reason,
                        message,
                        now_ms,
                    );
                    self.send_update(framework_id, status);
                }
            }
        }
        if !left.is_empty() {
            self.set_filter(framework_id, &agent_id, now_ms, refuse_ms);
        }
        Ok(())
    }

    /// The agent all named offers are on, or why the offers are not acceptable.
    fn check_offers(&self, framework_id: &FrameworkId, offer_ids: &[OfferId]) -> (Option<AgentId>, Option<String>) {
        let mut agent_id: Option<AgentId> = None;
        let mut seen = BTreeSet::new();
        for offer_id in offer_ids {
            if !seen.insert(offer_id) {
                return (agent_id, Some(format!("offer {offer_id} is named twice")));
            }
            let Some(record) = self.offers.get(offer_id) else {
                return (agent_id, Some(format!("offer {offer_id} is not outstanding (unknown, used or rescinded)")));
            };
            if &record.offer.framework_id != framework_id {
                return (agent_id, Some(format!("offer {offer_id} belongs to another framework")));
            }
            match &agent_id {
                None => agent_id = Some(record.offer.agent_id.clone()),
                Some(first) if first != &record.offer.agent_id => {
                    let problem = format!("offers span agents {first} and {}", record.offer.agent_id);
                    return (agent_id, Some(problem));
                }
                Some(_) => {}
            }
        }
        (agent_id, None)
    }

    fn check_task(
        &self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        task: &TaskInfo,
        left: &Resources,
        launched: &HashSet<TaskId>,
    ) -> Result<(), (TaskStatusReason, String)> {
        let live = self.frameworks.get(framework_id).is_some_and(|f| f.tasks.contains_key(&task.task_id));
        if live || launched.contains(&task.task_id) {
            return Err((TaskStatusReason::DuplicateTaskId, format!("task id {} is already in use", task.task_id)));
        }
        if task.task_id.as_str().is_empty() {
            return Err((TaskStatusReason::TaskInvalid, "task_id: must not be empty".to_owned()));
        }
        if &task.agent_id != agent_id {
            return Err((
                TaskStatusReason::TaskInvalid,
                format!("agent_id: the task names agent {}, the offers are on {agent_id}", task.agent_id),
            ));
        }
        if task.command.shell.is_none() && task.command.argv.is_empty() {
            return Err((TaskStatusReason::TaskInvalid, "command: neither a shell command nor argv".to_owned()));
        }
        if task.resources.is_empty() {
            return Err((TaskStatusReason::TaskInvalid, "resources: a task needs some resources".to_owned()));
        }
        if !left.contains(&task.resources) {
            return Err((
                TaskStatusReason::ResourcesExceededOffer,
                format!("resources {} exceed what is left of the offers ({left})", task.resources),
            ));
        }
        if let Some(acls) = &self.config.acls
            && let Some(framework) = self.frameworks.get(framework_id)
        {
            let info = &framework.info;
            let user = task.command.user.as_deref().unwrap_or(&info.user);
            let principal = Some(info.principal.as_str()).filter(|p| !p.is_empty());
            acls.check(agora_proto::acl::Action::RunTasks, principal, user)
                .map_err(|denied| (TaskStatusReason::TaskUnauthorized, denied.to_string()))?;
        }
        Ok(())
    }

    /// Starts a validated task: STAGING, its resources used, and RUNTASK to the agent.
    /// No TASK_STAGING is sent; the framework hears from the agent first, as in Mesos.
    fn launch(&mut self, now_ms: u64, framework_id: &FrameworkId, role: &Role, mut task: TaskInfo) {
        // The registry's copy of the id, shared with the task's record, instead of the one
        // decoded from the call: one allocation fewer per task held.
        let Some(mut agent) = self.agents.get_mut(&task.agent_id) else { return };
        let agent_id = agent.id.clone();
        task.agent_id = agent_id.clone();
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        let status = TaskStatus::from_master(
            task.task_id.clone(),
            Some(agent_id.clone()),
            TaskState::TaskStaging,
            TaskStatusReason::Unspecified,
            "launched",
            now_ms,
        );
        agent.add_used(&task.resources);
        agent.tasks.insert((framework_id.clone(), task.task_id.clone()));
        let scalars = task.resources.scalars();
        framework.used_scalars = framework.used_scalars.saturating_add(&scalars);
        framework.charge(role, &scalars);
        let mut record = TaskRecord::new(task.clone(), &status);
        record.role = role.clone();
        framework.tasks.insert(task.task_id.clone(), Box::new(record));
        self.changes.task(framework_id, &task.task_id);
        let message = ToAgent::RunTask { framework: framework.info.clone(), task };
        self.outbox.push(Output::ToAgent { agent_id, message });
        self.counters.tasks_launched = self.counters.tasks_launched.saturating_add(1);
    }

    fn send_update(&mut self, framework_id: &FrameworkId, status: TaskStatus) {
        if self.frameworks.get(framework_id).is_some_and(FrameworkRecord::is_active) {
            self.outbox.push(Output::ToFramework { framework_id: framework_id.clone(), event: Event::Update(status) });
        }
    }

    // ----- DECLINE, REVIVE, SUPPRESS -----

    fn decline(
        &mut self,
        now_ms: u64,
        framework_id: &FrameworkId,
        offer_ids: Vec<OfferId>,
        refuse_ms: u64,
    ) -> Result<(), CallError> {
        if offer_ids.len() > MAX_OFFERS_PER_CALL {
            return Err(invalid("decline.offer_ids", format!("at most {MAX_OFFERS_PER_CALL} offers")));
        }
        // Offers that are unknown or not this framework's are ignored, as in Mesos: they
        // were most likely rescinded while the DECLINE was on its way.
        for offer_id in offer_ids {
            if self.offers.get(&offer_id).is_none_or(|o| &o.offer.framework_id != framework_id) {
                continue;
            }
            if let Some(offer) = self.end_offer(&offer_id, OfferEnd::Declined) {
                self.set_filter(framework_id, &offer.agent_id, now_ms, refuse_ms);
            }
        }
        Ok(())
    }

    /// The roles a REVIVE or SUPPRESS applies to: all of the framework's when empty.
    fn call_roles(&self, framework_id: &FrameworkId, field: &str, roles: Vec<Role>) -> Result<Vec<Role>, CallError> {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return Err(CallError::UnknownFramework(framework_id.clone()));
        };
        if roles.is_empty() {
            return Ok(framework.info.roles.clone());
        }
        if let Some(role) = roles.iter().find(|r| !framework.info.roles.contains(r)) {
            return Err(invalid(field, format!("the framework is not subscribed to role {role}")));
        }
        Ok(roles)
    }

    fn revive(&mut self, framework_id: &FrameworkId, roles: Vec<Role>) -> Result<(), CallError> {
        let roles = self.call_roles(framework_id, "revive.roles", roles)?;
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return Err(CallError::UnknownFramework(framework_id.clone()));
        };
        for role in &roles {
            framework.suppressed.remove(role);
        }
        // Filters are per agent, not per role: reviving any role clears them all.
        self.clear_filters(framework_id);
        self.frameworks_changed();
        Ok(())
    }

    fn suppress(&mut self, framework_id: &FrameworkId, roles: Vec<Role>) -> Result<(), CallError> {
        let roles = self.call_roles(framework_id, "suppress.roles", roles)?;
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.suppressed.extend(roles);
        }
        Ok(())
    }

    // ----- KILL, ACKNOWLEDGE, RECONCILE -----

    /// A live task is killed on its agent (KILLING and KILLED come from the agent). An
    /// unknown task gets TASK_LOST with reason TASK_UNKNOWN, so the framework stops
    /// waiting for it, which is what Mesos does for frameworks that are not
    /// partition-aware.
    fn kill(&mut self, now_ms: u64, framework_id: &FrameworkId, task_id: TaskId, agent_id: Option<AgentId>) {
        let known = self.frameworks.get(framework_id).is_some_and(|f| f.tasks.contains_key(&task_id));
        if known {
            self.kill_task(framework_id, &task_id);
            return;
        }
        let status = TaskStatus::from_master(
            task_id,
            agent_id,
            TaskState::TaskLost,
            TaskStatusReason::TaskUnknown,
            "the master does not know this task",
            now_ms,
        );
        self.send_update(framework_id, status);
    }

    fn acknowledge(&mut self, framework_id: &FrameworkId, agent_id: AgentId, task_id: TaskId, uuid: UpdateId) {
        if self.agents.get(&agent_id).is_some_and(AgentRecord::is_active) {
            let message = ToAgent::Acknowledge { framework_id: framework_id.clone(), task_id, uuid };
            self.outbox.push(Output::ToAgent { agent_id, message });
        }
    }

    /// Explicit reconciliation answers each named task; implicit (no tasks named)
    /// answers every live task of the framework. Unknown tasks follow Mesos: TASK_GONE
    /// when the named agent is registered and connected (it would have reported the
    /// task), TASK_UNREACHABLE when it is unreachable, TASK_UNKNOWN when the master never
    /// heard of the agent, and no answer while the agent is known but not connected (a
    /// master that failed over knows its agents from the registry but their tasks only
    /// once they re-register: answering TASK_GONE then would make frameworks give up
    /// tasks that are running). The framework asks again later, as it must anyway.
    fn reconcile(
        &mut self,
        now_ms: u64,
        framework_id: &FrameworkId,
        tasks: Vec<(TaskId, Option<AgentId>)>,
    ) -> Result<(), CallError> {
        if tasks.len() > MAX_RECONCILE_TASKS {
            return Err(invalid("reconcile.tasks", format!("at most {MAX_RECONCILE_TASKS} tasks")));
        }
        let Some(framework) = self.frameworks.get(framework_id) else {
            return Err(CallError::UnknownFramework(framework_id.clone()));
        };
        let mut statuses = Vec::new();
        if tasks.is_empty() {
            statuses.extend(framework.tasks.values().map(|task| reconciled(task, now_ms)));
        }
        for (task_id, agent_id) in tasks {
            if let Some(task) = framework.tasks.get(&task_id) {
                statuses.push(reconciled(task, now_ms));
                continue;
            }
            if let Some(done) = framework.completed_tasks.iter().rev().find(|t| t.info.task_id == task_id) {
                statuses.push(TaskStatus::from_master(
                    task_id,
                    Some(done.info.agent_id.clone()),
                    done.state,
                    TaskStatusReason::Reconciliation,
                    "the task ended",
                    now_ms,
                ));
                continue;
            }
            let state = match agent_id.as_ref().and_then(|id| self.agents.get(id)) {
                Some(agent) if agent.is_active() => TaskState::TaskGone,
                Some(agent) if agent.reachable => continue,
                Some(_) => TaskState::TaskUnreachable,
                None => TaskState::TaskUnknown,
            };
            statuses.push(TaskStatus::from_master(
                task_id,
                agent_id,
                state,
                TaskStatusReason::Reconciliation,
                "the master does not know this task",
                now_ms,
            ));
        }
        for status in statuses {
            self.send_update(framework_id, status);
        }
        Ok(())
    }
}

/// A task's latest status, restated for reconciliation.
fn reconciled(task: &TaskRecord, now_ms: u64) -> TaskStatus {
    let message = task.latest().map(|s| String::from(&*s.message)).unwrap_or_default();
    let mut status = TaskStatus::from_master(
        task.info.task_id.clone(),
        Some(task.info.agent_id.clone()),
        task.state,
        TaskStatusReason::Reconciliation,
        message,
        now_ms,
    );
    if let Some(latest) = task.latest() {
        status.exit_code = latest.exit_code;
        status.signal = latest.signal;
        status.healthy = latest.healthy;
        status.ready = latest.ready;
    }
    status
}
