"""REST calls are audited like gRPC calls: same operation names, same
results, `front_end` "rest" (gRPC: "grpc"), read with `skm audit list
--json` over the operator profile."""

from __future__ import annotations

import json
from typing import Any, Dict, List

from conftest import b64

FRONT_END_FIELDS = ("front_end", "frontEnd", "via")


def audit(stack, key: str) -> List[Dict[str, Any]]:
    out = stack.skm("--json", "audit", "list", "--key", stack.keys[key])
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def front_end(entry: Dict[str, Any]) -> str:
    for name in FRONT_END_FIELDS:
        if name in entry:
            return entry[name]
    raise AssertionError(
        "`skm audit list --json` prints no front end field (looked for "
        f"{', '.join(FRONT_END_FIELDS)}); it has {sorted(entry)}. AuditEntry.front_end (admin.proto field 13) "
        "is not printed by cli/src/ops/manage.rs print_audit_entries")


def application(entries):
    """Entries of applications' calls (not the operator's CreateKey and the like)."""
    return [e for e in entries if not e.get("operator")]


def uses(entries, fe: str):
    return [(e["operation"], e["result"]) for e in application(entries) if front_end(e) == fe]


def test_rest_calls_are_audited_like_grpc(stack, grpc_client):
    aes, ed = stack.keys["audit_aes"], stack.keys["audit_ed"]
    compat = f"/keymanager/v1.3/appkey/{stack.keystores['open']}"

    # gRPC
    ct = grpc_client.encrypt(aes, b"a").ciphertext
    grpc_client.decrypt(aes, ct)
    grpc_client.generate_data_key(aes)
    grpc_client.generate_data_key_without_plaintext(aes)
    sig = grpc_client.sign(ed, b"m").signature
    grpc_client.verify(ed, sig, b"m")
    grpc_client.get_public_key(ed)

    # /v1, the same calls
    def v1(path, body=None, method="POST"):
        r = stack.call(method, path, json_body=body)
        assert r.status_code == 200, r.text
        return r.json()

    c = v1(f"/v1/keys/{aes}/encrypt", {"plaintext": b64(b"a")})
    v1(f"/v1/keys/{aes}/decrypt", {"ciphertext": c["ciphertext"]})
    v1(f"/v1/keys/{aes}/generate-data-key", {})
    v1(f"/v1/keys/{aes}/generate-data-key-without-plaintext", {})
    s = v1(f"/v1/keys/{ed}/sign", {"message": b64(b"m")})
    v1(f"/v1/keys/{ed}/verify", {"message": b64(b"m"), "signature": s["signature"]})
    v1(f"/v1/keys/{ed}/public-key", method="GET")

    entries_aes, entries_ed = audit(stack, "audit_aes"), audit(stack, "audit_ed")
    grpc_ops = uses(entries_aes, "grpc") + uses(entries_ed, "grpc")
    rest_ops = uses(entries_aes, "rest") + uses(entries_ed, "rest")
    assert grpc_ops == [("Encrypt", "allowed"), ("Decrypt", "allowed"), ("GenerateDataKey", "allowed"),
                        ("GenerateDataKeyWithoutPlaintext", "allowed"), ("Sign", "allowed"),
                        ("Verify", "allowed"), ("GetPublicKey", "allowed")], grpc_ops
    assert rest_ops == grpc_ops, "REST is audited with the gRPC operation names"

    # The compatible paths are REST too, with the operation they map to.
    before = len(uses(audit(stack, "audit_aes"), "rest"))
    r = stack.call("POST", f"{compat}/symmetric-keys/{aes}/encrypt", json_body={"plaintext": "x"})
    assert r.status_code == 200, r.text
    r = stack.call("POST", f"{compat}/symmetric-keys/{aes}/decrypt",
                   json_body={"ciphertext": r.json()["body"]["ciphertext"]})
    assert r.status_code == 200, r.text
    r = stack.call("POST", f"{compat}/symmetric-keys/{aes}/create-local-key", json_body={})
    assert r.status_code == 200, r.text
    after = uses(audit(stack, "audit_aes"), "rest")[before:]
    assert after == [("Encrypt", "allowed"), ("Decrypt", "allowed"), ("GenerateDataKey", "allowed")], after


def admin_list_audit(stack, key: str):
    """ListAudit over the admin plane with the operator certificate (what
    `skm audit list` calls), to tell the server's entries from the CLI's output."""
    import tomllib

    import grpc
    from skm.admin.v1 import admin_pb2, admin_pb2_grpc

    with open(stack.operator_profile, "rb") as f:
        prof = tomllib.load(f)
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(prof["ca"], "rb").read(),
        private_key=open(prof["operator"]["key"], "rb").read(),
        certificate_chain=open(prof["operator"]["cert"], "rb").read(),
    )
    with grpc.secure_channel(prof["admin_endpoint"], creds) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        page = stub.ListAudit(admin_pb2.ListAuditRequest(key_id=stack.keys[key], limit=1000), timeout=30)
    return [e for e in page.entries if not e.operator]


def test_the_server_records_front_end_rest(stack, grpc_client):
    """The entries themselves (admin ListAudit): REST calls say "rest", gRPC calls "grpc"."""
    key = stack.keys["audit_aes"]
    grpc_client.encrypt(key, b"via grpc")
    r = stack.call("POST", f"/v1/keys/{key}/encrypt", json_body={"plaintext": b64(b"via rest")})
    assert r.status_code == 200, r.text
    r = stack.call("POST", f"/keymanager/v1.0/appkey/{stack.keystores['open']}/symmetric-keys/{key}/encrypt",
                   json_body={"plaintext": "via compat"})
    assert r.status_code == 200, r.text
    last = [(e.operation, e.front_end, e.result) for e in admin_list_audit(stack, "audit_aes")][-3:]
    assert last == [("Encrypt", "grpc", "allowed"), ("Encrypt", "rest", "allowed"), ("Encrypt", "rest", "allowed")], last


def test_rest_denials_are_audited_with_the_failed_method(stack, grpc_client):
    import skm

    key = stack.keys["denied"]
    try:
        grpc_client.encrypt(key, b"x")
    except skm.PermissionDenied:
        pass
    r = stack.call("POST", f"/v1/keys/{key}/encrypt", json_body={"plaintext": b64(b"x")})
    assert r.status_code == 403
    entries = application(audit(stack, "denied"))
    last = {fe: [e for e in entries if front_end(e) == fe][-1] for fe in ("grpc", "rest")}
    assert last["rest"]["operation"] == last["grpc"]["operation"] == "Encrypt"
    assert last["rest"]["result"] == last["grpc"]["result"] == "denied: IPv4 authentication failed"
    assert last["rest"]["caller_ip"] == "127.0.0.1"
