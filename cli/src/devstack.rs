//! The files of a local three-tier stack: deployment PKI, one config and
//! data directory per tier, and the profile the CLI reads. Used by
//! `skm dev` and by the whole-stack tests (which start the tiers themselves,
//! in any order).
//!
//! ```text
//! DIR/pki/ca/{ca.pem,ca.key}          deployment CA (keep ca.key offline in production)
//! DIR/pki/<tier>/{ca.pem,cert.pem,key.pem}
//! DIR/pki/operator/{ca.pem,cert.pem,key.pem}   first operator, role admin
//! DIR/<tier>/<tier>.toml              config
//! DIR/<tier>/data/                    that tier's store only
//! DIR/root-keyd/passphrase            passphrase seal only (dev)
//! DIR/root-keyd/{softhsm/,pin,so-pin} pkcs11 seal only (dev): a SoftHSM2 token and its PINs
//! DIR/profile.toml                    operator profile, for SKM_PROFILE
//! DIR/app/{profile.toml,ca.pem}       application profile: the user port and the CA only
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use skm_client::{CertFiles, Profile};
use skm_runtime::Service;

use crate::pki::{self, PkiLayout};

/// The ports of a local stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// kms-api user port.
    pub user: u16,
    /// kms-api admin port.
    pub admin: u16,
    /// root-keyd.
    pub root: u16,
    /// system-keyd.
    pub system: u16,
    /// kms-api's REST listener; `None`: off.
    pub rest: Option<u16>,
    /// kms-api's web console; `None`: off.
    pub console: Option<u16>,
}

impl Ports {
    /// `base`, `base+1`, `base+2`, `base+3`; REST off.
    pub fn from_base(base: u16) -> Self {
        Self { user: base, admin: base + 1, root: base + 2, system: base + 3, rest: None, console: None }
    }

    /// The same with the REST listener on `port`.
    pub fn with_rest(self, port: u16) -> Self {
        Self { rest: Some(port), ..self }
    }

    /// The same with the web console on `port`.
    pub fn with_console(self, port: u16) -> Self {
        Self { console: Some(port), ..self }
    }
}

/// Ports of the tiers' metrics listeners (plain HTTP on loopback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsPorts {
    /// kms-api.
    pub kms_api: u16,
    /// root-keyd.
    pub root_keyd: u16,
    /// system-keyd.
    pub system_keyd: u16,
}

impl MetricsPorts {
    /// `base`, `base+1`, `base+2` for kms-api, root-keyd, system-keyd.
    pub fn from_base(base: u16) -> Self {
        Self { kms_api: base, root_keyd: base + 1, system_keyd: base + 2 }
    }

    fn port(&self, service: Service) -> u16 {
        match service {
            Service::KmsApi => self.kms_api,
            Service::RootKeyd => self.root_keyd,
            Service::SystemKeyd => self.system_keyd,
        }
    }
}

/// How root-keyd seals its root key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevSeal {
    /// A random passphrase in `root-keyd/passphrase`: unseals itself.
    Passphrase,
    /// Shamir shares: `skm root init`, then `skm root unseal`.
    Shamir,
    /// A SoftHSM2 token in `root-keyd/softhsm/` holds the root key; the
    /// PIN is in `root-keyd/pin`.
    Pkcs11,
}

/// The SoftHSM2 folder under root-keyd's directory (pkcs11 seal).
pub const SOFTHSM_DIR: &str = "softhsm";
/// The dev token's label.
pub const DEV_TOKEN_LABEL: &str = "skm-dev";
/// Where Debian and others put the SoftHSM2 PKCS#11 library.
const SOFTHSM_MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The SoftHSM2 library: `SKM_PKCS11_MODULE` when set, else the first of
/// the usual places that exists.
pub fn softhsm_module() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SKM_PKCS11_MODULE") {
        return Ok(path.into());
    }
    SOFTHSM_MODULES.iter().map(PathBuf::from).find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!(
            "the pkcs11 seal needs SoftHSM2's library (looked in {}); on Debian: apt-get install softhsm2, \
             or set SKM_PKCS11_MODULE",
            SOFTHSM_MODULES.join(", ")
        )
    })
}

/// The `SOFTHSM2_CONF` a dev root-keyd runs with: the `softhsm2.conf` the
/// pkcs11 seal wrote beside its config, if there is one.
pub fn softhsm_conf(service: Service, config: &Path) -> Option<PathBuf> {
    let conf = config.parent()?.join(SOFTHSM_DIR).join("softhsm2.conf");
    (service == Service::RootKeyd && conf.is_file()).then_some(conf)
}

