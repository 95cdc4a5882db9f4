//! Offers: what is launched where, with which resources, ports, environment and checks,
//! and the instance recorded before the launch.

use super::*;
use crate::model::{Constraint, ConstraintOp, HealthCheckSpec, HealthProtocol};
use agora_proto::model::HealthCheckKind;

#[test]
fn the_instance_is_recorded_before_its_launch_and_unused_offers_are_declined() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/web", 1)]);
    planner.take_outputs();
    planner.input(T0 + 1, Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000"), offer(2, "b", "cpus:1;mem:1000")]));
    let outputs = planner.take_outputs();
    assert_eq!(shape(&outputs), vec!["Persist(PutInstance)", "Launch", "Decline", "Suppress"]);
    let Output::Persist(StoreOp::PutInstance(instance)) = &outputs[0] else { panic!("{outputs:?}") };
    assert_eq!(instance.state, TaskState::TaskStaging);
    assert_eq!(instance.host, "a");
    let Output::Launch { offer_ids, tasks } = &outputs[1] else { panic!("{outputs:?}") };
    assert_eq!(offer_ids, &vec![OfferId::new("offer-1")]);
    assert_eq!(tasks[0].task_id, instance.task_id);
    assert!(tasks[0].task_id.as_str().starts_with("web."), "{}", tasks[0].task_id);
    assert_eq!(tasks[0].resources, Resources::parse("cpus:0.1;mem:32").expect("valid"));
    let Output::Decline { offer_ids, refuse_seconds } = &outputs[2] else { panic!("{outputs:?}") };
    assert_eq!(offer_ids, &vec![OfferId::new("offer-2")]);
    assert_eq!(*refuse_seconds, REFUSE_WHEN_IDLE_S);
}

#[test]
fn tasks_get_host_ports_and_marathons_environment() {
    let mut planner = planner();
    let mut web = spec("/shop/web", 1);
    web.port_definitions = vec![port(0, Some("http")), port(0, None)];
    web.env.insert("GREETING".into(), "hi".into());
    web.labels.insert("team".into(), "a".into());
    web.task_kill_grace_period_ms = Some(5_000);
    deploy(&mut planner, T0, vec![web]);
    let record = planner.app(&id("/shop/web")).expect("exists").clone();
    let service_ports: Vec<u16> = record.spec.port_definitions.iter().map(|d| d.port).collect();
    assert_eq!(service_ports, vec![10_000, 10_001], "service ports are assigned from the range");
    planner.input(T0 + 1, Input::Offers(vec![offer(1, "host-a", "cpus:1;mem:1000;ports:[31000-31001,31005-31009]")]));
    let task = launched(&planner.take_outputs()).pop().expect("launched");
    let env = &task.command.environment;
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("PORT0"), Some("31000"));
    assert_eq!(get("PORT1"), Some("31001"));
    assert_eq!(get("PORT"), Some("31000"));
    assert_eq!(get("PORTS"), Some("31000,31001"));
    assert_eq!(get("PORT_HTTP"), Some("31000"));
    assert_eq!(get("HOST"), Some("host-a"));
    assert_eq!(get("MARATHON_APP_ID"), Some("/shop/web"));
    assert_eq!(get("MARATHON_APP_VERSION"), Some(Timestamp(T0).to_string().as_str()));
    assert_eq!(get("MESOS_TASK_ID"), Some(task.task_id.as_str()));
    assert_eq!(get("GREETING"), Some("hi"));
    assert_eq!(task.labels, vec![("team".to_owned(), "a".to_owned())]);
    assert_eq!(task.kill_grace_period_ms, Some(5_000));
    assert_eq!(task.resources.ports().ranges(), &[(31000, 31001)]);
    assert_eq!(planner.instance(&task.task_id).map(|i| i.ports.clone()), Some(vec![31000, 31001]));
}

