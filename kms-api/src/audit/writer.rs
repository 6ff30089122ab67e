//! Writing the audit log: recovery at open, then group commit.
//!
//! The file's state ([`Writer`]) sits behind a mutex. An `append` that
//! finds nothing queued and the mutex free commits its one event itself,
//! on its own thread ([`Writer::commit_one`]): a lone request then pays
//! for its write and sync and nothing else. Otherwise `append` queues its
//! event with a oneshot and waits for the writer thread ([`run`]), which
//! blocks for the first queued event, then takes every other event already
//! queued (those that arrived while the previous batch was being written
//! and synced, by it or inline), encodes them with consecutive sequence
//! numbers, writes them with one `write_all`, makes them durable with one
//! `sync_data`, and only then answers all of them. So N concurrent appends
//! cost far fewer than N fsyncs, a request arriving during a sync rides
//! the next one, and each append returns only once its entry is on disk.
//!
//! Fail closed: before each batch the writer checks that the log's path
//! still names the file it opened (same device and inode) and that the file
//! has the length it left it at. If not (deleted, renamed, replaced, or
//! written by someone else), or if the write or the sync fails, the whole
//! batch fails with [`Failure::Unavailable`] and the log is marked
//! unhealthy until a later batch succeeds. A failed write is cut back to the
//! last durable length so a half-written batch never precedes later entries.
//!
//! Anchoring: the writer publishes the seq and MAC of its last durable
//! entry after each batch (`Shared::tail`, for `crate::anchor`), and
//! writes nothing while the log is [`Anchoring::Pending`]; while it is
//! [`Anchoring::Lost`] it writes only an acknowledgement of the loss, at the
//! seq after the anchor's, with the gap in its `lost` field. It also keeps
//! the index of every [`INDEX_EVERY`]th line that readers start from.
//!
//! With [`AuditSync::Os`] (opt-in) the batch is answered once `write_all`
//! has handed it to the kernel, and a second thread runs `sync_data` every
//! interval. A failed background sync marks the log unhealthy and the next
//! batch syncs first and fails if that fails too (still fail closed).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use skm_crypto::audit::AuditFormat;

use super::format::{Entry, GENESIS_PREV, MAX_LINE, encode_into};
use super::journal::Journal;
use super::keys::AuditKeys;
use super::reader::{INDEX_EVERY, Mark};
use super::{AuditError, AuditSync, Event, Lost};

/// Most events one batch takes; the rest wait for the next one.
const MAX_BATCH: usize = 4096;

/// How often the log is synced behind the journal.
const LOG_SYNC_BEHIND_JOURNAL: Duration = Duration::from_millis(250);

/// One event to append.
pub(super) struct Append {
    pub(super) event: Event,
    /// The event acknowledges a loss found against the anchor: while one is
    /// pending it is the only kind of entry written, and it is written
    /// after the gap, naming it.
    pub(super) acknowledges_loss: bool,
}

/// One queued append, answered once its batch is written.
pub(super) struct Request {
    pub(super) append: Append,
    pub(super) done: oneshot::Sender<Result<u64, Failure>>,
}

/// Where the log stands against its anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchoring {
    /// Not compared yet: nothing is written until it is.
    Pending,
    /// Compared and matching (or acknowledged): entries are written.
    Checked,
    /// Shorter than (or not matching) its anchor: only an acknowledgement
    /// of the loss is written.
    Lost(Lost),
}

/// Why an append failed, as the writer reports it (copyable: one failure
/// answers a whole batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    Unavailable,
    KeysNotLoaded,
    TooLarge,
    Lost(Lost),
}

impl From<Failure> for AuditError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unavailable => AuditError::Unavailable,
            Failure::KeysNotLoaded => AuditError::KeysNotLoaded,
            Failure::TooLarge => AuditError::EventTooLarge,
            Failure::Lost(lost) => AuditError::Lost(lost),
        }
    }
}

