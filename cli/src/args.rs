//! The command line grammar (DESIGN §11).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// SKM, a self-hosted key manager: secrets, symmetric and asymmetric keys
/// behind per-keystore access control, on three separated tiers.
#[derive(Debug, Parser)]
#[command(name = "skm", version)]
pub struct Cli {
    /// Profile file written by `skm dev` (where the tiers are, which certificates to use).
    #[arg(long, env = "SKM_PROFILE", global = true)]
    pub profile: Option<PathBuf>,
    /// Structured output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Assert this MAC address to the user port (`x-skm-client-mac`); counts only
    /// where the keystore allows asserted MACs and the server can't see yours.
    #[arg(long, env = "SKM_CLIENT_MAC", global = true, value_name = "MAC")]
    pub client_mac: Option<String>,
    /// Client certificate for the user port, as written by `skm keystore issue-cert`.
    #[arg(long, env = "SKM_CLIENT_P12", global = true, value_name = "FILE.p12", requires = "p12_password_file")]
    pub p12: Option<PathBuf>,
    /// File holding the --p12 password.
    #[arg(long, env = "SKM_CLIENT_P12_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub p12_password_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the three tiers locally (loopback, fresh dev PKI, sled stores); Ctrl-C stops all.
    Dev(DevArgs),
    /// Health and seal state of each tier; exit 0 only when all are ready.
    Status {
        /// Keep polling up to this many seconds for the stack to become ready.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// Deployment PKI.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Root key sealing.
    #[command(subcommand)]
    Root(RootCommand),
    /// System keys: rotation, re-sealing, retirement.
    #[command(subcommand)]
    System(SystemCommand),
    /// Keystores.
    #[command(subcommand)]
    Keystore(KeystoreCommand),
    /// Keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// What kms-api sees of you (address, MAC, certificate), to debug a denial.
    Whoami,
    /// The web console.
    #[command(subcommand)]
    Console(ConsoleCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Encrypt stdin; base64 ciphertext on stdout.
    Encrypt {
        /// Key id.
        key: String,
        /// Additional authenticated data (must be given again to decrypt).
        #[arg(long)]
        aad: Option<String>,
    },
    /// Decrypt base64 ciphertext from stdin; plaintext on stdout.
    Decrypt {
        /// Key id.
        key: String,
        /// The AAD given to encrypt.
        #[arg(long)]
        aad: Option<String>,
        /// How the ciphertext was made (default: SKM's format, an aes-256 key);
        /// rsaes-oaep-sha256 for an RSA ciphertext made with an rsa-oaep-* key's public key.
        #[arg(long, value_enum)]
        algorithm: Option<EncryptionArg>,
        /// rsaes-oaep-sha256: the key version whose public key encrypted it (default: the newest).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Move a base64 ciphertext (stdin) to the key's newest version without revealing the plaintext.
    ReEncrypt {
        /// Key id.
        key: String,
        /// The AAD given to encrypt.
        #[arg(long)]
        aad: Option<String>,
    },
    /// A fresh data key: base64 plaintext then base64 ciphertext, one per line.
    DataKey {
        /// AES key id.
        key: String,
        /// Only the encrypted data key.
        #[arg(long)]
        without_plaintext: bool,
        /// AAD bound to the encrypted data key.
        #[arg(long)]
        aad: Option<String>,
    },
    /// Sign stdin; base64 signature on stdout.
    Sign {
        /// Asymmetric key id.
        key: String,
        /// Signature algorithm (default: the key's).
        #[arg(long, value_enum)]
        algorithm: Option<SignatureArg>,
        /// Hash stdin here and send only its digest (any size): SHA-256, or SHA-384 with
        /// --algorithm ecdsa-sha384; not for ed25519 or ml-dsa keys.
        #[arg(long)]
        digest: bool,
        /// ML-DSA keys: compute stdin's external mu here from the key's public key and send
        /// only its 64 bytes (any size); the signature is the message's own.
        #[arg(long, conflicts_with = "digest")]
        external_mu: bool,
    },
    /// Verify a signature of stdin; exit 0 valid, 1 invalid.
    Verify {
        /// Asymmetric key id.
        key: String,
        /// The base64 signature.
        #[arg(long)]
        signature: String,
        /// Signature algorithm (default: the key's).
        #[arg(long, value_enum)]
        algorithm: Option<SignatureArg>,
        /// Hash stdin here and send only its digest (as for sign).
        #[arg(long)]
        digest: bool,
        /// Send only stdin's external mu (as for sign), under the public key of --version
        /// (default: the newest).
        #[arg(long, conflicts_with = "digest")]
        external_mu: bool,
        /// Key version (default: try every retained version).
        #[arg(long)]
        version: Option<u32>,
    },
    /// HMAC of stdin (at most 4096 bytes) with an HMAC key; base64 tag on stdout.
    Mac {
        /// HMAC key id.
        key: String,
    },
    /// Check an HMAC tag of stdin; exit 0 valid, 1 invalid.
    VerifyMac {
        /// HMAC key id.
        key: String,
        /// The base64 tag.
        #[arg(long)]
        mac: String,
        /// Key version (default: try the newest 10).
        #[arg(long)]
        version: Option<u32>,
    },
    /// The public key of an asymmetric key: SPKI PEM (or DER with --der).
    PublicKey {
        /// Asymmetric key id.
        key: String,
        /// Version (default: the newest).
        #[arg(long)]
        version: Option<u32>,
        /// Raw DER on stdout instead of PEM.
        #[arg(long)]
        der: bool,
    },
    /// Envelope encryption of files of any size (local AES-256-GCM under a data key wrapped by SKM).
    #[command(subcommand)]
    Envelope(EnvelopeCommand),
    /// Run one tier in the foreground (used by `skm dev`).
    #[command(hide = true)]
    Daemon {
        /// Which tier.
        tier: Tier,
        /// The daemon's own arguments (e.g. --config FILE).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// How `skm keystore issue-cert` writes the certificate and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CertFormat {
    /// One PKCS#12 file protected by --password-file.
    P12,
    /// A certificate chain PEM (--out) and an unencrypted PKCS#8 key PEM (--key-out).
    Pem,
}

#[derive(Debug, Subcommand)]
pub enum EnvelopeCommand {
    /// Encrypt a file (or stdin) into one envelope blob: a fresh data key from GenerateDataKey,
    /// the data sealed locally in 64 KiB chunks, the wrapped data key in the blob (docs/CLIENTS.md).
    Encrypt {
        /// AES key id that wraps the data key.
        key: String,
        /// Input file (default: stdin).
        #[arg(long = "in", value_name = "FILE")]
        input: Option<PathBuf>,
        /// Output file (default: stdout).
        #[arg(long = "out", value_name = "FILE")]
        output: Option<PathBuf>,
        /// AAD bound to the wrapped data key (must be given again to decrypt).
        #[arg(long)]
        aad: Option<String>,
    },
    /// Decrypt an envelope blob with one call to SKM (the key id is in the blob).
    Decrypt {
        /// Input file (default: stdin).
        #[arg(long = "in", value_name = "FILE")]
        input: Option<PathBuf>,
        /// Output file (default: stdout); removed again if the blob fails to decrypt.
        #[arg(long = "out", value_name = "FILE")]
        output: Option<PathBuf>,
        /// The AAD given to encrypt.
        #[arg(long)]
        aad: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    RootKeyd,
    SystemKeyd,
    KmsApi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SealArg {
    /// Random passphrase file; root-keyd unseals itself.
    Passphrase,
    /// Shamir shares; `skm root init` then `skm root unseal`.
    Shamir,
    /// A SoftHSM2 token made in the stack directory holds the root key
    /// (needs Debian's softhsm2).
    Pkcs11,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the stack keeps its PKI, configs and data.
    #[arg(long, default_value = ".skm-dev")]
    pub data_dir: PathBuf,
    /// User port; admin, root-keyd and system-keyd take the next three, the
    /// metrics listeners of kms-api, root-keyd and system-keyd the three after,
    /// the REST listener the one after those (base+7), the web console base+8.
    #[arg(long, default_value_t = 7700)]
    pub port_base: u16,
    /// Root key seal mode.
    #[arg(long, value_enum, default_value_t = SealArg::Passphrase)]
    pub seal: SealArg,
    /// SPIFFE trust domain of the dev PKI.
    #[arg(long, default_value = "skm.local")]
    pub trust_domain: String,
    /// Where kms-api and system-keyd keep their records: sled directories,
    /// or a three-member etcd cluster started on loopback (Debian's
    /// etcd-server; client ports base+9, base+11, base+13).
    #[arg(long, value_enum, default_value_t = StoreArg::Sled)]
    pub store: StoreArg,
    /// kms-api replicas (1..=8; more than one needs `--store etcd`):
    /// replica n ≥ 2 takes user port base+15+2(n-2) and the admin port
    /// after it, and the profiles list every replica's user port.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub replicas: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreArg {
    /// One embedded sled store per tier, under the stack directory.
    Sled,
    /// A local three-member etcd cluster under the stack directory.
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Everything.
    Admin,
    /// Read-only: list, describe, audit.
    Auditor,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the deployment CA, service certificates and a first operator certificate.
    Init {
        /// Output directory (must not hold a PKI already).
        #[arg(long)]
        out: PathBuf,
        /// SPIFFE trust domain.
        #[arg(long, default_value = "skm.local")]
        trust_domain: String,
        /// Extra DNS name for the service certificates (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Name of the first operator (role admin).
        #[arg(long, default_value = "admin")]
        operator: String,
    },
    /// Create a CA of etcd's own and certificates for its members (hosts
    /// etcd-1..etcd-N) and for the daemons that use it.
    Etcd {
        /// Output directory (etcd-ca/, etcd-N/, <client>/etcd/; must not hold them already).
        #[arg(long)]
        out: PathBuf,
        /// Number of etcd members.
        #[arg(long, default_value_t = 3)]
        members: usize,
        /// A daemon that gets a client certificate (repeatable).
        #[arg(long = "client", default_values_t = ["kms-api".to_owned(), "system-keyd".to_owned()])]
        clients: Vec<String>,
    },
    /// Issue an operator certificate from the deployment CA (offline: needs ca/ca.key).
    AddOperator {
        /// Operator name.
        name: String,
        /// Role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The PKI directory made by `skm pki init` (holding ca/ca.pem and ca/ca.key).
        #[arg(long)]
        pki: PathBuf,
        /// Where to write ca.pem, cert.pem and key.pem.
        #[arg(long)]
        out: PathBuf,
        /// Trust domain of the PKI.
        #[arg(long, default_value = "skm.local")]
        trust_domain: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = 397)]
        days: u32,
    },
    /// Revoke an operator certificate on kms-api's admin port.
    RevokeOperator {
        /// SHA-256 of the certificate...
        #[arg(long, required_unless_present = "cert")]
        sha256: Option<String>,
        /// ...or the certificate file (PEM).
        #[arg(long, conflicts_with = "sha256")]
        cert: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Create the root key (Shamir mode) and print the unseal shares, once.
    Init {
        /// Number of shares.
        #[arg(long, default_value_t = 5)]
        shares: u32,
        /// Shares needed to unseal.
        #[arg(long, default_value_t = 3)]
        threshold: u32,
    },
    /// Submit one unseal share (argument, or stdin when absent).
    Unseal {
        /// The share as printed by `skm root init`.
        share: Option<String>,
    },
    /// Seal state of root-keyd.
    Status,
    /// Rotate the root key: a new root key version becomes current,
    /// system-keyd has every system key version rewrapped under it, and
    /// the older root key versions are destroyed. kms-api is unaffected.
    Rotate {
        /// Only finish an interrupted rotation: rewrap and destroy, with
        /// no new root key version.
        #[arg(long)]
        rewrap_only: bool,
    },
    /// Issue new unseal shares (Shamir mode), authorised by the current ones.
    #[command(subcommand)]
    Rekey(RekeyCommand),
}

/// `skm system`: the system keys that seal kms-api's records.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Make a new system key version active; kms-api then re-seals every
    /// record under it in the background.
    Rotate,
    /// The versions kms-api holds, records under each, and the re-seal.
    Status,
    /// Retire a version no record is sealed under any more: kms-api and
    /// system-keyd stop holding it.
    RetireVersion {
        /// The version (not the active one).
        version: u32,
    },
}

/// `skm console`: the web console served by kms-api.
#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Print a one-time sign-in link for the console (single use, valid
    /// 60 s, bound to your operator certificate and role).
    Login,
}

/// `skm root rekey`: new Shamir shares with a new k-of-n.
#[derive(Debug, Subcommand)]
pub enum RekeyCommand {
    /// Start a rekey; prints its nonce and how many current shares it needs.
    Start {
        /// Number of new shares.
        #[arg(long, default_value_t = 5)]
        shares: u32,
        /// New shares needed to unseal (at least 2).
        #[arg(long, default_value_t = 3)]
        threshold: u32,
    },
    /// Submit one current share (argument, or stdin when absent); the one
    /// that completes the rekey prints the new shares, once.
    Submit {
        /// The nonce `skm root rekey start` printed.
        nonce: String,
        /// A current unseal share.
        share: Option<String>,
    },
}

/// A keystore's access policy on the command line.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Allowed client IPv4 address or CIDR (repeatable).
    #[arg(long = "allow-ip", value_name = "CIDR")]
    pub allow_ips: Vec<String>,
    /// Allowed client MAC address (repeatable).
    #[arg(long = "allow-mac", value_name = "MAC")]
    pub allow_macs: Vec<String>,
    /// Accept a MAC the client asserts when the server can't read it (off-link clients).
    #[arg(long)]
    pub allow_asserted_mac: bool,
    /// Require a client certificate (issued by the keystore or registered).
    #[arg(long)]
    pub require_cert: bool,
    /// How the enabled methods combine.
    #[arg(long, value_enum, default_value_t = ModeArg::All)]
    pub mode: ModeArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Every enabled method must pass.
    All,
    /// One enabled method is enough.
    Any,
}

#[derive(Debug, Subcommand)]
pub enum KeystoreCommand {
    /// Create a keystore; prints its id. At least one method must be enabled.
    Create {
        /// Unique name.
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Another unique name applications may use for it on the REST API's compatible
        /// paths (`/keymanager/…/appkey/ALIAS/…`), e.g. the appkey of the service you move from.
        #[arg(long)]
        alias: Option<String>,
    },
    /// List keystores.
    List,
    /// A keystore's policy, client CA and certificates.
    Show {
        /// Keystore id or name.
        keystore: String,
    },
    /// Replace a keystore's policy (takes effect for the next request).
    Update {
        /// Keystore id or name.
        keystore: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Set (or, with --clear, remove) a keystore's alias: the appkey of the REST API's
    /// compatible paths (docs/MIGRATING.md). The policy stays as it is.
    SetAlias {
        /// Keystore id or name.
        keystore: String,
        /// The alias: 1..=64 characters of [A-Za-z0-9._-], unique, not 32 hex digits.
        alias: Option<String>,
        /// Remove the alias.
        #[arg(long, conflicts_with = "alias")]
        clear: bool,
    },
    /// Delete an empty keystore.
    Delete {
        /// Keystore id or name.
        keystore: String,
    },
    /// Issue a client certificate and key: a password-protected PKCS#12 file, or PEM files
    /// (`--format pem`) for clients that can't read PKCS#12 (grpcio, grpcurl).
    IssueCert {
        /// Keystore id or name.
        keystore: String,
        /// Certificate name (its subject CN).
        name: String,
        /// Where to write the PKCS#12 file, or with `--format pem` the certificate chain (PEM).
        #[arg(long)]
        out: PathBuf,
        /// File format.
        #[arg(long, value_enum, default_value_t = CertFormat::P12)]
        format: CertFormat,
        /// With `--format pem`: where to write the private key (PKCS#8 PEM, unencrypted, mode 0600);
        /// default: the --out path with `.key` appended.
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
        /// File whose first line is the PKCS#12 password (8..=1024 bytes); required for p12.
        #[arg(long, required_if_eq("format", "p12"))]
        password_file: Option<PathBuf>,
        /// Lifetime in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Register an external client certificate by its SHA-256 fingerprint.
    RegisterCert {
        /// Keystore id or name.
        keystore: String,
        /// Name for it.
        name: String,
        /// SHA-256 fingerprint (hex, colons allowed)...
        #[arg(long, required_unless_present = "cert")]
        sha256: Option<String>,
        /// ...or the certificate file (PEM) to take it from.
        #[arg(long, conflicts_with = "sha256")]
        cert: Option<PathBuf>,
    },
    /// Revoke a client certificate (by name or SHA-256).
    RevokeCert {
        /// Keystore id or name.
        keystore: String,
        /// Certificate name or SHA-256.
        certificate: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Audit entries, oldest first: every entry, page by page, or with
    /// --limit the newest N.
    List {
        /// Only this keystore (id).
        #[arg(long)]
        keystore: Option<String>,
        /// Only this key (id).
        #[arg(long)]
        key: Option<String>,
        /// Only entries at or after this time (seconds since the epoch).
        #[arg(long)]
        since: Option<i64>,
        /// Only the newest this many (one call); without it every entry is
        /// listed, page by page.
        #[arg(long)]
        limit: Option<u32>,
        /// Entries per ListAudit call when paging (at most 1000).
        #[arg(long, default_value_t = 1000)]
        page_size: u32,
    },
    /// Check the whole hash chain; exit 0 intact, 1 with the first broken entry.
    /// Losses acknowledged with acknowledge-loss are listed.
    Verify {
        /// Whose log: kms-api's (default), or root-keyd's or system-keyd's own.
        #[arg(long, value_enum, default_value = "kms-api")]
        tier: Tier,
    },
    /// Acknowledge the audit entries kms-api found missing at start (its log
    /// shorter than the anchor in its store), so that it serves again; the
    /// acknowledgement is audited as the first entry after the gap.
    AcknowledgeLoss,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key; prints its id.
    Create {
        /// Keystore id or name.
        keystore: String,
        /// Key name, unique in the keystore.
        name: String,
        /// Algorithm.
        #[arg(long = "type", value_enum)]
        key_type: KeyTypeArg,
        /// Rotate automatically every DAYS days (0: never).
        #[arg(long, value_name = "DAYS", default_value_t = 0)]
        rotation_period: u32,
        /// Where the material comes from: generated by SKM, or external
        /// (imported with `skm key import`; the key is pending import
        /// until then).
        #[arg(long, value_enum, default_value_t = OriginArg::Skm)]
        origin: OriginArg,
    },
    /// Import key material into a key of origin external as its next
    /// version: fetches import parameters, wraps the material locally to
    /// their public key and imports it (--material); or imports material
    /// wrapped elsewhere, e.g. with `openssl pkeyutl` (--wrapped, --token).
    Import {
        /// Key id.
        key: String,
        /// The material: an AES-256 or HMAC key's raw bytes, or an
        /// unencrypted PKCS#8 private key (PEM "PRIVATE KEY" or DER).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["wrapped", "token"], required_unless_present = "wrapped")]
        material: Option<PathBuf>,
        /// Size of the wrapping key (with --material).
        #[arg(long, value_enum, default_value_t = WrappingKeySpecArg::Rsa3072)]
        wrapping_key_spec: WrappingKeySpecArg,
        /// Material already wrapped to the public key of `skm key
        /// import-parameters`.
        #[arg(long, value_name = "FILE", requires = "token")]
        wrapped: Option<PathBuf>,
        /// The import token file `skm key import-parameters` wrote.
        #[arg(long, value_name = "FILE", requires = "wrapped")]
        token: Option<PathBuf>,
    },
    /// Get import parameters for a key of origin external (to wrap the
    /// material yourself): writes the wrapping public key (PEM) and the
    /// import token; valid 24 hours, for one import.
    ImportParameters {
        /// Key id.
        key: String,
        /// How the material will be wrapped.
        #[arg(long, value_enum)]
        wrapping_algorithm: WrappingArg,
        /// Size of the wrapping key.
        #[arg(long, value_enum, default_value_t = WrappingKeySpecArg::Rsa3072)]
        wrapping_key_spec: WrappingKeySpecArg,
        /// Where to write the wrapping public key (PEM).
        #[arg(long, value_name = "FILE")]
        public_key_out: PathBuf,
        /// Where to write the import token (32 bytes).
        #[arg(long, value_name = "FILE")]
        token_out: PathBuf,
    },
    /// List the keys and secrets of a keystore.
    List {
        /// Keystore id or name.
        keystore: String,
    },
    /// State, versions, dates and last use of a key.
    Show {
        /// Key id.
        key: String,
    },
    /// Add a version; it encrypts/signs from now on.
    Rotate {
        /// Key id.
        key: String,
    },
    /// Change the automatic rotation period.
    Update {
        /// Key id.
        key: String,
        /// Rotate automatically every DAYS days (0: never).
        #[arg(long, value_name = "DAYS")]
        rotation_period: u32,
    },
    /// Enable a disabled key.
    Enable {
        /// Key id.
        key: String,
    },
    /// Disable a key (every use refused).
    Disable {
        /// Key id.
        key: String,
    },
    /// Destroy the key after a waiting period (cancellable until then).
    ScheduleDeletion {
        /// Key id.
        key: String,
        /// Waiting period, 7..=30 days.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Cancel a scheduled deletion (the key comes back disabled).
    CancelDeletion {
        /// Key id.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret from --value-file or stdin; prints its id.
    Create {
        /// Keystore id or name.
        keystore: String,
        /// Secret name, unique in the keystore.
        name: String,
        /// File holding the value (default: stdin).
        #[arg(long)]
        value_file: Option<PathBuf>,
        /// Versions kept (1..=1000); an update past it deletes the oldest.
        /// Default: 10.
        #[arg(long)]
        max_versions: Option<u32>,
    },
    /// Print a secret's value (newest version, or --version).
    Get {
        /// Secret id.
        key: String,
        /// Version.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Store a new version from --value-file or stdin; prints the version.
    Update {
        /// Secret id.
        key: String,
        /// File holding the value (default: stdin).
        #[arg(long)]
        value_file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyTypeArg {
    /// AES-256-GCM-SIV.
    #[value(name = "aes-256")]
    Aes256,
    /// Ed25519.
    #[value(name = "ed25519")]
    Ed25519,
    /// ECDSA P-256.
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048.
    #[value(name = "rsa-2048")]
    Rsa2048,
    /// RSA 3072.
    #[value(name = "rsa-3072")]
    Rsa3072,
    /// RSA 4096.
    #[value(name = "rsa-4096")]
    Rsa4096,
    /// ECDSA P-384.
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    /// ML-DSA-44 (FIPS 204).
    #[value(name = "ml-dsa-44")]
    MlDsa44,
    /// ML-DSA-65 (FIPS 204).
    #[value(name = "ml-dsa-65")]
    MlDsa65,
    /// ML-DSA-87 (FIPS 204).
    #[value(name = "ml-dsa-87")]
    MlDsa87,
    /// HMAC-SHA-256.
    #[value(name = "hmac-sha256")]
    HmacSha256,
    /// HMAC-SHA-384.
    #[value(name = "hmac-sha384")]
    HmacSha384,
    /// HMAC-SHA-512.
    #[value(name = "hmac-sha512")]
    HmacSha512,
    /// RSA 2048 encryption (RSAES-OAEP-SHA-256).
    #[value(name = "rsa-oaep-2048")]
    RsaOaep2048,
    /// RSA 3072 encryption (RSAES-OAEP-SHA-256).
    #[value(name = "rsa-oaep-3072")]
    RsaOaep3072,
    /// RSA 4096 encryption (RSAES-OAEP-SHA-256).
    #[value(name = "rsa-oaep-4096")]
    RsaOaep4096,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OriginArg {
    /// SKM generates the material.
    #[value(name = "skm")]
    Skm,
    /// The material is imported (bring your own key).
    #[value(name = "external")]
    External,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WrappingArg {
    /// RSAES-OAEP-SHA-256 of the material itself (AES, HMAC, Ed25519 and
    /// ECDSA keys).
    #[value(name = "rsaes-oaep-sha256")]
    RsaesOaepSha256,
    /// RSAES-OAEP-SHA-256 of an AES-256 key, then the material under AES
    /// key wrap with padding (RFC 5649): any key, RSA too.
    #[value(name = "rsa-aes-key-wrap-sha256")]
    RsaAesKeyWrapSha256,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WrappingKeySpecArg {
    /// RSA 3072-bit.
    #[value(name = "rsa-3072")]
    Rsa3072,
    /// RSA 4096-bit.
    #[value(name = "rsa-4096")]
    Rsa4096,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EncryptionArg {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label.
    #[value(name = "rsaes-oaep-sha256")]
    RsaesOaepSha256,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignatureArg {
    /// Ed25519.
    #[value(name = "ed25519")]
    Ed25519,
    /// ECDSA with SHA-256.
    #[value(name = "ecdsa-sha256")]
    EcdsaSha256,
    /// RSA-PSS with SHA-256.
    #[value(name = "rsa-pss-sha256")]
    RsaPssSha256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    #[value(name = "rsa-pkcs1-sha256")]
    RsaPkcs1Sha256,
    /// ECDSA with SHA-384.
    #[value(name = "ecdsa-sha384")]
    EcdsaSha384,
    /// Pure ML-DSA (FIPS 204).
    #[value(name = "ml-dsa")]
    MlDsa,
}
