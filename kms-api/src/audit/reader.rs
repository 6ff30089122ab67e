//! Reading the log back: verification, and filtered listing that reads
//! only the part of the file it needs.
//!
//! **The index.** The writer keeps, in memory, the seq and file offset of
//! every [`INDEX_EVERY`]th line ([`Mark`], 16 bytes: a quarter of a byte
//! per entry, 4 MiB for 16 million entries), built by one read of the file
//! at open and extended as batches are written. A page of the log starting
//! at a seq begins reading at the mark at or before that seq (at most
//! `INDEX_EVERY - 1` lines too early); the newest entries are read block
//! by block backwards from the end. Verification still reads everything:
//! that is what it is for.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::format::{Entry, GENESIS_PREV, MAX_LINE};
use super::keys::AuditKeys;
use super::{AuditError, Breakage, Broken, Event, Filter, Page, VerifyReport};

/// One line in this many is in the index.
pub(super) const INDEX_EVERY: u64 = 64;

/// An indexed line: the seq of its entry and where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) seq: u64,
    pub(super) offset: u64,
}

/// Where reading for `seq` may start: the last mark at or before it.
pub(super) fn start_for(marks: &[Mark], seq: u64) -> u64 {
    match marks.partition_point(|m| m.seq <= seq) {
        0 => 0,
        i => marks[i - 1].offset,
    }
}

/// One line of the log.
enum Line {
    /// A line that ended in a newline (removed).
    Complete(Vec<u8>),
    /// The rest of the file, without a newline.
    Unterminated(Vec<u8>),
    /// Longer than any entry.
    TooLong,
}

impl Line {
    fn entry(&self) -> Option<Entry> {
        match self {
            Line::Complete(text) | Line::Unterminated(text) => Entry::parse(text),
            Line::TooLong => None,
        }
    }
}

/// The lines of a log file, up to `limit` bytes of it.
struct Lines {
    reader: BufReader<io::Take<File>>,
    number: u64,
}

impl Lines {
    fn open(path: &Path, limit: Option<u64>) -> Result<Self, AuditError> {
        Self::open_range(path, 0, limit.unwrap_or(u64::MAX))
    }

    /// The lines of bytes `start..end` (`start` at the start of a line).
    fn open_range(path: &Path, start: u64, end: u64) -> Result<Self, AuditError> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        Ok(Self { reader: BufReader::new(file.take(end.saturating_sub(start))), number: 0 })
    }

    /// The next entry, `None` at the end or at a torn last fragment; a
    /// line that is not an entry is an error.
    fn next_entry(&mut self) -> Result<Option<Entry>, AuditError> {
        let Some((number, line)) = self.next_line()? else {
            return Ok(None);
        };
        match line.entry() {
            Some(entry) => Ok(Some(entry)),
            // An unterminated last fragment is a torn write (opening the log
            // truncates it), not an entry; anything else is corruption.
            None if matches!(line, Line::Unterminated(_)) => Ok(None),
            None => Err(AuditError::Corrupt { line: number }),
        }
    }

    /// The next line and its number (from 1), or `None` at the end.
    fn next_line(&mut self) -> io::Result<Option<(u64, Line)>> {
        let mut buf = Vec::new();
        let read = (&mut self.reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        let line = if buf.last() == Some(&b'\n') {
            buf.pop();
            Line::Complete(buf)
        } else if buf.len() > MAX_LINE {
            Line::TooLong
        } else {
            Line::Unterminated(buf)
        };
        Ok(Some((self.number, line)))
    }
}

