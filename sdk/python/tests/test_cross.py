"""Across languages: envelopes made by the Rust helper (`skm envelope`) open
in Python and the reverse; a signature made through the SDK verifies with
the `cryptography` library from the exported public key alone."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

import skm


def cli(stack, *args, stdin=b""):
    out = subprocess.run([str(stack.bin), "--profile", str(stack.app_profile), *args], input=stdin, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


@pytest.mark.parametrize("size", [0, 1, 200_000])
def test_envelopes_cross_between_rust_and_python(client, stack, tmp_path, size):
    data = os.urandom(size)
    src = tmp_path / "data"
    src.write_bytes(data)
    rust_blob = tmp_path / "rust.skme"
    cli(stack, "envelope", "encrypt", stack.keys["aes"], "--in", str(src), "--out", str(rust_blob), "--aad", "ctx")
    assert client.envelope_decrypt(rust_blob.read_bytes(), aad=b"ctx") == data

    py_blob = tmp_path / "py.skme"
    py_blob.write_bytes(client.envelope_encrypt(stack.keys["aes"], data, aad=b"ctx"))
    out = tmp_path / "out"
    cli(stack, "envelope", "decrypt", "--in", str(py_blob), "--out", str(out), "--aad", "ctx")
    assert out.read_bytes() == data
    # stdin to stdout as well
    assert cli(stack, "envelope", "decrypt", "--aad", "ctx", stdin=py_blob.read_bytes()) == data


def test_a_tampered_python_blob_is_refused_by_the_cli(client, stack, tmp_path):
    blob = bytearray(client.envelope_encrypt(stack.keys["aes"], b"abc"))
    blob[-3] ^= 1
    path, out = tmp_path / "bad.skme", tmp_path / "out"
    path.write_bytes(bytes(blob))
    r = subprocess.run(
        [str(stack.bin), "--profile", str(stack.app_profile), "envelope", "decrypt", "--in", str(path), "--out", str(out)],
        capture_output=True,
    )
    assert r.returncode == 1 and b"envelope decryption failed" in r.stderr
    assert not out.exists(), "a failed decryption leaves no output file"


def verify(pem: str, algorithm: skm.SignatureAlgorithm, signature: bytes, message: bytes) -> bool:
    key = serialization.load_pem_public_key(pem.encode())
    try:
        if algorithm == skm.SignatureAlgorithm.ED25519:
            assert isinstance(key, ed25519.Ed25519PublicKey)
            key.verify(signature, message)
        elif algorithm == skm.SignatureAlgorithm.ECDSA_SHA256:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif algorithm == skm.SignatureAlgorithm.RSA_PSS_SHA256:
            assert isinstance(key, rsa.RSAPublicKey)
            key.verify(signature, message, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
        else:
            assert isinstance(key, rsa.RSAPublicKey)
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


@pytest.mark.parametrize("name,algorithm", [
    ("ed", skm.SignatureAlgorithm.ED25519),
    ("ec", skm.SignatureAlgorithm.ECDSA_SHA256),
    ("rsa", skm.SignatureAlgorithm.RSA_PSS_SHA256),
    ("rsa", skm.SignatureAlgorithm.RSA_PKCS1_SHA256),
])
def test_sdk_signatures_verify_with_cryptography(client, stack, name, algorithm):
    message = b"signed through the SDK"
    sig = client.sign(stack.keys[name], message, algorithm=algorithm)
    pem = client.get_public_key(stack.keys[name]).pem
    assert verify(pem, algorithm, sig.signature, message)
    assert not verify(pem, algorithm, sig.signature, message + b"!")  # control: a changed message fails
    if name != "ed":
        d = client.sign(stack.keys[name], digest=hashlib.sha256(message).digest(), algorithm=algorithm)
        assert verify(pem, algorithm, d.signature, message)
