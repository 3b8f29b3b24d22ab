#!/usr/bin/env python3
"""perf/faultproxy.py: a TCP proxy that injects network faults (issue 14, fault suite).

    faultproxy.py LISTEN_PORT UPSTREAM_PORT CONTROL_PORT

Forwards 127.0.0.1:LISTEN_PORT to 127.0.0.1:UPSTREAM_PORT (the edge's Redis, say) and
takes one command a line on 127.0.0.1:CONTROL_PORT, answering one line:

    pass           forward at once (the start state)
    latency MS     every chunk, both ways, is forwarded MS milliseconds after it arrived
                   (order kept); applies to chunks read from now on
    reset          every open connection is closed with a TCP RST (both sides), and so
                   is every new one while this mode lasts
    blackhole      nothing is forwarded, either way, on open or new connections: bytes
                   wait in the proxy and the kernel's buffers, as they would behind a
                   network partition; `pass` (or `latency`) delivers them, as TCP's
                   retransmissions would once the partition heals. A new connection is
                   accepted but its upstream is opened only when the black hole ends.
    stats          a JSON object: mode, connections accepted/open, resets, chunks held
                   by the black hole, bytes each way
    quit           stop the proxy

Standard library only; loopback only. Not a load tool: enough for a few thousand Redis
commands a second, pipelined by the edge into far fewer chunks.
"""

import asyncio
import json
import socket
import struct
import sys
import time

CHUNK = 64 * 1024


class Proxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.latency_s = 0.0
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.links = set()
        self.stats = {
            "accepted": 0,
            "resets": 0,
            "held_chunks": 0,
            "bytes_up": 0,
            "bytes_down": 0,
            "upstream_connect_errors": 0,
        }

    def set_mode(self, mode, latency_ms=0.0):
        self.mode = mode
        self.latency_s = latency_ms / 1000.0 if mode == "latency" else 0.0
        if mode == "blackhole":
            self.flowing.clear()
        else:
            self.flowing.set()
        if mode == "reset":
            for link in list(self.links):
                link.reset()

    async def serve(self, reader, writer):
        link = Link(self, writer)
        self.stats["accepted"] += 1
        self.links.add(link)
        try:
            if self.mode == "reset":
                link.reset()
                return
            await self.flowing.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                self.stats["upstream_connect_errors"] += 1
                link.reset()
                return
            link.upstream = up_writer
            if link.dead:  # reset while connecting
                link.reset()
                return
            await asyncio.gather(
                link.pump(reader, up_writer, "bytes_up"),
                link.pump(up_reader, writer, "bytes_down"),
            )
        finally:
            link.close()
            self.links.discard(link)


def rst(writer):
    """Close with RST: SO_LINGER on, zero timeout, then abort."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Link:
    def __init__(self, proxy, client):
        self.proxy = proxy
        self.client = client
        self.upstream = None
        self.dead = False

    def reset(self):
        if not self.dead:
            self.proxy.stats["resets"] += 1
        self.dead = True
        rst(self.client)
        rst(self.upstream)

    def close(self):
        self.dead = True
        for w in (self.client, self.upstream):
            if w is not None and not w.transport.is_closing():
                w.close()

    async def pump(self, reader, writer, counter):
        """Reader to writer, chunk by chunk, through the proxy's current fault."""
        queue = asyncio.Queue()

        async def send():
            while True:
                item = await queue.get()
                if item is None:
                    return
                due, data = item
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not self.proxy.flowing.is_set():
                    self.proxy.stats["held_chunks"] += 1
                    await self.proxy.flowing.wait()
                if self.dead:
                    return
                writer.write(data)
                await writer.drain()
                self.proxy.stats[counter] += len(data)

        sender = asyncio.ensure_future(send())
        try:
            while not self.dead:
                # A black hole reads nothing: the peer's bytes wait in the kernel.
                await self.proxy.flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                queue.put_nowait((time.monotonic() + self.proxy.latency_s, data))
            queue.put_nowait(None)
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()
            # One side ended: end the other (a half-closed Redis link is of no use).
            self.close()


async def control(proxy, reader, writer, stop):
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            words = line.decode().split()
            reply = "ok"
            if not words:
                reply = "error: empty command"
            elif words[0] in ("pass", "reset", "blackhole"):
                proxy.set_mode(words[0])
            elif words[0] == "latency" and len(words) == 2:
                try:
                    proxy.set_mode("latency", float(words[1]))
                except ValueError:
                    reply = "error: latency MS"
            elif words[0] == "stats":
                s = dict(proxy.stats, mode=proxy.mode, open=len(proxy.links),
                         latency_ms=proxy.latency_s * 1000)
                reply = json.dumps(s, sort_keys=True)
            elif words[0] == "quit":
                stop.set()
            else:
                reply = f"error: unknown command {words[0]}"
            writer.write((reply + "\n").encode())
            await writer.drain()
    finally:
        writer.close()


async def main(listen_port, upstream_port, control_port):
    proxy = Proxy(upstream_port)
    stop = asyncio.Event()
    data = await asyncio.start_server(proxy.serve, "127.0.0.1", listen_port)
    ctl = await asyncio.start_server(lambda r, w: control(proxy, r, w, stop), "127.0.0.1", control_port)
    print(f"faultproxy: 127.0.0.1:{listen_port} -> 127.0.0.1:{upstream_port}, control on {control_port}",
          file=sys.stderr, flush=True)
    async with data, ctl:
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    try:
        asyncio.run(main(*(int(a) for a in sys.argv[1:])))
    except KeyboardInterrupt:
        pass
