//! The envelope blob of SKM's client helpers (Rust `skm-client`, Python
//! `sdk/python`): data of any length encrypted locally with a fresh data
//! key, in one self-describing, versioned blob that holds the data key
//! wrapped by an SKM key (a `GenerateDataKey` ciphertext). Streams of any
//! size go through in bounded memory: the data is cut into chunks, each
//! sealed on its own with AES-256-GCM in the STREAM construction
//! (Hoang, Reyhanitabar, Rogaway, Vizár 2015), so chunks can't be dropped,
//! reordered or cut off at the end.
//!
//! ```text
//! offset     size  field
//! 0          4     magic "SKME"
//! 4          1     format version = 1
//! 5          1     algorithm = 1 (AES-256-GCM, STREAM)
//! 6          4     chunk size C, u32 big-endian (plaintext bytes per chunk, 1..=16 MiB; 65536 when written)
//! 10         7     nonce prefix P (random)
//! 17         2     length n of the wrapped data key, u16 big-endian (1..=1024)
//! 19         n     wrapped data key: the GenerateDataKey ciphertext
//!                  (0x01 | key id(16) | key version(u32 BE) | nonce(12) | ct+tag)
//! 19+n       ...   chunks: AES-256-GCM(data key, nonce_i, chunk_i, AAD = bytes 0..19+n)
//!                  each C plaintext bytes + 16-byte tag; the last one 1..=C bytes + tag
//!                  (0 bytes + tag only when the data is empty)
//! nonce_i = P(7) | i (u32 big-endian, from 0) | 0x01 for the last chunk, else 0x00
//! ```
//!
//! The header is the AAD of every chunk, so the wrapped key, the chunk size
//! and the prefix can't be swapped. Decrypting needs one call to SKM: the
//! key id is read from the wrapped key, and `Decrypt` of the wrapped key
//! (with the AAD given when it was made) returns the data key. A reader
//! that streams plaintext out before the end must discard it if the last
//! chunk fails (truncation shows only there).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::{DecryptError, EncryptError, Id, Secret32};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"SKME";
/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// AES-256-GCM in the STREAM construction.
pub const ALGORITHM_AES_256_GCM_STREAM: u8 = 1;
/// Plaintext bytes per chunk written.
pub const CHUNK_SIZE: u32 = 1 << 16;
/// Largest chunk size read (bounds a reader's memory).
pub const MAX_CHUNK_SIZE: u32 = 1 << 24;
/// Largest wrapped data key read.
pub const MAX_WRAPPED_KEY: usize = 1024;
/// Bytes of the header before the wrapped key.
pub const FIXED_HEADER: usize = 19;
/// Authentication tag per chunk.
pub const TAG: usize = 16;

const PREFIX: usize = 7;

/// A blob that is not an envelope this version can read. These say what is
/// wrong with the framing only; anything cryptographic is [`DecryptError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The magic is not "SKME".
    #[error("not an SKM envelope (it does not start with \"SKME\")")]
    NotAnEnvelope,
    /// A version this build doesn't read.
    #[error("envelope format version {0} is not supported (this build reads version {VERSION})")]
    Version(u8),
    /// An algorithm this build doesn't know.
    #[error("envelope algorithm {0} is not supported (1 = AES-256-GCM STREAM)")]
    Algorithm(u8),
    /// A chunk size out of range.
    #[error("envelope chunk size {0} is out of range (1..={MAX_CHUNK_SIZE})")]
    ChunkSize(u32),
    /// A wrapped key length out of range.
    #[error("envelope wrapped key length {0} is out of range (1..={MAX_WRAPPED_KEY})")]
    WrappedKeyLength(usize),
    /// The wrapped key is not an SKM ciphertext naming a key.
    #[error("the envelope's wrapped key is not an SKM ciphertext")]
    WrappedKey,
    /// The blob ends inside its header.
    #[error("envelope truncated in its header")]
    Truncated,
}

/// An envelope's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    chunk_size: u32,
    nonce_prefix: [u8; PREFIX],
    wrapped_key: Vec<u8>,
    encoded: Vec<u8>,
}

