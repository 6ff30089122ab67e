//! The compose stack (`docker-compose.yml`) as users run it: three
//! containers standing in for three hosts, on separated networks, attacked
//! with faults. Each test builds the images (once per binary, with
//! `deploy/build-images`), brings up its own compose project and tears it
//! down with `down -v` even when it fails.
//!
//! Without a Docker engine and a compose front end every test fails,
//! saying what to install; only a run that leaves the group out explicitly
//! (`SKM_SKIP=compose`, README) returns early, and `scripts/test` then
//! lists the group as left out. `.ci/run` checks that all of them ran.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use skm_client::Skm;
use skm_e2e::compose::{self, ADMIN_PORT, ROOT_PORT, SYSTEM_PORT, Stack, TIERS, USER_PORT, contains, docker_ok};
use skm_e2e::{decrypt, encrypt, eventually, never};

const READY: Duration = Duration::from_secs(90);
/// How long a "stays not ready" assertion watches.
const NOT_READY_FOR: Duration = Duration::from_secs(5);

/// The engine with the images built (once per binary); returns from the
/// test only when the run leaves the compose group out (`SKM_SKIP=compose`).
macro_rules! engine_or_left_out {
    () => {
        match compose::engine() {
            Some(engine) => {
                compose::build_images().unwrap();
                engine
            }
            None => return,
        }
    };
}

/// A value no run has seen before, so that finding it in a file means this
/// run wrote it there.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", RandomState::new().hash_one(Instant::now()))
}

fn elapsed(t: Instant) -> String {
    format!("{:.1} s", t.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------- workflow

/// keystore, keys, encrypt/decrypt, sign/verify, secrets and data keys with
/// the `skm` CLI in client containers on the user network;
/// then each tier's volume, read raw, holds none of it in the clear and
/// only its own tier's files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_workflow_then_volumes_hold_no_plaintext() {
    let engine = engine_or_left_out!();
    let t = Instant::now();
    let stack = Stack::start(&engine, "workflow").await.unwrap();
    for tier in TIERS {
        eventually(&format!("compose healthcheck of {tier} healthy"), READY, || async {
            stack.health_status(tier).await.is_ok_and(|s| s == "healthy")
        })
        .await
        .unwrap();
    }

    let subnet = stack.subnet("user").await.unwrap();
    let ks = stack.skm_ok(&["keystore", "create", "payments", "--allow-ip", &subnet], None).await.unwrap();
    let key = stack.skm_ok(&["key", "create", "payments", "db-key", "--type", "aes-256"], None).await.unwrap();
    let plaintext = unique("postgres://app:s3cret@db/prod");
    let ct = stack.skm_ok(&["encrypt", &key, "--aad", "orders"], Some(plaintext.as_bytes())).await.unwrap();
    let back = stack.skm(&["decrypt", &key, "--aad", "orders"], Some(ct.as_bytes())).await.unwrap();
    assert!(back.ok(), "{back:?}");
    assert_eq!(back.stdout, plaintext);
    let wrong = stack.skm(&["decrypt", &key, "--aad", "refunds"], Some(ct.as_bytes())).await.unwrap();
    assert_eq!(wrong.code, Some(1), "decrypt with the wrong AAD must be refused: {wrong:?}");
    let list = stack.skm_ok(&["keystore", "list"], None).await.unwrap();
    assert!(list.contains(&ks) && list.contains("payments"), "{list}");

    let mut in_the_clear = vec![("the plaintext".to_owned(), plaintext.into_bytes())];
    mac_is_verified_from_the_neighbour_table(&stack).await;
    sign_and_verify(&stack).await;
    in_the_clear.push(("the secret".to_owned(), secret_round_trip(&stack).await.into_bytes()));
    in_the_clear.push(("the data key".to_owned(), data_key(&stack, &key).await));
    println!("[compose] workflow done in {}", elapsed(t));

    scan_volumes(&stack, &in_the_clear).await;
    println!("[compose] client_workflow_then_volumes_hold_no_plaintext: {}", elapsed(t));
}

/// A keystore that admits one MAC: a client container with that MAC (read
/// by kms-api from its neighbour table for the user network) is served, one
/// with another MAC is refused, and asserting the right MAC from the wrong
/// container doesn't help (a verified MAC decides).
async fn mac_is_verified_from_the_neighbour_table(stack: &Stack) {
    let good = stack.client_container().await.unwrap();
    let bad = stack.client_container().await.unwrap();
    assert_ne!(good.mac, bad.mac);
    stack
        .skm_ok(&["keystore", "create", "by-mac", "--allow-mac", &good.mac, "--allow-asserted-mac"], None)
        .await
        .unwrap();
    let key = stack.skm_ok(&["key", "create", "by-mac", "k", "--type", "aes-256"], None).await.unwrap();
    let who = good.skm(&["--json", "whoami"], None).await.unwrap();
    assert!(who.ok() && who.stdout.contains(&format!("\"verified_mac\":\"{}\"", good.mac)), "{who:?}");
    let served = good.skm(&["encrypt", &key], Some(b"from the right container")).await.unwrap();
    assert!(served.ok(), "{served:?}");
    let refused = bad.skm(&["encrypt", &key], Some(b"x")).await.unwrap();
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("MAC authentication failed"), "{refused:?}");
    let spoofed = bad.skm(&["--client-mac", &good.mac, "encrypt", &key], Some(b"x")).await.unwrap();
    assert!(
        spoofed.stderr.contains("MAC authentication failed"),
        "an asserted MAC can't override a verified one: {spoofed:?}"
    );
    println!("[compose] MAC verification against the real container MACs ok");
}

