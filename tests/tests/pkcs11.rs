//! root-keyd's PKCS#11 seal mode on a real SoftHSM2 token (Debian's
//! softhsm2, installed by scripts/test): the token made by the dev stack
//! holds the root key as a non-extractable, sensitive AES-256 object, the
//! whole stack boots on it and encrypts, and what root-keyd keeps on disk
//! plus the token's files yield no key without the PIN. A wrong PIN, an
//! absent token and a token without the recorded key each leave root-keyd
//! up and NOT_SERVING with one clear line. Real processes; the token is
//! inspected from outside through PKCS#11 (`skm-pkcs11-probe`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use skm::devstack::{self, DEV_TOKEN_LABEL, DevSeal, SOFTHSM_DIR};
use skm_e2e::{DevProcess, Processes, aes_key, decrypt, encrypt, files_below, serving, wait_ready};
use skm_proto::root::v1 as root_pb;
use skm_runtime::Service;

const READY: Duration = Duration::from_secs(60);

fn root_dir(p: &Processes) -> PathBuf {
    p.stack.dir.join(Service::RootKeyd.name())
}

fn pin_file(p: &Processes) -> PathBuf {
    root_dir(p).join("pin")
}

fn softhsm_conf(p: &Processes) -> PathBuf {
    root_dir(p).join(SOFTHSM_DIR).join("softhsm2.conf")
}

