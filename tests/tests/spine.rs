//! The spine through in-process tiers: mTLS refusals, sealing, tier
//! separation and bad input, over real mTLS and real sled stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use skm::devstack::DevSeal;
use skm_client::admin::v1 as admin_pb;
use skm_client::admin::v1::KeyType;
use skm_client::root::v1 as root_pb;
use skm_client::system::v1 as system_pb;
use skm_e2e::{InProcess, aes_key, decrypt, encrypt, eventually, files_below, never, serving, wait_ready};
use skm_pki::CertificateAuthority;
use skm_proto::root::v1::root_key_service_client::RootKeyServiceClient;
use skm_proto::system::v1::system_key_service_client::SystemKeyServiceClient;
use skm_runtime::tls::{TlsFiles, TlsIdentity};
use skm_runtime::{Service, SpiffeId};
use tonic::Code;
use tonic::transport::Channel;

const READY: Duration = Duration::from_secs(30);

fn tier_identity(stack: &InProcess, service: Service) -> TlsIdentity {
    let d = stack.stack.dir.join("pki").join(service.name());
    TlsIdentity::load(&TlsFiles { ca: d.join("ca.pem"), cert: d.join("cert.pem"), key: d.join("key.pem") }, None)
        .unwrap()
}

fn channel_as(identity: &TlsIdentity, addr: &str, server: Service) -> Channel {
    let id = SpiffeId::for_service(skm_e2e::TRUST_DOMAIN, server).unwrap();
    skm_runtime::channel::lazy_channel(addr, identity.client_config(&id).unwrap()).unwrap()
}

/// The server refused the client's certificate, or its absence. With TLS
/// 1.3 the client's side of the handshake completes first, so the refusal
/// shows on the first request as a transport error (FIELD-NOTES), never as
/// a status a handler sent.
#[track_caller]
fn refused_by_the_server(err: &tonic::Status, what: &str) {
    assert_eq!(err.code(), Code::Unknown, "{what}: {err:?}");
    assert!(err.message().contains("transport error"), "{what}: {err:?}");
}

