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
//! For `docker-compose.ha.yml`, `--replicas N` gives the replicas
//! kms-api-2..N volumes of their own (mounted at `PKI/kms-api-N`, the
//! first replica's at `PKI/kms-api`) holding kms-api's certificate, whose
//! names then include kms-api-1..N, and profiles naming every replica;
//! `--etcd-members M` has `skm pki etcd` make etcd's own CA (`PKI/etcd-ca`),
//! each member's certificate (`PKI/etcd-M`) and the client certificates of
//! kms-api and system-keyd (`PKI/<tier>/etcd/`).
//!
//! ```text
//! skm-compose-init [--pki DIR] [--trust-domain TD] [--host NAME]... [--skm PATH]
//!                  [--replicas N] [--etcd-members M]
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Identities that get `ca.pem`, `cert.pem` and `key.pem` in their own directory.
const IDENTITIES: [&str; 4] = ["root-keyd", "system-keyd", "kms-api", "operator"];

/// Where client containers reach the inner tiers: the compose service
/// names and the ports of `deploy/config/*.toml`.
const INNER_ENDPOINTS: [(&str, &str); 2] = [("root_keyd", "root-keyd:7702"), ("system_keyd", "system-keyd:7703")];
/// kms-api's user and admin ports.
const USER_PORT: u16 = 7700;
const ADMIN_PORT: u16 = 7701;
/// Most kms-api replicas and etcd members this sets up.
const MAX_REPLICAS: usize = 8;
const MAX_ETCD_MEMBERS: usize = 7;
/// The tiers that use etcd, each with a client certificate in `<tier>/etcd/`.
const ETCD_CLIENTS: [&str; 2] = ["kms-api", "system-keyd"];

#[derive(Clone, Debug)]
struct Args {
    pki: PathBuf,
    trust_domain: String,
    hosts: Vec<String>,
    skm: PathBuf,
    replicas: usize,
    etcd_members: usize,
}

impl Args {
    /// Every directory a volume is mounted at.
    fn dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = std::iter::once("ca").chain(IDENTITIES).map(str::to_owned).collect();
        dirs.extend((2..=self.replicas).map(|n| format!("kms-api-{n}")));
        if self.etcd_members > 0 {
            dirs.push("etcd-ca".to_owned());
            dirs.extend((1..=self.etcd_members).map(|n| format!("etcd-{n}")));
        }
        dirs
    }

    /// The host names of kms-api: `kms-api`, or kms-api-1..N for replicas.
    fn kms_api_hosts(&self) -> Vec<String> {
        if self.replicas == 1 {
            vec!["kms-api".to_owned()]
        } else {
            (1..=self.replicas).map(|n| format!("kms-api-{n}")).collect()
        }
    }

    /// Every file a complete PKI has.
    fn expected_files(&self) -> Vec<PathBuf> {
        let pki = &self.pki;
        let mut files = vec![pki.join("ca").join("ca.pem"), pki.join("ca").join("ca.key")];
        let replicas = (2..=self.replicas).map(|n| format!("kms-api-{n}"));
        let identities: Vec<String> = IDENTITIES.iter().map(|s| (*s).to_owned()).chain(replicas.clone()).collect();
        let mut triple = |dir: PathBuf| files.extend(["ca.pem", "cert.pem", "key.pem"].map(|name| dir.join(name)));
        for id in &identities {
            triple(pki.join(id));
        }
        if self.etcd_members > 0 {
            for n in 1..=self.etcd_members {
                triple(pki.join(format!("etcd-{n}")));
            }
            for client in ETCD_CLIENTS.iter().map(|s| (*s).to_owned()).chain(replicas) {
                triple(pki.join(client).join("etcd"));
            }
            files.extend([pki.join("etcd-ca").join("ca.pem"), pki.join("etcd-ca").join("ca.key")]);
        }
        files
    }
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
        replicas: 1,
        etcd_members: 0,
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pki" => args.pki = PathBuf::from(value()?),
            "--trust-domain" => args.trust_domain = value()?,
            "--host" => args.hosts.push(value()?),
            "--skm" => args.skm = PathBuf::from(value()?),
            "--replicas" => args.replicas = count(&flag, &value()?, 1, MAX_REPLICAS)?,
            "--etcd-members" => args.etcd_members = count(&flag, &value()?, 0, MAX_ETCD_MEMBERS)?,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: skm-compose-init [--pki DIR] [--trust-domain TD] [--host NAME]... [--skm PATH] [--replicas N] [--etcd-members M]"
                ));
            }
        }
    }
    if args.replicas > 1 && args.etcd_members == 0 {
        return Err(format!("--replicas {} needs --etcd-members: replicas share one etcd store", args.replicas));
    }
    let td_ok = !args.trust_domain.is_empty()
        && args.trust_domain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !td_ok {
        return Err(format!("trust domain {:?} must be lowercase letters, digits, '.', '-', '_'", args.trust_domain));
    }
    Ok(args)
}

