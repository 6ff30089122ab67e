//! One function per fuzz target. Each says what its input is and what it
//! checks beyond "no panic".

use std::io::Write;
use std::sync::OnceLock;

use rustls_pki_types::CertificateDer;
use skm_crypto::record::SystemKeyring;
use skm_crypto::user::{self, Header};

use crate::{chain_fixture, config_dirs, scratch_dir, split, system_keyring, user_key};

/// `user_ciphertext`: `aad (u16-prefixed) | ciphertext`, under the golden
/// vectors' key. The header parser and decrypt must agree (decrypt
/// succeeds only on what parses), and what decrypts must re-encrypt under
/// its own header to a ciphertext that decrypts to the same plaintext.
pub fn user_ciphertext(data: &[u8]) {
    let parts = split(data, 1);
    let (aad, ciphertext) = (parts[0], parts[1]);
    let key = user_key();
    let header = Header::parse(ciphertext);
    let Ok(plaintext) = user::decrypt(&key, ciphertext, aad) else {
        return;
    };
    let header = header.expect("a ciphertext that decrypts has a header");
    assert_eq!(plaintext.len() + user::OVERHEAD, ciphertext.len());
    let again = user::encrypt(&key, header, &plaintext, aad).expect("re-encrypt");
    assert_eq!(Header::parse(&again), Ok(header));
    assert_eq!(user::decrypt(&key, &again, aad).expect("round trip")[..], plaintext[..]);
}

/// `record_open`: `record id | owner (both u16-prefixed) | sealed record`,
/// with system key versions 1 and 2 held. What opens must say its version,
/// and sealing the plaintext again must open again.
pub fn record_open(data: &[u8]) {
    let parts = split(data, 2);
    let (id, owner, sealed) = (parts[0], parts[1], parts[2]);
    let ring = system_keyring();
    let version = SystemKeyring::version_of(sealed);
    let Ok(plaintext) = ring.open(id, owner, sealed) else {
        return;
    };
    assert!(matches!(version, Ok(1 | 2)), "an opened record names a held version");
    let again = ring.seal(id, owner, &plaintext).expect("seal");
    assert_eq!(ring.open(id, owner, &again).expect("round trip")[..], plaintext[..]);
}

