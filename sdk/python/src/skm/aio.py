"""The asyncio client of SKM's user plane, on grpc.aio."""

from __future__ import annotations

import asyncio
import io
from typing import Any, BinaryIO, Iterable, List, Optional, Sequence, Tuple, Union

import grpc

from skm import _calls, envelope
from skm.api.v1 import api_pb2_grpc
from skm.credentials import Credentials, PathLike, credentials, from_profile
from skm.errors import DecryptionError, from_rpc_error
from skm.types import (
    DataKey,
    Decrypted,
    Encrypted,
    ItemError,
    Mac,
    PublicKey,
    ReEncrypted,
    Sealed,
    Secret,
    Signature,
    SignatureAlgorithm,
    Verified,
    WhoAmI,
)


class AsyncClient:
    """As ``skm.Client``, on ``grpc.aio``: every call is a coroutine. Make it
    inside a running event loop; ``async with`` or ``await close()``.

    ``Client.from_profile(path)``, or ``Client(address, ca=..., cert=..., key=...)``
    / ``Client(address, ca=..., pkcs12_file=..., pkcs12_password=...)`` with
    PEM bytes or file paths. Use as a context manager, or call ``close()``.

    With ``replicas`` (or a profile's ``user_replicas``: the user ports of
    further kms-api replicas on one etcd store) calls go round every replica
    and fail over to another while one is UNAVAILABLE, for up to 10 s.
    """

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        ca: Union[bytes, PathLike, None] = None,
        cert: Union[bytes, PathLike, None] = None,
        key: Union[bytes, PathLike, None] = None,
        pkcs12_file: Union[bytes, PathLike, None] = None,
        pkcs12_password: Union[str, bytes, None] = None,
        client_mac: Optional[str] = None,
        replicas: Sequence[str] = (),
        timeout: Optional[float] = 30.0,
        credentials_: Optional[Credentials] = None,
        options: Sequence[Tuple[str, Any]] = (),
    ) -> None:
        if credentials_ is None:
            if address is None or ca is None:
                raise ValueError("give address and ca (or use Client.from_profile)")
            credentials_ = credentials(
                address, ca, cert=cert, key=key, pkcs12_file=pkcs12_file,
                pkcs12_password=pkcs12_password, client_mac=client_mac, replicas=replicas,
            )
        self.credentials = credentials_
        self.timeout = timeout
        self._metadata = _calls.metadata(credentials_)
        tls = _calls.channel_credentials(credentials_)
        self._channels = [grpc.aio.secure_channel(a, tls, options=list(options)) for a in credentials_.addresses]
        self._failover = _calls.Failover([api_pb2_grpc.KeyServiceStub(c) for c in self._channels])

    @classmethod
    def from_profile(cls, path: PathLike, **kwargs: Any) -> "AsyncClient":
        """A client from a profile file (``skm dev``'s ``app/profile.toml``)."""
        return cls(credentials_=from_profile(path), **kwargs)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, call: _calls.Call) -> Any:
        name, request, result = call
        failed: Optional[grpc.RpcError] = None
        for stub, pause in self._failover.attempts():
            if pause:
                await asyncio.sleep(pause)
            try:
                response = await getattr(stub, name)(request, metadata=self._metadata, timeout=self.timeout)
            except grpc.RpcError as e:
                failed = e
                if self._failover.retried(e):
                    continue
                break
            return result(response)
        assert failed is not None
        raise from_rpc_error(failed) from None

    async def encrypt(self, key_id: str, plaintext: bytes, aad: bytes = b"") -> Encrypted:
        """Encrypts up to 32 KiB under the newest version of an AES key."""
        return await self._run(_calls.encrypt(key_id, plaintext, aad))

    async def decrypt(self, key_id: str, ciphertext: bytes, aad: bytes = b"") -> Decrypted:
        """Decrypts a ciphertext of the key (opaque InvalidArgument "decryption failed" otherwise)."""
        return await self._run(_calls.decrypt(key_id, ciphertext, aad))

    async def decrypt_rsa_oaep(self, key_id: str, ciphertext: bytes, *, key_version: int = 0) -> Decrypted:
        """Decrypts an RSAES-OAEP-SHA-256 ciphertext (MGF1-SHA-256, empty label) that anyone made
        with an rsa-oaep-* key's public key (``get_public_key``). An RSA ciphertext does not name
        the version that made it: give ``key_version`` for one made before a rotation (0: the
        newest). No AAD. Every failure, a wrong version included, is InvalidArgument
        "decryption failed"."""
        return await self._run(_calls.decrypt_rsa_oaep(key_id, ciphertext, key_version))

    async def generate_data_key(self, key_id: str, aad: bytes = b"") -> DataKey:
        """A fresh 256-bit data key, in the clear and encrypted under the key."""
        return await self._run(_calls.generate_data_key(key_id, aad, True))

    async def generate_data_key_without_plaintext(self, key_id: str, aad: bytes = b"") -> DataKey:
        """A fresh data key, encrypted only (``plaintext`` is None)."""
        return await self._run(_calls.generate_data_key(key_id, aad, False))

    async def re_encrypt(self, key_id: str, ciphertext: bytes, aad: bytes = b"") -> ReEncrypted:
        """Moves a ciphertext to the key's newest version inside SKM."""
        return await self._run(_calls.re_encrypt(key_id, ciphertext, aad))

    async def batch_encrypt(self, items: Iterable[_calls.Item]) -> List[Union[Encrypted, ItemError]]:
        """Encrypts up to 100 ``(key_id, plaintext[, aad])`` items; one result each, in order."""
        return await self._run(_calls.batch_encrypt(items))

    async def batch_decrypt(self, items: Iterable[_calls.Item]) -> List[Union[Decrypted, ItemError]]:
        """Decrypts up to 100 ``(key_id, ciphertext[, aad])`` items; one result each, in order."""
        return await self._run(_calls.batch_decrypt(items))

    async def sign(
        self,
        key_id: str,
        message: Optional[bytes] = None,
        *,
        digest: Optional[bytes] = None,
        algorithm: SignatureAlgorithm = SignatureAlgorithm.UNSPECIFIED,
        mu: Optional[bytes] = None,
    ) -> Signature:
        """Signs a message (≤ 4096 bytes) or a digest (SHA-256; SHA-384 for ECDSA_SHA384) with the
        newest version; ML-DSA and Ed25519 sign messages only, and ML-DSA also an external ``mu``
        (``skm.external_mu``)."""
        return await self._run(_calls.sign(key_id, message, digest, algorithm, mu))

    async def verify(
        self,
        key_id: str,
        signature: bytes,
        message: Optional[bytes] = None,
        *,
        digest: Optional[bytes] = None,
        algorithm: SignatureAlgorithm = SignatureAlgorithm.UNSPECIFIED,
        key_version: int = 0,
        mu: Optional[bytes] = None,
    ) -> Verified:
        """Verifies with one version, or every retained one (0); invalid is ``valid=False``."""
        return await self._run(_calls.verify(key_id, signature, message, digest, algorithm, key_version, mu))

    async def generate_mac(self, key_id: str, message: bytes) -> Mac:
        """The HMAC of a message (≤ 4096 bytes) with the newest version of an HMAC key."""
        return await self._run(_calls.generate_mac(key_id, message))

    async def verify_mac(self, key_id: str, mac: bytes, message: bytes, *, key_version: int = 0) -> Verified:
        """Checks a tag with one version, or the newest 10 (0); a wrong or truncated tag is ``valid=False``."""
        return await self._run(_calls.verify_mac(key_id, message, mac, key_version))

    async def get_public_key(self, key_id: str, key_version: int = 0) -> PublicKey:
        """The SPKI (DER and PEM) of one version (0: the newest)."""
        return await self._run(_calls.get_public_key(key_id, key_version))

    async def get_secret(self, key_id: str, version: int = 0) -> Secret:
        """A secret's value: one version, or the newest (0)."""
        return await self._run(_calls.get_secret(key_id, version))

    async def who_am_i(self) -> WhoAmI:
        """What the server sees of this client (address, MAC, certificate)."""
        return await self._run(_calls.who_am_i())

    # Envelope encryption (skm.envelope has the format).

    async def envelope_encrypt_stream(self, key_id: str, src: BinaryIO, dst: BinaryIO, aad: bytes = b"") -> Sealed:
        """Encrypts ``src`` into an envelope on ``dst``, one 64 KiB chunk in memory at a time
        (the file I/O and local AES-GCM run in the event loop's thread)."""
        dk = await self.generate_data_key(key_id, aad)
        if dk.plaintext is None or len(dk.plaintext) != 32:
            raise DecryptionError("GenerateDataKey returned no 32-byte data key")
        header = envelope.new_header(dk.ciphertext)
        total = envelope.seal_stream(dk.plaintext, header, src, dst)
        return Sealed(header.key_id, dk.key_version, total)

    async def envelope_decrypt_stream(self, src: BinaryIO, dst: BinaryIO, aad: bytes = b"") -> int:
        """Decrypts an envelope from ``src`` to ``dst`` with one Decrypt call; returns the
        plaintext length. On an error, discard what was written to ``dst``."""
        header = envelope.read_header(src)
        data_key = (await self.decrypt(header.key_id, header.wrapped_key, aad)).plaintext
        return envelope.open_stream(data_key, header, src, dst)

    async def envelope_encrypt(self, key_id: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypts bytes into one envelope blob."""
        out = io.BytesIO()
        await self.envelope_encrypt_stream(key_id, io.BytesIO(plaintext), out, aad)
        return out.getvalue()

    async def envelope_decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Opens an envelope blob with one Decrypt call."""
        out = io.BytesIO()
        await self.envelope_decrypt_stream(io.BytesIO(blob), out, aad)
        return out.getvalue()


__all__ = ["AsyncClient"]