impl Header {
    /// A header for a new envelope around `wrapped_key` (a GenerateDataKey
    /// ciphertext), with a random nonce prefix and [`CHUNK_SIZE`].
    pub fn new(wrapped_key: Vec<u8>) -> Result<Self, EncryptError> {
        let nonce_prefix: [u8; PREFIX] = crate::random_array()?;
        Self::build(CHUNK_SIZE, nonce_prefix, wrapped_key).map_err(|_| EncryptError)
    }

    fn build(chunk_size: u32, nonce_prefix: [u8; PREFIX], wrapped_key: Vec<u8>) -> Result<Self, EnvelopeError> {
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(EnvelopeError::ChunkSize(chunk_size));
        }
        if wrapped_key.is_empty() || wrapped_key.len() > MAX_WRAPPED_KEY {
            return Err(EnvelopeError::WrappedKeyLength(wrapped_key.len()));
        }
        if wrapped_key.len() < crate::user::OVERHEAD || wrapped_key[0] != crate::user::FORMAT_V1 {
            return Err(EnvelopeError::WrappedKey);
        }
        let mut encoded = Vec::with_capacity(FIXED_HEADER + wrapped_key.len());
        encoded.extend_from_slice(&MAGIC);
        encoded.push(VERSION);
        encoded.push(ALGORITHM_AES_256_GCM_STREAM);
        encoded.extend_from_slice(&chunk_size.to_be_bytes());
        encoded.extend_from_slice(&nonce_prefix);
        encoded.extend_from_slice(&(wrapped_key.len() as u16).to_be_bytes());
        encoded.extend_from_slice(&wrapped_key);
        Ok(Self { chunk_size, nonce_prefix, wrapped_key, encoded })
    }

    /// How many bytes the header starting `start` (at least
    /// [`FIXED_HEADER`] bytes of a blob) takes, after checking its fixed part.
    pub fn len_from_start(start: &[u8]) -> Result<usize, EnvelopeError> {
        if start.len() < 4 {
            return Err(EnvelopeError::Truncated);
        }
        if start[..4] != MAGIC {
            return Err(EnvelopeError::NotAnEnvelope);
        }
        if start.len() < FIXED_HEADER {
            return Err(EnvelopeError::Truncated);
        }
        if start[4] != VERSION {
            return Err(EnvelopeError::Version(start[4]));
        }
        if start[5] != ALGORITHM_AES_256_GCM_STREAM {
            return Err(EnvelopeError::Algorithm(start[5]));
        }
        let chunk_size = u32::from_be_bytes([start[6], start[7], start[8], start[9]]);
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(EnvelopeError::ChunkSize(chunk_size));
        }
        let n = u16::from_be_bytes([start[17], start[18]]) as usize;
        if n == 0 || n > MAX_WRAPPED_KEY {
            return Err(EnvelopeError::WrappedKeyLength(n));
        }
        Ok(FIXED_HEADER + n)
    }

    /// Reads the header at the start of `blob`; returns it and its length.
    pub fn parse(blob: &[u8]) -> Result<(Self, usize), EnvelopeError> {
        let len = Self::len_from_start(blob)?;
        if blob.len() < len {
            return Err(EnvelopeError::Truncated);
        }
        let chunk_size = u32::from_be_bytes([blob[6], blob[7], blob[8], blob[9]]);
        let mut prefix = [0u8; PREFIX];
        prefix.copy_from_slice(&blob[10..17]);
        Ok((Self::build(chunk_size, prefix, blob[FIXED_HEADER..len].to_vec())?, len))
    }

    /// The header's bytes (the AAD of every chunk).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The wrapped data key (give it to Decrypt).
    pub fn wrapped_key(&self) -> &[u8] {
        &self.wrapped_key
    }

    /// The id of the SKM key that wrapped the data key.
    pub fn key_id(&self) -> Id {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.wrapped_key[1..17]);
        Id::from_bytes(id)
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size as usize
    }
}

