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
