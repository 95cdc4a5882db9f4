//! Who is calling the master, at the edge: frameworks (gRPC metadata or HTTP Basic on
//! the scheduler API), agents (gRPC metadata on their stream) and operators (HTTP Basic,
//! `Bearer`, `token=`), each checked against the `--credentials` file when its
//! `--authenticate-*` flag is on. The checks themselves are `agora_proto::auth`'s; this
//! module decides what each kind of caller must present and how a refusal is answered.
//!
//! Invariants: a refusal changes nothing and is logged; a framework's principal is the
//! one it authenticated as, never what its `FrameworkInfo` claims.

use std::sync::Arc;

use agora_proto::auth::{AUTHORIZATION, Credentials, Refusal};
use agora_proto::model::FrameworkInfo;
use axum::http::HeaderMap;

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
