# Helpers of the lamp fault tests (test_lamp_faults*.py): a controller at a
# simulated instant, seconds of control steps, the events in its outbox.
import hal
from lamp.control import Controller
from fmt import senml


def controller(cfg, t):
    hal.set_true_time(t)
    hal.set_time(t)
    c = Controller(cfg)
    c.report()  # a marker: events come after it
    return c


def run(c, seconds):
    for _ in range(seconds):
        hal.advance(1000)
        c.step()


def events(c):
    out = []
    for seq, data in c.outbox.peek(200):
        for n, u, v, t in senml.decode(data):
            if ":ev:" in n:
                out.append((n.split(":ev:")[1], v))
    return out
