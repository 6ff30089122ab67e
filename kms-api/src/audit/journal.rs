//! The audit journal: where a batch is made durable before its reply.
//!
//! **Why.** `fdatasync` of a file that grew must also commit the file's new
//! size (a filesystem journal commit); on this project's disks that costs
//! about half as much again as syncing bytes overwritten in place
//! (docs/BENCHMARKS.md, "Durable audit"). The log itself must stay a plain
//! JSON Lines file that grows (readers and log shippers follow its end),
//! so each batch is written twice: appended to `audit.log` (to the kernel,
//! no sync) and written as one record into this journal, a file of fixed
//! size, written once with zeros when made and then overwritten in a ring.
//! Only the journal is synced before the reply; `audit.log` is synced in
//! the background, and always before the ring overwrites a record whose
//! lines it has not yet synced. After a crash, [`Journal::continuation`]
//! finds the lines the log lacks and the writer appends them.
//!
//! **Layout.** `audit.journal` (0600, beside the log): a [`HEADER`] block,
//! then records, each starting on a [`ALIGN`]-byte boundary:
//!
//! ```text
//! magic "SKMAJ001" | payload length u32 LE | lines u32 LE | first seq u64 LE |
//! SHA-256 of everything before it and of the payload | payload (the batch's lines, as in audit.log)
//! ```
//!
//! A record that doesn't fit before the end of the file goes to the start
//! of the ring. A record torn by a crash fails its digest and is ignored;
//! stale records of earlier runs are ignored because recovery only takes
//! lines that continue the log's chain: the next seq, and `prev` equal to
//! the MAC of the log's last entry. The MACs themselves are checked by
//! verification, as for every line of the log.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::format::Entry;

/// Name of the journal in the log's directory.
pub(crate) const JOURNAL_FILE_NAME: &str = "audit.journal";

/// Size of a journal made now.
pub(super) const SIZE: u64 = 8 << 20;

/// The first block: what the file is.
const HEADER: u64 = 4096;

/// What the header block starts with.
const HEADER_TEXT: &[u8] = b"SKM audit journal 1\n";

/// Records start on multiples of this.
const ALIGN: u64 = 512;

const MAGIC: &[u8; 8] = b"SKMAJ001";

/// Bytes of a record before its payload.
const RECORD_HEADER: usize = 8 + 4 + 4 + 8 + 32;

/// Largest payload of one record: a batch with more lines is written as
/// several records (so that the ring always holds a few).
pub(super) fn max_payload(size: u64) -> usize {
    ((size - HEADER) / 4) as usize - RECORD_HEADER
}

/// A record written since the log was last known synced.
#[derive(Debug)]
struct Pending {
    /// Where it starts in the journal.
    start: u64,
    /// The log's length once its lines were appended.
    log_end: u64,
}

/// An open journal.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    file: File,
    identity: (u64, u64),
    size: u64,
    /// Where the next record goes.
    pos: u64,
    /// Records (oldest first) whose lines the log may not have synced yet.
    pending: VecDeque<Pending>,
}

impl Journal {
    /// Opens the journal in `dir`, making it (full size, zeros, synced)
    /// when absent. `None` when it can't be made for lack of space: the
    /// log then syncs itself on every batch (a warning says so).
    pub(super) fn open(dir: &Path) -> io::Result<Option<Self>> {
        Self::open_or_make(dir, true)
    }

    /// Opens the journal in `dir` if there is one (to read it).
    pub(super) fn open_existing(dir: &Path) -> io::Result<Option<Self>> {
        Self::open_or_make(dir, false)
    }

