//! The store's contract, checked on both backends with the same sample records: the file
//! store in a temporary directory, the etcd store on a real etcd server.

use super::*;
use crate::model::PathId;

#[path = "../../../../tests/common/etcd.rs"]
mod etcd_server;

/// Sample records and the checks both backends must pass.
pub(crate) mod sample {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use agora_proto::model::{AgentId, FrameworkId, TaskId, TaskState};

    use crate::core::{Recovered, StoreOp};
    use crate::model::*;

    pub fn spec(id: &str, instances: u32) -> Arc<AppSpec> {
        Arc::new(AppSpec {
            id: PathId::parse(id).expect("valid id"),
            command: AppCommand::Shell("sleep 1000".into()),
            cpus_milli: 100,
            mem_mib: 32,
            disk_mib: 0,
            instances,
            env: BTreeMap::from([("A".into(), "b".into())]),
            labels: BTreeMap::new(),
            user: None,
            role: None,
            accepted_resource_roles: Vec::new(),
            port_definitions: vec![PortDefinition {
                port: 10_000,
                protocol: "tcp".into(),
                name: Some("http".into()),
                labels: BTreeMap::new(),
            }],
            require_ports: false,
            constraints: Vec::new(),
            health_checks: Vec::new(),
            readiness_checks: Vec::new(),
            upgrade_strategy: UpgradeStrategy::default(),
            backoff: BackoffSpec::default(),
            kill_selection: KillSelection::default(),
            unreachable_strategy: UnreachableStrategy::default(),
            task_kill_grace_period_ms: None,
            dependencies: Vec::new(),
            deployment_timeout_ms: Some(30_000),
            fetch: vec![agora_proto::model::FetchUri::plain("http://repo/app.tgz")],
        })
    }

    pub fn app(id: &str, version: u64) -> AppRecord {
        AppRecord {
            spec: spec(id, 2),
            version: Timestamp(version),
            last_config_change_at: Timestamp(version),
            last_scaling_at: Timestamp(version),
        }
    }

    pub fn instance(app: &str, n: usize) -> Instance {
        let app_id = PathId::parse(app).expect("valid id");
        Instance {
            task_id: TaskId::new(format!("{}.{n:08}", app_id.task_prefix())),
            app_id,
            app_version: Timestamp(1),
            agent_id: AgentId::new("agent-1"),
            host: "127.0.0.1".into(),
            ports: vec![31_000],
            state: TaskState::TaskRunning,
            healthy: Some(true),
            ready: true,
            staged_at: Timestamp(2),
            started_at: Some(Timestamp(3)),
            killing_since: None,
            unreachable_since: None,
            message: String::new(),
        }
    }

    pub fn deployment(id: &str, app: &str) -> Deployment {
        let app_id = PathId::parse(app).expect("valid id");
        Deployment {
            id: DeploymentId(id.into()),
            version: Timestamp(5),
            origin: DeploymentOrigin::User,
            steps: vec![DeploymentStep {
                actions: vec![DeploymentAction { kind: ActionKind::StartApplication, app: app_id.clone() }],
            }],
            current_step: 0,
            original: BTreeMap::from([(app_id.clone(), None)]),
            target: BTreeMap::from([(app_id, Some(spec(app, 2)))]),
            original_versions: BTreeMap::new(),
            started_at: Timestamp(5),
            deadline: Timestamp(35_005),
        }
    }

    pub fn failure(app: &str) -> TaskFailure {
        let app_id = PathId::parse(app).expect("valid id");
        TaskFailure {
            task_id: TaskId::new(format!("{}.dead", app_id.task_prefix())),
            app_id,
            host: "127.0.0.1".into(),
            state: TaskState::TaskFailed,
            message: "exited with 1".into(),
            timestamp: Timestamp(7),
            version: Timestamp(1),
        }
    }

