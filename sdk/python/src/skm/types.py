"""The results of SKM calls, as frozen dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Union

from skm.api.v1 import api_pb2 as pb


class SignatureAlgorithm(enum.IntEnum):
    """Signature algorithms (the proto's SignatureAlgorithm values)."""

    #: The key's default: the one algorithm of Ed25519, ECDSA and ML-DSA keys, RSA_PSS_SHA256 for RSA keys.
    UNSPECIFIED = pb.SIGNATURE_ALGORITHM_UNSPECIFIED
    ED25519 = pb.SIGNATURE_ALGORITHM_ED25519
    ECDSA_SHA256 = pb.SIGNATURE_ALGORITHM_ECDSA_SHA256
    #: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32.
    RSA_PSS_SHA256 = pb.SIGNATURE_ALGORITHM_RSA_PSS_SHA256
    RSA_PKCS1_SHA256 = pb.SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256
    #: ECDSA P-384 with SHA-384 (DER); a digest is 48 bytes.
    ECDSA_SHA384 = pb.SIGNATURE_ALGORITHM_ECDSA_SHA384
    #: Pure ML-DSA (FIPS 204), empty context, for ML-DSA-44/65/87 keys: messages only.
    ML_DSA = pb.SIGNATURE_ALGORITHM_ML_DSA


class EncryptionAlgorithm(enum.IntEnum):
    """How a ciphertext given to Decrypt was made (the proto's EncryptionAlgorithm values)."""

    #: SKM's own format (Encrypt, GenerateDataKey) under an aes-256 key.
    UNSPECIFIED = pb.ENCRYPTION_ALGORITHM_UNSPECIFIED
    #: RSAES-OAEP, SHA-256, MGF1-SHA-256, empty label, under an rsa-oaep-* key: made by anyone with its
    #: public key (plaintext at most 190 / 318 / 446 bytes for 2048 / 3072 / 4096 bits).
    RSAES_OAEP_SHA_256 = pb.ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256


@dataclass(frozen=True)
class Encrypted:
    """``0x01 | key id(16) | key version(u32 BE) | nonce(12) | ct+tag``."""

    ciphertext: bytes
    key_version: int


@dataclass(frozen=True)
class Decrypted:
    plaintext: bytes
    key_version: int

    def __repr__(self) -> str:
        return f"Decrypted(plaintext=<{len(self.plaintext)} bytes>, key_version={self.key_version})"


@dataclass(frozen=True)
class DataKey:
    """A data key: ``plaintext`` is None from generate_data_key_without_plaintext."""

    plaintext: Optional[bytes]
    ciphertext: bytes
    key_version: int

    def __repr__(self) -> str:
        shown = "None" if self.plaintext is None else "<32 bytes>"
        return f"DataKey(plaintext={shown}, ciphertext=<{len(self.ciphertext)} bytes>, key_version={self.key_version})"


@dataclass(frozen=True)
class ReEncrypted:
    ciphertext: bytes
    source_key_version: int
    key_version: int


@dataclass(frozen=True)
class Signature:
    signature: bytes
    key_version: int
    algorithm: SignatureAlgorithm


@dataclass(frozen=True)
class Verified:
    valid: bool
    key_version: int

    def __bool__(self) -> bool:
        return self.valid


@dataclass(frozen=True)
class Mac:
    """A full-length HMAC tag (32, 48 or 64 bytes); the key material never leaves SKM."""

    mac: bytes
    key_version: int
    #: "hmac-sha256", "hmac-sha384" or "hmac-sha512".
    algorithm: str


@dataclass(frozen=True)
class PublicKey:
    spki_der: bytes
    pem: str
    key_version: int
    #: "ed25519", "ecdsa-p256", "rsa-2048", "rsa-oaep-2048", ...
    key_algorithm: str


@dataclass(frozen=True)
class Secret:
    value: str
    version: int

    def __repr__(self) -> str:
        return f"Secret(value=<redacted>, version={self.version})"


@dataclass(frozen=True)
class WhoAmI:
    client_ip: str
    proxied_by: str
    verified_mac: str
    asserted_mac: str
    certificate_sha256: str
    certificate_subject: str


@dataclass(frozen=True)
class ItemError:
    """One failed batch item: the code and message the single call would have given."""

    code_name: str
    message: str

    def exception(self) -> Exception:
        import grpc

        from skm.errors import error_for

        return error_for(getattr(grpc.StatusCode, self.code_name, grpc.StatusCode.UNKNOWN), self.message)


BatchResult = Union[Encrypted, ItemError]


@dataclass(frozen=True)
class Sealed:
    """What an envelope was made with."""

    key_id: str
    key_version: int
    plaintext_len: int
