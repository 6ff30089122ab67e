"""Keystore policies over REST: the same checks as gRPC, the same denial text
(naming the check that failed), on both surfaces.

IPv4 (allowed / not allowed), asserted MAC (X-TOAST-CLIENT-MAC-ADDR on the
compatible paths, x-skm-client-mac on /v1) on a keystore that accepts
asserted MACs and on one that doesn't, client certificate required (with and
without one), and the AND (--mode all) / OR (--mode any) combinations.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import pytest

from conftest import (
    CODES, MAC, OTHER_MAC, Stack, assert_common_headers, b64, cert_pair, grpc_with, leaf_sha256,
)

COMPAT_MAC = "X-TOAST-CLIENT-MAC-ADDR"
V1_MAC = "x-skm-client-mac"


def rest_encrypt(stack: Stack, surface: str, store: str, key: str, *, mac: Optional[str] = None,
                 cert: Optional[Tuple[str, str]] = None):
    """Encrypt on one surface; returns (HTTP status, code name or "OK", message)."""
    headers: Dict[str, str] = {}
    if surface == "v1":
        if mac is not None:
            headers[V1_MAC] = mac
        r = stack.call("POST", f"/v1/keys/{stack.keys[key]}/encrypt", json_body={"plaintext": b64(b"policy")},
                       headers=headers, cert=cert)
        assert_common_headers(r)
        doc = r.json()
        if r.status_code == 200:
            return 200, "OK", ""
        return r.status_code, doc["error"]["code_name"], doc["error"]["message"]
    if mac is not None:
        headers[COMPAT_MAC] = mac
    r = stack.call("POST", f"/keymanager/v1.3/appkey/{stack.keystores[store]}/symmetric-keys/{stack.keys[key]}/encrypt",
                   json_body={"plaintext": "policy"}, headers=headers, cert=cert)
    assert_common_headers(r)
    h = r.json()["header"]
    if r.status_code == 200:
        assert h["isSuccessful"] is True and h["resultCode"] == 0
        return 200, "OK", ""
    assert h["isSuccessful"] is False and r.json()["body"] is None
    name = {-v: k for k, v in CODES.items()}[h["resultCode"]]
    return r.status_code, name, h["resultMessage"]


def grpc_encrypt(stack: Stack, key: str, *, mac: Optional[str] = None, store: Optional[str] = None):
    """The same call over gRPC (the SDK): ("OK", "") or (code name, message)."""
    import skm

    with grpc_with(stack, store=store, mac=mac) as c:
        try:
            c.encrypt(stack.keys[key], b"policy")
        except skm.SkmError as e:
            return (e.code.name if e.code is not None else "LOCAL"), e.message
        return "OK", ""


def expect(stack, surface, store, key, status, message, *, mac=None, cert_store=None):
    cert = cert_pair(stack, cert_store) if cert_store else None
    got = rest_encrypt(stack, surface, store, key, mac=mac, cert=cert)
    want_grpc = grpc_encrypt(stack, key, mac=mac, store=cert_store)
    if status == 200:
        assert got == (200, "OK", ""), got
        assert want_grpc == ("OK", ""), f"gRPC disagrees: {want_grpc}"
    else:
        assert got == (status, "PERMISSION_DENIED", message), got
        assert want_grpc == ("PERMISSION_DENIED", message), f"gRPC says {want_grpc}"


SURFACES = ["v1", "compat"]


@pytest.mark.parametrize("surface", SURFACES)
def test_ipv4_policy(stack, surface):
    expect(stack, surface, "elsewhere", "denied", 403, "IPv4 authentication failed")
    expect(stack, surface, "open", "aes", 200, "")


@pytest.mark.parametrize("surface", SURFACES)
def test_asserted_mac_counts_only_where_the_keystore_allows_it(stack, surface):
    # mac-lax allows asserted MACs: the right one passes, a wrong one or none fails.
    expect(stack, surface, "mac_lax", "lax_aes", 200, "", mac=MAC)
    expect(stack, surface, "mac_lax", "lax_aes", 403, "MAC authentication failed", mac=OTHER_MAC)
    expect(stack, surface, "mac_lax", "lax_aes", 403, "MAC authentication failed")
    # mac-strict doesn't: even the right MAC, asserted, fails.
    expect(stack, surface, "mac_strict", "strict_aes", 403, "MAC authentication failed", mac=MAC)


def test_each_surface_shows_the_mac_its_header_asserts(stack):
    """/v1/whoami shows x-skm-client-mac (as on gRPC), normalised; …/confirm
    shows X-TOAST-CLIENT-MAC-ADDR as clientMacHeader ("" without it)."""
    r = stack.call("GET", "/v1/whoami", headers={V1_MAC: MAC.upper()})
    assert r.status_code == 200 and r.json()["asserted_mac"] == MAC, r.text
    r = stack.call("GET", f"/keymanager/v1.2/appkey/{stack.keystores['mac_lax']}/confirm", headers={COMPAT_MAC: MAC})
    assert r.status_code == 200 and r.json()["body"]["clientMacHeader"] == MAC, r.text
    r = stack.call("GET", f"/keymanager/v1.2/appkey/{stack.keystores['mac_lax']}/confirm")
    assert r.json()["body"]["clientMacHeader"] == ""


@pytest.mark.parametrize("surface", SURFACES)
def test_client_certificate_required(stack, surface):
    expect(stack, surface, "certs", "cert_aes", 403, "certificate authentication failed")
    expect(stack, surface, "certs", "cert_aes", 200, "", cert_store="certs")
    # A certificate of another keystore's CA is not this keystore's.
    expect(stack, surface, "certs", "cert_aes", 403, "certificate authentication failed", cert_store="any-mode")


def test_what_the_server_sees_of_a_certificate(stack):
    cert = cert_pair(stack, "certs")
    me = stack.call("GET", "/v1/whoami", cert=cert).json()
    assert me["certificate_sha256"] == leaf_sha256(stack.files["certs_cert"])
    assert "rest-certs" in me["certificate_subject"]
    with grpc_with(stack, store="certs") as c:
        g = c.who_am_i()
    assert (g.certificate_sha256, g.certificate_subject) == (me["certificate_sha256"], me["certificate_subject"])
    path = f"/keymanager/v1.0/appkey/{stack.keystores['certs']}/confirm"
    assert stack.call("GET", path, cert=cert).json()["body"]["clientSentCertificate"] is True
    assert stack.call("GET", path).json()["body"]["clientSentCertificate"] is False


@pytest.mark.parametrize("surface", SURFACES)
def test_mode_all_needs_every_method(stack, surface):
    expect(stack, surface, "all_mode", "all_aes", 403, "IPv4 authentication failed", cert_store="all-mode")
    expect(stack, surface, "all_mode", "all_aes", 403,
           "IPv4 authentication failed; certificate authentication failed")


@pytest.mark.parametrize("surface", SURFACES)
def test_mode_any_needs_one_method(stack, surface):
    expect(stack, surface, "any_mode", "any_aes", 200, "", cert_store="any-mode")
    expect(stack, surface, "any_mode", "any_aes", 403,
           "IPv4 authentication failed; certificate authentication failed")


@pytest.mark.parametrize("surface", SURFACES)
def test_public_key_needs_the_keystore_checks(stack, surface):
    """Unlike the modelled service, publicKey is answered only to callers
    that pass the keystore's policy (rest-spec.md, Differences)."""
    denied = stack.skm("key", "create", "elsewhere", f"sig-{surface}", "--type", "ed25519")
    if surface == "v1":
        r = stack.call("GET", f"/v1/keys/{denied}/public-key")
        assert r.status_code == 403 and r.json()["error"]["message"] == "IPv4 authentication failed", r.text
    else:
        r = stack.call("GET", f"/keymanager/v1.3/appkey/{stack.keystores['elsewhere']}"
                              f"/asymmetric-keys/{denied}/publicKey", params={"keyVersion": 1})
        assert r.status_code == 403, r.text
        assert r.json()["header"]["resultMessage"] == "IPv4 authentication failed"
