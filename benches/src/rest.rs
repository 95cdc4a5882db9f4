//! The bench's client of a framework's REST API (services', cron's): JSON calls with
//! their status, retried while the framework is not ready yet, and GETs timed until the
//! whole answer is read.

use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use serde_json::Value;

/// Longest one request may take (a list of 50,000 tasks is tens of MiB).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A framework REST API's client (services' or cron's).
#[derive(Clone, Debug)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(address: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { client, base: format!("http://{address}") })
    }

    /// One request; the status and the body parsed as JSON (`Null` when it is not).
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.with_context(|| format!("{method} {path}: reading the answer"))?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// A request that the framework may not be ready for yet (it answers 503 until it
    /// has recovered its state and leads): tried again every 100 ms until `deadline`.
    pub(crate) async fn call_when_ready(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        deadline: Instant,
    ) -> anyhow::Result<(u16, Value)> {
        loop {
            let outcome = self.call(method.clone(), path, body).await;
            let retry = match &outcome {
                Ok((status, _)) => *status == 503,
                Err(_) => true,
            };
            if !retry || Instant::now() >= deadline {
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A GET timed until its whole answer is read; `None` unless it answered 200. The
    /// body is counted as it streams in, not gathered: tens of MiB copied into one buffer
    /// would be the client's time, not the framework's.
    pub(crate) async fn timed_get(&self, path: &str) -> Option<f64> {
        let started = Instant::now();
        let mut response = self.client.get(format!("{}{path}", self.base)).send().await.ok()?;
        let ok = response.status().as_u16() == 200;
        let mut bytes = 0;
        while let Some(chunk) = response.chunk().await.ok()? {
            bytes += chunk.len();
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        (ok && bytes > 0).then_some(ms)
    }
}
