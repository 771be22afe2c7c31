"""Bin peripherals on the ESP32 (same methods as hal/bin_sim.BinSim).

* JSN-SR04T in trigger/echo mode: a 10 us pulse on TRIG, then
  machine.time_pulse_us() measures the ECHO high time, 60 ms timeout.
  The module is powered through a switch pin (P-MOSFET) only while measuring:
  it draws ~8 mA idle, which would dominate a deep-sleeping board.
* DS18B20 on one-wire at 10-bit resolution (188 ms conversion, 0.25 degC),
  started before the pings so the conversion runs while they fly.
* tilt switch on an RTC-capable GPIO: read now, and armed as the ext0 wake
  source before deep sleep so that a tipped or moved bin wakes the board.
* battery through a 2:1 divider (1 M / 1 M, 100 nF) on an ADC1 pin (ADC2 is
  unusable while Wi-Fi is on), averaged over 8 samples.

Pins come from config.json ("pins"), else from board.json (written into the
image by `eclor build`: "pins" -> "bin", names as in boards/*.json), else the
defaults of the ECLOR bin board.
"""
import machine
import time
from micropython import const

PINS = {"trig": 5, "echo": 18, "power": 19, "ow": 4, "tilt": 33, "batt": 35, "divider": 2.0}
_ECHO_TIMEOUT_US = const(60000)
# board file name -> name used here
_BOARD_NAMES = (("trigger", "trig"), ("temp_1wire", "ow"), ("battery_adc", "batt"),
                ("battery_divider", "divider"), ("sensor_power", "power"))


def board_pins(board):
    """The bin pins of a board.json dict, renamed to this module's names."""
    bp = dict((board.get("pins") or {}).get("bin") or {})
    for long, short in _BOARD_NAMES:
        if long in bp:
            bp[short] = bp.pop(long)
    return bp


class BinHW:
    def __init__(self, pins=None):
        p = dict(PINS)
        if not pins:
            from dev import store
            pins = board_pins(store.load_json("board.json", {}))
        p.update(pins)
        self.p = p
        self.trig = machine.Pin(p["trig"], machine.Pin.OUT, value=0)
        self.echo = machine.Pin(p["echo"], machine.Pin.IN)
        self.power = machine.Pin(p["power"], machine.Pin.OUT, value=0) if p.get("power") is not None else None
        self.tilt = machine.Pin(p["tilt"], machine.Pin.IN)
        self.adc = machine.ADC(machine.Pin(p["batt"]))
        self.adc.atten(machine.ADC.ATTN_11DB)
        self._ds = None
        self._rom = None
        self._on = False

    def _power(self):
        if self.power is not None and not self._on:
            self.power.value(1)
            time.sleep_ms(50)   # JSN-SR04T start-up
        self._on = True

    def ping_us(self):
        self._power()
        trig = self.trig
        trig.value(0)
        time.sleep_us(2)
        trig.value(1)
        time.sleep_us(10)
        trig.value(0)
        t = machine.time_pulse_us(self.echo, 1, _ECHO_TIMEOUT_US)
        return t if t > 0 else -1

    def _sensor(self):
        if self._ds is None:
            import onewire
            import ds18x20
            self._ds = ds18x20.DS18X20(onewire.OneWire(machine.Pin(self.p["ow"])))
            roms = self._ds.scan()
            if not roms:
                return None
            self._rom = roms[0]
            # 10-bit resolution: config register 0x3F, alarms unused
            self._ds.write_scratch(self._rom, b"\x00\x00\x3f")
        return self._rom

    def temp_start(self):
        try:
            if self._sensor() is not None:
                self._ds.convert_temp()
                self._t0 = time.ticks_ms()
        except Exception:
            self._rom = None

    def temp_read(self):
        try:
            if self._rom is None:
                return None
            left = 188 - time.ticks_diff(time.ticks_ms(), getattr(self, "_t0", 0))
            if left > 0:
                time.sleep_ms(left)
            t = self._ds.read_temp(self._rom)
            # 85.0 is the power-on value, -127 a CRC failure: not a reading
            if t is None or t == 85.0 or t < -55 or t > 125:
                return None
            return t
        except Exception:
            return None

    def tilted(self):
        return bool(self.tilt.value())

    def tilt_wake(self):
        return machine.wake_reason() == machine.EXT0_WAKE

    def battery_v(self):
        s = 0
        for _ in range(8):
            s += self.adc.read_uv()
        return s / 8 / 1e6 * self.p["divider"]

    def arm_tilt_wake(self, on):
        if self.power is not None:
            self.power.value(0)
            self._on = False
        import esp32
        if on and not self.tilted():
            esp32.wake_on_ext0(pin=self.tilt, level=esp32.WAKEUP_ANY_HIGH)
        else:
            # a bin lying on its side would wake at once: timer only
            esp32.wake_on_ext0(pin=None)


def open(pins=None):
    return BinHW(pins)
