//! The `skm` CLI without a running stack: usage errors and `skm pki init`.
//! (The verbs against a running stack are tested in tests/tests/cli_keys.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const SKM: &str = env!("CARGO_BIN_EXE_skm");

#[test]
fn usage_errors_exit_2() {
    let no_args = Command::new(SKM).output().unwrap();
    assert_eq!(no_args.status.code(), Some(2));
    let no_profile = Command::new(SKM).args(["keystore", "list"]).env_remove("SKM_PROFILE").output().unwrap();
    assert_eq!(no_profile.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_profile.stderr).contains("SKM_PROFILE"));
    let bad_type = Command::new(SKM).args(["key", "create", "ks", "k", "--type", "des"]).output().unwrap();
    assert_eq!(bad_type.status.code(), Some(2));
}

#[test]
fn pki_init_hands_each_tier_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let status =
        Command::new(SKM).args(["pki", "init", "--out"]).arg(&out).args(["--host", "kms.example"]).status().unwrap();
    assert!(status.success());
    for tier in ["root-keyd", "system-keyd", "kms-api", "operator"] {
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            assert!(out.join(tier).join(file).is_file(), "{tier}/{file}");
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("kms-api/key.pem")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "private keys are not group/world readable");
    // A second init into the same directory refuses to overwrite.
    let again = Command::new(SKM).args(["pki", "init", "--out"]).arg(&out).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
}
