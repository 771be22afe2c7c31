# The ESP32 peripheral HALs take their pin numbers from the board file that
# `eclor build` writes into the image (board.json, names as in boards/*.json).
# `machine` is replaced by recording stand-ins: which GPIO each role pin uses.
import sys
import json

made = []


class Pin:
    IN = 1
    OUT = 3
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, n, mode=None, value=None):
        self.n = n
        made.append((n, mode))

    def value(self, v=None):
        return 0

    def irq(self, *a, **k):
        pass


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        self.pin = pin

    def atten(self, a):
        pass

    def read_uv(self):
        return 500000  # 0.5 V on the sense input


class PWM:
    def __init__(self, pin, freq=0, duty_u16=0):
        self.pin = pin
        made.append(("pwm", pin.n))

    def duty_u16(self, d=None):
        return 0


class _Machine:
    pass


_m = _Machine()
_m.Pin = Pin
_m.ADC = ADC
_m.PWM = PWM
sys.modules["machine"] = _m

BOARD = {"name": "esp32_devkitc", "pins": {
    "lamp": {"pwm": 25, "relay": 26, "meter_cf": 27, "meter_cf1": 14, "meter_sel": 13, "pir": 35, "light_adc": 36},
    "bin": {"trigger": 5, "echo": 18, "temp_1wire": 4, "tilt": 19, "battery_adc": 34, "battery_divider": 2.0}}}


def test_bin_pins_come_from_board_json():
    with open("board.json", "w") as f:
        json.dump(BOARD, f)
    from hal import bin_esp32
    hw = bin_esp32.BinHW()
    assert hw.trig.n == 5 and hw.echo.n == 18 and hw.tilt.n == 19, (hw.trig.n, hw.echo.n, hw.tilt.n)
    assert hw.adc.pin.n == 34
    assert hw.p["ow"] == 4 and hw.p["divider"] == 2.0


def test_bin_config_pins_override_board():
    with open("board.json", "w") as f:
        json.dump(BOARD, f)
    from hal import bin_esp32
    hw = bin_esp32.BinHW({"trig": 21, "echo": 22, "tilt": 23, "batt": 32})
    assert (hw.trig.n, hw.echo.n, hw.tilt.n, hw.adc.pin.n) == (21, 22, 23, 32)


def test_bin_without_board_file_uses_defaults():
    from hal import bin_esp32
    hw = bin_esp32.BinHW()
    assert hw.trig.n == bin_esp32.PINS["trig"]


def test_lamp_pins_from_board_names():
    from hal.lamp_esp32 import Lamp
    del made[:]
    Lamp(BOARD["pins"]["lamp"])
    assert ("pwm", 25) in made, made
    nums = [m[0] for m in made]
    assert 26 in nums and 27 in nums and 35 in nums, made


def test_lamp_current_from_the_adc_sense():
    from hal.lamp_esp32 import Lamp
    pins = {"pwm": 25, "relay": 26, "current_adc": 39}
    hw = Lamp(pins)
    i = hw.current()
    assert i is not None and abs(i - 0.5 * hw.a_per_v) < 1e-6, (i, hw.a_per_v)
    assert abs(hw.power() - hw.v_nom * i * hw.pf) < 1e-3
    assert Lamp(BOARD["pins"]["lamp"]).current() is None   # pulse meter: no current channel