    /// A first batch writing one record of every kind (and more), and a second one
    /// changing and deleting some.
    pub fn batches() -> (Vec<StoreOp>, Vec<StoreOp>) {
        let shop = PathId::parse("/shop").expect("valid id");
        let first = vec![
            StoreOp::FrameworkId(FrameworkId::new("fw-1")),
            StoreOp::NextServicePort(10_002),
            StoreOp::PutApp(app("/shop", 1)),
            StoreOp::PutApp(app("/shop/web", 1)),
            StoreOp::PutVersion { app: shop.clone(), version: Timestamp(1), spec: spec("/shop", 2) },
            StoreOp::PutVersion { app: shop.clone(), version: Timestamp(2), spec: spec("/shop", 3) },
            StoreOp::PutVersion {
                app: PathId::parse("/shop/web").expect("valid"),
                version: Timestamp(1),
                spec: spec("/shop/web", 2),
            },
            StoreOp::PutGroup(GroupRecord {
                id: PathId::parse("/shop").expect("valid"),
                dependencies: vec![PathId::parse("/db").expect("valid")],
                version: Timestamp(1),
                enforce_role: false,
            }),
            StoreOp::PutInstance(instance("/shop", 1)),
            StoreOp::PutInstance(instance("/shop", 2)),
            StoreOp::PutInstance(instance("/shop/web", 1)),
            StoreOp::PutDeployment(deployment("d-1", "/shop")),
            StoreOp::PutDeployment(deployment("d-2", "/shop/web")),
            StoreOp::PutTaskFailure(failure("/shop")),
            StoreOp::PutTaskFailure(failure("/shop/web")),
            StoreOp::PutSubscriber("http://10.0.0.9:7000/events".into()),
            StoreOp::PutSubscriber("http://10.0.0.9:7001/events".into()),
        ];
        let mut running = instance("/shop", 1);
        running.healthy = Some(false);
        let second = vec![
            StoreOp::FrameworkId(FrameworkId::new("fw-2")),
            StoreOp::PutInstance(running),
            StoreOp::DeleteInstance(instance("/shop", 2).task_id),
            StoreOp::DeleteDeployment(DeploymentId("d-1".into())),
            StoreOp::DeleteVersion { app: shop.clone(), version: Timestamp(1) },
            // Deleting /shop forgets its versions and failure, not /shop/web's.
            StoreOp::DeleteApp(shop),
            StoreOp::DeleteGroup(PathId::parse("/shop").expect("valid")),
            StoreOp::NextServicePort(10_003),
            StoreOp::DeleteSubscriber("http://10.0.0.9:7000/events".into()),
        ];
        (first, second)
    }

    /// What the two batches leave, as the store returns it (each table in key order).
    pub fn check_after_both(recovered: &Recovered) {
        assert_eq!(recovered.framework_id, Some(FrameworkId::new("fw-2")));
        assert_eq!(recovered.next_service_port, Some(10_003));
        assert_eq!(recovered.apps, vec![app("/shop/web", 1)]);
        let versions: Vec<_> =
            recovered.versions.iter().map(|(a, v, s)| (a.to_string(), v.ms(), s.instances)).collect();
        assert_eq!(versions, vec![("/shop/web".to_owned(), 1, 2)]);
        assert!(recovered.groups.is_empty());
        let mut running = instance("/shop", 1);
        running.healthy = Some(false);
        assert_eq!(recovered.instances, vec![running, instance("/shop/web", 1)]);
        assert_eq!(recovered.deployments, vec![deployment("d-2", "/shop/web")]);
        assert_eq!(recovered.task_failures, vec![failure("/shop/web")]);
        assert_eq!(recovered.subscribers, vec!["http://10.0.0.9:7001/events".to_owned()]);
    }
}

