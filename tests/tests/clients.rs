//! Calling SKM as an application does: the typed Rust client and its
//! envelope helper, raw undecodable bytes over real mTLS, the application
//! profile that `skm dev` writes, and the Python SDK's pytest suite (run
//! here, so that `cargo test` counts it and fails when it fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::bytes::{Buf, BufMut};
use skm::devstack::DevSeal;
use skm_client::admin::v1::KeyType;
use skm_client::{ClientError, SignatureAlgorithm, Signed};
use skm_e2e::{DevProcess, InProcess, wait_ready};
use skm_runtime::tls::{TlsFiles, TlsIdentity};
use skm_runtime::{Service, SpiffeId};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const READY: Duration = Duration::from_secs(30);

/// Sends and receives raw bytes as gRPC messages: what a broken or hostile
/// client puts on the wire.
#[derive(Clone, Default)]
struct RawCodec;

struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

async fn raw_call(
    channel: tonic::transport::Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unknown(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    Ok(grpc.unary(tonic::Request::new(body), path, RawCodec).await?.into_inner())
}

/// A message that isn't valid protobuf is the caller's bad input:
/// INVALID_ARGUMENT on the user port (anonymous TLS) and on the admin port
/// (operator mTLS), where tonic-prost alone answers INTERNAL. A well-formed
/// message on the same raw path is answered, so the refusal is the decoding.
#[tokio::test]
async fn undecodable_requests_are_invalid_argument() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let server = SpiffeId::for_service(skm_e2e::TRUST_DOMAIN, Service::KmsApi).unwrap();
    let ca = stack.stack.dir.join("pki").join("operator").join("ca.pem");
    let user_tls =
        skm_runtime::tls::anonymous_client_config(skm_runtime::tls::load_roots(&ca).unwrap(), &server).unwrap();
    let user = skm_runtime::channel::lazy_channel(&stack.profile.user_endpoint, user_tls).unwrap();
    let d = stack.stack.dir.join("pki").join("operator");
    let operator =
        TlsIdentity::load(&TlsFiles { ca: d.join("ca.pem"), cert: d.join("cert.pem"), key: d.join("key.pem") }, None)
            .unwrap();
    let admin =
        skm_runtime::channel::lazy_channel(&stack.profile.admin_endpoint, operator.client_config(&server).unwrap())
            .unwrap();

    // field 1, length-delimited, with a length varint cut off; and a length past the end
    for garbage in [vec![0x0a, 0xff], vec![0x0a, 0x05, b'a'], vec![0xff; 7]] {
        let err = raw_call(user.clone(), "/skm.api.v1.KeyService/Encrypt", garbage.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "user port, {garbage:?}: {err:?}");
        assert!(err.message().starts_with("undecodable message"), "{err:?}");
        let err =
            raw_call(admin.clone(), "/skm.admin.v1.AdminService/ListKeystores", garbage.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "admin port, {garbage:?}: {err:?}");
    }
    // control: an empty WhoAmIRequest and ListKeystoresRequest decode and are answered
    assert!(raw_call(user, "/skm.api.v1.KeyService/WhoAmI", vec![]).await.is_ok());
    assert!(raw_call(admin, "/skm.admin.v1.AdminService/ListKeystores", vec![]).await.is_ok());
}

