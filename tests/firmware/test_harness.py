# The harness itself: these run inside unix-port MicroPython.
import sys
import gc

MODES = ("src", "mpy", "rom")


def test_runs_in_micropython():
    assert sys.implementation.name == "micropython"


def test_heap_is_esp32_sized():
    # [mpy] (what ships) runs at an ESP32's ~100 KB; [src] gets 32 KB more for the compiler
    import os
    want = 132 * 1024 if os.getenv("ECLOR_TEST_MODE") == "src" else 100 * 1024
    gc.collect()
    total = gc.mem_alloc() + gc.mem_free()
    assert want - 10 * 1024 <= total <= want + 10 * 1024, total


def test_firmware_importable():
    import version
    assert version.VERSION
    # in mpy mode the module must come from a .mpy file
    import os
    if os.getenv("ECLOR_TEST_MODE") == "mpy":
        assert version.__file__.endswith(".mpy"), version.__file__
    # in rom mode from the ROMFS image mounted at /rom
    if os.getenv("ECLOR_TEST_MODE") == "rom":
        assert version.__file__ == "/rom/version.mpy", version.__file__


async def test_async_functions_run():
    import asyncio
    await asyncio.sleep_ms(1)
