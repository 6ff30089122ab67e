//! Two kms-api replicas on one etcd prefix, a real three-member cluster
//! (issue 13): a change made on one replica is in force on the other
//! within the cache's staleness bound, also after the member carrying the
//! other's watch dies; concurrent writes on both lose nothing; and each
//! replica keeps its own audit chain and anchor, so both restart serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use skm::devstack::DevSeal;
use skm::etcd::EtcdCluster;
use skm_client::Skm;
use skm_client::admin::v1 as admin;
use skm_client::api::v1 as api;
use skm_e2e::{InProcess, Replica, create_key, extra_operator, keystore, wait_ready};
use skm_runtime::{Role, Service};
use tempfile::TempDir;
use tonic::Code;

/// kms-api's default `cache_max_staleness_ms`.
const BOUND: Duration = Duration::from_millis(1000);
const READY: Duration = Duration::from_secs(30);

struct Fleet {
    // Dropped last: the cluster's files live in it.
    _dir: TempDir,
    cluster: EtcdCluster,
    stack: InProcess,
    b: Replica,
}

async fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let clients = [Service::KmsApi.name(), Service::SystemKeyd.name()];
    let mut cluster = EtcdCluster::prepare(dir.path(), 3, skm_e2e::free_port_base(), &clients).unwrap();
    cluster.start(Service::KmsApi.name()).await.unwrap();
    let stack = InProcess::start_on_etcd(DevSeal::Passphrase, &cluster).await.unwrap();
    wait_ready(&stack.client().unwrap(), READY).await.unwrap();
    let b = stack.start_replica("kms-api-2").await.unwrap();
    wait_ready(&b.client().unwrap(), READY).await.unwrap();
    Fleet { _dir: dir, cluster, stack, b }
}

