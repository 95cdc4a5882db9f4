//! Our model rendered as Marathon shows it: apps (with their embeds), tasks, deployments,
//! groups, the launch queue and `/v2/info`.
//!
//! Views borrow from the planner, or from the committed view of it that listings read off
//! the owner task ([`AppReads`] covers both), and serialize straight into the response
//! body, so that `GET /v2/apps?embed=apps.tasks` over 50,000 tasks copies nothing but
//! bytes. Only keys
//! that marathon-python 0.13's models accept are emitted (it builds each model with
//! `cls(**json)` and fails on a key it does not know).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use agora_proto::model::{FetchUri, TaskState};
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};

use crate::core::{Planner, QueueEntry};
use crate::model::{
    ActionKind, AppCommand, AppId, AppRecord, AppSpec, CheckPort, Constraint, ConstraintOp, Deployment, DeploymentId,
    GroupId, GroupRecord, HealthCheckSpec, HealthProtocol, Instance, KillSelection, PathId, PortDefinition,
    ReadinessCheckSpec, TaskFailure, Timestamp, UnreachableStrategy,
};

/// A timestamp in Marathon's form, `2015-02-11T09:31:25.123Z`, written without an
/// intermediate `String`.
#[derive(Clone, Copy, Debug)]
pub struct Ts(pub Timestamp);

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 24];
        s.serialize_str(format_ts(self.0, &mut buf))
    }
}

/// `Timestamp`'s `Display`, written by hand into `buf`: a listing shows three times per
/// task, and `fmt`'s machinery was most of the cost of rendering 50,000 tasks. Years
/// beyond 9999 fall back to `Display`'s form (never shorter than 24 bytes here).
pub fn format_ts(t: Timestamp, buf: &mut [u8; 24]) -> &str {
    let seconds = t.0 / 1_000;
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    if !(0..=9999).contains(&year) {
        let text = t.to_string();
        let n = text.len().min(24);
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        return std::str::from_utf8(&buf[..n]).unwrap_or("");
    }
    let in_day = seconds % 86_400;
    let mut put = |at: usize, value: u64, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u64, 4);
    put(5, u64::from(month), 2);
    put(8, u64::from(day), 2);
    put(11, in_day / 3_600, 2);
    put(14, in_day % 3_600 / 60, 2);
    put(17, in_day % 60, 2);
    put(20, t.0 % 1_000, 3);
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b'T';
    buf[13] = b':';
    buf[16] = b':';
    buf[19] = b'.';
    buf[23] = b'Z';
    // Every byte written is ASCII.
    std::str::from_utf8(&buf[..]).unwrap_or("")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, as `model` uses for `Display`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// What rendering apps reads besides their records: the [`Planner`] itself (on the owner
/// task) or the committed view of it the runtime publishes after each commit (read off
/// the owner, `runtime::CommittedView`). Instances come in task id order within an app.
pub trait AppReads {
    fn app(&self, id: &AppId) -> Option<&AppRecord>;
    /// Every app, in id order.
    fn apps(&self) -> Box<dyn Iterator<Item = &AppRecord> + '_>;
    fn instances_of(&self, id: &AppId) -> Box<dyn Iterator<Item = &Instance> + '_>;
    /// Every instance, grouped by app.
    fn instances_by_app(&self) -> InstancesByApp<'_>;
    /// Every instance, each app's together.
    fn instances(&self) -> Box<dyn Iterator<Item = &Instance> + '_>;
    /// How many instances in all, to size a listing's buffer.
    fn instance_count(&self) -> usize;
    /// The deployment that holds the app, if one does.
    fn deployment_of(&self, id: &AppId) -> Option<&DeploymentId>;
    fn last_task_failure(&self, id: &AppId) -> Option<&TaskFailure>;
    /// The app's tasks as [`write_tasks`] writes them, when they are kept written (the
    /// committed view keeps each app's until the app changes); `None` to write them now.
    fn written_tasks(&self, id: &AppId) -> Option<Bytes> {
        let _ = id;
        None
    }
    /// The app's definition, version and version info as a listing writes them (the JSON
    /// object of [`AppView::record`] without its closing brace), when kept written.
    fn written_definition(&self, id: &AppId) -> Option<Bytes> {
        let _ = id;
        None
    }
    /// Whether instances are kept by app, so that looking an app's up costs nothing: a
    /// listing then does so per app instead of grouping every instance first.
    fn instances_kept_by_app(&self) -> bool {
        false
    }
}

impl AppReads for Planner {
    fn app(&self, id: &AppId) -> Option<&AppRecord> {
        Planner::app(self, id)
    }

    fn apps(&self) -> Box<dyn Iterator<Item = &AppRecord> + '_> {
        Box::new(Planner::apps(self))
    }

    fn instances_of(&self, id: &AppId) -> Box<dyn Iterator<Item = &Instance> + '_> {
        Box::new(Planner::instances_of(self, id))
    }

    fn instances_by_app(&self) -> InstancesByApp<'_> {
        InstancesByApp::new(self)
    }

    fn instances(&self) -> Box<dyn Iterator<Item = &Instance> + '_> {
        Box::new(Planner::instances(self))
    }

    fn instance_count(&self) -> usize {
        Planner::instances(self).size_hint().0
    }

    fn deployment_of(&self, id: &AppId) -> Option<&DeploymentId> {
        Planner::deployment_of(self, id).map(|d| &d.id)
    }

    fn last_task_failure(&self, id: &AppId) -> Option<&TaskFailure> {
        Planner::last_task_failure(self, id)
    }
}

/// Every instance grouped by app, in one pass over the planner's instances (in task id
/// order, so each app's are in the order `instances_of` gives). A listing of 1,000 apps
/// looks each app up here instead of looking up 50,000 task ids one by one.
#[derive(Debug, Default)]
pub struct InstancesByApp<'a> {
    apps: BTreeMap<&'a PathId, Vec<&'a Instance>>,
}

