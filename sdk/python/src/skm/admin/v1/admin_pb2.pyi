from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PolicyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_MODE_UNSPECIFIED: _ClassVar[PolicyMode]
    POLICY_MODE_ALL: _ClassVar[PolicyMode]
    POLICY_MODE_ANY: _ClassVar[PolicyMode]

class KeyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_TYPE_UNSPECIFIED: _ClassVar[KeyType]
    KEY_TYPE_AES_256: _ClassVar[KeyType]
    KEY_TYPE_ED25519: _ClassVar[KeyType]
    KEY_TYPE_ECDSA_P256: _ClassVar[KeyType]
    KEY_TYPE_RSA_2048: _ClassVar[KeyType]
    KEY_TYPE_RSA_3072: _ClassVar[KeyType]
    KEY_TYPE_RSA_4096: _ClassVar[KeyType]
    KEY_TYPE_SECRET: _ClassVar[KeyType]
    KEY_TYPE_ECDSA_P384: _ClassVar[KeyType]
    KEY_TYPE_ML_DSA_44: _ClassVar[KeyType]
    KEY_TYPE_ML_DSA_65: _ClassVar[KeyType]
    KEY_TYPE_ML_DSA_87: _ClassVar[KeyType]
    KEY_TYPE_HMAC_SHA256: _ClassVar[KeyType]
    KEY_TYPE_HMAC_SHA384: _ClassVar[KeyType]
    KEY_TYPE_HMAC_SHA512: _ClassVar[KeyType]
    KEY_TYPE_RSA_OAEP_2048: _ClassVar[KeyType]
    KEY_TYPE_RSA_OAEP_3072: _ClassVar[KeyType]
    KEY_TYPE_RSA_OAEP_4096: _ClassVar[KeyType]

class KeyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_STATE_UNSPECIFIED: _ClassVar[KeyState]
    KEY_STATE_ENABLED: _ClassVar[KeyState]
    KEY_STATE_DISABLED: _ClassVar[KeyState]
    KEY_STATE_PENDING_DELETION: _ClassVar[KeyState]
    KEY_STATE_PENDING_IMPORT: _ClassVar[KeyState]

class KeyOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_ORIGIN_UNSPECIFIED: _ClassVar[KeyOrigin]
    KEY_ORIGIN_SKM: _ClassVar[KeyOrigin]
    KEY_ORIGIN_EXTERNAL: _ClassVar[KeyOrigin]

class WrappingAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WRAPPING_ALGORITHM_UNSPECIFIED: _ClassVar[WrappingAlgorithm]
    WRAPPING_ALGORITHM_RSAES_OAEP_SHA_256: _ClassVar[WrappingAlgorithm]
    WRAPPING_ALGORITHM_RSA_AES_KEY_WRAP_SHA_256: _ClassVar[WrappingAlgorithm]

class WrappingKeySpec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WRAPPING_KEY_SPEC_UNSPECIFIED: _ClassVar[WrappingKeySpec]
    WRAPPING_KEY_SPEC_RSA_3072: _ClassVar[WrappingKeySpec]
    WRAPPING_KEY_SPEC_RSA_4096: _ClassVar[WrappingKeySpec]
