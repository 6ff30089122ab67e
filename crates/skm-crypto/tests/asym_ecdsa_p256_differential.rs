//! Differential test of SKM's ECDSA P-256 (aws-lc-rs,
//! docs/adr/0006-ecdsa-p256-on-aws-lc-rs.md) against RustCrypto's `p256`,
//! its backend before: each reads the other's PKCS#8 and SPKI (so keys
//! stored by an SKM on `p256` load on aws-lc-rs), and signatures made by one
//! verify with the other, raw and pre-hashed; a changed message or
//! signature is refused by both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use skm_crypto::VerifyError;
use skm_crypto::asym::{KeyAlgorithm, Message, PrivateKey, SignatureAlgorithm};

const ALG: SignatureAlgorithm = SignatureAlgorithm::EcdsaSha256;

fn messages() -> [Vec<u8>; 3] {
    [Vec::new(), b"differential".to_vec(), (0..4096u32).map(|i| (i * 7) as u8).collect()]
}

/// Both directions for one key pair held by both libraries.
fn agree(ours: &PrivateKey, reference: &SigningKey) -> usize {
    let public = ours.public_key();
    let reference_public = VerifyingKey::from_public_key_der(public.spki_der()).unwrap();
    assert_eq!(&reference_public, reference.verifying_key());
    assert_eq!(reference_public.to_public_key_der().unwrap().as_bytes(), public.spki_der(), "the same SPKI bytes");
    let mut checks = 0;
    for msg in messages() {
        let digest = skm_crypto::sha256(&msg);
        // aws-lc-rs signs, `p256` verifies.
        for ours_sig in [ours.sign(ALG, Message::Raw(&msg)).unwrap(), ours.sign(ALG, Message::Digest(&digest)).unwrap()]
        {
            let sig = DerSignature::from_bytes(&ours_sig).unwrap();
            reference_public.verify(&msg, &sig).unwrap();
            reference_public.verify_prehash(&digest, &sig).unwrap();
            let mut other = msg.clone();
            other.push(1);
            assert!(reference_public.verify(&other, &sig).is_err());
            checks += 1;
        }
        // `p256` signs (RFC 6979), SKM verifies.
        let raw: DerSignature = reference.sign(&msg);
        let prehashed: DerSignature = reference.sign_prehash(&digest).unwrap();
        for sig in [raw.as_bytes().to_vec(), prehashed.as_bytes().to_vec()] {
            assert_eq!(public.verify(ALG, Message::Raw(&msg), &sig), Ok(()));
            assert_eq!(public.verify(ALG, Message::Digest(&digest), &sig), Ok(()));
            let mut flipped = sig.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert_eq!(public.verify(ALG, Message::Raw(&msg), &flipped), Err(VerifyError));
            checks += 1;
        }
    }
    checks
}

#[test]
fn keys_made_by_skm_on_aws_lc_rs_work_with_p256() {
    let mut checks = 0;
    for _ in 0..4 {
        let ours = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let reference = SigningKey::from_pkcs8_der(ours.danger_pkcs8()).unwrap();
        checks += agree(&ours, &reference);
    }
    assert_eq!(checks, 4 * 3 * 4);
}

#[test]
fn keys_stored_by_skm_on_p256_load_on_aws_lc_rs() {
    let mut checks = 0;
    for seed in 1..=4u8 {
        let reference = SigningKey::from_slice(&[seed; 32]).unwrap();
        let pkcs8 = reference.to_pkcs8_der().unwrap();
        let ours = PrivateKey::from_pkcs8(KeyAlgorithm::EcdsaP256, pkcs8.as_bytes()).unwrap();
        checks += agree(&ours, &reference);
    }
    assert_eq!(checks, 4 * 3 * 4);
}

#[test]
fn a_p256_spki_in_another_encoding_is_not_a_key() {
    let reference = SigningKey::from_slice(&[9; 32]).unwrap();
    // A compressed point is a valid SPKI, but not the canonical form SKM stores.
    let point = reference.verifying_key().to_sec1_point(true);
    let mut spki = vec![0x30, 0x39, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08];
    spki.extend([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x22, 0x00]);
    spki.extend_from_slice(point.as_bytes());
    assert!(skm_crypto::asym::PublicKey::from_spki_der(KeyAlgorithm::EcdsaP256, &spki).is_err());
}
