"""The key types of issue 17 through skm.Client against the real stack: HMAC
keys (GenerateMac / VerifyMac; the key material never leaves SKM, so a tag is
checked by its properties and by the server, not recomputed here), ECDSA
P-384 and ML-DSA signatures, each checked with the `cryptography` library
from the exported public key alone."""

from __future__ import annotations

import hashlib

import grpc
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

import skm

A = skm.SignatureAlgorithm
HMACS = [("hmac256", "hmac-sha256", 32), ("hmac384", "hmac-sha384", 48), ("hmac512", "hmac-sha512", 64)]
MLDSAS = [
    ("mldsa44", "ml-dsa-44", 2420, mldsa.MLDSA44PublicKey),
    ("mldsa65", "ml-dsa-65", 3309, mldsa.MLDSA65PublicKey),
    ("mldsa87", "ml-dsa-87", 4627, mldsa.MLDSA87PublicKey),
]


def flipped(tag: bytes, i: int = 0) -> bytes:
    return tag[:i] + bytes([tag[i] ^ 1]) + tag[i + 1:]


@pytest.mark.parametrize("name,algorithm,size", HMACS, ids=[h[1] for h in HMACS])
def test_mac_generate_and_verify(client, stack, name, algorithm, size):
    key = stack.keys[name]
    message = b"an HMAC over this message"
    tag = client.generate_mac(key, message)
    assert isinstance(tag, skm.Mac) and (len(tag.mac), tag.key_version, tag.algorithm) == (size, 1, algorithm)
    # HMAC is deterministic: the same message and version give the same tag; another message another tag
    assert client.generate_mac(key, message) == tag
    assert client.generate_mac(key, message + b"!").mac != tag.mac
    assert client.verify_mac(key, tag.mac, message) == skm.Verified(True, 1)
    assert client.verify_mac(key, tag.mac, message, key_version=1) == skm.Verified(True, 1)
    # a wrong tag is an answer, not an error
    assert client.verify_mac(key, flipped(tag.mac), message) == skm.Verified(False, 0)
    assert not client.verify_mac(key, flipped(tag.mac, size - 1), message)
    for truncated in (tag.mac[:-1], tag.mac[:16], tag.mac[:1], b""):
        assert client.verify_mac(key, truncated, message) == skm.Verified(False, 0), len(truncated)
    if size < 64:  # longer than the tag yet within the 64-byte limit: just not valid
        assert not client.verify_mac(key, tag.mac + b"\x00", message).valid
    assert not client.verify_mac(key, tag.mac, message + b"!").valid
    assert not client.verify_mac(key, tag.mac, b"").valid
    # the edges of the message limit
    assert len(client.generate_mac(key, b"").mac) == size
    big = client.generate_mac(key, b"m" * 4096)
    assert len(big.mac) == size and client.verify_mac(key, big.mac, b"m" * 4096).valid


def test_mac_keys_are_distinct(client, stack):
    """The same message under two keys of one algorithm: different tags, neither verifies with the other key."""
    a, b = stack.keys["hmac256"], stack.keys["hmac_rot"]
    message = b"same message"
    ta, tb = client.generate_mac(a, message), client.generate_mac(b, message)
    assert ta.mac != tb.mac
    assert not client.verify_mac(a, tb.mac, message).valid
    assert not client.verify_mac(b, ta.mac, message).valid
    # a SHA-512 tag cut to 32 bytes is no SHA-256 tag
    t512 = client.generate_mac(stack.keys["hmac512"], message).mac
    assert not client.verify_mac(a, t512[:32], message).valid


def test_mac_after_rotation(client, stack):
    key = stack.keys["hmac_rot"]
    message = b"made before the rotation"
    old = client.generate_mac(key, message)
    assert old.key_version == 1
    stack.skm("key", "rotate", key)
    new = client.generate_mac(key, message)
    assert (new.key_version, new.algorithm) == (2, "hmac-sha256") and new.mac != old.mac
    # the old tag still verifies: with any retained version (0) and with version 1, not with version 2
    assert client.verify_mac(key, old.mac, message) == skm.Verified(True, 1)
    assert client.verify_mac(key, old.mac, message, key_version=0) == skm.Verified(True, 1)
    assert client.verify_mac(key, old.mac, message, key_version=1) == skm.Verified(True, 1)
    assert client.verify_mac(key, old.mac, message, key_version=2) == skm.Verified(False, 0)
    assert client.verify_mac(key, new.mac, message) == skm.Verified(True, 2)
    assert client.verify_mac(key, new.mac, message, key_version=1) == skm.Verified(False, 0)
    with pytest.raises(skm.NotFound) as info:
        client.verify_mac(key, new.mac, message, key_version=3)
    assert info.value.message == f"key {key} has no version 3"


