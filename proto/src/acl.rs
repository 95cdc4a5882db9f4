//! Authorization: Mesos' JSON ACLs (`--acls FILE`) and their evaluation. Pure: a
//! decision depends only on the ACLs, the action, the principal and the object.
//!
//! Each action holds an ordered list of rules, each a subject (`principals`) and an object
//! (`roles`, `users`, …), each either `{"values": [...]}`, `{"type": "ANY"}` or
//! `{"type": "NONE"}`. As in Mesos' local authorizer, the first rule whose subject and
//! object both match the request decides: it allows unless either side is `NONE` (a
//! `NONE` matches everything and refuses it). When no rule matches, `permissive` decides
//! (true unless the file says otherwise). An anonymous caller matches only `ANY`/`NONE`
//! subjects.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// Most rules one file may hold, over all actions.
pub const MAX_RULES: usize = 10_000;

/// What a principal asks to do; each names the object key of its rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Subscribe a framework in a role (object: `roles`).
    RegisterFrameworks,
    /// Launch a task as a user (object: `users`).
    RunTasks,
    /// Tear down a framework as an operator (object: `framework_principals`).
    TeardownFrameworks,
    /// Reserve resources for a role (object: `roles`).
    ReserveResources,
    /// Unreserve resources of a role (object: `roles`; Agora records no reserving
    /// principal, so Mesos' `reserver_principals` has nothing to match).
    UnreserveResources,
    /// Change a role's quota (object: `roles`).
    UpdateQuotas,
    /// Change a role's weight (object: `roles`).
    UpdateWeights,
    /// See a framework (object: `users`, the framework's user).
    ViewFrameworks,
    /// See a task (object: `users`, the task's user).
    ViewTasks,
    /// Read a task's sandbox on its agent (object: `users`, the task's user).
    AccessSandboxes,
    /// Drain, deactivate, reactivate, mark gone or schedule maintenance for an agent
    /// (object: `agents`, its hostname).
    DrainAgents,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::RegisterFrameworks,
        Action::RunTasks,
        Action::TeardownFrameworks,
        Action::ReserveResources,
        Action::UnreserveResources,
        Action::UpdateQuotas,
        Action::UpdateWeights,
        Action::ViewFrameworks,
        Action::ViewTasks,
        Action::AccessSandboxes,
        Action::DrainAgents,
    ];

    /// The action's key in the ACL file.
    pub fn name(self) -> &'static str {
        match self {
            Action::RegisterFrameworks => "register_frameworks",
            Action::RunTasks => "run_tasks",
            Action::TeardownFrameworks => "teardown_frameworks",
            Action::ReserveResources => "reserve_resources",
            Action::UnreserveResources => "unreserve_resources",
            Action::UpdateQuotas => "update_quotas",
            Action::UpdateWeights => "update_weights",
            Action::ViewFrameworks => "view_frameworks",
            Action::ViewTasks => "view_tasks",
            Action::AccessSandboxes => "access_sandboxes",
            Action::DrainAgents => "drain_agents",
        }
    }

    /// The key of the rules' object.
    pub fn object(self) -> &'static str {
        match self {
            Action::RegisterFrameworks
            | Action::ReserveResources
            | Action::UnreserveResources
            | Action::UpdateQuotas
            | Action::UpdateWeights => "roles",
            Action::RunTasks | Action::ViewFrameworks | Action::ViewTasks | Action::AccessSandboxes => "users",
            Action::TeardownFrameworks => "framework_principals",
            Action::DrainAgents => "agents",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        // `update_quota` is accepted for Mesos' `update_quotas`, as operators write both.
        let key = if key == "update_quota" { "update_quotas" } else { key };
        Action::ALL.into_iter().find(|a| a.name() == key)
    }
}

/// One side of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entity {
    Any,
    None,
    Values(BTreeSet<String>),
}

impl Entity {
    /// Whether the rule applies to `value` (`None`: an anonymous caller).
    fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Entity::Any | Entity::None, _) => true,
            (Entity::Values(values), Some(value)) => values.contains(value),
            (Entity::Values(_), None) => false,
        }
    }

    fn parse(field: &str, value: &Value) -> Result<Self, AclError> {
        let bad = |reason: &str| AclError { field: field.to_owned(), reason: reason.to_owned() };
        let object =
            value.as_object().ok_or_else(|| bad("must be {\"values\": [...]} or {\"type\": \"ANY\"|\"NONE\"}"))?;
        if let Some(key) = object.keys().find(|k| !matches!(k.as_str(), "type" | "values")) {
            return Err(bad(&format!("unknown key {key:?}: use \"values\" or \"type\"")));
        }
        match object.get("type").map(|t| t.as_str()) {
            Some(Some("ANY")) if !object.contains_key("values") => return Ok(Entity::Any),
            Some(Some("NONE")) if !object.contains_key("values") => return Ok(Entity::None),
            Some(Some("ANY" | "NONE")) => return Err(bad("\"type\": ANY or NONE takes no \"values\"")),
            Some(Some("SOME")) | None => {}
            Some(_) => return Err(bad("\"type\" must be \"ANY\", \"NONE\" or \"SOME\"")),
        }
        let values = object.get("values").and_then(Value::as_array).ok_or_else(|| bad("\"values\" must be a list"))?;
        let values = values
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad("\"values\" must be strings")))
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Entity::Values(values))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    principals: Entity,
    object: Entity,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AclError {
    pub field: String,
    pub reason: String,
}

