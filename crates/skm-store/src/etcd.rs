//! The replicated backend: etcd's v3 API over mutual TLS, for several
//! kms-api replicas on one Raft-replicated store (DESIGN §6).
//!
//! Every key is stored under a prefix of its own (`prefix ‖ key`), so the
//! tiers sharing one cluster never see each other's keys. A key's
//! [`Versioned::revision`] is etcd's per-key `version` (1 at creation, +1
//! per write, reset by a delete), which is exactly this crate's revision,
//! so compare-and-swap is an etcd transaction comparing `version`
//! (`version = 0` is "absent"), and a batch is one transaction whose
//! comparisons all hold or nothing is written; batches applied at the same
//! time share one transaction and are still answered each on its own
//! ([`group`]). etcd answers only once the
//! write is committed by a quorum (each member's WAL fsynced), which is
//! the durability every [`Store`] promises.
//!
//! Reads are linearizable (etcd's default): a read sees every write that
//! was acknowledged before it started, on whichever member serves it.
//! Listings are read in pages of [`PAGE`] keys, every page at the
//! revision of the first, so a listing is one consistent snapshot however
//! long it is and no reply nears the gRPC message size limit.
//!
//! **Several endpoints.** Each endpoint has its own lazy channel, which
//! reconnects by itself. Calls go to the endpoint that answered last; when
//! it is unreachable the call moves on to the next. A read moves on after
//! any transport failure or timeout. A write moves on only when the
//! connection was refused, which proves etcd never saw the request; after
//! any other failure (a reset or a timeout with the request sent) its
//! outcome is unknown, and the write fails with [`StoreError::Backend`]
//! rather than risk applying twice: the callers' compare-and-swap makes
//! their own retry safe.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use skm_proto::etcd::compare::{CompareResult, CompareTarget, TargetUnion};
use skm_proto::etcd::kv_client::KvClient;
use skm_proto::etcd::request_op::Request;
use skm_proto::etcd::response_op::Response;
use skm_proto::etcd::{
    Compare, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use skm_runtime::tls::{TlsFiles, TlsIdentity};
use tonic::transport::Channel;

use crate::{Expect, Op, Store, StoreError, Versioned, printable};

mod election;
mod group;
mod watch;
pub use election::{ELECTION_PREFIX, Leadership};
pub use group::GroupCommits;
pub use watch::BEACON_PREFIX;

/// Keys per page of a listing.
pub const PAGE: i64 = 1000;

/// The most endpoints one store may name.
pub const MAX_ENDPOINTS: usize = 16;

/// How a daemon reaches its etcd cluster (the `[etcd]` config section,
/// validated by [`EtcdSection::validate`](crate::config::EtcdSection::validate)).
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `host:port` of each member's client URL (1..=[`MAX_ENDPOINTS`]).
    pub endpoints: Vec<String>,
    /// The CA that issued etcd's server certificates, the client
    /// certificate and its key.
    pub tls: TlsFiles,
    /// The prefix of every key this store writes (non-empty).
    pub prefix: Vec<u8>,
    /// How long one call to one endpoint may take.
    pub request_timeout: Duration,
    /// How long connecting to one endpoint may take.
    pub connect_timeout: Duration,
}

/// Opening or using the etcd backend failed; carried inside
/// [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The TLS files could not be loaded.
    #[error("etcd TLS files: {0}")]
    Tls(#[from] skm_runtime::tls::TlsError),
    /// An endpoint is not `host:port`.
    #[error("etcd endpoint {0:?} is not host:port")]
    Endpoint(String),
    /// etcd answered with an error, or could not be reached.
    #[error("etcd at {endpoint}: {code:?}: {message}")]
    Call {
        /// The endpoint that failed last.
        endpoint: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// etcd's message (e.g. "etcdserver: no leader") or the transport's.
        message: String,
    },
    /// No endpoint answered within the request timeout.
    #[error("etcd at {endpoint}: no answer within {timeout:?}")]
    Timeout {
        /// The endpoint that failed last.
        endpoint: String,
        /// The request timeout.
        timeout: Duration,
    },
    /// etcd's answer lacks what the request asked for.
    #[error("etcd answered a {0} without its result")]
    Reply(&'static str),
    /// The failure of the transaction a batch shared with others
    /// (`group`), as it was reported.
    #[error("{0}")]
    Shared(String),
}

fn backend(e: EtcdError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// An etcd cluster used as a [`Store`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Vec<Endpoint>,
    /// The endpoint that answered last: where the next call goes first.
    current: AtomicUsize,
    prefix: Vec<u8>,
    timeout: Duration,
    /// The committer's queue ([`group`]), started by the first batch (and
    /// again by the next, should the runtime it ran on have ended).
    group: std::sync::Mutex<Option<group::Queue>>,
    /// Batches applied and the transactions that carried them.
    grouped: group::Counts,
}

#[derive(Debug)]
struct Endpoint {
    addr: String,
    kv: KvClient<Channel>,
    /// For the watch ([`EtcdStore::watch`]).
    channel: Channel,
}

/// Whether a failed call may be sent again, to another endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// A read: after any transport failure or timeout.
    Read,
    /// A write: only when etcd provably never saw it (connection refused).
    Write,
}