/// Checks every entry of the log at `path` (its first `limit` bytes).
pub(super) fn verify_file(path: &Path, keys: &dyn AuditKeys, limit: Option<u64>) -> Result<VerifyReport, AuditError> {
    let ring = keys.ring().ok_or(AuditError::KeysNotLoaded)?;
    let mut lines = Lines::open(path, limit)?;
    let mut expected_seq = 1u64;
    let mut prev = hex::encode(GENESIS_PREV);
    let mut entries = 0u64;
    let mut acknowledged = Vec::new();
    while let Some((number, line)) = lines.next_line()? {
        let broken = |seq, reason| {
            Ok(VerifyReport {
                entries,
                first_broken: Some(Broken { line: number, seq, reason }),
                acknowledged: acknowledged.clone(),
            })
        };
        let Some(entry) = line.entry() else {
            return broken(None, Breakage::Unparseable);
        };
        let seq = Some(entry.seq);
        let Some(format) = entry.audit_format() else {
            return broken(seq, Breakage::Unparseable);
        };
        let Some(key) = ring.audit_key(entry.key_version, format) else {
            return broken(seq, Breakage::UnknownKeyVersion);
        };
        if !entry.authentic(key) {
            return broken(seq, Breakage::MacMismatch);
        }
        // An authentic acknowledgement of a loss bridges exactly the gap it
        // names (kms-api wrote it after finding the log shorter than its
        // anchor); any other jump is a gap.
        let bridged = entry
            .event
            .lost
            .is_some_and(|lost| lost.first_seq == expected_seq && lost.last_seq.checked_add(1) == Some(entry.seq));
        if entry.seq != expected_seq && !bridged {
            return broken(seq, Breakage::SeqGap);
        }
        if entry.prev != prev {
            return broken(seq, Breakage::PrevMismatch);
        }
        if let Some(lost) = entry.event.lost {
            acknowledged.push((lost, entry.seq));
        }
        prev = entry.mac;
        expected_seq = entry.seq + 1;
        entries += 1;
    }
    Ok(VerifyReport { entries, first_broken: None, acknowledged })
}

/// One page of the log at `path` (bytes `start..end`, `start` at or before
/// the entry with seq `from`): the entries from seq `from` on that pass `filter`, at most `size` of them, reading at
/// most `max_scan` entries; and the seq the next page starts at (`None`
/// at the end of the log).
pub(super) fn page_file(
    path: &Path,
    start: u64,
    filter: &Filter,
    from: u64,
    size: usize,
    max_scan: usize,
    end: u64,
) -> Result<Page, AuditError> {
    let mut lines = Lines::open_range(path, start, end)?;
    let (mut out, mut scanned) = (Vec::new(), 0usize);
    while let Some(entry) = lines.next_entry()? {
        if entry.seq < from {
            continue;
        }
        scanned += 1;
        let seq = entry.seq;
        if filter.matches(&entry.event) {
            out.push((seq, entry.event));
        }
        if out.len() >= size || scanned >= max_scan {
            return Ok((out, Some(seq + 1)));
        }
    }
    Ok((out, None))
}

/// The MAC of the entry with `seq` in the log at `path` (bytes
/// `start..end`, `start` at or before it), if it holds one.
pub(super) fn mac_at(path: &Path, start: u64, seq: u64, end: u64) -> Result<Option<[u8; 32]>, AuditError> {
    let mut lines = Lines::open_range(path, start, end)?;
    while let Some(entry) = lines.next_entry()? {
        if entry.seq == seq {
            return Ok(entry.mac_bytes());
        }
        if entry.seq > seq {
            break;
        }
    }
    Ok(None)
}

/// The newest `filter.limit` events of the log at `path` (its first `end`
/// bytes) that pass `filter`, in log order (all of them without a limit):
/// read block by block from the end, so that only as much of the file is
/// read as it takes to find them.
pub(super) fn list_file(
    path: &Path,
    marks: &[Mark],
    filter: &Filter,
    end: u64,
) -> Result<Vec<(u64, Event)>, AuditError> {
    let keep = filter.limit.unwrap_or(usize::MAX);
    if keep == 0 {
        return Ok(Vec::new());
    }
    let mut starts: Vec<u64> = std::iter::once(0).chain(marks.iter().map(|m| m.offset)).collect();
    starts.dedup();
    let mut out: Vec<(u64, Event)> = Vec::new();
    let mut block_end = end;
    for &start in starts.iter().rev() {
        if start >= block_end {
            continue;
        }
        let mut lines = Lines::open_range(path, start, block_end)?;
        let mut block = Vec::new();
        while let Some(entry) = lines.next_entry()? {
            if filter.matches(&entry.event) {
                block.push((entry.seq, entry.event));
            }
        }
        block.append(&mut out);
        out = block;
        if out.len() >= keep {
            break;
        }
        block_end = start;
    }
    let skip = out.len().saturating_sub(keep);
    Ok(out.split_off(skip))
}
