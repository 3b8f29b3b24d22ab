#!/usr/bin/env python3
"""RESP for N holds of the hold script in batches of B, as the edge sends them
(codec::store::Hold: per hold the seat's hold key, the section's held zset, the buyer's
holds zset; then ttl, limit; then per hold `holdId user` and the seat id).

    hold_calls.py SHA N B SEED [EVENT] > calls.resp

Seats are random over sections A to E of 200,000 seats; N / 4 buyers take 4 holds each,
spread out (buyer i % (N / 4)), as loadgen's `hold` scenario does. Standard library only.
"""
import random
import sys


def resp(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def main():
    sha, n, batch, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    event = sys.argv[5] if len(sys.argv) > 5 else "perf"
    rnd = random.Random(seed)
    buyers = max(1, n // 4)
    holds = []
    for i in range(n):
        section, seat = "ABCDE"[rnd.randrange(5)], rnd.randrange(200_000) + 1
        holds.append((section, seat, f"s{seed}-u{i % buyers}", f"h{seed:07d}{i:09d}"))
    out = sys.stdout.buffer
    for at in range(0, n, batch):
        keys, args = [], []
        for section, seat, user, hold_id in holds[at:at + batch]:
            keys += [f"ev:{{{event}}}:hold:{section}:{seat}", f"ev:{{{event}}}:held:{section}",
                     f"ev:{{{event}}}:uholds:{user}"]
            args += [f"{hold_id} {user}", f"{section}-{seat}"]
        out.write(resp(["EVALSHA", sha, len(keys)] + keys + [300000, 4] + args))


if __name__ == "__main__":
    main()
