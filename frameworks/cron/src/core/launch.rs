//! Offers → launches: which pending runs fit on an agent's offers (exact integer
//! resources of the framework's role or `*`, the job's constraints on the hostname and
//! attributes), the task each one runs as, and the run recorded `Launched` before the
//! launch leaves.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use agora_proto::model::{AgentDescription, AgentId, Offer, OfferId, Resources, Role, TaskInfo};
use agora_sdk::{TaskBuilder, TaskRequirements};
use jiff::Timestamp;
use regex::Regex;

use super::{
    Cron, HOLD_LEAD, HOLD_MAX, MAX_HELD_OFFERS, MAX_TASKS_PER_ACCEPT, Output, REFUSE_WHEN_IDLE_S, REFUSE_WHILE_DUE_S,
    StoreOp, plus,
};
use crate::model::{ConstraintOp, JobName, JobSpec, RunKey, RunRecord, RunState, RunTrigger};

/// Compiled LIKE/UNLIKE patterns, each compiled once (anchored at both ends, as Chronos
/// matches them) and kept while the set stays small.
#[derive(Debug, Default)]
pub(super) struct Patterns(BTreeMap<String, Option<Regex>>);

/// Most patterns kept; the set starts over beyond it.
const MAX_PATTERNS: usize = 1_024;

impl Patterns {
    fn matches(&mut self, pattern: &str, value: &str) -> bool {
        if self.0.len() >= MAX_PATTERNS && !self.0.contains_key(pattern) {
            self.0.clear();
        }
        let compiled = self.0.entry(pattern.to_owned()).or_insert_with(|| Regex::new(&format!("^(?:{pattern})$")).ok());
        compiled.as_ref().is_some_and(|re| re.is_match(value))
    }
}

/// One agent's offers for one role: their ids, their resources summed, the agent.
type OfferGroup = (Vec<OfferId>, Resources, Arc<AgentDescription>);

/// The agent side of one group of offers.
struct Agent {
    id: AgentId,
    description: Arc<AgentDescription>,
    role: Role,
}

impl Agent {
    /// The value of a constraint's attribute here: `hostname`, or an agent attribute.
    fn field(&self, attribute: &str) -> Option<&str> {
        if attribute == "hostname" {
            return Some(&self.description.hostname);
        }
        self.description.attributes.iter().find(|a| a.name == attribute).map(|a| a.value.as_str())
    }
}

impl Cron {
    /// Uses offers for pending runs; holds those left while a job is due soon (up to
    /// [`HOLD_MAX`]), declines the rest.
    pub(super) fn offers(&mut self, now: Timestamp, offers: Vec<Offer>) {
        // One launch per agent and role: an agent's offers are used together.
        let mut groups: BTreeMap<(AgentId, Role), OfferGroup> = BTreeMap::new();
        let mut by_id = BTreeMap::new();
        for offer in offers {
            let entry = groups
                .entry((offer.agent_id.clone(), offer.allocation_role.clone()))
                .or_insert_with(|| (Vec::new(), Resources::new(), Arc::clone(&offer.agent)));
            entry.0.push(offer.id.clone());
            entry.1.add(&offer.resources);
            by_id.insert(offer.id.clone(), offer);
        }
        let refuse_seconds = if self.offers_needed(now) { REFUSE_WHILE_DUE_S } else { REFUSE_WHEN_IDLE_S };
        let hold = self.due_soon(now);
        let mut declined = Vec::new();
        for ((id, role), (offer_ids, mut available, description)) in groups {
            let agent = Agent { id, description, role };
            let tasks = self.place(now, &agent, &mut available);
            if !tasks.is_empty() {
                for offer_id in &offer_ids {
                    self.held.remove(offer_id);
                }
                self.outbox.push(Output::Launch { offer_ids, tasks, refuse_seconds });
                continue;
            }
            for offer_id in offer_ids {
                let since = self.held.get(&offer_id).map_or(now, |(_, since)| *since);
                let fresh = plus(since, HOLD_MAX) > now;
                match by_id.remove(&offer_id) {
                    Some(offer)
                        if hold
                            && fresh
                            && (self.held.len() < MAX_HELD_OFFERS || self.held.contains_key(&offer_id)) =>
                    {
                        self.held.insert(offer_id, (offer, since));
                    }
                    _ => {
                        self.held.remove(&offer_id);
                        declined.push(offer_id);
                    }
                }
            }
        }
        if !declined.is_empty() {
            self.outbox.push(Output::Decline { offer_ids: declined, refuse_seconds });
        }
    }

