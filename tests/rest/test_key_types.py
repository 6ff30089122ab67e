"""The key types of issue 17 on /v1, beyond their contract rows: MACs of the
three HMAC types across planes (a tag made over REST verifies over gRPC and
the reverse; HMAC is deterministic, so both planes give the same tag), their
refusals in the /v1 error shape with gRPC's code and text, and ECDSA P-384 /
ML-DSA-65 signatures made over REST verified over gRPC and with
`cryptography` from the public key REST hands out, and the reverse; RSA-OAEP
ciphertexts made by `cryptography` and by `openssl pkeyutl` from the public
key REST hands out, decrypted over REST and over gRPC, with every refusal in
the /v1 error shape beside gRPC's. Every answer is also checked against its
schema in kms-api/openapi/v1.json."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from typing import Any, Optional

import jsonschema
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

import skm
from conftest import (
    B64, HTTP, MARKER, Stack, assert_common_headers, assert_shape, b64, grpc_decrypt_raw, grpc_message, grpc_raw,
    oaep_encrypt, unb64, v1_error,
)
from test_openapi import FORMATS, inline, load, operation

A = skm.SignatureAlgorithm
HMACS = [("hmac256", "hmac-sha256", 32), ("hmac384", "hmac-sha384", 48), ("hmac512", "hmac-sha512", 64)]
HMAC_WANTED = "this operation needs an hmac key (hmac-sha256, hmac-sha384, hmac-sha512)"
KEY_MISSING = "0123456789abcdef0123456789abcdef"


def schema_check(method: str, template: str, status: int, answer: Any) -> None:
    """The answer validates against the schema the OpenAPI document gives that status."""
    doc = load()
    responses = operation(doc, template, method)["responses"]
    assert str(status) in responses, f"{method} {template} documents no {status}"
    schema = inline(responses[str(status)]["content"]["application/json"]["schema"], doc["components"]["schemas"])
    jsonschema.Draft7Validator(schema, format_checker=FORMATS).validate(answer)


def v1(stack: Stack, method: str, route: str, key: str, body: Any = None, status: int = 200,
       params: Optional[dict] = None):
    """`method /v1/keys/{id}/route` for key `key` (a name in stack.keys, or an id): the JSON answer, after
    checking its status, the common headers, that it echoes no MARKER, and its OpenAPI schema."""
    key_id = stack.keys.get(key, key)
    kwargs: dict = {"params": params}
    if body is not None:
        kwargs["json_body"] = body
    r = stack.call(method, f"/v1/keys/{key_id}/{route}", **kwargs)
    assert r.status_code == status, f"{method} {route}: HTTP {r.status_code}: {r.text[:400]}"
    assert_common_headers(r)
    assert MARKER not in r.text, "the answer echoes the input"
    doc = r.json()
    schema_check(method, f"/v1/keys/{{key_id}}/{route}", status, doc)
    return doc


def flipped(tag: bytes, i: int = 0) -> bytes:
    return tag[:i] + bytes([tag[i] ^ 1]) + tag[i + 1:]


# ------------------------------------------------------------------ HMAC

@pytest.mark.parametrize("name,algorithm,size", HMACS, ids=[h[1] for h in HMACS])
def test_a_rest_mac_is_the_grpc_mac_and_verifies_on_both_planes(stack, grpc_client, name, algorithm, size):
    key = stack.keys[name]
    message = bytes(range(256))  # not text: base64 on /v1
    doc = v1(stack, "POST", "generate-mac", name, {"message": b64(message)})
    assert_shape(doc, {"mac": B64(size), "key_version": 1, "algorithm": algorithm})
    tag = unb64(doc["mac"])
    assert grpc_client.generate_mac(key, message) == skm.Mac(tag, 1, algorithm), "REST and gRPC tags differ"
    assert grpc_client.verify_mac(key, tag, message) == skm.Verified(True, 1)
    assert grpc_client.verify_mac(key, tag, message, key_version=1) == skm.Verified(True, 1)
    assert v1(stack, "POST", "generate-mac", name, {"message": b64(message)}) == doc, "deterministic"

    # the reverse: a tag made over gRPC verifies over REST, with any version (omitted or 0) or version 1
    made = grpc_client.generate_mac(key, b"made over gRPC")
    for extra in ({}, {"key_version": 0}, {"key_version": 1}):
        body = {"message": b64(b"made over gRPC"), "mac": b64(made.mac), **extra}
        assert v1(stack, "POST", "verify-mac", name, body) == {"valid": True, "key_version": 1}, extra
    # requests may use URL-safe unpadded base64 (test_cross.py), the tag too
    loose = b64(made.mac).replace("+", "-").replace("/", "_").rstrip("=")
    assert v1(stack, "POST", "verify-mac", name, {"message": b64(b"made over gRPC"), "mac": loose})["valid"]

    # a wrong, tampered or truncated tag, or another message, is valid=false on both planes, not an error
    for bad_tag, bad_message in [(flipped(tag), message), (flipped(tag, size - 1), message), (tag[:-1], message),
                                 (tag[: size // 2], message), (b"", message), (tag, message + b"!"), (tag, b"")]:
        answer = v1(stack, "POST", "verify-mac", name, {"message": b64(bad_message), "mac": b64(bad_tag)})
        assert answer == {"valid": False, "key_version": 0}, (len(bad_tag), len(bad_message))
        assert grpc_client.verify_mac(key, bad_tag, bad_message) == skm.Verified(False, 0)


def test_mac_edges_of_the_message_limit(stack, grpc_client):
    for message in (b"", b"m" * 4096):
        doc = v1(stack, "POST", "generate-mac", "hmac512", {"message": b64(message)})
        assert grpc_client.verify_mac(stack.keys["hmac512"], unb64(doc["mac"]), message).valid, len(message)


def _grpc_mac(key: str, message: bytes = b"x", mac: Optional[bytes] = None, key_version: int = 0):
    if mac is None:
        return lambda c, s: c.generate_mac(s.keys.get(key, key), message)
    return lambda c, s: c.verify_mac(s.keys.get(key, key), mac, message, key_version=key_version)


ZERO32 = b64(b"\x00" * 32)
# (id, route, key, body, code name, message: exact text, or a tuple of parts it contains; gRPC's same call)
MAC_ERRORS = [
    ("message-over-limit", "generate-mac", "hmac256", {"message": b64(b"x" * 4097)}, "INVALID_ARGUMENT",
     "message is 4097 bytes; the limit is 4096", _grpc_mac("hmac256", b"x" * 4097)),
    ("verify-message-over-limit", "verify-mac", "hmac384", {"message": b64(b"x" * 4097), "mac": ZERO32},
     "INVALID_ARGUMENT", "message is 4097 bytes; the limit is 4096", _grpc_mac("hmac384", b"x" * 4097, b"\x00" * 32)),
    ("mac-over-limit", "verify-mac", "hmac512", {"message": b64(b"x"), "mac": b64(b"\x00" * 65)},
     "INVALID_ARGUMENT", "mac is 65 bytes; the limit is 64", _grpc_mac("hmac512", b"x", b"\x00" * 65)),
    ("mac-of-ed25519", "generate-mac", "ed", {"message": b64(b"x")}, "FAILED_PRECONDITION", (HMAC_WANTED,),
     _grpc_mac("ed")),
    ("mac-of-p384", "generate-mac", "p384", {"message": b64(b"x")}, "FAILED_PRECONDITION", (HMAC_WANTED,),
     _grpc_mac("p384")),
    ("mac-of-aes", "generate-mac", "aes", {"message": b64(b"x")}, "FAILED_PRECONDITION", (HMAC_WANTED,),
     _grpc_mac("aes")),
    ("verify-mac-of-ml-dsa", "verify-mac", "mldsa65", {"message": b64(b"x"), "mac": ZERO32}, "FAILED_PRECONDITION",
     (HMAC_WANTED,), _grpc_mac("mldsa65", b"x", b"\x00" * 32)),
    ("verify-mac-of-secret", "verify-mac", "secret", {"message": b64(b"x"), "mac": ZERO32}, "FAILED_PRECONDITION",
     (HMAC_WANTED,), _grpc_mac("secret", b"x", b"\x00" * 32)),
    ("message-not-base64", "generate-mac", "hmac256", {"message": MARKER + "!*"}, "INVALID_ARGUMENT",
     "message: not base64", None),
    ("verify-message-not-base64", "verify-mac", "hmac256", {"message": MARKER + "!*", "mac": ZERO32},
     "INVALID_ARGUMENT", "message: not base64", None),
    ("mac-not-base64", "verify-mac", "hmac256", {"message": b64(b"x"), "mac": MARKER + "!*"}, "INVALID_ARGUMENT",
     "mac: not base64", None),
    ("mac-wrong-type", "verify-mac", "hmac256", {"message": b64(b"x"), "mac": [MARKER]}, "INVALID_ARGUMENT",
     "mac: expected a base64 string", None),
    ("no-message", "generate-mac", "hmac256", {}, "INVALID_ARGUMENT", "message is required", None),
    ("no-mac", "verify-mac", "hmac256", {"message": b64(b"x")}, "INVALID_ARGUMENT", "mac is required", None),
    ("unknown-field", "generate-mac", "hmac256", {"message": b64(b"x"), "key_version": 1}, "INVALID_ARGUMENT",
     "unknown field `key_version`", None),
    ("key-version-wrong-type", "verify-mac", "hmac256", {"message": b64(b"x"), "mac": ZERO32, "key_version": MARKER},
     "INVALID_ARGUMENT", ("key_version",), None),
    ("no-such-version", "verify-mac", "hmac256", {"message": b64(b"x"), "mac": ZERO32, "key_version": 2},
     "NOT_FOUND", None, _grpc_mac("hmac256", b"x", b"\x00" * 32, 2)),
    ("missing-key", "generate-mac", KEY_MISSING, {"message": b64(b"x")}, "NOT_FOUND",
     f"key {KEY_MISSING} not found", _grpc_mac(KEY_MISSING)),
    ("not-an-id", "verify-mac", "not-an-id", {"message": b64(b"x"), "mac": ZERO32}, "INVALID_ARGUMENT",
     ("32 hex digits",), _grpc_mac("not-an-id", b"x", b"\x00" * 32)),
    ("denied", "generate-mac", "denied", {"message": b64(b"x")}, "PERMISSION_DENIED", "IPv4 authentication failed",
     _grpc_mac("denied")),
    ("disabled", "verify-mac", "disabled", {"message": b64(b"x"), "mac": ZERO32}, "FAILED_PRECONDITION", None,
     _grpc_mac("disabled", b"x", b"\x00" * 32)),
]


@pytest.mark.parametrize("case", MAC_ERRORS, ids=[c[0] for c in MAC_ERRORS])
def test_mac_refusals_in_the_v1_error_shape(stack, grpc_client, case):
    _, route, key, body, code, message, grpc_call = case
    doc = v1(stack, "POST", route, key, body, status=HTTP[code])
    assert_shape(doc, v1_error(code))
    text = doc["error"]["message"]
    if isinstance(message, str):
        assert text == message
    elif isinstance(message, tuple):
        assert all(part in text for part in message), text
    if grpc_call is not None:
        assert (code, text) == grpc_message(lambda: grpc_call(grpc_client, stack)), "differs from gRPC"


# ------------------------------------------------------------- signatures

def rest_public_key(stack: Stack, grpc_client, name: str, algorithm: str):
    doc = v1(stack, "GET", "public-key", name)
    assert (doc["key_algorithm"], doc["key_version"]) == (algorithm, 1)
    grpc = grpc_client.get_public_key(stack.keys[name])
    assert (unb64(doc["spki_der"]), doc["pem"]) == (grpc.spki_der, grpc.pem), "the planes hand out different keys"
    public = serialization.load_der_public_key(unb64(doc["spki_der"]))
    assert public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        doc["pem"].encode()
    return public


def test_p384_rest_signatures_verify_over_grpc_and_with_cryptography(stack, grpc_client):
    key = stack.keys["p384"]
    public = rest_public_key(stack, grpc_client, "p384", "ecdsa-p384")
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1"
    ecdsa = ec.ECDSA(hashes.SHA384())
    message = b"P-384 over REST"
    digest = hashlib.sha384(message).digest()
    for body in ({"message": b64(message)},
                 {"message": b64(message), "algorithm": "SIGNATURE_ALGORITHM_ECDSA_SHA384"},
                 {"digest": b64(digest), "algorithm": "SIGNATURE_ALGORITHM_ECDSA_SHA384"},
                 {"digest": b64(digest)}):
        doc = v1(stack, "POST", "sign", "p384", body)
        assert (doc["algorithm"], doc["key_version"]) == ("SIGNATURE_ALGORITHM_ECDSA_SHA384", 1), body
        sig = unb64(doc["signature"])
        assert grpc_client.verify(key, sig, message, algorithm=A.ECDSA_SHA384) == skm.Verified(True, 1)
        assert grpc_client.verify(key, sig, digest=digest).valid
        assert not grpc_client.verify(key, sig, message + b"!").valid
        public.verify(sig, message, ecdsa)
        public.verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA384())))
        with pytest.raises(InvalidSignature):
            public.verify(sig, message + b"!", ecdsa)

    # the reverse: gRPC signs, REST verifies (message or digest)
    made = grpc_client.sign(key, message, algorithm=A.ECDSA_SHA384).signature
    for body in ({"message": b64(message)}, {"digest": b64(digest), "algorithm": "SIGNATURE_ALGORITHM_ECDSA_SHA384"},
                 {"message": b64(message), "key_version": 1}):
        assert v1(stack, "POST", "verify", "p384", {**body, "signature": b64(made)}) == \
            {"valid": True, "key_version": 1}, body
    assert v1(stack, "POST", "verify", "p384", {"message": b64(b"other"), "signature": b64(made)}) == \
        {"valid": False, "key_version": 0}


def test_ml_dsa_65_rest_signatures_verify_over_grpc_and_with_cryptography(stack, grpc_client):
    key = stack.keys["mldsa65"]
    public = rest_public_key(stack, grpc_client, "mldsa65", "ml-dsa-65")
    assert isinstance(public, mldsa.MLDSA65PublicKey)
    message = b"ML-DSA-65 over REST"
    sigs = []
    for body in ({"message": b64(message)}, {"message": b64(message), "algorithm": "SIGNATURE_ALGORITHM_ML_DSA"}):
        doc = v1(stack, "POST", "sign", "mldsa65", body)
        assert_shape(doc, {"signature": B64(3309), "key_version": 1, "algorithm": "SIGNATURE_ALGORITHM_ML_DSA"})
        sig = unb64(doc["signature"])
        sigs.append(sig)
        assert grpc_client.verify(key, sig, message) == skm.Verified(True, 1)
        assert grpc_client.verify(key, sig, message, algorithm=A.ML_DSA, key_version=1).valid
        assert not grpc_client.verify(key, sig, message + b"!").valid
        public.verify(sig, message)  # pure ML-DSA, the empty context
        with pytest.raises(InvalidSignature):
            public.verify(sig, message + b"!")
    assert sigs[0] != sigs[1], "hedged signing: each signature has fresh randomness"

    made = grpc_client.sign(key, message).signature
    assert v1(stack, "POST", "verify", "mldsa65", {"message": b64(message), "signature": b64(made)}) == \
        {"valid": True, "key_version": 1}
    assert v1(stack, "POST", "verify", "mldsa65", {"message": b64(message), "signature": b64(made[:-1]),
                                                    "algorithm": "SIGNATURE_ALGORITHM_ML_DSA"}) == \
        {"valid": False, "key_version": 0}
    # messages only, on Verify too, with gRPC's text
    body = {"digest": b64(hashlib.sha256(message).digest()), "signature": b64(made)}
    doc = v1(stack, "POST", "verify", "mldsa65", body, status=400)
    assert_shape(doc, v1_error("FAILED_PRECONDITION", "ml-dsa-65 keys sign messages, not digests"))
    assert grpc_message(lambda: grpc_client.verify(key, made, digest=hashlib.sha256(message).digest())) == \
        ("FAILED_PRECONDITION", "ml-dsa-65 keys sign messages, not digests")


def test_ml_dsa_65_rest_signs_an_external_mu_as_the_message_itself(stack, grpc_client):
    key = stack.keys["mldsa65"]
    public = rest_public_key(stack, grpc_client, "mldsa65", "ml-dsa-65")
    message = b"a large release " * 4096  # 64 KiB, over the 4096-byte message limit
    # FIPS 204 external mu computed here, independently of the SDK's helper
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    tr = hashlib.shake_256(raw_public).digest(64)
    mu = hashlib.shake_256(tr + b"\x00\x00" + message).digest(64)
    assert mu == skm.external_mu(grpc_client.get_public_key(key).spki_der, message)
    doc = v1(stack, "POST", "sign", "mldsa65", {"mu": b64(mu)})
    assert_shape(doc, {"signature": B64(3309), "key_version": 1, "algorithm": "SIGNATURE_ALGORITHM_ML_DSA"})
    sig = unb64(doc["signature"])
    public.verify(sig, message)  # the message's own signature
    assert grpc_client.verify(key, sig, mu=mu) == skm.Verified(True, 1)
    assert v1(stack, "POST", "verify", "mldsa65", {"mu": b64(mu), "signature": b64(sig)}) == \
        {"valid": True, "key_version": 1}
    made = grpc_client.sign(key, mu=mu).signature
    public.verify(made, message)
    doc = v1(stack, "POST", "sign", "mldsa65", {"mu": b64(mu[:32])}, status=400)
    assert_shape(doc, v1_error("INVALID_ARGUMENT", "an external mu is 64 bytes; got 32"))
    doc = v1(stack, "POST", "sign", "mldsa65", {"mu": b64(mu), "message": b64(b"m")}, status=400)
    assert_shape(doc, v1_error("INVALID_ARGUMENT", "give one of message, digest or mu, not more"))
    doc = v1(stack, "POST", "sign", "ed", {"mu": b64(mu)}, status=400)
    assert_shape(doc, v1_error("FAILED_PRECONDITION", "ed25519 keys take no external mu (ML-DSA keys only)"))


@pytest.mark.parametrize("name,algorithm", [
    ("p384", "SIGNATURE_ALGORITHM_ECDSA_SHA256"),
    ("p384", "SIGNATURE_ALGORITHM_ML_DSA"),
    ("mldsa65", "SIGNATURE_ALGORITHM_ED25519"),
    ("mldsa65", "SIGNATURE_ALGORITHM_ECDSA_SHA384"),
    ("ec", "SIGNATURE_ALGORITHM_ECDSA_SHA384"),
    ("ed", "SIGNATURE_ALGORITHM_ML_DSA"),
])
def test_an_algorithm_that_does_not_fit_the_key(stack, grpc_client, name, algorithm):
    doc = v1(stack, "POST", "sign", name, {"message": b64(b"x"), "algorithm": algorithm}, status=400)
    assert_shape(doc, v1_error("FAILED_PRECONDITION"))
    assert "does not fit" in doc["error"]["message"], doc
    grpc = grpc_message(lambda: grpc_client.sign(stack.keys[name], b"x", algorithm=A[algorithm.split("_", 2)[2]]))
    assert grpc == ("FAILED_PRECONDITION", doc["error"]["message"])


# --------------------------------------------------------------- RSA-OAEP

# (key name, type, ciphertext bytes = modulus, largest plaintext, SPKI DER bytes)
OAEPS = [
    ("oaep2048", "rsa-oaep-2048", 256, 190, 294),
    ("oaep3072", "rsa-oaep-3072", 384, 318, 422),
    ("oaep4096", "rsa-oaep-4096", 512, 446, 550),
]
RSA_OAEP = "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256"
OAEP_WANTED = "this operation needs an rsa-oaep-* key (with algorithm RSAES_OAEP_SHA_256)"
NOT_AN_ALGORITHM = ("algorithm: not an encryption algorithm (ENCRYPTION_ALGORITHM_UNSPECIFIED, "
                    "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256)")
VERSION_WITHOUT_RSA = ("key_version: only with ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256 (SKM ciphertexts name "
                       "their version)")
OPENSSL_OAEP = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                "-pkeyopt", "rsa_mgf1_md:sha256"]


def rest_decrypt(stack: Stack, key: str, ciphertext: bytes, status: int = 200, **extra: Any):
    """POST /v1/keys/{id}/decrypt with the RSA algorithm (and `extra` fields)."""
    return v1(stack, "POST", "decrypt", key, {"ciphertext": b64(ciphertext), "algorithm": RSA_OAEP, **extra},
              status=status)


def assert_decryption_failed(doc: Any) -> None:
    assert_shape(doc, v1_error("INVALID_ARGUMENT", "decryption failed"))


@pytest.mark.parametrize("name,kind,size,limit,spki", OAEPS, ids=[o[1] for o in OAEPS])
def test_rest_decrypts_an_rsa_oaep_ciphertext_made_with_cryptography(stack, grpc_client, name, kind, size, limit,
                                                                     spki):
    key = stack.keys[name]
    doc = v1(stack, "GET", "public-key", name)
    assert_shape(doc, {"spki_der": B64(spki), "pem": str, "key_version": 1, "key_algorithm": kind})
    public = rest_public_key(stack, grpc_client, name, kind)  # the same key on both planes
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == size * 8

    for plaintext in (b"encrypted outside SKM", b"", os.urandom(limit)):
        ct = oaep_encrypt(doc["pem"], plaintext)
        assert len(ct) == size
        want = {"plaintext": b64(plaintext), "key_version": 1}
        for extra in ({}, {"key_version": 0}, {"key_version": 1}, {"aad": ""}, {"key_version": None}):
            assert rest_decrypt(stack, name, ct, **extra) == want, (len(plaintext), extra)
        # the same ciphertext over gRPC: the SDK's method, and the bare DecryptRequest fields
        assert grpc_client.decrypt_rsa_oaep(key, ct) == skm.Decrypted(plaintext, 1)
        raw = grpc_decrypt_raw(grpc_client, key_id=key, ciphertext=ct, algorithm=1, key_version=1)
        assert (raw.plaintext, raw.key_version) == (plaintext, 1)

    # requests may use URL-safe unpadded base64 (test_cross.py), the ciphertext too
    ct = oaep_encrypt(doc["pem"], b"\xfb\xff url-safe")
    loose = b64(ct).replace("+", "-").replace("/", "_").rstrip("=")
    assert v1(stack, "POST", "decrypt", name, {"ciphertext": loose, "algorithm": RSA_OAEP}) == \
        {"plaintext": b64(b"\xfb\xff url-safe"), "key_version": 1}

    # tampered, cut, zero, or made with another key's public half: the one opaque error, on both planes
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=size * 8).public_key()
    other = stranger.encrypt(b"x", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                                label=None))
    for bad in (flipped(ct), flipped(ct, size // 2), flipped(ct, size - 1), ct[:-1], b"\x00" * size, other,
                public.encrypt(b"x", padding.PKCS1v15())):
        assert_decryption_failed(rest_decrypt(stack, name, bad, status=400))
        assert_decryption_failed(rest_decrypt(stack, name, bad, status=400, key_version=1))
        assert grpc_message(lambda: grpc_client.decrypt_rsa_oaep(key, bad)) == \
            ("INVALID_ARGUMENT", "decryption failed")


def test_openssl_pkeyutl_encrypts_for_skm(stack, grpc_client, tmp_path):
    """OpenSSL as the encryptor, from the PEM REST hands out: its OAEP with SHA-256 and MGF1-SHA-256 decrypts;
    its default OAEP (SHA-1) does not."""
    openssl = shutil.which("openssl")
    assert openssl, "this test needs the openssl command (apt-get install openssl)"

    def encrypt(pem: Any, plaintext: bytes, options: list) -> bytes:
        src = tmp_path / "plaintext"
        src.write_bytes(plaintext)
        out = subprocess.run([openssl, "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pem), *options,
                              "-in", str(src)], capture_output=True, timeout=60)
        assert out.returncode == 0, f"openssl pkeyutl: {out.stderr.decode()}"
        return out.stdout

    for name, kind, size, limit, _ in OAEPS:
        key = stack.keys[name]
        pem = tmp_path / f"{name}.pem"
        pem.write_text(v1(stack, "GET", "public-key", name)["pem"])
        for plaintext in (b"encrypted by OpenSSL", os.urandom(limit)):
            ct = encrypt(pem, plaintext, OPENSSL_OAEP)
            assert len(ct) == size, kind
            assert rest_decrypt(stack, name, ct) == {"plaintext": b64(plaintext), "key_version": 1}, kind
            assert grpc_client.decrypt_rsa_oaep(key, ct, key_version=1) == skm.Decrypted(plaintext, 1), kind
        sha1 = encrypt(pem, b"encrypted by OpenSSL", ["-pkeyopt", "rsa_padding_mode:oaep"])
        assert len(sha1) == size
        assert_decryption_failed(rest_decrypt(stack, name, sha1, status=400))
        # the modulus less 66 bytes is the limit for OpenSSL too
        src = tmp_path / "too-long"
        src.write_bytes(b"x" * (limit + 1))
        out = subprocess.run([openssl, "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pem), *OPENSSL_OAEP,
                              "-in", str(src)], capture_output=True, timeout=60)
        assert out.returncode != 0, kind


def test_rsa_oaep_after_rotation_over_rest(stack, grpc_client):
    """An RSA ciphertext names no version: after a rotation the version-1 ciphertext needs key_version 1,
    and one made with the version-2 public key decrypts with the newest."""
    name = "oaep_rot"
    key = stack.keys[name]
    pem1 = v1(stack, "GET", "public-key", name)["pem"]
    old = oaep_encrypt(pem1, b"before the rotation")
    assert rest_decrypt(stack, name, old) == {"plaintext": b64(b"before the rotation"), "key_version": 1}
    stack.skm("key", "rotate", key)

    doc2 = v1(stack, "GET", "public-key", name)
    assert (doc2["key_version"], doc2["key_algorithm"]) == (2, "rsa-oaep-2048") and doc2["pem"] != pem1
    assert v1(stack, "GET", "public-key", name, params={"key_version": 2}) == doc2
    assert v1(stack, "GET", "public-key", name, params={"key_version": 1})["pem"] == pem1
    assert grpc_client.get_public_key(key).pem == doc2["pem"]
    compat = stack.fill(f"/keymanager/v1.3/appkey/{{ks:open}}/asymmetric-keys/{key}/publicKey")
    for version, spki in ((2, unb64(doc2["spki_der"])), (1, grpc_client.get_public_key(key, 1).spki_der)):
        r = stack.call("GET", compat, params={"keyVersion": version})
        assert r.status_code == 200, r.text
        body = r.json()["body"]
        assert (body["keyType"], body["keyVersion"], unb64(body["encodedKey"])) == ("RSA", version, spki)

    for extra in ({}, {"key_version": 0}, {"key_version": 2}):
        assert_decryption_failed(rest_decrypt(stack, name, old, status=400, **extra))
    assert grpc_message(lambda: grpc_client.decrypt_rsa_oaep(key, old)) == ("INVALID_ARGUMENT", "decryption failed")
    assert rest_decrypt(stack, name, old, key_version=1) == {"plaintext": b64(b"before the rotation"),
                                                             "key_version": 1}
    assert grpc_client.decrypt_rsa_oaep(key, old, key_version=1) == skm.Decrypted(b"before the rotation", 1)

    new = oaep_encrypt(doc2["pem"], b"after the rotation")
    for extra in ({}, {"key_version": 0}, {"key_version": 2}):
        assert rest_decrypt(stack, name, new, **extra) == {"plaintext": b64(b"after the rotation"),
                                                           "key_version": 2}, extra
    assert grpc_client.decrypt_rsa_oaep(key, new) == skm.Decrypted(b"after the rotation", 2)
    assert_decryption_failed(rest_decrypt(stack, name, new, status=400, key_version=1))
    doc = rest_decrypt(stack, name, new, status=404, key_version=3)
    assert_shape(doc, v1_error("NOT_FOUND", f"key {key} has no version 3"))
    assert grpc_message(lambda: grpc_client.decrypt_rsa_oaep(key, new, key_version=3)) == \
        ("NOT_FOUND", f"key {key} has no version 3")


@pytest.fixture(scope="module")
def oaep_cts(stack, grpc_client):
    """Ciphertexts for the refusal table: one of oaep2048 (made locally), one of an AES key."""
    return {
        "rsa": oaep_encrypt(grpc_client.get_public_key(stack.keys["oaep2048"]).pem, b"refused"),
        "aes": grpc_client.encrypt(stack.keys["aes"], b"refused").ciphertext,
    }


def _dec(key: str, ct: str = "rsa", **fields: Any):
    """The gRPC Decrypt of a refusal row: the SDK's decrypt_rsa_oaep / decrypt, or (`raw`) bare fields."""
    raw = fields.pop("raw", False)
    algorithm = fields.pop("algorithm", 1)

    def call(c, s, cts):
        key_id = s.keys.get(key, key)
        ciphertext = fields.get("ciphertext", cts.get(ct))
        if raw:
            return grpc_decrypt_raw(c, key_id=key_id, ciphertext=ciphertext, algorithm=algorithm,
                                    **{k: v for k, v in fields.items() if k != "ciphertext"})
        if algorithm == 0:
            return c.decrypt(key_id, ciphertext)
        return c.decrypt_rsa_oaep(key_id, ciphertext, key_version=fields.get("key_version", 0))
    return call


