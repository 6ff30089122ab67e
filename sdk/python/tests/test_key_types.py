"""The key types of issue 17 through skm.Client against the real stack: HMAC
keys (GenerateMac / VerifyMac; the key material never leaves SKM, so a tag is
checked by its properties and by the server, not recomputed here), ECDSA
P-384 and ML-DSA signatures, each checked with the `cryptography` library
from the exported public key alone, and RSA-OAEP encryption keys: the
`cryptography` library encrypts with the exported public key, only SKM
decrypts (decrypt_rsa_oaep)."""

from __future__ import annotations

import base64
import hashlib
import os

import grpc
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

import skm

A = skm.SignatureAlgorithm
HMACS = [("hmac256", "hmac-sha256", 32), ("hmac384", "hmac-sha384", 48), ("hmac512", "hmac-sha512", 64)]
MLDSAS = [
    ("mldsa44", "ml-dsa-44", 2420, mldsa.MLDSA44PublicKey),
    ("mldsa65", "ml-dsa-65", 3309, mldsa.MLDSA65PublicKey),
    ("mldsa87", "ml-dsa-87", 4627, mldsa.MLDSA87PublicKey),
]


# (key name, type, ciphertext bytes = modulus, largest plaintext = modulus - 2*32 - 2)
OAEPS = [
    ("oaep2048", "rsa-oaep-2048", 256, 190),
    ("oaep3072", "rsa-oaep-3072", 384, 318),
    ("oaep4096", "rsa-oaep-4096", 512, 446),
]
OAEP_WANTED = "this operation needs an rsa-oaep-* key (with algorithm RSAES_OAEP_SHA_256)"


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
        (lambda: client.sign(h, b"x"), skm.FailedPrecondition, "needs a signing key"),
        (lambda: client.verify(h, b"\x00" * 32, b"x"), skm.FailedPrecondition, "needs a signing key"),
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


@pytest.mark.parametrize("name,kind,size,public_type", MLDSAS, ids=[m[1] for m in MLDSAS])
def test_ml_dsa_external_mu(client, stack, name, kind, size, public_type):
    key = stack.keys[name]
    pub = client.get_public_key(key)
    message = b"a release of any size " * 10_000  # far over Sign's 4096-byte message limit
    mu = skm.external_mu(pub.spki_der, message)
    assert len(mu) == 64
    sig = client.sign(key, mu=mu)
    assert (len(sig.signature), sig.algorithm, sig.key_version) == (size, A.ML_DSA, 1)
    # the signature is the message's own: `cryptography` verifies it over the message itself
    public = serialization.load_pem_public_key(pub.pem.encode())
    public.verify(sig.signature, message)
    assert client.verify(key, sig.signature, mu=mu) == skm.Verified(True, 1)
    assert client.verify(key, client.sign(key, b"short").signature, mu=skm.external_mu(pub.spki_der, b"short")).valid
    assert not client.verify(key, sig.signature, mu=bytes(64)).valid
    with pytest.raises(skm.InvalidArgument) as info:
        client.sign(key, mu=mu[:32])
    assert info.value.message == "an external mu is 64 bytes; got 32"
    with pytest.raises(ValueError):
        client.sign(key, b"m", mu=mu)


def test_external_mu_is_for_ml_dsa_keys_only(client, stack):
    with pytest.raises(skm.FailedPrecondition) as info:
        client.sign(stack.keys["ed"], mu=bytes(64))
    assert info.value.message == "ed25519 keys take no external mu (ML-DSA keys only)"
    with pytest.raises(ValueError):
        skm.external_mu(client.get_public_key(stack.keys["ed"]).spki_der, b"m")


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


# ------------------------------------------------------------------ RSA-OAEP

