//! Marathon's app definition (`/v2/apps` bodies, the apps of a group) parsed and validated
//! into an [`AppSpec`], with Marathon's defaults for absent fields, and the partial-update
//! rules of `PUT`/`PATCH` (the given fields replace the current ones).
//!
//! Every field Marathon itself shows in a GET is accepted back, so that GET, modify, PUT
//! works: the read-only ones (`tasks`, `version`, `tasksRunning`, ...) are ignored, and the
//! ones Agora does not support (`container`, `fetch`, ...) only in their empty form.

use std::collections::BTreeMap;

use agora_proto::model::{FetchUri, MAX_FETCH_URI_LEN, MAX_FETCH_URIS, MAX_OUTPUT_FILE_LEN, Role};
use serde_json::{Map, Value};

use crate::model::{
    AppCommand, AppId, AppSpec, BackoffSpec, CheckPort, Constraint, ConstraintOp, HealthCheckSpec, HealthProtocol,
    KillSelection, MAX_INSTANCES, MAX_PATH_LEN, PathId, PortDefinition, Ppm, ReadinessCheckSpec, UnreachableStrategy,
    UpgradeStrategy,
};
use agora_sdk::json::{Obj, Problems, as_integer, as_string, type_name, unique};

/// Limits on one app definition; a request beyond them gets a 422 naming the field.
pub mod limits {
    pub const MAX_CMD_LEN: usize = 32 * 1024;
    pub const MAX_ARGS: usize = 256;
    pub const MAX_ARG_LEN: usize = 4 * 1024;
    pub const MAX_ENV: usize = 1_000;
    pub const MAX_ENV_NAME_LEN: usize = 256;
    pub const MAX_ENV_VALUE_LEN: usize = 16 * 1024;
    pub const MAX_LABELS: usize = 256;
    pub const MAX_LABEL_KEY_LEN: usize = 256;
    pub const MAX_LABEL_VALUE_LEN: usize = 4 * 1024;
    pub const MAX_NAME_LEN: usize = 256;
    pub const MAX_ROLES: usize = 32;
    pub const MAX_PORTS: usize = 64;
    pub const MAX_PORT_NAME_LEN: usize = 63;
    pub const MAX_CONSTRAINTS: usize = 32;
    pub const MAX_CONSTRAINT_VALUE_LEN: usize = 1_024;
    /// The agent runs one health check and one readiness check per task.
    pub const MAX_HEALTH_CHECKS: usize = 1;
    pub const MAX_READINESS_CHECKS: usize = 1;
    pub const MAX_PATH_LEN: usize = 1_024;
    pub const MAX_STATUS_CODES: usize = 32;
    pub const MAX_DEPENDENCIES: usize = 64;
    /// 10,000 CPUs.
    pub const MAX_CPUS: f64 = 10_000.0;
    /// 16 TiB, in MiB.
    pub const MAX_MEM_MIB: f64 = 16.0 * 1024.0 * 1024.0;
    pub const MAX_DISK_MIB: f64 = 1024.0 * 1024.0 * 1024.0;
    pub const MAX_SECONDS: i64 = 30 * 24 * 3_600;
}

use limits::*;

/// The fields of an app definition Agora reads.
const SPEC_FIELDS: &[&str] = &[
    "id",
    "cmd",
    "args",
    "fetch",
    "uris",
    "cpus",
    "mem",
    "disk",
    "instances",
    "env",
    "labels",
    "user",
    "role",
    "acceptedResourceRoles",
    "portDefinitions",
    "ports",
    "requirePorts",
    "constraints",
    "healthChecks",
    "readinessChecks",
    "upgradeStrategy",
    "backoffSeconds",
    "backoffFactor",
    "maxLaunchDelaySeconds",
    "killSelection",
    "unreachableStrategy",
    "taskKillGracePeriodSeconds",
    "dependencies",
    "deploymentTimeoutSeconds",
];

/// Fields Marathon shows in GET responses that say how the app stands, not what it is;
/// accepted and ignored in a definition.
pub const READ_ONLY_FIELDS: &[&str] = &[
    "version",
    "versionInfo",
    "tasks",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "lastTaskFailure",
    "readinessCheckResults",
    "taskStats",
    "tasksStats",
];

/// Marathon fields Agora does not implement, accepted only in the form that means "not
/// used" (what Marathon shows for an app that does not use them).
fn unsupported_field_is_empty(key: &str, value: &Value) -> Option<bool> {
    let empty = match key {
        "container" | "ipAddress" | "residency" | "executorResources" | "resourceLimits" | "check"
        | "taskRateLimit" => value.is_null(),
        "storeUrls" => value.is_null() || value.as_array().is_some_and(Vec::is_empty),
        "secrets" => value.is_null() || value.as_object().is_some_and(Map::is_empty),
        "gpus" => value.is_null() || value.as_f64() == Some(0.0),
        "executor" => value.is_null() || matches!(value.as_str(), Some("" | "//cmd")),
        "tty" => value.is_null() || value == &Value::Bool(false),
        // Host networking is what Agora's tasks use.
        "networks" => {
            value.is_null()
                || value.as_array().is_some_and(|items| {
                    items.iter().all(|n| {
                        n.as_object().is_some_and(|o| {
                            o.get("mode").and_then(Value::as_str) == Some("host") && o.keys().all(|k| k == "mode")
                        })
                    })
                })
        }
        _ => return None,
    };
    Some(empty)
}

/// Where an app definition sits: the group that relative ids resolve against, the id the
/// URL names (if any), and the JSON path of the definition for messages.
#[derive(Clone, Debug)]
pub struct AppContext<'a> {
    pub base: &'a PathId,
    pub url_id: Option<&'a AppId>,
    /// Prefix of every problem's path: `""` for a body that is the app, `/apps(2)` inside
    /// a group.
    pub path: String,
}