/// Polls `check` until it holds. A check begun more than [`BOUND`] after
/// `since` (when replica A acknowledged the change) must hold: that is the
/// promise. Returns how long after `since` the first passing check began.
async fn in_force<F, Fut>(what: &str, since: Instant, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        let began = since.elapsed();
        if check().await {
            println!("{what}: in force on replica B {began:?} after A acknowledged it");
            return began;
        }
        assert!(
            began <= BOUND,
            "{what}: not in force on replica B {began:?} after A acknowledged it (bound {BOUND:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn encrypt(skm: &Skm, key_id: &str) -> Result<u32, Code> {
    let request = api::EncryptRequest { key_id: key_id.to_owned(), plaintext: b"fleet".to_vec(), aad: vec![] };
    skm.keys().encrypt(request).await.map(|r| r.into_inner().key_version).map_err(|s| s.code())
}

fn key_request(key_id: &str) -> admin::KeyIdRequest {
    admin::KeyIdRequest { key_id: key_id.to_owned() }
}

fn policy(ip: &str) -> Option<admin::Policy> {
    Some(admin::Policy { allow_ips: vec![ip.to_owned()], ..Default::default() })
}

/// One admin call on `skm`, as a future that owns its client.
macro_rules! call {
    ($skm:expr, $method:ident, $request:expr) => {{
        let mut client = $skm.admin().unwrap();
        let request = $request;
        async move { client.$method(request).await }
    }};
}

/// Repeats an admin write that may fail with UNAVAILABLE while an etcd
/// member is lost (its outcome unknown, the write is not retried by
/// kms-api); returns when it was acknowledged.
async fn acknowledged<F, Fut, T>(mut write: F) -> Instant
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    for _ in 0..50 {
        match write().await {
            Ok(_) => return Instant::now(),
            Err(s) if s.code() == Code::Unavailable => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(s) => panic!("write refused: {s:?}"),
        }
    }
    panic!("write still UNAVAILABLE after 50 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_on_one_replica_are_in_force_on_the_other_within_the_bound() {
    let mut fleet = fleet().await;
    let a = fleet.stack.client().unwrap();
    let b = fleet.b.client().unwrap();
    let ks = keystore(&a, "fleet").await.unwrap();
    let key = create_key(&a, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();
    // B has the key and its keystore in its cache from here on, and
    // answers from it: its watch vouches for it.
    assert_eq!(encrypt(&b, &key).await, Ok(1));
    let hits = fleet.b.kms().kms().cache_stats().key_hits;
    assert_eq!(encrypt(&b, &key).await, Ok(1));
    assert!(fleet.b.kms().kms().cache_fresh(), "replica B's watch vouches for its cache");
    assert!(fleet.b.kms().kms().cache_stats().key_hits > hits, "replica B answered from its cache");

    let since = acknowledged(|| call!(a, rotate_key, admin::RotateKeyRequest { key_id: key.clone() })).await;
    in_force("rotation", since, || async { encrypt(&b, &key).await == Ok(2) }).await;

    let since = acknowledged(|| call!(a, disable_key, key_request(&key))).await;
    in_force("disable", since, || async { encrypt(&b, &key).await == Err(Code::FailedPrecondition) }).await;
    let since = acknowledged(|| call!(a, enable_key, key_request(&key))).await;
    in_force("enable", since, || async { encrypt(&b, &key).await == Ok(2) }).await;

    let closed = || {
        let request = admin::UpdateKeystoreRequest { keystore_id: ks.clone(), policy: policy("10.9.9.9"), alias: None };
        call!(a, update_keystore, request)
    };
    let since = acknowledged(closed).await;
    in_force("policy change", since, || async { encrypt(&b, &key).await == Err(Code::PermissionDenied) }).await;

    // An operator certificate revoked on A stops working on B.
    let files = tempfile::tempdir().unwrap();
    let (mallory, sha256) = extra_operator(&fleet.stack.stack, &fleet.b.profile, "mallory", Role::Admin, files.path());
    let mallory = mallory.connect().unwrap();
    let list = || async {
        let request = admin::ListKeystoresRequest::default();
        mallory.admin().unwrap().list_keystores(request).await.map(drop).map_err(|s| s.code())
    };
    assert_eq!(list().await, Ok(()));
    let revoke = || call!(a, revoke_operator, admin::RevokeOperatorRequest { sha256: sha256.clone() });
    let since = acknowledged(revoke).await;
    in_force("operator revocation", since, || async { list().await == Err(Code::PermissionDenied) }).await;

    // The member B's watch is on dies (each replica starts on the first
    // endpoint): B's watch starts again elsewhere, and a change made
    // meanwhile is in force on B within the bound all the same.
    fleet.cluster.kill(0);
    let open = || {
        let request =
            admin::UpdateKeystoreRequest { keystore_id: ks.clone(), policy: policy("127.0.0.1"), alias: None };
        call!(a, update_keystore, request)
    };
    let since = acknowledged(open).await;
    in_force("policy change with a member lost", since, || async { encrypt(&b, &key).await == Ok(2) }).await;
    let since = acknowledged(|| call!(a, disable_key, key_request(&key))).await;
    in_force("disable with a member lost", since, || async {
        encrypt(&b, &key).await == Err(Code::FailedPrecondition)
    })
    .await;
    fleet.cluster.restart(0).unwrap();

    fleet.b.stop().await.unwrap();
    fleet.stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_on_both_replicas_lose_nothing_and_each_keeps_its_audit() {
    let fleet = fleet().await;
    let a = fleet.stack.client().unwrap();
    let b = fleet.b.client().unwrap();
    let ks = keystore(&a, "race").await.unwrap();
    let key = create_key(&a, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();

    // Both replicas rotate one key at once: every acknowledged rotation is
    // one version, none lost, none twice.
    const EACH: usize = 8;
    let rotate = |skm: Skm, key: String| async move {
        let mut done = 0;
        for _ in 0..EACH {
            match skm.admin().unwrap().rotate_key(admin::RotateKeyRequest { key_id: key.clone() }).await {
                Ok(_) => done += 1,
                Err(s) => assert_eq!(s.code(), Code::Aborted, "{s:?}"),
            }
        }
        done
    };
    let (on_a, on_b) = tokio::join!(rotate(a.clone(), key.clone()), rotate(b.clone(), key.clone()));
    assert!(on_a > 0 && on_b > 0, "both replicas rotated ({on_a}, {on_b})");
    let info =
        a.admin().unwrap().describe_key(admin::DescribeKeyRequest { key_id: key.clone() }).await.unwrap().into_inner();
    let versions: Vec<u32> = info.versions.iter().map(|v| v.version).collect();
    let want: Vec<u32> = (1..=u32::try_from(1 + on_a + on_b).unwrap()).collect();
    assert_eq!(versions, want, "{on_a} rotations on A and {on_b} on B");
    assert_eq!(info.current_version, *want.last().unwrap());
    // Both encrypt with the newest.
    assert_eq!(encrypt(&a, &key).await, Ok(info.current_version));
    in_force("the last rotation", Instant::now(), || async { encrypt(&b, &key).await == Ok(info.current_version) })
        .await;

    // The same keystore name on both at once: one wins.
    let create = |skm: Skm| async move {
        let request = admin::CreateKeystoreRequest {
            name: "contested".into(),
            policy: policy("127.0.0.1"),
            ..Default::default()
        };
        skm.admin().unwrap().create_keystore(request).await.map(drop).map_err(|s| s.code())
    };
    let (x, y) = tokio::join!(create(a.clone()), create(b.clone()));
    let mut outcomes = [x, y];
    outcomes.sort_by_key(|o| o.is_err());
    assert_eq!(outcomes[0], Ok(()), "{outcomes:?}");
    assert!(matches!(outcomes[1], Err(Code::AlreadyExists | Code::Aborted)), "{outcomes:?}");

    // Each replica's chain is its own and intact, and each is anchored on
    // its own: after a restart of every tier and replica, both serve.
    for (name, skm) in [("A", &a), ("B", &b)] {
        let report = skm.admin().unwrap().verify_audit(admin::VerifyAuditRequest {}).await.unwrap().into_inner();
        assert!(report.intact && report.entries > 0, "replica {name}: {report:?}");
    }
    let Fleet { _dir, cluster, stack, mut b } = fleet;
    b.stop().await.unwrap();
    let stack = stack.restart(|_| {}).await.unwrap();
    let b = stack.start_replica("kms-api-2").await.unwrap();
    for (name, skm) in [("A", stack.client().unwrap()), ("B", b.client().unwrap())] {
        wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("replica {name} after restart: {e}"));
        let report = skm.admin().unwrap().verify_audit(admin::VerifyAuditRequest {}).await.unwrap().into_inner();
        assert!(report.intact, "replica {name}: {report:?}");
        assert!(encrypt(&skm, &key).await.is_ok(), "replica {name} serves after restart");
    }
    drop(cluster);
}