#[tokio::test]
async fn what_is_committed_is_loaded_back_after_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("services.redb");
    let (first, second) = sample::batches();
    {
        let mut store = Store::File(FileStore::open(&path).expect("open"));
        assert!(store.load().await.expect("load").apps.is_empty());
        store.apply(&first).await.expect("first batch");
        let after_first = store.load().await.expect("load");
        assert_eq!(after_first.apps.len(), 2);
        assert_eq!(after_first.versions.len(), 3);
        assert_eq!(after_first.groups.len(), 1);
        store.apply(&second).await.expect("second batch");
    }
    let mut store = Store::File(FileStore::open(&path).expect("reopen"));
    sample::check_after_both(&store.load().await.expect("load"));
}

#[tokio::test]
async fn a_second_process_cannot_open_a_store_in_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("services.redb");
    let _first = FileStore::open(&path).expect("open");
    assert!(FileStore::open(&path).is_err());
}

#[tokio::test]
async fn a_batch_is_applied_whole_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::File(FileStore::open(&dir.path().join("s.redb")).expect("open"));
    let instance = sample::instance("/a", 1);
    // Put, delete and put again in one batch: the last write wins.
    let batch = vec![
        StoreOp::PutInstance(instance.clone()),
        StoreOp::DeleteInstance(instance.task_id.clone()),
        StoreOp::PutInstance(instance.clone()),
        StoreOp::PutApp(sample::app("/a", 1)),
        StoreOp::DeleteApp(PathId::parse("/a").expect("valid")),
    ];
    store.apply(&batch).await.expect("apply");
    let recovered = store.load().await.expect("load");
    assert_eq!(recovered.instances, vec![instance]);
    assert!(recovered.apps.is_empty());
}

// ----- etcd -----

use agora_proto::etcd_client::{Etcd, KvWrite, Term};

const ROOT: &str = "/test/services";

/// Campaigns for `ROOT/leader` with a fresh lease; returns the term won.
async fn lead(client: &Etcd) -> Term {
    let lease = client.grant_lease(30).await.expect("lease");
    client
        .campaign(format!("{ROOT}/leader").as_bytes(), "127.0.0.1:8080", lease)
        .await
        .expect("campaign")
        .expect("nobody else leads")
}

async fn etcd_store(etcd: &etcd_server::Etcd) -> (Etcd, Term, Store) {
    let client = Etcd::connect(std::slice::from_ref(&etcd.url)).expect("client");
    let term = lead(&client).await;
    let store = Store::Etcd(Box::new(EtcdStore::new(client.clone(), ROOT, term.clone())));
    (client, term, store)
}