impl<'a> AppContext<'a> {
    pub fn top(url_id: Option<&'a AppId>) -> AppContext<'a> {
        static ROOT: std::sync::OnceLock<PathId> = std::sync::OnceLock::new();
        AppContext { base: ROOT.get_or_init(PathId::root), url_id, path: String::new() }
    }
}

/// Parses a complete app definition (absent fields take Marathon's defaults). Returns
/// `None` with the reasons in `problems`.
pub fn parse_app(value: &Value, cx: &AppContext<'_>, problems: &mut Problems) -> Option<AppSpec> {
    let before = problems.len();
    let obj = Obj::of(value, &cx.path, problems)?;
    for (key, value) in obj.map {
        if SPEC_FIELDS.contains(&key.as_str()) || READ_ONLY_FIELDS.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        match unsupported_field_is_empty(key, value) {
            Some(true) => {}
            Some(false) => problems.add(obj.at(key), format!("{key} is not supported by Agora")),
            None => problems.add(obj.at(key), "is not a known field of an app"),
        }
    }

    let id = parse_id(&obj, cx, problems);
    let command = parse_command(&obj, problems);

    let cpus = obj.number("cpus", 0.001, MAX_CPUS, problems).unwrap_or(1.0);
    let mem = obj.number("mem", 0.0, MAX_MEM_MIB, problems).unwrap_or(128.0);
    let disk = obj.number("disk", 0.0, MAX_DISK_MIB, problems).unwrap_or(0.0);
    let instances = obj.integer("instances", 0, i64::from(MAX_INSTANCES), problems).unwrap_or(1) as u32;
    let env = obj.string_map("env", MAX_ENV, MAX_ENV_NAME_LEN, MAX_ENV_VALUE_LEN, problems).unwrap_or_default();
    let labels =
        obj.string_map("labels", MAX_LABELS, MAX_LABEL_KEY_LEN, MAX_LABEL_VALUE_LEN, problems).unwrap_or_default();
    let user = obj.string("user", MAX_NAME_LEN, problems).map(str::to_owned);
    if user.as_deref() == Some("") {
        problems.add(obj.at("user"), "must not be empty");
    }
    let role = obj.string("role", MAX_NAME_LEN, problems).and_then(|r| check_role(r, &obj.at("role"), problems));
    let accepted_resource_roles = parse_accepted_roles(&obj, problems);
    let port_definitions = parse_ports(&obj, problems);
    let require_ports = obj.bool("requirePorts", problems).unwrap_or(false);
    let constraints = parse_constraints(&obj, problems);
    let health_checks = parse_health_checks(&obj, port_definitions.len(), problems);
    let readiness_checks = parse_readiness_checks(&obj, &port_definitions, problems);
    let upgrade_strategy = parse_upgrade_strategy(&obj, problems);
    let backoff = parse_backoff(&obj, problems);
    let kill_selection = match obj.string("killSelection", 64, problems) {
        None | Some("YOUNGEST_FIRST") => KillSelection::YoungestFirst,
        Some("OLDEST_FIRST") => KillSelection::OldestFirst,
        Some(other) => {
            problems.add(obj.at("killSelection"), format!("{other:?} is not YOUNGEST_FIRST or OLDEST_FIRST"));
            KillSelection::YoungestFirst
        }
    };
    let unreachable_strategy = parse_unreachable(&obj, problems);
    let task_kill_grace_period_ms =
        obj.integer("taskKillGracePeriodSeconds", 0, MAX_SECONDS, problems).map(|s| s as u64 * 1_000);
    let dependencies = parse_dependencies(&obj, id.as_ref(), problems);
    let deployment_timeout_ms =
        obj.integer("deploymentTimeoutSeconds", 1, MAX_SECONDS, problems).map(|s| s as u64 * 1_000);
    let fetch = parse_fetch(&obj, problems);

    if problems.len() > before {
        return None;
    }
    Some(AppSpec {
        id: id?,
        command: command?,
        // At least one milli-CPU: the minimum is 0.001 and rounding must not make it 0.
        cpus_milli: ((cpus * 1_000.0).round() as u64).max(1),
        // Memory and disk round up: a task never gets less than it asked for.
        mem_mib: mem.ceil() as u64,
        disk_mib: disk.ceil() as u64,
        instances,
        env,
        labels,
        user,
        role,
        accepted_resource_roles,
        port_definitions,
        require_ports,
        constraints,
        health_checks,
        readiness_checks,
        upgrade_strategy,
        backoff,
        kill_selection,
        unreachable_strategy,
        task_kill_grace_period_ms,
        dependencies,
        deployment_timeout_ms,
        fetch,
    })
}

/// `fetch` (objects) or the older `uris` (strings, each unpacked when an archive), not both.
fn parse_fetch(obj: &Obj<'_>, problems: &mut Problems) -> Vec<FetchUri> {
    let mut out = Vec::new();
    let uris = obj.strings("uris", MAX_FETCH_URIS, MAX_FETCH_URI_LEN, problems).unwrap_or_default();
    if let Some(items) = obj.array("fetch", MAX_FETCH_URIS, problems) {
        if !items.is_empty() && !uris.is_empty() {
            problems.add(obj.at("uris"), "give either fetch or uris, not both");
            return Vec::new();
        }
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}({i})", obj.at("fetch"));
            let Some(entry) = Obj::of(item, &path, problems) else { continue };
            entry.reject_unknown(FETCH_FIELDS, problems);
            let Some(uri) = entry.string("uri", MAX_FETCH_URI_LEN, problems) else {
                if !entry.has("uri") {
                    problems.add(entry.at("uri"), "is required");
                }
                continue;
            };
            let fetched = FetchUri {
                uri: uri.to_owned(),
                executable: entry.bool("executable", problems).unwrap_or(false),
                extract: entry.bool("extract", problems).unwrap_or(true),
                cache: entry.bool("cache", problems).unwrap_or(false),
                // `destPath` is the name the RAML-era API gives the same field.
                output_file: entry
                    .string("outputFile", MAX_OUTPUT_FILE_LEN, problems)
                    .or_else(|| entry.string("destPath", MAX_OUTPUT_FILE_LEN, problems))
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned),
            };
            if entry.has("outputFile") && entry.has("destPath") {
                problems.add(entry.at("destPath"), "give either outputFile or destPath, not both");
            }
            match fetched.check() {
                Ok(()) => out.push(fetched),
                Err(("output_file", message)) => problems.add(entry.at("outputFile"), message),
                Err((_, message)) => problems.add(entry.at("uri"), message),
            }
        }
    }
    for (i, uri) in uris.into_iter().enumerate() {
        let fetched = FetchUri::plain(uri);
        match fetched.check() {
            Ok(()) => out.push(fetched),
            Err((_, message)) => problems.add(format!("{}({i})", obj.at("uris")), message),
        }
    }
    out
}