def oaep() -> padding.OAEP:
    """What SKM decrypts: RSAES-OAEP, SHA-256, MGF1-SHA-256, no label."""
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def oaep_public_key(client, key: str, kind: str, size: int, version: int = 1) -> rsa.RSAPublicKey:
    pub = client.get_public_key(key) if version == 1 else client.get_public_key(key, version)
    assert (pub.key_algorithm, pub.key_version) == (kind, version)
    assert pub.pem.startswith("-----BEGIN PUBLIC KEY-----")
    public = serialization.load_pem_public_key(pub.pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    assert (public.key_size, public.public_numbers().e) == (size * 8, 65537)
    assert public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        pub.spki_der
    return public


def decryption_fails(call) -> None:
    """The one opaque answer to every bad RSA ciphertext."""
    with pytest.raises(skm.InvalidArgument) as info:
        call()
    assert info.value.message == "decryption failed"
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("name,kind,size,limit", OAEPS, ids=[o[1] for o in OAEPS])
def test_rsa_oaep_ciphertexts_made_with_cryptography_decrypt(client, stack, name, kind, size, limit):
    key = stack.keys[name]
    public = oaep_public_key(client, key, kind, size)
    for plaintext in (b"made outside SKM", b"", b"\x00", os.urandom(limit), bytes(range(256)) * 2):
        plaintext = plaintext[:limit]
        ct = public.encrypt(plaintext, oaep())
        assert len(ct) == size
        out = client.decrypt_rsa_oaep(key, ct)
        assert isinstance(out, skm.Decrypted) and out == skm.Decrypted(plaintext, 1), len(plaintext)
        assert client.decrypt_rsa_oaep(key, ct, key_version=1) == skm.Decrypted(plaintext, 1)
    # OAEP is randomised: the same plaintext twice gives two ciphertexts, both decrypt
    a, b = public.encrypt(b"same", oaep()), public.encrypt(b"same", oaep())
    assert a != b
    assert client.decrypt_rsa_oaep(key, a).plaintext == client.decrypt_rsa_oaep(key, b).plaintext == b"same"
    # the plaintext limit is the modulus less 66 bytes: one more cannot even be encrypted
    with pytest.raises(ValueError):
        public.encrypt(b"x" * (limit + 1), oaep())


@pytest.mark.parametrize("name,kind,size,limit", OAEPS, ids=[o[1] for o in OAEPS])
def test_rsa_oaep_bad_ciphertexts_are_one_opaque_error(client, stack, name, kind, size, limit):
    key = stack.keys[name]
    public = oaep_public_key(client, key, kind, size)
    ct = public.encrypt(b"tamper with me", oaep())
    bad = [flipped(ct), flipped(ct, size // 2), flipped(ct, size - 1), ct[:-1], ct[1:], b"", b"\x00" * size,
           b"\xff" * size, (ct + b"\x00") if size < 512 else ct[:-2], os.urandom(size)]  # 513 bytes: over the limit
    # another padding or hash: not what SKM decrypts
    bad.append(public.encrypt(b"tamper with me", padding.PKCS1v15()))
    bad.append(public.encrypt(b"tamper with me", padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),
                                                              algorithm=hashes.SHA1(), label=None)))
    bad.append(public.encrypt(b"tamper with me", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                              algorithm=hashes.SHA256(), label=b"a label")))
    for ct_bad in bad:
        decryption_fails(lambda: client.decrypt_rsa_oaep(key, ct_bad))
        decryption_fails(lambda: client.decrypt_rsa_oaep(key, ct_bad, key_version=1))
    # a well-formed ciphertext of another key of the same size; a ciphertext of another SKM key
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=size * 8).public_key()
    decryption_fails(lambda: client.decrypt_rsa_oaep(key, stranger.encrypt(b"tamper with me", oaep())))
    if name != "oaep2048":
        theirs = oaep_public_key(client, stack.keys["oaep2048"], "rsa-oaep-2048", 256).encrypt(b"x", oaep())
        decryption_fails(lambda: client.decrypt_rsa_oaep(key, theirs))
        decryption_fails(lambda: client.decrypt_rsa_oaep(stack.keys["oaep2048"], ct[:256]))
    assert client.decrypt_rsa_oaep(key, ct) == skm.Decrypted(b"tamper with me", 1), "still fine untouched"


def test_rsa_oaep_after_rotation(client, stack):
    """An RSA ciphertext names no version: after a rotation, one made with the version-1 public key
    needs key_version=1; one made with the new public key decrypts with the newest (0)."""
    key = stack.keys["oaep_rot"]
    v1 = oaep_public_key(client, key, "rsa-oaep-2048", 256)
    old = v1.encrypt(b"encrypted before the rotation", oaep())
    assert client.decrypt_rsa_oaep(key, old) == skm.Decrypted(b"encrypted before the rotation", 1)
    stack.skm("key", "rotate", key)

    v2 = oaep_public_key(client, key, "rsa-oaep-2048", 256, version=2)
    assert client.get_public_key(key) == client.get_public_key(key, 2)
    assert client.get_public_key(key, 1).spki_der == \
        v1.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert v2.public_numbers() != v1.public_numbers(), "version 2 is a new key pair"

    decryption_fails(lambda: client.decrypt_rsa_oaep(key, old))  # the newest, version 2, is not its key
    decryption_fails(lambda: client.decrypt_rsa_oaep(key, old, key_version=2))
    assert client.decrypt_rsa_oaep(key, old, key_version=1) == skm.Decrypted(b"encrypted before the rotation", 1)

    new = v2.encrypt(b"encrypted after the rotation", oaep())
    assert client.decrypt_rsa_oaep(key, new) == skm.Decrypted(b"encrypted after the rotation", 2)
    assert client.decrypt_rsa_oaep(key, new, key_version=0) == skm.Decrypted(b"encrypted after the rotation", 2)
    assert client.decrypt_rsa_oaep(key, new, key_version=2) == skm.Decrypted(b"encrypted after the rotation", 2)
    decryption_fails(lambda: client.decrypt_rsa_oaep(key, new, key_version=1))
    with pytest.raises(skm.NotFound) as info:
        client.decrypt_rsa_oaep(key, new, key_version=3)
    assert info.value.message == f"key {key} has no version 3"

    # the CLI decrypts the same ciphertexts (base64 on stdin), --version as key_version
    cli = ("decrypt", key, "--algorithm", "rsaes-oaep-sha256")
    assert stack.skm(*cli, "--version", "1", stdin=base64.b64encode(old)) == "encrypted before the rotation"
    assert stack.skm(*cli, stdin=base64.b64encode(new)) == "encrypted after the rotation"


