//! The audit log's tail against its anchor, a full disk under the log, and
//! ListAudit page by page, with kms-api as a real `skm daemon` process over
//! mTLS and its sled store; the audit log on disk is the oracle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skm::devstack::DevSeal;
use skm_client::Skm;
use skm_client::admin::v1 as admin;
use skm_e2e::{Processes, aes_key, create_key, encrypt, eventually, keystore, never, serving, wait_ready};
use skm_runtime::Service;
use tonic::Code;

const READY: Duration = Duration::from_secs(60);

fn audit_dir(p: &Processes) -> PathBuf {
    p.stack.data_dir(Service::KmsApi).join("audit")
}

fn audit_log(p: &Processes) -> PathBuf {
    audit_dir(p).join("audit.log")
}

/// Every entry of the log on disk, parsed.
fn entries(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn seqs(path: &Path) -> Vec<u64> {
    entries(path).iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

async fn started(p: &mut Processes) -> Skm {
    p.start_all().unwrap();
    let skm = p.client().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    skm
}

async fn verify(skm: &Skm) -> Result<admin::VerifyAuditResponse, tonic::Status> {
    Ok(skm.admin().unwrap().verify_audit(admin::VerifyAuditRequest {}).await?.into_inner())
}

/// Cuts the last `n` entries off the log on disk.
fn cut(path: &Path, n: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(path, lines[..lines.len() - n].iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

/// Cutting entries off the end of the log while kms-api is stopped: those
/// the audit journal still holds come back at the next start (as after a
/// crash of the host). With the journal gone too, the cut is found at the
/// next start: NOT_SERVING, a log line naming both seqs, every call
/// refused naming the missing entries; acknowledging the loss is the first
/// entry after the gap, its seq follows the anchor's (none is reused), the
/// chain verifies across it, and kms-api serves again.
#[tokio::test]
async fn a_log_cut_short_is_refused_until_the_loss_is_acknowledged() {
    let mut p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let skm = started(&mut p).await;
    let key = aes_key(&skm, "anchored").await.unwrap();
    for i in 0..5u8 {
        encrypt(&skm, &key, &[i], b"").await.unwrap();
    }
    p.stop(Service::KmsApi).await;

    let path = audit_log(&p);
    let whole = std::fs::read(&path).unwrap();
    let anchor_seq = seqs(&path).len() as u64;
    assert_eq!(seqs(&path).last(), Some(&anchor_seq));
    // Cut the last three entries (the last encrypts): the journal has them.
    cut(&path, 3);
    p.start(Service::KmsApi).unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let restored = format!("first_seq={} last_seq={anchor_seq}", anchor_seq - 2);
    let log = std::fs::read_to_string(p.log(Service::KmsApi)).unwrap();
    assert!(log.contains("restored audit entries from the journal") && log.contains(&restored), "{log}");
    assert_eq!(std::fs::read(&path).unwrap()[..whole.len()], whole[..], "the log is whole again");
    p.stop(Service::KmsApi).await;

    // Cut again, and remove the journal too.
    let anchor_seq = seqs(&path).len() as u64;
    cut(&path, 3);
    std::fs::remove_file(audit_dir(&p).join("audit.journal")).unwrap();
    let last_seq = anchor_seq - 3;

    p.start(Service::KmsApi).unwrap();
    let line = format!("anchor seq {anchor_seq}, log's last seq {last_seq}");
    let log = p.log(Service::KmsApi);
    eventually("the log line naming the anchor and the log's last seq", READY, || async {
        std::fs::read_to_string(&log).unwrap_or_default().contains(&line)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let missing = format!("entries {} to {anchor_seq}", last_seq + 1);
    assert!(std::fs::read_to_string(&log).unwrap().contains(&format!("{missing} are missing")));
    never("kms-api SERVING on a log shorter than its anchor", Duration::from_secs(2), || {
        serving(&skm, Service::KmsApi)
    })
    .await
    .unwrap();

    // Every call is refused, naming the missing entries; none is written.
    let refused = encrypt(&skm, &key, b"no", b"").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains(&missing), "{refused:?}");
    let refused = verify(&skm).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains(&missing), "verify names the missing range: {refused:?}");
    let refused = keystore(&skm, "not-made").await.unwrap_err();
    assert!(refused.to_string().contains("missing"), "{refused:?}");
    assert_eq!(seqs(&path).len() as u64, last_seq, "nothing written while the loss is pending");

    // The acknowledgement.
    let ack = skm
        .admin()
        .unwrap()
        .acknowledge_audit_loss(admin::AcknowledgeAuditLossRequest {})
        .await
        .unwrap()
        .into_inner()
        .loss
        .unwrap();
    let expected = admin::AuditLoss {
        first_missing_seq: last_seq + 1,
        last_missing_seq: anchor_seq,
        acknowledged_seq: anchor_seq + 1,
    };
    assert_eq!(ack, expected);
    eventually("kms-api SERVING after the acknowledgement", READY, || serving(&skm, Service::KmsApi)).await.unwrap();
    encrypt(&skm, &key, b"again", b"").await.unwrap();

    let after = entries(&path);
    let first_after = &after[last_seq as usize];
    assert_eq!(first_after["seq"], anchor_seq + 1, "the seq after the gap follows the anchor's");
    assert_eq!(first_after["event"]["operation"], "AcknowledgeAuditLoss");
    assert_eq!(first_after["event"]["result"], "Intent");
    assert_eq!(first_after["event"]["lost"], serde_json::json!({"first_seq": last_seq + 1, "last_seq": anchor_seq}));
    assert!(first_after["event"]["caller"]["operator"].is_string(), "{first_after}");
    assert_eq!(after[last_seq as usize + 1]["event"]["operation"], "AcknowledgeAuditLoss");
    assert_eq!(after[last_seq as usize + 1]["event"]["result"], "Allowed");
    let all = seqs(&path);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "seqs strictly increase: {all:?}");
    assert!(!all.iter().any(|s| (last_seq + 1..=anchor_seq).contains(s)), "no missing seq is reused: {all:?}");

    let report = verify(&skm).await.unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.acknowledged_losses, vec![expected]);
    assert_eq!(report.entries, all.len() as u64);

    // Nothing left to acknowledge; a restart serves at once (the anchor
    // moved past the acknowledgement).
    let again = skm.admin().unwrap().acknowledge_audit_loss(admin::AcknowledgeAuditLossRequest {}).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    p.stop(Service::KmsApi).await;
    p.start(Service::KmsApi).unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    encrypt(&skm, &key, b"after restart", b"").await.unwrap();
    p.stop_all().await;
}

/// kms-api killed with SIGKILL while eight clients encrypt: every encrypt
/// it acknowledged has its entry in the log after the restart (at most the
/// calls in flight have one more), the chain verifies, seqs run on without
/// a gap, and the anchor matches (kms-api serves).
#[tokio::test]
async fn every_acknowledged_call_is_in_the_log_after_a_kill_under_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const CLIENTS: u64 = 8;
    let mut p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let skm = started(&mut p).await;
    let key = aes_key(&skm, "crash").await.unwrap();
    let acknowledged = Arc::new(AtomicU64::new(0));
    // Each client encrypts until a call fails (the kill).
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (skm, key, acknowledged) = (skm.clone(), key.clone(), acknowledged.clone());
            tokio::spawn(async move {
                while encrypt(&skm, &key, b"crash", b"").await.is_ok() {
                    acknowledged.fetch_add(1, Ordering::AcqRel);
                }
            })
        })
        .collect();
    eventually("300 encrypts acknowledged", READY, || {
        let done = acknowledged.load(Ordering::Acquire) >= 300;
        async move { done }
    })
    .await
    .unwrap();
    let pid = p.pid(Service::KmsApi).unwrap();
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.load(Ordering::Acquire);
    p.stop(Service::KmsApi).await;

    p.start(Service::KmsApi).unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let logged = entries(&audit_log(&p))
        .iter()
        .filter(|e| e["event"]["operation"] == "Encrypt" && e["event"]["key_id"] == key.as_str())
        .filter(|e| e["event"]["result"] == "Allowed")
        .count() as u64;
    assert!(
        (acknowledged..=acknowledged + CLIENTS).contains(&logged),
        "{acknowledged} encrypts acknowledged, {logged} in the log"
    );
    let all = seqs(&audit_log(&p));
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>(), "no gap, no reuse");
    let report = verify(&skm).await.unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.entries, all.len() as u64);
    encrypt(&skm, &key, b"after", b"").await.unwrap();
    p.stop_all().await;
}

