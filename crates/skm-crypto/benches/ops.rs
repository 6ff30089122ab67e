//! Raw rates of the operations kms-api serves, on one core, through the
//! same `skm_crypto` functions kms-api calls: the crypto ceilings that the
//! service figures of `skm-bench` are compared with (docs/BENCHMARKS.md).
//!
//! ```text
//! CARGO_TARGET_DIR=target/bench cargo bench -p skm-crypto --bench ops
//! ```

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use skm_crypto::asym::{KeyAlgorithm, Message, PrivateKey};
use skm_crypto::record::SystemKeyring;
use skm_crypto::user::{self, Header};
use skm_crypto::{Id, Secret32};

/// Payload sizes of the encrypt and decrypt figures.
const SIZES: [usize; 2] = [1024, 32 * 1024];

/// Size of the messages that are signed (as in skm-bench).
const SIGN_MESSAGE: usize = 1024;

fn aes(c: &mut Criterion) {
    let key = Secret32::generate().unwrap();
    let header = Header { key_id: Id::generate().unwrap(), version: 1 };
    let mut group = c.benchmark_group("aes-256-gcm-siv");
    for size in SIZES {
        let plaintext = vec![0x5a; size];
        let ciphertext = user::encrypt(&key, header, &plaintext, b"").unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encrypt", size), &plaintext, |b, p| {
            b.iter(|| user::encrypt(&key, header, black_box(p), b"").unwrap())
        });
        group.bench_with_input(BenchmarkId::new("decrypt", size), &ciphertext, |b, ct| {
            b.iter(|| user::decrypt(&key, black_box(ct), b"").unwrap())
        });
    }
    group.finish();
}

fn data_key(c: &mut Criterion) {
    let key = Secret32::generate().unwrap();
    let header = Header { key_id: Id::generate().unwrap(), version: 1 };
    c.bench_function("data-key/generate+encrypt", |b| {
        b.iter(|| {
            let data_key = Secret32::generate().unwrap();
            user::encrypt(&key, header, black_box(data_key.danger_expose()), b"").unwrap()
        })
    });
}

fn records(c: &mut Criterion) {
    let keyring = SystemKeyring::new(1, BTreeMap::from([(1, Secret32::generate().unwrap())])).unwrap();
    // About the size of a sealed AES key record.
    let plaintext = vec![0x11; 256];
    let sealed = keyring.seal(b"key/0123456789abcdef", b"owner", &plaintext).unwrap();
    let mut group = c.benchmark_group("record");
    group.bench_function("seal/256", |b| {
        b.iter(|| keyring.seal(b"key/0123456789abcdef", b"owner", black_box(&plaintext)).unwrap())
    });
    group.bench_function("open/256", |b| {
        b.iter(|| keyring.open(b"key/0123456789abcdef", b"owner", black_box(&sealed)).unwrap())
    });
    group.finish();
}

fn signatures(c: &mut Criterion) {
    let message = vec![0x42; SIGN_MESSAGE];
    let mut group = c.benchmark_group("sign-1KiB");
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let key = PrivateKey::generate(alg).unwrap();
        let sig_alg = alg.default_signature_algorithm();
        group.bench_function(BenchmarkId::new("sign", alg.name()), |b| {
            b.iter(|| key.sign(sig_alg, Message::Raw(black_box(&message))).unwrap())
        });
        let public = key.public_key();
        let signature = key.sign(sig_alg, Message::Raw(&message)).unwrap();
        group.bench_function(BenchmarkId::new("verify", alg.name()), |b| {
            b.iter(|| public.verify(sig_alg, Message::Raw(black_box(&message)), black_box(&signature)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, aes, data_key, records, signatures);
criterion_main!(benches);