def test_rsa_oaep_refusals(client, stack):
    k = stack.keys
    o = k["oaep2048"]
    ct = serialization.load_pem_public_key(client.get_public_key(o).pem.encode()).encrypt(b"x", oaep())
    aes_ct = client.encrypt(k["aes"], b"x").ciphertext
    cases = [
        (lambda: client.decrypt_rsa_oaep(o, b"\x00" * 513), skm.InvalidArgument,
         "ciphertext is 513 bytes; the limit is 512"),
        (lambda: client.decrypt_rsa_oaep(o, ct, key_version=2), skm.NotFound, f"key {o} has no version 2"),
        # SKM's own format and RSA each need their own key type
        (lambda: client.decrypt(o, ct), skm.FailedPrecondition, "needs an aes-256 key"),
        (lambda: client.decrypt(o, aes_ct), skm.FailedPrecondition, "needs an aes-256 key"),
        (lambda: client.decrypt_rsa_oaep(k["aes"], ct), skm.FailedPrecondition, OAEP_WANTED),
        (lambda: client.decrypt_rsa_oaep(k["aes"], aes_ct), skm.FailedPrecondition, OAEP_WANTED),
        (lambda: client.decrypt_rsa_oaep(k["rsa"], ct), skm.FailedPrecondition, OAEP_WANTED),
        (lambda: client.decrypt_rsa_oaep(k["hmac256"], ct), skm.FailedPrecondition, OAEP_WANTED),
        (lambda: client.decrypt_rsa_oaep(k["secret"], ct), skm.FailedPrecondition, OAEP_WANTED),
        (lambda: client.decrypt_rsa_oaep(k["disabled_oaep"], ct), skm.FailedPrecondition, "disabled"),
        (lambda: client.decrypt_rsa_oaep(k["denied_oaep"], ct), skm.PermissionDenied, "IPv4"),
        (lambda: client.decrypt_rsa_oaep("0" * 32, ct), skm.NotFound, f"key {'0' * 32} not found"),
        (lambda: client.decrypt_rsa_oaep("not-an-id", ct), skm.InvalidArgument, "32 hex digits"),
        # an RSA encryption key does nothing else: no signing, no SKM-format encryption, no MAC
        (lambda: client.sign(o, b"x"), skm.FailedPrecondition, "needs a signing key"),
        (lambda: client.verify(o, b"\x00" * 256, b"x"), skm.FailedPrecondition, "needs a signing key"),
        (lambda: client.encrypt(o, b"x"), skm.FailedPrecondition, "needs an aes-256 key"),
        (lambda: client.re_encrypt(o, aes_ct), skm.FailedPrecondition, "needs an aes-256 key"),
        (lambda: client.generate_data_key(o), skm.FailedPrecondition, "needs an aes-256 key"),
        (lambda: client.generate_mac(o, b"x"), skm.FailedPrecondition, "needs an hmac key"),
        (lambda: client.get_secret(o), skm.FailedPrecondition, "needs a secret"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc) as info:
            call()
        assert text in info.value.message, (exc, info.value)
        assert info.value.code == exc.code
    # a batch item of an RSA key fails alone, as Decrypt without the algorithm would
    results = client.batch_decrypt([(o, ct), (k["aes"], aes_ct)])
    assert isinstance(results[0], skm.ItemError) and results[0].code_name == "FAILED_PRECONDITION"
    assert "needs an aes-256 key" in results[0].message
    assert results[1] == skm.Decrypted(b"x", 1)
    # decrypt_rsa_oaep takes no AAD (the server refuses one: tests/rest/test_key_types.py)
    with pytest.raises(TypeError):
        client.decrypt_rsa_oaep(o, ct, b"aad")  # type: ignore[misc]


def test_encryption_algorithm_is_the_proto_enum():
    from skm.api.v1 import api_pb2

    E = skm.EncryptionAlgorithm
    assert E.UNSPECIFIED == api_pb2.ENCRYPTION_ALGORITHM_UNSPECIFIED == 0
    assert E.RSAES_OAEP_SHA_256 == api_pb2.ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256 == 1
    assert {e.name for e in E} == {n[len("ENCRYPTION_ALGORITHM_"):] for n in api_pb2.EncryptionAlgorithm.keys()}
    assert "EncryptionAlgorithm" in skm.__all__
    from skm import _calls

    name, request, _ = _calls.decrypt_rsa_oaep("0" * 32, b"ct", 3)
    assert (name, request.algorithm, request.key_version, request.aad) == ("Decrypt", 1, 3, b"")