    /// Whether a job is due within [`HOLD_LEAD`].
    fn due_soon(&self, now: Timestamp) -> bool {
        self.wakes.first().is_some_and(|(at, _)| *at <= plus(now, HOLD_LEAD))
    }

    /// Puts the held offers to use for runs now pending, and declines those held too
    /// long or no longer worth holding.
    pub(super) fn use_held_offers(&mut self, now: Timestamp) {
        if self.held.is_empty() {
            return;
        }
        let pending = !self.pending.is_empty();
        let expired = self.held.values().any(|(_, since)| plus(*since, HOLD_MAX) <= now);
        if pending || expired || !self.due_soon(now) {
            let offers: Vec<Offer> = self.held.values().map(|(offer, _)| offer.clone()).collect();
            self.offers(now, offers);
        }
    }

    /// Launches as many pending runs as fit on one agent, the earliest scheduled first.
    fn place(&mut self, now: Timestamp, agent: &Agent, available: &mut Resources) -> Vec<TaskInfo> {
        let mut tasks = Vec::new();
        // A cursor over the pending index, which `place_one` changes as runs launch.
        let mut after: Option<(Timestamp, JobName)> = None;
        while tasks.len() < MAX_TASKS_PER_ACCEPT {
            let next = match &after {
                None => self.pending.first().cloned(),
                Some(last) => self.pending.range((Bound::Excluded(last.clone()), Bound::Unbounded)).next().cloned(),
            };
            let Some((scheduled, job)) = next else { break };
            let key = RunKey { job: job.clone(), scheduled };
            if let Some(task) = self.place_one(now, &key, agent, available) {
                tasks.push(task);
            }
            after = Some((scheduled, job));
        }
        tasks
    }

    /// One pending run on this agent, if it fits: resources taken out of `available`,
    /// the run recorded `Launched`, its task returned.
    fn place_one(
        &mut self,
        now: Timestamp,
        key: &RunKey,
        agent: &Agent,
        available: &mut Resources,
    ) -> Option<TaskInfo> {
        let role = Role::parse(&self.config.role).unwrap_or_else(|_| Role::unreserved());
        if agent.role != role {
            return None;
        }
        // What fits is checked before anything is copied: most runs an offer meets in a
        // burst do not fit once it is used up.
        let job = self.jobs.get(&key.job)?;
        let requirements = TaskRequirements {
            cpus_milli: job.spec.cpus_milli,
            mem_mib: job.spec.mem_mib,
            disk_mib: job.spec.disk_mib,
            ports: 0,
            role: (!role.is_unreserved()).then_some(role),
        };
        let piece = requirements.take_one(available)?;
        let spec = job.spec.clone();
        if !self.constraints_allow(&spec, agent) {
            available.add(&piece);
            return None;
        }
        let run = self.active.get(key)?;
        let task = match build_task(&spec, run, agent, piece.clone()) {
            Ok(task) => task,
            Err(error) => {
                // The master would refuse it too: give the resources back; the run waits
                // for its deadline with the reason in its message.
                available.add(&piece);
                if let Some(run) = self.active.get_mut(key) {
                    run.message = format!("cannot build its task: {error}");
                }
                return None;
            }
        };
        let run = self.active.get_mut(key)?;
        run.state = RunState::Launched;
        self.pending.remove(&(key.scheduled, key.job.clone()));
        run.agent = Some(agent.id.clone());
        run.attempt_started = Some(now);
        run.started.get_or_insert(now);
        run.message.clear();
        let record = run.clone();
        self.by_task.insert(record.task_id.clone(), key.clone());
        self.count_launch(now, &record);
        self.persist(StoreOp::PutRun(Box::new(record)));
        Some(task)
    }

