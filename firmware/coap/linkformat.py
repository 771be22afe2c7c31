"""RFC 6690 CoRE link format: query filter and parser."""
#
# The document itself (the /.well-known/core answer, the payload of an RD
# registration) is built by coap.observe.links without loading this module;
# it loads it only for a filtered query.  Resource attributes are the raw
# bytes given to `Endpoint.add` (e.g. b'rt="eclor.lamp.state";ct=112').
# Query filtering (RFC 6690 §4.1) supports `name=value` and a trailing `*`
# prefix match on one attribute, e.g. `?rt=eclor.lamp*`.


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
