//! Who is calling the master, at the edge: frameworks (gRPC metadata or HTTP Basic on
//! the scheduler API), agents (gRPC metadata on their stream) and operators (HTTP Basic,
//! `Bearer`, `token=`), each checked against the `--credentials` file when its
//! `--authenticate-*` flag is on. The checks themselves are `agora_proto::auth`'s; this
//! module decides what each kind of caller must present and how a refusal is answered.
//!
//! Invariants: a refusal changes nothing and is logged; a framework's principal is the
//! one it authenticated as, never what its `FrameworkInfo` claims.

use std::sync::Arc;

use agora_proto::acl::{Acls, Action, Denied};
use agora_proto::auth::{AUTHORIZATION, Credentials, Refusal};
use agora_proto::model::FrameworkInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::http::ApiError;
use super::read_model::{FrameworkCopy, StateCopy};
use crate::core::TaskView;

/// What the master requires of its callers (all off by default).
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// The principals and secrets callers are checked against (`--credentials`).
    pub credentials: Option<Arc<Credentials>>,
    /// Frameworks must authenticate (`--authenticate-frameworks`).
    pub authenticate_frameworks: bool,
    /// Agents must authenticate (`--authenticate-agents`).
    pub authenticate_agents: bool,
    /// Operators must authenticate on the HTTP API (`--authenticate-http`).
    pub authenticate_http: bool,
    /// What each principal may do (`--acls`); `None` allows everything.
    pub acls: Option<Arc<Acls>>,
}

impl Security {
    /// Refuses a configuration that requires authentication without credentials to
    /// check it against.
    pub fn validate(&self) -> Result<(), String> {
        let required = self.authenticate_frameworks || self.authenticate_agents || self.authenticate_http;
        if required && self.credentials.as_ref().is_none_or(|c| c.is_empty()) {
            return Err("--authenticate-frameworks, --authenticate-agents and --authenticate-http need --credentials \
                        with at least one principal"
                .to_owned());
        }
        Ok(())
    }
}

/// Which kind of caller is being checked, for the flag that decides and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Framework,
    Agent,
    Operator,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Framework => "framework",
            Kind::Agent => "agent",
            Kind::Operator => "operator",
        }
    }
}

/// The result of authentication: who the caller proved to be, if anyone.
pub type Principal = Option<String>;

impl Security {
    fn required(&self, kind: Kind) -> bool {
        match kind {
            Kind::Framework => self.authenticate_frameworks,
            Kind::Agent => self.authenticate_agents,
            Kind::Operator => self.authenticate_http,
        }
    }

    /// The principal an `Authorization` value proves. When authentication is not
    /// required a caller may still present a credential, and then it must be valid; one
    /// that presents none is anonymous.
    pub fn authenticate(&self, kind: Kind, authorization: Option<&str>) -> Result<Principal, Refusal> {
        let credentials = match &self.credentials {
            Some(credentials) if self.required(kind) || authorization.is_some() => credentials,
            _ if self.required(kind) => return Err(Refusal::Missing),
            _ => return Ok(None),
        };
        match credentials.authenticate(authorization) {
            Ok(principal) => Ok(Some(principal)),
            Err(refusal) => {
                tracing::warn!(caller = kind.name(), %refusal, "authentication refused");
                Err(refusal)
            }
        }
    }

    pub fn authenticate_grpc(&self, kind: Kind, metadata: &tonic::metadata::MetadataMap) -> Result<Principal, Refusal> {
        let value = metadata.get(AUTHORIZATION).map(|v| v.to_str().map_err(|_| ()));
        match value {
            Some(Err(())) => Err(Refusal::Malformed("not ASCII".to_owned())),
            Some(Ok(value)) => self.authenticate(kind, Some(value)),
            None => self.authenticate(kind, None),
        }
    }

    pub fn authenticate_http(&self, kind: Kind, headers: &HeaderMap) -> Result<Principal, Refusal> {
        let value = headers.get(axum::http::header::AUTHORIZATION).map(|v| v.to_str().map_err(|_| ()));
        match value {
            Some(Err(())) => Err(Refusal::Malformed("not ASCII".to_owned())),
            Some(Ok(value)) => self.authenticate(kind, Some(value)),
            None => self.authenticate(kind, None),
        }
    }
}

impl Security {
    /// Whether `principal` may do `action` on `object`; a refusal is logged.
    pub fn authorize(&self, action: Action, principal: Option<&str>, object: &str) -> Result<(), Denied> {
        let Some(acls) = &self.acls else { return Ok(()) };
        acls.check(action, principal, object).inspect_err(|denied| tracing::warn!(%denied, "refused by the ACLs"))
    }

    /// Whether any ACL could refuse `action` (else views need no filtering).
    pub fn restricts(&self, action: Action) -> bool {
        self.acls.as_ref().is_some_and(|acls| acls.restricts(action))
    }