/// The STREAM state shared by sealing and opening.
struct Stream {
    key: LessSafeKey,
    prefix: [u8; PREFIX],
    aad: Vec<u8>,
    counter: u32,
    finished: bool,
}

impl Stream {
    fn new(data_key: &Secret32, header: &Header) -> Self {
        // A 32-byte key always fits AES_256_GCM.
        let key = match UnboundKey::new(&AES_256_GCM, data_key.danger_expose()) {
            Ok(k) => LessSafeKey::new(k),
            Err(_) => unreachable!("AES-256-GCM takes a 32-byte key"),
        };
        Self { key, prefix: header.nonce_prefix, aad: header.encoded.clone(), counter: 0, finished: false }
    }

    /// The next chunk's nonce, or None when the stream is over or the
    /// counter would wrap.
    fn next_nonce(&mut self, last: bool) -> Option<Nonce> {
        if self.finished {
            return None;
        }
        let mut nonce = [0u8; 12];
        nonce[..PREFIX].copy_from_slice(&self.prefix);
        nonce[PREFIX..11].copy_from_slice(&self.counter.to_be_bytes());
        nonce[11] = u8::from(last);
        if last {
            self.finished = true;
        } else {
            self.counter = self.counter.checked_add(1)?;
        }
        Some(Nonce::assume_unique_for_key(nonce))
    }
}

/// Seals the chunks of one envelope in order.
pub struct Sealer(Stream);

impl Sealer {
    /// For the envelope with `header`, under the plaintext data key.
    pub fn new(data_key: &Secret32, header: &Header) -> Self {
        Self(Stream::new(data_key, header))
    }

    /// Seals the next chunk (at most the header's chunk size; only the last
    /// may be shorter, and empty only if it is the only one).
    pub fn seal_chunk(&mut self, chunk: &[u8], last: bool) -> Result<Vec<u8>, EncryptError> {
        let nonce = self.0.next_nonce(last).ok_or(EncryptError)?;
        let mut out = Vec::with_capacity(chunk.len() + TAG);
        out.extend_from_slice(chunk);
        self.0.key.seal_in_place_append_tag(nonce, Aad::from(&self.0.aad), &mut out).map_err(|_| EncryptError)?;
        Ok(out)
    }
}

/// Opens the chunks of one envelope in order.
pub struct Opener(Stream);

impl Opener {
    /// For the envelope with `header`, under the data key that Decrypt returned.
    pub fn new(data_key: &Secret32, header: &Header) -> Self {
        Self(Stream::new(data_key, header))
    }

    /// Opens the next sealed chunk (chunk + tag); `last` when nothing follows it.
    pub fn open_chunk(&mut self, sealed: &[u8], last: bool) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        if sealed.len() < TAG {
            return Err(DecryptError);
        }
        let nonce = self.0.next_nonce(last).ok_or(DecryptError)?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let len = self.0.key.open_in_place(nonce, Aad::from(&self.0.aad), &mut buf).map_err(|_| DecryptError)?.len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Whether the last chunk has been opened.
    pub fn finished(&self) -> bool {
        self.0.finished
    }
}

/// Seals `plaintext` whole into an envelope (for data that fits in memory;
/// the client helpers stream).
pub fn seal(data_key: &Secret32, header: &Header, plaintext: &[u8]) -> Result<Vec<u8>, EncryptError> {
    let mut sealer = Sealer::new(data_key, header);
    let mut out = header.encoded().to_vec();
    let size = header.chunk_size();
    if plaintext.is_empty() {
        out.extend(sealer.seal_chunk(&[], true)?);
    }
    let mut chunks = plaintext.chunks(size).peekable();
    while let Some(chunk) = chunks.next() {
        out.extend(sealer.seal_chunk(chunk, chunks.peek().is_none())?);
    }
    Ok(out)
}

