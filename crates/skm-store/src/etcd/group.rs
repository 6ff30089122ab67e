//! Group commit: batches applied concurrently share one etcd transaction.
//!
//! Each transaction costs etcd a Raft round and the bookkeeping of a
//! request on every member, whatever its size: at 32 creates in flight,
//! etcd's three members spent about 1 ms of CPU per create, one
//! transaction each (docs/BENCHMARKS.md, "On etcd"). So [`Store::apply`]
//! on etcd hands its batch to one committer task per store. While a
//! transaction is in flight the batches that arrive wait; the next
//! transaction takes all of them, with every batch's comparisons, so etcd
//! does the work once for all. A lone batch goes at once, as before.
//!
//! - A batch that names a key already in the group waits for the next one:
//!   etcd refuses a key twice in a transaction, and the second batch must
//!   see the first's effect.
//! - A group stays within etcd's default limits: [`MAX_OPS`] operations
//!   (`--max-txn-ops` is 128) and [`MAX_BYTES`] of keys and values (the
//!   request limit is 1.5 MiB). A larger batch goes alone.
//! - When the transaction fails, etcd's failure reads (one per operation,
//!   at the transaction's revision) tell each batch whether its own
//!   comparisons held: a batch whose did not gets its conflict, as alone;
//!   the others were refused only for their company and are sent again,
//!   each on its own.
//! - When etcd can't answer, every batch of the group gets the error (its
//!   outcome is unknown, as for a batch alone).
//!
//! [`Store::apply`]: crate::Store::apply

use std::collections::HashSet;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::{EtcdError, EtcdStore, Inner, backend, op_key};
use crate::{Op, StoreError};

/// The most operations in one group's transaction.
pub(super) const MAX_OPS: usize = 128;

/// The most bytes of keys and values in one group's transaction.
pub(super) const MAX_BYTES: usize = 1024 * 1024;

/// Batches applied through a store and the transactions that carried them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommits {
    /// Batches committed or refused.
    pub batches: u64,
    /// Transactions sent for them.
    pub transactions: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counts {
    batches: AtomicU64,
    transactions: AtomicU64,
}

impl Counts {
    pub(super) fn read(&self) -> GroupCommits {
        GroupCommits {
            batches: self.batches.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
        }
    }

    fn sent(&self, batches: usize, transactions: u64) {
        self.batches.fetch_add(batches as u64, Ordering::Relaxed);
        self.transactions.fetch_add(transactions, Ordering::Relaxed);
    }
}

/// A batch waiting for its transaction.
pub(super) struct Pending {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// Where a store's batches queue for the committer.
pub(super) type Queue = mpsc::UnboundedSender<Pending>;

/// Starts the committer of a store; it ends when the store is dropped.
pub(super) fn start(inner: Weak<Inner>) -> Queue {
    let (queue, batches) = mpsc::unbounded_channel();
    tokio::spawn(run(inner, batches));
    queue
}

/// Queues `ops` and waits for the transaction that carries them.
pub(super) async fn apply(queue: &Queue, ops: Vec<Op>) -> Result<(), StoreError> {
    let (done, answer) = oneshot::channel();
    let stopped = || backend(EtcdError::Reply("batch: the committer stopped"));
    queue.send(Pending { ops, done }).map_err(|_| stopped())?;
    answer.await.unwrap_or_else(|_| Err(stopped()))
}

/// The batches of one transaction.
struct Group {
    batches: Vec<Pending>,
    keys: HashSet<Vec<u8>>,
    ops: usize,
    bytes: usize,
    /// The first batch names a key twice: etcd will refuse it, so it goes
    /// alone rather than take others down with it.
    alone: bool,
}

impl Group {
    fn new(first: Pending) -> Self {
        let alone = !distinct(&first.ops);
        let mut group = Self { batches: Vec::new(), keys: HashSet::new(), ops: 0, bytes: 0, alone };
        group.push(first);
        group
    }

    /// Whether `batch` can join: within the limits, no key of the group's,
    /// and no key twice in itself (see `alone`).
    fn fits(&self, batch: &Pending) -> bool {
        !self.alone
            && self.ops + batch.ops.len() <= MAX_OPS
            && self.bytes + size(&batch.ops) <= MAX_BYTES
            && batch.ops.iter().all(|op| !self.keys.contains(op_key(op).0))
            && distinct(&batch.ops)
    }

