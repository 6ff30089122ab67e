//! Independent checks with the `openssl` command line (scripts/test installs
//! it): OpenSSL verifies SKM's signatures, raw and digest-signed, against
//! the exported SPKI PEM; and SKM loads OpenSSL's PKCS#8 keys and verifies
//! OpenSSL's signatures; and OpenSSL encrypts to SKM's RSA-OAEP keys and
//! decrypts what they encrypt. ML-DSA is not in OpenSSL 3.0 (Debian 12's):
//! its independent check is RustCrypto `ml-dsa` (tests/ml_dsa.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use skm_crypto::DecryptError;
use skm_crypto::asym::{KeyAlgorithm, Message, PrivateKey, PublicKey, SignatureAlgorithm};
use skm_crypto::rsa_oaep::{DecryptingKey, EncryptingKey, OaepKeySize};

const PSS_OPTS: [&str; 6] =
    ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32", "-sigopt", "rsa_mgf1_md:sha256"];

/// Runs `openssl args…` in `dir`; whether it exited 0.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is needed (scripts/test installs it)");
    if !out.status.success() {
        eprintln!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    out.status.success()
}

/// Whether OpenSSL accepts `sig` over the message in `dir/msg` with the key
/// in `dir/pub.pem`.
fn openssl_verifies(dir: &Path, alg: SignatureAlgorithm, sig: &[u8]) -> bool {
    std::fs::write(dir.join("sig"), sig).unwrap();
    match alg {
        SignatureAlgorithm::Ed25519 => openssl(
            dir,
            &["pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg", "-sigfile", "sig"],
        ),
        SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::RsaPkcs1Sha256 => {
            openssl(dir, &["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig", "msg"])
        }
        SignatureAlgorithm::EcdsaSha384 => {
            openssl(dir, &["dgst", "-sha384", "-verify", "pub.pem", "-signature", "sig", "msg"])
        }
        SignatureAlgorithm::RsaPssSha256 => {
            let mut args = vec!["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig"];
            args.extend(PSS_OPTS);
            args.push("msg");
            openssl(dir, &args)
        }
        SignatureAlgorithm::MlDsa => panic!("OpenSSL 3.0 has no ML-DSA"),
    }
}

fn in_openssl_3_0(alg: KeyAlgorithm) -> bool {
    !matches!(alg, KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87)
}

fn keys() -> &'static [PrivateKey] {
    static KEYS: OnceLock<Vec<PrivateKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        KeyAlgorithm::ALL
            .into_iter()
            .filter(|a| in_openssl_3_0(*a))
            .map(|alg| PrivateKey::generate(alg).unwrap())
            .collect()
    })
}

#[test]
fn openssl_verifies_skm_signatures() {
    let mut verified = 0;
    for key in keys() {
        let dir = tempfile::tempdir().unwrap();
        let alg = key.algorithm();
        std::fs::write(dir.path().join("pub.pem"), key.public_key().to_pem()).unwrap();
        // OpenSSL reads the PEM back to the same SPKI.
        assert!(openssl(dir.path(), &["pkey", "-pubin", "-in", "pub.pem", "-outform", "DER", "-out", "pub.der"]));
        assert_eq!(std::fs::read(dir.path().join("pub.der")).unwrap(), key.public_key().spki_der());

        for msg in [&b""[..], b"the quick brown fox", &[0x5a; 4096]] {
            std::fs::write(dir.path().join("msg"), msg).unwrap();
            for &sig_alg in alg.signature_algorithms() {
                if msg.is_empty() && sig_alg == SignatureAlgorithm::Ed25519 {
                    // OpenSSL 3.0's `pkeyutl -rawin` can't read an empty file
                    // ("Could not allocate 0 bytes"); Wycheproof covers it.
                    continue;
                }
                let sig = key.sign(sig_alg, Message::Raw(msg)).unwrap();
                assert!(openssl_verifies(dir.path(), sig_alg, &sig), "{} raw", sig_alg.name());
                verified += 1;
                if alg != KeyAlgorithm::Ed25519 {
                    let digest = sig_alg.digest_of(msg).unwrap();
                    let sig = key.sign(sig_alg, Message::Digest(&digest)).unwrap();
                    assert!(openssl_verifies(dir.path(), sig_alg, &sig), "{} digest", sig_alg.name());
                    verified += 1;
                }
                // And OpenSSL is not just saying yes.
                let mut bad = key.sign(sig_alg, Message::Raw(msg)).unwrap();
                let last = bad.len() - 1;
                bad[last] ^= 0x01;
                assert!(!openssl_verifies(dir.path(), sig_alg, &bad), "{} tampered", sig_alg.name());
            }
        }
    }
    // Ed25519 (2 messages), ECDSA P-256 and P-384 (3 × raw and digest),
    // RSA (3 sizes × 2 paddings × 3 × raw and digest).
    assert_eq!(verified, 2 + 2 * 3 * 2 + 3 * 3 * 4);
}

