//! ML-DSA beyond verification vectors: Wycheproof's seeded ML-DSA-65
//! signing vectors, and a differential test against a second, independent
//! implementation (RustCrypto `ml-dsa`) for all three parameter sets.
//!
//! aws-lc-rs signs hedged (fresh randomness), so SKM's signatures can't be
//! compared byte for byte with deterministic vectors; instead the vectors'
//! signatures must verify under SKM's key loaded from the vector's PKCS#8,
//! RustCrypto must reproduce them exactly from the seed (so it is a faithful
//! oracle), and then RustCrypto must accept SKM's own signatures and SKM
//! RustCrypto's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ml_dsa::{EncodedSignature, EncodedVerifyingKey, MlDsa44, MlDsa65, MlDsa87, MlDsaParams, Seed, Signature};
use serde::Deserialize;
use skm_crypto::VerifyError;
use skm_crypto::asym::{AsymError, KeyAlgorithm, Message, PrivateKey, PublicKey, SignatureAlgorithm};

#[derive(Deserialize)]
struct File {
    #[serde(rename = "numberOfTests")]
    number_of_tests: usize,
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    #[serde(rename = "privateSeed")]
    private_seed: String,
    #[serde(rename = "privateKeyPkcs8", default)]
    private_key_pkcs8: Option<String>,
    #[serde(rename = "publicKey", default)]
    public_key: Option<String>,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    /// Absent in the external-μ cases, which give only `mu`.
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    ctx: Option<String>,
    #[serde(default)]
    rnd: Option<String>,
    /// FIPS 204's μ of the case (every valid case gives it).
    #[serde(default)]
    mu: Option<String>,
    sig: String,
    result: String,
    flags: Vec<String>,
}

/// PKCS#8 v1 of an ML-DSA-65 seed of any length (RFC 9881 seed form:
/// `privateKey` holds `[0] IMPLICIT OCTET STRING`), so that wrong-length
/// seeds can be offered to SKM's parser too.
fn pkcs8_of_seed(seed: &[u8]) -> Vec<u8> {
    let n = u8::try_from(seed.len()).unwrap();
    let mut der = vec![0x30, n + 20, 0x02, 0x01, 0x00];
    der.extend([0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12]);
    der.extend([0x04, n + 2, 0x80, n]);
    der.extend(seed);
    der
}

fn rustcrypto_sig<P: MlDsaParams>(bytes: &[u8]) -> Option<Signature<P>> {
    Signature::decode(&EncodedSignature::<P>::try_from(bytes).ok()?)
}

fn rustcrypto_vk<P: MlDsaParams>(spki: &[u8]) -> ml_dsa::VerifyingKey<P> {
    // The SPKI is a 22-byte header (SEQUENCE, AlgorithmIdentifier, BIT
    // STRING) followed by the raw public key.
    let raw = &spki[22..];
    ml_dsa::VerifyingKey::decode(&EncodedVerifyingKey::<P>::try_from(raw).unwrap())
}

