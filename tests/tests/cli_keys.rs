//! Every key type and secrets through the `skm` CLI against `skm dev`,
//! signatures checked by OpenSSL with the exported public key (ML-DSA, which
//! Debian 12's OpenSSL 3.0 lacks, by skm-crypto's verifier from the exported
//! SPKI alone; its independent check is RustCrypto's in skm-crypto).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use skm_crypto::asym::{KeyAlgorithm, Message, PublicKey, SignatureAlgorithm};
use skm_e2e::{DevProcess, openssl_verify};

/// `openssl pkeyutl -encrypt` with RSAES-OAEP-SHA-256 (MGF1-SHA-256) to a
/// PEM public key.
fn openssl_oaep_encrypt(pem: &str, message: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pub.pem"), pem).unwrap();
    std::fs::write(dir.path().join("msg"), message).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "msg", "-out", "ct"])
        .args(["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(dir.path().join("ct")).unwrap()
}

#[test]
fn cli_round_trips_for_every_key_type() {
    let dev = DevProcess::start().unwrap();
    dev.ok(&["keystore", "create", "apps", "--allow-ip", "127.0.0.0/8"], b"");

    // Symmetric: encrypt/decrypt, data key, rotation, re-encrypt.
    let aes = dev.ok(&["key", "create", "apps", "aes", "--type", "aes-256"], b"");
    let ct = dev.ok(&["encrypt", &aes], b"symmetric");
    assert_eq!(dev.ok(&["decrypt", &aes], ct.as_bytes()), "symmetric");
    let lines: Vec<String> = dev.ok(&["data-key", &aes], b"").lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(B64.decode(&lines[0]).unwrap().len(), 32);
    let unwrapped = dev.run(&["decrypt", &aes], lines[1].as_bytes());
    assert_eq!(unwrapped.stdout, B64.decode(&lines[0]).unwrap());
    assert_eq!(dev.ok(&["data-key", &aes, "--without-plaintext"], b"").lines().count(), 1);
    dev.ok(&["key", "rotate", &aes], b"");
    let re = dev.ok(&["--json", "re-encrypt", &aes], ct.as_bytes());
    assert!(re.contains("\"key_version\":2") && re.contains("\"source_key_version\":1"), "{re}");

    // Asymmetric: every type, default algorithm and the alternatives.
    let cases = [
        ("ed25519", vec!["ed25519"]),
        ("ecdsa-p256", vec!["ecdsa-sha256"]),
        ("rsa-2048", vec!["rsa-pss-sha256", "rsa-pkcs1-sha256"]),
        ("rsa-3072", vec!["rsa-pss-sha256", "rsa-pkcs1-sha256"]),
        ("rsa-4096", vec!["rsa-pss-sha256", "rsa-pkcs1-sha256"]),
        ("ecdsa-p384", vec!["ecdsa-sha384"]),
    ];
    let message = b"release-1.2.3.tar.gz";
    for (key_type, algorithms) in cases {
        let key = dev.ok(&["key", "create", "apps", key_type, "--type", key_type], b"");
        let pem = dev.ok(&["public-key", &key], b"") + "\n";
        for alg in algorithms {
            let sig = dev.ok(&["sign", &key, "--algorithm", alg], message);
            let raw = B64.decode(&sig).unwrap();
            assert!(openssl_verify(&pem, message, &raw, alg).unwrap(), "{key_type} {alg}");
            dev.ok(&["verify", &key, "--signature", &sig, "--algorithm", alg], message);
            let bad = dev.run(&["verify", &key, "--signature", &sig, "--algorithm", alg], b"tampered");
            assert_eq!(bad.status.code(), Some(1), "invalid signature exits 1");
            if key_type != "ed25519" {
                let big = vec![7u8; 100_000];
                let sig = dev.ok(&["sign", &key, "--algorithm", alg, "--digest"], &big);
                assert!(
                    openssl_verify(&pem, &big, &B64.decode(&sig).unwrap(), alg).unwrap(),
                    "{key_type} {alg} digest"
                );
                dev.ok(&["verify", &key, "--signature", &sig, "--algorithm", alg, "--digest"], &big);
            }
        }
        let der = dev.run(&["public-key", &key, "--der"], b"");
        assert_eq!(der.stdout[0], 0x30, "DER SEQUENCE");
    }

    // ML-DSA: sign and verify through the CLI, the signature checked from
    // the exported SPKI alone; digests are refused.
    for (key_type, alg, sig_len) in [
        ("ml-dsa-44", KeyAlgorithm::MlDsa44, 2420),
        ("ml-dsa-65", KeyAlgorithm::MlDsa65, 3309),
        ("ml-dsa-87", KeyAlgorithm::MlDsa87, 4627),
    ] {
        let key = dev.ok(&["key", "create", "apps", key_type, "--type", key_type], b"");
        let out = dev.ok(&["--json", "sign", &key], message);
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["algorithm"], "ml-dsa", "{out}");
        let sig = out["signature"].as_str().unwrap().to_owned();
        let raw = B64.decode(&sig).unwrap();
        assert_eq!(raw.len(), sig_len);
        let der = dev.run(&["public-key", &key, "--der"], b"").stdout;
        let public = PublicKey::from_spki_der(alg, &der).unwrap();
        assert_eq!(public.verify(SignatureAlgorithm::MlDsa, Message::Raw(message), &raw), Ok(()));
        dev.ok(&["verify", &key, "--signature", &sig], message);
        assert_eq!(dev.run(&["verify", &key, "--signature", &sig], b"tampered").status.code(), Some(1));
        let digest = dev.run(&["sign", &key, "--digest"], message);
        assert_eq!(digest.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&digest.stderr);
        assert!(stderr.contains(&format!("{key_type} keys sign messages, not digests")), "{stderr}");
        // External μ: a message of any size is signed by sending 64 bytes;
        // the signature is the message's own, checked from the SPKI alone.
        let big = vec![0x3c_u8; 200_000];
        let sig = dev.ok(&["sign", &key, "--external-mu"], &big);
        let raw = B64.decode(&sig).unwrap();
        assert_eq!(public.verify(SignatureAlgorithm::MlDsa, Message::Raw(&big), &raw), Ok(()), "{key_type} mu");
        dev.ok(&["verify", &key, "--signature", &sig, "--external-mu"], &big);
        dev.ok(&["verify", &key, "--signature", &sig, "--external-mu", "--version", "1"], &big);
        let tampered = dev.run(&["verify", &key, "--signature", &sig, "--external-mu"], b"tampered");
        assert_eq!(tampered.status.code(), Some(1));
    }
    let ed = dev.ok(&["key", "create", "apps", "ed-mu", "--type", "ed25519"], b"");
    let no_mu = dev.run(&["sign", &ed, "--external-mu"], message);
    assert_eq!(no_mu.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_mu.stderr).contains("ed25519 keys take no external mu"), "{no_mu:?}");

    // HMAC: tags are the full hash output, deterministic, checked by the
    // server against every retained version; rotation keeps old tags valid.
    for (key_type, tag_len) in [("hmac-sha256", 32), ("hmac-sha384", 48), ("hmac-sha512", 64)] {
        let key = dev.ok(&["key", "create", "apps", key_type, "--type", key_type], b"");
        let shown = dev.ok(&["--json", "key", "show", &key], b"");
        assert!(shown.contains(&format!("\"{key_type}\"")), "{shown}");
        let tag = dev.ok(&["mac", &key], message);
        assert_eq!(B64.decode(&tag).unwrap().len(), tag_len);
        assert_eq!(dev.ok(&["mac", &key], message), tag, "HMAC is deterministic");
        assert!(dev.ok(&["verify-mac", &key, "--mac", &tag], message).starts_with("valid (version 1)"));
        assert_eq!(dev.run(&["verify-mac", &key, "--mac", &tag], b"tampered").status.code(), Some(1));
        dev.ok(&["key", "rotate", &key], b"");
        let json = dev.ok(&["--json", "mac", &key], message);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!((json["key_version"].as_u64(), json["algorithm"].as_str()), (Some(2), Some(key_type)), "{json}");
        assert_ne!(json["mac"].as_str(), Some(tag.as_str()));
        assert!(dev.ok(&["verify-mac", &key, "--mac", &tag], message).starts_with("valid (version 1)"));
        let pinned = dev.run(&["verify-mac", &key, "--mac", &tag, "--version", "2"], message);
        assert_eq!(pinned.status.code(), Some(1), "a version-1 tag is not version 2's");
        dev.ok(&["key", "disable", &key], b"");
        let disabled = dev.run(&["mac", &key], message);
        assert!(String::from_utf8_lossy(&disabled.stderr).contains("is disabled"), "{disabled:?}");
        dev.ok(&["key", "schedule-deletion", &key, "--days", "7"], b"");
        dev.ok(&["key", "cancel-deletion", &key], b"");
    }
    // RSA encryption: OpenSSL encrypts to the exported public key, only SKM
    // decrypts (naming the algorithm, and the version after a rotation).
    for (key_type, modulus_len) in [("rsa-oaep-2048", 256), ("rsa-oaep-3072", 384), ("rsa-oaep-4096", 512)] {
        let key = dev.ok(&["key", "create", "apps", key_type, "--type", key_type], b"");
        let pem = dev.ok(&["public-key", &key], b"") + "\n";
        let ct = openssl_oaep_encrypt(&pem, b"a wrapped data key");
        assert_eq!(ct.len(), modulus_len);
        let ct = B64.encode(&ct);
        let plain = dev.run(&["decrypt", &key, "--algorithm", "rsaes-oaep-sha256"], ct.as_bytes());
        assert_eq!((plain.status.code(), &plain.stdout[..]), (Some(0), &b"a wrapped data key"[..]), "{plain:?}");
        let without = dev.run(&["decrypt", &key], ct.as_bytes());
        assert!(String::from_utf8_lossy(&without.stderr).contains("needs an aes-256 key"), "{without:?}");
        dev.ok(&["key", "rotate", &key], b"");
        let stale = dev.run(&["decrypt", &key, "--algorithm", "rsaes-oaep-sha256"], ct.as_bytes());
        assert!(String::from_utf8_lossy(&stale.stderr).contains("decryption failed"), "{stale:?}");
        let json =
            dev.ok(&["--json", "decrypt", &key, "--algorithm", "rsaes-oaep-sha256", "--version", "1"], ct.as_bytes());
        assert!(json.contains("\"key_version\":1"), "{json}");
        let usage = dev.run(&["decrypt", &key, "--version", "1"], ct.as_bytes());
        assert_eq!(usage.status.code(), Some(2), "--version without the algorithm is a usage error");
    }

    let audit = dev.ok(&["--json", "audit", "list"], b"");
    for op in ["\"GenerateMac\"", "\"VerifyMac\""] {
        assert!(audit.contains(op), "the audit log names {op}");
    }

    // Secrets: create from stdin, update from a file, get versions.
    let secret = dev.ok(&["secret", "create", "apps", "db-password"], b"hunter2");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "correct horse").unwrap();
    assert_eq!(dev.ok(&["secret", "update", &secret, "--value-file", file.path().to_str().unwrap()], b""), "2");
    assert_eq!(dev.ok(&["secret", "get", &secret], b""), "correct horse");
    assert_eq!(dev.ok(&["secret", "get", &secret, "--version", "1"], b""), "hunter2");
    // A secret that keeps two versions: the oldest goes, describe says so.
    dev.ok(&["keystore", "create", "kept", "--allow-ip", "127.0.0.0/8"], b"");
    let kept = dev.ok(&["secret", "create", "kept", "token", "--max-versions", "2"], b"t1");
    for value in [&b"t2"[..], b"t3"] {
        dev.ok(&["secret", "update", &kept], value);
    }
    assert_eq!(dev.ok(&["secret", "get", &kept, "--version", "2"], b""), "t2");
    let gone = dev.run(&["secret", "get", &kept, "--version", "1"], b"");
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NOT_FOUND"), "{gone:?}");
    let shown = dev.ok(&["key", "show", &kept], b"");
    assert!(shown.contains("max_versions:     2") && shown.contains("versions:         2@"), "{shown}");
    assert!(dev.ok(&["--json", "key", "show", &kept], b"").contains("\"max_versions\":2"));

    // Management views and lifecycle.
    let list = dev.ok(&["key", "list", "apps"], b"");
    // aes, 5 + 1 signing keys, 3 ML-DSA, ed-mu, 3 HMAC, 3 RSA-OAEP, the secret.
    assert_eq!(list.lines().count(), 18, "{list}");
    let show = dev.ok(&["--json", "key", "show", &aes], b"");
    assert!(show.contains("\"current_version\":2") && show.contains("\"state\":\"enabled\""), "{show}");
    dev.ok(&["key", "disable", &aes], b"");
    let refused = dev.run(&["encrypt", &aes], b"x");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("FAILED_PRECONDITION"));
    dev.ok(&["key", "enable", &aes], b"");
    let pending = dev.ok(&["--json", "key", "schedule-deletion", &aes, "--days", "7"], b"");
    assert!(pending.contains("pending-deletion"), "{pending}");
    dev.ok(&["key", "cancel-deletion", &aes], b"");
    dev.ok(&["key", "enable", &aes], b"");
    dev.ok(&["key", "update", &aes, "--rotation-period", "30"], b"");
    assert!(dev.ok(&["--json", "key", "show", &aes], b"").contains("\"rotation_period_days\":30"));
    let bad_days = dev.run(&["key", "schedule-deletion", &aes, "--days", "3"], b"");
    assert_eq!(bad_days.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_days.stderr).contains("7..=30"));
}