POLICY_MODE_UNSPECIFIED: PolicyMode
POLICY_MODE_ALL: PolicyMode
POLICY_MODE_ANY: PolicyMode
KEY_TYPE_UNSPECIFIED: KeyType
KEY_TYPE_AES_256: KeyType
KEY_TYPE_ED25519: KeyType
KEY_TYPE_ECDSA_P256: KeyType
KEY_TYPE_RSA_2048: KeyType
KEY_TYPE_RSA_3072: KeyType
KEY_TYPE_RSA_4096: KeyType
KEY_TYPE_SECRET: KeyType
KEY_TYPE_ECDSA_P384: KeyType
KEY_TYPE_ML_DSA_44: KeyType
KEY_TYPE_ML_DSA_65: KeyType
KEY_TYPE_ML_DSA_87: KeyType
KEY_TYPE_HMAC_SHA256: KeyType
KEY_TYPE_HMAC_SHA384: KeyType
KEY_TYPE_HMAC_SHA512: KeyType
KEY_TYPE_RSA_OAEP_2048: KeyType
KEY_TYPE_RSA_OAEP_3072: KeyType
KEY_TYPE_RSA_OAEP_4096: KeyType
KEY_STATE_UNSPECIFIED: KeyState
KEY_STATE_ENABLED: KeyState
KEY_STATE_DISABLED: KeyState
KEY_STATE_PENDING_DELETION: KeyState
KEY_STATE_PENDING_IMPORT: KeyState
KEY_ORIGIN_UNSPECIFIED: KeyOrigin
KEY_ORIGIN_SKM: KeyOrigin
KEY_ORIGIN_EXTERNAL: KeyOrigin
WRAPPING_ALGORITHM_UNSPECIFIED: WrappingAlgorithm
WRAPPING_ALGORITHM_RSAES_OAEP_SHA_256: WrappingAlgorithm
WRAPPING_ALGORITHM_RSA_AES_KEY_WRAP_SHA_256: WrappingAlgorithm
WRAPPING_KEY_SPEC_UNSPECIFIED: WrappingKeySpec
WRAPPING_KEY_SPEC_RSA_3072: WrappingKeySpec
WRAPPING_KEY_SPEC_RSA_4096: WrappingKeySpec

class CreateConsoleSignInRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateConsoleSignInResponse(_message.Message):
    __slots__ = ("url", "code", "expires_at")
    URL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    url: str
    code: str
    expires_at: int
    def __init__(self, url: _Optional[str] = ..., code: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class GetSystemKeyStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SystemKeyVersionStatus(_message.Message):
    __slots__ = ("version", "records")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    version: int
    records: int
    def __init__(self, version: _Optional[int] = ..., records: _Optional[int] = ...) -> None: ...

class GetSystemKeyStatusResponse(_message.Message):
    __slots__ = ("active_version", "versions", "retired_versions", "reseal_target_version", "reseal_done", "reseal_scanned", "reseal_resealed")
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RETIRED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RESEAL_TARGET_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESEAL_DONE_FIELD_NUMBER: _ClassVar[int]
    RESEAL_SCANNED_FIELD_NUMBER: _ClassVar[int]
    RESEAL_RESEALED_FIELD_NUMBER: _ClassVar[int]
    active_version: int
    versions: _containers.RepeatedCompositeFieldContainer[SystemKeyVersionStatus]
    retired_versions: _containers.RepeatedScalarFieldContainer[int]
    reseal_target_version: int
    reseal_done: bool
    reseal_scanned: int
    reseal_resealed: int
    def __init__(self, active_version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[SystemKeyVersionStatus, _Mapping]]] = ..., retired_versions: _Optional[_Iterable[int]] = ..., reseal_target_version: _Optional[int] = ..., reseal_done: _Optional[bool] = ..., reseal_scanned: _Optional[int] = ..., reseal_resealed: _Optional[int] = ...) -> None: ...

class RetireSystemKeyVersionRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class RetireSystemKeyVersionResponse(_message.Message):
    __slots__ = ("version", "system_keyd_dropped")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_KEYD_DROPPED_FIELD_NUMBER: _ClassVar[int]
    version: int
    system_keyd_dropped: bool
    def __init__(self, version: _Optional[int] = ..., system_keyd_dropped: _Optional[bool] = ...) -> None: ...

class Keystore(_message.Message):
    __slots__ = ("id", "name", "allow_ips", "created_at", "policy", "client_ca_pem", "certificates", "alias")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_IPS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CA_PEM_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    allow_ips: _containers.RepeatedScalarFieldContainer[str]
    created_at: int
    policy: Policy
    client_ca_pem: str
    certificates: _containers.RepeatedCompositeFieldContainer[ClientCertificate]
    alias: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., allow_ips: _Optional[_Iterable[str]] = ..., created_at: _Optional[int] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., client_ca_pem: _Optional[str] = ..., certificates: _Optional[_Iterable[_Union[ClientCertificate, _Mapping]]] = ..., alias: _Optional[str] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("allow_ips", "allow_macs", "allow_asserted_mac", "require_cert", "mode")
    ALLOW_IPS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MACS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_ASSERTED_MAC_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_CERT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    allow_ips: _containers.RepeatedScalarFieldContainer[str]
    allow_macs: _containers.RepeatedScalarFieldContainer[str]
    allow_asserted_mac: bool
    require_cert: bool
    mode: PolicyMode
    def __init__(self, allow_ips: _Optional[_Iterable[str]] = ..., allow_macs: _Optional[_Iterable[str]] = ..., allow_asserted_mac: _Optional[bool] = ..., require_cert: _Optional[bool] = ..., mode: _Optional[_Union[PolicyMode, str]] = ...) -> None: ...

