"""SKM, the self-hosted Secure Key Manager: a Python client of its user plane.

    import skm
    with skm.Client.from_profile("app/profile.toml") as client:
        ct = client.encrypt(key_id, b"hello").ciphertext
        blob = client.envelope_encrypt(key_id, big_bytes)       # any size, local AES-256-GCM
        assert client.envelope_decrypt(blob) == big_bytes         # one Decrypt call

``skm.AsyncClient`` is the same on ``grpc.aio``. Refusals raise one class per
gRPC code (``skm.PermissionDenied``, ``skm.InvalidArgument``, ...), all
``skm.SkmError``. The generated stubs are ``skm.api.v1.api_pb2`` /
``api_pb2_grpc`` (and ``skm.admin.v1`` for the operator plane).
"""

from skm._calls import external_mu
from skm.aio import AsyncClient
from skm.client import Client
from skm.credentials import Credentials, credentials, from_profile, pkcs12_to_pem
from skm.errors import (
    RETRYABLE,
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    DecryptionError,
    EnvelopeError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    SkmError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from skm.types import (
    DataKey,
    Decrypted,
    Encrypted,
    EncryptionAlgorithm,
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

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "Client", "external_mu", "Credentials", "credentials", "from_profile", "pkcs12_to_pem",
    "RETRYABLE", "Aborted", "AlreadyExists", "Cancelled", "DataLoss", "DeadlineExceeded", "DecryptionError",
    "EnvelopeError", "FailedPrecondition", "Internal", "InvalidArgument", "NotFound", "OutOfRange",
    "PermissionDenied", "ResourceExhausted", "SkmError", "Unauthenticated", "Unavailable", "Unimplemented",
    "Unknown", "DataKey", "Decrypted", "Encrypted", "EncryptionAlgorithm", "ItemError", "Mac", "PublicKey",
    "ReEncrypted", "Sealed", "Secret", "Signature", "SignatureAlgorithm", "Verified", "WhoAmI",
]
