"""Every user-plane call of skm.Client against the real stack, and each bad
input with its exception."""

from __future__ import annotations

import hashlib

import grpc
import pytest

import skm
from skm.api.v1 import api_pb2, api_pb2_grpc


def test_encrypt_decrypt_and_re_encrypt(client, stack):
    key = stack.keys["aes"]
    enc = client.encrypt(key, b"hello", aad=b"ctx")
    assert isinstance(enc, skm.Encrypted) and enc.key_version == 1
    assert enc.ciphertext[0] == 1 and enc.ciphertext[1:17].hex() == key
    dec = client.decrypt(key, enc.ciphertext, aad=b"ctx")
    assert dec == skm.Decrypted(b"hello", 1)
    stack.skm("key", "rotate", stack.keys["aes2"])
    old = client.encrypt(stack.keys["aes2"], b"x")
    assert old.key_version == 2
    re = client.re_encrypt(stack.keys["aes2"], old.ciphertext)
    assert (re.source_key_version, re.key_version) == (2, 2)
    assert client.decrypt(stack.keys["aes2"], re.ciphertext).plaintext == b"x"


def test_ids_are_read_in_either_case(client, stack):
    key = stack.keys["aes"]
    enc = client.encrypt(key.upper(), b"upper")
    assert client.decrypt(key, enc.ciphertext).plaintext == b"upper"


def test_data_keys(client, stack):
    key = stack.keys["aes"]
    dk = client.generate_data_key(key, aad=b"a")
    assert dk.plaintext is not None and len(dk.plaintext) == 32
    assert client.decrypt(key, dk.ciphertext, aad=b"a").plaintext == dk.plaintext
    bare = client.generate_data_key_without_plaintext(key)
    assert bare.plaintext is None and len(client.decrypt(key, bare.ciphertext).plaintext) == 32
    assert "32 bytes" in repr(dk) and dk.plaintext.hex() not in repr(dk)


def test_batches_report_each_item(client, stack):
    key = stack.keys["aes"]
    results = client.batch_encrypt([(key, b"one"), (key, b"two", b"aad"), ("0" * 32, b"three")])
    assert [type(r) for r in results] == [skm.Encrypted, skm.Encrypted, skm.ItemError]
    assert results[2].code_name == "NOT_FOUND"
    assert isinstance(results[2].exception(), skm.NotFound)
    back = client.batch_decrypt([(key, results[0].ciphertext), (key, results[1].ciphertext, b"aad"), (key, b"junk")])
    assert [getattr(r, "plaintext", None) for r in back[:2]] == [b"one", b"two"]
    assert isinstance(back[2], skm.ItemError) and back[2].code_name == "INVALID_ARGUMENT"


@pytest.mark.parametrize("name,algorithm", [
    ("ed", skm.SignatureAlgorithm.ED25519),
    ("ec", skm.SignatureAlgorithm.ECDSA_SHA256),
    ("rsa", skm.SignatureAlgorithm.RSA_PSS_SHA256),
    ("rsa", skm.SignatureAlgorithm.RSA_PKCS1_SHA256),
])
def test_sign_verify_and_public_key(client, stack, name, algorithm):
    key = stack.keys[name]
    sig = client.sign(key, b"message", algorithm=algorithm)
    assert sig.algorithm == algorithm and sig.key_version == 1
    assert client.verify(key, sig.signature, b"message", algorithm=algorithm).valid
    assert not client.verify(key, sig.signature, b"other", algorithm=algorithm).valid
    pub = client.get_public_key(key)
    assert pub.pem.startswith("-----BEGIN PUBLIC KEY-----") and pub.key_version == 1
    if name != "ed":
        d = client.sign(key, digest=hashlib.sha256(b"message").digest(), algorithm=algorithm)
        assert client.verify(key, d.signature, b"message", algorithm=algorithm).valid


def test_secret_and_who_am_i(client, stack):
    secret = client.get_secret(stack.keys["secret"])
    assert (secret.value, secret.version) == ("correct horse", 1)
    assert "correct horse" not in repr(secret)
    me = client.who_am_i()
    assert me.client_ip == "127.0.0.1" and me.certificate_sha256 == ""