async fn sign_and_verify(stack: &Stack) {
    let key = stack.skm_ok(&["key", "create", "payments", "signer", "--type", "ed25519"], None).await.unwrap();
    let message = b"ship order 42";
    let signature = stack.skm_ok(&["sign", &key], Some(message)).await.unwrap();
    assert!(B64.decode(&signature).is_ok(), "signature is not base64: {signature}");
    let good = stack.skm(&["verify", &key, "--signature", &signature], Some(message)).await.unwrap();
    assert!(good.ok(), "{good:?}");
    let bad = stack.skm(&["verify", &key, "--signature", &signature], Some(b"ship order 43")).await.unwrap();
    assert_eq!(bad.code, Some(1), "a signature over another message must not verify: {bad:?}");
    println!("[compose] sign/verify ok");
}

/// A secret stored and read back; returns its value.
async fn secret_round_trip(stack: &Stack) -> String {
    let value = unique("api-key");
    let id = stack.skm_ok(&["secret", "create", "payments", "api-key"], Some(value.as_bytes())).await.unwrap();
    let got = stack.skm_ok(&["secret", "get", &id], None).await.unwrap();
    assert_eq!(got, value);
    println!("[compose] secrets ok");
    value
}

/// A data key made under `key`: its plaintext, which the volume scan
/// then looks for. The encrypted data key decrypts to it.
async fn data_key(stack: &Stack, key: &str) -> Vec<u8> {
    let r = stack.skm(&["data-key", key], None).await.unwrap();
    assert!(r.ok(), "skm data-key failed: {r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "data-key prints the plaintext then the ciphertext: {r:?}");
    let plaintext = B64.decode(lines[0].trim()).expect("base64 data key");
    assert_eq!(plaintext.len(), 32, "an AES-256 data key");
    let back = stack.skm_ok(&["--json", "decrypt", key], Some(lines[1].trim().as_bytes())).await.unwrap();
    let back: serde_json::Value = serde_json::from_str(&back).unwrap();
    let back = B64.decode(back["plaintext"].as_str().unwrap_or_default()).unwrap();
    assert_eq!(back, plaintext, "the encrypted data key must decrypt to the data key");
    println!("[compose] data key ok");
    plaintext
}

/// The DER inside a PEM file (all its blocks).
fn pem_der(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(b64.trim()).unwrap_or_default()
}

async fn scan_volumes(stack: &Stack, in_the_clear: &[(String, Vec<u8>)]) {
    let names = ["ca", "operator", "root-keyd", "system-keyd", "kms-api"];
    let dir = stack.copy_volumes(&names).await.unwrap();
    let trees: BTreeMap<&str, Vec<(PathBuf, Vec<u8>)>> =
        names.iter().map(|n| (*n, compose::read_tree(&dir.path().join(n)))).collect();
    let files = |vol: &str| -> BTreeSet<String> { trees[vol].iter().map(|(p, _)| p.display().to_string()).collect() };
    let file = |vol: &str, name: &str| -> Vec<u8> {
        trees[vol].iter().find(|(p, _)| p.as_os_str() == name).map(|(_, b)| b.clone()).unwrap_or_default()
    };
    for (vol, tree) in &trees {
        let listing: Vec<String> = tree.iter().map(|(p, b)| format!("{} ({} B)", p.display(), b.len())).collect();
        println!("[compose] volume {vol}: {}", listing.join(", "));
    }

    // 1. No known plaintext, secret, data key or the root passphrase, raw or encoded.
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for (what, raw) in in_the_clear {
        needles.push((format!("{what} (raw)"), raw.clone()));
        needles.push((format!("{what} (base64)"), B64.encode(raw).into_bytes()));
        needles.push((format!("{what} (hex)"), hex::encode(raw).into_bytes()));
    }
    // deploy/build-images wrote it (readable by the user who ran it).
    let passphrase_file = compose::repo_root().join("deploy/secrets/root-passphrase");
    let passphrase = std::fs::read_to_string(&passphrase_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", passphrase_file.display()))
        .trim()
        .to_owned();
    assert!(passphrase.len() >= 32, "{} holds no passphrase", passphrase_file.display());
    needles.push(("the root-keyd passphrase".into(), passphrase.clone().into_bytes()));
    for (vol, tree) in &trees {
        for (path, bytes) in tree {
            for (what, needle) in &needles {
                assert!(!contains(bytes, needle), "{what} found in volume {vol}, file {}", path.display());
            }
        }
    }
    let logs = stack.all_logs().await.unwrap();
    for (what, needle) in &needles {
        assert!(!contains(logs.as_bytes(), needle), "{what} found in the compose logs");
    }
    // The passphrase is a compose secret (a file), never an environment variable.
    for tier in TIERS {
        let id = stack.container(tier).await.unwrap();
        let env = docker_ok(&["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", &id]).await.unwrap();
        assert!(!env.to_ascii_uppercase().contains("PASSPHRASE="), "{tier} environment: {env}");
        assert!(!env.contains(&passphrase), "the passphrase is in the environment of {tier}");
    }

    // 2. Each volume holds only its own tier's files.
    for tier in TIERS {
        let have = files(tier);
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            assert!(have.contains(f), "volume {tier} has no {f}: {have:?}");
        }
        assert!(have.iter().any(|f| f.starts_with("data/")), "volume {tier} has no data: {have:?}");
        assert!(!have.iter().any(|f| f.ends_with("ca.key")), "volume {tier} holds the CA key: {have:?}");
        assert!(!have.contains("profile.toml"), "volume {tier} holds the operator profile");
    }
    let seal = |vol: &str| files(vol).iter().any(|f| f.contains("root-key.seal"));
    assert!(seal("root-keyd"), "root-keyd's volume has no root-key.seal: {:?}", files("root-keyd"));
    for vol in ["system-keyd", "kms-api", "ca", "operator"] {
        assert!(!seal(vol), "volume {vol} holds root-key.seal");
    }
    // root-keyd keeps its sealed root key and its own audit log, nothing
    // else: no sled store.
    let root_data: BTreeSet<String> = files("root-keyd").into_iter().filter(|f| f.starts_with("data/")).collect();
    assert!(
        root_data.iter().all(|f| f.starts_with("data/root-key.seal") || f.starts_with("data/audit/audit.")),
        "root-keyd data: {root_data:?}"
    );
    let expected_ca: BTreeSet<String> = ["ca.key", "ca.pem"].map(String::from).into();
    assert_eq!(files("ca"), expected_ca);
    // The operator's files and the application profile (user port + CA).
    let expected_op: BTreeSet<String> =
        ["app-profile.toml", "ca.pem", "cert.pem", "key.pem", "profile.toml"].map(String::from).into();
    assert_eq!(files("operator"), expected_op);
    // Modes, as the engine keeps the volumes: every volume 0700, every
    // private key and the sealed root key 0600, each tier's store 0700.
    use std::os::unix::fs::PermissionsExt;
    let mut private_files = vec![("ca", "ca.key"), ("operator", "key.pem"), ("root-keyd", "data/root-key.seal")];
    private_files.extend(TIERS.iter().map(|t| (*t, "key.pem")));
    for tier in ["root-keyd", "system-keyd"] {
        private_files.extend([(tier, "data/audit/audit.log"), (tier, "data/audit/audit.key")]);
    }
    let mut private_dirs: Vec<(&str, &str)> = names.iter().map(|n| (*n, "")).collect();
    private_dirs.extend(TIERS.iter().map(|t| (*t, "data")));
    private_dirs.extend(TIERS.iter().map(|t| (*t, "data/audit")));
    for (want, list) in [(0o600, &private_files), (0o700, &private_dirs)] {
        for (vol, rel) in list {
            let path = stack.volume_path(vol).await.unwrap().join(rel);
            let mode =
                std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode();
            assert_eq!(mode & 0o777, want, "volume {vol}: {rel:?} is {:o}", mode & 0o777);
        }
    }

    // 3. Private keys: each only in its owner's volume (PEM or DER).
    let mut private: Vec<(&str, Vec<u8>)> = vec![("ca", file("ca", "ca.key"))];
    for owner in ["operator", "root-keyd", "system-keyd", "kms-api"] {
        private.push((owner, file(owner, "key.pem")));
    }
    for (owner, pem) in &private {
        assert!(!pem.is_empty(), "no private key in volume {owner}");
        let der = pem_der(pem);
        assert!(!der.is_empty(), "the key of {owner} is not PEM");
        for (vol, tree) in trees.iter().filter(|(vol, _)| *vol != owner) {
            for (path, bytes) in tree {
                assert!(
                    !contains(bytes, pem) && !contains(bytes, &der),
                    "the private key of {owner} is in volume {vol}, file {}",
                    path.display()
                );
            }
        }
    }
    // 4. Each tier's certificate is its own identity.
    for tier in TIERS {
        let der = pem_der(&file(tier, "cert.pem"));
        for other in TIERS {
            let id = format!("spiffe://{}/{other}", stack.trust_domain);
            assert_eq!(contains(&der, id.as_bytes()), other == tier, "certificate in volume {tier} vs {id}");
        }
    }
    println!(
        "[compose] volumes scanned: {} needles, {} files",
        needles.len(),
        trees.values().map(Vec::len).sum::<usize>()
    );
}

// ------------------------------------------------------------ reachability

/// Only kms-api is published; each pair of tiers shares one internal
/// network; from kms-api's namespace root-keyd and system-keyd answer only
/// on their gRPC ports; a client on the user network reaches kms-api and
/// nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_separate_the_tiers() {
    let engine = engine_or_left_out!();
    let t = Instant::now();
    let stack = Stack::start(&engine, "networks").await.unwrap();

    // Published ports: kms-api's two, on the loopback address; nothing else.
    for tier in ["root-keyd", "system-keyd"] {
        let id = stack.container(tier).await.unwrap();
        assert_eq!(docker_ok(&["port", &id]).await.unwrap().trim(), "", "{tier} must publish nothing");
    }
    let kms = stack.container("kms-api").await.unwrap();
    let published = docker_ok(&["port", &kms]).await.unwrap();
    let mut lines: Vec<&str> = published.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 2, "{published}");
    assert!(lines[0].starts_with(&format!("{USER_PORT}/tcp -> 127.0.0.1:")), "{published}");
    assert!(lines[1].starts_with(&format!("{ADMIN_PORT}/tcp -> 127.0.0.1:")), "{published}");

    // Networks: who is on which, and which are internal.
    for (net, internal) in [("user", false), ("kms-root", true), ("kms-system", true), ("system-root", true)] {
        let out = docker_ok(&["network", "inspect", "-f", "{{.Internal}}", &stack.network(net)]).await.unwrap();
        assert_eq!(out.trim(), internal.to_string(), "network {net} internal");
    }
    let nets = |list: &[&str]| -> BTreeSet<String> { list.iter().map(|s| s.to_string()).collect() };
    let on = |addrs: &[(String, String)]| -> BTreeSet<String> { addrs.iter().map(|(n, _)| n.clone()).collect() };
    let root_addrs = stack.addresses("root-keyd").await.unwrap();
    let system_addrs = stack.addresses("system-keyd").await.unwrap();
    assert_eq!(on(&root_addrs), nets(&["kms-root", "system-root"]));
    assert_eq!(on(&system_addrs), nets(&["kms-system", "system-root"]));
    assert_eq!(on(&stack.addresses("kms-api").await.unwrap()), nets(&["user", "kms-root", "kms-system"]));

    // From kms-api's network namespace: each inner tier on its gRPC port only.
    let in_kms = format!("container:{kms}");
    for (tier, port) in [("root-keyd", ROOT_PORT), ("system-keyd", SYSTEM_PORT)] {
        let scan = stack.probe(&in_kms, &["scan", tier]).await.unwrap();
        assert!(scan.ok(), "{scan:?}");
        let open: Vec<&str> = scan.stdout.lines().filter(|l| l.starts_with("open ")).collect();
        assert_eq!(open, vec![format!("open {port}")], "open ports of {tier} seen from kms-api:\n{}", scan.stdout);
        assert!(scan.stdout.contains(" 0 filtered"), "every other port of {tier} must refuse:\n{}", scan.stdout);
        println!("[compose] from kms-api: {}", scan.stdout.lines().last().unwrap_or_default());
    }

    // From a client on the user network: kms-api yes, the inner tiers not at all.
    let user = stack.network("user");
    for port in [USER_PORT, ADMIN_PORT] {
        let r = stack.probe(&user, &["connect", &format!("kms-api:{port}")]).await.unwrap();
        assert_eq!(r.out(), "open", "kms-api:{port} from the user network: {r:?}");
    }
    for tier in ["root-keyd", "system-keyd"] {
        let r = stack.probe(&user, &["resolve", tier]).await.unwrap();
        assert_eq!((r.code, r.out()), (Some(1), "unresolved"), "{tier} must not resolve on the user network");
    }
    for (tier, port, addrs) in [("root-keyd", ROOT_PORT, &root_addrs), ("system-keyd", SYSTEM_PORT, &system_addrs)] {
        for (net, ip) in addrs {
            let r = stack.probe(&user, &["connect", &format!("{ip}:{port}"), "1500"]).await.unwrap();
            assert!(!r.ok() && r.out() != "open", "{tier} at {ip} ({net}) reachable from the user network: {r:?}");
            println!("[compose] user network -> {tier} {ip}:{port} ({net}): {}", r.out());
        }
    }
    println!("[compose] networks_separate_the_tiers: {}", elapsed(t));
}

