#!/usr/bin/env python3
"""perf/mutfuzz.py: black-box mutation fuzzer of a running edge (issue 20).

Every operation of openapi/ticketing.yaml gets a valid template, built from a real
buyer's flow (enter -> token -> hold -> payment-intent -> commit -> status) so that its
mutants reach the deep handlers. Each template is sent as it is or mutated (body bytes,
JSON fields, headers, framing, path and query) over raw sockets, so that nothing
between the fuzzer and the edge repairs a request. Standard library only.

During the run it fails on:
  - a 5xx (a 503 with Retry-After is allowed only inside a fault it injected; it injects
    none unless --fault-every is given),
  - a connection closed without an answer, or no answer within the edge's deadline
    (--request-timeout-ms, the edge's EDGE_REQUEST_TIMEOUT_MS, plus --grace-ms),
  - a response without x-request-id, an error without a known `error.code`,
  - a valid request (a template sent as it is, or sent again after its mutant) whose
    answer is not the one the contract gives for it.
After the run (the audit): every commit answered 202 must be CONFIRMED or REJECTED within
--audit-wait-s, through GET /confirm/status and in PostgreSQL (orders by event, user and
key), no seat sold twice, every CONFIRMED order's seats in sold_seats and every sold
seat's order CONFIRMED, the summaries' `sold` equal to PostgreSQL's, the dead-letter
stream empty, and the edge (--edge-pid) alive and healthy.

  perf/mutfuzz.py --addr 127.0.0.1:8080 --event demo --seconds 10 [--seed N]

The seed is printed. Each thread draws from its own generator seeded with (seed,
thread), so the same --seed makes the same choices as long as the edge answers the same
(with --threads 1, interleaving aside too); each failure is printed with the exact bytes
sent, which replay it alone. Exit status 0 only when all passed.
"""

import argparse
import collections
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

# codec's error codes (codec/src/error_code.rs, the openapi ErrorCode enum): an error
# body must carry one of them. Read from the source, so a new code is known at once.
KNOWN_CODES = set(re.findall(
    r'=> "([A-Z_]+)"',
    open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "codec", "src",
                      "error_code.rs")).read()))
assert {"BAD_REQUEST", "INTERNAL", "IDENTITY_MISSING"} <= KNOWN_CODES, KNOWN_CODES
OPS = ["ping", "health", "enter", "room-status", "summary", "seats", "hold", "release",
       "payment-intent", "commit", "status"]
# After a mutant of a stateful operation, its valid template follows with this chance:
# a refused mutant must leave the state as it was, an accepted one change it as given.
FOLLOW_UP = 0.5
VALID_ONLY = 0.15  # templates sent unmutated, so flows keep producing real commits
MAX_FAILURES_KEPT = 200


class Skip(Exception):
    """This template cannot go on (a step failed, or an injected fault got in the way):
    the failure, if any, is recorded; start another."""


# ------------------------------------------------------------------ requests and wire

class Req:
    """One HTTP/1.1 request; Content-Length follows the body unless a mutant set one."""

    host = "127.0.0.1"  # main() sets the edge's address: exactly one Host is required

    def __init__(self, method, path, query="", headers=(), body=None, json_body=None):
        self.method, self.path, self.query = method, path, query
        self.headers = [(k, v) for k, v in headers]  # str or bytes each
        if not any(k.lower() == "host" for k, _ in self.headers):
            self.headers.insert(0, ("host", Req.host))
        self.json = None if json_body is None else Obj(json_body)
        self.body = body if body is not None else (dump(self.json) if self.json is not None else b"")
        self.auto_length = self.method in ("POST", "PUT") or bool(self.body)
        self.version = "HTTP/1.1"
        self.raw = None          # bytes: a mutant of the encoded request replaces it all
        self.mutations = []

    def copy(self):
        r = Req(self.method, self.path, self.query, self.headers, self.body)
        r.json = None if self.json is None else Obj(self.json)
        r.auto_length, r.version = self.auto_length, self.version
        return r

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def target(self):
        t = b(self.path)
        return t + b"?" + b(self.query) if self.query else t

    def encode(self):
        if self.raw is not None:
            return self.raw
        out = [b(self.method) + b" " + self.target() + b" " + b(self.version) + b"\r\n"]
        out += [b(k) + b": " + b(v) + b"\r\n" for k, v in self.headers]
        if self.auto_length:
            out.append(b"content-length: %d\r\n" % len(self.body))
        out.append(b"\r\n")
        return b"".join(out) + self.body

    def head_only(self):
        return self.encode().startswith(b"HEAD ")


def b(s):
    return s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass")


class Raw(str):
    """JSON text put into a body verbatim (numbers JSON cannot hold, broken escapes)."""


class Obj(list):
    """A JSON object as (key, value) pairs, so that a key can appear twice."""


def dump(obj, ascii_only=True):
    def val(v):
        if isinstance(v, Raw):
            return str(v)
        if isinstance(v, Obj):
            return "{" + ",".join(json.dumps(k, ensure_ascii=ascii_only) + ":" + val(x) for k, x in v) + "}"
        if isinstance(v, list):
            return "[" + ",".join(val(x) for x in v) + "]"
        return json.dumps(v, ensure_ascii=ascii_only)
    return b(val(obj))


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def h(self, name):
        return self.headers.get(name, [None])[0]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def code(self):
        j = self.json()
        if isinstance(j, dict) and isinstance(j.get("error"), dict):
            return j["error"].get("code")
        return None

    def label(self):
        c = self.code()
        return f"{self.status} {c}" if c else str(self.status)


class Dropped(Exception):
    pass