/// Runs the probe against the stack's token; its JSON answer.
fn probe(p: &Processes, args: &[&str]) -> serde_json::Value {
    let module = devstack::softhsm_module().unwrap();
    let pin = pin_file(p);
    let (command, rest) = args.split_first().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skm-pkcs11-probe"))
        .env("SOFTHSM2_CONF", softhsm_conf(p))
        .arg(command)
        .arg(&module)
        .arg(DEV_TOKEN_LABEL)
        .arg(&pin)
        .args(rest)
        .output()
        .unwrap();
    assert!(out.status.success(), "probe {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn seal_status(p: &Processes) -> Option<root_pb::SealStatusResponse> {
    let mut root = p.client().ok()?.root().ok()?;
    Some(root.seal_status(root_pb::SealStatusRequest {}).await.ok()?.into_inner())
}

/// Polls SealStatus until `done` holds (or panics with the logs).
async fn status_until(
    p: &Processes,
    what: &str,
    done: impl Fn(&root_pb::SealStatusResponse) -> bool,
) -> root_pb::SealStatusResponse {
    let deadline = std::time::Instant::now() + READY;
    loop {
        if let Some(status) = seal_status(p).await
            && done(&status)
        {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}\n{}", p.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_text(p: &Processes, service: Service) -> String {
    std::fs::read_to_string(p.log(service)).unwrap_or_default()
}

/// The raw scan, in Python's `cryptography` (an implementation of its own):
/// tries every 32-byte window of every file as an AES-256-GCM key on
/// `wrapped` (iv | ct | tag) with `aad`, what an attacker holding the files
/// would try first. It first proves on a planted key that it finds one.
const SCAN: &str = r#"
import json, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
req = json.load(sys.stdin)
def opens(data, iv, ct, aad):
    for i in range(len(data) - 31):
        try:
            AESGCM(data[i:i + 32]).decrypt(iv, ct, aad)
            return True
        except Exception:
            pass
    return False
aad = bytes.fromhex(req["aad"])
planted = os.urandom(32)
control = AESGCM(planted).encrypt(b"\x07" * 12, os.urandom(32), aad)
assert opens(os.urandom(100) + planted + os.urandom(50), b"\x07" * 12, control, aad), "the scan finds a planted key"
wrapped = bytes.fromhex(req["wrapped"])
hits, scanned = [], 0
for path in req["files"]:
    data = open(path, "rb").read()
    scanned += len(data)
    if opens(data, wrapped[:12], wrapped[12:], aad):
        hits.append(path)
print(json.dumps({"scanned": scanned, "hits": hits}))
"#;

fn scan(files: &[PathBuf], wrapped: &[u8], aad: &[u8]) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new(skm_e2e::python())
        .args(["-c", SCAN])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let request = serde_json::json!({ "files": files, "wrapped": hex::encode(wrapped), "aad": hex::encode(aad) });
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "scan: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_key_lives_in_the_token_and_its_files_yield_nothing_without_the_pin() {
    let mut p = Processes::prepare(DevSeal::Pkcs11).unwrap();
    p.start_all().unwrap();
    let skm = p.client().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));

    let status = seal_status(&p).await.unwrap();
    assert_eq!(status.mode(), root_pb::SealMode::Pkcs11);
    assert!(status.initialized && !status.sealed, "{status:?}");
    assert!(status.unavailable_reason.is_empty(), "{status:?}");
    assert_eq!(status.root_key_id.len(), 16, "hex of the object's 8-byte CKA_ID: {status:?}");

    // The stack works on it.
    let key = aes_key(&skm, "pkcs11").await.unwrap();
    let ciphertext = encrypt(&skm, &key, b"under a token-held root key", b"aad").await.unwrap();
    assert_eq!(decrypt(&skm, &key, &ciphertext, b"aad").await.unwrap(), b"under a token-held root key");

    // The object, as PKCS#11 reports it: generated in the token, sensitive
    // and never extractable from its creation, for encrypt/decrypt only, and
    // its value withheld.
    let attributes = probe(&p, &["attributes", root_keyd::DEFAULT_KEY_LABEL]);
    for (name, want) in [
        ("token", true),
        ("private", true),
        ("sensitive", true),
        ("always_sensitive", true),
        ("extractable", false),
        ("never_extractable", true),
        ("local", true),
        ("encrypt", true),
        ("decrypt", true),
        ("wrap", false),
        ("unwrap", false),
    ] {
        assert_eq!(attributes[name], serde_json::json!(want), "{name}: {attributes}");
    }
    assert_eq!(attributes["value_len"], 32, "{attributes}");
    assert_ne!(attributes["value"], "revealed", "{attributes}");

    // root-keyd's seal file names the token object and holds no sealed key.
    let seal_file = std::fs::read_to_string(p.stack.data_dir(Service::RootKeyd).join("root-key.seal")).unwrap();
    assert!(seal_file.contains("\"pkcs11\"") && seal_file.contains(&status.root_key_id), "{seal_file}");
    assert!(!seal_file.contains("sealed_root_key"), "{seal_file}");

    // A system key wrapped by root-keyd's token code: no 32-byte window of
    // root-keyd's data directory or of the token's files (everything but
    // the PINs) unwraps it, and the system key itself is in none of them.
    let wrapped = probe(&p, &["wrap", root_keyd::DEFAULT_KEY_LABEL, "4242"]);
    assert_eq!(wrapped["root_key_id"], status.root_key_id.as_str());
    let system_key = hex::decode(wrapped["system_key"].as_str().unwrap()).unwrap();
    let wrapped = hex::decode(wrapped["wrapped"].as_str().unwrap()).unwrap();
    assert_eq!(wrapped.len(), root_keyd::pkcs11::WRAPPED_LEN);
    let aad = skm_crypto::wrap::system_key_aad(4242, &status.root_key_id);
    let files: Vec<PathBuf> = [p.stack.data_dir(Service::RootKeyd), root_dir(&p).join(SOFTHSM_DIR)]
        .iter()
        .flat_map(|d| files_below(d))
        .collect();
    assert!(files.iter().any(|f| f.ends_with("root-key.seal")), "{files:?}");
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "object")), "the token's objects: {files:?}");
    let found = scan(&files, &wrapped, &aad);
    assert_eq!(found["hits"], serde_json::json!([]), "files that hold the root key: {found}");
    assert!(found["scanned"].as_u64().unwrap() > 1000, "{found}");
    for file in &files {
        assert!(!contains(&std::fs::read(file).unwrap(), &system_key), "{} holds the system key", file.display());
    }

    // Without the PIN the token doesn't open.
    let pin = std::fs::read_to_string(pin_file(&p)).unwrap();
    std::fs::write(pin_file(&p), "not-the-pin\n").unwrap();
    assert_eq!(probe(&p, &["login"])["login"], "PinIncorrect");
    std::fs::write(pin_file(&p), &pin).unwrap();

    // A restart finds the same root key in the token: the system key
    // unwraps again and the ciphertext decrypts.
    p.stop_all().await;
    p.start_all().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    assert_eq!(seal_status(&p).await.unwrap().root_key_id, status.root_key_id);
    assert_eq!(decrypt(&skm, &key, &ciphertext, b"aad").await.unwrap(), b"under a token-held root key");
    assert!(log_text(&p, Service::RootKeyd).contains("root key ready in its PKCS#11 token"), "{}", p.logs());
    p.stop_all().await;
}

