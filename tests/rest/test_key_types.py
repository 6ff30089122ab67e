"""The key types of issue 17 on /v1, beyond their contract rows: MACs of the
three HMAC types across planes (a tag made over REST verifies over gRPC and
the reverse; HMAC is deterministic, so both planes give the same tag), their
refusals in the /v1 error shape with gRPC's code and text, and ECDSA P-384 /
ML-DSA-65 signatures made over REST verified over gRPC and with
`cryptography` from the public key REST hands out, and the reverse. Every
answer is also checked against its schema in kms-api/openapi/v1.json."""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import jsonschema
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

import skm
from conftest import B64, HTTP, MARKER, Stack, assert_common_headers, assert_shape, b64, grpc_message, unb64, v1_error
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
