# fmt.cbor / fmt.senml inside MicroPython (src and .mpy): RFC 8949 appendix A
# vectors, bounded buffers, allocation of a reused Writer, import cost.
import gc
import binascii
import struct
from fmt import cbor, senml

ENC = [  # (value, hex) the firmware produces (RFC 8949 appendix A, floats as single/double)
    (0, "00"), (23, "17"), (24, "1818"), (100, "1864"), (1000, "1903e8"), (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"), (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"), (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (1.5, "fa3fc00000"), (100000.0, "fa47c35000"), (3.4028234663852886e38, "fa7f7fffff"),
    (1.1, "fb3ff199999999999a"), (1.0e300, "fb7e37e43c8800759c"), (-4.1, "fbc010666666666666"),
    (False, "f4"), (True, "f5"), (None, "f6"), (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\"\\", "62225c"), ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"), ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"), ({}, "a0"),
    (["a", {"b": "c"}], "826161a161626163"),
]
DEC_ONLY = [  # inputs the firmware reads but never writes
    ("f90000", 0.0), ("f93c00", 1.0), ("f97bff", 65504.0), ("f90001", 5.960464477539063e-08),
    ("f90400", 6.103515625e-05), ("f9c400", -4.0), ("f97c00", float("inf")), ("f9fc00", float("-inf")),
    ("fb3ff199999999999a", 1.1), ("c074323031332d30332d32315432303a30343a30305a", "2013-03-21T20:04:00Z"),
    ("c11a514b67b0", 1363896240), ("f7", None), ("a201020304", {1: 2, 3: 4}),
]


def test_rfc8949_vectors():
    for v, h in ENC:
        got = binascii.hexlify(cbor.dumps(v)).decode()
        assert got == h, (v, got, h)
        assert cbor.loads(binascii.unhexlify(h)) == v, h
    for h, v in DEC_ONLY:
        assert cbor.loads(binascii.unhexlify(h)) == v, h
    x = cbor.loads(b"\xf9\x7e\x00")
    assert x != x  # NaN


def test_errors_are_value_errors_with_reason():
    for data, why in ((b"\x9f\x01\xff", "indefinite"), (b"\x1c", "reserved"), (b"\x9b" + b"\xff" * 8, "truncated"),
                      (b"\x81" * 40 + b"\x00", "deep"), (b"\x62\xff\xfe", "UTF-8"), (b"\xa1\x80\x00", "unhashable"),
                      (b"\x01\x02", "trailing"), (b"", "truncated"), (b"\xf8\x20", "simple"), (b"\x5a\xff\xff\xff\xff", "truncated")):
        try:
            cbor.loads(data)
            assert False, data
        except ValueError as e:
            assert why in str(e), (data, str(e))
    for bad in (2**64, -(2**64) - 1, {1, 2}, object()):
        try:
            cbor.dumps(bad)
            assert False, bad
        except ValueError:
            pass
    deep = []
    for _ in range(20):
        deep = [deep]
    try:
        cbor.dumps(deep)
        assert False
    except ValueError as e:
        assert "deep" in str(e)


def test_fixed_buffer_overflow_is_a_value_error_and_writer_reusable():
    w = cbor.Writer(8, grow=False)
    try:
        w.any("a string longer than eight bytes")
        assert False
    except ValueError as e:
        assert "full" in str(e)
    assert bytes(w.reset().any([1, 2]).value()) == b"\x82\x01\x02"
    g = cbor.Writer(2)
    assert cbor.loads(g.any(list(range(100))).value()) == list(range(100))


def test_reused_writer_allocates_little_per_report():
    w = cbor.Writer(256, grow=False)
    # names pre-encoded as bytes: nothing to encode per report
    recs = [(b"level", b"%", 50, None), (b"power", b"W", 12.5, None), (b"energy", b"Wh", 123456, None),
            (b"relay", None, True, None), (b"mode", None, "normal", None)]
    senml.encode(recs, b"urn:dev:ep:lamp-1:", 1790000000, w)
    gc.collect()
    a = gc.mem_alloc()
    gc.disable()
    for _ in range(50):
        senml.encode(recs, b"urn:dev:ep:lamp-1:", 1790000000, w)
    per = (gc.mem_alloc() - a) / 50
    gc.enable()
    assert per < 400, per  # a few slice/memoryview objects, no buffer per report
    out = senml.decode(w.value())
    assert out[0] == ("urn:dev:ep:lamp-1:level", "%", 50, 1790000000) and out[4][2] == "normal"