impl<'a> InstancesByApp<'a> {
    pub fn new(planner: &'a Planner) -> Self {
        let mut apps: BTreeMap<&'a PathId, Vec<&'a Instance>> = BTreeMap::new();
        let mut current: Option<(&'a PathId, Vec<&'a Instance>)> = None;
        for instance in planner.instances() {
            match &mut current {
                // Instances of one app are mostly adjacent (task ids start with the app).
                Some((app, list)) if *app == &instance.app_id => list.push(instance),
                _ => {
                    if let Some((app, list)) = current.take() {
                        apps.entry(app).or_default().extend(list);
                    }
                    current = Some((&instance.app_id, vec![instance]));
                }
            }
        }
        if let Some((app, list)) = current {
            apps.entry(app).or_default().extend(list);
        }
        Self { apps }
    }

    /// Instances already grouped by app (each group in task id order).
    pub fn from_groups(groups: impl Iterator<Item = (&'a PathId, Vec<&'a Instance>)>) -> Self {
        Self { apps: groups.filter(|(_, list)| !list.is_empty()).collect() }
    }

    pub fn of(&self, app: &PathId) -> &[&'a Instance] {
        self.apps.get(app).map_or(&[], Vec::as_slice)
    }
}

/// Which extras an app carries (`embed=apps.tasks`, `app.counts`, ...; Marathon accepts
/// the `apps.`, `app.` and `group.apps.` prefixes and none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Embed {
    pub tasks: bool,
    pub counts: bool,
    pub deployments: bool,
    pub last_task_failure: bool,
    pub readiness: bool,
    pub task_stats: bool,
}

impl Embed {
    /// What `GET /v2/apps/{id}` shows without asking.
    pub const SINGLE_APP: Embed = Embed {
        tasks: true,
        counts: true,
        deployments: true,
        last_task_failure: true,
        readiness: false,
        task_stats: false,
    };

    /// Adds the embeds named by `embed` query values; unknown ones are ignored, as in
    /// Marathon.
    /// Whether showing the app needs its instances.
    pub fn needs_instances(&self) -> bool {
        self.tasks || self.counts || self.readiness || self.task_stats
    }

    pub fn with<'a>(mut self, values: impl IntoIterator<Item = &'a str>) -> Embed {
        for value in values {
            let bare = ["group.apps.", "apps.", "app."].iter().find_map(|p| value.strip_prefix(p)).unwrap_or(value);
            match bare {
                // Marathon's `tasks` also embeds the deployments.
                "tasks" => {
                    self.tasks = true;
                    self.deployments = true;
                }
                "counts" => self.counts = true,
                "deployments" => self.deployments = true,
                "lastTaskFailure" => self.last_task_failure = true,
                "failures" => {
                    self.tasks = true;
                    self.deployments = true;
                    self.last_task_failure = true;
                }
                "readiness" => self.readiness = true,
                "taskStats" => self.task_stats = true,
                _ => {}
            }
        }
        self
    }
}

// ---------------------------------------------------------------------------------------
// Apps
// ---------------------------------------------------------------------------------------

/// An app as Marathon shows it: its definition, version, and the embeds asked for.
#[derive(Debug)]
pub struct AppView<'a> {
    spec: &'a AppSpec,
    version: Option<Timestamp>,
    version_info: Option<(Timestamp, Timestamp)>,
    extras: Option<Extras<'a>>,
}

#[derive(Clone, Copy)]
struct Extras<'a> {
    reads: &'a dyn AppReads,
    embed: Embed,
    /// The app's instances when the caller grouped them already (listings).
    instances: Option<&'a [&'a Instance]>,
}

impl std::fmt::Debug for Extras<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras").field("embed", &self.embed).field("instances", &self.instances).finish()
    }
}

impl<'a> AppView<'a> {
    /// An app with what it carries in a listing (`extras` from the planner or the view).
    pub fn new(record: &'a AppRecord, reads: &'a dyn AppReads, embed: Embed) -> Self {
        Self {
            spec: &record.spec,
            version: Some(record.version),
            version_info: Some((record.last_scaling_at, record.last_config_change_at)),
            extras: Some(Extras { reads, embed, instances: None }),
        }
    }

    /// An app in a listing, with its instances from an [`InstancesByApp`].
    pub fn listed(record: &'a AppRecord, reads: &'a dyn AppReads, embed: Embed, index: &'a InstancesByApp<'a>) -> Self {
        let mut view = Self::new(record, reads, embed);
        view.extras = Some(Extras { reads, embed, instances: Some(index.of(&record.spec.id)) });
        view
    }

    /// The definition with its version and version info, nothing embedded.
    pub fn record(record: &'a AppRecord) -> Self {
        Self {
            spec: &record.spec,
            version: Some(record.version),
            version_info: Some((record.last_scaling_at, record.last_config_change_at)),
            extras: None,
        }
    }

    /// A stored version of the app (`/v2/apps/{id}/versions/{version}`).
    pub fn version(spec: &'a AppSpec, version: Timestamp) -> Self {
        Self { spec, version: Some(version), version_info: None, extras: None }
    }

    /// Only what the user defined: the base a partial update is merged into.
    pub fn definition(spec: &'a AppSpec) -> Self {
        Self { spec, version: None, version_info: None, extras: None }
    }
}

/// The definition of `spec` as a JSON object, for merging a partial update into it.
pub fn definition_json(spec: &AppSpec) -> Map<String, Value> {
    match serde_json::to_value(AppView::definition(spec)) {
        Ok(Value::Object(map)) => map,
        // An AppView always serializes to an object; an empty base only loses defaults.
        _ => Map::new(),
    }
}

fn seconds(ms: u64) -> u64 {
    ms / 1_000
}

