//! The audit log of root-keyd and system-keyd: every RPC, allowed or
//! denied, in a hash-chained, keyed log of their own (kms-api's core keeps
//! a richer one of its own, `kms_api::audit`).
//!
//! `<data_dir>/audit/audit.log`, JSON Lines, one entry when a call arrives
//! (`"phase": "request"`, durable before the call goes on: if it can't be
//! written the call is refused UNAVAILABLE, so nothing happens unaudited)
//! and one with its final gRPC status (`"phase": "result"`, written after
//! the reply). Health checks and reflection are not logged. Each entry
//! holds the MAC of the one before (`prev`) and its own `mac`:
//! HMAC-SHA256 under the tier's audit key of [`MAC_LABEL`] ‖ the entry's
//! JSON without its `mac` field. The key (32 random bytes, `audit.key`,
//! 0600) is made with the log; whoever can write the log but not read the
//! key can't edit, insert or reorder entries unnoticed. Cutting entries
//! off the end is not detected here (kms-api anchors its log's tail; these
//! tiers don't yet): ship the log off the host for that.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use skm_crypto::audit::AuditKey;

use crate::peer::PeerInfo;

/// Domain separation of the entry MACs.
pub const MAC_LABEL: &[u8] = b"skm.tier-audit.v1\0";

/// An entry as written, without its MAC (the MAC covers exactly this JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    seq: u64,
    /// Milliseconds since the epoch.
    time_ms: u64,
    tier: String,
    phase: String,
    method: String,
    /// The caller's principal (`kms-api`, `operator/admin/ann`), or `-`.
    caller: String,
    /// SHA-256 of the caller's certificate, hex, or empty.
    cert_sha256: String,
    /// The caller's IP address.
    peer: String,
    /// The final gRPC status name (results only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    code: String,
    /// The previous entry's MAC, hex (64 zeros for the first).
    prev: String,
}

/// An entry as stored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    #[serde(flatten)]
    body: Entry,
    mac: String,
}

/// The log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum TierAuditError {
    /// A file operation failed.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not 32 bytes.
    #[error("audit key {0} is not 32 bytes")]
    BadKey(PathBuf),
    /// A private file or directory could not be made.
    #[error(transparent)]
    Private(#[from] crate::files::PrivateError),
}

/// What [`TierAudit::verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierVerifyReport {
    /// Intact entries before the first broken one (all when none is).
    pub entries: u64,
    /// The first entry that fails a check: its line number (from 1) and
    /// what is wrong.
    pub first_broken: Option<(u64, String)>,
}

struct Writer {
    file: File,
    next_seq: u64,
    prev: [u8; 32],
}

struct Inner {
    tier: &'static str,
    path: PathBuf,
    key: AuditKey,
    writer: Mutex<Writer>,
}

/// A tier's audit log. Cheap to clone.
#[derive(Clone)]
pub struct TierAudit {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TierAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierAudit").field("tier", &self.inner.tier).field("path", &self.inner.path).finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TierAuditError + '_ {
    move |source| TierAuditError::Io { path: path.to_owned(), source }
}

fn mac_of(key: &AuditKey, body: &Entry) -> [u8; 32] {
    let json = serde_json::to_vec(body).unwrap_or_default();
    key.mac(&[MAC_LABEL, &json].concat())
}