/// The ACLs of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acls {
    permissive: bool,
    rules: BTreeMap<Action, Vec<Rule>>,
}

impl Default for Acls {
    /// No rules, permissive: everything is allowed.
    fn default() -> Self {
        Self { permissive: true, rules: BTreeMap::new() }
    }
}

/// A refusal, naming the rule that refused (or saying none allowed it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub action: Action,
    pub principal: Option<String>,
    pub object: String,
    /// The index of the refusing rule in its action's list; `None` when no rule matched
    /// and the ACLs are not permissive.
    pub rule: Option<usize>,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match &self.principal {
            Some(principal) => format!("principal {principal:?}"),
            None => "an anonymous caller".to_owned(),
        };
        let action = self.action.name();
        write!(f, "{who} may not {action} for {} {:?}: ", self.action.object(), self.object)?;
        match self.rule {
            Some(index) => write!(f, "refused by ACL {action}[{index}]"),
            None => write!(f, "no {action} ACL allows it and the ACLs are not permissive"),
        }
    }
}

impl Acls {
    /// Reads Mesos' JSON ACL file. Unknown actions or keys are errors naming the field, so
    /// a typo never silently allows everything.
    pub fn parse(text: &str) -> Result<Self, AclError> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| AclError { field: "acls".to_owned(), reason: format!("malformed JSON: {e}") })?;
        let root = root
            .as_object()
            .ok_or_else(|| AclError { field: "acls".to_owned(), reason: "must be an object".into() })?;
        let mut acls = Acls::default();
        let mut count = 0usize;
        for (key, value) in root {
            if key == "permissive" {
                acls.permissive = value
                    .as_bool()
                    .ok_or_else(|| AclError { field: key.clone(), reason: "must be true or false".into() })?;
                continue;
            }
            let action = Action::from_key(key).ok_or_else(|| AclError {
                field: key.clone(),
                reason: format!(
                    "is not an action Agora knows: {}",
                    Action::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
                ),
            })?;
            let list = value
                .as_array()
                .ok_or_else(|| AclError { field: key.clone(), reason: "must be a list of rules".into() })?;
            let rules = acls.rules.entry(action).or_default();
            for (i, rule) in list.iter().enumerate() {
                count += 1;
                if count > MAX_RULES {
                    return Err(AclError { field: key.clone(), reason: format!("more than {MAX_RULES} rules") });
                }
                let field = format!("{key}[{i}]");
                let object = rule
                    .as_object()
                    .ok_or_else(|| AclError { field: field.clone(), reason: "must be an object".into() })?;
                if let Some(other) = object.keys().find(|k| *k != "principals" && *k != action.object()) {
                    return Err(AclError {
                        field: format!("{field}.{other}"),
                        reason: format!("is not a key of {key}: use \"principals\" and {:?}", action.object()),
                    });
                }
                let side = |name: &str| {
                    let value = object
                        .get(name)
                        .ok_or_else(|| AclError { field: format!("{field}.{name}"), reason: "is required".into() })?;
                    Entity::parse(&format!("{field}.{name}"), value)
                };
                rules.push(Rule { principals: side("principals")?, object: side(action.object())? });
            }
        }
        Ok(acls)
    }

    pub fn permissive(&self) -> bool {
        self.permissive
    }

    /// Whether any rule is about `action` (when none is and the ACLs are permissive,
    /// callers may skip work that only matters for refusals, such as filtering views).
    pub fn restricts(&self, action: Action) -> bool {
        !self.permissive || self.rules.get(&action).is_some_and(|rules| !rules.is_empty())
    }

    /// Whether `principal` may do `action` on every object: the first rule for its subject
    /// that does not name values allows any object (or none refuses at all).
    pub fn allows_all(&self, action: Action, principal: Option<&str>) -> bool {
        let rules = self.rules.get(&action).map(Vec::as_slice).unwrap_or_default();
        for rule in rules.iter().filter(|rule| rule.principals.matches(principal)) {
            match (&rule.principals, &rule.object) {
                (Entity::None, _) | (_, Entity::None) => return false,
                (_, Entity::Any) => return true,
                (_, Entity::Values(_)) => {}
            }
        }
        self.permissive
    }

    /// Whether `principal` (`None`: anonymous) may do `action` on `object`.
    pub fn check(&self, action: Action, principal: Option<&str>, object: &str) -> Result<(), Denied> {
        let denied = |rule| Denied { action, principal: principal.map(str::to_owned), object: object.to_owned(), rule };
        let rules = self.rules.get(&action).map(Vec::as_slice).unwrap_or_default();
        for (index, rule) in rules.iter().enumerate() {
            if rule.principals.matches(principal) && rule.object.matches(Some(object)) {
                return if rule.principals == Entity::None || rule.object == Entity::None {
                    Err(denied(Some(index)))
                } else {
                    Ok(())
                };
            }
        }
        if self.permissive { Ok(()) } else { Err(denied(None)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
        "permissive": false,
        "register_frameworks": [
            {"principals": {"values": ["web"]}, "roles": {"values": ["web", "*"]}},
            {"principals": {"type": "ANY"}, "roles": {"values": ["batch"]}}
        ],
        "run_tasks": [
            {"principals": {"type": "NONE"}, "users": {"values": ["root"]}},
            {"principals": {"values": ["ops"]}, "users": {"type": "NONE"}},
            {"principals": {"type": "ANY"}, "users": {"type": "ANY"}}
        ],
        "update_quota": [
            {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}}
        ]
    }"#;

    fn acls() -> Acls {
        Acls::parse(FILE).expect("a valid file")
    }

    /// An action, a principal, an object, and the decision (a refusal by its rule's index).
    type Case = (Action, Option<&'static str>, &'static str, Result<(), Option<usize>>);

    #[test]
    fn the_first_matching_rule_decides_and_names_itself_when_it_refuses() {
        let acls = acls();
        let cases: [Case; 10] = [
            (Action::RegisterFrameworks, Some("web"), "web", Ok(())),
            (Action::RegisterFrameworks, Some("web"), "batch", Ok(())),
            (Action::RegisterFrameworks, Some("ops"), "web", Err(None)),
            (Action::RegisterFrameworks, None, "batch", Ok(())),
            (Action::RegisterFrameworks, None, "web", Err(None)),
            (Action::RunTasks, Some("web"), "root", Err(Some(0))),
            (Action::RunTasks, Some("ops"), "nobody", Err(Some(1))),
            (Action::RunTasks, Some("web"), "nobody", Ok(())),
            (Action::UpdateQuotas, Some("ops"), "web", Ok(())),
            (Action::UpdateWeights, Some("ops"), "web", Err(None)),
        ];
        for (action, principal, object, expected) in cases {
            let decision = acls.check(action, principal, object).map_err(|d| d.rule);
            assert_eq!(decision, expected, "{} {principal:?} {object}", action.name());
        }
    }

    #[test]
    fn a_refusal_says_who_may_not_do_what_and_which_acl_refused() {
        let acls = acls();
        let root = acls.check(Action::RunTasks, Some("web"), "root").expect_err("refused");
        assert_eq!(
            root.to_string(),
            "principal \"web\" may not run_tasks for users \"root\": refused by ACL run_tasks[0]"
        );
        let weights = acls.check(Action::UpdateWeights, None, "web").expect_err("refused");
        assert_eq!(
            weights.to_string(),
            "an anonymous caller may not update_weights for roles \"web\": no update_weights ACL allows it and the ACLs are not permissive"
        );
    }

    #[test]
    fn allowing_all_objects_takes_a_rule_for_any_object_before_any_refusal() {
        let acls = acls();
        assert!(!acls.allows_all(Action::RunTasks, Some("web")), "root is refused to everyone");
        assert!(!acls.allows_all(Action::RegisterFrameworks, Some("web")), "not permissive, only some roles");
        assert!(acls.allows_all(Action::UpdateQuotas, Some("ops")));
        assert!(!acls.allows_all(Action::UpdateQuotas, Some("web")));
        assert!(Acls::default().allows_all(Action::ViewTasks, None));
    }

    #[test]
    fn without_rules_everything_is_allowed_unless_permissive_is_false() {
        let open = Acls::parse("{}").expect("valid");
        assert_eq!(open.check(Action::TeardownFrameworks, None, "web"), Ok(()));
        assert!(!open.restricts(Action::ViewTasks));
        let closed = Acls::parse(r#"{"permissive": false}"#).expect("valid");
        assert!(closed.check(Action::ViewTasks, Some("ops"), "nobody").is_err());
        assert!(closed.restricts(Action::ViewTasks));
    }

    #[test]
    fn a_malformed_file_is_refused_naming_the_field() {
        let cases = [
            (r#"{"run_task": []}"#, "run_task"),
            (r#"{"run_tasks": [{"principals": {"type": "ANY"}}]}"#, "run_tasks[0].users: is required"),
            (r#"{"run_tasks": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]}"#, "run_tasks[0].roles"),
            (
                r#"{"run_tasks": [{"principals": {"type": "ALL"}, "users": {"type": "ANY"}}]}"#,
                "run_tasks[0].principals",
            ),
            (
                r#"{"run_tasks": [{"principals": {"values": [1]}, "users": {"type": "ANY"}}]}"#,
                "\"values\" must be strings",
            ),
            (r#"{"permissive": "no"}"#, "permissive: must be true or false"),
            (r#"[]"#, "acls: must be an object"),
        ];
        for (text, expected) in cases {
            let error = Acls::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