// ------------------------------------------------------------------ faults

/// Counts of a request loop.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Load {
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(what);
        }
    }

    /// Waits until `n` more requests have succeeded.
    async fn more(&self, n: u64, what: &str) {
        let target = self.ok() + n;
        eventually(what, READY, || async { self.ok() >= target }).await.unwrap();
    }
}

/// Encrypt/decrypt round trips from the host through the published user
/// port (skm-client's typed calls: with several replicas in the profile,
/// they fail over), by `workers` tasks, until stopped.
fn encrypt_loop(skm: &Skm, key: &str, workers: usize) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
    let load = Arc::new(Load::default());
    let tasks = (0..workers)
        .map(|w| {
            let (skm, key, load) = (skm.clone(), key.to_owned(), load.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !load.stop.load(Ordering::Relaxed) {
                    i += 1;
                    let pt = format!("request {w}/{i}");
                    let round_trip = async {
                        let ct = skm.encrypt(&key, pt.as_bytes(), b"").await?;
                        skm.decrypt(&key, &ct.ciphertext, b"").await
                    };
                    // Failover may retry for up to 10 s.
                    match tokio::time::timeout(Duration::from_secs(15), round_trip).await {
                        Ok(Ok(back)) if back.plaintext.as_slice() == pt.as_bytes() => {
                            load.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Ok(_)) => load.fail(format!("{pt}: decrypted to something else")),
                        Ok(Err(e)) => load.fail(format!("{pt}: {e}")),
                        Err(_) => load.fail(format!("{pt}: no answer within 15 s")),
                    }
                }
            })
        })
        .collect();
    (load, tasks)
}