/// The key in `dir/audit.key`, made (0600) when absent.
fn load_key(dir: &Path) -> Result<AuditKey, TierAuditError> {
    let path = dir.join("audit.key");
    match File::open(&path) {
        Ok(mut f) => {
            let mut raw = zeroize::Zeroizing::new(Vec::new());
            f.read_to_end(&mut raw).map_err(io(&path))?;
            let mut bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| TierAuditError::BadKey(path.clone()))?;
            Ok(AuditKey::from_bytes_wiping(&mut bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes: [u8; 32] = skm_crypto::random_array().map_err(|_| TierAuditError::Io {
                path: path.clone(),
                source: std::io::Error::other("no randomness"),
            })?;
            crate::files::write_private_atomic(&path, &bytes)?;
            Ok(AuditKey::from_bytes_wiping(&mut bytes))
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// Checks the chain in `reader` (entries of `tier`); the answer also
/// gives the byte length of the intact, complete lines and the last MAC.
fn check(reader: impl Read, key: &AuditKey) -> (TierVerifyReport, u64, [u8; 32]) {
    let mut prev = [0u8; 32];
    let mut entries = 0u64;
    let mut good_len = 0u64;
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let report =
                    TierVerifyReport { entries, first_broken: Some((entries + 1, format!("unreadable: {e}"))) };
                return (report, good_len, prev);
            }
        };
        let broken = |why: &str| TierVerifyReport { entries, first_broken: Some((entries + 1, why.to_owned())) };
        if !line.ends_with('\n') {
            // A write cut short by a crash: not an entry.
            return (broken("incomplete last line"), good_len, prev);
        }
        let Ok(stored) = serde_json::from_str::<Stored>(line.trim_end()) else {
            return (broken("not an audit entry"), good_len, prev);
        };
        if stored.body.seq != entries + 1 {
            return (broken("sequence number out of order"), good_len, prev);
        }
        if stored.body.prev != hex::encode(prev) {
            return (broken("does not follow the entry before it"), good_len, prev);
        }
        let mac = mac_of(key, &stored.body);
        let Ok(claimed) = hex::decode(&stored.mac) else { return (broken("MAC is not hex"), good_len, prev) };
        let Ok(claimed) = <[u8; 32]>::try_from(claimed.as_slice()) else {
            return (broken("MAC is not 32 bytes"), good_len, prev);
        };
        if !key.verify(&[MAC_LABEL, &serde_json::to_vec(&stored.body).unwrap_or_default()].concat(), &claimed) {
            return (broken("MAC does not match: the entry was altered"), good_len, prev);
        }
        prev = mac;
        entries += 1;
        good_len += n as u64;
    }
    (TierVerifyReport { entries, first_broken: None }, good_len, prev)
}

impl TierAudit {
    /// Opens (or creates) `data_dir/audit/`: key, log (0600, directory
    /// 0700). A log whose last line is incomplete (a crash mid-write) is
    /// cut back to its last complete entry; a log that is broken further
    /// up is kept as it is and new entries follow its last intact one, so
    /// that `verify` keeps reporting the damage.
    pub fn open(data_dir: &Path, tier: &'static str) -> Result<Self, TierAuditError> {
        let dir = data_dir.join("audit");
        crate::files::private_dir(&dir)?;
        let key = load_key(&dir)?;
        let path = dir.join("audit.log");
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(&path).map_err(io(&path))?;
        file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        let (report, good_len, prev) = check(&mut file, &key);
        match &report.first_broken {
            Some((_, why)) if why == "incomplete last line" => {
                tracing::warn!(path = %path.display(), "audit log ends in an incomplete entry (a crash mid-write); cut back to the last complete one");
                file.set_len(good_len).map_err(io(&path))?;
            }
            Some((line, why)) => {
                tracing::error!(path = %path.display(), line, why, "audit log is broken; new entries go after it");
            }
            None => {}
        }
        let next_seq = report.entries + 1;
        let writer = Mutex::new(Writer { file, next_seq, prev });
        Ok(Self { inner: Arc::new(Inner { tier, path, key, writer }) })
    }

    /// Appends one entry and syncs it to disk.
    fn append_blocking(&self, mut body: Entry) -> std::io::Result<()> {
        let mut w = self.inner.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        body.seq = w.next_seq;
        body.prev = hex::encode(w.prev);
        let mac = mac_of(&self.inner.key, &body);
        let mut line = serde_json::to_vec(&body).map_err(std::io::Error::other)?;
        line.pop(); // the closing brace
        line.extend_from_slice(format!(",\"mac\":\"{}\"}}\n", hex::encode(mac)).as_bytes());
        w.file.write_all(&line)?;
        w.file.sync_data()?;
        w.next_seq += 1;
        w.prev = mac;
        Ok(())
    }

    async fn append(&self, body: Entry) -> std::io::Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.append_blocking(body))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
    }

    /// Re-reads the whole log and checks every entry.
    pub fn verify(&self) -> Result<TierVerifyReport, TierAuditError> {
        let file = File::open(&self.inner.path).map_err(io(&self.inner.path))?;
        Ok(check(file, &self.inner.key).0)
    }
}

