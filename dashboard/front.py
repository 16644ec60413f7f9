"""gunicorn's threaded worker with a cheap front door: no thread until a request is whole.

gthread hands each accepted connection to a thread, which then blocks reading the request
head; a client that sends half a header line holds that thread for as long as it likes
(32 such connections stopped the server). Here the worker's event loop reads request heads
itself, without blocking, on fresh and kept-alive connections alike:

* a connection gets a thread only once its request line and headers are complete;
* one that has not sent them within `header_timeout` gets 408 and is closed;
* one whose head grows past MAX_HEAD gets 431 and is closed;
* beyond `max_connections` open connections in all, or `max_connections_per_address` from
  one client address, a new connection gets 503 / 429 at once and is closed;
* on its thread a request's socket times out after `request_timeout` seconds without
  progress (a trickled body, a client that does not read its answer), which ends it.

Refusals are JSON in the API's error shape. The thread pool itself is sized by the caller
(HTTP threads + the Socket.IO cap that dashboard/gate.py enforces).
"""

from __future__ import annotations

import errno
import json
import logging
import resource
import selectors
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

log = logging.getLogger("orderflow.server")

MAX_HEAD = 64 * 1024  # request line + headers; gunicorn's own limits are within this
HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
LINGER = 2.0  # seconds a closing connection waits for the client's end (as gunicorn does)


@dataclass(frozen=True)
class FrontLimits:
    """What the front door allows; see the module docstring."""

    max_connections: int = 1000
    max_connections_per_address: int = 500
    header_timeout: float = 10.0
    request_timeout: float = 30.0


def error_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response in the API's error shape, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def head_complete(buffer: bytearray, start: int) -> bool:
    """True once the buffer holds the blank line that ends a request head; `start` is where
    the newest bytes begin, so each search covers only them (and 3 bytes before)."""
    return any(buffer.find(end, max(0, start - 3)) >= 0 for end in HEAD_ENDS)


