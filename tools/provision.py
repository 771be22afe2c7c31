"""`eclor provision`: give a device its identity and declare it at the gateway.

    eclor provision lamp-villerupt-0001 --role lamp --zone centre --commune Villerupt \\
        --lat 49.468 --lon 5.929 --gateway coap://192.0.2.10:5683 \\
        --wifi CCPHVA-IOT --wifi-psk-file ~/psk.txt --api http://192.0.2.10:8080

Writes OUT/EP/config.json (docs/architecture.md; default OUT is ./devices)
and, with --wifi, OUT/EP/secrets.json {"ssid", "psk"} with mode 0600 in a
0700 directory. The Wi-Fi key is read from --wifi-psk-file or asked with a
hidden prompt, never taken from the command line (it would stay in the shell
history and in `ps`). secrets.json is where the OSCORE keys of the security
issue will go ("oscore": {...}); the firmware ignores keys it does not know.

Then declares the device in the gateway's inventory (POST /api/devices with
ep, type, zone, commune, lat, lon) unless --no-declare. The files are written
first (atomically: tmp + rename), so a gateway that cannot be reached leaves
a usable config and a clear line saying to declare it later.

`eclor build --board B --role R --device EP` then puts the files in the image.
"""
import getpass
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

EP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")   # same rule as the gateway
ROLES = ("lamp", "bin")
DEFAULT_API = "http://127.0.0.1:8080"


class ProvisionError(Exception):
    pass


def add_arguments(p):
    # no abbreviations: "--wifi-psk KEY" must not be taken for --wifi-psk-file
    # (the key would land in the history and, echoed as a file name, on screen)
    p.allow_abbrev = False
    p.add_argument("ep", metavar="EP", help="device name, e.g. lamp-villerupt-0001")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--zone", required=True)
    p.add_argument("--commune", required=True)
    p.add_argument("--lat", required=True, type=float)
    p.add_argument("--lon", required=True, type=float)
    p.add_argument("--gateway", metavar="coap://HOST:PORT",
                   help="gateway CoAP address (default: the --api host, port 5683)")
    p.add_argument("--wifi", metavar="SSID", help="Wi-Fi network (its key is read from --wifi-psk-file or a prompt)")
    p.add_argument("--wifi-psk-file", metavar="FILE", help="file holding the Wi-Fi key (first line)")
    p.add_argument("--board", help="board name, recorded in the config")
    p.add_argument("--report-s", type=int, help="report interval in seconds (firmware default 900)")
    p.add_argument("--api", default=os.environ.get("ECLOR_API", DEFAULT_API),
                   help="gateway HTTP API (env ECLOR_API; default %s)" % DEFAULT_API)
    p.add_argument("--no-declare", action="store_true", help="only write the files")
    p.add_argument("--out", default="devices", metavar="DIR", help="where to write EP/config.json (default: devices)")


def parse_gateway(url):
    """coap://host:port -> (host, port); IPv6 as coap://[::1]:5683."""
    u = urlsplit(url if "://" in url else "coap://" + url)
    if u.scheme != "coap":
        raise ProvisionError("--gateway: %r must be coap://HOST[:PORT] (coaps/OSCORE come later)" % url)
    try:
        port = u.port or 5683
    except ValueError:
        raise ProvisionError("--gateway: bad port in %r" % url) from None
    if not u.hostname:
        raise ProvisionError("--gateway: no host in %r" % url)
    if u.path not in ("", "/"):
        raise ProvisionError("--gateway: %r must not have a path" % url)
    return u.hostname, port