#[test]
fn cli_exit_codes_and_conventions() {
    let mut dev = DevProcess::start().unwrap();
    let status = dev.ok(&["status"], b"");
    assert!(status.contains("unsealed"), "{status}");
    let ks = dev.ok(&["keystore", "create", "cli", "--allow-ip", "127.0.0.1"], b"");
    assert_eq!(ks.len(), 32, "an id alone on stdout: {ks}");
    let key = dev.ok(&["key", "create", "cli", "k1", "--type", "aes-256"], b"");
    let ct = dev.ok(&["encrypt", &key, "--aad", "ctx"], b"hello from the CLI");
    assert_eq!(dev.run(&["decrypt", &key, "--aad", "ctx"], ct.as_bytes()).stdout, b"hello from the CLI");
    assert!(dev.ok(&["--json", "keystore", "list"], b"").contains("\"name\":\"cli\""));

    // 1: refused or invalid, with the gRPC code and the server's message.
    let wrong = dev.run(&["decrypt", &key, "--aad", "other"], ct.as_bytes());
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("INVALID_ARGUMENT: decryption failed"));
    // 2: usage.
    assert_eq!(dev.run(&["key", "create"], b"").status.code(), Some(2));

    // Ctrl-C (SIGTERM) stops all three; then the CLI reports unavailable (3).
    let exit = dev.stop().unwrap();
    assert!(exit.success(), "skm dev exited with {exit}");
    let down = dev.run(&["encrypt", &key], b"x");
    assert_eq!(down.status.code(), Some(3), "{}", String::from_utf8_lossy(&down.stderr));
}