    fn open_or_make(dir: &Path, make_absent: bool) -> io::Result<Option<Self>> {
        let path = dir.join(JOURNAL_FILE_NAME);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !make_absent => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match make(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                    tracing::warn!(
                        path = %path.display(),
                        bytes = SIZE,
                        "no space for the audit journal: every audit batch syncs the log itself (slower) until it can be made at a restart"
                    );
                    return Ok(None);
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let mut header = vec![0u8; HEADER_TEXT.len()];
        if meta.len() < HEADER + 4 * ALIGN || file.read_exact_at(&mut header, 0).is_err() || header != HEADER_TEXT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not an SKM audit journal", path.display()),
            ));
        }
        Ok(Some(Self {
            path,
            identity: (meta.dev(), meta.ino()),
            size: meta.len() - meta.len() % ALIGN,
            file,
            pos: HEADER,
            pending: VecDeque::new(),
        }))
    }

    /// The lines (newlines included) that continue a log whose next entry
    /// is `next_seq` and whose last MAC is `prev`, from the records found
    /// in the journal; empty when it holds none. A line continues the log
    /// if its `prev` is the log's last MAC and its seq the next one (or,
    /// for the entry that acknowledged a loss, the seq after the gap).
    pub(super) fn continuation(&self, next_seq: u64, prev: &[u8; 32]) -> io::Result<Vec<u8>> {
        let mut ring = vec![0u8; self.size as usize];
        self.file.read_exact_at(&mut ring, 0)?;
        let mut candidates: Vec<Record<'_>> =
            records(&ring).into_iter().filter(|r| r.first_seq + r.lines > next_seq).collect();
        candidates.sort_by_key(|r| r.first_seq);
        let (mut seq, mut prev, mut out) = (next_seq, *prev, Vec::new());
        loop {
            let before = seq;
            for record in &candidates {
                for (i, line) in record.payload.split_inclusive(|&b| b == b'\n').enumerate() {
                    if record.first_seq + (i as u64) < seq {
                        continue;
                    }
                    let Some(entry) = line.strip_suffix(b"\n").and_then(Entry::parse) else { break };
                    let Some(mac) = entry.mac_bytes() else { break };
                    if !continues(&entry, seq, &prev) {
                        break;
                    }
                    out.extend_from_slice(line);
                    (seq, prev) = (entry.seq + 1, mac);
                }
            }
            if seq == before {
                return Ok(out);
            }
        }
    }

    /// Whether `path` still names this journal.
    pub(super) fn is_in_place(&self) -> bool {
        super::writer::same_file(&self.path, self.identity)
    }

    /// Writes a batch's `lines` (`count` entries from `first_seq`, already
    /// appended to the log, whose length is now `log_end`) as records and
    /// syncs them. Before a record overwrites one whose lines the log may
    /// not have synced (`log_synced` is what it has), `sync_log` runs.
    pub(super) fn write(
        &mut self,
        first_seq: u64,
        lines: &[u8],
        log_end: u64,
        log_synced: u64,
        sync_log: &mut dyn FnMut() -> io::Result<()>,
        sync: &mut dyn FnMut(&File) -> io::Result<()>,
    ) -> io::Result<()> {
        while self.pending.front().is_some_and(|p| p.log_end <= log_synced) {
            self.pending.pop_front();
        }
        let (pos, pending) = (self.pos, self.pending.len());
        let written = self.write_records(first_seq, lines, log_end, sync_log).and_then(|()| sync(&self.file));
        if written.is_err() {
            // The batch fails: unmake its records (best effort), so that a
            // restart doesn't restore entries whose requests were refused,
            // and write the next batch where this one started.
            for record in self.pending.drain(pending..) {
                let _ = self.file.write_all_at(&[0; MAGIC.len()], record.start);
            }
            self.pos = pos;
        }
        written
    }

    fn write_records(
        &mut self,
        first_seq: u64,
        lines: &[u8],
        log_end: u64,
        sync_log: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut seq = first_seq;
        for chunk in chunks(lines, max_payload(self.size)) {
            let count = chunk.iter().filter(|&&b| b == b'\n').count() as u32;
            let record = encode(seq, count, chunk);
            let len = record.len() as u64;
            let wraps = self.pos + len > self.size;
            let start = if wraps { HEADER } else { self.pos };
            if self.overlaps_pending(start + len, wraps) {
                sync_log()?;
                self.pending.clear();
            }
            self.file.write_all_at(&record, start)?;
            self.pending.push_back(Pending { start, log_end });
            self.pos = (start + len).div_ceil(ALIGN) * ALIGN;
            seq += u64::from(count);
        }
        Ok(())
    }

    /// Whether writing up to `end` from `pos` (or, if `wraps`, from the
    /// ring's start) would overwrite a pending record. Pending records lie
    /// in ring order from the oldest (`front`) to `pos`, so only the
    /// oldest can be in the way.
    fn overlaps_pending(&self, end: u64, wraps: bool) -> bool {
        let Some(front) = self.pending.front() else { return false };
        if wraps {
            // Skipping from `pos` to the start passes every record ahead of `pos`.
            front.start >= self.pos || front.start < end
        } else {
            front.start >= self.pos && front.start < end
        }
    }
}

