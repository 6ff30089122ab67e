//! Signatures (and verifications, MACs, RSA decryptions) per second on one
//! core, for the figures in docs/adr/0001-rsa-on-aws-lc-rs.md and
//! docs/adr/0005-more-key-types-on-aws-lc-rs.md and
//! docs/adr/0006-ecdsa-p256-on-aws-lc-rs.md:
//!
//! ```text
//! cargo run --release -p skm-crypto --example sign_rate [seconds per figure] [rounds]
//! ```
//!
//! Every figure signs a 1 KiB message through `skm_crypto::asym`; the paired
//! rows also call RustCrypto's `rsa` 0.10 and `p256` 0.14 directly on the
//! same key (the implementations the ADRs chose against), alternating with aws-lc-rs so that
//! both see the same machine load. Then key generation times. Single-
//! threaded, so each figure is per core. Until criterion arrives this is the
//! measurement.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::Signer;
use rsa::{pkcs1v15, pss};
use sha2::Sha256;
use skm_crypto::asym::{KeyAlgorithm, Message, PrivateKey, SignatureAlgorithm};
use skm_crypto::mac::{MacAlgorithm, MacKey};
use skm_crypto::rsa_oaep::{DecryptingKey, OaepKeySize};

/// Runs `op` for about `budget`; operations per second.
fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    op(); // warm-up
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        op();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().map_or(1.0, |s| s.parse().expect("seconds per figure"));
    let rounds: usize = args.next().map_or(3, |s| s.parse().expect("rounds"));
    let budget = Duration::from_secs_f64(secs);
    let msg = vec![0x42u8; 1024];
    let digest = skm_crypto::sha256(&msg);

    let mut rows: Vec<(String, Box<dyn FnMut()>)> = Vec::new();
    for alg in KeyAlgorithm::ALL {
        for &sig_alg in alg.signature_algorithms() {
            let key = PrivateKey::generate(alg).unwrap();
            let public = key.public_key();
            let sig = key.sign(sig_alg, Message::Raw(&msg)).unwrap();
            let m = msg.clone();
            rows.push((
                format!("{} {} sign", alg.name(), sig_alg.name()),
                Box::new(move || {
                    black_box(key.sign(sig_alg, Message::Raw(black_box(&m))).unwrap());
                }),
            ));
            let m = msg.clone();
            rows.push((
                format!("{} {} verify", alg.name(), sig_alg.name()),
                Box::new(move || {
                    public.verify(sig_alg, Message::Raw(black_box(&m)), black_box(&sig)).unwrap();
                }),
            ));
        }
    }
    for alg in MacAlgorithm::ALL {
        let signer = MacKey::generate(alg).unwrap();
        let tag = signer.sign(&msg);
        let key = MacKey::from_bytes(alg, zeroize::Zeroizing::new(signer.danger_bytes().to_vec())).unwrap();
        let m = msg.clone();
        rows.push((format!("{} mac", alg.name()), Box::new(move || drop(black_box(signer.sign(black_box(&m)))))));
        let key = MacKey::from_bytes(alg, zeroize::Zeroizing::new(key.danger_bytes().to_vec())).unwrap();
        let m = msg.clone();
        rows.push((
            format!("{} verify", alg.name()),
            Box::new(move || key.verify(black_box(&m), black_box(&tag)).unwrap()),
        ));
    }
    for size in OaepKeySize::ALL {
        let key = DecryptingKey::generate(size).unwrap();
        let ct = key.public().encrypt(&[0x42; 32]).unwrap();
        rows.push((
            format!("{} decrypt 32 B", size.name()),
            Box::new(move || drop(black_box(key.decrypt(black_box(&ct)).unwrap()))),
        ));
    }
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    rows.push((
        "rsa-2048 rsa-pss-sha256 sign, 32-byte digest".into(),
        Box::new(move || {
            black_box(key.sign(SignatureAlgorithm::RsaPssSha256, Message::Digest(black_box(&digest))).unwrap());
        }),
    ));

    // The same key on RustCrypto `rsa` 0.10 (blinded, constant-time).
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let reference = rsa::PrivateKey::from_pkcs8_der(key.danger_pkcs8()).unwrap();
    let pss_key = pss::SigningKey::<Sha256>::new(reference.clone());
    let pkcs1_key = pkcs1v15::SigningKey::<Sha256>::new(reference);

    println!("{:<48} ops/s per core, {rounds} rounds of {secs} s", "operation (1 KiB message)");
    for (name, op) in &mut rows {
        let figures: Vec<String> = (0..rounds).map(|_| format!("{:>9.0}", rate(budget, &mut *op))).collect();
        println!("{name:<48} {}", figures.join(" "));
    }

    // aws-lc-rs against `rsa` 0.10 on the same key, in alternating 50 ms
    // slices, so that both see the same load from anything else running.
    println!("\n{:<48} ops/s per core, aws-lc-rs / rsa 0.10 = ratio", "rsa-2048 sign, paired");
    for sig_alg in [SignatureAlgorithm::RsaPssSha256, SignatureAlgorithm::RsaPkcs1Sha256] {
        for _ in 0..rounds {
            let (ours, theirs) = paired(
                budget,
                || drop(black_box(key.sign(sig_alg, Message::Raw(black_box(&msg))).unwrap())),
                || match sig_alg {
                    SignatureAlgorithm::RsaPssSha256 => drop(black_box(pss_key.sign(black_box(&msg)))),
                    _ => drop(black_box(pkcs1_key.sign(black_box(&msg)))),
                },
            );
            println!("{:<48} {ours:>9.0} / {theirs:>5.0} = {:.1}", sig_alg.name(), ours / theirs);
        }
    }

    // ECDSA P-256: aws-lc-rs against `p256` 0.14 (its backend before,
    // docs/adr/0006-ecdsa-p256-on-aws-lc-rs.md) on the same key, paired the
    // same way.
    println!("\n{:<48} ops/s per core, aws-lc-rs / p256 0.14 = ratio", "ecdsa-p256, paired");
    {
        use p256::ecdsa::signature::{Signer as _, Verifier as _};
        use p256::pkcs8::DecodePrivateKey as _;
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let public = key.public_key();
        let reference = p256::ecdsa::SigningKey::from_pkcs8_der(key.danger_pkcs8()).unwrap();
        let reference_public = *reference.verifying_key();
        let sig_alg = SignatureAlgorithm::EcdsaSha256;
        let sig = key.sign(sig_alg, Message::Raw(&msg)).unwrap();
        let reference_sig = p256::ecdsa::DerSignature::from_bytes(&sig).unwrap();
        for _ in 0..rounds {
            let (ours, theirs) = paired(
                budget,
                || drop(black_box(key.sign(sig_alg, Message::Raw(black_box(&msg))).unwrap())),
                || {
                    black_box::<p256::ecdsa::DerSignature>(reference.sign(black_box(&msg)));
                },
            );
            println!("{:<48} {ours:>9.0} / {theirs:>5.0} = {:.1}", "sign", ours / theirs);
        }
        for _ in 0..rounds {
            let (ours, theirs) = paired(
                budget,
                || public.verify(sig_alg, Message::Raw(black_box(&msg)), black_box(&sig)).unwrap(),
                || reference_public.verify(black_box(&msg), black_box(&reference_sig)).unwrap(),
            );
            println!("{:<48} {ours:>9.0} / {theirs:>5.0} = {:.1}", "verify", ours / theirs);
        }
    }

    // Key generation: random primes, so the spread is wide; min / median / max.
    println!("\n{:<48} ms, min / median / max of {KEYGENS}", "key generation");
    for alg in KeyAlgorithm::ALL {
        let ms = keygen_ms(|| drop(black_box(PrivateKey::generate(alg).unwrap())));
        println!("{:<48} {ms}", alg.name());
    }
    for size in OaepKeySize::ALL {
        let ms = keygen_ms(|| drop(black_box(DecryptingKey::generate(size).unwrap())));
        println!("{:<48} {ms}", size.name());
    }
    let ms = keygen_ms(|| drop(black_box(rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap())));
    println!("{:<48} {ms}", "rsa-2048 [rsa 0.10]");
}

/// Runs `a` and `b` in alternating 50 ms slices, `budget` each in total;
/// their operations per second.
fn paired(budget: Duration, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let slice = Duration::from_millis(50);
    let (mut na, mut ta, mut nb, mut tb) = (0u64, Duration::ZERO, 0u64, Duration::ZERO);
    while ta < budget || tb < budget {
        for (op, n, t) in [(&mut a as &mut dyn FnMut(), &mut na, &mut ta), (&mut b, &mut nb, &mut tb)] {
            let start = Instant::now();
            while start.elapsed() < slice {
                op();
                *n += 1;
            }
            *t += start.elapsed();
        }
    }
    (na as f64 / ta.as_secs_f64(), nb as f64 / tb.as_secs_f64())
}

const KEYGENS: usize = 5;

fn keygen_ms(mut op: impl FnMut()) -> String {
    let mut ms: Vec<f64> = (0..KEYGENS)
        .map(|_| {
            let start = Instant::now();
            op();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    format!("{:.1} / {:.1} / {:.1}", ms[0], ms[KEYGENS / 2], ms[KEYGENS - 1])
}
