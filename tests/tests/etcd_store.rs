//! skm-store's etcd backend against a real three-member etcd cluster
//! (Debian's etcd-server, TLS on client and peer URLs): the conformance
//! suite every backend passes, a member lost and back, and quorum lost
//! and back without reopening the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use skm::etcd::EtcdCluster;
use skm_store::conformance::{self, Backend};
use skm_store::etcd::EtcdConfig;
use skm_store::{EtcdStore, Expect, Store, StoreError};
use tempfile::TempDir;

const CLIENT: &str = "kms-api";

async fn cluster() -> (EtcdCluster, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = EtcdCluster::prepare(dir.path(), 3, skm_e2e::free_port_base(), &[CLIENT]).unwrap();
    cluster.start(CLIENT).await.unwrap();
    (cluster, dir)
}

/// Each case gets a prefix of its own on the one cluster.
struct Etcd<'c> {
    cluster: &'c EtcdCluster,
    next: AtomicUsize,
}

impl Backend for Etcd<'_> {
    type S = EtcdStore;
    type Location = EtcdConfig;

    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn fresh(&self) -> (EtcdStore, EtcdConfig) {
        let case = self.next.fetch_add(1, Ordering::Relaxed);
        let config = self.cluster.store_config(CLIENT, &format!("conformance/{case}/"));
        (EtcdStore::open(&config).await.unwrap(), config)
    }

    async fn reopen(&self, store: EtcdStore, config: &EtcdConfig) -> Option<EtcdStore> {
        drop(store);
        Some(EtcdStore::open(config).await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_conforms() {
    let (cluster, _dir) = cluster().await;
    let report = conformance::run_all(&Etcd { cluster: &cluster, next: AtomicUsize::new(0) }).await;
    assert!(report.skipped.is_empty(), "etcd is durable and skips nothing: {:?}", report.skipped);
}

/// Batches applied at once share transactions (group commit) and each is
/// still answered on its own: the disjoint ones are written, the one whose
/// condition fails gets its conflict and writes nothing, and batches on one
/// key are applied one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_share_transactions_and_each_gets_its_own_answer() {
    use skm_store::Op;

    let (cluster, _dir) = cluster().await;
    let store = EtcdStore::open(&cluster.store_config(CLIENT, "group-test/")).await.unwrap();
    store.put(b"taken", b"first", Expect::Absent).await.unwrap();
    let put = |key: String, expect| Op::Put { key: key.into_bytes(), value: b"v".to_vec(), expect };
    let before = store.group_commits();
    let mut batches = tokio::task::JoinSet::new();
    for i in 0..96 {
        let store = store.clone();
        let batch = match i {
            // Its own key is free, but `taken` is not: nothing of it lands.
            40 => vec![put("lost/40".into(), Expect::Absent), put("taken".into(), Expect::Absent)],
            // Five batches on one counter key: applied in turn.
            i if i % 20 == 5 => vec![put("counter".into(), Expect::Any), put(format!("c/{i}"), Expect::Absent)],
            i => vec![put(format!("a/{i}"), Expect::Absent), put(format!("b/{i}"), Expect::Absent)],
        };
        batches.spawn(async move { (i, store.apply(batch).await) });
    }
    while let Some(done) = batches.join_next().await {
        let (i, result) = done.unwrap();
        match i {
            40 => assert!(matches!(&result, Err(StoreError::Conflict { key }) if key == "taken"), "{result:?}"),
            _ => assert!(result.is_ok(), "batch {i}: {result:?}"),
        }
    }
    let after = store.group_commits();
    let (batches, transactions) = (after.batches - before.batches, after.transactions - before.transactions);
    println!("{batches} batches in {transactions} transactions");
    assert_eq!(batches, 96);
    assert!(transactions < 96, "concurrent batches shared transactions: {transactions} for 96");

    assert!(store.get(b"lost/40").await.unwrap().is_none());
    assert_eq!(store.get(b"taken").await.unwrap().unwrap().value, b"first");
    assert_eq!(store.get(b"counter").await.unwrap().unwrap().revision, 5, "five writes, one after the other");
    for i in (0..96).filter(|i| *i != 40 && i % 20 != 5) {
        for prefix in ["a", "b"] {
            assert!(store.get(format!("{prefix}/{i}").as_bytes()).await.unwrap().is_some(), "{prefix}/{i}");
        }
    }
}

/// An elected leader renews its lease and leads for many lease terms in a
/// row while another candidate waits (a leader whose renewals failed would
/// lose its term after 80 % of one TTL); once it abandons, the other leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elected_leader_keeps_its_lease_alive_for_many_terms() {
    let (cluster, _dir) = cluster().await;
    let config = cluster.store_config(CLIENT, "election-test/");
    let (a, b) = (EtcdStore::open(&config).await.unwrap(), EtcdStore::open(&config).await.unwrap());
    let ttl = Duration::from_secs(3);
    let first = a.elect("job", "a", ttl);
    skm_e2e::eventually("a leads", Duration::from_secs(10), || async { first.is_leader() }).await.unwrap();
    let second = b.elect("job", "b", ttl);
    let lost = || async { !first.is_leader() || second.is_leader() };
    skm_e2e::never("a loses its leadership (its lease not kept alive) or b leads", 4 * ttl, lost).await.unwrap();
    first.abandon();
    skm_e2e::eventually("b leads once a abandons", Duration::from_secs(15), || async { second.is_leader() })
        .await
        .unwrap();
    assert!(!first.is_leader());
}

