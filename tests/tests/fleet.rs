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

/// A replica name is held by one process at a time: a second kms-api
/// started as a running replica's name is refused, naming it, before it
/// opens its log; once that replica has stopped, the name starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_replica_with_a_running_ones_name_is_refused() {
    let fleet = fleet().await;
    let short = |config: &mut kms_api::Config| config.maintenance_lease = Duration::from_secs(2);
    let clock = std::sync::Arc::new(kms_api::clock::SystemClock);
    let refused = fleet.stack.start_replica_with("kms-api-2", clock.clone(), short).await;
    let err = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("another kms-api runs as replica \"kms-api-2\""), "{err}");
    wait_ready(&fleet.b.client().unwrap(), READY).await.expect("the running replica is unharmed");
    let Fleet { _dir, cluster, stack, mut b } = fleet;
    b.stop().await.unwrap();
    let again = stack.start_replica_with("kms-api-2", clock, short).await.unwrap();
    wait_ready(&again.client().unwrap(), READY).await.unwrap();
    drop((again, stack, cluster, _dir));
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

    // A change whose reply was lost on A, sent again to B under the same
    // request id, is answered by B from A's record and made once.
    let secret = skm_e2e::create_secret(&a, &ks, "retried", "one").await.unwrap();
    let with_id = |key_id: &str| {
        let mut request =
            tonic::Request::new(admin::UpdateSecretRequest { key_id: key_id.to_owned(), value: "two".into() });
        request.metadata_mut().insert(skm_client::REQUEST_ID_METADATA, "update-on-a-then-b".parse().unwrap());
        request
    };
    let on_a = a.admin().unwrap().update_secret(with_id(&secret)).await.unwrap().into_inner().version;
    let on_b = b.admin().unwrap().update_secret(with_id(&secret)).await.unwrap().into_inner().version;
    assert_eq!((on_a, on_b), (2, 2));
    let info = b
        .admin()
        .unwrap()
        .describe_key(admin::DescribeKeyRequest { key_id: secret.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.versions.len(), 2, "one new version for the request sent twice: {info:?}");

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

/// The fleet as processes: etcd's leader is killed with SIGKILL under load,
/// then one kms-api replica. A client whose profile names both replicas
/// sees no failed call, and every write the surviving replica acknowledged
/// is there afterwards. The crashed replica restarts on its own log, and
/// `skm audit verify` and `list` cover both replicas' chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retrying_client_rides_out_the_loss_of_the_etcd_leader_and_of_a_replica() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use skm::devstack::{self, Ports};

    skm_runtime::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let p = skm_e2e::free_ports(6);
    let ports = Ports { user: p[0], admin: p[1], root: p[2], system: p[3], rest: None, console: None };
    let mut stack =
        devstack::prepare(&dir.path().join("stack"), ports, DevSeal::Passphrase, skm_e2e::TRUST_DOMAIN).unwrap();
    let clients = [Service::KmsApi.name(), Service::SystemKeyd.name()];
    let mut cluster = EtcdCluster::prepare(&dir.path().join("etcd"), 3, skm_e2e::free_port_base(), &clients).unwrap();
    cluster.start(Service::KmsApi.name()).await.unwrap();
    devstack::store_on_etcd(&stack, &cluster).unwrap();
    let second = devstack::add_replica(&mut stack, 2, p[4], p[5]).unwrap();
    let skm_bin = skm_e2e::skm_bin();
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let mut tiers = Vec::new();
    for service in [Service::RootKeyd, Service::SystemKeyd, Service::KmsApi] {
        let child = skm::dev::spawn_tier(&skm_bin, service, &stack.config(service), Some(&log(service.name())));
        tiers.push(child.unwrap());
    }
    let replica = skm::dev::spawn_tier(&skm_bin, Service::KmsApi, &second, Some(&log("kms-api-2"))).unwrap();
    tiers.push(replica);
    let logs = || {
        ["root-keyd", "system-keyd", "kms-api", "kms-api-2"]
            .iter()
            .map(|n| format!("--- {n} ---\n{}", std::fs::read_to_string(log(n)).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // The operator's profile names both replicas; B's admin port for writes.
    let fleet = stack.profile.connect().unwrap();
    let on_b = skm_client::Profile { admin_endpoint: format!("127.0.0.1:{}", p[5]), ..stack.profile.clone() };
    let b = on_b.connect().unwrap();
    for skm in [&fleet, &b] {
        wait_ready(skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    }
    let ks = keystore(&fleet, "ha").await.unwrap();
    let key = create_key(&fleet, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn({
        let (fleet, key, stop, ok) = (fleet.clone(), key.clone(), stop.clone(), ok.clone());
        async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match fleet.encrypt(&key, b"ha", b"").await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }
    });
    // Admin writes through the fleet profile (`admin_call`: a request id,
    // on to B while A is down or etcd has no leader): none may fail, every
    // acknowledged one must be there at the end, and none made twice.
    let counter = skm_e2e::create_secret(&fleet, &ks, "counter", "0").await.unwrap();
    let rounds = Arc::new(AtomicUsize::new(0));
    let writes = tokio::spawn({
        let (fleet, ks, counter, stop, rounds) =
            (fleet.clone(), ks.clone(), counter.clone(), stop.clone(), rounds.clone());
        async move {
            let (mut acknowledged, mut updates, mut failures) = (Vec::new(), 0u32, Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let request = admin::CreateSecretRequest {
                    keystore_id: ks.clone(),
                    name: format!("s{n}"),
                    value: format!("value {n}"),
                    max_versions: 0,
                };
                let created = fleet.admin_call(request, |mut a, r| async move { a.create_secret(r).await }).await;
                match created {
                    Ok(reply) => acknowledged.push((reply.key_id, format!("value {n}"))),
                    Err(e) => failures.push(format!("CreateSecret s{n}: {e}")),
                }
                let request = admin::UpdateSecretRequest { key_id: counter.clone(), value: n.to_string() };
                match fleet.admin_call(request, |mut a, r| async move { a.update_secret(r).await }).await {
                    Ok(reply) => {
                        updates += 1;
                        assert_eq!(reply.version, 1 + updates, "update {n} made a version of its own, once");
                    }
                    Err(e) => failures.push(format!("UpdateSecret {n}: {e}")),
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            (acknowledged, updates, failures)
        }
    });
    // Each phase lasts until both loads have gone on through it.
    let until = |count: usize, writes: usize| {
        let (ok, rounds) = (ok.clone(), rounds.clone());
        async move {
            let what = format!("{count} encrypts and {writes} rounds of writes acknowledged");
            skm_e2e::eventually(&what, Duration::from_secs(60), || async {
                ok.load(Ordering::Relaxed) >= count && rounds.load(Ordering::Relaxed) >= writes
            })
            .await
            .unwrap();
        }
    };
    until(50, 10).await;
    let leader = cluster.leader(Service::KmsApi.name()).await.unwrap().expect("etcd has a leader");
    cluster.kill(leader);
    let after_leader = ok.load(Ordering::Relaxed);
    let rounds_before_leader = rounds.load(Ordering::Relaxed);
    until(after_leader + 200, rounds_before_leader + 20).await;
    // Replica A (the profile's first) dies as a crash would.
    tiers[2].start_kill().unwrap();
    let _ = tiers[2].wait().await;
    let after_replica = ok.load(Ordering::Relaxed);
    let rounds_before_replica = rounds.load(Ordering::Relaxed);
    until(after_replica + 200, rounds_before_replica + 20).await;
    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    let (acknowledged, updates, write_failures) = writes.await.unwrap();
    println!(
        "encrypts: {} ok ({after_leader} before the leader died, {after_replica} before replica A did); {} secrets \
         written, {updates} updates ({rounds_before_leader} rounds before the leader died, {rounds_before_replica} \
         before replica A did)",
        ok.load(Ordering::Relaxed),
        acknowledged.len()
    );
    assert!(failures.is_empty(), "the retrying client saw {} failures: {:?}\n{}", failures.len(), failures, logs());
    assert!(write_failures.is_empty(), "admin writes failed: {write_failures:?}\n{}", logs());

    cluster.restart(leader).unwrap();
    assert!(!acknowledged.is_empty(), "no write was acknowledged\n{}", logs());
    let counter_now = b.secret(&counter, 0).await.unwrap();
    assert_eq!(counter_now.version, 1 + updates, "every acknowledged update once, none twice");
    for (id, value) in &acknowledged {
        let secret = b.secret(id, 0).await.unwrap_or_else(|e| panic!("acknowledged secret {id}: {e}"));
        assert_eq!(secret.value.as_str(), value);
    }

    // A comes back from its crash on its own log, and `skm audit verify`
    // and `list` cover both replicas' chains.
    tiers[2] =
        skm::dev::spawn_tier(&skm_bin, Service::KmsApi, &stack.config(Service::KmsApi), Some(&log("kms-api"))).unwrap();
    wait_ready(&fleet, READY).await.unwrap_or_else(|e| panic!("replica A after its crash: {e}\n{}", logs()));
    let cli = |args: &[&str]| {
        let out =
            std::process::Command::new(&skm_bin).args(args).env("SKM_PROFILE", &stack.profile_path).output().unwrap();
        assert!(out.status.success(), "skm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let verified: serde_json::Value = serde_json::from_str(&cli(&["audit", "verify", "--json"])).unwrap();
    let replicas = verified["replicas"].as_array().expect("one report per replica");
    assert_eq!(replicas.len(), 2, "{verified}");
    assert_eq!(verified["intact"], true, "{verified}");
    for report in replicas {
        assert!(report["entries"].as_u64().unwrap() > 0, "{report}");
    }
    let listed: Vec<serde_json::Value> =
        cli(&["audit", "list", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let from = |endpoint: String| listed.iter().filter(|e| e["replica"] == endpoint.as_str()).count();
    let (on_a, on_b) = (from(stack.profile.admin_endpoint.clone()), from(format!("127.0.0.1:{}", p[5])));
    assert!(on_a > 0 && on_b > 0, "entries of both replicas: {on_a} from A, {on_b} from B");
    assert_eq!(on_a + on_b, listed.len());
    let times: Vec<i64> = listed.iter().map(|e| e["time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "merged by time");
    // Each replica's secrets were created there: B's are in B's chain.
    let created_on_b = listed.iter().filter(|e| e["operation"] == "CreateSecret" && e["result"] == "allowed").count();
    assert!(created_on_b >= acknowledged.len(), "{created_on_b} CreateSecret entries for {}", acknowledged.len());

    for mut tier in tiers {
        skm::dev::stop(&mut tier, Duration::from_secs(10)).await;
    }
}

/// The AutoRotateKey outcomes ("allowed", "failed: …") in one replica's
/// audit log for `key`.
async fn auto_rotations(skm: &Skm, key: &str) -> Vec<String> {
    let request = admin::ListAuditRequest { key_id: key.to_owned(), ..Default::default() };
    let entries = skm.admin().unwrap().list_audit(request).await.unwrap().into_inner().entries;
    entries.into_iter().filter(|e| e.operation == "AutoRotateKey" && e.result != "intent").map(|e| e.result).collect()
}

async fn versions(skm: &Skm, key: &str) -> u32 {
    let request = admin::DescribeKeyRequest { key_id: key.to_owned() };
    let info = skm.admin().unwrap().describe_key(request).await.unwrap().into_inner();
    u32::try_from(info.versions.len()).unwrap()
}

/// One replica at a time runs automatic rotation: a due rotation happens
/// once, on the elected replica only (the other never even tries); when
/// the leader stops renewing its lease (as if frozen or cut off from
/// etcd) it stops acting, the other is elected once the lease expires,
/// and the next due rotation again happens exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automatic_rotation_runs_once_on_the_elected_replica_and_fails_over() {
    use kms_api::clock::ManualClock;

    let dir = tempfile::tempdir().unwrap();
    let clients = [Service::KmsApi.name(), Service::SystemKeyd.name()];
    let mut cluster = EtcdCluster::prepare(dir.path(), 3, skm_e2e::free_port_base(), &clients).unwrap();
    cluster.start(Service::KmsApi.name()).await.unwrap();
    let clock = std::sync::Arc::new(ManualClock::new());
    let fast = |config: &mut kms_api::Config| {
        config.maintenance_interval = Duration::from_secs(1);
        config.maintenance_lease = Duration::from_secs(2);
    };
    let stack = InProcess::start_on_etcd_with(DevSeal::Passphrase, &cluster, clock.clone(), fast).await.unwrap();
    let a = stack.client().unwrap();
    wait_ready(&a, READY).await.unwrap();
    let mut b_replica = stack.start_replica_with("kms-api-2", clock.clone(), fast).await.unwrap();
    let b = b_replica.client().unwrap();
    wait_ready(&b, READY).await.unwrap();
    let leads = || (stack.kms().leads_maintenance(), b_replica.kms().leads_maintenance());
    // A campaigned first; B waits.
    skm_e2e::eventually("A is elected", Duration::from_secs(10), || async { leads() == (true, false) }).await.unwrap();

    let ks = keystore(&a, "elected").await.unwrap();
    let key = create_key(&a, &ks, "k", admin::KeyType::Aes256, 1).await.unwrap();
    clock.advance(86_400 + 1);
    skm_e2e::eventually("the due rotation", Duration::from_secs(10), || async { versions(&a, &key).await == 2 })
        .await
        .unwrap();
    // Several more passes on both: nothing more happens, and B never tried.
    skm_e2e::never("another rotation, or one tried on B", Duration::from_secs(3), || async {
        versions(&a, &key).await != 2 || !auto_rotations(&b, &key).await.is_empty()
    })
    .await
    .unwrap();
    assert_eq!(versions(&a, &key).await, 2);
    assert_eq!(auto_rotations(&a, &key).await, ["allowed"]);
    assert!(auto_rotations(&b, &key).await.is_empty(), "replica B ran a maintenance pass while A was elected");

    // A stops renewing its lease: it stops counting itself the leader
    // within its term, and B is elected once etcd expires the lease.
    stack.kms().danger_abandon_leadership();
    skm_e2e::eventually("B is elected", Duration::from_secs(20), || async { leads() == (false, true) }).await.unwrap();
    clock.advance(86_400 + 1);
    skm_e2e::eventually("the next due rotation", Duration::from_secs(10), || async { versions(&b, &key).await == 3 })
        .await
        .unwrap();
    skm_e2e::never("a second rotation", Duration::from_secs(3), || async { versions(&b, &key).await != 3 })
        .await
        .unwrap();
    assert_eq!(versions(&b, &key).await, 3, "rotated once, not by both");
    assert_eq!(auto_rotations(&a, &key).await, ["allowed"], "A acted after it lost its lease");
    assert_eq!(auto_rotations(&b, &key).await, ["allowed"]);

    b_replica.stop().await.unwrap();
    drop(stack);
    drop(cluster);
}

/// etcd loses its quorum under kms-api: a change is refused UNAVAILABLE
/// saying the record store is, a key use is answered from the cache while
/// the watch's last word is within the staleness bound and UNAVAILABLE
/// after it, and both work again once the quorum is back, without
/// restarting kms-api.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_loss_makes_kms_api_unavailable_and_it_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let clients = [Service::KmsApi.name(), Service::SystemKeyd.name()];
    let mut cluster = EtcdCluster::prepare(dir.path(), 3, skm_e2e::free_port_base(), &clients).unwrap();
    cluster.start(Service::KmsApi.name()).await.unwrap();
    let quick = |config: &mut kms_api::Config| {
        if let skm_store::config::StoreConfig::Etcd(etcd) = &mut config.store {
            etcd.request_timeout = Duration::from_secs(1);
        }
    };
    let clock = std::sync::Arc::new(kms_api::clock::SystemClock);
    let stack = InProcess::start_on_etcd_with(DevSeal::Passphrase, &cluster, clock, quick).await.unwrap();
    let a = stack.client().unwrap();
    wait_ready(&a, READY).await.unwrap();
    let ks = keystore(&a, "quorum").await.unwrap();
    let key = create_key(&a, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();
    assert_eq!(encrypt(&a, &key).await, Ok(1));

    cluster.kill(1);
    cluster.kill(2);
    let create = || {
        let request =
            admin::CreateKeystoreRequest { name: "during".into(), policy: policy("127.0.0.1"), ..Default::default() };
        call!(a, create_keystore, request)
    };
    let refused = create().await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("record store is unavailable"), "{refused:?}");
    // Once the bound has passed, a key use reads etcd, and can't.
    skm_e2e::eventually("the cache lapses", BOUND * 5, || async { !stack.kms().kms().cache_fresh() }).await.unwrap();
    assert!(!stack.kms().kms().cache_fresh(), "the cache is not vouched for without a quorum");
    assert_eq!(encrypt(&a, &key).await, Err(Code::Unavailable));

    cluster.restart(1).unwrap();
    cluster.restart(2).unwrap();
    skm_e2e::eventually("writes after the quorum is back", Duration::from_secs(60), || async {
        match create().await {
            Ok(_) => true,
            // The write refused during the loss may have been applied.
            Err(s) => s.code() == Code::AlreadyExists,
        }
    })
    .await
    .unwrap();
    skm_e2e::eventually("key use after the quorum is back", Duration::from_secs(30), || async {
        encrypt(&a, &key).await == Ok(1)
    })
    .await
    .unwrap();
    skm_e2e::eventually("the cache vouched for again", Duration::from_secs(10), || async {
        stack.kms().kms().cache_fresh()
    })
    .await
    .unwrap();
    drop(stack);
    drop(cluster);
}

/// `skm dev --store etcd --replicas 2`: the application profile lists both
/// replicas, and when one is killed the dev stack keeps the other serving
/// and `skm encrypt` goes on working through it, as do the Python SDK's
/// clients.
#[test]
fn skm_dev_runs_two_replicas_and_outlives_one() {
    let dev = skm_e2e::DevProcess::start_with(&["--store", "etcd", "--replicas", "2"]).unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let out = dev.run(args, stdin);
        assert!(out.status.success(), "skm {args:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), dev.stderr());
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["keystore", "create", "--allow-ip", "127.0.0.1", "demo"], b"");
    let created: serde_json::Value =
        serde_json::from_str(&run(&["key", "create", "--type", "aes-256", "demo", "k", "--json"], b"")).unwrap();
    let key = created["key_id"].as_str().unwrap().to_owned();
    let app = dev.data_dir().join("app").join("profile.toml");
    let profile = skm_client::Profile::load(&app).unwrap();
    assert_eq!(profile.user_replicas.len(), 1, "{profile:?}");
    let app = app.display().to_string();
    run(&["--profile", &app, "encrypt", &key], b"before");

    // Replica 1 (the profile's first) dies as a crash would.
    let config = dev.data_dir().join("kms-api").join("kms-api.toml").display().to_string();
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(" daemon kms-api ") && cmdline.contains(&config))
                .then(|| entry.file_name().to_str()?.parse::<i32>().ok())
                .flatten()
        })
        .expect("replica 1's process");
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::KILL).unwrap();
    for round in 0..3 {
        run(&["--profile", &app, "encrypt", &key], format!("after {round}").as_bytes());
    }
    // The Python SDK (sync and asyncio) reads user_replicas too: every other
    // call starts at the dead replica and must fail over.
    let script = r#"
import asyncio, sys, skm
profile, key = sys.argv[1], sys.argv[2]
with skm.Client.from_profile(profile) as c:
    assert len(c.credentials.replicas) == 1, c.credentials
    for i in range(4):
        ct = c.encrypt(key, b"py %d" % i).ciphertext
        assert c.decrypt(key, ct).plaintext == b"py %d" % i
async def main():
    async with skm.AsyncClient.from_profile(profile) as c:
        for i in range(4):
            ct = (await c.encrypt(key, b"aio %d" % i)).ciphertext
            assert (await c.decrypt(key, ct)).plaintext == b"aio %d" % i
asyncio.run(main())
print("python failover ok")
"#;
    let python = std::process::Command::new(skm_e2e::python())
        .args(["-c", script, &app, &key])
        .env("PYTHONPATH", skm_e2e::repo().join("sdk/python/src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        python.status.success() && String::from_utf8_lossy(&python.stdout).contains("python failover ok"),
        "the Python SDK did not fail over: {}{}",
        String::from_utf8_lossy(&python.stdout),
        String::from_utf8_lossy(&python.stderr)
    );
    // skm dev notices within its 200 ms poll, and keeps running.
    let noticed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        dev.stderr().contains("a kms-api replica exited")
    });
    assert!(noticed, "{}", dev.stderr());
    run(&["--profile", &app, "encrypt", &key], b"still");
}