/// Once booted, kms-api keeps serving users with root-keyd and then
/// system-keyd stopped: a loop of requests through the published user
/// port sees no failure, during and after the stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_requests_survive_stopping_root_keyd_then_system_keyd() {
    let engine = engine_or_left_out!();
    let t = Instant::now();
    let stack = Stack::start(&engine, "innerstop").await.unwrap();
    let (_certs, skm) = stack.host_client().await.unwrap();
    let subnet = stack.subnet("user").await.unwrap();
    let (_, key) = compose::keystore_with_key(&skm, "loop", &subnet).await.unwrap();

    let (load, tasks) = encrypt_loop(&skm, &key, 2);
    load.more(50, "50 round trips before the stops").await;
    stack.compose_ok(&["stop", "-t", "5", "root-keyd"]).await.unwrap();
    let after_root = load.ok();
    load.more(100, "100 round trips with root-keyd stopped").await;
    stack.compose_ok(&["stop", "-t", "5", "system-keyd"]).await.unwrap();
    let after_system = load.ok();
    // Long enough for several system key refreshes (every 2 s here) to fail.
    let since = Instant::now();
    eventually("6 s of round trips with both inner tiers stopped", READY, || async {
        since.elapsed() >= Duration::from_secs(6) && load.ok() >= after_system + 100
    })
    .await
    .unwrap();
    assert!(stack.serving("kms-api").await, "kms-api must stay SERVING");
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let (ok, failed) = (load.ok(), load.failed.load(Ordering::Relaxed));
    println!(
        "[compose] round trips: {ok} ok ({} after stopping root-keyd, {} after stopping system-keyd), {failed} failed",
        ok - after_root.min(ok),
        ok - after_system.min(ok)
    );
    assert_eq!(failed, 0, "failed requests: {:?}", load.errors.lock().unwrap());
    println!("[compose] user_requests_survive_stopping_root_keyd_then_system_keyd: {}", elapsed(t));
}