/// Writes go on through the other members when the first endpoint's member
/// dies, and the member catches up when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_member_is_routed_around_and_catches_up() {
    let (mut cluster, _dir) = cluster().await;
    let config = cluster.store_config(CLIENT, "member-loss/");
    let store = EtcdStore::open(&config).await.unwrap();
    assert_eq!(store.put(b"k", b"v1", Expect::Absent).await.unwrap(), 1);

    cluster.kill(0);
    // The store's first endpoint is the dead member: reads and writes move on.
    assert_eq!(store.get(b"k").await.unwrap().unwrap().value, b"v1");
    let mut revision = 1;
    for i in 2..=20u64 {
        revision = store.put(b"k", format!("v{i}").as_bytes(), Expect::Revision(revision)).await.unwrap();
    }
    assert_eq!(revision, 20);

    cluster.restart(0).unwrap();
    let only_first = EtcdConfig { endpoints: cluster.endpoints()[..1].to_vec(), ..config.clone() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // A linearizable read on the restarted member answers once it has
        // caught up with the leader, and then with every acknowledged write.
        match EtcdStore::open(&only_first).await {
            Ok(first) => {
                let read = first.get(b"k").await.unwrap().unwrap();
                assert_eq!((read.revision, read.value.as_slice()), (20, b"v20".as_slice()));
                break;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("member 1 not back yet: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("member 1 did not come back: {e:?}"),
        }
    }
}

/// Without a quorum a write fails with etcd's own reason (never a silent
/// success), and the same store works again once the quorum is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_fails_writes_and_recovers_without_reopening() {
    let (mut cluster, _dir) = cluster().await;
    let config = EtcdConfig { request_timeout: Duration::from_secs(2), ..cluster.store_config(CLIENT, "quorum/") };
    let store = EtcdStore::open(&config).await.unwrap();
    store.put(b"before", b"1", Expect::Absent).await.unwrap();

    cluster.kill(1);
    cluster.kill(2);
    let error = store.put(b"during", b"2", Expect::Absent).await.unwrap_err();
    let StoreError::Unavailable(source) = &error else { panic!("expected the store unavailable, got {error:?}") };
    let message = source.to_string();
    assert!(message.starts_with("etcd at 127.0.0.1:"), "the error names the member: {message}");

    cluster.restart(1).unwrap();
    cluster.restart(2).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match store.put(b"after", b"3", Expect::Absent).await {
            Ok(revision) => {
                assert_eq!(revision, 1);
                break;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("no quorum yet: {e:?}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("the cluster did not recover: {e:?}"),
        }
    }
    assert_eq!(store.get(b"before").await.unwrap().unwrap().value, b"1");
    // The failed write may or may not have been committed (its outcome was
    // unknown to the caller); whichever it was, it is there whole or not at all.
    if let Some(during) = store.get(b"during").await.unwrap() {
        assert_eq!((during.revision, during.value.as_slice()), (1, b"2".as_slice()));
    }
}

async fn next_event(events: &mut tokio::sync::mpsc::Receiver<skm_store::WatchEvent>) -> skm_store::WatchEvent {
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
    event.expect("a watch event within 10 s").expect("the watch runs")
}

/// The watch reports every change under its own prefix and none of
/// another's, vouches for progress only after what it reported, and
/// resumes on another member when its own dies, missing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_reports_changes_and_resumes_on_another_member() {
    use skm_store::WatchEvent;

    let (mut cluster, _dir) = cluster().await;
    let config = cluster.store_config(CLIENT, "watched/");
    let store = EtcdStore::open(&config).await.unwrap();
    let neighbour = EtcdStore::open(&cluster.store_config(CLIENT, "watched-not/")).await.unwrap();
    let mut events = store.watch("test", Duration::from_millis(50));
    assert!(matches!(next_event(&mut events).await, WatchEvent::Restarted { .. }));

    // Every change is reported before a progress check begun after it.
    for round in 0..3u8 {
        neighbour.put(b"other", &[round], Expect::Any).await.unwrap();
        let key = format!("k{round}");
        store.put(key.as_bytes(), b"v", Expect::Absent).await.unwrap();
        let written = std::time::Instant::now();
        let mut seen = false;
        loop {
            match next_event(&mut events).await {
                WatchEvent::Changed(k) => {
                    assert_eq!(k, key.as_bytes(), "only this prefix's keys, without the prefix");
                    seen = true;
                }
                WatchEvent::UpToDate { as_of } if as_of > written => {
                    assert!(seen, "vouched for {key} before reporting it");
                    break;
                }
                WatchEvent::UpToDate { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    store.delete(b"k0", Expect::Any).await.unwrap();
    loop {
        match next_event(&mut events).await {
            WatchEvent::Changed(k) => {
                assert_eq!(k, b"k0", "a deletion is a change");
                break;
            }
            WatchEvent::UpToDate { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    // The watch's member (the first endpoint) dies: the watch resumes on
    // another member after the last revision it reported, so a change made
    // while no stream was open is reported, and no restart is.
    cluster.kill(0);
    // The first write may meet the dead member's connection (its outcome
    // unknown, refused): try until it is there.
    for _ in 0..50 {
        match store.put(b"during", b"v", Expect::Absent).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => break,
            Err(e) => eprintln!("write during the loss: {e:?}"),
        }
    }
    let written = std::time::Instant::now();
    let mut changed = false;
    loop {
        match next_event(&mut events).await {
            WatchEvent::Changed(k) => {
                assert_eq!(k, b"during");
                changed = true;
            }
            WatchEvent::UpToDate { as_of } if as_of > written => {
                assert!(changed, "vouched for progress past the write without reporting it");
                break;
            }
            WatchEvent::UpToDate { .. } => {}
            WatchEvent::Restarted { .. } => panic!("the watch restarted instead of resuming"),
        }
    }
}

/// The whole stack on etcd: kms-api's and system-keyd's records are in
/// etcd (not in sled), survive a restart of every tier, and etcd's own
/// files (WAL and bbolt database of every member) hold no key and no
/// plaintext in the clear — the same raw scan the sled stores get in
/// spine.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_on_etcd_keeps_only_ciphertext_there() {
    use skm::devstack::{DevSeal, etcd_prefix};
    use skm_e2e::{InProcess, aes_key, decrypt, encodings, encrypt, files_below, holds_bytes, wait_ready};
    use skm_runtime::Service;

    let dir = tempfile::tempdir().unwrap();
    let clients = [Service::KmsApi.name(), Service::SystemKeyd.name()];
    let mut cluster = EtcdCluster::prepare(dir.path(), 3, skm_e2e::free_port_base(), &clients).unwrap();
    cluster.start(CLIENT).await.unwrap();
    let ready = Duration::from_secs(30);

    let stack = InProcess::start_on_etcd(DevSeal::Passphrase, &cluster).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, ready).await.unwrap();
    let key = aes_key(&skm, "on-etcd").await.unwrap();
    let plaintext = format!("ETCD-CANARY-{}", hex::encode(skm_crypto::random_array::<8>().unwrap()));
    let ciphertext = encrypt(&skm, &key, plaintext.as_bytes(), b"").await.unwrap();
    let root_key = stack.root().danger_root_key().unwrap();
    let system_keys = stack.kms().danger_system_keys();
    let user_key: [u8; 32] = stack.kms().danger_key_material(&key, 1).await.unwrap().try_into().unwrap();

    // Every tier restarted: what kms-api knows, it reads back from etcd.
    let mut stack = stack.restart(|_| {}).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, ready).await.unwrap();
    assert_eq!(decrypt(&skm, &key, &ciphertext, b"").await.unwrap(), plaintext.as_bytes());
    stack.stop().await.unwrap();

    for service in [Service::KmsApi, Service::SystemKeyd] {
        let records = EtcdStore::open(&cluster.store_config(service.name(), &etcd_prefix(service))).await.unwrap();
        assert!(!records.list(b"").await.unwrap().is_empty(), "{} wrote nothing to etcd", service.name());
        let sled_db = stack.stack.data_dir(service).join("db");
        assert!(!sled_db.exists(), "{} opened a sled store at {}", service.name(), sled_db.display());
    }
    // A client certificate of one tier reads only where it is told; etcd
    // itself has no per-prefix permissions here (see docs/deploy).
    drop(cluster);

    let mut needles: Vec<(&str, Vec<u8>)> = vec![("plaintext", plaintext.into_bytes())];
    for (name, secret) in std::iter::once(("root key", root_key))
        .chain(system_keys.iter().map(|k| ("system key", *k)))
        .chain(std::iter::once(("user key", user_key)))
    {
        needles.extend(encodings(&secret).into_iter().map(|e| (name, e)));
    }
    let mut records_seen = 0;
    for member in ["member-1", "member-2", "member-3"] {
        let files = files_below(&dir.path().join(member));
        assert!(!files.is_empty(), "{member} has no data files");
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            // The scan reads where the records are: their keys are in the clear.
            if holds_bytes(&bytes, etcd_prefix(Service::KmsApi).as_bytes()) {
                records_seen += 1;
            }
            for (what, needle) in &needles {
                assert!(!holds_bytes(&bytes, needle), "etcd holds the {what} in the clear in {}", file.display());
            }
        }
    }
    assert!(records_seen >= 3, "every member's files hold kms-api's records ({records_seen} files did)");
}