/// Opens an envelope held whole in memory (`blob` starts with `header`).
pub fn open(data_key: &Secret32, header: &Header, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let body = blob.get(header.encoded().len()..).ok_or(DecryptError)?;
    let mut opener = Opener::new(data_key, header);
    let sealed_size = header.chunk_size() + TAG;
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut chunks = body.chunks(sealed_size).peekable();
    if chunks.peek().is_none() {
        return Err(DecryptError);
    }
    while let Some(chunk) = chunks.next() {
        out.extend_from_slice(&opener.open_chunk(chunk, chunks.peek().is_none())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped() -> Vec<u8> {
        let mut w = vec![crate::user::FORMAT_V1];
        w.extend_from_slice(&[0xab; 16]);
        w.extend_from_slice(&[0, 0, 0, 1]);
        w.extend_from_slice(&[7; 12 + 48]);
        w
    }

    fn small_header() -> Header {
        Header::build(4, [9; 7], wrapped()).unwrap()
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        let key = Secret32::generate().unwrap();
        let header = small_header();
        for len in [0usize, 1, 3, 4, 5, 8, 9] {
            let data: Vec<u8> = (0..len as u8).collect();
            let blob = seal(&key, &header, &data).unwrap();
            let chunks = if len == 0 { 1 } else { len.div_ceil(4) };
            assert_eq!(blob.len(), header.encoded().len() + len + chunks * TAG, "len {len}");
            let (parsed, hlen) = Header::parse(&blob).unwrap();
            assert_eq!((parsed.clone(), hlen), (header.clone(), header.encoded().len()));
            assert_eq!(parsed.key_id().to_string(), "ab".repeat(16));
            assert_eq!(&open(&key, &parsed, &blob).unwrap()[..], &data[..]);
        }
    }

    #[test]
    fn truncation_reordering_and_tampering_fail() {
        let key = Secret32::generate().unwrap();
        let header = small_header();
        let blob = seal(&key, &header, b"0123456789ab").unwrap();
        let h = header.encoded().len();
        // cut off after the second chunk: its flag says "not last"
        assert_eq!(open(&key, &header, &blob[..h + 2 * (4 + TAG)]), Err(DecryptError));
        // no chunks at all
        assert_eq!(open(&key, &header, &blob[..h]), Err(DecryptError));
        // first two chunks swapped
        let mut swapped = blob.clone();
        swapped[h..h + 2 * (4 + TAG)].rotate_left(4 + TAG);
        assert_eq!(open(&key, &header, &swapped), Err(DecryptError));
        // a header byte changed (the AAD of every chunk)
        let other = Header::build(4, [8; 7], wrapped()).unwrap();
        assert_eq!(open(&key, &other, &blob), Err(DecryptError));
        // wrong key
        assert_eq!(open(&Secret32::generate().unwrap(), &header, &blob), Err(DecryptError));
        // control: the untouched blob opens
        assert_eq!(&open(&key, &header, &blob).unwrap()[..], b"0123456789ab");
    }

    #[test]
    fn malformed_headers_are_named() {
        let blob = seal(&Secret32::generate().unwrap(), &small_header(), b"x").unwrap();
        let mut bad = blob.clone();
        bad[0] = b'X';
        assert_eq!(Header::parse(&bad), Err(EnvelopeError::NotAnEnvelope));
        let mut bad = blob.clone();
        bad[4] = 2;
        assert_eq!(Header::parse(&bad), Err(EnvelopeError::Version(2)));
        let mut bad = blob.clone();
        bad[5] = 9;
        assert_eq!(Header::parse(&bad), Err(EnvelopeError::Algorithm(9)));
        let mut bad = blob.clone();
        bad[6..10].copy_from_slice(&(MAX_CHUNK_SIZE + 1).to_be_bytes());
        assert_eq!(Header::parse(&bad), Err(EnvelopeError::ChunkSize(MAX_CHUNK_SIZE + 1)));
        assert_eq!(Header::parse(&blob[..10]), Err(EnvelopeError::Truncated));
        assert_eq!(Header::parse(&blob[..FIXED_HEADER + 3]), Err(EnvelopeError::Truncated));
        assert!(Header::parse(&blob).is_ok());
    }
}
