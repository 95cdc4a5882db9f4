//! The first hour of a cron user, end to end through `agora cron`'s command line against a
//! master, an agent and `agora cron`: a nightly job and a dependent report added from JSON
//! files, the next times in the job's zone (across a DST change), a run now that the report
//! follows, the history, the list, and a refused definition that names its field.

mod common;

use std::process::{Command, Output};

use common::{AGORA, Cluster, Proc, eventually, free_port, run_bounded};
use serde_json::Value;

struct CronCli {
    url: String,
}

impl CronCli {
    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(AGORA);
        // `--cron` right after the subcommand: `run` takes everything after NAME as arguments.
        command.arg("cron").arg(args[0]).args(["--cron", &self.url]).args(&args[1..]);
        run_bounded(command)
    }

    /// Runs a command that must succeed; answers its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "agora cron {args:?} failed:\n{}", describe(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.insert(1, "--json");
        let text = self.ok(&with_json);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("agora cron {args:?} --json: {e}:\n{text}"))
    }
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nightly_job_and_its_report_are_added_listed_run_and_traced_from_the_command_line() {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent", "cpus:2;mem:1024;disk:1000");
    cluster.wait_for_agents(1).await;
    let port = free_port();
    let work = cluster.dir.path().join("cron");
    let args =
        ["cron", "--master", &cluster.master, "--port", &port.to_string(), "--work-dir", work.to_str().expect("utf-8")];
    let _cron = Proc::spawn("cron", cluster.dir.path(), &args);
    let url = format!("http://127.0.0.1:{port}");
    let metrics = format!("{url}/metrics");
    eventually("agora cron to subscribe", async || {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        text.lines().any(|line| line == "cron_subscribed 1").then_some(())
    })
    .await;
    let cli = CronCli { url };

    let dir = cluster.dir.path();
    let nightly = dir.join("nightly.json");
    std::fs::write(
        &nightly,
        r#"{"name": "nightly-export", "command": "echo exported", "schedule": "0 2 * * *",
            "scheduleTimeZone": "Europe/Paris", "owner": "ops@example.com"}"#,
    )
    .expect("write nightly.json");
    let report = dir.join("report.json");
    std::fs::write(&report, r#"{"name": "daily-report", "command": "echo reported", "parents": ["nightly-export"]}"#)
        .expect("write report.json");

    assert_eq!(
        cli.ok(&["add", nightly.to_str().expect("utf-8")]).trim(),
        "added nightly-export: 0 2 * * * (Europe/Paris)"
    );
    assert_eq!(cli.ok(&["add", report.to_str().expect("utf-8")]).trim(), "added daily-report: after nightly-export");
    assert_eq!(
        cli.ok(&["add", nightly.to_str().expect("utf-8")]).trim(),
        "replaced nightly-export: 0 2 * * * (Europe/Paris)"
    );

    // Paris springs forward on 2026-03-29: 02:00 does not exist, the run is at 03:00.
    let next = cli.ok(&["next", "nightly-export", "--count", "3", "--from", "2026-03-27T12:00:00Z"]);
    assert_eq!(
        next.lines().collect::<Vec<_>>(),
        [
            "next runs of nightly-export (Europe/Paris):",
            "  Sat 2026-03-28 02:00:00 +01:00 (CET)",
            "  Sun 2026-03-29 03:00:00 +02:00 (CEST)",
            "  Mon 2026-03-30 02:00:00 +02:00 (CEST)",
        ],
        "{next}"
    );
    let next = cli.json(&["next", "nightly-export", "--count", "1", "--from", "2026-03-27T12:00:00Z"]);
    assert_eq!(next["times"][0], "2026-03-28T02:00:00+01:00");

    cli.ok(&["run", "nightly-export", "-v", "two words"]);
    let history = eventually("the report to run after the export", async || {
        let history = cli.json(&["history", "daily-report"]);
        (history[0]["state"] == "succeeded").then_some(history)
    })
    .await;
    assert_eq!(history[0]["trigger"], "dependency");
    assert_eq!(history[0]["exitCode"], 0);
    let export = cli.json(&["history", "nightly-export"]);
    assert_eq!(export[0]["trigger"], "manual");
    assert_eq!(export[0]["arguments"], serde_json::json!(["-v", "two words"]));
    assert_eq!(export[0]["state"], "succeeded");
    assert!(export[0]["agent"].is_string(), "{export}");
    let table = cli.ok(&["history", "nightly-export"]);
    assert!(table.starts_with("SCHEDULED"), "{table}");
    assert!(table.lines().nth(1).is_some_and(|line| line.contains("manual") && line.contains("succeeded")), "{table}");

    let list = cli.ok(&["list"]);
    let rows: Vec<&str> = list.lines().collect();
    assert!(rows[0].starts_with("NAME"), "{list}");
    assert!(rows.iter().any(|r| r.starts_with("daily-report") && r.contains("after nightly-export")), "{list}");
    assert!(rows.iter().any(|r| r.starts_with("nightly-export") && r.contains("success")), "{list}");
    let shown = cli.json(&["show", "nightly-export"]);
    assert_eq!(shown["successCount"], 1);
    assert!(cli.ok(&["show", "daily-report"]).contains("after nightly-export"));

    // A definition the server refuses: exit 1, the field named.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"name": "bad", "command": "x", "schedule": "61 * * * *"}"#).expect("write bad.json");
    let refused = cli.run(&["add", bad.to_str().expect("utf-8")]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("schedule: 61 * * * *"), "{}", describe(&refused));

    // Deleting a parent is refused while its child names it, then allowed with --force.
    assert_eq!(cli.run(&["delete", "nightly-export"]).status.code(), Some(1));
    cli.ok(&["delete", "nightly-export", "--force"]);
    cli.ok(&["delete", "daily-report"]);
    assert_eq!(cli.ok(&["list"]).trim(), "no jobs");
}
