//! The registry in etcd against a real etcd server: what a leader commits is loaded back
//! by the next, and a deposed leader's writes are refused.

#[path = "../../tests/common/etcd.rs"]
mod etcd_server;

use agora_master::core::{DurableAgent, Registry, RegistryOp};
use agora_master::store::{EtcdStore, Store, StoreError};
use agora_proto::etcd_client::{Etcd, EtcdError, Term};
use agora_proto::model::{AgentId, AgentInfo, FrameworkId, FrameworkInfo, Resources, Role};

const LEADER_KEY: &[u8] = b"/agora/leader";

fn framework(name: &str) -> FrameworkInfo {
    FrameworkInfo {
        id: Some(FrameworkId::new(name)),
        name: name.into(),
        user: "u".into(),
        roles: vec![Role::unreserved()],
        failover_timeout_ms: 1000,
        hostname: String::new(),
        principal: String::new(),
    }
}

fn agent(hostname: &str) -> DurableAgent {
    DurableAgent {
        info: AgentInfo {
            hostname: hostname.into(),
            port: 5051,
            resources: Resources::parse("cpus:2;mem:128").expect("valid"),
            attributes: vec![],
        },
        reachable: true,
        deactivated: false,
        drain: None,
    }
}

async fn lead(client: &Etcd, address: &str) -> Term {
    let lease = client.grant_lease(30).await.expect("grant a lease");
    client.campaign(LEADER_KEY, address, lease).await.expect("campaign").expect("nobody else leads")
}

fn store(etcd: &etcd_server::Etcd, term: Term) -> Store {
    Store::Etcd(Box::new(
        EtcdStore::open(std::slice::from_ref(&etcd.url), "/agora", term).expect("open the etcd store"),
    ))
}

#[tokio::test]
async fn what_a_leader_commits_is_loaded_back_by_the_next_leader() {
    let server = etcd_server::Etcd::start();
    let client = Etcd::connect(std::slice::from_ref(&server.url)).expect("client");
    let term = lead(&client, "127.0.0.1:5050").await;
    // More changes than one etcd transaction may hold, with keys written twice.
    let mut ops: Vec<RegistryOp> = (0..300)
        .map(|i| RegistryOp::PutAgent { agent_id: AgentId::new(format!("a{i}")), agent: agent(&format!("h{i}")) })
        .collect();
    ops.extend([
        RegistryOp::PutFramework { framework_id: FrameworkId::new("f1"), info: framework("f1") },
        RegistryOp::PutFramework { framework_id: FrameworkId::new("f2"), info: framework("f2") },
        RegistryOp::RemoveFramework { framework_id: FrameworkId::new("f2") },
        RegistryOp::RemoveAgent { agent_id: AgentId::new("a7") },
        RegistryOp::RemoveAgent { agent_id: AgentId::new("a3") },
        RegistryOp::PutAgent { agent_id: AgentId::new("a8"), agent: DurableAgent { reachable: false, ..agent("h8") } },
    ]);
    let mut expected = Registry::default();
    for op in ops.clone() {
        expected.apply(op);
    }
    let mut first = store(&server, term.clone());
    assert_eq!(first.load().expect("load an empty registry"), Registry::default());
    first.apply(&ops[..150]).expect("apply the first round");
    first.apply(&ops[150..]).expect("apply the second round");
    drop(first);

    // The leader's lease ends; another master is elected and reads what was committed.
    client.revoke_lease(term.lease_id).await.expect("revoke");
    let next_term = lead(&client, "127.0.0.1:5051").await;
    let mut next = store(&server, next_term);
    let loaded = next.load().expect("load");
    assert_eq!(loaded, expected);
    assert_eq!(loaded.agents.len(), 298);
    assert_eq!(loaded.gone_agents, vec![AgentId::new("a7"), AgentId::new("a3")]);
    assert_eq!(loaded.removed_frameworks, vec![FrameworkId::new("f2")]);
}

#[tokio::test]
async fn a_deposed_leader_cannot_write_the_registry() {
    let server = etcd_server::Etcd::start();
    let client = Etcd::connect(std::slice::from_ref(&server.url)).expect("client");
    let old_term = lead(&client, "127.0.0.1:5050").await;
    let mut old = store(&server, old_term.clone());
    old.load().expect("load");
    let f1 = RegistryOp::PutFramework { framework_id: FrameworkId::new("f1"), info: framework("f1") };
    old.apply(std::slice::from_ref(&f1)).expect("the leader writes");

    // While the old leader holds the key, nobody else wins, and they learn who leads.
    let other_lease = client.grant_lease(30).await.expect("lease");
    let holder = client.campaign(LEADER_KEY, "127.0.0.1:5051", other_lease).await.expect("campaign").expect_err("led");
    assert_eq!(holder.address, "127.0.0.1:5050");

    // The old leader's lease expires (revoked here); a new leader is elected.
    client.revoke_lease(old_term.lease_id).await.expect("revoke");
    let new_term = client.campaign(LEADER_KEY, "127.0.0.1:5051", other_lease).await.expect("campaign").expect("won");
    let mut new = store(&server, new_term);
    new.load().expect("load");

    let f2 = RegistryOp::PutFramework { framework_id: FrameworkId::new("f2"), info: framework("f2") };
    let refused = old.apply(std::slice::from_ref(&f2));
    assert!(matches!(refused, Err(StoreError::Etcd(EtcdError::Deposed))), "{refused:?}");
    let f3 = RegistryOp::PutFramework { framework_id: FrameworkId::new("f3"), info: framework("f3") };
    new.apply(std::slice::from_ref(&f3)).expect("the new leader writes");

    let loaded = new.load().expect("load");
    let ids: Vec<&str> = loaded.frameworks.keys().map(|id| id.as_str()).collect();
    assert_eq!(ids, ["f1", "f3"]);
}