class FrontConn(TConn):
    """A connection that may hold a request head read by the event loop."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any,
                 address: str, worker: FrontWorker):
        super().__init__(cfg, sock, client, server)
        self.address = address
        self.head = bytearray()
        self.deadline = 0.0
        self.awaiting_head = False
        self.lingering = False
        self.handed_off = False  # a WebSocket's library owns the socket now
        self.drained = 0
        self._worker = worker
        self._closed = False
        self._released = False

    def init(self) -> None:
        super().init()
        self.hand_over_head()

    def hand_over_head(self) -> None:
        """Give the bytes read by the event loop to gunicorn's parser, which reads first
        from its buffer and only then from the socket."""
        if self.head and self.parser is not None:
            self.parser.unreader.unread(bytes(self.head))
            self.head.clear()

    def close(self, graceful: bool = False) -> None:
        """Close now, or (graceful) send FIN and let the worker's event loop wait for the
        client's end: gunicorn would wait for it right here, blocking its event loop for
        up to 2 s per connection whose client never closes."""
        if self._closed:
            return
        if graceful and not self.lingering and not self.handed_off:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                # Done with: it stops counting toward the caps (lingering is short).
                self._release()
                self._worker.linger(self)
                return
        self._closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        finally:
            self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._worker.released(self)


class FrontWorker(ThreadWorker):
    """ThreadWorker with the front door described in the module docstring."""

    limits = FrontLimits()  # the caller sets its own on a subclass or instance

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.heads: deque[FrontConn] = deque()  # waiting for a head, in deadline order
        self.lingering: deque[FrontConn] = deque()  # closing, waiting for the client's FIN
        self.per_address: Counter[str] = Counter()
        self._count_lock = threading.Lock()  # conn.close() may run on a request thread
        self._answer = threading.local()  # per request thread: did the app ask to close?

    def init_process(self) -> None:
        _raise_open_files_limit(self.limits.max_connections + self.cfg.threads + 256)
        super().init_process()

    # ------------------------------------------------------------ accepting

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        address = client[0] if isinstance(client, tuple) else "unix"
        refusal = self._admit(address)
        if refusal is not None:
            _answer_and_close(sock, refusal)
            return
        self.nr_conns += 1
        conn = FrontConn(self.cfg, sock, client, listener.getsockname(), address, self)
        self._await_head(conn)

    def _admit(self, address: str) -> bytes | None:
        limits = self.limits
        with self._count_lock:
            if self.per_address[address] >= limits.max_connections_per_address:
                return error_response(
                    429, "Too Many Requests", "too_many_connections",
                    f"too many open connections from {address} "
                    f"(at most {limits.max_connections_per_address})")
            if sum(self.per_address.values()) >= limits.max_connections:
                return error_response(
                    503, "Service Unavailable", "server_busy",
                    f"the server holds its maximum of {limits.max_connections} "
                    "connections; try again later")
            self.per_address[address] += 1
        return None

    def released(self, conn: FrontConn) -> None:
        """A connection's socket is closed: it no longer counts toward the caps."""
        with self._count_lock:
            self.per_address[conn.address] -= 1
            if self.per_address[conn.address] <= 0:
                del self.per_address[conn.address]

    # ------------------------------------------------------------ request heads

    def _await_head(self, conn: FrontConn) -> None:
        conn.sock.setblocking(False)
        conn.deadline = time.monotonic() + self.limits.header_timeout
        conn.awaiting_head = True
        self.heads.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_data, conn))

    def _on_head_data(self, conn: FrontConn, _sock: Any) -> None:
        try:
            data = conn.sock.recv(MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client left
            self._end_head_wait(conn)
            return
        start = len(conn.head)
        conn.head += data
        if head_complete(conn.head, start):
            self.poller.unregister(conn.sock)
            conn.awaiting_head = False  # its entry in self.heads is skipped from now on
            conn.data_ready = True  # gthread would otherwise wait for data on the thread
            if conn.initialized:  # a kept-alive connection: its parser exists already
                conn.hand_over_head()
            self.enqueue_req(conn)
        elif len(conn.head) > MAX_HEAD:
            self._end_head_wait(conn, error_response(
                431, "Request Header Fields Too Large", "headers_too_large",
                f"the request line and headers exceed {MAX_HEAD} bytes"))

    def _end_head_wait(self, conn: FrontConn, answer: bytes | None = None) -> None:
        conn.awaiting_head = False
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        if answer is not None:
            try:
                conn.sock.send(answer)  # small: fits the socket buffer, never blocks
            except OSError:
                pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Called by the worker's loop about once a second: also close connections that
        did not send a whole request head in time."""
        super().murder_pending()
        now = time.monotonic()
        while self.lingering and (not self.lingering[0].lingering
                                  or self.lingering[0].deadline <= now):
            conn = self.lingering.popleft()
            if conn.lingering:
                self._end_linger(conn)
        while self.heads and (not self.heads[0].awaiting_head or self.heads[0].deadline <= now):
            conn = self.heads.popleft()
            if conn.awaiting_head:
                self._end_head_wait(conn, error_response(
                    408, "Request Timeout", "request_timeout",
                    f"the request head did not arrive within {self.limits.header_timeout:g} s"))

    def linger(self, conn: FrontConn) -> None:
        """After our FIN: read (and drop) what the client still sends until it closes, at
        most LINGER seconds or MAX_HEAD bytes, so a last response is not cut by a reset."""
        conn.lingering = True
        conn.sock.setblocking(False)
        conn.deadline = time.monotonic() + LINGER
        self.lingering.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger_data, conn))

    def _on_linger_data(self, conn: FrontConn, _sock: Any) -> None:
        try:
            data = conn.sock.recv(MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > MAX_HEAD:
            self._end_linger(conn)

    def _end_linger(self, conn: FrontConn) -> None:
        conn.lingering = False
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        conn.close()

    def on_client_socket_readable(self, conn: FrontConn, client: Any) -> None:
        """A kept-alive connection has a new request: read its head here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn)

    # ------------------------------------------------------------ on the thread

    def _keepalive_after(self, conn: FrontConn, keepalive: bool) -> bool:
        """gthread hands a connection whose next request was read ahead straight back to a
        thread; if that request's head is incomplete, it goes back to the event loop
        instead (a thread would block on the rest of it)."""
        keep = super()._keepalive_after(conn, keepalive)
        if keep:
            ahead = conn.parser.unreader.buf.getvalue()
            if ahead and not head_complete(bytearray(ahead), 0):
                conn.head += conn.parser.unreader.take_buffered()
        return keep

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = _HonourClose(self.wsgi, self._answer)

    def handle_request(self, req: Any, conn: FrontConn) -> bool:
        # gthread made the socket blocking; a stalled body or an unread response now ends
        # the request instead of holding the thread (gate.py lifts it for WebSockets).
        conn.sock.settimeout(self.limits.request_timeout)
        self._answer.close = self._answer.upgraded = False
        try:
            keep_alive = super().handle_request(req, conn)
        except TimeoutError:
            log.info("cut a request from %s: no progress for %g s", conn.address,
                     self.limits.request_timeout)
            return False
        finally:
            # A WebSocket's library closes the socket from a thread of its own: the event
            # loop must not wait on it (its descriptor may soon be another connection's).
            conn.handed_off = self._answer.upgraded
        return keep_alive and not self._answer.close


def _answer_and_close(sock: socket.socket, answer: bytes) -> None:
    try:
        sock.setblocking(False)
        sock.send(answer)
    except OSError:
        pass
    finally:
        sock.close()


class _HonourClose:
    """The WSGI app, noting when a response says `Connection: close` (gunicorn drops that
    header and keeps the connection): a refused client is then disconnected, so it does
    not keep holding a connection slot."""

    def __init__(self, app: Any, answer: threading.local):
        self.app, self.answer = app, answer

    def __call__(self, environ: dict, start_response: Any) -> Any:
        self.answer.upgraded = environ.get("HTTP_UPGRADE", "").lower() == "websocket"

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
                self.answer.close = True
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def _raise_open_files_limit(wanted: int) -> None:
    """Each open connection is a file descriptor: raise the soft limit toward `wanted` (a
    process may, up to its hard limit), and say so if that is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < wanted:
        log.warning("open files are limited to %d; max-connections may not be reached "
                    "(raise it with ulimit -n)", target)