    fn push(&mut self, batch: Pending) {
        self.ops += batch.ops.len();
        self.bytes += size(&batch.ops);
        self.keys.extend(batch.ops.iter().map(|op| op_key(op).0.to_vec()));
        self.batches.push(batch);
    }
}

fn distinct(ops: &[Op]) -> bool {
    let mut keys = HashSet::with_capacity(ops.len());
    ops.iter().all(|op| keys.insert(op_key(op).0))
}

fn size(ops: &[Op]) -> usize {
    ops.iter()
        .map(|op| match op {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
        })
        .sum()
}

async fn run(inner: Weak<Inner>, mut batches: mpsc::UnboundedReceiver<Pending>) {
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(batch) => batch,
            None => match batches.recv().await {
                Some(batch) => batch,
                None => return,
            },
        };
        let mut group = Group::new(first);
        while let Ok(batch) = batches.try_recv() {
            if group.fits(&batch) {
                group.push(batch);
            } else {
                next = Some(batch);
                break;
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        EtcdStore { inner }.commit(group.batches).await;
    }
}

impl EtcdStore {
    /// Commits a group's batches in one transaction and answers each.
    async fn commit(&self, mut batches: Vec<Pending>) {
        self.inner.grouped.sent(batches.len(), 1);
        if batches.len() == 1 {
            if let Some(batch) = batches.pop() {
                let result = self.apply_one(&batch.ops).await;
                let _ = batch.done.send(result);
            }
            return;
        }
        let all: Vec<&Op> = batches.iter().flat_map(|b| &b.ops).collect();
        let reply = match self.txn(self.transaction(all.iter().copied())).await {
            Ok(reply) => reply,
            Err(e) => {
                for batch in batches {
                    let _ = batch.done.send(Err(share(&e)));
                }
                return;
            }
        };
        if reply.succeeded {
            for batch in batches {
                let _ = batch.done.send(Ok(()));
            }
            return;
        }
        let mut reads = reply.responses.into_iter();
        for batch in batches {
            let own: Vec<_> = reads.by_ref().take(batch.ops.len()).collect();
            let result = match super::conflict(&batch.ops, own) {
                // Its comparisons held: refused for the others' sake.
                Ok(None) => {
                    self.inner.grouped.sent(0, 1);
                    self.apply_one(&batch.ops).await
                }
                Ok(Some(conflict)) => Err(conflict),
                Err(e) => Err(e),
            };
            let _ = batch.done.send(result);
        }
    }
}

/// The same failure for each batch of a group (the error itself can't be
/// cloned): the same kind, with the same message.
fn share(e: &StoreError) -> StoreError {
    let message = std::error::Error::source(e).map_or_else(|| e.to_string(), skm_runtime::daemon::error_chain);
    match e {
        StoreError::Conflict { key } => StoreError::Conflict { key: key.clone() },
        StoreError::Malformed { key } => StoreError::Malformed { key: key.clone() },
        StoreError::Unavailable(_) => StoreError::Unavailable(Box::new(EtcdError::Shared(message))),
        StoreError::Backend(_) => backend(EtcdError::Shared(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Expect;

    fn batch(keys: &[&str]) -> Pending {
        let ops = keys
            .iter()
            .map(|k| Op::Put { key: k.as_bytes().to_vec(), value: vec![0; 10], expect: Expect::Absent })
            .collect();
        Pending { ops, done: oneshot::channel().0 }
    }

    #[test]
    fn a_group_takes_batches_of_other_keys_within_the_limits() {
        let mut group = Group::new(batch(&["a", "b"]));
        assert!(group.fits(&batch(&["c"])));
        assert!(!group.fits(&batch(&["c", "b"])), "b is the group's already");
        assert!(!group.fits(&batch(&["d", "d"])), "a key twice in one batch");
        group.push(batch(&["c"]));
        let many: Vec<String> = (0..MAX_OPS - 3).map(|i| format!("k{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(group.fits(&batch(&many)));
        let too_many: Vec<String> = (0..MAX_OPS - 2).map(|i| format!("k{i}")).collect();
        let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
        assert!(!group.fits(&batch(&too_many)), "over {MAX_OPS} operations");
        let big = Pending {
            ops: vec![Op::Put { key: b"big".to_vec(), value: vec![0; MAX_BYTES], expect: Expect::Any }],
            done: oneshot::channel().0,
        };
        assert!(!group.fits(&big), "over {MAX_BYTES} bytes");
    }

    #[test]
    fn a_batch_etcd_will_refuse_goes_alone() {
        let group = Group::new(batch(&["a", "a"]));
        assert!(!group.fits(&batch(&["b"])));
    }
}
