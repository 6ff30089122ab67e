//! `skm-compose-init`: the one-shot `init` service of `docker-compose.yml`.
//!
//! The compose file mounts each tier's volume at `PKI/<tier>`, the CA's
//! volume at `PKI/ca` and the operator's at `PKI/operator`, so that
//! `skm pki init --out PKI` writes each tier's certificate and key straight
//! into that tier's volume and nowhere else. Then it writes
//! `PKI/operator/profile.toml`, the profile of client and operator
//! containers (`SKM_PROFILE` in the skm image).
//!
//! Idempotent: when the PKI is complete it changes nothing (a second
//! `docker-compose up` keeps every certificate); a half-made PKI is an error
//! that names the missing files. The images are `FROM scratch`, so there is
//! no shell to do this in.
//!
//! ```text
//! skm-compose-init [--pki DIR] [--trust-domain TD] [--host NAME]... [--skm PATH]
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Identities that get `ca.pem`, `cert.pem` and `key.pem` in their own directory.
const IDENTITIES: [&str; 4] = ["root-keyd", "system-keyd", "kms-api", "operator"];

/// Where client containers reach the tiers: the compose service names and
/// the ports of `deploy/config/*.toml`.
const ENDPOINTS: [(&str, &str); 4] = [
    ("user_endpoint", "kms-api:7700"),
    ("admin_endpoint", "kms-api:7701"),
    ("root_keyd", "root-keyd:7702"),
    ("system_keyd", "system-keyd:7703"),
];

struct Args {
    pki: PathBuf,
    trust_domain: String,
    hosts: Vec<String>,
    skm: PathBuf,
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)).and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skm-compose-init: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        pki: PathBuf::from("/pki"),
        trust_domain: std::env::var("SKM_TRUST_DOMAIN").unwrap_or_else(|_| "skm.local".to_owned()),
        hosts: Vec::new(),
        skm: PathBuf::from("/usr/local/bin/skm"),
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pki" => args.pki = PathBuf::from(value()?),
            "--trust-domain" => args.trust_domain = value()?,
            "--host" => args.hosts.push(value()?),
            "--skm" => args.skm = PathBuf::from(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: skm-compose-init [--pki DIR] [--trust-domain TD] [--host NAME]... [--skm PATH]"
                ));
            }
        }
    }
    let td_ok = !args.trust_domain.is_empty()
        && args.trust_domain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !td_ok {
        return Err(format!("trust domain {:?} must be lowercase letters, digits, '.', '-', '_'", args.trust_domain));
    }
    Ok(args)
}

/// Every file a complete PKI has.
fn expected_files(pki: &Path) -> Vec<PathBuf> {
    let mut files = vec![pki.join("ca").join("ca.pem"), pki.join("ca").join("ca.key")];
    for id in IDENTITIES {
        for name in ["ca.pem", "cert.pem", "key.pem"] {
            files.push(pki.join(id).join(name));
        }
    }
    files
}

fn run(args: &Args) -> Result<(), String> {
    let files = expected_files(&args.pki);
    let (present, missing): (Vec<&PathBuf>, Vec<&PathBuf>) = files.iter().partition(|p| p.exists());
    if missing.is_empty() {
        let profile = args.pki.join("operator").join("profile.toml");
        if !profile.exists() {
            write_profile(&profile, &args.trust_domain)?;
        }
        println!("skm-compose-init: PKI present in {}, kept as it is", args.pki.display());
        return Ok(());
    }
    if !present.is_empty() {
        let names: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "incomplete PKI, missing {}; remove the volumes (docker-compose down -v) to start over",
            names.join(", ")
        ));
    }
    for dir in std::iter::once("ca").chain(IDENTITIES) {
        let d = args.pki.join(dir);
        if !d.is_dir() {
            return Err(format!("{} is missing: mount that volume there", d.display()));
        }
    }
    let mut cmd = Command::new(&args.skm);
    cmd.args(["pki", "init", "--trust-domain", &args.trust_domain, "--out"]).arg(&args.pki);
    for host in &args.hosts {
        cmd.args(["--host", host]);
    }
    let status = cmd.status().map_err(|e| format!("cannot run {}: {e}", args.skm.display()))?;
    if !status.success() {
        return Err(format!("skm pki init failed ({status})"));
    }
    write_profile(&args.pki.join("operator").join("profile.toml"), &args.trust_domain)?;
    println!(
        "skm-compose-init: PKI for {} created; each tier's volume holds only its own certificate and key",
        args.trust_domain
    );
    Ok(())
}

/// Writes the profile next to the operator's files (relative paths are
/// taken from the profile's directory), atomically.
fn write_profile(path: &Path, trust_domain: &str) -> Result<(), String> {
    let mut text = format!(
        "# SKM profile of client and operator containers (written by skm-compose-init)\n\
         trust_domain = \"{trust_domain}\"\nca = \"ca.pem\"\n"
    );
    for (field, endpoint) in ENDPOINTS {
        text.push_str(&format!("{field} = \"{endpoint}\"\n"));
    }
    text.push_str("\n[operator]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n");
    let tmp = path.with_extension("toml.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}
