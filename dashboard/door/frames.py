"""Malformed Socket.IO and Engine.IO input: one log line at most, never a traceback.

python-engineio and python-socketio log a client's undecodable packet with its traceback
(up to 50 lines each, twice: engineio adds a handler of its own when none is configured),
and a text WebSocket frame that is not an Engine.IO packet at all raises out of the server
into gunicorn, which prints another traceback. Here

* both libraries log through loggers of ours, whose filter turns any record carrying an
  exception into one line with the exception's type and (escaped, shortened) message;
* WebSocket frames pass a check before Engine.IO decodes them: a text frame that is not an
  Engine.IO packet ends that connection with one log line.

And too many frames: each WebSocket's frames pass its `FrameLimiter` (rate_limit.py) on the
thread that reads the socket, before they are buffered for Engine.IO, so before any lock and
before python-socketio starts a thread for the frame's handler. A heartbeat beyond four per
heartbeat interval is dropped; any other frame beyond the connection's rate waits, the
socket unread meanwhile (TCP slows the sender); a connection far past its limits is cut
with one log line (at most one per LOG_EVERY seconds, with a count). Without this, 500,000
heartbeats from four connections of a token holder made every submit 10-50 times slower
(each one a thread, a lock and an answer), and a backlog of frames grew without bound in
the library's buffer.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import simple_websocket
from engineio import packet as engineio_packet
from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
from flask_socketio import SocketIO
from socketio import packet as socketio_packet

from .gate import RefusalLog
from .rate_limit import FrameLimiter, FrameLimits, Verdict

ENGINEIO_PACKET_TYPES = "0123456"  # open, close, ping, pong, message, upgrade, noop
MAX_DETAIL = 200  # characters of a client-caused error message kept in the log


def printable(text: str, limit: int = MAX_DETAIL) -> str:
    """`text` on one line: control characters escaped, cut at `limit` characters."""
    cut = text[:limit]
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
    return escaped + ("..." if len(text) > limit else "")


class OneLineErrors(logging.Filter):
    """Replaces a record's traceback by one line naming the exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = (f"{printable(record.getMessage())} "
                          f"({type(exc).__name__}: {printable(str(exc))})")
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def library_logger(name: str) -> logging.Logger:
    """A logger for python-socketio or python-engineio: warnings and up, one line each."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)  # their INFO is a line per packet
    if not any(isinstance(f, OneLineErrors) for f in logger.filters):
        logger.addFilter(OneLineErrors())
    return logger


def valid_frame(message: object) -> bool:
    """Whether Engine.IO can decode this WebSocket message (binary frames always can)."""
    if isinstance(message, str):
        return bool(message) and message[0] in ENGINEIO_PACKET_TYPES
    return True


# A heartbeat as a worker sends it ('42/workers,<ack id>["heartbeat",{...}]'). One written
# otherwise (spaces, a binary frame) is still a heartbeat to python-socketio; it is then
# limited as any other frame, at the frame rate.
HEARTBEAT = re.compile(r'42/workers,\d*\[\s*"heartbeat"')


def is_heartbeat(message: object) -> bool:
    return isinstance(message, str) and HEARTBEAT.match(message) is not None


class FrameStats:
    """What the frame limits did, over every connection of one server (for /metrics)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.heartbeats_dropped = self.frames_delayed = self.connections_cut = 0

    def add(self, dropped: int = 0, delayed: int = 0, cut: int = 0) -> None:
        with self._lock:
            self.heartbeats_dropped += dropped
            self.frames_delayed += delayed
            self.connections_cut += cut

    def view(self) -> dict[str, int]:
        with self._lock:
            return {"heartbeats_dropped": self.heartbeats_dropped,
                    "frames_delayed": self.frames_delayed,
                    "connections_cut": self.connections_cut}