/// The typed methods and the envelope helper of `skm-client` on a real
/// stack: results as plain structs, refusals as `ClientError::Rpc` with
/// their codes, envelopes of 0 bytes, 1 byte and several chunks (streamed),
/// and a tampered or cut envelope refused.
#[tokio::test]
async fn typed_client_and_envelopes() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let ks = skm_e2e::keystore(&skm, "apps").await.unwrap();
    let aes = skm_e2e::create_key(&skm, &ks, "aes", KeyType::Aes256, 0).await.unwrap();
    let ed = skm_e2e::create_key(&skm, &ks, "ed", KeyType::Ed25519, 0).await.unwrap();

    let enc = skm.encrypt(&aes.to_uppercase(), b"typed", b"aad").await.unwrap();
    assert_eq!(enc.key_version, 1);
    assert_eq!(&skm.decrypt(&aes, &enc.ciphertext, b"aad").await.unwrap().plaintext[..], b"typed");
    let dk = skm.generate_data_key(&aes, b"").await.unwrap();
    assert_eq!(dk.plaintext.as_ref().map(|p| p.len()), Some(32));
    assert_eq!(skm.generate_data_key_without_plaintext(&aes, b"").await.unwrap().plaintext, None);
    let re = skm.re_encrypt(&aes, &enc.ciphertext, b"aad").await.unwrap();
    assert_eq!((re.source_key_version, re.key_version), (1, 1));
    let batch = skm.batch_encrypt(&[(&aes, b"a", b""), (&"0".repeat(32), b"b", b"")]).await.unwrap();
    assert!(batch[0].is_ok());
    assert_eq!(batch[1].as_ref().unwrap_err().code, Code::NotFound);
    let sig = skm.sign(&ed, Signed::Message(b"m"), SignatureAlgorithm::Unspecified).await.unwrap();
    assert_eq!(sig.algorithm, SignatureAlgorithm::Ed25519);
    let ok = skm.verify(&ed, Signed::Message(b"m"), &sig.signature, SignatureAlgorithm::Ed25519, 0).await.unwrap();
    assert!(ok.valid);
    assert_eq!(skm.public_key(&ed, 0).await.unwrap().key_algorithm, "ed25519");
    assert_eq!(skm.who_am_i().await.unwrap().client_ip, "127.0.0.1");

    let bad_id = skm.encrypt("nope", b"x", b"").await.unwrap_err();
    assert_eq!(bad_id.code(), Some(Code::InvalidArgument), "{bad_id}");
    assert!(bad_id.to_string().starts_with("INVALID_ARGUMENT: "), "{bad_id}");
    assert_eq!(
        skm.sign(&aes, Signed::Message(b"x"), SignatureAlgorithm::Unspecified).await.unwrap_err().code(),
        Some(Code::FailedPrecondition)
    );

    let size = skm_crypto::envelope::CHUNK_SIZE as usize;
    for len in [0usize, 1, size, 2 * size + 5] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let blob = skm.envelope_encrypt(&aes, &data, b"ctx").await.unwrap();
        let (header, header_len) = skm_crypto::envelope::Header::parse(&blob).unwrap();
        assert_eq!(header.key_id().to_string(), aes);
        let chunks = if len == 0 { 1 } else { len.div_ceil(size) };
        assert_eq!(blob.len(), header_len + len + chunks * skm_crypto::envelope::TAG);
        assert_eq!(&skm.envelope_decrypt(&blob, b"ctx").await.unwrap()[..], &data[..], "len {len}");
        let mut streamed = Vec::new();
        let n = skm.envelope_decrypt_stream(b"ctx", &mut blob.as_slice(), &mut streamed).await.unwrap();
        assert_eq!((n as usize, &streamed[..]), (len, &data[..]));
        let wrong_aad = skm.envelope_decrypt(&blob, b"other").await.unwrap_err();
        assert_eq!(wrong_aad.code(), Some(Code::InvalidArgument));
        if len > size {
            let cut = &blob[..header_len + size + skm_crypto::envelope::TAG];
            assert!(matches!(skm.envelope_decrypt(cut, b"ctx").await, Err(ClientError::Decrypt)));
            let mut tampered = blob.clone();
            *tampered.last_mut().unwrap() ^= 1;
            assert!(matches!(skm.envelope_decrypt(&tampered, b"ctx").await, Err(ClientError::Decrypt)));
        }
    }
    let not_one = skm.envelope_decrypt(b"PK\x03\x04 a zip file", b"").await.unwrap_err();
    assert!(matches!(not_one, ClientError::Envelope(_)), "{not_one}");
}

/// `skm dev` writes an application profile (user port and CA, nothing of
/// the operator's): data verbs work with it, and an admin verb says that
/// it needs the operator profile instead of failing in TLS.
#[test]
fn the_application_profile_serves_applications_only() {
    let dev = DevProcess::start().unwrap();
    let app = dev.data_dir().join("app").join("profile.toml");
    let text = std::fs::read_to_string(&app).unwrap();
    assert!(!text.contains("[operator]") && !text.contains("admin_endpoint") && !text.contains("key.pem"), "{text}");
    let ks = dev.ok(&["keystore", "create", "app", "--allow-ip", "127.0.0.1"], b"");
    let key = dev.ok(&["key", "create", &ks, "k", "--type", "aes-256"], b"");
    let app = app.to_str().unwrap();
    let ct = dev.ok(&["--profile", app, "encrypt", &key], b"from the app profile");
    assert_eq!(dev.ok(&["--profile", app, "decrypt", &key], ct.as_bytes()), "from the app profile");
    let refused = dev.run(&["--profile", app, "keystore", "list"], b"");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("application profile") && stderr.contains("operator"), "{stderr}");
}

/// sdk/python's pytest suite against a real `skm dev` stack its fixture
/// starts (every user-plane call and error, both client certificate
/// formats, asyncio, envelopes up to a 64 MiB stream, reflection with the
/// stock client, Rust ⇄ Python envelopes and signatures checked by
/// `cryptography`). Fails when pytest fails or finds no tests.
#[test]
fn python_sdk_suite() {
    skm_e2e::pytest("sdk/python/tests", "sdk/python", Some("sdk/python/src"));
}
