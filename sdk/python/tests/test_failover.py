"""skm._calls.Failover without a server: the order replicas are tried in,
which refusals move on to the next, and when it gives up. The fleet itself
(two kms-api replicas on etcd, one killed) is tests/tests/fleet.rs."""

from __future__ import annotations

import grpc
import pytest

from skm import _calls


class Refusal(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def tried(failover: _calls.Failover, answer) -> list:
    """The stubs tried by one call, each answering ``answer(stub)``."""
    seen = []
    for stub, _pause in failover.attempts():
        seen.append(stub)
        try:
            return seen, answer(stub)
        except grpc.RpcError as e:
            if not failover.retried(e):
                return seen, e
    return seen, None


def test_calls_start_round_robin_and_move_past_an_unavailable_replica():
    failover = _calls.Failover(["a", "b", "c"])

    def a_is_down(stub):
        if stub == "a":
            raise Refusal(grpc.StatusCode.UNAVAILABLE)
        return stub

    assert tried(failover, a_is_down) == (["a", "b"], "b")
    assert tried(failover, a_is_down) == (["b"], "b")
    assert tried(failover, a_is_down) == (["c"], "c")
    assert tried(failover, a_is_down) == (["a", "b"], "b")


def test_a_refusal_on_the_merits_is_not_retried():
    failover = _calls.Failover(["a", "b"])
    seen, error = tried(failover, lambda stub: (_ for _ in ()).throw(Refusal(grpc.StatusCode.PERMISSION_DENIED)))
    assert seen == ["a"] and error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_one_replica_is_asked_once():
    failover = _calls.Failover(["only"])
    seen, error = tried(failover, lambda stub: (_ for _ in ()).throw(Refusal(grpc.StatusCode.UNAVAILABLE)))
    assert seen == ["only"] and error is None


def test_a_fleet_that_stays_down_is_given_up_on_after_failover_for(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(_calls.time, "monotonic", lambda: now[0])
    failover = _calls.Failover(["a", "b"])
    pauses = []
    for stub, pause in failover.attempts():
        pauses.append(pause)
        now[0] += pause
    assert now[0] <= _calls.FAILOVER_FOR
    assert pauses[:5] == [0.0, 0.0, 0.05, 0.0, 0.1]
    assert max(pauses) == 1.0
    assert now[0] > _calls.FAILOVER_FOR - 1.0, "it keeps trying for most of FAILOVER_FOR"


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED])
def test_down_or_broken_mid_call_moves_on(code):
    assert _calls.Failover.retried(Refusal(code))
