# CoAP codec (firmware/coap/codec.py) inside unix MicroPython.
from coap import codec
from coap.codec import Msg


def _enc(m, size=256):
    buf = bytearray(size)
    n = codec.encode(m, buf)
    return bytes(buf[:n])


def test_rfc7252_get_with_path_and_token():
    # CON GET mid 0x7d34 token 0x71 /temperature  (RFC 7252 Fig. 16 style)
    m = Msg(codec.CON, codec.GET, 0x7D34, b"\x71", [[codec.URI_PATH, "temperature"]])
    assert _enc(m) == b"\x41\x01\x7d\x34\x71\xbbtemperature"
    d = codec.decode(b"\x41\x01\x7d\x34\x71\xbbtemperature")
    assert d.mtype == codec.CON and d.code == codec.GET and d.mid == 0x7D34
    assert d.token == b"\x71" and d.path == "temperature" and d.payload == b""


def test_piggybacked_response_with_payload():
    data = b"\x62\x45\x7d\x34\x71\x72\xc0\x00\xff22.3 C"
    d = codec.decode(data)
    assert (d.mtype, d.code, d.ct, d.payload) == (codec.ACK, codec.CONTENT, 0, b"22.3 C")
    m = Msg(codec.ACK, codec.CONTENT, 0x7D34, b"\x71\x72", [[codec.CONTENT_FORMAT, 0]], b"22.3 C")
    assert _enc(m) == b"\x62\x45\x7d\x34\x71\x72\xc0\xff22.3 C"


def test_extended_delta_and_length_nibbles():
    long13 = b"a" * 20      # length nibble 13
    long14 = b"b" * 300     # length nibble 14
    m = Msg(codec.CON, codec.POST, 1, b"", [[codec.SIZE1, 1000], [codec.URI_PATH, long13], [2000, long14], [codec.URI_PATH, "x"]])
    data = _enc(m, 512)
    d = codec.decode(data)
    assert not isinstance(d, str), d
    assert d.options == [(11, long13), (11, b"x"), (60, b"\x03\xe8"), (2000, long14)], d.options
    # delta 49 from Uri-Path(11) to Size1(60): nibble 13, ext byte 36
    i = 4 + 22 + 2  # after the two Uri-Path options
    assert data[i] == 0xD2 and data[i + 1] == 49 - 13
    # option 2000: delta 1940 -> nibble 14, length 300 -> nibble 14
    assert data[i + 4] == 0xEE


def test_repeatable_options_keep_order_whatever_insertion_order():
    m = Msg(codec.CON, codec.GET, 2, b"tk", [[codec.URI_QUERY, "b=2"], [codec.URI_PATH, "rd"], [codec.URI_QUERY, "a=1"], [codec.URI_PATH, "42"]])
    d = codec.decode(_enc(m))
    assert d.path == "rd/42" and d.query == ["b=2", "a=1"]


def test_uint_values_minimal_length():
    for v, raw in ((0, b""), (1, b"\x01"), (255, b"\xff"), (256, b"\x01\x00"), (0x1000000, b"\x01\x00\x00\x00")):
        d = codec.decode(_enc(Msg(codec.NON, codec.CONTENT, 3, b"", [[codec.MAX_AGE, v]])))
        assert d.options[0][1] == raw and d.uopt(codec.MAX_AGE) == v


def test_encode_into_same_buffer_repeatedly():
    buf = bytearray(64)
    n1 = codec.encode(Msg(codec.CON, codec.GET, 9, b"", [[codec.URI_PATH, "long-path-name"]]), buf)
    n2 = codec.encode(Msg(codec.ACK, 0, 9), buf)
    assert n1 > n2 == 4 and bytes(buf[:4]) == b"\x60\x00\x00\x09"


def test_malformed_inputs_give_error_values():
    cases = [
        (b"", "short header"),
        (b"\x40\x01\x00", "short header"),
        (b"\x80\x01\x00\x01", "bad version"),
        (b"\x49\x01\x00\x01" + b"\x00" * 9, "token length"),
        (b"\x4f\x01\x00\x01" + b"\x00" * 15, "token length"),
        (b"\x44\x01\x00\x01\x01\x02", "truncated token"),
        (b"\x40\x01\x00\x01\xb5abc", "truncated option"),
        (b"\x40\x01\x00\x01\xd0", "truncated option"),
        (b"\x40\x01\x00\x01\xe0\x01", "truncated option"),
        (b"\x40\x01\x00\x01\xf1a", "reserved nibble 15"),
        (b"\x40\x01\x00\x01\x1fa", "reserved nibble 15"),
        (b"\x40\x01\x00\x01\xff", "payload marker without payload"),
        (b"\x40\x00\x00\x01\xff\x01", "empty message with content"),
    ]
    for data, why in cases:
        r = codec.decode(data)
        assert r == why, (data, r)


def test_decode_never_raises_on_prefixes_and_mutations():
    base = _enc(Msg(codec.CON, codec.POST, 0x1234, b"\x01\x02\x03", [[codec.URI_PATH, "dp"], [codec.CONTENT_FORMAT, 112], [codec.BLOCK1, 0x0E]], b"\xa1\x00payload"))
    for i in range(len(base) + 1):
        codec.decode(base[:i])
    b = bytearray(base)
    for i in range(len(b)):
        for x in (0x00, 0x0D, 0xD0, 0xE0, 0xEE, 0xFF, 0x0F, 0xF0):
            old = b[i]
            b[i] = x
            r = codec.decode(bytes(b))
            assert isinstance(r, (str, Msg))
            b[i] = old


def test_msg_helpers():
    m = Msg(codec.CON, codec.GET, 1, b"", [[codec.ACCEPT, 112], [codec.OBSERVE, b""]])
    d = codec.decode(_enc(m))
    assert d.accept == 112 and d.uopt(codec.OBSERVE) == 0 and d.opt(codec.ETAG) is None and d.ct is None
    from coap import block  # removing an option is block-wise's helper (codec stays small)
    block.drop(d, codec.OBSERVE)
    assert d.opt(codec.OBSERVE) is None and d.method == codec.GET
