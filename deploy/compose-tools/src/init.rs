//! `skm-compose-init`: the one-shot `init` service of `docker-compose.yml`.
//!
//! The compose file mounts each tier's volume at `PKI/<tier>`, the CA's
//! volume at `PKI/ca` and the operator's at `PKI/operator`, so that
//! `skm pki init --out PKI` writes each tier's certificate and key straight
//! into that tier's volume and nowhere else. Then it writes
//! `PKI/operator/profile.toml`, the profile of client and operator
//! containers (`SKM_PROFILE` in the skm image), and
//! `PKI/operator/app-profile.toml`, the application profile (the user port
//! and the CA only: no operator certificate, no inner tiers).
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

#[derive(Debug)]
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
        let app = args.pki.join("operator").join("app-profile.toml");
        if !app.exists() {
            write_app_profile(&app, &args.trust_domain)?;
        }
        private_dirs(&args.pki)?;
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
    write_app_profile(&args.pki.join("operator").join("app-profile.toml"), &args.trust_domain)?;
    private_dirs(&args.pki)?;
    println!(
        "skm-compose-init: PKI for {} created; each tier's volume holds only its own certificate and key",
        args.trust_domain
    );
    Ok(())
}

/// Makes every volume's directory (keys inside) its owner's only, 0700:
/// `skm pki init` writes the keys 0600, but a volume's directory comes with
/// the image's mode. Every container runs as the same user, the owner.
fn private_dirs(pki: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for dir in std::iter::once("ca").chain(IDENTITIES) {
        let d = pki.join(dir);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private (0700): {e}", d.display()))?;
    }
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
    write_atomically(path, &text)
}

