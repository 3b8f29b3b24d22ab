#!/usr/bin/env python3
"""perf/probe-http.py: quick HTTP/1.1 robustness probes of a server answering
`GET /public/ping`, over raw sockets (no HTTP library in the way).

Usage: perf/probe-http.py HOST:PORT [--pid PID]

With --pid the server's resident memory (VmRSS) is reported after the large-input
probes and whether the process still exists after each probe. Prints one markdown table
row per probe: what was sent, what came back, whether the connection stayed open, and
whether the server still answers a fresh ping afterwards.

These are probes, not a test suite: the edge's own integration tests pin its behaviour.
RFC 9112 sections cited are what a conforming server should do.
"""

import argparse
import os
import random
import socket
import time

READ_TIMEOUT_S = 3.0
# After the expected answers: how long to wait for more, or for the close.
LINGER_S = 0.5
PING = b"GET /public/ping HTTP/1.1\r\nHost: probe\r\n\r\n"


class Result:
    def __init__(self):
        self.responses = []  # (status, headers{lower: value}, body)
        self.state = "open"  # open | closed | reset | no answer
        self.note = ""
        self.elapsed_ms = None  # time until the wanted answers arrived


def read_responses(sock, want, timeout=READ_TIMEOUT_S, linger_s=LINGER_S):
    """Reads responses (Content-Length framing) until `want` arrived, then keeps reading
    for `linger_s` more to catch extra answers and see whether the peer closes. Stops
    early on EOF, reset or timeout. `elapsed_ms` is the time until the `want`-th answer."""
    res = Result()
    buf = b""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1").split("\r\n")
            parts = head[0].split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(buf) >= end + 4 + length:
                res.responses.append((status, headers, buf[end + 4 : end + 4 + length]))
                buf = buf[end + 4 + length :]
                if len(res.responses) == want:
                    res.elapsed_ms = (time.monotonic() - t0) * 1000
                    deadline = time.monotonic() + linger_s
                continue
        left = deadline - time.monotonic()
        if left <= 0:
            if len(res.responses) < want:
                res.state = "no answer" if not res.responses else "open"
                res.note = "timed out waiting"
            else:
                res.state = "open"
            if buf:
                res.note = f"{len(buf)} unparsed bytes"
            return res
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            res.state = "reset"
            return res
        if not chunk:
            res.state = "closed"
            if buf:
                res.note = f"{len(buf)} unparsed bytes"
            return res
        buf += chunk


def connect(addr):
    sock = socket.create_connection(addr, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_and_read(addr, data, want=1, timeout=READ_TIMEOUT_S, linger_s=LINGER_S):
    sock = connect(addr)
    try:
        try:
            sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError) as e:
            r = Result()
            r.state = "reset"
            r.note = f"send failed: {e.__class__.__name__}"
            return r
        return read_responses(sock, want, timeout, linger_s)
    finally:
        sock.close()


def alive(addr, pid):
    if pid is not None and not os.path.exists(f"/proc/{pid}"):
        return "**process gone**"
    try:
        r = send_and_read(addr, PING)
    except OSError as e:
        return f"**no: {e.__class__.__name__}**"
    if r.responses and r.responses[0][0] == 200:
        return "yes"
    return f"**no ({r.state})**"


def rss(pid):
    if pid is None:
        return ""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return f"; server RSS {int(line.split()[1]) // 1024} MiB"
    except OSError:
        return "; server gone"
    return ""


