from hypothesis import given, settings, strategies as st

from mpbridge import MicroBridge, MicroPythonError
import pytest


@pytest.fixture(scope="module")
def mp():
    with MicroBridge() as b:
        yield b


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=64))
def test_bytes_round_trip_through_micropython(mp, data):
    assert mp.call("binascii.hexlify", data) == data.hex().encode()


def test_errors_come_back(mp):
    with pytest.raises(MicroPythonError, match="ValueError"):
        mp.call("builtins.int", "not a number")