impl Serialize for AppView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let spec = self.spec;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", spec.id.as_str())?;
        match &spec.command {
            AppCommand::Shell(cmd) => m.serialize_entry("cmd", cmd)?,
            AppCommand::Args(args) => m.serialize_entry("args", args)?,
        }
        if let Some(user) = &spec.user {
            m.serialize_entry("user", user)?;
        }
        if let Some(role) = &spec.role {
            m.serialize_entry("role", role)?;
        }
        m.serialize_entry("env", &spec.env)?;
        m.serialize_entry("instances", &spec.instances)?;
        m.serialize_entry("cpus", &(spec.cpus_milli as f64 / 1_000.0))?;
        m.serialize_entry("mem", &(spec.mem_mib as f64))?;
        m.serialize_entry("disk", &(spec.disk_mib as f64))?;
        m.serialize_entry("constraints", &Constraints(&spec.constraints))?;
        if !spec.accepted_resource_roles.is_empty() {
            m.serialize_entry("acceptedResourceRoles", &spec.accepted_resource_roles)?;
        }
        m.serialize_entry("labels", &spec.labels)?;
        m.serialize_entry("portDefinitions", &PortDefinitions(&spec.port_definitions))?;
        m.serialize_entry("requirePorts", &spec.require_ports)?;
        m.serialize_entry("healthChecks", &HealthChecks(&spec.health_checks))?;
        m.serialize_entry("readinessChecks", &ReadinessChecks(&spec.readiness_checks))?;
        m.serialize_entry("dependencies", &Paths(&spec.dependencies))?;
        m.serialize_entry("fetch", &Fetch(&spec.fetch))?;
        m.serialize_entry(
            "upgradeStrategy",
            &UpgradeView {
                minimum_health_capacity: spec.upgrade_strategy.minimum_health_capacity.as_f64(),
                maximum_over_capacity: spec.upgrade_strategy.maximum_over_capacity.as_f64(),
            },
        )?;
        m.serialize_entry("backoffSeconds", &seconds(spec.backoff.backoff_ms))?;
        m.serialize_entry("backoffFactor", &spec.backoff.factor.as_f64())?;
        m.serialize_entry("maxLaunchDelaySeconds", &seconds(spec.backoff.max_launch_delay_ms))?;
        m.serialize_entry(
            "killSelection",
            match spec.kill_selection {
                KillSelection::YoungestFirst => "YOUNGEST_FIRST",
                KillSelection::OldestFirst => "OLDEST_FIRST",
            },
        )?;
        m.serialize_entry("unreachableStrategy", &Unreachable(spec.unreachable_strategy))?;
        if let Some(ms) = spec.task_kill_grace_period_ms {
            m.serialize_entry("taskKillGracePeriodSeconds", &seconds(ms))?;
        }
        // Ours, and unknown to Marathon's clients: shown only on apps that set it.
        if let Some(ms) = spec.deployment_timeout_ms {
            m.serialize_entry("deploymentTimeoutSeconds", &seconds(ms))?;
        }
        if let Some(version) = self.version {
            m.serialize_entry("version", &Ts(version))?;
        }
        if let Some((last_scaling_at, last_config_change_at)) = self.version_info {
            m.serialize_entry(
                "versionInfo",
                &VersionInfo { last_scaling_at: Ts(last_scaling_at), last_config_change_at: Ts(last_config_change_at) },
            )?;
        }
        if let Some(extras) = self.extras {
            serialize_extras(&mut m, spec, extras)?;
        }
        m.end()
    }
}

/// An app's extras alone, as one JSON object: a listing writes them after the app's kept
/// definition.
struct ExtrasOnly<'a> {
    spec: &'a AppSpec,
    extras: Extras<'a>,
}

impl Serialize for ExtrasOnly<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        serialize_extras(&mut m, self.spec, self.extras)?;
        m.end()
    }
}

fn serialize_extras<M: SerializeMap>(m: &mut M, spec: &AppSpec, extras: Extras<'_>) -> Result<(), M::Error> {
    let Extras { reads, embed, instances } = extras;
    let looked_up: Vec<&Instance>;
    let instances: &[&Instance] = match instances {
        Some(list) => list,
        None if embed.needs_instances() => {
            looked_up = reads.instances_of(&spec.id).collect();
            &looked_up
        }
        None => &[],
    };
    if embed.counts {
        let counts = TaskCounts::of(instances.iter().copied());
        m.serialize_entry("tasksStaged", &counts.staged)?;
        m.serialize_entry("tasksRunning", &counts.running)?;
        m.serialize_entry("tasksHealthy", &counts.healthy)?;
        m.serialize_entry("tasksUnhealthy", &counts.unhealthy)?;
    }
    if embed.deployments {
        let ids: Vec<IdOnly<'_>> = reads.deployment_of(&spec.id).map(|d| IdOnly { id: &d.0 }).into_iter().collect();
        m.serialize_entry("deployments", &ids)?;
    }
    if embed.tasks {
        m.serialize_entry("tasks", &AppTasks { instances, spec })?;
    }
    if embed.last_task_failure
        && let Some(failure) = reads.last_task_failure(&spec.id)
    {
        m.serialize_entry("lastTaskFailure", &FailureView(failure))?;
    }
    if embed.readiness {
        m.serialize_entry("readinessCheckResults", &ReadinessResults { instances, spec })?;
    }
    if embed.task_stats {
        let counts = TaskCounts::of(instances.iter().copied());
        m.serialize_entry("taskStats", &TaskStatsView { total_summary: StatsView { stats: CountsOnly { counts } } })?;
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpgradeView {
    minimum_health_capacity: f64,
    maximum_over_capacity: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionInfo {
    last_scaling_at: Ts,
    last_config_change_at: Ts,
}

#[derive(Serialize)]
struct IdOnly<'a> {
    id: &'a str,
}

struct Paths<'a>(&'a [PathId]);

impl Serialize for Paths<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(PathId::as_str))
    }
}

struct Constraints<'a>(&'a [Constraint]);

