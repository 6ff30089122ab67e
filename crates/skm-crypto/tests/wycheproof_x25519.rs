//! Wycheproof's X25519 vectors (`wycheproof/x25519_test.json`) where SKM
//! uses X25519: the KEM of the HPKE suite that carries system keys from
//! root-keyd to kms-api (`skm_crypto::transport`, DHKEM(X25519,
//! HKDF-SHA256)).
//!
//! `transport` exposes no raw X25519 (its keys are random and per boot), so
//! the vectors go in two ways:
//!
//! 1. Through SKM's own API: sealing a system key to each vector's public
//!    key must be refused exactly when X25519 with that point gives the
//!    all-zero secret (the low-order points; RFC 9180 §7.1.4 requires the
//!    check) and work for every other point.
//! 2. Through the KEM that `transport` instantiates: decapsulating the
//!    vector's public key as the encapsulated key under its private key must
//!    give the shared secret RFC 9180 §4.1 derives from the vector's
//!    `shared` value (ExtractAndExpand over enc ‖ pkR), computed here from
//!    the RFC's text with HMAC built on `skm_crypto::sha256`, so a wrong
//!    X25519 result can't go unnoticed. (pkR comes from the KEM itself: the
//!    vectors don't list it.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, Serializable};
use serde_json::Value;
use skm_crypto::Secret32;
use skm_crypto::transport::{SealToError, seal_system_key};

struct Case {
    id: u64,
    public: Vec<u8>,
    private: Vec<u8>,
    shared: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let text = include_str!("wycheproof/x25519_test.json");
    let file: Value = serde_json::from_str(text).unwrap();
    assert_eq!(file["algorithm"], "XDH");
    let mut out = Vec::new();
    for group in file["testGroups"].as_array().unwrap() {
        assert_eq!(group["curve"], "curve25519");
        for t in group["tests"].as_array().unwrap() {
            // Every case of this file is valid or acceptable: a shared value is given.
            assert!(t["result"] == "valid" || t["result"] == "acceptable", "{t}");
            let bytes = |field: &str| hex::decode(t[field].as_str().unwrap()).unwrap();
            out.push(Case {
                id: t["tcId"].as_u64().unwrap(),
                public: bytes("public"),
                private: bytes("private"),
                shared: bytes("shared"),
            });
        }
    }
    assert_eq!(out.len() as u64, file["numberOfTests"].as_u64().unwrap());
    out
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

#[test]
fn sealing_to_a_low_order_point_is_refused_and_to_any_other_point_works() {
    let system_key = Secret32::generate().unwrap();
    let (mut refused, mut sealed) = (0, 0);
    for case in cases() {
        let result = seal_system_key(&case.public, 1, &system_key);
        if is_zero(&case.shared) {
            assert!(
                matches!(result, Err(SealToError::Encrypt(_) | SealToError::BadRecipient)),
                "tcId {}: sealed to a low-order point",
                case.id
            );
            refused += 1;
        } else {
            let (enc, ct) = result.unwrap_or_else(|e| panic!("tcId {}: {e}", case.id));
            assert_eq!((enc.len(), ct.len()), (32, 32 + 16), "tcId {}", case.id);
            sealed += 1;
        }
    }
    // The file's counts: 31 cases with an all-zero shared secret.
    assert_eq!((refused, sealed), (31, 487));
}

/// HMAC-SHA-256 (RFC 2104) over `skm_crypto::sha256`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&skm_crypto::sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = skm_crypto::sha256(&[pad(0x36), message.to_vec()].concat());
    skm_crypto::sha256(&[pad(0x5c), inner.to_vec()].concat())
}

/// RFC 9180 §4, §4.1 for DHKEM(X25519, HKDF-SHA256) (kem_id 0x0020).
fn dhkem_shared_secret(dh: &[u8], kem_context: &[u8]) -> [u8; 32] {
    let suite_id: &[u8] = b"KEM\x00\x20";
    // LabeledExtract("", "eae_prk", dh) = HKDF-Extract(salt = "", "HPKE-v1" ‖ suite_id ‖ label ‖ ikm)
    let eae_prk = hmac_sha256(b"", &[b"HPKE-v1", suite_id, b"eae_prk", dh].concat());
    // LabeledExpand(eae_prk, "shared_secret", kem_context, 32): one HKDF-Expand block,
    // info = I2OSP(32, 2) ‖ "HPKE-v1" ‖ suite_id ‖ label ‖ kem_context.
    let info = [&[0u8, 32][..], b"HPKE-v1", suite_id, b"shared_secret", kem_context].concat();
    hmac_sha256(&eae_prk, &[info, vec![0x01]].concat())
}

#[test]
fn the_transport_kem_computes_wycheproof_x25519() {
    type K = X25519HkdfSha256;
    let (mut matched, mut refused) = (0, 0);
    for case in cases() {
        let sk = <K as Kem>::PrivateKey::from_bytes(&case.private).unwrap();
        let pk_r = K::sk_to_pk(&sk).to_bytes();
        let enc = <K as Kem>::EncappedKey::from_bytes(&case.public).unwrap();
        let result = K::decap(&sk, None, &enc);
        if is_zero(&case.shared) {
            assert!(result.is_err(), "tcId {}: decapsulated an all-zero X25519 result", case.id);
            refused += 1;
            continue;
        }
        let got = result.unwrap_or_else(|e| panic!("tcId {}: {e:?}", case.id));
        let kem_context = [&case.public[..], &pk_r[..]].concat();
        assert_eq!(
            hex::encode(&got.0[..]),
            hex::encode(dhkem_shared_secret(&case.shared, &kem_context)),
            "tcId {}: X25519 disagrees with Wycheproof",
            case.id
        );
        matched += 1;
    }
    assert_eq!((matched, refused), (487, 31));
}

/// The HMAC above against RFC 4231 test case 2, so that a disagreement in
/// the KEM test points at X25519, not at this side's HMAC.
#[test]
fn hmac_construction_matches_rfc_4231() {
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