/// Starts root-keyd alone and waits until it reports why it can't serve;
/// returns the reason after checking it says so once, stays up and is not
/// SERVING.
async fn unavailable_because(p: &mut Processes, expected: &str) -> String {
    let before = log_text(p, Service::RootKeyd).len();
    p.start(Service::RootKeyd).unwrap();
    let reason = status_until(p, "root-keyd answering SealStatus with a reason", |s| !s.unavailable_reason.is_empty())
        .await
        .unavailable_reason;
    assert!(reason.contains(expected), "reason {reason:?} lacks {expected:?}");
    let skm = p.client().unwrap();
    assert!(!serving(&skm, Service::RootKeyd).await, "NOT_SERVING");
    let log = log_text(p, Service::RootKeyd)[before..].to_owned();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one clear line: {log}");
    assert!(errors[0].contains(expected), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    p.stop(Service::RootKeyd).await;
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_an_absent_token_or_a_missing_key_leave_root_keyd_not_serving_with_one_clear_line() {
    let mut p = Processes::prepare(DevSeal::Pkcs11).unwrap();
    p.start(Service::RootKeyd).unwrap();
    let recorded = status_until(&p, "root-keyd unsealed on its token", |s| !s.sealed).await.root_key_id;
    p.stop(Service::RootKeyd).await;

    // A wrong PIN.
    let pin = std::fs::read_to_string(pin_file(&p)).unwrap();
    std::fs::write(pin_file(&p), "000000\n").unwrap();
    unavailable_because(&mut p, &format!("is wrong for token {DEV_TOKEN_LABEL:?}")).await;
    std::fs::write(pin_file(&p), &pin).unwrap();

    // No token with the configured label.
    let config = p.stack.config(Service::RootKeyd);
    let text = std::fs::read_to_string(&config).unwrap();
    let label = format!("token_label = {DEV_TOKEN_LABEL:?}");
    assert!(text.contains(&label), "{text}");
    std::fs::write(&config, text.replace(&label, "token_label = \"skm-absent\"")).unwrap();
    let reason = unavailable_because(&mut p, "no PKCS#11 token labelled \"skm-absent\" is present").await;
    assert!(reason.contains(&format!("tokens present: {DEV_TOKEN_LABEL:?} in slot")), "{reason}");
    std::fs::write(&config, &text).unwrap();

    // A fresh token under the same label and PIN: the recorded root key is
    // not there, and root-keyd does not make a new one over it.
    let tokens = root_dir(&p).join(SOFTHSM_DIR).join("tokens");
    std::fs::remove_dir_all(&tokens).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    init_token(&softhsm_conf(&p), pin.trim());
    let reason = unavailable_because(&mut p, "holds no key labelled \"skm-root-key\"").await;
    assert!(reason.contains(&recorded), "names the recorded root key id {recorded}: {reason}");
    let seal_file = std::fs::read_to_string(p.stack.data_dir(Service::RootKeyd).join("root-key.seal")).unwrap();
    assert!(seal_file.contains(&recorded), "the record is kept: {seal_file}");
    let probe_out = std::process::Command::new(env!("CARGO_BIN_EXE_skm-pkcs11-probe"))
        .env("SOFTHSM2_CONF", softhsm_conf(&p))
        .arg("attributes")
        .arg(devstack::softhsm_module().unwrap())
        .arg(DEV_TOKEN_LABEL)
        .arg(pin_file(&p))
        .arg(root_keyd::DEFAULT_KEY_LABEL)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&probe_out.stderr).contains("0 keys labelled"),
        "no key was created: {}",
        String::from_utf8_lossy(&probe_out.stderr)
    );
}

fn init_token(conf: &Path, pin: &str) {
    let out = std::process::Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args(["--init-token", "--free", "--label", DEV_TOKEN_LABEL, "--pin", pin, "--so-pin", "12345678"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `skm dev --seal pkcs11`, as a user starts it: it makes the token, says
/// plainly that its PIN sits beside it, serves, and keeps the token, its
/// PINs and root-keyd's record private.
#[test]
fn skm_dev_seal_pkcs11_runs_on_its_own_softhsm2_token() {
    use std::os::unix::fs::PermissionsExt;
    let mut dev = DevProcess::start_with(&["--seal", "pkcs11"]).unwrap();
    dev.ok(&["keystore", "create", "hsm", "--allow-ip", "127.0.0.1"], b"");
    let key = dev.ok(&["key", "create", "hsm", "k", "--type", "aes-256"], b"");
    let ciphertext = dev.ok(&["encrypt", &key], b"through the token");
    assert_eq!(dev.ok(&["decrypt", &key], ciphertext.as_bytes()), "through the token");
    let status = dev.ok(&["root", "status"], b"");
    assert!(status.starts_with("unsealed (pkcs11)"), "{status}");
    let notice = dev.stderr();
    let root = dev.data_dir().join("root-keyd");
    assert!(
        notice.contains("DEVELOPMENT ONLY")
            && notice.contains("SoftHSM2 token")
            && notice.contains(&root.join("pin").display().to_string()),
        "{notice}"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for dir in [root.clone(), root.join(SOFTHSM_DIR), root.join(SOFTHSM_DIR).join("tokens"), root.join("data")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for file in [root.join("pin"), root.join("so-pin"), root.join("data").join("root-key.seal")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let token_files = files_below(&root.join(SOFTHSM_DIR).join("tokens"));
    assert!(!token_files.is_empty());
    for file in &token_files {
        assert_eq!(mode(file) & 0o077, 0, "{} is private", file.display());
    }
    dev.stop();
}
