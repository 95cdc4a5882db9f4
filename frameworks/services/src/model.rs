//! The services domain: apps, their versions, instances (tasks), groups and deployments,
//! in our own types. Marathon's JSON names and quirks live in `marathon/`; the planner and
//! the store see only these.
//!
//! Every type here is valid by construction: `marathon::` parses and validates a request
//! into them, and the planner may rely on what the doc comments state (a path is
//! absolute and normalised, `instances` within its bound, ratios in range).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use agora_proto::model::{AgentId, FetchUri, TaskId, TaskState};
use serde::{Deserialize, Serialize};

/// Most instances one app may ask for.
pub const MAX_INSTANCES: u32 = 100_000;
/// Most characters in an app or group id, so that a task id (`<id with _>.<uuid>`) stays
/// within the master's limit on ids.
pub const MAX_PATH_LEN: usize = 200;

// ---------------------------------------------------------------------------------------
// Paths and times
// ---------------------------------------------------------------------------------------

/// An absolute, normalised app or group path: `/`, `/shop`, `/shop/web`.
///
/// Each segment matches Marathon's rule: lower-case letters, digits and `-`, dot-separated
/// labels, starting and ending with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PathId(Arc<str>);

/// Why a path is not a valid id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

impl PathId {
    /// The root group, `/`.
    pub fn root() -> Self {
        Self(Arc::from("/"))
    }

    /// Parses `text` as an absolute path, or as a path relative to `base` (`web`, `../db`,
    /// `./web`), as Marathon resolves ids inside a group. Repeated slashes are tolerated.
    pub fn parse_relative(text: &str, base: &PathId) -> Result<Self, PathError> {
        let mut segments: Vec<&str> = if text.starts_with('/') { Vec::new() } else { base.segments().collect() };
        for segment in text.split('/').filter(|s| !s.is_empty()) {
            match segment {
                "." => {}
                ".." => {
                    if segments.pop().is_none() {
                        return Err(PathError(format!("{text:?} goes above the root group")));
                    }
                }
                _ => {
                    check_segment(segment).map_err(|why| PathError(format!("{text:?}: segment {segment:?} {why}")))?;
                    segments.push(segment);
                }
            }
        }
        let path = format!("/{}", segments.join("/"));
        if path.len() > MAX_PATH_LEN {
            return Err(PathError(format!("{text:?} is longer than {MAX_PATH_LEN} characters")));
        }
        Ok(Self(Arc::from(path)))
    }

    /// Parses an absolute path (a leading `/` is added when missing, as Marathon does).
    pub fn parse(text: &str) -> Result<Self, PathError> {
        Self::parse_relative(text, &Self::root())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        &*self.0 == "/"
    }

    /// The segments, root first; none for `/`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The enclosing group; `/` for a top-level id and for `/` itself.
    pub fn parent(&self) -> PathId {
        match self.0.rfind('/') {
            Some(0) | None => Self::root(),
            Some(i) => Self(Arc::from(&self.0[..i])),
        }
    }

    /// Whether `self` is `other` or one of its ancestors.
    pub fn contains(&self, other: &PathId) -> bool {
        self.is_root() || other.0 == self.0 || other.0.starts_with(&format!("{}/", self.0))
    }

    /// The form used as the prefix of task ids: the segments joined by `_` (`shop_web`).
    pub fn task_prefix(&self) -> String {
        self.segments().collect::<Vec<_>>().join("_")
    }
}

fn check_segment(segment: &str) -> Result<(), &'static str> {
    for label in segment.split('.') {
        let bytes = label.as_bytes();
        let ok_edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if bytes.is_empty() {
            return Err("has an empty label between dots");
        }
        if !bytes.iter().all(|b| ok_edge(b) || *b == b'-') {
            return Err("may hold only lower-case letters, digits, '-' and '.'");
        }
        if !ok_edge(&bytes[0]) || !ok_edge(&bytes[bytes.len() - 1]) {
            return Err("must start and end with a lower-case letter or digit");
        }
    }
    Ok(())
}