class ClientCertificate(_message.Message):
    __slots__ = ("name", "sha256", "origin", "not_after", "revoked")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    origin: str
    not_after: int
    revoked: bool
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., origin: _Optional[str] = ..., not_after: _Optional[int] = ..., revoked: _Optional[bool] = ...) -> None: ...

class CreateKeystoreRequest(_message.Message):
    __slots__ = ("name", "allow_ips", "policy", "alias")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_IPS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    allow_ips: _containers.RepeatedScalarFieldContainer[str]
    policy: Policy
    alias: str
    def __init__(self, name: _Optional[str] = ..., allow_ips: _Optional[_Iterable[str]] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., alias: _Optional[str] = ...) -> None: ...

class GetKeystoreRequest(_message.Message):
    __slots__ = ("keystore_id",)
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    keystore_id: str
    def __init__(self, keystore_id: _Optional[str] = ...) -> None: ...

class UpdateKeystoreRequest(_message.Message):
    __slots__ = ("keystore_id", "policy", "alias")
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    keystore_id: str
    policy: Policy
    alias: str
    def __init__(self, keystore_id: _Optional[str] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., alias: _Optional[str] = ...) -> None: ...

class DeleteKeystoreResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IssueClientCertificateRequest(_message.Message):
    __slots__ = ("keystore_id", "name", "days", "password")
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    keystore_id: str
    name: str
    days: int
    password: str
    def __init__(self, keystore_id: _Optional[str] = ..., name: _Optional[str] = ..., days: _Optional[int] = ..., password: _Optional[str] = ...) -> None: ...

class IssueClientCertificateResponse(_message.Message):
    __slots__ = ("pkcs12", "sha256", "not_after")
    PKCS12_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    pkcs12: bytes
    sha256: str
    not_after: int
    def __init__(self, pkcs12: _Optional[bytes] = ..., sha256: _Optional[str] = ..., not_after: _Optional[int] = ...) -> None: ...