def make_config(ep, role, zone, commune, lat, lon, gateway, board=None, report_s=None):
    """The device's config.json as a dict; raises ProvisionError naming the bad field."""
    if not EP_RE.match(ep or ""):
        raise ProvisionError("EP: %r must be letters, digits, '.', '_' or '-' (at most 63, first a letter or digit)" % ep)
    if role not in ROLES:
        raise ProvisionError("--role: must be lamp or bin, not %r" % role)
    if not -90 <= lat <= 90:
        raise ProvisionError("--lat: %s is not a latitude (-90..90)" % lat)
    if not -180 <= lon <= 180:
        raise ProvisionError("--lon: %s is not a longitude (-180..180)" % lon)
    for name, v in (("zone", zone), ("commune", commune)):
        if len(v) > 63:
            raise ProvisionError("--%s: longer than 63 characters" % name)
    host, port = parse_gateway(gateway)
    cfg = {"ep": ep, "role": role, "gateway": {"host": host, "port": port},
           "zone": zone, "commune": commune, "lat": lat, "lon": lon}
    if board:
        cfg["board"] = board
    if report_s is not None:
        if not 10 <= report_s <= 86400:
            raise ProvisionError("--report-s: %d is outside 10..86400" % report_s)
        cfg["report_s"] = report_s
    return cfg


def read_psk(path=None, prompt=True):
    if path:
        try:
            text = Path(path).expanduser().read_text()
        except OSError as e:
            # the name is not echoed: it might be a key typed in the wrong place
            raise ProvisionError("--wifi-psk-file: cannot read that file: %s" % e.strerror) from None
        psk = text.splitlines()[0] if text else ""
    elif prompt and sys.stdin.isatty():
        psk = getpass.getpass("Wi-Fi key (not echoed): ")
    else:
        raise ProvisionError("--wifi: the key must come from --wifi-psk-file FILE or a terminal prompt")
    if psk and not 8 <= len(psk.encode()) <= 64:
        raise ProvisionError("Wi-Fi key: WPA2 keys are 8 to 63 characters (or 64 hex digits)")
    return psk


def write_json(path, obj, private=False):
    """tmp + rename; private files are created 0600 (never world-readable, even briefly)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o600 if private else 0o644)
    os.replace(tmp, path)


def declare(api, cfg, timeout=10.0):
    from eclor.gateway.client import request
    body = {"ep": cfg["ep"], "type": cfg["role"], "zone": cfg["zone"], "commune": cfg["commune"],
            "lat": cfg["lat"], "lon": cfg["lon"]}
    return request(api, "POST", "/api/devices", body=body, timeout=timeout)


def provision(args):
    gw = args.gateway
    if not gw:
        host = urlsplit(args.api).hostname or "127.0.0.1"
        gw = "coap://%s:5683" % ("[%s]" % host if ":" in host else host)
    cfg = make_config(args.ep, args.role, args.zone, args.commune, args.lat, args.lon, gw,
                      args.board, args.report_s)
    secrets = None
    if args.wifi:
        secrets = {"ssid": args.wifi, "psk": read_psk(args.wifi_psk_file)}
    elif args.wifi_psk_file:
        raise ProvisionError("--wifi-psk-file needs --wifi SSID")
    d = Path(args.out) / args.ep
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    write_json(d / "config.json", cfg)
    if secrets is not None:
        write_json(d / "secrets.json", secrets, private=True)
    return cfg, d, secrets is not None


def run(args):
    try:
        cfg, d, has_secrets = provision(args)
    except ProvisionError as e:
        print("eclor provision: %s" % e, file=sys.stderr)
        return 2
    print("wrote %s%s" % (d / "config.json", " and secrets.json (0600)" if has_secrets else ""))
    if args.no_declare:
        return 0
    from eclor.gateway.client import ApiError, Unreachable
    try:
        declare(args.api, cfg)
    except (ApiError, Unreachable) as e:
        print("eclor provision: not declared at the gateway: %s (files are written; run again, "
              "or use --no-declare)" % e, file=sys.stderr)
        return 1
    print("declared %s (%s, %s, %s) at %s" % (cfg["ep"], cfg["role"], cfg["zone"], cfg["commune"], args.api))
    return 0