def _body(ct: str = "rsa", algorithm: Any = RSA_OAEP, **extra: Any):
    def body(cts):
        out = {"ciphertext": b64(cts[ct]) if ct in cts else ct, **extra}
        if algorithm is not None:
            out["algorithm"] = algorithm
        return out
    return body


# (id, route, key, body(cts), code name, message: exact text, or a tuple of parts it contains,
#  gRPC's same call (client, stack, cts) or None, whether gRPC's text is the same (else only the code))
OAEP_ERRORS = [
    ("aad", "decrypt", "oaep2048", _body(aad=b64(b"ctx")), "INVALID_ARGUMENT",
     "aad: ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256 takes none", _dec("oaep2048", raw=True, aad=b"ctx"), True),
    ("too-long", "decrypt", "oaep2048", _body(b64(b"\x00" * 513)), "INVALID_ARGUMENT",
     "ciphertext is 513 bytes; the limit is 512", _dec("oaep2048", ciphertext=b"\x00" * 513), True),
    ("one-byte-short", "decrypt", "oaep2048", _body(b64(b"\x01" * 255)), "INVALID_ARGUMENT", "decryption failed",
     _dec("oaep2048", ciphertext=b"\x01" * 255), True),
    ("a-4096-bit-length-for-a-2048-bit-key", "decrypt", "oaep2048", _body(b64(b"\x01" * 512)), "INVALID_ARGUMENT",
     "decryption failed", _dec("oaep2048", ciphertext=b"\x01" * 512), True),
    ("empty", "decrypt", "oaep2048", _body(""), "INVALID_ARGUMENT", "decryption failed",
     _dec("oaep2048", ciphertext=b""), True),
    ("all-zeros", "decrypt", "oaep4096", _body(b64(b"\x00" * 512)), "INVALID_ARGUMENT", "decryption failed",
     _dec("oaep4096", ciphertext=b"\x00" * 512), True),
    ("another-keys-ciphertext", "decrypt", "oaep3072", _body(), "INVALID_ARGUMENT", "decryption failed",
     _dec("oaep3072"), True),
    ("no-ciphertext", "decrypt", "oaep2048", lambda cts: {"algorithm": RSA_OAEP}, "INVALID_ARGUMENT",
     "ciphertext is required", None, True),
    ("ciphertext-not-base64", "decrypt", "oaep2048", _body(MARKER + "!*"), "INVALID_ARGUMENT",
     "ciphertext: not base64", None, True),
    ("no-such-version", "decrypt", "oaep2048", _body(key_version=9), "NOT_FOUND", None,
     _dec("oaep2048", key_version=9), True),
    ("key-version-without-algorithm", "decrypt", "aes", _body("aes", None, key_version=1), "INVALID_ARGUMENT",
     VERSION_WITHOUT_RSA, _dec("aes", "aes", raw=True, algorithm=0, key_version=1), True),
    ("key-version-with-unspecified", "decrypt", "oaep2048",
     _body(algorithm="ENCRYPTION_ALGORITHM_UNSPECIFIED", key_version=1), "INVALID_ARGUMENT", VERSION_WITHOUT_RSA,
     _dec("oaep2048", raw=True, algorithm=0, key_version=1), True),
    ("key-version-negative", "decrypt", "oaep2048", _body(key_version=-1), "INVALID_ARGUMENT",
     "key_version: expected a whole number 0..=4294967295", None, True),
    ("key-version-over-u32", "decrypt", "oaep2048", _body(key_version=2 ** 32), "INVALID_ARGUMENT",
     "key_version: expected a whole number 0..=4294967295", None, True),
    ("key-version-wrong-type", "decrypt", "oaep2048", _body(key_version=MARKER), "INVALID_ARGUMENT",
     ("key_version",), None, True),
    # gRPC takes a number, so its text names the number: only the code is compared
    ("algorithm-unknown", "decrypt", "oaep2048", _body(algorithm=MARKER), "INVALID_ARGUMENT", NOT_AN_ALGORITHM,
     _dec("oaep2048", raw=True, algorithm=7), False),
    ("algorithm-the-cli-spelling", "decrypt", "oaep2048", _body(algorithm="rsaes-oaep-sha256"), "INVALID_ARGUMENT",
     NOT_AN_ALGORITHM, None, True),
    ("algorithm-without-prefix", "decrypt", "oaep2048", _body(algorithm="RSAES_OAEP_SHA_256"), "INVALID_ARGUMENT",
     NOT_AN_ALGORITHM, None, True),
    ("algorithm-a-number", "decrypt", "oaep2048", _body(algorithm=1), "INVALID_ARGUMENT",
     "algorithm: expected a string", None, True),
    # each format needs its key type
    ("rsa-ciphertext-without-algorithm", "decrypt", "oaep2048", _body(algorithm=None), "FAILED_PRECONDITION",
     ("key ", " is an rsa-oaep-2048 key; ", "this operation needs an aes-256 key"), _dec("oaep2048", algorithm=0),
     True),
    ("algorithm-on-aes", "decrypt", "aes", _body("aes"), "FAILED_PRECONDITION", (OAEP_WANTED,), _dec("aes", "aes"),
     True),
    ("algorithm-on-rsa-signing-key", "decrypt", "rsa", _body(), "FAILED_PRECONDITION", (OAEP_WANTED,), _dec("rsa"),
     True),
    ("algorithm-on-hmac", "decrypt", "hmac256", _body(), "FAILED_PRECONDITION", (OAEP_WANTED,), _dec("hmac256"),
     True),
    ("algorithm-on-secret", "decrypt", "secret", _body(), "FAILED_PRECONDITION", (OAEP_WANTED,), _dec("secret"),
     True),
    ("missing-key", "decrypt", KEY_MISSING, _body(), "NOT_FOUND", f"key {KEY_MISSING} not found", _dec(KEY_MISSING),
     True),
    ("not-an-id", "decrypt", "not-an-id", _body(), "INVALID_ARGUMENT", ("32 hex digits",), _dec("not-an-id"), True),
    ("denied", "decrypt", "denied_oaep", _body(), "PERMISSION_DENIED", "IPv4 authentication failed",
     _dec("denied_oaep"), True),
    ("disabled", "decrypt", "disabled_oaep", _body(), "FAILED_PRECONDITION", ("disabled",), _dec("disabled_oaep"),
     True),
    # an RSA encryption key does nothing else
    ("sign", "sign", "oaep2048", lambda cts: {"message": b64(b"x")}, "FAILED_PRECONDITION",
     ("needs a signing key",), lambda c, s, cts: c.sign(s.keys["oaep2048"], b"x"), True),
    ("encrypt", "encrypt", "oaep2048", lambda cts: {"plaintext": b64(b"x")}, "FAILED_PRECONDITION",
     ("needs an aes-256 key",), lambda c, s, cts: c.encrypt(s.keys["oaep2048"], b"x"), True),
    ("re-encrypt", "re-encrypt", "oaep2048", lambda cts: {"ciphertext": b64(cts["aes"])}, "FAILED_PRECONDITION",
     ("needs an aes-256 key",), lambda c, s, cts: c.re_encrypt(s.keys["oaep2048"], cts["aes"]), True),
    ("generate-data-key", "generate-data-key", "oaep2048", lambda cts: {}, "FAILED_PRECONDITION",
     ("needs an aes-256 key",), lambda c, s, cts: c.generate_data_key(s.keys["oaep2048"]), True),
    ("generate-mac", "generate-mac", "oaep2048", lambda cts: {"message": b64(b"x")}, "FAILED_PRECONDITION",
     (HMAC_WANTED,), lambda c, s, cts: c.generate_mac(s.keys["oaep2048"], b"x"), True),
    # the public key: every asymmetric type, rsa-oaep-* among them, and nothing else
    ("public-key-of-aes", "public-key", "aes", None, "FAILED_PRECONDITION",
     ("needs an asymmetric key (ed25519, ecdsa-*, rsa-*, ml-dsa-*, rsa-oaep-*)",),
     lambda c, s, cts: c.get_public_key(s.keys["aes"]), True),
    ("public-key-no-such-version", "public-key", "oaep3072", None, "NOT_FOUND", None,
     lambda c, s, cts: c.get_public_key(s.keys["oaep3072"], 2), True),
]