def cpu_s(pid):
    """utime+stime of the server, in seconds (None without --pid)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid, timeout_s=60):
    """Waits until the server stops burning CPU (it may still be scanning input)."""
    last = cpu_s(pid)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        time.sleep(0.3)
        now = cpu_s(pid)
        if now is None or now == last:
            return
        last = now


def cpu_note(pid, cpu0):
    settle(pid)
    cpu1 = cpu_s(pid)
    if cpu0 is None or cpu1 is None:
        return ""
    return f"; server CPU {cpu1 - cpu0:.2f} s"


def statuses(r):
    return ",".join(str(s) for s, _, _ in r.responses) or "-"


def row(name, sent, answer, r, addr, pid, extra=""):
    state = r.state + (f" ({r.note})" if r.note and r.state != "no answer" else "")
    print(f"| {name} | {sent} | {answer}{extra} | {state} | {alive(addr, pid)} |")


def request(method, target, headers=(), body=b"", version="HTTP/1.1"):
    lines = [f"{method} {target} {version}", "Host: probe"] + list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def probe_keepalive(addr, pid):
    sock = connect(addr)
    got = []
    for _ in range(3):
        sock.sendall(PING)
        r = read_responses(sock, 1)
        got.append(statuses(r))
    sock.close()
    r.state = "open" if r.state == "open" else r.state
    row("keep-alive", "3 pings, one connection, one at a time", " ".join(got), r, addr, pid)


def probe_pipeline(addr, pid, n=100):
    data = b"".join(
        request("GET", "/public/ping", [f"x-request-id: p{i:03d}"]) for i in range(n)
    )
    r = send_and_read(addr, data, want=n)
    ms = r.elapsed_ms or 0
    ids = [h.get("x-request-id", "") for _, h, _ in r.responses]
    in_order = ids == [f"p{i:03d}" for i in range(n)]
    ok = sum(1 for s, _, _ in r.responses if s == 200)
    row(
        "pipelining",
        f"{n} pings in one write, x-request-id p000..p{n - 1:03d}",
        f"{len(r.responses)} answers, {ok}x 200, ids echoed in order: {in_order}, {ms:.0f} ms",
        r,
        addr,
        pid,
    )


def probe_split(addr, pid):
    sock = connect(addr)
    for b in PING:
        sock.sendall(bytes([b]))
        time.sleep(0.002)
    r = read_responses(sock, 1)
    sock.close()
    row("byte-at-a-time", "ping sent 1 byte per write", statuses(r), r, addr, pid)


def probe_te_cl(addr, pid):
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: probe\r\nx-request-id: smuggled\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    data = request(
        "POST",
        "/public/ping",
        [f"Content-Length: {len(body)}", "Transfer-Encoding: chunked"],
        body,
    )
    r = send_and_read(addr, data, want=2)
    answered = [h.get("x-request-id", "") for _, h, _ in r.responses]
    smuggled_ran = "smuggled" in answered
    row(
        "TE + CL (CL.TE smuggling shape)",
        "POST with `Content-Length: 53` and `Transfer-Encoding: chunked`, body `0\\r\\n\\r\\n` + a GET /smuggled",
        f"{statuses(r)}; smuggled GET answered: {smuggled_ran} (RFC 9112 6.1: reject, or chunked and close)",
        r,
        addr,
        pid,
    )


def probe_double_cl(addr, pid):
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: probe\r\nx-request-id: smuggled\r\n\r\n"
    data = request(
        "POST",
        "/public/ping",
        ["Content-Length: 0", f"Content-Length: {len(smuggled)}"],
        smuggled,
    )
    r = send_and_read(addr, data, want=2)
    answered = [h.get("x-request-id", "") for _, h, _ in r.responses]
    row(
        "two different Content-Length",
        "`Content-Length: 0` then `Content-Length: 61`, body = a GET /smuggled",
        f"{statuses(r)}; smuggled GET answered: {'smuggled' in answered} (RFC 9112 6.3: 400 and close)",
        r,
        addr,
        pid,
    )


def probe_te_gzip(addr, pid):
    data = request("POST", "/public/ping", ["Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n")
    r = send_and_read(addr, data)
    row("TE other than chunked", "`Transfer-Encoding: gzip, chunked`", statuses(r), r, addr, pid)


def probe_big_header(addr, pid, size):
    value = b"a" * size
    data = b"GET /public/ping HTTP/1.1\r\nHost: probe\r\nx-big: " + value + b"\r\n\r\n"
    cpu0 = cpu_s(pid)
    t0 = time.monotonic()
    r = send_and_read(addr, data, timeout=30)
    ms = r.elapsed_ms if r.elapsed_ms is not None else (time.monotonic() - t0) * 1000
    row(
        f"header block {human(size)}",
        f"one {human(size)} header value",
        f"{statuses(r)} after {ms:.0f} ms",
        r,
        addr,
        pid,
        rss(pid) + cpu_note(pid, cpu0),
    )


def probe_endless_header(addr, pid, total):
    """Header lines that never end: how much does the server buffer?"""
    sock = connect(addr)
    line = b"x-pad: " + b"b" * 1000 + b"\r\n"
    sent = 0
    state = "open"
    cpu0 = cpu_s(pid)
    t0 = time.monotonic()
    try:
        sock.sendall(b"GET /public/ping HTTP/1.1\r\nHost: probe\r\n")
        chunk = line * 1024
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        state = "reset"
    ms = (time.monotonic() - t0) * 1000
    settle(pid)
    mem = rss(pid) + cpu_note(pid, cpu0)
    r = Result()
    r.state = state
    if state == "open":
        r = read_responses(sock, 1, timeout=1)
    sock.close()
    row(
        "header block never ends",
        f"~1 KiB header lines, no blank line, until {human(total)} sent or refused",
        f"{human(sent)} accepted in {ms:.0f} ms; answer {statuses(r)}",
        r,
        addr,
        pid,
        mem,
    )


def probe_big_body(addr, pid, size):
    """A body far larger than any request of this API, to a route that takes none."""
    sock = connect(addr)
    cpu0 = cpu_s(pid)
    state = "open"
    sent = 0
    try:
        sock.sendall(request("POST", "/public/ping", [f"Content-Length: {size}"]))
        chunk = b"z" * (1 << 20)
        while sent < size:
            sock.sendall(chunk)
            sent += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        state = "reset"
    mem = rss(pid) + cpu_note(pid, cpu0)
    r = Result()
    r.state = state
    if state == "open":
        r = read_responses(sock, 1, timeout=2)
    sock.close()
    row(
        f"body {human(size)}",
        f"POST /public/ping with `Content-Length: {size}` and the whole body",
        f"{human(sent)} accepted; answer {statuses(r)}",
        r,
        addr,
        pid,
        mem,
    )


def probe_mutations(addr, pid, rng, n):
    """Valid requests with 1-4 random byte edits, one connection each: does any of them
    take the server down (a panic aborts the whole process under panic = "abort")?"""
    bases = [
        PING * 2,
        request("POST", "/public/ping", ["Content-Length: 5"], b"hello") + PING,
        request("POST", "/public/ping", ["Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n")
        + PING,
        request("GET", "/public/ping?a=b%20c", ["Connection: keep-alive", "x-request-id: abc"]),
    ]
    answers = {}
    down_at = None
    for i in range(n):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            at = rng.randrange(len(data))
            if op == 0:
                data[at] = rng.randrange(256)
            elif op == 1:
                data.insert(at, rng.choice(b"\r\n :\x00\xff0123456789abcdefT"))
            elif op == 2 and len(data) > 1:
                del data[at]
            else:
                data[at:at] = data[at : at + rng.randint(1, 16)]
        try:
            r = send_and_read(addr, bytes(data), want=2, timeout=0.05, linger_s=0.01)
            key = statuses(r)
        except OSError as e:
            key = e.__class__.__name__
        answers[key] = answers.get(key, 0) + 1
        if i % 100 == 99 and alive(addr, pid) != "yes":
            down_at = i
            break
    r = Result()
    r.state = "-"
    top = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items(), key=lambda kv: -kv[1])[:8])
    sent = n if down_at is None else f"{down_at + 1} (server down)"
    row("random mutations", f"{sent} requests with 1-4 random byte edits", f"answers {top}", r, addr, pid)


def probe_many_headers(addr, pid, n):
    data = request("GET", "/public/ping", [f"x-h{i}: v" for i in range(n)])
    r = send_and_read(addr, data)
    row(f"{n} header fields", f"{n} short headers", statuses(r), r, addr, pid)


def probe_raw(addr, pid, name, data, shown, want=1):
    r = send_and_read(addr, data, want=want)
    row(name, shown, statuses(r), r, addr, pid)


def human(n):
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}"
    return f"{n} B"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", help="HOST:PORT")
    parser.add_argument("--pid", type=int, help="server PID, for RSS and liveness")
    parser.add_argument(
        "--mutations", type=int, default=1000, help="randomly mutated requests to send"
    )
    args = parser.parse_args()
    host, _, port = args.addr.rpartition(":")
    addr = (host, int(port))
    pid = args.pid
    rng = random.Random(9112)

    print(f"Server {args.addr}{rss(pid)} at start")
    print()
    print("| probe | sent | answer | connection after | still serves a new ping |")
    print("|---|---|---|---|---|")
    probe_keepalive(addr, pid)
    probe_pipeline(addr, pid)
    probe_split(addr, pid)
    probe_te_cl(addr, pid)
    probe_double_cl(addr, pid)
    probe_te_gzip(addr, pid)
    probe_raw(
        addr,
        pid,
        "bad chunk size",
        request("POST", "/public/ping", ["Transfer-Encoding: chunked"], b"zz\r\nabc\r\n0\r\n\r\n"),
        "chunked body with chunk size `zz`",
    )
    probe_raw(
        addr,
        pid,
        "huge chunk size",
        request(
            "POST", "/public/ping", ["Transfer-Encoding: chunked"], b"ffffffffffffffff\r\nabc\r\n"
        ),
        "chunk size `ffffffffffffffff`",
    )
    probe_many_headers(addr, pid, 95)
    probe_many_headers(addr, pid, 100)
    # The body first: RSS rarely falls back after the header probes.
    probe_big_body(addr, pid, 64 << 20)
    for size in (8 << 10, 64 << 10, 1 << 20, 16 << 20):
        probe_big_header(addr, pid, size)
    probe_endless_header(addr, pid, 64 << 20)
    probe_raw(addr, pid, "garbage", bytes(rng.randrange(256) for _ in range(4096)), "4 KiB of random bytes")
    probe_raw(addr, pid, "NUL bytes", b"\x00" * 64 + b"\r\n\r\n", "64 NUL bytes + CRLFCRLF")
    probe_raw(addr, pid, "binary then CRLFCRLF", bytes(range(256)) + b"\r\n\r\n", "bytes 0..255 + CRLFCRLF")
    probe_raw(
        addr,
        pid,
        "space before colon",
        b"GET /public/ping HTTP/1.1\r\nHost : probe\r\n\r\n",
        "`Host : probe` (RFC 9112 5.1: 400)",
    )
    probe_raw(
        addr,
        pid,
        "obs-fold",
        b"GET /public/ping HTTP/1.1\r\nHost: probe\r\nx-a: b\r\n c\r\n\r\n",
        "folded header line (RFC 9112 5.2: 400 or replace with SP)",
    )
    probe_raw(
        addr,
        pid,
        "bare LF line ends",
        b"GET /public/ping HTTP/1.1\nHost: probe\n\n",
        "`\\n` instead of `\\r\\n` (RFC 9112 2.2: MAY accept)",
    )
    probe_raw(
        addr,
        pid,
        "HTTP/9.9",
        b"GET /public/ping HTTP/9.9\r\nHost: probe\r\n\r\n",
        "unknown version",
    )
    probe_raw(
        addr,
        pid,
        "bad method byte",
        b"G\x01T /public/ping HTTP/1.1\r\nHost: probe\r\n\r\n",
        "control byte in the method",
    )
    probe_raw(
        addr,
        pid,
        "control byte in value",
        b"GET /public/ping HTTP/1.1\r\nHost: probe\r\nx-a: a\x01b\r\n\r\n",
        "0x01 inside a header value",
    )
    probe_raw(
        addr,
        pid,
        "non-UTF-8 value",
        b"GET /public/ping HTTP/1.1\r\nHost: probe\r\nx-a: \xff\xfe\r\n\r\n",
        "bytes 0xff 0xfe in a header value (obs-text, allowed)",
    )
    probe_raw(
        addr,
        pid,
        "absolute-form target",
        b"GET http://probe/public/ping HTTP/1.1\r\nHost: probe\r\n\r\n",
        "`GET http://probe/public/ping` (RFC 9112 3.2.2: accept)",
    )
    probe_raw(
        addr,
        pid,
        "Content-Length +5",
        request("POST", "/public/ping", ["Content-Length: +5"], b"hello"),
        "`Content-Length: +5`",
    )
    probe_raw(
        addr,
        pid,
        "Content-Length huge",
        request("POST", "/public/ping", ["Content-Length: 99999999999999"], b"x"),
        "`Content-Length: 99999999999999` then 1 byte",
    )
    probe_mutations(addr, pid, rng, args.mutations)
    print()
    print(f"Server at end{rss(pid)}; still serves a ping: {alive(addr, pid)}")


if __name__ == "__main__":
    main()
