"""Property tests: the firmware CoAP codec (running in unix MicroPython
through tests/mpbridge.py) against aiocoap's Message.encode/decode."""
from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import OpaqueOption
from hypothesis import HealthCheck, given, settings, strategies as st

from mpbridge import MicroBridge, MicroPythonError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HERE = Path(__file__).resolve().parent

STRING_OPTS = [3, 8, 11, 15, 20, 35, 39]
UINT_OPTS = {6: 3, 7: 2, 12: 2, 14: 4, 17: 2, 28: 4, 60: 4, 258: 1}  # number -> max bytes
BLOCK_OPTS = [23, 27]
OPAQUE_OPTS = [1, 4, 5, 9, 252, 292, 2, 10, 100, 268, 269, 270, 1000, 2048, 65000]


@pytest.fixture(scope="module")
def mp():
    with MicroBridge(extra_path=[HERE]) as b:
        yield b


STRICTER = ("empty message with content", "truncated token", "token length", "payload marker without payload")


def _uint(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


@st.composite
def option(draw):
    kind = draw(st.sampled_from(["s", "u", "b", "o"]))
    if kind == "s":
        return draw(st.sampled_from(STRING_OPTS)), draw(st.text(max_size=30)).encode()[:270]
    if kind == "u":
        num = draw(st.sampled_from(sorted(UINT_OPTS)))
        return num, _uint(draw(st.integers(0, (1 << (8 * UINT_OPTS[num])) - 1)))
    if kind == "b":
        v = (draw(st.integers(0, 0xFFFF)) << 4) | (draw(st.integers(0, 1)) << 3) | draw(st.integers(0, 6))
        return draw(st.sampled_from(BLOCK_OPTS)), _uint(v)
    return draw(st.sampled_from(OPAQUE_OPTS)), draw(st.binary(max_size=draw(st.sampled_from([12, 300]))))


@st.composite
def message(draw):
    mtype = draw(st.integers(0, 3))
    code = draw(st.integers(0, 255))
    mid = draw(st.integers(0, 0xFFFF))
    if code == 0:  # an Empty message has nothing after the message id
        return [mtype, 0, mid, b"", [], b""]
    token = draw(st.binary(max_size=8))
    opts = draw(st.lists(option(), max_size=8))
    payload = draw(st.binary(max_size=draw(st.sampled_from([0, 20, 600]))))
    return [mtype, code, mid, token, [list(o) for o in opts], payload]


def _uint_norm(fields):
    out = list(fields)
    out[4] = [[n, int.from_bytes(v, "big") if _is_uint(n) else v] for n, v in fields[4]]
    return out


def _is_uint(num):
    fmt = getattr(OptionNumber(num), "format", None)
    return fmt is not None and fmt.__name__ in ("UintOption", "ContentFormatOption", "BlockOption")


def _sorted_opts(opts):
    return sorted(opts, key=lambda o: o[0])  # stable: repeatable options keep their order


def _aio(fields):
    mtype, code, mid, token, opts, payload = fields
    m = aiocoap.Message(mtype=Type(mtype), code=Code(code), mid=mid, token=token, payload=payload)
    for num, raw in opts:
        m.opt.add_option(OpaqueOption(num, raw))
    return m


def _fields_of_aio(m):
    return [int(m.mtype), int(m.code), m.mid, m.token,
            [[int(o.number), o.encode()] for o in m.opt.option_list()], m.payload]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message())
def test_encode_agrees_with_aiocoap(mp, fields):
    fw = mp.call("coap_bridge_fns.enc", *fields)
    ref = _aio(fields).encode()
    assert fw == ref


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message())
def test_decode_agrees_with_aiocoap(mp, fields):
    data = _aio(fields).encode()
    got = mp.call("coap_bridge_fns.dec", data)
    assert not isinstance(got, str), got
    ref = _fields_of_aio(aiocoap.Message.decode(data))
    assert got == ref
    want = list(fields)
    want[4] = _sorted_opts(fields[4])
    assert got == want


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=64), message().map(lambda f: _aio(f).encode()).flatmap(
    lambda b: st.tuples(st.just(b), st.integers(0, max(0, len(b) - 1)), st.integers(0, 255)).map(
        lambda t: t[0][:t[1]] + bytes([t[2]]) + t[0][t[1] + 1:]))))
def test_decoder_never_raises_and_agrees_when_both_accept(mp, data):
    try:
        got = mp.call("coap_bridge_fns.dec", data)
    except MicroPythonError as e:  # an exception escaped the firmware decoder
        pytest.fail("firmware decoder raised %s on %s" % (e, data.hex()))
    try:
        ref = _fields_of_aio(aiocoap.Message.decode(data))
    except UnicodeDecodeError:
        # aiocoap types option values while decoding (a string option must
        # be UTF-8); the firmware codec keeps raw bytes and types them only
        # when asked (Msg.path / Msg.opts), so it may accept these.
        return
    except Exception:
        ref = None
    if not isinstance(got, str) and ref is not None:
        # aiocoap re-encodes uint options minimally (b"\x00" -> b""); the
        # firmware keeps the bytes received: compare those as numbers
        got, ref = _uint_norm(got), _uint_norm(ref)
    if isinstance(got, str):
        # the firmware is at least as strict as aiocoap; these RFC 7252
        # format errors aiocoap lets through: an Empty message with content
        # (§4.1), a token shorter than its TKL or TKL 9-15 (§3; aiocoap reads
        # whatever bytes are there as the token), a payload marker followed
        # by no payload (§3: "MUST be processed as a message format error";
        # aiocoap decodes an empty payload)
        assert ref is None or got in STRICTER, (got, ref)
    else:
        assert ref is not None and got == ref, (got, ref)