/// kms-api restarted while root-keyd is down can't get its system keys:
/// NOT_SERVING, every request UNAVAILABLE (CLI exit 3). Once root-keyd is
/// back (passphrase mode: it unseals itself) kms-api becomes ready by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_api_restarted_without_root_keyd_is_unavailable_until_it_returns() {
    let engine = engine_or_left_out!();
    let t = Instant::now();
    let stack = Stack::start(&engine, "rootdown").await.unwrap();
    let subnet = stack.subnet("user").await.unwrap();
    stack.skm_ok(&["keystore", "create", "apps", "--allow-ip", &subnet], None).await.unwrap();
    let key = stack.skm_ok(&["key", "create", "apps", "k", "--type", "aes-256"], None).await.unwrap();
    let ct = stack.skm_ok(&["encrypt", &key], Some(b"before the outage")).await.unwrap();

    stack.compose_ok(&["stop", "-t", "5", "root-keyd"]).await.unwrap();
    stack.compose_ok(&["restart", "-t", "5", "kms-api"]).await.unwrap();
    eventually("kms-api answering NOT_SERVING", READY, || async {
        stack.health("kms-api").await.is_ok_and(|r| r.out() == "NOT_SERVING")
    })
    .await
    .unwrap();
    never("kms-api SERVING without root-keyd", NOT_READY_FOR, || stack.serving("kms-api")).await.unwrap();
    let refused = stack.skm(&["encrypt", &key], Some(b"during the outage")).await.unwrap();
    assert_eq!(refused.code, Some(3), "encrypt must be UNAVAILABLE: {refused:?}");
    assert!(refused.stderr.contains("UNAVAILABLE"), "{refused:?}");
    let refused = stack.skm(&["decrypt", &key], Some(ct.as_bytes())).await.unwrap();
    assert_eq!(refused.code, Some(3), "decrypt must be UNAVAILABLE: {refused:?}");
    assert_ne!(stack.health_status("kms-api").await.unwrap(), "healthy");

    stack.compose_ok(&["start", "root-keyd"]).await.unwrap();
    stack.wait_serving(&["root-keyd", "kms-api"], READY).await.unwrap();
    let back = stack.skm_ok(&["decrypt", &key], Some(ct.as_bytes())).await.unwrap();
    assert_eq!(back, "before the outage");
    stack.skm_ok(&["encrypt", &key], Some(b"after the outage")).await.unwrap();
    println!("[compose] kms_api_restarted_without_root_keyd_is_unavailable_until_it_returns: {}", elapsed(t));
}

/// kms-api started without a route to system-keyd (disconnected from
/// their network while stopped) waits, NOT_SERVING, and retries;
/// reconnected, it becomes ready without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_api_cut_off_from_system_keyd_at_start_waits_then_recovers() {
    let engine = engine_or_left_out!();
    let t = Instant::now();
    let stack = Stack::start(&engine, "netcut").await.unwrap();
    let kms = stack.container("kms-api").await.unwrap();
    let link = stack.network("kms-system");
    // Compose connects a container to its networks as it starts it, so the
    // cut is made on the stopped container: it starts without the link.
    docker_ok(&["stop", "-t", "5", &kms]).await.unwrap();
    docker_ok(&["network", "disconnect", &link, &kms]).await.unwrap();
    docker_ok(&["start", &kms]).await.unwrap();
    let nets: Vec<String> = stack.addresses("kms-api").await.unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(!nets.contains(&"kms-system".to_owned()), "kms-api still on kms-system: {nets:?}");

    eventually("kms-api answering NOT_SERVING", READY, || async {
        stack.health("kms-api").await.is_ok_and(|r| r.out() == "NOT_SERVING")
    })
    .await
    .unwrap();
    never("kms-api SERVING without system-keyd", NOT_READY_FOR, || stack.serving("kms-api")).await.unwrap();
    let logs = compose::docker(&["logs", "--tail", "3", &kms]).await.unwrap();
    println!("[compose] kms-api while cut off (last lines):\n{}{}", logs.stdout, logs.stderr);

    docker_ok(&["network", "connect", "--alias", "kms-api", &link, &kms]).await.unwrap();
    stack.wait_serving(&["kms-api"], READY).await.unwrap();
    let subnet = stack.subnet("user").await.unwrap();
    stack.skm_ok(&["keystore", "create", "late", "--allow-ip", &subnet], None).await.unwrap();
    let key = stack.skm_ok(&["key", "create", "late", "k", "--type", "aes-256"], None).await.unwrap();
    let ct = stack.skm_ok(&["encrypt", &key], Some(b"reconnected")).await.unwrap();
    assert_eq!(stack.skm_ok(&["decrypt", &key], Some(ct.as_bytes())).await.unwrap(), "reconnected");
    println!("[compose] kms_api_cut_off_from_system_keyd_at_start_waits_then_recovers: {}", elapsed(t));
}

