//! Mesos' scheduler messages ↔ Agora's scheduler messages. Calls become the same
//! `pb::Call` bodies the gRPC service takes, so both transports share one validation
//! (`wire::calls_from_pb`) and one core; events are built from the same `pb::Event`s the
//! gRPC streams send. Every refusal names the field by its path in Mesos' call.

use std::collections::BTreeMap;

use agora_proto::convert::WireError;
use agora_proto::model::cpus_to_milli;
use agora_proto::pb;

use super::types::{self as m, call_type, operation_type, value_type};

/// What a Mesos call asks of the master.
#[derive(Debug)]
pub enum Action {
    Subscribe(pb::FrameworkInfo),
    /// A call of Agora's vocabulary, checked and run as the gRPC service runs it.
    Call(pb::call::Call),
    /// A call Mesos accepts and that changes nothing here (REQUEST, whose resource
    /// requests Mesos' own allocator ignores); it is still checked against the
    /// framework's subscription.
    NoOp,
    /// ACCEPT_INVERSE_OFFERS (`accept`) or DECLINE_INVERSE_OFFERS: inverse offers exist
    /// only on this API, so the answer goes to the core directly.
    AnswerInverseOffers {
        ids: Vec<String>,
        accept: bool,
    },
    /// UPDATE_FRAMEWORK: a new `FrameworkInfo` for the subscribed framework.
    UpdateFramework(pb::FrameworkInfo),
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> WireError {
    WireError::new(field, reason)
}

fn id_value(field: &str, id: Option<&m::Id>) -> Result<String, WireError> {
    match id {
        Some(id) if !id.value.is_empty() => Ok(id.value.clone()),
        _ => Err(err(format!("{field}.value"), "is required")),
    }
}

fn optional_id_value(id: Option<&m::Id>) -> String {
    id.map(|id| id.value.clone()).unwrap_or_default()
}

/// The call's type name, for errors.
pub fn type_name(call: &m::Call) -> &'static str {
    call.r#type.and_then(call_type::name).unwrap_or("UNKNOWN")
}

