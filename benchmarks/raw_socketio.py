"""Socket.IO spoken by hand over websocket-client, for benchmarks that need a client far
cheaper than python-socketio's (one thread per message) or one that sends what no polite
client would (a flood of frames).

Only what the benchmarks use: the Engine.IO open, a namespace CONNECT, events with and
without an acknowledgement id, and the answers' parsing. See scheduler/remote/protocol.py
for what the server expects of a worker.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import websocket

ENGINEIO = "/socket.io/?EIO=4&transport=websocket"
WORKERS = "/workers"


def ws_url(url: str, query: str = "") -> str:
    return url.replace("http", "ws", 1) + ENGINEIO + (f"&{query}" if query else "")


def event(namespace: str, name: str, data: Any, ack: int | None = None) -> str:
    """An Engine.IO message carrying a Socket.IO EVENT ('42/ns,<ack>["name",data]')."""
    prefix = f"{namespace}," if namespace != "/" else ""
    return f"42{prefix}{'' if ack is None else ack}{json.dumps([name, data])}"


def parse(message: str) -> tuple[str, str, int | None, Any]:
    """A Socket.IO packet from the server: (type, namespace, ack id, data); type is one of
    '0' connect, '1' disconnect, '2' event, '3' ack, '4' connect error. Engine.IO packets
    other than messages come back as ('eio' + their type, '', None, their text)."""
    if not message.startswith("4"):
        return "eio" + message[:1], "", None, message[1:]
    body = message[1:]
    kind, rest = body[:1], body[1:]
    namespace = "/"
    if rest.startswith("/"):
        namespace, _, rest = rest.partition(",")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    ack = int(rest[:digits]) if digits else None
    rest = rest[digits:]
    return kind, namespace, ack, json.loads(rest) if rest else None


def client_frame(text: str) -> bytes:
    """One masked text frame as a client sends it (pre-built, to be sent many times)."""
    return websocket.ABNF.create_frame(text, websocket.ABNF.OPCODE_TEXT).format()


def registration(name: str, steps: list[str] | None = None, slots: int = 1,
                 resume: str | None = None, session: str | None = None) -> dict:
    """A worker's `register` payload (protocol.py)."""
    return {"session": session or os.urandom(8).hex(), "name": name,
            "host": socket.gethostname(), "pid": os.getpid(), "slots": slots,
            "resume": resume, "join": True, "spawn_id": None, "steps": steps, "tags": []}


class RawWorker:
    """A blocking connection on "/workers" that registered; `ws` is websocket-client's."""

    def __init__(self, url: str, token: str | None, name: str, timeout: float = 10.0,
                 steps: list[str] | None = None, resume: str | None = None,
                 session: str | None = None):
        headers = [f"Authorization: Bearer {token}"] if token else []
        self.ws = websocket.create_connection(ws_url(url), timeout=timeout, header=headers)
        self.ws.recv()  # Engine.IO open
        self.ws.send(f"40{WORKERS},{json.dumps({'token': token} if token else {})}")
        self._until(lambda p: p[0] in "04" and p[1] == WORKERS, "the CONNECT")
        self.payload = registration(name, steps, resume=resume, session=session)
        self.ws.send(event(WORKERS, "register", self.payload, ack=1))
        answer = self._until(lambda p: p[0] == "3" and p[1] == WORKERS and p[2] == 1,
                             "the registration's answer")[3][0]
        if not answer.get("worker_id"):
            raise RuntimeError(f"registration refused: {answer}")
        self.worker_id: str = answer["worker_id"]
        self.session: str = self.payload["session"]

    def _until(self, wanted, what: str) -> tuple:
        while True:
            message = self.ws.recv()
            if message == "2":
                self.ws.send("3")
                continue
            packet = parse(message)
            if packet[0] == "4":
                raise RuntimeError(f"refused: {packet[3]}")
            if wanted(packet):
                return packet

    def close(self) -> None:
        try:
            self.ws.close(timeout=0.5)
        except (OSError, websocket.WebSocketException):
            pass