#[test]
fn cli_access_control_certificates_operators_and_audit() {
    let dev = DevProcess::start().unwrap();
    let files = tempfile::tempdir().unwrap();
    let pw = files.path().join("pw");
    std::fs::write(&pw, "a long enough password\n").unwrap();
    let p12 = files.path().join("app.p12");

    // A keystore that wants a certificate; issue one as PKCS#12.
    dev.ok(&["keystore", "create", "certified", "--require-cert"], b"");
    let key = dev.ok(&["key", "create", "certified", "k", "--type", "aes-256"], b"");
    let sha = dev.ok(
        &[
            "keystore",
            "issue-cert",
            "certified",
            "app",
            "--out",
            p12.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(sha.len(), 64, "{sha}");
    let openssl = std::process::Command::new("openssl")
        .args(["pkcs12", "-in", p12.to_str().unwrap(), "-passin"])
        .arg(format!("file:{}", pw.display()))
        .args(["-nokeys", "-clcerts"])
        .output()
        .unwrap();
    assert!(openssl.status.success(), "{}", String::from_utf8_lossy(&openssl.stderr));

    let with_cert = ["--p12", p12.to_str().unwrap(), "--p12-password-file", pw.to_str().unwrap()];
    let ct = dev.ok(&[&with_cert[..], &["encrypt", &key]].concat(), b"hello");
    assert_eq!(dev.run(&[&with_cert[..], &["decrypt", &key]].concat(), ct.as_bytes()).stdout, b"hello");
    let who = dev.ok(&[&with_cert[..], &["--json", "whoami"]].concat(), b"");
    assert!(who.contains(&sha) && who.contains("\"certificate_subject\":\"app\""), "{who}");
    let without = dev.run(&["encrypt", &key], b"x");
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stderr).contains("PERMISSION_DENIED: certificate authentication failed"));

    // Policy change takes effect on the next request.
    dev.ok(&["keystore", "update", "certified", "--allow-ip", "127.0.0.1"], b"");
    dev.ok(&["encrypt", &key], b"no certificate needed now");
    dev.ok(&["keystore", "update", "certified", "--require-cert"], b"");
    dev.ok(&["keystore", "revoke-cert", "certified", "app"], b"");
    let revoked = dev.run(&[&with_cert[..], &["encrypt", &key]].concat(), b"x");
    assert_eq!(revoked.status.code(), Some(1));
    assert!(dev.ok(&["keystore", "show", "certified"], b"").contains("REVOKED"));

    // An asserted MAC counts only where allowed (loopback has no verified MAC).
    dev.ok(&["keystore", "create", "by-mac", "--allow-mac", "02:00:00:00:00:42", "--allow-asserted-mac"], b"");
    let mac_key = dev.ok(&["key", "create", "by-mac", "k", "--type", "aes-256"], b"");
    dev.ok(&["--client-mac", "02:00:00:00:00:42", "encrypt", &mac_key], b"x");
    let wrong = dev.run(&["--client-mac", "02:00:00:00:00:43", "encrypt", &mac_key], b"x");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("PERMISSION_DENIED: MAC authentication failed"));

    // An auditor operator may read and audit, not change anything; then revoked.
    let profile_dir = std::path::Path::new(&dev.profile).parent().unwrap().to_owned();
    let (auditor_profile, auditor_sha) = dev.add_operator("ann", "auditor", files.path());
    let as_auditor = |args: &[&str]| {
        std::process::Command::new(skm_e2e::skm_bin())
            .args(args)
            .env("SKM_PROFILE", &auditor_profile)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    assert!(as_auditor(&["keystore", "list"]).status.success());
    assert!(as_auditor(&["audit", "verify"]).status.success());
    let denied = as_auditor(&["keystore", "create", "nope", "--allow-ip", "127.0.0.1"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("PERMISSION_DENIED"));
    // Before: the auditor reaches every tier.
    let status = as_auditor(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success() && text.lines().filter(|l| l.contains("SERVING")).count() == 3, "{text}");
    assert!(as_auditor(&["root", "status"]).status.success());
    let revoked = dev.run(&["pki", "revoke-operator", "--sha256", &auditor_sha], b"");
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("revoked on kms-api, root-keyd and system-keyd"));
    let after = as_auditor(&["keystore", "list"]);
    assert!(String::from_utf8_lossy(&after.stderr).contains("revoked"), "{}", String::from_utf8_lossy(&after.stderr));
    // After: refused on the inner tiers too, health included (kms-api's
    // health is on its user port, open to clients without certificates; its
    // admin port refused `keystore list` above), and each inner tier's own
    // list is on its disk.
    let status = as_auditor(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(!status.status.success(), "{text}");
    for tier in ["root-keyd", "system-keyd"] {
        let line = text.lines().find(|l| l.starts_with(tier)).unwrap_or_else(|| panic!("{tier}: {text}"));
        assert!(line.contains("revoked") && !line.contains(" SERVING"), "{line}");
    }
    let root_status = as_auditor(&["root", "status"]);
    assert!(
        !root_status.status.success() && String::from_utf8_lossy(&root_status.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&root_status.stderr)
    );
    for tier in ["root-keyd", "system-keyd"] {
        let list = std::fs::read_to_string(profile_dir.join(tier).join("data").join("revoked-operators")).unwrap();
        assert_eq!(list.trim(), auditor_sha, "{tier}");
    }
    // Each inner tier's own audit log holds the refused calls, as the
    // revoked auditor, and verifies; one edited byte is found at its line.
    let rotate = as_auditor(&["system", "rotate"]);
    assert!(String::from_utf8_lossy(&rotate.stderr).contains("revoked"), "{rotate:?}");
    for (tier, method) in
        [("root-keyd", "RootKeyService/SealStatus"), ("system-keyd", "SystemKeyService/RotateSystemKey")]
    {
        let log = profile_dir.join(tier).join("data").join("audit").join("audit.log");
        // The result entry is written just after the reply.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let text = loop {
            let text = std::fs::read_to_string(&log).unwrap();
            let refused = text.lines().any(|l| {
                l.contains(r#""code":"PERMISSION_DENIED""#)
                    && l.contains(r#""caller":"operator/auditor/ann""#)
                    && l.contains(method)
            });
            if refused || std::time::Instant::now() > deadline {
                assert!(refused, "{tier}: the refused {method} is logged: {text}");
                break text;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        // Health checks are not logged.
        assert!(!text.contains("grpc.health"), "{tier}: {text}");
        let verified = dev.ok(&["audit", "verify", "--tier", tier], b"");
        assert!(verified.starts_with("intact: "), "{tier}: {verified}");
    }
    let log = profile_dir.join("root-keyd").join("data").join("audit").join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let target = text.lines().position(|l| l.contains(r#""code":"PERMISSION_DENIED""#)).unwrap();
    let at = text.lines().take(target).map(|l| l.len() + 1).sum::<usize>()
        + text.lines().nth(target).unwrap().find("PERMISSION_DENIED").unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"X", at as u64).unwrap();
    drop(file);
    let broken = dev.run(&["audit", "verify", "--tier", "root-keyd"], b"");
    assert_eq!(broken.status.code(), Some(1), "{broken:?}");
    let said = String::from_utf8_lossy(&broken.stdout);
    assert!(said.starts_with(&format!("broken: first broken entry at line {}", target + 1)), "{said}");
    // Again is harmless; a malformed fingerprint is refused naming the rule.
    dev.ok(&["pki", "revoke-operator", "--sha256", &auditor_sha], b"");
    let bad = dev.run(&["pki", "revoke-operator", "--sha256", "ABC"], b"");
    assert!(!bad.status.success());

    // The audit trail: denials and who did what; the chain verifies.
    let listed = dev.ok(&["audit", "list", "--key", &mac_key], b"");
    assert!(listed.contains("denied: MAC authentication failed") && listed.contains("(asserted)"), "{listed}");
    // --keystore takes a name, as every other verb does, or an id.
    let by_name = dev.ok(&["audit", "list", "--keystore", "by-mac"], b"");
    assert!(by_name.contains("denied: MAC authentication failed") && by_name.contains(&mac_key), "{by_name}");
    let by_mac_id = dev.ok(&["--json", "keystore", "show", "by-mac"], b"");
    let id: serde_json::Value = serde_json::from_str(&by_mac_id).unwrap();
    let by_id = dev.ok(&["audit", "list", "--keystore", id["id"].as_str().unwrap()], b"");
    // The same entries (and those the listing and lookup since added).
    assert!(by_id.starts_with(by_name.trim_end()), "{by_id}\n---\n{by_name}");
    let unknown = dev.run(&["audit", "list", "--keystore", "no-such-keystore"], b"");
    assert_eq!(unknown.status.code(), Some(1), "an unknown keystore is refused, not an empty list");
    assert!(dev.ok(&["audit", "verify"], b"").starts_with("intact"));
}

/// `skm audit verify` (the CLI binary against `skm dev`): exit 0 and
/// "intact" on the untouched log; after one byte of one entry is changed
/// in the file while the stack runs, exit 1 naming that line; the same
/// with `--json`.
#[test]
fn cli_audit_verify_exits_1_on_a_broken_log() {
    let dev = DevProcess::start().unwrap();
    dev.ok(&["keystore", "create", "audited", "--allow-ip", "127.0.0.0/8"], b"");
    let key = dev.ok(&["key", "create", "audited", "k", "--type", "aes-256"], b"");
    for i in 0..3 {
        dev.ok(&["encrypt", &key], format!("entry {i}").as_bytes());
    }
    let intact = dev.run(&["audit", "verify"], b"");
    assert_eq!(intact.status.code(), Some(0), "{intact:?}");
    assert!(String::from_utf8_lossy(&intact.stdout).starts_with("intact: "), "{intact:?}");

    let logs: Vec<_> = skm_e2e::files_below(dev.data_dir())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "audit.log"))
        .filter(|p| p.components().any(|c| c.as_os_str() == "kms-api"))
        .collect();
    assert_eq!(logs.len(), 1, "one kms-api audit log under the dev stack: {logs:?}");
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let target = lines.iter().rposition(|l| l.contains("Encrypt")).expect("an Encrypt entry");
    // One byte, overwritten in place: the file kms-api appends to stays the same file.
    let at = lines[..target].iter().map(|l| l.len() + 1).sum::<usize>() + lines[target].find("Encrypt").unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&logs[0]).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"Encrypu", at as u64).unwrap();
    drop(file);

    let broken = dev.run(&["audit", "verify"], b"");
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "a broken log must exit 1: {broken:?}");
    assert!(stdout.starts_with(&format!("broken: first broken entry at line {}", target + 1)), "{stdout}");
    let json = dev.run(&["--json", "audit", "verify"], b"");
    assert_eq!(json.status.code(), Some(1), "{json:?}");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["first_broken_line"], target as u64 + 1);
}