fn parse_id(obj: &Obj<'_>, cx: &AppContext<'_>, problems: &mut Problems) -> Option<AppId> {
    let body_id = match obj.get("id") {
        None => None,
        Some(value) => {
            let text = as_string(value, &obj.at("id"), MAX_PATH_LEN * 2, problems)?;
            match PathId::parse_relative(text, cx.base) {
                Ok(id) if id.is_root() => {
                    problems.add(obj.at("id"), "the root group '/' is not an app id");
                    return None;
                }
                Ok(id) => Some(id),
                Err(e) => {
                    problems.add(obj.at("id"), e.0);
                    return None;
                }
            }
        }
    };
    match (body_id, cx.url_id) {
        (Some(body), Some(url)) if &body != url => {
            problems.add(obj.at("id"), format!("{body} does not match the id in the URL, {url}"));
            None
        }
        (Some(id), _) => Some(id),
        (None, Some(url)) => Some(url.clone()),
        (None, None) => {
            problems.add(obj.at("id"), "is required");
            None
        }
    }
}

fn parse_command(obj: &Obj<'_>, problems: &mut Problems) -> Option<AppCommand> {
    let cmd = obj.string("cmd", MAX_CMD_LEN, problems);
    let args = obj.strings("args", MAX_ARGS, MAX_ARG_LEN, problems);
    // Marathon treats an empty `args` as absent (clients send `[]` for "not set").
    let args = args.filter(|a| !a.is_empty());
    match (cmd, args) {
        (Some(_), Some(_)) => {
            problems.add(obj.at("cmd"), "give either cmd or args, not both");
            None
        }
        (Some(""), None) => {
            problems.add(obj.at("cmd"), "must not be empty");
            None
        }
        (Some(cmd), None) => Some(AppCommand::Shell(cmd.to_owned())),
        (None, Some(args)) => Some(AppCommand::Args(args)),
        (None, None) => {
            // A wrongly typed cmd or args was already reported.
            if !obj.has("cmd") && !obj.has("args") {
                problems.add(obj.at("cmd"), "an app needs cmd or args");
            }
            None
        }
    }
}

fn check_role(role: &str, path: &str, problems: &mut Problems) -> Option<String> {
    match Role::parse(role) {
        Ok(_) => Some(role.to_owned()),
        Err(e) => {
            problems.add(path, format!("{role:?} is not a valid role: {e}"));
            None
        }
    }
}

fn parse_accepted_roles(obj: &Obj<'_>, problems: &mut Problems) -> Vec<String> {
    let Some(roles) = obj.strings("acceptedResourceRoles", MAX_ROLES, MAX_NAME_LEN, problems) else {
        return Vec::new();
    };
    let path = obj.at("acceptedResourceRoles");
    for (i, role) in roles.iter().enumerate() {
        check_role(role, &format!("{path}({i})"), problems);
    }
    unique(roles.iter().map(String::as_str), &path, "roles", problems);
    roles
}

fn parse_ports(obj: &Obj<'_>, problems: &mut Problems) -> Vec<PortDefinition> {
    let legacy = obj.array("ports", MAX_PORTS, problems).map(|items| {
        let path = obj.at("ports");
        items
            .iter()
            .enumerate()
            .filter_map(|(i, p)| as_integer(p, &format!("{path}({i})"), 0, 65_535, problems))
            .map(|port| PortDefinition {
                port: port as u16,
                protocol: "tcp".into(),
                name: None,
                labels: BTreeMap::new(),
            })
            .collect::<Vec<_>>()
    });
    let definitions = obj.array("portDefinitions", MAX_PORTS, problems).map(|items| {
        let path = obj.at("portDefinitions");
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| parse_port_definition(item, &format!("{path}({i})"), problems))
            .collect::<Vec<_>>()
    });
    let ports = match (definitions, legacy) {
        (Some(definitions), Some(legacy)) => {
            // Both are fine when they say the same (a client echoing both forms back).
            let numbers: Vec<u16> = definitions.iter().map(|d| d.port).collect();
            let legacy_numbers: Vec<u16> = legacy.iter().map(|d| d.port).collect();
            if !legacy.is_empty() && numbers != legacy_numbers {
                problems.add(obj.at("ports"), "give either ports or portDefinitions, not both");
            }
            definitions
        }
        (Some(definitions), None) => definitions,
        (None, Some(legacy)) => legacy,
        (None, None) => {
            if obj.has("portDefinitions") || obj.has("ports") {
                // Already reported as malformed.
                Vec::new()
            } else {
                vec![PortDefinition {
                    port: 0,
                    protocol: "tcp".into(),
                    name: Some("default".into()),
                    labels: BTreeMap::new(),
                }]
            }
        }
    };
    let fixed: Vec<String> = ports.iter().filter(|p| p.port != 0).map(|p| p.port.to_string()).collect();
    unique(fixed.iter().map(String::as_str), &obj.at("portDefinitions"), "port numbers", problems);
    unique(ports.iter().filter_map(|p| p.name.as_deref()), &obj.at("portDefinitions"), "port names", problems);
    ports
}

fn parse_port_definition(value: &Value, path: &str, problems: &mut Problems) -> Option<PortDefinition> {
    let before = problems.len();
    let obj = Obj::of(value, path, problems)?;
    obj.reject_unknown(&["port", "protocol", "name", "labels"], problems);
    let port = obj.integer("port", 0, 65_535, problems).unwrap_or(0) as u16;
    let protocol = match obj.string("protocol", 16, problems) {
        None | Some("tcp") => "tcp",
        Some("udp") => "udp",
        Some("udp,tcp" | "tcp,udp") => "udp,tcp",
        Some(other) => {
            problems.add(obj.at("protocol"), format!("{other:?} is not tcp, udp or udp,tcp"));
            "tcp"
        }
    };
    let name = obj.string("name", MAX_PORT_NAME_LEN, problems).map(str::to_owned);
    if let Some(name) = &name
        && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        problems.add(obj.at("name"), format!("{name:?}: port names hold lower-case letters, digits and '-'"));
    }
    let labels =
        obj.string_map("labels", MAX_LABELS, MAX_LABEL_KEY_LEN, MAX_LABEL_VALUE_LEN, problems).unwrap_or_default();
    (problems.len() == before).then(|| PortDefinition { port, protocol: protocol.into(), name, labels })
}

fn parse_constraints(obj: &Obj<'_>, problems: &mut Problems) -> Vec<Constraint> {
    let Some(items) = obj.array("constraints", MAX_CONSTRAINTS, problems) else {
        return Vec::new();
    };
    let path = obj.at("constraints");
    items.iter().enumerate().filter_map(|(i, item)| parse_constraint(item, &format!("{path}({i})"), problems)).collect()
}