impl EtcdStore {
    /// Connects to the cluster and checks it answers a read under the
    /// prefix, so a daemon with a wrong endpoint, certificate or CA fails
    /// at start with etcd's or the transport's own message.
    pub async fn open(config: &EtcdConfig) -> Result<Self, StoreError> {
        let store = Self::connect(config)?;
        store.range(&store.key(b""), &prefix_end(&store.inner.prefix), 1, 0).await?;
        Ok(store)
    }

    /// Builds the channels without contacting etcd (they connect on first
    /// use).
    pub fn connect(config: &EtcdConfig) -> Result<Self, StoreError> {
        skm_runtime::tls::install_crypto_provider();
        let identity = TlsIdentity::load(&config.tls, None).map_err(|e| backend(e.into()))?;
        let tls = identity.web_pki_client_config().map_err(|e| backend(e.into()))?;
        let endpoints = config
            .endpoints
            .iter()
            .map(|addr| {
                let channel =
                    skm_runtime::channel::lazy_channel_with_timeout(addr, tls.clone(), config.connect_timeout)
                        .map_err(|_| backend(EtcdError::Endpoint(addr.clone())))?;
                // Values are sealed records of a few KiB; pages hold PAGE of them.
                let kv = KvClient::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
                Ok(Endpoint { addr: addr.clone(), kv, channel })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if endpoints.is_empty() {
            return Err(backend(EtcdError::Endpoint(String::new())));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                current: AtomicUsize::new(0),
                prefix: config.prefix.clone(),
                timeout: config.request_timeout,
                group: std::sync::Mutex::new(None),
                grouped: group::Counts::default(),
            }),
        })
    }

    /// Batches applied through this store, and the transactions that
    /// carried them (fewer when concurrent batches shared one).
    pub fn group_commits(&self) -> GroupCommits {
        self.inner.grouped.read()
    }

    /// The etcd key of `key`.
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.inner.prefix.len() + key.len());
        full.extend_from_slice(&self.inner.prefix);
        full.extend_from_slice(key);
        full
    }

    /// `key` without the prefix (etcd only returns keys under it).
    fn strip<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        key.strip_prefix(self.inner.prefix.as_slice()).unwrap_or(key)
    }

    /// Runs `call` on the current endpoint, moving on to the others as
    /// `retry` allows.
    async fn call<T, F, Fut>(&self, retry: Retry, call: F) -> Result<T, StoreError>
    where
        F: Fn(KvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let inner = &self.inner;
        let count = inner.endpoints.len();
        let first = inner.current.load(Ordering::Relaxed) % count;
        let mut failure = EtcdError::Reply("call");
        for step in 0..count {
            let index = (first + step) % count;
            let endpoint = &inner.endpoints[index];
            let answer = tokio::time::timeout(inner.timeout, call(endpoint.kv.clone())).await;
            let endpoint_name = endpoint.addr.clone();
            match answer {
                Ok(Ok(reply)) => {
                    if step > 0 {
                        inner.current.store(index, Ordering::Relaxed);
                    }
                    return Ok(reply.into_inner());
                }
                Ok(Err(status)) => {
                    let again = match retry {
                        Retry::Read => transport_failure(&status),
                        Retry::Write => connection_refused(&status),
                    };
                    failure = EtcdError::Call {
                        endpoint: endpoint_name,
                        code: status.code(),
                        message: status.message().to_owned(),
                    };
                    if !again {
                        break;
                    }
                }
                Err(_elapsed) => {
                    failure = EtcdError::Timeout { endpoint: endpoint_name, timeout: inner.timeout };
                    if retry == Retry::Write {
                        break;
                    }
                }
            }
            tracing::warn!(endpoint = %endpoint.addr, error = %failure, "etcd endpoint failed; trying the next");
        }
        // Unreachable, leaderless or slow: the caller may retry later.
        let unavailable = match &failure {
            EtcdError::Timeout { .. } => true,
            EtcdError::Call { code, .. } => unavailable_code(*code),
            _ => false,
        };
        if unavailable { Err(StoreError::Unavailable(Box::new(failure))) } else { Err(backend(failure)) }
    }

    /// One page of `[key, end)` at `revision` (0: the latest).
    async fn range(&self, key: &[u8], end: &[u8], limit: i64, revision: i64) -> Result<RangeResponse, StoreError> {
        let request =
            RangeRequest { key: key.to_vec(), range_end: end.to_vec(), limit, revision, ..Default::default() };
        self.call(Retry::Read, |mut kv| {
            let mut request = tonic::Request::new(request.clone());
            request.set_timeout(self.inner.timeout);
            async move { kv.range(request).await }
        })
        .await
    }

    /// Every key in `[key, end)`, at most `limit` (0: all), read page by
    /// page at the revision of the first page.
    async fn scan(&self, key: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        let mut out = Vec::new();
        let mut from = key.to_vec();
        let mut revision = 0;
        loop {
            let want = if limit == 0 { PAGE } else { PAGE.min(i64::try_from(limit - out.len()).unwrap_or(PAGE)) };
            let page = self.range(&from, end, want, revision).await?;
            if revision == 0 {
                revision = page.header.as_ref().map_or(0, |h| h.revision);
            }
            let more = page.more;
            let Some(last) = page.kvs.last().map(|kv| kv.key.clone()) else { break };
            out.extend(page.kvs.into_iter().map(|kv| self.entry(kv)));
            if !more || (limit != 0 && out.len() >= limit) {
                break;
            }
            from = last;
            from.push(0);
        }
        Ok(out)
    }

    fn entry(&self, kv: KeyValue) -> (Vec<u8>, Versioned) {
        let key = self.strip(&kv.key).to_vec();
        (key, versioned(kv))
    }

    async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, StoreError> {
        self.call(Retry::Write, |mut kv| {
            let mut request = tonic::Request::new(request.clone());
            request.set_timeout(self.inner.timeout);
            async move { kv.txn(request).await }
        })
        .await
    }
}

