//! The committed view kept from records against the view made afresh from the planner,
//! through a deployment, health, a restart, failures and a delete; and its sharing.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_proto::model::{
    AgentDescription, AgentId, FrameworkId, Offer, OfferId, Resources, Role, TaskId, TaskState, TaskStatus,
    TaskStatusReason,
};

use super::*;
use crate::core::{Command, Input, Output, PlannerConfig, Reply};
use crate::model::{
    AppCommand, AppSpec, BackoffSpec, HealthCheckSpec, HealthProtocol, KillSelection, PathId, UnreachableStrategy,
    UpgradeStrategy,
};

const T0: u64 = 1_700_000_000_000;

fn spec(path: &str, instances: u32) -> AppSpec {
    AppSpec {
        id: PathId::parse(path).expect("valid id"),
        command: AppCommand::Shell("sleep 3600".into()),
        cpus_milli: 100,
        mem_mib: 32,
        disk_mib: 0,
        instances,
        env: BTreeMap::new(),
        labels: BTreeMap::new(),
        user: None,
        role: None,
        accepted_resource_roles: Vec::new(),
        port_definitions: Vec::new(),
        require_ports: false,
        constraints: Vec::new(),
        health_checks: vec![HealthCheckSpec {
            protocol: HealthProtocol::Command { shell: "true".into() },
            port: None,
            grace_period_s: 300,
            interval_s: 60,
            timeout_s: 20,
            max_consecutive_failures: 3,
            ignore_http1xx: false,
            delay_s: 0,
        }],
        readiness_checks: Vec::new(),
        upgrade_strategy: UpgradeStrategy::default(),
        backoff: BackoffSpec::default(),
        kill_selection: KillSelection::default(),
        unreachable_strategy: UnreachableStrategy::default(),
        task_kill_grace_period_ms: None,
        dependencies: Vec::new(),
        deployment_timeout_ms: None,
        fetch: Vec::new(),
    }
}

fn offer(n: u32) -> Offer {
    Offer {
        id: OfferId::new(format!("offer-{n}")),
        framework_id: FrameworkId::new("fw-1"),
        agent_id: AgentId::new("agent-1"),
        resources: Resources::parse("cpus:100;mem:100000").expect("resources parse"),
        agent: Arc::new(AgentDescription {
            unavailability: None,
            hostname: "host-1".into(),
            attributes: Vec::new(),
            url: "http://host-1:5051".into(),
        }),
        allocation_role: Role::unreserved(),
    }
}

fn status(task_id: &TaskId, state: TaskState, healthy: Option<bool>) -> TaskStatus {
    TaskStatus {
        agent_id: Some(AgentId::new("agent-1")),
        healthy,
        ..TaskStatus::from_master(task_id.clone(), None, state, TaskStatusReason::Unspecified, "", 0)
    }
}

/// A planner and a view writer fed the planner's records after every step, as the owner
/// feeds it after every commit.
struct Harness {
    planner: Planner,
    writer: ViewWriter,
    now: u64,
    /// Tasks the planner asked to kill, not answered yet.
    kills: Vec<TaskId>,
}

impl Harness {
    fn new() -> Harness {
        let mut planner = Planner::new(PlannerConfig { seed: 7, ..PlannerConfig::default() });
        planner.input(T0, Input::Subscribed { framework_id: FrameworkId::new("fw-1"), reconnected: false });
        planner.take_outputs();
        let writer = ViewWriter::new(&planner, Views::default());
        Harness { planner, writer, now: T0, kills: Vec::new() }
    }

    /// Commits the planner's records to the view; returns its other outputs.
    fn commit(&mut self) -> Vec<Output> {
        let mut ops = Vec::new();
        let mut rest = Vec::new();
        for output in self.planner.take_outputs() {
            match output {
                Output::Persist(op) => ops.push(op),
                other => rest.push(other),
            }
        }
        self.writer.apply(&ops);
        assert_eq!(**self.writer.view(), CommittedView::of(&self.planner), "the kept view drifted");
        self.kills.extend(rest.iter().filter_map(|o| match o {
            Output::Kill { task_id, .. } => Some(task_id.clone()),
            _ => None,
        }));
        rest
    }

    fn command(&mut self, command: Command) {
        self.now += 10;
        let reply = self.planner.command(self.now, command);
        assert!(matches!(reply, Ok(Reply::Deployment { .. })), "{reply:?}");
        self.commit();
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.now += 10;
        self.planner.input(self.now, input);
        self.commit()
    }

