"""Malformed Socket.IO and Engine.IO input: one log line at most, never a traceback.

python-engineio and python-socketio log a client's undecodable packet with its traceback
(up to 50 lines each, twice: engineio adds a handler of its own when none is configured),
and a text WebSocket frame that is not an Engine.IO packet at all raises out of the server
into gunicorn, which prints another traceback. Here

* both libraries log through loggers of ours, whose filter turns any record carrying an
  exception into one line with the exception's type and (escaped, shortened) message;
* WebSocket frames pass a check before Engine.IO decodes them: a text frame that is not an
  Engine.IO packet ends that connection with one log line.
"""

from __future__ import annotations

import logging
from typing import Any

from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
from flask_socketio import SocketIO

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


class CheckedWebSocket(SimpleWebSocketWSGI):
    """Engine.IO's threading WebSocket, handing it only frames it can decode."""

    log = logging.getLogger("orderflow.socketio")

    def wait(self) -> Any:
        message = super().wait()
        if message is not None and not valid_frame(message):
            self.log.warning("closed a WebSocket that sent a frame that is not an Engine.IO "
                             "packet: %r", printable(str(message), 60))
            return None  # as if the client had closed: Engine.IO cleans up as usual
        return message


def guard(socketio: SocketIO) -> None:
    """Install the frame check on this app's Engine.IO server (threading mode)."""
    eio = socketio.server.eio
    # A copy for this server: the driver's table is shared by every server in the process.
    eio._async = {**eio._async, "websocket": CheckedWebSocket}
