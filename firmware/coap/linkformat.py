"""RFC 6690 CoRE link format: the /.well-known/core document and the
payload of an RD registration."""
#
# Resource attributes are kept as the raw bytes given to `Endpoint.add`
# (e.g. b'rt="eclor.lamp.state";ct=112'), so encoding is concatenation, not a
# dict per resource.  Query filtering (RFC 6690 §4.1) supports `name=value`
# and a trailing `*` prefix match on one attribute, e.g. `?rt=eclor.lamp*`.


def _attr(attrs, name):
    # value of attribute `name` in b'a=1;rt="x"' (quotes stripped), or None
    for part in attrs.split(b";"):
        k, _, v = part.partition(b"=")
        if k == name:
            return v.strip(b'"')
    return None


def _match(path, attrs, filt):
    for q in filt:
        k, _, v = q.encode().partition(b"=")
        if k == b"href":
            have = b"/" + path
        else:
            have = _attr(attrs, k)
            if have is None:
                return False
        if v.endswith(b"*"):
            if not have.startswith(v[:-1]):
                return False
        elif have != v and v not in have.split(b" "):
            return False
    return True


def encode(res, filt=None):
    """res: {path: [handler, obs, attrs]} -> link-format bytes."""
    out = bytearray()
    for path, r in res.items():
        attrs = r[2] or b""
        if r[1] and b"obs" not in attrs:
            attrs = attrs + b";obs" if attrs else b"obs"
        p = path.encode()
        if filt and not _match(p, attrs, filt):
            continue
        if out:
            out.extend(b",")
        out.extend(b"</")
        out.extend(p)
        out.extend(b">")
        if attrs:
            out.extend(b";")
            out.extend(attrs)
    return bytes(out)


def parse(data):
    """link-format bytes -> list of (target, {attr: value or True}).
    Commas inside quoted values are respected.  Raises ValueError on junk."""
    out = []
    s = data.decode() if isinstance(data, (bytes, bytearray)) else data
    i, n = 0, len(s)
    while i < n:
        if s[i] != "<":
            raise ValueError("link-format: expected < at %d" % i)
        j = s.index(">", i)
        target = s[i + 1:j]
        attrs = {}
        i = j + 1
        while i < n and s[i] == ";":
            i += 1
            k = i
            while i < n and s[i] not in "=;,":
                i += 1
            name = s[k:i]
            val = True
            if i < n and s[i] == "=":
                i += 1
                if i < n and s[i] == '"':
                    e = s.index('"', i + 1)
                    val = s[i + 1:e]
                    i = e + 1
                else:
                    k = i
                    while i < n and s[i] not in ";,":
                        i += 1
                    val = s[k:i]
            attrs[name] = val
        out.append((target, attrs))
        if i < n:
            if s[i] != ",":
                raise ValueError("link-format: expected , at %d" % i)
            i += 1
    return out