/// The VerifyAudit RPC of root-keyd and system-keyd.
pub fn verify_rpc(audit: &TierAudit) -> Result<skm_proto::root::v1::VerifyTierAuditResponse, tonic::Status> {
    let report = audit.verify().map_err(|e| {
        tracing::error!(error = %e, "cannot read the audit log");
        tonic::Status::unavailable("the audit log can't be read")
    })?;
    let (first_broken_line, reason) = report.first_broken.unwrap_or_default();
    Ok(skm_proto::root::v1::VerifyTierAuditResponse { entries: report.entries, first_broken_line, reason })
}

/// Who made a call, as the log names them.
#[derive(Clone, Debug)]
struct Caller {
    principal: String,
    cert_sha256: String,
    peer: String,
}

impl Caller {
    fn of(peer: Option<&PeerInfo>) -> Self {
        let Some(p) = peer else {
            return Self { principal: "-".into(), cert_sha256: String::new(), peer: String::new() };
        };
        Self {
            principal: p.principal.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
            cert_sha256: p
                .client_certificates
                .as_ref()
                .and_then(|c| c.first())
                .map(|leaf| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(leaf.as_ref())))
                .unwrap_or_default(),
            peer: p.remote_addr.ip().to_string(),
        }
    }
}

/// One call as the layer records it.
#[derive(Clone, Debug)]
struct Call {
    audit: TierAudit,
    method: String,
    caller: Caller,
}

impl Call {
    fn body(&self, phase: &str, code: &str) -> Entry {
        Entry {
            seq: 0,
            time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            tier: self.audit.inner.tier.to_owned(),
            phase: phase.to_owned(),
            method: self.method.clone(),
            caller: self.caller.principal.clone(),
            cert_sha256: self.caller.cert_sha256.clone(),
            peer: self.caller.peer.clone(),
            code: code.to_owned(),
            prev: String::new(),
        }
    }

    /// The result entry, off the reply's path.
    fn done(self, code: &'static str) {
        tokio::spawn(async move {
            if let Err(e) = self.audit.append(self.body("result", code)).await {
                tracing::error!(error = %e, method = self.method, "cannot write an audit entry");
            }
        });
    }
}

/// Audits every RPC but health checks and reflection through `audit`.
/// It sits inside the request limits (a shed request
/// is not logged: a flood must not turn into disk writes) and outside the
/// allow-list (a refused call is logged with its PERMISSION_DENIED).
#[derive(Clone, Debug)]
pub struct TierAuditLayer {
    audit: TierAudit,
}

impl TierAuditLayer {
    /// The layer writing to `audit`.
    pub fn new(audit: TierAudit) -> Self {
        Self { audit }
    }
}

impl<S> tower::Layer<S> for TierAuditLayer {
    type Service = Audited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audited { inner, audit: self.audit.clone() }
    }
}

/// The service made by [`TierAuditLayer`].
#[derive(Clone, Debug)]
pub struct Audited<S> {
    inner: S,
    audit: TierAudit,
}

impl<S, B> tower::Service<http::Request<B>> for Audited<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path();
        if path.starts_with("/grpc.") {
            return Box::pin(inner.call(req));
        }
        let call = Call {
            audit: self.audit.clone(),
            method: path.to_owned(),
            caller: Caller::of(req.extensions().get::<PeerInfo>()),
        };
        Box::pin(async move {
            if let Err(e) = call.audit.append(call.body("request", "")).await {
                tracing::error!(error = %e, method = call.method, "cannot write an audit entry: call refused");
                return Ok(tonic::Status::unavailable("the audit log is unavailable; the call was not carried out")
                    .into_http());
            }
            let response = inner.call(req).await?;
            if let Some(code) = crate::metrics::status_of(response.headers()) {
                call.done(code);
                Ok(response)
            } else {
                Ok(response.map(|body| tonic::body::Body::new(AuditedBody { inner: body, call: Some(call) })))
            }
        })
    }
}

