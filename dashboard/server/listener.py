"""The server's listening socket, bound by `orderflow serve` itself before anything starts.

gunicorn would bind it too, but on a taken port it logs "Connection in use" five times a
second apart and ends in a traceback that never names `--port`. Bound here, a taken port is
one line naming the flag, before the journal is opened; gunicorn then inherits the bound
socket (`fd://N`), so no other process can take the port in between."""

from __future__ import annotations

import errno
import socket

# Connections the kernel queues before gunicorn accepts them (gunicorn's own default).
BACKLOG = 2048


class ListenError(OSError):
    """The address cannot be listened on; the message says why and which flag to change."""


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` and listening, or ListenError in one line."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {where}: the host {host!r} is unknown "
                          f"({exc.strerror}); give another with --host") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As gunicorn does: a port whose last connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"{where} is already in use (another server listens there): stop it, or "
                "pick another port with --port (--port 0 picks a free one)") from None
        raise ListenError(f"cannot listen on {where}: {exc.strerror}; change --host or "
                          "--port") from None
    return sock
