"""Exceptions: one class per gRPC status code, all subclasses of SkmError.

A refused call raises the class of its code with the server's message
(``skm.PermissionDenied("IPv4 authentication failed")``); local envelope
failures raise EnvelopeError (malformed framing) or DecryptionError (opaque:
wrong key, truncated or tampered).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc


class SkmError(Exception):
    """Any failure of an SKM call or helper."""

    #: The gRPC status code, or None for local failures.
    code: Optional[grpc.StatusCode] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        return f"{self.code.name}: {self.message}"


class Cancelled(SkmError):
    code = grpc.StatusCode.CANCELLED


class Unknown(SkmError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(SkmError):
    """Bad input or over a limit; the message names the field and the limit."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(SkmError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(SkmError):
    """Unknown id."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(SkmError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(SkmError):
    """The keystore policy refused the caller; the message names the failed method."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(SkmError):
    """Overload: retry with backoff."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(SkmError):
    """Key disabled, pending deletion, or of the wrong type for the call."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(SkmError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(SkmError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(SkmError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(SkmError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(SkmError):
    """Not ready (sealed, system key not loaded) or unreachable: retry with backoff."""

    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(SkmError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(SkmError):
    code = grpc.StatusCode.UNAUTHENTICATED


class EnvelopeError(SkmError):
    """A blob that is not an envelope this version reads (names what is wrong)."""


class DecryptionError(SkmError):
    """An envelope's data did not decrypt (opaque: wrong data, truncated or tampered)."""

    def __init__(self, message: str = "envelope decryption failed") -> None:
        super().__init__(message)


_BY_CODE: Dict[grpc.StatusCode, Type[SkmError]] = {
    cls.code: cls
    for cls in (
        Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
        PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
        Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated,
    )
    if cls.code is not None
}

#: Codes worth retrying with backoff (docs/CLIENTS.md).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED})


def error_for(code: grpc.StatusCode, message: str) -> SkmError:
    """The exception for a status code and message."""
    return _BY_CODE.get(code, Unknown)(message)


def from_rpc_error(err: grpc.RpcError) -> SkmError:
    """Converts a grpc error (sync or aio) to its SkmError."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return error_for(code, details or "")
