"""Gateway configuration: defaults < TOML file (--config) < command line.

The TOML file is flat (``key = value``); the same keys exist as command-line
options with dashes (``retention_days`` -> ``--retention-days``), so every key
can be overridden. ``load()`` validates everything and raises ``ConfigError``
naming the key at fault; on SIGHUP the daemon calls it again and keeps the old
config when the new one is invalid.
"""
import argparse
import tomllib

# key -> (default, type, help). type: int/float/str/bool or a tuple of choices.
SPEC = {
    "coap": ("[::]:5683", str, "CoAP UDP bind HOST:PORT ([::] = IPv6 and IPv4; port 0 = any)"),
    "http": ("127.0.0.1:8080", str, "HTTP API bind HOST:PORT (port 0 = any)"),
    "http_idle_s": (30.0, float, "HTTP: seconds a connection may take to send its next request (not a limit on handlers)"),
    "data": ("./eclor-data", str, "data directory (SQLite database, run.json)"),
    "log_format": ("text", ("text", "json"), "log format on stderr"),
    "log_level": ("info", ("debug", "info", "warning", "error"), "log level"),
    "allow_undeclared": (True, bool, "let devices absent from the inventory register"),
    "retention_days": (30.0, float, "days raw readings are kept"),
    "aggregate_days": (730.0, float, "days hourly aggregates and events are kept"),
    "maintenance_s": (3600.0, float, "seconds between aggregation/retention runs"),
    "max_payload": (4096, int, "largest /dp payload in bytes (4.13 above)"),
    "max_records": (64, int, "most SenML records in one /dp"),
    "max_future_s": (3600.0, float, "how far in the future a reading's time may be"),
    "retry_after_s": (30, int, "Max-Age sent with 5.03 when storage is unavailable"),
    "queue_limit": (20000, int, "writes queued before /dp answers 5.03"),
    "batch_max": (1024, int, "most writes in one group commit"),
    "busy_ms": (2000, int, "SQLite busy timeout before a commit is given up"),
    "default_lt": (90000, int, "registration lifetime when the device gives none (RFC 9176)"),
    "min_lt": (60, int, "shortest registration lifetime accepted"),
    "lt_grace_s": (30.0, float, "grace after a lifetime before the device is marked offline"),
    "ack_timeout": (2.0, float, "CoAP ACK_TIMEOUT (s) of the gateway's own requests (commands, observe)"),
    "max_retransmit": (4, int, "CoAP MAX_RETRANSMIT of the gateway's own requests"),
    "coap_rcvbuf": (4194304, int, "receive buffer (bytes) asked for the CoAP socket (SO_RCVBUF; 0 = leave the OS default)"),
    "command_ack_timeout": (0.0, float, "CoAP ACK_TIMEOUT (s) of commands to always-on devices; 0 = ack_timeout (a known LAN may use 0.1-0.5)"),
    "command_ack_random_factor": (1.5, float, "CoAP ACK_RANDOM_FACTOR of commands (RFC 7252: 1.5)"),
    "command_max_retransmit": (-1, int, "CoAP MAX_RETRANSMIT of commands; -1 = max_retransmit"),
    "command_ttl": (3600.0, float, "default command TTL in seconds"),
    "command_retry_s": (30.0, float, "pause before re-sending a command to an always-on device"),
    "group_concurrency": (64, int, "command exchanges in flight at once (group fan-outs and single commands together)"),
    "group_wait_s": (20.0, float, "how long POST /api/commands waits for outcomes"),
    "collection_threshold": (80.0, float, "fill % at which a bin is due for collection"),
    "battery_low_v": (3.4, float, "battery voltage counted as low"),
    "log_sample_s": (60.0, float, "at most one sampled junk/library warning per this many s"),
}


class ConfigError(ValueError):
    pass


def defaults():
    return {k: v[0] for k, v in SPEC.items()}


def _coerce(key, value):
    if key not in SPEC:
        raise ConfigError("unknown key %r" % key)
    default, typ, _ = SPEC[key]
    if isinstance(typ, tuple):
        if value not in typ:
            raise ConfigError("%s must be one of %s, not %r" % (key, "/".join(typ), value))
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError("%s must be true or false, not %r" % (key, value))
        return value
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise ConfigError("%s must be %s, not %r" % (key, typ.__name__, value))
    return value


