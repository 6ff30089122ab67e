//! Opaque, URL-safe, globally unique ids of keystores and keys.

use std::fmt;
use std::str::FromStr;

/// 128 random bits, written as 32 lowercase hex digits (read in either
/// case).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; 16]);

/// An id string that is not 32 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an id is 32 hex digits (upper or lower case), e.g. 00112233445566778899aabbccddeeff")]
pub struct BadId;

impl Id {
    /// A fresh random id.
    pub fn generate() -> Result<Self, crate::RngError> {
        Ok(Self(crate::random_array()?))
    }

    /// The id's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// From 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write of 32 digits, not 16 formatted writes: ids are in every
        // audit entry.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

impl FromStr for Id {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(BadId);
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or(BadId)?;
            let lo = hex_digit(pair[1]).ok_or(BadId)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Self(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        // Accepted in either case (ids are written lowercase).
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let id = Id::generate().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<Id>().unwrap(), id);
    }

    #[test]
    fn either_case_reads_the_same_id_and_writes_lowercase() {
        let upper: Id = "0123456789ABCDEF0123456789ABCDEF".parse().unwrap();
        let lower: Id = "0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(upper, lower);
        assert_eq!(upper.to_string(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn rejects_bad_strings() {
        assert_eq!("".parse::<Id>(), Err(BadId));
        assert_eq!("0123456789abcdef0123456789abcdeg".parse::<Id>(), Err(BadId));
        assert_eq!("0123456789abcdef0123456789abcde".parse::<Id>(), Err(BadId));
        assert_eq!("g123456789abcdef0123456789abcdef".parse::<Id>(), Err(BadId));
    }
}
