//! Conversions between wire messages (`pb`) and domain types (`model`).
//!
//! Wire-to-domain conversions are `TryFrom` and reject malformed input with a
//! [`WireError`] naming the field, so that cores only ever see valid values.

use std::sync::Arc;

use crate::model::{
    AgentDescription, AgentId, AgentInfo, Attribute, CommandInfo, DEFAULT_FAILOVER_TIMEOUT_MS, FrameworkId,
    FrameworkInfo, Offer, OfferId, Pool, RangeSet, Resources, Role, Scalars, TaskInfo, TaskState, TaskStatus,
    TaskStatusReason, TaskStatusSource, UpdateId,
};
use crate::pb;

/// Longest identifier accepted (task, agent, framework, offer ids).
pub const MAX_ID_LEN: usize = 256;
/// Longest free-text field accepted (names, messages, commands).
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// Most entries accepted in any repeated field (argv, environment, labels, attributes, ports).
pub const MAX_ENTRIES: usize = 1024;

/// A wire message that does not describe a valid domain value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct WireError {
    /// The offending field, as a path (`task.resources.ports`).
    pub field: String,
    pub reason: String,
}

impl WireError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }

    /// The same error one level deeper: `in_field("task")` turns `name: …` into `task.name: …`.
    pub fn in_field(self, parent: &str) -> Self {
        Self { field: format!("{parent}.{}", self.field), reason: self.reason }
    }
}

impl From<WireError> for tonic::Status {
    fn from(error: WireError) -> Self {
        tonic::Status::invalid_argument(error.to_string())
    }
}

/// A required identifier: non-empty, bounded, printable, no `/` (ids appear in paths).
pub fn id<T: From<String>>(field: &str, value: &str) -> Result<T, WireError> {
    if value.is_empty() {
        return Err(WireError::new(field, "is required"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(WireError::new(field, format!("is longer than {MAX_ID_LEN} bytes")));
    }
    if value.chars().any(|c| c.is_control() || c == '/' || c.is_whitespace()) || value == "." || value == ".." {
        return Err(WireError::new(field, "may not contain `/`, spaces or control characters"));
    }
    Ok(T::from(value.to_owned()))
}

/// An optional identifier: empty means absent.
pub fn optional_id<T: From<String>>(field: &str, value: &str) -> Result<Option<T>, WireError> {
    if value.is_empty() { Ok(None) } else { id(field, value).map(Some) }
}

fn text(field: &str, value: String) -> Result<String, WireError> {
    if value.len() > MAX_TEXT_LEN {
        return Err(WireError::new(field, format!("is longer than {MAX_TEXT_LEN} bytes")));
    }
    Ok(value)
}

fn bounded<T>(field: &str, items: Vec<T>) -> Result<Vec<T>, WireError> {
    if items.len() > MAX_ENTRIES {
        return Err(WireError::new(field, format!("has more than {MAX_ENTRIES} entries")));
    }
    Ok(items)
}

// ---- resources ----

impl TryFrom<pb::Resources> for Resources {
    type Error = WireError;

    fn try_from(value: pb::Resources) -> Result<Self, WireError> {
        let mut resources = Resources::new();
        for (i, pool) in bounded("pools", value.pools)?.into_iter().enumerate() {
            let field = format!("pools[{i}]");
            let role_name = if pool.role.is_empty() { Role::UNRESERVED } else { pool.role.as_str() };
            let role = Role::parse(role_name).map_err(|e| WireError::new(format!("{field}.role"), e.to_string()))?;
            let ranges = bounded(&format!("{field}.ports"), pool.ports)?;
            if let Some(r) = ranges.iter().find(|r| r.end > 65_535) {
                return Err(WireError::new(format!("{field}.ports"), format!("{} is not a port number", r.end)));
            }
            let ports = RangeSet::from_ranges(ranges.iter().map(|r| (r.begin, r.end)))
                .map_err(|e| WireError::new(format!("{field}.ports"), e.to_string()))?;
            if pool.cpus_milli > 1_000_000_000 || pool.mem_mib > 1 << 40 || pool.disk_mib > 1 << 40 {
                return Err(WireError::new(field, "quantity out of range"));
            }
            let scalars = Scalars::new(pool.cpus_milli, pool.mem_mib, pool.disk_mib);
            resources.add_pool(role, Pool { scalars, ports });
        }
        // Decoded resources are mostly held (a task's, an agent's), never grown.
        resources.shrink_to_fit();
        Ok(resources)
    }
}

impl From<&Resources> for pb::Resources {
    fn from(value: &Resources) -> Self {
        pb::Resources {
            pools: value
                .pools()
                .map(|(role, pool)| pb::ResourcePool {
                    role: role.to_string(),
                    cpus_milli: pool.scalars.cpus_milli,
                    mem_mib: pool.scalars.mem_mib,
                    disk_mib: pool.scalars.disk_mib,
                    ports: pool.ports.ranges().iter().map(|&(begin, end)| pb::Range { begin, end }).collect(),
                })
                .collect(),
        }
    }
}

/// Reads a required `Resources` message, naming `field` in any error.
pub fn resources(field: &str, value: Option<pb::Resources>) -> Result<Resources, WireError> {
    Resources::try_from(value.unwrap_or_default()).map_err(|e| e.in_field(field))
}

// ---- attributes ----

fn attributes(value: Vec<pb::Attribute>) -> Result<Vec<Attribute>, WireError> {
    bounded("attributes", value)?
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            if a.name.is_empty() {
                return Err(WireError::new(format!("attributes[{i}].name"), "is required"));
            }
            Ok(Attribute { name: text("attributes.name", a.name)?, value: text("attributes.value", a.value)? })
        })
        .collect()
}

