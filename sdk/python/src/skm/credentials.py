"""Where SKM's user port is and which credentials to present there.

The user port is TLS with the deployment CA; a client certificate is
presented only when the keystore's policy asks for one. Credentials come
from a profile file (``skm dev`` writes ``app/profile.toml``, an application
profile without operator certificates) or are given directly, with the
client certificate as PEM files or as the PKCS#12 file that ``skm keystore
issue-cert`` writes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Credentials:
    """Everything a channel to the user port needs."""

    address: str
    ca_pem: bytes
    cert_chain_pem: Optional[bytes] = None
    private_key_pem: Optional[bytes] = None
    client_mac: Optional[str] = None
    #: The user ports of further kms-api replicas (a fleet on etcd): calls go
    #: round ``address`` and these, and fail over between them.
    replicas: Tuple[str, ...] = ()

    @property
    def addresses(self) -> Tuple[str, ...]:
        """``address``, then ``replicas``."""
        return (self.address, *self.replicas)

    def __repr__(self) -> str:
        has_cert = self.cert_chain_pem is not None
        return (
            f"Credentials(address={self.address!r}, replicas={self.replicas!r}, "
            f"client_certificate={has_cert}, client_mac={self.client_mac!r})"
        )


def pkcs12_to_pem(data: bytes, password: Union[str, bytes]) -> Tuple[bytes, bytes]:
    """(certificate chain PEM, private key PEM) from a PKCS#12 file's bytes."""
    if isinstance(password, str):
        password = password.encode()
    key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    if key is None or cert is None:
        raise ValueError("the PKCS#12 file holds no certificate with its private key")
    chain = cert.public_bytes(Encoding.PEM) + b"".join(c.public_bytes(Encoding.PEM) for c in (extra or []))
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return chain, key_pem


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def credentials(
    address: str,
    ca: Union[bytes, PathLike],
    *,
    cert: Union[bytes, PathLike, None] = None,
    key: Union[bytes, PathLike, None] = None,
    pkcs12_file: Union[bytes, PathLike, None] = None,
    pkcs12_password: Union[str, bytes, None] = None,
    client_mac: Optional[str] = None,
    replicas: Sequence[str] = (),
) -> Credentials:
    """Credentials from PEM bytes or file paths; a client certificate as
    ``cert`` + ``key`` (PEM) or ``pkcs12_file`` + ``pkcs12_password``;
    ``replicas``: the user ports of further kms-api replicas."""

    def load(v: Union[bytes, PathLike]) -> bytes:
        return v if isinstance(v, bytes) else _read(os.fspath(v))

    chain = private = None
    if pkcs12_file is not None:
        if cert is not None or key is not None:
            raise ValueError("give the client certificate as cert+key or as pkcs12_file, not both")
        if pkcs12_password is None:
            raise ValueError("pkcs12_file needs pkcs12_password")
        chain, private = pkcs12_to_pem(load(pkcs12_file), pkcs12_password)
    elif cert is not None or key is not None:
        if cert is None or key is None:
            raise ValueError("a PEM client certificate needs both cert and key")
        chain, private = load(cert), load(key)
    return Credentials(address, load(ca), chain, private, client_mac, tuple(replicas))


def from_profile(path: PathLike) -> Credentials:
    """Credentials from a profile (TOML); relative paths are taken from its directory.

    Reads ``ca``, ``user_endpoint``, ``user_replicas``, ``client_mac`` and ``[client]``
    (``cert`` + ``key``, or ``p12`` + ``password_file``); the operator section, if any,
    is not used.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        profile = tomllib.load(f)
    base = os.path.dirname(os.path.abspath(path))

    def at(p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(base, p)

    for field in ("ca", "user_endpoint"):
        if field not in profile:
            raise ValueError(f"profile {path}: no {field}")
    client = profile.get("client") or {}
    kwargs = {}
    if "p12" in client:
        with open(at(client["password_file"]), "rb") as f:
            password = f.read().decode().splitlines()[0] if f else ""
        kwargs = {"pkcs12_file": at(client["p12"]), "pkcs12_password": password}
    elif client:
        kwargs = {"cert": at(client["cert"]), "key": at(client["key"])}
    replicas = profile.get("user_replicas", [])
    if not isinstance(replicas, list) or not all(isinstance(r, str) and r for r in replicas):
        raise ValueError(f"profile {path}: user_replicas must be a list of host:port strings")
    return credentials(
        profile["user_endpoint"], at(profile["ca"]), client_mac=profile.get("client_mac"), replicas=replicas, **kwargs
    )
