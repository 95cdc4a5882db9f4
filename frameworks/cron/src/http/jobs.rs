//! Chronos' job endpoints, and Agora's `next` and `history` beside them.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::json;

use super::{Api, CronApi, Params, body_bytes, json_bytes, text, to_json};
use crate::chronos::ApiError;
use crate::chronos::job::{Endpoint, parse_body};
use crate::chronos::render;
use crate::core::Command;
use crate::model::{
    JobName, MAX_ARGUMENT_LEN, MAX_ARGUMENTS, MAX_HISTORY_REQUEST, MAX_JOBS, RunRecord, check_job_name,
};
use crate::schedule::MAX_NEXT_COUNT;

/// How many jobs `jobs/search` answers when no `limit` is given (Chronos' default).
const DEFAULT_SEARCH_LIMIT: usize = 10;
/// How many times `next` answers when no `count` is given.
const DEFAULT_NEXT_COUNT: usize = 10;
/// How many runs `history` answers when no `limit` is given.
const DEFAULT_HISTORY_LIMIT: usize = 20;

/// A job name from the path: an invalid one names no job, so it is "not found" as in
/// Chronos (whose lookup simply fails).
fn job_name(name: &str) -> Result<JobName, ApiError> {
    check_job_name(name).map_err(|_| ApiError::job_not_found(name))?;
    Ok(JobName::new(name))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `GET jobs`: every job with its counters, in name order.
pub(super) async fn list<A: CronApi>(State(api): State<Api<A>>) -> Result<Response, ApiError> {
    api.render(|cron, _| {
        let views: Vec<_> = cron.jobs().map(|job| render::job_view(&job.spec, &job.counters)).collect();
        to_json(&views)
    })
    .await
}

/// `GET jobs/search?name=&command=&any=&limit=&offset=`: Chronos' case-insensitive
/// substring search (a job whose name and command hold `name` and `command`, or either of
/// which holds `any`), 10 answers unless `limit` says otherwise.
pub(super) async fn search<A: CronApi>(State(api): State<Api<A>>, uri: Uri) -> Result<Response, ApiError> {
    let params = Params::parse(uri.query());
    let lower = |key: &str| params.get(key).filter(|v| !v.is_empty()).map(str::to_lowercase);
    let (name, command, any) = (lower("name"), lower("command"), lower("any"));
    let limit = params.number("limit", 0, MAX_JOBS, DEFAULT_SEARCH_LIMIT)?;
    let offset = params.number("offset", 0, MAX_JOBS, 0)?;
    api.render(move |cron, _| {
        let views: Vec<_> = cron
            .jobs()
            .filter(|job| {
                let job_name = job.spec.name.as_str().to_lowercase();
                let job_command = job.spec.command.to_lowercase();
                let by_fields = name.as_ref().is_none_or(|n| job_name.contains(n.as_str()))
                    && command.as_ref().is_none_or(|c| job_command.contains(c.as_str()));
                let by_any =
                    any.as_ref().is_some_and(|a| job_name.contains(a.as_str()) || job_command.contains(a.as_str()));
                // As Chronos: a job matching `any` is found whatever `name` and `command`
                // say; but `any` alone finds only its matches (Chronos found every job).
                if any.is_some() && name.is_none() && command.is_none() { by_any } else { by_fields || by_any }
            })
            .skip(offset)
            .take(limit)
            .map(|job| render::job_view(&job.spec, &job.counters))
            .collect();
        to_json(&views)
    })
    .await
}

/// `GET jobs/summary`: what Chronos' web UI lists.
pub(super) async fn summary<A: CronApi>(State(api): State<Api<A>>) -> Result<Response, ApiError> {
    api.render(|cron, _| {
        let jobs: Vec<_> = cron
            .jobs()
            .map(|job| {
                let active: Vec<&RunRecord> = cron.active_runs(&job.spec.name).collect();
                render::summary(&job.spec, &job.counters, &render::current_state(&active))
            })
            .collect();
        to_json(&json!({ "jobs": jobs }))
    })
    .await
}

/// `POST`/`PUT iso8601`: creates or replaces a scheduled job.
pub(super) async fn put_scheduled<A: CronApi>(
    State(api): State<Api<A>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    put_job(api, headers, body, Endpoint::Iso8601).await
}

/// `POST`/`PUT dependency`: creates or replaces a dependent job.
pub(super) async fn put_dependent<A: CronApi>(
    State(api): State<Api<A>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    put_job(api, headers, body, Endpoint::Dependency).await
}

/// A job definition must say it is JSON, as Chronos requires (415 otherwise): a browser
/// may send a page's cross-site form or `text/plain` POST without asking first, and such
/// a request must not be able to define a job that runs a command.
fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/json" || (media.starts_with("application/") && media.ends_with("+json")) {
        return Ok(());
    }
    let given = if value.is_empty() { "none".to_owned() } else { format!("'{value}'") };
    Err(ApiError {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        message: format!("Content-Type: a job definition is application/json (given: {given})"),
        details: vec![crate::chronos::Detail {
            path: "Content-Type".into(),
            errors: vec![format!("expected application/json, given {given}")],
        }],
    })
}