/// Writes the application profile: the user endpoint and the CA, nothing
/// of the operator's.
fn write_app_profile(path: &Path, trust_domain: &str) -> Result<(), String> {
    let text = format!(
        "# SKM application profile (written by skm-compose-init): the user port and the deployment CA.\n\
         # Add [client] cert/key (or p12/password_file) when a keystore requires a client certificate.\n\
         trust_domain = \"{trust_domain}\"\nca = \"ca.pem\"\nuser_endpoint = \"{}\"\n",
        ENDPOINTS[0].1
    );
    write_atomically(path, &text)
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("toml.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| (*s).to_owned()))
    }

    /// A fresh PKI root with the volume mount points the compose file makes.
    fn mounts() -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let pki = dir.0.join("pki");
        for d in std::iter::once("ca").chain(IDENTITIES) {
            std::fs::create_dir_all(pki.join(d)).unwrap();
        }
        (dir, pki)
    }

    /// An `skm` stand-in: a script that writes every file `skm pki init
    /// --trust-domain TD --out DIR` writes (or fails, with `fail`).
    fn fake_skm(dir: &Path, fail: bool) -> PathBuf {
        let path = dir.join("skm");
        let body = if fail {
            "#!/bin/sh\nexit 3\n".to_owned()
        } else {
            let mut s = String::from("#!/bin/sh\nout=$6\necho \"$@\" > \"$out/../skm-args\"\n");
            s.push_str("touch \"$out/ca/ca.pem\" \"$out/ca/ca.key\"\n");
            for id in IDENTITIES {
                s.push_str(&format!("for f in ca.pem cert.pem key.pem; do touch \"$out/{id}/$f\"; done\n"));
            }
            s
        };
        std::fs::write(&path, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn arguments_and_their_defaults() {
        let a = args(&[]).unwrap();
        assert_eq!(a.pki, PathBuf::from("/pki"));
        assert_eq!(a.skm, PathBuf::from("/usr/local/bin/skm"));
        assert!(a.hosts.is_empty());
        let a = args(&["--pki", "/x", "--trust-domain", "corp.example", "--host", "a", "--host", "b", "--skm", "/s"])
            .unwrap();
        assert_eq!(
            (a.pki, a.trust_domain, a.hosts, a.skm),
            ("/x".into(), "corp.example".into(), vec!["a".into(), "b".into()], "/s".into())
        );
        assert!(args(&["--pki"]).unwrap_err().contains("--pki needs a value"));
        assert!(args(&["--bogus"]).unwrap_err().contains("unknown argument \"--bogus\""));
        for bad in ["", "Upper.case", "a b", "x/y", "spiffe://x"] {
            assert!(args(&["--trust-domain", bad]).unwrap_err().contains("trust domain"), "{bad:?}");
        }
        assert!(args(&["--trust-domain", "skm-1.test_a"]).is_ok());
    }

    #[test]
    fn a_fresh_pki_is_made_by_skm_and_gets_a_profile() {
        let (dir, pki) = mounts();
        let skm = fake_skm(&dir.0, false);
        let a = Args { pki: pki.clone(), trust_domain: "td.test".into(), hosts: vec!["h1".into()], skm };
        run(&a).unwrap();
        let called = std::fs::read_to_string(dir.0.join("skm-args")).unwrap();
        assert_eq!(called.trim(), format!("pki init --trust-domain td.test --out {} --host h1", pki.display()));
        assert!(expected_files(&pki).iter().all(|f| f.exists()));
        let profile = std::fs::read_to_string(pki.join("operator/profile.toml")).unwrap();
        assert!(profile.contains("trust_domain = \"td.test\"\n"), "{profile}");
        for (field, endpoint) in ENDPOINTS {
            assert!(profile.contains(&format!("{field} = \"{endpoint}\"\n")), "{profile}");
        }
        assert!(profile.contains("[operator]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"), "{profile}");
        assert!(!pki.join("operator/profile.toml.tmp").exists());
        let app = std::fs::read_to_string(pki.join("operator/app-profile.toml")).unwrap();
        assert!(app.contains("user_endpoint = \"kms-api:7700\"\n") && app.contains("ca = \"ca.pem\"\n"), "{app}");
        assert!(!app.contains("[operator]") && !app.contains("admin_endpoint"), "{app}");
        assert_private_dirs(&pki);
    }

    fn assert_private_dirs(pki: &Path) {
        use std::os::unix::fs::PermissionsExt;
        for dir in std::iter::once("ca").chain(IDENTITIES) {
            let mode = std::fs::metadata(pki.join(dir)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{dir}");
        }
    }

    #[test]
    fn a_complete_pki_is_kept_without_running_skm() {
        let (dir, pki) = mounts();
        let skm = fake_skm(&dir.0, false);
        let a = Args { pki: pki.clone(), trust_domain: "td.test".into(), hosts: vec![], skm: skm.clone() };
        run(&a).unwrap();
        let before: Vec<_> =
            expected_files(&pki).iter().map(|f| std::fs::metadata(f).unwrap().modified().unwrap()).collect();
        std::fs::remove_file(dir.0.join("skm-args")).unwrap();
        std::fs::remove_file(pki.join("operator/profile.toml")).unwrap();
        run(&Args { skm: dir.0.join("absent"), ..a }).unwrap();
        assert!(!dir.0.join("skm-args").exists(), "skm ran again");
        let after: Vec<_> =
            expected_files(&pki).iter().map(|f| std::fs::metadata(f).unwrap().modified().unwrap()).collect();
        assert_eq!(before, after);
        assert!(pki.join("operator/profile.toml").exists(), "a missing profile is written again");
        // An existing deployment's directories are narrowed too.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pki.join("kms-api"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let again = Args { pki: pki.clone(), trust_domain: "td.test".into(), hosts: vec![], skm: dir.0.join("absent") };
        run(&again).unwrap();
        assert_private_dirs(&pki);
    }

    #[test]
    fn a_half_made_pki_a_missing_mount_or_a_failing_skm_is_an_error() {
        let (dir, pki) = mounts();
        std::fs::write(pki.join("ca/ca.pem"), "x").unwrap();
        let a = Args { pki: pki.clone(), trust_domain: "td.test".into(), hosts: vec![], skm: fake_skm(&dir.0, false) };
        let err = run(&a).unwrap_err();
        assert!(err.contains("incomplete PKI") && err.contains("ca.key") && err.contains("kms-api/key.pem"), "{err}");
        let present = pki.join("ca/ca.pem").display().to_string();
        assert!(!err.contains(&format!("{present},")), "a present file is not missing: {err}");

        std::fs::remove_file(pki.join("ca/ca.pem")).unwrap();
        std::fs::remove_dir(pki.join("system-keyd")).unwrap();
        let err = run(&a).unwrap_err();
        assert!(err.contains("system-keyd is missing: mount that volume there"), "{err}");

        std::fs::create_dir(pki.join("system-keyd")).unwrap();
        let err = run(&Args { skm: fake_skm(&dir.0, true), ..a }).unwrap_err();
        assert!(err.contains("skm pki init failed"), "{err}");
        assert!(!pki.join("operator/profile.toml").exists());
    }

    /// A temporary directory, std only (this crate has no dependencies).
    mod tempdir {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub(super) struct Dir(pub(super) PathBuf);

        impl Dir {
            pub(super) fn new() -> Self {
                static N: AtomicUsize = AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "skm-compose-init-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                let _ = std::fs::remove_dir_all(&path);
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