impl EtcdStore {
    /// One batch as one transaction: its comparisons all hold, or nothing
    /// is written and the error names the key whose condition failed.
    async fn apply_one(&self, ops: &[Op]) -> Result<(), StoreError> {
        let reply = self.txn(self.transaction(ops.iter())).await?;
        if reply.succeeded {
            return Ok(());
        }
        match conflict(ops, reply.responses)? {
            Some(conflict) => Err(conflict),
            // etcd said a comparison failed, yet each holds at its revision.
            None => Err(backend(EtcdError::Reply("failed transaction"))),
        }
    }

    /// The transaction of `ops`: their comparisons, their writes, and on
    /// failure a read of each key instead (in the same revision, so the
    /// error can name the key whose condition failed).
    fn transaction<'o>(&self, ops: impl Iterator<Item = &'o Op>) -> TxnRequest {
        let mut request = TxnRequest::default();
        for op in ops {
            let (key, expect) = op_key(op);
            let full = self.key(key);
            request.compare.extend(compare(&full, expect));
            request.failure.push(RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    key: full.clone(),
                    keys_only: true,
                    ..Default::default()
                })),
            });
            request.success.push(RequestOp {
                request: Some(match op {
                    Op::Put { value, .. } => {
                        Request::RequestPut(PutRequest { key: full, value: value.clone(), ..Default::default() })
                    }
                    Op::Delete { .. } => {
                        Request::RequestDeleteRange(DeleteRangeRequest { key: full, ..Default::default() })
                    }
                }),
            });
        }
        request
    }
}

/// From a failed transaction's reads of `ops`' keys: the conflict of the
/// first whose condition does not hold, `None` if all hold.
fn conflict(ops: &[Op], reads: Vec<skm_proto::etcd::ResponseOp>) -> Result<Option<StoreError>, StoreError> {
    if reads.len() != ops.len() {
        return Err(backend(EtcdError::Reply("failed transaction")));
    }
    for (op, response) in ops.iter().zip(reads) {
        let (key, expect) = op_key(op);
        let version = match response.response {
            Some(Response::ResponseRange(range)) => range.kvs.first().map_or(0, |kv| kv.version),
            _ => return Err(backend(EtcdError::Reply("failed transaction"))),
        };
        if !holds(expect, version) {
            return Ok(Some(StoreError::Conflict { key: printable(key) }));
        }
    }
    Ok(None)
}

fn versioned(kv: KeyValue) -> Versioned {
    Versioned { revision: u64::try_from(kv.version).unwrap_or(0), value: kv.value }
}