/// Makes (once) a SoftHSM2 token for root-keyd in `root_dir/softhsm/`, with
/// random user and SO PINs in `root_dir/pin` and `root_dir/so-pin`, and
/// returns the `[seal]` section that uses it.
fn dev_token(root_dir: &Path) -> anyhow::Result<String> {
    let module = softhsm_module()?;
    let softhsm = root_dir.join(SOFTHSM_DIR);
    let tokens = softhsm.join("tokens");
    skm_runtime::files::private_dir(&softhsm)?;
    skm_runtime::files::private_dir(&tokens)?;
    let conf = softhsm.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "# SoftHSM2 for skm dev's root-keyd (written by skm dev)\ndirectories.tokendir = {}\n\
             objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )?;
    let pin = root_dir.join("pin");
    if std::fs::read_dir(&tokens)?.next().is_some() {
        anyhow::ensure!(pin.is_file(), "{} holds a token but its PIN file {} is gone", tokens.display(), pin.display());
    } else {
        let user: [u8; 12] = skm_crypto::random_array()?;
        let so: [u8; 12] = skm_crypto::random_array()?;
        let (user, so) = (hex::encode(user), hex::encode(so));
        let out = std::process::Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", DEV_TOKEN_LABEL, "--pin", &user, "--so-pin", &so])
            .output()
            .map_err(|e| {
                anyhow::anyhow!("the pkcs11 seal needs softhsm2-util ({e}); on Debian: apt-get install softhsm2")
            })?;
        anyhow::ensure!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        write_private(&pin, format!("{user}\n").as_bytes())?;
        write_private(&root_dir.join("so-pin"), format!("{so}\n").as_bytes())?;
    }
    Ok(format!(
        "[seal]\nmode = \"pkcs11\"\nmodule = {}\ntoken_label = \"{DEV_TOKEN_LABEL}\"\npin_file = {}\n",
        toml_str(&module),
        toml_str(&pin)
    ))
}

/// A prepared stack.
#[derive(Clone, Debug)]
pub struct DevStack {
    /// The stack directory.
    pub dir: PathBuf,
    /// The profile file.
    pub profile_path: PathBuf,
    /// The profile.
    pub profile: Profile,
    /// The application profile (user port and CA only, no operator).
    pub app_profile_path: PathBuf,
}

impl DevStack {
    /// A tier's config file.
    pub fn config(&self, service: Service) -> PathBuf {
        self.dir.join(service.name()).join(format!("{}.toml", service.name()))
    }

    /// A tier's data directory.
    pub fn data_dir(&self, service: Service) -> PathBuf {
        self.dir.join(service.name()).join("data")
    }
}

/// The etcd key prefix of a tier's records in a dev stack.
pub fn etcd_prefix(service: Service) -> String {
    format!("skm/{}/", service.name())
}

/// The name of the first (or only) kms-api replica on etcd.
pub const FIRST_REPLICA: &str = "kms-api-1";

/// Moves kms-api's and system-keyd's records onto `cluster` (`store =
/// "etcd"`, each tier with its own client certificate and key prefix;
/// kms-api is replica [`FIRST_REPLICA`]); root-keyd keeps its seal file,
/// which never goes into a shared store.
pub fn store_on_etcd(stack: &DevStack, cluster: &crate::etcd::EtcdCluster) -> anyhow::Result<()> {
    for service in [Service::SystemKeyd, Service::KmsApi] {
        let path = stack.config(service);
        let mut config: toml::Table = std::fs::read_to_string(&path)?.parse()?;
        config.insert("store".into(), "etcd".into());
        config.insert("etcd".into(), cluster.config_section(service.name(), &etcd_prefix(service)).into());
        if service == Service::KmsApi {
            config.insert("replica".into(), FIRST_REPLICA.into());
        }
        std::fs::write(&path, format!("# {} (written by skm dev)\n{}", service.name(), toml::to_string(&config)?))?;
    }
    Ok(())
}

/// The name of kms-api replica `n` (1 is [`FIRST_REPLICA`]).
pub fn replica_name(n: u16) -> String {
    format!("kms-api-{n}")
}