/// State the writer publishes to the [`super::AuditLog`] handle.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) healthy: AtomicBool,
    pub(super) syncs: AtomicU64,
    pub(super) entries: AtomicU64,
    pub(super) failed_batches: AtomicU64,
    /// Length of the file up to the end of the last durable entry (with
    /// [`AuditSync::Os`], or with the journal: the last entry written to
    /// the kernel).
    pub(super) durable_len: AtomicU64,
    /// Length of the file known to be synced (the journal's records of
    /// lines up to here may be overwritten).
    pub(super) log_synced: AtomicU64,
    pub(super) last_seq: AtomicU64,
    /// A background sync failed ([`AuditSync::Os`]); cleared by a sync that
    /// works.
    pub(super) sync_failed: AtomicBool,
    /// Where the log stands against its anchor.
    pub(super) anchoring: Mutex<Anchoring>,
    /// The last acknowledged loss and the seq of the entry that did it.
    pub(super) acknowledged: Mutex<Option<(Lost, u64)>>,
    /// Every [`INDEX_EVERY`]th line of the file: its seq and offset.
    pub(super) index: RwLock<Vec<Mark>>,
    /// Seq and MAC of the last durable entry ((0, genesis) when none).
    pub(super) tail: watch::Sender<(u64, [u8; 32])>,
    /// Seconds per successful `sync_data` (for metrics).
    pub(super) sync_seconds: skm_runtime::metrics::Histogram,
    /// Tests make syncs of the log fail (a disk that stops accepting them).
    #[cfg(test)]
    pub(super) fail_syncs: AtomicBool,
}

impl Shared {
    /// `sync_data` of the log file (failing on demand in tests).
    fn sync(&self, file: &File) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_syncs.load(Ordering::Acquire) {
            return Err(io::Error::other("sync failure injected by a test"));
        }
        let started = std::time::Instant::now();
        file.sync_data()?;
        self.sync_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    pub(super) fn anchoring(&self) -> Anchoring {
        *self.anchoring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_anchoring(&self, state: Anchoring) {
        *self.anchoring.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }
}

/// Device and inode of a file.
pub(super) type Identity = (u64, u64);

/// Whether `path` still names the file with `identity`.
pub(super) fn same_file(path: &Path, identity: Identity) -> bool {
    std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == identity)
}

pub(super) struct Writer {
    path: PathBuf,
    file: File,
    identity: Identity,
    /// Length of the file after the last durable batch.
    len: u64,
    /// Bytes past `len` may have been written by a failed batch.
    dirty: bool,
    next_seq: u64,
    prev: [u8; 32],
    /// Lines in the file up to `len`.
    lines: u64,
    keys: Arc<dyn AuditKeys>,
    shared: Arc<Shared>,
    sync: AuditSync,
    /// Where [`AuditSync::Fsync`] makes batches durable (`None` when it
    /// couldn't be made for lack of space: the log is synced instead).
    journal: Option<Journal>,
    /// The periodic syncer of the log ([`AuditSync::Os`], or the journal's).
    syncer: Option<Syncer>,
}

/// The background thread that syncs the log every interval (with
/// [`AuditSync::Os`], or behind the journal); dropping `stop` makes it run
/// a last sync and end.
struct Syncer {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Where the log ends, as found at open.
#[derive(Debug)]
struct Tail {
    len: u64,
    next_seq: u64,
    prev: [u8; 32],
}

/// The index of a log's first `len` bytes, and its number of lines: one
/// read of the file at open.
fn build_index(file: &File, len: u64) -> io::Result<(Vec<Mark>, u64)> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(file.try_clone()?.take(len));
    let (mut marks, mut lines, mut offset) = (Vec::new(), 0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            // Longer than any entry: skip to its end (verify names it).
            let more = reader.skip_until(b'\n')?;
            offset += (read + more) as u64;
            lines += 1;
            continue;
        }
        if lines.is_multiple_of(INDEX_EVERY)
            && let Some(entry) = Entry::parse(&buf[..buf.len() - 1])
        {
            marks.push(Mark { seq: entry.seq, offset });
        }
        offset += read as u64;
        lines += 1;
    }
    Ok((marks, lines))
}