async fn put_job<A: CronApi>(
    api: Api<A>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    json_content_type(&headers)?;
    let body = body_bytes(body)?;
    let spec = parse_body(&body, endpoint, Timestamp::now())?;
    api.command(Command::PutJob(Box::new(spec))).await?;
    Ok(no_content())
}

/// `GET job/{name}`: the job with its counters.
pub(super) async fn get<A: CronApi>(State(api): State<Api<A>>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    api.render(move |cron, _| match cron.job(&name) {
        Some(job) => to_json(&render::job_view(&job.spec, &job.counters)),
        None => Err(ApiError::job_not_found(name.as_str())),
    })
    .await
}

/// `PUT job/{name}?arguments=…`: runs the job now. Chronos' `arguments` is one string,
/// split at whitespace; Agora's `argument` (repeatable) is taken as it is, spaces and all.
pub(super) async fn run<A: CronApi>(
    State(api): State<Api<A>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    let params = Params::parse(uri.query());
    let mut arguments: Vec<String> =
        params.all("arguments").flat_map(str::split_whitespace).map(str::to_owned).collect();
    arguments.extend(params.all("argument").map(str::to_owned));
    if arguments.len() > MAX_ARGUMENTS {
        return Err(ApiError::invalid_field(
            "?arguments",
            format!("{} arguments; at most {MAX_ARGUMENTS} are allowed", arguments.len()),
        ));
    }
    if let Some(long) = arguments.iter().find(|a| a.len() > MAX_ARGUMENT_LEN) {
        return Err(ApiError::invalid_field(
            "?arguments",
            format!("an argument is {} bytes long; at most {MAX_ARGUMENT_LEN} are allowed", long.len()),
        ));
    }
    api.command(Command::RunNow { name, arguments }).await?;
    Ok(no_content())
}

/// `DELETE job/{name}[?force=true]`: deletes the job; refused while it has children
/// unless forced.
pub(super) async fn delete<A: CronApi>(
    State(api): State<Api<A>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    let force = Params::parse(uri.query()).flag("force", false)?;
    api.command(Command::DeleteJob { name, force }).await?;
    Ok(no_content())
}

/// `GET job/stat/{name}`: Chronos' histogram of run times and its task history.
pub(super) async fn stat<A: CronApi>(
    State(api): State<Api<A>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    let runs = api.runs(name.clone()).await?;
    Ok(json_bytes(to_json(&render::job_stat(&name, &runs))?))
}

/// `PUT job/success/{name}`: counts a success now; the job's children may start.
/// Answers `true`, as Chronos documents.
pub(super) async fn mark_success<A: CronApi>(
    State(api): State<Api<A>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    api.command(Command::MarkSuccess { name }).await?;
    Ok(json_bytes(b"true".to_vec()))
}

