"""Bad requests on both surfaces: each gets its documented status and error
body in that surface's envelope, and no message echoes what was submitted
(MARKER is the submitted value: it must be absent from every answer and from
the tiers' log). After the table the stack still serves."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import pytest

from conftest import CODES, MARKER, assert_common_headers, b64

V1, COMPAT = "v1", "compat"


@dataclass
class Bad:
    id: str
    surface: str
    method: str
    path: str                    # after /keymanager/v1.3/appkey/{open} for compat
    body: Optional[bytes]        # raw bytes sent
    status: int
    code: str                    # gRPC code name ("OK" for a row that must succeed)
    message: Optional[Callable[[str], bool]] = None
    content_type: Optional[str] = "application/json"
    allow: Optional[str] = None  # required in Allow (405)
    headers: Dict[str, str] = field(default_factory=dict)


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def equals(text: str) -> Callable[[str], bool]:
    return lambda m: m == text


def matches(pattern: str) -> Callable[[str], bool]:
    return lambda m: re.fullmatch(pattern, m) is not None


def contains(*parts: str) -> Callable[[str], bool]:
    return lambda m: all(p in m for p in parts)


def names_limit(m: str) -> bool:
    return re.search(r"\d", m) is not None and ("limit" in m or "large" in m or "bytes" in m or "KiB" in m)


# Just over the route's limit (see test_a_413_reaches_the_client_of_a_large_body for far over it).
BIG_ENCRYPT = j({"plaintext": b64(MARKER.encode() * 3000)})       # ~76 KB: over max(b64(32 KiB) + b64(8 KiB) + framing, 64 KiB)
BIG_COMPAT = j({"plaintext": MARKER * 10560})                     # ~200 KB of text: over 6 x 32 KiB (JSON escapes)
NOT_JSON = ('{"plaintext": "' + MARKER).encode()
NO_PATH = lambda m: m.startswith("no such path")  # noqa: E731 (a docs pointer may follow)
JSON_ERROR = matches(r"body is not valid JSON \(line \d+, column \d+\)")

ROWS = [
    # malformed JSON
    Bad("v1-malformed-json", V1, "POST", "/v1/keys/{aes}/encrypt", NOT_JSON, 400, "INVALID_ARGUMENT", JSON_ERROR),
    Bad("v1-trailing-garbage", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": "aGk="}) + MARKER.encode(),
        400, "INVALID_ARGUMENT", JSON_ERROR),
    Bad("compat-malformed-json", COMPAT, "POST", "/symmetric-keys/{aes}/encrypt", NOT_JSON, 400, "INVALID_ARGUMENT",
        JSON_ERROR),
    Bad("v1-empty-body", V1, "POST", "/v1/keys/{aes}/encrypt", b"", 400, "INVALID_ARGUMENT"),
    # rest-errata.md 1: an empty body is `{}` and needs no Content-Type
    Bad("v1-empty-body-no-required-field", V1, "POST", "/v1/keys/{aes}/generate-data-key", b"", 200, "OK",
        content_type=None),
    Bad("v1-body-not-an-object", V1, "POST", "/v1/keys/{aes}/encrypt", j([MARKER]), 400, "INVALID_ARGUMENT"),
    Bad("compat-body-not-an-object", COMPAT, "POST", "/symmetric-keys/{aes}/encrypt", j(MARKER), 400,
        "INVALID_ARGUMENT"),
    # content type
    Bad("v1-wrong-content-type", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": b64(MARKER.encode())}),
        415, "INVALID_ARGUMENT", content_type="text/plain"),
    Bad("v1-form-content-type", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": b64(MARKER.encode())}),
        415, "INVALID_ARGUMENT", content_type="application/x-www-form-urlencoded"),
    Bad("v1-missing-content-type", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": b64(MARKER.encode())}),
        415, "INVALID_ARGUMENT", content_type=None),
    Bad("compat-missing-content-type", COMPAT, "POST", "/symmetric-keys/{aes}/encrypt", j({"plaintext": MARKER}),
        415, "INVALID_ARGUMENT", content_type=None),
    Bad("compat-verify-wrong-content-type", COMPAT, "POST", "/asymmetric-keys/{ed}/verify",
        j({"plaintext": MARKER, "signature": "aGk="}), 415, "INVALID_ARGUMENT", content_type="text/plain"),
    Bad("v1-charset-is-fine", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": b64(MARKER.encode())}),
        200, "OK", content_type="application/json; charset=utf-8"),
    # too large
    Bad("v1-encrypt-too-large", V1, "POST", "/v1/keys/{aes}/encrypt", BIG_ENCRYPT, 413, "RESOURCE_EXHAUSTED",
        names_limit),
    Bad("compat-encrypt-too-large", COMPAT, "POST", "/symmetric-keys/{aes}/encrypt", BIG_COMPAT, 413,
        "RESOURCE_EXHAUSTED", names_limit),
    # unknown path
    Bad("v1-unknown-path", V1, "GET", "/v1/nothing-here", None, 404, "NOT_FOUND", NO_PATH),
    Bad("v1-unknown-verb", V1, "POST", "/v1/keys/{aes}/frobnicate", j({}), 404, "NOT_FOUND", NO_PATH),
    Bad("compat-unknown-path", COMPAT, "POST", "/symmetric-keys/{aes}/frobnicate", j({}), 404, "NOT_FOUND",
        NO_PATH),
    # wrong method
    Bad("v1-get-encrypt", V1, "GET", "/v1/keys/{aes}/encrypt", None, 405, "UNIMPLEMENTED", allow="POST"),
    Bad("v1-delete-health", V1, "DELETE", "/v1/health", None, 405, "UNIMPLEMENTED", allow="GET"),
    Bad("v1-post-secret", V1, "POST", "/v1/secrets/{secret}", j({}), 405, "UNIMPLEMENTED", allow="GET"),
    Bad("compat-get-encrypt", COMPAT, "GET", "/symmetric-keys/{aes}/encrypt", None, 405, "UNIMPLEMENTED",
        allow="POST"),
    Bad("compat-delete-secret", COMPAT, "DELETE", "/secrets/{secret}", None, 405, "UNIMPLEMENTED", allow="GET"),
    # bad base64
    Bad("v1-plaintext-not-base64", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": MARKER + "!*"}), 400,
        "INVALID_ARGUMENT", equals("plaintext: not base64")),
    Bad("v1-aad-not-base64", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": "aGk=", "aad": MARKER + "!*"}),
        400, "INVALID_ARGUMENT", equals("aad: not base64")),
    Bad("v1-batch-item-not-base64", V1, "POST", "/v1/batch/decrypt",
        j({"items": [{"key_id": "{aes}", "ciphertext": MARKER + "!*"}]}), 400, "INVALID_ARGUMENT",
        contains("ciphertext: not base64")),
    Bad("compat-ciphertext-not-base64", COMPAT, "POST", "/symmetric-keys/{aes}/decrypt",
        j({"ciphertext": MARKER + "!*"}), 400, "INVALID_ARGUMENT", equals("ciphertext: not base64")),
    Bad("compat-sign-standard-not-base64", COMPAT, "POST", "/asymmetric-keys/{rsa}/sign-standard",
        j({"plaintext": MARKER + "!*", "algorithm": "RSASSA-PSS"}), 400, "INVALID_ARGUMENT",
        equals("plaintext: not base64")),
    # a MAC header that is no MAC
    Bad("v1-bad-mac-header", V1, "GET", "/v1/whoami", None, 400, "INVALID_ARGUMENT", contains("not a MAC address"),
        headers={"x-skm-client-mac": MARKER}),
    Bad("compat-bad-mac-header", COMPAT, "POST", "/symmetric-keys/{aes}/encrypt", j({"plaintext": "x"}), 400,
        "INVALID_ARGUMENT", contains("not a MAC address"), headers={"X-TOAST-CLIENT-MAC-ADDR": MARKER}),
    # unknown field: refused on /v1, ignored on the compatible paths
    Bad("v1-unknown-field", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": "aGk=", "colour": MARKER}), 400,
        "INVALID_ARGUMENT", equals("unknown field `colour`")),
    Bad("v1-unknown-field-in-item", V1, "POST", "/v1/batch/encrypt",
        j({"items": [{"key_id": "{aes}", "plaintext": "aGk=", "colour": MARKER}]}), 400, "INVALID_ARGUMENT",
        contains("unknown field `colour`")),
    Bad("compat-unknown-field-ignored", COMPAT, "POST", "/symmetric-keys/{aes}/encrypt",
        j({"plaintext": "hello", "keyVersion": 1, "colour": MARKER}), 200, "OK"),
    # wrong types
    Bad("v1-plaintext-wrong-type", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": [MARKER]}), 400,
        "INVALID_ARGUMENT", equals("plaintext: expected a base64 string")),
    Bad("v1-plaintext-number", V1, "POST", "/v1/keys/{aes}/encrypt", j({"plaintext": 7331733173317331}), 400,
        "INVALID_ARGUMENT", equals("plaintext: expected a base64 string")),
    Bad("v1-key-version-wrong-type", V1, "POST", "/v1/keys/{ed}/verify",
        j({"message": "aGk=", "signature": "aGk=", "key_version": MARKER}), 400, "INVALID_ARGUMENT",
        contains("key_version")),
    Bad("v1-items-wrong-type", V1, "POST", "/v1/batch/encrypt", j({"items": MARKER}), 400, "INVALID_ARGUMENT",
        contains("items")),
    Bad("v1-algorithm-unknown", V1, "POST", "/v1/keys/{ed}/sign", j({"message": "aGk=", "algorithm": MARKER}), 400,
        "INVALID_ARGUMENT", contains("algorithm")),
    Bad("compat-plaintext-wrong-type", COMPAT, "POST", "/symmetric-keys/{aes}/encrypt", j({"plaintext": [MARKER]}),
        400, "INVALID_ARGUMENT", contains("plaintext")),
    Bad("compat-signature-wrong-type", COMPAT, "POST", "/asymmetric-keys/{ed}/verify",
        j({"plaintext": "x", "signature": {"v": MARKER}}), 400, "INVALID_ARGUMENT", contains("signature")),
    Bad("compat-algorithm-unknown", COMPAT, "POST", "/asymmetric-keys/{rsa}/sign-standard",
        j({"plaintext": "aGk=", "algorithm": MARKER}), 400, "INVALID_ARGUMENT", contains("algorithm")),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(stack, row: Bad):
    path = stack.fill(row.path)
    if row.surface == COMPAT:
        path = f"/keymanager/v1.3/appkey/{stack.keystores['open']}" + path
    body = stack.fill(row.body.decode()).encode() if row.body is not None else None
    r = stack.call(row.method, path, data=body, content_type=row.content_type, headers=row.headers)
    assert r.status_code == row.status, f"HTTP {r.status_code}: {r.text[:300]}"
    assert_common_headers(r)
    assert MARKER not in r.text and all(MARKER not in v for v in r.headers.values()), "the answer echoes the input"
    doc = r.json()
    if row.allow is not None:
        allow = [m.strip().upper() for m in r.headers.get("Allow", "").split(",")]
        assert row.allow in allow, f"Allow: {r.headers.get('Allow')!r}"
    if row.code == "OK":
        if row.surface == COMPAT:
            assert doc["header"]["isSuccessful"] is True
        return
    if row.surface == V1:
        assert set(doc) == {"error"} and set(doc["error"]) == {"code", "code_name", "message"}, doc
        err = doc["error"]
        code, name, message = err["code"], err["code_name"], err["message"]
        assert (code, name) == (CODES[row.code], row.code), doc
    else:
        assert set(doc) == {"header", "body"} and doc["body"] is None, doc
        h = doc["header"]
        assert set(h) == {"resultCode", "resultMessage", "isSuccessful"} and h["isSuccessful"] is False, doc
        assert h["resultCode"] == -CODES[row.code], doc
        message = h["resultMessage"]
    assert isinstance(message, str) and message, doc
    if row.message is not None:
        assert row.message(message), f"message {message!r}"


def test_sign_body_limit_is_max_request_bytes(stack, grpc_client):
    """rest-spec.md: routes other than encrypt and batch take bodies up to
    max_request_bytes (64 KiB); a 5000-byte message (a ~6.7 KB body) is then
    the domain's refusal, the same as gRPC's, not a 413."""
    from conftest import grpc_message

    msg = b"m" * 5000
    r = stack.call("POST", stack.fill("/v1/keys/{ed}/sign"), json_body={"message": b64(msg)})
    code, message = grpc_message(lambda: grpc_client.sign(stack.keys["ed"], msg))
    assert (r.status_code, r.json()["error"]["code_name"], r.json()["error"]["message"]) == (400, code, message), \
        r.text


def test_after_the_table_the_stack_still_serves_and_the_log_is_clean(stack, grpc_client):
    r = stack.call("POST", stack.fill("/v1/keys/{aes}/encrypt"), json_body={"plaintext": b64(b"still here")})
    assert r.status_code == 200, r.text
    ct = r.json()["ciphertext"]
    import base64

    assert grpc_client.decrypt(stack.keys["aes"], base64.b64decode(ct)).plaintext == b"still here"
    log = stack.log.read_text(errors="replace")
    assert "kms-api" in log, "the captured stderr holds no kms-api log lines"
    assert MARKER not in log, "a submitted value reached the log: " + next(
        line for line in log.splitlines() if MARKER in line)[:300]
