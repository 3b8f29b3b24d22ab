#!/usr/bin/env python3
"""A stand-in for SQS and DynamoDB that accepts every write, for perf/bench-sqs.sh.

moto's server takes about 20 SendMessageBatch calls a second (FIELD-NOTES.md): under
load it measures moto, not the edge's batching. This sink speaks just enough of the
AWS JSON protocol (1.0) for the edge's side thread: `AmazonSQS.SendMessageBatch`
answers every entry successful (with the real MD5 of its body) and
`DynamoDB_20120810.BatchWriteItem` answers nothing unprocessed. It keeps nothing and
proves nothing about AWS; the tests run against moto.

    python3 perf/sqs-sink.py PORT          # prints "batches messages" on SIGTERM
"""

import asyncio
import hashlib
import json
import signal
import sys
import uuid

batches = 0
messages = 0


def answer(target, body):
    global batches, messages
    if target == "AmazonSQS.SendMessageBatch":
        entries = json.loads(body).get("Entries", [])
        batches += 1
        messages += len(entries)
        ok = [
            {
                "Id": e["Id"],
                "MessageId": str(uuid.uuid4()),
                "MD5OfMessageBody": hashlib.md5(e["MessageBody"].encode()).hexdigest(),
                "SequenceNumber": str(messages),
            }
            for e in entries
        ]
        return 200, {"Successful": ok, "Failed": []}
    if target == "DynamoDB_20120810.BatchWriteItem":
        return 200, {"UnprocessedItems": {}}
    return 400, {"__type": "UnknownOperationException", "message": target}


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, reply = answer(headers.get("x-amz-target", ""), body)
            out = json.dumps(reply).encode()
            writer.write(
                b"HTTP/1.1 %d OK\r\ncontent-type: application/x-amz-json-1.0\r\n"
                b"x-amzn-requestid: %s\r\ncontent-length: %d\r\n\r\n%s"
                % (status, str(uuid.uuid4()).encode(), len(out), out)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(batches, messages, flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
