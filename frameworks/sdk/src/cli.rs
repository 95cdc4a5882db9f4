//! What a framework's command-line client needs around its REST API (feature `cli`): a
//! JSON client whose errors carry the API's `{message, details}`, readable tables, and
//! bounded reads of the files users hand it. `agora services …` and `agora cron …` are
//! built on it.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("cannot reach {what} at {url}: {reason}")]
    Unreachable { what: &'static str, url: String, reason: String },
    /// The API answered with an error; `details` lists the fields named when there are
    /// several (one is already in the message).
    #[error("{method} {path}: {status}: {message}{details}")]
    Api { method: Method, path: String, status: StatusCode, message: String, details: String },
}

/// A client of one REST API at `http://HOST:PORT`, sending and reading JSON.
#[derive(Debug, Clone)]
pub struct RestClient {
    base: String,
    http: reqwest::Client,
    /// The API's name in messages ("services", "cron").
    what: &'static str,
}

impl RestClient {
    /// A client of `base` whose calls take at most `timeout`; `Err` names what is wrong
    /// with `base`.
    pub fn new(what: &'static str, base: &str, timeout: Duration) -> Result<RestClient, String> {
        Self::with_tls(what, base, timeout, None)
    }

    /// [`new`](Self::new), verifying an `https://` API with `tls` (`--tls-ca`; the system's
    /// CA certificates when `None`).
    pub fn with_tls(
        what: &'static str,
        base: &str,
        timeout: Duration,
        tls: Option<&agora_proto::tls::ClientTls>,
    ) -> Result<RestClient, String> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(format!("{base:?}: expected http://HOST:PORT or https://HOST:PORT"));
        }
        // A follower answers with a 307 to the leader; reqwest follows it (method and body kept).
        let http = http_client_with_tls(timeout, tls)?;
        Ok(RestClient { base, http, what })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// An error saying the API cannot be reached, for calls made outside [`RestClient::send`].
    pub fn unreachable(&self, error: &(dyn std::error::Error + 'static)) -> RestError {
        RestError::Unreachable { what: self.what, url: self.base.clone(), reason: error_chain(error) }
    }

    pub async fn get(&self, path: &str) -> Result<Value, RestError> {
        self.send(Method::GET, path, None).await
    }

    /// Sends `body` (if any) as JSON; the answer's JSON (`null` when empty, a string when
    /// it is not JSON), or the API's error.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, RestError> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = match &value {
            Value::Object(object) => object.get("message").map(cell).unwrap_or_else(|| value.to_string()),
            Value::String(text) => text.clone(),
            _ => String::new(),
        };
        let details: Vec<String> = value["details"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let errors: Vec<String> = d["errors"].as_array().into_iter().flatten().map(cell).collect();
                format!("\n  {}: {}", cell(&d["path"]), errors.join("; "))
            })
            .collect();
        let details = if details.len() > 1 { details.concat() } else { String::new() };
        Err(RestError::Api { method, path: path.to_owned(), status, message, details })
    }
}

/// The HTTP client of every command-line call (to a master, a framework's API or an agent's
/// sandbox files): calls take at most `timeout`, and a server run with `--authenticate-http`
/// gets the caller's credential on every call (`$AGORA_PRINCIPAL` and `$AGORA_SECRET_FILE`).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    http_client_for(timeout, None, None)
}

/// [`http_client`] presenting `credential` when one is given (a command's own
/// `--principal`), else the environment's.
pub fn http_client_as(
    timeout: Duration,
    credential: Option<&agora_proto::auth::Credential>,
) -> Result<reqwest::Client, String> {
    http_client_for(timeout, credential, None)
}

/// [`http_client`], verifying `https://` servers with `tls` (`--tls-ca`; the system's CA
/// certificates when `None`).
pub fn http_client_with_tls(
    timeout: Duration,
    tls: Option<&agora_proto::tls::ClientTls>,
) -> Result<reqwest::Client, String> {
    http_client_for(timeout, None, tls)
}

/// The client every command-line call uses: `credential` (else the environment's) on
/// every request, and `https://` servers verified with `tls`.
pub fn http_client_for(
    timeout: Duration,
    credential: Option<&agora_proto::auth::Credential>,
    tls: Option<&agora_proto::tls::ClientTls>,
) -> Result<reqwest::Client, String> {
    let credential = match credential {
        Some(credential) => Some(credential.clone()),
        None => agora_proto::auth::Credential::from_env().map_err(|e| e.to_string())?,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(credential) = credential {
        let mut value = reqwest::header::HeaderValue::try_from(credential.basic())
            .map_err(|_| "the principal and secret must be printable".to_owned())?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    agora_proto::tls::reqwest_builder(reqwest::Client::builder(), tls)
        .map_err(|e| e.to_string())?
        .default_headers(headers)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// A file's text (`-` is standard input), refused when larger than `max_bytes`.
pub fn read_file(file: &Path, max_bytes: u64) -> Result<String, String> {
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().take(max_bytes + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(max_bytes + 1).read_to_string(&mut text))
    };
    read.map_err(|e| format!("{}: {e}", file.display()))?;
    if text.len() as u64 > max_bytes {
        return Err(format!("{}: larger than {} KiB", file.display(), max_bytes >> 10));
    }
    Ok(text)
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A row of a table from fixed cells (headers).
pub fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Prints rows as a table: columns padded to their widest cell, two spaces apart.
pub fn print_table(rows: &[Vec<String>]) {
    for line in table_lines(rows) {
        println!("{line}");
    }
}

/// Rows as a table, one string: columns padded to their widest cell, two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    table_lines(rows).join("\n")
}

fn table_lines(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> =
                row.iter().enumerate().map(|(c, s)| format!("{s:<width$}", width = widths[c])).collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// An error with its causes, `a: b: c`, as one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    if let Some(tls) = agora_proto::tls::tls_failure(error) {
        return tls;
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_end_without_spaces() {
        let rows = vec![row(["ID", "STATE"]), vec!["web-1".into(), "RUNNING".into()], vec!["db".into(), "".into()]];
        assert_eq!(table_lines(&rows), ["ID     STATE", "web-1  RUNNING", "db"]);
    }

    #[test]
    fn cells_show_strings_bare_and_null_as_a_dash() {
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(3)), "3");
    }

    #[test]
    fn a_file_larger_than_its_limit_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; 2048]).expect("write");
        assert!(read_file(&path, 1024).expect_err("too big").contains("larger than 1 KiB"));
        assert_eq!(read_file(&path, 4096).expect("fits").len(), 2048);
    }

    #[test]
    fn a_base_that_is_not_http_is_refused() {
        assert!(RestClient::new("cron", "127.0.0.1:4400", Duration::from_secs(1)).is_err());
        let client = RestClient::new("cron", "http://127.0.0.1:4400/", Duration::from_secs(1)).expect("client");
        assert_eq!(client.base(), "http://127.0.0.1:4400");
    }
}