class Conn:
    """One keep-alive connection to the edge, read and written in raw bytes."""

    def __init__(self, addr, deadline_s):
        self.addr, self.deadline_s = addr, deadline_s
        self.sock, self.buf = None, b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def send(self, data):
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=self.deadline_s)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the edge may answer (413, 431) and stop reading: read what it said

    def _fill(self, until):
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Dropped
        self.buf += chunk

    def response(self, head_only=False):
        """The next response; Dropped at end of stream before it, TimeoutError past the deadline."""
        until = time.monotonic() + self.deadline_s
        while b"\r\n\r\n" not in self.buf:
            self._fill(until)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = collections.defaultdict(list)
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode("latin-1")].append(v.strip().decode("latin-1"))
        n = 0 if head_only or status == 304 else int(headers.get("content-length", ["0"])[0])
        while len(self.buf) < n:
            self._fill(until)
        body, self.buf = self.buf[:n], self.buf[n:]
        return Resp(status, headers, body)

    def until_closed(self):
        """Responses the edge still sends before it closes (after `connection: close`)."""
        out = []
        until = time.monotonic() + self.deadline_s
        try:
            while True:
                if b"\r\n\r\n" in self.buf:
                    out.append(self.response())
                else:
                    self._fill(until)
        except Dropped:
            pass
        self.close()
        return out


# ------------------------------------------------------------------ mutations

CONTROL = ["\x00", "\x01", "\x07", "\t", "\n", "\r", "\x1b", "\x7f"]
UNICODE = ["\u00e9", "\u202e", "\ufeff", "\U0001F3AB", "\uff21", "\u0301", "\u2028", "\ud800"]
JSON_VALUES = [0, -1, 1, 2**31, 2**53 + 1, 2**63, 2**64, -2**63 - 1, 1.5, -0.0, True, False,
               None, [], Obj(), "", Raw("1e309"), Raw("-0"), Raw("123456789012345678901234567890"),
               Raw("1E2"), Raw("0x10"), Raw("NaN"), Raw("Infinity"), Raw('"\\ud800"'),
               Raw('"\\u0000"'), Raw('"A\\u002d1"'), Raw("'A-1'")]
SEATISH = ["A-01", "A-+1", "A-0", "A--1", "A-1e3", "A-1.0", "A-99999999999999999999",
           "A-4294967297", "a-1", "A-", "-1", "A", "A-1-2", "{A}-1", "A -1", " A-1", "A-1 ",
           "A-1\n", "A\u00e9-1", "\uff21-\uff11", "A-\u0661", "AAAAAAAAAAAAAAAAA-1", "Z-1",
           "A_-1", "A-1\x00", "A-10000000", "A-20001", "B-20000", "A-1%00"]
HEADER_JUNK = ["", " ", "x", "\x01", "\x7f", "\u00e9", "a b", "\"quoted\"", "%00", "0" * 300,
               "!" * 255, "!" * 256, "v1.", "v1..", "Bearer", "\t", "\r\nx-evil: 1"]


def mutate_str(rng, s):
    """A string close to `s` that some rule may refuse (or, on a bad day, accept)."""
    return bend(rng, s)[:70000]  # past the 64 KiB body limit, not much further


def bend(rng, s):
    k = rng.randrange(12)
    if k == 0:
        return ""
    if k == 1:
        return s * rng.choice([2, 64, 1000]) + rng.choice(["", "x" * rng.choice([100, 60000])])
    if k == 2:
        i = rng.randrange(len(s) + 1)
        return s[:i] + rng.choice(CONTROL) + s[i:]
    if k == 3:
        i = rng.randrange(len(s) + 1)
        return s[:i] + rng.choice(UNICODE) + s[i:]
    if k == 4:
        return rng.choice(SEATISH)
    if k == 5:
        return s.lower() if s != s.lower() else s.upper()
    if k == 6:
        return s[: rng.randrange(len(s) + 1)]
    if k == 7:
        return rng.choice([" ", "\t"]) + s + rng.choice(["", " "])
    if k == 8:
        return s + rng.choice(["%00", "%", "/", "\\", "'", "\"", "{", "}", ",", "*", "?"])
    if k == 9:
        chars = list(s)
        if chars:
            chars[rng.randrange(len(chars))] = chr(rng.randrange(0x20, 0x7f))
        return "".join(chars)
    if k == 10:
        return "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randrange(1, 40)))
    return re.sub(r"\d+", lambda m: str(int(m.group()) + rng.choice([-1, 1, 10**6, 10**12])), s) if re.search(r"\d", s) else s + "-1"


def mut_json(rng, req):
    """A field changed: another type, an odd string, out-of-range number, gone, twice."""
    pairs = Obj(req.json)
    i = rng.randrange(len(pairs))
    k, v = pairs[i]
    kind = rng.randrange(9)
    if kind == 0:
        pairs[i] = (k, rng.choice(JSON_VALUES))
    elif kind == 1 and isinstance(v, str):
        pairs[i] = (k, mutate_str(rng, v))
    elif kind == 1 and isinstance(v, list):
        choice = rng.randrange(6)
        v = list(v)
        if choice == 0:
            v = []
        elif choice == 1:
            v = v + v
        elif choice == 2:
            v = v + [f"A-{rng.randrange(1, 20001)}" for _ in range(rng.randrange(1, 6))]
        elif choice == 3:
            v = [mutate_str(rng, x) if isinstance(x, str) else x for x in v]
        elif choice == 4:
            v = [v]
        else:
            v = list(reversed(v)) + [rng.choice(JSON_VALUES)]
        pairs[i] = (k, v)
    elif kind == 2:
        del pairs[i]
    elif kind == 3:  # duplicate key: which one wins must not matter
        dup = (k, mutate_str(rng, v) if isinstance(v, str) else rng.choice(JSON_VALUES))
        pairs.insert(i + rng.choice([0, 1]), dup)
    elif kind == 4:
        pairs.append((rng.choice(["extra", "userid", k.upper(), k + " ", "__proto__", k]),
                      rng.choice(JSON_VALUES + ["x"])))
    elif kind == 5:  # deep nesting
        depth = rng.choice([64, 1000, 20000])
        open_, close = rng.choice([("[", "]"), ('{"a":', "}")])
        pairs[i] = (k, Raw(open_ * depth + json.dumps(v) + close * depth))
    elif kind == 6:
        pairs[i] = (mutate_str(rng, k), v)
    elif kind == 7:
        pairs[i] = (k, Obj([(k, v)]))  # an object where a scalar was
    else:
        pairs[i] = (k, Raw(rng.choice(["tru", "\"unterminated", "[1,]", "{}}", "1 2", "\"\\x41\"",
                                       "\"\\uZZZZ\"", "\"a\"\"b\"", "01", "+1", ".5"])))
    req.json = pairs
    req.body = dump(pairs, ascii_only=rng.random() < 0.5)
    return f"json:{kind}:{k}"