def test_bad_inputs_raise_their_exception(client, stack):
    key = stack.keys["aes"]
    cases = [
        (lambda: client.encrypt("not-an-id", b"x"), skm.InvalidArgument, "32 hex digits"),
        (lambda: client.encrypt("0" * 32, b"x"), skm.NotFound, ""),
        (lambda: client.encrypt(key, b"x" * 32769), skm.InvalidArgument, "32768"),
        (lambda: client.decrypt(key, b"\x01" + b"\x00" * 40), skm.InvalidArgument, "decryption failed"),
        (lambda: client.decrypt(key, client.encrypt(key, b"x", aad=b"a").ciphertext, aad=b"b"),
         skm.InvalidArgument, "decryption failed"),
        (lambda: client.encrypt(stack.keys["disabled"], b"x"), skm.FailedPrecondition, ""),
        (lambda: client.sign(key, b"x"), skm.FailedPrecondition, ""),
        (lambda: client.encrypt(stack.keys["ed"], b"x"), skm.FailedPrecondition, ""),
        (lambda: client.sign(stack.keys["ed"], b"x" * 4097), skm.InvalidArgument, "4096"),
        (lambda: client.sign(stack.keys["ed"], digest=b"\x00" * 32), skm.FailedPrecondition, "not digests"),
        (lambda: client.encrypt(stack.keys["denied"], b"x"), skm.PermissionDenied, "IPv4"),
        (lambda: client.encrypt(stack.keys["cert_aes"], b"x"), skm.PermissionDenied, "certificate"),
        (lambda: client.get_secret(key), skm.FailedPrecondition, ""),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc) as info:
            call()
        assert text in info.value.message, (exc, info.value)
        assert isinstance(info.value, skm.SkmError) and info.value.code == exc.code


def test_an_undecodable_request_is_invalid_argument(stack):
    creds = skm.from_profile(stack.app_profile)
    channel = grpc.secure_channel(creds.address, grpc.ssl_channel_credentials(creds.ca_pem))
    raw = channel.unary_unary("/skm.api.v1.KeyService/Encrypt", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\x0a\xff", timeout=10)  # field 1, length-delimited, truncated varint length
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    channel.close()


def test_client_certificates_in_both_formats(stack):
    creds = skm.from_profile(stack.app_profile)
    key = stack.keys["cert_aes"]
    pem = skm.Client(creds.address, ca=creds.ca_pem, cert=stack.files["cert"], key=stack.files["key"])
    p12 = skm.Client(
        creds.address, ca=creds.ca_pem, pkcs12_file=stack.files["p12"],
        pkcs12_password=stack.files["p12_password"].read_text().strip(),
    )
    with pem, p12:
        for c in (pem, p12):
            assert c.decrypt(key, c.encrypt(key, b"with a certificate").ciphertext).plaintext == b"with a certificate"
        assert pem.who_am_i().certificate_subject != p12.who_am_i().certificate_subject
        assert len(pem.who_am_i().certificate_sha256) == 64
    with pytest.raises(ValueError):
        skm.Client(creds.address, ca=creds.ca_pem, pkcs12_file=stack.files["p12"], pkcs12_password="wrong password")


def test_a_profile_with_a_client_section(stack, tmp_path):
    profile = tmp_path / "profile.toml"
    profile.write_text(
        f'trust_domain = "skm.local"\nca = "{stack.dir / "app" / "ca.pem"}"\n'
        f'user_endpoint = "{skm.from_profile(stack.app_profile).address}"\n'
        f'[client]\np12 = "{stack.files["p12"]}"\npassword_file = "{stack.files["p12_password"]}"\n'
    )
    with skm.Client.from_profile(profile) as c:
        assert c.encrypt(stack.keys["cert_aes"], b"x").key_version == 1


def test_raw_generated_stubs_work_too(stack):
    creds = skm.from_profile(stack.app_profile)
    with grpc.secure_channel(creds.address, grpc.ssl_channel_credentials(creds.ca_pem)) as channel:
        stub = api_pb2_grpc.KeyServiceStub(channel)
        r = stub.Encrypt(api_pb2.EncryptRequest(key_id=stack.keys["aes"], plaintext=b"raw"), timeout=10)
        assert r.key_version == 1


def test_an_admin_call_without_an_operator_certificate_says_so(stack):
    import tomllib

    with open(stack.operator_profile, "rb") as f:
        admin = tomllib.load(f)["admin_endpoint"]
    creds = skm.from_profile(stack.app_profile)
    with grpc.secure_channel(admin, grpc.ssl_channel_credentials(creds.ca_pem)) as channel:
        call = channel.unary_unary("/skm.admin.v1.AdminService/ListKeystores")
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
    assert "requires an operator certificate" in info.value.details()