impl Writer {
    /// Opens (creating if absent) `path` and recovers the sequence number
    /// and chain value of its last entry.
    pub(super) fn open(path: PathBuf, keys: Arc<dyn AuditKeys>, sync: AuditSync) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(&path)?;
        let mut tail = recover(&file)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        // The journal is written with fsync; one left by an earlier run is
        // read in any mode, for the lines the log lost in a crash.
        let journal = match sync {
            AuditSync::Fsync => Journal::open(dir)?,
            AuditSync::Os { .. } => Journal::open_existing(dir)?,
        };
        if let Some(journal) = &journal {
            let restored = journal.continuation(tail.next_seq, &tail.prev)?;
            if !restored.is_empty() {
                (&file).write_all(&restored)?;
                file.sync_data()?;
                let from = tail.next_seq;
                tail = recover(&file)?;
                tracing::warn!(
                    first_seq = from,
                    last_seq = tail.next_seq - 1,
                    "restored audit entries from the journal that the log had not synced before a crash"
                );
            }
        }
        let journal = journal.filter(|_| sync == AuditSync::Fsync);
        let (marks, lines) = build_index(&file, tail.len)?;
        // Makes the directory entry of a newly created log durable.
        File::open(dir)?.sync_all()?;
        let meta = file.metadata()?;
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            syncs: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            durable_len: AtomicU64::new(tail.len),
            log_synced: AtomicU64::new(tail.len),
            last_seq: AtomicU64::new(tail.next_seq - 1),
            sync_failed: AtomicBool::new(false),
            anchoring: Mutex::new(Anchoring::Checked),
            acknowledged: Mutex::new(None),
            index: RwLock::new(marks),
            tail: watch::Sender::new((tail.next_seq - 1, tail.prev)),
            sync_seconds: skm_runtime::metrics::latency_histogram(),
            #[cfg(test)]
            fail_syncs: AtomicBool::new(false),
        });
        let syncer = match (sync, &journal) {
            (AuditSync::Fsync, None) => None,
            (AuditSync::Fsync, Some(_)) => {
                Some(Syncer::start(file.try_clone()?, shared.clone(), LOG_SYNC_BEHIND_JOURNAL, false)?)
            }
            (AuditSync::Os { interval }, _) => Some(Syncer::start(file.try_clone()?, shared.clone(), interval, true)?),
        };
        Ok(Self {
            path,
            file,
            identity: (meta.dev(), meta.ino()),
            len: tail.len,
            dirty: false,
            next_seq: tail.next_seq,
            prev: tail.prev,
            lines,
            keys,
            shared,
            sync,
            journal,
            syncer,
        })
    }

    pub(super) fn identity(&self) -> Identity {
        self.identity
    }

    pub(super) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Writes and syncs one event on the caller's thread: what
    /// [`super::AuditLog::append`] does when no batch is being written and
    /// none is queued, so that a lone request pays for its write and sync
    /// but not for two thread hand-offs (to the writer thread and back).
    pub(super) fn commit_one(&mut self, append: Append) -> Result<u64, Failure> {
        let mut batch = [append];
        self.commit(&mut batch)?.pop().unwrap_or(Err(Failure::Unavailable))
    }

    /// Stops the background syncer of [`AuditSync::Os`] after a last sync.
    fn stop_syncer(&mut self) {
        if let Some(syncer) = self.syncer.take() {
            drop(syncer.stop);
            let _ = syncer.thread.join();
        }
    }

    /// Writes and syncs one batch; per event its sequence number or `TooLarge`.
    fn commit(&mut self, batch: &mut [Append]) -> Result<Vec<Result<u64, Failure>>, Failure> {
        let mut pending_loss = match self.shared.anchoring() {
            // Not yet compared with its anchor (health says NOT_SERVING).
            Anchoring::Pending => return Err(Failure::Unavailable),
            Anchoring::Checked => None,
            Anchoring::Lost(lost) => Some(lost),
        };
        self.check_file()?;
        let ring = self.keys.ring().ok_or(Failure::KeysNotLoaded)?;
        let key_version = ring.active_version();
        let key = ring.audit_key(key_version, AuditFormat::V2).ok_or(Failure::KeysNotLoaded)?;
        let mut buf = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        let mut marks = Vec::new();
        let mut acknowledged = None;
        let (mut seq, mut prev, mut lines) = (self.next_seq, self.prev, self.lines);
        let mut first_seq = None;
        for request in batch.iter_mut() {
            if let Some(lost) = pending_loss {
                if !request.acknowledges_loss {
                    results.push(Err(Failure::Lost(lost)));
                    continue;
                }
                // The first entry after the gap names it; its seq follows
                // the anchor's, so no sequence number is ever reused.
                request.event.lost = Some(lost);
                seq = seq.max(lost.last_seq + 1);
            }
            let start = buf.len();
            match encode_into(key, seq, &request.event, key_version, &prev, &mut buf) {
                Ok(mac) if buf.len() - start <= MAX_LINE + 1 => {
                    if lines.is_multiple_of(INDEX_EVERY) {
                        marks.push(Mark { seq, offset: self.len + start as u64 });
                    }
                    if let Some(lost) = pending_loss.take() {
                        acknowledged = Some((lost, seq));
                    }
                    first_seq.get_or_insert(seq);
                    results.push(Ok(seq));
                    lines += 1;
                    seq += 1;
                    prev = mac;
                }
                Ok(_) => {
                    buf.truncate(start);
                    results.push(Err(Failure::TooLarge));
                }
                Err(e) => {
                    buf.truncate(start);
                    tracing::error!(error = %e, "an audit event could not be encoded");
                    results.push(Err(Failure::Unavailable));
                }
            }
        }
        if buf.is_empty() {
            return Ok(results);
        }
        if self.shared.sync_failed.load(Ordering::Acquire) {
            // A background sync failed: what was written before may not be
            // on disk. Nothing more is acknowledged until a sync works.
            if let Err(e) = self.shared.sync(&self.file) {
                self.log_failure(&e, "audit log sync failed; requests fail until it works again");
                return Err(self.fail());
            }
            self.shared.sync_failed.store(false, Ordering::Release);
        }
        self.dirty = true;
        let end = self.len + buf.len() as u64;
        let written = match (self.sync, &mut self.journal) {
            (AuditSync::Fsync, None) => self.file.write_all(&buf).and_then(|()| {
                self.shared.sync(&self.file)?;
                // Counted only once the sync has returned: the counter
                // proves syncs that happened, not syncs that were tried.
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }),
            (AuditSync::Fsync, Some(journal)) => self.file.write_all(&buf).and_then(|()| {
                let (file, shared) = (&self.file, &self.shared);
                let synced = shared.log_synced.load(Ordering::Acquire);
                let mut sync_log = || {
                    file.sync_data()?;
                    shared.log_synced.fetch_max(end, Ordering::AcqRel);
                    Ok(())
                };
                journal.write(first_seq.unwrap_or(seq), &buf, end, synced, &mut sync_log, &mut |f| shared.sync(f))?;
                shared.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }),
            (AuditSync::Os { .. }, _) => self.file.write_all(&buf),
        };
        if let Err(e) = written {
            self.log_failure(&e, "audit log write failed; requests fail until it works again");
            self.cut_back();
            return Err(self.fail());
        }
        self.dirty = false;
        self.len = end;
        self.next_seq = seq;
        self.prev = prev;
        self.lines = lines;
        let written = results.iter().filter(|r| r.is_ok()).count() as u64;
        self.shared.entries.fetch_add(written, Ordering::Relaxed);
        self.shared.index.write().unwrap_or_else(PoisonError::into_inner).extend(marks);
        self.shared.last_seq.store(seq - 1, Ordering::Release);
        self.shared.durable_len.store(self.len, Ordering::Release);
        self.shared.healthy.store(true, Ordering::Release);
        if let Some((lost, at)) = acknowledged {
            tracing::warn!(
                first_missing_seq = lost.first_seq,
                last_missing_seq = lost.last_seq,
                seq = at,
                "audit log loss acknowledged; serving again"
            );
            *self.shared.acknowledged.lock().unwrap_or_else(PoisonError::into_inner) = Some((lost, at));
            self.shared.set_anchoring(Anchoring::Checked);
        }
        self.shared.tail.send_replace((seq - 1, prev));
        Ok(results)
    }

    /// Refuses to write unless the path still names our file and the file
    /// ends where our last durable batch ended (cutting back what a failed
    /// batch of ours left).
    fn check_file(&mut self) -> Result<(), Failure> {
        if !same_file(&self.path, self.identity) {
            tracing::error!(path = %self.path.display(), "the audit log file was deleted, moved or replaced; refusing to write");
            return Err(self.fail());
        }
        if self.journal.as_ref().is_some_and(|j| !j.is_in_place()) {
            tracing::error!(path = %self.path.display(), "the audit journal beside the log was deleted, moved or replaced; refusing to write");
            return Err(self.fail());
        }
        let len = match self.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                tracing::error!(error = %e, "audit log metadata unreadable");
                return Err(self.fail());
            }
        };
        if len != self.len {
            if !(self.dirty && len > self.len) {
                tracing::error!(
                    expected = self.len,
                    found = len,
                    "the audit log was changed by another writer; refusing to write"
                );
                return Err(self.fail());
            }
            self.cut_back();
            if self.dirty {
                return Err(self.fail());
            }
        }
        self.dirty = false;
        Ok(())
    }

    /// Truncates a failed batch's bytes away (retried before the next batch
    /// if it fails too).
    fn cut_back(&mut self) {
        match self.file.set_len(self.len).and_then(|()| self.file.sync_data()) {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::error!(error = %e, "audit log could not be cut back after a failed write"),
        }
    }

    /// Logs a failed write or sync as an error once per outage (the first
    /// failure while the log was healthy); the retries that follow while
    /// the disk stays full or broken (kms-api probes every 250 ms) only at
    /// debug level.
    fn log_failure(&self, e: &io::Error, what: &str) {
        if self.shared.healthy.load(Ordering::Acquire) {
            tracing::error!(error = %e, path = %self.path.display(), "{what}");
        } else {
            tracing::debug!(error = %e, path = %self.path.display(), "{what}");
        }
    }

    fn fail(&self) -> Failure {
        self.shared.healthy.store(false, Ordering::Release);
        self.shared.failed_batches.fetch_add(1, Ordering::Relaxed);
        Failure::Unavailable
    }
}

