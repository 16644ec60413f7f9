"""The wire contract between the server and `orderflow worker` processes (namespace "/workers").

Shared by both ends, so it imports neither Flask nor python-socketio. JSON only.

Connecting: a server with a token wants it on the handshake, `Authorization: Bearer T`
(`handshake_headers`), and refuses one without it before the WebSocket opens: HTTP 401 with
`{"error": {"message": "unauthorized: ..."}}` (`handshake_refusal` reads it). `auth={"token":
T}` is accepted too, for a server that checks only the Socket.IO CONNECT (a refusal there is
a CONNECT_ERROR `{"message": "unauthorized: ..."}`). Refusals are logged by the server.

Worker to server; each is answered through the Socket.IO acknowledgement, and a refused one
answers `{"error": {"code", "message"}, "status": <HTTP-like status>}`:
  `register`   {"session", "name", "host", "pid", "concurrency", "resume": id | null,
                "join": bool, "spawn_id": str | null}
               -> {"worker_id": id | null, "resumed": bool, "heartbeat_interval",
                   "heartbeat_timeout", "chaos", "max_message_bytes"}
               Sent after every (re)connect. `session` is random per process and ties its
               connections and worker ids together. With `resume` naming the process's
               current id, still alive, the server rebinds it to this connection and sends
               again every assignment not yet reported; otherwise it joins the process as a
               new worker (unless `join` is false, as while draining: then worker_id is null).
  `heartbeat`  {"worker_id"} -> {"alive": bool, "chaos"}; alive false: declared dead.
  `begin`      {"worker_id", "task_id", "lease"} -> {"context": dict | null}; null: stale,
               skip it. Asking again for the same lease returns the same context.
  `result`     {"worker_id", "task_id", "lease", "ok": bool, "value"} -> {"ok": true};
               fenced by lease in the scheduler; a repeat of a delivered result is ignored.
               A value too big for max_message_bytes is sent as a failed attempt instead.
  `drain`      {"worker_id"} -> {"ok": true}: leave the ring after the running tasks.

Server to worker:
  `assign`     {"worker_id", "tasks": [[task_id, lease], ...]}: put them in the local queue.
  `left`       {"worker_id", "status": "dead" | "removed"}: dead: join again under a new id;
               removed: drained, so the process exits.
  `kill`       {"worker_id"}: the Kill button for a process this server did not start; the
               process SIGKILLs itself (a real crash, found by the heartbeat monitor).
"""

from __future__ import annotations

import json

NAMESPACE = "/workers"
# Worker ids the server gives remote processes: "p-<n>" (thread workers are "w-<n>").
ID_PREFIX = "p"
# Exit status of `orderflow worker` when the server refuses it (wrong token).
EXIT_REFUSED = 3
MAX_CONCURRENCY = 64
MAX_TEXT = 200
# Set by the server for the worker processes it starts (scheduler/remote/supervisor.py): the
# spawn id they register with, and the server's pid, so a child exits when its server is gone.
ENV_SPAWN_ID = "ORDERFLOW_SPAWN_ID"
ENV_PARENT_PID = "ORDERFLOW_PARENT_PID"


def handshake_headers(token: str | None) -> dict[str, str]:
    """Headers for a connection's handshake (a fresh dict: the client library edits it)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def handshake_refusal(error: BaseException) -> str | None:
    """The server's message if it refused the handshake as unauthorized (401), else None.

    python-socketio reports any failed WebSocket handshake as "Connection error"; the
    WebSocket library's own error, with the status and body, is further down the chain."""
    seen: BaseException | None = error
    for _ in range(10):  # a chain is short; a cycle must not loop forever
        if seen is None:
            return None
        if getattr(seen, "status_code", None) == 401:
            try:
                return str(json.loads(getattr(seen, "resp_body", b""))["error"]["message"])
            except (ValueError, TypeError, KeyError):
                return "unauthorized"
        seen = seen.__cause__ or seen.__context__
    return None