class FrameGuard:
    """One server's frame limits (their settings, counts and log of cut connections), and
    the events answered on their connection's own thread."""

    def __init__(self, limits: FrameLimits, max_message_bytes: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 pause: Callable[[threading.Event, float], object] = threading.Event.wait):
        """`clock` gives the limiter its `now`; `pause(closed, seconds)` waits out a frame's
        turn (and the pause before a cut) on the reading thread, returning early once
        `closed` is set. A test passes both, so that what is delayed does not depend on how
        late a busy machine wakes the thread up."""
        self.limits, self.max_message_bytes = limits, max_message_bytes
        self.clock, self.pause = clock, pause
        self.stats = FrameStats()
        self.cuts = RefusalLog(action="cut")
        self.server: Any = None  # python-socketio's server, set by `guard`
        self._inline: dict[tuple[str, str], Callable[[str, list], Any]] = {}
        self._inline_frame: re.Pattern[str] | None = None  # what may be one of them

    def answer_inline(self, namespace: str, event: str,
                      handler: Callable[[str, list], Any]) -> None:
        """Answer `event` on `namespace` on the thread that reads the connection:
        `handler(sid, arguments)` returns the acknowledgement. For an event that is frequent
        and quick (a heartbeat: 512 a second from 256 workers): python-socketio hands each
        message to another thread, then starts a thread for its handler and hands the
        answer to a third, which costs far more than such a handler; under load the
        threads piled up by thousands and heartbeats were answered seconds late. The
        same holds for a worker's `work` frames (its results and begins, one frame per
        round trip), whose handler takes the scheduler's lock only briefly and never
        waits for the journal."""
        self._inline[(namespace, event)] = handler
        events = "|".join(sorted({re.escape(e) for _, e in self._inline}))
        self._inline_frame = re.compile(rf'42/[^,\[]*,\d*\[\s*"(?:{events})"')

    def may_answer_inline(self, message: object) -> bool:
        """A cheap look at a frame's start: whether it may be an event answered inline."""
        pattern = self._inline_frame
        return (pattern is not None and isinstance(message, str)
                and pattern.match(message) is not None)

    def answered_inline(self, engineio_sid: str, message: str,
                        send: Callable[[str], Any]) -> bool:
        """Answer a heartbeat frame now, with `send`, if a handler was given for it and its
        connection is on that namespace; False hands the frame on to python-socketio."""
        server = self.server
        if server is None or not self._inline:
            return False
        try:
            packet = server.packet_class(encoded_packet=message[1:])  # after Engine.IO's "4"
        except ValueError:
            return False  # python-socketio says what is wrong with it, as for any other
        data = packet.data
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            return False
        handler = self._inline.get((packet.namespace or "/", data[0]))
        sid = server.manager.sid_from_eio_sid(engineio_sid, packet.namespace or "/")
        if handler is None or sid is None:
            return False
        reply = handler(sid, data[1:])
        if packet.id is not None:
            ack = server.packet_class(socketio_packet.ACK, namespace=packet.namespace,
                                      data=[reply], id=packet.id)
            send(engineio_packet.Packet(engineio_packet.MESSAGE, data=ack.encode()).encode())
        return True

    @classmethod
    def from_config(cls, config: Mapping[str, Any], heartbeat_interval: float) -> FrameGuard:
        """The guard an app's config asks for (dashboard/config.py)."""
        return cls(FrameLimits.for_heartbeat_interval(
            heartbeat_interval, frames_per_second=config["SOCKET_FRAMES_PER_SECOND"],
            frame_burst=config["SOCKET_FRAME_BURST"],
            pause_before_cut=config["SOCKET_CUT_PAUSE"]),
            max_message_bytes=config["MAX_CONTENT_LENGTH"])

    def admission(self, address: str, closed: threading.Event) -> Callable[[object], bool]:
        """The check for one new connection's frames: True to hand a frame on, False to
        drop it. It waits out a frame's turn itself (and the pause before a cut), unless
        `closed` is set meanwhile, and raises ConnectionAbortedError to cut the connection."""
        limiter = FrameLimiter(self.limits)

        def admit(message: object) -> bool:
            heartbeat = is_heartbeat(message)
            verdict, wait = limiter.admit(heartbeat, self.clock())
            if verdict is Verdict.PASS:
                return True
            if verdict is Verdict.DROP:
                self.stats.add(dropped=1)
                return False
            if verdict is Verdict.WAIT:
                self.stats.add(delayed=1)
                self.pause(closed, wait)  # nothing more is read from this socket meanwhile
                return True
            self.stats.add(dropped=int(heartbeat), cut=1)  # the last one is dropped too
            self.cuts.refused(self._why(limiter, message), address)
            self.pause(closed, self.limits.pause_before_cut)
            raise ConnectionAbortedError("over its frame limits")

        return admit

    def _why(self, limiter: FrameLimiter, message: object) -> str:
        limits = limiter.limits
        if is_heartbeat(message):
            return (f"{_sender(message)} sent heartbeats far more often than "
                    f"{limits.heartbeats_per_second:g} a second ({limiter.dropped} dropped)")
        return (f"it sent frames faster than {limits.frames_per_second:g} a second for more "
                f"than {limits.throttled_patience:g} s ({limiter.delayed} held back)")