#[test]
fn skm_loads_openssl_keys_and_verifies_openssl_signatures() {
    let cases: [(KeyAlgorithm, &[&str]); 6] = [
        (KeyAlgorithm::Ed25519, &["-algorithm", "ed25519"]),
        (KeyAlgorithm::EcdsaP256, &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        (KeyAlgorithm::EcdsaP384, &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        (KeyAlgorithm::Rsa2048, &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        (KeyAlgorithm::Rsa3072, &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"]),
        (KeyAlgorithm::Rsa4096, &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"]),
    ];
    for (alg, genpkey) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut args = vec!["genpkey"];
        args.extend(genpkey);
        args.extend(["-out", "key.pem"]);
        assert!(openssl(d, &args));
        // OpenSSL 3.0's DER output of `genpkey` and `pkey` is the traditional
        // format (PKCS#1, SEC1) for RSA and EC keys; `pkcs8 -topk8` is PKCS#8.
        assert!(openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der"]));
        assert!(openssl(d, &["pkey", "-in", "key.pem", "-pubout", "-outform", "DER", "-out", "pub.der"]));
        let key = PrivateKey::from_pkcs8(alg, &std::fs::read(d.join("key.der")).unwrap()).unwrap();
        let spki = std::fs::read(d.join("pub.der")).unwrap();
        assert_eq!(key.public_key().spki_der(), &spki[..]);
        let public = PublicKey::from_spki_der(alg, &spki).unwrap();

        let msg = b"signed by openssl";
        std::fs::write(d.join("msg"), msg).unwrap();
        for &sig_alg in alg.signature_algorithms() {
            let mut args = match sig_alg {
                SignatureAlgorithm::Ed25519 => {
                    vec!["pkeyutl", "-sign", "-inkey", "key.pem", "-rawin", "-in", "msg", "-out", "sig"]
                }
                SignatureAlgorithm::EcdsaSha384 => vec!["dgst", "-sha384", "-sign", "key.pem", "-out", "sig"],
                _ => vec!["dgst", "-sha256", "-sign", "key.pem", "-out", "sig"],
            };
            if sig_alg == SignatureAlgorithm::RsaPssSha256 {
                args.extend(PSS_OPTS);
            }
            if sig_alg != SignatureAlgorithm::Ed25519 {
                args.push("msg");
            }
            assert!(openssl(d, &args));
            let sig = std::fs::read(d.join("sig")).unwrap();
            assert_eq!(public.verify(sig_alg, Message::Raw(msg), &sig), Ok(()), "{}", sig_alg.name());
            if alg != KeyAlgorithm::Ed25519 {
                let digest = sig_alg.digest_of(msg).unwrap();
                assert_eq!(public.verify(sig_alg, Message::Digest(&digest), &sig), Ok(()), "{}", sig_alg.name());
            }
            // SKM's signature with OpenSSL's key verifies too.
            let ours = key.sign(sig_alg, Message::Raw(msg)).unwrap();
            assert!(openssl_verifies_with(d, "pub.der", sig_alg, &ours), "{}", sig_alg.name());
        }
    }
}

/// Like [`openssl_verifies`] with a DER public key file.
fn openssl_verifies_with(dir: &Path, der: &str, alg: SignatureAlgorithm, sig: &[u8]) -> bool {
    assert!(openssl(dir, &["pkey", "-pubin", "-inform", "DER", "-in", der, "-out", "pub.pem"]));
    openssl_verifies(dir, alg, sig)
}

/// PSS with another salt length is not SKM's encoding: both sides refuse it.
#[test]
fn pss_salt_length_is_exactly_32() {
    let key = keys().iter().find(|k| k.algorithm() == KeyAlgorithm::Rsa2048).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("key.der"), key.danger_pkcs8()).unwrap();
    std::fs::write(d.join("msg"), b"m").unwrap();
    let public = key.public_key();
    for salt in ["20", "64", "max"] {
        let saltopt = format!("rsa_pss_saltlen:{salt}");
        let args = [
            "dgst",
            "-sha256",
            "-sign",
            "key.der",
            "-keyform",
            "DER",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            &saltopt,
            "-out",
            "sig",
            "msg",
        ];
        assert!(openssl(d, &args));
        let sig = std::fs::read(d.join("sig")).unwrap();
        assert!(public.verify(SignatureAlgorithm::RsaPssSha256, Message::Raw(b"m"), &sig).is_err(), "salt {salt}");
    }
}

const OAEP: [&str; 6] =
    ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"];

#[test]
fn openssl_encrypts_to_the_exported_key_and_decrypts_skms_ciphertexts() {
    for size in OaepKeySize::ALL {
        let key = DecryptingKey::generate(size).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("pub.pem"), key.public().to_pem()).unwrap();
        std::fs::write(d.join("key.der"), key.danger_pkcs8()).unwrap();
        for msg in [&b""[..], b"a data key of 32 bytes, really..", &vec![0x5a; size.max_plaintext()]] {
            std::fs::write(d.join("msg"), msg).unwrap();
            let mut args = vec!["pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "msg", "-out", "ct"];
            args.extend(OAEP);
            if msg.is_empty() {
                // OpenSSL 3.0's pkeyutl can't read an empty file; the unit
                // tests and Wycheproof cover empty plaintexts.
                continue;
            }
            assert!(openssl(d, &args), "{}", size.name());
            let ct = std::fs::read(d.join("ct")).unwrap();
            assert_eq!(ct.len(), size.modulus_len());
            assert_eq!(&key.decrypt(&ct).unwrap()[..], msg, "{}", size.name());
            // OpenSSL's padding with SHA-1 (its default) is not SKM's.
            let sha1 = [
                "pkeyutl",
                "-encrypt",
                "-pubin",
                "-inkey",
                "pub.pem",
                "-in",
                "msg",
                "-out",
                "ct1",
                "-pkeyopt",
                "rsa_padding_mode:oaep",
            ];
            assert!(openssl(d, &sha1));
            assert_eq!(key.decrypt(&std::fs::read(d.join("ct1")).unwrap()).map(|_| ()), Err(DecryptError));
            // And SKM's public-key encryption is what OpenSSL decrypts.
            std::fs::write(d.join("ours"), key.public().encrypt(msg).unwrap()).unwrap();
            let mut args =
                vec!["pkeyutl", "-decrypt", "-inkey", "key.der", "-keyform", "DER", "-in", "ours", "-out", "back"];
            args.extend(OAEP);
            assert!(openssl(d, &args));
            assert_eq!(std::fs::read(d.join("back")).unwrap(), msg);
        }
        // The PEM OpenSSL reads is the SPKI SKM parses back.
        assert!(openssl(d, &["pkey", "-pubin", "-in", "pub.pem", "-outform", "DER", "-out", "pub.der"]));
        let der = std::fs::read(d.join("pub.der")).unwrap();
        assert_eq!(EncryptingKey::from_spki_der(size, &der).unwrap().spki_der(), key.public().spki_der());
    }
}