impl fmt::Display for PathId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PathId {
    type Error = PathError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PathId> for String {
    fn from(value: PathId) -> Self {
        value.0.as_ref().to_owned()
    }
}

/// An app's id.
pub type AppId = PathId;
/// A group's id.
pub type GroupId = PathId;

/// Milliseconds since the Unix epoch; shown as Marathon shows times and versions,
/// `2015-02-11T09:31:25.123Z`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn ms(self) -> u64 {
        self.0
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff…]Z` (also `+00:00`); fractions beyond milliseconds
    /// are dropped.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let text = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00"))?;
        let (date, time) = text.split_once('T')?;
        let mut date_parts = date.splitn(3, '-');
        let year: i64 = date_parts.next()?.parse().ok()?;
        let month: u32 = date_parts.next()?.parse().ok()?;
        let day: u32 = date_parts.next()?.parse().ok()?;
        let (hms, fraction) = match time.split_once('.') {
            Some((hms, fraction)) => (hms, Some(fraction)),
            None => (time, None),
        };
        let mut time_parts = hms.splitn(3, ':');
        let hour: u64 = time_parts.next()?.parse().ok()?;
        let minute: u64 = time_parts.next()?.parse().ok()?;
        let second: u64 = time_parts.next()?.parse().ok()?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let millis = match fraction {
            None => 0,
            Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
                let digits: String = f.chars().chain("000".chars()).take(3).collect();
                digits.parse::<u64>().ok()?
            }
            Some(_) => return None,
        };
        let days = days_from_civil(year, month, day);
        if days < 0 {
            return None;
        }
        let seconds = days as u64 * 86_400 + hour * 3_600 + minute * 60 + second;
        Some(Timestamp(seconds * 1_000 + millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0 / 1_000;
        let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
        let in_day = seconds % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            in_day / 3_600,
            in_day % 3_600 / 60,
            in_day % 60,
            self.0 % 1_000
        )
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A ratio held as parts per million, so that specs compare exactly and never drift
/// (`0.9` is 900,000).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ppm(pub u32);

impl Ppm {
    pub const ONE: Ppm = Ppm(1_000_000);

    /// The nearest ratio to `value`; `None` when negative, not finite or above 1,000.
    pub fn from_f64(value: f64) -> Option<Ppm> {
        if !value.is_finite() || !(0.0..=1_000.0).contains(&value) {
            return None;
        }
        Some(Ppm((value * 1_000_000.0).round() as u32))
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1_000_000.0
    }

    /// `ceil(n × self)`, exactly.
    pub fn ceil_of(self, n: u32) -> u32 {
        (u64::from(n) * u64::from(self.0)).div_ceil(1_000_000) as u32
    }

    /// `floor(n × self)`, exactly.
    pub fn floor_of(self, n: u32) -> u32 {
        (u64::from(n) * u64::from(self.0) / 1_000_000) as u32
    }
}

// ---------------------------------------------------------------------------------------
// App definitions
// ---------------------------------------------------------------------------------------

/// What an app runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppCommand {
    /// Marathon's `cmd`: run with `/bin/sh -c`.
    Shell(String),
    /// Marathon's `args`: executed directly; never empty.
    Args(Vec<String>),
}

/// One of an app's ports (Marathon's `portDefinitions[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortDefinition {
    /// The service port: 0 asks services to assign one from its range. With
    /// `require_ports`, tasks get exactly this host port.
    pub port: u16,
    /// `tcp`, `udp` or `udp,tcp`.
    pub protocol: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Placement operators (Marathon's constraints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintOp {
    /// Each value of the field at most once across the app's instances.
    Unique,
    /// Only on agents whose field equals the value (or, without a value, all on one value).
    Cluster,
    /// Spread evenly across the field's values (the value, if any, is the expected count).
    GroupBy,
    /// The field matches the regular expression.
    Like,
    /// The field does not match the regular expression.
    Unlike,
    /// At most `value` instances per value of the field.
    MaxPer,
    /// The field equals the value exactly.
    Is,
}

/// `[field, OP, value]`. `field` is `hostname` or an agent attribute's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub field: String,
    pub op: ConstraintOp,
    /// Required for LIKE, UNLIKE, MAX_PER, IS (validated); a regular expression for
    /// LIKE/UNLIKE, anchored at both ends as Marathon does.
    pub value: Option<String>,
}

/// Marathon's health check protocols; all run by the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthProtocol {
    /// `HTTP`/`MESOS_HTTP`.
    Http { path: String },
    /// `HTTPS`/`MESOS_HTTPS`.
    Https { path: String },
    /// `TCP`/`MESOS_TCP`.
    Tcp,
    /// `COMMAND`: `command.value` run in the task's sandbox.
    Command { shell: String },
}