impl Serialize for Constraints<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for c in self.0 {
            let op = match c.op {
                ConstraintOp::Unique => "UNIQUE",
                ConstraintOp::Cluster => "CLUSTER",
                ConstraintOp::GroupBy => "GROUP_BY",
                ConstraintOp::Like => "LIKE",
                ConstraintOp::Unlike => "UNLIKE",
                ConstraintOp::MaxPer => "MAX_PER",
                ConstraintOp::Is => "IS",
            };
            match &c.value {
                Some(value) => seq.serialize_element(&[c.field.as_str(), op, value.as_str()])?,
                None => seq.serialize_element(&[c.field.as_str(), op])?,
            }
        }
        seq.end()
    }
}

struct PortDefinitions<'a>(&'a [PortDefinition]);

impl Serialize for PortDefinitions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct One<'a> {
            port: u16,
            protocol: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
            labels: &'a BTreeMap<String, String>,
        }
        s.collect_seq(self.0.iter().map(|p| One {
            port: p.port,
            protocol: &p.protocol,
            name: p.name.as_deref(),
            labels: &p.labels,
        }))
    }
}

struct HealthChecks<'a>(&'a [HealthCheckSpec]);

impl Serialize for HealthChecks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(HealthView))
    }
}

/// One health check as Marathon shows it.
#[derive(Debug)]
pub struct HealthView<'a>(pub &'a HealthCheckSpec);

impl Serialize for HealthView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.0;
        let mut m = s.serialize_map(None)?;
        let (protocol, path, command) = match &h.protocol {
            HealthProtocol::Http { path } => ("HTTP", Some(path), None),
            HealthProtocol::Https { path } => ("HTTPS", Some(path), None),
            HealthProtocol::Tcp => ("TCP", None, None),
            HealthProtocol::Command { shell } => ("COMMAND", None, Some(shell)),
        };
        m.serialize_entry("protocol", protocol)?;
        if let Some(path) = path {
            m.serialize_entry("path", path)?;
        }
        if let Some(shell) = command {
            m.serialize_entry("command", &CommandValue { value: shell })?;
        }
        match &h.port {
            Some(CheckPort::Index(i)) => m.serialize_entry("portIndex", i)?,
            Some(CheckPort::Number(n)) => m.serialize_entry("port", n)?,
            // Health checks never name a port; the model allows it for readiness checks.
            Some(CheckPort::Name(_)) | None => {}
        }
        m.serialize_entry("gracePeriodSeconds", &h.grace_period_s)?;
        m.serialize_entry("intervalSeconds", &h.interval_s)?;
        m.serialize_entry("timeoutSeconds", &h.timeout_s)?;
        m.serialize_entry("maxConsecutiveFailures", &h.max_consecutive_failures)?;
        m.serialize_entry("delaySeconds", &h.delay_s)?;
        if path.is_some() {
            m.serialize_entry("ignoreHttp1xx", &h.ignore_http1xx)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct CommandValue<'a> {
    value: &'a str,
}

/// `fetch`, as Marathon shows it (`outputFile` only when set).
struct Fetch<'a>(&'a [FetchUri]);

impl Serialize for Fetch<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct One<'a> {
            uri: &'a str,
            extract: bool,
            executable: bool,
            cache: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            output_file: Option<&'a str>,
        }
        s.collect_seq(self.0.iter().map(|f| One {
            uri: &f.uri,
            extract: f.extract,
            executable: f.executable,
            cache: f.cache,
            output_file: f.output_file.as_deref(),
        }))
    }
}

struct ReadinessChecks<'a>(&'a [ReadinessCheckSpec]);

impl Serialize for ReadinessChecks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct One<'a> {
            name: &'a str,
            protocol: &'a str,
            path: &'a str,
            port_name: &'a str,
            interval_seconds: u32,
            timeout_seconds: u32,
            http_status_codes_for_ready: &'a [u16],
            preserve_last_response: bool,
        }
        s.collect_seq(self.0.iter().map(|r| One {
            name: &r.name,
            protocol: if r.https { "HTTPS" } else { "HTTP" },
            path: &r.path,
            port_name: &r.port_name,
            interval_seconds: r.interval_s,
            timeout_seconds: r.timeout_s,
            http_status_codes_for_ready: &r.http_status_codes_for_ready,
            preserve_last_response: r.preserve_last_response,
        }))
    }
}

struct Unreachable(UnreachableStrategy);

impl Serialize for Unreachable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            UnreachableStrategy::Disabled => s.serialize_str("disabled"),
            UnreachableStrategy::Enabled { inactive_after_ms, expunge_after_ms } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("inactiveAfterSeconds", &seconds(inactive_after_ms))?;
                m.serialize_entry("expungeAfterSeconds", &seconds(expunge_after_ms))?;
                m.end()
            }
        }
    }
}

/// Marathon's task counts of an app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    pub staged: u32,
    pub running: u32,
    pub healthy: u32,
    pub unhealthy: u32,
}

impl TaskCounts {
    pub fn of<'a>(instances: impl Iterator<Item = &'a Instance>) -> TaskCounts {
        let mut counts = TaskCounts::default();
        for instance in instances {
            match instance.state {
                TaskState::TaskStaging | TaskState::TaskStarting => counts.staged += 1,
                TaskState::TaskRunning => counts.running += 1,
                _ => {}
            }
            match instance.healthy {
                Some(true) => counts.healthy += 1,
                Some(false) => counts.unhealthy += 1,
                None => {}
            }
        }
        counts
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskStatsView {
    total_summary: StatsView,
}

#[derive(Serialize)]
struct StatsView {
    stats: CountsOnly,
}

#[derive(Serialize)]
struct CountsOnly {
    counts: TaskCounts,
}

struct AppTasks<'a> {
    instances: &'a [&'a Instance],
    spec: &'a AppSpec,
}

impl Serialize for AppTasks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.instances.iter().map(|i| TaskView { instance: i, app: Some(self.spec) }))
    }
}

/// One task's readiness, as in `readinessCheckResults`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadinessResult<'a> {
    name: &'a str,
    task_id: &'a str,
    ready: bool,
}

struct ReadinessResults<'a> {
    instances: &'a [&'a Instance],
    spec: &'a AppSpec,
}

