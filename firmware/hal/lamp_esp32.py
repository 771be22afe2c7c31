"""Lamp peripherals on the ESP32 (pins from the board file, pins.lamp):

  pwm         dimming output (machine.PWM, 1 kHz; to a PWM or, through an
              RC filter and op-amp, a 1-10 V driver input)
  relay       mains relay (Pin out, active high)
  relay_fb    optional auxiliary contact of the relay (Pin in)
  meter_cf    HLW8012 / BL0937 CF output: pulse frequency proportional to
              active power; counted by a pin IRQ (one increment per pulse,
              no allocation in the handler)
  meter_cf1 + meter_sel   CF1 output: voltage (sel=1 on HLW8012) or current
  current_adc optional instead of the pulse meter: ADC on a current-sense
              amplifier; P = voltage x I x pf (no true active power)
  pir         optional PIR input;  light_adc  optional light sensor (ADC)

Calibration constants (W per Hz of CF, V per Hz of CF1, A per volt of
the ADC) come from the lamp section of the config ("meter": {...}) with the
HLW8012 datasheet values as defaults (1 mOhm shunt, 2350 k / 1 k divider).
power() averages the pulses since the previous call (the role calls it about
once a second) so it needs no timer.
"""
from machine import Pin, PWM, ADC
import time

# datasheet defaults: HLW8012, 1 mOhm shunt, 2.35 M / 1 k voltage divider
K_W = 1.2      # W per Hz on CF
K_V = 0.7      # V per Hz on CF1 with SEL = voltage


class Lamp:
    def __init__(self, pins, meter=None):
        m = meter or {}
        self.k_w = m.get("k_w", K_W)
        self.k_v = m.get("k_v", K_V)
        self.a_per_v = m.get("a_per_v", 10.0)
        self.pf = m.get("pf", 0.95)
        self.v_nom = m.get("voltage", 230)
        self._pwm = PWM(Pin(pins["pwm"]), freq=1000, duty_u16=0)
        self._relay = Pin(pins["relay"], Pin.OUT, value=0)
        self._fb = Pin(pins["relay_fb"], Pin.IN) if "relay_fb" in pins else None
        self._pir = Pin(pins["pir"], Pin.IN) if "pir" in pins else None
        self._light = ADC(Pin(pins["light_adc"]), atten=ADC.ATTN_11DB) if "light_adc" in pins else None
        self._cur = None
        self._n = 0
        self._n1 = 0
        self._t = time.ticks_ms()
        self._t1 = self._t
        self._sel = None
        if "meter_cf" in pins:
            self._cf = Pin(pins["meter_cf"], Pin.IN)
            self._cf.irq(self._count, Pin.IRQ_RISING)
            if "meter_cf1" in pins and "meter_sel" in pins:
                self._sel = Pin(pins["meter_sel"], Pin.OUT, value=1)  # CF1 = voltage
                self._cf1 = Pin(pins["meter_cf1"], Pin.IN)
                self._cf1.irq(self._count1, Pin.IRQ_RISING)
        elif "current_adc" in pins:
            self._cur = ADC(Pin(pins["current_adc"]), atten=ADC.ATTN_11DB)
        self._v = None

    def _count(self, _):
        self._n += 1

    def _count1(self, _):
        self._n1 += 1

    def set_duty(self, u16):
        self._pwm.duty_u16(u16)

    def set_relay(self, on):
        self._relay.value(1 if on else 0)

    def current(self):
        """Lamp current (A) from the ADC current sense; None without one (the
        pulse meter's CF1 channel is used for the supply voltage here)."""
        if self._cur is None:
            return None
        return self._cur.read_uv() / 1e6 * self.a_per_v

    def power(self):
        if self._cur is not None:
            return self.v_nom * self.current() * self.pf
        now = time.ticks_ms()
        dt = time.ticks_diff(now, self._t)
        if dt <= 0:
            return None
        n = self._n
        self._n = 0
        self._t = now
        return n * 1000.0 / dt * self.k_w

    def voltage(self):
        if self._sel is None:
            return None
        now = time.ticks_ms()
        dt = time.ticks_diff(now, self._t1)
        if dt >= 500:
            self._v = self._n1 * 1000.0 / dt * self.k_v
            self._n1 = 0
            self._t1 = now
        return self._v

    def supply(self):
        v = self.voltage()
        return None if v is None else v >= 0.7 * self.v_nom

    def presence(self):
        return bool(self._pir.value()) if self._pir else False

    def light(self):
        # rough lux from a phototransistor divider; the light-sensor fail-safe
        # only compares it with a threshold set on site
        return self._light.read_u16() / 65.535 if self._light else None

    def relay_fb(self):
        return bool(self._fb.value()) if self._fb else None

