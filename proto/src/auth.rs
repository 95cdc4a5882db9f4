//! Who a caller is: the credentials file a server checks callers against (Mesos'
//! `--credentials` format), the one credential a client presents, and the
//! `Authorization` values both sides read and write (HTTP Basic, `Bearer`, Marathon's
//! `token=`). Pure: no sockets, no clock; reading a file is the caller's business except
//! in the two `load` helpers.
//!
//! A secret is compared in constant time, and a principal that does not exist costs the
//! same comparison as one that does, so timing tells a guesser neither.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;

/// Longest principal or secret accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;
/// Most credentials one file may hold.
pub const MAX_CREDENTIALS: usize = 10_000;
/// Largest credentials file read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The gRPC metadata key (and HTTP header) carrying a caller's credential.
pub const AUTHORIZATION: &str = "authorization";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("{0}")]
    File(String),
    #[error("credentials[{index}].{field}: {reason}")]
    Entry { index: usize, field: &'static str, reason: String },
}

fn entry(index: usize, field: &'static str, reason: impl Into<String>) -> AuthError {
    AuthError::Entry { index, field, reason: reason.into() }
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One principal and its secret: what a client presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub principal: String,
    pub secret: Secret,
}

impl Credential {
    pub fn new(principal: impl Into<String>, secret: impl Into<String>) -> Self {
        Self { principal: principal.into(), secret: Secret::new(secret) }
    }

    /// The `Authorization` value presenting this credential: HTTP Basic, as Mesos' HTTP
    /// authenticator and Marathon read it.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.principal, self.secret.expose());
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }

    /// Reads one credential as Mesos' agents and frameworks do: JSON
    /// `{"principal": …, "secret": …}`, the first entry of a `{"credentials": […]}` file,
    /// or the text form `principal secret` on the first line.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let credentials = parse_entries(text)?;
        credentials.into_iter().next().ok_or_else(|| AuthError::File("holds no credential".to_owned()))
    }

    pub fn load(path: &Path) -> Result<Self, AuthError> {
        Self::parse(&read_bounded(path)?).map_err(|e| in_file(path, e))
    }

    /// A credential from a principal and a file holding only its secret (Marathon's
    /// `--mesos_authentication_secret_file`): the file's text without its final newline.
    pub fn with_secret_file(principal: &str, path: &Path) -> Result<Self, AuthError> {
        let text = read_bounded(path)?;
        let secret = text.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&text);
        check_field(0, "principal", principal).map_err(|e| in_file(path, e))?;
        check_field(0, "secret", secret).map_err(|e| in_file(path, e))?;
        Ok(Self::new(principal, secret))
    }
}

/// The environment variables every Agora client reads its credential from when no flag
/// names one: the principal, and a file holding only its secret.
pub const PRINCIPAL_ENV: &str = "AGORA_PRINCIPAL";
pub const SECRET_FILE_ENV: &str = "AGORA_SECRET_FILE";

impl Credential {
    /// The credential `$AGORA_PRINCIPAL` and `$AGORA_SECRET_FILE` name, if both are set.
    pub fn from_env() -> Result<Option<Self>, AuthError> {
        let principal = std::env::var(PRINCIPAL_ENV).ok().filter(|p| !p.is_empty());
        let file = std::env::var_os(SECRET_FILE_ENV).filter(|f| !f.is_empty());
        match (principal, file) {
            (Some(principal), Some(file)) => Self::with_secret_file(&principal, Path::new(&file)).map(Some),
            (None, None) => Ok(None),
            _ => Err(AuthError::File(format!("set both ${PRINCIPAL_ENV} and ${SECRET_FILE_ENV}, or neither"))),
        }
    }
}

fn in_file(path: &Path, error: AuthError) -> AuthError {
    AuthError::File(format!("{}: {error}", path.display()))
}

fn read_bounded(path: &Path) -> Result<String, AuthError> {
    let file_error = |e: std::io::Error| AuthError::File(format!("{}: {e}", path.display()));
    let length = std::fs::metadata(path).map_err(file_error)?.len();
    if length > MAX_FILE_BYTES {
        return Err(AuthError::File(format!("{}: larger than {MAX_FILE_BYTES} bytes", path.display())));
    }
    std::fs::read_to_string(path).map_err(file_error)
}

/// What a caller presented in `Authorization`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presented {
    /// `Basic base64(principal:secret)`.
    Basic(Credential),
    /// `Bearer <token>` or Marathon's `token=<token>`: a secret alone, naming its principal.
    Token(Secret),
}

