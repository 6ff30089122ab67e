"""HTTP/1.1 connection handling of the REST listener: a connection stays
usable after an answer given without reading the request body (a refusal,
a wrong method), or the answer says `Connection: close`; and a 413 reaches
a client that sends a body far over the limit (RFC 9112 9.3, 9.6)."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest

from conftest import MARKER, b64

EARLY_ANSWERS = [
    # (method, path, body, status): answered before the body is needed
    ("PUT", "/keymanager/v1.3/appkey/{ks:open}/secrets/{secret}", {"secret": "x"}, 403),
    ("POST", "/keymanager/v1.3/appkey/{ks:open}/symmetric-keys/{aes}/symmetric-key", {}, 405),
    ("POST", "/v1/secrets/{secret}", {}, 405),
    ("POST", "/v1/keys/{aes}/frobnicate", {}, 404),
    ("POST", "/keymanager/v1.3/appkey/{ks:elsewhere}/symmetric-keys/{denied}/encrypt", {"plaintext": "x"}, 403),
]


def connection(stack) -> http.client.HTTPSConnection:
    host, port = stack.rest.rsplit(":", 1)
    return http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=str(stack.ca)),
                                       timeout=10)


@pytest.mark.parametrize("method,path,body,status", EARLY_ANSWERS, ids=[f"{m}-{s}-{p.rsplit('/', 1)[1]}"
                                                                        for m, p, _, s in EARLY_ANSWERS])
def test_keep_alive_after_an_early_answer(stack, method, path, body, status):
    """50 times: the early answer, then a second request on the same connection."""
    lost = []
    for attempt in range(50):
        conn = connection(stack)
        try:
            conn.request(method, stack.fill(path), body=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status == status
            if (r.getheader("Connection") or "").lower() == "close":
                continue  # announced: fine
            try:
                conn.request("POST", stack.fill("/v1/keys/{aes}/encrypt"),
                             body=json.dumps({"plaintext": b64(b"again")}).encode(),
                             headers={"Content-Type": "application/json"})
                again = conn.getresponse()
                again.read()
                assert again.status == 200
            except (OSError, http.client.HTTPException) as e:
                lost.append(f"attempt {attempt}: {type(e).__name__}")
        finally:
            conn.close()
    assert not lost, ("the server closed a kept-alive connection after answering without reading the body, "
                      "and without `Connection: close`: " + ", ".join(lost))


@pytest.mark.parametrize("path,field,size", [
    ("/v1/keys/{aes}/encrypt", "plaintext", 1_000_000),
    ("/v1/keys/{ed}/sign", "message", 70_000),          # over max_request_bytes (64 KiB)
    ("/v1/batch/encrypt", "items", 8_000_000),          # over ~100 x the encrypt limit
])
def test_a_413_reaches_the_client_of_a_large_body(stack, path, field, size):
    """A body far over the limit still gets its 413: the server must not
    close the connection on unread request bytes (a TCP reset then destroys
    the answer before the client reads it; RFC 9112 9.6, lingering close)."""
    import requests

    if field == "items":
        body = {"items": [{"key_id": "{aes}", "plaintext": b64(MARKER.encode() * 1700)}] * (size // 43000)}
    else:
        body = {field: b64(MARKER.encode() * (size // 25))}
    data = stack.fill(json.dumps(body)).encode()
    failures = []
    for attempt in range(5):
        try:
            r = stack.call("POST", stack.fill(path), data=data)
        except requests.RequestException as e:
            failures.append(f"attempt {attempt}: {type(e).__name__}: {str(e)[:160]}")
            continue
        assert r.status_code == 413, r.text[:300]
        assert r.json()["error"]["code_name"] == "RESOURCE_EXHAUSTED" and MARKER not in r.text
    assert not failures, f"{len(data)}-byte body: the 413 was lost: " + "; ".join(failures)