fn attributes_to_pb(value: &[Attribute]) -> Vec<pb::Attribute> {
    value.iter().map(|a| pb::Attribute { name: a.name.clone(), value: a.value.clone() }).collect()
}

// ---- agent ----

impl TryFrom<pb::AgentInfo> for AgentInfo {
    type Error = WireError;

    fn try_from(value: pb::AgentInfo) -> Result<Self, WireError> {
        if value.hostname.is_empty() {
            return Err(WireError::new("hostname", "is required"));
        }
        let port = u16::try_from(value.port).map_err(|_| WireError::new("port", "is not a port number"))?;
        Ok(AgentInfo {
            hostname: text("hostname", value.hostname)?,
            port,
            resources: resources("resources", value.resources)?,
            attributes: attributes(value.attributes)?,
        })
    }
}

impl From<&AgentInfo> for pb::AgentInfo {
    fn from(value: &AgentInfo) -> Self {
        pb::AgentInfo {
            hostname: value.hostname.clone(),
            port: u32::from(value.port),
            resources: Some((&value.resources).into()),
            attributes: attributes_to_pb(&value.attributes),
        }
    }
}

// ---- framework ----

impl TryFrom<pb::FrameworkInfo> for FrameworkInfo {
    type Error = WireError;

    fn try_from(value: pb::FrameworkInfo) -> Result<Self, WireError> {
        if value.name.is_empty() {
            return Err(WireError::new("name", "is required"));
        }
        let mut roles = Vec::new();
        for (i, role) in bounded("roles", value.roles)?.iter().enumerate() {
            let role = Role::parse(role).map_err(|e| WireError::new(format!("roles[{i}]"), e.to_string()))?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            roles.push(Role::unreserved());
        }
        Ok(FrameworkInfo {
            id: optional_id("id", &value.id)?,
            name: text("name", value.name)?,
            user: text("user", value.user)?,
            roles,
            failover_timeout_ms: value.failover_timeout_ms.unwrap_or(DEFAULT_FAILOVER_TIMEOUT_MS),
            hostname: text("hostname", value.hostname)?,
            principal: text("principal", value.principal)?,
        })
    }
}