/// Reads an `Authorization` value. The scheme is case-insensitive, as HTTP says.
pub fn parse_authorization(value: &str) -> Result<Presented, String> {
    let value = value.trim();
    if let Some(token) = value.strip_prefix("token=") {
        return token_value(token);
    }
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| "Basic: the credential is not base64".to_owned())?;
        let pair = String::from_utf8(decoded).map_err(|_| "Basic: the credential is not UTF-8".to_owned())?;
        let (principal, secret) =
            pair.split_once(':').ok_or_else(|| "Basic: the credential is not principal:secret".to_owned())?;
        if principal.is_empty() || principal.len() > MAX_FIELD_BYTES || secret.len() > MAX_FIELD_BYTES {
            return Err("Basic: the principal is empty or a field is too long".to_owned());
        }
        return Ok(Presented::Basic(Credential::new(principal, secret)));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return token_value(rest);
    }
    Err("use Basic, Bearer or token=".to_owned())
}

fn token_value(token: &str) -> Result<Presented, String> {
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_FIELD_BYTES {
        return Err("the token is empty or too long".to_owned());
    }
    Ok(Presented::Token(Secret::new(token)))
}

/// Why a caller was not authenticated; the text is safe to send back (it never says
/// whether a principal exists).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("authentication is required: present a credential (HTTP Basic, Bearer or token=)")]
    Missing,
    #[error("malformed Authorization: {0}")]
    Malformed(String),
    #[error("the credential is not valid")]
    Invalid,
}

/// The principals a server knows and their secrets (Mesos' `--credentials` file).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    secrets: BTreeMap<String, Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("principals", &self.secrets.keys().collect::<Vec<_>>()).finish()
    }
}

impl Credentials {
    /// Reads Mesos' credentials file: JSON `{"credentials": [{"principal", "secret"}]}`,
    /// or text with one `principal secret` pair per line (blank lines and `#` comments
    /// skipped). A principal named twice, or two principals sharing a secret (a bearer
    /// token must name one principal), is an error.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let entries = parse_entries(text)?;
        if entries.len() > MAX_CREDENTIALS {
            return Err(AuthError::File(format!("more than {MAX_CREDENTIALS} credentials")));
        }
        let mut secrets = BTreeMap::new();
        for (index, credential) in entries.into_iter().enumerate() {
            if secrets.values().any(|s: &Secret| s == &credential.secret) {
                return Err(entry(
                    index,
                    "secret",
                    "is another principal's secret too; tokens must name one principal",
                ));
            }
            if secrets.insert(credential.principal.clone(), credential.secret).is_some() {
                return Err(entry(index, "principal", format!("{:?} is named twice", credential.principal)));
            }
        }
        Ok(Self { secrets })
    }

    pub fn load(path: &Path) -> Result<Self, AuthError> {
        Self::parse(&read_bounded(path)?).map_err(|e| in_file(path, e))
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether `secret` is `principal`'s. An unknown principal costs one comparison as a
    /// known one does.
    pub fn verify(&self, principal: &str, secret: &str) -> bool {
        match self.secrets.get(principal) {
            Some(known) => constant_time_eq(known.expose().as_bytes(), secret.as_bytes()),
            None => {
                let _ = constant_time_eq(secret.as_bytes(), secret.as_bytes());
                false
            }
        }
    }

    /// The principal whose secret `token` is; every secret is compared, whichever matches.
    pub fn principal_of_token(&self, token: &str) -> Option<&str> {
        let mut found = None;
        for (principal, secret) in &self.secrets {
            if constant_time_eq(secret.expose().as_bytes(), token.as_bytes()) {
                found = Some(principal.as_str());
            }
        }
        found
    }

    /// The principal an `Authorization` value proves, or why it proves none.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<String, Refusal> {
        let value = authorization.ok_or(Refusal::Missing)?;
        match parse_authorization(value).map_err(Refusal::Malformed)? {
            Presented::Basic(credential) if self.verify(&credential.principal, credential.secret.expose()) => {
                Ok(credential.principal)
            }
            Presented::Basic(_) => Err(Refusal::Invalid),
            Presented::Token(token) => {
                self.principal_of_token(token.expose()).map(str::to_owned).ok_or(Refusal::Invalid)
            }
        }
    }
}