impl Serialize for ReadinessResults<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for check in &self.spec.readiness_checks {
            for instance in self.instances {
                seq.serialize_element(&ReadinessResult {
                    name: &check.name,
                    task_id: instance.task_id.as_str(),
                    ready: instance.ready,
                })?;
            }
        }
        seq.end()
    }
}

/// A task as Marathon shows it in `/v2/tasks`, `/v2/apps/{id}/tasks` and embedded in
/// apps. `app` gives the service ports and whether health results are shown.
#[derive(Debug)]
pub struct TaskView<'a> {
    pub instance: &'a Instance,
    pub app: Option<&'a AppSpec>,
}

impl Serialize for TaskView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = self.instance;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", i.task_id.as_str())?;
        m.serialize_entry("appId", i.app_id.as_str())?;
        m.serialize_entry("host", &i.host)?;
        m.serialize_entry("ports", &i.ports)?;
        let service_ports: &[PortDefinition] = self.app.map_or(&[], |a| &a.port_definitions);
        m.serialize_entry("servicePorts", &ServicePorts(service_ports))?;
        m.serialize_entry("slaveId", i.agent_id.as_str())?;
        m.serialize_entry("state", i.state.as_str())?;
        m.serialize_entry("stagedAt", &Ts(i.staged_at))?;
        if let Some(started) = i.started_at {
            m.serialize_entry("startedAt", &Ts(started))?;
        }
        m.serialize_entry("version", &Ts(i.app_version))?;
        m.serialize_entry("ipAddresses", &[(); 0])?;
        if let Some(alive) = i.healthy
            && self.app.is_none_or(|a| !a.health_checks.is_empty())
        {
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Result<'a> {
                alive: bool,
                task_id: &'a str,
                instance_id: &'a str,
            }
            let id = i.task_id.as_str();
            m.serialize_entry("healthCheckResults", &[Result { alive, task_id: id, instance_id: id }])?;
        }
        m.end()
    }
}

struct ServicePorts<'a>(&'a [PortDefinition]);

impl Serialize for ServicePorts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| p.port))
    }
}

struct FailureView<'a>(&'a TaskFailure);

impl Serialize for FailureView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("appId", f.app_id.as_str())?;
        m.serialize_entry("host", &f.host)?;
        m.serialize_entry("message", &f.message)?;
        m.serialize_entry("state", f.state.as_str())?;
        m.serialize_entry("taskId", f.task_id.as_str())?;
        m.serialize_entry("timestamp", &Ts(f.timestamp))?;
        m.serialize_entry("version", &Ts(f.version))?;
        m.end()
    }
}

// ---------------------------------------------------------------------------------------
// Listings of tens of thousands of tasks, written by hand
// ---------------------------------------------------------------------------------------
//
// `GET /v2/apps?embed=apps.tasks` and `GET /v2/tasks` over 50,000 tasks spent a third of
// their time in serde_json checking every byte of every key and id for characters to
// escape. Tasks in listings are written here directly: keys as literals, strings checked
// 16 bytes at a time and copied when nothing needs escaping (serde_json escapes the rest).
// The output is the same as `TaskView`'s `Serialize` (pinned by a test).

/// Writes `s` as a JSON string.
fn push_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let plain =
        bytes.chunks(16).all(|chunk| chunk.iter().fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\')));
    if plain {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut v = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

fn push_ts(out: &mut Vec<u8>, t: Timestamp) {
    let mut buf = [0u8; 24];
    out.push(b'"');
    out.extend_from_slice(format_ts(t, &mut buf).as_bytes());
    out.push(b'"');
}

fn push_ports(out: &mut Vec<u8>, ports: impl Iterator<Item = u16>) {
    out.push(b'[');
    for (n, port) in ports.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        push_u64(out, u64::from(port));
    }
    out.push(b']');
}

impl TaskView<'_> {
    /// This task's JSON, as `Serialize` writes it, appended to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let i = self.instance;
        out.extend_from_slice(b"{\"id\":");
        push_str(out, i.task_id.as_str());
        out.extend_from_slice(b",\"appId\":");
        push_str(out, i.app_id.as_str());
        out.extend_from_slice(b",\"host\":");
        push_str(out, &i.host);
        out.extend_from_slice(b",\"ports\":");
        push_ports(out, i.ports.iter().copied());
        out.extend_from_slice(b",\"servicePorts\":");
        push_ports(out, self.app.map_or(&[][..], |a| &a.port_definitions).iter().map(|p| p.port));
        out.extend_from_slice(b",\"slaveId\":");
        push_str(out, i.agent_id.as_str());
        out.extend_from_slice(b",\"state\":");
        push_str(out, i.state.as_str());
        out.extend_from_slice(b",\"stagedAt\":");
        push_ts(out, i.staged_at);
        if let Some(started) = i.started_at {
            out.extend_from_slice(b",\"startedAt\":");
            push_ts(out, started);
        }
        out.extend_from_slice(b",\"version\":");
        push_ts(out, i.app_version);
        out.extend_from_slice(b",\"ipAddresses\":[]");
        if let Some(alive) = i.healthy
            && self.app.is_none_or(|a| !a.health_checks.is_empty())
        {
            out.extend_from_slice(if alive {
                b",\"healthCheckResults\":[{\"alive\":true,\"taskId\":"
            } else {
                b",\"healthCheckResults\":[{\"alive\":false,\"taskId\":"
            });
            push_str(out, i.task_id.as_str());
            out.extend_from_slice(b",\"instanceId\":");
            push_str(out, i.task_id.as_str());
            out.extend_from_slice(b"}]");
        }
        out.push(b'}');
    }
}

/// `{"tasks": [...]}`.
pub fn write_task_list<'a>(out: &mut Vec<u8>, tasks: impl IntoIterator<Item = TaskView<'a>>) {
    out.extend_from_slice(b"{\"tasks\":[");
    for (n, task) in tasks.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        task.write_json(out);
    }
    out.extend_from_slice(b"]}");
}

