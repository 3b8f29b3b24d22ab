#!/usr/bin/env -S python3 -I -S
"""The AWS CLI with its start-up paid once, for `make infra-test` only.

awscli v1 spends ~0.6 s of CPU importing itself on every call, and a run of
infra-test makes ~400 calls. This keeps one process with awscli imported
(`serve`, started with the venv's python) and forks it per call; the client (this
file run as AWS_CLI, plain python3 without site) hands over its argv, environment,
working directory and its stdin/stdout/stderr (SCM_RIGHTS), and exits with the
call's exit code. The call itself runs the same `awscli.clidriver` code as the `aws`
command, in a fresh fork each time, so steps see no difference but speed.

    python aws_forkserver.py serve SOCKET        # venv python: imports awscli
    AWS_FORKSERVER_SOCKET=SOCKET aws_forkserver.py ARGS...   # the client

The deploy scripts never need it: without AWS_CLI they run `aws`.
"""

import json
import os
import socket
import struct
import sys


def client(argv):
    path = os.environ.get("AWS_FORKSERVER_SOCKET", "")
    payload = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        socket.send_fds(conn, [struct.pack("!I", len(payload))], [0, 1, 2])
        conn.sendall(payload)
        data = b""
        while len(data) < 4:
            chunk = conn.recv(4 - len(data))
            if not chunk:
                sys.stderr.write("aws_forkserver: the call ended without an exit code\n")
                return 255
            data += chunk
    return struct.unpack("!i", data)[0]


def serve(path):
    import signal
    import traceback

    import awscli
    import awscli.clidriver  # noqa: F401  (the point: imported once)
    import awscli.handlers  # noqa: F401
    import botocore.session  # noqa: F401

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        conn, _ = server.accept()
        if os.fork() != 0:
            conn.close()
            continue
        # The child: one CLI call.
        server.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        rc = 255
        try:
            head, fds, _, _ = socket.recv_fds(conn, 4, 3)
            (size,) = struct.unpack("!I", head)
            body = b""
            while len(body) < size:
                chunk = conn.recv(size - len(body))
                if not chunk:
                    raise EOFError("client went away")
                body += chunk
            request = json.loads(body)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            os.chdir(request["cwd"])
            env = request["env"]
            # awscli reads AWS_DATA_PATH once, at import, and appends its own data
            # directory (awscli/__init__.py): do here what that import did.
            data_dir = os.path.join(os.path.dirname(os.path.abspath(awscli.__file__)), "data")
            env["AWS_DATA_PATH"] = os.pathsep.join(
                [p for p in env.get("AWS_DATA_PATH", "").split(os.pathsep) if p] + [data_dir]
            )
            if env.get("LC_CTYPE", "") == "UTF-8":  # as the aws script does
                env["LC_CTYPE"] = "en_US.UTF-8"
            os.environ.clear()
            os.environ.update(env)
            rc = awscli.clidriver.create_clidriver().main(request["argv"])
        except SystemExit as exit_:
            rc = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:  # noqa: BLE001 - reported, then the exit code says it
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except OSError:
                pass
            try:
                conn.sendall(struct.pack("!i", rc if isinstance(rc, int) else 255))
            except OSError:
                pass
            os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(client(sys.argv[1:]))