fn parse_constraint(value: &Value, path: &str, problems: &mut Problems) -> Option<Constraint> {
    let Some(parts) = value.as_array().filter(|a| (2..=3).contains(&a.len())) else {
        problems.add(path, "a constraint is [field, OPERATOR] or [field, OPERATOR, value]");
        return None;
    };
    let field = as_string(&parts[0], path, MAX_NAME_LEN, problems)?;
    if field.is_empty() {
        problems.add(path, "the constraint's field must not be empty");
        return None;
    }
    let op_text = as_string(&parts[1], path, 32, problems)?;
    let op = match op_text {
        "UNIQUE" => ConstraintOp::Unique,
        "CLUSTER" => ConstraintOp::Cluster,
        "GROUP_BY" => ConstraintOp::GroupBy,
        "LIKE" => ConstraintOp::Like,
        "UNLIKE" => ConstraintOp::Unlike,
        "MAX_PER" => ConstraintOp::MaxPer,
        "IS" => ConstraintOp::Is,
        other => {
            problems.add(
                path,
                format!(
                    "{other:?} is not a constraint operator (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS)"
                ),
            );
            return None;
        }
    };
    // Values may come as numbers from older clients (`["rack", "GROUP_BY", 3]`).
    let value = match parts.get(2) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > MAX_CONSTRAINT_VALUE_LEN => {
            problems.add(path, format!("the constraint's value is longer than {MAX_CONSTRAINT_VALUE_LEN} characters"));
            return None;
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            problems.add(path, format!("the constraint's value must be a string, got {}", type_name(other)));
            return None;
        }
    };
    let whole = |v: &str| v.parse::<u32>().is_ok();
    let problem = match (op, value.as_deref()) {
        (ConstraintOp::Unique, Some(_)) => Some("UNIQUE takes no value".to_owned()),
        (ConstraintOp::Like | ConstraintOp::Unlike | ConstraintOp::Is, None) => {
            Some(format!("{op_text} needs a value"))
        }
        (ConstraintOp::Like | ConstraintOp::Unlike, Some(pattern)) => regex::Regex::new(&format!("^(?:{pattern})$"))
            .err()
            .map(|e| format!("{pattern:?} is not a valid regular expression: {e}")),
        (ConstraintOp::MaxPer, None) => Some("MAX_PER needs a value: the most instances per value".to_owned()),
        (ConstraintOp::MaxPer, Some(v)) if !whole(v) || v == "0" => {
            Some(format!("MAX_PER's value must be a positive whole number, got {v:?}"))
        }
        (ConstraintOp::GroupBy, Some(v)) if !whole(v) => {
            Some(format!("GROUP_BY's value must be a whole number, got {v:?}"))
        }
        _ => None,
    };
    if let Some(problem) = problem {
        problems.add(path, problem);
        return None;
    }
    Some(Constraint { field: field.to_owned(), op, value })
}

const HEALTH_FIELDS: &[&str] = &[
    "protocol",
    "path",
    "portIndex",
    "port",
    "command",
    "gracePeriodSeconds",
    "intervalSeconds",
    "timeoutSeconds",
    "maxConsecutiveFailures",
    "delaySeconds",
    "ignoreHttp1xx",
    "ipProtocol",
];

fn parse_health_checks(obj: &Obj<'_>, port_count: usize, problems: &mut Problems) -> Vec<HealthCheckSpec> {
    let path = obj.at("healthChecks");
    let Some(items) = obj.array("healthChecks", usize::MAX, problems) else {
        return Vec::new();
    };
    if items.len() > MAX_HEALTH_CHECKS {
        problems.add(
            path,
            format!("Agora runs at most {MAX_HEALTH_CHECKS} health check per task; {} were given", items.len()),
        );
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| parse_health_check(item, &format!("{path}({i})"), port_count, problems))
        .collect()
}

fn parse_health_check(
    value: &Value,
    path: &str,
    port_count: usize,
    problems: &mut Problems,
) -> Option<HealthCheckSpec> {
    let before = problems.len();
    let obj = Obj::of(value, path, problems)?;
    obj.reject_unknown(HEALTH_FIELDS, problems);
    let protocol_name = obj.string("protocol", 32, problems).unwrap_or("HTTP");
    let mut http_path = || -> String {
        let p = obj.string("path", MAX_PATH_LEN, problems).unwrap_or("/");
        if !p.starts_with('/') {
            problems.add(obj.at("path"), format!("{p:?} must start with '/'"));
        }
        p.to_owned()
    };
    let protocol = match protocol_name {
        "HTTP" | "MESOS_HTTP" => HealthProtocol::Http { path: http_path() },
        "HTTPS" | "MESOS_HTTPS" => HealthProtocol::Https { path: http_path() },
        "TCP" | "MESOS_TCP" => HealthProtocol::Tcp,
        "COMMAND" => {
            // `{"value": "..."}` as Marathon shows it; a bare string as some clients send.
            let shell = match obj.get("command") {
                None => {
                    problems.add(obj.at("command"), "a COMMAND health check needs command.value");
                    None
                }
                Some(Value::String(s)) => Some(s.clone()),
                Some(command) => Obj::of(command, &obj.at("command"), problems).and_then(|c| {
                    c.reject_unknown(&["value"], problems);
                    let value = c.string("value", MAX_CMD_LEN, problems);
                    if value.is_none() && !c.has("value") {
                        problems.add(c.at("value"), "is required");
                    }
                    value.map(str::to_owned)
                }),
            };
            match shell {
                Some(s) if s.is_empty() => {
                    problems.add(obj.at("command"), "must not be empty");
                    HealthProtocol::Command { shell: s }
                }
                Some(shell) => HealthProtocol::Command { shell },
                None => HealthProtocol::Command { shell: String::new() },
            }
        }
        other => {
            problems.add(
                obj.at("protocol"),
                format!("{other:?} is not HTTP, HTTPS, TCP, COMMAND, MESOS_HTTP, MESOS_HTTPS or MESOS_TCP"),
            );
            HealthProtocol::Tcp
        }
    };
    if !matches!(protocol, HealthProtocol::Command { .. }) && obj.has("command") {
        problems.add(obj.at("command"), format!("only COMMAND health checks take a command, not {protocol_name}"));
    }
    if let Some(ip) = obj.string("ipProtocol", 16, problems)
        && ip != "IPv4"
    {
        problems.add(obj.at("ipProtocol"), format!("{ip:?}: Agora checks over IPv4 only"));
    }
    let port_index = obj.integer("portIndex", 0, 65_535, problems);
    let port_number = obj.integer("port", 0, 65_535, problems);
    let port = match (&protocol, port_index, port_number) {
        (_, Some(_), Some(_)) => {
            problems.add(obj.at("port"), "give either port or portIndex, not both");
            None
        }
        (_, None, Some(port)) => Some(CheckPort::Number(port as u16)),
        (_, Some(index), None) if index as usize >= port_count => {
            problems
                .add(obj.at("portIndex"), format!("{index} is not the index of one of the app's {port_count} ports"));
            None
        }
        (_, Some(index), None) => Some(CheckPort::Index(index as u16)),
        (HealthProtocol::Command { .. }, None, None) => None,
        (_, None, None) if port_count == 0 => {
            problems.add(obj.at("portIndex"), "the app has no ports: set port, or give the app portDefinitions");
            None
        }
        (_, None, None) => Some(CheckPort::Index(0)),
    };
    let seconds = |key: &str, min: i64, default: u32, problems: &mut Problems| {
        obj.integer(key, min, MAX_SECONDS, problems).map_or(default, |s| s as u32)
    };
    let grace_period_s = seconds("gracePeriodSeconds", 0, 300, problems);
    let interval_s = seconds("intervalSeconds", 1, 60, problems);
    let timeout_s = seconds("timeoutSeconds", 1, 20, problems);
    let delay_s = seconds("delaySeconds", 0, 15, problems);
    let max_consecutive_failures =
        obj.integer("maxConsecutiveFailures", 0, i64::from(u32::MAX), problems).map_or(3, |n| n as u32);
    let ignore_http1xx = obj.bool("ignoreHttp1xx", problems).unwrap_or(false);
    if problems.len() > before {
        return None;
    }
    Some(HealthCheckSpec {
        protocol,
        port,
        grace_period_s,
        interval_s,
        timeout_s,
        max_consecutive_failures,
        ignore_http1xx,
        delay_s,
    })
}