/// Writes the config of kms-api replica `n` (2, 3, …) beside the first,
/// which must already be on etcd ([`store_on_etcd`]): the same store,
/// tiers and certificate; its own name, user and admin ports, data and
/// audit directories; no REST, console or metrics listener. Adds its user
/// port to both profiles' `user_replicas`. Returns the config's path.
pub fn add_replica(stack: &mut DevStack, n: u16, user: u16, admin: u16) -> anyhow::Result<PathBuf> {
    let first: toml::Table = std::fs::read_to_string(stack.config(Service::KmsApi))?.parse()?;
    if first.get("store").and_then(toml::Value::as_str) != Some("etcd") {
        anyhow::bail!("kms-api replicas share their records through etcd: put the stack on etcd first");
    }
    let name = replica_name(n);
    let dir = stack.dir.join(&name);
    skm_runtime::files::private_dir(&dir.join("data"))?;
    let mut config = first;
    for field in ["rest_listen", "console_listen", "console_url", "metrics"] {
        config.remove(field);
    }
    config.insert("replica".into(), name.clone().into());
    config.insert("user_listen".into(), format!("127.0.0.1:{user}").into());
    config.insert("admin_listen".into(), format!("127.0.0.1:{admin}").into());
    config.insert("data_dir".into(), dir.join("data").display().to_string().into());
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("# {name} (written by skm dev)\n{}", toml::to_string(&config)?))?;
    stack.profile.user_replicas.push(format!("127.0.0.1:{user}"));
    stack.profile.admin_replicas.push(format!("127.0.0.1:{admin}"));
    write_operator_profile(&stack.profile_path, &stack.profile)?;
    stack.app_profile_path = write_app_profile(&stack.dir.join("app"), &stack.profile)?;
    Ok(path)
}

/// Writes a file only its owner can read (keys, passphrases, PKCS#12).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// Creates (or reuses) the PKI, writes each tier's config and the profile.
/// Existing data directories, and an existing PKI and passphrase, are kept,
/// so a restarted stack finds its keys again. Metrics listeners are off.
pub fn prepare(dir: &Path, ports: Ports, seal: DevSeal, trust_domain: &str) -> anyhow::Result<DevStack> {
    prepare_with_metrics(dir, ports, seal, trust_domain, None)
}

