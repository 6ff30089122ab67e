"""The contract tables of rest-spec.md, row by row, against the running stack.

COMPAT_ROWS: every compatible path (/keymanager/{v1.0..v1.3}/appkey/{appkey}/…)
with the request as the modelled service (NHN Cloud Secure Key Manager)
documents it, the HTTP status, and the exact JSON shape (keys and types of
header and body, plus the values that are fixed). V1_ROWS: every row of the
/v1 table, with error bodies. Every answer also carries the common headers.
Error rows compare their message with what gRPC says for the same call.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import pytest

from conftest import (
    ANY, B64, CODES, COMPAT_VERSIONS, HEX, OK_HEADER, Ctx, Text, Stack, assert_common_headers, assert_shape, b64,
    compat_error, grpc_decrypt_raw, grpc_message, resolve, unb64, v1_error,
)

NOBODY = object()  # no request body at all
# The fixed phrases of rest-spec.md (a server may add a pointer to the docs after them).
NO_EXPORT = Text("SKM never exports key material")
NO_PATH = Text("no such path")
NO_SECRET_WRITE = Text("secrets are changed by an operator in SKM (skm secret update)", "docs/MIGRATING.md")


@dataclass
class Row:
    id: str
    method: str
    template: str                 # OpenAPI path template (/v1), or the compat path after …/appkey/{appkey}
    status: int
    shape: Any                    # expected JSON (see conftest.assert_shape); cells are resolved
    key: Optional[str] = None     # placeholder name for {key_id} / {keyid}
    body: Any = NOBODY
    params: Optional[Dict[str, Any]] = None
    appkey: str = "ks:open"
    check: Optional[Callable[[Any, Stack, Ctx], None]] = None
    grpc: Optional[Callable[[Any, Stack], Any]] = None   # same refusal over gRPC: (client, stack) -> call
    headers: Dict[str, str] = field(default_factory=dict)

    def path(self, version: Optional[str] = None) -> str:
        p = self.template
        if self.key is not None:
            p = p.replace("{key_id}", "{" + self.key + "}").replace("{keyid}", "{" + self.key + "}")
        if version is not None:
            p = f"/keymanager/{version}/appkey/{{{self.appkey}}}" + p
        return p


def run(stack: Stack, ctx: Ctx, row: Row, version: Optional[str] = None, grpc_client=None):
    """Sends a row's request; checks status, common headers, shape, the row's
    own check and (error rows) the gRPC message. Returns (response, json)."""
    body = resolve(row.body, stack, ctx)
    kwargs: Dict[str, Any] = {"headers": resolve(row.headers, stack, ctx)}
    if body is not NOBODY:
        kwargs["json_body"] = body
    if row.params is not None:
        kwargs["params"] = resolve(row.params, stack, ctx)
    r = stack.call(row.method, stack.fill(row.path(version)), **kwargs)
    assert r.status_code == row.status, f"{row.method} {row.path(version)}: HTTP {r.status_code}: {r.text[:500]}"
    assert_common_headers(r)
    doc = r.json()
    assert_shape(doc, resolve(row.shape, stack, ctx))
    if row.check is not None:
        row.check(doc, stack, ctx)
    if row.grpc is not None and grpc_client is not None:
        code, message = grpc_message(lambda: row.grpc(grpc_client, stack))
        if version is None:
            assert (doc["error"]["code_name"], doc["error"]["message"]) == (code, message), "differs from gRPC"
        else:
            assert (doc["header"]["resultCode"], doc["header"]["resultMessage"]) == (-CODES[code], message), \
                "differs from gRPC"
    return r, doc


def ok(body: Any) -> Dict[str, Any]:
    return {"header": OK_HEADER, "body": body}


# ------------------------------------------------------------- compatible paths

def _check_confirm(doc, stack, ctx):
    assert doc["body"] == {"clientIp": "127.0.0.1", "clientMacHeader": "", "clientSentCertificate": False}


def _check_local_key(doc, stack, ctx):
    assert len(unb64(doc["body"]["localKeyPlaintext"])) == 32
    ct = unb64(doc["body"]["localKeyCiphertext"])
    assert ct[0] == 1 and ct[1:17].hex() == stack.keys["aes"], "localKeyCiphertext is an SKM ciphertext of the key"


def _check_public_key(key_type):
    def check(doc, stack, ctx):
        body = doc["body"]
        assert body["keyType"] == key_type
        assert unb64(body["encodedKey"]).hex() == body["key"], "key is the hex of encodedKey (SPKI DER)"
        assert unb64(body["encodedKey"])[0] == 0x30, "SPKI DER is a SEQUENCE"
    return check


def _grpc_encrypt(key):
    return lambda c, s: c.encrypt(s.keys[key], b"x")


COMPAT_COMMON: List[Row] = [
    Row("confirm", "GET", "/confirm", 200,
        ok({"clientIp": str, "clientMacHeader": str, "clientSentCertificate": bool}), check=_check_confirm),
    Row("confirm-with-their-headers", "GET", "/confirm", 200,
        ok({"clientIp": "127.0.0.1", "clientMacHeader": "", "clientSentCertificate": False}),
        headers={"X-TC-AUTHENTICATION-ID": "their-id", "X-TC-AUTHENTICATION-SECRET": "their-secret",
                 "X-NHN-AUTHORIZATION": "Bearer their.token"}),
    Row("secret-get", "GET", "/secrets/{keyid}", 200, ok({"secret": "correct horse"}), key="secret"),
    Row("encrypt", "POST", "/symmetric-keys/{keyid}/encrypt", 200,
        ok({"ciphertext": B64(), "keyVersion": 1}), key="aes", body={"plaintext": "hello compat"}),
    Row("decrypt", "POST", "/symmetric-keys/{keyid}/decrypt", 200,
        ok({"plaintext": "hello compat", "keyVersion": 1}), key="aes",
        body={"ciphertext": lambda s, c: c.ct_plain}),
    Row("create-local-key", "POST", "/symmetric-keys/{keyid}/create-local-key", 200,
        ok({"localKeyPlaintext": B64(32), "localKeyCiphertext": B64(), "keyVersion": 1}), key="aes",
        check=_check_local_key),
    Row("create-local-key-{}", "POST", "/symmetric-keys/{keyid}/create-local-key", 200,
        ok({"localKeyPlaintext": B64(32), "localKeyCiphertext": B64(), "keyVersion": 1}), key="aes",
        body={}, check=_check_local_key),
    Row("symmetric-key-export", "GET", "/symmetric-keys/{keyid}/symmetric-key", 403,
        compat_error("PERMISSION_DENIED", NO_EXPORT), key="aes", params={"keyVersion": 1}),
    Row("sign", "POST", "/asymmetric-keys/{keyid}/sign", 200,
        ok({"signature": B64(64), "keyVersion": 1}), key="ed", body={"plaintext": "hello sig"}),
    Row("sign-ec", "POST", "/asymmetric-keys/{keyid}/sign", 200,
        ok({"signature": B64(), "keyVersion": 1}), key="ec", body={"plaintext": "hello sig"}),
    Row("sign-rsa", "POST", "/asymmetric-keys/{keyid}/sign", 200,
        ok({"signature": B64(256), "keyVersion": 1}), key="rsa", body={"plaintext": "hello sig"}),
    Row("verify", "POST", "/asymmetric-keys/{keyid}/verify", 200,
        ok({"result": True, "keyVersion": 1}), key="ed",
        body={"plaintext": "hello sig", "signature": lambda s, c: c.ed_sig}),
    Row("verify-invalid", "POST", "/asymmetric-keys/{keyid}/verify", 200,
        ok({"result": False, "keyVersion": int}), key="ed",
        body={"plaintext": "other text", "signature": lambda s, c: c.ed_sig}),
    Row("sign-standard-pss", "POST", "/asymmetric-keys/{keyid}/sign-standard", 200,
        ok({"signature": B64(256), "algorithm": "RSASSA-PSS", "hashAlgorithm": "SHA-256",
            "mgfAlgorithm": "MGF1-SHA-256", "saltLength": 32, "keyVersion": 1}),
        key="rsa", body={"plaintext": b64(b"hello sig"), "algorithm": "RSASSA-PSS"}),
    Row("sign-standard-pkcs1", "POST", "/asymmetric-keys/{keyid}/sign-standard", 200,
        ok({"signature": B64(256), "algorithm": "RSASSA-PKCS1-v1_5", "hashAlgorithm": "SHA-256", "keyVersion": 1}),
        key="rsa", body={"plaintext": b64(b"hello sig"), "algorithm": "RSASSA-PKCS1-v1_5"}),
    Row("verify-standard-pss", "POST", "/asymmetric-keys/{keyid}/verify-standard", 200,
        ok({"result": True, "keyVersion": 1}), key="rsa",
        body={"plaintext": b64(b"hello sig"), "signature": lambda s, c: c.rsa_pss, "algorithm": "RSASSA-PSS",
              "keyVersion": 1}),
    Row("verify-standard-pkcs1", "POST", "/asymmetric-keys/{keyid}/verify-standard", 200,
        ok({"result": True, "keyVersion": 1}), key="rsa",
        body={"plaintext": b64(b"hello sig"), "signature": lambda s, c: c.rsa_pkcs1,
              "algorithm": "RSASSA-PKCS1-v1_5"}),
    Row("public-key-rsa", "GET", "/asymmetric-keys/{keyid}/publicKey", 200,
        ok({"keyType": "RSA", "key": HEX, "encodedKey": B64(), "keyVersion": 1}), key="rsa",
        params={"keyVersion": 1}, check=_check_public_key("RSA")),
    Row("public-key-ec", "GET", "/asymmetric-keys/{keyid}/publicKey", 200,
        ok({"keyType": "EC", "key": HEX, "encodedKey": B64(), "keyVersion": 1}), key="ec",
        params={"keyVersion": 1}, check=_check_public_key("EC")),
    Row("public-key-ed25519", "GET", "/asymmetric-keys/{keyid}/publicKey", 200,
        ok({"keyType": "ED25519", "key": HEX, "encodedKey": B64(44), "keyVersion": 1}), key="ed",
        params={"keyVersion": 1}, check=_check_public_key("ED25519")),
    Row("public-key-p384", "GET", "/asymmetric-keys/{keyid}/publicKey", 200,
        ok({"keyType": "EC", "key": HEX, "encodedKey": B64(120), "keyVersion": 1}), key="p384",
        params={"keyVersion": 1}, check=_check_public_key("EC")),
    Row("public-key-ml-dsa-65", "GET", "/asymmetric-keys/{keyid}/publicKey", 200,
        ok({"keyType": "ML-DSA", "key": HEX, "encodedKey": B64(1974), "keyVersion": 1}), key="mldsa65",
        params={"keyVersion": 1}, check=_check_public_key("ML-DSA")),
    Row("public-key-rsa-oaep", "GET", "/asymmetric-keys/{keyid}/publicKey", 200,
        ok({"keyType": "RSA", "key": HEX, "encodedKey": B64(294), "keyVersion": 1}), key="oaep2048",
        params={"keyVersion": 1}, check=_check_public_key("RSA")),
    Row("private-key-export", "GET", "/asymmetric-keys/{keyid}/privateKey", 403,
        compat_error("PERMISSION_DENIED", NO_EXPORT), key="rsa", params={"keyVersion": 1}),
    # Errors, in the compat envelope, with gRPC's text.
    Row("key-of-another-keystore", "POST", "/symmetric-keys/{keyid}/encrypt", 404,
        compat_error("NOT_FOUND", "key {other_aes} not found"), key="other_aes", body={"plaintext": "x"}),
    Row("missing-key", "POST", "/symmetric-keys/{keyid}/encrypt", 404,
        compat_error("NOT_FOUND", "key 0123456789abcdef0123456789abcdef not found"), key="missing",
        body={"plaintext": "x"}),
    Row("denied", "POST", "/symmetric-keys/{keyid}/encrypt", 403,
        compat_error("PERMISSION_DENIED", "IPv4 authentication failed"), key="denied", appkey="ks:elsewhere",
        body={"plaintext": "x"}, grpc=_grpc_encrypt("denied")),
    Row("disabled", "POST", "/symmetric-keys/{keyid}/encrypt", 400,
        compat_error("FAILED_PRECONDITION"), key="disabled", body={"plaintext": "x"}, grpc=_grpc_encrypt("disabled")),
    Row("decrypt-garbage", "POST", "/symmetric-keys/{keyid}/decrypt", 400,
        compat_error("INVALID_ARGUMENT", "decryption failed"), key="aes",
        body={"ciphertext": b64(b"\x01" + b"\x00" * 40)}),
    Row("decrypt-not-utf8", "POST", "/symmetric-keys/{keyid}/decrypt", 400,
        compat_error("FAILED_PRECONDITION"), key="aes", body={"ciphertext": lambda s, c: c.ct_binary},
        check=lambda d, s, c: _mentions_v1(d["header"]["resultMessage"])),
    Row("decrypt-with-rsa-oaep-key", "POST", "/symmetric-keys/{keyid}/decrypt", 400,
        compat_error("FAILED_PRECONDITION", Text("key {oaep2048} ", "needs an aes-256 key")), key="oaep2048",
        body={"ciphertext": lambda s, c: c.oaep_ct},
        grpc=lambda c, s: c.decrypt(s.keys["oaep2048"], b"\x00" * 256)),
    Row("sign-with-aes-key", "POST", "/asymmetric-keys/{keyid}/sign", 400,
        compat_error("FAILED_PRECONDITION"), key="aes", body={"plaintext": "x"},
        grpc=lambda c, s: c.sign(s.keys["aes"], b"x")),
]


def _mentions_v1(message: str) -> None:
    assert "/v1" in message, f"a non-UTF-8 plaintext must point to /v1: {message!r}"


def compat_rows(version: str) -> List[Row]:
    put = Row("secret-put", "PUT", "/secrets/{keyid}", 0, None, key="secret", body={"secret": "new value"})
    if version in ("v1.0", "v1.1"):
        # rest-errata.md 2: those versions had no PUT: 405 with Allow: GET
        put.status, put.shape = 405, compat_error("UNIMPLEMENTED")
        put.check = lambda d, s, c: None
    else:
        put.status, put.shape = 403, compat_error("PERMISSION_DENIED", NO_SECRET_WRITE)
    return COMPAT_COMMON[:3] + [put] + COMPAT_COMMON[3:]


COMPAT_CASES = [(v, row) for v in COMPAT_VERSIONS for row in compat_rows(v)]


@pytest.mark.parametrize("version,row", COMPAT_CASES, ids=[f"{v}-{r.id}" for v, r in COMPAT_CASES])
def test_compat_contract(stack, ctx, grpc_client, version, row):
    run(stack, ctx, row, version, grpc_client)


@pytest.mark.parametrize("version", ["v1.4", "v2.0", "v1", "latest"])
def test_compat_other_version_segments_are_not_found(stack, version):
    r = stack.call("GET", stack.fill(f"/keymanager/{version}/appkey/{{ks:open}}/confirm"))
    assert r.status_code == 404, r.text
    assert_common_headers(r)
    assert_shape(r.json(), compat_error("NOT_FOUND", NO_PATH))


def test_compat_put_secret_allow_header(stack):
    for version, allow in [("v1.0", {"GET"}), ("v1.1", {"GET"}), ("v1.2", {"GET", "PUT"}), ("v1.3", {"GET", "PUT"})]:
        r = stack.call("DELETE", stack.fill(f"/keymanager/{version}/appkey/{{ks:open}}/secrets/{{secret}}"))
        assert r.status_code == 405, r.text
        assert {m.strip() for m in r.headers.get("Allow", "").split(",")} == allow, (version, r.headers.get("Allow"))
    r = stack.call("PUT", stack.fill("/keymanager/v1.1/appkey/{ks:open}/secrets/{secret}"), json_body={"secret": "x"})
    assert r.status_code == 405 and r.headers.get("Allow") == "GET", r.text


def test_compat_appkey_that_is_neither_an_id_nor_an_alias(stack):
    r = stack.call("GET", stack.fill("/keymanager/v1.3/appkey/not%20an%20alias/secrets/{secret}"))
    assert r.status_code == 400, r.text
    assert_shape(r.json(), compat_error("INVALID_ARGUMENT", Text("appkey")))


def test_compat_appkey_no_keystore_has_as_alias_is_not_found(stack):
    r = stack.call("GET", stack.fill("/keymanager/v1.3/appkey/my-old-appkey/secrets/{secret}"))
    assert r.status_code == 404, r.text
    assert_shape(r.json(), compat_error("NOT_FOUND", stack.fill("key {secret} not found")))


def test_compat_unknown_appkey_is_not_found(stack, grpc_client):
    """An appkey that is no keystore: the key is not found (as a key of another keystore)."""
    r = stack.call("POST", stack.fill("/keymanager/v1.3/appkey/00000000000000000000000000000000"
                                      "/symmetric-keys/{aes}/encrypt"), json_body={"plaintext": "x"})
    assert r.status_code == 404, r.text
    assert_shape(r.json(), compat_error("NOT_FOUND", stack.fill("key {aes} not found")))


# ------------------------------------------------------------------------ /v1

ERR = {"code": int, "code_name": str, "message": str}
HMAC_WANTED = "this operation needs an hmac key (hmac-sha256, hmac-sha384, hmac-sha512)"
KEY_MISSING = "0123456789abcdef0123456789abcdef"


def _check_whoami(doc, stack, ctx):
    assert doc["client_ip"] == "127.0.0.1"
    assert all(doc[k] == "" for k in ("proxied_by", "asserted_mac", "certificate_sha256", "certificate_subject"))


def _check_openapi(doc, stack, ctx):
    assert doc.get("openapi") == "3.0.3" and "/v1/health" in doc.get("paths", {})


def _check_batch_error(doc, stack, ctx):
    err = doc["results"][1]["error"]
    assert (err["code"], err["code_name"]) == (5, "NOT_FOUND")
    assert err["message"] == f"key {KEY_MISSING} not found"


def _check_pem(doc, stack, ctx):
    assert doc["pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert doc["key_algorithm"] == "ed25519"


V1_ROWS: List[Row] = [
    Row("health", "GET", "/v1/health", 200, {"status": "SERVING"}),
    Row("whoami", "GET", "/v1/whoami", 200,
        {k: str for k in ("client_ip", "proxied_by", "verified_mac", "asserted_mac", "certificate_sha256",
                          "certificate_subject")}, check=_check_whoami),
    Row("encrypt", "POST", "/v1/keys/{key_id}/encrypt", 200, {"ciphertext": B64(), "key_version": 1}, key="aes",
        body={"plaintext": b64(b"hello v1"), "aad": b64(b"ctx")}),
    Row("encrypt-no-aad", "POST", "/v1/keys/{key_id}/encrypt", 200, {"ciphertext": B64(), "key_version": 1},
        key="aes", body={"plaintext": b64(b"hello v1")}),
    Row("decrypt", "POST", "/v1/keys/{key_id}/decrypt", 200, {"plaintext": b64(b"hello v1"), "key_version": 1},
        key="aes", body={"ciphertext": lambda s, c: c.ct_aad, "aad": b64(b"ctx")}),
    Row("decrypt-unspecified-algorithm", "POST", "/v1/keys/{key_id}/decrypt", 200,
        {"plaintext": b64(b"hello v1"), "key_version": 1}, key="aes",
        body={"ciphertext": lambda s, c: c.ct_aad, "aad": b64(b"ctx"),
              "algorithm": "ENCRYPTION_ALGORITHM_UNSPECIFIED"}),
    Row("decrypt-rsa-oaep", "POST", "/v1/keys/{key_id}/decrypt", 200,
        {"plaintext": b64(b"hello oaep"), "key_version": 1}, key="oaep2048",
        body={"ciphertext": lambda s, c: c.oaep_ct, "algorithm": "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256"}),
    Row("decrypt-rsa-oaep-version", "POST", "/v1/keys/{key_id}/decrypt", 200,
        {"plaintext": b64(b"hello oaep"), "key_version": 1}, key="oaep2048",
        body={"ciphertext": lambda s, c: c.oaep_ct, "algorithm": "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256",
              "key_version": 1}),
    Row("generate-data-key", "POST", "/v1/keys/{key_id}/generate-data-key", 200,
        {"plaintext": B64(32), "ciphertext": B64(), "key_version": 1}, key="aes", body={"aad": b64(b"dk")}),
    Row("generate-data-key-{}", "POST", "/v1/keys/{key_id}/generate-data-key", 200,
        {"plaintext": B64(32), "ciphertext": B64(), "key_version": 1}, key="aes", body={}),
    Row("generate-data-key-without-plaintext", "POST", "/v1/keys/{key_id}/generate-data-key-without-plaintext",
        200, {"ciphertext": B64(), "key_version": 1}, key="aes", body={}),
    Row("re-encrypt", "POST", "/v1/keys/{key_id}/re-encrypt", 200,
        {"ciphertext": B64(), "source_key_version": 1, "key_version": 1}, key="aes2",
        body={"ciphertext": lambda s, c: c.ct_aes2}),
    Row("batch-encrypt", "POST", "/v1/batch/encrypt", 200,
        {"results": [{"ok": {"ciphertext": B64(), "key_version": 1}}, {"error": ERR}]},
        body={"items": [{"key_id": "{aes}", "plaintext": b64(b"one"), "aad": b64(b"a")},
                        {"key_id": KEY_MISSING, "plaintext": b64(b"two")}]}, check=_check_batch_error),
    Row("batch-decrypt", "POST", "/v1/batch/decrypt", 200,
        {"results": [{"ok": {"plaintext": b64(b"hello v1"), "key_version": 1}}, {"error": ERR}]},
        body={"items": [{"key_id": "{aes}", "ciphertext": lambda s, c: c.ct_aad, "aad": b64(b"ctx")},
                        {"key_id": KEY_MISSING, "ciphertext": lambda s, c: c.ct_aad}]}, check=_check_batch_error),
    Row("sign-ed25519", "POST", "/v1/keys/{key_id}/sign", 200,
        {"signature": B64(64), "key_version": 1, "algorithm": "SIGNATURE_ALGORITHM_ED25519"}, key="ed",
        body={"message": b64(b"hello sig")}),
    Row("sign-ecdsa-digest", "POST", "/v1/keys/{key_id}/sign", 200,
        {"signature": B64(), "key_version": 1, "algorithm": "SIGNATURE_ALGORITHM_ECDSA_SHA256"}, key="ec",
        body={"digest": b64(hashlib.sha256(b"hello sig").digest()), "algorithm": "SIGNATURE_ALGORITHM_ECDSA_SHA256"}),
    Row("sign-rsa-default", "POST", "/v1/keys/{key_id}/sign", 200,
        {"signature": B64(256), "key_version": 1, "algorithm": "SIGNATURE_ALGORITHM_RSA_PSS_SHA256"}, key="rsa",
        body={"message": b64(b"hello sig")}),
    Row("sign-rsa-pkcs1", "POST", "/v1/keys/{key_id}/sign", 200,
        {"signature": B64(256), "key_version": 1, "algorithm": "SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256"}, key="rsa",
        body={"message": b64(b"hello sig"), "algorithm": "SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256"}),
    Row("verify", "POST", "/v1/keys/{key_id}/verify", 200, {"valid": True, "key_version": 1}, key="ed",
        body={"message": b64(b"hello sig"), "signature": lambda s, c: c.ed_sig}),
    Row("verify-digest-version", "POST", "/v1/keys/{key_id}/verify", 200, {"valid": True, "key_version": 1},
        key="ec", body={"digest": b64(hashlib.sha256(b"hello sig").digest()), "signature": lambda s, c: c.ec_sig,
                        "algorithm": "SIGNATURE_ALGORITHM_ECDSA_SHA256", "key_version": 1}),
    Row("verify-invalid", "POST", "/v1/keys/{key_id}/verify", 200, {"valid": False, "key_version": 0}, key="ed",
        body={"message": b64(b"other"), "signature": lambda s, c: c.ed_sig}),
    Row("sign-ecdsa-p384", "POST", "/v1/keys/{key_id}/sign", 200,
        {"signature": B64(), "key_version": 1, "algorithm": "SIGNATURE_ALGORITHM_ECDSA_SHA384"}, key="p384",
        body={"message": b64(b"hello sig")}),
    Row("sign-ecdsa-p384-digest", "POST", "/v1/keys/{key_id}/sign", 200,
        {"signature": B64(), "key_version": 1, "algorithm": "SIGNATURE_ALGORITHM_ECDSA_SHA384"}, key="p384",
        body={"digest": b64(hashlib.sha384(b"hello sig").digest()), "algorithm": "SIGNATURE_ALGORITHM_ECDSA_SHA384"}),
    Row("sign-ml-dsa", "POST", "/v1/keys/{key_id}/sign", 200,
        {"signature": B64(3309), "key_version": 1, "algorithm": "SIGNATURE_ALGORITHM_ML_DSA"}, key="mldsa65",
        body={"message": b64(b"hello sig"), "algorithm": "SIGNATURE_ALGORITHM_ML_DSA"}),
    Row("generate-mac", "POST", "/v1/keys/{key_id}/generate-mac", 200,
        {"mac": lambda s, c: c.hmac_tag, "key_version": 1, "algorithm": "hmac-sha256"}, key="hmac256",
        body={"message": b64(b"hello mac")}),
    Row("generate-mac-sha384", "POST", "/v1/keys/{key_id}/generate-mac", 200,
        {"mac": B64(48), "key_version": 1, "algorithm": "hmac-sha384"}, key="hmac384",
        body={"message": b64(b"hello mac")}),
    Row("generate-mac-sha512", "POST", "/v1/keys/{key_id}/generate-mac", 200,
        {"mac": B64(64), "key_version": 1, "algorithm": "hmac-sha512"}, key="hmac512", body={"message": ""}),
    Row("verify-mac", "POST", "/v1/keys/{key_id}/verify-mac", 200, {"valid": True, "key_version": 1},
        key="hmac256", body={"message": b64(b"hello mac"), "mac": lambda s, c: c.hmac_tag}),
    Row("verify-mac-version", "POST", "/v1/keys/{key_id}/verify-mac", 200, {"valid": True, "key_version": 1},
        key="hmac256", body={"message": b64(b"hello mac"), "mac": lambda s, c: c.hmac_tag, "key_version": 1}),
    Row("verify-mac-invalid", "POST", "/v1/keys/{key_id}/verify-mac", 200, {"valid": False, "key_version": 0},
        key="hmac256", body={"message": b64(b"other"), "mac": lambda s, c: c.hmac_tag}),
    Row("verify-mac-truncated", "POST", "/v1/keys/{key_id}/verify-mac", 200, {"valid": False, "key_version": 0},
        key="hmac256", body={"message": b64(b"hello mac"), "mac": lambda s, c: b64(unb64(c.hmac_tag)[:16])}),
    Row("public-key", "GET", "/v1/keys/{key_id}/public-key", 200,
        {"spki_der": B64(44), "pem": str, "key_version": 1, "key_algorithm": "ed25519"}, key="ed",
        check=_check_pem),
    Row("public-key-p384", "GET", "/v1/keys/{key_id}/public-key", 200,
        {"spki_der": B64(120), "pem": str, "key_version": 1, "key_algorithm": "ecdsa-p384"}, key="p384"),
    Row("public-key-ml-dsa", "GET", "/v1/keys/{key_id}/public-key", 200,
        {"spki_der": B64(1974), "pem": str, "key_version": 1, "key_algorithm": "ml-dsa-65"}, key="mldsa65"),
    Row("public-key-rsa-oaep", "GET", "/v1/keys/{key_id}/public-key", 200,
        {"spki_der": B64(294), "pem": str, "key_version": 1, "key_algorithm": "rsa-oaep-2048"}, key="oaep2048"),
    Row("public-key-version", "GET", "/v1/keys/{key_id}/public-key", 200,
        {"spki_der": B64(), "pem": str, "key_version": 1, "key_algorithm": "rsa-2048"}, key="rsa",
        params={"key_version": 1}),
    Row("secret", "GET", "/v1/secrets/{key_id}", 200, {"value": "correct horse", "version": 1}, key="secret"),
    Row("secret-version", "GET", "/v1/secrets/{key_id}", 200, {"value": "correct horse", "version": 1},
        key="secret", params={"version": 1}),
    Row("openapi", "GET", "/v1/openapi.json", 200, ANY, check=_check_openapi),
    # Error bodies: the same code and text as gRPC.
    Row("err-not-found", "POST", "/v1/keys/{key_id}/encrypt", 404,
        v1_error("NOT_FOUND", f"key {KEY_MISSING} not found"), key="missing", body={"plaintext": b64(b"x")},
        grpc=lambda c, s: c.encrypt(KEY_MISSING, b"x")),
    Row("err-not-an-id", "POST", "/v1/keys/{key_id}/encrypt", 400, v1_error("INVALID_ARGUMENT"), key="bad_id",
        body={"plaintext": b64(b"x")}, grpc=lambda c, s: c.encrypt("not-an-id", b"x")),
    Row("err-denied", "POST", "/v1/keys/{key_id}/encrypt", 403,
        v1_error("PERMISSION_DENIED", "IPv4 authentication failed"), key="denied", body={"plaintext": b64(b"x")},
        grpc=lambda c, s: c.encrypt(s.keys["denied"], b"x")),
    Row("err-disabled", "POST", "/v1/keys/{key_id}/encrypt", 400, v1_error("FAILED_PRECONDITION"), key="disabled",
        body={"plaintext": b64(b"x")}, grpc=lambda c, s: c.encrypt(s.keys["disabled"], b"x")),
    Row("err-too-long", "POST", "/v1/keys/{key_id}/encrypt", 400, v1_error("INVALID_ARGUMENT"), key="aes",
        body={"plaintext": b64(b"x" * 32769)}, grpc=lambda c, s: c.encrypt(s.keys["aes"], b"x" * 32769)),
    Row("err-decryption-failed", "POST", "/v1/keys/{key_id}/decrypt", 400,
        v1_error("INVALID_ARGUMENT", "decryption failed"), key="aes",
        body={"ciphertext": b64(b"\x01" + b"\x00" * 40)}),
    Row("err-rsa-oaep-decryption-failed", "POST", "/v1/keys/{key_id}/decrypt", 400,
        v1_error("INVALID_ARGUMENT", "decryption failed"), key="oaep2048",
        body={"ciphertext": b64(b"\x00" * 256), "algorithm": "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256"},
        grpc=lambda c, s: c.decrypt_rsa_oaep(s.keys["oaep2048"], b"\x00" * 256)),
    Row("err-rsa-oaep-aad", "POST", "/v1/keys/{key_id}/decrypt", 400,
        v1_error("INVALID_ARGUMENT", "aad: ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256 takes none"), key="oaep2048",
        body={"ciphertext": lambda s, c: c.oaep_ct, "aad": b64(b"ctx"),
              "algorithm": "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256"},
        grpc=lambda c, s: grpc_decrypt_raw(c, key_id=s.keys["oaep2048"], ciphertext=b"\x00" * 256, aad=b"ctx",
                                           algorithm=1)),
    Row("err-rsa-oaep-too-long", "POST", "/v1/keys/{key_id}/decrypt", 400,
        v1_error("INVALID_ARGUMENT", "ciphertext is 513 bytes; the limit is 512"), key="oaep2048",
        body={"ciphertext": b64(b"\x00" * 513), "algorithm": "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256"},
        grpc=lambda c, s: c.decrypt_rsa_oaep(s.keys["oaep2048"], b"\x00" * 513)),
    Row("err-rsa-oaep-version", "POST", "/v1/keys/{key_id}/decrypt", 404,
        v1_error("NOT_FOUND", "key {oaep2048} has no version 9"), key="oaep2048",
        body={"ciphertext": lambda s, c: c.oaep_ct, "algorithm": "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256",
              "key_version": 9},
        grpc=lambda c, s: c.decrypt_rsa_oaep(s.keys["oaep2048"], b"\x00" * 256, key_version=9)),
    Row("err-decrypt-key-version-without-algorithm", "POST", "/v1/keys/{key_id}/decrypt", 400,
        v1_error("INVALID_ARGUMENT", "key_version: only with ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256 (SKM "
                                     "ciphertexts name their version)"), key="aes",
        body={"ciphertext": lambda s, c: c.ct_aad, "aad": b64(b"ctx"), "key_version": 1},
        grpc=lambda c, s: grpc_decrypt_raw(c, key_id=s.keys["aes"], ciphertext=b"\x01" * 40, key_version=1)),
    Row("err-decrypt-not-an-algorithm", "POST", "/v1/keys/{key_id}/decrypt", 400,
        v1_error("INVALID_ARGUMENT", "algorithm: not an encryption algorithm (ENCRYPTION_ALGORITHM_UNSPECIFIED, "
                                     "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256)"), key="oaep2048",
        body={"ciphertext": lambda s, c: c.oaep_ct, "algorithm": "SIGNATURE_ALGORITHM_RSA_PSS_SHA256"}),
    Row("err-decrypt-rsa-oaep-without-algorithm", "POST", "/v1/keys/{key_id}/decrypt", 400,
        v1_error("FAILED_PRECONDITION", Text("key {oaep2048} ", "this operation needs an aes-256 key")),
        key="oaep2048", body={"ciphertext": lambda s, c: c.oaep_ct},
        grpc=lambda c, s: c.decrypt(s.keys["oaep2048"], b"\x00" * 256)),
    Row("err-decrypt-aes-with-rsa-algorithm", "POST", "/v1/keys/{key_id}/decrypt", 400,
        v1_error("FAILED_PRECONDITION",
                 Text("key {aes} ", "this operation needs an rsa-oaep-* key (with algorithm RSAES_OAEP_SHA_256)")),
        key="aes", body={"ciphertext": lambda s, c: c.ct_plain, "algorithm": "ENCRYPTION_ALGORITHM_RSAES_OAEP_SHA_256"},
        grpc=lambda c, s: c.decrypt_rsa_oaep(s.keys["aes"], b"\x00" * 256)),
    Row("err-sign-aes", "POST", "/v1/keys/{key_id}/sign", 400, v1_error("FAILED_PRECONDITION"), key="aes",
        body={"message": b64(b"x")}, grpc=lambda c, s: c.sign(s.keys["aes"], b"x")),
    Row("err-sign-nothing", "POST", "/v1/keys/{key_id}/sign", 400,
        v1_error("INVALID_ARGUMENT", "one of message, digest or mu is required"), key="ed", body={}),
    Row("err-sign-p384-sha256-digest", "POST", "/v1/keys/{key_id}/sign", 400,
        v1_error("INVALID_ARGUMENT", "a SHA-384 digest is 48 bytes; got 32"), key="p384",
        body={"digest": b64(hashlib.sha256(b"x").digest())},
        grpc=lambda c, s: c.sign(s.keys["p384"], digest=hashlib.sha256(b"x").digest())),
    Row("err-sign-ml-dsa-digest", "POST", "/v1/keys/{key_id}/sign", 400,
        v1_error("FAILED_PRECONDITION", "ml-dsa-65 keys sign messages, not digests"), key="mldsa65",
        body={"digest": b64(hashlib.sha256(b"x").digest())},
        grpc=lambda c, s: c.sign(s.keys["mldsa65"], digest=hashlib.sha256(b"x").digest())),
    Row("err-mac-of-ed25519", "POST", "/v1/keys/{key_id}/generate-mac", 400,
        v1_error("FAILED_PRECONDITION", Text("key {ed} ", HMAC_WANTED)),
        key="ed", body={"message": b64(b"x")}, grpc=lambda c, s: c.generate_mac(s.keys["ed"], b"x")),
    Row("err-mac-too-long", "POST", "/v1/keys/{key_id}/generate-mac", 400,
        v1_error("INVALID_ARGUMENT", "message is 4097 bytes; the limit is 4096"), key="hmac256",
        body={"message": b64(b"x" * 4097)}, grpc=lambda c, s: c.generate_mac(s.keys["hmac256"], b"x" * 4097)),
    Row("err-mac-nothing", "POST", "/v1/keys/{key_id}/generate-mac", 400,
        v1_error("INVALID_ARGUMENT", "message is required"), key="hmac256", body={}),
    Row("err-verify-mac-of-aes", "POST", "/v1/keys/{key_id}/verify-mac", 400,
        v1_error("FAILED_PRECONDITION", Text("key {aes} ", HMAC_WANTED)),
        key="aes", body={"message": b64(b"x"), "mac": b64(b"\x00" * 32)},
        grpc=lambda c, s: c.verify_mac(s.keys["aes"], b"\x00" * 32, b"x")),
    Row("err-verify-mac-too-long", "POST", "/v1/keys/{key_id}/verify-mac", 400,
        v1_error("INVALID_ARGUMENT", "mac is 65 bytes; the limit is 64"), key="hmac512",
        body={"message": b64(b"x"), "mac": b64(b"\x00" * 65)},
        grpc=lambda c, s: c.verify_mac(s.keys["hmac512"], b"\x00" * 65, b"x")),
    Row("err-verify-mac-version", "POST", "/v1/keys/{key_id}/verify-mac", 404,
        v1_error("NOT_FOUND", "key {hmac256} has no version 9"), key="hmac256",
        body={"message": b64(b"x"), "mac": b64(b"\x00" * 32), "key_version": 9},
        grpc=lambda c, s: c.verify_mac(s.keys["hmac256"], b"\x00" * 32, b"x", key_version=9)),
    Row("err-verify-mac-denied", "POST", "/v1/keys/{key_id}/verify-mac", 403,
        v1_error("PERMISSION_DENIED", "IPv4 authentication failed"), key="denied",
        body={"message": b64(b"x"), "mac": b64(b"\x00" * 32)},
        grpc=lambda c, s: c.verify_mac(s.keys["denied"], b"\x00" * 32, b"x")),
    Row("err-public-key-version", "GET", "/v1/keys/{key_id}/public-key", 404,
        v1_error("NOT_FOUND", "key {ed} has no version 9"), key="ed", params={"key_version": 9},
        grpc=lambda c, s: c.get_public_key(s.keys["ed"], 9)),
    Row("err-secret-of-aes", "GET", "/v1/secrets/{key_id}", 400, v1_error("FAILED_PRECONDITION"), key="aes",
        grpc=lambda c, s: c.get_secret(s.keys["aes"])),
    Row("err-secret-denied", "GET", "/v1/secrets/{key_id}", 403,
        v1_error("PERMISSION_DENIED", "IPv4 authentication failed"), key="denied_secret",
        grpc=lambda c, s: c.get_secret(s.keys["denied_secret"])),
]


@pytest.mark.parametrize("row", V1_ROWS, ids=[r.id for r in V1_ROWS])
def test_v1_contract(stack, ctx, grpc_client, row):
    run(stack, ctx, row, None, grpc_client)


def test_skm_dev_announces_rest_and_both_profiles_name_it(stack):
    import tomllib

    port = stack.port_base + 7
    assert stack.rest == f"127.0.0.1:{port}"
    with open(stack.operator_profile, "rb") as f:
        assert tomllib.load(f).get("rest_endpoint") == stack.rest, "the operator profile names rest_endpoint too"
    text = stack.log.read_text(errors="replace")
    # rest-spec.md: `skm dev: REST API at https://127.0.0.1:B+7 (CA: DIR/app/ca.pem)`; a path after the
    # port or a docs pointer after the CA is tolerated, the address and the CA file are not.
    pattern = (re.escape(f"skm dev: REST API at https://127.0.0.1:{port}") + r"(/v1)? \(CA: "
               + re.escape(str(stack.dir / "app" / "ca.pem")) + r"[;)]")
    assert re.search(pattern, text), f"skm dev's stderr has no line like {pattern!r}"


def test_tls_1_3_only(stack):
    """The REST listener speaks TLS 1.3 only, with the deployment CA's certificate for 127.0.0.1."""
    import socket
    import ssl

    host, port = stack.rest.rsplit(":", 1)
    ctx13 = ssl.create_default_context(cafile=str(stack.ca))
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx13.wrap_socket(raw, server_hostname=host) as tls:
            assert tls.version() == "TLSv1.3"
    ctx12 = ssl.create_default_context(cafile=str(stack.ca))
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            ctx12.wrap_socket(raw, server_hostname=host).close()