impl From<&FrameworkInfo> for pb::FrameworkInfo {
    fn from(value: &FrameworkInfo) -> Self {
        pb::FrameworkInfo {
            user: value.user.clone(),
            name: value.name.clone(),
            id: value.id.as_ref().map(ToString::to_string).unwrap_or_default(),
            roles: value.roles.iter().map(ToString::to_string).collect(),
            failover_timeout_ms: Some(value.failover_timeout_ms),
            hostname: value.hostname.clone(),
            principal: value.principal.clone(),
        }
    }
}

// ---- tasks ----

impl TryFrom<pb::CommandInfo> for CommandInfo {
    type Error = WireError;

    fn try_from(value: pb::CommandInfo) -> Result<Self, WireError> {
        let shell = if value.shell.is_empty() { None } else { Some(text("shell", value.shell)?) };
        let argv = bounded("argv", value.argv)?;
        if shell.is_none() && argv.first().is_none_or(String::is_empty) {
            return Err(WireError::new("argv", "give a shell command or a non-empty argv"));
        }
        if argv.iter().map(String::len).sum::<usize>() > MAX_TEXT_LEN {
            return Err(WireError::new("argv", format!("is longer than {MAX_TEXT_LEN} bytes")));
        }
        if value.environment.len() > MAX_ENTRIES {
            return Err(WireError::new("environment", format!("has more than {MAX_ENTRIES} entries")));
        }
        if let Some(key) = value.environment.keys().find(|k| k.is_empty() || k.contains('=') || k.contains('\0')) {
            return Err(WireError::new("environment", format!("{key:?} is not a valid variable name")));
        }
        Ok(CommandInfo { shell, argv, environment: value.environment.into_iter().collect() })
    }
}