/// A tmpfs mounted (as root) on kms-api's audit directory, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Self {
        // Needs root, and says so rather than skip.
        let uid = std::process::Command::new("id").arg("-u").output().expect("id runs");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test mounts a small tmpfs as kms-api's audit directory and needs root (CI runs as root): \
             run it as root"
        );
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(out.status.success(), "mount tmpfs failed: {}", String::from_utf8_lossy(&out.stderr));
        Self(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with `filler` until a write fails.
fn fill(filler: &Path) {
    let mut file = std::fs::File::create(filler).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).and_then(|()| file.sync_data()).is_ok() {}
    while file.write_all(&chunk[..1]).and_then(|()| file.sync_data()).is_ok() {}
}

/// With the audit directory on a full filesystem every change and use is
/// refused (nothing is changed), health is NOT_SERVING; once space is back
/// kms-api serves again by itself, without a restart and before any
/// request retries, and the chain verifies.
#[tokio::test]
async fn a_full_disk_fails_closed_and_recovers_by_itself() {
    full_disk("16m", true).await;
}

/// As above on a filesystem too small for the audit journal: kms-api
/// says so and syncs the log itself.
#[tokio::test]
async fn a_full_disk_without_room_for_the_journal_fails_closed_and_recovers() {
    full_disk("1m", false).await;
}

