//! Conversions between wire messages (`pb`) and domain types (`model`).
//!
//! Wire-to-domain conversions are `TryFrom` and reject malformed input with a
//! [`WireError`] naming the field, so that cores only ever see valid values.

use std::sync::Arc;

use crate::model::{
    AgentDescription, AgentId, AgentInfo, Attribute, CommandInfo, DEFAULT_FAILOVER_TIMEOUT_MS, FetchUri, FrameworkId,
    FrameworkInfo, HealthCheck, HealthCheckKind, HttpScheme, MAX_FETCH_URIS, Offer, OfferId, Pool, RangeSet,
    ReadinessCheck, Resources, Role, Scalars, TaskInfo, TaskState, TaskStatus, TaskStatusReason, TaskStatusSource,
    UpdateId,
};
use crate::pb;

/// Longest identifier accepted (task, agent, framework, offer ids).
pub const MAX_ID_LEN: usize = 256;
/// Longest free-text field accepted (names, messages, commands).
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// Most entries accepted in any repeated field (argv, environment, labels, attributes, ports).
pub const MAX_ENTRIES: usize = 1024;

/// Longest interval, grace period or delay of a check: a day.
pub const MAX_CHECK_PERIOD_MS: u64 = 24 * 3600 * 1000;
/// Longest timeout of one check: an hour.
pub const MAX_CHECK_TIMEOUT_MS: u64 = 3600 * 1000;
/// Most consecutive failures a health check may allow before the task is killed.
pub const MAX_CHECK_FAILURES: u32 = 10_000;
/// Longest path of an HTTP check.
pub const MAX_CHECK_PATH_LEN: usize = 2048;
/// Most status codes a readiness check may list.
pub const MAX_READY_STATUS_CODES: usize = 16;

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
        if value.uris.len() > MAX_FETCH_URIS {
            return Err(WireError::new("uris", format!("has more than {MAX_FETCH_URIS} entries")));
        }
        let mut uris = Vec::with_capacity(value.uris.len());
        for (i, uri) in value.uris.into_iter().enumerate() {
            let uri = FetchUri {
                uri: uri.uri,
                executable: uri.executable,
                extract: uri.extract,
                cache: uri.cache,
                output_file: (!uri.output_file.is_empty()).then_some(uri.output_file),
            };
            uri.check().map_err(|(part, message)| WireError::new(format!("uris[{i}].{part}"), message))?;
            uris.push(uri);
        }
        let user = if value.user.is_empty() { None } else { Some(user_name("user", value.user)?) };
        Ok(CommandInfo { shell, argv, environment: value.environment.into_iter().collect(), uris, user })
    }
}

/// Longest user name accepted (Linux allows 32; a little room for other systems).
pub const MAX_USER_NAME_LEN: usize = 64;

/// A user name as a passwd entry spells it: no separator, control or space character.
pub fn user_name(field: &str, value: String) -> Result<String, WireError> {
    if value.len() > MAX_USER_NAME_LEN {
        return Err(WireError::new(field, format!("is longer than {MAX_USER_NAME_LEN} bytes")));
    }
    if value.chars().any(|c| c == ':' || c == '/' || c.is_whitespace() || c.is_control()) || value.starts_with('-') {
        return Err(WireError::new(field, format!("{value:?} is not a valid user name")));
    }
    Ok(value)
}