def test_mac_refusals(client, stack):
    k = stack.keys
    h = k["hmac256"]
    cases = [
        (lambda: client.generate_mac(h, b"x" * 4097), skm.InvalidArgument, "message is 4097 bytes; the limit is 4096"),
        (lambda: client.verify_mac(h, b"\x00" * 32, b"x" * 4097), skm.InvalidArgument,
         "message is 4097 bytes; the limit is 4096"),
        (lambda: client.verify_mac(h, b"\x00" * 65, b"x"), skm.InvalidArgument, "mac is 65 bytes; the limit is 64"),
        (lambda: client.generate_mac(k["ed"], b"x"), skm.FailedPrecondition, "this operation needs an hmac key"),
        (lambda: client.verify_mac(k["p384"], b"\x00" * 32, b"x"), skm.FailedPrecondition,
         "this operation needs an hmac key"),
        (lambda: client.generate_mac(k["aes"], b"x"), skm.FailedPrecondition, "this operation needs an hmac key"),
        (lambda: client.generate_mac(k["secret"], b"x"), skm.FailedPrecondition, "this operation needs an hmac key"),
        (lambda: client.generate_mac("0" * 32, b"x"), skm.NotFound, f"key {'0' * 32} not found"),
        (lambda: client.generate_mac("not-an-id", b"x"), skm.InvalidArgument, "32 hex digits"),
        (lambda: client.generate_mac(k["denied_hmac"], b"x"), skm.PermissionDenied, "IPv4"),
        (lambda: client.verify_mac(k["denied_hmac"], b"\x00" * 32, b"x"), skm.PermissionDenied, "IPv4"),
        # an HMAC key does nothing else
        (lambda: client.sign(h, b"x"), skm.FailedPrecondition, "needs an asymmetric key"),
        (lambda: client.verify(h, b"\x00" * 32, b"x"), skm.FailedPrecondition, "needs an asymmetric key"),
        (lambda: client.get_public_key(h), skm.FailedPrecondition, "needs an asymmetric key"),
        (lambda: client.encrypt(h, b"x"), skm.FailedPrecondition, "needs an aes-256 key"),
        (lambda: client.get_secret(h), skm.FailedPrecondition, "needs a secret"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc) as info:
            call()
        assert text in info.value.message, (exc, info.value)
        assert info.value.code == exc.code


def p384_key(client, key):
    pub = client.get_public_key(key)
    assert (pub.key_algorithm, pub.key_version) == ("ecdsa-p384", 1)
    public = serialization.load_pem_public_key(pub.pem.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1"
    assert public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        pub.spki_der
    return public


def test_p384_signatures_verify_with_cryptography(client, stack):
    key = stack.keys["p384"]
    public = p384_key(client, key)
    message = b"signed with ECDSA P-384"
    ecdsa = ec.ECDSA(hashes.SHA384())
    for algorithm in (A.UNSPECIFIED, A.ECDSA_SHA384):
        sig = client.sign(key, message, algorithm=algorithm)
        assert (sig.algorithm, sig.key_version) == (A.ECDSA_SHA384, 1)
        r, s = decode_dss_signature(sig.signature)  # ASN.1 DER, as the proto says
        assert 0 < r and 0 < s
        public.verify(sig.signature, message, ecdsa)
        with pytest.raises(InvalidSignature):
            public.verify(sig.signature, message + b"!", ecdsa)
        assert client.verify(key, sig.signature, message) == skm.Verified(True, 1)
        assert client.verify(key, sig.signature, message, algorithm=A.ECDSA_SHA384, key_version=1).valid
        assert not client.verify(key, sig.signature, message + b"!").valid


def test_p384_digest_mode(client, stack):
    key = stack.keys["p384"]
    public = p384_key(client, key)
    message = b"hashed here with SHA-384"
    digest = hashlib.sha384(message).digest()
    sig = client.sign(key, digest=digest, algorithm=A.ECDSA_SHA384)
    assert sig.algorithm == A.ECDSA_SHA384
    public.verify(sig.signature, message, ec.ECDSA(hashes.SHA384()))
    public.verify(sig.signature, digest, ec.ECDSA(Prehashed(hashes.SHA384())))
    # the key's default algorithm takes the digest too; either input verifies on the server
    default = client.sign(key, digest=digest)
    public.verify(default.signature, message, ec.ECDSA(hashes.SHA384()))
    assert client.verify(key, sig.signature, digest=digest).valid
    assert client.verify(key, default.signature, message).valid
    assert not client.verify(key, sig.signature, digest=hashlib.sha384(b"other").digest()).valid


def test_p384_refusals(client, stack):
    k = stack.keys
    cases = [
        (lambda: client.sign(k["p384"], digest=hashlib.sha256(b"m").digest()), skm.InvalidArgument,
         "a SHA-384 digest is 48 bytes; got 32"),
        (lambda: client.sign(k["p384"], b"m", algorithm=A.ECDSA_SHA256), skm.FailedPrecondition, "does not fit"),
        (lambda: client.sign(k["p384"], b"m", algorithm=A.ML_DSA), skm.FailedPrecondition, "does not fit"),
        (lambda: client.sign(k["ec"], b"m", algorithm=A.ECDSA_SHA384), skm.FailedPrecondition, "does not fit"),
        (lambda: client.sign(k["ec"], digest=hashlib.sha384(b"m").digest()), skm.InvalidArgument,
         "a SHA-256 digest is 32 bytes; got 48"),
        (lambda: client.sign(k["p384"], b"x" * 4097), skm.InvalidArgument, "4096"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc) as info:
            call()
        assert text in info.value.message, (exc, info.value)


@pytest.mark.parametrize("name,kind,size,public_type", MLDSAS, ids=[m[1] for m in MLDSAS])
def test_ml_dsa_signatures(client, stack, name, kind, size, public_type):
    key = stack.keys[name]
    message = b"signed with pure ML-DSA"
    sig = client.sign(key, message)
    assert (len(sig.signature), sig.algorithm, sig.key_version) == (size, A.ML_DSA, 1)
    explicit = client.sign(key, message, algorithm=A.ML_DSA)
    assert len(explicit.signature) == size
    assert explicit.signature != sig.signature, "hedged signing: fresh randomness in each signature"
    for s in (sig, explicit):
        assert client.verify(key, s.signature, message) == skm.Verified(True, 1)
        assert client.verify(key, s.signature, message, algorithm=A.ML_DSA, key_version=1).valid
    assert client.verify(key, sig.signature, message + b"!") == skm.Verified(False, 0)
    assert not client.verify(key, flipped(sig.signature, 100), message).valid
    assert not client.verify(key, sig.signature[:-1], message).valid

    # locally from the exported public key: FIPS 204 pure ML-DSA with the empty context
    pub = client.get_public_key(key)
    assert (pub.key_algorithm, pub.key_version) == (kind, 1)
    public = serialization.load_pem_public_key(pub.pem.encode())
    assert isinstance(public, public_type)
    assert public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        pub.spki_der
    for s in (sig, explicit):
        public.verify(s.signature, message)
        public.verify(s.signature, message, b"")
    with pytest.raises(InvalidSignature):
        public.verify(sig.signature, message + b"!")
    with pytest.raises(InvalidSignature):
        public.verify(sig.signature, message, b"a context")  # the server signs with none

    # messages only: a digest is refused whatever its length, for Sign and Verify alike
    for digest in (hashlib.sha256(message).digest(), hashlib.sha384(message).digest()):
        with pytest.raises(skm.FailedPrecondition) as info:
            client.sign(key, digest=digest)
        assert info.value.message == f"{kind} keys sign messages, not digests"
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert str(info.value) == f"FAILED_PRECONDITION: {kind} keys sign messages, not digests"
    with pytest.raises(skm.FailedPrecondition) as info:
        client.verify(key, sig.signature, digest=hashlib.sha256(message).digest())
    assert info.value.message == f"{kind} keys sign messages, not digests"


def test_ml_dsa_refusals(client, stack):
    k = stack.keys
    cases = [
        (lambda: client.sign(k["mldsa65"], b"m", algorithm=A.ED25519), skm.FailedPrecondition, "does not fit"),
        (lambda: client.sign(k["mldsa65"], b"m", algorithm=A.ECDSA_SHA384), skm.FailedPrecondition, "does not fit"),
        (lambda: client.sign(k["ed"], b"m", algorithm=A.ML_DSA), skm.FailedPrecondition, "does not fit"),
        (lambda: client.sign(k["rsa"], b"m", algorithm=A.ML_DSA), skm.FailedPrecondition, "does not fit"),
        (lambda: client.sign(k["mldsa65"], b"x" * 4097), skm.InvalidArgument, "4096"),
        (lambda: client.generate_mac(k["mldsa65"], b"m"), skm.FailedPrecondition, "this operation needs an hmac key"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc) as info:
            call()
        assert text in info.value.message, (exc, info.value)


def test_new_signature_algorithms_are_the_proto_values():
    from skm.api.v1 import api_pb2

    assert A.ECDSA_SHA384 == api_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA384 == 5
    assert A.ML_DSA == api_pb2.SIGNATURE_ALGORITHM_ML_DSA == 6
    assert skm.Mac(b"t", 1, "hmac-sha256") == skm.Mac(b"t", 1, "hmac-sha256")
    with pytest.raises(AttributeError):
        skm.Mac(b"t", 1, "hmac-sha256").mac = b"u"  # type: ignore[misc]