/// The members of a `fetch` entry.
const FETCH_FIELDS: &[&str] = &["uri", "executable", "extract", "cache", "outputFile", "destPath"];

const READINESS_FIELDS: &[&str] = &[
    "name",
    "protocol",
    "path",
    "portName",
    "intervalSeconds",
    "timeoutSeconds",
    "httpStatusCodesForReady",
    "preserveLastResponse",
];

fn parse_readiness_checks(obj: &Obj<'_>, ports: &[PortDefinition], problems: &mut Problems) -> Vec<ReadinessCheckSpec> {
    let path = obj.at("readinessChecks");
    let Some(items) = obj.array("readinessChecks", usize::MAX, problems) else {
        return Vec::new();
    };
    if items.len() > MAX_READINESS_CHECKS {
        problems.add(path, format!("Agora runs at most {MAX_READINESS_CHECKS} readiness check per task"));
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| parse_readiness_check(item, &format!("{path}({i})"), ports, problems))
        .collect()
}

fn parse_readiness_check(
    value: &Value,
    path: &str,
    ports: &[PortDefinition],
    problems: &mut Problems,
) -> Option<ReadinessCheckSpec> {
    let before = problems.len();
    let obj = Obj::of(value, path, problems)?;
    obj.reject_unknown(READINESS_FIELDS, problems);
    let name = obj.string("name", MAX_NAME_LEN, problems).unwrap_or("readinessCheck").to_owned();
    if name.is_empty() {
        problems.add(obj.at("name"), "must not be empty");
    }
    let https = match obj.string("protocol", 16, problems) {
        None | Some("HTTP") => false,
        Some("HTTPS") => true,
        Some(other) => {
            problems.add(obj.at("protocol"), format!("{other:?} is not HTTP or HTTPS"));
            false
        }
    };
    let check_path = obj.string("path", MAX_PATH_LEN, problems).unwrap_or("/").to_owned();
    if !check_path.starts_with('/') {
        problems.add(obj.at("path"), format!("{check_path:?} must start with '/'"));
    }
    let port_name = obj.string("portName", MAX_PORT_NAME_LEN, problems).unwrap_or("http-api").to_owned();
    if !ports.iter().any(|p| p.name.as_deref() == Some(port_name.as_str())) {
        problems.add(obj.at("portName"), format!("{port_name:?} does not name one of the app's port definitions"));
    }
    let interval_s = obj.integer("intervalSeconds", 1, MAX_SECONDS, problems).map_or(30, |s| s as u32);
    let timeout_s = obj.integer("timeoutSeconds", 1, MAX_SECONDS, problems).map_or(10, |s| s as u32);
    if timeout_s >= interval_s {
        problems.add(obj.at("timeoutSeconds"), "must be smaller than intervalSeconds");
    }
    let codes_path = obj.at("httpStatusCodesForReady");
    let codes: Vec<u16> = match obj.array("httpStatusCodesForReady", MAX_STATUS_CODES, problems) {
        None => vec![200],
        Some(items) if items.is_empty() => {
            problems.add(codes_path.clone(), "needs at least one status code");
            Vec::new()
        }
        Some(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, c)| as_integer(c, &format!("{codes_path}({i})"), 100, 999, problems))
            .map(|c| c as u16)
            .collect(),
    };
    let code_texts: Vec<String> = codes.iter().map(u16::to_string).collect();
    unique(code_texts.iter().map(String::as_str), &codes_path, "status codes", problems);
    let preserve_last_response = obj.bool("preserveLastResponse", problems).unwrap_or(false);
    (problems.len() == before).then_some(ReadinessCheckSpec {
        name,
        https,
        path: check_path,
        port_name,
        interval_s,
        timeout_s,
        http_status_codes_for_ready: codes,
        preserve_last_response,
    })
}

fn parse_upgrade_strategy(obj: &Obj<'_>, problems: &mut Problems) -> UpgradeStrategy {
    let Some(strategy) = obj.object("upgradeStrategy", problems) else {
        return UpgradeStrategy::default();
    };
    strategy.reject_unknown(&["minimumHealthCapacity", "maximumOverCapacity"], problems);
    let ratio = |key: &str, problems: &mut Problems| {
        strategy.number(key, 0.0, 1.0, problems).and_then(Ppm::from_f64).unwrap_or(Ppm::ONE)
    };
    UpgradeStrategy {
        minimum_health_capacity: ratio("minimumHealthCapacity", problems),
        maximum_over_capacity: ratio("maximumOverCapacity", problems),
    }
}

