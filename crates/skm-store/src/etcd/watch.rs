//! [`EtcdStore::watch`]: every change under the store's prefix, with a
//! heartbeat that says how recent the last report is.
//!
//! One watch stream on one member at a time. After it is created the
//! watch reports [`WatchEvent::Restarted`]; then each written or deleted
//! key as [`WatchEvent::Changed`], and, every `progress_every`, the answer
//! to a progress request (etcd's `WatchProgressRequest`) as
//! [`WatchEvent::UpToDate`] with the instant the check began. A check
//! first reads the cluster's revision linearizably (so it covers every
//! write acknowledged before that instant, on any member), then asks the
//! watch's member for its progress; etcd answers only once the watcher has
//! sent every event up to the member's own revision, and the check counts
//! only when that revision has reached the cluster's. So a member that
//! lags or is cut off from the others (and would go on answering with its
//! old revision) never vouches for changes it has not seen. A stream that
//! breaks, or leaves a check unsatisfied for four periods, is dropped, and
//! the watch starts again on the next member, reporting `Restarted` again
//! (changes between the two streams are not replayed: the consumer reads
//! afresh instead).
//!
//! etcd before 3.4.25 and 3.5.8 may send a progress answer just ahead of
//! events already queued for the same stream (etcd issue #15220); those
//! events then arrive right after it, so `UpToDate` can run ahead of the
//! events by that reordering, not by more.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use skm_proto::etcd::watch_client::WatchClient;
use skm_proto::etcd::watch_request::RequestUnion;
use skm_proto::etcd::{WatchCreateRequest, WatchProgressRequest, WatchRequest};
use tokio::sync::mpsc;

use super::{EtcdError, EtcdStore, Inner, prefix_end};
use crate::WatchEvent;

/// Unanswered progress periods after which a stream counts as broken.
const SILENT_PERIODS: u32 = 4;

/// Reports the watch can queue before it waits for the consumer.
const QUEUE: usize = 1024;

impl EtcdStore {
    /// Watches every key under the prefix until the receiver is dropped,
    /// checking progress every `progress_every` (see the module docs).
    pub fn watch(&self, progress_every: Duration) -> mpsc::Receiver<WatchEvent> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let count = inner.endpoints.len();
            let mut index = inner.current.load(Ordering::Relaxed) % count;
            loop {
                let endpoint = &inner.endpoints[index];
                match follow(&inner, index, progress_every, &tx).await {
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

/// A progress check sent and not yet satisfied.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// When it was sent.
    sent: Instant,
    /// The cluster's revision at that instant, read linearizably: the
    /// stream is up to date once its member has reached it.
    target: i64,
}

/// One watch stream on endpoint `index`, until it breaks (`Err`) or the
/// consumer is gone (`Ok`).
async fn follow(
    inner: &Arc<Inner>,
    index: usize,
    progress_every: Duration,
    tx: &mpsc::Sender<WatchEvent>,
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
    let create =
        WatchCreateRequest { key: inner.prefix.clone(), range_end: prefix_end(&inner.prefix), ..Default::default() };
    let asked = Instant::now();
    let _ = requests.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await;
    let mut client = WatchClient::new(endpoint.channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
    let opened = tokio::time::timeout(inner.timeout, client.watch(tokio_stream::wrappers::ReceiverStream::new(queue)))
        .await
        .map_err(|_| EtcdError::Timeout { endpoint: endpoint.addr.clone(), timeout: inner.timeout })?;
    let mut stream = opened.map_err(failed)?.into_inner();
    let mut tick = tokio::time::interval(progress_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Option<Pending> = None;
    let mut created = false;
    loop {
        tokio::select! {
            () = tx.closed() => return Ok(()),
            message = stream.message() => {
                let Some(reply) = message.map_err(failed)? else {
                    return Err(EtcdError::Reply("watch (the stream ended)"));
                };
                if reply.canceled {
                    return Err(EtcdError::Call {
                        endpoint: endpoint.addr.clone(),
                        code: tonic::Code::Cancelled,
                        message: format!("watch canceled: {}", reply.cancel_reason),
                    });
                }
                let revision = reply.header.as_ref().map_or(0, |h| h.revision);
                let event = if reply.created {
                    created = true;
                    Some(WatchEvent::Restarted { as_of: asked })
                } else if reply.events.is_empty() {
                    // A progress answer: up to date once the member has
                    // reached the cluster's revision of when it was asked.
                    match pending {
                        Some(p) if revision >= p.target => {
                            pending = None;
                            Some(WatchEvent::UpToDate { as_of: p.sent })
                        }
                        _ => None,
                    }
                } else {
                    for event in reply.events {
                        let key = event.kv.map(|kv| kv.key).unwrap_or_default();
                        let key = key.strip_prefix(inner.prefix.as_slice()).unwrap_or(&key).to_vec();
                        if tx.send(WatchEvent::Changed(key)).await.is_err() {
                            return Ok(());
                        }
                    }
                    None
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
                let check = match pending {
                    Some(p) if p.sent.elapsed() > silent => return Err(timeout()),
                    // Asked again: the member had not caught up yet.
                    Some(p) => p,
                    None => {
                        let sent = Instant::now();
                        let now = store.range(&inner.prefix, &[], 1, 0).await;
                        match now {
                            Ok(page) => Pending { sent, target: page.header.map_or(0, |h| h.revision) },
                            // The cluster can't say its revision: no progress to vouch for.
                            Err(_) => continue,
                        }
                    }
                };
                pending = Some(check);
                let progress = WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) };
                if requests.send(progress).await.is_err() {
                    return Err(EtcdError::Reply("watch (the request stream closed)"));
                }
            }
        }
    }
}
