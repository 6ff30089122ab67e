//! Bring your own key through the `skm` CLI against `skm dev`: key
//! material made by OpenSSL, wrapped by `openssl pkeyutl` and by Python
//! `cryptography` (RSAES-OAEP-SHA-256, and OAEP + AES-KWP for RSA keys) or
//! by `skm key import` itself, imported, then checked from outside: an
//! imported AES key's ciphertext decrypts locally in the documented format
//! with the same key bytes, an imported signing key's signatures verify
//! with the original public key, an imported HMAC key's tags match
//! Python's. The refusals of the import are checked in the domain core's
//! tests (expiry needs its clock) and here where a user meets them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use skm_e2e::{DevProcess, openssl_verify, python};

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_owned()
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().expect("run openssl (scripts/test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Runs a Python script with `cryptography` on `args`.
fn py(script: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Wraps the PKCS#8 of a PEM private key (argv[1]) to the PEM public key
/// argv[2] as argv[4] says: "oaep" or "kwp" (OAEP of a fresh AES-256 key,
/// then RFC 5649 key wrap with padding); writes argv[3].
const PY_WRAP: &str = r#"
import os, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
public = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
if sys.argv[4] == "oaep":
    wrapped = public.encrypt(der, oaep)
else:
    kek = os.urandom(32)
    wrapped = public.encrypt(kek, oaep) + aes_key_wrap_with_padding(kek, der)
open(sys.argv[3], "wb").write(wrapped)
"#;

/// Decrypts an SKM ciphertext (base64, argv[2]) with the raw AES-256 key in
/// file argv[1], by the documented format: 0x01 | key id (16) | version
/// (4, BE) | nonce (12) | AES-256-GCM-SIV ciphertext+tag, AAD = the first
/// 21 bytes ‖ caller AAD (argv[3]).
const PY_DECRYPT: &str = r#"
import base64, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
key = open(sys.argv[1], "rb").read()
ct = base64.b64decode(sys.argv[2])
assert ct[0] == 1, "format 1"
sys.stdout.buffer.write(AESGCMSIV(key).decrypt(ct[21:33], ct[33:], ct[:21] + sys.argv[3].encode()))
"#;

const PY_HMAC: &str = r#"
import base64, hashlib, hmac, sys
key = open(sys.argv[1], "rb").read()
print(base64.b64encode(hmac.new(key, sys.argv[2].encode(), hashlib.sha384).digest()).decode())
"#;

fn created(dev: &DevProcess, name: &str, key_type: &str) -> String {
    let key = dev.ok(&["key", "create", "apps", name, "--type", key_type, "--origin", "external"], b"");
    let shown = dev.ok(&["--json", "key", "show", &key], b"");
    assert!(shown.contains("\"state\":\"pending-import\"") && shown.contains("\"origin\":\"external\""), "{shown}");
    assert!(shown.contains("\"current_version\":0") && shown.contains("\"versions\":[]"), "{shown}");
    key
}

fn parameters(dev: &DevProcess, key: &str, algorithm: &str, dir: &Path) -> (String, String) {
    let (public, token) = (path(dir, &format!("{key}.pub.pem")), path(dir, &format!("{key}.token")));
    let out = dev.ok(
        &["--json", "key", "import-parameters", key, "--wrapping-algorithm", algorithm]
            .into_iter()
            .chain(["--public-key-out", &public, "--token-out", &token])
            .collect::<Vec<_>>(),
        b"",
    );
    assert!(out.contains("\"parameters_valid_to\""), "{out}");
    assert_eq!(std::fs::read(&token).unwrap().len(), 32);
    (public, token)
}

#[test]
fn byok_with_openssl_python_and_the_cli() {
    let dev = DevProcess::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    dev.ok(&["keystore", "create", "apps", "--allow-ip", "127.0.0.0/8"], b"");

    // AES-256: random bytes from OpenSSL, wrapped by `openssl pkeyutl`.
    let aes = created(&dev, "aes", "aes-256");
    let waiting = dev.run(&["encrypt", &aes], b"x");
    assert!(String::from_utf8_lossy(&waiting.stderr).contains("has no key material yet"), "{waiting:?}");
    let key_file = path(dir, "aes.key");
    openssl(&["rand", "-out", &key_file, "32"]);
    let (public, token) = parameters(&dev, &aes, "rsaes-oaep-sha256", dir);
    let wrapped = path(dir, "aes.wrapped");
    openssl(
        &["pkeyutl", "-encrypt", "-pubin", "-inkey", &public, "-in", &key_file, "-out", &wrapped]
            .into_iter()
            .chain(["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256"])
            .chain(["-pkeyopt", "rsa_mgf1_md:sha256"])
            .collect::<Vec<_>>(),
    );
    let imported = dev.ok(&["--json", "key", "import", &aes, "--wrapped", &wrapped, "--token", &token], b"");
    assert!(imported.contains("\"state\":\"enabled\"") && imported.contains("\"current_version\":1"), "{imported}");
    let again = dev.run(&["key", "import", &aes, "--wrapped", &wrapped, "--token", &token], b"");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no import parameters outstanding"), "{again:?}");
    let ct = dev.ok(&["encrypt", &aes, "--aad", "order-7"], b"imported");
    assert_eq!(py(PY_DECRYPT, &[&key_file, &ct, "order-7"]), b"imported", "decrypted locally with the same key");
    let rotate = dev.run(&["key", "rotate", &aes], b"");
    assert!(String::from_utf8_lossy(&rotate.stderr).contains("only by importing new material"), "{rotate:?}");
    // New material is the next version; the old ciphertext still decrypts.
    let second = path(dir, "aes2.key");
    openssl(&["rand", "-out", &second, "32"]);
    let v2 = dev.ok(&["--json", "key", "import", &aes, "--material", &second], b"");
    assert!(v2.contains("\"current_version\":2"), "{v2}");
    assert_eq!(dev.ok(&["decrypt", &aes, "--aad", "order-7"], ct.as_bytes()), "imported");
    let ct2 = dev.ok(&["encrypt", &aes], b"second");
    assert_eq!(py(PY_DECRYPT, &[&second, &ct2, ""]), b"second");

    // Signing keys from OpenSSL: Ed25519 and P-384 by `skm key import`
    // (PEM and DER), P-256 wrapped by Python with OAEP, RSA-3072 by Python
    // with OAEP + AES-KWP. Each signature verifies with the original key.
    let message = b"release-2.0.0.tar.gz";
    let ed = path(dir, "ed.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &ed]);
    let p384 = path(dir, "p384.pem");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", &p384]);
    let p384_der = path(dir, "p384.der");
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &p384, "-outform", "DER", "-out", &p384_der]);
    let p256 = path(dir, "p256.pem");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &p256]);
    let rsa = path(dir, "rsa.pem");
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072", "-out", &rsa]);
    for (key_type, file, original, how, algorithm) in [
        ("ed25519", &ed, &ed, "cli", "ed25519"),
        ("ecdsa-p384", &p384_der, &p384, "cli", "ecdsa-sha384"),
        ("ecdsa-p256", &p256, &p256, "oaep", "ecdsa-sha256"),
        ("rsa-3072", &rsa, &rsa, "kwp", "rsa-pss-sha256"),
    ] {
        let key = created(&dev, key_type, key_type);
        if how == "cli" {
            dev.ok(&["key", "import", &key, "--material", file, "--wrapping-key-spec", "rsa-4096"], b"");
        } else {
            let wrapping = if how == "oaep" { "rsaes-oaep-sha256" } else { "rsa-aes-key-wrap-sha256" };
            let (public, token) = parameters(&dev, &key, wrapping, dir);
            let wrapped = path(dir, &format!("{key_type}.wrapped"));
            py(PY_WRAP, &[file, &public, &wrapped, how]);
            dev.ok(&["key", "import", &key, "--wrapped", &wrapped, "--token", &token], b"");
        }
        let original_public = String::from_utf8(openssl(&["pkey", "-in", original, "-pubout"])).unwrap();
        assert_eq!(dev.ok(&["public-key", &key], b"") + "\n", original_public, "{key_type}: the same public key");
        let signature = B64.decode(dev.ok(&["sign", &key, "--algorithm", algorithm], message)).unwrap();
        assert!(openssl_verify(&original_public, message, &signature, algorithm).unwrap(), "{key_type}");
    }

    // HMAC-SHA-384: raw key bytes; SKM's tags are Python's.
    let hmac = created(&dev, "hmac", "hmac-sha384");
    let hmac_key = path(dir, "hmac.key");
    openssl(&["rand", "-out", &hmac_key, "48"]);
    dev.ok(&["key", "import", &hmac, "--material", &hmac_key], b"");
    let tag = dev.ok(&["mac", &hmac], b"to be authenticated");
    assert_eq!(String::from_utf8(py(PY_HMAC, &[&hmac_key, "to be authenticated"])).unwrap().trim(), tag);

    // Refusals a user meets: material of another type or size, a PKCS#1
    // file, a key of SKM's own origin. Nothing is stored: still waiting.
    let p256_key = created(&dev, "p256-wrong", "ecdsa-p256");
    let wrong = dev.run(&["key", "import", &p256_key, "--material", &ed], b"");
    assert_eq!(wrong.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("must be an unencrypted PKCS#8 DER ecdsa-p256 private key"), "{stderr}");
    let short = dev.run(&["key", "import", &hmac, "--material", &key_file], b"");
    assert!(String::from_utf8_lossy(&short.stderr).contains("48..=128 raw bytes; got 32 bytes"), "{short:?}");
    let pkcs1 = path(dir, "rsa1.pem");
    openssl(&["rsa", "-in", &rsa, "-traditional", "-out", &pkcs1]);
    let traditional = dev.run(&["key", "import", &p256_key, "--material", &pkcs1], b"");
    assert_eq!(traditional.status.code(), Some(2), "{traditional:?}");
    assert!(String::from_utf8_lossy(&traditional.stderr).contains("openssl pkcs8 -topk8 -nocrypt"), "{traditional:?}");
    let shown = dev.ok(&["--json", "key", "show", &p256_key], b"");
    assert!(shown.contains("\"state\":\"pending-import\""), "refused imports stored nothing: {shown}");
    let own = dev.ok(&["key", "create", "apps", "own", "--type", "aes-256"], b"");
    let skm_origin = dev.run(&["key", "import", &own, "--material", &key_file], b"");
    assert!(String::from_utf8_lossy(&skm_origin.stderr).contains("origin skm"), "{skm_origin:?}");

    // Every step is in the audit log.
    let audit = dev.ok(&["--json", "audit", "list"], b"");
    for op in ["\"GetParametersForImport\"", "\"ImportKeyMaterial\""] {
        assert!(audit.contains(op), "the audit log names {op}");
    }
    let list = dev.ok(&["key", "list", "apps"], b"");
    assert!(list.lines().any(|l| l.contains("p256-wrong") && l.contains("pending-import")), "{list}");
}