impl From<&CommandInfo> for pb::CommandInfo {
    fn from(value: &CommandInfo) -> Self {
        pb::CommandInfo {
            shell: value.shell.clone().unwrap_or_default(),
            argv: value.argv.clone(),
            environment: value.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

impl TryFrom<pb::TaskInfo> for TaskInfo {
    type Error = WireError;

    fn try_from(value: pb::TaskInfo) -> Result<Self, WireError> {
        let command = value.command.ok_or_else(|| WireError::new("command", "is required"))?;
        Ok(TaskInfo {
            task_id: id("task_id", &value.task_id)?,
            name: text("name", value.name)?,
            agent_id: id("agent_id", &value.agent_id)?,
            resources: resources("resources", value.resources)?,
            command: CommandInfo::try_from(command).map_err(|e| e.in_field("command"))?,
            labels: bounded("labels", value.labels)?.into_iter().map(|l| (l.key, l.value)).collect(),
            kill_grace_period_ms: (value.kill_grace_period_ms > 0).then_some(value.kill_grace_period_ms),
        })
    }
}

impl From<&TaskInfo> for pb::TaskInfo {
    fn from(value: &TaskInfo) -> Self {
        pb::TaskInfo {
            task_id: value.task_id.to_string(),
            name: value.name.clone(),
            agent_id: value.agent_id.to_string(),
            resources: Some((&value.resources).into()),
            command: Some((&value.command).into()),
            labels: value
                .labels
                .iter()
                .map(|(key, value)| pb::Label { key: key.clone(), value: value.clone() })
                .collect(),
            kill_grace_period_ms: value.kill_grace_period_ms.unwrap_or(0),
        }
    }
}

impl TryFrom<pb::TaskState> for TaskState {
    type Error = WireError;

    fn try_from(value: pb::TaskState) -> Result<Self, WireError> {
        use pb::TaskState as P;
        Ok(match value {
            P::Unspecified => return Err(WireError::new("state", "is required")),
            P::TaskStaging => TaskState::TaskStaging,
            P::TaskStarting => TaskState::TaskStarting,
            P::TaskRunning => TaskState::TaskRunning,
            P::TaskKilling => TaskState::TaskKilling,
            P::TaskFinished => TaskState::TaskFinished,
            P::TaskFailed => TaskState::TaskFailed,
            P::TaskKilled => TaskState::TaskKilled,
            P::TaskError => TaskState::TaskError,
            P::TaskLost => TaskState::TaskLost,
            P::TaskDropped => TaskState::TaskDropped,
            P::TaskUnreachable => TaskState::TaskUnreachable,
            P::TaskGone => TaskState::TaskGone,
            P::TaskGoneByOperator => TaskState::TaskGoneByOperator,
            P::TaskUnknown => TaskState::TaskUnknown,
        })
    }
}

impl From<TaskState> for pb::TaskState {
    fn from(value: TaskState) -> Self {
        use pb::TaskState as P;
        match value {
            TaskState::TaskStaging => P::TaskStaging,
            TaskState::TaskStarting => P::TaskStarting,
            TaskState::TaskRunning => P::TaskRunning,
            TaskState::TaskKilling => P::TaskKilling,
            TaskState::TaskFinished => P::TaskFinished,
            TaskState::TaskFailed => P::TaskFailed,
            TaskState::TaskKilled => P::TaskKilled,
            TaskState::TaskError => P::TaskError,
            TaskState::TaskLost => P::TaskLost,
            TaskState::TaskDropped => P::TaskDropped,
            TaskState::TaskUnreachable => P::TaskUnreachable,
            TaskState::TaskGone => P::TaskGone,
            TaskState::TaskGoneByOperator => P::TaskGoneByOperator,
            TaskState::TaskUnknown => P::TaskUnknown,
        }
    }
}

/// Reads a task state from its wire number.
pub fn task_state(field: &str, value: i32) -> Result<TaskState, WireError> {
    let state = pb::TaskState::try_from(value).map_err(|_| WireError::new(field, format!("unknown state {value}")))?;
    TaskState::try_from(state).map_err(|e| WireError::new(field, e.reason))
}

impl From<pb::TaskStatusReason> for TaskStatusReason {
    fn from(value: pb::TaskStatusReason) -> Self {
        use pb::TaskStatusReason as P;
        match value {
            P::ReasonUnspecified => TaskStatusReason::Unspecified,
            P::ReasonCommandExited => TaskStatusReason::CommandExited,
            P::ReasonCommandLaunchFailed => TaskStatusReason::CommandLaunchFailed,
            P::ReasonTaskKilled => TaskStatusReason::TaskKilled,
            P::ReasonTaskInvalid => TaskStatusReason::TaskInvalid,
            P::ReasonInvalidOffers => TaskStatusReason::InvalidOffers,
            P::ReasonResourcesExceededOffer => TaskStatusReason::ResourcesExceededOffer,
            P::ReasonAgentUnknown => TaskStatusReason::AgentUnknown,
            P::ReasonAgentRemoved => TaskStatusReason::AgentRemoved,
            P::ReasonAgentDisconnected => TaskStatusReason::AgentDisconnected,
            P::ReasonAgentRestarted => TaskStatusReason::AgentRestarted,
            P::ReasonReconciliation => TaskStatusReason::Reconciliation,
            P::ReasonFrameworkRemoved => TaskStatusReason::FrameworkRemoved,
            P::ReasonTaskUnknown => TaskStatusReason::TaskUnknown,
            P::ReasonTaskKilledDuringLaunch => TaskStatusReason::TaskKilledDuringLaunch,
            P::ReasonDuplicateTaskId => TaskStatusReason::DuplicateTaskId,
        }
    }
}

impl From<TaskStatusReason> for pb::TaskStatusReason {
    fn from(value: TaskStatusReason) -> Self {
        use pb::TaskStatusReason as P;
        match value {
            TaskStatusReason::Unspecified => P::ReasonUnspecified,
            TaskStatusReason::CommandExited => P::ReasonCommandExited,
            TaskStatusReason::CommandLaunchFailed => P::ReasonCommandLaunchFailed,
            TaskStatusReason::TaskKilled => P::ReasonTaskKilled,
            TaskStatusReason::TaskInvalid => P::ReasonTaskInvalid,
            TaskStatusReason::InvalidOffers => P::ReasonInvalidOffers,
            TaskStatusReason::ResourcesExceededOffer => P::ReasonResourcesExceededOffer,
            TaskStatusReason::AgentUnknown => P::ReasonAgentUnknown,
            TaskStatusReason::AgentRemoved => P::ReasonAgentRemoved,
            TaskStatusReason::AgentDisconnected => P::ReasonAgentDisconnected,
            TaskStatusReason::AgentRestarted => P::ReasonAgentRestarted,
            TaskStatusReason::Reconciliation => P::ReasonReconciliation,
            TaskStatusReason::FrameworkRemoved => P::ReasonFrameworkRemoved,
            TaskStatusReason::TaskUnknown => P::ReasonTaskUnknown,
            TaskStatusReason::TaskKilledDuringLaunch => P::ReasonTaskKilledDuringLaunch,
            TaskStatusReason::DuplicateTaskId => P::ReasonDuplicateTaskId,
        }
    }
}

impl TryFrom<pb::TaskStatus> for TaskStatus {
    type Error = WireError;

    fn try_from(value: pb::TaskStatus) -> Result<Self, WireError> {
        let reason = pb::TaskStatusReason::try_from(value.reason).unwrap_or(pb::TaskStatusReason::ReasonUnspecified);
        let source = match pb::TaskStatusSource::try_from(value.source) {
            Ok(pb::TaskStatusSource::SourceAgent) => TaskStatusSource::Agent,
            Ok(pb::TaskStatusSource::SourceExecutor) => TaskStatusSource::Executor,
            _ => TaskStatusSource::Master,
        };
        Ok(TaskStatus {
            task_id: id("task_id", &value.task_id)?,
            agent_id: optional_id("agent_id", &value.agent_id)?,
            state: task_state("state", value.state)?,
            reason: reason.into(),
            source,
            message: text("message", value.message)?,
            timestamp_ms: value.timestamp_ms,
            uuid: optional_id::<UpdateId>("uuid", &value.uuid)?,
            exit_code: value.exit_code,
            signal: value.signal,
        })
    }
}

impl From<&TaskStatus> for pb::TaskStatus {
    fn from(value: &TaskStatus) -> Self {
        let source = match value.source {
            TaskStatusSource::Master => pb::TaskStatusSource::SourceMaster,
            TaskStatusSource::Agent => pb::TaskStatusSource::SourceAgent,
            TaskStatusSource::Executor => pb::TaskStatusSource::SourceExecutor,
        };
        pb::TaskStatus {
            task_id: value.task_id.to_string(),
            agent_id: value.agent_id.as_ref().map(ToString::to_string).unwrap_or_default(),
            state: pb::TaskState::from(value.state) as i32,
            reason: pb::TaskStatusReason::from(value.reason) as i32,
            source: source as i32,
            message: value.message.clone(),
            timestamp_ms: value.timestamp_ms,
            uuid: value.uuid.as_ref().map(ToString::to_string).unwrap_or_default(),
            exit_code: value.exit_code,
            signal: value.signal,
        }
    }
}

// ---- offers ----

impl TryFrom<pb::Offer> for Offer {
    type Error = WireError;

    fn try_from(value: pb::Offer) -> Result<Self, WireError> {
        Ok(Offer {
            id: id::<OfferId>("id", &value.id)?,
            framework_id: id::<FrameworkId>("framework_id", &value.framework_id)?,
            agent_id: id::<AgentId>("agent_id", &value.agent_id)?,
            resources: resources("resources", value.resources)?,
            agent: Arc::new(AgentDescription {
                hostname: value.hostname,
                attributes: attributes(value.attributes)?,
                url: value.agent_url,
            }),
            allocation_role: if value.allocation_role.is_empty() {
                Role::unreserved()
            } else {
                Role::parse(&value.allocation_role).map_err(|e| WireError::new("allocation_role", e.to_string()))?
            },
        })
    }
}

impl From<&Offer> for pb::Offer {
    fn from(value: &Offer) -> Self {
        pb::Offer {
            id: value.id.to_string(),
            framework_id: value.framework_id.to_string(),
            agent_id: value.agent_id.to_string(),
            hostname: value.agent.hostname.clone(),
            resources: Some((&value.resources).into()),
            attributes: attributes_to_pb(&value.agent.attributes),
            agent_url: value.agent.url.clone(),
            allocation_role: value.allocation_role.to_string(),
        }
    }
}

/// Converts `refuse_seconds` to milliseconds, rejecting negative or absurd values.
/// `None` means the default of five seconds, as in Mesos.
pub fn refuse_ms(filters: Option<&pb::Filters>) -> Result<u64, WireError> {
    const DEFAULT_REFUSE_MS: u64 = 5_000;
    /// A year; longer filters are treated as "forever" by capping here.
    const MAX_REFUSE_MS: u64 = 365 * 24 * 3600 * 1000;
    match filters.and_then(|f| f.refuse_seconds) {
        None => Ok(DEFAULT_REFUSE_MS),
        Some(s) if s.is_nan() || s < 0.0 => {
            Err(WireError::new("filters.refuse_seconds", "must be a non-negative number of seconds"))
        }
        Some(s) => Ok(((s * 1000.0).min(MAX_REFUSE_MS as f64)) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskId;

    #[test]
    fn a_task_without_a_command_names_the_field() {
        let err = TaskInfo::try_from(pb::TaskInfo { task_id: "t".into(), agent_id: "a".into(), ..Default::default() })
            .expect_err("no command");
        assert_eq!(err.field, "command");
        let err = TaskInfo::try_from(pb::TaskInfo {
            task_id: "t".into(),
            agent_id: "a".into(),
            command: Some(pb::CommandInfo::default()),
            ..Default::default()
        })
        .expect_err("empty command");
        assert_eq!(err.field, "command.argv");
    }

    #[test]
    fn ids_with_slashes_are_rejected() {
        let err = id::<TaskId>("task_id", "../etc").expect_err("slash");
        assert_eq!(err.field, "task_id");
    }

    #[test]
    fn task_info_round_trips() {
        let task = TaskInfo {
            task_id: TaskId::new("web-1"),
            name: "web".into(),
            agent_id: AgentId::new("agent-1"),
            resources: Resources::parse("cpus:0.5;mem:64;ports:[31000-31000]").expect("valid"),
            command: CommandInfo { shell: Some("echo hi".into()), argv: vec![], environment: Default::default() },
            labels: vec![("team".into(), "a".into())],
            kill_grace_period_ms: Some(2000),
        };
        let wire = pb::TaskInfo::from(&task);
        assert_eq!(TaskInfo::try_from(wire).expect("valid"), task);
    }

    #[test]
    fn an_offer_keeps_its_wire_and_json_forms_with_its_agent_described_once() {
        let wire = pb::Offer {
            id: "m-O7".into(),
            framework_id: "f".into(),
            agent_id: "a".into(),
            hostname: "h".into(),
            resources: Some((&Resources::parse("cpus:1").expect("valid")).into()),
            attributes: vec![pb::Attribute { name: "rack".into(), value: "r1".into() }],
            agent_url: "http://h:5051".into(),
            allocation_role: "eng".into(),
        };
        let offer = Offer::try_from(wire.clone()).expect("valid");
        assert_eq!((offer.hostname(), offer.agent_url()), ("h", "http://h:5051"));
        assert_eq!(offer.attributes(), &[Attribute { name: "rack".into(), value: "r1".into() }]);
        assert_eq!(pb::Offer::from(&offer), wire);
        // The description is flattened: the same keys as when they were the offer's own.
        let json = serde_json::to_value(&offer).expect("serializes");
        assert_eq!(json["hostname"], "h");
        assert_eq!(json["agent_url"], "http://h:5051");
        assert_eq!(json["attributes"][0]["name"], "rack");
        assert!(json.get("agent").is_none());
        let back: Offer = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, offer);
    }

    #[test]
    fn negative_refuse_seconds_are_rejected() {
        let f = pb::Filters { refuse_seconds: Some(-1.0) };
        assert_eq!(refuse_ms(Some(&f)).expect_err("negative").field, "filters.refuse_seconds");
        assert_eq!(refuse_ms(None).expect("default"), 5000);
    }
}
