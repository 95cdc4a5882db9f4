//! End to end: the operator's CLI (`agora agents|frameworks|tasks|task …|framework
//! teardown|completions`) against `agora local`, each command's table and `--json`;
//! `agora run` streaming what its task prints; and bad flags and masters failing at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{AGORA, Cluster, Proc, eventually, run_bounded};
use serde_json::Value;

/// `agora ARGS` with `AGORA_MASTER` set to `master` (or unset).
fn agora(master: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(AGORA);
    command.args(args).env("RUST_LOG", "warn").env("USER", "root").env_remove("AGORA_MASTER");
    if let Some(master) = master {
        command.env("AGORA_MASTER", master);
    }
    run_bounded(command)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn describe(output: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", output.status, stdout(output), stderr(output))
}

/// `agora run --master M ARGS` in the cluster's directory, so that a background run
/// (`--detach`) is ended with the cluster if the test fails.
fn run(cluster: &Cluster, args: &[&str]) -> Output {
    let mut command = Command::new(AGORA);
    command.arg("run").arg("--master").arg(&cluster.master).args(args);
    command.current_dir(cluster.dir.path()).env("RUST_LOG", "warn").env("USER", "root");
    run_bounded(command)
}

/// Runs a command that must succeed; its stdout.
fn ok(master: &str, args: &[&str]) -> String {
    let output = agora(Some(master), args);
    assert!(output.status.success(), "agora {args:?}: {}", describe(&output));
    stdout(&output)
}

fn json(master: &str, args: &[&str]) -> Value {
    let text = ok(master, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("agora {args:?}: not JSON ({e}): {text}"))
}

/// The directory called `name` somewhere under `root` (a task's sandbox).
fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
        if let Some(found) = find_dir(&path, name) {
            return Some(found);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_lists_reads_and_kills_without_curl() {
    let cluster = Cluster::local(2).await;
    let m = cluster.master.as_str();

    // `agora run` with one instance: the task's stdout is ours, its stderr goes to our
    // stderr, its exit code is ours, and a failure says where the sandbox is.
    let hello = cluster.run(&["--name", "hello", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(hello.status.code(), Some(3), "{}", describe(&hello));
    assert_eq!(stdout(&hello), "out\n", "{}", describe(&hello));
    let said = stderr(&hello);
    assert!(said.contains("\nerr\n"), "{said}");
    assert!(said.contains("TASK_FAILED"), "{said}");
    assert!(said.contains("hello-0 failed; its sandbox is "), "{said}");
    assert!(said.contains("`agora task log hello-0 --framework "), "{said}");

    // Several instances with --follow: every line prefixed with its task, the state
    // changes on stdout as before.
    let pair =
        cluster.run(&["--name", "pair", "--instances", "2", "--follow", "--", "sh", "-c", "echo hi; echo oh >&2"]);
    assert!(pair.status.success(), "{}", describe(&pair));
    let out = stdout(&pair);
    for line in ["[pair-0] hi\n", "[pair-1] hi\n", "task pair-1 TASK_FINISHED"] {
        assert!(out.contains(line), "{line:?} in {}", describe(&pair));
    }
    assert!(stderr(&pair).contains("[pair-0] oh\n"), "{}", describe(&pair));

    // Agents: a table and JSON.
    let table = ok(m, &["agents"]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["ID", "ADDRESS", "STATE", "CPUS", "MEM", "DISK", "TASKS", "ATTRIBUTES"], "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[1..].iter().all(|l| l.contains(" active ")), "{table}");
    let agents = json(m, &["agents", "--json"]);
    let agent = agents["agents"][0].clone();
    assert_eq!(agents["agents"].as_array().map(Vec::len), Some(2), "{agents}");
    let agent_id = agent["id"].as_str().expect("an agent id");
    let shown = ok(m, &["agent", "show", agent_id]);
    assert!(shown.starts_with(&format!("id:          {agent_id}\n")), "{shown}");
    assert!(shown.contains("state:       active"), "{shown}");
    assert_eq!(json(m, &["agent", "show", agent_id, "--json"])["id"], agent_id);
    let missing = agora(Some(m), &["agent", "show", "no-such-agent"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing).trim(), "agora agent show: no agent no-such-agent (`agora agents` lists them)");

    // Tasks: the live ones by default (none now), all with --all, filtered by state.
    assert_eq!(ok(m, &["tasks"]).trim(), "no tasks");
    let all = ok(m, &["tasks", "--all"]);
    let row = all.lines().find(|l| l.starts_with("hello-0 ")).unwrap_or_else(|| panic!("hello-0 listed: {all}"));
    assert!(row.contains("TASK_FAILED"), "{all}");
    let failed = json(m, &["tasks", "--state", "failed", "--json"]);
    assert_eq!(failed["tasks"][0]["id"], "hello-0", "{failed}");
    let finished = json(m, &["tasks", "--state", "finished", "--json"]);
    let mut ids: Vec<&str> =
        finished["tasks"].as_array().into_iter().flatten().filter_map(|t| t["id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["pair-0", "pair-1"], "only the pair finished: {finished}");
    let bad = agora(Some(m), &["tasks", "--state", "done"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    assert!(stderr(&bad).contains("\"done\" is not a task state"), "{}", describe(&bad));

    // One task: where it ran, its sandbox, its history; its files.
    let show = ok(m, &["task", "show", "hello-0"]);
    assert!(show.contains("state:       TASK_FAILED"), "{show}");
    assert!(show.contains("Command exited with status 3"), "{show}");
    let detail = json(m, &["task", "show", "hello-0", "--json"]);
    let sandbox = detail["sandbox"].as_str().expect("a sandbox").to_owned();
    assert!(sandbox.ends_with("/hello-0"), "{detail}");
    assert_eq!(ok(m, &["task", "log", "hello-0"]), "out\n");
    assert_eq!(ok(m, &["task", "log", "hello-0", "--stderr"]), "err\n");
    assert_eq!(ok(m, &["task", "cat", "hello-0", "stderr"]), "err\n");
    let listing = ok(m, &["task", "ls", "hello-0"]);
    assert!(listing.starts_with("MODE") && listing.contains(" stdout\n") && listing.contains(" stderr\n"), "{listing}");
    let entries = json(m, &["task", "ls", "hello-0", "--json"]);
    assert!(entries.as_array().is_some_and(|e| e.iter().any(|e| e["path"] == format!("{sandbox}/stdout"))));
    let outside = agora(Some(m), &["task", "cat", "hello-0", "../../etc/passwd"]);
    assert_eq!(outside.status.code(), Some(1), "{}", describe(&outside));
    let unknown = agora(Some(m), &["task", "log", "nope"]);
    assert_eq!(
        stderr(&unknown).trim(),
        "agora task log: no task nope is known to the master (`agora tasks --all` lists them)"
    );

    // `task log --follow` prints what a running task writes after it started, and ends
    // once the task has ended. The task waits for a file the test makes in its sandbox.
    let detached = run(
        &cluster,
        &[
            "--name",
            "talker",
            "--detach",
            "--",
            "sh",
            "-c",
            "echo first; while [ ! -e go ]; do sleep 0.05; done; echo second; echo third",
        ],
    );
    assert!(detached.status.success(), "{}", describe(&detached));
    assert_eq!(stdout(&detached), "talker-0\n", "--detach prints the task ids");
    let follower = Proc::spawn_with_stdout(
        "follower",
        cluster.dir.path(),
        &["task", "log", "talker-0", "--follow", "--master", m],
    );
    let out = follower.out.clone().expect("its own stdout");
    eventually("the follower to print the first line", async || {
        std::fs::read_to_string(&out).ok().filter(|t| t == "first\n")
    })
    .await;
    let task_dir = find_dir(cluster.dir.path(), "talker-0").expect("the sandbox on disk");
    std::fs::write(task_dir.join("go"), "").expect("write the go file");
    let mut follower = follower;
    let deadline = Instant::now() + common::WAIT;
    let status = loop {
        if let Some(status) = follower.exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "task log --follow did not end with its task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{}", follower.log_text());
    assert_eq!(std::fs::read_to_string(&out).expect("output"), "first\nsecond\nthird\n");
    assert_eq!(ok(m, &["task", "log", "talker-0", "--tail", "2"]), "second\nthird\n");

    // Kill a task and tear a framework down, as an operator.
    let sleeper = run(&cluster, &["--name", "sleeper", "--instances", "2", "--detach", "--", "sleep", "300"]);
    assert!(sleeper.status.success(), "{}", describe(&sleeper));
    assert_eq!(stdout(&sleeper), "sleeper-0\nsleeper-1\n");
    eventually("the sleepers to run", async || {
        let tasks = json(m, &["tasks", "--state", "running", "--json"]);
        (tasks["tasks"].as_array()?.len() == 2).then_some(())
    })
    .await;
    let table = ok(m, &["tasks"]);
    assert!(table.lines().any(|l| l.starts_with("sleeper-0 ") && l.contains("TASK_RUNNING")), "{table}");
    let killed = ok(m, &["task", "kill", "sleeper-0"]);
    assert!(killed.starts_with("task sleeper-0 is being killed"), "{killed}");
    eventually("the sleeper to be killed", async || {
        let tasks = json(m, &["tasks", "--state", "killed", "--json"]);
        tasks["tasks"].as_array().and_then(|t| t.iter().find(|t| t["id"] == "sleeper-0")).map(|_| ())
    })
    .await;
    let again = agora(Some(m), &["task", "kill", "sleeper-0"]);
    assert!(
        stderr(&again).starts_with("agora task kill: KILL_TASK: 404 Not Found: kill_task.task_id: "),
        "{}",
        describe(&again)
    );

    let frameworks = json(m, &["frameworks", "--json"]);
    let sleeper_framework = frameworks["frameworks"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "sleeper"))
        .unwrap_or_else(|| panic!("the detached framework is live: {frameworks}"))["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let table = ok(m, &["frameworks"]);
    assert!(table.starts_with("ID") && table.contains("sleeper"), "{table}");
    let torn = ok(m, &["framework", "teardown", &sleeper_framework]);
    assert!(torn.starts_with(&format!("framework {sleeper_framework} is torn down")), "{torn}");
    let everything = json(m, &["frameworks", "--all", "--json"]);
    let completed = everything["completed_frameworks"].as_array().expect("completed frameworks");
    assert!(completed.iter().any(|f| f["id"] == sleeper_framework.as_str()), "{everything}");
    let table = ok(m, &["frameworks", "--all"]);
    assert!(table.lines().any(|l| l.starts_with(&sleeper_framework) && l.contains("completed")), "{table}");
    let shown = json(m, &["task", "show", "sleeper-1", "--json"]);
    assert_eq!(shown["state"], "TASK_KILLED", "a teardown kills what is left: {shown}");

    // KILL_TASK as any client sends it: a call without its task is refused naming the field.
    let refused = reqwest::Client::new()
        .post(cluster.url("/api/v1"))
        .json(&serde_json::json!({"type": "KILL_TASK", "kill_task": {"framework_id": {"value": "f"}}}))
        .send()
        .await
        .expect("the master answers");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["details"][0]["field"], "kill_task.task_id.value", "{body}");

    // Several masters: one that refuses passes the call to the next.
    let closed = common::free_port();
    let listed = ok(&format!("127.0.0.1:{closed},{m}"), &["agents", "--json"]);
    assert!(listed.contains(agent_id), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_and_absent_masters_fail_at_once_in_one_line() {
    let closed = common::free_port();
    let absent = format!("127.0.0.1:{closed}");
    let started = Instant::now();

    let mistyped = agora(Some(&absent), &["run", "--cpu", "1", "--", "echo"]);
    assert_eq!(mistyped.status.code(), Some(2), "{}", describe(&mistyped));
    let said = stderr(&mistyped);
    assert!(said.contains("unexpected argument '--cpu'") && said.contains("'--cpus'"), "{said}");

    let no_port = agora(None, &["run", "--master", "localhost", "--", "true"]);
    assert_eq!(no_port.status.code(), Some(1));
    assert_eq!(stderr(&no_port).trim(), "agora: --master: expected HOST:PORT (like 127.0.0.1:5050), got \"localhost\"");

    let refused = agora(Some(&absent), &["run", "--", "true"]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    let said = stderr(&refused);
    let last = said.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("agora: cannot reach the master at {absent}: ")), "{said}");
    assert!(!said.contains("killing"), "{said}");

    for command in [&["agents"][..], &["tasks"], &["frameworks"], &["task", "log", "x"]] {
        let output = agora(Some(&absent), command);
        assert_eq!(output.status.code(), Some(1), "{command:?}: {}", describe(&output));
        let line = stderr(&output);
        assert_eq!(line.lines().count(), 1, "{command:?}: {line}");
        assert!(line.contains(&format!("cannot reach the master at http://{absent}: ")), "{command:?}: {line}");
    }
    assert!(started.elapsed() < Duration::from_secs(20), "each failed at once: {:?}", started.elapsed());

    let completions = agora(None, &["completions", "bash"]);
    assert!(completions.status.success());
    assert!(stdout(&completions).contains("agora__subcmd__task__subcmd__log"), "a bash script naming the subcommands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agora_run_exits_143_on_sigterm_and_130_on_ctrl_c_without_killing_nothing() {
    // No agents: the run waits for offers until it is interrupted, with no task to kill.
    let cluster = Cluster::master_only(&[]).await;
    let m = cluster.master.clone();
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let name = format!("waiting-{signal}");
        let mut run = Proc::spawn(&name, cluster.dir.path(), &["run", "--master", &m, "--name", &name, "--", "true"]);
        eventually("the run to wait for offers", async || run.log_text().contains("waiting for offers").then_some(()))
            .await;
        run.signal(signal);
        let deadline = Instant::now() + common::WAIT;
        let status = loop {
            if let Some(status) = run.exited() {
                break status;
            }
            assert!(Instant::now() < deadline, "agora run did not exit after SIG{signal}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(code), "SIG{signal}: {}", run.log_text());
        let log = run.log_text();
        assert!(log.contains("interrupted; no task is running"), "{log}");
        assert!(!log.contains("killing 0 task(s)"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_the_checkpoint_of_a_finished_run_says_to_remove_it() {
    let cluster = Cluster::local(1).await;
    let checkpoint = cluster.dir.path().join("job.checkpoint");
    let path = checkpoint.to_str().expect("utf-8 path");
    let first = cluster.run(&["--name", "job", "--checkpoint", path, "--", "true"]);
    assert!(first.status.success(), "{}", describe(&first));
    let again = cluster.run(&["--name", "job", "--checkpoint", path, "--", "true"]);
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert_eq!(
        stderr(&again).trim(),
        format!("agora: --checkpoint {path}: this run has finished (every task ended); remove {path} to run it again")
    );
}