#[tokio::test(flavor = "multi_thread")]
async fn what_is_committed_to_etcd_is_loaded_back_by_the_next_leader() {
    let etcd = etcd_server::Etcd::start();
    let (client, term, mut store) = etcd_store(&etcd).await;
    let (first, second) = sample::batches();
    store.apply(&first).await.expect("first batch");
    store.apply(&second).await.expect("second batch");
    client.revoke_lease(term.lease_id).await.expect("step down");
    let next = lead(&client).await;
    let mut store = Store::Etcd(Box::new(EtcdStore::new(client, ROOT, next)));
    sample::check_after_both(&store.load().await.expect("load"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_larger_than_one_etcd_transaction_is_committed_whole_through_the_journal() {
    let etcd = etcd_server::Etcd::start();
    let (client, _term, mut store) = etcd_store(&etcd).await;
    let batch: Vec<StoreOp> = (0..1_000).map(|n| StoreOp::PutInstance(sample::instance("/big", n))).collect();
    store.apply(&batch).await.expect("apply");
    let recovered = store.load().await.expect("load");
    assert_eq!(recovered.instances.len(), 1_000);
    let journal = client.range_prefix(format!("{ROOT}/journal/").as_bytes()).await.expect("range");
    assert!(journal.is_empty(), "the journal is deleted once applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_committed_journal_left_by_a_crash_is_finished_and_an_uncommitted_one_dropped() {
    let etcd = etcd_server::Etcd::start();
    let (client, term, mut store) = etcd_store(&etcd).await;
    let journal = |name: &str| format!("{ROOT}/journal/{name}").into_bytes();
    // A journal entry is the batch's writes in the SDK's terms.
    let entry =
        |ops: &[StoreOp]| serde_json::to_vec(&super::to_kv(super::writes(ops).expect("writes"))).expect("encode");
    // A leader crashed after committing a two-entry journal, before writing the records.
    let committed = [
        KvWrite::Put { key: journal("00000000"), value: entry(&[StoreOp::PutApp(sample::app("/a", 1))]) },
        KvWrite::Put { key: journal("00000001"), value: entry(&[StoreOp::PutInstance(sample::instance("/a", 1))]) },
        KvWrite::Put { key: journal("commit"), value: b"2".to_vec() },
    ];
    client.fenced_txn(&term, &committed).await.expect("write journal");
    let recovered = store.load().await.expect("load");
    assert_eq!(recovered.apps, vec![sample::app("/a", 1)]);
    assert_eq!(recovered.instances, vec![sample::instance("/a", 1)]);
    // Another crashed before its commit: its entry never happened.
    let uncommitted =
        [KvWrite::Put { key: journal("00000000"), value: entry(&[StoreOp::PutApp(sample::app("/b", 1))]) }];
    client.fenced_txn(&term, &uncommitted).await.expect("write journal");
    let recovered = store.load().await.expect("load");
    assert_eq!(recovered.apps, vec![sample::app("/a", 1)]);
    assert!(client.range_prefix(&journal("")).await.expect("range").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_leader_cannot_write() {
    let etcd = etcd_server::Etcd::start();
    let (client, term, mut store) = etcd_store(&etcd).await;
    store.apply(&[StoreOp::PutApp(sample::app("/a", 1))]).await.expect("while leading");
    client.revoke_lease(term.lease_id).await.expect("lose the lease");
    let _next = lead(&client).await;
    let error = store.apply(&[StoreOp::PutApp(sample::app("/b", 1))]).await.expect_err("deposed");
    assert!(error.is_deposed(), "{error}");
    let big: Vec<StoreOp> = (0..200).map(|n| StoreOp::PutInstance(sample::instance("/c", n))).collect();
    assert!(store.apply(&big).await.expect_err("deposed").is_deposed());
    let apps = client.range_prefix(format!("{ROOT}/state/apps/").as_bytes()).await.expect("range");
    assert_eq!(apps.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_writing_one_key_twice_and_deleting_an_app_with_its_versions_commits_on_etcd() {
    let etcd = etcd_server::Etcd::start();
    let (client, _term, mut store) = etcd_store(&etcd).await;
    let a = PathId::parse("/a").expect("valid");
    let instance = sample::instance("/a", 1);
    store
        .apply(&[
            StoreOp::PutApp(sample::app("/a", 1)),
            StoreOp::PutVersion { app: a.clone(), version: crate::model::Timestamp(1), spec: sample::spec("/a", 1) },
        ])
        .await
        .expect("first");
    // etcd refuses a transaction naming a key twice: the store folds them.
    let batch = vec![
        StoreOp::PutInstance(instance.clone()),
        StoreOp::DeleteInstance(instance.task_id.clone()),
        StoreOp::PutInstance(instance.clone()),
        StoreOp::PutVersion { app: a.clone(), version: crate::model::Timestamp(2), spec: sample::spec("/a", 2) },
        StoreOp::DeleteApp(a.clone()),
        StoreOp::PutApp(sample::app("/b", 1)),
    ];
    store.apply(&batch).await.expect("apply");
    let recovered = store.load().await.expect("load");
    assert_eq!(recovered.instances, vec![instance]);
    assert_eq!(recovered.apps, vec![sample::app("/b", 1)]);
    assert!(recovered.versions.is_empty(), "both versions of /a went with it: {:?}", recovered.versions);
    let keys = client.range_prefix(format!("{ROOT}/state/versions/").as_bytes()).await.expect("range");
    assert!(keys.is_empty());
}
