//! One audit entry on disk, and the bytes its MAC covers.
//!
//! A line (format 2, written now) is the compact JSON of
//! `{"format":2,"seq":N,"event":{…},"key_version":V,"prev":"<64 hex>","mac":"<64 hex>"}`
//! followed by `\n`. The MAC input ("canonical bytes") is the compact
//! serde_json serialisation of `{"format":2,"seq":N,"event":{…},"key_version":V,"prev":"…"}`
//! with the fields in exactly that order, the [`Event`] fields in their
//! declaration order, absent values of the format-1 fields as `null` and
//! absent values of the fields format 2 added (`front_end`, `intent_seq`,
//! `lost`, `caller.system`) left out. The MAC key is the system key version's audit
//! key for the entry's format ([`skm_crypto::audit`]).
//!
//! Format 1 (logs written before format 2) has no `format` field, none of
//! the added fields, and its own MAC key derivation; such entries are still
//! verified, and a log that starts in format 1 continues in format 2 on the
//! same chain. The MAC is checked by
//! re-serialising the parsed entry, so it protects the entry's *values*: a
//! change that alters no value (whitespace, an escape spelled differently)
//! is not an edit. Unknown and duplicate fields make a line unparseable.
//!
//! Changing [`Event`]'s fields, their order or their serde names changes the
//! canonical bytes and breaks verification of existing logs: the golden test
//! in `audit.rs` pins the format.

use serde::{Deserialize, Serialize};

use skm_crypto::audit::{AuditFormat, AuditKey};

use super::Event;

/// The format new entries are written in.
pub(super) const FORMAT: u8 = 2;

/// `prev` of the first entry.
pub(super) const GENESIS_PREV: [u8; 32] = [0; 32];

/// Longest line (without its newline) the writer writes and the readers
/// accept.
pub(super) const MAX_LINE: usize = 64 * 1024;

/// An entry as read back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entry {
    /// 1 when absent (logs written before format 2).
    #[serde(default = "format_1")]
    pub(super) format: u8,
    pub(super) seq: u64,
    pub(super) event: Event,
    /// The system key version whose audit key made `mac`.
    pub(super) key_version: u32,
    pub(super) prev: String,
    pub(super) mac: String,
}

fn format_1() -> u8 {
    1
}

fn is_format_1(format: &u8) -> bool {
    *format == 1
}

/// What the MAC covers; a line is the same object with `mac` added.
#[derive(Serialize)]
struct MacInput<'a> {
    #[serde(skip_serializing_if = "is_format_1")]
    format: u8,
    seq: u64,
    event: &'a Event,
    key_version: u32,
    prev: &'a str,
}

/// Appends one entry's line (newline included) to `out` and returns its
/// MAC. The event is serialised once: the line is the MAC input with
/// `,"mac":"<hex>"` before its closing brace, which is exactly the compact
/// serialisation of the entry with `mac` as its last field (the golden
/// test pins it).
pub(super) fn encode_into(
    key: &AuditKey,
    seq: u64,
    event: &Event,
    key_version: u32,
    prev: &[u8; 32],
    out: &mut Vec<u8>,
) -> Result<[u8; 32], serde_json::Error> {
    let start = out.len();
    let prev = hex::encode(prev);
    serde_json::to_writer(&mut *out, &MacInput { format: FORMAT, seq, event, key_version, prev: &prev })?;
    let mac = key.mac(&out[start..]);
    let mut mac_hex = [0u8; 64];
    // 32 bytes always fill exactly 64 hex digits.
    let _ = hex::encode_to_slice(mac, &mut mac_hex);
    out.pop(); // the closing brace
    out.extend_from_slice(br#","mac":""#);
    out.extend_from_slice(&mac_hex);
    out.extend_from_slice(b"\"}\n");
    Ok(mac)
}

impl Entry {
    /// Parses one line (without its newline).
    pub(super) fn parse(line: &[u8]) -> Option<Self> {
        serde_json::from_slice(line).ok()
    }

    /// Which audit key derivation the entry's MAC follows; `None` for a
    /// format this build doesn't know.
    pub(super) fn audit_format(&self) -> Option<AuditFormat> {
        match self.format {
            1 => Some(AuditFormat::V1),
            2 => Some(AuditFormat::V2),
            _ => None,
        }
    }

    /// The MAC, if it is 64 lowercase hex digits.
    pub(super) fn mac_bytes(&self) -> Option<[u8; 32]> {
        parse_hex32(&self.mac)
    }

    /// Whether the MAC verifies under `key`.
    pub(super) fn authentic(&self, key: &AuditKey) -> bool {
        let Some(tag) = self.mac_bytes() else {
            return false;
        };
        let input = MacInput {
            format: self.format,
            seq: self.seq,
            event: &self.event,
            key_version: self.key_version,
            prev: &self.prev,
        };
        let Ok(bytes) = serde_json::to_vec(&input) else {
            return false;
        };
        key.verify(&bytes, &tag)
    }
}

/// 32 bytes from exactly 64 lowercase hex digits (the only spelling the
/// writer produces, so that a case change of a MAC counts as an edit).
fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}