/// Which of the task's ports a check targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckPort {
    /// An index into the task's host ports (`portIndex`).
    Index(u16),
    /// A fixed port number (`port`).
    Number(u16),
    /// A port definition by name (readiness checks' `portName`).
    Name(String),
}

/// An app's health check, as Marathon names it; the planner resolves the port per task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckSpec {
    pub protocol: HealthProtocol,
    /// Resolved to a concrete port per task; `None` for COMMAND.
    pub port: Option<CheckPort>,
    pub grace_period_s: u32,
    pub interval_s: u32,
    pub timeout_s: u32,
    /// 0 never kills.
    pub max_consecutive_failures: u32,
    /// Shown back as `ignoreHttp1xx` (accepted, informational only).
    pub ignore_http1xx: bool,
    /// Marathon's `delaySeconds` (15 by default).
    pub delay_s: u32,
}

/// Marathon's readiness check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessCheckSpec {
    pub name: String,
    /// `HTTP` or `HTTPS`.
    pub https: bool,
    pub path: String,
    /// The port definition's name; its host port is checked.
    pub port_name: String,
    pub interval_s: u32,
    pub timeout_s: u32,
    pub http_status_codes_for_ready: Vec<u16>,
    pub preserve_last_response: bool,
}

/// How a new version replaces the old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeStrategy {
    /// Healthy instances kept during the upgrade, as a share of `instances` (0..=1).
    pub minimum_health_capacity: Ppm,
    /// Extra instances allowed during the upgrade, as a share of `instances` (0..=1).
    pub maximum_over_capacity: Ppm,
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        Self { minimum_health_capacity: Ppm::ONE, maximum_over_capacity: Ppm::ONE }
    }
}

/// How long to wait before relaunching after failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffSpec {
    pub backoff_ms: u64,
    /// Multiplier per failure, as ppm (1.15 is 1,150,000); at least 1.
    pub factor: Ppm,
    pub max_launch_delay_ms: u64,
}

impl Default for BackoffSpec {
    fn default() -> Self {
        Self { backoff_ms: 1_000, factor: Ppm(1_150_000), max_launch_delay_ms: 300_000 }
    }
}

/// Which instances go first when scaling down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillSelection {
    #[default]
    YoungestFirst,
    OldestFirst,
}

/// What happens to an instance whose agent is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnreachableStrategy {
    /// Replaced at once, expunged when the master declares it lost.
    Disabled,
    /// Replaced after `inactive_after_ms` unreachable; forgotten (and killed if it comes
    /// back) after `expunge_after_ms`.
    Enabled { inactive_after_ms: u64, expunge_after_ms: u64 },
}

impl Default for UnreachableStrategy {
    fn default() -> Self {
        Self::Enabled { inactive_after_ms: 0, expunge_after_ms: 0 }
    }
}