async fn full_disk(size: &str, journal: bool) {
    let mut p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let disk = SmallDisk::mount(&audit_dir(&p), size);
    let skm = started(&mut p).await;
    assert_eq!(audit_dir(&p).join("audit.journal").exists(), journal);
    let no_room = std::fs::read_to_string(p.log(Service::KmsApi)).unwrap().contains("no space for the audit journal");
    assert_eq!(no_room, !journal, "kms-api says when there is no room for the journal");
    let ks = keystore(&skm, "full").await.unwrap();
    let key = aes_key(&skm, "full-disk").await.unwrap();
    encrypt(&skm, &key, b"before", b"").await.unwrap();

    let filler = disk.0.join("filler");
    fill(&filler);
    // The log's last page may still hold a few entries: write until a call fails.
    let mut first_refusal = None;
    for i in 0..64u8 {
        if let Err(e) = encrypt(&skm, &key, &[i], b"").await {
            first_refusal = Some(e);
            break;
        }
    }
    let refusal = first_refusal.expect("an encrypt is refused once the disk is full");
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    let entries_when_full = seqs(&audit_log(&p));

    // Fail closed: uses and changes refused, nothing changed.
    for i in 0..5u8 {
        let e = encrypt(&skm, &key, &[i], b"").await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }
    let refused = create_key(&skm, &ks, "made-on-a-full-disk", admin::KeyType::Aes256, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    eventually("kms-api NOT_SERVING while the log can't be written", READY, || async {
        !serving(&skm, Service::KmsApi).await
    })
    .await
    .unwrap();
    assert_eq!(seqs(&audit_log(&p)), entries_when_full, "nothing written while the disk is full");

    // Space back: SERVING again with no request to retry (the log probes).
    std::fs::remove_file(&filler).unwrap();
    eventually("kms-api SERVING again by itself", READY, || serving(&skm, Service::KmsApi))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let log = entries(&audit_log(&p));
    assert_eq!(log[entries_when_full.len()]["event"]["operation"], "AuditLogAvailable", "the recovery is in the log");
    encrypt(&skm, &key, b"after", b"").await.unwrap();
    let keys =
        skm.admin().unwrap().list_keys(admin::ListKeysRequest { keystore_id: ks.clone() }).await.unwrap().into_inner();
    assert!(!format!("{keys:?}").contains("made-on-a-full-disk"), "the refused change was not made: {keys:?}");
    create_key(&skm, &ks, "made-after", admin::KeyType::Aes256, 0).await.unwrap();
    let all = seqs(&audit_log(&p));
    let report = verify(&skm).await.unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.entries, all.len() as u64);
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>(), "no gap, no reuse");
    p.stop_all().await;
    drop(disk);
}

