"""Round trips across planes: what REST makes, gRPC (the Python SDK) takes,
and the reverse, on both REST surfaces. Standard signatures are also checked
with `cryptography` against the public key REST hands out."""

from __future__ import annotations

import hashlib

import pytest

import skm
from conftest import b64, unb64

A = skm.SignatureAlgorithm
V1_ALG = {
    A.ED25519: "SIGNATURE_ALGORITHM_ED25519",
    A.ECDSA_SHA256: "SIGNATURE_ALGORITHM_ECDSA_SHA256",
    A.RSA_PSS_SHA256: "SIGNATURE_ALGORITHM_RSA_PSS_SHA256",
    A.RSA_PKCS1_SHA256: "SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256",
}


def compat(stack, path: str) -> str:
    return f"/keymanager/v1.3/appkey/{stack.keystores['open']}" + stack.fill(path)


def post(stack, path, body):
    r = stack.call("POST", stack.fill(path), json_body=body)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:400]}"
    return r.json()


def post_compat(stack, path, body=None, *, version="v1.3"):
    full = f"/keymanager/{version}/appkey/{stack.keystores['open']}" + stack.fill(path)
    r = stack.call("POST", full, json_body=body) if body is not None else stack.call("POST", full, content_type=None)
    assert r.status_code == 200, f"{full}: {r.status_code} {r.text[:400]}"
    doc = r.json()
    assert doc["header"]["isSuccessful"] is True
    return doc["body"]


def test_v1_encrypt_then_grpc_decrypt_and_back(stack, grpc_client):
    key = stack.keys["aes"]
    plain = bytes(range(256)) * 3
    doc = post(stack, "/v1/keys/{aes}/encrypt", {"plaintext": b64(plain), "aad": b64(b"order-7")})
    assert grpc_client.decrypt(key, unb64(doc["ciphertext"]), aad=b"order-7").plaintext == plain
    ct = grpc_client.encrypt(key, plain, aad=b"order-8").ciphertext
    back = post(stack, "/v1/keys/{aes}/decrypt", {"ciphertext": b64(ct), "aad": b64(b"order-8")})
    assert unb64(back["plaintext"]) == plain and back["key_version"] == 1


def test_requests_accept_url_safe_and_unpadded_base64(stack, grpc_client):
    key = stack.keys["aes"]
    plain = b"\xfb\xff\xfe?>"  # standard base64 has + and /
    std = b64(plain)
    assert "+" in std or "/" in std
    for text in (std, std.rstrip("="), std.replace("+", "-").replace("/", "_"),
                 std.replace("+", "-").replace("/", "_").rstrip("=")):
        doc = post(stack, "/v1/keys/{aes}/encrypt", {"plaintext": text})
        assert grpc_client.decrypt(key, unb64(doc["ciphertext"])).plaintext == plain, text


@pytest.mark.parametrize("version", ["v1.0", "v1.3"])
def test_compat_encrypt_then_grpc_decrypt_and_back(stack, grpc_client, version):
    key = stack.keys["aes"]
    text = "postgres://app:s3cret@db/prod ✓ 한국어"
    body = post_compat(stack, "/symmetric-keys/{aes}/encrypt", {"plaintext": text}, version=version)
    ct = unb64(body["ciphertext"])
    assert ct[0] == 1 and ct[1:17].hex() == key, "the compat ciphertext is base64 of an SKM ciphertext"
    assert grpc_client.decrypt(key, ct).plaintext == text.encode()
    mine = grpc_client.encrypt(key, text.encode()).ciphertext
    back = post_compat(stack, "/symmetric-keys/{aes}/decrypt", {"ciphertext": b64(mine)}, version=version)
    assert back == {"plaintext": text, "keyVersion": 1}
    # and compat ↔ /v1
    v1 = post(stack, "/v1/keys/{aes}/decrypt", {"ciphertext": body["ciphertext"]})
    assert unb64(v1["plaintext"]) == text.encode()