def _per_call(f, n=20):
    f()
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(n):
        f()
    per = (gc.mem_alloc() - a) / n
    gc.enable()
    return per


def test_float_and_decoder_allocate_no_intermediates():
    w = cbor.Writer(16, grow=False)
    # packed in place: only the float read back for the precision check
    # (a boxed float and a tuple on the 64-bit host), no bytes per call
    per = _per_call(lambda: w.reset().float(0.1))
    assert per <= 64, per
    assert bytes(w.value()) == b"\xfb" + struct.pack(">d", 0.1)
    w.reset().float(1.5)
    assert bytes(w.value()) == b"\xfa\x3f\xc0\x00\x00"
    w = cbor.Writer(5, grow=False)  # a single fits in exactly 5 bytes
    w.float(1.5)
    assert bytes(w.value()) == b"\xfa\x3f\xc0\x00\x00"
    # decoding: the result objects and one position cell, no (obj, pos)
    # tuple per item (a 4-key command map with a nested map: was ~1.5 KB)
    cmd = cbor.dumps({"id": "c-1", "a": "level", "p": {"level": 40, "duration": 600}, "exp": 1790000000})
    per = _per_call(lambda: cbor.loads(cmd))
    assert per < 1200, per
    assert cbor.decode(b"\x82\x01\x02\x03", 0) == ([1, 2], 3)


def test_senml_refusals():
    bad = [
        (cbor.dumps({"n": "x"}), "array"),
        (cbor.dumps([1]), "map"),
        (cbor.dumps([{0: "x"}]), "exactly one value"),
        (cbor.dumps([{0: "x", 2: 1, 3: "y"}]), "exactly one value"),
        (cbor.dumps([{0: "x", 2: "1"}]), "v must be a number"),
        (cbor.dumps([{0: "x", 4: 1}]), "vb must be a boolean"),
        (cbor.dumps([{2: 1}]), "without a name"),
        (cbor.dumps([{0: "bad name", 2: 1}]), "bad character"),
        (cbor.dumps([{0: "-x", 2: 1}]), "bad character"),
        (cbor.dumps([{-2: 5, 0: "x", 2: 1}]), "bn must be text"),
        (cbor.dumps([{0: "x", 2: 1, "z_": 1}]), "must-understand"),
    ]
    for data, why in bad:
        try:
            senml.decode(data)
            assert False, data
        except ValueError as e:
            assert why in str(e), (why, str(e))
    try:
        senml.decode(b'[{"n": "x", "v": 1, "x_": 2}]', 110)
        assert False
    except ValueError as e:
        assert "must-understand" in str(e)
    try:
        senml.decode(b"[{", 110)
        assert False
    except ValueError as e:
        assert "invalid JSON" in str(e)


def test_senml_resolution_rules():
    # base name/time/unit/value carried forward; relative times added to bt
    pack = [{-2: "urn:dev:ep:b1:", -3: 1790000000, -4: "m", -5: 1, 0: "distance", 2: 0.5, 6: -60},
            {0: "distance", 2: 0.25}, {0: "temp", 1: "Cel", 2: 20}, {-2: "", 0: "other:x", 5: 7}]
    out = senml.decode(cbor.dumps(pack))
    assert out == [("urn:dev:ep:b1:distance", "m", 1.5, 1789999940), ("urn:dev:ep:b1:distance", "m", 1.25, 1790000000),
                   ("urn:dev:ep:b1:temp", "Cel", 21, 1790000000), ("other:x", "m", 7, 1790000000)]


def test_backlog_concat_decodes_as_union():
    w = cbor.Writer(64)
    a = bytes(senml.encode([("fill", "%", 40, None)], "urn:dev:ep:b1:", 1790000000, w))
    b = bytes(senml.encode([("fill", "%", 55, None), ("ev:full", None, False, 1790000900)], "urn:dev:ep:b1:", 1790000600, w))
    out = senml.decode(senml.concat([a, b]))
    assert [r[2] for r in out] == [40, 55, False] and [r[3] for r in out] == [1790000000, 1790000600, 1790000900]


def test_import_cost():
    import sys
    for m in ("fmt.senml", "fmt.cbor", "fmt", "json"):
        if m in sys.modules:
            del sys.modules[m]
    gc.collect()
    a = gc.mem_alloc()
    from fmt import senml as s2  # noqa: F401 (cbor comes with it)
    gc.collect()
    assert gc.mem_alloc() - a < 14000, gc.mem_alloc() - a
