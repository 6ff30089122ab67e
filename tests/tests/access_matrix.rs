//! The access-control authorisation matrix, with real source addresses and
//! MACs (DESIGN §5).
//!
//! kms-api runs in this process, its user port on 0.0.0.0. Clients are
//! `skm-access-probe` processes at three positions:
//!
//! - **A**: in network namespace A, joined to this one by a veth pair; its
//!   address and (fixed, locally administered) MAC are allowed;
//! - **B**: in namespace B, the same way; neither its address nor its MAC
//!   is allowed;
//! - **L**: loopback in this namespace (127.0.0.1): kms-api can read no MAC
//!   for it, so only an asserted MAC (`x-skm-client-mac`) can count.
//!
//! Each position calls every user RPC, over gRPC on the user port and as
//! JSON on the REST listener's `/v1` (the same answers are due), on six keystores (IPv4 only, MAC only,
//! MAC with asserted MACs, certificate only, and all three methods in modes
//! `all` and `any`) as each identity (no certificate, the user certificate,
//! the admin and auditor operator certificates, another keystore's
//! certificate), asserting no MAC, the allowed asserted MAC or a wrong one.
//! [`expected`] says from the policy semantics what kms-api must answer:
//! OK, or PERMISSION_DENIED naming exactly the failed methods. Then every
//! AdminService RPC as each identity, an auditor's revocation, and the audit
//! log's record of how each MAC was obtained.
//!
//! Needs root and iproute2 (CI runs as root): without them the test fails,
//! saying so, unless the run leaves the group out (`SKM_SKIP=netns`). The
//! namespaces and veth pairs are named after this process and removed by
//! [`Network`]'s `Drop`, even when the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use skm::devstack::DevSeal;
use skm_client::Skm;
use skm_client::admin::v1 as admin;
use skm_client::api::v1 as api;
use skm_e2e::{InProcess, TRUST_DOMAIN, eventually, wait_ready};
use skm_runtime::Role;
use tokio::io::AsyncWriteExt;
use tonic::Code;

const READY: Duration = Duration::from_secs(30);

/// MACs of the namespace-side interfaces (locally administered).
const A_MAC: &str = "02:53:4b:4d:0a:02";
const B_MAC: &str = "02:53:4b:4d:0b:02";
/// A MAC the loopback client asserts, allowed where asserted MACs are.
const ASSERTED_MAC: &str = "02:53:4b:4d:aa:01";
/// A MAC no keystore allows.
const WRONG_MAC: &str = "02:53:4b:4d:ee:01";

const PLAINTEXT: &[u8] = b"matrix plaintext";
const AAD: &[u8] = b"matrix aad";
const MESSAGE: &[u8] = b"matrix message";
const SECRET: &str = "matrix secret";
const P12_PASSWORD: &str = "matrix-password";
/// An id nothing has (32 hex digits).
const UNKNOWN_ID: &str = "00000000000000000000000000000000";

const IPV4_DENIED: &str = "IPv4 authentication failed";
const MAC_DENIED: &str = "MAC authentication failed";
const CERT_DENIED: &str = "certificate authentication failed";

/// Every KeyService RPC that uses a key or secret.
const USER_RPCS: [&str; 13] = [
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncrypt",
    "BatchEncrypt",
    "BatchDecrypt",
    "Sign",
    "Verify",
    "GetPublicKey",
    "GetSecret",
    "GenerateMac",
    "VerifyMac",
];

/// Every AdminService RPC.
const ADMIN_RPCS: [&str; 27] = [
    "CreateKeystore",
    "ListKeystores",
    "GetKeystore",
    "UpdateKeystore",
    "DeleteKeystore",
    "IssueClientCertificate",
    "RegisterClientCertificate",
    "RevokeClientCertificate",
    "ListAudit",
    "VerifyAudit",
    "RevokeOperator",
    "CreateKey",
    "CreateSecret",
    "UpdateSecret",
    "ListKeys",
    "DescribeKey",
    "RotateKey",
    "UpdateKey",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "GetSystemKeyStatus",
    "RetireSystemKeyVersion",
    "CreateConsoleSignIn",
];

// ---------------------------------------------------------------------------
// Network namespaces

/// Runs `ip ARGS`; fails with its stderr.
fn run_ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One client namespace joined to this one by a veth pair.
struct Side {
    ns: String,
    /// This namespace's end (kms-api is reached here).
    host_ip: Ipv4Addr,
    /// The client's address.
    ip: Ipv4Addr,
    /// The client's MAC.
    mac: &'static str,
}

/// Namespaces A and B; `Drop` deletes everything made so far.
struct Network {
    namespaces: Vec<String>,
    host_links: Vec<String>,
    a: Option<Side>,
    b: Option<Side>,
}

