"""The envelope format shared with the Rust client (``skm_crypto::envelope``).

Data of any size is encrypted locally under a fresh data key from
GenerateDataKey, with AES-256-GCM in the STREAM construction, into one
self-describing blob that holds the data key wrapped by an SKM key::

    offset  size  field
    0       4     magic "SKME"
    4       1     format version = 1
    5       1     algorithm = 1 (AES-256-GCM, STREAM)
    6       4     chunk size C, u32 big-endian (1..=16 MiB; 65536 when written)
    10      7     nonce prefix P (random)
    17      2     length n of the wrapped data key, u16 big-endian (1..=1024)
    19      n     wrapped data key (a GenerateDataKey ciphertext; bytes 1..17 are the key id)
    19+n    ...   chunks: AES-256-GCM(data key, nonce_i, chunk_i, AAD = bytes 0..19+n),
                  C plaintext bytes + 16-byte tag each; the last 1..=C bytes + tag
                  (0 bytes + tag only when the data is empty)
    nonce_i = P | i (u32 big-endian, from 0) | 0x01 for the last chunk, else 0x00

Decrypting takes one Decrypt call (of the wrapped key, with the AAD given
to encrypt). Streams are processed one chunk at a time; a streaming reader
that fails must discard what it wrote (a cut-off blob fails only at its end).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from skm.errors import DecryptionError, EnvelopeError

MAGIC = b"SKME"
VERSION = 1
ALGORITHM_AES_256_GCM_STREAM = 1
CHUNK_SIZE = 1 << 16
MAX_CHUNK_SIZE = 1 << 24
MAX_WRAPPED_KEY = 1024
FIXED_HEADER = 19
TAG = 16
_USER_CIPHERTEXT_OVERHEAD = 1 + 16 + 4 + 12 + 16


@dataclass(frozen=True)
class Header:
    chunk_size: int
    nonce_prefix: bytes
    wrapped_key: bytes
    encoded: bytes

    @property
    def key_id(self) -> str:
        """The id of the SKM key that wrapped the data key."""
        return self.wrapped_key[1:17].hex()


def _build(chunk_size: int, prefix: bytes, wrapped_key: bytes) -> Header:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise EnvelopeError(f"envelope chunk size {chunk_size} is out of range (1..={MAX_CHUNK_SIZE})")
    if not 1 <= len(wrapped_key) <= MAX_WRAPPED_KEY:
        raise EnvelopeError(f"envelope wrapped key length {len(wrapped_key)} is out of range (1..={MAX_WRAPPED_KEY})")
    if len(wrapped_key) < _USER_CIPHERTEXT_OVERHEAD or wrapped_key[0] != 0x01:
        raise EnvelopeError("the envelope's wrapped key is not an SKM ciphertext")
    encoded = (
        MAGIC
        + bytes([VERSION, ALGORITHM_AES_256_GCM_STREAM])
        + struct.pack(">I", chunk_size)
        + prefix
        + struct.pack(">H", len(wrapped_key))
        + wrapped_key
    )
    return Header(chunk_size, prefix, wrapped_key, encoded)


def new_header(wrapped_key: bytes) -> Header:
    """A header for a new envelope around a GenerateDataKey ciphertext."""
    return _build(CHUNK_SIZE, os.urandom(7), wrapped_key)


def header_length(start: bytes) -> int:
    """The full header length, from its first FIXED_HEADER bytes."""
    if len(start) < 4:
        raise EnvelopeError("envelope truncated in its header")
    if start[:4] != MAGIC:
        raise EnvelopeError('not an SKM envelope (it does not start with "SKME")')
    if len(start) < FIXED_HEADER:
        raise EnvelopeError("envelope truncated in its header")
    if start[4] != VERSION:
        raise EnvelopeError(f"envelope format version {start[4]} is not supported (this build reads version {VERSION})")
    if start[5] != ALGORITHM_AES_256_GCM_STREAM:
        raise EnvelopeError(f"envelope algorithm {start[5]} is not supported (1 = AES-256-GCM STREAM)")
    (chunk_size,) = struct.unpack(">I", start[6:10])
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise EnvelopeError(f"envelope chunk size {chunk_size} is out of range (1..={MAX_CHUNK_SIZE})")
    (n,) = struct.unpack(">H", start[17:19])
    if not 1 <= n <= MAX_WRAPPED_KEY:
        raise EnvelopeError(f"envelope wrapped key length {n} is out of range (1..={MAX_WRAPPED_KEY})")
    return FIXED_HEADER + n


def parse_header(blob: bytes) -> Header:
    """The header at the start of ``blob``."""
    n = header_length(blob[:FIXED_HEADER])
    if len(blob) < n:
        raise EnvelopeError("envelope truncated in its header")
    (chunk_size,) = struct.unpack(">I", blob[6:10])
    return _build(chunk_size, bytes(blob[10:17]), bytes(blob[FIXED_HEADER:n]))


def read_header(src: BinaryIO) -> Header:
    """Reads exactly the header from a stream."""
    start = _read_full(src, FIXED_HEADER)
    n = header_length(start)
    rest = _read_full(src, n - FIXED_HEADER)
    if len(rest) != n - FIXED_HEADER:
        raise EnvelopeError("envelope truncated in its header")
    return parse_header(start + rest)


class _Stream:
    def __init__(self, data_key: bytes, header: Header) -> None:
        if len(data_key) != 32:
            raise DecryptionError()
        self._aead = AESGCM(data_key)
        self._prefix = header.nonce_prefix
        self._aad = header.encoded
        self._counter = 0
        self.finished = False

    def _nonce(self, last: bool) -> bytes:
        if self.finished or self._counter > 0xFFFFFFFF:
            raise DecryptionError("envelope stream is over")
        nonce = self._prefix + struct.pack(">I", self._counter) + (b"\x01" if last else b"\x00")
        if last:
            self.finished = True
        else:
            self._counter += 1
        return nonce


class Sealer(_Stream):
    def seal_chunk(self, chunk: bytes, last: bool) -> bytes:
        return self._aead.encrypt(self._nonce(last), chunk, self._aad)


class Opener(_Stream):
    def open_chunk(self, sealed: bytes, last: bool) -> bytes:
        if len(sealed) < TAG:
            raise DecryptionError()
        try:
            return self._aead.decrypt(self._nonce(last), sealed, self._aad)
        except InvalidTag:
            raise DecryptionError() from None


def _read_full(src: BinaryIO, n: int) -> bytes:
    parts = []
    while n > 0:
        b = src.read(n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def seal_stream(data_key: bytes, header: Header, src: BinaryIO, dst: BinaryIO) -> int:
    """Writes the header and the sealed chunks of ``src`` to ``dst``; returns the plaintext length."""
    sealer = Sealer(data_key, header)
    dst.write(header.encoded)
    size = header.chunk_size
    current = _read_full(src, size)
    total = len(current)
    while True:
        following = _read_full(src, size) if len(current) == size else b""
        last = not following
        dst.write(sealer.seal_chunk(current, last))
        if last:
            return total
        current = following
        total += len(following)


def open_stream(data_key: bytes, header: Header, src: BinaryIO, dst: BinaryIO) -> int:
    """Opens the chunks following the header in ``src`` into ``dst``; returns the plaintext length."""
    opener = Opener(data_key, header)
    sealed_size = header.chunk_size + TAG
    buf = _read_full(src, sealed_size + 1)
    total = 0
    while True:
        last = len(buf) <= sealed_size
        plain = opener.open_chunk(buf[:sealed_size], last)
        dst.write(plain)
        total += len(plain)
        if last:
            return total
        buf = buf[sealed_size:] + _read_full(src, sealed_size)
