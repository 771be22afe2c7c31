"""The territory of the CCPHVA (Pays-Haut Val d'Alzette) and its neighbours,
and a deterministic generator of a fleet of lamps and bins placed in it.

The demo, the fleet simulator, the fleet benchmark and the system tests all
draw their devices from here, so that the same seed gives the same fleet
everywhere (same endpoint names, zones, wattages, bin sizes, coordinates):
a figure measured by the benchmark can be replayed device by device.

Coordinates are the communes' centres (rounded to ~100 m); devices are
scattered around them within a radius that grows with the commune's size.
Devices are shared between communes in proportion to their population,
with every commune getting at least one device of each kind while there
are enough to go round.
"""
import math
import random
import unicodedata

# name, lat, lon, approximate population (weights the share of devices)
COMMUNES = (
    ("Villerupt", 49.4672, 5.9289, 9700),
    ("Audun-le-Tiche", 49.4722, 5.9553, 6600),
    ("Hussigny-Godbrange", 49.4939, 5.8653, 3400),
    ("Ottange", 49.4425, 6.0172, 2700),
    ("Boulange", 49.3825, 5.9497, 2400),
    ("Aumetz", 49.4183, 5.9433, 2300),
    ("Tressange", 49.4025, 5.9800, 2000),
    ("Thil", 49.4728, 5.9072, 1700),
    ("Crusnes", 49.4339, 5.9167, 1600),
    ("Russange", 49.4828, 5.9531, 1300),
    ("Serrouville", 49.4128, 5.8947, 1200),
    ("Rédange", 49.4906, 5.9156, 1000),
    ("Errouville", 49.4119, 5.9031, 600),
    ("Bréhain-la-Ville", 49.4431, 5.8825, 250),
)

CENTRE = (49.47, 5.93)

# Street-light zones of a commune, and their share of its lamps.
ZONES = (("centre", 4), ("residentiel", 4), ("route", 2), ("zone-artisanale", 1))

# Lamp heads: (wattage W, control type, share). LED retrofits dominate; a
# few old sodium heads on switch control remain on the main roads.
LAMP_TYPES = ((30, "pwm", 3), (40, "pwm", 4), (50, "dali", 3), (70, "dali", 2),
              (100, "1-10V", 1), (150, "switch", 1))

# Bins: (kind, volume L, inner depth m, sensor offset m, share).
# The sensor sits under the lid; offset is the distance from the sensor to
# the brim, i.e. what it reads when the bin is full to the top.
BIN_TYPES = (("ordures-660", 660, 1.05, 0.25, 3), ("ordures-1100", 1100, 1.20, 0.25, 3),
             ("tri-340", 340, 0.95, 0.25, 2), ("verre-3000", 3000, 1.60, 0.30, 2))


def slug(name):
    """'Bréhain-la-Ville' -> 'brehain-la-ville' (ASCII, for endpoint names)."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    out = []
    for ch in s.lower():
        out.append(ch if ch.isalnum() else "-")
    return "-".join(p for p in "".join(out).split("-") if p)


def commune(name):
    """Look a commune up by name or slug; KeyError with the known names."""
    for c in COMMUNES:
        if name == c[0] or slug(name) == slug(c[0]):
            return c
    raise KeyError("unknown commune %r (known: %s)" % (name, ", ".join(c[0] for c in COMMUNES)))


def _shares(total, weights):
    """Split total into integers proportional to weights (largest remainder),
    giving each weight at least 1 while total allows."""
    n = len(weights)
    if total <= 0:
        return [0] * n
    base = [1] * n if total >= n else [0] * n
    rest = total - sum(base)
    wsum = float(sum(weights))
    exact = [rest * w / wsum for w in weights]
    floor = [int(x) for x in exact]
    left = rest - sum(floor)
    order = sorted(range(n), key=lambda i: (-(exact[i] - floor[i]), i))
    for i in order[:left]:
        floor[i] += 1
    if total < n:
        # Fewer devices than communes: the most populous communes get one.
        return [1 if i < total else 0 for i in range(n)]
    return [b + f for b, f in zip(base, floor)]


def _pick(rng, table, weight_index=-1):
    total = sum(row[weight_index] for row in table)
    x = rng.uniform(0, total)
    for row in table:
        x -= row[weight_index]
        if x <= 0:
            return row
    return table[-1]


def _scatter(rng, lat, lon, radius_m):
    # Uniform in a disc; 1 deg lat = 111.2 km, 1 deg lon = 111.2 km * cos(lat).
    r = radius_m * math.sqrt(rng.random())
    a = rng.uniform(0, 2 * math.pi)
    dlat = r * math.cos(a) / 111200.0
    dlon = r * math.sin(a) / (111200.0 * math.cos(math.radians(lat)))
    return round(lat + dlat, 5), round(lon + dlon, 5)


def fleet(lamps, bins, seed=1):
    """The fleet as a list of device dicts, lamps first, deterministic in seed.

    Each device: ep, role ("lamp" | "bin"), commune, zone, lat, lon, and
    either "lamp" {wattage, control, tolerance, warmup_s, min_level} or
    "bin" {kind, volume_l, depth_m, offset_m, full_pct}.
    """
    if lamps < 0 or bins < 0:
        raise ValueError("device counts must be >= 0")
    rng = random.Random(seed)
    weights = [c[3] for c in COMMUNES]
    out = []
    for role, count in (("lamp", lamps), ("bin", bins)):
        for (name, lat, lon, pop), n in zip(COMMUNES, _shares(count, weights)):
            radius = 250 + 12 * math.sqrt(pop)  # ~1.4 km for Villerupt, ~440 m for Bréhain
            zones = _shares(n, [z[1] for z in ZONES]) if n >= len(ZONES) else None
            for i in range(n):
                if zones is None:
                    zone = ZONES[i % len(ZONES)][0]
                else:
                    k, acc = 0, zones[0]
                    while i >= acc:
                        k += 1
                        acc += zones[k]
                    zone = ZONES[k][0]
                dlat, dlon = _scatter(rng, lat, lon, radius)
                dev = {"ep": "%s-%s-%04d" % (role, slug(name), i + 1), "role": role,
                       "commune": name, "zone": zone, "lat": dlat, "lon": dlon}
                if role == "lamp":
                    w, ctl, _ = _pick(rng, LAMP_TYPES)
                    dev["lamp"] = {"wattage": w, "control": ctl, "tolerance": 0.15,
                                   "warmup_s": 60 if ctl == "switch" else 1,
                                   "min_level": 0 if ctl == "switch" else 10}
                else:
                    kind, vol, depth, off, _ = _pick(rng, BIN_TYPES)
                    dev["bin"] = {"kind": kind, "volume_l": vol, "depth_m": depth,
                                  "offset_m": off, "full_pct": 80}
                out.append(dev)
    return out


def summary(devices):
    """{commune: {"lamp": n, "bin": m}} for printing."""
    out = {}
    for d in devices:
        out.setdefault(d["commune"], {"lamp": 0, "bin": 0})[d["role"]] += 1
    return out
