"""Envelope round trips through the real stack: 0 bytes, 1 byte, chunk
boundaries, tampering, and a 64 MiB stream in bounded memory (peak RSS of
the process that streams it)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap

import pytest

import skm
from skm import envelope


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3 * 65536])
def test_round_trips(client, stack, size):
    data = os.urandom(size)
    blob = client.envelope_encrypt(stack.keys["aes"], data, aad=b"file.txt")
    chunks = max(1, -(-size // envelope.CHUNK_SIZE))
    header = envelope.parse_header(blob)
    assert header.key_id == stack.keys["aes"]
    assert len(blob) == len(header.encoded) + size + chunks * envelope.TAG
    assert blob[:6] == b"SKME\x01\x01"
    assert client.envelope_decrypt(blob, aad=b"file.txt") == data


def test_wrong_aad_truncation_and_tampering_fail(client, stack):
    data = os.urandom(2 * envelope.CHUNK_SIZE + 10)
    blob = client.envelope_encrypt(stack.keys["aes"], data)
    with pytest.raises(skm.InvalidArgument, match="decryption failed"):
        client.envelope_decrypt(blob, aad=b"other")
    h = len(envelope.parse_header(blob).encoded)
    with pytest.raises(skm.DecryptionError):
        client.envelope_decrypt(blob[: h + envelope.CHUNK_SIZE + envelope.TAG])  # cut at a chunk boundary
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    with pytest.raises(skm.DecryptionError):
        client.envelope_decrypt(bytes(flipped))
    prefix = bytearray(blob)
    prefix[12] ^= 1  # the nonce prefix, part of every chunk's AAD
    with pytest.raises(skm.DecryptionError):
        client.envelope_decrypt(bytes(prefix))
    with pytest.raises(skm.EnvelopeError, match="not an SKM envelope"):
        client.envelope_decrypt(b"XKME" + blob[4:])
    with pytest.raises(skm.EnvelopeError, match="version 2"):
        client.envelope_decrypt(blob[:4] + b"\x02" + blob[5:])
    assert client.envelope_decrypt(blob) == data  # control


STREAMER = textwrap.dedent(
    """
    import json, resource, sys
    import skm
    profile, key, src, enc, dec = sys.argv[1:]
    with skm.Client.from_profile(profile) as c:
        c.who_am_i()  # connected: the baseline includes grpc's threads and buffers
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with open(src, "rb") as i, open(enc, "wb") as o:
            sealed = c.envelope_encrypt_stream(key, i, o)
        with open(enc, "rb") as i, open(dec, "wb") as o:
            n = c.envelope_decrypt_stream(i, o)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"base_kib": base, "peak_kib": peak, "sealed": sealed.plaintext_len, "opened": n}))
    """
)


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_a_64_mib_stream_in_bounded_memory(stack, tmp_path):
    size = 64 << 20
    src, enc, dec = tmp_path / "src", tmp_path / "enc", tmp_path / "dec"
    with open(src, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    out = subprocess.run(
        [sys.executable, "-c", STREAMER, str(stack.app_profile), stack.keys["aes"], str(src), str(enc), str(dec)],
        capture_output=True, check=True, timeout=600,
    )
    figures = json.loads(out.stdout)
    print(f"64 MiB envelope stream: peak RSS {figures['peak_kib']} KiB, baseline {figures['base_kib']} KiB")
    assert figures["sealed"] == figures["opened"] == size
    assert os.path.getsize(enc) == len(envelope.parse_header(open(enc, "rb").read(2048)).encoded) + size + 1024 * 16
    assert sha256_file(dec) == sha256_file(src)
    grown_mib = (figures["peak_kib"] - figures["base_kib"]) / 1024
    # holding the data (64 MiB) or the blob in memory would grow it by more than 64 MiB
    assert grown_mib < 16, figures