/// `docker kill -s KILL` of kms-api under concurrent CreateKeystore /
/// CreateKey load: after a restart every write acknowledged to a client is
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_of_kms_api() {
    let engine = engine_or_left_out!();
    let t = Instant::now();
    let stack = Stack::start(&engine, "kill9").await.unwrap();
    let (certs, skm) = stack.host_client().await.unwrap();
    let subnet = stack.subnet("user").await.unwrap();

    #[derive(Default)]
    struct Acked {
        keystores: Mutex<Vec<(String, String)>>,
        keys: Mutex<Vec<String>>,
        /// Unacknowledged creates by outcome, before and after the kill.
        refused: Mutex<BTreeMap<String, u64>>,
        killed: AtomicBool,
        stop: AtomicBool,
    }
    let kms = stack.container("kms-api").await.unwrap();
    let acked = Arc::new(Acked::default());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (skm, acked, subnet) = (skm.clone(), acked.clone(), subnet.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !acked.stop.load(Ordering::Relaxed) {
                    i += 1;
                    let name = format!("w{w}-{i}");
                    let created =
                        tokio::time::timeout(Duration::from_secs(10), compose::keystore_with_key(&skm, &name, &subnet))
                            .await;
                    match created {
                        Ok(Ok((ks, key))) => {
                            acked.keystores.lock().unwrap().push((name, ks));
                            acked.keys.lock().unwrap().push(key);
                        }
                        // (A keystore acknowledged without its key counts as neither.)
                        other => {
                            let why = match other {
                                Ok(Err(e)) => match e.downcast_ref::<tonic::Status>() {
                                    Some(status) => format!("{:?}", status.code()),
                                    None => e.to_string(),
                                },
                                _ => "no answer within 10 s".to_owned(),
                            };
                            let when = if acked.killed.load(Ordering::Relaxed) { "after" } else { "before" };
                            *acked.refused.lock().unwrap().entry(format!("{when} the kill: {why}")).or_default() += 1;
                        }
                    }
                }
            })
        })
        .collect();
    let count = || acked.keystores.lock().unwrap().len();
    eventually("100 acknowledged keystores", READY, || async { count() >= 100 }).await.unwrap();
    acked.killed.store(true, Ordering::Relaxed);
    docker_ok(&["kill", "-s", "KILL", &kms]).await.unwrap();
    let at_kill = count();
    acked.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let keystores = acked.keystores.lock().unwrap().clone();
    let keys = acked.keys.lock().unwrap().clone();
    println!(
        "[compose] acknowledged: {} keystores ({at_kill} when kill returned), {} keys; unacknowledged: {:?}",
        keystores.len(),
        keys.len(),
        acked.refused.lock().unwrap()
    );

    stack.compose_ok(&["start", "kms-api"]).await.unwrap();
    stack.wait_serving(&["kms-api"], READY).await.unwrap();
    let skm = stack.host_client_with(certs.path()).await.unwrap();
    let listed = skm
        .admin()
        .unwrap()
        .list_keystores(skm_client::admin::v1::ListKeystoresRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keystores;
    let listed: BTreeMap<String, String> = listed.into_iter().map(|k| (k.id, k.name)).collect();
    let lost: Vec<_> = keystores.iter().filter(|(name, id)| listed.get(id) != Some(name)).collect();
    assert!(lost.is_empty(), "{} acknowledged keystores lost: {lost:?}", lost.len());
    for key in &keys {
        let ct = encrypt(&skm, key, b"still here", b"").await.unwrap_or_else(|s| panic!("key {key} lost: {s:?}"));
        assert_eq!(decrypt(&skm, key, &ct, b"").await.unwrap(), b"still here");
    }
    println!(
        "[compose] after kill -9 and restart: all {} keystores and {} keys present ({} listed)",
        keystores.len(),
        keys.len(),
        listed.len()
    );
    println!("[compose] acknowledged_writes_survive_kill_9_of_kms_api: {}", elapsed(t));
}

/// `down` + `up` keeps the PKI, every key and every ciphertext; restarting
/// any one tier needs no operator (passphrase mode); `down -v` removes it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_up_keeps_everything_and_down_v_removes_it() {
    let engine = engine_or_left_out!();
    let t = Instant::now();
    let stack = Stack::start(&engine, "persist").await.unwrap();
    let (certs, skm) = stack.host_client().await.unwrap();
    let subnet = stack.subnet("user").await.unwrap();
    let (ks, key) = compose::keystore_with_key(&skm, "kept", &subnet).await.unwrap();
    let ct = encrypt(&skm, &key, b"kept across down and up", b"aad").await.unwrap();
    let pki =
        |dir: &std::path::Path| ["ca.pem", "cert.pem"].map(|f| std::fs::read(dir.join("operator").join(f)).unwrap());
    let pki_before = pki(certs.path());

    stack.compose_ok(&["down", "-t", "5"]).await.unwrap();
    let volumes = docker_ok(&["volume", "ls", "-q", "--filter", &format!("name={}_", stack.project)]).await.unwrap();
    assert_eq!(volumes.lines().count(), 5, "down must keep the 5 volumes: {volumes}");
    stack.up().await.unwrap();
    stack.wait_ready(READY).await.unwrap();
    let init_logs = stack.compose_ok(&["logs", "--no-color", "init"]).await.unwrap();
    assert!(init_logs.contains("kept"), "the second init must keep the PKI: {init_logs}");
    let again = stack.copy_volumes(&["operator"]).await.unwrap();
    assert!(pki(again.path()) == pki_before, "the PKI changed across down and up");

    let check = |skm: Skm| {
        let (ct, key, ks) = (ct.clone(), key.clone(), ks.clone());
        async move {
            assert_eq!(decrypt(&skm, &key, &ct, b"aad").await.unwrap(), b"kept across down and up");
            let list = skm
                .admin()
                .unwrap()
                .list_keystores(skm_client::admin::v1::ListKeystoresRequest::default())
                .await
                .unwrap()
                .into_inner()
                .keystores;
            assert!(list.iter().any(|k| k.id == ks && k.name == "kept"), "keystore lost: {list:?}");
        }
    };
    check(stack.host_client_with(certs.path()).await.unwrap()).await;
    println!("[compose] down + up: PKI, keystore, key and ciphertext kept ({})", elapsed(t));

    for tier in TIERS {
        stack.compose_ok(&["restart", "-t", "5", tier]).await.unwrap();
        stack.wait_ready(READY).await.unwrap();
        check(stack.host_client_with(certs.path()).await.unwrap()).await;
        println!("[compose] restart of {tier}: ready again with no operator action ({})", elapsed(t));
    }

    stack.compose_ok(&["down", "-v", "-t", "5"]).await.unwrap();
    let volumes = docker_ok(&["volume", "ls", "-q", "--filter", &format!("name={}_", stack.project)]).await.unwrap();
    assert_eq!(volumes.trim(), "", "down -v must remove every volume");
    println!("[compose] down_up_keeps_everything_and_down_v_removes_it: {}", elapsed(t));
}

// ------------------------------------------------------------------ Shamir

