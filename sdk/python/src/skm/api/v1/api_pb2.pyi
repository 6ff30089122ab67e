from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncryptionAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCRYPTION_ALGORITHM_UNSPECIFIED: _ClassVar[EncryptionAlgorithm]
    ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256: _ClassVar[EncryptionAlgorithm]

class SignatureAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNATURE_ALGORITHM_UNSPECIFIED: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_ED25519: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_ECDSA_SHA256: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_RSA_PSS_SHA256: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_ECDSA_SHA384: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_ML_DSA: _ClassVar[SignatureAlgorithm]
ENCRYPTION_ALGORITHM_UNSPECIFIED: EncryptionAlgorithm
ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256: EncryptionAlgorithm
SIGNATURE_ALGORITHM_UNSPECIFIED: SignatureAlgorithm
SIGNATURE_ALGORITHM_ED25519: SignatureAlgorithm
SIGNATURE_ALGORITHM_ECDSA_SHA256: SignatureAlgorithm
SIGNATURE_ALGORITHM_RSA_PSS_SHA256: SignatureAlgorithm
SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256: SignatureAlgorithm
SIGNATURE_ALGORITHM_ECDSA_SHA384: SignatureAlgorithm
SIGNATURE_ALGORITHM_ML_DSA: SignatureAlgorithm

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("client_ip", "proxied_by", "verified_mac", "asserted_mac", "certificate_sha256", "certificate_subject")
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    PROXIED_BY_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_MAC_FIELD_NUMBER: _ClassVar[int]
    ASSERTED_MAC_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    client_ip: str
    proxied_by: str
    verified_mac: str
    asserted_mac: str
    certificate_sha256: str
    certificate_subject: str
    def __init__(self, client_ip: _Optional[str] = ..., proxied_by: _Optional[str] = ..., verified_mac: _Optional[str] = ..., asserted_mac: _Optional[str] = ..., certificate_sha256: _Optional[str] = ..., certificate_subject: _Optional[str] = ...) -> None: ...

class EncryptRequest(_message.Message):
    __slots__ = ("key_id", "plaintext", "aad")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    AAD_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    plaintext: bytes
    aad: bytes
    def __init__(self, key_id: _Optional[str] = ..., plaintext: _Optional[bytes] = ..., aad: _Optional[bytes] = ...) -> None: ...

class EncryptResponse(_message.Message):
    __slots__ = ("ciphertext", "key_version")
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    key_version: int
    def __init__(self, ciphertext: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class DecryptRequest(_message.Message):
    __slots__ = ("key_id", "ciphertext", "aad", "algorithm", "key_version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    AAD_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    ciphertext: bytes
    aad: bytes
    algorithm: EncryptionAlgorithm
    key_version: int
    def __init__(self, key_id: _Optional[str] = ..., ciphertext: _Optional[bytes] = ..., aad: _Optional[bytes] = ..., algorithm: _Optional[_Union[EncryptionAlgorithm, str]] = ..., key_version: _Optional[int] = ...) -> None: ...

class DecryptResponse(_message.Message):
    __slots__ = ("plaintext", "key_version")
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    key_version: int
    def __init__(self, plaintext: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class GenerateDataKeyRequest(_message.Message):
    __slots__ = ("key_id", "aad")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AAD_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    aad: bytes
    def __init__(self, key_id: _Optional[str] = ..., aad: _Optional[bytes] = ...) -> None: ...

class GenerateDataKeyResponse(_message.Message):
    __slots__ = ("plaintext", "ciphertext", "key_version")
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    ciphertext: bytes
    key_version: int
    def __init__(self, plaintext: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class ReEncryptRequest(_message.Message):
    __slots__ = ("key_id", "ciphertext", "aad")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    AAD_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    ciphertext: bytes
    aad: bytes
    def __init__(self, key_id: _Optional[str] = ..., ciphertext: _Optional[bytes] = ..., aad: _Optional[bytes] = ...) -> None: ...

class ReEncryptResponse(_message.Message):
    __slots__ = ("ciphertext", "source_key_version", "key_version")
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    source_key_version: int
    key_version: int
    def __init__(self, ciphertext: _Optional[bytes] = ..., source_key_version: _Optional[int] = ..., key_version: _Optional[int] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "code_name")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_NAME_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    code_name: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., code_name: _Optional[str] = ...) -> None: ...

class BatchEncryptRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[EncryptRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[EncryptRequest, _Mapping]]] = ...) -> None: ...

class BatchEncryptResult(_message.Message):
    __slots__ = ("ok", "error")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ok: EncryptResponse
    error: ItemError
    def __init__(self, ok: _Optional[_Union[EncryptResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class BatchEncryptResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchEncryptResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchEncryptResult, _Mapping]]] = ...) -> None: ...

class BatchDecryptRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[DecryptRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[DecryptRequest, _Mapping]]] = ...) -> None: ...

class BatchDecryptResult(_message.Message):
    __slots__ = ("ok", "error")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ok: DecryptResponse
    error: ItemError
    def __init__(self, ok: _Optional[_Union[DecryptResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class BatchDecryptResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchDecryptResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchDecryptResult, _Mapping]]] = ...) -> None: ...

class SignRequest(_message.Message):
    __slots__ = ("key_id", "message", "digest", "mu", "algorithm")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MU_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    message: bytes
    digest: bytes
    mu: bytes
    algorithm: SignatureAlgorithm
    def __init__(self, key_id: _Optional[str] = ..., message: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., mu: _Optional[bytes] = ..., algorithm: _Optional[_Union[SignatureAlgorithm, str]] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("signature", "key_version", "algorithm")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    key_version: int
    algorithm: SignatureAlgorithm
    def __init__(self, signature: _Optional[bytes] = ..., key_version: _Optional[int] = ..., algorithm: _Optional[_Union[SignatureAlgorithm, str]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("key_id", "message", "digest", "mu", "signature", "algorithm", "key_version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MU_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    message: bytes
    digest: bytes
    mu: bytes
    signature: bytes
    algorithm: SignatureAlgorithm
    key_version: int
    def __init__(self, key_id: _Optional[str] = ..., message: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., mu: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., algorithm: _Optional[_Union[SignatureAlgorithm, str]] = ..., key_version: _Optional[int] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("valid", "key_version")
    VALID_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    key_version: int
    def __init__(self, valid: _Optional[bool] = ..., key_version: _Optional[int] = ...) -> None: ...

class GetPublicKeyRequest(_message.Message):
    __slots__ = ("key_id", "key_version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    key_version: int
    def __init__(self, key_id: _Optional[str] = ..., key_version: _Optional[int] = ...) -> None: ...

class GetPublicKeyResponse(_message.Message):
    __slots__ = ("spki_der", "pem", "key_version", "key_algorithm")
    SPKI_DER_FIELD_NUMBER: _ClassVar[int]
    PEM_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    spki_der: bytes
    pem: str
    key_version: int
    key_algorithm: str
    def __init__(self, spki_der: _Optional[bytes] = ..., pem: _Optional[str] = ..., key_version: _Optional[int] = ..., key_algorithm: _Optional[str] = ...) -> None: ...

class GetSecretRequest(_message.Message):
    __slots__ = ("key_id", "version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    version: int
    def __init__(self, key_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetSecretResponse(_message.Message):
    __slots__ = ("value", "version")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    value: str
    version: int
    def __init__(self, value: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GenerateMacRequest(_message.Message):
    __slots__ = ("key_id", "message")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    message: bytes
    def __init__(self, key_id: _Optional[str] = ..., message: _Optional[bytes] = ...) -> None: ...

class GenerateMacResponse(_message.Message):
    __slots__ = ("mac", "key_version", "algorithm")
    MAC_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    mac: bytes
    key_version: int
    algorithm: str
    def __init__(self, mac: _Optional[bytes] = ..., key_version: _Optional[int] = ..., algorithm: _Optional[str] = ...) -> None: ...

class VerifyMacRequest(_message.Message):
    __slots__ = ("key_id", "message", "mac", "key_version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    message: bytes
    mac: bytes
    key_version: int
    def __init__(self, key_id: _Optional[str] = ..., message: _Optional[bytes] = ..., mac: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class VerifyMacResponse(_message.Message):
    __slots__ = ("valid", "key_version")
    VALID_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    key_version: int
    def __init__(self, valid: _Optional[bool] = ..., key_version: _Optional[int] = ...) -> None: ...
