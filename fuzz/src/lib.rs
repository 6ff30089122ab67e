//! The bodies of SKM's fuzz targets (`fuzz_targets/*.rs` are one line
//! each) and the fixtures they share with the seed writer
//! (`src/bin/make_corpus.rs`).
//!
//! Each target feeds untrusted bytes to one parser or entry point of SKM
//! and checks what must hold for *any* input: no panic, no hang, no
//! unbounded allocation, and where a round trip exists, that it holds
//! (what parses re-encodes to the same meaning, what opens was sealed).
//! Errors are expected answers, not findings.
//!
//! Fixtures are fixed (keys, trust domain, passwords) so that checked-in
//! seeds stay meaningful from one process to the next.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed fixture or a broken property must crash the fuzzer"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls_pki_types::{CertificateDer, UnixTime};
use skm_crypto::Secret32;
use skm_crypto::record::SystemKeyring;

pub mod targets;

/// The key of user ciphertext targets: the golden vectors' key 00..1f
/// (`crates/skm-crypto/tests/golden/`).
pub fn user_key() -> Secret32 {
    let mut raw: Vec<u8> = (0u8..32).collect();
    Secret32::from_slice_wiping(&mut raw).expect("32 bytes")
}

/// The system keyring of the record and audit targets: versions 1 and 2,
/// 1 active, version 1 being the key of [`kms_api::fuzzing::Harness`]
/// (so audit lines written by the harness verify).
pub fn system_keyring() -> Arc<SystemKeyring> {
    let mut one = [7u8; 32];
    let mut two = [9u8; 32];
    let keys = BTreeMap::from([(1, Secret32::from_array_wiping(&mut one)), (2, Secret32::from_array_wiping(&mut two))]);
    Arc::new(SystemKeyring::new(1, keys).expect("version 1 is present"))
}

/// Trust domain of the config target's certificates.
pub const TRUST_DOMAIN: &str = "skm.local";

/// Password of the PKCS#12 target's files.
pub const PKCS12_PASSWORD: &str = "fuzz-password";

/// A fixed time for certificate checks: 2026-12-01 00:00:00 UTC.
pub fn now() -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_796_083_200))
}

/// A scratch directory for the life of the process, in RAM where there is
/// one (`/dev/shm`), so targets that must go through a file stay fast.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let builder = tempfile::Builder::new().prefix("skm-fuzz-").tempdir_in(if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        });
        builder.expect("scratch directory")
    })
    .path()
}

/// A directory per daemon holding `ca.pem`, `cert.pem` and `key.pem` of a
/// deployment CA for [`TRUST_DOMAIN`], so that configs naming those files
/// (as `deploy/config/*.toml` do, relatively) get past loading their TLS
/// identity to the checks that follow.
pub fn config_dirs() -> &'static [(skm_runtime::Service, PathBuf)] {
    static DIRS: OnceLock<Vec<(skm_runtime::Service, PathBuf)>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let ca = skm_pki::CertificateAuthority::generate(TRUST_DOMAIN, "SKM fuzz CA", 3650).expect("CA");
        skm_runtime::Service::ALL
            .iter()
            .map(|service| {
                let dir = scratch_dir().join(service.name());
                std::fs::create_dir_all(&dir).expect("config dir");
                let issued = ca.issue_service(*service, &[], 3650).expect("service certificate");
                std::fs::write(dir.join("ca.pem"), ca.cert_pem()).expect("ca.pem");
                std::fs::write(dir.join("cert.pem"), &issued.cert_pem).expect("cert.pem");
                std::fs::write(dir.join("key.pem"), &issued.key_pem).expect("key.pem");
                (*service, dir)
            })
            .collect()
    })
}

/// The keystore CA of the client-chain target, with a client certificate
/// it issued, one it issued that expired, and a certificate of another CA.
pub struct ChainFixture {
    /// The keystore CA.
    pub ca: skm_pki::client::KeystoreCa,
    /// A valid client certificate of `ca` (DER), as issued by kms-api.
    pub client: CertificateDer<'static>,
    /// The PKCS#12 file `client` was issued in.
    pub client_pkcs12: Vec<u8>,
    /// A client certificate of `ca` whose validity ended before [`now`].
    pub expired: CertificateDer<'static>,
    /// A client certificate of another keystore's CA.
    pub foreign: CertificateDer<'static>,
}

/// The fixture of the client-chain target, made once per process.
pub fn chain_fixture() -> &'static ChainFixture {
    static FIXTURE: OnceLock<ChainFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = skm_pki::client::KeystoreCa::generate("fuzz", 3650).expect("keystore CA");
        let issued = ca.issue_client("client", 3650, PKCS12_PASSWORD).expect("client certificate");
        let now = now().as_secs() as i64;
        let expired = ca
            .issue_client_with_validity("old", now - 20 * 86_400, now - 10 * 86_400, PKCS12_PASSWORD)
            .expect("expired certificate");
        let other = skm_pki::client::KeystoreCa::generate("other", 3650).expect("other CA");
        let foreign = other.issue_client("client", 3650, PKCS12_PASSWORD).expect("foreign certificate");
        ChainFixture {
            client: CertificateDer::from(issued.cert_der.clone()),
            client_pkcs12: issued.pkcs12.clone(),
            expired: CertificateDer::from(expired.cert_der.clone()),
            foreign: CertificateDer::from(foreign.cert_der.clone()),
            ca,
        }
    })
}

/// Splits an input into length-prefixed parts (a `u16` big-endian length,
/// then that many bytes; a short last part takes what is left).
pub fn split(mut data: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(parts);
    for _ in 0..parts {
        let (len, rest) = match data {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (0, &[][..]),
        };
        let (part, rest) = rest.split_at(len.min(rest.len()));
        out.push(part);
        data = rest;
    }
    out.push(data);
    out
}

/// The inverse of [`split`], for seeds.
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let (last, first) = parts.split_last().expect("at least one part");
    let mut out = Vec::new();
    for part in first {
        out.extend_from_slice(&u16::try_from(part.len()).expect("part under 64 KiB").to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(last);
    out
}