/// One version of an app's definition: everything a user set. Comparing two specs says
/// whether a change is a restart (anything but `instances` differs) or only a scale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    pub id: AppId,
    pub command: AppCommand,
    pub cpus_milli: u64,
    pub mem_mib: u64,
    pub disk_mib: u64,
    pub instances: u32,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// The user the tasks run as; the framework's user when `None`.
    pub user: Option<String>,
    /// The role its tasks are launched under; the framework's (first) role when `None`.
    pub role: Option<String>,
    /// Roles whose resources the app may use (`*` = unreserved); any when empty.
    pub accepted_resource_roles: Vec<String>,
    pub port_definitions: Vec<PortDefinition>,
    pub require_ports: bool,
    pub constraints: Vec<Constraint>,
    pub health_checks: Vec<HealthCheckSpec>,
    pub readiness_checks: Vec<ReadinessCheckSpec>,
    pub upgrade_strategy: UpgradeStrategy,
    pub backoff: BackoffSpec,
    pub kill_selection: KillSelection,
    pub unreachable_strategy: UnreachableStrategy,
    /// Between SIGTERM and SIGKILL when a task is killed; the agent's default when `None`.
    pub task_kill_grace_period_ms: Option<u64>,
    /// Apps and groups that must be deployed (and healthy) before this one.
    pub dependencies: Vec<PathId>,
    /// Ours: how long a deployment of this app may take before it is rolled back; the
    /// `--deployment-timeout` default when `None` (and then not shown).
    pub deployment_timeout_ms: Option<u64>,
    /// Files the agent fetches into each task's sandbox before it starts (Marathon's
    /// `fetch`, and `uris`). Absent from apps stored before fetching existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fetch: Vec<FetchUri>,
}

impl AppSpec {
    /// Whether going from `self` to `next` needs new tasks (a restart), rather than only
    /// a change of the number of instances.
    pub fn needs_restart_for(&self, next: &AppSpec) -> bool {
        let mut scaled = self.clone();
        scaled.instances = next.instances;
        scaled != *next
    }
}

/// An app as it stands: its current spec and the times Marathon reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub spec: Arc<AppSpec>,
    /// Marathon's `version`: the time of the last change of any kind.
    pub version: Timestamp,
    /// `versionInfo.lastConfigChangeAt`: the last change that was not only a scale.
    pub last_config_change_at: Timestamp,
    /// `versionInfo.lastScalingAt`.
    pub last_scaling_at: Timestamp,
}

/// A group: a folder of apps and groups with dependencies of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub id: GroupId,
    pub dependencies: Vec<PathId>,
    pub version: Timestamp,
    /// Marathon's `enforceRole`; shown back.
    pub enforce_role: bool,
}

// ---------------------------------------------------------------------------------------
// Instances
// ---------------------------------------------------------------------------------------

/// One task of an app, as the framework knows it. Recorded before its launch is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub task_id: TaskId,
    pub app_id: AppId,
    /// The `AppRecord::last_config_change_at` of the spec it was launched from (Marathon's
    /// task `version`): an instance is "old" during an upgrade when this differs.
    pub app_version: Timestamp,
    pub agent_id: AgentId,
    pub host: String,
    /// Host ports, in the order of the app's port definitions.
    pub ports: Vec<u16>,
    pub state: TaskState,
    /// The latest health the agent reported; `None` until the first check result (or
    /// when the app has no health check).
    pub healthy: Option<bool>,
    /// Whether its readiness checks passed (true at once when there are none).
    pub ready: bool,
    pub staged_at: Timestamp,
    pub started_at: Option<Timestamp>,
    /// Set when the framework asked the master to kill it.
    pub killing_since: Option<Timestamp>,
    /// Set while its agent is unreachable.
    pub unreachable_since: Option<Timestamp>,
    /// The last status message (shown in `lastTaskFailure`, `/v2/tasks`).
    pub message: String,
}

/// Marathon's `lastTaskFailure` of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    pub app_id: AppId,
    pub task_id: TaskId,
    pub host: String,
    pub state: TaskState,
    pub message: String,
    pub timestamp: Timestamp,
    pub version: Timestamp,
}

// ---------------------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------------------

/// A deployment's id: a random UUID (Marathon's form).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeploymentId(pub String);

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Marathon's deployment actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ActionKind {
    StartApplication,
    ScaleApplication,
    RestartApplication,
    StopApplication,
    ResolveArtifacts,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentAction {
    pub kind: ActionKind,
    pub app: AppId,
}

/// Actions run together; the next step starts when all of them are done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStep {
    pub actions: Vec<DeploymentAction>,
}

