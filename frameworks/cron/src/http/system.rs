//! `/ping`, `/leader` and `/metrics` (Prometheus text: runs by outcome, the lateness of
//! scheduled runs' starts as a histogram, the queue, the jobs, HTTP requests).

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Api, CronApi, Leadership, json_bytes, to_json};
use crate::chronos::ApiError;
use crate::core::LATENESS_BUCKETS_MS;

pub(super) async fn ping() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))], "pong").into_response()
}

/// `GET /leader`: `{"leader": "host:port"}`, as Chronos answers.
pub(super) async fn leader<A: CronApi>(State(api): State<Api<A>>) -> Result<Response, ApiError> {
    match (api.info.leadership)() {
        Leadership::Leader { address } | Leadership::Follower { leader: Some(address) } => {
            Ok(json_bytes(to_json(&json!({ "leader": address }))?))
        }
        Leadership::Follower { leader: None } => Err(ApiError::unavailable("no leader is elected yet; retry shortly")),
    }
}

struct Figures {
    jobs: usize,
    disabled: usize,
    active: usize,
    queued: usize,
    subscribed: bool,
    runs_by_outcome: BTreeMap<&'static str, u64>,
    lateness_buckets: Vec<u64>,
    lateness_sum_ms: u64,
    launches: u64,
}

/// The outcomes a run ends with, so that every series exists from the start.
const OUTCOMES: [&str; 5] = ["succeeded", "failed", "killed", "timed_out", "missed"];

pub(super) async fn metrics<A: CronApi>(State(api): State<Api<A>>) -> Result<Response, ApiError> {
    let figures = api
        .read(|cron, _| {
            let metrics = cron.metrics();
            Figures {
                jobs: cron.jobs().count(),
                disabled: cron.jobs().filter(|j| j.spec.disabled).count(),
                active: cron.all_active_runs().count(),
                queued: cron.queue_len(),
                subscribed: cron.is_subscribed(),
                runs_by_outcome: metrics.runs_by_outcome.clone(),
                lateness_buckets: metrics.lateness_buckets.to_vec(),
                lateness_sum_ms: metrics.lateness_sum_ms,
                launches: metrics.launches,
            }
        })
        .await?;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("cron_jobs", "Jobs defined.", figures.jobs as u64);
    gauge("cron_jobs_disabled", "Jobs disabled.", figures.disabled as u64);
    gauge("cron_runs_active", "Runs in flight: waiting for an offer, launched or running.", figures.active as u64);
    gauge("cron_queue_runs", "Runs waiting for an offer.", figures.queued as u64);
    gauge("cron_subscribed", "1 while subscribed to the master.", u64::from(figures.subscribed));
    let _ = writeln!(out, "# HELP cron_runs_total Runs ended, by outcome.\n# TYPE cron_runs_total counter");
    let mut outcomes: BTreeMap<&str, u64> = OUTCOMES.iter().map(|o| (*o, 0)).collect();
    outcomes.extend(figures.runs_by_outcome.iter().map(|(k, v)| (*k, *v)));
    for (outcome, count) in outcomes {
        let _ = writeln!(out, "cron_runs_total{{outcome=\"{outcome}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "# HELP cron_run_lateness_seconds How late scheduled runs started (launch minus scheduled time).\n# TYPE cron_run_lateness_seconds histogram"
    );
    let mut cumulative = 0;
    for (bound_ms, count) in LATENESS_BUCKETS_MS.iter().zip(&figures.lateness_buckets) {
        cumulative += count;
        let _ = writeln!(out, "cron_run_lateness_seconds_bucket{{le=\"{}\"}} {cumulative}", *bound_ms as f64 / 1000.0);
    }
    let _ = writeln!(out, "cron_run_lateness_seconds_bucket{{le=\"+Inf\"}} {}", figures.launches);
    let _ = writeln!(out, "cron_run_lateness_seconds_sum {}", figures.lateness_sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "cron_run_lateness_seconds_count {}", figures.launches);
    let _ = writeln!(
        out,
        "# HELP cron_http_requests_total HTTP requests answered, by method and status.\n# TYPE cron_http_requests_total counter"
    );
    for ((method, status), count) in api.metrics.snapshot() {
        let _ = writeln!(out, "cron_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {count}");
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], out)
        .into_response())
}