impl Network {
    fn create() -> anyhow::Result<Self> {
        let mut net = Self { namespaces: Vec::new(), host_links: Vec::new(), a: None, b: None };
        let k = free_subnet()?;
        net.a = Some(net.side('a', Ipv4Addr::new(10, 213, k, 0), A_MAC)?);
        net.b = Some(net.side('b', Ipv4Addr::new(10, 213, k, 4), B_MAC)?);
        Ok(net)
    }

    /// A namespace on the /30 `net`: .1 here, .2 in the namespace.
    fn side(&mut self, tag: char, net: Ipv4Addr, mac: &'static str) -> anyhow::Result<Side> {
        let base = format!("skm{}{tag}", std::process::id());
        let (ns, host, inner) = (base.clone(), format!("{base}h"), format!("{base}n"));
        let [a, b, c, d] = net.octets();
        let (host_ip, ip) = (Ipv4Addr::new(a, b, c, d + 1), Ipv4Addr::new(a, b, c, d + 2));
        self.namespaces.push(ns.clone());
        run_ip(&["netns", "add", &ns])?;
        self.host_links.push(host.clone());
        run_ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", &ns])?;
        run_ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host])?;
        run_ip(&["link", "set", &host, "up"])?;
        run_ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        run_ip(&["-n", &ns, "link", "set", &inner, "address", mac])?;
        run_ip(&["-n", &ns, "addr", "add", &format!("{ip}/30"), "dev", &inner])?;
        run_ip(&["-n", &ns, "link", "set", &inner, "up"])?;
        Ok(Side { ns, host_ip, ip, mac })
    }

    fn a(&self) -> &Side {
        self.a.as_ref().expect("namespace A")
    }

    fn b(&self) -> &Side {
        self.b.as_ref().expect("namespace B")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        for ns in &self.namespaces {
            quiet(&["netns", "del", ns]);
        }
        // Deleting a namespace deletes its veth end and so the pair; this
        // only matters if that failed.
        for link in &self.host_links {
            quiet(&["link", "del", link]);
        }
    }
}

/// A third octet `k` such that nothing here uses 10.213.k.0/24.
fn free_subnet() -> anyhow::Result<u8> {
    let used =
        format!("{}{}", run_ip(&["-4", "-o", "addr", "show"])?, run_ip(&["-4", "route", "show", "table", "all"])?);
    let start = std::process::id() % 250;
    (0..250)
        .map(|i| ((start + i) % 250 + 1) as u8)
        .find(|k| !used.contains(&format!("10.213.{k}.")))
        .context("no free 10.213.k.0/24 subnet")
}

/// What this machine lacks for network namespaces, if anything.
fn missing_prerequisite() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("root (network namespaces and veth pairs need CAP_NET_ADMIN; run the tests as root)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("a working `ip` (`ip -V`: {})", o.status)),
        Err(e) => Some(format!("iproute2 (`ip`: {e}; Debian: apt-get install iproute2)")),
    }
}

// ---------------------------------------------------------------------------
// The probe

#[derive(Serialize)]
struct Plan<'a> {
    ca: &'a Path,
    trust_domain: &'a str,
    user_endpoint: String,
    admin_endpoint: String,
    rest_endpoint: String,
    calls: Vec<Call>,
}

#[derive(Clone, Default, Serialize)]
struct Call {
    id: String,
    port: &'static str,
    identity: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    asserted_mac: Option<&'static str>,
    rpc: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    key_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    keystore_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    sha256: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    data: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    aad: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    ciphertext: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    signature: String,
}

#[derive(Clone, Debug, Deserialize)]
struct Outcome {
    id: String,
    code: i32,
    message: String,
    detail: String,
}

const TRANSPORT_ERROR: i32 = -1;

/// Runs the probe (in namespace `ns`, else here) on `calls`.
async fn probe(ns: Option<&str>, stack: &Stack, user_host: Ipv4Addr, calls: Vec<Call>) -> anyhow::Result<Vec<Outcome>> {
    let plan = Plan {
        ca: &stack.ca,
        trust_domain: TRUST_DOMAIN,
        user_endpoint: format!("{user_host}:{}", stack.user_port),
        admin_endpoint: stack.admin_endpoint.clone(),
        rest_endpoint: format!("{user_host}:{}", stack.rest_port),
        calls,
    };
    let bin = env!("CARGO_BIN_EXE_skm-access-probe");
    let mut cmd = match ns {
        Some(ns) => {
            let mut cmd = tokio::process::Command::new("ip");
            cmd.args(["netns", "exec", ns, bin]);
            cmd
        }
        None => tokio::process::Command::new(bin),
    };
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut stdin = child.stdin.take().context("probe stdin")?;
    stdin.write_all(&serde_json::to_vec(&plan)?).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!("probe in {ns:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("probe output {}", String::from_utf8_lossy(&out.stdout)))
}

// ---------------------------------------------------------------------------
// Who calls, from where, on which keystore

/// Client identities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    /// No client certificate.
    Nobody,
    /// Issued by the certificate-only keystore, registered in the combined ones.
    User,
    /// The deployment's admin operator.
    Admin,
    /// An auditor operator.
    Auditor,
    /// Issued by an unrelated keystore.
    Other,
}

