"""Counters, gauges and one latency summary, rendered as Prometheus text.

Deliberately tiny (no client library): increments are dict operations on the
event loop (the writer thread only touches its own two keys, and a lost
increment there would cost nothing but a count). Labels are part of the key:
``inc("eclor_coap_requests_total", path="dp", code="2.04")``.
"""
import math

HELP = {
    "eclor_coap_requests_total": ("counter", "CoAP requests received, by resource and response code"),
    "eclor_coap_out_total": ("counter", "CoAP requests sent by the gateway (commands, observations)"),
    "eclor_coap_retransmissions_total": ("counter", "CoAP retransmissions (aiocoap)"),
    "eclor_coap_junk_total": ("counter", "datagrams dropped as unparsable"),
    "eclor_log_suppressed_total": ("counter", "library log records suppressed by the rate limiter"),
    "eclor_registrations_total": ("counter", "registrations, updates and removals by kind"),
    "eclor_readings_stored_total": ("counter", "SenML records acknowledged (durable)"),
    "eclor_readings_rejected_total": ("counter", "/dp payloads rejected, by reason"),
    "eclor_commands_total": ("counter", "command state transitions"),
    "eclor_commands": ("gauge", "commands by state (open ones)"),
    "eclor_devices": ("gauge", "known devices by online state"),
    "eclor_storage_queue_depth": ("gauge", "writes queued and not yet committed"),
    "eclor_storage_errors_total": ("counter", "failed commits"),
    "eclor_storage_batches_total": ("counter", "commits (each holds a batch of writes)"),
    "eclor_storage_commit_seconds": ("summary", "duration of one group commit"),
    "eclor_http_requests_total": ("counter", "HTTP API requests by status"),
    "eclor_observe_notifications_total": ("counter", "observe notifications stored"),
}


def _key(name, labels):
    if not labels:
        return name
    return name + "{" + ",".join('%s="%s"' % (k, str(v).replace('"', "'")) for k, v in sorted(labels.items())) + "}"


class Metrics:
    def __init__(self):
        self.values = {}
        self.obs = {}  # name -> [count, sum, max, samples(list, bounded)]
        self.gauges = {}  # callables evaluated at render time
        for name in ("eclor_coap_retransmissions_total", "eclor_coap_junk_total", "eclor_log_suppressed_total",
                     "eclor_readings_stored_total", "eclor_storage_errors_total",
                     "eclor_storage_batches_total", "eclor_observe_notifications_total"):
            self.values[name] = 0  # present (as 0) from the start: alerts need the series

    def inc(self, name, n=1, **labels):
        k = _key(name, labels)
        self.values[k] = self.values.get(k, 0) + n

    def get(self, name, **labels):
        return self.values.get(_key(name, labels), 0)

    def set(self, name, value, **labels):
        self.values[_key(name, labels)] = value

    def observe(self, name, value):
        o = self.obs.get(name)
        if o is None:
            o = self.obs[name] = [0, 0.0, 0.0, []]
        o[0] += 1
        o[1] += value
        o[2] = max(o[2], value)
        s = o[3]
        if len(s) < 1024:
            s.append(value)
        else:
            s[o[0] % 1024] = value  # keep a rolling window for quantiles

    def gauge(self, fn):
        """fn() -> iterable of (name, labels-dict, value), called at render time."""
        self.gauges[id(fn)] = fn

    def render(self):
        lines, seen = [], set()

        def head(name):
            base = name.split("{", 1)[0]
            if base not in seen:
                seen.add(base)
                kind, text = HELP.get(base, ("untyped", base))
                lines.append("# HELP %s %s" % (base, text))
                lines.append("# TYPE %s %s" % (base, kind))
        for fn in list(self.gauges.values()):
            for name, labels, value in fn():
                self.values[_key(name, labels)] = value
        for k in sorted(self.values):
            head(k)
            lines.append("%s %s" % (k, _num(self.values[k])))
        for name, (n, total, mx, samples) in sorted(self.obs.items()):
            head(name)
            s = sorted(samples)
            for q in (0.5, 0.99):
                v = s[min(len(s) - 1, int(math.ceil(q * len(s))) - 1)] if s else 0
                lines.append('%s{quantile="%s"} %s' % (name, q, _num(v)))
            lines.append("%s_sum %s" % (name, _num(total)))
            lines.append("%s_count %d" % (name, n))
        return "\n".join(lines) + "\n"


def _num(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))
