"""ExaBGP's API helper: serves ExaBGP's pipes on a UNIX socket the daemon connects to.

ExaBGP talks to its API programs over their stdin and stdout only. This
program is that API program, and it lives as long as ExaBGP does, whatever
the daemon does: it listens on the socket, and the daemon connects to it
(at start, and again after a restart of its own). One daemon connection at
a time: a new one replaces the old.

Lines, not bytes, are relayed both ways: a command the daemon was writing
when it died is dropped whole (never glued to the next daemon's first
command), and a newly connected daemon gets ExaBGP's output from the start
of a line. While no daemon is connected, ExaBGP's output is read and
DROPPED (ExaBGP never blocks on a full pipe): a daemon that connects asks
for the state (sessions, routes announced) and a replay of the routes
received (``cnid.bgp._extension``), so nothing it missed matters.
Standard library only, run with ``python -I -S``: it starts in a few
milliseconds.

    python -I -S _relay.py /run/cnid/bgp/api.sock
"""

import contextlib
import fcntl
import os
import select
import socket
import sys

#: A daemon that takes longer than this to read a line is dropped.
SEND_SECONDS = 10.0
#: A line longer than this (from either side) is dropped.
MAX_LINE = 8 << 20
#: The pipe from ExaBGP (the kernel's default, 64 KiB, is a few UPDATEs of
#: JSON: ExaBGP blocked in its write whenever the daemon was busy for a
#: moment); 1 MiB is what an unprivileged process may ask for.
PIPE_BUFFER = 1 << 20


def widen_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BUFFER)
    except (OSError, AttributeError):
        pass  # not a pipe, or the system's limit is lower: the default


def listen(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a previous relay's: ExaBGP (re)spawned this one
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(4)
    return sock


class Lines:
    """Bytes in, complete lines out; a line over MAX_LINE is dropped."""

    def __init__(self) -> None:
        self.buf = b""
        self.skipping = False

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        if self.skipping and lines:
            lines.pop(0)  # the end of the line being skipped
            self.skipping = False
        if len(self.buf) > MAX_LINE:
            self.buf = b""
            self.skipping = True
        return [line + b"\n" for line in lines]

    def reset(self) -> None:
        self.buf = b""
        self.skipping = False


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(server: socket.socket, stdin: int, stdout: int) -> None:
    """Until ExaBGP closes our stdin."""
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    poller.register(server.fileno(), select.POLLIN)
    client: socket.socket | None = None
    from_exabgp, from_daemon = Lines(), Lines()

    def drop_client() -> None:
        nonlocal client
        if client is not None:
            poller.unregister(client.fileno())
            client.close()
            client = None
        from_daemon.reset()  # a half-written command is dropped, not glued

    while True:
        for fd, _event in poller.poll():
            if fd == stdin:
                data = os.read(stdin, 1 << 16)
                if not data:
                    drop_client()
                    return  # ExaBGP is gone
                lines = from_exabgp.feed(data)
                if client is not None and lines:
                    try:
                        client.sendall(b"".join(lines))
                    except OSError:
                        drop_client()
            elif fd == server.fileno():
                conn, _ = server.accept()
                drop_client()  # a new daemon replaces the old one
                conn.settimeout(SEND_SECONDS)
                client = conn
                poller.register(conn.fileno(), select.POLLIN)
            elif client is not None and fd == client.fileno():
                try:
                    data = client.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    drop_client()  # the daemon is gone: ExaBGP goes on
                    continue
                for line in from_daemon.feed(data):
                    write_all(stdout, line)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: _relay.py SOCKET", file=sys.stderr)
        return 2
    try:
        server = listen(sys.argv[1])
    except OSError as exc:
        print(f"cnid relay: cannot listen on {sys.argv[1]}: {exc}", file=sys.stderr)
        return 1
    widen_pipe(sys.stdin.fileno())
    try:
        relay(server, sys.stdin.fileno(), sys.stdout.fileno())
    except OSError as exc:
        print(f"cnid relay: {exc}", file=sys.stderr)
        return 1
    finally:
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