const EVERYONE: [Who; 5] = [Who::Nobody, Who::User, Who::Admin, Who::Auditor, Who::Other];

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Nobody => "none",
            Who::User => "user",
            Who::Admin => "admin",
            Who::Auditor => "auditor",
            Who::Other => "other",
        }
    }
}

/// A client position.
#[derive(Clone, Debug)]
struct Position {
    name: &'static str,
    /// Its namespace, None for loopback here.
    ns: Option<String>,
    /// Where it reaches kms-api's user port.
    server: Ipv4Addr,
    /// The address kms-api sees.
    ip: Ipv4Addr,
    /// The MAC kms-api reads from its neighbour table.
    verified_mac: Option<&'static str>,
}

/// A keystore's policy as the test sets it.
#[derive(Clone, Debug)]
struct Policy {
    ips: Vec<Ipv4Addr>,
    macs: Vec<&'static str>,
    asserted: bool,
    cert: bool,
    any: bool,
}

/// What a caller presents.
struct Caller<'a> {
    position: &'a Position,
    who: Who,
    asserted_mac: Option<&'static str>,
}

/// What kms-api must answer `caller` on a keystore with `policy` (DESIGN
/// §5): Ok, or the denial naming the failed methods in the order IPv4,
/// MAC, certificate.
fn expected(policy: &Policy, caller: &Caller<'_>) -> Result<(), String> {
    let mut enabled = 0;
    let mut failed = Vec::new();
    if !policy.ips.is_empty() {
        enabled += 1;
        if !policy.ips.contains(&caller.position.ip) {
            failed.push(IPV4_DENIED);
        }
    }
    if !policy.macs.is_empty() {
        enabled += 1;
        // A MAC kms-api reads itself decides; an asserted one counts only
        // without it, and only where the keystore allows asserted MACs.
        let mac = match (caller.position.verified_mac, caller.asserted_mac) {
            (Some(verified), _) => Some(verified),
            (None, Some(asserted)) if policy.asserted => Some(asserted),
            _ => None,
        };
        if !mac.is_some_and(|m| policy.macs.contains(&m)) {
            failed.push(MAC_DENIED);
        }
    }
    if policy.cert {
        enabled += 1;
        // Only the user certificate is known to the keystores.
        if caller.who != Who::User {
            failed.push(CERT_DENIED);
        }
    }
    let passed = if policy.any { failed.len() < enabled } else { failed.is_empty() };
    if passed { Ok(()) } else { Err(failed.join("; ")) }
}

/// A keystore of the matrix with its keys and inputs that succeed.
struct Keystore {
    name: &'static str,
    id: String,
    policy: Policy,
    aes: String,
    ed25519: String,
    hmac: String,
    secret: String,
    ciphertext: Vec<u8>,
    signature: Vec<u8>,
    mac: Vec<u8>,
}

impl Keystore {
    /// A call of user `rpc` with arguments that succeed when allowed.
    fn call(&self, rpc: &'static str) -> Call {
        let b64 = |b: &[u8]| B64.encode(b);
        let mut call = Call { port: "user", rpc, aad: b64(AAD), ..Call::default() };
        match rpc {
            "Encrypt" | "BatchEncrypt" => {
                call.key_id = self.aes.clone();
                call.data = b64(PLAINTEXT);
            }
            "Decrypt" | "ReEncrypt" | "BatchDecrypt" => {
                call.key_id = self.aes.clone();
                call.ciphertext = b64(&self.ciphertext);
            }
            "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => call.key_id = self.aes.clone(),
            "Sign" | "GetPublicKey" => {
                call.key_id = self.ed25519.clone();
                call.data = b64(MESSAGE);
            }
            "Verify" => {
                call.key_id = self.ed25519.clone();
                call.data = b64(MESSAGE);
                call.signature = b64(&self.signature);
            }
            "GetSecret" => call.key_id = self.secret.clone(),
            "GenerateMac" => {
                call.key_id = self.hmac.clone();
                call.data = b64(MESSAGE);
            }
            "VerifyMac" => {
                call.key_id = self.hmac.clone();
                call.data = b64(MESSAGE);
                call.signature = b64(&self.mac);
            }
            other => panic!("not a user RPC: {other}"),
        }
        call
    }
}

