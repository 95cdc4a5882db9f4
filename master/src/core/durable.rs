//! What the master keeps across restarts, and how a new master takes it back.
//!
//! The core announces every change to the durable registry as an `Output::Persist`; the
//! runtime commits those changes to its store before it delivers any output of the same
//! round, so nothing the master acknowledged (an agent's registration, a framework's
//! subscription, a framework's removal) is ever lost. Tasks are not kept: agents report
//! theirs when they re-register, as in Mesos.

use std::collections::BTreeMap;

use agora_proto::model::{AgentId, AgentInfo, FrameworkId, FrameworkInfo};

use super::Output;
use super::maintenance::{DrainInfo, Maintenance};
use super::master::Master;
use super::registry::{AgentRecord, FrameworkRecord};
use super::roles::RolePolicy;

/// One change to the durable registry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RegistryOp {
    /// An agent was admitted (or re-registered, or became unreachable).
    PutAgent {
        agent_id: AgentId,
        agent: DurableAgent,
    },
    /// The agent was unreachable past its re-register timeout; its id may not come back.
    RemoveAgent {
        agent_id: AgentId,
    },
    PutFramework {
        framework_id: FrameworkId,
        info: FrameworkInfo,
    },
    /// The framework was torn down or failed over for good; its id may not come back.
    RemoveFramework {
        framework_id: FrameworkId,
    },
    /// The operator's weights, quota and dynamic reservations, as a whole.
    PutRolePolicy {
        policy: RolePolicy,
    },
    /// The maintenance schedule and the machines that are down, as a whole.
    PutMaintenance {
        maintenance: Maintenance,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DurableAgent {
    pub info: AgentInfo,
    pub reachable: bool,
    /// Fields added after the first records were written read as their default.
    #[serde(default)]
    pub deactivated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainInfo>,
}

impl DurableAgent {
    pub(crate) fn of(agent: &AgentRecord) -> Self {
        Self {
            info: agent.info.clone(),
            reachable: agent.reachable,
            deactivated: agent.deactivated,
            drain: agent.drain.clone(),
        }
    }
}

/// Everything a master recovers from its store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    pub agents: BTreeMap<AgentId, DurableAgent>,
    pub frameworks: BTreeMap<FrameworkId, FrameworkInfo>,
    pub removed_frameworks: Vec<FrameworkId>,
    pub gone_agents: Vec<AgentId>,
    pub role_policy: RolePolicy,
    pub maintenance: Maintenance,
}

impl Registry {
    /// Applies one change, as the store does.
    pub fn apply(&mut self, op: RegistryOp) {
        match op {
            RegistryOp::PutAgent { agent_id, agent } => {
                self.agents.insert(agent_id, agent);
            }
            RegistryOp::RemoveAgent { agent_id } => {
                self.agents.remove(&agent_id);
                if !self.gone_agents.contains(&agent_id) {
                    self.gone_agents.push(agent_id);
                }
            }
            RegistryOp::PutFramework { framework_id, info } => {
                self.frameworks.insert(framework_id, info);
            }
            RegistryOp::PutRolePolicy { policy } => self.role_policy = policy,
            RegistryOp::PutMaintenance { maintenance } => self.maintenance = maintenance,
            RegistryOp::RemoveFramework { framework_id } => {
                self.frameworks.remove(&framework_id);
                if !self.removed_frameworks.contains(&framework_id) {
                    self.removed_frameworks.push(framework_id);
                }
            }
        }
    }
}

impl Master {
    /// Takes back the registry of a previous master. Agents are expected to re-register:
    /// one that does not within `agent_timeout_ms` becomes unreachable, as if it had gone
    /// silent. Frameworks are disconnected until they re-subscribe with their id; one that
    /// does not within its failover timeout is removed and its tasks killed. Call it on a
    /// fresh master, before any other input.
    pub fn recover(&mut self, now_ms: u64, registry: Registry) {
        // Before the agents: their dynamic reservations are re-applied as they register.
        self.restore_role_policy(registry.role_policy);
        self.restore_maintenance(registry.maintenance);
        for framework_id in registry.removed_frameworks {
            self.remember_removed_framework(framework_id);
        }
        for agent_id in registry.gone_agents {
            self.remember_gone_agent(agent_id);
        }
        for (agent_id, agent) in registry.agents {
            let mut record = AgentRecord::new(agent_id.clone(), agent.info, super::ConnId(u64::MAX), now_ms);
            record.conn = None;
            record.reachable = agent.reachable;
            record.deactivated = agent.deactivated;
            let unavailability = self.unavailability_of(&record.info.hostname);
            record.set_unavailability(unavailability);
            record.drain = agent.drain;
            // The re-register timeout of an agent that was unreachable before the restart
            // counts from the restart: the master cannot know how long it was away since.
            record.unreachable_since_ms = (!agent.reachable).then_some(now_ms);
            self.agents.insert(agent_id, record);
        }
        for (framework_id, info) in registry.frameworks {
            let mut record = FrameworkRecord::new(info, now_ms);
            record.stream = None;
            record.unregistered_at_ms = Some(now_ms);
            self.frameworks.insert(framework_id, record);
        }
    }

    pub(crate) fn persist_agent(&mut self, agent_id: &AgentId) {
        if let Some(agent) = self.agents.get(agent_id) {
            let agent = DurableAgent::of(agent);
            self.outbox.push(Output::Persist(RegistryOp::PutAgent { agent_id: agent_id.clone(), agent }));
        }
    }

    /// Called after every change to weights, quota or dynamic reservations.
    pub(crate) fn persist_role_policy(&mut self) {
        let policy = self.policy.clone();
        self.outbox.push(Output::Persist(RegistryOp::PutRolePolicy { policy }));
    }

    pub(crate) fn persist_framework(&mut self, framework_id: &FrameworkId) {
        if let Some(framework) = self.frameworks.get(framework_id) {
            let info = framework.info.clone();
            self.outbox.push(Output::Persist(RegistryOp::PutFramework { framework_id: framework_id.clone(), info }));
        }
    }
}
