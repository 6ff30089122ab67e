//! Reading the log back: verification and filtered listing.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::format::{Entry, GENESIS_PREV, MAX_LINE};
use super::keys::AuditKeys;
use super::{AuditError, Breakage, Broken, Event, Filter, VerifyReport};

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
        let file = File::open(path)?;
        Ok(Self { reader: BufReader::new(file.take(limit.unwrap_or(u64::MAX))), number: 0 })
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
    while let Some((number, line)) = lines.next_line()? {
        let broken =
            |seq, reason| Ok(VerifyReport { entries, first_broken: Some(Broken { line: number, seq, reason }) });
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
        if entry.seq != expected_seq {
            return broken(seq, Breakage::SeqGap);
        }
        if entry.prev != prev {
            return broken(seq, Breakage::PrevMismatch);
        }
        prev = entry.mac;
        expected_seq += 1;
        entries += 1;
    }
    Ok(VerifyReport { entries, first_broken: None })
}

/// The events of the log at `path` (its first `limit` bytes) that pass
/// `filter`, in log order.
pub(super) fn list_file(path: &Path, filter: &Filter, limit: Option<u64>) -> Result<Vec<(u64, Event)>, AuditError> {
    let keep = filter.limit.unwrap_or(usize::MAX);
    let mut out = VecDeque::new();
    if keep == 0 {
        return Ok(Vec::new());
    }
    let mut lines = Lines::open(path, limit)?;
    while let Some((number, line)) = lines.next_line()? {
        let Some(entry) = line.entry() else {
            // An unterminated last fragment is a torn write (opening the log
            // truncates it), not an entry; anything else is corruption.
            if matches!(line, Line::Unterminated(_)) {
                break;
            }
            return Err(AuditError::Corrupt { line: number });
        };
        if filter.matches(&entry.event) {
            if out.len() == keep {
                out.pop_front();
            }
            out.push_back((entry.seq, entry.event));
        }
    }
    Ok(out.into())
}