/// `DELETE task/kill/{name}`: kills every run of the job in flight.
pub(super) async fn kill<A: CronApi>(
    State(api): State<Api<A>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    api.command(Command::KillRuns { name }).await?;
    Ok(no_content())
}

/// `GET graph/dot`, as text.
pub(super) async fn graph_dot<A: CronApi>(State(api): State<Api<A>>) -> Result<Response, ApiError> {
    let dot = api.read(|cron, _| render::graph_dot(&cron.jobs().map(|job| &job.spec).collect::<Vec<_>>())).await?;
    Ok(text(dot))
}

/// `GET graph/csv`, as text: Chronos' node and link lines.
pub(super) async fn graph_csv<A: CronApi>(State(api): State<Api<A>>) -> Result<Response, ApiError> {
    let csv = api
        .read(|cron, _| {
            render::graph_csv(cron.jobs().map(|job| {
                let active: Vec<&RunRecord> = cron.active_runs(&job.spec.name).collect();
                (&job.spec, &job.counters, render::current_state(&active))
            }))
        })
        .await?;
    Ok(text(csv))
}

/// `GET stats/{percentile}`: jobs by that percentile of their run times, slowest first.
pub(super) async fn stats<A: CronApi>(
    State(api): State<Api<A>>,
    Path(percentile): Path<String>,
) -> Result<Response, ApiError> {
    if !render::PERCENTILES.contains(&percentile.as_str()) {
        return Err(ApiError::invalid_field(
            "/percentile",
            format!("'{percentile}' is not one of {}", render::PERCENTILES.join(", ")),
        ));
    }
    api.render(move |cron, _| {
        let rows = cron
            .jobs()
            .map(|job| (job.spec.name.clone(), render::Durations::from_millis(cron.durations_ms(&job.spec.name))));
        to_json(&render::stats(&percentile, rows))
    })
    .await
}

/// `GET job/{name}/next?count=N&from=RFC3339`: the next `count` scheduled times strictly
/// after `from` (default now), with the schedule zone's offset.
pub(super) async fn next<A: CronApi>(
    State(api): State<Api<A>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    let params = Params::parse(uri.query());
    let count = params.number("count", 1, MAX_NEXT_COUNT, DEFAULT_NEXT_COUNT)?;
    let from = match params.get("from") {
        None => None,
        Some(text) => Some(text.parse::<Timestamp>().map_err(|e| {
            ApiError::invalid_field("?from", format!("'{text}' is not an RFC 3339 time with an offset: {e}"))
        })?),
    };
    api.render(move |cron, now| {
        let job = cron.job(&name).ok_or_else(|| ApiError::job_not_found(name.as_str()))?;
        let Some(schedule) = job.spec.schedule() else {
            let parents: Vec<&str> = job.spec.parents().iter().map(JobName::as_str).collect();
            return Err(ApiError::invalid_field(
                "/schedule",
                format!("job '{name}' has no schedule: it runs after its parents ({})", parents.join(", ")),
            ));
        };
        let times = schedule.next_n(from.unwrap_or(now), count);
        to_json(&render::next_times(&job.spec, &times))
    })
    .await
}

/// `GET job/{name}/history?limit=N`: the job's runs, in flight and kept, newest first.
pub(super) async fn history<A: CronApi>(
    State(api): State<Api<A>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = job_name(&name)?;
    let limit = Params::parse(uri.query()).number("limit", 1, MAX_HISTORY_REQUEST, DEFAULT_HISTORY_LIMIT)?;
    let mut runs = api.runs(name).await?;
    // Newest first, by when each run was recorded, then by its scheduled time.
    runs.sort_by(|a, b| (a.recorded_at, &a.key).cmp(&(b.recorded_at, &b.key)));
    let keep = runs.len().saturating_sub(limit);
    Ok(json_bytes(to_json(&render::history(&runs[keep..]))?))
}