#[test]
fn required_ports_are_exactly_the_definitions_ports_or_the_offer_is_not_used() {
    let mut planner = planner();
    let mut web = spec("/web", 1);
    web.port_definitions = vec![port(8080, None)];
    web.require_ports = true;
    deploy(&mut planner, T0, vec![web]);
    planner.take_outputs();
    planner.input(T0 + 1, Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000;ports:[31000-32000]")]));
    assert!(launched(&planner.take_outputs()).is_empty());
    planner.input(T0 + 2, Input::Offers(vec![offer(2, "b", "cpus:1;mem:1000;ports:[8000-9000]")]));
    let task = launched(&planner.take_outputs()).pop().expect("launched");
    assert_eq!(task.resources.ports().ranges(), &[(8080, 8080)]);
    assert_eq!(task.command.environment.get("PORT0").map(String::as_str), Some("8080"));
}

#[test]
fn the_first_health_check_goes_to_the_agent_with_its_port_resolved() {
    let mut planner = planner();
    let mut web = spec("/web", 1);
    web.port_definitions = vec![port(0, None), port(0, None)];
    web.health_checks = vec![HealthCheckSpec {
        protocol: HealthProtocol::Tcp,
        port: Some(crate::model::CheckPort::Index(1)),
        grace_period_s: 10,
        interval_s: 2,
        timeout_s: 1,
        max_consecutive_failures: 3,
        ignore_http1xx: false,
        delay_s: 0,
    }];
    deploy(&mut planner, T0, vec![web]);
    planner.input(T0 + 1, Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000;ports:[31000-31010]")]));
    let task = launched(&planner.take_outputs()).pop().expect("launched");
    let check = task.health_check.expect("health check");
    assert_eq!(check.kind, HealthCheckKind::Tcp { port: 31001 });
    assert_eq!((check.grace_period_ms, check.interval_ms, check.timeout_ms), (10_000, 2_000, 1_000));
}

#[test]
fn resources_are_cut_exactly_and_a_role_the_app_does_not_accept_is_not_used() {
    let mut planner = planner();
    let mut web = spec("/web", 20);
    web.accepted_resource_roles = vec!["*".into()];
    deploy(&mut planner, T0, vec![web]);
    planner.input(T0 + 1, Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    assert_eq!(launched(&planner.take_outputs()).len(), 10, "ten tenths of a CPU");
    assert_eq!(planner.queue(T0 + 1).first().map(|q| q.count), Some(10));
}

#[test]
fn unique_hostnames_spread_one_instance_per_agent() {
    let mut planner = planner();
    let mut web = spec("/web", 3);
    web.constraints = vec![Constraint { field: "hostname".into(), op: ConstraintOp::Unique, value: None }];
    deploy(&mut planner, T0, vec![web]);
    planner.input(T0 + 1, Input::Offers(vec![offer(1, "a", "cpus:4;mem:4000"), offer(2, "b", "cpus:4;mem:4000")]));
    let hosts: Vec<String> = launched(&planner.take_outputs())
        .iter()
        .map(|t| planner.instance(&t.task_id).map(|i| i.host.clone()).unwrap_or_default())
        .collect();
    assert_eq!(hosts, vec!["a", "b"]);
    planner.input(T0 + 2, Input::Offers(vec![offer(3, "a", "cpus:4;mem:4000")]));
    assert!(launched(&planner.take_outputs()).is_empty());
}

#[test]
fn like_unlike_is_cluster_and_max_per_read_agent_attributes() {
    let cases: Vec<(ConstraintOp, &str, &str, bool)> = vec![
        (ConstraintOp::Like, "rack", "r[12]", true),
        (ConstraintOp::Like, "rack", "r2", false),
        (ConstraintOp::Unlike, "rack", "r1", false),
        (ConstraintOp::Unlike, "rack", "x.*", true),
        (ConstraintOp::Is, "rack", "r1", true),
        (ConstraintOp::Is, "zone", "r1", false),
        (ConstraintOp::Cluster, "rack", "r1", true),
        (ConstraintOp::Cluster, "rack", "r2", false),
    ];
    for (op, field, value, launches) in cases {
        let mut planner = planner();
        let mut web = spec("/web", 1);
        web.constraints = vec![Constraint { field: field.into(), op, value: Some(value.into()) }];
        deploy(&mut planner, T0, vec![web]);
        planner.input(T0 + 1, Input::Offers(vec![offer_with(1, "a", "cpus:1;mem:100", &[("rack", "r1")])]));
        assert_eq!(launched(&planner.take_outputs()).len(), usize::from(launches), "{op:?} {field} {value}");
    }
    let mut planner = planner();
    let mut web = spec("/web", 5);
    web.constraints = vec![Constraint { field: "rack".into(), op: ConstraintOp::MaxPer, value: Some("2".into()) }];
    deploy(&mut planner, T0, vec![web]);
    planner.input(
        T0 + 1,
        Input::Offers(vec![
            offer_with(1, "a", "cpus:1;mem:1000", &[("rack", "r1")]),
            offer_with(2, "b", "cpus:1;mem:1000", &[("rack", "r1")]),
            offer_with(3, "c", "cpus:1;mem:1000", &[("rack", "r2")]),
        ]),
    );
    assert_eq!(launched(&planner.take_outputs()).len(), 4, "two per rack");
}

#[test]
fn group_by_fills_the_expected_values_evenly() {
    let mut planner = planner();
    let mut web = spec("/web", 4);
    web.constraints = vec![Constraint { field: "zone".into(), op: ConstraintOp::GroupBy, value: Some("2".into()) }];
    deploy(&mut planner, T0, vec![web]);
    planner.input(T0 + 1, Input::Offers(vec![offer_with(1, "a", "cpus:4;mem:4000", &[("zone", "z1")])]));
    assert_eq!(launched(&planner.take_outputs()).len(), 1, "until z2 has one, z1 takes no second");
    planner.input(T0 + 2, Input::Offers(vec![offer_with(2, "b", "cpus:4;mem:4000", &[("zone", "z2")])]));
    assert_eq!(launched(&planner.take_outputs()).len(), 2, "z2 catches up, then takes one while they tie");
    planner.input(
        T0 + 3,
        Input::Offers(vec![
            offer_with(3, "a", "cpus:4;mem:4000", &[("zone", "z1")]),
            offer_with(4, "b", "cpus:4;mem:4000", &[("zone", "z2")]),
        ]),
    );
    let hosts: Vec<String> = launched(&planner.take_outputs())
        .iter()
        .filter_map(|t| planner.instance(&t.task_id).map(|i| i.host.clone()))
        .collect();
    assert_eq!(hosts, vec!["a"], "the last one evens them out");
}

#[test]
fn service_ports_are_unique_across_apps_and_kept_across_updates() {
    let mut planner = planner();
    let mut a = spec("/a", 0);
    a.port_definitions = vec![port(0, None)];
    let mut b = spec("/b", 0);
    b.port_definitions = vec![port(10_000, None), port(0, None)];
    deploy(&mut planner, T0, vec![a.clone(), b]);
    let ports = |p: &Planner, app: &str| -> Vec<u16> {
        p.app(&id(app)).map(|r| r.spec.port_definitions.iter().map(|d| d.port).collect()).unwrap_or_default()
    };
    assert_eq!(ports(&planner, "/a"), vec![10_001]);
    assert_eq!(ports(&planner, "/b"), vec![10_000, 10_002]);
    planner.take_outputs();
    a.instances = 0;
    let again = deploy(&mut planner, T0 + 1, vec![a]);
    assert!(planner.deployment(&again).is_none(), "port 0 again means the port it has: nothing changed");
    assert_eq!(ports(&planner, "/a"), vec![10_001]);
}

#[test]
fn one_accept_launches_at_most_its_bound_of_tasks() {
    let mut planner = planner();
    let mut tiny = spec("/tiny", 1_500);
    tiny.cpus_milli = 1;
    tiny.mem_mib = 1;
    deploy(&mut planner, T0, vec![tiny]);
    planner.input(T0 + 1, Input::Offers(vec![offer(1, "a", "cpus:100;mem:100000")]));
    assert_eq!(launched(&planner.take_outputs()).len(), MAX_TASKS_PER_ACCEPT);
    assert_eq!(planner.queue(T0 + 1).first().map(|q| q.count), Some(500));
}

#[test]
fn a_planner_started_again_with_the_same_seed_draws_other_task_ids() {
    let first_task = |start: u64| {
        let mut planner = Planner::new(PlannerConfig { seed: 1, ..PlannerConfig::default() });
        planner.input(start, Input::Subscribed { framework_id: FrameworkId::new("fw-1"), reconnected: false });
        deploy(&mut planner, start, vec![spec("/web", 1)]);
        planner.input(start, Input::Offers(vec![offer(1, "a", "cpus:1;mem:100")]));
        launched(&planner.take_outputs()).pop().expect("launched").task_id
    };
    assert_eq!(first_task(T0), first_task(T0), "the same inputs at the same times, the same ids");
    assert_ne!(first_task(T0), first_task(T0 + 1));
}
