//! [`EtcdStore::watch`]: every change under the store's prefix, with a
//! heartbeat that says how recent the last report is.
//!
//! One watch stream on one member at a time. After it is first created the
//! watch reports [`WatchEvent::Restarted`]; then each written or deleted
//! key as [`WatchEvent::Changed`], and, every `progress_every`, a
//! [`WatchEvent::UpToDate`] with the instant a check began. A check writes
//! the watch's beacon key (`watchbeacon/<name>`, a counter) and waits for
//! the watch to report that write: etcd delivers a watch's events in
//! revision order, and the beacon's revision is above that of every write
//! acknowledged before the check began (on any member: the write goes
//! through the leader), so once the beacon arrives every such change has
//! been reported. A member that lags or is cut off can't deliver the
//! beacon, so it never vouches for changes it has not seen. Beacons are
//! not reported as changes.
//!
//! Why not etcd's own progress requests: etcd 3.4 answers a
//! `WatchProgressRequest` at once with its current revision even while the
//! watcher is still catching up (e.g. after resuming from an older
//! revision), ahead of the events it has not sent yet — found by
//! tests/tests/etcd_store.rs — and before 3.4.25/3.5.8 an answer can also
//! overtake queued events (etcd issue #15220). A beacon costs one small
//! write per check (4 a second with the default staleness bound).
//!
//! A stream that breaks, or leaves a check unanswered for four periods, is
//! dropped, and the watch starts again on the next member, from the
//! revision after the last event it reported, so nothing is missed and no
//! restart is reported. Only when etcd has compacted that history does it
//! start from the member's current revision and report `Restarted` again
//! (the consumer then reads afresh).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use skm_proto::etcd::watch_client::WatchClient;
use skm_proto::etcd::watch_request::RequestUnion;
use skm_proto::etcd::{WatchCreateRequest, WatchRequest};
use tokio::sync::mpsc;

use super::{EtcdError, EtcdStore, Inner, prefix_end};
use crate::{Expect, Store, WatchEvent};

/// Where the beacons live, under the prefix: `watchbeacon/<name>`.
pub const BEACON_PREFIX: &[u8] = b"watchbeacon/";

/// Unanswered progress periods after which a stream counts as broken.
const SILENT_PERIODS: u32 = 4;

/// Reports the watch can queue before it waits for the consumer.
const QUEUE: usize = 1024;

impl EtcdStore {
    /// Watches every key under the prefix until the receiver is dropped,
    /// checking progress every `progress_every` with the beacon
    /// `watchbeacon/<name>` (see the module docs; one name per watcher).
    pub fn watch(&self, name: &str, progress_every: Duration) -> mpsc::Receiver<WatchEvent> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let inner = Arc::clone(&self.inner);
        let beacon: Arc<[u8]> = [BEACON_PREFIX, name.as_bytes()].concat().into();
        tokio::spawn(async move {
            let count = inner.endpoints.len();
            let mut index = inner.current.load(Ordering::Relaxed) % count;
            // Every change up to this revision has been reported (0: none yet).
            let mut seen = 0;
            loop {
                let endpoint = &inner.endpoints[index];
                match follow(&inner, index, progress_every, &beacon, &tx, &mut seen).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(endpoint = %endpoint.addr, error = %e, "etcd watch broke; starting it again on the next member")
                    }
                }
                index = (index + 1) % count;
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(progress_every.min(Duration::from_millis(200))) => {}
                }
            }
        });
        rx
    }
}

/// A check whose beacon has not come back yet.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// When it began (before the beacon was written).
    sent: Instant,
    /// The beacon's value.
    count: u64,
}

