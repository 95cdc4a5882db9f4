//! A task's life through the master core as `agora bench` drives it — launched on an
//! offer, then STARTING, RUNNING and FINISHED, each status update forwarded and
//! acknowledged — for profilers: `valgrind --tool=callgrind
//! --toggle-collect='*task_lifecycle::updates*'` counts the instructions the core spends
//! per update and acknowledgement, which wall-clock figures on a shared machine cannot
//! give. The owner task applies these requests one at a time, so their cost bounds how many
//! tasks a second one master can run.
//!
//! `task_lifecycle AGENTS FRAMEWORKS TASKS` (default 10,000 × 100 × 100,000) prints the
//! time of each phase.

use std::time::Instant;

use agora_master::core::{Call, Config, ConnId, Event, Master, Operation, Output};
use agora_proto::model::{
    AgentId, AgentInfo, CommandInfo, FrameworkId, FrameworkInfo, Resources, Role, StreamId, TaskId, TaskInfo,
    TaskState, TaskStatus, TaskStatusReason, TaskStatusSource, UpdateId,
};

/// Agents as in the allocator benches; tasks as `agora bench` launches them.
const AGENT_RESOURCES: &str = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]";
const TASK_RESOURCES: &str = "cpus:0.1;mem:32";
const TASKS_PER_OFFER: usize = 128;

struct Cluster {
    master: Master,
    frameworks: Vec<(FrameworkId, StreamId)>,
    /// Launched tasks: (framework index, task, agent).
    tasks: Vec<(usize, TaskId, AgentId)>,
    now_ms: u64,
}

fn cluster(agents: usize, frameworks: usize) -> Cluster {
    let mut master = Master::new(Config { master_id: "bench".into(), ..Config::default() }, 7);
    let resources = Resources::parse(AGENT_RESOURCES).expect("valid resources");
    for i in 0..agents {
        let info =
            AgentInfo { hostname: format!("host-{i}"), port: 5051, resources: resources.clone(), attributes: vec![] };
        master.register_agent(1_000, ConnId(i as u64), info, None, vec![]);
    }
    let frameworks = (0..frameworks)
        .map(|i| {
            let info = FrameworkInfo {
                id: None,
                name: format!("bench-{i}"),
                user: "bench".into(),
                roles: vec![Role::unreserved()],
                failover_timeout_ms: 0,
                hostname: "bench".into(),
                principal: String::new(),
            };
            master.subscribe(1_000, info).expect("subscribe")
        })
        .collect();
    master.drain_outputs();
    Cluster { master, frameworks, tasks: Vec::new(), now_ms: 1_000 }
}

/// Allocation rounds, each offer accepted with as many tasks as fit, until `tasks` run.
fn launch(cluster: &mut Cluster, tasks: usize) {
    let shape = Resources::parse(TASK_RESOURCES).expect("valid resources");
    while cluster.tasks.len() < tasks {
        cluster.master.allocate(cluster.now_ms);
        let offers: Vec<_> = cluster
            .master
            .drain_outputs()
            .into_iter()
            .filter_map(|output| match output {
                Output::ToFramework { framework_id, event: Event::Offers(offers) } => Some((framework_id, offers)),
                _ => None,
            })
            .collect();
        assert!(!offers.is_empty(), "the cluster is full before {tasks} tasks run");
        for (framework_id, offers) in offers {
            let index = cluster.frameworks.iter().position(|(id, _)| *id == framework_id).expect("known framework");
            let stream_id = cluster.frameworks[index].1.clone();
            for offer in offers {
                let room = tasks - cluster.tasks.len();
                let infos: Vec<TaskInfo> = (0..TASKS_PER_OFFER.min(room))
                    .map(|_| {
                        let task_id = TaskId::new(format!("f{index}-t{}", cluster.tasks.len()));
                        cluster.tasks.push((index, task_id.clone(), offer.agent_id.clone()));
                        TaskInfo {
                            task_id,
                            name: "bench".into(),
                            agent_id: offer.agent_id.clone(),
                            resources: shape.clone(),
                            command: CommandInfo { shell: Some("true".into()), ..CommandInfo::default() },
                            labels: vec![],
                            kill_grace_period_ms: None,
                            health_check: None,
                            readiness_check: None,
                        }
                    })
                    .collect();
                let operations = if infos.is_empty() { vec![] } else { vec![Operation::Launch { tasks: infos }] };
                let call = Call::Accept { offer_ids: vec![offer.id], operations, refuse_ms: 5_000 };
                cluster.master.call(cluster.now_ms, &framework_id, &stream_id, call).expect("accept");
            }
        }
        cluster.master.drain_outputs();
        cluster.now_ms += 1;
    }
}

/// One status update of every task and its acknowledgement, as the owner applies them.
/// The updates' uuids are made beforehand: agents make them, not the master.
#[inline(never)]
fn updates(cluster: &mut Cluster, state: TaskState, uuids: Vec<UpdateId>) -> usize {
    let mut outputs = 0;
    let mut drained = Vec::new();
    for ((index, task_id, agent_id), uuid) in cluster.tasks.iter().zip(uuids) {
        let (framework_id, stream_id) = &cluster.frameworks[*index];
        let status = TaskStatus {
            task_id: task_id.clone(),
            agent_id: Some(agent_id.clone()),
            state,
            reason: if state == TaskState::TaskFinished {
                TaskStatusReason::CommandExited
            } else {
                TaskStatusReason::Unspecified
            },
            source: TaskStatusSource::Executor,
            message: String::new(),
            timestamp_ms: cluster.now_ms,
            uuid: Some(uuid.clone()),
            exit_code: (state == TaskState::TaskFinished).then_some(0),
            signal: None,
            healthy: None,
            ready: None,
        };
        cluster.master.status_update(cluster.now_ms, agent_id, framework_id, status);
        let ack = Call::Acknowledge { agent_id: agent_id.clone(), task_id: task_id.clone(), uuid };
        cluster.master.call(cluster.now_ms, framework_id, stream_id, ack).expect("acknowledge");
        cluster.master.drain_outputs_into(&mut drained);
        outputs += drained.len();
        drained.clear();
    }
    outputs
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (agents, frameworks, tasks) = (number(0, 10_000), number(1, 100), number(2, 100_000));
    let mut cluster = cluster(agents, frameworks);
    let started = Instant::now();
    launch(&mut cluster, tasks);
    println!("launch: {tasks} tasks in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    for (round, state) in
        [TaskState::TaskStarting, TaskState::TaskRunning, TaskState::TaskFinished].into_iter().enumerate()
    {
        let uuids = (0..tasks).map(|n| UpdateId::new(format!("{:032x}", (round << 40) | n))).collect();
        let started = Instant::now();
        let outputs = updates(&mut cluster, state, uuids);
        let elapsed = started.elapsed();
        println!(
            "{}: {tasks} updates and acknowledgements in {:.1} ms ({:.2} µs each), {outputs} outputs",
            state.as_str(),
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / tasks as f64
        );
    }
}