    /// Offers room and reports every launch running and healthy; the tasks launched.
    fn launch_all(&mut self, offer_number: u32) -> Vec<TaskId> {
        let outputs = self.input(Input::Offers(vec![offer(offer_number)]));
        let launched: Vec<TaskId> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Launch { tasks, .. } => Some(tasks.iter().map(|t| t.task_id.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        for task in &launched {
            self.input(Input::Update(status(task, TaskState::TaskRunning, None)));
            self.input(Input::Update(status(task, TaskState::TaskRunning, Some(true))));
        }
        launched
    }

    /// Answers every kill asked for, and launches what the planner then wants, until it
    /// asks for nothing more.
    fn settle(&mut self) {
        for round in 0..20 {
            let kills = std::mem::take(&mut self.kills);
            for task in &kills {
                self.input(Input::Update(status(task, TaskState::TaskKilled, Some(true))));
            }
            let launched = self.launch_all(100 + round);
            if kills.is_empty() && launched.is_empty() {
                return;
            }
        }
    }
}

#[test]
fn the_view_kept_from_committed_records_is_the_view_of_the_planner_at_every_step() {
    let mut h = Harness::new();
    h.command(Command::PutApps {
        apps: vec![spec("/web", 3), spec("/api", 2)],
        force: false,
        expect: Default::default(),
    });
    let first = h.launch_all(1);
    assert_eq!(first.len(), 5);
    let view = h.writer.view().clone();
    assert_eq!(view.instance_count(), 5);
    assert_eq!(view.instances_of(&PathId::parse("/web").expect("id")).filter(|i| i.healthy == Some(true)).count(), 3);
    assert_eq!(view.deployment_of(&PathId::parse("/web").expect("id")), None, "the deployment finished");

    // A restart holds /web until its new instances are healthy and the old ones killed.
    h.command(Command::RestartApp { id: PathId::parse("/web").expect("id"), force: false });
    assert!(h.writer.view().deployment_of(&PathId::parse("/web").expect("id")).is_some());
    let second = h.launch_all(2);
    assert!(!second.is_empty());
    h.settle();
    assert_eq!(h.writer.view().deployment_of(&PathId::parse("/web").expect("id")), None, "the restart finished");

    // A task that fails on its own is the app's last failure, and is replaced.
    let api_task =
        h.writer.view().instances_of(&PathId::parse("/api").expect("id")).next().expect("an instance").task_id.clone();
    h.input(Input::Update(status(&api_task, TaskState::TaskFailed, None)));
    assert!(h.writer.view().last_task_failure(&PathId::parse("/api").expect("id")).is_some());
    h.input(Input::Tick);
    h.settle();

    // Deleting an app kills its instances; once they are gone, so is its entry.
    h.command(Command::DeleteApp { id: PathId::parse("/api").expect("id"), force: true });
    h.settle();
    assert!(h.writer.view().app(&PathId::parse("/api").expect("id")).is_none());
    assert_eq!(h.writer.view().instances_of(&PathId::parse("/api").expect("id")).count(), 0);
    assert_eq!(h.writer.view().apps().count(), 1);
}

#[test]
fn a_reader_keeps_its_view_and_untouched_apps_are_shared_with_the_next() {
    let mut h = Harness::new();
    let views = Views::default();
    h.writer = ViewWriter::new(&h.planner, views.clone());
    h.command(Command::PutApps {
        apps: vec![spec("/web", 2), spec("/api", 2)],
        force: false,
        expect: Default::default(),
    });
    h.launch_all(1);
    let held = views.borrow().clone().expect("published");
    let web = PathId::parse("/web").expect("id");
    let api = PathId::parse("/api").expect("id");
    let task = held.instances_of(&web).next().expect("an instance").task_id.clone();
    h.input(Input::Update(status(&task, TaskState::TaskRunning, Some(false))));
    let next = views.borrow().clone().expect("published");
    // The reader's view did not change under it; the new one has the news.
    assert_eq!(held.instances_of(&web).find(|i| i.task_id == task).and_then(|i| i.healthy), Some(true));
    assert_eq!(next.instances_of(&web).find(|i| i.task_id == task).and_then(|i| i.healthy), Some(false));
    // Only /web was copied.
    assert!(Arc::ptr_eq(&held.apps[&api], &next.apps[&api]));
    assert!(!Arc::ptr_eq(&held.apps[&web], &next.apps[&web]));
}

#[test]
fn a_batch_without_shown_records_publishes_nothing_new() {
    let mut h = Harness::new();
    let views = Views::default();
    h.writer = ViewWriter::new(&h.planner, views.clone());
    let before = views.borrow().clone().expect("published at once");
    h.writer.apply(&[StoreOp::NextServicePort(10_001), StoreOp::FrameworkId(FrameworkId::new("fw-1"))]);
    let after = views.borrow().clone().expect("still published");
    assert!(Arc::ptr_eq(&before, &after));
}

#[test]
fn a_listing_from_the_view_is_the_planner_s_byte_for_byte_with_its_tasks_kept_or_rewritten() {
    use crate::marathon::render::{Embed, Pieces, write_app_list};
    let list = |reads: &dyn AppReads| {
        let mut out = Pieces::default();
        let embed = Embed { counts: true, deployments: true, ..Embed::default() }.with(["apps.tasks"]);
        write_app_list(&mut out, reads, embed, |_| true).expect("renders");
        String::from_utf8(out.concat()).expect("utf-8")
    };
    let mut h = Harness::new();
    h.command(Command::PutApps {
        apps: vec![spec("/web", 3), spec("/api", 2)],
        force: false,
        expect: Default::default(),
    });
    h.launch_all(1);
    let view = h.writer.view().clone();
    let fresh = list(&*view);
    assert_eq!(fresh, list(&h.planner));
    assert!(fresh.contains("\"tasks\":[{"), "{fresh}");
    // Written once, then copied.
    assert_eq!(list(&*view), fresh);
    let web = PathId::parse("/web").expect("id");
    let kept = view.written_tasks(&web).expect("kept").as_ptr();
    assert_eq!(view.written_tasks(&web).expect("kept").as_ptr(), kept);
    // A change to /web writes its tasks afresh in the next view.
    let task = view.instances_of(&web).next().expect("an instance").task_id.clone();
    h.input(Input::Update(status(&task, TaskState::TaskRunning, Some(false))));
    let next = h.writer.view().clone();
    assert_eq!(list(&*next), list(&h.planner));
    assert_ne!(list(&*next), fresh);
}

#[test]
fn listings_in_pieces_are_what_serde_writes_for_every_embed() {
    use crate::marathon::render::{AppView, Embed, Pieces, write_app_list};
    let mut h = Harness::new();
    h.command(Command::PutApps {
        apps: vec![spec("/web", 3), spec("/api", 2), spec("/idle", 0)],
        force: false,
        expect: Default::default(),
    });
    h.launch_all(1);
    let api_task =
        h.writer.view().instances_of(&PathId::parse("/api").expect("id")).next().expect("an instance").task_id.clone();
    h.input(Input::Update(status(&api_task, TaskState::TaskFailed, None)));
    h.command(Command::RestartApp { id: PathId::parse("/web").expect("id"), force: false });
    let view = h.writer.view().clone();
    let embeds = [
        Embed::default(),
        Embed { counts: true, deployments: true, ..Embed::default() },
        Embed { counts: true, deployments: true, ..Embed::default() }.with(["apps.tasks"]),
        Embed::default().with(["apps.failures", "apps.readiness", "apps.taskStats", "apps.counts"]),
    ];
    for embed in embeds {
        let serde = |reads: &dyn AppReads| {
            let apps: Vec<AppView<'_>> = reads.apps().map(|r| AppView::new(r, reads, embed)).collect();
            #[derive(serde::Serialize)]
            struct List<'a> {
                apps: Vec<AppView<'a>>,
            }
            serde_json::to_string(&List { apps }).expect("serializes")
        };
        let pieces = |reads: &dyn AppReads| {
            let mut out = Pieces::default();
            write_app_list(&mut out, reads, embed, |_| true).expect("renders");
            String::from_utf8(out.concat()).expect("utf-8")
        };
        let expected = serde(&h.planner);
        assert_eq!(pieces(&h.planner), expected, "{embed:?}");
        assert_eq!(pieces(&*view), expected, "{embed:?}");
        // Again, from what the view kept written.
        assert_eq!(pieces(&*view), expected, "{embed:?}");
        assert_eq!(serde(&*view), expected, "{embed:?}");
    }
}
