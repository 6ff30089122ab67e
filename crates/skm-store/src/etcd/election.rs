//! [`EtcdStore::elect`]: one candidate at a time holds a job (kms-api's
//! maintenance pass), by a key bound to an etcd lease.
//!
//! A candidate grants itself a lease of `ttl`, then creates
//! `election/<job>` bound to it in a transaction that succeeds only if the
//! key is absent. The winner keeps its lease alive (every `ttl`/3); the
//! others try again every `ttl`/2. When the leader stops, its lease is
//! revoked and the key goes at once; when it crashes or is cut off, etcd
//! lets the lease expire after `ttl` and the key goes then.
//!
//! **Never two leaders at once, as far as the local clock can tell:** a
//! leader counts itself one only until the instant it sent its last
//! acknowledged keep-alive plus the TTL etcd granted, less a margin of a
//! fifth of the TTL; etcd can't expire the lease before that instant
//! (it renewed the lease after the request was sent). So a leader that
//! loses etcd stops acting before another can be elected. The jobs are
//! compare-and-swap writes anyway, so even a clock jump can't make one
//! happen twice: the election saves the duplicated work and the audit
//! noise of the loser's refused attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use skm_proto::etcd::compare::{CompareResult, CompareTarget, TargetUnion};
use skm_proto::etcd::lease_client::LeaseClient;
use skm_proto::etcd::request_op::Request;
use skm_proto::etcd::{
    Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RequestOp, TxnRequest,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::{EtcdStore, Inner};

/// Where the elections live, under the prefix: `election/<job>`.
pub const ELECTION_PREFIX: &[u8] = b"election/";

/// Whether this process holds a job now. Dropping it resigns (the lease is
/// revoked, so another candidate takes over at once).
#[derive(Debug)]
pub struct Leadership {
    state: Arc<State>,
    /// Dropped with the `Leadership`: tells the campaign to resign.
    _resign: Option<mpsc::Sender<()>>,
    campaign: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct State {
    start: Instant,
    /// Nanoseconds after `start` until which this process leads (0: not).
    until: AtomicU64,
    /// No election: the only process on its store.
    alone: bool,
}

impl State {
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    fn lead_until(&self, until: Instant) {
        self.until.store(self.nanos(until).max(1), Ordering::Release);
    }

    fn lose(&self) {
        self.until.store(0, Ordering::Release);
    }

    /// Whether the term has not run out yet.
    fn leads(&self) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until > 0 && self.nanos(Instant::now()) < until
    }
}

impl Leadership {
    /// Always the leader: a store no other process shares (sled).
    pub fn alone() -> Self {
        let state = State { start: Instant::now(), until: AtomicU64::new(0), alone: true };
        Self { state: Arc::new(state), _resign: None, campaign: None }
    }

    /// Stops campaigning without resigning, as a process that froze or
    /// lost etcd would: the lease is no longer renewed, this process stops
    /// counting itself the leader when its term runs out, and etcd lets
    /// another be elected once the lease has expired (for failover tests).
    pub fn abandon(&self) {
        if let Some(campaign) = &self.campaign {
            campaign.abort();
        }
    }

    /// Resigns and waits until it is done: a leader revokes its lease, so
    /// that another candidate is elected at once rather than after it
    /// expires (a clean shutdown).
    pub async fn resign(mut self) {
        drop(self._resign.take());
        if let Some(campaign) = self.campaign.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), campaign).await;
        }
    }

    /// Whether this process leads now.
    pub fn is_leader(&self) -> bool {
        self.state.alone || self.state.leads()
    }
}

impl EtcdStore {
    /// Campaigns for `job` as `candidate` with leases of `ttl` (at least
    /// 2 s, etcd's floor) until the returned [`Leadership`] is dropped.
    pub fn elect(&self, job: &str, candidate: &str, ttl: Duration) -> Leadership {
        let state = Arc::new(State { start: Instant::now(), until: AtomicU64::new(0), alone: false });
        let (resign, resigned) = mpsc::channel(1);
        let campaign = Campaign {
            inner: Arc::clone(&self.inner),
            key: self.key(&[ELECTION_PREFIX, job.as_bytes()].concat()),
            job: job.to_owned(),
            candidate: candidate.as_bytes().to_vec(),
            ttl: ttl.max(Duration::from_secs(2)),
            state: Arc::clone(&state),
            endpoint: self.inner.current.load(Ordering::Relaxed),
        };
        let campaign = tokio::spawn(campaign.run(resigned));
        Leadership { state, _resign: Some(resign), campaign: Some(campaign) }
    }
}

