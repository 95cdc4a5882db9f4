//! Chaos: three masters on a real etcd, three agents and a framework (`agora run` with a
//! checkpoint), all real processes, SIGKILLed and restarted in a seeded random order for a
//! bounded time while short jobs come and go. Then, once everything is back, the
//! invariants of "nothing lost": no long-running task was killed or restarted (same
//! process), none was reported ended, every update the agents produced reached the
//! framework, the leader knows every agent and the framework under their old ids, and
//! every short job ended exactly once.
//!
//! A second, quick test checks the piece the chaos relies on for the framework: `agora
//! run` SIGKILLed and started again on its `--checkpoint` resumes as the same framework.
//!
//! `AGORA_CHAOS_SECS` (default 30) sets how long the chaos lasts; `AGORA_CHAOS_SEED`
//! replays a run (a failure prints the seed it used).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::etcd::Etcd;
use common::masters::Masters;
use common::run::RunProc;
use common::{Cluster, alive, eventually, eventually_with, get_json, kill_processes_under};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const DEFAULT_SECS: u64 = 30;
const AGENTS: usize = 3;
const MASTERS: usize = 3;
/// Long-running tasks of the framework that is killed over and over.
const LONG_TASKS: u32 = 6;
const RESOURCES: &str = "cpus:4;mem:4096;disk:1000;ports:[31000-31100]";
/// Quick failure detection, but an agent timeout far longer than an agent restart (or a
/// leader failover) takes: no agent should ever look unreachable here.
const MASTER_FLAGS: [&str; 8] = [
    "--etcd-lease-ttl",
    "2s",
    "--agent-heartbeat-interval",
    "200ms",
    "--agent-timeout",
    "20s",
    "--framework-heartbeat-interval",
    "1s",
];
/// States a long-running task may be reported in; anything else means it was lost, killed
/// or ended (TASK_UNREACHABLE is tolerated on the way, but the last word must be RUNNING).
const LIVE_STATES: [&str; 4] = ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_UNREACHABLE"];
/// Ends a short job may legitimately have without running: its launch never reached an
/// agent (the offer's agent went away first), which the test checks by its marker file.
const NEVER_RAN: [&str; 3] = ["TASK_DROPPED", "TASK_GONE", "TASK_LOST"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Chaos {
    KillLeader,
    KillAgent,
    KillFramework,
    StartShortJob,
    /// SIGKILL a short job still running and start it again on its checkpoint.
    KillShortJob,
}

/// Prints how to replay the run when the test fails.
struct Replay {
    seed: u64,
    secs: u64,
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("chaos failed: replay with AGORA_CHAOS_SEED={} AGORA_CHAOS_SECS={}", self.seed, self.secs);
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")))
}

/// A short job: an `agora run` of its own whose one task marks that it ran and finishes.
struct ShortJob {
    run: RunProc,
    marker: std::path::PathBuf,
}

impl ShortJob {
    fn start(dir: &Path, index: usize, masters: &str) -> ShortJob {
        let name = format!("short{index}");
        let marker = dir.join("ran").join(&name);
        let command = format!("touch {}; sleep 2", marker.display());
        let run = RunProc::start(dir, &name, masters, &["--shell"], &[&command]);
        ShortJob { run, marker }
    }

    fn task_id(&self) -> String {
        format!("{}-0", self.run.name)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn components_killed_at_random_lose_no_task_and_no_update() {
    let seed = env_u64("AGORA_CHAOS_SEED").unwrap_or_else(rand::random);
    let secs = env_u64("AGORA_CHAOS_SECS").unwrap_or(DEFAULT_SECS);
    let _replay = Replay { seed, secs };
    eprintln!("chaos: AGORA_CHAOS_SEED={seed} AGORA_CHAOS_SECS={secs}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();

    let etcd = Etcd::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    std::fs::create_dir(dir.join("ran")).expect("marker dir");
    let _reaper = Reaper { dir: dir.to_owned(), seed };
    let mut masters = Masters::start(&etcd, dir, MASTERS, &MASTER_FLAGS);
    let list = masters.list();
    let leader = masters.leader().await;
    let mut agents: Vec<Agent> =
        (0..AGENTS).map(|i| Agent::start(dir, &format!("agent{i}"), &list, RESOURCES)).collect();
    let leader_url = format!("http://{}/state", masters.addrs[leader]);
    eventually("every agent on the leader", async || {
        let state = get_json(&leader_url).await?;
        let active = state["slaves"].as_array()?.iter().filter(|a| a["active"] == true).count();
        (active == AGENTS).then_some(())
    })
    .await;

    let instances = LONG_TASKS.to_string();
    let mut framework = RunProc::start(dir, "chaos", &list, &["--instances", &instances], &["sleep", "100000"]);
    let long_tasks: Vec<String> = (0..LONG_TASKS).map(|i| format!("chaos-{i}")).collect();
    eventually("every long task RUNNING at the framework", async || {
        long_tasks.iter().all(|t| framework.states(t).iter().any(|s| s == "TASK_RUNNING")).then_some(())
    })
    .await;

    // What must survive: agent ids, the framework id, and each task's process on its agent.
    let before = eventually("the leader's view of the cluster", async || {
        let leader = masters.leading().await?;
        let state = get_json(&format!("http://{}/state", masters.addrs[leader])).await?;
        let view = ClusterView::of(&state)?;
        (view.agents.len() == AGENTS && view.tasks.len() == long_tasks.len()).then_some(view)
    })
    .await;
    let framework_id = framework.framework_ids().first().cloned().expect("subscribed");
    assert_eq!(before.framework_ids, BTreeSet::from([framework_id.clone()]), "{before:?}");
    let pids = eventually("every long task's pid on its agent", async || task_pids(&agents).await).await;
    assert_eq!(pids.keys().cloned().collect::<Vec<_>>(), sorted(&long_tasks), "{pids:?}");
    eprintln!("chaos: cluster up after {:?}; chaos for {secs} s", started.elapsed());

    // The chaos: kinds in a seeded random order, every kind in every round of the bag.
    let mut kills: BTreeMap<Chaos, usize> = BTreeMap::new();
    let mut self_exits = Vec::new();
    let mut short_jobs: Vec<ShortJob> = Vec::new();
    let mut bag: Vec<Chaos> = Vec::new();
    let chaos_until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < chaos_until {
        if bag.is_empty() {
            bag = vec![Chaos::KillLeader, Chaos::KillAgent, Chaos::KillAgent, Chaos::KillFramework];
            bag.extend([Chaos::StartShortJob, Chaos::StartShortJob, Chaos::KillShortJob]);
            bag.shuffle(&mut rng);
        }
        let chaos = bag.pop().expect("refilled above");
        match chaos {
            Chaos::KillLeader => {
                let leader = masters.leader().await;
                masters.kill_and_restart(leader);
            }
            Chaos::KillAgent => {
                let index = rng.random_range(0..AGENTS);
                agents[index].kill();
                pause(&mut rng, 0..1_500).await;
                agents[index].spawn();
            }
            Chaos::KillFramework => {
                framework.kill();
                pause(&mut rng, 0..1_500).await;
                framework.restart();
            }
            Chaos::StartShortJob => short_jobs.push(ShortJob::start(dir, short_jobs.len(), &list)),
            Chaos::KillShortJob => {
                let running: Vec<usize> =
                    (0..short_jobs.len()).filter(|i| short_jobs[*i].run.exited().is_none()).collect();
                let Some(&index) = running.get(rng.random_range(0..running.len().max(1))) else { continue };
                short_jobs[index].run.kill();
                pause(&mut rng, 0..1_500).await;
                short_jobs[index].run.restart();
            }
        }
        *kills.entry(chaos).or_default() += 1;
        self_exits.extend(masters.restart_exited());
        for agent in &mut agents {
            assert!(agent.exited().is_none(), "{} exited by itself:\n{}", agent.name, agent.log_text());
        }
        fail_on_endings(&mut framework);
        pause(&mut rng, 200..2_000).await;
    }
    eprintln!(
        "chaos: done after {:?}: {kills:?}; masters that exited by themselves: {self_exits:?}",
        started.elapsed()
    );

    // Quiet: everything reconnects; then the invariants.
    let after = eventually("every agent, the framework and every long task back on the leader", async || {
        fail_on_endings(&mut framework);
        self_exits.extend(masters.restart_exited());
        let leader = masters.leading().await?;
        let state = get_json(&format!("http://{}/state", masters.addrs[leader])).await?;
        let view = ClusterView::of(&state)?;
        let back = view.agents == before.agents
            && view.active_frameworks.contains(&framework_id)
            && view.tasks.values().all(|(_, state)| state == "TASK_RUNNING")
            && view.tasks.len() == long_tasks.len();
        back.then_some(view)
    })
    .await;
    assert_eq!(after.tasks.keys().collect::<Vec<_>>(), before.tasks.keys().collect::<Vec<_>>());
    for (task, (agent, _)) in &after.tasks {
        assert_eq!(Some(agent), before.tasks.get(task).map(|(a, _)| a), "{task} moved agents: {after:?}");
    }

    // Same processes: the agents re-attached to them, nothing was relaunched.
    let pids_after = eventually("every long task's pid on its agent", async || task_pids(&agents).await).await;
    assert_eq!(pids_after, pids, "a long task's process changed");
    for (task, pid) in &pids {
        assert!(alive(*pid), "the process of {task} ({pid}) is gone");
    }

    // Every update the agents produced reached the framework: none is waiting for an
    // acknowledgement, which the framework gives only after printing the update. A short
    // job tears its framework down from the callback of its last update, which is so never
    // acknowledged: the master answers the agent's resend by shutting that framework down,
    // which drops the update, so no agent keeps resending it either.
    eventually_with("every agent to have every update acknowledged or dropped", async || {
        let mut pending = Vec::new();
        for agent in &agents {
            let state = agent.state().await.ok_or(format!("{} does not answer", agent.name))?;
            for task in state["tasks"].as_array().into_iter().flatten() {
                if task["pending_updates"].as_u64() != Some(0) {
                    pending.push(format!("{}: {task}", agent.name));
                }
            }
        }
        if pending.is_empty() { Ok(()) } else { Err(pending.join("\n")) }
    })
    .await;
    for task in &long_tasks {
        let states = framework.states(task);
        let bad: Vec<&String> = states.iter().filter(|s| !LIVE_STATES.contains(&s.as_str())).collect();
        assert!(bad.is_empty(), "{task} was reported {bad:?} to the framework: {:#?}", framework.updates(task));
        assert_eq!(states.last().map(String::as_str), Some("TASK_RUNNING"), "{task}: {states:?}");
        let from_agent = agent_states(&framework, task);
        assert!(from_agent.is_superset(&set(&["TASK_STARTING", "TASK_RUNNING"])), "{task}: {from_agent:?}");
    }
    let ids: BTreeSet<String> = framework.framework_ids().into_iter().collect();
    assert_eq!(ids, BTreeSet::from([framework_id.clone()]), "the framework changed ids");

    // Every short job ended exactly once: FINISHED if it ran, or a launch that never
    // reached an agent (and then it must not have run).
    let mut never_ran = 0;
    for job in &mut short_jobs {
        let code = eventually(&format!("{} to exit", job.run.name), async || job.run.exited()).await;
        let task = job.task_id();
        let updates = job.run.updates(&task);
        let ends: BTreeSet<&str> =
            updates.iter().filter_map(|u| u["state"].as_str()).filter(|s| is_terminal(s)).collect();
        let ran = job.marker.exists();
        match ends.iter().copied().collect::<Vec<_>>().as_slice() {
            ["TASK_FINISHED"] => {
                assert!(ran, "{task} FINISHED without running");
                // Updates of a task come from its agent in order, each after the one before
                // was acknowledged (which the job does only after printing it): an ending
                // from the agent means the job saw every earlier state. The master's
                // reconciliation may tell of the ending first, and then the job stops.
                let first_end = updates.iter().find(|u| u["state"] == "TASK_FINISHED").expect("an ending");
                if first_end["source"] == "SOURCE_AGENT" {
                    let seen: BTreeSet<String> =
                        updates.iter().filter_map(|u| u["state"].as_str().map(str::to_owned)).collect();
                    let all = set(&["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]);
                    assert_eq!(seen, all, "{task}: {updates:#?}");
                }
                assert_eq!(code.code(), Some(0), "{task}: {}", job.run.log_text());
            }
            [end] if NEVER_RAN.contains(end) && !ran => never_ran += 1,
            _ => panic!("{task} ended {ends:?} (ran: {ran}, exit {code}): {updates:#?}\n{}", job.run.log_text()),
        }
    }
    eprintln!(
        "chaos: passed after {:?}: {} framework lives, {} short jobs ({never_ran} never reached an agent), \
         masters that exited by themselves: {self_exits:?}",
        started.elapsed(),
        framework.lives(),
        short_jobs.len()
    );
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_agora_run_started_again_on_its_checkpoint_resumes_its_framework_and_task() {
    let cluster = Cluster::local(1).await;
    let dir = cluster.dir.path();
    let mut run = RunProc::start(dir, "resume", &cluster.master, &[], &["sleep", "1000"]);
    eventually("the task to run", async || run.states("resume-0").iter().any(|s| s == "TASK_RUNNING").then_some(()))
        .await;

    run.kill_and_restart();
    // The second life subscribes under the same id and hears from the master that the task
    // it launched in its first life runs.
    let heard = eventually("the resumed run to hear of its task", async || {
        let events = run.events();
        let second = events.iter().enumerate().filter(|(_, e)| e["event"] == "subscribed").nth(1)?.0;
        events[second..].iter().find(|e| e["task_id"] == "resume-0").cloned()
    })
    .await;
    assert_eq!(heard["state"], "TASK_RUNNING", "{heard}");
    let ids = run.framework_ids();
    assert!(ids.len() == 2 && ids[0] == ids[1], "{ids:?}");
    assert_eq!(run.events().iter().filter(|e| e["event"] == "subscribed" && e["resubscribed"] == true).count(), 1);
    let state = cluster.state().await;
    let frameworks = state["frameworks"].as_array().expect("frameworks");
    assert_eq!(frameworks.len(), 1, "one framework, not a second one: {state}");
    assert_eq!(frameworks[0]["id"], ids[0].as_str(), "{state}");
    assert_eq!(frameworks[0]["tasks"][0]["state"], "TASK_RUNNING", "{state}");

    // The resumed run owns the task: Ctrl-C kills it.
    run.signal("INT");
    let code = eventually("the resumed run to exit", async || run.exited()).await;
    assert_eq!(code.code(), Some(130), "{}", run.log_text());
    assert!(run.states("resume-0").iter().any(|s| s == "TASK_KILLED"), "{:?}", run.states("resume-0"));

    // A checkpoint belongs to one run: another instance count is refused.
    let checkpoint = run.checkpoint.to_str().expect("utf-8 path");
    let refused =
        cluster.run(&["--name", "resume", "--instances", "2", "--checkpoint", checkpoint, "--", "sleep", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--checkpoint") && stderr.contains("another run"), "{stderr}");
}

/// Kills every task process under the test's directory when the test ends, pass or fail;
/// on a failure, first copies the logs, outputs and checkpoints somewhere that stays.
struct Reaper {
    dir: std::path::PathBuf,
    seed: u64,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        kill_processes_under(&self.dir);
        if std::thread::panicking() {
            let keep = std::env::temp_dir().join(format!("agora-chaos-{}", self.seed));
            let _ = std::fs::create_dir_all(&keep);
            for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                if entry.path().is_file() {
                    let _ = std::fs::copy(entry.path(), keep.join(entry.file_name()));
                }
            }
            eprintln!("chaos: logs, outputs and checkpoints kept in {}", keep.display());
        }
    }
}

/// What the leader's `/state` says about the cluster.
#[derive(Debug)]
struct ClusterView {
    /// Ids of the active agents.
    agents: BTreeSet<String>,
    framework_ids: BTreeSet<String>,
    active_frameworks: BTreeSet<String>,
    /// Each live task: its agent and state.
    tasks: BTreeMap<String, (String, String)>,
}

impl ClusterView {
    fn of(state: &Value) -> Option<ClusterView> {
        let agents = state["slaves"]
            .as_array()?
            .iter()
            .filter(|a| a["active"] == true)
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect();
        let frameworks = state["frameworks"].as_array()?;
        let framework_ids = frameworks.iter().filter_map(|f| f["id"].as_str().map(str::to_owned)).collect();
        let active_frameworks = frameworks
            .iter()
            .filter(|f| f["active"] == true)
            .filter_map(|f| f["id"].as_str().map(str::to_owned))
            .collect();
        let mut tasks = BTreeMap::new();
        for framework in frameworks.iter().filter(|f| f["name"] == "chaos") {
            for task in framework["tasks"].as_array()? {
                let id = task["id"].as_str()?.to_owned();
                tasks.insert(id, (task["slave_id"].as_str()?.to_owned(), task["state"].as_str()?.to_owned()));
            }
        }
        Some(ClusterView { agents, framework_ids, active_frameworks, tasks })
    }
}

/// The process of each long task, from its agent's `/state`; `None` until every agent
/// answers and every long task there has a process.
async fn task_pids(agents: &[Agent]) -> Option<BTreeMap<String, u32>> {
    let mut pids = BTreeMap::new();
    for agent in agents {
        let state = agent.state().await?;
        for task in state["tasks"].as_array()?.iter().filter(|t| t["name"] == "chaos") {
            let pid = u32::try_from(task["pid"].as_u64()?).ok()?;
            pids.insert(task["id"].as_str()?.to_owned(), pid);
        }
    }
    (pids.len() == LONG_TASKS as usize).then_some(pids)
}

/// The states of `task_id` that `run` heard from the agent itself (reliable updates, not
/// the master's reconciliation answers).
fn agent_states(run: &RunProc, task_id: &str) -> BTreeSet<String> {
    run.updates(task_id)
        .iter()
        .filter(|u| u["source"] == "SOURCE_AGENT")
        .filter_map(|u| u["state"].as_str().map(str::to_owned))
        .collect()
}

fn set(states: &[&str]) -> BTreeSet<String> {
    states.iter().map(|s| s.to_string()).collect()
}

fn is_terminal(state: &str) -> bool {
    !matches!(
        state,
        "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING" | "TASK_UNREACHABLE" | "TASK_UNKNOWN"
    )
}

/// Fails the test at once when the framework heard of an ending of a long task, or exited.
fn fail_on_endings(framework: &mut RunProc) {
    let ends: Vec<Value> = framework.events().into_iter().filter(is_ending).collect();
    let exited = framework.exited();
    if !ends.is_empty() || exited.is_some() {
        panic!("the framework heard {ends:#?} (exited: {exited:?}); its log:\n{}", framework.log_text());
    }
}

/// An update that no long-running task should ever get.
fn is_ending(event: &Value) -> bool {
    event["event"] == "update" && event["state"].as_str().is_some_and(|s| !LIVE_STATES.contains(&s))
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut items = items.to_vec();
    items.sort();
    items
}

/// Waits a random while in `range_ms`: the pace of the chaos, not a synchronisation.
async fn pause(rng: &mut ChaCha8Rng, range_ms: std::ops::Range<u64>) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(range_ms))).await;
}
