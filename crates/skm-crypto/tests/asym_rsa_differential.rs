//! Differential test of SKM's RSA (aws-lc-rs, docs/adr/0001-rsa-on-aws-lc-rs.md)
//! against RustCrypto's `rsa` 0.10, for every RSA size and both paddings:
//! signatures made by one verify with the other, raw and pre-hashed, and
//! PKCS#1 v1.5 signatures (deterministic) are byte-for-byte equal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{pkcs1v15, pss};
use sha2::Sha256;
use skm_crypto::asym::{KeyAlgorithm, Message, PrivateKey, SignatureAlgorithm};

const PSS: SignatureAlgorithm = SignatureAlgorithm::RsaPssSha256;
const PKCS1: SignatureAlgorithm = SignatureAlgorithm::RsaPkcs1Sha256;

fn messages() -> [Vec<u8>; 3] {
    [Vec::new(), b"differential".to_vec(), (0..4096u32).map(|i| (i * 7) as u8).collect()]
}

#[test]
fn aws_lc_rs_and_rustcrypto_rsa_agree() {
    let mut checks = 0;
    for (alg, bits) in [(KeyAlgorithm::Rsa2048, 2048), (KeyAlgorithm::Rsa3072, 3072), (KeyAlgorithm::Rsa4096, 4096)] {
        let ours = PrivateKey::generate(alg).unwrap();
        let public = ours.public_key();
        // The reference reads the same PKCS#8 and SPKI.
        let reference = rsa::PrivateKey::from_pkcs8_der(ours.danger_pkcs8()).unwrap();
        let reference_public = rsa::PublicKey::from_public_key_der(public.spki_der()).unwrap();
        assert_eq!(reference.to_public_key(), reference_public);
        assert_eq!(reference_public.to_public_key_der().unwrap().as_bytes(), public.spki_der());
        assert_eq!(usize::try_from(reference_public.n().bit_width()).unwrap(), bits);

        let pss_signer = pss::SigningKey::<Sha256>::new(reference.clone());
        let pss_verifier = pss::VerifyingKey::<Sha256>::new(reference_public.clone());
        let pkcs1_signer = pkcs1v15::SigningKey::<Sha256>::new(reference.clone());
        let pkcs1_verifier = pkcs1v15::VerifyingKey::<Sha256>::new(reference_public.clone());

        for msg in messages() {
            let digest = skm_crypto::sha256(&msg);

            // aws-lc-rs signs, `rsa` verifies.
            for ours_sig in
                [ours.sign(PSS, Message::Raw(&msg)).unwrap(), ours.sign(PSS, Message::Digest(&digest)).unwrap()]
            {
                let sig = pss::Signature::try_from(&ours_sig[..]).unwrap();
                pss_verifier.verify(&msg, &sig).unwrap();
                pss_verifier.verify_prehash(&digest, &sig).unwrap();
                checks += 1;
            }
            for ours_sig in
                [ours.sign(PKCS1, Message::Raw(&msg)).unwrap(), ours.sign(PKCS1, Message::Digest(&digest)).unwrap()]
            {
                let sig = pkcs1v15::Signature::try_from(&ours_sig[..]).unwrap();
                pkcs1_verifier.verify(&msg, &sig).unwrap();
                pkcs1_verifier.verify_prehash(&digest, &sig).unwrap();
                // Deterministic padding: both libraries make the same bytes.
                assert_eq!(pkcs1_signer.sign(&msg).to_vec(), ours_sig);
                checks += 1;
            }

            // `rsa` signs, SKM verifies.
            let reference_sigs = [
                (PSS, pss_signer.sign(&msg).to_vec()),
                (PSS, pss_signer.sign_prehash(&digest).unwrap().to_vec()),
                (PKCS1, pkcs1_signer.sign(&msg).to_vec()),
                (PKCS1, pkcs1_signer.sign_prehash(&digest).unwrap().to_vec()),
            ];
            for (sig_alg, sig) in reference_sigs {
                assert_eq!(sig.len(), bits / 8);
                assert_eq!(public.verify(sig_alg, Message::Raw(&msg), &sig), Ok(()), "{}", sig_alg.name());
                assert_eq!(public.verify(sig_alg, Message::Digest(&digest), &sig), Ok(()), "{}", sig_alg.name());
                checks += 1;
            }
        }
    }
    assert_eq!(checks, 3 * 3 * (2 + 2 + 4));
}

/// Encodings close to SKM's but not SKM's: PSS with another salt length and
/// PKCS#1 v1.5 without the DigestInfo prefix. SKM's verify refuses them.
#[test]
fn near_miss_encodings_are_refused() {
    let ours = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let public = ours.public_key();
    let reference = rsa::PrivateKey::from_pkcs8_der(ours.danger_pkcs8()).unwrap();
    let msg = b"near miss";
    let digest = skm_crypto::sha256(msg);
    for salt_len in [0, 20, 31, 33, 64] {
        let sig = pss::SigningKey::<Sha256>::new_with_salt_len(reference.clone(), salt_len).sign(msg).to_vec();
        assert!(public.verify(PSS, Message::Raw(msg), &sig).is_err(), "salt length {salt_len}");
    }
    let unprefixed = pkcs1v15::SigningKey::<Sha256>::new_unprefixed(reference).sign_prehash(&digest).unwrap().to_vec();
    assert!(public.verify(PKCS1, Message::Raw(msg), &unprefixed).is_err());
    assert!(public.verify(PKCS1, Message::Digest(&digest), &unprefixed).is_err());
}
