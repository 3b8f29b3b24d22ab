#!/usr/bin/env python3
"""perf/sse_bench.py: idle waiting-room event streams (`GET /public/room-events`) and
pushes to all of them, for perf/bench-sse.sh.

Enters STREAMS buyers of EVENT (closed for an hour, so every stream idles), opens one
event stream each and reads its first event; prints the edge's resident memory before
and after (from /proc/EDGE_PID/status: VmRSS) and per stream. Then, PUSHES times, an
operator moves the opening an hour later (admin endpoint), and the script waits until
every stream got an event that says so (its etaSec): the time from the change to the
last stream's event is the push's duration.
With --close-file, the streams stay open after the pushes until that file appears,
then all close at once (a mass disconnect), so a measurement of the pushes does not
take in the closes (every end costs the edge about what a pushed frame does).
Writes one JSON object to stdout.

    perf/sse_bench.py --target 127.0.0.1:8080 --event sse --streams 19000 \\
        --edge-pid 1234 --admin-token T --pushes 10 --push-every 1.0
"""
import argparse
import json
import os
import selectors
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def request(sock, raw):
    sock.sendall(raw)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += sock.recv(65536)
    status = int(head.split(b" ")[1])
    return status, rest[:length]


def post(sock, path, body, headers=""):
    data = json.dumps(body).encode()
    raw = (f"POST {path} HTTP/1.1\r\nHost: b\r\n{headers}Content-Type: application/json\r\n"
           f"Content-Length: {len(data)}\r\n\r\n").encode() + data
    return request(sock, raw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--event", required=True)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--edge-pid", type=int, required=True)
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--pushes", type=int, default=5)
    ap.add_argument("--push-every", type=float, default=1.0)
    ap.add_argument("--ready-file", default="")
    ap.add_argument("--pending", type=int, default=64)
    ap.add_argument("--close-file", default="")
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    addr = (host, int(port))

    ctl = socket.create_connection(addr)
    tokens = []
    for i in range(a.streams):
        status, body = post(ctl, "/public/enter", {"userId": f"s{i}", "eventId": a.event})
        if status != 200:
            raise SystemExit(f"enter: {status} {body!r}")
        tokens.append(json.loads(body)["roomToken"])

    time.sleep(1.0)  # let the allocator settle after the entries
    before = rss_kib(a.edge_pid)
    sel = selectors.DefaultSelector()
    streams = []

    def pump(until, min_eta):
        """Reads events until every stream has seen etaSec >= min_eta, or `until`."""
        done = sum(1 for _, st in streams if st["eta"] >= min_eta)
        last = None
        while done < len(streams) and time.monotonic() < until:
            for key, _ in sel.select(timeout=0.5):
                st = key.data
                try:
                    chunk = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fileobj)
                    raise SystemExit("a stream ended")
                st["buf"] += chunk
                while b"\n\n" in st["buf"]:
                    block, _, st["buf"] = st["buf"].partition(b"\n\n")
                    for line in block.split(b"\n"):
                        if line.startswith(b"data: "):
                            was = st["eta"]
                            st["eta"] = max(was, json.loads(line[6:])["etaSec"])
                            if was < min_eta <= st["eta"]:
                                done += 1
                                last = time.monotonic()
        return done, last

    opened = time.monotonic()
    for i, token in enumerate(tokens):
        # Many source addresses: one has only ~28k ephemeral ports to one target.
        s = socket.socket()
        s.bind((f"127.0.0.{2 + i % 200}", 0))
        s.connect(addr)
        s.sendall(f"GET /public/room-events?token={token} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        s.setblocking(False)
        state = {"buf": b"", "eta": 0}
        streams.append((s, state))
        sel.register(s, selectors.EVENT_READ, state)
        if a.pending and (i + 1) % a.pending == 0:
            # At most `pending` streams being set up at once (0: no bound, a flood).
            pump(time.monotonic() + 60, 1)

    done, _ = pump(time.monotonic() + 120, 1)
    open_secs = time.monotonic() - opened
    if done < len(streams):
        raise SystemExit(f"only {done} of {len(streams)} streams sent their first event")
    time.sleep(2.0)
    after = rss_kib(a.edge_pid)
    if a.ready_file:
        open(a.ready_file, "w").write("ready\n")

    pushes = []
    base_ms = int(time.time() * 1000)
    for k in range(a.pushes):
        started = time.monotonic()
        hours = k + 2
        body = {"openAtMs": base_ms + hours * 3_600_000}
        status, answer = post(ctl, f"/admin/events/{a.event}/admission", body,
                              f"Authorization: Bearer {a.admin_token}\r\n")
        if status != 200:
            raise SystemExit(f"admission: {status} {answer!r}")
        done, last = pump(started + 30, hours * 3600 - 1800)
        pushes.append({"reached": done, "secs": round((last or started) - started, 3)})
        time.sleep(max(0.0, a.push_every - (time.monotonic() - started)))

    if a.close_file:
        deadline = time.monotonic() + 600
        while not os.path.exists(a.close_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        for s, _ in streams:
            s.close()

    json.dump({
        "streams": len(streams),
        "open_secs": round(open_secs, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_stream": round((after - before) * 1024 / len(streams)),
        "pushes": pushes,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