#[test]
fn wycheproof_ml_dsa_65_seeded_signing() {
    let file: File = serde_json::from_str(include_str!("wycheproof/mldsa_65_sign_seed_test.json")).unwrap();
    let (mut reproduced, mut refused_keys, mut skipped, mut external_mu) = (0, 0, 0, 0);
    for group in &file.groups {
        let seed = hex::decode(&group.private_seed).unwrap();
        let pkcs8 = group.private_key_pkcs8.as_deref().filter(|h| !h.is_empty()).map(|h| hex::decode(h).unwrap());
        if seed.len() != 32 {
            assert!(pkcs8.is_none());
            for case in &group.tests {
                assert_eq!(case.result, "invalid", "case {}", case.id);
            }
            let err = PrivateKey::from_pkcs8(KeyAlgorithm::MlDsa65, &pkcs8_of_seed(&seed)).map(|_| ());
            assert_eq!(err, Err(AsymError::Malformed), "a {}-byte seed", seed.len());
            refused_keys += group.tests.len();
            continue;
        }
        // Where the vector gives the PKCS#8, it is the seed form SKM reads.
        if let Some(given) = &pkcs8 {
            assert_eq!(given, &pkcs8_of_seed(&seed));
        }
        let pkcs8 = pkcs8_of_seed(&seed);
        let key = PrivateKey::from_pkcs8(KeyAlgorithm::MlDsa65, &pkcs8).unwrap();
        let public = key.public_key();
        let raw_public = hex::decode(group.public_key.as_ref().unwrap()).unwrap();
        assert_eq!(&public.spki_der()[22..], &raw_public[..], "the seed expands to the vector's public key");
        let oracle = ml_dsa::SigningKey::<MlDsa65>::from_seed(&Seed::try_from(&seed[..]).unwrap());
        for case in &group.tests {
            let with_context = case.ctx.as_deref().is_some_and(|c| !c.is_empty());
            let internal = case.flags.iter().any(|f| f == "Internal");
            // External μ: the vector's signature verifies over its μ, SKM's
            // own signature of that μ does too, and where the case is pure
            // ML-DSA of a message with the empty context, SKM computes the
            // same μ and its μ signature is the message's signature.
            if let (Some(mu), "valid") = (case.mu.as_deref().map(|m| hex::decode(m).unwrap()), case.result.as_str()) {
                let sig = hex::decode(&case.sig).unwrap();
                assert_eq!(
                    public.verify(SignatureAlgorithm::MlDsa, Message::Mu(&mu), &sig),
                    Ok(()),
                    "case {}",
                    case.id
                );
                let ours = key.sign(SignatureAlgorithm::MlDsa, Message::Mu(&mu)).unwrap();
                assert_eq!(
                    public.verify(SignatureAlgorithm::MlDsa, Message::Mu(&mu), &ours),
                    Ok(()),
                    "case {}",
                    case.id
                );
                assert!(
                    oracle
                        .expanded_key()
                        .verifying_key()
                        .verify_mu(&mu[..].try_into().unwrap(), &rustcrypto_sig(&ours).unwrap())
                );
                if let (Some(msg), false, false) = (case.msg.as_deref(), with_context, internal) {
                    let msg = hex::decode(msg).unwrap();
                    assert_eq!(public.external_mu(&msg).unwrap()[..], mu[..], "case {}", case.id);
                    assert_eq!(public.verify(SignatureAlgorithm::MlDsa, Message::Raw(&msg), &ours), Ok(()));
                }
                external_mu += 1;
            }
            let Some(msg) = case.msg.as_deref().map(|m| hex::decode(m).unwrap()) else {
                skipped += 1;
                continue;
            };
            if with_context || internal || case.rnd.is_some() || case.result != "valid" {
                // SKM signs pure ML-DSA with the empty context and fresh
                // randomness only; these are other modes' cases.
                skipped += 1;
                continue;
            }
            let sig = hex::decode(&case.sig).unwrap();
            // The vector's signature verifies under SKM's key …
            assert_eq!(public.verify(SignatureAlgorithm::MlDsa, Message::Raw(&msg), &sig), Ok(()), "case {}", case.id);
            // … the oracle reproduces it exactly …
            let again = oracle.expanded_key().sign_deterministic(&msg, b"").unwrap();
            assert_eq!(&again.encode()[..], &sig[..], "case {}: RustCrypto differs from the vector", case.id);
            // … and accepts SKM's own (hedged) signature.
            let ours = key.sign(SignatureAlgorithm::MlDsa, Message::Raw(&msg)).unwrap();
            assert_ne!(ours, sig, "hedged signing draws fresh randomness");
            let ours = rustcrypto_sig::<MlDsa65>(&ours).unwrap();
            assert!(rustcrypto_vk::<MlDsa65>(public.spki_der()).verify_with_context(&msg, b"", &ours));
            reproduced += 1;
        }
    }
    assert_eq!(reproduced + refused_keys + skipped, file.number_of_tests);
    assert_eq!(external_mu, 101, "every valid case's μ");
    assert!(
        reproduced >= 70 && refused_keys == 3,
        "{reproduced} reproduced, {refused_keys} refused, {skipped} skipped"
    );
}