/// Whether `entry` is the one that follows a log whose next seq is `seq`
/// and whose last MAC is `prev`.
fn continues(entry: &Entry, seq: u64, prev: &[u8; 32]) -> bool {
    let expected = match entry.event.lost {
        // The acknowledgement of a loss takes the seq after the gap.
        Some(lost) if lost.first_seq <= seq => seq.max(lost.last_seq + 1),
        _ => seq,
    };
    entry.seq == expected && entry.prev == hex::encode(prev)
}

/// Makes a journal: a temporary file written with its header and zeros up
/// to [`SIZE`] and synced, then renamed into place (so a crash never
/// leaves a short journal under the name) and the directory synced.
fn make(path: &Path) -> io::Result<File> {
    let tmp = path.with_extension("journal.tmp");
    let _ = std::fs::remove_file(&tmp);
    let made = write_zeros(&tmp).and_then(|file| {
        std::fs::rename(&tmp, path)?;
        Ok(file)
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let file = made?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// A new file at `path`: the header block, then zeros up to [`SIZE`], synced.
fn write_zeros(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path)?;
    let mut block = vec![0u8; HEADER as usize];
    block[..HEADER_TEXT.len()].copy_from_slice(HEADER_TEXT);
    file.write_all(&block)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = SIZE - HEADER;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(file)
}

/// One record's bytes (the next record starts at the next [`ALIGN`]
/// boundary; what lies between is never read as a record).
fn encode(first_seq: u64, count: u32, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
    record.extend_from_slice(MAGIC);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&count.to_le_bytes());
    record.extend_from_slice(&first_seq.to_le_bytes());
    let digest = skm_crypto::sha256_of(&[&record, payload]);
    record.extend_from_slice(&digest);
    record.extend_from_slice(payload);
    record
}

/// A record read back.
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    first_seq: u64,
    /// Number of lines.
    lines: u64,
    payload: &'a [u8],
}

/// Every intact record of a journal's bytes.
fn records(ring: &[u8]) -> Vec<Record<'_>> {
    let mut found = Vec::new();
    let mut at = HEADER as usize;
    while at + RECORD_HEADER <= ring.len() {
        if let Some(record) = decode(&ring[at..]) {
            found.push(record);
        }
        at += ALIGN as usize;
    }
    found
}

/// The record at the start of `bytes`, if one is there whole.
fn decode(bytes: &[u8]) -> Option<Record<'_>> {
    let (head, rest) = bytes.split_first_chunk::<RECORD_HEADER>()?;
    if &head[..8] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(head[8..12].try_into().ok()?) as usize;
    let count = u32::from_le_bytes(head[12..16].try_into().ok()?);
    let first_seq = u64::from_le_bytes(head[16..24].try_into().ok()?);
    let payload = rest.get(..len)?;
    let digest = skm_crypto::sha256_of(&[&head[..24], payload]);
    (digest[..] == head[24..]).then_some(Record { first_seq, lines: u64::from(count), payload })
}