/// One watch stream on endpoint `index`, until it breaks (`Err`) or the
/// consumer is gone (`Ok`). It resumes after `seen`, the revision up to
/// which every change was reported, when there is one (so a new stream
/// misses nothing and reports no restart); from the member's current
/// revision otherwise, or when etcd has compacted what came after `seen`.
async fn follow(
    inner: &Arc<Inner>,
    index: usize,
    progress_every: Duration,
    beacon: &[u8],
    tx: &mpsc::Sender<WatchEvent>,
    seen: &mut i64,
) -> Result<(), EtcdError> {
    let endpoint = &inner.endpoints[index];
    let failed = |status: tonic::Status| EtcdError::Call {
        endpoint: endpoint.addr.clone(),
        code: status.code(),
        message: status.message().to_owned(),
    };
    let silent = progress_every * SILENT_PERIODS;
    let timeout = || EtcdError::Timeout { endpoint: endpoint.addr.clone(), timeout: silent };
    let store = EtcdStore { inner: Arc::clone(inner) };
    let (requests, queue) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: inner.prefix.clone(),
        range_end: prefix_end(&inner.prefix),
        start_revision: if *seen > 0 { *seen + 1 } else { 0 },
        ..Default::default()
    };
    let resuming = *seen > 0;
    let asked = Instant::now();
    // `requests` stays open as long as the stream: closing it ends the watch.
    let _ = requests.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await;
    let mut client = WatchClient::new(endpoint.channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
    let opened = tokio::time::timeout(inner.timeout, client.watch(tokio_stream::wrappers::ReceiverStream::new(queue)))
        .await
        .map_err(|_| EtcdError::Timeout { endpoint: endpoint.addr.clone(), timeout: inner.timeout })?;
    let mut stream = opened.map_err(failed)?.into_inner();
    let mut tick = tokio::time::interval(progress_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Option<Pending> = None;
    let mut count: u64 = 0;
    let mut created = false;
    loop {
        tokio::select! {
            () = tx.closed() => return Ok(()),
            message = stream.message() => {
                let Some(reply) = message.map_err(failed)? else {
                    return Err(EtcdError::Reply("watch (the stream ended)"));
                };
                if reply.canceled {
                    if reply.compact_revision > 0 {
                        // What came after `seen` is gone: start afresh.
                        *seen = 0;
                    }
                    return Err(EtcdError::Call {
                        endpoint: endpoint.addr.clone(),
                        code: tonic::Code::Cancelled,
                        message: format!("watch canceled: {}", reply.cancel_reason),
                    });
                }
                let revision = reply.header.as_ref().map_or(0, |h| h.revision);
                let event = if reply.created {
                    created = true;
                    if resuming {
                        None
                    } else {
                        *seen = revision;
                        Some(WatchEvent::Restarted { as_of: asked })
                    }
                } else {
                    let mut up_to_date = None;
                    for event in reply.events {
                        let kv = event.kv.unwrap_or_default();
                        *seen = (*seen).max(kv.mod_revision);
                        let key = kv.key.strip_prefix(inner.prefix.as_slice()).unwrap_or(&kv.key);
                        if key == beacon {
                            let value = kv.value.try_into().map_or(0, u64::from_be_bytes);
                            if let Some(p) = pending.filter(|p| value >= p.count) {
                                pending = None;
                                up_to_date = Some(WatchEvent::UpToDate { as_of: p.sent });
                            }
                        } else if tx.send(WatchEvent::Changed(key.to_vec())).await.is_err() {
                            return Ok(());
                        }
                    }
                    up_to_date
                };
                if let Some(event) = event
                    && tx.send(event).await.is_err()
                {
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                if !created {
                    if asked.elapsed() > silent {
                        return Err(timeout());
                    }
                    continue;
                }
                match pending {
                    Some(p) if p.sent.elapsed() > silent => return Err(timeout()),
                    Some(_) => {}
                    None => {
                        let sent = Instant::now();
                        count += 1;
                        // A failed write leaves nothing to vouch for: the
                        // next tick tries again, the stream times out.
                        match store.put(beacon, &count.to_be_bytes(), Expect::Any).await {
                            Ok(_) => pending = Some(Pending { sent, count }),
                            Err(e) => tracing::debug!(error = %e, "etcd watch beacon not written"),
                        }
                    }
                }
            }
        }
    }
}