@pytest.mark.parametrize("name,alg", [("ed", A.ED25519), ("ec", A.ECDSA_SHA256), ("rsa", A.RSA_PSS_SHA256),
                                      ("rsa", A.RSA_PKCS1_SHA256)])
def test_v1_sign_grpc_verify_and_back(stack, grpc_client, name, alg):
    key = stack.keys[name]
    msg = b"release-1.2.3"
    doc = post(stack, f"/v1/keys/{{{name}}}/sign", {"message": b64(msg), "algorithm": V1_ALG[alg]})
    assert doc["algorithm"] == V1_ALG[alg]
    assert grpc_client.verify(key, unb64(doc["signature"]), msg, algorithm=alg).valid
    sig = grpc_client.sign(key, msg, algorithm=alg).signature
    v = post(stack, f"/v1/keys/{{{name}}}/verify", {"message": b64(msg), "signature": b64(sig),
                                                   "algorithm": V1_ALG[alg]})
    assert v == {"valid": True, "key_version": 1}
    if name != "ed":
        d = post(stack, f"/v1/keys/{{{name}}}/sign",
                 {"digest": b64(hashlib.sha256(msg).digest()), "algorithm": V1_ALG[alg]})
        assert grpc_client.verify(key, unb64(d["signature"]), msg, algorithm=alg).valid


@pytest.mark.parametrize("name,alg", [("ed", A.ED25519), ("ec", A.ECDSA_SHA256), ("rsa", A.RSA_PSS_SHA256)])
def test_compat_sign_grpc_verify_and_back(stack, grpc_client, name, alg):
    key = stack.keys[name]
    text = "sign me ✓"
    body = post_compat(stack, f"/asymmetric-keys/{{{name}}}/sign", {"plaintext": text})
    assert grpc_client.verify(key, unb64(body["signature"]), text.encode(), algorithm=alg).valid, \
        "compat sign uses the key's own algorithm over the UTF-8 text"
    sig = grpc_client.sign(key, text.encode()).signature
    v = post_compat(stack, f"/asymmetric-keys/{{{name}}}/verify", {"plaintext": text, "signature": b64(sig)})
    assert v == {"result": True, "keyVersion": 1}
    v = post_compat(stack, f"/asymmetric-keys/{{{name}}}/verify", {"plaintext": text + "!", "signature": b64(sig)})
    assert v["result"] is False


@pytest.mark.parametrize("standard,alg", [("RSASSA-PSS", A.RSA_PSS_SHA256), ("RSASSA-PKCS1-v1_5", A.RSA_PKCS1_SHA256)])
def test_sign_standard_is_standard(stack, grpc_client, standard, alg):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = stack.keys["rsa"]
    data = bytes(range(200)) * 20  # binary, 4000 bytes
    body = post_compat(stack, "/asymmetric-keys/{rsa}/sign-standard", {"plaintext": b64(data), "algorithm": standard})
    sig = unb64(body["signature"])
    assert grpc_client.verify(key, sig, data, algorithm=alg).valid
    r = stack.call("GET", compat(stack, "/asymmetric-keys/{rsa}/publicKey"), params={"keyVersion": 1})
    pub = serialization.load_der_public_key(unb64(r.json()["body"]["encodedKey"]))
    pad = (padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32) if standard == "RSASSA-PSS"
           else padding.PKCS1v15())
    pub.verify(sig, data, pad, hashes.SHA256())  # raises if not the standard scheme
    theirs = grpc_client.sign(key, data, algorithm=alg).signature
    v = post_compat(stack, "/asymmetric-keys/{rsa}/verify-standard",
                    {"plaintext": b64(data), "signature": b64(theirs), "algorithm": standard, "keyVersion": 1})
    assert v == {"result": True, "keyVersion": 1}
    v = post_compat(stack, "/asymmetric-keys/{rsa}/verify-standard",
                    {"plaintext": b64(data + b"x"), "signature": b64(theirs), "algorithm": standard})
    assert v["result"] is False


