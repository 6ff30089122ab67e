"""Requests and results of every user-plane RPC, shared by the sync and asyncio clients."""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

import hashlib
import time

import grpc

from skm.api.v1 import api_pb2 as pb
from skm.credentials import Credentials
from skm.types import (
    DataKey,
    Decrypted,
    Encrypted,
    EncryptionAlgorithm,
    ItemError,
    Mac,
    PublicKey,
    ReEncrypted,
    Secret,
    Signature,
    SignatureAlgorithm,
    Verified,
    WhoAmI,
)

#: Metadata key of a client-asserted MAC address.
CLIENT_MAC_METADATA = "x-skm-client-mac"

Call = Tuple[str, Any, Callable[[Any], Any]]
Item = Union[Tuple[str, bytes], Tuple[str, bytes, bytes]]


def channel_credentials(c: Credentials) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=c.ca_pem, private_key=c.private_key_pem, certificate_chain=c.cert_chain_pem
    )


#: How long a call is retried on other replicas while they are UNAVAILABLE
#: (as skm-client's ``FAILOVER_FOR``), and the pauses between rounds.
FAILOVER_FOR = 10.0
_FIRST_PAUSE = 0.05
_MAX_PAUSE = 1.0
#: What a replica that is down or went down mid-call answers. Every
#: user-plane call is safe to repeat: reads, and encrypt/decrypt/sign whose
#: effect does not depend on how often they ran.
_FAILOVER_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED)


class Failover:
    """Round robin over the replicas' stubs: each call starts at the next
    replica and, with more than one, moves on to the others while they answer
    UNAVAILABLE (or UNKNOWN or CANCELLED: the connection broke mid-call) for up to
    ``FAILOVER_FOR`` seconds, pausing between rounds (50 ms, doubling to 1 s).
    With one replica a call is sent once."""

    def __init__(self, stubs: Sequence[Any]) -> None:
        self.stubs = list(stubs)
        self._next = 0

    def attempts(self) -> Iterable[Tuple[Any, float]]:
        """(stub, pause before trying it) for as long as a call may go on."""
        start = self._next
        self._next = (self._next + 1) % len(self.stubs)
        yield self.stubs[start], 0.0
        if len(self.stubs) == 1:
            return
        deadline = time.monotonic() + FAILOVER_FOR
        pause, n = _FIRST_PAUSE, 1
        while True:
            wait = 0.0
            if n % len(self.stubs) == 0:
                wait, pause = pause, min(pause * 2, _MAX_PAUSE)
            if time.monotonic() + wait > deadline:
                return
            yield self.stubs[(start + n) % len(self.stubs)], wait
            n += 1

    @staticmethod
    def retried(e: grpc.RpcError) -> bool:
        return e.code() in _FAILOVER_CODES


def metadata(c: Credentials) -> Optional[Sequence[Tuple[str, str]]]:
    return ((CLIENT_MAC_METADATA, c.client_mac),) if c.client_mac else None


def _signed(message: Optional[bytes], digest: Optional[bytes], mu: Optional[bytes] = None) -> dict:
    given = {k: v for k, v in (("message", message), ("digest", digest), ("mu", mu)) if v is not None}
    if len(given) != 1:
        raise ValueError("give exactly one of message, digest or mu")
    return given


# The raw public key's length at the end of an ML-DSA SPKI, by parameter set.
_ML_DSA_PUBLIC_LEN = {1312, 1952, 2592}


def external_mu(spki_der: bytes, message: bytes) -> bytes:
    """FIPS 204's external mu of ``message`` for the ML-DSA public key ``spki_der`` (pure ML-DSA, empty
    context): SHAKE256(SHAKE256(public key, 64) || 0x00 || 0x00 || message, 64). Sign it with
    ``sign(key_id, mu=...)`` to sign a message of any size by sending 64 bytes."""
    if len(spki_der) - 22 not in _ML_DSA_PUBLIC_LEN:
        raise ValueError("spki_der is not an ML-DSA-44/65/87 public key")
    tr = hashlib.shake_256(spki_der[22:]).digest(64)
    return hashlib.shake_256(tr + b"\x00\x00" + message).digest(64)


def _item_error(e: pb.ItemError) -> ItemError:
    return ItemError(code_name=e.code_name or grpc.StatusCode.UNKNOWN.name, message=e.message)


def _items(items: Iterable[Item]) -> List[Tuple[str, bytes, bytes]]:
    out = []
    for item in items:
        key_id, data = item[0], item[1]
        aad = item[2] if len(item) > 2 else b""  # type: ignore[misc]
        out.append((key_id, data, aad))
    return out


def encrypt(key_id: str, plaintext: bytes, aad: bytes) -> Call:
    return (
        "Encrypt",
        pb.EncryptRequest(key_id=key_id, plaintext=plaintext, aad=aad),
        lambda r: Encrypted(r.ciphertext, r.key_version),
    )


