"""Flash files that survive power loss: atomic replace, JSON with fallback.

write(path, data): the new content goes to PATH.tmp (written, flushed,
closed), the current file is renamed to PATH.bak, then PATH.tmp to PATH.
Renames are atomic on LittleFS (and POSIX), so a power cut at any point
leaves either the old content (PATH, or PATH.bak when the cut falls between
the two renames) or the new one -- never a torn file. load_json() reads PATH,
then PATH.bak, and returns the first that parses ("last good file").

Flash wear: one file write (data blocks + a metadata commit) per call;
LittleFS spreads block erases itself. Callers decide how often they write
(see docs/firmware.md for each file's policy).
"""
import json
import os


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def makedirs(path):
    """mkdir -p for relative or absolute paths."""
    cur = ""
    for part in path.split("/"):
        if not part:
            cur = "/"
            continue
        cur = cur + part if (not cur or cur.endswith("/")) else cur + "/" + part
        if not exists(cur):
            os.mkdir(cur)


def write(path, data, _json=False):
    """Atomically replace path with data (bytes or str; _json: an object
    streamed as JSON into the temp file, never held whole as a string)."""
    i = path.rfind("/")
    if i > 0 and not exists(path[:i]):
        makedirs(path[:i])
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            if _json:
                json.dump(data, f)
            else:
                f.write(data)
            f.flush()
    except Exception:
        remove(tmp)   # e.g. an object JSON cannot hold: the old file stays
        raise
    if exists(path):
        os.rename(path, path + ".bak")
    os.rename(tmp, path)


def read(path):
    """The bytes of path, or of path.bak if path is missing; None if neither."""
    for p in (path, path + ".bak"):
        try:
            with open(p, "rb") as f:
                return f.read()
        except OSError:
            pass
    return None


def save_json(path, data):
    write(path, data, True)


def load_json(path, default=None):
    """Parsed JSON of path, else of path.bak (the last good file), else default."""
    for p in (path, path + ".bak"):
        try:
            with open(p) as f:
                return json.load(f)
        except (OSError, ValueError):
            pass
    return default