@pytest.mark.parametrize("case", OAEP_ERRORS, ids=[c[0] for c in OAEP_ERRORS])
def test_rsa_oaep_refusals_in_the_v1_error_shape(stack, grpc_client, oaep_cts, case):
    _, route, key, body, code, message, grpc_call, same_text = case
    if route == "public-key":
        params = {"key_version": 2} if case[0] == "public-key-no-such-version" else None
        doc = v1(stack, "GET", route, key, status=HTTP[code], params=params)
    else:
        doc = v1(stack, "POST", route, key, body(oaep_cts), status=HTTP[code])
    assert_shape(doc, v1_error(code))
    text = doc["error"]["message"]
    if isinstance(message, str):
        assert text == message
    elif isinstance(message, tuple):
        assert all(part in text for part in message), text
    if grpc_call is not None:
        grpc_code, grpc_text = grpc_message(lambda: grpc_call(grpc_client, stack, oaep_cts))
        assert grpc_code == code, (grpc_code, grpc_text)
        if same_text:
            assert grpc_text == text, "differs from gRPC"


def test_batch_decrypt_takes_no_rsa_fields(stack, grpc_client, oaep_cts):
    """Batch items are SKM's own format: an RSA field refuses the whole call on both planes (in REST's words,
    an unknown field); an RSA key's item without them fails alone, as a single Decrypt would."""
    from skm.api.v1 import api_pb2

    o, a = stack.keys["oaep2048"], stack.keys["aes"]
    good = {"key_id": a, "ciphertext": b64(oaep_cts["aes"])}
    for field_name, value, grpc_field in (("algorithm", RSA_OAEP, {"algorithm": 1}),
                                          ("key_version", 1, {"key_version": 1})):
        body = {"items": [good, {"key_id": o, "ciphertext": b64(oaep_cts["rsa"]), field_name: value}]}
        r = stack.call("POST", "/v1/batch/decrypt", json_body=body)
        assert r.status_code == 400, r.text
        assert_common_headers(r)
        schema_check("POST", "/v1/batch/decrypt", 400, r.json())
        assert_shape(r.json(), v1_error("INVALID_ARGUMENT", f"items[1]: unknown field `{field_name}`"))
        items = [api_pb2.DecryptRequest(key_id=a, ciphertext=oaep_cts["aes"]),
                 api_pb2.DecryptRequest(key_id=o, ciphertext=oaep_cts["rsa"], **grpc_field)]
        request = api_pb2.BatchDecryptRequest(items=items)
        code, text = grpc_message(lambda: grpc_raw(grpc_client, "BatchDecrypt", request))
        assert code == "INVALID_ARGUMENT" and text.startswith(f"{field_name}: "), text

    r = stack.call("POST", "/v1/batch/decrypt",
                   json_body={"items": [good, {"key_id": o, "ciphertext": b64(oaep_cts["rsa"])}]})
    assert r.status_code == 200, r.text
    doc = r.json()
    schema_check("POST", "/v1/batch/decrypt", 200, doc)
    assert doc["results"][0] == {"ok": {"plaintext": b64(b"refused"), "key_version": 1}}
    err = doc["results"][1]["error"]
    grpc = grpc_client.batch_decrypt([(a, oaep_cts["aes"]), (o, oaep_cts["rsa"])])
    assert grpc[0] == skm.Decrypted(b"refused", 1)
    assert (err["code_name"], err["message"]) == (grpc[1].code_name, grpc[1].message)
    assert err["code_name"] == "FAILED_PRECONDITION" and "needs an aes-256 key" in err["message"]