/// What an allowed call must have answered beyond OK.
fn allowed_detail(rpc: &str) -> Option<String> {
    match rpc {
        "Decrypt" | "BatchDecrypt" => Some(B64.encode(PLAINTEXT)),
        "Verify" | "VerifyMac" => Some("valid".to_owned()),
        "GetSecret" => Some(SECRET.to_owned()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Set-up

/// The stack and what the probes need to reach it.
struct Stack {
    stack: InProcess,
    skm: Skm,
    ca: PathBuf,
    user_port: u16,
    rest_port: u16,
    admin_endpoint: String,
    /// Identity files, written here.
    files: tempfile::TempDir,
    identities: HashMap<Who, (Value, String)>,
}

impl Stack {
    fn identity(&self, who: Who) -> Value {
        self.identities[&who].0.clone()
    }

    fn sha256(&self, who: Who) -> &str {
        &self.identities[&who].1
    }

    fn admin(&self) -> skm_client::admin::v1::admin_service_client::AdminServiceClient<tonic::transport::Channel> {
        self.skm.admin().unwrap()
    }
}

fn pem_sha256(pem: &str) -> String {
    let certs = skm_runtime::tls::certs_from_pem(pem.as_bytes()).unwrap();
    hex::encode(skm_crypto::sha256(&certs[0]))
}

async fn start_stack() -> anyhow::Result<Stack> {
    let stack = InProcess::start_with(DevSeal::Passphrase, Arc::new(kms_api::clock::SystemClock), |kms| {
        kms.user_listen = "0.0.0.0:0".parse().unwrap();
        kms.rest_listen = Some("0.0.0.0:0".parse().unwrap());
    })
    .await?;
    let skm = stack.client()?;
    wait_ready(&skm, READY).await?;
    let ca = stack.profile.ca.clone();
    let user_port = stack.kms().user_addr.port();
    let rest_port = stack.kms().rest_addr.context("REST listener")?.port();
    let admin_endpoint = stack.profile.admin_endpoint.clone();
    let files = tempfile::tempdir()?;

    let pki = stack.stack.dir.join("pki");
    let operator = pki.join("operator");
    let admin_sha = pem_sha256(&std::fs::read_to_string(operator.join("cert.pem"))?);
    let deployment_ca = skm_pki::CertificateAuthority::load(
        TRUST_DOMAIN,
        &std::fs::read_to_string(pki.join("ca").join("ca.pem"))?,
        &std::fs::read_to_string(pki.join("ca").join("ca.key"))?,
    )?;
    let auditor = deployment_ca.issue_operator(&format!("auditor-{}", std::process::id()), Role::Auditor, 1)?;
    let (auditor_cert, auditor_key) = (files.path().join("auditor.pem"), files.path().join("auditor.key"));
    std::fs::write(&auditor_cert, &auditor.cert_pem)?;
    std::fs::write(&auditor_key, &auditor.key_pem)?;

    let mut identities = HashMap::new();
    identities.insert(Who::Nobody, (json!("none"), String::new()));
    identities.insert(
        Who::Admin,
        (json!({"pem": {"cert": operator.join("cert.pem"), "key": operator.join("key.pem")}}), admin_sha),
    );
    identities.insert(
        Who::Auditor,
        (json!({"pem": {"cert": auditor_cert, "key": auditor_key}}), pem_sha256(&auditor.cert_pem)),
    );
    Ok(Stack { stack, skm, ca, user_port, rest_port, admin_endpoint, files, identities })
}

/// Creates a keystore that allows loopback, with an AES key, an Ed25519
/// key and a secret, and a ciphertext and signature made through the user
/// port. Its real policy is set later by [`apply_policy`].
async fn keystore(stack: &Stack, name: &'static str, policy: Policy) -> anyhow::Result<Keystore> {
    let mut ops = stack.admin();
    let created = ops
        .create_keystore(admin::CreateKeystoreRequest {
            alias: String::new(),
            name: name.to_owned(),
            allow_ips: vec!["127.0.0.1".into()],
            policy: None,
        })
        .await?
        .into_inner()
        .keystore
        .context("no keystore")?;
    let key = |key_type: admin::KeyType, key_name: &str| admin::CreateKeyRequest {
        keystore_id: created.id.clone(),
        name: key_name.to_owned(),
        key_type: key_type as i32,
        rotation_period_days: 0,
        ..Default::default()
    };
    let aes = ops.create_key(key(admin::KeyType::Aes256, "aes")).await?.into_inner().key_id;
    let ed25519 = ops.create_key(key(admin::KeyType::Ed25519, "ed25519")).await?.into_inner().key_id;
    let hmac = ops.create_key(key(admin::KeyType::HmacSha256, "hmac")).await?.into_inner().key_id;
    let secret = ops
        .create_secret(admin::CreateSecretRequest {
            keystore_id: created.id.clone(),
            name: "secret".into(),
            value: SECRET.into(),
            max_versions: 0,
        })
        .await?
        .into_inner()
        .key_id;
    let mut keys = stack.skm.keys();
    let ciphertext = keys
        .encrypt(api::EncryptRequest { key_id: aes.clone(), plaintext: PLAINTEXT.to_vec(), aad: AAD.to_vec() })
        .await?
        .into_inner()
        .ciphertext;
    let signature = keys
        .sign(api::SignRequest {
            key_id: ed25519.clone(),
            input: Some(api::sign_request::Input::Message(MESSAGE.to_vec())),
            algorithm: 0,
        })
        .await?
        .into_inner()
        .signature;
    let mac = keys
        .generate_mac(api::GenerateMacRequest { key_id: hmac.clone(), message: MESSAGE.to_vec() })
        .await?
        .into_inner()
        .mac;
    Ok(Keystore { name, id: created.id, policy, aes, ed25519, hmac, secret, ciphertext, signature, mac })
}

async fn apply_policy(stack: &Stack, ks: &Keystore) -> anyhow::Result<()> {
    let p = &ks.policy;
    let policy = admin::Policy {
        allow_ips: p.ips.iter().map(ToString::to_string).collect(),
        allow_macs: p.macs.iter().map(|m| (*m).to_owned()).collect(),
        allow_asserted_mac: p.asserted,
        require_cert: p.cert,
        mode: if p.any { admin::PolicyMode::Any } else { admin::PolicyMode::All } as i32,
    };
    stack
        .admin()
        .update_keystore(admin::UpdateKeystoreRequest { alias: None, keystore_id: ks.id.clone(), policy: Some(policy) })
        .await?;
    Ok(())
}

/// Issues a client certificate from `keystore_id` into a PKCS#12 file;
/// returns the probe identity and the certificate's SHA-256.
async fn issue(stack: &Stack, keystore_id: &str, name: &str) -> anyhow::Result<(Value, String)> {
    let issued = stack
        .admin()
        .issue_client_certificate(admin::IssueClientCertificateRequest {
            keystore_id: keystore_id.to_owned(),
            name: name.to_owned(),
            days: 1,
            password: P12_PASSWORD.into(),
        })
        .await?
        .into_inner();
    let (file, password_file) =
        (stack.files.path().join(format!("{name}.p12")), stack.files.path().join(format!("{name}.pass")));
    std::fs::write(&file, &issued.pkcs12)?;
    std::fs::write(&password_file, format!("{P12_PASSWORD}\n"))?;
    Ok((json!({"p12": {"file": file, "password_file": password_file}}), issued.sha256))
}

// ---------------------------------------------------------------------------
// Checks

/// Collects every mismatch, so that one run shows them all.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn push(&mut self, id: &str, want: impl std::fmt::Display, got: &Outcome) {
        self.0.push(format!("{id}: want {want}; got code {} {:?} {:?}", got.code, got.message, got.detail));
    }
}

/// Every call was answered once, in order, after one warm-up per user-port
/// identity.
fn answered_all(what: &str, calls: &[Call], outcomes: &[Outcome]) {
    let answered: Vec<&str> = outcomes.iter().filter(|o| !o.id.ends_with("#warm-up")).map(|o| o.id.as_str()).collect();
    let asked: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(answered, asked, "{what}: the probe answered other calls than asked");
    let user_identities: std::collections::HashSet<String> =
        calls.iter().filter(|c| c.port == "user").map(|c| c.identity.to_string()).collect();
    let warm_ups = outcomes.len() - answered.len();
    assert_eq!(warm_ups, user_identities.len(), "{what}: one warm-up per user-port identity");
}

fn by_id(outcomes: &[Outcome]) -> HashMap<&str, &Outcome> {
    outcomes.iter().map(|o| (o.id.as_str(), o)).collect()
}

/// Checks a WhoAmI answer (a warm-up, or a call of the matrix).
fn check_who_am_i(m: &mut Mismatches, got: &Outcome, position: &Position, asserted: Option<&str>, cert: &str) {
    if got.code != 0 {
        return m.push(&got.id, "WhoAmI OK", got);
    }
    let me: Value = serde_json::from_str(&got.detail).unwrap();
    let want = json!({
        "client_ip": position.ip.to_string(),
        "proxied_by": "",
        "verified_mac": position.verified_mac.unwrap_or_default(),
        "asserted_mac": asserted.unwrap_or_default(),
        "certificate_sha256": cert,
    });
    for (field, value) in want.as_object().unwrap() {
        if &me[field] != value {
            m.push(&got.id, format!("{field} = {value}"), got);
        }
    }
}

/// The matrix of user calls from one position, with their expectations.
fn user_matrix(
    stack: &Stack,
    position: &Position,
    keystores: &[Keystore],
) -> (Vec<Call>, HashMap<String, Result<(), String>>) {
    let mut calls = Vec::new();
    let mut expectations = HashMap::new();
    for who in EVERYONE {
        for asserted_mac in [None, Some(ASSERTED_MAC), Some(WRONG_MAC)] {
            let tag = format!("{}|{}|{}", position.name, who.name(), asserted_mac.unwrap_or("-"));
            calls.push(Call {
                id: format!("{tag}|WhoAmI"),
                port: "user",
                identity: stack.identity(who),
                asserted_mac,
                rpc: "WhoAmI",
                ..Call::default()
            });
            calls.push(Call {
                id: format!("{tag}|WhoAmI|rest"),
                port: "rest",
                identity: stack.identity(who),
                asserted_mac,
                rpc: "WhoAmI",
                ..Call::default()
            });
            for ks in keystores {
                let caller = Caller { position, who, asserted_mac };
                for rpc in USER_RPCS {
                    // The same call on the gRPC user port and as JSON on the
                    // REST listener: the same answer.
                    for port in ["user", "rest"] {
                        let id = format!("{tag}|{}|{rpc}|{port}", ks.name);
                        expectations.insert(id.clone(), expected(&ks.policy, &caller));
                        calls.push(Call { id, identity: stack.identity(who), asserted_mac, port, ..ks.call(rpc) });
                    }
                }
            }
        }
    }
    (calls, expectations)
}

fn check_user_outcomes(
    m: &mut Mismatches,
    stack: &Stack,
    position: &Position,
    outcomes: &[Outcome],
    expectations: &HashMap<String, Result<(), String>>,
) -> (usize, usize) {
    let (mut allowed, mut denied) = (0, 0);
    for got in outcomes {
        let fields: Vec<&str> = got.id.split(['|', '#']).collect();
        let who = EVERYONE.into_iter().find(|w| w.name() == fields[1]).unwrap();
        let asserted = Some(fields[2]).filter(|m| *m != "-");
        if got.id.ends_with("#warm-up") {
            // The first call on each connection: no MAC asserted yet.
            check_who_am_i(m, got, position, None, stack.sha256(who));
            continue;
        }
        if fields[3] == "WhoAmI" {
            check_who_am_i(m, got, position, asserted, stack.sha256(who));
            continue;
        }
        let rpc = fields[4];
        match &expectations[&got.id] {
            Ok(()) => {
                allowed += 1;
                if got.code != 0 {
                    m.push(&got.id, "OK", got);
                } else if let Some(detail) = allowed_detail(rpc)
                    && got.detail != detail
                {
                    m.push(&got.id, format!("OK with {detail:?}"), got);
                }
            }
            Err(denial) => {
                denied += 1;
                if got.code != Code::PermissionDenied as i32 || &got.message != denial {
                    m.push(&got.id, format!("PERMISSION_DENIED {denial:?}"), got);
                }
            }
        }
    }
    (allowed, denied)
}

/// AdminService calls with harmless arguments: unknown ids, invalid input.
fn admin_call(rpc: &'static str) -> Call {
    let mut call = Call { rpc, ..Call::default() };
    match rpc {
        // No policy at all: INVALID_ARGUMENT when it gets through.
        "CreateKeystore" => call.name = "matrix-never-created".into(),
        "ListKeystores"
        | "ListAudit"
        | "VerifyAudit"
        | "GetSystemKeyStatus"
        | "RetireSystemKeyVersion"
        | "CreateConsoleSignIn" => {}
        // An empty fingerprint: INVALID_ARGUMENT.
        "RevokeOperator" => {}
        "GetKeystore"
        | "UpdateKeystore"
        | "DeleteKeystore"
        | "IssueClientCertificate"
        | "RegisterClientCertificate"
        | "RevokeClientCertificate"
        | "CreateKey"
        | "CreateSecret"
        | "ListKeys" => {
            call.keystore_id = UNKNOWN_ID.into();
            call.name = "matrix".into();
            call.sha256 = "ab".repeat(32);
        }
        _ => call.key_id = UNKNOWN_ID.into(),
    }
    call
}

/// Codes of calls that got past authorisation to a handler (the core
/// checks the role before anything else, so FAILED_PRECONDITION — e.g.
/// CreateConsoleSignIn on a kms-api without a console — comes only from
/// the operation itself).
fn reached_handler(code: i32) -> bool {
    [Code::Ok, Code::NotFound, Code::InvalidArgument, Code::FailedPrecondition].iter().any(|c| *c as i32 == code)
}

// ---------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_combination_not_allowed_is_refused() {
    if skm_e2e::left_out("netns") {
        return;
    }
    if let Some(missing) = missing_prerequisite() {
        panic!(
            "the access matrix in network namespaces needs {missing}; to leave the group out instead: SKM_SKIP=netns"
        );
    }
    let started = Instant::now();
    let net = Network::create().unwrap();
    let (a, b) = (net.a(), net.b());
    let mut stack = start_stack().await.unwrap();

    // Keystores: made reachable from loopback to prepare inputs, then given
    // their real policies.
    let loopback: Ipv4Addr = Ipv4Addr::LOCALHOST;
    let combined =
        |any| Policy { ips: vec![a.ip, loopback], macs: vec![A_MAC, ASSERTED_MAC], asserted: true, cert: true, any };
    let none = Policy { ips: vec![], macs: vec![], asserted: false, cert: false, any: false };
    let specs = [
        ("ip-only", Policy { ips: vec![a.ip], ..none.clone() }),
        ("mac-only", Policy { macs: vec![A_MAC], ..none.clone() }),
        ("mac-asserted", Policy { macs: vec![A_MAC, ASSERTED_MAC], asserted: true, ..none.clone() }),
        ("cert-only", Policy { cert: true, ..none.clone() }),
        ("all-of-three", combined(false)),
        ("any-of-three", combined(true)),
    ];
    let mut keystores = Vec::new();
    for (name, policy) in specs {
        keystores.push(keystore(&stack, name, policy).await.unwrap());
    }
    let cert_only = keystores.iter().find(|k| k.name == "cert-only").unwrap().id.clone();
    let user = issue(&stack, &cert_only, "matrix-user").await.unwrap();
    let unrelated = keystore(&stack, "unrelated", Policy { ips: vec![loopback], ..none.clone() }).await.unwrap();
    let other = issue(&stack, &unrelated.id, "matrix-other").await.unwrap();
    for ks in keystores.iter().filter(|k| k.policy.cert && k.id != cert_only) {
        stack
            .admin()
            .register_client_certificate(admin::RegisterClientCertificateRequest {
                keystore_id: ks.id.clone(),
                name: "matrix-user".into(),
                sha256: user.1.clone(),
            })
            .await
            .unwrap();
    }
    stack.identities.insert(Who::User, user);
    stack.identities.insert(Who::Other, other);
    for ks in &keystores {
        apply_policy(&stack, ks).await.unwrap();
    }

    let positions = [
        Position { name: "A", ns: Some(a.ns.clone()), server: a.host_ip, ip: a.ip, verified_mac: Some(a.mac) },
        Position { name: "B", ns: Some(b.ns.clone()), server: b.host_ip, ip: b.ip, verified_mac: Some(b.mac) },
        Position { name: "L", ns: None, server: loopback, ip: loopback, verified_mac: None },
    ];

    // The namespaces reach kms-api (links come up asynchronously).
    for position in &positions[..2] {
        let hello = Call {
            id: "hello".into(),
            port: "user",
            identity: stack.identity(Who::Nobody),
            rpc: "WhoAmI",
            ..Call::default()
        };
        eventually(&format!("{} reaches kms-api", position.name), READY, || async {
            probe(position.ns.as_deref(), &stack, position.server, vec![hello.clone()])
                .await
                .is_ok_and(|o| o.iter().all(|o| o.code == 0))
        })
        .await
        .unwrap();
    }

    // The user matrix, the three positions at once.
    let mut m = Mismatches::default();
    let matrices: Vec<_> = positions.iter().map(|p| user_matrix(&stack, p, &keystores)).collect();
    let run = |i: usize| probe(positions[i].ns.as_deref(), &stack, positions[i].server, matrices[i].0.clone());
    let matrix_started = Instant::now();
    let (ra, rb, rl) = tokio::join!(run(0), run(1), run(2));
    let matrix_time = matrix_started.elapsed();
    let results = [ra, rb, rl];
    let mut per_position = Vec::new();
    for ((position, (calls, expectations)), outcomes) in positions.iter().zip(&matrices).zip(results) {
        let outcomes = outcomes.unwrap();
        answered_all(position.name, calls, &outcomes);
        let (allowed, denied) = check_user_outcomes(&mut m, &stack, position, &outcomes, expectations);
        per_position.push(format!("{}: {} calls ({allowed} allowed, {denied} refused)", position.name, calls.len()));
    }

    // AdminService on the admin port as each identity, and on the user port.
    let mut admin_calls = Vec::new();
    for who in EVERYONE {
        for rpc in ADMIN_RPCS {
            admin_calls.push(Call {
                id: format!("admin|{}|{rpc}", who.name()),
                port: "admin",
                identity: stack.identity(who),
                ..admin_call(rpc)
            });
            admin_calls.push(Call {
                id: format!("user-port|{}|{rpc}", who.name()),
                port: "user",
                identity: stack.identity(who),
                ..admin_call(rpc)
            });
        }
    }
    let admin_total = admin_calls.len();
    let outcomes = probe(None, &stack, loopback, admin_calls.clone()).await.unwrap();
    answered_all("admin", &admin_calls, &outcomes);
    let mut codes: BTreeMap<String, BTreeMap<i32, usize>> = BTreeMap::new();
    for got in outcomes.iter().filter(|o| !o.id.ends_with("#warm-up")) {
        let fields: Vec<&str> = got.id.split('|').collect();
        let (port, who, rpc) = (fields[0], fields[1], fields[2]);
        *codes.entry(format!("{port} {who}")).or_default().entry(got.code).or_default() += 1;
        let refused =
            [TRANSPORT_ERROR, Code::Unauthenticated as i32, Code::PermissionDenied as i32].contains(&got.code);
        if port == "user-port" {
            let no_admin = [Code::Unimplemented as i32, Code::PermissionDenied as i32, Code::Unauthenticated as i32];
            if !no_admin.contains(&got.code) {
                m.push(&got.id, "no AdminService on the user port", got);
            }
            continue;
        }
        match who {
            "none" | "user" | "other" if !refused => m.push(&got.id, "refused", got),
            "admin" if !reached_handler(got.code) => m.push(&got.id, "allowed", got),
            "auditor" if kms_api::ADMIN_READS.contains(&rpc) && !reached_handler(got.code) => {
                m.push(&got.id, "allowed (a read)", got)
            }
            "auditor" if !kms_api::ADMIN_READS.contains(&rpc) && got.code != Code::PermissionDenied as i32 => {
                m.push(&got.id, "PERMISSION_DENIED (not a read)", got)
            }
            _ => {}
        }
    }

    // A revoked auditor is refused from its next call on.
    stack
        .admin()
        .revoke_operator(admin::RevokeOperatorRequest { sha256: stack.sha256(Who::Auditor).to_owned() })
        .await
        .unwrap();
    let after: Vec<Call> = [Who::Auditor, Who::Admin]
        .iter()
        .map(|who| Call {
            id: format!("revoked|{}", who.name()),
            port: "admin",
            identity: stack.identity(*who),
            ..admin_call("ListKeystores")
        })
        .collect();
    let outcomes = probe(None, &stack, loopback, after).await.unwrap();
    let got = by_id(&outcomes);
    let revoked = got["revoked|auditor"];
    if revoked.code != Code::PermissionDenied as i32 || revoked.message != "the operator certificate is revoked" {
        m.push("revoked|auditor", "PERMISSION_DENIED \"the operator certificate is revoked\"", revoked);
    }
    if got["revoked|admin"].code != 0 {
        m.push("revoked|admin", "OK", got["revoked|admin"]);
    }

    // The audit log says how each denied caller's MAC was obtained.
    let audited = |ks: &str| {
        let keystore_id = keystores.iter().find(|k| k.name == ks).unwrap().id.clone();
        let mut ops = stack.admin();
        async move {
            ops.list_audit(admin::ListAuditRequest { keystore_id, limit: 100_000, ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .entries
        }
    };
    let strict = audited("mac-only").await;
    let lax = audited("mac-asserted").await;
    let audit_checks = [
        (&strict, format!("denied: {MAC_DENIED}"), b.ip, B_MAC, "verified"),
        (&lax, format!("denied: {MAC_DENIED}"), loopback, WRONG_MAC, "asserted"),
        (&strict, "allowed".to_owned(), a.ip, A_MAC, "verified"),
        (&lax, "allowed".to_owned(), loopback, ASSERTED_MAC, "asserted"),
    ];
    for (entries, result, ip, mac, source) in audit_checks {
        let found = entries.iter().any(|e| {
            e.operation == "Encrypt"
                && e.result == result
                && e.caller_ip == ip.to_string()
                && e.caller_mac == mac
                && e.caller_mac_source == source
        });
        if !found {
            m.0.push(format!("audit: no Encrypt entry {result:?} from {ip} with {source} MAC {mac}"));
        }
    }

    let total: usize = matrices.iter().map(|(c, _)| c.len()).sum::<usize>() + admin_total + 2;
    println!("access matrix: {}", per_position.join("; "));
    println!("access matrix: {admin_total} AdminService calls, codes by port and identity: {codes:?}");
    println!("access matrix: {total} calls in all; user matrix {matrix_time:?}; whole test {:?}", started.elapsed());
    stack.stack.stop().await.unwrap();
    drop(net);
    assert!(
        m.0.is_empty(),
        "{} mismatches:\n{}",
        m.0.len(),
        m.0.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );
}