fn count(flag: &str, value: &str, min: usize, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{flag} is {value:?}; must be a number in {min}..={max}")),
    }
}

fn run(args: &Args) -> Result<(), String> {
    let files = args.expected_files();
    let (present, missing): (Vec<&PathBuf>, Vec<&PathBuf>) = files.iter().partition(|p| p.exists());
    if missing.is_empty() {
        let profile = args.pki.join("operator").join("profile.toml");
        if !profile.exists() {
            write_profile(&profile, args)?;
        }
        let app = args.pki.join("operator").join("app-profile.toml");
        if !app.exists() {
            write_app_profile(&app, args)?;
        }
        private_dirs(args)?;
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
    for dir in args.dirs() {
        let d = args.pki.join(dir);
        if !d.is_dir() {
            return Err(format!("{} is missing: mount that volume there", d.display()));
        }
    }
    let mut init: Vec<String> =
        ["pki", "init", "--trust-domain", &args.trust_domain, "--out"].map(str::to_owned).into();
    init.push(args.pki.display().to_string());
    let replica_hosts = if args.replicas > 1 { args.kms_api_hosts() } else { Vec::new() };
    for host in args.hosts.iter().chain(&replica_hosts) {
        init.extend(["--host".to_owned(), host.clone()]);
    }
    skm(args, &init)?;
    if args.etcd_members > 0 {
        let mut etcd: Vec<String> = ["pki", "etcd", "--out"].map(str::to_owned).into();
        etcd.extend([args.pki.display().to_string(), "--members".to_owned(), args.etcd_members.to_string()]);
        for client in ETCD_CLIENTS {
            etcd.extend(["--client".to_owned(), client.to_owned()]);
        }
        skm(args, &etcd)?;
    }
    // Every replica is kms-api: the same certificate, in its own volume.
    for n in 2..=args.replicas {
        let replica = args.pki.join(format!("kms-api-{n}"));
        let mut from_to = vec![(args.pki.join("kms-api"), replica.clone())];
        if args.etcd_members > 0 {
            from_to.push((args.pki.join("kms-api").join("etcd"), replica.join("etcd")));
        }
        for (from, to) in from_to {
            std::fs::create_dir_all(&to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
            for name in ["ca.pem", "cert.pem", "key.pem"] {
                std::fs::copy(from.join(name), to.join(name))
                    .map_err(|e| format!("cannot copy {} to {}: {e}", from.join(name).display(), to.display()))?;
            }
        }
    }
    write_profile(&args.pki.join("operator").join("profile.toml"), args)?;
    write_app_profile(&args.pki.join("operator").join("app-profile.toml"), args)?;
    private_dirs(args)?;
    println!(
        "skm-compose-init: PKI for {} created; each tier's volume holds only its own certificate and key",
        args.trust_domain
    );
    Ok(())
}

fn skm(args: &Args, argv: &[String]) -> Result<(), String> {
    let status =
        Command::new(&args.skm).args(argv).status().map_err(|e| format!("cannot run {}: {e}", args.skm.display()))?;
    if !status.success() {
        return Err(format!("skm {} failed ({status})", argv[..2].join(" ")));
    }
    Ok(())
}

/// Makes every volume's directory (keys inside) its owner's only, 0700:
/// `skm pki init` writes the keys 0600, but a volume's directory comes with
/// the image's mode. Every container runs as the same user, the owner.
fn private_dirs(args: &Args) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for dir in args.dirs() {
        let d = args.pki.join(dir);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private (0700): {e}", d.display()))?;
    }
    Ok(())
}

/// Writes the profile next to the operator's files (relative paths are
/// taken from the profile's directory), atomically.
fn write_profile(path: &Path, args: &Args) -> Result<(), String> {
    let mut text = format!(
        "# SKM profile of client and operator containers (written by skm-compose-init)\n\
         trust_domain = \"{}\"\nca = \"ca.pem\"\n",
        args.trust_domain
    );
    text.push_str(&endpoints(args, "user_endpoint", "user_replicas", USER_PORT));
    text.push_str(&endpoints(args, "admin_endpoint", "admin_replicas", ADMIN_PORT));
    for (field, endpoint) in INNER_ENDPOINTS {
        text.push_str(&format!("{field} = \"{endpoint}\"\n"));
    }
    text.push_str("\n[operator]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n");
    write_atomically(path, &text)
}

/// `field = "kms-api:PORT"`; with replicas the first one's, and `list`
/// naming the others (skm-client fails over between them all).
fn endpoints(args: &Args, field: &str, list: &str, port: u16) -> String {
    let hosts = args.kms_api_hosts();
    let mut text = format!("{field} = \"{}:{port}\"\n", hosts[0]);
    if hosts.len() > 1 {
        let others: Vec<String> = hosts[1..].iter().map(|h| format!("\"{h}:{port}\"")).collect();
        text.push_str(&format!("{list} = [{}]\n", others.join(", ")));
    }
    text
}

/// Writes the application profile: the user endpoint(s) and the CA,
/// nothing of the operator's.
fn write_app_profile(path: &Path, args: &Args) -> Result<(), String> {
    let text = format!(
        "# SKM application profile (written by skm-compose-init): the user port and the deployment CA.\n\
         # Add [client] cert/key (or p12/password_file) when a keystore requires a client certificate.\n\
         trust_domain = \"{}\"\nca = \"ca.pem\"\n{}",
        args.trust_domain,
        endpoints(args, "user_endpoint", "user_replicas", USER_PORT)
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
        mounts_for(1, 0)
    }

    /// [`mounts`] for `replicas` kms-api replicas and `etcd` etcd members.
    fn mounts_for(replicas: usize, etcd: usize) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let pki = dir.0.join("pki");
        let a = Args { pki: pki.clone(), replicas, etcd_members: etcd, ..args(&[]).unwrap() };
        for d in a.dirs() {
            std::fs::create_dir_all(pki.join(d)).unwrap();
        }
        (dir, pki)
    }

    /// An `skm` stand-in: a script that writes every file `skm pki init
    /// --trust-domain TD --out DIR` and `skm pki etcd --out DIR --members 3
    /// --client kms-api --client system-keyd` write (or fails, with `fail`),
    /// each call's arguments appended to `skm-args`.
    fn fake_skm(dir: &Path, fail: bool) -> PathBuf {
        let path = dir.join("skm");
        let body = if fail {
            "#!/bin/sh\nexit 3\n".to_owned()
        } else {
            let mut s = String::from("#!/bin/sh\nif [ \"$2\" = init ]; then out=$6; else out=$4; fi\n");
            s.push_str("echo \"$@\" >> \"$out/../skm-args\"\n");
            s.push_str("triple() { mkdir -p \"$1\"; for f in ca.pem cert.pem key.pem; do touch \"$1/$f\"; done; }\n");
            s.push_str("if [ \"$2\" = init ]; then\n");
            s.push_str("touch \"$out/ca/ca.pem\" \"$out/ca/ca.key\"\n");
            for id in IDENTITIES {
                s.push_str(&format!("triple \"$out/{id}\"\n"));
            }
            s.push_str("else\ntouch \"$out/etcd-ca/ca.pem\" \"$out/etcd-ca/ca.key\"\n");
            s.push_str("for m in 1 2 3; do triple \"$out/etcd-$m\"; done\n");
            s.push_str("triple \"$out/kms-api/etcd\"; triple \"$out/system-keyd/etcd\"\nfi\n");
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
        assert_eq!((a.replicas, a.etcd_members), (1, 0));
        let a = args(&["--replicas", "2", "--etcd-members", "3"]).unwrap();
        assert_eq!((a.replicas, a.etcd_members), (2, 3));
        assert!(args(&["--replicas", "0"]).unwrap_err().contains("--replicas is \"0\"; must be a number in 1..=8"));
        assert!(args(&["--etcd-members", "8"]).unwrap_err().contains("must be a number in 0..=7"));
        assert!(args(&["--replicas", "2"]).unwrap_err().contains("needs --etcd-members"));
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
        let a = Args {
            pki: pki.clone(),
            trust_domain: "td.test".into(),
            hosts: vec!["h1".into()],
            skm,
            ..args(&[]).unwrap()
        };
        run(&a).unwrap();
        let called = std::fs::read_to_string(dir.0.join("skm-args")).unwrap();
        assert_eq!(called.trim(), format!("pki init --trust-domain td.test --out {} --host h1", pki.display()));
        assert!(a.expected_files().iter().all(|f| f.exists()));
        let profile = std::fs::read_to_string(pki.join("operator/profile.toml")).unwrap();
        assert!(profile.contains("trust_domain = \"td.test\"\n"), "{profile}");
        for (field, endpoint) in [
            ("user_endpoint", "kms-api:7700"),
            ("admin_endpoint", "kms-api:7701"),
            ("root_keyd", "root-keyd:7702"),
            ("system_keyd", "system-keyd:7703"),
        ] {
            assert!(profile.contains(&format!("{field} = \"{endpoint}\"\n")), "{profile}");
        }
        assert!(!profile.contains("replicas"), "{profile}");
        assert!(profile.contains("[operator]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"), "{profile}");
        assert!(!pki.join("operator/profile.toml.tmp").exists());
        let app = std::fs::read_to_string(pki.join("operator/app-profile.toml")).unwrap();
        assert!(app.contains("user_endpoint = \"kms-api:7700\"\n") && app.contains("ca = \"ca.pem\"\n"), "{app}");
        assert!(!app.contains("[operator]") && !app.contains("admin_endpoint"), "{app}");
        assert_private_dirs(&pki);
    }

    fn assert_private_dirs(pki: &Path) {
        assert_private(&Args { pki: pki.to_owned(), ..args(&[]).unwrap() });
    }

    fn assert_private(a: &Args) {
        use std::os::unix::fs::PermissionsExt;
        for dir in a.dirs() {
            let mode = std::fs::metadata(a.pki.join(&dir)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{dir}");
        }
    }

    #[test]
    fn replicas_on_etcd_get_their_own_volumes_etcd_certificates_and_profiles_naming_all() {
        let (dir, pki) = mounts_for(2, 3);
        let a = Args {
            pki: pki.clone(),
            skm: fake_skm(&dir.0, false),
            ..args(&["--trust-domain", "td.test", "--replicas", "2", "--etcd-members", "3"]).unwrap()
        };
        run(&a).unwrap();
        let called = std::fs::read_to_string(dir.0.join("skm-args")).unwrap();
        let out = pki.display();
        assert_eq!(
            called.lines().collect::<Vec<_>>(),
            [
                format!("pki init --trust-domain td.test --out {out} --host kms-api-1 --host kms-api-2"),
                format!("pki etcd --out {out} --members 3 --client kms-api --client system-keyd"),
            ]
        );
        let files = a.expected_files();
        assert!(files.contains(&pki.join("kms-api-2/key.pem")) && files.contains(&pki.join("kms-api-2/etcd/key.pem")));
        assert!(files.contains(&pki.join("etcd-3/cert.pem")) && files.contains(&pki.join("etcd-ca/ca.key")));
        let absent: Vec<_> = files.iter().filter(|f| !f.exists()).collect();
        assert!(absent.is_empty(), "{absent:?}");
        let profile = std::fs::read_to_string(pki.join("operator/profile.toml")).unwrap();
        for line in [
            "user_endpoint = \"kms-api-1:7700\"\n",
            "user_replicas = [\"kms-api-2:7700\"]\n",
            "admin_endpoint = \"kms-api-1:7701\"\n",
            "admin_replicas = [\"kms-api-2:7701\"]\n",
        ] {
            assert!(profile.contains(line), "{line} in {profile}");
        }
        let app = std::fs::read_to_string(pki.join("operator/app-profile.toml")).unwrap();
        assert!(app.contains("user_replicas = [\"kms-api-2:7700\"]\n") && !app.contains("admin"), "{app}");
        assert_private(&a);
        // A replica volume left out of the mounts is named.
        let (dir, pki) = mounts_for(1, 3);
        let err = run(&Args { pki: pki.clone(), skm: fake_skm(&dir.0, false), ..a }).unwrap_err();
        assert!(err.contains("kms-api-2 is missing: mount that volume there"), "{err}");
    }

    #[test]
    fn a_complete_pki_is_kept_without_running_skm() {
        let (dir, pki) = mounts();
        let skm = fake_skm(&dir.0, false);
        let a = Args {
            pki: pki.clone(),
            trust_domain: "td.test".into(),
            hosts: vec![],
            skm: skm.clone(),
            ..args(&[]).unwrap()
        };
        run(&a).unwrap();
        let before: Vec<_> =
            a.expected_files().iter().map(|f| std::fs::metadata(f).unwrap().modified().unwrap()).collect();
        std::fs::remove_file(dir.0.join("skm-args")).unwrap();
        std::fs::remove_file(pki.join("operator/profile.toml")).unwrap();
        run(&Args { skm: dir.0.join("absent"), ..a.clone() }).unwrap();
        assert!(!dir.0.join("skm-args").exists(), "skm ran again");
        let after: Vec<_> =
            a.expected_files().iter().map(|f| std::fs::metadata(f).unwrap().modified().unwrap()).collect();
        assert_eq!(before, after);
        assert!(pki.join("operator/profile.toml").exists(), "a missing profile is written again");
        // An existing deployment's directories are narrowed too.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pki.join("kms-api"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let again = Args { skm: dir.0.join("absent"), ..a };
        run(&again).unwrap();
        assert_private_dirs(&pki);
    }

    #[test]
    fn a_half_made_pki_a_missing_mount_or_a_failing_skm_is_an_error() {
        let (dir, pki) = mounts();
        std::fs::write(pki.join("ca/ca.pem"), "x").unwrap();
        let a =
            Args { pki: pki.clone(), skm: fake_skm(&dir.0, false), ..args(&["--trust-domain", "td.test"]).unwrap() };
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
