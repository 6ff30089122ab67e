"""Reflection as stock tools see it: Python's grpcio-reflection client
(grpc.reflection.v1alpha) and a v1 client list exactly each port's services."""

from __future__ import annotations

import grpc
import pytest
import tomllib
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

COMMON = ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]


def ports(stack):
    with open(stack.operator_profile, "rb") as f:
        p = tomllib.load(f)
    return [
        (p["user_endpoint"], "skm.api.v1.KeyService", "kms-api"),
        (p["admin_endpoint"], "skm.admin.v1.AdminService", "kms-api"),
        (p["root_keyd"], "skm.root.v1.RootKeyService", "root-keyd"),
        (p["system_keyd"], "skm.system.v1.SystemKeyService", "system-keyd"),
    ]


def operator_channel(stack, address: str, server: str) -> grpc.Channel:
    d = stack.dir / "pki" / "operator"
    creds = grpc.ssl_channel_credentials(
        (d / "ca.pem").read_bytes(), (d / "key.pem").read_bytes(), (d / "cert.pem").read_bytes()
    )
    # the tiers' certificates name the tier (DNS SAN) besides 127.0.0.1
    return grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", server)])


def list_v1(channel: grpc.Channel):
    """ListServices over grpc.reflection.v1 (its messages are v1alpha's, field for field)."""
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    responses = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    assert len(responses) == 1
    return sorted(s.name for s in responses[0].list_services_response.service)


@pytest.mark.parametrize("port", range(4))
def test_each_port_lists_exactly_its_services(stack, port):
    address, service, server = ports(stack)[port]
    expected = sorted(COMMON + [service])
    with operator_channel(stack, address, server) as channel:
        stock = ProtoReflectionDescriptorDatabase(channel)
        assert sorted(stock.get_services()) == expected
        assert list_v1(channel) == expected
        if service.startswith("skm.api"):
            # the stock client also resolves the service's file
            assert stock.FindFileContainingSymbol(service).name == "skm/api/v1/api.proto"