/// An app's tasks as listings show them, comma-separated (without the brackets).
pub fn write_tasks<'a>(out: &mut Vec<u8>, instances: impl Iterator<Item = &'a Instance>, spec: &AppSpec) {
    for (k, instance) in instances.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        TaskView { instance, app: Some(spec) }.write_json(out);
    }
}

/// A body written in pieces: what is written here is gathered into buffers, and kept
/// pieces (an app's written tasks) join as they are, shared rather than copied. A listing
/// of 50,000 tasks is 20 MiB; copying the unchanged apps' into one buffer was most of its
/// cost.
#[derive(Debug, Default)]
pub struct Pieces {
    done: Vec<Bytes>,
    current: Vec<u8>,
    len: usize,
}

impl Pieces {
    /// Adds a kept piece after what was written so far.
    pub fn push_shared(&mut self, piece: Bytes) {
        self.seal();
        self.len += piece.len();
        self.done.push(piece);
    }

    fn seal(&mut self) {
        if !self.current.is_empty() {
            self.len += self.current.len();
            self.done.push(Bytes::from(std::mem::take(&mut self.current)));
        }
    }

    /// Removes the last byte written if it is `byte` (and not yet sealed); whether it was.
    fn pop_if(&mut self, byte: u8) -> bool {
        let last = self.current.last() == Some(&byte);
        if last {
            self.current.pop();
        }
        last
    }

    /// The pieces, in order, and their total length.
    pub fn finish(mut self) -> (Vec<Bytes>, usize) {
        self.seal();
        (self.done, self.len)
    }

    /// The whole body in one buffer.
    pub fn concat(self) -> Vec<u8> {
        let (pieces, len) = self.finish();
        let mut out = Vec::with_capacity(len);
        for piece in pieces {
            out.extend_from_slice(&piece);
        }
        out
    }
}

impl std::io::Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.current.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `{"apps": [...]}` for `GET /v2/apps`: the apps `select` keeps, with `embed`.
pub fn write_app_list(
    out: &mut Pieces,
    reads: &dyn AppReads,
    embed: Embed,
    select: impl Fn(&AppSpec) -> bool,
) -> serde_json::Result<()> {
    // Each app is its definition (kept written, or through serde), its extras through
    // serde, and its tasks (kept written, or by hand), in one JSON object, as
    // `AppView::new` would write it.
    let kept_by_app = reads.instances_kept_by_app();
    let index = if kept_by_app { InstancesByApp::default() } else { reads.instances_by_app() };
    let mut looked_up: Vec<&Instance> = Vec::new();
    // The extras in `serialize_extras`' order: those before the tasks, then those after.
    let before_tasks = Embed { counts: embed.counts, deployments: embed.deployments, ..Embed::default() };
    let after_tasks = Embed { tasks: false, counts: false, deployments: false, ..embed };
    out.current.extend_from_slice(b"{\"apps\":[");
    for (n, record) in reads.apps().filter(|r| select(&r.spec)).enumerate() {
        if n > 0 {
            out.current.push(b',');
        }
        let id = &record.spec.id;
        let instances: &[&Instance] = if kept_by_app {
            looked_up.clear();
            looked_up.extend(reads.instances_of(id));
            &looked_up
        } else {
            index.of(id)
        };
        match reads.written_definition(id) {
            Some(written) => out.push_shared(written),
            None => {
                serde_json::to_writer(&mut *out, &AppView::record(record))?;
                out.pop_if(b'}');
            }
        }
        let extras = Extras { reads, embed: before_tasks, instances: Some(instances) };
        continue_object(out, &ExtrasOnly { spec: &record.spec, extras })?;
        if embed.tasks {
            out.current.extend_from_slice(b",\"tasks\":[");
            match reads.written_tasks(id) {
                Some(written) => out.push_shared(written),
                None => write_tasks(&mut out.current, instances.iter().copied(), &record.spec),
            }
            out.current.push(b']');
        }
        let extras = Extras { reads, embed: after_tasks, instances: Some(instances) };
        continue_object(out, &ExtrasOnly { spec: &record.spec, extras })?;
        out.current.push(b'}');
    }
    out.current.extend_from_slice(b"]}");
    Ok(())
}

/// Writes the entries of the JSON object `value` serializes to as the continuation of an
/// object being written (`,"a":1,"b":2`; nothing for `{}`).
fn continue_object(out: &mut Pieces, value: &impl Serialize) -> serde_json::Result<()> {
    let start = out.current.len();
    serde_json::to_writer(&mut *out, value)?;
    if out.current.len() - start <= 2 {
        out.current.truncate(start);
    } else {
        out.current[start] = b',';
        out.current.pop();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------------------

pub fn action_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::StartApplication => "StartApplication",
        ActionKind::ScaleApplication => "ScaleApplication",
        ActionKind::RestartApplication => "RestartApplication",
        ActionKind::StopApplication => "StopApplication",
        ActionKind::ResolveArtifacts => "ResolveArtifacts",
    }
}

#[derive(Serialize)]
struct ActionView<'a> {
    action: &'static str,
    app: &'a str,
}

/// A deployment step: `{"actions": [{"action": ..., "app": ...}]}`.
#[derive(Debug)]
pub struct StepView<'a>(pub &'a crate::model::DeploymentStep);

impl Serialize for StepView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Actions<'a> {
            actions: Vec<ActionView<'a>>,
        }
        Actions {
            actions: self
                .0
                .actions
                .iter()
                .map(|a| ActionView { action: action_name(a.kind), app: a.app.as_str() })
                .collect(),
        }
        .serialize(s)
    }
}

/// A deployment as `/v2/deployments` shows it. Marathon's `currentStep` counts from 1.
#[derive(Debug)]
pub struct DeploymentView<'a> {
    pub deployment: &'a Deployment,
    pub planner: Option<&'a Planner>,
}