/// Reads a call into what it asks. `framework_id` is the call's own, already read.
pub fn action(call: m::Call) -> Result<Action, WireError> {
    use pb::call::Call as C;
    let kind = type_name(&call);
    let missing = |field: &str| err(field, format!("is required for a {kind} call"));
    Ok(match kind {
        "SUBSCRIBE" => {
            let subscribe = call.subscribe.ok_or_else(|| missing("subscribe"))?;
            let info = framework_info("subscribe.framework_info", subscribe, call.framework_id.as_ref())?;
            Action::Subscribe(info)
        }
        "UPDATE_FRAMEWORK" => {
            let update = call.update_framework.ok_or_else(|| missing("update_framework"))?;
            Action::UpdateFramework(framework_info(
                "update_framework.framework_info",
                update,
                call.framework_id.as_ref(),
            )?)
        }
        "TEARDOWN" => Action::Call(C::Teardown(pb::Teardown {})),
        "ACCEPT" => {
            let accept = call.accept.ok_or_else(|| missing("accept"))?;
            let mut operations = Vec::with_capacity(accept.operations.len());
            for (i, operation) in accept.operations.into_iter().enumerate() {
                operations.push(self::operation(&format!("accept.operations[{i}]"), operation)?);
            }
            Action::Call(C::Accept(pb::Accept {
                offer_ids: offer_ids("accept.offer_ids", &accept.offer_ids)?,
                operations,
                filters: filters("accept.filters", accept.filters)?,
            }))
        }
        "DECLINE" => {
            let decline = call.decline.ok_or_else(|| missing("decline"))?;
            Action::Call(C::Decline(pb::Decline {
                offer_ids: offer_ids("decline.offer_ids", &decline.offer_ids)?,
                filters: filters("decline.filters", decline.filters)?,
            }))
        }
        "ACCEPT_INVERSE_OFFERS" | "DECLINE_INVERSE_OFFERS" => {
            let accept = kind == "ACCEPT_INVERSE_OFFERS";
            let field = if accept { "accept_inverse_offers" } else { "decline_inverse_offers" };
            let answer = if accept { call.accept_inverse_offers } else { call.decline_inverse_offers };
            let answer = answer.ok_or_else(|| missing(field))?;
            let ids = offer_ids(&format!("{field}.inverse_offer_ids"), &answer.inverse_offer_ids)?;
            Action::AnswerInverseOffers { ids, accept }
        }
        "REVIVE" => Action::Call(C::Revive(pb::Revive { roles: call.revive.map(|r| r.roles).unwrap_or_default() })),
        "SUPPRESS" => {
            Action::Call(C::Suppress(pb::Suppress { roles: call.suppress.map(|r| r.roles).unwrap_or_default() }))
        }
        "KILL" => {
            let kill = call.kill.ok_or_else(|| missing("kill"))?;
            if kill.kill_policy.is_some() {
                return Err(err("kill.kill_policy", "is not supported: a kill waits the task's own grace period"));
            }
            Action::Call(C::Kill(pb::Kill {
                task_id: id_value("kill.task_id", kill.task_id.as_ref())?,
                agent_id: optional_id_value(kill.agent_id.as_ref()),
            }))
        }
        // A command task's executor is the task itself, as in Mesos' command executor, so
        // shutting the executor down is killing the task.
        "SHUTDOWN" => {
            let shutdown = call.shutdown.ok_or_else(|| missing("shutdown"))?;
            Action::Call(C::Kill(pb::Kill {
                task_id: id_value("shutdown.executor_id", shutdown.executor_id.as_ref())?,
                agent_id: id_value("shutdown.agent_id", shutdown.agent_id.as_ref())?,
            }))
        }
        "ACKNOWLEDGE" => {
            let ack = call.acknowledge.ok_or_else(|| missing("acknowledge"))?;
            Action::Call(C::Acknowledge(pb::Acknowledge {
                agent_id: id_value("acknowledge.agent_id", ack.agent_id.as_ref())?,
                task_id: id_value("acknowledge.task_id", ack.task_id.as_ref())?,
                uuid: uuid_text("acknowledge.uuid", ack.uuid.as_deref())?,
            }))
        }
        "RECONCILE" => {
            let reconcile = call.reconcile.unwrap_or_default();
            let tasks = reconcile
                .tasks
                .iter()
                .enumerate()
                .map(|(i, task)| {
                    Ok(pb::ReconcileTask {
                        task_id: id_value(&format!("reconcile.tasks[{i}].task_id"), task.task_id.as_ref())?,
                        agent_id: optional_id_value(task.agent_id.as_ref()),
                    })
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            Action::Call(C::Reconcile(pb::Reconcile { tasks }))
        }
        "MESSAGE" => {
            let message = call.message.ok_or_else(|| missing("message"))?;
            Action::Call(C::Message(pb::FrameworkMessage {
                agent_id: id_value("message.agent_id", message.agent_id.as_ref())?,
                data: message.data.unwrap_or_default(),
            }))
        }
        "REQUEST" => Action::NoOp,
        "ACKNOWLEDGE_OPERATION_STATUS" | "RECONCILE_OPERATIONS" => {
            return Err(err(
                "type",
                format!("{kind} is not supported: Agora's offer operations have no status updates"),
            ));
        }
        _ => {
            let known: Vec<&str> = call_type::VALUES.iter().map(|&(n, _)| n).filter(|&n| n != "UNKNOWN").collect();
            return Err(err("type", format!("is required: one of {}", known.join(", "))));
        }
    })
}

fn offer_ids(field: &str, ids: &[m::Id]) -> Result<Vec<String>, WireError> {
    ids.iter().enumerate().map(|(i, id)| id_value(&format!("{field}[{i}]"), Some(id))).collect()
}

fn filters(field: &str, filters: Option<m::Filters>) -> Result<Option<pb::Filters>, WireError> {
    let Some(filters) = filters else { return Ok(None) };
    if let Some(seconds) = filters.refuse_seconds
        && (!seconds.is_finite() || seconds < 0.0)
    {
        return Err(err(format!("{field}.refuse_seconds"), "must be a non-negative number of seconds"));
    }
    Ok(Some(pb::Filters { refuse_seconds: filters.refuse_seconds }))
}

fn framework_info(
    field: &str,
    subscribe: m::Subscribe,
    call_framework_id: Option<&m::Id>,
) -> Result<pb::FrameworkInfo, WireError> {
    let info = subscribe.framework_info.ok_or_else(|| err(field, "is required"))?;
    if subscribe.offer_constraints.is_some() {
        return Err(err(field.replace("framework_info", "offer_constraints"), "offer constraints are not supported"));
    }
    let id = optional_id_value(info.id.as_ref());
    if let Some(call_id) = call_framework_id
        && call_id.value != id
    {
        return Err(err(
            "framework_id",
            format!(
                "{:?} differs from {field}.id {:?}; a framework re-subscribes with its id in both",
                call_id.value, id
            ),
        ));
    }
    let name = info.name.unwrap_or_default();
    if name.is_empty() {
        return Err(err(format!("{field}.name"), "is required"));
    }
    let failover_timeout_ms = match info.failover_timeout {
        None => None,
        Some(s) if !s.is_finite() || s < 0.0 => {
            return Err(err(format!("{field}.failover_timeout"), "must be a non-negative number of seconds"));
        }
        // Mesos' failover timeouts are seconds as a double; a year caps "forever".
        Some(s) => Some((s.min(365.0 * 24.0 * 3600.0) * 1000.0) as u64),
    };
    // MULTI_ROLE frameworks name `roles`; others the single `role` ("*" when neither).
    let roles = if info.roles.is_empty() { info.role.into_iter().collect() } else { info.roles };
    Ok(pb::FrameworkInfo {
        user: info.user.unwrap_or_default(),
        name,
        id,
        roles,
        failover_timeout_ms,
        hostname: info.hostname.unwrap_or_default(),
        principal: info.principal.unwrap_or_default(),
    })
}

fn operation(field: &str, operation: m::Operation) -> Result<pb::Operation, WireError> {
    use pb::operation::Operation as O;
    let kind = operation.r#type.and_then(operation_type::name).unwrap_or("UNKNOWN");
    let body = match kind {
        "LAUNCH" => {
            let launch = operation.launch.ok_or_else(|| err(format!("{field}.launch"), "is required for LAUNCH"))?;
            let tasks = launch
                .task_infos
                .into_iter()
                .enumerate()
                .map(|(i, task)| task_info(&format!("{field}.launch.task_infos[{i}]"), task))
                .collect::<Result<Vec<_>, _>>()?;
            O::Launch(pb::LaunchOperation { tasks })
        }
        "RESERVE" => {
            let reserve =
                operation.reserve.ok_or_else(|| err(format!("{field}.reserve"), "is required for RESERVE"))?;
            O::Reserve(pb::ReserveOperation {
                resources: Some(resources(&format!("{field}.reserve.resources"), &reserve.resources)?),
            })
        }
        "UNRESERVE" => {
            let unreserve =
                operation.unreserve.ok_or_else(|| err(format!("{field}.unreserve"), "is required for UNRESERVE"))?;
            O::Unreserve(pb::UnreserveOperation {
                resources: Some(resources(&format!("{field}.unreserve.resources"), &unreserve.resources)?),
            })
        }
        "UNKNOWN" => return Err(err(format!("{field}.type"), "is required: LAUNCH, RESERVE or UNRESERVE")),
        other => {
            return Err(err(
                format!("{field}.type"),
                format!("{other} is not supported: Agora's offer operations are LAUNCH, RESERVE and UNRESERVE"),
            ));
        }
    };
    Ok(pb::Operation { operation: Some(body) })
}

/// Mesos' resources (one entry per name and role) as Agora's pools by role. Quantities
/// become integers: thousandths of a CPU, whole MiB (rounded up, so a task never gets
/// less memory or disk than it asked for).
pub fn resources(field: &str, list: &[m::Resource]) -> Result<pb::Resources, WireError> {
    let mut pools: BTreeMap<String, pb::ResourcePool> = BTreeMap::new();
    for (i, resource) in list.iter().enumerate() {
        let field = format!("{field}[{i}]");
        for (present, name) in [
            (resource.disk.is_some(), "disk"),
            (resource.revocable.is_some(), "revocable"),
            (resource.shared.is_some(), "shared"),
        ] {
            if present {
                return Err(err(format!("{field}.{name}"), "is not supported by Agora"));
            }
        }
        // The innermost reservation decides the role (reservation refinement), then the
        // pre-1.4 `role` field; otherwise the resource is unreserved.
        let role = resource
            .reservations
            .last()
            .and_then(|r| r.role.clone())
            .or_else(|| resource.reservation.as_ref().and(resource.role.clone()))
            .or_else(|| resource.role.clone())
            .unwrap_or_else(|| "*".to_owned());
        let pool = pools.entry(role.clone()).or_insert_with(|| pb::ResourcePool { role, ..Default::default() });
        let name = resource.name.as_deref().unwrap_or_default();
        let kind = resource.r#type.and_then(value_type::name).unwrap_or("SCALAR");
        match (name, kind) {
            ("cpus" | "mem" | "disk", "SCALAR") => {
                let value = resource
                    .scalar
                    .as_ref()
                    .map(|s| s.value)
                    .ok_or_else(|| err(format!("{field}.scalar"), "is required"))?;
                if !value.is_finite() || value < 0.0 {
                    return Err(err(format!("{field}.scalar.value"), "must be a non-negative number"));
                }
                match name {
                    "cpus" => {
                        let milli =
                            cpus_to_milli(value).map_err(|e| err(format!("{field}.scalar.value"), e.to_string()))?;
                        pool.cpus_milli = pool.cpus_milli.saturating_add(milli);
                    }
                    "mem" => pool.mem_mib = pool.mem_mib.saturating_add(mib(&field, value)?),
                    _ => pool.disk_mib = pool.disk_mib.saturating_add(mib(&field, value)?),
                }
            }
            ("ports", "RANGES") => {
                let ranges = resource.ranges.as_ref().ok_or_else(|| err(format!("{field}.ranges"), "is required"))?;
                if ranges.range.len() > agora_proto::convert::MAX_ENTRIES {
                    return Err(err(format!("{field}.ranges.range"), "has too many entries"));
                }
                pool.ports.extend(ranges.range.iter().map(|r| pb::Range { begin: r.begin, end: r.end }));
            }
            ("cpus" | "mem" | "disk" | "ports", _) => {
                let expected = if name == "ports" { "RANGES" } else { "SCALAR" };
                return Err(err(format!("{field}.type"), format!("{name} is {expected}, not {kind}")));
            }
            _ => {
                return Err(err(
                    format!("{field}.name"),
                    format!("{name:?} is not a resource Agora has: cpus, mem, disk, ports"),
                ));
            }
        }
    }
    Ok(pb::Resources { pools: pools.into_values().collect() })
}

fn mib(field: &str, value: f64) -> Result<u64, WireError> {
    const MAX_MIB: f64 = (1u64 << 40) as f64;
    if value > MAX_MIB {
        return Err(err(format!("{field}.scalar.value"), "is out of range"));
    }
    Ok(value.ceil() as u64)
}

fn seconds_ms(field: &str, seconds: Option<f64>) -> Result<Option<u64>, WireError> {
    match seconds {
        None => Ok(None),
        Some(s) if !s.is_finite() || s < 0.0 => Err(err(field, "must be a non-negative number of seconds")),
        Some(s) => Ok(Some((s.min(365.0 * 24.0 * 3600.0) * 1000.0) as u64)),
    }
}

fn task_info(field: &str, task: m::TaskInfo) -> Result<pb::TaskInfo, WireError> {
    for (present, name, why) in [
        (task.executor.is_some(), "executor", "custom executors are not supported; give a command"),
        (task.container.is_some(), "container", "containerizers are not supported; tasks run as processes"),
        (task.max_completion_time.is_some(), "max_completion_time", "is not supported"),
    ] {
        if present {
            return Err(err(format!("{field}.{name}"), why));
        }
    }
    let command = task.command.ok_or_else(|| err(format!("{field}.command"), "is required"))?;
    let kill_grace_period_ms = match task.kill_policy.and_then(|k| k.grace_period) {
        Some(grace) if grace.nanoseconds < 0 => {
            return Err(err(format!("{field}.kill_policy.grace_period.nanoseconds"), "must not be negative"));
        }
        Some(grace) => (grace.nanoseconds as u64).div_ceil(1_000_000),
        None => 0,
    };
    let labels = task
        .labels
        .map(|l| l.labels)
        .unwrap_or_default()
        .into_iter()
        .map(|l| pb::Label { key: l.key.unwrap_or_default(), value: l.value.unwrap_or_default() })
        .collect();
    let health_check = task.health_check.map(|h| health_check(&format!("{field}.health_check"), h)).transpose()?;
    Ok(pb::TaskInfo {
        task_id: id_value(&format!("{field}.task_id"), task.task_id.as_ref())?,
        name: task.name.unwrap_or_default(),
        agent_id: id_value(&format!("{field}.agent_id"), task.agent_id.as_ref())?,
        resources: Some(resources(&format!("{field}.resources"), &task.resources)?),
        command: Some(command_info(&format!("{field}.command"), command)?),
        labels,
        kill_grace_period_ms,
        health_check,
        readiness_check: None,
    })
}

/// Mesos' command: `shell` (the default) runs `value` with `/bin/sh -c`; otherwise `value`
/// is the program and `arguments` its whole argv, `argv[0]` included.
fn command_info(field: &str, command: m::CommandInfo) -> Result<pb::CommandInfo, WireError> {
    // Mesos extracts archives unless told not to; the agent checks each URI and names
    // `uris[i]` in its refusal.
    let uris: Vec<pb::FetchUri> = command
        .uris
        .into_iter()
        .enumerate()
        .map(|(i, uri)| {
            let value = uri.value.unwrap_or_default();
            if value.is_empty() {
                return Err(err(format!("{field}.uris[{i}].value"), "is required"));
            }
            Ok(pb::FetchUri {
                uri: value,
                executable: uri.executable.unwrap_or(false),
                extract: uri.extract.unwrap_or(true),
                cache: uri.cache.unwrap_or(false),
                output_file: uri.output_file.unwrap_or_default(),
            })
        })
        .collect::<Result<_, _>>()?;
    // Whether the user exists is the agent's to say.
    let user = match command.user.filter(|u| !u.is_empty()) {
        Some(user) => agora_proto::convert::user_name(&format!("{field}.user"), user)?,
        None => String::new(),
    };
    let mut environment = std::collections::HashMap::new();
    for (i, variable) in command.environment.map(|e| e.variables).unwrap_or_default().into_iter().enumerate() {
        if variable.r#type == Some(2) {
            return Err(err(format!("{field}.environment.variables[{i}].type"), "SECRET variables are not supported"));
        }
        let name = variable.name.unwrap_or_default();
        if name.is_empty() {
            return Err(err(format!("{field}.environment.variables[{i}].name"), "is required"));
        }
        environment.insert(name, variable.value.unwrap_or_default());
    }
    let value = command.value.unwrap_or_default();
    if command.shell.unwrap_or(true) {
        if value.is_empty() {
            return Err(err(format!("{field}.value"), "is required: the shell command to run"));
        }
        Ok(pb::CommandInfo { shell: value, argv: Vec::new(), environment, uris, user })
    } else {
        if value.is_empty() {
            return Err(err(format!("{field}.value"), "is required: the program to run"));
        }
        // Agora runs argv[0] itself; Mesos runs `value` with `arguments` as the argv.
        let mut argv = command.arguments;
        if argv.is_empty() {
            argv.push(value.clone());
        } else if argv[0] != value {
            return Err(err(
                format!("{field}.arguments[0]"),
                format!("must be the program {value:?}: Agora runs argv[0], Mesos runs `value` with this argv"),
            ));
        }
        Ok(pb::CommandInfo { shell: String::new(), argv, environment, uris, user })
    }
}

fn health_check(field: &str, check: m::HealthCheck) -> Result<pb::HealthCheck, WireError> {
    use pb::health_check::Kind;
    let kind = check.r#type.and_then(m::health_check_type::name).unwrap_or("UNKNOWN");
    let port = |port: Option<u32>, at: &str| {
        port.filter(|&p| p > 0).ok_or_else(|| err(format!("{field}.{at}.port"), "is required"))
    };
    let kind = match kind {
        "HTTP" => {
            let http = check.http.ok_or_else(|| err(format!("{field}.http"), "is required for an HTTP check"))?;
            let scheme = match http.scheme.as_deref() {
                None | Some("http") => pb::HttpScheme::Http,
                Some("https") => pb::HttpScheme::Https,
                Some(other) => {
                    return Err(err(format!("{field}.http.scheme"), format!("{other:?} is not http or https")));
                }
            };
            Kind::Http(pb::HttpHealthCheck {
                scheme: scheme as i32,
                port: port(http.port, "http")?,
                path: http.path.unwrap_or_else(|| "/".to_owned()),
            })
        }
        "TCP" => Kind::Tcp(pb::TcpHealthCheck { port: port(check.tcp.and_then(|t| t.port), "tcp")? }),
        "COMMAND" => {
            let command =
                check.command.ok_or_else(|| err(format!("{field}.command"), "is required for a COMMAND check"))?;
            let value = command.value.unwrap_or_default();
            if value.is_empty() || command.shell == Some(false) {
                return Err(err(format!("{field}.command.value"), "is required: a shell command"));
            }
            Kind::Command(pb::CommandHealthCheck { shell: value })
        }
        other => {
            return Err(err(
                format!("{field}.type"),
                format!("{other}: the checks Agora runs are HTTP, TCP and COMMAND"),
            ));
        }
    };
    // Mesos' defaults: 15 s delay, every 10 s, 20 s timeout, 3 failures, 10 s grace.
    Ok(pb::HealthCheck {
        kind: Some(kind),
        grace_period_ms: seconds_ms(&format!("{field}.grace_period_seconds"), check.grace_period_seconds)?
            .unwrap_or(10_000),
        interval_ms: seconds_ms(&format!("{field}.interval_seconds"), check.interval_seconds)?.unwrap_or(10_000),
        timeout_ms: seconds_ms(&format!("{field}.timeout_seconds"), check.timeout_seconds)?.unwrap_or(20_000),
        max_consecutive_failures: check.consecutive_failures.unwrap_or(3),
        delay_ms: seconds_ms(&format!("{field}.delay_seconds"), check.delay_seconds)?.unwrap_or(15_000),
    })
}

/// An update's id as Agora holds it (a UUID's text) from Mesos' 16 raw bytes.
pub fn uuid_text(field: &str, bytes: Option<&[u8]>) -> Result<String, WireError> {
    let bytes = bytes.ok_or_else(|| err(field, "is required"))?;
    let uuid = uuid::Uuid::from_slice(bytes).map_err(|_| {
        err(field, format!("must be the 16 bytes of an update's uuid (base64 in JSON), got {}", bytes.len()))
    })?;
    Ok(uuid.to_string())
}

/// Mesos' 16 raw bytes of an update's id, from the UUID text Agora holds. An id that is
/// not a UUID travels as its text's bytes (and is read back the same way: no Agora
/// agent mints one).
fn uuid_bytes(text: &str) -> Vec<u8> {
    match uuid::Uuid::parse_str(text) {
        Ok(uuid) => uuid.as_bytes().to_vec(),
        Err(_) => text.as_bytes().to_vec(),
    }
}

// ---- events ----

/// What the SUBSCRIBED event says about this master.
#[derive(Clone, Debug)]
pub struct MasterContext {
    pub master_id: String,
    pub hostname: String,
    pub port: u32,
    pub ip: u32,
    pub version: String,
}

fn event_of(kind: &str) -> m::Event {
    m::Event { r#type: m::event_type::value(kind), ..Default::default() }
}

fn unavailability(u: &agora_proto::model::Unavailability) -> m::Unavailability {
    m::Unavailability {
        start: m::TimeInfo { nanoseconds: u.start_ns },
        duration: u.duration_ns.map(|nanoseconds| m::DurationInfo { nanoseconds }),
    }
}

/// Gives each offer of an OFFERS event made from `offers` (in the same order) its agent's
/// unavailability, which Agora's gRPC messages do not carry.
pub fn add_unavailability(event: &mut m::Event, offers: &[agora_proto::model::Offer]) {
    if let Some(list) = event.offers.as_mut() {
        for (out, offer) in list.offers.iter_mut().zip(offers) {
            out.unavailability = offer.agent.unavailability.as_ref().map(unavailability);
        }
    }
}

/// Inverse offers as Mesos sends them: an OFFERS event with `inverse_offers` only.
pub fn inverse_offers(offers: &[crate::core::InverseOffer]) -> m::Event {
    let inverse_offers = offers
        .iter()
        .map(|o| {
            let bare = o.agent_url.strip_prefix("http://").unwrap_or(&o.agent_url);
            let (host, port) = bare.rsplit_once(':').unwrap_or((bare, "5051"));
            m::InverseOffer {
                id: m::Id::new(o.id.to_string()),
                url: Some(m::Url {
                    scheme: "http".to_owned(),
                    address: m::Address { hostname: Some(host.to_owned()), port: port.parse().unwrap_or(5051) },
                }),
                framework_id: m::Id::new(o.framework_id.to_string()),
                agent_id: Some(m::Id::new(o.agent_id.to_string())),
                unavailability: unavailability(&o.unavailability),
            }
        })
        .collect();
    m::Event { offers: Some(m::Offers { offers: Vec::new(), inverse_offers }), ..event_of("OFFERS") }
}

pub fn heartbeat() -> m::Event {
    event_of("HEARTBEAT")
}

pub fn event(event: pb::Event, master: &MasterContext) -> Option<m::Event> {
    use pb::event::Event as E;
    Some(match event.event? {
        E::Subscribed(subscribed) => m::Event {
            subscribed: Some(m::Subscribed {
                framework_id: m::Id::new(subscribed.framework_id),
                heartbeat_interval_seconds: Some(subscribed.heartbeat_interval_ms as f64 / 1000.0),
                master_info: Some(m::MasterInfo {
                    id: master.master_id.clone(),
                    ip: master.ip,
                    port: master.port,
                    hostname: Some(master.hostname.clone()),
                    version: Some(master.version.clone()),
                }),
            }),
            ..event_of("SUBSCRIBED")
        },
        E::Offers(offers) => m::Event {
            offers: Some(m::Offers {
                offers: offers.offers.into_iter().map(offer).collect(),
                inverse_offers: Vec::new(),
            }),
            ..event_of("OFFERS")
        },
        E::Rescind(rescind) => {
            m::Event { rescind: Some(m::Rescind { offer_id: m::Id::new(rescind.offer_id) }), ..event_of("RESCIND") }
        }
        E::Update(update) => {
            m::Event { update: Some(m::Update { status: status(update.status?) }), ..event_of("UPDATE") }
        }
        E::Message(message) => m::Event {
            message: Some(m::Message {
                agent_id: Some(m::Id::new(message.agent_id)),
                // Agora's tasks have no executors; Mesos requires the field.
                executor_id: Some(m::Id::new(String::new())),
                data: Some(message.data),
            }),
            ..event_of("MESSAGE")
        },
        E::Failure(failure) => m::Event {
            failure: Some(m::Failure { agent_id: Some(m::Id::new(failure.agent_id)), status: failure.status }),
            ..event_of("FAILURE")
        },
        E::Error(error) => m::Event { error: Some(m::Error { message: error.message }), ..event_of("ERROR") },
        E::Heartbeat(_) => heartbeat(),
    })
}

fn scalar(name: &str, value: f64) -> m::Resource {
    m::Resource {
        name: Some(name.to_owned()),
        r#type: value_type::value("SCALAR"),
        scalar: Some(m::Scalar { value }),
        ..Default::default()
    }
}

/// Agora's pools as Mesos' resources: one entry per name and role, reserved ones with
/// their role in `reservations` (and the pre-1.4 `role`), all with the role they are
/// allocated to when they are (an offer's).
pub fn resources_out(resources: Option<pb::Resources>, allocation_role: Option<&str>) -> Vec<m::Resource> {
    let mut list = Vec::new();
    for pool in resources.unwrap_or_default().pools {
        let role = if pool.role.is_empty() { "*".to_owned() } else { pool.role };
        let mut entries = Vec::with_capacity(4);
        if pool.cpus_milli > 0 {
            entries.push(scalar("cpus", pool.cpus_milli as f64 / 1000.0));
        }
        if pool.mem_mib > 0 {
            entries.push(scalar("mem", pool.mem_mib as f64));
        }
        if pool.disk_mib > 0 {
            entries.push(scalar("disk", pool.disk_mib as f64));
        }
        if !pool.ports.is_empty() {
            entries.push(m::Resource {
                name: Some("ports".to_owned()),
                r#type: value_type::value("RANGES"),
                ranges: Some(m::Ranges {
                    range: pool.ports.iter().map(|r| m::Range { begin: r.begin, end: r.end }).collect(),
                }),
                ..Default::default()
            });
        }
        for mut entry in entries {
            entry.role = Some(role.clone());
            if role != "*" {
                entry.reservations = vec![m::ReservationInfo {
                    role: Some(role.clone()),
                    r#type: m::reservation_type::value("DYNAMIC"),
                    principal: None,
                }];
            }
            entry.allocation_info = allocation_role.map(|role| m::AllocationInfo { role: Some(role.to_owned()) });
            list.push(entry);
        }
    }
    list
}

fn offer(offer: pb::Offer) -> m::Offer {
    let role = if offer.allocation_role.is_empty() { "*".to_owned() } else { offer.allocation_role };
    m::Offer {
        id: m::Id::new(offer.id),
        framework_id: m::Id::new(offer.framework_id),
        agent_id: m::Id::new(offer.agent_id),
        hostname: offer.hostname,
        resources: resources_out(offer.resources, Some(&role)),
        attributes: offer
            .attributes
            .into_iter()
            .map(|a| m::Attribute {
                name: a.name,
                r#type: value_type::value("TEXT"),
                text: Some(m::Text { value: a.value }),
            })
            .collect(),
        unavailability: None,
        allocation_info: Some(m::AllocationInfo { role: Some(role) }),
    }
}

/// A task status in Mesos' shape.
pub fn status(status: pb::TaskStatus) -> m::TaskStatus {
    use pb::{TaskState as S, TaskStatusReason as R, TaskStatusSource as Src};
    let state = match S::try_from(status.state).unwrap_or(S::Unspecified) {
        S::TaskStaging => "TASK_STAGING",
        S::TaskStarting => "TASK_STARTING",
        S::TaskRunning => "TASK_RUNNING",
        S::TaskKilling => "TASK_KILLING",
        S::TaskFinished => "TASK_FINISHED",
        S::TaskFailed => "TASK_FAILED",
        S::TaskKilled => "TASK_KILLED",
        S::TaskError => "TASK_ERROR",
        S::TaskLost => "TASK_LOST",
        S::TaskDropped => "TASK_DROPPED",
        S::TaskUnreachable => "TASK_UNREACHABLE",
        S::TaskGone => "TASK_GONE",
        S::TaskGoneByOperator => "TASK_GONE_BY_OPERATOR",
        S::TaskUnknown | S::Unspecified => "TASK_UNKNOWN",
    };
    // Reasons Mesos has no word for (a command that exited, a kill) are left out, as
    // Mesos leaves them out of its command executor's updates.
    let reason = match R::try_from(status.reason).unwrap_or(R::ReasonUnspecified) {
        R::ReasonCommandLaunchFailed => Some("REASON_CONTAINER_LAUNCH_FAILED"),
        R::ReasonTaskInvalid | R::ReasonResourcesExceededOffer | R::ReasonDuplicateTaskId => {
            Some("REASON_TASK_INVALID")
        }
        R::ReasonInvalidOffers => Some("REASON_INVALID_OFFERS"),
        R::ReasonAgentUnknown => Some("REASON_AGENT_UNKNOWN"),
        R::ReasonAgentRemoved => Some("REASON_AGENT_REMOVED"),
        R::ReasonAgentDisconnected => Some("REASON_AGENT_DISCONNECTED"),
        R::ReasonAgentRestarted => Some("REASON_AGENT_RESTARTED"),
        R::ReasonReconciliation => Some("REASON_RECONCILIATION"),
        R::ReasonFrameworkRemoved => Some("REASON_FRAMEWORK_REMOVED"),
        R::ReasonTaskUnknown => Some("REASON_TASK_UNKNOWN"),
        R::ReasonTaskKilledDuringLaunch => Some("REASON_TASK_KILLED_DURING_LAUNCH"),
        R::ReasonTaskHealthCheckStatusUpdated => Some("REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"),
        R::ReasonTaskCheckStatusUpdated => Some("REASON_TASK_CHECK_STATUS_UPDATED"),
        R::ReasonContainerLimitationMemory => Some("REASON_CONTAINER_LIMITATION_MEMORY"),
        R::ReasonContainerLimitationDisk => Some("REASON_CONTAINER_LIMITATION_DISK"),
        R::ReasonTaskUnauthorized => Some("REASON_TASK_UNAUTHORIZED"),
        R::ReasonUnspecified | R::ReasonCommandExited | R::ReasonTaskKilled => None,
    };
    let source = match Src::try_from(status.source).unwrap_or(Src::SourceUnspecified) {
        Src::SourceMaster => "SOURCE_MASTER",
        Src::SourceAgent => "SOURCE_AGENT",
        Src::SourceExecutor | Src::SourceUnspecified => "SOURCE_EXECUTOR",
    };
    m::TaskStatus {
        task_id: m::Id::new(status.task_id),
        state: m::task_state::value(state),
        message: Some(status.message).filter(|m| !m.is_empty()),
        agent_id: Some(status.agent_id).filter(|a| !a.is_empty()).map(m::Id::new),
        timestamp: Some(status.timestamp_ms as f64 / 1000.0),
        executor_id: None,
        healthy: status.healthy,
        source: m::status_source::value(source),
        reason: reason.and_then(m::status_reason::value),
        uuid: Some(status.uuid).filter(|u| !u.is_empty()).map(|u| uuid_bytes(&u)),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use serde_json::{Value, json};

    use super::*;

    fn call(value: Value) -> m::Call {
        serde_json::from_value(value).expect("a call in Mesos' JSON shape")
    }

    fn action_of(value: Value) -> Result<Action, WireError> {
        action(call(value))
    }

    fn launch(task: Value) -> Result<Action, WireError> {
        action_of(json!({
            "type": "ACCEPT",
            "framework_id": {"value": "f1"},
            "accept": {
                "offer_ids": [{"value": "o1"}],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
                "filters": {"refuse_seconds": 2.5}
            }
        }))
    }

    fn task(extra: Value) -> Value {
        let mut task = json!({
            "name": "t",
            "task_id": {"value": "t1"},
            "agent_id": {"value": "a1"},
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 32.5}},
                {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31001}]},
                 "role": "eng", "reservations": [{"type": "DYNAMIC", "role": "eng"}]}
            ],
            "command": {"value": "echo hi", "environment": {"variables": [{"name": "A", "value": "1"}]}}
        });
        if let (Some(task), Some(extra)) = (task.as_object_mut(), extra.as_object()) {
            task.extend(extra.clone());
        }
        task
    }

    fn refusal(result: Result<Action, WireError>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn pymesos_subscription_reads_with_its_failover_timeout_and_capabilities() {
        // What pymesos 0.3.15 sends, a re-subscription with its id in both places.
        let action = action_of(json!({
            "type": "SUBSCRIBE",
            "framework_id": {"value": "f1"},
            "subscribe": {"framework_info": {
                "user": "alice", "name": "pymesos", "id": {"value": "f1"}, "failover_timeout": 100,
                "hostname": "h", "capabilities": [{"type": "GPU_RESOURCES"}]
            }}
        }))
        .expect("valid");
        let Action::Subscribe(info) = action else { panic!("not a subscription: {action:?}") };
        assert_eq!((info.user.as_str(), info.name.as_str(), info.id.as_str()), ("alice", "pymesos", "f1"));
        assert_eq!(info.failover_timeout_ms, Some(100_000));
        assert!(info.roles.is_empty(), "no role named: the core makes it `*`");
    }

    #[test]
    fn roles_win_over_the_single_role_and_ids_must_agree() {
        let action = action_of(json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
            "user": "u", "name": "n", "role": "old", "roles": ["a", "b"], "capabilities": [{"type": "MULTI_ROLE"}]
        }}}))
        .expect("valid");
        let Action::Subscribe(info) = action else { panic!("not a subscription") };
        assert_eq!(info.roles, ["a", "b"]);
        let error = refusal(action_of(json!({"type": "SUBSCRIBE", "framework_id": {"value": "f2"},
            "subscribe": {"framework_info": {"user": "u", "name": "n", "id": {"value": "f1"}}}})));
        assert!(error.starts_with("framework_id:"), "{error}");
    }

    #[test]
    fn a_launch_in_mesos_shape_becomes_agoras_task_with_integer_resources() {
        let Action::Call(pb::call::Call::Accept(accept)) = launch(task(json!({}))).expect("valid") else {
            panic!("not an accept")
        };
        assert_eq!(accept.offer_ids, ["o1"]);
        assert_eq!(accept.filters.and_then(|f| f.refuse_seconds), Some(2.5));
        let Some(pb::operation::Operation::Launch(launch)) = &accept.operations[0].operation else { panic!("launch") };
        let task = &launch.tasks[0];
        assert_eq!((task.task_id.as_str(), task.agent_id.as_str()), ("t1", "a1"));
        let pools = &task.resources.as_ref().expect("resources").pools;
        let unreserved = pools.iter().find(|p| p.role == "*").expect("unreserved pool");
        assert_eq!((unreserved.cpus_milli, unreserved.mem_mib), (100, 33), "memory rounds up");
        let eng = pools.iter().find(|p| p.role == "eng").expect("reserved pool");
        assert_eq!(eng.ports, [pb::Range { begin: 31000, end: 31001 }]);
        let command = task.command.as_ref().expect("command");
        assert_eq!(command.shell, "echo hi");
        assert_eq!(command.environment.get("A").map(String::as_str), Some("1"));
    }

    #[test]
    fn reserve_and_unreserve_name_the_role_their_resources_are_reserved_for() {
        let reserved = json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0},
            "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "ops"}]}]);
        for kind in ["RESERVE", "UNRESERVE"] {
            let field = kind.to_lowercase();
            let mut operation = json!({"type": kind});
            operation[&field] = json!({"resources": reserved});
            let accept = action_of(json!({"type": "ACCEPT", "framework_id": {"value": "f"},
                "accept": {"offer_ids": [{"value": "o"}], "operations": [operation]}}))
            .expect("valid");
            let Action::Call(pb::call::Call::Accept(accept)) = accept else { panic!("accept") };
            let resources = match &accept.operations[0].operation {
                Some(pb::operation::Operation::Reserve(r)) if kind == "RESERVE" => r.resources.clone(),
                Some(pb::operation::Operation::Unreserve(u)) if kind == "UNRESERVE" => u.resources.clone(),
                other => panic!("{kind}: {other:?}"),
            };
            let pools = resources.expect("resources").pools;
            assert_eq!(pools.len(), 1);
            assert_eq!((pools[0].role.as_str(), pools[0].cpus_milli), ("eng", 1000), "{kind}");
        }
    }

    #[test]
    fn uris_are_fetched_as_mesos_fetches_them_extracting_archives_by_default() {
        let with_uris = task(json!({"command": {"value": "./run.sh", "uris": [
            {"value": "https://example.invalid/app.tgz"},
            {"value": "file:///srv/run.sh", "executable": true, "extract": false, "cache": true, "output_file": "run.sh"}
        ]}}));
        let Action::Call(pb::call::Call::Accept(accept)) = launch(with_uris).expect("valid") else { panic!("accept") };
        let Some(pb::operation::Operation::Launch(launch)) = &accept.operations[0].operation else { panic!("launch") };
        let uris = &launch.tasks[0].command.as_ref().expect("command").uris;
        assert_eq!(uris.len(), 2);
        assert!(uris[0].extract && !uris[0].executable && !uris[0].cache, "{:?}", uris[0]);
        assert_eq!(
            (uris[1].executable, uris[1].extract, uris[1].cache, uris[1].output_file.as_str()),
            (true, false, true, "run.sh")
        );
    }

    #[test]
    fn a_command_without_a_shell_runs_its_arguments_as_argv() {
        let plain = task(json!({"command": {"shell": false, "value": "/bin/echo", "arguments": ["/bin/echo", "hi"]}}));
        let Action::Call(pb::call::Call::Accept(accept)) = launch(plain).expect("valid") else { panic!("accept") };
        let Some(pb::operation::Operation::Launch(launch)) = &accept.operations[0].operation else { panic!("launch") };
        let command = launch.tasks[0].command.as_ref().expect("command");
        assert_eq!(
            (command.shell.as_str(), command.argv.as_slice()),
            ("", &["/bin/echo".to_owned(), "hi".to_owned()][..])
        );
    }

    #[test]
    fn what_agora_cannot_run_is_refused_by_its_path_in_the_call() {
        let at = "accept.operations[0].launch.task_infos[0]";
        let cases = [
            (task(json!({"executor": {"executor_id": {"value": "e"}}})), format!("{at}.executor")),
            (task(json!({"container": {"type": "DOCKER"}})), format!("{at}.container")),
            (
                task(json!({"command": {"value": "x", "uris": [{"executable": true}]}})),
                format!("{at}.command.uris[0].value"),
            ),
            (task(json!({"command": {"value": "x", "user": "bob:x"}})), format!("{at}.command.user")),
            (
                task(json!({"resources": [{"name": "gpus", "type": "SCALAR", "scalar": {"value": 1.0}}]})),
                format!("{at}.resources[0].name"),
            ),
            (task(json!({"resources": [{"name": "mem", "type": "RANGES"}]})), format!("{at}.resources[0].type")),
            (task(json!({"task_id": {"value": ""}})), format!("{at}.task_id.value")),
        ];
        for (task, field) in cases {
            let error = refusal(launch(task));
            assert!(error.starts_with(&format!("{field}:")), "{field}: {error}");
        }
        let create = action_of(json!({"type": "ACCEPT", "framework_id": {"value": "f"},
            "accept": {"offer_ids": [{"value": "o"}], "operations": [{"type": "CREATE"}]}}));
        assert!(refusal(create).starts_with("accept.operations[0].type: CREATE is not supported"));
        assert!(refusal(action_of(json!({"type": "UNKNOWN"}))).starts_with("type: is required"));
        assert!(serde_json::from_value::<m::Call>(json!({"type": "LAUNCH_ROCKETS"})).is_err());
    }

    #[test]
    fn update_uuids_travel_as_base64_of_their_bytes_and_come_back_as_the_same_text() {
        let text = "5c7a1e2e-8f6d-4b1e-9a3b-0c2d4e6f8a10";
        let status = pb::TaskStatus {
            task_id: "t1".to_owned(),
            agent_id: "a1".to_owned(),
            state: pb::TaskState::TaskRunning as i32,
            source: pb::TaskStatusSource::SourceAgent as i32,
            reason: pb::TaskStatusReason::ReasonTaskHealthCheckStatusUpdated as i32,
            message: "up".to_owned(),
            timestamp_ms: 1_500,
            uuid: text.to_owned(),
            healthy: Some(true),
            ..Default::default()
        };
        let update = pb::Event { event: Some(pb::event::Event::Update(pb::Update { status: Some(status) })) };
        let master =
            MasterContext { master_id: "m".into(), hostname: "h".into(), port: 5050, ip: 0, version: "0".into() };
        let event = serde_json::to_value(event(update, &master).expect("an event")).expect("json");
        assert_eq!(event["type"], "UPDATE");
        let status = &event["update"]["status"];
        assert_eq!(status["task_id"]["value"], "t1");
        assert_eq!(status["agent_id"]["value"], "a1");
        assert_eq!(status["state"], "TASK_RUNNING");
        assert_eq!(status["source"], "SOURCE_AGENT");
        assert_eq!(status["reason"], "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED");
        assert_eq!(status["healthy"], true);
        assert_eq!(status["timestamp"], 1.5);
        let uuid = status["uuid"].as_str().expect("base64 text");
        assert_eq!(uuid.len(), 24, "16 bytes in base64");
        let ack = action_of(json!({"type": "ACKNOWLEDGE", "framework_id": {"value": "f"},
            "acknowledge": {"agent_id": {"value": "a1"}, "task_id": {"value": "t1"}, "uuid": uuid}}))
        .expect("valid");
        let Action::Call(pb::call::Call::Acknowledge(ack)) = ack else { panic!("acknowledge") };
        assert_eq!(ack.uuid, text);
        let short = action_of(json!({"type": "ACKNOWLEDGE", "framework_id": {"value": "f"},
            "acknowledge": {"agent_id": {"value": "a1"}, "task_id": {"value": "t1"}, "uuid": "AAAA"}}));
        assert!(refusal(short).starts_with("acknowledge.uuid:"));
    }

    #[test]
    fn offers_carry_resources_in_mesos_shape_with_their_roles() {
        let offer = pb::Offer {
            id: "o1".into(),
            framework_id: "f1".into(),
            agent_id: "a1".into(),
            hostname: "h".into(),
            resources: Some(pb::Resources {
                pools: vec![
                    pb::ResourcePool { role: "*".into(), cpus_milli: 1500, mem_mib: 512, disk_mib: 0, ports: vec![] },
                    pb::ResourcePool {
                        role: "eng".into(),
                        cpus_milli: 0,
                        mem_mib: 0,
                        disk_mib: 0,
                        ports: vec![pb::Range { begin: 1, end: 2 }],
                    },
                ],
            }),
            attributes: vec![pb::Attribute { name: "rack".into(), value: "r1".into() }],
            agent_url: String::new(),
            allocation_role: "eng".into(),
        };
        let offers = pb::Event { event: Some(pb::event::Event::Offers(pb::Offers { offers: vec![offer] })) };
        let master =
            MasterContext { master_id: "m".into(), hostname: "h".into(), port: 5050, ip: 0, version: "0".into() };
        let event = serde_json::to_value(event(offers, &master).expect("an event")).expect("json");
        assert_eq!(event["type"], "OFFERS");
        let offer = &event["offers"]["offers"][0];
        assert_eq!(offer["id"]["value"], "o1");
        assert_eq!(offer["attributes"][0], json!({"name": "rack", "type": "TEXT", "text": {"value": "r1"}}));
        let resources = offer["resources"].as_array().expect("a list");
        assert_eq!(resources[0]["name"], "cpus");
        assert_eq!(resources[0]["scalar"]["value"], 1.5);
        assert_eq!(resources[0]["role"], "*");
        assert_eq!(resources[0]["allocation_info"]["role"], "eng");
        assert_eq!(resources[2]["ranges"], json!({"range": [{"begin": 1, "end": 2}]}));
        assert_eq!(resources[2]["reservations"][0]["role"], "eng");
    }

    #[test]
    fn protobuf_and_json_carry_the_same_call() {
        let from_json = call(json!({
            "type": "ACCEPT",
            "framework_id": {"value": "f1"},
            "accept": {"offer_ids": [{"value": "o1"}],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task(json!({}))]}}]}
        }));
        let bytes = from_json.encode_to_vec();
        let from_protobuf = m::Call::decode(bytes.as_slice()).expect("protobuf");
        assert_eq!(from_protobuf, from_json);
        let again: m::Call = serde_json::from_value(serde_json::to_value(&from_protobuf).expect("json")).expect("json");
        assert_eq!(again, from_json);
        assert!(m::Call::decode(&b"\xff\xff\xff"[..]).is_err(), "malformed protobuf is an error");
    }
}
