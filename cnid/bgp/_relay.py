"""ExaBGP's API helper: connects ExaBGP's pipes to the daemon's socket.

ExaBGP talks to its API programs over their stdin and stdout only. This
program is that API program: it connects to the daemon's UNIX socket and
copies bytes both ways until either side closes, then exits (ExaBGP
respawns it; the daemon accepts the new connection). Standard library only,
run with ``python -I -S``: it starts in a few milliseconds.

    python -I -S _relay.py /run/cnid/bgp/api.sock
"""

import os
import select
import socket
import sys
import time

CONNECT_SECONDS = 30.0


def connect(path: str) -> socket.socket:
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def relay(sock: socket.socket, stdin: int, stdout: int) -> None:
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    poller.register(sock.fileno(), select.POLLIN)
    while True:
        for fd, _event in poller.poll():
            if fd == stdin:
                data = os.read(stdin, 1 << 16)
                if not data:
                    return  # ExaBGP is gone
                sock.sendall(data)
            else:
                data = sock.recv(1 << 16)
                if not data:
                    return  # the daemon is gone
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout, view) :]


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: _relay.py SOCKET", file=sys.stderr)
        return 2
    try:
        sock = connect(sys.argv[1])
    except OSError as exc:
        print(f"cnid relay: cannot connect to {sys.argv[1]}: {exc}", file=sys.stderr)
        return 1
    try:
        relay(sock, sys.stdin.fileno(), sys.stdout.fileno())
    except OSError:
        return 1
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