/// The writer thread: runs until every sender is gone and the queue is
/// drained. It takes the first queued request and every other one already
/// queued (those that arrived while the previous batch was written and
/// synced, by this thread or by a caller committing inline), and commits
/// them as one batch.
pub(super) fn run(writer: &Mutex<Writer>, mut queue: mpsc::Receiver<Request>) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let (appends, answers): (Vec<Append>, Vec<_>) = batch.into_iter().map(|r| (r.append, r.done)).unzip();
        let mut appends = appends;
        let results = {
            let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
            match writer.commit(&mut appends) {
                Ok(results) => results,
                Err(failure) => vec![Err(failure); appends.len()],
            }
        };
        for (done, result) in answers.into_iter().zip(results) {
            // The caller may have gone away; its entry is written anyway.
            let _ = done.send(result);
        }
    }
    writer.lock().unwrap_or_else(PoisonError::into_inner).stop_syncer();
}

impl Syncer {
    /// Syncs `file` every `interval` while it grows. `durable`: the log's
    /// own durability rests on these syncs ([`AuditSync::Os`]), so a
    /// failure fails the next batch; otherwise (behind the journal) a
    /// failure is logged and the journal syncs the log itself before it
    /// needs the space.
    fn start(file: File, shared: Arc<Shared>, interval: Duration, durable: bool) -> io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        // Read here, before any batch can be written: a thread that starts
        // late must not take a written batch for a synced one.
        let mut synced = shared.durable_len.load(Ordering::Acquire);
        let thread = std::thread::Builder::new().name("skm-audit-sync".into()).spawn(move || {
            loop {
                let last = !matches!(stopped.recv_timeout(interval), Err(std::sync::mpsc::RecvTimeoutError::Timeout));
                let written = shared.durable_len.load(Ordering::Acquire);
                if written != synced {
                    let result = if durable { shared.sync(&file) } else { file.sync_data() };
                    match result {
                        Ok(()) if durable => {
                            shared.syncs.fetch_add(1, Ordering::Relaxed);
                            synced = written;
                        }
                        Ok(()) => {
                            shared.log_synced.fetch_max(written, Ordering::AcqRel);
                            synced = written;
                        }
                        Err(e) if durable => {
                            tracing::error!(error = %e, "audit log background sync failed; requests fail until a sync works");
                            shared.sync_failed.store(true, Ordering::Release);
                            shared.healthy.store(false, Ordering::Release);
                        }
                        Err(e) => tracing::warn!(error = %e, "audit log background sync failed (the journal holds its entries)"),
                    }
                }
                if last {
                    return;
                }
            }
        })?;
        Ok(Self { stop, thread })
    }
}