    /// Admits a subscribing framework: its principal from authentication, then the
    /// `register_frameworks` ACL for each of its roles.
    pub fn admit_framework(&self, principal: &Principal, info: &mut FrameworkInfo) -> Result<(), String> {
        framework_principal(principal, info)?;
        self.authorize_roles(info)
    }

    /// The `register_frameworks` ACL for each of the framework's roles (also on
    /// UPDATE_FRAMEWORK, which may change them).
    pub fn authorize_roles(&self, info: &FrameworkInfo) -> Result<(), String> {
        let principal = Some(info.principal.as_str()).filter(|p| !p.is_empty());
        for role in &info.roles {
            self.authorize(Action::RegisterFrameworks, principal, role.as_str()).map_err(|d| d.to_string())?;
        }
        // A framework naming no role subscribes in `*`.
        if info.roles.is_empty() {
            self.authorize(Action::RegisterFrameworks, principal, "*").map_err(|d| d.to_string())?;
        }
        Ok(())
    }
}

/// Fills a subscribing framework's principal from its authentication. A framework that
/// claims a principal other than the one it authenticated as is refused.
pub fn framework_principal(principal: &Principal, info: &mut FrameworkInfo) -> Result<(), String> {
    let Some(principal) = principal else { return Ok(()) };
    if info.principal.is_empty() {
        info.principal = principal.clone();
        return Ok(());
    }
    if &info.principal != principal {
        let refusal =
            format!("framework_info.principal {:?} is not the authenticated principal {principal:?}", info.principal);
        tracing::warn!(%refusal, "subscription refused");
        return Err(refusal);
    }
    Ok(())
}

/// Whether a call may use a subscription: with authentication, only the principal that
/// subscribed may.
pub fn same_principal(subscribed: &Principal, caller: &Principal) -> bool {
    subscribed == caller
}

/// Who made an operator's HTTP request, as [`operator_gate`] proved it, with the rules
/// that apply to them: in every operator handler's request extensions. Other layers
/// (cross-site checks, rate limits) may read it too.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    security: Arc<Security>,
}

impl Caller {
    /// An anonymous caller under `security`, for paths no credential is asked on.
    pub fn anonymous(security: Arc<Security>) -> Self {
        Self { principal: None, security }
    }

    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// Whether the caller authenticated (some principal), as opposed to anonymous.
    pub fn is_authenticated(&self) -> bool {
        self.principal.is_some()
    }

    pub fn security(&self) -> &Arc<Security> {
        &self.security
    }

    /// 403 with the ACL that refused, or nothing.
    pub fn authorize(&self, action: Action, object: &str) -> Result<(), ApiError> {
        self.security.authorize(action, self.principal(), object).map_err(|denied| forbidden(&denied))
    }

    /// Whether the caller may see `object` under `action` (a view filter; not logged).
    pub fn may_view(&self, action: Action, object: &str) -> bool {
        self.security.acls.as_ref().is_none_or(|acls| acls.check(action, self.principal(), object).is_ok())
    }
}

impl Caller {
    /// Whether the view ACLs may hide anything from this caller (else a view is shown
    /// whole, at no cost).
    pub fn views_filtered(&self) -> bool {
        self.security.restricts(Action::ViewFrameworks) || self.security.restricts(Action::ViewTasks)
    }

    /// Whether the caller may see every framework and task (the operator event stream
    /// cannot be filtered record by record, so it needs this).
    pub fn views_everything(&self) -> bool {
        self.security.acls.as_ref().is_none_or(|acls| {
            acls.allows_all(Action::ViewFrameworks, self.principal())
                && acls.allows_all(Action::ViewTasks, self.principal())
        })
    }

    /// Whether the caller may see a task of a framework running as `framework_user`.
    pub fn may_view_task(&self, task: &TaskView, framework_user: &str) -> bool {
        self.may_view(Action::ViewTasks, task.info.command.user.as_deref().unwrap_or(framework_user))
    }

    /// What of `state` this caller may see: frameworks by `view_frameworks` on their user,
    /// tasks by `view_tasks` on theirs (a hidden framework's tasks are hidden too).
    pub fn visible_state(&self, mut state: StateCopy) -> StateCopy {
        if !self.views_filtered() {
            return state;
        }
        let filter = |framework: &FrameworkCopy| -> Option<FrameworkCopy> {
            let user = framework.view.info.user.as_str();
            if !self.may_view(Action::ViewFrameworks, user) {
                return None;
            }
            let keep = |tasks: &[Arc<TaskView>]| -> Vec<Arc<TaskView>> {
                tasks.iter().filter(|t| self.may_view_task(t, user)).cloned().collect()
            };
            Some(FrameworkCopy {
                view: framework.view.clone(),
                used: framework.used.clone(),
                tasks: keep(&framework.tasks),
                completed_tasks: keep(&framework.completed_tasks),
            })
        };
        state.frameworks = state.frameworks.iter().filter_map(filter).collect();
        state.completed_frameworks =
            state.completed_frameworks.iter().filter_map(|f| filter(f).map(Arc::new)).collect();
        state
    }
}