/// The first key after every key starting with `prefix` (etcd's
/// `range_end` for a prefix); `[0]` ("to the end") if there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// etcd's comparison for `expect` on `key`; `None` for [`Expect::Any`].
fn compare(key: &[u8], expect: Expect) -> Option<Compare> {
    let version = match expect {
        Expect::Any => return None,
        Expect::Absent => 0,
        Expect::Revision(revision) => i64::try_from(revision).unwrap_or(i64::MAX),
    };
    Some(Compare {
        result: CompareResult::Equal.into(),
        target: CompareTarget::Version.into(),
        key: key.to_vec(),
        target_union: Some(TargetUnion::Version(version)),
        range_end: Vec::new(),
    })
}

/// Whether `expect` holds for a key at `version` (0: absent).
fn holds(expect: Expect, version: i64) -> bool {
    match expect {
        Expect::Any => true,
        Expect::Absent => version == 0,
        Expect::Revision(revision) => revision > 0 && i64::try_from(revision).is_ok_and(|r| r == version),
    }
}

/// A condition no key can meet: revisions start at 1, and etcd's
/// `version = 0` would mean "absent".
fn never_holds(key: &[u8], expect: Expect) -> Result<(), StoreError> {
    match expect {
        Expect::Revision(0) => Err(StoreError::Conflict { key: printable(key) }),
        _ => Ok(()),
    }
}

/// The call failed in the transport, not in etcd's logic: another member
/// may answer.
fn transport_failure(status: &tonic::Status) -> bool {
    unavailable_code(status.code())
}

/// The codes of a member that can't answer now: unreachable, leaderless,
/// or out of time (tonic reports its own request timeout as CANCELLED,
/// "Timeout expired").
fn unavailable_code(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

/// The connection was refused: the request never left this process.
fn connection_refused(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = error.source();
    }
    false
}

fn op_key(op: &Op) -> (&[u8], Expect) {
    match op {
        Op::Put { key, expect, .. } | Op::Delete { key, expect } => (key, *expect),
    }
}

impl Store for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        let page = self.range(&self.key(key), &[], 0, 0).await?;
        Ok(page.kvs.into_iter().next().map(versioned))
    }

    async fn put(&self, key: &[u8], value: &[u8], expect: Expect) -> Result<u64, StoreError> {
        never_holds(key, expect)?;
        let full = self.key(key);
        let request = TxnRequest {
            compare: compare(&full, expect).into_iter().collect(),
            success: vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: full,
                    value: value.to_vec(),
                    prev_kv: true,
                    ..Default::default()
                })),
            }],
            failure: Vec::new(),
        };
        let reply = self.txn(request).await?;
        if !reply.succeeded {
            return Err(StoreError::Conflict { key: printable(key) });
        }
        let put = reply.responses.into_iter().find_map(|r| match r.response {
            Some(Response::ResponsePut(put)) => Some(put),
            _ => None,
        });
        let put = put.ok_or_else(|| backend(EtcdError::Reply("put")))?;
        let previous = put.prev_kv.map_or(0, |kv| u64::try_from(kv.version).unwrap_or(0));
        Ok(previous + 1)
    }

    /// One transaction; concurrent batches share one ([`group`]).
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        for op in &ops {
            let (key, expect) = op_key(op);
            never_holds(key, expect)?;
        }
        let queue = {
            let mut slot = self.inner.group.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*slot {
                Some(queue) if !queue.is_closed() => queue.clone(),
                _ => slot.insert(group::start(Arc::downgrade(&self.inner))).clone(),
            }
        };
        group::apply(&queue, ops).await
    }

    async fn list(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        let full = self.key(prefix);
        let end = prefix_end(&full);
        self.scan(&full, &end, 0).await
    }

    async fn list_range(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.scan(&self.key(start), &self.key(end), 0).await
    }

    async fn list_from(&self, start: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let end = prefix_end(&self.inner.prefix);
        self.scan(&self.key(start), &end, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"skm/"), b"skm0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[0xff, 0xff]), [0]);
    }

    #[test]
    fn conditions_map_to_version_comparisons() {
        assert!(compare(b"k", Expect::Any).is_none());
        let absent = compare(b"k", Expect::Absent).unwrap();
        assert_eq!(absent.target_union, Some(TargetUnion::Version(0)));
        assert!(holds(Expect::Absent, 0) && !holds(Expect::Absent, 1));
        assert!(holds(Expect::Revision(3), 3) && !holds(Expect::Revision(3), 0));
    }
}