/// Finds the last entry of an open log, repairing a torn last line.
///
/// A crash during a write can leave the last line without its newline.
/// If that fragment is a complete entry it is kept (its newline is
/// added); otherwise it is a torn partial line and is truncated away (with
/// a warning): it never was an entry, and the next entry must start on a
/// line of its own. A complete line (one that ends in a newline) is never
/// dropped: if the last one isn't an entry, opening fails.
fn recover(file: &File) -> Result<Tail, AuditError> {
    let mut len = file.metadata()?.len();
    let last_newline = rfind_newline(file, len)?;
    let complete_end = last_newline.map_or(0, |p| p + 1);
    if complete_end < len {
        let fragment_len = len - complete_end;
        let fragment = if fragment_len <= MAX_LINE as u64 { read_at(file, complete_end, len)? } else { Vec::new() };
        if let Some(entry) = Entry::parse(&fragment) {
            let tail = tail_of(&entry, len + 1)?;
            let mut file = file;
            file.write_all(b"\n")?;
            file.sync_data()?;
            return Ok(tail);
        }
        tracing::warn!(
            bytes = fragment_len,
            "truncating a torn last line of the audit log (a write cut short by a crash)"
        );
        file.set_len(complete_end)?;
        file.sync_data()?;
        len = complete_end;
    }
    let Some(end) = last_newline else {
        return Ok(Tail { len: 0, next_seq: 1, prev: GENESIS_PREV });
    };
    let start = rfind_newline(file, end)?.map_or(0, |p| p + 1);
    if end - start > MAX_LINE as u64 {
        return Err(AuditError::TailUnreadable);
    }
    let entry = Entry::parse(&read_at(file, start, end)?).ok_or(AuditError::TailUnreadable)?;
    tail_of(&entry, len)
}

fn tail_of(entry: &Entry, len: u64) -> Result<Tail, AuditError> {
    let prev = entry.mac_bytes().ok_or(AuditError::TailUnreadable)?;
    let next_seq = entry.seq.checked_add(1).ok_or(AuditError::TailUnreadable)?;
    Ok(Tail { len, next_seq, prev })
}

/// Offset of the last `\n` before `end`.
fn rfind_newline(file: &File, end: u64) -> io::Result<Option<u64>> {
    let mut buf = [0u8; 8192];
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(hi - lo) as usize];
        file.read_exact_at(chunk, lo)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

fn read_at(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut buf, start)?;
    Ok(buf)
}