impl Serialize for DeploymentView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct CurrentAction<'a> {
            action: &'static str,
            app: &'a str,
            readiness_check_results: Vec<ReadinessResult<'a>>,
        }
        let d = self.deployment;
        let total = d.steps.len();
        let current = d.steps.get(d.current_step);
        let current_actions: Vec<CurrentAction<'_>> = current
            .map(|step| {
                step.actions
                    .iter()
                    .map(|a| CurrentAction {
                        action: action_name(a.kind),
                        app: a.app.as_str(),
                        readiness_check_results: self.readiness(a),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &d.id.0)?;
        m.serialize_entry("version", &Ts(d.version))?;
        m.serialize_entry("affectedApps", &Paths(&d.target.keys().cloned().collect::<Vec<_>>()))?;
        m.serialize_entry("affectedPods", &[(); 0])?;
        m.serialize_entry("steps", &d.steps.iter().map(StepView).collect::<Vec<_>>())?;
        m.serialize_entry("currentActions", &current_actions)?;
        m.serialize_entry("currentStep", &(d.current_step + 1).min(total.max(1)))?;
        m.serialize_entry("totalSteps", &total)?;
        m.end()
    }
}

impl<'a> DeploymentView<'a> {
    fn readiness(&self, action: &'a crate::model::DeploymentAction) -> Vec<ReadinessResult<'a>> {
        let mut out = Vec::new();
        let (Some(planner), Some(Some(target))) = (self.planner, self.deployment.target.get(&action.app)) else {
            return out;
        };
        for check in &target.readiness_checks {
            for instance in planner.instances_of(&action.app) {
                if instance.state == TaskState::TaskRunning && instance.killing_since.is_none() {
                    out.push(ReadinessResult {
                        name: &check.name,
                        task_id: instance.task_id.as_str(),
                        ready: instance.ready,
                    });
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------

/// Which parts a group shows (`embed=group.groups`, `group.apps`, plus app embeds as
/// `group.apps.tasks`); Marathon shows groups and apps when nothing is asked.
#[derive(Clone, Copy, Debug)]
pub struct GroupEmbed {
    pub groups: bool,
    pub apps: bool,
    pub app: Embed,
}

impl GroupEmbed {
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str> + Clone) -> GroupEmbed {
        let mut any = false;
        let mut embed = GroupEmbed { groups: false, apps: false, app: Embed::default() };
        for value in values.clone() {
            any = true;
            match value {
                "group.groups" => embed.groups = true,
                "group.apps" => embed.apps = true,
                v if v.starts_with("group.apps.") => embed.app = embed.app.with([v]),
                _ => {}
            }
        }
        if !any {
            embed.groups = true;
            embed.apps = true;
        }
        embed
    }
}

/// The tree of groups: explicit ones from the planner and those implied by app ids.
#[derive(Debug)]
pub struct GroupTree<'a> {
    planner: &'a Planner,
    nodes: BTreeMap<GroupId, Node<'a>>,
    index: InstancesByApp<'a>,
}

#[derive(Debug, Default)]
struct Node<'a> {
    record: Option<&'a GroupRecord>,
    apps: Vec<&'a AppRecord>,
    groups: BTreeSet<GroupId>,
}

impl<'a> GroupTree<'a> {
    pub fn new(planner: &'a Planner) -> Self {
        let mut nodes: BTreeMap<GroupId, Node<'a>> = BTreeMap::new();
        nodes.entry(PathId::root()).or_default();
        for group in planner.groups() {
            nodes.entry(group.id.clone()).or_default().record = Some(group);
            link(&mut nodes, &group.id);
        }
        for app in planner.apps() {
            let parent = app.spec.id.parent();
            nodes.entry(parent.clone()).or_default().apps.push(app);
            link(&mut nodes, &parent);
        }
        Self { planner, nodes, index: InstancesByApp::default() }
    }

    /// Groups the instances by app once, for views that embed tasks or counts.
    pub fn with_instances(mut self) -> Self {
        self.index = InstancesByApp::new(self.planner);
        self
    }

    pub fn contains(&self, id: &GroupId) -> bool {
        self.nodes.contains_key(id)
    }

    pub fn view(&'a self, id: &'a GroupId, embed: GroupEmbed) -> GroupView<'a> {
        GroupView { tree: self, id, embed }
    }

    /// A group's version: its own record's, or the latest of what it holds.
    fn version(&self, id: &GroupId) -> Timestamp {
        let Some(node) = self.nodes.get(id) else {
            return Timestamp(0);
        };
        let own = node.record.map_or(Timestamp(0), |r| r.version);
        let apps = node.apps.iter().map(|a| a.version).max().unwrap_or(Timestamp(0));
        let groups = node.groups.iter().map(|g| self.version(g)).max().unwrap_or(Timestamp(0));
        own.max(apps).max(groups)
    }

    /// Every app under `id`, at any depth.
    pub fn apps_under(&self, id: &GroupId) -> Vec<&'a AppRecord> {
        let mut out = Vec::new();
        let mut stack = vec![id.clone()];
        while let Some(g) = stack.pop() {
            if let Some(node) = self.nodes.get(&g) {
                out.extend(node.apps.iter().copied());
                stack.extend(node.groups.iter().cloned());
            }
        }
        out
    }
}

/// Adds `id` to its parents' subgroups, creating the implied groups up to the root.
fn link(nodes: &mut BTreeMap<GroupId, Node<'_>>, id: &GroupId) {
    let mut child = id.clone();
    while !child.is_root() {
        let parent = child.parent();
        let node = nodes.entry(parent.clone()).or_default();
        if !node.groups.insert(child.clone()) {
            return;
        }
        child = parent;
    }
}

#[derive(Debug)]
pub struct GroupView<'a> {
    tree: &'a GroupTree<'a>,
    id: &'a GroupId,
    embed: GroupEmbed,
}

impl Serialize for GroupView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let empty = Node::default();
        let node = self.tree.nodes.get(self.id).unwrap_or(&empty);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", self.id.as_str())?;
        let no_deps: &[PathId] = &[];
        m.serialize_entry("dependencies", &Paths(node.record.map_or(no_deps, |r| &r.dependencies)))?;
        m.serialize_entry("version", &Ts(self.tree.version(self.id)))?;
        // Marathon 1.9's, unknown to marathon-python 0.13 (its groups take no other keys):
        // shown only on groups that set it, like `deploymentTimeoutSeconds` on apps.
        if node.record.is_some_and(|r| r.enforce_role) {
            m.serialize_entry("enforceRole", &true)?;
        }
        if self.embed.apps {
            let planner = self.tree.planner;
            let embed = self.embed.app;
            let apps: Vec<AppView<'_>> =
                node.apps.iter().map(|a| AppView::listed(a, planner, embed, &self.tree.index)).collect();
            m.serialize_entry("apps", &apps)?;
        }
        if self.embed.groups {
            let groups: Vec<GroupView<'_>> =
                node.groups.iter().map(|g| GroupView { tree: self.tree, id: g, embed: self.embed }).collect();
            m.serialize_entry("groups", &groups)?;
        }
        m.serialize_entry("pods", &[(); 0])?;
        m.end()
    }
}