/// Shamir mode: root-keyd starts uninitialised, operators create and submit
/// shares from an operator container on root-keyd's network; after a
/// restart root-keyd is sealed again while the booted kms-api keeps
/// serving; no volume holds a share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shamir_mode_is_unsealed_from_an_operator_container() {
    let engine = engine_or_left_out!();
    let t = Instant::now();
    let mut stack = Stack::new(&engine, "shamir");
    stack.seal_mode = "shamir";
    stack.up().await.unwrap();
    let operator = |args: &'static [&'static str], stdin: Option<Vec<u8>>| {
        let stack = &stack;
        async move { stack.skm_on("kms-root", args, stdin.as_deref()).await.unwrap() }
    };
    eventually("root-keyd answering, uninitialised", READY, || async {
        operator(&["root", "status"], None).await.out() == "uninitialised (shamir)"
    })
    .await
    .unwrap();
    never("kms-api SERVING before the root key exists", NOT_READY_FOR, || stack.serving("kms-api")).await.unwrap();

    let init = operator(&["root", "init"], None).await;
    assert!(init.ok(), "{init:?}");
    let shares: Vec<String> = init.stdout.lines().map(|l| l.trim().to_owned()).collect();
    assert_eq!(shares.len(), 5, "{init:?}");
    let unseal = |share: String| operator(&["root", "unseal"], Some(share.into_bytes()));
    assert_eq!(unseal(shares[0].clone()).await.out(), "sealed (shamir, 1/3 shares)");
    assert_eq!(unseal(shares[1].clone()).await.out(), "sealed (shamir, 2/3 shares)");
    assert!(!stack.serving("kms-api").await, "kms-api SERVING with root-keyd sealed");
    assert_eq!(unseal(shares[2].clone()).await.out(), "unsealed (shamir)");
    stack.wait_ready(READY).await.unwrap();

    let subnet = stack.subnet("user").await.unwrap();
    stack.skm_ok(&["keystore", "create", "vault", "--allow-ip", &subnet], None).await.unwrap();
    let key = stack.skm_ok(&["key", "create", "vault", "k", "--type", "aes-256"], None).await.unwrap();
    let ct = stack.skm_ok(&["encrypt", &key], Some(b"shamir")).await.unwrap();

    stack.compose_ok(&["restart", "-t", "5", "root-keyd"]).await.unwrap();
    eventually("root-keyd sealed after its restart", READY, || async {
        operator(&["root", "status"], None).await.out() == "sealed (shamir, 0/3 shares)"
    })
    .await
    .unwrap();
    assert_eq!(stack.skm_ok(&["decrypt", &key], Some(ct.as_bytes())).await.unwrap(), "shamir");
    assert!(stack.serving("kms-api").await, "a booted kms-api keeps serving while root-keyd is sealed");
    for share in &shares[2..5] {
        assert!(unseal(share.clone()).await.ok());
    }
    stack.wait_ready(READY).await.unwrap();

    let dir = stack.copy_volumes(&["ca", "operator", "root-keyd", "system-keyd", "kms-api"]).await.unwrap();
    for (path, bytes) in compose::read_tree(dir.path()) {
        for share in &shares {
            let raw = B64.decode(share).unwrap();
            assert!(!contains(&bytes, share.as_bytes()) && !contains(&bytes, &raw), "a share is in {}", path.display());
        }
    }
    println!("[compose] shamir_mode_is_unsealed_from_an_operator_container: {}", elapsed(t));
}

// ------------------------------------------------------------------- fleet

/// The compose service of the etcd member that leads the cluster now, asked
/// with etcdctl inside `from` (a member's container, with its certificate).
async fn etcd_leader(stack: &Stack, from: &str) -> anyhow::Result<String> {
    let id = stack.container(from).await?;
    let out = docker_ok(&[
        "exec",
        &id,
        "/usr/local/bin/etcdctl",
        "--endpoints=https://etcd-1:2379,https://etcd-2:2379,https://etcd-3:2379",
        "--cacert=/var/lib/etcd/ca.pem",
        "--cert=/var/lib/etcd/cert.pem",
        "--key=/var/lib/etcd/key.pem",
        "--command-timeout=3s",
        "endpoint",
        "status",
        "-w",
        "json",
    ])
    .await?;
    let statuses: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    let leader = statuses
        .iter()
        .find(|s| s["Status"]["header"]["member_id"] == s["Status"]["leader"])
        .and_then(|s| s["Endpoint"].as_str())
        .ok_or_else(|| anyhow::anyhow!("no member leads: {out}"))?;
    Ok(leader.trim_start_matches("https://").trim_end_matches(":2379").to_owned())
}

