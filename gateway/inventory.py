"""Inventory files for ``eclor gateway import FILE.csv|.json``.

CSV: a header line with at least ``ep,type``; known columns ``zone, commune,
lat, lon, tags`` (tags separated by ``;``); any other column becomes free
metadata. JSON: a list of objects with the same keys (or ``{"devices": [...]}``).
The whole file is validated first and refused with every error listed (with
its line), so a typo never leaves half an inventory behind.
"""
import csv
import json
import time

from .registry import RegistryError, declared_device


class InventoryError(ValueError):
    pass


def load(path):
    """-> list of validated device dicts; raises InventoryError listing problems."""
    try:
        if path.lower().endswith(".json"):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict):
                data = data.get("devices")
            if not isinstance(data, list):
                raise InventoryError("%s: expected a JSON list of devices" % path)
            items = [(i + 1, r) for i, r in enumerate(data)]
            where = "item"
        elif path.lower().endswith(".csv"):
            with open(path, encoding="utf-8-sig", newline="") as f:
                rd = csv.DictReader(f)
                if not rd.fieldnames or "ep" not in rd.fieldnames or "type" not in rd.fieldnames:
                    raise InventoryError("%s: the header must name at least ep and type" % path)
                items = []
                for row in rd:
                    if None in row:
                        raise InventoryError("%s line %d: more fields than the header" % (path, rd.line_num))
                    items.append((rd.line_num, {k: v.strip() for k, v in row.items()
                                                if v is not None and v.strip() != ""}))
            where = "line"
        else:
            raise InventoryError("%s: the file must end in .csv or .json" % path)
    except OSError as e:
        raise InventoryError("cannot read %s: %s" % (path, e.strerror or e)) from None
    except (ValueError, csv.Error) as e:
        if isinstance(e, InventoryError):
            raise
        raise InventoryError("%s: %s" % (path, e)) from None
    now = time.time()
    out, errors, seen = [], [], set()
    for n, rec in items:
        try:
            d = declared_device(rec, now)
        except RegistryError as e:
            errors.append("%s %d: %s" % (where, n, e))
            continue
        if d["ep"] in seen:
            errors.append("%s %d: duplicate ep %s" % (where, n, d["ep"]))
        seen.add(d["ep"])
        out.append(d)
    if errors:
        raise InventoryError("%s: %d error(s), nothing imported:\n  %s" % (path, len(errors), "\n  ".join(errors)))
    if not out:
        raise InventoryError("%s: no devices" % path)
    return out