def decrypt(key_id: str, ciphertext: bytes, aad: bytes) -> Call:
    return (
        "Decrypt",
        pb.DecryptRequest(key_id=key_id, ciphertext=ciphertext, aad=aad),
        lambda r: Decrypted(r.plaintext, r.key_version),
    )


def decrypt_rsa_oaep(key_id: str, ciphertext: bytes, key_version: int) -> Call:
    return (
        "Decrypt",
        pb.DecryptRequest(
            key_id=key_id,
            ciphertext=ciphertext,
            algorithm=int(EncryptionAlgorithm.RSAES_OAEP_SHA_256),
            key_version=key_version,
        ),
        lambda r: Decrypted(r.plaintext, r.key_version),
    )


def generate_data_key(key_id: str, aad: bytes, with_plaintext: bool) -> Call:
    name = "GenerateDataKey" if with_plaintext else "GenerateDataKeyWithoutPlaintext"
    return (
        name,
        pb.GenerateDataKeyRequest(key_id=key_id, aad=aad),
        lambda r: DataKey(r.plaintext if with_plaintext else None, r.ciphertext, r.key_version),
    )


def re_encrypt(key_id: str, ciphertext: bytes, aad: bytes) -> Call:
    return (
        "ReEncrypt",
        pb.ReEncryptRequest(key_id=key_id, ciphertext=ciphertext, aad=aad),
        lambda r: ReEncrypted(r.ciphertext, r.source_key_version, r.key_version),
    )


def batch_encrypt(items: Iterable[Item]) -> Call:
    reqs = [pb.EncryptRequest(key_id=k, plaintext=p, aad=a) for k, p, a in _items(items)]

    def result(r: pb.BatchEncryptResponse) -> List[Union[Encrypted, ItemError]]:
        return [
            Encrypted(x.ok.ciphertext, x.ok.key_version) if x.WhichOneof("result") == "ok" else _item_error(x.error)
            for x in r.results
        ]

    return "BatchEncrypt", pb.BatchEncryptRequest(items=reqs), result


def batch_decrypt(items: Iterable[Item]) -> Call:
    reqs = [pb.DecryptRequest(key_id=k, ciphertext=c, aad=a) for k, c, a in _items(items)]

    def result(r: pb.BatchDecryptResponse) -> List[Union[Decrypted, ItemError]]:
        return [
            Decrypted(x.ok.plaintext, x.ok.key_version) if x.WhichOneof("result") == "ok" else _item_error(x.error)
            for x in r.results
        ]

    return "BatchDecrypt", pb.BatchDecryptRequest(items=reqs), result


def sign(
    key_id: str, message: Optional[bytes], digest: Optional[bytes], algorithm: SignatureAlgorithm,
    mu: Optional[bytes] = None,
) -> Call:
    return (
        "Sign",
        pb.SignRequest(key_id=key_id, algorithm=int(algorithm), **_signed(message, digest, mu)),
        lambda r: Signature(r.signature, r.key_version, SignatureAlgorithm(r.algorithm)),
    )


def verify(
    key_id: str,
    signature: bytes,
    message: Optional[bytes],
    digest: Optional[bytes],
    algorithm: SignatureAlgorithm,
    key_version: int,
    mu: Optional[bytes] = None,
) -> Call:
    return (
        "Verify",
        pb.VerifyRequest(
            key_id=key_id,
            signature=signature,
            algorithm=int(algorithm),
            key_version=key_version,
            **_signed(message, digest, mu),
        ),
        lambda r: Verified(r.valid, r.key_version),
    )


def generate_mac(key_id: str, message: bytes) -> Call:
    return (
        "GenerateMac",
        pb.GenerateMacRequest(key_id=key_id, message=message),
        lambda r: Mac(r.mac, r.key_version, r.algorithm),
    )


def verify_mac(key_id: str, message: bytes, mac: bytes, key_version: int) -> Call:
    return (
        "VerifyMac",
        pb.VerifyMacRequest(key_id=key_id, message=message, mac=mac, key_version=key_version),
        lambda r: Verified(r.valid, r.key_version),
    )


def get_public_key(key_id: str, key_version: int) -> Call:
    return (
        "GetPublicKey",
        pb.GetPublicKeyRequest(key_id=key_id, key_version=key_version),
        lambda r: PublicKey(r.spki_der, r.pem, r.key_version, r.key_algorithm),
    )


def get_secret(key_id: str, version: int) -> Call:
    return (
        "GetSecret",
        pb.GetSecretRequest(key_id=key_id, version=version),
        lambda r: Secret(r.value, r.version),
    )


def who_am_i() -> Call:
    return (
        "WhoAmI",
        pb.WhoAmIRequest(),
        lambda r: WhoAmI(
            r.client_ip, r.proxied_by, r.verified_mac, r.asserted_mac, r.certificate_sha256, r.certificate_subject
        ),
    )
