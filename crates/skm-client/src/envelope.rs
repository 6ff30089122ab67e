//! Envelope encryption of data of any size: a fresh data key from
//! GenerateDataKey encrypts the data locally (AES-256-GCM, STREAM, through
//! `skm_crypto::envelope`, which defines the blob format), and the blob
//! carries the wrapped data key, so decrypting takes one Decrypt call.
//! The Python SDK (`skm.envelope`) writes and reads the same blobs.
//!
//! Streams go through in bounded memory (one chunk, 64 KiB, at a time).
//! [`Skm::envelope_decrypt_stream`] writes plaintext as chunks verify; if
//! it fails, discard what it wrote.

use skm_crypto::envelope::{self, FIXED_HEADER, Header, Opener, Sealer, TAG};
use skm_crypto::{DecryptError, Secret32};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::{ClientError, Skm};

/// What an envelope was made with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The SKM key that wraps the data key.
    pub key_id: String,
    /// Its version.
    pub key_version: u32,
    /// Plaintext bytes encrypted.
    pub plaintext_len: u64,
}

/// Reads until `buf` is full or the input ends; returns how much was read.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

fn data_key(plaintext: Option<Zeroizing<Vec<u8>>>) -> Result<Secret32, ClientError> {
    let mut raw = plaintext.ok_or(ClientError::Decrypt)?;
    Secret32::from_slice_wiping(&mut raw).ok_or(ClientError::Decrypt)
}

impl Skm {
    /// Encrypts `plaintext` into one envelope blob under a fresh data key
    /// wrapped by `key_id` (bound to `aad`, which decrypting needs again).
    pub async fn envelope_encrypt(&self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::with_capacity(plaintext.len() + 256);
        let mut input = plaintext;
        self.envelope_encrypt_stream(key_id, aad, &mut input, &mut out).await?;
        Ok(out)
    }

    /// Opens an envelope blob with one Decrypt call.
    pub async fn envelope_decrypt(&self, blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let (header, _) = Header::parse(blob)?;
        let key = self.envelope_key(&header, aad).await?;
        Ok(envelope::open(&key, &header, blob)?)
    }

    /// Encrypts everything `reader` yields into an envelope on `writer`,
    /// one chunk in memory at a time; flushes `writer` at the end.
    pub async fn envelope_encrypt_stream<R, W>(
        &self,
        key_id: &str,
        aad: &[u8],
        reader: &mut R,
        writer: &mut W,
    ) -> Result<Sealed, ClientError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let dk = self.generate_data_key(key_id, aad).await?;
        let key = data_key(dk.plaintext)?;
        let header = Header::new(dk.ciphertext).map_err(|_| ClientError::Encrypt)?;
        writer.write_all(header.encoded()).await?;
        let mut sealer = Sealer::new(&key, &header);
        let size = header.chunk_size();
        // Two chunk buffers: the current one is sealed once the next read
        // shows whether anything follows it.
        let mut current = Zeroizing::new(vec![0u8; size]);
        let mut next = Zeroizing::new(vec![0u8; size]);
        let mut current_len = read_full(reader, &mut current).await?;
        let mut total = current_len as u64;
        loop {
            let next_len = if current_len == size { read_full(reader, &mut next).await? } else { 0 };
            let last = next_len == 0;
            let sealed = sealer.seal_chunk(&current[..current_len], last).map_err(|_| ClientError::Encrypt)?;
            writer.write_all(&sealed).await?;
            if last {
                break;
            }
            std::mem::swap(&mut current, &mut next);
            current_len = next_len;
            total += next_len as u64;
        }
        writer.flush().await?;
        Ok(Sealed { key_id: header.key_id().to_string(), key_version: dk.key_version, plaintext_len: total })
    }

    /// Decrypts an envelope from `reader` to `writer` with one Decrypt
    /// call, one chunk in memory at a time. On an error, what was written
    /// must be discarded (a cut-off blob fails only at its end).
    pub async fn envelope_decrypt_stream<R, W>(
        &self,
        aad: &[u8],
        reader: &mut R,
        writer: &mut W,
    ) -> Result<u64, ClientError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut start = [0u8; FIXED_HEADER];
        let got = read_full(reader, &mut start).await?;
        let header_len = Header::len_from_start(&start[..got])?;
        let mut head = start.to_vec();
        head.resize(header_len, 0);
        if read_full(reader, &mut head[FIXED_HEADER..]).await? != header_len - FIXED_HEADER {
            return Err(envelope::EnvelopeError::Truncated.into());
        }
        let (header, _) = Header::parse(&head)?;
        let key = self.envelope_key(&header, aad).await?;
        let mut opener = Opener::new(&key, &header);
        let sealed_size = header.chunk_size() + TAG;
        // One byte more than a sealed chunk: a full buffer means another
        // chunk follows, so this one is not the last.
        let mut buf = vec![0u8; sealed_size + 1];
        let mut have = 0;
        let mut total = 0u64;
        loop {
            have += read_full(reader, &mut buf[have..]).await?;
            let last = have <= sealed_size;
            let take = have.min(sealed_size);
            let plain = opener.open_chunk(&buf[..take], last)?;
            writer.write_all(&plain).await?;
            total += plain.len() as u64;
            if last {
                break;
            }
            buf.copy_within(take..have, 0);
            have -= take;
        }
        writer.flush().await?;
        Ok(total)
    }

    /// The data key of an envelope: Decrypt of its wrapped key.
    async fn envelope_key(&self, header: &Header, aad: &[u8]) -> Result<Secret32, ClientError> {
        let key_id = header.key_id().to_string();
        let done = self.decrypt(&key_id, header.wrapped_key(), aad).await?;
        data_key(Some(done.plaintext))
    }
}

impl From<DecryptError> for ClientError {
    fn from(_: DecryptError) -> Self {
        ClientError::Decrypt
    }
}