struct Campaign {
    inner: Arc<Inner>,
    key: Vec<u8>,
    job: String,
    candidate: Vec<u8>,
    ttl: Duration,
    state: Arc<State>,
    /// The endpoint lease calls go to; the next after a failure.
    endpoint: usize,
}

impl Campaign {
    fn lease_client(&self) -> LeaseClient<Channel> {
        let endpoint = &self.inner.endpoints[self.endpoint % self.inner.endpoints.len()];
        LeaseClient::new(endpoint.channel.clone())
    }

    /// Gives a lease back (best effort: unrevoked, it expires by itself).
    async fn revoke(&self, lease: i64) {
        let mut client = self.lease_client();
        let _ = tokio::time::timeout(self.inner.timeout, client.lease_revoke(LeaseRevokeRequest { id: lease })).await;
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)
    }

    async fn run(mut self, mut resigned: mpsc::Receiver<()>) {
        loop {
            let lease = tokio::select! {
                _ = resigned.recv() => return,
                lease = self.acquire() => lease,
            };
            let Some(lease) = lease else {
                tokio::select! {
                    _ = resigned.recv() => return,
                    () = tokio::time::sleep(self.ttl / 2) => continue,
                }
            };
            tracing::info!(job = %self.job, "elected: this replica runs the job");
            tokio::select! {
                _ = resigned.recv() => {
                    self.state.lose();
                    self.revoke(lease).await;
                    return;
                }
                () = self.keep_alive(lease) => {
                    self.state.lose();
                    tracing::warn!(job = %self.job, "no longer elected (the lease could not be kept alive)");
                }
            }
        }
    }

    /// Grants a lease and creates the election key on it if it is absent:
    /// the lease when elected, else `None` (the lease revoked).
    async fn acquire(&mut self) -> Option<i64> {
        let asked = Instant::now();
        let mut client = self.lease_client();
        let grant = client.lease_grant(LeaseGrantRequest { ttl: self.ttl_secs(), id: 0 });
        let granted = match tokio::time::timeout(self.inner.timeout, grant).await {
            Ok(Ok(reply)) => reply.into_inner(),
            failed => {
                tracing::debug!(job = %self.job, ?failed, "lease not granted");
                self.endpoint += 1;
                return None;
            }
        };
        let take = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal.into(),
                target: CompareTarget::Version.into(),
                key: self.key.clone(),
                target_union: Some(TargetUnion::Version(0)),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: self.key.clone(),
                    value: self.candidate.clone(),
                    lease: granted.id,
                    ..Default::default()
                })),
            }],
            failure: Vec::new(),
        };
        let store = EtcdStore { inner: Arc::clone(&self.inner) };
        match store.txn(take).await {
            Ok(reply) if reply.succeeded => {
                self.state.lead_until(asked + self.lease_term(granted.ttl));
                Some(granted.id)
            }
            _ => {
                self.revoke(granted.id).await;
                None
            }
        }
    }

    /// How long a lease of `granted` seconds, renewed at some instant,
    /// lets this process lead after it: the TTL less a fifth.
    fn lease_term(&self, granted: i64) -> Duration {
        let ttl = Duration::from_secs(u64::try_from(granted).unwrap_or(0));
        ttl.saturating_sub(ttl / 5)
    }

    /// Renews the lease every ttl/3, moving the leadership's end on; returns
    /// once it has passed without a renewal (or etcd says the lease is gone).
    async fn keep_alive(&mut self, lease: i64) {
        let period = self.ttl / 3;
        loop {
            let (requests, queue) = mpsc::channel(1);
            // etcd sends the stream's response headers with its first
            // answer, so the first renewal must be queued before the call
            // is opened, or opening waits for headers that never come.
            let mut sent = Instant::now();
            let mut queued = requests.try_send(LeaseKeepAliveRequest { id: lease }).is_ok();
            let mut client = self.lease_client();
            let opened = tokio::time::timeout(
                self.inner.timeout,
                client.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(queue)),
            )
            .await;
            if let Ok(Ok(stream)) = opened {
                let mut stream = stream.into_inner();
                loop {
                    if !std::mem::take(&mut queued) {
                        sent = Instant::now();
                        if requests.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                            break;
                        }
                    }
                    match tokio::time::timeout(period, stream.message()).await {
                        Ok(Ok(Some(reply))) if reply.ttl > 0 => {
                            self.state.lead_until(sent + self.lease_term(reply.ttl));
                        }
                        // etcd says the lease has expired: another may lead.
                        Ok(Ok(Some(_))) => return,
                        _ => break,
                    }
                    tokio::time::sleep(period.saturating_sub(sent.elapsed())).await;
                }
            }
            if !self.state.leads() {
                return;
            }
            self.endpoint += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