def parse_hostport(text, what):
    """'[::]:5683', '0.0.0.0:5683', 'localhost:80' -> (host, port)."""
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError("%s: expected [HOST]:PORT, got %r" % (what, text))
        port = rest[1:]
    else:
        host, sep, port = t.rpartition(":")
        if not sep:
            raise ConfigError("%s: expected HOST:PORT, got %r" % (what, text))
    try:
        p = int(port)
    except ValueError:
        raise ConfigError("%s: bad port in %r" % (what, text)) from None
    if not 0 <= p <= 65535:
        raise ConfigError("%s: port out of range in %r" % (what, text))
    return host or "::", p


def validate(cfg):
    for k in ("coap", "http"):
        parse_hostport(cfg[k], k)
    positive = ("retention_days", "aggregate_days", "maintenance_s", "max_payload", "max_records",
                "retry_after_s", "queue_limit", "batch_max", "busy_ms", "default_lt",
                "command_ttl", "command_retry_s", "group_concurrency", "log_sample_s", "http_idle_s")
    for k in positive:
        if cfg[k] <= 0:
            raise ConfigError("%s must be > 0, not %r" % (k, cfg[k]))
    if not 0.1 <= cfg["ack_timeout"] <= 60:
        raise ConfigError("ack_timeout must be within 0.1..60 s")
    if not 0 <= cfg["max_retransmit"] <= 10:
        raise ConfigError("max_retransmit must be within 0..10")
    if cfg["command_ack_timeout"] != 0 and not 0.01 <= cfg["command_ack_timeout"] <= 60:
        raise ConfigError("command_ack_timeout must be 0 (= ack_timeout) or within 0.01..60 s")
    if not 1.0 <= cfg["command_ack_random_factor"] <= 4.0:
        raise ConfigError("command_ack_random_factor must be within 1..4")
    if not -1 <= cfg["command_max_retransmit"] <= 10:
        raise ConfigError("command_max_retransmit must be -1 (= max_retransmit) or within 0..10")
    if not 0 <= cfg["coap_rcvbuf"] <= 1 << 30:
        raise ConfigError("coap_rcvbuf must be within 0..1073741824 bytes")
    if cfg["aggregate_days"] < cfg["retention_days"]:
        raise ConfigError("aggregate_days must be >= retention_days")
    if not 0 <= cfg["collection_threshold"] <= 100:
        raise ConfigError("collection_threshold must be within 0..100")
    return cfg


def read_toml(path):
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("cannot read %s: %s" % (path, e.strerror or e)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: %s" % (path, e)) from None
    # [gateway] section accepted as well as top-level keys
    if isinstance(data.get("gateway"), dict):
        data = dict(data, **data.pop("gateway"))
    out = {}
    for k, v in data.items():
        try:
            out[k] = _coerce(k, v)
        except ConfigError as e:
            raise ConfigError("%s: %s" % (path, e)) from None
    return out


def load(path=None, overrides=None):
    """defaults < file < overrides (dict of already-typed values, None = unset)."""
    cfg = defaults()
    if path:
        cfg.update(read_toml(path))
    for k, v in (overrides or {}).items():
        if v is not None:
            cfg[k] = _coerce(k, v)
    return validate(cfg)


def add_arguments(parser):
    """One option per key; default None so the file value is not masked."""
    for key, (default, typ, text) in SPEC.items():
        opt = "--" + key.replace("_", "-")
        text = text.replace("%", "%%") + " (default: %s)" % (default,)
        if typ is bool:
            parser.add_argument(opt, dest=key, action=argparse.BooleanOptionalAction,
                                default=None, help=text)
        elif isinstance(typ, tuple):
            parser.add_argument(opt, dest=key, choices=typ, default=None, help=text)
        else:
            parser.add_argument(opt, dest=key, type=typ, default=None, help=text,
                                metavar={"coap": "HOST:PORT", "http": "HOST:PORT", "data": "DIR"}.get(key))
    parser.add_argument("--config", metavar="FILE.toml", help="TOML config file (flat keys as above)")


def overrides_from_args(args):
    return {k: getattr(args, k, None) for k in SPEC}