def test_public_keys_agree_across_planes(stack, grpc_client):
    for name in ("ed", "ec", "rsa"):
        g = grpc_client.get_public_key(stack.keys[name])
        v1 = stack.call("GET", stack.fill(f"/v1/keys/{{{name}}}/public-key")).json()
        assert unb64(v1["spki_der"]) == g.spki_der and v1["pem"] == g.pem and v1["key_algorithm"] == g.key_algorithm
        c = stack.call("GET", compat(stack, f"/asymmetric-keys/{{{name}}}/publicKey"), params={"keyVersion": 1})
        assert unb64(c.json()["body"]["encodedKey"]) == g.spki_der


def test_v1_data_keys_decrypt_over_grpc(stack, grpc_client):
    key = stack.keys["aes"]
    dk = post(stack, "/v1/keys/{aes}/generate-data-key", {"aad": b64(b"file-1")})
    assert grpc_client.decrypt(key, unb64(dk["ciphertext"]), aad=b"file-1").plaintext == unb64(dk["plaintext"])
    bare = post(stack, "/v1/keys/{aes}/generate-data-key-without-plaintext", {})
    assert len(grpc_client.decrypt(key, unb64(bare["ciphertext"])).plaintext) == 32
    g = grpc_client.generate_data_key(key)
    back = post(stack, "/v1/keys/{aes}/decrypt", {"ciphertext": b64(g.ciphertext)})
    assert unb64(back["plaintext"]) == g.plaintext


def test_create_local_key_decrypts_to_local_key_plaintext(stack, grpc_client):
    body = post_compat(stack, "/symmetric-keys/{aes}/create-local-key")
    assert len(unb64(body["localKeyPlaintext"])) == 32
    back = post_compat(stack, "/symmetric-keys/{aes}/decrypt", {"ciphertext": body["localKeyCiphertext"]})
    assert back == {"plaintext": body["localKeyPlaintext"], "keyVersion": body["keyVersion"]}
    # over gRPC the same ciphertext holds the base64 text (as the modelled service's decrypt returns it)
    g = grpc_client.decrypt(stack.keys["aes"], unb64(body["localKeyCiphertext"]))
    assert g.plaintext == body["localKeyPlaintext"].encode()


def test_re_encrypt_and_batches_cross(stack, grpc_client):
    key = stack.keys["aes2"]
    ct = grpc_client.encrypt(key, b"moved", aad=b"m").ciphertext
    re = post(stack, "/v1/keys/{aes2}/re-encrypt", {"ciphertext": b64(ct), "aad": b64(b"m")})
    assert grpc_client.decrypt(key, unb64(re["ciphertext"]), aad=b"m").plaintext == b"moved"
    items = [{"key_id": stack.keys["aes"], "plaintext": b64(b"b%d" % i)} for i in range(5)]
    out = post(stack, "/v1/batch/encrypt", {"items": items})["results"]
    for i, res in enumerate(out):
        assert grpc_client.decrypt(stack.keys["aes"], unb64(res["ok"]["ciphertext"])).plaintext == b"b%d" % i
    cts = grpc_client.batch_encrypt([(stack.keys["aes"], b"g%d" % i) for i in range(3)])
    back = post(stack, "/v1/batch/decrypt",
                {"items": [{"key_id": stack.keys["aes"], "ciphertext": b64(c.ciphertext)} for c in cts]})["results"]
    assert [unb64(r["ok"]["plaintext"]) for r in back] == [b"g0", b"g1", b"g2"]


def test_secrets_agree(stack, grpc_client):
    g = grpc_client.get_secret(stack.keys["secret"])
    v1 = stack.call("GET", stack.fill("/v1/secrets/{secret}")).json()
    c = stack.call("GET", compat(stack, "/secrets/{secret}")).json()["body"]
    assert (v1["value"], v1["version"]) == (g.value, g.version) and c["secret"] == g.value