// ---------------------------------------------------------------------------------------
// Queue, info
// ---------------------------------------------------------------------------------------

/// `{"queue": [...]}`: apps waiting for launches.
#[derive(Debug)]
pub struct QueueView<'a> {
    pub planner: &'a Planner,
    pub entries: &'a [QueueEntry],
    pub now_ms: u64,
}

impl Serialize for QueueView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Item<'a> {
            app: AppView<'a>,
            count: u32,
            delay: Delay,
            since: Ts,
            processed_offers_summary: Summary,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Delay {
            time_left_seconds: u64,
            overdue: bool,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Summary {
            processed_offers_count: u64,
            unused_offers_count: u64,
        }
        let items: Vec<Item<'_>> = self
            .entries
            .iter()
            .filter_map(|e| {
                let record = self.planner.app(&e.app)?;
                let left_ms = e.delayed_until.map_or(0, |t| t.ms().saturating_sub(self.now_ms));
                Some(Item {
                    app: AppView::record(record),
                    count: e.count,
                    delay: Delay { time_left_seconds: left_ms.div_ceil(1_000), overdue: left_ms == 0 },
                    since: Ts(e.since),
                    processed_offers_summary: Summary {
                        processed_offers_count: e.offers_processed,
                        unused_offers_count: e.offers_unused,
                    },
                })
            })
            .collect();
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("queue", &items)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shows_enforce_role_only_when_it_is_set() {
        use crate::core::{PlannerConfig, Recovered};
        for enforce_role in [false, true] {
            let group = GroupRecord {
                id: PathId::parse("/shop").expect("valid"),
                dependencies: Vec::new(),
                version: Timestamp(1_000),
                enforce_role,
            };
            let planner =
                Planner::recover(PlannerConfig::default(), Recovered { groups: vec![group], ..Recovered::default() });
            let tree = GroupTree::new(&planner);
            let id = PathId::parse("/shop").expect("valid");
            let shop = serde_json::to_value(tree.view(&id, GroupEmbed::parse([]))).expect("renders");
            assert_eq!(shop.get("enforceRole"), enforce_role.then_some(&Value::Bool(true)), "{shop}");
            let root = PathId::root();
            let root = serde_json::to_value(tree.view(&root, GroupEmbed::parse([]))).expect("renders");
            assert!(root.get("enforceRole").is_none(), "{root}");
            assert_eq!(root["groups"][0]["id"], "/shop");
        }
    }

    #[test]
    fn tasks_written_by_hand_are_what_serde_writes() {
        use agora_proto::model::{AgentId, TaskId};
        let spec_with = |checks: bool| {
            let mut problems = crate::marathon::Problems::new();
            let checks = if checks { serde_json::json!([{"protocol": "TCP"}]) } else { serde_json::json!([]) };
            crate::marathon::app::parse_app(
                &serde_json::json!({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 10001}, {"port": 0}],
                    "healthChecks": checks}),
                &crate::marathon::app::AppContext::top(None),
                &mut problems,
            )
            .expect("valid")
        };
        let (checked, unchecked) = (spec_with(true), spec_with(false));
        let base = Instance {
            task_id: TaskId::from("a.1"),
            app_id: PathId::parse("/a").expect("valid"),
            app_version: Timestamp(1_423_647_085_123),
            agent_id: AgentId::from("agent-\"1\""),
            host: "h\u{1}ost\\é".into(),
            ports: vec![31000, 31001],
            state: TaskState::TaskRunning,
            healthy: Some(false),
            ready: true,
            staged_at: Timestamp(5),
            started_at: Some(Timestamp(6)),
            killing_since: None,
            unreachable_since: None,
            message: String::new(),
        };
        let variants = [
            base.clone(),
            Instance { healthy: Some(true), started_at: None, ports: vec![], ..base.clone() },
            Instance { healthy: None, host: "plain".into(), ..base },
        ];
        for instance in &variants {
            for app in [Some(&checked), Some(&unchecked), None] {
                let view = TaskView { instance, app };
                let mut fast = Vec::new();
                view.write_json(&mut fast);
                let slow = serde_json::to_vec(&view).expect("json");
                assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow));
            }
        }
    }

    #[test]
    fn timestamps_are_written_as_display_writes_them() {
        for ms in [0, 1, 999, 1_423_647_085_123, 951_782_400_000, 4_102_444_799_999, 253_402_300_799_999] {
            let mut buf = [0u8; 24];
            assert_eq!(format_ts(Timestamp(ms), &mut buf), Timestamp(ms).to_string());
        }
    }

    #[test]
    fn embeds_accept_every_prefix_and_tasks_brings_deployments() {
        let e = Embed::default().with(["app.tasks"]);
        assert!(e.tasks && e.deployments && !e.counts);
        let e = Embed::default().with(["apps.counts", "group.apps.lastTaskFailure", "readiness", "bogus"]);
        assert!(e.counts && e.last_task_failure && e.readiness && !e.tasks);
    }
}