/// ListAudit pages through more entries than one page: every entry once,
/// oldest first, in pages of at most page_size, matching the log on disk;
/// filters page too; a page size over the bound and a bad token are
/// refused naming the field and the limit.
#[tokio::test]
async fn list_audit_pages_across_more_entries_than_one_page() {
    let mut p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let skm = started(&mut p).await;
    let key = aes_key(&skm, "paged").await.unwrap();
    let other =
        create_key(&skm, &keystore(&skm, "other").await.unwrap(), "k", admin::KeyType::Aes256, 0).await.unwrap();
    for i in 0..260u32 {
        let k = if i % 4 == 0 { &other } else { &key };
        encrypt(&skm, k, &i.to_be_bytes(), b"").await.unwrap();
    }
    let mut admin = skm.admin().unwrap();

    let too_big =
        admin.list_audit(admin::ListAuditRequest { page_size: 1001, ..Default::default() }).await.unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    assert!(too_big.message().contains("page_size is 1001; the limit is 1000"), "{too_big:?}");
    let bad =
        admin.list_audit(admin::ListAuditRequest { page_token: "x".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("page_token"), "{bad:?}");

    let page_through = |request: admin::ListAuditRequest| {
        let mut admin = skm.admin().unwrap();
        async move {
            let (mut got, mut pages, mut request) = (Vec::new(), 0, request);
            loop {
                let page = admin.list_audit(request.clone()).await.unwrap().into_inner();
                assert!(page.entries.len() <= request.page_size as usize, "{} entries", page.entries.len());
                got.extend(page.entries);
                pages += 1;
                if page.next_page_token.is_empty() {
                    return (got, pages);
                }
                request.page_token = page.next_page_token;
            }
        }
    };

    let (all, pages) = page_through(admin::ListAuditRequest { page_size: 100, ..Default::default() }).await;
    let on_disk = entries(&audit_log(&p));
    assert!(on_disk.len() > 260, "{} entries", on_disk.len());
    assert!(pages >= 3, "{pages} pages");
    let listed: Vec<u64> = all.iter().map(|e| e.seq).collect();
    let disk_seqs: Vec<u64> = on_disk.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    // Each ListAudit call appends an entry of its own while we page: the
    // pages hold every entry up to the last one listed, once, in order.
    assert_eq!(listed, disk_seqs[..listed.len()], "pages = the log on disk");
    assert!(listed.len() >= 260, "{} listed", listed.len());
    for (entry, disk) in all.iter().zip(&on_disk) {
        assert_eq!(entry.operation, disk["event"]["operation"].as_str().unwrap());
    }

    let (filtered, pages) =
        page_through(admin::ListAuditRequest { key_id: other.clone(), page_size: 7, ..Default::default() }).await;
    let expected: Vec<u64> = entries(&audit_log(&p))
        .iter()
        .filter(|e| e["event"]["key_id"].as_str() == Some(other.as_str()))
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    // Each ListAudit call names the key, so its own entry matches too: the
    // last call's entry is written after its page was read.
    let (last_call, expected) = expected.split_last().unwrap();
    assert_eq!(filtered.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
    assert_eq!(seqs(&audit_log(&p)).last(), Some(last_call));
    assert!(expected.len() >= 65 && pages >= 10, "{} entries in {pages} pages", expected.len());

    // Without paging: the newest `limit`, as before.
    let newest =
        admin.list_audit(admin::ListAuditRequest { limit: 5, ..Default::default() }).await.unwrap().into_inner();
    let disk_seqs = seqs(&audit_log(&p));
    assert_eq!(
        newest.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        disk_seqs[disk_seqs.len() - 6..disk_seqs.len() - 1]
    );
    assert!(newest.next_page_token.is_empty());
    p.stop_all().await;
}