fn differential<P: MlDsaParams>(alg: KeyAlgorithm) {
    for _ in 0..3 {
        let key = PrivateKey::generate(alg).unwrap();
        let pkcs8 = key.danger_pkcs8();
        // SKM stores the seed form: the oracle expands the same key from it.
        assert_eq!(pkcs8.len(), 54, "{}: PKCS#8 in seed form", alg.name());
        let oracle = ml_dsa::SigningKey::<P>::from_seed(&Seed::try_from(&pkcs8[22..]).unwrap());
        let vk = rustcrypto_vk::<P>(key.public().spki_der());
        assert_eq!(&vk.encode()[..], &oracle.expanded_key().verifying_key().encode()[..]);
        for msg in [&b""[..], b"message", &[0xa5; 4096]] {
            let ours = key.sign(SignatureAlgorithm::MlDsa, Message::Raw(msg)).unwrap();
            assert!(vk.verify_with_context(msg, b"", &rustcrypto_sig::<P>(&ours).unwrap()), "{}", alg.name());
            let theirs = oracle.expanded_key().sign_deterministic(msg, b"").unwrap().encode().to_vec();
            assert_eq!(key.public().verify(SignatureAlgorithm::MlDsa, Message::Raw(msg), &theirs), Ok(()));
            // Neither accepts the other's signature over another message.
            assert!(!vk.verify_with_context(b"other", b"", &rustcrypto_sig::<P>(&ours).unwrap()));
            assert_eq!(
                key.public().verify(SignatureAlgorithm::MlDsa, Message::Raw(b"other"), &theirs),
                Err(VerifyError)
            );
            // A non-empty context is another domain: SKM's signature is not one.
            assert!(!vk.verify_with_context(msg, b"ctx", &rustcrypto_sig::<P>(&ours).unwrap()));
        }
        let loaded = PublicKey::from_spki_der(alg, key.public().spki_der()).unwrap();
        assert_eq!(&loaded, key.public());
        // External μ: SKM's μ is RustCrypto's, its μ signature verifies as
        // the message's in both, and the forms are refused where they don't fit.
        for msg in [&b""[..], b"message", &[0x5a; 100_000]] {
            let mu = key.public().external_mu(msg).unwrap();
            let theirs = vk
                .compute_mu(
                    |h| {
                        shake::Update::update(h, msg);
                        Ok(())
                    },
                    b"",
                )
                .unwrap();
            assert_eq!(mu[..], theirs[..], "{}: the same μ", alg.name());
            let ours = key.sign(SignatureAlgorithm::MlDsa, Message::Mu(&mu)).unwrap();
            assert_eq!(key.public().verify(SignatureAlgorithm::MlDsa, Message::Raw(msg), &ours), Ok(()));
            assert!(vk.verify_with_context(msg, b"", &rustcrypto_sig::<P>(&ours).unwrap()));
            let mut other = mu;
            other[0] ^= 1;
            assert_eq!(key.public().verify(SignatureAlgorithm::MlDsa, Message::Mu(&other), &ours), Err(VerifyError));
        }
        assert_eq!(key.sign(SignatureAlgorithm::MlDsa, Message::Mu(&[0; 63])), Err(AsymError::MuLength(63)));
    }
    let p256 = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let refused = p256.sign(SignatureAlgorithm::EcdsaSha256, Message::Mu(&[0; 64]));
    assert_eq!(refused, Err(AsymError::MuNotSupported("ecdsa-p256")));
    assert_eq!(p256.public().external_mu(b"m"), Err(AsymError::MuNotSupported("ecdsa-p256")));
}

#[test]
fn rustcrypto_and_skm_agree_on_ml_dsa_44() {
    differential::<MlDsa44>(KeyAlgorithm::MlDsa44);
}

#[test]
fn rustcrypto_and_skm_agree_on_ml_dsa_65() {
    differential::<MlDsa65>(KeyAlgorithm::MlDsa65);
}

#[test]
fn rustcrypto_and_skm_agree_on_ml_dsa_87() {
    differential::<MlDsa87>(KeyAlgorithm::MlDsa87);
}