class RegisterClientCertificateRequest(_message.Message):
    __slots__ = ("keystore_id", "name", "sha256")
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    keystore_id: str
    name: str
    sha256: str
    def __init__(self, keystore_id: _Optional[str] = ..., name: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class RevokeClientCertificateRequest(_message.Message):
    __slots__ = ("keystore_id", "certificate")
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    keystore_id: str
    certificate: str
    def __init__(self, keystore_id: _Optional[str] = ..., certificate: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("keystore_id", "key_id", "since", "limit", "page_size", "page_token")
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    keystore_id: str
    key_id: str
    since: int
    limit: int
    page_size: int
    page_token: str
    def __init__(self, keystore_id: _Optional[str] = ..., key_id: _Optional[str] = ..., since: _Optional[int] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("seq", "time", "operation", "keystore_id", "key_id", "key_version", "caller_ip", "caller_mac", "caller_mac_source", "caller_cert_sha256", "operator", "result", "front_end", "system_principal", "intent_seq", "lost_first_seq", "lost_last_seq")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CALLER_IP_FIELD_NUMBER: _ClassVar[int]
    CALLER_MAC_FIELD_NUMBER: _ClassVar[int]
    CALLER_MAC_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CALLER_CERT_SHA256_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FRONT_END_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    INTENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    LOST_FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LOST_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: int
    operation: str
    keystore_id: str
    key_id: str
    key_version: int
    caller_ip: str
    caller_mac: str
    caller_mac_source: str
    caller_cert_sha256: str
    operator: str
    result: str
    front_end: str
    system_principal: str
    intent_seq: int
    lost_first_seq: int
    lost_last_seq: int
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[int] = ..., operation: _Optional[str] = ..., keystore_id: _Optional[str] = ..., key_id: _Optional[str] = ..., key_version: _Optional[int] = ..., caller_ip: _Optional[str] = ..., caller_mac: _Optional[str] = ..., caller_mac_source: _Optional[str] = ..., caller_cert_sha256: _Optional[str] = ..., operator: _Optional[str] = ..., result: _Optional[str] = ..., front_end: _Optional[str] = ..., system_principal: _Optional[str] = ..., intent_seq: _Optional[int] = ..., lost_first_seq: _Optional[int] = ..., lost_last_seq: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class VerifyAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditResponse(_message.Message):
    __slots__ = ("entries", "intact", "first_broken_line", "first_broken_seq", "reason", "acknowledged_losses")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    INTACT_FIELD_NUMBER: _ClassVar[int]
    FIRST_BROKEN_LINE_FIELD_NUMBER: _ClassVar[int]
    FIRST_BROKEN_SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_LOSSES_FIELD_NUMBER: _ClassVar[int]
    entries: int
    intact: bool
    first_broken_line: int
    first_broken_seq: int
    reason: str
    acknowledged_losses: _containers.RepeatedCompositeFieldContainer[AuditLoss]
    def __init__(self, entries: _Optional[int] = ..., intact: _Optional[bool] = ..., first_broken_line: _Optional[int] = ..., first_broken_seq: _Optional[int] = ..., reason: _Optional[str] = ..., acknowledged_losses: _Optional[_Iterable[_Union[AuditLoss, _Mapping]]] = ...) -> None: ...

class AuditLoss(_message.Message):
    __slots__ = ("first_missing_seq", "last_missing_seq", "acknowledged_seq")
    FIRST_MISSING_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_MISSING_SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_SEQ_FIELD_NUMBER: _ClassVar[int]
    first_missing_seq: int
    last_missing_seq: int
    acknowledged_seq: int
    def __init__(self, first_missing_seq: _Optional[int] = ..., last_missing_seq: _Optional[int] = ..., acknowledged_seq: _Optional[int] = ...) -> None: ...

class AcknowledgeAuditLossRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AcknowledgeAuditLossResponse(_message.Message):
    __slots__ = ("loss",)
    LOSS_FIELD_NUMBER: _ClassVar[int]
    loss: AuditLoss
    def __init__(self, loss: _Optional[_Union[AuditLoss, _Mapping]] = ...) -> None: ...

class RevokeOperatorRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    def __init__(self, sha256: _Optional[str] = ...) -> None: ...

class RevokeOperatorResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateKeystoreResponse(_message.Message):
    __slots__ = ("keystore",)
    KEYSTORE_FIELD_NUMBER: _ClassVar[int]
    keystore: Keystore
    def __init__(self, keystore: _Optional[_Union[Keystore, _Mapping]] = ...) -> None: ...

class ListKeystoresRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKeystoresResponse(_message.Message):
    __slots__ = ("keystores",)
    KEYSTORES_FIELD_NUMBER: _ClassVar[int]
    keystores: _containers.RepeatedCompositeFieldContainer[Keystore]
    def __init__(self, keystores: _Optional[_Iterable[_Union[Keystore, _Mapping]]] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("keystore_id", "name", "key_type", "rotation_period_days", "origin")
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_PERIOD_DAYS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    keystore_id: str
    name: str
    key_type: KeyType
    rotation_period_days: int
    origin: KeyOrigin
    def __init__(self, keystore_id: _Optional[str] = ..., name: _Optional[str] = ..., key_type: _Optional[_Union[KeyType, str]] = ..., rotation_period_days: _Optional[int] = ..., origin: _Optional[_Union[KeyOrigin, str]] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ("key_id", "version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    version: int
    def __init__(self, key_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class CreateSecretRequest(_message.Message):
    __slots__ = ("keystore_id", "name", "value", "max_versions")
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    keystore_id: str
    name: str
    value: str
    max_versions: int
    def __init__(self, keystore_id: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[str] = ..., max_versions: _Optional[int] = ...) -> None: ...

class CreateSecretResponse(_message.Message):
    __slots__ = ("key_id", "version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    version: int
    def __init__(self, key_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class UpdateSecretRequest(_message.Message):
    __slots__ = ("key_id", "value")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    value: str
    def __init__(self, key_id: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class UpdateSecretResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("keystore_id",)
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    keystore_id: str
    def __init__(self, keystore_id: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyInfo, _Mapping]]] = ...) -> None: ...

class DescribeKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class KeyVersionInfo(_message.Message):
    __slots__ = ("version", "created_at")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    version: int
    created_at: int
    def __init__(self, version: _Optional[int] = ..., created_at: _Optional[int] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("key_id", "keystore_id", "name", "key_type", "state", "current_version", "versions", "rotation_period_days", "next_rotation_at", "deletion_at", "created_at", "last_used_at", "max_versions", "origin")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KEYSTORE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ROTATION_PERIOD_DAYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ROTATION_AT_FIELD_NUMBER: _ClassVar[int]
    DELETION_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    keystore_id: str
    name: str
    key_type: KeyType
    state: KeyState
    current_version: int
    versions: _containers.RepeatedCompositeFieldContainer[KeyVersionInfo]
    rotation_period_days: int
    next_rotation_at: int
    deletion_at: int
    created_at: int
    last_used_at: int
    max_versions: int
    origin: KeyOrigin
    def __init__(self, key_id: _Optional[str] = ..., keystore_id: _Optional[str] = ..., name: _Optional[str] = ..., key_type: _Optional[_Union[KeyType, str]] = ..., state: _Optional[_Union[KeyState, str]] = ..., current_version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[KeyVersionInfo, _Mapping]]] = ..., rotation_period_days: _Optional[int] = ..., next_rotation_at: _Optional[int] = ..., deletion_at: _Optional[int] = ..., created_at: _Optional[int] = ..., last_used_at: _Optional[int] = ..., max_versions: _Optional[int] = ..., origin: _Optional[_Union[KeyOrigin, str]] = ...) -> None: ...

class GetParametersForImportRequest(_message.Message):
    __slots__ = ("key_id", "wrapping_algorithm", "wrapping_key_spec")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    WRAPPING_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    WRAPPING_KEY_SPEC_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    wrapping_algorithm: WrappingAlgorithm
    wrapping_key_spec: WrappingKeySpec
    def __init__(self, key_id: _Optional[str] = ..., wrapping_algorithm: _Optional[_Union[WrappingAlgorithm, str]] = ..., wrapping_key_spec: _Optional[_Union[WrappingKeySpec, str]] = ...) -> None: ...

class GetParametersForImportResponse(_message.Message):
    __slots__ = ("key_id", "public_key", "public_key_pem", "import_token", "parameters_valid_to", "wrapping_algorithm")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    IMPORT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_VALID_TO_FIELD_NUMBER: _ClassVar[int]
    WRAPPING_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    public_key: bytes
    public_key_pem: str
    import_token: bytes
    parameters_valid_to: int
    wrapping_algorithm: WrappingAlgorithm
    def __init__(self, key_id: _Optional[str] = ..., public_key: _Optional[bytes] = ..., public_key_pem: _Optional[str] = ..., import_token: _Optional[bytes] = ..., parameters_valid_to: _Optional[int] = ..., wrapping_algorithm: _Optional[_Union[WrappingAlgorithm, str]] = ...) -> None: ...

class ImportKeyMaterialRequest(_message.Message):
    __slots__ = ("key_id", "import_token", "encrypted_key_material")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    IMPORT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_KEY_MATERIAL_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    import_token: bytes
    encrypted_key_material: bytes
    def __init__(self, key_id: _Optional[str] = ..., import_token: _Optional[bytes] = ..., encrypted_key_material: _Optional[bytes] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class UpdateKeyRequest(_message.Message):
    __slots__ = ("key_id", "rotation_period_days")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ROTATION_PERIOD_DAYS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    rotation_period_days: int
    def __init__(self, key_id: _Optional[str] = ..., rotation_period_days: _Optional[int] = ...) -> None: ...

class KeyIdRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class ScheduleKeyDeletionRequest(_message.Message):
    __slots__ = ("key_id", "pending_days")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_DAYS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    pending_days: int
    def __init__(self, key_id: _Optional[str] = ..., pending_days: _Optional[int] = ...) -> None: ...
