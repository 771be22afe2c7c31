import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "mp_src: firmware test run from source in unix MicroPython")
    config.addinivalue_line("markers", "mp_mpy: firmware test run from .mpy (xtensawin) in unix MicroPython")
    config.addinivalue_line("markers", "mp_rom: firmware test run from .mpy in a ROMFS image (in place) in unix MicroPython")
    config.addinivalue_line("markers", "slow: a longer system or end-to-end test")
