//! kms-api's scheduled maintenance, as it runs by itself: with a one-second
//! interval and a test clock, automatic rotation and the destruction at the
//! end of a deletion period happen without anyone calling it, are audited
//! under `kms-api/maintenance` (intent, then outcome), and the log
//! verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use skm::devstack::DevSeal;
use skm_client::admin::v1 as admin;
use skm_e2e::{InProcess, create_key, encrypt, eventually, keystore, wait_ready};
use tonic::Code;

const DAY: i64 = 86_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_loop_rotates_and_destroys_audited_under_its_own_principal() {
    let clock = Arc::new(kms_api::clock::ManualClock::new());
    let stack = InProcess::start_with(DevSeal::Passphrase, clock.clone(), |config| {
        config.maintenance_interval = Duration::from_secs(1);
    })
    .await
    .unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, Duration::from_secs(30)).await.unwrap();
    let ks = keystore(&skm, "maintained").await.unwrap();
    let rotating = create_key(&skm, &ks, "rotating", admin::KeyType::Aes256, 1).await.unwrap();
    let doomed = create_key(&skm, &ks, "doomed", admin::KeyType::Aes256, 0).await.unwrap();
    let mut a = skm.admin().unwrap();
    a.schedule_key_deletion(admin::ScheduleKeyDeletionRequest { key_id: doomed.clone(), pending_days: 7 })
        .await
        .unwrap();
    encrypt(&skm, &rotating, b"used", b"").await.unwrap();
    let used_at = clock.now_for_test();

    clock.advance(7 * DAY + 1);
    let describe = |key: String| {
        let mut a = skm.admin().unwrap();
        async move { a.describe_key(admin::DescribeKeyRequest { key_id: key }).await }
    };
    eventually("the loop destroys the doomed key", Duration::from_secs(20), || async {
        describe(doomed.clone()).await.is_err_and(|s| s.code() == Code::NotFound)
    })
    .await
    .unwrap();
    eventually("the loop rotates the rotating key", Duration::from_secs(20), || async {
        describe(rotating.clone()).await.is_ok_and(|k| k.into_inner().current_version == 2)
    })
    .await
    .unwrap();
    // Once, not once per pass: the next rotation is a day away.
    let before = describe(rotating.clone()).await.unwrap().into_inner();
    assert_eq!(before.next_rotation_at, clock.now_for_test() + DAY);

    let entries = a
        .list_audit(admin::ListAuditRequest { limit: 10_000, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let maintenance: Vec<(String, String, String)> = entries
        .iter()
        .filter(|e| e.system_principal == "kms-api/maintenance")
        .map(|e| (e.operation.clone(), e.result.clone(), e.key_id.clone()))
        .collect();
    let mut expected = vec![
        ("AutoRotateKey".to_owned(), "intent".to_owned(), rotating.clone()),
        ("AutoRotateKey".to_owned(), "allowed".to_owned(), rotating.clone()),
        ("DestroyKey".to_owned(), "intent".to_owned(), doomed.clone()),
        ("DestroyKey".to_owned(), "allowed".to_owned(), doomed.clone()),
    ];
    let mut got = maintenance.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{maintenance:?}");
    assert!(
        entries
            .iter()
            .filter(|e| e.system_principal == "kms-api/maintenance")
            .all(|e| e.front_end == "maintenance" && e.operator.is_empty())
    );
    let report = a.verify_audit(admin::VerifyAuditRequest {}).await.unwrap().into_inner();
    assert!(report.intact, "{report:?}");

    // The use is reported (the pass also persisted it: the core's unit
    // test `last_use_is_persisted_by_maintenance` reads it back from the store).
    assert_eq!(before.last_used_at, used_at);
}