pin_project! {
    /// A response body whose trailers carry the status to log.
    struct AuditedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }

    impl<B> PinnedDrop for AuditedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.done("CANCELLED");
            }
        }
    }
}

impl<B> Body for AuditedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|t| crate::metrics::status_of(t).unwrap_or("UNKNOWN")),
            Some(Err(_)) | None => Some("UNKNOWN"),
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.done(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(audit: &TierAudit, method: &str) -> Call {
        let caller =
            Caller { principal: "operator/admin/ann".into(), cert_sha256: "ab".repeat(32), peer: "127.0.0.1".into() };
        Call { audit: audit.clone(), method: method.into(), caller }
    }

    #[test]
    fn entries_chain_and_any_edit_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let audit = TierAudit::open(dir.path(), "root-keyd").unwrap();
        for (phase, code) in [("request", ""), ("result", "PERMISSION_DENIED"), ("request", ""), ("result", "OK")] {
            audit.append_blocking(call(&audit, "/skm.root.v1.RootKeyService/Unseal").body(phase, code)).unwrap();
        }
        assert_eq!(audit.verify().unwrap(), TierVerifyReport { entries: 4, first_broken: None });
        let log = dir.path().join("audit").join("audit.log");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.lines().nth(1).unwrap().contains(r#""code":"PERMISSION_DENIED""#), "{text}");
        // Reopened, the chain goes on.
        drop(audit);
        let audit = TierAudit::open(dir.path(), "root-keyd").unwrap();
        audit.append_blocking(call(&audit, "/m").body("request", "")).unwrap();
        assert_eq!(audit.verify().unwrap().entries, 5);
        // An edited code, a removed line, swapped lines: each found at its line.
        let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect();
        let write = |lines: &[String]| std::fs::write(&log, lines.iter().map(|l| format!("{l}\n")).collect::<String>());
        let mut edited = lines.clone();
        edited[1] = edited[1].replace("PERMISSION_DENIED", "OK");
        write(&edited).unwrap();
        assert_eq!(audit.verify().unwrap().first_broken.map(|b| b.0), Some(2));
        let mut removed = lines.clone();
        removed.remove(2);
        write(&removed).unwrap();
        assert_eq!(audit.verify().unwrap().first_broken.map(|b| b.0), Some(3));
        let mut swapped = lines.clone();
        swapped.swap(0, 1);
        write(&swapped).unwrap();
        assert_eq!(audit.verify().unwrap().first_broken.map(|b| b.0), Some(1));
        write(&lines).unwrap();
        assert_eq!(audit.verify().unwrap().first_broken, None);
        // Another key (another tier's, or a forger's) doesn't verify it.
        std::fs::remove_file(dir.path().join("audit").join("audit.key")).unwrap();
        let other = TierAudit::open(dir.path(), "root-keyd").unwrap();
        assert!(other.verify().unwrap().first_broken.is_some());
    }

    #[test]
    fn an_incomplete_last_line_is_cut_back_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let audit = TierAudit::open(dir.path(), "system-keyd").unwrap();
        audit.append_blocking(call(&audit, "/m").body("request", "")).unwrap();
        let log = dir.path().join("audit").join("audit.log");
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(br#"{"seq":2,"ti"#).unwrap();
        drop((f, audit));
        let audit = TierAudit::open(dir.path(), "system-keyd").unwrap();
        assert_eq!(audit.verify().unwrap(), TierVerifyReport { entries: 1, first_broken: None });
        audit.append_blocking(call(&audit, "/m").body("result", "OK")).unwrap();
        assert_eq!(audit.verify().unwrap().entries, 2);
        for (path, mode) in
            [(log, 0o600), (dir.path().join("audit").join("audit.key"), 0o600), (dir.path().join("audit"), 0o700)]
        {
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, mode, "{}", path.display());
        }
    }
}
