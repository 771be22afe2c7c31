"""Property test: dev.outbox (in unix MicroPython, through the bridge) against
a plain queue model over random sequences of pushes, acks of the n-th oldest
item, reboots/wakes and pushes cut by a power loss: the device queue always
holds exactly the model's items in order (nothing acknowledged comes back,
nothing unacknowledged is lost while the bound holds) and counts the drops."""
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mpbridge import MicroBridge

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def mp():
    with MicroBridge(extra_path=[HERE]) as b:
        yield b


ops = st.lists(st.one_of(
    st.tuples(st.just("push"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("ack"), st.integers(0, 6)),
    st.tuples(st.just("reopen"), st.booleans()),
), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 6), ops)
def test_outbox_matches_queue_model(mp, bound, seq):
    with tempfile.TemporaryDirectory() as d:
        mp.call("fmt_bridge_fns.ob_reset", d, bound)
        model, dropped = [], 0
        for op in seq:
            if op[0] == "push":
                mp.call("fmt_bridge_fns.ob_push", op[1])
                model.append(op[1])
                if len(model) > bound:
                    dropped += len(model) - bound
                    del model[:len(model) - bound]
            elif op[0] == "ack":
                mp.call("fmt_bridge_fns.ob_ack_nth", op[1])
                if len(model) > op[1]:
                    del model[:op[1] + 1]
            else:
                mp.call("fmt_bridge_fns.ob_reopen", op[1])
            items, got_dropped, n = mp.call("fmt_bridge_fns.ob_state")
            assert items == model and n == len(model), (op, items, model)
            assert got_dropped == dropped