#[tokio::test]
async fn mtls_refusals_unwrap_nothing() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let root_addr = stack.profile.root_keyd.clone();
    let system_addr = stack.profile.system_keyd.clone();
    let kms = tier_identity(&stack, Service::KmsApi);
    let system = tier_identity(&stack, Service::SystemKeyd);

    // Positive control: kms-api may read wrapped keys and have them unwrapped.
    let wrapped = SystemKeyServiceClient::new(channel_as(&kms, &system_addr, Service::SystemKeyd))
        .get_wrapped_system_keys(system_pb::GetWrappedSystemKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
        .remove(0);
    let recipient = skm_crypto::transport::RecipientKeypair::generate().unwrap();
    let request = root_pb::UnwrapSystemKeyRequest { key: Some(wrapped), recipient_public_key: recipient.public_key() };
    let before = stack.root().unwrap_count();
    let ok = RootKeyServiceClient::new(channel_as(&kms, &root_addr, Service::RootKeyd))
        .unwrap_system_key(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(recipient.open_system_key(ok.version, &ok.encapsulated_key, &ok.sealed_key).is_ok());
    assert_eq!(stack.root().unwrap_count(), before + 1);
    let unwrapped = stack.root().unwrap_count();

    // 1. No client certificate: the TLS layer refuses; the first RPC fails.
    let root_id = SpiffeId::for_service(skm_e2e::TRUST_DOMAIN, Service::RootKeyd).unwrap();
    let roots = skm_runtime::tls::load_roots(&stack.stack.dir.join("pki/kms-api/ca.pem")).unwrap();
    let anonymous = skm_runtime::tls::anonymous_client_config(roots, &root_id).unwrap();
    let err = RootKeyServiceClient::new(skm_runtime::channel::lazy_channel(&root_addr, anonymous).unwrap())
        .unwrap_system_key(request.clone())
        .await
        .unwrap_err();
    refused_by_the_server(&err, "no client certificate");

    // 2. A certificate from another CA, even one claiming to be kms-api.
    let rogue_ca = CertificateAuthority::generate(skm_e2e::TRUST_DOMAIN, "rogue", 1).unwrap();
    let rogue = rogue_ca.issue_service(Service::KmsApi, &[], 1).unwrap();
    let real_ca = std::fs::read(stack.stack.dir.join("pki/kms-api/ca.pem")).unwrap();
    let rogue_identity = TlsIdentity::from_pem(&real_ca, rogue.cert_pem.as_bytes(), rogue.key_pem.as_bytes()).unwrap();
    let err = RootKeyServiceClient::new(channel_as(&rogue_identity, &root_addr, Service::RootKeyd))
        .unwrap_system_key(request.clone())
        .await
        .unwrap_err();
    refused_by_the_server(&err, "a client certificate from another CA");

    // 3. A valid certificate with the wrong identity for the RPC.
    let err = RootKeyServiceClient::new(channel_as(&system, &root_addr, Service::RootKeyd))
        .unwrap_system_key(request.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let operator = stack.client().unwrap();
    let err = operator.root().unwrap().unwrap_system_key(request.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(stack.root().unwrap_count(), unwrapped, "a refused call unwrapped a key");

    // More of the allow-lists: each tier only accepts its designated callers.
    let err = RootKeyServiceClient::new(channel_as(&kms, &root_addr, Service::RootKeyd))
        .generate_system_key(root_pb::GenerateSystemKeyRequest { version: 99 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = RootKeyServiceClient::new(channel_as(&kms, &root_addr, Service::RootKeyd))
        .unseal(root_pb::UnsealRequest { share: vec![1; 33] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = SystemKeyServiceClient::new(channel_as(&kms, &system_addr, Service::SystemKeyd))
        .rotate_system_key(system_pb::RotateSystemKeyRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = SystemKeyServiceClient::new(channel_as(&system, &system_addr, Service::SystemKeyd))
        .get_wrapped_system_keys(system_pb::GetWrappedSystemKeysRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let admin_as_system = skm_proto::admin::v1::admin_service_client::AdminServiceClient::new(channel_as(
        &system,
        &stack.profile.admin_endpoint,
        Service::KmsApi,
    ))
    .list_keystores(skm_proto::admin::v1::ListKeystoresRequest {})
    .await
    .unwrap_err();
    assert_eq!(admin_as_system.code(), Code::PermissionDenied);

    // 4. The client side checks the server's identity too: system-keyd's
    //    address presented as root-keyd is refused before any RPC.
    let err = RootKeyServiceClient::new(channel_as(&kms, &system_addr, Service::RootKeyd))
        .seal_status(root_pb::SealStatusRequest {})
        .await
        .unwrap_err();
    // The client refuses the server's certificate: no connection at all.
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("invalid peer certificate"), "{err:?}");
    assert_eq!(stack.root().unwrap_count(), unwrapped);
}

#[tokio::test]
async fn shamir_sealed_root_blocks_kms_api_until_threshold() {
    let stack = InProcess::start(DevSeal::Shamir).await.unwrap();
    let skm = stack.client().unwrap();
    let mut root = skm.root().unwrap();
    let status = root.seal_status(root_pb::SealStatusRequest {}).await.unwrap().into_inner();
    assert!(!status.initialized && status.sealed);
    never("kms-api SERVING before init", Duration::from_secs(1), || serving(&skm, Service::KmsApi)).await.unwrap();
    let err = skm.admin().unwrap().list_keystores(skm_proto::admin::v1::ListKeystoresRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    let single = root.init(root_pb::InitRequest { shares: 3, threshold: 1 }).await.unwrap_err();
    assert_eq!(single.code(), Code::InvalidArgument, "one share must never unseal: {single:?}");
    let init = root.init(root_pb::InitRequest { shares: 5, threshold: 3 }).await.unwrap().into_inner();
    assert_eq!(init.shares.len(), 5);
    assert!(stack.root().is_sealed());
    let again = root.init(root_pb::InitRequest { shares: 5, threshold: 3 }).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    // Wrong shares are rejected one by one, without counting.
    let mut forged = init.shares[0].clone();
    forged[5] ^= 0xff;
    for wrong in [forged, vec![7u8; 33], vec![1u8]] {
        let err = root.unseal(root_pb::UnsealRequest { share: wrong }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    // k - 1 shares are not enough.
    for share in &init.shares[..2] {
        let s = root.unseal(root_pb::UnsealRequest { share: share.clone() }).await.unwrap().into_inner();
        assert!(s.status.unwrap().sealed);
    }
    let progress = root.seal_status(root_pb::SealStatusRequest {}).await.unwrap().into_inner();
    assert_eq!((progress.sealed, progress.progress, progress.threshold), (true, 2, 3));
    never("kms-api SERVING with k-1 shares", Duration::from_secs(1), || serving(&skm, Service::KmsApi)).await.unwrap();

    // The k-th share unseals; kms-api becomes ready without a restart.
    let s = root.unseal(root_pb::UnsealRequest { share: init.shares[4].clone() }).await.unwrap().into_inner();
    assert!(!s.status.unwrap().sealed);
    wait_ready(&skm, READY).await.unwrap();
    let key = aes_key(&skm, "after-unseal").await.unwrap();
    let ct = encrypt(&skm, &key, b"unsealed", b"").await.unwrap();
    assert_eq!(decrypt(&skm, &key, &ct, b"").await.unwrap(), b"unsealed");
}

#[tokio::test]
async fn no_tier_stores_keys_or_plaintext_in_the_clear() {
    let mut stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let key = aes_key(&skm, "separation").await.unwrap();
    let plaintext = format!("TIER-SEPARATION-CANARY-{}", hex::encode(skm_crypto::random_array::<8>().unwrap()));
    let ct = encrypt(&skm, &key, plaintext.as_bytes(), b"").await.unwrap();
    assert_eq!(decrypt(&skm, &key, &ct, b"").await.unwrap(), plaintext.as_bytes());

    let root_key = stack.root().danger_root_key().unwrap();
    let system_keys = stack.kms().danger_system_keys();
    let user_key: [u8; 32] = stack.kms().danger_key_material(&key, 1).await.unwrap().try_into().unwrap();
    assert!(!system_keys.is_empty());
    let mut needles: Vec<(String, Vec<u8>)> = vec![("plaintext".into(), plaintext.as_bytes().to_vec())];
    for (name, secret) in std::iter::once(("root key", root_key))
        .chain(system_keys.iter().map(|k| ("system key", *k)))
        .chain(std::iter::once(("user key", user_key)))
    {
        needles.extend(skm_e2e::encodings(&secret).into_iter().map(|e| (name.to_owned(), e)));
    }
    stack.stop().await.unwrap();

    let mut scanned = 0;
    for tier in [Service::RootKeyd, Service::SystemKeyd, Service::KmsApi] {
        let data = stack.stack.data_dir(tier);
        let files = files_below(&data);
        assert!(!files.is_empty(), "{} stored nothing", tier.name());
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            scanned += bytes.len();
            for (what, needle) in &needles {
                assert!(
                    !skm_e2e::holds_bytes(&bytes, needle),
                    "{} holds the {what} in the clear in {}",
                    tier.name(),
                    file.display()
                );
            }
        }
    }
    assert!(scanned > 0);
}

#[tokio::test]
async fn bad_input_is_refused_and_the_stack_keeps_serving() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let key = aes_key(&skm, "bad-input").await.unwrap();
    let other = {
        use skm_client::admin::v1 as pb;
        let ks = skm
            .admin()
            .unwrap()
            .list_keystores(pb::ListKeystoresRequest {})
            .await
            .unwrap()
            .into_inner()
            .keystores
            .remove(0);
        skm.admin()
            .unwrap()
            .create_key(pb::CreateKeyRequest {
                keystore_id: ks.id,
                name: "other".into(),
                key_type: pb::KeyType::Aes256 as i32,
                rotation_period_days: 0,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .key_id
    };

    // Limits: exactly at the limit passes, one byte over names the limit.
    let at_limit = vec![0x41; 32 * 1024];
    let ct = encrypt(&skm, &key, &at_limit, b"").await.unwrap();
    assert_eq!(decrypt(&skm, &key, &ct, b"").await.unwrap(), at_limit);
    let err = encrypt(&skm, &key, &vec![0x41; 32 * 1024 + 1], b"").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "plaintext is 32769 bytes; the limit is 32768");
    encrypt(&skm, &key, b"x", &vec![0; 8192]).await.unwrap();
    let err = encrypt(&skm, &key, b"x", &vec![0; 8193]).await.unwrap_err();
    assert_eq!(err.message(), "aad is 8193 bytes; the limit is 8192");

    // Every decrypt failure is the same opaque error.
    let good = encrypt(&skm, &key, b"payload", b"ctx").await.unwrap();
    let under_other = encrypt(&skm, &other, b"payload", b"ctx").await.unwrap();
    let mut other_version = good.clone();
    other_version[20] = 2;
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        ("empty", vec![], b"ctx"),
        ("garbage", vec![0xde, 0xad, 0xbe, 0xef], b"ctx"),
        ("truncated", good[..30].to_vec(), b"ctx"),
        ("another key's ciphertext", under_other, b"ctx"),
        ("unknown version", other_version, b"ctx"),
        ("flipped tag", flipped, b"ctx"),
        ("wrong aad", good.clone(), b"other"),
        ("missing aad", good.clone(), b""),
    ];
    for (what, ciphertext, aad) in cases {
        let err = decrypt(&skm, &key, &ciphertext, aad).await.unwrap_err();
        assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "decryption failed"), "{what}");
    }
    let err = decrypt(&skm, &key, &vec![0; 32 * 1024 + 50], b"").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Ids.
    let err = encrypt(&skm, "not-an-id", b"x", b"").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("key_id"), "{}", err.message());
    let err = encrypt(&skm, &"0".repeat(32), b"x", b"").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Still serving.
    assert_eq!(decrypt(&skm, &key, &good, b"ctx").await.unwrap(), b"payload");
    eventually("kms-api still SERVING", Duration::from_secs(5), || serving(&skm, Service::KmsApi)).await.unwrap();
}

#[tokio::test]
async fn keystore_ipv4_allow_list_is_enforced() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    use skm_client::admin::v1 as pb;
    let mut admin = skm.admin().unwrap();
    let ks = admin
        .create_keystore(pb::CreateKeystoreRequest {
            alias: String::new(),
            name: "elsewhere".into(),
            allow_ips: vec!["10.9.0.0/16".into()],
            policy: None,
        })
        .await
        .unwrap()
        .into_inner()
        .keystore
        .unwrap();
    let key = admin
        .create_key(pb::CreateKeyRequest {
            keystore_id: ks.id,
            name: "k".into(),
            key_type: pb::KeyType::Aes256 as i32,
            rotation_period_days: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_id;
    let err = encrypt(&skm, &key, b"x", b"").await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::PermissionDenied, "IPv4 authentication failed"));
    for bad in [vec![], vec!["10.0.0.5/24".to_owned()], vec!["::1".to_owned()]] {
        let err = admin
            .create_keystore(pb::CreateKeystoreRequest {
                alias: String::new(),
                name: "bad".into(),
                allow_ips: bad,
                policy: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("allow_ips"), "{}", err.message());
    }
    let dup = admin
        .create_keystore(pb::CreateKeystoreRequest {
            alias: String::new(),
            name: "elsewhere".into(),
            allow_ips: vec!["127.0.0.1".into()],
            policy: None,
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
}

/// ListServices over `grpc.reflection.v1` and over `v1alpha` (what stock
/// tools such as Python's grpcio-reflection speak) on each of the four
/// ports, over the same mTLS as everything else, lists that port's SKM
/// service, health and both reflections, and nothing of the other tiers.
#[tokio::test]
async fn reflection_lists_each_ports_services() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let operator = {
        let d = stack.stack.dir.join("pki").join("operator");
        TlsIdentity::load(&TlsFiles { ca: d.join("ca.pem"), cert: d.join("cert.pem"), key: d.join("key.pem") }, None)
            .unwrap()
    };
    let ports = [
        (stack.profile.root_keyd.clone(), Service::RootKeyd, "skm.root.v1.RootKeyService"),
        (stack.profile.system_keyd.clone(), Service::SystemKeyd, "skm.system.v1.SystemKeyService"),
        (stack.profile.user_endpoint.clone(), Service::KmsApi, "skm.api.v1.KeyService"),
        (stack.profile.admin_endpoint.clone(), Service::KmsApi, "skm.admin.v1.AdminService"),
    ];
    for (addr, server, service) in ports {
        let channel = channel_as(&operator, &addr, server);
        let mut expected: Vec<String> = [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            service,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        expected.sort();
        assert_eq!(list_services_v1(channel.clone()).await, expected, "v1 services listed on {addr}");
        assert_eq!(list_services_v1alpha(channel).await, expected, "v1alpha services listed on {addr}");
    }
}

/// `ListServices` over one version of the reflection protocol (the two
/// versions' generated types are alike but distinct).
macro_rules! list_services {
    ($name:ident, $version:ident) => {
        async fn $name(channel: tonic::transport::Channel) -> Vec<String> {
            use tonic_reflection::pb::$version::ServerReflectionRequest;
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = ServerReflectionClient::new(channel)
                .server_reflection_info(tonic::codegen::tokio_stream::iter([request]))
                .await
                .unwrap()
                .into_inner();
            let answer = answers.message().await.unwrap().expect("one answer");
            let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
                panic!("not a service list: {answer:?}");
            };
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
    };
}
list_services!(list_services_v1, v1);
list_services!(list_services_v1alpha, v1alpha);

/// A system key rotation as operators do it (RotateSystemKey on
/// system-keyd): kms-api, refreshing every second here, holds v2 without a
/// restart; a record written after that is sealed under v2, and the
/// background re-seal moves the ones from before to v2 too (read from the
/// store); after a restart, which reads every record back from disk,
/// ciphertexts of keys from before and after the rotation decrypt.
#[tokio::test]
async fn system_key_rotation_is_picked_up_and_old_records_still_open() {
    let refresh = |c: &mut kms_api::Config| c.system_key_refresh = Duration::from_secs(1);
    let clock = std::sync::Arc::new(kms_api::clock::SystemClock);
    let mut stack = InProcess::start_with(DevSeal::Passphrase, clock, refresh).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    assert_eq!(stack.kms().danger_system_keys().len(), 1);
    let before_ks = skm_e2e::keystore(&skm, "before").await.unwrap();
    let before = skm_e2e::create_key(&skm, &before_ks, "k", KeyType::Aes256, 0).await.unwrap();
    let before_ct = encrypt(&skm, &before, b"sealed under v1", b"").await.unwrap();

    let rotated = skm.system().unwrap().rotate_system_key(system_pb::RotateSystemKeyRequest {}).await.unwrap();
    assert_eq!(rotated.into_inner().active_version, 2);
    // A generous deadline (many refresh intervals): this proves the pick-up,
    // not its speed.
    eventually("kms-api holding system key v2", Duration::from_secs(30), || async {
        stack.kms().danger_system_keys().len() == 2
    })
    .await
    .unwrap();
    let after_ks = skm_e2e::keystore(&skm, "after").await.unwrap();
    let after = skm_e2e::create_key(&skm, &after_ks, "k", KeyType::Aes256, 0).await.unwrap();
    let after_ct = encrypt(&skm, &after, b"sealed under v2", b"").await.unwrap();
    assert_eq!(decrypt(&skm, &before, &before_ct, b"").await.unwrap(), b"sealed under v1");

    eventually("the re-seal done under v2", Duration::from_secs(30), || async {
        let s = skm.admin().unwrap().get_system_key_status(admin_pb::GetSystemKeyStatusRequest {}).await.unwrap();
        let s = s.into_inner();
        s.reseal_target_version == 2 && s.reseal_done
    })
    .await
    .unwrap();
    // The keystore records as stored (`ks/<id>`, a sealed record): the
    // system key version each is sealed under.
    let data = stack.stack.data_dir(Service::KmsApi);
    stack.stop().await.unwrap();
    {
        use skm_store::Store;
        let store = skm_store::SledStore::open(&data).unwrap();
        let mut versions = std::collections::BTreeMap::new();
        for (k, v) in store.list(b"ks/").await.unwrap() {
            let id = String::from_utf8_lossy(&k).trim_start_matches("ks/").to_owned();
            versions.insert(id, skm_crypto::record::SystemKeyring::version_of(&v.value).unwrap());
        }
        assert_eq!(versions.get(&before_ks), Some(&2), "re-sealed: {versions:?}");
        assert_eq!(versions.get(&after_ks), Some(&2), "{versions:?}");
    }

    let stack = stack.restart(refresh).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    assert_eq!(stack.kms().danger_system_keys().len(), 2);
    assert_eq!(decrypt(&skm, &before, &before_ct, b"").await.unwrap(), b"sealed under v1");
    assert_eq!(decrypt(&skm, &after, &after_ct, b"").await.unwrap(), b"sealed under v2");
    // New writes keep using v2 after the restart.
    let again = aes_key(&skm, "again").await.unwrap();
    assert_eq!(decrypt(&skm, &again, &encrypt(&skm, &again, b"v2", b"").await.unwrap(), b"").await.unwrap(), b"v2");
}