fn parse_backoff(obj: &Obj<'_>, problems: &mut Problems) -> BackoffSpec {
    let default = BackoffSpec::default();
    BackoffSpec {
        backoff_ms: obj
            .integer("backoffSeconds", 0, MAX_SECONDS, problems)
            .map_or(default.backoff_ms, |s| s as u64 * 1_000),
        factor: obj.number("backoffFactor", 1.0, 1_000.0, problems).and_then(Ppm::from_f64).unwrap_or(default.factor),
        max_launch_delay_ms: obj
            .integer("maxLaunchDelaySeconds", 0, MAX_SECONDS, problems)
            .map_or(default.max_launch_delay_ms, |s| s as u64 * 1_000),
    }
}

fn parse_unreachable(obj: &Obj<'_>, problems: &mut Problems) -> UnreachableStrategy {
    let path = obj.at("unreachableStrategy");
    match obj.get("unreachableStrategy") {
        None => UnreachableStrategy::default(),
        Some(Value::String(s)) if s == "disabled" => UnreachableStrategy::Disabled,
        Some(Value::Object(_)) => {
            let Some(strategy) = obj.object("unreachableStrategy", problems) else {
                return UnreachableStrategy::default();
            };
            strategy.reject_unknown(&["inactiveAfterSeconds", "expungeAfterSeconds"], problems);
            let inactive = strategy.integer("inactiveAfterSeconds", 0, MAX_SECONDS, problems).unwrap_or(0) as u64;
            let expunge = strategy.integer("expungeAfterSeconds", 0, MAX_SECONDS, problems).unwrap_or(0) as u64;
            if inactive > expunge {
                problems.add(strategy.at("inactiveAfterSeconds"), "must not be greater than expungeAfterSeconds");
            }
            UnreachableStrategy::Enabled { inactive_after_ms: inactive * 1_000, expunge_after_ms: expunge * 1_000 }
        }
        Some(other) => {
            problems.add(path, format!("expected \"disabled\" or an object, got {}", type_name(other)));
            UnreachableStrategy::default()
        }
    }
}

fn parse_dependencies(obj: &Obj<'_>, id: Option<&AppId>, problems: &mut Problems) -> Vec<PathId> {
    let Some(items) = obj.strings("dependencies", MAX_DEPENDENCIES, MAX_PATH_LEN * 2, problems) else {
        return Vec::new();
    };
    let path = obj.at("dependencies");
    let base = id.map(PathId::parent).unwrap_or_else(PathId::root);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match PathId::parse_relative(item, &base) {
            Ok(dep) if Some(&dep) == id => problems.add(format!("{path}({i})"), "an app cannot depend on itself"),
            Ok(dep) => out.push(dep),
            Err(e) => problems.add(format!("{path}({i})"), e.0),
        }
    }
    let texts: Vec<&str> = out.iter().map(PathId::as_str).collect();
    unique(texts, &path, "dependencies", problems);
    out
}

/// A body that only names a version (and possibly the id): Marathon's rollback form,
/// `PUT /v2/apps/{id}` with `{"version": "..."}`. Returns the version's text.
pub fn rollback_version(update: &Map<String, Value>) -> Option<&Value> {
    let version = update.get("version").filter(|v| !v.is_null())?;
    let only_version = update.iter().all(|(k, v)| k == "version" || k == "id" || v.is_null());
    only_version.then_some(version)
}

