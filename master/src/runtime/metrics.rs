//! Prometheus text exposition of the master's state and measurements.

use std::fmt::Write;
use std::time::Duration;

use super::owner::MetricsReport;

/// A cumulative histogram with fixed bucket bounds, as Prometheus expects.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds_ms: &'static [f64],
    counts: Vec<u64>,
    sum_ms: f64,
    count: u64,
}

impl Histogram {
    /// Buckets from 50 µs to 5 s: allocation rounds should sit in the lowest few.
    pub fn allocation_ms() -> Self {
        const BOUNDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];
        Self { bounds_ms: BOUNDS, counts: vec![0; BOUNDS.len()], sum_ms: 0.0, count: 0 }
    }

    pub fn observe(&mut self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        for (bound, count) in self.bounds_ms.iter().zip(self.counts.iter_mut()) {
            if ms <= *bound {
                *count += 1;
            }
        }
        self.sum_ms += ms;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, count) in self.bounds_ms.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", bound / 1000.0);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum_ms / 1000.0);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

fn gauge(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

pub fn render(report: &MetricsReport) -> String {
    let g = &report.gauges;
    let mut out = String::with_capacity(4096);
    gauge(&mut out, "agora_master_agents", "Registered agents.", "gauge", g.agents);
    gauge(&mut out, "agora_master_agents_active", "Agents connected and reachable.", "gauge", g.agents_active);
    gauge(
        &mut out,
        "agora_master_agents_unreachable",
        "Agents that missed their heartbeats.",
        "gauge",
        g.agents_unreachable,
    );
    gauge(&mut out, "agora_master_frameworks", "Frameworks known to the master.", "gauge", g.frameworks);
    gauge(
        &mut out,
        "agora_master_frameworks_active",
        "Frameworks with a subscribed stream.",
        "gauge",
        g.frameworks_active,
    );
    gauge(
        &mut out,
        "agora_master_frameworks_completed",
        "Frameworks torn down or timed out.",
        "gauge",
        g.frameworks_completed,
    );
    gauge(
        &mut out,
        "agora_master_outstanding_offers",
        "Offers sent and not yet answered.",
        "gauge",
        g.outstanding_offers,
    );

    labelled(
        &mut out,
        "agora_master_tasks",
        "Tasks by state (terminal ones as far as they are kept).",
        "state",
        g.tasks.iter().map(|(state, count)| (state.as_str(), *count)),
    );

    let c = &g.counters;
    for (name, help, value) in [
        ("agora_master_offers_sent_total", "Offers sent to frameworks.", c.offers_sent),
        ("agora_master_offers_accepted_total", "Offers accepted.", c.offers_accepted),
        ("agora_master_offers_declined_total", "Offers declined.", c.offers_declined),
        ("agora_master_offers_rescinded_total", "Offers rescinded.", c.offers_rescinded),
        ("agora_master_tasks_launched_total", "Tasks sent to agents.", c.tasks_launched),
        ("agora_master_tasks_dropped_total", "Launches answered TASK_DROPPED.", c.tasks_dropped),
        ("agora_master_tasks_errored_total", "Launches answered TASK_ERROR.", c.tasks_errored),
        ("agora_master_allocation_runs_total", "Allocation rounds run.", c.allocation_runs),
        ("agora_master_agents_unreachable_total", "Times an agent became unreachable.", c.agents_unreachable),
        ("agora_master_agents_removed_total", "Agents declared gone after the re-register timeout.", c.agents_removed),
        (
            "agora_master_owner_requests_total",
            "Requests applied to the master's state (each acknowledgement of an ACKNOWLEDGE_MANY counted).",
            report.owner.requests,
        ),
    ] {
        gauge(&mut out, name, help, "counter", value);
    }
    gauge(
        &mut out,
        "agora_master_uptime_seconds",
        "Seconds since the master started.",
        "gauge",
        report.now_ms.saturating_sub(report.start_time_ms) as f64 / 1000.0,
    );
    report.allocation_latency.write(&mut out, "agora_master_allocation_seconds", "Time an allocation round takes.");
    let owner = &report.owner;
    gauge(
        &mut out,
        "agora_master_owner_busy_seconds_total",
        "Time the task that owns the master's state spent working (applying requests, allocating, delivering).",
        "counter",
        owner.busy.as_secs_f64(),
    );
    labelled(
        &mut out,
        "agora_master_event_queue",
        "Requests waiting for the master's state, by lane.",
        "lane",
        [("calls", owner.queued_calls), ("reports", owner.queued_reports)],
    );
    out
}

/// The figures Agora keeps under Mesos' metric names (`master/tasks_running`, …), for
/// the operator API's GET_METRICS.
pub fn mesos_snapshot(report: &MetricsReport) -> Vec<(String, f64)> {
    let g = &report.gauges;
    let c = &g.counters;
    let n = |v: usize| v as f64;
    let mut out = vec![
        ("master/elected".to_owned(), 1.0),
        ("master/uptime_secs".to_owned(), report.now_ms.saturating_sub(report.start_time_ms) as f64 / 1000.0),
        ("master/slaves_active".to_owned(), n(g.agents_active)),
        ("master/slaves_connected".to_owned(), n(g.agents_active)),
        ("master/slaves_disconnected".to_owned(), n(g.agents.saturating_sub(g.agents_active))),
        ("master/slaves_unreachable".to_owned(), n(g.agents_unreachable)),
        ("master/slave_removals".to_owned(), c.agents_removed as f64),
        ("master/frameworks_active".to_owned(), n(g.frameworks_active)),
        ("master/frameworks_connected".to_owned(), n(g.frameworks_active)),
        ("master/frameworks_disconnected".to_owned(), n(g.frameworks.saturating_sub(g.frameworks_active))),
        ("master/frameworks_inactive".to_owned(), n(g.frameworks.saturating_sub(g.frameworks_active))),
        ("master/outstanding_offers".to_owned(), n(g.outstanding_offers)),
        ("allocator/mesos/allocation_runs".to_owned(), c.allocation_runs as f64),
    ];
    for (state, count) in &g.tasks {
        let name = state.as_str().trim_start_matches("TASK_").to_ascii_lowercase();
        out.push((format!("master/tasks_{name}"), n(*count)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A gauge with one series per value of `label`.
fn labelled<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (&'static str, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (value_of_label, value) in series {
        let _ = writeln!(out, "{name}{{{label}=\"{value_of_label}\"}} {value}");
    }
}
