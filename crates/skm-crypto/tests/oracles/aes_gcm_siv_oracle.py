#!/usr/bin/env python3
"""An oracle for SKM's user ciphertext format, written from its documentation
(ARCHITECTURE.md, "User ciphertext"; crates/skm-crypto/src/user.rs) and Python
`cryptography`'s AES-GCM-SIV (RFC 8452), sharing no code with SKM:

    ciphertext = 0x01 | key id (16) | key version (u32, big endian) | nonce (12) | AES-256-GCM-SIV output (ct + 16-byte tag)
    AAD        = the first 21 bytes (format | key id | key version) || the caller's AAD

Reads one JSON object on stdin, writes one on stdout (all bytes in hex):

    {"encrypt": [{"key", "key_id", "version", "nonce", "aad", "plaintext"}, ...],
     "decrypt": [{"key", "ciphertext", "aad"}, ...]}
 -> {"encrypt": ["<ciphertext>", ...],
     "decrypt": [{"plaintext": "<hex>"} | {"error": "<why>"}, ...]}

Invoked by crates/skm-crypto/tests/oracle_python.rs.
"""

import json
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

FORMAT_V1 = 0x01
HEADER_LEN = 1 + 16 + 4
NONCE_LEN = 12
TAG_LEN = 16


def encrypt(case):
    key = bytes.fromhex(case["key"])
    key_id = bytes.fromhex(case["key_id"])
    nonce = bytes.fromhex(case["nonce"])
    if len(key) != 32 or len(key_id) != 16 or len(nonce) != NONCE_LEN:
        raise ValueError("bad key, key id or nonce length")
    header = bytes([FORMAT_V1]) + key_id + struct.pack(">I", case["version"])
    aad = header + bytes.fromhex(case["aad"])
    sealed = AESGCMSIV(key).encrypt(nonce, bytes.fromhex(case["plaintext"]), aad)
    return (header + nonce + sealed).hex()


def decrypt(case):
    key = bytes.fromhex(case["key"])
    ct = bytes.fromhex(case["ciphertext"])
    if len(ct) < HEADER_LEN + NONCE_LEN + TAG_LEN:
        return {"error": "too short"}
    if ct[0] != FORMAT_V1:
        return {"error": "unknown format byte %#x" % ct[0]}
    header, nonce, sealed = ct[:HEADER_LEN], ct[HEADER_LEN:HEADER_LEN + NONCE_LEN], ct[HEADER_LEN + NONCE_LEN:]
    try:
        plaintext = AESGCMSIV(key).decrypt(nonce, sealed, header + bytes.fromhex(case["aad"]))
    except InvalidTag:
        return {"error": "authentication failed"}
    return {"plaintext": plaintext.hex()}


def main():
    request = json.load(sys.stdin)
    json.dump(
        {
            "encrypt": [encrypt(c) for c in request.get("encrypt", [])],
            "decrypt": [decrypt(c) for c in request.get("decrypt", [])],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
