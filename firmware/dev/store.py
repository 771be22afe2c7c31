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
                # with the file's size: read() without one starts from a
                # 256-byte buffer (a bin's pack is ~170 B: a smaller piece
                # to find on a busy heap)
                k = f.seek(0, 2)
                f.seek(0)
                return f.read(k)
        except OSError:
            pass
    return None


def item(path, seq):
    """The file of item seq in a directory of numbered items (dev.outbox)."""
    return "%s/%08d" % (path, seq)


def read_items(path, seqs):
    """[(seq, bytes)] of the items seqs of directory path; unreadable ones
    are skipped. Here, not in dev.outbox, so that a bin's /dp flush reads
    its items with the Outbox code dropped (docs/bin.md "Memory")."""
    out = []
    for seq in seqs:
        d = read(item(path, seq))
        if d is not None:
            out.append((seq, d))
    return out


def remove_items(path, seqs, last):
    """Delete the items of the sorted list seqs up to last, popping them."""
    while seqs and seqs[0] <= last:
        remove(item(path, seqs.pop(0)))


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