/// `lines` cut at line ends into pieces of at most `max` bytes (a line
/// longer than `max` is a piece of its own).
fn chunks(lines: &[u8], max: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let (mut start, mut end) = (0, 0);
    for line in lines.split_inclusive(|&b| b == b'\n') {
        if end > start && end - start + line.len() > max {
            pieces.push(&lines[start..end]);
            start = end;
        }
        end += line.len();
    }
    if end > start {
        pieces.push(&lines[start..end]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cut_at_line_ends() {
        let lines = b"aaaa\nbb\ncccccc\nd\n";
        assert_eq!(chunks(lines, 8), [&b"aaaa\nbb\n"[..], b"cccccc\n", b"d\n"]);
        assert_eq!(chunks(lines, 100), [&lines[..]]);
        assert_eq!(chunks(b"", 8), Vec::<&[u8]>::new());
        assert_eq!(chunks(b"0123456789\nx\n", 4), [&b"0123456789\n"[..], b"x\n"]);
    }

    #[test]
    fn a_record_decodes_and_a_torn_one_does_not() {
        let record = encode(7, 2, b"one\ntwo\n");
        assert_eq!(decode(&record), Some(Record { first_seq: 7, lines: 2, payload: b"one\ntwo\n" }));
        for i in 0..record.len() {
            let mut torn = record.clone();
            torn[i] ^= 0x01;
            assert_eq!(decode(&torn), None, "byte {i} changed");
        }
        assert_eq!(decode(&record[..record.len() - 1]), None, "cut short");
    }

    #[test]
    fn records_are_found_on_their_boundaries() {
        let mut ring = vec![0u8; (HEADER + 8 * ALIGN) as usize];
        let a = encode(1, 1, b"a\n");
        let b = encode(2, 1, b"b\n");
        ring[HEADER as usize..][..a.len()].copy_from_slice(&a);
        ring[(HEADER + 3 * ALIGN) as usize..][..b.len()].copy_from_slice(&b);
        assert_eq!(
            records(&ring),
            [Record { first_seq: 1, lines: 1, payload: b"a\n" }, Record { first_seq: 2, lines: 1, payload: b"b\n" }]
        );
    }

    fn journal(dir: &Path) -> Journal {
        Journal::open(dir).unwrap().unwrap()
    }

    #[test]
    fn a_journal_is_made_full_size_private_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        let meta = std::fs::metadata(dir.path().join(JOURNAL_FILE_NAME)).unwrap();
        assert_eq!(meta.len(), SIZE);
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(j.is_in_place());
        drop(j);
        journal(dir.path());
        std::fs::write(dir.path().join(JOURNAL_FILE_NAME), b"something else").unwrap();
        assert!(Journal::open(dir.path()).is_err(), "a file that is not a journal is refused");
    }

    #[test]
    fn the_ring_syncs_the_log_before_it_overwrites_an_unsynced_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(dir.path());
        let (mut log_syncs, mut syncs) = (0, 0);
        let payload = vec![b'x'; 100_000];
        let mut line = payload.clone();
        line.push(b'\n');
        let per_ring = (SIZE - HEADER) / (line.len() as u64 + RECORD_HEADER as u64).div_ceil(ALIGN) / ALIGN;
        let mut log_end = 0;
        for i in 0..3 * per_ring {
            log_end += line.len() as u64;
            let mut sync_log = || {
                log_syncs += 1;
                Ok(())
            };
            let mut sync = |_: &File| {
                syncs += 1;
                Ok(())
            };
            j.write(i + 1, &line, log_end, 0, &mut sync_log, &mut sync).unwrap();
        }
        assert_eq!(syncs, 3 * per_ring, "one journal sync per batch");
        assert!((2..=4).contains(&log_syncs), "the log synced about once per lap of the ring: {log_syncs}");
        // With the log synced as it goes, the journal never needs to sync it.
        let mut j = journal(dir.path());
        let mut log_syncs = 0;
        let mut log_end = 0;
        for i in 0..3 * per_ring {
            let synced = log_end;
            log_end += line.len() as u64;
            let mut sync_log = || {
                log_syncs += 1;
                Ok(())
            };
            j.write(i + 1, &line, log_end, synced, &mut sync_log, &mut |_| Ok(())).unwrap();
        }
        assert_eq!(log_syncs, 0);
    }
}