/// Compares in time that depends on the lengths only, never on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= usize::from(x ^ y);
    }
    std::hint::black_box(difference) == 0
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCredential {
    principal: String,
    #[serde(default)]
    secret: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFile {
    credentials: Vec<JsonCredential>,
}

fn check_field(index: usize, field: &'static str, value: &str) -> Result<(), AuthError> {
    if value.is_empty() {
        return Err(entry(index, field, "is empty"));
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(entry(index, field, format!("is longer than {MAX_FIELD_BYTES} bytes")));
    }
    if field == "principal" && value.contains(':') {
        // HTTP Basic separates the principal from the secret with the first colon.
        return Err(entry(index, field, "cannot contain ':'"));
    }
    Ok(())
}

fn parse_entries(text: &str) -> Result<Vec<Credential>, AuthError> {
    let trimmed = text.trim_start();
    let pairs: Vec<(String, String)> = if trimmed.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| AuthError::File(format!("malformed JSON: {e}")))?;
        if value.get("credentials").is_some() {
            let file: JsonFile = serde_json::from_value(value)
                .map_err(|e| AuthError::File(format!("malformed credentials JSON: {e}")))?;
            file.credentials.into_iter().map(|c| (c.principal, c.secret)).collect()
        } else {
            let one: JsonCredential = serde_json::from_value(value)
                .map_err(|e| AuthError::File(format!("malformed credential JSON: {e}")))?;
            vec![(one.principal, one.secret)]
        }
    } else {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| match line.split_once(char::is_whitespace) {
                Some((principal, secret)) => (principal.to_owned(), secret.trim().to_owned()),
                None => (line.to_owned(), String::new()),
            })
            .collect()
    };
    pairs
        .into_iter()
        .enumerate()
        .map(|(index, (principal, secret))| {
            check_field(index, "principal", &principal)?;
            check_field(index, "secret", &secret)?;
            Ok(Credential::new(principal, secret))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(pair: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }

    #[test]
    fn the_json_and_text_forms_of_a_credentials_file_read_the_same() {
        let json =
            r#"{"credentials": [{"principal": "ops", "secret": "s3cret"}, {"principal": "web", "secret": "w"}]}"#;
        let text = "# operators\nops s3cret\n\nweb   w\n";
        assert_eq!(Credentials::parse(json), Credentials::parse(text));
        let credentials = Credentials::parse(text).expect("valid");
        assert_eq!(credentials.len(), 2);
        assert!(credentials.verify("ops", "s3cret"));
        assert!(!credentials.verify("ops", "s3cre"));
        assert!(!credentials.verify("nobody", "s3cret"));
    }

    #[test]
    fn a_bad_credentials_file_is_refused_naming_the_entry() {
        let cases = [
            ("ops", "credentials[0].secret: is empty"),
            ("ops a\nops b", "credentials[1].principal: \"ops\" is named twice"),
            (
                "ops a\nweb a",
                "credentials[1].secret: is another principal's secret too; tokens must name one principal",
            ),
            ("o:ps a", "credentials[0].principal: cannot contain ':'"),
        ];
        for (text, expected) in cases {
            assert_eq!(Credentials::parse(text).map_err(|e| e.to_string()), Err(expected.to_owned()), "{text}");
        }
        let unknown = Credentials::parse(r#"{"credentials": [{"principal": "a", "secret": "b", "x": 1}]}"#);
        assert!(matches!(unknown, Err(AuthError::File(_))), "{unknown:?}");
    }

    #[test]
    fn one_credential_reads_from_json_text_or_a_credentials_file() {
        let expected = Credential::new("agent", "tok");
        assert_eq!(Credential::parse(r#"{"principal": "agent", "secret": "tok"}"#), Ok(expected.clone()));
        assert_eq!(Credential::parse("agent tok\n"), Ok(expected.clone()));
        assert_eq!(Credential::parse(r#"{"credentials": [{"principal": "agent", "secret": "tok"}]}"#), Ok(expected));
        assert!(Credential::parse("\n").is_err());
    }

    #[test]
    fn basic_bearer_and_token_authorizations_name_their_principal() {
        let credentials = Credentials::parse("ops s3cret\nweb w3b").expect("valid");
        let cases: [(Option<&str>, Result<String, Refusal>); 8] = [
            (Some(&basic("ops:s3cret")), Ok("ops".to_owned())),
            (Some(&basic("ops:wrong")), Err(Refusal::Invalid)),
            (Some(&basic("who:s3cret")), Err(Refusal::Invalid)),
            (Some("Bearer w3b"), Ok("web".to_owned())),
            (Some("token=s3cret"), Ok("ops".to_owned())),
            (Some("bearer nope"), Err(Refusal::Invalid)),
            (Some("Digest x"), Err(Refusal::Malformed("use Basic, Bearer or token=".to_owned()))),
            (None, Err(Refusal::Missing)),
        ];
        for (value, expected) in cases {
            assert_eq!(credentials.authenticate(value), expected, "{value:?}");
        }
    }

    #[test]
    fn a_credential_presents_itself_as_basic_and_reads_back() {
        let credential = Credential::new("fw", "pa:ss");
        assert_eq!(parse_authorization(&credential.basic()), Ok(Presented::Basic(credential.clone())));
        assert_eq!(format!("{:?}", credential.secret), "Secret(…)");
    }

    #[test]
    fn constant_time_comparison_is_plain_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