/// `proxy_v2`: the bytes a peer sends before TLS. The parser must consume
/// exactly the header (the rest stays for TLS), and a PROXY header with
/// addresses must re-encode to one that parses to the same addresses. A
/// UTF-8 input is also read as a `user_proxy_protocol_from` list.
pub fn proxy_v2(data: &[u8]) {
    use skm_runtime::proxy_protocol::{Command, MAX_PAYLOAD, TrustedProxies, encode_v2, read_header};

    let runtime = runtime();
    let mut stream = data;
    if let Ok(header) = runtime.block_on(read_header(&mut stream)) {
        let consumed = data.len() - stream.len();
        assert!((16..=16 + MAX_PAYLOAD).contains(&consumed), "consumed {consumed} bytes");
        assert_eq!(usize::from(u16::from_be_bytes([data[14], data[15]])) + 16, consumed);
        if let (Command::Proxy, Some(source), Some(destination)) = (header.command, header.source, header.destination) {
            let encoded = encode_v2(source, destination);
            let again = runtime.block_on(read_header(&mut &encoded[..])).expect("re-encoded header parses");
            assert_eq!((again.source, again.destination), (Some(source), Some(destination)));
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(proxies) = text.parse::<TrustedProxies>()
    {
        // What parsed prints as a list that parses to the same set.
        let printed = proxies.to_string();
        let again: TrustedProxies = printed.parse().expect("printed list parses");
        assert_eq!(again.to_string(), printed);
    }
}

/// `config`: `daemon selector | TOML`, written as the daemon's config
/// file beside real `ca.pem`, `cert.pem`, `key.pem`, then loaded and
/// validated by that daemon's own loader. Loading must answer, never
/// panic; a config that loads must load the same way twice.
pub fn config(data: &[u8]) {
    let [selector, text @ ..] = data else {
        return;
    };
    let (service, dir) = &config_dirs()[usize::from(*selector) % config_dirs().len()];
    let path = dir.join("config.toml");
    let mut file = std::fs::File::create(&path).expect("config file");
    file.write_all(text).expect("write config");
    drop(file);
    // The limits hold a HashMap (request size by path), whose Debug order
    // differs between two maps with the same entries: compare the pieces.
    let describe = |r: Result<String, String>| {
        r.map(|text| {
            let mut pieces: Vec<String> = text.split([',', '{', '}']).map(|p| p.trim().to_owned()).collect();
            pieces.sort();
            pieces
        })
    };
    let load = || match service {
        skm_runtime::Service::KmsApi => {
            kms_api::Config::load(&path).map(|c| format!("{:?}", c.user_limits)).map_err(|e| e.to_string())
        }
        skm_runtime::Service::RootKeyd => {
            root_keyd::Config::load(&path).map(|c| format!("{:?}", c.limits)).map_err(|e| e.to_string())
        }
        skm_runtime::Service::SystemKeyd => {
            system_keyd::Config::load(&path).map(|c| format!("{:?}", c.limits)).map_err(|e| e.to_string())
        }
    };
    let first = describe(load());
    if first.is_ok() {
        assert_eq!(first, describe(load()), "loading is deterministic");
    }
}

/// `pki_client_chain`: `count | DER (u16-prefixed) × count`, a chain as a
/// client presents it on the user port, checked against a keystore CA;
/// plus the leaf alone through [`skm_pki::client::leaf_info`] and the
/// registered-certificate check. A chain accepted must have a leaf that
/// parses with the same fingerprint.
pub fn pki_client_chain(data: &[u8]) {
    use skm_pki::client::{check_client_chain, check_registered, leaf_info};

    let fixture = chain_fixture();
    let [count, rest @ ..] = data else {
        return;
    };
    let count = usize::from(*count % 4);
    let parts = split(rest, count);
    let chain: Vec<CertificateDer<'_>> = parts[..count].iter().map(|p| CertificateDer::from(*p)).collect();
    let info = leaf_info(parts[count]);
    if let Some(info) = &info {
        assert_eq!(info.fingerprint_sha256.len(), 64);
    }
    if let Ok(accepted) = check_client_chain(&chain, fixture.ca.cert_der(), crate::now()) {
        let leaf = leaf_info(&chain[0]).expect("an accepted leaf parses");
        assert_eq!(leaf, accepted);
    }
    let leaf = CertificateDer::from(parts[count]);
    let registered = |fingerprint: &str| info.as_ref().is_some_and(|i| i.fingerprint_sha256 == fingerprint);
    let _ = check_registered(&leaf, registered, crate::now().as_secs() as i64);
}

/// `pkcs12`: a PKCS#12 file as `skm keystore issue-cert` writes and
/// reads it, opened with the fixture password. A file that opens gives a
/// chain whose leaf parses as a certificate.
pub fn pkcs12(data: &[u8]) {
    let Ok((chain, _key)) = skm_pki::client::read_pkcs12(data, crate::PKCS12_PASSWORD) else {
        return;
    };
    assert!(!chain.is_empty());
}

/// `audit_log`: the bytes of `audit.log`, verified as `skm audit verify`
/// verifies it, under the harness's system key (so seeds written by the
/// domain core verify). Verification must answer, never panic, and a
/// report can't name more entries than the file has lines.
pub fn audit_log(data: &[u8]) {
    let dir = scratch_dir().join("audit");
    std::fs::create_dir_all(&dir).expect("audit dir");
    std::fs::write(dir.join(kms_api::audit::FILE_NAME), data).expect("write log");
    if let Ok(report) = kms_api::audit::verify(&dir, &system_keyring()) {
        let lines = data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
        assert!(report.entries <= lines, "{} entries from {lines} lines", report.entries);
    }
}

/// `kms_requests`: one request message of the user or admin plane (the
/// input format of [`kms_api::fuzzing::Harness::call`]), decoded and run
/// through its gRPC handler and `Kms::execute` on the in-memory store.
/// The state (seeded keystores and keys, and whatever earlier inputs made)
/// lives for the process; every answer is a gRPC status, never a panic.
pub fn kms_requests(data: &[u8]) {
    let (runtime, harness) = harness();
    let _ = runtime.block_on(harness.call(data));
}

/// The harness of [`kms_requests`], made once per process.
pub fn harness() -> &'static (tokio::runtime::Runtime, kms_api::fuzzing::Harness) {
    static HARNESS: OnceLock<(tokio::runtime::Runtime, kms_api::fuzzing::Harness)> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = scratch_dir().join("kms");
        std::fs::create_dir_all(&dir).expect("kms dir");
        let harness = runtime.block_on(kms_api::fuzzing::Harness::new(&dir)).expect("harness");
        (runtime, harness)
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}