def mut_body_bytes(rng, req):
    body = bytearray(req.body)
    kind = rng.randrange(7)
    if kind == 0 and body:
        i = rng.randrange(len(body))
        body[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        i = rng.randrange(len(body) + 1)
        body[i:i] = rng.choice([b"\x00", b"\"", b"\\", b"{", b"}", b"[", b",", b":", b"\xff",
                                b"\xc3", b"\xed\xa0\x80", b"\r\n", bytes([rng.randrange(256)])])
    elif kind == 2 and body:
        i = rng.randrange(len(body))
        del body[i: i + rng.randrange(1, 17)]
    elif kind == 3 and body:
        i = rng.randrange(len(body))
        body[i:i] = body[i: i + rng.randrange(1, 17)]
    elif kind == 4:
        del body[rng.randrange(len(body) + 1):]
    elif kind == 5:
        body = bytearray(rng.choice([b"", b"null", b"[]", b"{}", b"\"str\"", b"1", b"\xef\xbb\xbf" + bytes(body),
                                     bytes(body) + b" trailing", bytes(body) + b"\n\n\n", bytes(body) * 2,
                                     bytes(body).decode("latin-1").encode("utf-16"), b"[" * 100000,
                                     bytes(rng.randrange(256) for _ in range(64))]))
    else:
        body += b" " * rng.choice([1, 1000, 70000])  # 70000: past the body limit
    req.body = bytes(body)
    req.json = None
    return f"body:{kind}"


def set_header(req, name, value, replace=True):
    if replace:
        req.headers = [(k, v) for k, v in req.headers if k.lower() != name.lower()]
    if value is not None:
        req.headers.append((name, value))


def mut_header(rng, req, ctx):
    names = [k for k, _ in req.headers] + ["x-request-id", "x-room-token", "Idempotency-Key", "If-None-Match", "host"]
    name = rng.choice(names)
    old = req.header(name.lower()) or "v"
    kind = rng.randrange(8)
    if kind == 0:
        set_header(req, name, None)
    elif kind == 1:
        set_header(req, name, rng.choice(HEADER_JUNK))
    elif kind == 2:
        set_header(req, name, b(mutate_str(rng, str(old))) if rng.random() < 0.5 else mutate_str(rng, str(old)).encode("latin-1", "replace"))
    elif kind == 3:  # the same header twice: one of them odd
        set_header(req, name, rng.choice([old, mutate_str(rng, str(old))]), replace=False)
    elif kind == 4 and ctx.get("other_token"):
        set_header(req, "x-room-token", ctx["other_token"])  # another buyer's (or event's)
    elif kind == 5:
        set_header(req, name, "x" * rng.choice([128, 129, 1000, 9000]))  # 9000: past 8 KiB
    elif kind == 6:
        set_header(req, name.upper() if rng.random() < 0.5 else name.lower(), old)
    else:
        req.headers.append((rng.choice(["x-junk", "X Space", "bad:name", "\x01x", "", "héader"]), rng.choice(HEADER_JUNK)))
    return f"header:{kind}:{name}"


def mut_framing(rng, req):
    """Content-Length, Transfer-Encoding, method, version, header count and shape."""
    kind = rng.randrange(10)
    if kind == 0:
        n = len(req.body) + rng.choice([-5, -1, 1, 7])
        req.auto_length = False
        set_header(req, "content-length", str(max(n, 0)))
    elif kind == 1:
        req.auto_length = False
        set_header(req, "content-length", rng.choice(["abc", "-1", "+5", " 5", "1e3", "0x10", "",
                                                       "99999999999999999999", "65537", "5, 5"]))
    elif kind == 2:
        req.auto_length = False
        set_header(req, "content-length", str(len(req.body)))
        set_header(req, "content-length", rng.choice([str(len(req.body)), str(len(req.body) + 1)]), replace=False)
    elif kind == 3:
        if rng.random() < 0.5:
            req.auto_length = False
        set_header(req, "transfer-encoding", rng.choice(["chunked", "gzip, chunked", "identity", "chunked "]))
        req.body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(req.body), req.body)
    elif kind == 4:
        req.method = rng.choice(["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "post", "PATCH", "CONNECT", "G\x00T", "X" * 100])
    elif kind == 5:
        req.version = rng.choice(["HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1", ""])
    elif kind == 6:
        for i in range(rng.choice([10, 63, 65, 200])):  # 64 headers at most
            req.headers.append((f"x-h{i}", "v"))
    elif kind == 7:
        set_header(req, "connection", rng.choice(["close", "keep-alive", "upgrade", "Close"]))
    elif kind == 8:
        req.headers.append(("x-folded", "a\r\n folded"))  # obs-fold
    else:
        req.raw = req.encode()
        raw = bytearray(req.raw)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(raw))
            op = rng.randrange(3)
            if op == 0:
                raw[i] ^= 1 << rng.randrange(8)
            elif op == 1:
                raw[i:i] = rng.choice([b"\r\n", b"\n", b"\x00", b" ", b":", b"\r\n\r\n", b"\xff"])
            else:
                del raw[i: i + rng.randrange(1, 9)]
        req.raw = bytes(raw)
    return f"framing:{kind}"


def mut_target(rng, req):
    """Path and query: percent-encoded control characters, long or odd segments."""
    kind = rng.randrange(8)
    segs = req.path.split("/")
    i = rng.randrange(1, len(segs))
    if kind == 0:
        segs[i] += rng.choice(["%00", "%0a", "%0D", "%7f", "%ff", "%c3%28", "%", "%G1", "%2f", "%20", "%e9"])
    elif kind == 1:
        segs[i] = rng.choice(["a" * 1000, "a" * 9000, "%41" * 3000])  # 9000: past the head limit
    elif kind == 2:
        segs[i] = pct(mutate_str(rng, segs[i]))
    elif kind == 3:
        segs.insert(i, rng.choice(["", ".", "..", "%2e%2e"]))
    elif kind == 4:
        segs[i] = segs[i].upper() if segs[i] != segs[i].upper() else segs[i].lower()
    elif kind == 5:
        segs.append(rng.choice(["", "x", "%00"]))
    elif kind == 6:
        req.query = mut_query(rng, req.query)
    else:
        req.query += rng.choice(["#frag", "&", "&&", "?", "&x=%00", "&idem", "&token=", "=", "&a=" + "b" * 5000])
    req.path = "/".join(segs)
    return f"target:{kind}"


def pct(s):
    """Percent-encoded UTF-8 (a lone surrogate too, as the bytes it would be)."""
    return urllib.parse.quote(s, safe="", errors="surrogatepass")


def mut_query(rng, query):
    if not query:
        return rng.choice(["a=1", "token=", "idem=%00", "%", "=&="])
    params = query.split("&")
    i = rng.randrange(len(params))
    name, _, value = params[i].partition("=")
    value = urllib.parse.unquote(value)
    kind = rng.randrange(4)
    if kind == 0:
        params[i] = name + "=" + pct(mutate_str(rng, value))
    elif kind == 1:
        params.insert(i + 1, name + "=" + pct(mutate_str(rng, value)))
    elif kind == 2:
        params[i] = name + "=" + rng.choice(["%00", "%0a", "%7f", "%ff", "%", "%zz", "+", "%2B", "%20" * 300]) + pct(value)
    else:
        params[i] = name
    return "&".join(params)


def mutate(rng, tmpl, ctx):
    req = tmpl.copy()
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        pick = rng.random()
        if req.raw is not None:
            break
        if pick < 0.35 and req.json:
            req.mutations.append(mut_json(rng, req))
        elif pick < 0.5 and req.body:
            req.mutations.append(mut_body_bytes(rng, req))
        elif pick < 0.7:
            req.mutations.append(mut_header(rng, req, ctx))
        elif pick < 0.85:
            req.mutations.append(mut_target(rng, req))
        else:
            req.mutations.append(mut_framing(rng, req))
    return req


# ------------------------------------------------------------------ faults

class Faults:
    """Optional injected fault: Redis paused (CLIENT PAUSE) now and then. Inside a fault
    window (and one deadline after it), 503 + Retry-After is the right answer."""

    def __init__(self, redis_url, every_s, pause_ms, deadline_s):
        self.redis_url, self.every_s, self.pause_ms, self.deadline_s = redis_url, every_s, pause_ms, deadline_s
        self.windows = []  # (start, end) monotonic
        self.lock = threading.Lock()

    def active(self, t0, t1):
        with self.lock:
            return any(s <= t1 and t0 <= e for s, e in self.windows)

    def run(self, until, stop):
        while not stop.wait(self.every_s) and time.monotonic() < until:
            start = time.monotonic()
            with self.lock:
                self.windows.append((start, start + self.pause_ms / 1000 + self.deadline_s))
            redis_command(self.redis_url, "CLIENT", "PAUSE", str(self.pause_ms), "ALL")


def redis_command(url, *args):
    """One command on a fresh connection (RESP), for XLEN and CLIENT PAUSE."""
    u = urllib.parse.urlparse(url)
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=10) as s:
        parts = [b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(b(a)), b(a)) for a in args]
        if u.password:
            s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(u.password), b(u.password)))
        db = u.path.strip("/")
        if db:
            s.sendall(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%s\r\n" % (len(db), b(db)))
        s.sendall(b"".join(parts))
        want = 1 + bool(u.password) + bool(db)
        data = b""
        while data.count(b"\r\n") < want:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        last = data.split(b"\r\n")[want - 1]
        if last.startswith(b"-"):
            raise RuntimeError(f"redis {args[0]}: {last.decode()}")
        return last[1:].decode()


# ------------------------------------------------------------------ the fuzzer

class Shared:
    """What the threads report into."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.by_status = collections.Counter()
        self.by_op = collections.Counter()
        self.by_op_status = collections.Counter()
        self.mutation_kinds = collections.Counter()
        self.failures = []
        self.failure_count = 0
        self.accepted = {}  # (user, idem) -> {"tokens": [...], "location": ..., "seats": ...}
        self.hold_collisions = 0
        self.stop = threading.Event()


class Fuzzer:
    """One thread: its own connection, random stream, buyers and commits."""

    def __init__(self, args, tid, shared, faults):
        self.a, self.tid, self.s, self.faults = args, tid, shared, faults
        self.rng = random.Random(f"{args.seed}:{tid}")
        self.conn = Conn(args.addr, args.deadline_s)
        self.ops = OPS + (["admin"] if args.admin_token else [])
        self.n_users = self.seat_turn = 0
        self.tokens = []   # recent buyers' tokens, for "another buyer's token"
        self.commits = []  # (token, user, idem) accepted here, for status templates

    # -- one exchange, checked
    def exchange(self, op, req, mutant):
        """Sends `req`; returns every response it drew (none when it failed). After a
        mutant, a ping on the same connection shows that the edge still frames it: the
        ping is answered, or the edge closes after an answer that says so (a mutant's
        leftover bytes may be refused with 400, or wait for its 408)."""
        t0 = time.monotonic()
        responses, problem = [], None
        try:
            self.conn.send(req.encode())
            responses.append(self.conn.response(head_only=req.head_only()))
            if mutant and not closing(responses[-1]):
                self.conn.send(Req("GET", "/public/ping", headers=[("x-request-id", "mutfuzz-probe")]).encode())
                while not closing(responses[-1]) and responses[-1].h("x-request-id") != "mutfuzz-probe":
                    responses.append(self.conn.response())
            if closing(responses[-1]):
                responses += self.conn.until_closed()
        except Dropped:
            problem = "connection closed without an answer"
        except TimeoutError:
            problem = f"no answer within {self.a.deadline_s:g} s"
        except OSError as e:
            problem = f"connection failed: {e!r}"
        except (ValueError, IndexError) as e:
            problem = f"unparsable response: {e!r}"
        if problem:
            self.conn.close()
        in_fault = self.faults is not None and self.faults.active(t0, time.monotonic())
        with self.s.lock:
            self.s.sent += 1
            self.s.by_op[op] += 1
            for m in req.mutations:
                self.s.mutation_kinds[":".join(m.split(":")[:2])] += 1
            for r in responses:
                self.s.by_status[r.label()] += 1
                self.s.by_op_status[f"{op} {r.label()}"] += 1
            if problem:
                self.s.by_status["(no answer)"] += 1
        for i, r in enumerate(responses):
            problem = problem or response_problem(r, in_fault, head_only=i == 0 and req.head_only())
        if problem:
            self.fail(problem, op, req, responses)
        if in_fault and any(r.status == 503 for r in responses):
            raise Skip  # the state after a fault is unknown: start another template
        return responses

    def fail(self, problem, op, req, responses):
        with self.s.lock:
            self.s.failure_count += 1
            if len(self.s.failures) < MAX_FAILURES_KEPT:
                data = req.encode()
                self.s.failures.append({
                    "problem": problem, "op": op, "mutations": req.mutations, "thread": self.tid,
                    "request": data[:4000].decode("latin-1"), "request_bytes": len(data),
                    "responses": [{"status": r.status, "headers": dict(r.headers),
                                   "body": r.body[:500].decode("latin-1")} for r in responses]})

    def valid(self, op, req, allowed):
        """A valid request (no mutant before it): its answer must be in `allowed`."""
        responses = self.exchange(op, req, mutant=False)
        if not responses:
            raise Skip  # a failure already
        if not answer_in(responses[0], allowed):
            self.fail(f"valid {op} answered {responses[0].label()}, expected one of {sorted(map(str, allowed))}",
                      op, req, responses[:1])
            raise Skip
        return responses[0]

    # -- the buyer's flow, every step valid and checked
    def new_user(self):
        self.n_users += 1
        return f"mf{self.a.seed}-{self.tid}-{self.n_users}"

    def enter_req(self, user):
        return Req("POST", "/public/enter", headers=[("x-request-id", f"mf-{self.tid}-{self.n_users}")],
                   json_body=[("userId", user), ("eventId", self.a.event)])

    def new_buyer(self):
        user = self.new_user()
        token = self.valid("enter", self.enter_req(user), {200}).json()["roomToken"]
        self.tokens = (self.tokens + [token])[-16:]
        return user, token

    def next_seat(self):
        """This thread's next seat: the threads take turns through every seat, so that a
        valid hold finds its seat taken only where a mutant took it (or after a lap)."""
        i = (self.tid + self.seat_turn * self.a.threads) % (len(self.a.sections) * self.a.seats_per_section)
        self.seat_turn += 1
        section, n = divmod(i, self.a.seats_per_section)
        return f"{self.a.sections[section]}-{n + 1}"

    def hold_req(self, token, seat):
        return Req("POST", "/public/hold", headers=[("x-room-token", token)],
                   json_body=[("eventId", self.a.event), ("seatId", seat)])

    def hold(self, token):
        for _ in range(5):
            seat = self.next_seat()
            r = self.valid("hold", self.hold_req(token, seat), {201, "409 SEAT_HELD", "409 SEAT_SOLD"})
            if r.status == 201:
                return seat, r.json()["holdId"]
            with self.s.lock:
                self.s.hold_collisions += 1  # a mutant took the seat
        raise Skip

    def key(self):
        return f"mf-{self.a.seed}-{self.tid}-{self.rng.getrandbits(64):016x}"

    def intent_req(self, user, token, seats, key):
        return Req("POST", "/confirm/payment-intent", headers=[("x-room-token", token), ("Idempotency-Key", key)],
                   json_body=[("userId", user), ("eventId", self.a.event), ("seatIds", seats)])

    def intent(self, user, token, seats):
        return self.valid("payment-intent", self.intent_req(user, token, seats, self.key()), {201}).json()["intentId"]

    def commit_req(self, user, token, seats, intent, key):
        return Req("POST", "/confirm/commit", headers=[("x-room-token", token), ("Idempotency-Key", key)],
                   json_body=[("intentId", intent), ("eventId", self.a.event), ("seatIds", seats), ("userId", user)])

    def record_commits(self, user, token, req, responses):
        """Every 202 to a commit: the order must become final. Kept with the tokens the
        request carried (a mutant may have swapped in another valid one) and the buyer's."""
        for r in responses:
            if r.status != 202:
                continue
            j = r.json()
            if not isinstance(j, dict) or not isinstance(j.get("idem"), str):
                self.fail("202 without an idem", "commit", req, [r])
                continue
            tokens = [v if isinstance(v, str) else v.decode("latin-1")
                      for k, v in req.headers if k.lower() == "x-room-token"] + [token]
            with self.s.lock:
                self.s.accepted.setdefault((user, j["idem"]), {"tokens": tokens, "location": r.h("location")})
            self.commits = (self.commits + [(token, user, j["idem"])])[-32:]

    # -- templates: a valid request, and what it must be answered after its mutant
    def template(self, op):
        """(request, allowed(mutant_responses) -> set of answers the valid request may get
        after the mutant; mutant_responses is None when no mutant was sent)."""
        ev = self.a.event
        rid = [("x-request-id", f"mf-{self.tid}-{self.rng.getrandbits(32):08x}")]
        ok = lambda m: {200}  # noqa: E731
        if op == "ping":
            return Req("GET", "/public/ping", headers=rid), ok
        if op == "health":
            return Req("GET", "/public/health", headers=rid), ok
        if op == "enter":
            return self.enter_req(self.new_user()), ok
        if op == "summary":
            return Req("GET", f"/public/summary/{ev}/{self.rng.choice(self.a.sections)}", headers=rid), ok
        if op == "seats":
            return Req("GET", f"/public/seats/{ev}", headers=rid), ok
        if op == "admin":
            body = [("openAtMs", int(time.time() * 1000) - 1000), ("rate", 1000)]
            return Req("POST", f"/admin/events/{self.a.admin_event}/admission",
                       headers=[("authorization", f"Bearer {self.a.admin_token}")], json_body=body), ok
        if op == "status":
            if not self.commits or self.rng.random() < 0.2:
                user, token = self.new_buyer()
                seats = [self.hold(token)[0]]
                req = self.commit_req(user, token, seats, self.intent(user, token, seats), self.key())
                self.record_commits(user, token, req, [self.valid("commit", req, {202})])
            token, user, idem = self.rng.choice(self.commits)
            return Req("GET", "/confirm/status", query="idem=" + pct(idem),
                       headers=rid + [("x-room-token", token)]), ok
        user, token = self.new_buyer()
        if op == "room-status":
            if self.rng.random() < 0.5:
                return Req("GET", "/public/room-status", query="token=" + pct(token),
                           headers=rid), ok
            return Req("GET", "/public/room-status", headers=rid + [("x-room-token", token)]), ok
        if op == "hold":
            # A refused mutant leaves the seat free; one that held it leaves it held (a
            # mutant may also have held another seat). SEAT_HELD/SOLD with no mutant
            # holding it: another thread's mutant did (counted as a collision).
            return self.hold_req(token, self.next_seat()), lambda m: (
                {201, "409 SEAT_HELD"} if m and any(r.status == 201 for r in m) else {201, "409 SEAT_HELD", "409 SEAT_SOLD"})
        if op == "release":
            seat, hold_id = self.hold(token)
            req = Req("POST", "/public/release", headers=[("x-room-token", token)],
                      json_body=[("eventId", ev), ("seatId", seat), ("holdId", hold_id)])
            # Released once: true the first time (the mutant's, if it released), false after.
            return req, lambda m: ({"200 released=false"} if m and any(released(r) for r in m)
                                   else {"200 released=true"})
        if op == "payment-intent":
            seats = [self.hold(token)[0] for _ in range(self.rng.choice([1, 1, 2]))]
            # A refused mutant leaves the key free: 201. One accepted with this key makes
            # ours a replay (200) or, with other fields, a reuse (422); with another key, 201.
            return self.intent_req(user, token, seats, self.key()), lambda m: (
                {200, 201, "422 IDEMPOTENCY_KEY_REUSED"} if m and any(r.status in (200, 201) for r in m) else {201})
        if op == "commit":
            seats = [self.hold(token)[0] for _ in range(self.rng.choice([1, 1, 2]))]
            req = self.commit_req(user, token, seats, self.intent(user, token, seats), self.key())
            # A refused mutant leaves key, intent and holds as they were: 202. An accepted
            # one makes ours a replay (202) or a reuse (422), or (another key) may have
            # sold the seats already.
            return req, lambda m: ({202, "409 HOLD_MISMATCH", "410 INTENT_EXPIRED", "422 IDEMPOTENCY_KEY_REUSED"}
                                   if m and any(r.status == 202 for r in m) else {202})
        raise ValueError(op)

    def step(self):
        op = self.rng.choice(self.ops)
        tmpl, allowed = self.template(op)
        user = dict(tmpl.json).get("userId") if tmpl.json else None
        token = tmpl.header("x-room-token")
        m = None
        if self.rng.random() >= VALID_ONLY:
            mreq = mutate(self.rng, tmpl, {"other_token": self.rng.choice(self.tokens) if self.tokens else None})
            m = self.exchange(op, mreq, mutant=True)
            if op == "commit":
                self.record_commits(user, token, mreq, m)
            # GETs change nothing; after a stateful mutant, half the time the valid
            # request shows that the state is what the mutant's answer says.
            if not m or op not in STATEFUL or self.rng.random() >= FOLLOW_UP:
                return
        want = allowed(m)
        responses = self.exchange(op, tmpl, mutant=False)
        if not responses:
            return
        if not answer_in(responses[0], want):
            after = f" after its mutant's {m[0].label()}" if m else ""
            self.fail(f"valid {op} answered {responses[0].label()}{after}, expected one of {sorted(map(str, want))}",
                      op, tmpl, responses[:1])
        if op == "commit":
            self.record_commits(user, token, tmpl, responses)

    def run(self, until):
        while time.monotonic() < until and not self.s.stop.is_set():
            try:
                self.step()
            except Skip:
                pass
            if self.s.failure_count and not edge_answers(self.a.addr):
                self.fail("the edge no longer accepts connections", "-", Req("GET", "/public/ping"), [])
                self.s.stop.set()  # nothing more to learn
        self.conn.close()


STATEFUL = {"enter", "hold", "release", "payment-intent", "commit"}


def closing(r):
    return (r.h("connection") or "").lower() == "close"


def released(r):
    return r.status == 200 and (r.json() or {}).get("released") is True


def answer_in(r, allowed):
    """`allowed` holds statuses (201), "status CODE" or "200 released=true|false"."""
    if r.status in allowed or r.label() in allowed:
        return True
    if r.status == 200 and isinstance(r.json(), dict) and "released" in r.json():
        return f"200 released={str(r.json()['released']).lower()}" in allowed
    return False


def response_problem(r, in_fault, head_only=False):
    if r.status >= 500:
        if r.status == 503 and r.h("retry-after") and in_fault:
            return None
        return f"{r.label()} answer" + (" (no Retry-After)" if r.status == 503 and not r.h("retry-after") else "")
    if not r.h("x-request-id"):
        return "an answer without x-request-id"
    if r.status >= 400 and not head_only and r.code() not in KNOWN_CODES:
        return f"a {r.status} without a known error code"
    return None


def edge_answers(addr):
    try:
        socket.create_connection(addr, timeout=5).close()
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ the audit

def psql(url, sql):
    """The fields of `sql`'s rows in one list. Fields and rows are NUL-separated (-z -0),
    so no value can break the parsing."""
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-z", "-0", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                         check=True, capture_output=True).stdout.decode()
    return out.rstrip("\0\n").split("\0") if out.strip("\0\n") else []


def audit(args, shared, out):
    problems = []
    accepted = shared.accepted
    final = {}
    conn = Conn(args.addr, args.deadline_s)
    deadline = time.monotonic() + args.audit_wait_s
    todo = list(accepted)
    while todo and time.monotonic() < deadline:
        left = []
        for key in todo:
            a = accepted[key]
            target = a["location"] or "/confirm/status?idem=" + pct(key[1])
            status = None
            for token in a["tokens"]:
                path, _, query = target.partition("?")
                req = Req("GET", path, query, headers=[("x-room-token", token)]).encode()
                try:
                    conn.send(req)
                    r = conn.response()
                except (Dropped, TimeoutError, OSError):
                    conn.close()
                    continue
                if r.status == 200:
                    status = ((r.json() or {}).get("order") or {}).get("status")
                    break
                if r.status >= 500:
                    problems.append(f"status poll of {key}: {r.label()}")
            if status in ("CONFIRMED", "REJECTED"):
                final[key] = status
            else:
                left.append(key)
        todo = left
        if todo:
            time.sleep(0.25)  # a poll round, not synchronisation: the deadline bounds it
    conn.close()
    if todo:
        problems.append(f"{len(todo)} accepted commits not final after {args.audit_wait_s} s, e.g. {todo[:3]}")
    out["accepted"] = len(accepted)
    out["final"] = len(final)
    out["confirmed"] = sum(1 for s in final.values() if s == "CONFIRMED")
    out["rejected"] = sum(1 for s in final.values() if s == "REJECTED")

    if args.database_url:
        ev = args.event
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", ev)
        f = psql(args.database_url, f"SELECT user_id, idem, status FROM orders WHERE event_id = '{ev}'")
        rows = {(f[i], f[i + 1]): f[i + 2] for i in range(0, len(f) - 2, 3)}
        missing = [k for k in accepted if k not in rows]
        if missing:
            problems.append(f"{len(missing)} accepted commits without an order row, e.g. {missing[:3]}")
        differ = [(k, final[k], rows[k]) for k in final if k in rows and rows[k] != final[k]]
        if differ:
            problems.append(f"{len(differ)} statuses differ between the edge and PostgreSQL, e.g. {differ[:3]}")
        checks = {
            "seats sold twice (sold_seats)":
                "SELECT count(*) FROM (SELECT event_id, seat_id FROM sold_seats GROUP BY 1, 2 HAVING count(*) > 1) d",
            f"seats in two CONFIRMED orders of {ev}":
                f"SELECT count(*) FROM (SELECT s FROM orders o, unnest(o.seat_ids) s WHERE o.event_id = '{ev}' "
                "AND o.status = 'CONFIRMED' GROUP BY s HAVING count(*) > 1) d",
            f"seats of CONFIRMED orders of {ev} not in sold_seats":
                f"SELECT count(*) FROM orders o, unnest(o.seat_ids) s WHERE o.event_id = '{ev}' AND o.status = 'CONFIRMED' "
                "AND NOT EXISTS (SELECT 1 FROM sold_seats x WHERE x.event_id = o.event_id AND x.seat_id = s "
                "AND x.order_id = o.order_id)",
            f"sold seats of {ev} whose order is not CONFIRMED":
                f"SELECT count(*) FROM sold_seats x JOIN orders o ON o.order_id = x.order_id "
                f"WHERE x.event_id = '{ev}' AND o.status <> 'CONFIRMED'",
        }
        for what, sql in checks.items():
            n = int(psql(args.database_url, sql)[0])
            out[what] = n
            if n:
                problems.append(f"{n} {what}")
        confirmed_seats = int(psql(args.database_url,
                                   f"SELECT coalesce(sum(cardinality(seat_ids)), 0) FROM orders "
                                   f"WHERE event_id = '{ev}' AND status = 'CONFIRMED'")[0])
        # The summary is cached by each core for ~1 s: read until it agrees or time is up.
        sold, until = None, time.monotonic() + 10
        conn = Conn(args.addr, args.deadline_s)
        while time.monotonic() < until:
            sold = 0
            for section in args.sections:
                conn.send(Req("GET", f"/public/summary/{ev}/{section}").encode())
                r = conn.response()
                sold = sold + r.json()["sold"] if r.status == 200 else None
                if sold is None:
                    break
            if sold == confirmed_seats:
                break
            time.sleep(0.2)  # poll round inside the deadline above
        conn.close()
        out["summary sold / PostgreSQL confirmed seats"] = f"{sold} / {confirmed_seats}"
        if sold != confirmed_seats:
            problems.append(f"summaries say {sold} sold, PostgreSQL has {confirmed_seats} seats in CONFIRMED orders")
    else:
        problems.append("no --database-url: the PostgreSQL checks did not run")

    if args.redis_url:
        for ev in [args.event] + ([args.admin_event] if args.admin_token else []):
            n = int(redis_command(args.redis_url, "XLEN", f"ev:{{{ev}}}:commits:dlq"))
            out[f"dead letters of {ev}"] = n
            if n:
                problems.append(f"{n} dead letters in ev:{{{ev}}}:commits:dlq (worker dlq list {ev})")
    else:
        problems.append("no --redis-url: the dead-letter stream was not checked")

    conn = Conn(args.addr, args.deadline_s)
    try:
        conn.send(Req("GET", "/public/health").encode())
        health = conn.response().status
    except (Dropped, TimeoutError, OSError) as e:
        health = repr(e)
    conn.close()
    out["health after"] = health
    if health != 200:
        problems.append(f"GET /public/health after the run: {health}")
    if args.edge_pid:
        alive = os.path.exists(f"/proc/{args.edge_pid}") and \
            open(f"/proc/{args.edge_pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        out["edge alive"] = alive
        if not alive:
            problems.append(f"the edge (pid {args.edge_pid}) is gone")
    return problems


# ------------------------------------------------------------------ main

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", default=os.environ.get("EDGE_ADDR", "127.0.0.1:8080"))
    p.add_argument("--event", default="demo", help="seeded, open event the buyers buy in")
    p.add_argument("--sections", default="A,B,C,D,E")
    p.add_argument("--seats-per-section", type=int, default=10000)
    p.add_argument("--admin-event", default=None, help="event whose admission the admin template changes")
    p.add_argument("--admin-token", default=os.environ.get("ADMIN_TOKEN"))
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=6)
    p.add_argument("--request-timeout-ms", type=int, default=10000, help="the edge's EDGE_REQUEST_TIMEOUT_MS")
    p.add_argument("--grace-ms", type=int, default=5000, help="on top of it, for a loaded machine")
    p.add_argument("--audit-wait-s", type=float, default=60)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    p.add_argument("--edge-pid", type=int, default=None)
    p.add_argument("--fault-every", type=float, default=0, help="seconds between Redis pauses (0: no faults)")
    p.add_argument("--fault-ms", type=int, default=1500)
    p.add_argument("--out", default=None, help="write the summary and failures as JSON here")
    a = p.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 2**31)
    host, port = a.addr.rsplit(":", 1)
    a.addr = (host, int(port))
    Req.host = f"{host}:{port}"
    a.sections = a.sections.split(",")
    a.deadline_s = (a.request_timeout_ms + a.grace_ms) / 1000
    if a.admin_token and not a.admin_event:
        p.error("--admin-token needs --admin-event (a mutant may close its room)")
    print(f"mutfuzz: seed {a.seed} ({a.threads} threads, {a.seconds:g} s, event {a.event}, "
          f"deadline {a.deadline_s:g} s, faults {'every %g s' % a.fault_every if a.fault_every else 'none'})", flush=True)

    shared = Shared()
    faults = Faults(a.redis_url, a.fault_every, a.fault_ms, a.deadline_s) if a.fault_every else None
    started = time.monotonic()
    until = started + a.seconds
    threads = [threading.Thread(target=Fuzzer(a, i, shared, faults).run, args=(until,), daemon=True)
               for i in range(a.threads)]
    if faults:
        threads.append(threading.Thread(target=faults.run, args=(until, shared.stop), daemon=True))
    for t in threads:
        t.start()
    # Progress every 30 s; a thread stuck past every deadline is a failure of its own.
    hard_stop = until + 3 * a.deadline_s + 10
    for t in threads:
        while t.is_alive() and time.monotonic() < hard_stop:
            t.join(timeout=min(30, max(0.1, hard_stop - time.monotonic())))
            if t.is_alive():
                print(f"mutfuzz: {time.monotonic() - started:.0f} s, {shared.sent} requests, "
                      f"{len(shared.accepted)} accepted commits, {shared.failure_count} failures", flush=True)
        if t.is_alive():
            with shared.lock:
                shared.failure_count += 1
                shared.failures.append({"problem": "a fuzzing thread hung past every deadline", "op": "-"})
            break
    shared.stop.set()
    elapsed = time.monotonic() - started

    out = {"seed": a.seed, "seconds": round(elapsed, 1), "requests": shared.sent,
           "requests/s": round(shared.sent / elapsed, 1), "by_status": dict(shared.by_status.most_common()),
           "by_op": dict(shared.by_op), "by_op_status": dict(sorted(shared.by_op_status.items())),
           "mutations": dict(sorted(shared.mutation_kinds.items())), "hold_collisions": shared.hold_collisions}
    problems = audit(a, shared, out)

    print(f"mutfuzz: {shared.sent} requests in {elapsed:.0f} s ({shared.sent / elapsed:.0f}/s), seed {a.seed}")
    print("responses by status and code:")
    for label, n in shared.by_status.most_common():
        print(f"  {n:9d}  {label}")
    print("requests by operation: " + ", ".join(f"{op} {n}" for op, n in sorted(shared.by_op.items())))
    print("mutations applied: " + ", ".join(f"{k} {n}" for k, n in sorted(shared.mutation_kinds.items())))
    for k in ("accepted", "final", "confirmed", "rejected"):
        print(f"commits {k}: {out.get(k)}")
    for k, v in out.items():
        if k not in ("seed", "seconds", "requests", "requests/s", "by_status", "by_op", "by_op_status",
                     "mutations", "accepted", "final", "confirmed", "rejected"):
            print(f"{k}: {v}")
    for f in shared.failures[:20]:
        print(f"FAILURE: {f['problem']} [{f.get('op')}; {', '.join(f.get('mutations', []))}]")
        if "request" in f:
            print(f"  request ({f['request_bytes']} bytes): {f['request'][:600].encode('latin-1')!r}")
            for r in f["responses"]:
                print(f"  answer: {r['status']} {r['body'][:200]!r}")
    for pr in problems:
        print(f"AUDIT PROBLEM: {pr}")
    out["failures"], out["failure_count"], out["audit_problems"] = shared.failures, shared.failure_count, problems
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    ok = shared.failure_count == 0 and not problems
    print(f"mutfuzz: {'PASSED' if ok else 'FAILED'} ({shared.failure_count} failures, {len(problems)} audit problems; "
          f"reproduce with --seed {a.seed})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
