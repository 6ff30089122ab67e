"""The asyncio client (grpc.aio) against the real stack."""

from __future__ import annotations

import asyncio

import pytest

import skm


def run(coro):
    return asyncio.run(coro)


def test_async_calls_and_errors(stack):
    async def main():
        async with skm.AsyncClient.from_profile(stack.app_profile) as c:
            key = stack.keys["aes"]
            encs = await asyncio.gather(*(c.encrypt(key, bytes([i])) for i in range(20)))
            decs = await asyncio.gather(*(c.decrypt(key, e.ciphertext) for e in encs))
            assert [d.plaintext for d in decs] == [bytes([i]) for i in range(20)]
            sig = await c.sign(stack.keys["ed"], b"m")
            assert (await c.verify(stack.keys["ed"], sig.signature, b"m")).valid
            assert (await c.get_secret(stack.keys["secret"])).value == "correct horse"
            assert (await c.who_am_i()).client_ip == "127.0.0.1"
            blob = await c.envelope_encrypt(key, b"async envelope")
            assert await c.envelope_decrypt(blob) == b"async envelope"
            with pytest.raises(skm.NotFound):
                await c.encrypt("f" * 32, b"x")
            with pytest.raises(skm.PermissionDenied):
                await c.encrypt(stack.keys["denied"], b"x")

    run(main())


def test_async_mac_and_the_new_signatures(stack):
    async def main():
        async with skm.AsyncClient.from_profile(stack.app_profile) as c:
            for name, size in (("hmac256", 32), ("hmac384", 48), ("hmac512", 64)):
                key = stack.keys[name]
                tags = await asyncio.gather(*(c.generate_mac(key, bytes([i])) for i in range(5)))
                assert all(isinstance(t, skm.Mac) and len(t.mac) == size and t.key_version == 1 for t in tags)
                assert len({t.mac for t in tags}) == 5
                assert (await c.generate_mac(key, b"\x00")).mac == tags[0].mac
                oks = await asyncio.gather(*(c.verify_mac(key, t.mac, bytes([i])) for i, t in enumerate(tags)))
                assert all(ok == skm.Verified(True, 1) for ok in oks)
                assert not (await c.verify_mac(key, tags[0].mac[:-1], b"\x00")).valid
                assert not (await c.verify_mac(key, tags[0].mac, b"\x01")).valid
            sig = await c.sign(stack.keys["mldsa65"], b"m")
            assert (len(sig.signature), sig.algorithm) == (3309, skm.SignatureAlgorithm.ML_DSA)
            assert (await c.verify(stack.keys["mldsa65"], sig.signature, b"m")).valid
            p384 = await c.sign(stack.keys["p384"], b"m", algorithm=skm.SignatureAlgorithm.ECDSA_SHA384)
            assert (await c.verify(stack.keys["p384"], p384.signature, b"m")).valid
            with pytest.raises(skm.FailedPrecondition) as info:
                await c.generate_mac(stack.keys["ed"], b"x")
            assert "this operation needs an hmac key" in info.value.message
            with pytest.raises(skm.FailedPrecondition) as info:
                await c.sign(stack.keys["mldsa65"], digest=b"\x00" * 32)
            assert info.value.message == "ml-dsa-65 keys sign messages, not digests"
            with pytest.raises(skm.InvalidArgument):
                await c.verify_mac(stack.keys["hmac256"], b"\x00" * 65, b"x")

    run(main())


def test_async_rsa_oaep_decrypt(stack):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

    async def main():
        async with skm.AsyncClient.from_profile(stack.app_profile) as c:
            names = [("oaep2048", 256, 190), ("oaep3072", 384, 318), ("oaep4096", 512, 446)]
            pubs = await asyncio.gather(*(c.get_public_key(stack.keys[n]) for n, _, _ in names))
            cts = []
            for (name, size, limit), pub in zip(names, pubs):
                public = serialization.load_pem_public_key(pub.pem.encode())
                for i in range(3):
                    pt = bytes([i]) * (limit if i == 2 else 10 + i)
                    ct = public.encrypt(pt, oaep)
                    assert len(ct) == size
                    cts.append((stack.keys[name], ct, pt))
            outs = await asyncio.gather(*(c.decrypt_rsa_oaep(k, ct) for k, ct, _ in cts))
            assert outs == [skm.Decrypted(pt, 1) for _, _, pt in cts]
            k, ct, pt = cts[0]
            assert await c.decrypt_rsa_oaep(k, ct, key_version=1) == skm.Decrypted(pt, 1)
            with pytest.raises(skm.InvalidArgument) as info:
                await c.decrypt_rsa_oaep(k, ct[:-1] + bytes([ct[-1] ^ 1]))
            assert info.value.message == "decryption failed"
            with pytest.raises(skm.NotFound):
                await c.decrypt_rsa_oaep(k, ct, key_version=9)
            with pytest.raises(skm.FailedPrecondition) as info:
                await c.decrypt(k, ct)
            assert "needs an aes-256 key" in info.value.message
            with pytest.raises(skm.PermissionDenied):
                await c.decrypt_rsa_oaep(stack.keys["denied_oaep"], ct)

    run(main())