/// `docker-compose.ha.yml` as users run it: two kms-api replicas on a
/// three-member etcd cluster in its own internal network, which only the
/// replicas and system-keyd join. A host client whose profile names both
/// replicas sees no failed call while the etcd leader and then one replica
/// are killed with SIGKILL; the secrets written meanwhile are all there;
/// `skm audit verify` covers both replicas; etcd's volumes hold only
/// ciphertext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_stack_rides_out_the_etcd_leader_and_a_replica_and_etcd_sees_only_ciphertext() {
    let engine = engine_or_left_out!();
    let t = Instant::now();
    let stack = Stack::start_ha(&engine, "ha").await.unwrap();
    let members = ["etcd-1", "etcd-2", "etcd-3"];

    // Networks: etcd is internal and reached by the replicas and system-keyd only.
    let internal = docker_ok(&["network", "inspect", "-f", "{{.Internal}}", &stack.network("etcd")]).await.unwrap();
    assert_eq!(internal.trim(), "true", "the etcd network must be internal");
    let on = |addrs: Vec<(String, String)>| -> BTreeSet<String> { addrs.into_iter().map(|(n, _)| n).collect() };
    let nets = |list: &[&str]| -> BTreeSet<String> { list.iter().map(|s| s.to_string()).collect() };
    for member in members {
        assert_eq!(on(stack.addresses(member).await.unwrap()), nets(&["etcd"]), "{member}");
        let id = stack.container(member).await.unwrap();
        assert_eq!(docker_ok(&["port", &id]).await.unwrap().trim(), "", "{member} must publish nothing");
    }
    for replica in stack.replicas {
        let want = nets(&["user", "kms-root", "kms-system", "etcd"]);
        assert_eq!(on(stack.addresses(replica).await.unwrap()), want, "{replica}");
    }
    assert_eq!(on(stack.addresses("system-keyd").await.unwrap()), nets(&["kms-system", "system-root", "etcd"]));
    assert_eq!(on(stack.addresses("root-keyd").await.unwrap()), nets(&["kms-root", "system-root"]));
    let user = stack.network("user");
    for member in members {
        let r = stack.probe(&user, &["resolve", member]).await.unwrap();
        assert_eq!((r.code, r.out()), (Some(1), "unresolved"), "{member} must not resolve on the user network");
        for (_, ip) in stack.addresses(member).await.unwrap() {
            let r = stack.probe(&user, &["connect", &format!("{ip}:2379"), "1500"]).await.unwrap();
            assert!(!r.ok() && r.out() != "open", "{member} at {ip} reachable from the user network: {r:?}");
        }
    }
    println!("[compose] ha: networks checked at {}", elapsed(t));

    // Load through both replicas, and secrets written meanwhile.
    let (_certs, skm) = stack.host_client().await.unwrap();
    let subnet = stack.subnet("user").await.unwrap();
    let (keystore, key) = compose::keystore_with_key(&skm, "fleet", &subnet).await.unwrap();
    let (load, tasks) = encrypt_loop(&skm, &key, 2);
    let writes = tokio::spawn({
        let (skm, keystore, load) = (skm.clone(), keystore.clone(), load.clone());
        async move {
            use skm_client::admin::v1 as pb;
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !load.stop.load(Ordering::Relaxed) {
                n += 1;
                let value = unique(&format!("fleet-secret-{n}"));
                let request = pb::CreateSecretRequest {
                    keystore_id: keystore.clone(),
                    name: format!("s{n}"),
                    value: value.clone(),
                    max_versions: 0,
                };
                // A write may fail while etcd elects a leader: its outcome is then unknown.
                if let Ok(reply) = skm.admin().unwrap().create_secret(request).await {
                    acknowledged.push((reply.into_inner().key_id, value));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            acknowledged
        }
    });
    load.more(50, "50 round trips through the fleet").await;
    let leader = etcd_leader(&stack, "etcd-1").await.unwrap();
    let leader_id = stack.container(&leader).await.unwrap();
    docker_ok(&["kill", "-s", "KILL", &leader_id]).await.unwrap();
    let after_leader = load.ok();
    load.more(150, "150 round trips with the etcd leader killed").await;
    let replica_id = stack.container("kms-api-1").await.unwrap();
    docker_ok(&["kill", "-s", "KILL", &replica_id]).await.unwrap();
    let after_replica = load.ok();
    load.more(150, "150 round trips with kms-api-1 killed").await;
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let acknowledged = writes.await.unwrap();
    let (ok, failed) = (load.ok(), load.failed.load(Ordering::Relaxed));
    println!(
        "[compose] ha: {ok} round trips ({after_leader} before killing {leader}, {after_replica} before killing kms-api-1), {failed} failed; {} secrets written",
        acknowledged.len()
    );
    if failed > 0 {
        let errors = load.errors.lock().unwrap().clone();
        panic!("{failed} failed requests: {errors:?}\n{}", stack.logs().await);
    }
    assert!(!acknowledged.is_empty(), "no secret write was acknowledged\n{}", stack.logs().await);
    for (id, value) in &acknowledged {
        let secret = skm.secret(id, 0).await.unwrap_or_else(|e| panic!("acknowledged secret {id}: {e}"));
        assert_eq!(secret.value.as_str(), value);
    }

    // Both come back by themselves (compose start), and the operator's
    // profile (both replicas) verifies both audit chains.
    stack.compose_ok(&["start", &leader, "kms-api-1"]).await.unwrap();
    stack.wait_ready(READY).await.unwrap();
    let verified = stack.skm_ok(&["--json", "audit", "verify"], None).await.unwrap();
    let verified: serde_json::Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["replicas"].as_array().map(Vec::len), Some(2), "{verified}");

    // etcd's files (data directories, WAL, snapshots) hold no secret value.
    let dir = stack.copy_volumes(&members).await.unwrap();
    let mut scanned = 0;
    for member in members {
        let tree = compose::read_tree(&dir.path().join(member));
        // The records are there (etcd keeps keys in the clear), sealed.
        let holds_records = tree.iter().any(|(_, bytes)| contains(bytes, b"skm/kms-api/"));
        assert!(holds_records, "{member}'s files hold no kms-api record: the scan would prove nothing");
        assert!(tree.iter().any(|(p, _)| p.starts_with("data/member/wal")), "{member} has no WAL");
        assert!(!tree.iter().any(|(p, _)| p.ends_with("ca.key")), "{member} holds the etcd CA key");
        for (path, bytes) in &tree {
            scanned += bytes.len();
            for (_, value) in &acknowledged {
                for needle in
                    [value.as_bytes().to_vec(), B64.encode(value).into_bytes(), hex::encode(value).into_bytes()]
                {
                    assert!(!contains(bytes, &needle), "a secret value in {member}'s {}", path.display());
                }
            }
        }
    }
    println!("[compose] ha: {scanned} bytes of etcd files scanned for {} secret values", acknowledged.len());
    println!(
        "[compose] ha_stack_rides_out_the_etcd_leader_and_a_replica_and_etcd_sees_only_ciphertext: {}",
        elapsed(t)
    );
}