/// Applies a partial update to the current definition (as rendered by
/// [`super::render::definition_json`]): each field given replaces the current one whole,
/// as in Marathon. The result is parsed with [`parse_app`] like any full definition.
pub fn merge_update(mut current: Map<String, Value>, update: &Map<String, Value>) -> Map<String, Value> {
    let given = |key: &str| update.get(key).is_some_and(|v| !v.is_null());
    // The two forms of a field exclude each other: the one given wins.
    if given("cmd") {
        current.remove("args");
    }
    if given("args") {
        current.remove("cmd");
    }
    if given("ports") && !given("portDefinitions") {
        current.remove("portDefinitions");
    }
    for (key, value) in update {
        if READ_ONLY_FIELDS.contains(&key.as_str()) || key == "id" {
            continue;
        }
        if value.is_null() {
            // `null` resets a field to its default, as an absent field would in a full PUT.
            current.remove(key);
        } else {
            current.insert(key.clone(), value.clone());
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<AppSpec, Vec<(String, Vec<String>)>> {
        let mut problems = Problems::new();
        parse_app(&value, &AppContext::top(None), &mut problems).ok_or_else(|| problems.grouped())
    }

    #[test]
    fn fetch_entries_take_marathons_defaults_and_plain_uris_are_unpacked() {
        let spec = parse(json!({"id": "/a", "cmd": "./run.sh", "fetch": [
            {"uri": "http://repo/run.sh", "executable": true, "extract": false},
            {"uri": "https://repo/app.tgz", "cache": true},
            {"uri": "http://repo/dl?id=3", "destPath": "conf.zip"},
        ]}))
        .expect("valid");
        assert_eq!(
            spec.fetch,
            vec![
                FetchUri { uri: "http://repo/run.sh".into(), executable: true, ..FetchUri::default() },
                FetchUri { uri: "https://repo/app.tgz".into(), extract: true, cache: true, ..FetchUri::default() },
                FetchUri { output_file: Some("conf.zip".into()), ..FetchUri::plain("http://repo/dl?id=3") },
            ]
        );
        let legacy = parse(json!({"id": "/a", "cmd": "x", "uris": ["/srv/app.tar.gz"], "fetch": []})).expect("valid");
        assert_eq!(legacy.fetch, vec![FetchUri::plain("/srv/app.tar.gz")]);
        // Shown back as `fetch`, which parses to the same spec.
        let shown = serde_json::to_value(crate::marathon::render::AppView::definition(&spec)).expect("json");
        assert_eq!(
            shown["fetch"][2],
            json!({"uri": "http://repo/dl?id=3", "extract": true, "executable": false,
            "cache": false, "outputFile": "conf.zip"})
        );
        assert_eq!(parse(shown).expect("valid").fetch, spec.fetch);
    }

    fn paths(value: Value) -> Vec<String> {
        parse(value).expect_err("invalid").into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn absent_fields_take_marathons_defaults() {
        let spec = parse(json!({"id": "web", "cmd": "sleep 10"})).expect("valid");
        assert_eq!(spec.id.as_str(), "/web");
        assert_eq!(spec.command, AppCommand::Shell("sleep 10".into()));
        assert_eq!((spec.cpus_milli, spec.mem_mib, spec.disk_mib, spec.instances), (1_000, 128, 0, 1));
        assert_eq!(spec.port_definitions.len(), 1);
        assert_eq!(spec.port_definitions[0].port, 0);
        assert_eq!(spec.port_definitions[0].name.as_deref(), Some("default"));
        assert_eq!(spec.upgrade_strategy, UpgradeStrategy::default());
        assert_eq!(
            spec.backoff,
            BackoffSpec { backoff_ms: 1_000, factor: Ppm(1_150_000), max_launch_delay_ms: 300_000 }
        );
        assert_eq!(spec.kill_selection, KillSelection::YoungestFirst);
        assert_eq!(
            spec.unreachable_strategy,
            UnreachableStrategy::Enabled { inactive_after_ms: 0, expunge_after_ms: 0 }
        );
        assert_eq!(spec.deployment_timeout_ms, None);
        assert!(!spec.require_ports);
    }

    #[test]
    fn health_checks_take_marathons_defaults_and_port_index_zero() {
        let spec = parse(json!({"id": "/a", "cmd": "x", "healthChecks": [{}]})).expect("valid");
        assert_eq!(
            spec.health_checks,
            vec![HealthCheckSpec {
                protocol: HealthProtocol::Http { path: "/".into() },
                port: Some(CheckPort::Index(0)),
                grace_period_s: 300,
                interval_s: 60,
                timeout_s: 20,
                max_consecutive_failures: 3,
                ignore_http1xx: false,
                delay_s: 15,
            }]
        );
        let command = parse(json!({"id": "/a", "cmd": "x", "portDefinitions": [],
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}))
        .expect("valid");
        assert_eq!(command.health_checks[0].protocol, HealthProtocol::Command { shell: "true".into() });
        assert_eq!(command.health_checks[0].port, None);
    }

    #[test]
    fn legacy_ports_become_port_definitions() {
        let spec = parse(json!({"id": "/a", "cmd": "x", "ports": [0, 8080]})).expect("valid");
        let ports: Vec<u16> = spec.port_definitions.iter().map(|p| p.port).collect();
        assert_eq!(ports, [0, 8080]);
        let none = parse(json!({"id": "/a", "cmd": "x", "portDefinitions": []})).expect("valid");
        assert!(none.port_definitions.is_empty());
    }

    #[test]
    fn each_invalid_field_is_named() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"cmd": "x"}), "/id"),
            (json!({"id": "/Web", "cmd": "x"}), "/id"),
            (json!({"id": "/"}), "/id"),
            (json!({"id": "/a"}), "/cmd"),
            (json!({"id": "/a", "cmd": "x", "args": ["y"]}), "/cmd"),
            (json!({"id": "/a", "cmd": 3}), "/cmd"),
            (json!({"id": "/a", "cmd": "x", "cpus": 0}), "/cpus"),
            (json!({"id": "/a", "cmd": "x", "cpus": "1"}), "/cpus"),
            (json!({"id": "/a", "cmd": "x", "mem": -1}), "/mem"),
            (json!({"id": "/a", "cmd": "x", "disk": -1}), "/disk"),
            (json!({"id": "/a", "cmd": "x", "instances": -1}), "/instances"),
            (json!({"id": "/a", "cmd": "x", "instances": 1_000_000_000}), "/instances"),
            (json!({"id": "/a", "cmd": "x", "instances": 1.5}), "/instances"),
            (json!({"id": "/a", "cmd": "x", "env": {"A": 1}}), "/env/A"),
            (json!({"id": "/a", "cmd": "x", "env": {"A": {"secret": "s"}}}), "/env/A"),
            (json!({"id": "/a", "cmd": "x", "labels": []}), "/labels"),
            (json!({"id": "/a", "cmd": "x", "user": ""}), "/user"),
            (json!({"id": "/a", "cmd": "x", "acceptedResourceRoles": ["*", "*"]}), "/acceptedResourceRoles"),
            (json!({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 70000}]}), "/portDefinitions(0)/port"),
            (
                json!({"id": "/a", "cmd": "x", "portDefinitions": [{"protocol": "sctp"}]}),
                "/portDefinitions(0)/protocol",
            ),
            (json!({"id": "/a", "cmd": "x", "portDefinitions": [{"name": "A B"}]}), "/portDefinitions(0)/name"),
            (json!({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 1}, {"port": 1}]}), "/portDefinitions"),
            (json!({"id": "/a", "cmd": "x", "ports": [1], "portDefinitions": [{"port": 2}]}), "/ports"),
            (json!({"id": "/a", "cmd": "x", "requirePorts": "yes"}), "/requirePorts"),
            (json!({"id": "/a", "cmd": "x", "constraints": [["hostname"]]}), "/constraints(0)"),
            (json!({"id": "/a", "cmd": "x", "constraints": [["hostname", "NEAR"]]}), "/constraints(0)"),
            (json!({"id": "/a", "cmd": "x", "constraints": [["hostname", "LIKE", "("]]}), "/constraints(0)"),
            (json!({"id": "/a", "cmd": "x", "constraints": [["rack", "MAX_PER", "x"]]}), "/constraints(0)"),
            (json!({"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "GRPC"}]}), "/healthChecks(0)/protocol"),
            (json!({"id": "/a", "cmd": "x", "healthChecks": [{"portIndex": 1}]}), "/healthChecks(0)/portIndex"),
            (json!({"id": "/a", "cmd": "x", "healthChecks": [{"portIndex": 0, "port": 80}]}), "/healthChecks(0)/port"),
            (
                json!({"id": "/a", "cmd": "x", "healthChecks": [{"intervalSeconds": 0}]}),
                "/healthChecks(0)/intervalSeconds",
            ),
            (json!({"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "COMMAND"}]}), "/healthChecks(0)/command"),
            (json!({"id": "/a", "cmd": "x", "healthChecks": [{"path": "health"}]}), "/healthChecks(0)/path"),
            (json!({"id": "/a", "cmd": "x", "healthChecks": [{"timeout": 3}]}), "/healthChecks(0)/timeout"),
            (json!({"id": "/a", "cmd": "x", "healthChecks": [{}, {}]}), "/healthChecks"),
            (
                json!({"id": "/a", "cmd": "x", "portDefinitions": [], "healthChecks": [{"protocol": "TCP"}]}),
                "/healthChecks(0)/portIndex",
            ),
            (json!({"id": "/a", "cmd": "x", "readinessChecks": [{}]}), "/readinessChecks(0)/portName"),
            (
                json!({"id": "/a", "cmd": "x", "portDefinitions": [{"name": "http-api"}],
                    "readinessChecks": [{"timeoutSeconds": 40}]}),
                "/readinessChecks(0)/timeoutSeconds",
            ),
            (
                json!({"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 1.5}}),
                "/upgradeStrategy/minimumHealthCapacity",
            ),
            (json!({"id": "/a", "cmd": "x", "upgradeStrategy": {"min": 1}}), "/upgradeStrategy/min"),
            (json!({"id": "/a", "cmd": "x", "backoffFactor": 0.5}), "/backoffFactor"),
            (json!({"id": "/a", "cmd": "x", "backoffSeconds": -1}), "/backoffSeconds"),
            (json!({"id": "/a", "cmd": "x", "maxLaunchDelaySeconds": "300"}), "/maxLaunchDelaySeconds"),
            (json!({"id": "/a", "cmd": "x", "killSelection": "RANDOM"}), "/killSelection"),
            (json!({"id": "/a", "cmd": "x", "unreachableStrategy": "off"}), "/unreachableStrategy"),
            (
                json!({"id": "/a", "cmd": "x", "unreachableStrategy": {"inactiveAfterSeconds": 10, "expungeAfterSeconds": 5}}),
                "/unreachableStrategy/inactiveAfterSeconds",
            ),
            (json!({"id": "/a", "cmd": "x", "taskKillGracePeriodSeconds": -3}), "/taskKillGracePeriodSeconds"),
            (json!({"id": "/a", "cmd": "x", "dependencies": ["/B"]}), "/dependencies(0)"),
            (json!({"id": "/a", "cmd": "x", "dependencies": ["/a"]}), "/dependencies(0)"),
            (json!({"id": "/a", "cmd": "x", "deploymentTimeoutSeconds": 0}), "/deploymentTimeoutSeconds"),
            (json!({"id": "/a", "cmd": "x", "colour": "blue"}), "/colour"),
            (json!({"id": "/a", "cmd": "x", "container": {"type": "DOCKER"}}), "/container"),
            (json!({"id": "/a", "cmd": "x", "fetch": [{"uri": "ftp://x/a.tgz"}]}), "/fetch(0)/uri"),
            (
                json!({"id": "/a", "cmd": "x", "fetch": [{"uri": "http://x/a", "outputFile": "../a"}]}),
                "/fetch(0)/outputFile",
            ),
            (json!({"id": "/a", "cmd": "x", "fetch": [{"uri": "http://x/a", "size": 3}]}), "/fetch(0)/size"),
            (json!({"id": "/a", "cmd": "x", "fetch": [{"executable": true}]}), "/fetch(0)/uri"),
            (json!({"id": "/a", "cmd": "x", "uris": ["http://x/a.tgz"], "fetch": [{"uri": "http://x/b"}]}), "/uris"),
            (json!({"id": "/a", "cmd": "x", "uris": ["relative/a.tgz"]}), "/uris(0)"),
            (json!({"id": "/a", "cmd": "x", "gpus": 1}), "/gpus"),
            (json!({"id": "/a", "cmd": "x", "cmd2": "x", "args": []}), "/cmd2"),
            (json!({"id": "/a", "cmd": "x".repeat(MAX_CMD_LEN + 1)}), "/cmd"),
            (json!({"id": "/a", "cmd": "x", "role": "a b"}), "/role"),
        ];
        for (body, path) in cases {
            let found = paths(body.clone());
            assert!(found.contains(&path.to_owned()), "{body} should name {path}, named {found:?}");
        }
    }

    #[test]
    fn fields_marathon_shows_are_accepted_back_when_empty_or_read_only() {
        let spec = parse(json!({
            "id": "/a", "cmd": "x", "args": [], "container": null, "fetch": [], "uris": [], "storeUrls": [],
            "secrets": {}, "gpus": 0, "executor": "", "networks": [{"mode": "host"}], "tty": false,
            "version": "2015-02-11T09:31:25.123Z", "versionInfo": {"lastScalingAt": "x"},
            "tasks": [{"id": "t"}], "tasksRunning": 3, "deployments": [{"id": "d"}], "lastTaskFailure": {},
            "ipAddress": null, "residency": null
        }));
        assert!(spec.is_ok(), "{spec:?}");
    }

    #[test]
    fn an_id_in_the_body_must_match_the_url() {
        let url = PathId::parse("/a").expect("valid");
        let cx = AppContext { url_id: Some(&url), ..AppContext::top(None) };
        let mut problems = Problems::new();
        assert!(parse_app(&json!({"id": "/b", "cmd": "x"}), &cx, &mut problems).is_none());
        assert_eq!(problems.grouped()[0].0, "/id");
        let spec = parse_app(&json!({"cmd": "x"}), &cx, &mut Problems::new()).expect("valid");
        assert_eq!(spec.id, url);
    }

    #[test]
    fn dependencies_resolve_relative_to_the_apps_group() {
        let spec =
            parse(json!({"id": "/shop/web", "cmd": "x", "dependencies": ["db", "../infra/dns"]})).expect("valid");
        let deps: Vec<&str> = spec.dependencies.iter().map(PathId::as_str).collect();
        assert_eq!(deps, ["/shop/db", "/infra/dns"]);
    }

    #[test]
    fn a_partial_update_replaces_only_the_given_fields() {
        let current = json!({"id": "/a", "cmd": "x", "instances": 2, "env": {"A": "1"}, "cpus": 0.5});
        let update = json!({"instances": 5, "args": ["y"], "version": "2015-02-11T09:31:25.123Z", "env": null});
        let merged = merge_update(current.as_object().expect("object").clone(), update.as_object().expect("object"));
        assert_eq!(Value::Object(merged), json!({"id": "/a", "instances": 5, "args": ["y"], "cpus": 0.5}));
    }

    #[test]
    fn a_body_with_only_a_version_is_a_rollback() {
        let only = json!({"id": "/a", "version": "2015-02-11T09:31:25.123Z"});
        assert!(rollback_version(only.as_object().expect("object")).is_some());
        let more = json!({"version": "2015-02-11T09:31:25.123Z", "cmd": "x"});
        assert!(rollback_version(more.as_object().expect("object")).is_none());
    }
}