impl From<&CommandInfo> for pb::CommandInfo {
    fn from(value: &CommandInfo) -> Self {
        pb::CommandInfo {
            shell: value.shell.clone().unwrap_or_default(),
            argv: value.argv.clone(),
            environment: value.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            user: value.user.clone().unwrap_or_default(),
            uris: value
                .uris
                .iter()
                .map(|uri| pb::FetchUri {
                    uri: uri.uri.clone(),
                    executable: uri.executable,
                    extract: uri.extract,
                    cache: uri.cache,
                    output_file: uri.output_file.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

// ---- checks ----

fn check_port(field: &str, port: u32) -> Result<u16, WireError> {
    match u16::try_from(port) {
        Ok(0) => Err(WireError::new(field, "is required (a port number above 0)")),
        Ok(port) => Ok(port),
        Err(_) => Err(WireError::new(field, format!("{port} is not a port number"))),
    }
}

/// A path for a request line: it starts with `/`, is bounded, and holds no space or
/// control character, which would end the request line early or forge headers.
fn check_path(field: &str, path: String) -> Result<String, WireError> {
    if !path.starts_with('/') {
        return Err(WireError::new(field, "must start with `/`"));
    }
    if path.len() > MAX_CHECK_PATH_LEN {
        return Err(WireError::new(field, format!("is longer than {MAX_CHECK_PATH_LEN} bytes")));
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(WireError::new(field, "may not contain spaces or control characters"));
    }
    Ok(path)
}

/// A duration above zero and at most `max_ms`.
fn positive_ms(field: &str, value: u64, max_ms: u64) -> Result<u64, WireError> {
    if value == 0 || value > max_ms {
        return Err(WireError::new(field, format!("must be above 0 and at most {max_ms} ms")));
    }
    Ok(value)
}

fn at_most_ms(field: &str, value: u64, max_ms: u64) -> Result<u64, WireError> {
    if value > max_ms {
        return Err(WireError::new(field, format!("must be at most {max_ms} ms")));
    }
    Ok(value)
}

fn scheme(field: &str, value: i32) -> Result<HttpScheme, WireError> {
    match pb::HttpScheme::try_from(value) {
        Ok(pb::HttpScheme::Http) => Ok(HttpScheme::Http),
        Ok(pb::HttpScheme::Https) => Ok(HttpScheme::Https),
        Err(_) => Err(WireError::new(field, format!("unknown scheme {value}"))),
    }
}

fn scheme_to_pb(value: HttpScheme) -> i32 {
    match value {
        HttpScheme::Http => pb::HttpScheme::Http as i32,
        HttpScheme::Https => pb::HttpScheme::Https as i32,
    }
}

impl TryFrom<pb::HealthCheck> for HealthCheck {
    type Error = WireError;

    fn try_from(value: pb::HealthCheck) -> Result<Self, WireError> {
        use pb::health_check::Kind;
        let kind = match value.kind {
            None => return Err(WireError::new("kind", "give an http, tcp or command check")),
            Some(Kind::Http(http)) => HealthCheckKind::Http {
                scheme: scheme("http.scheme", http.scheme)?,
                port: check_port("http.port", http.port)?,
                path: check_path("http.path", http.path)?,
            },
            Some(Kind::Tcp(tcp)) => HealthCheckKind::Tcp { port: check_port("tcp.port", tcp.port)? },
            Some(Kind::Command(command)) => {
                if command.shell.trim().is_empty() {
                    return Err(WireError::new("command.shell", "is required"));
                }
                HealthCheckKind::Command { shell: text("command.shell", command.shell)? }
            }
        };
        if value.max_consecutive_failures > MAX_CHECK_FAILURES {
            return Err(WireError::new("max_consecutive_failures", format!("must be at most {MAX_CHECK_FAILURES}")));
        }
        Ok(HealthCheck {
            kind,
            grace_period_ms: at_most_ms("grace_period_ms", value.grace_period_ms, MAX_CHECK_PERIOD_MS)?,
            interval_ms: positive_ms("interval_ms", value.interval_ms, MAX_CHECK_PERIOD_MS)?,
            timeout_ms: positive_ms("timeout_ms", value.timeout_ms, MAX_CHECK_TIMEOUT_MS)?,
            max_consecutive_failures: value.max_consecutive_failures,
            delay_ms: at_most_ms("delay_ms", value.delay_ms, MAX_CHECK_PERIOD_MS)?,
        })
    }
}

impl From<&HealthCheck> for pb::HealthCheck {
    fn from(value: &HealthCheck) -> Self {
        use pb::health_check::Kind;
        let kind = match &value.kind {
            HealthCheckKind::Http { scheme, port, path } => Kind::Http(pb::HttpHealthCheck {
                scheme: scheme_to_pb(*scheme),
                port: u32::from(*port),
                path: path.clone(),
            }),
            HealthCheckKind::Tcp { port } => Kind::Tcp(pb::TcpHealthCheck { port: u32::from(*port) }),
            HealthCheckKind::Command { shell } => Kind::Command(pb::CommandHealthCheck { shell: shell.clone() }),
        };
        pb::HealthCheck {
            kind: Some(kind),
            grace_period_ms: value.grace_period_ms,
            interval_ms: value.interval_ms,
            timeout_ms: value.timeout_ms,
            max_consecutive_failures: value.max_consecutive_failures,
            delay_ms: value.delay_ms,
        }
    }
}

impl TryFrom<pb::ReadinessCheck> for ReadinessCheck {
    type Error = WireError;

    fn try_from(value: pb::ReadinessCheck) -> Result<Self, WireError> {
        if value.ready_status_codes.len() > MAX_READY_STATUS_CODES {
            return Err(WireError::new(
                "ready_status_codes",
                format!("has more than {MAX_READY_STATUS_CODES} entries"),
            ));
        }
        let mut codes = Vec::with_capacity(value.ready_status_codes.len().max(1));
        for (i, code) in value.ready_status_codes.iter().enumerate() {
            let code = u16::try_from(*code).ok().filter(|c| (100..=599).contains(c)).ok_or_else(|| {
                WireError::new(format!("ready_status_codes[{i}]"), format!("{code} is not an HTTP status (100..=599)"))
            })?;
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        if codes.is_empty() {
            // Marathon's default.
            codes.push(200);
        }
        Ok(ReadinessCheck {
            scheme: scheme("scheme", value.scheme)?,
            port: check_port("port", value.port)?,
            path: check_path("path", value.path)?,
            interval_ms: positive_ms("interval_ms", value.interval_ms, MAX_CHECK_PERIOD_MS)?,
            timeout_ms: positive_ms("timeout_ms", value.timeout_ms, MAX_CHECK_TIMEOUT_MS)?,
            ready_status_codes: codes,
        })
    }
}

impl From<&ReadinessCheck> for pb::ReadinessCheck {
    fn from(value: &ReadinessCheck) -> Self {
        pb::ReadinessCheck {
            scheme: scheme_to_pb(value.scheme),
            port: u32::from(value.port),
            path: value.path.clone(),
            interval_ms: value.interval_ms,
            timeout_ms: value.timeout_ms,
            ready_status_codes: value.ready_status_codes.iter().map(|&c| u32::from(c)).collect(),
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
            health_check: value
                .health_check
                .map(|check| HealthCheck::try_from(check).map_err(|e| e.in_field("health_check")))
                .transpose()?,
            readiness_check: value
                .readiness_check
                .map(|check| ReadinessCheck::try_from(check).map_err(|e| e.in_field("readiness_check")))
                .transpose()?,
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
            health_check: value.health_check.as_ref().map(Into::into),
            readiness_check: value.readiness_check.as_ref().map(Into::into),
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
            P::ReasonTaskHealthCheckStatusUpdated => TaskStatusReason::TaskHealthCheckStatusUpdated,
            P::ReasonTaskCheckStatusUpdated => TaskStatusReason::TaskCheckStatusUpdated,
            P::ReasonContainerLimitationMemory => TaskStatusReason::ContainerLimitationMemory,
            P::ReasonContainerLimitationDisk => TaskStatusReason::ContainerLimitationDisk,
            P::ReasonTaskUnauthorized => TaskStatusReason::TaskUnauthorized,
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
            TaskStatusReason::TaskHealthCheckStatusUpdated => P::ReasonTaskHealthCheckStatusUpdated,
            TaskStatusReason::TaskCheckStatusUpdated => P::ReasonTaskCheckStatusUpdated,
            TaskStatusReason::ContainerLimitationMemory => P::ReasonContainerLimitationMemory,
            TaskStatusReason::ContainerLimitationDisk => P::ReasonContainerLimitationDisk,
            TaskStatusReason::TaskUnauthorized => P::ReasonTaskUnauthorized,
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
            healthy: value.healthy,
            ready: value.ready,
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
            healthy: value.healthy,
            ready: value.ready,
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
                unavailability: None,
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
    fn a_bad_fetch_uri_names_its_index_and_part() {
        let command = |uris: Vec<pb::FetchUri>| pb::CommandInfo { shell: "true".into(), uris, ..Default::default() };
        let good = pb::FetchUri { uri: "http://h/a.tgz".into(), ..Default::default() };
        let bad = pb::FetchUri { uri: "http://h/a".into(), output_file: "../x".into(), ..Default::default() };
        let err = CommandInfo::try_from(command(vec![good.clone(), bad])).expect_err("../x");
        assert_eq!(err.field, "uris[1].output_file");
        let err = CommandInfo::try_from(command(vec![good; MAX_FETCH_URIS + 1])).expect_err("too many");
        assert_eq!(err.field, "uris");
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
            command: CommandInfo {
                shell: Some("echo hi".into()),
                uris: vec![
                    FetchUri::plain("http://repo/app.tgz"),
                    FetchUri {
                        uri: "/srv/run.sh".into(),
                        executable: true,
                        output_file: Some("start".into()),
                        cache: true,
                        ..FetchUri::default()
                    },
                ],
                ..CommandInfo::default()
            },
            labels: vec![("team".into(), "a".into())],
            kill_grace_period_ms: Some(2000),
            health_check: Some(HealthCheck {
                kind: HealthCheckKind::Http { scheme: HttpScheme::Https, port: 31000, path: "/health".into() },
                grace_period_ms: 0,
                interval_ms: 500,
                timeout_ms: 100,
                max_consecutive_failures: 0,
                delay_ms: 10,
            }),
            readiness_check: Some(ReadinessCheck {
                ready_status_codes: vec![200, 204],
                ..ReadinessCheck::http(31000, "/ready")
            }),
        };
        let wire = pb::TaskInfo::from(&task);
        assert_eq!(TaskInfo::try_from(wire).expect("valid"), task);
        for check in [HealthCheck::tcp(80), HealthCheck::command("test -f ready")] {
            let back = HealthCheck::try_from(pb::HealthCheck::from(&check)).expect("valid");
            assert_eq!(back, check);
        }
    }

    fn task_with_health_check(check: pb::HealthCheck) -> pb::TaskInfo {
        pb::TaskInfo {
            task_id: "t".into(),
            agent_id: "a".into(),
            command: Some(pb::CommandInfo { shell: "true".into(), ..Default::default() }),
            health_check: Some(check),
            ..Default::default()
        }
    }

    #[test]
    fn a_malformed_health_check_is_rejected_naming_its_field() {
        let good = pb::HealthCheck::from(&HealthCheck::http(8080, "/health"));
        type Spoil = Box<dyn Fn(&mut pb::HealthCheck)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("health_check.kind", Box::new(|c| c.kind = None)),
            ("health_check.interval_ms", Box::new(|c| c.interval_ms = 0)),
            ("health_check.interval_ms", Box::new(|c| c.interval_ms = MAX_CHECK_PERIOD_MS + 1)),
            ("health_check.timeout_ms", Box::new(|c| c.timeout_ms = 0)),
            ("health_check.timeout_ms", Box::new(|c| c.timeout_ms = MAX_CHECK_TIMEOUT_MS + 1)),
            ("health_check.grace_period_ms", Box::new(|c| c.grace_period_ms = u64::MAX)),
            ("health_check.delay_ms", Box::new(|c| c.delay_ms = u64::MAX)),
            ("health_check.max_consecutive_failures", Box::new(|c| c.max_consecutive_failures = u32::MAX)),
            (
                "health_check.http.port",
                Box::new(|c| {
                    c.kind =
                        Some(pb::health_check::Kind::Http(pb::HttpHealthCheck { port: 0, path: "/".into(), scheme: 0 }))
                }),
            ),
            (
                "health_check.http.port",
                Box::new(|c| {
                    c.kind = Some(pb::health_check::Kind::Http(pb::HttpHealthCheck {
                        port: 70_000,
                        path: "/".into(),
                        scheme: 0,
                    }))
                }),
            ),
            (
                "health_check.http.path",
                Box::new(|c| {
                    c.kind = Some(pb::health_check::Kind::Http(pb::HttpHealthCheck {
                        port: 80,
                        path: "health".into(),
                        scheme: 0,
                    }))
                }),
            ),
            (
                "health_check.http.path",
                Box::new(|c| {
                    c.kind = Some(pb::health_check::Kind::Http(pb::HttpHealthCheck {
                        port: 80,
                        path: "/a\r\nX: y".into(),
                        scheme: 0,
                    }))
                }),
            ),
            (
                "health_check.http.path",
                Box::new(|c| {
                    c.kind = Some(pb::health_check::Kind::Http(pb::HttpHealthCheck {
                        port: 80,
                        path: format!("/{}", "a".repeat(MAX_CHECK_PATH_LEN)),
                        scheme: 0,
                    }))
                }),
            ),
            (
                "health_check.http.scheme",
                Box::new(|c| {
                    c.kind = Some(pb::health_check::Kind::Http(pb::HttpHealthCheck {
                        port: 80,
                        path: "/".into(),
                        scheme: 7,
                    }))
                }),
            ),
            (
                "health_check.tcp.port",
                Box::new(|c| c.kind = Some(pb::health_check::Kind::Tcp(pb::TcpHealthCheck { port: 0 }))),
            ),
            (
                "health_check.command.shell",
                Box::new(|c| {
                    c.kind = Some(pb::health_check::Kind::Command(pb::CommandHealthCheck { shell: " ".into() }))
                }),
            ),
        ];
        for (field, spoil) in cases {
            let mut check = good.clone();
            spoil(&mut check);
            let err = TaskInfo::try_from(task_with_health_check(check)).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
        TaskInfo::try_from(task_with_health_check(good)).expect("the unspoilt check is valid");
    }

    #[test]
    fn a_readiness_check_defaults_to_status_200_and_rejects_codes_that_are_not_http_statuses() {
        let mut wire = pb::ReadinessCheck::from(&ReadinessCheck::http(8080, "/ready"));
        wire.ready_status_codes.clear();
        assert_eq!(ReadinessCheck::try_from(wire.clone()).expect("valid").ready_status_codes, vec![200]);
        wire.ready_status_codes = vec![200, 600];
        assert_eq!(ReadinessCheck::try_from(wire.clone()).expect_err("600").field, "ready_status_codes[1]");
        wire.ready_status_codes = vec![200; MAX_READY_STATUS_CODES + 1];
        assert_eq!(ReadinessCheck::try_from(wire.clone()).expect_err("too many").field, "ready_status_codes");
        wire.ready_status_codes = vec![200];
        wire.port = 0;
        assert_eq!(ReadinessCheck::try_from(wire.clone()).expect_err("port 0").field, "port");
        wire.port = 80;
        wire.timeout_ms = 0;
        assert_eq!(ReadinessCheck::try_from(wire).expect_err("timeout 0").field, "timeout_ms");
    }

    #[test]
    fn health_and_readiness_survive_the_wire_on_a_status() {
        let mut status = TaskStatus::from_master(
            TaskId::new("t"),
            None,
            TaskState::TaskRunning,
            TaskStatusReason::TaskHealthCheckStatusUpdated,
            "",
            1,
        );
        status.healthy = Some(false);
        status.ready = Some(true);
        assert_eq!(TaskStatus::try_from(pb::TaskStatus::from(&status)).expect("valid"), status);
        // A record written before checks existed still reads.
        let mut json = serde_json::to_value(&status).expect("serializes");
        let object = json.as_object_mut().expect("an object");
        object.remove("healthy");
        object.remove("ready");
        let old: TaskStatus = serde_json::from_value(json).expect("deserializes");
        assert_eq!((old.healthy, old.ready), (None, None));
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
