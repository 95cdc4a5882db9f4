//! `/ping`, `/metrics` (Prometheus text), `/v2/info` and `/v2/leader`.

use std::collections::BTreeMap;
use std::fmt::Write;

use agora_proto::model::TaskState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{Api, json_bytes, to_json};
use crate::marathon::ApiError;

pub(super) async fn ping() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))], "pong").into_response()
}

/// What `/metrics` reports from the planner.
struct PlannerFigures {
    apps: usize,
    instances_wanted: u64,
    instances: BTreeMap<&'static str, u64>,
    healthy: u64,
    unhealthy: u64,
    deployments: usize,
    queued: u64,
}

/// Prometheus text; JSON (`{"gauges": {name: {"value": v}}, "counters": ...}`, the shape
/// of Marathon's own `/metrics`) for a client that asks only for JSON, as
/// marathon-python's `get_metrics` does.
pub(super) async fn metrics(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    let figures = api
        .read(|planner, now_ms| {
            let mut instances: BTreeMap<&'static str, u64> = BTreeMap::new();
            let (mut healthy, mut unhealthy) = (0, 0);
            for instance in planner.instances() {
                *instances.entry(instance.state.as_str()).or_default() += 1;
                match instance.healthy {
                    Some(true) => healthy += 1,
                    Some(false) => unhealthy += 1,
                    None => {}
                }
            }
            PlannerFigures {
                apps: planner.apps().count(),
                instances_wanted: planner.apps().map(|a| u64::from(a.spec.instances)).sum(),
                instances,
                healthy,
                unhealthy,
                deployments: planner.deployments().count(),
                queued: planner.queue(now_ms).iter().map(|q| u64::from(q.count)).sum(),
            }
        })
        .await?;
    if wants_json(&headers) {
        return metrics_json(&api, &figures);
    }
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("services_apps", "Apps defined.", figures.apps as u64);
    gauge("services_instances_wanted", "Instances the apps ask for.", figures.instances_wanted);
    gauge("services_instances_healthy", "Instances whose health check passes.", figures.healthy);
    gauge("services_instances_unhealthy", "Instances whose health check fails.", figures.unhealthy);
    gauge("services_deployments", "Deployments in progress.", figures.deployments as u64);
    gauge("services_queue_instances", "Instances waiting to be launched.", figures.queued);
    let _ = writeln!(out, "# HELP services_instances Instances known, by task state.\n# TYPE services_instances gauge");
    for state in TaskState::ALL {
        let count = figures.instances.get(state.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "services_instances{{state=\"{}\"}} {count}", state.as_str());
    }
    let _ = writeln!(
        out,
        "# HELP services_http_requests_total HTTP requests answered, by method and status.\n# TYPE services_http_requests_total counter"
    );
    for ((method, status), count) in api.metrics.snapshot() {
        let _ = writeln!(out, "services_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {count}");
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], out)
        .into_response())
}

fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/plain")
}

fn metrics_json(api: &Api, figures: &PlannerFigures) -> Result<Response, ApiError> {
    #[derive(Serialize)]
    struct Value {
        value: u64,
    }
    #[derive(Serialize)]
    struct Count {
        count: u64,
    }
    #[derive(Serialize)]
    struct Metrics {
        gauges: BTreeMap<String, Value>,
        counters: BTreeMap<String, Count>,
    }
    let mut gauges: BTreeMap<String, Value> = [
        ("services.apps", figures.apps as u64),
        ("services.instances.wanted", figures.instances_wanted),
        ("services.instances.healthy", figures.healthy),
        ("services.instances.unhealthy", figures.unhealthy),
        ("services.deployments", figures.deployments as u64),
        ("services.queue.instances", figures.queued),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), Value { value }))
    .collect();
    for state in TaskState::ALL {
        let value = figures.instances.get(state.as_str()).copied().unwrap_or(0);
        gauges.insert(format!("services.instances.{}", state.as_str()), Value { value });
    }
    let counters = api
        .metrics
        .snapshot()
        .into_iter()
        .map(|((method, status), count)| (format!("services.http.requests.{method}.{status}"), Count { count }))
        .collect();
    Ok(json_bytes(StatusCode::OK, to_json(&Metrics { gauges, counters })?))
}