def test_rsa_oaep_decrypts_are_audited_as_decrypt(stack, grpc_client):
    from test_audit import application, audit, front_end

    name = "audit_oaep"
    key = stack.keys[name]
    ct = oaep_encrypt(grpc_client.get_public_key(key).pem, b"audited")
    assert rest_decrypt(stack, name, ct)["key_version"] == 1
    assert grpc_client.decrypt_rsa_oaep(key, ct).key_version == 1
    rest_decrypt(stack, name, flipped(ct), status=400)
    grpc_message(lambda: grpc_client.decrypt_rsa_oaep(key, ct, key_version=9))
    decrypts = [(e["result"], front_end(e)) + ((e["key_version"],) if e["result"] == "allowed" else ())
                for e in application(audit(stack, name)) if e["operation"] != "GetPublicKey"]
    assert decrypts[0] == ("allowed", "rest", 1) and decrypts[1] == ("allowed", "grpc", 1), decrypts
    assert decrypts[2][:2] == ("failed: INVALID_ARGUMENT", "rest"), decrypts
    assert decrypts[3][:2] == ("failed: NOT_FOUND", "grpc"), decrypts
    ops = {e["operation"] for e in application(audit(stack, name))}
    assert ops == {"GetPublicKey", "Decrypt"}, ops