def _sender(message: object) -> str:
    """'worker <id>' from a heartbeat's text, for the log line (never trusted otherwise)."""
    try:
        worker_id = json.loads(str(message)[str(message).index("["):])[1]["worker_id"]
    except (ValueError, LookupError, TypeError):
        return "a worker"
    return f"worker {printable(str(worker_id), 60)}"


class _Inbox(list):
    """simple_websocket's buffer of received messages: each passes `admit` on the reading
    thread before it is buffered (or is dropped; the thread stops if `admit` raises)."""

    def __init__(self, admit: Callable[[object], bool]):
        super().__init__()
        self._admit = admit

    def append(self, message: object) -> None:
        if self._admit(message):
            super().append(message)


class _LimitedServer(simple_websocket.Server):
    """simple_websocket's server whose received messages go through an _Inbox."""

    def __init__(self, environ: dict, admit: Callable[[object], bool], **kwargs: Any):
        self._admit = admit
        super().__init__(environ, **kwargs)

    def handshake(self) -> None:
        self.input_buffer = _Inbox(self._admit)  # before the reading thread starts
        super().handshake()


class CheckedWebSocket(SimpleWebSocketWSGI):
    """Engine.IO's threading WebSocket, handing it only frames it can decode, within the
    connection's limits (`guard` sets `frame_guard` on a subclass per server)."""

    log = logging.getLogger("orderflow.socketio")
    frame_guard: FrameGuard | None = None

    def __call__(self, environ: dict, start_response: Any) -> Any:
        guard = self.frame_guard
        if guard is None:
            return super().__call__(environ, start_response)
        # SimpleWebSocketWSGI.__call__, with our server class (the library has no hook).
        self.closed = threading.Event()
        self._sending = threading.Lock()
        admit = guard.admission(environ.get("REMOTE_ADDR") or "?", self.closed)
        engineio_socket = getattr(self.app, "__self__", None)  # whose handler we run

        def take(message: object) -> bool:
            """Whether a message goes on to Engine.IO (on the thread reading the socket)."""
            if not admit(message):
                return False
            if engineio_socket is None or not guard.may_answer_inline(message):
                return True
            try:
                return not guard.answered_inline(engineio_socket.sid, str(message), self.send)
            except OSError:
                raise  # the connection is gone: the reading thread ends it
            except Exception as exc:  # noqa: BLE001 - python-socketio answers it instead
                self.log.warning("a frame could not be answered on its connection's "
                                 "thread (%s: %s)", type(exc).__name__, printable(str(exc)))
                return True

        self.ws = _LimitedServer(environ, take, max_message_size=guard.max_message_bytes,
                                 **self.server_args)
        ret = self.app(self)
        if self.ws.mode == "gunicorn":
            raise StopIteration()
        if self.ws.mode == "werkzeug":
            raise ConnectionError()
        return ret

    def close(self) -> None:
        closed = getattr(self, "closed", None)
        if closed is not None:
            closed.set()  # a reading thread waiting out a limit stops waiting
        super().close()

    def send(self, message: Any) -> Any:
        sending = getattr(self, "_sending", None)
        if sending is None:
            return super().send(message)
        # Engine.IO's writer thread and the reading thread (inline answers) both send.
        with sending:
            return super().send(message)

    def wait(self) -> Any:
        message = super().wait()
        if message is not None and not valid_frame(message):
            self.log.warning("closed a WebSocket that sent a frame that is not an Engine.IO "
                             "packet: %r", printable(str(message), 60))
            return None  # as if the client had closed: Engine.IO cleans up as usual
        return message


def guard(socketio: SocketIO, frame_guard: FrameGuard | None = None) -> None:
    """Install the frame check (and, with `frame_guard`, the frame limits) on this app's
    Engine.IO server (threading mode)."""
    eio = socketio.server.eio
    checked = type("CheckedWebSocket", (CheckedWebSocket,), {"frame_guard": frame_guard})
    if frame_guard is not None:
        frame_guard.server = socketio.server
    # A copy for this server: the driver's table is shared by every server in the process.
    eio._async = {**eio._async, "websocket": checked}