/// Why a deployment exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentOrigin {
    /// A user's change through the API.
    User,
    /// The rollback of another deployment: cancelled by the user (`DELETE
    /// /v2/deployments/{id}`) or timed out.
    Rollback { of: DeploymentId, timed_out: bool },
}

/// A plan taking some apps from their `original` specs to their `target` specs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    /// The version (time) of the change.
    pub version: Timestamp,
    pub origin: DeploymentOrigin,
    pub steps: Vec<DeploymentStep>,
    /// Index of the step in progress; `steps.len()` once done.
    pub current_step: usize,
    /// The specs before the change (absent for apps the change creates), used to roll back.
    pub original: BTreeMap<AppId, Option<Arc<AppSpec>>>,
    /// The specs after the change (absent for apps the change removes).
    pub target: BTreeMap<AppId, Option<Arc<AppSpec>>>,
    /// The `last_config_change_at` of each app in `original`, so that a rollback restores
    /// that version and the instances still running it count as current, not old.
    #[serde(default)]
    pub original_versions: BTreeMap<AppId, Timestamp>,
    pub started_at: Timestamp,
    /// When it is rolled back automatically if not finished.
    pub deadline: Timestamp,
}

impl Deployment {
    /// Every app the plan touches, in id order.
    pub fn affected_apps(&self) -> impl Iterator<Item = &AppId> {
        self.target.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_relative_to_their_group_and_reject_bad_segments() {
        let shop = PathId::parse("/shop").expect("valid");
        assert_eq!(PathId::parse_relative("web", &shop).expect("valid").as_str(), "/shop/web");
        assert_eq!(PathId::parse_relative("../db", &shop).expect("valid").as_str(), "/db");
        assert_eq!(PathId::parse_relative("./a//b", &shop).expect("valid").as_str(), "/shop/a/b");
        assert_eq!(PathId::parse("shop").expect("valid").as_str(), "/shop");
        assert!(PathId::parse("/Shop").is_err());
        assert!(PathId::parse("/a_b").is_err());
        assert!(PathId::parse("/-a").is_err());
        assert!(PathId::parse("/..").is_err());
        assert!(PathId::parse(&format!("/{}", "a".repeat(MAX_PATH_LEN))).is_err());
        assert_eq!(PathId::parse("/shop/web").expect("valid").parent(), shop);
        assert_eq!(shop.parent(), PathId::root());
        assert!(shop.contains(&PathId::parse("/shop/web").expect("valid")));
        assert!(!shop.contains(&PathId::parse("/shopping").expect("valid")));
        assert_eq!(PathId::parse("/shop/web").expect("valid").task_prefix(), "shop_web");
    }

    #[test]
    fn timestamps_show_and_parse_as_marathon_versions() {
        let t = Timestamp(1_423_647_085_123);
        assert_eq!(t.to_string(), "2015-02-11T09:31:25.123Z");
        assert_eq!(Timestamp::parse("2015-02-11T09:31:25.123Z"), Some(t));
        assert_eq!(Timestamp::parse("2015-02-11T09:31:25.123456Z"), Some(t));
        assert_eq!(Timestamp::parse("2015-02-11T09:31:25Z"), Some(Timestamp(1_423_647_085_000)));
        assert_eq!(Timestamp::parse("2015-02-11T09:31:25.123+00:00"), Some(t));
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::parse("2024-02-29T00:00:00.000Z").map(|t| t.to_string()).as_deref(),
            Some("2024-02-29T00:00:00.000Z")
        );
        assert_eq!(Timestamp::parse("2015-13-11T09:31:25Z"), None);
        assert_eq!(Timestamp::parse("yesterday"), None);
    }

    #[test]
    fn ratios_round_exactly() {
        let p = Ppm::from_f64(0.9).expect("valid");
        assert_eq!(p.ceil_of(10), 9);
        assert_eq!(p.ceil_of(11), 10);
        assert_eq!(p.floor_of(11), 9);
        assert_eq!(Ppm::from_f64(1.15).map(Ppm::as_f64), Some(1.15));
        assert_eq!(Ppm::from_f64(-0.1), None);
        assert_eq!(Ppm::from_f64(f64::NAN), None);
    }
}