/// The answer to a refusal by the ACLs: 403 naming the rule.
pub fn forbidden(denied: &Denied) -> ApiError {
    let acl = match denied.rule {
        Some(index) => format!("{}[{index}]", denied.action.name()),
        None => "permissive: false".to_owned(),
    };
    ApiError::new(StatusCode::FORBIDDEN, denied.to_string(), json!([{ "acl": acl }]))
}

/// Paths anyone may read: the health and version probes load balancers and monitors use.
fn open_path(path: &str) -> bool {
    matches!(path, "/health" | "/master/health" | "/version" | "/master/version")
}

/// The operator API's middleware: authenticates the request (required with
/// `--authenticate-http`; a credential presented is checked either way) and leaves the
/// [`Caller`] in its extensions. A refusal is 401 with a Basic challenge.
pub async fn operator_gate(State(security): State<Arc<Security>>, mut request: Request, next: Next) -> Response {
    let principal = if open_path(request.uri().path()) {
        None
    } else {
        match security.authenticate_http(Kind::Operator, request.headers()) {
            Ok(principal) => principal,
            Err(refusal) => return unauthorized(&refusal),
        }
    };
    request.extensions_mut().insert(Caller { principal, security });
    next.run(request).await
}

/// The outermost HTTP layer: marks a request whose `Authorization` proves a principal
/// ([`agora_proto::edge::Authenticated`]) for the layers that treat authenticated callers
/// apart (the cross-site guard). It refuses nothing; the routes' own checks do.
pub async fn mark_authenticated(State(security): State<Arc<Security>>, mut request: Request, next: Next) -> Response {
    if let Some(credentials) = &security.credentials {
        let value = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if value.is_some()
            && let Ok(principal) = credentials.authenticate(value)
        {
            request.extensions_mut().insert(agora_proto::edge::Authenticated { principal });
        }
    }
    next.run(request).await
}

/// 401 with the challenge Mesos' HTTP authenticator sends, so a client knows to use Basic.
pub fn unauthorized(refusal: &Refusal) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, refusal.to_string(), json!([])).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"agora\""));
    response
}

pub fn unauthenticated(refusal: &Refusal) -> tonic::Status {
    tonic::Status::unauthenticated(refusal.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(required: bool) -> Security {
        Security {
            credentials: Some(Arc::new(Credentials::parse("fw s3cret").expect("valid"))),
            authenticate_frameworks: required,
            ..Security::default()
        }
    }

    #[test]
    fn a_framework_must_present_a_valid_credential_only_when_required() {
        let basic = agora_proto::auth::Credential::new("fw", "s3cret").basic();
        let wrong = agora_proto::auth::Credential::new("fw", "nope").basic();
        let required = security(true);
        assert_eq!(required.authenticate(Kind::Framework, None), Err(Refusal::Missing));
        assert_eq!(required.authenticate(Kind::Framework, Some(&wrong)), Err(Refusal::Invalid));
        assert_eq!(required.authenticate(Kind::Framework, Some(&basic)), Ok(Some("fw".to_owned())));
        let optional = security(false);
        assert_eq!(optional.authenticate(Kind::Framework, None), Ok(None));
        assert_eq!(optional.authenticate(Kind::Framework, Some(&wrong)), Err(Refusal::Invalid));
        assert_eq!(optional.authenticate(Kind::Framework, Some(&basic)), Ok(Some("fw".to_owned())));
        assert_eq!(Security::default().authenticate(Kind::Operator, Some(&basic)), Ok(None));
    }

    #[test]
    fn authentication_without_credentials_is_a_configuration_error() {
        let security = Security { authenticate_http: true, ..Security::default() };
        assert!(security.validate().is_err());
        assert!(self::security(true).validate().is_ok());
    }

    #[test]
    fn the_authenticated_principal_fills_or_must_match_the_claimed_one() {
        let mut info = FrameworkInfo {
            id: None,
            name: "x".to_owned(),
            user: String::new(),
            roles: Vec::new(),
            failover_timeout_ms: 0,
            hostname: String::new(),
            principal: String::new(),
        };
        assert_eq!(framework_principal(&Some("fw".to_owned()), &mut info), Ok(()));
        assert_eq!(info.principal, "fw");
        assert!(framework_principal(&Some("other".to_owned()), &mut info).is_err());
        assert_eq!(framework_principal(&None, &mut info), Ok(()), "nothing proven, nothing checked");
    }
}