pub(super) async fn info(State(api): State<Api>) -> Result<Response, ApiError> {
    let framework_id = api.read(|planner, _| planner.framework_id().map(|f| f.to_string())).await?;
    let info = &api.info;
    let leader = (info.leader)();
    // Marathon's shape, snake_case inside as Marathon has it; only keys marathon-python
    // knows.
    #[derive(Serialize)]
    struct MarathonConfig<'a> {
        framework_name: &'a str,
        hostname: &'a str,
        ha: bool,
        master: &'a str,
        mesos_role: &'a str,
        mesos_user: &'a str,
        checkpoint: bool,
        executor: &'static str,
        local_port_min: u16,
        local_port_max: u16,
        reconciliation_interval: u64,
        webui_url: Option<&'a str>,
        features: [(); 0],
    }
    #[derive(Serialize)]
    struct HttpConfig {
        http_port: u16,
    }
    #[derive(Serialize)]
    struct ZookeeperConfig {}
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Info<'a> {
        name: &'a str,
        version: &'a str,
        buildref: &'static str,
        elected: bool,
        leader: Option<&'a str>,
        framework_id: Option<String>,
        // Marathon spells these three in snake_case.
        #[serde(rename = "marathon_config")]
        marathon_config: MarathonConfig<'a>,
        #[serde(rename = "zookeeper_config")]
        zookeeper_config: ZookeeperConfig,
        #[serde(rename = "http_config")]
        http_config: HttpConfig,
    }
    let (port_min, port_max, reconcile_ms) = api
        .read(|planner, _| {
            let c = planner.config();
            (c.service_ports.0, c.service_ports.1, c.reconcile_interval_ms)
        })
        .await?;
    let host = info.address.rsplit_once(':').map_or(info.address.as_str(), |(h, _)| h);
    let body = Info {
        name: &info.framework_name,
        version: &info.version,
        buildref: "unknown",
        elected: leader.as_deref() == Some(info.address.as_str()),
        leader: leader.as_deref(),
        framework_id,
        marathon_config: MarathonConfig {
            framework_name: &info.framework_name,
            hostname: host,
            ha: info.ha,
            master: &info.master,
            mesos_role: &info.role,
            mesos_user: &info.user,
            checkpoint: true,
            executor: "//cmd",
            local_port_min: port_min,
            local_port_max: port_max,
            reconciliation_interval: reconcile_ms,
            webui_url: None,
            features: [],
        },
        zookeeper_config: ZookeeperConfig {},
        http_config: HttpConfig { http_port: info.http_port },
    };
    Ok(json_bytes(StatusCode::OK, to_json(&body)?))
}

pub(super) async fn leader(State(api): State<Api>) -> Result<Response, ApiError> {
    #[derive(Serialize)]
    struct Leader {
        leader: String,
    }
    match (api.info.leader)() {
        Some(leader) => Ok(json_bytes(StatusCode::OK, to_json(&Leader { leader })?)),
        None => Err(ApiError::not_found("There is no leader")),
    }
}

/// `DELETE /v2/leader`: the leader steps down so that another process takes over.
pub(super) async fn abdicate(State(api): State<Api>) -> Result<Response, ApiError> {
    let Some(abdicate) = api.info.abdicate.clone() else {
        return Err(ApiError::not_found(
            "This services process does not take part in leader election (start it with --etcd)",
        ));
    };
    abdicate();
    #[derive(Serialize)]
    struct Message {
        message: &'static str,
    }
    Ok(json_bytes(StatusCode::ACCEPTED, to_json(&Message { message: "Leadership abdicated" })?))
}
