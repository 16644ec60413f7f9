"""gunicorn's threaded worker with a cheap front door: no thread until a request is whole.

gthread hands each accepted connection to a thread, which then blocks reading the request
head; a client that sends half a header line holds that thread for as long as it likes
(32 such connections stopped the server). Here the worker's event loop reads request heads
itself, without blocking, on fresh and kept-alive connections alike:

* a connection gets a thread only once its request line and headers are complete;
* one that has not sent them within `header_timeout` gets 408 and is closed;
* one whose head grows past MAX_HEAD gets 431 and is closed, one whose request line (the
  method, path and query string) is longer than MAX_REQUEST_LINE 414 (every query the API
  documents fits: tests/test_api_schema.py);
* at `max_connections` open connections in all, or `max_connections_per_address` from one
  client address, a new connection makes room by shedding an idle one: one that holds no
  thread and no request being answered (a head not yet whole, a kept-alive connection
  between requests, a request waiting for a thread), the oldest of the address that holds
  the most (of its own address, at that address's cap). So a flood spread over many
  addresses sheds itself, and an operator's connection, whose head follows at once, gets
  in. Only when nothing is idle is the new one refused (503 / 429) and closed;
* with a token, a request whose head does not carry it (in an `Authorization: Bearer`
  header or a `token` query parameter: the dashboard's page, /healthz, a refused call) runs
  on at most `anyone_threads` threads at once, and waits without a thread beyond that (up
  to `request_timeout`, then 503): the rest of the pool is kept for token holders;
* on its thread a request's socket times out after `request_timeout` seconds without
  progress (a trickled body, a client that does not read its answer), which ends it.

Refusals are JSON in the API's error shape; refusals and shed connections are logged as one
line per reason every 10 s, with a count. The thread pool itself is sized by the caller
(HTTP threads + the Socket.IO caps that dashboard/door/gate.py enforces).
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
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from gunicorn.workers.gthread import TConn, ThreadWorker

from ..config import MAX_HEAD, MAX_REQUEST_LINE
from ..door.auth import token_matches
from ..door.codes import ErrorCode
from ..door.gate import RefusalLog

log = logging.getLogger("orderflow.server")

HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
LINGER = 2.0  # seconds a closing connection waits for the client's end (as gunicorn does)


@dataclass(frozen=True)
class FrontLimits:
    """What the front door allows; see the module docstring."""

    max_connections: int = 1000
    max_connections_per_address: int = 500
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    # Requests without the token that run on threads at once; None: no limit (no token).
    anyone_threads: int | None = None
    token: str | None = field(default=None, repr=False)


def error_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response in the API's error shape, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def head_token(head: bytes) -> str | None:
    """The token a request head carries, as the gate reads it from a WSGI environ: an
    `Authorization: Bearer` header first, then a `token` query parameter."""
    text = bytes(head).decode("latin-1")
    for end in ("\r\n\r\n", "\n\n"):
        text = text.partition(end)[0]
    request_line, _, headers = text.partition("\n")
    for header in headers.split("\n"):
        name, colon, value = header.partition(":")
        if colon and name.strip().lower() == "authorization":
            scheme, _, credential = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                return credential.strip()
    target = request_line.split(" ")[1] if request_line.count(" ") >= 2 else ""
    values = parse_qs(target.partition("?")[2]).get("token")
    return values[0] if values else None


class IdleConnections:
    """Connections that hold no thread and no request being answered, by client address,
    each address's oldest first: the ones shed to make room for a new connection. Those that
    have carried the token (a token holder's kept-alive connection) are shed last."""

    def __init__(self) -> None:
        # Insertion-ordered sets by address: of connections that never carried the token,
        # and of those that did.
        self._tiers: tuple[dict[str, dict[Any, None]], ...] = ({}, {})

    def add(self, address: str, conn: Any, trusted: bool = False) -> None:
        self._tiers[trusted].setdefault(address, {})[conn] = None

    def discard(self, address: str, conn: Any) -> None:
        for tier in self._tiers:
            held = tier.get(address)
            if held is not None and conn in held:
                del held[conn]
                if not held:
                    del tier[address]

    def count(self, address: str | None = None) -> int:
        if address is not None:
            return sum(len(tier.get(address, ())) for tier in self._tiers)
        return sum(len(held) for tier in self._tiers for held in tier.values())

    def victim(self, address: str | None = None) -> Any | None:
        """The oldest idle connection of `address`; without one, that of the address that
        holds the most idle connections (a flood's, rather than an operator's one); one that
        carried the token only when no other is idle."""
        for tier in self._tiers:
            if address is not None:
                held = tier.get(address)
            else:
                held = max(tier.values(), key=len, default=None)
            if held:
                return next(iter(held))
        return None


def request_line_length(head: bytes | bytearray) -> int:
    """The request line's length without its line end; the whole buffer's until one came."""
    end = head.find(b"\n")
    if end < 0:
        return len(head)
    return end - 1 if end > 0 and head[end - 1] == 13 else end


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
        self.idle_as: str | None = None  # "head", "keepalive", "parked": may be shed
        self.trusted = False  # a request on it carried the token: shed last
        self.anyone = False  # on a thread of the share for requests without the token
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
        self.total = 0
        self.idle = IdleConnections()
        self.parked: deque[FrontConn] = deque()  # whole requests without the token, waiting
        self.anyone_running = 0  # requests without the token on threads now
        self._count_lock = threading.Lock()  # conn.close() may run on a request thread
        self._answer = threading.local()  # per request thread: did the app ask to close?
        self.refusals = RefusalLog(what="connection", logger=log)
        self.shed_log = RefusalLog(action="shed", what="connection", logger=log)

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
        """Count a new connection from `address`, shedding an idle one to make room at a cap;
        the refusal to answer instead if nothing can be shed."""
        limits = self.limits
        for _ in range(2):  # a shed connection frees its place at once
            with self._count_lock:
                if self.per_address[address] >= limits.max_connections_per_address:
                    victim, full = self.idle.victim(address), "address"
                elif self.total >= limits.max_connections:
                    victim, full = self.idle.victim(), "server"
                else:
                    self.per_address[address] += 1
                    self.total += 1
                    return None
            if victim is None:
                break
            self._shed(victim, f"the {'server' if full == 'server' else 'address'} held "
                               f"its maximum of {self._cap(full)} connections")
        if full == "address":
            message = (f"too many open connections from {address} "
                       f"(at most {limits.max_connections_per_address})")
            self.refusals.refused(message, address)
            return error_response(429, "Too Many Requests", ErrorCode.TOO_MANY_CONNECTIONS,
                                  message)
        message = (f"the server holds its maximum of {limits.max_connections} connections, "
                   "each of them busy; try again later")
        self.refusals.refused(message, address)
        return error_response(503, "Service Unavailable", ErrorCode.SERVER_BUSY, message)

    def _cap(self, full: str) -> int:
        limits = self.limits
        return limits.max_connections if full == "server" else limits.max_connections_per_address

    def released(self, conn: FrontConn) -> None:
        """A connection's socket is closed: it no longer counts toward the caps."""
        with self._count_lock:
            self.idle.discard(conn.address, conn)
            conn.idle_as = None
            self.total -= 1
            self.per_address[conn.address] -= 1
            if self.per_address[conn.address] <= 0:
                del self.per_address[conn.address]

    def _idle(self, conn: FrontConn, state: str | None) -> None:
        """Note a connection as idle (state: how to shed it) or, with None, as busy."""
        with self._count_lock:
            if state is None:
                self.idle.discard(conn.address, conn)
            elif conn.idle_as is None:
                self.idle.add(conn.address, conn, conn.trusted)
            conn.idle_as = state

    def _shed(self, conn: FrontConn, why: str) -> None:
        """Close an idle connection to make room (on the event loop's thread)."""
        state = conn.idle_as
        self.shed_log.refused(f"{why}; it was idle", conn.address)
        if state == "head":
            self._end_head_wait(conn, SHED)
            return
        if state == "keepalive":
            try:
                self.keepalived_conns.remove(conn)
                self.poller.unregister(conn.sock)
            except (ValueError, KeyError, OSError):
                pass
        elif state == "parked":
            _send_quietly(conn.sock, SHED)
        self.nr_conns -= 1
        conn.close()

    # ------------------------------------------------------------ request heads

    def _await_head(self, conn: FrontConn) -> None:
        conn.sock.setblocking(False)
        conn.deadline = time.monotonic() + self.limits.header_timeout
        conn.awaiting_head = True
        self._idle(conn, "head")
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
        if len(conn.head) > MAX_REQUEST_LINE and request_line_length(
                conn.head) > MAX_REQUEST_LINE:
            self._end_head_wait(conn, URI_TOO_LONG)
            return
        if head_complete(conn.head, start):
            self.poller.unregister(conn.sock)
            conn.awaiting_head = False  # its entry in self.heads is skipped from now on
            self._idle(conn, None)
            conn.data_ready = True  # gthread would otherwise wait for data on the thread
            self.enqueue_req(conn)
        elif len(conn.head) > MAX_HEAD:
            self._end_head_wait(conn, error_response(
                431, "Request Header Fields Too Large", ErrorCode.HEADERS_TOO_LARGE,
                f"the request line and headers exceed {MAX_HEAD} bytes"))

    def _end_head_wait(self, conn: FrontConn, answer: bytes | None = None) -> None:
        conn.awaiting_head = False
        self._idle(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        if answer is not None:
            _send_quietly(conn.sock, answer)
        self.nr_conns -= 1
        conn.close()

    # ------------------------------------------------------------ threads

    def enqueue_req(self, conn: FrontConn) -> None:
        """A whole request goes to a thread; with a token, one that does not carry it only
        within the share for such requests, else it waits for a place without a thread."""
        if conn.initialized:
            conn.hand_over_head()  # a kept-alive connection: its parser exists already
        limit = self.limits.anyone_threads
        if limit is None:
            super().enqueue_req(conn)
        elif self._carries_token(conn):
            conn.trusted = True
            super().enqueue_req(conn)
        elif self.anyone_running < limit:
            self._run_for_anyone(conn)
        else:
            conn.deadline = time.monotonic() + self.limits.request_timeout
            self._idle(conn, "parked")
            self.parked.append(conn)

    def _carries_token(self, conn: FrontConn) -> bool:
        head = bytes(conn.head) or (conn.parser.unreader.buf.getvalue()
                                    if conn.parser is not None else b"")
        return token_matches(self.limits.token or "", head_token(head))

    def _run_for_anyone(self, conn: FrontConn) -> None:
        conn.anyone = True
        self.anyone_running += 1
        super().enqueue_req(conn)

    def finish_request(self, conn: FrontConn, fs: Any) -> None:
        if conn.anyone:
            conn.anyone = False
            self.anyone_running -= 1
        super().finish_request(conn, fs)
        if self.keepalived_conns and self.keepalived_conns[-1] is conn:
            self._idle(conn, "keepalive")  # between requests: may be shed
        self._start_parked()

    def _start_parked(self) -> None:
        limit = self.limits.anyone_threads
        while self.parked and (limit is None or self.anyone_running < limit):
            conn = self.parked.popleft()
            if conn.idle_as == "parked":  # not shed meanwhile
                self._idle(conn, None)
                self._run_for_anyone(conn)

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
                    408, "Request Timeout", ErrorCode.REQUEST_TIMEOUT,
                    f"the request head did not arrive within {self.limits.header_timeout:g} s"))
        while self.parked and (self.parked[0].idle_as != "parked"
                               or self.parked[0].deadline <= now):
            conn = self.parked.popleft()
            if conn.idle_as == "parked":
                self.refusals.refused("a request without the token waited too long for a "
                                      "thread", conn.address)
                _send_quietly(conn.sock, BUSY)
                self.nr_conns -= 1
                conn.close()

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
        self._idle(conn, None)
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


URI_TOO_LONG = error_response(
    414, "URI Too Long", ErrorCode.URI_TOO_LONG,
    f"the request line (method, path and query string) exceeds {MAX_REQUEST_LINE} bytes")
SHED = error_response(503, "Service Unavailable", ErrorCode.SERVER_BUSY,
                      "the server was full and closed this connection, which had no request "
                      "being answered; try again")
BUSY = error_response(503, "Service Unavailable", ErrorCode.SERVER_BUSY,
                      "requests without the token are too many at the moment; try again "
                      "later")


def _send_quietly(sock: socket.socket, answer: bytes) -> None:
    try:
        sock.setblocking(False)
        sock.send(answer)  # small: fits the socket buffer, never blocks
    except OSError:
        pass


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