/// Every tier keeps its sealed and key material private: data directories
/// 0700 (so whatever a store writes inside is out of other users' reach),
/// the sealed root key, the dev passphrase and every private key 0600.
#[test]
fn skm_dev_keeps_sealed_and_key_material_private() {
    use std::os::unix::fs::PermissionsExt;
    let dev = DevProcess::start().unwrap();
    dev.ok(&["keystore", "create", "modes", "--allow-ip", "127.0.0.1"], b"");
    let key = dev.ok(&["key", "create", "modes", "k", "--type", "aes-256"], b"");
    dev.ok(&["encrypt", &key], b"so that the audit log and the store hold something");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let d = dev.data_dir();
    // It says plainly where the passphrase is, and what that means.
    let notice = dev.stderr();
    let passphrase = d.join("root-keyd").join("passphrase");
    assert!(
        notice.contains("DEVELOPMENT ONLY")
            && notice.contains(&passphrase.display().to_string())
            && notice.contains("sits beside the sealed root key"),
        "{notice}"
    );
    let mut checked = 0;
    for tier in ["root-keyd", "system-keyd", "kms-api"] {
        let data = d.join(tier).join("data");
        assert_eq!(mode(&data), 0o700, "{}", data.display());
        checked += 1;
    }
    for tier in ["root-keyd", "system-keyd", "kms-api"] {
        assert_eq!(mode(&d.join(tier).join("data").join("audit")), 0o700, "{tier}");
    }
    for tier in ["root-keyd", "system-keyd"] {
        for file in ["audit.log", "audit.key"] {
            assert_eq!(mode(&d.join(tier).join("data").join("audit").join(file)), 0o600, "{tier} {file}");
        }
    }
    assert_eq!(mode(&d.join("root-keyd")), 0o700);
    for file in [d.join("root-keyd").join("data").join("root-key.seal"), d.join("root-keyd").join("passphrase")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        checked += 1;
    }
    let mut keys = Vec::new();
    let mut stack = vec![d.join("pki")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".key") || n == "key.pem") {
                keys.push(path);
            }
        }
    }
    assert!(keys.len() >= 5, "the CA, three tiers and the operator have keys: {keys:?}");
    for key in &keys {
        assert_eq!(mode(key), 0o600, "{}", key.display());
        checked += 1;
    }
    assert!(checked >= 10);
}