    /// Whether every constraint of the job holds on this agent.
    fn constraints_allow(&mut self, spec: &JobSpec, agent: &Agent) -> bool {
        spec.constraints.iter().all(|c| {
            let value = agent.field(&c.attribute);
            match c.op {
                ConstraintOp::Equals => value == Some(c.value.as_str()),
                ConstraintOp::Like => value.is_some_and(|v| self.regexes.matches(&c.value, v)),
                ConstraintOp::Unlike => value.is_none_or(|v| !self.regexes.matches(&c.value, v)),
            }
        })
    }
}

/// The task a run's current attempt runs as: the job's command and arguments (a manual
/// run's after them), its environment, and what Chronos sets for a task, plus the run's
/// identity (`AGORA_CRON_*`) for the task to read.
fn build_task(
    spec: &JobSpec,
    run: &RunRecord,
    agent: &Agent,
    resources: Resources,
) -> Result<TaskInfo, agora_sdk::Error> {
    let mut arguments: Vec<&str> = spec.arguments.iter().map(String::as_str).collect();
    if let RunTrigger::Manual { arguments: extra } = &run.trigger {
        arguments.extend(extra.iter().map(String::as_str));
    }
    let mut builder = if spec.shell {
        let mut line = spec.command.clone();
        for argument in arguments {
            line.push(' ');
            line.push_str(&shell_quote(argument));
        }
        TaskBuilder::shell(run.task_id.clone(), line)
    } else {
        TaskBuilder::argv(run.task_id.clone(), std::iter::once(spec.command.as_str()).chain(arguments))
    };
    builder = builder.name(format!("cron:{}", spec.name));
    // Chronos' `runAsUser`; its `owner` is an e-mail address, not a user.
    if let Some(user) = spec.run_as_user.as_ref().filter(|u| !u.is_empty()) {
        builder = builder.user(user.clone());
    }
    for uri in &spec.fetch {
        builder = builder.fetch(uri.clone());
    }
    for (key, value) in &spec.environment {
        builder = builder.env(key.clone(), value.clone());
    }
    let scheduled = run.key.scheduled;
    let ours = [
        ("CHRONOS_JOB_NAME", spec.name.to_string()),
        ("CHRONOS_JOB_OWNER", spec.owner.clone()),
        ("CHRONOS_RESOURCE_CPU", format!("{}", spec.cpus_milli as f64 / 1000.0)),
        ("CHRONOS_RESOURCE_MEM", spec.mem_mib.to_string()),
        ("CHRONOS_RESOURCE_DISK", spec.disk_mib.to_string()),
        ("mesos_task_id", run.task_id.to_string()),
        ("HOST", agent.description.hostname.clone()),
        ("AGORA_CRON_JOB", spec.name.to_string()),
        ("AGORA_CRON_SCHEDULED", scheduled.to_string()),
        ("AGORA_CRON_SCHEDULED_MS", scheduled.as_millisecond().to_string()),
        ("AGORA_CRON_ATTEMPT", run.attempt.to_string()),
    ];
    for (key, value) in ours {
        builder = builder.env(key, value);
    }
    builder.build(&agent.id, resources)
}

/// `value` as one shell word: bare when it holds only safe characters, else in single
/// quotes with each `'` written as `'\''`.
fn shell_quote(value: &str) -> String {
    let safe = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | ',' | '@'));
    if safe { value.to_owned() } else { format!("'{}'", value.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn arguments_are_quoted_for_the_shell_only_when_they_need_it() {
        assert_eq!(shell_quote("--date=2026-01-01"), "--date=2026-01-01");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