/// [`prepare`], with each tier's metrics listener on 127.0.0.1 at `metrics`
/// (recorded in the profile) when given.
pub fn prepare_with_metrics(
    dir: &Path,
    ports: Ports,
    seal: DevSeal,
    trust_domain: &str,
    metrics: Option<MetricsPorts>,
) -> anyhow::Result<DevStack> {
    // The whole stack's files are one user's: keys, the dev passphrase and
    // the stores (each tier narrows its own data directory again at start).
    skm_runtime::files::private_dir(dir)?;
    let dir = dir.canonicalize()?;
    let pki_dir = dir.join("pki");
    let layout = if pki_dir.join("ca").join("ca.pem").exists() {
        PkiLayout::at(&pki_dir)
    } else {
        pki::init(&pki_dir, trust_domain, &[], "admin")?
    };
    let tls = |service: Service| {
        let files = layout.service(service);
        format!(
            "[tls]\nca = {}\ncert = {}\nkey = {}\n",
            toml_str(&files.ca),
            toml_str(&files.cert),
            toml_str(&files.key)
        )
    };
    let td = toml::Value::String(trust_domain.to_owned()).to_string();
    let addr = |port: u16| format!("\"127.0.0.1:{port}\"");

    let root_dir = dir.join(Service::RootKeyd.name());
    skm_runtime::files::private_dir(&root_dir)?;
    let seal_section = match seal {
        DevSeal::Shamir => "[seal]\nmode = \"shamir\"\n".to_owned(),
        DevSeal::Passphrase => {
            let pass = root_dir.join("passphrase");
            if !pass.exists() {
                let random: [u8; 24] = skm_crypto::random_array()?;
                write_private(&pass, format!("{}\n", hex::encode(random)).as_bytes())?;
            }
            format!("[seal]\nmode = \"passphrase\"\npassphrase_file = {}\n", toml_str(&pass))
        }
        DevSeal::Pkcs11 => dev_token(&root_dir)?,
    };
    let data = |s: Service| toml_str(&dir.join(s.name()).join("data"));
    let root_cfg = format!(
        "# root-keyd (written by skm dev)\nlisten = {}\ntrust_domain = {td}\ndata_dir = {}\n\n{}\n{seal_section}",
        addr(ports.root),
        data(Service::RootKeyd),
        tls(Service::RootKeyd),
    );
    let system_cfg = format!(
        "# system-keyd (written by skm dev)\nlisten = {}\ntrust_domain = {td}\ndata_dir = {}\nroot_keyd = {}\n\n{}",
        addr(ports.system),
        data(Service::SystemKeyd),
        addr(ports.root),
        tls(Service::SystemKeyd),
    );
    let kms_cfg = format!(
        "# kms-api (written by skm dev)\nuser_listen = {}\nadmin_listen = {}\n{}trust_domain = {td}\ndata_dir = {}\nroot_keyd = {}\nsystem_keyd = {}\n\n{}",
        addr(ports.user),
        addr(ports.admin),
        ports.rest.map(|p| format!("rest_listen = {}\n", addr(p))).unwrap_or_default()
            + &ports.console.map(|p| format!("console_listen = {}\n", addr(p))).unwrap_or_default(),
        data(Service::KmsApi),
        addr(ports.root),
        addr(ports.system),
        tls(Service::KmsApi),
    );
    let mut metrics_endpoints = std::collections::BTreeMap::new();
    for (service, mut text) in
        [(Service::RootKeyd, root_cfg), (Service::SystemKeyd, system_cfg), (Service::KmsApi, kms_cfg)]
    {
        if let Some(metrics) = metrics {
            let port = metrics.port(service);
            text.push_str(&format!("\n[metrics]\nlisten = {}\n", addr(port)));
            metrics_endpoints.insert(service.name().to_owned(), format!("127.0.0.1:{port}"));
        }
        let tier = dir.join(service.name());
        skm_runtime::files::private_dir(&tier.join("data"))?;
        std::fs::write(tier.join(format!("{}.toml", service.name())), text)?;
    }

    let operator = layout.operator();
    let profile = Profile {
        trust_domain: trust_domain.to_owned(),
        ca: operator.ca.clone(),
        user_endpoint: format!("127.0.0.1:{}", ports.user),
        user_replicas: Vec::new(),
        rest_endpoint: ports.rest.map(|p| format!("127.0.0.1:{p}")).unwrap_or_default(),
        admin_endpoint: format!("127.0.0.1:{}", ports.admin),
        admin_replicas: Vec::new(),
        root_keyd: format!("127.0.0.1:{}", ports.root),
        system_keyd: format!("127.0.0.1:{}", ports.system),
        operator: Some(CertFiles { cert: operator.cert, key: operator.key }),
        client: None,
        client_mac: None,
        metrics: metrics_endpoints,
    };
    let profile_path = dir.join("profile.toml");
    write_operator_profile(&profile_path, &profile)?;
    let app_profile_path = write_app_profile(&dir.join("app"), &profile)?;
    Ok(DevStack { dir, profile_path, profile, app_profile_path })
}

fn write_operator_profile(path: &Path, profile: &Profile) -> anyhow::Result<()> {
    let text = toml::to_string(profile)?;
    std::fs::write(
        path,
        format!("# SKM operator profile (written by skm dev); applications use app/profile.toml\n{text}"),
    )?;
    Ok(())
}

/// Writes an application profile in `dir`: a copy of the deployment CA
/// certificate and the user endpoint, no operator certificate and no inner
/// tiers. A client certificate, when a keystore wants one, is added as
/// `[client]` (`cert` + `key`, or `p12` + `password_file`).
pub fn write_app_profile(dir: &Path, operator_profile: &Profile) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = dir.join("ca.pem");
    std::fs::copy(&operator_profile.ca, &ca).with_context(|| format!("cannot write {}", ca.display()))?;
    let app = Profile {
        trust_domain: operator_profile.trust_domain.clone(),
        ca: "ca.pem".into(),
        user_endpoint: operator_profile.user_endpoint.clone(),
        user_replicas: operator_profile.user_replicas.clone(),
        rest_endpoint: operator_profile.rest_endpoint.clone(),
        admin_endpoint: String::new(),
        admin_replicas: Vec::new(),
        root_keyd: String::new(),
        system_keyd: String::new(),
        operator: None,
        client: None,
        client_mac: None,
        metrics: std::collections::BTreeMap::new(),
    };
    let path = dir.join("profile.toml");
    std::fs::write(
        &path,
        format!(
            "# SKM application profile (written by skm dev): the user port and the deployment CA.\n\
             # Add [client] cert/key (or p12/password_file) when a keystore requires a client certificate.\n{}",
            toml::to_string(&app)?
        ),
    )?;
    Ok(path)
}
